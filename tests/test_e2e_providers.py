"""End to end: provider routes, the routing decision, rewriting and sanitising.

The real proxy runs on a loopback port; providers and the Amp upstream are recording fakes.
"""

import gzip
import http.client
import json
import logging
import zlib

import pytest

from cliproxy.http.sse import SSEParser
from tests.support.fakes import FakeUpstream, GzipQuirkReply, JSONReply, RawReply, SSEReply, sse_events
from tests.support.proxy import RunningProxy

KEY = {"x-api-key": "sk-local"}
MESSAGES = "/api/provider/anthropic/v1/messages"


def anthropic_message(model, content=None):
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content or [{"type": "text", "text": "hello"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }


def anthropic_stream(model):
    return sse_events(
        {"type": "message_start", "message": anthropic_message(model, content=[])},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t1", "name": "bash", "input": {}}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"cmd\": \"ls\"}"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}},
        {"type": "message_stop"},
    )


@pytest.fixture
def upstreams():
    with FakeUpstream() as anthropic, FakeUpstream() as vllm, FakeUpstream() as gemini, FakeUpstream(
        default=JSONReply(body={"credits": True})
    ) as amp:
        yield anthropic, vllm, gemini, amp


def document(anthropic, vllm, gemini, amp, **ampcode):
    ampcode.setdefault("upstream-url", amp.url)
    ampcode.setdefault("upstream-api-key", "amp-key")
    ampcode.setdefault(
        "model-mappings",
        [
            {"from": "claude-opus-4-5-20251101", "to": "claude-sonnet-4-5-20250929"},
            {"from": "^gpt-5.*", "to": "qwen3-coder", "regex": True},
        ],
    )
    return {
        "api-keys": ["sk-local"],
        "claude-api-key": [
            {
                "api-key": "sk-ant-secret",
                "base-url": anthropic.url,
                "headers": {"x-team": "blue"},
                "models": [{"name": "claude-sonnet-4-5-20250929"}, {"name": "claude-sonnet-4-5-20250929", "alias": "sonnet"}],
            }
        ],
        "gemini-api-key": [{"api-key": "AIza-secret", "base-url": gemini.url}],
        "openai-compatibility": [
            {"name": "vllm", "base-url": vllm.url + "/v1", "models": [{"name": "Qwen/Qwen3-Coder", "alias": "qwen3-coder"}]}
        ],
        "ampcode": ampcode,
    }


@pytest.fixture
def proxy(tmp_path, upstreams):
    with RunningProxy(document(*upstreams), tmp_path) as running:
        yield running


def test_local_provider_gets_its_credential_and_the_upstream_name(proxy, upstreams):
    anthropic = upstreams[0]
    anthropic.route("POST", "/v1/messages", JSONReply(body=anthropic_message("claude-sonnet-4-5-20250929")))
    status, body = proxy.json("POST", MESSAGES, {"model": "sonnet", "max_tokens": 5, "messages": []}, KEY)
    assert status == 200
    assert body["model"] == "sonnet"
    seen = anthropic.requests[-1]
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == "sk-ant-secret"
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.headers["x-team"] == "blue"
    assert "sk-local" not in json.dumps(seen.headers_list)
    assert json.loads(seen.body)["model"] == "claude-sonnet-4-5-20250929"


def test_model_mapping_answers_under_the_requested_name(proxy, upstreams):
    anthropic = upstreams[0]
    anthropic.route("POST", "/v1/messages", JSONReply(body=anthropic_message("claude-sonnet-4-5-20250929")))
    status, body = proxy.json("POST", MESSAGES, {"model": "claude-opus-4-5-20251101", "messages": []}, KEY)
    assert status == 200
    assert body["model"] == "claude-opus-4-5-20251101"
    assert json.loads(anthropic.requests[-1].body)["model"] == "claude-sonnet-4-5-20250929"


def test_regex_mapping_to_an_openai_compatible_server(proxy, upstreams):
    vllm = upstreams[1]
    reply = {"id": "c1", "object": "chat.completion", "model": "Qwen/Qwen3-Coder", "choices": []}
    vllm.route("POST", "/v1/chat/completions", JSONReply(body=reply))
    path = "/api/provider/openai/v1/chat/completions"
    status, body = proxy.json("POST", path, {"model": "GPT-5-mini", "messages": []}, {"Authorization": "Bearer sk-local"})
    assert status == 200
    assert body["model"] == "GPT-5-mini"
    seen = vllm.requests[-1]
    assert json.loads(seen.body)["model"] == "Qwen/Qwen3-Coder"
    assert "authorization" not in seen.headers  # the entry has no key: nothing is sent


def test_root_level_openai_path(proxy, upstreams):
    vllm = upstreams[1]
    vllm.route("POST", "/v1/chat/completions", JSONReply(body={"model": "Qwen/Qwen3-Coder", "choices": []}))
    status, body = proxy.json(
        "POST", "/api/provider/groq/chat/completions", {"model": "qwen3-coder", "messages": []}, KEY
    )
    assert status == 200 and body["model"] == "qwen3-coder"


def test_unserved_model_is_charged_to_amp_credits_untouched(proxy, upstreams):
    amp = upstreams[3]
    raw = gzip.compress(json.dumps({"model": "grok-4", "messages": []}).encode())
    headers = dict(KEY, **{"Content-Encoding": "gzip", "Content-Type": "application/json"})
    status, _, body = proxy.request("POST", "/api/provider/xai/v1/chat/completions?beta=1&key=sk-local", raw, headers)
    assert status == 200 and json.loads(body) == {"credits": True}
    seen = amp.requests[-1]
    assert seen.target == "/api/provider/xai/v1/chat/completions?beta=1"
    assert seen.body == raw
    assert seen.headers["content-encoding"] == "gzip"
    assert seen.headers["authorization"] == "Bearer amp-key"


def test_amp_credits_answer_gzipped_without_a_coding_is_repaired(proxy, upstreams):
    amp = upstreams[3]
    answer = json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "choices": []}).encode()
    amp.route("POST", "/api/provider/xai/", GzipQuirkReply(answer, headers={"content-type": "application/json"}))
    status, headers, body = proxy.request(
        "POST", "/api/provider/xai/v1/chat/completions", {"model": "grok-4", "messages": []}, KEY)
    assert status == 200
    assert body == answer
    assert headers["content-length"] == str(len(answer)) and "content-encoding" not in headers


def test_paid_fallback_deny_is_402_naming_the_mapping(tmp_path, upstreams):
    with RunningProxy(document(*upstreams, **{"paid-fallback": "deny"}), tmp_path) as proxy:
        status, body = proxy.json("POST", MESSAGES, {"model": "claude-haiku-4-5", "messages": []}, KEY)
    assert status == 402
    assert body["type"] == "error"
    assert "claude-haiku-4-5" in body["error"]["message"]
    assert '"from": "claude-haiku-4-5"' in body["error"]["message"]
    assert upstreams[3].requests == []


def test_offline_unserved_model_is_404_in_the_protocol_shape(tmp_path, upstreams):
    with RunningProxy(document(*upstreams, **{"upstream-url": ""}), tmp_path) as proxy:
        status, body = proxy.json(
            "POST", "/api/provider/openai/v1/responses", {"model": "o3", "input": "x"}, KEY
        )
    assert status == 404
    assert body["error"]["type"] == "not_found_error" or body["error"]["code"]
    assert "o3" in body["error"]["message"]


def test_gemini_paths_and_credentials(proxy, upstreams):
    gemini = upstreams[2]
    reply = {"candidates": [], "modelVersion": "gemini-2.5-pro"}
    gemini.route("POST", "/v1beta/models/", JSONReply(body=reply))
    paths = [
        "/api/provider/google/v1beta/models/gemini-2.5-pro:generateContent",
        "/api/provider/google/v1/models/gemini-2.5-pro:generateContent",
        "/api/provider/google/v1beta1/publishers/google/models/gemini-2.5-pro:generateContent",
        "/api/provider/google/v1beta1/projects/p1/locations/global/publishers/google/models/gemini-2.5-pro:generateContent",
    ]
    for path in paths:
        status, body = proxy.json("POST", path, {"contents": []}, {"x-goog-api-key": "sk-local"})
        assert status == 200, path
        assert body["modelVersion"] == "gemini-2.5-pro"
        seen = gemini.requests[-1]
        assert seen.path == "/v1beta/models/gemini-2.5-pro:generateContent"
        assert seen.headers["x-goog-api-key"] == "AIza-secret"


def test_sse_is_rewritten_event_by_event_across_split_reads(proxy, upstreams):
    anthropic = upstreams[0]
    events = anthropic_stream("claude-sonnet-4-5-20250929")
    raw = b"".join(events)
    # Split inside the first event's JSON, inside "data:", and between \n and \n.
    split_at = [7, raw.index(b"model") + 3, len(events[0]) - 1, len(events[0]) + 5]
    anthropic.route("POST", "/v1/messages", SSEReply(events, split_at=split_at, headers={"content-type": "text/event-stream"}))
    request = {
        "model": "claude-opus-4-5-20251101",
        "stream": True,
        "messages": [],
        "tools": [{"name": "Bash", "input_schema": {}}],
    }
    status, headers, body = proxy.request("POST", MESSAGES, request, KEY)
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    received = SSEParser().feed(body)
    assert [e.event for e in received] == [json.loads(e.split(b"data: ", 1)[1])["type"] for e in events]
    start = json.loads(received[0].data)
    assert start["message"]["model"] == "claude-opus-4-5-20251101"
    block = json.loads(received[1].data)["content_block"]
    assert block["name"] == "Bash"
    assert "signature" in block
    assert received[2].raw == events[2]  # untouched events pass as they came


def test_a_stream_received_whole_goes_out_whole_in_one_body(proxy, upstreams):
    anthropic = upstreams[0]
    events = anthropic_stream("claude-sonnet-4-5-20250929")
    anthropic.route("POST", "/v1/messages", SSEReply(events, whole=True, headers={"content-type": "text/event-stream"}))
    request = {"model": "claude-opus-4-5-20251101", "stream": True, "messages": []}
    status, headers, body = proxy.request("POST", MESSAGES, request, KEY)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    # Nothing is left to wait for: a length, not chunks, and the same events as a relay.
    assert "transfer-encoding" not in headers and int(headers["content-length"]) == len(body)
    received = SSEParser().feed(body)
    assert len(received) == len(events) and [e.raw for e in received[2:]] == events[2:]
    assert json.loads(received[0].data)["message"]["model"] == "claude-opus-4-5-20251101"


def test_thinking_suffix_is_applied_natively_and_kept_in_the_answer(proxy, upstreams):
    anthropic = upstreams[0]
    anthropic.route("POST", "/v1/messages", JSONReply(body=anthropic_message("claude-sonnet-4-5-20250929")))
    status, body = proxy.json(
        "POST", MESSAGES, {"model": "claude-sonnet-4-5-20250929(8192)", "max_tokens": 1000, "messages": []}, KEY
    )
    assert status == 200
    assert body["model"] == "claude-sonnet-4-5-20250929(8192)"
    sent = json.loads(anthropic.requests[-1].body)
    assert sent["model"] == "claude-sonnet-4-5-20250929"
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert sent["max_tokens"] > 8192


def test_anthropic_request_sanitising_and_beta_header(proxy, upstreams):
    anthropic = upstreams[0]
    anthropic.route("POST", "/v1/messages", JSONReply(body=anthropic_message("claude-sonnet-4-5-20250929")))
    marker = {"type": "ephemeral"}
    request = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": str(i), "cache_control": marker} for i in range(4)]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hm", "signature": ""},
                    {"type": "tool_use", "id": "t", "name": "Bash", "input": {}, "signature": "x"},
                ],
            },
        ],
        "model": "claude-sonnet-4-5-20250929",
        "system": [{"type": "text", "text": "s", "cache_control": marker}],
        "tools": [{"name": "Bash", "input_schema": {}, "cache_control": marker}],
    }
    headers = dict(KEY, **{"anthropic-beta": "context-1m-2025-08-07, fine-grained-tool-streaming-2025-05-14"})
    status, _ = proxy.json("POST", MESSAGES, request, headers)
    assert status == 200
    seen = anthropic.requests[-1]
    sent = json.loads(seen.body)
    assert "context-1m" not in seen.headers["anthropic-beta"]
    assert "fine-grained-tool-streaming-2025-05-14" in seen.headers["anthropic-beta"]
    assert "cache_control" not in sent["tools"][0] and "cache_control" not in sent["system"][0]
    assert [("cache_control" in block) for block in sent["messages"][0]["content"]] == [True] * 4
    assert sent["messages"][1]["content"] == [{"type": "tool_use", "id": "t", "name": "Bash", "input": {}}]


def test_non_streaming_response_rewriting(proxy, upstreams):
    anthropic = upstreams[0]
    content = [
        {"type": "thinking", "thinking": "plan"},
        {"type": "tool_use", "id": "t1", "name": "read", "input": {}},
    ]
    anthropic.route("POST", "/v1/messages", JSONReply(body=anthropic_message("claude-sonnet-4-5-20250929", content)))
    status, body = proxy.json("POST", MESSAGES, {"model": "sonnet", "messages": []}, KEY)
    assert status == 200
    assert body["content"] == [{"type": "tool_use", "id": "t1", "name": "Read", "input": {}, "signature": ""}]


def test_gzip_and_deflate_request_bodies_are_decoded_for_local_providers(proxy, upstreams):
    anthropic = upstreams[0]
    anthropic.route("POST", "/v1/messages", JSONReply(body=anthropic_message("claude-sonnet-4-5-20250929")))
    plain = json.dumps({"model": "sonnet", "messages": []}).encode()
    for coding, data in (("gzip", gzip.compress(plain)), ("deflate", zlib.compress(plain))):
        status, _ = proxy.json("POST", MESSAGES, data, dict(KEY, **{"Content-Encoding": coding}))
        assert status == 200, coding
        assert "content-encoding" not in anthropic.requests[-1].headers
        assert json.loads(anthropic.requests[-1].body)["model"] == "claude-sonnet-4-5-20250929"


def test_bad_bodies_get_protocol_shaped_errors(proxy):
    status, body = proxy.json("POST", MESSAGES, b"{not json", KEY)
    assert status == 400 and body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    status, body = proxy.json("POST", MESSAGES, b"xx", dict(KEY, **{"Content-Encoding": "br"}))
    assert status == 415
    status, body = proxy.json("POST", "/api/provider/google/v1beta/models/gemini-2.5-pro:generateContent", b"[", KEY)
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    status, body = proxy.json("POST", MESSAGES, {"messages": []}, KEY)
    assert status == 400 and "model" in body["error"]["message"]


def test_cross_protocol_calls_are_translated(proxy, upstreams):
    anthropic = upstreams[0]
    anthropic.route("POST", "/v1/messages", JSONReply(body=anthropic_message("claude-sonnet-4-5-20250929")))
    status, body = proxy.json(
        "POST",
        "/api/provider/openai/v1/chat/completions",
        {"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]},
        KEY,
    )
    assert status == 200
    assert body["object"] == "chat.completion" and body["model"] == "sonnet"
    assert body["choices"][0]["message"]["content"] == "hello"
    sent = json.loads(anthropic.requests[-1].body)
    assert sent["model"] == "claude-sonnet-4-5-20250929"
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


def test_model_lists_in_each_protocol_shape(proxy):
    status, body = proxy.json("GET", "/api/provider/openai/v1/models", headers=KEY)
    ids = [m["id"] for m in body["data"]]
    assert status == 200 and body["object"] == "list"
    assert ids.count("sonnet") == 1 and "qwen3-coder" in ids and "claude-opus-4-5-20251101" in ids
    status, body = proxy.json("GET", "/api/provider/anthropic/v1/models", headers=KEY)
    assert body["data"][0]["type"] == "model"
    status, body = proxy.json("GET", "/api/provider/google/v1beta/models", headers=KEY)
    assert body["models"][0]["name"].startswith("models/")


def test_count_tokens_is_estimated_when_no_anthropic_provider_counts(proxy):
    request = {"model": "qwen3-coder", "messages": [{"role": "user", "content": "x" * 400}]}
    status, headers, body = proxy.request("POST", MESSAGES + "/count_tokens", request, KEY)
    assert status == 200
    assert headers["x-cliproxy-token-count"] == "estimate"
    assert json.loads(body)["input_tokens"] >= 100


def test_count_tokens_forwarded_to_an_anthropic_provider(proxy, upstreams):
    anthropic = upstreams[0]
    anthropic.route("POST", "/v1/messages/count_tokens", JSONReply(body={"input_tokens": 42}))
    status, body = proxy.json("POST", MESSAGES + "/count_tokens", {"model": "sonnet", "messages": []}, KEY)
    assert (status, body) == (200, {"input_tokens": 42})
    assert anthropic.requests[-1].path == "/v1/messages/count_tokens"


def test_streamed_response_arrives_event_by_event(proxy, upstreams):
    anthropic = upstreams[0]
    events = anthropic_stream("claude-sonnet-4-5-20250929")
    anthropic.route("POST", "/v1/messages", SSEReply(events, delay=0.3, headers={"content-type": "text/event-stream"}))
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    body = json.dumps({"model": "sonnet", "stream": True, "messages": []})
    connection.request("POST", MESSAGES, body=body, headers=dict(KEY, **{"Content-Type": "application/json"}))
    response = connection.getresponse()
    assert response.getheader("transfer-encoding") == "chunked"
    parser = SSEParser()
    first = []
    while not first:
        first = parser.feed(response.read1(65536))
    # The first event is here while the fake still holds back the rest (0.3 s apart).
    assert first[0].event == "message_start"
    assert len(anthropic.requests) == 1
    rest = response.read()
    connection.close()
    assert len(first) + len(parser.feed(rest)) == len(events)


def test_per_entry_proxy_url_and_direct(tmp_path, monkeypatch):
    """An entry's ``proxy-url`` is used for it alone; ``direct`` ignores HTTP_PROXY."""
    with FakeUpstream(default=JSONReply(body=anthropic_message("claude-via-proxy"))) as outbound_proxy, FakeUpstream(
        default=JSONReply(body=anthropic_message("claude-direct"))
    ) as provider:
        document = {
            "api-keys": ["sk-local"],
            "claude-api-key": [
                {"api-key": "sk-a", "base-url": "http://provider.invalid", "proxy-url": outbound_proxy.url,
                 "models": [{"name": "claude-via-proxy"}]},
                {"api-key": "sk-b", "base-url": provider.url, "proxy-url": "direct", "models": [{"name": "claude-direct"}]},
            ],
            "ampcode": {"upstream-url": ""},
        }
        # A proxy that does not exist: only an entry that honours "direct" can succeed.
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
        with RunningProxy(document, tmp_path) as proxy:
            assert proxy.json("POST", MESSAGES, {"model": "claude-via-proxy", "messages": []}, KEY)[0] == 200
            assert proxy.json("POST", MESSAGES, {"model": "claude-direct", "messages": []}, KEY)[0] == 200
        assert outbound_proxy.requests[-1].target == "http://provider.invalid/v1/messages"
        assert outbound_proxy.requests[-1].headers["x-api-key"] == "sk-a"
        assert provider.requests[-1].headers["x-api-key"] == "sk-b"


def test_a_body_that_needs_no_change_is_forwarded_as_sent(proxy, upstreams):
    anthropic = upstreams[0]
    anthropic.route("POST", "/v1/messages", JSONReply(body=anthropic_message("claude-sonnet-4-5-20250929")))
    raw = b'{"messages": [],   "model": "claude-sonnet-4-5-20250929", "max_tokens": 5}'
    status, _ = proxy.json("POST", MESSAGES, raw, dict(KEY, **{"Content-Type": "application/json"}))
    assert status == 200
    assert anthropic.requests[-1].body == raw
    compressed = gzip.compress(raw)
    status, _ = proxy.json("POST", MESSAGES, compressed, dict(KEY, **{"Content-Encoding": "gzip"}))
    assert status == 200
    assert anthropic.requests[-1].body == raw  # decoded, otherwise untouched


@pytest.mark.parametrize(
    "method,path,allow",
    [
        ("GET", "/v1/messages", "POST"),
        ("GET", "/api/provider/anthropic/v1/messages", "POST"),
        ("PUT", "/api/provider/openai/v1/chat/completions", "POST"),
        ("GET", "/v1beta/models/gemini-2.5-pro:generateContent", "POST"),
        ("POST", "/api/provider/openai/v1/models", "GET"),
        ("DELETE", "/v1beta/models", "GET"),
    ],
)
def test_a_wrong_method_on_a_model_route_is_405_with_allow(proxy, method, path, allow):
    status, headers, data = proxy.request(method, path, None, KEY)
    assert status == 405
    assert headers["allow"] == allow
    body = json.loads(data)
    assert body["error"]["message"]
    if "anthropic" in path or path == "/v1/messages":
        assert body["type"] == "error"
    if "v1beta" in path:
        assert body["error"]["status"] == "INVALID_ARGUMENT"


def _bomb(size=8 * 1024 * 1024):
    return gzip.compress(b"\0" * size)


def test_a_provider_gzip_bomb_is_a_502_within_max_body_bytes(tmp_path, upstreams, caplog):
    anthropic = upstreams[0]
    anthropic.route("POST", "/v1/messages", JSONReply(body=_bomb(), headers={"content-encoding": "gzip"}))
    doc = document(*upstreams)
    doc["limits"] = {"max-body-bytes": 1024 * 1024}
    doc["request-retry"] = 0
    with RunningProxy(doc, tmp_path) as proxy:
        status, body = proxy.json("POST", MESSAGES, {"model": "sonnet", "max_tokens": 5, "messages": []}, KEY)
    assert status == 502
    assert "does not decode" in body["error"]["message"]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and not any(r.exc_info for r in caplog.records)


def test_a_streamed_provider_gzip_bomb_ends_the_stream_with_an_error_event(tmp_path, upstreams):
    anthropic = upstreams[0]
    bomb = _bomb()
    head = ("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\n"
            "Content-Length: %d\r\nConnection: close\r\n\r\n" % len(bomb)).encode()
    anthropic.route("POST", "/v1/messages", RawReply(head + bomb))
    doc = document(*upstreams)
    doc["limits"] = {"max-body-bytes": 1024 * 1024}
    with RunningProxy(doc, tmp_path) as proxy:
        status, _, data = proxy.request(
            "POST", MESSAGES, {"model": "sonnet", "max_tokens": 5, "stream": True, "messages": []}, KEY)
    assert status == 200
    assert data.rstrip().endswith(b"}") and b"event: error" in data and b"does not decode" in data
