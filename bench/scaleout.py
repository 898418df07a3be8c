#!/usr/bin/env python3
"""The README's "Scaling out" recipe, run: two cliproxy instances behind nginx.

Strategy: the nginx block is read from README.md itself (its ports replaced by free ones and
wrapped in a minimal nginx.conf), two instances of the built .pyz run in offline mode with
the request log on, and requests go through nginx: several per Amp thread id, and some
without one. Each instance's log says which requests it served (a query parameter names the
thread), so the check is: every thread stayed on one instance, threads landed on both
instances, and requests without a thread id were spread over both. Prints one line; exit 0
when the recipe holds. Linux, standard library, nginx on the PATH (bench/run.sh installs it).

    python3 bench/scaleout.py [--proxy dist/cliproxy.pyz]
"""

import argparse
import collections
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from procs import free_port, stop, wait_listening  # bench/procs.py, next to this file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
README = os.path.join(ROOT, "README.md")
CLIENT_KEY = "sk-scaleout"
THREADS = 16
PER_THREAD = 4
UNTHREADED = 32


class ScaleOutError(Exception):
    """The check could not run (a server that does not start, a recipe not found)."""


def readme_nginx_block():
    """The ```nginx block of the README's "Scaling out" section."""
    text = open(README, encoding="utf-8").read()
    section = text[text.index("### Scaling out"):]
    match = re.search(r"```nginx\n(.*?)```", section, re.DOTALL)
    if match is None:
        raise ScaleOutError("README.md has no nginx block under 'Scaling out'")
    return match.group(1)


def start_instance(pyz, workdir, name, port):
    config = {"host": "127.0.0.1", "port": port, "api-keys": [CLIENT_KEY], "request-log": True,
              "logs-dir": os.path.join(workdir, name), "ampcode": {"upstream-url": ""}}
    path = os.path.join(workdir, name + ".json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(config, handle)
    log_path = os.path.join(workdir, name + ".log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, pyz, "--config", path], stderr=log, stdout=log)
    wait_listening(port, process, name, error=ScaleOutError)
    return process, log_path


def start_nginx(workdir, block, ports, front):
    block = block.replace("127.0.0.1:8317", "127.0.0.1:%d" % ports[0])
    block = block.replace("127.0.0.1:8318", "127.0.0.1:%d" % ports[1])
    block = block.replace("127.0.0.1:8300", "127.0.0.1:%d" % front)
    user = "user root;" if os.geteuid() == 0 else ""
    conf = ("%s\ndaemon off;\nworker_processes 1;\npid %s/nginx.pid;\nerror_log %s/error.log warn;\n"
            "events { worker_connections 1024; }\nhttp {\naccess_log off;\nclient_body_temp_path %s/cb;\n"
            "proxy_temp_path %s/pt;\n%s\n}\n") % (user, workdir, workdir, workdir, workdir, block)
    path = os.path.join(workdir, "nginx.conf")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(conf)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    process = subprocess.Popen([nginx, "-p", workdir, "-e", os.path.join(workdir, "error.log"), "-c", path],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(front, process, "nginx", error=ScaleOutError)
    return process


def send(front, tag, thread_id):
    connection = http.client.HTTPConnection("127.0.0.1", front, timeout=10)
    headers = {"Authorization": "Bearer " + CLIENT_KEY, "Content-Type": "application/json"}
    if thread_id:
        headers["X-Amp-Thread-Id"] = thread_id
    try:
        connection.request("POST", "/api/internal?getUserInfo&probe=%s" % tag, b'{"method":"getUserInfo"}', headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise ScaleOutError("nginx -> cliproxy answered %d" % response.status)
    finally:
        connection.close()


def served_tags(log_path):
    text = open(log_path, encoding="utf-8", errors="replace").read()
    return re.findall(r"probe=([A-Za-z0-9_-]+)", text)


def run(pyz):
    """(ok, summary line)."""
    workdir = tempfile.mkdtemp(prefix="cliproxy-scaleout-")
    processes = []
    try:
        ports = [free_port(), free_port()]
        instances = [start_instance(pyz, workdir, "a", ports[0]), start_instance(pyz, workdir, "b", ports[1])]
        processes.extend(p for p, _ in instances)
        front = free_port()
        processes.append(start_nginx(workdir, readme_nginx_block(), ports, front))
        for number in range(THREADS):
            for _ in range(PER_THREAD):
                send(front, "T%d" % number, "T-%08d-scaleout" % number)
        for number in range(UNTHREADED):
            send(front, "U%d" % number, None)
        time.sleep(0.3)  # the request log line is written as the answer completes
        seen = {name: served_tags(path) for name, (_, path) in zip("ab", instances)}
    finally:
        for process in reversed(processes):
            stop(process)
    homes = collections.defaultdict(set)
    for name, tags in seen.items():
        for tag in tags:
            homes[tag].add(name)
    threads = ["T%d" % n for n in range(THREADS)]
    split = [t for t in threads if len(homes[t]) != 1]
    per_instance = {name: len({t for t in tags if t.startswith("T")}) for name, tags in seen.items()}
    unthreaded = {name: sum(1 for t in tags if t.startswith("U")) for name, tags in seen.items()}
    ok = not split and all(per_instance.values()) and all(unthreaded.values())
    shutil.rmtree(workdir, ignore_errors=True)
    summary = ("%s: %d threads x %d requests: %s; threads per instance a=%d b=%d; "
               "%d requests without a thread id: a=%d b=%d" % (
                   "PASS" if ok else "FAIL", THREADS, PER_THREAD,
                   "every thread on one instance" if not split else "%d threads split" % len(split),
                   per_instance["a"], per_instance["b"], UNTHREADED, unthreaded["a"], unthreaded["b"]))
    return ok, summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy", default=os.path.join(ROOT, "dist", "cliproxy.pyz"))
    args = parser.parse_args(argv)
    try:
        ok, summary = run(os.path.abspath(args.proxy))
    except ScaleOutError as exc:
        print("scale-out: could not run: %s" % exc)
        return 1
    print("scale-out (README recipe, nginx + 2 instances): " + summary)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
