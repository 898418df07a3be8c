"""Tests for cliproxy.providers.outbound: provider URLs, headers and proxies."""

import pytest

from cliproxy.config.model import Config, Protocol, ProviderEntry, ProviderKind
from cliproxy.http.headers import Headers
from cliproxy.providers.outbound import (
    ANTHROPIC_VERSION,
    Endpoint,
    provider_headers,
    provider_url,
    proxy_for,
)

CLAUDE, GEMINI, CODEX, COMPAT = (
    ProviderKind.CLAUDE,
    ProviderKind.GEMINI,
    ProviderKind.CODEX,
    ProviderKind.OPENAI_COMPAT,
)


def entry(kind, base_url="https://example.test", api_key="sk-provider-key-0001", headers=(), proxy_url=None):
    return ProviderEntry(
        kind=kind,
        path="%s[0]" % kind.value,
        api_key=api_key,
        base_url=base_url,
        name=kind.value,
        headers=tuple(headers),
        proxy_url=proxy_url,
    )


# -- URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, base, endpoint, expected",
    [
        (CLAUDE, "https://api.anthropic.com", Endpoint.MESSAGES, "https://api.anthropic.com/v1/messages"),
        (CLAUDE, "https://api.anthropic.com/", Endpoint.MESSAGES, "https://api.anthropic.com/v1/messages"),
        (CLAUDE, "https://api.anthropic.com/v1", Endpoint.MESSAGES, "https://api.anthropic.com/v1/messages"),
        (CLAUDE, "https://api.anthropic.com/v1/", Endpoint.COUNT_TOKENS, "https://api.anthropic.com/v1/messages/count_tokens"),
        (CLAUDE, "https://gw.example/anthropic", Endpoint.MESSAGES, "https://gw.example/anthropic/v1/messages"),
        (CLAUDE, "https://api.anthropic.com", Endpoint.MODELS, "https://api.anthropic.com/v1/models"),
        (CODEX, "https://api.openai.com/v1", Endpoint.RESPONSES, "https://api.openai.com/v1/responses"),
        (CODEX, "https://api.openai.com/v1/", Endpoint.RESPONSES, "https://api.openai.com/v1/responses"),
        (CODEX, "https://api.openai.com", Endpoint.RESPONSES, "https://api.openai.com/v1/responses"),
        (CODEX, "https://api.openai.com", Endpoint.MODELS, "https://api.openai.com/v1/models"),
        (COMPAT, "http://127.0.0.1:11434/v1", Endpoint.CHAT_COMPLETIONS, "http://127.0.0.1:11434/v1/chat/completions"),
        (COMPAT, "http://127.0.0.1:11434", Endpoint.CHAT_COMPLETIONS, "http://127.0.0.1:11434/v1/chat/completions"),
        (COMPAT, "http://host:8000/v1/", Endpoint.COMPLETIONS, "http://host:8000/v1/completions"),
        (COMPAT, "https://open.bigmodel.cn/api/paas/v4", Endpoint.CHAT_COMPLETIONS, "https://open.bigmodel.cn/api/paas/v4/chat/completions"),
        (COMPAT, "https://ark.example/api/v3", Endpoint.CHAT_COMPLETIONS, "https://ark.example/api/v3/chat/completions"),
        (COMPAT, "https://openrouter.ai/api/v1", Endpoint.CHAT_COMPLETIONS, "https://openrouter.ai/api/v1/chat/completions"),
        (COMPAT, "https://generativelanguage.googleapis.com/v1beta/openai/", Endpoint.CHAT_COMPLETIONS, "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions"),
        (COMPAT, "https://gw.example/openai", Endpoint.CHAT_COMPLETIONS, "https://gw.example/openai/v1/chat/completions"),
        (COMPAT, "http://127.0.0.1:11434/v1", Endpoint.MODELS, "http://127.0.0.1:11434/v1/models"),
        (COMPAT, "https://res.example/openai?api-version=2024-10-21", Endpoint.CHAT_COMPLETIONS, "https://res.example/openai/v1/chat/completions?api-version=2024-10-21"),
        (GEMINI, "https://generativelanguage.googleapis.com", Endpoint.MODELS, "https://generativelanguage.googleapis.com/v1beta/models"),
    ],
)
def test_url_table(kind, base, endpoint, expected):
    assert provider_url(entry(kind, base), endpoint, model="m") == expected


GEMINI_BASES = [
    "https://generativelanguage.googleapis.com",
    "https://generativelanguage.googleapis.com/",
    "https://generativelanguage.googleapis.com/v1beta",
    "https://generativelanguage.googleapis.com/v1beta/",
    "https://generativelanguage.googleapis.com/v1",
]


@pytest.mark.parametrize("base", GEMINI_BASES)
def test_gemini_urls_always_v1beta(base):
    e = entry(GEMINI, base)
    root = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro"
    assert provider_url(e, Endpoint.GEMINI_GENERATE, "gemini-2.5-pro") == root + ":generateContent"
    assert provider_url(e, Endpoint.GEMINI_STREAM, "gemini-2.5-pro") == root + ":streamGenerateContent?alt=sse"
    assert provider_url(e, Endpoint.GEMINI_GENERATE, "gemini-2.5-pro", stream=True) == root + ":streamGenerateContent?alt=sse"
    assert provider_url(e, Endpoint.GEMINI_COUNT_TOKENS, "gemini-2.5-pro") == root + ":countTokens"


def test_gemini_model_prefix_and_quoting():
    e = entry(GEMINI, "https://g.example")
    assert provider_url(e, Endpoint.GEMINI_GENERATE, "models/gemini-2.5-flash") == (
        "https://g.example/v1beta/models/gemini-2.5-flash:generateContent"
    )
    assert provider_url(e, Endpoint.GEMINI_GENERATE, "a/b?c") == "https://g.example/v1beta/models/a%2Fb%3Fc:generateContent"


def test_gemini_without_model_is_a_caller_error():
    with pytest.raises(ValueError):
        provider_url(entry(GEMINI), Endpoint.GEMINI_GENERATE)


def test_stream_flag_does_not_change_other_urls():
    e = entry(CLAUDE, "https://api.anthropic.com")
    assert provider_url(e, Endpoint.MESSAGES, stream=True) == "https://api.anthropic.com/v1/messages"


# -- headers ------------------------------------------------------------------------------

CLIENT_SECRET = "sk-client-local-key"


def client_headers(*extra):
    return Headers(
        [
            ("Host", "127.0.0.1:8317"),
            ("Authorization", "Bearer " + CLIENT_SECRET),
            ("X-Api-Key", CLIENT_SECRET),
            ("x-goog-api-key", CLIENT_SECRET),
            ("Content-Type", "application/json"),
            ("Content-Length", "123"),
            ("Content-Encoding", "gzip"),
            ("Accept-Encoding", "gzip, br"),
            ("Connection", "keep-alive, x-hop"),
            ("X-Hop", "1"),
            ("Transfer-Encoding", "chunked"),
            ("Proxy-Authorization", "Basic abc"),
            ("Cookie", "session=" + CLIENT_SECRET),
            ("X-Amp-Thread-Id", "T-123"),
            ("X-Amp-Client-Application", "CLI"),
            ("X-Forwarded-For", "10.1.2.3"),
            ("Expect", "100-continue"),
            ("OpenAI-Organization", "org-client"),
            ("User-Agent", "amp/1.0"),
        ]
        + list(extra)
    )


def assert_no_client_secret(headers):
    for name, value in headers:
        assert CLIENT_SECRET not in value, name
    for name in (
        "host", "content-length", "content-encoding", "connection", "x-hop", "transfer-encoding",
        "proxy-authorization", "cookie", "x-amp-thread-id", "x-amp-client-application",
        "x-forwarded-for", "expect", "openai-organization",
    ):
        assert name not in headers, name
    assert headers.get_all("accept-encoding") == ["identity"]
    assert headers.get("user-agent") == "amp/1.0"
    assert headers.get("content-type") == "application/json"


def test_claude_headers():
    e = entry(CLAUDE, api_key="sk-ant-provider")
    out = provider_headers(e, client_headers(), Protocol.CLAUDE)
    assert_no_client_secret(out)
    assert out.get_all("x-api-key") == ["sk-ant-provider"]
    assert out.get("anthropic-version") == ANTHROPIC_VERSION
    assert "authorization" not in out
    assert "x-goog-api-key" not in out


def test_claude_keeps_client_anthropic_version_and_filters_betas():
    incoming = client_headers(
        ("anthropic-version", "2024-01-01"),
        ("anthropic-beta", "context-1m-2025-08-07, interleaved-thinking-2025-05-14"),
        ("anthropic-beta", "fine-grained-tool-streaming-2025-05-14"),
    )
    out = provider_headers(entry(CLAUDE), incoming, Protocol.CLAUDE)
    assert out.get_all("anthropic-version") == ["2024-01-01"]
    assert out.get_all("anthropic-beta") == [
        "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14"
    ]
    only_1m = client_headers(("anthropic-beta", "context-1m-2025-08-07"))
    assert "anthropic-beta" not in provider_headers(entry(CLAUDE), only_1m, Protocol.CLAUDE)


def test_openai_style_headers():
    for kind in (CODEX, COMPAT):
        out = provider_headers(entry(kind, api_key="sk-openai-provider"), client_headers(), Protocol.OPENAI)
        assert_no_client_secret(out)
        assert out.get_all("authorization") == ["Bearer sk-openai-provider"]
        assert "x-api-key" not in out
        assert "anthropic-version" not in out


def test_openai_compat_without_key_sends_no_authorization():
    out = provider_headers(entry(COMPAT, api_key=""), client_headers(), Protocol.OPENAI)
    assert_no_client_secret(out)
    assert "authorization" not in out


def test_gemini_headers():
    out = provider_headers(entry(GEMINI, api_key="AIza-provider"), client_headers(), Protocol.GEMINI)
    assert_no_client_secret(out)
    assert out.get_all("x-goog-api-key") == ["AIza-provider"]
    assert "authorization" not in out
    assert "x-api-key" not in out


def test_foreign_protocol_headers_dropped_when_translating():
    incoming = client_headers(("anthropic-version", "2023-06-01"), ("anthropic-beta", "x"))
    out = provider_headers(entry(COMPAT), incoming, Protocol.CLAUDE)
    assert "anthropic-version" not in out
    assert "anthropic-beta" not in out
    same_family = provider_headers(entry(CODEX), client_headers(("openai-beta", "assistants=v2")), Protocol.OPENAI)
    assert same_family.get("openai-beta") == "assistants=v2"
    # A Claude provider always gets a version, even when the client spoke OpenAI.
    assert provider_headers(entry(CLAUDE), client_headers(), Protocol.OPENAI).get("anthropic-version") == ANTHROPIC_VERSION


def test_entry_extra_headers_override():
    e = entry(
        CLAUDE,
        api_key="sk-ant-provider",
        headers=[("anthropic-version", "2099-01-01"), ("X-Custom", "yes"), ("User-Agent", "cliproxy")],
    )
    out = provider_headers(e, client_headers(), Protocol.CLAUDE)
    assert out.get_all("anthropic-version") == ["2099-01-01"]
    assert out.get("x-custom") == "yes"
    assert out.get_all("user-agent") == ["cliproxy"]
    assert out.get_all("x-api-key") == ["sk-ant-provider"]


def test_client_headers_are_not_modified():
    incoming = client_headers()
    before = incoming.items()
    provider_headers(entry(CLAUDE), incoming, Protocol.CLAUDE)
    assert incoming.items() == before


# -- proxies ------------------------------------------------------------------------------


def test_proxy_for():
    config = Config(proxy_url="http://corp:3128")
    assert proxy_for(entry(CLAUDE, proxy_url="http://other:8080"), config) == "http://other:8080"
    assert proxy_for(entry(CLAUDE, proxy_url="direct"), config) == "direct"
    assert proxy_for(entry(CLAUDE), config) == "http://corp:3128"
    assert proxy_for(entry(CLAUDE), Config()) is None
