"""A logs-dir the host will not let cliproxy write, and the warnings a service under
systemd needs at start (issue 11): ``files.directory_problem``,
``config.checks.logs_dir_warning``, the offline thread store's clean 503, the error-request
files' single warning line, and ``Service``'s start-up and reload warnings.

The proxy runs for real (``tests/support/proxy.py``). An unwritable directory is made
with a regular file where a parent directory should be: that refuses every user, root
included, where a ``chmod`` would not stop root.
"""

import json
import logging
import os

import pytest

from cliproxy.config.model import AmpCode, Config
from cliproxy.files import directory_problem
from cliproxy.config.checks import logs_dir_warning
from tests.support.fakes import FakeUpstream, JSONReply
from tests.support.proxy import RunningProxy

CLIENT_KEY = "sk-local-1"
AUTH = {"Authorization": "Bearer " + CLIENT_KEY, "Content-Type": "application/json"}
OFFLINE = {"upstream-url": ""}


def blocked_dir(tmp_path):
    """A logs-dir below a regular file: no user can create it."""
    (tmp_path / "not-a-dir").write_text("")
    return str(tmp_path / "not-a-dir" / "logs")


def warnings_from(caplog, logger):
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno == logging.WARNING]


def no_traceback(caplog):
    return all(r.exc_info is None for r in caplog.records) and "Traceback" not in caplog.text


def upload(proxy, thread_id):
    body = {"method": "uploadThread", "params": {"thread": {"id": thread_id, "messages": []}}}
    return proxy.json("POST", "/api/internal?uploadThread", body, AUTH)


# ---- files.directory_problem ------------------------------------------------------------


def test_a_writable_directory_or_one_that_can_be_created_is_no_problem(tmp_path):
    assert directory_problem(str(tmp_path)) is None
    assert directory_problem(str(tmp_path / "new" / "deeper")) is None
    assert not (tmp_path / "new").exists()  # it only looks


def test_a_file_in_the_way_is_named(tmp_path):
    path = blocked_dir(tmp_path)
    assert directory_problem(path) == "%s is not a directory" % (tmp_path / "not-a-dir")
    assert directory_problem(str(tmp_path / "not-a-dir")) == "%s is not a directory" % (tmp_path / "not-a-dir")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
def test_a_directory_without_write_permission_is_named(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert directory_problem(str(locked / "logs")) == "%s is not writable (permission denied)" % locked
    finally:
        locked.chmod(0o700)


# ---- config.checks.logs_dir_warning --------------------------------------------------------


def test_the_warning_comes_only_when_the_directory_will_be_used(tmp_path):
    path = blocked_dir(tmp_path)
    assert logs_dir_warning(Config(logs_dir=path)) is None  # request-log off, upstream set
    with_log = logs_dir_warning(Config(logs_dir=path, request_log=True))
    assert with_log.startswith("logs-dir: %s is not a directory; error-request files cannot be saved" % (
        tmp_path / "not-a-dir"))
    offline = logs_dir_warning(Config(logs_dir=path, ampcode=AmpCode(upstream_url=None)))
    assert "offline threads cannot be saved" in offline
    assert logs_dir_warning(Config(logs_dir=str(tmp_path / "logs"), request_log=True)) is None


# ---- offline uploadThread and error-request files with an unwritable logs-dir ----------


def test_offline_upload_to_an_unwritable_logs_dir_is_a_clean_503(tmp_path, caplog):
    document = {"api-keys": [CLIENT_KEY], "logs-dir": blocked_dir(tmp_path), "ampcode": OFFLINE}
    with caplog.at_level(logging.INFO):
        with RunningProxy(document, tmp_path) as proxy:
            status, body = upload(proxy, "T-1")
            assert proxy.json("POST", "/api/internal?getThread", {"method": "getThread", "params": {
                "thread": "T-1"}}, AUTH)[1]["error"]["code"] == "thread-not-found"
    assert status == 503
    message = json.dumps(body)
    assert "offline mode cannot save the thread" in message
    assert str(tmp_path / "not-a-dir" / "logs" / "threads") in message
    assert no_traceback(caplog)
    # Said once at start, before any request needed the directory.
    started = [w for w in warnings_from(caplog, "cliproxy.service") if w.startswith("logs-dir:")]
    assert len(started) == 1 and "offline threads cannot be saved" in started[0]


def test_error_files_in_an_unwritable_logs_dir_cost_one_warning_line(tmp_path, caplog):
    document = {"api-keys": [CLIENT_KEY], "logs-dir": blocked_dir(tmp_path), "request-log": True,
                "ampcode": OFFLINE}
    with caplog.at_level(logging.INFO):
        with RunningProxy(document, tmp_path) as proxy:
            for _ in range(3):  # each a 503, so each would get an error file
                status, _, _ = proxy.request("GET", "/api/user", None, AUTH)
                assert status == 503
    failures = warnings_from(caplog, "cliproxy.requests")
    assert len(failures) == 1
    assert failures[0].startswith("request-log: cannot write error-request files: %s" % (
        tmp_path / "not-a-dir" / "logs"))
    assert no_traceback(caplog)


def test_offline_threads_go_to_the_systemd_logs_directory(tmp_path):
    logs = tmp_path / "var-log-cliproxy"
    document = {"api-keys": [CLIENT_KEY], "logs-dir": ".", "ampcode": OFFLINE}
    (tmp_path / "etc").mkdir()
    with RunningProxy(document, tmp_path / "etc", environ={"LOGS_DIRECTORY": str(logs)}) as proxy:
        assert upload(proxy, "T-2") == (200, {"ok": True})
    assert json.loads((logs / "threads" / "T-2.json").read_text())["id"] == "T-2"
    assert not (tmp_path / "etc" / "threads").exists()


# ---- Service: the "no upstream key" warning at start and at each reload ----------------


def test_no_upstream_key_is_one_warning_at_start_and_one_per_reload(tmp_path, caplog):
    with FakeUpstream(default=JSONReply(body={"ok": True})) as amp:
        document = {"api-keys": [CLIENT_KEY], "ampcode": {"upstream-url": amp.url}}
        with caplog.at_level(logging.INFO):
            with RunningProxy(document, tmp_path) as proxy:
                at_start = warnings_from(caplog, "cliproxy.service")
                proxy.reload(dict(document, **{"request-retry": 2}))
                after_reload = warnings_from(caplog, "cliproxy.service")
                proxy.reload(dict(document, ampcode={"upstream-url": amp.url, "upstream-api-key": "amp-key-1"}))
                after_fix = warnings_from(caplog, "cliproxy.service")
    assert len(at_start) == 1
    assert at_start[0].startswith("no upstream Amp key: ampcode.upstream-api-key is empty, AMP_API_KEY is not set")
    assert str(tmp_path / "no-secrets.json") + " not found" in at_start[0]
    assert amp.url in at_start[0]
    assert len(after_reload) == 2 and after_reload[1] == at_start[0]
    assert after_fix == after_reload  # a key now: nothing more
    assert "amp-key-1" not in caplog.text


def test_no_warning_offline_or_with_a_key(tmp_path, caplog):
    for name in "abc":
        (tmp_path / name).mkdir()
    with caplog.at_level(logging.INFO):
        with RunningProxy({"ampcode": OFFLINE}, tmp_path / "a"):
            pass
        with RunningProxy({"ampcode": {"upstream-api-key": "amp-key-2"}}, tmp_path / "b"):
            pass
        with RunningProxy({}, tmp_path / "c", environ={"AMP_API_KEY": "amp-key-3"}):
            pass
    assert warnings_from(caplog, "cliproxy.service") == []
