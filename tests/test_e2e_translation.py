"""End to end: protocol translation through the running proxy.

A client of each protocol runs an agent loop (question → two parallel tool calls → both
results → final answer) against a model served by a provider of each protocol, whole and
streamed: 4 × 4 × 2 loops, 24 of them translated. The provider is ``FakeModel``
(``tests/support/agent_loop.py``), which answers every protocol on its own path and
records what it received, and the clients read answers as their SDKs would; neither
imports cliproxy.
"""

import gc
import http.client
import json

import pytest

from tests.support.agent_loop import (
    CALLS,
    CLIENTS,
    END_STOP,
    RESULTS,
    TOOL_STOP,
    AnthropicClient,
    ChatClient,
    FakeModel,
    GeminiClient,
    ResponsesClient,
    final_text,
    sse_payloads,
)
from tests.support.fakes import FakeUpstream, JSONReply, SSEReply, sse_events
from tests.support.proxy import RunningProxy

KEY = "sk-local"
# The model each provider kind serves, by the protocol it speaks.
MODELS = {"anthropic": "claude-x", "chat": "qwen-x", "responses": "codex-x", "gemini": "gemini-x"}
UPSTREAM_MODELS = {"anthropic": "claude-up", "chat": "qwen-up", "responses": "codex-up", "gemini": "gemini-up"}
PROVIDER_PATHS = {
    "anthropic": "/v1/messages",
    "chat": "/v1/chat/completions",
    "responses": "/v1/responses",
    "gemini": "/v1beta/models/",
}
FINAL = final_text([RESULTS["get_weather"], RESULTS["get_time"]])


def providers_document(url, **extra):
    def models(kind):
        return [{"name": UPSTREAM_MODELS[kind], "alias": MODELS[kind]}]

    document = {
        "api-keys": [KEY],
        "claude-api-key": [{"api-key": "sk-ant-test", "base-url": url, "models": models("anthropic")}],
        "openai-compatibility": [{"name": "vllm", "base-url": url + "/v1", "models": models("chat")}],
        "codex-api-key": [{"api-key": "sk-codex", "base-url": url + "/v1", "models": models("responses")}],
        "gemini-api-key": [{"api-key": "gem-key", "base-url": url, "models": models("gemini")}],
        "ampcode": {"upstream-url": ""},
    }
    document.update(extra)
    return document


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with FakeModel() as model:
        with RunningProxy(providers_document(model.url), tmp_path_factory.mktemp("translation")) as proxy:
            yield proxy, model


def _provider_saw_matching_results(model, provider):
    """The provider's last request carries both tool results, each tied to its call the
    way that protocol ties them."""
    body = model.bodies(PROVIDER_PATHS[provider])[-1]
    if provider == "anthropic":
        calls = [b["id"] for m in body["messages"] if m["role"] == "assistant" for b in m["content"]
                 if isinstance(b, dict) and b["type"] == "tool_use"]
        results = [b["tool_use_id"] for b in body["messages"][-1]["content"] if b["type"] == "tool_result"]
        assert calls == results and len(set(calls)) == 2
    elif provider == "chat":
        calls = [c["id"] for m in body["messages"] if m["role"] == "assistant" for c in m.get("tool_calls") or []]
        results = [m["tool_call_id"] for m in body["messages"] if m["role"] == "tool"]
        assert calls == results and len(set(calls)) == 2
    elif provider == "responses":
        calls = [i["call_id"] for i in body["input"] if i.get("type") == "function_call"]
        results = [i["call_id"] for i in body["input"] if i.get("type") == "function_call_output"]
        assert calls == results and len(set(calls)) == 2
    else:
        calls = [p["functionCall"]["name"] for c in body["contents"] for p in c["parts"] if "functionCall" in p]
        results = [p["functionResponse"]["name"] for p in body["contents"][-1]["parts"] if "functionResponse" in p]
        assert calls == results == ["get_weather", "get_time"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", sorted(MODELS))
@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_agent_loop_through_every_pair(served, client, provider, stream):
    proxy, model = served
    agent = CLIENTS[client](proxy.port, KEY)
    name = MODELS[provider]

    turn = agent.ask(name, stream)
    assert [(c.name, c.arguments) for c in turn.calls] == CALLS
    assert turn.stop == TOOL_STOP[client]
    assert turn.model == name
    if client != "gemini":
        ids = [c.id for c in turn.calls]
        assert all(ids) and len(set(ids)) == 2
    expected_type = "text/event-stream" if stream else "application/json"
    assert agent.last_headers["content-type"].startswith(expected_type)

    final = agent.answer(name, stream, turn)
    assert final.text == FINAL
    assert final.calls == []
    assert final.stop == END_STOP[client]
    _provider_saw_matching_results(model, provider)
    sent = model.requests[-1]
    assert sent.path.startswith(PROVIDER_PATHS[provider])
    assert UPSTREAM_MODELS[provider] in (sent.path + sent.body.decode())
    assert KEY not in json.dumps(sent.headers_list)


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_usage_reaches_every_client(served, client):
    proxy, _ = served
    agent = CLIENTS[client](proxy.port, KEY)
    for stream in (False, True):
        turn = agent.ask(MODELS["chat" if client != "chat" else "anthropic"], stream)
        usage = turn.usage
        if client == "anthropic":
            assert usage["input_tokens"] + usage.get("cache_read_input_tokens", 0) == 30
            assert usage["output_tokens"] == 12
        elif client == "chat":
            # Anthropic's 30 uncached + 5 cache-read tokens: a 35-token prompt, 5 cached.
            assert (usage["prompt_tokens"], usage["completion_tokens"]) == (35, 12)
            assert usage["prompt_tokens_details"]["cached_tokens"] == 5
        elif client == "responses":
            assert (usage["input_tokens"], usage["output_tokens"]) == (30, 12)
        else:
            assert usage["promptTokenCount"] == 30


def test_chat_provider_is_asked_for_usage_when_streaming(served):
    proxy, model = served
    AnthropicClient(proxy.port, KEY).ask(MODELS["chat"], True)
    body = model.bodies("/v1/chat/completions")[-1]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_gemini_provider_gets_a_schema_it_accepts(served):
    proxy, model = served
    ChatClient(proxy.port, KEY).ask(MODELS["gemini"], False)
    body = model.bodies("/v1beta/models/")[-1]
    declarations = body["tools"][0]["functionDeclarations"]
    text = json.dumps(declarations)
    assert "$schema" not in text and "additionalProperties" not in text
    assert declarations[1]["parameters"]["properties"]["tz"]["type"] in ("string", "STRING")


def test_responses_provider_never_gets_stream_options(served):
    proxy, model = served
    ChatClient(proxy.port, KEY).ask(MODELS["responses"], True)
    body = model.bodies("/v1/responses")[-1]
    assert "stream_options" not in body
    assert body["stream"] is True


def test_gemini_client_without_alt_sse_gets_a_json_array(served):
    proxy, _ = served
    agent = GeminiClient(proxy.port, KEY)
    agent.history = [{"role": "user", "parts": [{"text": "hi"}]}]
    data = agent.post("/v1beta/models/%s:streamGenerateContent" % MODELS["chat"], agent.request(MODELS["chat"], True))
    chunks = json.loads(data)
    assert isinstance(chunks, list) and chunks
    names = [p["functionCall"]["name"] for c in chunks for cand in c.get("candidates", [])
             for p in cand["content"].get("parts", []) if "functionCall" in p]
    assert names == ["get_weather", "get_time"]


def test_responses_previous_response_id_is_a_clear_400(served):
    proxy, model = served
    before = len(model.requests)
    status, body = proxy.json(
        "POST",
        "/v1/responses",
        {"model": MODELS["anthropic"], "input": "hi", "previous_response_id": "resp_123"},
        {"Authorization": "Bearer " + KEY},
    )
    assert status == 400
    assert "previous_response_id" in body["error"]["message"]
    assert len(model.requests) == before


def test_requested_name_and_suffix_come_back_and_the_suffix_goes_native(served):
    proxy, model = served
    turn = AnthropicClient(proxy.port, KEY).ask(MODELS["chat"] + "(high)", True)
    assert turn.model == MODELS["chat"] + "(high)"
    body = model.bodies("/v1/chat/completions")[-1]
    assert body["model"] == UPSTREAM_MODELS["chat"]
    assert body["reasoning_effort"] == "high"


# -- provider errors and failures, in the client's shape --------------------------------


@pytest.fixture
def failing():
    with FakeUpstream() as upstream:
        document = providers_document(upstream.url)
        yield upstream, document


def _two_chat_chunks(first, second):
    """A Chat stream's two chunks: the role with ``first``, then ``second`` and the stop."""
    def chunk(delta, finish):
        return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "qwen-up",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    return [chunk({"role": "assistant", "content": first}, None), chunk({"content": second}, "stop")]


def _anthropic_call(proxy, model, stream=False):
    return proxy.request(
        "POST",
        "/v1/messages",
        {"model": model, "max_tokens": 10, "stream": stream, "messages": [{"role": "user", "content": "hi"}]},
        {"x-api-key": KEY},
    )


def test_provider_error_reaches_the_client_in_its_own_shape(tmp_path, failing):
    upstream, document = failing
    upstream.route("POST", "/v1/chat/completions", JSONReply(
        status=400, body={"error": {"message": "context length exceeded", "type": "invalid_request_error"}}))
    with RunningProxy(document, tmp_path) as proxy:
        status, headers, data = _anthropic_call(proxy, MODELS["chat"])
    assert status == 400
    body = json.loads(data)
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "context length exceeded" in body["error"]["message"]


def test_gemini_error_for_an_openai_client(tmp_path, failing):
    upstream, document = failing
    upstream.route("POST", "/v1beta/models/", JSONReply(
        status=404, body={"error": {"code": 404, "message": "model not found", "status": "NOT_FOUND"}}))
    with RunningProxy(document, tmp_path) as proxy:
        status, body = proxy.json("POST", "/v1/chat/completions",
                                  {"model": MODELS["gemini"], "messages": [{"role": "user", "content": "hi"}]},
                                  {"Authorization": "Bearer " + KEY})
    assert status == 404
    assert body["error"]["message"] == "model not found"
    assert body["error"]["type"] == "not_found_error"


def test_stream_broken_mid_way_ends_with_the_clients_error_event(tmp_path, failing):
    upstream, document = failing
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "qwen-up",
             "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]}
    upstream.route("POST", "/v1/chat/completions", SSEReply(
        sse_events(chunk, chunk, chunk, event_names=[None] * 3), die_after=2))
    with RunningProxy(document, tmp_path) as proxy:
        status, _, data = _anthropic_call(proxy, MODELS["chat"], stream=True)
    assert status == 200
    events = sse_payloads(data)
    assert events[0][0] == "message_start"
    assert events[-1][0] == "error"
    assert events[-1][1]["type"] == "error"
    texts = [p["delta"]["text"] for n, p in events if n == "content_block_delta"]
    assert "".join(texts) == "HelHel"


@pytest.mark.parametrize("whole", [False, True])
def test_a_translated_stream_is_the_same_received_whole_or_event_by_event(tmp_path, failing, whole):
    upstream, document = failing
    chunks = _two_chat_chunks("Hel", "lo")
    upstream.route("POST", "/v1/chat/completions", SSEReply(
        sse_events(*chunks, "[DONE]", event_names=[None] * 3), delay=0 if whole else 0.05, whole=whole))
    with RunningProxy(document, tmp_path) as proxy:
        status, headers, data = _anthropic_call(proxy, MODELS["chat"], stream=True)
    assert status == 200
    assert ("content-length" in headers) is whole and ("transfer-encoding" in headers) is not whole
    events = sse_payloads(data)
    assert [name for name, _ in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop"]
    assert "".join(p["delta"]["text"] for n, p in events if n == "content_block_delta") == "Hello"


def _anthropic_events(*texts):
    deltas = [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
              for text in texts]
    return sse_events(
        {"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant",
                                              "model": "claude-up", "content": [], "usage": {"input_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *deltas,
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}},
        {"type": "message_stop"},
    )


def _held_by_the_proxy(text):
    """The proxy's objects (same process) that hold the string ``text`` as a value: parsed
    JSON objects, or parts of the neutral model."""
    def holds(value):
        return type(value) is str and value == text

    found = []
    for obj in gc.get_objects():
        # A dict of strings alone is not tracked by the collector: it is found through
        # the tracked list or dict that holds it.
        children = obj if isinstance(obj, list) else obj.values() if isinstance(obj, dict) else ()
        for child in [obj, *children]:
            if isinstance(child, dict) and any(holds(value) for value in child.values()):
                found.append(child)
        if type(obj).__module__.startswith("cliproxy.") and holds(getattr(obj, "text", None)):
            found.append(obj)
    return found


@pytest.mark.parametrize("kind", ["anthropic", "chat"])
def test_a_streaming_answer_keeps_none_of_the_request_while_it_streams(tmp_path, failing, kind):
    upstream, document = failing
    events = _anthropic_events("Hel", "lo") if kind == "anthropic" else sse_events(
        *_two_chat_chunks("Hel", "lo"), "[DONE]", event_names=[None] * 3)
    upstream.route("POST", PROVIDER_PATHS[kind], SSEReply(events, delay=0.4))
    marker = "a long conversation, let go once the answer streams (%s)" % kind
    request = json.dumps({"model": MODELS[kind], "max_tokens": 10, "stream": True,
                          "messages": [{"role": "user", "content": marker}]})
    with RunningProxy(document, tmp_path) as proxy:
        connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        connection.request("POST", "/v1/messages", body=request,
                           headers={"x-api-key": KEY, "content-type": "application/json"})
        response = connection.getresponse()
        assert response.read1(65536).startswith(b"event: message_start")
        held = _held_by_the_proxy(marker)  # the upstream holds back the rest meanwhile
        rest = response.read()
        connection.close()
    assert held == []
    assert b"message_stop" in rest


def test_provider_error_event_mid_stream_reaches_a_responses_client(tmp_path, failing):
    upstream, document = failing
    upstream.route("POST", "/v1/messages", SSEReply(sse_events(
        {"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "model": "claude-up",
                                              "content": [], "usage": {"input_tokens": 1, "output_tokens": 0}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )))
    with RunningProxy(document, tmp_path) as proxy:
        status, _, data = proxy.request("POST", "/v1/responses",
                                        {"model": MODELS["anthropic"], "input": "hi", "stream": True},
                                        {"Authorization": "Bearer " + KEY})
    assert status == 200
    events = sse_payloads(data)
    assert events[-1][0] in ("error", "response.failed")
    assert "Overloaded" in json.dumps(events[-1][1])


def test_streaming_only_provider_answers_a_whole_answer_client(tmp_path, failing):
    upstream, document = failing
    chunks = _two_chat_chunks("Hello", " there")
    upstream.route("POST", "/v1/chat/completions", SSEReply(sse_events(*chunks, "[DONE]", event_names=[None] * 3)))
    with RunningProxy(document, tmp_path) as proxy:
        status, headers, data = _anthropic_call(proxy, MODELS["chat"], stream=False)
    assert status == 200
    assert headers["content-type"] == "application/json"
    message = json.loads(data)
    assert message["content"] == [{"type": "text", "text": "Hello there"}]
    assert message["stop_reason"] == "end_turn"
    assert message["model"] == MODELS["chat"]


def test_provider_that_ignores_stream_still_streams_to_the_client(tmp_path, failing):
    upstream, document = failing
    upstream.route("POST", "/v1/chat/completions", JSONReply(body={
        "id": "c", "object": "chat.completion", "created": 1, "model": "qwen-up",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}))
    with RunningProxy(document, tmp_path) as proxy:
        status, headers, data = _anthropic_call(proxy, MODELS["chat"], stream=True)
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    names = [n for n, _ in sse_payloads(data)]
    assert names[0] == "message_start" and names[-1] == "message_stop"


def test_failover_across_protocols_before_the_first_byte(tmp_path, failing):
    upstream, document = failing
    upstream.route("POST", "/v1/chat/completions", JSONReply(status=503, body={"error": {"message": "busy"}}))
    document["ampcode"]["model-mappings"] = [{"from": "claude-opus-4-5", "to": [MODELS["chat"], MODELS["gemini"]]}]
    upstream.route("POST", "/v1beta/models/", JSONReply(body={
        "candidates": [{"content": {"role": "model", "parts": [{"text": "from gemini"}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 2, "totalTokenCount": 4}}))
    with RunningProxy(document, tmp_path) as proxy:
        status, _, data = _anthropic_call(proxy, "claude-opus-4-5")
    assert status == 200
    message = json.loads(data)
    assert message["content"][0]["text"] == "from gemini"
    assert message["model"] == "claude-opus-4-5"


# -- the README's air-gapped set-up ---------------------------------------------------


def test_readme_air_gapped_setup_serves_every_family_from_one_openai_compatible_server(tmp_path):
    with FakeModel() as model:
        document = {
            "openai-compatibility": [{"name": "vllm", "base-url": model.url + "/v1",
                                      "models": [{"name": "Qwen/Qwen3-Coder-30B-A3B-Instruct", "alias": "qwen3-coder"}]}],
            "ampcode": {"upstream-url": "", "model-mappings": [
                {"from": "^claude-.*", "to": "qwen3-coder", "regex": True},
                {"from": "^gpt-.*", "to": "qwen3-coder", "regex": True},
                {"from": "^gemini-.*", "to": "qwen3-coder", "regex": True},
            ]},
        }
        with RunningProxy(document, tmp_path) as proxy:
            for client, name in ((AnthropicClient, "claude-opus-4-5-20251101"), (ResponsesClient, "gpt-5"),
                                 (GeminiClient, "gemini-2.5-pro"), (ChatClient, "gpt-5-mini")):
                for stream in (False, True):
                    agent = client(proxy.port, "unused")
                    turn = agent.ask(name, stream)
                    assert turn.model == name
                    assert [c.name for c in turn.calls] == ["get_weather", "get_time"]
                    assert agent.answer(name, stream, turn).text == FINAL
        sent = model.bodies("/v1/chat/completions")
        assert {body["model"] for body in sent} == {"Qwen/Qwen3-Coder-30B-A3B-Instruct"}


def test_gemini_count_tokens_served_elsewhere_is_an_estimate(served):
    proxy, _ = served
    status, headers, data = proxy.request(
        "POST", "/v1beta/models/%s:countTokens" % MODELS["chat"],
        {"contents": [{"role": "user", "parts": [{"text": "hello there, how are you"}]}]},
        {"x-goog-api-key": KEY})
    assert status == 200
    assert headers["x-cliproxy-token-count"] == "estimate"
    assert json.loads(data)["totalTokens"] > 0
