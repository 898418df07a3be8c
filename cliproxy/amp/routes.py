"""Which route family a request path belongs to (SPEC §3).

Strategy: one pure function, ``classify(method, path)``, answers with a ``Route`` value;
``app.py`` dispatches on ``Route.family`` and never looks at the path again. Provider
paths are parsed once here into the protocol, the endpoint, and (for Gemini) the model and
streaming flag carried in the path.
"""

import enum
import re
from dataclasses import dataclass, field
from typing import Optional

from cliproxy.config.model import Protocol
from cliproxy.memo import Memo
from cliproxy.providers.outbound import Endpoint


class Family(enum.Enum):
    HEALTH = "health"
    METRICS = "metrics"
    MANAGEMENT_API = "management-api"  # /v0/management/...: cliproxy's own
    AMP_MANAGEMENT = "amp-management"  # proxied to the Amp upstream, client auth
    BROWSER_PAGE = "browser-page"  # proxied to the Amp upstream, no client auth
    ACTORS = "actors"  # Amp Neo's own traffic: proxied with its own credentials only
    PROVIDER = "provider"  # a model call or model list
    NOT_FOUND = "not-found"


@dataclass(frozen=True)
class ProviderRoute:
    """A parsed ``/api/provider/{provider}/...`` (or root ``/v1...``) path."""

    provider: str
    protocol: Protocol
    endpoint: Endpoint
    model: Optional[str] = None  # Gemini carries the model in the path
    stream: bool = False  # Gemini streamGenerateContent
    # Set from ``endpoint`` once (routes are cached): read per request, where a property
    # would be a call.
    is_model_list: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "is_model_list", self.endpoint is Endpoint.MODELS)


@dataclass(frozen=True)
class Route:
    family: Family
    provider: Optional[ProviderRoute] = None


_AMP_API_PREFIXES = (
    "/api/internal",
    "/api/user",
    "/api/auth",
    "/api/meta",
    "/api/ads",
    "/api/telemetry",
    "/api/threads",
    "/api/thread-actors",
    "/api/otel",
    "/api/tab",
)
# Proxied like management routes; newer Amp CLIs open WebSockets on them (SPEC §3.1).
_TUNNEL_PREFIXES = ("/websocket", "/connect")
# Amp Neo calls these itself, with a token ``/api/thread-actors`` gave it (SPEC §3.1).
_ACTORS_PREFIX = "/actors"
_BROWSER_PREFIXES = ("/threads", "/auth", "/docs", "/settings")
_FEEDS = ("/threads.rss", "/news.rss")

_PROVIDER_PREFIX = re.compile(r"^/api/provider/([^/]+)(/.*)?$")
_GEMINI_PATH = re.compile(
    r"^/(?:v1beta|v1|v1beta1(?:/projects/[^/]+/locations/[^/]+)?/publishers/google)"
    r"/models/([^/:]+):(generateContent|streamGenerateContent|countTokens)$"
)
_GEMINI_ENDPOINTS = {
    "generateContent": Endpoint.GEMINI_GENERATE,
    "streamGenerateContent": Endpoint.GEMINI_STREAM,
    "countTokens": Endpoint.GEMINI_COUNT_TOKENS,
}
_FIXED_PROVIDER_PATHS = {
    "/v1/messages": (Protocol.CLAUDE, Endpoint.MESSAGES),
    "/v1/messages/count_tokens": (Protocol.CLAUDE, Endpoint.COUNT_TOKENS),
    "/v1/chat/completions": (Protocol.OPENAI, Endpoint.CHAT_COMPLETIONS),
    "/chat/completions": (Protocol.OPENAI, Endpoint.CHAT_COMPLETIONS),
    "/v1/completions": (Protocol.OPENAI, Endpoint.COMPLETIONS),
    "/completions": (Protocol.OPENAI, Endpoint.COMPLETIONS),
    "/v1/responses": (Protocol.RESPONSES, Endpoint.RESPONSES),
    "/responses": (Protocol.RESPONSES, Endpoint.RESPONSES),
}
_MODEL_LIST_PATHS = ("/models", "/v1/models", "/v1beta/models")
# Which shape a model list takes when the path alone does not say (``/v1/models``).
_LIST_PROTOCOL_BY_PROVIDER = {
    "anthropic": Protocol.CLAUDE,
    "google": Protocol.GEMINI,
    "gemini": Protocol.GEMINI,
    "vertex": Protocol.GEMINI,
}


def _under(path, prefix):
    return path == prefix or path.startswith(prefix + "/")


def parse_provider_path(provider, rest, method):
    """The ``ProviderRoute`` for ``rest`` (the path after the provider prefix), or None."""
    fixed = _FIXED_PROVIDER_PATHS.get(rest)
    if fixed is not None:
        return ProviderRoute(provider, fixed[0], fixed[1])
    match = _GEMINI_PATH.match(rest)
    if match:
        endpoint = _GEMINI_ENDPOINTS[match.group(2)]
        return ProviderRoute(
            provider,
            Protocol.GEMINI,
            endpoint,
            model=match.group(1),
            stream=endpoint is Endpoint.GEMINI_STREAM,
        )
    if rest in _MODEL_LIST_PATHS:  # any method: the app answers 405 to all but GET
        if rest == "/v1beta/models":
            protocol = Protocol.GEMINI
        else:
            protocol = _LIST_PROTOCOL_BY_PROVIDER.get(provider.lower(), Protocol.OPENAI)
        return ProviderRoute(provider, protocol, Endpoint.MODELS)
    return None


def classify(method, path):
    """The ``Route`` of a request. ``path`` is the raw path without the query. Pure, so
    the answer for a (method, path) pair is remembered — unless the path is longer than
    any real route's: those (a scanner's, unauthenticated) would fill the memory."""
    if len(path) > MAX_REMEMBERED_PATH:
        return _classify(method, path)
    return _ROUTES[method, path]


def _classify(method, path):
    if path == "/healthz":
        return Route(Family.HEALTH)
    if path == "/metrics":
        return Route(Family.METRICS)
    if _under(path, "/v0/management"):
        return Route(Family.MANAGEMENT_API)
    match = _PROVIDER_PREFIX.match(path)
    if match:
        provider = parse_provider_path(match.group(1), match.group(2) or "/", method)
        return Route(Family.PROVIDER, provider) if provider else Route(Family.NOT_FOUND)
    if path.startswith(("/v1/", "/v1beta/", "/v1beta1/")):
        # Root-level protocol paths, for SDK clients pointed straight at cliproxy.
        provider = parse_provider_path("", path, method)
        return Route(Family.PROVIDER, provider) if provider else Route(Family.NOT_FOUND)
    if any(_under(path, prefix) for prefix in _AMP_API_PREFIXES):
        return Route(Family.AMP_MANAGEMENT)
    if path in _FEEDS or any(_under(path, prefix) for prefix in _TUNNEL_PREFIXES):
        return Route(Family.AMP_MANAGEMENT)
    if _under(path, _ACTORS_PREFIX):
        return Route(Family.ACTORS)
    if any(_under(path, prefix) for prefix in _BROWSER_PREFIXES):
        if method == "GET" or _under(path, "/auth"):
            return Route(Family.BROWSER_PAGE)
    return Route(Family.NOT_FOUND)


# Longest path whose route is remembered: Amp's and the SDKs' are well under it.
MAX_REMEMBERED_PATH = 256

# Classified paths: Amp uses a few dozen distinct ones; bounded against scanners.
_ROUTES = Memo(lambda key: _classify(*key), 4096)
