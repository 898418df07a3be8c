"""model-mappings lookup: exact (case-insensitive) first, then regex in file order (SPEC §2).

Strategy: built once per config snapshot, read-only afterwards. Exact ``from`` names sit
in a dict keyed by their lowercase form, so an exact rule wins over every regex rule
wherever it appears in the file; regex rules are then tried in file order with search
semantics (as Go's ``regexp.MatchString`` in CLIProxyAPI: users anchor with ``^``/``$``
themselves). Regexes always match case-insensitively, even when a caller compiled the
pattern without ``re.IGNORECASE``. A regex rule without a compiled pattern (the loader
reported it as invalid) is skipped. Whether a mapping's targets are actually served is
the router's question, not this module's.
"""

import re
import types
from typing import Dict, List, Optional, Tuple

from cliproxy.config.model import ModelMapping


class ModelMapper:
    """The mapping table of one config snapshot."""

    __slots__ = ("_exact", "_regex")

    def __init__(self, mappings: Tuple[ModelMapping, ...]):
        """Index ``mappings``; among exact rules with the same ``from`` the first in the
        file wins. Never raises."""
        exact = {}  # type: Dict[str, ModelMapping]
        regex = []  # type: List[Tuple[object, ModelMapping]]
        for mapping in mappings:
            if not mapping.regex:
                exact.setdefault(mapping.source.lower(), mapping)
            elif mapping.pattern is not None:
                regex.append((_case_insensitive(mapping.pattern), mapping))
        self._exact = types.MappingProxyType(exact)
        self._regex = tuple(regex)

    def find(self, model: str) -> Optional[ModelMapping]:
        """The mapping for ``model`` (a base name, thinking suffix already stripped), or
        ``None`` when no rule matches."""
        mapping = self._exact.get(model.lower())
        if mapping is not None:
            return mapping
        for pattern, mapping in self._regex:
            if pattern.search(model):
                return mapping
        return None


def _case_insensitive(pattern):
    if pattern.flags & re.IGNORECASE:
        return pattern
    return re.compile(pattern.pattern, pattern.flags | re.IGNORECASE)
