"""End to end: malformed model-call bodies get a clear 4xx in the protocol's shape, never a
500, and the proxy keeps serving (SPEC §4)."""

import json
import random

import pytest

from tests.support.fakes import FakeUpstream, JSONReply
from tests.support.proxy import RunningProxy

PATHS = (
    "/api/provider/anthropic/v1/messages",
    "/api/provider/anthropic/v1/messages/count_tokens",
    "/api/provider/openai/v1/chat/completions",
    "/api/provider/openai/v1/responses",
    "/api/provider/google/v1beta/models/gemini-x:generateContent",
)
NASTY = (
    b"[" * 100000 + b"]" * 100000,  # deeper than the JSON decoder's recursion limit
    b'{"a":' * 50000 + b"1" + b"}" * 50000,
    b'{"model": 5}',
    b'{"model": null}',
    b'"just a string"',
    b"\xff\xfe\x00",
    b'{"model": "claude-x(',
    b'{"model": "claude-x(99999999999999999999999)"}',
    b'{"model": "claude-x(-1)", "messages": []}',
    b'{"model": "' + b"a" * 100000 + b'"}',
    b'{"model": "claude-x", "messages": "not a list", "tools": "x", "system": 7}',
    b'{"model": "claude-x(high)", "thinking": 5, "max_tokens": "x", "reasoning": 5, "generationConfig": 3}',
    b'{"model": "claude-x", "messages": [1, "x", {"content": 5}, {"role": "assistant", "content": [null, 3, {"type": "thinking"}]}]}',
    b'{"model":"claude-x","messages":[{"role":"user","content":[{"type":"tool_result","content":[{"cache_control":1},{"cache_control":2},{"cache_control":3},{"cache_control":4},{"cache_control":5}]}]}]}',
)


def random_value(rng, depth=0):
    kinds = ["null", "int", "str", "list", "dict"] if depth < 4 else ["null", "int", "str"]
    kind = rng.choice(kinds)
    if kind == "null":
        return None
    if kind == "int":
        return rng.randint(-(2**40), 2**40)
    if kind == "str":
        return rng.choice(["", "thinking", "tool_use", "assistant", "claude-x(high)", "é" * rng.randint(0, 5)])
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["type", "role", "content", "signature", "cache_control", "name", "messages", "model"]
    return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def random_bodies(count, seed=20261121):
    rng = random.Random(seed)
    for _ in range(count):
        body = {key: random_value(rng) for key in rng.sample(["messages", "system", "tools", "thinking", "stream"], 3)}
        body["model"] = rng.choice(["claude-x", "claude-x(8192)", "gpt-5", "unknown", 7])
        yield json.dumps(body).encode()


# A valid answer on each protocol's path: whatever the client sent, translated or not,
# the provider answers well, so any failure is the proxy's handling of the request.
ANSWERS = {
    "/v1/messages/count_tokens": {"input_tokens": 3},
    "/v1/messages": {"id": "m", "type": "message", "role": "assistant", "model": "x", "stop_reason": "end_turn",
                     "content": [{"type": "text", "text": "ok"}], "usage": {"input_tokens": 1, "output_tokens": 1}},
    "/v1/chat/completions": {"id": "c", "object": "chat.completion", "created": 1, "model": "x",
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                          "finish_reason": "stop"}]},
    "/v1beta/models/": {"candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]},
                                        "finishReason": "STOP"}]},
}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    with FakeUpstream(default=JSONReply(body={"model": "x", "content": [], "choices": []})) as upstream:
        for path, answer in ANSWERS.items():
            upstream.route("POST", path, JSONReply(body=answer))
        document = {
            "api-keys": ["k"],
            "claude-api-key": [{"api-key": "a", "base-url": upstream.url}],
            "gemini-api-key": [{"api-key": "g", "base-url": upstream.url}],
            "openai-compatibility": [{"name": "o", "base-url": upstream.url + "/v1", "models": [{"name": "gpt-5"}]}],
            "ampcode": {"upstream-url": ""},
        }
        with RunningProxy(document, tmp_path_factory.mktemp("malformed")) as running:
            yield running


def assert_clear_answer(status, headers, data):
    assert status < 500 or status == 501, (status, data[:200])
    if status >= 400:
        assert headers["content-type"].startswith("application/json")
        assert json.loads(data)["error"]["message"]


@pytest.mark.parametrize("path", PATHS)
def test_nasty_bodies_get_a_clear_answer(proxy, path):
    for body in NASTY:
        assert_clear_answer(*proxy.request("POST", path, body, {"x-api-key": "k"}))
    assert proxy.request("GET", "/healthz")[0] == 200


@pytest.mark.parametrize("path", PATHS)
def test_random_shapes_get_a_clear_answer(proxy, path):
    for body in random_bodies(60):
        assert_clear_answer(*proxy.request("POST", path, body, {"x-api-key": "k"}))
    assert proxy.request("GET", "/healthz")[0] == 200


def test_offline_control_plane_rejects_nasty_bodies_cleanly(tmp_path):
    with RunningProxy({"api-keys": ["k"], "ampcode": {"upstream-url": ""}}, tmp_path) as offline:
        for body in NASTY[:2] + (b"\x1f\x8b not really gzip",):
            assert_clear_answer(*offline.request("POST", "/api/internal?uploadThread", body, {"x-api-key": "k"}))
        assert offline.request("GET", "/healthz")[0] == 200


def test_a_provider_answering_absurdly_nested_json_is_relayed_not_a_crash(tmp_path):
    nested = b"[" * 100000 + b"]" * 100000
    with FakeUpstream(default=JSONReply(body=nested)) as upstream:
        document = {"api-keys": ["k"], "claude-api-key": [{"api-key": "a", "base-url": upstream.url}], "ampcode": {"upstream-url": ""}}
        with RunningProxy(document, tmp_path) as running:
            status, _, data = running.request(
                "POST", "/api/provider/anthropic/v1/messages", b'{"model": "claude-x", "messages": []}', {"x-api-key": "k"}
            )
    assert (status, data) == (200, nested)


@pytest.mark.parametrize("path", PATHS)
def test_a_lone_surrogate_escape_is_400_not_500(proxy, path, caplog):
    body = b'{"model":"claude-x(high)","max_tokens":5,"messages":[{"role":"user","content":"\\ud800"}]}'
    status, headers, data = proxy.request("POST", path, body, {"x-api-key": "k"})
    assert status == 400
    assert "surrogate" in json.loads(data)["error"]["message"]
    assert not [r for r in caplog.records if r.exc_info]
    paired = b'{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"\\ud83d\\ude00 and \\\\ud800"}]}'
    assert proxy.request("POST", path, paired, {"x-api-key": "k"})[0] == 200


@pytest.mark.parametrize("key", ["model", "stream"])
def test_a_repeated_routing_key_is_400(proxy, key):
    body = b'{"model":"claude-x","stream":false,"max_tokens":5,"messages":[],"%s":%s}' % (
        key.encode(), b'"gpt-5"' if key == "model" else b"true")
    status, _, data = proxy.request("POST", "/api/provider/anthropic/v1/messages", body, {"x-api-key": "k"})
    assert status == 400
    assert key in json.loads(data)["error"]["message"]


def test_a_nested_model_key_is_fine(proxy):
    body = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "assistant", "content": [
        {"type": "tool_use", "id": "t", "name": "pick", "input": {"model": "other", "stream": True}}]}]}
    assert proxy.request("POST", "/api/provider/anthropic/v1/messages", body, {"x-api-key": "k"})[0] == 200


def test_a_body_with_a_byte_order_mark_is_read_like_any_other(proxy):
    body = b'\xef\xbb\xbf{"model":"claude-x","max_tokens":5,"messages":[]}'
    assert proxy.request("POST", "/api/provider/anthropic/v1/messages", body, {"x-api-key": "k"})[0] == 200
    repeated = b'\xef\xbb\xbf{"model":"claude-x","model":"gpt-5","messages":[]}'
    assert proxy.request("POST", "/api/provider/anthropic/v1/messages", repeated, {"x-api-key": "k"})[0] == 400
