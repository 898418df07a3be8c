"""Carry out a LOCAL_PROVIDER or MODEL_MAPPING decision: credentials, calls, failover.

Strategy: the router already chose the candidate models (primary first). For each, the
credential pool orders the healthy credentials (sticky thread first, then round-robin);
each attempt sends the sanitised body with the upstream model name and the thinking
suffix applied natively. A failure before any byte reached the client (connect error,
timeout before headers, 429, 5xx, quota body, a stream that dies before its first byte)
moves on: to the next credential, to another round (``request-retry``), then to the next
model. Once the response head is returned the stream is committed; a later upstream
failure ends it with the protocol's in-stream error event.

The order of attempts is ``providers.plan.AttemptPlan``; this module makes them. An
attempt on a provider speaking the client's protocol sends the client's own bytes (or the
sanitised body) and rewrites the answer in place; an attempt on a provider of another
protocol goes through the call's ``translate.translator.Translation``, made on first need.
"""

import copy
import logging
import time
from dataclasses import dataclass
from typing import Optional

from cliproxy.config.model import Config, Protocol
from cliproxy.errors import BadRequest, PayloadTooLarge, ProxyError, UnsupportedMediaType, UpstreamError, UpstreamTimeout
from cliproxy.http.codec import Decoder, decode_body, is_identity
from cliproxy.http.headers import HOP_BY_HOP, Headers, strip_hop_by_hop
from cliproxy.http.proxy import is_event_stream
from cliproxy.http.server import Response
from cliproxy.masking import mask_query
from cliproxy.ops.usage import UsageRecord
from cliproxy.providers.credentials import FailureKind, classify, retry_after_from_headers
from cliproxy.providers.outbound import Endpoint, provider_headers, provider_url, proxy_for
from cliproxy.providers.plan import AttemptPlan, Choice, Failure
from cliproxy.routing.router import RouteDecision
from cliproxy.translate import anthropic, gemini, openai, responses
from cliproxy.translate.anthropic import RewriteContext
from cliproxy.translate.context import dumps
from cliproxy.translate.errors import error_event, render_error
from cliproxy.translate.relay import EventRelay
from cliproxy.translate.thinking import MUTATED_FIELDS, apply_suffix
from cliproxy.translate.translator import GENERATE_ENDPOINTS, Translation, error_message, provider_error
from cliproxy.translate.usage import UsageTap, usage_of_answer

log = logging.getLogger("cliproxy.executor")

# An error body is read whole to classify it; provider error bodies are small.
MAX_ERROR_BODY = 256 * 1024
# Response headers never relayed from a provider: framing we redo, state we do not share.
_DROPPED_RESPONSE_HEADERS = frozenset(("content-length", "content-encoding", "set-cookie"))
# ... and, with them, the hop-by-hop fields: one set, so one pass over the fields. The
# client gets the provider's response fields as ``strip_hop_by_hop(headers, _NOT_RELAYED)``.
_NOT_RELAYED = _DROPPED_RESPONSE_HEADERS | HOP_BY_HOP
_REWRITERS = {
    Protocol.CLAUDE: anthropic,
    Protocol.OPENAI: openai,
    Protocol.RESPONSES: responses,
    Protocol.GEMINI: gemini,
}


@dataclass
class ModelCall:
    """One model call on its way to a local provider."""

    # One per request: slots make it cheaper to build (no field has a default).
    __slots__ = (
        "headers",
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
        "translation",
        "client",
        "answered_by",
    )

    headers: Headers  # the client's request fields
    config: Config
    decision: RouteDecision
    protocol: Protocol
    endpoint: Endpoint
    body: Optional[dict]  # None once the answer streams (``release_request``)
    raw: Optional[bytes]  # the client's decoded bytes while ``body`` equals them
    stream: bool  # the Gemini path asked for streamGenerateContent
    query: str  # the client's query without credentials (Gemini's alt=sse)
    thread_id: Optional[str]
    context: RewriteContext
    translation: Optional[Translation]  # made by the first cross-protocol attempt
    client: Optional[str]  # the client key's usage id (``ops.usage.client_id``)
    # The attempt made last: once ``execute`` is done, the one that answered (or the last
    # that failed). Its candidate's model and credential are what the logs report.
    answered_by: Optional[Choice]

    def release_request(self):
        """Let go of the request once its answer streams and no other attempt can
        follow: a stream may last minutes, and a long conversation parsed (and, for a
        translated call, read into the neutral model) is hundreds of KB that the answer
        needs none of. Its pipeline keeps what it needs (names, the tool casing)."""
        self.body = None
        self.raw = None
        self.translation = None


class Executor:
    """Carries out model calls: ``execute`` makes the plan's attempts one after another.

    Each attempt is I/O (``execute``, ``_answer``) around pieces that do none: the request
    (``_prepare``), the verdict on an error answer (``_judge_error``), the rewritten JSON
    answer (``_json_answer``) and stream (``_stream_pipeline``).
    """

    def __init__(self, client, pool, metrics, clock, usage=None, wall=time.time):
        self.client = client
        self.pool = pool
        self.metrics = metrics
        self.clock = clock
        self.usage = usage  # an ``ops.usage.UsageLedger``, or None: no accounting
        self.wall = wall

    async def execute(self, call):
        """The response for ``call``, or raise the last attempt's error when all fail.

        Each attempt is sent from here and its answer judged by ``_answer``: the wait for
        an upstream's head is the one every request makes, and each coroutine frame it
        waits through costs a call when it wakes.
        """
        plan = AttemptPlan(call, self.pool)
        choice = plan.first()
        while choice is not None:
            candidate, served = choice
            call.answered_by = choice
            limits = call.config.limits
            url, headers, body = _prepare(call, candidate, served)
            if log.isEnabledFor(logging.DEBUG):
                _log_sending(call, served, url, body)
            started = self.clock()
            try:
                upstream = await self.client.request(
                    "POST",
                    url,
                    headers,
                    body,
                    proxy_url=proxy_for(served.entry, call.config),
                    connect_timeout=limits.connect_timeout,
                    first_byte_timeout=limits.read_timeout,
                    read_timeout=limits.read_timeout,
                )
            except UpstreamTimeout as exc:
                result = self._failed(candidate, served, FailureKind.TIMEOUT, exc)
            except UpstreamError as exc:
                result = self._failed(candidate, served, FailureKind.CONNECT, exc)
            else:
                result = await self._answer(call, candidate, served, upstream, started)
                if type(result) is not Failure:  # a Response (``Failure`` has no subclass)
                    return result
            choice = plan.after(result)
        raise plan.error

    async def _answer(self, call, candidate, served, upstream, started):
        """The client's ``Response`` for an attempt whose head came, or the ``Failure``
        to hand to the plan (an error answer to fail over from, a body that broke)."""
        ttfb = self.clock() - started
        provider = served.entry.protocol
        translation = None if provider is call.protocol else call.translation
        if upstream.status >= 400:
            try:
                data = await upstream.read(MAX_ERROR_BODY)
            except ProxyError:
                data = b""
            finally:
                await upstream.aclose()
            return self._judge_error(call, candidate, served, upstream.status, upstream.headers, data)
        try:
            if is_event_stream(upstream.headers):
                response = await self._stream_response(call, served, upstream, started, ttfb)
            else:
                # Read to its end, so the connection is already released: no aclose().
                data = await upstream.read(call.config.limits.max_body_bytes)
                coding = upstream.headers.get("content-encoding")
                if coding is not None:  # without one there is nothing to undo
                    data = _decoded_answer(data, coding, call.config.limits.max_body_bytes)
                self.metrics.observe_upstream(call.decision.route.name, ttfb, self.clock() - started)
                if self.usage is not None:
                    self._account(call, upstream.status, usage_of_answer(provider, data))
                if translation is None:
                    response = self._json_answer(call, upstream.status, upstream.headers, data)
                else:
                    response = self._translated_answer(call, provider, upstream.status, data)
        except UpstreamTimeout as exc:
            await upstream.aclose()
            return self._failed(candidate, served, FailureKind.TIMEOUT, exc)
        except UpstreamError as exc:
            await upstream.aclose()
            return self._failed(candidate, served, FailureKind.CONNECT, exc)
        # A success, recorded here rather than in a method: this runs for every request.
        self.pool.success(served, candidate.model, call.thread_id)
        self.metrics.count_attempt(served.entry.name, "ok")
        if log.isEnabledFor(logging.INFO):  # checked first: most proxies log at WARNING
            _log_attempt(served, candidate.model, "ok", status=upstream.status, ttfb=ttfb)
        return response

    def _failed(self, candidate, served, kind, error, retry_after=None, status=None):
        """Record a failed attempt; the ``Failure`` to hand to the plan."""
        self.pool.failure(served, candidate.model, kind, retry_after=retry_after)
        self.metrics.count_attempt(served.entry.name, kind.name.lower())
        _log_attempt(served, candidate.model, kind.name.lower(), status=status, reason=error.message)
        error.logged = True
        return Failure(kind, error)

    def _judge_error(self, call, candidate, served, status, headers, data):
        """For a provider's error answer (``status`` >= 400, body ``data``): a Failure
        to fail over from, or the provider's own answer when the request itself is wrong
        (400, 404, 422...): the client must see why."""
        kind = classify(status, data)
        if not kind.fails_over:
            _log_attempt(served, candidate.model, "client-error", status=status)
            self.pool.success(served, candidate.model, call.thread_id)
            if self.usage is not None:
                self._account(call, status, None)
            if served.entry.protocol is not call.protocol:
                # The provider's own words, in the shape the client's SDK reads.
                return Response(*render_error(call.protocol, provider_error(status, data)))
            return Response(status, strip_hop_by_hop(headers, _NOT_RELAYED), data)
        retry_after = retry_after_from_headers(headers, time.time())
        error = _provider_failure(served, status, kind, data, retry_after)
        return self._failed(candidate, served, kind, error, retry_after, status)

    def _account(self, call, status, usage):
        """Record one answered call of ``call`` (its last attempt answered) with the
        provider's ``usage`` (None: unknown) in the usage ledger."""
        candidate, served = call.answered_by
        self.usage.record(
            UsageRecord(
                time=self.wall(),
                requested_model=call.context.requested_model,
                served_model=candidate.model,
                provider=served.entry.path,
                client=call.client,
                route=call.decision.route.name,
                status=status,
                input_tokens=None if usage is None else usage.input_tokens,
                output_tokens=None if usage is None else usage.output_tokens,
                cache_read_tokens=None if usage is None else usage.cache_read,
                cache_write_tokens=None if usage is None else usage.cache_write,
            )
        )

    def _json_answer(self, call, status, headers, data):
        """The client's response for a provider's whole non-stream answer ``data``
        (decoded): model and tool names rewritten."""
        data = _REWRITERS[call.protocol].rewrite_raw(data, call.context)
        return Response(status, strip_hop_by_hop(headers, _NOT_RELAYED), data)

    def _translated_answer(self, call, provider, status, data):
        """The client's response for a whole answer ``data`` (decoded) of a provider
        speaking ``provider``: translated, as a whole answer or a stream as the client
        asked. Raises ``UpstreamError`` when ``data`` is not such an answer."""
        translation = call.translation
        return Response(status, Headers(translation.headers), translation.answer(provider, data))

    def _stream_failed(self, call, served, error):
        """Bytes already reached the client: log, count, and the protocol's error event
        that ends the stream."""
        log.warning(
            "stream from provider failed mid-way",
            extra={"fields": {"credential": served.entry.path, "reason": error.message}},
        )
        self.metrics.count_attempt(served.entry.name, "stream-error")
        return error_event(call.protocol, error)

    async def _stream_response(self, call, served, upstream, started, ttfb):
        """Wait for the first body bytes (so a stream that dies at once still fails over),
        then commit to streaming the rest event by event, or to one body when those bytes
        were the whole stream. A client that asked for a whole answer from a provider of
        another protocol gets it once the stream has ended."""
        provider = served.entry.protocol
        translation = None if provider is call.protocol else call.translation
        pipeline = _stream_pipeline(call, upstream.headers, provider, translation, self.usage is not None)
        if translation is not None and not translation.streams:
            return await self._collected_answer(call, upstream, pipeline, started, ttfb)
        first = await upstream.next_chunk()
        if upstream.complete:
            # The whole stream came with its first read (a short answer, a fast local
            # model): it goes out as one body, head and all in one write, as it came.
            body = await self._relayed_whole(call, served, upstream, first, pipeline, started, ttfb)
        else:
            call.release_request()
            body = self._relay_events(call, served, upstream, first, pipeline, started, ttfb)
        if translation is not None:
            return Response(upstream.status, Headers(translation.headers), body)
        return Response(upstream.status, strip_hop_by_hop(upstream.headers, _NOT_RELAYED), body)

    async def _relayed_whole(self, call, served, upstream, first, pipeline, started, ttfb):
        """``_relay_events`` for a stream already received whole: its output as bytes."""
        pieces = []
        try:
            if first is not None:
                pieces.append(pipeline.feed(first))
            pieces.append(pipeline.flush())
            pieces.append(pipeline.close())
        except ProxyError as exc:
            pieces.append(self._stream_failed(call, served, exc))
        finally:
            await self._stream_ended(call, upstream, pipeline, started, ttfb)
        return b"".join(pieces)

    async def _collected_answer(self, call, upstream, pipeline, started, ttfb):
        """A provider stream read to its end for a client that asked for a whole answer
        (``pipeline`` collects it); raises ``UpstreamError`` when the stream broke."""
        try:
            chunk = await upstream.next_chunk()
            while chunk is not None:
                pipeline.feed(chunk)
                chunk = await upstream.next_chunk()
            pipeline.flush()
            data = pipeline.close()
        finally:
            await upstream.aclose()
        self.metrics.observe_upstream(call.decision.route.name, ttfb, self.clock() - started)
        if self.usage is not None:
            self._account(call, upstream.status, pipeline.usage())
        return Response(upstream.status, Headers(call.translation.headers), data)

    async def _relay_events(self, call, served, upstream, first, pipeline, started, ttfb):
        chunk = first  # None: the body ended before its first byte
        try:
            while chunk is not None:
                out = pipeline.feed(chunk)
                if out:
                    yield out
                chunk = await upstream.next_chunk()
            tail = pipeline.flush()
            if tail:
                yield tail
            tail = pipeline.close()
            if tail:
                yield tail
        except ProxyError as exc:
            yield self._stream_failed(call, served, exc)
        finally:
            await self._stream_ended(call, upstream, pipeline, started, ttfb)

    async def _stream_ended(self, call, upstream, pipeline, started, ttfb):
        """Release the upstream, time the attempt and count the usage of a relayed
        stream, also one cut short: what the provider counted until then."""
        await upstream.aclose()
        self.metrics.observe_upstream(call.decision.route.name, ttfb, self.clock() - started)
        if self.usage is not None:
            self._account(call, upstream.status, pipeline.usage())


def _stream_pipeline(call, upstream_headers, provider, translation, counted=False):
    """What a provider's SSE body goes through on its way to the client (``feed(chunk)``,
    ``flush()`` and ``close()``, bytes in, bytes out; ``usage()`` after): the protocol's
    stream rewriter in an ``EventRelay`` (with a ``UsageTap`` when ``counted``;
    ``translation``'s stream when the provider speaks another protocol), behind a decoder
    when the body has a ``Content-Encoding``. Without one (nearly always) it is the relay
    itself: no forwarding frame per piece."""
    if translation is None:
        tap = UsageTap(call.protocol) if counted else None
        relay = EventRelay(_REWRITERS[call.protocol].StreamRewriter(call.context), tap)
    else:
        relay = translation.stream(provider)
    coding = upstream_headers.get("content-encoding")
    if coding is not None and not is_identity(coding):
        return _DecodingPipeline(Decoder(coding, call.config.limits.max_body_bytes), relay)
    return relay


class _DecodingPipeline:
    """A relay behind a decoder; ``feed`` raises ``UpstreamError`` for a body that does
    not decode."""

    __slots__ = ("_decoder", "_relay")

    def __init__(self, decoder, relay):
        self._decoder = decoder
        self._relay = relay

    def feed(self, chunk):
        try:
            data = self._decoder.decompress(chunk)
        except (BadRequest, PayloadTooLarge) as exc:  # the provider's fault, not the client's
            raise UpstreamError("the provider's stream does not decode: %s" % exc.message)
        return self._relay.feed(data)

    def flush(self):
        return self._relay.flush()

    def close(self):
        return self._relay.close()

    def usage(self):
        return self._relay.usage()


def _decoded_answer(data, coding, limit):
    """A provider's whole answer with its ``Content-Encoding`` undone, at most ``limit``
    bytes decoded (a gzip bomb stops there); ``UpstreamError`` when it does not decode:
    the provider's fault, so a 502 and another attempt, not the client's 400 or 413."""
    try:
        return decode_body(data, coding, limit)
    except (BadRequest, PayloadTooLarge, UnsupportedMediaType) as exc:
        raise UpstreamError("the provider's answer does not decode: %s" % exc.message)


def _prepare(call, candidate, served):
    """``(url, headers, body)`` of the attempt of ``call`` on ``served``. The body is the
    client's own bytes when nothing has to change (no re-encoding of a 60 KB agent turn),
    else ``_rewritten_body``; a provider of another protocol gets the translated body."""
    entry = served.entry
    provider = entry.protocol
    if provider is not call.protocol:
        return _prepare_translated(call, candidate, served, provider)
    url = provider_url(entry, call.endpoint, model=served.upstream_model, stream=call.stream)
    if call.protocol is Protocol.GEMINI and call.query:
        url += ("&" if "?" in url else "?") + _without_alt(call.query)
        url = url.rstrip("?&")
    headers = provider_headers(entry, call.headers, call.protocol, content_type="application/json")
    body = call.raw
    if body is None or candidate.suffix is not None or (
        call.protocol is not Protocol.GEMINI and call.body.get("model") != served.upstream_model
    ):
        body = _rewritten_body(call, candidate, served)
    return url, headers, body


def _prepare_translated(call, candidate, served, provider):
    """``_prepare`` for a provider speaking ``provider``, another protocol than the
    client's: the call's ``Translation`` (made here on first need; reading the client's
    body may raise ``BadRequest``) writes the body, and the URL is the provider's own
    generating endpoint."""
    translation = call.translation
    if translation is None:
        translation = call.translation = Translation(
            call.protocol,
            call.body,
            call.context.requested_model,
            route_model=call.context.requested_model,
            route_stream=call.stream,
            query=call.query,
        )
    entry = served.entry
    url = provider_url(entry, GENERATE_ENDPOINTS[provider], model=served.upstream_model, stream=translation.streams)
    headers = provider_headers(entry, call.headers, call.protocol, content_type="application/json")
    return url, headers, translation.request(provider, served.upstream_model, candidate.suffix)


def _rewritten_body(call, candidate, served):
    """The body for the provider with the upstream model name and the thinking suffix
    applied, encoded."""
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


def _provider_failure(served, status, kind, data, retry_after):
    detail = error_message(data)
    message = "provider %s (%s) answered %d" % (served.entry.path, served.upstream_model, status)
    if detail:
        message += ": " + detail
    if kind is FailureKind.RATE_LIMITED:
        headers = (("retry-after", "%d" % retry_after),) if retry_after else ()
        return ProxyError(message, status=429, error_type="rate_limit_error", headers=headers)
    if kind is FailureKind.AUTH:
        return UpstreamError(message + " (check this credential)")
    return ProxyError(message, status=status if 500 <= status < 600 else 502, error_type="api_error")



def _log_attempt(served, model, outcome, status=None, reason=None, ttfb=None):
    level = logging.INFO if outcome == "ok" else logging.WARNING
    if not log.isEnabledFor(level):
        return  # the fields below cost more than the rest of a successful attempt
    fields = {
        "credential": served.entry.path,
        "model": model,
        "upstream_model": served.upstream_model,
        "outcome": outcome,
        "status": status,
        "ttfb_ms": None if ttfb is None else round(ttfb * 1000, 1),
        "reason": reason,
    }
    log.log(level, "provider attempt", extra={"fields": fields})


def _log_sending(call, served, url, body):
    """The debug line of an attempt about to be sent: where, to which credential, in
    which protocol, how big (the URL's query masked: a base URL may carry a key)."""
    provider = served.entry.protocol
    scheme, _, rest = url.partition("://")
    path, _, query = rest.partition("?")
    fields = {
        "credential": served.entry.path,
        "upstream_model": served.upstream_model,
        "url": "%s://%s%s" % (scheme, path, "?" + mask_query(query) if query else ""),
        "translation": None if provider is call.protocol else "%s -> %s" % (call.protocol.value, provider.value),
        "body_bytes": len(body),
    }
    log.debug("sending attempt", extra={"fields": fields})

