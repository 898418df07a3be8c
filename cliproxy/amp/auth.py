"""Client authentication: finding the client's key, checking it, and removing it.

Strategy: pure functions over ``Headers`` and the raw query string, no request object and
no I/O, so the server, the management routes and the provider routes share one
definition of "the client's key" (SPEC §2 ``api-keys``):

1. ``client_key`` looks in five carriers, in a fixed order, and returns the first key
   found: ``Authorization: Bearer K`` (scheme case-insensitive), ``x-api-key``,
   ``x-goog-api-key``, ``?key=K``, ``?auth_token=K``. An empty value counts as absent.
2. ``KeySet`` holds the configured keys as SHA-256 digests, built once per config
   snapshot. ``contains`` compares the digest of the offered key with every configured
   digest using ``hmac.compare_digest`` and no early exit: the time taken depends on how
   many keys are configured, never on their contents or lengths (all digests are 32 bytes).
   A digest that matched is remembered, so a returning client skips the loop; an invalid
   key always takes it (see ``KeySet.__init__`` for why that is safe).
3. ``strip_credentials`` removes every carrier before a request is forwarded (SPEC §3.1), so
   a client's key never reaches a third party. Other query parameters are kept byte for
   byte: the query is split on ``&`` and filtered, never decoded and re-encoded, because
   upstreams may sign or compare the exact bytes.
4. ``is_loopback`` judges the socket peer address only; a header such as
   ``X-Forwarded-For`` is never consulted (SPEC §3.1 restrict-management-to-localhost).
"""

import hashlib
import hmac
import ipaddress
from typing import Iterable, Optional, Tuple
from urllib.parse import unquote_plus

from cliproxy.http.headers import Headers

# Header fields that carry a client key, in the order client_key consults them.
CREDENTIAL_HEADERS = ("authorization", "x-api-key", "x-goog-api-key")
# Query parameters that carry a client key, in the order client_key consults them.
CREDENTIAL_QUERY_PARAMS = ("key", "auth_token")

_CREDENTIAL_HEADER_SET = frozenset(CREDENTIAL_HEADERS)
# The header fields that carry the key as is, in the order client_key consults them.
_KEY_HEADERS = CREDENTIAL_HEADERS[1:]
_CREDENTIAL_QUERY_SET = frozenset(CREDENTIAL_QUERY_PARAMS)
_KEY_HEADER_SET = frozenset(_KEY_HEADERS)


def _bearer(value: Optional[str]) -> Optional[str]:
    """The token of ``Bearer <token>`` (scheme case-insensitive, RFC 9110 §11.1), or None."""
    if value is None:
        return None
    parts = value.strip().split(None, 1)
    if len(parts) == 2 and parts[0].lower() == "bearer":
        return parts[1].strip() or None
    return None


def _query_params(query: str):
    """(decoded name, raw piece, raw value) for each ``&``-separated piece of ``query``."""
    for piece in query.split("&"):
        name, _, value = piece.partition("=")
        yield unquote_plus(name), piece, value


def query_value(query: str, name: str) -> Optional[str]:
    """The decoded value of the first parameter ``name`` in ``query`` with a non-empty
    value, or None. Decoding follows form rules (``+`` is a space), as Go's ``Query()``."""
    for decoded_name, _, raw_value in _query_params(query):
        if decoded_name == name:
            value = unquote_plus(raw_value)
            if value:
                return value
    return None


def client_key(headers: Headers, query: str) -> Optional[str]:
    """The client's key from the first carrier that has one (see the module docstring),
    or None when no carrier holds a non-empty key. A non-Bearer ``Authorization`` (for
    example ``Basic``) is skipped, not an error."""
    value = headers.get("authorization")
    key = None if value is None else _bearer(value)
    for name in _KEY_HEADERS:
        if key is not None:
            break
        value = headers.get(name)
        key = None if value is None else value.strip() or None
    if key is None and query:
        for name in CREDENTIAL_QUERY_PARAMS:
            key = query_value(query, name)
            if key is not None:
                break
    return key


def _digest(key: str) -> bytes:
    # surrogateescape: a header value decoded as latin-1 always encodes; this only guards
    # against odd strings from the config file.
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


class KeySet:
    """The configured client keys, checked in constant time.

    Build one per config snapshot (``KeySet(config.api_keys)``); the keys never change
    (only a memo of accepted digests grows, to at most one per key). Empty configured
    keys are ignored, so ``""`` never authenticates anyone.
    """

    __slots__ = ("_digests", "_accepted")

    def __init__(self, keys: Iterable[str] = ()):
        self._digests = tuple(_digest(key) for key in keys if key)
        # Digests of offered keys that matched, so a client's next request skips the
        # loop in ``contains``. Safe for timing: it holds digests of valid keys only,
        # never raw keys, so a hit tells only that the offered key is valid, which the
        # answer says anyway; an invalid key always takes the whole constant-time loop,
        # and its lookup here compares hashes of digests (their bytes only when equal).
        self._accepted = set()

    def __len__(self):
        return len(self._digests)

    def contains(self, key: Optional[str]) -> bool:
        """Whether ``key`` is one of the configured keys. None, ``""`` and an empty set
        give False. Every configured digest is compared, whatever matched first."""
        if not key:
            return False
        offered = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()  # _digest, inline
        if offered in self._accepted:
            return True
        found = False
        for digest in self._digests:
            found |= hmac.compare_digest(offered, digest)
        if found:
            self._accepted.add(offered)
        return found


def strip_credentials(headers: Headers, query: str) -> Tuple[Headers, str]:
    """A copy of ``headers`` without ``authorization``, ``x-api-key`` and
    ``x-goog-api-key``, and ``query`` without any ``key`` or ``auth_token`` parameter
    (names compared decoded, so ``k%65y`` goes too); every other piece of the query is
    kept exactly as received, in order."""
    return headers.without(_CREDENTIAL_HEADER_SET), strip_credential_params(query)


def strip_client_keys(headers: Headers, query: str, keys: "KeySet") -> Tuple[Headers, str]:
    """``strip_credentials`` for a request that carries credentials of its own (Amp Neo's
    ``/actors`` calls): ``x-api-key``, ``x-goog-api-key`` and the key query parameters go,
    but an ``Authorization`` field goes only when it carries one of the configured client
    ``keys`` (a Bearer token or Basic credentials for the upstream stay untouched)."""
    kept = [
        (name, value)
        for name, value in headers
        if name not in _KEY_HEADER_SET and not (name == "authorization" and keys.contains(_bearer(value)))
    ]  # every Authorization field is judged: a client key may ride in a second one
    return Headers.from_lowered(kept), strip_credential_params(query)


def strip_credential_params(query: str) -> str:
    """``query`` without ``key`` or ``auth_token`` parameters (see ``strip_credentials``)."""
    if not query:
        return query
    return "&".join(piece for name, piece, _ in _query_params(query) if name not in _CREDENTIAL_QUERY_SET)


def is_loopback(host: str) -> bool:
    """Whether the socket peer address ``host`` is a loopback address: 127.0.0.0/8, ``::1``
    or an IPv4-mapped ``::ffff:127.x.y.z``. Brackets and an IPv6 zone (``%lo``) are
    tolerated. Names (``localhost``) and anything unparsable give False: peers are
    addresses, and a name would have to be trusted to resolve honestly."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return address.is_loopback
