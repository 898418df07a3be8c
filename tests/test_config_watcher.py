"""Tests for cliproxy.config.watcher: change detection, swap, rejection, restart keys."""

import asyncio
import json
import os

from cliproxy.config.loader import load_file, parse_document
from cliproxy.config.model import TLS
from cliproxy.config.watcher import ConfigStore, ConfigWatcher, fingerprint, restart_needed


class Harness(object):
    """A config file, a store loaded from it, and a watcher recording its callbacks."""

    def __init__(self, tmp_path, doc, **kwargs):
        self.path = str(tmp_path / "config.json")
        self.write(doc)
        self.loads = 0
        self.reloads = []
        self.errors = []
        self.store = ConfigStore(self.load(self.path)[0])
        self.watcher = ConfigWatcher(
            self.path,
            self.store,
            loader=self.load,
            on_reload=lambda old, new: self.reloads.append((old, new)),
            on_error=self.errors.append,
            **kwargs
        )

    def load(self, path):
        self.loads += 1
        return load_file(path, environ={})

    def write(self, doc):
        text = doc if isinstance(doc, str) else json.dumps(doc)
        with open(self.path, "w") as handle:
            handle.write(text)

    def save_atomically(self, doc):
        """What editors do: write a new file beside it, then rename it over."""
        temp = self.path + ".swp"
        with open(temp, "w") as handle:
            handle.write(json.dumps(doc))
        os.replace(temp, self.path)


def test_store_swap_returns_the_old_config():
    first = parse_document({})[0]
    second = parse_document({"port": 1})[0]
    store = ConfigStore(first)
    assert store.current is first
    assert store.swap(second) is first
    assert store.current is second


def test_no_change_no_reload(tmp_path):
    h = Harness(tmp_path, {"port": 9000})
    assert h.watcher.poll() is None
    assert h.watcher.poll() is None
    assert h.loads == 1 and h.reloads == []


def test_in_place_edit_is_picked_up(tmp_path):
    h = Harness(tmp_path, {"port": 9000})
    old = h.store.current
    h.write({"port": 9000, "request-retry": 3})
    assert h.watcher.poll() is True
    assert h.store.current.request_retry == 3
    assert h.reloads == [(old, h.store.current)]
    assert h.watcher.poll() is None


def test_atomic_rename_save_is_picked_up(tmp_path):
    h = Harness(tmp_path, {"request-retry": 1})
    inode = os.stat(h.path).st_ino
    h.save_atomically({"request-retry": 2})
    assert os.stat(h.path).st_ino != inode
    assert h.watcher.poll() is True
    assert h.store.current.request_retry == 2


def test_touch_without_change_does_not_reload(tmp_path):
    h = Harness(tmp_path, {"port": 9000})
    st = os.stat(h.path)
    os.utime(h.path, ns=(st.st_atime_ns + 10 ** 9, st.st_mtime_ns + 10 ** 9))
    assert h.watcher.poll() is None
    assert h.loads == 1 and h.reloads == []


def test_same_stat_rewrite_is_caught_by_the_periodic_hash(tmp_path):
    h = Harness(tmp_path, {"request-retry": 1}, rehash_every=3)
    st = os.stat(h.path)
    h.write({"request-retry": 2})  # same size
    os.utime(h.path, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old mtime
    results = [h.watcher.poll() for _ in range(3)]
    assert True in results
    assert h.store.current.request_retry == 2


def test_invalid_file_is_rejected_once_and_the_old_config_kept(tmp_path):
    h = Harness(tmp_path, {"port": 9000})
    good = h.store.current
    h.write({"port": "nine thousand", "debug": "yes"})
    assert h.watcher.poll() is False
    assert h.errors == [[
        "port: must be an integer from 0 to 65535 (0: any free port)",
        "debug: must be true or false",
    ]]
    assert h.store.current is good
    os.utime(h.path, ns=(1, 1))  # the stat changes, the bad content does not
    assert h.watcher.poll() is None
    assert len(h.errors) == 1
    h.write({"port": 9001})
    assert h.watcher.poll() is True
    assert h.store.current.port == 9001


def test_invalid_json_is_rejected_with_line_and_column(tmp_path):
    h = Harness(tmp_path, {"port": 9000})
    h.write('{"port": 9000,,}')
    assert h.watcher.poll() is False
    assert h.errors[0][0].startswith(h.path + ": invalid JSON at line 1 column 15")
    assert h.store.current.port == 9000


def test_deleted_file_is_reported_once_and_recovery_works(tmp_path):
    h = Harness(tmp_path, {"port": 9000})
    good = h.store.current
    os.remove(h.path)
    assert h.watcher.poll() is False
    assert h.errors == [["%s: cannot read: No such file or directory" % h.path]]
    assert h.watcher.poll() is None
    assert len(h.errors) == 1 and h.store.current is good
    h.write({"port": 9000})  # back with the content in force: nothing to reload
    assert h.watcher.poll() is None
    os.remove(h.path)
    assert h.watcher.poll() is False  # a second disappearance is a new event
    h.write({"port": 9002})
    assert h.watcher.poll() is True
    assert h.store.current.port == 9002


def test_reload_now_rereads_whatever_the_fingerprint(tmp_path):
    h = Harness(tmp_path, {"port": 9000})
    assert h.watcher.reload_now() is True
    assert h.loads == 2 and len(h.reloads) == 1
    h.write("{")
    assert h.watcher.poll() is False
    assert h.watcher.reload_now() is False  # asked for explicitly: reported again
    assert len(h.errors) == 2


def test_reload_interval_follows_the_config(tmp_path):
    h = Harness(tmp_path, {}, interval=2.0)
    h.write({"reload-interval": 0.5})
    assert h.watcher.poll() is True
    assert h.watcher.interval == 0.5


def test_warnings_of_a_reloaded_file_are_kept(tmp_path):
    h = Harness(tmp_path, {})
    h.write({"prot": 1})
    assert h.watcher.poll() is True
    assert h.watcher.last_warnings == ['prot: unknown key (did you mean "port"?)']


def test_default_callbacks_log(tmp_path, caplog):
    path = str(tmp_path / "config.json")
    with open(path, "w") as handle:
        handle.write("{}")
    store = ConfigStore(load_file(path)[0])
    watcher = ConfigWatcher(path, store)
    with open(path, "w") as handle:
        handle.write('{"port": 1234}')
    with caplog.at_level("INFO", logger="cliproxy.config.watcher"):
        assert watcher.poll() is True
        with open(path, "w") as handle:
            handle.write('{"port": -1}')
        assert watcher.poll() is False
    text = caplog.text
    assert "config reloaded" in text
    assert "port changed; it takes effect after a restart" in text
    assert "the previous config stays in force: port: must be an integer" in text


def test_run_polls_until_cancelled(tmp_path):
    h = Harness(tmp_path, {"reload-interval": 0.01}, interval=0.01)

    async def scenario():
        reloaded = asyncio.Event()
        h.watcher.on_reload = lambda old, new: reloaded.set()
        task = asyncio.ensure_future(h.watcher.run())
        await asyncio.sleep(0)
        h.write({"reload-interval": 0.01, "request-retry": 5})
        await asyncio.wait_for(reloaded.wait(), 5)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        return task.cancelled()

    assert asyncio.run(scenario()) is True
    assert h.store.current.request_retry == 5


def test_fingerprint_changes_with_content_and_inode(tmp_path):
    path = tmp_path / "f.json"
    path.write_text("{}")
    first = fingerprint(str(path))
    path.write_text('{"a": 1}')
    second = fingerprint(str(path))
    assert first.digest != second.digest and second.size == 8
    assert first.inode == second.inode


def test_restart_needed_names_host_port_and_tls():
    base = parse_document({})[0]
    same = parse_document({"request-retry": 4, "debug": True})[0]
    moved = parse_document({"host": "::1", "port": 9999, "tls": {"enable": False, "cert": "c.pem"}})[0]
    assert restart_needed(base, same) == []
    assert restart_needed(base, moved) == ["host", "port", "tls"]
    assert moved.tls == TLS(False, "c.pem", None)
