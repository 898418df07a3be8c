"""Gemini generateContent codec: requests, whole answers, streams, and the schema subset."""

import json
import random
from pathlib import Path

import pytest

from cliproxy.errors import BadRequest, ProxyError, UpstreamError
from cliproxy.http.sse import Event, SSEParser
from cliproxy.routing.suffix import ThinkingKind, ThinkingSuffix
from cliproxy.translate.codecs import gemini
from cliproxy.translate.codecs.gemini_schema import KEPT, MAX_DEPTH, MAX_NODES, from_gemini, to_gemini
from cliproxy.translate.context import dumps
from cliproxy.translate.errors import error_event
from cliproxy.translate.ir import (
    Answer,
    AnswerBuilder,
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

FIXTURES = Path(__file__).parent / "fixtures" / "translate" / "gemini"
UPSTREAM = "gemini-2.5-flash"


def _json(name):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def _bytes(name):
    return (FIXTURES / name).read_bytes()


def _without_ids(answer):
    """The answer with the id and model a provider gives it cleared (the shared cases
    have none)."""
    answer.id = None
    answer.model = None
    return answer


def _collect(pieces):
    """The answer a builder collects from SSE ``pieces`` read by our StreamReader."""
    parser = SSEParser()
    builder = AnswerBuilder()
    reader = gemini.StreamReader(builder)
    for piece in pieces:
        for event in parser.feed(piece):
            reader.feed(event)
    for event in parser.flush():
        reader.feed(event)
    reader.close()
    return builder


def _events(data):
    parser = SSEParser()
    return parser.feed(data) + parser.flush()


def _chunk(parts, finish=None, usage=None, response_id="r1"):
    candidate = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    document = {"candidates": [candidate], "modelVersion": UPSTREAM, "responseId": response_id}
    if usage:
        document["usageMetadata"] = usage
    return document


def _sse(*documents):
    return b"".join(b"data: " + dumps(doc).encode("utf-8") + b"\r\n\r\n" for doc in documents)


def _read(body, **kwargs):
    return gemini.read_request(body, model=MODEL, stream=False, **kwargs)


def _user(text="hi"):
    return [{"role": "user", "parts": [{"text": text}]}]


# -- shared cases: requests ------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_request_fixture_reads_as_the_case(case):
    assert _read(_json(case + ".request.json")) == REQUESTS[case]


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_request_case_writes_the_fixture(case):
    assert gemini.write_request(REQUESTS[case], MODEL) == _json(case + ".request.json")


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_request_round_trip(case):
    assert _read(gemini.write_request(REQUESTS[case], MODEL)) == REQUESTS[case]


def test_request_stream_flag_and_model_come_from_the_url():
    body = _json("text.request.json")
    assert gemini.read_request(body, model=MODEL, stream=True).stream is True
    assert gemini.read_request(body).stream is False
    assert "model" not in gemini.write_request(REQUESTS["text"], MODEL)


# -- shared cases: whole answers -------------------------------------------------------


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_response_fixture_reads_as_the_case(case):
    answer = gemini.read_response(_json(case + ".response.json"))
    assert (answer.id, answer.model) == ("1", REQUESTED_MODEL)
    assert _without_ids(answer) == ANSWERS[case]


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_response_case_writes_the_fixture(case):
    assert gemini.write_response(ANSWERS[case], answer_context()) == _json(case + ".response.json")


# -- shared cases: stream reading ------------------------------------------------------

# The tools stream carries a thoughtSignature on its first call, and the thinking stream
# one on its text part: the neutral model has no place for either, so they are skipped.


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_stream_fixture_read_whole(case):
    builder = _collect([_bytes(case + ".stream.sse")])
    assert builder.ended and builder.failure is None
    assert builder.answer.model == UPSTREAM and builder.answer.id
    assert _without_ids(builder.answer) == ANSWERS[case]


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_stream_fixture_read_event_by_event(case):
    pieces = [event.raw for event in _events(_bytes(case + ".stream.sse"))]
    assert len(pieces) >= 2
    assert _without_ids(_collect(pieces).answer) == ANSWERS[case]


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_stream_fixture_cut_at_every_byte(case):
    data = _bytes(case + ".stream.sse")
    for cut in range(1, len(data)):
        answer = _without_ids(_collect([data[:cut], data[cut:]]).answer)
        assert answer == ANSWERS[case], cut


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_stream_fixture_cut_at_random_places(case):
    data = _bytes(case + ".stream.sse")
    rng = random.Random(20260101)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(data)), 6))
        pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        assert _without_ids(_collect(pieces).answer) == ANSWERS[case]


def test_error_stream_fails_with_the_providers_message():
    builder = _collect([_bytes("error.stream.sse")])
    assert isinstance(builder.failure, ProxyError)
    assert STREAM_ERROR_MESSAGE in builder.failure.message
    assert (builder.failure.status, builder.failure.error_type) == (503, "overloaded_error")
    assert [part.text for part in builder.answer.parts] == [STREAM_ERROR_TEXT]
    assert not builder.ended


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_stream_truncated_before_its_finish_reason_raises(case):
    events = _events(_bytes(case + ".stream.sse"))
    builder = AnswerBuilder()
    reader = gemini.StreamReader(builder)
    for event in events[:-1]:
        reader.feed(event)
    with pytest.raises(UpstreamError, match="ended before"):
        reader.close()
    assert not builder.ended


def test_stream_event_that_is_not_json_raises():
    reader = gemini.StreamReader(AnswerBuilder())
    with pytest.raises(UpstreamError):
        reader.feed(Event(b"", data='{"candidates": ['))


def test_stream_reader_ignores_comments_and_odd_chunks():
    builder = AnswerBuilder()
    reader = gemini.StreamReader(builder)
    for event in _events(b": keep-alive\r\n\r\ndata: [1, 2]\r\n\r\ndata: {}\r\n\r\n"):
        reader.feed(event)
    reader.feed(Event(b"", data=dumps(_chunk([{"text": "ok"}, {"bogus": 1}, "x"], "STOP"))))
    reader.close()
    assert builder.answer.parts == [Text("ok")]


# -- shared cases: stream writing ------------------------------------------------------


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_writer_output_is_the_pinned_stream(case):
    writer = gemini.StreamWriter(answer_context())
    replay(ANSWERS[case], writer, dumps)
    assert writer.take() == _bytes(case + ".written.sse")


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_writer_output_reads_back_as_the_case(case):
    builder = _collect([_bytes(case + ".written.sse")])
    assert (builder.answer.id, builder.answer.model) == ("1", REQUESTED_MODEL)
    assert _without_ids(builder.answer) == ANSWERS[case]


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_writer_json_array_mode_holds_the_same_chunks(case):
    sse = gemini.StreamWriter(answer_context())
    replay(ANSWERS[case], sse, dumps)
    chunks = [json.loads(event.data) for event in _events(sse.take())]
    writer = gemini.StreamWriter(answer_context(gemini_sse=False))
    replay(ANSWERS[case], writer, dumps)
    data = writer.take()
    assert data.startswith(b"[{") and data.endswith(b"}\n]")
    assert data.count(b"\n,\r\n") == len(chunks) - 1
    assert json.loads(data) == chunks


def test_writer_json_array_is_streamed_piece_by_piece():
    writer = gemini.StreamWriter(answer_context(gemini_sse=False))
    writer.start("r9", UPSTREAM)
    assert writer.take() == b""
    writer.block_start(0, gemini.BlockKind.TEXT)
    writer.text(0, "Hi")
    first = writer.take()
    assert first == b'[{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"index":0}],' \
                    b'"modelVersion":"client-model","responseId":"r9"}'
    writer.text(0, " there")
    assert writer.take().startswith(b'\n,\r\n{"candidates"')
    writer.block_stop(0)
    writer.finish(Stop.END_TURN)
    writer.end()
    last = writer.take()
    assert last.startswith(b"\n,\r\n{") and last.endswith(b"}\n]")


def test_writer_error_in_sse_is_the_protocols_error_event_and_nothing_after():
    error = ProxyError("Overloaded", status=503, error_type="overloaded_error")
    writer = gemini.StreamWriter(answer_context())
    writer.start(None, None)
    writer.block_start(0, gemini.BlockKind.TEXT)
    writer.text(0, "Partial")
    writer.take()
    writer.error(error)
    writer.text(0, "more")
    writer.end()
    assert writer.take() == error_event(gemini.PROTOCOL, error)


def test_writer_error_in_json_array_closes_the_array():
    error = ProxyError("Overloaded", status=503, error_type="overloaded_error")
    writer = gemini.StreamWriter(answer_context(gemini_sse=False))
    writer.text(0, "Partial")
    writer.error(error)
    writer.end()
    chunks = json.loads(writer.take())
    assert chunks[-1]["error"] == {"code": 503, "message": "Overloaded", "status": "UNAVAILABLE",
                                   "type": "overloaded_error"}
    only_error = gemini.StreamWriter(answer_context(gemini_sse=False))
    only_error.error(error)
    assert json.loads(only_error.take())[0]["error"]["message"] == "Overloaded"


def test_writer_takes_usage_in_any_order_and_opens_without_start():
    writer = gemini.StreamWriter(answer_context())
    writer.block_start(0, gemini.BlockKind.TEXT)
    writer.text(0, "a")
    writer.usage(Usage(input_tokens=5))
    writer.block_stop(0)
    writer.finish(Stop.MAX_TOKENS)
    writer.usage(Usage(output_tokens=7, reasoning=3, cache_read=2))
    writer.end()
    chunks = [json.loads(event.data) for event in _events(writer.take())]
    assert chunks[0]["responseId"] == "1"  # a new id: the provider sent no start
    assert chunks[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert chunks[-1]["usageMetadata"] == {
        "promptTokenCount": 5,
        "candidatesTokenCount": 4,
        "totalTokenCount": 12,
        "cachedContentTokenCount": 2,
        "thoughtsTokenCount": 3,
    }


def test_writer_thinking_signature_round_trips():
    answer = Answer(parts=[Thinking("hmm", signature="sig=="), Text("ok")], usage=Usage(1, 2))
    writer = gemini.StreamWriter(answer_context())
    replay(answer, writer, dumps)
    data = writer.take()
    assert b'"thought":true,"thoughtSignature":"sig=="' in data
    assert _without_ids(_collect([data]).answer) == answer
    whole = gemini.write_response(answer, answer_context())
    assert whole["candidates"][0]["content"]["parts"][0] == {"text": "hmm", "thought": True,
                                                             "thoughtSignature": "sig=="}
    assert _without_ids(gemini.read_response(whole)) == answer


# -- requests beyond the shared cases ---------------------------------------------------


def test_snake_case_request_fields():
    body = {
        "system_instruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "look"}, {"inline_data": {"mime_type": "image/png", "data": PNG}},
                                       {"file_data": {"mime_type": "application/pdf", "file_uri": "gs://b/f.pdf"}}]},
            {"role": "model", "parts": [{"function_call": {"name": "f", "args": {"a": 1}}}]},
            {"role": "user", "parts": [{"function_response": {"name": "f", "response": {"result": "done"}}}]},
        ],
        "tools": [{"function_declarations": [{"name": "f", "parameters_json_schema": {"type": "object"}}]}],
        "tool_config": {"function_calling_config": {"mode": "ANY", "allowed_function_names": ["f"]}},
        "generation_config": {
            "max_output_tokens": 100,
            "top_p": 0.5,
            "top_k": 40,
            "stop_sequences": ["END"],
            "thinking_config": {"thinking_budget": 2048},
        },
    }
    conversation = _read(body)
    assert conversation == Conversation(
        system=[Text("Be brief.")],
        messages=[
            Message(
                Role.USER,
                [Text("look"), Media("image/png", data=PNG), Media("application/pdf", url="gs://b/f.pdf")],
            ),
            Message(Role.ASSISTANT, [ToolCall("call_1_0", "f", {"a": 1})]),
            Message(Role.USER, [ToolResult("call_1_0", [Text("done")], name="f")]),
        ],
        tools=[Tool("f", None, {"type": "object"})],
        tool_choice=ToolChoice(ToolChoiceMode.TOOL, "f"),
        max_output_tokens=100,
        top_p=0.5,
        top_k=40,
        stop=["END"],
        thinking=ThinkingSuffix(ThinkingKind.BUDGET, budget=2048),
    )


@pytest.mark.parametrize("value, system", [("Be brief.", [Text("Be brief.")]), ("", []),
                                           ({"role": "system", "parts": [{"text": "A"}, {"text": "B"}]},
                                            [Text("A"), Text("B")])])
def test_system_instruction_shapes(value, system):
    assert _read({"systemInstruction": value, "contents": _user()}).system == system


def test_file_data_and_media_urls():
    conversation = _read({"contents": [{"parts": [{"fileData": {"fileUri": "https://x/a.png"}}]}]})
    assert conversation.messages == [Message(Role.USER, [Media(None, url="https://x/a.png")])]
    written = gemini.write_request(
        Conversation(messages=[Message(Role.USER, [
            Media("image/png", url="https://x/a.png"),
            Media(None, url="https://x/b"),
            Media(None, url="data:image/gif;base64,R0lG"),
        ])]),
        UPSTREAM,
    )
    assert written["contents"][0]["parts"] == [
        {"fileData": {"mimeType": "image/png", "fileUri": "https://x/a.png"}},
        {"fileData": {"fileUri": "https://x/b"}},
        {"inlineData": {"mimeType": "image/gif", "data": "R0lG"}},
    ]


@pytest.mark.parametrize(
    "config, thinking",
    [
        ({"thinkingBudget": -1}, ThinkingSuffix(ThinkingKind.AUTO)),
        ({"thinkingBudget": 0}, ThinkingSuffix(ThinkingKind.NONE)),
        ({"thinkingBudget": 1024, "includeThoughts": True}, ThinkingSuffix(ThinkingKind.BUDGET, budget=1024)),
        ({"thinkingLevel": "HIGH"}, ThinkingSuffix(ThinkingKind.LEVEL, level="high")),
        ({"thinkingLevel": "minimal"}, ThinkingSuffix(ThinkingKind.LEVEL, level="minimal")),
        ({"includeThoughts": True}, ThinkingSuffix(ThinkingKind.AUTO)),
        ({"includeThoughts": False}, None),
        ({}, None),
    ],
)
def test_thinking_config_reads(config, thinking):
    body = {"contents": _user(), "generationConfig": {"thinkingConfig": config}}
    assert _read(body).thinking == thinking


@pytest.mark.parametrize(
    "config",
    [{"thinkingBudget": -2}, {"thinkingBudget": "8k"}, {"thinkingLevel": "extreme"}, {"thinkingLevel": 3},
     {"thinkingBudget": 100, "thinkingLevel": "low"}, "high"],
)
def test_thinking_config_errors(config):
    with pytest.raises(BadRequest):
        _read({"contents": _user(), "generationConfig": {"thinkingConfig": config}})


@pytest.mark.parametrize(
    "thinking, model, expected",
    [
        (ThinkingSuffix(ThinkingKind.AUTO), UPSTREAM, {"thinkingBudget": -1, "includeThoughts": True}),
        (ThinkingSuffix(ThinkingKind.BUDGET, budget=2048), UPSTREAM, {"thinkingBudget": 2048, "includeThoughts": True}),
        (ThinkingSuffix(ThinkingKind.NONE), UPSTREAM, {"thinkingBudget": 0}),
        (ThinkingSuffix(ThinkingKind.BUDGET, budget=0), UPSTREAM, {"thinkingBudget": 0}),
        (ThinkingSuffix(ThinkingKind.LEVEL, level="low"), "gemini-3-pro-preview",
         {"thinkingLevel": "low", "includeThoughts": True}),
    ],
)
def test_thinking_writes(thinking, model, expected):
    body = gemini.write_request(Conversation(messages=[Message(Role.USER, [Text("hi")])], thinking=thinking), model)
    assert body["generationConfig"]["thinkingConfig"] == expected


@pytest.mark.parametrize(
    "config, choice",
    [
        ({"mode": "AUTO"}, ToolChoice(ToolChoiceMode.AUTO)),
        ({"mode": "ANY"}, ToolChoice(ToolChoiceMode.ANY)),
        ({"mode": "NONE"}, ToolChoice(ToolChoiceMode.NONE)),
        ({"mode": "VALIDATED"}, ToolChoice(ToolChoiceMode.AUTO)),
        ({}, ToolChoice(ToolChoiceMode.AUTO)),
        ({"mode": "ANY", "allowedFunctionNames": ["f"]}, ToolChoice(ToolChoiceMode.TOOL, "f")),
        ({"mode": "ANY", "allowedFunctionNames": ["f", "g"]}, ToolChoice(ToolChoiceMode.ANY)),
        ({"mode": "AUTO", "allowedFunctionNames": ["f"]}, ToolChoice(ToolChoiceMode.AUTO)),
    ],
)
def test_tool_config_modes_read(config, choice):
    body = {"contents": _user(), "toolConfig": {"functionCallingConfig": config}}
    assert _read(body).tool_choice == choice


@pytest.mark.parametrize(
    "choice, written",
    [
        (ToolChoice(ToolChoiceMode.AUTO), {"mode": "AUTO"}),
        (ToolChoice(ToolChoiceMode.ANY), {"mode": "ANY"}),
        (ToolChoice(ToolChoiceMode.NONE), {"mode": "NONE"}),
        (ToolChoice(ToolChoiceMode.TOOL, "get_weather"), {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
    ],
)
def test_tool_config_modes_write(choice, written):
    conversation = Conversation(messages=[Message(Role.USER, [Text("hi")])], tools=[Tool("get_weather")],
                                tool_choice=choice)
    body = gemini.write_request(conversation, UPSTREAM)
    assert body["toolConfig"] == {"functionCallingConfig": written}
    assert _read(body).tool_choice == choice


def test_candidate_count_above_one_is_rejected():
    with pytest.raises(BadRequest, match="candidateCount"):
        _read({"contents": _user(), "generationConfig": {"candidateCount": 2}})
    assert _read({"contents": _user(), "generationConfig": {"candidateCount": 1}}).messages


def test_results_pair_with_calls_by_name_and_order():
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "two cities"}]},
            {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_time", "args": {"tz": "UTC"}}},
                {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_time", "response": {"result": "12:00"}}},
                {"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}},
                {"functionResponse": {"name": "get_weather", "response": {"result": "rainy"}}},
            ]},
        ]
    }
    messages = _read(body).messages
    assert [(c.id, c.arguments) for c in messages[1].parts] == [
        ("call_1_0", {"city": "Paris"}), ("call_1_1", {"tz": "UTC"}), ("call_1_2", {"city": "Rome"})]
    assert [(r.call_id, r.content) for r in messages[2].parts] == [
        ("call_1_1", [Text("12:00")]), ("call_1_0", [Text("sunny")]), ("call_1_2", [Text("rainy")])]


def test_ids_given_by_the_client_are_kept_and_taken_out_of_the_queue():
    body = {
        "contents": [
            {"role": "model", "parts": [
                {"functionCall": {"id": "a", "name": "f"}},
                {"functionCall": {"name": "f"}},
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"id": "a", "name": "f", "response": {}}},
                {"functionResponse": {"name": "f", "response": {}}},
                {"functionResponse": {"name": "g", "response": {}}},
            ]},
        ]
    }
    messages = _read(body).messages
    assert [c.id for c in messages[0].parts] == ["a", "call_0_1"]
    assert [r.call_id for r in messages[1].parts] == ["a", "call_0_1", "call_1_2"]


@pytest.mark.parametrize(
    "response, content, is_error",
    [
        ({"result": "ok"}, [Text("ok")], False),
        ({"output": "ok"}, [Text("ok")], False),
        ({"content": "ok"}, [Text("ok")], False),
        ({"error": "boom"}, [Text("boom")], True),
        ({"error": {"code": 7}}, [Text('{"code":7}')], True),
        ({"result": {"t": 1}}, [Text('{"result":{"t":1}}')], False),
        ({"temp": 18, "unit": "C"}, [Text('{"temp":18,"unit":"C"}')], False),
        ({"output": "a", "error": "b"}, [Text('{"output":"a","error":"b"}')], False),
        ({}, [], False),
        (None, [], False),
    ],
)
def test_function_response_shapes_read(response, content, is_error):
    part = {"functionResponse": {"name": "f", "response": response}}
    result = _read({"contents": [{"parts": [part]}]}).messages[0].parts[0]
    assert (result.content, result.is_error) == (content, is_error)


def test_function_response_parts_and_tool_result_media():
    part = {"functionResponse": {"name": "shot", "response": {"output": "see"},
                                 "parts": [{"inlineData": {"mimeType": "image/png", "data": PNG}}]}}
    result = _read({"contents": [{"parts": [part]}]}).messages[0].parts[0]
    assert result.content == [Text("see"), Media("image/png", data=PNG)]
    conversation = Conversation(messages=[
        Message(Role.ASSISTANT, [ToolCall("c1", "shot")]),
        Message(Role.USER, [ToolResult("c1", [Text("see"), Media("image/png", data=PNG)], name="shot"),
                            ToolResult("c2", [Text("no")], is_error=True)]),
    ])
    parts = gemini.write_request(conversation, UPSTREAM)["contents"][1]["parts"]
    assert parts == [
        {"functionResponse": {"id": "c1", "name": "shot", "response": {"output": "see"}}},
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
        {"functionResponse": {"id": "c2", "name": "c2", "response": {"error": "no"}}},
    ]


def test_signature_placeholder_on_every_written_call():
    conversation = Conversation(messages=[
        Message(Role.USER, [Text("go")]),
        Message(Role.ASSISTANT, [Thinking("secret", signature="anthropic-sig"), ToolCall("x", "f", {}),
                                 ToolCall("", "g", {"a": 1})]),
    ])
    parts = gemini.write_request(conversation, UPSTREAM)["contents"][1]["parts"]
    assert parts == [
        {"functionCall": {"id": "x", "name": "f", "args": {}}, "thoughtSignature": gemini.SIGNATURE_PLACEHOLDER},
        {"functionCall": {"name": "g", "args": {"a": 1}}, "thoughtSignature": gemini.SIGNATURE_PLACEHOLDER},
    ]
    assert gemini.SIGNATURE_PLACEHOLDER == "skip_thought_signature_validator"


def test_thought_parts_read_with_their_signature():
    body = {"contents": [{"role": "model", "parts": [
        {"text": "plan", "thought": True, "thoughtSignature": "c2ln"},
        {"text": "answer", "thoughtSignature": "dropped"},
    ]}]}
    assert _read(body).messages == [Message(Role.ASSISTANT, [Thinking("plan", "c2ln"), Text("answer")])]


def test_system_messages_roles_and_merging_when_writing():
    conversation = Conversation(
        system=[Text("First.")],
        messages=[
            Message(Role.USER, [Text("a")]),
            Message(Role.SYSTEM, [Text("Later rule.")]),
            Message(Role.USER, [Text("b")]),
            Message(Role.ASSISTANT, [Thinking("only thoughts")]),
            Message(Role.ASSISTANT, [Text("c")]),
        ],
        parallel_tool_calls=False,
        user="u1",
        stop=["X"],
        top_k=5,
    )
    body = gemini.write_request(conversation, UPSTREAM)
    assert body["systemInstruction"] == {"parts": [{"text": "First."}, {"text": "Later rule."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
        {"role": "model", "parts": [{"text": "c"}]},
    ]
    assert body["generationConfig"] == {"topK": 5, "stopSequences": ["X"]}


def test_tools_without_parameters_and_gemini_schemas():
    conversation = Conversation(messages=[Message(Role.USER, [Text("hi")])], tools=[Tool("ping")])
    assert gemini.write_request(conversation, UPSTREAM)["tools"] == [{"functionDeclarations": [{"name": "ping"}]}]
    body = {"contents": _user(), "tools": [
        {"functionDeclarations": [
            {"name": "f", "parameters": {"type": "OBJECT", "properties": {
                "n": {"type": "INTEGER", "nullable": True}, "l": {"type": "ARRAY", "items": {"type": "STRING"}}}}},
            {"name": "g"},
        ]},
        {"googleSearch": {}},
        {"codeExecution": {}},
    ]}
    tools = _read(body).tools
    assert tools[0].schema == {"type": "object", "properties": {
        "n": {"type": ["integer", "null"]}, "l": {"type": "array", "items": {"type": "string"}}}}
    assert tools[1] == Tool("g")


def test_dropped_fields_are_ignored():
    body = {"contents": _user(), "safetySettings": [{"category": "X", "threshold": "BLOCK_NONE"}],
            "cachedContent": "cachedContents/1", "labels": {"a": "b"},
            "generationConfig": {"responseMimeType": "application/json", "seed": 3, "presencePenalty": 0.1},
            "toolConfig": {"retrievalConfig": {}}}
    conversation = _read(body)
    assert conversation == Conversation(messages=[Message(Role.USER, [Text("hi")])])


@pytest.mark.parametrize(
    "body",
    [
        [],
        {},
        {"contents": "hi"},
        {"contents": ["hi"]},
        {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]},
        {"contents": [{"role": ["user"], "parts": [{"text": "x"}]}]},
        {"contents": [{"parts": {"text": "x"}}]},
        {"contents": [{"parts": ["x"]}]},
        {"contents": [{"parts": [{"text": 5}]}]},
        {"contents": [{"parts": [{"inlineData": "abc"}]}]},
        {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png"}}]}]},
        {"contents": [{"parts": [{"fileData": {"fileUri": 3}}]}]},
        {"contents": [{"parts": [{"functionCall": {"args": {}}}]}]},
        {"contents": [{"parts": [{"functionCall": {"name": "f", "args": [1]}}]}]},
        {"contents": [{"parts": [{"functionResponse": {"response": {}}}]}]},
        {"contents": [{"parts": [{"functionResponse": []}]}]},
        {"contents": _user(), "systemInstruction": 5},
        {"contents": _user(), "systemInstruction": {"parts": "x"}},
        {"contents": _user(), "tools": {"functionDeclarations": []}},
        {"contents": _user(), "tools": ["x"]},
        {"contents": _user(), "tools": [{"functionDeclarations": [{"description": "no name"}]}]},
        {"contents": _user(), "tools": [{"functionDeclarations": "f"}]},
        {"contents": _user(), "toolConfig": []},
        {"contents": _user(), "toolConfig": {"functionCallingConfig": "ANY"}},
        {"contents": _user(), "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}},
        {"contents": _user(), "toolConfig": {"functionCallingConfig": {"mode": ["ANY"]}}},
        {"contents": _user(), "generationConfig": []},
        {"contents": _user(), "generationConfig": {"maxOutputTokens": "many"}},
        {"contents": _user(), "generationConfig": {"maxOutputTokens": True}},
        {"contents": _user(), "generationConfig": {"temperature": "hot"}},
        {"contents": _user(), "generationConfig": {"stopSequences": "END"}},
        {"contents": _user(), "generationConfig": {"stopSequences": [1]}},
    ],
)
def test_malformed_requests_are_bad_requests(body):
    with pytest.raises(BadRequest):
        _read(body)


def test_optional_odd_values_are_ignored():
    body = {"contents": [{"role": "user", "parts": [{"text": "hi", "thought": "yes"}, {"executableCode": {}},
                                                     {"text": ""}]}, {"role": "model"}],
            "tools": [{"functionDeclarations": [{"name": "f", "description": 5, "parameters": "x"}]}]}
    conversation = _read(body)
    assert conversation.messages == [Message(Role.USER, [Text("hi")])]
    assert conversation.tools == [Tool("f")]


# -- answers beyond the shared cases -----------------------------------------------------


def test_prompt_feedback_block_is_a_refusal():
    document = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 8,
                                                                                "totalTokenCount": 8}}
    answer = gemini.read_response(document)
    assert (answer.parts, answer.stop, answer.usage) == ([], Stop.REFUSAL, Usage(input_tokens=8))
    builder = _collect([_sse(document)])
    assert builder.ended and builder.answer.stop is Stop.REFUSAL and builder.answer.parts == []


@pytest.mark.parametrize(
    "reason, stop",
    [("SAFETY", Stop.REFUSAL), ("RECITATION", Stop.REFUSAL), ("PROHIBITED_CONTENT", Stop.REFUSAL),
     ("BLOCKLIST", Stop.REFUSAL), ("SPII", Stop.REFUSAL), ("MAX_TOKENS", Stop.MAX_TOKENS),
     ("OTHER", Stop.END_TURN), ("MALFORMED_FUNCTION_CALL", Stop.END_TURN), ("SOMETHING_NEW", Stop.END_TURN)],
)
def test_finish_reasons(reason, stop):
    answer = gemini.read_response({"candidates": [{"finishReason": reason, "index": 0}]})
    assert (answer.parts, answer.stop) == ([], stop)


def test_refusal_written_as_safety_without_content():
    document = gemini.write_response(Answer(stop=Stop.REFUSAL), answer_context())
    assert document["candidates"] == [{"finishReason": "SAFETY", "index": 0}]
    assert gemini.read_response(document).stop is Stop.REFUSAL


def test_calls_without_ids_get_unique_ids_and_stop_becomes_tool_use():
    document = _chunk([{"functionCall": {"name": "f", "args": {"a": 1}}}, {"functionCall": {"name": "f"}}],
                      "STOP", response_id="resp7")
    answer = gemini.read_response(document)
    assert answer.parts == [ToolCall("call_resp7_0", "f", {"a": 1}), ToolCall("call_resp7_1", "f", {})]
    assert answer.stop is Stop.TOOL_USE
    del document["responseId"]
    assert [part.id for part in gemini.read_response(document).parts] == ["call_0", "call_1"]


def test_blocks_follow_part_kinds_in_a_stream():
    data = _sse(
        _chunk([{"text": "think", "thought": True}]),
        _chunk([{"text": " more", "thought": True}, {"text": "say"}]),
        _chunk([{"functionCall": {"id": "c", "name": "f", "args": {}}}, {"text": "after"}]),
        _chunk([{"text": "", "thoughtSignature": "x"}], "STOP"),
    )
    answer = _collect([data]).answer
    assert answer.parts == [Thinking("think more"), Text("say"), ToolCall("c", "f", {}), Text("after")]
    assert answer.stop is Stop.TOOL_USE


def test_usage_counts_thoughts_as_output_reasoning():
    document = _chunk([{"text": "x"}], "STOP", usage={
        "promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 7, "totalTokenCount": 22,
        "cachedContentTokenCount": 4})
    answer = gemini.read_response(document)
    assert answer.usage == Usage(input_tokens=10, output_tokens=12, cache_read=4, reasoning=7)
    written = gemini.write_response(answer, answer_context())["usageMetadata"]
    assert written == {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 22,
                       "cachedContentTokenCount": 4, "thoughtsTokenCount": 7}


@pytest.mark.parametrize(
    "document",
    [[], {}, {"candidates": []}, {"candidates": "x"},
     {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}],
)
def test_read_response_rejects_what_is_not_an_answer(document):
    with pytest.raises(UpstreamError):
        gemini.read_response(document)


@pytest.mark.parametrize(
    "error, status, kind",
    [
        ({"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}, 429, "rate_limit_error"),
        ({"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}, 400, "invalid_request_error"),
        ({"code": 500, "message": "oops", "status": "INTERNAL"}, 500, "api_error"),
        ({"message": "odd"}, 502, "api_error"),
        ("plain text", 502, "api_error"),
    ],
)
def test_error_chunk(error, status, kind):
    data = _sse(_chunk([{"text": "a"}]), {"error": error}, _chunk([{"text": "b"}], "STOP"))
    builder = _collect([data])
    assert (builder.failure.status, builder.failure.error_type) == (status, kind)
    assert builder.answer.parts == [Text("a")] and not builder.ended


# -- the schema cleaner ---------------------------------------------------------------

SCHEMA_RULES = [
    ("drops $schema, $id, $comment, additionalProperties",
     {"$schema": "http://json-schema.org/draft-07/schema#", "$id": "x", "$comment": "c", "type": "object",
      "properties": {"a": {"type": "string"}}, "additionalProperties": False},
     {"type": "object", "properties": {"a": {"type": "string"}}}),
    ("inlines $ref from $defs, sibling keys win",
     {"type": "object", "properties": {"p": {"$ref": "#/$defs/P", "description": "here"}},
      "$defs": {"P": {"type": "string", "description": "there"}}},
     {"type": "object", "properties": {"p": {"type": "string", "description": "here"}}}),
    ("inlines $ref from definitions",
     {"type": "object", "properties": {"p": {"$ref": "#/definitions/P"}}, "definitions": {"P": {"type": "integer"}}},
     {"type": "object", "properties": {"p": {"type": "integer"}}}),
    ("a recursive $ref becomes an object",
     {"type": "object", "properties": {"n": {"$ref": "#/$defs/N"}},
      "$defs": {"N": {"type": "object", "properties": {"child": {"$ref": "#/$defs/N"}}}}},
     {"type": "object", "properties": {"n": {"type": "object", "properties": {"child": {"type": "object"}}}}}),
    ("an unresolvable $ref is dropped",
     {"type": "object", "properties": {"p": {"$ref": "https://x/s.json", "description": "d"}}},
     {"type": "object", "properties": {"p": {"description": "d"}}}),
    ("exclusiveMinimum/exclusiveMaximum dropped, minimum/maximum kept",
     {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 9, "minimum": 1, "maximum": 8},
     {"type": "number", "minimum": 1, "maximum": 8}),
    ("const becomes an enum of one", {"const": "x"}, {"enum": ["x"], "type": "string"}),
    ("default, examples, patternProperties dropped; title and example kept",
     {"type": "object", "title": "T", "default": {}, "examples": [{}], "example": {"a": "b"},
      "patternProperties": {"^x": {"type": "string"}}, "properties": {"a": {"type": "string", "default": "z"}}},
     {"type": "object", "title": "T", "example": {"a": "b"}, "properties": {"a": {"type": "string"}}}),
    ("[T, null] becomes T + nullable", {"type": ["string", "null"]}, {"type": "string", "nullable": True}),
    ("several types become anyOf", {"type": ["string", "integer"], "description": "d"},
     {"anyOf": [{"type": "string"}, {"type": "integer"}], "description": "d"}),
    ("several types and null", {"type": ["string", "integer", "null"]},
     {"anyOf": [{"type": "string"}, {"type": "integer"}], "nullable": True}),
    ("oneOf becomes anyOf", {"oneOf": [{"type": "string"}, {"type": "number", "format": "double"}]},
     {"anyOf": [{"type": "string"}, {"type": "number", "format": "double"}]}),
    ("anyOf with a null branch: nullable, one branch inlined",
     {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}], "description": "d"},
     {"type": "string", "maxLength": 5, "description": "d", "nullable": True}),
    ("allOf merged", {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                                {"properties": {"b": {"type": "integer"}}, "required": ["b"]}]},
     {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a", "b"]}),
    ("allOf with a $ref branch (a described reference)",
     {"type": "object", "properties": {"p": {"allOf": [{"$ref": "#/definitions/P"}], "description": "the p"}},
      "definitions": {"P": {"type": "object", "properties": {"x": {"type": "integer"}}}}},
     {"type": "object", "properties": {"p": {"type": "object", "properties": {"x": {"type": "integer"}},
                                             "description": "the p"}}}),
    ("formats Gemini rejects are dropped",
     {"type": "object", "properties": {"u": {"type": "string", "format": "uri"},
                                       "d": {"type": "string", "format": "date-time"},
                                       "i": {"type": "integer", "format": "int64"},
                                       "f": {"type": "number", "format": "int32"}}},
     {"type": "object", "properties": {"u": {"type": "string"}, "d": {"type": "string", "format": "date-time"},
                                       "i": {"type": "integer", "format": "int64"}, "f": {"type": "number"}}}),
    ("required keeps only defined properties",
     {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a", "b", "a", 3]},
     {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}),
    ("empty properties dropped", {"type": "object", "properties": {}, "required": ["x"]}, {"type": "object"}),
    ("array without items gets string items", {"type": "array"}, {"type": "array", "items": {"type": "string"}}),
    ("tuple items take the first", {"type": "array", "items": [{"type": "integer"}, {"type": "string"}]},
     {"type": "array", "items": {"type": "integer"}}),
    ("enum with null: nullable", {"type": "string", "enum": ["a", None]},
     {"type": "string", "enum": ["a"], "nullable": True}),
    ("non-string enums dropped", {"type": "integer", "enum": [1, 2]}, {"type": "integer"}),
    ("unknown keywords dropped",
     {"type": "string", "x-order": 1, "not": {"type": "null"}, "if": {}, "then": {}, "contentEncoding": "base64",
      "minLength": 1, "maxLength": True, "pattern": "^a"},
     {"type": "string", "minLength": 1, "pattern": "^a"}),
    ("upper-case types lowered, unknown types dropped", {"type": "STRING"}, {"type": "string"}),
    ("not a schema", "string", {}),
]


@pytest.mark.parametrize("name, schema, expected", SCHEMA_RULES, ids=[rule[0] for rule in SCHEMA_RULES])
def test_schema_cleaner(name, schema, expected):
    original = json.dumps(schema)
    cleaned = to_gemini(schema)
    assert cleaned == expected
    assert json.dumps(schema) == original  # the input is left alone


def _keys(schema):
    if isinstance(schema, dict):
        yield from schema
        for key in ("items",):
            if key in schema:
                yield from _keys(schema[key])
        for sub in schema.get("properties", {}).values():
            yield from _keys(sub)
        for sub in schema.get("anyOf", []):
            yield from _keys(sub)


def test_schema_cleaner_writes_only_gemini_keys():
    for _, schema, _ in SCHEMA_RULES:
        assert set(_keys(to_gemini(schema))) <= KEPT


def test_schema_cleaner_survives_hostile_nesting():
    deep = {"type": "object"}
    for _ in range(5000):
        deep = {"type": "object", "properties": {"a": deep}}
    cleaned = to_gemini(deep)
    depth = 0
    while cleaned.get("properties"):
        cleaned = cleaned["properties"]["a"]
        depth += 1
    assert depth <= MAX_DEPTH + 1
    assert to_gemini({"properties": {"a": None, "b": [1]}, "anyOf": "x", "items": 3}) == {
        "properties": {"a": {}, "b": {}}}


def test_schema_cleaner_bounds_references_that_double_each_level():
    definitions = {"D%d" % level: {"type": "object", "properties": {
        "a": {"$ref": "#/$defs/D%d" % (level + 1)}, "b": {"$ref": "#/$defs/D%d" % (level + 1)}}}
        for level in range(40)}
    schema = {"$ref": "#/$defs/D0", "$defs": definitions}

    def count(node):
        return 1 + sum(count(sub) for sub in node.get("properties", {}).values())

    # 2**41 nodes unbounded; past the budget a node is written empty.
    assert MAX_NODES <= count(to_gemini(schema)) < 2 * MAX_NODES


def test_schema_from_gemini():
    schema = {"type": "OBJECT", "properties": {"a": {"type": "STRING", "nullable": True},
                                               "b": {"anyOf": [{"type": "NUMBER"}], "nullable": True}}}
    assert from_gemini(schema) == {"type": "object", "properties": {
        "a": {"type": ["string", "null"]}, "b": {"anyOf": [{"type": "number"}], "nullable": True}}}
    assert from_gemini(5) == 5
