"""Load for ``make hostile``: slowloris connections, and many SSE streams at once.

Strategy: one asyncio loop on the client side holds every connection, so a thousand of
them cost a thousand sockets and no threads. Connections are opened in small batches, as
clients arrive, not in one burst that would only measure the listen backlog. Figures of
the proxy process come from a ``sample`` callback the job passes in (it reads /proc), so
this module knows nothing of processes.

- ``slowloris``: each connection sends a request head that never ends (half of them a
  whole head and a body that never ends instead) and adds one line (or one body byte)
  per ``TRICKLE_SECONDS``, for ``seconds``; meanwhile ``GET /healthz`` is timed on fresh
  connections. A connection the proxy closes is counted, not reopened.
- ``sse_streams``: each client POSTs a streamed Anthropic Messages call and reads the
  whole answer; the upstream's text deltas are numbered ``e0``, ``e1`` ..., so "every
  event in order" is checked exactly. How many streams were open at once is counted
  from the client side.
"""

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import List, Optional

from tests.support.hostile import CLIENT_KEY, LOOPBACK, ResponseReader, WireError

CONNECT_BATCH = 50  # connections opened together
BATCH_PAUSE = 0.02  # seconds between batches
TRICKLE_SECONDS = 1.0
PROBE_SECONDS = 0.25  # how often /healthz is timed
PROBE_TIMEOUT = 2.0
SSE_PATH = b"/api/provider/anthropic/v1/messages"


@dataclass
class SlowlorisResult:
    opened: int = 0
    refused: int = 0
    cut: int = 0  # closed by the proxy during the attack
    probes: List[Optional[float]] = field(default_factory=list)  # seconds, None: no answer
    samples: List[int] = field(default_factory=list)  # the sample callback's readings
    at_end: object = None  # what ``before_release()`` returned

    @property
    def answered(self):
        return [p for p in self.probes if p is not None]


async def _open(port, count, first_bytes):
    """Open ``count`` connections in batches, each sending ``first_bytes(i)``; returns
    (writers, refused)."""
    writers = []
    refused = 0
    for start in range(0, count, CONNECT_BATCH):
        batch = range(start, min(count, start + CONNECT_BATCH))
        results = await asyncio.gather(*(asyncio.open_connection(LOOPBACK, port) for _ in batch),
                                       return_exceptions=True)
        for index, result in zip(batch, results):
            if isinstance(result, BaseException):
                refused += 1
                continue
            reader, writer = result
            writer.write(first_bytes(index))
            writers.append((reader, writer))
        await asyncio.sleep(BATCH_PAUSE)
    return writers, refused


def _slow_head(index):
    head = b"POST /api/provider/anthropic/v1/messages HTTP/1.1\r\nHost: h\r\n"
    if index % 2:
        return head + b"Authorization: Bearer " + CLIENT_KEY.encode() + b"\r\nContent-Length: 100000\r\n\r\n{"
    return head + b"X-Slow-0: a\r\n"


async def _probe(port):
    """Seconds for one GET /healthz on a fresh connection, or None."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(LOOPBACK, port), PROBE_TIMEOUT)
    except (OSError, asyncio.TimeoutError):
        return None
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        line = await asyncio.wait_for(reader.readline(), PROBE_TIMEOUT - (time.monotonic() - started))
        return time.monotonic() - started if line.startswith(b"HTTP/1.1 200") else None
    except (OSError, asyncio.TimeoutError, ValueError):
        return None
    finally:
        writer.transport.abort()


async def slowloris(port, count, seconds, sample, before_release=lambda: None):
    """Hold ``count`` slow connections for ``seconds`` while timing /healthz; ``sample()``
    is called once per trickle round (its values are kept), ``before_release()`` once
    the time is up, before the connections are closed."""
    result = SlowlorisResult()
    writers, result.refused = await _open(port, count, _slow_head)
    result.opened = len(writers)
    alive = list(writers)
    ends = time.monotonic() + seconds
    next_trickle = time.monotonic()
    round_ = 0
    while time.monotonic() < ends:
        if time.monotonic() >= next_trickle:
            round_ += 1
            alive = _trickle(alive, round_)
            result.samples.append(sample())
            next_trickle += TRICKLE_SECONDS
        result.probes.append(await _probe(port))
        await asyncio.sleep(PROBE_SECONDS)
    result.cut = result.opened - len(alive)
    result.at_end = before_release()
    for _, writer in writers:
        writer.transport.abort()
    return result


def _trickle(connections, round_):
    """One more header line (or body byte) on each connection still open."""
    alive = []
    for index, (reader, writer) in enumerate(connections):
        if reader.at_eof() or writer.transport.is_closing():
            continue
        writer.write(b"X-Slow-%d: a\r\n" % round_ if index % 2 == 0 else b" ")
        alive.append((reader, writer))
    return alive


# --- SSE streams ------------------------------------------------------------------------


@dataclass
class SseResult:
    streams: int = 0
    in_order: int = 0
    failures: List[str] = field(default_factory=list)
    peak_open: int = 0
    first_byte: List[float] = field(default_factory=list)
    seconds: float = 0.0
    samples: List[float] = field(default_factory=list)


def sse_request(model):
    body = json.dumps({"model": model, "max_tokens": 64, "stream": True,
                       "messages": [{"role": "user", "content": "count"}]}).encode()
    return (b"POST %s HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (SSE_PATH, CLIENT_KEY.encode(), len(body), body))


def texts_of(body):
    """The text deltas and event types of an Anthropic SSE body, in order."""
    texts = []
    types = []
    for block in body.decode("utf-8").split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data:"):
                event = json.loads(line[5:])
                types.append(event.get("type"))
                delta = event.get("delta") or {}
                if delta.get("type") == "text_delta":
                    texts.append(delta["text"])
    return texts, types


class _Open:
    def __init__(self):
        self.now = 0
        self.peak = 0

    def up(self):
        self.now += 1
        self.peak = max(self.peak, self.now)

    def down(self):
        self.now -= 1


async def _one_stream(port, request, events, bound, counter, result):
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(LOOPBACK, port), bound)
    except (OSError, asyncio.TimeoutError) as exc:
        result.failures.append("connect: %r" % (exc,))
        return
    opened = False
    try:
        writer.write(request)
        answers = ResponseReader()
        answers.expect("POST")
        response = None
        while response is None:
            data = await asyncio.wait_for(reader.read(65536), max(0.01, started + bound - time.monotonic()))
            if not opened and data:
                opened = True
                counter.up()
                result.first_byte.append(time.monotonic() - started)
            if data:
                answers.feed(data)
            else:
                answers.feed_eof()
            response = answers.next()
        _judge(response, events, result)
    except (OSError, asyncio.TimeoutError, WireError, ValueError) as exc:
        result.failures.append("%s after %.1f s" % (type(exc).__name__, time.monotonic() - started))
    finally:
        if opened:
            counter.down()
        writer.transport.abort()


def _judge(response, events, result):
    if response.status != 200:
        result.failures.append("status %d: %r" % (response.status, response.body[:100]))
        return
    texts, types = texts_of(response.body)
    wanted = ["e%d" % i for i in range(events)]
    if texts == wanted and types and types[-1] == "message_stop":
        result.in_order += 1
    else:
        result.failures.append("events out of order or missing: %d texts, last event %r"
                               % (len(texts), types[-1] if types else None))


async def sse_streams(port, count, events, model, bound, sample):
    """Run ``count`` streams at once; ``sample()`` is called every 0.25 s meanwhile."""
    result = SseResult(streams=count)
    counter = _Open()
    request = sse_request(model)
    started = time.monotonic()
    sampling = asyncio.ensure_future(_sample_every(sample, 0.25, result.samples))
    tasks = []
    for start in range(0, count, CONNECT_BATCH):
        for _ in range(start, min(count, start + CONNECT_BATCH)):
            tasks.append(asyncio.ensure_future(_one_stream(port, request, events, bound, counter, result)))
        await asyncio.sleep(BATCH_PAUSE)
    await asyncio.gather(*tasks)
    sampling.cancel()
    result.peak_open = counter.peak
    result.seconds = time.monotonic() - started
    return result


async def _sample_every(sample, interval, into):
    while True:
        into.append(sample())
        await asyncio.sleep(interval)
