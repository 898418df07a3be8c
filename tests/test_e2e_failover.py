"""End to end: failover before the first byte, mid-stream failures, cool-downs, round-robin.

Strategy: the real proxy (``tests/support/proxy.py``) runs on a loopback port with a
``FakeClock``; every provider credential is its own recording fake upstream
(``tests/support/fakes.py``), so which credential an attempt used is read off which fake
received it (and the ``x-api-key`` it saw), and which model from the body it got. The
executor's per-attempt log records (logger ``cliproxy.executor``) are checked too: each
attempt is logged with its credential, model and outcome. Cool-downs are driven by moving
the fake clock, never by sleeping; only the timeout-before-headers case waits for a real
(half-second) timeout, because socket timeouts run on the event loop's own clock.
"""

import json
import logging
import socket

import pytest

from cliproxy.providers.credentials import RATE_LIMIT_BASE
from tests.support.fakes import (
    DropReply,
    FakeUpstream,
    HangReply,
    JSONReply,
    SSEReply,
    sse_events,
)
from tests.support.proxy import FakeClock, RunningProxy

CLIENT_KEY = "sk-local"
AUTH = {"x-api-key": CLIENT_KEY}
MESSAGES = "/api/provider/anthropic/v1/messages"
CHAT = "/api/provider/openai/v1/chat/completions"
SONNET = "claude-sonnet-4-5-20250929"
HAIKU = "claude-haiku-4-5"
OPUS = "claude-opus-4-5-20251101"
KEYS = ("sk-ant-A", "sk-ant-B", "sk-ant-C")

QUOTA_BODY = {"type": "error", "error": {"type": "rate_limit_error", "message": "quota exceeded"}}
OVERLOADED = {"type": "error", "error": {"type": "api_error", "message": "internal server error"}}


# -- helpers ---------------------------------------------------------------------------


class Switch:
    """A reply the test can change between requests (fakes accept callables)."""

    def __init__(self, reply):
        self.reply = reply

    def __call__(self, request):
        return self.reply


def message(model, text="hello"):
    """A non-streaming Anthropic Messages answer."""
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }


def ok(model=SONNET, text="hello"):
    return JSONReply(200, message(model, text))


def rate_limited(retry_after=None):
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return JSONReply(429, {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}, headers)


def anthropic_stream(model=SONNET):
    return sse_events(
        {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                              "model": model, "content": [], "usage": {"input_tokens": 3}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}},
        {"type": "message_stop"},
    )


def chat_stream(model="qwen3-coder"):
    def chunk(delta, finish=None):
        return {"id": "c1", "object": "chat.completion.chunk", "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    return sse_events(
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({}, "stop"),
        "[DONE]",
    )


def ask(proxy, model=SONNET, stream=False, headers=None):
    """POST one Anthropic Messages call; (status, headers, body bytes)."""
    body = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        body["stream"] = True
    all_headers = dict(AUTH)
    all_headers.update(headers or {})
    return proxy.request("POST", MESSAGES, body, all_headers)


def parse_events(data):
    """[(event name or None, parsed data)] of an SSE body."""
    events = []
    for block in data.decode("utf-8").split("\n\n"):
        if not block.strip():
            continue
        name, payload = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[len("event:"):].strip()
            elif line.startswith("data:"):
                payload.append(line[len("data:"):].strip())
        text = "\n".join(payload)
        events.append((name, text if text == "[DONE]" else json.loads(text)))
    return events


def seen(fake):
    """(x-api-key, model) of every request ``fake`` received, in order."""
    return [(r.headers.get("x-api-key"), json.loads(r.body).get("model")) for r in fake.requests]


def attempts(caplog):
    """(credential, model sent upstream, outcome) of every logged provider attempt."""
    return [
        (r.fields["credential"], r.fields["upstream_model"], r.fields["outcome"])
        for r in caplog.records
        if r.name == "cliproxy.executor" and r.getMessage() == "provider attempt"
    ]


def claude_entry(index, fake, models=None):
    entry = {"api-key": KEYS[index], "base-url": fake.url}
    if models is not None:
        entry["models"] = [{"name": name} for name in models]
    return entry


def document(*entries, **extra):
    doc = {"api-keys": [CLIENT_KEY], "claude-api-key": list(entries), "ampcode": {"upstream-url": ""}}
    doc.update(extra)
    return doc


@pytest.fixture
def fakes():
    """Three recording fake providers; A, B, C answer a good message unless told otherwise."""
    started = []
    try:
        for _ in range(3):
            fake = FakeUpstream(default=ok()).start()
            started.append(fake)
        yield started
    finally:
        for fake in started:
            fake.close()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture(autouse=True)
def _capture(caplog):
    caplog.set_level(logging.INFO, logger="cliproxy")


def running(tmp_path, doc, clock):
    return RunningProxy(doc, tmp_path, clock=clock)


# -- failover before the first byte ----------------------------------------------------


def test_429_with_retry_after_fails_over_and_skips_the_credential_until_it_passes(tmp_path, fakes, clock, caplog):
    a, b, _ = fakes
    a_reply = Switch(rate_limited("30"))
    a.default = a_reply
    with running(tmp_path, document(claude_entry(0, a), claude_entry(1, b)), clock) as proxy:
        status, _, body = ask(proxy)
        assert status == 200
        assert json.loads(body)["model"] == SONNET
        assert seen(a) == [("sk-ant-A", SONNET)]
        assert seen(b) == [("sk-ant-B", SONNET)]
        assert attempts(caplog) == [
            ("claude-api-key[0]", SONNET, "rate_limited"),
            ("claude-api-key[1]", SONNET, "ok"),
        ]

        for _ in range(3):
            assert ask(proxy)[0] == 200
        clock.advance(29.9)
        assert ask(proxy)[0] == 200
        assert len(a.requests) == 1, "A is cooling down for the 30 s it asked for"
        assert len(b.requests) == 5

        clock.advance(0.1)
        a_reply.reply = ok()
        for _ in range(2):
            assert ask(proxy)[0] == 200
    assert len(a.requests) == 2, "A is back in the rotation once its Retry-After passed"
    assert len(b.requests) == 6


def test_429_without_retry_after_cools_the_credential_for_the_default_backoff(tmp_path, fakes, clock, caplog):
    a, b, _ = fakes
    a_reply = Switch(rate_limited())
    a.default = a_reply
    with running(tmp_path, document(claude_entry(0, a), claude_entry(1, b)), clock) as proxy:
        assert ask(proxy)[0] == 200
        assert seen(a) == [("sk-ant-A", SONNET)]
        assert seen(b) == [("sk-ant-B", SONNET)]
        a_reply.reply = ok()

        clock.advance(RATE_LIMIT_BASE - 0.1)
        for _ in range(2):
            assert ask(proxy)[0] == 200
        assert len(a.requests) == 1

        clock.advance(0.1)
        for _ in range(2):
            assert ask(proxy)[0] == 200
    assert len(a.requests) == 2
    assert attempts(caplog)[0] == ("claude-api-key[0]", SONNET, "rate_limited")


def test_500_on_one_credential_fails_over_to_the_next(tmp_path, fakes, clock, caplog):
    a, b, _ = fakes
    a.default = JSONReply(500, OVERLOADED)
    with running(tmp_path, document(claude_entry(0, a), claude_entry(1, b)), clock) as proxy:
        status, _, body = ask(proxy)
    assert status == 200
    assert json.loads(body)["content"][0]["text"] == "hello"
    assert attempts(caplog) == [
        ("claude-api-key[0]", SONNET, "server_error"),
        ("claude-api-key[1]", SONNET, "ok"),
    ]


@pytest.mark.parametrize("retries", [0, 1])
def test_when_every_credential_answers_500_each_is_tried_once_per_round(tmp_path, fakes, clock, caplog, retries):
    a, b, _ = fakes
    a.default = JSONReply(500, OVERLOADED)
    b.default = JSONReply(503, OVERLOADED)
    doc = document(claude_entry(0, a), claude_entry(1, b), **{"request-retry": retries})
    with running(tmp_path, doc, clock) as proxy:
        status, headers, body = ask(proxy)
    rounds = 1 + retries
    assert seen(a) == [("sk-ant-A", SONNET)] * rounds
    assert seen(b) == [("sk-ant-B", SONNET)] * rounds
    logged = attempts(caplog)
    assert len(logged) == 2 * rounds
    assert {outcome for _, _, outcome in logged} == {"server_error"}
    # The client sees the last attempt's error, in the Anthropic shape.
    last_credential = logged[-1][0]
    error = json.loads(body)
    assert status == (500 if last_credential == "claude-api-key[0]" else 503)
    assert headers["content-type"] == "application/json"
    assert error["type"] == "error"
    assert error["error"]["type"] == "api_error"
    assert last_credential in error["error"]["message"]
    assert "internal server error" in error["error"]["message"]
    assert "sk-ant" not in body.decode()


@pytest.mark.parametrize("status", [400, 403])
def test_a_quota_error_body_counts_as_a_rate_limit(tmp_path, fakes, clock, caplog, status):
    a, b, _ = fakes
    a.default = JSONReply(status, QUOTA_BODY)
    with running(tmp_path, document(claude_entry(0, a), claude_entry(1, b)), clock) as proxy:
        assert ask(proxy)[0] == 200
        # Cooled down like a 429: the next requests do not reach A.
        for _ in range(2):
            assert ask(proxy)[0] == 200
    assert len(a.requests) == 1
    assert len(b.requests) == 3
    assert attempts(caplog)[:2] == [
        ("claude-api-key[0]", SONNET, "rate_limited"),
        ("claude-api-key[1]", SONNET, "ok"),
    ]


def test_a_connection_dropped_before_headers_fails_over(tmp_path, fakes, clock, caplog):
    a, b, _ = fakes
    a.default = DropReply()
    with running(tmp_path, document(claude_entry(0, a), claude_entry(1, b)), clock) as proxy:
        status, _, body = ask(proxy)
    assert status == 200
    assert json.loads(body)["type"] == "message"
    assert seen(a) == [("sk-ant-A", SONNET)]
    assert seen(b) == [("sk-ant-B", SONNET)]
    assert attempts(caplog) == [
        ("claude-api-key[0]", SONNET, "connect"),
        ("claude-api-key[1]", SONNET, "ok"),
    ]


def test_a_connect_error_fails_over(tmp_path, fakes, clock, caplog):
    _, b, _ = fakes
    with socket.socket() as placeholder:  # a port nobody listens on once closed
        placeholder.bind(("127.0.0.1", 0))
        dead = "http://127.0.0.1:%d" % placeholder.getsockname()[1]
    doc = document({"api-key": KEYS[0], "base-url": dead}, claude_entry(1, b))
    with running(tmp_path, doc, clock) as proxy:
        assert ask(proxy)[0] == 200
    assert seen(b) == [("sk-ant-B", SONNET)]
    assert attempts(caplog) == [
        ("claude-api-key[0]", SONNET, "connect"),
        ("claude-api-key[1]", SONNET, "ok"),
    ]


def test_a_timeout_before_headers_fails_over(tmp_path, fakes, clock, caplog):
    a, b, _ = fakes
    a.default = HangReply()
    doc = document(claude_entry(0, a), claude_entry(1, b), limits={"read-timeout": 0.5})
    with running(tmp_path, doc, clock) as proxy:
        status, _, _ = ask(proxy)
    assert status == 200
    assert seen(a) == [("sk-ant-A", SONNET)]
    assert seen(b) == [("sk-ant-B", SONNET)]
    assert attempts(caplog) == [
        ("claude-api-key[0]", SONNET, "timeout"),
        ("claude-api-key[1]", SONNET, "ok"),
    ]


def test_a_stream_that_dies_before_its_first_byte_fails_over(tmp_path, fakes, clock, caplog):
    a, b, _ = fakes
    a.default = SSEReply(anthropic_stream(), die_after=0)
    b.default = SSEReply(anthropic_stream())
    with running(tmp_path, document(claude_entry(0, a), claude_entry(1, b)), clock) as proxy:
        status, headers, body = ask(proxy, stream=True)
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    events = parse_events(body)
    assert [name for name, _ in events] == [name for name, _ in parse_events(b"".join(anthropic_stream()))]
    assert "error" not in [name for name, _ in events]
    assert [key for key, _ in seen(a)] == ["sk-ant-A"]
    assert [key for key, _ in seen(b)] == ["sk-ant-B"]
    logged = attempts(caplog)
    assert logged[0] == ("claude-api-key[0]", SONNET, "connect")
    assert logged[-1] == ("claude-api-key[1]", SONNET, "ok")


def test_a_client_error_is_relayed_as_is_without_failover(tmp_path, fakes, clock, caplog):
    a, b, _ = fakes
    problem = b'{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too large"}}'
    a.default = JSONReply(400, problem)
    with running(tmp_path, document(claude_entry(0, a), claude_entry(1, b)), clock) as proxy:
        status, headers, body = ask(proxy)
    assert status == 400
    assert body == problem
    assert headers["content-type"] == "application/json"
    assert len(a.requests) == 1
    assert b.requests == []
    assert attempts(caplog) == [("claude-api-key[0]", SONNET, "client-error")]


def test_when_every_credential_is_cooling_the_client_gets_a_rate_limit_error(tmp_path, fakes, clock, caplog):
    a, b, _ = fakes
    a.default = rate_limited("30")
    b.default = rate_limited("20")
    with running(tmp_path, document(claude_entry(0, a), claude_entry(1, b)), clock) as proxy:
        status, headers, body = ask(proxy)
        assert status == 429
        error = json.loads(body)
        assert error["type"] == "error"
        assert error["error"]["type"] == "rate_limit_error"
        assert headers["retry-after"] == "20", "the last attempt's error, B's own Retry-After"

        clock.advance(5)
        status, headers, body = ask(proxy)
    assert status == 429
    error = json.loads(body)
    assert error["type"] == "error"
    assert error["error"]["type"] == "rate_limit_error"
    assert "cooling down" in error["error"]["message"]
    assert headers["retry-after"] == "15", "when the first credential comes back"
    assert len(a.requests) == 1 and len(b.requests) == 1, "no attempt while all are cooling"


# -- once bytes reached the client ---------------------------------------------------


def test_an_anthropic_stream_that_dies_mid_way_ends_with_an_error_event(tmp_path, fakes, clock, caplog):
    a, b, _ = fakes
    upstream_events = anthropic_stream()
    a.default = SSEReply(upstream_events, die_after=3)
    b.default = SSEReply(upstream_events)
    with running(tmp_path, document(claude_entry(0, a), claude_entry(1, b)), clock) as proxy:
        status, headers, body = ask(proxy, stream=True)
        metrics = proxy.request("GET", "/metrics", headers=AUTH)[2].decode()
    assert status == 200  # the head went out before the failure; http.client read a whole body
    events = parse_events(body)
    assert events[:3] == parse_events(b"".join(upstream_events[:3]))
    assert len(events) == 4
    name, data = events[3]
    assert name == "error"
    assert data["type"] == "error"
    assert data["error"]["type"] == "api_error"
    assert b.requests == [], "no failover once bytes reached the client"
    assert any(
        r.name == "cliproxy.executor" and r.getMessage() == "stream from provider failed mid-way"
        and r.fields["credential"] == "claude-api-key[0]"
        for r in caplog.records
    )
    assert 'outcome="stream-error"' in metrics


def test_an_openai_chat_stream_that_dies_mid_way_ends_with_an_error_chunk(tmp_path, fakes, clock, caplog):
    c = fakes[2]
    upstream_events = chat_stream()
    c.default = SSEReply(upstream_events, die_after=3)
    doc = {
        "api-keys": [CLIENT_KEY],
        "openai-compatibility": [{"name": "local", "base-url": c.url + "/v1", "models": [{"name": "qwen3-coder"}]}],
        "ampcode": {"upstream-url": ""},
    }
    body = {"model": "qwen3-coder", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with running(tmp_path, doc, clock) as proxy:
        status, _, data = proxy.request("POST", CHAT, body, {"Authorization": "Bearer " + CLIENT_KEY})
    assert status == 200
    assert c.requests[0].path == "/v1/chat/completions"
    events = parse_events(data)
    assert events[:3] == parse_events(b"".join(upstream_events[:3]))
    assert len(events) == 4
    name, chunk = events[3]
    assert name is None
    assert set(chunk) == {"error"}
    assert chunk["error"]["type"] == "api_error"
    assert "[DONE]" not in data.decode()


# -- spreading load ------------------------------------------------------------------


def test_round_robin_spreads_requests_evenly_over_healthy_credentials(tmp_path, fakes, clock):
    doc = document(*(claude_entry(i, fake) for i, fake in enumerate(fakes)))
    with running(tmp_path, doc, clock) as proxy:
        for _ in range(30):
            assert ask(proxy)[0] == 200
    assert [len(fake.requests) for fake in fakes] == [10, 10, 10]
    assert [seen(fake)[0][0] for fake in fakes] == list(KEYS)


def test_a_thread_sticks_to_its_credential_and_moves_once_when_it_fails(tmp_path, fakes, clock, caplog):
    replies = [Switch(ok()) for _ in fakes]
    for fake, reply in zip(fakes, replies):
        fake.default = reply
    thread = {"X-Amp-Thread-Id": "T-1"}

    def served_by(count_before):
        return [i for i, fake in enumerate(fakes) if len(fake.requests) > count_before[i]]

    def thread_request(**kwargs):
        before = [len(fake.requests) for fake in fakes]
        assert ask(proxy, headers=thread, **kwargs)[0] == 200
        return served_by(before)

    doc = document(*(claude_entry(i, fake) for i, fake in enumerate(fakes)))
    with running(tmp_path, doc, clock) as proxy:
        first = thread_request()
        assert len(first) == 1
        home = first[0]
        for _ in range(5):
            assert ask(proxy)[0] == 200  # unthreaded traffic keeps rotating
            assert thread_request() == [home]

        replies[home].reply = rate_limited("5")
        moved = thread_request()
        assert home in moved and len(moved) == 2, "tried its credential, then moved"
        new_home = next(i for i in moved if i != home)
        replies[home].reply = ok()
        clock.advance(10)  # the old credential is healthy again
        for _ in range(4):
            assert ask(proxy)[0] == 200
            assert thread_request() == [new_home], "the thread stays where it moved"
    assert all("x-amp-thread-id" not in r.headers for fake in fakes for r in fake.requests)


# -- model mappings ------------------------------------------------------------------


def test_a_mapping_list_moves_to_the_next_model_when_the_first_is_out_of_quota(tmp_path, fakes, clock, caplog):
    a, b, _ = fakes
    a.default = JSONReply(429, QUOTA_BODY)
    b.default = ok(HAIKU)
    doc = document(
        claude_entry(0, a, models=[SONNET]),
        claude_entry(1, b, models=[HAIKU]),
        ampcode={"upstream-url": "", "model-mappings": [{"from": OPUS, "to": [SONNET, HAIKU]}]},
    )
    with running(tmp_path, doc, clock) as proxy:
        for _ in range(3):
            status, _, body = ask(proxy, model=OPUS)
            assert status == 200
            answer = json.loads(body)
            assert answer["model"] == OPUS, "the client sees the model it asked for"
    assert seen(a) == [("sk-ant-A", SONNET)], "out of quota once, then skipped while cooling"
    assert seen(b) == [("sk-ant-B", HAIKU)] * 3
    assert attempts(caplog)[:2] == [
        ("claude-api-key[0]", SONNET, "rate_limited"),
        ("claude-api-key[1]", HAIKU, "ok"),
    ]


def test_the_issue_mapping_keeps_an_agent_working_when_the_first_provider_is_out_of_quota(tmp_path, fakes, clock):
    """{"from": opus, "to": [sonnet, "qwen3-coder"]} with qwen3-coder on a local server's
    Anthropic-compatible endpoint (Ollama, llama.cpp and vLLM offer one)."""
    a, b, _ = fakes
    a.default = JSONReply(429, QUOTA_BODY)
    b.default = ok("qwen3-coder:30b")
    local = {"api-key": "local", "base-url": b.url, "models": [{"name": "qwen3-coder:30b", "alias": "qwen3-coder"}]}
    doc = document(
        claude_entry(0, a, models=[SONNET]),
        local,
        ampcode={"upstream-url": "", "model-mappings": [{"from": OPUS, "to": [SONNET, "qwen3-coder"]}]},
    )
    with running(tmp_path, doc, clock) as proxy:
        for _ in range(3):
            status, _, body = ask(proxy, model=OPUS)
            assert (status, json.loads(body)["model"]) == (200, OPUS)
    assert seen(a) == [("sk-ant-A", SONNET)]
    assert seen(b) == [("local", "qwen3-coder:30b")] * 3


def test_a_mapping_fallback_to_another_protocol_is_translated(tmp_path, fakes, clock, caplog):
    a, _, c = fakes
    a.default = JSONReply(429, QUOTA_BODY)
    c.default = JSONReply(body={
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "qwen3-coder",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "from qwen"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})
    doc = document(
        claude_entry(0, a, models=[SONNET]),
        **{
            "openai-compatibility": [{"name": "local", "base-url": c.url + "/v1", "models": [{"name": "qwen3-coder"}]}],
            "ampcode": {"upstream-url": "", "model-mappings": [{"from": OPUS, "to": [SONNET, "qwen3-coder"]}]},
        }
    )
    with running(tmp_path, doc, clock) as proxy:
        status, _, body = ask(proxy, model=OPUS)
    assert status == 200
    answer = json.loads(body)
    assert answer["type"] == "message" and answer["model"] == OPUS
    assert answer["content"] == [{"type": "text", "text": "from qwen"}]
    assert seen(a) == [("sk-ant-A", SONNET)]
    assert [r.path for r in c.requests] == ["/v1/chat/completions"]
    assert json.loads(c.requests[0].body)["model"] == "qwen3-coder"
    assert attempts(caplog) == [("claude-api-key[0]", SONNET, "rate_limited"), ("openai-compatibility[0]", "qwen3-coder", "ok")]


# -- logging -------------------------------------------------------------------------


def test_every_attempt_is_logged_with_its_reason_and_no_secret(tmp_path, fakes, clock, caplog):
    a, b, c = fakes
    a.default = rate_limited("30")
    b.default = JSONReply(502, {"error": {"message": "bad gateway upstream"}})
    doc = document(*(claude_entry(i, fake) for i, fake in enumerate(fakes)))
    with running(tmp_path, doc, clock) as proxy:
        assert ask(proxy)[0] == 200
    records = [r for r in caplog.records if r.name == "cliproxy.executor"]
    fields = [r.fields for r in records]
    assert [(f["credential"], f["outcome"], f["status"]) for f in fields] == [
        ("claude-api-key[0]", "rate_limited", 429),
        ("claude-api-key[1]", "server_error", 502),
        ("claude-api-key[2]", "ok", 200),
    ]
    assert "slow down" in fields[0]["reason"]
    assert "bad gateway upstream" in fields[1]["reason"]
    assert [r.levelno for r in records] == [logging.WARNING, logging.WARNING, logging.INFO]
    for record in caplog.records:
        text = record.getMessage() + json.dumps(getattr(record, "fields", {}), default=str)
        assert "sk-ant-" not in text and CLIENT_KEY not in text


def test_round_robin_spreads_load_evenly_over_the_credentials_that_are_not_cooling(tmp_path, fakes, clock):
    a, b, c = fakes
    a.default = rate_limited("60")
    doc = document(*(claude_entry(i, fake) for i, fake in enumerate(fakes)))
    with running(tmp_path, doc, clock) as proxy:
        for _ in range(20):
            assert ask(proxy)[0] == 200
    assert len(a.requests) == 1, "A answered 429 once and cools down for a minute"
    assert (len(b.requests), len(c.requests)) == (10, 10)
