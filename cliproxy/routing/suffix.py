"""Thinking suffixes: ``model(value)`` (SPEC §3.2 step 1).

Strategy: a client asks for more or less reasoning by appending ``(value)`` to the model
name: a budget (``claude-sonnet-4-5(8192)``), a level (``gpt-5(high)``), ``(none)`` or
``(auto)``. Only a trailing parenthesised group whose content is one of those is a
suffix; anything else (``foo(bar)``, ``x(-1)``, ``x()``, ``(high)`` with no name before
it) is part of the model name, so an unusual upstream name is never mangled. Parsing is
pure and total: it never raises. Applying the suffix to a request body in each
protocol's native form is ``cliproxy.translate.thinking``'s job, not this module's.
"""

import enum
import re
from dataclasses import dataclass
from typing import Optional, Tuple

LEVELS = ("minimal", "low", "medium", "high", "xhigh", "max")

# ASCII digits only: ``\d`` would also accept other scripts' digits ("٣").
_BUDGET = re.compile(r"[0-9]+\Z")


class ThinkingKind(enum.Enum):
    BUDGET = "budget"  # a token budget, ``budget`` set
    LEVEL = "level"  # one of LEVELS, ``level`` set
    NONE = "none"  # thinking off
    AUTO = "auto"  # let the provider decide (dynamic budget)


@dataclass(frozen=True)
class ThinkingSuffix:
    """A parsed suffix. ``raw`` is the text inside the parentheses as the user wrote it
    (``"HIGH"``); ``level`` is always lowercase."""

    kind: ThinkingKind
    budget: Optional[int] = None
    level: Optional[str] = None
    raw: str = ""

    @property
    def text(self):
        """The text to put inside the parentheses: ``raw`` when known, else the
        canonical spelling of the value."""
        if self.raw:
            return self.raw
        if self.kind is ThinkingKind.BUDGET:
            return str(self.budget)
        if self.kind is ThinkingKind.LEVEL:
            return self.level or ""
        return self.kind.value

    def describe(self):
        """A short human description, e.g. ``"level high"`` or ``"budget 8192"``."""
        if self.kind is ThinkingKind.BUDGET:
            return "budget %d tokens" % self.budget
        if self.kind is ThinkingKind.LEVEL:
            return "level %s" % self.level
        return "thinking %s" % self.kind.value


def parse_value(value: str) -> Optional[ThinkingSuffix]:
    """The suffix for the text inside the parentheses, or ``None`` when it is not one.

    Levels, ``none`` and ``auto`` are matched case-insensitively; a budget is a
    non-negative decimal integer (no sign, no spaces).
    """
    lowered = value.lower()
    if _BUDGET.match(value):
        return ThinkingSuffix(ThinkingKind.BUDGET, budget=int(value), raw=value)
    if lowered in LEVELS:
        return ThinkingSuffix(ThinkingKind.LEVEL, level=lowered, raw=value)
    if lowered == "none":
        return ThinkingSuffix(ThinkingKind.NONE, raw=value)
    if lowered == "auto":
        return ThinkingSuffix(ThinkingKind.AUTO, raw=value)
    return None


def split_suffix(model: str) -> Tuple[str, Optional[ThinkingSuffix]]:
    """Split ``model`` into (base name, suffix).

    Returns ``(model, None)`` unchanged when the name does not end with a valid suffix or
    when nothing would be left of the name. Never raises.
    """
    if not model.endswith(")"):
        return model, None
    start = model.rfind("(")
    if start <= 0:
        return model, None
    suffix = parse_value(model[start + 1 : -1])
    if suffix is None:
        return model, None
    return model[:start], suffix


def with_suffix(base: str, suffix: Optional[ThinkingSuffix]) -> str:
    """``base`` with ``suffix`` appended in parentheses (``base`` alone for ``None``)."""
    if suffix is None:
        return base
    return "%s(%s)" % (base, suffix.text)
