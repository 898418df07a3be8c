"""The key sent to the Amp upstream (``ampcode.upstream-url``) on a client's behalf.

Strategy: one precedence chain, evaluated per request (SPEC §2):

1. the first ``ampcode.upstream-api-keys`` mapping whose ``api-keys`` contain the
   client's key (compared in constant time, every mapping checked, first match wins);
2. ``ampcode.upstream-api-key``;
3. the environment variable ``AMP_API_KEY``;
4. the Amp CLI's own ``~/.local/share/amp/secrets.json``, key ``"apiKey@https://ampcode.com/"``.

An empty value anywhere counts as unset. The secrets file is read at most once per ``ttl``
seconds (5 minutes by default) and its outcome, a missing or invalid file included, is
cached, so a broken file costs one small read per ``ttl`` rather than one per request; the
read is synchronous because it is small and rare. Problems with the file are logged at
debug level, once per distinct problem, and never with its content.

A proxy whose upstream gets no key at all works, but every management call then fails
upstream for a reason the user cannot see (under systemd, ``ProtectHome=`` hides the
secrets file). ``missing_key_warning`` names every place looked at, so start-up, reloads
and ``check`` can say so once instead of the proxy failing quietly per request.
"""

import functools
import logging
import os
import time
from typing import Callable, Mapping, Optional

from cliproxy.amp.auth import KeySet
from cliproxy.config.model import AmpCode
from cliproxy.jsontext import loads

log = logging.getLogger("cliproxy.amp.secrets")

DEFAULT_SECRETS_PATH = "~/.local/share/amp/secrets.json"
SECRETS_FILE_KEY = "apiKey@https://ampcode.com/"
ENV_VAR = "AMP_API_KEY"
DEFAULT_TTL = 300.0  # seconds; SPEC §2 "file read cached 5 min"
# The file holds one short JSON object; anything larger is not Amp's secrets file.
MAX_SECRETS_FILE_BYTES = 1024 * 1024


@functools.lru_cache(maxsize=256)
def _key_set(api_keys) -> KeySet:
    # Keyed by the mapping's (immutable) key tuple: built once per config snapshot in
    # practice, and bounded so reloads cannot grow it.
    return KeySet(api_keys)


def mapped_key(ampcode: AmpCode, client_key: Optional[str]) -> Optional[str]:
    """The upstream key of the first ``upstream-api-keys`` mapping listing ``client_key``,
    or None. Every mapping is checked in constant time (``KeySet.contains``), so the time
    taken does not tell which mapping, if any, matched."""
    if not client_key:
        return None
    chosen = None
    for mapping in ampcode.upstream_api_keys:
        hit = _key_set(tuple(mapping.api_keys)).contains(client_key)
        if hit and chosen is None and mapping.upstream_api_key:
            chosen = mapping.upstream_api_key
    return chosen


class UpstreamKeys:
    """Resolves the upstream Amp key; one instance lives for the process.

    ``clock`` is a monotonic clock in seconds, ``environ`` the environment to read
    ``AMP_API_KEY`` from, ``secrets_path`` the secrets file (None: the Amp CLI's default,
    ``~`` expanded when read), ``ttl`` how long a read of that file is trusted.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        environ: Mapping[str, str] = os.environ,
        secrets_path: Optional[str] = None,
        ttl: float = DEFAULT_TTL,
    ):
        self._clock = clock
        self._environ = environ
        self._secrets_path = secrets_path
        self._ttl = ttl
        self._file_key = None  # type: Optional[str]
        self._expires = None  # type: Optional[float]
        self._last_problem = None  # type: Optional[str]
        # Why the last read of the file gave no key ("<path> not found"), None when it did.
        self.file_problem = None  # type: Optional[str]

    def resolve(self, ampcode: AmpCode, client_key: Optional[str]) -> Optional[str]:
        """The upstream key for a request from ``client_key`` (see the module docstring
        for the order), or None when no source has one. Never raises."""
        key = mapped_key(ampcode, client_key)
        if key is None:
            key = ampcode.upstream_api_key or None
        if key is None:
            key = (self._environ.get(ENV_VAR) or "").strip() or None
        if key is None:
            key = self.file_key()
        return key

    def file_key(self) -> Optional[str]:
        """The key from the secrets file, re-read only when the cached read is older than
        ``ttl``."""
        now = self._clock()
        if self._expires is None or now >= self._expires:
            self._file_key = self._read_file()
            self._expires = now + self._ttl
        return self._file_key

    def missing_key_warning(self, ampcode: AmpCode) -> Optional[str]:
        """A warning naming the places looked at when an upstream is configured and none of
        config, ``AMP_API_KEY`` and the secrets file (re-read now) has a key; None when
        one does, or when there is no upstream (offline mode). Never contains a key."""
        if ampcode.upstream_url is None:
            return None
        if ampcode.upstream_api_key or (self._environ.get(ENV_VAR) or "").strip():
            return None
        self.invalidate()
        if self.file_key() is not None:
            return None
        who = "clients not listed in ampcode.upstream-api-keys" if ampcode.upstream_api_keys else "every client"
        return (
            "no upstream Amp key: ampcode.upstream-api-key is empty, %s is not set, and the Amp "
            "CLI's secrets file has none (%s); "
            "management calls to %s go without a key for %s (set ampcode.upstream-api-key, "
            'for example to "file:amp-api-key" with systemd\'s LoadCredential=, or %s)'
            % (ENV_VAR, self.file_problem, ampcode.upstream_url, who, ENV_VAR)
        )

    def invalidate(self) -> None:
        """Forget the cached file read (for example on SIGHUP), so the next use re-reads."""
        self._expires = None

    def _path(self) -> str:
        return os.path.expanduser(self._secrets_path or DEFAULT_SECRETS_PATH)

    def _read_file(self) -> Optional[str]:
        path = self._path()
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_SECRETS_FILE_BYTES + 1)
        except FileNotFoundError:
            return self._problem(path, "not found")
        except OSError as exc:
            return self._problem(path, "unreadable (%s)" % (exc.strerror or type(exc).__name__))
        if len(data) > MAX_SECRETS_FILE_BYTES:
            return self._problem(path, "too large")
        try:
            document = loads(data.decode("utf-8"))
        except ValueError:  # UnicodeDecodeError and invalid JSON are ValueErrors
            return self._problem(path, "not valid JSON")
        value = document.get(SECRETS_FILE_KEY) if isinstance(document, dict) else None
        if not isinstance(value, str) or not value.strip():
            return self._problem(path, "has no %r string" % SECRETS_FILE_KEY)
        self._last_problem = self.file_problem = None
        return value.strip()

    def _problem(self, path: str, problem: str) -> None:
        # Once per distinct problem: a missing file is the normal case for most users.
        message = self.file_problem = "%s %s" % (path, problem)
        if message != self._last_problem:
            log.debug("amp secrets file %s; not using it", message)
            self._last_problem = message
        return None
