"""End to end: what every Amp release needs (classic CLIs offline, Neo through the tunnel).

The calls are written from the real CLIs' traffic, recorded against a fake upstream:
classic releases from April 2026 on ask ``getThread`` for every thread they open and
``loadPlugins``/``loadSkills`` at start; Neo releases call ``/api/thread-actors`` (a
management route) and then ``/actors/...`` with their own credentials, including a
WebSocket whose token rides in ``Sec-WebSocket-Protocol``.
"""

import json
import logging
import os
import socket

import pytest

from tests.support.fakes import FakeUpstream, FakeWebSocketEcho, JSONReply
from tests.support.http_peers import read_head, upgrade_request
from tests.support.proxy import RunningProxy

CLIENT_KEY = "sk-local-1"
AUTH = {"Authorization": "Bearer " + CLIENT_KEY}
THREAD_ID = "T-01a234c0-6d17-70c4-8062-d719a9de6e90"
ACTOR_SOCKET = "/actors/gateway/threadActor/websocket/?rvt-namespace=default&rvt-method=get&rvt-key=%s&rvt-skip-ready-wait=true"


def rpc(proxy, method, params=None):
    return proxy.json("POST", "/api/internal?" + method, {"method": method, "params": params or {}}, AUTH)


@pytest.fixture
def offline(tmp_path):
    with RunningProxy({"api-keys": [CLIENT_KEY], "ampcode": {"upstream-url": ""}}, tmp_path) as proxy:
        yield proxy


# -- classic releases, offline ------------------------------------------------------------


def test_get_thread_of_an_unknown_thread_is_thread_not_found_with_200(offline):
    status, body = rpc(offline, "getThread", {"thread": THREAD_ID})
    assert status == 200
    assert body["ok"] is False
    assert body["error"]["code"] == "thread-not-found"
    assert body["error"]["message"]


def test_get_thread_returns_the_uploaded_thread(offline):
    thread = {"v": 7, "id": THREAD_ID, "created": 1796181355811,
              "messages": [{"role": "user", "messageId": 0, "content": [{"type": "text", "text": "say hi"}]}]}
    assert rpc(offline, "uploadThread", {"thread": thread}) == (200, {"ok": True})
    status, body = rpc(offline, "getThread", {"thread": THREAD_ID})
    # The CLI reads ``result.thread.data`` (SPEC said the bare thread; the CLI decides).
    assert (status, body) == (200, {"ok": True, "result": {"thread": {"id": THREAD_ID, "data": thread}}})


@pytest.mark.parametrize("method", ["loadPlugins", "loadSkills"])
def test_plugins_and_skills_are_empty_lists(offline, method):
    assert rpc(offline, method) == (200, {"ok": True, "result": []})


@pytest.mark.parametrize("bad_id", ["abc\n", "..", "...", ".json", ".hidden", "-x", "_x", "a/b", "a" * 129, "", 5, None])
def test_thread_ids_are_checked_whole_and_nothing_is_written(offline, bad_id):
    status, body = rpc(offline, "uploadThread", {"thread": {"id": bad_id, "messages": []}})
    assert status == 400
    assert "id" in body["error"]["message"]
    threads = os.path.join(offline.directory, "logs", "threads")
    assert not os.path.exists(threads) or os.listdir(threads) == []
    assert rpc(offline, "getThread", {"thread": bad_id})[1]["error"]["code"] == "thread-not-found"


def test_thread_link_info_says_a_classic_thread(offline):
    # ``amp threads continue`` reads result.usesThreadActors and throws on a null result.
    assert rpc(offline, "getThreadLinkInfo", {"thread": THREAD_ID}) == (200, {"ok": True, "result": {"usesThreadActors": False}})


def test_longest_valid_thread_id_is_accepted(offline):
    thread_id = "T" + "a" * 127
    assert rpc(offline, "uploadThread", {"thread": {"id": thread_id}}) == (200, {"ok": True})
    assert rpc(offline, "getThread", {"thread": thread_id})[1]["result"]["thread"]["data"]["id"] == thread_id


def test_actors_offline_is_503(offline):
    status, body = offline.json("GET", "/actors/metadata")
    assert status == 503


# -- Neo releases, through the tunnel -----------------------------------------------------


@pytest.fixture
def amp():
    with FakeWebSocketEcho(default=JSONReply(body={"ok": True})) as upstream:
        upstream.route("POST", "/api/thread-actors", JSONReply(body={"threadId": THREAD_ID, "wsToken": "rvt_tok_123"}))
        yield upstream


def neo_proxy(tmp_path, upstream_url):
    document = {"api-keys": [CLIENT_KEY], "ampcode": {"upstream-url": upstream_url, "upstream-api-key": "amp-owner-key"}}
    return RunningProxy(document, tmp_path)


def test_neo_sequence_reaches_the_upstream_with_its_own_credentials_only(tmp_path, amp, caplog):
    caplog.set_level(logging.INFO, logger="cliproxy.amp")
    with neo_proxy(tmp_path, amp.url) as proxy:
        status, created = proxy.json("POST", "/api/thread-actors", {"agentMode": "smart"}, AUTH)
        assert status == 200 and created["wsToken"] == "rvt_tok_123"
        status, _, _ = proxy.request("GET", "/actors/metadata", None, {"Authorization": "Basic bmVvOnNlY3JldA=="})
        assert status == 200
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(upgrade_request(ACTOR_SOCKET % THREAD_ID, protocols="rivet, rivet_token.rvt_tok_123"))
            head, rest = read_head(sock)
            assert head.startswith("HTTP/1.1 101")
            assert "sec-websocket-protocol: rivet" in head.lower()
            sock.sendall(b"\x81\x04ping")
            echoed = rest
            while len(echoed) < 6:
                echoed += sock.recv(4096)
            assert echoed == b"\x81\x04ping"
    actors_call, metadata, upgrade = amp.requests
    assert actors_call.path == "/api/thread-actors"
    assert actors_call.headers["authorization"] == "Bearer amp-owner-key"
    assert metadata.path == "/actors/metadata"
    assert metadata.headers["authorization"] == "Basic bmVvOnNlY3JldA=="
    assert upgrade.target == ACTOR_SOCKET % THREAD_ID
    assert upgrade.headers["sec-websocket-protocol"] == "rivet, rivet_token.rvt_tok_123"
    for seen in (metadata, upgrade):
        text = json.dumps(seen.headers_list) + seen.target
        assert "amp-owner-key" not in text and CLIENT_KEY not in text
        assert "x-api-key" not in seen.headers
    modes = [r.fields["mode"] for r in caplog.records if r.getMessage() == "amp client mode"]
    assert modes == ["neo"], "said once per client"


@pytest.mark.parametrize(
    "headers,query",
    [
        ({"x-api-key": CLIENT_KEY}, ""),
        ({"x-goog-api-key": CLIENT_KEY}, ""),
        ({"Authorization": "Bearer " + CLIENT_KEY}, ""),
        ({}, "?key=" + CLIENT_KEY),
        ({}, "?auth_token=" + CLIENT_KEY + "&keep=1"),
    ],
)
def test_a_client_key_never_rides_along_to_actors(tmp_path, amp, headers, query):
    with neo_proxy(tmp_path, amp.url) as proxy:
        status, _, _ = proxy.request("GET", "/actors/metadata" + query, None, headers)
    assert status == 200
    seen = amp.requests[-1]
    assert CLIENT_KEY not in json.dumps(seen.headers_list) + seen.target
    assert "amp-owner-key" not in json.dumps(seen.headers_list)


def test_an_actor_bearer_token_that_is_not_a_client_key_passes_untouched(tmp_path, amp):
    with neo_proxy(tmp_path, amp.url) as proxy:
        proxy.request("GET", "/actors/metadata", None, {"Authorization": "Bearer rvt_tok_123"})
    assert amp.requests[-1].headers["authorization"] == "Bearer rvt_tok_123"


def test_thread_actors_still_needs_the_client_key(tmp_path, amp):
    with neo_proxy(tmp_path, amp.url) as proxy:
        status, _ = proxy.json("POST", "/api/thread-actors", {})
    assert status == 401
    assert amp.requests == []


def test_a_bad_actor_upgrade_is_400_and_nothing_is_sent(tmp_path, amp):
    with neo_proxy(tmp_path, amp.url) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(upgrade_request(ACTOR_SOCKET % THREAD_ID, key="short"))
            head, _ = read_head(sock)
    assert head.startswith("HTTP/1.1 400")
    assert amp.requests == []


def test_classic_mode_is_said_once_per_client(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="cliproxy.amp")
    with FakeUpstream(default=JSONReply(body={"id": "m", "type": "message", "role": "assistant", "model": "x",
                                             "content": [], "stop_reason": "end_turn",
                                             "usage": {"input_tokens": 1, "output_tokens": 1}})) as provider:
        document = {"api-keys": [CLIENT_KEY], "claude-api-key": [{"api-key": "k", "base-url": provider.url}],
                    "ampcode": {"upstream-url": ""}}
        with RunningProxy(document, tmp_path) as proxy:
            for _ in range(3):
                status, _ = proxy.json("POST", "/api/provider/anthropic/v1/messages",
                                       {"model": "claude-x", "max_tokens": 5, "messages": []}, AUTH)
                assert status == 200
            proxy.json("POST", "/v1/messages", {"model": "claude-x", "max_tokens": 5, "messages": []}, AUTH)
    records = [r for r in caplog.records if r.getMessage() == "amp client mode"]
    assert [(r.fields["mode"], r.fields["peer"]) for r in records] == [("classic", "127.0.0.1")]


# -- model names that move ----------------------------------------------------------------


def test_adaptive_thinking_and_output_config_through_a_mapping(tmp_path):
    with FakeUpstream() as provider:
        provider.route("POST", "/v1/chat/completions", JSONReply(body={
            "id": "c", "object": "chat.completion", "created": 1, "model": "qwen",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}))
        provider.route("POST", "/v1/messages", JSONReply(body={
            "id": "m", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
            "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 1}}))
        document = {
            "api-keys": [CLIENT_KEY],
            "claude-api-key": [{"api-key": "k", "base-url": provider.url, "models": [{"name": "claude-sonnet-4-5"}]}],
            "openai-compatibility": [{"name": "local", "base-url": provider.url + "/v1", "models": [{"name": "qwen"}]}],
            "ampcode": {"upstream-url": "", "model-mappings": [
                {"from": "^claude-opus-.*", "to": "qwen", "regex": True},
                {"from": "^claude-haiku-.*", "to": "claude-sonnet-4-5", "regex": True},
            ]},
        }
        request = {"max_tokens": 32000, "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
                   "messages": [{"role": "user", "content": "say hi"}]}
        with RunningProxy(document, tmp_path) as proxy:
            status, body = proxy.json("POST", "/api/provider/anthropic/v1/messages",
                                      dict(request, model="claude-opus-4-7"), AUTH)
            assert (status, body["model"]) == (200, "claude-opus-4-7")
            status, body = proxy.json("POST", "/api/provider/anthropic/v1/messages",
                                      dict(request, model="claude-haiku-4-8(low)"), AUTH)
            assert (status, body["model"]) == (200, "claude-haiku-4-8(low)")
    translated = json.loads(provider.requests[0].body)
    assert translated["model"] == "qwen"
    assert translated["reasoning_effort"] == "high"
    assert "output_config" not in translated and "thinking" not in translated
    native = json.loads(provider.requests[1].body)
    assert native["model"] == "claude-sonnet-4-5"
    assert native["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert native["max_tokens"] == 32000
