"""Tests for cliproxy.log.apply_debug: the config's ``debug`` moves the log level at run
time, and turning it off goes back to the level the process started with."""

import io
import logging

import pytest

from cliproxy import log as logsetup


@pytest.fixture
def root(monkeypatch):
    logger = logging.getLogger(logsetup.ROOT_LOGGER)
    saved = (logger.level, list(logger.handlers), logger.propagate)
    monkeypatch.setattr(logsetup, "_base_level", None)
    yield logger
    level, handlers, propagate = saved
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    for handler in handlers:
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate


@pytest.mark.parametrize(
    "level, base, expected",
    [
        ("info", None, logging.INFO),
        ("warning", None, logging.WARNING),
        ("debug", None, logging.INFO),  # started at debug because the config said so
        ("debug", "debug", logging.DEBUG),  # --log-level debug: stays
        ("debug", "error", logging.ERROR),
    ],
)
def test_debug_off_returns_to_the_level_the_process_started_with(root, level, base, expected):
    logsetup.setup(level, stream=io.StringIO(), base=base)
    logsetup.apply_debug(True)
    assert root.level == logging.DEBUG
    logsetup.apply_debug(False)
    assert root.level == expected


def test_debug_lines_appear_only_while_debug_is_on(root):
    stream = io.StringIO()
    logsetup.setup("info", stream=stream)
    child = logging.getLogger("cliproxy.test")
    child.debug("before")
    logsetup.apply_debug(True)
    child.debug("during")
    logsetup.apply_debug(False)
    child.debug("after")
    text = stream.getvalue()
    assert "during" in text and "before" not in text and "after" not in text


def test_without_setup_the_level_found_is_the_one_restored(root):
    root.setLevel(logging.WARNING)
    logsetup.apply_debug(True)
    assert root.level == logging.DEBUG
    logsetup.apply_debug(False)
    assert root.level == logging.WARNING


# -- client-controlled text in log lines (SPEC §4) ------------------------------------------


import io as _io
import json as _json
import logging as _logging

from cliproxy import log as _log


def _line(fmt, message, fields):
    stream = _io.StringIO()
    _log.setup("info", fmt, stream=stream)
    _logging.getLogger("cliproxy.test").info(message, extra={"fields": fields})
    return stream.getvalue()


def test_control_characters_from_clients_are_escaped_in_text_lines(root):
    line = _line("text", "no route for GET /x\x1b[2J", {"requested": "esc\x1b[31mRED\x00\r", "ok": "plain"})
    assert line.count("\n") == 1 and "\r" not in line and "\x1b" not in line and "\x00" not in line
    assert "\\x1b[31mRED\\x00\\x0d" in line and "/x\\x1b[2J" in line
    assert "ok=plain" in line


def test_control_characters_are_escaped_in_json_lines_too(root):
    line = _line("json", "m\x9b", {"requested": "a\x7fb\x85c\nd"})
    entry = _json.loads(line)
    assert entry["msg"] == "m\\x9b"
    assert entry["requested"] == "a\\x7fb\\x85c\\x0ad"
