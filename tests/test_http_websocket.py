"""Tests for cliproxy.http.websocket: handshake checks and the two-way pipe over real sockets."""

import asyncio
import base64

import pytest

from cliproxy.errors import BadRequest
from cliproxy.http.headers import Headers
from cliproxy.http.websocket import accept_value, is_websocket_upgrade, pipe, validate_upgrade

KEY = base64.b64encode(b"0123456789abcdef").decode("ascii")


def _upgrade_headers(**overrides):
    fields = {
        "host": "example.test",
        "upgrade": "websocket",
        "connection": "Upgrade",
        "sec-websocket-key": KEY,
        "sec-websocket-version": "13",
    }
    fields.update((name.replace("_", "-"), value) for name, value in overrides.items())
    return Headers([(name, value) for name, value in fields.items() if value is not None])


# --- is_websocket_upgrade ----------------------------------------------------------------


def test_upgrade_detected_case_insensitively_with_connection_token_list():
    headers = Headers([("Upgrade", "WebSocket"), ("Connection", "keep-alive, Upgrade")])
    assert is_websocket_upgrade(headers)


@pytest.mark.parametrize(
    "fields",
    [
        [("upgrade", "h2c"), ("connection", "upgrade")],
        [("upgrade", "websocket")],
        [("connection", "upgrade")],
        [("upgrade", "websocket"), ("connection", "keep-alive")],
        [],
    ],
)
def test_non_upgrades_are_not_detected(fields):
    assert not is_websocket_upgrade(Headers(fields))


# --- validate_upgrade --------------------------------------------------------------------


def test_valid_handshake_passes():
    assert validate_upgrade("GET", _upgrade_headers()) is None


@pytest.mark.parametrize(
    "method, overrides, message",
    [
        ("POST", {}, "GET"),
        ("GET", {"upgrade": None}, "Upgrade"),
        ("GET", {"connection": "keep-alive"}, "Connection"),
        ("GET", {"sec_websocket_key": None}, "exactly one Sec-WebSocket-Key"),
        ("GET", {"sec_websocket_key": "not base64!!"}, "base64 encoding of 16 bytes"),
        ("GET", {"sec_websocket_key": base64.b64encode(b"short").decode()}, "16 bytes"),
        ("GET", {"sec_websocket_key": base64.b64encode(b"x" * 17).decode()}, "16 bytes"),
        ("GET", {"sec_websocket_key": "é" * 24}, "16 bytes"),
        ("GET", {"sec_websocket_version": None}, "Version must be 13"),
        ("GET", {"sec_websocket_version": "8"}, "Version must be 13"),
    ],
)
def test_invalid_handshakes_are_bad_requests_naming_the_problem(method, overrides, message):
    with pytest.raises(BadRequest, match=message) as info:
        validate_upgrade(method, _upgrade_headers(**overrides))
    assert info.value.status == 400


def test_repeated_key_is_rejected():
    headers = _upgrade_headers()
    headers.add("sec-websocket-key", KEY)
    with pytest.raises(BadRequest, match="exactly one"):
        validate_upgrade("GET", headers)


def test_wrong_version_error_advertises_version_13():
    with pytest.raises(BadRequest) as info:
        validate_upgrade("GET", _upgrade_headers(sec_websocket_version="12"))
    assert ("sec-websocket-version", "13") in info.value.headers


def test_accept_value_matches_rfc_6455_example():
    # RFC 6455 §1.3
    assert accept_value("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


# --- pipe over real sockets ----------------------------------------------------------------


async def _tcp_pair():
    """Two connected stream pairs over 127.0.0.1: (outer_reader, outer_writer) is the test's
    end, (inner_reader, inner_writer) the end handed to pipe."""
    accepted = asyncio.get_running_loop().create_future()

    def on_connect(reader, writer):
        accepted.set_result((reader, writer))

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    outer = await asyncio.open_connection("127.0.0.1", port)
    inner = await accepted
    # Only the listener is closed: on 3.12+ wait_closed() would wait for the pair itself.
    server.close()
    return outer, inner


async def _read_exactly(reader, count):
    return await asyncio.wait_for(reader.readexactly(count), 5)


async def _eof(reader):
    """True when the reader hits EOF (or a reset) within 5 s, discarding data first."""
    try:
        while await asyncio.wait_for(reader.read(65536), 5):
            pass
    except ConnectionError:
        pass
    return True


class _Tunnel:
    """Client side A and server side B, joined by pipe() on the inner ends."""

    async def open(self, a_to_b=b"", b_to_a=b""):
        self.tasks_before = asyncio.all_tasks()
        (self.a, self.inner_a), (self.b, self.inner_b) = await _tcp_pair(), await _tcp_pair()
        (reader_a, writer_a), (reader_b, writer_b) = self.inner_a, self.inner_b
        self.task = asyncio.ensure_future(
            pipe(reader_a, writer_a, reader_b, writer_b, a_to_b, b_to_a)
        )
        return self

    def leaked_tasks(self):
        return asyncio.all_tasks() - self.tasks_before - {self.task}

    def close_outer(self):
        for _, writer in (self.a, self.b):
            writer.close()


def test_pipe_writes_initial_bytes_then_copies_both_ways():
    async def scenario():
        tunnel = await _Tunnel().open(a_to_b=b"early-to-b", b_to_a=b"early-to-a")
        a_reader, a_writer = tunnel.a
        b_reader, b_writer = tunnel.b
        assert await _read_exactly(b_reader, 10) == b"early-to-b"
        assert await _read_exactly(a_reader, 10) == b"early-to-a"
        a_writer.write(b"ping")
        await a_writer.drain()
        assert await _read_exactly(b_reader, 4) == b"ping"
        b_writer.write(b"pong")
        await b_writer.drain()
        assert await _read_exactly(a_reader, 4) == b"pong"
        a_writer.close()
        await asyncio.wait_for(tunnel.task, 5)
        tunnel.close_outer()

    asyncio.run(scenario())


def test_pipe_copies_large_payloads_both_ways_concurrently():
    size = 3 * 1024 * 1024 + 17
    to_b = bytes(range(256)) * (size // 256)
    to_a = bytes(reversed(to_b))

    async def scenario():
        tunnel = await _Tunnel().open()
        (a_reader, a_writer), (b_reader, b_writer) = tunnel.a, tunnel.b

        async def send(writer, data):
            writer.write(data)
            await writer.drain()

        results = await asyncio.gather(
            send(a_writer, to_b),
            send(b_writer, to_a),
            _read_exactly(b_reader, len(to_b)),
            _read_exactly(a_reader, len(to_a)),
        )
        assert results[2] == to_b and results[3] == to_a
        b_writer.close()
        await asyncio.wait_for(tunnel.task, 5)
        tunnel.close_outer()

    asyncio.run(scenario())


@pytest.mark.parametrize("closing_side", ["a", "b"])
def test_closing_one_side_closes_the_other_and_leaks_no_task(closing_side):
    async def scenario():
        tunnel = await _Tunnel().open()
        closing, other = (tunnel.a, tunnel.b) if closing_side == "a" else (tunnel.b, tunnel.a)
        closing[1].close()
        assert await _eof(other[0])
        assert await asyncio.wait_for(tunnel.task, 5) is None
        assert tunnel.inner_a[1].is_closing() and tunnel.inner_b[1].is_closing()
        assert tunnel.leaked_tasks() == set()
        tunnel.close_outer()

    asyncio.run(scenario())


def test_peer_reset_ends_pipe_quietly():
    async def scenario():
        tunnel = await _Tunnel().open()
        tunnel.a[1].transport.abort()  # RST instead of FIN
        assert await _eof(tunnel.b[0])
        assert await asyncio.wait_for(tunnel.task, 5) is None
        assert tunnel.leaked_tasks() == set()
        tunnel.close_outer()

    asyncio.run(scenario())


def test_cancelling_pipe_closes_both_sides_and_leaks_no_task():
    async def scenario():
        tunnel = await _Tunnel().open()
        tunnel.a[1].write(b"x")
        assert await _read_exactly(tunnel.b[0], 1) == b"x"
        tunnel.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await tunnel.task
        assert await _eof(tunnel.a[0])
        assert await _eof(tunnel.b[0])
        assert tunnel.leaked_tasks() == set()
        tunnel.close_outer()

    asyncio.run(scenario())


def test_initial_write_to_a_closed_peer_ends_pipe_and_closes_both():
    async def scenario():
        (a, inner_a), (b, inner_b) = await _tcp_pair(), await _tcp_pair()
        inner_b[1].close()  # B is gone before the pipe starts
        await inner_b[1].wait_closed()
        joined = pipe(inner_a[0], inner_a[1], inner_b[0], inner_b[1], a_to_b=b"hello")
        await asyncio.wait_for(joined, 5)
        assert inner_a[1].is_closing()
        assert await _eof(a[0])
        for _, writer in (a, b):
            writer.close()

    asyncio.run(scenario())
