"""Tests for the management API's gate: the lock-out after wrong keys (issue 12), on a
fake clock, and its bounded memory."""

import logging

import pytest

from cliproxy.config.loader import load_file
from cliproxy.ops.management.gate import LOCK_SECONDS, MAX_FAILURES, MAX_PEERS, WINDOW_SECONDS, Lockout
from tests.support.management import Harness, write_json
from tests.support.proxy import FakeClock

SECRET = "mgmt-secret-0123456789"
ATTACKER = ("127.0.0.2", 5555)
OTHER = ("127.0.0.3", 5555)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def make(tmp_path, clock):
    def build(allow_remote=False):
        path = tmp_path / "config.json"
        write_json(path, {"remote-management": {"secret-key": SECRET, "allow-remote": allow_remote}})
        config, _ = load_file(str(path), environ={})
        return Harness(str(path), config, {}, secret=SECRET, clock=clock)

    return build


@pytest.fixture
def h(make):
    return make()


def _wrong(h, times, peer=ATTACKER, carrier="bearer"):
    for i in range(times):
        h.fails(401, "GET", "/ampcode", key="wrong-key-%d" % i, peer=peer, carrier=carrier)


def test_five_wrong_keys_lock_the_peer_out_whatever_it_sends(h, clock):
    _wrong(h, MAX_FAILURES)
    for key in (SECRET, "wrong-again", ""):
        error = h.fails(429, "GET", "/ampcode", key=key, peer=ATTACKER)
        assert ("retry-after", "600") in error.headers
        assert SECRET not in error.message
    h.fails(429, "PUT", "/debug", True, peer=ATTACKER)
    clock.advance(LOCK_SECONDS - 1)
    assert ("retry-after", "1") in h.fails(429, "GET", "/config", peer=ATTACKER).headers


def test_the_lock_ends_after_ten_minutes(h, clock):
    _wrong(h, MAX_FAILURES)
    clock.advance(LOCK_SECONDS)
    assert "upstream-url" in h.ok("GET", "/ampcode", peer=ATTACKER)
    # Served its time: it takes another five wrong keys to lock it out again.
    _wrong(h, MAX_FAILURES - 1)
    assert "upstream-url" in h.ok("GET", "/ampcode", peer=ATTACKER)


def test_other_peers_are_not_locked_out(h):
    _wrong(h, MAX_FAILURES)
    assert "upstream-url" in h.ok("GET", "/ampcode", peer=OTHER)


def test_four_wrong_keys_are_not_enough(h):
    _wrong(h, MAX_FAILURES - 1, carrier="x-management-key")
    assert "upstream-url" in h.ok("GET", "/ampcode", peer=ATTACKER)


def test_failures_spread_over_more_than_the_window_do_not_lock(h, clock):
    for _ in range(MAX_FAILURES + 3):
        _wrong(h, 1)
        clock.advance(WINDOW_SECONDS / (MAX_FAILURES - 1) + 1)
    assert "upstream-url" in h.ok("GET", "/ampcode", peer=ATTACKER)


def test_a_missing_key_does_not_count(h):
    for _ in range(MAX_FAILURES * 2):
        h.fails(401, "GET", "/ampcode", key="", peer=ATTACKER)
    assert "upstream-url" in h.ok("GET", "/ampcode", peer=ATTACKER)


def test_remote_peers_get_403_and_are_never_counted(h):
    for _ in range(MAX_FAILURES * 2):
        h.fails(403, "GET", "/ampcode", key="wrong", peer=("192.0.2.9", 1))
    assert len(h.api.gate.lockout) == 0


def test_allowed_remote_peers_are_locked_out_too(make):
    h = make(allow_remote=True)
    _wrong(h, MAX_FAILURES, peer=("192.0.2.9", 1))
    h.fails(429, "GET", "/ampcode", peer=("192.0.2.9", 2))
    assert "upstream-url" in h.ok("GET", "/ampcode", peer=("192.0.2.10", 1))


def test_one_log_line_per_lock_out(h, caplog):
    caplog.set_level(logging.DEBUG, logger="cliproxy")
    _wrong(h, MAX_FAILURES)
    for _ in range(10):
        h.fails(429, "GET", "/ampcode", peer=ATTACKER)
    records = [r for r in caplog.records if "locked out" in r.getMessage()]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert records[0].fields["peer"] == ATTACKER[0]
    assert SECRET not in records[0].getMessage() + repr(records[0].fields)


def test_lockout_memory_is_bounded_under_a_flood_of_peers(clock):
    lockout = Lockout(clock)
    for i in range(MAX_PEERS * 3):
        lockout.failed("10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255))
    assert len(lockout) == MAX_PEERS


def test_bounded_table_forgets_the_least_recently_seen_peer(clock):
    lockout = Lockout(clock, max_failures=2, max_peers=2)
    lockout.failed("a")
    lockout.failed("b")
    lockout.failed("a")  # locks "a" out and makes it the most recent
    lockout.failed("c")  # pushes out "b"
    assert lockout.remaining("a") == LOCK_SECONDS
    assert len(lockout) == 2
    assert lockout.failed("b") is False  # starts again from nothing


def test_lockout_counts_within_the_window_only(clock):
    lockout = Lockout(clock, max_failures=3, window=60)
    assert [lockout.failed("p") for _ in range(2)] == [False, False]
    clock.advance(61)
    assert lockout.failed("p") is False  # the first two are too old
    assert lockout.failed("p") is False
    assert lockout.failed("p") is True
    assert lockout.remaining("p") == LOCK_SECONDS
