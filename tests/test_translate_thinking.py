"""apply_suffix: every protocol × suffix kind, the level ↔ budget table, stale fields."""

import copy
import itertools

import pytest

from cliproxy.config.model import Protocol
from cliproxy.routing.suffix import LEVELS, parse_value
from cliproxy.translate.thinking import (
    ANTHROPIC_AUTO_BUDGET,
    ANTHROPIC_MIN_BUDGET,
    ANTHROPIC_OUTPUT_ROOM,
    LEVEL_BUDGETS,
    MUTATED_FIELDS,
    apply_suffix,
    budget_level,
    gemini_levels,
    level_budget,
    openai_efforts,
)


def S(value):
    suffix = parse_value(value)
    assert suffix is not None, value
    return suffix


# The table ---------------------------------------------------------------------------


def test_table_covers_every_level_in_increasing_order():
    assert tuple(level for level, _ in LEVEL_BUDGETS) == LEVELS
    budgets = [tokens for _, tokens in LEVEL_BUDGETS]
    assert budgets == sorted(budgets)
    assert level_budget("max") + ANTHROPIC_OUTPUT_ROOM <= 64000


@pytest.mark.parametrize("level", LEVELS)
def test_level_budget_round_trips(level):
    assert budget_level(level_budget(level)) == level


@pytest.mark.parametrize(
    "budget, level",
    [
        (0, "minimal"),
        (511, "minimal"),
        (512, "minimal"),
        (1023, "minimal"),
        (1024, "low"),
        (8191, "low"),
        (8192, "medium"),
        (24575, "medium"),
        (24576, "high"),
        (32767, "high"),
        (32768, "xhigh"),
        (57344, "max"),
        (10**6, "max"),
    ],
)
def test_budget_level_is_the_highest_level_reached(budget, level):
    assert budget_level(budget) == level


def test_level_budget_rejects_unknown_levels():
    with pytest.raises(KeyError):
        level_budget("extreme")


@pytest.mark.parametrize("protocol", list(Protocol))
def test_no_suffix_leaves_the_body_alone(protocol):
    body = {"model": "m", "thinking": {"type": "adaptive"}, "reasoning_effort": "low"}
    before = copy.deepcopy(body)
    assert apply_suffix(protocol, body, None, "m") is body
    assert body == before


# Anthropic ---------------------------------------------------------------------------


def _enabled(budget):
    return {"type": "enabled", "budget_tokens": budget}


@pytest.mark.parametrize(
    "suffix, thinking, max_tokens",
    [
        ("8192", _enabled(8192), 32000),
        ("100", _enabled(ANTHROPIC_MIN_BUDGET), 32000),
        ("40000", _enabled(40000), 40000 + ANTHROPIC_OUTPUT_ROOM),
        ("32000", _enabled(32000), 32000 + ANTHROPIC_OUTPUT_ROOM),
        ("0", {"type": "disabled"}, 32000),
        ("minimal", _enabled(1024), 32000),
        ("low", _enabled(1024), 32000),
        ("medium", _enabled(8192), 32000),
        ("high", _enabled(24576), 32000),
        ("xhigh", _enabled(32768), 32768 + ANTHROPIC_OUTPUT_ROOM),
        ("max", _enabled(57344), 57344 + ANTHROPIC_OUTPUT_ROOM),
        ("none", {"type": "disabled"}, 32000),
        ("auto", _enabled(ANTHROPIC_AUTO_BUDGET), 32000),
    ],
)
def test_anthropic(suffix, thinking, max_tokens):
    body = {"model": "claude-sonnet-4-5", "max_tokens": 32000, "messages": []}
    apply_suffix(Protocol.CLAUDE, body, S(suffix), "claude-sonnet-4-5")
    assert body == {
        "model": "claude-sonnet-4-5",
        "max_tokens": max_tokens,
        "messages": [],
        "thinking": thinking,
    }


def test_anthropic_sets_max_tokens_when_missing_or_invalid():
    for max_tokens in (None, "big", True):
        body = {} if max_tokens is None else {"max_tokens": max_tokens}
        apply_suffix(Protocol.CLAUDE, body, S("high"), "claude-opus-4-1")
        assert body["max_tokens"] == 24576 + ANTHROPIC_OUTPUT_ROOM


def test_anthropic_replaces_stale_thinking_settings():
    body = {
        "max_tokens": 64000,
        "thinking": {"type": "enabled", "budget_tokens": 2000, "display": "omitted"},
    }
    apply_suffix(Protocol.CLAUDE, body, S("16000"), "claude-sonnet-4-5")
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 16000, "display": "omitted"}
    apply_suffix(Protocol.CLAUDE, body, S("none"), "claude-sonnet-4-5")
    assert body["thinking"] == {"type": "disabled"}
    body = {"max_tokens": 64000, "thinking": {"type": "adaptive"}}
    apply_suffix(Protocol.CLAUDE, body, S("low"), "claude-sonnet-4-5")
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    body = {"max_tokens": 64000, "thinking": "garbage"}
    apply_suffix(Protocol.CLAUDE, body, S("auto"), "claude-sonnet-4-5")
    assert body["thinking"] == _enabled(ANTHROPIC_AUTO_BUDGET)


# Gemini ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, levels",
    [
        ("gemini-2.5-pro", None),
        ("gemini-2.5-flash", None),
        ("gemini-exp-1206", None),
        ("gemini-3-pro-preview", ("low", "high")),
        ("models/gemini-3-pro-preview", ("low", "high")),
        ("gemini-3.1-pro-preview", ("low", "medium", "high")),
        ("gemini-3-flash-preview", ("minimal", "low", "medium", "high")),
        ("GEMINI-3-FLASH", ("minimal", "low", "medium", "high")),
    ],
)
def test_gemini_levels(model, levels):
    assert gemini_levels(model) == levels


GEMINI_CASES = [
    # Gemini 2.5 Flash: budgets 0..24576, 0 disables.
    ("gemini-2.5-flash", "8192", {"thinkingBudget": 8192}),
    ("gemini-2.5-flash", "30000", {"thinkingBudget": 24576}),
    ("gemini-2.5-flash", "0", {"thinkingBudget": 0}),
    ("gemini-2.5-flash", "minimal", {"thinkingBudget": 512}),
    ("gemini-2.5-flash", "low", {"thinkingBudget": 1024}),
    ("gemini-2.5-flash", "medium", {"thinkingBudget": 8192}),
    ("gemini-2.5-flash", "high", {"thinkingBudget": 24576}),
    ("gemini-2.5-flash", "xhigh", {"thinkingBudget": 24576}),
    ("gemini-2.5-flash", "max", {"thinkingBudget": 24576}),
    ("gemini-2.5-flash", "none", {"thinkingBudget": 0}),
    ("gemini-2.5-flash", "auto", {"thinkingBudget": -1}),
    # Gemini 2.5 Pro: 128..32768, cannot be disabled.
    ("gemini-2.5-pro", "50", {"thinkingBudget": 128}),
    ("gemini-2.5-pro", "max", {"thinkingBudget": 32768}),
    ("gemini-2.5-pro", "none", {"thinkingBudget": 128}),
    ("gemini-2.5-pro", "0", {"thinkingBudget": 128}),
    ("gemini-2.5-pro", "auto", {"thinkingBudget": -1}),
    # Gemini 2.5 Flash-Lite: 0 or 512..24576.
    ("gemini-2.5-flash-lite", "100", {"thinkingBudget": 512}),
    ("gemini-2.5-flash-lite", "none", {"thinkingBudget": 0}),
    # Gemini 3 Pro: levels low/high, cannot be disabled.
    ("gemini-3-pro-preview", "minimal", {"thinkingLevel": "low"}),
    ("gemini-3-pro-preview", "low", {"thinkingLevel": "low"}),
    ("gemini-3-pro-preview", "medium", {"thinkingLevel": "high"}),
    ("gemini-3-pro-preview", "high", {"thinkingLevel": "high"}),
    ("gemini-3-pro-preview", "xhigh", {"thinkingLevel": "high"}),
    ("gemini-3-pro-preview", "max", {"thinkingLevel": "high"}),
    ("gemini-3-pro-preview", "none", {"thinkingLevel": "low"}),
    ("gemini-3-pro-preview", "auto", {"thinkingBudget": -1}),
    ("gemini-3-pro-preview", "8192", {"thinkingBudget": 8192}),
    # Gemini 3.1 Pro: low/medium/high.
    ("gemini-3.1-pro-preview", "minimal", {"thinkingLevel": "low"}),
    ("gemini-3.1-pro-preview", "medium", {"thinkingLevel": "medium"}),
    ("gemini-3.1-pro-preview", "none", {"thinkingLevel": "low"}),
    # Gemini 3 Flash: all four levels.
    ("gemini-3-flash-preview", "minimal", {"thinkingLevel": "minimal"}),
    ("gemini-3-flash-preview", "medium", {"thinkingLevel": "medium"}),
    ("gemini-3-flash-preview", "max", {"thinkingLevel": "high"}),
    ("gemini-3-flash-preview", "none", {"thinkingLevel": "minimal"}),
    # Unknown models: budgets as given.
    ("gemini-exp-1206", "100000", {"thinkingBudget": 100000}),
    ("gemini-exp-1206", "high", {"thinkingBudget": 24576}),
    ("gemini-exp-1206", "none", {"thinkingBudget": 0}),
]


@pytest.mark.parametrize("model, suffix, setting", GEMINI_CASES)
def test_gemini(model, suffix, setting):
    body = {
        "contents": [],
        "generationConfig": {"temperature": 0.2, "thinkingConfig": {"includeThoughts": True}},
    }
    apply_suffix(Protocol.GEMINI, body, S(suffix), model)
    expected = dict({"includeThoughts": True}, **setting)
    assert body == {
        "contents": [],
        "generationConfig": {"temperature": 0.2, "thinkingConfig": expected},
    }


def test_gemini_creates_the_config_objects():
    body = {"contents": []}
    apply_suffix(Protocol.GEMINI, body, S("4096"), "gemini-2.5-flash")
    assert body == {
        "contents": [],
        "generationConfig": {"thinkingConfig": {"thinkingBudget": 4096}},
    }
    body = {"generationConfig": "junk"}
    apply_suffix(Protocol.GEMINI, body, S("low"), "gemini-3-flash")
    assert body == {"generationConfig": {"thinkingConfig": {"thinkingLevel": "low"}}}


@pytest.mark.parametrize(
    "model, suffix, stale, expected",
    [
        ("gemini-2.5-pro", "4096", {"thinkingLevel": "high"}, {"thinkingBudget": 4096}),
        ("gemini-3-pro-preview", "high", {"thinkingBudget": 128}, {"thinkingLevel": "high"}),
        ("gemini-3-pro-preview", "auto", {"thinkingLevel": "low"}, {"thinkingBudget": -1}),
        (
            "gemini-3-pro-preview",
            "low",
            {"thinking_budget": 1, "thinking_level": "high", "thinkingBudget": 2},
            {"thinkingLevel": "low"},
        ),
    ],
)
def test_gemini_removes_the_stale_form(model, suffix, stale, expected):
    body = {"generationConfig": {"thinkingConfig": dict(stale)}}
    apply_suffix(Protocol.GEMINI, body, S(suffix), model)
    assert body["generationConfig"]["thinkingConfig"] == expected


def test_gemini_writes_into_the_clients_snake_case_objects():
    body = {
        "generation_config": {
            "thinking_config": {"thinking_level": "high", "include_thoughts": True}
        }
    }
    apply_suffix(Protocol.GEMINI, body, S("2048"), "gemini-2.5-flash")
    assert body == {
        "generation_config": {"thinking_config": {"include_thoughts": True, "thinkingBudget": 2048}}
    }


# OpenAI ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, efforts",
    [
        ("gpt-5", ("minimal", "low", "medium", "high")),
        ("gpt-5-mini", ("minimal", "low", "medium", "high")),
        ("gpt-5-codex", ("minimal", "low", "medium", "high")),
        ("gpt-5-pro", ("high",)),
        ("gpt-5.1", ("none", "low", "medium", "high")),
        ("gpt-5.1-codex", ("none", "low", "medium", "high")),
        ("gpt-5.1-codex-max", ("none", "low", "medium", "high", "xhigh")),
        ("gpt-5.2", ("none", "low", "medium", "high", "xhigh")),
        ("o3", ("low", "medium", "high")),
        ("o4-mini", ("low", "medium", "high")),
        ("qwen3-coder", ("none", "minimal", "low", "medium", "high")),
        ("gpt-4.1", ("none", "minimal", "low", "medium", "high")),
    ],
)
def test_openai_efforts(model, efforts):
    assert openai_efforts(model) == efforts


OPENAI_CASES = [
    ("gpt-5", "minimal", "minimal"),
    ("gpt-5", "low", "low"),
    ("gpt-5", "medium", "medium"),
    ("gpt-5", "high", "high"),
    ("gpt-5", "xhigh", "high"),
    ("gpt-5", "max", "high"),
    ("gpt-5", "none", "minimal"),
    ("gpt-5", "0", "minimal"),
    ("gpt-5", "auto", None),
    ("gpt-5", "100", "minimal"),
    ("gpt-5", "2000", "low"),
    ("gpt-5", "8192", "medium"),
    ("gpt-5", "30000", "high"),
    ("gpt-5.1", "none", "none"),
    ("gpt-5.1", "minimal", "low"),
    ("gpt-5.1", "xhigh", "high"),
    ("gpt-5.2", "xhigh", "xhigh"),
    ("gpt-5.2", "max", "xhigh"),
    ("gpt-5.2", "100000", "xhigh"),
    ("gpt-5.1-codex-max", "max", "xhigh"),
    ("gpt-5-pro", "low", "high"),
    ("o3", "none", "low"),
    ("o3", "minimal", "low"),
    ("o3", "high", "high"),
    ("qwen3-coder", "none", "none"),
    ("qwen3-coder", "minimal", "minimal"),
    ("qwen3-coder", "max", "high"),
    ("qwen3-coder", "auto", None),
]


@pytest.mark.parametrize("model, suffix, effort", OPENAI_CASES)
def test_openai_chat(model, suffix, effort):
    body = {
        "model": model,
        "messages": [],
        "reasoning_effort": "medium",
        "reasoning": {"effort": "low"},
    }
    apply_suffix(Protocol.OPENAI, body, S(suffix), model)
    expected = {"model": model, "messages": []}
    if effort is not None:
        expected["reasoning_effort"] = effort
    assert body == expected


@pytest.mark.parametrize("model, suffix, effort", OPENAI_CASES)
def test_openai_responses(model, suffix, effort):
    body = {
        "model": model,
        "input": "hi",
        "reasoning_effort": "medium",
        "reasoning": {"effort": "low", "summary": "auto"},
    }
    apply_suffix(Protocol.RESPONSES, body, S(suffix), model)
    reasoning = {"summary": "auto"}
    if effort is not None:
        reasoning["effort"] = effort
    assert body == {"model": model, "input": "hi", "reasoning": reasoning}


def test_openai_responses_drops_an_emptied_reasoning_object_and_replaces_junk():
    body = {"input": "hi", "reasoning": {"effort": "high"}}
    apply_suffix(Protocol.RESPONSES, body, S("auto"), "gpt-5")
    assert body == {"input": "hi"}
    body = {"input": "hi", "reasoning": "junk"}
    apply_suffix(Protocol.RESPONSES, body, S("low"), "gpt-5")
    assert body == {"input": "hi", "reasoning": {"effort": "low"}}


# Every protocol × every suffix kind: one form only, always valid -------------------------

SUFFIXES = [
    "0",
    "1",
    "600",
    "1024",
    "5000",
    "8192",
    "24576",
    "40000",
    "200000",
    "none",
    "auto",
] + list(LEVELS)
MODELS = {
    Protocol.CLAUDE: ["claude-sonnet-4-5", "claude-opus-4-1"],
    Protocol.GEMINI: [
        "gemini-2.5-pro",
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "gemini-3-pro-preview",
        "gemini-3-flash-preview",
        "gemini-exp",
    ],
    Protocol.OPENAI: ["gpt-5", "gpt-5.1", "gpt-5.2", "o3", "qwen3-coder"],
    Protocol.RESPONSES: ["gpt-5", "gpt-5.1", "gpt-5.2", "o4-mini", "gpt-5-pro"],
}
COMBINATIONS = [
    (protocol, model, suffix)
    for protocol, models in MODELS.items()
    for model, suffix in itertools.product(models, SUFFIXES)
]


def _stale_body():
    return {
        "max_tokens": 2000,
        "thinking": {"type": "enabled", "budget_tokens": 1500},
        "reasoning_effort": "low",
        "reasoning": {"effort": "high"},
        "generationConfig": {"thinkingConfig": {"thinkingBudget": 10, "thinkingLevel": "low"}},
    }


@pytest.mark.parametrize("protocol, model, suffix", COMBINATIONS)
def test_every_combination_leaves_exactly_one_valid_native_form(protocol, model, suffix):
    body = apply_suffix(protocol, _stale_body(), S(suffix), model)
    if protocol is Protocol.CLAUDE:
        thinking = body["thinking"]
        if thinking["type"] == "disabled":
            assert suffix in ("0", "none") and thinking == {"type": "disabled"}
        else:
            assert thinking["type"] == "enabled"
            assert thinking["budget_tokens"] >= ANTHROPIC_MIN_BUDGET
            assert body["max_tokens"] > thinking["budget_tokens"]
    elif protocol is Protocol.GEMINI:
        config = body["generationConfig"]["thinkingConfig"]
        assert len(config) == 1
        ((key, value),) = config.items()
        levels = gemini_levels(model)
        if key == "thinkingLevel":
            assert levels is not None and value in levels
        else:
            assert key == "thinkingBudget" and isinstance(value, int)
            assert value >= -1
    elif protocol is Protocol.OPENAI:
        assert "reasoning" not in body
        if suffix == "auto":
            assert "reasoning_effort" not in body
        else:
            assert body["reasoning_effort"] in openai_efforts(model)
    else:
        assert "reasoning_effort" not in body
        if suffix == "auto":
            assert "reasoning" not in body
        else:
            assert body["reasoning"] == {"effort": body["reasoning"]["effort"]}
            assert body["reasoning"]["effort"] in openai_efforts(model)


@pytest.mark.parametrize("protocol, model, suffix", COMBINATIONS[::7])
def test_only_mutated_fields_are_changed_in_place(protocol, model, suffix):
    original = _stale_body()
    original["generation_config"] = {"thinking_config": {"thinking_level": "high"}}
    snapshot = copy.deepcopy(original)
    attempt = dict(original)
    for name in MUTATED_FIELDS:
        attempt[name] = copy.deepcopy(attempt[name])
    apply_suffix(protocol, attempt, S(suffix), model)
    assert original == snapshot
