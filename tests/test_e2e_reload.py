"""End to end: hot reload of the config file under a running proxy (SPEC §2 "Hot reload").

Strategy: the real proxy (``tests/support/proxy.py``) serves model calls to two recording
fake Anthropic providers, A serving one model and B another, and a mapping sends a third
model to one of them. Each test rewrites the config file the way editors do (temporary
file + rename) and makes the watcher poll at once (``RunningProxy.reload``), then checks
what the next requests do: follow a valid new file, keep the last good config when the file
is invalid (and count the rejection in ``/metrics``), leave a stream in flight untouched,
and only log, never rebind, a changed ``port``.
"""

import http.client
import json
import logging
import os
import socket
import threading

import pytest

from tests.support.fakes import FakeUpstream, JSONReply, SSEReply, sse_events
from tests.support.proxy import RunningProxy

CLIENT_KEY = "sk-local"
AUTH = {"x-api-key": CLIENT_KEY}
MESSAGES = "/api/provider/anthropic/v1/messages"
SONNET = "claude-sonnet-4-5-20250929"
HAIKU = "claude-haiku-4-5"
OPUS = "claude-opus-4-5-20251101"
STREAM_DELAY = 0.2  # seconds between the fake's SSE events: long enough to reload mid-stream


def message(model):
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "hello from " + model}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 3},
    }


def stream_events(model):
    return sse_events(
        {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                              "model": model, "content": [], "usage": {"input_tokens": 3}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "one "}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "two"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}},
        {"type": "message_stop"},
    )


@pytest.fixture
def providers():
    """(A serving SONNET, B serving HAIKU): fakes answering a message naming the model."""
    with FakeUpstream(default=JSONReply(200, message(SONNET))) as a, \
            FakeUpstream(default=JSONReply(200, message(HAIKU))) as b:
        yield a, b


def config(a, b, target, **extra):
    """A config mapping OPUS to ``target``; A serves SONNET and B serves HAIKU."""
    doc = {
        "api-keys": [CLIENT_KEY],
        "claude-api-key": [
            {"api-key": "sk-ant-A", "base-url": a.url, "models": [{"name": SONNET}]},
            {"api-key": "sk-ant-B", "base-url": b.url, "models": [{"name": HAIKU}]},
        ],
        "ampcode": {"upstream-url": "", "model-mappings": [{"from": OPUS, "to": target}]},
    }
    doc.update(extra)
    return doc


def ask_opus(proxy):
    """(status, the model the provider answered with) for one call to OPUS."""
    body = {"model": OPUS, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    status, _, data = proxy.request("POST", MESSAGES, body, AUTH)
    answer = json.loads(data)
    return status, answer.get("content", [{}])[0].get("text")


def parse_events(data):
    """[(event name, parsed JSON data)] of an SSE body."""
    events = []
    for block in data.decode("utf-8").split("\n\n"):
        if block.strip():
            lines = dict(line.split(": ", 1) for line in block.split("\n"))
            events.append((lines.get("event"), json.loads(lines["data"])))
    return events


def write_raw(proxy, text):
    """Replace the config file with ``text`` by temporary file + rename."""
    temporary = proxy.path + ".tmp"
    with open(temporary, "w") as out:
        out.write(text)
    os.replace(temporary, proxy.path)


def metric(text, name):
    """The value of the sample line ``name`` (labels included) in Prometheus ``text``."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError("no sample %s in:\n%s" % (name, text))


def test_a_rename_save_changes_the_mapping_for_the_next_request(tmp_path, providers):
    a, b = providers
    with RunningProxy(config(a, b, SONNET), tmp_path) as proxy:
        assert ask_opus(proxy) == (200, "hello from " + SONNET)
        inode = os.stat(proxy.path).st_ino
        assert proxy.reload(config(a, b, HAIKU)) is True
        assert os.stat(proxy.path).st_ino != inode, "the save was a rename, not an in-place write"
        assert ask_opus(proxy) == (200, "hello from " + HAIKU)
        metrics = proxy.request("GET", "/metrics", headers=AUTH)[2].decode()
    assert [json.loads(r.body)["model"] for r in a.requests] == [SONNET]
    assert [json.loads(r.body)["model"] for r in b.requests] == [HAIKU]
    assert metric(metrics, 'cliproxy_config_reloads_total{result="ok"}') == 1


@pytest.mark.parametrize(
    "broken, complaint",
    [
        ("{\"api-keys\": [\"sk-local\"], ", "JSON"),
        (None, "paid-fallback"),  # filled in below: a schema error in valid JSON
    ],
    ids=["bad-json", "schema-error"],
)
def test_an_invalid_file_is_rejected_and_the_last_good_config_keeps_serving(
    tmp_path, providers, caplog, broken, complaint
):
    a, b = providers
    caplog.set_level(logging.INFO, logger="cliproxy")
    with RunningProxy(config(a, b, SONNET), tmp_path) as proxy:
        if broken is None:
            bad = config(a, b, HAIKU)
            bad["ampcode"]["paid-fallback"] = "maybe"
            broken = json.dumps(bad)
        write_raw(proxy, broken)
        assert proxy.reload() is False
        assert ask_opus(proxy) == (200, "hello from " + SONNET)

        assert proxy.request("GET", "/metrics")[0] == 401, "metrics need client auth"
        status, _, data = proxy.request("GET", "/metrics", headers=AUTH)
        assert status == 200
        metrics = data.decode()
        assert metric(metrics, 'cliproxy_config_reloads_total{result="error"}') == 1
        assert metric(metrics, 'cliproxy_config_reloads_total{result="ok"}') == 0
        assert metric(metrics, "cliproxy_config_errors_total") >= 1

        # Polling the same broken file again reports nothing new; a fixed file applies.
        assert proxy.reload() is None
        assert proxy.reload(config(a, b, HAIKU)) is True
        assert ask_opus(proxy) == (200, "hello from " + HAIKU)
    rejected = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert rejected and all("keeping the last good one" in text for text in rejected)
    assert any(complaint in text for text in rejected)
    assert [json.loads(r.body)["model"] for r in a.requests] == [SONNET]


def test_a_stream_in_flight_completes_unchanged_across_a_reload(tmp_path, providers):
    a, b = providers
    events = stream_events(SONNET)
    a.default = SSEReply(events, delay=STREAM_DELAY)
    received = []
    first_event = threading.Event()
    failure = []

    def read_stream(port):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            body = {"model": OPUS, "max_tokens": 16, "stream": True,
                    "messages": [{"role": "user", "content": "hi"}]}
            headers = dict(AUTH, **{"Content-Type": "application/json"})
            connection.request("POST", MESSAGES, json.dumps(body), headers)
            response = connection.getresponse()
            received.append(response.status)
            while True:
                line = response.readline()
                if not line:
                    break
                received.append(line)
                if line == b"\n":
                    first_event.set()
        except Exception as exc:  # reported by the main thread's assertions
            failure.append(exc)
        finally:
            first_event.set()
            connection.close()

    with RunningProxy(config(a, b, SONNET), tmp_path) as proxy:
        reader = threading.Thread(target=read_stream, args=(proxy.port,))
        reader.start()
        assert first_event.wait(5)
        assert proxy.reload(config(a, b, HAIKU)) is True
        assert ask_opus(proxy) == (200, "hello from " + HAIKU), "new requests follow the new mapping"
        assert reader.is_alive(), "the reload happened while the stream was in flight"
        reader.join(10)
    assert not failure
    assert received[0] == 200
    # Exactly the upstream's events, the model named as the client asked (SPEC §3.2).
    assert parse_events(b"".join(received[1:])) == parse_events(b"".join(stream_events(OPUS)))
    assert len(a.requests) == 1 and len(b.requests) == 1


def test_a_port_change_is_logged_as_needing_a_restart_and_not_rebound(tmp_path, providers, caplog):
    a, b = providers
    caplog.set_level(logging.INFO, logger="cliproxy")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        new_port = probe.getsockname()[1]
    with RunningProxy(config(a, b, SONNET), tmp_path) as proxy:
        old_address = proxy.service.address
        assert proxy.reload(config(a, b, HAIKU, port=new_port)) is True
        assert proxy.service.address == old_address
        assert ask_opus(proxy) == (200, "hello from " + HAIKU), "the rest of the file applies"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", new_port), timeout=2).close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("port changed" in text and "restart" in text for text in warnings)
    assert not any("host changed" in text or "tls changed" in text for text in warnings)


def test_sighup_reload_rereads_amp_secrets_file_before_its_cache_expires(tmp_path):
    from tests.support.fakes import FakeUpstream, JSONReply

    secrets = tmp_path / "no-secrets.json"  # the path RunningProxy gives UpstreamKeys

    def write_secret(value):
        secrets.write_text(json.dumps({"apiKey@https://ampcode.com/": value}))

    write_secret("amp-file-1")
    with FakeUpstream(default=JSONReply(body={"ok": True})) as amp:
        with RunningProxy({"api-keys": ["k"], "ampcode": {"upstream-url": amp.url}}, tmp_path) as proxy:
            proxy.request("GET", "/api/user", None, {"x-api-key": "k"})
            write_secret("amp-file-2")
            proxy.request("GET", "/api/user", None, {"x-api-key": "k"})
            proxy.call(proxy.service.reload_now)
            proxy.request("GET", "/api/user", None, {"x-api-key": "k"})
    assert [r.headers["authorization"] for r in amp.requests] == [
        "Bearer amp-file-1",
        "Bearer amp-file-1",  # cached for 5 minutes
        "Bearer amp-file-2",  # SIGHUP re-reads it at once
    ]
