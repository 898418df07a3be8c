"""Tiny raw HTTP peers on 127.0.0.1 for the cliproxy.http client and proxy tests.

Strategy: the peers speak HTTP by hand over asyncio streams, so the code under test is
checked against an independent reading of the wire. ``RawServer`` owns the listening
socket and the per-connection tasks; each test file subclasses it only for what its
connections do. ``read_request`` and ``send`` are the two wire steps nearly every fake
upstream repeats. Timeouts are tested on a ``JumpingLoop`` (``run_jumping``, ``advance``):
an event loop whose clock the test moves forward, so a 600 s timeout takes no time.
"""

import asyncio
import contextlib
import os
import socket
import time

import pytest

from cliproxy.http.client import HttpClient


def run(coro):
    """Run ``coro`` in a fresh event loop; raises ``asyncio.TimeoutError`` after 10 s."""
    return asyncio.run(asyncio.wait_for(coro, 10))


class JumpingLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock a test moves forward by hand: ``advance(seconds)`` makes
    every timer due within that time fire at the loop's next step, so a 120 s timeout is
    tested without waiting for it. Real time passes as well (the sockets are real)."""

    def __init__(self):
        super().__init__()
        self.offset = 0.0

    def time(self):
        return super().time() + self.offset

    def advance(self, seconds):
        self.offset += seconds


async def advance(seconds):
    """Move the running ``JumpingLoop``'s clock ``seconds`` ahead and let the timers that
    came due run (and what they set off, a few loop steps). Bytes already written on
    loopback are let in first (a few ms of real time), so they count as sent before."""
    await asyncio.sleep(0.02)
    asyncio.get_running_loop().advance(seconds)
    for _ in range(5):
        await asyncio.sleep(0)


async def until_still(measure, checks=3, step=0.1):
    """Wait until ``measure()`` (a progress count, a buffer size) has not changed for
    ``checks`` steps of ``step`` seconds in a row: whatever moved it is stuck."""
    last = measure()
    still = 0
    while still < checks:
        await asyncio.sleep(step)
        now = measure()
        still = still + 1 if now == last else 0
        last = now
    return last


def run_jumping(coro, limit=10.0):
    """Run ``coro`` on a fresh ``JumpingLoop``; fails after ``limit`` seconds of real time
    (not loop time, which the test moves)."""

    async def guarded():
        task = asyncio.ensure_future(coro)
        began = time.monotonic()
        while not task.done():
            await asyncio.wait({task}, timeout=0.05)  # wakes early after a jump: harmless
            if time.monotonic() - began > limit:
                task.cancel()
                raise AssertionError("still running after %gs of real time" % limit)
        return task.result()

    loop = JumpingLoop()
    try:
        return loop.run_until_complete(guarded())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch):
    """The runner's own proxy settings must not leak into these tests."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name == "REQUEST_METHOD":
            monkeypatch.delenv(name)


def free_port():
    """A port on 127.0.0.1 that nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def read_request(reader):
    """(head text, body bytes) of one request; decodes content-length and chunked.

    Raises ``asyncio.IncompleteReadError`` when the peer closes mid-request.
    """
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    lower = head.lower()
    if "transfer-encoding: chunked" in lower:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += data[:-2]
        return head, body
    for line in lower.split("\r\n"):
        if line.startswith("content-length:"):
            return head, await reader.readexactly(int(line.split(":", 1)[1]))
    return head, b""


async def send(writer, data):
    """Write ``data`` and wait until the transport has taken it."""
    writer.write(data)
    await writer.drain()


class RawServer:
    """An asyncio server on 127.0.0.1 port 0 running ``self.serve(reader, writer)`` per
    connection; an async context manager that cancels every connection on exit.

    A subclass defines ``serve``; it may end with the exceptions a peer leaving raises.
    """

    def __init__(self, ssl_context=None):
        self.ssl_context = ssl_context
        self.tasks = []

    async def __aenter__(self):
        self.server = await asyncio.start_server(
            self._on_connect, "127.0.0.1", 0, ssl=self.ssl_context
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        # Since 3.12 wait_closed() also waits for the accepted connections to close.
        await self.server.wait_closed()

    async def _on_connect(self, reader, writer):
        self.tasks.append(asyncio.current_task())
        try:
            await self.serve(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the test is over or the peer left: both are expected endings
        finally:
            writer.close()

    def url(self, path="/", scheme="http", host="127.0.0.1"):
        return "%s://%s:%d%s" % (scheme, host, self.port, path)


async def answer(reader, writer, data):
    """Read one request, send ``data`` as the answer, and return (head, body) of the request."""
    request = await read_request(reader)
    await send(writer, data)
    return request


@contextlib.asynccontextmanager
async def serving_with_client(server):
    """Enter ``server`` and yield (server, a fresh ``HttpClient``); the client is closed
    before the server stops."""
    client = HttpClient()
    async with server:
        yield server, client
        await client.aclose()


def upgrade_request(path, key="dGhlIHNhbXBsZSBub25jZQ==", version="13", auth=None, protocols=None):
    """The bytes of a WebSocket opening handshake for ``path`` (RFC 6455 §4.1), with a
    Bearer ``auth`` key and ``Sec-WebSocket-Protocol: protocols`` when given."""
    lines = [
        "GET %s HTTP/1.1" % path,
        "Host: localhost",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: %s" % key,
        "Sec-WebSocket-Version: %s" % version,
    ]
    if auth:
        lines.append("Authorization: Bearer %s" % auth)
    if protocols:
        lines.append("Sec-WebSocket-Protocol: %s" % protocols)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_head(sock):
    """(the response head as text, the bytes that came after it) from a socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest
