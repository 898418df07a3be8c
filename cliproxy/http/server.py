"""The asyncio HTTP/1.1 server shell: connections, limits, timeouts, shutdown.

Strategy: all HTTP parsing lives in the sans-IO ``cliproxy.http.parser``; this module only
moves bytes between sockets and that parser, and turns ``Response`` values into bytes with
``cliproxy.http.writer``. Modelled on uvicorn's connection handling:

- One task per connection (``Server._on_connect``) owns the socket and one reused
  ``RequestParser``. For each request it starts one handler task (``_Connection._respond``)
  that runs the handler *and* writes its response, so cancelling that task stops both the
  handler (and any upstream request it awaits) and a streaming body.
- Per-connection state (``_Connection``) and per-request state (``_Cycle``) are kept apart.
- Who reads the socket: while the request body is incomplete only the handler task reads
  (through ``RequestBody``, on demand, so ``100 Continue`` goes out only when the body is
  wanted). Once the body is complete the connection task keeps one read pending (the
  "watch") so a client that leaves (EOF or reset) is seen at once and the handler task is
  cancelled. Bytes the watch gets are pipelined requests: they go into the parser, and the
  watch stops while the parser holds unparsed bytes, so at most ``READ_SIZE`` bytes are
  buffered beyond the current request. The next request is parsed only after the current
  response ended, so responses go out in request order.
- A body the handler did not read: if what is left is known and at most ``DISCARD_MAX``
  bytes it is read and dropped after the response and the connection is kept; a larger or
  chunked (unknown size) remainder, or a ``100-continue`` request whose ``100`` was never
  sent, makes the response carry ``connection: close`` instead.
- Timeouts (``asyncio.wait_for`` over socket reads, values from ``limits()`` at each
  request): ``idle_timeout`` until the first byte of a request (quiet close),
  ``read_timeout`` for the rest of a head as a whole and for each body read (408 or close).
  Upgraded connections ("tunnels") have no timeouts.
- Shutdown: stop listening, close idle connections, let busy ones finish their current
  response (with ``connection: close``), cancel what is left after the drain timeout, then
  close tunnels (which never hold the drain).

The request header limit is read from ``limits()`` when a connection opens (the parser is
built once per connection); every other limit is re-read at each request.
"""

import asyncio
import enum
import json
import logging
import socket
import time
from typing import Awaitable, Callable, Optional, Set, Tuple

from cliproxy import errors
from cliproxy.config.model import Limits
from cliproxy.http.headers import Headers
from cliproxy.http.parser import (
    CONNECTION_CLOSED,
    NEED_DATA,
    Data,
    EndOfMessage,
    ProtocolError,
    RequestHead,
    RequestParser,
)
from cliproxy.http.writer import CONTINUE, LAST_CHUNK, encode_chunk, encode_response_head

log = logging.getLogger("cliproxy.http.server")

UpgradeCallback = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]

# Bytes asked of the socket per read; also the most pipelined input buffered while a request
# is being answered (the watch stops while the parser holds unparsed bytes).
READ_SIZE = 65536
# Unread request body the server still reads and drops after a response to keep the
# connection alive; more (or an unknown amount) closes the connection instead.
DISCARD_MAX = 65536
# Bytes bodies up to this size are written together with the head in one write.
SMALL_BODY = 65536
# After an error answer, read and drop at most this much input for at most this long before
# closing, so the client reads our answer rather than a reset (nginx's lingering close).
LINGER_SECONDS = 1.0
LINGER_BYTES = 1 << 20
# Longest wait for a closed socket to flush before it is aborted.
CLOSE_TIMEOUT = 5.0

_JSON = "application/json"
# Fields the server always frames itself (RFC 9112 §6.1, §9.6).
_FRAMING_FIELDS = frozenset(("connection", "transfer-encoding", "keep-alive"))
_HTTP10 = "HTTP/1.0"


class RequestTimeout(errors.ProxyError):
    """The client was too slow sending its request (``read_timeout``)."""

    status = 408
    error_type = "timeout_error"


class ClientDisconnected(errors.ProxyError):
    """The client closed the connection before its request body ended. Nobody is left to
    receive the status; the connection is closed."""

    status = 400
    error_type = "invalid_request_error"


class _ClientGone(Exception):
    """Writing to the client failed because it went away (internal)."""


class Request:
    """One parsed request head plus its body stream.

    ``path`` is ``target`` up to ``?`` and ``query`` what follows it, both raw (not
    percent-decoded). ``peer`` is the socket's peer address, ``arrived`` the
    ``time.monotonic()`` at which the head was parsed.
    """

    __slots__ = (
        "method",
        "target",
        "path",
        "query",
        "headers",
        "peer",
        "tls",
        "body",
        "arrived",
        "version",
    )

    def __init__(self, method, target, headers, peer, tls, body, arrived, version):
        self.method = method  # type: str
        self.target = target  # type: str
        path, _, query = target.partition("?")
        self.path = path  # type: str
        self.query = query  # type: str
        self.headers = headers  # type: Headers
        self.peer = peer  # type: Tuple[str, int]
        self.tls = tls  # type: bool
        self.body = body  # type: RequestBody
        self.arrived = arrived  # type: float
        self.version = version  # type: str

    def __repr__(self):
        return "Request(%s %s)" % (self.method, self.path)


class Response:
    """What a handler returns.

    ``body`` is ``bytes`` or an async iterable of ``bytes``; the server iterates it, then
    calls its ``aclose()`` (if it has one) whether it finished, failed or the client left.
    ``on_upgrade(reader, writer, leftover)`` is awaited after a ``101`` head is written
    (``leftover``: bytes the client sent after the request head); the connection is closed
    when it returns.
    """

    __slots__ = ("status", "headers", "body", "on_upgrade")

    def __init__(
        self,
        status,  # type: int
        headers=None,  # type: Optional[Headers]
        body=b"",
        on_upgrade=None,  # type: Optional[UpgradeCallback]
    ):
        self.status = status
        self.headers = headers
        self.body = body
        self.on_upgrade = on_upgrade

    def __repr__(self):
        return "Response(%d)" % (self.status,)


class RequestBody:
    """The request body, read on demand from the connection.

    ``length`` is the declared ``Content-Length`` (``None`` for chunked bodies). Read it
    whole with ``await read(limit)`` or stream it with ``async for chunk in body``; the
    first read sends ``100 Continue`` when the client asked for it and no response has
    started. Only one consumer may read at a time. Reads raise ``PayloadTooLarge`` (over
    ``limit`` or ``max_body_bytes``), ``ProtocolError`` (bad framing), ``RequestTimeout`` or
    ``ClientDisconnected``; after any of these the connection closes after the response.
    """

    __slots__ = ("length", "_conn", "_cycle", "_pending", "_received", "_done", "_asked", "_cached")

    def __init__(self, conn, cycle, length, first_event):
        self.length = length  # type: Optional[int]
        self._conn = conn
        self._cycle = cycle
        self._pending = first_event if type(first_event) is Data else None
        self._received = 0
        self._done = type(first_event) is EndOfMessage
        self._asked = False
        self._cached = None  # type: Optional[bytes]

    @property
    def complete(self):
        """True once the whole body has been received from the client."""
        return self._done

    async def read(self, limit):
        """The whole body as bytes (the same bytes again on later calls).

        Raises ``errors.PayloadTooLarge`` when the body is longer than ``limit``; the
        connection then closes after the response.
        """
        if self._cached is not None:
            return self._cached
        if self.length is not None and self.length > limit:
            self._fail()
            raise errors.PayloadTooLarge("request body is larger than %d bytes" % limit)
        parts = []
        size = 0
        while True:
            chunk = await self._next_chunk()
            if chunk is None:
                break
            size += len(chunk)
            if size > limit:
                self._fail()
                raise errors.PayloadTooLarge("request body is larger than %d bytes" % limit)
            parts.append(chunk)
        self._cached = b"".join(parts)
        return self._cached

    def __aiter__(self):
        if self._cached is not None:
            return _replay(self._cached)
        return self

    async def __anext__(self):
        chunk = await self._next_chunk()
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    def _fail(self):
        # The rest of the body is unknown or unwanted: answer, then close.
        self._cycle.must_close = True
        self._conn.linger = True
        self._cycle.wake()

    async def _next_chunk(self):
        """The next non-empty piece of body data, or ``None`` once the body has ended."""
        if self._done:
            return None
        conn = self._conn
        cycle = self._cycle
        if not self._asked:
            self._asked = True
            if cycle.head.expect_continue and not cycle.response_started:
                cycle.continue_sent = True
                # No drain: 25 bytes, and the client sends nothing until it gets them.
                conn.writer.write(CONTINUE)
        event = self._pending
        self._pending = None
        while True:
            if event is None:
                try:
                    event = conn.parser.next_event()
                except ProtocolError:
                    self._fail()
                    raise
            if event is NEED_DATA:
                data = await conn.receive(cycle.limits.read_timeout)
                if data is None:
                    self._fail()
                    raise RequestTimeout("timed out reading the request body")
                if not data:
                    conn.client_gone = True
                    self._fail()
                    raise ClientDisconnected("the client closed the connection mid-body")
                conn.parser.feed(data)
                event = None
                continue
            kind = type(event)
            if kind is Data:
                data = event.data
                event = None
                if not data:
                    continue
                self._received += len(data)
                if self._received > cycle.limits.max_body_bytes:
                    self._fail()
                    raise errors.PayloadTooLarge(
                        "request body is larger than %d bytes" % cycle.limits.max_body_bytes
                    )
                return data
            if kind is EndOfMessage:
                self._done = True
                cycle.wake()
                return None
            self._fail()
            raise errors.BadRequest("unexpected %s in a request body" % kind.__name__)

    def _discardable(self):
        """True when the unread rest is known and small enough to read and drop."""
        if self._done:
            return True
        if self._cycle.head.expect_continue and not self._cycle.continue_sent:
            return False  # the client may never send it (RFC 9110 §10.1.1)
        return self.length is not None and self.length - self._received <= DISCARD_MAX


async def _replay(data):
    if data:
        yield data


class _State(enum.Enum):
    IDLE = 1  # waiting for the first byte of a request
    ACTIVE = 2  # reading a request or answering it
    TUNNEL = 3  # upgraded: bytes belong to ``on_upgrade``


class _Cycle:
    """Per-request state shared by the connection task, the handler task and the body."""

    __slots__ = (
        "head",
        "limits",
        "body",
        "response_started",
        "continue_sent",
        "must_close",
        "waiter",
    )

    def __init__(self, head, limits):
        self.head = head  # type: RequestHead
        self.limits = limits  # type: Limits
        self.body = None  # type: Optional[RequestBody]
        self.response_started = False
        self.continue_sent = False
        self.must_close = False
        self.waiter = None  # type: Optional[asyncio.Future]

    def wake(self):
        """Wake the connection task waiting for the body to end (or fail)."""
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _error_body(error_type, message):
    return json.dumps({"error": {"type": error_type, "message": message}}).encode("utf-8")


def _json_error(status, error_type, message, extra=()):
    headers = Headers.from_lowered([("content-type", _JSON)])
    for name, value in extra:
        headers.add(name, value)
    return Response(status, headers, _error_body(error_type, message))


def _read_result(task):
    """The bytes a finished socket-read task got; ``b""`` for EOF, reset or cancellation."""
    if task.cancelled():
        return b""
    exc = task.exception()
    if exc is not None:
        return b""
    return task.result()


async def _aclose(obj):
    """Call ``obj.aclose()`` if it has one; log its failure instead of raising it."""
    close = getattr(obj, "aclose", None)
    if close is None:
        return
    try:
        await close()
    except Exception:
        log.warning("closing a response body failed", exc_info=True)


class _Connection:
    """One client connection: the request loop, run by its own task."""

    __slots__ = (
        "server",
        "reader",
        "writer",
        "parser",
        "peer",
        "tls",
        "state",
        "task",
        "watch",
        "client_gone",
        "linger",
    )

    def __init__(self, server, reader, writer, limits):
        self.server = server
        self.reader = reader
        self.writer = writer
        self.parser = RequestParser(limits.max_header_bytes)
        peer = writer.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1])) if peer else ("", 0)
        self.tls = server._ssl_context is not None
        self.state = _State.IDLE
        self.task = None  # type: Optional[asyncio.Task]
        self.watch = None  # type: Optional[asyncio.Task]
        self.client_gone = False
        self.linger = False
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                # Streamed events must leave at once, not wait for Nagle's delayed ACK.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    # -- reading ---------------------------------------------------------------------

    async def receive(self, timeout):
        """Bytes from the socket: ``b""`` on EOF or reset, ``None`` after ``timeout``.

        Uses the pending watch read if there is one, so no byte is lost between them.
        """
        watch = self.watch
        if watch is None:
            try:
                return await asyncio.wait_for(self.reader.read(READ_SIZE), max(timeout, 0))
            except asyncio.TimeoutError:
                return None
            except OSError:
                return b""
        done, _ = await asyncio.wait((watch,), timeout=max(timeout, 0))
        if not done:
            return None
        self.watch = None
        return _read_result(watch)

    async def stop_watch(self):
        """End the pending watch read, feeding the parser whatever it already got."""
        watch = self.watch
        if watch is None:
            return
        self.watch = None
        if not watch.done():
            watch.cancel()
            await asyncio.wait((watch,))
        data = _read_result(watch)
        if data:
            self.parser.feed(data)

    # -- the request loop --------------------------------------------------------------

    async def run(self):
        """Serve requests until the connection should close. Raises nothing but
        ``CancelledError``."""
        server = self.server
        while not self.client_gone:
            limits = server._limits()
            head = await self._read_head(limits)
            if head is None or not await self._serve(head, limits):
                return

    async def _read_head(self, limits):
        """The next ``RequestHead``, or ``None`` when the connection should close (after
        answering an error where there is someone to answer)."""
        parser = self.parser
        loop = asyncio.get_running_loop()
        deadline = None
        while True:
            try:
                event = parser.next_event()
            except ProtocolError as exc:
                log.info("bad request from %s: %s (%d)", self.peer[0], exc.message, exc.status)
                await self._send_error(exc.status, "invalid_request_error", exc.message)
                return None
            if event is NEED_DATA:
                if deadline is None and parser.has_buffered_data:
                    deadline = loop.time() + limits.read_timeout
                if deadline is None:
                    if self.server._closing:
                        return None
                    self.state = _State.IDLE
                    data = await self.receive(limits.idle_timeout)
                    if data is None:
                        return None  # idle keep-alive connection: close quietly
                    self.state = _State.ACTIVE
                    deadline = loop.time() + limits.read_timeout
                else:
                    data = await self.receive(deadline - loop.time())
                    if data is None:
                        log.info("request head from %s timed out", self.peer[0])
                        await self._send_error(
                            408, "timeout_error", "timed out reading the request"
                        )
                        return None
                if data:
                    parser.feed(data)
                else:
                    parser.feed_eof()
                continue
            if event is CONNECTION_CLOSED:
                return None
            if type(event) is RequestHead:
                self.state = _State.ACTIVE
                return event
            await self._send_error(400, "invalid_request_error", "unexpected data before a request")
            return None

    async def _serve(self, head, limits):
        """Answer one request; True when the connection may carry another."""
        server = self.server
        cycle = _Cycle(head, limits)
        if head.content_length is not None and head.content_length > limits.max_body_bytes:
            log.info("request body from %s too large: %d bytes", self.peer[0], head.content_length)
            await self._send_error(
                413,
                "request_too_large",
                "request body is larger than %d bytes" % limits.max_body_bytes,
            )
            return False
        try:
            first = self.parser.next_event()
        except ProtocolError as exc:
            log.info("bad request from %s: %s (%d)", self.peer[0], exc.message, exc.status)
            await self._send_error(exc.status, "invalid_request_error", exc.message)
            return False
        body = RequestBody(self, cycle, head.content_length, first)
        cycle.body = body
        request = Request(
            head.method,
            head.target,
            head.headers,
            self.peer,
            self.tls,
            body,
            time.monotonic(),
            head.version,
        )
        server.in_flight += 1
        task = asyncio.get_running_loop().create_task(self._respond(request, cycle))
        try:
            await self._supervise(task, cycle)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait((task,))
            server.in_flight -= 1
        if task.cancelled() or self.client_gone:
            return False
        upgrade = task.result()
        if upgrade is not None:
            await self._tunnel(upgrade)
            return False
        if cycle.must_close or not head.keep_alive or server._closing:
            if not body.complete:
                self.linger = True
            return False
        return body.complete or await self._discard(body)

    async def _supervise(self, task, cycle):
        """Wait for the handler task; cancel it if the client leaves meanwhile."""
        loop = asyncio.get_running_loop()
        body = cycle.body
        while not task.done():
            if self.client_gone:
                task.cancel()
                return
            if not body.complete:
                # Only the handler reads while the body is incomplete; wait for it to end.
                if cycle.waiter is None:
                    cycle.waiter = loop.create_future()
                await asyncio.wait((task, cycle.waiter), return_when=asyncio.FIRST_COMPLETED)
                cycle.waiter = None
                continue
            watch = self.watch
            if watch is None:
                if self.parser.has_buffered_data:
                    # Pipelined input is waiting already: buffer no more until it is parsed.
                    await asyncio.wait((task,))
                    return
                watch = self.watch = loop.create_task(self.reader.read(READ_SIZE))
            await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
            if watch.done() and self.watch is watch:
                self.watch = None
                data = _read_result(watch)
                if data:
                    self.parser.feed(data)
                else:
                    log.debug("client %s left during a request", self.peer[0])
                    self.client_gone = True

    async def _discard(self, body):
        """Read and drop a small unread body; True when the connection stays usable."""
        try:
            while await body._next_chunk() is not None:
                pass
        except errors.ProxyError:
            return False
        return True

    # -- the handler task ----------------------------------------------------------------

    async def _respond(self, request, cycle):
        """Run the handler and write its response. Returns the ``Response`` when it is an
        upgrade still to be carried out by the connection task, else ``None``."""
        try:
            response = await self.server._handler(request)
            _check_response(response)
        except Exception as exc:
            response = self._error_response(request, cycle, exc)
            if response is None:
                return None
        if response.status == 101:
            return response
        try:
            await self._send(request, cycle, response)
        except _ClientGone:
            log.debug("client %s left while receiving a response", self.peer[0])
            self.client_gone = True
        except Exception:
            cycle.must_close = True
            if cycle.response_started:
                log.warning(
                    "response to %s %s failed after it started",
                    request.method,
                    request.path,
                    exc_info=True,
                )
            else:
                log.error("invalid response to %s %s", request.method, request.path, exc_info=True)
                await self._send_quietly(
                    request, cycle, _json_error(500, "api_error", "internal server error")
                )
        return None

    async def _send_quietly(self, request, cycle, response):
        try:
            await self._send(request, cycle, response)
        except _ClientGone:
            self.client_gone = True
        except Exception:
            log.warning(
                "error response to %s %s failed", request.method, request.path, exc_info=True
            )

    def _error_response(self, request, cycle, exc):
        """The fallback answer for an exception escaping the handler (``None``: nobody to
        answer)."""
        if self.client_gone or isinstance(exc, ClientDisconnected):
            log.debug("handler for %s %s ended after the client left", request.method, request.path)
            return None
        if isinstance(exc, ProtocolError):
            cycle.must_close = True
            log.info("bad request from %s: %s (%d)", self.peer[0], exc.message, exc.status)
            return _json_error(exc.status, "invalid_request_error", exc.message)
        if isinstance(exc, errors.ProxyError):
            log.info("%s %s -> %d %s", request.method, request.path, exc.status, exc.message)
            return _json_error(exc.status, exc.error_type, exc.message, exc.headers)
        log.error("handler failed for %s %s", request.method, request.path, exc_info=exc)
        return _json_error(500, "api_error", "internal server error")

    async def _send(self, request, cycle, response):
        """Frame and write ``response``. Raises ``_ClientGone`` when the client left, or
        whatever the body iterator raised."""
        body = response.body
        streaming = not isinstance(body, (bytes, bytearray, memoryview))
        try:
            await self._send_framed(request, cycle, response, streaming)
        finally:
            if streaming:
                await _aclose(body)

    async def _send_framed(self, request, cycle, response, streaming):
        body = response.body
        headers, bodiless, chunked, expected = self._frame(request, cycle, response, streaming)
        data = encode_response_head(response.status, headers)
        cycle.response_started = True
        if bodiless or streaming:
            await self._write(data)
        elif len(body) <= SMALL_BODY:
            await self._write(data + bytes(body))
        else:
            self.writer.write(data)
            await self._write(body)
        if streaming and not bodiless:
            await self._stream(body, chunked, expected, cycle)

    def _frame(self, request, cycle, response, streaming):
        """The head's fields and the body framing: (headers, bodiless, chunked, expected
        length of a streamed body or None). RFC 9112 §6: HEAD, 1xx, 204 and 304 carry no
        body; bytes get a content-length; a stream keeps the handler's content-length, else
        is chunked (HTTP/1.1) or close-delimited (HTTP/1.0)."""
        status = response.status
        body = response.body
        version = cycle.head.version
        headers = (
            Headers() if response.headers is None else response.headers.without(_FRAMING_FIELDS)
        )
        bodiless = request.method == "HEAD" or status == 204 or status == 304 or status < 200
        chunked = False
        expected = None
        if status == 204 or status < 200:
            headers.remove("content-length")
        elif bodiless:
            if not streaming and body and "content-length" not in headers:
                headers.set("content-length", str(len(body)))
        elif not streaming:
            headers.set("content-length", str(len(body)))
        elif "content-length" in headers:
            expected = int(headers.get("content-length"))
        elif version == _HTTP10:
            cycle.must_close = True  # close-delimited: an HTTP/1.0 client knows no chunks
        else:
            chunked = True
            headers.add("transfer-encoding", "chunked")
        if self._closes_after(cycle):
            headers.add("connection", "close")
        elif version == _HTTP10:
            headers.add("connection", "keep-alive")
        return headers, bodiless, chunked, expected

    def _closes_after(self, cycle):
        """Decide, before the head goes out, whether the connection closes after it."""
        close = (
            cycle.must_close
            or not cycle.head.keep_alive
            or self.server._closing
            or not cycle.body._discardable()
        )
        cycle.must_close = close
        return close

    async def _stream(self, body, chunked, expected, cycle):
        server = self.server
        iterator = body.__aiter__()
        sent = 0
        server.open_streams += 1
        try:
            while True:
                try:
                    chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                if not chunk:
                    continue  # an empty chunk would end a chunked body early
                sent += len(chunk)
                await self._write(encode_chunk(chunk) if chunked else chunk)
            if chunked:
                await self._write(LAST_CHUNK)
            elif expected is not None and sent != expected:
                cycle.must_close = True
                log.warning("response body was %d bytes, content-length said %d", sent, expected)
        finally:
            server.open_streams -= 1
            if iterator is not body:
                await _aclose(iterator)  # ``_send`` closes ``body`` itself

    async def _write(self, data):
        """Write and wait for the socket buffer to drain (flow control)."""
        writer = self.writer
        if writer.transport.is_closing():
            raise _ClientGone()
        writer.write(data)
        try:
            await writer.drain()
        except OSError as exc:
            raise _ClientGone() from exc

    # -- errors, upgrades, closing -------------------------------------------------------

    async def _send_error(self, status, error_type, message):
        """Answer a request the handler never saw, with ``connection: close``."""
        headers = Headers.from_lowered([("content-type", _JSON)])
        payload = _error_body(error_type, message)
        headers.add("content-length", str(len(payload)))
        headers.add("connection", "close")
        self.linger = True
        try:
            await self._write(encode_response_head(status, headers) + payload)
        except _ClientGone:
            self.client_gone = True

    async def _tunnel(self, response):
        """Write the 101 head and hand the socket to ``on_upgrade`` until it returns."""
        server = self.server
        headers = Headers() if response.headers is None else response.headers.copy()
        if "upgrade" in headers and "connection" not in headers:
            headers.add("connection", "upgrade")
        await self.stop_watch()
        leftover = self.parser.take_trailing()
        self.state = _State.TUNNEL
        server._changed.set()
        try:
            await self._write(encode_response_head(101, headers))
        except _ClientGone:
            self.client_gone = True
            return
        server.open_tunnels += 1
        try:
            await response.on_upgrade(self.reader, self.writer, leftover)
        except Exception:
            log.warning("upgraded connection from %s failed", self.peer[0], exc_info=True)
        finally:
            server.open_tunnels -= 1

    async def _linger(self):
        transport = self.writer.transport
        if not transport.can_write_eof() or transport.is_closing():
            return  # TLS cannot half-close; waiting would only stall the client
        self.state = _State.IDLE  # nothing left to answer: shutdown may cut it short
        try:
            self.writer.write_eof()
        except OSError:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LINGER_SECONDS
        total = 0
        while total < LINGER_BYTES:
            data = await self.receive(deadline - loop.time())
            if not data:
                return
            total += len(data)

    async def finish(self, graceful):
        """Close the socket: flushing it when ``graceful``, else at once. Never raises
        except ``CancelledError`` (the socket is aborted first)."""
        writer = self.writer
        try:
            if graceful and self.linger and not self.client_gone:
                await self._linger()
            await self.stop_watch()
            if graceful:
                writer.close()
            else:
                writer.transport.abort()
            await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        except Exception:
            writer.transport.abort()


def _check_response(response):
    """Raise ``TypeError``/``ValueError`` for a handler result the server cannot send."""
    if not isinstance(response, Response):
        raise TypeError("handler returned %s, not a Response" % type(response).__name__)
    status = response.status
    if not 100 <= status <= 599:
        raise ValueError("invalid response status %r" % (status,))
    if status == 101 and response.on_upgrade is None:
        raise ValueError("status 101 needs an on_upgrade callback")
    if status < 200 and status != 101:
        raise ValueError("status %d is not a final response" % status)


class Server:
    """The HTTP/1.1 server.

    ``handler``: ``async def handler(request: Request) -> Response``. ``limits``: called at
    each request (a config reload takes effect for the next request). ``ssl_context``: TLS
    when set. Metrics: ``in_flight`` (requests being answered), ``open_connections``,
    ``open_streams`` (responses streaming a body iterator), ``open_tunnels``.
    """

    def __init__(
        self,
        handler,  # type: Callable[[Request], Awaitable[Response]]
        limits=Limits,  # type: Callable[[], Limits]
        ssl_context=None,
    ):
        self._handler = handler
        self._limits = limits
        self._ssl_context = ssl_context
        self._server = None  # type: Optional[asyncio.AbstractServer]
        self._connections = set()  # type: Set[_Connection]
        self._closing = False
        self._changed = None  # type: Optional[asyncio.Event]
        self.in_flight = 0
        self.open_streams = 0
        self.open_tunnels = 0

    @property
    def open_connections(self):
        return len(self._connections)

    async def start(self, host, port):
        """Listen on ``host``:``port`` (0: any free port); return the bound (host, port).
        Raises ``OSError`` when the address cannot be bound."""
        self._changed = asyncio.Event()
        self._server = await asyncio.start_server(
            self._on_connect, host, port, ssl=self._ssl_context, reuse_address=True
        )
        bound = self._server.sockets[0].getsockname()
        return bound[0], bound[1]

    async def _on_connect(self, reader, writer):
        try:
            conn = _Connection(self, reader, writer, self._limits())
        except Exception:
            log.exception("cannot serve a new connection")
            writer.transport.abort()
            return
        conn.task = asyncio.current_task()
        self._connections.add(conn)
        graceful = True
        try:
            if not self._closing:
                await conn.run()
        except asyncio.CancelledError:
            graceful = False
        except Exception:
            graceful = False
            log.exception("connection from %s failed", conn.peer[0])
        finally:
            try:
                await conn.finish(graceful)
            except asyncio.CancelledError:
                pass
            self._connections.discard(conn)
            self._changed.set()

    async def shutdown(self, drain_timeout):
        """Stop accepting, let in-flight requests finish for up to ``drain_timeout``
        seconds, cancel the rest, then close tunnels. Returns once every connection is
        closed."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        if self._changed is None:
            return
        for conn in list(self._connections):
            if conn.state is _State.IDLE and conn.task is not None:
                conn.task.cancel()
        await self._drain(drain_timeout)
        for tunnels in (False, True):
            for conn in list(self._connections):
                if (conn.state is _State.TUNNEL) is tunnels and conn.task is not None:
                    conn.task.cancel()
        tasks = [conn.task for conn in self._connections if conn.task is not None]
        if tasks:
            await asyncio.wait(tasks)
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), CLOSE_TIMEOUT)
            except asyncio.TimeoutError:
                log.warning("listener did not close within %.0f s", CLOSE_TIMEOUT)

    async def _drain(self, drain_timeout):
        """Wait until no connection is reading or answering a request, or the timeout passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout
        changed = self._changed
        while any(conn.state is _State.ACTIVE for conn in self._connections):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            changed.clear()
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except asyncio.TimeoutError:
                return
