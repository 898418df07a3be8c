"""Who may use the management API: the switch, the peer, the lock-out and the key.

Strategy: ``Gate.check`` runs its checks in the order that tells a caller the least.
1. Disabled (``remote-management.secret-key`` empty) → 404: there is nothing to find.
2. A peer that is not a loopback socket address, unless ``allow-remote`` → 403, before
   any key is looked at, so a remote client cannot even probe keys.
3. A locked-out peer → 429 with ``Retry-After``, whatever it sends, the right key
   included: guessing cannot go on during the lock.
4. The key, from ``Authorization: Bearer`` or ``X-Management-Key``, compared in constant
   time (``amp.auth.KeySet``) → 401 when missing or wrong.
A wrong key (not a missing one: a client that forgot its key is not guessing) counts
against the peer's address in ``Lockout``: ``MAX_FAILURES`` within ``WINDOW_SECONDS``
lock it out for ``LOCK_SECONDS``, logged once when the lock starts. Peers are kept in
least-recently-used order and at most ``MAX_PEERS`` of them, so a flood from distinct
addresses costs a fixed amount of memory; it can only push out the oldest entries, which
that many addresses could dodge by rotating anyway.
"""

import collections
import logging
import math
from typing import Callable, List, Optional

from cliproxy.amp.auth import KeySet, is_loopback
from cliproxy.config.model import RemoteManagement
from cliproxy.errors import Forbidden, NotFound, ProxyError, Unauthorized
from cliproxy.http.headers import Headers

log = logging.getLogger("cliproxy.ops.management")

MAX_FAILURES = 5
WINDOW_SECONDS = 600.0
LOCK_SECONDS = 600.0
MAX_PEERS = 4096

_BEARER_CHALLENGE = (("www-authenticate", 'Bearer realm="cliproxy-management"'),)


class LockedOut(ProxyError):
    """Too many wrong keys from one address; ``headers`` carry ``Retry-After``."""

    status = 429
    error_type = "rate_limit_error"


class _Peer(object):
    __slots__ = ("failures", "locked_until")

    def __init__(self, max_failures: int) -> None:
        self.failures = collections.deque(maxlen=max_failures)  # clock readings
        self.locked_until = None  # type: Optional[float]


class Lockout(object):
    """Wrong-key counts and lock-outs per peer address, on an injectable monotonic clock."""

    def __init__(
        self,
        clock: Callable[[], float],
        max_failures: int = MAX_FAILURES,
        window: float = WINDOW_SECONDS,
        duration: float = LOCK_SECONDS,
        max_peers: int = MAX_PEERS,
    ) -> None:
        self.clock = clock
        self.max_failures = max_failures
        self.window = window
        self.duration = duration
        self.max_peers = max_peers
        self._peers = collections.OrderedDict()  # type: collections.OrderedDict

    def __len__(self) -> int:
        return len(self._peers)

    def remaining(self, peer: str) -> Optional[float]:
        """Seconds until ``peer``'s lock-out ends; None when it is not locked out."""
        state = self._peers.get(peer)
        if state is None or state.locked_until is None:
            return None
        left = state.locked_until - self.clock()
        if left > 0:
            return left
        del self._peers[peer]  # served its time: starts again from nothing
        return None

    def failed(self, peer: str) -> bool:
        """Count one wrong key from ``peer``; True when it locks the peer out."""
        now = self.clock()
        state = self._peers.pop(peer, None)
        if state is None:
            state = _Peer(self.max_failures)
        self._peers[peer] = state  # the most recently seen goes last
        if len(self._peers) > self.max_peers:
            self._peers.popitem(last=False)
        failures = state.failures
        failures.append(now)
        if len(failures) == self.max_failures and now - failures[0] <= self.window:
            failures.clear()
            state.locked_until = now + self.duration
            return True
        return False


def offered_keys(headers: Headers) -> List[str]:
    """The non-empty keys of both carriers. Both count, so a client may send its proxy
    key in ``Authorization`` and the management key in ``X-Management-Key``."""
    keys = []
    parts = (headers.get("authorization") or "").strip().split(None, 1)
    if len(parts) == 2 and parts[0].lower() == "bearer" and parts[1].strip():
        keys.append(parts[1].strip())
    direct = (headers.get("x-management-key") or "").strip()
    if direct:
        keys.append(direct)
    return keys


class Gate(object):
    """The checks every management request passes first."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.lockout = Lockout(clock)

    def check(self, request, settings: RemoteManagement) -> None:
        """Return when ``request`` may proceed; raise ``NotFound`` (disabled),
        ``Forbidden`` (remote peer), ``LockedOut`` or ``Unauthorized``."""
        if not settings.secret_key:
            raise NotFound("the management API is disabled (remote-management.secret-key is empty)")
        peer = request.peer[0]
        if not settings.allow_remote and not is_loopback(peer):
            raise Forbidden(
                "the management API answers loopback clients only "
                "(remote-management.allow-remote is false)"
            )
        left = self.lockout.remaining(peer)
        if left is not None:
            seconds = max(1, int(math.ceil(left)))
            raise LockedOut(
                "too many wrong management keys from this address; try again in %d s" % seconds,
                headers=(("retry-after", str(seconds)),),
            )
        offered = offered_keys(request.headers)
        if not offered:
            raise Unauthorized("missing management key", headers=_BEARER_CHALLENGE)
        keys = KeySet((settings.secret_key,))
        # A list, not any(generator): every offered key is compared, whatever matched first.
        if not any([keys.contains(key) for key in offered]):
            if self.lockout.failed(peer):
                log.warning(
                    "management API: too many wrong keys, address locked out",
                    extra={
                        "fields": {
                            "peer": peer,
                            "failures": self.lockout.max_failures,
                            "seconds": int(self.lockout.duration),
                        }
                    },
                )
            raise Unauthorized("invalid management key", headers=_BEARER_CHALLENGE)


__all__ = [
    "Gate",
    "LOCK_SECONDS",
    "LockedOut",
    "Lockout",
    "MAX_FAILURES",
    "MAX_PEERS",
    "WINDOW_SECONDS",
    "offered_keys",
]
