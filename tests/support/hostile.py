"""Hostile probes of a running cliproxy: a seeded mutation fuzz, the request-smuggling
corpus, and the wire tools both use. ``make hostile`` (bench/hostile.py) aims them at the
built ``dist/cliproxy.pyz``; tests/test_hostile_fuzz.py and tests/test_hostile_smuggling.py
run a slice of the same code against the proxy started in-process.

Strategy: an independent peer, like ``fakes.py``: nothing here imports ``cliproxy``, so the
job can probe the zipapp and a parser bug cannot hide in both ends. Requests are bytes
built here and written to raw sockets; answers are read with this module's own response
parser (``ResponseReader``).

- **The fuzz** is reproducible case by case: case ``i`` of seed ``s`` comes from
  ``random.Random("s:i")`` alone, so a failure names one case that ``fuzz_case(s, i)``
  rebuilds. Each case starts from a valid request of one route family (``FAMILIES``) and
  applies up to three mutations, each to one layer, in wire order: the JSON shape, the
  JSON text, the content coding, the body bytes, the framing, the header fields, the
  request line, the raw bytes. The harness reads the result with its own lenient parser
  (``message_complete``) and half-closes a request it judges incomplete, so the proxy must
  answer or close at once; a seeded 5% of those are left open instead, for the proxy's
  own timeouts. Every answer is classified (a status, ``closed``, ``reset``, ``hang`` past
  the bound, ``garbled``) into a ``FuzzReport``.
- **The upstreams answer well**: ``answer_well`` gives every path a valid answer in its
  protocol, so a 500 (or a 502 from healthy upstreams) is the proxy's own fault.
- **The smuggling corpus** (``VECTORS``) is a fixed list: each vector's bytes, the answers
  the proxy must give, whether it must close the connection, and the exact requests the
  upstream must receive. ``RawUpstream`` records the bytes the proxy sent and checks their
  framing independently (one framing field, one Content-Length value, nothing glued onto
  a pooled connection); ``run_vector`` judges a vector and reports what happened.
- Management API writes would let the fuzz rewrite its own config, so the management
  family only writes keys whose every value is harmless, and a case whose management key
  is not intact is sent from 127.0.0.2: the lock-out after wrong keys then falls on that
  address, and 127.0.0.1 keeps reaching the API's deeper layers.
"""

import asyncio
import base64
import collections
import gzip
import hashlib
import itertools
import json
import os
import random
import re
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from tests.support.fakes import JSONReply, SSEReply, sse_events
from tests.support.loop_thread import LoopThreadServer

# --- the configuration under probe -----------------------------------------------------

CLIENT_KEY = "sk-hostile-client"
MANAGEMENT_KEY = "mk-hostile-management"
UPSTREAM_KEY = "amp-hostile-upstream"
LOOPBACK = "127.0.0.1"
# Where cases whose management key was mutated come from (see the module docstring).
GUESSER = "127.0.0.2"

DEFAULT_SEED = 12

# Small limits make the oversized cases cheap to send; short timeouts make the cases left
# incomplete on purpose finish quickly.
FUZZ_LIMITS = {
    "max-header-bytes": 16384,
    "max-body-bytes": 262144,
    "connect-timeout": 2,
    "read-timeout": 2,
    "request-timeout": 3,
    "idle-timeout": 5,
    "drain-timeout": 2,
}
# Longest a case may take from its last byte sent to a whole answer or a close: the
# request timeout above, plus room for a loaded two-core machine.
FUZZ_BOUND = 10.0

# Models of every protocol, so that calls are served natively, translated, mapped, or
# sent to Amp credits (the fake Amp upstream answers those too).
MODELS = (
    "claude-sonnet-4-5",
    "claude-opus-4-1(high)",
    "claude-haiku-4-5(8192)",
    "gpt-5",
    "gpt-5(minimal)",
    "gemini-2.5-flash",
    "gemini-2.5-pro(none)",
    "qwen-hostile",
    "mapped-model",
    "translate-anything",
    "unknown-model",
)


def online_document(upstream_url, limits=None):
    """A config with every route family live: providers of the four protocols, mappings,
    an Amp upstream and the management API, all upstreams at ``upstream_url``."""
    return {
        "api-keys": [CLIENT_KEY],
        "claude-api-key": [{"api-key": "sk-ant-hostile", "base-url": upstream_url}],
        "gemini-api-key": [{"api-key": "gm-hostile", "base-url": upstream_url}],
        "codex-api-key": [{"api-key": "cx-hostile", "base-url": upstream_url + "/v1"}],
        "openai-compatibility": [
            {"name": "local", "base-url": upstream_url + "/v1", "models": [{"name": "qwen-hostile"}]}
        ],
        "ampcode": {
            "upstream-url": upstream_url,
            "upstream-api-key": UPSTREAM_KEY,
            "model-mappings": [
                {"from": "mapped-model", "to": ["qwen-hostile", "claude-sonnet-4-5"]},
                {"from": "^translate-.*", "to": "gemini-2.5-flash", "regex": True},
            ],
        },
        "remote-management": {"secret-key": MANAGEMENT_KEY},
        "limits": dict(FUZZ_LIMITS if limits is None else limits),
    }


def offline_document(limits=None):
    """A config in offline mode: Amp's control plane answered locally."""
    return {
        "api-keys": [CLIENT_KEY],
        "ampcode": {"upstream-url": ""},
        "limits": dict(FUZZ_LIMITS if limits is None else limits),
    }


# --- upstreams that answer well ---------------------------------------------------------


def _request_json(request):
    """The recorded request's body as a dict, or an empty dict."""
    try:
        value = json.loads(request.body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def anthropic_stream(model, pieces):
    """An Anthropic Messages stream whose text is ``pieces``, one delta each."""
    events = [
        {"type": "message_start", "message": {
            "id": "msg_h", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "usage": {"input_tokens": 3, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    events += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
        for piece in pieces
    ]
    events += [
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": len(pieces)}},
        {"type": "message_stop"},
    ]
    return sse_events(*events)


def anthropic_message(model, text="ok"):
    """A whole Anthropic Messages answer."""
    return {"id": "msg_h", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 1}}


def _chat_answer(model, stream):
    if not stream:
        return JSONReply(body={
            "id": "chatcmpl-h", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})
    chunk = {"id": "chatcmpl-h", "object": "chat.completion.chunk", "created": 1, "model": model}
    chunks = [
        dict(chunk, choices=[{"index": 0, "delta": {"role": "assistant", "content": "o"}, "finish_reason": None}]),
        dict(chunk, choices=[{"index": 0, "delta": {"content": "k"}, "finish_reason": None}]),
        dict(chunk, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]),
    ]
    return SSEReply(sse_events(*chunks, "[DONE]", event_names=[None] * 4))


def _responses_answer(model, stream):
    item = {"type": "message", "id": "msg_h", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": "ok", "annotations": []}]}
    response = {"id": "resp_h", "object": "response", "created_at": 1, "status": "completed",
                "model": model, "output": [item],
                "usage": {"input_tokens": 3, "output_tokens": 1, "total_tokens": 4}}
    if not stream:
        return JSONReply(body=response)
    events = [
        {"type": "response.created", "sequence_number": 0,
         "response": dict(response, status="in_progress", output=[], usage=None)},
        {"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
         "item": dict(item, content=[], status="in_progress")},
        {"type": "response.content_part.added", "sequence_number": 2, "item_id": "msg_h",
         "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}},
        {"type": "response.output_text.delta", "sequence_number": 3, "item_id": "msg_h",
         "output_index": 0, "content_index": 0, "delta": "ok"},
        {"type": "response.output_text.done", "sequence_number": 4, "item_id": "msg_h",
         "output_index": 0, "content_index": 0, "text": "ok"},
        {"type": "response.output_item.done", "sequence_number": 5, "output_index": 0, "item": item},
        {"type": "response.completed", "sequence_number": 6, "response": response},
    ]
    return SSEReply(sse_events(*events))


def _gemini_answer(model, stream):
    answer = {"candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]},
                              "finishReason": "STOP", "index": 0}],
              "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1, "totalTokenCount": 4},
              "modelVersion": model}
    if not stream:
        return JSONReply(body=answer)
    return SSEReply(sse_events(answer, event_names=[None]))


_RSS = b'<?xml version="1.0"?><rss version="2.0"><channel><title>h</title></channel></rss>'
_HTML = b"<!doctype html><title>hostile</title><p>ok</p>"
_BROWSER_PREFIXES = ("/threads", "/docs", "/settings", "/auth")


def answer_well(request):
    """A valid answer for any path a proxy may forward to: a provider call of each of the
    four protocols (whole or streamed, as the body or path asks), Amp's own routes, feeds
    and browser pages. Never fails, whatever the body."""
    path = request.path
    body = _request_json(request)
    model = body.get("model") if isinstance(body.get("model"), str) else "hostile"
    stream = body.get("stream") is True
    if path.endswith("/count_tokens"):
        return JSONReply(body={"input_tokens": 3})
    if path.endswith("/messages"):
        if stream:
            return SSEReply(anthropic_stream(model, ["o", "k"]))
        return JSONReply(body=anthropic_message(model))
    if path.endswith("/completions"):
        return _chat_answer(model, stream)
    if path.endswith("/responses"):
        return _responses_answer(model, stream)
    if path.endswith(":countTokens"):
        return JSONReply(body={"totalTokens": 3})
    if ":streamGenerateContent" in path or ":generateContent" in path:
        return _gemini_answer(path.rsplit("/", 1)[-1].split(":")[0], ":stream" in path)
    if path.endswith(".rss"):
        return JSONReply(body=_RSS, headers={"Content-Type": "application/rss+xml"})
    if path.startswith(_BROWSER_PREFIXES):
        return JSONReply(body=_HTML, headers={"Content-Type": "text/html; charset=utf-8"})
    return JSONReply(body={"ok": True, "result": {"path": path}})


# --- reading answers -----------------------------------------------------------------


class WireError(Exception):
    """The proxy sent bytes that are not an HTTP/1.1 response."""


@dataclass
class WireResponse:
    """One final response as read off the wire."""

    status: int
    headers: List[Tuple[str, str]]
    body: bytes
    interim: Tuple[int, ...] = ()  # 1xx answers that came before it

    def header(self, name):
        """The last value of the field ``name`` (any case), or None."""
        found = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found

    @property
    def is_json(self):
        return (self.header("content-type") or "").startswith("application/json")


_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: [^\r\n]*)?")


class ResponseReader:
    """Sans-IO: ``feed`` bytes (``feed_eof`` at the end), ``expect(method)`` once per
    request sent, and ``next()`` returns each final response in order (None: more bytes
    needed). Raises ``WireError`` for anything that is not a response."""

    def __init__(self):
        self.buffer = bytearray()
        self.eof = False
        self._methods = collections.deque()
        self._interim = []

    def expect(self, method):
        self._methods.append(method)

    def feed(self, data):
        self.buffer += data

    def feed_eof(self):
        self.eof = True

    def next(self):
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if self.eof and self.buffer:
                    raise WireError("connection closed inside a response head")
                return None
            lines = bytes(self.buffer[:end]).split(b"\r\n")
            match = _STATUS_LINE.fullmatch(lines[0])
            if match is None:
                raise WireError("bad status line %r" % lines[0][:80])
            status = int(match.group(1))
            headers = [_field(line) for line in lines[1:]]
            if 100 <= status < 200 and status != 101:
                del self.buffer[: end + 4]
                self._interim.append(status)
                continue
            body = self._body(status, headers, end + 4)
            if body is None:
                return None
            if self._methods:
                self._methods.popleft()
            interim, self._interim = tuple(self._interim), []
            return WireResponse(status, headers, body, interim)

    def _body(self, status, headers, start):
        """The body when it is all here (consumed from the buffer), else None."""
        method = self._methods[0] if self._methods else "GET"
        names = {name: value for name, value in headers}
        if method == "HEAD" or status in (101, 204, 304):
            del self.buffer[:start]
            return b""
        if "chunked" in names.get("transfer-encoding", "").lower():
            return self._chunked(start)
        if "content-length" in names:
            length = int(names["content-length"])
            if len(self.buffer) - start < length:
                if self.eof:
                    raise WireError("connection closed inside a response body")
                return None
            body = bytes(self.buffer[start : start + length])
            del self.buffer[: start + length]
            return body
        if not self.eof:
            return None  # close-delimited
        body = bytes(self.buffer[start:])
        self.buffer.clear()
        return body

    def _chunked(self, start):
        parts = []
        at = start
        while True:
            line_end = self.buffer.find(b"\r\n", at)
            if line_end < 0:
                return self._short()
            try:
                size = int(bytes(self.buffer[at:line_end]).split(b";")[0], 16)
            except ValueError:
                raise WireError("bad chunk size line in a response")
            at = line_end + 2
            if size == 0:
                trailer_end = self.buffer.find(b"\r\n", at)
                if trailer_end < 0:
                    return self._short()
                while trailer_end != at:  # trailer fields, then the blank line
                    at = trailer_end + 2
                    trailer_end = self.buffer.find(b"\r\n", at)
                    if trailer_end < 0:
                        return self._short()
                del self.buffer[: at + 2]
                return b"".join(parts)
            if len(self.buffer) < at + size + 2:
                return self._short()
            parts.append(bytes(self.buffer[at : at + size]))
            at += size + 2

    def _short(self):
        if self.eof:
            raise WireError("connection closed inside a chunked response body")
        return None


def _field(line):
    name, _, value = line.decode("latin-1").partition(":")
    return name.strip().lower(), value.strip()


# --- judging a request the way a lenient server would ------------------------------------


def message_complete(data):
    """True when ``data`` holds a whole first request by a lenient reading (LF line ends
    accepted, the first framing field believed). A request this says is complete is left
    open for the proxy to answer; one it says is not is half-closed by the fuzz."""
    ends = [at for at in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if at >= 0]
    if not ends:
        return False
    end = min(ends)
    rest = data[end + (4 if data[end : end + 4] == b"\r\n\r\n" else 2) :]
    fields = {}
    for line in data[:end].split(b"\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            fields.setdefault(name.strip().lower(), value.strip())
    if b"chunked" in fields.get(b"transfer-encoding", b"").lower():
        return _chunks_complete(rest)
    length = fields.get(b"content-length")
    if length is None:
        return True
    try:
        return len(rest) >= int(length.split(b",")[0])
    except ValueError:
        return True  # a server refuses that at once


def _chunks_complete(rest):
    at = 0
    while True:
        end = rest.find(b"\n", at)
        if end < 0:
            return False
        try:
            size = int(rest[at:end].split(b";")[0].strip(), 16)
        except ValueError:
            return True  # refused at once
        at = end + 1
        if size == 0:
            return rest.find(b"\n", at) >= 0
        at += size + 2
        if at > len(rest):
            return False


# --- the fuzz: base requests per route family --------------------------------------------


# ``Draft.doc`` when the body is bytes already (or there is none): JSON null is ``None``.
_NO_DOC = object()


@dataclass
class Draft:
    """A request being built. ``headers`` holds (name, value) pairs, or (None, line) for a
    raw line; ``doc`` is the JSON body before it is written (``_NO_DOC``: none)."""

    family: str
    method: bytes
    target: bytes
    headers: list
    doc: object = _NO_DOC
    body: bytes = b""
    version: bytes = b"HTTP/1.1"
    line: Optional[bytes] = None  # a whole request line that replaces method/target/version
    wire_body: Optional[bytes] = None  # the framed body, once framed
    offline: bool = False
    trailing: bytes = b""  # bytes sent after the request (a pipelined one, garbage)
    sep: bytes = b"\r\n"


def _host():
    return (b"Host", b"127.0.0.1:8317")


def _auth(rng, key=CLIENT_KEY):
    """Client credentials in one of the five carriers: (fields, query suffix)."""
    carrier = rng.randrange(5)
    key = key.encode()
    if carrier == 0:
        return [(b"Authorization", b"Bearer " + key)], b""
    if carrier == 1:
        return [(b"x-api-key", key)], b""
    if carrier == 2:
        return [(b"x-goog-api-key", key)], b""
    return [], (b"key=" if carrier == 3 else b"auth_token=") + key


def _with_query(path, query):
    if not query:
        return path
    return path + (b"&" if b"?" in path else b"?") + query


def _json_draft(family, rng, path, doc, extra=()):
    """A POST of ``doc`` to ``path`` with client credentials."""
    fields, query = _auth(rng)
    headers = [_host(), (b"Content-Type", b"application/json"), *fields, *extra]
    return Draft(family, b"POST", _with_query(path, query), headers, doc=doc)


def _messages(rng):
    content = rng.choice(["hi", [{"type": "text", "text": "hi"}]])
    return [{"role": "user", "content": content}]


def _anthropic(rng):
    prefix = rng.choice([b"/api/provider/anthropic", b""])
    counting = rng.random() < 0.15
    doc = {"model": rng.choice(MODELS), "max_tokens": 64, "messages": _messages(rng)}
    if not counting:
        doc["stream"] = rng.random() < 0.4
    if rng.random() < 0.3:
        doc["system"] = "be brief"
    if rng.random() < 0.2:
        doc["tools"] = [{"name": "Read", "input_schema": {"type": "object", "properties": {}}}]
    path = prefix + (b"/v1/messages/count_tokens" if counting else b"/v1/messages")
    extra = [(b"anthropic-version", b"2023-06-01")]
    if rng.random() < 0.3:
        extra.append((b"X-Amp-Thread-Id", b"T-%d" % rng.randrange(100)))
    return _json_draft("anthropic", rng, path, doc, extra=extra)


def _chat(rng):
    prefix = rng.choice([b"/api/provider/openai", b""])
    path = prefix + rng.choice([b"/v1/chat/completions", b"/chat/completions", b"/v1/completions"])
    doc = {"model": rng.choice(MODELS), "messages": [{"role": "user", "content": "hi"}],
           "stream": rng.random() < 0.4}
    if doc["stream"] and rng.random() < 0.5:
        doc["stream_options"] = {"include_usage": True}
    return _json_draft("chat", rng, path, doc)


def _responses(rng):
    prefix = rng.choice([b"/api/provider/openai", b""])
    path = prefix + rng.choice([b"/v1/responses", b"/responses"])
    doc = {"model": rng.choice(MODELS), "input": rng.choice(["hi", [{"role": "user", "content": "hi"}]]),
           "stream": rng.random() < 0.4}
    return _json_draft("responses", rng, path, doc)


def _gemini(rng):
    root = rng.choice([b"/api/provider/google/v1beta", b"/v1beta", b"/v1",
                       b"/api/provider/google/v1beta1/publishers/google",
                       b"/v1beta1/projects/p/locations/us/publishers/google"])
    verb = rng.choice([b"generateContent", b"streamGenerateContent?alt=sse", b"countTokens"])
    model = rng.choice(MODELS).encode()
    doc = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    if rng.random() < 0.3:
        doc["generationConfig"] = {"maxOutputTokens": 64}
    return _json_draft("gemini", rng, root + b"/models/" + model + b":" + verb, doc)


def _model_list(rng):
    path = rng.choice([b"/v1/models", b"/api/provider/anthropic/v1/models", b"/api/provider/openai/v1/models",
                       b"/v1beta/models", b"/api/provider/google/v1beta/models", b"/models"])
    fields, query = _auth(rng)
    return Draft("model-list", b"GET", _with_query(path, query), [_host(), *fields])


_WEBSOCKET_FIELDS = [(b"Connection", b"Upgrade"), (b"Upgrade", b"websocket"),
                     (b"Sec-WebSocket-Version", b"13"), (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ==")]


def _amp(rng):
    choice = rng.randrange(9)
    if choice == 0:
        return _json_draft("amp", rng, b"/api/internal?getUserInfo", {"method": "getUserInfo", "params": {}})
    if choice == 1:
        return _json_draft("amp", rng, b"/api/telemetry", [{"event": "x", "n": 1}])
    if choice == 2:
        return _json_draft("amp", rng, b"/api/threads/T-%d/messages" % rng.randrange(99), {"text": "hi"})
    fields, query = _auth(rng)
    if choice == 3:
        path = b"/websocket" if rng.random() < 0.5 else b"/connect"
        return Draft("amp", b"GET", _with_query(path, query), [_host(), *fields, *_WEBSOCKET_FIELDS])
    path = rng.choice([b"/api/user", b"/api/meta", b"/api/threads/T-1", b"/threads.rss", b"/news.rss",
                       b"/api/ads", b"/api/tab/x"])
    return Draft("amp", b"GET", _with_query(path, query), [_host(), *fields])


def _browser(rng):
    path = rng.choice([b"/threads", b"/threads/T-1", b"/docs/guide", b"/settings", b"/auth/sign-in"])
    headers = [_host(), (b"Cookie", b"session=abc"), (b"Accept", b"text/html")]
    if rng.random() < 0.3:
        fields, query = _auth(rng)
        headers += fields
        path = _with_query(path, query)
    return Draft("browser", rng.choice([b"GET", b"GET", b"POST"]), path, headers)


def _actors(rng):
    headers = [_host(), (b"Authorization", b"Bearer actor-token-1")]
    choice = rng.randrange(3)
    if choice == 0:
        return Draft("actors", b"GET", b"/actors/a1/state", headers)
    if choice == 1:
        draft = Draft("actors", b"POST", b"/actors/a1/messages", headers + [(b"Content-Type", b"application/json")])
        draft.doc = {"message": "hi"}
        return draft
    headers += _WEBSOCKET_FIELDS + [(b"Sec-WebSocket-Protocol", b"actor.v1, token.abc")]
    return Draft("actors", b"GET", b"/actors/a1/ws", headers)


def _offline(rng):
    thread = "T-%d" % rng.randrange(50)
    method = rng.choice(["uploadThread", "uploadThread", "getThread", "getUserInfo", "loadPlugins",
                         "loadSkills", "getThreadLinkInfo", "somethingElse"])
    if method == "uploadThread":
        params = {"thread": {"id": thread, "title": "t", "messages": [{"role": "user", "text": "hi"}]}}
    elif method in ("getThread", "getThreadLinkInfo"):
        params = {"thread": thread}
    else:
        params = {}
    choice = rng.randrange(6)
    if choice < 4:
        draft = _json_draft("offline", rng, b"/api/internal?" + method.encode(), {"method": method, "params": params})
    elif choice == 4:
        draft = _json_draft("offline", rng, b"/api/telemetry", [{"event": "x"}])
    else:
        fields, query = _auth(rng)
        path = rng.choice([b"/news.rss", b"/threads.rss", b"/api/user", b"/api/threads/T-1"])
        draft = Draft("offline", b"GET", _with_query(path, query), [_host(), *fields])
    draft.offline = True
    return draft


_MANAGEMENT_READS = (b"config", b"ampcode", b"ampcode/model-mappings", b"ampcode/paid-fallback", b"api-keys",
                     b"api-keys/0", b"claude-api-key", b"claude-api-key/0", b"openai-compatibility/local",
                     b"request-retry", b"debug", b"logs", b"logs?after=5", b"error-logs",
                     b"error-logs/none.log", b"usage", b"no-such-key")
# Writes whose every accepted value leaves the fuzz's own config working.
_MANAGEMENT_WRITES = (
    (b"PUT", b"request-retry", {"value": 1}),
    (b"PUT", b"ampcode/force-model-mappings", {"value": False}),
    (b"PUT", b"ampcode/paid-fallback", {"value": "allow"}),
    (b"PATCH", b"ampcode/model-mappings", {"value": {"from": "fuzz-model", "to": "qwen-hostile"}}),
)


def _management(rng):
    carrier = rng.choice([b"Authorization", b"X-Management-Key"])
    value = (b"Bearer " if carrier == b"Authorization" else b"") + MANAGEMENT_KEY.encode()
    headers = [_host(), (carrier, value)]
    if rng.random() < 0.75:
        return Draft("management", b"GET", b"/v0/management/" + rng.choice(_MANAGEMENT_READS), headers)
    method, key, doc = rng.choice(_MANAGEMENT_WRITES)
    headers.append((b"Content-Type", b"application/json"))
    return Draft("management", method, b"/v0/management/" + key, headers, doc=json.loads(json.dumps(doc)))


def _healthz(rng):
    return Draft("healthz", rng.choice([b"GET", b"GET", b"HEAD", b"OPTIONS"]), b"/healthz", [_host()])


def _metrics(rng):
    fields, query = _auth(rng)
    return Draft("metrics", b"GET", _with_query(b"/metrics", query), [_host(), *fields])


def _unknown(rng):
    path = rng.choice([b"/", b"/nope", b"/favicon.ico", b"/api/provider/x/v2/unknown", b"/api/internalx",
                       b"/v1/unknown", b"/v0/managementx"])
    fields, query = _auth(rng)
    return Draft("unknown", rng.choice([b"GET", b"POST"]), _with_query(path, query), [_host(), *fields])


# Route families and their weights in the fuzz.
FAMILIES = (
    ("anthropic", 14, _anthropic),
    ("chat", 10, _chat),
    ("responses", 8, _responses),
    ("gemini", 10, _gemini),
    ("model-list", 3, _model_list),
    ("amp", 10, _amp),
    ("browser", 5, _browser),
    ("actors", 5, _actors),
    ("offline", 10, _offline),
    ("management", 10, _management),
    ("healthz", 5, _healthz),
    ("metrics", 4, _metrics),
    ("unknown", 3, _unknown),
)
_FAMILY_NAMES = [name for name, _, _ in FAMILIES]
_FAMILY_WEIGHTS = [weight for _, weight, _ in FAMILIES]
_FAMILY_BUILDERS = {name: builder for name, _, builder in FAMILIES}


# --- the fuzz: mutations, one layer each --------------------------------------------------


def _random_value(rng, depth=0):
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2 ** 31, 2 ** 64, -(2 ** 63), 10 ** 30])
    if kind == 3:
        return rng.choice([0.5, 1e308, -0.0, 1e-320])
    if kind in (4, 5):
        return rng.choice(["", "hi", "é", "\u0000", "\u2028", "\U0001f600", "claude-x(high)",
                           "x" * rng.randrange(1, 5000), "tool_use", "thinking", "assistant", "user"])
    if kind == 6:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["type", "role", "content", "text", "model", "stream", "parts", "messages", "input", "signature"]
    return {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _nodes(value, path=()):
    """Every (path, container) position in a JSON value, for picking one at random."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _nodes(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _nodes(item, path + (index,))
    return found


def _replace(value, path, new):
    if not path:
        return new
    parent = value
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = new
    return value


_WEIRD_MODELS = (None, 7, ["claude-sonnet-4-5"], {"id": "x"}, "", " ", "claude-sonnet-4-5 ", "CLAUDE-SONNET-4-5",
                 "claude-x(", "claude-x()", "claude-x(-1)", "claude-x(99999999999999999999)",
                 "claude-x(high)(low)", "a" * 20000, "claude\u0000x", "claude\r\nx", "../../etc/passwd",
                 "gemini-2.5-flash:generateContent", "mapped-MODEL", "\ud800")


def _m_json_shape(draft, rng):
    """Change the JSON value: a node replaced, a key dropped or added, the model or the
    stream flag made strange, the top level not an object."""
    if draft.doc is _NO_DOC:
        return None
    variant = rng.randrange(7)
    doc = draft.doc
    if variant == 0:
        path = rng.choice(_nodes(doc))
        draft.doc = _replace(doc, path, _random_value(rng))
        return "node"
    if variant == 1 and isinstance(doc, dict) and doc:
        del doc[rng.choice(list(doc))]
        return "drop-key"
    if variant == 2 and isinstance(doc, dict):
        doc[rng.choice(["model", "stream", "messages", "contents", "input", "tools", "thinking", "system",
                        "max_tokens", "reasoning", "generationConfig", "value", "method", "params"])] = _random_value(rng)
        return "set-key"
    if variant == 3 and isinstance(doc, dict):
        doc["model"] = rng.choice(_WEIRD_MODELS)
        return "model"
    if variant == 4 and isinstance(doc, dict):
        doc["stream"] = rng.choice([None, 1, "true", [], {"x": 1}, False])
        return "stream"
    if variant == 5:
        draft.doc = rng.choice([[], [doc], "x", 1, None, True])
        return "top-level"
    draft.doc = {"a": doc}
    return "wrapped"


def _m_json_text(draft, rng):
    """Change the JSON text: a repeated model key, NaN, lone surrogates, a BOM, trailing
    bytes, deep nesting, another Unicode encoding, broken syntax."""
    if draft.doc is _NO_DOC:
        return None
    text = json.dumps(draft.doc)
    variant = rng.randrange(11)
    head, rest = text[:1], text[1:]
    if variant == 0 and head == "{":
        body, name = ('{"model": "%s", ' % rng.choice(MODELS) + rest).encode(), "repeated-model"
    elif variant == 1 and head == "{":
        body, name = ('{"nan": NaN, "inf": Infinity, "big": 1e400, ' + rest).encode(), "nan"
    elif variant == 2 and head == "{":
        body, name = ('{"x": "\\ud800\\udfff\\udc00", "model": "\\ud83d", ' + rest).encode(), "surrogates"
    elif variant == 3:
        body, name = b"\xef\xbb\xbf" + text.encode(), "bom"
    elif variant == 4:
        body, name = text.encode() + rng.choice([b" x", b"}", b"\x00", b"{}", b"\n\n"]), "trailing"
    elif variant == 5:
        depth = rng.choice([100, 5000, 100000])
        body, name = b'{"model": "claude-sonnet-4-5", "messages": ' + b"[" * depth + b"]" * depth + b"}", "deep"
    elif variant == 6:
        body, name = text.encode(rng.choice(["utf-16", "utf-16-le", "utf-32"])), "utf16"
    elif variant == 7:
        body, name = text.replace('"', "'").encode(), "quotes"
    elif variant == 8 and len(text) > 2:
        body, name = text[: rng.randrange(1, len(text))].encode(), "cut"
    elif variant == 9:
        body, name = text.encode().replace(b"hi", b"h\xff\xfei"), "bad-utf8"
    else:
        body, name = text.replace("}", ",}", 1).encode(), "trailing-comma"
    draft.body = body
    draft.doc = _NO_DOC
    return name


def _gzip_bomb(size):
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * 65536
    parts = [compressor.compress(block) for _ in range(size // len(block))]
    return b"".join(parts) + compressor.flush()


_BOMB = None  # built on first use: 1 MiB of zeros, about 1 KiB compressed


def _m_coding(draft, rng):
    """Encode the body: gzip or deflate (valid, corrupt, truncated, doubled), a bomb past
    the body limit, a coding the proxy does not know."""
    global _BOMB
    body = _body_of(draft)
    variant = rng.randrange(9)
    name = {0: b"gzip", 1: b"deflate", 2: b"gzip", 3: b"gzip", 4: b"gzip, gzip", 5: b"gzip", 6: b"br",
            7: b"identity", 8: rng.choice([b"zstd", b"compress", b"x-unknown", b"GZIP", b"gzip;q=1"])}[variant]
    if variant == 0:
        body = gzip.compress(body)
    elif variant == 1:
        body = zlib.compress(body)
    elif variant == 2:
        compressed = bytearray(gzip.compress(body))
        compressed[len(compressed) // 2] ^= 0xFF
        body = bytes(compressed)
    elif variant == 3:
        body = gzip.compress(body)[: rng.randrange(1, 20)]
    elif variant == 4:
        body = gzip.compress(gzip.compress(body))
    elif variant == 5:
        if _BOMB is None:
            _BOMB = _gzip_bomb(1 << 20)
        body = _BOMB
    draft.body = body
    draft.doc = _NO_DOC
    draft.headers.append((b"Content-Encoding", name))
    return "coding-%s" % variant


def _body_of(draft):
    """The body bytes, writing the JSON value when it has not been written yet."""
    if draft.doc is not _NO_DOC:
        draft.body = json.dumps(draft.doc).encode()
        draft.doc = _NO_DOC
    return draft.body


def _m_body(draft, rng):
    """Change the body bytes: truncated, flipped, extended, emptied, random, oversized."""
    body = bytearray(_body_of(draft))
    variant = rng.randrange(7)
    if variant == 0 and body:
        del body[rng.randrange(len(body)):]
    elif variant == 1 and body:
        for _ in range(rng.randrange(1, 9)):
            body[rng.randrange(len(body))] = rng.randrange(256)
    elif variant == 2:
        at = rng.randrange(len(body) + 1)
        body[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    elif variant == 3:
        body = bytearray()
    elif variant == 4:
        body = bytearray(rng.getrandbits(8) for _ in range(rng.randrange(1, 2048)))
    elif variant == 5:
        body += b" " * (FUZZ_LIMITS["max-body-bytes"] + rng.randrange(1, 4096))
    else:
        body = bytearray(b"\x00" * rng.randrange(1, 64))
    draft.body = bytes(body)
    return "body-%d" % variant


def _chunks(body, rng):
    pieces = []
    at = 0
    while at < len(body):
        size = rng.randrange(1, 64)
        pieces.append(body[at : at + size])
        at += size
    return pieces


def _m_framing(draft, rng):
    """Frame the body differently: chunked (valid, with extensions, trailers or tricks),
    Content-Length wrong, doubled, listed or malformed, both framings, odd
    Transfer-Encoding values."""
    body = _body_of(draft)
    variant = rng.randrange(12)
    if variant <= 2:
        pieces = _chunks(body, rng)
        ext = [b"", b";a=b", b';q="x;y"'][variant]
        data = b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext, p) for p in pieces) + b"0\r\n"
        data += b"X-Trailer: t\r\n\r\n" if variant == 2 else b"\r\n"
        draft.headers.append((b"Transfer-Encoding", b"chunked"))
        draft.wire_body = data
        return "chunked-%d" % variant
    if variant == 3:
        trick = rng.choice([b"10000000000000005", b"-5", b" 5", b"5 ", b"0x5", b"00000000000000000005",
                            b"ffffffffffffffff", b"5\n", b"g", b""])
        draft.headers.append((b"Transfer-Encoding", b"chunked"))
        draft.wire_body = trick + b"\r\nhello\r\n0\r\n\r\n"
        return "chunk-trick"
    if variant == 4:
        draft.headers.append((b"Transfer-Encoding", b"chunked"))
        draft.wire_body = b"%x\r\n%s\r\n" % (len(body), body) if rng.random() < 0.5 else b"%x\r\n%s" % (len(body) + 5, body)
        return "chunked-unfinished"
    length = len(body)
    draft.wire_body = body
    if variant == 5:
        value = b"%d" % max(0, length + rng.choice([-10, -1, 1, 10, 1000]))
        draft.headers.append((b"Content-Length", value))
        return "length-off"
    if variant == 6:
        value = rng.choice([b"-1", b"+%d" % length, b"0x10", b" %d " % length, b"%d %d" % (length, length),
                            b"", b"99999999999999999999", b"1e3", b"\xd9\xa3", b"%d.0" % length, b"abc"])
        draft.headers.append((b"Content-Length", value))
        return "length-garbage"
    if variant == 7:
        other = length if rng.random() < 0.5 else length + 1
        draft.headers += [(b"Content-Length", b"%d" % length), (b"Content-Length", b"%d" % other)]
        return "length-twice"
    if variant == 8:
        other = length if rng.random() < 0.5 else length + 1
        draft.headers.append((b"Content-Length", b"%d, %d" % (length, other)))
        return "length-list"
    if variant == 9:
        draft.headers += [(b"Content-Length", b"%d" % length), (b"Transfer-Encoding", b"chunked")]
        rng.shuffle(draft.headers)
        return "length-and-chunked"
    coding = rng.choice([b"chunked, identity", b"identity", b"gzip, chunked", b"xchunked", b"Chunked",
                         b"CHUNKED", b"chunked, chunked", b" chunked", b"chunked\x0b", b"identity, chunked"])
    draft.headers.append((b"Transfer-Encoding", coding))
    if b"chunked" in coding.lower():
        draft.wire_body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    return "transfer-coding"


def _frame(draft):
    """Give an unframed draft its usual framing: a Content-Length for a body or a
    body-carrying method."""
    if draft.wire_body is not None:
        return
    body = _body_of(draft)
    draft.wire_body = body
    if body or draft.method in (b"POST", b"PUT", b"PATCH"):
        draft.headers.append((b"Content-Length", b"%d" % len(body)))


def _m_fields(draft, rng):
    """Change the header fields: dropped, doubled, recased, badly named or valued, folded,
    multiplied, oversized; odd Host, credentials, Connection, Upgrade or Expect."""
    headers = draft.headers
    variant = rng.randrange(15)
    named = [i for i, (name, _) in enumerate(headers) if name is not None]
    if variant == 0 and named:
        del headers[rng.choice(named)]
    elif variant == 1 and named:
        index = rng.choice(named)
        name, value = headers[index]
        headers.insert(index + rng.randrange(2), (name, value if rng.random() < 0.5 else value + b"x"))
    elif variant == 2:
        draft.headers = [(None if name is None else _recase(name, rng), value) for name, value in headers]
    elif variant == 3:
        headers.append((rng.choice([b"X A", b"", b"X:A", b"X\x00A", b"(x)", b"\xffx", b"X\tA"]), b"v"))
    elif variant == 4:
        headers.append((b"X-Odd", rng.choice([b"a\x00b", b"a\x7fb", b"\xff\xfe", b"caf\xc3\xa9", b"  padded  ",
                                                 b"a\x01b", b"\t", b"a\x1bb"])))
    elif variant == 5:
        headers.append((None, rng.choice([b" folded", b"\tfolded", b"no colon here", b":empty-name"])))
    elif variant == 6:
        headers += [(b"X-Many-%d" % i, b"v") for i in range(rng.choice([50, 500, 3000]))]
    elif variant == 7:
        headers.append((b"X-Big", b"a" * rng.choice([1000, 15000, 17000, 40000])))
    elif variant == 8:
        headers[:] = [h for h in headers if (h[0] or b"").lower() != b"host"]
        headers.append((b"Host", rng.choice([b"", b"a b", b"[::1]:8317", b"evil.example", b"x:99999",
                                             b"127.0.0.1:8317, evil"])))
        if rng.random() < 0.3:
            headers.append((b"Host", b"second.example"))
    elif variant == 9:
        headers.append(rng.choice([(b"Authorization", b"Bearer wrong"), (b"Authorization", b"Basic eDp5"),
                                   (b"Authorization", b"Bearer"), (b"x-api-key", b""),
                                   (b"x-api-key", CLIENT_KEY.encode() + b" "), (b"Authorization", b"bearer " + CLIENT_KEY.encode())]))
    elif variant == 10:
        headers.append((b"Connection", rng.choice([b"close", b"keep-alive", b"Upgrade", b"close, close",
                                                   b"TE, x-api-key", b"authorization", b"\x00"])))
    elif variant == 11:
        headers += rng.choice([_WEBSOCKET_FIELDS, _WEBSOCKET_FIELDS[:2], [(b"Upgrade", b"h2c")],
                               _WEBSOCKET_FIELDS[:3] + [(b"Sec-WebSocket-Key", b"short")]])
    elif variant == 12:
        headers.append((b"Expect", rng.choice([b"100-continue", b"100-Continue", b"200-ok", b"100-continue, x"])))
    elif variant == 13:
        headers.append((rng.choice([b"X-Forwarded-For", b"Forwarded", b"X-Real-IP"]), b"10.0.0.1"))
    else:
        headers.append((b"Content-Type", rng.choice([b"text/plain", b"application/json; charset=utf-16",
                                                     b"multipart/form-data; boundary=x", b"", b"application/json\x00"])))
    return "fields-%d" % variant


def _recase(name, rng):
    """``name`` with the case of each letter flipped at random."""
    return bytes(c ^ 0x20 if chr(c).isalpha() and c < 128 and rng.random() < 0.5 else c for c in name)


_TARGET_TRICKS = (
    lambda t: t + b"/../../v0/management/config",
    lambda t: t.replace(b"/", b"/./", 1),
    lambda t: t + b"/%2e%2e/x",
    lambda t: t + b"/%2E%2e/x",
    lambda t: t.replace(b"/", b"%2f", 2),
    lambda t: t.replace(b"/", b"%5C", 2),
    lambda t: t.replace(b"/", b"\\", 2),
    lambda t: b"/" + t,
    lambda t: b"http://evil.example" + t,
    lambda t: b"HTTPS://evil.example:443" + t,
    lambda t: b"http://user:pw@evil.example" + t,
    lambda t: b"*",
    lambda t: b"evil.example:443",
    lambda t: t + b"#fragment",
    lambda t: t + b"?%zz&&=&key",
    lambda t: t + b"/" + b"a" * 9000,
    lambda t: t + b"\xff\xfe",
    lambda t: t + b"\x01",
    lambda t: t + b"%00",
    lambda t: t + b"%C3%A9",
    lambda t: t.upper(),
    lambda t: b"",
    lambda t: t + b"?key=" + CLIENT_KEY.encode() + b"&key=wrong",
)


def _m_request_line(draft, rng):
    """Change the request line: the method, the target, the version, the spacing."""
    variant = rng.randrange(4)
    if variant == 0:
        methods = [b"GET", b"POST", b"HEAD", b"OPTIONS", b"TRACE", b"CONNECT", b"get", b"P0ST", b"M" * 300,
                   b"GE\x00T", b"PRI"]
        if draft.family != "management":
            methods += [b"PUT", b"DELETE", b"PATCH"]
        draft.method = rng.choice(methods)
    elif variant == 1:
        path, mark, query = draft.target.partition(b"?")
        draft.target = rng.choice(_TARGET_TRICKS)(path) + mark + query
    elif variant == 2:
        draft.version = rng.choice([b"HTTP/1.0", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.1x", b"http/1.1", b"HTTP/1",
                                    b"HTTP/1.2", b"HTTP/11", b""])
    else:
        sep = rng.choice([b"  ", b"\t", b" \t"])
        draft.line = draft.method + sep + draft.target + sep + draft.version
        if rng.random() < 0.5:
            draft.line = rng.choice([b" ", b"\r\n", b"\r\n\r\n", b"\n"]) + draft.line
    return "line-%d" % variant


def _m_wire(draft, rng):
    """Change the raw bytes: LF or CR line ends, a pipelined request or garbage after the
    request."""
    variant = rng.randrange(5)
    if variant == 0:
        draft.sep = b"\n"
    elif variant == 1:
        draft.sep = b"\r"
    elif variant == 2:
        draft.sep = b"\r\r\n"
    elif variant == 3:
        draft.trailing = b"GET /v0/management/config HTTP/1.1\r\nHost: x\r\n\r\n"
    else:
        draft.trailing = rng.choice([b"\r\n", b"garbage\r\n\r\n", b"\x00" * 10, b"0\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n"])
    return "wire-%d" % variant


# Mutation layers, in the order they apply; each is chosen with its weight.
LAYERS = (
    ("json-shape", 5, _m_json_shape),
    ("json-text", 4, _m_json_text),
    ("coding", 2, _m_coding),
    ("body", 3, _m_body),
    ("framing", 4, _m_framing),
    ("fields", 5, _m_fields),
    ("request-line", 3, _m_request_line),
    ("wire", 2, _m_wire),
)


def _serialise(draft):
    sep = draft.sep
    line = draft.line if draft.line is not None else b" ".join((draft.method, draft.target, draft.version))
    lines = [line] + [value if name is None else name + b": " + value for name, value in draft.headers]
    return sep.join(lines) + sep + sep + draft.wire_body + draft.trailing


@dataclass
class FuzzCase:
    """One fuzz request: its bytes and how to send them."""

    index: int
    family: str
    mutations: Tuple[str, ...]
    data: bytes
    method: str
    offline: bool
    source: str  # the client address it is sent from
    half_close: bool  # write EOF after the bytes (the harness judged them incomplete)


_FIELDS_LAYER = [name for name, _, _ in LAYERS].index("fields")
# The share of requests judged incomplete that are left open for the proxy's timeouts
# rather than half-closed.
LEFT_OPEN = 0.05


def fuzz_case(seed, index):
    """Case ``index`` of the fuzz seeded with ``seed`` (deterministic)."""
    rng = random.Random("%s:%d" % (seed, index))
    family = rng.choices(_FAMILY_NAMES, _FAMILY_WEIGHTS)[0]
    draft = _FAMILY_BUILDERS[family](rng)
    count = rng.choices((0, 1, 2, 3), (8, 50, 30, 12))[0]
    chosen = set(rng.choices(range(len(LAYERS)), [weight for _, weight, _ in LAYERS], k=count))
    applied = []
    for position, (name, _, mutate) in enumerate(LAYERS):
        if position == _FIELDS_LAYER:
            _frame(draft)  # the usual framing, unless the framing layer chose another
        if position in chosen:
            done = mutate(draft, rng)
            if done:
                applied.append("%s:%s" % (name, done))
    data = _serialise(draft)
    complete = message_complete(data)
    half_close = not complete and rng.random() >= LEFT_OPEN
    return FuzzCase(index, family, tuple(applied), data, draft.method.decode("latin-1"), draft.offline,
                    _source(draft, data), half_close)


def _source(draft, data):
    """LOOPBACK, unless a management case might send a wrong key (module docstring)."""
    if draft.family != "management":
        return LOOPBACK
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    key = MANAGEMENT_KEY.encode()
    carriers = [line for line in head.split(b"\r\n")
                if line.startswith((b"authorization:", b"x-management-key:"))]
    intact = carriers in ([b"authorization: bearer " + key], [b"x-management-key: " + key])
    return LOOPBACK if intact else GUESSER


# Cases of the full job (seed DEFAULT_SEED) that once found a fault beyond the first
# 5,000: the in-process test sends them as well, so ``make test`` keeps guarding them.
KNOWN_CASES = (
    63587,  # a UTF-8 BOM, and "stream" twice (once nested): was a 500 (repeated-key check)
)


def fuzz_cases(seed, start, count):
    """Cases ``start`` .. ``start + count - 1`` of ``seed``, built as they are needed."""
    for index in range(start, start + count):
        yield fuzz_case(seed, index)


# --- the fuzz: sending and judging ---------------------------------------------------------

HANG = "hang"
HUNG = "hung"
OPEN = "open"
TUNNEL = "tunnel"
CLOSED = "closed"
RESET = "reset"
GARBLED = "garbled"
MAX_EXAMPLES = 12


@dataclass
class Outcome:
    """What one case got: a status, or one of HANG, CLOSED, RESET, GARBLED."""

    result: object
    response: Optional[WireResponse] = None
    detail: str = ""
    seconds: float = 0.0


_EXAMPLE_KINDS = ("errors", "bad_gateway", "hangs", "garbled", "silent", "non_json")


@dataclass
class FuzzReport:
    """Counts of a fuzz run, with examples of everything that should not happen."""

    seed: int
    cases: int = 0
    seconds: float = 0.0
    results: collections.Counter = field(default_factory=collections.Counter)
    by_family: Dict[str, collections.Counter] = field(default_factory=dict)
    errors: List[str] = field(default_factory=list)  # 500s
    bad_gateway: List[str] = field(default_factory=list)  # 502/504 with healthy upstreams
    hangs: List[str] = field(default_factory=list)
    garbled: List[str] = field(default_factory=list)
    silent: List[str] = field(default_factory=list)  # closed, unanswered, though not half-closed
    non_json: List[str] = field(default_factory=list)  # error answers without a JSON body
    counts: collections.Counter = field(default_factory=collections.Counter)
    slowest: float = 0.0

    def add(self, case, outcome):
        self.cases += 1
        self.results[outcome.result] += 1
        self.by_family.setdefault(case.family, collections.Counter())[outcome.result] += 1
        self.slowest = max(self.slowest, outcome.seconds)
        note = "#%d %s %s -> %s %s" % (case.index, case.family, ",".join(case.mutations) or "unmutated",
                                      outcome.result, outcome.detail)
        result = outcome.result
        if result == 500:
            self._example("errors", note)
        elif result in (502, 504):
            self._example("bad_gateway", note)
        elif result == HANG:
            self._example("hangs", note)
        elif result == GARBLED:
            self._example("garbled", note)
        elif result in (CLOSED, RESET) and not case.half_close:
            self._example("silent", note)
        response = outcome.response
        if (response is not None and response.status >= 400 and case.method != "HEAD"
                and not response.is_json and response.status != 101):
            self._example("non_json", note)

    def merge(self, other):
        """Add the counts and examples of ``other`` (another slice of the same run)."""
        self.cases += other.cases
        self.seconds += other.seconds
        self.results.update(other.results)
        for family, results in other.by_family.items():
            self.by_family.setdefault(family, collections.Counter()).update(results)
        self.counts.update(other.counts)
        self.slowest = max(self.slowest, other.slowest)
        for kind in _EXAMPLE_KINDS:
            mine = getattr(self, kind)
            mine.extend(getattr(other, kind)[: max(0, MAX_EXAMPLES - len(mine))])

    def _example(self, kind, note):
        self.counts[kind] += 1
        examples = getattr(self, kind)
        if len(examples) < MAX_EXAMPLES:
            examples.append(note)


def _detail(response):
    if response is None:
        return ""
    try:
        message = json.loads(response.body.decode("utf-8"))["error"]["message"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        message = response.body[:80].decode("latin-1")
    return repr(str(message)[:100])


# Linux: bind() picks no port, connect() does (and may reuse one in TIME_WAIT towards
# another peer), so a long run from one source address cannot run out of ports.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


async def _connect(source, port):
    """A connection to 127.0.0.1:``port`` from address ``source``."""
    if source == LOOPBACK:
        return await asyncio.open_connection(LOOPBACK, port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        except OSError:
            pass  # not Linux: bind() picks a port, as it always did
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (LOOPBACK, port))
        return await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise


async def send_case(case, port, bound=FUZZ_BOUND):
    """Send one case and read its first answer; the ``Outcome`` (never raises)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        reader, writer = await asyncio.wait_for(_connect(case.source, port), bound)
    except (OSError, asyncio.TimeoutError) as exc:
        return Outcome(RESET, detail="connect: %r" % (exc,))
    try:
        return await _exchange(case, reader, writer, started + bound, loop)
    finally:
        writer.transport.abort()


async def _exchange(case, reader, writer, deadline, loop):
    """Write the case (and EOF when it says so), then read until a whole answer, the
    proxy's close, or ``deadline``."""
    try:
        writer.write(case.data)
        if case.half_close:
            writer.write_eof()
        await asyncio.wait_for(writer.drain(), max(0.0, deadline - loop.time()))
    except (OSError, asyncio.TimeoutError):
        pass  # the proxy stopped reading (it answered, or will): read what it said
    answers = ResponseReader()
    answers.expect(case.method)
    started = loop.time()
    while True:
        try:
            response = answers.next()
        except WireError as exc:
            return Outcome(GARBLED, detail=str(exc), seconds=loop.time() - started)
        if response is not None:
            return Outcome(response.status, response, _detail(response), loop.time() - started)
        if answers.eof:
            return Outcome(CLOSED, seconds=loop.time() - started)
        remaining = deadline - loop.time()
        if remaining <= 0:
            return Outcome(HANG, detail="no answer or close in %.0f s" % (deadline - started),
                           seconds=loop.time() - started)
        try:
            data = await asyncio.wait_for(reader.read(65536), remaining)
        except asyncio.TimeoutError:
            continue
        except OSError as exc:
            if answers.buffer:
                answers.feed_eof()
                continue
            return Outcome(RESET, detail=type(exc).__name__, seconds=loop.time() - started)
        if data:
            answers.feed(data)
        else:
            answers.feed_eof()


async def run_fuzz(seed, start, count, ports, concurrency=16, bound=FUZZ_BOUND, progress=None, extra=()):
    """Send cases ``start`` .. ``start + count`` of ``seed`` and then cases ``extra``,
    ``concurrency`` at a time; ``ports`` maps ``"online"`` and ``"offline"`` to the
    proxies' ports. Returns the ``FuzzReport``. ``progress(report)`` is called every 1,000
    cases."""
    report = FuzzReport(seed)
    cases = itertools.chain(fuzz_cases(seed, start, count), (fuzz_case(seed, index) for index in extra))
    loop = asyncio.get_running_loop()
    began = loop.time()

    async def worker():
        for case in cases:
            port = ports["offline" if case.offline else "online"]
            report.add(case, await send_case(case, port, bound))
            if progress is not None and report.cases % 1000 == 0:
                progress(report)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    report.seconds = loop.time() - began
    return report


def open_descriptors(pid="self"):
    """How many file descriptors process ``pid`` has open (Linux /proc)."""
    return len(os.listdir("/proc/%s/fd" % pid))


# Secrets of the client side: the proxy must never pass them to any upstream.
_CLIENT_SECRETS = (CLIENT_KEY, MANAGEMENT_KEY)
# Where a client key rides (docs/ROUTES.md): the proxy knows these carriers, so a key in
# one of them must never leave it. A key pasted anywhere else is opaque data to it.
_KEY_FIELDS = ("x-api-key", "x-goog-api-key", "x-management-key")
_KEY_PARAMS = ("key", "auth_token")


def _carried_secret(name, value):
    """True when field ``name`` (lowercase) carries a client secret."""
    value = value.strip()
    if name == "authorization":
        scheme, _, token = value.partition(" ")
        return scheme.lower() == "bearer" and token.strip() in _CLIENT_SECRETS
    return name in _KEY_FIELDS and value in _CLIENT_SECRETS


def upstream_leaks(requests):
    """The requests among ``requests`` (``fakes.Recorded``, as an upstream received them)
    that carry a client key or the management key in one of its carriers (a field or a
    query parameter the proxy reads keys from): one line each."""
    found = []
    for request in requests:
        places = ["field " + name for name, value in request.headers_list if _carried_secret(name.lower(), value)]
        for parameter in request.query.split("&"):
            name, _, value = parameter.partition("=")
            if name in _KEY_PARAMS and value in _CLIENT_SECRETS:
                places.append("query parameter " + name)
        if places:
            found.append("%s %s: a client secret in the %s" % (request.method, request.path[:60], ", ".join(places)))
    return found


# --- the smuggling corpus: an upstream that records bytes ------------------------------


@dataclass
class UpstreamRequest:
    """One request the upstream received, read strictly, with its framing judged."""

    connection: int
    method: str
    target: str
    fields: List[Tuple[str, str]]
    body: bytes
    complete: bool
    problems: List[str]
    tunnel: bytes = b""  # what came through after a 101, for an upgrade
    broken: bool = False  # framing too bad to answer: the connection was closed

    def values(self, name):
        return [value for key, value in self.fields if key == name]

    @property
    def upgrade(self):
        return any("websocket" in value.lower() for value in self.values("upgrade"))

    def summary(self):
        framing = ",".join("%s=%s" % (k, v) for k, v in self.fields if k in ("content-length", "transfer-encoding"))
        state = "" if self.complete else " (incomplete)"
        tunnel = " then %r through the tunnel" % self.tunnel[:40] if self.tunnel else ""
        return "%s %s [%s] body=%r%s%s" % (self.method, self.target, framing, self.body[:40], state, tunnel)


WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
# How long ``RawUpstream.since`` waits for requests still arriving.
SETTLE_SECONDS = 1.0


class RawUpstream(LoopThreadServer):
    """An HTTP/1.1 upstream on 127.0.0.1 that keeps connections alive, reads every request
    strictly (CRLF only; exactly one of Content-Length or chunked; one length value) and
    records it with the problems its framing had. Every request gets the same 200 JSON
    answer (an Anthropic message, so model routes accept it as well as Amp routes).
    A request cut short by the proxy is recorded as incomplete."""

    ANSWER = json.dumps(anthropic_message("smuggle")).encode()
    thread_name = "raw-upstream"

    def __init__(self):
        super().__init__()
        self.requests = []  # type: List[UpstreamRequest]
        self._lock = threading.Lock()
        self._busy = 0
        self._connections = 0

    def mark(self):
        """A point to read from later: (requests recorded, requests being received)."""
        with self._lock:
            return len(self.requests), self._busy

    def since(self, mark):
        """The requests recorded after ``mark``, once those begun since are recorded (or
        ``SETTLE_SECONDS`` passed: a request the proxy leaves half-sent stays out)."""
        recorded, busy = mark
        deadline = time.monotonic() + SETTLE_SECONDS
        while self._busy > busy and time.monotonic() < deadline:
            time.sleep(0.005)
        with self._lock:
            return list(self.requests[recorded:])

    async def handle(self, reader, writer):
        self._connections += 1
        connection = self._connections
        buffer = bytearray()
        try:
            while True:
                request = await self._read(reader, buffer, connection)
                if request is None:
                    return
                if not request.complete or request.broken:
                    return
                if request.upgrade:
                    await self._tunnel(request, reader, writer, buffer)
                    return
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(self.ANSWER), self.ANSWER))
                await writer.drain()
        except ConnectionError:
            return
        finally:
            writer.close()

    async def _tunnel(self, request, reader, writer, buffer):
        """Accept a WebSocket upgrade (101), then keep every byte that comes through it in
        ``request.tunnel`` until the proxy closes it (counted as busy meanwhile)."""
        key = (request.values("sec-websocket-key") or [""])[0].encode()
        accept = base64.b64encode(hashlib.sha1(key + WEBSOCKET_GUID).digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        self._busy += 1
        try:
            request.tunnel = bytes(buffer)
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                request.tunnel += data
        finally:
            self._busy -= 1

    def _record(self, request):
        with self._lock:
            self.requests.append(request)
        return request

    async def _read(self, reader, buffer, connection):
        """The next request on the connection, recorded, or None at a clean close between
        requests. ``_busy`` counts requests begun and not yet recorded (``settle``)."""
        end = await _fill_until(reader, buffer, b"\r\n\r\n")
        if end < 0:
            if buffer:
                return self._record(
                    UpstreamRequest(connection, "?", "?", [], bytes(buffer), False, ["bytes outside a request"]))
            return None
        self._busy += 1
        try:
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            return self._record(await self._request(reader, buffer, connection, head))
        finally:
            self._busy -= 1

    async def _request(self, reader, buffer, connection, head):
        lines = head.decode("latin-1").split("\r\n")
        problems = []
        if "\n" in head.decode("latin-1").replace("\r\n", "") or "\r" in head.decode("latin-1").replace("\r\n", ""):
            problems.append("bare CR or LF in the head")
        parts = lines[0].split(" ")
        method, target = (parts[0], parts[1]) if len(parts) == 3 else ("?", lines[0])
        fields = [_field(line.encode("latin-1")) for line in lines[1:]]
        lengths = [value for name, value in fields if name == "content-length"]
        codings = [value for name, value in fields if name == "transfer-encoding"]
        if lengths and codings:
            problems.append("both Content-Length and Transfer-Encoding")
        if len(lengths) > 1:
            problems.append("%d Content-Length fields" % len(lengths))
        if any(not value.isdigit() for value in lengths):
            problems.append("Content-Length %r is not one number" % lengths)
        if codings and [value.lower() for value in codings] != ["chunked"]:
            problems.append("Transfer-Encoding %r" % codings)
        if problems:  # framing this server cannot trust: recorded, then the connection closes
            return UpstreamRequest(connection, method, target, fields, b"", True, problems, broken=True)
        if codings:
            body, complete = await _read_chunked(reader, buffer)
        elif lengths:
            body, complete = await _read_exactly(reader, buffer, int(lengths[0]))
        else:
            body, complete = b"", True
        hosts = [value for name, value in fields if name == "host"]
        if hosts != ["127.0.0.1:%d" % self.port]:
            problems.append("Host %r, not the upstream's own authority" % hosts)
        return UpstreamRequest(connection, method, target, fields, body, complete, problems)


async def _fill_until(reader, buffer, marker, start=0):
    """Read into ``buffer`` until ``marker`` is in it; its index, or -1 at EOF."""
    while True:
        at = buffer.find(marker, start)
        if at >= 0:
            return at
        try:
            data = await reader.read(65536)
        except ConnectionError:
            data = b""
        if not data:
            return -1
        buffer += data


async def _read_exactly(reader, buffer, length):
    while len(buffer) < length:
        try:
            data = await reader.read(65536)
        except ConnectionError:
            data = b""
        if not data:
            body = bytes(buffer)
            buffer.clear()
            return body, False
        buffer += data
    body = bytes(buffer[:length])
    del buffer[:length]
    return body, True


async def _read_chunked(reader, buffer):
    parts = []
    while True:
        end = await _fill_until(reader, buffer, b"\r\n")
        if end < 0:
            return b"".join(parts), False
        size = int(bytes(buffer[:end]).split(b";")[0], 16)
        del buffer[: end + 2]
        if size == 0:
            while True:  # trailers, then the blank line
                end = await _fill_until(reader, buffer, b"\r\n")
                if end < 0:
                    return b"".join(parts), False
                line = bytes(buffer[:end])
                del buffer[: end + 2]
                if not line:
                    return b"".join(parts), True
        data, complete = await _read_exactly(reader, buffer, size + 2)
        if not complete:
            return b"".join(parts) + data, False
        parts.append(data[:-2])


# --- the smuggling corpus: vectors ---------------------------------------------------------

# The route most vectors use: an Amp route, forwarded upstream with its body.
AMP_PATH = b"/api/threads/smuggle"
AUTH = b"Authorization: Bearer " + CLIENT_KEY.encode() + b"\r\n"
PROBE = b"GET /healthz HTTP/1.1\r\nHost: probe\r\n\r\n"


@dataclass(frozen=True)
class Vector:
    """One smuggling attempt and what must come of it.

    ``statuses``: the answers, in order, to the bytes sent (before any probe). ``closed``:
    the proxy must close the connection after them (else it must answer a probe on it, or,
    after a 101, hand it over as a tunnel). ``upstream``: the complete requests the upstream
    must receive, as (method, target, body). ``half_close``: EOF is sent after the bytes.
    ``pending``: the unfinished work the vector waits for, named in ``make hostile``'s
    details while it misses (a vector added for a fault found before its fix)."""

    name: str
    what: str
    data: bytes
    statuses: Tuple[int, ...]
    closed: bool
    upstream: Tuple[Tuple[str, str, bytes], ...] = ()
    half_close: bool = False
    pending: str = ""
    tunnel: bytes = b""  # what must come through an upgrade's tunnel (nothing was sent into it)


def _post(fields, body=b"", path=AMP_PATH, version=b"HTTP/1.1"):
    return b"POST " + path + b" " + version + b"\r\nHost: x\r\n" + AUTH + fields + b"\r\n" + body


def _forwarded(body, path=AMP_PATH):
    return (("POST", path.decode(), body),)


_HELLO = _forwarded(b"hello")
_CHUNKED = b"Transfer-Encoding: chunked\r\n"
_SMUGGLED = b"GET /v0/management/config HTTP/1.1\r\nHost: x\r\n\r\n"
_UPGRADE = (b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
MODEL_PATH = b"/api/provider/anthropic/v1/messages"


def _vectors():
    v = []

    def add(name, what, data, statuses, closed, upstream=(), **extra):
        v.append(Vector(name, what, data, tuple(statuses), closed, tuple(upstream), **extra))

    # Content-Length and Transfer-Encoding together, either order.
    add("cl-te", "Content-Length then Transfer-Encoding",
        _post(b"Content-Length: 5\r\n" + _CHUNKED, b"0\r\n\r\n" + _SMUGGLED), [400], True)
    add("te-cl", "Transfer-Encoding then Content-Length",
        _post(_CHUNKED + b"Content-Length: 4\r\n", b"5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n"), [400], True)
    add("te-cl-obfuscated", "Transfer-Encoding: chunked with a tab, then Content-Length",
        _post(b"Transfer-Encoding:\tchunked\r\nContent-Length: 3\r\n", b"0\r\n\r\n"), [400], True)
    # Repeated and listed Content-Length.
    add("cl-twice-equal", "two equal Content-Length fields",
        _post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"), [200], False, _HELLO)
    add("cl-twice-different", "two different Content-Length fields",
        _post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"), [400], True)
    add("cl-list-equal", "Content-Length: 5, 5",
        _post(b"Content-Length: 5, 5\r\n", b"hello"), [200], False, _HELLO)
    add("cl-list-different", "Content-Length: 5, 6",
        _post(b"Content-Length: 5, 6\r\n", b"hello!"), [400], True)
    for name, value in (("cl-plus", b"+5"), ("cl-negative", b"-5"), ("cl-hex", b"0x5"), ("cl-space", b"5 5"),
                        ("cl-empty", b""), ("cl-arabic-digit", b"\xd9\xa5")):
        add(name, "Content-Length: %s" % value.decode("latin-1"),
            _post(b"Content-Length: " + value + b"\r\n", b"hello"), [400], True)
    add("cl-overflow", "a 20-digit Content-Length", _post(b"Content-Length: 18446744073709551621\r\n", b"hello"),
        [413], True)
    add("cl-leading-zeros", "Content-Length: 0005", _post(b"Content-Length: 0005\r\n", b"hello"), [200], False,
        _HELLO)
    # Line folding, bare LF, bare CR.
    add("obs-fold", "a folded header line", _post(b"X-A: a\r\n b\r\nContent-Length: 5\r\n", b"hello"), [400], True)
    add("obs-fold-te", "Transfer-Encoding folded onto the next line",
        _post(b"Transfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n", b"hello"), [400], True)
    add("bare-lf", "header lines ended by LF only",
        b"POST " + AMP_PATH + b" HTTP/1.1\nHost: x\n" + AUTH.replace(b"\r\n", b"\n") + b"Content-Length: 5\n\nhello",
        [400], True)
    add("bare-lf-one-line", "one header line ended by LF",
        _post(b"X-A: a\nContent-Length: 5\r\n", b"hello"), [400], True)
    add("bare-cr", "a bare CR inside a header value", _post(b"X-A: a\rb\r\nContent-Length: 5\r\n", b"hello"),
        [400], True)
    add("bare-lf-chunk", "a chunk-size line ended by LF",
        _post(_CHUNKED, b"5\nhello\r\n0\r\n\r\n"), [400], True)
    # Chunk-size tricks.
    add("chunk-hex-overflow", "a 17-digit chunk size that wraps to 5 in 64 bits",
        _post(_CHUNKED, b"10000000000000005\r\nhello\r\n0\r\n\r\n"), [400], True)
    add("chunk-negative", "chunk size -5", _post(_CHUNKED, b"-5\r\nhello\r\n0\r\n\r\n"), [400], True)
    add("chunk-0x", "chunk size 0x5", _post(_CHUNKED, b"0x5\r\nhello\r\n0\r\n\r\n"), [400], True)
    add("chunk-extension", "a chunk extension", _post(_CHUNKED, b"5;name=value\r\nhello\r\n0\r\n\r\n"), [200],
        False, _HELLO)
    add("chunk-extension-quoted", "a quoted chunk extension holding ';'",
        _post(_CHUNKED, b'5;a="b;c"\r\nhello\r\n0\r\n\r\n'), [200], False, _HELLO)
    add("chunk-extension-control", "a control byte in a chunk extension",
        _post(_CHUNKED, b"5;a=\x01\r\nhello\r\n0\r\n\r\n"), [400], True)
    add("chunk-leading-zeros", "chunk size 0005", _post(_CHUNKED, b"0005\r\nhello\r\n0000\r\n\r\n"), [200], False,
        _HELLO)
    add("chunk-too-many-zeros", "a chunk size of 20 digits", _post(_CHUNKED, b"00000000000000000005\r\nhello\r\n0\r\n\r\n"),
        [400], True)
    add("chunk-space-before", "chunk size ' 5'", _post(_CHUNKED, b" 5\r\nhello\r\n0\r\n\r\n"), [400], True)
    add("chunk-space-after", "chunk size '5 ': whitespace tolerated, the body re-framed",
        _post(_CHUNKED, b"5 \r\nhello\r\n0\r\n\r\n"), [200], False, _HELLO)
    add("chunk-size-short", "a chunk longer than its size", _post(_CHUNKED, b"3\r\nhello\r\n0\r\n\r\n"), [400], True)
    add("chunk-uppercase-hex", "chunk size A", _post(_CHUNKED, b"A\r\n0123456789\r\n0\r\n\r\n"), [200], False,
        _forwarded(b"0123456789"))
    add("chunk-late-error", "a valid chunk, then a bad size line",
        _post(_CHUNKED, b"5\r\nhello\r\nzz\r\n0\r\n\r\n"), [400], True)
    add("chunk-unfinished", "no last chunk, then EOF", _post(_CHUNKED, b"5\r\nhello\r\n"), [400], True,
        half_close=True)
    add("chunk-trailer-length", "a Content-Length in the trailer section",
        _post(_CHUNKED, b"5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n"), [200], False, _HELLO)
    # Transfer-Encoding variants.
    for name, value, status in (("te-chunked-identity", b"chunked, identity", 501),
                                ("te-identity-chunked", b"identity, chunked", 501),
                                ("te-gzip-chunked", b"gzip, chunked", 501),
                                ("te-xchunked", b"xchunked", 501),
                                ("te-chunked-twice", b"chunked, chunked", 501),
                                ("te-empty", b"", 400),
                                ("te-vertical-tab", b"\x0bchunked", 400)):
        add(name, "Transfer-Encoding: %r" % value.decode("latin-1"),
            _post(b"Transfer-Encoding: " + value + b"\r\n", b"5\r\nhello\r\n0\r\n\r\n"), [status], True)
    add("te-two-fields", "two Transfer-Encoding: chunked fields",
        _post(_CHUNKED + _CHUNKED, b"5\r\nhello\r\n0\r\n\r\n"), [501], True)
    for name, value in (("te-capitalised", b"Chunked"), ("te-upper", b"CHUNKED"), ("te-tab", b"\tchunked")):
        add(name, "Transfer-Encoding: %r" % value.decode(),
            _post(b"Transfer-Encoding: " + value + b"\r\n", b"5\r\nhello\r\n0\r\n\r\n"), [200], False, _HELLO)
    add("te-space-before-colon", "'Transfer-Encoding : chunked'",
        _post(b"Transfer-Encoding : chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"), [400], True)
    add("te-http10", "Transfer-Encoding in an HTTP/1.0 request",
        _post(_CHUNKED, b"5\r\nhello\r\n0\r\n\r\n", version=b"HTTP/1.0"), [400], True)
    # Expect: 100-continue.
    add("expect-bad-json", "Expect: 100-continue and a body that is not JSON, on a model route",
        _post(b"Expect: 100-continue\r\nContent-Length: 9\r\n", b"not json!", path=b"/api/provider/anthropic/v1/messages"),
        [400], False)
    add("expect-bad-chunks", "Expect: 100-continue and bad chunk framing",
        _post(b"Expect: 100-continue\r\n" + _CHUNKED, b"zz\r\nhello\r\n0\r\n\r\n"), [400], True)
    add("expect-unauthorised", "Expect: 100-continue, no key, the body never sent",
        b"POST " + AMP_PATH + b" HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", [401], True)
    # Pipelining behind a valid request.
    # The model-call paths: forwarded as received (Amp credits), or to a local provider.
    model = b'{"model":"unknown-model","max_tokens":1}'
    add("model-credits-cl-twice", "a model call for Amp credits with two equal Content-Length fields",
        _post(b"Content-Length: %d\r\nContent-Length: %d\r\n" % (len(model), len(model)), model, path=MODEL_PATH),
        [200], False, (("POST", MODEL_PATH.decode(), model),))
    local = b'{"model":"claude-sonnet-4-5","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}'
    add("model-local-chunked", "a chunked model call for a local provider",
        _post(_CHUNKED, b"%x\r\n%s\r\n0\r\n\r\n" % (len(local), local), path=MODEL_PATH), [200], False,
        (("POST", "/v1/messages", local),))
    add("pipeline-then-cl-te", "a valid GET, then a CL+TE request",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + _post(b"Content-Length: 5\r\n" + _CHUNKED, b"0\r\n\r\n"),
        [200, 400], True)
    add("pipeline-two-posts", "two valid POSTs in one write",
        _post(b"Content-Length: 5\r\n", b"hello") + _post(b"Content-Length: 5\r\n", b"world"), [200, 200], False,
        _forwarded(b"hello") + _forwarded(b"world"))
    add("pipeline-body-holds-request", "a body that holds a whole request",
        _post(b"Content-Length: %d\r\n" % len(_SMUGGLED), _SMUGGLED), [200], False, _forwarded(_SMUGGLED))
    add("pipeline-chunked-then-request", "a chunked POST, then an unauthorised management call",
        _post(_CHUNKED, b"5\r\nhello\r\n0\r\n\r\n") + _SMUGGLED, [200, 401], False, _HELLO)
    add("pipeline-then-garbage", "a valid POST, then garbage",
        _post(b"Content-Length: 5\r\n", b"hello") + b"GARBAGE\r\n\r\n", [200, 400], True, _HELLO)
    add("pipeline-short-length", "a Content-Length shorter than the body: the rest is a new request",
        _post(b"Content-Length: 3\r\n", b"hel" + b"lo\r\n\r\n"), [200, 400], True, _forwarded(b"hel"))
    # Absolute-form targets: the path counts, the host never does.
    add("absolute-form", "GET http://evil.example/api/threads/smuggle",
        b"GET http://evil.example" + AMP_PATH + b" HTTP/1.1\r\nHost: evil.example\r\n" + AUTH + b"\r\n", [200], False,
        (("GET", AMP_PATH.decode(), b""),))
    add("absolute-form-dot-segments", "an absolute-form target with '..' segments",
        b"GET http://x/api/threads/../../v0/management/config HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n", [400], False)
    add("authority-form", "CONNECT evil.example:443", b"CONNECT evil.example:443 HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n",
        [404], False)
    add("asterisk-form", "OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", [403], False)
    # Dot segments and encoded slashes.
    for name, path in (("dot-dot", b"/api/threads/../../v0/management/config"),
                       ("dot", b"/api/threads/./smuggle"),
                       ("pct-dot-dot", b"/api/threads/%2e%2e/%2e%2e/v0/management/config"),
                       ("pct-dot-dot-upper", b"/api/threads/%2E%2E/x"),
                       ("pct-slash", b"/api/threads%2f..%2fv0%2fmanagement"),
                       ("pct-backslash", b"/api/threads%5c..%5cx"),
                       ("raw-backslash", b"/api/threads\\..\\x"),
                       ("healthz-dot-dot", b"/healthz/../api/threads/x")):
        add(name, path.decode(), b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n", [400], False)
    add("double-encoded", "%252e%252e is data, forwarded as sent",
        b"GET /api/threads/%252e%252e/x HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n", [200], False,
        (("GET", "/api/threads/%252e%252e/x", b""),))
    # Other head tricks.
    add("host-twice", "two Host fields", b"GET " + AMP_PATH + b" HTTP/1.1\r\nHost: a\r\nHost: b\r\n" + AUTH + b"\r\n",
        [400], True)
    add("host-missing", "an HTTP/1.1 request without Host", b"GET " + AMP_PATH + b" HTTP/1.1\r\n" + AUTH + b"\r\n",
        [400], True)
    add("upgrade", "a WebSocket upgrade", b"GET /websocket HTTP/1.1\r\nHost: x\r\n" + AUTH + _UPGRADE + b"\r\n",
        [101], False, (("GET", "/websocket", b""),))
    add("upgrade-absolute-form", "a WebSocket upgrade to http://evil.example/websocket",
        b"GET http://evil.example/websocket HTTP/1.1\r\nHost: evil.example\r\n" + AUTH + _UPGRADE + b"\r\n",
        [101], False, (("GET", "/websocket", b""),))
    add("upgrade-with-length-body", "a WebSocket upgrade carrying a Content-Length body: none of it tunnelled",
        b"GET /websocket HTTP/1.1\r\nHost: x\r\n" + AUTH + _UPGRADE + b"Content-Length: 5\r\n\r\nhello", [101], False,
        (("GET", "/websocket", b""),))
    add("upgrade-with-chunked-body", "a WebSocket upgrade carrying a chunked body: none of it tunnelled",
        b"GET /websocket HTTP/1.1\r\nHost: x\r\n" + AUTH + _UPGRADE + _CHUNKED + b"\r\n5\r\nhello\r\n0\r\n\r\n",
        [101], False, (("GET", "/websocket", b""),))
    add("nul-in-field", "a NUL in a field value", _post(b"X-A: a\x00b\r\nContent-Length: 5\r\n", b"hello"), [400], True)
    add("space-in-name", "a space inside a field name", _post(b"X A: b\r\nContent-Length: 5\r\n", b"hello"), [400], True)
    add("huge-head", "a 70 KB field", _post(b"X-A: " + b"a" * 70000 + b"\r\nContent-Length: 5\r\n", b"hello"),
        [431], True)
    add("http2-preface", "the HTTP/2 connection preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", [505], True)
    add("http09", "an HTTP/0.9 request line", b"GET /healthz\r\n\r\n", [400], True)
    return v


VECTORS = tuple(_vectors())


@dataclass
class VectorResult:
    """What a vector got, and how that differs from what it must get (``problems``)."""

    vector: Vector
    answers: List[WireResponse]
    connection: str  # OPEN, CLOSED, or HUNG (neither an answer nor a close in time)
    upstream: List[UpstreamRequest]
    probe: Optional[int]
    problems: List[str]
    seconds: float

    @property
    def ok(self):
        return not self.problems

    @property
    def statuses(self):
        return [answer.status for answer in self.answers]

    def summary(self):
        seen = "; ".join(r.summary() for r in self.upstream) or "nothing"
        return "%s, %s, upstream got %s" % (self.statuses or "no answer", self.connection, seen)


def run_vector(vector, port, upstream, bound=3.0):
    """Send ``vector`` to the proxy at ``port`` (whose Amp upstream and Anthropic provider
    are ``upstream``, a ``RawUpstream``) and judge it."""
    mark = upstream.mark()
    started = time.monotonic()
    with socket.create_connection((LOOPBACK, port), timeout=bound) as sock:
        sock.sendall(vector.data)
        if vector.half_close:
            sock.shutdown(socket.SHUT_WR)
        reader = ResponseReader()
        answers, state = _read_answers(sock, reader, len(vector.statuses), bound)
        probe = None
        if state == OPEN and answers and answers[-1].status == 101:
            state = TUNNEL  # the connection now belongs to the upgraded protocol
        if state == OPEN:
            if vector.half_close:
                state = _closes(sock, reader, bound)
            else:
                probe, state = _probe(sock, reader, bound)
    received = upstream.since(mark)
    result = VectorResult(vector, answers, state, received, probe, [], time.monotonic() - started)
    result.problems = _judge(vector, result)
    return result


def _read_answers(sock, reader, wanted, bound):
    """Read up to ``wanted`` answers: (the ``WireResponse`` list, OPEN, CLOSED or HUNG)."""
    answers = []
    deadline = time.monotonic() + bound
    for _ in range(wanted):
        reader.expect("POST")
    while len(answers) < wanted:
        response = _next_response(sock, reader, deadline)
        if not isinstance(response, WireResponse):
            return answers, response
        answers.append(response)
    return answers, CLOSED if reader.eof else OPEN


def _closes(sock, answers, bound):
    """CLOSED when the proxy closes the connection within ``bound`` seconds, sending
    nothing more (after a half-close, where no probe can be sent); else OPEN or HUNG."""
    response = _next_response(sock, answers, time.monotonic() + bound)
    return OPEN if isinstance(response, WireResponse) else response


def _probe(sock, answers, bound):
    """Send a GET /healthz on the connection: (its status or None, OPEN/CLOSED/HUNG)."""
    try:
        sock.sendall(PROBE)
    except OSError:
        return None, CLOSED
    answers.expect("GET")
    response = _next_response(sock, answers, time.monotonic() + bound)
    if not isinstance(response, WireResponse):
        return None, response
    return response.status, OPEN


def _next_response(sock, answers, deadline):
    """The next response; CLOSED when the connection closed (or broke) first, HUNG when
    ``deadline`` passed first."""
    while True:
        try:
            response = answers.next()
        except WireError:
            return CLOSED
        if response is not None:
            return response
        if answers.eof:
            return CLOSED
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return HUNG
        except OSError:
            data = b""
        if data:
            answers.feed(data)
        else:
            answers.feed_eof()


def _judge(vector, result):
    problems = []
    if result.statuses != list(vector.statuses):
        problems.append("answers %s, expected %s" % (result.statuses or "none", list(vector.statuses)))
    expected = CLOSED if vector.closed else (TUNNEL if 101 in vector.statuses else OPEN)
    if result.connection != expected:
        problems.append("connection %s, expected %s" % (result.connection, expected))
    if result.connection == OPEN and not vector.half_close and result.probe != 200:
        problems.append("a probe on the kept connection got %s (desynchronised)" % result.probe)
    for answer in result.answers:
        if answer.status >= 400 and not answer.is_json:
            problems.append("the %d answer has no JSON body: %r" % (answer.status, answer.body[:80]))
    complete = [r for r in result.upstream if r.complete]
    got = [(r.method, r.target, r.body) for r in complete]
    if got != list(vector.upstream):
        problems.append("upstream got %s, expected %s" % (
            "; ".join(r.summary() for r in complete) or "nothing",
            "; ".join("%s %s body=%r" % item for item in vector.upstream) or "nothing"))
    for request in result.upstream:
        for problem in request.problems:
            problems.append("upstream got: %s (%s)" % (problem, request.summary()))
    tunnel = b"".join(request.tunnel for request in result.upstream)
    if tunnel != vector.tunnel:
        problems.append("the tunnel carried %r upstream, expected %r" % (tunnel[:60], vector.tunnel))
    return problems


def smuggling_document(upstream_url, limits=None):
    """The corpus's config: the fuzz's, so its Amp upstream and its Anthropic provider
    (the routes the vectors use) are both ``upstream_url``, a ``RawUpstream``."""
    return online_document(upstream_url, limits)
