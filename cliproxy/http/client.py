"""Outbound HTTP/1.1: a keep-alive pool, TLS, HTTP proxies (CONNECT), timeouts.

Strategy: the framing is the sans-IO ``parser.ResponseParser`` and ``writer``; this module
only moves bytes between them and the socket. One ``_Connection`` is one socket: an
``asyncio.Protocol`` whose ``data_received`` feeds its parser and wakes the one coroutine
waiting for bytes, if any. No streams and no task per wait: a request is typically one
``transport.write`` (head and small body together) and one future that the answer
resolves. Connections are kept in a LIFO list per origin key ``(scheme, host, port,
proxy)`` while idle. A connection goes back to the pool only when its response was read
to the end, both sides allowed keep-alive and our request was sent whole; anything else
closes it, so a half-read response can never be mistaken for the next one.

Timeouts: each wait has a deadline in loop time (the first byte: one deadline for the
whole head; the body: ``read_timeout`` per wait). A connection arms at most one
``call_at`` timer and only moves it when a wait needs an earlier deadline; when it fires
early (the deadline moved later) it re-arms itself. With timeouts of minutes and answers
in milliseconds a request almost never touches the timer heap. Writing a streamed
request body waits ``read_timeout`` at most each time the upstream's window is full: an
upstream that stops reading is cut (``UpstreamTimeout``).

Flow control: reading pauses once more than ``READ_HIGH_WATER`` bytes arrived that nobody
asked for (a slow client downstream holds back the upstream instead of filling memory)
and resumes when the response reader asks for more. A streamed request body waits for
``resume_writing`` when the transport's write buffer is full.

A pooled connection may have been closed by the server while idle: ``connection_lost``
takes it out of the pool at once, and unsolicited bytes (a server may send a 408 before
closing) close it. One idle for ``POOL_IDLE_SECONDS`` is closed instead of reused, before
the server's own keep-alive timeout can race a request written on it. When a reused
connection still dies before the first byte of the answer (EOF or reset) the request is
replayed once on a fresh connection, but only when the body is replayable (``bytes`` or
``None``): an async-iterator body may be half consumed.

Proxies: ``proxy_url=None`` follows ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` (read once
per client, through ``urllib.request``); ``"direct"`` uses none; ``http://[user:pass@]
host:port`` is that proxy. https targets are tunnelled with ``CONNECT`` (RFC 9110 §9.3.6),
done on a plain socket before asyncio wraps it in TLS with SNI = the target host, which
works on every Python from 3.8 (``StreamWriter.start_tls`` is 3.11+). http targets are
sent to the proxy in absolute form (RFC 9112 §3.2.2).

WebSocket upgrades (``open_upgrade``) use the same connection until the 101; then the
transport is handed to an ``asyncio.StreamReaderProtocol`` so that the caller gets the
ordinary streams for its byte pipe.

Errors: everything that goes wrong with the upstream is an ``UpstreamError`` (502) or
``UpstreamTimeout`` (504) whose message names host:port and the reason, never a
credential.
"""

import asyncio
import base64
import logging
import os
import socket
import ssl
import time
from typing import Dict, List, NamedTuple, Optional, Tuple
from urllib.parse import unquote, urlsplit

from cliproxy.errors import UpstreamError, UpstreamTimeout
from cliproxy.http.flow import FlowControlled
from cliproxy.http.parser import (
    CONNECTION_CLOSED,
    NEED_DATA,
    Data,
    EndOfMessage,
    ProtocolError,
    ResponseHead,
    ResponseParser,
)
from cliproxy.http.writer import LAST_CHUNK, encode_chunk, encode_request_head
from cliproxy.memo import Memo

log = logging.getLogger("cliproxy.http.client")

# Received bytes nobody asked for yet, past which reading from the upstream pauses: the
# bound a StreamReader with a 64 KiB limit used to apply (it pauses at twice its limit).
READ_HIGH_WATER = 128 * 1024
# Buffer limit of the StreamReader handed out after a 101 (WebSocket pipe).
STREAM_LIMIT = 64 * 1024
# A body up to this size is written in the same write as the head (one send, one packet
# for typical JSON requests); bigger ones are written separately to avoid copying them.
COALESCE_BODY_BYTES = 64 * 1024
# Same bound as the server side's default max-header-bytes (SPEC §2 limits).
MAX_HEADER_BYTES = 64 * 1024
MAX_CONNECT_HEAD_BYTES = 16 * 1024  # a proxy's answer to CONNECT is a few lines
# Parsed URLs remembered per client: provider URLs repeat, so parsing each once is enough.
MAX_CACHED_URLS = 1024
# Longest an idle pooled connection is kept for reuse (checked when one is taken from the
# pool or put back). It must stay under the keep-alive timeout of the servers in front of
# providers, past which they drop an idle connection: nginx closes after 75 s by default,
# Google Cloud's load balancers after 610 s. A server that closes with a FIN takes the
# connection out of the pool at once (``connection_lost``); this limit is for a close
# that is still on its way when a request is written, or that never comes (a NAT or a
# firewall forgetting the flow), which would cost a request whose body is streamed (it
# cannot be replayed). Servers with short keep-alives (Node.js, uvicorn, Apache: 5 s)
# close long before this, and their FIN is seen first.
POOL_IDLE_SECONDS = 60.0
_CONNECT_HEAD_END = b"\r\n\r\n"
_DIRECT = "direct"
_REPLAYABLE = (bytes, bytearray, memoryview)
_BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))
_FRAMING_FIELDS = ("content-length", "transfer-encoding")
_BASE_TIME = asyncio.BaseEventLoop.time
_HOST = frozenset(("host",))
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Target(NamedTuple):
    """Where a URL points: ``target`` is the origin-form request target, ``authority``
    the Host header value (port only when not the scheme's default)."""

    scheme: str
    host: str
    port: int
    target: str
    authority: str

    @property
    def origin(self):
        return "%s:%d" % (self.host, self.port)


class _Proxy(NamedTuple):
    """An HTTP proxy; ``authorization`` is the ready ``Proxy-Authorization`` value."""

    host: str
    port: int
    authorization: Optional[str]

    @property
    def origin(self):
        return "%s:%d" % (self.host, self.port)


class _StaleConnection(Exception):
    """The connection died before the first byte of the answer (private signal)."""


class _TimedOut(Exception):
    """A connection's wait passed its deadline (private signal)."""


def _environment_proxies():
    """``{scheme: proxy URL}`` from the ``*_proxy`` environment variables (``no`` holds
    ``NO_PROXY``). ``urllib.request`` is imported only when one is set: it pulls in the
    email and http.client packages, 2 MB of memory a proxy without one never needs."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return {}
    import urllib.request

    return urllib.request.getproxies_environment()


def _bracket(host):
    return "[%s]" % host if ":" in host else host


def _parse_url(url):
    """Split ``url`` into a ``_Target``; raises ``UpstreamError`` for a URL we cannot use."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UpstreamError("invalid upstream URL: %s" % exc)
    scheme = parts.scheme.lower()
    default_port = _DEFAULT_PORTS.get(scheme)
    if default_port is None:
        raise UpstreamError("unsupported upstream URL scheme %r (http or https)" % scheme)
    host = parts.hostname
    if not host:
        raise UpstreamError("upstream URL has no host")
    if port is None:
        port = default_port
    authority = _bracket(host) if port == default_port else "%s:%d" % (_bracket(host), port)
    target = parts.path or "/"
    if parts.query:
        target = "%s?%s" % (target, parts.query)
    return _Target(scheme, host, port, target, authority)


def _parse_proxy(url):
    """Parse ``http://[user:pass@]host:port`` (scheme optional, as in env variables).

    Raises ``UpstreamError`` (without the credentials) when it is not a usable proxy URL.
    """
    if "://" not in url:
        url = "http://" + url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UpstreamError("invalid proxy URL (expected http://[user:pass@]host:port)")
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise UpstreamError(
            "unsupported proxy URL scheme %r (expected http://[user:pass@]host:port)"
            % parts.scheme
        )
    authorization = None
    if parts.username is not None:
        credentials = "%s:%s" % (unquote(parts.username), unquote(parts.password or ""))
        authorization = "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")
    return _Proxy(parts.hostname, port or 80, authorization)


def _describe(exc):
    """A short human reason for a socket-level exception (no addresses, no secrets)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "TLS certificate verification failed: %s" % (exc.verify_message or exc.reason)
    if isinstance(exc, ssl.SSLError):
        return "TLS error: %s" % (exc.reason or exc)
    if isinstance(exc, socket.gaierror):
        return "name resolution failed: %s" % exc.strerror
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _prepare(method, target, proxy, headers, body):
    """``(head bytes, chunked, keep_alive)`` for a request: Host, framing and proxy
    credentials added as needed; ``headers`` is not modified. The framing sent is always
    the body's own: ``Content-Length``/``Transfer-Encoding`` fields in ``headers`` that do
    not describe ``body`` are dropped (a length with no body would leave the upstream
    waiting for it). Raises ``UpstreamError`` for a head the writer refuses (injection
    attempt)."""
    items = headers.items()  # a copy; names are lowercase (Headers' invariant)
    # Only membership is asked of ``names``: ``dict`` of the pairs is the cheapest set of
    # the names to build (no comprehension frame).
    names = dict(items)
    if "host" not in names:
        items.append(("host", target.authority))
    if "transfer-encoding" in names or ("content-length" in names and body is None):
        framing = ("transfer-encoding",) if body is not None else _FRAMING_FIELDS
        items = [item for item in items if item[0] not in framing]
        names = dict(items)
    chunked = False
    if body is None:
        if method in _BODY_METHODS:
            items.append(("content-length", "0"))
    elif isinstance(body, _REPLAYABLE):
        if "content-length" in names:
            items = [item for item in items if item[0] != "content-length"]
        items.append(("content-length", str(len(body))))
    elif "content-length" not in names:
        chunked = True
        items.append(("transfer-encoding", "chunked"))
    request_target = target.target
    if proxy is not None and target.scheme == "http":
        request_target = "http://%s%s" % (target.authority, target.target)
        if proxy.authorization is not None:
            if "proxy-authorization" in names:
                items = [item for item in items if item[0] != "proxy-authorization"]
            items.append(("proxy-authorization", proxy.authorization))
    keep_alive = "connection" not in names or "close" not in headers.get_list("connection")
    try:
        head = encode_request_head(method, request_target, items)  # pairs: no Headers copy
    except ValueError as exc:  # CR/LF or a control character: never written
        raise UpstreamError("refusing to send an invalid request head: %s" % exc)
    return head, chunked, keep_alive


class _Connection(FlowControlled):
    """One upstream socket and its parser; ``key`` is its pool key (``None``: unpooled).

    State the protocol callbacks keep for the coroutine using the connection: ``received``
    (bytes came since the request was written), ``eof`` (the peer closed its side; fed to
    the parser), ``error`` (the socket failed), ``lost`` (the transport is gone). ``pool``
    is the idle list holding the connection, ``None`` while it is in use.
    """

    __slots__ = (
        "loop",
        "parser",
        "key",
        "origin",
        "pool",
        "received",
        "eof",
        "error",
        "_waiter",
        "_deadline",
        "_timer",
        "_timer_when",
        "idle_since",
        "clock",
    )

    high_water = READ_HIGH_WATER

    def __init__(self, loop, key, origin):
        super().__init__()
        self.loop = loop
        # The loop's clock: ``time.monotonic`` itself when ``loop.time`` is the base one
        # (a Python call less per use), else the loop's own.
        self.clock = time.monotonic if type(loop).time is _BASE_TIME else loop.time
        self.parser = ResponseParser(MAX_HEADER_BYTES)
        self.key = key
        self.origin = origin
        self.pool = None  # type: Optional[List[_Connection]]
        self.received = False
        self.eof = False
        self.error = None  # type: Optional[BaseException]
        self._waiter = None  # type: Optional[asyncio.Future]
        self._deadline = None  # type: Optional[float]
        self._timer = None  # type: Optional[asyncio.TimerHandle]
        self._timer_when = 0.0
        self.idle_since = 0.0  # loop time at which it last entered the pool

    # -- protocol callbacks (called by the transport) -----------------------------------

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        if self.pool is not None:
            # Bytes nobody asked for (a 408 before an idle close): never an answer.
            self._leave_pool()
            self.abort()
            return
        self.received = True
        self.parser.feed(data)
        self.count_unread(len(data))
        # ``_wake``, inlined: this runs for every socket read.
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def eof_received(self):
        self.eof = True
        self.parser.feed_eof()
        self._wake()
        # Returning None lets the transport close: we never half-close a connection.

    def connection_lost(self, exc):
        self.lost = True
        if exc is not None:
            self.error = exc
        elif not self.eof:
            self.eof = True
            self.parser.feed_eof()
        self._leave_pool()
        self._cancel_timer()
        self._wake()
        self.wake_drain()

    # -- used by the client ---------------------------------------------------------------

    def wait(self, deadline):
        """A future resolved when bytes, EOF or an error arrive; it fails with
        ``_TimedOut`` once the loop time ``deadline`` (``None``: never) has passed.
        Also resumes reading: the caller consumed everything it was given."""
        self.ran_dry()
        waiter = self.loop.create_future()
        self._waiter = waiter
        self._deadline = deadline
        if deadline is not None and (self._timer is None or deadline < self._timer_when):
            self._arm(deadline)
        return waiter

    async def drain(self, timeout=None):
        """Return once the transport accepts more writes. Raises ``OSError`` when the
        connection failed or is gone, ``_TimedOut`` when the peer took no byte for
        ``timeout`` seconds (``None``: wait as long as it takes)."""
        if not await self.wait_writable(timeout):
            raise _TimedOut()
        if self.lost:
            raise self.error or ConnectionResetError("connection lost")

    # What asyncio.StreamWriter.drain() awaits on its protocol (see open_upgrade).
    _drain_helper = drain

    def park(self, pool, now):
        """Enter the idle list ``pool`` at loop time ``now`` (the caller appends it)."""
        self.pool = pool
        self.idle_since = now
        self.ran_dry()  # it must see an idle close or unsolicited bytes

    def close(self):
        """Close the socket gracefully (used for idle connections)."""
        self._cancel_timer()
        self.transport.close()

    def abort(self):
        """Drop the socket at once, without a TLS goodbye (a response is unfinished)."""
        self._cancel_timer()
        self.transport.abort()

    def detach_streams(self):
        """Hand the transport over to a new ``StreamReader``/``StreamWriter`` pair (after
        a 101); bytes the parser still holds are the caller's (``take_trailing``)."""
        transport = self.transport
        self._cancel_timer()
        self.ran_dry()
        reader = asyncio.StreamReader(limit=STREAM_LIMIT)
        protocol = asyncio.StreamReaderProtocol(reader)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self.writing_paused:
            protocol.pause_writing()
        if self.lost:
            protocol.connection_lost(self.error)
        elif self.eof:
            reader.feed_eof()
        return reader, asyncio.StreamWriter(transport, protocol, reader, self.loop)

    # -- internals ------------------------------------------------------------------------

    def _wake(self):
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _arm(self, when):
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._on_timer)
        self._timer_when = when

    def _on_timer(self):
        self._timer = None
        waiter = self._waiter
        deadline = self._deadline
        if waiter is None or waiter.done() or deadline is None:
            return  # nobody is waiting: the next wait arms a timer again
        if deadline > self._timer_when:
            self._arm(deadline)  # armed for an earlier wait; this one has more time
            return
        self._waiter = None
        waiter.set_exception(_TimedOut())

    def _cancel_timer(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _leave_pool(self):
        pool = self.pool
        if pool is not None:
            self.pool = None
            try:
                pool.remove(self)
            except ValueError:
                pass


class ClientResponse:
    """An upstream response: its head, and its body as an async iterator of bytes.

    ``async for chunk in response`` (or ``await next_chunk()`` until it returns ``None``)
    yields de-framed body bytes as they arrive: each chunk is everything that came since
    the previous one (never held back waiting for more; at most about ``READ_HIGH_WATER``
    plus one socket read). Reaching the end returns the connection to the pool when
    keep-alive allows; ``aclose()`` closes it otherwise. ``complete`` turns true once the
    body was received to its end (the next iteration step stops at once).
    """

    __slots__ = (
        "status",
        "reason",
        "version",
        "headers",
        "first_byte_at",
        "complete",
        "_client",
        "_conn",
        "_read_timeout",
        "_reusable",
    )

    def __init__(self, head, client, conn, read_timeout, reusable):
        self.status = head.status
        self.reason = head.reason
        self.version = head.version
        self.headers = head.headers
        self.first_byte_at = time.monotonic()
        self.complete = False
        self._client = client
        self._conn = conn  # None once the body ended or the response was closed
        self._read_timeout = read_timeout
        self._reusable = reusable

    def __repr__(self):
        return "<ClientResponse %d %s>" % (self.status, self.reason)

    def __aiter__(self):
        return self

    async def __anext__(self):
        """The next piece of body; ``StopAsyncIteration`` at the end.

        Raises ``UpstreamTimeout`` when no byte came for ``read_timeout`` seconds and
        ``UpstreamError`` when the upstream broke the framing or the connection.
        """
        chunk = await self.next_chunk()
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def next_chunk(self):
        """The next piece of body, or ``None`` at its end; raises like ``__anext__``.
        What ``async for`` does, a frame and a ``StopAsyncIteration`` cheaper: a relay
        calls it for every piece of a stream."""
        conn = self._conn
        if conn is None:
            return None
        parser = conn.parser
        pieces = None
        while True:
            try:
                event = parser.next_event()
            except ProtocolError as exc:
                self._abort()
                if conn.eof:  # the body's framing was cut by the close, not broken
                    raise UpstreamError(
                        "upstream %s closed the connection mid-body" % conn.origin
                    ) from None
                raise UpstreamError(
                    "upstream %s sent an invalid response body: %s" % (conn.origin, exc)
                ) from None
            if event is NEED_DATA:
                if pieces is not None:
                    break
                # The wait is awaited here, not in a helper coroutine: a trickling stream
                # waits once per event, and every open stream keeps its waiting frames.
                try:
                    await self._more(conn)
                except _TimedOut:
                    self._abort()
                    raise UpstreamTimeout(
                        "upstream %s sent nothing for %gs" % (conn.origin, self._read_timeout)
                    ) from None
                except BaseException:
                    self._abort()  # cancelled mid-body: the connection state is unknown
                    raise
                continue
            kind = type(event)
            if kind is Data:
                if event.data:
                    if pieces is None:
                        pieces = [event.data]
                    else:
                        pieces.append(event.data)
                continue
            if kind is EndOfMessage:
                self._finish(conn)
                if pieces is None:
                    return None
                break
            self._abort()
            raise UpstreamError("upstream %s closed the connection mid-body" % conn.origin)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _more(self, conn):
        """The future of more bytes (or EOF) on ``conn``, failing with ``_TimedOut`` after
        ``read_timeout``; ``UpstreamError`` at once when the connection has ended."""
        if conn.error is not None or conn.lost or conn.eof:
            reason = "the connection was lost" if conn.error is None else _describe(conn.error)
            raise UpstreamError("upstream %s: %s while reading the body" % (conn.origin, reason))
        timeout = self._read_timeout
        return conn.wait(None if timeout is None else conn.loop.time() + timeout)

    async def read(self, limit=None):
        """The whole remaining body. Raises ``UpstreamError`` when it exceeds ``limit``
        bytes (the connection is closed), and what iteration raises."""
        pieces = []
        size = 0
        while True:
            chunk = await self.next_chunk()
            if chunk is None:
                break
            size += len(chunk)
            if limit is not None and size > limit:
                self._abort()
                raise UpstreamError("upstream response body exceeds %d bytes" % limit)
            pieces.append(chunk)
            if self.complete:  # that chunk ended the body: no need to ask again
                break
        if len(pieces) == 1:
            return pieces[0]
        return b"".join(pieces)

    async def aclose(self):
        """Release the connection: to the pool when the body ended (also when its end is
        already buffered, e.g. a 204 or a small unread body) and keep-alive holds; else
        close it. Idempotent; never waits."""
        conn = self._conn
        if conn is None:
            return
        parser = conn.parser
        try:
            while True:
                event = parser.next_event()
                if type(event) is Data:
                    continue
                if type(event) is EndOfMessage:
                    self._finish(conn)
                    return
                break
        except ProtocolError:
            pass
        self._abort()

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc, tb):
        await self.aclose()

    def _finish(self, conn):
        self._conn = None
        self.complete = True
        if self._reusable:
            self._client._release(conn)
        else:
            conn.close()

    def _abort(self):
        conn = self._conn
        if conn is not None:
            self._conn = None
            conn.abort()


class HttpClient:
    """Outbound HTTP/1.1 client with a keep-alive pool; see the module docstring."""

    def __init__(self, ca_bundle=None, max_idle_per_origin=32):
        # type: (Optional[str], int) -> None
        # One context for every connection (system roots, hostname check, SNI), built on
        # first use: loading the system roots costs ~2.5 MB that a proxy talking only to
        # local providers never needs. The config loader has checked ca_bundle exists.
        self._ca_bundle = ca_bundle
        self._ssl_context = None
        self._max_idle = max_idle_per_origin
        self._idle = {}  # type: Dict[tuple, List[_Connection]]
        # The proxy environment is read once, as Go's net/http does: scanning os.environ
        # per request cost more than the rest of the request path together.
        self._env_proxies = _environment_proxies()
        # Memos of pure functions of the URL, the proxy URL and that environment. The
        # bound methods make a cycle with the client: harmless for the one a process keeps.
        self._routes = Memo(self._route, MAX_CACHED_URLS)  # (url, proxy_url) -> see _route
        self._proxies = Memo(_parse_proxy, 64)  # a handful in practice
        self._bypass = Memo(self._bypassed, 1024)  # host -> NO_PROXY exempts it
        self._closed = False

    async def request(
        self,
        method,
        url,
        headers,
        body=None,
        *,
        proxy_url=None,
        connect_timeout=10.0,
        first_byte_timeout=600.0,
        read_timeout=600.0
    ):
        """Send one request and return its response once the head arrived.

        ``body`` is ``None``, bytes, or an async iterator of bytes (sent chunked unless
        ``headers`` carry ``content-length``). ``headers`` is not modified. Raises
        ``UpstreamTimeout`` (connect or first byte too slow) or ``UpstreamError``.
        """
        target, proxy, key = self._routes[url, proxy_url]
        head, chunked, keep_alive = _prepare(method, target, proxy, headers, body)
        conn = self._take_idle(key)
        reused = conn is not None
        while True:
            if conn is None:
                conn = await self._connect(target, proxy, connect_timeout, key)
            try:
                event = await self._exchange(
                    conn, method, head, body, chunked, first_byte_timeout, read_timeout
                )
                break
            except _StaleConnection as exc:
                if not reused:
                    raise UpstreamError(
                        "upstream %s closed the connection before answering%s" % (conn.origin, exc)
                    )
                if not (body is None or isinstance(body, _REPLAYABLE)):
                    # A streamed body is possibly half consumed: it cannot be sent again.
                    raise UpstreamError(
                        "upstream %s closed a reused connection before answering" % conn.origin
                    )
                log.debug("pooled connection to %s was dead; retrying once", conn.origin)
                conn = None
                reused = False
        return ClientResponse(event, self, conn, read_timeout, keep_alive and event.keep_alive)

    async def open_upgrade(
        self, url, headers, *, proxy_url=None, connect_timeout=10.0, first_byte_timeout=600.0
    ):
        """Send a GET carrying ``headers`` (``Upgrade`` and all) on a fresh, unpooled
        connection and read the answer's head. Its ``Host`` is the upstream's own
        authority: one in ``headers`` (the client's, relayed) is not sent.

        Returns ``(response, reader, writer, leftover)``: after a 101 the caller owns the
        streams (``asyncio.StreamReader``/``StreamWriter``) and ``leftover`` holds bytes
        that came past the head. Any other status comes back with its body readable from
        ``response`` (``leftover`` empty) and the caller must ``aclose()`` the response;
        the reader is then already at EOF and the writer is only good for ``close()``.
        Raises like ``request``.
        """
        target, proxy, _ = self._routes[url, proxy_url]
        head, _, _ = _prepare("GET", target, proxy, headers.without(_HOST), None)
        conn = await self._connect(target, proxy, connect_timeout, None)
        try:
            event = await self._exchange(conn, "GET", head, None, False, first_byte_timeout, None)
        except _StaleConnection as exc:
            raise UpstreamError(
                "upstream %s closed the connection before answering%s" % (conn.origin, exc)
            )
        if event.status == 101:
            leftover = conn.parser.take_trailing()
            reader, writer = conn.detach_streams()
            return ClientResponse(event, self, None, None, False), reader, writer, leftover
        response = ClientResponse(event, self, conn, first_byte_timeout, False)
        reader = asyncio.StreamReader(limit=STREAM_LIMIT)
        reader.feed_eof()
        return response, reader, asyncio.StreamWriter(conn.transport, conn, None, conn.loop), b""

    async def aclose(self):
        """Close every idle connection; connections released later are closed too."""
        self._closed = True
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for conn in list(connections):
                conn.pool = None
                conn.close()

    # -- request building -------------------------------------------------------------

    def _route(self, key):
        """``(target, proxy, pool key)`` of a request to ``url`` via ``proxy_url`` (the
        memo ``key``): with the proxy environment read once per client, it depends on
        nothing else. Raises ``UpstreamError`` for an unusable URL."""
        url, proxy_url = key
        target = _parse_url(url)
        proxy = self._proxy_for(proxy_url, target)
        return target, proxy, (target.scheme, target.host, target.port, proxy)

    def _proxy_for(self, proxy_url, target):
        """The ``_Proxy`` to use for ``target``, or ``None`` for a direct connection."""
        if proxy_url == _DIRECT:
            return None
        if not proxy_url:
            proxy_url = self._env_proxies.get(target.scheme)
            if not proxy_url or self._bypass[target.host]:
                return None
        return self._proxies[proxy_url]

    @property
    def ssl_context(self):
        """The TLS context for outbound connections (built once, when first needed)."""
        if self._ssl_context is None:
            context = ssl.create_default_context()
            if self._ca_bundle:
                context.load_verify_locations(self._ca_bundle)
            self._ssl_context = context
        return self._ssl_context

    def _bypassed(self, host):
        """True when ``NO_PROXY`` exempts ``host``."""
        import urllib.request  # see _environment_proxies

        return bool(urllib.request.proxy_bypass_environment(host, self._env_proxies))

    # -- connections --------------------------------------------------------------------

    def _take_idle(self, key):
        """The most recently used live idle connection for ``key``; dead ones, and those
        idle for ``POOL_IDLE_SECONDS`` or more, are closed."""
        connections = self._idle.get(key)
        if not connections:
            return None
        oldest_kept = connections[-1].clock() - POOL_IDLE_SECONDS
        while connections:
            conn = connections.pop()
            conn.pool = None
            if conn.idle_since <= oldest_kept:
                # The most recent one is too old: the others (parked before it) are older.
                conn.close()
                _close_all(connections)
                return None
            # ``_release`` found it clean when it parked it, and since then its parser
            # was fed nothing (an unsolicited byte closes an idle connection at once):
            # only the socket can have ended.
            if not (conn.lost or conn.eof or conn.transport.is_closing()):
                return conn
            conn.close()
        return None

    def _release(self, conn):
        """Put a connection whose response ended cleanly back into the pool, unless it
        is dirty or our request was not sent whole (the server answered early)."""
        transport = conn.transport
        if (
            self._closed
            or conn.key is None
            or conn.lost  # from here: something ended or dirtied the connection
            or conn.eof
            or transport.is_closing()
            or conn.parser.has_buffered_data
            or transport.get_write_buffer_size()
        ):
            conn.close()
            return
        connections = self._idle.get(conn.key)
        now = conn.clock()
        if connections is None:
            connections = self._idle[conn.key] = []
        else:
            # The oldest come first: close those past their time, so an origin no longer
            # asked for does not keep its sockets for good.
            while connections and connections[0].idle_since <= now - POOL_IDLE_SECONDS:
                stale = connections.pop(0)
                stale.pool = None
                stale.close()
            if len(connections) >= self._max_idle:
                conn.close()
                return
        conn.park(connections, now)
        connections.append(conn)

    async def _connect(self, target, proxy, timeout, key):
        """A new connection to ``target`` (through ``proxy``), TLS when https.

        Raises ``UpstreamTimeout`` after ``timeout`` seconds, ``UpstreamError`` otherwise.
        """
        loop = asyncio.get_running_loop()
        conn = _Connection(loop, key, target.origin)
        try:
            await asyncio.wait_for(self._open(loop, conn, target, proxy), timeout)
        except asyncio.TimeoutError:
            where = target.origin if proxy is None else "%s via proxy %s" % (
                target.origin,
                proxy.origin,
            )
            raise UpstreamTimeout(
                "connecting to %s timed out after %gs" % (where, timeout)
            ) from None
        return conn

    async def _open(self, loop, conn, target, proxy):
        """Connect ``conn`` (its transport set by ``connection_made``)."""
        https = target.scheme == "https"
        if proxy is None:
            try:
                await loop.create_connection(
                    lambda: conn,
                    target.host,
                    target.port,
                    ssl=self.ssl_context if https else None,
                    server_hostname=target.host if https else None,
                )
            except OSError as exc:
                raise UpstreamError("cannot connect to %s: %s" % (target.origin, _describe(exc)))
            return
        if not https:
            try:
                await loop.create_connection(lambda: conn, proxy.host, proxy.port)
            except OSError as exc:
                raise UpstreamError(
                    "cannot connect to proxy %s: %s" % (proxy.origin, _describe(exc))
                )
            return
        sock = await self._tunnel(target, proxy)
        try:
            await loop.create_connection(
                lambda: conn, sock=sock, ssl=self.ssl_context, server_hostname=target.host
            )
        except OSError as exc:
            sock.close()
            raise UpstreamError(
                "cannot connect to %s via proxy %s: %s"
                % (target.origin, proxy.origin, _describe(exc))
            )
        except BaseException:
            sock.close()
            raise

    async def _tunnel(self, target, proxy):
        """A non-blocking socket connected through ``proxy`` to ``target`` by CONNECT."""
        loop = asyncio.get_running_loop()
        sock = await _tcp_socket(loop, proxy.host, proxy.port, "proxy %s" % proxy.origin)
        try:
            authority = "%s:%d" % (_bracket(target.host), target.port)
            lines = ["CONNECT %s HTTP/1.1\r\nhost: %s\r\n" % (authority, authority)]
            if proxy.authorization is not None:
                lines.append("proxy-authorization: %s\r\n" % proxy.authorization)
            lines.append("\r\n")
            await loop.sock_sendall(sock, "".join(lines).encode("latin-1"))
            status, reason = await _read_connect_answer(loop, sock, proxy)
            if not 200 <= status < 300:
                raise UpstreamError(
                    "proxy %s refused CONNECT to %s: %d %s"
                    % (proxy.origin, target.origin, status, reason)
                )
            return sock
        except OSError as exc:
            sock.close()
            raise UpstreamError("proxy %s: %s during CONNECT" % (proxy.origin, _describe(exc)))
        except BaseException:
            sock.close()
            raise

    # -- one exchange -------------------------------------------------------------------

    async def _exchange(self, conn, method, head, body, chunked, timeout, write_timeout):
        """Send the request on ``conn`` and return the final (non-1xx, or 101) response
        head, read within ``timeout`` seconds for the whole head. A streamed body waits at
        most ``write_timeout`` seconds each time the upstream's receive window is full.

        Raises ``_StaleConnection`` when the connection died before any byte of the
        answer (the caller decides on a retry), ``UpstreamTimeout`` when a deadline
        passes, ``UpstreamError`` on a malformed or truncated head; closes ``conn`` on
        every failure. Sending and reading the head are one frame: every request waits
        here, and each frame a waiting request holds costs a call when it wakes.
        """
        try:
            if conn.lost:
                raise _StaleConnection("")
            conn.received = False
            parser = conn.parser
            parser.start(method)
            transport = conn.transport
            if body is None:
                transport.write(head)
            elif isinstance(body, _REPLAYABLE):
                if len(body) <= COALESCE_BODY_BYTES:
                    transport.write(head + body)
                else:
                    transport.writelines((head, body))
            else:
                await _send_stream(conn, head, body, chunked, write_timeout)
            deadline = None
            while True:
                if conn.received:  # else nothing is buffered: no need to ask the parser
                    event = _final_head(conn, parser)
                    if event is not None:
                        return event
                if conn.error is not None or conn.lost or conn.eof:
                    raise _ended_before_head(conn)
                if deadline is None and timeout is not None:
                    deadline = conn.loop.time() + timeout
                try:
                    await conn.wait(deadline)
                except _TimedOut:
                    raise UpstreamTimeout(
                        "upstream %s did not answer within %gs" % (conn.origin, timeout)
                    ) from None
        except BaseException:
            conn.abort()
            raise


async def _send_stream(conn, head, body, chunked, timeout):
    """Write ``head`` then ``body`` (async iterator), chunked when the head says so.

    The head goes out with the first chunk (one write). Errors of the iterator itself
    propagate unchanged; a connection lost on the way raises ``_StaleConnection``, an
    upstream that takes no byte for ``timeout`` seconds ``UpstreamTimeout``.
    """
    transport = conn.transport
    pending = head
    try:
        async for chunk in body:
            if not chunk:
                continue
            frame = encode_chunk(chunk) if chunked else chunk
            if pending is not None:
                frame = pending + frame
                pending = None
            transport.write(frame)
            await conn.drain(timeout)
        tail = LAST_CHUNK if chunked else b""
        transport.write(tail if pending is None else pending + tail)
        await conn.drain(timeout)
    except OSError as exc:
        raise _StaleConnection(" (%s while sending)" % _describe(exc))
    except _TimedOut:
        raise UpstreamTimeout(
            "upstream %s took no request body bytes for %gs" % (conn.origin, timeout)
        ) from None


def _close_all(connections):
    """Close every connection of an idle list and empty it."""
    for conn in connections:
        conn.pool = None
        conn.close()
    del connections[:]


def _ended_before_head(conn):
    """The error for ``conn`` failing or closing before the whole head came:
    ``_StaleConnection`` when no byte of the answer arrived, else an ``UpstreamError``."""
    error = conn.error
    if not conn.received:
        return _StaleConnection("" if error is None else " (%s)" % _describe(error))
    if error is not None:
        return UpstreamError(
            "upstream %s: %s before the response head" % (conn.origin, _describe(error))
        )
    return UpstreamError("upstream %s closed the connection mid-head" % conn.origin)


def _final_head(conn, parser):
    """The final (non-1xx, or 101) response head among what ``conn`` has buffered, or
    ``None`` when more bytes are needed; informational heads (100 Continue, 103 Early
    Hints) are skipped. Raises ``UpstreamError`` for a malformed or truncated head."""
    while True:
        try:
            event = parser.next_event()
        except ProtocolError as exc:
            raise UpstreamError("upstream %s sent an invalid response: %s" % (conn.origin, exc))
        if type(event) is ResponseHead:
            if event.status >= 200 or event.status == 101:
                return event
            continue
        if event is NEED_DATA:
            return None
        if event is CONNECTION_CLOSED:
            raise UpstreamError("upstream %s closed the connection mid-head" % conn.origin)
        raise UpstreamError("upstream %s sent an unexpected %r" % (conn.origin, event))


async def _tcp_socket(loop, host, port, what):
    """A connected non-blocking TCP socket; tries each resolved address in turn."""
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UpstreamError("cannot connect to %s: %s" % (what, _describe(exc)))
    last = None  # type: Optional[OSError]
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
        except BaseException:
            sock.close()
            raise
    reason = _describe(last) if last is not None else "no address"
    raise UpstreamError("cannot connect to %s: %s" % (what, reason))


async def _read_connect_answer(loop, sock, proxy):
    # type: (asyncio.AbstractEventLoop, socket.socket, _Proxy) -> Tuple[int, str]
    """Read the proxy's answer head to CONNECT; return (status, reason).

    A TLS server never speaks first, so nothing the tunnel carries can arrive before our
    ClientHello and reading past the head cannot swallow tunnel bytes.
    """
    buffer = b""
    while _CONNECT_HEAD_END not in buffer:
        data = await loop.sock_recv(sock, 4096)
        if not data:
            raise UpstreamError("proxy %s closed the connection during CONNECT" % proxy.origin)
        buffer += data
        if len(buffer) > MAX_CONNECT_HEAD_BYTES:
            raise UpstreamError("proxy %s sent an oversized CONNECT answer" % proxy.origin)
    head, _, extra = buffer.partition(_CONNECT_HEAD_END)
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise UpstreamError("proxy %s sent an invalid CONNECT answer" % proxy.origin)
    status = int(parts[1])
    if extra and 200 <= status < 300:
        raise UpstreamError("proxy %s sent bytes before the tunnel opened" % proxy.origin)
    return status, parts[2] if len(parts) > 2 else ""
