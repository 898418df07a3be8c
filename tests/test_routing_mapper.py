"""model-mappings lookup (cliproxy.routing.mapper)."""

import re

import pytest

from cliproxy.config.model import ModelMapping
from cliproxy.routing.mapper import ModelMapper


def exact(index, source, *targets):
    return ModelMapping(source, tuple(targets), regex=False, index=index)


def regex(index, source, *targets, flags=re.IGNORECASE):
    return ModelMapping(source, tuple(targets), regex=True, index=index, pattern=re.compile(source, flags))


MAPPINGS = (
    regex(0, r"^claude-opus.*", "regex-opus"),
    exact(1, "claude-opus-4-5-20251101", "exact-opus"),
    regex(2, r"^gpt-5", "first-gpt"),
    regex(3, r"^gpt-5-codex", "second-gpt"),
    regex(4, r"mini$", "mini"),
    exact(5, "Qwen-Local", "qwen"),
    exact(6, "qwen-local", "shadowed"),
    ModelMapping("broken(", ("never",), regex=True, index=7, pattern=None),
    regex(8, r"^CASE-.*", "case", flags=0),
)

CASES = [
    # Exact wins over a regex rule that comes first in the file.
    ("claude-opus-4-5-20251101", 1),
    ("CLAUDE-OPUS-4-5-20251101", 1),
    ("claude-opus-4-1", 0),
    # Regex rules in file order: the first that matches wins.
    ("gpt-5-codex", 2),
    ("GPT-5", 2),
    # Search semantics: an unanchored pattern matches anywhere.
    ("o4-mini", 4),
    # Exact match is case-insensitive; the first of two equal sources wins.
    ("qwen-local", 5),
    ("QWEN-LOCAL", 5),
    # A pattern compiled without IGNORECASE still matches case-insensitively.
    ("case-sensitive-model", 8),
    # No match.
    ("gemini-2.5-pro", None),
    ("broken(", None),
    ("", None),
]


@pytest.mark.parametrize("model, index", CASES)
def test_find(model, index):
    found = ModelMapper(MAPPINGS).find(model)
    if index is None:
        assert found is None
    else:
        assert found is not None and found.index == index


def test_empty_mapper_finds_nothing():
    assert ModelMapper(()).find("anything") is None


def test_found_mapping_is_the_config_object():
    mapper = ModelMapper(MAPPINGS)
    assert mapper.find("gpt-5") is MAPPINGS[2]
