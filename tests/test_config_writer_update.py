"""Tests for cliproxy.config.writer.update_document: any top-level key or section key
changed in a copy, every other key kept in value and place."""

import json

import pytest

from cliproxy.config.writer import DELETE, update_document

ORIGINAL = {
    "port": 8317,
    "api-keys": ["env:CLIENT_KEY"],
    "claude-api-key": [{"api-key": "env:ANTHROPIC_KEY"}],
    "ampcode": {"upstream-url": "https://ampcode.com", "paid-fallback": "deny"},
    "debug": False,
}


def _copy():
    return json.loads(json.dumps(ORIGINAL))


def test_top_level_keys_change_in_place_and_new_ones_go_last():
    document = _copy()
    updated = update_document(document, {"api-keys": ["k-1"], "request-log": True, "debug": DELETE})
    assert document == ORIGINAL
    assert list(updated) == ["port", "api-keys", "claude-api-key", "ampcode", "request-log"]
    assert updated["api-keys"] == ["k-1"]
    assert updated["claude-api-key"] == ORIGINAL["claude-api-key"]


def test_section_keys_change_inside_the_section():
    updated = update_document(_copy(), {"paid-fallback": DELETE, "force-model-mappings": True}, "ampcode")
    assert updated["ampcode"] == {"upstream-url": "https://ampcode.com", "force-model-mappings": True}
    assert list(updated) == list(ORIGINAL)


def test_values_are_copied_deeply():
    entries = [{"api-key": "k"}]
    updated = update_document(_copy(), {"gemini-api-key": entries})
    entries[0]["api-key"] = "changed"
    assert updated["gemini-api-key"] == [{"api-key": "k"}]


@pytest.mark.parametrize("document, section", [([], None), ({"ampcode": "off"}, "ampcode")])
def test_non_objects_are_refused(document, section):
    with pytest.raises(ValueError):
        update_document(document, {"x": 1}, section)
