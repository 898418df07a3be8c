"""The limits that protect the proxy from its clients and its upstreams, end to end.

Accepting within ``max-connections`` and the open-file limit, running out of file
descriptors, the two newer ``limits`` keys in the config, and what a request that crosses
the proxy keeps of them (one ``Content-Length``; one log line for a network fault). The
per-connection timeouts are in test_http_server.py (server side) and test_http_client.py
(upstream side).

Everything runs on real loopback sockets. Tests that lower the process's open-file limit
do it in a child Python process, so the test runner keeps its own; the child prints what
it saw as one JSON line. Timeouts and the once-a-minute log lines use a ``JumpingLoop``
(tests/support/http_peers.py), whose clock the test moves instead of waiting.
"""

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import threading

import pytest

from cliproxy.config.loader import ConfigError, parse_document
from cliproxy.config.model import Limits
from cliproxy.http.headers import Headers
from cliproxy.http.server import Response, Server
from tests.support.fakes import FakeUpstream, JSONReply, RawReply
from tests.support.http_peers import advance, read_head, run_jumping
from tests.support.proxy import RunningProxy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT_KEY = "sk-local-1"


# -- the config keys ------------------------------------------------------------------


def test_request_timeout_and_max_connections_defaults_and_values():
    limits = parse_document({})[0].limits
    assert limits.request_timeout == 120.0 and limits.max_connections == 4096
    assert limits.read_timeout == 600.0 and limits.idle_timeout == 75.0
    limits = parse_document({"limits": {"request-timeout": 30, "max-connections": 10}})[0].limits
    assert limits.request_timeout == 30.0 and isinstance(limits.request_timeout, float)
    assert limits.max_connections == 10


@pytest.mark.parametrize(
    "limits, error",
    [
        ({"request-timeout": 0}, "limits.request-timeout: must be a number > 0"),
        ({"request-timeout": "120"}, "limits.request-timeout: must be a number > 0"),
        ({"max-connections": 0}, "limits.max-connections: must be an integer >= 1"),
        ({"max-connections": 10.5}, "limits.max-connections: must be an integer >= 1"),
    ],
)
def test_request_timeout_and_max_connections_refuse_bad_values(limits, error):
    with pytest.raises(ConfigError) as caught:
        parse_document({"limits": limits})
    assert error in str(caught.value)


# -- max-connections ------------------------------------------------------------------


async def hello(request):
    return Response(200, Headers([("content-type", "text/plain")]), request.path.encode())


async def exchange(port, path):
    """Connect, send one GET for ``path``; return (reader, writer, task reading the answer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode())
    return reader, writer, asyncio.ensure_future(read_answer(reader))


async def read_answer(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return head.split(b" ")[1] + b" " + await reader.readexactly(length)


async def answered(task):
    return await asyncio.wait_for(asyncio.shield(task), 3)


async def still_waiting(task):
    await asyncio.sleep(0.2)
    assert not task.done()


def held(release):
    """A handler that answers each request once ``release`` (an asyncio.Event) is set:
    its connections stay busy, so none may be let go at the cap."""

    async def handler(request):
        await release.wait()
        return await hello(request)

    return handler


def test_past_max_connections_new_clients_wait_until_one_closes(caplog):
    async def main():
        release = asyncio.Event()
        server = Server(held(release), lambda: Limits(max_connections=2))
        _, port = await server.start("127.0.0.1", 0)
        a = await exchange(port, "/a")
        b = await exchange(port, "/b")
        await asyncio.sleep(0.05)
        c = await exchange(port, "/c")  # its TCP handshake completes in the backlog
        await still_waiting(c[2])
        assert server.open_connections == 2
        await advance(61)  # however long they take: busy connections are never let go
        d = await exchange(port, "/d")
        await still_waiting(d[2])
        release.set()
        assert await answered(a[2]) == b"200 /a" and await answered(b[2]) == b"200 /b"
        a[1].close()
        assert await answered(c[2]) == b"200 /c"
        b[1].close()
        assert await answered(d[2]) == b"200 /d"
        for conn in (c, d):
            conn[1].close()
        await server.shutdown(1)

    with caplog.at_level(logging.INFO, logger="cliproxy.http.server"):
        run_jumping(main())
    full = "not accepting connections: 2 are open, the most allowed (max-connections 2); " \
           "new clients wait until one closes"
    # One line when it filled, one more when it was still full a minute later.
    assert [r.getMessage() for r in caplog.records if r.name == "cliproxy.http.server"] == [full, full]


def test_at_the_cap_the_longest_waiting_idle_or_slow_connection_makes_room(caplog):
    async def main():
        server = Server(hello, lambda: Limits(max_connections=2))
        _, port = await server.start("127.0.0.1", 0)
        slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", port)
        slow_writer.write(b"GET /slow HTTP/1.1\r\nHo")  # a slowloris: never finishes its head
        await advance(5)
        idle = await exchange(port, "/idle")
        assert await answered(idle[2]) == b"200 /idle"  # now idle between requests
        # Full. The slow head has waited 5 s: it gets the 408 its request timeout would
        # give, at once, and the new client takes its place.
        fresh = await exchange(port, "/fresh")
        assert (await asyncio.wait_for(slow_reader.read(), 3)).startswith(b"HTTP/1.1 408")
        assert await answered(fresh[2]) == b"200 /fresh"
        # Full again, and nobody has waited a second yet: the next client waits...
        second = await exchange(port, "/second")
        await still_waiting(second[2])
        # ... until the idle connection has: then it is closed for the newcomer.
        await advance(2)
        assert await answered(second[2]) == b"200 /second"
        assert await asyncio.wait_for(idle[0].read(), 3) == b""
        for conn in (fresh, second):
            conn[1].close()
        slow_writer.close()
        await server.shutdown(1)

    with caplog.at_level(logging.INFO, logger="cliproxy.http.server"):
        run_jumping(main())
    messages = [r.getMessage() for r in caplog.records if r.name == "cliproxy.http.server"]
    assert messages.count(
        "at the connection limit: letting go of connections waiting for a request (max-connections 2)") == 1


# -- the open-file limit, in a child process -------------------------------------------

_CHILD_PRELUDE = r"""
import asyncio, json, logging, os, resource, socket, sys
sys.path.insert(0, sys.argv[1])
from cliproxy.config.model import Limits
from cliproxy.http.server import Response, Server
from tests.support.http_peers import advance, run_jumping

lines = []
class Collect(logging.Handler):
    def emit(self, record):
        lines.append([record.levelname, record.getMessage(), bool(record.exc_info)])
logging.getLogger().addHandler(Collect())
logging.getLogger().setLevel(logging.INFO)

async def hello(request):
    return Response(200, body=request.path.encode())

async def ask(sock, path):
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, ("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode())

async def answer(sock, timeout=3):
    loop = asyncio.get_running_loop()
    data = b""
    while not data.endswith(b"\r\n\r\n" + sock.path):
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), timeout)
        if not chunk:
            return "closed"
        data += chunk
    return data.split(b" ")[1].decode()

class Client(socket.socket):
    path = b""  # what its request asked for, which its answer's body is

def client():
    sock = Client()
    sock.setblocking(False)
    return sock

async def connect(sock, port, path):
    sock.path = path.encode()
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    await ask(sock, path)
"""

_CAPPED_CHILD = _CHILD_PRELUDE + r"""
async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (70, hard))  # (70 - 64) // 2: 3 connections
    server = Server(hello, Limits)
    _, port = await server.start("127.0.0.1", 0)
    clients = [client() for _ in range(4)]
    results = {}
    for index, sock in enumerate(clients[:3]):
        await connect(sock, port, "/%d" % index)
        results[index] = await answer(sock)
    await connect(clients[3], port, "/3")
    try:
        results["waiting"] = await answer(clients[3], timeout=0.3)
    except asyncio.TimeoutError:
        results["waiting"] = "no answer"
    clients[0].close()
    results[3] = await answer(clients[3])
    for sock in clients[1:]:
        sock.close()
    await server.shutdown(1)
    return results

results = run_jumping(main())
print(json.dumps({"results": results, "lines": lines}))
"""

_EMFILE_CHILD = _CHILD_PRELUDE + r"""
async def main():
    server = Server(hello, Limits)
    _, port = await server.start("127.0.0.1", 0)
    clients = [client() for _ in range(4)]  # their descriptors are taken before the limit
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd")) - 1  # listdir's own descriptor is closed
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 1, hard))  # room for one more
    results = {}
    for index, sock in enumerate(clients):
        await connect(sock, port, "/%d" % index)
    results["first"] = await answer(clients[0])
    for _ in range(5):  # retries that fail again: no more lines within the minute
        await advance(1)
    try:
        results["second, out of descriptors"] = await answer(clients[1], timeout=0.2)
    except asyncio.TimeoutError:
        results["second, out of descriptors"] = "no answer"
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    await advance(1)
    results["the rest, descriptors free again"] = [await answer(sock) for sock in clients[1:]]
    for sock in clients:
        sock.close()
    await server.shutdown(1)
    return results

results = run_jumping(main())
print(json.dumps({"results": results, "lines": lines}))
"""


def run_child(code):
    """Run ``code`` in a child Python and return what it printed as JSON, plus stderr."""
    done = subprocess.run(
        [sys.executable, "-c", code, ROOT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_the_open_file_limit_lowers_max_connections_and_says_so():
    seen, stderr = run_child(_CAPPED_CHILD)
    results = seen["results"]
    assert [results[key] for key in ("0", "1", "2")] == ["200", "200", "200"]
    assert results["waiting"] == "no answer" and results["3"] == "200"
    assert seen["lines"] == [
        ["WARNING", "at most 3 client connections, not max-connections 4096: the open-file "
         "limit is 70, each connection may need an upstream socket too, and 64 descriptors "
         "are kept for the rest (raise LimitNOFILE= or ulimit -n)", False],
        ["WARNING", "not accepting connections: 3 are open, the most allowed (max-connections "
         "4096, lowered to 3 by the open-file limit); new clients wait until one closes", False],
    ]
    assert "Traceback" not in stderr


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_running_out_of_descriptors_is_one_line_and_serving_resumes():
    seen, stderr = run_child(_EMFILE_CHILD)
    assert seen["results"] == {
        "first": "200",
        "second, out of descriptors": "no answer",
        "the rest, descriptors free again": ["200", "200", "200"],
    }
    assert seen["lines"] == [
        ["WARNING", "cannot accept connections: Too many open files (1 open); retrying every "
         "1s and whenever one closes", False],
    ]
    assert "Traceback" not in stderr


# -- through the whole proxy -----------------------------------------------------------


def management_proxy(tmp_path, upstream, **limits):
    document = {
        "api-keys": [CLIENT_KEY],
        "ampcode": {"upstream-url": upstream.url, "upstream-api-key": "amp-upstream-key"},
    }
    if limits:
        document["limits"] = limits
    return RunningProxy(document, tmp_path)


def raw_exchange(port, data):
    """Send ``data`` to the proxy on one connection and return every byte it answers
    until it closes (its last request should ask for that)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        received = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk


def test_equal_content_lengths_reach_an_amp_route_upstream_as_one_field(tmp_path):
    with FakeUpstream(default=JSONReply(body={"ok": True})) as amp:
        with management_proxy(tmp_path, amp) as proxy:
            request = (
                "POST /api/threads/T-1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Content-Length: 7\r\n%sContent-Length: 7, 7\r\n\r\n{\"a\":1}"
            )
            answer = raw_exchange(proxy.port, (
                request % (CLIENT_KEY, "") + request % (CLIENT_KEY, "Connection: close\r\n")
            ).encode())
        assert answer.count(b"HTTP/1.1 200 ") == 2
    for seen in amp.requests:
        lengths = [value for name, value in seen.headers_list if name.lower() == "content-length"]
        assert lengths == ["7"] and seen.body == b'{"a":1}'
    assert len(amp.requests) == 2


def server_warnings(caplog):
    return [
        r for r in caplog.records if r.name.startswith("cliproxy") and r.levelno >= logging.WARNING
    ]


def _get_user(proxy):
    """The raw answer to an authenticated ``GET /api/user`` (an Amp management route)."""
    return raw_exchange(
        proxy.port,
        b"GET /api/user HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % CLIENT_KEY.encode(),
    )


def test_an_amp_upstream_closing_mid_body_is_one_log_line(tmp_path, caplog):
    cut = RawReply(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100"
                   b"\r\n\r\n{\"partial\":")
    with FakeUpstream(default=cut) as amp:
        with caplog.at_level(logging.INFO):
            with management_proxy(tmp_path, amp) as proxy:
                answer = _get_user(proxy)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"partial":')
    [line] = server_warnings(caplog)
    assert line.getMessage() == (
        "response to GET /api/user cut short: upstream 127.0.0.1:%d closed the connection "
        "mid-body" % amp.port
    )
    assert not any(r.exc_info for r in caplog.records)


def test_an_amp_upstream_hanging_mid_body_is_one_log_line(tmp_path, caplog):
    # A small read-timeout of real time (the proxy runs in its own thread and loop).
    hang = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{}"
    with HangingUpstream(hang) as amp:
        with caplog.at_level(logging.INFO):
            with management_proxy(tmp_path, amp, **{"read-timeout": 0.3}) as proxy:
                answer = _get_user(proxy)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"{}")
    [line] = server_warnings(caplog)
    assert line.getMessage() == (
        "response to GET /api/user cut short: upstream 127.0.0.1:%d sent nothing for 0.3s"
        % amp.port
    )
    assert not any(r.exc_info for r in caplog.records)


class HangingUpstream:
    """A plain-socket upstream in a thread: reads a request, sends ``data``, then keeps
    the connection open and silent until closed."""

    def __init__(self, data):
        self.data = data
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(0.05)  # closing it would not wake a blocked accept
        self.closed = False
        self.port = self.listener.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.accepted = []

    def __enter__(self):
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        return self

    def _serve(self):
        while not self.closed:
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            conn.settimeout(5)
            self.accepted.append(conn)
            read_head(conn)
            conn.sendall(self.data)

    def __exit__(self, *exc):
        self.closed = True
        self.thread.join(5)
        self.listener.close()
        for conn in self.accepted:
            conn.close()
