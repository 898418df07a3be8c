"""What a management request says: its ``{"value": ...}`` body and its query parameters.

Strategy: each reader returns a checked Python value or raises ``BadRequest`` with a
message that names the parameter and the form expected, never the value received (a
mistyped query may hold anything, a key included). Query values are percent-decoded
without turning ``+`` into a space, so ``since=2025-01-01T00:00:00+02:00`` keeps its
offset whether or not the client encoded it.
"""

import codecs
import datetime
import json
import re
from typing import Any, Dict, Optional
from urllib.parse import unquote

from cliproxy.errors import BadRequest
from cliproxy.jsontext import loads

# A change is one small JSON value; 1 MiB leaves room for thousands of model mappings.
MAX_BODY_BYTES = 1024 * 1024

# The ISO 8601 forms ``since`` takes: a date (midnight UTC), or a date and time with
# ``Z`` or an offset. Parsed here, not by ``fromisoformat``, whose forms differ between
# Python 3.8 and 3.11.
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_ISO_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?$"
)
# ``after``: at most 18 digits, far beyond any count of lines and always a valid int.
_DIGITS = re.compile(r"^[0-9]{1,18}$")
_SINCE_FORM = "YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS[.fff]] with Z or an offset (+HH:MM)"


def _reject_constant(name):
    raise ValueError("%s is not valid JSON" % name)


async def read_body(request) -> Optional[Dict[str, Any]]:
    """The request's JSON body: None when empty, else an object whose only member is
    ``value``. Raises ``BadRequest`` (not JSON, wrong shape) or ``PayloadTooLarge``."""
    data = await request.body.read(MAX_BODY_BYTES)
    if not data.strip():
        return None
    try:
        body = loads(codecs.decode(data, "utf-8-sig"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        # json.JSONDecodeError is a ValueError; its message names a position, not content.
        raise BadRequest("request body is not valid JSON: %s" % _json_error(exc))
    if not isinstance(body, dict) or set(body) != {"value"}:
        raise BadRequest('request body must be a JSON object {"value": ...}')
    return body


def _json_error(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return "%s at line %d column %d" % (exc.msg, exc.lineno, exc.colno)
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 (byte %d)" % exc.start
    return str(exc)


def query_param(query: str, name: str) -> Optional[str]:
    """The decoded value of the first ``name`` parameter in ``query`` (raw, without
    ``?``), or None when absent. ``+`` stays ``+``."""
    for part in query.split("&") if query else ():
        key, sep, value = part.partition("=")
        if unquote(key) == name:
            return unquote(value) if sep else ""
    return None


def after_param(query: str) -> int:
    """``after``: the number of the last line a client has seen; 0 when absent."""
    text = query_param(query, "after")
    if text is None:
        return 0
    if _DIGITS.match(text) is None:
        raise BadRequest("after: must be a whole number >= 0 (the seq of the last line seen)")
    return int(text)


def since_param(query: str) -> Optional[datetime.datetime]:
    """``since`` as a timezone-aware datetime, or None when absent. A date alone is
    midnight UTC; a time needs ``Z`` or an offset, since a server's local time is no
    client's business."""
    text = query_param(query, "since")
    if text is None:
        return None
    try:
        return parse_since(text)
    except ValueError:
        raise BadRequest("since: must be an ISO 8601 time, " + _SINCE_FORM)


def parse_since(text: str) -> datetime.datetime:
    """``text`` (one of ``_SINCE_FORM``) as an aware datetime; raises ``ValueError``."""
    match = _ISO_DATE.match(text)
    if match:
        year, month, day = (int(g) for g in match.groups())
        return datetime.datetime(year, month, day, tzinfo=datetime.timezone.utc)
    match = _ISO_TIME.match(text)
    if match is None:
        raise ValueError("not an ISO 8601 time")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    if zulu:
        zone = datetime.timezone.utc
    elif sign:
        offset = datetime.timedelta(hours=int(off_h), minutes=int(off_m))
        if offset >= datetime.timedelta(hours=24):
            raise ValueError("offset out of range")
        zone = datetime.timezone(-offset if sign == "-" else offset)
    else:
        raise ValueError("no time zone")
    micro = int((fraction or "0").ljust(6, "0")[:6])
    return datetime.datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, tzinfo=zone
    )


__all__ = ["MAX_BODY_BYTES", "after_param", "parse_since", "query_param", "read_body", "since_param"]
