"""Request bodies read as JSON: content coding undone, parsed once, failures as 400.

Strategy: model routes and the offline control plane both take JSON bodies that may be
gzip- or deflate-encoded (Amp gzips large ones). This is the one place that decodes and
parses them, so every route answers bad input alike: ``BadRequest`` (400) for corrupt
codings and invalid JSON (absurd nesting included), ``PayloadTooLarge`` (413) past the
limit, ``UnsupportedMediaType`` (415) for codings other than gzip and deflate.
"""

import json
import re

from cliproxy.errors import BadRequest
from cliproxy.http.codec import decode_body, is_gzip
from cliproxy.jsontext import loads
from cliproxy.memo import Memo


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


# A surrogate escape (``\ud800``-``\udfff``): screened for before the exact check, which
# costs a re-encoding and is needed only when one is there (paired ones, emoji escaped
# by ensure_ascii encoders, are fine).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def parse_json(data):
    """``data`` (bytes) parsed as JSON; raises ``BadRequest`` naming what is wrong,
    including text no encoder can write back (a lone surrogate escape such as
    ``"\\ud800"``: valid JSON, but it would fail the moment the body is re-encoded)."""
    raw = data
    try:
        if data[:1] == b"{" and data[1:2] != b"\x00":
            # ``json.loads`` of bytes sniffs their encoding in Python code first (RFC 8259
            # §8.1: NULs or a BOM in the first bytes mean UTF-16/32); a "{" then no NUL is
            # UTF-8 by that rule, so decode as it would, errors and all.
            data = data.decode("utf-8", "surrogatepass")
        value = loads(data)
    except ValueError as exc:
        raise BadRequest("request body is not valid JSON: %s" % exc)
    # A backslash is found by ``memchr``; a two-byte ``in`` scan of a 60 KB body costs
    # three times the regex, which finds its literal by the first byte.
    if b"\\" in raw and _SURROGATE_ESCAPE.search(raw) is not None:
        _check_encodable(value)
    return value


def _check_encodable(value):
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("request body holds a lone surrogate escape (such as \\ud800): it is not valid Unicode text")


def _key_alternation(keys):
    return re.compile(b'"(' + b"|".join(re.escape(key.encode("ascii")) for key in keys) + b')"')


_quoted_keys = Memo(_key_alternation, 8)


def repeated_keys(data, keys):
    """Which of ``keys`` the top-level object of the JSON ``data`` (bytes, known to parse)
    holds more than once: a proxy that routes on one value while a provider reads the
    other would serve a request nobody checked. Only bodies whose raw bytes hold one of
    the keys twice are parsed again."""
    # One pass for all the keys: the regex engine tries only where a quote is, and in
    # valid JSON no two strings share one, so it finds what a count per key would.
    quoted = _quoted_keys[keys].findall(data)
    screened = [key for key in keys if quoted.count(key.encode("ascii")) > 1]
    if not screened:
        return []
    top = []

    def collect(pairs):
        top[:] = [name for name, _ in pairs]  # the last object closed is the top level
        return None

    # Bytes, as ``parse_json`` may have read them: ``json.loads`` takes their encoding
    # (a UTF-8 byte-order mark, UTF-16) from them.
    loads(data, object_pairs_hook=collect)
    return [key for key in screened if top.count(key) > 1]
