"""Request bodies read as JSON: content coding undone, parsed once, failures as 400.

Strategy: model routes and the offline control plane both take JSON bodies that may be
gzip- or deflate-encoded (Amp gzips large ones). This is the one place that decodes and
parses them, so every route answers bad input alike: ``BadRequest`` (400) for corrupt
codings and invalid JSON (absurd nesting included), ``PayloadTooLarge`` (413) past the
limit, ``UnsupportedMediaType`` (415) for codings other than gzip and deflate.
"""

from cliproxy.errors import BadRequest
from cliproxy.http.codec import decode_body, is_gzip
from cliproxy.jsontext import loads


def decode_request_body(raw, content_encoding, limit, sniff_gzip=False):
    """``raw`` with its ``Content-Encoding`` undone, decoded to at most ``limit`` bytes.
    With ``sniff_gzip``, a body that starts with the gzip magic but declares no coding is
    decoded too (what some clients send)."""
    if content_encoding is None and not sniff_gzip:
        return raw  # nothing to undo: ``decode_body`` would hand back ``raw`` itself
    coding = (content_encoding or "").strip().lower()
    if not coding and sniff_gzip and is_gzip(raw[:2]):
        coding = "gzip"
    return decode_body(raw, coding, limit)


def parse_json(data):
    """``data`` (bytes) parsed as JSON; raises ``BadRequest`` naming what is wrong."""
    try:
        if data[:1] == b"{" and data[1:2] != b"\x00":
            # ``json.loads`` of bytes sniffs their encoding in Python code first (RFC 8259
            # §8.1: NULs or a BOM in the first bytes mean UTF-16/32); a "{" then no NUL is
            # UTF-8 by that rule, so decode as it would, errors and all.
            data = data.decode("utf-8", "surrogatepass")
        return loads(data)
    except ValueError as exc:
        raise BadRequest("request body is not valid JSON: %s" % exc)
