"""The request handler (cliproxy.app) on its model-call path: the checks every family
shares still come first, the request log follows the request's snapshot, and the
decision line is built only when its level is enabled. A real proxy on 127.0.0.1 port 0
in front of a fake Anthropic provider."""

import json
import logging

import pytest

from cliproxy import app as app_module
from cliproxy.app import App
from tests.support.fakes import FakeUpstream, JSONReply
from tests.support.logs import recording
from tests.support.proxy import RunningProxy

CLIENT_KEY = "sk-local-client-key-0001"
MESSAGES = "/api/provider/anthropic/v1/messages"
ANSWER = {"type": "message", "model": "claude-x", "content": [{"type": "text", "text": "hi"}]}


@pytest.fixture
def provider():
    with FakeUpstream(default=JSONReply(body=ANSWER)) as upstream:
        yield upstream


def document(provider, **extra):
    document = {
        "api-keys": [CLIENT_KEY],
        "claude-api-key": [{"api-key": "sk-ant-provider", "base-url": provider.url}],
        "ampcode": {"upstream-url": ""},
    }
    document.update(extra)
    return document




@pytest.fixture
def captured():
    with recording() as handler:
        yield handler, logging.getLogger("cliproxy")


def post(proxy, body=None, headers=None):
    headers = {"x-api-key": CLIENT_KEY} if headers is None else headers
    return proxy.request("POST", MESSAGES, {"model": "claude-x", "messages": []} if body is None else body, headers)


def test_the_server_calls_handle_itself():
    assert App.__call__ is App.handle


def test_options_on_a_model_path_is_refused_before_auth(tmp_path, provider):
    with RunningProxy(document(provider), tmp_path) as proxy:
        status, headers, body = proxy.request("OPTIONS", MESSAGES, None, {"Origin": "https://evil.example"})
    assert status == 403
    assert json.loads(body)["type"] == "error"  # the Anthropic error shape of the path
    assert not [name for name in headers if name.startswith("access-control-")]
    assert provider.requests == []


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}, {"authorization": "Bearer wrong"}])
def test_a_model_call_needs_the_client_key_before_its_body_is_read(tmp_path, provider, headers):
    with RunningProxy(document(provider), tmp_path) as proxy:
        status, _, body = proxy.request("POST", MESSAGES, b"not json", headers)
    assert status == 401  # not the 400 the body would earn
    assert json.loads(body)["error"]["type"] == "authentication_error"
    assert provider.requests == []


@pytest.mark.parametrize("headers", [{"x-api-key": CLIENT_KEY}, {"authorization": "Bearer " + CLIENT_KEY}])
def test_a_model_call_with_the_key_is_answered_again_and_again(tmp_path, provider, headers):
    with RunningProxy(document(provider), tmp_path) as proxy:
        answers = [post(proxy, headers=headers) for _ in range(3)]  # the later ones hit the key memo
    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert json.loads(answers[-1][2])["model"] == "claude-x"
    assert all(request.headers["x-api-key"] == "sk-ant-provider" for request in provider.requests)


@pytest.mark.parametrize("request_log", [False, True])
def test_request_lines_follow_the_snapshot(tmp_path, provider, captured, request_log):
    handler, logger = captured
    logger.setLevel(logging.INFO)
    with RunningProxy(document(provider, **{"request-log": request_log}), tmp_path) as proxy:
        status, _, _ = post(proxy)
    assert status == 200
    lines = [record for record in handler.records if record.name == "cliproxy.requests"]
    assert len(lines) == (1 if request_log else 0)


def test_decision_fields_are_built_only_when_logged(tmp_path, provider, captured, monkeypatch):
    handler, logger = captured
    built = []
    real = app_module.log_fields

    def counting(decision):
        built.append(decision.requested)
        return real(decision)

    monkeypatch.setattr(app_module, "log_fields", counting)
    with RunningProxy(document(provider), tmp_path) as proxy:
        logger.setLevel(logging.WARNING)
        assert post(proxy)[0] == 200
        assert built == []
        logger.setLevel(logging.INFO)
        assert post(proxy)[0] == 200
    assert built == ["claude-x"]
    lines = [record for record in handler.records if record.getMessage() == "route decision"]
    assert len(lines) == 1
    assert lines[0].levelno == logging.INFO
    assert lines[0].fields["path"] == MESSAGES


def test_a_refused_model_is_logged_at_warning(tmp_path, provider, captured):
    handler, logger = captured
    logger.setLevel(logging.WARNING)
    with RunningProxy(document(provider), tmp_path) as proxy:
        status, _, _ = post(proxy, body={"model": "gpt-5", "messages": []})
    assert status == 404
    lines = [record for record in handler.records if record.getMessage() == "route decision"]
    assert [record.levelno for record in lines] == [logging.WARNING]


def test_long_model_names_are_decided_but_not_remembered():
    from cliproxy.app import Runtime
    from cliproxy.config.model import Config, Protocol

    runtime = Runtime(Config())
    runtime.decide("claude-x", Protocol.CLAUDE)
    remembered = len(runtime._decisions)
    decision = runtime.decide("m" * 100000, Protocol.CLAUDE)
    assert decision.requested == "m" * 100000
    assert len(runtime._decisions) == remembered
