"""The hostile fuzz, in-process (SPEC §4): a 5,000-request slice of the 100,000 that
``make hostile`` sends, over every route family, with the request line, the fields, the
framing, the body, the JSON shape and the coding mutated, and upstreams that answer well.

Whatever the input, the proxy answers with a clear status (never a 500, never garbled, a
JSON body for an error) or closes, within a bound; logs no traceback; passes no client or
management key upstream; and holds no connection once the clients have gone. The cases
are the job's own (tests/support/hostile.py), so a failure here names a case number that
``fuzz_case(DEFAULT_SEED, n)`` rebuilds (``python3 bench/hostile.py --case N`` prints it);
``KNOWN_CASES``, found by the full job beyond the slice, are sent as well.
"""

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import List

import pytest

from tests.support.fakes import FakeWebSocketEcho
from tests.support.hostile import (
    DEFAULT_SEED,
    FAMILIES,
    KNOWN_CASES,
    FuzzReport,
    answer_well,
    fuzz_case,
    offline_document,
    online_document,
    open_descriptors,
    run_fuzz,
    upstream_leaks,
)
from tests.support.logs import RecordingHandler
from tests.support.proxy import RunningProxy

SLICE = 5000
CONCURRENCY = 128
# Per case: the fuzz config's request-timeout (3 s) plus room for a loaded machine.
BOUND = 6.0
# Descriptors the run may leave open beyond the baseline: the proxy's pool of idle
# upstream connections (at most 32 per origin, and both ends live in this process).
DESCRIPTOR_SLACK = 2 * 32 + 8
# Families whose every route answers 404 or an error: no 2xx is expected of them.
ERRORS_ONLY = ("unknown",)
SETTLE_SECONDS = 3.0


@dataclass
class Run:
    report: FuzzReport
    records: List[logging.LogRecord]
    loop_errors: List[str]
    leaks: List[str]
    open_connections: int
    descriptors_before: int
    descriptors_after: int


def _settle(proxies):
    """Wait until neither proxy holds a client connection (bounded)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        if not any(p.service.server.open_connections for p in proxies):
            return 0
        time.sleep(0.05)
    return sum(p.service.server.open_connections for p in proxies)


def _watch_loop(proxy, errors):
    """Record what the proxy's event loop reports as unhandled (a task's exception)."""

    def handler(loop, context):
        exception = context.get("exception")
        errors.append("%s: %r" % (context.get("message"), exception))

    proxy.loop.call_soon_threadsafe(proxy.loop.set_exception_handler, handler)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    capture = RecordingHandler()
    logger = logging.getLogger("cliproxy")
    level = logger.level
    logger.addHandler(capture)
    logger.setLevel(logging.INFO)
    loop_errors = []
    try:
        with FakeWebSocketEcho(default=answer_well) as upstream:
            online_dir = tmp_path_factory.mktemp("fuzz-online")
            offline_dir = tmp_path_factory.mktemp("fuzz-offline")
            with RunningProxy(online_document(upstream.url), online_dir) as online, RunningProxy(
                offline_document(), offline_dir
            ) as offline:
                for proxy in (online, offline):
                    _watch_loop(proxy, loop_errors)
                ports = {"online": online.port, "offline": offline.port}
                before = open_descriptors()
                report = asyncio.run(
                    run_fuzz(DEFAULT_SEED, 0, SLICE, ports, CONCURRENCY, BOUND, extra=KNOWN_CASES))
                open_connections = _settle((online, offline))
                after = open_descriptors()
                leaks = upstream_leaks(upstream.requests)
    finally:
        logger.removeHandler(capture)
        logger.setLevel(level)
    return Run(report, capture.records, loop_errors, leaks, open_connections, before, after)


def _examples(run, kind):
    return "%d: %s" % (run.report.counts[kind], "\n".join(getattr(run.report, kind)))


def test_the_whole_slice_was_sent(run):
    assert run.report.cases == SLICE + len(KNOWN_CASES)


def test_no_request_gets_a_500(run):
    assert run.report.counts["errors"] == 0, _examples(run, "errors")


def test_healthy_upstreams_never_cause_a_502_or_504(run):
    assert run.report.counts["bad_gateway"] == 0, _examples(run, "bad_gateway")


def test_every_request_is_answered_or_closed_within_the_bound(run):
    assert run.report.counts["hangs"] == 0, _examples(run, "hangs")


def test_every_answer_is_well_formed_http(run):
    assert run.report.counts["garbled"] == 0, _examples(run, "garbled")


def test_a_complete_request_is_never_dropped_without_an_answer(run):
    assert run.report.counts["silent"] == 0, _examples(run, "silent")


def test_error_answers_carry_a_json_body(run):
    assert run.report.counts["non_json"] == 0, _examples(run, "non_json")


def test_the_log_holds_no_traceback(run):
    tracebacks = [r.getMessage() for r in run.records if r.exc_info]
    assert tracebacks == []
    assert run.loop_errors == []


def test_no_client_or_management_key_reaches_an_upstream(run):
    assert run.leaks == []


def test_connections_and_descriptors_are_released(run):
    assert run.open_connections == 0
    assert run.descriptors_after <= run.descriptors_before + DESCRIPTOR_SLACK


def test_every_route_family_was_reached_and_served(run):
    for name, _, _ in FAMILIES:
        results = run.report.by_family.get(name)
        assert results, "no case of family %s" % name
        if name not in ERRORS_ONLY:
            assert any(isinstance(r, int) and 200 <= r < 300 for r in results), (name, results)
        assert any(isinstance(r, int) and 400 <= r < 500 for r in results), (name, results)


def test_a_case_is_rebuilt_from_its_number_alone():
    for index in (0, 1, 999, 4999):
        assert fuzz_case(DEFAULT_SEED, index) == fuzz_case(DEFAULT_SEED, index)
    assert fuzz_case(DEFAULT_SEED, 1).data != fuzz_case(DEFAULT_SEED + 1, 1).data
