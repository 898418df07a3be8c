"""Tests for the management API over the whole config: ``/config``, ``api-keys``, the
provider lists, ``openai-compatibility`` and the top-level settings changed at run time.

Real config files in tmp_path, the real loader, writer and ConfigStore
(``tests/support/management.py``).
"""

import dataclasses
import json
import pathlib

import pytest

from cliproxy.config.loader import load_file
from cliproxy.config.model import ProviderKind
from cliproxy.masking import ELLIPSIS, FULL_MASK, mask_secret
from tests.support.management import Harness, write_json

SECRET = "mgmt-secret-0123456789"
CLIENT_A = "sk-client-aaaaaaaaaaaa01"
CLIENT_B = "sk-client-bbbbbbbbbbbb02"
CLAUDE_KEY = "sk-ant-claude-key-0000001"
CLAUDE_KEY_2 = "sk-ant-claude-key-0000002"
GEMINI_KEY = "gemini-key-abcdefghijk"
CODEX_KEY = "sk-codex-key-0123456789"
ROUTER_KEY = "sk-or-router-key-99999999"
PROXY_PASSWORD = "proxy-pass-word"
UPSTREAM_KEY = "amp-upstream-key-abcdef"
ALL_SECRETS = (SECRET, CLIENT_A, CLIENT_B, CLAUDE_KEY, GEMINI_KEY, CODEX_KEY, ROUTER_KEY, PROXY_PASSWORD, UPSTREAM_KEY)

DOCUMENT = {
    "host": "127.0.0.1",
    "port": 8317,
    "api-keys": [CLIENT_A, CLIENT_B],
    "proxy-url": "http://ops:%s@proxy.internal:3128" % PROXY_PASSWORD,
    "remote-management": {"secret-key": SECRET},
    "claude-api-key": [
        {
            "api-key": CLAUDE_KEY,
            "headers": {"Authorization-Extra": "Bearer team-token-123456", "X-Team": "blue"},
            "models": [{"name": "claude-sonnet-4-5", "alias": "sonnet"}],
        }
    ],
    "gemini-api-key": [{"api-key": GEMINI_KEY}],
    "codex-api-key": [{"api-key": CODEX_KEY, "base-url": "https://codex.example.com/v1/"}],
    "openai-compatibility": [
        {
            "name": "open router",
            "base-url": "https://openrouter.example.com/api/v1",
            "api-key-entries": [{"api-key": ROUTER_KEY}, {"api-key": "env:ROUTER_KEY_2"}],
            "models": [{"name": "qwen/qwen3-coder", "alias": "qwen3-coder"}],
        },
        {"name": "vllm", "base-url": "http://127.0.0.1:8000/v1", "models": [{"name": "glm-4.6"}]},
    ],
    "request-retry": 2,
    "ampcode": {"upstream-api-key": UPSTREAM_KEY},
}
ENVIRON = {"ROUTER_KEY_2": "sk-or-from-environment-2"}


def _copy(**changes):
    document = json.loads(json.dumps(DOCUMENT))
    document.update(changes)
    return document


@pytest.fixture
def make(tmp_path):
    def build(document=DOCUMENT, **options):
        path = tmp_path / "config.json"
        write_json(path, document)
        config, _ = load_file(str(path), environ=ENVIRON)
        return Harness(str(path), config, ENVIRON, secret=SECRET, **options)

    return build


@pytest.fixture
def h(make):
    return make()


def _unchanged(h):
    """A check that the file and the config in force are as they were."""
    original, before = h.file_bytes(), h.store.current

    def check():
        assert h.file_bytes() == original
        assert h.store.current is before

    return check


def _of_kind(h, kind):
    return [entry for entry in h.store.current.providers if entry.kind is kind]


# ---- GET /config -----------------------------------------------------------------------


def test_config_shows_every_section_with_secrets_masked(h):
    response = h.call("GET", "/config")
    text = response.body.decode("utf-8")
    for secret in ALL_SECRETS + (ENVIRON["ROUTER_KEY_2"],):
        assert secret not in text
    view = json.loads(text)
    assert list(view)[:3] == ["host", "port", "tls"]
    assert list(view)[-5:] == [
        "claude-api-key",
        "gemini-api-key",
        "codex-api-key",
        "openai-compatibility",
        "ampcode",
    ]
    assert view["api-keys"] == [mask_secret(CLIENT_A), mask_secret(CLIENT_B)]
    assert view["proxy-url"] == "http://ops:" + ELLIPSIS + "@proxy.internal:3128"
    assert view["remote-management"] == {"allow-remote": False}
    assert view["request-retry"] == 2
    assert view["limits"]["read-timeout"] == 600
    assert view["tls"] == {"enable": False, "cert": "", "key": ""}
    assert view["ampcode"]["upstream-api-key"] == mask_secret(UPSTREAM_KEY)
    assert view["codex-api-key"][0]["base-url"] == "https://codex.example.com/v1"


def test_config_is_read_only(h):
    error = h.fails(405, "PUT", "/config", {"debug": True})
    assert ("allow", "GET") in error.headers


@pytest.mark.parametrize(
    "method, sub",
    [
        ("GET", "/remote-management"),
        ("GET", "/remote-management/secret-key"),
        ("PUT", "/remote-management/secret-key"),
        ("PUT", "/host"),
        ("GET", "/limits"),
    ],
)
def test_keys_not_served_are_404(h, method, sub):
    check = _unchanged(h)
    h.fails(404, method, sub, "new-secret-value-123")
    check()


# ---- api-keys --------------------------------------------------------------------------


def test_api_keys_get_masked_and_by_index(h):
    assert h.ok("GET", "/api-keys") == {"value": [mask_secret(CLIENT_A), mask_secret(CLIENT_B)]}
    assert h.ok("GET", "/api-keys/1") == {"value": mask_secret(CLIENT_B)}
    h.fails(404, "GET", "/api-keys/2")
    h.fails(404, "GET", "/api-keys/" + CLIENT_A)


def test_api_keys_put_applies_at_once(h):
    assert h.ok("PUT", "/api-keys", ["sk-new-client-key-777"]) == {"ok": True, "persisted": True}
    assert h.file_json()["api-keys"] == ["sk-new-client-key-777"]
    assert h.store.current.api_keys == ("sk-new-client-key-777",)


def test_api_keys_patch_adds_what_is_missing(h):
    h.ok("PATCH", "/api-keys", [CLIENT_B, "sk-third-client-key-3"])
    assert h.file_json()["api-keys"] == [CLIENT_A, CLIENT_B, "sk-third-client-key-3"]
    h.ok("PATCH", "/api-keys", "sk-fourth-client-key-4")
    assert h.store.current.api_keys[-1] == "sk-fourth-client-key-4"


def test_api_keys_delete_by_index_or_key(h):
    assert h.ok("DELETE", "/api-keys", [1])["removed"] == 1
    assert h.file_json()["api-keys"] == [CLIENT_A]
    h.ok("PUT", "/api-keys", [CLIENT_A, CLIENT_B])
    assert h.ok("DELETE", "/api-keys", [CLIENT_A, "sk-not-there-at-all"])["removed"] == 1
    assert h.store.current.api_keys == (CLIENT_B,)


def test_api_keys_one_entry_put_and_delete(h):
    h.ok("PUT", "/api-keys/0", "sk-replacement-key-000")
    assert h.file_json()["api-keys"] == ["sk-replacement-key-000", CLIENT_B]
    assert h.ok("DELETE", "/api-keys/1") == {"ok": True, "persisted": True, "removed": 1}
    assert h.store.current.api_keys == ("sk-replacement-key-000",)
    error = h.fails(405, "PATCH", "/api-keys/0", "x")
    assert ("allow", "GET, PUT, DELETE") in error.headers


def test_api_keys_masked_value_sent_back_is_refused(h):
    check = _unchanged(h)
    shown = h.ok("GET", "/api-keys")["value"]
    error = h.fails(400, "PUT", "/api-keys", [CLIENT_A, shown[1]])
    assert "api-keys[1]" in error.message and "masked" in error.message
    h.fails(400, "PATCH", "/api-keys", [FULL_MASK])
    h.fails(400, "PUT", "/api-keys/0", shown[0])
    h.fails(400, "DELETE", "/api-keys", [shown[0]])
    for secret in ALL_SECRETS:
        assert secret not in error.message
    check()


def test_emptying_api_keys_on_an_open_host_is_refused(make):
    h = make(_copy(host="0.0.0.0"))
    check = _unchanged(h)
    error = h.fails(400, "DELETE", "/api-keys")
    assert "api-keys: empty while host is 0.0.0.0" in error.message
    check()


def test_invalid_api_key_names_its_path(h):
    check = _unchanged(h)
    error = h.fails(400, "PUT", "/api-keys", [CLIENT_A, ""])
    assert "api-keys[1]: must be a non-empty string" in error.message
    check()


# ---- claude / gemini / codex -----------------------------------------------------------


def test_provider_list_view_has_effective_values_and_masks(h):
    (entry,) = h.ok("GET", "/claude-api-key")["value"]
    assert entry == {
        "api-key": mask_secret(CLAUDE_KEY),
        "base-url": "https://api.anthropic.com",
        "headers": {"Authorization-Extra": mask_secret("Bearer team-token-123456"), "X-Team": "blue"},
        "proxy-url": "",
        "models": [{"name": "claude-sonnet-4-5", "alias": "sonnet"}],
        "excluded-models": [],
    }
    assert h.ok("GET", "/claude-api-key/0") == {"value": entry}
    assert h.ok("GET", "/gemini-api-key")["value"][0]["base-url"] == "https://generativelanguage.googleapis.com"


def test_patch_one_entry_changes_only_the_members_sent(h):
    answer = h.ok("PATCH", "/claude-api-key/0", {"base-url": "https://claude.internal/", "models": None})
    assert answer == {"ok": True, "persisted": True}
    written = h.file_json()["claude-api-key"][0]
    assert written["api-key"] == CLAUDE_KEY  # the real key stays in the file
    assert written["base-url"] == "https://claude.internal/"
    assert "models" not in written
    (entry,) = _of_kind(h, ProviderKind.CLAUDE)
    assert (entry.base_url, entry.api_key, entry.models) == ("https://claude.internal", CLAUDE_KEY, ())


def test_whole_entry_from_get_is_refused_because_its_key_is_masked(h):
    check = _unchanged(h)
    shown = h.ok("GET", "/claude-api-key/0")["value"]
    shown["base-url"] = "https://claude.internal"
    error = h.fails(400, "PUT", "/claude-api-key/0", shown)
    assert "claude-api-key[0].api-key" in error.message
    check()


def test_put_one_entry_with_a_real_key(h):
    h.ok("PUT", "/claude-api-key/0", {"api-key": CLAUDE_KEY_2})
    assert h.file_json()["claude-api-key"] == [{"api-key": CLAUDE_KEY_2}]
    assert [e.api_key for e in _of_kind(h, ProviderKind.CLAUDE)] == [CLAUDE_KEY_2]


def test_patch_list_appends_or_replaces_by_api_key(h):
    h.ok("PATCH", "/claude-api-key", {"api-key": CLAUDE_KEY_2, "base-url": "https://second.example.com"})
    h.ok("PATCH", "/claude-api-key", [{"api-key": CLAUDE_KEY, "excluded-models": ["claude-3-*"]}])
    written = h.file_json()["claude-api-key"]
    assert written == [
        {"api-key": CLAUDE_KEY, "excluded-models": ["claude-3-*"]},
        {"api-key": CLAUDE_KEY_2, "base-url": "https://second.example.com"},
    ]
    entries = _of_kind(h, ProviderKind.CLAUDE)
    assert [e.path for e in entries] == ["claude-api-key[0]", "claude-api-key[1]"]
    assert entries[0].excluded_models == ("claude-3-*",)


def test_changing_one_provider_list_keeps_the_others_in_force(h):
    others = [e for e in h.store.current.providers if e.kind is not ProviderKind.CLAUDE]
    h.ok("DELETE", "/claude-api-key/0")
    assert h.file_json()["claude-api-key"] == []
    assert [e for e in h.store.current.providers if e.kind is not ProviderKind.CLAUDE] == others
    assert _of_kind(h, ProviderKind.CLAUDE) == []


@pytest.mark.parametrize("kind", [ProviderKind.GEMINI, ProviderKind.CODEX])
def test_other_provider_kinds_take_the_same_edits(h, kind):
    route = "/" + kind.value
    h.ok("PATCH", route, {"api-key": "sk-added-key-1234567890"})
    assert [e.api_key for e in _of_kind(h, kind)][-1] == "sk-added-key-1234567890"
    h.ok("DELETE", route, [0])
    assert [e.api_key for e in _of_kind(h, kind)] == ["sk-added-key-1234567890"]
    h.ok("DELETE", route)
    assert kind.value not in h.file_json()
    assert _of_kind(h, kind) == []


@pytest.mark.parametrize(
    "method, sub, value, path",
    [
        ("PATCH", "/claude-api-key/0", {"base-url": "ftp://x"}, "claude-api-key[0].base-url"),
        ("PATCH", "/claude-api-key/0", {"api-key": None}, "claude-api-key[0].api-key: required"),
        ("PATCH", "/claude-api-key/0", {"modles": []}, "claude-api-key[0].modles: unknown key"),
        ("PUT", "/gemini-api-key", [{"api-key": GEMINI_KEY, "proxy-url": "socks5://x:1"}], "gemini-api-key[0].proxy-url"),
        ("PATCH", "/codex-api-key", [{"base-url": "https://x"}], "codex-api-key"),
        ("PUT", "/claude-api-key", {"api-key": CLAUDE_KEY}, "claude-api-key: must be a list"),
    ],
)
def test_invalid_provider_change_is_400_naming_the_path(h, method, sub, value, path):
    check = _unchanged(h)
    error = h.fails(400, method, sub, value)
    assert path in error.message
    check()


def test_entry_index_out_of_range_is_404(h):
    h.fails(404, "PATCH", "/claude-api-key/1", {"base-url": "https://x.example.com"})
    h.fails(404, "DELETE", "/gemini-api-key/7")
    h.fails(404, "GET", "/codex-api-key/first")


# ---- openai-compatibility --------------------------------------------------------------


def test_compat_blocks_are_shown_whole_with_their_keys_masked(h):
    blocks = h.ok("GET", "/openai-compatibility")["value"]
    assert blocks == [
        {
            "name": "open router",
            "base-url": "https://openrouter.example.com/api/v1",
            "api-key-entries": [
                {"api-key": mask_secret(ROUTER_KEY), "proxy-url": ""},
                {"api-key": mask_secret(ENVIRON["ROUTER_KEY_2"]), "proxy-url": ""},
            ],
            "headers": {},
            "models": [{"name": "qwen/qwen3-coder", "alias": "qwen3-coder"}],
            "excluded-models": [],
        },
        {
            "name": "vllm",
            "base-url": "http://127.0.0.1:8000/v1",
            "api-key-entries": [],
            "headers": {},
            "models": [{"name": "glm-4.6", "alias": ""}],
            "excluded-models": [],
        },
    ]
    assert h.ok("GET", "/openai-compatibility/vllm") == {"value": blocks[1]}
    assert h.ok("GET", "/openai-compatibility/open%20router") == {"value": blocks[0]}
    assert h.ok("GET", "/openai-compatibility/1") == {"value": blocks[1]}
    h.fails(404, "GET", "/openai-compatibility/ollama")


def test_compat_patch_by_name_and_by_index(h):
    h.ok("PATCH", "/openai-compatibility/vllm", {"base-url": "http://10.0.0.5:8000/v1"})
    h.ok("PATCH", "/openai-compatibility/0", {"excluded-models": ["*-preview"]})
    written = h.file_json()["openai-compatibility"]
    assert written[1]["base-url"] == "http://10.0.0.5:8000/v1"
    assert written[0]["excluded-models"] == ["*-preview"]
    assert written[0]["api-key-entries"] == DOCUMENT["openai-compatibility"][0]["api-key-entries"]
    compat = _of_kind(h, ProviderKind.OPENAI_COMPAT)
    assert [(e.name, e.base_url) for e in compat][-1] == ("vllm", "http://10.0.0.5:8000/v1")
    assert compat[0].excluded_models == ("*-preview",)
    assert compat[1].api_key == ENVIRON["ROUTER_KEY_2"]  # env: reference still resolved


def test_compat_patch_list_replaces_by_name_or_appends(h):
    ollama = {"name": "ollama", "base-url": "http://127.0.0.1:11434/v1", "models": [{"name": "qwen3"}]}
    vllm = {"name": "vllm", "base-url": "http://127.0.0.1:9000/v1", "models": [{"name": "glm-4.6"}]}
    h.ok("PATCH", "/openai-compatibility", [vllm, ollama])
    assert [b["name"] for b in h.file_json()["openai-compatibility"]] == ["open router", "vllm", "ollama"]
    assert h.file_json()["openai-compatibility"][1] == vllm
    assert [e.name for e in _of_kind(h, ProviderKind.OPENAI_COMPAT)] == ["open router", "open router", "vllm", "ollama"]


def test_compat_delete_by_name(h):
    assert h.ok("DELETE", "/openai-compatibility/open%20router")["removed"] == 1
    assert [b["name"] for b in h.file_json()["openai-compatibility"]] == ["vllm"]
    assert h.ok("DELETE", "/openai-compatibility", ["vllm", "nothing"])["removed"] == 1
    assert _of_kind(h, ProviderKind.OPENAI_COMPAT) == []


def test_compat_masked_nested_key_is_refused(h):
    check = _unchanged(h)
    shown = h.ok("GET", "/openai-compatibility/0")["value"]
    error = h.fails(400, "PATCH", "/openai-compatibility/0", {"api-key-entries": shown["api-key-entries"]})
    assert "openai-compatibility[0].api-key-entries[0].api-key" in error.message
    check()


def test_compat_block_without_models_is_refused(h):
    check = _unchanged(h)
    error = h.fails(400, "PATCH", "/openai-compatibility", {"name": "bare", "base-url": "http://127.0.0.1:1/v1"})
    assert "openai-compatibility[2].models: required" in error.message
    check()


# ---- request-log, request-retry, proxy-url, debug --------------------------------------


@pytest.mark.parametrize(
    "key, shown, new, attribute, effective, default",
    [
        ("request-log", False, True, "request_log", True, False),
        ("request-retry", 2, 0, "request_retry", 0, 1),
        ("proxy-url", "http://ops:" + ELLIPSIS + "@proxy.internal:3128", "direct", "proxy_url", "direct", None),
        ("debug", False, True, "debug", True, False),
    ],
)
def test_top_level_settings_get_put_delete(h, key, shown, new, attribute, effective, default):
    assert h.ok("GET", "/" + key) == {"value": shown}
    assert h.ok("PUT", "/" + key, new) == {"ok": True, "persisted": True}
    assert h.file_json()[key] == new
    assert getattr(h.store.current, attribute) == effective
    assert h.ok("GET", "/" + key)["value"] == ("" if new is None else new)
    h.ok("DELETE", "/" + key)
    assert key not in h.file_json()
    assert getattr(h.store.current, attribute) == default


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("request-retry", -1, "request-retry: must be an integer >= 0"),
        ("request-retry", 1.5, "request-retry: must be an integer >= 0"),
        ("request-log", "yes", "request-log: must be true or false"),
        ("debug", 1, "debug: must be true or false"),
        ("proxy-url", "socks5://127.0.0.1:1080", "proxy-url: only http proxies are supported"),
    ],
)
def test_invalid_top_level_value_is_400_and_nothing_changes(h, key, value, message):
    check = _unchanged(h)
    assert message in h.fails(400, "PUT", "/" + key, value).message
    check()


def test_masked_proxy_password_is_refused(h):
    check = _unchanged(h)
    shown = h.ok("GET", "/proxy-url")["value"]
    error = h.fails(400, "PUT", "/proxy-url", shown)
    assert "proxy-url" in error.message and PROXY_PASSWORD not in error.message
    check()


def test_scalar_patch_is_405(h):
    error = h.fails(405, "PATCH", "/debug", True)
    assert ("allow", "GET, PUT, DELETE") in error.headers
    h.fails(404, "GET", "/debug/0")


def test_on_swap_sees_old_and_new_config(make):
    seen = []
    h = make(on_swap=lambda old, new: seen.append((old.debug, new.debug)))
    h.ok("PUT", "/debug", True)
    h.ok("PUT", "/request-log", True)
    assert seen == [(False, True), (True, True)]


# ---- the rest of the file and the rest of the config -----------------------------------


def test_top_level_changes_keep_every_other_key_and_its_place(h):
    before = json.loads(h.file_bytes().decode("utf-8"), object_pairs_hook=list)
    h.ok("PUT", "/request-retry", 3)
    h.ok("PATCH", "/openai-compatibility/vllm", {"base-url": "http://127.0.0.1:9/v1"})
    h.ok("PUT", "/debug", True)  # absent: goes last
    after = json.loads(h.file_bytes().decode("utf-8"), object_pairs_hook=list)
    assert [k for k, _ in after] == [k for k, _ in before] + ["debug"]
    changed = {"request-retry", "openai-compatibility"}
    for (key, old), (_, new) in zip(before, after):
        if key not in changed:
            assert new == old


def test_settings_outside_the_changed_key_stay_as_in_force(h):
    h.store.swap(dataclasses.replace(h.store.current, port=9999, request_retry=7))
    h.ok("PUT", "/api-keys", [CLIENT_A])
    assert (h.store.current.port, h.store.current.request_retry) == (9999, 7)
    h.ok("PUT", "/claude-api-key", [{"api-key": CLAUDE_KEY_2}])
    assert h.store.current.request_retry == 7
    assert h.store.current.api_keys == (CLIENT_A,)


def test_hand_edit_elsewhere_that_is_invalid_is_named(h):
    document = _copy(**{"request-retry": "two"})
    write_json(pathlib.Path(h.path), document)
    error = h.fails(400, "PUT", "/debug", True)
    assert "request-retry" in error.message
    assert h.file_json()["request-retry"] == "two"
