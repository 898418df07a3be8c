"""Upstream faults for ``make hostile``: an upstream that fails at every stage, and what
the proxy's client sees.

Strategy: ``FaultServer`` is a raw asyncio server in a thread of the job. It reads each
request whole and picks its misbehaviour from the request: the model name in a model
call's body (``fault-<mode>``) or the last segment of an Amp route's path
(``/api/threads/fault-<mode>``). "refuse" needs no server at all: its routes point at a
port nobody listens on. ``Fetch`` reads an answer as a client would, counting body bytes
without keeping them (a decompressed bomb is a gigabyte), so each check can report the
status, how much came, whether the body ended or was cut, whether an SSE error event
arrived, in how long, and the log lines the fault caused in the proxy.
"""

import asyncio
import json
import socket
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Optional

from tests.support.hostile import CLIENT_KEY
from tests.support.loop_thread import LoopThreadServer

MODES = ("refuse", "hang-head", "hang-body", "close-mid", "garbage", "gzip-bomb")
BOMB_BYTES = 1 << 30  # what the gzip bomb inflates to: 1 GiB of zeros (about 1 MB sent)
PARTIAL = b'{"id": "msg_fault", "type": "message", "content": [{"type": "text", "text": "'
SSE_FIRST = (b'event: message_start\ndata: {"type": "message_start", "message": {"id": "msg_fault", '
             b'"type": "message", "role": "assistant", "model": "fault", "content": [], '
             b'"usage": {"input_tokens": 1, "output_tokens": 1}}}\n\n')
KEEP = 16384  # body bytes a Fetch keeps from the start and from the end


def gzip_bomb(size=BOMB_BYTES):
    """A gzip member inflating to ``size`` zero bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * (1 << 20)
    parts = [compressor.compress(block) for _ in range(size // len(block))]
    return b"".join(parts) + compressor.flush()


class FaultServer(LoopThreadServer):
    """An upstream on 127.0.0.1 that misbehaves as each request asks (module docstring)."""

    thread_name = "fault-server"

    def __init__(self, bomb):
        super().__init__()
        self.bomb = bomb

    async def handle(self, reader, writer):
        try:
            path, body = await _read_request(reader)
            mode, stream = _mode(path, body)
            await self._misbehave(mode, stream, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.transport.abort()

    async def _misbehave(self, mode, stream, reader, writer):
        if mode == "hang-head":
            await _until_closed(reader)
        elif mode in ("hang-body", "close-mid"):
            if stream:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(SSE_FIRST), SSE_FIRST))
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                             + PARTIAL)
            await writer.drain()
            if mode == "hang-body":
                await _until_closed(reader)
        elif mode == "garbage":
            writer.write(b"HTTP/1.1 OK\r\nthis is not a status line\r\n\r\n")
            await writer.drain()
        elif mode == "gzip-bomb":
            await self._bomb(stream, writer)
        else:
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()

    async def _bomb(self, stream, writer):
        """A gzip bomb: declared with ``Content-Encoding`` on model calls, sent without
        it (the quirk the proxy repairs by inflating) on Amp routes."""
        kind = b"text/event-stream" if stream is True else b"application/json"
        coding = b"" if stream is None else b"Content-Encoding: gzip\r\n"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\n%sContent-Length: %d\r\n\r\n"
                     % (kind, coding, len(self.bomb)))
        for at in range(0, len(self.bomb), 65536):
            writer.write(self.bomb[at : at + 65536])
            await writer.drain()


async def _read_request(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    path = lines[0].split(" ")[1]
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    body = b""
    if "content-length" in fields:
        body = await reader.readexactly(int(fields["content-length"]))
    elif "chunked" in fields.get("transfer-encoding", ""):
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += (await reader.readexactly(size + 2))[:-2]
    return path, body


def _mode(path, body):
    """(mode, stream): stream is True/False for a model call, None for an Amp route."""
    if path.startswith("/api/threads/"):
        return path.rsplit("/", 1)[-1].replace("fault-", "", 1), None
    try:
        document = json.loads(body)
    except ValueError:
        return "", False
    return str(document.get("model", "")).replace("fault-", "", 1), document.get("stream") is True


async def _until_closed(reader):
    while await reader.read(65536):
        pass


# --- the client side ------------------------------------------------------------------

PROBE_EVERY = 0.2  # seconds between /healthz probes while a fault is under way
PROBE_TIMEOUT = 10.0


class Prober:
    """Times ``GET /healthz`` in a thread while a check runs: ``worst`` is the longest
    wait (a proxy whose event loop is blocked answers nobody)."""

    def __init__(self, port):
        self.port = port
        self.worst = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="healthz-prober", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(PROBE_TIMEOUT + 1)

    def _run(self):
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=PROBE_TIMEOUT) as sock:
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
                    sock.recv(64)
            except OSError:
                pass
            self.worst = max(self.worst, time.monotonic() - started)
            self._stop.wait(PROBE_EVERY)


@dataclass
class Fetch:
    """What a client got: ``status`` (None: no answer), body bytes received, whether the
    body ended as framed (``complete``) or the connection was cut, the time taken."""

    status: Optional[int]
    received: int
    complete: bool
    seconds: float
    content_type: str = ""
    head: bytes = b""
    tail: bytes = b""
    error: str = ""

    @property
    def error_event(self):
        """True when the body's end holds an SSE error event (any protocol's shape)."""
        return b"event: error" in self.tail or b'"error"' in self.tail


def fetch(port, request, bound):
    """Send ``request`` and read its answer for at most ``bound`` seconds."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=bound) as sock:
            sock.sendall(request)
            return _read(sock, started, started + bound)
    except OSError as exc:
        return Fetch(None, 0, False, time.monotonic() - started, error=type(exc).__name__)


def _read(sock, started, deadline):
    buffer = bytearray()
    while b"\r\n\r\n" not in buffer:
        data = _recv(sock, deadline)
        if not data:
            error = "closed without an answer" if data == b"" else "no answer in time"
            return Fetch(None, 0, False, time.monotonic() - started, error=error)
        buffer += data
    end = buffer.index(b"\r\n\r\n")
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    meter = _Meter(fields)
    meter.feed(bytes(buffer[end + 4 :]))
    while not meter.done:
        data = _recv(sock, deadline)
        if not data:
            break
        meter.feed(data)
    return Fetch(status, meter.received, meter.done, time.monotonic() - started, fields.get("content-type", ""),
                 bytes(meter.first), bytes(meter.last), "" if meter.done else "cut")


def _recv(sock, deadline):
    """Bytes, b"" at EOF, or None when ``deadline`` passed."""
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        return sock.recv(1 << 20)
    except socket.timeout:
        return None
    except OSError:
        return b""


class _Meter:
    """Counts a response body without keeping it: its first and last ``KEEP`` bytes only.
    Knows Content-Length and chunked framing (a close-delimited body never completes)."""

    def __init__(self, fields):
        self.chunked = "chunked" in fields.get("transfer-encoding", "").lower()
        self.length = int(fields["content-length"]) if "content-length" in fields else None
        self.received = 0
        self.first = bytearray()
        self.last = bytearray()
        self.done = self.length == 0
        self._pending = bytearray()  # chunked framing not yet parsed
        self._left = 0  # chunk data bytes still to come

    def feed(self, data):
        if not self.chunked:
            self._keep(data)
            self.done = self.length is not None and self.received >= self.length
            return
        self._pending += data
        self._parse()

    def _keep(self, data):
        self.received += len(data)
        if len(self.first) < KEEP:
            self.first += data[: KEEP - len(self.first)]
        self.last = (self.last + data[-KEEP:])[-KEEP:]

    def _parse(self):
        pending = self._pending
        while pending and not self.done:
            if self._left:
                piece = bytes(pending[: self._left])
                del pending[: len(piece)]
                self._left -= len(piece)
                self._keep(piece)
                continue
            end = pending.find(b"\r\n")
            if end < 0:
                return
            line = bytes(pending[:end])
            del pending[: end + 2]
            if not line:
                continue  # the CRLF after a chunk's data
            size = int(line.split(b";")[0], 16)
            if size == 0:
                self.done = True
            self._left = size


def model_request(mode, stream):
    body = json.dumps({"model": "fault-" + mode, "max_tokens": 16, "stream": stream,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    return (b"POST /api/provider/anthropic/v1/messages HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s") % (CLIENT_KEY.encode(), len(body), body)


def amp_request(mode):
    return (b"GET /api/threads/fault-%s HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer %s\r\n\r\n"
            % (mode.encode(), CLIENT_KEY.encode()))


def describe(result):
    """The client's view of ``result`` in a few words."""
    if result.status is None:
        return "no answer (%s)" % result.error
    parts = ["%d" % result.status]
    if result.content_type.startswith("application/json") and result.status >= 400:
        parts.append("JSON")
    if result.received:
        parts.append(_size(result.received) + (" whole" if result.complete else " then cut"))
    elif not result.complete:
        parts.append("then cut")
    if result.content_type.startswith("text/event-stream"):
        parts.append("error event" if result.error_event else "no error event")
    return " ".join(parts)


def _size(count):
    if count >= 1 << 20:
        return "%.0f MB" % (count / float(1 << 20))
    if count >= 1024:
        return "%.0f KB" % (count / 1024.0)
    return "%d B" % count
