"""End to end: Amp management routes, auth, offline mode and the WebSocket tunnel.

The real proxy runs on a loopback port (``tests/support/proxy.py``); the Amp upstream is a
recording fake (``tests/support/fakes.py``).
"""

import gzip
import json
import os
import socket

import pytest

from cliproxy.http.websocket import accept_value
from tests.support.fakes import FakeUpstream, FakeWebSocketEcho, GzipQuirkReply, JSONReply
from tests.support import http_peers
from tests.support.http_peers import read_head
from tests.support.proxy import RunningProxy

CLIENT_KEY = "sk-local-1"
AUTH = {"Authorization": "Bearer " + CLIENT_KEY}


@pytest.fixture
def amp():
    with FakeUpstream(default=JSONReply(body={"ok": True})) as upstream:
        yield upstream


def proxy_for(tmp_path, upstream_url, **ampcode):
    ampcode.setdefault("upstream-url", upstream_url)
    ampcode.setdefault("upstream-api-key", "amp-upstream-key")
    document = {"api-keys": [CLIENT_KEY, "sk-local-2"], "ampcode": ampcode}
    return RunningProxy(document, tmp_path)


@pytest.mark.parametrize(
    "path",
    [
        "/api/internal?getUserInfo",
        "/api/user/settings",
        "/api/threads/T-1",
        "/api/thread-actors/x",
        "/api/telemetry",
        "/api/otel/v1/traces",
        "/api/tab/complete",
        "/api/meta",
        "/api/ads",
        "/api/auth/cli",
        "/news.rss",
        "/threads.rss",
        "/websocket",
        "/connect",
    ],
)
def test_management_routes_reach_the_upstream_with_the_upstream_key(tmp_path, amp, path):
    with proxy_for(tmp_path, amp.url) as proxy:
        status, _, _ = proxy.request("POST", path, b"{}", AUTH)
    assert status == 200
    seen = amp.requests[-1]
    assert seen.target == path
    assert seen.headers["authorization"] == "Bearer amp-upstream-key"
    assert seen.headers["x-api-key"] == "amp-upstream-key"
    assert CLIENT_KEY not in json.dumps(seen.headers_list)


def test_every_client_credential_carrier_is_stripped(tmp_path, amp):
    headers = {"x-api-key": CLIENT_KEY, "x-goog-api-key": CLIENT_KEY, "X-Other": "kept"}
    with proxy_for(tmp_path, amp.url) as proxy:
        status, _, _ = proxy.request("GET", "/api/user?a=1&key=%s&b=%%20x&auth_token=%s" % (CLIENT_KEY, CLIENT_KEY), None, headers)
    assert status == 200
    seen = amp.requests[-1]
    assert seen.query == "a=1&b=%20x"
    assert seen.headers["x-other"] == "kept"
    assert "x-goog-api-key" not in seen.headers
    assert CLIENT_KEY not in json.dumps(seen.headers_list) + seen.target


@pytest.mark.parametrize(
    "headers,query",
    [
        ({"Authorization": "Bearer sk-local-2"}, ""),
        ({"x-api-key": "sk-local-2"}, ""),
        ({"x-goog-api-key": "sk-local-2"}, ""),
        ({}, "?key=sk-local-2"),
        ({}, "?auth_token=sk-local-2"),
    ],
)
def test_each_key_carrier_authenticates(tmp_path, amp, headers, query):
    with proxy_for(tmp_path, amp.url) as proxy:
        status, _, _ = proxy.request("GET", "/api/user" + query, None, headers)
    assert status == 200


def test_missing_or_wrong_key_is_401_and_nothing_is_forwarded(tmp_path, amp):
    with proxy_for(tmp_path, amp.url) as proxy:
        missing = proxy.json("GET", "/api/user")
        wrong = proxy.json("GET", "/api/user", headers={"Authorization": "Bearer sk-nope"})
    for status, body in (missing, wrong):
        assert status == 401
        assert body["error"]["type"] == "authentication_error"
        assert body["error"]["message"]
    assert amp.requests == []


BROWSER_PAGES = ["/threads", "/threads/T-123", "/docs/manual", "/settings", "/auth/callback"]


@pytest.mark.parametrize("path", BROWSER_PAGES)
def test_browser_pages_need_no_client_key_and_get_no_upstream_key(tmp_path, amp, path):
    with proxy_for(tmp_path, amp.url) as proxy:
        status, _, _ = proxy.request("GET", path, None, {"Cookie": "session=browser"})
    assert status == 200
    seen = amp.requests[-1]
    assert seen.path == path
    assert seen.headers["cookie"] == "session=browser"
    assert "authorization" not in seen.headers
    assert "x-api-key" not in seen.headers
    assert "amp-upstream-key" not in json.dumps(seen.headers_list)


@pytest.mark.parametrize("method", ["POST", "DELETE", "PUT"])
def test_auth_pages_with_any_method_get_no_upstream_key_without_a_client_key(tmp_path, amp, method):
    with proxy_for(tmp_path, amp.url) as proxy:
        status, _, _ = proxy.request(method, "/auth/cli-login", b"{}")
        wrong, _, _ = proxy.request(method, "/auth/cli-login", b"{}", {"Authorization": "Bearer sk-nope"})
    assert status == wrong == 200
    for seen in amp.requests:
        assert "amp-upstream-key" not in json.dumps(seen.headers_list)
        assert "sk-nope" not in json.dumps(seen.headers_list)


def test_browser_page_with_a_valid_client_key_gets_the_upstream_key(tmp_path, amp):
    with proxy_for(tmp_path, amp.url) as proxy:
        status, _, _ = proxy.request("GET", "/threads/T-1", None, AUTH)
    assert status == 200
    seen = amp.requests[-1]
    assert seen.headers["authorization"] == "Bearer amp-upstream-key"
    assert CLIENT_KEY not in json.dumps(seen.headers_list)


@pytest.mark.parametrize(
    "method,path",
    [
        ("DELETE", "/auth/../api/threads/T-1"),
        ("GET", "/threads/..%2f..%2fapi/user"),
        ("GET", "/threads/%2e%2e/api/user"),
        ("GET", "/docs/.%2E/api/user"),
        ("GET", "/api/user/./settings"),
        ("GET", "/threads/a%5c..%5capi"),
        ("POST", "/api/provider/anthropic/v1/../messages"),
        ("GET", "/settings/a\\..\\api"),
    ],
)
def test_dot_segments_and_encoded_slashes_are_400_before_auth(tmp_path, amp, method, path):
    with proxy_for(tmp_path, amp.url) as proxy:
        anonymous = proxy.json(method, path, b"{}")
        authenticated = proxy.json(method, path, b"{}", AUTH)
    for status, body in (anonymous, authenticated):
        assert status == 400
        assert body["error"]["message"]
    assert amp.requests == []


def test_absolute_form_target_is_its_path_and_never_picks_the_upstream(tmp_path, amp):
    with proxy_for(tmp_path, amp.url) as proxy:
        status, _, _ = proxy.request("GET", "http://evil.example/api/user?x=1", None, AUTH)
    assert status == 200
    seen = amp.requests[-1]
    assert seen.target == "/api/user?x=1"
    assert seen.headers["authorization"] == "Bearer amp-upstream-key"


def test_options_is_refused_before_auth_without_cors_headers(tmp_path, amp):
    with proxy_for(tmp_path, amp.url) as proxy:
        status, headers, _ = proxy.request("OPTIONS", "/api/user", None, {"Origin": "https://evil.example"})
    assert status == 403
    assert not [name for name in headers if name.startswith("access-control-")]
    assert amp.requests == []


def test_per_client_upstream_keys(tmp_path, amp):
    mapping = [{"upstream-api-key": "amp-team-b", "api-keys": ["sk-local-2"]}]
    with proxy_for(tmp_path, amp.url, **{"upstream-api-keys": mapping}) as proxy:
        proxy.request("GET", "/api/user", None, {"Authorization": "Bearer sk-local-2"})
        proxy.request("GET", "/api/user", None, AUTH)
    assert amp.requests[0].headers["authorization"] == "Bearer amp-team-b"
    assert amp.requests[1].headers["authorization"] == "Bearer amp-upstream-key"


def test_amp_api_key_environment_is_the_fallback(tmp_path, amp):
    document = {"api-keys": [CLIENT_KEY], "ampcode": {"upstream-url": amp.url}}
    with RunningProxy(document, tmp_path, environ={"AMP_API_KEY": "amp-from-env"}) as proxy:
        proxy.request("GET", "/api/user", None, AUTH)
    assert amp.requests[-1].headers["x-api-key"] == "amp-from-env"


def test_upstream_down_is_a_502_json(tmp_path):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = "http://127.0.0.1:%d" % closed.getsockname()[1]
    with proxy_for(tmp_path, dead) as proxy:
        status, body = proxy.json("GET", "/api/user", headers=AUTH)
    assert status == 502
    assert body["error"]["message"]


def test_gzip_body_without_content_encoding_is_decompressed(tmp_path, amp):
    payload = json.dumps({"ok": True, "result": {"credits": 5}}).encode()
    amp.route("GET", "/api/internal", GzipQuirkReply(payload, headers={"content-type": "application/json"}))
    with proxy_for(tmp_path, amp.url) as proxy:
        status, headers, body = proxy.request("GET", "/api/internal?getCredits", None, AUTH)
    assert status == 200
    assert body == payload
    assert headers["content-length"] == str(len(payload))
    assert "content-encoding" not in headers


def test_request_bodies_pass_through_untouched(tmp_path, amp):
    raw = gzip.compress(json.dumps({"method": "uploadThread", "params": {"thread": {"id": "T-1"}}}).encode())
    headers = dict(AUTH, **{"Content-Encoding": "gzip", "Content-Type": "application/json"})
    with proxy_for(tmp_path, amp.url) as proxy:
        status, _, _ = proxy.request("POST", "/api/internal?uploadThread", raw, headers)
    assert status == 200
    assert amp.requests[-1].body == raw
    assert amp.requests[-1].headers["content-encoding"] == "gzip"


# ------------------------------------------------------------------------- offline mode


@pytest.fixture
def offline(tmp_path):
    with RunningProxy({"api-keys": [CLIENT_KEY], "ampcode": {"upstream-url": ""}}, tmp_path) as proxy:
        yield proxy


def rpc(proxy, method, params=None, compress=False):
    body = json.dumps({"method": method, "params": params or {}}).encode()
    headers = dict(AUTH, **{"Content-Type": "application/json"})
    if compress:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    return proxy.json("POST", "/api/internal?" + method, body, headers)


def test_offline_get_user_info(offline):
    status, body = rpc(offline, "getUserInfo")
    assert status == 200
    assert body["ok"] is True
    assert body["result"]["features"] == []
    assert body["result"]["email"]


def test_offline_upload_thread_is_saved_and_replaced(offline, tmp_path):
    thread = {"id": "T-abc", "v": 1, "messages": [{"role": "user", "content": "hi"}]}
    assert rpc(offline, "uploadThread", {"thread": thread, "createdOnServer": False}) == (200, {"ok": True})
    thread["v"] = 2
    assert rpc(offline, "uploadThread", {"thread": thread}, compress=True) == (200, {"ok": True})
    saved = tmp_path / "logs" / "threads" / "T-abc.json"
    assert json.loads(saved.read_text()) == thread
    assert sorted(os.listdir(saved.parent)) == ["T-abc.json"]


def test_offline_other_internal_methods_answer_ok_null(offline):
    assert rpc(offline, "getCreditsByRequestId", {"requestId": "r1"}) == (200, {"ok": True, "result": None})


def test_offline_auth_still_applies(offline):
    status, _ = offline.json("POST", "/api/internal?getUserInfo", b"{}")
    assert status == 401


def test_offline_telemetry_feeds_and_the_rest(offline):
    assert offline.request("POST", "/api/telemetry", b"{}", AUTH)[0] == 204
    assert offline.request("POST", "/api/otel/v1/logs", b"{}", AUTH)[0] == 204
    status, headers, body = offline.request("GET", "/news.rss", None, AUTH)
    assert status == 200 and b"<rss" in body and "rss" in headers["content-type"]
    status, body = offline.json("GET", "/api/threads/T-1", headers=AUTH)
    assert status == 503
    assert body["error"]["message"] == "amp upstream proxy not available"


# ------------------------------------------------------------------------- WebSocket


def upgrade_request(path, key="dGhlIHNhbXBsZSBub25jZQ==", version="13", auth=CLIENT_KEY):
    return http_peers.upgrade_request(path, key=key, version=version, auth=auth)


def test_websocket_tunnel_pipes_both_ways_and_closes_together(tmp_path):
    with FakeWebSocketEcho() as upstream, proxy_for(tmp_path, upstream.url) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(upgrade_request("/api/thread-actors/T-1"))
            head, rest = read_head(sock)
            assert head.startswith("HTTP/1.1 101")
            assert accept_value("dGhlIHNhbXBsZSBub25jZQ==") in head
            sock.sendall(b"\x81\x05hello")
            echoed = rest
            while len(echoed) < 7:
                echoed += sock.recv(4096)
            assert echoed == b"\x81\x05hello"
        assert upstream.closed.wait(5)
    seen = upstream.requests[-1]
    assert seen.headers["authorization"] == "Bearer amp-upstream-key"
    assert CLIENT_KEY not in json.dumps(seen.headers_list)


def test_websocket_without_valid_key_is_400(tmp_path, amp):
    with proxy_for(tmp_path, amp.url) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(upgrade_request("/websocket", key="short"))
            head, _ = read_head(sock)
    assert head.startswith("HTTP/1.1 400")
    assert amp.requests == []


def test_websocket_needs_the_client_key(tmp_path, amp):
    with proxy_for(tmp_path, amp.url) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(upgrade_request("/websocket", auth=None))
            head, _ = read_head(sock)
    assert head.startswith("HTTP/1.1 401")


# ------------------------------------------------------------------------- localhost only


def test_restrict_to_localhost_ignores_forwarded_headers_on_a_loopback_peer(tmp_path, amp):
    with proxy_for(tmp_path, amp.url, **{"restrict-management-to-localhost": True}) as proxy:
        status, _, _ = proxy.request("GET", "/api/user", None, dict(AUTH, **{"X-Forwarded-For": "203.0.113.9"}))
    assert status == 200


class _Body:
    length = 0

    async def read(self, limit):
        return b""


class _RemoteRequest:
    """A request as the server hands it over, from a peer this machine cannot produce on
    loopback; only the peer address is under test here, the HTTP layer is covered above."""

    method = "GET"
    path = "/api/user"
    query = ""
    target = "/api/user"
    version = "HTTP/1.1"
    tls = False
    body = _Body()
    arrived = 0.0

    def __init__(self, peer_host):
        from cliproxy.http.headers import Headers

        self.peer = (peer_host, 40000)
        self.headers = Headers([("authorization", "Bearer " + CLIENT_KEY), ("x-forwarded-for", "127.0.0.1")])


def test_restrict_to_localhost_refuses_a_remote_peer_whatever_it_claims(tmp_path, amp):
    with proxy_for(tmp_path, amp.url, **{"restrict-management-to-localhost": True}) as proxy:
        response = proxy.run(proxy.app.handle(_RemoteRequest("192.0.2.7")))
        allowed = proxy.run(proxy.app.handle(_RemoteRequest("::ffff:127.0.0.1")))
        if not isinstance(allowed.body, bytes):
            proxy.run(allowed.body.aclose())
    assert response.status == 403
    assert json.loads(response.body)["error"]["type"] == "permission_error"
    assert allowed.status == 200
    assert len(amp.requests) == 1


def test_websocket_tunnel_closes_the_client_when_the_upstream_closes(tmp_path):
    upstream = FakeWebSocketEcho().start()
    try:
        with proxy_for(tmp_path, upstream.url) as proxy:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
                sock.sendall(upgrade_request("/actors/gateway/T-1"))
                head, _ = read_head(sock)
                assert head.startswith("HTTP/1.1 101")
                upstream.close()  # the far side goes away
                assert sock.recv(4096) == b""  # ... and the client's side is closed too
    finally:
        upstream.close()
