#!/usr/bin/env python3
"""Trickle streams for bench.py: an upstream that writes one SSE event at a time, and a
load generator that times every event from that write to its own read.

Strategy: nginx answers a stream in one burst and wrk cannot time single events, so this
scenario has its own two programs, both asyncio and standard library only, each run by
bench.py as a separate process so that the proxy's CPU (utime + stime from /proc) is
measured alone:

- ``upstream``: an HTTP/1.1 server. ``POST /trickle/<ms>/<n>/v1/messages`` answers an
  Anthropic Messages stream (``message_start`` carrying the model the request asked for,
  ``content_block_start``, ``n`` text deltas, ``content_block_stop``, ``message_delta``,
  ``message_stop``); ``POST /trickle/<ms>/<n>/v1/chat/completions`` the same text as
  OpenAI Chat chunks (a role chunk, ``n`` content chunks, a finish chunk, a usage chunk,
  ``[DONE]``). Every event is one chunk of a chunked body and one socket write; the deltas
  go out ``<ms>`` apart on an absolute schedule (no drift), the opening events at once,
  the closing ones one interval after the last delta. Each delta's text is ``s<seq>
  t<ns>``: its number in the stream and ``time.monotonic_ns()`` taken just before the
  write. The path carries the timing so that one upstream serves every phase and a proxy
  needs no knowledge of it (a provider's ``base-url`` holds it).
- ``load``: opens ``--streams`` connections, spread evenly over ``--ramp`` seconds so that
  the events of different streams do not all fall on the same instant, sends each a
  streaming Anthropic Messages request and reads the answer's chunked framing and SSE
  events. For each delta the added latency is ``monotonic_ns()`` at the read minus the
  stamp: both clocks are the host's CLOCK_MONOTONIC, so no direct run is needed as a
  baseline (one is run anyway, to show what the two harness programs add on their own).
  The sequence numbers check that every event arrives, in order, and the stream ends with
  ``message_stop``. With ``--repeat`` each connection starts its next stream as one ends
  (keep-alive) until ``--seconds``, then every connection is cut (phase a); without it
  each connection carries one stream and closes (phase b).

The load generator also measures, from ``--window-from`` seconds after its start to the
end of the run, the CPU of the proxy (``--watch-pid``), of the upstream
(``--upstream-pid``) and its own, and the events it read; it samples the proxy's VmRSS
every 250 ms and its own event loop's lag every 20 ms (a late timer means late reads, and
so latencies it added itself). It prints one line ``TRICKLE-JSON {...}`` (``LoadResult``)
and exits 0; bench.py reads that line.

    python3 bench/trickle.py upstream --port 9100
    python3 bench/trickle.py load --port 9100 --path /trickle/50/100/v1/messages \\
        --model claude-trickle --streams 100 --ramp 0.05 --seconds 9 --repeat

Linux only (/proc); talks to 127.0.0.1 only. Not part of cliproxy.
"""

import argparse
import asyncio
import dataclasses
import json
import os
import re
import sys
import time
from typing import List, Optional

# ---------------------------------------------------------------------------------------
# Shared.

HOST = "127.0.0.1"
CLIENT_KEY = "sk-bench"
RESULT_PREFIX = "TRICKLE-JSON "
# A delta's text: its sequence number in the stream and the upstream's write time.
STAMP = re.compile(rb'"s(\d+) t(\d+)"')
LAST_CHUNK = b"0\r\n\r\n"
MB = 1024 * 1024

_TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def cpu_us(pid):
    """utime + stime of ``pid`` in microseconds (None once it has gone)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) * _TICK_US


def rss_mb(pid):
    """VmRSS of ``pid`` in MiB (None once it has gone)."""
    try:
        with open("/proc/%d/status" % pid, encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


# ---------------------------------------------------------------------------------------
# The trickling upstream.

PATH = re.compile(r"^/trickle/(\d+)/(\d+)/v1/(messages|chat/completions)$")
MAX_REQUEST = 1 * MB
RESPONSE_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                 b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")
CHAT_CREATED = 1767225600


def _event(kind, document):
    return ("event: %s\ndata: %s\n\n" % (kind, json.dumps(document, separators=(",", ":")))).encode()


def _data(document):
    return ("data: %s\n\n" % json.dumps(document, separators=(",", ":"))).encode()


class AnthropicEvents:
    """The events of an Anthropic Messages stream; the deltas are templated (hot path)."""

    DELTA = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
             b'"delta":{"type":"text_delta","text":"s%d t%d"}}\n\n')

    def __init__(self, model, deltas):
        self.opening = [
            _event("message_start", {"type": "message_start", "message": {
                "id": "msg_trickle", "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": 12, "output_tokens": 1}}}),
            _event("content_block_start", {"type": "content_block_start", "index": 0,
                                           "content_block": {"type": "text", "text": ""}}),
        ]
        self.closing = [
            _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            _event("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                     "usage": {"output_tokens": deltas}}),
            _event("message_stop", {"type": "message_stop"}),
        ]


class ChatEvents:
    """The same text as OpenAI Chat Completions chunks."""

    DELTA = (b'data: {"id":"chatcmpl-trickle","object":"chat.completion.chunk","created":%d,'
             b'"model":"%%s","choices":[{"index":0,"delta":{"content":"s%%%%d t%%%%d"},'
             b'"finish_reason":null}]}\n\n' % CHAT_CREATED)

    def __init__(self, model, deltas):
        self.DELTA = self.DELTA % model.encode()

        def chat(choices, **extra):
            return dict({"id": "chatcmpl-trickle", "object": "chat.completion.chunk",
                         "created": CHAT_CREATED, "model": model, "choices": choices}, **extra)

        self.opening = [_data(chat([{"index": 0, "delta": {"role": "assistant", "content": ""},
                                     "finish_reason": None}]))]
        self.closing = [
            _data(chat([{"index": 0, "delta": {}, "finish_reason": "stop"}])),
            _data(chat([], usage={"prompt_tokens": 12, "completion_tokens": deltas,
                                  "total_tokens": 12 + deltas})),
            b"data: [DONE]\n\n",
        ]


class Trickle:
    """One stream being written: opening events now, a delta every interval, then the
    closing events; each event one chunk and one write."""

    def __init__(self, connection, interval_s, deltas, events):
        self.connection = connection
        self.transport = connection.transport
        self.interval = interval_s
        self.deltas = deltas
        self.events = events
        self.sent = 0
        self.loop = asyncio.get_running_loop()
        self.base = self.loop.time()
        self.handle = None

    def start(self):
        opening = self.events.opening
        self.transport.write(RESPONSE_HEAD + chunk(opening[0]))
        for event in opening[1:]:
            self.transport.write(chunk(event))
        self._schedule()

    def _schedule(self):
        self.handle = self.loop.call_at(self.base + (self.sent + 1) * self.interval, self._tick)

    def _tick(self):
        if self.sent < self.deltas:
            self.sent += 1
            self.transport.write(chunk(self.events.DELTA % (self.sent, time.monotonic_ns())))
            self._schedule()
            return
        closing = self.events.closing
        for event in closing[:-1]:
            self.transport.write(chunk(event))
        self.transport.write(chunk(closing[-1]) + LAST_CHUNK)
        self.handle = None
        self.connection.stream_done()

    def cancel(self):
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


class UpstreamConnection(asyncio.Protocol):
    """One client connection of the upstream: requests one at a time (keep-alive)."""

    def __init__(self):
        self.transport = None
        self.buffer = b""
        self.stream = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buffer += data
        if self.stream is None:
            self._serve()

    def _serve(self):
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_REQUEST:
                self._refuse(431, "head too large")
            return
        lines = self.buffer[:end].decode("latin-1").split("\r\n")
        fields = dict((name.strip().lower(), value.strip())
                      for name, _, value in (line.partition(":") for line in lines[1:]))
        if "content-length" not in fields:
            self._refuse(411, "a Content-Length body is needed")
            return
        length = int(fields["content-length"])
        if len(self.buffer) < end + 4 + length:
            return
        body = self.buffer[end + 4:end + 4 + length]
        self.buffer = self.buffer[end + 4 + length:]
        parts = lines[0].split(" ")
        match = PATH.match(parts[1]) if len(parts) == 3 else None
        if match is None:
            self._refuse(404, "no trickle at %r" % lines[0])
            return
        try:
            model = json.loads(body).get("model") or "unknown"
        except ValueError:
            model = "unknown"
        deltas = int(match.group(2))
        kind = AnthropicEvents if match.group(3) == "messages" else ChatEvents
        self.stream = Trickle(self, int(match.group(1)) / 1000.0, deltas, kind(model, deltas))
        self.stream.start()

    def stream_done(self):
        self.stream = None
        if self.buffer:
            self._serve()

    def _refuse(self, status, message):
        body = json.dumps({"error": message}).encode()
        self.transport.write(b"HTTP/1.1 %d Refused\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                             % (status, len(body), body))
        self.transport.close()

    def connection_lost(self, exc):
        if self.stream is not None:
            self.stream.cancel()
            self.stream = None


async def serve_upstream(port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(UpstreamConnection, HOST, port, backlog=4096)
    async with server:
        await server.serve_forever()


# ---------------------------------------------------------------------------------------
# The load generator.

@dataclasses.dataclass
class LoadResult:
    """What one load run saw; times in ms, CPU in us, memory in MiB."""
    streams: int            # streams started
    complete: int           # ended with every delta in order and message_stop
    failed: int             # ended otherwise: error status, early end, lost connection
    cut: int                # still running when a --repeat run ended (not failures)
    errors: List[str]       # the first few distinct failures
    events: int             # SSE events read, all streams
    deltas: int             # stamped deltas read
    out_of_order: int       # deltas whose sequence number was not the next one
    latency_p50_ms: Optional[float]
    latency_p99_ms: Optional[float]
    latency_max_ms: Optional[float]
    window_s: float
    window_events: int
    proxy_cpu_us: Optional[float]
    upstream_cpu_us: Optional[float]
    load_cpu_us: float
    proxy_rss_start_mb: Optional[float]
    proxy_rss_peak_mb: Optional[float]
    loop_lag_p99_ms: Optional[float]
    loop_lag_max_ms: Optional[float]
    wall_s: float

    @property
    def proxy_cpu_per_event_us(self):
        if self.proxy_cpu_us is None or not self.window_events:
            return None
        return self.proxy_cpu_us / self.window_events

    @property
    def load_cpu_share(self):
        """The load generator's CPU in the window, as a share of one core."""
        return self.load_cpu_us / 1e6 / self.window_s if self.window_s else 0.0

    @property
    def whole(self):
        """Every stream started ended whole and in order (none failed, none cut)."""
        return (self.complete == self.streams > 0 and self.failed == 0
                and self.out_of_order == 0)

    @property
    def sound(self):
        """No stream failed and no delta came out of order (cut ones aside)."""
        return self.failed == 0 and self.out_of_order == 0


def parse_result(output):
    """The ``LoadResult`` in a load run's stdout, or None when it printed none."""
    for line in output.splitlines():
        if line.startswith(RESULT_PREFIX):
            return LoadResult(**json.loads(line[len(RESULT_PREFIX):]))
    return None


MAX_ERRORS = 5
RSS_EVERY = 0.25
LAG_EVERY = 0.02
# A stream-per-connection run ends at the latest this long after its last stream should
# have ended; streams still open then count as failed.
GRACE_S = 15.0


def percentile(ordered, fraction):
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class StreamReader(asyncio.Protocol):
    """One load connection: sends a streaming request, reads the answer's head, chunked
    framing and SSE events, and times the stamped deltas."""

    def __init__(self, load):
        self.load = load
        self.transport = None
        self.active = False

    def connection_made(self, transport):
        self.transport = transport
        self.load.connections.add(self)
        self.send()

    def send(self):
        self.active = True
        self.head = None          # bytes until the head is whole, then True
        self.framing = b""        # chunked framing not decoded yet
        self.left = 0             # bytes left in the current chunk (-1: its CRLF)
        self.sse = b""            # decoded body not yet cut into events
        self.next_seq = 1         # the sequence number the next delta should carry
        self.in_order = 0         # deltas that carried it
        self.stopped = False
        self.error_body = None
        self.load.streams += 1
        self.transport.write(self.load.request)

    def data_received(self, data):
        now = time.monotonic_ns()
        if not self.active:
            return
        if self.head is not True:
            data = (self.head or b"") + data
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.head = data
                return
            if not self._head(data[:end]):
                return
            self.head = True
            data = data[end + 4:]
        if self.error_body is not None:
            self._fail_status(data)
            return
        body, ended = self._dechunk(data)
        if body:
            self._events(body, now)
        if ended:
            self._end()

    def _head(self, head):
        lines = head.split(b"\r\n")
        status = lines[0].split(b" ", 2)
        fields = head.lower()
        if len(status) < 2 or status[1] != b"200":
            self.error_body = lines[0].decode("latin-1")
            return True
        if b"\r\ntransfer-encoding: chunked" not in fields:
            self._fail("answer not chunked: %s" % head[:200].decode("latin-1"))
            return False
        return True

    def _fail_status(self, data):
        self._fail("HTTP %s: %s" % (self.error_body, data[:200].decode("utf-8", "replace")))

    def _dechunk(self, data):
        """(decoded bytes, whether the last chunk arrived) of ``data`` (chunked framing)."""
        buffer = self.framing + data if self.framing else data
        out = []
        pos = 0
        size = len(buffer)
        while pos < size:
            if self.left > 0:
                take = min(self.left, size - pos)
                out.append(buffer[pos:pos + take])
                pos += take
                self.left -= take
                if self.left:
                    break
                self.left = -1
            if self.left == -1:
                if size - pos < 2:
                    break
                pos += 2
                self.left = 0
            end = buffer.find(b"\r\n", pos)
            if end < 0:
                break
            length = int(buffer[pos:end].split(b";", 1)[0], 16)
            if length == 0:
                self.framing = b""
                return b"".join(out), True
            pos = end + 2
            self.left = length
        self.framing = buffer[pos:]
        return b"".join(out), False

    def _events(self, body, now):
        sse = self.sse + body if self.sse else body
        end = sse.rfind(b"\n\n")
        if end < 0:
            self.sse = sse
            return
        self.sse = sse[end + 2:]
        load = self.load
        for event in sse[:end].split(b"\n\n"):
            load.events += 1
            stamp = STAMP.search(event)
            if stamp is None:
                # Anthropic's last event, or OpenAI's (a direct run of a Chat stream).
                if b"message_stop" in event or event == b"data: [DONE]":
                    self.stopped = True
                continue
            seq = int(stamp.group(1))
            if seq == self.next_seq:
                self.in_order += 1
            else:
                load.out_of_order += 1
            self.next_seq = seq + 1
            load.deltas += 1
            load.latencies.append(now - int(stamp.group(2)))

    def _end(self):
        self.active = False
        load = self.load
        if self.stopped and self.in_order == load.deltas_per_stream == self.next_seq - 1:
            load.complete += 1
        else:
            load.note_failure("stream ended with %d of %d deltas in order%s" % (
                self.in_order, load.deltas_per_stream,
                "" if self.stopped else ", without its last event"))
        if load.repeat and not load.stopping:
            self.send()
        else:
            self.transport.close()

    def _fail(self, message):
        self.active = False
        self.load.note_failure(message)
        self.transport.close()

    def connection_lost(self, exc):
        load = self.load
        load.connections.discard(self)
        if self.active:
            self.active = False
            if load.stopping:
                load.cut += 1
            else:
                load.note_failure("connection lost mid-stream: %s" % (exc or "closed by peer"))
        load.connection_closed()


class Load:
    """One load run (see the module docstring); ``run()`` returns a ``LoadResult``."""

    def __init__(self, options):
        self.options = options
        self.deltas_per_stream = options.deltas
        self.repeat = options.repeat
        body = json.dumps({"model": options.model, "max_tokens": 1024, "stream": True,
                           "messages": [{"role": "user", "content": "Trickle, please."}]},
                          separators=(",", ":")).encode()
        self.request = (
            "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
            "Accept: text/event-stream\r\nAuthorization: Bearer %s\r\n"
            "anthropic-version: 2023-06-01\r\nContent-Length: %d\r\n\r\n"
            % (options.path, HOST, options.port, CLIENT_KEY, len(body))).encode() + body
        self.connections = set()
        self.open = 0
        self.streams = self.complete = self.failed = self.cut = 0
        self.events = self.deltas = self.out_of_order = 0
        self.errors = []
        self.latencies = []
        self.lags = []
        self.rss = []
        self.stopping = False
        self.window = None
        self.done = None

    def note_failure(self, message):
        self.failed += 1
        if len(self.errors) < MAX_ERRORS and message not in self.errors:
            self.errors.append(message)

    def connection_closed(self):
        self.open -= 1
        if self.open == 0 and not self.repeat and not self.done.done():
            self.done.set_result(None)

    def _open(self):
        loop = asyncio.get_running_loop()
        opening = loop.create_task(loop.create_connection(
            lambda: StreamReader(self), HOST, self.options.port))
        opening.add_done_callback(self._opened)

    def _opened(self, opening):
        if opening.cancelled():
            self.connection_closed()
            return
        exc = opening.exception()
        if exc is not None:
            self.streams += 1
            self.note_failure("connect: %s" % exc)
            self.connection_closed()

    def _readings(self):
        options = self.options
        return (time.monotonic(), self.events,
                cpu_us(options.watch_pid) if options.watch_pid else None,
                cpu_us(options.upstream_pid) if options.upstream_pid else None,
                cpu_us(os.getpid()))

    def _window_start(self):
        self.window = self._readings()

    def _sample_rss(self):
        if self.options.watch_pid:
            value = rss_mb(self.options.watch_pid)
            if value is not None:
                self.rss.append(value)

    async def _every(self, period, action):
        """Call ``action(lateness)`` every ``period`` s on an absolute schedule."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += period
            await asyncio.sleep(max(0.0, due - loop.time()))
            action(loop.time() - due)

    async def run(self):
        options = self.options
        loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        started = loop.time()
        self.open = options.streams
        for i in range(options.streams):
            loop.call_at(started + options.ramp * i / options.streams, self._open)
        self._sample_rss()
        rss_start = self.rss[0] if self.rss else None
        timers = [loop.create_task(self._every(RSS_EVERY, lambda lag: self._sample_rss())),
                  loop.create_task(self._every(LAG_EVERY, self.lags.append))]
        loop.call_at(started + options.window_from, self._window_start)
        try:
            if self.repeat:
                await asyncio.sleep(max(0.0, started + options.seconds - loop.time()))
            else:
                limit = options.ramp + options.seconds + GRACE_S
                try:
                    await asyncio.wait_for(asyncio.shield(self.done), limit)
                except asyncio.TimeoutError:
                    pass
            if self.window is None:
                self._window_start()
            closing = self._readings()
        finally:
            for timer in timers:
                timer.cancel()
        self.stopping = True
        for connection in list(self.connections):
            connection.transport.abort()
        await asyncio.sleep(0)
        return self._result(closing, rss_start, loop.time() - started)

    def _result(self, closing, rss_start, wall):
        opening = self.window
        latencies = sorted(self.latencies)
        lags = sorted(self.lags)

        def spent(i):
            if opening[i] is None or closing[i] is None:
                return None
            return closing[i] - opening[i]

        def ms(ns):
            return None if ns is None else ns / 1e6

        return LoadResult(
            streams=self.streams, complete=self.complete, failed=self.failed, cut=self.cut,
            errors=self.errors, events=self.events, deltas=self.deltas,
            out_of_order=self.out_of_order,
            latency_p50_ms=ms(percentile(latencies, 0.50)),
            latency_p99_ms=ms(percentile(latencies, 0.99)),
            latency_max_ms=ms(latencies[-1] if latencies else None),
            window_s=closing[0] - opening[0], window_events=closing[1] - opening[1],
            proxy_cpu_us=spent(2), upstream_cpu_us=spent(3), load_cpu_us=spent(4) or 0.0,
            proxy_rss_start_mb=rss_start, proxy_rss_peak_mb=max(self.rss) if self.rss else None,
            loop_lag_p99_ms=None if not lags else percentile(lags, 0.99) * 1000,
            loop_lag_max_ms=None if not lags else lags[-1] * 1000,
            wall_s=wall)


def load_command(port, path, model, streams, deltas, seconds, ramp, repeat=False,
                 window_from=0.0, watch_pid=None, upstream_pid=None):
    """The argument list (after the interpreter) of one load run, for bench.py."""
    command = [os.path.abspath(__file__), "load", "--port", str(port), "--path", path,
               "--model", model, "--streams", str(streams), "--deltas", str(deltas),
               "--seconds", str(seconds), "--ramp", str(ramp),
               "--window-from", str(window_from)]
    if repeat:
        command.append("--repeat")
    if watch_pid:
        command += ["--watch-pid", str(watch_pid)]
    if upstream_pid:
        command += ["--upstream-pid", str(upstream_pid)]
    return command


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    roles = parser.add_subparsers(dest="role", required=True)
    upstream = roles.add_parser("upstream", help="serve trickling streams")
    upstream.add_argument("--port", type=int, required=True)
    load = roles.add_parser("load", help="read trickling streams and time their events")
    load.add_argument("--port", type=int, required=True)
    load.add_argument("--path", required=True, help="request target (the proxy's route)")
    load.add_argument("--model", required=True)
    load.add_argument("--streams", type=int, required=True, help="connections")
    load.add_argument("--deltas", type=int, required=True,
                      help="deltas per stream (the count in the upstream's path)")
    load.add_argument("--seconds", type=float, required=True,
                      help="--repeat: how long to run; else how long a stream lasts")
    load.add_argument("--ramp", type=float, default=0.0,
                      help="seconds over which the connections are opened")
    load.add_argument("--repeat", action="store_true",
                      help="a new stream on each connection as one ends, until --seconds")
    load.add_argument("--window-from", type=float, default=0.0,
                      help="seconds after the start when the CPU window opens")
    load.add_argument("--watch-pid", type=int, default=None, help="the proxy's pid")
    load.add_argument("--upstream-pid", type=int, default=None)
    args = parser.parse_args(argv)
    if args.role == "load" and (args.streams < 1 or args.deltas < 1 or args.seconds <= 0):
        parser.error("--streams and --deltas must be >= 1, --seconds > 0")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.role == "upstream":
            asyncio.run(serve_upstream(args.port))
            return 0
        result = asyncio.run(Load(args).run())
    except KeyboardInterrupt:
        return 130
    print(RESULT_PREFIX + json.dumps(dataclasses.asdict(result)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
