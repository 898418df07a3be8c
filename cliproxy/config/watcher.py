"""Hot reload: poll the config file, rebuild the whole ``Config``, swap one reference.

Strategy: ``ConfigStore.current`` is a plain attribute that request code reads once per
request; a reload builds a complete new ``Config`` and replaces the reference in one
assignment, so requests in flight keep the snapshot they started with and no lock is
needed (SPEC §2 "Hot reload").

Change detection, one ``poll()`` at a time:
1. ``stat`` the file (cheap, every poll). Its key is (mtime_ns, ctime_ns, size, inode):
   an editor's atomic rename-save gives a new inode; any write changes ctime, which no
   tool can set back.
2. Only when that key changed, or every ``REHASH_EVERY`` polls regardless (for file
   systems with coarse timestamps, where a same-size rewrite within one tick leaves the
   stat unchanged), the content is read and hashed with SHA-256.
3. Only when the hash differs from the content in force is the file parsed: ``touch``,
   ``chmod`` and a save without changes cost one read and do not reload.
A file whose content was rejected is not re-reported until its content changes again;
a deleted file is reported once and the last good config stays in force. The loader reads
the file again after it was hashed; a write landing in between changes the stat, so the
next poll sees it.
"""

import asyncio
import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Tuple

from cliproxy.config.loader import ConfigError, load_file
from cliproxy.config.model import Config

log = logging.getLogger("cliproxy.config.watcher")

# At the default 2 s interval: the content is hashed at least every 30 s even when the
# stat looks unchanged.
REHASH_EVERY = 15

# Keys whose change only takes effect after a restart (the listener is bound once).
RESTART_KEYS = ("host", "port", "tls")


class ConfigStore(object):
    """The config in force. Read ``current`` once per request; never lock."""

    __slots__ = ("current",)

    def __init__(self, config: Config) -> None:
        self.current = config

    def swap(self, config: Config) -> Config:
        """Put ``config`` in force and return the one it replaces."""
        old, self.current = self.current, config
        return old


@dataclass(frozen=True)
class Fingerprint:
    """What identifies one version of a file. ``digest`` is the SHA-256 of its bytes."""

    mtime_ns: int
    ctime_ns: int
    size: int
    inode: int
    digest: bytes

    @property
    def stat_key(self) -> Tuple[int, int, int, int]:
        return (self.mtime_ns, self.ctime_ns, self.size, self.inode)


def _stat_key(st: os.stat_result) -> Tuple[int, int, int, int]:
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


def fingerprint(path: str) -> Fingerprint:
    """Stat and hash ``path``; raises ``OSError`` when it cannot be read."""
    with open(path, "rb") as handle:
        st = os.fstat(handle.fileno())
        digest = hashlib.sha256(handle.read()).digest()
    mtime, ctime, size, inode = _stat_key(st)
    return Fingerprint(mtime, ctime, size, inode, digest)


def restart_needed(old: Config, new: Config) -> List[str]:
    """The keys among ``host``, ``port`` and ``tls`` that differ between two configs."""
    return [key for key in RESTART_KEYS if getattr(old, key) != getattr(new, key)]


class ConfigWatcher(object):
    """Polls one config file and swaps valid new versions into ``store``.

    ``loader(path) -> (Config, warnings)`` raises ``ConfigError`` for an invalid file;
    the warnings of a loaded file are logged and kept in ``last_warnings``.
    ``on_reload(old, new)`` is called after a swap (default: log the reload and the keys
    that need a restart); ``on_error(errors)`` with the error strings when a changed file
    is rejected or disappears (default: log them). The file's state at construction is
    taken to be the one ``store.current`` was loaded from.
    """

    def __init__(
        self,
        path: str,
        store: ConfigStore,
        *,
        interval: float = 2.0,
        loader: Callable[[str], Tuple[Config, List[str]]] = load_file,
        on_reload: Optional[Callable[[Config, Config], None]] = None,
        on_error: Optional[Callable[[List[str]], None]] = None,
        rehash_every: int = REHASH_EVERY
    ) -> None:
        self.path = path
        self.store = store
        self.interval = interval
        self.loader = loader
        self.on_reload = on_reload or self._log_reload
        self.on_error = on_error or self._log_errors
        self.rehash_every = rehash_every
        self.last_warnings = []  # type: List[str]
        self._stat = None  # type: Optional[Tuple[int, int, int, int]]
        self._good_digest = None  # type: Optional[bytes]
        self._bad_digest = None  # type: Optional[bytes]
        self._missing_reported = False
        self._polls_since_hash = 0
        try:
            current = fingerprint(path)
        except OSError:
            return  # the first poll reports it
        self._stat, self._good_digest = current.stat_key, current.digest

    def poll(self) -> Optional[bool]:
        """One synchronous step. None: nothing to do; True: a new config is in force;
        False: the file changed but was rejected (``on_error`` was called)."""
        try:
            key = _stat_key(os.stat(self.path))
        except OSError as exc:
            return self._unreadable(exc)
        self._polls_since_hash += 1
        if key == self._stat and self._polls_since_hash < self.rehash_every:
            return None
        return self._check(force=False)

    def reload_now(self) -> bool:
        """Re-read and apply the file whatever its fingerprint (SIGHUP). Returns True
        when a new config is in force, False when the file was rejected."""
        self._missing_reported = False
        result = self._check(force=True)
        return bool(result)

    async def run(self) -> None:
        """Poll every ``interval`` seconds until cancelled. The interval follows the
        ``reload-interval`` of each newly loaded config."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.poll()
            except Exception:  # a watcher bug must not stop reloads for good
                log.exception("config watcher: unexpected error while polling %s", self.path)

    def _check(self, force: bool) -> Optional[bool]:
        try:
            current = fingerprint(self.path)
        except OSError as exc:
            return self._unreadable(exc)
        self._stat = current.stat_key
        self._polls_since_hash = 0
        if self._missing_reported:
            self._missing_reported = False
            log.info("config file %s is readable again", self.path)
        if not force and current.digest in (self._good_digest, self._bad_digest):
            return None
        return self._load(current.digest)

    def _load(self, digest: bytes) -> bool:
        try:
            new, warnings = self.loader(self.path)
        except ConfigError as exc:
            self._bad_digest = digest
            self._report(exc.errors)
            return False
        self._good_digest, self._bad_digest = digest, None
        self.last_warnings = list(warnings)
        for warning in warnings:
            log.warning("config: %s", warning)
        old = self.store.swap(new)
        if new.reload_interval != old.reload_interval:
            self.interval = new.reload_interval
        self.on_reload(old, new)
        return True

    def _unreadable(self, exc: OSError) -> Optional[bool]:
        """A missing or unreadable file: report once, keep the config in force."""
        if self._missing_reported:
            return None
        self._missing_reported = True
        self._stat = None  # whatever appears next is read
        self._report(["%s: cannot read: %s" % (self.path, exc.strerror or exc)])
        return False

    def _report(self, errors: Iterable[str]) -> None:
        self.on_error(list(errors))

    def _log_reload(self, old: Config, new: Config) -> None:
        log.info("config reloaded from %s", self.path)
        for key in restart_needed(old, new):
            log.warning("config: %s changed; it takes effect after a restart", key)

    def _log_errors(self, errors: List[str]) -> None:
        log.error(
            "config %s rejected, the previous config stays in force: %s",
            self.path,
            "; ".join(errors),
        )
