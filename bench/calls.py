#!/usr/bin/env python3
"""Function calls per proxied request: a deterministic companion to ``make bench``.

Strategy: CPU time per request on a shared 2-core machine moves by 10% from run to run,
which hides the few-microsecond changes a hot path is made of. The number of function
calls a request costs does not move, and in CPython it is most of what a request costs.
So: start cliproxy from the source tree under ``cProfile`` (off), serve its Anthropic
provider from a canned upstream in this process, warm up, switch the profiler on with
SIGUSR1, send ``--requests`` POSTs over ``--connections`` keep-alive connections (the bench's 2 KB body, a 600-byte JSON
answer), switch it off with a second SIGUSR1 and print the calls per request, Python-level
and in total, with the functions that account for most of them.

    python3 bench/calls.py [--requests 2000] [--top 40]

Standard library only; 127.0.0.1 only; run it from anywhere.
"""

import argparse
import http.client
import json
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import bench  # noqa: E402  (the bench's canned bodies, one definition for both tools)
from procs import free_port, wait_listening  # noqa: E402

CLIENT_KEY = "sk-calls"
PATH = "/api/provider/anthropic/v1/messages"

# Runs in the proxy's process: cli.main under a profiler that the first SIGUSR1 switches on
# and the second switches off, writing the stats to argv[1].
_PROFILED_MAIN = r"""
import cProfile, os, signal, sys
from cliproxy import cli
out = sys.argv[1]
profiler = cProfile.Profile()
state = {"on": False}
def toggle(signum, frame):
    if state["on"]:
        profiler.disable()
        profiler.dump_stats(out)
        os._exit(0)
    state["on"] = True
    profiler.enable()
signal.signal(signal.SIGUSR1, toggle)
cli.main(sys.argv[2:])
"""


class _Canned(BaseHTTPRequestHandler):
    """The upstream: every POST gets the bench's 600-byte JSON answer, kept alive."""

    protocol_version = "HTTP/1.1"
    answer = b""
    events = b""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        stream = b'"stream":true' in body
        answer = self.events if stream else self.answer
        kind = b"text/event-stream" if stream else b"application/json"
        # Head and body in one write, as nginx sends them: the proxy reads them together.
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
                         % (kind, len(answer), answer))

    def log_message(self, *args):
        pass


def _send(conn, body, count):
    for _ in range(count):
        conn.request("POST", PATH, body, {"Content-Type": "application/json",
                                          "x-api-key": CLIENT_KEY})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit("proxied request answered %d" % response.status)


def _in_parallel(conns, body, each):
    threads = [threading.Thread(target=_send, args=(conn, body, each)) for conn in conns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def measure(requests, connections, stream, workdir, large=False):
    """Run the proxy, send ``requests`` over ``connections`` keep-alive connections at
    once, return (stats, requests sent while profiling)."""
    requests -= requests % connections
    _Canned.answer = bench.canned_json().encode("utf-8")
    _Canned.events = bench.canned_sse().encode("utf-8")
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = free_port()
    config = os.path.join(workdir, "config.json")
    with open(config, "w") as f:
        json.dump({"host": "127.0.0.1", "port": port, "api-keys": [CLIENT_KEY],
                   "claude-api-key": [{"api-key": "sk-upstream", "base-url":
                                       "http://127.0.0.1:%d" % upstream.server_port}]}, f)
    stats_file = os.path.join(workdir, "calls.prof")
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-c", _PROFILED_MAIN, stats_file, "--config",
                             config, "--log-level", "warning"], env=env)
    try:
        wait_listening(port, proc, "cliproxy", error=SystemExit)
        make_body = bench.large_request if large else bench.small_request
        body = make_body(bench.JSON_MODEL, stream)
        conns = [http.client.HTTPConnection("127.0.0.1", port) for _ in range(connections)]
        _in_parallel(conns, body, 50)
        proc.send_signal(signal.SIGUSR1)
        time.sleep(0.2)
        _in_parallel(conns, body, requests // connections)
        proc.send_signal(signal.SIGUSR1)
        for conn in conns:
            conn.close()
        proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
        upstream.shutdown()
    return pstats.Stats(stats_file), requests


def report(stats, requests, top):
    rows = []
    python_calls = 0
    for (filename, line, name), (_, ncalls, tottime, _, _) in stats.stats.items():
        if filename != "~":
            python_calls += ncalls
        where = name if filename == "~" else "%s:%d(%s)" % (
            os.path.relpath(filename, ROOT) if filename.startswith(ROOT) else
            os.path.basename(filename), line, name)
        rows.append((ncalls / requests, tottime * 1e6 / requests, where))
    print("requests: %d" % requests)
    print("calls per request: %.0f (Python functions %.0f)" % (
        stats.total_calls / requests, python_calls / requests))
    print("%8s %8s  %s" % ("calls", "us*", "function"))
    for per_request, us, where in sorted(rows, reverse=True)[:top]:
        print("%8.2f %8.2f  %s" % (per_request, us, where))
    print("* own time under the profiler, inflated by it: compare rows, not with bench.py")


def callers(stats, requests, name):
    """Print, per request, who calls the functions whose name contains ``name``."""
    for (filename, line, function), entry in sorted(stats.stats.items()):
        if name not in function:
            continue
        print("\n%s:%d(%s) is called by" % (os.path.basename(filename), line, function))
        by_count = sorted(entry[4].items(), key=lambda item: -item[1][1])
        for (c_file, c_line, c_name), counts in by_count[:15]:
            print("%8.2f  %s:%d(%s)" % (counts[1] / requests, os.path.relpath(c_file, ROOT)
                                        if c_file.startswith(ROOT) else
                                        os.path.basename(c_file), c_line, c_name))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--stream", action="store_true",
                        help="ask for a stream: the upstream answers the bench's 200-event SSE")
    parser.add_argument("--large", action="store_true",
                        help="send the bench's 60 KB request instead of the 2 KB one")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--callers", metavar="NAME", action="append", default=[],
                        help="also list who calls functions whose name contains NAME")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        stats, requests = measure(args.requests, args.connections, args.stream, workdir,
                                  args.large)
        report(stats, requests, args.top)
        for name in args.callers:
            callers(stats, requests, name)


if __name__ == "__main__":
    main()
