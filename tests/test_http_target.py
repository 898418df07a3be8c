"""Request targets: absolute form reduced to its path, and paths a router must refuse."""

import pytest

from cliproxy.errors import BadRequest
from cliproxy.http.target import check_path, may_need_check, split_target


@pytest.mark.parametrize(
    "target,expected",
    [
        ("/api/user?a=1", ("/api/user", "a=1")),
        ("/api/user", ("/api/user", "")),
        ("http://evil.example/api/user?x=y", ("/api/user", "x=y")),
        ("HTTPS://evil.example:8443/v1/messages", ("/v1/messages", "")),
        ("http://evil.example", ("/", "")),
        ("http://evil.example?q=1", ("/", "q=1")),
        ("http://user@evil.example/threads", ("/threads", "")),
        ("*", ("*", "")),
    ],
)
def test_split_target(target, expected):
    assert split_target(target) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/auth/../api/threads/T-1",
        "/auth/..",
        "/threads/./x",
        "/threads/%2e%2e/api/user",
        "/threads/%2E./api/user",
        "/threads/.%2e/api/user",
        "/threads/..%2f..%2fapi/user",
        "/threads/a%2Fb",
        "/threads/a%5cb",
        "/threads/a\\b",
        "/api/provider/anthropic/v1/../messages",
    ],
)
def test_check_path_refuses_what_an_upstream_could_resolve_elsewhere(path):
    assert may_need_check(path)
    with pytest.raises(BadRequest):
        check_path(path)


@pytest.mark.parametrize(
    "path",
    [
        "/api/user",
        "/.well-known/x",
        "/threads/T-1...",
        "/v1beta/models/gemini-2.5-pro:generateContent",
        "/threads/a%20b",
        "/threads/...",
    ],
)
def test_check_path_accepts_normal_paths(path):
    assert check_path(path) is None


@pytest.mark.parametrize("path", ["/api/user", "/v1beta/models/gemini-2.5-pro:generateContent", "/v1/messages"])
def test_screen_passes_plain_paths_without_a_check(path):
    assert not may_need_check(path)
