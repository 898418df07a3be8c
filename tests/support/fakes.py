"""Fake upstreams for the test-suite: a recording HTTP/1.1 server and a WebSocket echo.

Strategy: an independent peer. The fakes are built on raw ``asyncio.start_server`` with
their own few lines of HTTP/1.1 parsing, and import nothing from ``cliproxy``, so a bug in
the proxy's parser or server cannot hide in both ends of a test. Each fake runs its own
event loop in a daemon thread, so synchronous pytest tests can drive it with
``http.client``, raw sockets or the proxy under test. Requests are recorded before they are
answered, in arrival order.

API
---
``FakeUpstream(default=None)`` (also a context manager: ``with FakeUpstream() as up:``)
    ``.start()`` binds 127.0.0.1:0 and returns the fake; ``.close()`` stops it and closes
    every open connection. ``.url`` is ``http://127.0.0.1:PORT``; ``.host``, ``.port``.
    ``.route(method, match, reply)``: ``method`` is a method name or ``"*"``; ``match`` is
    a path prefix or a callable ``(Recorded) -> bool``; the first matching route, in the
    order added, answers. ``.default`` answers when no route matches (initially a 404 JSON
    body naming the path). ``.requests`` is the list of ``Recorded``;
    ``.wait_for_requests(n, timeout=5.0)`` blocks until ``n`` were recorded.
``Recorded``: ``method, path, query, target, headers`` (dict, lowercase names, last value
    wins), ``headers_list`` (``(name, value)`` pairs as received), ``body`` (de-chunked).

Replies are value objects. ``status`` and ``headers`` (a dict or ``(name, value)`` pairs,
replacing the default field of the same name) can be set on JSONReply, SSEReply and
GzipQuirkReply; the others have no head of their own.

``JSONReply(status=200, body=None, headers=None)``
    ``body``: a dict or list (sent as JSON), or bytes (sent as is); ``None`` sends ``{}``.
``SSEReply(events, delay=0.0, split_at=None, gzip_without_header=False, die_after=None,
status=200, headers=None)``
    A chunked ``text/event-stream`` with one HTTP chunk per event. ``delay``: seconds
    before each event after the first. ``split_at``: offsets into the concatenated events
    where an extra chunk boundary is made, followed by a pause of at least ``SPLIT_PAUSE``
    so the pieces reach the peer in separate reads. ``gzip_without_header``: the stream is
    gzip-compressed (flushed per chunk) without a ``Content-Encoding`` field.
    ``die_after``: after that many events, close the connection without the last chunk.
``RawReply(data)``: ``data`` written as is, then the connection is closed.
``DropReply()``: the connection is closed before any response byte.
``HangReply()``: nothing is sent; the connection stays open until the client or the fake
    closes it.
``GzipQuirkReply(body, status=200, headers=None)``: ``body`` gzip-compressed with
    ``Content-Length`` and no ``Content-Encoding`` (what some Amp endpoints send).
``Sequence(replies)``: the n-th request it answers gets ``replies[n]``; the last repeats.
A callable ``(Recorded) -> reply`` is also accepted wherever a reply is.

``FakeWebSocketEcho(default=None)``: a ``FakeUpstream`` that also accepts RFC 6455
upgrades. It validates ``Sec-WebSocket-Key`` and ``Sec-WebSocket-Version`` (400 when
wrong), answers ``101`` with the matching ``Sec-WebSocket-Accept`` (and the first offered
``Sec-WebSocket-Protocol``, selected, when the client offers any), then echoes every byte
(no framing) until the client closes; ``.closed`` (a ``threading.Event``) is set then.
Upgrade requests are recorded like any other.

``sse_events(*payloads, event_names=None) -> List[bytes]``: one SSE event per payload (a
dict is sent as compact JSON, a str as is, e.g. ``"[DONE]"``). Event names come from
``event_names`` (``None`` entries: no ``event:`` line) or, by default, from each dict's
``"type"`` key when present, as Anthropic and OpenAI Responses streams do.
"""

import asyncio
import base64
import binascii
import gzip
import hashlib
import json
import threading
import zlib
from dataclasses import dataclass
from http import HTTPStatus
from typing import Callable, Dict, List, Optional, Tuple, Union

from tests.support.loop_thread import LoopThreadServer

__all__ = [
    "FakeUpstream",
    "FakeWebSocketEcho",
    "Recorded",
    "JSONReply",
    "SSEReply",
    "RawReply",
    "DropReply",
    "HangReply",
    "GzipQuirkReply",
    "Sequence",
    "sse_events",
]

HEAD_LIMIT = 256 * 1024  # bytes: larger than any header block the proxy forwards
SPLIT_PAUSE = 0.01  # seconds between the pieces of a split_at boundary
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3

HeaderSpec = Union[None, Dict[str, str], List[Tuple[str, str]]]


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    query: str
    target: str
    headers: Dict[str, str]
    headers_list: List[Tuple[str, str]]
    body: bytes


class _BadInput(Exception):
    """The client sent something the fake cannot parse; the connection is closed."""


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    request: Recorded
    keep_alive: bool


# --- replies ---------------------------------------------------------------------------


class _Reply:
    """Base of the reply value objects: ``_serve`` answers one request and returns whether
    the connection may carry another one."""

    async def _serve(self, conn):
        raise NotImplementedError


@dataclass
class JSONReply(_Reply):
    status: int = 200
    body: Union[None, dict, list, bytes] = None
    headers: HeaderSpec = None

    async def _serve(self, conn):
        if isinstance(self.body, (bytes, bytearray)):
            body = bytes(self.body)
        else:
            body = json.dumps({} if self.body is None else self.body).encode("utf-8")
        defaults = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        head = _head(self.status, defaults, self.headers, conn.keep_alive)
        conn.writer.write(head if conn.request.method == "HEAD" else head + body)
        await conn.writer.drain()
        return conn.keep_alive


@dataclass
class SSEReply(_Reply):
    events: List[bytes]
    delay: float = 0.0
    split_at: Optional[List[int]] = None
    gzip_without_header: bool = False
    die_after: Optional[int] = None
    status: int = 200
    headers: HeaderSpec = None
    # Head, every event and the last chunk in one write, as nginx sends a small file.
    whole: bool = False

    async def _serve(self, conn):
        events = self.events if self.die_after is None else self.events[: self.die_after]
        defaults = [
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-cache"),
            ("Transfer-Encoding", "chunked"),
        ]
        head = _head(self.status, defaults, self.headers, conn.keep_alive)
        if self.whole:
            conn.writer.write(head + b"".join(_chunk(event) for event in events) + b"0\r\n\r\n")
            await conn.writer.drain()
            return conn.keep_alive
        conn.writer.write(head)
        await conn.writer.drain()
        compressor = None
        if self.gzip_without_header:
            compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
        for index, (piece, at_event_start) in enumerate(self._pieces(events)):
            if index:
                pause = self.delay if at_event_start else max(self.delay, SPLIT_PAUSE)
                if pause:
                    await asyncio.sleep(pause)
            if compressor is not None:
                piece = compressor.compress(piece) + compressor.flush(zlib.Z_SYNC_FLUSH)
            conn.writer.write(_chunk(piece))
            await conn.writer.drain()
        if self.die_after is not None:
            return False  # closed without the last chunk: a truncated body
        if compressor is not None:
            conn.writer.write(_chunk(compressor.flush()))
        conn.writer.write(b"0\r\n\r\n")
        await conn.writer.drain()
        return conn.keep_alive

    def _pieces(self, events):
        """Yield ``(bytes, starts_an_event)`` for every write, cut at event ends and at
        ``split_at`` offsets."""
        stream = b"".join(events)
        event_starts = set()
        offset = 0
        for event in events:
            event_starts.add(offset)
            offset += len(event)
        cuts = set(event_starts)
        cuts.update(at for at in (self.split_at or ()) if 0 < at < len(stream))
        cuts.add(len(stream))
        ordered = sorted(cuts)
        for begin, end in zip(ordered, ordered[1:]):
            if end > begin:
                yield stream[begin:end], begin in event_starts


@dataclass
class RawReply(_Reply):
    data: bytes

    async def _serve(self, conn):
        conn.writer.write(self.data)
        await conn.writer.drain()
        return False


@dataclass
class DropReply(_Reply):
    async def _serve(self, conn):
        return False


@dataclass
class HangReply(_Reply):
    async def _serve(self, conn):
        while await conn.reader.read(65536):
            pass  # discard whatever the client sends until it closes
        return False


@dataclass
class GzipQuirkReply(_Reply):
    body: bytes
    status: int = 200
    headers: HeaderSpec = None

    async def _serve(self, conn):
        compressed = gzip.compress(self.body)
        defaults = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(compressed))),
        ]
        head = _head(self.status, defaults, self.headers, conn.keep_alive)
        conn.writer.write(head if conn.request.method == "HEAD" else head + compressed)
        await conn.writer.drain()
        return conn.keep_alive


class Sequence:
    """Replies used in order, one per request answered; the last one repeats."""

    def __init__(self, replies):
        if not replies:
            raise ValueError("Sequence needs at least one reply")
        self.replies = list(replies)
        self._next = 0
        self._lock = threading.Lock()

    def take(self):
        """The reply for the next request."""
        with self._lock:
            reply = self.replies[min(self._next, len(self.replies) - 1)]
            self._next += 1
        return reply

    def __repr__(self):
        return "Sequence(%r)" % (self.replies,)


def _resolve(reply, request):
    """Follow Sequences and callables down to a concrete reply."""
    while not isinstance(reply, _Reply):
        if isinstance(reply, Sequence):
            reply = reply.take()
        elif callable(reply):
            reply = reply(request)
        else:
            raise TypeError("not a reply: %r" % (reply,))
    return reply


def _head(status, defaults, extra, keep_alive):
    """A response head: ``defaults`` with same-named fields replaced by ``extra``."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    extra_items = list(extra.items()) if isinstance(extra, dict) else list(extra or ())
    overridden = {name.lower() for name, _ in extra_items}
    fields = [item for item in defaults if item[0].lower() not in overridden] + extra_items
    if not keep_alive and "connection" not in overridden:
        fields.append(("Connection", "close"))
    lines = ["HTTP/1.1 %d %s\r\n" % (status, reason)]
    lines.extend("%s: %s\r\n" % item for item in fields)
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def _chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


def sse_events(*payloads, event_names=None):
    """SSE event bytes, one per payload (see the module docstring)."""
    events = []
    for index, payload in enumerate(payloads):
        if event_names is not None:
            name = event_names[index]
        elif isinstance(payload, dict) and isinstance(payload.get("type"), str):
            name = payload["type"]
        else:
            name = None
        if isinstance(payload, str):
            data = payload
        else:
            data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        text = ("event: %s\n" % name if name is not None else "") + "data: %s\n\n" % data
        events.append(text.encode("utf-8"))
    return events


# --- request parsing ------------------------------------------------------------------


async def _read_request(reader):
    """The next request head as ``(Recorded without body, HTTP version)``, or ``None`` at a
    clean EOF between requests. Raises ``_BadInput`` for anything unparseable."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise _BadInput("connection closed inside a request head")
    except asyncio.LimitOverrunError:
        raise _BadInput("request head too large")
    lines = head[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise _BadInput("bad request line %r" % lines[0])
    method, target, version = parts
    headers_list = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise _BadInput("bad header line %r" % line)
        headers_list.append((name.strip(), value.strip()))
    headers = {name.lower(): value for name, value in headers_list}
    path, _, query = target.partition("?")
    return Recorded(method, path, query, target, headers, headers_list, b""), version


async def _read_body(reader, writer, headers):
    """The request body (de-chunked), after a ``100 Continue`` when the client asked."""
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return await _read_chunked(reader)
        if "content-length" in headers:
            return await reader.readexactly(int(headers["content-length"]))
    except (ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise _BadInput("bad request body: %r" % (exc,))
    return b""


async def _read_chunked(reader):
    """A chunked body (RFC 9112 §7.1); trailer fields are read and dropped."""
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailer fields are not recorded
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("chunk data not followed by CRLF")


def _wants_keep_alive(version, headers):
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    return version == "HTTP/1.1" and "close" not in tokens


# --- servers ---------------------------------------------------------------------------


class FakeUpstream(LoopThreadServer):
    """A recording HTTP/1.1 server on 127.0.0.1 with programmable replies (see module
    docstring)."""

    thread_name = "fake-upstream"
    stream_limit = HEAD_LIMIT

    def __init__(self, default=None):
        super().__init__()
        self.default = default if default is not None else self._not_found
        self.requests = []  # type: List[Recorded]
        self._routes = []  # type: List[Tuple[str, Union[str, Callable], object]]
        self._cond = threading.Condition()

    @staticmethod
    def _not_found(request):
        message = "no fake route for %s %s" % (request.method, request.path)
        return JSONReply(404, {"error": message})

    def route(self, method, match, reply):
        """Answer requests of ``method`` (or ``"*"``) whose path starts with ``match`` (or
        for which ``match(recorded)`` is true) with ``reply``. Returns the fake."""
        self._routes.append((method.upper(), match, reply))
        return self

    def wait_for_requests(self, count, timeout=5.0):
        """Block until at least ``count`` requests were recorded; return them.
        Raises ``AssertionError`` after ``timeout`` seconds."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(
                    "expected %d requests, got %d" % (count, len(self.requests))
                )
            return list(self.requests)

    async def handle(self, reader, writer):
        try:
            while True:
                parsed = await _read_request(reader)
                if parsed is None:
                    return
                request, version = parsed
                request.body = await _read_body(reader, writer, request.headers)
                self._record(request)
                conn = _Conn(reader, writer, request, _wants_keep_alive(version, request.headers))
                if not await self._answer(conn):
                    return
        except (_BadInput, ConnectionError):
            return
        finally:
            writer.close()

    def _record(self, request):
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()

    async def _answer(self, conn):
        """Serve one request; return whether the connection may carry another."""
        reply = _resolve(self._choose(conn.request), conn.request)
        return await reply._serve(conn)

    def _choose(self, request):
        for method, match, reply in list(self._routes):
            if method not in ("*", request.method.upper()):
                continue
            if callable(match) and match(request):
                return reply
            if isinstance(match, str) and request.path.startswith(match):
                return reply
        return self.default


class FakeWebSocketEcho(FakeUpstream):
    """A FakeUpstream that also accepts WebSocket upgrades and echoes raw bytes."""

    def __init__(self, default=None):
        super().__init__(default)
        self.closed = threading.Event()

    async def _answer(self, conn):
        headers = conn.request.headers
        if "websocket" not in headers.get("upgrade", "").lower():
            return await super()._answer(conn)
        problem = _upgrade_problem(conn.request)
        if problem is not None:
            await JSONReply(400, {"error": problem})._serve(
                _Conn(conn.reader, conn.writer, conn.request, keep_alive=False)
            )
            return False
        key = headers["sec-websocket-key"].strip()
        accept = base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest())
        offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        selected = b"Sec-WebSocket-Protocol: " + offered[0].encode() + b"\r\n" if offered else b""
        conn.writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n" + selected + b"\r\n"
        )
        await conn.writer.drain()
        try:
            while True:
                data = await conn.reader.read(65536)
                if not data:
                    break
                conn.writer.write(data)
                await conn.writer.drain()
        except ConnectionError:
            pass
        self.closed.set()
        return False


def _upgrade_problem(request):
    """Why ``request`` is not a valid RFC 6455 opening handshake, or ``None``."""
    headers = request.headers
    if request.method != "GET":
        return "upgrade must be GET"
    if "upgrade" not in headers.get("connection", "").lower():
        return "Connection must contain upgrade"
    try:
        nonce = base64.b64decode(headers.get("sec-websocket-key", "").strip(), validate=True)
    except (binascii.Error, ValueError):
        nonce = b""
    if len(nonce) != 16:
        return "Sec-WebSocket-Key must be base64 of 16 bytes"
    if headers.get("sec-websocket-version", "").strip() != "13":
        return "Sec-WebSocket-Version must be 13"
    return None
