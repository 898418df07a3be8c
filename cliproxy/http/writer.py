"""Serialise HTTP/1.1 heads and chunked framing.

Strategy: pure functions from (start line, fields: ``Headers`` or lowercase (name, value)
pairs) to bytes, the counterpart of ``cliproxy.http.parser``; everything they produce
parses back to the same values. Each head is formatted as one ``str`` and encoded once as
latin-1. Field names must be tokens and no part of a head may hold CR, LF, NUL or another
control character (HTAB aside): such input raises ``ValueError`` instead of being written,
so a value taken from a client or an upstream can never inject a field or a second
message. The check runs over the whole formatted head at once rather than per field, to
keep the hot path cheap.
"""

import http
import re

from cliproxy.http.headers import COMMON_METHODS

__all__ = [
    "CONTINUE",
    "LAST_CHUNK",
    "encode_chunk",
    "encode_request_head",
    "encode_response_head",
]

LAST_CHUNK = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# Standard reason phrases, built once from the standard library's table.
_REASONS = {status.value: status.phrase for status in http.HTTPStatus}

# Status -> status line with the standard reason, formatted once per status.
_STATUS_LINES = {}

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET_RE = re.compile(r"[^\x00-\x20\x7f]+")
# Bytes a head line may hold (RFC 9110 §5.5): HTAB, SP, VCHAR, obs-text.
_LINE_BYTES = b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))

# Field names already checked to be tokens. Names come from a small set, so one set
# operation replaces a regex per field; bounded so unusual traffic cannot grow it.
_GOOD_NAMES = set()
_GOOD_NAMES_MAX = 1024


def _check_name(name):
    """Raise ``ValueError`` unless ``name`` is a token; remember it when it is."""
    if _TOKEN_RE.fullmatch(name) is None:
        raise ValueError("invalid header name %r" % (name[:64],))
    if len(_GOOD_NAMES) < _GOOD_NAMES_MAX:
        _GOOD_NAMES.add(name)


def _finish(start_line, headers):
    """``start_line`` plus fields plus the blank line, checked and encoded."""
    good = _GOOD_NAMES
    lines = []
    # One pass: check each name (a set hit, almost always) and format its line.
    for item in headers:
        if item[0] not in good:
            _check_name(item[0])
        lines.append("%s: %s\r\n" % item)
    data = (start_line + "".join(lines) + "\r\n").encode("latin-1")
    # Deleting every byte a line may hold leaves exactly one CRLF per line (the start
    # line, each field, the blank line), unless a value brought a CR, an LF or a control
    # character: one pass in C.
    if len(data.translate(None, _LINE_BYTES)) != 2 * len(lines) + 4:
        raise ValueError("CR, LF or a control character in a header value")
    return data


def encode_request_head(method, target, headers):
    """``method target HTTP/1.1`` and ``headers`` as bytes.

    Raises ``ValueError`` for a method that is not a token, a target with whitespace or
    control characters, an invalid field name, a value with CR, LF or a control
    character, or a character outside latin-1 (``UnicodeEncodeError``).
    """
    if method not in COMMON_METHODS and _TOKEN_RE.fullmatch(method) is None:
        raise ValueError("invalid method %r" % (method[:32],))
    if _TARGET_RE.fullmatch(target) is None:
        raise ValueError("invalid request target")
    return _finish("%s %s HTTP/1.1\r\n" % (method, target), headers)


def encode_response_head(status, headers, reason=None):
    """``HTTP/1.1 status reason`` and ``headers`` as bytes.

    ``reason`` defaults to the standard phrase (empty for an unknown status). Raises
    ``ValueError`` for a status outside 100-999 and for the same field faults as
    ``encode_request_head``.
    """
    if reason is None:
        if status in _STATUS_LINES:
            return _finish(_STATUS_LINES[status], headers)
        line = _status_line(status, _REASONS.get(status, ""))
        if type(status) is int:
            _STATUS_LINES[status] = line  # at most 900 entries: status is 100-999
        return _finish(line, headers)
    return _finish(_status_line(status, reason), headers)


def _status_line(status, reason):
    if not 100 <= status <= 999:
        raise ValueError("invalid status code %r" % (status,))
    return "HTTP/1.1 %d %s\r\n" % (status, reason)


def encode_chunk(data):
    """``data`` framed as one chunk; ``b""`` for empty data (an empty chunk would end the
    body, which is ``LAST_CHUNK``'s job)."""
    if not data:
        return b""
    return b"".join((b"%x\r\n" % len(data), data, b"\r\n"))
