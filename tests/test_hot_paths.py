"""Hot-path shortcuts give exactly what the plain code they replace gives.

Each test states the slow formula inline (the code as it was before the shortcut) and
asserts the fast path returns the same value over inputs that exercise every branch.
"""

import gc
import json
import logging

import pytest

from cliproxy import cli
from cliproxy.config.model import Protocol, ProviderEntry, ProviderKind
from cliproxy.http.headers import HOP_BY_HOP, Headers, strip_hop_by_hop
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
    assert executor._client_headers(headers) == slow
    assert executor._client_headers(headers) is not headers


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
    first = anthropic.tool_name_map({"tools": [{"name": "bash"}, {"name": "MyTool"}]})
    second = anthropic.tool_name_map({})
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
