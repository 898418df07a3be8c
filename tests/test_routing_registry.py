"""Which entries serve which visible model (cliproxy.routing.registry)."""

import pytest

from cliproxy.config.model import Config, ModelEntry, Protocol, ProviderEntry, ProviderKind
from cliproxy.routing.registry import ModelRegistry, Served, VisibleModel, compile_exclusions


def entry(kind, index, models=(), excluded=(), name=None):
    path = "%s[%d]" % (kind.value, index)
    return ProviderEntry(
        kind=kind,
        path=path,
        api_key="sk-secret-%d" % index,
        base_url="https://example.invalid",
        name=name or kind.value,
        models=tuple(ModelEntry(*m) if isinstance(m, tuple) else ModelEntry(m) for m in models),
        excluded_models=tuple(excluded),
    )


CLAUDE = entry(ProviderKind.CLAUDE, 0)
GEMINI = entry(ProviderKind.GEMINI, 0)
CODEX = entry(ProviderKind.CODEX, 0)
COMPAT_EMPTY = entry(ProviderKind.OPENAI_COMPAT, 0, name="empty")


def registry(*entries):
    return ModelRegistry.from_config(Config(providers=tuple(entries)))


def paths(served):
    return [s.entry.path for s in served]


FAMILIES = [
    (CLAUDE, "claude-sonnet-4-5-20250929", True),
    (CLAUDE, "Claude-Opus-4-5", True),
    (CLAUDE, "gemini-2.5-pro", False),
    (CLAUDE, "claude", False),
    (GEMINI, "gemini-2.5-pro", True),
    (GEMINI, "gemini-3-pro-preview", True),
    (GEMINI, "gpt-5", False),
    (CODEX, "gpt-5", True),
    (CODEX, "gpt-5-codex", True),
    (CODEX, "o1", True),
    (CODEX, "o3-mini", True),
    (CODEX, "o4-mini", True),
    (CODEX, "O3", True),
    (CODEX, "codex-mini-latest", True),
    (CODEX, "omni-x", False),
    (CODEX, "o", False),
    (CODEX, "gpt5", False),
    (CODEX, "claude-sonnet-4-5", False),
    (COMPAT_EMPTY, "gpt-5", False),
    (COMPAT_EMPTY, "qwen3-coder", False),
]


@pytest.mark.parametrize("provider, model, served", FAMILIES)
def test_default_families(provider, model, served):
    result = registry(provider).lookup(model)
    if served:
        assert result == (Served(provider, model, model),)
    else:
        assert result == ()


def test_family_upstream_is_the_requested_spelling():
    (served,) = registry(CLAUDE).lookup("Claude-Opus-4-5")
    assert served.upstream_model == "Claude-Opus-4-5"
    assert served.visible == "Claude-Opus-4-5"


def test_explicit_models_serve_exactly_those():
    claude = entry(ProviderKind.CLAUDE, 0, models=[("claude-sonnet-4-5-20250929", "sonnet")])
    reg = registry(claude)
    assert reg.lookup("sonnet") == (Served(claude, "claude-sonnet-4-5-20250929", "sonnet"),)
    # The alias hides the name, and the family does not apply to an entry with a list.
    assert reg.lookup("claude-sonnet-4-5-20250929") == ()
    assert reg.lookup("claude-opus-4-5") == ()


def test_name_is_visible_when_alias_is_empty():
    compat = entry(ProviderKind.OPENAI_COMPAT, 0, models=[("qwen3-coder:30b", ""), ("llama3", None)], name="ollama")
    reg = registry(compat)
    assert reg.lookup("qwen3-coder:30b") == (Served(compat, "qwen3-coder:30b", "qwen3-coder:30b"),)
    assert reg.lookup("llama3") == (Served(compat, "llama3", "llama3"),)


@pytest.mark.parametrize("asked", ["qwen3-coder", "QWEN3-Coder", "Qwen3-CODER"])
def test_lookup_is_case_insensitive(asked):
    compat = entry(ProviderKind.OPENAI_COMPAT, 0, models=[("qwen3-coder:30b", "Qwen3-Coder")], name="ollama")
    assert registry(compat).lookup(asked) == (Served(compat, "qwen3-coder:30b", "Qwen3-Coder"),)


def test_lookup_in_config_order_whatever_the_tuple_order():
    compat = entry(ProviderKind.OPENAI_COMPAT, 0, models=[("claude-x", None)], name="relay")
    claude_a = entry(ProviderKind.CLAUDE, 0)
    claude_b = entry(ProviderKind.CLAUDE, 1, models=["claude-x"])
    codex = entry(ProviderKind.CODEX, 0, models=["claude-x"])
    gemini = entry(ProviderKind.GEMINI, 0, models=["claude-x"])
    # The loader might list kinds in any order; the registry orders by kind, then file.
    reg = registry(compat, codex, claude_a, gemini, claude_b)
    assert paths(reg.lookup("claude-x")) == [
        "claude-api-key[0]",
        "claude-api-key[1]",
        "gemini-api-key[0]",
        "codex-api-key[0]",
        "openai-compatibility[0]",
    ]


def test_family_and_explicit_entries_interleave_in_config_order():
    first = entry(ProviderKind.CLAUDE, 0)
    second = entry(ProviderKind.CLAUDE, 1, models=["claude-y"])
    third = entry(ProviderKind.CLAUDE, 2)
    assert paths(registry(first, second, third).lookup("claude-y")) == [
        "claude-api-key[0]",
        "claude-api-key[1]",
        "claude-api-key[2]",
    ]


def test_one_entry_listing_a_visible_name_twice_serves_it_once():
    compat = entry(ProviderKind.OPENAI_COMPAT, 0, models=[("big", "fast"), ("small", "FAST")], name="relay")
    assert registry(compat).lookup("fast") == (Served(compat, "big", "fast"),)


EXCLUDED = [
    # (excluded patterns, model asked, still served?)
    (["claude-opus-4-5"], "claude-opus-4-5", False),
    (["claude-opus-4-5"], "CLAUDE-OPUS-4-5", False),
    (["claude-opus-4-5"], "claude-opus-4-5-20251101", True),
    (["claude-opus-*"], "claude-opus-4-5-20251101", False),
    (["claude-opus-*"], "claude-sonnet-4-5", True),
    (["*-haiku-*"], "claude-3-5-haiku-latest", False),
    (["*thinking"], "claude-x-thinking", False),
    (["claude-*-4-?"], "claude-opus-4-5", True),  # "?" is literal, not a wildcard
    (["claude-[a-z]*"], "claude-opus", True),  # "[" is literal too
    (["*"], "claude-anything", False),
]


@pytest.mark.parametrize("excluded, model, served", EXCLUDED)
def test_excluded_models_on_a_family(excluded, model, served):
    claude = entry(ProviderKind.CLAUDE, 0, excluded=excluded)
    assert registry(claude).serves(model) is served


def test_excluded_matches_visible_and_upstream_names():
    compat = entry(
        ProviderKind.OPENAI_COMPAT,
        0,
        models=[("qwen3-coder:30b", "qwen3-coder"), ("llama3:8b", "llama"), ("phi4", "phi")],
        excluded=["qwen3-coder", "llama3:*"],
        name="ollama",
    )
    reg = registry(compat)
    assert not reg.serves("qwen3-coder")  # excluded by its visible name
    assert not reg.serves("llama")  # excluded by its upstream name
    assert reg.serves("phi")
    assert [m.id for m in reg.visible_models()] == ["phi"]


def test_exclusion_applies_to_its_own_entry_only():
    excluding = entry(ProviderKind.CLAUDE, 0, excluded=["claude-opus-*"])
    other = entry(ProviderKind.CLAUDE, 1)
    assert paths(registry(excluding, other).lookup("claude-opus-4-5")) == ["claude-api-key[1]"]


def test_compile_exclusions_empty_is_none():
    assert compile_exclusions(()) is None


def test_visible_models_order_and_dedup():
    claude = entry(ProviderKind.CLAUDE, 0, models=[("claude-sonnet-4-5-20250929", "sonnet")])
    gemini_family = entry(ProviderKind.GEMINI, 0)
    codex = entry(ProviderKind.CODEX, 0, models=["gpt-5", "Sonnet"])
    compat = entry(ProviderKind.OPENAI_COMPAT, 0, models=[("qwen3-coder:30b", "qwen3-coder"), "gpt-5"], name="ollama")
    reg = registry(compat, codex, gemini_family, claude)
    assert reg.visible_models() == [
        VisibleModel("sonnet", "claude-api-key", Protocol.CLAUDE),
        VisibleModel("gpt-5", "codex-api-key", Protocol.RESPONSES),
        VisibleModel("qwen3-coder", "ollama", Protocol.OPENAI),
    ]


def test_family_entries_list_no_concrete_models():
    reg = registry(CLAUDE, GEMINI, CODEX)
    assert reg.visible_models() == []
    assert [rule.patterns for rule in reg.families] == [
        ("claude-*",),
        ("gemini-*",),
        ("gpt-*", "o<digit>*", "codex-*"),
    ]
    assert not reg.empty


def test_empty_registry():
    reg = registry(COMPAT_EMPTY)
    assert reg.empty
    assert reg.lookup("anything") == ()
    assert reg.visible_models() == []


def test_visible_models_returns_a_copy():
    compat = entry(ProviderKind.OPENAI_COMPAT, 0, models=["m"], name="x")
    reg = registry(compat)
    reg.visible_models().clear()
    assert [m.id for m in reg.visible_models()] == ["m"]
