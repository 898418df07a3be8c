"""Which kind of Amp CLI a client runs, said once per client (SPEC §3.1).

Strategy: classic Amp CLIs (releases up to May 2026) send their model calls through
``/api/provider/...``, where local providers and mappings serve them; Amp "Neo" (from July
2026) runs its model calls in Amp's cloud and only tunnels its thread actors
(``/api/thread-actors``, ``/actors/...``) through cliproxy. A user whose mappings never
fire needs to learn which one they run, once, not on every request: ``ModeLog.note``
logs the first sighting of each (peer address, mode) pair and remembers a bounded number.
"""

import enum
import logging

log = logging.getLogger("cliproxy.amp")

# Distinct peers remembered; past this the memory starts over (a line may repeat then).
MAX_PEERS = 1024


class AmpMode(enum.Enum):
    CLASSIC = "classic"
    NEO = "neo"


_HINTS = {
    AmpMode.CLASSIC: "model calls go through cliproxy: local providers and mappings serve them",
    AmpMode.NEO: "Amp Neo runs its model calls in Amp's cloud; cliproxy only tunnels its thread "
    "actors, so no local provider or mapping is used",
}


class ModeLog:
    """Logs the first request of each (peer, mode) at INFO."""

    def __init__(self, limit=MAX_PEERS):
        self._seen = set()
        self._limit = limit

    def note(self, peer_host, mode):
        """Log ``mode`` for ``peer_host`` unless it was logged before; True when logged."""
        key = (peer_host, mode)
        if key in self._seen:
            return False
        if len(self._seen) >= self._limit:
            self._seen.clear()
        self._seen.add(key)
        log.info("amp client mode", extra={"fields": {"peer": peer_host, "mode": mode.value, "hint": _HINTS[mode]}})
        return True
