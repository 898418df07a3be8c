"""Offline mode: local answers to the Amp CLI's control-plane calls (SPEC §3.1).

Strategy: with no upstream configured, an air-gapped Amp CLI still needs its account and
thread calls to succeed. ``answer`` maps the few calls the CLI cannot live without to
small local results; uploaded threads are kept as JSON files so nothing the user did is
lost; every other management route answers 503 so the CLI reports it plainly. A thread
that cannot be saved (a logs-dir on a read-only file system, say) is a 503 naming the
directory and the reason, so the CLI tells the user instead of pretending it was kept.

Amp's internal API is JSON-RPC-like: ``POST /api/internal?<method>`` with the body
``{"method": <method>, "params": {...}}``, gzip-encoded when large.
"""

import json
import logging
import os
import re

from cliproxy.errors import BadRequest, ServiceUnavailable
from cliproxy.files import keep_newest, replace_file
from cliproxy.http.headers import Headers
from cliproxy.http.jsonbody import decode_request_body, parse_json
from cliproxy.http.server import Response
from cliproxy.jsontext import loads

log = logging.getLogger("cliproxy.offline")

# How many uploaded threads are kept on disk; the oldest beyond this are removed.
MAX_SAVED_THREADS = 1000

# Internal methods that list what the user installed: none in offline mode. The CLI
# needs a list here; a null result makes it throw.
_EMPTY_LISTS = ("loadPlugins", "loadSkills")

LOCAL_USER = {
    "id": "local-user",
    "username": "local",
    "email": "local@cliproxy.invalid",
    "displayName": "Local user (cliproxy offline mode)",
    "avatarURL": None,
    "siteAdmin": False,
    "features": [],
}

_EMPTY_FEED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<rss version="2.0"><channel><title>cliproxy (offline)</title>'
    b"<link>http://localhost/</link><description>No upstream is configured.</description>"
    b"</channel></rss>\n"
)
# Thread ids (SPEC §4): Amp's are ``T-`` + a UUID. A full match, so no trailing newline
# slips through, and a first character that is a letter or digit, so no hidden file.
_THREAD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def _json(status, value):
    body = json.dumps(value, separators=(",", ":")).encode("utf-8")
    return Response(status, Headers([("content-type", "application/json")]), body)


def internal_method(query, params):
    """The RPC method name: the query string's first name, else the body's ``method``."""
    name = query.split("&", 1)[0].split("=", 1)[0]
    if name:
        return name
    method = params.get("method") if isinstance(params, dict) else None
    return method if isinstance(method, str) else ""


def decode_rpc_body(raw, content_encoding, max_bytes):
    """The JSON value of an internal-API body (``{}`` when empty), decoded when gzip."""
    raw = decode_request_body(raw, content_encoding, max_bytes, sniff_gzip=True)
    return parse_json(raw) if raw.strip() else {}


def valid_thread_id(value):
    """Whether ``value`` is a thread id offline mode stores (SPEC §4)."""
    return isinstance(value, str) and _THREAD_ID.fullmatch(value) is not None


class ThreadNotSaved(ServiceUnavailable):
    """The threads directory cannot take the upload (503: the host's problem, not the
    request's)."""


class ThreadStore:
    """Uploaded threads as ``<dir>/<thread id>.json``, newest ``limit`` kept."""

    def __init__(self, directory, limit=MAX_SAVED_THREADS):
        self.directory = directory
        self.limit = limit

    def save(self, thread):
        """Write ``thread`` atomically, replacing an earlier upload of the same id.
        Raises ``BadRequest`` for a missing or invalid id, ``ThreadNotSaved`` when the
        directory cannot be written (nothing is then left behind)."""
        thread_id = thread.get("id") if isinstance(thread, dict) else None
        if not valid_thread_id(thread_id):
            raise BadRequest("uploadThread: params.thread.id is missing or not a valid id")
        data = json.dumps(thread, ensure_ascii=False).encode("utf-8")
        try:
            os.makedirs(self.directory, exist_ok=True)
            replace_file(os.path.join(self.directory, thread_id + ".json"), data)
        except OSError as exc:
            raise ThreadNotSaved(
                "offline mode cannot save the thread: %s is not writable (%s); set logs-dir "
                "to a writable directory" % (self.directory, exc.strerror or type(exc).__name__)
            )
        try:
            keep_newest(self.directory, _is_thread_file, self.limit)
        except OSError as exc:  # the thread is saved; only the clean-up failed
            log.warning("offline: cannot prune %s: %s", self.directory, exc.strerror or exc)
        return thread_id

    def load(self, thread_id):
        """The thread saved under ``thread_id``, or None when there is none (an id that
        could never have been saved included)."""
        if not valid_thread_id(thread_id):
            return None
        try:
            with open(os.path.join(self.directory, thread_id + ".json"), "rb") as handle:
                return loads(handle.read())
        except (OSError, ValueError):
            return None


def _is_thread_file(name):
    return name.endswith(".json")


def _get_thread(store, params):
    """getThread's answer: the saved thread, or Amp's ``thread-not-found`` error. The CLI
    asks for every thread it opens, new ones included, and treats any other answer (a
    null result, a non-2xx status) as a failure (Amp CLIs from April 2026 on). It reads
    the thread from ``result.thread.data`` (the CLI's own code, not SPEC's bare thread)."""
    thread_id = params.get("thread") if isinstance(params, dict) else None
    thread = store.load(thread_id)
    if thread is not None:
        return {"ok": True, "result": {"thread": {"id": thread_id, "data": thread}}}
    return {"ok": False, "error": {"code": "thread-not-found", "message": "thread not found in offline mode"}}


async def answer(request, config):
    """The local ``Response`` for a management route in offline mode."""
    path = request.path
    if path in ("/news.rss", "/threads.rss"):
        feed_type = Headers([("content-type", "application/rss+xml; charset=utf-8")])
        return Response(200, feed_type, _EMPTY_FEED)
    if path.startswith(("/api/telemetry", "/api/otel")):
        await request.body.read(config.limits.max_body_bytes)
        return Response(204, Headers(), b"")
    if path == "/api/internal" and request.method == "POST":
        raw = await request.body.read(config.limits.max_body_bytes)
        rpc = decode_rpc_body(
            raw, request.headers.get("content-encoding"), config.limits.max_body_bytes
        )
        method = internal_method(request.query, rpc)
        params = rpc.get("params") if isinstance(rpc, dict) else None
        if method == "getUserInfo":
            return _json(200, {"ok": True, "result": LOCAL_USER})
        if method in _EMPTY_LISTS:
            return _json(200, {"ok": True, "result": []})
        store = ThreadStore(os.path.join(config.logs_dir, "threads"))
        if method == "uploadThread":
            thread = params.get("thread") if isinstance(params, dict) else None
            thread_id = store.save(thread)
            log.info("offline: saved thread", extra={"fields": {"thread": thread_id}})
            return _json(200, {"ok": True})
        if method == "getThread":
            return _json(200, _get_thread(store, params))
        if method == "getThreadLinkInfo":
            # Read by ``threads continue`` (null makes it throw): a thread saved here was
            # made by a classic CLI, not by Neo's thread actors.
            return _json(200, {"ok": True, "result": {"usesThreadActors": False}})
        return _json(200, {"ok": True, "result": None})
    raise ServiceUnavailable("amp upstream proxy not available")
