"""Choosing which credential (provider entry) serves a request, and remembering failures.

Strategy: ``CredentialPool`` is the only mutable state of the provider path. It is keyed by
credential id (``entry.path``, never the key itself) and model, and read and written from
the event loop only, so it needs no lock. Every operation is O(1) apart from one pass over
the few credentials serving a model; every table is bounded.

Selection (SPEC §2 "provider entries", "X-Amp-Thread-Id"):
- ``order`` returns the usable credentials, rotated by a per-model counter that advances by
  one per call, so consecutive requests start on consecutive credentials and load spreads
  evenly. Cooled-down credentials are left out; when all are, the list is empty and
  ``soonest_recovery`` tells the caller when to say to retry.
- A request carrying a thread id gets the credential that last served that (thread, model)
  first, while that credential is healthy (usable and with no failure since its last
  success). Otherwise the thread follows round-robin and the next ``success`` re-binds it,
  so a thread whose credential failed moves and stays on the new one. The sticky table is
  an LRU of at most ``sticky_limit`` entries; an entry idle (no success) for
  ``sticky_ttl`` seconds is dropped when next seen.

Failures (``failure``), per (credential, model), with ``streak`` the consecutive failures:
- RATE_LIMITED (429, or a quota / rate-limit error body): cooled down for the provider's
  ``Retry-After`` when given, else 1 s, 2 s, 4 s ... capped at 300 s.
- AUTH (401, or 403 without quota wording): cooled down 30 min; one WARNING per
  credential (until it succeeds again) naming ``entry.path`` and the masked key.
- CONNECT, TIMEOUT, SERVER_ERROR: the first failure only records the streak (one blip is
  common and ``request-retry`` already moves the request on, and the streak alone ends
  stickiness); from the second consecutive failure, cooled down 2 s, 4 s ... capped at 60 s.
- OTHER (for example a 400, the client's own fault) changes nothing.
A cool-down never shortens one already running (a late failure of an earlier request).
``success`` clears the streak and any cool-down.
"""

import collections
import email.utils
import enum
import hashlib
import logging
import re
import time
from datetime import timezone
from typing import Callable, List, Optional, Sequence

from cliproxy.masking import mask_secret

log = logging.getLogger("cliproxy.providers.credentials")

RATE_LIMIT_BASE = 1.0  # seconds, first default cool-down after a 429 without Retry-After
RATE_LIMIT_CAP = 300.0
TRANSIENT_GRACE = 1  # consecutive connect/timeout/5xx failures tolerated without cool-down
TRANSIENT_BASE = 2.0
TRANSIENT_CAP = 60.0
AUTH_COOLDOWN = 1800.0
MAX_RETRY_AFTER = 3600.0  # a provider asking for more is capped: config may be fixed sooner
_MAX_EXPONENT = 30  # 2**30 s is far past every cap; keeps float powers finite

DEFAULT_STICKY_LIMIT = 10000  # SPEC §2
DEFAULT_STICKY_TTL = 3600.0
# Health entries and round-robin counters are keyed by model names clients choose (the
# default claude-*/gemini-*/gpt-* patterns admit any suffix), so they are bounded too.
STATE_LIMIT = 10000
# Longer thread ids and model names are stored as a digest, bounding memory per entry.
MAX_KEY_CHARS = 256

# Wording of quota and rate-limit errors in provider bodies: Anthropic "rate_limit_error",
# OpenAI "insufficient_quota" / "Rate limit reached", Gemini "RESOURCE_EXHAUSTED", and
# the usual proxies' "Too Many Requests". Anthropic's 529 "overloaded_error" is not here on
# purpose: it is the provider's capacity, not this credential's, so it is a SERVER_ERROR.
QUOTA_MARKERS = (
    b"rate limit",
    b"rate_limit",
    b"rate-limit",
    b"ratelimit",
    b"quota",
    b"resource_exhausted",
    b"too many requests",
)
QUOTA_SCAN_BYTES = 64 * 1024  # error bodies are small; bound the scan of a huge one

_DELAY_SECONDS = re.compile(r"^-?\d+(\.\d+)?$")


class FailureKind(enum.Enum):
    CONNECT = "connect"  # no connection (refused, DNS, TLS)
    TIMEOUT = "timeout"  # no response head in time
    SERVER_ERROR = "server_error"  # 5xx, 529 overloaded included
    RATE_LIMITED = "rate_limited"  # 429, or a body that says quota / rate limit
    AUTH = "auth"  # 401, 403
    OTHER = "other"  # anything else: not the credential's fault

    @property
    def fails_over(self) -> bool:
        """Whether another credential may succeed where this one failed."""
        return self is not FailureKind.OTHER


def is_quota_body(body: bytes) -> bool:
    """Whether an error body (the first ``QUOTA_SCAN_BYTES``) speaks of a quota or a rate
    limit, case-insensitively (see ``QUOTA_MARKERS``)."""
    text = bytes(body[:QUOTA_SCAN_BYTES]).lower()
    return any(marker in text for marker in QUOTA_MARKERS)


def classify(status: Optional[int], body: bytes = b"") -> FailureKind:
    """The kind of a failed provider answer. ``None`` status (no answer) is CONNECT;
    timeouts are the caller's to report as TIMEOUT. 401 is AUTH; 429 or a quota body on
    any other status >= 400 is RATE_LIMITED (some providers answer quota errors with 400,
    403 or 5xx); else 403 is AUTH and 5xx SERVER_ERROR; everything else OTHER."""
    if status is None:
        return FailureKind.CONNECT
    if status < 400:
        return FailureKind.OTHER
    if status == 401:
        return FailureKind.AUTH
    if status == 429 or is_quota_body(body):
        return FailureKind.RATE_LIMITED
    if status == 403:
        return FailureKind.AUTH
    if status >= 500:
        return FailureKind.SERVER_ERROR
    return FailureKind.OTHER


def parse_retry_after(value: Optional[str], now_wall: float) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` value (RFC 9110 §10.2.3): delay-seconds (a
    fraction tolerated) or an HTTP-date, relative to the wall-clock time ``now_wall``.
    Negative or past values give 0, values past ``MAX_RETRY_AFTER`` are capped; None
    (absent or unparsable) gives None."""
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS.match(text):
        seconds = float(text)
    else:
        seconds = _http_date_delay(text, now_wall)
        if seconds is None:
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _http_date_delay(text: str, now_wall: float) -> Optional[float]:
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        # Python 3.8/3.9 raise TypeError for garbage, later versions ValueError.
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # "-0000": RFC 5322 says UTC with no offset information
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp() - now_wall


def retry_after_from_headers(headers, now_wall: float) -> Optional[float]:
    """Seconds to wait from a provider's response ``headers``: OpenAI's ``retry-after-ms``
    (more precise) when valid, else ``retry-after``; None when neither is usable."""
    millis = headers.get("retry-after-ms")
    if millis is not None and _DELAY_SECONDS.match(millis.strip()):
        return min(max(float(millis) / 1000.0, 0.0), MAX_RETRY_AFTER)
    return parse_retry_after(headers.get("retry-after"), now_wall)


def _key(text: str) -> str:
    if len(text) <= MAX_KEY_CHARS:
        return text
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _backoff(base: float, cap: float, exponent: int) -> float:
    return min(base * 2.0 ** min(max(exponent, 0), _MAX_EXPONENT), cap)


class _Health:
    __slots__ = ("streak", "until")

    def __init__(self):
        self.streak = 0
        self.until = 0.0  # monotonic end of the cool-down; <= now means usable


class _Binding:
    __slots__ = ("credential", "last_used")

    def __init__(self, credential: str, last_used: float):
        self.credential = credential
        self.last_used = last_used


def _credential_id(served) -> str:
    return served.entry.path


class CredentialPool:
    """Round-robin, sticky threads and cool-downs over ``Served`` values (anything with
    ``.entry.path``, ``.entry.api_key`` and ``.upstream_model``).

    ``clock`` is monotonic seconds; ``sticky_limit`` and ``sticky_ttl`` bound the
    thread table (entries and idle seconds).
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sticky_limit: int = DEFAULT_STICKY_LIMIT,
        sticky_ttl: float = DEFAULT_STICKY_TTL,
    ):
        self._clock = clock
        self._sticky_limit = sticky_limit
        self._sticky_ttl = sticky_ttl
        self._health = collections.OrderedDict()  # (credential, model) -> _Health
        # model -> calls so far, least recently used first: a plain dict keeps insertion
        # order, and a counter is taken out and put back on each use (one call, where an
        # OrderedDict's get and move_to_end are two).
        self._counters = {}
        self._sticky = collections.OrderedDict()  # (thread, model) -> _Binding, LRU first
        self._auth_warned = set()  # credential ids whose AUTH failure was logged

    # -- selection ---------------------------------------------------------------------

    def order(self, served: Sequence, model: str, thread_id: Optional[str] = None) -> List:
        """The usable members of ``served`` in the order to try them: the thread's sticky
        credential first when it is healthy, then round-robin. Cooled-down members are left
        out, so the list is empty when every member is cooling down."""
        model_key = model if len(model) <= MAX_KEY_CHARS else _key(model)
        if not thread_id and not self._health:
            # Nothing cools down and no thread to honour: plain round-robin over all.
            return self._rotated(list(served), model_key)
        now = self._clock()
        usable = [s for s in served if self._usable(_credential_id(s), model_key, now)]
        if not usable:
            return []
        sticky_id = self._sticky_credential(thread_id, model_key, now)
        sticky = None
        if sticky_id is not None:
            sticky = next((s for s in usable if _credential_id(s) == sticky_id), None)
        if sticky is not None and self._streak(sticky_id, model_key) == 0:
            # Not advancing the counter keeps the rotation even for unbound requests.
            start = self._counter(model_key, advance=False) % len(usable)
            rotated = usable[start:] + usable[:start]
            return [sticky] + [s for s in rotated if s is not sticky]
        return self._rotated(usable, model_key)

    def _rotated(self, usable: List, model_key: str) -> List:
        """``usable`` rotated by the model's counter, which advances by one."""
        if not usable:
            return usable
        value = self._counter(model_key, advance=True)
        count = len(usable)
        if count == 1:
            return usable
        start = value % count
        return usable[start:] + usable[:start] if start else usable

    def soonest_recovery(self, served: Sequence, model: str) -> Optional[float]:
        """Seconds until the first member of ``served`` is usable for ``model`` (0.0 when
        one is usable now); None when ``served`` is empty."""
        if not served:
            return None
        now = self._clock()
        model_key = _key(model)
        waits = []
        for s in served:
            health = self._health.get((_credential_id(s), model_key))
            waits.append(max(health.until - now, 0.0) if health is not None else 0.0)
        return min(waits)

    # -- outcomes ----------------------------------------------------------------------

    def success(self, served, model: str, thread_id: Optional[str] = None) -> None:
        """Record that ``served`` answered ``model`` well: its streak and cool-down end,
        and ``thread_id`` (if any) is bound to it."""
        credential = _credential_id(served)
        # Emptiness checked first: a healthy pool has nothing to clear, and a call each
        # to find that out is most of what a success costs.
        if self._health:
            self._health.pop((credential, _key(model)), None)
        if self._auth_warned:
            self._auth_warned.discard(credential)
        if thread_id:
            self._bind(_key(thread_id), _key(model), credential, self._clock())

    def failure(
        self,
        served,
        model: str,
        kind: FailureKind,
        retry_after: Optional[float] = None,
    ) -> None:
        """Record a failure of ``served`` for ``model`` and cool it down as the module
        docstring says; ``retry_after`` (seconds, from ``parse_retry_after``) is honoured
        for RATE_LIMITED."""
        if kind is FailureKind.OTHER:
            return
        now = self._clock()
        health = self._health_entry(_credential_id(served), _key(model))
        health.streak += 1
        cooldown = self._cooldown(kind, health.streak, retry_after)
        if cooldown > 0.0:
            health.until = max(health.until, now + cooldown)
        if kind is FailureKind.AUTH:
            self._warn_auth(served, model)

    # -- internals ---------------------------------------------------------------------

    @staticmethod
    def _cooldown(kind: FailureKind, streak: int, retry_after: Optional[float]) -> float:
        if kind is FailureKind.AUTH:
            return AUTH_COOLDOWN
        if kind is FailureKind.RATE_LIMITED:
            if retry_after is not None:
                return min(max(retry_after, 0.0), MAX_RETRY_AFTER)
            return _backoff(RATE_LIMIT_BASE, RATE_LIMIT_CAP, streak - 1)
        if streak <= TRANSIENT_GRACE:
            return 0.0
        return _backoff(TRANSIENT_BASE, TRANSIENT_CAP, streak - TRANSIENT_GRACE - 1)

    def _warn_auth(self, served, model: str) -> None:
        credential = _credential_id(served)
        if credential in self._auth_warned:
            return
        self._auth_warned.add(credential)
        log.warning(
            "credential %s (key %s) was refused by the provider (401/403) for model %r; "
            "not used for that model for %d s",
            credential,
            mask_secret(served.entry.api_key or "") or "(none)",
            model,
            int(AUTH_COOLDOWN),
        )

    def _usable(self, credential: str, model_key: str, now: float) -> bool:
        health = self._health.get((credential, model_key))
        return health is None or health.until <= now

    def _streak(self, credential: str, model_key: str) -> int:
        health = self._health.get((credential, model_key))
        return 0 if health is None else health.streak

    def _health_entry(self, credential: str, model_key: str) -> _Health:
        key = (credential, model_key)
        health = self._health.get(key)
        if health is None:
            health = self._health[key] = _Health()
            if len(self._health) > STATE_LIMIT:
                self._health.popitem(last=False)
        else:
            self._health.move_to_end(key)
        return health

    def _counter(self, model_key: str, advance: bool) -> int:
        """The model's calls so far; with ``advance``, one more is counted (and the
        least recently used counter dropped past ``STATE_LIMIT``)."""
        counters = self._counters
        if not advance:
            return counters.get(model_key, 0)
        value = counters.pop(model_key, 0)
        counters[model_key] = value + 1  # at the end: the most recently used
        if not value and len(counters) > STATE_LIMIT:  # only a new counter grows the table
            del counters[next(iter(counters))]
        return value

    def _sticky_credential(self, thread_id: Optional[str], model_key: str, now: float):
        if not thread_id:
            return None
        self._expire_sticky(now)
        binding = self._sticky.get((_key(thread_id), model_key))
        return None if binding is None else binding.credential

    def _bind(self, thread_key: str, model_key: str, credential: str, now: float) -> None:
        key = (thread_key, model_key)
        self._sticky[key] = _Binding(credential, now)
        self._sticky.move_to_end(key)
        while len(self._sticky) > self._sticky_limit:
            self._sticky.popitem(last=False)
        self._expire_sticky(now)

    def _expire_sticky(self, now: float) -> None:
        # Bindings are refreshed only by _bind, which moves them to the end, so the table is
        # ordered by last use and the expired ones are all at the front.
        while self._sticky:
            key, binding = next(iter(self._sticky.items()))
            if now - binding.last_used < self._sticky_ttl:
                break
            del self._sticky[key]

    def sticky_size(self) -> int:
        """How many thread bindings are held (for metrics and tests)."""
        return len(self._sticky)
