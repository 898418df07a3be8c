"""Applying a thinking suffix to a provider request in its native form (SPEC §3.2 step 3).

Strategy: one table (``LEVEL_BUDGETS``) converts levels to token budgets and budgets back
to levels; each protocol then writes its own field and removes every stale field of the
other form, so a provider never receives two conflicting settings:

- Anthropic writes ``thinking`` (and raises ``max_tokens``), replacing the previous
  ``thinking`` settings;
- Gemini writes ``generationConfig.thinkingConfig.thinkingBudget`` or ``thinkingLevel``
  and removes the other one (camelCase and snake_case spellings);
- OpenAI Chat writes ``reasoning_effort`` and removes ``reasoning`` (the Responses form);
- Responses writes ``reasoning.effort`` (other ``reasoning`` keys kept) and removes
  ``reasoning_effort`` (the Chat form).

Per suffix kind (a budget of 0 counts as ``none``):

- Anthropic: budget → ``{"type":"enabled","budget_tokens":N}`` with N raised to the API's
  minimum of 1024, and ``max_tokens`` raised to N + ``ANTHROPIC_OUTPUT_ROOM`` when it does
  not exceed N (the API requires ``budget_tokens < max_tokens``); level → its budget;
  none → ``{"type":"disabled"}``; auto → enabled with ``ANTHROPIC_AUTO_BUDGET`` (the
  budgeted Messages API has no dynamic mode every model accepts).
- Gemini: budget → ``thinkingBudget`` N, clamped to the model's documented range for the
  Gemini 2.5 family; level → ``thinkingLevel`` for models that take levels (Gemini 3 and
  later, nearest level the model supports), else the level's budget; none →
  ``thinkingBudget`` 0, or the model's minimum where thinking cannot be turned off
  (2.5 Pro: 128; Gemini 3: its lowest level); auto → ``thinkingBudget`` -1 (dynamic).
- OpenAI (both APIs): level → effort of the same name (``max`` → ``xhigh``); budget → the
  table's level; none → ``none``; auto → the effort field is removed (the model's own
  default). The effort is then moved to the nearest one the model accepts
  (``openai_efforts``: gpt-5 takes ``minimal`` but not ``none``, gpt-5.1 and later
  ``none`` but not ``minimal``, ``xhigh`` from gpt-5.2 and on gpt-5.1-codex-max, the
  o-series only low/medium/high; ties go to the higher effort).
"""

import re
from typing import Dict, Optional, Sequence, Tuple

from cliproxy.config.model import Protocol
from cliproxy.routing.suffix import ThinkingKind, ThinkingSuffix

__all__ = [
    "ANTHROPIC_AUTO_BUDGET",
    "ANTHROPIC_MIN_BUDGET",
    "ANTHROPIC_OUTPUT_ROOM",
    "LEVEL_BUDGETS",
    "MUTATED_FIELDS",
    "OPENAI_EFFORTS",
    "apply_suffix",
    "budget_level",
    "gemini_levels",
    "level_budget",
    "openai_efforts",
]

# Top-level request fields holding objects that apply_suffix may change in place (a caller
# that reuses the body for another attempt copies these first).
MUTATED_FIELDS = ("thinking", "generationConfig", "generation_config", "reasoning")

# The one level ↔ budget table, in increasing order (tokens). ``max`` stays below the
# 64K output limit of current Claude models once ANTHROPIC_OUTPUT_ROOM is added.
LEVEL_BUDGETS = (
    ("minimal", 512),
    ("low", 1024),
    ("medium", 8192),
    ("high", 24576),
    ("xhigh", 32768),
    ("max", 57344),
)
_BUDGET_OF = dict(LEVEL_BUDGETS)

# Anthropic: budget_tokens must be >= 1024 and < max_tokens.
ANTHROPIC_MIN_BUDGET = 1024
ANTHROPIC_OUTPUT_ROOM = 4096
ANTHROPIC_AUTO_BUDGET = _BUDGET_OF["medium"]

# OpenAI reasoning efforts, lowest first.
OPENAI_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
_OPENAI_GENERIC = ("none", "minimal", "low", "medium", "high")

# Gemini thinkingLevel values, lowest first.
_GEMINI_LEVELS = ("minimal", "low", "medium", "high")

# Gemini 2.5 thinkingBudget ranges: (model prefix, minimum, maximum, can disable with 0).
# Longer prefixes first: "gemini-2.5-flash-lite" before "gemini-2.5-flash".
_GEMINI_BUDGET_RANGES = (
    ("gemini-2.5-flash-lite", 512, 24576, True),
    ("gemini-2.5-flash", 1, 24576, True),
    ("gemini-2.5-pro", 128, 32768, False),
)

_GPT_VERSION = re.compile(r"gpt-(\d+)(?:\.(\d+))?")
_O_SERIES = re.compile(r"o\d")
_GEMINI_VERSION = re.compile(r"gemini-(\d+)(?:\.(\d+))?")


def level_budget(level: str) -> int:
    """The token budget of ``level`` (one of ``suffix.LEVELS``); raises ``KeyError``
    otherwise."""
    return _BUDGET_OF[level]


def budget_level(budget: int) -> str:
    """The highest level whose budget ``budget`` reaches (``minimal`` below them all)."""
    chosen = LEVEL_BUDGETS[0][0]
    for level, tokens in LEVEL_BUDGETS:
        if budget >= tokens:
            chosen = level
    return chosen


def apply_suffix(
    protocol: Protocol, body: dict, suffix: Optional[ThinkingSuffix], model: str
) -> dict:
    """Write ``suffix`` into ``body`` (a request of ``protocol`` for upstream ``model``,
    suffix already stripped) in the protocol's native form, in place; returns ``body``.
    ``None`` leaves the body unchanged. Never raises on odd bodies: a non-object where a
    settings object belongs is replaced."""
    if suffix is None:
        return body
    kind, budget, level = _normalize(suffix)
    _APPLIERS[protocol](body, kind, budget, level, model)
    return body


def _normalize(suffix: ThinkingSuffix) -> Tuple[ThinkingKind, Optional[int], Optional[str]]:
    if suffix.kind is ThinkingKind.BUDGET and not suffix.budget:
        return ThinkingKind.NONE, None, None
    return suffix.kind, suffix.budget, suffix.level


def _bare(model: str) -> str:
    """``models/gemini-2.5-pro`` or a Vertex path → ``gemini-2.5-pro``, lowercase."""
    return model.rsplit("/", 1)[-1].lower()


def _nearest(wanted: str, scale: Sequence[str], supported: Sequence[str]) -> str:
    """The supported value closest to ``wanted`` on ``scale``; ties go to the higher."""
    rank = scale.index(wanted)
    return min(supported, key=lambda v: (abs(scale.index(v) - rank), -scale.index(v)))


# Anthropic ---------------------------------------------------------------------------


def _apply_anthropic(body, kind, budget, level, model) -> None:
    previous = body.get("thinking")
    if kind is ThinkingKind.NONE:
        body["thinking"] = {"type": "disabled"}
        return
    if kind is ThinkingKind.AUTO:
        budget = ANTHROPIC_AUTO_BUDGET
    elif kind is ThinkingKind.LEVEL:
        budget = level_budget(level)
    budget = max(budget, ANTHROPIC_MIN_BUDGET)
    thinking = {}
    if isinstance(previous, dict):
        # Keep settings that apply to enabled thinking (e.g. "display").
        thinking = {k: v for k, v in previous.items() if k not in ("type", "budget_tokens")}
    thinking["type"] = "enabled"
    thinking["budget_tokens"] = budget
    body["thinking"] = thinking
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens <= budget:
        body["max_tokens"] = budget + ANTHROPIC_OUTPUT_ROOM


# Gemini ------------------------------------------------------------------------------


def gemini_levels(model: str) -> Optional[Tuple[str, ...]]:
    """The ``thinkingLevel`` values ``model`` accepts, lowest first, or ``None`` for a
    model configured by budget (Gemini 2.5 and unknown models). Gemini 3 Pro: low/high;
    later Pro models: low/medium/high; other Gemini 3+ models: all four levels."""
    name = _bare(model)
    match = _GEMINI_VERSION.match(name)
    if match is None or int(match.group(1)) < 3:
        return None
    if "-pro" in name:
        if int(match.group(1)) == 3 and not match.group(2):
            return ("low", "high")
        return ("low", "medium", "high")
    return _GEMINI_LEVELS


def _gemini_budget_range(model: str) -> Optional[Tuple[int, int, bool]]:
    name = _bare(model)
    for prefix, low, high, can_disable in _GEMINI_BUDGET_RANGES:
        if name.startswith(prefix):
            return low, high, can_disable
    return None


def _gemini_budget(model: str, budget: int) -> int:
    limits = _gemini_budget_range(model)
    if limits is None:
        return budget
    low, high, _ = limits
    return min(max(budget, low), high)


def _gemini_off(model: str) -> Dict[str, object]:
    levels = gemini_levels(model)
    if levels is not None:
        return {"thinkingLevel": levels[0]}
    limits = _gemini_budget_range(model)
    if limits is not None and not limits[2]:
        return {"thinkingBudget": limits[0]}
    return {"thinkingBudget": 0}


def _gemini_setting(kind, budget, level, model) -> Dict[str, object]:
    if kind is ThinkingKind.NONE:
        return _gemini_off(model)
    if kind is ThinkingKind.AUTO:
        return {"thinkingBudget": -1}
    if kind is ThinkingKind.BUDGET:
        return {"thinkingBudget": _gemini_budget(model, budget)}
    levels = gemini_levels(model)
    if levels is None:
        return {"thinkingBudget": _gemini_budget(model, level_budget(level))}
    wanted = level if level in _GEMINI_LEVELS else "high"
    return {"thinkingLevel": _nearest(wanted, _GEMINI_LEVELS, levels)}


def _child(parent: dict, camel: str, snake: str) -> dict:
    """The settings object under ``camel`` (or the client's ``snake`` spelling), created
    or replaced when missing or not an object."""
    key = snake if camel not in parent and snake in parent else camel
    value = parent.get(key)
    if not isinstance(value, dict):
        value = parent[key] = {}
    return value


def _apply_gemini(body, kind, budget, level, model) -> None:
    generation = _child(body, "generationConfig", "generation_config")
    config = _child(generation, "thinkingConfig", "thinking_config")
    for stale in ("thinkingBudget", "thinking_budget", "thinkingLevel", "thinking_level"):
        config.pop(stale, None)
    config.update(_gemini_setting(kind, budget, level, model))


# OpenAI ------------------------------------------------------------------------------


def openai_efforts(model: str) -> Tuple[str, ...]:
    """The reasoning efforts ``model`` accepts, lowest first (OpenAI's reasoning guide):
    gpt-5.1+ none/low/medium/high (+ xhigh from gpt-5.2 and on gpt-5.1-codex-max),
    gpt-5 minimal/low/medium/high (gpt-5-pro only high), o-series low/medium/high, and
    any other model (OpenAI-compatible providers) none/minimal/low/medium/high."""
    name = _bare(model)
    match = _GPT_VERSION.match(name)
    if match is not None and int(match.group(1)) >= 5:
        version = (int(match.group(1)), int(match.group(2) or 0))
        if version >= (5, 1):
            if version >= (5, 2) or "codex-max" in name:
                return ("none", "low", "medium", "high", "xhigh")
            return ("none", "low", "medium", "high")
        if name.startswith("gpt-5-pro"):
            return ("high",)
        return ("minimal", "low", "medium", "high")
    if _O_SERIES.match(name):
        return ("low", "medium", "high")
    return _OPENAI_GENERIC


def _openai_effort(kind, budget, level, model) -> Optional[str]:
    """The effort to send, or ``None`` to leave the choice to the model."""
    if kind is ThinkingKind.AUTO:
        return None
    if kind is ThinkingKind.NONE:
        wanted = "none"
    else:
        wanted = level if kind is ThinkingKind.LEVEL else budget_level(budget)
        if wanted == "max":
            wanted = "xhigh"
    return _nearest(wanted, OPENAI_EFFORTS, openai_efforts(model))


def _apply_chat(body, kind, budget, level, model) -> None:
    body.pop("reasoning", None)
    effort = _openai_effort(kind, budget, level, model)
    if effort is None:
        body.pop("reasoning_effort", None)
    else:
        body["reasoning_effort"] = effort


def _apply_responses(body, kind, budget, level, model) -> None:
    body.pop("reasoning_effort", None)
    reasoning = body.get("reasoning")
    if not isinstance(reasoning, dict):
        reasoning = {}
    effort = _openai_effort(kind, budget, level, model)
    if effort is None:
        reasoning.pop("effort", None)
    else:
        reasoning["effort"] = effort
    if reasoning:
        body["reasoning"] = reasoning
    else:
        body.pop("reasoning", None)


_APPLIERS = {
    Protocol.CLAUDE: _apply_anthropic,
    Protocol.GEMINI: _apply_gemini,
    Protocol.OPENAI: _apply_chat,
    Protocol.RESPONSES: _apply_responses,
}
