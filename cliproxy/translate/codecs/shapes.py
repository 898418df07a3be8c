"""Reading a stream's delta events without parsing them: the shape of an event seen once.

Strategy: most events of a streamed answer are deltas that differ from the one before
only in one JSON string, the text they add (an OpenAI-compatible server's chunks carry
the same id, model, created time and structure every time), and maybe in a string the
reader never reads (the random ``obfuscation`` OpenAI pads each chunk with). A stream
reader that has parsed such an event, and found that its whole effect is that one
string, learns its shape: the JSON text around that string and around the ignored ones.
A later event that is exactly that text around other strings is that event with other
strings, so reading it takes a few comparisons and decoding the strings with ``json``'s
own C string scanner, instead of parsing the whole event into dicts and walking them.

Proof, once per shape: each string's place in the text is found from its key, then the
text is parsed again with every such string changed, and must give the same document
with those values changed. Parsing gives a string token the same place in the document
whatever it holds, so a text that matches the shape parses to the shape's document with
its strings in those places; the reader acts on it as it would on the whole parse. An
event that does not match goes the general way, unchanged.

Given the event's SSE frame when it learns (``data: `` before, a blank line after; an
``event:`` line too for Anthropic's streams), a shape also reads a read's decoded text of
whole events (``scan_text``): from an event's start, the frame and the text before the
first string, the strings, the text after and the blank line, compared in place, so a
run of such events is read without cutting the text into events at all.

A shape costs a second parse to learn, so a reader learns one from the first plain delta
event, and again only after its shape served at least one event and then stopped matching
(a server whose ``created`` field ticks every second, a new block). A shape that never
served shows a stream whose events differ in more than the reader says it may ignore:
nothing more is learnt.
"""

import json.decoder
import re
from typing import List, Optional, Sequence, Tuple

from cliproxy.jsontext import loads

__all__ = ["DeltaShape"]

# json's string token reader: (the string, the offset after its closing quote) for a
# token whose opening quote is just before the given offset; ValueError for anything
# json.loads would refuse (a bad escape, a raw control character, no closing quote).
_scanstring = json.decoder.scanstring

_WHITESPACE = "[ \t\n\r]*"  # JSON's

Place = Tuple[dict, str]  # a string of a document: the dict holding it and its key


class DeltaShape:
    """A stream reader's shape memory (see the module docstring): the shape of its last
    plain delta event, if any, and ``tag``, the reader's note of what its open string
    is. ``learning`` says whether the reader should offer the next plain event to
    ``learn``."""

    __slots__ = ("tag", "learning", "_prefix", "_suffix", "_start", "_after", "_walk", "_head", "_tail", "_text_walk")

    def __init__(self):
        self.tag = None
        self.learning = True
        self._prefix = None  # type: Optional[str]  # up to the first string's opening quote, included
        self._suffix = ""  # the text after the last string's closing quote
        self._start = 0  # len(_prefix)
        self._after = 0  # len(_suffix)
        # With ignored strings: (is the open string, the text up to the next string's
        # opening quote, included) for each string in order; None for the open string
        # alone.
        self._walk = None  # type: Optional[List[Tuple[bool, str]]]
        # The shape's event as text in its SSE frame: the text up to the first string's
        # opening quote (``_head``), and after the open string (``_tail``) or ``_walk``
        # ending in it (``_text_walk``); ``_head`` None when the shape has no frame.
        self._head = None  # type: Optional[str]
        self._tail = ""
        self._text_walk = None  # type: Optional[List[Tuple[bool, str]]]

    def match(self, text: str) -> Optional[str]:
        """The open string of ``text`` when ``text`` is the shape with some strings in
        their places (decoded as ``json.loads`` would), else None."""
        prefix = self._prefix
        if prefix is None or not text.startswith(prefix) or not text.endswith(self._suffix):
            return None
        try:
            if self._walk is None:
                value, end = _scanstring(text, self._start)
            else:
                value, end = _walk_strings(text, self._start, self._walk)
        except ValueError:
            return None
        if end != len(text) - self._after:  # the last string ends where the suffix starts
            return None
        self.learning = True  # this shape serves: learn its successor when it stops
        return value

    def scan_text(self, text: str, position: int) -> Tuple[List[str], int]:
        """Read the events of ``text`` (whole LF-delimited events, see
        ``cliproxy.http.sse.FieldParser.feed_text``) from ``position`` while each is this
        shape's event in its frame: (their non-empty open strings, in order; where the
        first other event starts, or the end). The same as ``match`` on each event's
        data, without cutting the text into events."""
        head = self._head
        if head is None or not text.startswith(head, position):
            return [], position
        first = position
        pieces = []
        scan = _scanstring
        skip = len(head)
        if self._text_walk is None:
            tail = self._tail
            after = len(tail)
            while text.startswith(head, position):
                try:
                    value, end = scan(text, position + skip)
                except ValueError:
                    break
                if not text.startswith(tail, end):
                    break
                if value:
                    pieces.append(value)
                position = end + after
        else:
            while text.startswith(head, position):
                try:
                    value, end = _walk_strings(text, position + skip, self._text_walk)
                except ValueError:
                    break
                if value:
                    pieces.append(value)
                position = end
        if position > first:
            self.learning = True
        return pieces, position

    def learn(self, text: str, document: dict, open_place: Place, tag, ignored: Sequence[Place] = (),
              frame: Optional[Tuple[str, str]] = None) -> None:
        """Take the shape of ``text``, whose parse is ``document``, open at the string
        ``open_place`` and ignoring the strings at ``ignored``; the reader promises that
        any strings there would leave the event's effect the open string alone, the one
        ``tag`` names. Without a proof of every place (an empty open string, a key
        written with escapes, an ignored key found twice) the reader is left with no
        shape. ``frame``: what comes before and after the data in the text of an event
        read as this one whatever its data (``cliproxy.http.sse.event_frame``), for
        ``scan_text``."""
        self.learning = False
        self._prefix = self._head = None
        container, key = open_place
        value = container.get(key)
        if not isinstance(value, str) or not value:
            return
        others = []
        for place in ignored:
            span = _ignored_span(text, place)
            if span is None:
                return
            others.append(span + (False, place))
        for candidate in _candidates(text, key, value):
            spans = sorted([candidate + (True, open_place)] + others, key=lambda span: span[0])
            if all(a[1] <= b[0] for a, b in zip(spans, spans[1:])) and _proven(text, document, spans):
                break
        else:
            return
        # Each string's text starts after its opening quote, which ends the text before.
        start, end = spans[0][0] + 1, spans[-1][1]
        if len(spans) == 1:
            self._walk = None
        else:
            nexts = [span[0] + 1 for span in spans[1:]] + [end]
            self._walk = [(span[2], text[span[1] : following]) for span, following in zip(spans, nexts)]
        self.tag = tag
        self._prefix, self._suffix = text[:start], text[end:]
        self._start, self._after = start, len(text) - end
        if frame is not None and "\n" not in text:
            self._frame(frame)

    def _frame(self, frame: Tuple[str, str]) -> None:
        before, after = frame
        self._head = before + self._prefix
        self._tail = self._suffix + after
        if self._walk is None:
            self._text_walk = None
        else:
            # The last string's "between" is empty: the suffix and the frame follow it.
            self._text_walk = self._walk[:-1] + [(self._walk[-1][0], self._tail)]


def _walk_strings(text: str, end: int, walk) -> Tuple[Optional[str], int]:
    """(the open string, the end of the walk) of ``text`` read from ``end`` along
    ``walk`` (``DeltaShape._walk`` or ``_text_walk``: each string, whether it is the open
    one, and the text between it and the next); ValueError where the text differs."""
    value = None
    for is_open, between in walk:
        read, end = _scanstring(text, end)
        if is_open:
            value = read
        if not text.startswith(between, end):
            raise ValueError("another text")
        end += len(between)
    return value, end


def _candidates(text: str, key: str, value: str):
    """(start, end) of each string token holding ``value`` after a ``"key":``."""
    for found in re.finditer('"%s"%s:%s"' % (re.escape(key), _WHITESPACE, _WHITESPACE), text):
        try:
            scanned, end = _scanstring(text, found.end())
        except ValueError:
            continue
        if scanned == value:
            yield found.end() - 1, end


def _ignored_span(text: str, place: Place) -> Optional[Tuple[int, int]]:
    """(start, end) of the string token of an ignored place: after the one ``"key":`` of
    the text (None when there is not exactly one, or it holds no string)."""
    container, key = place
    keys = list(re.finditer('"%s"%s:%s"' % (re.escape(key), _WHITESPACE, _WHITESPACE), text))
    if len(keys) != 1 or not isinstance(container.get(key), str):
        return None
    start = keys[0].end()
    try:
        return start - 1, _scanstring(text, start)[1]
    except ValueError:
        return None


def _proven(text: str, document: dict, spans) -> bool:
    """Whether each string token of ``spans`` is the value of its place and nothing
    else: with each changed (the open string emptied, the others lengthened), the text
    parses to the document with those values changed."""
    pieces = []
    last = 0
    saved = []
    for start, end, is_open, (container, key) in spans:
        old = container[key]
        new = "" if is_open else old + "x"
        pieces += (text[last:start], json.dumps(new))
        last = end
        saved.append((container, key, old))
        container[key] = new
    pieces.append(text[last:])
    try:
        return loads("".join(pieces)) == document
    except ValueError:
        return False
    finally:
        for container, key, old in reversed(saved):
            container[key] = old
