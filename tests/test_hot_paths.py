"""Hot-path shortcuts give exactly what the plain code they replace gives.

Each test states the slow formula inline (the code as it was before the shortcut) and
asserts the fast path returns the same value over inputs that exercise every branch.
"""

import gc
import json
import logging
import re

import pytest

from cliproxy import cli
from cliproxy.config.model import Protocol, ProviderEntry, ProviderKind
from cliproxy.http.headers import Headers, strip_hop_by_hop
from cliproxy.providers import executor, outbound
from cliproxy.translate import anthropic
from cliproxy.translate.context import encode_json_value, holds_only

RESPONSE_HEADS = [
    [],
    [("content-type", "application/json"), ("content-length", "12")],
    [
        ("server", "nginx"),
        ("content-type", "application/json"),
        ("content-length", "546"),
        ("connection", "keep-alive"),
        ("set-cookie", "a=b"),
        ("content-encoding", "gzip"),
    ],
    # Connection names a field that is not hop-by-hop by itself: it must go too.
    [("connection", "close, X-Trace"), ("x-trace", "1"), ("x-other", "2"), ("transfer-encoding", "chunked")],
    [("Keep-Alive", "timeout=5"), ("upgrade", "h2c"), ("te", "trailers"), ("x-kept", "yes")],
]


@pytest.mark.parametrize("items", RESPONSE_HEADS)
def test_client_headers_equal_strip_then_without(items):
    headers = Headers(items)
    slow = strip_hop_by_hop(headers).without(executor._DROPPED_RESPONSE_HEADERS)
    assert strip_hop_by_hop(headers, executor._NOT_RELAYED) == slow
    assert strip_hop_by_hop(headers, executor._NOT_RELAYED) is not headers


def _old_set(items, name, value):
    name = name.lower()
    kept = [item for item in items if item[0] != name]
    kept.append((name, value))
    return kept


@pytest.mark.parametrize(
    "items, name",
    [
        ([], "a"),
        ([("a", "1")], "a"),
        ([("a", "1"), ("b", "2"), ("a", "3")], "a"),
        ([("b", "2")], "A"),
        ([("b", "2"), ("c", "3")], "c"),
    ],
)
def test_headers_set_matches_replace_all_then_append(items, name):
    headers = Headers(items)
    headers.set(name, "new")
    assert headers.items() == _old_set(items, name, "new")
    assert headers.get_all(name.lower()) == ["new"]


def test_headers_set_does_not_touch_a_copy():
    headers = Headers([("a", "1")])
    copy = headers.copy()
    headers.set("b", "2")
    headers.set("a", "3")
    assert copy.items() == [("a", "1")]
    assert headers.items() == [("b", "2"), ("a", "3")]


@pytest.mark.parametrize("value", ["claude-sonnet-4-5", 'quote"and\\slash', "ünïcode", "tab\tline\n", ""])
def test_encode_json_value_is_json_dumps_and_bounded(value):
    for _ in range(2):  # the second call is answered from the cache
        assert encode_json_value(value) == json.dumps(value, ensure_ascii=False)
    assert encode_json_value.cache_info().maxsize == 256


def test_holds_only_after_cache_hit():
    data = b'{"model":"m\\"x","content":[]}'
    assert holds_only(data, "model", 'm"x')
    assert holds_only(data, "model", 'm"x')
    assert not holds_only(data, "model", "m")


def test_tool_name_map_does_not_leak_between_requests():
    first = anthropic.tool_name_map([{"name": "bash"}, {"name": "MyTool"}])
    second = anthropic.tool_name_map(None)
    assert first["bash"] == "bash" and first["mytool"] == "MyTool"
    assert second == {name.lower(): name for name in anthropic.CANONICAL_TOOL_NAMES}


def _old_forwardable(headers, client_protocol, provider):
    foreign = ()
    if outbound._family(client_protocol) is not outbound._family(provider):
        foreign = outbound._PROTOCOL_PREFIXES.get(client_protocol, ())
    prefixes = outbound._DROPPED_PREFIXES + foreign
    dropped = outbound._STRIPPED
    named = headers.get_list("connection")
    if named:
        dropped = dropped.union(named)
    return Headers([(n, v) for n, v in headers if n not in dropped and not n.startswith(prefixes)])


CLIENT_HEADERS = Headers(
    [
        ("host", "127.0.0.1"),
        ("content-type", "application/json"),
        ("x-api-key", "sk-client"),
        ("anthropic-beta", "tools-2024"),
        ("openai-beta", "assistants=v2"),
        ("x-goog-foo", "1"),
        ("x-amp-thread-id", "T-1"),
        ("connection", "x-hop"),
        ("x-hop", "1"),
        ("user-agent", "amp"),
    ]
)


@pytest.mark.parametrize("client_protocol", [None] + list(Protocol))
@pytest.mark.parametrize("provider", list(Protocol))
def test_forwardable_matches_family_rule(client_protocol, provider):
    fast = outbound._forwardable(CLIENT_HEADERS, client_protocol, provider)
    assert fast == _old_forwardable(CLIENT_HEADERS, client_protocol, provider)


@pytest.mark.parametrize("kind", list(ProviderKind))
def test_provider_headers_use_the_kinds_protocol(kind):
    entry = ProviderEntry(kind=kind, path="p[0]", api_key="sk-up", base_url="http://h", name=kind.value)
    headers = outbound.provider_headers(entry, CLIENT_HEADERS, Protocol.CLAUDE)
    expected = _old_forwardable(CLIENT_HEADERS, Protocol.CLAUDE, kind.protocol)
    assert set(expected.items()) <= set(headers.items())
    assert headers.get("anthropic-beta") == ("tools-2024" if kind is ProviderKind.CLAUDE else None)


def test_log_attempt_still_logs_when_enabled(caplog):
    served = type("Served", (), {})()
    served.entry = type("Entry", (), {"path": "claude-api-key[0]"})()
    served.upstream_model = "m"
    with caplog.at_level(logging.INFO, logger="cliproxy.executor"):
        executor._log_attempt(served, "m", "ok", status=200)
    assert [r.getMessage() for r in caplog.records] == ["provider attempt"]
    assert caplog.records[0].fields["outcome"] == "ok"


def test_log_attempt_skips_when_disabled(caplog):
    served = object()  # would fail if the fields were built
    with caplog.at_level(logging.ERROR, logger="cliproxy.executor"):
        executor._log_attempt(served, "m", "ok", status=200)
    assert caplog.records == []


def test_settle_heap_freezes_start_up_objects():
    try:
        cli._settle_heap()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


# -- provider request headers: the one-pass build equals the rule-by-rule build -----------


def _old_provider_headers(entry, client_headers, client_protocol):
    """The rule-by-rule build, written out: forwardable fields, betas cleaned, identity
    encoding, the credential, then the entry's own headers."""
    headers = outbound._forwardable(client_headers, client_protocol, entry.kind.protocol)
    betas = [
        part.strip()
        for value in headers.get_all("anthropic-beta")
        for part in value.split(",")
        if part.strip() and part.strip().lower() not in outbound.DROPPED_ANTHROPIC_BETAS
    ]
    if headers.get_all("anthropic-beta"):
        headers.remove("anthropic-beta")
        if betas:
            headers.add("anthropic-beta", ",".join(betas))
    headers.add("accept-encoding", "identity")
    key = entry.api_key
    if entry.kind is ProviderKind.CLAUDE:
        if key:
            headers.set("x-api-key", key)
        if "anthropic-version" not in headers:
            headers.add("anthropic-version", outbound.ANTHROPIC_VERSION)
    elif entry.kind is ProviderKind.GEMINI:
        if key:
            headers.set("x-goog-api-key", key)
    elif key:
        headers.set("authorization", "Bearer " + key)
    for name, value in entry.headers:
        headers.set(name, value)
    return headers


HEADER_SETS = [
    CLIENT_HEADERS,
    Headers([]),
    Headers([("content-type", "application/json"), ("x-api-key", "sk-client"), ("user-agent", "amp")]),
    Headers([("anthropic-version", "2024-01-01"), ("accept-encoding", "gzip"), ("authorization", "Bearer c")]),
    Headers([("anthropic-beta", "context-1m-2025-08-07, tools-2024"), ("anthropic-version", "2024-01-01")]),
    Headers([("connection", "keep-alive, x-drop"), ("x-drop", "1"), ("x-goog-api-key", "k"), ("x-amp-thread-id", "t")]),
]


@pytest.mark.parametrize("client_headers", HEADER_SETS)
@pytest.mark.parametrize("client_protocol", [None, Protocol.CLAUDE, Protocol.OPENAI, Protocol.GEMINI])
@pytest.mark.parametrize("kind", list(ProviderKind))
@pytest.mark.parametrize("api_key", ["sk-up", ""])
@pytest.mark.parametrize("extra", [(), (("X-Custom", "1"), ("Content-Type", "text/plain"), ("x-api-key", "cfg"))])
def test_provider_headers_equal_rule_by_rule(client_headers, client_protocol, kind, api_key, extra):
    entry = ProviderEntry(
        kind=kind, path="p[0]", api_key=api_key, base_url="http://h", name=kind.value, headers=extra
    )
    before = client_headers.items()
    fast = outbound.provider_headers(entry, client_headers, client_protocol)
    assert fast.items() == _old_provider_headers(entry, client_headers, client_protocol).items()
    assert client_headers.items() == before  # the client's headers are left alone


# -- credential order: the no-thread, nothing-cooling shortcut equals the full walk ------


def _old_order(pool, served, model, thread_id=None):
    from cliproxy.providers.credentials import _credential_id, _key

    now = pool._clock()
    model_key = _key(model)
    usable = [s for s in served if pool._usable(_credential_id(s), model_key, now)]
    if not usable:
        return []
    sticky_id = pool._sticky_credential(thread_id, model_key, now)
    sticky = None
    if sticky_id is not None:
        sticky = next((s for s in usable if _credential_id(s) == sticky_id), None)
    if sticky is not None and pool._streak(sticky_id, model_key) == 0:
        start = pool._counter(model_key, advance=False) % len(usable)
        rotated = usable[start:] + usable[:start]
        return [sticky] + [s for s in rotated if s is not sticky]
    value = pool._counters.pop(model_key, 0)
    pool._counters[model_key] = value + 1  # most recently used last
    start = value % len(usable)
    return usable[start:] + usable[:start]


def _served(n):
    from cliproxy.routing.registry import Served

    return tuple(
        Served(
            ProviderEntry(kind=ProviderKind.CLAUDE, path="c[%d]" % i, api_key="k", base_url="http://h", name="c"),
            "m",
            "m",
        )
        for i in range(n)
    )


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5])
@pytest.mark.parametrize("model", ["m", "x" * 300])
def test_credential_order_shortcut_equals_full_walk(n, model):
    from cliproxy.providers.credentials import CredentialPool, FailureKind

    served = _served(n)
    now = [100.0]
    fast, slow = CredentialPool(clock=lambda: now[0]), CredentialPool(clock=lambda: now[0])
    steps = [None, None, "t1", None, "fail", None, "t1", "tick", None, "ok", None, None]
    for step in steps:
        if step == "fail" and served:
            for pool in (fast, slow):
                pool.failure(served[0], model, FailureKind.RATE_LIMITED, retry_after=5.0)
            continue
        if step == "ok" and served:
            for pool in (fast, slow):
                pool.success(served[-1], model, "t1")
            continue
        if step == "tick":
            now[0] += 10.0
            continue
        thread = step if step and step.startswith("t") else None
        assert fast.order(served, model, thread) == _old_order(slow, served, model, thread)
        assert list(fast._counters.items()) == list(slow._counters.items())


# -- request sanitising: the byte scan never skips a body that sanitize would change ---------


SANITIZE_BODIES = [
    {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    {"messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": "x"}]}]},
    {"messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": "x", "signature": "s"}]}]},
    {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "1", "signature": "s"}]}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "ü", "cache_control": {"type": "e"}}] * 5}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "a", "cache_control": {"type": "e"}}] * 4}]},
    {"tools": [{"name": "t", "cache_control": {"type": "e"}}] * 6, "messages": []},
]


@pytest.mark.parametrize("body", SANITIZE_BODIES)
@pytest.mark.parametrize("ascii_only", [True, False])
def test_may_need_sanitize_is_false_only_when_sanitize_changes_nothing(body, ascii_only):
    import copy

    raw = json.dumps(body, ensure_ascii=ascii_only).encode("utf-8")
    escaped = raw.replace(b'"thinking"', b'"th\\u0069nking"').replace(b'"signature"', b'"sign\\u0061ture"')
    for data in (raw, escaped):
        parsed = json.loads(data)
        changed = anthropic.sanitize(copy.deepcopy(parsed))
        if not anthropic.may_need_sanitize(data):
            assert not changed


def test_may_need_sanitize_skips_a_plain_body():
    assert not anthropic.may_need_sanitize(json.dumps(SANITIZE_BODIES[0]).encode("utf-8"))
    assert anthropic.may_need_sanitize(json.dumps(SANITIZE_BODIES[1]).encode("utf-8"))


# -- per-request records and metrics ---------------------------------------------------------


def test_an_entry_carries_its_kinds_protocol_and_every_protocol_has_a_rewriter():
    from cliproxy.config.model import Protocol as P
    from cliproxy.config.model import ProviderEntry

    for kind in ProviderKind:
        entry = ProviderEntry(kind=kind, path="p", api_key="k", base_url="http://h", name="n")
        assert entry.protocol is kind.protocol
        assert entry == ProviderEntry(kind=kind, path="p", api_key="k", base_url="http://h", name="n")
    assert set(executor._REWRITERS) == set(P)


def test_observe_upstream_equals_the_loop_it_replaced():
    from cliproxy.ops.metrics import Histogram, Metrics

    metrics = Metrics()
    expected = {"ttfb": {}, "latency": {}}
    for route, ttfb, total in [("A", 0.003, 0.2), ("A", None, 1.5), ("B", 0.07, None), ("A", 400.0, 0.01)]:
        metrics.observe_upstream(route, ttfb, total)
        for table, value in ((expected["ttfb"], ttfb), (expected["latency"], total)):
            if value is not None:
                table.setdefault(route, Histogram()).observe(value)
    for mine, theirs in ((metrics.upstream_ttfb, expected["ttfb"]), (metrics.upstream_latency, expected["latency"])):
        assert sorted(mine) == sorted(theirs)
        for route in mine:
            assert (mine[route].counts, mine[route].total, mine[route].count) == (
                theirs[route].counts,
                theirs[route].total,
                theirs[route].count,
            )


# -- request bodies: the shortcuts give what the general path gives -------------------------


def _slow_parse_json(data):
    from cliproxy.errors import BadRequest
    from cliproxy.jsontext import loads

    try:
        return loads(data)  # json.loads sniffs the encoding of bytes itself
    except ValueError as exc:
        raise BadRequest("request body is not valid JSON: %s" % exc)


JSON_BODIES = [
    b'{"model":"m","messages":[]}',
    b"{}",
    b"{",
    b'{"a":"\xc3\xbc"}',
    b'{"a":"\xff"}',  # invalid UTF-8
    b'{"a":"\xed\xa0\x80"}',  # a UTF-8-encoded lone surrogate: surrogatepass keeps it
    b"{\x00",  # a '{' then NUL: json reads UTF-16-LE
    '{"a":1}'.encode("utf-16-le"),
    '{"a":1}'.encode("utf-16"),
    '{"a":1}'.encode("utf-32"),
    b'\xef\xbb\xbf{"a":1}',  # UTF-8 BOM
    b' {"a":1}',
    b'[{"a":1}]',
    b'{"a":1} x',
    b"",
]


@pytest.mark.parametrize("data", JSON_BODIES)
def test_parse_json_equals_json_loads_of_the_bytes(data):
    from cliproxy.errors import BadRequest
    from cliproxy.http.jsonbody import parse_json

    def outcome(parse):
        try:
            return "ok", parse(data)
        except BadRequest as exc:
            return "error", exc.message

    assert outcome(parse_json) == outcome(_slow_parse_json)


@pytest.mark.parametrize("encoding", [None, "", "identity", " Identity ", "gzip"])
def test_decode_request_body_shortcut(encoding):
    import gzip as gzip_module

    from cliproxy.http.codec import decode_body
    from cliproxy.http.jsonbody import decode_request_body

    plain = b'{"model":"m"}'
    raw = gzip_module.compress(plain) if encoding == "gzip" else plain
    slow = decode_body(raw, (encoding or "").strip().lower(), 1024)
    assert decode_request_body(raw, encoding, 1024) == slow == plain
    if encoding is None:
        assert decode_request_body(raw, encoding, 1024) is raw  # not even copied


# -- request sanitising: the backslash-then-regex scan equals the plain ``in`` ----------------


def _old_may_need_sanitize(raw):
    if b"\\u" in raw or b'"thinking"' in raw or b'"signature"' in raw:
        return True
    return raw.count(b'"cache_control"') > anthropic.MAX_CACHE_CONTROL


TRICKY_RAW = [
    b"",
    b"{}",
    b'{"a":"no escapes at all"}',
    b'{"a":"line\\nbreak \\"quoted\\" \\\\ slash"}',  # backslashes, no \u
    b'{"a":"\\u00fc"}',
    b'{"a":"\\\\u0041"}',  # an escaped backslash then "u": the bytes still hold \u
    b'{"a":"ends with \\\\"}',
    b"\\",
    b"\\u",
    b"u\\",
    b'{"th\\u0069nking":1}',
    b'{"type":"thinking"}',
    b'{"signature":"s"}',
    b'{"x":"thinking"}',
    b'"cache_control"' * 4,
    b'"cache_control"' * 5,
    b'\\n"cache_control"' * 5,
]


@pytest.mark.parametrize("raw", TRICKY_RAW)
def test_may_need_sanitize_equals_the_plain_scans(raw):
    assert anthropic.may_need_sanitize(raw) is _old_may_need_sanitize(raw)
    assert anthropic.may_need_sanitize(bytes(bytearray(raw))) is _old_may_need_sanitize(raw)


# -- rewrite context: tool names are built once, and only for an answer that calls a tool ----


def test_tool_names_are_built_lazily_and_once():
    from cliproxy.translate.context import RewriteContext

    body = {"tools": [{"name": "my_Tool"}]}
    built = []

    def build():
        built.append(1)
        return anthropic.tool_name_map(body["tools"])

    ctx = RewriteContext("client-model", tool_names_from=build)
    text = {"model": "up", "content": [{"type": "text", "text": "hi"}]}
    anthropic.rewrite_response(text, ctx)
    assert built == []  # no tool call: never built
    call = {"model": "up", "content": [{"type": "tool_use", "name": "MY_TOOL"}, {"type": "tool_use", "name": "bash"}]}
    eager = RewriteContext("client-model", anthropic.tool_name_map(body["tools"]))
    expected = anthropic.rewrite_response(json.loads(json.dumps(call)), eager)
    assert anthropic.rewrite_response(call, ctx) == expected
    assert [block["name"] for block in call["content"]] == ["my_Tool", "Bash"]
    assert built == [1]
    assert ctx.tool_names is ctx.tool_names
    assert RewriteContext("m").tool_names == {}


# -- provider headers with the caller's content-type: equal to setting it afterwards --------


@pytest.mark.parametrize("client_headers", HEADER_SETS + [Headers([("content-type", "text/plain"), ("a", "1")])])
@pytest.mark.parametrize("kind", list(ProviderKind))
@pytest.mark.parametrize("extra", [(), (("X-Custom", "1"), ("Content-Type", "text/plain")), (("x-b", "2"),)])
def test_provider_headers_content_type_equals_set_afterwards(client_headers, kind, extra):
    entry = ProviderEntry(kind=kind, path="p[0]", api_key="sk-up", base_url="http://h", name=kind.value, headers=extra)
    slow = outbound.provider_headers(entry, client_headers, Protocol.CLAUDE)
    slow.set("content-type", "application/json")
    fast = outbound.provider_headers(entry, client_headers, Protocol.CLAUDE, content_type="application/json")
    assert fast.items() == slow.items()


# -- client keys: a valid key is remembered by digest, an invalid one always takes the loop --


def test_keyset_remembers_accepted_digests_only(monkeypatch):
    import hashlib

    import cliproxy.amp.auth as auth

    calls = []
    real = auth.hmac.compare_digest

    def counting(a, b):
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    keys = auth.KeySet(("first", "second"))
    for _ in range(3):
        assert not keys.contains("nope")
    assert len(calls) == 6  # every invalid offer compares every configured digest
    assert keys.contains("second") and keys.contains("second") and keys.contains("first")
    assert len(calls) == 10  # the second offer of "second" was answered by the memo
    assert keys._accepted == {hashlib.sha256(k.encode()).digest() for k in ("first", "second")}
    assert not keys.contains("") and not keys.contains(None)


@pytest.mark.parametrize(
    "items, expected",
    [
        ([("authorization", "Bearer a"), ("x-api-key", "b")], "a"),
        ([("authorization", "Basic a"), ("x-api-key", " b ")], "b"),
        ([("x-api-key", "  "), ("x-goog-api-key", "c")], "c"),
        ([("x-api-key", ""), ("x-api-key", "d")], None),  # the first field counts, as get() finds it
        ([("x-goog-api-key", "e"), ("x-api-key", "f")], "f"),
        ([], None),
    ],
)
def test_client_key_header_order(items, expected):
    from cliproxy.amp.auth import client_key

    assert client_key(Headers(items), "") == expected


# -- metrics and credential counters ---------------------------------------------------------


def test_counts_equal_get_plus_one():
    from cliproxy.ops.metrics import Metrics

    metrics = Metrics()
    expected = {}
    for route, status in [("A", 200), ("A", 200), ("B", 500), ("A", 404)]:
        metrics.count_request(route, status)
        metrics.count_attempt(route, str(status))
        expected[(route, status)] = expected.get((route, status), 0) + 1
    assert metrics.requests == expected
    assert metrics.upstream_attempts == {(r, str(s)): n for (r, s), n in expected.items()}


def test_round_robin_counters_drop_the_least_recently_used(monkeypatch):
    from cliproxy.providers import credentials

    monkeypatch.setattr(credentials, "STATE_LIMIT", 3)
    pool = credentials.CredentialPool(clock=lambda: 0.0)
    served = _served(2)
    for model in ["a", "b", "c", "a", "d"]:
        pool.order(served, model)
    assert list(pool._counters) == ["c", "a", "d"]  # "b" was the least recently used
    assert pool._counters["a"] == 2
    assert [s.entry.path for s in pool.order(served, "a")] == ["c[0]", "c[1]"]


# -- request-body screens ----------------------------------------------------------------


SCREENED_BODIES = [
    b'{"model":"a","stream":true,"messages":[]}',
    b'{"model":"a","model":"b"}',
    b'{"stream":false,"messages":[{"role":"user","content":"say \\"model\\" twice: model"}],"stream":true}',
    b'{"model":"a","messages":[{"model":"nested","stream":1}],"metadata":{"model":"x"}}',
    b'{"messages":[{"content":[{"type":"text","text":"model stream \\"stream\\""}]}]}',
    b'{"model" : "spaced", "model":"again"}',
    b'{"role":"model","model":"gemini-pro"}',
]


def test_repeated_keys_screens_in_one_pass_what_a_count_per_key_would():
    from cliproxy.http.jsonbody import repeated_keys

    keys = ("model", "stream")
    for data in SCREENED_BODIES:
        json.loads(data)  # the screen is only asked about valid JSON
        by_count = [key for key in keys if data.count(b'"' + key.encode() + b'"') > 1]
        quoted = re.findall(rb'"(model|stream)"', data)
        assert [key for key in keys if quoted.count(key.encode()) > 1] == by_count, data
    assert repeated_keys(SCREENED_BODIES[1], keys) == ["model"]
    assert repeated_keys(SCREENED_BODIES[2], keys) == ["stream"]
    assert repeated_keys(SCREENED_BODIES[3], keys) == []  # nested repeats are not routing keys
    assert repeated_keys(SCREENED_BODIES[6], keys) == []


def test_the_surrogate_screen_looks_past_other_escapes():
    from cliproxy.errors import BadRequest
    from cliproxy.http.jsonbody import parse_json

    assert parse_json(b'{"t":"line\\nnext \\"q\\" \\u00e9 \\ud83d\\ude00"}')["t"].startswith("line\n")
    with pytest.raises(BadRequest, match="lone surrogate"):
        parse_json(b'{"t":"tab\\t then \\ud800 alone"}')
