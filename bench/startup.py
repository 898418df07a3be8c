#!/usr/bin/env python3
"""Start-up time of the built .pyz, next to a bare interpreter, on the oldest and newest
CPython found.

Strategy: each figure is the median of several runs, wall clock, measured from process
start: ``python3 -c pass`` (the interpreter alone), ``cliproxy.pyz --version``,
``cliproxy.pyz check`` (a small config), and the time until the first ``/healthz`` answer of
a serving instance (polled every 2 ms). The pyz figures are printed as milliseconds beyond
the bare interpreter's, which is what cliproxy itself adds: each start beyond a bare start
made just before it, in rounds of all four, so that the machine's drift over the seconds
of a measurement does not move one figure and not the others. The medians are of starts that
find cliproxy's modules compiled in the bytecode cache (``CLIPROXY_CACHE_DIR``, see
cliproxy/bytecache.py; "warm"); each of the three is also run once against an empty cache
of its own, compiling what it imports, and shown apart ("cold"). Interpreters: this one,
and the oldest and newest 3.8+ under ``pyenv root`` when pyenv is there.

    python3 bench/startup.py [--proxy dist/cliproxy.pyz] [--runs 7]
"""

import argparse
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Optional

from procs import free_port  # bench/procs.py, next to this file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HEALTH_TIMEOUT = 15.0
POLL = 0.002


def interpreters():
    """(label, path) of this interpreter and of the oldest and newest pyenv CPython >= 3.8."""
    found = {sys.executable}
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        root = ""
    versions = []
    directory = os.path.join(root, "versions") if root else ""
    if directory and os.path.isdir(directory):
        for name in os.listdir(directory):
            match = re.fullmatch(r"3\.(\d+)\.(\d+)", name)
            if match and int(match.group(1)) >= 8:
                versions.append(((3, int(match.group(1)), int(match.group(2))), os.path.join(directory, name, "bin", "python3")))
    versions.sort()
    if versions:
        found.update((versions[0][1], versions[-1][1]))
    labelled = []
    for path in sorted(found):
        version = subprocess.run([path, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                                 capture_output=True, text=True, timeout=30).stdout.strip()
        labelled.append((version, path))
    return sorted(labelled, key=lambda item: tuple(int(p) for p in item[0].split(".")))


def timed(command, env=None):
    """Wall-clock seconds of one run of ``command``."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    # A blocking wait: with a timeout, Popen.wait polls with sleeps of up to 50 ms,
    # which would round every figure up to them.
    process.wait()
    return time.perf_counter() - started


def first_health(python, pyz, config, env=None):
    """Seconds from process start to the first 200 from /healthz (None: none came)."""
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen([python, pyz, "--config", config, "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = started + HEALTH_TIMEOUT
        while time.perf_counter() < deadline:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=1) as answer:
                    if answer.status == 200:
                        return time.perf_counter() - started
            except OSError:
                time.sleep(POLL)
        return None
    finally:
        process.terminate()
        process.wait(10)


@dataclasses.dataclass
class StartupRow:
    """One interpreter's figures: the bare start in ms, the others in ms beyond it (None
    when a serving instance never answered)."""
    version: str
    bare_ms: float
    version_ms: float
    check_ms: float
    health_ms: Optional[float]
    version_cold_ms: float
    check_cold_ms: float
    health_cold_ms: Optional[float]


def measure(pyz, runs):
    """A ``StartupRow`` per interpreter, oldest first."""
    workdir = tempfile.mkdtemp(prefix="cliproxy-startup-")
    config = os.path.join(workdir, "config.json")
    with open(config, "w", encoding="utf-8") as handle:
        json.dump({"host": "127.0.0.1", "port": 0, "logs-dir": os.path.join(workdir, "logs"),
                   "ampcode": {"upstream-url": ""}}, handle)
    version_command = [pyz, "--version"]
    check_command = [pyz, "check", "--config", config]
    rows = []
    try:
        for version, python in interpreters():

            def cache(name):
                return dict(os.environ, CLIPROXY_CACHE_DIR=os.path.join(workdir, name + "-" + version))

            # Cold first, each with a cache of its own; the warm runs then share one that
            # the cold serving start has filled. Each start is set against a bare start
            # made just before it: the machine's speed drifts over a run, and a figure
            # beyond a bare start timed minutes earlier drifted with it.
            warm = cache("warm")
            bare = [timed([python, "-c", "pass"])]
            version_cold = timed([python] + version_command, cache("cold-version")) - bare[-1]
            check_cold = timed([python] + check_command, cache("cold-check")) - bare[-1]
            health_cold = _beyond(first_health(python, pyz, config, warm), bare[-1])
            version_warm, check_warm, health_warm = [], [], []
            for _ in range(runs):
                bare.append(timed([python, "-c", "pass"]))
                version_warm.append(timed([python] + version_command, warm) - bare[-1])
                check_warm.append(timed([python] + check_command, warm) - bare[-1])
                health_warm.append(_beyond(first_health(python, pyz, config, warm), bare[-1]))
            answered = [seconds for seconds in health_warm if seconds is not None]
            rows.append(StartupRow(
                version=version, bare_ms=statistics.median(bare) * 1000,
                version_ms=statistics.median(version_warm) * 1000,
                check_ms=statistics.median(check_warm) * 1000,
                health_ms=statistics.median(answered) * 1000 if len(answered) == runs else None,
                version_cold_ms=version_cold * 1000,
                check_cold_ms=check_cold * 1000,
                health_cold_ms=None if health_cold is None else health_cold * 1000))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def _beyond(seconds, bare):
    return None if seconds is None else seconds - bare


def table(rows):
    """The rows as text: warm medians, each with its cold run after a slash."""
    lines = ["%-8s %8s %20s %16s %22s" % (
        "python", "bare ms", "--version +ms", "check +ms", "first /healthz +ms"),
        "%-8s %8s %20s %16s %22s" % ("", "", "warm / cold", "warm / cold", "warm / cold")]
    for row in rows:
        lines.append("%-8s %8.1f %20s %16s %22s" % (
            row.version, row.bare_ms, _pair(row.version_ms, row.version_cold_ms),
            _pair(row.check_ms, row.check_cold_ms), _pair(row.health_ms, row.health_cold_ms)))
    return "\n".join(lines)


def _pair(warm, cold):
    return "%s / %s" % (_text(warm), _text(cold))


def _text(ms):
    return "n/a" if ms is None else "%.1f" % ms


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy", default=os.path.join(ROOT, "dist", "cliproxy.pyz"))
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    print("start-up, median of %d runs, beyond a bare interpreter:" % args.runs)
    print(table(measure(os.path.abspath(args.proxy), args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
