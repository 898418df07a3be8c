"""Incremental gzip / deflate decoding with a bound on the decoded size, and gzip sniffing.

Strategy: one ``Decoder`` per body wraps ``zlib.decompressobj`` and is fed the body as it
arrives. Every ``decompress`` call passes ``max_length`` = what is left of the budget plus
one byte, so zlib itself stops producing output as soon as the limit is crossed: a zip bomb
costs at most ``max_output`` + one input chunk of memory before ``PayloadTooLarge``.

- ``gzip`` / ``x-gzip`` (RFC 9110 §8.4.1.3, RFC 1952): a body may hold several members one
  after another (``cat a.gz b.gz``); all are decoded, as gzip(1) does. Zero bytes after the
  last member are padding and ignored, as gzip(1) and Python's ``gzip`` module do; any
  other trailing byte is corrupt input.
- ``deflate`` (RFC 9110 §8.4.1.2): meant to be zlib-wrapped (RFC 1950), but some servers send
  raw deflate (RFC 1951). As browsers do, the first two bytes decide: a valid zlib header
  selects zlib, anything else raw deflate.
- Errors: corrupt input, or input that ends mid-stream (seen at ``flush``) →
  ``BadRequest``; output past ``max_output`` → ``PayloadTooLarge``; any other coding
  (``br``, ``zstd``, ``compress``, a list of codings) → ``UnsupportedMediaType``.
- An empty body decodes to an empty body whatever its coding: there is nothing to decode.
"""

import zlib
from typing import List, Optional

from cliproxy.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

__all__ = ["GZIP_MAGIC", "is_gzip", "is_identity", "Decoder", "decode_body"]

GZIP_MAGIC = b"\x1f\x8b"  # RFC 1952 §2.3.1 ID1 ID2

_GZIP_WBITS = 16 + zlib.MAX_WBITS  # gzip header and trailer
_ZLIB_WBITS = zlib.MAX_WBITS  # zlib header and trailer
_RAW_WBITS = -zlib.MAX_WBITS  # bare deflate blocks

_GZIP_NAMES = frozenset(("gzip", "x-gzip"))
_DEFLATE_NAMES = frozenset(("deflate",))
_IDENTITY_NAMES = frozenset(("", "identity"))
_NORMAL_NAMES = _GZIP_NAMES | _DEFLATE_NAMES | _IDENTITY_NAMES


def is_gzip(prefix):
    """True when ``prefix`` (the first bytes of a body) starts with the gzip magic number."""
    return bytes(prefix[:2]) == GZIP_MAGIC


def _is_zlib_header(first_two):
    """RFC 1950 §2.2: CM = 8 (deflate), CINFO <= 7, and CMF*256 + FLG divisible by 31."""
    cmf, flg = first_two[0], first_two[1]
    return cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf * 256 + flg) % 31 == 0


def _normalise(encoding):
    """``encoding`` stripped and lowercase; a name already in one of the sets above is
    returned as is (callers usually pass one: no string-method calls)."""
    if encoding in _NORMAL_NAMES:
        return encoding
    return encoding.strip().lower()


def is_identity(encoding):
    """True when the ``Content-Encoding`` value ``encoding`` leaves a body as it is
    (``identity`` or empty, any case, surrounding whitespace ignored)."""
    return _normalise(encoding) in _IDENTITY_NAMES


def _unsupported(encoding):
    shown = encoding if len(encoding) <= 64 else encoding[:64] + "..."
    return UnsupportedMediaType(
        "unsupported Content-Encoding %r (supported: gzip, deflate)" % (shown,)
    )


# Largest piece of output one decompress call may produce (see ``Decoder._run``); 64 KiB
# keeps it below the C allocator's mmap threshold, so pieces reuse the same memory.
OUTPUT_PIECE_BYTES = 64 * 1024


class Decoder:
    """Incremental decoder for one body in ``gzip``, ``x-gzip`` or ``deflate``.

    ``max_output`` (bytes, ``None`` for no limit) bounds the total decoded size.
    Raises ``UnsupportedMediaType`` at construction for any other coding.
    """

    __slots__ = ("_gzip", "_max", "_total", "_z", "_pending", "_started", "_between", "_done")

    def __init__(self, encoding, max_output=None):
        # type: (str, Optional[int]) -> None
        name = _normalise(encoding)
        if name in _GZIP_NAMES:
            self._gzip = True
        elif name in _DEFLATE_NAMES:
            self._gzip = False
        else:
            raise _unsupported(encoding)
        self._max = max_output
        self._total = 0
        self._z = None  # the decompressobj of the current gzip member / deflate stream
        self._pending = b""  # bytes held until we know how to start the next stream
        self._started = False  # any input seen at all
        self._between = False  # gzip: a member ended; only a new member or zeros may follow
        self._done = False  # deflate: the stream ended; nothing may follow

    def decompress(self, chunk):
        # type: (bytes) -> bytes
        """Decode ``chunk`` and return the output it completes (possibly ``b""``).

        Raises ``BadRequest`` on corrupt input and ``PayloadTooLarge`` once the total
        output passes ``max_output``.
        """
        if not chunk:
            return b""
        self._started = True
        out = []  # type: List[bytes]
        data = self._pending + bytes(chunk) if self._pending else bytes(chunk)
        self._pending = b""
        while data:
            if self._z is None:
                data = self._open_stream(data)
                if self._z is None:
                    break  # waiting for more bytes, or only padding so far
            data = self._run(data, out)
        return b"".join(out)

    def flush(self):
        # type: () -> bytes
        """End of input: return the last output. Raises ``BadRequest`` when the input
        stopped in the middle of a stream (truncated body)."""
        if self._pending:
            raise BadRequest(self._label() + " body is truncated")
        if self._z is None:
            return b""
        tail = self._z.flush()
        self._account(tail)
        if not self._z.eof:
            raise BadRequest(self._label() + " body is truncated")
        return tail

    def _label(self):
        return "gzip" if self._gzip else "deflate"

    def _open_stream(self, data):
        """Start the next stream on ``data`` and return the bytes left for it to decode;
        hold back bytes that cannot be judged yet."""
        if self._gzip:
            if self._between:
                stripped = data.lstrip(b"\x00")
                if not stripped:
                    return b""  # zero padding after the last member
                if len(stripped) < 2 and GZIP_MAGIC.startswith(stripped):
                    self._pending = stripped
                    return b""
                if not stripped.startswith(GZIP_MAGIC):
                    raise BadRequest("gzip body has trailing garbage after the last member")
                data = stripped
            self._z = zlib.decompressobj(_GZIP_WBITS)
            return data
        if self._done:
            raise BadRequest("deflate body has trailing data after the end of the stream")
        if len(data) < 2:
            self._pending = data
            return b""
        self._z = zlib.decompressobj(_ZLIB_WBITS if _is_zlib_header(data) else _RAW_WBITS)
        return data

    def _run(self, data, out):
        """Feed ``data`` to the current stream; return the bytes after its end, if any.
        Output comes in pieces of at most ``OUTPUT_PIECE_BYTES``: a small input that
        inflates enormously (a bomb) grows no single buffer past that, and is stopped at
        the limit having held only the limit's worth."""
        z = self._z
        while True:
            budget = OUTPUT_PIECE_BYTES
            if self._max is not None:
                budget = min(budget, self._max - self._total + 1)  # one byte past: detected
            try:
                piece = z.decompress(data, budget)
            except zlib.error as exc:
                raise BadRequest("%s body is corrupt (%s)" % (self._label(), exc))
            self._account(piece)
            out.append(piece)
            if z.eof:
                self._z = None
                if self._gzip:
                    self._between = True
                else:
                    self._done = True
                return z.unused_data
            data = z.unconsumed_tail
            if not data:
                return b""

    def _account(self, piece):
        self._total += len(piece)
        if self._max is not None and self._total > self._max:
            raise PayloadTooLarge(
                "decoded %s body exceeds the limit of %d bytes" % (self._label(), self._max)
            )


def decode_body(data, encoding, max_output):
    # type: (bytes, str, int) -> bytes
    """Decode a whole body. ``identity`` or an empty coding returns ``data`` unchanged.

    Raises ``BadRequest`` (corrupt or truncated), ``PayloadTooLarge`` (decoded size past
    ``max_output``) or ``UnsupportedMediaType`` (any other coding).
    """
    if is_identity(encoding):
        return data
    decoder = Decoder(encoding, max_output)
    return decoder.decompress(data) + decoder.flush()
