"""Tests for cliproxy.providers.credentials: classification, Retry-After, round-robin,
cool-downs, sticky threads."""

import collections
import email.utils
import logging

import pytest

from cliproxy.config.model import ProviderEntry, ProviderKind
from cliproxy.http.headers import Headers
from cliproxy.providers import credentials as cr
from cliproxy.providers.credentials import (
    CredentialPool,
    FailureKind,
    classify,
    is_quota_body,
    parse_retry_after,
    retry_after_from_headers,
)

# The registry's Served is being written elsewhere; the pool needs only these attributes.
Served = collections.namedtuple("Served", "entry upstream_model visible")

MODEL = "claude-sonnet-4-5"


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def served(n, kind=ProviderKind.CLAUDE):
    out = []
    for i in range(n):
        entry = ProviderEntry(
            kind=kind,
            path="%s[%d]" % (kind.value, i),
            api_key="sk-ant-api03-secret-%d-tail%02d" % (i, i),
            base_url="https://api.anthropic.com",
            name=kind.value,
        )
        out.append(Served(entry, MODEL, MODEL))
    return tuple(out)


def paths(items):
    return [s.entry.path for s in items]


# -- classification -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, body, kind",
    [
        (None, b"", FailureKind.CONNECT),
        (429, b"", FailureKind.RATE_LIMITED),
        (401, b"", FailureKind.AUTH),
        (401, b'{"error":"quota"}', FailureKind.AUTH),
        (403, b'{"error":{"message":"forbidden"}}', FailureKind.AUTH),
        (403, b'{"error":{"message":"Daily Limit Exceeded: quota"}}', FailureKind.RATE_LIMITED),
        (400, b'{"error":{"type":"insufficient_quota"}}', FailureKind.RATE_LIMITED),
        (400, b'{"error":{"status":"RESOURCE_EXHAUSTED"}}', FailureKind.RATE_LIMITED),
        (400, b'{"error":{"type":"invalid_request_error"}}', FailureKind.OTHER),
        (500, b"", FailureKind.SERVER_ERROR),
        (503, b"Rate limit exceeded", FailureKind.RATE_LIMITED),
        (529, b'{"type":"error","error":{"type":"overloaded_error"}}', FailureKind.SERVER_ERROR),
        (404, b"not found", FailureKind.OTHER),
        (200, b"", FailureKind.OTHER),
    ],
)
def test_classify(status, body, kind):
    assert classify(status, body) is kind


def test_quota_body_wording():
    assert is_quota_body(b'{"type":"rate_limit_error"}')
    assert is_quota_body(b"Rate Limit reached for requests")
    assert is_quota_body(b"429 Too Many Requests")
    assert not is_quota_body(b'{"type":"overloaded_error","message":"Overloaded"}')
    assert not is_quota_body(b" " * cr.QUOTA_SCAN_BYTES + b"quota")  # past the scan bound


def test_fails_over():
    assert not FailureKind.OTHER.fails_over
    assert all(k.fails_over for k in FailureKind if k is not FailureKind.OTHER)


# -- Retry-After --------------------------------------------------------------------------

NOW_WALL = 1_700_000_000.0


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, None),
        ("", None),
        ("soon", None),
        ("30", 30.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-5", 0.0),
        ("999999999", cr.MAX_RETRY_AFTER),
        ("9" * 400, cr.MAX_RETRY_AFTER),
    ],
)
def test_parse_retry_after_seconds(value, expected):
    assert parse_retry_after(value, NOW_WALL) == expected


def test_parse_retry_after_http_date():
    in_45 = email.utils.formatdate(NOW_WALL + 45, usegmt=True)
    assert parse_retry_after(in_45, NOW_WALL) == pytest.approx(45.0)
    past = email.utils.formatdate(NOW_WALL - 100, usegmt=True)
    assert parse_retry_after(past, NOW_WALL) == 0.0
    far = email.utils.formatdate(NOW_WALL + 86400 * 3, usegmt=True)
    assert parse_retry_after(far, NOW_WALL) == cr.MAX_RETRY_AFTER
    minus_zero = email.utils.formatdate(NOW_WALL + 10).replace("+0000", "-0000")
    assert parse_retry_after(minus_zero, NOW_WALL) == pytest.approx(10.0)
    assert parse_retry_after("Wed, 99 Foo 2024 25:61:00 GMT", NOW_WALL) is None


def test_retry_after_from_headers_prefers_ms():
    headers = Headers([("retry-after-ms", "1500"), ("retry-after", "9")])
    assert retry_after_from_headers(headers, NOW_WALL) == 1.5
    assert retry_after_from_headers(Headers([("retry-after", "9")]), NOW_WALL) == 9.0
    assert retry_after_from_headers(Headers([("retry-after-ms", "x"), ("retry-after", "9")]), NOW_WALL) == 9.0
    assert retry_after_from_headers(Headers(), NOW_WALL) is None


# -- round-robin --------------------------------------------------------------------------


def test_round_robin_is_even_over_three_credentials():
    pool = CredentialPool(clock=Clock())
    creds = served(3)
    first = collections.Counter()
    for _ in range(300):
        ordered = pool.order(creds, MODEL, None)
        assert sorted(paths(ordered)) == sorted(paths(creds))  # all of them, each once
        first[ordered[0].entry.path] += 1
    assert sorted(first.values()) == [100, 100, 100]


def test_round_robin_rotates_by_one():
    pool = CredentialPool(clock=Clock())
    creds = served(3)
    assert paths(pool.order(creds, MODEL)) == ["claude-api-key[0]", "claude-api-key[1]", "claude-api-key[2]"]
    assert paths(pool.order(creds, MODEL)) == ["claude-api-key[1]", "claude-api-key[2]", "claude-api-key[0]"]
    assert paths(pool.order(creds, MODEL)) == ["claude-api-key[2]", "claude-api-key[0]", "claude-api-key[1]"]


def test_empty_served():
    pool = CredentialPool(clock=Clock())
    assert pool.order((), MODEL, "T-1") == []
    assert pool.soonest_recovery((), MODEL) is None


# -- cool-downs ---------------------------------------------------------------------------


def test_rate_limited_skipped_until_exactly_retry_time():
    clock = Clock(1000.0)
    pool = CredentialPool(clock=clock)
    creds = served(3)
    pool.failure(creds[1], MODEL, FailureKind.RATE_LIMITED, retry_after=30.0)
    for _ in range(6):
        assert "claude-api-key[1]" not in paths(pool.order(creds, MODEL))
    clock.now = 1029.999
    assert "claude-api-key[1]" not in paths(pool.order(creds, MODEL))
    clock.now = 1030.0
    assert "claude-api-key[1]" in paths(pool.order(creds, MODEL))


def test_all_cooled_gives_empty_order_and_soonest_recovery():
    clock = Clock(0.0)
    pool = CredentialPool(clock=clock)
    creds = served(2)
    assert pool.soonest_recovery(creds, MODEL) == 0.0
    pool.failure(creds[0], MODEL, FailureKind.RATE_LIMITED, retry_after=20.0)
    pool.failure(creds[1], MODEL, FailureKind.RATE_LIMITED, retry_after=8.0)
    assert pool.order(creds, MODEL) == []
    assert pool.soonest_recovery(creds, MODEL) == 8.0
    clock.now = 5.0
    assert pool.soonest_recovery(creds, MODEL) == 3.0
    clock.now = 8.0
    assert paths(pool.order(creds, MODEL)) == ["claude-api-key[1]"]
    assert pool.soonest_recovery(creds, MODEL) == 0.0


def cooldown_after(pool, clock, cred, kind, failures):
    """The cool-down the ``failures``-th consecutive failure starts."""
    for _ in range(failures):
        clock.now += 10000.0  # let any previous cool-down end; the streak stays
        pool.failure(cred, MODEL, kind)
    return pool.soonest_recovery((cred,), MODEL)


def test_rate_limited_default_backoff_grows_and_caps():
    clock = Clock(0.0)
    pool = CredentialPool(clock=clock)
    cred = served(1)[0]
    seen = [cooldown_after(pool, clock, cred, FailureKind.RATE_LIMITED, 1) for _ in range(12)]
    assert seen[:9] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]
    assert seen[9:] == [cr.RATE_LIMIT_CAP] * 3
    for _ in range(2000):  # a huge streak must neither overflow nor pass the cap
        pool.failure(cred, MODEL, FailureKind.RATE_LIMITED)
    assert pool.soonest_recovery((cred,), MODEL) == cr.RATE_LIMIT_CAP


def test_success_resets_backoff():
    clock = Clock(0.0)
    pool = CredentialPool(clock=clock)
    cred = served(1)[0]
    assert cooldown_after(pool, clock, cred, FailureKind.RATE_LIMITED, 3) == 4.0
    pool.success(cred, MODEL)
    assert pool.soonest_recovery((cred,), MODEL) == 0.0
    assert cooldown_after(pool, clock, cred, FailureKind.RATE_LIMITED, 1) == 1.0


@pytest.mark.parametrize("kind", [FailureKind.SERVER_ERROR, FailureKind.CONNECT, FailureKind.TIMEOUT])
def test_transient_failures_cool_from_the_second(kind):
    clock = Clock(0.0)
    pool = CredentialPool(clock=clock)
    cred = served(1)[0]
    seen = [cooldown_after(pool, clock, cred, kind, 1) for _ in range(9)]
    assert seen == [0.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_other_failure_changes_nothing():
    pool = CredentialPool(clock=Clock())
    creds = served(2)
    pool.success(creds[0], MODEL, "T-1")
    for _ in range(5):
        pool.failure(creds[0], MODEL, FailureKind.OTHER)
    assert paths(pool.order(creds, MODEL, "T-1"))[0] == "claude-api-key[0]"


def test_later_failure_does_not_shorten_a_cooldown():
    clock = Clock(0.0)
    pool = CredentialPool(clock=clock)
    cred = served(1)[0]
    pool.failure(cred, MODEL, FailureKind.RATE_LIMITED, retry_after=100.0)
    pool.failure(cred, MODEL, FailureKind.RATE_LIMITED, retry_after=1.0)
    assert pool.soonest_recovery((cred,), MODEL) == 100.0


def test_auth_failure_long_cooldown_and_single_masked_warning(caplog):
    clock = Clock(0.0)
    pool = CredentialPool(clock=clock)
    creds = served(2)
    bad = creds[1]
    with caplog.at_level(logging.WARNING, logger="cliproxy.providers.credentials"):
        pool.failure(bad, MODEL, FailureKind.AUTH)
        pool.failure(bad, MODEL, FailureKind.AUTH)
        pool.failure(bad, "claude-opus-4-5", FailureKind.AUTH)
    records = [r for r in caplog.records if r.name == "cliproxy.providers.credentials"]
    assert len(records) == 1
    message = records[0].getMessage()
    assert records[0].levelno == logging.WARNING
    assert "claude-api-key[1]" in message
    assert "sk-a\u2026" + bad.entry.api_key[-2:] in message
    assert bad.entry.api_key not in caplog.text
    assert pool.soonest_recovery((bad,), MODEL) == cr.AUTH_COOLDOWN
    clock.now = cr.AUTH_COOLDOWN - 1
    assert paths(pool.order(creds, MODEL)) == ["claude-api-key[0]"]
    clock.now = cr.AUTH_COOLDOWN
    assert "claude-api-key[1]" in paths(pool.order(creds, MODEL))


def test_auth_warning_again_after_recovery(caplog):
    pool = CredentialPool(clock=Clock())
    cred = served(1)[0]
    with caplog.at_level(logging.WARNING, logger="cliproxy.providers.credentials"):
        pool.failure(cred, MODEL, FailureKind.AUTH)
        pool.success(cred, MODEL)
        pool.failure(cred, MODEL, FailureKind.AUTH)
    assert len([r for r in caplog.records if r.name == "cliproxy.providers.credentials"]) == 2


def test_cooldowns_are_per_model():
    pool = CredentialPool(clock=Clock())
    creds = served(2)
    pool.failure(creds[0], MODEL, FailureKind.RATE_LIMITED, retry_after=60.0)
    assert paths(pool.order(creds, MODEL)) == ["claude-api-key[1]"]
    assert sorted(paths(pool.order(creds, "claude-opus-4-5"))) == ["claude-api-key[0]", "claude-api-key[1]"]


def test_round_robin_counters_are_per_model():
    pool = CredentialPool(clock=Clock())
    creds = served(2)
    firsts = []
    for _ in range(4):  # interleaving two models must not lock either onto one credential
        firsts.append(pool.order(creds, "a")[0].entry.path)
        pool.order(creds, "b")
    assert firsts == ["claude-api-key[0]", "claude-api-key[1]"] * 2


# -- sticky threads -----------------------------------------------------------------------


def test_sticky_thread_kept_while_healthy():
    pool = CredentialPool(clock=Clock())
    creds = served(3)
    pool.order(creds, MODEL, "T-1")
    pool.success(creds[2], MODEL, "T-1")
    for _ in range(10):
        ordered = pool.order(creds, MODEL, "T-1")
        assert ordered[0] is creds[2]
        assert sorted(paths(ordered)) == sorted(paths(creds))


def test_sticky_does_not_disturb_round_robin_of_others():
    pool = CredentialPool(clock=Clock())
    creds = served(3)
    pool.success(creds[0], MODEL, "T-1")
    first = collections.Counter()
    for _ in range(30):
        pool.order(creds, MODEL, "T-1")
        first[pool.order(creds, MODEL, None)[0].entry.path] += 1
    assert sorted(first.values()) == [10, 10, 10]


def test_sticky_thread_moves_on_failure_and_stays_moved():
    clock = Clock()
    pool = CredentialPool(clock=clock)
    creds = served(3)
    pool.success(creds[0], MODEL, "T-1")
    pool.failure(creds[0], MODEL, FailureKind.SERVER_ERROR)  # first blip: no cool-down
    ordered = pool.order(creds, MODEL, "T-1")
    assert len(ordered) == 3  # still usable...
    nxt = next(s for s in ordered if s is not creds[0])
    pool.success(nxt, MODEL, "T-1")  # ...but the thread re-binds where it succeeded
    pool.success(creds[0], MODEL)  # the old credential recovers
    for _ in range(5):
        assert pool.order(creds, MODEL, "T-1")[0] is nxt


def test_sticky_skipped_while_cooled_down():
    pool = CredentialPool(clock=Clock())
    creds = served(2)
    pool.success(creds[0], MODEL, "T-1")
    pool.failure(creds[0], MODEL, FailureKind.RATE_LIMITED, retry_after=60.0)
    assert paths(pool.order(creds, MODEL, "T-1")) == ["claude-api-key[1]"]


def test_sticky_only_among_served():
    pool = CredentialPool(clock=Clock())
    creds = served(3)
    pool.success(creds[2], MODEL, "T-1")
    assert creds[2] not in pool.order(creds[:2], MODEL, "T-1")


def test_sticky_is_per_model():
    pool = CredentialPool(clock=Clock())
    creds = served(3)
    pool.success(creds[2], MODEL, "T-1")
    firsts = {pool.order(creds, "other-model", "T-1")[0].entry.path for _ in range(3)}
    assert len(firsts) == 3  # round-robin: the binding belongs to MODEL only


def test_sticky_table_lru_bound():
    pool = CredentialPool(clock=Clock(), sticky_limit=3)
    creds = served(2)
    for thread in ("T-1", "T-2", "T-3"):
        pool.success(creds[1], MODEL, thread)
    pool.success(creds[1], MODEL, "T-1")  # refreshes T-1: T-2 is now the oldest
    pool.success(creds[1], MODEL, "T-4")
    assert pool.sticky_size() == 3
    assert pool.order(creds, MODEL, "T-1")[0] is creds[1]
    assert pool.order(creds, MODEL, "T-3")[0] is creds[1]
    assert pool.order(creds, MODEL, "T-4")[0] is creds[1]
    firsts = {pool.order(creds, MODEL, "T-2")[0].entry.path for _ in range(2)}
    assert len(firsts) == 2  # T-2 was evicted: plain round-robin


def test_sticky_idle_expiry():
    clock = Clock(0.0)
    pool = CredentialPool(clock=clock, sticky_ttl=3600.0)
    creds = served(2)
    pool.success(creds[1], MODEL, "T-1")
    pool.success(creds[1], MODEL, "T-2")
    clock.now = 3000.0
    pool.success(creds[1], MODEL, "T-2")  # T-2 used again: its idle time restarts
    clock.now = 3599.9
    assert pool.order(creds, MODEL, "T-1")[0] is creds[1]
    clock.now = 3600.0
    pool.order(creds, MODEL, "T-1")
    assert pool.sticky_size() == 1  # T-1 expired, T-2 kept
    firsts = {pool.order(creds, MODEL, "T-1")[0].entry.path for _ in range(2)}
    assert len(firsts) == 2
    assert pool.order(creds, MODEL, "T-2")[0] is creds[1]


def test_long_thread_ids_are_bounded_but_still_sticky():
    pool = CredentialPool(clock=Clock())
    creds = served(3)
    long_id = "T-" + "x" * 50000
    pool.success(creds[2], MODEL, long_id)
    key = next(iter(pool._sticky))
    assert len(key[0]) <= cr.MAX_KEY_CHARS
    assert pool.order(creds, MODEL, long_id)[0] is creds[2]
    other = "T-" + "x" * 49999 + "y"  # same length, other digest: not bound
    assert len({pool.order(creds, MODEL, other)[0].entry.path for _ in range(3)}) == 3
