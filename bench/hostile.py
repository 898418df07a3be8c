#!/usr/bin/env python3
"""make hostile: a standing hostile probe of the built dist/cliproxy.pyz.

Strategy: the zipapp runs as child processes (bench/hostile_proc.py), one per phase, each
on its own config; upstreams, clients and figures live in this process. The request
material is tests/support/hostile.py, the very code tests/test_hostile_*.py run in-process
on a slice, so the job and ``make test`` cannot drift apart. Phases:

1. smuggling: every vector of the corpus against a recording upstream;
2. fuzz: a seeded mutation fuzz (100,000 requests by default) over every route family,
   with upstreams that answer well, counting statuses, hangs, tracebacks, keys seen
   upstream, and descriptors and RSS before and after (once warmed up);
3. faults: an upstream that refuses, hangs before its head, hangs mid-body, closes
   mid-stream, sends garbage or a gzip bomb, on a model call (whole and streamed) and an
   Amp route (bench/hostile_faults.py);
4. slowloris: 1,000 slow clients against a proxy limited to 1,024 descriptors while
   /healthz is timed (bench/hostile_load.py);
5. sse: 1,000 concurrent streams, every event checked in order, RSS at its peak and after.

It prints ONE table, a row per check (what, measured, expected, PASS/MISS), then the
details of every MISS, and writes the rows to bench/out/hostile.json. A check that depends
on work not finished yet says so in its details. Like ``make bench`` it exits 0 whatever
the figures (``--strict``: 1 when a check misses), and 1 when the harness cannot run.
Linux only (/proc); standard library only; 127.0.0.1 only.
"""

import argparse
import asyncio
import collections
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import List

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # tests.support.hostile, shared with the test-suite

from tests.support import hostile as h  # noqa: E402
from tests.support.fakes import FakeUpstream, FakeWebSocketEcho, SSEReply  # noqa: E402

import hostile_faults as faults  # noqa: E402
import hostile_load as load  # noqa: E402
from procs import free_port  # noqa: E402
from hostile_proc import (  # noqa: E402
    HarnessError,
    descriptor_ceiling,
    healthz,
    log_summary,
    raise_own_descriptor_limit,
    start_proxy,
    wait_for,
)

DEFAULT_PYZ = os.path.join(ROOT, "dist", "cliproxy.pyz")
DEFAULT_OUT = os.path.join(HERE, "out")
PHASES = ("smuggling", "fuzz", "faults", "slowloris", "sse")

# fuzz
FUZZ_CASES = 100000
FUZZ_WARM_UP = 2000  # cases sent before descriptors and RSS are read the first time
FUZZ_CHUNK = 10000  # cases between progress lines (and upstream record scans)
FUZZ_CONCURRENCY = 128
# After the fuzz, descriptors may exceed the warmed-up start by the proxy's idle pool of
# upstream connections (32 per origin) and a couple more; RSS by what bounded caches hold
# once full (the route-decision memo keeps up to 4,096 of the fuzz's odd model names)
# and allocator slack.
FUZZ_DESCRIPTOR_SLACK = 34
FUZZ_RSS_SLACK_MB = 24.0
SETTLE_SECONDS = 10.0

# faults
FAULT_READ_TIMEOUT = 3.0
FAULT_LIMITS = {"connect-timeout": 2, "read-timeout": FAULT_READ_TIMEOUT, "drain-timeout": 2}
QUICK = 1.5  # seconds: a fault the proxy sees at once
BY_TIMEOUT = FAULT_READ_TIMEOUT + 1.5  # seconds: a fault only a timeout reveals
BOMB_SECONDS = 60.0  # a whole inflated gigabyte, relayed
BOMB_RSS_MB = 64.0  # memory a gzip bomb may cost the proxy at its peak
# The fault proxies' address space: a bomb the proxy fails to bound then costs it a
# MemoryError rather than the machine's memory.
FAULT_MEMORY = 1 << 30

# slowloris
SLOW_CLIENTS = 1000
SLOW_DESCRIPTORS = 1024
SLOW_SECONDS = 15.0
PROMPT = 1.0  # seconds: /healthz counts as prompt below this
# Warnings during the attack: "not accepting connections" and "letting go of connections
# waiting for a request", each at most once a minute (INFO lines, such as the first model
# call of a client, are not the attack's).
SLOW_LOG_LINES = 2

# sse
SSE_STREAMS = 1000
SSE_EVENTS = 30
SSE_DELAY = 0.2  # seconds between events: a stream lasts 6 s, so all 1,000 overlap
SSE_MODEL = "claude-sse-hostile"
SSE_BOUND = 60.0
SSE_DESCRIPTORS = 8192
# Memory the streams may cost at their peak (64 KB each), and keep once they are over.
SSE_PEAK_SLACK_MB = 64.0
SSE_AFTER_SLACK_MB = 16.0
SSE_DESCRIPTOR_SLACK = 34


@dataclass
class Check:
    """One row of the table."""

    what: str
    measured: str
    expected: str
    ok: bool
    details: List[str] = field(default_factory=list)
    pending: str = ""


class Checks(list):
    def add(self, what, measured, expected, ok, details=(), pending=""):
        self.append(Check(what, measured, expected, bool(ok), list(details), pending))


def _progress(message):
    print("hostile: " + message, file=sys.stderr, flush=True)


def _count(number):
    return "{:,}".format(number)


# --- phase 1: smuggling -------------------------------------------------------------


def _state_text(statuses, state, upstream):
    """A vector's outcome in a few words: answers, connection state, upstream requests."""
    answers = ",".join(str(s) for s in statuses) or "none"
    got = "; ".join("%s %s %r" % (method, target, body[:20]) for method, target, body in upstream) or "nothing"
    return "%s %s; up: %s" % (answers, state, got)


def smuggling(args, workdir, checks):
    with h.RawUpstream() as upstream:
        proxy = start_proxy("smuggling", args.proxy, workdir, h.smuggling_document(upstream.url))
        try:
            for vector in h.VECTORS:
                result = h.run_vector(vector, proxy.port, upstream)
                got = [(r.method, r.target, r.body) for r in result.upstream if r.complete]
                checks.add(
                    "smuggle: " + vector.name,
                    _state_text(result.statuses, result.connection, got),
                    _state_text(vector.statuses, _expected_state(vector), vector.upstream),
                    result.ok,
                    [vector.what] + result.problems,
                    vector.pending,
                )
            entries, tracebacks = log_summary(proxy.log_lines())
            checks.add("smuggle: tracebacks in the log", "%d in %d lines" % (len(tracebacks), len(entries)), "0",
                       not tracebacks, tracebacks[:3])
        finally:
            proxy.stop()


def _expected_state(vector):
    if vector.closed:
        return h.CLOSED
    return h.TUNNEL if 101 in vector.statuses else h.OPEN


# --- phase 2: the fuzz ----------------------------------------------------------------


def _snapshot(proxies):
    return {p.name: (p.descriptors(), p.memory_mb()) for p in proxies}


def fuzz(args, workdir, checks):
    with FakeWebSocketEcho(default=h.answer_well) as upstream:
        proxies = [start_proxy("fuzz-online", args.proxy, workdir, h.online_document(upstream.url)),
                   start_proxy("fuzz-offline", args.proxy, workdir, h.offline_document())]
        try:
            _fuzz(args, proxies, upstream, checks)
        finally:
            for proxy in proxies:
                proxy.stop()


def _fuzz(args, proxies, upstream, checks):
    ports = {"online": proxies[0].port, "offline": proxies[1].port}
    leaks = []

    def batch(start, count):
        report = asyncio.run(h.run_fuzz(args.seed, start, count, ports, FUZZ_CONCURRENCY, h.FUZZ_BOUND))
        seen = len(upstream.requests)
        leaks.extend(h.upstream_leaks(upstream.requests[:seen]))
        del upstream.requests[:seen]
        return report

    warm = min(FUZZ_WARM_UP, args.cases)
    report = batch(0, warm)
    time.sleep(1.0)
    before = _snapshot(proxies)
    for start in range(warm, args.cases, FUZZ_CHUNK):
        report.merge(batch(start, min(FUZZ_CHUNK, args.cases - start)))
        _progress("fuzz: %s of %s cases, %s; RSS %.1f MB, %d descriptors" % (
            _count(report.cases), _count(args.cases), _status_text(report, 4), proxies[0].memory_mb(),
            proxies[0].descriptors()))
    wait_for(lambda: all(p.descriptors() <= before[p.name][0] + FUZZ_DESCRIPTOR_SLACK for p in proxies),
             SETTLE_SECONDS)
    after = _snapshot(proxies)
    _fuzz_rows(args, report, leaks, proxies, before, after, checks)
    _memory_rows(proxies[0], checks)


def _status_text(report, top):
    total = float(report.cases) or 1.0
    parts = ["%s %.1f%%" % (status, 100 * n / total) for status, n in report.results.most_common(top)]
    return " · ".join(parts)


def _fuzz_rows(args, report, leaks, proxies, before, after, checks):
    counts = report.counts
    rate = report.cases / report.seconds if report.seconds else 0
    checks.add("fuzz: requests sent (seed %d)" % args.seed,
               "%s in %.0f s (%.0f/s)" % (_count(report.cases), report.seconds, rate), _count(args.cases),
               report.cases == args.cases)
    checks.add("fuzz: answers by status", _status_text(report, 5), "no 500", counts["errors"] == 0,
               ["500: %d" % counts["errors"]] + report.errors)
    for kind, what in (("bad_gateway", "502/504 from healthy upstreams"),
                       ("hangs", "hangs (no answer or close in %.0f s)" % h.FUZZ_BOUND),
                       ("garbled", "answers that are not HTTP"),
                       ("silent", "complete requests left unanswered"),
                       ("non_json", "error answers without a JSON body")):
        checks.add("fuzz: " + what, _count(counts[kind]), "0", counts[kind] == 0, getattr(report, kind))
    served = [name for name, _, _ in h.FAMILIES
              if any(isinstance(r, int) and 200 <= r < 300 for r in report.by_family.get(name, ()))]
    wanted = [name for name, _, _ in h.FAMILIES if name != "unknown"]
    checks.add("fuzz: route families served (a 2xx)", "%d of %d" % (len(served), len(wanted)), "all",
               set(wanted) <= set(served), ["not served: " + ", ".join(sorted(set(wanted) - set(served)))])
    checks.add("fuzz: client keys seen upstream", _count(len(leaks)), "0", not leaks, leaks[:5])
    lines = []
    tracebacks = []
    for proxy in proxies:
        entries, found = log_summary(proxy.log_lines())
        lines += entries
        tracebacks += found
    checks.add("fuzz: tracebacks in the logs", "%d in %s lines" % (len(tracebacks), _count(len(lines))), "0",
               not tracebacks, _traceback_context(proxies))
    for proxy in proxies:
        (fd0, rss0), (fd1, rss1) = before[proxy.name], after[proxy.name]
        checks.add("fuzz: descriptors of %s" % proxy.name, "warmed up %d -> after %d" % (fd0, fd1),
                   "<= +%d (idle upstream pool)" % FUZZ_DESCRIPTOR_SLACK, fd1 <= fd0 + FUZZ_DESCRIPTOR_SLACK)
        checks.add("fuzz: RSS of %s" % proxy.name, "warmed up %.1f -> after %.1f MB" % (rss0, rss1),
                   "<= +%.0f MB" % FUZZ_RSS_SLACK_MB, rss1 <= rss0 + FUZZ_RSS_SLACK_MB)


# Distinct long names and paths: what caches keyed by them may hold.
LONG_MODELS = 300
LONG_MODEL_BYTES = 200 * 1024  # under the fuzz config's max-body-bytes
LONG_PATHS = 4000
LONG_PATH_BYTES = 15 * 1024  # under the fuzz config's max-header-bytes
LONG_RSS_SLACK_MB = 16.0


def _memory_rows(proxy, checks):
    """RSS held after many distinct long model names (with a key) and long paths (without
    one): whatever remembers them must bound their size, not only their number."""
    def model_call(index):
        body = json.dumps({"model": "zz-%d-%s" % (index, "m" * LONG_MODEL_BYTES), "max_tokens": 1,
                           "messages": [{"role": "user", "content": "hi"}]}).encode()
        return (b"POST /api/provider/anthropic/v1/messages HTTP/1.1\r\nHost: h\r\nx-api-key: %s\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (h.CLIENT_KEY.encode(), len(body), body))

    def long_path(index):
        return b"GET /nope/%d/%s HTTP/1.1\r\nHost: h\r\n\r\n" % (index, b"p" * LONG_PATH_BYTES)

    for what, count, build, size in (("model names", LONG_MODELS, model_call, LONG_MODEL_BYTES),
                                      ("paths, no key,", LONG_PATHS, long_path, LONG_PATH_BYTES)):
        before = proxy.memory_mb()
        statuses = collections.Counter(_exchange(proxy.port, build(index)) for index in range(count))
        after = proxy.memory_mb()
        checks.add("memory: %d %s of %d KB" % (count, what, size // 1024),
                   "RSS %.0f -> %.0f MB" % (before, after), "<= +%.0f MB" % LONG_RSS_SLACK_MB,
                   after <= before + LONG_RSS_SLACK_MB, ["answers: %s" % dict(statuses)])


def _exchange(port, request):
    """The status of one request on a fresh connection (None: no answer)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request)
            line = sock.recv(64)
    except OSError:
        return None
    parts = line.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def _exceptions(lines):
    """The exception line ending each traceback in ``lines``."""
    found = []
    for index, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            cause = next((text for text in lines[index + 1 :] if text and not text.startswith(" ")), "")
            found.append("traceback: " + cause[:200])
    return found


def _traceback_context(proxies, limit=3):
    """The log line before each of the first tracebacks, and the traceback's last line."""
    found = []
    for proxy in proxies:
        lines = proxy.log_lines()
        for index, line in enumerate(lines):
            if line.startswith("Traceback (most recent call last)") and len(found) < limit:
                cause = next((text for text in lines[index + 1 :] if text and not text.startswith(" ")), "")
                found.append("%s: %s | %s" % (proxy.name, lines[index - 1][:160] if index else "", cause[:160]))
    return found


# --- phase 3: upstream faults ---------------------------------------------------------


@dataclass(frozen=True)
class FaultCase:
    """A fault on a route, and the answer it must give: ``statuses`` accepted, within
    ``seconds``; ``body`` "json" (an error body), "cut" (a relayed body cut short),
    "whole" (a relayed body, whole) or "event" (a stream ended by an error event);
    ``lines``: the log lines it may cause (warning level)."""

    route: str  # "model" (whole answer), "stream" (SSE), "amp" (an Amp route)
    mode: str
    statuses: tuple
    seconds: float
    body: str
    lines: tuple = (1, 1)


FAULTS = (
    FaultCase("model", "refuse", (502,), QUICK, "json"),
    FaultCase("model", "hang-head", (504,), BY_TIMEOUT, "json"),
    FaultCase("model", "hang-body", (504, 502), BY_TIMEOUT, "json"),
    FaultCase("model", "close-mid", (502,), QUICK, "json"),
    FaultCase("model", "garbage", (502,), QUICK, "json"),
    FaultCase("stream", "hang-body", (200,), BY_TIMEOUT, "event"),
    FaultCase("stream", "close-mid", (200,), QUICK, "event"),
    FaultCase("amp", "refuse", (502,), QUICK, "json"),
    FaultCase("amp", "hang-head", (504,), BY_TIMEOUT, "json"),
    FaultCase("amp", "hang-body", (200,), BY_TIMEOUT, "cut"),
    FaultCase("amp", "close-mid", (200,), QUICK, "cut"),
    FaultCase("amp", "garbage", (502,), QUICK, "json"),
    # The bombs last: one that blocks the proxy must not spoil the checks after it.
    FaultCase("amp", "gzip-bomb", (200,), BOMB_SECONDS, "whole", (0, 1)),
    FaultCase("model", "gzip-bomb", (502,), QUICK + 2, "json"),
    FaultCase("stream", "gzip-bomb", (200, 502), QUICK + 2, "event"),
)


def _fault_documents(server_url, closed_url):
    entries = [
        {"api-key": "sk-ant-fault", "base-url": server_url,
         "models": [{"name": "fault-" + mode} for mode in faults.MODES if mode != "refuse"]},
        {"api-key": "sk-ant-refuse", "base-url": closed_url, "models": [{"name": "fault-refuse"}]},
    ]
    document = {"api-keys": [h.CLIENT_KEY], "claude-api-key": entries, "request-retry": 0,
                "ampcode": {"upstream-url": server_url, "upstream-api-key": h.UPSTREAM_KEY},
                "limits": dict(FAULT_LIMITS)}
    refusing = dict(document, ampcode={"upstream-url": closed_url, "upstream-api-key": h.UPSTREAM_KEY})
    return document, refusing


def upstream_faults(args, workdir, checks):
    _progress("faults: building a gzip bomb (%d MiB inflated)" % (faults.BOMB_BYTES >> 20))
    with faults.FaultServer(faults.gzip_bomb()) as server:
        closed_url = "http://127.0.0.1:%d" % free_port()
        document, refusing = _fault_documents(server.url, closed_url)
        proxy = start_proxy("faults", args.proxy, workdir, document, log_level="warning", memory_limit=FAULT_MEMORY)
        refuser = start_proxy("faults-refuse", args.proxy, workdir, refusing, log_level="warning",
                              memory_limit=FAULT_MEMORY)
        try:
            for case in FAULTS:
                target = refuser if (case.route, case.mode) == ("amp", "refuse") else proxy
                checks.append(_fault_check(case, target))
        finally:
            proxy.stop()
            refuser.stop()


def _fault_check(case, proxy):
    if case.route == "amp":
        request = faults.amp_request(case.mode)
    else:
        request = faults.model_request(case.mode, case.route == "stream")
    wait_for(lambda: healthz(proxy.port, PROMPT)[0] == 200, SETTLE_SECONDS)  # the last check is over
    offset = proxy.log_offset()
    peak_reset = proxy.reset_peak()
    rss0 = proxy.memory_mb()
    with faults.Prober(proxy.port) as prober:
        result = faults.fetch(proxy.port, request, max(case.seconds, BY_TIMEOUT) + 5)
    time.sleep(0.3)  # a line logged as the connection closes
    lines = proxy.log_lines(offset)
    entries, tracebacks = log_summary(lines)
    grown = proxy.memory_mb("VmHWM" if peak_reset else "VmRSS") - rss0
    problems = _fault_problems(case, result, entries, tracebacks, grown) + _exceptions(lines)
    if prober.worst > PROMPT:
        problems.append("/healthz waited %.1f s meanwhile: the proxy stalled" % prober.worst)
    measured = "%s in %.1f s; %d line%s%s" % (faults.describe(result), result.seconds, len(entries),
                                              "" if len(entries) == 1 else "s",
                                              ", %d traceback" % len(tracebacks) if tracebacks else "")
    if case.mode == "gzip-bomb":
        measured += "; RSS +%.0f MB" % grown
    if prober.worst > PROMPT or case.mode == "gzip-bomb":
        measured += "; /healthz %.1f s" % prober.worst
    expected = "%s %s <= %.1f s; %s line" % (
        "/".join(str(s) for s in case.statuses), _BODY_WORDS[case.body], case.seconds,
        "-".join(str(n) for n in sorted(set(case.lines))))
    return Check("fault: %s %s" % (case.route, case.mode), measured, expected, not problems,
                 problems + [line[:240] for line in entries[:3]])


_BODY_WORDS = {"json": "JSON", "cut": "then cut", "whole": "whole", "event": "+ error event"}


def _fault_problems(case, result, entries, tracebacks, grown):
    problems = []
    if result.status not in case.statuses:
        problems.append("status %s, expected %s" % (result.status, case.statuses))
    if result.seconds > case.seconds:
        problems.append("took %.1f s, expected <= %.1f s" % (result.seconds, case.seconds))
    if case.body == "json" and not result.content_type.startswith("application/json"):
        problems.append("no JSON error body (%r)" % result.content_type)
    if case.body == "cut" and result.complete:
        problems.append("the body looked whole: a client cannot tell it was cut")
    if case.body == "whole" and not result.complete:
        problems.append("the body was cut after %d bytes" % result.received)
    if case.body == "event" and result.status == 200 and not result.error_event:
        problems.append("the stream ended without an error event")
    if not case.lines[0] <= len(entries) <= case.lines[-1]:
        problems.append("%d log lines, expected %s" % (len(entries), "-".join(map(str, sorted(set(case.lines))))))
    if tracebacks:
        problems.append("%d tracebacks in the log" % len(tracebacks))
    if case.mode == "gzip-bomb" and grown > BOMB_RSS_MB:
        problems.append("RSS grew by %.0f MB (bound %.0f MB)" % (grown, BOMB_RSS_MB))
    return problems


# --- phase 4: slowloris -------------------------------------------------------------------


def slowloris(args, workdir, checks):
    with FakeWebSocketEcho(default=h.answer_well) as upstream:
        document = h.online_document(upstream.url, limits={"drain-timeout": 2})
        proxy = start_proxy("slowloris", args.proxy, workdir, document, descriptor_limit=SLOW_DESCRIPTORS)
        try:
            _slowloris(proxy, checks)
        finally:
            proxy.stop()


def _slowloris(proxy, checks):
    start = proxy.descriptors()
    offset = proxy.log_offset()
    _progress("slowloris: %d slow clients for %.0f s" % (SLOW_CLIENTS, SLOW_SECONDS))
    result = asyncio.run(load.slowloris(proxy.port, SLOW_CLIENTS, SLOW_SECONDS, proxy.descriptors,
                                        before_release=proxy.log_offset))
    # The lines of the attack, not those of the release (one per request cut short).
    entries, tracebacks = log_summary(proxy.log_lines(offset)[: _line_count(proxy, offset, result.at_end)])
    wait_for(lambda: proxy.descriptors() <= start + 2, SETTLE_SECONDS)
    end = proxy.descriptors()
    status_after, _ = healthz(proxy.port)
    answered = sorted(result.answered)
    prompt = [p for p in answered if p < PROMPT]
    measured = "%d/%d answered, %d prompt; p50 %s, max %s" % (
        len(answered), len(result.probes), len(prompt), _ms(_median(answered)), _ms(answered[-1] if answered else None))
    checks.add("slowloris: /healthz under %d, %d fds" % (SLOW_CLIENTS, SLOW_DESCRIPTORS),
               measured, "all, each < %.0f s" % PROMPT, result.probes and len(prompt) == len(result.probes),
               ["%d connected, %d failed to connect, %d cut by the proxy; proxy descriptors peak %d"
                % (result.opened, result.refused, result.cut, max(result.samples or [0]))])
    warnings = [line for line in entries if " WARNING " in line or " ERROR " in line]
    checks.add("slowloris: log during the attack", "%d warnings, %d tracebacks" % (len(warnings), len(tracebacks)),
               "<= %d warnings, no traceback" % SLOW_LOG_LINES, len(warnings) <= SLOW_LOG_LINES and not tracebacks,
               [line[:240] for line in warnings[:3]])
    checks.add("slowloris: descriptors released; /healthz",
               "%d -> %d -> %d; %s" % (start, max(result.samples or [start]), end, status_after),
               "<= start + 2; 200", end <= start + 2 and status_after == 200)


def _line_count(proxy, start, end):
    """How many log lines lie between byte offsets ``start`` and ``end``."""
    with open(proxy.log_path, "rb") as handle:
        handle.seek(start)
        return handle.read(end - start).count(b"\n")


def _median(values):
    return values[len(values) // 2] if values else None


def _ms(seconds):
    return "-" if seconds is None else ("%.0f ms" % (seconds * 1000) if seconds < 10 else "%.0f s" % seconds)


# --- phase 5: concurrent SSE streams --------------------------------------------------------


def sse(args, workdir, checks):
    pieces = ["e%d" % i for i in range(SSE_EVENTS)]
    with FakeUpstream() as upstream:
        upstream.route("POST", "/v1/messages", SSEReply(h.anthropic_stream(SSE_MODEL, pieces), delay=SSE_DELAY))
        document = {"api-keys": [h.CLIENT_KEY], "limits": {"drain-timeout": 2},
                    "claude-api-key": [{"api-key": "sk-ant-sse", "base-url": upstream.url,
                                        "models": [{"name": SSE_MODEL}]}]}
        proxy = start_proxy("sse", args.proxy, workdir, document, log_level="warning",
                            descriptor_limit=descriptor_ceiling(SSE_DESCRIPTORS))
        try:
            _sse(proxy, checks)
        finally:
            proxy.stop()


def _sse(proxy, checks):
    # Two rounds: the first, from a fresh process, shows what 1,000 streams cost at their
    # peak; after the second, memory kept beyond the first's is what streams leak (the
    # allocator keeps its working size, which says nothing about leaks).
    fresh_fd, fresh = proxy.descriptors(), proxy.memory_mb()
    proxy.reset_peak()
    _progress("sse: %d concurrent streams of %d events, twice" % (SSE_STREAMS, SSE_EVENTS))
    first = _sse_round(proxy)
    first_peak = proxy.memory_mb("VmHWM")
    wait_for(lambda: proxy.descriptors() <= fresh_fd + SSE_DESCRIPTOR_SLACK, SETTLE_SECONDS)
    time.sleep(1.0)
    start_fd, before = proxy.descriptors(), proxy.memory_mb()
    offset = proxy.log_offset()
    second = _sse_round(proxy)
    wait_for(lambda: proxy.descriptors() <= start_fd + SSE_DESCRIPTOR_SLACK, SETTLE_SECONDS)
    time.sleep(1.0)
    end_fd, after = proxy.descriptors(), proxy.memory_mb()
    entries, tracebacks = log_summary(proxy.log_lines(offset))
    for name, result in (("first", first), ("second", second)):
        firsts = sorted(result.first_byte)
        checks.add("sse: %d streams, in order (%s round)" % (SSE_STREAMS, name),
                   "%d/%d; %d open at once; first event p50 %s, max %s; %.0f s" % (
                       result.in_order, result.streams, result.peak_open, _ms(_median(firsts)),
                       _ms(firsts[-1] if firsts else None), result.seconds),
                   "%d/%d, >= %d at once" % (SSE_STREAMS, SSE_STREAMS, SSE_STREAMS * 9 // 10),
                   result.in_order == SSE_STREAMS and result.peak_open >= SSE_STREAMS * 9 // 10,
                   ["%d x %s" % (n, text) for text, n in collections.Counter(result.failures).most_common(5)])
    checks.add("sse: RSS start->peak; round 2 ->after",
               "%.0f -> %.0f MB; %.0f -> %.0f MB" % (fresh, first_peak, before, after),
               "peak <= +%.0f MB; after <= +%.0f MB" % (SSE_PEAK_SLACK_MB, SSE_AFTER_SLACK_MB),
               first_peak <= fresh + SSE_PEAK_SLACK_MB and after <= before + SSE_AFTER_SLACK_MB,
               ["proxy descriptors peak %d" % max(first.samples or [0])])
    checks.add("sse: descriptors, log (second round)",
               "%d -> %d; %d lines, %d tracebacks" % (start_fd, end_fd, len(entries), len(tracebacks)),
               "<= +%d; no traceback" % SSE_DESCRIPTOR_SLACK,
               end_fd <= start_fd + SSE_DESCRIPTOR_SLACK and not tracebacks, [line[:240] for line in entries[:3]])


def _sse_round(proxy):
    return asyncio.run(load.sse_streams(proxy.port, SSE_STREAMS, SSE_EVENTS, SSE_MODEL, SSE_BOUND,
                                        proxy.descriptors))


# --- the table --------------------------------------------------------------------------

WIDTHS = (42, 62, 34)


def _cell(text, width):
    return text if len(text) <= width else text[: width - 1] + "~"


def table(checks):
    header = ("check", "measured", "expected")
    rule = "-+-".join("-" * w for w in WIDTHS) + "-+-----"
    lines = [" | ".join(_cell(t, w).ljust(w) for t, w in zip(header, WIDTHS)) + " | ", rule]
    for check in checks:
        cells = (check.what, check.measured, check.expected)
        mark = "PASS" if check.ok else "MISS"
        lines.append(" | ".join(_cell(t, w).ljust(w) for t, w in zip(cells, WIDTHS)) + " | " + mark)
    return "\n".join(lines)


NOTES = (
    "Every fault row also expects no traceback, RSS at most +%.0f MB for a bomb, and /healthz"
    " answering within %.0f s meanwhile." % (BOMB_RSS_MB, PROMPT),
)


def details(checks):
    lines = []
    for check in checks:
        if check.ok:
            continue
        lines.append("MISS %s: %s (expected %s)" % (check.what, check.measured, check.expected))
        if check.pending:
            lines.append("    depends on: " + check.pending)
        lines.extend("    " + line for line in check.details if line)
    return "\n".join(lines)


# --- running it -----------------------------------------------------------------------------

RUNNERS = {"smuggling": smuggling, "fuzz": fuzz, "faults": upstream_faults, "slowloris": slowloris, "sse": sse}


def build_pyz(pyz):
    """Build dist/cliproxy.pyz when the job runs without ``make hostile`` before it."""
    if os.path.exists(pyz) or pyz != DEFAULT_PYZ:
        return
    subprocess.run([sys.executable, os.path.join(ROOT, "build_zipapp.py"), "-o", pyz], check=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(description="hostile probe of the built cliproxy zipapp")
    parser.add_argument("--proxy", default=DEFAULT_PYZ, help="the zipapp to probe (default dist/cliproxy.pyz)")
    parser.add_argument("--cases", type=int, default=FUZZ_CASES, help="fuzz requests (default 100,000)")
    parser.add_argument("--seed", type=int, default=h.DEFAULT_SEED, help="fuzz seed")
    parser.add_argument("--only", default=",".join(PHASES), help="phases to run, comma-separated: " + ",".join(PHASES))
    parser.add_argument("--case", type=int, default=None, help="print fuzz case N of --seed and exit")
    parser.add_argument("--out", default=DEFAULT_OUT, help="directory for hostile.json")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a check misses")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.case is not None:
        case = h.fuzz_case(args.seed, args.case)
        print("case %d of seed %d: %s %s, sent from %s%s" % (case.index, args.seed, case.family,
              ",".join(case.mutations) or "unmutated", case.source, ", then EOF" if case.half_close else ""))
        print(repr(case.data))
        return 0
    phases = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        print("hostile: unknown phase %s (phases: %s)" % (", ".join(unknown), ", ".join(PHASES)), file=sys.stderr)
        return 2
    build_pyz(args.proxy)
    raise_own_descriptor_limit(4 * SSE_DESCRIPTORS)
    workdir = tempfile.mkdtemp(prefix="cliproxy-hostile-")
    checks = Checks()
    try:
        for phase in PHASES:
            if phase in phases:
                started = time.monotonic()
                _progress("%s ..." % phase)
                RUNNERS[phase](args, workdir, checks)
                _progress("%s done in %.0f s" % (phase, time.monotonic() - started))
    except HarnessError as exc:
        print("hostile: cannot run: %s" % exc, file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(table(checks))
    print("\n".join(NOTES))
    missed = details(checks)
    if missed:
        print("\n" + missed)
    print("\n%d checks, %d PASS, %d MISS" % (len(checks), sum(c.ok for c in checks), sum(not c.ok for c in checks)))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "hostile.json"), "w", encoding="utf-8") as handle:
        json.dump({"seed": args.seed, "cases": args.cases, "checks": [asdict(c) for c in checks]}, handle, indent=2)
    return 1 if args.strict and any(not c.ok for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
