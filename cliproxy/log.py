"""Logging setup: one line per record, as text or JSON, on stderr.

Strategy: modules log through ``logging.getLogger("cliproxy.<module>")`` and pass
structured fields with ``extra={"fields": {...}}``; the formatter appends them as
``key=value`` pairs (text) or object members (JSON). Callers never put secrets into a
message or a field: ``cliproxy.masking`` exists for the few places that must mention one.
"""

import json
import logging
import sys
import time

LEVELS = ("debug", "info", "warning", "error")


def _render_value(value):
    text = str(value)
    if not text or any(c in text for c in ' "=\n'):
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
            record.getMessage(),
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
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            for key, value in fields.items():
                if value is not None:
                    entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup(level="info", fmt="text", stream=None):
    """Route every ``cliproxy.*`` logger to ``stream`` (stderr) in the given format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("cliproxy")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
    return root
