"""The local management API: ``/v0/management/...`` (SPEC §3.3; docs/MANAGEMENT.md).

Strategy: every request goes through the same steps, in this order.
1. Gate (``management.gate``): disabled → 404; a remote peer without ``allow-remote`` →
   403; a peer locked out after too many wrong keys → 429; a missing or wrong key → 401.
2. Route: the path names the whole config (``config``), the ``ampcode`` section, one
   config key of ``management.fields.FIELDS`` or one entry of its list, the recent
   request lines (``logs``), the error-request files (``error-logs[/NAME]``) or the
   usage report (``usage``); each lists the methods it takes (404 for an unknown path,
   405 with ``Allow`` for a wrong method).
3. Read: GET answers the *effective* values of the config in force, in the file's
   kebab-case names, secrets masked (``management.views``); one key or entry as
   ``{"value": ...}``, the shape PUT takes.
4. Change: PUT, PATCH and DELETE compute one key's new value from the file on disk
   (``management.edits``, which refuses any masked secret sent back), and
   ``management.changes`` validates it with the loader, writes the file atomically and
   swaps the key into the config in force, so a change applies at once.
Values and secrets never appear in logs or error messages.
"""

import json
import os
import time
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from cliproxy.config.model import Config
from cliproxy.errors import MethodNotAllowed, NotFound
from cliproxy.http.headers import Headers
from cliproxy.http.server import Response
from cliproxy.ops.management import edits, errorlogs, views
from cliproxy.ops.management.changes import Changer, current_document
from cliproxy.ops.management.fields import DELETE, FIELDS, GET, Field
from cliproxy.ops.management.gate import Gate
from cliproxy.ops.management.params import MAX_BODY_BYTES, after_param, read_body, since_param

PREFIX = "/v0/management"

_JSON_HEADERS = (("content-type", "application/json"), ("cache-control", "no-store"))
_READ_ONLY = (GET,)
_FILES = (GET, DELETE)


class ManagementApi(object):
    """Serves every path under ``/v0/management``.

    ``environ`` resolves ``env:NAME`` values when a changed document is validated (the
    environment the config was loaded with); ``clock`` (monotonic seconds) times the
    wrong-key lock-out; ``request_lines`` (``requestlog.RecentLines``) feeds ``/logs``;
    ``usage`` (an object with ``report(since) -> dict``) feeds ``/usage``, which is 404
    without it; ``on_swap(old, new)`` runs after each change is put in force.
    """

    def __init__(
        self,
        environ: Mapping[str, str] = os.environ,
        *,
        clock: Callable[[], float] = time.monotonic,
        request_lines=None,
        usage=None,
        on_swap: Optional[Callable[[Config, Config], None]] = None
    ) -> None:
        self.environ = environ
        self.gate = Gate(clock)
        self.changer = Changer(environ, on_swap)
        self.request_lines = request_lines
        self.usage = usage

    async def handle(self, request, config: Config, store) -> Response:
        """Answer one management request against ``config`` (the snapshot in force) and
        swap a changed config into ``store``.

        Returns a 200 response. Raises ``NotFound`` (disabled, unknown path),
        ``Forbidden`` (remote peer), ``LockedOut`` (429), ``Unauthorized``,
        ``MethodNotAllowed``, ``BadRequest`` (bad JSON or parameter, masked secret, or a
        change that makes the config invalid: ``ConfigError`` naming each JSON path),
        ``PayloadTooLarge``, ``ConfigFileUnavailable`` and ``ConfigWriteFailed``.
        """
        self.gate.check(request, config.remote_management)
        parts = _parts(request.path)
        first = parts[0] if parts else ""
        if parts == ["config"]:
            _allow(request.method, _READ_ONLY)
            return _json(views.whole_config(config))
        if parts == ["ampcode"]:
            _allow(request.method, _READ_ONLY)
            return _json(views.ampcode(config.ampcode))
        if parts == ["logs"]:
            _allow(request.method, _READ_ONLY)
            return _json(self._logs(request, config))
        if first == "error-logs" and len(parts) <= 2:
            _allow(request.method, _FILES)
            return _error_logs(request, config, parts[1] if len(parts) == 2 else None)
        if parts == ["usage"]:
            _allow(request.method, _READ_ONLY)
            return _json(self._usage(request))
        field, ref = _field(parts)
        if ref is None:
            return await self._field(request, config, store, field)
        return await self._entry(request, config, store, field, ref)

    async def _field(self, request, config: Config, store, field: Field) -> Response:
        _allow(request.method, field.methods)
        if request.method == GET:
            return _json({"value": field.view(config)})
        body = await read_body(request)
        document = current_document(config)
        value, extra = edits.field_change(field, request.method, body, document)
        answer = self.changer.apply(config, store, document, field, value, request.method)
        answer.update(extra)
        return _json(answer)

    async def _entry(self, request, config: Config, store, field: Field, ref: str) -> Response:
        _allow(request.method, field.entries.entry_methods)
        if request.method == GET:
            shown = field.view(config)
            return _json({"value": shown[edits.find_entry(field, shown, ref)]})
        body = await read_body(request)
        document = current_document(config)
        value, extra, _ = edits.entry_change(field, ref, request.method, body, document)
        answer = self.changer.apply(config, store, document, field, value, request.method)
        answer.update(extra)
        return _json(answer)

    def _logs(self, request, config: Config) -> Dict[str, Any]:
        after = after_param(request.query)
        lines = self.request_lines
        return {
            "request-log": config.request_log,
            "latest": lines.latest if lines is not None else 0,
            "lines": lines.after(after) if lines is not None else [],
        }

    def _usage(self, request) -> Dict[str, Any]:
        if self.usage is None:
            raise NotFound("usage accounting is not enabled")
        return self.usage.report(since_param(request.query))


def _parts(path: str):
    """The segments after the prefix (a trailing ``/`` ignored); 404 for the bare prefix."""
    rest = path[len(PREFIX):] if path.startswith(PREFIX + "/") else ""
    parts = rest.strip("/").split("/") if rest.strip("/") else []
    if not parts or "" in parts:
        raise NotFound("no management route %s" % path)
    return parts


def _field(parts) -> Tuple[Field, Optional[str]]:
    """The field ``parts`` name, and the entry reference after it (None: the whole key).
    Raises ``NotFound``."""
    for size in (2, 1):
        field = FIELDS.get("/".join(parts[:size]))
        if field is None:
            continue
        rest = parts[size:]
        if not rest:
            return field, None
        if len(rest) == 1 and field.entries is not None and field.entries.addressable:
            return field, rest[0]
    raise NotFound("no management route %s/%s" % (PREFIX, "/".join(parts)))


def _error_logs(request, config: Config, name: Optional[str]) -> Response:
    directory = config.logs_dir
    if name is None and request.method == GET:
        return _json({"files": errorlogs.list_files(directory)})
    if name is None:
        return _json({"ok": True, "removed": errorlogs.delete_all(directory)})
    if request.method == GET:
        return Response(200, Headers(_JSON_HEADERS), errorlogs.read_file(directory, name))
    errorlogs.delete_file(directory, name)
    return _json({"ok": True, "removed": 1})


def _allow(method: str, methods: Tuple[str, ...]) -> None:
    if method not in methods:
        raise MethodNotAllowed(
            "method %s is not allowed here (allowed: %s)" % (method, ", ".join(methods)),
            headers=(("allow", ", ".join(methods)),),
        )


def _json(value: Dict[str, Any]) -> Response:
    body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(200, Headers(_JSON_HEADERS), body)


__all__ = ["MAX_BODY_BYTES", "ManagementApi", "PREFIX"]
