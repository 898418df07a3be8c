"""Child processes for the bench tools: a free loopback port, waiting for a server to
listen, the tail of its log, and a stop that never leaves one behind.

Shared by bench.py, calls.py, hostile_proc.py, scaleout.py and startup.py, which import
it from this folder. Standard library only."""

import signal
import socket
import subprocess
import time

START_TIMEOUT = 15.0  # seconds for a server to listen
STOP_TIMEOUT = 10.0  # seconds for a server to exit after SIGTERM


class ProcessError(Exception):
    """A child server exited early or did not listen in time."""


def free_port():
    """A loopback TCP port nothing listens on at the moment of the call."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_listening(port, process, name, log_path=None, error=ProcessError, timeout=START_TIMEOUT):
    """Return once 127.0.0.1:port accepts a connection. Raise ``error`` (the caller's own
    failure type) when ``process`` exits first, with the tail of ``log_path`` if given, or
    when ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            detail = ": " + tail(log_path) if log_path else ""
            raise error("%s exited with %s%s" % (name, process.returncode, detail))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise error("%s did not listen on port %d within %.0f s" % (name, port, timeout))


def tail(path, limit=800):
    """The last ``limit`` bytes of the file at ``path`` as text, or "(no log)"."""
    try:
        with open(path, "rb") as handle:
            return handle.read()[-limit:].decode("utf-8", "replace").strip()
    except OSError:
        return "(no log)"


def stop(process):
    """SIGTERM, a bounded wait, then SIGKILL. Does nothing for ``None`` or an exited
    process."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)
