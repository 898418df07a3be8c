"""Tests for cliproxy.http.client against tiny real upstreams and proxies on 127.0.0.1."""

import asyncio
import base64
import os
import ssl

import pytest

from cliproxy.errors import UpstreamError, UpstreamTimeout
from cliproxy.http.client import HttpClient
from cliproxy.http.headers import Headers
from tests.support.http_peers import (  # noqa: F401 (no_proxy_env is an autouse fixture)
    RawServer,
    advance,
    answer,
    free_port,
    no_proxy_env,
    read_request,
    run,
    run_jumping,
    send,
    serving_with_client,
    until_still,
)

CERTS = os.path.join(os.path.dirname(__file__), "support", "certs")
CERT = os.path.join(CERTS, "server.pem")
KEY = os.path.join(CERTS, "server.key")

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def server_ssl_context():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CERT, KEY)
    return context


class Upstream(RawServer):
    """A raw upstream; ``handler(upstream, reader, writer, index)`` per connection."""

    def __init__(self, handler, ssl_context=None):
        super().__init__(ssl_context)
        self.handler = handler
        self.accepted = 0
        self.requests = []

    async def serve(self, reader, writer):
        index = self.accepted
        self.accepted += 1
        await self.handler(self, reader, writer, index)


async def keep_alive_ok(upstream, reader, writer, index):
    while True:
        head, body = await read_request(reader)
        upstream.requests.append((index, head, body))
        await send(writer, OK)


def keep_alive_ok_noting_ends(ends):
    """``keep_alive_ok`` that appends a connection's index to ``ends`` when it closes."""
    async def handler(upstream, reader, writer, index):
        try:
            await keep_alive_ok(upstream, reader, writer, index)
        finally:
            ends.append(index)
    return handler


def test_keep_alive_reuses_one_connection():
    async def main():
        async with serving_with_client(Upstream(keep_alive_ok)) as (up, client):
            for _ in range(3):
                response = await client.request("GET", up.url("/a?b=1"), Headers())
                assert response.status == 200
                assert await response.read() == b"ok"
            assert up.accepted == 1
            assert [r[0] for r in up.requests] == [0, 0, 0]
            assert up.requests[0][1].startswith("GET /a?b=1 HTTP/1.1\r\n")
            assert "host: 127.0.0.1:%d\r\n" % up.port in up.requests[0][1]

    run(main())


def test_unread_body_is_not_reused_but_complete_one_is():
    async def main():
        big = b"x" * 300000

        async def handler(upstream, reader, writer, index):
            while True:
                head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(big)
                await answer(reader, writer, head + big)

        async with serving_with_client(Upstream(handler)) as (up, client):
            response = await client.request("GET", up.url(), Headers())
            await response.__anext__()
            await response.aclose()
            await response.aclose()  # idempotent
            response = await client.request("GET", up.url(), Headers())
            assert await response.read() == big
            response = await client.request("GET", up.url(), Headers())
            assert await response.read() == big
            assert up.accepted == 2

    run(main())


def test_dead_pooled_connection_is_retried_once():
    async def main():

        async def handler(upstream, reader, writer, index):
            head, _ = await read_request(reader)
            upstream.requests.append((index, head))
            if index == 0:
                await send(writer, OK)
                # Read the next request, then die without answering (a server that timed
                # the connection out just as the request arrived).
                head, _ = await read_request(reader)
                upstream.requests.append((index, head))
                writer.transport.abort()
                return
            await send(writer, b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh")

        async with serving_with_client(Upstream(handler)) as (up, client):
            assert await (await client.request("GET", up.url(), Headers())).read() == b"ok"
            response = await client.request("POST", up.url("/p"), Headers(), b"payload")
            assert await response.read() == b"fresh"
            assert up.accepted == 2
            assert [i for i, _ in up.requests] == [0, 0, 1]

    run(main())


def test_dead_pooled_connection_with_streamed_body_is_not_replayed():
    async def main():

        async def handler(upstream, reader, writer, index):
            await answer(reader, writer, OK)
            await reader.readuntil(b"\r\n\r\n")
            writer.transport.abort()

        async def body():
            yield b"once"

        async with serving_with_client(Upstream(handler)) as (up, client):
            await (await client.request("GET", up.url(), Headers())).read()
            with pytest.raises(UpstreamError, match="reused connection"):
                await client.request("POST", up.url(), Headers(), body())
            assert up.accepted == 1

    run(main())


def test_idle_connection_closed_by_server_is_not_reused():
    async def main():
        closed = asyncio.Event()

        async def handler(upstream, reader, writer, index):
            await answer(reader, writer, OK)
            if index == 0:
                writer.close()
                closed.set()
                return
            await asyncio.sleep(5)

        async with serving_with_client(Upstream(handler)) as (up, client):
            assert await (await client.request("GET", up.url(), Headers())).read() == b"ok"
            await closed.wait()
            await asyncio.sleep(0.05)  # let the FIN reach the client's reader
            assert await (await client.request("GET", up.url(), Headers())).read() == b"ok"
            assert up.accepted == 2

    run(main())


def test_a_pooled_connection_idle_for_a_minute_is_not_reused():
    async def main():
        ends = []
        async with serving_with_client(Upstream(keep_alive_ok_noting_ends(ends))) as (up, client):
            for wait in (0, 59, 61):
                await advance(wait)
                assert await (await client.request("GET", up.url(), Headers())).read() == b"ok"
            # 59 s idle: reused; 61 s: closed instead, and a new connection opened.
            assert [r[0] for r in up.requests] == [0, 0, 1]
            await wait_for(lambda: ends)
            assert ends == [0]

    run_jumping(main())


async def wait_for(condition):
    for _ in range(300):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met")


def test_expired_connections_of_an_origin_are_closed_when_another_is_parked():
    async def main():
        ends = []
        async with serving_with_client(Upstream(keep_alive_ok_noting_ends(ends))) as (up, client):
            first = await client.request("GET", up.url(), Headers())
            second = await client.request("GET", up.url(), Headers())  # a second connection
            await first.read()  # parked
            await advance(61)
            await second.read()  # parked too: the first, idle 61 s, is closed meanwhile
            await wait_for(lambda: ends)
            assert ends == [0] and up.accepted == 2

    run_jumping(main())


def test_an_upstream_that_stops_reading_the_body_is_cut_after_read_timeout():
    async def main():
        async def handler(upstream, reader, writer, index):
            await reader.readuntil(b"\r\n\r\n")  # the head, then nothing more is read
            await asyncio.sleep(3600)

        sent = []

        async def endless():
            while True:
                sent.append(1)
                yield b"x" * 65536

        async with Upstream(handler) as up:
            client = HttpClient()
            request = asyncio.ensure_future(
                client.request("POST", up.url(), Headers(), endless(), read_timeout=600)
            )
            await until_still(lambda: len(sent))  # the upstream's window and our buffer are full
            await advance(599)
            assert not request.done()
            await advance(2)
            with pytest.raises(UpstreamTimeout, match="took no request body bytes for 600s"):
                await asyncio.wait_for(request, 3)
            await client.aclose()

    run_jumping(main())


def test_framing_fields_that_do_not_describe_the_body_sent_are_dropped():
    # A client's Content-Length or Transfer-Encoding passed on with no body (an upgrade
    # request, say) left the upstream waiting for a body that never came.
    async def main():
        async with serving_with_client(Upstream(keep_alive_ok)) as (up, client):
            stale = Headers([("content-length", "19"), ("transfer-encoding", "chunked")])
            for method, body in (("GET", None), ("POST", None), ("POST", b"abc")):
                response = await client.request(method, up.url(), stale, body, first_byte_timeout=3)
                assert await response.read() == b"ok"
            heads = [r[1].lower() for r in up.requests]
            assert "content-length" not in heads[0] and "transfer-encoding" not in heads[0]
            assert "content-length: 0\r\n" in heads[1] and "transfer-encoding" not in heads[1]
            assert "content-length: 3\r\n" in heads[2] and "transfer-encoding" not in heads[2]
            assert [r[2] for r in up.requests] == [b"", b"", b"abc"]

    run(main())


def test_chunked_response_and_chunked_request_body():
    async def main():
        seen = []

        async def handler(upstream, reader, writer, index):
            chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            seen.append(await answer(reader, writer, chunked + b"5\r\nhello\r\n"))
            await send(writer, b"6\r\n world\r\n0\r\n\r\n")
            await read_request(reader)  # keeps the connection open

        async def body():
            yield b"part one, "
            yield b""
            yield b"part two"

        async with serving_with_client(Upstream(handler)) as (up, client):
            response = await client.request("PUT", up.url("/up"), Headers([("X-A", "1")]), body())
            assert await response.read() == b"hello world"
            head, received = seen[0]
            assert "transfer-encoding: chunked\r\n" in head
            assert "x-a: 1\r\n" in head
            assert received == b"part one, part two"

    run(main())


def test_streamed_body_with_content_length_is_sent_raw():
    async def main():
        seen = []

        async def handler(upstream, reader, writer, index):
            seen.append(await answer(reader, writer, OK))

        async def body():
            yield b"abc"
            yield b"de"

        async with serving_with_client(Upstream(handler)) as (up, client):
            headers = Headers([("content-length", "5")])
            await (await client.request("POST", up.url(), headers, body())).read()
            head, received = seen[0]
            assert "transfer-encoding" not in head
            assert received == b"abcde"

    run(main())


def test_close_delimited_response_is_read_to_eof_and_not_pooled():
    async def main():

        async def handler(upstream, reader, writer, index):
            head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n"
            await answer(reader, writer, head + b"until ")
            await send(writer, b"the end")

        async with serving_with_client(Upstream(handler)) as (up, client):
            for _ in range(2):
                response = await client.request("GET", up.url(), Headers())
                assert await response.read() == b"until the end"
            assert up.accepted == 2

    run(main())


def test_first_byte_timeout():
    async def main():

        async def handler(upstream, reader, writer, index):
            await read_request(reader)
            await asyncio.sleep(5)

        async with serving_with_client(Upstream(handler)) as (up, client):
            with pytest.raises(UpstreamTimeout, match="did not answer within 0.2s"):
                await client.request("GET", up.url(), Headers(), first_byte_timeout=0.2)

    run(main())


def test_read_timeout_between_body_chunks():
    async def main():

        async def handler(upstream, reader, writer, index):
            await answer(reader, writer, b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
            await asyncio.sleep(5)

        async with serving_with_client(Upstream(handler)) as (up, client):
            response = await client.request("GET", up.url(), Headers(), read_timeout=0.2)
            assert await response.__anext__() == b"abc"
            with pytest.raises(UpstreamTimeout, match="sent nothing for 0.2s"):
                await response.__anext__()

    run(main())


def test_connection_refused():
    async def main():
        port = free_port()
        with pytest.raises(UpstreamError, match="127.0.0.1:%d: connection refused" % port):
            await HttpClient().request("GET", "http://127.0.0.1:%d/" % port, Headers())

    run(main())


def test_reset_before_head_on_fresh_connection_is_upstream_error():
    async def main():
        async def handler(upstream, reader, writer, index):
            await read_request(reader)
            writer.transport.abort()

        async with Upstream(handler) as up:
            with pytest.raises(UpstreamError, match="closed the connection before answering"):
                await HttpClient().request("GET", up.url(), Headers())

    run(main())


def test_malformed_response_is_upstream_error():
    async def main():
        async def handler(upstream, reader, writer, index):
            await answer(reader, writer, b"NOT HTTP AT ALL\r\n\r\n")

        async with Upstream(handler) as up:
            with pytest.raises(UpstreamError, match="invalid response"):
                await HttpClient().request("GET", up.url(), Headers())

    run(main())


def test_tls_with_ca_bundle_and_verification_failure_without():
    async def main():
        async with Upstream(keep_alive_ok, server_ssl_context()) as up:
            client = HttpClient(ca_bundle=CERT)
            for host in ("localhost", "127.0.0.1"):
                response = await client.request("GET", up.url(scheme="https", host=host), Headers())
                assert await response.read() == b"ok"
            response = await client.request("GET", up.url(scheme="https"), Headers())
            assert await response.read() == b"ok"
            assert up.accepted == 2  # one per origin key (host differs), then reused
            await client.aclose()
            with pytest.raises(UpstreamError, match="TLS certificate verification failed"):
                await HttpClient().request("GET", up.url(scheme="https"), Headers())

    run(main())


class ConnectProxy:
    """A test HTTP proxy: CONNECT tunnels (or a canned refusal) and absolute-form GETs."""

    def __init__(self, refuse=None):
        self.refuse = refuse
        self.heads = []

    async def __aenter__(self):
        self.upstream = Upstream(self._handle)
        await self.upstream.__aenter__()
        self.port = self.upstream.port
        return self

    async def __aexit__(self, *exc):
        await self.upstream.__aexit__(*exc)

    async def _handle(self, upstream, reader, writer, index):
        head, _ = await read_request(reader)
        self.heads.append(head)
        if not head.startswith("CONNECT "):
            await send(writer, b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nproxied")
            return
        if self.refuse:
            await send(writer, self.refuse)
            return
        host, port = head.split(" ")[1].rsplit(":", 1)
        target_reader, target_writer = await asyncio.open_connection(host, int(port))
        await send(writer, b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(src, dst):
            try:
                while True:
                    data = await src.read(65536)
                    if not data:
                        break
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, target_writer), pipe(target_reader, writer))


def test_https_through_connect_proxy_with_credentials():
    async def main():
        async with Upstream(keep_alive_ok, server_ssl_context()) as up, ConnectProxy() as proxy:
            client = HttpClient(ca_bundle=CERT)
            proxy_url = "http://us%%40er:pa%%20ss@127.0.0.1:%d" % proxy.port
            for _ in range(2):
                response = await client.request(
                    "GET", up.url("/t", scheme="https"), Headers(), proxy_url=proxy_url
                )
                assert await response.read() == b"ok"
            head = proxy.heads[0]
            assert head.startswith("CONNECT 127.0.0.1:%d HTTP/1.1\r\n" % up.port)
            token = base64.b64encode(b"us@er:pa ss").decode()
            assert "proxy-authorization: Basic %s\r\n" % token in head
            assert len(proxy.heads) == 1  # the tunnel is pooled like any connection
            assert up.requests[0][1].startswith("GET /t HTTP/1.1\r\n")
            assert "proxy-authorization" not in up.requests[0][1]
            await client.aclose()

    run(main())


def test_connect_refused_by_proxy_names_status_not_credentials():
    async def main():
        refusal = b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n"
        async with ConnectProxy(refuse=refusal) as proxy:
            proxy_url = "http://user:s3cret@127.0.0.1:%d" % proxy.port
            with pytest.raises(UpstreamError) as info:
                await HttpClient().request(
                    "GET", "https://127.0.0.1:1/", Headers(), proxy_url=proxy_url
                )
            assert "407" in info.value.message
            assert "s3cret" not in info.value.message and "user" not in info.value.message

    run(main())


def test_http_through_explicit_proxy_uses_absolute_form():
    async def main():
        async with ConnectProxy() as proxy:
            client = HttpClient()
            response = await client.request(
                "GET",
                "http://example.invalid/x?y=1",
                Headers(),
                proxy_url="http://u:p@127.0.0.1:%d" % proxy.port,
            )
            assert await response.read() == b"proxied"
            head = proxy.heads[0]
            assert head.startswith("GET http://example.invalid/x?y=1 HTTP/1.1\r\n")
            assert "host: example.invalid\r\n" in head
            assert "proxy-authorization: Basic %s\r\n" % base64.b64encode(b"u:p").decode() in head
            await client.aclose()

    run(main())


def test_http_proxy_env_and_no_proxy_bypass(monkeypatch):
    async def main():
        async with ConnectProxy() as proxy, Upstream(keep_alive_ok) as up:
            monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:%d" % proxy.port)
            client = HttpClient()
            response = await client.request("GET", up.url("/e"), Headers())
            assert await response.read() == b"proxied"
            assert proxy.heads[0].startswith("GET http://127.0.0.1:%d/e " % up.port)
            assert up.accepted == 0

            monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
            await client.aclose()
            client = HttpClient()  # the environment is read when a client is made
            response = await client.request("GET", up.url("/e"), Headers())
            assert await response.read() == b"ok"
            assert up.accepted == 1 and len(proxy.heads) == 1

            monkeypatch.delenv("NO_PROXY")
            response = await client.request("GET", up.url("/e"), Headers(), proxy_url="direct")
            assert await response.read() == b"ok"
            assert len(proxy.heads) == 1
            await client.aclose()

    run(main())


def test_read_limit_and_context_manager():
    async def main():
        async with serving_with_client(Upstream(keep_alive_ok)) as (up, client):
            async with await client.request("GET", up.url(), Headers()) as response:
                with pytest.raises(UpstreamError, match="exceeds 1 bytes"):
                    await response.read(limit=1)
            async with await client.request("GET", up.url(), Headers()) as response:
                assert response.headers.get("content-length") == "2"
                assert response.first_byte_at > 0
            # Both bodies had arrived whole, so the connection was clean and went back to
            # the pool, even unread.
            await (await client.request("GET", up.url(), Headers())).read()
            assert up.accepted == 1

    run(main())


def test_open_upgrade_returns_streams_and_leftover():
    async def main():
        async def handler(upstream, reader, writer, index):
            head, _ = await read_request(reader)
            upstream.requests.append(head)
            if "upgrade: websocket" not in head:
                await send(writer, b"HTTP/1.1 400 Bad Request\r\ncontent-length: 4\r\n\r\nnope")
                return
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
                b"connection: upgrade\r\n\r\nearly"
            )
            await writer.drain()
            await send(writer, await reader.readexactly(4))

        async with Upstream(handler) as up:
            client = HttpClient()
            headers = Headers([("upgrade", "websocket"), ("connection", "upgrade")])
            response, reader, writer, leftover = await client.open_upgrade(up.url("/ws"), headers)
            assert response.status == 101
            assert leftover == b"early"
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            writer.close()

            response, reader, writer, leftover = await client.open_upgrade(up.url("/ws"), Headers())
            assert response.status == 400 and leftover == b""
            assert await response.read() == b"nope"
            await response.aclose()

    run(main())


def test_open_upgrade_sends_the_upstreams_own_host():
    async def main():
        async def handler(upstream, reader, writer, index):
            head, _ = await read_request(reader)
            upstream.requests.append(head.lower())
            await send(writer, b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n")

        async with Upstream(handler) as up:
            relayed = Headers([("host", "127.0.0.1:8317"), ("upgrade", "websocket")])
            _, _, writer, _ = await HttpClient().open_upgrade(up.url("/ws"), relayed)
            writer.close()
            hosts = [line for line in up.requests[0].split("\r\n") if line.startswith("host:")]
            assert hosts == ["host: 127.0.0.1:%d" % up.port]

    run(main())


def test_invalid_header_value_is_refused_before_sending():
    async def main():
        with pytest.raises(UpstreamError, match="invalid request head"):
            await HttpClient().request(
                "GET", "http://127.0.0.1:1/", Headers([("x-a", "v\r\nx-injected: 1")])
            )

    run(main())


def test_slow_reader_pauses_the_upstream_until_it_reads_again():
    async def main():
        body = b"x" * (64 * 1024 * 1024)  # more than loopback socket buffers can hold
        drained = asyncio.Event()

        async def handler(upstream, reader, writer, index):
            head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body)
            await answer(reader, writer, head + body)
            drained.set()
            await read_request(reader)

        async with serving_with_client(Upstream(handler)) as (up, client):
            response = await client.request("GET", up.url(), Headers())
            size = len(await response.__anext__())
            # Nobody reads for a while: the client must stop reading too, so the
            # upstream cannot hand it the whole body.
            await asyncio.sleep(0.3)
            assert not drained.is_set()
            async for chunk in response:
                size += len(chunk)
            assert size == len(body)
            await asyncio.wait_for(drained.wait(), 2)

    run(main())


def test_longer_wait_after_a_shorter_deadline_does_not_time_out_early():
    async def main():

        async def handler(upstream, reader, writer, index):
            await answer(reader, writer, b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nabc")
            await asyncio.sleep(0.3)  # past the first-byte deadline, within the read one
            await send(writer, b"def")
            await read_request(reader)

        async with serving_with_client(Upstream(handler)) as (up, client):
            response = await client.request(
                "GET", up.url(), Headers(), first_byte_timeout=0.1, read_timeout=2
            )
            assert await response.read() == b"abcdef"

    run(main())


def test_unsolicited_bytes_on_an_idle_connection_close_it():
    async def main():
        sent = asyncio.Event()

        async def handler(upstream, reader, writer, index):
            await read_request(reader)
            writer.write(OK)
            if index == 0:
                await send(writer, b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n")
                sent.set()
            await read_request(reader)

        async with serving_with_client(Upstream(handler)) as (up, client):
            assert await (await client.request("GET", up.url(), Headers())).read() == b"ok"
            await sent.wait()
            await asyncio.sleep(0.05)  # let the stray answer reach the idle connection
            response = await client.request("GET", up.url(), Headers())
            assert response.status == 200 and await response.read() == b"ok"
            assert up.accepted == 2

    run(main())


def test_answer_before_the_body_was_sent_whole_is_not_pooled():
    async def main():

        async def handler(upstream, reader, writer, index):
            await reader.readuntil(b"\r\n\r\n")
            # Answer at once without reading the (huge) body, keep-alive and all.
            await send(writer, OK)
            if index == 0:
                await asyncio.sleep(5)
            await read_request(reader)

        async with serving_with_client(Upstream(handler)) as (up, client):
            body = b"y" * (64 * 1024 * 1024)
            response = await client.request("POST", up.url(), Headers(), body)
            assert await response.read() == b"ok"
            assert await (await client.request("GET", up.url(), Headers())).read() == b"ok"
            assert up.accepted == 2

    run(main())


def test_open_upgrade_over_tls_hands_over_the_streams():
    async def main():
        async def handler(upstream, reader, writer, index):
            switching = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n"
            await answer(reader, writer, switching)
            await send(writer, await reader.readexactly(4))
            writer.close()

        async with Upstream(handler, server_ssl_context()) as up:
            client = HttpClient(ca_bundle=CERT)
            headers = Headers([("upgrade", "websocket"), ("connection", "upgrade")])
            response, reader, writer, leftover = await client.open_upgrade(
                up.url("/ws", scheme="https"), headers
            )
            assert response.status == 101 and leftover == b""
            await send(writer, b"pong")
            assert await reader.readexactly(4) == b"pong"
            assert await reader.read() == b""  # the upstream's close reaches the reader
            writer.close()

    run(main())


def test_complete_turns_true_once_the_body_ended():
    async def main():

        async def handler(upstream, reader, writer, index):
            await answer(reader, writer, b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nabc")
            await upstream.go.wait()
            await send(writer, b"def")
            await read_request(reader)

        async with serving_with_client(Upstream(handler)) as (up, client):
            up.go = asyncio.Event()
            response = await client.request("GET", up.url(), Headers())
            assert await response.__anext__() == b"abc"
            assert not response.complete
            up.go.set()
            assert await response.__anext__() == b"def"
            assert response.complete

    run(main())


# -- fast paths: each agrees with the slow path it shortcuts --------------------------------


def test_a_body_read_in_one_piece_or_in_several_is_the_same_and_pools_alike():
    # read() stops as soon as a piece ended the body (head and body in one packet) rather
    # than asking once more; a body arriving in pieces takes the loop. Same bytes, and
    # the connection goes back to the pool after either.
    async def main():
        async def handler(upstream, reader, writer, index):
            whole = True
            while True:
                await read_request(reader)
                if whole:
                    await send(writer, b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nabcdef")
                else:
                    await send(writer, b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nab")
                    for piece in (b"cd", b"ef"):
                        await asyncio.sleep(0.01)
                        await send(writer, piece)
                whole = not whole

        async with serving_with_client(Upstream(handler)) as (up, client):
            for expect_whole in (True, False, True):
                response = await client.request("GET", up.url(), Headers())
                if expect_whole:
                    assert await response.read() == b"abcdef"
                else:
                    pieces = [piece async for piece in response]
                    assert b"".join(pieces) == b"abcdef" and len(pieces) > 1
                assert response.complete
            response = await client.request("GET", up.url(), Headers())
            assert await response.read() == b"abcdef"  # in pieces, through read()'s loop
            assert up.accepted == 1

    run(main())


def test_next_chunk_gives_what_iteration_gives_and_none_at_the_end():
    async def main():
        body = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"

        async def handler(upstream, reader, writer, index):
            while True:
                await answer(reader, writer, body)

        async with serving_with_client(Upstream(handler)) as (up, client):
            iterated = [piece async for piece in await client.request("GET", up.url(), Headers())]
            response = await client.request("GET", up.url(), Headers())
            pieces = []
            while True:
                piece = await response.next_chunk()
                if piece is None:
                    break
                pieces.append(piece)
            assert b"".join(pieces) == b"".join(iterated) == b"abcdef"
            assert await response.next_chunk() is None
            assert up.accepted == 1

    run(main())


def test_remembered_routes_equal_the_parsed_ones_and_stay_bounded(monkeypatch):
    from cliproxy.http import client as client_module

    monkeypatch.setattr(client_module, "MAX_CACHED_URLS", 3)
    client = HttpClient()
    client._env_proxies = {"http": "http://user:pw@proxy.example:3128"}
    client._bypass["direct.example"] = True
    cases = [
        ("http://a.example/v1/messages", None),
        ("http://a.example/v1/messages", "direct"),
        ("http://a.example:8080/x?y=1", "http://p.example:1"),
        ("https://b.example/v1", None),
        ("http://direct.example/", None),
    ]
    for url, proxy_url in cases:
        target, proxy, key = client._routes[url, proxy_url]
        assert target == client_module._parse_url(url)
        assert proxy == client._proxy_for(proxy_url, target)
        assert key == (target.scheme, target.host, target.port, proxy)
        assert client._routes[url, proxy_url] is client._routes[url, proxy_url]
    assert client._routes["http://direct.example/", None][1] is None  # NO_PROXY
    assert client._routes["http://a.example/v1/messages", None][1] is not None
    for index in range(10):
        client._routes["http://h.example/%d" % index, None]
        assert len(client._routes) <= 3


def test_a_head_in_pieces_after_informational_answers_and_one_cut_mid_head():
    # The head is read in the same frame that sent the request: 1xx answers are skipped,
    # a head split over packets waits for its rest, a close mid-head is an UpstreamError
    # (not a silent retry: bytes came), and a close before any byte on a fresh connection
    # too.
    async def main():
        async def handler(upstream, reader, writer, index):
            await read_request(reader)
            if index == 0:
                await send(writer, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n")
                await asyncio.sleep(0.01)
                await send(writer, b"HTTP/1.1 200 OK\r\ncontent-")
                await asyncio.sleep(0.01)
                await send(writer, b"length: 2\r\nx-a: b\r\n\r\nok")
                await read_request(reader)
                await send(writer, b"HTTP/1.1 200 OK\r\ncontent-len")
            writer.close()

        async with serving_with_client(Upstream(handler)) as (up, client):
            response = await client.request("POST", up.url(), Headers(), b"{}")
            assert response.status == 200 and response.headers.get("x-a") == "b"
            assert await response.read() == b"ok"
            with pytest.raises(UpstreamError, match="invalid response: connection closed mid-message"):
                await client.request("POST", up.url(), Headers(), b"{}")
            with pytest.raises(UpstreamError, match="closed the connection before answering"):
                await client.request("POST", up.url(), Headers(), b"{}")
            assert up.accepted == 2

    run(main())
