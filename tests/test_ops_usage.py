"""The usage ledger (cliproxy.ops.usage): counts, hourly buckets, files that survive a
restart, and every bound."""

import datetime
import json
import logging
import os

from cliproxy.ops import usage as usage_module
from cliproxy.ops.usage import UsageLedger, UsageRecord, client_id

HOUR = 3600
T0 = 1796180000.0 - (1796180000.0 % HOUR)  # a whole hour


def record(at=T0, model="claude-opus-4-7", served="qwen", provider="openai-compatibility[0]",
           client="key-0123abcd", route="MODEL_MAPPING", status=200, **tokens):
    counts = dict(input_tokens=100, output_tokens=20, cache_read_tokens=None, cache_write_tokens=None)
    counts.update(tokens)
    return UsageRecord(at, model, served, provider, client, route, status, **counts)


def test_client_id_names_a_key_without_revealing_it():
    assert client_id("sk-local-1") == client_id("sk-local-1")
    assert client_id("sk-local-1") != client_id("sk-local-2")
    assert client_id("sk-local-1").startswith("key-") and "sk-local" not in client_id("sk-local-1")
    assert client_id(None) is None and client_id("") is None


def test_report_totals_local_versus_credits_and_hours():
    ledger = UsageLedger(None)
    ledger.record(record())
    ledger.record(record(at=T0 + 10, route="LOCAL_PROVIDER", cache_read_tokens=60))
    ledger.record(record(at=T0 + HOUR, route="AMP_CREDITS", served=None, provider="ampcode",
                         input_tokens=None, output_tokens=None))
    report = ledger.report()
    assert report["totals"] == {"requests": 3, "input_tokens": 200, "output_tokens": 40,
                                "cache_read_tokens": 60, "cache_write_tokens": 0}
    assert report["served_locally"]["requests"] == 2
    assert report["amp_credits"] == {"requests": 1, "input_tokens": 0, "output_tokens": 0,
                                     "cache_read_tokens": 0, "cache_write_tokens": 0}
    assert [(h["hour"], h["requests"]) for h in report["hours"]] == [
        (datetime.datetime.fromtimestamp(T0, datetime.timezone.utc).isoformat(), 2),
        (datetime.datetime.fromtimestamp(T0 + HOUR, datetime.timezone.utc).isoformat(), 1),
    ]
    assert {row["route"] for row in report["by_labels"]} == {"LOCAL_PROVIDER", "MODEL_MAPPING", "AMP_CREDITS"}


def test_since_keeps_the_hours_from_then_on():
    ledger = UsageLedger(None)
    ledger.record(record(at=T0))
    ledger.record(record(at=T0 + 2 * HOUR))
    since = datetime.datetime.fromtimestamp(T0 + HOUR, datetime.timezone.utc)
    report = ledger.report(since)
    assert report["totals"]["requests"] == 1
    assert report["since"] == since.isoformat()


def test_counts_survive_a_restart_and_a_cut_last_line(tmp_path):
    directory = str(tmp_path / "usage")
    first = UsageLedger(directory)
    first.record(record())
    first.record(record(status=400, input_tokens=None, output_tokens=None))
    first.flush()
    with open(os.path.join(directory, "usage-1.jsonl"), "ab") as handle:
        handle.write(b'{"time": 1, "requested_model": "cut sho')  # a kill -9 mid-write
    second = UsageLedger(directory)
    assert second.report()["totals"] == first.report()["totals"]
    assert second.report()["totals"]["requests"] == 2


def test_nothing_is_written_before_flush(tmp_path):
    directory = str(tmp_path / "usage")
    ledger = UsageLedger(directory)
    ledger.record(record())
    assert not os.path.exists(directory)
    ledger.flush()
    lines = open(os.path.join(directory, "usage-1.jsonl")).read().splitlines()
    assert [json.loads(line)["requested_model"] for line in lines] == ["claude-opus-4-7"]


def test_lines_of_the_wrong_types_are_skipped(tmp_path):
    directory = tmp_path / "usage"
    directory.mkdir()
    good = json.dumps(dict(time=T0, requested_model="m", served_model=None, provider=None, client=None,
                           route="LOCAL_PROVIDER", status=200, input_tokens=5, output_tokens=1,
                           cache_read_tokens=None, cache_write_tokens=None))
    bad = [good.replace('"input_tokens": 5', '"input_tokens": "5"'), good.replace('"status": 200', '"status": true'),
           '{"time": 1}', "[]", "not json"]
    (directory / "usage-1.jsonl").write_text("\n".join(bad + [good]) + "\n")
    assert UsageLedger(str(directory)).report()["totals"]["requests"] == 1


def test_files_rotate_and_only_the_newest_are_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(usage_module, "MAX_FILE_BYTES", 600)
    monkeypatch.setattr(usage_module, "MAX_FILES", 3)
    directory = str(tmp_path / "usage")
    ledger = UsageLedger(directory)
    for number in range(40):
        ledger.record(record(at=T0 + number))
        ledger.flush()
    names = sorted(os.listdir(directory))
    assert len(names) == 3
    assert all(os.path.getsize(os.path.join(directory, name)) <= 600 for name in names)


def test_label_sets_are_bounded(monkeypatch):
    monkeypatch.setattr(usage_module, "MAX_LABEL_SETS", 5)
    ledger = UsageLedger(None)
    for number in range(50):
        ledger.record(record(model="model-%d" % number))
    rows = ledger.metric_rows()
    assert len(rows) == 6  # five label sets, then "other"
    assert ledger.report()["totals"]["requests"] == 50
    assert any(labels[0] == "other" for labels, _ in rows)


def test_hours_are_bounded(monkeypatch):
    monkeypatch.setattr(usage_module, "MAX_HOURS", 4)
    ledger = UsageLedger(None)
    for hour in range(10):
        ledger.record(record(at=T0 + hour * HOUR))
    assert len(ledger.report()["hours"]) == 4


def test_an_unwritable_directory_warns_once_and_counts_on(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    ledger = UsageLedger(str(blocker / "usage"))
    with caplog.at_level(logging.WARNING, logger="cliproxy.usage"):
        for _ in range(3):
            ledger.record(record())
            ledger.flush()
    assert len([r for r in caplog.records if "usage cannot be written" in r.getMessage()]) == 1
    assert ledger.report()["totals"]["requests"] == 3


def test_a_long_requested_model_is_cut_short_in_labels():
    ledger = UsageLedger(None)
    ledger.record(record(model="m" * 200000))
    (labels, _), = ledger.metric_rows()
    assert len(labels[0]) == usage_module.MAX_MODEL_CHARS + 1 and labels[0].endswith("…")
