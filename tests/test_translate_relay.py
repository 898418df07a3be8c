"""The SSE relay: runs of untouched events pass as received, the rest is rewritten, and
the output does not depend on where the reads were split."""

import json

import pytest

from cliproxy.http.sse import EventRuns, SSEParser
from cliproxy.translate import anthropic, openai
from cliproxy.translate.context import RewriteContext
from cliproxy.translate.relay import EventRelay


def event(payload, name=None):
    head = "event: %s\n" % name if name else ""
    return (head + "data: " + json.dumps(payload) + "\n\n").encode()


ANTHROPIC = b"".join(
    [
        event({"type": "message_start", "message": {"model": "upstream-model", "content": []}}, "message_start"),
        event({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "name": "bash"}}, "content_block_start"),
    ]
    + [event({"type": "content_block_delta", "index": 0, "delta": {"partial_json": "é%d" % i}}, "content_block_delta") for i in range(5)]
    + [event({"type": "message_stop"}, "message_stop")]
)


def anthropic_rewriter():
    return anthropic.StreamRewriter(RewriteContext("client-model", {"bash": "Bash"}))


def reference(stream, rewriter):
    parser = SSEParser()
    events = parser.feed(stream) + parser.flush()
    return b"".join(rewriter.event(item) for item in events)


def relay_in_pieces(stream, rewriter, cuts):
    relay = EventRelay(rewriter)
    out = []
    start = 0
    for cut in list(cuts) + [len(stream)]:
        out.append(relay.feed(stream[start:cut]))
        start = cut
    out.append(relay.flush())
    return b"".join(out)


def test_output_is_the_same_bytes_at_every_split_point():
    expected = reference(ANTHROPIC, anthropic_rewriter())
    assert b'"model":"client-model"' in expected and b'"name":"Bash"' in expected
    for cut in range(1, len(ANTHROPIC)):
        assert relay_in_pieces(ANTHROPIC, anthropic_rewriter(), [cut]) == expected, cut


def semantic(stream):
    parser = SSEParser()
    return [(item.event, item.data) for item in parser.feed(stream) + parser.flush() if item.data is not None]


def test_crlf_streams_give_the_same_events_at_every_split_point():
    # With CR line endings a read may end between CR and LF; the parser then keeps that
    # LF with the next event, so compare events, not bytes.
    stream = ANTHROPIC.replace(b"\n", b"\r\n")
    expected = semantic(reference(stream, anthropic_rewriter()))
    assert len(expected) == 8
    for cut in range(1, len(stream)):
        assert semantic(relay_in_pieces(stream, anthropic_rewriter(), [cut])) == expected, cut


def test_deltas_pass_as_the_bytes_received():
    relay = EventRelay(anthropic_rewriter())
    head_end = ANTHROPIC.index(b"event: content_block_delta")
    relay.feed(ANTHROPIC[:head_end])
    deltas = ANTHROPIC[head_end:]
    assert relay.feed(deltas) == deltas


def test_an_unterminated_last_event_is_flushed_not_lost():
    relay = EventRelay(openai.StreamRewriter(RewriteContext("client-model")))
    tail = b'data: {"model":"upstream","choices":[]}'
    assert relay.feed(tail) == b""
    flushed = relay.flush()
    assert b'"model":"client-model"' in flushed


def test_event_runs_cut_only_after_whole_events():
    runs = EventRuns()
    assert runs.feed(b"data: a\n\ndata: b") == b"data: a\n\n"
    assert runs.feed(b"\n") == b""
    assert runs.feed(b"\ndata: c\n\n") == b"data: b\n\ndata: c\n\n"
    assert runs.flush() == b""
    with pytest.raises(ValueError):
        runs.feed(b"data: x\r\n\r\n")


def test_a_whole_stream_in_one_read_is_parsed_only_up_to_its_last_marked_event():
    relay = EventRelay(anthropic_rewriter())
    out = relay.feed(ANTHROPIC)
    deltas = ANTHROPIC[ANTHROPIC.index(b"event: content_block_delta"):]
    assert out.endswith(deltas)
    assert b'"model":"client-model"' in out and b'"name":"Bash"' in out
    assert out == reference(ANTHROPIC, anthropic_rewriter())
