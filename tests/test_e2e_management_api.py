"""End to end: the management API over the whole config, through the real server.

The real proxy runs on a loopback port (``tests/support/proxy.py``) with its real config
file; providers are recording fakes (``tests/support/fakes.py``). Each test changes
something through ``/v0/management`` and then checks what the proxy does with it.
"""

import json
import logging
import os

import pytest

from cliproxy import log as logsetup
from cliproxy.ops.management.gate import LOCK_SECONDS, MAX_FAILURES
from tests.support.fakes import FakeUpstream, JSONReply
from tests.support.proxy import FakeClock, RunningProxy

CLIENT_KEY = "sk-local-client-key-0001"
NEW_CLIENT_KEY = "sk-local-client-key-0002"
PROVIDER_KEY = "sk-ant-provider-secret-0002"
UPSTREAM_KEY = "amp-upstream-secret-0003"
SECRET = "mgmt-secret-key-0004"
SECRETS = (CLIENT_KEY, PROVIDER_KEY, UPSTREAM_KEY, SECRET)
MANAGE = {"X-Management-Key": SECRET}
MESSAGES = "/v1/messages"
ANSWER = {"type": "message", "model": "claude-sonnet-4-5", "content": [], "role": "assistant"}


@pytest.fixture
def providers():
    with FakeUpstream(default=JSONReply(body=ANSWER)) as first, FakeUpstream(default=JSONReply(body=ANSWER)) as second:
        yield first, second


def document(provider, **extra):
    document = {
        "api-keys": [CLIENT_KEY],
        "claude-api-key": [{"api-key": PROVIDER_KEY, "base-url": provider.url}],
        "ampcode": {"upstream-url": "", "upstream-api-key": UPSTREAM_KEY},
        "remote-management": {"secret-key": SECRET},
    }
    document.update(extra)
    return document


def _ask(proxy, key=CLIENT_KEY):
    body = {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    return proxy.request("POST", MESSAGES, body, {"x-api-key": key})[0]


def _saved(tmp_path):
    return json.loads((tmp_path / "config.json").read_text())


def test_a_provider_change_applies_to_the_next_call(tmp_path, providers):
    first, second = providers
    with RunningProxy(document(first), tmp_path) as proxy:
        assert _ask(proxy) == 200
        patch = {"value": {"base-url": second.url}}
        assert proxy.json("PATCH", "/v0/management/claude-api-key/0", patch, MANAGE) == (
            200,
            {"ok": True, "persisted": True},
        )
        assert _ask(proxy) == 200
    assert len(first.requests) == 1 and len(second.requests) == 1
    assert second.requests[0].headers["x-api-key"] == PROVIDER_KEY  # the real key, kept
    assert _saved(tmp_path)["claude-api-key"] == [{"api-key": PROVIDER_KEY, "base-url": second.url}]


def test_client_keys_change_at_once(tmp_path, providers):
    with RunningProxy(document(providers[0]), tmp_path) as proxy:
        status, _ = proxy.json("PATCH", "/v0/management/api-keys", {"value": NEW_CLIENT_KEY}, MANAGE)
        assert status == 200
        assert _ask(proxy, NEW_CLIENT_KEY) == 200
        assert proxy.json("DELETE", "/v0/management/api-keys", {"value": [0]}, MANAGE)[0] == 200
        assert _ask(proxy, CLIENT_KEY) == 401
        assert _ask(proxy, NEW_CLIENT_KEY) == 200
    assert _saved(tmp_path)["api-keys"] == [NEW_CLIENT_KEY]


def test_whole_config_over_http_holds_no_secret(tmp_path, providers):
    with RunningProxy(document(providers[0]), tmp_path) as proxy:
        status, headers, body = proxy.request("GET", "/v0/management/config", None, MANAGE)
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    text = body.decode("utf-8")
    for secret in SECRETS:
        assert secret not in text
    view = json.loads(text)
    assert view["claude-api-key"][0]["base-url"] == providers[0].url
    assert "secret-key" not in view["remote-management"]


def test_invalid_change_is_a_400_naming_the_path_and_nothing_is_written(tmp_path, providers):
    with RunningProxy(document(providers[0]), tmp_path) as proxy:
        before = (tmp_path / "config.json").read_bytes()
        status, body = proxy.json("PUT", "/v0/management/request-retry", {"value": -2}, MANAGE)
        assert status == 400
        assert "request-retry: must be an integer >= 0" in body["error"]["message"]
        assert (tmp_path / "config.json").read_bytes() == before
        assert _ask(proxy) == 200


def test_the_watcher_agrees_with_a_change_once_it_sees_the_file(tmp_path, providers):
    with RunningProxy(document(providers[0]), tmp_path) as proxy:
        proxy.json("PUT", "/v0/management/request-retry", {"value": 4}, MANAGE)
        assert proxy.service.store.current.request_retry == 4
        proxy.reload()
        assert proxy.service.store.current.request_retry == 4
        assert proxy.service.store.current.api_keys == (CLIENT_KEY,)


@pytest.fixture
def cliproxy_logger(monkeypatch):
    logger = logging.getLogger(logsetup.ROOT_LOGGER)
    level = logger.level
    monkeypatch.setattr(logsetup, "_base_level", None)
    logger.setLevel(logging.INFO)
    yield logger
    logger.setLevel(level)


def test_debug_changes_the_log_level_at_once(tmp_path, providers, cliproxy_logger):
    with RunningProxy(document(providers[0]), tmp_path) as proxy:
        assert proxy.json("PUT", "/v0/management/debug", {"value": True}, MANAGE)[0] == 200
        assert cliproxy_logger.level == logging.DEBUG
        assert proxy.json("PUT", "/v0/management/debug", {"value": False}, MANAGE)[0] == 200
        assert cliproxy_logger.level == logging.INFO
        # A hand edit picked up by the watcher does the same.
        saved = _saved(tmp_path)
        saved["debug"] = True
        proxy.write_config(saved)
        assert proxy.reload() is True
        assert cliproxy_logger.level == logging.DEBUG


def test_logs_follow_the_request_lines(tmp_path, providers):
    with RunningProxy(document(providers[0], **{"request-log": True}), tmp_path) as proxy:
        for _ in range(2):
            assert _ask(proxy) == 200
        status, first = proxy.json("GET", "/v0/management/logs", headers=MANAGE)
        assert status == 200 and first["request-log"] is True
        assert [line["target"] for line in first["lines"]] == [MESSAGES, MESSAGES]
        assert [line["seq"] for line in first["lines"]] == [1, 2]
        assert first["lines"][0]["status"] == 200 and first["lines"][0]["route"] == "LOCAL_PROVIDER"
        assert _ask(proxy, "sk-wrong-key-000000000") == 401
        status, second = proxy.json("GET", "/v0/management/logs?after=%d" % first["latest"], headers=MANAGE)
        # The first GET's own line, then the refused call: only what came after.
        assert [(line["target"], line["status"]) for line in second["lines"]] == [
            ("/v0/management/logs", 200),
            (MESSAGES, 401),
        ]
        text = json.dumps(second)
    for secret in SECRETS + ("sk-wrong-key-000000000",):
        assert secret not in text


def test_error_logs_over_http(tmp_path, providers):
    first, _ = providers
    first.route("POST", MESSAGES, JSONReply(status=500, body={"error": {"message": "boom"}}))
    with RunningProxy(document(first, **{"request-log": True, "request-retry": 0}), tmp_path) as proxy:
        assert _ask(proxy) == 500
        status, listing = proxy.json("GET", "/v0/management/error-logs", headers=MANAGE)
        assert status == 200
        (entry,) = listing["files"]
        name = entry["name"]
        status, saved = proxy.json("GET", "/v0/management/error-logs/" + name, headers=MANAGE)
        assert status == 200 and saved["response"]["status"] == 500
        assert CLIENT_KEY not in json.dumps(saved)
        for path in ("/v0/management/error-logs/../config.json", "/v0/management/error-logs/%2e%2e%2fconfig.json"):
            assert proxy.request("GET", path, None, MANAGE)[0] == 400
        assert proxy.json("GET", "/v0/management/error-logs/config.json", headers=MANAGE)[0] == 400
        assert proxy.json("DELETE", "/v0/management/error-logs/" + name, headers=MANAGE) == (
            200,
            {"ok": True, "removed": 1},
        )
        assert proxy.json("GET", "/v0/management/error-logs", headers=MANAGE) == (200, {"files": []})
    assert os.path.exists(str(tmp_path / "config.json"))


def test_wrong_keys_lock_the_address_out(tmp_path, providers):
    clock = FakeClock()
    with RunningProxy(document(providers[0]), tmp_path, clock=clock) as proxy:
        for i in range(MAX_FAILURES):
            status, _ = proxy.json("GET", "/v0/management/config", headers={"X-Management-Key": "guess-%d" % i})
            assert status == 401
        status, headers, body = proxy.request("GET", "/v0/management/config", None, MANAGE)
        assert status == 429
        assert headers["retry-after"] == str(int(LOCK_SECONDS))
        assert SECRET not in body.decode("utf-8")
        # Model calls are not the management API: they go on.
        assert _ask(proxy) == 200
        clock.advance(LOCK_SECONDS)
        assert proxy.json("GET", "/v0/management/config", headers=MANAGE)[0] == 200


def test_usage_route(tmp_path, providers):
    with RunningProxy(document(providers[0]), tmp_path) as proxy:
        status, body = proxy.json("GET", "/v0/management/usage", headers=MANAGE)
        assert status == 200 and body["totals"]["requests"] == 0
        status, body = proxy.json("GET", "/v0/management/usage?since=2025-06-01T12:00:00+02:00", headers=MANAGE)
        assert (status, body["since"]) == (200, "2025-06-01T12:00:00+02:00")
        assert proxy.json("GET", "/v0/management/usage?since=soon", headers=MANAGE)[0] == 400
