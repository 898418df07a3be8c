"""JSON document → ``Config``, with every error named by its JSON path.

Strategy: validation is table-driven. Each JSON object is described by a table of
``_Field(key, reader, required)``; ``_read_object`` walks the table, reports unknown keys
(with a "did you mean" hint) and hands each present value to its reader. A reader is
``reader(ctx, value, path) -> converted value`` that reports what is wrong through ``ctx``
and returns ``_BAD`` instead of raising, so one pass collects every error in the file.
Converted values are passed as keyword arguments to the frozen dataclasses of
``cliproxy.config.model`` (JSON ``kebab-case`` → ``snake_case``), whose own defaults fill
in what the file omits: the defaults live in one place.

Conventions every reader follows:
- ``null`` is the same as an absent key (the default applies, or "required" is reported);
- a string ``"env:NAME"`` is replaced by the environment variable NAME wherever a string is
  accepted, before the value is checked; a missing variable is an error naming the path
  and the variable, never a value;
- a string ``"file:PATH"`` is replaced by the content of that file, one trailing line
  ending removed; a relative PATH is looked up in ``$CREDENTIALS_DIRECTORY`` (systemd's
  ``LoadCredential=``) first, then next to the config file; a file that cannot be read is
  an error naming the path and the file, never its content;
- error messages never echo a value that could be a secret;
- relative file paths (``tls.cert``, ``tls.key``, ``ca-bundle``) are resolved against the
  directory of the config file, so a service does not depend on its cwd; a relative
  ``logs-dir`` follows systemd's ``$LOGS_DIRECTORY``, else ``$STATE_DIRECTORY``, else that
  same directory, so a unit with ``ProtectSystem=strict`` writes where it may.
"""

import codecs
import copy
import difflib
import ipaddress
import json
import math
import os
import re
from collections import namedtuple
from typing import Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from cliproxy.config.model import (
    TLS,
    AmpCode,
    Config,
    Limits,
    ModelEntry,
    ModelMapping,
    PaidFallback,
    ProviderEntry,
    ProviderKind,
    RemoteManagement,
    UpstreamKeyMapping,
)
from cliproxy.errors import ProxyError
from cliproxy.jsontext import loads

ENV_PREFIX = "env:"
FILE_PREFIX = "file:"
DEFAULT_CONFIG_NAME = "config.json"

# Where systemd tells a service its credentials and directories are (systemd.exec(5)).
CREDENTIALS_DIRECTORY = "CREDENTIALS_DIRECTORY"
# In order of preference for a relative logs-dir: LogsDirectory=, then StateDirectory=.
LOGS_BASE_VARIABLES = ("LOGS_DIRECTORY", "STATE_DIRECTORY")
# A "file:" value is a key or a URL, never more than a few KiB; a bigger file is a mistake.
MAX_VALUE_FILE_BYTES = 64 * 1024

# Where a provider kind's requests go when its entry has no "base-url" (SPEC §2).
DEFAULT_BASE_URLS = {
    ProviderKind.CLAUDE: "https://api.anthropic.com",
    ProviderKind.GEMINI: "https://generativelanguage.googleapis.com",
    ProviderKind.CODEX: "https://api.openai.com/v1",
}

# RFC 9110 §5.6.2: a field name is a token.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class ConfigError(ProxyError):
    """The config is invalid. ``errors`` lists every problem as ``"json.path: what"``.

    A ``ProxyError`` (400) so that a management API change producing an invalid config is
    answered like any other bad request.
    """

    status = 400
    error_type = "invalid_request_error"

    def __init__(self, errors):
        self.errors = list(errors)
        super().__init__("invalid config: " + "; ".join(self.errors))


class _Bad(object):
    """The value a reader returns after reporting an error."""

    def __repr__(self):
        return "<invalid>"


_BAD = _Bad()
_Field = namedtuple("_Field", "key reader required")


class _Context(object):
    """What one validation pass accumulates, and what every reader needs."""

    def __init__(self, environ, strict, base_dir):
        self.environ = environ
        self.strict = strict
        self.base_dir = base_dir
        self.errors = []  # type: List[str]
        self.warnings = []  # type: List[str]

    def error(self, path, message):
        self.errors.append("%s: %s" % (path or "(document)", message))
        return _BAD

    def warn(self, path, message):
        self.warnings.append("%s: %s" % (path or "(document)", message))

    def unknown_key(self, path, key, known):
        hint = difflib.get_close_matches(key, known, n=1)
        message = "unknown key" + (' (did you mean "%s"?)' % hint[0] if hint else "")
        if self.strict:
            self.error(_join(path, key), message)
        else:
            self.warn(_join(path, key), message)

    def resolve_path(self, name):
        if self.base_dir is None or os.path.isabs(name):
            return name
        return os.path.normpath(os.path.join(self.base_dir, name))

    def resolve_logs_dir(self, name):
        """``name`` made absolute against systemd's logs or state directory when the
        service has one, else like any other relative path."""
        base = logs_base(self.environ)
        if base is None or os.path.isabs(name):
            return self.resolve_path(name)
        return os.path.normpath(os.path.join(base, name))


def logs_base(environ: Mapping[str, str]) -> Optional[str]:
    """The directory systemd gave the service for logs (``LogsDirectory=``), else for state
    (``StateDirectory=``), or None. Several directories arrive colon-separated: the first
    one is the one named first in the unit."""
    for variable in LOGS_BASE_VARIABLES:
        first = (environ.get(variable) or "").split(":", 1)[0]
        if first:
            return first
    return None


def _join(path, key):
    return "%s.%s" % (path, key) if path else key


def _attr(key):
    return key.replace("-", "_")


# ---- readers: (ctx, value, path) -> converted value, or _BAD after ctx.error ------------


def _text(ctx, value, path):
    """Any string, after ``env:NAME`` or ``file:PATH`` substitution."""
    if not isinstance(value, str):
        return ctx.error(path, "must be a string")
    if value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX):]
        if not name:
            return ctx.error(path, '"env:" needs a variable name')
        if name not in ctx.environ:
            return ctx.error(path, "environment variable %s is not set" % name)
        return ctx.environ[name]
    if value.startswith(FILE_PREFIX):
        return _file_value(ctx, value[len(FILE_PREFIX):], path)
    return value


def _value_file_name(ctx, name):
    """Where a ``file:`` value is read from, and what else was looked at: an absolute name
    as it is; a relative one in ``$CREDENTIALS_DIRECTORY`` when it is there, else next to
    the config file."""
    if os.path.isabs(name):
        return name, None
    credentials = ctx.environ.get(CREDENTIALS_DIRECTORY)
    if not credentials:
        return ctx.resolve_path(name), None
    candidate = os.path.join(credentials, name)
    if os.path.exists(candidate):
        return candidate, None
    return ctx.resolve_path(name), "not in $%s (%s) either" % (CREDENTIALS_DIRECTORY, credentials)


def _file_value(ctx, name, path):
    """The text of the file ``name`` without its final line ending. Errors name the file
    and the reason, never what the file holds."""
    if not name:
        return ctx.error(path, '"file:" needs a file name')
    filename, also_looked = _value_file_name(ctx, name)
    try:
        with open(filename, "rb") as handle:
            data = handle.read(MAX_VALUE_FILE_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if also_looked:
            reason += "; " + also_looked
        return ctx.error(path, "cannot read %s: %s" % (filename, reason))
    if len(data) > MAX_VALUE_FILE_BYTES:
        return ctx.error(path, "%s is larger than %d bytes" % (filename, MAX_VALUE_FILE_BYTES))
    try:
        text = codecs.decode(data, "utf-8-sig")
    except UnicodeDecodeError as exc:
        return ctx.error(path, "%s is not UTF-8 (byte %d)" % (filename, exc.start))
    # ``echo KEY > file`` and editors end the file with a newline that is no part of it.
    if text.endswith("\n"):
        text = text[:-2] if text.endswith("\r\n") else text[:-1]
    return text


def _nonempty(ctx, value, path):
    text = _text(ctx, value, path)
    if text == "":
        return ctx.error(path, "must be a non-empty string")
    return text


def _optional(ctx, value, path):
    """A string where ``""`` means "none": returns ``None`` for it."""
    text = _text(ctx, value, path)
    return None if text == "" else text


def _bool(ctx, value, path):
    if not isinstance(value, bool):
        return ctx.error(path, "must be true or false")
    return value


def _int_range(low, high=None, what=None):
    if what is None:
        what = "from %d to %d" % (low, high) if high is not None else ">= %d" % low

    def read(ctx, value, path):
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or value < low
            or (high is not None and value > high)
        ):
            return ctx.error(path, "must be an integer " + what)
        return value

    return read


def _positive_number(ctx, value, path):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        return ctx.error(path, "must be a number > 0")
    return float(value)


def _http_url(ctx, value, path):
    """An ``http(s)://host[:port][/path]`` URL, trailing slash stripped."""
    text = _text(ctx, value, path)
    if text is _BAD:
        return text
    if not _is_http_url(text):
        return ctx.error(path, "must be an http:// or https:// URL")
    return text.rstrip("/")


def _optional_http_url(ctx, value, path):
    """An http(s) URL, or ``""`` → None."""
    text = _text(ctx, value, path)
    if text == "":
        return None
    return _http_url(ctx, text, path)


def _is_http_url(text):
    try:
        parts = urlsplit(text)
        parts.port  # raises ValueError on a malformed port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _proxy_url(ctx, value, path):
    """``""`` → None (environment proxies), ``"direct"``, or ``http://[user:pass@]host[:port]``
    (port 80 when omitted), the only form ``cliproxy.http.client`` speaks to a proxy."""
    text = _text(ctx, value, path)
    if text is _BAD or text in ("", "direct"):
        return None if text == "" else text
    expected = 'must be "", "direct" or http://[user:pass@]host:port'
    try:
        parts = urlsplit(text)
        parts.port  # raises ValueError on a malformed port
    except ValueError:
        return ctx.error(path, expected)
    if parts.scheme.startswith("socks") or parts.scheme == "https":
        return ctx.error(path, "only http proxies are supported")
    if parts.scheme != "http" or not parts.hostname:
        return ctx.error(path, expected)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return ctx.error(path, expected)
    return text


def _path(ctx, value, path):
    """A file name; ``""`` → None. Relative names follow the config file's directory."""
    text = _optional(ctx, value, path)
    if text is _BAD or text is None:
        return text
    return ctx.resolve_path(text)


def _file(ctx, value, path):
    """A file that must exist; ``""`` → None."""
    name = _path(ctx, value, path)
    if name is _BAD or name is None:
        return name
    if not os.path.isfile(name):
        return ctx.error(path, "file not found: %s" % name)
    return name


def _logs_directory(ctx, value, path):
    text = _nonempty(ctx, value, path)
    return text if text is _BAD else ctx.resolve_logs_dir(text)


def _choice(enum_type):
    allowed = [member.value for member in enum_type]

    def read(ctx, value, path):
        text = _text(ctx, value, path)
        if text is _BAD:
            return text
        for member in enum_type:
            if member.value == text:
                return member
        return ctx.error(path, "must be " + _alternatives(allowed))

    return read


def _alternatives(words):
    quoted = ['"%s"' % w for w in words]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0]


def _list(item, nonempty=False):
    """A JSON list whose items all pass ``item``; returned as a tuple."""

    def read(ctx, value, path):
        if not isinstance(value, list) or (nonempty and not value):
            return ctx.error(path, "must be a non-empty list" if nonempty else "must be a list")
        items = [item(ctx, v, "%s[%d]" % (path, i)) for i, v in enumerate(value)]
        return _BAD if any(v is _BAD for v in items) else tuple(items)

    return read


def _headers(ctx, value, path):
    """An object of header name → value, as a tuple of pairs in file order."""
    if not isinstance(value, dict):
        return ctx.error(path, "must be an object of header name to value")
    pairs = []
    for name, raw in value.items():
        child = _join(path, name)
        if not _TOKEN.match(name):
            ctx.error(child, "not a valid header name")
            continue
        text = _text(ctx, raw, child)
        if text is _BAD:
            continue
        if "\r" in text or "\n" in text or "\0" in text:
            ctx.error(child, "header value must not contain CR, LF or NUL")
            continue
        pairs.append((name, text))
    return tuple(pairs)


def _section(fields, build):
    """A JSON object described by ``fields``, turned into a value by
    ``build(ctx, values, path)`` (``values``: attribute name → converted value)."""
    table = {f.key: f for f in fields}

    def read(ctx, value, path):
        errors_before = len(ctx.errors)
        values = _read_object(ctx, value, path, table)
        if values is None or len(ctx.errors) > errors_before:
            return _BAD  # already reported; building would only add noise
        return build(ctx, values, path)

    return read


def _read_object(
    ctx: _Context, node: Any, path: str, table: Dict[str, _Field]
) -> Optional[Dict[str, Any]]:
    """Check ``node`` against ``table``; return attribute name → converted value for the
    keys present (``_BAD`` where invalid), or None when ``node`` is not an object."""
    if not isinstance(node, dict):
        ctx.error(path, "must be an object")
        return None
    for key in getattr(node, "duplicate_keys", ()):
        if ctx.strict:
            ctx.error(_join(path, key), "duplicate key")
        else:
            ctx.warn(_join(path, key), "duplicate key (the last one is used)")
    for key in node:
        if key not in table:
            ctx.unknown_key(path, key, list(table))
    values = {}
    for key, spec in table.items():
        raw = node.get(key)
        if raw is None:
            if spec.required:
                ctx.error(_join(path, key), "required")
            continue
        values[_attr(key)] = spec.reader(ctx, raw, _join(path, key))
    return values


# ---- builders: (ctx, values, path) -> model object -------------------------------------
# ``_section`` calls a builder only when its object had no error, so ``values`` holds only
# converted values.


def _into(cls):
    """The builder of a section that maps one to one onto a model dataclass."""

    def build(ctx, values, path):
        return cls(**values)

    return build


def _build_tls(ctx, values, path):
    """Certificate and key are checked only when TLS is on, so a disabled block may keep
    paths that do not exist on this host."""
    if values.get("enable") is True:
        for key in ("cert", "key"):
            name = values.get(key)
            if name is None:
                ctx.error(_join(path, key), "required when tls.enable is true")
            elif not os.path.isfile(name):
                ctx.error(_join(path, key), "file not found: %s" % name)
    return TLS(**values)


def _provider_builder(kind):
    def build(ctx, values, path):
        values.setdefault("base_url", DEFAULT_BASE_URLS[kind])
        return ProviderEntry(kind=kind, path=path, name=kind.value, **values)

    return build


def _build_compat(ctx, values, path):
    """One openai-compatibility block → one ProviderEntry per api-key entry."""
    keys = values.pop("api_key_entries", ())
    shared = dict(values, kind=ProviderKind.OPENAI_COMPAT)
    if not keys:  # a local server that takes no key
        return (ProviderEntry(path=path, api_key="", **shared),)
    return tuple(
        ProviderEntry(
            path="%s.api-key-entries[%d]" % (path, i),
            api_key=key.get("api_key", ""),
            proxy_url=key.get("proxy_url"),
            **shared
        )
        for i, key in enumerate(keys)
    )


def _build_key_entry(ctx, values, path):
    return values  # expanded by _build_compat


def _targets(ctx, value, path):
    """``to``: one model name, or a non-empty list of them."""
    names = value if isinstance(value, list) and value else [value]
    out = []
    for name in names:
        if not isinstance(name, str):
            return ctx.error(path, "must be a model name or a list of model names")
        text = _text(ctx, name, path)
        if text is _BAD:
            return text
        if not text:
            return ctx.error(path, "must be a model name or a list of model names")
        out.append(text)
    return tuple(out)


_MAPPING_FIELDS = {
    f.key: f
    for f in (
        _Field("from", _nonempty, True),
        _Field("to", _targets, True),
        _Field("regex", _bool, False),
    )
}


def _model_mappings(ctx, value, path):
    """Mappings in file order; ``index`` is the position in the file's list."""
    if not isinstance(value, list):
        return ctx.error(path, "must be a list")
    mappings = []
    first_seen = {}  # lowercase exact "from" → its path
    for index, node in enumerate(value):
        item = "%s[%d]" % (path, index)
        values = _read_object(ctx, node, item, _MAPPING_FIELDS)
        if values is None:
            continue
        source, targets = values.get("from"), values.get("to")
        regex = values.get("regex") is True
        if source in (None, _BAD) or targets in (None, _BAD):
            continue
        pattern = None
        if regex:
            try:
                pattern = re.compile(source, re.IGNORECASE)
            except re.error as exc:
                ctx.error(_join(item, "from"), "invalid regular expression: %s" % exc)
                continue
        else:
            key = source.lower()
            if key in first_seen:
                ctx.warn(
                    _join(item, "from"),
                    "same model as %s (the first one wins)" % first_seen[key],
                )
            else:
                first_seen[key] = _join(item, "from")
        mappings.append(ModelMapping(source, targets, regex, index, pattern))
    return tuple(mappings)


_MODEL = _section(
    (_Field("name", _nonempty, True), _Field("alias", _optional, False)),
    _into(ModelEntry),
)

_PROVIDER_FIELDS = (
    _Field("api-key", _nonempty, True),
    _Field("base-url", _http_url, False),
    _Field("headers", _headers, False),
    _Field("proxy-url", _proxy_url, False),
    _Field("models", _list(_MODEL), False),
    _Field("excluded-models", _list(_nonempty), False),
)

_COMPAT = _section(
    (
        _Field("name", _nonempty, True),
        _Field("base-url", _http_url, True),
        _Field(
            "api-key-entries",
            _list(
                _section(
                    (_Field("api-key", _text, False), _Field("proxy-url", _proxy_url, False)),
                    _build_key_entry,
                )
            ),
            False,
        ),
        _Field("headers", _headers, False),
        _Field("models", _list(_MODEL, nonempty=True), True),
        _Field("excluded-models", _list(_nonempty), False),
    ),
    _build_compat,
)

_AMPCODE = _section(
    (
        _Field("upstream-url", _optional_http_url, False),
        _Field("upstream-api-key", _optional, False),
        _Field(
            "upstream-api-keys",
            _list(
                _section(
                    (
                        _Field("upstream-api-key", _nonempty, True),
                        _Field("api-keys", _list(_nonempty, nonempty=True), True),
                    ),
                    _into(UpstreamKeyMapping),
                )
            ),
            False,
        ),
        _Field("restrict-management-to-localhost", _bool, False),
        _Field("force-model-mappings", _bool, False),
        _Field("paid-fallback", _choice(PaidFallback), False),
        _Field("model-mappings", _model_mappings, False),
    ),
    _into(AmpCode),
)

_PROVIDER_KEYS = (ProviderKind.CLAUDE, ProviderKind.GEMINI, ProviderKind.CODEX)

_TOP_FIELDS = (
    _Field("host", _nonempty, False),
    _Field("port", _int_range(0, 65535, "from 0 to 65535 (0: any free port)"), False),
    _Field(
        "tls",
        _section(
            (
                _Field("enable", _bool, False),
                _Field("cert", _path, False),
                _Field("key", _path, False),
            ),
            _build_tls,
        ),
        False,
    ),
    _Field("api-keys", _list(_nonempty), False),
    _Field("allow-unauthenticated", _bool, False),
    _Field("proxy-url", _proxy_url, False),
    _Field("ca-bundle", _file, False),
    _Field("request-retry", _int_range(0), False),
    _Field(
        "limits",
        _section(
            (
                _Field("max-header-bytes", _int_range(1024), False),
                _Field("max-body-bytes", _int_range(1), False),
                _Field("connect-timeout", _positive_number, False),
                _Field("read-timeout", _positive_number, False),
                _Field("request-timeout", _positive_number, False),
                _Field("idle-timeout", _positive_number, False),
                _Field("drain-timeout", _positive_number, False),
                _Field("max-connections", _int_range(1), False),
            ),
            _into(Limits),
        ),
        False,
    ),
    _Field("debug", _bool, False),
    _Field("metrics-auth", _bool, False),
    _Field("request-log", _bool, False),
    _Field("logs-dir", _logs_directory, False),
    _Field("error-logs-max-files", _int_range(0), False),
    _Field("reload-interval", _positive_number, False),
    _Field(
        "remote-management",
        _section(
            (_Field("allow-remote", _bool, False), _Field("secret-key", _optional, False)),
            _into(RemoteManagement),
        ),
        False,
    ),
    _Field("claude-api-key", _list(_section(_PROVIDER_FIELDS, _provider_builder(ProviderKind.CLAUDE))), False),
    _Field("gemini-api-key", _list(_section(_PROVIDER_FIELDS, _provider_builder(ProviderKind.GEMINI))), False),
    _Field("codex-api-key", _list(_section(_PROVIDER_FIELDS, _provider_builder(ProviderKind.CODEX))), False),
    _Field("openai-compatibility", _list(_COMPAT), False),
    _Field("ampcode", _AMPCODE, False),
)
_TOP_TABLE = {f.key: f for f in _TOP_FIELDS}


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1`` (brackets allowed)."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_open_access(ctx, values):
    """SPEC §2: no client keys is allowed only on loopback or when explicitly wanted."""
    keys = values.get("api_keys", ())
    host = values.get("host", Config.host)
    if keys is _BAD or host is _BAD or keys or values.get("allow_unauthenticated") is True:
        return
    if not is_loopback(host):
        ctx.error(
            "api-keys",
            "empty while host is %s: anyone who can reach the port could use your "
            "providers; add a client key, bind to 127.0.0.1, or set "
            '"allow-unauthenticated": true' % host,
        )


def _build_config(values, document, source_path):
    providers = []
    for kind in _PROVIDER_KEYS:
        providers.extend(values.pop(_attr(kind.value), ()))
    for block in values.pop(_attr(ProviderKind.OPENAI_COMPAT.value), ()):
        providers.extend(block)
    return Config(providers=tuple(providers), source_path=source_path, document=document, **values)


# ---- public API ------------------------------------------------------------------------


def parse_document(
    doc: Any,
    *,
    source_path: Optional[str] = None,
    environ: Mapping[str, str] = os.environ,
    strict: bool = False
) -> Tuple[Config, List[str]]:
    """Validate a parsed JSON document and build the ``Config``.

    Returns ``(config, warnings)``; ``config.document`` is a deep copy of ``doc`` as
    written (``env:`` references unresolved, so a write-back never leaks them).
    Unknown and duplicate keys are errors when ``strict`` (``check``), warnings otherwise.
    Raises ``ConfigError`` listing every problem found.
    """
    base_dir = os.path.dirname(os.path.abspath(source_path)) if source_path else None
    ctx = _Context(environ, strict, base_dir)
    values = _read_object(ctx, doc, "", _TOP_TABLE)
    if values is not None:
        _check_open_access(ctx, values)
    if ctx.errors:
        raise ConfigError(ctx.errors)
    # The default logs directory is resolved like an explicit one would be.
    values.setdefault("logs_dir", ctx.resolve_logs_dir(Config.logs_dir))
    return _build_config(values, copy.deepcopy(doc), source_path), ctx.warnings


class _DuplicateKeys(dict):
    """A JSON object in which some keys were repeated (reported by ``_read_object``)."""

    duplicate_keys = ()


def _object_pairs(pairs):
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    counts = {}  # type: Dict[str, int]
    for key, _ in pairs:
        counts[key] = counts.get(key, 0) + 1
    marked = _DuplicateKeys(obj)
    marked.duplicate_keys = tuple(k for k, n in counts.items() if n > 1)
    return marked


def _reject_constant(name):
    raise ValueError("%s is not valid JSON" % name)


def parse_json(text: str, source: str = "config") -> Any:
    """Parse JSON text; raises ``ConfigError`` naming line and column on bad syntax."""
    try:
        return loads(text, object_pairs_hook=_object_pairs, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            ["%s: invalid JSON at line %d column %d: %s" % (source, exc.lineno, exc.colno, exc.msg)]
        )
    except ValueError as exc:  # NaN / Infinity
        raise ConfigError(["%s: invalid JSON: %s" % (source, exc)])


def load_file(
    path: str, *, environ: Mapping[str, str] = os.environ, strict: bool = False
) -> Tuple[Config, List[str]]:
    """Read a config file (UTF-8, a BOM tolerated) and validate it.

    Returns ``(config, warnings)`` with ``config.source_path == path``. Raises
    ``ConfigError`` when the file cannot be read, is not JSON, or is invalid.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ConfigError(["%s: cannot read: %s" % (path, exc.strerror or exc)])
    try:
        text = codecs.decode(data, "utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(["%s: not UTF-8 (byte %d)" % (path, exc.start)])
    document = parse_json(text, path)
    return parse_document(document, source_path=path, environ=environ, strict=strict)


def default_config(environ: Mapping[str, str] = os.environ) -> Config:
    """The built-in defaults (SPEC §1): 127.0.0.1:8317, upstream ampcode.com, no providers;
    ``logs-dir`` in systemd's logs or state directory when ``environ`` names one."""
    base = logs_base(environ)
    return Config() if base is None else Config(logs_dir=os.path.join(base, Config.logs_dir))


def find_config(cli_path: Optional[str], cwd: str = ".") -> Optional[str]:
    """The config file to use: ``cli_path`` when given (whether it exists is the
    caller's business), else ``<cwd>/config.json`` if it exists, else None."""
    if cli_path:
        return cli_path
    candidate = os.path.join(cwd, DEFAULT_CONFIG_NAME)
    return candidate if os.path.isfile(candidate) else None


__all__ = [
    "ConfigError",
    "DEFAULT_BASE_URLS",
    "default_config",
    "find_config",
    "is_loopback",
    "load_file",
    "logs_base",
    "parse_document",
    "parse_json",
]
