#!/usr/bin/env python3
"""Benchmark: wrk -> nginx straight, and wrk -> cliproxy -> nginx, side by side in one run.

Strategy: nginx (one worker, canned answers) is the upstream and wrk (one thread, a Lua
script for the POST) the load generator, both native code so that on a 2-core machine the
proxy is the bottleneck being measured and not the harness. Every scenario runs straight
to nginx, then through cliproxy serving a locally configured Anthropic model (the body is
parsed for the model, the credentials are swapped), then through the calibration programs
below, one after the other, in ``--rounds`` rounds. For each proxied run the proxy's CPU
time (utime + stime from /proc/<pid>/stat) is read before and after and divided by the
requests wrk completed; its memory is read from /proc/<pid>/status (VmRSS now, VmHWM the
peak). A 1 GB body is then streamed through an Amp management route with http.client
while the proxy's RSS is sampled every 100 MB.

Trickle streams (bench/trickle.py) come next: an upstream of its own writes one SSE event
per write and a Python load generator, a separate process, reads them and times each
event from the upstream's write to its own read. Phase a: 100 streams, an event every 50
ms, for the proxy's CPU per relayed event (same protocol, and translated from OpenAI
Chat). Phase b: 1,000 streams, an event every 250 ms, for 30 s: every event in order, the
p99 added latency, the proxy's RSS at the peak and after. A direct run (load generator
straight to the upstream) shows what the two harness programs add on their own.

The calibration programs (unless ``--no-calibration``) are four Python programs of this
folder, run beside cliproxy through the c=32, SSE, 60 KB and trickle scenarios and
measured right after it in each round, so that the machine's drift over a run hits every
row alike: ``pump.py`` (a byte pump, no parsing), ``lean.py`` (only the work the targets
describe), ``lean.py --strict`` (the same with cliproxy's HTTP/1.1 parser and writer) and
``shell.py`` (the same work on cliproxy's own server and client). Their rows show what
this machine gives any Python proxy, next to cliproxy's; the issue's targets are ratios to
them, and ``shell.py``'s row splits cliproxy's distance to ``lean.py --strict`` into what
its I/O shell costs and what its application layer does on it. Last, start-up times
(bench/startup.py) on the oldest and newest CPython, once the load is over.

The numbers are printed as measured, targets marked PASS or MISS (``----`` when a row they
need was not run); a proxied scenario whose responses are not 2xx is reported as such,
with the first error body. Results also go to bench/out/results.json. Linux only (/proc);
standard library only; only 127.0.0.1.
"""

import argparse
import dataclasses
import datetime
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

try:
    import resource
except ImportError:  # not Linux: main() says the bench cannot run
    resource = None

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import startup  # noqa: E402  (bench/startup.py and bench/trickle.py, next to this file)
from procs import free_port, stop, tail, wait_listening  # noqa: E402
import trickle  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_PYZ = os.path.join(ROOT, "dist", "cliproxy.pyz")
DEFAULT_OUT = os.path.join(HERE, "out")

CLIENT_KEY = "sk-bench"
UPSTREAM_KEY = "sk-upstream"
AMP_KEY = "amp-bench"
JSON_MODEL = "claude-sonnet-4-5-20250929"
SSE_MODEL = "claude-sse-bench"
# An Anthropic client's stream served by an OpenAI-compatible provider: translated.
TRANSLATED_MODEL = "qwen-translated-bench"
PROXY_PATH = "/api/provider/anthropic/v1/messages"
BIG_PROXY_PATH = "/api/threads/big"
BIG_DIRECT_PATH = "/big"

SSE_EVENTS = 200
CHUNK = 64 * 1024
MB = 1024 * 1024
SAMPLE_EVERY = 100 * MB

# Trickle streams (bench/trickle.py). Models served from the trickling upstream, one per
# phase (the phase's timing is in the provider entry's base-url).
TRICKLE_MODEL_A = "claude-trickle-a"
TRICKLE_TRANSLATED_A = "qwen-trickle-translated-a"
TRICKLE_MODEL_B = "claude-trickle-b"
# Phase a: a stream lasts 100 events (5 s), so stream set-ups stay in the CPU window.
TRICKLE_A_STREAMS = 100
TRICKLE_A_INTERVAL_MS = 50
TRICKLE_A_DELTAS = 100
# Phase b: the streams open over 2 s (spread, and no burst of 1,000 set-ups at once).
TRICKLE_B_STREAMS = 1000
TRICKLE_B_INTERVAL_MS = 250
TRICKLE_B_RAMP_S = 2.0
# After phase b, the proxy's RSS is read this long after the last stream closed.
TRICKLE_SETTLE_S = 2.0
# 1,000 streams need about 2,000 descriptors in a proxy and 1,000 in the load generator.
NOFILE_WANTED = 8192
# Every part of the run has a name; --only selects parts by a piece of it.
STREAM_PART = "stream 1GB"
STARTUP_PART = "startup"
SCALEOUT_PART = "scaleout"
STARTUP_RUNS = 5

# The issue's targets as ratios to a calibration program of the same run.
TRICKLE_CPU_RATIO = 1.3          # cliproxy / pump.py, CPU per relayed event
TRICKLE_TRANSLATED_RATIO = 2.0   # cliproxy translated / pump.py
TRICKLE_P99_MS = 50.0
TRICKLE_PEAK_MB = 100.0
TRICKLE_AFTER_MB = 10.0          # RSS after, within this of idle
LEAN_RATIO = 1.5                 # cliproxy / lean.py --strict, CPU per request
# (what, warm figure, cold figure, limit in ms beyond a bare interpreter): startup.StartupRow.
STARTUP_TARGETS = (("--version", "version_ms", "version_cold_ms", 50.0),
                   ("check", "check_ms", "check_cold_ms", 100.0),
                   ("first /healthz", "health_ms", "health_cold_ms", 150.0))

# Reference figures of the issue (2 cores, same method), printed under the table.
REFERENCES = [
    ("nginx as a reverse proxy", "0.42-0.51x", "19 us"),
    ("Go net/http/httputil.ReverseProxy", "0.16x", "80 us"),
    ("proxy.py", "0.05x", "360 us"),
    ("LiteLLM", "0.001x", "~10 ms (385 MB RSS)"),
    ("bare 60-line asyncio relay, no parsing", "0.40x", "28 us (22 MB RSS)"),
]


@dataclasses.dataclass
class Scenario:
    name: str
    direct_path: str
    body_file: str
    connections: int
    stream: bool


@dataclasses.dataclass
class WrkResult:
    requests: int
    duration_s: float
    rps: float
    p50_us: float
    p99_us: float
    non_2xx: int
    socket_errors: int


@dataclasses.dataclass
class ProxyRun:
    wrk: WrkResult
    cpu_us_per_request: Optional[float]
    rss_mb: float


@dataclasses.dataclass
class Probe:
    """One request sent with http.client before a proxied run: does the route work?"""
    status: int
    events: int
    body_prefix: str


@dataclasses.dataclass
class ScenarioResult:
    scenario: Scenario
    direct: WrkResult
    proxy: Optional[ProxyRun]
    probe: Probe

    @property
    def ratio(self):
        if self.proxy is None or not self.direct.rps:
            return None
        return self.proxy.wrk.rps / self.direct.rps


@dataclasses.dataclass
class StreamResult:
    megabytes: int
    direct_mb_s: float
    proxy_mb_s: Optional[float]
    rss_before_mb: Optional[float]
    rss_samples_mb: List[float]
    error: Optional[str]

    @property
    def growth_mb(self):
        if not self.rss_samples_mb:
            return None
        return max(self.rss_samples_mb) - min(self.rss_samples_mb)


@dataclasses.dataclass
class Calibration:
    """A Python program of this folder run through some scenarios in place of cliproxy."""
    label: str
    program: str
    arguments: tuple
    scenarios: tuple
    what: str


CALIBRATIONS = [
    Calibration("pump.py", "pump.py", (), ("json 2KB c=32",),
                "byte pump, no parsing: the event loop and four socket calls"),
    Calibration("lean.py", "lean.py", (), ("json 2KB c=32", "sse 200ev c=8", "sse translated c=8"),
                "only what the targets describe: heads split, one json.loads, key swapped"
                " (translated: + one json.loads and one templated delta per event)"),
    Calibration("lean.py --strict", "lean.py", ("--strict",),
                ("json 2KB c=32", "sse 200ev c=8", "sse translated c=8", "json 60KB c=8"),
                "the same with cliproxy's parser and writer (SPEC section 4 checks)"),
    Calibration("shell.py", "shell.py", (), ("json 2KB c=32", "sse 200ev c=8", "json 60KB c=8"),
                "lean.py's work on cliproxy's own server and client (a task per request,"
                " the pool): the I/O shell without the application"),
]


@dataclasses.dataclass
class TricklePhase:
    """One trickle phase: its load, and the model a proxy routes to its upstream path."""
    name: str
    streams: int
    interval_ms: int
    deltas: int
    ramp_s: float
    repeat: bool
    seconds: float       # repeat: how long the load runs; else how long a stream lasts
    window_from: float   # CPU window: from this many seconds after the start to the end
    model: str
    translated_model: Optional[str]

    @property
    def base_path(self):
        return "/trickle/%d/%d" % (self.interval_ms, self.deltas)

    @property
    def upstream_path(self):
        return self.base_path + "/v1/messages"


@dataclasses.dataclass
class TrickleProgram:
    """Who a trickle load goes through: ``program`` None is cliproxy itself (or, with
    ``direct``, nobody: the load generator reads the upstream)."""
    label: str
    program: Optional[str]
    arguments: tuple
    translated: bool
    direct: bool
    what: str


TRICKLE_PROGRAMS = {
    "direct": TrickleProgram("direct", None, (), False, True,
                             "load generator straight to the upstream: what the harness adds"),
    "cliproxy": TrickleProgram("cliproxy", None, (), False, False,
                               "the product; Anthropic upstream, message_start rewritten"),
    "cliproxy translated": TrickleProgram("cliproxy translated", None, (), True, False,
                                          "the product; OpenAI Chat upstream, answered as Anthropic"),
    "cliproxy again": TrickleProgram("cliproxy again", None, (), False, False,
                                     "the same load once more, same process: is memory reused?"),
    "pump.py": TrickleProgram("pump.py", "pump.py", (), False, False, "byte pump, no parsing"),
    "lean.py --strict": TrickleProgram("lean.py --strict", "lean.py", ("--strict",), False, False,
                                       "cliproxy's HTTP parser and writer, each chunk relayed"),
    "lean.py --strict translated": TrickleProgram(
        "lean.py --strict translated", "lean.py", ("--strict",), True, False,
        "the same with the least translation: one json.loads per event"),
    "shell.py": TrickleProgram("shell.py", "shell.py", (), False, False,
                               "cliproxy's server and client, each chunk relayed by an async generator"),
}
# Which programs each phase runs, in order; cliproxy's rows run with its other scenarios,
# the calibration programs' after them (skipped with --no-calibration).
TRICKLE_RUNS = {
    "trickle a": ("cliproxy", "cliproxy translated", "pump.py", "lean.py --strict",
                  "lean.py --strict translated", "shell.py"),
    "trickle b": ("direct", "cliproxy", "cliproxy again", "pump.py"),
}


@dataclasses.dataclass
class TrickleRow:
    """One trickle load through one program; RSS readings for phase b only."""
    phase: TricklePhase
    program: TrickleProgram
    result: Optional["trickle.LoadResult"]
    error: Optional[str]
    rss_idle_mb: Optional[float] = None
    rss_after_mb: Optional[float] = None
    rss_peak_mb: Optional[float] = None

    @property
    def cpu_per_event_us(self):
        return None if self.result is None else self.result.proxy_cpu_per_event_us


@dataclasses.dataclass
class CalibrationRow:
    calibration: Calibration
    result: "ScenarioResult"


class BenchError(Exception):
    """The harness itself cannot run (missing tool, a server that does not start)."""


# ---------------------------------------------------------------------------------------
# Canned bodies, generated deterministically.

_WORDS = ("the proxy reads the model from the body swaps the credentials and relays "
          "each event as soon as it arrives so that the agent sees tokens without delay").split()


def _text(n_chars, seed):
    """Deterministic English-looking text of exactly ``n_chars`` characters."""
    words = []
    size = 0
    i = seed
    while size < n_chars:
        word = _WORDS[(i * 7 + seed) % len(_WORDS)]
        words.append(word)
        size += len(word) + 1
        i += 1
    return " ".join(words)[:n_chars]


_TOOL = {
    "name": "Read",
    "description": "Read a file from the workspace. Returns the file's content with line numbers.",
    "input_schema": {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "Absolute path of the file to read."},
            "read_range": {"type": "array", "items": {"type": "integer"},
                           "description": "Optional [start, end] line range."},
        },
        "required": ["path"],
    },
}


def request_body(model, stream, turns, text_chars):
    """An Anthropic Messages request like Amp's: system prompt, a tool, ``turns`` exchanges
    of user text / assistant tool_use / user tool_result, then a final user question."""
    messages = []
    for turn in range(turns):
        messages.append({"role": "user", "content": [
            {"type": "text", "text": _text(text_chars, turn)}]})
        tool_id = "toolu_%024d" % turn
        messages.append({"role": "assistant", "content": [
            {"type": "text", "text": _text(text_chars // 4, turn + 1)},
            {"type": "tool_use", "id": tool_id, "name": "Read",
             "input": {"path": "/work/src/module_%d.py" % turn}}]})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": tool_id,
             "content": _text(text_chars, turn + 2)}]})
    messages.append({"role": "user", "content": [
        {"type": "text", "text": "Summarise what you found.",
         "cache_control": {"type": "ephemeral"}}]})
    return {
        "model": model,
        "max_tokens": 8192,
        "stream": stream,
        "system": [{"type": "text", "text": "You are Amp, a coding agent. " + _text(600, 99),
                    "cache_control": {"type": "ephemeral"}}],
        "tools": [_TOOL],
        "messages": messages,
    }


def encode(document):
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def small_request(model, stream):
    """About 2 KB."""
    return encode(request_body(model, stream, turns=1, text_chars=200))


def large_request(model, stream):
    """About 60 KB: a long conversation, the size a real Amp turn sends."""
    return encode(request_body(model, stream, turns=30, text_chars=742))


def canned_json():
    """The ~600-byte Messages answer nginx returns (no ', $ or \\: it sits in nginx.conf)."""
    document = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
        "model": JSON_MODEL,
        "content": [{"type": "text", "text": _text(330, 5)}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 512, "output_tokens": 96,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
    }
    text = json.dumps(document, separators=(",", ":"))
    assert not set(text) & set("'$\\"), "canned JSON must not need nginx escaping"
    return text


def _sse_event(kind, data):
    return "event: %s\ndata: %s\n\n" % (kind, json.dumps(data, separators=(",", ":")))


def _chat_chunk(delta, finish=None, usage=None):
    chunk = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1767225600,
             "model": TRANSLATED_MODEL,
             "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        chunk["usage"] = usage
    return "data: %s\n\n" % json.dumps(chunk, separators=(",", ":"))


def canned_chat_sse():
    """A 200-event OpenAI Chat stream with the same text as ``canned_sse``: a role
    chunk, 196 content deltas, a finish chunk, a usage chunk and ``[DONE]``."""
    events = [_chat_chunk({"role": "assistant", "content": ""})]
    for i in range(SSE_EVENTS - 4):
        events.append(_chat_chunk({"content": _WORDS[i % len(_WORDS)] + " "}))
    events.append(_chat_chunk({}, finish="stop"))
    events.append(_chat_chunk(None, usage={"prompt_tokens": 512, "completion_tokens": SSE_EVENTS - 4,
                                           "total_tokens": 512 + SSE_EVENTS - 4}))
    events.append("data: [DONE]\n\n")
    assert len(events) == SSE_EVENTS
    return "".join(events)


def canned_sse():
    """A 200-event Anthropic stream: message_start, content_block_start, 195 deltas,
    content_block_stop, message_delta, message_stop."""
    events = [_sse_event("message_start", {"type": "message_start", "message": {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
        "model": JSON_MODEL, "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 512, "output_tokens": 1}}})]
    events.append(_sse_event("content_block_start", {
        "type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}))
    for i in range(SSE_EVENTS - 5):
        events.append(_sse_event("content_block_delta", {
            "type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": _WORDS[i % len(_WORDS)] + " "}}))
    events.append(_sse_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(_sse_event("message_delta", {
        "type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": SSE_EVENTS - 5}}))
    events.append(_sse_event("message_stop", {"type": "message_stop"}))
    assert len(events) == SSE_EVENTS
    return "".join(events)


# ---------------------------------------------------------------------------------------
# Processes.

def start_nginx(prefix, port, big_bytes):
    with open(os.path.join(HERE, "nginx.conf.tmpl"), encoding="utf-8") as handle:
        template = handle.read()
    # nginx started by root drops its worker to "nobody", which cannot read a 0700 temp dir.
    user = "user root;" if os.geteuid() == 0 else ""
    conf = (template.replace("{{USER}}", user).replace("{{PREFIX}}", prefix)
            .replace("{{PORT}}", str(port)).replace("{{JSON}}", canned_json()))
    conf_path = os.path.join(prefix, "nginx.conf")
    with open(conf_path, "w", encoding="utf-8") as handle:
        handle.write(conf)
    with open(os.path.join(prefix, "sse.txt"), "w", encoding="utf-8") as handle:
        handle.write(canned_sse())
    with open(os.path.join(prefix, "chat-sse.txt"), "w", encoding="utf-8") as handle:
        handle.write(canned_chat_sse())
    with open(os.path.join(prefix, "big.bin"), "wb") as handle:
        handle.truncate(big_bytes)  # sparse: no disk space used
    log_path = os.path.join(prefix, "nginx.stderr")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [nginx, "-p", prefix, "-e", os.path.join(prefix, "error.log"), "-c", conf_path],
            stdout=log, stderr=subprocess.STDOUT)
    wait_listening(port, process, "nginx", log_path, error=BenchError)
    return process


def proxy_config(proxy_port, nginx_port, trickle_port=None, phases=(), amp_upstream=None):
    """The proxy's config: nginx's models, each trickle phase's models on the trickling
    upstream, and the Amp upstream (nginx unless ``amp_upstream``: pump.py and lean.py
    connect there whatever the model)."""
    upstream = "http://127.0.0.1:%d" % nginx_port
    config = {
        "host": "127.0.0.1",
        "port": proxy_port,
        "api-keys": [CLIENT_KEY],
        "claude-api-key": [
            {"api-key": UPSTREAM_KEY, "base-url": upstream,
             "models": [{"name": JSON_MODEL}]},
            {"api-key": UPSTREAM_KEY, "base-url": upstream + "/sse",
             "models": [{"name": SSE_MODEL}]},
        ],
        "openai-compatibility": [
            {"name": "bench-openai", "base-url": upstream + "/chat-sse/v1",
             "api-key-entries": [{"api-key": UPSTREAM_KEY}],
             "models": [{"name": TRANSLATED_MODEL}]},
        ],
        "ampcode": {"upstream-url": amp_upstream or upstream, "upstream-api-key": AMP_KEY},
    }
    if trickle_port is not None:
        for phase in phases:
            base = "http://127.0.0.1:%d%s" % (trickle_port, phase.base_path)
            config["claude-api-key"].append(
                {"api-key": UPSTREAM_KEY, "base-url": base, "models": [{"name": phase.model}]})
            if phase.translated_model:
                config["openai-compatibility"].append(
                    {"name": "bench-%s" % phase.name.replace(" ", "-"), "base-url": base + "/v1",
                     "api-key-entries": [{"api-key": UPSTREAM_KEY}],
                     "models": [{"name": phase.translated_model}]})
    return config


def start_proxy(program, workdir, proxy_port, nginx_port, arguments=(), name="cliproxy", **config):
    """Start ``program`` with its own config file ``<name>.json`` (``config``: the keyword
    arguments of ``proxy_config``) and log ``<name>.log``; return (process, log path)."""
    config_path = os.path.join(workdir, name + ".json")
    with open(config_path, "w", encoding="utf-8") as handle:
        json.dump(proxy_config(proxy_port, nginx_port, **config), handle, indent=2)
    log_path = os.path.join(workdir, name + ".log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, program, "--config", config_path, "--log-level", "warning"]
            + list(arguments),
            stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    wait_listening(proxy_port, process, "cliproxy", log_path, error=BenchError)
    return process, log_path


# ---------------------------------------------------------------------------------------
# /proc readings.

_TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def cpu_us(pid):
    """utime + stime of ``pid`` (all its threads), in microseconds."""
    with open("/proc/%d/stat" % pid, "rb") as handle:
        fields = handle.read().rsplit(b")", 1)[1].split()
    # After "pid (comm)": state is field 3, utime field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) * _TICK_US


def memory_mb(pid, key):
    """VmRSS / VmHWM of ``pid`` in MiB."""
    with open("/proc/%d/status" % pid, encoding="ascii") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    raise BenchError("%s missing from /proc/%d/status" % (key, pid))


# ---------------------------------------------------------------------------------------
# wrk.

_LUA = """
local f = assert(io.open("%(body)s", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
wrk.headers["anthropic-version"] = "2023-06-01"
%(accept)s
-- Machine-readable summary for bench.py (latencies in microseconds).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH-JSON {\\"requests\\":%%d,\\"duration_us\\":%%d,\\"p50\\":%%d,\\"p99\\":%%d," ..
    "\\"status\\":%%d,\\"connect\\":%%d,\\"read\\":%%d,\\"write\\":%%d,\\"timeout\\":%%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
"""


def write_lua(workdir, scenario):
    slug = "".join(c if c.isalnum() else "-" for c in scenario.name)
    path = os.path.join(workdir, slug + ".lua")
    accept = 'wrk.headers["Accept"] = "text/event-stream"' if scenario.stream else ""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(_LUA % {"body": scenario.body_file, "key": CLIENT_KEY, "accept": accept})
    return path


def run_wrk(url, script, connections, seconds):
    """One wrk run; raises BenchError when wrk fails or prints no summary."""
    command = ["wrk", "-t1", "-c%d" % connections, "-d%ds" % seconds, "--latency",
               "--timeout", "10s", "-s", script, url]
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=seconds + 60)
    output = done.stdout.decode("utf-8", "replace")
    for line in output.splitlines():
        if line.startswith("BENCH-JSON "):
            data = json.loads(line[len("BENCH-JSON "):])
            duration = data["duration_us"] / 1e6
            return WrkResult(
                requests=data["requests"], duration_s=duration,
                rps=data["requests"] / duration if duration else 0.0,
                p50_us=float(data["p50"]), p99_us=float(data["p99"]),
                non_2xx=data["status"],
                socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"])
    raise BenchError("wrk printed no summary (exit %d): %s" % (done.returncode, output[-800:]))


# ---------------------------------------------------------------------------------------
# http.client checks.

def probe(port, path, body, stream):
    """Send the scenario's request once; status, SSE event count, start of the body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": "application/json", "Authorization": "Bearer " + CLIENT_KEY,
                   "anthropic-version": "2023-06-01"}
        if stream:
            headers["Accept"] = "text/event-stream"
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException) as exc:
        return Probe(status=0, events=0, body_prefix="%s: %s" % (type(exc).__name__, exc))
    finally:
        connection.close()
    events = data.count(b"\n\n") if stream else 0
    return Probe(status=response.status, events=events,
                 body_prefix=data[:400].decode("utf-8", "replace"))


def stream_big(port, path, total, pid=None):
    """GET ``path`` in 64 KiB reads; (MB/s, RSS samples of ``pid`` every 100 MB)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    samples = []
    try:
        connection.request("GET", path, headers={"Authorization": "Bearer " + CLIENT_KEY})
        response = connection.getresponse()
        if response.status != 200:
            raise BenchError("GET %s answered %d: %s" % (
                path, response.status, response.read(400).decode("utf-8", "replace")))
        received = 0
        next_sample = SAMPLE_EVERY
        started = time.monotonic()
        # Bounded: at most total / CHUNK reads plus the short reads of the socket.
        while received < total:
            chunk = response.read1(CHUNK) if hasattr(response, "read1") else response.read(CHUNK)
            if not chunk:
                break
            received += len(chunk)
            if pid is not None and received >= next_sample:
                samples.append(memory_mb(pid, "VmRSS"))
                next_sample += SAMPLE_EVERY
        elapsed = time.monotonic() - started
    finally:
        connection.close()
    if received != total:
        raise BenchError("GET %s ended after %d of %d bytes" % (path, received, total))
    return received / MB / elapsed, samples


# ---------------------------------------------------------------------------------------
# The run.

def build_pyz(pyz):
    """Build dist/cliproxy.pyz when the bench runs without ``make bench`` before it."""
    if os.path.exists(pyz) or pyz != DEFAULT_PYZ:
        return
    subprocess.run([sys.executable, os.path.join(ROOT, "build_zipapp.py"), "-o", pyz],
                   check=True, timeout=120)


def scenarios(workdir):
    """The four scenarios; their bodies are written into ``workdir``."""
    bodies = {
        "json-2k": small_request(JSON_MODEL, False),
        "sse-2k": small_request(SSE_MODEL, True),
        "translated-2k": small_request(TRANSLATED_MODEL, True),
        "json-60k": large_request(JSON_MODEL, False),
    }
    files = {}
    for name, data in bodies.items():
        files[name] = os.path.join(workdir, name + ".json")
        with open(files[name], "wb") as handle:
            handle.write(data)
    return [
        Scenario("json 2KB c=1", "/v1/messages", files["json-2k"], 1, False),
        Scenario("json 2KB c=32", "/v1/messages", files["json-2k"], 32, False),
        Scenario("sse 200ev c=8", "/sse/v1/messages", files["sse-2k"], 8, True),
        Scenario("sse translated c=8", "/chat-sse/v1/chat/completions", files["translated-2k"], 8, True),
        Scenario("json 60KB c=8", "/v1/messages", files["json-60k"], 8, False),
    ]


@dataclasses.dataclass
class Program:
    """A running program measured through a scenario: cliproxy or a calibration."""
    label: str
    port: int
    pid: int


def run_scenario(scenario, nginx_port, programs, args, workdir):
    """Direct, then each of ``programs`` in turn, ``args.rounds`` times: every row of a
    scenario is measured within a minute of the others, so that the machine's drift over
    the minutes of a run (on a shared VM it moves every figure by 10-40%) hits them alike
    and their ratios hold. The median run of each is kept; a program's CPU per request
    is its CPU over all its measured runs / all their requests. Returns {label:
    ScenarioResult}, each with the same direct run."""
    script = write_lua(workdir, scenario)
    with open(scenario.body_file, "rb") as handle:
        body = handle.read()
    direct_url = "http://127.0.0.1:%d%s" % (nginx_port, scenario.direct_path)
    straight = probe(nginx_port, scenario.direct_path, body, scenario.stream)
    if straight.status != 200 or (scenario.stream and straight.events != SSE_EVENTS):
        raise BenchError("nginx answered %s %d with %d events: %s" % (
            scenario.direct_path, straight.status, straight.events, straight.body_prefix))
    checked = {program.label: probe(program.port, PROXY_PATH, body, scenario.stream)
               for program in programs}
    print("[bench] %-15s (probe: %s) %d round(s) of %d x %d s ..."
          % (scenario.name, ", ".join("%s HTTP %d" % (label, check.status)
                                      for label, check in checked.items()),
             args.rounds, 1 + len(programs), args.warmup + args.duration), flush=True)
    directs = []
    runs = {program.label: [] for program in programs}
    spent = dict.fromkeys(runs, 0.0)
    for _ in range(args.rounds):
        if args.warmup:
            run_wrk(direct_url, script, scenario.connections, args.warmup)
        directs.append(run_wrk(direct_url, script, scenario.connections, args.duration))
        for program in programs:
            url = "http://127.0.0.1:%d%s" % (program.port, PROXY_PATH)
            if args.warmup:
                run_wrk(url, script, scenario.connections, args.warmup)
            before = cpu_us(program.pid)
            runs[program.label].append(run_wrk(url, script, scenario.connections, args.duration))
            spent[program.label] += cpu_us(program.pid) - before
    direct = _median(directs)
    results = {}
    for program in programs:
        requests = sum(run.requests for run in runs[program.label])
        run = ProxyRun(wrk=_median(runs[program.label]),
                       cpu_us_per_request=spent[program.label] / requests if requests else None,
                       rss_mb=memory_mb(program.pid, "VmRSS"))
        results[program.label] = ScenarioResult(scenario=scenario, direct=direct, proxy=run,
                                                probe=checked[program.label])
    return results


def start_calibrations(calibrations, workdir, nginx_port, processes, name, **config):
    """Start each program of ``calibrations`` (one process per program and arguments) on
    a port of its own; return {label: Program}. ``processes`` ((program, arguments) ->
    (port, process)) collects what was started, for the caller to stop."""
    programs = {}
    for calibration in calibrations:
        key = (calibration.program, calibration.arguments)
        if key not in processes:
            port = free_port()
            process, _ = start_proxy(os.path.join(HERE, calibration.program), workdir, port,
                                     nginx_port, calibration.arguments,
                                     name="%s-%d" % (name, len(processes)), **config)
            processes[key] = (port, process)
        port, process = processes[key]
        programs[calibration.label] = Program(calibration.label, port, process.pid)
    return programs


def stop_all(processes):
    """Stop what ``start_calibrations`` started."""
    for _, process in processes.values():
        stop(process)


# ---------------------------------------------------------------------------------------
# Trickle streams (bench/trickle.py).

def trickle_phases(args):
    """Phase a and phase b as ``args`` sizes them (--duration, --warmup, --trickle-seconds)."""
    warmup = max(args.warmup, 1)
    deltas_b = max(1, int(args.trickle_seconds * 1000 / TRICKLE_B_INTERVAL_MS))
    return [
        TricklePhase("trickle a", TRICKLE_A_STREAMS, TRICKLE_A_INTERVAL_MS, TRICKLE_A_DELTAS,
                     ramp_s=TRICKLE_A_INTERVAL_MS / 1000.0, repeat=True,
                     seconds=warmup + args.duration, window_from=warmup,
                     model=TRICKLE_MODEL_A, translated_model=TRICKLE_TRANSLATED_A),
        TricklePhase("trickle b", TRICKLE_B_STREAMS, TRICKLE_B_INTERVAL_MS, deltas_b,
                     ramp_s=TRICKLE_B_RAMP_S, repeat=False,
                     seconds=deltas_b * TRICKLE_B_INTERVAL_MS / 1000.0, window_from=0.0,
                     model=TRICKLE_MODEL_B, translated_model=None),
    ]


def start_trickle_upstream(workdir, port):
    log_path = os.path.join(workdir, "trickle-upstream.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, trickle.__file__, "upstream", "--port", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    wait_listening(port, process, "the trickle upstream", log_path, error=BenchError)
    return process


def run_trickle(phase, program, port, pid, upstream_pid):
    """One load run of ``phase`` through ``program`` listening on ``port`` (process
    ``pid``); phase b also reads the program's RSS before, at the peak and after."""
    print("[bench] %-9s %-27s %d streams, an event every %d ms ..."
          % (phase.name, program.label, phase.streams, phase.interval_ms), flush=True)
    model = phase.translated_model if program.translated else phase.model
    # pump.py copies bytes: it gets the upstream's own path (it rewrites only cliproxy's).
    raw = program.direct or program.program == "pump.py"
    path = phase.upstream_path if raw else PROXY_PATH
    watched = None if program.direct else pid
    try:
        idle = memory_mb(watched, "VmRSS") if watched and not phase.repeat else None
    except OSError:
        return TrickleRow(phase, program, None, "%s is not running" % program.label)
    command = [sys.executable] + trickle.load_command(
        port, path, model, phase.streams, phase.deltas, phase.seconds, phase.ramp_s,
        repeat=phase.repeat, window_from=phase.window_from, watch_pid=watched,
        upstream_pid=upstream_pid)
    limit = phase.ramp_s + phase.seconds + trickle.GRACE_S + 60
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=limit)
    except subprocess.TimeoutExpired:
        return TrickleRow(phase, program, None, "the load generator ran past %.0f s" % limit)
    output = done.stdout.decode("utf-8", "replace")
    result = trickle.parse_result(output)
    if result is None:
        return TrickleRow(phase, program, None, "no result (exit %d): %s"
                          % (done.returncode, output[-600:].strip()))
    row = TrickleRow(phase, program, result, None, rss_idle_mb=idle)
    if idle is not None:
        time.sleep(TRICKLE_SETTLE_S)
        try:
            row.rss_after_mb = memory_mb(watched, "VmRSS")
            row.rss_peak_mb = memory_mb(watched, "VmHWM")
        except OSError:
            row.error = "%s exited during the run" % program.label
    return row


def run_trickle_phases(phases, cliproxy, trickle_port, upstream_pid, workdir, nginx_port,
                       calibrate, rounds):
    """Every row of the chosen phases in ``TRICKLE_RUNS`` order, cliproxy's (``cliproxy``:
    its Program) next to the calibration programs' (unless not ``calibrate``), so that
    the rows of a phase are measured minutes apart at most; phase a's, whose CPU figures
    are compared, ``rounds`` times over, each row keeping its median run. The
    calibration programs are started fresh for each phase (each phase b row's memory is
    its own) and connect to the trickling upstream."""
    rows = []
    for phase in phases:
        labels = [label for label in TRICKLE_RUNS[phase.name]
                  if calibrate or TRICKLE_PROGRAMS[label].program is None]
        calibrations = [TRICKLE_PROGRAMS[label] for label in labels
                        if TRICKLE_PROGRAMS[label].program is not None]
        started = {}
        try:
            targets = start_calibrations(calibrations, workdir, nginx_port, started,
                                         "calibration-trickle", trickle_port=trickle_port,
                                         phases=phases,
                                         amp_upstream="http://127.0.0.1:%d" % trickle_port)
            for label in labels:
                if TRICKLE_PROGRAMS[label].direct:  # the load generator reads the upstream
                    targets[label] = Program(label, trickle_port, cliproxy.pid)
                elif TRICKLE_PROGRAMS[label].program is None:
                    targets[label] = cliproxy
            runs = {label: [] for label in labels}
            for _ in range(rounds if phase.repeat else 1):
                for label in labels:
                    runs[label].append(run_trickle(phase, TRICKLE_PROGRAMS[label], targets[label].port,
                                                   targets[label].pid, upstream_pid))
            rows += [_median_trickle(runs[label]) for label in labels]
        finally:
            stop_all(started)
    return rows


def _median_trickle(rows):
    """The run of median CPU per event among ``rows`` (one program's rounds), or the
    first that could not be judged."""
    for row in rows:
        if _trickle_problem(row) or not row.cpu_per_event_us:
            return row
    return sorted(rows, key=lambda row: row.cpu_per_event_us)[(len(rows) - 1) // 2]


def calibration_table(results, rows):
    """cliproxy's rows next to the calibration programs' rows of the same run, then what
    the least translation costs next to cliproxy's same-protocol stream."""
    lines = ["%-17s %-18s %7s %10s  %s" % ("program", "scenario", "ratio", "CPU us/req", "")]
    for r in results:
        if any(r.scenario.name == row.result.scenario.name for row in rows):
            lines.append(_calibration_line("cliproxy", r, "the product"))
    for row in rows:
        lines.append(_calibration_line(row.calibration.label, row.result, row.calibration.what))
    floor = translation_floor(results, rows)
    if floor is not None:
        lines.append("")
        lines.append("translation floor: lean.py's translated stream costs %.0f us, %.2fx cliproxy's "
                     "same-protocol stream (%.0f us); cliproxy's translated stream is %.2fx lean.py's"
                     % floor)
    return "\n".join(lines)


def translation_floor(results, rows):
    """(lean translated CPU, its ratio to cliproxy's same-protocol SSE CPU, that CPU,
    cliproxy translated / lean translated), or None when a row is missing."""
    by_name = {r.scenario.name: r for r in results}
    lean = [row.result for row in rows
            if row.calibration.label == "lean.py" and row.result.scenario.name == "sse translated c=8"]
    same, translated = by_name.get("sse 200ev c=8"), by_name.get("sse translated c=8")
    if not lean or same is None or translated is None:
        return None
    cpus = (lean[0].proxy.cpu_us_per_request, same.proxy.cpu_us_per_request,
            translated.proxy.cpu_us_per_request)
    if not all(cpus):
        return None
    return cpus[0], cpus[0] / cpus[1], cpus[1], cpus[2] / cpus[0]


def distance_lines(results, rows, trickle_rows):
    """Where cliproxy's distance to ``lean.py --strict`` lies, per scenario and for trickle
    phase a: from ``lean.py --strict`` to ``shell.py`` (the same work on cliproxy's I/O
    shell) and from there to cliproxy (its application layer). Empty when rows are
    missing."""
    cpu = {}
    for row in rows:
        cpu[row.calibration.label, row.result.scenario.name] = row.result.proxy.cpu_us_per_request
    for r in results:
        cpu["cliproxy", r.scenario.name] = r.proxy.cpu_us_per_request
    steps = [(name, [cpu.get((label, name)) for label in DISTANCE_STEPS], "us/request")
             for name in ("json 2KB c=32", "sse 200ev c=8", "json 60KB c=8")]
    steps.append(("trickle a", [_trickle_cpu(trickle_rows, label) for label in DISTANCE_STEPS],
                  "us/event"))
    lines = []
    for name, (lean, shell, ours), unit in steps:
        if lean and shell and ours:
            lines.append("  %-14s lean.py --strict %.1f -> shell.py %.1f (%.2fx: the I/O shell) -> "
                         "cliproxy %.1f (%.2fx: the application); %.2fx in all, %s"
                         % (name, lean, shell, shell / lean, ours, ours / shell, ours / lean, unit))
    return lines


DISTANCE_STEPS = ("lean.py --strict", "shell.py", "cliproxy")


def _trickle_cpu(rows, label):
    row = _trickle_row(rows or [], "trickle a", label)
    if row is None or _trickle_problem(row):
        return None
    return row.cpu_per_event_us


def _calibration_line(program, result, what):
    cpu = result.proxy.cpu_us_per_request
    return "%-17s %-18s %7s %10s  %s" % (
        program, result.scenario.name, _ratio_text(result),
        "n/a" if cpu is None else "%.0f" % cpu, what)


def _median(runs):
    """The run with the median requests/s (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda run: run.rps)
    return ordered[(len(ordered) - 1) // 2]


def run_stream(nginx_port, proxy_port, proxy_pid, megabytes):
    total = megabytes * MB
    # The first read of the sparse file fills the page cache; do it off the clock so that
    # neither measured transfer pays for it.
    stream_big(nginx_port, BIG_DIRECT_PATH, total)
    direct_rate, _ = stream_big(nginx_port, BIG_DIRECT_PATH, total)
    before = memory_mb(proxy_pid, "VmRSS")
    try:
        rate, samples = stream_big(proxy_port, BIG_PROXY_PATH, total, proxy_pid)
    except (BenchError, OSError, http.client.HTTPException) as exc:
        return StreamResult(megabytes, direct_rate, None, before, [], str(exc))
    return StreamResult(megabytes, direct_rate, rate, before, samples, None)


# ---------------------------------------------------------------------------------------
# Report.

def _ms(us):
    return "%.2f" % (us / 1000.0)


def _mark(ok):
    """PASS, MISS, or ---- for a target whose rows were not run (ok is None)."""
    return "----" if ok is None else "PASS" if ok else "MISS"


def earlier_targets(results, stream, peak_mb):
    """[(description, measured, ok)] for the targets of the issues before 13, kept as the
    history of where cliproxy stands against absolute figures."""
    by_name = {r.scenario.name: r for r in results}
    rows = []
    c32 = by_name.get("json 2KB c=32")
    if c32 is not None:
        ok = c32.ratio is not None and c32.proxy.wrk.non_2xx == 0 and c32.ratio >= 0.30
        rows.append(("throughput >= 0.30x direct at c=32", _ratio_text(c32), ok))
        cpu = c32.proxy.cpu_us_per_request if c32.proxy else None
        rows.append(("CPU <= 40 us/request at c=32",
                     "n/a" if cpu is None else "%.0f us" % cpu,
                     cpu is not None and c32.proxy.wrk.non_2xx == 0 and cpu <= 40))
    sse = by_name.get("sse 200ev c=8")
    if sse is not None:
        events_ok = sse.probe.status == 200 and sse.probe.events == SSE_EVENTS
        ok = (sse.ratio is not None and sse.proxy.wrk.non_2xx == 0 and events_ok
              and sse.ratio >= 0.25)
        measured = "%s, %d/%d events relayed" % (_ratio_text(sse), sse.probe.events, SSE_EVENTS)
        rows.append(("SSE >= 0.25x direct, event by event", measured, ok))
    translated = by_name.get("sse translated c=8")
    if sse is not None and translated is not None:
        same = sse.proxy.cpu_us_per_request
        cpu = translated.proxy.cpu_us_per_request
        ok = (same is not None and cpu is not None and translated.proxy.wrk.non_2xx == 0
              and translated.probe.status == 200 and cpu <= 2 * same)
        measured = "n/a" if not (same and cpu) else "%.0f us vs %.0f us: %.2fx" % (cpu, same, cpu / same)
        rows.append(("translated SSE CPU <= 2x same-protocol SSE", measured, ok))
    rows.append(("peak RSS <= 30 MB", "%.1f MB" % peak_mb, peak_mb <= 30))
    if stream is not None:
        growth = stream.growth_mb
        if stream.error or growth is None:
            rows.append(("memory flat while streaming %d MB" % stream.megabytes,
                         "failed: %s" % (stream.error or "no samples"), False))
        else:
            rows.append(("memory flat while streaming %d MB (growth <= 4 MB)" % stream.megabytes,
                         "%.1f MB growth" % growth, growth <= 4))
    return rows


def _ratio_text(result):
    if result.ratio is None:
        return "n/a"
    text = "%.3fx" % result.ratio
    if result.proxy.wrk.non_2xx:
        text += " (non-2xx!)"
    return text


def table(results):
    header = ("scenario", "direct req/s", "proxy req/s", "ratio", "direct p50/p99 ms",
              "proxy p50/p99 ms", "proxy CPU us/req", "proxy RSS MB", "proxy errors")
    rows = [header]
    for r in results:
        proxy = r.proxy.wrk
        errors = []
        if proxy.non_2xx:
            errors.append("%d non-2xx" % proxy.non_2xx)
        if proxy.socket_errors:
            errors.append("%d socket" % proxy.socket_errors)
        if r.probe.status != 200:
            errors.append("probe HTTP %d" % r.probe.status)
        rows.append((
            r.scenario.name,
            "%.0f" % r.direct.rps,
            "%.0f" % proxy.rps,
            "n/a" if r.ratio is None else "%.2fx" % r.ratio,
            "%s / %s" % (_ms(r.direct.p50_us), _ms(r.direct.p99_us)),
            "%s / %s" % (_ms(proxy.p50_us), _ms(proxy.p99_us)),
            "n/a" if r.proxy.cpu_us_per_request is None else "%.0f" % r.proxy.cpu_us_per_request,
            "%.1f" % r.proxy.rss_mb,
            ", ".join(errors) or "none",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _trickle_row(rows, phase, label):
    for row in rows:
        if row.phase.name == phase and row.program.label == label:
            return row
    return None


def _trickle_problem(row):
    """Why ``row`` cannot be judged (failed to run, or streams failed), or None."""
    if row.error:
        return "failed: " + row.error
    if not row.result.sound:
        return "%d streams failed (%s), %d deltas out of order" % (
            row.result.failed, "; ".join(row.result.errors) or "no detail", row.result.out_of_order)
    return None


def _trickle_cpu_target(rows, label, limit):
    description = "trickle a: %s CPU/event <= %.1fx pump.py" % (label, limit)
    mine, base = _trickle_row(rows, "trickle a", label), _trickle_row(rows, "trickle a", "pump.py")
    if mine is None or base is None:
        return description, "not run", None
    problem = _trickle_problem(mine) or _trickle_problem(base)
    if problem:
        return description, problem, False
    mine_us, base_us = mine.cpu_per_event_us, base.cpu_per_event_us
    if not mine_us or not base_us:
        return description, "no CPU figure", False
    ratio = mine_us / base_us
    return description, "%.1f vs %.1f us: %.2fx" % (mine_us, base_us, ratio), ratio <= limit


def _beside(row, text):
    """``text`` (a format of the row) for a row printed beside the product's, or why not."""
    if row is None:
        return "not run"
    if row.error:
        return "failed"
    return text(row)


def _trickle_b_targets(rows):
    mine = _trickle_row(rows, "trickle b", "cliproxy")
    again = _trickle_row(rows, "trickle b", "cliproxy again")
    pump = _trickle_row(rows, "trickle b", "pump.py")
    direct = _trickle_row(rows, "trickle b", "direct")
    names = ("trickle b: every event delivered, in order",
             "trickle b: p99 added latency <= %.0f ms" % TRICKLE_P99_MS,
             "trickle b: peak RSS <= %.0f MB" % TRICKLE_PEAK_MB,
             "trickle b: RSS after within %.0f MB of idle" % TRICKLE_AFTER_MB)
    if mine is None:
        return [(name, "not run", None) for name in names]
    if mine.error:
        return [(name, "failed: " + mine.error, False) for name in names]
    result = mine.result

    def whole(row):
        return "%d/%d streams whole, %d out of order" % (
            row.result.complete, row.result.streams, row.result.out_of_order)

    def p99(row):
        return "%.1f ms" % row.result.latency_p99_ms if row.result.latency_p99_ms is not None else "n/a"

    def peak(row):
        return "%.1f MB" % row.rss_peak_mb

    def after(row):
        return "%+.1f MB" % (row.rss_after_mb - row.rss_idle_mb)

    growth = mine.rss_after_mb - mine.rss_idle_mb
    return [
        (names[0], "%d/%d streams whole, %d deltas, %d out of order%s; pump.py %s" % (
            result.complete, result.streams, result.deltas, result.out_of_order,
            " (%s)" % "; ".join(result.errors) if result.errors else "", _beside(pump, whole)),
         result.whole),
        (names[1], "%s; pump.py %s, direct %s" % (p99(mine), _beside(pump, p99), _beside(direct, p99)),
         result.latency_p99_ms is not None and result.latency_p99_ms <= TRICKLE_P99_MS),
        (names[2], "%s; pump.py %s" % (peak(mine), _beside(pump, peak)),
         mine.rss_peak_mb <= TRICKLE_PEAK_MB),
        (names[3], "%s (idle %.1f, after %.1f MB); a second run %s; pump.py %s" % (
            after(mine), mine.rss_idle_mb, mine.rss_after_mb, _beside(again, after),
            _beside(pump, after)),
         growth <= TRICKLE_AFTER_MB),
    ]


def _lean_targets(results, calibration):
    """cliproxy's CPU per request <= LEAN_RATIO x lean.py --strict's, per scenario."""
    mine = {r.scenario.name: r for r in results}
    lean = {row.result.scenario.name: row.result for row in calibration
            if row.calibration.label == "lean.py --strict"}
    rows = []
    for name, what in (("sse 200ev c=8", "burst streams"), ("json 2KB c=32", "JSON"),
                       ("json 60KB c=8", "60 KB bodies")):
        description = "%s (%s) CPU <= %.1fx lean.py --strict" % (what, name, LEAN_RATIO)
        if name not in mine or name not in lean:
            rows.append((description, "not run", None))
            continue
        ours, theirs = mine[name], lean[name]
        ours_us, theirs_us = ours.proxy.cpu_us_per_request, theirs.proxy.cpu_us_per_request
        if not ours_us or not theirs_us:
            rows.append((description, "no CPU figure", False))
            continue
        failed = ours.proxy.wrk.non_2xx or ours.probe.status != 200 or theirs.proxy.wrk.non_2xx
        ratio = ours_us / theirs_us
        rows.append((description, "%.0f vs %.0f us: %.2fx%s" % (
            ours_us, theirs_us, ratio, " (non-2xx!)" if failed else ""),
            not failed and ratio <= LEAN_RATIO))
    return rows


def _startup_targets(startup_rows):
    """The three start-up limits on the oldest and the newest CPython measured (warm
    cache; the cold run beside)."""
    limits = [(name, limit) for name, _, _, limit in STARTUP_TARGETS]
    if startup_rows is None:
        return [("start-up: %s <= %.0f ms beyond bare python" % (name, limit), "not run", None)
                for name, limit in limits]
    rows = []
    chosen = [startup_rows[0]] + ([startup_rows[-1]] if len(startup_rows) > 1 else [])
    for row in chosen:
        for name, warm, cold, limit in STARTUP_TARGETS:
            warm_ms, cold_ms = getattr(row, warm), getattr(row, cold)
            description = "start-up %s: %s <= %.0f ms beyond bare python" % (row.version, name, limit)
            measured = "%s warm (cold %s)" % (_ms_text(warm_ms), _ms_text(cold_ms))
            rows.append((description, measured, warm_ms is not None and warm_ms <= limit))
    return rows


def _ms_text(ms):
    return "n/a" if ms is None else "%.1f ms" % ms


def issue_targets(run):
    """[(description, measured, ok)] for issue 13's targets; ok None: a row was not run."""
    rows = [_trickle_cpu_target(run.trickle, "cliproxy", TRICKLE_CPU_RATIO),
            _trickle_cpu_target(run.trickle, "cliproxy translated", TRICKLE_TRANSLATED_RATIO)]
    rows.extend(_trickle_b_targets(run.trickle))
    rows.extend(_lean_targets(run.results, run.calibration))
    rows.extend(_startup_targets(run.startup))
    return rows


def _grid(header, rows):
    """Rows of cells as aligned text, a rule under the header."""
    rows = [header] + rows
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _share(us, seconds):
    """CPU microseconds over ``seconds`` as a percentage of one core."""
    return "n/a" if us is None or not seconds else "%.0f%%" % (us / 1e4 / seconds)


def _num(value, form):
    return "n/a" if value is None else form % value


def trickle_table(rows):
    header = ("phase", "through", "streams whole", "events", "CPU us/event",
              "added ms p50/p99/max", "RSS MB idle/peak/after", "load gen CPU, lag p99",
              "upstream CPU")
    cells = []
    for row in rows:
        if row.error:
            cells.append((row.phase.name, row.program.label, "FAILED: " + row.error[:80],
                          "", "", "", "", "", ""))
            continue
        r = row.result
        rss = "" if row.rss_idle_mb is None else "%.1f / %.1f / %.1f" % (
            row.rss_idle_mb, row.rss_peak_mb, row.rss_after_mb)
        cells.append((
            row.phase.name, row.program.label,
            "%d/%d%s" % (r.complete, r.streams, " (+%d cut)" % r.cut if r.cut else ""),
            "%d%s" % (r.events, ", %d out of order" % r.out_of_order if r.out_of_order else ""),
            _num(row.cpu_per_event_us, "%.1f"),
            "%s / %s / %s" % (_num(r.latency_p50_ms, "%.1f"), _num(r.latency_p99_ms, "%.1f"),
                              _num(r.latency_max_ms, "%.1f")),
            rss,
            "%s, %s ms" % (_share(r.load_cpu_us, r.window_s), _num(r.loop_lag_p99_ms, "%.1f")),
            _share(r.upstream_cpu_us, r.window_s),
        ))
    return _grid(header, cells)


def _print_targets(rows):
    for description, measured, ok in rows:
        print("  [%s] %-58s %s" % (_mark(ok), description, measured))


def report(run, proxy_name):
    print()
    print("%s bench, %s" % (proxy_name, run.machine))
    if run.results:
        print(table(run.results))
        print()
    print("peak RSS of the proxy (VmHWM): %.1f MB after the load runs, %.1f MB at the end"
          % (run.peak_before_stream_mb, run.peak_mb))
    stream = run.stream
    if stream is not None:
        if stream.error:
            print("%d MB stream: direct %.0f MB/s; through the proxy FAILED: %s"
                  % (stream.megabytes, stream.direct_mb_s, stream.error))
        else:
            samples = stream.rss_samples_mb
            print("%d MB stream via %s: direct %.0f MB/s, through the proxy %.0f MB/s; proxy RSS "
                  "%.1f MB before, %.1f-%.1f MB during (%d samples, every 100 MB)"
                  % (stream.megabytes, BIG_PROXY_PATH, stream.direct_mb_s, stream.proxy_mb_s,
                     stream.rss_before_mb, min(samples or [0]), max(samples or [0]), len(samples)))
    failures = [r for r in run.results if r.probe.status != 200 or r.proxy.wrk.non_2xx]
    for r in failures:
        print("FAILED through the proxy: %s: probe HTTP %d, %d non-2xx in the run; first body: %s"
              % (r.scenario.name, r.probe.status, r.proxy.wrk.non_2xx, r.probe.body_prefix))
    if run.calibration:
        print("\ncalibration, same run (Python programs in bench/, not cliproxy):")
        print(calibration_table(run.results, run.calibration))
    if run.trickle:
        print("\ntrickle streams (bench/trickle.py): one SSE event per upstream write; added ms ="
              " client read - upstream write\n(the host's monotonic clock); CPU per event = the"
              " program's CPU / events read in the window\n(phase a: after the warm-up, stream"
              " set-ups included; phase b: the whole run); RSS peak = VmHWM")
        print(trickle_table(run.trickle))
        shown = []
        for row in run.trickle:
            if row.program.label not in shown:
                shown.append(row.program.label)
                print("  %-28s %s" % (row.program.label + ":", row.program.what))
    distance = distance_lines(run.results, run.calibration, run.trickle)
    if distance:
        print("\nwhere the distance to lean.py --strict lies (CPU, same run):")
        print("\n".join(distance))
    if run.startup is not None:
        print("\nstart-up, median of %d runs, beyond a bare interpreter:" % STARTUP_RUNS)
        print(startup.table(run.startup))
    print()
    print("targets (issue 13), from the rows above:")
    _print_targets(issue_targets(run))
    print("earlier targets (absolute figures, kept as history):")
    _print_targets(earlier_targets(run.results, run.stream, run.peak_mb))
    print()
    print("reference (issue, same method, 2 cores): ratio to direct at c=32, CPU per request")
    for name, ratio, cpu in REFERENCES:
        print("  %-40s %-11s %s" % (name, ratio, cpu))


def _scenario_json(r):
    return {
        "name": r.scenario.name,
        "connections": r.scenario.connections,
        "request_bytes": os.path.getsize(r.scenario.body_file),
        "direct": dataclasses.asdict(r.direct),
        "proxy": dataclasses.asdict(r.proxy),
        "ratio": r.ratio,
        "probe": dataclasses.asdict(r.probe),
    }


def _trickle_json(row):
    phase = row.phase
    return {
        "phase": phase.name, "program": row.program.label,
        "streams": phase.streams, "interval_ms": phase.interval_ms,
        "deltas_per_stream": phase.deltas, "repeat": phase.repeat,
        "error": row.error,
        "cpu_us_per_event": row.cpu_per_event_us,
        "rss_idle_mb": row.rss_idle_mb, "rss_peak_mb": row.rss_peak_mb,
        "rss_after_mb": row.rss_after_mb,
        "load": None if row.result is None else dataclasses.asdict(row.result),
    }


def _targets_json(rows, group):
    return [{"group": group, "target": d, "measured": m, "pass": ok} for d, m, ok in rows]


def to_json(run, args):
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": run.machine,
        "proxy": os.path.basename(args.proxy),
        "duration_s": args.duration,
        "rounds": args.rounds,
        "load_average_at_end": load_average(),
        "scenarios": [_scenario_json(r) for r in run.results],
        "calibration": [dict(_scenario_json(row.result), program=row.calibration.label)
                        for row in run.calibration],
        "trickle": [_trickle_json(row) for row in run.trickle],
        "startup": None if run.startup is None else [dataclasses.asdict(r) for r in run.startup],
        "peak_rss_mb": run.peak_mb,
        "peak_rss_before_stream_mb": run.peak_before_stream_mb,
        "stream": None if run.stream is None else dict(dataclasses.asdict(run.stream),
                                                       growth_mb=run.stream.growth_mb),
        "targets": (_targets_json(issue_targets(run), "issue 13")
                    + _targets_json(earlier_targets(run.results, run.stream, run.peak_mb),
                                    "earlier")),
    }


def run_scaleout(pyz):
    """The README's scale-out recipe, printed as it comes."""
    import scaleout

    try:
        ok, summary = scaleout.run(pyz)
    except scaleout.ScaleOutError as exc:
        summary = "could not run: %s" % exc
    print("\nscale-out (README recipe, nginx + 2 instances): " + summary)


def raise_open_files():
    """Let this process and its children (the proxy, the load generator) open the
    descriptors 1,000 streams need: the soft limit up to NOFILE_WANTED, never past the
    hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = NOFILE_WANTED if hard == resource.RLIM_INFINITY else min(NOFILE_WANTED, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def selected(args, name):
    """Whether ``--only`` lets the part named ``name`` run."""
    return not args.only or any(piece in name for piece in args.only)


def machine_line():
    python = subprocess.run([sys.executable, "--version"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT).stdout.decode().strip()
    nginx = subprocess.run(["nginx", "-v"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT).stdout.decode().strip()
    wrk = subprocess.run(["wrk", "-v"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT).stdout.decode().split("\n")[0].strip()
    return "%s, %d cores, %s, %s, %s, load average %s" % (
        datetime.date.today().isoformat(), os.cpu_count() or 0, python,
        nginx.replace("nginx version: ", ""), " ".join(wrk.split()[:2]), load_average())


def load_average():
    """The 1-minute load average: other work on the machine skews every figure."""
    with open("/proc/loadavg", encoding="ascii") as handle:
        return handle.read().split()[0]


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def parse_args(argv):
    parser = argparse.ArgumentParser(description="wrk -> nginx vs wrk -> cliproxy -> nginx")
    parser.add_argument("--duration", type=int, default=8,
                        help="seconds per measured run (trickle phase a: its CPU window)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of discarded warm-up")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds per wrk scenario and of trickle phase a, each measuring "
                             "direct, cliproxy and the calibration programs in turn; the median "
                             "is reported (trickle phase b runs once)")
    parser.add_argument("--stream-mb", type=int, default=1024,
                        help="size of the memory-flat stream (0 skips it)")
    parser.add_argument("--trickle-seconds", type=int, default=30,
                        help="how long each stream of trickle phase b lasts")
    parser.add_argument("--proxy", default=DEFAULT_PYZ, metavar="PATH",
                        help="the proxy program run with python3 (default dist/cliproxy.pyz; "
                             "bench/pump.py and bench/lean.py are the calibration programs; "
                             "the trickle phases run for a .pyz only)")
    parser.add_argument("--no-calibration", dest="calibration", action="store_false",
                        help="skip the calibration rows (bench/pump.py and bench/lean.py "
                             "through the c=32, SSE, 60 KB and trickle scenarios)")
    parser.add_argument("--no-extras", dest="extras", action="store_false",
                        help="skip the start-up timings (bench/startup.py) and the scale-out "
                             "check of the README's nginx recipe (bench/scaleout.py)")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only the parts whose name contains NAME (repeatable): the "
                             "scenarios ('json 2KB c=1', 'json 2KB c=32', 'sse 200ev c=8', "
                             "'sse translated c=8', 'json 60KB c=8'), 'trickle a', "
                             "'trickle b', '%s', '%s', '%s'; e.g. --only trickle"
                             % (STREAM_PART, STARTUP_PART, SCALEOUT_PART))
    args = parser.parse_args(argv)
    args.proxy = os.path.abspath(args.proxy)  # the proxy runs in the temp directory
    if (args.rounds < 1 or args.duration < 1 or args.warmup < 0 or args.stream_mb < 0
            or args.trickle_seconds < 1):
        parser.error("--rounds, --duration and --trickle-seconds must be >= 1, --warmup and "
                     "--stream-mb >= 0")
    return args


@dataclasses.dataclass
class Run:
    """Everything one bench run measured, for the report and results.json."""
    machine: str
    results: List[ScenarioResult]
    stream: Optional[StreamResult]
    peak_mb: float
    peak_before_stream_mb: float
    calibration: List[CalibrationRow]
    trickle: List[TrickleRow]
    startup: Optional[list]  # startup.StartupRow per interpreter; None when not run


def measure(args, workdir, servers):
    """Every selected part of the run, in order: the wrk scenarios (cliproxy and, unless
    --no-calibration, the calibration programs, round by round), cliproxy's 1 GB stream,
    the trickle phases (likewise); then start-up. ``servers`` collects the processes
    started, for the caller to stop."""
    nginx_port, proxy_port = free_port(), free_port()
    phases = []
    if args.proxy.endswith(".pyz"):
        phases = [phase for phase in trickle_phases(args) if selected(args, phase.name)]
    trickle_port = free_port() if phases else None
    servers["nginx"] = start_nginx(workdir, nginx_port, max(args.stream_mb, 1) * MB)
    upstream = None
    if phases:
        upstream = servers["trickle"] = start_trickle_upstream(workdir, trickle_port)
    proxy, proxy_log = start_proxy(args.proxy, workdir, proxy_port, nginx_port,
                                   trickle_port=trickle_port, phases=phases)
    servers["proxy"] = proxy
    cliproxy = Program("cliproxy", proxy_port, proxy.pid)
    calibrate = args.calibration and args.proxy == DEFAULT_PYZ
    machine = machine_line()
    chosen = [s for s in scenarios(workdir) if selected(args, s.name)]
    calibrations = [c for c in CALIBRATIONS if calibrate and any(s.name in c.scenarios for s in chosen)]
    results, calibration = [], []
    started = {}
    try:
        programs = start_calibrations(calibrations, workdir, nginx_port, started, "calibration")
        for scenario in chosen:
            serving = [c for c in calibrations if scenario.name in c.scenarios]
            measured = run_scenario(scenario, nginx_port,
                                    [cliproxy] + [programs[c.label] for c in serving], args, workdir)
            results.append(measured["cliproxy"])
            calibration += [CalibrationRow(c, measured[c.label]) for c in serving]
    finally:
        stop_all(started)
    calibration.sort(key=lambda row: calibrations.index(row.calibration))  # by program
    peak_before_stream = memory_mb(proxy.pid, "VmHWM")
    stream = None
    if args.stream_mb and selected(args, STREAM_PART):
        print("[bench] %d MB stream ..." % args.stream_mb, flush=True)
        stream = run_stream(nginx_port, proxy_port, proxy.pid, args.stream_mb)
    # Read before the trickle phases, whose 1,000 streams have their own memory targets.
    peak = memory_mb(proxy.pid, "VmHWM")
    trickle_rows = []
    if phases:
        trickle_rows = run_trickle_phases(phases, cliproxy, trickle_port, upstream.pid, workdir,
                                          nginx_port, calibrate, args.rounds)
    if proxy.poll() is not None:
        raise BenchError("cliproxy died during the run: %s" % tail(proxy_log))
    # Start-up is timed on a quiet machine: every server of the run stopped first.
    for name in ("proxy", "trickle", "nginx"):
        stop(servers.get(name))
    startup_rows = None
    if args.extras and selected(args, STARTUP_PART):
        print("[bench] start-up ...", flush=True)
        startup_rows = startup.measure(args.proxy, STARTUP_RUNS)
    return Run(machine, results, stream, peak, peak_before_stream, calibration, trickle_rows,
               startup_rows), proxy_log


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not os.path.exists("/usr/sbin/" + tool):
            print("bench: %s not found; run bench/run.sh (installs it)" % tool, file=sys.stderr)
            return 1
    if resource is None or not os.path.isdir("/proc/self"):
        print("bench: Linux only (/proc, resource)", file=sys.stderr)
        return 1
    build_pyz(args.proxy)
    raise_open_files()
    # SIGTERM takes the Ctrl-C path, so that nginx and the proxy are stopped on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = tempfile.mkdtemp(prefix="cliproxy-bench-")
    servers = {}
    try:
        run, proxy_log = measure(args, workdir, servers)
        report(run, os.path.basename(args.proxy))
        if args.extras and selected(args, SCALEOUT_PART):
            run_scaleout(args.proxy)
        os.makedirs(args.out, exist_ok=True)
        name = "results.json" if args.proxy == DEFAULT_PYZ else "results-%s.json" % (
            os.path.splitext(os.path.basename(args.proxy))[0])
        out_path = os.path.join(args.out, name)
        with open(out_path, "w", encoding="utf-8") as handle:
            json.dump(to_json(run, args), handle, indent=2)
        print("\nresults written to %s" % os.path.relpath(out_path))
        warnings = tail(proxy_log, 2000)
        if warnings and warnings != "(no log)":
            print("\nproxy log (tail):\n" + warnings)
        return 0
    except BenchError as exc:
        print("bench: %s" % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        for process in servers.values():
            stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
