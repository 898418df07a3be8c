"""End to end: /healthz, /metrics, the request log, error files, and secrets kept out of
every log line and file."""

import gzip
import json
import logging
import os

import pytest

from tests.support.fakes import FakeUpstream, JSONReply, SSEReply, sse_events
from tests.support.proxy import FakeClock, RunningProxy

CLIENT_KEY = "sk-local-client-key-0001"
PROVIDER_KEY = "sk-ant-provider-secret-0002"
UPSTREAM_KEY = "amp-upstream-secret-0003"
SECRETS = (CLIENT_KEY, PROVIDER_KEY, UPSTREAM_KEY)
MESSAGES = "/api/provider/anthropic/v1/messages"


@pytest.fixture
def fakes():
    with FakeUpstream() as provider, FakeUpstream(default=JSONReply(body={"ok": True})) as amp:
        yield provider, amp


def document(provider, amp, **extra):
    document = {
        "api-keys": [CLIENT_KEY],
        "claude-api-key": [{"api-key": PROVIDER_KEY, "base-url": provider.url}],
        "ampcode": {"upstream-url": amp.url, "upstream-api-key": UPSTREAM_KEY},
    }
    document.update(extra)
    return document


class Captured(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        fields = getattr(record, "fields", None) or {}
        self.records.append((record.name, record.getMessage(), dict(fields)))

    def text(self):
        return "\n".join("%s %s %s" % (name, message, json.dumps(fields, default=str)) for name, message, fields in self.records)


@pytest.fixture
def captured():
    handler = Captured()
    logger = logging.getLogger("cliproxy")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_healthz_needs_no_key(tmp_path, fakes):
    with RunningProxy(document(*fakes), tmp_path) as proxy:
        assert proxy.request("GET", "/healthz") == (200, {"content-type": "application/json", "content-length": "15"}, b'{"status":"ok"}')


def test_metrics_need_a_key_and_count_what_happened(tmp_path, fakes):
    provider, _ = fakes
    provider.route("POST", "/v1/messages", JSONReply(body={"type": "message", "model": "claude-x", "content": []}))
    with RunningProxy(document(*fakes), tmp_path) as proxy:
        assert proxy.request("GET", "/metrics")[0] == 401
        auth = {"Authorization": "Bearer " + CLIENT_KEY}
        proxy.request("POST", MESSAGES, {"model": "claude-x", "messages": []}, auth)
        proxy.request("GET", "/api/user", None, auth)
        status, headers, body = proxy.request("GET", "/metrics", None, auth)
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert 'cliproxy_requests_total{route="LOCAL_PROVIDER",status="200"} 1' in text
    assert 'cliproxy_requests_total{route="amp-management",status="200"} 1' in text
    assert 'cliproxy_upstream_ttfb_seconds_count{route="LOCAL_PROVIDER"} 1' in text
    assert 'cliproxy_upstream_latency_seconds_bucket{route="LOCAL_PROVIDER",le="+Inf"} 1' in text
    assert "cliproxy_open_streams 0" in text
    assert 'cliproxy_config_reloads_total{result="error"} 0' in text
    assert "cliproxy_config_errors_total 0" in text


def test_metrics_auth_false_lets_a_scraper_in_without_a_key(tmp_path, fakes):
    with RunningProxy(document(*fakes, **{"metrics-auth": False}), tmp_path) as proxy:
        status, _, body = proxy.request("GET", "/metrics")
        assert status == 200 and b"cliproxy_requests_total" in body
        assert proxy.request("GET", "/api/user")[0] == 401, "only /metrics is opened"


def test_request_log_lines_and_error_files(tmp_path, fakes, captured):
    provider, _ = fakes
    provider.route("POST", "/v1/messages", JSONReply(status=500, body={"error": {"message": "boom"}}))
    extra = {"request-log": True, "error-logs-max-files": 2, "request-retry": 0}
    clock = FakeClock()
    with RunningProxy(document(*fakes, **extra), tmp_path, clock=clock) as proxy:
        for _ in range(3):
            clock.advance(600)  # past any cool-down the previous 500 started
            status, _, _ = proxy.request(
                "POST", MESSAGES + "?key=" + CLIENT_KEY, {"model": "claude-x", "messages": []}, {"x-api-key": CLIENT_KEY}
            )
            assert status == 500
    lines = [fields for name, message, fields in captured.records if name == "cliproxy.requests"]
    assert len(lines) == 3
    line = lines[0]
    assert line["status"] == 500 and line["route"] == "LOCAL_PROVIDER"
    assert line["requested_model"] == "claude-x"
    for field in ("arrived", "ttfb_ms", "total_ms", "bytes_in", "bytes_out"):
        assert line[field] is not None, field
    logs = tmp_path / "logs"
    files = sorted(name for name in os.listdir(str(logs)) if name.startswith("error-"))
    assert len(files) == 2  # only the newest error-logs-max-files are kept
    saved = json.loads((logs / files[-1]).read_text())
    assert saved["response"]["status"] == 500
    assert "boom" in saved["response"]["body"]
    assert '"claude-x"' in saved["request"]["body"] or saved["request"]["target"].startswith(MESSAGES)
    for secret in SECRETS:
        assert secret not in (logs / files[-1]).read_text()


def test_no_secret_reaches_a_log_line(tmp_path, fakes, captured):
    provider, _ = fakes
    events = sse_events({"type": "message_start", "message": {"model": "claude-x"}}, {"type": "message_stop"})
    provider.route("POST", "/v1/messages", SSEReply(events, die_after=1, headers={"content-type": "text/event-stream"}))
    extra = {"request-log": True, "debug": True}
    with RunningProxy(document(*fakes, **extra), tmp_path) as proxy:
        proxy.request("POST", MESSAGES, {"model": "claude-x", "stream": True, "messages": []}, {"x-api-key": CLIENT_KEY})
        proxy.request("GET", "/api/user?auth_token=" + CLIENT_KEY, None)
        proxy.request("GET", "/api/user", None, {"Authorization": "Bearer wrong-" + CLIENT_KEY})
        proxy.request("POST", MESSAGES, {"model": "gpt-5", "messages": []}, {"Authorization": "Bearer " + CLIENT_KEY})
    text = captured.text()
    assert "route decision" in text and "cliproxy.requests" in text
    for secret in SECRETS:
        assert secret not in text


def test_management_api_end_to_end(tmp_path, fakes):
    provider, amp = fakes
    provider.route("POST", "/v1/messages", JSONReply(body={"type": "message", "model": "claude-sonnet-4-5", "content": []}))
    extra = {"remote-management": {"secret-key": "mgmt-secret-key-0004"}}
    with RunningProxy(document(*fakes, **extra), tmp_path) as proxy:
        manage = {"X-Management-Key": "mgmt-secret-key-0004"}
        assert proxy.json("GET", "/v0/management/ampcode")[0] == 401
        status, body = proxy.json("GET", "/v0/management/ampcode", headers=manage)
        assert status == 200
        assert body["upstream-api-key"] != UPSTREAM_KEY and "…" in body["upstream-api-key"]
        mapping = {"value": [{"from": "gpt-5", "to": "claude-sonnet-4-5"}]}
        assert proxy.json("PUT", "/v0/management/ampcode/model-mappings", mapping, manage)[0] == 200
        # Applied at once: gpt-5 now maps to the local Claude provider instead of credits.
        status, answer = proxy.json("POST", MESSAGES, {"model": "gpt-5", "messages": []}, {"x-api-key": CLIENT_KEY})
        assert (status, answer["model"]) == (200, "gpt-5")
        masked = {"value": body["upstream-api-key"]}
        assert proxy.json("PUT", "/v0/management/ampcode/upstream-api-key", masked, manage)[0] == 400
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["ampcode"]["model-mappings"] == [{"from": "gpt-5", "to": "claude-sonnet-4-5"}]
    assert saved["ampcode"]["upstream-api-key"] == UPSTREAM_KEY
    assert amp.requests == []


def test_management_api_is_404_without_a_secret(tmp_path, fakes):
    with RunningProxy(document(*fakes), tmp_path) as proxy:
        assert proxy.json("GET", "/v0/management/ampcode", headers={"X-Management-Key": "x"})[0] == 404


def test_error_files_hold_the_decoded_request_body(tmp_path, fakes):
    provider, _ = fakes
    provider.route("POST", "/v1/messages", JSONReply(status=500, body={"error": {"message": "boom"}}))
    extra = {"request-log": True, "request-retry": 0}
    request = {"model": "claude-x", "messages": [{"role": "user", "content": "find me in the file"}]}
    raw = gzip.compress(json.dumps(request).encode())
    headers = {"x-api-key": CLIENT_KEY, "Content-Encoding": "gzip"}
    with RunningProxy(document(*fakes, **extra), tmp_path) as proxy:
        assert proxy.request("POST", MESSAGES, raw, headers)[0] == 500
    logs = tmp_path / "logs"
    (name,) = [name for name in os.listdir(str(logs)) if name.startswith("error-")]
    saved = json.loads((logs / name).read_text())
    assert json.loads(saved["request"]["body"]) == request
    assert CLIENT_KEY not in (logs / name).read_text()
