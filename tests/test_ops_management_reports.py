"""Tests for the management API's read-outs: ``/logs`` (the recent request lines),
``/error-logs`` (the error-request files of logs-dir) and ``/usage``."""

import datetime
import json
import os

import pytest

from cliproxy.config.loader import load_file
from cliproxy.ops.management.params import parse_since
from cliproxy.ops.requestlog import RecentLines
from tests.support.management import Harness, write_json

SECRET = "mgmt-secret-0123456789"
UTC = datetime.timezone.utc


class Usage:
    """The one method the route needs, recording what it was asked."""

    def __init__(self):
        self.asked = []

    def report(self, since):
        self.asked.append(since)
        return {"totals": {"requests": 3}, "hours": [], "since": since.isoformat() if since else None}


@pytest.fixture
def logs_dir(tmp_path):
    directory = tmp_path / "logs"
    directory.mkdir()
    return directory


@pytest.fixture
def make(tmp_path, logs_dir):
    def build(**options):
        path = tmp_path / "config.json"
        write_json(path, {"remote-management": {"secret-key": SECRET}, "logs-dir": "logs", "request-log": True})
        config, _ = load_file(str(path), environ={})
        return Harness(str(path), config, {}, secret=SECRET, **options)

    return build


# ---- /logs -----------------------------------------------------------------------------


def test_recent_lines_are_numbered_and_bounded():
    lines = RecentLines(limit=3)
    assert (lines.latest, lines.after(0)) == (0, [])
    for i in range(5):
        lines.add({"status": 200 + i, "aborted": None})
    assert lines.latest == 5
    assert [line["seq"] for line in lines.after(0)] == [3, 4, 5]
    assert lines.after(3) == [{"seq": 4, "status": 203}, {"seq": 5, "status": 204}]
    assert lines.after(5) == [] and lines.after(99) == []


def test_logs_answer_the_lines_after_the_one_given(make):
    lines = RecentLines()
    h = make(request_lines=lines)
    assert h.ok("GET", "/logs") == {"request-log": True, "latest": 0, "lines": []}
    for status in (200, 404, 502):
        lines.add({"method": "POST", "status": status})
    answer = h.ok("GET", "/logs")
    assert answer["latest"] == 3
    assert [line["status"] for line in answer["lines"]] == [200, 404, 502]
    assert h.ok("GET", "/logs", query="after=2")["lines"] == [{"seq": 3, "method": "POST", "status": 502}]
    assert h.ok("GET", "/logs", query="x=1&after=3")["lines"] == []


@pytest.mark.parametrize("query", ["after=-1", "after=two", "after=", "after=1e3", "after=%EF%BC%91"])
def test_bad_after_is_400(make, query):
    h = make(request_lines=RecentLines())
    assert "after" in h.fails(400, "GET", "/logs", query=query).message


def test_logs_are_read_only(make):
    h = make(request_lines=RecentLines())
    assert ("allow", "GET") in h.fails(405, "DELETE", "/logs").headers


# ---- /error-logs -----------------------------------------------------------------------


def _error_file(logs_dir, name, content, mtime):
    path = logs_dir / name
    path.write_text(json.dumps(content))
    os.utime(str(path), (mtime, mtime))
    return path


@pytest.fixture
def files(logs_dir):
    _error_file(logs_dir, "error-20250101T000000-1.json", {"n": 1}, 1735689600)
    _error_file(logs_dir, "error-20250102T000000-2.json", {"n": 2}, 1735776000)
    (logs_dir / "notes.txt").write_text("not an error file")
    (logs_dir / "threads").mkdir()
    (logs_dir / "threads" / "error-x.json").write_text("{}")
    return logs_dir


def test_error_logs_lists_only_error_files_newest_first(make, files):
    h = make()
    assert h.ok("GET", "/error-logs") == {
        "files": [
            {"name": "error-20250102T000000-2.json", "size": 8, "modified": "2025-01-02T00:00:00.000Z"},
            {"name": "error-20250101T000000-1.json", "size": 8, "modified": "2025-01-01T00:00:00.000Z"},
        ]
    }


def test_error_logs_without_a_directory_is_an_empty_list(make, logs_dir):
    logs_dir.rmdir()
    assert make().ok("GET", "/error-logs") == {"files": []}


def test_error_log_is_read_and_deleted_by_name(make, files):
    h = make()
    assert h.ok("GET", "/error-logs/error-20250101T000000-1.json") == {"n": 1}
    assert h.ok("DELETE", "/error-logs/error-20250101T000000-1.json") == {"ok": True, "removed": 1}
    assert not (files / "error-20250101T000000-1.json").exists()
    h.fails(404, "GET", "/error-logs/error-20250101T000000-1.json")
    h.fails(404, "DELETE", "/error-logs/error-20250101T000000-1.json")


def test_delete_without_a_name_removes_every_error_file_and_nothing_else(make, files):
    h = make()
    assert h.ok("DELETE", "/error-logs") == {"ok": True, "removed": 2}
    assert sorted(os.listdir(str(files))) == ["notes.txt", "threads"]
    assert (files / "threads" / "error-x.json").exists()


@pytest.mark.parametrize(
    "name",
    [
        "notes.txt",
        ".error-hidden.json",
        "error-x.json%00",
        "error-%2e%2e.json",
        "error-a b.json",
        "..error-x.json",
        "threads",
    ],
)
def test_names_that_are_not_plain_error_file_names_are_refused(make, files, name):
    h = make()
    for method in ("GET", "DELETE"):
        error = h.fails(400, method, "/error-logs/" + name)
        assert "error-request file name" in error.message
    assert (files / "notes.txt").exists()


@pytest.mark.parametrize("sub", ["/error-logs/threads/error-x.json", "/error-logs/a/b"])
def test_paths_below_a_name_are_404(make, files, sub):
    make().fails(404, "GET", sub)
    assert (files / "threads" / "error-x.json").exists()


def test_a_symlink_named_like_an_error_file_leads_nowhere(make, files, tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text('{"secret": "outside"}')
    os.symlink(str(outside), str(files / "error-link.json"))
    h = make()
    assert "error-link.json" not in [f["name"] for f in h.ok("GET", "/error-logs")["files"]]
    h.fails(404, "GET", "/error-logs/error-link.json")
    h.fails(404, "DELETE", "/error-logs/error-link.json")
    assert h.ok("DELETE", "/error-logs")["removed"] == 2
    assert outside.exists() and (files / "error-link.json").is_symlink()


def test_error_logs_take_get_and_delete_only(make, files):
    error = make().fails(405, "PUT", "/error-logs/error-20250101T000000-1.json", {})
    assert ("allow", "GET, DELETE") in error.headers


# ---- /usage ----------------------------------------------------------------------------


def test_usage_without_a_ledger_is_404(make):
    error = make().fails(404, "GET", "/usage")
    assert error.message == "usage accounting is not enabled"


def test_usage_answers_the_report(make):
    usage = Usage()
    h = make(usage=usage)
    assert h.ok("GET", "/usage") == {"totals": {"requests": 3}, "hours": [], "since": None}
    assert usage.asked == [None]


@pytest.mark.parametrize(
    "query, expected",
    [
        ("since=2025-03-01", datetime.datetime(2025, 3, 1, tzinfo=UTC)),
        ("since=2025-03-01T10:30:00Z", datetime.datetime(2025, 3, 1, 10, 30, tzinfo=UTC)),
        ("since=2025-03-01T10:30:00+02:00", datetime.datetime(2025, 3, 1, 8, 30, tzinfo=UTC)),
        ("since=2025-03-01T10:30:00%2B02:00", datetime.datetime(2025, 3, 1, 8, 30, tzinfo=UTC)),
        ("since=2025-03-01T10:30-05:30", datetime.datetime(2025, 3, 1, 16, 0, tzinfo=UTC)),
        ("since=2025-03-01T10:30:00.5Z", datetime.datetime(2025, 3, 1, 10, 30, 0, 500000, tzinfo=UTC)),
    ],
)
def test_usage_since_is_an_aware_datetime(make, query, expected):
    usage = Usage()
    make(usage=usage).ok("GET", "/usage", query=query)
    (since,) = usage.asked
    assert since.tzinfo is not None
    assert since == expected


@pytest.mark.parametrize(
    "text",
    ["yesterday", "2025-03-01T10:30:00", "2025-13-01", "2025-02-30T00:00Z", "2025-03-01T25:00Z", "1741000000", ""],
)
def test_bad_since_is_400_and_the_ledger_is_not_asked(make, text):
    usage = Usage()
    error = make(usage=usage).fails(400, "GET", "/usage", query="since=" + text)
    assert error.message.startswith("since: must be an ISO 8601 time")
    assert usage.asked == []


def test_parse_since_keeps_the_offset():
    moment = parse_since("2025-03-01T10:30:00-07:00")
    assert moment.utcoffset() == datetime.timedelta(hours=-7)
    with pytest.raises(ValueError):
        parse_since("2025-03-01T10:30:00+24:00")


def test_a_logs_dir_that_is_a_file_is_one_clean_error(make, logs_dir):
    logs_dir.rmdir()
    logs_dir.write_text("not a directory")
    h = make()
    error = h.fails(500, "GET", "/error-logs")
    assert "cannot list logs-dir" in error.message
    h.fails(500, "DELETE", "/error-logs")
    h.fails(404, "GET", "/error-logs/error-1.json")
