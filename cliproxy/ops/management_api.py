"""The local management API: read and change the ``ampcode`` section at run time (SPEC §3.3).

Strategy: every request goes through the same four steps, in this order.
1. Gate: disabled (404) without ``remote-management.secret-key``; a peer that is not a
   loopback socket address gets 403 unless ``allow-remote`` (checked before the key, so a
   remote client cannot even probe keys); then the key, from ``Authorization: Bearer`` or
   ``X-Management-Key``, compared in constant time (``amp.auth.KeySet``) → 401.
2. Route: the path names the whole section or one field of ``_FIELDS``; each field lists
   the methods it takes (404 for an unknown path, 405 with ``Allow`` for a wrong method).
3. Read: GET answers the *effective* values of the config in force, in the file's
   kebab-case names, secrets masked (``masking.mask_secret``).
4. Change: PUT, PATCH and DELETE compute one new value for one ``ampcode`` key (or
   ``writer.DELETE``), never a partial edit of a ``Config``. The new document is the
   config file as it is on disk now (so an edit saved a moment ago, not yet picked up by
   the watcher, is not lost) with that key changed by ``writer.update_ampcode``; it is
   validated by the loader exactly as a reload would be; only a valid document is written
   (atomic rename), and then its ``ampcode`` section replaces the one in force (one
   ``store.swap``), so a change applies at once. Nothing is awaited between reading the
   file and swapping, so two changes cannot interleave.

A value that carries a masked secret back (``masking.is_masked``: the ``…`` of a masked
form, or the full mask) is refused before anything else, so GET's output can never
overwrite a real secret. Values and secrets never appear in logs or error messages; each
change logs one INFO line naming the key, not the value.
"""

import codecs
import dataclasses
import json
import logging
import os
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from cliproxy.amp.auth import KeySet, is_loopback
from cliproxy.config.loader import ConfigError, parse_document, parse_json
from cliproxy.config.model import AmpCode, Config
from cliproxy.config.writer import DELETE, update_ampcode, write_document
from cliproxy.errors import BadRequest, Forbidden, NotFound, ProxyError, Unauthorized
from cliproxy.http.headers import Headers
from cliproxy.http.server import Response
from cliproxy.jsontext import loads
from cliproxy.masking import is_masked, mask_secret

log = logging.getLogger("cliproxy.ops.management_api")

PREFIX = "/v0/management"
SECTION = "ampcode"

# A change is one small JSON value; 1 MiB leaves room for thousands of model mappings.
MAX_BODY_BYTES = 1024 * 1024

_JSON_HEADERS = (("content-type", "application/json"), ("cache-control", "no-store"))
_BEARER_CHALLENGE = (("www-authenticate", 'Bearer realm="cliproxy-management"'),)

GET, PUT, PATCH, DELETE_METHOD = "GET", "PUT", "PATCH", "DELETE"
_MASKED_REFUSED = (
    "a masked secret cannot be written back; send the real value (or an env:NAME reference)"
)


class MethodNotAllowed(ProxyError):
    status = 405
    error_type = "invalid_request_error"


class ConfigFileUnavailable(ProxyError):
    """The config file cannot be read or parsed right now, so no change can be based on it."""

    status = 409
    error_type = "invalid_request_error"


class ConfigWriteFailed(ProxyError):
    status = 500
    error_type = "api_error"


# ---- fields: what GET shows and where a PUT value may hold a secret ----------------------


def _model_mapping_view(ampcode: AmpCode) -> List[Dict[str, Any]]:
    # One target is shown as a string, several as a list: the forms the file accepts.
    return [
        {
            "from": m.source,
            "to": m.targets[0] if len(m.targets) == 1 else list(m.targets),
            "regex": m.regex,
        }
        for m in ampcode.model_mappings
    ]


def _upstream_keys_view(ampcode: AmpCode) -> List[Dict[str, Any]]:
    return [
        {
            "upstream-api-key": mask_secret(m.upstream_api_key),
            "api-keys": [mask_secret(key) for key in m.api_keys],
        }
        for m in ampcode.upstream_api_keys
    ]


def _no_secrets(value: Any, path: str) -> Iterator[Tuple[str, Any]]:
    return iter(())


def _secret_value(value: Any, path: str) -> Iterator[Tuple[str, Any]]:
    yield path, value


def _upstream_key_secrets(value: Any, path: str) -> Iterator[Tuple[str, Any]]:
    """Every place in an ``upstream-api-keys`` value where a secret goes. Items of the
    wrong shape are skipped here; the loader reports them."""
    if not isinstance(value, list):
        return
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            continue
        item = "%s[%d]" % (path, i)
        yield item + ".upstream-api-key", entry.get("upstream-api-key")
        keys = entry.get("api-keys")
        if isinstance(keys, list):
            for j, key in enumerate(keys):
                yield "%s.api-keys[%d]" % (item, j), key


@dataclasses.dataclass(frozen=True)
class _Field:
    """One ``ampcode`` key the API serves at ``/v0/management/ampcode/<key>``."""

    key: str
    methods: Tuple[str, ...]
    view: Callable[[AmpCode], Any]  # the effective value, secrets masked
    secrets: Callable[[Any, str], Iterator[Tuple[str, Any]]]  # (json path, value) pairs

    @property
    def path(self) -> str:
        return "%s.%s" % (SECTION, self.key)


_SCALAR_METHODS = (GET, PUT, DELETE_METHOD)

_FIELDS = {
    f.key: f
    for f in (
        # None (offline, SPEC §3.1) is spelled "" in the file, and so here.
        _Field("upstream-url", _SCALAR_METHODS, lambda a: a.upstream_url or "", _no_secrets),
        _Field(
            "upstream-api-key",
            _SCALAR_METHODS,
            lambda a: mask_secret(a.upstream_api_key or ""),
            _secret_value,
        ),
        _Field("upstream-api-keys", _SCALAR_METHODS, _upstream_keys_view, _upstream_key_secrets),
        _Field(
            "restrict-management-to-localhost",
            _SCALAR_METHODS,
            lambda a: a.restrict_management_to_localhost,
            _no_secrets,
        ),
        _Field(
            "force-model-mappings", _SCALAR_METHODS, lambda a: a.force_model_mappings, _no_secrets
        ),
        _Field("paid-fallback", _SCALAR_METHODS, lambda a: a.paid_fallback.value, _no_secrets),
        _Field(
            "model-mappings",
            (GET, PUT, PATCH, DELETE_METHOD),
            _model_mapping_view,
            _no_secrets,
        ),
    )
}


def section_view(ampcode: AmpCode) -> Dict[str, Any]:
    """The whole ``ampcode`` section as GET shows it: effective values, file key names,
    secrets masked."""
    return {key: field.view(ampcode) for key, field in _FIELDS.items()}


# ---- the API --------------------------------------------------------------------------


class ManagementApi(object):
    """Serves every path under ``/v0/management``.

    ``environ`` resolves ``env:NAME`` values when a changed document is validated; it
    should be the environment the config was loaded with.
    """

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self.environ = environ

    async def handle(self, request, config: Config, store) -> Response:
        """Answer one management request against ``config`` (the snapshot in force) and
        swap a changed config into ``store``.

        Returns a 200 JSON response. Raises ``NotFound`` (disabled, unknown path),
        ``Forbidden`` (remote peer), ``Unauthorized`` (missing or wrong key),
        ``MethodNotAllowed``, ``BadRequest`` (bad JSON, masked secret, or a change that
        makes the config invalid: ``ConfigError`` naming each JSON path),
        ``PayloadTooLarge``, ``ConfigFileUnavailable`` and ``ConfigWriteFailed``.
        """
        _authorize(request, config)
        field = _route(request.path)
        if field is None:
            _allow(request.method, (GET,))
            return _json(section_view(config.ampcode))
        _allow(request.method, field.methods)
        if request.method == GET:
            return _json({"value": field.view(config.ampcode)})
        body = await _read_body(request)
        document = _current_document(config)
        value, extra = _new_value(field, request.method, body, document)
        answer = self._apply(config, store, document, field, value, request.method)
        answer.update(extra)
        return _json(answer)

    def _apply(self, config, store, document, field, value, method) -> Dict[str, Any]:
        """Validate, write and swap the document with ``ampcode.<field>`` set to ``value``
        (removed when ``DELETE``). Returns the answer's members."""
        try:
            new_document = update_ampcode(document, {field.key: value})
        except ValueError as exc:  # the file's "ampcode" is not an object
            raise ConfigFileUnavailable("%s; fix the config file first" % exc)
        new_config, warnings = parse_document(
            new_document, source_path=config.source_path, environ=self.environ
        )
        own = [w for w in warnings if _is_under(w, field.path)]
        typos = [w for w in own if "unknown key" in w]
        if typos and method != DELETE_METHOD:
            raise BadRequest("invalid config: " + "; ".join(typos))
        # Only the ampcode section changes: every other setting stays as in force
        # (command-line host/port included, and everything on built-in defaults, which no
        # document describes). Other edits found in the file wait for the watcher.
        new_config = dataclasses.replace(
            config, ampcode=new_config.ampcode, document=new_config.document
        )
        persisted = config.source_path is not None
        if persisted:
            _write(config.source_path, new_document)
        store.swap(new_config)
        log.info(
            "management API changed the config",
            extra={
                "fields": {
                    "method": method,
                    "key": field.path,
                    "persisted": persisted,
                    "config": config.source_path,
                }
            },
        )
        answer = {"ok": True, "persisted": persisted}  # type: Dict[str, Any]
        if own:
            answer["warnings"] = own
        return answer


# ---- the steps ------------------------------------------------------------------------


def _authorize(request, config: Config) -> None:
    """Raise unless the management API is on, the peer may use it and the key is right."""
    settings = config.remote_management
    if not settings.secret_key:
        raise NotFound("the management API is disabled (remote-management.secret-key is empty)")
    if not settings.allow_remote and not is_loopback(request.peer[0]):
        raise Forbidden(
            "the management API answers loopback clients only "
            "(remote-management.allow-remote is false)"
        )
    offered = _offered_keys(request.headers)
    if not offered:
        raise Unauthorized("missing management key", headers=_BEARER_CHALLENGE)
    keys = KeySet((settings.secret_key,))
    # A list, not any(generator): every offered key is compared, whatever matched first.
    if not any([keys.contains(key) for key in offered]):
        raise Unauthorized("invalid management key", headers=_BEARER_CHALLENGE)


def _offered_keys(headers: Headers) -> List[str]:
    """The non-empty keys of both carriers. Both count, so a client may send its proxy
    key in ``Authorization`` and the management key in ``X-Management-Key``."""
    keys = []
    parts = (headers.get("authorization") or "").strip().split(None, 1)
    if len(parts) == 2 and parts[0].lower() == "bearer" and parts[1].strip():
        keys.append(parts[1].strip())
    direct = (headers.get("x-management-key") or "").strip()
    if direct:
        keys.append(direct)
    return keys


def _route(path: str) -> Optional[_Field]:
    """The field ``path`` names, or None for the whole section. Raises ``NotFound``."""
    rest = path[len(PREFIX):] if path.startswith(PREFIX) else ""
    if rest.endswith("/"):
        rest = rest[:-1]
    parts = rest.split("/")
    # parts[0] is "" (rest starts with "/"); then "ampcode" and at most one field.
    if len(parts) in (2, 3) and parts[0] == "" and parts[1] == SECTION:
        if len(parts) == 2:
            return None
        field = _FIELDS.get(parts[2])
        if field is not None:
            return field
    raise NotFound("no management route %s" % path)


def _allow(method: str, methods: Tuple[str, ...]) -> None:
    if method not in methods:
        raise MethodNotAllowed(
            "method %s is not allowed here (allowed: %s)" % (method, ", ".join(methods)),
            headers=(("allow", ", ".join(methods)),),
        )


def _reject_constant(name):
    raise ValueError("%s is not valid JSON" % name)


async def _read_body(request) -> Optional[Dict[str, Any]]:
    """The request's JSON body: None when empty, else an object whose only member is
    ``value``. Raises ``BadRequest`` (not JSON, wrong shape) or ``PayloadTooLarge``."""
    data = await request.body.read(MAX_BODY_BYTES)
    if not data.strip():
        return None
    try:
        body = loads(codecs.decode(data, "utf-8-sig"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        # json.JSONDecodeError is a ValueError; its message names a position, not content.
        raise BadRequest("request body is not valid JSON: %s" % _json_error(exc))
    if not isinstance(body, dict) or set(body) != {"value"}:
        raise BadRequest('request body must be a JSON object {"value": ...}')
    return body


def _json_error(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return "%s at line %d column %d" % (exc.msg, exc.lineno, exc.colno)
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 (byte %d)" % exc.start
    return str(exc)


def _current_document(config: Config) -> Dict[str, Any]:
    """The document a change starts from: the config file as it is now, or, running on
    built-in defaults, the in-memory document. Raises ``ConfigFileUnavailable``."""
    if config.source_path is None:
        return config.document if config.document is not None else {}
    path = config.source_path
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        document = parse_json(codecs.decode(data, "utf-8-sig"), path)
    except OSError as exc:
        raise ConfigFileUnavailable(
            "cannot read the config file %s: %s; nothing changed" % (path, exc.strerror or exc)
        )
    except UnicodeDecodeError as exc:
        raise ConfigFileUnavailable(
            "the config file %s is not UTF-8 (byte %d); nothing changed" % (path, exc.start)
        )
    except ConfigError as exc:
        raise ConfigFileUnavailable(
            "the config file is not valid JSON, fix it first: %s" % "; ".join(exc.errors)
        )
    if not isinstance(document, dict):
        raise ConfigFileUnavailable("the config file %s is not a JSON object" % path)
    return document


def _new_value(field: _Field, method: str, body, document) -> Tuple[Any, Dict[str, Any]]:
    """The value ``ampcode.<field>`` gets (``DELETE`` removes it) and extra members for
    the answer. Raises ``BadRequest``."""
    if method == PUT:
        if body is None or body["value"] is None:
            raise BadRequest(
                '%s: PUT takes {"value": ...}; use DELETE to restore the default' % field.path
            )
        _refuse_masked(field, body["value"])
        return body["value"], {}
    if method == PATCH:
        if body is None:
            raise BadRequest(
                '%s: PATCH takes {"value": [{"from": ..., "to": ...}, ...]}' % field.path
            )
        patched = _patched(field, _document_list(document, field), body["value"])
        _refuse_masked(field, patched)
        return patched, {}
    if body is None:
        return DELETE, {}
    if field.key != "model-mappings":
        raise BadRequest("%s: DELETE takes no body" % field.path)
    current = _document_list(document, field)
    kept = _without(field, current, body["value"])
    return kept, {"removed": len(current) - len(kept)}


def _refuse_masked(field: _Field, value: Any) -> None:
    for path, secret in field.secrets(value, field.path):
        if isinstance(secret, str) and is_masked(secret):
            raise BadRequest("%s: %s" % (path, _MASKED_REFUSED))


def _document_list(document: Dict[str, Any], field: _Field) -> List[Any]:
    """The list ``ampcode.<field>`` holds in ``document`` (``[]`` when absent)."""
    section = document.get(SECTION)
    value = section.get(field.key) if isinstance(section, dict) else None
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest("%s: the config file holds no list here; use PUT" % field.path)
    return value


def _from_key(entry: Any) -> Optional[str]:
    """A mapping's ``from``, lowercased for matching (SPEC §2: case-insensitive)."""
    if isinstance(entry, dict) and isinstance(entry.get("from"), str):
        return entry["from"].lower()
    return None


def _patched(field: _Field, current: List[Any], value: Any) -> List[Any]:
    """``current`` with each entry of ``value`` (one object or a list) replacing the entry
    with the same ``from``, or appended; order is kept."""
    entries = value if isinstance(value, list) else [value]
    result = list(current)
    for i, entry in enumerate(entries):
        key = _from_key(entry)
        if key is None:
            raise BadRequest('%s: PATCH entry %d needs a string "from"' % (field.path, i))
        for j, old in enumerate(result):
            if _from_key(old) == key:
                result[j] = entry
                break
        else:
            result.append(entry)
    return result


def _without(field: _Field, current: List[Any], value: Any) -> List[Any]:
    """``current`` without the entries whose ``from`` is in ``value`` (a list of names);
    names that match nothing are ignored (the answer's ``removed`` tells)."""
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise BadRequest('%s: DELETE takes {"value": ["from", ...]} or no body' % field.path)
    names = {name.lower() for name in value}
    return [entry for entry in current if _from_key(entry) not in names]


def _is_under(message: str, path: str) -> bool:
    """Whether a loader message ``"json.path: ..."`` is about ``path`` or below it."""
    return message.startswith(path) and message[len(path):len(path) + 1] in ("[", ".", ":")


def _write(path: str, document: Dict[str, Any]) -> None:
    try:
        write_document(path, document)
    except OSError as exc:
        log.error(
            "management API could not write the config file; nothing changed",
            extra={"fields": {"config": path, "reason": exc.strerror or str(exc)}},
        )
        raise ConfigWriteFailed(
            "cannot write the config file %s: %s; nothing changed" % (path, exc.strerror or exc)
        )


def _json(value: Dict[str, Any]) -> Response:
    body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(200, Headers(_JSON_HEADERS), body)


__all__ = ["ManagementApi", "MethodNotAllowed", "section_view", "MAX_BODY_BYTES", "PREFIX"]
