"""Server-Sent Events: an incremental parser that survives any read boundary, and an encoder.

Strategy: the parser is a sans-IO state machine over bytes, built for the streaming hot path.
It keeps only the raw bytes of the event in progress (``_buf``) and two offsets into them:
``_start``, the first line not yet parsed, and ``_scan``, where the next search resumes.
A search never restarts from the start of the event and no buffer is copied per line, so
parsing is linear in the input however it is split.

- Fast path, for chunks without ``\\r`` (what real providers send): events end at ``\\n\\n``,
  found with ``bytes.find``; an event's lines are decoded with one ``decode`` and one
  ``split``. A chunk's unfinished tail waits in ``_buf``.
- General path, for chunks with ``\\r``: lines are found one by one with a regex and end
  in ``\\r\\n``, ``\\n`` or ``\\r`` (WHATWG HTML §9.2.5). A ``\\r`` that ends a chunk may be
  the first half of ``\\r\\n``; ``_skip_lf`` remembers it so a ``\\n`` opening the next
  chunk completes that line ending instead of reading as a blank line.
- Lines are decoded only once complete, and ``\\r``/``\\n`` never occur inside a UTF-8
  sequence, so a character split across reads is never mangled.
- ``Event.raw`` keeps the bytes exactly as received. Bytes that belong to no event (blank
  lines before an event's first line, a leading byte-order mark, the ``\\n`` completing a
  ``\\r`` that ended the previous event at a chunk boundary) are carried at the start of the
  next event's ``raw``. An event is returned as soon as its blank line arrives, never held
  back waiting for more input, so concatenating every ``raw`` from ``feed`` and ``flush``
  reproduces the input byte for byte.

Field rules (WHATWG HTML §9.2.6): ``name:value`` with one optional space after the colon;
a line without a colon is a field with an empty value; lines starting with ``:`` are
comments; ``data`` lines are joined with ``\\n``; ``id`` values containing NUL are ignored;
``retry`` must be ASCII digits; unknown fields are ignored.
"""

import re
from typing import List, Optional

__all__ = ["Event", "SSEParser", "encode_event"]

_LF = 0x0A
_CR = 0x0D
_BOM = b"\xef\xbb\xbf"
# One line ending: CRLF, lone CR or lone LF (WHATWG HTML §9.2.5 "end-of-line").
_LINE_END = re.compile(rb"\r\n?|\n")
_TEXT_LINE_END = re.compile("\r\n|\r|\n")


class Event:
    """One dispatched event.

    ``raw`` is the event exactly as received, terminating blank line included (for the
    last event returned by :meth:`SSEParser.flush`, whatever arrived). ``event``, ``data``,
    ``id`` and ``retry`` are ``None`` when the event carries no such field; ``data`` is the
    ``data`` lines joined by ``"\\n"``. ``comment_only`` is true for events made only of
    comment lines (keep-alive pings).
    """

    __slots__ = ("raw", "event", "data", "id", "retry", "comment_only")

    def __init__(self, raw, event=None, data=None, id=None, retry=None, comment_only=False):
        self.raw = raw  # type: bytes
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

    __slots__ = (
        "_buf",
        "_start",
        "_scan",
        "_skip_lf",
        "_bom_pending",
        "_event",
        "_data",
        "_id",
        "_retry",
        "_nlines",
        "_nfields",
    )

    def __init__(self):
        self._buf = bytearray()  # raw bytes of the event in progress, from its first byte
        self._start = 0  # offset in _buf of the first line not yet parsed
        self._scan = 0  # offset in _buf where the next search for a line ending resumes
        self._skip_lf = False  # the last byte seen was a CR line ending
        self._bom_pending = True  # nothing seen yet: a byte-order mark may open the stream
        self._reset_fields()

    def _reset_fields(self):
        self._event = None
        self._data = []
        self._id = None
        self._retry = None
        self._nlines = 0
        self._nfields = 0

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
        if self._skip_lf or b"\r" in chunk:
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
            for line in _LINE_END.split(bytes(buf[self._start :])):
                if line:
                    self._parse_line(line)
            events.append(self._dispatch(buf))
        self._buf = bytearray()
        self._start = self._scan = 0
        self._skip_lf = False
        self._bom_pending = True
        self._reset_fields()
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
        """Chunks without CR: events end at the first blank line, found with ``find``."""
        if self._buf:
            data = self._buf
            data += chunk
        else:
            data = chunk
        n = len(data)
        events = []
        begin = 0  # first byte of the event in progress
        start = self._start  # first unparsed line; invariant: no blank line before it
        scan = self._scan
        while True:
            # A blank line at the start of the unparsed region ends the event, or is
            # filler carried into the next event's raw when no line came before it.
            while start < n and data[start] == _LF:
                start += 1
                if self._nlines:
                    events.append(self._dispatch(data[begin:start]))
                    begin = start
            if scan < start:
                scan = start
            i = data.find(b"\n\n", scan)
            if i < 0:
                break
            self._parse_block(data[start:i])
            start = scan = i + 1  # the blank line at i + 1 is handled at the loop top
        if data is chunk:
            self._buf = bytearray(data[begin:])
        elif begin:
            del data[:begin]
        self._start = start - begin
        # The last byte may be the first LF of a blank line that the next chunk completes.
        self._scan = max(start, n - 1) - begin
        return events

    def _feed_general(self, chunk):
        """Chunks with CR (or after a chunk that ended in CR): one line ending at a time."""
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
        for match in _LINE_END.finditer(buf, pos):
            line_start, line_end = match.span()
            if line_start == pos:
                if self._nlines:
                    events.append(self._dispatch(buf[begin:line_end]))
                    begin = line_end
            else:
                self._parse_line(buf[pos:line_start])
            pos = line_end
            if line_end == end and buf[line_start] == _CR and line_end - line_start == 1:
                self._skip_lf = True
        if begin:
            del buf[:begin]
        self._start = pos - begin
        self._scan = len(buf)
        return events

    def _parse_block(self, block):
        """Apply a run of complete, non-blank LF-separated lines (one decode, one split)."""
        self._apply_lines(block.decode("utf-8", "replace").split("\n"))

    def _parse_line(self, raw_line):
        """Apply one complete, non-blank line given as bytes."""
        self._apply_lines((raw_line.decode("utf-8", "replace"),))

    def _apply_lines(self, lines):
        """Apply decoded, non-blank lines to the event in progress (one call per event
        on the fast path: this loop is the parser's innermost one)."""
        self._nlines += len(lines)
        data = self._data
        for line in lines:
            if line[0] == ":":
                continue  # comment
            self._nfields += 1
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
                self._event = value
            elif name == "id":
                if "\x00" not in value:
                    self._id = value
            elif name == "retry":
                if value.isdigit() and value.isascii():
                    self._retry = int(value)

    def _dispatch(self, raw):
        """Build the event from the fields gathered so far and start a new one."""
        data = self._data
        event = Event(
            bytes(raw),
            self._event,
            "\n".join(data) if data else None,
            self._id,
            self._retry,
            self._nfields == 0 and self._nlines > 0,
        )
        # _reset_fields inlined: this runs once per event on the hot path.
        self._event = self._id = self._retry = None
        self._data = []
        self._nlines = self._nfields = 0
        return event


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

    ``feed(chunk)`` returns every complete event the stream holds so far, as one bytes
    run ending at the last blank line (``b""`` while none is complete), and keeps the
    rest. A relay that only needs to look inside a few events checks the run for cheap
    markers and passes it on as it came, which keeps a 200-event stream of deltas at
    memcpy speed. Streams with CR line endings are for ``SSEParser``: ``feed`` raises
    ``ValueError`` on a chunk holding ``\\r`` so the caller can switch (``flush`` first).
    """

    __slots__ = ("_pending",)

    def __init__(self):
        self._pending = b""

    def feed(self, chunk):
        if b"\r" in chunk:
            raise ValueError("CR line endings: use SSEParser")
        data = self._pending + chunk if self._pending else chunk
        end = data.rfind(b"\n\n")
        if end < 0:
            self._pending = data
            return b""
        end += 2
        self._pending = data[end:]
        return data[:end]

    def flush(self):
        """What is left: an unterminated last event (or nothing)."""
        rest, self._pending = self._pending, b""
        return rest
