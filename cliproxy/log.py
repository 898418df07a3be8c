"""Logging setup: one line per record, as text or JSON, on stderr.

Strategy: modules log through ``logging.getLogger("cliproxy.<module>")`` and pass
structured fields with ``extra={"fields": {...}}``; the formatter appends them as
``key=value`` pairs (text) or object members (JSON). Callers never put secrets into a
message or a field: ``cliproxy.masking`` exists for the few places that must mention one.

The config's ``debug`` can change while the process runs (a reload, the management API):
``apply_debug`` then moves the ``cliproxy`` loggers to DEBUG, or back to the level the
process started with, which ``setup`` records.
"""

import json
import logging
import re
import sys
import time

LEVELS = ("debug", "info", "warning", "error")

ROOT_LOGGER = "cliproxy"

# The level ``apply_debug(False)`` returns to; None until ``setup`` (or the first
# ``apply_debug``) records it.
_base_level = None


# Control characters (C0, DEL, C1): anything a client controls (model names, paths,
# header values) may hold them, and written raw they move a terminal's cursor, change its
# colours or fake a new log line (SPEC §4). They are written as ``\xNN`` instead.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def escape_controls(text):
    """``text`` with every control character written as ``\\xNN``."""
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(lambda match: "\\x%02x" % ord(match.group()), text)


def _render_value(value):
    text = escape_controls(str(value))
    if not text or any(c in text for c in ' "='):
        return json.dumps(text, ensure_ascii=False)
    return text


class TextFormatter(logging.Formatter):
    """``2026-11-21T05:54:39.123Z INFO cliproxy.app message key=value ...``"""

    def format(self, record):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = "%s.%03dZ %s %s %s" % (
            stamp,
            int(record.msecs),
            record.levelname,
            record.name,
            escape_controls(record.getMessage()),
        )
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + " ".join(
                "%s=%s" % (key, _render_value(value))
                for key, value in fields.items()
                if value is not None
            )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, msg, then the record's fields."""

    def format(self, record):
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + ".%03dZ" % int(record.msecs),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": escape_controls(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if fields:
            for key, value in fields.items():
                if value is not None:
                    # JSON escapes C0 controls itself, but not DEL and C1 (ensure_ascii off).
                    entry[key] = escape_controls(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup(level="info", fmt="text", stream=None, base=None):
    """Route every ``cliproxy.*`` logger to ``stream`` (stderr) in the given format, at
    ``level``.

    ``base`` is the level the process goes back to when the config's ``debug`` is turned
    off (the command line's ``--log-level``). Without it: ``level``, or ``info`` when
    ``level`` is ``debug``, since a process starts at debug because its config asks.
    """
    global _base_level
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger(ROOT_LOGGER)
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
    if base is None:
        base = "info" if level.lower() == "debug" else level
    _base_level = logging.getLevelName(base.upper())
    return root


def apply_debug(debug):
    """Put the ``cliproxy`` loggers at DEBUG when ``debug`` is true, else back at the
    level the process started with. Call it when a config swap changes ``debug``."""
    global _base_level
    root = logging.getLogger(ROOT_LOGGER)
    if _base_level is None:  # ``setup`` never ran (embedded, tests): keep what is there
        _base_level = root.level
    root.setLevel(logging.DEBUG if debug else _base_level)
