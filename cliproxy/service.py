"""The running proxy: config store, watcher, outbound client, app and listening server.

Strategy: ``Service`` wires the parts together once, for the command line and for the
tests alike, so what the tests start is exactly what a user runs. Signals and systemd are
the command line's business (``cli.py``); this module only starts, reloads and stops.
"""

import asyncio
import dataclasses
import logging
import os
import ssl
import time

from cliproxy import log as logsetup
from cliproxy.app import App
from cliproxy.config.checks import logs_dir_warning
from cliproxy.config.loader import load_file
from cliproxy.config.watcher import ConfigStore, ConfigWatcher, restart_needed
from cliproxy.http.client import HttpClient
from cliproxy.http.server import Server
from cliproxy.ops.management_api import ManagementApi
from cliproxy.ops.requestlog import RequestLog
from cliproxy.ops.usage import UsageLedger

log = logging.getLogger("cliproxy.service")


def ssl_context_for(config):
    """The server TLS context of ``config``, or None when TLS is off."""
    if not config.tls.enable:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls.cert, config.tls.key)
    return context


# Seconds between writes of the usage ledger: a kill -9 loses at most this much.
USAGE_FLUSH_INTERVAL = 1.0


async def _flush_every(ledger, interval):
    """Write ``ledger``'s new records every ``interval`` seconds until cancelled."""
    while True:
        await asyncio.sleep(interval)
        ledger.flush()


def _follow_debug(old, new):
    """A config swap that changes ``debug`` changes the log level at once."""
    if old.debug != new.debug:
        logsetup.apply_debug(new.debug)


class Service:
    """One proxy instance. ``overrides`` (command-line ``host``/``port``) apply to every
    config the watcher loads, so a reload never undoes them."""

    def __init__(self, config, path=None, *, overrides=None, clock=time.monotonic, app_options=None):
        self.path = path
        self.overrides = dict(overrides or {})
        self.store = ConfigStore(dataclasses.replace(config, **self.overrides))
        self.client = HttpClient(ca_bundle=config.ca_bundle)
        options = dict(app_options or {})
        request_log = options.setdefault("request_log", RequestLog(lambda: self.store.current))
        # The ledger outlives reloads; its directory is the logs-dir found at start.
        usage = options.setdefault("usage", UsageLedger(os.path.join(self.store.current.logs_dir, "usage")))
        options.setdefault(
            "management_api",
            ManagementApi(
                clock=clock,
                request_lines=getattr(request_log, "recent", None),
                usage=usage,
                on_swap=_follow_debug,
            ),
        )
        self.app = App(self.store, self.client, clock=clock, **options)
        self.app.metrics.usage = usage
        self.server = None
        self.address = None
        self.watcher = None
        self._watch_task = None
        self._flush_task = None

    async def start(self):
        """Bind and serve; returns the bound (host, port). Raises OSError/SSLError."""
        config = self.store.current
        self._warn_about_host(config)
        self.server = Server(self.app, limits=lambda: self.store.current.limits, ssl_context=ssl_context_for(config))
        self.address = await self.server.start(config.host, config.port)
        self.app.metrics.open_streams = lambda: self.server.open_streams
        if self.path is not None:
            self.watcher = ConfigWatcher(
                self.path,
                self.store,
                interval=config.reload_interval,
                loader=self._load,
                on_reload=self._reloaded,
                on_error=self._rejected,
            )
            self._watch_task = asyncio.ensure_future(self.watcher.run())
        if self.app.usage is not None:
            self._flush_task = asyncio.ensure_future(_flush_every(self.app.usage, USAGE_FLUSH_INTERVAL))
        return self.address

    def reload_now(self):
        """Re-read the config file and Amp's secrets file at once (SIGHUP); returns the
        watcher's poll result."""
        # A reload also re-reads Amp's secrets file, whose 5-minute cache would otherwise
        # keep a key the user just replaced by logging in again.
        self.app.upstream_keys.invalidate()
        if self.watcher is None:
            log.info("no config file to reload")
            return None
        return self.watcher.reload_now()

    async def stop(self):
        """Stop accepting, drain in-flight requests (bounded), close everything."""
        if self._watch_task is not None:
            self._watch_task.cancel()
            await asyncio.gather(self._watch_task, return_exceptions=True)
        if self.server is not None:
            await self.server.shutdown(self.store.current.limits.drain_timeout)
        if self._flush_task is not None:
            self._flush_task.cancel()
            await asyncio.gather(self._flush_task, return_exceptions=True)
        if self.app.usage is not None:
            self.app.usage.flush()  # what the drained requests used
        await self.client.aclose()

    def _load(self, path):
        config, warnings = load_file(path)
        return dataclasses.replace(config, **self.overrides), warnings

    def _reloaded(self, old, new):
        self.app.metrics.count_reload(True)
        _follow_debug(old, new)
        for name in restart_needed(old, new):
            log.warning("config: %s changed; it takes effect after a restart" % name)
        log.info("config reloaded", extra={"fields": {"config": self.path}})
        self._warn_about_host(new, old)

    def _warn_about_host(self, config, old=None):
        """One warning line each for what this host will not let ``config`` do: an upstream
        with no key to send (at start and at every reload), a logs-dir that cannot be
        written (at start, and at a reload that changes what it is used for)."""
        missing_key = self.app.upstream_keys.missing_key_warning(config.ampcode)
        if missing_key is not None:
            log.warning(missing_key)
        logs_changed = old is None or (old.logs_dir, old.request_log, old.ampcode.upstream_url) != (
            config.logs_dir, config.request_log, config.ampcode.upstream_url)
        unwritable = logs_dir_warning(config) if logs_changed else None
        if unwritable is not None:
            log.warning(unwritable)

    def _rejected(self, errors):
        self.app.metrics.count_reload(False, len(errors))
        for error in errors:
            log.error("config rejected, keeping the last good one: " + error)
