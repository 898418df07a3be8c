"""The OpenAI Responses codec (cliproxy.translate.codecs.responses): the shared cases
against the fixtures in tests/fixtures/translate/responses/, then what only the
Responses protocol has."""

import copy
import json
import logging
import os
import random

import pytest

from cliproxy.errors import BadRequest, ProxyError, UpstreamError
from cliproxy.http.sse import SSEParser
from cliproxy.routing.suffix import ThinkingKind, ThinkingSuffix
from cliproxy.translate.codecs import responses
from cliproxy.translate.context import dumps
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
    CREATED,
    MODEL,
    PNG,
    REQUESTED_MODEL,
    REQUESTS,
    STREAM_ERROR_MESSAGE,
    STREAM_ERROR_TEXT,
    answer_context,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "translate", "responses")


def fixture_bytes(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


def fixture_json(name):
    return json.loads(fixture_bytes(name).decode("utf-8"))


def read_stream(chunks):
    """The builder after feeding ``chunks`` (bytes) through SSEParser → StreamReader,
    and closing."""
    builder = AnswerBuilder()
    reader = responses.StreamReader(builder)
    parser = SSEParser()
    for chunk in chunks:
        for event in parser.feed(chunk):
            reader.feed(event)
    for event in parser.flush():
        reader.feed(event)
    reader.close()
    return builder


def events_of(data):
    """``data`` split after each event's blank line."""
    pieces = data.split(b"\n\n")
    return [piece + b"\n\n" for piece in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])


def written(answer, ctx=None):
    writer = responses.StreamWriter(ctx or answer_context())
    replay(answer, writer, dumps)
    return writer.take()


def parsed_events(data):
    return [(event.event, json.loads(event.data)) for event in SSEParser().feed(data)]


def body(**fields):
    fields.setdefault("model", MODEL)
    return fields


def assert_same_answer(answer, case):
    assert answer.parts == case.parts
    assert answer.stop == case.stop
    assert answer.stop_sequence == case.stop_sequence
    assert answer.usage == case.usage


# -- the shared cases: requests ----------------------------------------------------------


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_read_request_fixture_gives_the_case(case):
    assert responses.read_request(fixture_json(case + ".request.json")) == REQUESTS[case]


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_write_request_of_the_case_gives_the_fixture(case):
    assert responses.write_request(REQUESTS[case], MODEL) == fixture_json(case + ".request.json")


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_request_round_trip(case):
    conversation = copy.deepcopy(REQUESTS[case])
    assert responses.read_request(responses.write_request(conversation, MODEL)) == REQUESTS[case]


# -- the shared cases: whole answers -----------------------------------------------------


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_read_response_fixture_gives_the_case(case):
    document = fixture_json(case + ".response.json")
    answer = responses.read_response(document)
    # Ids and model are the file's. Values only Responses has (item ids msg_…/fc_…/rs_…,
    # created_at, the echoed request settings) have no place in the answer: none is
    # compared, none is kept.
    assert answer.id == document["id"] == "resp_1"
    assert answer.model == REQUESTED_MODEL
    assert_same_answer(answer, ANSWERS[case])


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_write_response_gives_the_fixture(case):
    assert responses.write_response(ANSWERS[case], answer_context()) == fixture_json(case + ".response.json")


# -- the shared cases: streams -----------------------------------------------------------


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_stream_read_whole_and_event_by_event(case):
    data = fixture_bytes(case + ".stream.sse")
    for chunks in ([data], events_of(data)):
        builder = read_stream(chunks)
        assert builder.ended and builder.failure is None
        assert builder.answer.id.startswith("resp_")
        assert builder.answer.model == "gpt-5-2025-08-07"
        assert_same_answer(builder.answer, ANSWERS[case])


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_stream_read_cut_at_every_offset(case):
    data = fixture_bytes(case + ".stream.sse")
    for offset in range(1, len(data)):
        builder = read_stream([data[:offset], data[offset:]])
        assert_same_answer(builder.answer, ANSWERS[case])


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_stream_read_cut_at_random_offsets(case):
    data = fixture_bytes(case + ".stream.sse")
    rng = random.Random(1234)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(data)), 12))
        chunks = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        assert_same_answer(read_stream(chunks).answer, ANSWERS[case])


def test_error_stream_reports_the_error_after_the_partial_text():
    builder = read_stream([fixture_bytes("error.stream.sse")])
    assert isinstance(builder.failure, ProxyError)
    assert STREAM_ERROR_MESSAGE in builder.failure.message
    assert builder.failure.status == 500  # code server_error
    assert not builder.ended
    assert builder.answer.parts == [Text(STREAM_ERROR_TEXT)]


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_stream_writer_gives_the_pinned_bytes(case):
    assert written(ANSWERS[case]) == fixture_bytes(case + ".written.sse")


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_stream_writer_output_reads_back_as_the_case(case):
    builder = read_stream([written(ANSWERS[case])])
    assert builder.ended
    assert builder.answer.id == "resp_1"
    assert builder.answer.model == REQUESTED_MODEL
    assert_same_answer(builder.answer, ANSWERS[case])


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_written_events_are_compact_numbered_and_named_by_type(case):
    events = list(SSEParser().feed(written(ANSWERS[case])))
    for number, event in enumerate(events):
        payload = json.loads(event.data)
        assert dumps(payload) == event.data
        assert event.event == payload["type"]
        assert payload["sequence_number"] == number
    assert events[0].event == "response.created"
    assert events[-1].event in ("response.completed", "response.incomplete")


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_stream_truncated_before_the_terminal_event_raises(case):
    data = fixture_bytes(case + ".stream.sse")
    events = events_of(data)
    head = b"".join(events[:-1])
    with pytest.raises(UpstreamError, match="ended before"):
        read_stream([head])
    # Cut inside the terminal event, too: the parser flushes it unterminated, its JSON cut.
    with pytest.raises(UpstreamError):
        read_stream([data[: len(head) + len(events[-1]) // 2]])


# -- requests beyond the shared cases ----------------------------------------------------


def test_string_input_is_one_user_message():
    conversation = responses.read_request(body(input="Hi there", stream=True))
    assert conversation.messages == [Message(Role.USER, [Text("Hi there")])]
    assert conversation.stream is True


def test_stream_argument_overrides_the_body():
    assert responses.read_request(body(input="x", stream=True), stream=False).stream is False


def test_bare_role_items_and_string_content():
    conversation = responses.read_request(
        body(input=[{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"}])
    )
    assert conversation.messages == [
        Message(Role.USER, [Text("Hello")]),
        Message(Role.ASSISTANT, [Text("Hi!")]),
    ]


def test_leading_system_and_developer_items_join_the_instructions():
    conversation = responses.read_request(
        body(
            instructions="Be brief.",
            input=[
                {"type": "message", "role": "system", "content": "Rule one."},
                {"role": "developer", "content": [{"type": "input_text", "text": "Rule two."}]},
                {"role": "user", "content": "Go"},
                {"role": "developer", "content": "Now in French."},
            ],
        )
    )
    assert conversation.system == [Text("Be brief."), Text("Rule one."), Text("Rule two.")]
    assert conversation.messages == [
        Message(Role.USER, [Text("Go")]),
        Message(Role.SYSTEM, [Text("Now in French.")]),
    ]


def test_system_messages_in_the_conversation_are_written_as_developer_items():
    conversation = Conversation(
        system=[Text("A."), Text("B.")],
        messages=[Message(Role.USER, [Text("Go")]), Message(Role.SYSTEM, [Text("Now in French.")])],
    )
    written_body = responses.write_request(conversation, MODEL)
    assert written_body["instructions"] == "A.\n\nB."
    assert written_body["input"][1] == {
        "type": "message",
        "role": "developer",
        "content": [{"type": "input_text", "text": "Now in French."}],
    }


def test_input_image_url_and_data():
    url = "https://example.com/cat.png"
    conversation = responses.read_request(
        body(
            input=[
                {
                    "role": "user",
                    "content": [
                        {"type": "input_image", "image_url": url, "detail": "high"},
                        {"type": "input_image", "image_url": "data:image/png;base64," + PNG},
                    ],
                }
            ]
        )
    )
    assert conversation.messages[0].parts == [Media(url=url), Media("image/png", data=PNG)]
    content = responses.write_request(conversation, MODEL)["input"][0]["content"]
    assert content[0] == {"type": "input_image", "image_url": url, "detail": "auto"}


def test_input_file_data_and_url():
    pdf = "JVBERi0xLjQK"
    conversation = responses.read_request(
        body(
            input=[
                {
                    "role": "user",
                    "content": [
                        {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64," + pdf},
                        {"type": "input_file", "file_url": "https://example.com/b.pdf"},
                    ],
                }
            ]
        )
    )
    assert conversation.messages[0].parts == [
        Media("application/pdf", data=pdf, filename="a.pdf"),
        Media(url="https://example.com/b.pdf"),
    ]
    content = responses.write_request(conversation, MODEL)["input"][0]["content"]
    assert content[0] == {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64," + pdf}
    # A URL without a media type is taken for an image (what URLs in requests mostly are).
    assert content[1]["type"] == "input_image"


def test_file_without_a_name_gets_a_default_one():
    conversation = Conversation(messages=[Message(Role.USER, [Media("application/pdf", data="AAAA")])])
    part = responses.write_request(conversation, MODEL)["input"][0]["content"][0]
    assert part == {"type": "input_file", "filename": "file", "file_data": "data:application/pdf;base64,AAAA"}


def test_reasoning_item_round_trip():
    item = {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "First."}, {"type": "summary_text", "text": "Second."}],
        "encrypted_content": "gAAAAABo-secret",
    }
    conversation = responses.read_request(
        body(
            input=[
                {"role": "user", "content": "Q"},
                item,
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "ok"},
            ]
        )
    )
    assert conversation.messages[1] == Message(
        Role.ASSISTANT, [Thinking("First.\n\nSecond.", signature="gAAAAABo-secret"), ToolCall("c1", "f", {})]
    )
    items = responses.write_request(conversation, MODEL)["input"]
    assert items[1] == {
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "First.\n\nSecond."}],
        "encrypted_content": "gAAAAABo-secret",
    }
    assert responses.read_request(body(input=items)).messages == conversation.messages


def test_unsigned_thinking_is_not_written():
    conversation = Conversation(
        messages=[Message(Role.ASSISTANT, [Thinking("hmm"), Thinking("", redacted="xyz"), Text("Hi")])]
    )
    assert responses.write_request(conversation, MODEL)["input"] == [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi"}]}
    ]


def test_function_call_outputs_merge_and_parts_outputs():
    conversation = responses.read_request(
        body(
            input=[
                {"type": "function_call_output", "call_id": "a", "output": "one"},
                {
                    "type": "function_call_output",
                    "call_id": "b",
                    "output": [
                        {"type": "input_text", "text": "two"},
                        {"type": "input_image", "image_url": "https://x/y.png"},
                    ],
                },
                {"role": "user", "content": "next"},
            ]
        )
    )
    assert conversation.messages == [
        Message(
            Role.USER,
            [ToolResult("a", [Text("one")]), ToolResult("b", [Text("two"), Media(url="https://x/y.png")])],
        ),
        Message(Role.USER, [Text("next")]),
    ]


def test_images_of_tool_results_follow_the_outputs_as_a_user_message():
    conversation = Conversation(
        messages=[
            Message(
                Role.USER,
                [
                    ToolResult("a", [Text("see"), Media("image/png", data=PNG)], is_error=True),
                    ToolResult("b", [Text("x"), Text("y")]),
                    Text("what now?"),
                ],
            )
        ]
    )
    assert responses.write_request(conversation, MODEL)["input"] == [
        {"type": "function_call_output", "call_id": "a", "output": "see"},
        {"type": "function_call_output", "call_id": "b", "output": "x\ny"},
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_image", "image_url": "data:image/png;base64," + PNG, "detail": "auto"}],
        },
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "what now?"}]},
    ]


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"background": True}, "background"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "item_reference"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]}, "file_id"),
        ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]}, "file_id"),
    ],
)
def test_requests_needing_openai_state_are_refused(fields, words):
    with pytest.raises(BadRequest, match=words) as caught:
        responses.read_request(body(**fields))
    assert caught.value.status == 400


def test_built_in_tools_and_unknown_fields_are_dropped_and_logged(caplog):
    caplog.set_level(logging.DEBUG, logger="cliproxy.translate")
    conversation = responses.read_request(
        body(
            input="x",
            tools=[
                {"type": "web_search"},
                {"type": "file_search", "vector_store_ids": ["vs_1"]},
                {"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True},
                {"type": "mcp", "server_label": "s"},
            ],
            store=True,
            metadata={"a": "b"},
            include=["reasoning.encrypted_content"],
            text={"format": {"type": "text"}},
        )
    )
    assert conversation.tools == [Tool("f", None, {"type": "object"})]
    dropped = [record.fields["dropped"] for record in caplog.records if hasattr(record, "fields")]
    assert len(dropped) == 1
    names = dropped[0].split(",")
    for name in ("tools web_search", "tools file_search", "tools mcp", "tools strict"):
        assert name in names
    for name in ("store", "metadata", "include", "text"):
        assert name in names


def test_tool_without_parameters_gets_the_empty_schema():
    conversation = responses.read_request(body(input="x", tools=[{"type": "function", "name": "f"}]))
    assert conversation.tools == [Tool("f")]


@pytest.mark.parametrize(
    "wire, choice",
    [
        ("auto", ToolChoice(ToolChoiceMode.AUTO)),
        ("none", ToolChoice(ToolChoiceMode.NONE)),
        ("required", ToolChoice(ToolChoiceMode.ANY)),
        ({"type": "function", "name": "get_time"}, ToolChoice(ToolChoiceMode.TOOL, "get_time")),
    ],
)
def test_tool_choice_variants(wire, choice):
    conversation = responses.read_request(body(input="x", tool_choice=wire))
    assert conversation.tool_choice == choice
    assert responses.write_request(conversation, MODEL)["tool_choice"] == wire


def test_unknown_tool_choices_are_ignored():
    for wire in ("sometimes", {"type": "file_search"}, 7, ["auto"]):
        assert responses.read_request(body(input="x", tool_choice=wire)).tool_choice is None


@pytest.mark.parametrize(
    "effort, setting",
    [
        ("none", ThinkingSuffix(ThinkingKind.NONE)),
        ("minimal", ThinkingSuffix(ThinkingKind.LEVEL, level="minimal")),
        ("high", ThinkingSuffix(ThinkingKind.LEVEL, level="high")),
        ("extreme", None),
        (3, None),
    ],
)
def test_reasoning_effort(effort, setting):
    conversation = responses.read_request(body(input="x", reasoning={"effort": effort, "summary": "auto"}))
    assert conversation.thinking == setting


def test_thinking_setting_is_written_as_reasoning_effort():
    conversation = Conversation(messages=[Message(Role.USER, [Text("x")])])
    conversation.thinking = ThinkingSuffix(ThinkingKind.LEVEL, level="high")
    assert responses.write_request(conversation, "gpt-5")["reasoning"] == {"effort": "high"}
    conversation.thinking = ThinkingSuffix(ThinkingKind.NONE)
    assert responses.write_request(conversation, "gpt-5.1")["reasoning"] == {"effort": "none"}


def test_written_request_settings():
    conversation = Conversation(
        messages=[Message(Role.USER, [Text("x")])],
        parallel_tool_calls=False,
        stream=True,
        user="u-1",
        stop=["END"],
        top_k=5,
    )
    written_body = responses.write_request(conversation, MODEL)
    assert written_body["stream"] is True
    assert written_body["store"] is False
    assert written_body["parallel_tool_calls"] is False
    assert written_body["user"] == "u-1"
    for absent in ("stop", "top_k", "stream_options", "instructions", "tools", "tool_choice"):
        assert absent not in written_body
    read = responses.read_request(written_body)
    assert (read.parallel_tool_calls, read.stream, read.user) == (False, True, "u-1")


@pytest.mark.parametrize(
    "bad",
    [
        [],
        "text",
        {"input": 5},
        {"input": ["hello"]},
        {"input": [{"role": "boss", "content": "x"}]},
        {"input": [{"role": ["user"], "content": "x"}]},
        {"input": [{"role": "user", "content": 5}]},
        {"input": [{"role": "user", "content": ["x"]}]},
        {"input": [{"role": "user", "content": [{"type": "input_text", "text": 5}]}]},
        {"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
        {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": {"url": "x"}}]}]},
        {"input": [{"role": "user", "content": [{"type": "input_file", "file_data": "AAAA"}]}]},
        {"input": [{"role": "user", "content": [{"type": "input_file"}]}]},
        {"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
        {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": 5}]},
        {"input": [{"type": "function_call_output", "call_id": 5, "output": "x"}]},
        {"input": [{"type": "function_call_output", "call_id": "c", "output": 5}]},
        {"instructions": ["be nice"]},
        {"tools": {"type": "function"}},
        {"tools": ["f"]},
        {"tools": [{"type": "function", "name": ""}]},
        {"tools": [{"type": "function", "name": ["f"]}]},
    ],
)
def test_malformed_requests_are_bad_requests(bad):
    with pytest.raises(BadRequest):
        responses.read_request(bad)


def test_optional_settings_of_the_wrong_type_are_ignored():
    conversation = responses.read_request(
        body(
            input=[{"type": ["message"], "role": "user"}, {"type": "web_search_call", "id": "ws_1"},
                   {"role": "user", "content": [{"type": {"x": 1}}, {"type": "input_audio"}]}],
            temperature="hot",
            top_p=True,
            max_output_tokens="12",
            parallel_tool_calls="yes",
            reasoning="high",
            user=7,
            stream="yes",
            tool_choice={"type": ["function"]},
        )
    )
    assert conversation == Conversation(messages=[Message(Role.USER, [])])


# -- whole answers beyond the shared cases -----------------------------------------------


def test_refusal_and_content_filter_read_as_refusal():
    document = {
        "id": "resp_x",
        "object": "response",
        "status": "incomplete",
        "incomplete_details": {"reason": "content_filter"},
        "output": [{"type": "message", "content": [{"type": "output_text", "text": "I"}]}],
    }
    assert responses.read_response(document).stop is Stop.REFUSAL
    document = {
        "status": "completed",
        "output": [{"type": "message", "content": [{"type": "refusal", "refusal": "I can't help with that."}]}],
    }
    answer = responses.read_response(document)
    assert answer.parts == [Text("I can't help with that.")]
    assert answer.stop is Stop.REFUSAL


def test_refusal_is_written_as_incomplete_content_filter():
    document = responses.write_response(Answer(parts=[Text("No.")], stop=Stop.REFUSAL), answer_context())
    assert document["status"] == "incomplete"
    assert document["incomplete_details"] == {"reason": "content_filter"}
    events = parsed_events(written(Answer(parts=[Text("No.")], stop=Stop.REFUSAL)))
    assert events[-1][0] == "response.incomplete"
    assert events[-1][1]["response"]["incomplete_details"] == {"reason": "content_filter"}


def test_reasoning_with_encrypted_content_reads_as_signed_thinking():
    document = {
        "status": "completed",
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA-enc"},
            {"type": "reasoning", "id": "rs_2", "summary": []},
            {"type": "reasoning", "id": "rs_3", "summary": [], "content": [{"type": "reasoning_text", "text": "raw"}]},
            {"type": "web_search_call", "id": "ws_1", "status": "completed"},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": "not json"},
        ],
        "usage": {"input_tokens": 5, "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 3}},
    }
    answer = responses.read_response(document)
    assert answer.parts == [
        Thinking("", signature="gAAAA-enc"),
        Thinking("raw"),
        ToolCall("call_1", "f", {"arguments": "not json"}),
    ]
    assert answer.stop is Stop.TOOL_USE
    assert answer.usage == Usage(input_tokens=5, output_tokens=7, reasoning=3)


def test_signed_thinking_is_written_with_encrypted_content():
    answer = Answer(parts=[Thinking("why", signature="gAAAA-enc"), ToolCall("", "f", {"a": 1})], stop=Stop.TOOL_USE,
                    usage=Usage(input_tokens=3, output_tokens=4, cache_read=2, reasoning=1))
    document = responses.write_response(answer, answer_context())
    assert document["id"] == "resp_1"
    assert document["output"] == [
        {"id": "rs_2", "type": "reasoning", "summary": [{"type": "summary_text", "text": "why"}],
         "encrypted_content": "gAAAA-enc"},
        {"id": "fc_3", "type": "function_call", "status": "completed", "arguments": '{"a":1}', "call_id": "call_4",
         "name": "f"},
    ]
    assert document["usage"] == {
        "input_tokens": 3,
        "input_tokens_details": {"cached_tokens": 2},
        "output_tokens": 4,
        "output_tokens_details": {"reasoning_tokens": 1},
        "total_tokens": 7,
    }
    assert responses.read_response(document).parts == [Thinking("why", signature="gAAAA-enc"),
                                                       ToolCall("call_4", "f", {"a": 1})]


def test_answer_without_usage_is_written_with_null_usage():
    document = responses.write_response(Answer(parts=[Text("x")]), answer_context())
    assert document["usage"] is None
    assert document["created_at"] == CREATED
    assert responses.read_response(document).usage == Usage()


def test_documents_that_are_not_answers():
    for document in ({}, {"output": "x"}, {"error": {"message": "nope"}}, []):
        with pytest.raises(UpstreamError):
            responses.read_response(document)
    failed = {"status": "failed", "output": [], "error": {"code": "rate_limit_exceeded", "message": "Slow down"}}
    with pytest.raises(ProxyError) as caught:
        responses.read_response(failed)
    error = caught.value
    assert (error.status, error.error_type, error.message) == (429, "rate_limit_error", "Slow down")


# -- provider streams beyond the shared cases --------------------------------------------


def sse(*payloads):
    """Events as a provider writes them: ``event:`` line = type, compact data."""
    return b"".join(
        ("event: %s\ndata: %s\n\n" % (payload["type"], json.dumps(payload))).encode("utf-8") for payload in payloads
    )


CREATED_EVENT = {"type": "response.created", "response": {"id": "resp_p", "model": "gpt-x", "status": "in_progress"}}


def completed(output=(), status="completed", usage=None, **more):
    response = {"id": "resp_p", "status": status, "output": list(output), "usage": usage}
    response.update(more)
    return {"type": "response.%s" % ("incomplete" if status == "incomplete" else "completed"), "response": response}


class Recorder:
    """A sink that records the events it receives, in order."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name,) + args)


def test_response_failed_is_an_error_with_no_finish():
    recorder = Recorder()
    reader = responses.StreamReader(recorder)
    failed = {"type": "response.failed", "response": {"status": "failed", "error": {"code": "rate_limit_exceeded",
                                                                                    "message": "Too many"}}}
    for event in SSEParser().feed(sse(CREATED_EVENT, failed, completed())):
        reader.feed(event)
    reader.close()
    names = [call[0] for call in recorder.calls]
    assert names == ["start", "error"]
    error = recorder.calls[-1][1]
    assert (error.message, error.status, error.error_type) == ("Too many", 429, "rate_limit_error")


def test_error_event_with_a_nested_error_object():
    builder = read_stream([sse(CREATED_EVENT, {"type": "error", "error": {"code": "insufficient_quota",
                                                                          "message": "Pay up"}})])
    assert (builder.failure.message, builder.failure.status, builder.failure.error_type) == (
        "Pay up", 402, "payment_required")


def test_incomplete_content_filter_stream():
    builder = read_stream([sse(CREATED_EVENT, completed(status="incomplete",
                                                       incomplete_details={"reason": "content_filter"}))])
    assert builder.answer.stop is Stop.REFUSAL


def test_interleaved_items_are_held_back_until_the_earlier_one_stops():
    call = {"id": "fc_1", "type": "function_call", "call_id": "c1", "name": "f", "arguments": ""}
    stream = sse(
        CREATED_EVENT,
        {"type": "response.output_item.added", "output_index": 0, "item": {"id": "msg_1", "type": "message"}},
        {"type": "response.output_item.added", "output_index": 1, "item": call},
        {"type": "response.output_text.delta", "output_index": 0, "item_id": "msg_1", "delta": "Hi"},
        {"type": "response.function_call_arguments.delta", "output_index": 1, "item_id": "fc_1", "delta": '{"a"'},
        {"type": "response.output_text.delta", "output_index": 0, "item_id": "msg_1", "delta": " there"},
        {"type": "response.function_call_arguments.delta", "output_index": 1, "item_id": "fc_1", "delta": ":1}"},
        {"type": "response.output_item.done", "output_index": 1, "item": dict(call, arguments='{"a":1}')},
        {"type": "response.output_item.done", "output_index": 0,
         "item": {"id": "msg_1", "type": "message", "content": [{"type": "output_text", "text": "Hi there"}]}},
        completed(),
    )
    recorder = Recorder()
    reader = responses.StreamReader(recorder)
    for event in SSEParser().feed(stream):
        reader.feed(event)
    reader.close()
    assert recorder.calls == [
        ("start", "resp_p", "gpt-x"),
        ("block_start", 0, BlockKind.TEXT),
        ("text", 0, "Hi"),
        ("text", 0, " there"),
        ("block_stop", 0),
        ("block_start", 1, BlockKind.TOOL_CALL, "c1", "f"),
        ("arguments", 1, '{"a"'),
        ("arguments", 1, ":1}"),
        ("block_stop", 1),
        ("finish", Stop.TOOL_USE),
        ("end",),
    ]


def test_provider_sending_only_deltas_and_the_final_response():
    stream = sse(
        {"type": "response.reasoning_text.delta", "output_index": 0, "item_id": "rs_1", "delta": "think"},
        {"type": "response.output_text.delta", "output_index": 1, "item_id": "msg_1", "delta": "Hel"},
        {"type": "response.output_text.delta", "output_index": 1, "item_id": "msg_1", "delta": "lo"},
        completed(
            [
                {"id": "rs_1", "type": "reasoning", "summary": [], "encrypted_content": "enc"},
                {"id": "msg_1", "type": "message", "content": [{"type": "output_text", "text": "Hello"}]},
                {"id": "fc_1", "type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"x":2}'},
            ],
            usage={"input_tokens": 4, "output_tokens": 6, "input_tokens_details": {"cached_tokens": 0}},
        ),
    )
    builder = read_stream([stream])
    assert builder.ended
    # No response.created: the answer started with the first delta, before any id.
    assert builder.answer.id is None
    assert builder.answer.parts == [Thinking("think", signature="enc"), Text("Hello"), ToolCall("c1", "f", {"x": 2})]
    assert builder.answer.stop is Stop.TOOL_USE
    assert builder.answer.usage == Usage(input_tokens=4, output_tokens=6)


def test_provider_sending_only_the_final_response():
    builder = read_stream([sse(completed([{"type": "message", "content": [{"type": "output_text", "text": "Hi"}]}]))])
    assert builder.answer.id == "resp_p"
    assert builder.answer.parts == [Text("Hi")]


EMPTY_REASONING = {"id": "rs_1", "type": "reasoning", "summary": []}


def test_empty_reasoning_items_make_no_block_and_later_blocks_renumber():
    stream = sse(
        CREATED_EVENT,
        {"type": "response.output_item.added", "output_index": 0, "item": EMPTY_REASONING},
        {"type": "response.output_item.done", "output_index": 0, "item": EMPTY_REASONING},
        {"type": "response.output_item.added", "output_index": 1, "item": {"id": "ws_1", "type": "web_search_call"}},
        {"type": "response.output_item.added", "output_index": 2, "item": {"id": "msg_1", "type": "message"}},
        {"type": "response.output_text.delta", "output_index": 2, "item_id": "msg_1", "delta": "x"},
        completed(),
    )
    recorder = Recorder()
    reader = responses.StreamReader(recorder)
    for event in SSEParser().feed(stream):
        reader.feed(event)
    assert ("block_start", 0, BlockKind.TEXT) in recorder.calls
    assert [call for call in recorder.calls if call[0] == "block_start"] == [("block_start", 0, BlockKind.TEXT)]


def test_summary_parts_become_paragraphs_of_one_thinking():
    item = {"id": "rs_1", "type": "reasoning", "summary": []}
    stream = sse(
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {"type": "response.reasoning_summary_part.added", "output_index": 0, "item_id": "rs_1", "summary_index": 0},
        {"type": "response.reasoning_summary_text.delta", "output_index": 0, "item_id": "rs_1", "summary_index": 0,
         "delta": "One."},
        {"type": "response.reasoning_summary_part.added", "output_index": 0, "item_id": "rs_1", "summary_index": 1},
        {"type": "response.reasoning_summary_text.delta", "output_index": 0, "item_id": "rs_1", "summary_index": 1,
         "delta": "Two."},
        {"type": "response.output_item.done", "output_index": 0, "item": dict(item, encrypted_content="enc")},
        completed(),
    )
    assert read_stream([stream]).answer.parts == [Thinking("One.\n\nTwo.", signature="enc")]


def test_odd_events_are_ignored_and_bad_json_is_an_upstream_error():
    stream = b": keep-alive\n\n" + sse(
        CREATED_EVENT,
        {"type": "response.something_new", "output_index": 0},
        {"type": ["list"]},
        {"type": "response.output_text.delta", "output_index": "0", "delta": 5},
        completed(),
    ) + b"data: [DONE]\n\ndata: 5\n\n"
    builder = read_stream([stream])
    assert builder.ended and builder.answer.parts == []
    with pytest.raises(UpstreamError, match="not JSON"):
        read_stream([sse(CREATED_EVENT) + b"event: response.output_text.delta\ndata: {oops\n\n"])


def test_reader_ignores_everything_after_the_terminal_event():
    recorder = Recorder()
    reader = responses.StreamReader(recorder)
    for event in SSEParser().feed(sse(completed(), {"type": "error", "message": "late"})):
        reader.feed(event)
    reader.close()
    assert [call[0] for call in recorder.calls] == ["start", "finish", "end"]


# -- the stream writer beyond the shared cases -------------------------------------------


def test_writer_takes_usage_anywhere_and_finish_before_the_last_usage():
    writer = responses.StreamWriter(answer_context())
    writer.usage(Usage(input_tokens=10))
    writer.block_start(0, BlockKind.TEXT)
    writer.text(0, "a")
    writer.usage(Usage(output_tokens=1))
    writer.text(0, "b")
    writer.block_stop(0)
    writer.finish(Stop.END_TURN)
    writer.usage(Usage(output_tokens=2, cache_read=4))
    writer.end()
    events = parsed_events(writer.take())
    # No start: the opening events come with the first event of any kind.
    assert [name for name, _ in events[:2]] == ["response.created", "response.in_progress"]
    final = events[-1][1]["response"]
    assert final["usage"]["input_tokens"] == 10
    assert final["usage"]["output_tokens"] == 2
    assert final["usage"]["input_tokens_details"] == {"cached_tokens": 4}
    assert final["output"][0]["content"][0]["text"] == "ab"
    assert writer.take() == b""


def test_writer_error_writes_the_error_event_and_nothing_after():
    writer = responses.StreamWriter(answer_context())
    writer.start("resp_up", "m")
    writer.block_start(0, BlockKind.TEXT)
    writer.text(0, "Part")
    writer.error(UpstreamError("Overloaded"))
    writer.text(0, "more")
    writer.end()
    events = parsed_events(writer.take())
    assert events[0][1]["response"]["id"] == "resp_up"
    assert events[-1] == ("error", {"type": "error", "code": "api_error", "message": "Overloaded", "param": None})
    builder = read_stream([sse(*(payload for _, payload in events))])
    assert builder.failure.message == "Overloaded"
    assert builder.answer.parts == [Text("Part")]


def test_writer_closes_a_block_left_open_and_handles_deltas_that_need_escaping():
    writer = responses.StreamWriter(answer_context())
    writer.start(None, None)
    writer.block_start(0, BlockKind.THINKING)
    writer.signature(0, "enc")
    writer.block_start(1, BlockKind.TOOL_CALL, None, "f")
    writer.arguments(1, '{"q":"line\\n\\"x\\" é\u2028"}')
    writer.finish(Stop.TOOL_USE)
    writer.end()
    data = writer.take()
    events = parsed_events(data)
    names = [name for name, _ in events]
    # A thinking block with no text has no summary part, only its item.
    assert "response.reasoning_summary_part.added" not in names
    assert events[3][1]["item"] == {"id": "rs_2", "type": "reasoning", "summary": [], "encrypted_content": "enc"}
    builder = read_stream([data])
    assert builder.answer.parts == [Thinking("", signature="enc"), ToolCall("call_4", "f", {"q": 'line\n"x" é\u2028'})]
    assert builder.answer.stop is Stop.TOOL_USE
