"""The configuration as immutable values.

Strategy: ``cliproxy.config.loader`` validates a JSON document and builds one ``Config``;
nothing else constructs these from JSON. Every object here is frozen: a request reads the
snapshot current when it arrived, and a reload builds a whole new ``Config`` and swaps one
reference. Field names are the JSON keys in snake_case; "nothing" is ``None`` or an empty
tuple, never ``""`` with a special meaning (the one exception, ``AmpCode.upstream_url``,
is documented on the field).
"""

import enum
from dataclasses import dataclass, field
from typing import Optional, Pattern, Tuple


class Protocol(enum.Enum):
    """A wire protocol a client speaks or a provider answers in."""

    CLAUDE = "claude"  # Anthropic Messages
    OPENAI = "openai"  # OpenAI Chat Completions
    RESPONSES = "responses"  # OpenAI Responses
    GEMINI = "gemini"  # Gemini generateContent


class ProviderKind(enum.Enum):
    """A kind of provider entry; ``value`` is its top-level config key."""

    CLAUDE = "claude-api-key"
    GEMINI = "gemini-api-key"
    CODEX = "codex-api-key"
    OPENAI_COMPAT = "openai-compatibility"

    @property
    def protocol(self):
        """The provider kind's native protocol (SPEC §2)."""
        return _NATIVE_PROTOCOL[self]


_NATIVE_PROTOCOL = {
    ProviderKind.CLAUDE: Protocol.CLAUDE,
    ProviderKind.GEMINI: Protocol.GEMINI,
    ProviderKind.CODEX: Protocol.RESPONSES,
    ProviderKind.OPENAI_COMPAT: Protocol.OPENAI,
}


class PaidFallback(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True)
class ModelEntry:
    """One model a provider entry serves: ``name`` goes upstream, ``alias`` (or ``name``
    when there is no alias) is what clients ask for."""

    name: str
    alias: Optional[str] = None

    @property
    def visible(self):
        return self.alias or self.name


@dataclass(frozen=True)
class ProviderEntry:
    """One credential of one provider kind.

    An ``openai-compatibility`` block with several ``api-key-entries`` becomes several
    entries sharing ``name``, ``base_url`` and ``models``. ``path`` is the JSON path of the
    credential (``claude-api-key[1]``, ``openai-compatibility[0].api-key-entries[2]``):
    logs and ``route`` name entries by it, never by their key.
    """

    kind: ProviderKind
    path: str
    api_key: str
    base_url: str
    name: str  # the kind's key, or the openai-compatibility block's "name"
    headers: Tuple[Tuple[str, str], ...] = ()
    proxy_url: Optional[str] = None  # None: inherit the top-level setting; "direct": none
    models: Tuple[ModelEntry, ...] = ()
    excluded_models: Tuple[str, ...] = ()
    # The kind's native protocol, read on every model call: a field, filled once here.
    protocol: Protocol = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "protocol", self.kind.protocol)


@dataclass(frozen=True)
class ModelMapping:
    """``from`` → ``to`` (primary first, then fallbacks). ``pattern`` is the compiled
    case-insensitive regex when ``regex`` is true, else ``None``."""

    source: str
    targets: Tuple[str, ...]
    regex: bool = False
    index: int = 0
    pattern: Optional[Pattern] = field(default=None, compare=False)


@dataclass(frozen=True)
class UpstreamKeyMapping:
    upstream_api_key: str
    api_keys: Tuple[str, ...]


@dataclass(frozen=True)
class AmpCode:
    # None: no upstream at all (offline mode, SPEC §3.1), which the file spells "".
    upstream_url: Optional[str] = "https://ampcode.com"
    upstream_api_key: Optional[str] = None
    upstream_api_keys: Tuple[UpstreamKeyMapping, ...] = ()
    restrict_management_to_localhost: bool = False
    force_model_mappings: bool = False
    paid_fallback: PaidFallback = PaidFallback.ALLOW
    model_mappings: Tuple[ModelMapping, ...] = ()


@dataclass(frozen=True)
class Limits:
    """The ``limits`` section (SPEC §4); docs/config.md says what each one protects."""

    max_header_bytes: int = 65536
    max_body_bytes: int = 33554432
    connect_timeout: float = 10.0
    read_timeout: float = 600.0  # any one wait for a peer's bytes, or for it to take ours
    idle_timeout: float = 75.0
    drain_timeout: float = 30.0
    # Added later: after the others, so positional construction keeps its meaning.
    request_timeout: float = 120.0  # a client's whole request, head and body
    max_connections: int = 4096  # client connections open at once


@dataclass(frozen=True)
class TLS:
    enable: bool = False
    cert: Optional[str] = None
    key: Optional[str] = None


@dataclass(frozen=True)
class RemoteManagement:
    allow_remote: bool = False
    secret_key: Optional[str] = None


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8317
    tls: TLS = TLS()
    api_keys: Tuple[str, ...] = ()
    allow_unauthenticated: bool = False
    proxy_url: Optional[str] = None  # None: honour HTTPS_PROXY/HTTP_PROXY/NO_PROXY
    ca_bundle: Optional[str] = None  # extra PEM roots for outbound TLS (corporate CAs)
    request_retry: int = 1
    limits: Limits = Limits()
    debug: bool = False
    metrics_auth: bool = True  # False: /metrics answers without a client key
    request_log: bool = False
    logs_dir: str = "logs"
    error_logs_max_files: int = 10
    reload_interval: float = 2.0
    remote_management: RemoteManagement = RemoteManagement()
    providers: Tuple[ProviderEntry, ...] = ()  # every kind, in file order within a kind
    ampcode: AmpCode = AmpCode()
    # Where the config came from (None: built-in defaults) and the parsed document, kept
    # so the management API can write changes back without touching other keys.
    source_path: Optional[str] = field(default=None, compare=False)
    document: Optional[dict] = field(default=None, compare=False, repr=False)
