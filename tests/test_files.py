"""Atomic file replacement and keeping the newest files, on the real filesystem."""

import os
import stat

from cliproxy.amp.offline import ThreadStore
from cliproxy.files import keep_newest, replace_file


def test_replace_file_keeps_mode_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "f.json"
    path.write_bytes(b"old")
    os.chmod(str(path), 0o640)
    replace_file(str(path), b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o640
    assert os.listdir(str(tmp_path)) == ["f.json"]


def test_a_new_file_is_private(tmp_path):
    replace_file(str(tmp_path / "n"), b"x")
    assert stat.S_IMODE(os.stat(str(tmp_path / "n")).st_mode) == 0o600


def test_keep_newest_removes_the_oldest_matching_files_only(tmp_path):
    for index, name in enumerate(["a.log", "b.log", "c.log", "other.txt"]):
        (tmp_path / name).write_text(name)
        os.utime(str(tmp_path / name), ns=(index * 10**9, index * 10**9))
    keep_newest(str(tmp_path), lambda name: name.endswith(".log"), 2)
    assert sorted(os.listdir(str(tmp_path))) == ["b.log", "c.log", "other.txt"]
    keep_newest(str(tmp_path), lambda name: True, 0)  # 0 keeps all
    assert len(os.listdir(str(tmp_path))) == 3


def test_thread_store_keeps_its_newest_threads(tmp_path):
    store = ThreadStore(str(tmp_path), limit=2)
    for number in range(3):
        store.save({"id": "T-%d" % number, "n": number})
        path = str(tmp_path / ("T-%d.json" % number))
        os.utime(path, ns=(number * 10**9, number * 10**9))
    store.save({"id": "T-2", "n": 22})  # a re-upload replaces, it does not add
    assert sorted(os.listdir(str(tmp_path))) == ["T-1.json", "T-2.json"]
    assert (tmp_path / "T-2.json").read_text() == '{"id": "T-2", "n": 22}'
