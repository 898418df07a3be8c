"""Masking secrets for logs, error-request files and the management API.

Strategy: a secret is shown as its first 4 and last 2 characters around an ellipsis
(``sk-a…f3``), enough for a person to tell two keys apart and useless to anyone else.
Secrets too short for that to hide most of them are replaced whole by ``FULL_MASK``, so
their length does not show either. Every masked form contains ``…`` or is ``FULL_MASK``;
``is_masked`` recognises them, which lets the management API refuse a masked value sent
back in place of the real one.
"""

from typing import List, Tuple
from urllib.parse import unquote_plus

from cliproxy.http.headers import Headers

ELLIPSIS = "\u2026"
FULL_MASK = "****"

# Below this length, showing 6 characters would reveal half the secret or more.
MIN_PARTIAL_LENGTH = 12
_HEAD = 4
_TAIL = 2

# Header fields whose whole value (or, for the Authorization family, whose credentials
# after the scheme) is secret.
SENSITIVE_HEADERS = frozenset(
    (
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "x-goog-api-key",
        "x-management-key",
        "cookie",
        "set-cookie",
    )
)
_SCHEMED_HEADERS = frozenset(("authorization", "proxy-authorization"))

# Query parameters that carry client keys (SPEC §2 api-keys).
SENSITIVE_QUERY_PARAMS = frozenset(("key", "auth_token"))


def mask_secret(secret: str) -> str:
    """``secret`` masked as ``sk-a…f3``; ``FULL_MASK`` when shorter than
    ``MIN_PARTIAL_LENGTH``; ``""`` stays ``""`` (there is nothing to hide)."""
    if not secret:
        return ""
    if len(secret) < MIN_PARTIAL_LENGTH:
        return FULL_MASK
    return secret[:_HEAD] + ELLIPSIS + secret[-_TAIL:]


def is_masked(value: str) -> bool:
    """Whether ``value`` looks like the output of ``mask_secret`` rather than a secret."""
    return value == FULL_MASK or ELLIPSIS in value


def _mask_header_value(name: str, value: str) -> str:
    if name in _SCHEMED_HEADERS:
        parts = value.strip().split(None, 1)
        if len(parts) == 2:
            # Keep the scheme ("Bearer", "Basic"): it helps debugging and is not secret.
            return parts[0] + " " + mask_secret(parts[1].strip())
    return mask_secret(value)


def mask_headers(headers: Headers) -> List[Tuple[str, str]]:
    """The fields of ``headers`` in order, with the values of ``SENSITIVE_HEADERS`` masked."""
    return [
        (name, _mask_header_value(name, value) if name in SENSITIVE_HEADERS else value)
        for name, value in headers
    ]


def mask_query(query: str) -> str:
    """``query`` (raw, without ``?``) with the values of ``key`` and ``auth_token`` masked;
    every other parameter is kept byte for byte."""
    if not query:
        return query
    out = []
    for part in query.split("&"):
        name, sep, value = part.partition("=")
        if sep and unquote_plus(name) in SENSITIVE_QUERY_PARAMS:
            part = name + "=" + mask_secret(value)
        out.append(part)
    return "&".join(out)
