"""Sans-IO HTTP/1.1 parser for requests and responses: bytes in, events out.

Strategy: no sockets and no asyncio. The caller ``feed()``s whatever it read, calls
``feed_eof()`` when the peer closed, and pulls events with ``next_event()`` until it gets
``NEED_DATA``. A message is ``RequestHead``/``ResponseHead``, zero or more ``Data``, then
``EndOfMessage``; pipelined messages follow from the same buffer. Any malformed input raises
``ProtocolError`` whose ``status`` is the answer a server should give (400, 413, 431, 501,
505); after that the parser keeps raising and the connection must be closed.

The receive buffer is one ``bytearray``: consumed prefixes are deleted (cheap in CPython),
and the search for the blank line ending a head or trailer section remembers how far it
got, so feeding a head one byte at a time stays linear.

Body framing is table-driven, as in h11: the head decides a ``_Framing`` and
``_READERS`` maps it to a reader class. The reader contract: ``reader.read(buf, eof)``
consumes from the front of ``buf`` and returns an event, returns ``None`` when it needs more
bytes, or raises ``ProtocolError`` (including when ``eof`` is true and the message is
incomplete). A reader returns ``EndOfMessage`` exactly once, as its last event.

Decisions (RFC 9112 leaves them to us):
- Line endings must be CRLF. A bare LF or bare CR in a head, a chunk line or trailers is a
  400; a head ended by LF LF is rejected at once instead of waiting for a CRLF CRLF.
- Leading empty lines (CRLF) before a request line are skipped (RFC 9112 §2.2).
- A version other than HTTP/1.0 or HTTP/1.1 is 505 (requests and responses alike); a
  malformed version string is 400.
- The request target may hold obs-text (bytes 0x80-0xFF, as nginx and h11 accept) but no
  space, control character or DEL.
- Requests: ``Transfer-Encoding`` together with ``Content-Length`` is 400; a
  ``Transfer-Encoding`` other than exactly ``chunked`` is 501; ``Transfer-Encoding`` in an
  HTTP/1.0 request is 400 (RFC 9112 §6.1: faulty framing).
- Responses: ``Transfer-Encoding`` other than exactly ``chunked`` is 501 too, because the
  proxy drops hop-by-hop fields and could not pass on a body still carrying a coding it
  cannot decode. ``Transfer-Encoding`` with ``Content-Length``: chunked wins, the
  ``Content-Length`` fields are dropped from the head and the connection is not reused
  (RFC 9112 §6.3). Neither: the body ends at EOF.
- Several ``Content-Length`` values (repeated fields, or a comma-separated list) that are
  all equal count as one, and the head's fields hold them as ONE field with that value, so
  nothing passed on can be read differently by the next hop; different values are 400
  (RFC 9110 §8.6). A ``Content-Length`` longer than 18 significant digits is 413. A
  request with neither ``Content-Length`` nor ``Transfer-Encoding`` has no body:
  ``content_length`` 0.
- ``ResponseParser``: EOF before the first byte of a response gives ``CONNECTION_CLOSED``
  (the cue for a client to retry on a fresh connection); 1xx heads other than 101 are
  returned and parsing goes on to the final head of the same response, with no
  ``EndOfMessage`` in between.
"""

import enum
import re

from cliproxy.errors import ProxyError
from cliproxy.http.headers import COMMON_METHODS, Headers

__all__ = [
    "CONNECTION_CLOSED",
    "DEFAULT_MAX_HEADER_BYTES",
    "Data",
    "EndOfMessage",
    "NEED_DATA",
    "ProtocolError",
    "RequestHead",
    "RequestParser",
    "ResponseHead",
    "ResponseParser",
]

# 64 KiB for the request/status line plus fields (and, separately, for trailers). Others:
# h11 16 KiB, node 16 KiB, nginx 4 x 8 KiB buffers, Go net/http 1 MiB. SDK clients send
# large cookies and long signed URLs; 64 KiB is generous and still bounded.
DEFAULT_MAX_HEADER_BYTES = 65536

# A chunk-size line (size plus extensions). Go's net/http/internal/chunked.go uses 4096.
MAX_CHUNK_LINE_BYTES = 4096

# Content-Length above 10**18 cannot be a real body and would be slow to turn into an int.
_MAX_LENGTH_DIGITS = 18


class ProtocolError(ProxyError):
    """The peer broke HTTP/1.1 framing or syntax; the connection must be closed.

    ``status`` is the response a server should send: 400 malformed, 413 impossible
    Content-Length, 431 header block too large, 501 unsupported Transfer-Encoding,
    505 unsupported HTTP version.
    """

    error_type = "invalid_request_error"

    def __init__(self, message, status=400):
        super().__init__(message, status)


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name):
        self._name = name

    def __repr__(self):
        return self._name


NEED_DATA = _Sentinel("NEED_DATA")
"""``next_event()`` needs more bytes (or, after a switch of protocols, has nothing more)."""

CONNECTION_CLOSED = _Sentinel("CONNECTION_CLOSED")
"""The peer closed cleanly between messages (or before any byte of a response)."""


class _Event:
    __slots__ = ()
    __hash__ = None

    def __eq__(self, other):
        return type(self) is type(other) and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__
        )

    def __repr__(self):
        fields = ", ".join("%s=%r" % (name, getattr(self, name)) for name in self.__slots__)
        return "%s(%s)" % (type(self).__name__, fields)


class RequestHead(_Event):
    """A request line and its fields. ``content_length`` is the body length: declared, or
    0 when the request has no body; ``None`` for a chunked body."""

    __slots__ = (
        "method",
        "target",
        "version",
        "headers",
        "keep_alive",
        "expect_continue",
        "upgrade",
        "content_length",
    )

    def __init__(
        self,
        method,
        target,
        version,
        headers,
        keep_alive,
        expect_continue=False,
        upgrade=False,
        content_length=None,
    ):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.upgrade = upgrade
        self.content_length = content_length


class ResponseHead(_Event):
    """A status line and its fields (final or 1xx interim)."""

    __slots__ = ("status", "reason", "version", "headers", "keep_alive")

    def __init__(self, status, reason, version, headers, keep_alive):
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive


class Data(_Event):
    """A piece of de-framed body."""

    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data


class EndOfMessage(_Event):
    """The body is complete; ``trailers`` holds chunked trailer fields (usually empty)."""

    __slots__ = ("trailers",)

    def __init__(self, trailers=None):
        self.trailers = Headers.from_lowered([]) if trailers is None else trailers


# --- head syntax (RFC 9110 §5.6.2, RFC 9112 §3, §4, §5) ---------------------------------

_TCHAR = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_TOKEN_RE = re.compile(_TCHAR + "+")
_REQUEST_LINE_RE = re.compile(
    r"(%s+) ([^\x00-\x20\x7f]+) HTTP/([0-9])\.([0-9])" % _TCHAR
)
_STATUS_LINE_RE = re.compile(r"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: (.*))?", re.DOTALL)
# Bytes a start line or field line may hold (RFC 9110 §5.5): HTAB, SP, VCHAR, obs-text.
_FIELD_BYTES = b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
_DIGITS_RE = re.compile(r"[0-9]+")

_VERSIONS = {("1", "1"): "HTTP/1.1", ("1", "0"): "HTTP/1.0"}

# Validated field name -> lowercase name. Most peers send the same few dozen names, so a
# dict hit replaces a regex match per field. Bounded so hostile peers cannot grow it.
_NAME_CACHE = {}
_NAME_CACHE_MAX = 1024

# Fields that decide framing and connection handling.
_SPECIAL = frozenset(
    ("connection", "content-length", "transfer-encoding", "host", "expect", "upgrade")
)


def _bad(message):
    return ProtocolError(message, 400)


def _split_block(block):
    """The lines of a head or trailer block (``bytes`` without its blank line) as
    latin-1 ``str``. Raises 400 for a bare CR, a bare LF or a control character."""
    lines = block.decode("latin-1").split("\r\n")
    # Deleting every byte a field may hold leaves exactly the CRLF pairs between lines,
    # unless there is a bare CR, a bare LF or a control character: one pass in C.
    if len(block.translate(None, _FIELD_BYTES)) != 2 * len(lines) - 2:
        raise _bad("bare CR or LF, or a control character, in header section")
    return lines


def _parse_fields(lines):
    """Field lines as a list of (lowercase name, value) pairs.

    Raises ``ProtocolError`` (400) for obs-fold, a missing colon, or a name that is not
    a token (which includes whitespace before the colon).
    """
    return _parse_fields_and_specials(lines)[0]


def _parse_fields_and_specials(lines):
    """``(_parse_fields(lines), _specials(of those fields))`` in one pass over the lines.

    Raises what ``_parse_fields`` raises.
    """
    items = []
    found = {}
    cache = _NAME_CACHE
    special = _SPECIAL
    try:
        # Hot path: every name already validated; a miss or a line without a colon
        # falls through to the checking loop.
        for line in lines:
            name, value = line.split(":", 1)
            name = cache[name]
            value = value.strip(" \t")
            items.append((name, value))
            if name in special:
                if name in found:
                    found[name].append(value)
                else:
                    found[name] = [value]
    except (KeyError, ValueError):
        items = _check_fields(lines)
        return items, _specials(items)
    return items, found


def _check_fields(lines):
    """``_parse_fields`` for lines whose names are not all cached yet."""
    items = []
    cache = _NAME_CACHE
    for line in lines:
        name, colon, value = line.partition(":")
        lowered = cache.get(name) if colon else None
        if lowered is None:
            if line[:1] in (" ", "\t"):
                raise _bad("obsolete line folding in header section")
            if not colon:
                raise _bad("header line without a colon")
            if _TOKEN_RE.fullmatch(name) is None:
                raise _bad("invalid header name %r" % (name[:64],))
            lowered = name.lower()
            if len(cache) < _NAME_CACHE_MAX:
                cache[name] = lowered
        items.append((lowered, value.strip(" \t")))
    return items


def _specials(items):
    """The framing-relevant fields of ``items``: lowercase name -> list of values."""
    found = {}
    for name, value in items:
        if name in _SPECIAL:
            if name in found:
                found[name].append(value)
            else:
                found[name] = [value]
    return found


def _tokens(values):
    """Comma-separated list elements of ``values``, stripped and lowercased."""
    out = []
    for value in values:
        for part in value.split(","):
            part = part.strip(" \t")
            if part:
                out.append(part.lower())
    return out


def _content_length(values):
    """The one length all ``Content-Length`` values agree on (RFC 9110 §8.6).

    Raises 400 for a non-digit or differing values, 413 for an absurdly long number.
    """
    if len(values) == 1:
        value = values[0]
        # Hot path: one plain number.
        if value.isdigit() and value.isascii() and len(value) <= _MAX_LENGTH_DIGITS:
            return int(value)
    lengths = set()
    for value in values:
        for part in value.split(","):
            part = part.strip(" \t")
            if _DIGITS_RE.fullmatch(part) is None:
                raise _bad("invalid Content-Length %r" % (part[:32],))
            lengths.add(part.lstrip("0") or "0")
    if len(lengths) != 1:
        raise _bad("conflicting Content-Length values")
    digits = lengths.pop()
    if len(digits) > _MAX_LENGTH_DIGITS:
        raise ProtocolError("Content-Length too large", 413)
    return int(digits)


def _one_content_length(items, length):
    """``items`` with their ``Content-Length`` fields (repeated, or a list of equal
    values) replaced by one field holding ``length``, where the first one was: what is
    passed on must not leave the next hop to pick among the copies (RFC 9110 §8.6)."""
    out = []
    seen = False
    for item in items:
        if item[0] != "content-length":
            out.append(item)
        elif not seen:
            seen = True
            out.append(("content-length", str(length)))
    return out


def _is_chunked(values):
    """True for exactly ``Transfer-Encoding: chunked``; raises 400 for an empty coding
    list and 501 for any other coding."""
    codings = _tokens(values)
    if not codings:
        raise _bad("empty Transfer-Encoding")
    if codings != ["chunked"]:
        raise ProtocolError("unsupported Transfer-Encoding %r" % ", ".join(codings)[:64], 501)
    return True


def _keep_alive(version, connection):
    """RFC 9112 §9.3: 1.1 persists unless ``close``; 1.0 only with ``keep-alive``."""
    if "close" in connection:
        return False
    return version == "HTTP/1.1" or "keep-alive" in connection


# --- block scanning ----------------------------------------------------------------------


class _BlockScanner:
    """Finds the blank line ending a head or trailer section, never rescanning bytes."""

    __slots__ = ("_searched", "_limit")

    def __init__(self, limit):
        self._searched = 0
        self._limit = limit

    def reset(self):
        self._searched = 0

    def take(self, buf):
        """The block before CRLF CRLF, removed from ``buf`` with its terminator;
        ``None`` if not complete yet. Raises 431 past the limit, 400 for a block ended by
        bare LFs."""
        searched = self._searched
        end = buf.find(b"\r\n\r\n", searched)
        # LF LF (RFC 9112 §2.2 lets us refuse bare LF) is looked for in the same stretch,
        # and only counts within the limit, so the outcome never depends on how the bytes
        # were split into reads.
        lf_end = buf.find(b"\n\n", searched, len(buf) if end < 0 else end) + 2
        if 2 <= lf_end <= self._limit:
            raise _bad("header section ended by bare LF")
        if end < 0:
            if len(buf) >= self._limit:
                raise ProtocolError("header section too large", 431)
            self._searched = max(0, len(buf) - 3)
            return None
        self._searched = 0
        if end + 4 > self._limit:
            raise ProtocolError("header section too large", 431)
        block = bytes(buf[:end])
        del buf[: end + 4]
        return block


# --- body readers (see the reader contract in the module docstring) ---------------------


def _closed_mid_message():
    return _bad("connection closed mid-message")


class _Framing(enum.Enum):
    NONE = "none"
    CONTENT_LENGTH = "content-length"
    CHUNKED = "chunked"
    CLOSE_DELIMITED = "close-delimited"

    # Members are singletons compared by identity; object's hash (in C) spares the
    # ``_READERS`` lookup of every message a call to Enum's Python-level ``__hash__``.
    __hash__ = object.__hash__


def _take_up_to(buf, limit):
    """Remove and return at most ``limit`` bytes from the front of ``buf``."""
    if len(buf) <= limit:
        data = bytes(buf)
        buf.clear()
    else:
        data = bytes(buf[:limit])
        del buf[:limit]
    return data


class _NoBodyReader:
    __slots__ = ()

    def __init__(self, max_header_bytes, length):
        pass

    def read(self, buf, eof):
        return EndOfMessage()


class _ContentLengthReader:
    __slots__ = ("_remaining",)

    def __init__(self, max_header_bytes, length):
        self._remaining = length

    def read(self, buf, eof):
        remaining = self._remaining
        if remaining == 0:
            return EndOfMessage()
        size = len(buf)
        if not size:
            if eof:
                raise _closed_mid_message()
            return None
        # ``_take_up_to`` inlined: this runs for nearly every body the proxy relays.
        if size <= remaining:
            data = bytes(buf)
            buf.clear()
            self._remaining = remaining - size
        else:
            data = bytes(buf[:remaining])
            del buf[:remaining]
            self._remaining = 0
        return Data(data)


class _CloseDelimitedReader:
    __slots__ = ()

    def __init__(self, max_header_bytes, length):
        pass

    def read(self, buf, eof):
        if buf:
            data = bytes(buf)
            buf.clear()
            return Data(data)
        if eof:
            return EndOfMessage()
        return None


_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_BTOKEN = _TCHAR.encode("ascii") + b"+"
# RFC 9112 §7.1: chunk-size [ chunk-ext ], chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS
# value ] ). Extensions are accepted and ignored.
_CHUNK_LINE_RE = re.compile(
    rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[ \t]*"
    + _BTOKEN
    + rb"(?:[ \t]*=[ \t]*(?:"
    + _BTOKEN
    + rb"|"
    + _QUOTED
    + rb"))?)*[ \t]*"
)


class _ChunkState(enum.Enum):
    SIZE = 1
    DATA = 2
    DATA_END = 3
    TRAILERS = 4


class _ChunkedReader:
    __slots__ = ("_state", "_remaining", "_searched", "_trailers")

    def __init__(self, max_header_bytes, length):
        self._state = _ChunkState.SIZE
        self._remaining = 0
        self._searched = 0
        self._trailers = _BlockScanner(max_header_bytes)

    def read(self, buf, eof):
        while True:
            state = self._state
            if state is _ChunkState.DATA:
                if not buf:
                    if eof:
                        raise _closed_mid_message()
                    return None
                data = _take_up_to(buf, self._remaining)
                self._remaining -= len(data)
                if self._remaining == 0:
                    if buf[:2] == b"\r\n":
                        # The CRLF usually comes with its data: taken now, a stream's
                        # buffer is empty between its chunks, which callers can see.
                        del buf[:2]
                        self._state = _ChunkState.SIZE
                    else:
                        self._state = _ChunkState.DATA_END
                return Data(data)
            if state is _ChunkState.SIZE:
                if not buf or not self._read_size_line(buf):
                    if eof:
                        raise _closed_mid_message()
                    return None
            elif state is _ChunkState.DATA_END:
                if len(buf) < 2:
                    if buf[:1] not in (b"", b"\r"):
                        raise _bad("chunk data not followed by CRLF")
                    if eof:
                        raise _closed_mid_message()
                    return None
                if buf[:2] != b"\r\n":
                    raise _bad("chunk data not followed by CRLF")
                del buf[:2]
                self._state = _ChunkState.SIZE
            else:
                return self._read_trailers(buf, eof)

    def _read_size_line(self, buf):
        """Consume one chunk-size line; False if it is not complete yet."""
        end = buf.find(b"\r\n", self._searched)
        if end < 0:
            if len(buf) > MAX_CHUNK_LINE_BYTES:
                raise _bad("chunk size line too long")
            self._searched = max(0, len(buf) - 1)
            return False
        self._searched = 0
        if end > MAX_CHUNK_LINE_BYTES:
            raise _bad("chunk size line too long")
        match = _CHUNK_LINE_RE.fullmatch(buf, 0, end)
        if match is None:
            raise _bad("invalid chunk size line")
        size = int(match.group(1), 16)
        del buf[: end + 2]
        if size:
            self._remaining = size
            self._state = _ChunkState.DATA
        else:
            self._state = _ChunkState.TRAILERS
        return True

    def _read_trailers(self, buf, eof):
        if buf[:1] == b"\r":
            if len(buf) < 2:
                if eof:
                    raise _closed_mid_message()
                return None
            if buf[1:2] != b"\n":
                raise _bad("bare CR in trailer section")
            del buf[:2]
            return EndOfMessage()
        block = self._trailers.take(buf)
        if block is None:
            if eof:
                raise _closed_mid_message()
            return None
        lines = _split_block(block)
        return EndOfMessage(Headers.from_lowered(_parse_fields(lines)))


_NO_BODY = _NoBodyReader(0, 0)

_READERS = {
    _Framing.NONE: _NoBodyReader,
    _Framing.CONTENT_LENGTH: _ContentLengthReader,
    _Framing.CHUNKED: _ChunkedReader,
    _Framing.CLOSE_DELIMITED: _CloseDelimitedReader,
}


# --- parsers -------------------------------------------------------------------------------


class _BaseParser:
    """Buffer, EOF, body and error bookkeeping shared by both parsers; a subclass provides
    ``_next_head()``, called while no body is being read, returning an event, ``None`` for
    need-more-data, or raising."""

    __slots__ = ("max_header_bytes", "_buf", "_eof", "_error", "_reader", "_scanner")

    def __init__(self, max_header_bytes=DEFAULT_MAX_HEADER_BYTES):
        self.max_header_bytes = max_header_bytes
        self._buf = bytearray()
        self._eof = False
        self._error = None
        self._reader = None
        self._scanner = _BlockScanner(max_header_bytes)

    def feed(self, data):
        """Append received bytes. Raises ``RuntimeError`` after ``feed_eof()``."""
        if data:
            if self._eof:
                raise RuntimeError("feed() after feed_eof()")
            self._buf += data

    def feed_eof(self):
        """Record that the peer closed its side; later events account for it."""
        self._eof = True

    def take_trailing(self):
        """Remove and return every buffered, unparsed byte (after a 101 or CONNECT)."""
        data = bytes(self._buf)
        self._buf.clear()
        self._scanner.reset()
        return data

    @property
    def has_buffered_data(self):
        """True when received bytes are waiting to be parsed."""
        return bool(self._buf)

    def next_event(self):
        """The next event, ``NEED_DATA`` or ``CONNECTION_CLOSED``.

        Raises ``ProtocolError`` for malformed input, and again on every later call.
        """
        if self._error is not None:
            raise ProtocolError(self._error.message, self._error.status)
        reader = self._reader
        try:
            if reader is None:
                event = self._next_head()
            else:
                # Body events are most events: the reader is called from here, with no
                # method in between, and nothing but forgetting it follows its end.
                event = reader.read(self._buf, self._eof)
                if type(event) is EndOfMessage:
                    self._reader = None
        except ProtocolError as exc:
            self._error = exc
            raise
        return NEED_DATA if event is None else event


class RequestParser(_BaseParser):
    """Parses requests from a client connection, pipelined ones included.

    After a request asking to switch protocols (``upgrade``) or a CONNECT, the caller
    decides: ``take_trailing()`` if it switched, else ``next_event()`` as usual.
    """

    __slots__ = ()

    def _next_head(self):
        buf = self._buf
        # RFC 9112 §2.2: ignore empty lines before the request line.
        while buf.startswith(b"\r\n"):
            del buf[:2]
        block = self._scanner.take(buf)
        if block is None:
            if self._eof:
                if not buf:
                    return CONNECTION_CLOSED
                raise _closed_mid_message()
            return None
        head, framing, length = _parse_request_head(block)
        if framing is _Framing.NONE:
            self._reader = _NO_BODY  # stateless: one instance serves every request
        else:
            self._reader = _READERS[framing](self.max_header_bytes, length)
        return head


_VERSION_NAMES = {"HTTP/1.1": "HTTP/1.1", "HTTP/1.0": "HTTP/1.0"}


def _request_line(line):
    """(method, target, version) of a request line from ``_split_block`` (so it holds no
    control character but HTAB). Raises 400 for a malformed line, 505 for a version other
    than 1.0 and 1.1."""
    parts = line.split(" ")
    if len(parts) == 3:
        # Fast path, same answer as the regex: a common method, a target with no space
        # (split) and no control character (``_split_block`` left only HTAB to check).
        method, target, version = parts
        if (
            version in _VERSION_NAMES
            and method in COMMON_METHODS
            and target
            and "\t" not in target
        ):
            return method, target, _VERSION_NAMES[version]
    return _request_line_checked(line)


def _request_line_checked(line):
    """``_request_line`` by the full grammar (``_REQUEST_LINE_RE``)."""
    match = _REQUEST_LINE_RE.fullmatch(line)
    if match is None:
        raise _bad("invalid request line")
    method, target, major, minor = match.groups()
    version = _VERSIONS.get((major, minor))
    if version is None:
        raise ProtocolError("unsupported HTTP version %s.%s" % (major, minor), 505)
    return method, target, version


def _parse_request_head(block):
    """(RequestHead, framing, length) for a head block; raises ``ProtocolError``."""
    lines = _split_block(block)
    method, target, version = _request_line(lines[0])
    del lines[0]
    items, special = _parse_fields_and_specials(lines)
    # ``in`` tests on ``special`` rather than ``.get()`` calls: most fields are absent.
    if "host" in special:
        if len(special["host"]) > 1:
            raise _bad("more than one Host field")
    elif version == "HTTP/1.1":
        raise _bad("HTTP/1.1 request without Host")

    if "connection" in special:
        connection = _tokens(special["connection"])
        keep_alive = _keep_alive(version, connection)
        upgrade = "upgrade" in connection and "upgrade" in special
    else:
        # The common case: no Connection field, so no upgrade and the version's default.
        keep_alive = version == "HTTP/1.1"
        upgrade = False
    expect_continue = (
        "expect" in special
        and version == "HTTP/1.1"
        and "100-continue" in _tokens(special["expect"])
    )

    length = None
    if "transfer-encoding" in special:
        if "content-length" in special:
            raise _bad("both Transfer-Encoding and Content-Length")
        if version == "HTTP/1.0":
            raise _bad("Transfer-Encoding in an HTTP/1.0 request")
        _is_chunked(special["transfer-encoding"])
        framing = _Framing.CHUNKED
    elif "content-length" in special:
        values = special["content-length"]
        value = values[0]
        # ``_content_length``'s hot path, inline: one plain number, nothing to rewrite.
        if (
            len(values) == 1
            and value.isdigit()
            and value.isascii()
            and len(value) <= _MAX_LENGTH_DIGITS
        ):
            length = int(value)
        else:
            length = _content_length(values)
            items = _one_content_length(items, length)
        framing = _Framing.CONTENT_LENGTH
    else:
        # No framing field: the request has no body (RFC 9112 §6.3), so its length is 0.
        length = 0
        framing = _Framing.NONE
    head = RequestHead(
        method,
        target,
        version,
        Headers.from_lowered(items),
        keep_alive,
        expect_continue,
        upgrade,
        length,
    )
    return head, framing, length


class _ResponseState(enum.Enum):
    IDLE = 1  # waiting for start(), or for the end of a body (the reader is set)
    HEAD = 2  # waiting for a status line
    SWITCHED = 3  # after 101 or a 2xx to CONNECT: no more HTTP on this connection


class ResponseParser(_BaseParser):
    """Parses responses from an upstream connection; call ``start(method)`` before each.

    Until ``start()`` is called, ``next_event()`` returns ``NEED_DATA`` (bytes stay
    buffered, see ``has_buffered_data``), or ``CONNECTION_CLOSED`` after a clean EOF.

    After a 101, or a 2xx answer to CONNECT, the events are the head and
    ``EndOfMessage``; then ``next_event()`` returns ``NEED_DATA`` for good and the bytes
    that follow are had with ``take_trailing()``.
    """

    __slots__ = ("_state", "_method", "_interim_seen")

    def __init__(self, max_header_bytes=DEFAULT_MAX_HEADER_BYTES):
        super().__init__(max_header_bytes)
        self._state = _ResponseState.IDLE
        self._method = None
        self._interim_seen = False

    def start(self, request_method):
        """Expect the response to a request with ``request_method``. Raises
        ``RuntimeError`` while a previous response is incomplete or after a switch."""
        if self._state is not _ResponseState.IDLE or self._reader is not None:
            raise RuntimeError("start() while a response is in progress")
        self._method = request_method.upper()
        self._interim_seen = False
        self._state = _ResponseState.HEAD

    def _next_head(self):
        state = self._state
        if state is _ResponseState.SWITCHED:
            return None
        if state is _ResponseState.IDLE:
            # No response is expected: bytes wait for start(); EOF is a clean close.
            return CONNECTION_CLOSED if self._eof and not self._buf else None
        block = self._scanner.take(self._buf)
        if block is None:
            if self._eof:
                if not self._buf and not self._interim_seen:
                    return CONNECTION_CLOSED
                raise _closed_mid_message()
            return None
        head, framing, length = _parse_response_head(block, self._method)
        if head.status < 200 and head.status != 101:
            self._interim_seen = True
            return head
        # The state is already the one after the body: the reader's presence marks the
        # body, so nothing has to run at its end (see ``_BaseParser.next_event``).
        if framing is None:
            self._state = _ResponseState.SWITCHED
            framing = _Framing.NONE
        else:
            self._state = _ResponseState.IDLE
        self._reader = _READERS[framing](self.max_header_bytes, length)
        return head


def _parse_response_head(block, method):
    """(head, framing, length) for a status block; framing ``None`` means the connection
    switches protocols. Raises ``ProtocolError``."""
    lines = _split_block(block)
    version, status, reason = _status_line(lines[0])
    del lines[0]
    items, special = _parse_fields_and_specials(lines)
    if "connection" in special:
        keep_alive = _keep_alive(version, _tokens(special["connection"]))
    else:
        keep_alive = version == "HTTP/1.1"  # what _keep_alive gives for no tokens
    head = ResponseHead(status, reason, version, Headers.from_lowered(items), keep_alive)
    if status == 101 or (method == "CONNECT" and 200 <= status < 300):
        head.keep_alive = False
        return head, None, None
    if status < 200 or status in (204, 304) or method == "HEAD":
        return head, _Framing.NONE, None
    if "transfer-encoding" in special:
        _is_chunked(special["transfer-encoding"])
        if "content-length" in special:
            # RFC 9112 §6.3: chunked wins, and a proxy must drop the length it overrides
            # before passing the message on; do not trust the connection after it.
            head.headers = Headers.from_lowered(
                [item for item in items if item[0] != "content-length"]
            )
            head.keep_alive = False
        elif version == "HTTP/1.0":
            head.keep_alive = False  # RFC 9112 §6.1: chunked in 1.0 is faulty framing
        return head, _Framing.CHUNKED, None
    if "content-length" in special:
        values = special["content-length"]
        value = values[0]
        if (  # ``_content_length``'s hot path
            len(values) == 1
            and value.isdigit()
            and value.isascii()
            and len(value) <= _MAX_LENGTH_DIGITS
        ):
            return head, _Framing.CONTENT_LENGTH, int(value)
        length = _content_length(values)
        head.headers = Headers.from_lowered(_one_content_length(items, length))
        return head, _Framing.CONTENT_LENGTH, length
    head.keep_alive = False
    return head, _Framing.CLOSE_DELIMITED, None


# Status line fast path: "HTTP/1.x " -> version, and the status codes 100-999 as text.
_STATUS_PREFIXES = {"HTTP/1.1 ": "HTTP/1.1", "HTTP/1.0 ": "HTTP/1.0"}
_STATUS_CODES = frozenset(str(code) for code in range(100, 1000))


def _status_line(line):
    """(version, status, reason) of a status line from ``_split_block``. Raises 400 for a
    malformed line or a status below 100, 505 for a version other than 1.0 and 1.1."""
    # Fast path, same answer as the regex, by slices and set lookups (no call): a known
    # version, three digits from 100 up, then the end or a space and any reason.
    prefix = line[:9]
    code = line[9:12]
    if prefix in _STATUS_PREFIXES and code in _STATUS_CODES and line[12:13] in ("", " "):
        return _STATUS_PREFIXES[prefix], int(code), line[13:]
    return _status_line_checked(line)


def _status_line_checked(line):
    """``_status_line`` by the full grammar (``_STATUS_LINE_RE``)."""
    match = _STATUS_LINE_RE.fullmatch(line)
    if match is None:
        raise _bad("invalid status line")
    major, minor, code, reason = match.groups()
    version = _VERSIONS.get((major, minor))
    if version is None:
        raise ProtocolError("unsupported HTTP version %s.%s" % (major, minor), 505)
    status = int(code)
    if status < 100:
        raise _bad("invalid status code %d" % status)
    return version, status, reason or ""
