"""Anthropic Messages: request sanitising, response and SSE rewriting (SPEC §3.2).

Strategy: pure functions over the decoded JSON body, applied only to requests served by a
local provider (LOCAL_PROVIDER, MODEL_MAPPING); AMP_CREDITS traffic is never touched.

Requests (``sanitize_request``): Amp replays thinking blocks other providers produced
without a valid signature, signs ``tool_use`` blocks, and marks more than the API's four
``cache_control`` breakpoints; each of those is a 400 from Anthropic, so they are fixed
here. Breakpoints are counted in the order the API reads the prompt prefix (tools, system,
messages, blocks in order, a ``tool_result``'s nested blocks before the ``tool_result``
itself), not in the order of the keys in the JSON object.

Responses (``rewrite_response``, ``rewrite_raw``, ``StreamRewriter``): the model name goes
back to the string the client asked for, ``tool_use`` and ``thinking`` blocks get the
``signature`` field Amp expects, tool names get back the casing the client declared.

Streams run per SSE event on the hot path: an event is parsed only when its name says it
may need a change (``message_start``, ``content_block_start``) and a substring check cannot
rule the change out; every other event is sent as the exact bytes received.
"""

import re
from typing import Dict, List, Optional

from cliproxy.translate.context import (
    RewriteContext,
    encode_json_value,
    has_value,
    loads_object,
    reencode,
    holds_only,
    rewrite_json,
)

__all__ = [
    "CANONICAL_TOOL_NAMES",
    "CONTEXT_1M_BETA",
    "MAX_CACHE_CONTROL",
    "RewriteContext",
    "StreamRewriter",
    "clean_beta_header",
    "rewrite_raw",
    "rewrite_response",
    "sanitize_request",
    "tool_name_map",
]

# The Messages API accepts at most four cache breakpoints per request.
MAX_CACHE_CONTROL = 4

# A beta providers other than Anthropic's own long-context tier reject.
CONTEXT_1M_BETA = "context-1m-2025-08-07"

# Amp's built-in tools, in the casing the Amp CLI dispatches on; used when a provider
# answers with a tool name the request's own tools do not account for.
CANONICAL_TOOL_NAMES = ("Bash", "Read", "Grep", "glob", "Task", "Check")

_CANONICAL_BY_LOWER = {name.lower(): name for name in CANONICAL_TOOL_NAMES}

# A ``\u`` escape in JSON bytes: it could spell any name ``may_need_sanitize`` looks for.
_UNICODE_ESCAPE = re.compile(rb"\\u")
# The keys ``sanitize`` acts on, as raw JSON strings.
_SANITIZED_KEYS = re.compile(rb'"(thinking|signature|cache_control)"')

_MESSAGE_START = "message_start"
_BLOCK_START = "content_block_start"
_QUOTED_MESSAGE_START = '"%s"' % _MESSAGE_START
_QUOTED_BLOCK_START = '"%s"' % _BLOCK_START


def sanitize_request(body: dict) -> dict:
    """Fix what Anthropic would reject in a request body, in place; returns ``body``.
    ``sanitize`` says what this does."""
    sanitize(body)
    return body


def sanitize(body: dict) -> bool:
    """Fix what Anthropic would reject in a request body, in place; True when anything
    changed (so an unchanged body can be forwarded as the client's own bytes).

    - drops assistant ``thinking`` blocks whose ``signature`` is missing, empty or not a
      string (``redacted_thinking`` blocks carry ``data`` instead and are kept);
    - removes ``signature`` from ``tool_use`` blocks;
    - keeps at most ``MAX_CACHE_CONTROL`` ``cache_control`` markers: the last ones in the
      API's prefix order, removing the earliest.

    Parts of unexpected types are left alone. Never raises.
    """
    changed = False
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict) and _sanitize_message(message):
                changed = True
    markers = _cache_control_holders(body)
    for holder in markers[: max(0, len(markers) - MAX_CACHE_CONTROL)]:
        del holder["cache_control"]
        changed = True
    return changed


def may_need_sanitize(raw: bytes) -> bool:
    """False when ``sanitize`` would certainly change nothing in the body whose JSON
    bytes are ``raw``: no ``"thinking"`` and no ``"signature"`` in them, at most
    ``MAX_CACHE_CONTROL`` ``"cache_control"`` and no ``\\u`` escape that could spell any
    of those. True means "maybe": the caller runs ``sanitize``. A scan of the bytes costs
    far less than the walk over a long conversation.

    One pass of a regex anchored on the opening quote (the engine tries the
    alternation only where a quote is; in valid JSON no two strings share one) costs
    about 60% of three substring scans, which are not ``memchr`` fast for needles that end
    in a quote, in JSON's most frequent byte. A backslash is found by ``memchr``."""
    if b"\\" in raw and _UNICODE_ESCAPE.search(raw) is not None:
        return True
    found = _SANITIZED_KEYS.findall(raw)
    cache_controls = found.count(b"cache_control")
    return cache_controls < len(found) or cache_controls > MAX_CACHE_CONTROL


def _sanitize_message(message: dict) -> bool:
    content = message.get("content")
    if not isinstance(content, list):
        return False
    changed = False
    if message.get("role") == "assistant":
        kept = [block for block in content if not _unsigned_thinking(block)]
        if len(kept) != len(content):
            content[:] = kept
            changed = True
    for block in content:
        if isinstance(block, dict) and block.get("type") == "tool_use" and "signature" in block:
            del block["signature"]
            changed = True
    return changed


def _unsigned_thinking(block) -> bool:
    if not isinstance(block, dict) or block.get("type") != "thinking":
        return False
    signature = block.get("signature")
    return not (isinstance(signature, str) and signature)


def _cache_control_holders(body: dict) -> List[dict]:
    """Every dict carrying a ``cache_control`` marker, in the API's prefix order."""
    holders = []  # type: List[dict]
    for key in ("tools", "system"):
        _collect_blocks(body.get(key), holders)
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                _collect_blocks(message.get("content"), holders)
    return holders


def _collect_blocks(blocks, holders: List[dict]) -> None:
    if not isinstance(blocks, list):
        return
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "tool_result":
            # Nested blocks sit inside the tool_result, so before its own breakpoint.
            _collect_blocks(block.get("content"), holders)
        if block.get("cache_control") is not None:
            holders.append(block)


def clean_beta_header(value: Optional[str]) -> Optional[str]:
    """An ``Anthropic-Beta`` value without ``context-1m-2025-08-07``; the other betas keep
    their order. ``None`` when nothing is left (the caller then drops the header)."""
    if value is None:
        return None
    kept = [
        part.strip()
        for part in value.split(",")
        if part.strip() and part.strip().lower() != CONTEXT_1M_BETA
    ]
    return ",".join(kept) if kept else None


def tool_name_map(tools) -> Dict[str, str]:
    """Lowercase tool name → the casing to restore: the request's ``tools`` (its value,
    whatever it is) first, then ``CANONICAL_TOOL_NAMES`` for names it does not declare."""
    names = dict(_CANONICAL_BY_LOWER)
    if isinstance(tools, list):
        for tool in tools:
            name = tool.get("name") if isinstance(tool, dict) else None
            if isinstance(name, str):
                names[name.lower()] = name
    return names


def rewrite_response(body: dict, ctx: RewriteContext) -> dict:
    """Rewrite a non-streaming Messages response in place; returns ``body``.

    ``model`` becomes ``ctx.requested_model``; ``tool_use`` and ``thinking`` blocks get
    ``"signature": ""`` when they have no string signature; tool names are cased by
    ``ctx.tool_names``; when a ``tool_use`` block is present, ``thinking`` blocks are
    dropped. Never raises.
    """
    if isinstance(body.get("model"), str):
        body["model"] = ctx.requested_model
    content = body.get("content")
    if not isinstance(content, list):
        return body
    has_tool_use = False
    for block in content:
        if isinstance(block, dict):
            _fix_block(block, ctx)
            has_tool_use = has_tool_use or block.get("type") == "tool_use"
    if has_tool_use:
        content[:] = [
            block
            for block in content
            if not (isinstance(block, dict) and block.get("type") == "thinking")
        ]
    return body


def rewrite_raw(data: bytes, ctx: RewriteContext) -> bytes:
    """``rewrite_response`` over a raw body (see ``context.rewrite_json``). A body that
    already names the requested model and has no tool or thinking block to fix goes out
    as received."""
    if b'"tool_use"' not in data and b'"thinking"' not in data and holds_only(data, "model", ctx.requested_model):
        return data
    return rewrite_json(data, rewrite_response, ctx)


def _fix_block(block: dict, ctx: RewriteContext) -> bool:
    """Give ``block`` its signature and tool-name casing (``ctx.tool_names``, read only
    for a tool call: it may be built on first use); True when it changed."""
    kind = block.get("type")
    if kind != "tool_use" and kind != "thinking":
        return False
    changed = False
    if not isinstance(block.get("signature"), str):
        block["signature"] = ""
        changed = True
    name = block.get("name")
    if kind == "tool_use" and isinstance(name, str):
        cased = ctx.tool_names.get(name.lower())
        if cased is not None and cased != name:
            block["name"] = cased
            changed = True
    return changed


class StreamRewriter:
    """Rewrites an Anthropic Messages SSE stream event by event.

    ``message_start`` gets the requested model; a ``content_block_start`` opening a
    ``tool_use`` or ``thinking`` block gets its signature and tool-name casing. Every
    other event (deltas, pings, stops, errors) is returned as ``ev.raw``, the same bytes
    object. Streaming responses keep their thinking blocks (they are already sent when a
    later ``tool_use`` appears).
    """

    def __init__(self, ctx: RewriteContext):
        self._ctx = ctx
        self._model_json = encode_json_value(ctx.requested_model)

    # Only these two kinds of event are ever changed, and their names appear in every
    # such event: a run of events without them passes unparsed.
    markers = (b"message_start", b"content_block_start")

    def event(self, ev) -> bytes:
        """The bytes to send for ``ev`` (a ``cliproxy.http.sse.Event``). Never raises."""
        data = ev.data
        if not data:
            return ev.raw
        name = ev.event
        if name is None:
            name = self._name_from_data(data)
        if name == _MESSAGE_START:
            return self._message_start(ev, data)
        if name == _BLOCK_START:
            return self._block_start(ev, data)
        return ev.raw

    @staticmethod
    def _name_from_data(data: str) -> Optional[str]:
        # Some Anthropic-compatible providers send only ``data:`` lines; the JSON's
        # ``type`` names the event. A quoted name inside a string value is escaped, so
        # a match here is the ``type`` value (confirmed after parsing).
        if _QUOTED_MESSAGE_START in data:
            return _MESSAGE_START
        if _QUOTED_BLOCK_START in data:
            return _BLOCK_START
        return None

    def _message_start(self, ev, data: str) -> bytes:
        if has_value(data, "model", self._model_json):
            return ev.raw
        obj = loads_object(data)
        if obj is None or obj.get("type", _MESSAGE_START) != _MESSAGE_START:
            return ev.raw
        message = obj.get("message")
        if not isinstance(message, dict):
            return ev.raw
        model = message.get("model")
        if not isinstance(model, str) or model == self._ctx.requested_model:
            return ev.raw
        message["model"] = self._ctx.requested_model
        return reencode(ev, obj)

    def _block_start(self, ev, data: str) -> bytes:
        if '"tool_use"' not in data and '"thinking"' not in data:
            return ev.raw
        obj = loads_object(data)
        if obj is None or obj.get("type", _BLOCK_START) != _BLOCK_START:
            return ev.raw
        block = obj.get("content_block")
        if not isinstance(block, dict) or not _fix_block(block, self._ctx):
            return ev.raw
        return reencode(ev, obj)
