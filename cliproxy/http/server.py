"""The asyncio HTTP/1.1 server shell: connections, limits, timeouts, shutdown.

Strategy: all HTTP parsing lives in the sans-IO ``cliproxy.http.parser``; this module only
moves bytes between sockets and that parser, and turns ``Response`` values into bytes with
``cliproxy.http.writer``. Modelled on uvicorn's h11/httptools protocols, because the
per-request cost of the shell is what bounds the proxy's throughput:

- Accepting is ours (``_Acceptor``), not ``loop.create_server``'s: it stops while
  ``max_connections`` connections are open (lowered to what the open-file limit leaves
  room for), so clients past it wait in the listen backlog, and it pauses and retries
  when ``accept`` runs out of descriptors, with one log line a minute for either and no
  traceback. Each accepted socket becomes a connection through
  ``loop.connect_accepted_socket``, as asyncio's own server does.
- One ``asyncio.Protocol`` per connection (``_Connection``), fed by the event loop through
  ``data_received``: bytes go straight into one reused ``RequestParser``. No task and no
  pending read exist for a connection between requests.
- One task per request (``_Connection._run``): it runs the handler *and* writes the
  response, so cancelling it stops both the handler (and any upstream request it awaits)
  and a streaming body. ``connection_lost`` (reset, or EOF once the request body is
  complete) cancels it at once: that is how a client that leaves closes the upstream, with
  no watcher task and no ``asyncio.wait`` per request. A client that half-closes while its
  body is still being read gets ``ClientDisconnected`` from the body instead.
- Per-connection state (``_Connection``: socket, parser, flow control, timers) and
  per-request state (``_Cycle``) are kept apart; the cycle owns the request's write path
  (handler, framing in one place for bytes and streamed answers, the unread body).
- Reading: while a request is being answered, bytes that arrive are either body (woken
  into ``RequestBody``, which reads on demand, so ``100 Continue`` goes out only when the
  body is wanted) or pipelined requests, which stay in the parser. Reading pauses once more
  than ``HIGH_WATER`` bytes wait unparsed and resumes when the parser runs dry
  (``cliproxy/http/flow.py``, shared with the client). The next request is parsed only
  after the current response ended, so responses go out in order. A body that arrived
  whole with its head (the usual API call) is read in one step.
- Writing: a response head and a bytes body of up to ``SMALL_BODY`` go out in one
  ``transport.write``; a writer awaits only while the transport has paused us
  (``pause_writing``/``resume_writing``), and for ``read_timeout`` at most: a client that
  takes no byte for that long is cut. A streamed body whose pieces never make it wait (a
  gzip bomb inflating, read by a fast client) yields the loop once per
  ``FAIR_SHARE_BYTES``, so that other connections are answered meanwhile.
- A body the handler did not read: if what is left is known and at most ``DISCARD_MAX``
  bytes it is read and dropped after the response and the connection is kept; a larger or
  chunked (unknown size) remainder, or a ``100-continue`` request whose ``100`` was never
  sent, makes the response carry ``connection: close`` instead.
- Timeouts use one lazily re-armed ``loop.call_at`` handle per connection and a deadline
  (values from ``limits()`` at each request): ``idle_timeout`` until the first byte of a
  request (quiet close); then the whole request, head and body, must arrive within
  ``request_timeout`` of that byte, and no wait for its next bytes may exceed
  ``read_timeout`` (a head: 408 and close; a body: ``RequestTimeout``). Moving a deadline
  later costs nothing; the handle re-arms itself when it fires early. Upgraded
  connections ("tunnels") have none.
- Faults of the network or of a peer (``ProxyError``, a reset, a timeout) that cut a
  response short are one log line; a traceback is logged only for what looks like a bug.
- Upgrades: a request asking to switch protocols has its body read (and kept for the
  handler) before the handler runs, so the tunnel starts after the whole request and no
  body byte can pass for the new protocol's. After the ``101`` head the transport is
  handed to a fresh ``asyncio.StreamReaderProtocol`` (``transport.set_protocol``), and
  ``on_upgrade`` gets a ``StreamReader``/``StreamWriter`` pair over it plus the bytes
  already buffered.
- Shutdown: stop listening, close idle connections, let busy ones finish their current
  response (with ``connection: close``), abort what is left after the drain timeout, then
  close tunnels (which never hold the drain).

The request header limit is read from ``limits()`` when a connection opens (the parser is
built once per connection), ``max_connections`` whenever connections are accepted (the
open-file limit once, at start); every other limit is re-read at each request.
"""

import asyncio
import enum
import errno
import json
import logging
import socket
import time
from typing import Awaitable, Callable, Dict, List, Optional, Set, Tuple

from cliproxy import errors
from cliproxy.config.model import Limits
from cliproxy.http.flow import FlowControlled
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
from cliproxy.http.target import split_target
from cliproxy.http.writer import CONTINUE, LAST_CHUNK, encode_chunk, encode_response_head

log = logging.getLogger("cliproxy.http.server")

UpgradeCallback = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]

# Unparsed input (body or pipelined requests) buffered before reading pauses; uvicorn's
# HIGH_WATER_LIMIT is the same 64 KiB.
HIGH_WATER = 65536
# Unread request body the server still reads and drops after a response to keep the
# connection alive; more (or an unknown amount) closes the connection instead.
DISCARD_MAX = 65536
# Bytes bodies up to this size are written together with the head in one write.
SMALL_BODY = 65536
# A streamed body lets the event loop run other work at least once per this many bytes
# written, even when its pieces are always ready (see ``_Cycle._stream``).
FAIR_SHARE_BYTES = 1 << 20
# After an error answer, read and drop at most this much input for at most this long before
# closing, so the client reads our answer rather than a reset (nginx's lingering close).
LINGER_SECONDS = 1.0
LINGER_BYTES = 1 << 20
# Longest wait for a closed socket to flush before it is aborted.
CLOSE_TIMEOUT = 5.0
# Backlog of each listening socket: clients past ``max-connections`` wait in it until a
# connection closes. nginx asks for 511 on Linux; the kernel caps the value at
# net.core.somaxconn (4096 since Linux 5.4, 128 before).
LISTEN_BACKLOG = 1024
# Connections accepted per readiness event at most, as asyncio's own server does (its
# backlog, 100): a burst of new clients cannot hold up the connections already open.
ACCEPT_BATCH = 100
# After ``accept`` failed for want of file descriptors or memory, accepting pauses (the
# socket would stay readable and spin the loop) and is retried this soon, or as soon as a
# connection closes.
ACCEPT_RETRY_SECONDS = 1.0
# At most one log line per kind of accept trouble (full, failing) in this many seconds.
ACCEPT_LOG_INTERVAL = 60.0
# At the connection cap, a connection that has waited this long on its client (idle, or
# its request incomplete) is let go for a new client (``_Acceptor.evict``): long for a
# real client's head, which comes in one packet, short against a slowloris holding every
# slot; and while full with clients waiting, the acceptor looks again this often.
EVICT_AFTER_SECONDS = 0.5
EVICT_CHECK_SECONDS = 0.25
# Descriptors the connection cap leaves to everything but client sockets: stdio, the
# listening sockets, the event loop's selector and self-pipe, log, config, usage and
# error-request files, the CA bundle, DNS lookups, and idle pooled upstream connections.
FD_RESERVE = 64
# Descriptors one client connection may hold: its own socket, plus the upstream socket a
# proxied request or a WebSocket tunnel opens for it.
FDS_PER_CONNECTION = 2
# accept() errors about one pending client only (it reset while it waited in the backlog,
# a firewall refused it, or Linux passed on its network error): accept the next one.
_CLIENT_GAVE_UP = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED", "EPROTO", "EPERM", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN", "ENONET",
        "EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH",
    )
    if hasattr(errno, name)
)
# Faults of the network or of a peer, not of this program: one log line, no traceback.
_EXPECTED_FAULTS = (errors.ProxyError, ConnectionError, TimeoutError, asyncio.TimeoutError)

_JSON = "application/json"
# Fields the server always frames itself (RFC 9112 §6.1, §9.6).
_FRAMING_FIELDS = frozenset(("connection", "transfer-encoding", "keep-alive"))
_FRAMING_AND_LENGTH = _FRAMING_FIELDS | {"content-length"}
_HTTP10 = "HTTP/1.0"
_CONNECTION_CLOSE = ("connection", "close")
_CONNECTION_KEEP_ALIVE = ("connection", "keep-alive")
_BYTES_TYPES = (bytes, bytearray, memoryview)


class RequestTimeout(errors.ProxyError):
    """The client was too slow sending its request: its whole request took longer than
    ``request_timeout``, or no byte came for ``read_timeout``."""

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
    percent-decoded); an absolute-form target gives its path (``http.target``). ``peer`` is the socket's peer address, ``arrived`` the
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
        if target[0] != "/":
            path, query = split_target(target)  # absolute form: its path, never its host
        elif "?" in target:
            path, _, query = target.partition("?")
        else:  # the usual API call has no query: a test is cheaper than a method call
            path = target
            query = ""
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
        pending = self._pending
        if (
            pending is not None
            and len(pending.data) == self.length
            and not self._cycle.head.expect_continue
        ):
            # The whole body came with the head (the usual request): no wait and no
            # ``_next_chunk`` step. A content-length body that is all here has nothing
            # left to frame, so the parser's next event is its ``EndOfMessage``.
            self._pending = None
            self._conn.parser.next_event()
            self._received = self.length
            self._done = True
            self._cached = pending.data
            return self._cached
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

    def detach(self):
        """Drop the references back to the connection and the request cycle once the
        request is over. They form reference cycles (cycle -> body -> cycle) that only
        the cyclic garbage collector would free, hundreds of requests later: with 60 KB
        bodies cached that held megabytes. Reads after this are not allowed."""
        self._conn = None
        self._cycle = None

    def _fail(self):
        # The rest of the body is unknown or unwanted: answer, then close (lingering, as
        # the body is not done).
        self._cycle.must_close = True

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
                conn.transport.write(CONTINUE)
                # The client could not send its body before this: its time starts now.
                cycle.deadline = conn.clock() + cycle.limits.request_timeout
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
                conn.ran_dry()
                if conn.eof or conn.lost:
                    conn.client_gone = True
                    self._fail()
                    raise ClientDisconnected("the client closed the connection mid-body")
                try:
                    await conn.wait_for_data(cycle)
                except RequestTimeout:
                    self._fail()
                    raise
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
    LINGER = 4  # answered and shut for writing: input is read and dropped until the close


class _Timeout(enum.Enum):
    """What the connection's deadline guards, hence what happens when it passes."""

    IDLE = 1  # no request under way: close quietly
    HEAD = 2  # a request head is incomplete: 408 and close
    BODY = 3  # a body read is waiting: it raises ``RequestTimeout``
    LINGER = 4  # lingering after an error answer: close
    CLOSE = 5  # a closed socket did not flush: abort


class _Cycle:
    """One request and its response, from the head to the last byte written (as uvicorn's
    ``RequestResponseCycle``): runs the handler, frames and writes its answer through the
    connection, and reads and drops a small unread body afterwards. The connection keeps
    what outlives a request (socket, parser, timers). ``deadline`` (loop time) is when the
    whole request must have been received."""

    __slots__ = (
        "conn",
        "request",
        "head",
        "limits",
        "deadline",
        "body",
        "response_started",
        "continue_sent",
        "must_close",
    )

    def __init__(self, conn, head, limits, deadline):
        self.conn = conn  # type: _Connection
        self.request = None  # type: Optional[Request]
        self.head = head  # type: RequestHead
        self.limits = limits  # type: Limits
        self.deadline = deadline  # type: float
        self.body = None  # type: Optional[RequestBody]
        self.response_started = False
        self.continue_sent = False
        self.must_close = False

    def finish(self):
        """Drop the references back to the connection once the request is over: they form
        reference cycles that only the cyclic garbage collector would free."""
        self.conn = None
        self.request = None
        self.body.detach()

    async def respond(self):
        """Run the handler and write its response. Returns the ``Response`` when it is an
        upgrade still to be carried out, else ``None``."""
        request = self.request
        conn = self.conn
        try:
            if self.head.upgrade and not self.body._done:
                # Should the handler switch protocols, the tunnel starts after the whole
                # request: its body is read first (and kept for the handler), so no byte
                # of it can pass for the new protocol's.
                await self.body.read(self.limits.max_body_bytes)
            response = await conn.server._handler(request)
            if type(response) is not Response or not 200 <= response.status <= 599:
                _check_response(response)
        except Exception as exc:
            response = self._error_response(exc)
            if response is None:
                return None
        if response.status == 101:
            return response
        try:
            if isinstance(response.body, _BYTES_TYPES):
                # The common case needs no coroutine: head and body in one write.
                self._write_whole(response)
                if conn.writing_paused:
                    await conn.drain()
            else:
                await self.send(response)
        except _ClientGone:
            log.debug("client %s left while receiving a response", conn.peer[0])
            conn.client_gone = True
        except Exception as exc:
            self.must_close = True
            if self.response_started and isinstance(exc, _EXPECTED_FAULTS):
                # An upstream that closed, reset or stalled mid-body: the client gets a
                # cut-short answer and the log one line, not a traceback.
                log.warning(
                    "response to %s %s cut short: %s", request.method, request.path, _reason(exc)
                )
            elif self.response_started:
                log.warning(
                    "response to %s %s failed after it started",
                    request.method,
                    request.path,
                    exc_info=True,
                )
            else:
                log.error("invalid response to %s %s", request.method, request.path, exc_info=True)
                await self._send_quietly(_json_error(500, "api_error", "internal server error"))
        return None

    def _error_response(self, exc):
        """The fallback answer for an exception escaping the handler (``None``: nobody to
        answer)."""
        request = self.request
        if self.conn.client_gone or isinstance(exc, ClientDisconnected):
            log.debug("handler for %s %s ended after the client left", request.method, request.path)
            return None
        if isinstance(exc, ProtocolError):
            self.must_close = True
            log.info("bad request from %s: %s (%d)", self.conn.peer[0], exc.message, exc.status)
            return _json_error(exc.status, "invalid_request_error", exc.message)
        if isinstance(exc, errors.ProxyError):
            log.info("%s %s -> %d %s", request.method, request.path, exc.status, exc.message)
            return _json_error(exc.status, exc.error_type, exc.message, exc.headers)
        log.error("handler failed for %s %s", request.method, request.path, exc_info=exc)
        return _json_error(500, "api_error", "internal server error")

    async def _send_quietly(self, response):
        request = self.request
        try:
            await self.send(response)
        except _ClientGone:
            self.conn.client_gone = True
        except _EXPECTED_FAULTS as exc:
            log.warning(
                "error response to %s %s failed: %s", request.method, request.path, _reason(exc)
            )
        except Exception:
            log.warning(
                "error response to %s %s failed", request.method, request.path, exc_info=True
            )

    # -- writing the response ---------------------------------------------------------

    async def send(self, response):
        """Frame and write ``response``. Raises ``_ClientGone`` when the client left, or
        whatever the body iterator raised."""
        conn = self.conn
        body = response.body
        if isinstance(body, _BYTES_TYPES):
            self._write_whole(response)
            if conn.writing_paused:
                await conn.drain()
            return
        try:
            fields, bodiless, chunked, expected = self._frame(response, None)
            self.response_started = True
            await conn.write(encode_response_head(response.status, fields))
            if not bodiless:
                await self._stream(body, chunked, expected)
        finally:
            await _aclose(body)

    def _write_whole(self, response):
        """Frame and write a response whose body is bytes, without waiting for the socket
        buffer to drain. Raises ``_ClientGone`` when the client left, ``ValueError`` for a
        head that cannot be written."""
        body = response.body
        fields, bodiless, _, _ = self._frame(response, len(body))
        head = encode_response_head(response.status, fields)
        joined = not bodiless and len(body) <= SMALL_BODY  # one write for a small body
        self.conn.write_now(head + bytes(body) if joined else head)
        self.response_started = True
        if not (bodiless or joined):
            self.conn.transport.write(body)

    def _frame(self, response, size):
        """The head's fields for ``response`` and how its body goes out: (fields,
        bodiless, chunked, expected length of a streamed body or ``None``). ``size`` is the
        length of a bytes body, ``None`` for a stream. The handler's framing fields are
        dropped and redone (RFC 9112 §6): HEAD, 1xx, 204 and 304 carry no body (HEAD and
        304 keep the length a GET would have had); a bytes body gets its
        ``content-length``; a stream keeps the handler's ``content-length``, else is
        chunked (HTTP/1.1) or close-delimited (HTTP/1.0)."""
        status = response.status
        given = response.headers
        fields = [] if given is None else [
            item for item in given._items if item[0] not in _FRAMING_AND_LENGTH
        ]
        bodiless = self.head.method == "HEAD" or status == 204 or status == 304 or status < 200
        chunked = False
        expected = None
        length = None
        if size is not None and not bodiless:
            length = str(size)  # the common case: no further look at the handler's fields
        elif status != 204 and status >= 200:
            declared = None if given is None else given.get("content-length")
            if bodiless:
                length = declared if declared is not None or not size else str(size)
            elif declared is not None:
                length = declared
                expected = int(declared)
            elif self.head.version == _HTTP10:
                self.must_close = True  # close-delimited: an HTTP/1.0 client knows no chunks
            else:
                chunked = True
                fields.append(("transfer-encoding", "chunked"))
        if length is not None:
            fields.append(("content-length", length))
        connection = self._connection_field()
        if connection is not None:
            fields.append(connection)
        return fields, bodiless, chunked, expected

    def _connection_field(self):
        """Decide, before the head goes out, whether the connection closes after it, and
        return the ``connection`` field that says so: ``close``, ``keep-alive`` for an
        HTTP/1.0 client that keeps it, or ``None`` (HTTP/1.1's default)."""
        body = self.body
        close = (
            self.must_close
            or not self.head.keep_alive
            or self.conn.server._closing
            or not (body._done or body._discardable())  # ``_done`` first: no call
        )
        self.must_close = close
        if close:
            return _CONNECTION_CLOSE
        return _CONNECTION_KEEP_ALIVE if self.head.version == _HTTP10 else None

    async def _stream(self, body, chunked, expected):
        conn = self.conn
        server = conn.server
        iterator = body.__aiter__()
        sent = 0
        fair_share = FAIR_SHARE_BYTES
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
                # No coroutine per event: a wait only while the transport is paused.
                conn.write_now(encode_chunk(chunk) if chunked else chunk)
                if conn.writing_paused:
                    await conn.drain()
                elif sent >= fair_share:
                    # A body that never waits (one read of a gzip bomb inflates into a
                    # thousand ready pieces) to a client that takes them as fast would
                    # otherwise hold the loop for seconds: other connections get a turn.
                    fair_share = sent + FAIR_SHARE_BYTES
                    await asyncio.sleep(0)
            if chunked:
                await conn.write(LAST_CHUNK)
            elif expected is not None and sent != expected:
                self.must_close = True
                log.warning("response body was %d bytes, content-length said %d", sent, expected)
        finally:
            server.open_streams -= 1
            if iterator is not body:
                await _aclose(iterator)  # ``send`` closes ``body`` itself

    async def discard_body(self):
        """Read and drop a small unread body; True when the connection stays usable."""
        try:
            while await self.body._next_chunk() is not None:
                pass
        except errors.ProxyError:
            return False
        return True


def _error_body(error_type, message):
    return json.dumps({"error": {"type": error_type, "message": message}}).encode("utf-8")


def _json_error(status, error_type, message, extra=()):
    headers = Headers.from_lowered([("content-type", _JSON)])
    for name, value in extra:
        headers.add(name, value)
    return Response(status, headers, _error_body(error_type, message))


async def _aclose(obj):
    """Call ``obj.aclose()`` if it has one; log its failure instead of raising it."""
    close = getattr(obj, "aclose", None)
    if close is None:
        return
    try:
        await close()
    except _EXPECTED_FAULTS as exc:
        log.warning("closing a response body failed: %s", _reason(exc))
    except Exception:
        log.warning("closing a response body failed", exc_info=True)


def _reason(exc):
    """What went wrong, in a few words for a log line: a ``ProxyError``'s message, else
    the exception's text (or its type's name when it has none)."""
    if isinstance(exc, errors.ProxyError):
        return exc.message
    text = str(exc)
    return "%s: %s" % (type(exc).__name__, text) if text else type(exc).__name__


class _TunnelProtocol(asyncio.StreamReaderProtocol):
    """The protocol of an upgraded connection: a stream pair for ``on_upgrade``, and the
    connection told when the socket is gone."""

    def __init__(self, reader, conn):
        super().__init__(reader)
        self._conn = conn

    def connection_lost(self, exc):
        super().connection_lost(exc)
        self._conn.connection_lost_in_tunnel()


class _Connection(FlowControlled):
    """One client connection: parser, flow control, timeouts and the current request."""

    __slots__ = (
        "server",
        "loop",
        "clock",
        "parser",
        "peer",
        "tls",
        "state",
        "cycle",
        "task",
        "running",
        "eof",
        "client_gone",
        "data_waiter",
        "deadline",
        "deadline_kind",
        "timer",
        "timer_when",
        "request_deadline",
        "waiting_since",
    )

    high_water = HIGH_WATER

    def __init__(self, server):
        super().__init__()
        self.server = server
        self.loop = server._loop
        self.clock = server._clock  # the loop's clock: ``loop.time`` or what it calls
        self.parser = None  # type: Optional[RequestParser]
        self.peer = ("", 0)
        self.tls = server._ssl_context is not None
        self.state = _State.IDLE
        self.cycle = None  # type: Optional[_Cycle]
        self.task = None  # type: Optional[asyncio.Task]
        self.running = False  # the request task has entered ``_run``
        self.eof = False
        self.client_gone = False
        self.data_waiter = None  # type: Optional[asyncio.Future]
        self.deadline = None  # type: Optional[float]
        self.deadline_kind = _Timeout.IDLE
        self.timer = None  # type: Optional[asyncio.TimerHandle]
        self.timer_when = 0.0
        # When the request whose head is arriving must be complete (None: no head begun).
        self.request_deadline = None  # type: Optional[float]
        # Since when the connection has been waiting for a request (idle, or its head
        # incomplete): the acceptor's measure of who to let go at the cap.
        self.waiting_since = 0.0

    # -- asyncio.Protocol callbacks --------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        server = self.server
        server._connections.add(self)
        try:
            limits = server._limits()
            self.parser = RequestParser(limits.max_header_bytes)
            peer = transport.get_extra_info("peername")
            self.peer = (str(peer[0]), int(peer[1])) if peer else ("", 0)
        except Exception:
            log.exception("cannot serve a new connection")
            transport.abort()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                # Streamed events must leave at once, not wait for Nagle's delayed ACK.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        if server._closing:
            transport.close()
            return
        self.waiting_since = self.clock()
        self.set_deadline(limits.idle_timeout, _Timeout.IDLE)

    def data_received(self, data):
        if self.state is _State.LINGER:
            self.unread += len(data)
            if self.unread > LINGER_BYTES:
                self.transport.close()
            return
        self.parser.feed(data)
        if self.cycle is None:
            self.next_request()
            return
        waiter = self.data_waiter
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(True)
            return
        self.count_unread(len(data))  # nobody is consuming: pause past the high water

    def eof_received(self):
        self.eof = True
        if self.state is _State.LINGER:
            return False
        if self.state is _State.TUNNEL:
            return not self.tls  # the switch hands the EOF on to ``on_upgrade``'s reader
        if self.cycle is None:
            self.parser.feed_eof()
            self.next_request()
        cycle = self.cycle
        if cycle is not None and cycle.body.complete:
            # The client left while its request is answered: closing the transport makes
            # ``connection_lost`` cancel the request task.
            log.debug("client %s left during a request", self.peer[0])
            self.client_gone = True
            return False
        waiter = self.data_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)
        # Keep the socket open to answer (an error about a truncated head); TLS cannot.
        return not self.tls

    def connection_lost(self, exc):
        self.lost = True
        self.client_gone = True
        self.deadline = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for waiter in (self.data_waiter, self.drain_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(True)
        task = self.task
        if task is None:
            self.forget()
            return
        task.cancel()
        if not self.running:
            # Cancelled before its first step, the task never enters ``_run`` (its
            # bookkeeping included): settle for it here.
            self.task = None
            self.server.in_flight -= 1
            self.forget()

    def connection_lost_in_tunnel(self):
        """``connection_lost`` as seen by the tunnel protocol after an upgrade."""
        self.lost = True
        self.client_gone = True
        if self.task is None:
            self.forget()

    # -- bookkeeping -----------------------------------------------------------------

    def forget(self):
        """Drop the connection from the server once its socket and its task are gone."""
        server = self.server
        server._connections.discard(self)
        if server._closing:
            server._changed.set()
        elif not server._acceptor.accepting:
            server._acceptor.maybe_resume()  # a connection slot (and a descriptor) is free

    def set_state(self, state):
        self.state = state
        if self.server._closing:
            self.server._changed.set()

    def set_deadline(self, timeout, kind):
        """Run the ``kind`` timeout action ``timeout`` seconds from now unless the deadline
        is cleared (``deadline = None``) or moved first. Re-arms the timer only when the new
        deadline is earlier than the armed one."""
        self.set_deadline_at(self.clock() + timeout, kind)

    def set_deadline_at(self, when, kind):
        """``set_deadline`` for a deadline given in loop time."""
        self.deadline = when
        self.deadline_kind = kind
        timer = self.timer
        if timer is None or when < self.timer_when:
            if timer is not None:
                timer.cancel()
            self.timer = self.loop.call_at(when, self._on_timer)
            self.timer_when = when

    def _on_timer(self):
        self.timer = None
        deadline = self.deadline
        if deadline is None:
            return
        if deadline > self.timer_when:
            self.timer = self.loop.call_at(deadline, self._on_timer)
            self.timer_when = deadline
            return
        self.deadline = None
        kind = self.deadline_kind
        if kind is _Timeout.IDLE:
            self.transport.close()  # idle keep-alive connection: close quietly
        elif kind is _Timeout.HEAD:
            log.info("request head from %s timed out", self.peer[0])
            self.send_error(408, "timeout_error", "timed out reading the request")
        elif kind is _Timeout.BODY:
            waiter = self.data_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(False)
        elif kind is _Timeout.LINGER:
            self.transport.close()
        else:
            self.transport.abort()

    def waiting_on_the_client(self):
        """Whether the connection waits for its client and nothing else: idle between
        requests, a head incomplete, or a request body read waiting before any answer
        began (the deadline guards exactly those waits)."""
        kind = self.deadline_kind
        if self.deadline is None or self.state is _State.LINGER:
            return False
        if kind is _Timeout.IDLE or kind is _Timeout.HEAD:
            return True
        return kind is _Timeout.BODY and self.cycle is not None and not self.cycle.response_started

    def let_go(self):
        """Make room at the connection cap (see ``_Acceptor.evict``), at once: a request
        under way (its head or body incomplete) is written the 408 its request timeout
        would give, and the socket is closed without the usual lingering (what was
        written still leaves first: the kernel sends it before its FIN); a handler reading
        the body is cancelled as for any client that leaves."""
        self.deadline = None
        if self.deadline_kind is not _Timeout.IDLE and not self.transport.is_closing():
            headers = Headers.from_lowered([("content-type", _JSON), ("connection", "close")])
            payload = _error_body("timeout_error", "the proxy is at its connection limit and this request was too slow")
            headers.add("content-length", str(len(payload)))
            self.transport.write(encode_response_head(408, headers) + payload)
        self.transport.abort()

    async def wait_for_data(self, cycle):
        """Wait for more body bytes, EOF or loss of the socket. Raises ``RequestTimeout``
        when none came for ``read_timeout`` seconds, or when ``cycle``'s request is not
        complete by its deadline (``request_timeout``)."""
        limits = cycle.limits
        when = self.clock() + limits.read_timeout
        whole = cycle.deadline <= when  # which of the two limits ends this wait
        waiter = self.data_waiter = self.loop.create_future()
        self.set_deadline_at(cycle.deadline if whole else when, _Timeout.BODY)
        try:
            arrived = await waiter
        finally:
            self.data_waiter = None
            self.deadline = None
        if arrived:
            return
        if whole:
            raise RequestTimeout(
                "the request was not received whole within %gs" % limits.request_timeout
            )
        raise RequestTimeout("no request body bytes came for %gs" % limits.read_timeout)

    # -- the request loop --------------------------------------------------------------

    def next_request(self):
        """Parse what is buffered: start the next request, or wait for more bytes (with
        the idle or head timeout), or answer a bad request and close."""
        parser = self.parser
        try:
            event = parser.next_event()
        except ProtocolError as exc:
            log.info("bad request from %s: %s (%d)", self.peer[0], exc.message, exc.status)
            self.send_error(exc.status, "invalid_request_error", exc.message)
            return
        if type(event) is RequestHead:
            self.start(event)
            return
        if event is NEED_DATA:
            if not parser.has_buffered_data:
                self.wait_for_request(self.server._limits().idle_timeout)
                return
            self.ran_dry()
            self.wait_for_head()
            return
        if event is CONNECTION_CLOSED:
            self.close()
            return
        self.send_error(400, "invalid_request_error", "unexpected data before a request")

    def wait_for_head(self):
        """Part of a head is buffered: wait for the rest, for ``read_timeout`` at most, and
        no later than ``request_timeout`` after its first bytes (then 408 and close)."""
        limits = self.server._limits()
        now = self.clock()
        if self.request_deadline is None:
            # The first bytes of a request: all of it must come within request_timeout.
            self.set_state(_State.ACTIVE)
            self.request_deadline = now + limits.request_timeout
        self.set_deadline_at(min(self.request_deadline, now + limits.read_timeout), _Timeout.HEAD)

    def wait_for_request(self, idle_timeout):
        """Nothing is buffered between requests: wait for one for up to ``idle_timeout``
        seconds, or close when the server is shutting down."""
        self.ran_dry()
        self.request_deadline = None
        if self.server._closing:
            self.close()
            return
        self.state = _State.IDLE
        self.waiting_since = self.clock()
        self.set_deadline(idle_timeout, _Timeout.IDLE)

    def start(self, head):
        """Start the request task for ``head`` (or refuse a body over ``max_body_bytes``)."""
        server = self.server
        if self.transport.is_closing():
            return  # a write failed: ``connection_lost`` is on its way
        limits = server._limits()
        clock = self.clock
        now = clock()
        arrived = now if clock is time.monotonic else time.monotonic()
        deadline = self.request_deadline
        if deadline is None:  # the head came whole: the request's time starts now
            deadline = now + limits.request_timeout
            self.waiting_since = now
        self.request_deadline = None
        self.deadline = None
        self.state = _State.ACTIVE
        if head.content_length is not None and head.content_length > limits.max_body_bytes:
            log.info("request body from %s too large: %d bytes", self.peer[0], head.content_length)
            self.send_error(
                413,
                "request_too_large",
                "request body is larger than %d bytes" % limits.max_body_bytes,
            )
            return
        try:
            first = self.parser.next_event()
        except ProtocolError as exc:
            log.info("bad request from %s: %s (%d)", self.peer[0], exc.message, exc.status)
            self.send_error(exc.status, "invalid_request_error", exc.message)
            return
        cycle = _Cycle(self, head, limits, deadline)
        body = cycle.body = RequestBody(self, cycle, head.content_length, first)
        self.cycle = cycle
        cycle.request = Request(
            head.method,
            head.target,
            head.headers,
            self.peer,
            self.tls,
            body,
            arrived,
            head.version,
        )
        server.in_flight += 1
        task = self.loop.create_task(self._run(cycle))
        if not task.done():  # an eager task factory may have run it to the end already
            self.task = task

    async def _run(self, cycle):
        """The request task: answer, then go on with the next request or close."""
        server = self.server
        self.running = True
        keep = False
        try:
            try:
                upgrade = await cycle.respond()
            finally:
                server.in_flight -= 1
            if upgrade is not None:
                await self._tunnel(upgrade)
            elif self.client_gone:
                self.close()
            elif cycle.must_close or not cycle.head.keep_alive or server._closing:
                # Input may still be on its way: let the client read the answer first.
                self.close(linger=not cycle.body._done)
            else:
                keep = cycle.body._done or await cycle.discard_body()
                if not keep:
                    self.close(linger=True)  # the rest of the body could not be read
        except Exception:
            log.exception("connection from %s failed", self.peer[0])
            self.transport.abort()
        finally:
            self.task = None
            self.running = False
            cycle.finish()
            if self.lost:
                self.forget()
        if keep:
            self.cycle = None
            if self.parser.has_buffered_data:
                self.next_request()  # pipelined
            else:
                self.wait_for_request(cycle.limits.idle_timeout)

    # -- writing, for the request cycle --------------------------------------------------

    async def write(self, data):
        """``write_now``, then wait while the transport has paused us (flow control)."""
        self.write_now(data)
        if self.writing_paused:
            await self.drain()

    def write_now(self, data):
        """Hand ``data`` to the transport. Raises ``_ClientGone`` when the client left."""
        transport = self.transport
        if self.lost or transport.is_closing():
            raise _ClientGone()
        transport.write(data)

    async def drain(self):
        """Wait until the transport resumes writing. Raises ``_ClientGone`` when the client
        left meanwhile, or took no byte for ``read_timeout`` seconds (then the socket is
        aborted)."""
        cycle = self.cycle
        timeout = (self.server._limits() if cycle is None else cycle.limits).read_timeout
        if not await self.wait_writable(timeout):
            log.info(
                "client %s read nothing of its response for %gs; connection cut",
                self.peer[0],
                timeout,
            )
            self.abort()
            raise _ClientGone()
        if self.lost:
            raise _ClientGone()

    # -- errors, upgrades, closing -------------------------------------------------------

    def send_error(self, status, error_type, message):
        """Answer a request the handler never saw, with ``connection: close``, and close."""
        headers = Headers.from_lowered([("content-type", _JSON)])
        payload = _error_body(error_type, message)
        headers.add("content-length", str(len(payload)))
        headers.add("connection", "close")
        if not self.lost and not self.transport.is_closing():
            self.transport.write(encode_response_head(status, headers) + payload)
        self.close(linger=True)

    async def _tunnel(self, response):
        """Write the 101 head and hand the socket to ``on_upgrade`` until it returns."""
        server = self.server
        headers = Headers() if response.headers is None else response.headers.copy()
        if "upgrade" in headers and "connection" not in headers:
            headers.add("connection", "upgrade")
        self.deadline = None
        self.set_state(_State.TUNNEL)
        try:
            await self.write(encode_response_head(101, headers))
        except _ClientGone:
            self.client_gone = True
            return
        reader, writer, leftover = self._switch_protocol()
        server.open_tunnels += 1
        try:
            await response.on_upgrade(reader, writer, leftover)
        except _EXPECTED_FAULTS as exc:
            log.warning("upgraded connection from %s failed: %s", self.peer[0], _reason(exc))
        except Exception:
            log.warning("upgraded connection from %s failed", self.peer[0], exc_info=True)
        except asyncio.CancelledError:
            self.transport.abort()
            raise
        finally:
            server.open_tunnels -= 1
        self.close()

    def _switch_protocol(self):
        """Hand the transport to a stream protocol: (reader, writer, bytes already read).
        Called with nothing left to flush, so the new protocol starts unpaused."""
        transport = self.transport
        leftover = self.parser.take_trailing()
        reader = asyncio.StreamReader(limit=HIGH_WATER)
        protocol = _TunnelProtocol(reader, self)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self.eof:
            reader.feed_eof()
        self.ran_dry()
        writer = asyncio.StreamWriter(transport, protocol, reader, self.loop)
        return reader, writer, leftover

    def close(self, linger=False):
        """Close the socket once what was written has been sent. With ``linger`` (an
        answer that may race the client's input), shut the write side and read and drop
        what still comes first (``_State.LINGER``)."""
        transport = self.transport
        if transport.is_closing() or self.state is _State.LINGER:
            return
        if linger and not self.client_gone and not self.eof and transport.can_write_eof():
            try:
                transport.write_eof()
            except OSError:
                transport.abort()
                return
            self.unread = 0
            self.ran_dry()
            self.set_state(_State.LINGER)  # nothing left to answer: shutdown may cut it short
            self.set_deadline(LINGER_SECONDS, _Timeout.LINGER)
            return
        transport.close()
        if transport.get_write_buffer_size():
            self.set_deadline(CLOSE_TIMEOUT, _Timeout.CLOSE)

    def abort(self):
        """Close the socket at once (its ``connection_lost`` cancels the request task)."""
        self.deadline = None
        self.transport.abort()

    def close_idle(self):
        """Close a connection with no request under way (shutdown)."""
        if self.state is _State.LINGER:
            self.abort()
        else:
            self.deadline = None
            self.transport.close()


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
        self._loop = None  # type: Optional[asyncio.AbstractEventLoop]
        self._clock = time.monotonic  # type: Callable[[], float]
        self._acceptor = None  # type: Optional[_Acceptor]
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
        loop = self._loop = asyncio.get_running_loop()
        # ``BaseEventLoop.time()`` returns ``time.monotonic()``: calling that directly saves
        # a Python call on every deadline. A loop with a clock of its own keeps it.
        inherited = type(loop).time is asyncio.BaseEventLoop.time
        self._clock = time.monotonic if inherited else loop.time
        self._changed = asyncio.Event()
        sockets = await _listening_sockets(loop, host, port)
        self._acceptor = _Acceptor(self, loop, sockets, _descriptor_cap(self._limits()))
        self._acceptor.resume()
        bound = sockets[0].getsockname()
        return bound[0], bound[1]

    def _new_connection(self):
        return _Connection(self)

    async def shutdown(self, drain_timeout):
        """Stop accepting, let in-flight requests finish for up to ``drain_timeout``
        seconds, cancel the rest, then close tunnels. Returns once every connection is
        closed."""
        self._closing = True
        if self._acceptor is not None:
            self._acceptor.close()
        if self._changed is None:
            return
        for conn in list(self._connections):
            if conn.state is _State.IDLE or conn.state is _State.LINGER:
                conn.close_idle()
        await self._drain(drain_timeout)
        # Aborting a socket makes its ``connection_lost`` cancel the request task.
        for conn in list(self._connections):
            if conn.state is not _State.TUNNEL:
                conn.abort()
        for conn in list(self._connections):
            if conn.task is not None:
                conn.task.cancel()  # a tunnel: its task aborts the socket
        await self._wait_closed()

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

    async def _wait_closed(self):
        """Wait until every connection's socket and request task are gone."""
        changed = self._changed
        while self._connections:
            changed.clear()
            try:
                await asyncio.wait_for(changed.wait(), CLOSE_TIMEOUT)
            except asyncio.TimeoutError:
                log.warning("%d connections did not close in time", len(self._connections))
                return


class _Acceptor:
    """Accepts client connections on the listening sockets while fewer than the cap are
    open: ``max-connections``, lowered to what the open-file limit leaves room for.

    Strategy: the accept loop is ours, not asyncio's, because asyncio's cannot be paused
    and logs a traceback for every accept that fails for want of descriptors. Each
    listening socket is watched with ``loop.add_reader``; when it is readable, connections
    are accepted until none is left, ``ACCEPT_BATCH`` were taken or the cap is reached,
    and each is handed to ``loop.connect_accepted_socket`` in a task of its own (the TLS
    handshake happens there), as asyncio's own server does. At the cap, or when accept
    fails for want of descriptors or memory, the readers are removed, so new clients wait
    in the listen backlog; accepting resumes when a connection closes (and, after a
    failure, ``ACCEPT_RETRY_SECONDS`` later in any case). Each kind of trouble is logged
    once per ``ACCEPT_LOG_INTERVAL`` at most, with how often it recurred meanwhile.
    """

    __slots__ = (
        "server", "loop", "sockets", "descriptor_cap", "accepting", "closed", "pending",
        "handshakes", "retry", "next_log", "unlogged",
    )

    def __init__(self, server, loop, sockets, descriptor_cap):
        self.server = server
        self.loop = loop
        self.sockets = sockets  # type: List[socket.socket]
        self.descriptor_cap = descriptor_cap  # type: Optional[int]
        self.accepting = False
        self.closed = False
        # Accepted sockets being set up (a tick, or a TLS handshake), not yet connections;
        # the TLS ones' tasks, which shutdown cancels.
        self.pending = 0
        self.handshakes = set()  # type: Set[asyncio.Task]
        self.retry = None  # type: Optional[asyncio.TimerHandle]
        self.next_log = {}  # type: Dict[str, float]
        self.unlogged = {}  # type: Dict[str, int]

    def cap(self):
        """The most client connections that may be open now."""
        configured = self.server._limits().max_connections
        cap = self.descriptor_cap
        return configured if cap is None or configured <= cap else cap

    def open_sockets(self):
        return len(self.server._connections) + self.pending

    def resume(self):
        if self.accepting or self.closed:
            return
        self.accepting = True
        for sock in self.sockets:
            self.loop.add_reader(sock.fileno(), self.accept, sock)

    def pause(self):
        if self.accepting:
            self.accepting = False
            for sock in self.sockets:
                self.loop.remove_reader(sock.fileno())

    def maybe_resume(self):
        """Accept again if there is room (a connection closed, or a retry came due)."""
        if not (self.accepting or self.closed) and self.open_sockets() < self.cap():
            self.resume()

    def accept(self, sock):
        """``sock`` is readable: accept what waits, within the cap and the batch."""
        cap = self.cap()
        connections = self.server._connections
        tls = self.server._ssl_context is not None
        for taken in range(ACCEPT_BATCH):
            if len(connections) + self.pending >= cap:
                if not taken:  # readable, so a client waits, and there is no room for it
                    self.pause()
                    if self.evict():
                        return  # the evicted connection's close resumes accepting
                    # Look again when the longest-waiting connection may be let go: slow
                    # clients holding every slot close nothing that would resume us.
                    if self.retry is None:
                        self.retry = self.loop.call_later(EVICT_CHECK_SECONDS, self.look_again)
                    self.note(
                        "full",
                        "not accepting connections: %d are open, the most allowed (%s); "
                        "new clients wait until one closes",
                        self.open_sockets(),
                        self.describe_cap(cap),
                    )
                return  # else none may wait: if one does, the socket stays readable
            try:
                client, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _CLIENT_GAVE_UP:
                    continue
                self.failed(exc)
                return
            # Non-blocking: ``connect_accepted_socket`` makes it so (one syscall, not two).
            self.pending += 1
            task = self.loop.create_task(self.connect(client))
            if tls and not task.done():  # an eager task factory may have run it to its end
                self.handshakes.add(task)

    def evict(self):
        """At the cap with a client waiting: let go of the connection that has waited on
        its client longest — idle between requests, or still sending its request, head or
        body — if that began ``EVICT_AFTER_SECONDS`` ago at least; True when one was let
        go. A request being answered is never touched. Without this, slow clients that
        hold every slot (slowloris) would keep everyone else waiting for their request
        timeout."""
        now = self.server._clock()
        oldest = None
        for conn in self.server._connections:
            if conn.waiting_on_the_client() and now - conn.waiting_since >= EVICT_AFTER_SECONDS:
                if oldest is None or conn.waiting_since < oldest.waiting_since:
                    oldest = conn
        if oldest is None:
            return False
        self.note("evicting", "at the connection limit: letting go of connections waiting for a request (%s)",
                  self.describe_cap(self.cap()))
        oldest.let_go()
        return True

    def failed(self, exc):
        """``accept`` failed (out of descriptors or memory, most likely): pause, retry."""
        self.pause()
        if self.retry is None:
            self.retry = self.loop.call_later(ACCEPT_RETRY_SECONDS, self.retry_due)
        self.note(
            "failing",
            "cannot accept connections: %s (%d open); retrying every %gs and whenever one closes",
            exc.strerror or exc,
            self.open_sockets(),
            ACCEPT_RETRY_SECONDS,
        )

    def retry_due(self):
        self.retry = None
        self.maybe_resume()

    def look_again(self):
        """Full a while ago with a client waiting: watch the sockets again, so that a
        client still waiting meets ``accept``, which lets go of a connection that has
        waited long enough by now (or pauses and looks again later)."""
        self.retry = None
        self.resume()

    async def connect(self, client):
        """Make ``client`` a connection (after its TLS handshake, when serving TLS)."""
        server = self.server
        try:
            if server._ssl_context is None:
                await self.loop.connect_accepted_socket(server._new_connection, client)
            else:
                limits = server._limits()
                # The handshake is a wait for client bytes like any other.
                timeout = min(limits.request_timeout, limits.read_timeout)
                await self.loop.connect_accepted_socket(
                    server._new_connection,
                    client,
                    ssl=server._ssl_context,
                    ssl_handshake_timeout=timeout,
                )
        except Exception as exc:  # a failed handshake or a client already gone
            log.debug("connection not set up: %s", _reason(exc))
            client.close()
        except asyncio.CancelledError:
            client.close()
            raise
        finally:
            self.pending -= 1
            if server._ssl_context is not None:
                self.handshakes.discard(asyncio.current_task())
            if not self.accepting:
                self.maybe_resume()

    def note(self, kind, message, *args):
        """Log ``message`` unless a line of this ``kind`` went out less than
        ``ACCEPT_LOG_INTERVAL`` ago; count it then, and say how many were held back."""
        now = self.server._clock()
        if now < self.next_log.get(kind, now):
            self.unlogged[kind] = self.unlogged.get(kind, 0) + 1
            return
        self.next_log[kind] = now + ACCEPT_LOG_INTERVAL
        held = self.unlogged.pop(kind, 0)
        if held:
            message += " (%d more times since the last such line)" % held
        log.warning(message, *args)

    def describe_cap(self, cap):
        configured = self.server._limits().max_connections
        if cap == configured:
            return "max-connections %d" % cap
        return "max-connections %d, lowered to %d by the open-file limit" % (configured, cap)

    def close(self):
        """Stop listening: close the sockets and give up the handshakes under way."""
        self.pause()
        self.closed = True
        if self.retry is not None:
            self.retry.cancel()
            self.retry = None
        for sock in self.sockets:
            sock.close()
        for task in list(self.handshakes):
            task.cancel()


async def _listening_sockets(loop, host, port):
    """Listening, non-blocking sockets on every address ``host`` resolves to, as
    ``loop.create_server`` makes them: ``SO_REUSEADDR``, IPv6 sockets IPv6-only, an address
    family the host lacks skipped. Raises ``OSError`` when an address cannot be bound."""
    try:
        # An address literal (the usual host) needs no lookup, so no resolver thread.
        infos = socket.getaddrinfo(
            host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0,
            socket.AI_PASSIVE | socket.AI_NUMERICHOST,
        )
    except socket.gaierror:
        infos = await loop.getaddrinfo(
            host, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    sockets = []  # type: List[socket.socket]
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):  # unique, in order
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:
                continue  # e.g. no IPv6 on this host
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise OSError(
                    exc.errno,
                    "error while attempting to bind on address %r: %s"
                    % (address, (exc.strerror or str(exc)).lower()),
                ) from None
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
        if not sockets:
            raise OSError("no address to listen on for %r" % (host,))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _descriptor_cap(limits):
    """The most client connections the process's open-file limit leaves room for, or
    ``None`` when it cannot be known (no ``resource`` module, or the call is refused, as a
    seccomp filter may): ``FDS_PER_CONNECTION`` descriptors each, once ``FD_RESERVE`` are
    set aside. Logs one line when that is fewer than ``limits.max_connections``."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY:
        return None
    cap = max(1, (soft - FD_RESERVE) // FDS_PER_CONNECTION)
    if cap < limits.max_connections:
        log.warning(
            "at most %d client connections, not max-connections %d: the open-file limit is "
            "%d, each connection may need an upstream socket too, and %d descriptors are "
            "kept for the rest (raise LimitNOFILE= or ulimit -n)",
            cap,
            limits.max_connections,
            soft,
            FD_RESERVE,
        )
    return cap
