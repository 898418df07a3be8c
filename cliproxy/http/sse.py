"""Server-Sent Events: incremental parsers that survive any read boundary, and an encoder.

Strategy: the parser is a sans-IO state machine over bytes, built for the streaming hot path.
It keeps only the raw bytes of the event in progress (``_buf``), two offsets into them
(``_start``, the first line not yet parsed, and ``_scan``, where the next search resumes)
and the lines of that event parsed so far. A search never restarts from the start of the
event and no buffer is copied per line, so parsing is linear in the input however it is
split.

- Fast path, for chunks without ``\\r`` (what most providers send): the complete events
  are the pieces between blank lines, cut with one ``split``; each is decoded and parsed
  in one go (one ``data:`` line, or an ``event:`` line and one, need no more than two
  slices). A chunk's unfinished tail waits in ``_buf``, unparsed until it completes.
- General path, for chunks with ``\\r`` (and for an event whose first lines came so):
  lines are found one by one with a regex and end in ``\\r\\n``, ``\\n`` or ``\\r``
  (WHATWG HTML §9.2.5). A ``\\r`` that ends a chunk may be the first half of ``\\r\\n``;
  ``_skip_lf`` remembers it so a ``\\n`` opening the next chunk completes that line ending
  instead of reading as a blank line.
- Lines are decoded only once complete, and ``\\r``/``\\n`` never occur inside a UTF-8
  sequence, so a character split across reads is never mangled.
- ``Event.raw`` keeps the bytes exactly as received. Bytes that belong to no event (blank
  lines before an event's first line, a leading byte-order mark, the ``\\n`` completing a
  ``\\r`` that ended the previous event at a chunk boundary) are carried at the start of the
  next event's ``raw``. An event is returned as soon as its blank line arrives, never held
  back waiting for more input, so concatenating every ``raw`` from ``feed`` and ``flush``
  reproduces the input byte for byte.

Two lighter tools serve callers that need less: ``EventRuns`` cuts a stream into runs of
whole events without parsing them (a relay that passes most events on as received), and
``FieldParser`` gives events without their raw bytes (a translation, which reads each
event's ``data``), decoding a run of events at once.

Field rules (WHATWG HTML §9.2.6): ``name:value`` with one optional space after the colon;
a line without a colon is a field with an empty value; lines starting with ``:`` are
comments; ``data`` lines are joined with ``\\n``; ``id`` values containing NUL are ignored;
``retry`` must be ASCII digits; unknown fields are ignored.
"""

import re
from typing import List, Optional, Tuple, Union

__all__ = [
    "Event",
    "EventRuns",
    "FieldParser",
    "SSEParser",
    "encode_event",
    "event_frame",
    "next_event",
    "run_events",
    "text_events",
]

_LF = 0x0A
_CR = 0x0D
_BOM = b"\xef\xbb\xbf"
# One line ending: CRLF, lone CR or lone LF (WHATWG HTML §9.2.5 "end-of-line").
_LINE_END = re.compile(rb"\r\n?|\n")
_TEXT_LINE_END = re.compile("\r\n|\r|\n")


class Event:
    """One dispatched event.

    ``raw`` is the event exactly as received, terminating blank line included (for the
    last event returned by :meth:`SSEParser.flush`, whatever arrived); ``None`` from a
    ``FieldParser``, which keeps no bytes. ``event``, ``data``,
    ``id`` and ``retry`` are ``None`` when the event carries no such field; ``data`` is the
    ``data`` lines joined by ``"\\n"``. ``comment_only`` is true for events made only of
    comment lines (keep-alive pings).
    """

    __slots__ = ("raw", "event", "data", "id", "retry", "comment_only")

    def __init__(self, raw, event=None, data=None, id=None, retry=None, comment_only=False):
        self.raw = raw  # type: Optional[bytes]
        self.event = event  # type: Optional[str]
        self.data = data  # type: Optional[str]
        self.id = id  # type: Optional[str]
        self.retry = retry  # type: Optional[int]
        self.comment_only = comment_only  # type: bool

    def fields(self):
        """The parsed fields as a tuple ``(event, data, id, retry, comment_only)``."""
        return (self.event, self.data, self.id, self.retry, self.comment_only)

    def __eq__(self, other):
        if not isinstance(other, Event):
            return NotImplemented
        return self.raw == other.raw and self.fields() == other.fields()

    def __ne__(self, other):
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = None

    def __repr__(self):
        return "Event(event=%r, data=%r, id=%r, retry=%r, comment_only=%r, raw=%r)" % (
            self.event,
            self.data,
            self.id,
            self.retry,
            self.comment_only,
            self.raw,
        )


class SSEParser:
    """Incremental SSE parser: feed bytes split anywhere, get whole events back."""

    __slots__ = ("_buf", "_start", "_scan", "_skip_lf", "_bom_pending", "_lines")

    def __init__(self, stream_start=True):
        """``stream_start``: the first byte fed is the stream's first (a byte-order mark
        may open it); False for a parser taking a stream over in the middle."""
        self._buf = bytearray()  # raw bytes of the event in progress, from its first byte
        self._start = 0  # offset in _buf of the first line not yet parsed
        self._scan = 0  # offset in _buf where the next search for a line ending resumes
        self._skip_lf = False  # the last byte seen was a CR line ending
        self._bom_pending = stream_start  # nothing seen yet: a byte-order mark may open it
        self._lines = []  # type: List[str]  # the general path's parsed lines of the event in progress

    def feed(self, chunk):
        """Consume ``chunk`` and return the events it completed, in order (maybe none).

        Never raises on malformed input: invalid UTF-8 decodes with U+FFFD, unknown
        fields and malformed ``retry`` values are ignored.
        """
        if not chunk:
            return []
        if self._bom_pending:
            chunk = self._take_bom(bytes(chunk))
            if not chunk:
                return []
        if self._skip_lf or self._lines or b"\r" in chunk:
            return self._feed_general(chunk)
        return self._feed_fast(chunk)

    def flush(self):
        """End of stream: return the unterminated last event, if any bytes are pending.

        Its ``raw`` is exactly the pending bytes (possibly without a final line ending, or
        only blank lines); its fields are parsed from every pending line, the incomplete
        last one included. The parser is reset afterwards.
        """
        buf = self._buf
        events = []
        if buf:
            lines = self._lines
            for line in _LINE_END.split(bytes(buf[self._start :])):
                if line:
                    lines.append(line.decode("utf-8", "replace"))
            events.append(_event(bytes(buf), lines))
        self._buf = bytearray()
        self._start = self._scan = 0
        self._skip_lf = False
        self._bom_pending = True
        self._lines = []
        return events

    def _take_bom(self, chunk):
        """Hold back a possible byte-order mark at the stream start; return what to parse.

        The mark (WHATWG: one leading U+FEFF is ignored) is kept in ``_buf`` as bytes that
        belong to the first event's raw but are never parsed.
        """
        head = bytes(self._buf) + chunk
        if len(head) < len(_BOM) and _BOM.startswith(head):
            self._buf = bytearray(head)
            return b""
        self._bom_pending = False
        if head.startswith(_BOM):
            self._buf = bytearray(_BOM)
            self._start = self._scan = len(_BOM)
            return head[len(_BOM) :]
        self._buf = bytearray()
        return head

    def _feed_fast(self, chunk):
        """Chunks without CR, while no line of the event in progress has been parsed:
        the pieces between blank lines are whole events (one ``split``), each parsed in
        one go; what follows the last blank line waits in ``_buf``."""
        if self._buf:
            data = self._buf
            data += chunk
        else:
            data = chunk
        start = self._start
        if data.find(b"\n\n", self._scan) < 0:
            # No event ends yet: next time, search only from the last byte (it may be the
            # first LF of a blank line).
            if data is chunk:
                self._buf = bytearray(chunk)
            self._scan = max(start, len(data) - 1)
            return []
        events, begin, end = _whole_events(data, start)
        if data is chunk:
            self._buf = bytearray(data[begin:])
        elif begin:
            del data[:begin]
        # Blank lines after the last event are filler: parsing resumes after them.
        self._start = end - begin
        self._scan = max(self._start, len(self._buf) - 1)
        return events

    def _feed_general(self, chunk):
        """Chunks with CR (or after a chunk that ended in CR, or in the middle of an
        event whose first lines came so): one line ending at a time."""
        buf = self._buf
        buf += chunk
        pos = self._start
        if self._skip_lf:
            self._skip_lf = False
            if buf[pos] == _LF:
                pos += 1  # second half of a CRLF split across reads, not a blank line
        end = len(buf)
        events = []
        begin = 0
        lines = self._lines
        for match in _LINE_END.finditer(buf, pos):
            line_start, line_end = match.span()
            if line_start == pos:
                if lines:
                    events.append(_event(bytes(buf[begin:line_end]), lines))
                    lines = self._lines = []
                    begin = line_end
            else:
                lines.append(buf[pos:line_start].decode("utf-8", "replace"))
            pos = line_end
            if line_end == end and buf[line_start] == _CR and line_end - line_start == 1:
                self._skip_lf = True
        if begin:
            del buf[:begin]
        self._start = pos - begin
        self._scan = len(buf)
        return events


def _event(raw, lines):
    # type: (bytes, List[str]) -> Event
    """The event made of ``lines`` (decoded, none blank), whose bytes are ``raw``."""
    # The two shapes providers send, in full: one data line, or an event line and one.
    count = len(lines)
    if count == 1:
        if lines[0][:6] == "data: ":
            return Event(raw, None, lines[0][6:])
    elif count == 2 and lines[0][:7] == "event: " and lines[1][:6] == "data: ":
        return Event(raw, lines[0][7:], lines[1][6:])
    event = id = retry = None
    data = []  # type: List[str]
    fields = 0
    for line in lines:
        if line[0] == ":":
            continue  # comment
        fields += 1
        colon = line.find(":")
        if colon < 0:
            name, value = line, ""
        else:
            name = line[:colon]
            value = line[colon + 1 :]
            if value[:1] == " ":
                value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            if "\x00" not in value:
                id = value
        elif name == "retry":
            if value.isdigit() and value.isascii():
                retry = int(value)
    return Event(raw, event, "\n".join(data) if data else None, id, retry, fields == 0 and len(lines) > 0)


def encode_event(data, event=None, id=None):
    # type: (str, Optional[str], Optional[str]) -> bytes
    """Serialise one event as UTF-8 bytes ending in a blank line.

    Each line of ``data`` (split at CRLF, CR or LF) becomes its own ``data:`` line, so the
    receiver reassembles ``data`` exactly. Raises ``ValueError`` when ``event`` or ``id``
    contains a line break (it would end the field early and corrupt the stream).
    """
    parts = []  # type: List[str]
    if event is not None:
        _check_single_line("event", event)
        parts.append("event: %s\n" % event)
    if id is not None:
        _check_single_line("id", id)
        parts.append("id: %s\n" % id)
    for line in _TEXT_LINE_END.split(data):
        parts.append("data: %s\n" % line)
    parts.append("\n")
    return "".join(parts).encode("utf-8")


def _check_single_line(name, value):
    if "\n" in value or "\r" in value:
        raise ValueError("SSE %s field must not contain a line break" % name)


class EventRuns:
    """Cuts an LF-delimited SSE stream into runs of whole events without parsing them.

    ``feed(chunk)`` (bytes) returns every complete event the stream holds so far, as
    one bytes run ending at the last blank line (``b""`` while none is complete; the
    chunk itself when it is whole events and nothing was kept), and keeps the rest. A
    relay that only needs to look inside a few events checks the run for cheap markers
    and passes it on as it came, which keeps a 200-event stream of deltas at memcpy
    speed. Streams with CR line endings are for ``SSEParser``: ``feed`` raises
    ``ValueError`` on a chunk holding ``\\r`` so the caller can switch (``flush`` first).
    The rest is searched only where a blank line may have appeared since, so an event
    arriving in many reads costs time linear in its size.
    """

    __slots__ = ("_pending", "_scan")

    def __init__(self):
        self._pending = bytearray()  # the rest: holds no blank line
        self._scan = 0  # where a blank line may start in _pending + the next chunk

    def feed(self, chunk):
        if b"\r" in chunk:
            raise ValueError("CR line endings: use SSEParser")
        pending = self._pending
        if not pending and chunk.endswith(b"\n\n"):
            return chunk  # whole events only, the usual read: nothing to keep
        pending += chunk
        end = pending.rfind(b"\n\n", self._scan) + 2
        if end > 1:
            run = bytes(pending[:end])
            del pending[:end]
        else:
            run = b""
        # The last byte may be the first LF of a blank line the next chunk completes.
        self._scan = max(len(pending) - 1, 0)
        return run

    def flush(self):
        """What is left: an unterminated last event (or nothing)."""
        rest = bytes(self._pending)
        self._pending = bytearray()
        self._scan = 0
        return rest


def run_events(run):
    # type: (bytes) -> List[Event]
    """The events of ``run``, whole LF-delimited events each ending in a blank line (as
    ``EventRuns.feed`` gives them) read from a stream's start: what a fresh
    ``SSEParser`` returns for the same bytes, raw bytes included, without its state.
    Blank lines after the last event belong to no event."""
    # A byte-order mark opening the stream is in the first event's raw only.
    return _whole_events(run, len(_BOM) if run[:3] == _BOM else 0)[0]


def _whole_events(data, start):
    # type: (Union[bytes, bytearray], int) -> Tuple[List[Event], int, int]
    """The events of ``data`` from ``start`` (the first byte to parse) to its last blank
    line, each with its raw from the end of the one before (from 0 for the first), and
    ``(begin, end)``: where the next event's raw begins, and where the parsed part ends
    (blank lines after the last event are filler, to be skipped)."""
    pieces = (data[start:] if start else data).split(b"\n\n")
    pieces.pop()  # after the last blank line: the beginning of the next event
    events = []
    begin = 0  # the first byte of the next event's raw
    end = start  # the end of the pieces seen so far, their blank line included
    for piece in pieces:
        end += len(piece) + 2
        if piece[:1] == b"\n":
            piece = piece[1:]  # a blank line before the event: filler, in raw only
        if piece:
            events.append(_event(bytes(data[begin:end]), piece.decode("utf-8", "replace").split("\n")))
            begin = end
    return events, begin, end


class FieldParser:
    """SSE events for a consumer that needs their fields but not their bytes (a
    translated stream): ``feed`` and ``flush`` as ``SSEParser``'s, the same events with
    the same fields at the same reads, but an event's ``raw`` is not kept (``None``;
    bytes after a switch, see below), and blank lines that end a stream make no empty
    event at ``flush``.

    An LF-delimited stream (what providers send; CRLF line endings are made LF first) is
    cut into runs of whole events (``EventRuns``); each run is decoded once. ``feed``
    splits it at its blank lines (an event of one ``data: `` line, most of a stream, is
    its data); ``feed_text`` hands it over whole, for a reader that can go through
    events it knows by their text without cutting them (``translate.codecs.shapes``)
    and takes the others one at a time (``next_event``). A stream that opens with a byte-order mark, or sends a CR outside a CRLF within one
    chunk, goes through an ``SSEParser`` from there on.
    """

    __slots__ = ("_runs", "_parser", "_started")

    def __init__(self):
        self._runs = EventRuns()
        self._parser = None  # type: Optional[SSEParser]  # once the stream needs it
        self._started = False  # a first byte was seen (a byte-order mark can only open)

    def feed(self, chunk):
        """Consume ``chunk`` and return the events it completed, in order (maybe none)."""
        text, events = self.feed_text(chunk)
        return text_events(text) if text else events

    def feed_text(self, chunk):
        """Consume ``chunk``; return ``(text, events)``: the whole LF-delimited events it
        completed as one decoded text (``""`` if none; read it with ``next_event`` or
        ``text_events``), or, once the stream needed an ``SSEParser``, the events that
        completed (``[]`` if none). At most one of the two holds anything."""
        if self._parser is not None:
            return "", self._parser.feed(chunk)
        if not chunk:
            return "", []
        if not self._started:
            self._started = True
            if chunk[0] == _BOM[0]:
                self._parser = SSEParser()
                return "", self._parser.feed(chunk)
        if b"\r" in chunk:
            # CRLF line endings (Gemini's) mean what LF ones do. A lone CR, or a CR that
            # ends the chunk (maybe the first half of a CRLF), is for the parser.
            lf_chunk = chunk.replace(b"\r\n", b"\n")
            if b"\r" in lf_chunk:
                self._parser = SSEParser(stream_start=False)
                return "", self._parser.feed(self._runs.flush() + chunk)
            chunk = lf_chunk
        run = self._runs.feed(chunk)
        # One decode for the run decodes each event alike: UTF-8 sequences never hold an
        # LF, and an invalid one is replaced the same whatever follows.
        return (run.decode("utf-8", "replace") if run else ""), []

    def flush(self):
        """End of stream: the unterminated last event, if any bytes are pending (as
        ``SSEParser.flush``)."""
        if self._parser is not None:
            return self._parser.flush()
        rest = self._runs.flush()
        if not rest:
            return []
        return [_event(None, [line for line in rest.decode("utf-8", "replace").split("\n") if line])]


def text_events(text):
    # type: (str) -> List[Event]
    """The events of ``text``, whole LF-delimited events each ending in a blank line (as
    ``FieldParser.feed_text`` gives them), without their raw bytes."""
    events = []
    for block in text.split("\n\n"):
        if block[:6] == "data: " and "\n" not in block:
            events.append(Event(None, None, block[6:]))
        elif block:
            event = _block_event(block)
            if event is not None:
                events.append(event)
    return events


def next_event(text, position):
    # type: (str, int) -> Tuple[Optional[Event], int]
    """The event of ``text`` (as for ``text_events``) that starts at ``position``, and
    where the next one starts; None for the event when only filler was there."""
    end = text.find("\n\n", position)
    if end < 0:  # a blank line's second LF, after the last event's own blank line
        return _block_event(text[position:]), len(text)
    return _block_event(text[position:end]), end + 2


def _block_event(block):
    # type: (str) -> Optional[Event]
    if block[:1] == "\n":
        block = block[1:]  # a blank line before the event: filler
    return _event(None, block.split("\n")) if block else None


def event_frame(event):
    # type: (Event) -> Optional[Tuple[str, str]]
    """``(before, after)``: the text ``text_events`` reads as an event like ``event``
    whatever its data is ``before + data + after`` for data without line breaks; None
    when ``event`` has fields other than ``event`` and one line of ``data``."""
    if event.id is not None or event.retry is not None or event.comment_only or event.data is None:
        return None
    name = event.event
    if name is None:
        return "data: ", "\n\n"
    if "\n" in name or "\r" in name or name[:1] == " ":
        return None
    return "event: " + name + "\ndata: ", "\n\n"
