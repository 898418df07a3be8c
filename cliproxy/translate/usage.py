"""The provider's own token counts, read from answers that are relayed untranslated.

Strategy: a translated answer goes through the neutral model, whose ``usage`` events carry
the counts already. An answer of the client's own protocol is relayed as it came, mostly
without parsing, so its counts are picked out here at the least cost:

- a whole JSON answer: the value of its last usage key (``usage``, Gemini's
  ``usageMetadata``) is decoded alone, not the whole document (a key inside a JSON string
  has escaped quotes, so a raw match is a real key; the top-level one comes last in every
  protocol's answers);
- a stream: ``UsageTap`` looks at the runs of whole events the relay cuts anyway, reads
  the counts of the first event holding the usage key when it comes, and keeps the text of
  the last one, parsed only when asked, after the stream (Anthropic puts the input counts
  in ``message_start`` and the output in ``message_delta``; the others repeat or complete
  them in later events, whose counts replace earlier ones).

The counts become a neutral ``Usage`` through the protocol codec's ``read_usage``.
"""

import json
import re
from typing import Optional, Tuple

from cliproxy.config.model import Protocol
from cliproxy.translate.ir import Usage
from cliproxy.translate.translator import CODECS

__all__ = ["UsageTap", "usage_of_answer"]

_KEYS = {
    Protocol.CLAUDE: "usage",
    Protocol.OPENAI: "usage",
    Protocol.RESPONSES: "usage",
    Protocol.GEMINI: "usageMetadata",
}
# Where a stream event of each protocol holds its usage object, outside the top level.
_NESTED = {Protocol.CLAUDE: "message", Protocol.RESPONSES: "response"}
_decode = json.JSONDecoder().raw_decode


def usage_of_answer(protocol: Protocol, data: bytes) -> Optional[Usage]:
    """The usage of a whole JSON answer ``data`` of ``protocol``, or None when it holds
    none that decodes."""
    key = _QUOTED_KEYS[protocol]
    position = data.rfind(key)
    if position < 0:
        return None
    # Only the text from the key on is decoded: the key is ASCII, so it starts a
    # character, and a long answer is not decoded whole for its last few dozen bytes.
    text = data[position + len(key) :].decode("utf-8", "replace")
    match = _VALUE_START.match(text)
    if match is None:
        return None
    try:
        value, _ = _decode(text, match.end())
    except (ValueError, RecursionError):
        return None
    return CODECS[protocol].read_usage(value) if isinstance(value, dict) else None


_VALUE_START = re.compile(r"\s*:\s*")
_QUOTED_KEYS = {value: ('"%s"' % key).encode("ascii") for value, key in _KEYS.items()}


class UsageTap:
    """Keeps the stream events that carry usage (see the module docstring); ``take(run)``
    is given runs of whole SSE events, ``usage()`` reads them once the stream is over.

    The first such event is read when it arrives (once per stream) rather than kept: a
    stream may last minutes, and its ``message_start`` is the largest event it holds."""

    __slots__ = ("_protocol", "key", "_first_seen", "_first", "_last")

    def __init__(self, protocol: Protocol):
        self._protocol = protocol
        self.key = _QUOTED_KEYS[protocol]  # in every event to keep
        self._first_seen = False
        self._first = None  # type: Optional[Usage]  # the first event's counts
        self._last = None  # type: Optional[bytes]  # the latest event after the first

    def take(self, run: bytes) -> None:
        """Note the events of ``run`` (whole events, ``\\n\\n``-separated) that hold the
        usage key; call it only when ``self.key in run``."""
        last = run.rfind(self.key)
        if not self._first_seen:
            self._first_seen = True
            start, end = _event_span(run, run.find(self.key))
            self._first = self._event_usage(run[start:end])
            if last < end:
                return  # one event holds the key: it was the first
        start, end = _event_span(run, last)
        self._last = run[start:end]

    def usage(self) -> Optional[Usage]:
        """The counts of the kept events, later ones replacing earlier ones; None when
        no event carried any."""
        found = None
        for usage in (self._first, self._event_usage(self._last)):
            if usage is not None:
                if found is None:
                    found = Usage()
                found.merge(usage)
        return found

    def _event_usage(self, event: Optional[bytes]) -> Optional[Usage]:
        if event is None:
            return None
        data = _data_of(event)
        if data is None:
            return None
        try:
            value, _ = _decode(data)
        except (ValueError, RecursionError):
            return None
        if not isinstance(value, dict):
            return None
        key = _KEYS[self._protocol]
        usage = value.get(key)
        nested = _NESTED.get(self._protocol)
        if usage is None and nested is not None and isinstance(value.get(nested), dict):
            usage = value[nested].get(key)
        return CODECS[self._protocol].read_usage(usage) if isinstance(usage, dict) else None


def _event_span(run: bytes, offset: int) -> Tuple[int, int]:
    """Where the whole event of ``run`` that holds byte ``offset`` starts and ends."""
    start = run.rfind(b"\n\n", 0, offset)
    end = run.find(b"\n\n", offset)
    return (start + 2 if start >= 0 else 0), (end if end >= 0 else len(run))


def _data_of(event: bytes) -> Optional[str]:
    """The joined ``data:`` lines of one event's text, or None."""
    lines = []
    for line in event.decode("utf-8", "replace").replace("\r\n", "\n").split("\n"):
        if line.startswith("data:"):
            lines.append(line[6:] if line[5:6] == " " else line[5:])
    return "\n".join(lines) if lines else None
