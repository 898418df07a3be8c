#!/usr/bin/env python3
"""Run the shipped unit for real under systemd, installed by the README's own commands.

Needs root on a machine whose service manager is systemd (``/run/systemd/system``
exists) and on which cliproxy is not installed (it installs and then removes
``/opt/cliproxy``, ``/etc/cliproxy``, the unit and its state and logs directories);
anywhere else it says why it skips and exits 0.

What it checks, with the README's commands run as written and the unit as shipped:
- the install commands work as pasted, the root-owned config included (systemd hands
  the state directory to the dynamic user at the first start);
- the service starts (``Type=notify``), answers, runs sandboxed (seccomp, no
  capabilities, not root);
- a ``file:`` value is read from a ``LoadCredential=`` credential: no "no upstream key"
  warning;
- management API changes are written and survive ``systemctl restart``;
- offline threads are saved in the logs directory; reload and stop are clean, and the
  journal holds no traceback.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "cliproxy"
MANAGEMENT_KEY = "mgmt-ci-key-%d" % os.getpid()
AMP_KEY = "sk-amp-ci-credential"
THREAD_ID = "T-ci-1"
# Everything the install creates; none of it may exist before, all of it goes after.
INSTALLED = (
    "/etc/systemd/system/cliproxy.service",
    "/etc/systemd/system/cliproxy.service.d",
    "/opt/cliproxy",
    "/etc/cliproxy",
    "/var/lib/cliproxy",
    "/var/lib/private/cliproxy",
    "/var/log/cliproxy",
    "/var/log/private/cliproxy",
)
# Made by systemd for a dynamic user's directories: removed again when this run made them.
PRIVATE_PARENTS = ("/var/lib/private", "/var/log/private")
STARTED = int(time.time())


def skip(reason):
    print("SKIPPED running the unit for real: " + reason)
    sys.exit(0)


def readme_commands():
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = text.split("\n## Under systemd\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)[0]


def sh(script, check=True):
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=REPO, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise AssertionError("failed:\n%s\n%s%s" % (script, done.stdout, done.stderr))
    return done.stdout.strip()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Service:
    def __init__(self, port):
        self.url = "http://127.0.0.1:%d" % port

    def call(self, method, path, value=None, headers=None):
        body = None if value is None else json.dumps(value).encode()
        headers = dict({"Content-Type": "application/json"}, **(headers or {}))
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def manage(self, method, field="", value=None):
        path = "/v0/management/ampcode" + ("/" + field if field else "")
        return self.call(method, path, None if value is None else {"value": value},
                         {"X-Management-Key": MANAGEMENT_KEY})


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print("ok: " + what)


def install(port):
    """The README's commands as written; the credential, its drop-in and the test's config
    settings go in before the final systemctl line starts the service."""
    lines = readme_commands().strip().splitlines()
    start = [line for line in lines if line.startswith("systemctl")]
    sh("\n".join(line for line in lines if not line.startswith("systemctl")))
    config = "/var/lib/%s/config.json" % NAME
    with open(config) as handle:
        document = json.load(handle)
    document["port"] = port
    document["remote-management"] = {"secret-key": MANAGEMENT_KEY}
    document["ampcode"]["upstream-api-key"] = "file:amp-api-key"
    with open(config, "w") as out:  # still root's 0600 file: systemd must hand it over
        json.dump(document, out, indent=2)
    credential = "/etc/%s/credentials/amp-api-key" % NAME
    with open(os.open(credential, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(AMP_KEY + "\n")
    os.makedirs("/etc/systemd/system/%s.service.d" % NAME)
    with open("/etc/systemd/system/%s.service.d/credentials.conf" % NAME, "w") as out:
        out.write("[Service]\nLoadCredential=amp-api-key:%s\n" % credential)
    sh("\n".join(start))


def journal():
    """This run's journal lines of the unit (an earlier run's stay out)."""
    return sh("journalctl --no-pager -o cat --since @%d -u %s.service" % (STARTED, NAME), check=False)


def main_pid():
    return int(sh("systemctl show -p MainPID --value %s" % NAME))


def proc_status(pid):
    fields = {}
    with open("/proc/%d/status" % pid) as handle:
        for line in handle:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def exercise(service):
    check(sh("systemctl is-active %s" % NAME, check=False) == "active", "the unit started (Type=notify)")
    check(service.call("GET", "/healthz")[0] == 200, "it answers /healthz")
    status = proc_status(main_pid())
    check(status["Seccomp"] == "2" and int(status["CapBnd"], 16) == 0 and status["NoNewPrivs"] == "1",
          "it runs with a seccomp filter, no capabilities and no new privileges")
    check(status["Uid"].split()[0] != "0", "it does not run as root")
    code, section = service.manage("GET")
    check(code == 200 and section["upstream-api-key"] not in ("", AMP_KEY),
          "the upstream key comes from the LoadCredential= credential (shown masked)")
    check("no upstream Amp key" not in journal(), "no 'no upstream key' warning")
    mapping = [{"from": "gpt-5", "to": "claude-sonnet-4-5"}]
    check(service.manage("PUT", "model-mappings", mapping)[0] == 200, "a management change is written")
    check(service.manage("PUT", "upstream-url", "")[0] == 200, "offline mode is switched on")
    thread = {"method": "uploadThread", "params": {"thread": {"id": THREAD_ID}}}
    check(service.call("POST", "/api/internal?uploadThread", thread) == (200, {"ok": True}), "a thread is uploaded")
    saved = "/var/log/%s/threads/%s.json" % (NAME, THREAD_ID)
    check(os.path.isfile(saved), "it is saved in the logs directory: " + saved)
    sh("systemctl reload %s" % NAME)
    check(sh("systemctl is-active %s" % NAME, check=False) == "active", "systemctl reload keeps it running")
    sh("systemctl restart %s" % NAME)
    code, section = service.manage("GET")
    check(code == 200 and section["upstream-url"] == "" and section["model-mappings"][0]["from"] == "gpt-5",
          "the management changes survived a restart")
    sh("systemctl stop %s" % NAME)
    check(sh("systemctl show -p Result --value %s" % NAME) == "success", "it stopped cleanly")
    log = journal()
    check("Traceback" not in log and "cannot read" not in log, "the journal holds no traceback or read error")


def clean_up(new_parents):
    sh("systemctl disable --now %s" % NAME, check=False)
    for path in INSTALLED:
        if os.path.islink(path) or os.path.isfile(path):
            os.unlink(path)
        elif os.path.isdir(path):
            shutil.rmtree(path)
    for path in new_parents:
        if os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)
    sh("systemctl daemon-reload", check=False)


def main():
    if os.geteuid() != 0:
        skip("not root (it installs a unit)")
    if not os.path.isdir("/run/systemd/system"):
        skip("the service manager is not systemd (no /run/systemd/system)")
    state = sh("systemctl is-system-running", check=False)
    if state not in ("running", "degraded"):
        skip("systemd is %r, not running" % state)
    present = [path for path in INSTALLED if os.path.lexists(path)]
    if present:
        skip("cliproxy is installed here (%s); not touching it" % ", ".join(present))
    new_parents = [path for path in PRIVATE_PARENTS if not os.path.lexists(path)]
    port = free_port()
    try:
        install(port)
        exercise(Service(port))
    except Exception:
        print(journal()[-4000:], file=sys.stderr)
        raise
    finally:
        clean_up(new_parents)
    print("the unit ran for real: all checks passed")


if __name__ == "__main__":
    main()
