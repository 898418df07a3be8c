"""Tests for cliproxy.http.server against real sockets on 127.0.0.1 port 0.

Clients are written here with raw asyncio streams, and responses are parsed by the small
reader below (not by cliproxy's parser), so the server is checked against an independent
reading of the wire. Timeouts of the default size (120 s, 600 s) run on a ``JumpingLoop``
(tests/support/http_peers.py), whose clock the test moves forward instead of waiting;
older tests make them tiny (0.2 s) instead.
"""

import asyncio
import contextlib
import gc
import json
import logging
import os
import socket
import ssl
import struct
from pathlib import Path

import pytest

from cliproxy import errors
from cliproxy.config.model import Limits
from cliproxy.http.headers import Headers
from cliproxy.http.server import Response, Server
from tests.support.http_peers import advance, run, run_jumping, until_still

CERTS = Path(__file__).parent / "support" / "certs"


@contextlib.asynccontextmanager
async def serving(handler, ssl_context=None, **limit_values):
    server = Server(handler, lambda: Limits(**limit_values), ssl_context=ssl_context)
    host, port = await server.start("127.0.0.1", 0)
    assert host == "127.0.0.1" and port > 0
    try:
        yield server, port
    finally:
        await server.shutdown(1.0)


def tls_contexts():
    """(server context with the test certificate, client context that trusts it)."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(CERTS / "server.pem"), str(CERTS / "server.key"))
    return server_ctx, ssl.create_default_context(cafile=str(CERTS / "server.pem"))


@contextlib.asynccontextmanager
async def connected(handler, tls=False, **limit_values):
    """``serving(handler)`` plus one client connection (over TLS when ``tls``); yields
    (server, reader, writer) and closes the client before the server shuts down."""
    server_ctx, client_ctx = tls_contexts() if tls else (None, None)
    async with serving(handler, server_ctx, **limit_values) as (server, port):
        reader, writer = await connect(port, client_ctx)
        yield server, reader, writer
        writer.close()


async def connect(port, ssl_context=None):
    if ssl_context is None:
        return await asyncio.open_connection("127.0.0.1", port)
    return await asyncio.open_connection(
        "127.0.0.1", port, ssl=ssl_context, server_hostname="localhost"
    )


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))


async def read_head(reader):
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    version, status = lines[0].split(" ")[:2]
    assert version == "HTTP/1.1"
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, "repeated field %s" % name
            headers[name.lower()] = value.strip()
    return int(status), headers


async def read_chunk(reader):
    """One chunk's data; ``b""`` for the last chunk (trailers must be empty)."""
    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
    if size == 0:
        assert await reader.readexactly(2) == b"\r\n"
        return b""
    data = await reader.readexactly(size)
    assert await reader.readexactly(2) == b"\r\n"
    return data


async def read_response(reader, method="GET"):
    status, headers = await read_head(reader)
    if method == "HEAD" or status in (204, 304) or status < 200:
        body = b""
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        parts = []
        while True:
            chunk = await read_chunk(reader)
            if not chunk:
                break
            parts.append(chunk)
        body = b"".join(parts)
    else:
        body = await reader.read()
    return Reply(status, headers, body)


async def assert_closed(reader):
    assert await asyncio.wait_for(reader.read(), 3) == b""


def get(path="/", extra=""):
    return ("GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (path, extra)).encode("latin-1")


async def echo_path(request):
    return Response(200, Headers([("content-type", "text/plain")]), request.target.encode())


def open_fds():
    # Sockets of earlier tests' clients may still wait for the garbage collector.
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


async def settle():
    """Let callbacks scheduled by closing transports run."""
    for _ in range(5):
        await asyncio.sleep(0.01)


# -- keep-alive and pipelining ---------------------------------------------------------


def test_keep_alive_reuses_the_connection():
    peers = []

    async def handler(request):
        peers.append(request.peer)
        assert request.method == "GET" and request.path == "/a/b" and request.query == "x=1&y"
        assert request.version == "HTTP/1.1" and not request.tls
        return Response(200, body=b"hi")

    async def main():
        async with connected(handler) as (server, reader, writer):
            for _ in range(2):
                writer.write(get("/a/b?x=1&y"))
                reply = await read_response(reader)
                assert reply.status == 200 and reply.body == b"hi"
                assert reply.headers["content-length"] == "2"
                assert "connection" not in reply.headers
            assert server.open_connections == 1

    run(main())
    assert len(peers) == 2 and peers[0] == peers[1] and peers[0][0] == "127.0.0.1"


def test_pipelined_requests_are_answered_in_order():
    log = []

    async def handler(request):
        log.append("start " + request.path)
        if request.path == "/slow":
            await asyncio.sleep(0.05)
        body = await request.body.read(100)
        log.append("end " + request.path)
        return Response(200, body=request.path.encode() + b":" + body)

    async def main():
        async with connected(handler) as (_, reader, writer):
            writer.write(
                b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
                + get("/fast")
                + b"POST /third HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"1\r\nz\r\n0\r\n\r\n"
            )
            bodies = [(await read_response(reader)).body for _ in range(3)]
            assert bodies == [b"/slow:abc", b"/fast:", b"/third:z"]

    run(main())
    assert log == [
        "start /slow",
        "end /slow",
        "start /fast",
        "end /fast",
        "start /third",
        "end /third",
    ]


# -- request bodies ----------------------------------------------------------------------


def test_chunked_request_body_is_streamed_with_async_for():
    async def main():
        first = asyncio.Event()
        seen = {}

        async def handler(request):
            seen["length"] = request.body.length
            chunks = []
            async for chunk in request.body:
                chunks.append(chunk)
                first.set()
            return Response(200, body=b"|".join(chunks))

        async with connected(handler) as (_, reader, writer):
            writer.write(
                b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
            )
            # The handler sees the first chunk before the client has sent the second.
            await asyncio.wait_for(first.wait(), 3)
            writer.write(b"6\r\n world\r\n0\r\n\r\n")
            reply = await read_response(reader)
            assert reply.status == 200 and reply.body == b"hello| world"
        assert seen["length"] is None

    run(main())


def test_read_over_limit_is_413_and_closes():
    async def handler(request):
        await request.body.read(10)
        return Response(200)

    async def main():
        async with connected(handler) as (_, reader, writer):
            writer.write(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            writer.write(b"8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n")
            reply = await read_response(reader)
            assert reply.status == 413
            assert reply.json()["error"]["type"] == "request_too_large"
            assert reply.headers["connection"] == "close"
            await assert_closed(reader)

    run(main())


def test_content_length_over_max_is_413_before_the_body_is_read():
    calls = []

    async def handler(request):
        calls.append(request)
        return Response(200)

    async def main():
        async with connected(handler, max_body_bytes=100) as (_, reader, writer):
            # No body is sent: the answer must come from the head alone.
            writer.write(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n")
            reply = await read_response(reader)
            assert reply.status == 413 and reply.headers["connection"] == "close"
            assert reply.json()["error"]["type"] == "request_too_large"
            await assert_closed(reader)

    run(main())
    assert calls == []


def test_an_error_answer_is_read_whole_while_the_client_still_sends_its_body():
    # The server answers from the head and closes: lingering (the write side shut, the
    # rest of the body read and dropped) lets the answer arrive rather than a reset.
    async def main():
        async with connected(echo_path, max_body_bytes=100) as (_, reader, writer):
            writer.write(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 400000\r\n\r\n" + b"x" * 400000)
            reply = await read_response(reader)
            assert reply.status == 413 and reply.headers["connection"] == "close"
            await assert_closed(reader)

    run(main())


def test_100_continue_is_sent_only_when_the_body_is_read():
    async def reads(request):
        return Response(200, body=await request.body.read(100))

    async def ignores(request):
        return Response(200, body=b"no thanks")

    head = b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"

    async def main():
        async with serving(reads) as (_, port):
            reader, writer = await connect(port)
            writer.write(head)
            assert await reader.readexactly(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"hello")
            reply = await read_response(reader)
            assert reply.status == 200 and reply.body == b"hello"
            assert "connection" not in reply.headers
            writer.close()
        async with serving(ignores) as (_, port):
            reader, writer = await connect(port)
            writer.write(head)
            reply = await read_response(reader)  # the first bytes are the final response
            assert reply.status == 200 and reply.body == b"no thanks"
            # The client may still send the body or not: the connection cannot be reused.
            assert reply.headers["connection"] == "close"
            await assert_closed(reader)
            writer.close()

    run(main())


def test_small_unread_body_is_discarded_and_the_connection_kept():
    async def main():
        async with connected(echo_path) as (server, reader, writer):
            writer.write(b"POST /one HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789")
            reply = await read_response(reader)
            assert reply.status == 200 and "connection" not in reply.headers
            writer.write(get("/two"))
            assert (await read_response(reader)).body == b"/two"

    run(main())


def test_a_body_that_came_with_its_head_reads_as_one_that_trickled_in():
    # ``read`` takes a body that arrived whole with its head at once (no wait, no
    # ``_next_chunk``); a body sent later goes through the general loop, and so does one
    # whose client expects ``100 Continue``. The handler must see the same in all three,
    # and the parser must stand at the next pipelined request afterwards.
    payload = b'{"model":"m","text":"' + b"y" * 3000 + b'"}'
    head = b"POST /%s HTTP/1.1\r\nHost: t\r\n%sContent-Length: %d\r\n\r\n"
    seen = []

    async def main():
        started = asyncio.Event()

        async def handler(request):
            started.set()
            body = request.body
            whole = body._pending is not None  # what decides between the two paths
            before = body.complete
            data = await body.read(1 << 20)
            again = await body.read(1)  # cached: the same bytes, whatever the limit
            replayed = b"".join([chunk async for chunk in body])
            if request.path != "/next":
                seen.append((request.path, whole, before, body.complete, data == again == replayed))
            return Response(200, body=data)

        async def answers(expected):
            assert (await read_response(reader, "POST")).body == expected
            assert (await read_response(reader)).body == b""  # the pipelined GET /next

        async with connected(handler) as (_, reader, writer):
            writer.write(head % (b"whole", b"", len(payload)) + payload + get("/next"))
            await answers(payload)
            started.clear()
            writer.write(head % (b"trickled", b"", len(payload)))
            await asyncio.wait_for(started.wait(), 3)
            writer.write(payload[:1000])
            await writer.drain()
            writer.write(payload[1000:] + get("/next"))
            await answers(payload)
            expect = b"Expect: 100-continue\r\n"
            writer.write(head % (b"expecting", expect, len(payload)) + payload + get("/next"))
            assert await reader.readexactly(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
            await answers(payload)

    run(main())
    assert seen == [
        ("/whole", True, False, True, True),
        ("/trickled", False, False, True, True),
        ("/expecting", True, False, True, True),
    ]


def test_read_over_limit_of_a_body_that_came_whole_is_413_and_closes():
    async def handler(request):
        await request.body.read(10)
        return Response(200)

    async def main():
        async with connected(handler) as (_, reader, writer):
            writer.write(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 16\r\n\r\n" + b"x" * 16)
            reply = await read_response(reader)
            assert reply.status == 413 and reply.headers["connection"] == "close"
            await assert_closed(reader)

    run(main())


# -- responses ------------------------------------------------------------------------


def test_streaming_response_body_is_chunked_and_aclosed():
    closed = []

    async def main():
        async def handler(request):
            async def body():
                try:
                    yield b"one"
                    yield b""
                    yield b"two"
                finally:
                    closed.append(True)

            # The handler's own transfer-encoding and connection fields are replaced.
            headers = Headers([("transfer-encoding", "gzip"), ("connection", "foo"), ("x-a", "1")])
            return Response(200, headers, body())

        async with connected(handler) as (server, reader, writer):
            writer.write(get())
            reply = await read_response(reader)
            assert reply.headers["transfer-encoding"] == "chunked"
            assert "content-length" not in reply.headers and "connection" not in reply.headers
            assert reply.headers["x-a"] == "1"
            assert reply.body == b"onetwo"
            writer.write(get("/again"))
            assert (await read_response(reader)).status == 200
            assert server.open_streams == 0

    run(main())
    assert closed == [True, True]


@pytest.mark.parametrize(
    "fault, line",
    [
        # Made per test: a raised exception keeps its frames, the request's among them.
        (lambda: errors.UpstreamError("upstream u:1 closed the connection mid-body"),
         "response to GET /s cut short: upstream u:1 closed the connection mid-body"),
        (lambda: errors.UpstreamTimeout("upstream u:1 sent nothing for 600s"),
         "response to GET /s cut short: upstream u:1 sent nothing for 600s"),
        (lambda: ConnectionResetError(104, "Connection reset by peer"),
         "response to GET /s cut short: ConnectionResetError: [Errno 104] Connection reset by "
         "peer"),
    ],
)
def test_a_network_fault_mid_response_is_one_log_line_without_traceback(caplog, fault, line):
    async def main():
        async def handler(request):
            async def body():
                yield b"partial"
                raise fault()

            return Response(200, body=body())

        async with connected(handler) as (_, reader, writer):
            writer.write(get("/s"))
            status, _ = await read_head(reader)
            assert status == 200 and await read_chunk(reader) == b"partial"
            await assert_closed(reader)  # cut short: no last chunk, the connection closes

    with caplog.at_level(logging.DEBUG, logger="cliproxy.http.server"):
        run(main())
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == [line]
    assert not any(r.exc_info for r in caplog.records)


def test_a_bug_mid_response_still_logs_its_traceback(caplog):
    async def main():
        async def handler(request):
            async def body():
                yield b"partial"
                raise KeyError("a bug")

            return Response(200, body=body())

        async with connected(handler) as (_, reader, writer):
            writer.write(get("/s"))
            assert (await read_head(reader))[0] == 200
            await read_chunk(reader)
            await assert_closed(reader)

    with caplog.at_level(logging.WARNING, logger="cliproxy.http.server"):
        run(main())
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.getMessage() == "response to GET /s failed after it started"
    assert record.exc_info[0] is KeyError


def test_a_streamed_head_and_each_chunk_leave_without_waiting_for_what_follows():
    # Writes of one loop step go out together (a head with a first chunk that is already
    # there), but nothing is held back for bytes that have not come: the head arrives
    # while the body has produced nothing, each chunk while the next is not made yet.
    async def main():
        steps = [asyncio.Event(), asyncio.Event()]

        async def handler(request):
            async def body():
                await steps[0].wait()
                yield b"first"
                await steps[1].wait()
                yield b"second"

            return Response(200, Headers([("content-type", "text/event-stream")]), body())

        async with connected(handler) as (server, reader, writer):
            writer.write(get())
            status, headers = await asyncio.wait_for(read_head(reader), 3)
            assert status == 200 and headers["transfer-encoding"] == "chunked"
            steps[0].set()
            assert await asyncio.wait_for(read_chunk(reader), 3) == b"first"
            steps[1].set()
            assert await asyncio.wait_for(read_chunk(reader), 3) == b"second"
            assert await asyncio.wait_for(read_chunk(reader), 3) == b""
            writer.write(get("/again"))
            assert (await read_response(reader)).status == 200

    run(main())


def test_a_body_that_never_waits_still_lets_the_loop_serve_others():
    # An inflating gzip bomb is a body whose pieces are always ready; read by a client
    # that takes them as fast, the transport never pauses. The loop must still get a turn
    # now and then: here a ticker task counts its turns while 16 MiB go out.
    piece = b"x" * 65536
    pieces = 256
    turns = []

    def read_all(sock):
        with sock:
            sock.sendall(get())
            while True:
                data = sock.recv(1 << 20)
                if not data or data.endswith(b"0\r\n\r\n"):
                    return

    async def main():
        ticks = [0]

        async def ticker():
            while True:
                ticks[0] += 1
                await asyncio.sleep(0)

        async def handler(request):
            async def body():
                for _ in range(pieces):
                    turns.append(ticks[0])
                    yield piece

            return Response(200, body=body())

        async with serving(handler) as (_, port):
            counting = asyncio.ensure_future(ticker())
            sock = socket.create_connection(("127.0.0.1", port))
            await asyncio.get_running_loop().run_in_executor(None, read_all, sock)
            counting.cancel()

    run(main())
    assert len(turns) == pieces
    # At least once per MiB, whether or not the client ever fell behind.
    assert len(set(turns)) >= pieces * len(piece) // (1 << 20)


def test_streaming_response_to_http10_is_close_delimited():
    async def handler(request):
        async def body():
            yield b"abc"
            yield b"def"

        return Response(200, body=body())

    async def main():
        async with connected(handler) as (_, reader, writer):
            writer.write(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, headers = await read_head(reader)
            assert status == 200 and headers["connection"] == "close"
            assert "transfer-encoding" not in headers and "content-length" not in headers
            assert await reader.read() == b"abcdef"

    run(main())


def test_head_response_has_no_body():
    async def main():
        async with connected(echo_path) as (_, reader, writer):
            writer.write(b"HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n")
            reply = await read_response(reader, method="HEAD")
            assert reply.status == 200 and reply.headers["content-length"] == "2"
            # Had body bytes followed the HEAD answer, this response would not parse.
            writer.write(get("/next"))
            reply = await read_response(reader)
            assert reply.status == 200 and reply.body == b"/next"

    run(main())


def test_handler_errors_become_json_responses():
    async def handler(request):
        if request.path == "/boom":
            raise RuntimeError("secret internals")
        raise errors.Forbidden("not you", headers=[("x-why", "test")])

    async def main():
        async with connected(handler) as (_, reader, writer):
            writer.write(get("/boom"))
            reply = await read_response(reader)
            assert reply.status == 500 and reply.json()["error"]["type"] == "api_error"
            assert b"secret" not in reply.body
            writer.write(get("/denied"))
            reply = await read_response(reader)
            assert reply.status == 403 and reply.headers["x-why"] == "test"
            assert reply.json() == {"error": {"type": "permission_error", "message": "not you"}}

    run(main())


# -- bad input ------------------------------------------------------------------------


async def expect_error_and_close(port, data, status):
    reader, writer = await connect(port)
    writer.write(data)
    reply = await read_response(reader)
    assert reply.status == status
    assert reply.headers["connection"] == "close"
    assert reply.json()["error"]["type"] == "invalid_request_error"
    await assert_closed(reader)
    writer.close()


def test_malformed_request_is_400_and_closes():
    async def main():
        async with serving(echo_path) as (_, port):
            await expect_error_and_close(port, b"GARBAGE\r\n\r\n", 400)

    run(main())


def test_header_block_too_large_is_431():
    async def main():
        async with serving(echo_path, max_header_bytes=1024) as (_, port):
            await expect_error_and_close(port, get("/", "x-big: %s\r\n" % ("a" * 2000)), 431)

    run(main())


def test_content_length_with_transfer_encoding_is_400_and_closes():
    async def main():
        async with serving(echo_path) as (_, port):
            data = (
                b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
                b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            await expect_error_and_close(port, data, 400)

    run(main())


def test_bad_chunk_framing_is_400_and_closes():
    async def handler(request):
        await request.body.read(1000)
        return Response(200)

    async def main():
        async with serving(handler) as (_, port):
            data = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
            await expect_error_and_close(port, data, 400)

    run(main())


# -- timeouts -------------------------------------------------------------------------


def test_idle_keep_alive_connection_is_closed_quietly():
    async def main():
        async with connected(echo_path, idle_timeout=0.2) as (_, reader, writer):
            writer.write(get())
            assert (await read_response(reader)).status == 200
            # Nothing more is sent: the server closes without writing anything.
            await assert_closed(reader)

    run(main())


def test_slow_request_head_gets_408_and_close():
    async def main():
        async with connected(echo_path, read_timeout=0.2) as (_, reader, writer):
            writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n")
            reply = await read_response(reader)
            assert reply.status == 408 and reply.headers["connection"] == "close"
            await assert_closed(reader)

    run(main())


def test_slow_request_body_gets_408():
    async def handler(request):
        return Response(200, body=await request.body.read(100))

    async def main():
        async with connected(handler, read_timeout=0.2) as (_, reader, writer):
            writer.write(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
            reply = await read_response(reader)
            assert reply.status == 408 and reply.headers["connection"] == "close"
            assert reply.json()["error"]["type"] == "timeout_error"
            await assert_closed(reader)

    run(main())


async def no_answer_yet(reader):
    """Assert the server has written nothing (and not closed) for a moment of real time."""
    try:
        data = await asyncio.wait_for(reader.read(1), 0.1)
    except asyncio.TimeoutError:
        return
    raise AssertionError("the server answered or closed early: %r" % data)


def test_a_request_head_must_come_whole_within_request_timeout():
    # Each byte comes well within read-timeout (600 s); the head as a whole is cut at
    # request-timeout (120 s) after its first byte.
    async def main():
        async with connected(echo_path) as (_, reader, writer):
            writer.write(b"GET / HTTP/1.1\r\n")
            for _ in range(3):
                await advance(39)
                writer.write(b"X-Slow: 1\r\n")
                await no_answer_yet(reader)
            await advance(4)  # 121 s since the first byte
            reply = await read_response(reader)
            assert reply.status == 408 and reply.headers["connection"] == "close"
            await assert_closed(reader)

    run_jumping(main())


def test_no_wait_for_head_bytes_exceeds_read_timeout():
    async def main():
        limits = {"read_timeout": 50, "request_timeout": 1000}
        async with connected(echo_path, **limits) as (_, reader, writer):
            writer.write(b"GET / HTTP/1.1\r\n")
            await advance(40)
            writer.write(b"X-Slow: 1\r\n")  # a byte: the wait starts again
            await advance(40)
            await no_answer_yet(reader)
            await advance(11)
            assert (await read_response(reader)).status == 408
            await assert_closed(reader)

    run_jumping(main())


def body_echo_handler():
    async def handler(request):
        try:
            return Response(200, body=await request.body.read(1000))
        except errors.ProxyError as exc:
            return Response(exc.status, body=exc.message.encode())

    return handler


def test_a_request_body_must_come_whole_within_request_timeout():
    async def main():
        async with connected(body_echo_handler()) as (_, reader, writer):
            writer.write(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\na")
            for _ in range(3):
                await advance(39)
                writer.write(b"b")  # a byte well within read-timeout each time
                await no_answer_yet(reader)
            await advance(4)
            reply = await read_response(reader)
            assert reply.status == 408 and reply.headers["connection"] == "close"
            assert reply.body == b"the request was not received whole within 120s"
            await assert_closed(reader)

    run_jumping(main())


def test_no_wait_for_body_bytes_exceeds_read_timeout():
    async def main():
        limits = {"read_timeout": 50, "request_timeout": 1000}
        async with connected(body_echo_handler(), **limits) as (_, reader, writer):
            writer.write(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
            await advance(49)
            await no_answer_yet(reader)
            await advance(2)
            reply = await read_response(reader)
            assert reply.status == 408 and reply.body == b"no request body bytes came for 50s"
            await assert_closed(reader)

    run_jumping(main())


def test_request_timeout_of_a_100_continue_body_counts_from_the_100():
    # The client may not send its body before the 100 Continue: the handler asks for it
    # 110 s after the head came, and the client's 20 s to send it are its own.
    async def main():
        asked = asyncio.Event()
        go = asyncio.Event()

        async def handler(request):
            asked.set()
            await go.wait()
            return Response(200, body=await request.body.read(100))

        async with connected(handler) as (_, reader, writer):
            writer.write(
                b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
            )
            await asyncio.wait_for(asked.wait(), 3)
            await advance(110)
            go.set()
            assert (await read_head(reader))[0] == 100
            await advance(20)
            writer.write(b"ok")
            reply = await read_response(reader)
            assert reply.status == 200 and reply.body == b"ok"

    run_jumping(main())


def test_a_keep_alive_connection_is_closed_after_idle_timeout():
    async def main():
        async with connected(echo_path) as (_, reader, writer):
            writer.write(get())
            assert (await read_response(reader)).status == 200
            await advance(74)
            await no_answer_yet(reader)
            await advance(2)
            await assert_closed(reader)

    run_jumping(main())


def test_a_client_that_stops_reading_its_response_is_cut_after_read_timeout(caplog):
    async def main():
        sent = []
        closed = asyncio.Event()

        async def endless():
            try:
                while True:
                    sent.append(1)
                    yield b"x" * 65536
            finally:
                closed.set()

        async def handler(request):
            return Response(200, body=endless())

        async with serving(handler) as (server, port):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(get())
            await until_still(lambda: len(sent))  # the socket and the buffer are full
            await advance(599)
            assert not closed.is_set()
            await advance(2)
            await asyncio.wait_for(closed.wait(), 3)
            await settle()
            assert server.open_connections == 0 and server.open_streams == 0
            writer.close()

    with caplog.at_level(logging.INFO, logger="cliproxy.http.server"):
        run_jumping(main())
    lines = [r for r in caplog.records if r.name == "cliproxy.http.server"]
    assert [r.getMessage() for r in lines] == [
        "client 127.0.0.1 read nothing of its response for 600s; connection cut"
    ]


def test_a_tls_handshake_must_come_within_the_shorter_timeout():
    async def main():
        server_ctx, _ = tls_contexts()
        async with serving(echo_path, server_ctx, request_timeout=30) as (server, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)  # no TLS
            await advance(29)
            await no_answer_yet(reader)
            await advance(2)
            assert await asyncio.wait_for(reader.read(), 3) == b""
            writer.close()

    run_jumping(main())


# -- client going away ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def no_leaks():
    """Assert that the block leaves no task and no file descriptor behind."""
    await settle()
    tasks, fds = set(asyncio.all_tasks()), open_fds()
    yield
    await settle()
    assert set(asyncio.all_tasks()) == tasks
    assert open_fds() == fds


def waiting_handler():
    """(handler, started, cancelled): the handler sets ``started``, then waits as if for an
    upstream until it is cancelled, and sets ``cancelled`` on its way out."""
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def handler(request):
        started.set()
        try:
            await asyncio.sleep(30)  # stands for awaiting an upstream
        finally:
            cancelled.set()
        return Response(200)

    return handler, started, cancelled


def test_client_disconnect_cancels_a_waiting_handler():
    async def main():
        async with no_leaks():
            handler, started, cancelled = waiting_handler()

            async with serving(handler) as (server, port):
                reader, writer = await connect(port)
                writer.write(get())
                await asyncio.wait_for(started.wait(), 3)
                assert server.in_flight == 1
                writer.close()
                await asyncio.wait_for(cancelled.wait(), 3)
                await settle()
                assert server.in_flight == 0 and server.open_connections == 0

    run(main())


def test_client_disconnect_mid_stream_acloses_the_body():
    async def main():
        async with no_leaks():
            closed = asyncio.Event()

            async def handler(request):
                async def body():
                    try:
                        while True:
                            yield b"tick"
                            await asyncio.sleep(0.01)
                    finally:
                        closed.set()

                return Response(200, body=body())

            async with serving(handler) as (server, port):
                reader, writer = await connect(port)
                writer.write(get())
                status, headers = await read_head(reader)
                assert status == 200 and await read_chunk(reader) == b"tick"
                assert server.open_streams == 1
                writer.close()
                await asyncio.wait_for(closed.wait(), 3)
                await settle()
                assert server.open_streams == 0 and server.open_connections == 0

    run(main())


# -- shutdown -------------------------------------------------------------------------


def test_graceful_shutdown_lets_a_stream_finish():
    async def main():
        async with no_leaks():
            release = asyncio.Event()

            async def handler(request):
                async def body():
                    yield b"first"
                    await release.wait()
                    yield b"last"

                if request.path == "/idle":
                    return Response(200)
                return Response(200, body=body())

            server = Server(handler, Limits)
            _, port = await server.start("127.0.0.1", 0)
            idle_reader, idle_writer = await connect(port)
            idle_writer.write(get("/idle"))
            assert (await read_response(idle_reader)).status == 200
            reader, writer = await connect(port)
            writer.write(get())
            await read_head(reader)
            assert await read_chunk(reader) == b"first"

            stopping = asyncio.ensure_future(server.shutdown(5.0))
            await asyncio.sleep(0.05)
            try:
                await connect(port)
            except ConnectionRefusedError:
                pass
            else:
                raise AssertionError("a new connection was accepted during shutdown")
            await assert_closed(idle_reader)  # idle keep-alive connections are closed at once
            assert not stopping.done() and server.in_flight == 1

            release.set()
            assert await read_chunk(reader) == b"last"
            assert await read_chunk(reader) == b""
            await assert_closed(reader)
            await asyncio.wait_for(stopping, 3)
            assert server.open_connections == 0
            writer.close()
            idle_writer.close()

    run(main())


def test_shutdown_cancels_a_stream_that_outlives_the_drain_timeout():
    async def main():
        async with no_leaks():
            closed = asyncio.Event()

            async def handler(request):
                async def body():
                    try:
                        yield b"first"
                        await asyncio.Event().wait()
                    finally:
                        closed.set()

                return Response(200, body=body())

            server = Server(handler, Limits)
            _, port = await server.start("127.0.0.1", 0)
            reader, writer = await connect(port)
            writer.write(get())
            await read_head(reader)
            assert await read_chunk(reader) == b"first"
            await asyncio.wait_for(server.shutdown(0.2), 3)
            assert closed.is_set()
            # Cut short: EOF without the last chunk.
            assert await asyncio.wait_for(reader.read(), 3) == b""
            writer.close()

    run(main())


# -- upgrade and TLS ------------------------------------------------------------------


def test_upgrade_hands_the_socket_to_on_upgrade():
    async def main():
        ended = asyncio.Event()

        async def echo(reader, writer, leftover):
            try:
                writer.write(leftover)
                while True:
                    data = await reader.read(1024)
                    if not data:
                        break
                    writer.write(data)
                    await writer.drain()
            finally:
                ended.set()

        async def handler(request):
            assert request.headers.get("upgrade") == "echo"
            return Response(
                101, Headers([("upgrade", "echo"), ("connection", "upgrade")]), on_upgrade=echo
            )

        server = Server(handler, lambda: Limits(idle_timeout=0.1, read_timeout=0.1))
        _, port = await server.start("127.0.0.1", 0)
        reader, writer = await connect(port)
        writer.write(get("/ws", "Connection: Upgrade\r\nUpgrade: echo\r\n") + b"early")
        status, headers = await read_head(reader)
        assert status == 101 and headers["upgrade"] == "echo" and headers["connection"] == "upgrade"
        assert await reader.readexactly(5) == b"early"
        await asyncio.sleep(0.3)  # longer than both timeouts: tunnels are exempt
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        assert server.open_tunnels == 1 and server.in_flight == 0
        # The tunnel does not hold the drain; shutdown closes it.
        await asyncio.wait_for(server.shutdown(5.0), 2)
        assert ended.is_set()
        await assert_closed(reader)
        writer.close()

    run(main())


def test_tls_request():
    seen = []

    async def handler(request):
        seen.append(request.tls)
        return Response(200, body=b"secure")

    async def main():
        async with connected(handler, tls=True) as (_, reader, writer):
            writer.write(get())
            reply = await read_response(reader)
            assert reply.status == 200 and reply.body == b"secure"

    run(main())
    assert seen == [True]


def test_protocol_errors_are_logged_without_traceback(caplog):
    async def main():
        async with serving(echo_path) as (_, port):
            await expect_error_and_close(port, b"GARBAGE\r\n\r\n", 400)

    with caplog.at_level(logging.INFO, logger="cliproxy.http.server"):
        run(main())
    records = [r for r in caplog.records if r.name == "cliproxy.http.server"]
    assert len(records) == 1 and records[0].exc_info is None
    assert "invalid request line" in records[0].getMessage()


# -- flow control, pipelining bursts, half-close -----------------------------------------


def test_large_request_body_reaches_a_slow_reader_whole():
    # Far more than the read high-water mark: reading pauses and resumes as the handler reads.
    payload = bytes(range(256)) * 8192  # 2 MiB

    async def handler(request):
        parts = []
        async for chunk in request.body:
            parts.append(chunk)
            await asyncio.sleep(0)  # a consumer slower than the socket
        data = b"".join(parts)
        return Response(200, body=b"%d:%d" % (len(data), data == payload))

    async def main():
        async with connected(handler, max_body_bytes=len(payload)) as (_, reader, writer):
            writer.write(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(payload))
            writer.write(payload)
            reply = await read_response(reader)
            assert reply.status == 200 and reply.body == b"%d:1" % len(payload)

    run(main())


def test_large_responses_reach_a_slow_client_whole():
    # Bigger than the socket buffers: writes wait for the client (pause/resume writing).
    big = os.urandom(4 << 20)

    async def handler(request):
        if request.path == "/bytes":
            return Response(200, body=big)

        async def body():
            for _ in range(4):
                yield big

        return Response(200, body=body())

    async def main():
        async with connected(handler) as (server, reader, writer):
            for path, expected in (("/bytes", big), ("/stream", big * 4)):
                writer.write(get(path))
                await asyncio.sleep(0.1)  # let the server fill the buffers and pause
                reply = await read_response(reader)
                assert reply.status == 200 and reply.body == expected
            assert server.open_streams == 0

    run(main())


def test_a_burst_of_pipelined_requests_is_answered_in_order():
    async def main():
        async with connected(echo_path) as (_, reader, writer):
            writer.write(b"".join(get("/%d" % i) for i in range(500)))
            for i in range(500):
                reply = await read_response(reader)
                assert reply.status == 200 and reply.body == b"/%d" % i

    run(main())


def test_eof_in_the_middle_of_a_head_is_400_and_closes():
    async def main():
        async with connected(echo_path) as (_, reader, writer):
            writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n")
            writer.write_eof()
            reply = await read_response(reader)
            assert reply.status == 400 and reply.headers["connection"] == "close"
            await assert_closed(reader)

    run(main())


def test_half_closed_client_cancels_its_handler():
    async def main():
        async with no_leaks():
            handler, started, cancelled = waiting_handler()

            async with connected(handler) as (server, reader, writer):
                writer.write(get())
                await asyncio.wait_for(started.wait(), 3)
                writer.write_eof()
                await asyncio.wait_for(cancelled.wait(), 3)
                await assert_closed(reader)
                await settle()
                assert server.in_flight == 0 and server.open_connections == 0

    run(main())


def test_idle_timeout_counts_from_the_last_response():
    async def main():
        async with connected(echo_path, idle_timeout=0.3) as (_, reader, writer):
            for _ in range(4):  # 0.6 s in all: longer than one idle timeout
                writer.write(get())
                assert (await read_response(reader)).status == 200
                await asyncio.sleep(0.15)
            await assert_closed(reader)

    run(main())


def test_deadlines_keep_the_clock_of_a_loop_that_has_its_own():
    # The server reads ``time.monotonic`` itself only when the loop's ``time()`` is
    # ``BaseEventLoop``'s. Here the loop's clock runs 1000 s ahead: deadlines computed on
    # any other clock would all have passed, and the idle connection would close at once.
    class AheadLoop(asyncio.SelectorEventLoop):
        def time(self):
            return super().time() + 1000.0

    async def main():
        async with connected(echo_path, idle_timeout=5) as (_, reader, writer):
            for path in ("/one", "/two"):
                await asyncio.sleep(0.05)  # a tick for a wrongly armed timer to fire
                writer.write(get(path))
                assert (await read_response(reader)).body == path.encode()

    loop = AheadLoop()
    try:
        loop.run_until_complete(asyncio.wait_for(main(), 10))
    finally:
        loop.close()


@pytest.mark.parametrize("reads", [False, True])
@pytest.mark.parametrize(
    "framing, body",
    [
        (b"Content-Length: 5\r\n", b"hello"),
        (b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    ],
)
def test_an_upgrade_tunnel_starts_after_the_request_body(framing, body, reads):
    # The body of a request that switches protocols is the request's: none of its bytes
    # may reach the tunnel, whatever its framing and however it was split into reads,
    # whether or not the handler read it.
    async def main():
        seen = []

        async def keep(reader, writer, leftover):
            seen.append(leftover + await reader.read(1024))
            writer.close()

        async def handler(request):
            if reads:
                seen.append(await request.body.read(100))
            return Response(101, Headers([("upgrade", "echo")]), on_upgrade=keep)

        async with connected(handler) as (_, reader, writer):
            writer.write(get("/ws", "Connection: Upgrade\r\nUpgrade: echo\r\n" + framing.decode()))
            writer.write(body[:3])
            await asyncio.sleep(0.05)
            writer.write(body[3:])
            assert (await read_head(reader))[0] == 101
            writer.write(b"after")
            await assert_closed(reader)
        assert seen == ([b"hello"] if reads else []) + [b"after"]

    run(main())


def test_upgrade_over_tls():
    async def main():
        async def echo(reader, writer, leftover):
            data = await reader.readexactly(4)
            writer.write(leftover + data)
            await writer.drain()
            writer.close()

        async def handler(request):
            return Response(101, Headers([("upgrade", "echo")]), on_upgrade=echo)

        server_ctx, client_ctx = tls_contexts()
        async with serving(handler, ssl_context=server_ctx) as (server, port):
            reader, writer = await connect(port, client_ctx)
            writer.write(get("/ws", "Connection: Upgrade\r\nUpgrade: echo\r\n") + b"ab")
            status, headers = await read_head(reader)
            assert status == 101 and headers["connection"] == "upgrade"
            writer.write(b"ping")
            assert await reader.readexactly(6) == b"abping"
            assert await asyncio.wait_for(reader.read(), 3) == b""
            writer.close()
            await settle()
            assert server.open_tunnels == 0 and server.open_connections == 0

    run(main())


def test_reset_with_pipelined_requests_queued_leaks_nothing():
    # The client resets while the server has stopped reading (a handler is busy and more
    # than the high-water mark of pipelined input waits): the server learns it only when
    # writing, just before it would start the next pipelined request.
    async def main():
        async with no_leaks():
            started = asyncio.Event()
            release = asyncio.Event()

            async def handler(request):
                if request.path == "/first":
                    started.set()
                    await release.wait()
                return Response(200, body=b"ok")

            async with serving(handler) as (server, port):
                reader, writer = await connect(port)
                writer.write(get("/first"))
                await asyncio.wait_for(started.wait(), 3)
                writer.write(get("/next") * 4000)  # well past the read high-water mark
                await settle()
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()  # RST
                await settle()
                release.set()
                await settle()
                assert server.in_flight == 0 and server.open_connections == 0

    run(main())


# -- exact bytes of the common response path ------------------------------------------


def test_bytes_response_head_is_framed_by_the_server_byte_for_byte():
    async def handler(request):
        # The handler's framing fields are dropped; the server sets length and connection.
        headers = Headers(
            [
                ("Content-Type", "application/json"),
                ("Content-Length", "999"),
                ("Transfer-Encoding", "chunked"),
                ("Connection", "close"),
                ("X-A", "1"),
            ]
        )
        return Response(200, headers, b'{"status":"ok"}')

    async def main():
        async with connected(handler) as (_, reader, writer):
            writer.write(get("/a") + b"GET /b HTTP/1.0\r\n\r\n")
            expected_head = (
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-a: 1\r\n"
                b"content-length: 15\r\n"
            )
            body = b'{"status":"ok"}'
            first = await reader.readexactly(len(expected_head) + 2 + len(body))
            assert first == expected_head + b"\r\n" + body
            second = await reader.read()  # HTTP/1.0 without keep-alive: closed after it
            assert second == expected_head + b"connection: close\r\n\r\n" + body

    run(main())


def test_bytes_and_streamed_answers_follow_one_framing_rule():
    async def pieces(*parts):
        for part in parts:
            yield part

    def answer(status, declared, body):
        fields = [("x-kind", "k")] + ([("content-length", declared)] if declared else [])
        return Response(status, Headers(fields), body)

    answers = {
        "/bytes": lambda: answer(200, None, b"hello"),
        "/bytes-declared": lambda: answer(200, "999", b"hello"),  # the bytes' length wins
        "/stream": lambda: answer(200, None, pieces(b"he", b"llo")),
        "/stream-declared": lambda: answer(200, "5", pieces(b"he", b"llo")),
        "/not-modified": lambda: answer(304, "12", b""),
        "/no-content": lambda: answer(204, "5", b""),
    }

    async def handler(request):
        return answers[request.path]()

    cases = [
        ("GET", "/bytes", 200, "5", None, b"hello"),
        ("HEAD", "/bytes", 200, "5", None, b""),
        ("GET", "/bytes-declared", 200, "5", None, b"hello"),
        ("HEAD", "/bytes-declared", 200, "999", None, b""),  # what a GET would have said
        ("GET", "/stream", 200, None, "chunked", b"hello"),
        ("HEAD", "/stream", 200, None, None, b""),
        ("GET", "/stream-declared", 200, "5", None, b"hello"),
        ("HEAD", "/stream-declared", 200, "5", None, b""),
        ("GET", "/not-modified", 304, "12", None, b""),
        ("GET", "/no-content", 204, None, None, b""),
    ]

    async def main():
        async with connected(handler) as (_, reader, writer):
            for method, path, status, length, coding, body in cases:
                writer.write(("%s %s HTTP/1.1\r\nHost: t\r\n\r\n" % (method, path)).encode())
                reply = await read_response(reader, method=method)
                seen = (reply.status, reply.headers.get("content-length"),
                        reply.headers.get("transfer-encoding"), reply.body, reply.headers["x-kind"])
                assert seen == (status, length, coding, body, "k"), (method, path)
            writer.write(get("/bytes"))  # nothing stray between the answers
            assert (await read_response(reader)).body == b"hello"

    run(main())


def test_bytes_response_to_http10_keep_alive_says_keep_alive():
    async def handler(request):
        return Response(204 if request.path == "/none" else 200, None, b"hi")

    async def main():
        async with connected(handler) as (_, reader, writer):
            writer.write(b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            expected = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nhi"
            assert await reader.readexactly(len(expected)) == expected
            writer.write(get("/none"))
            expected = b"HTTP/1.1 204 No Content\r\n\r\n"
            assert await reader.readexactly(len(expected)) == expected

    run(main())


def test_a_finished_request_leaves_no_reference_cycle_holding_its_body():
    # Bodies read whole are cached on the request; a cycle (request cycle <-> body) would
    # keep each one until the cyclic collector runs, hundreds of requests later: with
    # 60 KB agent turns, megabytes.
    payload = b"x" * 60000

    async def handler(request):
        body = await request.body.read(1 << 20)
        return Response(200, body=b"%d" % len(body))

    async def main():
        async with connected(handler) as (server, reader, writer):
            for _ in range(3):
                writer.write(
                    b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % len(payload)
                    + payload
                )
                reply = await read_response(reader, "POST")
                assert reply.status == 200 and reply.body == b"60000"
            await asyncio.sleep(0)  # the request task's last step
            return sum(1 for obj in gc.get_objects() if type(obj).__name__ == "RequestBody")

    gc.collect()
    gc.disable()
    try:
        alive = run(main())
    finally:
        gc.enable()
    assert alive == 0
