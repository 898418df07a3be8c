"""What every response rewriter needs, and the one JSON encoding they all write.

Strategy: a ``RewriteContext`` is built once per request (by the executor, from the model
string the client sent and the request's tools) and handed to the protocol's rewriter.
Rewriters re-encode only what they change, always with ``dumps`` (compact, UTF-8 kept), and
decide whether to parse an SSE event with cheap substring checks first: most events of a
stream are deltas that pass through as the exact bytes received.
"""

import functools
import json
from typing import Callable, Dict, Optional

from cliproxy.http.sse import encode_event
from cliproxy.jsontext import loads


class RewriteContext:
    """``requested_model``: the model string exactly as the client sent it (suffix
    included); ``tool_names``: lowercase tool name → the casing to give back (Anthropic
    only, see ``anthropic.tool_name_map``), ``{}`` when not given.

    With ``tool_names_from`` (a function of no arguments) instead of ``tool_names``, the
    map is built by it when first read: most answers call no tool, and building it walks
    every tool the request declares. Rewriters read ``tool_names`` only for a tool call.
    """

    __slots__ = ("requested_model", "_tool_names", "_tool_names_from")

    def __init__(
        self,
        requested_model: str,
        tool_names: Optional[Dict[str, str]] = None,
        tool_names_from: Optional[Callable[[], Dict[str, str]]] = None,
    ):
        self.requested_model = requested_model
        self._tool_names = tool_names
        self._tool_names_from = tool_names_from

    @property
    def tool_names(self) -> Dict[str, str]:
        names = self._tool_names
        if names is None:
            source = self._tool_names_from
            names = self._tool_names = {} if source is None else source()
        return names


# One encoder for every call: ``json.dumps`` with options builds a new one each time.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(obj) -> str:
    """``obj`` as compact JSON text, non-ASCII kept as is (the wire is UTF-8)."""
    return _ENCODER.encode(obj)


def loads_object(text) -> Optional[dict]:
    """``text`` (str or bytes) parsed as a JSON object, or ``None`` when it is not valid
    JSON or not an object. Never raises: upstream bodies are passed through untouched
    when they cannot be understood."""
    try:
        value = loads(text)
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, dict) else None


def loads_any(text):
    """``text`` parsed as JSON, or ``None`` when it is not valid JSON. Never raises."""
    try:
        return loads(text)
    except (ValueError, TypeError):
        return None


def rewrite_json(data: bytes, rewrite, ctx: "RewriteContext", arrays: bool = False) -> bytes:
    """``rewrite(document, ctx)`` applied to a raw JSON body, parsed once and written
    once; with ``arrays``, each object of a JSON array (Gemini's non-SSE stream) is
    rewritten alike. Anything else (an upstream error page) comes back unchanged, as the
    same bytes object."""
    document = loads_any(data)
    if isinstance(document, dict):
        return dumps(rewrite(document, ctx)).encode("utf-8")
    if arrays and isinstance(document, list):
        items = [rewrite(item, ctx) if isinstance(item, dict) else item for item in document]
        return dumps(items).encode("utf-8")
    return data


def holds_only(data: bytes, key: str, value: str) -> bool:
    """True when the raw JSON ``data`` certainly holds ``key`` exactly once, with the
    string ``value``: setting ``key`` to ``value`` would change nothing, so the body can
    go out as received. (A key inside a JSON string has its quotes escaped, so a raw
    match is a real key.) False means "not certain": the caller parses."""
    needle, tight, spaced = _field_patterns(key, value)
    if data.count(needle) != 1:
        return False
    return tight in data or spaced in data


@functools.lru_cache(maxsize=256)
def _field_patterns(key: str, value: str):
    """``"key"`` and ``"key":value`` / ``"key": value`` as bytes (``holds_only``'s
    needles): a pure function of two strings, asked for with the same few per request."""
    needle = ('"%s"' % key).encode("utf-8")
    encoded = encode_json_value(value).encode("utf-8")
    return needle, needle + b":" + encoded, needle + b": " + encoded


def rewrite_model(body: dict, ctx: "RewriteContext") -> dict:
    """Set a response object's top-level ``model`` (when it is a string) to
    ``ctx.requested_model``, in place; returns ``body``. Never raises."""
    if isinstance(body.get("model"), str):
        body["model"] = ctx.requested_model
    return body


def rewrite_model_raw(data: bytes, ctx: "RewriteContext") -> bytes:
    """``rewrite_model`` over a raw body (see ``rewrite_json``); a body that already
    names the requested model goes out as received. The ``rewrite_raw`` of Chat
    Completions and Responses, whose answers name their model at the top level."""
    if holds_only(data, "model", ctx.requested_model):
        return data
    return rewrite_json(data, rewrite_model, ctx)


def has_value(data: str, key: str, value_json: str) -> bool:
    """True when ``data`` (a JSON text) certainly holds ``key`` once, with the value whose
    JSON encoding is ``value_json``.

    A key inside a JSON string value has its quotes escaped, so ``"key":`` in the raw text
    is a real key; a second occurrence (a nested object) makes the answer "not certain"
    and the caller parses. Used to pass an event through without parsing it.
    """
    needle = '"%s"' % key
    if data.count(needle) != 1:
        return False
    return (needle + ":" + value_json) in data or (needle + ": " + value_json) in data


@functools.lru_cache(maxsize=256)
def encode_json_value(value: str) -> str:
    """The JSON encoding of a string, as ``dumps`` writes it. Remembered for the last
    256 strings (a pure function of an immutable value): every response of a model call
    checks its model name this way, and clients ask for a handful of names."""
    return json.dumps(value, ensure_ascii=False)


class TopLevelFieldRewriter:
    """Rewrites one top-level string field of each JSON SSE event to a fixed value.

    Used by OpenAI Chat Completions (``model``) and Gemini (``modelVersion``) streams,
    where every chunk carries the field. Events without the field, ``[DONE]``, events
    already carrying the value and anything that is not a JSON object pass through as the
    exact bytes received.
    """

    def __init__(self, key: str, value: str):
        self._key = key
        self._value = value
        self._value_json = encode_json_value(value)
        self._needle = '"%s"' % key
        # Bytes whose absence from a run of events proves there is nothing to rewrite.
        self.markers = (self._needle.encode("ascii"),)

    def event(self, ev) -> bytes:
        """The bytes to send for ``ev`` (an ``cliproxy.http.sse.Event``)."""
        data = ev.data
        if not data or self._needle not in data:
            return ev.raw
        if has_value(data, self._key, self._value_json):
            return ev.raw
        obj = loads_object(data)
        if obj is None or not isinstance(obj.get(self._key), str):
            return ev.raw
        if obj[self._key] == self._value:
            return ev.raw
        obj[self._key] = self._value
        return reencode(ev, obj)


def reencode(ev, obj) -> bytes:
    """``obj`` written as the SSE event ``ev`` was: same event name and id."""
    return encode_event(dumps(obj), event=ev.event, id=ev.id)
