"""Reverse-proxy primitive: forward one request upstream and stream the answer back.

Strategy: ``forward`` is the one place where a request crosses the proxy unchanged apart
from hop-by-hop fields (RFC 9110 §7.6.1) and ``Host``. The answer's body is relayed by
``_RelayBody``, an async iterator that hands on upstream bytes as soon as they arrive
(nothing is held back, so Server-Sent Events flow event by event) and whose
``aclose()`` closes the upstream response: when the server closes it because the client
left, the upstream connection is dropped at once, whether or not iteration had started.
A plain body whose first read already brought all of it (the usual short JSON answer) is
handed on as bytes instead: the server then writes head and body in one send.

One upstream quirk is repaired (SPEC §3.1): a body that starts with the gzip magic
``1f 8b`` but carries no ``Content-Encoding`` is decompressed. Only the first chunk is
sniffed. Outside SSE the body is read whole when its length is known or it turns out small
(decompressed size up to ``limits.max_body_bytes``) so that ``Content-Length`` is exact;
past that it streams decompressed without a length. SSE is decompressed incrementally and
never buffered. ``zlib`` is used directly (not ``codec.Decoder``) because a corrupt body
here is the upstream's fault, a 502, not the client's 400.

Upstream failures surface as ``UpstreamError`` / ``UpstreamTimeout`` for the caller to
render (502 / 504).
"""

import itertools
import logging
import zlib

from cliproxy.config.model import Limits
from cliproxy.errors import UpstreamError
from cliproxy.http.codec import GZIP_MAGIC
from cliproxy.http.headers import Headers, strip_hop_by_hop
from cliproxy.http.server import Response

log = logging.getLogger("cliproxy.http.proxy")

_GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib: expect a gzip header and trailer
# Most output one decompress call may produce, so a small hostile chunk cannot inflate
# into a huge single allocation (a 64 KiB read can expand ~1000x).
INFLATE_PIECE_BYTES = 64 * 1024  # and below the C allocator's mmap threshold: reused memory
# A gzip body without Content-Encoding (what some Amp endpoints send) is decompressed
# whole, to give it an exact Content-Length, up to this size; a larger one streams on
# decompressed without a length, so memory stays this small whatever it inflates to.
WHOLE_GUNZIP_BYTES = 1024 * 1024
_NO_BODY_STATUSES = frozenset((204, 304))
_EVENT_STREAM = "text/event-stream"
# The spellings providers send, with the answer the parsing below gives: one dict lookup
# instead of three string-method calls on every proxied response.
_COMMON_CONTENT_TYPES = {
    "application/json": False,
    "application/json; charset=utf-8": False,
    "text/event-stream": True,
    "text/event-stream; charset=utf-8": True,
}


def is_event_stream(headers):
    """True when ``headers`` declare ``text/event-stream`` (media type compared
    case-insensitively, parameters ignored; ``application/stream+json`` is not SSE)."""
    content_type = headers.get("content-type")
    if content_type is None:
        return False
    if content_type in _COMMON_CONTENT_TYPES:
        return _COMMON_CONTENT_TYPES[content_type]
    return content_type.split(";", 1)[0].strip().lower() == _EVENT_STREAM


def _strip(headers):
    """``headers`` without hop-by-hop fields and without any ``Proxy-*`` field."""
    headers = strip_hop_by_hop(headers)
    if any(name.startswith("proxy-") for name, _ in headers):
        headers = Headers.from_lowered(
            [item for item in headers if not item[0].startswith("proxy-")]
        )
    return headers


async def forward(
    client,
    method,
    url,
    headers,
    body,
    *,
    proxy_url=None,
    limits=Limits()
):
    """Send ``method url`` with ``headers`` and ``body`` upstream; return the server
    ``Response`` relaying the answer.

    ``body`` is ``None``, bytes or an async iterator of bytes, passed on untouched. A
    client that leaves while this waits is handled by the server, which cancels the
    handler: the cancellation closes the upstream connection. Raises ``UpstreamTimeout``
    (connect or first byte too slow) and ``UpstreamError`` (unreachable, TLS, protocol).
    """
    outbound = _strip(headers)
    outbound.remove("host")  # the client writes the upstream's own authority
    request = client.request(
        method,
        url,
        outbound,
        body,
        proxy_url=proxy_url,
        connect_timeout=limits.connect_timeout,
        first_byte_timeout=limits.read_timeout,
        read_timeout=limits.read_timeout,
    )
    upstream = await request
    try:
        return await _relay(method, upstream, limits)
    except BaseException:
        await upstream.aclose()
        raise


async def _relay(method, upstream, limits):
    """The ``Response`` for ``upstream``: headers cleaned, body streamed or repaired."""
    headers = _strip(upstream.headers)
    status = upstream.status
    if method == "HEAD" or status in _NO_BODY_STATUSES:
        await upstream.aclose()
        return Response(status, headers, b"")
    if "content-encoding" in upstream.headers:
        return Response(status, headers, _RelayBody(upstream))
    if is_event_stream(upstream.headers):
        # Framing is chunked either way; a stale length must not survive decompression.
        headers.remove("content-length")
        return Response(status, headers, _RelayBody(upstream, sniff=True))
    try:
        first = await upstream.__anext__()
    except StopAsyncIteration:
        return Response(status, headers, b"")
    if not first.startswith(GZIP_MAGIC):
        if upstream.complete:  # all of it came at once: one write downstream
            return Response(status, headers, first)
        return Response(status, headers, _RelayBody(upstream, (first,)))
    return await _gunzip_response(status, headers, upstream, first, min(limits.max_body_bytes, WHOLE_GUNZIP_BYTES))


async def _gunzip_response(status, headers, upstream, first, limit):
    """Decompress a gzip body sent without ``Content-Encoding``.

    Whole (exact ``Content-Length``) while the decompressed size stays within ``limit``;
    past it, stream the rest decompressed without a length. A body that is not valid gzip
    after all is relayed as received, untouched.
    """
    declared = headers.get("content-length")
    inflater = _Gunzip()
    if declared is not None and declared.isdigit() and int(declared) > limit:
        headers.remove("content-length")
        return Response(status, headers, _RelayBody(upstream, inflater.feed(first), inflater))
    raw = [first]
    pieces = []
    size = 0
    chunk = first
    while True:
        feed = inflater.feed(chunk)
        try:
            for piece in feed:
                pieces.append(piece)
                size += len(piece)
                if size > limit:  # checked per piece: one read may inflate a thousandfold
                    headers.remove("content-length")
                    return Response(status, headers, _RelayBody(upstream, itertools.chain(pieces, feed), inflater))
        except zlib.error:
            log.info("upstream body starts like gzip but is not; relayed as received")
            return Response(status, headers, _RelayBody(upstream, raw))
        try:
            chunk = await upstream.__anext__()
        except StopAsyncIteration:
            break
        raw.append(chunk)
    data = b"".join(pieces)
    headers.set("content-length", str(len(data)))
    return Response(status, headers, data)


class _Gunzip:
    """Incremental gzip decoding of a body (several members allowed, trailing garbage
    after the last one ignored, as gzip(1) does). ``feed`` raises ``zlib.error``."""

    __slots__ = ("_inflater", "_finished")

    def __init__(self):
        self._inflater = zlib.decompressobj(_GZIP_WBITS)
        self._finished = False

    def feed(self, data):
        """Yield decompressed pieces of at most ``INFLATE_PIECE_BYTES`` for ``data``."""
        inflater = self._inflater
        while data and not self._finished:
            piece = inflater.decompress(data, INFLATE_PIECE_BYTES)
            if piece:
                yield piece
            if not inflater.eof:
                data = inflater.unconsumed_tail
                continue
            data = inflater.unused_data
            if data.startswith(GZIP_MAGIC):
                self._inflater = inflater = zlib.decompressobj(_GZIP_WBITS)
            else:
                self._finished = True


class _RelayBody:
    """The relayed body: an async iterator of bytes over an upstream ``ClientResponse``.

    ``pending`` (an iterable of bytes) goes out first; ``inflater`` (a ``_Gunzip``)
    decompresses what follows; ``sniff`` decides on the first chunk whether to decompress
    (SSE). ``aclose()`` closes the upstream response: it goes back to
    the pool when the body had ended, else its connection is dropped.
    """

    __slots__ = ("_upstream", "_pending", "_inflater", "_sniff")

    def __init__(self, upstream, pending=(), inflater=None, sniff=False):
        self._upstream = upstream
        self._pending = iter(pending)
        self._inflater = inflater
        self._sniff = sniff

    def __aiter__(self):
        return self

    async def __anext__(self):
        """The next piece of body. Raises ``UpstreamError``/``UpstreamTimeout`` when the
        upstream fails (the upstream response is closed first)."""
        while True:
            try:
                piece = next(self._pending, None)
            except zlib.error as exc:
                await self.aclose()
                raise UpstreamError("upstream sent a corrupt gzip body: %s" % exc)
            if piece is not None:
                return piece
            upstream = self._upstream
            if upstream is None:
                raise StopAsyncIteration
            try:
                chunk = await upstream.__anext__()
            except BaseException:  # the end, an upstream failure, or cancellation
                await self.aclose()
                raise
            if self._sniff:
                self._sniff = False
                if chunk.startswith(GZIP_MAGIC):
                    self._inflater = _Gunzip()
            if self._inflater is None:
                return chunk
            self._pending = self._inflater.feed(chunk)

    async def aclose(self):
        """Close the upstream response (idempotent)."""
        upstream, self._upstream = self._upstream, None
        self._pending = iter(())
        if upstream is not None:
            await upstream.aclose()
