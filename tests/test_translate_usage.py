"""Token counts read from answers relayed untranslated (cliproxy.translate.usage)."""

import json

import pytest

from cliproxy.config.model import Protocol
from cliproxy.translate.relay import EventRelay
from cliproxy.translate import anthropic, gemini, openai, responses
from cliproxy.translate.context import RewriteContext
from cliproxy.translate.usage import UsageTap, usage_of_answer
from tests.support.fakes import sse_events

ANSWERS = {
    Protocol.CLAUDE: {"id": "m", "type": "message", "role": "assistant", "model": "x",
                      "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"usage": {"input_tokens": 999}}}],
                      "stop_reason": "tool_use",
                      "usage": {"input_tokens": 20, "output_tokens": 7, "cache_read_input_tokens": 30,
                                "cache_creation_input_tokens": 5}},
    Protocol.OPENAI: {"id": "c", "object": "chat.completion", "model": "x",
                      "choices": [{"index": 0, "message": {"role": "assistant", "content": "\"usage\": {}"},
                                   "finish_reason": "stop"}],
                      "usage": {"prompt_tokens": 55, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 30}}},
    Protocol.RESPONSES: {"id": "r", "object": "response", "status": "completed", "model": "x", "output": [],
                         "usage": {"input_tokens": 55, "output_tokens": 7, "input_tokens_details": {"cached_tokens": 30}}},
    Protocol.GEMINI: {"candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]}, "finishReason": "STOP"}],
                      "usageMetadata": {"promptTokenCount": 55, "candidatesTokenCount": 7, "cachedContentTokenCount": 30}},
}


@pytest.mark.parametrize("protocol", list(ANSWERS))
def test_usage_of_a_whole_answer(protocol):
    usage = usage_of_answer(protocol, json.dumps(ANSWERS[protocol], indent=1).encode())
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read) == (55, 7, 30)


def test_usage_after_text_that_is_not_ascii_or_not_utf8():
    # Only the end of the answer is decoded: what comes before the key may be anything.
    data = b'{"content":"caf\xc3\xa9 \xff\xe2\x82","usage":{"prompt_tokens":3,"completion_tokens":4}}'
    usage = usage_of_answer(Protocol.OPENAI, data)
    assert (usage.input_tokens, usage.output_tokens) == (3, 4)


@pytest.mark.parametrize("data", [b"", b"not json", b'{"usage": 5}', b'{"usage": {', b'{"model": "x"}'])
def test_no_usage_is_none(data):
    assert usage_of_answer(Protocol.OPENAI, data) is None


def _chat_chunk(delta=None, usage=None):
    return {"id": "c", "object": "chat.completion.chunk", "model": "x",
            "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": None}],
            "usage": usage}


STREAMS = {
    Protocol.CLAUDE: sse_events(
        {"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "model": "x",
                                              "content": [], "usage": {"input_tokens": 20, "output_tokens": 1,
                                                                       "cache_read_input_tokens": 30,
                                                                       "cache_creation_input_tokens": 5}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "\"usage\" said"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}},
        {"type": "message_stop"},
    ),
    Protocol.OPENAI: sse_events(
        _chat_chunk({"role": "assistant", "content": "hi"}), _chat_chunk({"content": " there"}),
        _chat_chunk(usage={"prompt_tokens": 55, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 30}}),
        "[DONE]", event_names=[None] * 4),
    Protocol.RESPONSES: sse_events(
        {"type": "response.created", "response": {"id": "r", "model": "x", "status": "in_progress", "usage": None}},
        {"type": "response.output_text.delta", "delta": "hi"},
        {"type": "response.completed", "response": {"id": "r", "model": "x", "status": "completed", "output": [],
                                                    "usage": {"input_tokens": 55, "output_tokens": 7,
                                                              "input_tokens_details": {"cached_tokens": 30}}}},
    ),
    Protocol.GEMINI: sse_events(
        {"candidates": [{"content": {"parts": [{"text": "h"}]}}], "usageMetadata": {"promptTokenCount": 55}},
        {"candidates": [{"content": {"parts": [{"text": "i"}]}}], "usageMetadata": {"promptTokenCount": 55, "candidatesTokenCount": 3}},
        {"candidates": [{"content": {"parts": [{"text": "!"}]}, "finishReason": "STOP"}],
         "usageMetadata": {"promptTokenCount": 55, "candidatesTokenCount": 7, "cachedContentTokenCount": 30}},
        event_names=[None] * 3),
}
REWRITERS = {Protocol.CLAUDE: anthropic, Protocol.OPENAI: openai, Protocol.RESPONSES: responses, Protocol.GEMINI: gemini}


def _relayed(protocol, data, size, crlf=False):
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    tap = UsageTap(protocol)
    relay = EventRelay(REWRITERS[protocol].StreamRewriter(RewriteContext("client-model")), tap)
    out = b"".join(relay.feed(data[i : i + size]) for i in range(0, len(data), size)) + relay.flush() + relay.close()
    return out, relay.usage()


@pytest.mark.parametrize("size", [1, 7, 64, 100000])
@pytest.mark.parametrize("protocol", list(STREAMS))
def test_the_tap_reads_a_streams_usage_at_any_cut(protocol, size):
    data = b"".join(STREAMS[protocol])
    out, usage = _relayed(protocol, data, size)
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read) == (55, 7, 30)
    assert out.count(b"\n\n") == data.count(b"\n\n"), "the stream itself is relayed as before"


@pytest.mark.parametrize("protocol", list(STREAMS))
def test_the_tap_reads_crlf_streams_too(protocol):
    _, usage = _relayed(protocol, b"".join(STREAMS[protocol]), 13, crlf=True)
    assert (usage.input_tokens, usage.output_tokens) == (55, 7)


def test_a_stream_without_usage_has_none():
    data = b"".join(sse_events(_chat_chunk({"content": "hi"}), "[DONE]", event_names=[None, None]))
    assert _relayed(Protocol.OPENAI, data, 5)[1] is None
