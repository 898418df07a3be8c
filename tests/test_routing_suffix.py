"""Thinking suffix parsing and formatting (cliproxy.routing.suffix)."""

import pytest

from cliproxy.routing.suffix import (
    LEVELS,
    ThinkingKind,
    ThinkingSuffix,
    parse_value,
    split_suffix,
    with_suffix,
)

VALID = [
    ("claude-sonnet-4-5(8192)", "claude-sonnet-4-5", ThinkingSuffix(ThinkingKind.BUDGET, budget=8192, raw="8192")),
    ("m(0)", "m", ThinkingSuffix(ThinkingKind.BUDGET, budget=0, raw="0")),
    ("m(007)", "m", ThinkingSuffix(ThinkingKind.BUDGET, budget=7, raw="007")),
    ("gpt-5(high)", "gpt-5", ThinkingSuffix(ThinkingKind.LEVEL, level="high", raw="high")),
    ("gpt-5(HIGH)", "gpt-5", ThinkingSuffix(ThinkingKind.LEVEL, level="high", raw="HIGH")),
    ("gpt-5(XHigh)", "gpt-5", ThinkingSuffix(ThinkingKind.LEVEL, level="xhigh", raw="XHigh")),
    ("m(none)", "m", ThinkingSuffix(ThinkingKind.NONE, raw="none")),
    ("m(None)", "m", ThinkingSuffix(ThinkingKind.NONE, raw="None")),
    ("m(auto)", "m", ThinkingSuffix(ThinkingKind.AUTO, raw="auto")),
    ("m(AUTO)", "m", ThinkingSuffix(ThinkingKind.AUTO, raw="AUTO")),
    # Only the trailing group counts; an earlier group stays in the name.
    ("foo(bar)(high)", "foo(bar)", ThinkingSuffix(ThinkingKind.LEVEL, level="high", raw="high")),
    ("qwen3-coder:30b(low)", "qwen3-coder:30b", ThinkingSuffix(ThinkingKind.LEVEL, level="low", raw="low")),
]


@pytest.mark.parametrize("model, base, suffix", VALID)
def test_split_valid_suffix(model, base, suffix):
    assert split_suffix(model) == (base, suffix)


@pytest.mark.parametrize("level", LEVELS)
def test_every_level_parses(level):
    assert split_suffix("m(%s)" % level) == ("m", ThinkingSuffix(ThinkingKind.LEVEL, level=level, raw=level))


NOT_A_SUFFIX = [
    "claude-sonnet-4-5",
    "foo(bar)",
    "m(-1)",
    "m(+5)",
    "m(1.5)",
    "m()",
    "m( high )",
    "m(high) ",
    "m(high)x",
    "(high)",
    "(8192)",
    "m(hi(gh))",
    "m(٣)",  # a non-ASCII digit is not a budget
    "m(ultra)",
    "",
]


@pytest.mark.parametrize("model", NOT_A_SUFFIX)
def test_not_a_suffix_keeps_model_whole(model):
    assert split_suffix(model) == (model, None)


@pytest.mark.parametrize("value", ["", "-1", "bar", "1e3", " 8 "])
def test_parse_value_rejects(value):
    assert parse_value(value) is None


FORMAT = [
    ("m", None, "m"),
    ("m", ThinkingSuffix(ThinkingKind.BUDGET, budget=8192, raw="8192"), "m(8192)"),
    ("m", ThinkingSuffix(ThinkingKind.LEVEL, level="high", raw="HIGH"), "m(HIGH)"),
    # Without raw text the canonical spelling is used.
    ("m", ThinkingSuffix(ThinkingKind.BUDGET, budget=1024), "m(1024)"),
    ("m", ThinkingSuffix(ThinkingKind.LEVEL, level="low"), "m(low)"),
    ("m", ThinkingSuffix(ThinkingKind.NONE), "m(none)"),
    ("m", ThinkingSuffix(ThinkingKind.AUTO), "m(auto)"),
]


@pytest.mark.parametrize("base, suffix, expected", FORMAT)
def test_with_suffix(base, suffix, expected):
    assert with_suffix(base, suffix) == expected


@pytest.mark.parametrize("model, _base, _suffix", VALID)
def test_round_trip_keeps_the_exact_string(model, _base, _suffix):
    assert with_suffix(*split_suffix(model)) == model


@pytest.mark.parametrize(
    "suffix, text",
    [
        (ThinkingSuffix(ThinkingKind.BUDGET, budget=8192), "budget 8192 tokens"),
        (ThinkingSuffix(ThinkingKind.LEVEL, level="max"), "level max"),
        (ThinkingSuffix(ThinkingKind.NONE), "thinking none"),
        (ThinkingSuffix(ThinkingKind.AUTO), "thinking auto"),
    ],
)
def test_describe(suffix, text):
    assert suffix.describe() == text
