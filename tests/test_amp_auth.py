"""Tests for cliproxy.amp.auth: key carriers, constant-time key set, stripping, loopback."""

import pytest

from cliproxy.amp.auth import KeySet, client_key, is_loopback, strip_client_keys, strip_credentials
from cliproxy.http.headers import Headers


def H(*pairs):
    return Headers(pairs)


# -- client_key ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers, query, expected",
    [
        (H(("Authorization", "Bearer k1")), "", "k1"),
        (H(("authorization", "bearer k1")), "", "k1"),
        (H(("authorization", "BEARER   k1  ")), "", "k1"),
        (H(("x-api-key", "k2")), "", "k2"),
        (H(("x-goog-api-key", "k3")), "", "k3"),
        (H(), "key=k4", "k4"),
        (H(), "auth_token=k5", "k5"),
        (H(), "a=1&key=k%2B4&b=2", "k+4"),
        (H(), "", None),
        (H(("user-agent", "amp")), "a=1", None),
    ],
)
def test_each_carrier(headers, query, expected):
    assert client_key(headers, query) == expected


def test_carrier_precedence_order():
    all_carriers = H(
        ("x-goog-api-key", "goog"), ("x-api-key", "xapi"), ("authorization", "Bearer bearer")
    )
    q = "auth_token=tok&key=qkey"
    assert client_key(all_carriers, q) == "bearer"
    assert client_key(H(("x-goog-api-key", "goog"), ("x-api-key", "xapi")), q) == "xapi"
    assert client_key(H(("x-goog-api-key", "goog")), q) == "goog"
    assert client_key(H(), q) == "qkey"
    assert client_key(H(), "auth_token=tok") == "tok"


def test_non_bearer_and_empty_values_are_skipped():
    assert client_key(H(("authorization", "Basic dXNlcjpwYXNz"), ("x-api-key", "k")), "") == "k"
    assert client_key(H(("authorization", "Bearer "), ("x-api-key", "")), "key=&auth_token=t") == "t"
    assert client_key(H(("authorization", "Bearer")), "") is None


# -- KeySet -------------------------------------------------------------------------------


def test_keyset_right_and_wrong_keys():
    keys = KeySet(("sk-local-1", "sk-local-2"))
    assert keys.contains("sk-local-1")
    assert keys.contains("sk-local-2")
    assert not keys.contains("sk-local-3")
    assert not keys.contains("sk-local-1 ")
    assert not keys.contains("SK-LOCAL-1")
    assert not keys.contains("sk-local-1" * 100)  # a longer key is just another key


def test_keyset_none_empty_and_empty_set():
    keys = KeySet(("sk-local-1",))
    assert not keys.contains(None)
    assert not keys.contains("")
    empty = KeySet(())
    assert len(empty) == 0
    assert not empty.contains("anything")
    assert not empty.contains(None)


def test_keyset_ignores_empty_configured_key():
    keys = KeySet(("", "k"))
    assert len(keys) == 1
    assert not keys.contains("")


def test_keyset_compares_every_key_without_early_exit(monkeypatch):
    import cliproxy.amp.auth as auth

    calls = []
    real = auth.hmac.compare_digest

    def counting(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    keys = KeySet(("first", "second-much-longer-key", "third"))
    assert keys.contains("first")  # matches the first: still compares all three
    assert len(calls) == 3
    # Digests, not the keys, are compared: always equal lengths.
    assert all(a == b == 32 for a, b in calls)
    calls.clear()
    assert not keys.contains("nope")
    assert len(calls) == 3


# -- strip_credentials --------------------------------------------------------------------


def test_strip_keeps_other_query_params_verbatim():
    _, query = strip_credentials(H(), "a=1&key=x&b=%20")
    assert query == "a=1&b=%20"


@pytest.mark.parametrize(
    "query, expected",
    [
        ("", ""),
        ("key=x", ""),
        ("auth_token=t&key=x", ""),
        ("x=1&auth_token=t&y=a+b&z=%2F&key", "x=1&y=a+b&z=%2F"),
        ("k%65y=x&keys=1&monkey=2", "keys=1&monkey=2"),
        ("getUserInfo", "getUserInfo"),
        ("a=1&&b=2", "a=1&&b=2"),
    ],
)
def test_strip_query_cases(query, expected):
    assert strip_credentials(H(), query)[1] == expected


def test_strip_headers_removes_all_credential_fields_only():
    headers = H(
        ("Authorization", "Bearer k"),
        ("X-Api-Key", "k"),
        ("content-type", "application/json"),
        ("x-goog-api-key", "k"),
        ("x-amp-thread-id", "T-1"),
        ("x-api-key", "again"),
    )
    stripped, _ = strip_credentials(headers, "")
    assert stripped.items() == [("content-type", "application/json"), ("x-amp-thread-id", "T-1")]
    assert len(headers) == 6  # the input is not modified


# -- is_loopback --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host, expected",
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:127.8.9.10", True),
        ("fe80::1%lo", False),
        ("::1%lo0", True),
        ("10.0.0.1", False),
        ("192.168.1.5", False),
        ("::ffff:10.0.0.1", False),
        ("2001:db8::1", False),
        ("0.0.0.0", False),
        ("localhost", False),
        ("", False),
        ("not an address", False),
    ],
)
def test_is_loopback(host, expected):
    assert is_loopback(host) is expected


# -- strip_client_keys (Amp Neo's /actors) ---------------------------------------------------


def test_strip_client_keys_keeps_a_foreign_authorization():
    keys = KeySet(["sk-local"])
    headers = H(("authorization", "Basic bmVvOnNlY3JldA=="), ("x-api-key", "anything"), ("x-goog-api-key", "g"),
                ("sec-websocket-protocol", "rivet, rivet_token.abc"))
    kept, query = strip_client_keys(headers, "key=sk-local&rvt-key=T-1", keys)
    assert kept.items() == [("authorization", "Basic bmVvOnNlY3JldA=="), ("sec-websocket-protocol", "rivet, rivet_token.abc")]
    assert query == "rvt-key=T-1"


def test_strip_client_keys_removes_an_authorization_holding_a_client_key():
    keys = KeySet(["sk-local"])
    kept, _ = strip_client_keys(H(("authorization", "Bearer sk-local")), "", keys)
    assert kept.get("authorization") is None
    kept, _ = strip_client_keys(H(("authorization", "Bearer rvt_token")), "", keys)
    assert kept.get("authorization") == "Bearer rvt_token"


def test_strip_client_keys_judges_every_authorization_field():
    keys = KeySet(["sk-local"])
    headers = H(("authorization", "Bearer actor-token-1"), ("authorization", "bearer sk-local"))
    kept, _ = strip_client_keys(headers, "", keys)
    assert kept.get_all("authorization") == ["Bearer actor-token-1"]
