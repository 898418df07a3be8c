"""Tests for tests/support/fakes.py: every reply kind seen by a plain http.client or socket."""

import base64
import gzip
import hashlib
import http.client
import json
import socket
import time
import zlib

import pytest

from tests.support.fakes import (
    DropReply,
    FakeUpstream,
    FakeWebSocketEcho,
    GzipQuirkReply,
    HangReply,
    JSONReply,
    RawReply,
    Sequence,
    SSEReply,
    sse_events,
)


_open_clients = []


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    while _open_clients:
        _open_clients.pop().close()


@pytest.fixture
def upstream():
    with FakeUpstream() as fake:
        yield fake


def _client(fake):
    """An http.client connection to ``fake``, closed after the test."""
    client = http.client.HTTPConnection(fake.host, fake.port, timeout=5)
    _open_clients.append(client)
    return client


def _raw(fake, request):
    sock = socket.create_connection((fake.host, fake.port), timeout=5)
    sock.sendall(request)
    return sock


def _recv_all(sock):
    parts = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(parts)
        parts.append(data)


def _split_head(response):
    head, _, body = response.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


def _chunks(body):
    """The chunk payloads of a chunked body, and whether the last chunk arrived."""
    chunks = []
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return chunks, True
        chunks.append(rest[:size])
        body = rest[size + 2 :]
    return chunks, False


GET = b"GET / HTTP/1.1\r\nHost: fake\r\n\r\n"


def test_url_and_default_reply_is_404_naming_the_path(upstream):
    assert upstream.url == "http://127.0.0.1:%d" % upstream.port
    client = _client(upstream)
    client.request("GET", "/nowhere")
    response = client.getresponse()
    assert response.status == 404
    assert "/nowhere" in json.loads(response.read())["error"]


def test_json_reply_and_recorded_request(upstream):
    reply = JSONReply(429, {"error": "slow down"}, {"Retry-After": "7"})
    upstream.route("POST", "/v1/messages", reply)
    client = _client(upstream)
    client.request(
        "POST",
        "/v1/messages?beta=true",
        body=b'{"model":"m"}',
        headers={"X-Api-Key": "k1", "Content-Type": "application/json", "X-Dup": "one"},
    )
    response = client.getresponse()
    assert response.status == 429
    assert response.getheader("Retry-After") == "7"
    assert response.getheader("Content-Type") == "application/json"
    assert json.loads(response.read()) == {"error": "slow down"}
    (recorded,) = upstream.requests
    assert (recorded.method, recorded.path) == ("POST", "/v1/messages")
    assert recorded.query == "beta=true"
    assert recorded.target == "/v1/messages?beta=true"
    assert recorded.headers["x-api-key"] == "k1"
    assert ("X-Api-Key", "k1") in recorded.headers_list
    assert recorded.body == b'{"model":"m"}'


def test_headers_dict_keeps_last_value_and_list_keeps_all(upstream):
    sock = _raw(
        upstream,
        b"GET /h HTTP/1.1\r\nHost: f\r\nX-A: 1\r\nx-a: 2\r\nConnection: close\r\n\r\n",
    )
    _recv_all(sock)
    sock.close()
    (recorded,) = upstream.wait_for_requests(1)
    assert recorded.headers["x-a"] == "2"
    assert [v for n, v in recorded.headers_list if n.lower() == "x-a"] == ["1", "2"]


def test_chunked_request_body_is_recorded_dechunked(upstream):
    upstream.route("*", "/", JSONReply(200, b"ok", {"Content-Type": "text/plain"}))
    sock = _raw(
        upstream,
        b"POST /up HTTP/1.1\r\nHost: f\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    )
    head, body = _split_head(_recv_all(sock))
    sock.close()
    assert head.startswith("HTTP/1.1 200 OK") and "Content-Type: text/plain" in head
    assert "Connection: close" in head
    assert body == b"ok"
    assert upstream.requests[0].body == b"hello world"


def test_keep_alive_serves_several_requests_on_one_connection(upstream):
    upstream.route("GET", "/a", JSONReply(200, {"n": 1}))
    client = _client(upstream)
    for _ in range(3):
        client.request("GET", "/a")
        assert json.loads(client.getresponse().read()) == {"n": 1}
    assert len(upstream.requests) == 3


def test_routes_by_method_prefix_callable_and_callable_reply(upstream):
    upstream.route("GET", "/x", JSONReply(200, {"route": "get-x"}))
    upstream.route(
        "*", lambda r: r.headers.get("x-pick") == "yes", JSONReply(200, {"route": "pick"})
    )
    upstream.route(
        "*", "/echo", lambda r: JSONReply(201, {"path": r.path, "body": r.body.decode()})
    )
    client = _client(upstream)

    def call(method, path, headers=None, body=None):
        client.request(method, path, body=body, headers=headers or {})
        response = client.getresponse()
        return response.status, json.loads(response.read())

    assert call("GET", "/x/1") == (200, {"route": "get-x"})
    assert call("POST", "/x/1", {"X-Pick": "yes"}, b"") == (200, {"route": "pick"})
    assert call("POST", "/echo/2", body=b"hi") == (201, {"path": "/echo/2", "body": "hi"})
    assert call("POST", "/x/1", body=b"")[0] == 404


def test_sse_reply_streams_events_as_chunks(upstream):
    events = sse_events({"type": "message_start"}, {"type": "message_stop"})
    upstream.route("POST", "/v1/messages", SSEReply(events))
    client = _client(upstream)
    client.request("POST", "/v1/messages", body=b"{}")
    response = client.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/event-stream"
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert response.read() == b"".join(events)


def test_sse_reply_split_at_makes_chunk_boundaries_inside_events(upstream):
    events = [b"data: 1\n\n", b"data: 22\n\n"]
    upstream.default = SSEReply(events, split_at=[3, 12], headers={"X-Extra": "1"})
    sock = _raw(upstream, b"GET / HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n")
    head, body = _split_head(_recv_all(sock))
    sock.close()
    assert "X-Extra: 1" in head
    chunks, complete = _chunks(body)
    assert complete
    assert chunks == [b"dat", b"a: 1\n\n", b"dat", b"a: 22\n\n"]


def test_sse_reply_gzip_without_header(upstream):
    events = sse_events({"type": "ping"}, {"type": "message_stop"})
    upstream.default = SSEReply(events, gzip_without_header=True)
    client = _client(upstream)
    client.request("GET", "/")
    response = client.getresponse()
    assert response.getheader("Content-Encoding") is None
    body = response.read()
    assert body[:2] == b"\x1f\x8b"
    assert gzip.decompress(body) == b"".join(events)


def test_sse_reply_gzip_is_flushed_per_event(upstream):
    events = [b"data: 1\n\n", b"data: 2\n\n"]
    upstream.default = SSEReply(events, gzip_without_header=True)
    sock = _raw(upstream, b"GET / HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n")
    chunks, complete = _chunks(_split_head(_recv_all(sock))[1])
    sock.close()
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert decompressor.decompress(chunks[0]) == events[0]  # decodable on arrival
    assert complete


def test_sse_reply_die_after_closes_without_last_chunk(upstream):
    events = sse_events({"type": "a"}, {"type": "b"}, {"type": "c"})
    upstream.default = SSEReply(events, die_after=2)
    sock = _raw(upstream, GET)
    head, body = _split_head(_recv_all(sock))  # returns only because the fake closed
    sock.close()
    chunks, complete = _chunks(body)
    assert not complete
    assert chunks == events[:2]
    client = _client(upstream)
    client.request("GET", "/")
    with pytest.raises(http.client.IncompleteRead):
        client.getresponse().read()


def test_sse_reply_delay_is_honoured(upstream):
    upstream.default = SSEReply([b"data: 1\n\n", b"data: 2\n\n"], delay=0.1)
    client = _client(upstream)
    started = time.monotonic()
    client.request("GET", "/")
    client.getresponse().read()
    assert time.monotonic() - started >= 0.1


def test_raw_reply_is_written_as_is_then_closed(upstream):
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nclose-delimited body"
    upstream.default = RawReply(raw)
    sock = _raw(upstream, GET)
    assert _recv_all(sock) == raw
    sock.close()


def test_drop_reply_closes_before_any_byte(upstream):
    upstream.default = DropReply()
    sock = _raw(upstream, GET)
    assert _recv_all(sock) == b""
    sock.close()
    client = _client(upstream)
    client.request("GET", "/")
    with pytest.raises(http.client.RemoteDisconnected):
        client.getresponse()
    assert len(upstream.requests) == 2


def test_hang_reply_sends_nothing_until_closed():
    fake = FakeUpstream(default=HangReply()).start()
    try:
        sock = _raw(fake, GET)
        fake.wait_for_requests(1)
    finally:
        fake.close()  # the hung connection is closed by the fake, having sent nothing
    assert _recv_all(sock) == b""
    sock.close()


def test_gzip_quirk_reply_has_length_and_no_content_encoding(upstream):
    upstream.default = GzipQuirkReply(b'{"ok":true}', headers={"X-Q": "1"})
    client = _client(upstream)
    client.request("GET", "/api/user")
    response = client.getresponse()
    body = response.read()
    assert response.getheader("Content-Encoding") is None
    assert response.getheader("X-Q") == "1"
    assert int(response.getheader("Content-Length")) == len(body)
    assert gzip.decompress(body) == b'{"ok":true}'


def test_sequence_uses_replies_in_order_and_repeats_the_last(upstream):
    upstream.route(
        "POST",
        "/v1",
        Sequence(
            [
                JSONReply(429, {"e": 1}, {"Retry-After": "2"}),
                JSONReply(500, {"e": 2}),
                JSONReply(200, {"ok": 1}),
            ]
        ),
    )
    client = _client(upstream)
    statuses = []
    for _ in range(4):
        client.request("POST", "/v1", body=b"")
        response = client.getresponse()
        response.read()
        statuses.append((response.status, response.getheader("Retry-After")))
    assert statuses == [(429, "2"), (500, None), (200, None), (200, None)]


def test_http_1_0_and_connection_close_get_connection_close(upstream):
    upstream.default = JSONReply(200, {})
    sock = _raw(upstream, b"GET / HTTP/1.0\r\n\r\n")
    head, body = _split_head(_recv_all(sock))
    sock.close()
    assert "Connection: close" in head and body == b"{}"


def test_expect_100_continue_is_answered(upstream):
    upstream.default = JSONReply(200, {})
    sock = _raw(
        upstream,
        b"POST / HTTP/1.1\r\nHost: f\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
    )
    assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    sock.sendall(b"hi")
    assert b"200 OK" in sock.recv(1000)
    sock.close()
    assert upstream.requests[0].body == b"hi"


def test_sse_events_helper():
    first, second, third = sse_events(
        {"type": "message_start", "x": "é"}, {"choices": []}, "[DONE]"
    )
    assert first == 'event: message_start\ndata: {"type":"message_start","x":"é"}\n\n'.encode()
    assert second == b'data: {"choices":[]}\n\n'
    assert third == b"data: [DONE]\n\n"
    (named,) = sse_events({"a": 1}, event_names=["custom"])
    assert named == b'event: custom\ndata: {"a":1}\n\n'


# --- FakeWebSocketEcho ---------------------------------------------------------------------

KEY = base64.b64encode(b"0123456789abcdef").decode()


def _upgrade_request(key=KEY, version="13"):
    return (
        "GET /api/thread-actors HTTP/1.1\r\nHost: f\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: %s\r\nAuthorization: Bearer up\r\n\r\n"
        % (key, version)
    ).encode()


def _read_head(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data.decode("latin-1")


def test_websocket_echo_accepts_upgrade_and_echoes_bytes():
    with FakeWebSocketEcho() as fake:
        sock = _raw(fake, _upgrade_request())
        head = _read_head(sock)
        expected = base64.b64encode(
            hashlib.sha1((KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
        ).decode()
        assert head.startswith("HTTP/1.1 101 ")
        assert "Sec-WebSocket-Accept: %s\r\n" % expected in head
        sock.sendall(b"\x81\x05hello")
        received = b""
        while len(received) < 7:
            received += sock.recv(100)
        assert received == b"\x81\x05hello"
        assert not fake.closed.is_set()
        sock.close()
        assert fake.closed.wait(5)
        (recorded,) = fake.requests
        assert recorded.path == "/api/thread-actors"
        assert recorded.headers["authorization"] == "Bearer up"
        assert recorded.headers["sec-websocket-key"] == KEY


@pytest.mark.parametrize("key, version", [("bad-key", "13"), (KEY, "8")])
def test_websocket_echo_rejects_bad_handshake(key, version):
    with FakeWebSocketEcho() as fake:
        sock = _raw(fake, _upgrade_request(key, version))
        head, body = _split_head(_recv_all(sock))
        sock.close()
        assert head.startswith("HTTP/1.1 400 ")
        assert "Sec-WebSocket" in json.loads(body)["error"]


def test_websocket_echo_serves_plain_requests_through_routes():
    with FakeWebSocketEcho() as fake:
        fake.route("GET", "/api/user", JSONReply(200, {"user": "u"}))
        client = _client(fake)
        client.request("GET", "/api/user")
        assert json.loads(client.getresponse().read()) == {"user": "u"}
