"""Which provider entries serve which client-visible model (SPEC §2).

Strategy: built once from a config snapshot and never changed afterwards; a reload builds a
new registry and swaps it in with the rest of the snapshot. Two structures answer
``lookup``:

- a dict from the lowercase visible name of every explicitly listed model (its alias, or
  its name) to the entries serving it, for entries that have a ``models`` list;
- a short list of family rules for entries without one: ``claude-api-key`` serves
  ``claude-*``, ``gemini-api-key`` ``gemini-*``, ``codex-api-key`` ``gpt-*``,
  ``o<digit>*`` and ``codex-*``. An ``openai-compatibility`` entry without models serves
  nothing.

``excluded-models`` patterns (exact names or ``*`` wildcards, case-insensitive) remove a
model from one entry; for listed models both the visible and the upstream name are
checked, at build time; for families, at lookup time. Results come in config order:
kinds in the order claude, gemini, codex, openai-compatibility, entries in file order.
"""

import re
import types
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Pattern, Tuple

from cliproxy.config.model import Config, ProviderEntry, ProviderKind, Protocol

KIND_ORDER = (
    ProviderKind.CLAUDE,
    ProviderKind.GEMINI,
    ProviderKind.CODEX,
    ProviderKind.OPENAI_COMPAT,
)

# Default families, as (display patterns, matcher). ``o<digit>*`` is why these are
# regexes and not ``*`` globs: o1, o3-mini and o4-mini are codex models, "omni-x" is not.
_FAMILIES = {
    ProviderKind.CLAUDE: (("claude-*",), re.compile(r"claude-.*", re.IGNORECASE | re.DOTALL)),
    ProviderKind.GEMINI: (("gemini-*",), re.compile(r"gemini-.*", re.IGNORECASE | re.DOTALL)),
    ProviderKind.CODEX: (
        ("gpt-*", "o<digit>*", "codex-*"),
        re.compile(r"(?:gpt-|o[0-9]|codex-).*", re.IGNORECASE | re.DOTALL),
    ),
}


@dataclass(frozen=True)
class Served:
    """One credential able to serve a model: send ``upstream_model`` to ``entry``.
    ``visible`` is the name the client asked for (suffix stripped)."""

    entry: ProviderEntry
    upstream_model: str
    visible: str


@dataclass(frozen=True)
class VisibleModel:
    """A concrete model for the model-list endpoints."""

    id: str
    owned_by: str  # the provider entry's name
    protocol: Protocol  # the native protocol of the first entry serving it


@dataclass(frozen=True)
class FamilyRule:
    """An entry without a ``models`` list and the family of names it serves."""

    order: int  # the entry's position in config order
    entry: ProviderEntry
    patterns: Tuple[str, ...]  # for display: ("claude-*",)
    matcher: Pattern
    excluded: Optional[Pattern]

    def serves(self, base: str) -> bool:
        if not self.matcher.fullmatch(base):
            return False
        return self.excluded is None or not self.excluded.fullmatch(base)


def compile_exclusions(patterns: Tuple[str, ...]) -> Optional[Pattern]:
    """One case-insensitive full-match regex for ``excluded-models`` entries, or ``None``
    when there are none. Only ``*`` is special (any run of characters, also empty);
    ``?``, ``[`` and every other character match themselves."""
    if not patterns:
        return None
    alternatives = (".*".join(re.escape(part) for part in p.split("*")) for p in patterns)
    return re.compile("|".join("(?:%s)" % alt for alt in alternatives), re.IGNORECASE | re.DOTALL)


def ordered_entries(config: Config) -> List[ProviderEntry]:
    """The provider entries in config order (kinds in ``KIND_ORDER``, file order within a
    kind), whatever order the loader put the kinds in."""
    rank = {kind: i for i, kind in enumerate(KIND_ORDER)}
    return sorted(config.providers, key=lambda entry: rank[entry.kind])


class ModelRegistry:
    """The read-only table of served models for one config snapshot."""

    __slots__ = ("_explicit", "_families", "_visible")

    def __init__(self, explicit, families, visible):
        """Use ``from_config``. ``explicit``: lowercase visible name → tuple of
        (order, Served); ``families``: tuple of FamilyRule; ``visible``: tuple of
        VisibleModel."""
        self._explicit = explicit  # type: Mapping[str, Tuple[Tuple[int, Served], ...]]
        self._families = families  # type: Tuple[FamilyRule, ...]
        self._visible = visible  # type: Tuple[VisibleModel, ...]

    @classmethod
    def from_config(cls, config: Config) -> "ModelRegistry":
        """Build the registry for ``config``. Never raises for a valid ``Config``."""
        explicit = {}  # type: Dict[str, List[Tuple[int, Served]]]
        families = []  # type: List[FamilyRule]
        visible = []  # type: List[VisibleModel]
        for order, entry in enumerate(ordered_entries(config)):
            excluded = compile_exclusions(entry.excluded_models)
            if not entry.models:
                family = _FAMILIES.get(entry.kind)
                if family is not None:
                    families.append(FamilyRule(order, entry, family[0], family[1], excluded))
                continue
            for model in entry.models:
                if _is_excluded(excluded, model.visible) or _is_excluded(excluded, model.name):
                    continue
                key = model.visible.lower()
                served = explicit.setdefault(key, [])
                # One entry listing the same visible name twice serves it once, with the
                # first upstream name: a credential is one slot in the rotation.
                if any(existing.entry is entry for _, existing in served):
                    continue
                if not served:
                    visible.append(VisibleModel(model.visible, entry.name, entry.protocol))
                served.append((order, Served(entry, model.name, model.visible)))
        frozen = types.MappingProxyType({key: tuple(value) for key, value in explicit.items()})
        return cls(frozen, tuple(families), tuple(visible))

    def lookup(self, model: str) -> Tuple[Served, ...]:
        """Every credential serving ``model`` (case-insensitive), in config order; empty
        when none does.

        ``model`` is a base name: the caller strips the thinking suffix first
        (``suffix.split_suffix``), so that a name is never stripped twice. For a family
        match the upstream model and the visible name are ``model`` itself, spelled as
        the client spelled it.
        """
        hits = list(self._explicit.get(model.lower(), ()))
        for rule in self._families:
            if rule.serves(model):
                hits.append((rule.order, Served(rule.entry, model, model)))
        if len(hits) > 1:
            hits.sort(key=lambda hit: hit[0])
        return tuple(served for _, served in hits)

    def serves(self, model: str) -> bool:
        """True when at least one credential serves ``model`` (a base name)."""
        return bool(self.lookup(model))

    def visible_models(self) -> List[VisibleModel]:
        """Each explicitly listed model once (the first entry listing it names the owner
        and protocol), in config order.

        Entries without a ``models`` list contribute nothing here: a family such as
        ``claude-*`` has no concrete names to list (see ``families``).
        """
        return list(self._visible)

    @property
    def families(self) -> Tuple[FamilyRule, ...]:
        """The family rules, in config order (for hints and ``route``)."""
        return self._families

    @property
    def empty(self) -> bool:
        """True when no entry serves any model at all."""
        return not self._explicit and not self._families


def _is_excluded(excluded: Optional[Pattern], name: str) -> bool:
    return excluded is not None and excluded.fullmatch(name) is not None
