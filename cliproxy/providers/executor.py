"""Carry out a LOCAL_PROVIDER or MODEL_MAPPING decision: credentials, calls, failover.

Strategy: the router already chose the candidate models (primary first). For each, the
credential pool orders the healthy credentials (sticky thread first, then round-robin);
each attempt sends the sanitised body with the upstream model name and the thinking
suffix applied natively. A failure before any byte reached the client (connect error,
timeout before headers, 429, 5xx, quota body, a stream that dies before its first byte)
moves on: to the next credential, to another round (``request-retry``), then to the next
model. Once the response head is returned the stream is committed; a later upstream
failure ends it with the protocol's in-stream error event.

Same-protocol calls only: a candidate whose provider speaks another protocol answers a
501 naming both protocols until translation lands.
"""

import copy
import logging
import math
import time
from dataclasses import dataclass
from typing import Optional

from cliproxy.config.model import Config, Protocol
from cliproxy.errors import NotImplementedYet, ProxyError, UpstreamError, UpstreamTimeout
from cliproxy.http.codec import Decoder, decode_body
from cliproxy.http.headers import HOP_BY_HOP, strip_hop_by_hop
from cliproxy.http.proxy import is_event_stream
from cliproxy.http.server import Request, Response
from cliproxy.providers.credentials import FailureKind, classify, retry_after_from_headers
from cliproxy.providers.outbound import Endpoint, provider_headers, provider_url, proxy_for
from cliproxy.routing.router import RouteDecision
from cliproxy.translate import anthropic, gemini, openai, responses
from cliproxy.translate.anthropic import RewriteContext
from cliproxy.translate.context import dumps, loads_any
from cliproxy.translate.errors import error_event
from cliproxy.translate.relay import EventRelay
from cliproxy.translate.thinking import MUTATED_FIELDS, apply_suffix

log = logging.getLogger("cliproxy.executor")

# Failures worth another round over the same credentials (SPEC §2 request-retry).
_RETRYABLE = frozenset((FailureKind.CONNECT, FailureKind.TIMEOUT, FailureKind.SERVER_ERROR))
# An error body is read whole to classify it; provider error bodies are small.
MAX_ERROR_BODY = 256 * 1024
# Response headers never relayed from a provider: framing we redo, state we do not share.
_DROPPED_RESPONSE_HEADERS = frozenset(("content-length", "content-encoding", "set-cookie"))
# ... and, with them, the hop-by-hop fields: one set, so one pass over the fields.
_NOT_RELAYED = _DROPPED_RESPONSE_HEADERS | HOP_BY_HOP
# Enum members hash through a Python-level ``__hash__`` and ``.name``/``.value`` are
# descriptor calls, so per-request tables are keyed by the members' plain ``_value_`` and
# labels read from ``_name_`` (both documented ``Enum`` attributes since 3.4).
_REWRITERS = {
    Protocol.CLAUDE._value_: anthropic,
    Protocol.OPENAI._value_: openai,
    Protocol.RESPONSES._value_: responses,
    Protocol.GEMINI._value_: gemini,
}


@dataclass
class ModelCall:
    """One model call on its way to a local provider."""

    # One per request: slots make it cheaper to build (no field has a default).
    __slots__ = (
        "request",
        "config",
        "decision",
        "protocol",
        "endpoint",
        "body",
        "raw",
        "stream",
        "query",
        "thread_id",
        "context",
    )

    request: Request
    config: Config
    decision: RouteDecision
    protocol: Protocol
    endpoint: Endpoint
    body: dict
    raw: Optional[bytes]  # the client's decoded bytes while ``body`` equals them
    stream: bool  # the Gemini path asked for streamGenerateContent
    query: str  # the client's query without credentials (Gemini's alt=sse)
    thread_id: Optional[str]
    context: RewriteContext


@dataclass
class Failure:
    kind: FailureKind
    error: ProxyError


class Executor:
    def __init__(self, client, pool, metrics, clock):
        self.client = client
        self.pool = pool
        self.metrics = metrics
        self.clock = clock

    async def execute(self, call):
        """The response for ``call``, or raise the last attempt's error when all fail.

        Candidates × rounds × credentials in one coroutine: each attempt is one await,
        not three nested ones."""
        last_error = None
        protocol = call.protocol
        pool = self.pool
        for candidate in call.decision.candidates:
            served = candidate.served
            for member in served:
                if member.entry.protocol is not protocol:
                    served = tuple(s for s in served if s.entry.protocol is protocol)
                    break
            if not served:
                last_error = _untranslated(candidate, protocol)
                continue
            model_error = None  # the last error of this model; None: every credential cools
            for _ in range(1 + call.config.request_retry):
                order = pool.order(served, candidate.model, call.thread_id)
                if not order:
                    model_error = model_error or _cooling(
                        candidate.model, pool.soonest_recovery(served, candidate.model)
                    )
                    break
                worth_another_round = False
                for choice in order:
                    result = await self._attempt(call, candidate, choice)
                    if isinstance(result, Response):
                        return result
                    model_error = result.error
                    worth_another_round = worth_another_round or result.kind in _RETRYABLE
                if not worth_another_round:
                    break
            last_error = model_error or last_error
        raise last_error or UpstreamError("no provider could serve %s" % call.decision.requested)

    async def _attempt(self, call, candidate, served):
        entry = served.entry
        limits = call.config.limits
        url = provider_url(entry, call.endpoint, model=served.upstream_model, stream=call.stream)
        if call.protocol is Protocol.GEMINI and call.query:
            url += ("&" if "?" in url else "?") + _without_alt(call.query)
            url = url.rstrip("?&")
        headers = provider_headers(entry, call.request.headers, call.protocol)
        headers.set("content-type", "application/json")
        body = _provider_body(call, candidate, served)
        started = self.clock()
        try:
            upstream = await self.client.request(
                "POST",
                url,
                headers,
                body,
                proxy_url=proxy_for(entry, call.config),
                connect_timeout=limits.connect_timeout,
                first_byte_timeout=limits.read_timeout,
                read_timeout=limits.read_timeout,
            )
        except UpstreamTimeout as exc:
            return self._failed(candidate, served, FailureKind.TIMEOUT, exc)
        except UpstreamError as exc:
            return self._failed(candidate, served, FailureKind.CONNECT, exc)
        ttfb = self.clock() - started
        if upstream.status >= 400:
            return await self._provider_error(call, candidate, served, upstream)
        try:
            if is_event_stream(upstream.headers):
                response = await self._stream_response(call, served, upstream, started, ttfb)
            else:
                response = await self._json_response(call, upstream, started, ttfb)
        except UpstreamTimeout as exc:
            await upstream.aclose()
            return self._failed(candidate, served, FailureKind.TIMEOUT, exc)
        except UpstreamError as exc:
            await upstream.aclose()
            return self._failed(candidate, served, FailureKind.CONNECT, exc)
        self.pool.success(served, candidate.model, call.thread_id)
        self.metrics.count_attempt(entry.name, "ok")
        _log_attempt(served, candidate.model, "ok", status=upstream.status)
        return response

    def _failed(self, candidate, served, kind, error, retry_after=None, status=None):
        self.pool.failure(served, candidate.model, kind, retry_after=retry_after)
        self.metrics.count_attempt(served.entry.name, kind.name.lower())
        _log_attempt(served, candidate.model, kind.name.lower(), status=status, reason=error.message)
        return Failure(kind, error)

    async def _provider_error(self, call, candidate, served, upstream):
        """A Failure to fail over from, or the provider's own answer for a client error."""
        try:
            data = await upstream.read(MAX_ERROR_BODY)
        except ProxyError:
            data = b""
        finally:
            await upstream.aclose()
        kind = classify(upstream.status, data)
        if not kind.fails_over:
            # The request itself is wrong (400, 404, 422...): the client must see why.
            _log_attempt(served, candidate.model, "client-error", status=upstream.status)
            self.pool.success(served, candidate.model, call.thread_id)
            headers = _client_headers(upstream.headers)
            return Response(upstream.status, headers, data)
        retry_after = retry_after_from_headers(upstream.headers, time.time())
        error = _provider_failure(served, upstream.status, kind, data, retry_after)
        return self._failed(candidate, served, kind, error, retry_after, upstream.status)

    async def _json_response(self, call, upstream, started, ttfb):
        data = await upstream.read(call.config.limits.max_body_bytes)
        await upstream.aclose()
        data = decode_body(data, _coding(upstream.headers), call.config.limits.max_body_bytes)
        self.metrics.observe_upstream(call.decision.route._name_, ttfb, self.clock() - started)
        data = _REWRITERS[call.protocol._value_].rewrite_raw(data, call.context)
        headers = _client_headers(upstream.headers)
        return Response(upstream.status, headers, data)

    async def _stream_response(self, call, served, upstream, started, ttfb):
        """Wait for the first body bytes (so a stream that dies at once still fails over),
        then commit to streaming the rest event by event."""
        chunks = upstream.__aiter__()
        decoder = _stream_decoder(upstream.headers)
        try:
            first = await chunks.__anext__()
        except StopAsyncIteration:
            first = b""
        headers = _client_headers(upstream.headers)
        body = self._relay_events(call, served, upstream, chunks, first, decoder, started, ttfb)
        return Response(upstream.status, headers, body)

    async def _relay_events(self, call, served, upstream, chunks, first, decoder, started, ttfb):
        relay = EventRelay(_REWRITERS[call.protocol._value_].StreamRewriter(call.context))
        chunk = first
        try:
            while True:
                if decoder is not None:
                    chunk = decoder.decompress(chunk)
                out = relay.feed(chunk)
                if out:
                    yield out
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    break
            tail = relay.flush()
            if tail:
                yield tail
        except ProxyError as exc:
            # Bytes already reached the client: end the stream the protocol's way.
            log.warning(
                "stream from provider failed mid-way",
                extra={"fields": {"credential": served.entry.path, "reason": exc.message}},
            )
            self.metrics.count_attempt(served.entry.name, "stream-error")
            yield error_event(call.protocol, exc)
        finally:
            await upstream.aclose()
            self.metrics.observe_upstream(call.decision.route._name_, ttfb, self.clock() - started)


def _provider_body(call, candidate, served):
    """The bytes for the provider: the client's own when nothing has to change (no
    re-encoding of a 60 KB agent turn), else the body with the upstream model name and
    the thinking suffix applied."""
    if call.raw is not None and candidate.suffix is None and (
        call.protocol is Protocol.GEMINI or call.body.get("model") == served.upstream_model
    ):
        return call.raw
    body = dict(call.body)
    if call.protocol is not Protocol.GEMINI:
        body["model"] = served.upstream_model
    if candidate.suffix is not None:
        for name in MUTATED_FIELDS:  # copied per attempt: the body is shared
            if name in body:
                body[name] = copy.deepcopy(body[name])
        body = apply_suffix(call.protocol, body, candidate.suffix, served.upstream_model)
    return dumps(body).encode("utf-8")


def _without_alt(query):
    """The client's query minus ``alt`` (``provider_url`` sets it for streams)."""
    return "&".join(part for part in query.split("&") if part and not part.startswith("alt="))


def _client_headers(upstream_headers):
    """The provider's response fields the client gets (see ``_NOT_RELAYED``)."""
    return strip_hop_by_hop(upstream_headers, _NOT_RELAYED)


def _coding(headers):
    return (headers.get("content-encoding") or "").strip().lower()


def _stream_decoder(headers):
    coding = _coding(headers)
    return Decoder(coding) if coding and coding != "identity" else None


def _error_message(data):
    """The provider's own error message, if its body has one, shortened."""
    document = loads_any(data)
    if document is None:
        text = data[:200].decode("utf-8", "replace").strip()
        return text or None
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"][:300]
    if isinstance(error, str):
        return error[:300]
    return None


def _provider_failure(served, status, kind, data, retry_after):
    detail = _error_message(data)
    message = "provider %s (%s) answered %d" % (served.entry.path, served.upstream_model, status)
    if detail:
        message += ": " + detail
    if kind is FailureKind.RATE_LIMITED:
        headers = (("retry-after", "%d" % retry_after),) if retry_after else ()
        return ProxyError(message, status=429, error_type="rate_limit_error", headers=headers)
    if kind is FailureKind.AUTH:
        return UpstreamError(message + " (check this credential)")
    return ProxyError(message, status=status if 500 <= status < 600 else 502, error_type="api_error")


def _cooling(model, wait):
    """The 429 for a model whose credentials all cool down; ``wait`` (seconds until the
    first comes back) becomes ``Retry-After`` so clients back off that long, not less."""
    headers = (("retry-after", "%d" % max(1, math.ceil(wait))),) if wait else ()
    return ProxyError(
        "every credential serving %s is cooling down after recent failures; retry shortly" % model,
        status=429,
        error_type="rate_limit_error",
        headers=headers,
    )


def _untranslated(candidate, protocol):
    native = candidate.served[0].entry.protocol if candidate.served else None
    return NotImplementedYet(
        "%s is served by a provider speaking %s; translating %s requests to %s is not supported yet"
        % (candidate.model, native.value if native else "?", protocol.value, native.value if native else "?")
    )


def _log_attempt(served, model, outcome, status=None, reason=None):
    level = logging.INFO if outcome == "ok" else logging.WARNING
    if not log.isEnabledFor(level):
        return  # the fields below cost more than the rest of a successful attempt
    fields = {
        "credential": served.entry.path,
        "model": model,
        "upstream_model": served.upstream_model,
        "outcome": outcome,
        "status": status,
        "reason": reason,
    }
    log.log(level, "provider attempt", extra={"fields": fields})

