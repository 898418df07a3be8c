"""Tests for cliproxy.config.writer: atomic write-back and order-preserving updates."""

import json
import os
import stat

import pytest

from cliproxy.config.loader import load_file
from cliproxy.config.writer import DELETE, update_ampcode, write_document

ORIGINAL = """{
  "port": 8317,
  "api-keys": ["env:CLIPROXY_API_KEY"],
  "ampcode": {
    "upstream-url": "https://ampcode.com",
    "upstream-api-key": "",
    "model-mappings": [{"from": "a", "to": "b"}],
    "paid-fallback": "allow"
  },
  "debug": false
}
"""


def write_original(tmp_path, mode=0o640):
    path = tmp_path / "config.json"
    path.write_text(ORIGINAL)
    os.chmod(str(path), mode)
    return str(path)


def test_write_document_replaces_the_file_atomically(tmp_path):
    path = write_original(tmp_path)
    inode = os.stat(path).st_ino
    document = json.loads(ORIGINAL)
    document["ampcode"]["upstream-url"] = ""
    write_document(path, document)
    with open(path) as handle:
        text = handle.read()
    assert json.loads(text) == document
    assert text.endswith("}\n") and '\n  "port": 8317,\n' in text  # indent=2, final newline
    assert os.stat(path).st_ino != inode  # a new file was renamed over the old one
    assert os.listdir(str(tmp_path)) == ["config.json"]  # no temporary file left


def test_write_document_keeps_key_order_and_env_references(tmp_path):
    path = write_original(tmp_path)
    write_document(path, json.loads(ORIGINAL))
    with open(path) as handle:
        text = handle.read()
    assert list(json.loads(text)) == ["port", "api-keys", "ampcode", "debug"]
    assert '"env:CLIPROXY_API_KEY"' in text


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644])
def test_write_document_preserves_permission_bits(tmp_path, mode):
    path = write_original(tmp_path, mode)
    write_document(path, {"port": 1})
    assert stat.S_IMODE(os.stat(path).st_mode) == mode


def test_new_file_is_private(tmp_path):
    path = str(tmp_path / "new.json")
    write_document(path, {"port": 1})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path) as handle:
        assert json.load(handle) == {"port": 1}


def test_unserialisable_document_leaves_the_file_untouched(tmp_path):
    path = write_original(tmp_path)
    with pytest.raises(TypeError):
        write_document(path, {"port": object()})
    with open(path) as handle:
        assert handle.read() == ORIGINAL
    assert os.listdir(str(tmp_path)) == ["config.json"]


def test_symlinked_config_is_written_through_the_link(tmp_path):
    real = write_original(tmp_path)
    link = str(tmp_path / "link.json")
    os.symlink(real, link)
    write_document(link, {"port": 2})
    assert os.path.islink(link)
    with open(real) as handle:
        assert json.load(handle) == {"port": 2}


def test_non_ascii_is_written_as_utf8(tmp_path):
    path = str(tmp_path / "c.json")
    write_document(path, {"logs-dir": "journaux-été"})
    with open(path, "rb") as handle:
        assert "été".encode("utf-8") in handle.read()


def test_update_ampcode_sets_and_deletes_keeping_everything_else():
    document = json.loads(ORIGINAL)
    updated = update_ampcode(
        document,
        {
            "upstream-url": "",
            "paid-fallback": DELETE,
            "force-model-mappings": True,
            "missing-key": DELETE,
        },
    )
    assert document == json.loads(ORIGINAL)  # input untouched
    assert list(updated) == ["port", "api-keys", "ampcode", "debug"]
    assert list(updated["ampcode"]) == [
        "upstream-url",
        "upstream-api-key",
        "model-mappings",
        "force-model-mappings",
    ]
    assert updated["ampcode"]["upstream-url"] == ""
    assert updated["api-keys"] == ["env:CLIPROXY_API_KEY"]


def test_update_ampcode_copies_deeply():
    document = json.loads(ORIGINAL)
    mappings = [{"from": "x", "to": "y"}]
    updated = update_ampcode(document, {"model-mappings": mappings})
    mappings.append({"from": "z", "to": "w"})
    updated["api-keys"].append("other")
    assert updated["ampcode"]["model-mappings"] == [{"from": "x", "to": "y"}]
    assert document["api-keys"] == ["env:CLIPROXY_API_KEY"]


def test_update_ampcode_adds_a_missing_section_last():
    updated = update_ampcode({"port": 1, "debug": True}, {"upstream-url": ""})
    assert list(updated) == ["port", "debug", "ampcode"]
    assert updated["ampcode"] == {"upstream-url": ""}


def test_update_ampcode_refuses_a_non_object_section():
    with pytest.raises(ValueError):
        update_ampcode({"ampcode": []}, {"upstream-url": ""})


def test_round_trip_through_the_loader(tmp_path):
    path = write_original(tmp_path)
    config = load_file(path, environ={"CLIPROXY_API_KEY": "sk-1"})[0]
    updated = update_ampcode(config.document, {"upstream-url": "", "paid-fallback": "deny"})
    write_document(path, updated)
    reloaded = load_file(path, environ={"CLIPROXY_API_KEY": "sk-1"})[0]
    assert reloaded.ampcode.upstream_url is None
    assert reloaded.ampcode.paid_fallback.value == "deny"
    assert reloaded.api_keys == ("sk-1",)
    assert reloaded.document == updated
