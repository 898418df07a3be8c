"""Anthropic Messages codec: requests, whole answers and streams against the shared cases
(tests/support/translate_cases.py) and what only Anthropic has."""

import copy
import json
import logging
import random
from pathlib import Path

import pytest

from cliproxy.errors import BadRequest, ProxyError, UpstreamError
from cliproxy.http.sse import SSEParser
from cliproxy.routing.suffix import ThinkingKind, ThinkingSuffix
from cliproxy.translate.codecs import anthropic as codec
from cliproxy.translate.context import dumps
from cliproxy.translate.errors import error_event
from cliproxy.translate.ir import (
    Answer,
    AnswerBuilder,
    BlockKind,
    Conversation,
    Media,
    Message,
    Role,
    Stop,
    Text,
    Thinking,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
    ToolResult,
    Usage,
    replay,
)
from tests.support.translate_cases import (
    ANSWERS,
    MODEL,
    PNG,
    REQUESTED_MODEL,
    REQUESTS,
    STREAM_ERROR_MESSAGE,
    STREAM_ERROR_TEXT,
    WEATHER_TOOL,
    answer_context,
)

FIXTURES = Path(__file__).parent / "fixtures" / "translate" / "anthropic"

# The signature thinking.stream.sse carries for its thinking block (only Anthropic has
# one; the shared case has none, and the whole-answer fixture writes "").
STREAM_SIGNATURE = "EqQBCkYIBxgCKkBXvF3kc5pIJ8ZqJ0nV2yqR1vG3aL8tXyZ9sFqKcWm4oBvR7dE2hN6uJ1pQ5zT0eY3gA=="


def fixture_json(name):
    return json.loads((FIXTURES / name).read_text("utf-8"))


def fixture_bytes(name):
    return (FIXTURES / name).read_bytes()


def without_ids(answer):
    """``answer`` with no id and model: the shared cases carry neither."""
    answer = copy.deepcopy(answer)
    answer.id = None
    answer.model = None
    return answer


def stream_case(name):
    """The shared case as ``<name>.stream.sse`` gives it: with Anthropic's signature."""
    answer = copy.deepcopy(ANSWERS[name])
    for part in answer.parts:
        if isinstance(part, Thinking):
            part.signature = STREAM_SIGNATURE
    return answer


def read_stream(chunks, close=True):
    """Feed ``chunks`` through SSEParser → StreamReader → AnswerBuilder."""
    builder = AnswerBuilder()
    reader = codec.StreamReader(builder)
    parser = SSEParser()
    for chunk in chunks:
        for event in parser.feed(chunk):
            reader.feed(event)
    for event in parser.flush():
        reader.feed(event)
    if close:
        reader.close()
    return builder


def events_of(data):
    return [part + b"\n\n" for part in data.split(b"\n\n") if part]


def written(answer, **options):
    writer = codec.StreamWriter(answer_context(**options))
    replay(answer, writer, dumps)
    return writer.take()


def sse(*payloads):
    """An Anthropic stream of ``payloads`` (dicts), each under its own type as event name."""
    return b"".join(
        ("event: %s\ndata: %s\n\n" % (payload["type"], json.dumps(payload))).encode("utf-8") for payload in payloads
    )


MESSAGE_START = {"type": "message_start", "message": {"id": "msg_x", "model": "m", "usage": {"input_tokens": 3}}}
MESSAGE_STOP = {"type": "message_stop"}


def message_delta(stop="end_turn", **usage):
    return {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": usage}


def block_start(index, block):
    return {"type": "content_block_start", "index": index, "content_block": block}


def minimal_body(**fields):
    body = {"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    body.update(fields)
    return body


# -- shared cases: requests ----------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_request_fixture_reads_as_the_case(case):
    assert codec.read_request(fixture_json(case + ".request.json")) == REQUESTS[case]


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_the_case_writes_the_request_fixture(case):
    assert codec.write_request(REQUESTS[case], MODEL) == fixture_json(case + ".request.json")


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_request_round_trip(case):
    assert codec.read_request(codec.write_request(REQUESTS[case], MODEL)) == REQUESTS[case]


# -- shared cases: whole answers -------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_response_fixture_reads_as_the_case(case):
    answer = codec.read_response(fixture_json(case + ".response.json"))
    assert (answer.id, answer.model) == ("msg_1", REQUESTED_MODEL)
    assert without_ids(answer) == ANSWERS[case]


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_the_case_writes_the_response_fixture(case):
    assert codec.write_response(ANSWERS[case], answer_context()) == fixture_json(case + ".response.json")


# -- shared cases: reading streams -----------------------------------------------------------


def _cuts(data):
    """Ways to deliver ``data``: whole, event by event, byte by byte, and every two-way cut."""
    yield [data]
    yield events_of(data)
    yield [data[i : i + 1] for i in range(len(data))]
    for i in range(1, len(data)):
        yield [data[:i], data[i:]]


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_stream_fixture_reads_as_the_case_however_it_is_cut(case):
    data = fixture_bytes(case + ".stream.sse")
    expected = stream_case(case)
    for chunks in _cuts(data):
        builder = read_stream(chunks)
        assert builder.ended and builder.failure is None
        assert without_ids(builder.answer) == expected


def test_stream_fixture_cut_at_random_places_reads_the_same():
    rng = random.Random(20260101)
    data = fixture_bytes("tools.stream.sse")
    for _ in range(200):
        offsets = sorted(rng.sample(range(1, len(data)), 6))
        chunks = [data[a:b] for a, b in zip([0] + offsets, offsets + [len(data)])]
        assert without_ids(read_stream(chunks).answer) == stream_case("tools")


def test_stream_reader_keeps_id_and_model_of_message_start():
    answer = read_stream([fixture_bytes("text.stream.sse")]).answer
    assert (answer.id, answer.model) == ("msg_01XFDUDYJgAACzvnptvVoYEL", "claude-sonnet-4-5-20250929")


def test_error_stream_fails_with_the_providers_message_after_its_text():
    data = fixture_bytes("error.stream.sse")
    for chunks in ([data], events_of(data), [data[i : i + 1] for i in range(len(data))]):
        builder = read_stream(chunks)
        assert isinstance(builder.failure, ProxyError)
        assert STREAM_ERROR_MESSAGE in builder.failure.message
        assert (builder.failure.status, builder.failure.error_type) == (529, "overloaded_error")
        assert builder.answer.parts == [Text(STREAM_ERROR_TEXT)]
        assert not builder.ended


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_stream_truncated_before_message_stop_raises_on_close(case):
    events = events_of(fixture_bytes(case + ".stream.sse"))
    for keep in range(len(events)):
        with pytest.raises(UpstreamError, match="ended before"):
            read_stream(events[:keep])


def test_stream_without_event_lines_reads_the_same():
    # Some Anthropic-compatible servers send only data: lines; the JSON type names the event.
    data = fixture_bytes("thinking.stream.sse")
    data_only = b"\n".join(line for line in data.split(b"\n") if not line.startswith(b"event:"))
    assert b"event:" not in data_only
    assert without_ids(read_stream([data_only]).answer) == stream_case("thinking")


def test_stream_event_that_is_not_json_raises():
    reader = codec.StreamReader(AnswerBuilder())
    events = SSEParser().feed(b"event: content_block_delta\ndata: {not json\n\n")
    with pytest.raises(UpstreamError):
        reader.feed(events[0])


def test_stream_reader_ignores_odd_events():
    data = sse(
        MESSAGE_START,
        {"type": "content_block_start", "index": [0], "content_block": {"type": "text"}},
        {"type": "content_block_start", "index": 0, "content_block": "text"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": ["text"]}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": {"a": 1}, "delta": {"type": "text_delta", "text": "x"}},
        {"type": "content_block_delta", "index": 0, "delta": "text"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": 5}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "s"}},
        {"type": "content_block_delta", "index": 7, "delta": {"type": "text_delta", "text": "lost"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}},
        {"type": "content_block_stop", "index": "0"},
        {"type": "content_block_stop", "index": 0},
        {"type": ["message_delta"]},
        {"type": "something_new", "payload": 1},
        {"type": "message_delta", "delta": None, "usage": {"output_tokens": True}},
        {"type": "message_delta", "delta": {"stop_reason": 3}, "usage": "many"},
        MESSAGE_STOP,
    )
    data += b"event: ping\ndata: [1, 2]\n\n: a comment\n\ndata: 7\n\n"
    builder = read_stream([data])
    assert builder.ended
    assert builder.answer.parts == [Text("ok")]
    assert builder.answer.stop is Stop.END_TURN
    assert builder.answer.usage == Usage(input_tokens=3)


def test_stream_skips_redacted_thinking_and_server_blocks_and_renumbers():
    data = sse(
        MESSAGE_START,
        {"type": "content_block_start", "index": 0, "content_block": {"type": "redacted_thinking", "data": "xyz"}},
        {"type": "content_block_stop", "index": 0},
        block_start(1, {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}),
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "Found it."}},
        {"type": "content_block_stop", "index": 2},
        message_delta(output_tokens=5),
        MESSAGE_STOP,
    )
    seen = []

    class Recorder(AnswerBuilder):
        def block_start(self, index, kind, id=None, name=None):
            seen.append((index, kind))
            super().block_start(index, kind, id, name)

    builder = Recorder()
    reader = codec.StreamReader(builder)
    for event in SSEParser().feed(data):
        reader.feed(event)
    reader.close()
    assert seen == [(0, BlockKind.TEXT)]
    assert builder.answer.parts == [Text("Found it.")]


def test_stream_message_stop_without_message_delta_ends_the_turn():
    data = sse(
        MESSAGE_START,
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "Hi"}},
        MESSAGE_STOP,
    )
    builder = read_stream([data])
    assert builder.ended and builder.answer.stop is Stop.END_TURN
    assert builder.answer.parts == [Text("Hi")]


def test_stream_tool_input_given_whole_in_block_start():
    data = sse(
        block_start(0, {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}),
        {"type": "content_block_stop", "index": 0},
        message_delta("tool_use"),
        MESSAGE_STOP,
    )
    assert read_stream([data]).answer.parts == [ToolCall("t", "f", {"a": 1})]


def test_stream_stop_sequence_and_cache_usage():
    data = sse(
        {
            "type": "message_start",
            "message": {
                "id": "msg_c",
                "usage": {"input_tokens": 5, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 0},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "one two"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "stop_sequence", "stop_sequence": "three"},
            "usage": {"output_tokens": 3},
        },
        MESSAGE_STOP,
    )
    answer = read_stream([data]).answer
    assert (answer.stop, answer.stop_sequence) == (Stop.STOP_SEQUENCE, "three")
    assert answer.usage == Usage(input_tokens=105, output_tokens=3, cache_write=100)


def test_stream_error_event_ends_reading():
    data = sse(
        MESSAGE_START,
        {"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down"}},
        MESSAGE_STOP,
    )
    builder = read_stream([data])
    assert (builder.failure.status, builder.failure.error_type, builder.failure.message) == (
        429,
        "rate_limit_error",
        "Slow down",
    )
    assert not builder.ended


# -- shared cases: writing streams -------------------------------------------------------


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_writer_output_is_the_pinned_stream(case):
    assert written(ANSWERS[case]) == fixture_bytes(case + ".written.sse")


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_writer_output_reads_back_as_the_case(case):
    builder = read_stream([written(ANSWERS[case])])
    assert builder.ended
    assert (builder.answer.id, builder.answer.model) == ("msg_1", REQUESTED_MODEL)
    assert without_ids(builder.answer) == ANSWERS[case]


def test_writer_take_returns_only_new_bytes():
    writer = codec.StreamWriter(answer_context())
    writer.start("msg_a", "m")
    assert writer.take() == b""  # message_start waits for usage and the first block
    writer.block_start(0, BlockKind.TEXT)
    first = writer.take()
    assert first.startswith(b"event: message_start\n") and b'"id":"msg_a"' in first
    writer.text(0, "Hi")
    assert writer.take() == (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"Hi"}}\n\n'
    )
    assert writer.take() == b""


def test_writer_streams_argument_fragments_as_they_come():
    writer = codec.StreamWriter(answer_context())
    writer.block_start(0, BlockKind.TOOL_CALL, "toolu_1", "get_weather")
    writer.take()
    writer.arguments(0, '{"city": "Pa')
    fragment = writer.take()
    assert b'"type":"input_json_delta","partial_json":"{\\"city\\": \\"Pa"}' in fragment


def test_writer_without_start_opens_on_the_first_event_with_a_new_id():
    writer = codec.StreamWriter(answer_context())
    writer.block_start(0, BlockKind.TEXT)
    writer.text(0, "Hi")
    writer.block_stop(0)
    writer.usage(Usage(input_tokens=7, output_tokens=2))
    writer.finish(Stop.END_TURN)
    writer.usage(Usage(output_tokens=3))  # the last usage may follow finish
    writer.end()
    builder = read_stream([writer.take()])
    assert builder.answer.id == "msg_1"
    assert builder.answer.parts == [Text("Hi")]
    # message_start had no usage yet; message_delta carries the final counts
    assert builder.answer.usage == Usage(input_tokens=7, output_tokens=3)


def test_writer_with_nothing_but_end_writes_a_whole_empty_message():
    writer = codec.StreamWriter(answer_context())
    writer.end()
    names = [event.event for event in SSEParser().feed(writer.take())]
    assert names == ["message_start", "message_delta", "message_stop"]


def test_writer_error_writes_the_error_event_and_nothing_after():
    writer = codec.StreamWriter(answer_context())
    writer.start(None, None)
    writer.block_start(0, BlockKind.TEXT)
    writer.text(0, "Partial")
    error = ProxyError("Overloaded", status=529, error_type="overloaded_error")
    writer.error(error)
    out = writer.take()
    assert out.endswith(error_event(codec.PROTOCOL, error))
    assert out.endswith(
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )
    writer.block_stop(0)
    writer.finish(Stop.END_TURN)
    writer.end()
    assert writer.take() == b""
    builder = read_stream([out])
    assert builder.failure.message == "Overloaded" and builder.answer.parts == [Text("Partial")]


def test_writer_keeps_thinking_before_a_tool_call_gives_signatures_and_casing():
    answer = Answer(
        parts=[Thinking("Plan.", signature="sig-1"), ToolCall("", "bash", {"cmd": "ls"})],
        stop=Stop.TOOL_USE,
    )
    out = written(answer, tool_names=lambda: {"bash": "Bash"})
    starts = [json.loads(e.data)["content_block"] for e in SSEParser().feed(out) if e.event == "content_block_start"]
    assert starts == [
        {"type": "thinking", "thinking": "", "signature": ""},
        {"type": "tool_use", "id": "toolu_2", "name": "Bash", "input": {}, "signature": ""},
    ]
    assert b'"delta":{"type":"signature_delta","signature":"sig-1"}' in out
    assert read_stream([out]).answer.parts == [
        Thinking("Plan.", signature="sig-1"),
        ToolCall("toolu_2", "Bash", {"cmd": "ls"}),
    ]


def test_writer_escapes_text_as_json():
    answer = Answer(parts=[Text('line "one"\nzwei → drei')])
    out = written(answer)
    assert '"text":"line \\"one\\"\\nzwei → drei"'.encode("utf-8") in out
    assert read_stream([out]).answer.parts == answer.parts


# -- whole answers beyond the shared cases -------------------------------------------------


def test_response_signature_casing_and_thinking_drop_rules():
    answer = Answer(
        parts=[Thinking("Plan.", signature="sig-1"), Text("Running."), ToolCall("", "BASH", {"cmd": "ls"})],
        stop=Stop.TOOL_USE,
    )
    document = codec.write_response(answer, answer_context(tool_names=lambda: {"bash": "Bash"}))
    assert document["content"] == [
        {"type": "text", "text": "Running."},
        {"type": "tool_use", "id": "toolu_2", "name": "Bash", "input": {"cmd": "ls"}, "signature": ""},
    ]
    assert document["id"] == "msg_1"


def test_response_keeps_thinking_and_its_signature_without_tool_calls():
    answer = Answer(parts=[Thinking("Plan.", signature="sig-1"), Text("Done.")])
    document = codec.write_response(answer, answer_context())
    assert document["content"][0] == {"type": "thinking", "thinking": "Plan.", "signature": "sig-1"}
    assert codec.read_response(document).parts == answer.parts


def test_response_unknown_tool_name_keeps_its_casing_and_id():
    answer = Answer(parts=[ToolCall("call_9", "Custom_Tool", {})], stop=Stop.TOOL_USE)
    document = codec.write_response(answer, answer_context(tool_names=lambda: {"bash": "Bash"}))
    assert document["content"][0]["name"] == "Custom_Tool"
    assert document["content"][0]["id"] == "call_9"


def test_response_with_redacted_thinking_skips_it():
    document = fixture_json("thinking.response.json")
    document["content"].insert(0, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"})
    document["content"].append({"type": "server_tool_use", "id": "srv", "name": "web_search", "input": {}})
    assert without_ids(codec.read_response(document)) == ANSWERS["thinking"]


def test_response_cache_usage_adds_up_and_writes_back():
    document = fixture_json("text.response.json")
    document["usage"] = {
        "input_tokens": 4,
        "cache_creation_input_tokens": 300,
        "cache_read_input_tokens": 1200,
        "output_tokens": 9,
        "service_tier": "standard",
    }
    answer = codec.read_response(document)
    assert answer.usage == Usage(input_tokens=1504, output_tokens=9, cache_read=1200, cache_write=300)
    assert codec.write_response(answer, answer_context())["usage"] == {
        "input_tokens": 4,
        "cache_creation_input_tokens": 300,
        "cache_read_input_tokens": 1200,
        "output_tokens": 9,
    }


@pytest.mark.parametrize(
    "reason, stop",
    [
        ("end_turn", Stop.END_TURN),
        ("max_tokens", Stop.MAX_TOKENS),
        ("model_context_window_exceeded", Stop.MAX_TOKENS),
        ("stop_sequence", Stop.STOP_SEQUENCE),
        ("tool_use", Stop.TOOL_USE),
        ("pause_turn", Stop.PAUSE),
        ("refusal", Stop.REFUSAL),
        (None, Stop.END_TURN),
        ("something_new", Stop.END_TURN),
    ],
)
def test_response_stop_reasons(reason, stop):
    document = fixture_json("text.response.json")
    document["stop_reason"] = reason
    assert codec.read_response(document).stop is stop


@pytest.mark.parametrize("stop", list(Stop))
def test_every_stop_writes_and_reads_back(stop):
    answer = Answer(parts=[Text("x")], stop=stop, stop_sequence="END" if stop is Stop.STOP_SEQUENCE else None)
    document = codec.write_response(answer, answer_context())
    read = codec.read_response(document)
    assert (read.stop, read.stop_sequence) == (stop, answer.stop_sequence)


@pytest.mark.parametrize(
    "document",
    [
        [],
        "text",
        {"type": "message"},
        {"content": "Hello"},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ],
)
def test_response_that_is_not_an_answer_raises(document):
    with pytest.raises(UpstreamError):
        codec.read_response(document)


def test_response_with_odd_blocks_does_not_raise():
    document = {
        "content": ["text", {"type": "text"}, {"type": "tool_use", "input": "x"}, {"type": 1}],
        "usage": {"input_tokens": "3"},
        "stop_reason": ["end_turn"],
    }
    answer = codec.read_response(document)
    assert answer.parts == [Text(""), ToolCall("", "", {})]
    assert answer.usage == Usage()


# -- requests beyond the shared cases ------------------------------------------------------


def test_string_system():
    conversation = codec.read_request(minimal_body(system="Be brief."))
    assert conversation.system == [Text("Be brief.")]
    assert codec.write_request(conversation, MODEL)["system"] == [{"type": "text", "text": "Be brief."}]


def test_system_blocks_drop_cache_control(caplog):
    body = minimal_body(
        system=[
            {"type": "text", "text": "You are Claude Code."},
            {"type": "text", "text": "Project notes.", "cache_control": {"type": "ephemeral"}},
        ],
        context_management={"edits": []},
        service_tier="auto",
    )
    with caplog.at_level(logging.DEBUG, logger="cliproxy.translate"):
        conversation = codec.read_request(body)
    assert conversation.system == [Text("You are Claude Code."), Text("Project notes.")]
    dropped = [record.fields["dropped"] for record in caplog.records if hasattr(record, "fields")]
    assert dropped == ["cache_control,context_management,service_tier"]
    assert "cache_control" not in json.dumps(codec.write_request(conversation, MODEL))


def test_system_messages_inside_messages_stay_in_place_and_write_to_system():
    body = minimal_body(
        system="Main.",
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "system", "content": [{"type": "text", "text": "Reminder: be brief."}]},
            {"role": "user", "content": "more"},
        ],
    )
    conversation = codec.read_request(body)
    assert [message.role for message in conversation.messages] == [Role.USER, Role.ASSISTANT, Role.SYSTEM, Role.USER]
    assert conversation.messages[2].parts == [Text("Reminder: be brief.")]
    written_body = codec.write_request(conversation, MODEL)
    assert written_body["system"] == [
        {"type": "text", "text": "Main."},
        {"type": "text", "text": "Reminder: be brief."},
    ]
    assert [message["role"] for message in written_body["messages"]] == ["user", "assistant", "user"]


def test_url_image():
    block = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
    conversation = codec.read_request(minimal_body(messages=[{"role": "user", "content": [block]}]))
    assert conversation.messages[0].parts == [Media(url="https://example.com/cat.jpg")]
    assert codec.write_request(conversation, MODEL)["messages"][0]["content"] == [block]


def test_image_data_url_is_written_inline():
    conversation = Conversation(messages=[Message(Role.USER, [Media(url="data:image/png;base64," + PNG)])])
    block = codec.write_request(conversation, MODEL)["messages"][0]["content"][0]
    assert block == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}


def test_pdf_document():
    block = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"},
        "title": "report.pdf",
    }
    conversation = codec.read_request(minimal_body(messages=[{"role": "user", "content": [block]}]))
    assert conversation.messages[0].parts == [Media("application/pdf", data="JVBERi0xLjQK", filename="report.pdf")]
    assert codec.write_request(conversation, MODEL)["messages"][0]["content"] == [block]


def test_url_and_text_documents():
    blocks = [
        {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Plain notes."}},
    ]
    conversation = codec.read_request(minimal_body(messages=[{"role": "user", "content": blocks}]))
    assert conversation.messages[0].parts == [
        Media("application/pdf", url="https://example.com/a.pdf"),
        Text("Plain notes."),
    ]
    assert codec.write_request(conversation, MODEL)["messages"][0]["content"] == [
        blocks[0],
        {"type": "text", "text": "Plain notes."},
    ]


def test_unsupported_media_is_left_out_when_writing():
    conversation = Conversation(
        messages=[Message(Role.USER, [Text("Listen."), Media("audio/wav", data="UklGRg==")])]
    )
    assert codec.write_request(conversation, MODEL)["messages"][0]["content"] == [{"type": "text", "text": "Listen."}]


def test_tool_result_with_is_error_and_image_content():
    messages = [
        {"role": "user", "content": "Screenshot?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "screenshot", "input": {}}]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01",
                    "is_error": True,
                    "content": [
                        {"type": "text", "text": "Partly failed."},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    ],
                }
            ],
        },
    ]
    conversation = codec.read_request(minimal_body(messages=messages))
    assert conversation.messages[2].parts == [
        ToolResult("toolu_01", [Text("Partly failed."), Media("image/png", data=PNG)], is_error=True, name="screenshot")
    ]
    written_messages = codec.write_request(conversation, MODEL)["messages"]
    assert written_messages[0] == {"role": "user", "content": [{"type": "text", "text": "Screenshot?"}]}
    assert written_messages[1:] == messages[1:]


def test_tool_result_string_content():
    messages = [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "done"}]},
    ]
    conversation = codec.read_request(minimal_body(messages=messages))
    assert conversation.messages[1].parts == [ToolResult("t1", [Text("done")], name="f")]


@pytest.mark.parametrize(
    "choice, read, parallel",
    [
        ({"type": "auto"}, ToolChoice(ToolChoiceMode.AUTO), None),
        ({"type": "any"}, ToolChoice(ToolChoiceMode.ANY), None),
        ({"type": "none"}, ToolChoice(ToolChoiceMode.NONE), None),
        ({"type": "tool", "name": "get_weather"}, ToolChoice(ToolChoiceMode.TOOL, "get_weather"), None),
        ({"type": "auto", "disable_parallel_tool_use": True}, ToolChoice(ToolChoiceMode.AUTO), False),
        ({"type": "any", "disable_parallel_tool_use": True}, ToolChoice(ToolChoiceMode.ANY), False),
        ({"type": "auto", "disable_parallel_tool_use": False}, ToolChoice(ToolChoiceMode.AUTO), True),
    ],
)
def test_tool_choice_variants(choice, read, parallel):
    body = minimal_body(tools=[{"name": "get_weather", "input_schema": WEATHER_TOOL.schema}], tool_choice=choice)
    conversation = codec.read_request(body)
    assert (conversation.tool_choice, conversation.parallel_tool_calls) == (read, parallel)
    expected = {key: value for key, value in choice.items() if value is not False}
    assert codec.write_request(conversation, MODEL)["tool_choice"] == expected


def test_parallel_calls_off_without_a_tool_choice_writes_auto():
    conversation = Conversation(
        messages=[Message(Role.USER, [Text("hi")])], tools=[WEATHER_TOOL], parallel_tool_calls=False
    )
    choice = codec.write_request(conversation, MODEL)["tool_choice"]
    assert choice == {"type": "auto", "disable_parallel_tool_use": True}


def test_server_tools_are_dropped_and_custom_tools_kept():
    body = minimal_body(
        tools=[
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
            {"type": "custom", "name": "get_weather", "description": "Current weather for a city.",
             "input_schema": WEATHER_TOOL.schema},
            {"name": "no_schema"},
        ]
    )
    assert codec.read_request(body).tools == [WEATHER_TOOL, Tool("no_schema")]


@pytest.mark.parametrize(
    "fields, setting",
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 4096}}, ThinkingSuffix(ThinkingKind.BUDGET, budget=4096)),
        ({"thinking": {"type": "disabled"}}, ThinkingSuffix(ThinkingKind.NONE)),
        ({"thinking": {"type": "adaptive"}}, ThinkingSuffix(ThinkingKind.AUTO)),
        ({"output_config": {"effort": "medium"}}, ThinkingSuffix(ThinkingKind.LEVEL, level="medium")),
        (
            {"thinking": {"type": "adaptive"}, "output_config": {"effort": "High"}},
            ThinkingSuffix(ThinkingKind.LEVEL, level="high"),
        ),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 2048}, "output_config": {"effort": "low"}},
            ThinkingSuffix(ThinkingKind.BUDGET, budget=2048),
        ),
        ({"thinking": {"type": "disabled"}, "output_config": {"effort": "max"}}, ThinkingSuffix(ThinkingKind.NONE)),
        ({"output_config": {"effort": "extreme"}}, None),
        ({}, None),
    ],
)
def test_thinking_settings_read(fields, setting):
    assert codec.read_request(minimal_body(**fields)).thinking == setting


@pytest.mark.parametrize(
    "setting, thinking, max_tokens",
    [
        (ThinkingSuffix(ThinkingKind.BUDGET, budget=4096), {"type": "enabled", "budget_tokens": 4096}, 8192),
        (ThinkingSuffix(ThinkingKind.BUDGET, budget=8192), {"type": "enabled", "budget_tokens": 8192}, 8192 + 4096),
        (ThinkingSuffix(ThinkingKind.NONE), {"type": "disabled"}, 8192),
        (ThinkingSuffix(ThinkingKind.AUTO), {"type": "enabled", "budget_tokens": 8192}, 8192 + 4096),
        (ThinkingSuffix(ThinkingKind.LEVEL, level="low"), {"type": "enabled", "budget_tokens": 1024}, 8192),
        (None, None, 8192),
    ],
)
def test_thinking_settings_written(setting, thinking, max_tokens):
    conversation = Conversation(messages=[Message(Role.USER, [Text("hi")])], thinking=setting)
    body = codec.write_request(conversation, MODEL)
    assert body.get("thinking") == thinking
    assert body["max_tokens"] == max_tokens


def test_thinking_round_trips_budget_and_off():
    for setting in (ThinkingSuffix(ThinkingKind.BUDGET, budget=4096), ThinkingSuffix(ThinkingKind.NONE)):
        conversation = Conversation(
            messages=[Message(Role.USER, [Text("hi")])], thinking=setting, max_output_tokens=9000
        )
        assert codec.read_request(codec.write_request(conversation, MODEL)) == conversation


def _tool_loop(first_part=None):
    assistant = [ToolCall("toolu_1", "get_weather", {"city": "Paris"})]
    if first_part is not None:
        assistant.insert(0, first_part)
    return Conversation(
        messages=[
            Message(Role.USER, [Text("Weather?")]),
            Message(Role.ASSISTANT, assistant),
            Message(Role.USER, [ToolResult("toolu_1", [Text("18C")])]),
        ],
        tools=[WEATHER_TOOL],
        thinking=ThinkingSuffix(ThinkingKind.BUDGET, budget=2048),
    )


def test_thinking_is_disabled_in_a_tool_loop_without_signed_thinking():
    assert codec.write_request(_tool_loop(), MODEL)["thinking"] == {"type": "disabled"}
    unsigned = _tool_loop(Thinking("Plan."))  # dropped when written: no signature
    assert codec.write_request(unsigned, MODEL)["thinking"] == {"type": "disabled"}


def test_thinking_stays_in_a_tool_loop_opened_by_signed_thinking():
    for first in (Thinking("Plan.", signature="sig"), Thinking(redacted="opaque")):
        body = codec.write_request(_tool_loop(first), MODEL)
        assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
        assert body["messages"][1]["content"][0]["type"] in ("thinking", "redacted_thinking")


def test_thinking_stays_for_a_new_user_turn_after_a_tool_loop():
    conversation = _tool_loop()
    conversation.messages += [Message(Role.ASSISTANT, [Text("18C.")]), Message(Role.USER, [Text("Thanks")])]
    assert codec.write_request(conversation, MODEL)["thinking"]["type"] == "enabled"


@pytest.mark.parametrize("mode", [ToolChoiceMode.ANY, ToolChoiceMode.TOOL])
def test_thinking_is_disabled_when_a_tool_is_forced(mode):
    conversation = Conversation(
        messages=[Message(Role.USER, [Text("hi")])],
        tools=[WEATHER_TOOL],
        tool_choice=ToolChoice(mode, "get_weather" if mode is ToolChoiceMode.TOOL else None),
        thinking=ThinkingSuffix(ThinkingKind.BUDGET, budget=2048),
    )
    assert codec.write_request(conversation, MODEL)["thinking"] == {"type": "disabled"}


def test_thinking_leaves_out_sampling_it_forbids():
    conversation = Conversation(
        messages=[Message(Role.USER, [Text("hi")])],
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        thinking=ThinkingSuffix(ThinkingKind.BUDGET, budget=2048),
    )
    body = codec.write_request(conversation, MODEL)
    assert not {"temperature", "top_p", "top_k"} & set(body)
    conversation.temperature, conversation.top_p, conversation.top_k = 1, 0.95, None
    body = codec.write_request(conversation, MODEL)
    assert (body["temperature"], body["top_p"]) == (1, 0.95)


def test_top_k_stop_sequences_metadata_and_stream():
    body = minimal_body(top_k=40, stop_sequences=["END", "STOP"], metadata={"user_id": "u-1"}, stream=True)
    conversation = codec.read_request(body)
    assert (conversation.top_k, conversation.stop, conversation.user, conversation.stream) == (
        40,
        ["END", "STOP"],
        "u-1",
        True,
    )
    written_body = codec.write_request(conversation, MODEL)
    assert (written_body["top_k"], written_body["stop_sequences"]) == (40, ["END", "STOP"])
    assert written_body["metadata"] == {"user_id": "u-1"} and written_body["stream"] is True
    assert codec.read_request(written_body) == conversation


def test_stream_argument_wins_over_the_body():
    assert codec.read_request(minimal_body(stream=True), stream=False).stream is False
    assert codec.read_request(minimal_body(), stream=True).stream is True
    assert codec.read_request(minimal_body(stream="yes")).stream is False


def test_thinking_blocks_in_requests():
    content = [
        {"type": "thinking", "thinking": "Plan.", "signature": "sig-1"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "Answer."},
    ]
    body = minimal_body(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": content}])
    conversation = codec.read_request(body)
    assert conversation.messages[1].parts == [
        Thinking("Plan.", signature="sig-1"),
        Thinking(redacted="opaque"),
        Text("Answer."),
    ]
    assert codec.write_request(conversation, MODEL)["messages"][1]["content"] == content


def test_unsigned_thinking_and_empty_text_are_left_out():
    conversation = Conversation(
        messages=[
            Message(Role.USER, [Text("q")]),
            Message(Role.ASSISTANT, [Thinking("Plan."), Thinking("Other.", signature=""), Text(""), Text("A.")]),
            Message(Role.ASSISTANT, [Thinking("Only unsigned.")]),
        ]
    )
    assert codec.write_request(conversation, MODEL)["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "A."}],
    }


def test_messages_of_one_role_merge_with_tool_results_first():
    conversation = Conversation(
        messages=[
            Message(Role.USER, [Text("Weather?")]),
            Message(Role.ASSISTANT, [Text("Checking.")]),
            Message(Role.ASSISTANT, [ToolCall("call.1|x", "get_weather", {"city": "Paris"})]),
            Message(Role.USER, [Text("Also: be quick.")]),
            Message(Role.USER, [ToolResult("call.1|x", [Text("18C")])]),
        ]
    )
    messages = codec.write_request(conversation, MODEL)["messages"]
    assert [message["role"] for message in messages] == ["user", "assistant", "user"]
    assert [block["type"] for block in messages[1]["content"]] == ["text", "tool_use"]
    assert messages[1]["content"][1]["id"] == "call_1_x"
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1_x", "content": [{"type": "text", "text": "18C"}]},
        {"type": "text", "text": "Also: be quick."},
    ]


def test_max_tokens_default():
    conversation = Conversation(messages=[Message(Role.USER, [Text("hi")])])
    assert codec.write_request(conversation, MODEL)["max_tokens"] == codec.DEFAULT_MAX_TOKENS


def test_unknown_blocks_are_dropped():
    content = [
        {"type": "text", "text": "Look:"},
        {"type": "search_result", "source": "x", "title": "t", "content": []},
        {"type": "container_upload", "file_id": "f"},
    ]
    conversation = codec.read_request(minimal_body(messages=[{"role": "user", "content": content}]))
    assert conversation.messages[0].parts == [Text("Look:")]


def with_block(role, block):
    return minimal_body(messages=[{"role": role, "content": [block]}])


@pytest.mark.parametrize(
    "body",
    [
        [],
        "hello",
        {"model": MODEL, "max_tokens": 10},
        minimal_body(messages={"role": "user"}),
        minimal_body(messages=["hi"]),
        minimal_body(messages=[{"role": "tool", "content": "hi"}]),
        minimal_body(messages=[{"role": ["user"], "content": "hi"}]),
        minimal_body(messages=[{"role": "user", "content": 5}]),
        minimal_body(messages=[{"role": "user", "content": ["hi"]}]),
        with_block("user", {"type": "text", "text": 5}),
        with_block("user", {"type": "image", "source": "x"}),
        with_block("user", {"type": "image", "source": {"type": "file", "file_id": "f"}}),
        with_block("user", {"type": "image", "source": {"type": "base64", "data": "x"}}),
        with_block("user", {"type": "document", "source": {"type": "content", "content": []}}),
        with_block("assistant", {"type": "tool_use", "id": "t", "name": "f", "input": "x"}),
        with_block("assistant", {"type": "tool_use", "id": 5, "name": "f", "input": {}}),
        with_block("assistant", {"type": "redacted_thinking", "data": None}),
        with_block("user", {"type": "tool_result", "content": "x"}),
        with_block("user", {"type": "tool_result", "tool_use_id": "t", "content": 5}),
        with_block("user", {"type": "tool_result", "tool_use_id": "t", "content": [7]}),
        minimal_body(system=5),
        minimal_body(system=[{"type": "image"}]),
        minimal_body(system=["text"]),
        minimal_body(tools={"name": "f"}),
        minimal_body(tools=["f"]),
        minimal_body(tools=[{"description": "no name"}]),
        minimal_body(tool_choice="auto"),
        minimal_body(tool_choice={"type": "required"}),
        minimal_body(tool_choice={"type": ["auto"]}),
        minimal_body(tool_choice={"type": "tool"}),
        minimal_body(thinking="enabled"),
        minimal_body(thinking={"type": "enabled"}),
        minimal_body(thinking={"type": "enabled", "budget_tokens": "1024"}),
        minimal_body(thinking={"type": "on"}),
        minimal_body(max_tokens="100"),
        minimal_body(max_tokens=True),
        minimal_body(temperature="0.2"),
        minimal_body(top_k=1.5),
        minimal_body(stop_sequences="END"),
        minimal_body(stop_sequences=["END", 1]),
    ],
)
def test_malformed_requests_are_bad_requests(body):
    with pytest.raises(BadRequest):
        codec.read_request(body)


def test_optional_fields_of_the_wrong_type_are_ignored():
    body = minimal_body(
        metadata="user-1",
        output_config=["high"],
        stream=1,
        tools=[{"name": "f", "description": 5, "input_schema": "object"}],
    )
    conversation = codec.read_request(body)
    assert (conversation.user, conversation.thinking, conversation.stream) == (None, None, False)
    assert conversation.tools == [Tool("f")]


# -- hostile input ---------------------------------------------------------------------------

ODD_VALUES = (None, True, 0, -1, 2.5, "", "x", [], [None], {}, {"type": None})


def _mutations(document, rng, count):
    """``count`` copies of ``document``, each with one nested value replaced by an odd one."""
    paths = []

    def walk(node, path):
        paths.append(path)
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in children:
            walk(child, path + (key,))

    walk(document, ())
    for _ in range(count):
        path = rng.choice(paths[1:])
        mutated = copy.deepcopy(document)
        holder = mutated
        for key in path[:-1]:
            holder = holder[key]
        holder[path[-1]] = rng.choice(ODD_VALUES)
        yield mutated


def test_mutated_requests_give_a_conversation_or_bad_request():
    rng = random.Random(7)
    for case in sorted(REQUESTS):
        for body in _mutations(fixture_json(case + ".request.json"), rng, 300):
            try:
                conversation = codec.read_request(body)
            except BadRequest:
                continue
            codec.write_request(conversation, MODEL)


def test_mutated_answers_give_an_answer_or_upstream_error():
    rng = random.Random(8)
    for case in sorted(ANSWERS):
        for document in _mutations(fixture_json(case + ".response.json"), rng, 200):
            try:
                answer = codec.read_response(document)
            except UpstreamError:
                continue
            codec.write_response(answer, answer_context())


def test_mutated_stream_events_never_raise():
    rng = random.Random(9)
    for case in sorted(ANSWERS):
        payloads = [json.loads(e.data) for e in SSEParser().feed(fixture_bytes(case + ".stream.sse"))]
        for _ in range(100):
            stream = [rng.choice(list(_mutations(p, rng, 1))) if rng.random() < 0.3 and p else p for p in payloads]
            data = b"".join(("data: %s\n\n" % json.dumps(p)).encode("utf-8") for p in stream)
            writer = codec.StreamWriter(answer_context())
            reader = codec.StreamReader(writer)
            for event in SSEParser().feed(data):
                reader.feed(event)
            writer.take()
