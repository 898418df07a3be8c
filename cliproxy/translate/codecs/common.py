"""What more than one codec needs: data URLs, tool-call ids, dropped-field logging, the
stream readers' base.

Strategy: small pure functions over strings and dicts; each codec keeps its own
protocol's tables and uses these for the few wire conventions protocols share.
"""

import json.encoder
import logging
import re
from typing import Iterable, Optional, Tuple

from cliproxy.config.model import Protocol
from cliproxy.http.sse import next_event, text_events
from cliproxy.translate.context import dumps

__all__ = ["EventReader", "data_url", "dumps", "json_string", "log_dropped", "parse_data_url", "safe_call_id"]

log = logging.getLogger("cliproxy.translate")

_DATA_URL = re.compile(r"data:([^;,]*)((?:;[^;,]*)*?);base64,(.*)\Z", re.DOTALL)
_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")

# The JSON string literal of a str, exactly as ``dumps`` writes it (non-ASCII kept):
# json's C encoder itself, without json.dumps's per-call encoder set-up. The stream
# writers' per-delta step; deltas are unique text, so no cache (``encode_json_value``'s
# would only churn).
json_string = json.encoder.encode_basestring


class EventReader:
    """The base of the codecs' stream readers, which define ``feed(event)``.
    ``feed_events`` reads a list of events in order; ``feed_text`` the events of a text
    of whole events (``cliproxy.http.sse.FieldParser.feed_text``), which a reader that
    knows some events by their text reads without cutting it into events."""

    def feed_events(self, events) -> None:
        feed = self.feed
        for event in events:
            feed(event)

    def feed_text(self, text: str) -> None:
        self.feed_events(text_events(text))


class ShapedEventReader(EventReader):
    """A stream reader that knows its delta events by their text (``self._shape``, a
    ``shapes.DeltaShape``): ``feed_text`` hands each run of them to ``_deltas(pieces)``
    (their strings, non-empty) without cutting it into events, while ``_scanning()``
    says such events may still come; every other event goes to ``feed``."""

    def _scanning(self) -> bool:
        raise NotImplementedError

    def _deltas(self, pieces) -> None:
        raise NotImplementedError

    def feed_text(self, text: str) -> None:
        scan = self._shape.scan_text
        position, size = 0, len(text)
        while position < size:
            if self._scanning():
                pieces, end = scan(text, position)
                if end > position:
                    if pieces:
                        self._deltas(pieces)
                    position = end
                    continue
            event, position = next_event(text, position)
            if event is not None:
                self.feed(event)


def data_url(media_type: Optional[str], data: str) -> str:
    """``data:<media_type>;base64,<data>`` (RFC 2397)."""
    return "data:%s;base64,%s" % (media_type or "application/octet-stream", data)


def parse_data_url(url: str) -> Optional[Tuple[str, str]]:
    """(media type, base64 data) of a base64 ``data:`` URL, or None for any other URL.
    Parameters other than ``base64`` (``;charset=…``) are ignored."""
    if not url.startswith("data:"):
        return None
    match = _DATA_URL.match(url)
    if match is None:
        return None
    return match.group(1) or "application/octet-stream", match.group(3)


def safe_call_id(call_id: str, prefix: str) -> str:
    """``call_id`` made acceptable where ids must match ``^[A-Za-z0-9_-]+$`` (Anthropic):
    other characters become ``_``; an empty id becomes ``prefix``. Deterministic, so a
    call and its result, written in the same request, still agree."""
    cleaned = _UNSAFE_ID_CHARS.sub("_", call_id)
    return cleaned or prefix


def log_dropped(protocol: Protocol, reading: bool, names: Iterable[str]) -> None:
    """One debug line naming the fields left out for want of a counterpart: of a client's
    ``protocol`` request being read (``reading``), or of the neutral model being written
    as a ``protocol`` request."""
    names = sorted(set(names))
    if names and log.isEnabledFor(logging.DEBUG):
        side = "client request" if reading else "provider request"
        log.debug(
            "fields without a counterpart dropped",
            extra={"fields": {"protocol": protocol.value, "side": side, "dropped": ",".join(names)}},
        )
