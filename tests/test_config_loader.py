"""Tests for cliproxy.config.loader: JSON document → Config, errors named by JSON path."""

import codecs
import json
import os
import re

import pytest

from cliproxy.config.loader import (
    ConfigError,
    default_config,
    find_config,
    is_loopback,
    load_file,
    parse_document,
)
from cliproxy.config.model import (
    TLS,
    Config,
    Limits,
    ModelEntry,
    PaidFallback,
    ProviderKind,
    UpstreamKeyMapping,
)
from cliproxy.errors import ProxyError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "config.example.json")


def parse(doc, **kwargs):
    kwargs.setdefault("environ", {})
    return parse_document(doc, **kwargs)


def errors_of(doc, **kwargs):
    with pytest.raises(ConfigError) as info:
        parse(doc, **kwargs)
    return info.value.errors


# ---- defaults ----------------------------------------------------------------------------


def test_empty_document_gives_the_builtin_defaults():
    config, warnings = parse({})
    assert warnings == []
    assert config == default_config()
    assert config.host == "127.0.0.1" and config.port == 8317
    assert config.ampcode.upstream_url == "https://ampcode.com"
    assert config.ampcode.paid_fallback is PaidFallback.ALLOW
    assert config.providers == ()
    assert config.limits == Limits()
    assert config.limits.drain_timeout == 30.0
    assert config.reload_interval == 2.0
    assert config.request_retry == 1
    assert config.proxy_url is None and config.ca_bundle is None


def test_default_config_has_no_source():
    config = default_config()
    assert config.source_path is None
    assert config.document is None


def test_null_is_the_same_as_an_absent_key():
    config, _ = parse({"port": None, "ampcode": {"upstream-url": None}})
    assert config.port == 8317
    assert config.ampcode.upstream_url == "https://ampcode.com"


def test_document_is_kept_as_written():
    doc = {"api-keys": ["env:K"], "port": 9000}
    config, _ = parse(doc, environ={"K": "secret"})
    assert config.document == doc
    assert config.document is not doc
    assert config.api_keys == ("secret",)


def test_config_error_is_a_proxy_error_carrying_every_error():
    with pytest.raises(ConfigError) as info:
        parse({"port": "x", "debug": 1})
    assert isinstance(info.value, ProxyError)
    assert info.value.status == 400
    assert len(info.value.errors) == 2


# ---- one error per rule, with its exact path ------------------------------------------------

ERROR_CASES = [
    ({"host": ""}, "host: must be a non-empty string"),
    ({"host": 5}, "host: must be a string"),
    ({"port": 70000}, "port: must be an integer from 0 to 65535 (0: any free port)"),
    ({"port": -1}, "port: must be an integer from 0 to 65535 (0: any free port)"),
    ({"port": "8317"}, "port: must be an integer from 0 to 65535 (0: any free port)"),
    ({"port": True}, "port: must be an integer from 0 to 65535 (0: any free port)"),
    ({"port": 8317.5}, "port: must be an integer from 0 to 65535 (0: any free port)"),
    ({"tls": []}, "tls: must be an object"),
    ({"tls": {"enable": "yes"}}, "tls.enable: must be true or false"),
    ({"api-keys": "k"}, "api-keys: must be a list"),
    ({"api-keys": ["a", ""]}, "api-keys[1]: must be a non-empty string"),
    ({"api-keys": ["a", 3]}, "api-keys[1]: must be a string"),
    ({"allow-unauthenticated": "true"}, "allow-unauthenticated: must be true or false"),
    ({"proxy-url": "socks5://127.0.0.1:1080"}, "proxy-url: only http proxies are supported"),
    ({"proxy-url": "ftp://h:1"}, 'proxy-url: must be "", "direct" or http://[user:pass@]host:port'),
    ({"proxy-url": "https://h:443"}, "proxy-url: only http proxies are supported"),
    ({"proxy-url": "http://:8080"}, 'proxy-url: must be "", "direct" or http://[user:pass@]host:port'),
    ({"proxy-url": "http://h:1/x"}, 'proxy-url: must be "", "direct" or http://[user:pass@]host:port'),
    ({"proxy-url": "http://h:99999"}, 'proxy-url: must be "", "direct" or http://[user:pass@]host:port'),
    ({"request-retry": -1}, "request-retry: must be an integer >= 0"),
    ({"limits": {"max-header-bytes": 1023}}, "limits.max-header-bytes: must be an integer >= 1024"),
    ({"limits": {"max-body-bytes": 0}}, "limits.max-body-bytes: must be an integer >= 1"),
    ({"limits": {"connect-timeout": 0}}, "limits.connect-timeout: must be a number > 0"),
    ({"limits": {"read-timeout": -5}}, "limits.read-timeout: must be a number > 0"),
    ({"limits": {"idle-timeout": "75"}}, "limits.idle-timeout: must be a number > 0"),
    ({"limits": {"drain-timeout": False}}, "limits.drain-timeout: must be a number > 0"),
    ({"debug": 0}, "debug: must be true or false"),
    ({"request-log": "no"}, "request-log: must be true or false"),
    ({"logs-dir": ""}, "logs-dir: must be a non-empty string"),
    ({"error-logs-max-files": -1}, "error-logs-max-files: must be an integer >= 0"),
    ({"reload-interval": 0}, "reload-interval: must be a number > 0"),
    ({"remote-management": {"allow-remote": 1}}, "remote-management.allow-remote: must be true or false"),
    ({"remote-management": {"secret-key": 1}}, "remote-management.secret-key: must be a string"),
    ({"claude-api-key": {}}, "claude-api-key: must be a list"),
    ({"claude-api-key": [{}]}, "claude-api-key[0].api-key: required"),
    ({"gemini-api-key": [{"api-key": ""}]}, "gemini-api-key[0].api-key: must be a non-empty string"),
    (
        {"codex-api-key": [{"api-key": "k", "base-url": "api.openai.com"}]},
        "codex-api-key[0].base-url: must be an http:// or https:// URL",
    ),
    (
        {"claude-api-key": [{"api-key": "k", "headers": {"X-A": 1}}]},
        "claude-api-key[0].headers.X-A: must be a string",
    ),
    (
        {"claude-api-key": [{"api-key": "k", "headers": {"Bad Name": "v"}}]},
        "claude-api-key[0].headers.Bad Name: not a valid header name",
    ),
    (
        {"claude-api-key": [{"api-key": "k", "headers": {"X-A": "a\r\nB: c"}}]},
        "claude-api-key[0].headers.X-A: header value must not contain CR, LF or NUL",
    ),
    (
        {"claude-api-key": [{"api-key": "k", "headers": []}]},
        "claude-api-key[0].headers: must be an object of header name to value",
    ),
    (
        {"claude-api-key": [{"api-key": "k", "proxy-url": "socks5h://h:1"}]},
        "claude-api-key[0].proxy-url: only http proxies are supported",
    ),
    (
        {"claude-api-key": [{"api-key": "k", "models": [{"alias": "x"}]}]},
        "claude-api-key[0].models[0].name: required",
    ),
    (
        {"claude-api-key": [{"api-key": "k", "excluded-models": [""]}]},
        "claude-api-key[0].excluded-models[0]: must be a non-empty string",
    ),
    ({"openai-compatibility": [{"base-url": "http://h", "models": [{"name": "m"}]}]}, "openai-compatibility[0].name: required"),
    ({"openai-compatibility": [{"name": "n", "models": [{"name": "m"}]}]}, "openai-compatibility[0].base-url: required"),
    ({"openai-compatibility": [{"name": "n", "base-url": "http://h"}]}, "openai-compatibility[0].models: required"),
    (
        {"openai-compatibility": [{"name": "n", "base-url": "http://h", "models": []}]},
        "openai-compatibility[0].models: must be a non-empty list",
    ),
    (
        {"openai-compatibility": [{"name": "n", "base-url": "http://h", "models": [{"name": "m"}],
                                   "api-key-entries": [{"api-key": 5}]}]},
        "openai-compatibility[0].api-key-entries[0].api-key: must be a string",
    ),
    ({"ampcode": {"upstream-url": "ampcode.com"}}, "ampcode.upstream-url: must be an http:// or https:// URL"),
    ({"ampcode": {"upstream-api-key": 1}}, "ampcode.upstream-api-key: must be a string"),
    (
        {"ampcode": {"upstream-api-keys": [{"api-keys": ["k"]}]}},
        "ampcode.upstream-api-keys[0].upstream-api-key: required",
    ),
    (
        {"ampcode": {"upstream-api-keys": [{"upstream-api-key": "u", "api-keys": []}]}},
        "ampcode.upstream-api-keys[0].api-keys: must be a non-empty list",
    ),
    (
        {"ampcode": {"restrict-management-to-localhost": "yes"}},
        "ampcode.restrict-management-to-localhost: must be true or false",
    ),
    ({"ampcode": {"force-model-mappings": 1}}, "ampcode.force-model-mappings: must be true or false"),
    ({"ampcode": {"paid-fallback": "maybe"}}, 'ampcode.paid-fallback: must be "allow" or "deny"'),
    ({"ampcode": {"model-mappings": {}}}, "ampcode.model-mappings: must be a list"),
    ({"ampcode": {"model-mappings": ["x"]}}, "ampcode.model-mappings[0]: must be an object"),
    ({"ampcode": {"model-mappings": [{"to": "x"}]}}, "ampcode.model-mappings[0].from: required"),
    ({"ampcode": {"model-mappings": [{"from": "", "to": "x"}]}}, "ampcode.model-mappings[0].from: must be a non-empty string"),
    ({"ampcode": {"model-mappings": [{"from": "a"}]}}, "ampcode.model-mappings[0].to: required"),
    ({"ampcode": {"model-mappings": [{"from": "a", "to": "x", "regex": "yes"}]}}, "ampcode.model-mappings[0].regex: must be true or false"),
]

TO_ERROR = "ampcode.model-mappings[2].to: must be a model name or a list of model names"


@pytest.mark.parametrize("doc, expected", ERROR_CASES)
def test_each_rule_reports_its_path(doc, expected):
    assert errors_of(doc) == [expected]


@pytest.mark.parametrize("bad_to", ["", [], ["a", ""], 5, ["a", 5], {"m": 1}])
def test_mapping_to_must_be_a_model_or_a_list_of_models(bad_to):
    mappings = [{"from": "a", "to": "x"}, {"from": "b", "to": ["y"]}, {"from": "c", "to": bad_to}]
    assert errors_of({"ampcode": {"model-mappings": mappings}}) == [TO_ERROR]


def test_not_an_object_at_the_top():
    assert errors_of([1]) == ["(document): must be an object"]


def test_every_error_is_collected_in_one_pass():
    doc = {
        "port": 0.5,
        "proxy-url": "socks5://h:1",
        "limits": {"read-timeout": 0, "max-body-bytes": "big"},
        "claude-api-key": [{"api-key": "ok"}, {}],
        "openai-compatibility": [{"name": "n", "base-url": "ftp://h", "models": []}],
        "ampcode": {
            "paid-fallback": "never",
            "model-mappings": [{"from": "a", "to": []}, {"from": "(", "to": "x", "regex": True}],
        },
    }
    errors = errors_of(doc)
    assert sorted(errors) == sorted(
        [
            "port: must be an integer from 0 to 65535 (0: any free port)",
            "proxy-url: only http proxies are supported",
            "limits.max-body-bytes: must be an integer >= 1",
            "limits.read-timeout: must be a number > 0",
            "claude-api-key[1].api-key: required",
            "openai-compatibility[0].base-url: must be an http:// or https:// URL",
            "openai-compatibility[0].models: must be a non-empty list",
            'ampcode.paid-fallback: must be "allow" or "deny"',
            "ampcode.model-mappings[0].to: must be a model name or a list of model names",
            "ampcode.model-mappings[1].from: invalid regular expression: "
            "missing ), unterminated subpattern at position 0",
        ]
    )


# ---- unknown keys ------------------------------------------------------------------------

UNKNOWN_CASES = [
    ({"prot": 1}, 'prot: unknown key (did you mean "port"?)'),
    ({"ampcode": {"model-mapings": []}}, 'ampcode.model-mapings: unknown key (did you mean "model-mappings"?)'),
    ({"limits": {"read-timout": 5}}, 'limits.read-timout: unknown key (did you mean "read-timeout"?)'),
    ({"tls": {"enabled": False}}, 'tls.enabled: unknown key (did you mean "enable"?)'),
    ({"remote-management": {"secret": "x"}}, 'remote-management.secret: unknown key (did you mean "secret-key"?)'),
    ({"claude-api-key": [{"api-key": "k", "base_url": "https://x"}]}, 'claude-api-key[0].base_url: unknown key (did you mean "base-url"?)'),
    ({"claude-api-key": [{"api-key": "k", "models": [{"name": "m", "alais": "a"}]}]}, 'claude-api-key[0].models[0].alais: unknown key (did you mean "alias"?)'),
    ({"ampcode": {"model-mappings": [{"from": "a", "to": "b", "regexp": True}]}}, 'ampcode.model-mappings[0].regexp: unknown key (did you mean "regex"?)'),
    ({"ampcode": {"upstream-api-keys": [{"upstream-api-key": "u", "api-keys": ["k"], "zzz": 1}]}}, "ampcode.upstream-api-keys[0].zzz: unknown key"),
    ({"openai-compatibility": [{"name": "n", "base-url": "http://h", "models": [{"name": "m"}], "api-key-entries": [{"apikey": ""}]}]},
     'openai-compatibility[0].api-key-entries[0].apikey: unknown key (did you mean "api-key"?)'),
]


@pytest.mark.parametrize("doc, message", UNKNOWN_CASES)
def test_unknown_key_is_a_warning_at_runtime(doc, message):
    config, warnings = parse(doc)
    assert warnings == [message]
    assert isinstance(config, Config)


@pytest.mark.parametrize("doc, message", UNKNOWN_CASES)
def test_unknown_key_is_an_error_when_strict(doc, message):
    assert errors_of(doc, strict=True) == [message]


def test_unknown_key_without_a_close_match_has_no_hint():
    _, warnings = parse({"completely-different": 1})
    assert warnings == ["completely-different: unknown key"]


def test_duplicate_json_key_is_reported(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"port": 1000, "port": 2000}')
    config, warnings = load_file(str(path), environ={})
    assert config.port == 2000
    assert warnings == ["port: duplicate key (the last one is used)"]
    with pytest.raises(ConfigError) as info:
        load_file(str(path), environ={}, strict=True)
    assert info.value.errors == ["port: duplicate key"]


# ---- env: substitution -------------------------------------------------------------------


def test_env_values_are_substituted_wherever_a_string_is_accepted():
    environ = {"KEY": "sk-ant-1", "URL": "https://proxy.example/", "HDR": "v1", "MODEL": "qwen"}
    doc = {
        "claude-api-key": [{"api-key": "env:KEY", "base-url": "env:URL", "headers": {"X-A": "env:HDR"}}],
        "ampcode": {"model-mappings": [{"from": "a", "to": ["env:MODEL"]}]},
    }
    config, _ = parse(doc, environ=environ)
    entry = config.providers[0]
    assert entry.api_key == "sk-ant-1"
    assert entry.base_url == "https://proxy.example"
    assert entry.headers == (("X-A", "v1"),)
    assert config.ampcode.model_mappings[0].targets == ("qwen",)


def test_missing_env_variable_names_the_path_and_the_variable():
    errors = errors_of({"claude-api-key": [{"api-key": "env:NOPE_KEY"}]}, environ={"OTHER": "x"})
    assert errors == ["claude-api-key[0].api-key: environment variable NOPE_KEY is not set"]


def test_env_value_is_validated_and_never_echoed():
    errors = errors_of({"ampcode": {"upstream-url": "env:U"}}, environ={"U": "not-a-url-secret"})
    assert errors == ["ampcode.upstream-url: must be an http:// or https:// URL"]
    assert "secret" not in errors[0]


def test_env_without_a_name_is_an_error():
    assert errors_of({"api-keys": ["env:"]}) == ['api-keys[0]: "env:" needs a variable name']


def test_invalid_proxy_url_error_does_not_leak_its_password():
    errors = errors_of({"proxy-url": "ftp://user:hunter2@h:1"})
    assert "hunter2" not in " ".join(errors)


# ---- ampcode -----------------------------------------------------------------------------


def test_upstream_url_omitted_empty_and_trailing_slash():
    assert parse({"ampcode": {}})[0].ampcode.upstream_url == "https://ampcode.com"
    assert parse({"ampcode": {"upstream-url": ""}})[0].ampcode.upstream_url is None
    url = parse({"ampcode": {"upstream-url": "http://10.0.0.5:8080/"}})[0].ampcode.upstream_url
    assert url == "http://10.0.0.5:8080"


def test_upstream_keys_and_flags():
    doc = {
        "api-keys": ["sk-1"],
        "ampcode": {
            "upstream-api-key": "",
            "upstream-api-keys": [{"upstream-api-key": "amp-a", "api-keys": ["sk-1"]}],
            "restrict-management-to-localhost": True,
            "force-model-mappings": True,
            "paid-fallback": "deny",
        },
    }
    amp = parse(doc)[0].ampcode
    assert amp.upstream_api_key is None
    assert amp.upstream_api_keys == (UpstreamKeyMapping("amp-a", ("sk-1",)),)
    assert amp.restrict_management_to_localhost and amp.force_model_mappings
    assert amp.paid_fallback is PaidFallback.DENY


def test_model_mappings_keep_file_order_and_compile_regexes():
    doc = {
        "ampcode": {
            "model-mappings": [
                {"from": "claude-opus-4-5", "to": "qwen3-coder"},
                {"from": "^gpt-5.*", "to": ["gemini-2.5-pro", "qwen3-coder"], "regex": True},
            ]
        }
    }
    first, second = parse(doc)[0].ampcode.model_mappings
    assert (first.source, first.targets, first.regex, first.index) == (
        "claude-opus-4-5",
        ("qwen3-coder",),
        False,
        0,
    )
    assert first.pattern is None
    assert second.targets == ("gemini-2.5-pro", "qwen3-coder") and second.index == 1
    assert second.pattern.flags & re.IGNORECASE
    assert second.pattern.match("GPT-5-codex")


def test_invalid_regex_names_the_path():
    doc = {"ampcode": {"model-mappings": [{"from": "ok", "to": "x"}, {"from": "[a-", "to": "x", "regex": True}]}}
    (error,) = errors_of(doc)
    assert error.startswith("ampcode.model-mappings[1].from: invalid regular expression: ")


def test_an_invalid_regex_is_fine_as_an_exact_name():
    config, _ = parse({"ampcode": {"model-mappings": [{"from": "[a-", "to": "x"}]}})
    assert config.ampcode.model_mappings[0].source == "[a-"


def test_duplicate_exact_from_warns_naming_both_paths():
    doc = {"ampcode": {"model-mappings": [
        {"from": "Claude-X", "to": "a"},
        {"from": "^b", "to": "b", "regex": True},
        {"from": "claude-x", "to": "c"},
    ]}}
    config, warnings = parse(doc)
    assert warnings == [
        "ampcode.model-mappings[2].from: same model as ampcode.model-mappings[0].from "
        "(the first one wins)"
    ]
    assert len(config.ampcode.model_mappings) == 3


# ---- providers ---------------------------------------------------------------------------


def test_provider_entries_get_their_kind_defaults_and_paths():
    doc = {
        "claude-api-key": [{"api-key": "a1"}, {"api-key": "a2", "base-url": "https://claude.corp/v1/"}],
        "gemini-api-key": [{"api-key": "g1"}],
        "codex-api-key": [{"api-key": "c1", "proxy-url": "direct"}],
    }
    providers = parse(doc)[0].providers
    assert [(p.kind, p.path, p.name, p.base_url) for p in providers] == [
        (ProviderKind.CLAUDE, "claude-api-key[0]", "claude-api-key", "https://api.anthropic.com"),
        (ProviderKind.CLAUDE, "claude-api-key[1]", "claude-api-key", "https://claude.corp/v1"),
        (ProviderKind.GEMINI, "gemini-api-key[0]", "gemini-api-key", "https://generativelanguage.googleapis.com"),
        (ProviderKind.CODEX, "codex-api-key[0]", "codex-api-key", "https://api.openai.com/v1"),
    ]
    assert providers[3].proxy_url == "direct"
    assert providers[0].proxy_url is None


def test_provider_models_headers_and_exclusions():
    doc = {"claude-api-key": [{
        "api-key": "k",
        "headers": {"X-One": "1", "x-two": "2"},
        "models": [{"name": "claude-sonnet-4-5", "alias": ""}, {"name": "claude-opus-4-5", "alias": "opus"}],
        "excluded-models": ["claude-3-*"],
    }]}
    entry = parse(doc)[0].providers[0]
    assert entry.headers == (("X-One", "1"), ("x-two", "2"))
    assert entry.models == (ModelEntry("claude-sonnet-4-5", None), ModelEntry("claude-opus-4-5", "opus"))
    assert entry.models[0].visible == "claude-sonnet-4-5"
    assert entry.excluded_models == ("claude-3-*",)


def test_openai_compatibility_expands_into_one_entry_per_key():
    doc = {
        "openai-compatibility": [
            {
                "name": "router",
                "base-url": "https://router.example/v1",
                "api-key-entries": [{"api-key": "r1"}, {"api-key": "r2", "proxy-url": "http://p:3128"}],
                "headers": {"X-T": "t"},
                "models": [{"name": "m1", "alias": "one"}],
                "excluded-models": ["m2"],
            },
            {"name": "ollama", "base-url": "http://127.0.0.1:11434/v1", "models": [{"name": "qwen"}]},
            {"name": "lm", "base-url": "http://127.0.0.1:1234/v1", "api-key-entries": [],
             "models": [{"name": "x"}]},
        ]
    }
    entries = parse(doc)[0].providers
    assert [(e.path, e.name, e.api_key, e.proxy_url) for e in entries] == [
        ("openai-compatibility[0].api-key-entries[0]", "router", "r1", None),
        ("openai-compatibility[0].api-key-entries[1]", "router", "r2", "http://p:3128"),
        ("openai-compatibility[1]", "ollama", "", None),
        ("openai-compatibility[2]", "lm", "", None),
    ]
    assert all(e.kind is ProviderKind.OPENAI_COMPAT for e in entries)
    assert entries[0].models == entries[1].models == (ModelEntry("m1", "one"),)
    assert entries[1].headers == (("X-T", "t"),) and entries[1].excluded_models == ("m2",)
    assert entries[1].base_url == "https://router.example/v1"


def test_providers_are_grouped_by_kind_in_file_order():
    doc = {
        "openai-compatibility": [{"name": "o", "base-url": "http://h", "models": [{"name": "m"}]}],
        "codex-api-key": [{"api-key": "c"}],
        "claude-api-key": [{"api-key": "a"}],
    }
    kinds = [p.kind for p in parse(doc)[0].providers]
    assert kinds == [ProviderKind.CLAUDE, ProviderKind.CODEX, ProviderKind.OPENAI_COMPAT]


# ---- top-level values --------------------------------------------------------------------


def test_port_zero_means_any_free_port():
    assert parse({"port": 0})[0].port == 0


@pytest.mark.parametrize("value", ["", "direct", "http://proxy:3128", "http://u:p@proxy.corp:8443", "http://proxy.corp"])
def test_proxy_url_accepted_forms(value):
    expected = None if value == "" else value
    assert parse({"proxy-url": value})[0].proxy_url == expected


def test_limits_and_numbers():
    doc = {"limits": {"max-header-bytes": 1024, "max-body-bytes": 1, "connect-timeout": 0.5,
                      "read-timeout": 30, "idle-timeout": 5, "drain-timeout": 2},
           "reload-interval": 0.25, "request-retry": 0, "error-logs-max-files": 0}
    config = parse(doc)[0]
    assert config.limits == Limits(1024, 1, 0.5, 30.0, 5.0, 2.0)
    assert isinstance(config.limits.read_timeout, float)
    assert config.reload_interval == 0.25
    assert config.request_retry == 0 and config.error_logs_max_files == 0


def test_remote_management_empty_secret_is_none():
    config = parse({"remote-management": {"allow-remote": True, "secret-key": ""}})[0]
    assert config.remote_management.allow_remote is True
    assert config.remote_management.secret_key is None


# ---- empty api-keys rule -----------------------------------------------------------------

OPEN_ERROR = re.compile(r'^api-keys: empty while host is 0\.0\.0\.0: .*"allow-unauthenticated": true$')


def test_empty_api_keys_on_all_interfaces_is_refused():
    (error,) = errors_of({"host": "0.0.0.0"})
    assert OPEN_ERROR.match(error)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_empty_api_keys_on_loopback_is_allowed(host):
    assert parse({"host": host, "api-keys": []})[0].api_keys == ()


def test_empty_api_keys_with_allow_unauthenticated_is_allowed():
    config = parse({"host": "0.0.0.0", "allow-unauthenticated": True})[0]
    assert config.allow_unauthenticated is True


def test_api_keys_on_all_interfaces_is_allowed():
    assert parse({"host": "0.0.0.0", "api-keys": ["sk-1"]})[0].api_keys == ("sk-1",)


def test_empty_api_keys_rule_is_reported_with_other_errors():
    errors = errors_of({"host": "::", "port": -1})
    assert errors[0].startswith("port: ")
    assert errors[1].startswith("api-keys: empty while host is ::")


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("example.com")


# ---- files -------------------------------------------------------------------------------


def test_tls_needs_existing_cert_and_key(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    errors = errors_of({"tls": {"enable": True, "cert": str(cert), "key": str(tmp_path / "none.pem")}})
    assert errors == ["tls.key: file not found: %s" % (tmp_path / "none.pem")]
    errors = errors_of({"tls": {"enable": True}})
    assert errors == [
        "tls.cert: required when tls.enable is true",
        "tls.key: required when tls.enable is true",
    ]


def test_disabled_tls_does_not_check_files():
    config = parse({"tls": {"enable": False, "cert": "/nope/cert.pem", "key": ""}})[0]
    assert config.tls == TLS(False, "/nope/cert.pem", None)


def test_relative_files_follow_the_config_file(tmp_path):
    (tmp_path / "certs").mkdir()
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp_path / "certs" / name).write_text("x")
    doc = {"tls": {"enable": True, "cert": "certs/cert.pem", "key": "certs/key.pem"},
           "ca-bundle": "certs/ca.pem", "logs-dir": "var/logs"}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    config = load_file(str(path), environ={})[0]
    assert config.tls.cert == str(tmp_path / "certs" / "cert.pem")
    assert config.tls.key == str(tmp_path / "certs" / "key.pem")
    assert config.ca_bundle == str(tmp_path / "certs" / "ca.pem")
    assert config.logs_dir == str(tmp_path / "var" / "logs")


def test_default_logs_dir_follows_the_config_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{}")
    assert load_file(str(path), environ={})[0].logs_dir == str(tmp_path / "logs")
    assert parse({})[0].logs_dir == "logs"


def test_ca_bundle_must_exist_when_set(tmp_path):
    missing = str(tmp_path / "ca.pem")
    assert errors_of({"ca-bundle": missing}) == ["ca-bundle: file not found: %s" % missing]
    assert parse({"ca-bundle": ""})[0].ca_bundle is None


def test_load_file_keeps_path_and_document(tmp_path):
    path = tmp_path / "config.json"
    doc = {"port": 9001, "ampcode": {"upstream-url": ""}}
    path.write_text(json.dumps(doc))
    config, warnings = load_file(str(path), environ={})
    assert warnings == []
    assert config.source_path == str(path)
    assert config.document == doc
    assert config.port == 9001 and config.ampcode.upstream_url is None


def test_load_file_tolerates_a_bom(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(codecs.BOM_UTF8 + b'{"port": 9002}')
    assert load_file(str(path), environ={})[0].port == 9002


def test_json_syntax_error_names_line_and_column(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{\n  "port": 8317\n  "host": "x"\n}\n')
    with pytest.raises(ConfigError) as info:
        load_file(str(path), environ={})
    assert info.value.errors == [
        "%s: invalid JSON at line 3 column 3: Expecting ',' delimiter" % path
    ]


def test_nan_is_not_json(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"reload-interval": NaN}')
    with pytest.raises(ConfigError) as info:
        load_file(str(path), environ={})
    assert info.value.errors == ["%s: invalid JSON: NaN is not valid JSON" % path]


def test_missing_and_undecodable_files(tmp_path):
    missing = str(tmp_path / "nope.json")
    with pytest.raises(ConfigError) as info:
        load_file(missing, environ={})
    assert info.value.errors == ["%s: cannot read: No such file or directory" % missing]
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"host": "\xe9"}')
    with pytest.raises(ConfigError) as info:
        load_file(str(path), environ={})
    assert info.value.errors == ["%s: not UTF-8 (byte 10)" % path]


def test_find_config(tmp_path):
    assert find_config("/etc/cliproxy/missing.json", str(tmp_path)) == "/etc/cliproxy/missing.json"
    assert find_config(None, str(tmp_path)) is None
    (tmp_path / "config.json").write_text("{}")
    assert find_config(None, str(tmp_path)) == os.path.join(str(tmp_path), "config.json")


# ---- the shipped example -----------------------------------------------------------------

EXAMPLE_ENV = {
    "CLIPROXY_API_KEY": "sk-local-1",
    "ANTHROPIC_API_KEY": "sk-ant-test",
    "GEMINI_API_KEY": "AIza-test",
    "OPENAI_API_KEY": "sk-openai-test",
    "AMP_TEAM_A_KEY": "amp-team-a",
}


def test_example_config_is_valid_when_strict():
    config, warnings = load_file(EXAMPLE, environ=EXAMPLE_ENV, strict=True)
    assert warnings == []
    assert config.api_keys == ("sk-local-1",)
    assert [p.path for p in config.providers] == [
        "claude-api-key[0]",
        "gemini-api-key[0]",
        "codex-api-key[0]",
        "openai-compatibility[0].api-key-entries[0]",
    ]
    assert config.providers[0].api_key == "sk-ant-test"
    assert config.ampcode.upstream_api_keys[0] == UpstreamKeyMapping("amp-team-a", ("sk-local-1",))
    assert len(config.ampcode.model_mappings) == 2
    with open(EXAMPLE) as handle:
        assert "sk-ant-test" not in handle.read()


def test_documented_defaults_are_the_builtin_defaults():
    with open(os.path.join(ROOT, "docs", "config.md")) as handle:
        blocks = re.findall(r"```json\n(.*?)```", handle.read(), re.S)
    config, warnings = parse(json.loads(blocks[-1]), strict=True)
    assert warnings == []
    assert config == default_config()


def test_example_config_names_every_missing_variable():
    with pytest.raises(ConfigError) as info:
        load_file(EXAMPLE, environ={}, strict=True)
    names = sorted(re.search(r"variable (\w+)", e).group(1) for e in info.value.errors)
    assert names == sorted(["AMP_TEAM_A_KEY", "ANTHROPIC_API_KEY", "CLIPROXY_API_KEY",
                            "CLIPROXY_API_KEY", "GEMINI_API_KEY", "OPENAI_API_KEY"])


def test_deeply_nested_json_is_a_config_error_not_a_crash(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('{"a":' + "[" * 100000 + "]" * 100000 + "}")
    with pytest.raises(ConfigError) as caught:
        load_file(str(path))
    assert "nested too deeply" in caught.value.errors[0]


# ---- "file:PATH" values and systemd's directories (issue 11) ---------------------------


def _config_in(directory, document):
    path = directory / "config.json"
    path.write_text(json.dumps(document))
    return str(path)


def test_file_value_is_read_from_the_credentials_directory_first(tmp_path):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "amp-key").write_text("sk-amp-from-credential\n")
    (tmp_path / "amp-key").write_text("sk-amp-next-to-config\n")
    path = _config_in(tmp_path, {"ampcode": {"upstream-api-key": "file:amp-key"}})
    config = load_file(path, environ={"CREDENTIALS_DIRECTORY": str(credentials)})[0]
    assert config.ampcode.upstream_api_key == "sk-amp-from-credential"
    # Without systemd's variable, or when the credential is not there: next to the config.
    assert load_file(path, environ={})[0].ampcode.upstream_api_key == "sk-amp-next-to-config"
    (credentials / "amp-key").unlink()
    config = load_file(path, environ={"CREDENTIALS_DIRECTORY": str(credentials)})[0]
    assert config.ampcode.upstream_api_key == "sk-amp-next-to-config"


def test_file_value_loses_exactly_one_final_line_ending(tmp_path):
    cases = {"lf": b"sk-1\n", "crlf": b"sk-2\r\n", "none": b"sk-3", "two": b"sk-4\n\n", "bom": b"\xef\xbb\xbfsk-5\n"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    doc = {"claude-api-key": [{"api-key": "file:" + name} for name in cases]}
    config = load_file(_config_in(tmp_path, doc), environ={})[0]
    assert [p.api_key for p in config.providers] == ["sk-1", "sk-2", "sk-3", "sk-4\n", "sk-5"]


def test_file_value_with_an_absolute_path_and_a_checked_content(tmp_path):
    (tmp_path / "url").write_text("http://127.0.0.1:9/v1/\n")
    (tmp_path / "bad-url").write_text("not a url\n")
    config = parse({"ampcode": {"upstream-url": "file:" + str(tmp_path / "url")}})[0]
    assert config.ampcode.upstream_url == "http://127.0.0.1:9/v1"
    # The content is checked like a literal value would be.
    assert errors_of({"ampcode": {"upstream-url": "file:" + str(tmp_path / "bad-url")}}) == [
        "ampcode.upstream-url: must be an http:// or https:// URL"]


def test_unreadable_file_value_names_the_path_and_the_file_never_the_content(tmp_path):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (tmp_path / "a-directory").mkdir()
    (tmp_path / "latin1").write_bytes(b"sk-secret-\xe9\n")
    (tmp_path / "huge").write_bytes(b"sk-secret-" + b"x" * 70000)
    doc = {"claude-api-key": [{"api-key": "file:missing"}, {"api-key": "file:a-directory"},
                              {"api-key": "file:latin1"}, {"api-key": "file:huge"}, {"api-key": "file:"}]}
    with pytest.raises(ConfigError) as info:
        load_file(_config_in(tmp_path, doc), environ={"CREDENTIALS_DIRECTORY": str(credentials)})
    errors = info.value.errors
    assert errors == [
        "claude-api-key[0].api-key: cannot read %s: No such file or directory; not in "
        "$CREDENTIALS_DIRECTORY (%s) either" % (tmp_path / "missing", credentials),
        "claude-api-key[1].api-key: cannot read %s: Is a directory; not in $CREDENTIALS_DIRECTORY (%s) "
        "either" % (tmp_path / "a-directory", credentials),
        "claude-api-key[2].api-key: %s is not UTF-8 (byte 10)" % (tmp_path / "latin1"),
        "claude-api-key[3].api-key: %s is larger than 65536 bytes" % (tmp_path / "huge"),
        'claude-api-key[4].api-key: "file:" needs a file name',
    ]
    assert "sk-secret" not in str(info.value)


def test_file_references_stay_unresolved_in_the_document(tmp_path):
    (tmp_path / "amp-key").write_text("sk-amp-secret\n")
    doc = {"ampcode": {"upstream-api-key": "file:amp-key"}}
    config = load_file(_config_in(tmp_path, doc), environ={})[0]
    assert config.document == doc
    assert "sk-amp-secret" not in json.dumps(config.document)


def test_relative_logs_dir_follows_the_systemd_logs_directory_first(tmp_path):
    path = _config_in(tmp_path, {"logs-dir": "errors", "ca-bundle": ""})
    both = {"LOGS_DIRECTORY": "/var/log/cliproxy", "STATE_DIRECTORY": "/var/lib/cliproxy"}
    assert load_file(path, environ=both)[0].logs_dir == "/var/log/cliproxy/errors"
    state = {"STATE_DIRECTORY": "/var/lib/cliproxy:/var/lib/other"}
    assert load_file(path, environ=state)[0].logs_dir == "/var/lib/cliproxy/errors"
    several = {"LOGS_DIRECTORY": "/var/log/first:/var/log/second"}
    assert load_file(path, environ=several)[0].logs_dir == "/var/log/first/errors"
    assert load_file(path, environ={"LOGS_DIRECTORY": ""})[0].logs_dir == str(tmp_path / "errors")
    assert load_file(path, environ={})[0].logs_dir == str(tmp_path / "errors")


def test_the_default_and_absolute_logs_dir_under_systemd(tmp_path):
    environ = {"LOGS_DIRECTORY": "/var/log/cliproxy"}
    assert load_file(_config_in(tmp_path, {}), environ=environ)[0].logs_dir == "/var/log/cliproxy/logs"
    assert parse({"logs-dir": "."}, environ=environ)[0].logs_dir == "/var/log/cliproxy"
    assert parse({"logs-dir": "/srv/logs"}, environ=environ)[0].logs_dir == "/srv/logs"
    assert default_config(environ=environ).logs_dir == "/var/log/cliproxy/logs"
    assert default_config(environ={}).logs_dir == "logs"
    # Other relative paths still follow the config file.
    (tmp_path / "ca.pem").write_text("x")
    config = load_file(_config_in(tmp_path, {"ca-bundle": "ca.pem"}), environ=environ)[0]
    assert config.ca_bundle == str(tmp_path / "ca.pem")
