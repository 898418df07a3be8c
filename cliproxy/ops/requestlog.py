"""``request-log``: one line per request, and a file per failed request (SPEC §3.4).

Strategy: ``observe`` wraps the response body so the line is written when the last byte
left (or the client went away), with the true total time and byte count. A request that
failed (status >= 500) is also written in full to ``logs-dir`` (headers masked, bodies
capped), keeping only the newest ``error-logs-max-files``. Nothing here runs unless
``request-log`` is on. A logs-dir that cannot be written costs one warning line per
distinct problem, never the request: the failed request has already been answered.
``config.checks.logs_dir_warning`` tells ``check`` and start-up about such a directory beforehand.
"""

import collections
import itertools
import json
import logging
import os
import time
from typing import Optional

from cliproxy.http.server import Response
from cliproxy.files import keep_newest
from cliproxy.masking import mask_headers, mask_query

log = logging.getLogger("cliproxy.requests")

# How much of each body an error file keeps.
BODY_CAP = 64 * 1024
ERROR_FILE_PREFIX = "error-"


class RequestLog:
    def __init__(self, config_fn, clock=time.monotonic, wall=time.time):
        self.config_fn = config_fn
        self.clock = clock
        self.wall = wall
        self.recent = RecentLines()  # the newest lines, for the management API's /logs
        # The last error-file problem warned about: the same one again is only debug.
        self.file_problem = None  # type: Optional[str]

    def file_written(self, problem):
        """Record the outcome of writing an error file (``problem``: None when it worked),
        logging a warning the first time a problem shows up."""
        if problem is not None and problem != self.file_problem:
            log.warning("request-log: cannot write error-request files: %s "
                        "(repeats of this are logged at debug level)", problem)
        elif problem is not None:
            log.debug("request-log: cannot write error-request files: %s", problem)
        self.file_problem = problem

    def observe(self, request, response, exchange, config=None):
        """``response``, wrapped to log when it completes (unchanged when logging is off).
        ``config`` is the snapshot the request was served under; None: ``config_fn()``."""
        if config is None:
            config = self.config_fn()
        if not config.request_log:
            return response
        record = _Record(self, config, request, response, exchange)
        if isinstance(response.body, (bytes, bytearray)):
            record.sent(len(response.body), bytes(response.body[:BODY_CAP]))
            record.finish()
            return response
        return Response(response.status, response.headers, record.wrap(response.body), response.on_upgrade)


class _Record:
    """The facts of one request, written once when its response is done."""

    def __init__(self, owner, config, request, response, exchange):
        self.owner = owner
        self.config = config
        self.request = request
        self.response = response
        self.exchange = exchange
        self.head_at = owner.clock()
        self.bytes_out = 0
        self.captured = b""
        self.failed_mid_stream = None

    def sent(self, count, chunk):
        self.bytes_out += count
        if len(self.captured) < BODY_CAP:
            self.captured += chunk[: BODY_CAP - len(self.captured)]

    async def wrap(self, body):
        try:
            async for chunk in body:
                self.sent(len(chunk), chunk)
                yield chunk
        except BaseException as exc:
            self.failed_mid_stream = type(exc).__name__
            raise
        finally:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()
            self.finish()

    def finish(self):
        owner = self.owner
        now = owner.clock()
        request = self.request
        fields = {
            "arrived": _iso(owner.wall() - (now - request.arrived)),
            "method": request.method,
            "target": _masked_target(request),
            "status": self.response.status,
            "route": self.exchange.route,
            "requested_model": self.exchange.requested_model,
            "resolved_model": self.exchange.resolved_model,
            "provider": self.exchange.provider,
            "ttfb_ms": round((self.head_at - request.arrived) * 1000, 1),
            "total_ms": round((now - request.arrived) * 1000, 1),
            "bytes_in": request.body.length,
            "bytes_out": self.bytes_out,
            "aborted": self.failed_mid_stream,
        }
        log.info("request", extra={"fields": fields})
        owner.recent.add(fields)
        if self.response.status >= 500:
            self._write_error_file(fields)

    def _write_error_file(self, fields):
        directory = self.config.logs_dir
        try:
            os.makedirs(directory, exist_ok=True)
            name = "%s%s-%d.json" % (
                ERROR_FILE_PREFIX,
                time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.owner.wall())),
                id(self) % 1000000,
            )
            document = {
                "request": {
                    "method": self.request.method,
                    "target": _masked_target(self.request),
                    "headers": mask_headers(self.request.headers),
                    "body": _text(self.exchange.request_body or b""),
                },
                "response": {
                    "status": self.response.status,
                    "headers": mask_headers(self.response.headers),
                    "body": _text(self.captured),
                },
                "summary": fields,
            }
            with open(os.path.join(directory, name), "w", encoding="utf-8") as out:
                json.dump(document, out, ensure_ascii=False, indent=2)
            keep_newest(directory, _is_error_file, self.config.error_logs_max_files)
        except OSError as exc:
            self.owner.file_written("%s: %s" % (directory, exc.strerror or exc))
            return
        self.owner.file_written(None)


def _masked_target(request):
    """The path and query with credential parameters masked."""
    return request.path + ("?" + mask_query(request.query) if request.query else "")


def _is_error_file(name):
    return name.startswith(ERROR_FILE_PREFIX) and name.endswith(".json")


def _text(data):
    if len(data) > BODY_CAP:
        data = data[:BODY_CAP]
    return data.decode("utf-8", "replace")


def _iso(wall):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + ".%03dZ" % int((wall % 1) * 1000)


# How many request lines the management API's /logs keeps to show.
RECENT_LINES = 1000


# The longest text a kept line holds per field: what a client sends (model names, paths)
# has no other bound than max-header-bytes or max-body-bytes.
RECENT_FIELD_CHARS = 512


def _short(value):
    if isinstance(value, str) and len(value) > RECENT_FIELD_CHARS:
        return value[:RECENT_FIELD_CHARS] + "…"
    return value


class RecentLines:
    """The newest request-log lines, kept in memory for the management API's ``/logs``.

    At most ``limit`` lines; each is numbered (``seq`` 1, 2, ...) so a client that follows
    the log asks for the lines after the last one it saw. Used on the event loop only.
    """

    def __init__(self, limit=RECENT_LINES):
        self.lines = collections.deque(maxlen=limit)
        self.latest = 0  # the number of the newest line; 0 before the first

    def add(self, fields):
        """Keep ``fields`` (a request line's fields, None values left out) as the newest;
        a text longer than ``RECENT_FIELD_CHARS`` (a client's megabyte model name) is kept
        cut short."""
        self.latest += 1
        line = {"seq": self.latest}
        line.update((key, _short(value)) for key, value in fields.items() if value is not None)
        self.lines.append(line)

    def after(self, seq):
        """The kept lines numbered above ``seq``, oldest first."""
        newer = self.latest - seq
        if newer <= 0:
            return []
        return list(itertools.islice(self.lines, max(0, len(self.lines) - newer), None))
