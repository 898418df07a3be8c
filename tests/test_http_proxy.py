"""Tests for cliproxy.http.proxy: forward() against tiny real upstreams on 127.0.0.1, and
end to end through cliproxy.http.server for client disconnects."""

import asyncio
import gzip
import os
import zlib

import pytest

from cliproxy.config.model import Limits
from cliproxy.errors import UpstreamError, UpstreamTimeout
from cliproxy.http import proxy
from cliproxy.http.client import HttpClient
from cliproxy.http.headers import Headers
from cliproxy.http.proxy import forward, is_event_stream
from cliproxy.http.server import Server
from tests.support.http_peers import (  # noqa: F401 (no_proxy_env is an autouse fixture)
    RawServer,
    advance,
    free_port,
    no_proxy_env,
    read_request,
    run,
    run_jumping,
    send,
    serving_with_client,
    until_still,
)


def chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


class Upstream(RawServer):
    """A raw upstream: reads one request, then runs ``handler(upstream, reader, writer)``."""

    def __init__(self, handler):
        super().__init__()
        self.handler = handler
        self.requests = []
        self.saw_close = asyncio.Event()

    async def serve(self, reader, writer):
        self.requests.append(await read_request(reader))
        # Watch for the proxy closing its side while the handler writes.
        watch = asyncio.ensure_future(self.wait_for_close(reader))
        self.tasks.append(watch)
        await self.handler(self, reader, writer)
        await watch

    async def wait_for_close(self, reader):
        """Record when the proxy closes its side (EOF or reset) of this connection."""
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
        self.saw_close.set()


def respond(raw):
    async def handler(upstream, reader, writer):
        await send(writer, raw)

    return handler


async def collect(body):
    if isinstance(body, bytes):
        return body
    pieces = []
    async for piece in body:
        pieces.append(piece)
    await body.aclose()
    return b"".join(pieces)


def test_is_event_stream_compares_media_type_only():
    assert is_event_stream(Headers([("content-type", "text/event-stream")]))
    assert is_event_stream(Headers([("content-type", "Text/Event-Stream ; charset=utf-8")]))
    assert not is_event_stream(Headers([("content-type", "application/stream+json")]))
    assert not is_event_stream(Headers([("content-type", "text/event-streamed")]))
    assert not is_event_stream(Headers())


def test_common_content_types_answer_as_the_media_type_parse_does():
    # The table of usual spellings is a shortcut: it must give what the parse gives.
    for value, answer in proxy._COMMON_CONTENT_TYPES.items():
        assert answer == (value.split(";", 1)[0].strip().lower() == "text/event-stream")
        assert is_event_stream(Headers([("content-type", value)])) is answer


def test_hop_by_hop_dropped_both_ways_and_host_set():
    async def main():
        raw = (
            b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n"
            b"connection: keep-alive, x-resp-hop\r\nkeep-alive: timeout=5\r\n"
            b"x-resp-hop: 1\r\nproxy-authenticate: Basic\r\nx-kept: yes\r\n"
            b"content-length: 2\r\n\r\n{}"
        )
        async with serving_with_client(Upstream(respond(raw))) as (up, client):
            headers = Headers(
                [
                    ("Host", "proxy.local:8317"),
                    ("Connection", "keep-alive, X-Req-Hop"),
                    ("X-Req-Hop", "secret-ish"),
                    ("Keep-Alive", "timeout=5"),
                    ("TE", "trailers"),
                    ("Trailer", "x-t"),
                    ("Upgrade", "h2c"),
                    ("Proxy-Authorization", "Basic abc"),
                    ("Proxy-Foo", "1"),
                    ("Authorization", "Bearer upstream-key"),
                    ("X-Kept-Req", "1"),
                ]
            )
            response = await forward(client, "POST", up.url("/api/x?q=1"), headers, b'{"a":1}')
            assert response.status == 201
            assert await collect(response.body) == b"{}"
            names = [name for name, _ in response.headers]
            assert "x-kept" in names and "content-type" in names
            for dropped in ("connection", "keep-alive", "x-resp-hop", "proxy-authenticate"):
                assert dropped not in names
            head, body = up.requests[0]
            lines = head.lower().split("\r\n")
            assert lines[0] == "post /api/x?q=1 http/1.1"
            assert "host: 127.0.0.1:%d" % up.port in lines
            assert "x-kept-req: 1" in lines and "authorization: bearer upstream-key" in lines
            for dropped in ("connection", "x-req-hop", "keep-alive", "te", "trailer", "upgrade",
                            "proxy-authorization", "proxy-foo"):
                assert not any(line.startswith(dropped + ":") for line in lines), dropped
            assert body == b'{"a":1}'
            # The original headers object is not changed.
            assert headers.get("host") == "proxy.local:8317"

    run(main())


def sse_handler(events, gzipped=False, content_type=b"text/event-stream"):
    """An upstream that sends each of ``events`` as one chunk, waiting for ``go`` between."""

    async def handler(upstream, reader, writer):
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: " + content_type + b"\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        for index, event in enumerate(events):
            if index:
                await upstream.go.wait()
                upstream.go.clear()
            if gzipped:
                event = compressor.compress(event) + compressor.flush(zlib.Z_SYNC_FLUSH)
            await send(writer, chunk(event))
        if gzipped:
            writer.write(chunk(compressor.flush()))
        await send(writer, b"0\r\n\r\n")

    return handler


async def check_one_by_one(up, body, events):
    """Each event arrives before the upstream was allowed to send the next one."""
    for index, event in enumerate(events):
        received = b""
        while len(received) < len(event):
            received += await body.__anext__()
        assert received == event
        if index + 1 < len(events):
            assert not up.go.is_set()
            up.go.set()
    with pytest.raises(StopAsyncIteration):
        await body.__anext__()
    await body.aclose()


EVENTS = [b"event: a\ndata: {\"n\":1}\n\n", b"data: {\"n\":2}\n\n", b"data: [DONE]\n\n"]


@pytest.mark.parametrize("gzipped", [False, True])
def test_sse_events_arrive_one_by_one(gzipped):
    async def main():
        async with serving_with_client(Upstream(sse_handler(EVENTS, gzipped))) as (up, client):
            up.go = asyncio.Event()
            response = await forward(client, "GET", up.url("/stream"), Headers(), None)
            assert response.status == 200
            assert "content-length" not in response.headers
            await check_one_by_one(up, response.body, EVENTS)

    run(main())


def test_gzip_without_content_encoding_is_decompressed_with_exact_length():
    async def main():
        payload = b'{"threads": [' + b'{"id": "T-1"},' * 500 + b"{}]}"
        packed = gzip.compress(payload)
        raw = (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % len(packed)
        ) + packed
        async with serving_with_client(Upstream(respond(raw))) as (up, client):
            response = await forward(client, "GET", up.url(), Headers(), None)
            assert response.body == payload
            assert response.headers.get("content-length") == str(len(payload))
            assert "content-encoding" not in response.headers

    run(main())


def test_chunked_gzip_body_read_whole_and_length_set():
    async def main():
        payload = b"hello gzip " * 1000
        packed = gzip.compress(payload)
        half = len(packed) // 2
        raw = (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        ) + chunk(packed[:half]) + chunk(packed[half:]) + b"0\r\n\r\n"
        async with serving_with_client(Upstream(respond(raw))) as (up, client):
            response = await forward(client, "GET", up.url(), Headers(), None)
            assert response.body == payload
            assert response.headers.get("content-length") == str(len(payload))

    run(main())


def test_gzip_larger_than_limit_streams_decompressed_without_length():
    async def main():
        payload = os.urandom(20000).hex().encode()
        packed = gzip.compress(payload)
        raw = (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
            b"content-length: %d\r\n\r\n" % len(packed)
        ) + packed
        async with serving_with_client(Upstream(respond(raw))) as (up, client):
            limits = Limits(max_body_bytes=1000)
            response = await forward(client, "GET", up.url(), Headers(), None, limits=limits)
            assert "content-length" not in response.headers
            assert await collect(response.body) == payload

    run(main())


def test_gzip_with_content_encoding_and_plain_bodies_pass_untouched():
    async def main():
        packed = gzip.compress(b"already declared")
        raw = (
            b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\n"
            b"content-length: %d\r\n\r\n" % len(packed)
        ) + packed
        async with Upstream(respond(raw)) as up:
            client = HttpClient()
            response = await forward(client, "GET", up.url(), Headers(), None)
            assert await collect(response.body) == packed
            assert response.headers.get("content-length") == str(len(packed))
        fake = b"\x1f\x8bnot really gzip"
        raw = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(fake) + fake
        async with Upstream(respond(raw)) as up:
            response = await forward(client, "GET", up.url(), Headers(), None)
            assert await collect(response.body) == fake
            assert response.headers.get("content-length") == str(len(fake))
            await client.aclose()

    run(main())


def test_ndjson_named_stream_is_not_treated_as_sse_but_still_streams():
    async def main():
        events = [b'{"n":1}\n', b'{"n":2}\n']
        handler = sse_handler(events, content_type=b"application/x-ndjson-stream")
        async with serving_with_client(Upstream(handler)) as (up, client):
            up.go = asyncio.Event()
            response = await forward(client, "GET", up.url(), Headers(), None)
            await check_one_by_one(up, response.body, events)

    run(main())


def test_relay_body_aclose_closes_upstream_at_once():
    async def main():
        async with serving_with_client(Upstream(sse_handler(EVENTS))) as (up, client):
            up.go = asyncio.Event()
            response = await forward(client, "GET", up.url(), Headers(), None)
            assert await response.body.__anext__() == EVENTS[0]
            await response.body.aclose()
            await asyncio.wait_for(up.saw_close.wait(), 2)

    run(main())


def test_client_disconnect_mid_stream_closes_upstream_end_to_end():
    async def main():
        async with serving_with_client(Upstream(sse_handler(EVENTS))) as (up, client):
            up.go = asyncio.Event()

            async def handler(request):
                return await forward(client, request.method, up.url(request.target),
                                     request.headers, None)

            server = Server(handler)
            host, port = await server.start("127.0.0.1", 0)
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET /events HTTP/1.1\r\nhost: x\r\n\r\n")
            received = b""
            while b"data: {\"n\":1}" not in received:
                received += await reader.read(65536)
            assert b"text/event-stream" in received.lower()
            writer.transport.abort()  # the client goes away mid-stream
            await asyncio.wait_for(up.saw_close.wait(), 2)
            assert not up.go.is_set()
            await server.shutdown(1)

    run(main())


def test_upstream_down_and_first_byte_timeout():
    async def main():
        port = free_port()
        client = HttpClient()
        with pytest.raises(UpstreamError, match="connection refused"):
            await forward(client, "GET", "http://127.0.0.1:%d/" % port, Headers(), None)

        async def silent(upstream, reader, writer):
            await asyncio.sleep(5)

        async with Upstream(silent) as up:
            with pytest.raises(UpstreamTimeout):
                await forward(client, "GET", up.url(), Headers(), None,
                              limits=Limits(read_timeout=0.2))
        await client.aclose()

    run(main())


def test_head_and_no_content_responses_have_no_body():
    async def main():
        raw = b"HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n"
        async with serving_with_client(Upstream(respond(raw))) as (up, client):
            response = await forward(client, "DELETE", up.url(), Headers(), None)
            assert response.status == 204 and response.body == b""

    run(main())


def test_whole_plain_body_in_one_read_is_relayed_as_bytes_else_streamed():
    async def main():
        raw = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
        async with Upstream(respond(raw)) as up:
            client = HttpClient()
            response = await forward(client, "POST", up.url(), Headers(), b"{}")
            assert response.body == b"{}"
            assert response.headers.get("content-length") == "2"
        events = [b'{"n":1}\n', b'{"n":2}\n']
        async with Upstream(sse_handler(events, content_type=b"application/json")) as up:
            up.go = asyncio.Event()
            response = await forward(client, "GET", up.url(), Headers(), None)
            assert not isinstance(response.body, bytes)
            await check_one_by_one(up, response.body, events)
            await client.aclose()

    run(main())


class RecordingUpstream(RawServer):
    """A keep-alive upstream that records each request's raw head and body, in order,
    and answers each with a small 200."""

    def __init__(self):
        super().__init__()
        self.requests = []
        self.connections = 0

    async def serve(self, reader, writer):
        self.connections += 1
        while True:
            head, body = await read_request(reader)
            self.requests.append((head, body))
            await send(writer, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")


def relaying_server(client, up):
    """A ``Server`` whose handler forwards each request, its body streamed, to ``up``."""

    async def handler(request):
        return await forward(client, request.method, up.url(request.target), request.headers,
                             request.body if request.body.length else None)

    return Server(handler)


@pytest.mark.parametrize(
    "lengths",
    [b"Content-Length: 5\r\nContent-Length: 5\r\n", b"Content-Length: 5, 5\r\n"],
)
def test_equal_content_lengths_go_upstream_as_one_field(lengths):
    # Forwarded verbatim over a pooled connection, the copies let an upstream that read
    # them differently glue this body onto the next request.
    async def main():
        async with serving_with_client(RecordingUpstream()) as (up, client):
            server = relaying_server(client, up)
            host, port = await server.start("127.0.0.1", 0)
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"POST /a HTTP/1.1\r\nhost: x\r\n" + lengths + b"\r\nhello"
                         b"GET /b HTTP/1.1\r\nhost: x\r\n\r\n")
            for _ in range(2):
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200 ") and await reader.readexactly(2) == b"ok"
            writer.close()
            await server.shutdown(1)
            (first, body), (second, _) = up.requests
            lines = first.lower().split("\r\n")
            fields = [line for line in lines if line.startswith("content-length:")]
            assert fields == ["content-length: 5"] and body == b"hello"
            assert second.startswith("GET /b HTTP/1.1\r\n") and up.connections == 1

    run(main())


def test_an_upstream_that_stops_reading_the_body_gets_the_client_a_504():
    async def main():
        async def reads_the_head_only(upstream, reader, writer):
            await asyncio.sleep(3600)

        class HeadOnly(Upstream):
            async def serve(self, reader, writer):
                await reader.readuntil(b"\r\n\r\n")
                self.requests.append(None)
                await self.handler(self, reader, writer)

        async with serving_with_client(HeadOnly(reads_the_head_only)) as (up, client):
            server = relaying_server(client, up)
            host, port = await server.start("127.0.0.1", 0)
            reader, writer = await asyncio.open_connection(host, port)
            size = 24 << 20  # more than every socket buffer on the way holds
            writer.write(b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % size)
            writer.write(b"x" * size)
            while not up.requests:
                await asyncio.sleep(0.01)
            # Until the bytes stop moving: every buffer on the way is full.
            assert await until_still(writer.transport.get_write_buffer_size) > 0
            await advance(601)
            head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)).lower()
            assert head.startswith(b"http/1.1 504 ") and b"connection: close" in head
            writer.transport.abort()
            await server.shutdown(1)

    run_jumping(main())
