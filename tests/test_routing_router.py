"""The route decision (cliproxy.routing.router), SPEC §3.2 steps 1-5."""

import json
import re

import pytest

from cliproxy.config.model import (
    AmpCode,
    Config,
    ModelEntry,
    ModelMapping,
    PaidFallback,
    Protocol,
    ProviderEntry,
    ProviderKind,
)
from cliproxy.errors import NotFound, PaymentRequired
from cliproxy.routing.registry import ModelRegistry
from cliproxy.routing.router import RouteType, Router, explain, log_fields
from cliproxy.routing.suffix import ThinkingKind, ThinkingSuffix

SECRETS = ("sk-ant-SECRET-claude", "AIza-SECRET-gemini", "sk-SECRET-codex", "sk-SECRET-ollama")

CLAUDE = ProviderEntry(
    ProviderKind.CLAUDE, "claude-api-key[0]", SECRETS[0], "https://api.anthropic.com", "claude-api-key",
    models=(ModelEntry("claude-sonnet-4-5-20250929", "sonnet"),),
)
GEMINI = ProviderEntry(
    ProviderKind.GEMINI, "gemini-api-key[0]", SECRETS[1], "https://generativelanguage.googleapis.com",
    "gemini-api-key",
)
CODEX = ProviderEntry(ProviderKind.CODEX, "codex-api-key[0]", SECRETS[2], "https://api.openai.com/v1", "codex-api-key")
OLLAMA = ProviderEntry(
    ProviderKind.OPENAI_COMPAT, "openai-compatibility[0].api-key-entries[0]", SECRETS[3],
    "http://127.0.0.1:11434/v1", "ollama", models=(ModelEntry("qwen3-coder:30b", "qwen3-coder"),),
)
OLLAMA_2 = ProviderEntry(
    ProviderKind.OPENAI_COMPAT, "openai-compatibility[0].api-key-entries[1]", "sk-SECRET-ollama-2",
    "http://127.0.0.1:11434/v1", "ollama", models=(ModelEntry("qwen3-coder:30b", "qwen3-coder"),),
)

HIGH = ThinkingSuffix(ThinkingKind.LEVEL, level="high", raw="high")
LOW = ThinkingSuffix(ThinkingKind.LEVEL, level="low", raw="low")
BUDGET = ThinkingSuffix(ThinkingKind.BUDGET, budget=8192, raw="8192")


def exact(index, source, *targets):
    return ModelMapping(source, tuple(targets), index=index)


def regex(index, source, *targets):
    return ModelMapping(source, tuple(targets), regex=True, index=index, pattern=re.compile(source, re.IGNORECASE))


MAPPINGS = (
    exact(0, "claude-opus-4-5-20251101", "qwen3-coder"),
    regex(1, r"^gpt-5.*", "gemini-2.5-pro", "qwen3-coder"),
    exact(2, "sonnet", "qwen3-coder(high)"),
    exact(3, "claude-haiku-4-5", "not-served", "qwen3-coder", "also-not-served", "gemini-2.5-flash(low)"),
    exact(4, "claude-3-opus", "not-served", "nowhere"),
    exact(5, "gemini-2.5-pro", "nowhere"),
)


def router(providers=(CLAUDE, GEMINI, OLLAMA), mappings=MAPPINGS, **amp):
    return Router.from_config(Config(providers=tuple(providers), ampcode=AmpCode(model_mappings=mappings, **amp)))


def candidate_view(decision):
    """(model, suffix, [credential paths]) for each candidate."""
    return [(c.model, c.suffix, [s.entry.path for s in c.served]) for c in decision.candidates]


ROUTES = [
    # (router kwargs, model, route, candidates, mapping index, status)
    ({}, "sonnet", RouteType.LOCAL_PROVIDER, [("sonnet", None, ["claude-api-key[0]"])], None, None),
    ({}, "gemini-2.5-pro(8192)", RouteType.LOCAL_PROVIDER,
     [("gemini-2.5-pro", BUDGET, ["gemini-api-key[0]"])], None, None),
    ({}, "claude-opus-4-5-20251101", RouteType.MODEL_MAPPING,
     [("qwen3-coder", None, ["openai-compatibility[0].api-key-entries[0]"])], 0, None),
    # The mapping matches the base name, and the user's suffix is kept.
    ({}, "claude-opus-4-5-20251101(high)", RouteType.MODEL_MAPPING,
     [("qwen3-coder", HIGH, ["openai-compatibility[0].api-key-entries[0]"])], 0, None),
    # Regex mapping; list targets in order.
    ({}, "gpt-5-codex(8192)", RouteType.MODEL_MAPPING,
     [("gemini-2.5-pro", BUDGET, ["gemini-api-key[0]"]),
      ("qwen3-coder", BUDGET, ["openai-compatibility[0].api-key-entries[0]"])], 1, None),
    # Unserved targets are skipped; a target's own suffix overrides the user's.
    ({}, "claude-haiku-4-5(high)", RouteType.MODEL_MAPPING,
     [("qwen3-coder", HIGH, ["openai-compatibility[0].api-key-entries[0]"]),
      ("gemini-2.5-flash", LOW, ["gemini-api-key[0]"])], 3, None),
    # Default order: a local provider wins over a mapping for the same model.
    ({}, "sonnet(low)", RouteType.LOCAL_PROVIDER, [("sonnet", LOW, ["claude-api-key[0]"])], None, None),
    # force-model-mappings: the mapping wins, and its target's suffix overrides.
    ({"force_model_mappings": True}, "sonnet(low)", RouteType.MODEL_MAPPING,
     [("qwen3-coder", HIGH, ["openai-compatibility[0].api-key-entries[0]"])], 2, None),
    # force mode with a mapping whose targets nobody serves: back to the local provider.
    ({"force_model_mappings": True}, "gemini-2.5-pro", RouteType.LOCAL_PROVIDER,
     [("gemini-2.5-pro", None, ["gemini-api-key[0]"])], None, None),
    # A mapping to unserved targets does not apply: falls through to the upstream.
    ({}, "claude-3-opus", RouteType.AMP_CREDITS, [], None, None),
    ({}, "claude-unknown", RouteType.AMP_CREDITS, [], None, None),
    # Offline (no upstream): 404, whatever paid-fallback says.
    ({"upstream_url": None}, "claude-3-opus", RouteType.NO_PROVIDER, [], None, 404),
    ({"upstream_url": None, "paid_fallback": PaidFallback.DENY}, "claude-unknown", RouteType.NO_PROVIDER,
     [], None, 404),
    # Upstream configured but paid fallback denied: 402.
    ({"paid_fallback": PaidFallback.DENY}, "claude-unknown", RouteType.NO_PROVIDER, [], None, 402),
    # Routable decisions stay routable with paid-fallback deny.
    ({"paid_fallback": PaidFallback.DENY}, "claude-opus-4-5-20251101", RouteType.MODEL_MAPPING,
     [("qwen3-coder", None, ["openai-compatibility[0].api-key-entries[0]"])], 0, None),
]


@pytest.mark.parametrize("amp, model, route, candidates, mapping, status", ROUTES)
def test_decide(amp, model, route, candidates, mapping, status):
    decision = router(**amp).decide(model, Protocol.CLAUDE)
    assert decision.route is route
    assert decision.requested == model
    assert candidate_view(decision) == candidates
    assert (decision.mapping.index if decision.mapping else None) == mapping
    assert decision.status == status
    assert decision.routable is (status is None)
    assert (decision.hint is not None) is (route in (RouteType.AMP_CREDITS, RouteType.NO_PROVIDER))


def test_decision_carries_base_suffix_and_protocol():
    decision = router().decide("claude-opus-4-5-20251101(HIGH)", Protocol.OPENAI)
    assert decision.requested == "claude-opus-4-5-20251101(HIGH)"
    assert decision.base == "claude-opus-4-5-20251101"
    assert decision.suffix == ThinkingSuffix(ThinkingKind.LEVEL, level="high", raw="HIGH")
    assert decision.protocol is Protocol.OPENAI
    assert decision.resolved == "qwen3-coder(HIGH)"


def test_local_candidate_lists_every_credential_and_upstream_name():
    decision = router(providers=(OLLAMA, OLLAMA_2)).decide("Qwen3-Coder", Protocol.OPENAI)
    (candidate,) = decision.candidates
    assert [s.entry.path for s in candidate.served] == [OLLAMA.path, OLLAMA_2.path]
    assert {s.upstream_model for s in candidate.served} == {"qwen3-coder:30b"}


def test_first_matching_mapping_decides_even_when_unserved():
    # An exact rule with unserved targets shadows a regex rule that would have worked.
    mappings = (exact(0, "gpt-5", "not-served"), regex(1, "^gpt-", "qwen3-coder"))
    decision = router(mappings=mappings, upstream_url=None).decide("gpt-5", Protocol.OPENAI)
    assert decision.route is RouteType.NO_PROVIDER
    assert "ampcode.model-mappings[0] matches but none of its targets (not-served)" in decision.reason


def test_router_exposes_registry():
    r = router()
    assert isinstance(r.registry, ModelRegistry)
    assert r.registry.serves("sonnet")


HINTS = [
    # (providers, client protocol, expected "to" of the hint)
    ((CLAUDE, GEMINI, OLLAMA), Protocol.CLAUDE, "sonnet"),  # same protocol preferred
    ((CLAUDE, GEMINI, OLLAMA), Protocol.OPENAI, "qwen3-coder"),
    ((OLLAMA, CLAUDE), Protocol.GEMINI, "sonnet"),  # none matches: first in config order
    ((GEMINI, CODEX), Protocol.RESPONSES, "<a model matching gpt-* or o<digit>* or codex-*>"),
    ((GEMINI, CODEX), Protocol.CLAUDE, "<a model matching gemini-*>"),
]


@pytest.mark.parametrize("providers, protocol, target", HINTS)
def test_hint_is_the_mapping_entry_to_add(providers, protocol, target):
    decision = router(providers=providers, mappings=()).decide("claude-opus-4-5-20251101(high)", protocol)
    assert decision.route is RouteType.AMP_CREDITS
    assert json.loads(decision.hint) == {"from": "claude-opus-4-5-20251101", "to": target}


def test_hint_exact_text():
    decision = router(providers=(OLLAMA,), mappings=()).decide("claude-opus-4-5-20251101", Protocol.CLAUDE)
    assert decision.hint == '{"from": "claude-opus-4-5-20251101", "to": "qwen3-coder"}'


def test_hint_without_any_provider_says_to_add_one():
    decision = router(providers=(), mappings=(), upstream_url=None).decide("claude-opus-4-5", Protocol.CLAUDE)
    assert decision.route is RouteType.NO_PROVIDER and decision.status == 404
    assert decision.hint.startswith("no local provider is configured")
    assert "claude-api-key" in decision.hint and "openai-compatibility" in decision.hint
    assert '"claude-opus-4-5"' in decision.hint


def test_message_and_error_404():
    decision = router(upstream_url=None).decide("claude-unknown(8192)", Protocol.CLAUDE)
    error = decision.error()
    assert isinstance(error, NotFound) and error.status == 404
    assert error.message == decision.message
    assert 'model "claude-unknown(8192)"' in decision.message
    assert "offline mode" in decision.message
    assert 'ampcode.model-mappings: {"from": "claude-unknown", "to": "sonnet"}' in decision.message


def test_message_and_error_402():
    decision = router(paid_fallback=PaidFallback.DENY).decide("claude-unknown", Protocol.CLAUDE)
    error = decision.error()
    assert isinstance(error, PaymentRequired) and error.status == 402
    assert "paid fallback denied" in decision.reason
    assert "paid fallback denied" in decision.message
    assert '{"from": "claude-unknown", "to": "sonnet"}' in decision.message


def test_message_without_providers_is_a_sentence():
    decision = router(providers=(), mappings=(), upstream_url=None).decide("m", Protocol.OPENAI)
    assert decision.message.endswith('entry that serves "m".')
    assert "No local provider is configured" in decision.message


def test_amp_credits_message_is_a_warning_and_no_error():
    decision = router().decide("claude-unknown", Protocol.CLAUDE)
    assert decision.error() is None
    assert "Amp credits" in decision.message
    assert '{"from": "claude-unknown", "to": "sonnet"}' in decision.message


@pytest.mark.parametrize("model", ["sonnet", "claude-opus-4-5-20251101"])
def test_routable_decisions_have_no_message(model):
    decision = router().decide(model, Protocol.CLAUDE)
    assert decision.message is None and decision.error() is None


def all_decisions():
    r = router(providers=(CLAUDE, GEMINI, CODEX, OLLAMA, OLLAMA_2))
    models = [route[1] for route in ROUTES] + ["gpt-5", "o3-mini(high)", "qwen3-coder"]
    for protocol in Protocol:
        for model in models:
            yield r.decide(model, protocol)
    yield router(upstream_url=None).decide("claude-3-opus", Protocol.CLAUDE)
    yield router(paid_fallback=PaidFallback.DENY).decide("x", Protocol.GEMINI)


def test_explain_and_log_never_contain_an_api_key():
    for decision in all_decisions():
        text = explain(decision) + repr(log_fields(decision)) + (decision.message or "")
        for secret in SECRETS + ("sk-SECRET-ollama-2",):
            assert secret not in text
        assert "SECRET" not in text


def test_explain_mapping_route():
    decision = router().decide("claude-haiku-4-5(8192)", Protocol.CLAUDE)
    text = explain(decision)
    lines = text.splitlines()
    assert lines[0] == "route: MODEL_MAPPING"
    assert "requested: claude-haiku-4-5(8192)" in lines
    assert "model: claude-haiku-4-5" in lines
    assert "resolved: qwen3-coder(8192)" in lines
    assert "suffix: (8192): budget 8192 tokens" in lines
    assert "client protocol: claude" in lines
    assert (
        'mapping: ampcode.model-mappings[3] {"from": "claude-haiku-4-5", "to": '
        '["not-served", "qwen3-coder", "also-not-served", "gemini-2.5-flash(low)"]}'
    ) in lines
    assert (
        "  credential openai-compatibility[0].api-key-entries[0]: openai-compatibility \"ollama\", "
        "native protocol openai, upstream model qwen3-coder:30b, translation claude -> openai"
    ) in lines
    assert "candidate 2: gemini-2.5-flash(low) (level low)" in lines
    assert "skipped target: not-served (not served by any local provider)" in lines
    assert "skipped target: also-not-served (not served by any local provider)" in lines


def test_explain_local_route_without_translation():
    text = explain(router().decide("sonnet", Protocol.CLAUDE))
    assert (
        "  credential claude-api-key[0]: claude-api-key, native protocol claude, "
        "upstream model claude-sonnet-4-5-20250929, translation none"
    ) in text.splitlines()
    assert "hint:" not in text and "status:" not in text and "mapping:" not in text


def test_explain_regex_mapping_shows_regex_flag():
    text = explain(router().decide("gpt-5", Protocol.RESPONSES))
    assert 'mapping: ampcode.model-mappings[1] {"from": "^gpt-5.*", "to": ["gemini-2.5-pro", "qwen3-coder"], "regex": true}' in text


@pytest.mark.parametrize(
    "amp, expected",
    [
        ({}, ["route: AMP_CREDITS", "upstream: forwarded as received to ampcode.upstream-url (uses Amp credits)",
              'hint: {"from": "claude-unknown", "to": "sonnet"}']),
        ({"upstream_url": None}, ["route: NO_PROVIDER", "status: 404"]),
        ({"paid_fallback": PaidFallback.DENY}, ["route: NO_PROVIDER", "status: 402"]),
    ],
)
def test_explain_unserved_routes(amp, expected):
    lines = explain(router(**amp).decide("claude-unknown", Protocol.CLAUDE)).splitlines()
    for line in expected:
        assert line in lines
    assert any(line.startswith("reason: no local provider serves it") for line in lines)


LOG_FIELDS = [
    ({}, "sonnet(high)", {"route": "LOCAL_PROVIDER", "requested": "sonnet(high)", "resolved": "sonnet(high)",
                          "provider": "claude-api-key"}),
    ({}, "claude-opus-4-5-20251101", {"route": "MODEL_MAPPING", "requested": "claude-opus-4-5-20251101",
                                      "resolved": "qwen3-coder", "provider": "ollama",
                                      "mapping": "ampcode.model-mappings[0]"}),
    ({}, "claude-unknown", {"route": "AMP_CREDITS", "requested": "claude-unknown", "resolved": "claude-unknown",
                            "provider": "ampcode", "hint": '{"from": "claude-unknown", "to": "sonnet"}'}),
    ({"upstream_url": None}, "claude-unknown", {"route": "NO_PROVIDER", "requested": "claude-unknown",
                                                "resolved": "claude-unknown", "status": "404",
                                                "hint": '{"from": "claude-unknown", "to": "sonnet"}'}),
]


@pytest.mark.parametrize("amp, model, fields", LOG_FIELDS)
def test_log_fields(amp, model, fields):
    assert log_fields(router(**amp).decide(model, Protocol.CLAUDE)) == fields
