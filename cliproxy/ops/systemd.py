"""systemd integration: sd_notify(3) messages and watchdog pings.

Strategy: a ``Notifier`` is built once from the environment; with no ``NOTIFY_SOCKET``
every call is a no-op, so callers never check whether they run under systemd. Messages
are single datagrams on the AF_UNIX socket systemd names (a leading ``@`` means the
abstract namespace).
"""

import asyncio
import logging
import os
import socket

log = logging.getLogger("cliproxy.systemd")


class Notifier:
    """Sends ``READY=1``, ``RELOADING=1``, ``STOPPING=1`` and ``WATCHDOG=1``."""

    def __init__(self, environ=os.environ):
        address = environ.get("NOTIFY_SOCKET") or None
        if address and address.startswith("@"):
            address = "\0" + address[1:]
        self._address = address
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        watchdog = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        # systemd recommends pinging at half the configured interval.
        self.watchdog_interval = int(usec) / 2e6 if watchdog else None

    @property
    def enabled(self):
        return self._address is not None

    def notify(self, message):
        """Send one state message; failures are logged, never raised."""
        if self._address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self._address)
                sock.sendall(message.encode("utf-8"))
        except OSError as exc:
            log.warning("sd_notify failed: %s", exc)

    def ready(self):
        self.notify("READY=1")

    def reloading(self):
        self.notify("RELOADING=1")

    def stopping(self):
        self.notify("STOPPING=1")

    async def run_watchdog(self):
        """Ping the watchdog until cancelled (returns at once when not configured)."""
        if self.watchdog_interval is None or self._address is None:
            return
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval)
