"""Processes for ``make hostile``: the proxy under probe, its log, and /proc readings.

Strategy: the proxy is the built zipapp run as a child process, exactly as a user runs it,
each with a config in its own temp directory and its stderr in a log file there. Figures
come from the outside: descriptors from /proc/PID/fd, memory from /proc/PID/status (VmRSS
now, VmHWM the peak, which /proc/PID/clear_refs resets), log lines from the file, read
from an offset so each check sees only the lines it caused. Linux only; standard library
only; every child is stopped (SIGTERM, a bounded wait, SIGKILL) whatever happens.
"""

import json
import os
import resource
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import List, Optional

from procs import free_port, stop, wait_listening  # bench/procs.py, next to this file

# Lines a Python traceback starts with, in a log file.
TRACEBACK = "Traceback (most recent call last)"


class HarnessError(Exception):
    """The job itself cannot run (a proxy that does not start, a missing zipapp)."""


def raise_own_descriptor_limit(wanted):
    """Let this process open ``wanted`` descriptors when the hard limit allows: the load
    checks hold thousands of sockets on the client side. Returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def descriptor_ceiling(wanted):
    """``wanted``, or the hard descriptor limit when that is lower."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)


def _limits(descriptors, memory):
    """A ``preexec_fn`` giving the child a descriptor limit and an address-space limit
    (bytes), soft and hard alike so the child cannot raise them back; None leaves one."""

    def apply():
        if descriptors:
            resource.setrlimit(resource.RLIMIT_NOFILE, (descriptors, descriptors))
        if memory:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return apply


@dataclass
class Proxy:
    """A running proxy: its process, port, directory and log."""

    name: str
    process: subprocess.Popen
    port: int
    directory: str
    log_path: str
    config_path: str
    descriptor_limit: Optional[int] = None
    offsets: List[int] = field(default_factory=list)

    @property
    def pid(self):
        return self.process.pid

    # -- /proc

    def descriptors(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def memory_mb(self, key="VmRSS"):
        with open("/proc/%d/status" % self.pid, encoding="ascii") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
        raise HarnessError("%s missing from /proc/%d/status" % (key, self.pid))

    def reset_peak(self):
        """Reset VmHWM to the current RSS (Linux 4.0+); False when not allowed."""
        try:
            with open("/proc/%d/clear_refs" % self.pid, "w") as handle:
                handle.write("5")
            return True
        except OSError:
            return False

    def alive(self):
        return self.process.poll() is None

    # -- the log

    def log_offset(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_lines(self, since=0):
        """The log's lines written after byte offset ``since``."""
        with open(self.log_path, "rb") as handle:
            handle.seek(since)
            return handle.read().decode("utf-8", "replace").splitlines()

    def stop(self):
        stop(self.process)


def log_summary(lines):
    """(log entries, tracebacks) in ``lines``: a traceback's own lines are not entries."""
    entries = [line for line in lines if line[:1].isdigit() or line.startswith("{")]
    tracebacks = [line for line in lines if line.startswith(TRACEBACK)]
    return entries, tracebacks


def start_proxy(name, pyz, workdir, document, log_level="info", descriptor_limit=None, memory_limit=None):
    """Write ``document`` (``host``/``port`` filled in) to ``workdir/name/config.json`` and
    run the zipapp on it, with ``descriptor_limit`` descriptors and ``memory_limit`` bytes
    of address space when given; returns the listening ``Proxy``. Raises ``HarnessError``
    when it exits or does not listen in time."""
    directory = os.path.join(workdir, name)
    os.makedirs(directory, exist_ok=True)
    port = free_port()
    document = dict(document, host="127.0.0.1", port=port)
    document.setdefault("logs-dir", os.path.join(directory, "logs"))
    config_path = os.path.join(directory, "config.json")
    with open(config_path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
    log_path = os.path.join(directory, "cliproxy.log")
    preexec = _limits(descriptor_limit, memory_limit) if descriptor_limit or memory_limit else None
    environment = {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")}
    environment.pop("AMP_API_KEY", None)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, pyz, "--config", config_path, "--log-level", log_level],
            stdout=subprocess.DEVNULL, stderr=log, cwd=directory, env=environment, preexec_fn=preexec)
    proxy = Proxy(name, process, port, directory, log_path, config_path, descriptor_limit)
    try:
        _wait_listening(proxy)
    except BaseException:
        proxy.stop()
        raise
    return proxy


def _wait_listening(proxy):
    wait_listening(proxy.port, proxy.process, proxy.name, proxy.log_path, error=HarnessError)


def healthz(port, timeout=5.0):
    """(status or None, seconds) of one ``GET /healthz`` on a fresh connection."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            data = b""
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None, time.monotonic() - started
    parts = data.split(b" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    return status, time.monotonic() - started


def wait_for(predicate, timeout, step=0.05):
    """Poll ``predicate`` until it is true or ``timeout`` passes; its last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(step)
        value = predicate()
    return value
