"""Tests for cliproxy.amp.secrets: the upstream key precedence chain and the file cache."""

import json
import logging

from cliproxy.amp.secrets import SECRETS_FILE_KEY, UpstreamKeys, mapped_key
from cliproxy.config.model import AmpCode, UpstreamKeyMapping


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def write_secrets(path, value):
    path.write_text(json.dumps({SECRETS_FILE_KEY: value, "other@x": "ignored"}))


def make(tmp_path, environ=None, clock=None, ttl=300.0):
    return UpstreamKeys(
        clock=clock or Clock(),
        environ=environ if environ is not None else {},
        secrets_path=str(tmp_path / "secrets.json"),
        ttl=ttl,
    )


MAPPINGS = (
    UpstreamKeyMapping("amp-team-a", ("sk-a1", "sk-shared")),
    UpstreamKeyMapping("amp-team-b", ("sk-b1", "sk-shared")),
)


def test_precedence_chain(tmp_path):
    write_secrets(tmp_path / "secrets.json", "amp-from-file")
    env = {"AMP_API_KEY": "amp-from-env"}
    keys = make(tmp_path, environ=env)
    full = AmpCode(upstream_api_key="amp-config", upstream_api_keys=MAPPINGS)
    assert keys.resolve(full, "sk-a1") == "amp-team-a"
    assert keys.resolve(full, "sk-unmapped") == "amp-config"
    assert keys.resolve(full, None) == "amp-config"
    assert keys.resolve(AmpCode(), "sk-a1") == "amp-from-env"
    env.clear()
    assert keys.resolve(AmpCode(), "sk-a1") == "amp-from-file"
    (tmp_path / "secrets.json").unlink()
    keys.invalidate()
    assert keys.resolve(AmpCode(), "sk-a1") is None


def test_empty_values_count_as_unset(tmp_path):
    write_secrets(tmp_path / "secrets.json", "amp-from-file")
    keys = make(tmp_path, environ={"AMP_API_KEY": "  "})
    assert keys.resolve(AmpCode(upstream_api_key=""), None) == "amp-from-file"


def test_per_client_mapping_first_wins():
    ampcode = AmpCode(upstream_api_keys=MAPPINGS)
    assert mapped_key(ampcode, "sk-shared") == "amp-team-a"
    assert mapped_key(ampcode, "sk-b1") == "amp-team-b"
    assert mapped_key(ampcode, "sk-b") is None
    assert mapped_key(ampcode, "") is None
    assert mapped_key(ampcode, None) is None


def test_file_cache_honours_ttl(tmp_path):
    path = tmp_path / "secrets.json"
    write_secrets(path, "first")
    clock = Clock(1000.0)
    keys = make(tmp_path, clock=clock, ttl=300.0)
    assert keys.resolve(AmpCode(), None) == "first"
    write_secrets(path, "second")
    clock.now = 1299.9  # before the ttl: the cached read stands
    assert keys.resolve(AmpCode(), None) == "first"
    clock.now = 1300.0  # at the ttl: read again
    assert keys.resolve(AmpCode(), None) == "second"


def test_missing_file_is_cached_too(tmp_path):
    clock = Clock(0.0)
    keys = make(tmp_path, clock=clock, ttl=300.0)
    assert keys.resolve(AmpCode(), None) is None
    write_secrets(tmp_path / "secrets.json", "appeared")
    clock.now = 100.0
    assert keys.resolve(AmpCode(), None) is None
    clock.now = 300.0
    assert keys.resolve(AmpCode(), None) == "appeared"


def test_invalid_file_logged_once_without_content(tmp_path, caplog):
    path = tmp_path / "secrets.json"
    path.write_text('{"apiKey@https://ampcode.com/": "sk-secret-value", broken')
    clock = Clock(0.0)
    keys = make(tmp_path, clock=clock, ttl=10.0)
    with caplog.at_level(logging.DEBUG, logger="cliproxy.amp.secrets"):
        for step in range(5):
            clock.now = step * 10.0  # re-read every time
            assert keys.resolve(AmpCode(), None) is None
    records = [r for r in caplog.records if r.name == "cliproxy.amp.secrets"]
    assert len(records) == 1
    assert records[0].levelno == logging.DEBUG
    assert "not valid JSON" in records[0].getMessage()
    assert "sk-secret-value" not in caplog.text


def test_file_without_the_key_or_not_an_object(tmp_path):
    path = tmp_path / "secrets.json"
    keys = make(tmp_path, ttl=0.0)
    for document in ([1, 2], {"apiKey@https://other/": "x"}, {SECRETS_FILE_KEY: 5}, {SECRETS_FILE_KEY: ""}):
        path.write_text(json.dumps(document))
        assert keys.resolve(AmpCode(), None) is None


def test_default_path_is_expanded_at_use(tmp_path, monkeypatch):
    home = tmp_path / "home"
    secrets_dir = home / ".local" / "share" / "amp"
    secrets_dir.mkdir(parents=True)
    write_secrets(secrets_dir / "secrets.json", "from-home")
    keys = UpstreamKeys(clock=Clock(), environ={})
    monkeypatch.setenv("HOME", str(home))
    assert keys.resolve(AmpCode(), None) == "from-home"


# ---- the "no upstream key" warning (issue 11) ----------------------------------------


def test_no_key_anywhere_is_one_warning_naming_each_place_looked_at(tmp_path):
    warning = make(tmp_path).missing_key_warning(AmpCode())
    assert warning.startswith("no upstream Amp key: ")
    for place in ("ampcode.upstream-api-key", "AMP_API_KEY", str(tmp_path / "secrets.json") + " not found",
                  "https://ampcode.com", "every client"):
        assert place in warning


def test_the_warning_says_why_the_secrets_file_gave_nothing_without_its_content(tmp_path):
    path = tmp_path / "secrets.json"
    path.write_text('{"apiKey@https://ampcode.com/": "sk-secret-value", broken')
    warning = make(tmp_path).missing_key_warning(AmpCode(upstream_api_keys=MAPPINGS))
    assert "not valid JSON" in warning
    assert "clients not listed in ampcode.upstream-api-keys" in warning
    assert "sk-secret-value" not in warning and "amp-team-a" not in warning


def test_no_warning_when_a_key_is_found_or_there_is_no_upstream(tmp_path):
    assert make(tmp_path).missing_key_warning(AmpCode(upstream_api_key="amp-config")) is None
    assert make(tmp_path, environ={"AMP_API_KEY": "amp-env"}).missing_key_warning(AmpCode()) is None
    assert make(tmp_path).missing_key_warning(AmpCode(upstream_url=None)) is None
    keys = make(tmp_path)
    assert keys.missing_key_warning(AmpCode()) is not None
    # The file is read afresh for the warning (at a reload, say), not taken from the cache.
    write_secrets(tmp_path / "secrets.json", "amp-from-file")
    assert keys.missing_key_warning(AmpCode()) is None
    assert keys.resolve(AmpCode(), None) == "amp-from-file"
