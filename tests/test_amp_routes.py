"""Which family a path belongs to (cliproxy.amp.routes.classify)."""

import pytest

from cliproxy.amp.routes import Family, classify


@pytest.mark.parametrize(
    "method,path,family",
    [
        ("GET", "/healthz", Family.HEALTH),
        ("GET", "/metrics", Family.METRICS),
        ("GET", "/v0/management/config", Family.MANAGEMENT_API),
        ("POST", "/api/internal", Family.AMP_MANAGEMENT),
        ("POST", "/api/thread-actors", Family.AMP_MANAGEMENT),
        ("GET", "/websocket", Family.AMP_MANAGEMENT),
        ("GET", "/connect/x", Family.AMP_MANAGEMENT),
        ("GET", "/actors", Family.ACTORS),
        ("GET", "/actors/metadata", Family.ACTORS),
        ("GET", "/actors/gateway/threadActor/websocket/", Family.ACTORS),
        ("GET", "/actorsx", Family.NOT_FOUND),
        ("GET", "/threads/T-1", Family.BROWSER_PAGE),
        ("POST", "/threads/T-1", Family.NOT_FOUND),
        ("DELETE", "/auth/cli-login", Family.BROWSER_PAGE),
        ("POST", "/api/provider/anthropic/v1/messages", Family.PROVIDER),
        ("POST", "/v1/chat/completions", Family.PROVIDER),
        ("POST", "/api/provider/anthropic/v2/messages", Family.NOT_FOUND),
    ],
)
def test_classify(method, path, family):
    assert classify(method, path).family is family


def test_long_paths_are_classified_but_not_remembered():
    from cliproxy.amp import routes

    before = len(routes._ROUTES)
    long_path = "/threads/" + "x" * 10000
    assert classify("GET", long_path).family is Family.BROWSER_PAGE
    assert len(routes._ROUTES) == before
