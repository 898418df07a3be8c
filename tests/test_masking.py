"""Tests for cliproxy.masking: secrets, headers and query strings masked for display."""

import pytest

from cliproxy.http.headers import Headers
from cliproxy.masking import FULL_MASK, is_masked, mask_headers, mask_query, mask_secret


@pytest.mark.parametrize(
    "secret, expected",
    [
        ("sk-ant-api03-abcdefghf3", "sk-a\u2026f3"),
        ("123456789012", "1234\u2026" + "12"),
        ("12345678901", FULL_MASK),  # too short to show 6 characters of it
        ("k", FULL_MASK),
        ("", ""),
    ],
)
def test_mask_secret(secret, expected):
    assert mask_secret(secret) == expected


def test_is_masked():
    assert is_masked(mask_secret("sk-ant-api03-abcdefghf3"))
    assert is_masked(mask_secret("short"))
    assert not is_masked("sk-ant-api03-abcdefghf3")


def test_mask_headers():
    headers = Headers(
        [
            ("Authorization", "Bearer sk-local-secret-value"),
            ("x-api-key", "sk-local-secret-value"),
            ("Cookie", "session=abcdefghijklmnop"),
            ("content-type", "application/json"),
            ("authorization", "opaque-token-without-scheme"),
        ]
    )
    assert mask_headers(headers) == [
        ("authorization", "Bearer sk-l\u2026ue"),
        ("x-api-key", "sk-l\u2026ue"),
        ("cookie", "sess\u2026op"),
        ("content-type", "application/json"),
        ("authorization", "opaq\u2026me"),
    ]


def test_mask_query_keeps_other_params():
    assert mask_query("a=1&key=sk-local-secret-value&b=%20&auth_token=x") == (
        "a=1&key=sk-l\u2026ue&b=%20&auth_token=" + FULL_MASK
    )
    assert mask_query("") == ""
    assert mask_query("getUserInfo") == "getUserInfo"
