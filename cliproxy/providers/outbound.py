"""Building the request sent to a provider entry: its URL, its headers, its proxy.

Strategy: pure functions of (entry, client headers, endpoint); the executor calls them and
sends. Three rules carry the whole module:

URLs (SPEC §2 "base-url with or without a trailing /v1", §3.2 "Gemini on v1beta"):
- Anthropic endpoints: the base with any trailing ``/v1`` removed, then ``/v1/messages``.
- OpenAI-style endpoints (Chat Completions, Completions, Responses, and the model list of
  OpenAI-style kinds): when the base's path has a version segment anywhere (``/v1``,
  ``/v4``, ``/api/v3``, ``/v1beta/openai``), the endpoint is appended to the base as
  given; otherwise ``/v1`` is added first (``http://127.0.0.1:11434`` works like
  ``http://127.0.0.1:11434/v1``). A server that has no version segment and does not answer
  under ``/v1`` cannot be described; none of the common ones (OpenAI, Ollama, vLLM,
  llama.cpp, LM Studio, OpenRouter, Groq, DeepSeek, Gemini's OpenAI layer) is like that.
- Gemini endpoints: the base with any trailing version (``/v1``, ``/v1beta``) removed, then
  ``/v1beta/models/{model}:{method}``, whatever version the client used.
A query in the base URL is kept and the endpoint's own (``alt=sse``) appended to it.

Headers: the client's headers are the starting point so that protocol options travel
(``anthropic-beta``, ``anthropic-version``, ``user-agent``), minus what must not reach a
third party or would be wrong there:
- every client credential (``amp.auth.strip_credentials``), cookies, and headers tied to
  the client's own account (``openai-organization``, ``openai-project``,
  ``x-goog-user-project``): the request goes out under the entry's credential only;
- Amp's own headers (``x-amp-*``, the thread id included): they describe the user's Amp
  session and are for ampcode.com, not for model providers;
- hop-by-hop fields, ``host``, ``content-length``, ``content-encoding`` and ``expect``: the
  caller sends a body it re-encoded itself; forwarding headers (``forwarded``,
  ``x-forwarded-*``, ``x-real-ip``) so the user's network does not leak;
- ``accept-encoding``, replaced by ``identity``: the proxy must read the answer's JSON and
  SSE to rewrite them, and an absent field would allow any coding (RFC 9110 §12.5.3);
- when the client spoke another protocol than the provider's, the client protocol's
  option headers (``anthropic-*``, ``openai-*``, ``x-goog-*``), meaningless there;
- ``context-1m-2025-08-07`` from ``anthropic-beta`` (SPEC §3.2).
Then the entry's credential, in its kind's native form, and last the entry's ``headers``,
which override anything before them.

Proxy: the entry's ``proxy-url``, else the top-level one, else None (environment).
"""

import enum
import re
from typing import Optional
from urllib.parse import quote, urlsplit, urlunsplit

from cliproxy.amp.auth import CREDENTIAL_HEADERS
from cliproxy.config.model import Config, Protocol, ProviderEntry, ProviderKind
from cliproxy.http.headers import HOP_BY_HOP, Headers
from cliproxy.memo import Memo

ANTHROPIC_VERSION = "2023-06-01"
DROPPED_ANTHROPIC_BETAS = frozenset(("context-1m-2025-08-07",))


class Endpoint(enum.Enum):
    MESSAGES = "messages"  # Anthropic POST /v1/messages
    COUNT_TOKENS = "count_tokens"  # Anthropic POST /v1/messages/count_tokens
    CHAT_COMPLETIONS = "chat_completions"  # OpenAI POST /v1/chat/completions
    COMPLETIONS = "completions"  # OpenAI POST /v1/completions
    RESPONSES = "responses"  # OpenAI POST /v1/responses
    GEMINI_GENERATE = "generateContent"
    GEMINI_STREAM = "streamGenerateContent"
    GEMINI_COUNT_TOKENS = "countTokens"
    MODELS = "models"  # GET the model list, in the entry kind's own shape


_ANTHROPIC_PATHS = {
    Endpoint.MESSAGES: "/v1/messages",
    Endpoint.COUNT_TOKENS: "/v1/messages/count_tokens",
}
_OPENAI_PATHS = {
    Endpoint.CHAT_COMPLETIONS: "/chat/completions",
    Endpoint.COMPLETIONS: "/completions",
    Endpoint.RESPONSES: "/responses",
}
_GEMINI_METHODS = (Endpoint.GEMINI_GENERATE, Endpoint.GEMINI_STREAM, Endpoint.GEMINI_COUNT_TOKENS)

_VERSION_SEGMENT = re.compile(r"^v\d+[a-z0-9]*$")  # v1, v4, v1beta, v1alpha2
_TRAILING_VERSION = re.compile(r"/v\d+[a-z0-9]*$")


def _split_base(base_url: str):
    """(scheme, netloc, path without trailing slashes, query) of ``base_url``."""
    parts = urlsplit(base_url.strip())
    return parts.scheme, parts.netloc, parts.path.rstrip("/"), parts.query


def _join(base_url: str, path_of, extra_query: str = "") -> str:
    scheme, netloc, path, query = _split_base(base_url)
    full_query = "&".join(q for q in (query, extra_query) if q)
    return urlunsplit((scheme, netloc, path_of(path), full_query, ""))


def _anthropic_path(path: str, suffix: str) -> str:
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return path + suffix


def _openai_path(path: str, suffix: str) -> str:
    if any(_VERSION_SEGMENT.match(segment) for segment in path.split("/")):
        return path + suffix
    return path + "/v1" + suffix


def _gemini_path(path: str, suffix: str) -> str:
    return _TRAILING_VERSION.sub("", path) + "/v1beta" + suffix


def _gemini_model(model: Optional[str]) -> str:
    if not model:
        raise ValueError("a Gemini endpoint needs a model name")
    if model.startswith("models/"):
        model = model[len("models/") :]
    return quote(model, safe="-._~")


def provider_url(
    entry: ProviderEntry,
    endpoint: Endpoint,
    model: Optional[str] = None,
    stream: bool = False,
) -> str:
    """The URL of ``endpoint`` at ``entry.base_url`` (rules in the module docstring).

    ``model`` is the upstream model name, needed by Gemini endpoints only (they carry it in
    the path); ``stream`` is unused by the others, whose bodies say whether they stream.
    Raises ``ValueError`` when a Gemini endpoint has no model (a caller's bug). The result
    depends only on the entry's kind and base URL and the arguments, so it is remembered.
    """
    return _URLS[entry.kind, entry.base_url, endpoint, model, stream]


def _build_url(key) -> str:
    """The URL for a ``provider_url`` key (kind, base URL, endpoint, model, stream)."""
    kind, base, endpoint, model, stream = key
    if endpoint in _ANTHROPIC_PATHS:
        return _join(base, lambda p: _anthropic_path(p, _ANTHROPIC_PATHS[endpoint]))
    if endpoint in _OPENAI_PATHS:
        return _join(base, lambda p: _openai_path(p, _OPENAI_PATHS[endpoint]))
    if endpoint in _GEMINI_METHODS:
        if stream and endpoint is Endpoint.GEMINI_GENERATE:
            endpoint = Endpoint.GEMINI_STREAM
        suffix = "/models/%s:%s" % (_gemini_model(model), endpoint.value)
        sse = "alt=sse" if endpoint is Endpoint.GEMINI_STREAM else ""
        return _join(base, lambda p: _gemini_path(p, suffix), sse)
    return _models_url(kind, base)


def _models_url(kind: ProviderKind, base: str) -> str:
    if kind is ProviderKind.CLAUDE:
        return _join(base, lambda p: _anthropic_path(p, "/v1/models"))
    if kind is ProviderKind.GEMINI:
        return _join(base, lambda p: _gemini_path(p, "/models"))
    return _join(base, lambda p: _openai_path(p, "/models"))


# Built URLs, keyed by what they depend on; a handful per provider entry in practice.
_URLS = Memo(_build_url, 4096)


# -- headers ------------------------------------------------------------------------------

_ALWAYS_DROPPED = frozenset(
    (
        "host",
        "content-length",
        "content-encoding",
        "accept-encoding",
        "expect",
        "cookie",
        "openai-organization",
        "openai-project",
        "x-goog-user-project",
        "x-management-key",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-port",
        "x-real-ip",
    )
)
_DROPPED_PREFIXES = ("x-amp-", "x-ampcode-")
_STRIPPED = _ALWAYS_DROPPED | HOP_BY_HOP | frozenset(CREDENTIAL_HEADERS)
# ... and the client's content-type, when the caller sets its own.
_STRIPPED_WITH_TYPE = _STRIPPED | frozenset(("content-type",))
# Sent instead of the client's accept-encoding (see the module docstring).
_ACCEPT_IDENTITY = (("accept-encoding", "identity"),)

# Option headers that belong to one protocol family.
_PROTOCOL_PREFIXES = {
    Protocol.CLAUDE: ("anthropic-",),
    Protocol.OPENAI: ("openai-",),
    Protocol.RESPONSES: ("openai-",),
    Protocol.GEMINI: ("x-goog-",),
}


# Read once: an enum member looked up on its class costs a slow attribute access per use.
_CLAUDE = ProviderKind.CLAUDE
_GEMINI = ProviderKind.GEMINI


def _family(protocol: Optional[Protocol]):
    # Chat Completions and Responses share OpenAI's headers.
    return Protocol.OPENAI if protocol is Protocol.RESPONSES else protocol


def _forwardable(headers: Headers, client_protocol: Optional[Protocol], provider: Protocol):
    """The client's fields that may go to the provider, as a new ``Headers``: one pass
    that drops hop-by-hop fields (and those ``Connection`` names), client credentials,
    the always-dropped fields and prefixes, and the client protocol's option headers when
    the provider speaks another family."""
    return Headers.from_lowered(_forwardable_items(headers, client_protocol, provider))


def _forwardable_items(
    headers: Headers, client_protocol: Optional[Protocol], provider: Protocol, dropped=_STRIPPED
):
    """``_forwardable`` as a new list of (lowercase name, value) pairs; ``dropped`` is the
    set of names always dropped (``_STRIPPED``, or a superset of it)."""
    dropped_prefixes = _DROPPED_PREFIXES
    # ``is`` first: the same protocol on both sides is the common case, and cheap to see.
    if client_protocol is not provider and _family(client_protocol) is not _family(provider):
        dropped_prefixes += _PROTOCOL_PREFIXES.get(client_protocol, ())
    named = headers.get_list("connection")
    if named:
        dropped = dropped.union(named)
    return [item for item in headers if item[0] not in dropped and not item[0].startswith(dropped_prefixes)]


def _without_dropped_betas(items):
    """``items`` with ``Anthropic-Beta`` cleaned of ``DROPPED_ANTHROPIC_BETAS`` (one field
    with the remaining betas, in order, at the end; none when nothing remains)."""
    betas = [
        part.strip()
        for name, value in items
        if name == "anthropic-beta"
        for part in value.split(",")
        if part.strip() and part.strip().lower() not in DROPPED_ANTHROPIC_BETAS
    ]
    kept = [item for item in items if item[0] != "anthropic-beta"]
    if betas:
        kept.append(("anthropic-beta", ",".join(betas)))
    return kept


def _credential_fields(entry: ProviderEntry, has_version: bool):
    """The fields carrying ``entry``'s credential (``_forwardable`` dropped the client's):
    ``x-api-key`` (+ ``anthropic-version`` unless the client sent one: ``has_version``)
    for Anthropic, ``x-goog-api-key`` for Gemini, ``Authorization: Bearer`` for
    OpenAI-style entries; nothing for an empty key (local servers often have none)."""
    key = entry.api_key
    kind = entry.kind
    if kind is _CLAUDE:
        version = () if has_version else (("anthropic-version", ANTHROPIC_VERSION),)
        return ((("x-api-key", key),) if key else ()) + version
    if not key:
        return ()
    if kind is _GEMINI:
        return (("x-goog-api-key", key),)
    return (("authorization", "Bearer " + key),)


def provider_headers(
    entry: ProviderEntry,
    client_headers: Headers,
    client_protocol: Optional[Protocol] = None,
    content_type: Optional[str] = None,
) -> Headers:
    """The headers for a request to ``entry``, built from ``client_headers`` as the module
    docstring says; ``client_protocol`` is the protocol the client spoke (None: not a
    model call, e.g. a model list). The result carries ``entry``'s credential and no
    client credential (unless ``entry.headers`` itself configures one). With
    ``content_type``, the last field is that ``content-type``, whatever the client or the
    entry said. The caller adds ``content-length``."""
    dropped = _STRIPPED if content_type is None else _STRIPPED_WITH_TYPE
    items = _forwardable_items(client_headers, client_protocol, entry.protocol, dropped)
    has_beta = has_version = False
    for name, _ in items:  # a plain loop: a generator costs a call per field
        if name == "anthropic-beta":
            has_beta = True
        elif name == "anthropic-version":
            has_version = True
    if has_beta:
        items = _without_dropped_betas(items)
    items += _ACCEPT_IDENTITY  # the client's was dropped above
    items += _credential_fields(entry, has_version)
    if not entry.headers:
        if content_type is not None:
            items.append(("content-type", content_type))
        return Headers.from_lowered(items)
    headers = Headers.from_lowered(items)
    for name, value in entry.headers:
        headers.set(name, value)
    if content_type is not None:
        headers.set("content-type", content_type)
    return headers


def proxy_for(entry: ProviderEntry, config: Config) -> Optional[str]:
    """The outbound proxy for ``entry``: its own ``proxy-url`` (``"direct"`` included),
    else the top-level ``proxy-url``, else None (``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``
    from the environment, decided by the HTTP client)."""
    return entry.proxy_url or config.proxy_url or None
