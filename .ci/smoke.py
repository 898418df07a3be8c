#!/usr/bin/env python3
"""Start the built cliproxy.pyz under every CPython 3.8-3.13 found (pyenv and PATH) and
prove on each that it serves /healthz and proxies a management request to a local
upstream, then stops cleanly on SIGTERM. Run from a scratch directory so the archive is
the only source of the package."""

import glob
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

SUPPORTED = ("3.8", "3.9", "3.10", "3.11", "3.12", "3.13")


def interpreters():
    found = {}
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    candidates = sorted(glob.glob(os.path.join(root, "versions", "3.*", "bin", "python3")))
    candidates += [p for p in (shutil.which("python3.%d" % m) for m in range(8, 14)) if p]
    for path in candidates:
        out = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True)
        version = out.stdout.strip()
        if version in SUPPORTED and version not in found:
            found[version] = path
    return found


class Upstream(http.server.BaseHTTPRequestHandler):
    seen = []

    def do_GET(self):
        Upstream.seen.append((self.path, self.headers.get("Authorization")))
        body = b"<rss>smoke</rss>"
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.read()


def smoke(python, pyz, upstream_url, scratch):
    port = free_port()
    config = os.path.join(scratch, "config.json")
    with open(config, "w") as out:
        json.dump({"port": port, "api-keys": ["sk-smoke"],
                   "ampcode": {"upstream-url": upstream_url, "upstream-api-key": "amp-smoke"}}, out)
    proc = subprocess.Popen([python, pyz, "--config", config], cwd=scratch,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 15
        while True:
            try:
                status, body = get("http://127.0.0.1:%d/healthz" % port)
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise SystemExit("no /healthz answer:\n" + proc.stdout.read().decode() if proc.poll() is not None else "timeout")
                time.sleep(0.05)
        assert status == 200 and json.loads(body) == {"status": "ok"}, body
        status, body = get("http://127.0.0.1:%d/news.rss" % port, {"Authorization": "Bearer sk-smoke"})
        assert status == 200 and body == b"<rss>smoke</rss>", (status, body)
        assert Upstream.seen[-1] == ("/news.rss", "Bearer amp-smoke"), Upstream.seen[-1]
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        assert code == 0, "exit code %d" % code
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main():
    pyz = os.path.abspath(sys.argv[1])
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    upstream_url = "http://127.0.0.1:%d" % upstream.server_address[1]
    found = interpreters()
    if not found:
        raise SystemExit("no CPython 3.8-3.13 found")
    failures = 0
    for version, python in sorted(found.items(), key=lambda item: tuple(map(int, item[0].split(".")))):
        scratch = tempfile.mkdtemp(prefix="cliproxy-smoke-")
        try:
            smoke(python, pyz, upstream_url, scratch)
            print("smoke: %s (%s): ok" % (version, python))
        except (AssertionError, SystemExit, OSError, subprocess.SubprocessError) as exc:
            failures += 1
            print("smoke: %s (%s): FAILED: %s" % (version, python, exc))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    upstream.shutdown()
    missing = sorted(set(SUPPORTED) - set(found))
    if missing:
        print("smoke: not on this machine: " + ", ".join(missing))
    print("%d passed, %d failed" % (len(found) - failures, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
