"""The OpenAI Chat Completions codec (``cliproxy.translate.codecs.chat``): the shared
cases against this protocol's fixtures, then what only Chat has."""

import json
import random
from pathlib import Path

import pytest

from cliproxy.errors import BadRequest, ProxyError, UpstreamError
from cliproxy.http.sse import Event, SSEParser
from cliproxy.routing.suffix import ThinkingKind, ThinkingSuffix
from cliproxy.translate.codecs import chat
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
    MODEL,
    PNG,
    REQUESTED_MODEL,
    REQUESTS,
    STREAM_ERROR_MESSAGE,
    STREAM_ERROR_TEXT,
    answer_context,
)

FIXTURES = Path(__file__).parent / "fixtures" / "translate" / "chat"


def fixture_json(case, kind):
    return json.loads((FIXTURES / ("%s.%s" % (case, kind))).read_text(encoding="utf-8"))


def fixture_bytes(case, kind):
    return (FIXTURES / ("%s.%s" % (case, kind))).read_bytes()


class CheckedBuilder(AnswerBuilder):
    """An AnswerBuilder that also checks ir.py's block rules: indexes 0, 1, 2... in
    block_start order, one block open at a time, deltas only to the open block, and
    nothing after end or error."""

    def __init__(self):
        super().__init__()
        self.open = None
        self.count = 0
        self.over = False

    def _delta(self, index):
        assert not self.over
        assert index == self.open

    def block_start(self, index, kind, id=None, name=None):
        assert not self.over and self.open is None and index == self.count
        self.open = index
        self.count += 1
        super().block_start(index, kind, id, name)

    def text(self, index, text):
        self._delta(index)
        super().text(index, text)

    def thinking(self, index, text):
        self._delta(index)
        super().thinking(index, text)

    def arguments(self, index, fragment):
        self._delta(index)
        super().arguments(index, fragment)

    def block_stop(self, index):
        self._delta(index)
        self.open = None
        super().block_stop(index)

    def finish(self, stop, stop_sequence=None):
        assert not self.over and self.open is None
        super().finish(stop, stop_sequence)

    def end(self):
        assert not self.over
        self.over = True
        super().end()

    def error(self, error):
        assert not self.over
        self.over = True
        super().error(error)


def read_stream(data, cuts=()):
    """``data`` fed to SSEParser in the pieces ``cuts`` makes, each event to a
    StreamReader; closed unless the stream reported an error. The builder."""
    parser = SSEParser()
    builder = CheckedBuilder()
    reader = chat.StreamReader(builder)
    start = 0
    for end in list(cuts) + [len(data)]:
        for event in parser.feed(data[start:end]):
            reader.feed(event)
        start = end
    for event in parser.flush():
        reader.feed(event)
    if builder.failure is None:
        reader.close()
    return builder


def chunks_stream(*chunks):
    """An SSE stream of ``data:`` events; dicts are encoded, strings sent as they are."""
    out = []
    for chunk in chunks:
        out.append("data: %s\n\n" % (chunk if isinstance(chunk, str) else json.dumps(chunk)))
    return "".join(out).encode("utf-8")


def chunk(delta=None, finish=None, **extra):
    body = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]}
    body.update(extra)
    return body


def call_start(index, call_id, name):
    return {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}


def without_ids(answer):
    answer.id = None
    answer.model = None
    return answer


def written(answer, **options):
    writer = chat.StreamWriter(answer_context(**options))
    replay(answer, writer, dumps)
    return writer.take()


def payloads(data):
    parser = SSEParser()
    return [e.data for e in parser.feed(data) + parser.flush() if e.data is not None]


# -- the shared cases: requests ----------------------------------------------------------


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_request_fixture_reads_as_the_case(case):
    assert chat.read_request(fixture_json(case, "request.json")) == REQUESTS[case]


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_case_writes_the_request_fixture(case):
    assert chat.write_request(REQUESTS[case], MODEL) == fixture_json(case, "request.json")


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_request_round_trip(case):
    body = json.loads(dumps(chat.write_request(REQUESTS[case], MODEL)))
    assert chat.read_request(body) == REQUESTS[case]


# -- the shared cases: whole answers -----------------------------------------------------


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_response_fixture_reads_as_the_case(case):
    # Chat answers carry nothing only this protocol has beyond the id and the model
    # (no signatures): those are checked here, and the rest must equal the case.
    answer = chat.read_response(fixture_json(case, "response.json"))
    assert (answer.id, answer.model) == ("chatcmpl-1", REQUESTED_MODEL)
    assert without_ids(answer) == ANSWERS[case]


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_case_writes_the_response_fixture(case):
    assert chat.write_response(ANSWERS[case], answer_context()) == fixture_json(case, "response.json")


# -- the shared cases: streams -----------------------------------------------------------


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_stream_fixture_reads_as_the_case_however_it_is_cut(case):
    data = fixture_bytes(case, "stream.sse")
    boundaries = []
    parser = SSEParser()
    for event in parser.feed(data):
        boundaries.append((boundaries[-1] if boundaries else 0) + len(event.raw))
    rng = random.Random(7)
    cuttings = [(), boundaries[:-1]]
    cuttings += [(offset,) for offset in range(1, len(data))]
    cuttings += [sorted(rng.sample(range(1, len(data)), 25)) for _ in range(20)]
    for cuts in cuttings:
        builder = read_stream(data, cuts)
        assert builder.failure is None and builder.ended
        assert without_ids(builder.answer) == ANSWERS[case], cuts


def test_stream_fixture_keeps_the_providers_id_and_model():
    builder = read_stream(fixture_bytes("tools", "stream.sse"))
    assert builder.answer.id == "chatcmpl-9f2c4b7a1e3d4c5b8a6f0e1d2c3b4a59"
    assert builder.answer.model == "Qwen/Qwen3-Coder-30B-A3B-Instruct"


def test_error_stream_reports_the_providers_error_after_the_partial_text():
    builder = read_stream(fixture_bytes("error", "stream.sse"))
    assert isinstance(builder.failure, ProxyError)
    assert STREAM_ERROR_MESSAGE in builder.failure.message
    assert (builder.failure.status, builder.failure.error_type) == (500, "api_error")
    assert "".join(p.text for p in builder.answer.parts) == STREAM_ERROR_TEXT
    assert not builder.ended


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_writer_output_is_the_pinned_stream(case):
    assert written(ANSWERS[case]) == fixture_bytes(case, "written.sse")


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_writer_output_reads_back_as_the_case(case, include_usage):
    builder = read_stream(written(ANSWERS[case], include_usage=include_usage))
    assert builder.answer.id == "chatcmpl-1"
    assert without_ids(builder.answer) == ANSWERS[case]


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_stream_cut_before_its_finish_is_an_upstream_error(case):
    reader = chat.StreamReader(CheckedBuilder())
    for event in SSEParser().feed(fixture_bytes(case, "stream.sse")):
        if b'"finish_reason":"' in event.raw:
            break
        reader.feed(event)
    with pytest.raises(UpstreamError, match="ended before"):
        reader.close()


def test_empty_stream_is_an_upstream_error():
    with pytest.raises(UpstreamError):
        chat.StreamReader(CheckedBuilder()).close()


# -- requests: what only Chat has --------------------------------------------------------


def test_leading_system_and_developer_messages_are_the_system_later_ones_stay_in_place():
    conversation = chat.read_request({"messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "system", "content": [{"type": "text", "text": "Use tools."}]},
        {"role": "user", "content": "hi"},
        {"role": "developer", "content": "Now be verbose."},
        {"role": "user", "content": "again"},
    ]})
    assert conversation.system == [Text("Be brief."), Text("Use tools.")]
    assert conversation.messages == [
        Message(Role.USER, [Text("hi")]),
        Message(Role.SYSTEM, [Text("Now be verbose.")]),
        Message(Role.USER, [Text("again")]),
    ]
    body = chat.write_request(conversation, "m")
    assert body["messages"] == [
        {"role": "system", "content": "Be brief.\n\nUse tools."},
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "Now be verbose."},
        {"role": "user", "content": "again"},
    ]


def test_url_image_is_read_and_written_as_a_url():
    conversation = chat.read_request({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
    ]}]})
    assert conversation.messages[0].parts == [Media(url="https://example.com/cat.jpg")]
    body = chat.write_request(conversation, "m")
    assert body["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
    ]


def test_file_part_is_media_with_its_filename_both_ways():
    body = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Summarise"},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}},
    ]}]}
    conversation = chat.read_request(body)
    assert conversation.messages[0].parts == [
        Text("Summarise"), Media("application/pdf", data="JVBERi0x", filename="a.pdf")
    ]
    assert chat.write_request(conversation, "m")["messages"] == body["messages"]


def test_file_part_with_bare_base64_is_a_pdf():
    conversation = chat.read_request({"messages": [{"role": "user", "content": [
        {"type": "file", "file": {"file_data": "JVBERi0x"}}]}]})
    assert conversation.messages[0].parts == [Media("application/pdf", data="JVBERi0x")]


def test_file_id_cannot_be_served():
    with pytest.raises(BadRequest, match="file_id"):
        chat.read_request({"messages": [{"role": "user", "content": [
            {"type": "file", "file": {"file_id": "file-abc"}}]}]})


def test_input_audio_is_dropped():
    conversation = chat.read_request({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "listen"},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
    ]}]})
    assert conversation.messages[0].parts == [Text("listen")]


@pytest.mark.parametrize("stop, expected", [("END", ["END"]), (["a", "b"], ["a", "b"]), (None, []), (5, [])])
def test_stop_is_a_string_or_a_list(stop, expected):
    conversation = chat.read_request({"messages": [], "stop": stop})
    assert conversation.stop == expected
    assert chat.write_request(conversation, "m").get("stop") == (expected or None)


def test_max_completion_tokens_wins_over_max_tokens():
    conversation = chat.read_request({"messages": [], "max_tokens": 100, "max_completion_tokens": 200})
    assert conversation.max_output_tokens == 200


@pytest.mark.parametrize(
    "model, field",
    [("o3-mini", "max_completion_tokens"), ("o1", "max_completion_tokens"), ("gpt-5-codex", "max_completion_tokens"),
     ("GPT-5.1", "max_completion_tokens"), ("gpt-4.1", "max_tokens"), ("qwen3-coder", "max_tokens"),
     ("openai/gpt-5", "max_tokens"), ("omni-model", "max_tokens")],
)
def test_written_token_limit_field_follows_the_model(model, field):
    body = chat.write_request(Conversation(max_output_tokens=64), model)
    assert body[field] == 64
    assert {"max_tokens", "max_completion_tokens"} & set(body) == {field}


@pytest.mark.parametrize(
    "effort, suffix",
    [("high", ThinkingSuffix(ThinkingKind.LEVEL, level="high")),
     ("minimal", ThinkingSuffix(ThinkingKind.LEVEL, level="minimal")),
     ("none", ThinkingSuffix(ThinkingKind.NONE)),
     ("bogus", None), (3, None)],
)
def test_reasoning_effort_is_the_thinking_setting(effort, suffix):
    assert chat.read_request({"messages": [], "reasoning_effort": effort}).thinking == suffix


def test_thinking_setting_is_written_as_reasoning_effort():
    conversation = Conversation(thinking=ThinkingSuffix(ThinkingKind.LEVEL, level="high"))
    assert chat.write_request(conversation, "qwen3")["reasoning_effort"] == "high"
    conversation.thinking = ThinkingSuffix(ThinkingKind.BUDGET, budget=1024)
    assert chat.write_request(conversation, "o3")["reasoning_effort"] == "low"
    assert "reasoning_effort" not in chat.write_request(Conversation(), "o3")


TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]


@pytest.mark.parametrize(
    "wire, choice",
    [("auto", ToolChoice(ToolChoiceMode.AUTO)),
     ("none", ToolChoice(ToolChoiceMode.NONE)),
     ("required", ToolChoice(ToolChoiceMode.ANY)),
     ({"type": "function", "function": {"name": "f"}}, ToolChoice(ToolChoiceMode.TOOL, "f"))],
)
def test_tool_choice_both_ways(wire, choice):
    conversation = chat.read_request({"messages": [], "tools": TOOLS, "tool_choice": wire})
    assert conversation.tool_choice == choice
    assert chat.write_request(conversation, "m")["tool_choice"] == wire


@pytest.mark.parametrize("wire", ["sometimes", {"type": "allowed_tools"}, {"type": "function"}, 7])
def test_unknown_tool_choice_is_ignored(wire):
    assert chat.read_request({"messages": [], "tools": TOOLS, "tool_choice": wire}).tool_choice is None


def test_tool_choice_and_parallel_calls_are_written_only_with_tools():
    conversation = Conversation(tool_choice=ToolChoice(ToolChoiceMode.ANY), parallel_tool_calls=False)
    assert "tool_choice" not in chat.write_request(conversation, "m")
    assert "parallel_tool_calls" not in chat.write_request(conversation, "m")
    conversation.tools = [Tool("f")]
    body = chat.write_request(conversation, "m")
    assert (body["tool_choice"], body["parallel_tool_calls"]) == ("required", False)
    assert chat.read_request(body).parallel_tool_calls is False


def test_other_tool_kinds_and_strict_are_dropped():
    conversation = chat.read_request({"messages": [], "tools": [
        {"type": "function", "function": {"name": "f", "description": "d", "strict": True}},
        {"type": "custom", "custom": {"name": "g"}},
    ]})
    assert conversation.tools == [Tool("f", "d")]


def test_n_above_one_is_refused():
    with pytest.raises(BadRequest, match="n greater than 1"):
        chat.read_request({"messages": [], "n": 2})
    assert chat.read_request({"messages": [], "n": 1}).messages == []


def test_sampling_user_and_top_k_are_read():
    conversation = chat.read_request({
        "messages": [], "temperature": 1, "top_p": 0.5, "top_k": 40, "user": "u-1", "seed": 3,
        "response_format": {"type": "json_object"}, "stream": True, "stream_options": {"include_usage": True},
    })
    assert (conversation.temperature, conversation.top_p, conversation.top_k) == (1, 0.5, 40)
    assert conversation.user == "u-1"
    assert conversation.stream is True
    body = chat.write_request(conversation, "m")
    assert "top_k" not in body
    assert body["user"] == "u-1"


def test_stream_argument_wins_over_the_body():
    assert chat.read_request({"messages": [], "stream": True}, stream=False).stream is False


def test_a_stream_asks_for_usage():
    body = chat.write_request(Conversation(stream=True), "m")
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert "stream" not in chat.write_request(Conversation(), "m")


def test_tool_messages_merge_with_the_user_message_after_them():
    conversation = chat.read_request({"messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "b", "type": "function", "function": {"name": "g", "arguments": {"x": 1}}}]},
        {"role": "tool", "tool_call_id": "a", "content": [{"type": "text", "text": "one"}]},
        {"role": "tool", "tool_call_id": "b", "content": "two"},
        {"role": "user", "content": "and then?"},
        {"role": "user", "content": "hello?"},
    ]})
    assert conversation.messages[1:] == [
        Message(Role.ASSISTANT, [ToolCall("a", "f", {}), ToolCall("b", "g", {"x": 1})]),
        Message(Role.USER, [ToolResult("a", [Text("one")], name="f"), ToolResult("b", [Text("two")], name="g"),
                            Text("and then?")]),
        Message(Role.USER, [Text("hello?")]),
    ]
    body = chat.write_request(conversation, "m")
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "tool", "tool", "user", "user"]
    assert chat.read_request(body) == conversation


def test_tool_result_with_an_image_and_an_error():
    conversation = Conversation(messages=[
        Message(Role.ASSISTANT, [ToolCall("c1", "shot", {}), ToolCall("c2", "run", {})]),
        Message(Role.USER, [
            ToolResult("c1", [Text("screenshot:"), Media("image/png", data=PNG)]),
            ToolResult("c2", [Text("exit 1")], is_error=True),
            Text("What now?"),
        ]),
    ])
    body = chat.write_request(conversation, "m")
    assert body["messages"][1:] == [
        {"role": "tool", "tool_call_id": "c1", "content": "screenshot:"},
        {"role": "tool", "tool_call_id": "c2", "content": "Error: exit 1"},
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}},
            {"type": "text", "text": "What now?"},
        ]},
    ]
    back = chat.read_request(body)
    assert back.messages[1].parts == [
        ToolResult("c1", [Text("screenshot:")], name="shot"),
        ToolResult("c2", [Text("Error: exit 1")], name="run"),
        Media("image/png", data=PNG),
        Text("What now?"),
    ]


def test_assistant_reasoning_is_read_but_never_written():
    conversation = chat.read_request({"messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a", "reasoning_content": "think"},
        {"role": "assistant", "content": [{"type": "text", "text": "b"}], "reasoning": "more"},
    ]})
    assert conversation.messages[1:] == [
        Message(Role.ASSISTANT, [Thinking("think"), Text("a")]),
        Message(Role.ASSISTANT, [Thinking("more"), Text("b")]),
    ]
    written_messages = chat.write_request(conversation, "m")["messages"]
    assert written_messages[1:] == [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]


def test_empty_messages_are_left_out():
    conversation = chat.read_request({"messages": [
        {"role": "user", "content": ""}, {"role": "assistant", "content": None}, {"role": "user", "content": "x"}]})
    assert conversation.messages == [Message(Role.USER, [Text("x")])]
    only_thinking = Conversation(messages=[Message(Role.ASSISTANT, [Thinking("t")])])
    assert chat.write_request(only_thinking, "m")["messages"] == []


@pytest.mark.parametrize(
    "body, words",
    [
        ([], "JSON object"),
        ({}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": ["hi"]}, "messages[0]"),
        ({"messages": [{"role": "function", "content": "x"}]}, "role"),
        ({"messages": [{"role": "user", "content": 5}]}, "content"),
        ({"messages": [{"role": "user", "content": [5]}]}, "content[0]"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]}, "text"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 3}}]}]}, "url"),
        ({"messages": [{"role": "user", "content": [{"type": "file", "file": "x"}]}]}, "file"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "tool_call_id"),
        ({"messages": [{"role": "assistant", "tool_calls": {"id": "a"}}]}, "tool_calls"),
        ({"messages": [{"role": "assistant", "tool_calls": ["a"]}]}, "tool_calls[0]"),
        ({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}]}, "id"),
        ({"messages": [{"role": "assistant", "tool_calls": [{"id": "a", "function": "f"}]}]}, "name"),
        ({"messages": [{"role": "assistant", "tool_calls": [{"id": "a", "type": "custom"}]}]}, "type"),
        ({"messages": [], "tools": {"type": "function"}}, "tools"),
        ({"messages": [], "tools": [7]}, "tools[0]"),
        ({"messages": [], "tools": [{"type": "function", "function": {}}]}, "name"),
        ({"messages": [], "tools": [{"function": {"name": "f", "parameters": []}}]}, "parameters"),
    ],
)
def test_malformed_requests_are_bad_requests(body, words):
    with pytest.raises(BadRequest) as caught:
        chat.read_request(body)
    assert words in caught.value.message


def test_optional_fields_of_the_wrong_type_are_ignored():
    conversation = chat.read_request({
        "messages": [{"role": "user", "content": "x", "name": 5}],
        "max_tokens": "many", "temperature": "hot", "top_p": [1], "top_k": True, "stream": "yes",
        "parallel_tool_calls": "no", "user": {"id": 1}, "n": "two", "stop": [1, 2], "reasoning_effort": ["high"],
        "tool_choice": ["auto"],
    })
    assert conversation == Conversation(messages=[Message(Role.USER, [Text("x")])])


# -- whole answers: what only Chat has ---------------------------------------------------


def completion(message, finish="stop", **extra):
    body = {"id": "chatcmpl-r", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": dict({"role": "assistant"}, **message), "finish_reason": finish}]}
    body.update(extra)
    return body


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_answer_reasoning_comes_first(field):
    answer = chat.read_response(completion({"content": "42", field: "hmm"}))
    assert answer.parts == [Thinking("hmm"), Text("42")]


def test_answer_tool_calls_with_finish_stop_are_tool_use():
    answer = chat.read_response(completion({"content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
        {"type": "function", "function": {"name": "g", "arguments": "not json"}},
    ]}))
    assert answer.parts == [
        ToolCall("call_1", "f", {"a": 1}), ToolCall("call_chatcmpl-r_1", "g", {"arguments": "not json"})
    ]
    assert answer.stop is Stop.TOOL_USE


def test_answer_legacy_function_call_is_a_tool_call():
    answer = chat.read_response(completion({"function_call": {"name": "f", "arguments": "{}"}}, "function_call"))
    assert answer.parts == [ToolCall("call_chatcmpl-r_0", "f", {})]
    assert answer.stop is Stop.TOOL_USE


@pytest.mark.parametrize(
    "finish, stop",
    [("stop", Stop.END_TURN), ("length", Stop.MAX_TOKENS), ("tool_calls", Stop.TOOL_USE),
     ("content_filter", Stop.REFUSAL), ("eos", Stop.END_TURN), (None, Stop.END_TURN)],
)
def test_answer_finish_reasons(finish, stop):
    assert chat.read_response(completion({"content": "x"}, finish)).stop is stop


def test_answer_refusal_is_text_and_a_refusal():
    answer = chat.read_response(completion({"content": None, "refusal": "I can't help with that."}))
    assert answer.parts == [Text("I can't help with that.")]
    assert answer.stop is Stop.REFUSAL


def test_answer_usage_details_and_deepseek_cache_hits():
    answer = chat.read_response(completion({"content": "x"}, usage={
        "prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 60}, "completion_tokens_details": {"reasoning_tokens": 20}}))
    assert answer.usage == Usage(100, 50, cache_read=60, reasoning=20)
    deepseek = chat.read_response(completion({"content": "x"}, usage={
        "prompt_tokens": 100, "completion_tokens": 5, "prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 36}))
    assert deepseek.usage == Usage(100, 5, cache_read=64)


def test_written_answer_keeps_its_id_and_gives_ids_to_calls_without_one():
    answer = Answer(id="msg_1", parts=[ToolCall("", "f", {"a": 1})], stop=Stop.TOOL_USE,
                    usage=Usage(3, 4, reasoning=2))
    body = chat.write_response(answer, answer_context())
    assert body["id"] == "msg_1"
    assert body["choices"][0]["message"]["content"] is None
    assert body["choices"][0]["message"]["tool_calls"][0]["id"] == "call_1"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
                             "completion_tokens_details": {"reasoning_tokens": 2}}


@pytest.mark.parametrize(
    "document",
    [{"error": {"message": "bad key"}}, {"object": "chat.completion"}, {"choices": []}, {"choices": ["x"]},
     {"choices": [{"message": "hi"}]}, []],
)
def test_documents_that_are_not_answers_are_upstream_errors(document):
    with pytest.raises(UpstreamError):
        chat.read_response(document)


# -- streams: what only Chat has ---------------------------------------------------------


def test_stream_reasoning_field_and_reasoning_content():
    builder = read_stream(chunks_stream(
        chunk({"role": "assistant", "reasoning": "Hm"}),  # Ollama / OpenRouter spelling
        chunk({"reasoning_content": "m."}),
        chunk({"content": "Yes"}, "stop"),
        "[DONE]",
    ))
    assert builder.answer.parts == [Thinking("Hmm."), Text("Yes")]


def test_interleaved_parallel_tool_calls_are_held_back_not_overlapped():
    builder = read_stream(chunks_stream(
        chunk({"tool_calls": [call_start(0, "call_a", "f"), call_start(1, "call_b", "g")]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"y":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x":'}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": "2}"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        chunk({}, "tool_calls"),
        "[DONE]",
    ))
    assert builder.answer.parts == [ToolCall("call_a", "f", {"x": 1}), ToolCall("call_b", "g", {"y": 2})]
    assert builder.answer.stop is Stop.TOOL_USE


def test_a_new_id_under_a_used_index_is_a_new_call():
    # vLLM and SGLang have streamed every call under index 0, each with its own id.
    builder = read_stream(chunks_stream(
        chunk({"tool_calls": [call_start(0, "t-1", "f")]}),
        chunk({"tool_calls": [{"index": 0, "id": "", "function": {"arguments": '{"x":1}'}}]}),
        chunk({"tool_calls": [call_start(0, "t-2", "g")]}),
        chunk({"tool_calls": [{"index": 0, "id": "t-2", "function": {"arguments": '{"y":2}'}}]}),
        chunk({}, "tool_calls"),
        "[DONE]",
    ))
    assert builder.answer.parts == [ToolCall("t-1", "f", {"x": 1}), ToolCall("t-2", "g", {"y": 2})]


def test_stream_calls_without_ids_or_index_get_ids_from_the_answer_and_position():
    builder = read_stream(chunks_stream(
        chunk({"tool_calls": [{"function": {"name": "f", "arguments": '{"a":'}}]}),
        chunk({"tool_calls": [{"function": {"arguments": "1}"}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"name": "g", "arguments": {"b": 2}}}]}),
        chunk({}, "stop"),
        "[DONE]",
    ))
    assert builder.answer.parts == [
        ToolCall("call_chatcmpl-x_0", "f", {"a": 1}), ToolCall("call_chatcmpl-x_1", "g", {"b": 2})
    ]
    assert builder.answer.stop is Stop.TOOL_USE  # "stop" after tool calls


def test_a_call_whose_name_comes_late_waits_for_it():
    builder = read_stream(chunks_stream(
        chunk({"content": "Hi"}),
        chunk({"tool_calls": [{"index": 0, "id": "c", "type": "function", "function": {"arguments": "{"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "}"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"name": "f"}}]}),  # repeated names are not appended
        chunk({}, "tool_calls"),
    ))
    assert builder.answer.parts == [Text("Hi"), ToolCall("c", "f", {})]


def test_usage_in_the_finish_chunk_and_content_with_the_finish():
    builder = read_stream(chunks_stream(
        chunk({"role": "assistant", "content": "Hello"}),
        chunk({"content": " there"}, "length", usage={"prompt_tokens": 5, "completion_tokens": 2}),
        "[DONE]",
    ))
    assert builder.answer.parts == [Text("Hello there")]
    assert builder.answer.stop is Stop.MAX_TOKENS
    assert builder.answer.usage == Usage(5, 2)


def test_stream_without_done_ends_at_eof_after_its_finish():
    builder = read_stream(chunks_stream(chunk({"content": "ok"}, "stop")))
    assert builder.ended and builder.failure is None
    assert builder.answer.parts == [Text("ok")]


def test_done_without_a_finish_reason_ends_the_answer():
    builder = read_stream(chunks_stream(chunk({"content": "ok"}), "[DONE]"))
    assert builder.ended and builder.answer.stop is Stop.END_TURN


def test_chunks_after_the_finish_add_only_usage():
    builder = read_stream(chunks_stream(
        chunk({"content": "ok"}, "stop"),
        chunk({"content": "late"}, "stop", usage={"prompt_tokens": 1, "completion_tokens": 1}),
        "[DONE]",
        chunk({"content": "after the end"}),
    ))
    assert builder.answer.parts == [Text("ok")]
    assert builder.answer.usage == Usage(1, 1)


@pytest.mark.parametrize(
    "error_chunk, status, kind",
    [
        ({"error": {"message": "Overloaded", "type": "server_error", "param": None, "code": None}}, 500, "api_error"),
        ({"error": {"message": "Overloaded", "type": "BadRequestError", "code": 400}}, 400, "invalid_request_error"),
        ({"object": "error", "message": "Overloaded", "type": "ServiceUnavailable", "code": 503}, 503, "api_error"),
        (chunk({"content": ""}, "error", error={"code": 429, "message": "Overloaded"}), 429, "rate_limit_error"),
        ({"error": {"message": "Overloaded", "code": "rate_limit_exceeded"}}, 429, "rate_limit_error"),
        ({"error": "Overloaded"}, 502, "api_error"),
    ],
)
def test_error_chunks_of_several_servers(error_chunk, status, kind):
    builder = read_stream(chunks_stream(chunk({"content": "Partial"}), error_chunk, "[DONE]"))
    assert builder.failure.message == "Overloaded"
    assert (builder.failure.status, builder.failure.error_type) == (status, kind)
    assert not builder.ended


def test_finish_reason_error_without_an_error_object_is_a_failure():
    builder = read_stream(chunks_stream(chunk({"content": "Par"}, "error")))
    assert isinstance(builder.failure, UpstreamError)


def test_an_event_that_is_not_json_is_an_upstream_error():
    reader = chat.StreamReader(CheckedBuilder())
    with pytest.raises(UpstreamError, match="not JSON"):
        reader.feed(Event(b"data: {oops\n\n", data="{oops"))


@pytest.mark.parametrize("odd", ["[1, 2]", '"text"', '{"choices": "x"}', '{"choices": [5]}',
                                 '{"choices": [{"delta": "x"}]}', '{"choices": [{"delta": {"tool_calls": [5]}}]}',
                                 '{"choices": [{"delta": {"tool_calls": [{"index": 0, "function": 5}]}}]}',
                                 '{"choices": [{"delta": {"content": 5, "reasoning": {}}}]}', '{"usage": 5}'])
def test_odd_chunks_are_ignored(odd):
    builder = read_stream(chunks_stream(odd, chunk({"content": "ok"}, "stop"), "[DONE]"))
    assert builder.answer.parts == [Text("ok")]


def test_pings_and_comments_are_ignored():
    data = b": ping\n\nevent: ping\ndata: \n\n" + chunks_stream(chunk({"content": "ok"}, "stop"), "[DONE]")
    builder = read_stream(data)
    assert builder.answer.parts == [Text("ok")]


def test_writer_with_include_usage_writes_a_usage_chunk():
    data = written(ANSWERS["text"], include_usage=True)
    chunks = [json.loads(p) for p in payloads(data)[:-1]]
    assert payloads(data)[-1] == "[DONE]"
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20,
                                   "prompt_tokens_details": {"cached_tokens": 10}}


def test_writer_without_include_usage_puts_known_usage_on_the_finish_chunk_only():
    chunks = [json.loads(p) for p in payloads(written(ANSWERS["max_tokens"]))[:-1]]
    assert ["usage" in c for c in chunks] == [False, False, True]
    assert chunks[-1]["usage"]["total_tokens"] == 13
    unknown = [json.loads(p) for p in payloads(written(Answer(parts=[Text("x")])))[:-1]]
    assert not any("usage" in c for c in unknown)


def test_writer_closes_at_end_with_usage_that_came_after_finish():
    writer = chat.StreamWriter(answer_context(include_usage=True))
    writer.text(0, "early")  # no start, no block_start: the opening chunk comes first
    writer.finish(Stop.TOOL_USE)
    writer.usage(Usage(7, 3))
    assert b'"finish_reason":"' not in writer.take()
    writer.end()
    chunks = [json.loads(p) for p in payloads(writer.take())[:-1]]
    assert chunks[0]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[1]["usage"]["prompt_tokens"] == 7


def test_writer_opening_chunk_and_new_ids():
    writer = chat.StreamWriter(answer_context())
    writer.block_start(0, BlockKind.TOOL_CALL, None, "f")
    writer.arguments(0, '{"a":1}')
    writer.block_stop(0)
    writer.end()
    chunks = [json.loads(p) for p in payloads(writer.take())[:-1]]
    assert chunks[0]["id"] == "chatcmpl-1"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[1]["choices"][0]["delta"]["tool_calls"][0]["id"] == "call_2"
    assert chunks[0]["created"] == 1767225600 and chunks[0]["model"] == REQUESTED_MODEL


def test_writer_error_is_the_last_thing_written():
    writer = chat.StreamWriter(answer_context())
    writer.start("chatcmpl-e", None)
    writer.block_start(0, BlockKind.TEXT)
    writer.text(0, STREAM_ERROR_TEXT)
    writer.error(ProxyError(STREAM_ERROR_MESSAGE, status=529, error_type="overloaded_error"))
    writer.text(0, "more")
    writer.finish(Stop.END_TURN)
    writer.end()
    data = writer.take()
    assert json.loads(payloads(data)[-1]) == {
        "error": {"message": STREAM_ERROR_MESSAGE, "type": "api_error", "param": None, "code": "overloaded_error"}}
    builder = read_stream(data)
    assert builder.failure.message == STREAM_ERROR_MESSAGE
    assert builder.answer.parts == [Text(STREAM_ERROR_TEXT)]


def test_writer_escapes_text_as_json():
    writer = chat.StreamWriter(answer_context())
    writer.text(0, 'quote " backslash \\ newline \n é \u2028')
    writer.end()
    chunks = [json.loads(p) for p in payloads(writer.take())[:-1]]
    assert chunks[1]["choices"][0]["delta"]["content"] == 'quote " backslash \\ newline \n é \u2028'
