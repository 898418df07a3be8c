"""The command line as a user runs it: the built ``cliproxy.pyz`` in a subprocess.

Covers SPEC §1: built-in defaults, ``check``, ``route``, ``--version``, exit codes,
SIGTERM drain, SIGHUP reload and the systemd notifications.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

import build_zipapp
from cliproxy import __version__

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def pyz(tmp_path_factory):
    path = tmp_path_factory.mktemp("dist") / "cliproxy.pyz"
    path.write_bytes(build_zipapp.build_archive(ROOT))
    return str(path)


def run(pyz, *args, cwd, env=None, timeout=20):
    return subprocess.run(
        [sys.executable, pyz] + list(args), cwd=str(cwd), capture_output=True, text=True, timeout=timeout, env=env
    )


def write(path, document):
    path.write_text(json.dumps(document))
    return str(path)


class Served:
    """A ``cliproxy.pyz`` serving in a subprocess; the bound URL is read from its log."""

    def __init__(self, pyz, cwd, *args, env=None):
        environment = dict(os.environ, **(env or {}))
        environment.pop("NOTIFY_SOCKET", None) if env is None or "NOTIFY_SOCKET" not in env else None
        self.process = subprocess.Popen(
            [sys.executable, pyz, "--port", "0"] + list(args),
            cwd=str(cwd),
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        self.lines = []
        self.url = self._wait_for(r"listening url=(\S+)").group(1)

    def _wait_for(self, pattern, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = self.process.stderr.readline()
            if not line:
                raise AssertionError("exited early:\n" + "".join(self.lines))
            self.lines.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError("no %r in:\n%s" % (pattern, "".join(self.lines)))

    def get(self, path, headers=None):
        request = urllib.request.Request(self.url + path, headers=headers or {})
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()

    def stop(self, sig=signal.SIGTERM):
        self.process.send_signal(sig)
        rest, _ = self.process.communicate(timeout=20)
        self.lines.append(rest)
        return self.process.returncode


def test_version(pyz, tmp_path):
    result = run(pyz, "--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == "cliproxy " + __version__


def test_usage_error_exits_2(pyz, tmp_path):
    assert run(pyz, "--no-such-flag", cwd=tmp_path).returncode == 2
    assert run(pyz, "route", cwd=tmp_path).returncode == 2


def test_check_accepts_a_good_file(pyz, tmp_path):
    config = write(tmp_path / "c.json", {"api-keys": ["k"], "ampcode": {"model-mappings": [{"from": "a", "to": "b"}]}})
    result = run(pyz, "check", "--config", config, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_check_reports_every_error_with_its_path(pyz, tmp_path):
    config = write(
        tmp_path / "c.json",
        {
            "port": "eighty",
            "api-keys": ["k"],
            "ampcode": {"model-mapings": [], "model-mappings": [{"from": "a"}, {"from": "(", "to": "b", "regex": True}]},
        },
    )
    result = run(pyz, "check", "--config", config, cwd=tmp_path)
    assert result.returncode == 1
    for path in ("port", "ampcode.model-mapings", "ampcode.model-mappings[0].to", "ampcode.model-mappings[1].from"):
        assert path in result.stderr, path


def test_check_of_a_missing_file_is_exit_1(pyz, tmp_path):
    result = run(pyz, "check", "--config", str(tmp_path / "nope.json"), cwd=tmp_path)
    assert result.returncode == 1 and "nope.json" in result.stderr


def test_route_explains_without_traffic_and_without_secrets(pyz, tmp_path):
    config = write(
        tmp_path / "c.json",
        {
            "api-keys": ["k"],
            "openai-compatibility": [
                {"name": "ollama", "base-url": "http://127.0.0.1:9/v1", "api-key-entries": [{"api-key": "sk-very-secret"}],
                 "models": [{"name": "qwen3-coder:30b", "alias": "qwen3-coder"}]}
            ],
            "ampcode": {"model-mappings": [{"from": "claude-opus-4-5-20251101", "to": "qwen3-coder"}]},
        },
    )
    result = run(pyz, "route", "claude-opus-4-5-20251101(high)", "--config", config, "--protocol", "openai", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "MODEL_MAPPING" in result.stdout
    assert "qwen3-coder:30b" in result.stdout
    assert "openai-compatibility[0]" in result.stdout
    assert "sk-very-secret" not in result.stdout


def test_serves_on_built_in_defaults_and_says_so(pyz, tmp_path):
    served = Served(pyz, tmp_path)
    try:
        assert "built-in defaults" in served.lines[0]
        assert served.get("/healthz") == (200, b'{"status":"ok"}')
    finally:
        assert served.stop() == 0


def test_bad_config_and_busy_port_exit_1(pyz, tmp_path):
    bad = write(tmp_path / "bad.json", {"port": -1})
    result = run(pyz, "--config", bad, cwd=tmp_path)
    assert result.returncode == 1 and "port" in result.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        config = write(tmp_path / "c.json", {"port": busy.getsockname()[1]})
        result = run(pyz, "--config", config, cwd=tmp_path)
    assert result.returncode == 1
    assert "cannot listen" in result.stderr


def test_empty_api_keys_on_a_public_address_refuses_to_start(pyz, tmp_path):
    config = write(tmp_path / "c.json", {"host": "0.0.0.0"})
    result = run(pyz, "--config", config, cwd=tmp_path)
    assert result.returncode == 1
    assert "api-keys" in result.stderr


def test_sighup_reloads_and_systemd_is_told(pyz, tmp_path):
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_path = str(tmp_path / "notify.sock")
    notify.bind(notify_path)
    notify.settimeout(10)
    config_path = tmp_path / "c.json"
    write(config_path, {"api-keys": ["k1"], "reload-interval": 3600})
    served = Served(pyz, tmp_path, "--config", str(config_path), env={"NOTIFY_SOCKET": notify_path})
    try:
        assert notify.recv(100) == b"READY=1"
        write(config_path, {"api-keys": ["k2"], "reload-interval": 3600})
        served.process.send_signal(signal.SIGHUP)
        assert notify.recv(100) == b"RELOADING=1"
        assert notify.recv(100) == b"READY=1"
        assert served.get("/metrics", {"Authorization": "Bearer k2"})[0] == 200
        assert served.stop() == 0
        assert notify.recv(100) == b"STOPPING=1"
    finally:
        if served.process.poll() is None:
            served.process.kill()
        notify.close()


def test_json_log_format(pyz, tmp_path):
    process = subprocess.Popen(
        [sys.executable, pyz, "--port", "0", "--log-format", "json"], cwd=str(tmp_path), stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, AMP_API_KEY="sk-amp-test"),  # no "no upstream key" warning before "listening"
    )
    try:
        first = json.loads(process.stderr.readline())
        assert first["level"] == "info" and "built-in defaults" in first["msg"]
        listening = json.loads(process.stderr.readline())
        assert listening["url"].startswith("http://127.0.0.1:")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_serves_https_when_tls_is_enabled(pyz, tmp_path):
    import ssl

    certs = os.path.join(ROOT, "tests", "support", "certs")
    config = write(
        tmp_path / "c.json",
        {"tls": {"enable": True, "cert": os.path.join(certs, "server.pem"), "key": os.path.join(certs, "server.key")}},
    )
    served = Served(pyz, tmp_path, "--config", config)
    try:
        assert served.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=os.path.join(certs, "server.pem"))
        with urllib.request.urlopen(served.url + "/healthz", timeout=5, context=context) as response:
            assert response.status == 200
    finally:
        assert served.stop() == 0


# -- options in any position, defaults, old interpreters ----------------------------------


@pytest.mark.parametrize("order", ["before", "after"])
def test_config_is_honoured_before_or_after_the_command(pyz, tmp_path, order):
    bad = write(tmp_path / "bad.json", {"nope": 1})
    args = ["--config", bad, "check"] if order == "before" else ["check", "--config", bad]
    done = run(pyz, *args, cwd=tmp_path)
    assert done.returncode == 1
    assert "nope: unknown key" in done.stderr
    assert "ok:" not in done.stdout


def test_route_reads_a_config_given_before_the_command(pyz, tmp_path):
    good = write(tmp_path / "c.json", {"openai-compatibility": [
        {"name": "o", "base-url": "http://127.0.0.1:1/v1", "models": [{"name": "gpt-5"}]}]})
    done = run(pyz, "--config", good, "route", "gpt-5", cwd=tmp_path)
    assert done.returncode == 0
    assert "route: LOCAL_PROVIDER" in done.stdout


@pytest.mark.parametrize(
    "model,protocol",
    [("gpt-5", "openai"), ("o3-mini", "openai"), ("codex-mini", "openai"), ("gemini-2.5-pro", "gemini"),
     ("claude-opus-4-7", "claude"), ("qwen3-coder", "claude")],
)
def test_route_protocol_defaults_from_the_model_family(pyz, tmp_path, model, protocol):
    done = run(pyz, "route", model, cwd=tmp_path)
    assert "client protocol: %s" % protocol in done.stdout


def test_check_warns_about_a_mapping_nothing_serves(pyz, tmp_path):
    config = write(tmp_path / "c.json", {
        "openai-compatibility": [{"name": "o", "base-url": "http://127.0.0.1:1/v1", "models": [{"name": "qwen"}]}],
        "ampcode": {"model-mappings": [{"from": "a", "to": "qwen"}, {"from": "b", "to": ["nope", "nada(high)"]}]}})
    done = run(pyz, "check", "--config", config, cwd=tmp_path, env=dict(os.environ, AMP_API_KEY="sk-amp-test"))
    assert done.returncode == 0
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: ampcode.model-mappings[1]: no local provider serves nope or nada(high), "
                        "so this mapping never applies"]


def test_help_names_every_option_with_its_default(pyz, tmp_path):
    done = run(pyz, "--help", cwd=tmp_path)
    assert done.returncode == 0
    for option in ("--config", "--host", "--port", "--log-level", "--log-format", "--version"):
        assert option in done.stdout
    assert "8317" in done.stdout and "127.0.0.1" in done.stdout
    for command in ("check", "route", "serve"):
        assert run(pyz, command, "--help", cwd=tmp_path).returncode == 0


def _old_pythons():
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for version in ("2.7", "3.6", "3.7"):
        versions = os.path.join(root, "versions")
        names = sorted(n for n in os.listdir(versions) if n.startswith(version + ".")) if os.path.isdir(versions) else []
        if names:
            found.append(os.path.join(versions, names[-1], "bin", "python"))
    return found


@pytest.mark.parametrize("python", _old_pythons() or [pytest.param(None, marks=pytest.mark.skip("no old Python found"))])
def test_an_old_python_gets_one_line_and_exit_1(pyz, tmp_path, python):
    done = subprocess.run([python, pyz, "--version"], capture_output=True, text=True, timeout=20, cwd=str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.startswith("cliproxy needs Python 3.8 or newer; this is Python ")
    assert "Traceback" not in done.stderr


# ---- issue 11: what a host under systemd will not allow, said by check and at start -----


def isolated_env(tmp_path, **extra):
    """The environment without an Amp key: HOME has no secrets.json, no AMP_API_KEY."""
    environment = {k: v for k, v in os.environ.items() if k not in ("AMP_API_KEY", "NOTIFY_SOCKET")}
    environment.update(HOME=str(tmp_path / "home"), **extra)
    return environment


def test_check_warns_when_no_upstream_key_is_found(pyz, tmp_path):
    config = write(tmp_path / "c.json", {"api-keys": ["k"]})
    done = run(pyz, "check", "--config", config, cwd=tmp_path, env=isolated_env(tmp_path))
    assert done.returncode == 0 and done.stdout.startswith("ok:")
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: no upstream Amp key: ampcode.upstream-api-key is empty, "
                                  "AMP_API_KEY is not set")
    assert str(tmp_path / "home" / ".local" / "share" / "amp" / "secrets.json") + " not found" in warnings[0]
    found = run(pyz, "check", "--config", config, cwd=tmp_path, env=isolated_env(tmp_path, AMP_API_KEY="sk-amp-1"))
    assert found.returncode == 0 and "warning:" not in found.stderr


def test_check_reads_file_values_from_the_credentials_directory(pyz, tmp_path):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "amp-api-key").write_text("sk-amp-credential\n")
    config = write(tmp_path / "c.json", {"ampcode": {"upstream-api-key": "file:amp-api-key"}})
    done = run(pyz, "check", "--config", config, cwd=tmp_path,
               env=isolated_env(tmp_path, CREDENTIALS_DIRECTORY=str(credentials)))
    assert (done.returncode, done.stderr) == (0, "")
    missing = run(pyz, "check", "--config", config, cwd=tmp_path, env=isolated_env(tmp_path))
    assert missing.returncode == 1
    assert "error: ampcode.upstream-api-key: cannot read %s" % (tmp_path / "amp-api-key") in missing.stderr
    assert "sk-amp-credential" not in missing.stderr


def test_check_warns_about_a_logs_dir_it_cannot_write(pyz, tmp_path):
    (tmp_path / "a-file").write_text("")
    config = write(tmp_path / "c.json", {"logs-dir": "a-file/logs", "ampcode": {"upstream-url": ""}})
    done = run(pyz, "check", "--config", config, cwd=tmp_path, env=isolated_env(tmp_path))
    assert done.returncode == 0
    assert done.stderr.splitlines() == [
        "warning: logs-dir: %s is not a directory; offline threads cannot be saved (set logs-dir to a "
        "writable directory; under systemd, LogsDirectory= or StateDirectory= provides one)" % (tmp_path / "a-file")]


def _upload(url, thread_id):
    body = json.dumps({"method": "uploadThread", "params": {"thread": {"id": thread_id}}}).encode()
    request = urllib.request.Request(url + "/api/internal?uploadThread", data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_serving_under_systemd_directories_keeps_threads_in_the_logs_directory(pyz, tmp_path):
    etc, logs = tmp_path / "etc", tmp_path / "log"
    etc.mkdir()
    config = write(etc / "config.json", {"ampcode": {"upstream-url": ""}})
    served = Served(pyz, tmp_path, "--config", config,
                    env=isolated_env(tmp_path, LOGS_DIRECTORY=str(logs), STATE_DIRECTORY=str(tmp_path / "lib")))
    try:
        assert _upload(served.url, "T-1") == (200, {"ok": True})
        assert served.stop() == 0
    finally:
        if served.process.poll() is None:
            served.process.kill()
    assert (logs / "logs" / "threads" / "T-1.json").exists()
    assert not (etc / "logs").exists()


def test_serving_with_an_unwritable_logs_dir_warns_once_and_answers_503(pyz, tmp_path):
    (tmp_path / "a-file").write_text("")
    config = write(tmp_path / "c.json", {"logs-dir": "a-file/logs", "ampcode": {"upstream-url": ""}})
    served = Served(pyz, tmp_path, "--config", config, env=isolated_env(tmp_path))
    try:
        status, body = _upload(served.url, "T-1")
        served.process.send_signal(signal.SIGTERM)
        _, rest = served.process.communicate(timeout=20)
    finally:
        if served.process.poll() is None:
            served.process.kill()
    assert served.process.returncode == 0
    assert status == 503
    assert "offline mode cannot save the thread" in body["error"]["message"]
    log = "".join(served.lines) + rest
    assert "request failed" in log  # the 503's own line is in what was read
    assert log.count("logs-dir: %s is not a directory" % (tmp_path / "a-file")) == 1
    assert "Traceback" not in log
