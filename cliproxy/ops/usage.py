"""Usage accounting: what every answered model call used, kept across restarts (SPEC §3.4).

Strategy: a ``UsageRecord`` per model call, made when its answer is complete (a stream's
usage is known at its end), carries the provider's own token counts and who asked for
what. The ``UsageLedger`` folds records into counts in memory — one table of totals per
label set, one per (hour, label set) — and appends each record as a JSON line to
``<logs-dir>/usage/usage-N.jsonl``. Lines are buffered and written by ``flush`` (the
service calls it every second, and at shutdown), so a ``kill -9`` loses at most the last
second. At start the files are read back into the tables, so totals survive restarts and
reloads (the ledger outlives config swaps). Everything is bounded: the files rotate at
``MAX_FILE_BYTES`` and at most ``MAX_FILES`` are kept; the tables hold at most
``MAX_LABEL_SETS`` label sets (later new ones are counted under ``other``) and
``MAX_HOURS`` hours. A directory that cannot be written costs one warning and the counts
stay in memory.

Labels: the model the client asked for, the model that served it, the provider entry,
the client (a short digest of its key, never the key), the route type and the status.
"""

import datetime
import hashlib
import json
import logging
import os
import time
from typing import Dict, List, NamedTuple, Optional, Tuple

from cliproxy.jsontext import loads
from cliproxy.memo import Memo

log = logging.getLogger("cliproxy.usage")

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_FILES = 8  # 64 MB of history at most
MAX_LABEL_SETS = 2000  # distinct (models, provider, client, route, status) combinations
MAX_HOURS = 24 * 45  # hourly buckets kept (45 days)
OTHER = "other"
MAX_MODEL_CHARS = 128  # real model names are well under it

# Route types whose calls were served by the user's own providers, not by Amp credits.
LOCAL_ROUTES = ("LOCAL_PROVIDER", "MODEL_MAPPING")
CREDITS_ROUTE = "AMP_CREDITS"

_ENCODE = json.JSONEncoder(separators=(",", ":")).encode
_COUNTS = ("requests", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
_LABELS = ("requested_model", "served_model", "provider", "client", "route", "status")


def client_id(key: Optional[str]) -> Optional[str]:
    """A short, stable id for a client key that does not reveal it: ``key-`` and 8 hex
    digits of its SHA-256. None for no key. Remembered per key (clients send the same
    key on every request)."""
    if not key:
        return None
    return _CLIENT_IDS[key]


def _client_id(key: str) -> str:
    return "key-" + hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:8]


# Bounded: a client that sends a new (wrong) key each time is refused before this.
_CLIENT_IDS = Memo(_client_id, 1024)


class UsageRecord(NamedTuple):
    """One answered model call. Token counts are the provider's own; None where it gave
    none (an Amp-credits call is forwarded untouched, so its tokens are not read).
    ``input_tokens`` counts the whole prompt, cached parts included. (A named tuple: one
    is made per request, and a tuple is the cheapest record to make.)"""

    time: float  # Unix seconds
    requested_model: str
    served_model: Optional[str]
    provider: Optional[str]
    client: Optional[str]
    route: str
    status: int
    input_tokens: Optional[int] = None
    output_tokens: Optional[int] = None
    cache_read_tokens: Optional[int] = None
    cache_write_tokens: Optional[int] = None


class UsageLedger:
    """The counts of every recorded call, and their append-only files (see the module
    docstring). ``directory`` None keeps everything in memory only (tests, embedded)."""

    def __init__(self, directory: Optional[str], *, clock=time.time):
        self.directory = directory
        self.clock = clock
        self.started = clock()
        self.totals = {}  # type: Dict[Tuple[str, ...], List[int]]
        self.hours = {}  # type: Dict[int, Dict[Tuple[str, ...], List[int]]]
        self._pending = []  # type: List[str]
        self._warned = False
        if directory is not None:
            self._load()

    # -- recording

    def record(self, record: UsageRecord) -> None:
        """Count ``record`` and queue it for the next ``flush`` (which encodes it: the
        request that made it does not wait for that). A requested model name longer than
        ``MAX_MODEL_CHARS`` is cut short: a client chooses it, and it becomes a label."""
        if len(record.requested_model) > MAX_MODEL_CHARS:
            record = record._replace(requested_model=record.requested_model[:MAX_MODEL_CHARS] + "…")
        self._count(record)
        if self.directory is not None:
            self._pending.append(record)

    def _count(self, record: UsageRecord) -> None:
        labels = (record[1], record[2] or "", record[3] or "", record[4] or "", record[5], str(record[6]))
        if labels not in self.totals and len(self.totals) >= MAX_LABEL_SETS:
            labels = (OTHER,) * 4 + labels[4:]
        counts = (1, record[7] or 0, record[8] or 0, record[9] or 0, record[10] or 0)
        _add(self.totals, labels, counts)
        hour = int(record[0] // 3600)
        bucket = self.hours.get(hour)
        if bucket is None:
            bucket = self.hours[hour] = {}
            if len(self.hours) > MAX_HOURS:
                del self.hours[min(self.hours)]
        _add(bucket, labels, counts)

    # -- persistence

    def flush(self) -> None:
        """Append the queued lines to the current file (rotating it when full)."""
        if not self._pending or self.directory is None:
            return
        records, self._pending = self._pending, []
        lines = [_ENCODE(record._asdict()) for record in records]
        data = ("\n".join(lines) + "\n").encode("utf-8")
        try:
            os.makedirs(self.directory, exist_ok=True)
            path = self._current_file(len(data))
            with open(path, "ab") as handle:
                handle.write(data)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning(
                    "usage cannot be written; counting in memory only",
                    extra={"fields": {"directory": self.directory, "reason": exc.strerror or str(exc)}},
                )

    def _files(self) -> List[Tuple[int, str]]:
        """(number, path) of the usage files, oldest first."""
        found = []
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        for name in names:
            if name.startswith("usage-") and name.endswith(".jsonl") and name[6:-6].isdigit():
                found.append((int(name[6:-6]), os.path.join(self.directory, name)))
        return sorted(found)

    def _current_file(self, adding: int) -> str:
        files = self._files()
        number = files[-1][0] if files else 1
        path = os.path.join(self.directory, "usage-%d.jsonl" % number)
        try:
            size = os.path.getsize(path)
        except OSError:
            size = 0
        if size and size + adding > MAX_FILE_BYTES:
            number += 1
            path = os.path.join(self.directory, "usage-%d.jsonl" % number)
            for _, old in files[: max(0, len(files) + 1 - MAX_FILES)]:
                try:
                    os.remove(old)
                except OSError:
                    pass
        return path

    def _load(self) -> None:
        """Fold the records of the files into the tables (unreadable lines skipped: the
        last line of a killed process may be cut short)."""
        for _, path in self._files():
            try:
                with open(path, "rb") as handle:
                    for line in handle:
                        record = _parse(line)
                        if record is not None:
                            self._count(record)
            except OSError:
                continue

    # -- reading

    def report(self, since: Optional[datetime.datetime] = None) -> dict:
        """Totals and hourly buckets (from ``since``, whole hours, when given), the same
        counts split by label set, and what was served locally versus by Amp credits."""
        first_hour = None if since is None else int(since.timestamp() // 3600)
        hours = sorted(h for h in self.hours if first_hour is None or h >= first_hour)
        rows = {}  # type: Dict[Tuple[str, ...], List[int]]
        for hour in hours:
            for labels, counts in self.hours[hour].items():
                _add(rows, labels, counts)
        return {
            "since": None if since is None else since.isoformat(),
            "started": _iso(self.started),
            "totals": _named(_sum(rows.values())),
            "served_locally": _named(_sum(c for l, c in rows.items() if l[4] in LOCAL_ROUTES)),
            "amp_credits": _named(_sum(c for l, c in rows.items() if l[4] == CREDITS_ROUTE)),
            "by_labels": [dict(zip(_LABELS, labels), **_named(counts)) for labels, counts in sorted(rows.items())],
            "hours": [
                dict(hour=_iso(hour * 3600), **_named(_sum(self.hours[hour].values()))) for hour in hours
            ],
        }

    def metric_rows(self) -> List[Tuple[Tuple[str, ...], List[int]]]:
        """(labels, counts) of every label set since the ledger's history began."""
        return sorted(self.totals.items())


def _add(table, labels, counts) -> None:
    current = table.get(labels)
    if current is None:
        table[labels] = list(counts)
    else:
        for index, value in enumerate(counts):
            current[index] += value


def _sum(rows) -> List[int]:
    total = [0] * len(_COUNTS)
    for counts in rows:
        for index, value in enumerate(counts):
            total[index] += value
    return total


def _named(counts) -> dict:
    return dict(zip(_COUNTS, counts))


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat()


_TEXT_FIELDS = ("requested_model", "route")
_OPTIONAL_TEXT_FIELDS = ("served_model", "provider", "client")
_OPTIONAL_COUNT_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def _parse(line: bytes) -> Optional[UsageRecord]:
    """The record of one file line, or None for a line that is cut short or not one."""
    try:
        value = loads(line)
        record = UsageRecord(**value) if isinstance(value, dict) else None
    except (ValueError, TypeError):
        return None
    if record is None or not _well_typed(record):
        return None
    return record


def _well_typed(record: UsageRecord) -> bool:
    if not isinstance(record.time, (int, float)) or not _is_int(record.status):
        return False
    if not all(isinstance(getattr(record, name), str) for name in _TEXT_FIELDS):
        return False
    if not all(getattr(record, name) is None or isinstance(getattr(record, name), str) for name in _OPTIONAL_TEXT_FIELDS):
        return False
    return all(getattr(record, name) is None or _is_int(getattr(record, name)) for name in _OPTIONAL_COUNT_FIELDS)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
