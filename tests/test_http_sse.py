"""Tests for cliproxy.http.sse: events survive any read boundary, raw bytes are kept exactly."""

import json
import random
import re
import time

import pytest

from cliproxy.http.sse import (
    Event,
    EventRuns,
    FieldParser,
    SSEParser,
    encode_event,
    event_frame,
    next_event,
    run_events,
    text_events,
)


def _anthropic_stream():
    """A realistic Anthropic Messages stream with multi-byte UTF-8 text, LF line endings."""
    payloads = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_01",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5-20250929",
                "content": [],
                "usage": {"input_tokens": 12, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    for text in ("Héllo", " wörld ", "€ 5 ", "日本語", " 🙂", " done"):
        payloads.append(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": text},
            }
        )
    payloads += [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 9},
        },
        {"type": "message_stop"},
    ]
    events = []
    for payload in payloads:
        data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        events.append(("event: %s\ndata: %s\n\n" % (payload["type"], data)).encode("utf-8"))
    # a keep-alive comment in the middle, as Anthropic sends `event: ping` / proxies send `:`
    events.insert(3, b": keep-alive\n\n")
    return events


LF_EVENTS = _anthropic_stream()
LF_STREAM = b"".join(LF_EVENTS)
CRLF_STREAM = LF_STREAM.replace(b"\n", b"\r\n")
CR_STREAM = LF_STREAM.replace(b"\n", b"\r")
MIXED_STREAM = b"".join(
    event.replace(b"\n", (b"\r\n", b"\n", b"\r")[index % 3])
    for index, event in enumerate(LF_EVENTS)
)
VARIANTS = {"lf": LF_STREAM, "crlf": CRLF_STREAM, "cr": CR_STREAM, "mixed": MIXED_STREAM}


def _feed_all(parser, pieces):
    events = []
    for piece in pieces:
        events.extend(parser.feed(piece))
    return events + parser.flush()


def _meaningful(events):
    """Fields of the events that carry lines: drops a flush-time event holding only the LF
    that completes a CR terminator split from it (see the CR/LF boundary test)."""
    return [event.fields() for event in events if event.raw.strip(b"\r\n")]


def test_whole_stream_parses_into_the_anthropic_events():
    events = SSEParser().feed(LF_STREAM)
    assert [event.raw for event in events] == LF_EVENTS
    assert events[0].event == "message_start"
    assert json.loads(events[0].data)["message"]["model"] == "claude-sonnet-4-5-20250929"
    assert events[3].comment_only and events[3].data is None and events[3].event is None
    deltas = [e for e in events if e.event == "content_block_delta"]
    texts = [json.loads(e.data)["delta"]["text"] for e in deltas]
    assert "".join(texts) == "Héllo wörld € 5 日本語 🙂 done"
    assert events[-1].event == "message_stop"


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_line_ending_variant_gives_the_same_fields(name):
    expected = [event.fields() for event in SSEParser().feed(LF_STREAM)]
    assert [event.fields() for event in SSEParser().feed(VARIANTS[name])] == expected


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_split_at_every_byte_boundary_reassembles_the_same_events(name):
    stream = VARIANTS[name]
    reference = SSEParser().feed(stream)
    assert len(reference) == len(LF_EVENTS)
    expected = [event.fields() for event in reference]
    for split in range(len(stream) + 1):
        events = _feed_all(SSEParser(), [stream[:split], stream[split:]])
        assert b"".join(event.raw for event in events) == stream, split
        assert _meaningful(events) == expected, split


@pytest.mark.parametrize("name", ["lf", "crlf"])
def test_split_at_every_byte_boundary_keeps_each_event_raw_exact(name):
    # Outside the CR|LF split of a terminator, each event's raw is exactly its input bytes.
    stream = VARIANTS[name]
    reference = [event.raw for event in SSEParser().feed(stream)]
    for split in range(len(stream) + 1):
        if split >= 3 and stream[split - 3 : split + 1] == b"\r\n\r\n":
            continue  # CR|LF of a terminator: see test_event_ended_by_cr_is_returned_at_once
        events = _feed_all(SSEParser(), [stream[:split], stream[split:]])
        assert [event.raw for event in events] == reference, split


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_byte_at_a_time_feed(name):
    stream = VARIANTS[name]
    expected = [event.fields() for event in SSEParser().feed(stream)]
    events = _feed_all(SSEParser(), [stream[i : i + 1] for i in range(len(stream))])
    assert b"".join(event.raw for event in events) == stream
    assert _meaningful(events) == expected


def test_three_way_splits_keep_raw_concatenation():
    stream = MIXED_STREAM[:400]
    for first in range(0, len(stream), 7):
        for second in range(first, len(stream), 5):
            pieces = [stream[:first], stream[first:second], stream[second:]]
            events = _feed_all(SSEParser(), pieces)
            assert b"".join(event.raw for event in events) == stream


def test_multibyte_character_split_inside_is_decoded_whole():
    payload = "data: 日本\n\n".encode("utf-8")
    cut = payload.index("本".encode("utf-8")) + 1  # inside the 3-byte sequence
    parser = SSEParser()
    assert parser.feed(payload[:cut]) == []
    (event,) = parser.feed(payload[cut:])
    assert event.data == "日本"


def test_cr_at_chunk_end_then_lf_is_one_line_ending():
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    (event,) = parser.feed(b"\ndata: b\r\n\r\n")
    assert event.data == "a\nb"  # one event: the LF did not read as a blank line
    assert event.raw == b"data: a\r\ndata: b\r\n\r\n"


def test_event_ended_by_cr_is_returned_at_once_and_its_lf_moves_to_the_next_raw():
    parser = SSEParser()
    (first,) = parser.feed(b"data: a\r\n\r")  # no waiting for a possible LF
    assert first.data == "a" and first.raw == b"data: a\r\n\r"
    (second,) = parser.feed(b"\ndata: b\r\n\r\n")
    assert second.data == "b" and second.raw == b"\ndata: b\r\n\r\n"
    assert parser.flush() == []


def test_comment_only_event_and_comment_lines_inside_an_event():
    events = SSEParser().feed(b":ping\n\n: note\ndata: x\n: more\n\n")
    assert events[0].comment_only and events[0].data is None
    assert events[1].data == "x" and not events[1].comment_only


def test_field_rules():
    stream = (
        b"event:  spaced\n"  # only one space is stripped
        b"data\n"  # no colon: field with an empty value
        b"data:no-space\n"
        b"id: 7\n"
        b"retry: 1500\n"
        b"unknown: ignored\n"
        b"\n"
        b"id: bad\x00id\nretry: 12x\ndata: y\n\n"
    )
    first, second = SSEParser().feed(stream)
    assert first.event == " spaced"
    assert first.data == "\nno-space"
    assert (first.id, first.retry) == ("7", 1500)
    assert (second.id, second.retry, second.data) == (None, None, "y")


def test_empty_data_field_is_empty_string_not_none():
    (event,) = SSEParser().feed(b"event: x\ndata:\n\n")
    assert event.data == "" and event.event == "x"
    (event,) = SSEParser().feed(b"event: x\n\n")
    assert event.data is None


def test_blank_lines_before_an_event_are_kept_in_its_raw():
    parser = SSEParser()
    events = parser.feed(b"\n\n\ndata: a\n\n\r\n")
    assert [(event.raw, event.data) for event in events] == [(b"\n\n\ndata: a\n\n", "a")]
    (tail,) = parser.flush()
    assert tail.raw == b"\r\n" and tail.fields() == (None, None, None, None, False)


def test_byte_order_mark_is_ignored_for_fields_but_kept_in_raw():
    stream = b"\xef\xbb\xbfdata: a\n\n"
    for split in range(len(stream) + 1):
        events = _feed_all(SSEParser(), [stream[:split], stream[split:]])
        assert [(event.raw, event.data) for event in events] == [(stream, "a")], split


def test_flush_returns_trailing_partial_event_with_its_raw_bytes():
    parser = SSEParser()
    (done,) = parser.feed(b"data: 1\n\nevent: delta\ndata: {\"tr")
    assert done.data == "1"
    (tail,) = parser.flush()
    assert tail.raw == b'event: delta\ndata: {"tr'
    assert (tail.event, tail.data) == ("delta", '{"tr')
    assert parser.flush() == []


def test_flush_after_complete_stream_returns_nothing():
    parser = SSEParser()
    parser.feed(LF_STREAM)
    assert parser.flush() == []


def test_invalid_utf8_is_replaced_not_raised():
    (event,) = SSEParser().feed(b"data: \xff\xfe ok\n\n")
    assert event.data == "\ufffd\ufffd ok"


def test_encode_event_round_trips_multiline_data():
    data = "line one\nline two\r\n\nlast"
    raw = encode_event(data, event="content_block_delta", id="42")
    assert raw == (
        b"event: content_block_delta\nid: 42\n"
        b"data: line one\ndata: line two\ndata: \ndata: last\n\n"
    )
    (event,) = SSEParser().feed(raw)
    assert (event.event, event.id) == ("content_block_delta", "42")
    assert event.data == "line one\nline two\n\nlast"


def test_encode_event_keeps_leading_space_and_unicode():
    (event,) = SSEParser().feed(encode_event("  indented €"))
    assert event.data == "  indented €" and event.event is None


def test_encode_event_rejects_line_breaks_in_event_name():
    with pytest.raises(ValueError):
        encode_event("x", event="a\nb")


def test_event_equality_and_repr():
    a = Event(b"data: x\n\n", None, "x")
    assert a == Event(b"data: x\n\n", None, "x")
    assert a != Event(b"data: y\n\n", None, "y")
    assert "data='x'" in repr(a)


def test_parsing_is_linear_for_a_huge_line_in_small_chunks():
    # A quadratic rescan would search ~4 GB here and take many seconds.
    line = b"data: " + b"x" * (4 * 1024 * 1024) + b"\n\n"
    parser = SSEParser()
    started = time.perf_counter()
    events = []
    for offset in range(0, len(line), 1024):
        events.extend(parser.feed(line[offset : offset + 1024]))
    elapsed = time.perf_counter() - started
    assert len(events) == 1 and len(events[0].data) == 4 * 1024 * 1024
    assert elapsed < 1.0


def test_many_events_parse_quickly():
    # Generous bound (the real cost is a few microseconds per event): catches regressions
    # to per-byte or per-line-copy parsing, not machine speed.
    stream = LF_STREAM * 500
    parser = SSEParser()
    started = time.perf_counter()
    count = 0
    for offset in range(0, len(stream), 16384):
        count += len(parser.feed(stream[offset : offset + 16384]))
    elapsed = time.perf_counter() - started
    assert count == len(LF_EVENTS) * 500
    assert elapsed / count < 50e-6


def _reference_parse(stream):
    """A direct transcription of the WHATWG algorithm over a whole stream (no chunking)."""
    text = stream.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = re.split("\r\n|\r|\n", text)
    lines.pop()  # text after the last line ending is an unterminated line: not dispatched
    events, fields = [], None
    for line in lines:
        if line == "":
            if fields is not None:
                events.append(fields)
            fields = None
            continue
        fields = fields or {"event": None, "data": None, "id": None, "retry": None, "n": 0}
        if line.startswith(":"):
            continue
        fields["n"] += 1
        name, colon, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            fields["data"] = value if fields["data"] is None else fields["data"] + "\n" + value
        elif name == "event" or (name == "id" and "\x00" not in value):
            fields[name] = value
        elif name == "retry" and value.isdigit():
            fields["retry"] = int(value)
    return [(f["event"], f["data"], f["id"], f["retry"], f["n"] == 0) for f in events]


def test_random_streams_and_splits_match_the_reference_algorithm():
    rng = random.Random(6455)
    pieces = ["data: x", "data:é€", "event: e", "id: 1", "retry: 30", ": c", "data", "dat", ""]
    pieces.append("🙂")
    endings = ["\n", "\r\n", "\r"]
    for _ in range(300):
        text = "".join(rng.choice(pieces) + rng.choice(endings) for _ in range(rng.randint(1, 12)))
        stream = text.encode("utf-8")
        expected = _reference_parse(stream)
        cuts = sorted(rng.sample(range(len(stream) + 1), min(4, len(stream) + 1)))
        chunks = [stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)])]
        parser = SSEParser()
        fed = [event for chunk in chunks for event in parser.feed(chunk)]
        tail = parser.flush()
        assert b"".join(event.raw for event in fed + tail) == stream
        assert [event.fields() for event in fed] == expected, stream


# -- the fast paths give exactly what the general path gives ------------------------------

_LINES = [
    b"data: x",
    b"data:y",
    b"data:  two spaces",
    b"data",
    b"data:",
    b"data: caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x99\x82",
    b"data: \xff\xfe invalid",
    b"data: cut \xe2\x82",
    b'data: {"a":"\\u00e9\\n\\"q\\""}',
    b"event: e",
    b"event:",
    b"event:  spaced",
    b"id: 7",
    b"id: a\x00b",
    b"retry: 30",
    b"retry: 3x",
    b": comment",
    b":",
    b"other: v",
    b"dat",
    b"\xef\xbb\xbfdata: a mark inside the stream",
]


def _random_stream(rng, endings):
    """Random SSE bytes: lines of every kind, blank lines (event ends and filler) ended by
    ``endings``, sometimes a byte-order mark first and an unterminated line last."""
    parts = [b"\xef\xbb\xbf"] if rng.random() < 0.1 else []
    for _ in range(rng.randint(1, 16)):
        parts.append(rng.choice(_LINES) if rng.random() < 0.7 else b"")
        parts.append(rng.choice(endings))
    if rng.random() < 0.3:
        parts.append(rng.choice(_LINES))
    return b"".join(parts)


def _random_pieces(rng, stream):
    """``stream`` cut at a few random places, or (one time in ten) byte by byte."""
    if rng.random() < 0.1:
        return [stream[i : i + 1] for i in range(len(stream))]
    count = min(rng.randint(0, 6), len(stream) - 1)
    cuts = sorted(rng.sample(range(1, len(stream)), count)) if count > 0 else []
    return [stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)])]


class _GeneralOnly(SSEParser):
    """The parser with its fast path off: every chunk goes line by line."""

    def _feed_fast(self, chunk):
        return self._feed_general(chunk)


def _events_of(parser, pieces):
    """(raw, fields) of every event, those of ``flush`` marked."""
    fed = [(event.raw, event.fields()) for piece in pieces for event in parser.feed(piece)]
    return fed, [(event.raw, event.fields()) for event in parser.flush()]


@pytest.mark.parametrize("endings", [[b"\n"], [b"\n", b"\r\n", b"\r"]], ids=["lf", "mixed"])
def test_fast_path_gives_what_the_general_path_gives(endings):
    # LF-only streams take the fast path for every chunk; mixed ones switch between the
    # two paths in the middle of events, at any byte.
    rng = random.Random(20251202)
    for _ in range(3000):
        stream = _random_stream(rng, endings)
        pieces = _random_pieces(rng, stream)
        assert _events_of(SSEParser(), pieces) == _events_of(_GeneralOnly(), pieces), pieces


def test_lf_streams_match_the_reference_algorithm():
    rng = random.Random(6456)
    for _ in range(1000):
        stream = _random_stream(rng, [b"\n"])
        parser = SSEParser()
        fed = [event for piece in _random_pieces(rng, stream) for event in parser.feed(piece)]
        tail = parser.flush()
        assert b"".join(event.raw for event in fed + tail) == stream
        assert [event.fields() for event in fed] == _reference_parse(stream), stream


def _carrying(events):
    """The fields of the events that carry something: a lone blank line left at the end of
    a stream makes an empty event at ``flush`` or none, depending on how it was cut."""
    empty = (None, None, None, None, False)
    return [event.fields() for event in events if event.fields() != empty]


@pytest.mark.parametrize(
    "endings", [[b"\n"], [b"\r\n"], [b"\n", b"\r\n"], [b"\n", b"\r\n", b"\r"]], ids=["lf", "crlf", "lf-crlf", "mixed"]
)
def test_field_parser_gives_the_parsers_fields(endings):
    rng = random.Random(77)
    for _ in range(3000):
        stream = _random_stream(rng, endings)
        pieces = _random_pieces(rng, stream)
        parser, fields = SSEParser(), FieldParser()
        # Read by read the same events, then the same end.
        for piece in pieces:
            assert _carrying(fields.feed(piece)) == _carrying(parser.feed(piece)), pieces
        assert _carrying(fields.flush()) == _carrying(parser.flush()), pieces


def test_field_parser_reads_a_stream_fed_byte_by_byte():
    for stream in (LF_STREAM, CRLF_STREAM, MIXED_STREAM, b"\xef\xbb\xbf" + LF_STREAM):
        parser = FieldParser()
        events = [event for i in range(len(stream)) for event in parser.feed(stream[i : i + 1])]
        events += parser.flush()
        assert _carrying(events) == _carrying(SSEParser().feed(stream)), stream[:20]


def test_field_parser_text_read_event_by_event_gives_its_events():
    # feed_text hands over whole events as text; next_event, stepping through it,
    # reads the events feed gives, filler blank lines skipped alike.
    rng = random.Random(78)
    for _ in range(3000):
        stream = _random_stream(rng, [b"\n"])
        texts, parser = FieldParser(), FieldParser()
        for piece in _random_pieces(rng, stream):
            text, events = texts.feed_text(piece)
            expected = parser.feed(piece)
            if not text:
                assert _carrying(events) == _carrying(expected), stream
                continue
            assert events == [] and _carrying(text_events(text)) == _carrying(expected), stream
            stepped, position = [], 0
            while position < len(text):
                event, position = next_event(text, position)
                if event is not None:
                    stepped.append(event)
            assert position == len(text) and _carrying(stepped) == _carrying(expected), stream


def test_run_events_gives_what_a_fresh_parser_gives_for_a_run():
    # A relay hands run_events the part of a run (EventRuns' whole events) up to an event
    # it must rewrite; a fresh SSEParser fed the same bytes is the path it skips.
    rng = random.Random(79)
    for _ in range(3000):
        stream = _random_stream(rng, [b"\n"])
        end = stream.rfind(b"\n\n") + 2
        if end < 2:
            continue
        run = stream[:end]
        expected = [(event.raw, event.fields()) for event in SSEParser().feed(run)]
        assert [(event.raw, event.fields()) for event in run_events(run)] == expected, run


@pytest.mark.parametrize("name", [None, "content_block_delta", "e", "x:y", "two words"])
@pytest.mark.parametrize("data", ["", "x", " lead", "trail ", '{"a": "b"}', "data: inner", ": not a comment", "\u00e9 café"])
def test_event_frame_text_reads_as_an_event_like_the_one_framed(name, data):
    before, after = event_frame(Event(None, name, "seen"))
    text = before + data + after
    assert [event.fields() for event in text_events(text)] == [(name, data, None, None, False)]
    assert [event.fields() for event in SSEParser().feed(text.encode())] == [(name, data, None, None, False)]


@pytest.mark.parametrize(
    "event",
    [Event(None, None, "a", id="7"), Event(None, None, "a", retry=30), Event(None, None, None, comment_only=True),
     Event(None, None, None), Event(None, " spaced", "a"), Event(None, "a\nb", "a")],
)
def test_an_event_with_more_than_a_name_and_data_has_no_frame(event):
    assert event_frame(event) is None


def test_field_parser_events_carry_no_raw_bytes_on_its_own_path():
    events = FieldParser().feed(b"data: a\n\nevent: e\ndata: b\n\n")
    assert [(event.raw, event.event, event.data) for event in events] == [(None, None, "a"), (None, "e", "b")]


def test_field_parser_is_linear_for_a_huge_event_in_small_chunks():
    line = b"data: " + b"x" * (4 * 1024 * 1024) + b"\n\n"
    parser = FieldParser()
    started = time.perf_counter()
    events = [event for offset in range(0, len(line), 1024) for event in parser.feed(line[offset : offset + 1024])]
    assert time.perf_counter() - started < 1.0
    assert len(events) == 1 and len(events[0].data) == 4 * 1024 * 1024


def _plain_runs(pieces):
    """EventRuns' rule as first written: pending + chunk, cut after the last blank line."""
    pending, runs = b"", []
    for chunk in pieces:
        data = pending + chunk
        end = data.rfind(b"\n\n")
        if end < 0:
            pending = data
            runs.append(b"")
        else:
            pending = data[end + 2 :]
            runs.append(data[: end + 2])
    return runs, pending


def test_event_runs_cut_where_the_plain_rule_cuts():
    rng = random.Random(4242)
    for _ in range(2000):
        pieces = _random_pieces(rng, _random_stream(rng, [b"\n"]))
        runs = EventRuns()
        assert ([runs.feed(piece) for piece in pieces], runs.flush()) == _plain_runs(pieces), pieces


def test_event_runs_are_linear_for_a_huge_event_in_small_chunks():
    line = b"data: " + b"x" * (4 * 1024 * 1024) + b"\n\n"
    runs = EventRuns()
    started = time.perf_counter()
    cut = b"".join(runs.feed(line[offset : offset + 1024]) for offset in range(0, len(line), 1024))
    assert time.perf_counter() - started < 1.0
    assert cut == line and runs.flush() == b""


def test_a_parser_taking_over_mid_stream_reads_a_byte_order_mark_as_text():
    assert SSEParser().feed(b"\xef\xbb\xbfdata: a\n\n")[0].data == "a"
    event = SSEParser(stream_start=False).feed(b"\xef\xbb\xbfdata: a\n\n")[0]
    assert (event.data, event.comment_only) == (None, False)  # the field "\ufeffdata"
