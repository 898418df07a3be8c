"""Model-name rewriting for OpenAI Chat Completions, OpenAI Responses and Gemini, and
Responses request sanitising."""

import json

import pytest

from cliproxy.http.sse import Event, SSEParser
from cliproxy.translate import gemini, openai, responses
from cliproxy.translate.context import RewriteContext, has_value

REQUESTED = "gpt-5(high)"
CTX = RewriteContext(REQUESTED)


def _parse(data):
    parser = SSEParser()
    return parser.feed(data) + parser.flush()


def _data(payload, event=None):
    head = "event: %s\n" % event if event else ""
    return ("%sdata: %s\n\n" % (head, json.dumps(payload))).encode("utf-8")


# has_value (the fast-path check) -------------------------------------------------------


@pytest.mark.parametrize(
    "data, expected",
    [
        ('{"model":"gpt-5(high)","x":1}', True),
        ('{"model": "gpt-5(high)", "x": 1}', True),
        ('{"model":"gpt-5","x":1}', False),
        ('{"content":"say \\"model\\":\\"gpt-5(high)\\""}', False),
        ('{"model":"gpt-5(high)","inner":{"model":"other"}}', False),
        ('{"x":1}', False),
    ],
)
def test_has_value_is_certain_or_says_no(data, expected):
    assert has_value(data, "model", '"gpt-5(high)"') is expected


# OpenAI Chat Completions ---------------------------------------------------------------


def test_openai_rewrite_response_sets_model():
    body = {"id": "c", "object": "chat.completion", "model": "gpt-5-2025-08-07", "choices": []}
    assert openai.rewrite_response(body, CTX) is body
    assert body["model"] == REQUESTED


def test_openai_rewrite_response_leaves_bodies_without_model():
    body = {"error": {"message": "x"}}
    assert openai.rewrite_response(body, CTX) == {"error": {"message": "x"}}


def test_openai_rewrite_raw():
    out = openai.rewrite_raw(
        b'{"model":"gpt-5","choices":[{"message":{"content":"\xc3\xa9"}}]}', CTX
    )
    assert json.loads(out.decode("utf-8")) == {
        "model": REQUESTED,
        "choices": [{"message": {"content": "é"}}],
    }
    for data in (b"not json", b"[]"):
        assert openai.rewrite_raw(data, CTX) is data


def _chunk(model, content):
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }


def test_openai_stream_rewrites_every_chunk_and_passes_done_raw():
    stream = (
        _data(_chunk("gpt-5-2025-08-07", "Hel"))
        + _data(_chunk("gpt-5-2025-08-07", "lo"))
        + b"data: [DONE]\n\n"
    )
    events = _parse(stream)
    rewriter = openai.StreamRewriter(CTX)
    outputs = [rewriter.event(ev) for ev in events]
    assert outputs[2] is events[2].raw
    rewritten = _parse(b"".join(outputs))
    assert [json.loads(ev.data)["model"] for ev in rewritten[:2]] == [REQUESTED, REQUESTED]
    assert [json.loads(ev.data)["choices"][0]["delta"]["content"] for ev in rewritten[:2]] == [
        "Hel",
        "lo",
    ]
    assert rewritten[2].data == "[DONE]"


def test_openai_stream_passes_chunks_already_naming_the_requested_model_raw():
    rewriter = openai.StreamRewriter(RewriteContext("qwen3-coder"))
    for payload in (
        _chunk("qwen3-coder", "x"),
        {"id": "c", "choices": []},
        {"error": {"message": "boom"}},
    ):
        ev = _parse(_data(payload))[0]
        assert rewriter.event(ev) is ev.raw
    for raw in (b": ping\n\n", b"data: {broken\n\n", b"data: [1]\n\n"):
        ev = _parse(raw)[0]
        assert rewriter.event(ev) is ev.raw


def test_openai_stream_parses_when_a_nested_model_key_makes_the_fast_path_unsure():
    payload = _chunk("upstream", "x")
    payload["choices"][0]["delta"]["tool_calls"] = [
        {"function": {"arguments": "{}"}, "model": REQUESTED}
    ]
    ev = _parse(_data(payload))[0]
    out = _parse(openai.StreamRewriter(CTX).event(ev))[0]
    assert json.loads(out.data)["model"] == REQUESTED


# OpenAI Responses ----------------------------------------------------------------------


def test_responses_sanitize_request_drops_only_rejected_fields():
    body = {
        "model": "gpt-5",
        "input": "hi",
        "stream": True,
        "stream_options": {"include_usage": True},
        "reasoning": {"effort": "low"},
        "service_tier": "auto",
    }
    assert responses.sanitize_request(body) is body
    assert body == {
        "model": "gpt-5",
        "input": "hi",
        "stream": True,
        "reasoning": {"effort": "low"},
        "service_tier": "auto",
    }
    assert responses.REJECTED_FIELDS == ("stream_options",)


def test_responses_rewrite_response_and_raw():
    body = {"id": "resp_1", "object": "response", "model": "gpt-5-2025-08-07", "output": []}
    assert responses.rewrite_response(body, CTX)["model"] == REQUESTED
    out = responses.rewrite_raw(b'{"object":"response","model":"gpt-5"}', CTX)
    assert json.loads(out) == {"object": "response", "model": REQUESTED}
    assert responses.rewrite_raw(b"oops", CTX) == b"oops"


def _response_obj(status):
    return {
        "id": "resp_1",
        "object": "response",
        "status": status,
        "model": "gpt-5-2025-08-07",
        "output": [],
    }


RESPONSES_STREAM = [
    (
        "response.created",
        {
            "type": "response.created",
            "sequence_number": 0,
            "response": _response_obj("in_progress"),
        },
    ),
    (
        "response.in_progress",
        {
            "type": "response.in_progress",
            "sequence_number": 1,
            "response": _response_obj("in_progress"),
        },
    ),
    (
        "response.output_item.added",
        {
            "type": "response.output_item.added",
            "sequence_number": 2,
            "output_index": 0,
            "item": {"type": "message"},
        },
    ),
    (
        "response.output_text.delta",
        {
            "type": "response.output_text.delta",
            "sequence_number": 3,
            "delta": '"response": {"model": "x"}',
        },
    ),
    (
        "response.completed",
        {
            "type": "response.completed",
            "sequence_number": 4,
            "response": _response_obj("completed"),
        },
    ),
]
RESPONSES_CHANGED = {0, 1, 4}


@pytest.mark.parametrize("with_event_lines", [True, False])
def test_responses_stream_rewrites_lifecycle_events_only(with_event_lines):
    stream = b"".join(
        _data(payload, name if with_event_lines else None) for name, payload in RESPONSES_STREAM
    )
    events = _parse(stream)
    rewriter = responses.StreamRewriter(CTX)
    outputs = [rewriter.event(ev) for ev in events]
    for index, (ev, out) in enumerate(zip(events, outputs)):
        if index not in RESPONSES_CHANGED:
            assert out is ev.raw, index
    rewritten = _parse(b"".join(outputs))
    for index in RESPONSES_CHANGED:
        payload = json.loads(rewritten[index].data)
        assert payload["response"]["model"] == REQUESTED
        assert payload["sequence_number"] == index
        assert rewritten[index].event == events[index].event
    assert json.loads(rewritten[3].data)["delta"] == '"response": {"model": "x"}'


@pytest.mark.parametrize(
    "name",
    ["response.failed", "response.incomplete", "response.queued"],
)
def test_responses_stream_rewrites_every_event_carrying_the_response(name):
    ev = _parse(_data({"type": name, "response": _response_obj("failed")}, name))[0]
    out = _parse(responses.StreamRewriter(CTX).event(ev))[0]
    assert json.loads(out.data)["response"]["model"] == REQUESTED


def test_responses_stream_passes_already_rewritten_and_odd_events_raw():
    rewriter = responses.StreamRewriter(CTX)
    done = dict(_response_obj("completed"), model=REQUESTED)
    cases = [
        _data({"type": "response.completed", "response": done}, "response.completed"),
        _data({"type": "response.created", "response": "not an object"}, "response.created"),
        _data({"type": "error", "code": "server_error", "message": "x"}, "error"),
        b"event: response.created\ndata: {cut\n\n",
    ]
    for raw in cases:
        ev = _parse(raw)[0]
        assert rewriter.event(ev) is ev.raw


# Gemini --------------------------------------------------------------------------------

GEMINI_REQUESTED = "gemini-2.5-pro(8192)"
GEMINI_CTX = RewriteContext(GEMINI_REQUESTED)


def _gemini_chunk(text, version="gemini-2.5-pro"):
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}],
        "usageMetadata": {"promptTokenCount": 3},
        "modelVersion": version,
        "responseId": "abc",
    }


def test_gemini_rewrite_response_object_and_array():
    body = _gemini_chunk("hi")
    assert gemini.rewrite_response(body, GEMINI_CTX) is body
    assert body["modelVersion"] == GEMINI_REQUESTED
    array = [_gemini_chunk("a"), _gemini_chunk("b"), "junk"]
    gemini.rewrite_response(array, GEMINI_CTX)
    assert [item["modelVersion"] for item in array[:2]] == [GEMINI_REQUESTED] * 2
    count = {"totalTokens": 12}
    assert gemini.rewrite_response(count, GEMINI_CTX) == {"totalTokens": 12}


def test_gemini_rewrite_raw():
    out = gemini.rewrite_raw(json.dumps([_gemini_chunk("a")]).encode(), GEMINI_CTX)
    assert json.loads(out)[0]["modelVersion"] == GEMINI_REQUESTED
    out = gemini.rewrite_raw(json.dumps(_gemini_chunk("a")).encode(), GEMINI_CTX)
    assert json.loads(out)["modelVersion"] == GEMINI_REQUESTED
    for data in (b"<html>", b"42", b'"text"'):
        assert gemini.rewrite_raw(data, GEMINI_CTX) is data


def test_gemini_stream_rewrites_each_chunk():
    stream = (_data(_gemini_chunk("Hel")) + _data(_gemini_chunk("lo"))).replace(
        b"\n\n", b"\r\n\r\n"
    )
    events = _parse(stream)
    rewriter = gemini.StreamRewriter(GEMINI_CTX)
    rewritten = _parse(b"".join(rewriter.event(ev) for ev in events))
    assert [json.loads(ev.data)["modelVersion"] for ev in rewritten] == [GEMINI_REQUESTED] * 2
    assert [
        json.loads(ev.data)["candidates"][0]["content"]["parts"][0]["text"] for ev in rewritten
    ] == ["Hel", "lo"]


def test_gemini_stream_passes_chunks_needing_nothing_raw():
    rewriter = gemini.StreamRewriter(RewriteContext("gemini-2.5-pro"))
    for payload in (_gemini_chunk("x"), {"candidates": []}, {"error": {"code": 500}}):
        ev = _parse(_data(payload))[0]
        assert rewriter.event(ev) is ev.raw
    ev = Event(b"raw", data=None)
    assert rewriter.event(ev) is ev.raw


def test_a_body_already_naming_the_requested_model_passes_as_received():
    from cliproxy.translate import anthropic, gemini, responses
    from cliproxy.translate.context import holds_only

    same = b'{"model": "%s", "choices": []}' % REQUESTED.encode()
    assert openai.rewrite_raw(same, CTX) is same
    assert responses.rewrite_raw(same, CTX) is same
    assert gemini.rewrite_raw(b'{"modelVersion":"%s"}' % REQUESTED.encode(), CTX) == b'{"modelVersion":"%s"}' % REQUESTED.encode()
    nested = b'{"model":"%s","x":{"model":"other"}}' % REQUESTED.encode()
    assert not holds_only(nested, "model", REQUESTED)  # not certain: parse
    tool = b'{"model":"%s","content":[{"type":"tool_use","name":"bash"}]}' % REQUESTED.encode()
    assert anthropic.rewrite_raw(tool, CTX) != tool  # tool blocks still get their signature
    assert b'"signature":""' in anthropic.rewrite_raw(tool, CTX)
