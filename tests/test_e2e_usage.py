"""End to end: usage accounting through the running proxy (SPEC §3.4), failover reported
by who answered, and the debug log of a proxied request.

Providers are ``FakeModel`` (tests/support/agent_loop.py): every protocol on its own path,
each answer carrying its protocol's usage (30 prompt tokens of which 5 cached, 12 output).
"""

import functools
import json
import logging

import pytest

from tests.support import agent_loop
from tests.support.agent_loop import CLIENTS, FakeModel
from tests.support.fakes import FakeUpstream, JSONReply, SSEReply
from tests.support.proxy import RunningProxy

KEY = "sk-local"
MANAGE = {"Authorization": "Bearer mgmt-secret"}
MODELS = {"anthropic": "claude-x", "chat": "qwen-x", "responses": "codex-x", "gemini": "gemini-x"}


def document(model_url, amp_url=""):
    def models(name, alias):
        return [{"name": name, "alias": alias}]

    return {
        "api-keys": [KEY],
        "remote-management": {"secret-key": "mgmt-secret"},
        "claude-api-key": [{"api-key": "sk-ant", "base-url": model_url, "models": models("claude-up", "claude-x")}],
        "openai-compatibility": [{"name": "vllm", "base-url": model_url + "/v1", "models": models("qwen-up", "qwen-x")}],
        "codex-api-key": [{"api-key": "sk-codex", "base-url": model_url + "/v1", "models": models("codex-up", "codex-x")}],
        "gemini-api-key": [{"api-key": "gem", "base-url": model_url, "models": models("gemini-up", "gemini-x")}],
        "ampcode": {"upstream-url": amp_url, "upstream-api-key": "amp-key",
                    "model-mappings": [{"from": "claude-opus-4-7", "to": "qwen-x"}]},
    }


def usage(proxy):
    status, body = proxy.json("GET", "/v0/management/usage", headers=MANAGE)
    assert status == 200
    return body


@pytest.mark.parametrize("stream", [False, True, "sent whole"], ids=["whole", "stream", "stream-sent-whole"])
@pytest.mark.parametrize("provider", sorted(MODELS))
@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_every_answered_call_counts_the_providers_tokens(tmp_path, monkeypatch, client, provider, stream):
    if stream == "sent whole":
        # The provider writes its whole stream at once: the proxy relays it as one body.
        monkeypatch.setattr(agent_loop, "SSEReply", functools.partial(SSEReply, whole=True))
    with FakeModel() as model, RunningProxy(document(model.url), tmp_path) as proxy:
        CLIENTS[client](proxy.port, KEY).ask(MODELS[provider], bool(stream))
        report = usage(proxy)
    (row,) = report["by_labels"]
    assert (row["requested_model"], row["route"], row["status"]) == (MODELS[provider], "LOCAL_PROVIDER", "200")
    assert row["served_model"] == MODELS[provider]
    assert row["client"].startswith("key-") and KEY not in json.dumps(report)
    # The fakes count a 30-token prompt with 5 cached, and 12 output tokens (Anthropic's
    # 30 are the uncached part, so its prompt is 35).
    prompt = 35 if provider == "anthropic" else 30
    assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"]) == (prompt, 12, 5)
    assert report["served_locally"]["requests"] == 1 and report["amp_credits"]["requests"] == 0


def test_credits_mapping_metrics_and_a_restart(tmp_path):
    with FakeModel() as model, FakeUpstream(default=JSONReply(body={"credits": True})) as amp:
        with RunningProxy(document(model.url, amp.url), tmp_path) as proxy:
            ask = CLIENTS["anthropic"](proxy.port, KEY)
            ask.ask("claude-opus-4-7", True)  # mapped to qwen-x
            proxy.request("POST", "/api/provider/anthropic/v1/messages",
                          {"model": "claude-unserved", "max_tokens": 5, "messages": []}, {"x-api-key": KEY})
            report = usage(proxy)
            status, _, metrics = proxy.request("GET", "/metrics", None, {"x-api-key": KEY})
        assert report["served_locally"] == {"requests": 1, "input_tokens": 30, "output_tokens": 12,
                                            "cache_read_tokens": 5, "cache_write_tokens": 0}
        assert report["amp_credits"]["requests"] == 1
        routes = {(r["requested_model"], r["route"], r["served_model"]) for r in report["by_labels"]}
        assert routes == {("claude-opus-4-7", "MODEL_MAPPING", "qwen-x"), ("claude-unserved", "AMP_CREDITS", "")}
        text = metrics.decode()
        assert 'cliproxy_usage_requests_total{requested_model="claude-opus-4-7",served_model="qwen-x"' in text
        assert 'route="MODEL_MAPPING",status="200",kind="output"} 12' in text
        with RunningProxy(document(model.url, amp.url), tmp_path) as again:
            assert usage(again)["totals"] == report["totals"], "kept across a restart"


def test_the_log_and_usage_name_the_model_that_answered_after_failover(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="cliproxy.requests")
    with FakeUpstream() as sonnet, FakeModel() as haiku:
        sonnet.default = JSONReply(429, {"error": {"type": "rate_limit_error", "message": "slow down"}})
        doc = {
            "api-keys": [KEY], "request-log": True, "remote-management": {"secret-key": "mgmt-secret"},
            "claude-api-key": [
                {"api-key": "sk-a", "base-url": sonnet.url, "models": [{"name": "claude-sonnet-4-5"}]},
                {"api-key": "sk-b", "base-url": haiku.url, "models": [{"name": "claude-haiku-4-5"}]},
            ],
            "ampcode": {"upstream-url": "", "model-mappings": [
                {"from": "claude-opus-4-7", "to": ["claude-sonnet-4-5", "claude-haiku-4-5"]}]},
        }
        with RunningProxy(doc, tmp_path) as proxy:
            turn = CLIENTS["anthropic"](proxy.port, KEY).ask("claude-opus-4-7", False)
            assert turn.model == "claude-opus-4-7"
            report = usage(proxy)
    (line,) = [r.fields for r in caplog.records if r.getMessage() == "request" and r.fields["route"] != "management-api"]
    assert (line["resolved_model"], line["provider"]) == ("claude-haiku-4-5", "claude-api-key")
    (row,) = report["by_labels"]
    assert (row["served_model"], row["provider"]) == ("claude-haiku-4-5", "claude-api-key[1]")


def test_debug_shows_the_routing_steps_and_each_attempt_without_secrets(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="cliproxy")
    with FakeModel() as model, RunningProxy(document(model.url), tmp_path) as proxy:
        CLIENTS["anthropic"](proxy.port, KEY).ask("claude-opus-4-7", False)
    messages = {r.getMessage(): getattr(r, "fields", {}) for r in caplog.records}
    steps = messages["routing steps"]
    assert steps["mapping"] == "ampcode.model-mappings[0]"
    assert "qwen-x[openai-compatibility[0]:qwen-up:openai]" in steps["candidates"]
    sending = messages["sending attempt"]
    assert sending["url"].endswith("/v1/chat/completions") and sending["translation"] == "claude -> openai"
    assert messages["provider attempt"]["ttfb_ms"] >= 0
    text = json.dumps([r.getMessage() for r in caplog.records] + [getattr(r, "fields", {}) for r in caplog.records],
                      default=str)
    for secret in (KEY, "sk-ant", "sk-codex", "mgmt-secret"):
        assert secret not in text
