"""Outbound HTTP/1.1: a keep-alive pool, TLS, HTTP proxies (CONNECT), timeouts.

Strategy: the framing is the sans-IO ``parser.ResponseParser`` and ``writer``; this module
only moves bytes between them and asyncio streams. One ``_Connection`` is one socket with
its own parser, kept in a LIFO list per origin key ``(scheme, host, port, proxy)`` while
idle. A connection goes back to the pool only when its response was read to the end and
both sides allowed keep-alive; anything else closes it, so a half-read response can never
be mistaken for the next one.

A pooled connection may have been closed by the server while idle. It is checked cheaply
before reuse (EOF seen, transport closing, unsolicited bytes), and when it still dies before
the first byte of the answer (EOF or reset, on the write included) the request is replayed
once on a fresh connection, but only when the body is replayable (``bytes`` or ``None``):
an async-iterator body may be half consumed.

Proxies: ``proxy_url=None`` follows ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` through
``urllib.request``; ``"direct"`` uses none; ``http://[user:pass@]host:port`` is that proxy.
https targets are tunnelled with ``CONNECT`` (RFC 9110 §9.3.6), done on a plain socket
before asyncio wraps it in TLS with SNI = the target host, which works on every Python from
3.8 (``StreamWriter.start_tls`` is 3.11+). http targets are sent to the proxy in absolute
form (RFC 9112 §3.2.2).

Errors: everything that goes wrong with the upstream is an ``UpstreamError`` (502) or
``UpstreamTimeout`` (504) whose message names host:port and the reason, never a
credential.
"""

import asyncio
import base64
import logging
import socket
import ssl
import time
import urllib.request
from typing import Dict, List, NamedTuple, Optional, Tuple
from urllib.parse import unquote, urlsplit

from cliproxy.errors import UpstreamError, UpstreamTimeout
from cliproxy.http.headers import Headers
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

log = logging.getLogger("cliproxy.http.client")

READ_SIZE = 64 * 1024  # bytes per socket read; one read is the most a chunk is held back
# A body up to this size is written in the same write as the head (one send, one packet
# for typical JSON requests); bigger ones are written separately to avoid copying them.
COALESCE_BODY_BYTES = 64 * 1024
# Same bound as the server side's default max-header-bytes (SPEC §2 limits).
MAX_HEADER_BYTES = 64 * 1024
MAX_CONNECT_HEAD_BYTES = 16 * 1024  # a proxy's answer to CONNECT is a few lines
_CONNECT_HEAD_END = b"\r\n\r\n"
_DIRECT = "direct"
_REPLAYABLE = (bytes, bytearray, memoryview)
_BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))
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


async def _read_within(reader, timeout):
    """One read of up to ``READ_SIZE`` bytes, at most ``timeout`` seconds of waiting.

    Raises ``asyncio.TimeoutError``. Bytes already buffered are returned without the
    timer (``wait_for`` costs a task per call before Python 3.12).
    """
    if timeout is None or getattr(reader, "_buffer", None) or reader.at_eof():
        return await reader.read(READ_SIZE)
    return await asyncio.wait_for(reader.read(READ_SIZE), timeout)


class _Connection:
    """One upstream socket and its parser; ``key`` is its pool key."""

    __slots__ = ("reader", "writer", "parser", "key", "origin")

    def __init__(self, reader, writer, key, origin):
        self.reader = reader
        self.writer = writer
        self.parser = ResponseParser(MAX_HEADER_BYTES)
        self.key = key
        self.origin = origin

    def reusable(self):
        """Cheap idle check: no EOF or error seen, and no unsolicited bytes (a server may
        write a 408 before closing an idle connection; that must not answer our next
        request). ``_buffer`` is StreamReader's buffer, stable from 3.8 to 3.13."""
        reader = self.reader
        if self.writer.transport.is_closing() or reader.at_eof():
            return False
        if reader.exception() is not None or getattr(reader, "_buffer", None):
            return False
        return True

    def close(self):
        """Close the socket gracefully (used for idle connections)."""
        self.writer.close()

    def abort(self):
        """Drop the socket at once, without a TLS goodbye (a response is unfinished)."""
        self.writer.transport.abort()


class ClientResponse:
    """An upstream response: its head, and its body as an async iterator of bytes.

    ``async for chunk in response`` yields de-framed body bytes as they arrive (what one
    socket read brought, never more). Reaching the end returns the connection to the pool
    when keep-alive allows; ``aclose()`` closes it otherwise.
    """

    __slots__ = (
        "status",
        "reason",
        "version",
        "headers",
        "first_byte_at",
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
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        parser = conn.parser
        pieces = None
        while True:
            try:
                event = parser.next_event()
            except ProtocolError as exc:
                self._abort()
                raise UpstreamError(
                    "upstream %s sent an invalid response body: %s" % (conn.origin, exc)
                )
            if event is NEED_DATA:
                if pieces is not None:
                    break
                await self._receive(conn)
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
                    raise StopAsyncIteration
                break
            self._abort()
            raise UpstreamError("upstream %s closed the connection mid-body" % conn.origin)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def _receive(self, conn):
        """Feed the parser one socket read (EOF included); errors close the connection."""
        try:
            data = await _read_within(conn.reader, self._read_timeout)
        except asyncio.TimeoutError:
            self._abort()
            raise UpstreamTimeout(
                "upstream %s sent nothing for %gs" % (conn.origin, self._read_timeout)
            )
        except OSError as exc:
            self._abort()
            raise UpstreamError(
                "upstream %s: %s while reading the body" % (conn.origin, _describe(exc))
            )
        except BaseException:
            self._abort()  # cancelled mid-body: the connection state is unknown
            raise
        if data:
            conn.parser.feed(data)
        else:
            conn.parser.feed_eof()

    async def read(self, limit=None):
        """The whole remaining body. Raises ``UpstreamError`` when it exceeds ``limit``
        bytes (the connection is closed), and what iteration raises."""
        pieces = []
        size = 0
        async for chunk in self:
            size += len(chunk)
            if limit is not None and size > limit:
                self._abort()
                raise UpstreamError("upstream response body exceeds %d bytes" % limit)
            pieces.append(chunk)
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

    def close(self):
        """Drop the connection now unless the body already ended (synchronous, for
        callbacks and cleanup paths that cannot await). Idempotent."""
        self._abort()

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc, tb):
        await self.aclose()

    def _finish(self, conn):
        self._conn = None
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
        # One context for every connection (system roots, hostname check, SNI), built
        # here so that a bad ca_bundle fails at startup, not on the first request.
        self.ssl_context = ssl.create_default_context()
        if ca_bundle:
            self.ssl_context.load_verify_locations(ca_bundle)
        self._max_idle = max_idle_per_origin
        self._idle = {}  # type: Dict[tuple, List[_Connection]]
        self._proxies = {}  # type: Dict[str, _Proxy]
        # The proxy environment is read once, as Go's net/http does: scanning os.environ
        # per request cost more than the rest of the request path together.
        self._env_proxies = urllib.request.getproxies_environment()
        self._bypass = {}  # type: Dict[str, bool]
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
        target = _parse_url(url)
        proxy = self._proxy_for(proxy_url, target)
        head = self._encode_head(method, target, proxy, headers, body)
        streamed = not (body is None or isinstance(body, _REPLAYABLE))
        chunked = streamed and "content-length" not in headers
        keep_alive = "connection" not in headers or "close" not in headers.get_list("connection")
        key = (target.scheme, target.host, target.port, proxy)
        conn = self._take_idle(key)
        if conn is not None:
            try:
                return await self._exchange(
                    conn, method, head, body, chunked, first_byte_timeout, read_timeout, keep_alive
                )
            except _StaleConnection:
                if streamed:  # possibly half consumed: cannot be sent again
                    raise UpstreamError(
                        "upstream %s closed a reused connection before answering" % conn.origin
                    )
                log.debug("pooled connection to %s was dead; retrying once", conn.origin)
        conn = await self._connect(target, proxy, connect_timeout, key)
        try:
            return await self._exchange(
                conn, method, head, body, chunked, first_byte_timeout, read_timeout, keep_alive
            )
        except _StaleConnection as exc:
            raise UpstreamError(
                "upstream %s closed the connection before answering%s" % (conn.origin, exc)
            )

    async def open_upgrade(
        self, url, headers, *, proxy_url=None, connect_timeout=10.0, first_byte_timeout=600.0
    ):
        """Send a GET carrying ``headers`` (``Upgrade`` and all) on a fresh, unpooled
        connection and read the answer's head.

        Returns ``(response, reader, writer, leftover)``: after a 101 the caller owns the
        streams and ``leftover`` holds bytes that came past the head; any other status
        comes back with its body readable from ``response`` (``leftover`` empty) and the
        caller must ``aclose()`` the response. Raises like ``request``.
        """
        target = _parse_url(url)
        proxy = self._proxy_for(proxy_url, target)
        head = self._encode_head("GET", target, proxy, headers, None)
        conn = await self._connect(target, proxy, connect_timeout, None)
        try:
            await self._send(conn, head, None, False)
            event = await self._wait_head(conn, "GET", first_byte_timeout)
        except _StaleConnection as exc:
            conn.abort()
            raise UpstreamError(
                "upstream %s closed the connection before answering%s" % (conn.origin, exc)
            )
        except BaseException:
            conn.abort()
            raise
        if event.status == 101:
            response = ClientResponse(event, self, None, None, False)
            return response, conn.reader, conn.writer, conn.parser.take_trailing()
        response = ClientResponse(event, self, conn, first_byte_timeout, False)
        return response, conn.reader, conn.writer, b""

    async def aclose(self):
        """Close every idle connection; connections released later are closed too."""
        self._closed = True
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for conn in connections:
                conn.close()

    # -- request building -------------------------------------------------------------

    def _proxy_for(self, proxy_url, target):
        """The ``_Proxy`` to use for ``target``, or ``None`` for a direct connection."""
        if proxy_url == _DIRECT:
            return None
        if not proxy_url:
            proxy_url = self._env_proxies.get(target.scheme)
            if not proxy_url or self._bypassed(target.host):
                return None
        proxy = self._proxies.get(proxy_url)
        if proxy is None:
            proxy = _parse_proxy(proxy_url)
            if len(self._proxies) >= 64:  # a handful in practice; never grow unbounded
                self._proxies.clear()
            self._proxies[proxy_url] = proxy
        return proxy

    def _bypassed(self, host):
        """True when ``NO_PROXY`` exempts ``host`` (remembered per host)."""
        bypassed = self._bypass.get(host)
        if bypassed is None:
            if len(self._bypass) >= 1024:
                self._bypass.clear()
            bypassed = self._bypass[host] = bool(urllib.request.proxy_bypass_environment(host, self._env_proxies))
        return bypassed

    @staticmethod
    def _encode_head(method, target, proxy, headers, body):
        """The request head bytes: Host, framing and proxy credentials added as needed.
        Raises ``UpstreamError`` for a head the writer refuses (injection attempt)."""
        headers = headers.copy()
        if "host" not in headers:
            headers.add("host", target.authority)
        if body is None:
            if method in _BODY_METHODS and "content-length" not in headers:
                headers.add("content-length", "0")
        elif isinstance(body, _REPLAYABLE):
            headers.set("content-length", str(len(body)))
        elif "content-length" not in headers:
            headers.set("transfer-encoding", "chunked")
        request_target = target.target
        if proxy is not None and target.scheme == "http":
            request_target = "http://%s%s" % (target.authority, target.target)
            if proxy.authorization is not None:
                headers.set("proxy-authorization", proxy.authorization)
        try:
            return encode_request_head(method, request_target, headers)
        except ValueError as exc:  # CR/LF or a control character: never written
            raise UpstreamError("refusing to send an invalid request head: %s" % exc)

    # -- connections --------------------------------------------------------------------

    def _take_idle(self, key):
        """The most recently used live idle connection for ``key`` (dead ones closed)."""
        connections = self._idle.get(key)
        while connections:
            conn = connections.pop()
            if conn.reusable():
                return conn
            conn.close()
        return None

    def _release(self, conn):
        """Put a connection whose response ended cleanly back into the pool."""
        if self._closed or conn.key is None or conn.parser.has_buffered_data:
            conn.close()
            return
        connections = self._idle.setdefault(conn.key, [])
        if len(connections) >= self._max_idle:
            conn.close()
            return
        connections.append(conn)

    async def _connect(self, target, proxy, timeout, key):
        """A new connection to ``target`` (through ``proxy``), TLS when https.

        Raises ``UpstreamTimeout`` after ``timeout`` seconds, ``UpstreamError`` otherwise.
        """
        try:
            reader, writer = await asyncio.wait_for(self._open(target, proxy), timeout)
        except asyncio.TimeoutError:
            where = target.origin if proxy is None else "%s via proxy %s" % (
                target.origin,
                proxy.origin,
            )
            raise UpstreamTimeout("connecting to %s timed out after %gs" % (where, timeout))
        return _Connection(reader, writer, key, target.origin)

    async def _open(self, target, proxy):
        https = target.scheme == "https"
        if proxy is None:
            try:
                return await asyncio.open_connection(
                    target.host,
                    target.port,
                    ssl=self.ssl_context if https else None,
                    server_hostname=target.host if https else None,
                    limit=READ_SIZE,
                )
            except OSError as exc:
                raise UpstreamError("cannot connect to %s: %s" % (target.origin, _describe(exc)))
        if not https:
            try:
                return await asyncio.open_connection(proxy.host, proxy.port, limit=READ_SIZE)
            except OSError as exc:
                raise UpstreamError(
                    "cannot connect to proxy %s: %s" % (proxy.origin, _describe(exc))
                )
        sock = await self._tunnel(target, proxy)
        try:
            return await asyncio.open_connection(
                sock=sock, ssl=self.ssl_context, server_hostname=target.host, limit=READ_SIZE
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

    async def _exchange(
        self, conn, method, head, body, chunked, first_byte_timeout, read_timeout, keep_alive
    ):
        """Send the request on ``conn`` and wait for the final response head.

        Raises ``_StaleConnection`` when the connection died before any byte of the
        answer (the caller decides on a retry); closes ``conn`` on every failure.
        """
        try:
            await self._send(conn, head, body, chunked)
            event = await self._wait_head(conn, method, first_byte_timeout)
        except BaseException:
            conn.abort()
            raise
        return ClientResponse(event, self, conn, read_timeout, keep_alive and event.keep_alive)

    @staticmethod
    async def _send(conn, head, body, chunked):
        writer = conn.writer
        try:
            if body is None:
                writer.write(head)
            elif isinstance(body, _REPLAYABLE):
                if len(body) <= COALESCE_BODY_BYTES:
                    writer.write(head + body)
                else:
                    writer.write(head)
                    writer.write(body)
            else:
                await _send_stream(writer, head, body, chunked)
                return
            await writer.drain()
        except OSError as exc:
            raise _StaleConnection(" (%s while sending)" % _describe(exc))

    async def _wait_head(self, conn, method, timeout):
        try:
            return await asyncio.wait_for(_read_head(conn, method), timeout)
        except asyncio.TimeoutError:
            raise UpstreamTimeout(
                "upstream %s did not answer within %gs" % (conn.origin, timeout)
            )


async def _send_stream(writer, head, body, chunked):
    """Write ``head`` then ``body`` (async iterator), chunked when the head says so.

    The head goes out with the first chunk (one write). Errors of the iterator itself
    propagate unchanged; socket errors raise ``OSError``.
    """
    pending = head
    async for chunk in body:
        if not chunk:
            continue
        frame = encode_chunk(chunk) if chunked else chunk
        if pending is not None:
            frame = pending + frame
            pending = None
        writer.write(frame)
        await writer.drain()
    tail = LAST_CHUNK if chunked else b""
    writer.write(tail if pending is None else pending + tail)
    await writer.drain()


async def _read_head(conn, method):
    """Read until the final (non-1xx, or 101) response head and return it.

    Raises ``_StaleConnection`` on EOF/reset before any byte, ``UpstreamError`` on a
    malformed or truncated head.
    """
    parser = conn.parser
    parser.start(method)
    reader = conn.reader
    received = False
    while True:
        try:
            event = parser.next_event()
        except ProtocolError as exc:
            raise UpstreamError("upstream %s sent an invalid response: %s" % (conn.origin, exc))
        if event is NEED_DATA:
            try:
                data = await reader.read(READ_SIZE)
            except OSError as exc:
                if not received:
                    raise _StaleConnection(" (%s)" % _describe(exc))
                raise UpstreamError(
                    "upstream %s: %s before the response head" % (conn.origin, _describe(exc))
                )
            if data:
                received = True
                parser.feed(data)
            elif received:
                parser.feed_eof()
            else:
                raise _StaleConnection("")
            continue
        if event is CONNECTION_CLOSED:
            raise UpstreamError("upstream %s closed the connection mid-head" % conn.origin)
        if isinstance(event, ResponseHead):
            if event.status < 200 and event.status != 101:
                continue  # 100 Continue, 103 Early Hints: informational only
            return event
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
