"""Tests for cliproxy.ops.management_api: the ampcode section (SPEC §3.3).

Real config files in tmp_path, the real loader, writer and ConfigStore
(``tests/support/management.py``); the HTTP layer is covered end to end in
``tests/test_e2e_management_api.py``.
"""

import dataclasses
import json
import logging
import pathlib

import pytest

from cliproxy.config.loader import default_config, load_file
from cliproxy.config.model import PaidFallback, RemoteManagement
from cliproxy.errors import ProxyError
from cliproxy.http.headers import Headers
from cliproxy.masking import ELLIPSIS, mask_secret
from cliproxy.ops.management_api import MAX_BODY_BYTES
from tests.support.management import Harness as _Harness
from tests.support.management import Request as _Request
from tests.support.management import run as _run
from tests.support.management import write_json as _write

SECRET = "mgmt-secret-0123456789"
UPSTREAM_KEY = "amp-upstream-key-abcdef"
TEAM_KEY = "amp-team-a-key-uvwxyz"
CLIENT_KEY = "sk-local-client-000001"
BASE = "/v0/management/ampcode"

DOCUMENT = {
    "host": "127.0.0.1",
    "port": 8317,
    "api-keys": [CLIENT_KEY],
    "remote-management": {"allow-remote": False, "secret-key": SECRET},
    "claude-api-key": [
        {"api-key": "sk-ant-abcdefghijklmnop", "base-url": "https://api.anthropic.com"}
    ],
    "ampcode": {
        "upstream-url": "https://amp.example.com",
        "upstream-api-key": UPSTREAM_KEY,
        "upstream-api-keys": [{"upstream-api-key": TEAM_KEY, "api-keys": [CLIENT_KEY]}],
        "model-mappings": [
            {"from": "claude-opus-4-5-20251101", "to": "qwen3-coder"},
            {"from": "^gpt-5.*", "to": ["gemini-2.5-pro", "qwen3-coder"], "regex": True},
        ],
    },
    "request-retry": 2,
    "limits": {"max-body-bytes": 1048576, "read-timeout": 300},
}


def Harness(path, config, environ=None):
    return _Harness(path, config, environ, secret=SECRET, base=BASE)


@pytest.fixture
def make(tmp_path):
    def build(document=DOCUMENT, environ=None):
        path = tmp_path / "config.json"
        _write(path, document)
        config, _ = load_file(str(path), environ=environ or {})
        return Harness(str(path), config, environ)

    return build


@pytest.fixture
def h(make):
    return make()


def _with(section_changes=None, **top):
    document = json.loads(json.dumps(DOCUMENT))
    document.update(top)
    document["ampcode"].update(section_changes or {})
    return document


# ---- gate ------------------------------------------------------------------------------


def test_disabled_without_secret_key(make):
    h = make(_with(**{"remote-management": {"secret-key": ""}}))
    error = h.fails(404, "GET")
    assert "disabled" in error.message
    h.fails(404, "GET", key="")


def test_both_key_carriers_authenticate(h):
    assert h.ok("GET", "/upstream-url", carrier="bearer") == {"value": "https://amp.example.com"}
    assert h.ok("GET", "/upstream-url", carrier="x-management-key") == {
        "value": "https://amp.example.com"
    }


def test_management_key_next_to_a_client_key_in_authorization(h):
    request_headers = Headers([("authorization", "Bearer " + CLIENT_KEY), ("x-management-key", SECRET)])
    request = _Request("GET", BASE + "/upstream-url", request_headers, ("127.0.0.1", 1), b"")
    response = _run(h.api.handle(request, h.store.current, h.store))
    assert response.status == 200


@pytest.mark.parametrize("key", ["", "wrong-key", SECRET + "x", SECRET[:-1]])
@pytest.mark.parametrize("carrier", ["bearer", "x-management-key"])
def test_missing_or_wrong_key_is_401(h, key, carrier):
    error = h.fails(401, "GET", key=key, carrier=carrier)
    assert ("www-authenticate", 'Bearer realm="cliproxy-management"') in error.headers
    assert SECRET not in error.message


def test_remote_peer_is_403_whatever_the_key(h):
    h.fails(403, "GET", peer=("192.0.2.7", 5000))
    h.fails(403, "GET", key="wrong", peer=("192.0.2.7", 5000))
    h.fails(403, "GET", peer=("::ffff:10.0.0.1", 5000))
    assert h.ok("GET", "/force-model-mappings", peer=("::1", 5000)) == {"value": False}


def test_allow_remote_lets_remote_peers_in_with_the_key(make):
    h = make(_with(**{"remote-management": {"allow-remote": True, "secret-key": SECRET}}))
    assert h.ok("GET", "/paid-fallback", peer=("192.0.2.7", 5000)) == {"value": "allow"}
    h.fails(401, "GET", key="wrong", peer=("192.0.2.7", 5000))


# ---- reads -----------------------------------------------------------------------------


def test_get_whole_section_masks_secrets(h):
    assert h.ok("GET") == {
        "upstream-url": "https://amp.example.com",
        "upstream-api-key": mask_secret(UPSTREAM_KEY),
        "upstream-api-keys": [
            {"upstream-api-key": mask_secret(TEAM_KEY), "api-keys": [mask_secret(CLIENT_KEY)]}
        ],
        "restrict-management-to-localhost": False,
        "force-model-mappings": False,
        "paid-fallback": "allow",
        "model-mappings": [
            {"from": "claude-opus-4-5-20251101", "to": "qwen3-coder", "regex": False},
            {"from": "^gpt-5.*", "to": ["gemini-2.5-pro", "qwen3-coder"], "regex": True},
        ],
    }
    body = h.call("GET").body.decode("utf-8")
    for secret in (UPSTREAM_KEY, TEAM_KEY, CLIENT_KEY, SECRET):
        assert secret not in body
    assert h.ok("GET", "/")["upstream-url"] == "https://amp.example.com"


@pytest.mark.parametrize(
    "sub, expected",
    [
        ("/upstream-url", "https://amp.example.com"),
        ("/upstream-api-key", "amp-" + ELLIPSIS + "ef"),
        ("/restrict-management-to-localhost", False),
        ("/force-model-mappings", False),
        ("/paid-fallback", "allow"),
        (
            "/upstream-api-keys",
            [{"upstream-api-key": "amp-" + ELLIPSIS + "yz", "api-keys": ["sk-l" + ELLIPSIS + "01"]}],
        ),
    ],
)
def test_get_single_field(h, sub, expected):
    assert h.ok("GET", sub) == {"value": expected}


def test_get_offline_upstream_and_absent_key_as_empty_strings(make):
    h = make(_with({"upstream-url": "", "upstream-api-key": ""}))
    assert h.ok("GET", "/upstream-url") == {"value": ""}
    assert h.ok("GET", "/upstream-api-key") == {"value": ""}


# ---- scalar changes --------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value, attribute, effective",
    [
        ("upstream-url", "https://other.example.com/", "upstream_url", "https://other.example.com"),
        ("upstream-url", "", "upstream_url", None),
        ("upstream-api-key", "amp-new-key-0987654321", "upstream_api_key", "amp-new-key-0987654321"),
        ("restrict-management-to-localhost", True, "restrict_management_to_localhost", True),
        ("force-model-mappings", True, "force_model_mappings", True),
        ("paid-fallback", "deny", "paid_fallback", PaidFallback.DENY),
    ],
)
def test_put_field_is_written_and_in_force(h, key, value, attribute, effective):
    before = h.store.current
    assert h.ok("PUT", "/" + key, value) == {"ok": True, "persisted": True}
    assert h.file_json()["ampcode"][key] == value
    assert getattr(h.store.current.ampcode, attribute) == effective
    assert h.store.current is not before
    # The file reloads to the same section the API put in force.
    reloaded, _ = load_file(h.path, environ={})
    assert reloaded.ampcode == h.store.current.ampcode


def test_put_then_get_answers_the_same_shape(h):
    h.ok("PUT", "/force-model-mappings", True)
    assert h.ok("GET", "/force-model-mappings") == {"value": True}


def test_put_env_reference_is_written_unresolved(make):
    h = make(environ={"NEW_AMP_KEY": "amp-from-environment-42"})
    h.ok("PUT", "/upstream-api-key", "env:NEW_AMP_KEY")
    assert h.file_json()["ampcode"]["upstream-api-key"] == "env:NEW_AMP_KEY"
    assert h.store.current.ampcode.upstream_api_key == "amp-from-environment-42"


def test_delete_field_removes_key_and_restores_default(h):
    assert h.ok("DELETE", "/upstream-url") == {"ok": True, "persisted": True}
    assert "upstream-url" not in h.file_json()["ampcode"]
    assert h.store.current.ampcode.upstream_url == "https://ampcode.com"
    h.ok("DELETE", "/upstream-api-key")
    assert "upstream-api-key" not in h.file_json()["ampcode"]
    assert h.store.current.ampcode.upstream_api_key is None
    # Deleting what is absent is not an error.
    assert h.ok("DELETE", "/paid-fallback") == {"ok": True, "persisted": True}


def test_put_null_is_refused(h):
    original = h.file_bytes()
    h.fails(400, "PUT", "/force-model-mappings", body=b'{"value": null}')
    assert h.file_bytes() == original


# ---- upstream-api-keys -----------------------------------------------------------------


def test_upstream_api_keys_put_then_get_masked(h):
    new = [
        {"upstream-api-key": "amp-team-b-key-1234567", "api-keys": [CLIENT_KEY, "sk-second-client-99"]},
        {"upstream-api-key": "amp-team-c-key-7654321", "api-keys": ["sk-third-client-777"]},
    ]
    h.ok("PUT", "/upstream-api-keys", new)
    assert h.file_json()["ampcode"]["upstream-api-keys"] == new
    in_force = h.store.current.ampcode.upstream_api_keys
    assert [m.upstream_api_key for m in in_force] == ["amp-team-b-key-1234567", "amp-team-c-key-7654321"]
    assert h.ok("GET", "/upstream-api-keys") == {
        "value": [
            {
                "upstream-api-key": mask_secret("amp-team-b-key-1234567"),
                "api-keys": [mask_secret(CLIENT_KEY), mask_secret("sk-second-client-99")],
            },
            {
                "upstream-api-key": mask_secret("amp-team-c-key-7654321"),
                "api-keys": [mask_secret("sk-third-client-777")],
            },
        ]
    }
    h.ok("DELETE", "/upstream-api-keys")
    assert "upstream-api-keys" not in h.file_json()["ampcode"]
    assert h.store.current.ampcode.upstream_api_keys == ()


def test_unknown_key_in_put_value_is_refused(h):
    original = h.file_bytes()
    error = h.fails(
        400,
        "PUT",
        "/upstream-api-keys",
        [{"upstream-api-key": TEAM_KEY, "api-keys": [CLIENT_KEY], "apikeys": ["x"]}],
    )
    assert "ampcode.upstream-api-keys[0].apikeys" in error.message
    assert h.file_bytes() == original


# ---- model-mappings --------------------------------------------------------------------


def _sources(h):
    return [m.source for m in h.store.current.ampcode.model_mappings]


def test_model_mappings_put_replaces_the_list(h):
    new = [{"from": "gpt-5", "to": "qwen3-coder"}]
    h.ok("PUT", "/model-mappings", new)
    assert h.file_json()["ampcode"]["model-mappings"] == new
    assert _sources(h) == ["gpt-5"]
    assert h.ok("GET", "/model-mappings") == {
        "value": [{"from": "gpt-5", "to": "qwen3-coder", "regex": False}]
    }


def test_model_mappings_patch_adds_and_replaces_by_from_case_insensitively(h):
    h.ok(
        "PATCH",
        "/model-mappings",
        [
            {"from": "CLAUDE-Opus-4-5-20251101", "to": "glm-4.6"},
            {"from": "claude-haiku-4-5", "to": "qwen3-coder"},
        ],
    )
    written = h.file_json()["ampcode"]["model-mappings"]
    assert written == [
        {"from": "CLAUDE-Opus-4-5-20251101", "to": "glm-4.6"},
        {"from": "^gpt-5.*", "to": ["gemini-2.5-pro", "qwen3-coder"], "regex": True},
        {"from": "claude-haiku-4-5", "to": "qwen3-coder"},
    ]
    in_force = h.store.current.ampcode.model_mappings
    assert [(m.source, m.targets) for m in in_force] == [
        ("CLAUDE-Opus-4-5-20251101", ("glm-4.6",)),
        ("^gpt-5.*", ("gemini-2.5-pro", "qwen3-coder")),
        ("claude-haiku-4-5", ("qwen3-coder",)),
    ]


def test_model_mappings_patch_takes_a_single_object(h):
    h.ok("PATCH", "/model-mappings", {"from": "^GPT-5.*", "to": "qwen3-coder", "regex": True})
    assert _sources(h) == ["claude-opus-4-5-20251101", "^GPT-5.*"]


def test_model_mappings_patch_entry_without_from_is_400(h):
    original = h.file_bytes()
    error = h.fails(400, "PATCH", "/model-mappings", [{"to": "qwen3-coder"}])
    assert "ampcode.model-mappings" in error.message
    assert h.file_bytes() == original


def test_model_mappings_delete_listed_entries(h):
    answer = h.ok("DELETE", "/model-mappings", ["Claude-Opus-4-5-20251101", "not-there"])
    assert answer == {"ok": True, "persisted": True, "removed": 1}
    assert h.file_json()["ampcode"]["model-mappings"] == [
        {"from": "^gpt-5.*", "to": ["gemini-2.5-pro", "qwen3-coder"], "regex": True}
    ]
    assert _sources(h) == ["^gpt-5.*"]


@pytest.mark.parametrize("body", [b"", b"  \n"])
def test_model_mappings_delete_without_body_removes_all(h, body):
    h.ok("DELETE", "/model-mappings", body=body)
    assert "model-mappings" not in h.file_json()["ampcode"]
    assert h.store.current.ampcode.model_mappings == ()


def test_model_mappings_delete_with_wrong_value_is_400(h):
    original = h.file_bytes()
    h.fails(400, "DELETE", "/model-mappings", [{"from": "x"}])
    h.fails(400, "DELETE", "/model-mappings", body=b"{}")
    assert h.file_bytes() == original


# ---- masked secrets --------------------------------------------------------------------


def test_masked_value_from_get_is_refused_and_file_untouched(h):
    original, before = h.file_bytes(), h.store.current
    shown = h.ok("GET", "/upstream-api-key")["value"]
    error = h.fails(400, "PUT", "/upstream-api-key", shown)
    assert "ampcode.upstream-api-key" in error.message and "masked" in error.message
    h.fails(400, "PUT", "/upstream-api-key", "anything" + ELLIPSIS + "else-at-all")
    h.fails(400, "PUT", "/upstream-api-key", "****")
    assert h.file_bytes() == original
    assert h.store.current is before


def test_masked_values_in_upstream_api_keys_are_refused(h):
    original = h.file_bytes()
    shown = h.ok("GET", "/upstream-api-keys")["value"]
    error = h.fails(400, "PUT", "/upstream-api-keys", shown)
    assert "ampcode.upstream-api-keys[0].upstream-api-key" in error.message
    partly = [{"upstream-api-key": "amp-real-new-key-123", "api-keys": [CLIENT_KEY, shown[0]["api-keys"][0]]}]
    error = h.fails(400, "PUT", "/upstream-api-keys", partly)
    assert "ampcode.upstream-api-keys[0].api-keys[1]" in error.message
    assert h.file_bytes() == original
    for secret in (UPSTREAM_KEY, TEAM_KEY, CLIENT_KEY):
        assert secret not in error.message


# ---- invalid changes -------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, sub, value, path",
    [
        ("PUT", "/paid-fallback", "maybe", "ampcode.paid-fallback"),
        ("PUT", "/upstream-url", "ftp://example.com", "ampcode.upstream-url"),
        ("PUT", "/force-model-mappings", "yes", "ampcode.force-model-mappings"),
        ("PUT", "/model-mappings", [{"from": "([", "to": "x", "regex": True}], "ampcode.model-mappings[0].from"),
        ("PATCH", "/model-mappings", [{"from": "([", "to": "x", "regex": True}], "ampcode.model-mappings[2].from"),
        ("PUT", "/upstream-api-keys", [{"upstream-api-key": "k-123456789012"}], "ampcode.upstream-api-keys[0].api-keys"),
    ],
)
def test_invalid_value_is_400_naming_the_path_and_nothing_changes(h, method, sub, value, path):
    original, before = h.file_bytes(), h.store.current
    error = h.fails(400, method, sub, value)
    assert path in error.message
    assert h.file_bytes() == original
    assert h.store.current is before


@pytest.mark.parametrize("body", [b"{not json", b'{"value": NaN}', b"[1]", b'{"value": 1, "x": 2}', b"\xff\xfe"])
def test_bad_body_is_400(h, body):
    original = h.file_bytes()
    h.fails(400, "PUT", "/force-model-mappings", body=body)
    assert h.file_bytes() == original


def test_oversized_body_is_413(h):
    h.fails(413, "PUT", "/upstream-url", body=b" " * (MAX_BODY_BYTES + 1))


@pytest.mark.parametrize("sub", ["/nope", "/upstream-url/extra", "/../api-keys"])
def test_unknown_sub_path_is_404(h, sub):
    h.fails(404, "GET", sub)


def test_management_root_is_404(h):
    request = _Request("GET", "/v0/management", Headers([("x-management-key", SECRET)]), ("127.0.0.1", 1), b"")
    with pytest.raises(ProxyError) as info:
        _run(h.api.handle(request, h.store.current, h.store))
    assert info.value.status == 404


@pytest.mark.parametrize(
    "method, sub, allowed",
    [
        ("PUT", "", "GET"),
        ("DELETE", "", "GET"),
        ("PATCH", "/upstream-url", "GET, PUT, DELETE"),
        ("POST", "/model-mappings", "GET, PUT, PATCH, DELETE"),
    ],
)
def test_wrong_method_is_405_with_allow(h, method, sub, allowed):
    error = h.fails(405, method, sub, value=True)
    assert ("allow", allowed) in error.headers


# ---- the rest of the file --------------------------------------------------------------


def _pairs(data):
    return json.loads(data.decode("utf-8"), object_pairs_hook=list)


def test_other_keys_keep_value_and_order(h):
    before = _pairs(h.file_bytes())
    h.ok("PUT", "/paid-fallback", "deny")
    h.ok("PATCH", "/model-mappings", {"from": "new-model", "to": "qwen3-coder"})
    h.ok("DELETE", "/upstream-api-key")
    after = _pairs(h.file_bytes())
    assert [k for k, _ in after] == [k for k, _ in before]
    for (key, old), (_, new) in zip(before, after):
        if key != "ampcode":
            assert new == old
    old_section, new_section = dict(before)["ampcode"], dict(after)["ampcode"]
    assert [k for k, _ in new_section] == ["upstream-url", "upstream-api-keys", "model-mappings", "paid-fallback"]
    assert dict(new_section)["upstream-api-keys"] == dict(old_section)["upstream-api-keys"]
    # The serialised text of an untouched section is unchanged too.
    text_before = json.dumps(DOCUMENT["claude-api-key"], indent=2)
    assert h.file_json()["claude-api-key"] == DOCUMENT["claude-api-key"]
    assert text_before.replace("\n", "\n  ") in h.file_bytes().decode("utf-8")


def test_settings_outside_ampcode_stay_as_in_force(h):
    # Command-line overrides (host/port) live only in the config in force.
    h.store.swap(dataclasses.replace(h.store.current, port=9999))
    h.ok("PUT", "/force-model-mappings", True)
    assert h.store.current.port == 9999
    assert h.store.current.request_retry == 2


def test_an_edit_saved_to_the_file_but_not_yet_reloaded_is_kept(h):
    _write(pathlib.Path(h.path), _with(**{"request-retry": 5}))
    h.ok("PUT", "/paid-fallback", "deny")
    assert h.file_json()["request-retry"] == 5
    assert h.file_json()["ampcode"]["paid-fallback"] == "deny"


def test_file_that_became_invalid_json_is_409_and_kept(h):
    with open(h.path, "w") as handle:
        handle.write('{"ampcode": ')
    error = h.fails(409, "PUT", "/paid-fallback", "deny")
    assert "fix it first" in error.message
    with open(h.path) as handle:
        assert handle.read() == '{"ampcode": '


def test_file_whose_ampcode_is_not_an_object_is_409(make):
    h = make(_with())
    _write(pathlib.Path(h.path), dict(DOCUMENT, ampcode="off"))
    h.fails(409, "PUT", "/paid-fallback", "deny")


def test_loader_warnings_about_the_changed_key_are_answered(h):
    answer = h.ok("PUT", "/model-mappings", [{"from": "gpt-5", "to": "a"}, {"from": "GPT-5", "to": "b"}])
    assert answer["ok"] is True
    assert len(answer["warnings"]) == 1
    assert answer["warnings"][0].startswith("ampcode.model-mappings[1].from: same model as")


# ---- built-in defaults, no file --------------------------------------------------------


def test_without_a_file_changes_apply_in_memory_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = dataclasses.replace(default_config(), remote_management=RemoteManagement(secret_key=SECRET))
    h = Harness(None, config)
    assert h.ok("PUT", "/paid-fallback", "deny") == {"ok": True, "persisted": False}
    assert h.ok("PATCH", "/model-mappings", {"from": "gpt-5", "to": "qwen3-coder"}) == {
        "ok": True,
        "persisted": False,
    }
    current = h.store.current
    assert current.ampcode.paid_fallback is PaidFallback.DENY  # the first change stays
    assert [m.source for m in current.ampcode.model_mappings] == ["gpt-5"]
    assert current.remote_management.secret_key == SECRET
    assert current.source_path is None
    assert list(tmp_path.iterdir()) == []


# ---- logging ---------------------------------------------------------------------------


def test_one_info_line_per_change_without_values(h, caplog):
    caplog.set_level(logging.DEBUG, logger="cliproxy")
    h.ok("GET")
    h.ok("PUT", "/upstream-api-key", "amp-brand-new-secret-77")
    h.fails(400, "PUT", "/upstream-api-key", mask_secret(UPSTREAM_KEY))
    records = [r for r in caplog.records if r.name == "cliproxy.ops.management"]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.INFO
    assert record.fields["key"] == "ampcode.upstream-api-key"
    rendered = record.getMessage() + repr(record.fields)
    for secret in ("amp-brand-new-secret-77", UPSTREAM_KEY, SECRET):
        assert secret not in rendered
