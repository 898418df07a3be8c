"""The request handler: one place that sends each request to its route family.

Strategy: ``App.handle`` classifies the path once (``amp.routes.classify``), applies the
checks every family shares (CORS refusal, client auth), and hands over to one function per
family. Model calls read and decode the body once, parse its JSON once, ask the router
for a decision once, and carry that decision out in one code path. Any ``ProxyError``
becomes a response in the client's protocol shape here and nowhere else.

Per-config state (router, client key set) lives in a ``Runtime`` rebuilt when the config
store's snapshot changes: a request compares one reference, no locks.
"""

import functools
import json
import logging
import time
from typing import Optional

from cliproxy.amp import offline
from cliproxy.amp.auth import (
    KeySet,
    client_key,
    is_loopback,
    strip_client_keys,
    strip_credential_params,
    strip_credentials,
)
from cliproxy.amp.modes import AmpMode, ModeLog
from cliproxy.amp.routes import Family, classify
from cliproxy.amp.secrets import UpstreamKeys
from cliproxy.config.model import Protocol
from cliproxy.errors import (
    BadRequest,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PaymentRequired,
    ProxyError,
    ServiceUnavailable,
    Unauthorized,
)
from cliproxy.http.headers import Headers
from cliproxy.http.jsonbody import decode_request_body, parse_json, repeated_keys
from cliproxy.http.proxy import forward
from cliproxy.http.server import Response
from cliproxy.http.target import check_path, may_need_check
from cliproxy.http.websocket import is_websocket_upgrade, pipe, validate_upgrade
from cliproxy.memo import Memo
from cliproxy.providers.credentials import CredentialPool
from cliproxy.providers.executor import Executor, ModelCall
from cliproxy.providers.outbound import Endpoint
from cliproxy.routing.router import RouteType, Router, debug_fields, log_fields
from cliproxy.translate import anthropic, responses
from cliproxy.translate.anthropic import RewriteContext
from cliproxy.translate.errors import render_error
from cliproxy.ops.metrics import Metrics
from cliproxy.ops.usage import UsageRecord, client_id

log = logging.getLogger("cliproxy.app")

_JSON = (("content-type", "application/json"),)
_HEALTHY = b'{"status":"ok"}'


# Route decisions remembered per snapshot; Amp asks for a handful of models, so this is
# small in practice, and bounded against clients that invent names.
DECISION_CACHE_SIZE = 4096
# Longest model name whose decision is remembered (real ones are under 100 characters).
MAX_REMEMBERED_MODEL = 256

# Top-level keys a model call is routed or rewritten on: a body that repeats one could be
# routed on one value and read by the provider with the other (SPEC §4).
_ROUTING_KEYS = ("model", "stream")

# Decisions logged at WARNING: the request spends Amp credits or is refused.
_PAID_OR_REFUSED = (RouteType.AMP_CREDITS, RouteType.NO_PROVIDER)


class Runtime:
    """Everything derived from one config snapshot, built once per snapshot."""

    __slots__ = ("config", "router", "client_keys", "_decisions")

    def __init__(self, config):
        self.config = config
        self.router = Router.from_config(config)
        self.client_keys = KeySet(config.api_keys)
        # The memo holds the router, not the runtime: no cycle through a bound method.
        self._decisions = Memo(functools.partial(_decide, self.router), DECISION_CACHE_SIZE)

    def decide(self, model, protocol):
        """``router.decide``, memoised: a decision is a pure function of the snapshot. A
        name longer than any real model's is decided afresh: remembered, a client could
        fill the memory with megabyte-long names."""
        if len(model) > MAX_REMEMBERED_MODEL:
            return self.router.decide(model, protocol)
        return self._decisions[model, protocol]


def _decide(router, key):
    """``router.decide`` for a ``Runtime.decide`` memo key (model, protocol)."""
    model, protocol = key
    return router.decide(model, protocol)


class Exchange:
    """What the request log and metrics learn about one request as it is handled (one
    per request, so a plain slotted class)."""

    __slots__ = ("route", "requested_model", "resolved_model", "provider", "protocol", "request_body")

    def __init__(self, route="none"):
        self.route = route
        self.requested_model = None  # type: Optional[str]
        self.resolved_model = None  # type: Optional[str]
        self.provider = None  # type: Optional[str]
        self.protocol = None  # type: Optional[Protocol]
        self.request_body = None  # type: Optional[bytes]  # decoded; model calls only


def _json_response(status, value, headers=()):
    body = json.dumps(value, separators=(",", ":")).encode("utf-8")
    return Response(status, Headers(_JSON + tuple(headers)), body)


class App:
    """The handler given to ``http.server.Server``."""

    def __init__(
        self,
        store,
        client,
        *,
        clock=time.monotonic,
        upstream_keys=None,
        pool=None,
        metrics=None,
        management_api=None,
        request_log=None,
        usage=None,
        wall=time.time,
    ):
        self.store = store
        self.client = client
        self.clock = clock
        self.upstream_keys = upstream_keys or UpstreamKeys(clock=clock)
        self.pool = pool or CredentialPool(clock=clock)
        self.metrics = metrics or Metrics()
        self.usage = usage  # an ``ops.usage.UsageLedger``, or None: no accounting
        self.wall = wall
        self.executor = Executor(client, self.pool, self.metrics, clock, usage=usage, wall=wall)
        self.management_api = management_api
        self.request_log = request_log
        self.modes = ModeLog()
        self._runtime = Runtime(store.current)

    def runtime(self):
        """The runtime of the current snapshot (rebuilt only when the snapshot changed)."""
        runtime = self._runtime
        config = self.store.current
        if runtime.config is not config:
            runtime = self._runtime = Runtime(config)
        return runtime

    async def handle(self, request):
        """The response to ``request``: a ``ProxyError`` becomes an error response in the
        client's protocol shape; the response is counted, and logged when the request's
        snapshot turns ``request-log`` on."""
        runtime = self._runtime
        if runtime.config is not self.store.current:
            runtime = self.runtime()
        path = request.path
        if may_need_check(path):
            try:
                check_path(path)  # before classification and any auth check (SPEC §3.1)
            except ProxyError as error:
                return self._refused(Exchange(), error, request, runtime)
        route = classify(request.method, path)
        exchange = Exchange(route.family.value)
        provider = route.provider
        if provider is not None:
            exchange.protocol = provider.protocol
        try:
            if provider is not None and request.method != "OPTIONS":
                # Model calls, the hot path, skip the other families' checks.
                response = await self._provider(request, provider, runtime, exchange)
            else:
                response = await self._dispatch(request, route, runtime, exchange)
        except ProxyError as error:
            return self._refused(exchange, error, request, runtime)
        return self._observed(request, response, exchange, runtime)

    def _observed(self, request, response, exchange, runtime):
        """``response``, counted, and logged when the snapshot turns ``request-log`` on."""
        self.metrics.count_request(exchange.route, response.status)
        if self.request_log is not None and runtime.config.request_log:
            response = self.request_log.observe(request, response, exchange, runtime.config)
        return response

    def _refused(self, exchange, error, request, runtime):
        return self._observed(request, self._error(exchange, error, request), exchange, runtime)

    # The server calls the app: the same coroutine, without a frame that only awaits it.
    __call__ = handle

    def _error(self, exchange, error, request):
        level = logging.WARNING if error.status >= 500 and not error.logged else logging.INFO
        log.log(
            level,
            "request failed",
            extra={
                "fields": {
                    "method": request.method,
                    "path": request.path,
                    "status": error.status,
                    "route": exchange.route,
                    "reason": error.message,
                }
            },
        )
        status, headers, body = render_error(exchange.protocol, error)
        return Response(status, headers, body)

    async def _dispatch(self, request, route, runtime, exchange):
        """Every family but model calls (``_provider``), OPTIONS on any path included."""
        family = route.family
        if family is Family.HEALTH:
            return Response(200, Headers(_JSON), _HEALTHY)
        if request.method == "OPTIONS":
            # No CORS: browsers must not drive this proxy from other origins (SPEC §3.1).
            raise Forbidden("CORS requests are not allowed")
        if family is Family.MANAGEMENT_API:
            if self.management_api is None:
                raise NotFound("not found")
            return await self.management_api.handle(request, runtime.config, self.store)
        if family is Family.NOT_FOUND:
            raise NotFound("no route for %s %s" % (request.method, request.path))
        if family is Family.ACTORS:
            return await self._actors(request, runtime)
        key = client_key(request.headers, request.query)
        if family is Family.BROWSER_PAGE:
            # No client key needed, so none of the owner's credentials either: only a
            # request that proved a configured key gets the upstream key (SPEC §3.1).
            if not runtime.client_keys.contains(key):
                key = None
            return await self._management(request, runtime, key, with_upstream_key=key is not None)
        if family is Family.METRICS:
            if runtime.config.metrics_auth:
                self._authenticate(runtime, key)
            return Response(200, Headers([("content-type", "text/plain; version=0.0.4")]), self.metrics.render())
        self._authenticate(runtime, key)
        return await self._management(request, runtime, key)

    def _authenticate(self, runtime, key):
        if not runtime.config.api_keys:
            return  # the loader allows this only on loopback or when explicitly allowed
        if not runtime.client_keys.contains(key):
            raise Unauthorized("missing or invalid API key" if key else "missing API key")

    # ----------------------------------------------------------------- Amp management

    async def _management(self, request, runtime, key, with_upstream_key=True):
        """Forward a management route (or answer it offline); the upstream key is attached
        only when ``with_upstream_key`` is true."""
        config = runtime.config
        websocket = _check_upstream_route(request, config)
        if request.path.startswith("/api/thread-actors"):
            self.modes.note(request.peer[0], AmpMode.NEO)
        if config.ampcode.upstream_url is None:
            return await offline.answer(request, config)
        headers, url = self._upstream_target(request, runtime, key, with_upstream_key)
        return await self._relay(request, url, headers, config, websocket)

    async def _actors(self, request, runtime):
        """Amp Neo's own ``/actors`` traffic: no client key is asked for, and none of the
        owner's credentials is given; the request's own ``Authorization`` and
        ``Sec-WebSocket-Protocol`` (its actor token) go upstream untouched, while a
        cliproxy client key, wherever it is, never does (SPEC §3.1)."""
        config = runtime.config
        websocket = _check_upstream_route(request, config)
        self.modes.note(request.peer[0], AmpMode.NEO)
        if config.ampcode.upstream_url is None:
            raise ServiceUnavailable("amp upstream proxy not available")
        headers, query = strip_client_keys(request.headers, request.query, runtime.client_keys)
        url = config.ampcode.upstream_url + request.path + ("?" + query if query else "")
        return await self._relay(request, url, headers, config, websocket)

    async def _relay(self, request, url, headers, config, websocket):
        """Send ``request`` to ``url`` with ``headers``: a WebSocket tunnel, or a forwarded
        request whose answer streams back."""
        if websocket:
            return await self._tunnel(url, headers, config)
        body = request.body if _has_body(request) else None
        return await forward(
            self.client, request.method, url, headers, body, proxy_url=config.proxy_url, limits=config.limits
        )

    def _upstream_target(self, request, runtime, key, with_upstream_key=True):
        """Headers without the client's credentials (replaced by the upstream key when
        ``with_upstream_key``), and the URL."""
        ampcode = runtime.config.ampcode
        headers, query = strip_credentials(request.headers, request.query)
        upstream_key = self.upstream_keys.resolve(ampcode, key) if with_upstream_key else None
        if upstream_key:
            headers.set("authorization", "Bearer " + upstream_key)
            headers.set("x-api-key", upstream_key)
        url = ampcode.upstream_url + request.path + ("?" + query if query else "")
        return headers, url

    async def _tunnel(self, url, headers, config):
        """Relay a WebSocket upgrade to the upstream and pipe bytes once it answers 101."""
        head, reader, writer, leftover = await self.client.open_upgrade(
            url, headers, proxy_url=config.proxy_url, connect_timeout=config.limits.connect_timeout
        )
        if head.status != 101:
            writer.close()
            body = await _read_quietly(head)
            return Response(head.status, head.headers.without({"connection", "transfer-encoding"}), body)

        async def relay(client_reader, client_writer, client_leftover):
            await pipe(client_reader, client_writer, reader, writer, a_to_b=client_leftover, b_to_a=leftover)

        return Response(101, head.headers, b"", on_upgrade=relay)

    # ----------------------------------------------------------------- model calls

    async def _provider(self, request, provider_route, runtime, exchange):
        """A model call or a model list, once the client key is checked."""
        key = client_key(request.headers, request.query)
        self._authenticate(runtime, key)
        config = runtime.config
        protocol = provider_route.protocol
        if provider_route.is_model_list:
            if request.method != "GET":
                raise MethodNotAllowed("use GET for the model list", headers=(("allow", "GET"),))
            return _json_response(200, model_list(runtime, protocol))
        if request.method != "POST":
            raise MethodNotAllowed("use POST for model calls", headers=(("allow", "POST"),))
        if provider_route.provider:  # ``/api/provider/...``: the classic Amp CLI's paths
            self.modes.note(request.peer[0], AmpMode.CLASSIC)
        limit = config.limits.max_body_bytes
        raw = await request.body.read(limit)
        decoded = decode_request_body(raw, request.headers.get("content-encoding"), limit)
        body = parse_json(decoded)  # the one ``json.loads`` of a model call
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        repeated = repeated_keys(decoded, _ROUTING_KEYS)
        if repeated:
            raise BadRequest("the request body repeats the top-level key %r" % repeated[0])
        exchange.request_body = decoded
        model = provider_route.model or body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("the request names no model")
        decision = runtime.decide(model, protocol)
        _note_decision(exchange, decision, model, request)
        if decision.route is RouteType.AMP_CREDITS:
            headers, url = self._upstream_target(request, runtime, key)
            response = await forward(
                self.client, request.method, url, headers, raw, proxy_url=config.proxy_url, limits=config.limits
            )
            if self.usage is not None:  # tokens unknown: Amp's answer is relayed unread
                self.usage.record(UsageRecord(self.wall(), model, None, "ampcode", client_id(key), "AMP_CREDITS", response.status))
            return response
        if decision.route is RouteType.NO_PROVIDER:
            error = PaymentRequired if decision.status == 402 else NotFound
            raise error(decision.message)
        endpoint = provider_route.endpoint
        if endpoint is Endpoint.COUNT_TOKENS or endpoint is Endpoint.GEMINI_COUNT_TOKENS:
            # Counted by a provider of the client's protocol, else estimated here.
            if not _served_by(decision, protocol):
                return _token_estimate(body, protocol)
        call = _model_call(request, provider_route, config, decision, body, decoded, model)
        call.client = client_id(key) if self.usage is not None else None
        try:
            return await self.executor.execute(call)
        finally:
            # Who answered (or was tried last): not the plan's first guess, after failover.
            if call.answered_by is not None:
                candidate, served = call.answered_by
                exchange.resolved_model = candidate.model
                exchange.provider = served.entry.name


def _note_decision(exchange, decision, model, request):
    """Record ``decision`` on ``exchange`` and log it: WARNING when it spends Amp credits or
    refuses, else INFO. Fields are built only when that level is enabled."""
    route = decision.route
    exchange.route = route.name
    exchange.requested_model = model
    level = logging.WARNING if route in _PAID_OR_REFUSED else logging.INFO
    if log.isEnabledFor(level):
        fields = log_fields(decision)
        fields["path"] = request.path
        log.log(level, "route decision", extra={"fields": fields})
        if log.isEnabledFor(logging.DEBUG):
            log.debug("routing steps", extra={"fields": debug_fields(decision)})


def _check_upstream_route(request, config):
    """Refuse a request for the Amp upstream that is not allowed from its peer, or a
    malformed WebSocket upgrade; True when the request is a (valid) upgrade."""
    if config.ampcode.restrict_management_to_localhost and not is_loopback(request.peer[0]):
        raise Forbidden("management routes are restricted to localhost")
    websocket = is_websocket_upgrade(request.headers)
    if websocket:
        validate_upgrade(request.method, request.headers)
    return websocket


def _has_body(request):
    length = request.body.length
    return length is None or length > 0


async def _read_quietly(response):
    try:
        return await response.read(1024 * 1024)
    except ProxyError:
        return b""
    finally:
        await response.aclose()


def _model_call(request, provider_route, config, decision, body, decoded, model):
    """The ``ModelCall`` for a local provider: ``body`` (parsed from ``decoded``) sanitised
    in place for its protocol, the client's bytes kept while nothing changed them, and the
    context that gives the answer back the client's ``model`` name."""
    protocol = provider_route.protocol
    if protocol is Protocol.CLAUDE:
        changed = anthropic.may_need_sanitize(decoded) and anthropic.sanitize(body)
        # Tool names matter only to an answer that calls a tool: read when one does,
        # from the tools alone (the rest of the body is let go once the answer streams).
        context = RewriteContext(model, tool_names_from=functools.partial(anthropic.tool_name_map, body.get("tools")))
    else:
        changed = protocol is Protocol.RESPONSES and responses.sanitize(body)
        context = RewriteContext(model)
    query = request.query
    return ModelCall(
        headers=request.headers,
        config=config,
        decision=decision,
        protocol=protocol,
        endpoint=provider_route.endpoint,
        body=body,
        raw=None if changed else decoded,
        stream=provider_route.stream,
        query=query and strip_credential_params(query),  # an empty query has nothing to strip
        thread_id=request.headers.get("x-amp-thread-id"),
        context=context,
        translation=None,
        client=None,
        answered_by=None,
    )


def _served_by(decision, protocol):
    """Whether a provider speaking ``protocol`` serves any candidate of ``decision``."""
    return any(
        served.entry.protocol is protocol for candidate in decision.candidates for served in candidate.served
    )


def _token_estimate(body, protocol):
    """An estimate for a token count no provider of the client's protocol can make
    (about 4 bytes a token for English and code), in the protocol's shape; the
    ``x-cliproxy-token-count`` header says it is one."""
    if protocol is Protocol.GEMINI:
        text = json.dumps(body, ensure_ascii=False)
    else:
        text = json.dumps([body.get("system"), body.get("messages"), body.get("tools")], ensure_ascii=False)
    estimate = max(1, len(text.encode("utf-8")) // 4)
    value = {"totalTokens": estimate} if protocol is Protocol.GEMINI else {"input_tokens": estimate}
    return _json_response(200, value, headers=(("x-cliproxy-token-count", "estimate"),))


def model_list(runtime, protocol):
    """Local models and exact mapping sources, each once, in ``protocol``'s list shape."""
    names = []
    seen = set()
    for model in runtime.router.registry.visible_models():
        if model.id.lower() not in seen:
            seen.add(model.id.lower())
            names.append((model.id, model.owned_by))
    for mapping in runtime.config.ampcode.model_mappings:
        if not mapping.regex and mapping.source.lower() not in seen and runtime.decide(
            mapping.source, protocol
        ).route is RouteType.MODEL_MAPPING:
            seen.add(mapping.source.lower())
            names.append((mapping.source, "cliproxy-mapping"))
    if protocol is Protocol.CLAUDE:
        data = [
            {"type": "model", "id": name, "display_name": name, "created_at": "1970-01-01T00:00:00Z"}
            for name, _ in names
        ]
        return {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    if protocol is Protocol.GEMINI:
        return {
            "models": [
                {
                    "name": "models/" + name,
                    "displayName": name,
                    "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
                }
                for name, _ in names
            ]
        }
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": 0, "owned_by": owner} for name, owner in names],
    }

