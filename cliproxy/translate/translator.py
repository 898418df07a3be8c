"""Translating one model call between the client's protocol and a provider's.

Strategy: a ``Translation`` is made once per model call, the first time an attempt goes
to a provider speaking another protocol than the client (same-protocol calls never build
one: their bodies pass as the client's bytes, their answers through the rewriters). It
reads the client's body into a ``Conversation`` once, and for each attempt:

- ``request(provider, model, suffix)`` writes the provider's body (a model-name thinking
  suffix replaces the client's own setting);
- ``answer(provider, data)`` turns a whole provider answer into the client's answer, a
  whole one or a stream (a streaming client served by a JSON answer);
- ``stream(provider)`` gives the pipeline a provider stream goes through: SSE in, the
  client's stream (or, for a client that did not ask for one, its whole answer) out;
- ``error(status, data)`` turns a provider's error answer into a ``ProxyError`` that
  renders in the client's shape.

The codecs (``translate/codecs/``) are chosen by one table lookup; everything here is pure
(bytes and dicts in, bytes out), the executor does the I/O.
"""

import dataclasses
import functools
import importlib
import logging
from collections.abc import Mapping
from typing import Optional

from cliproxy.config.model import Protocol
from cliproxy.errors import ProxyError, UpstreamError
from cliproxy.http.sse import FieldParser
from cliproxy.jsontext import loads
from cliproxy.providers.outbound import Endpoint
from cliproxy.translate import anthropic as anthropic_rewriter
from cliproxy.translate.context import dumps
from cliproxy.translate.ir import AnswerBuilder, AnswerContext, Thinking, Usage, replay

__all__ = ["CODECS", "GENERATE_ENDPOINTS", "Translation", "error_message", "provider_error", "translatable"]

log = logging.getLogger("cliproxy.translate")

class _Codecs(Mapping):
    """Protocol → its codec module, each imported the first time it is asked for: a
    proxy whose clients and providers speak one protocol never loads the other three
    (about 10 ms of start-up each, the zipapp holding no bytecode)."""

    _MODULES = {
        Protocol.CLAUDE: "anthropic",
        Protocol.OPENAI: "chat",
        Protocol.RESPONSES: "responses",
        Protocol.GEMINI: "gemini",
    }

    def __init__(self):
        self._loaded = {}

    def __getitem__(self, protocol):
        module = self._loaded.get(protocol)
        if module is None:
            name = self._MODULES[protocol]  # KeyError for what is not a protocol
            module = self._loaded[protocol] = importlib.import_module("cliproxy.translate.codecs." + name)
        return module

    def __iter__(self):
        return iter(self._MODULES)

    def __len__(self):
        return len(self._MODULES)


CODECS = _Codecs()

# The endpoint that generates an answer, per provider protocol.
GENERATE_ENDPOINTS = {
    Protocol.CLAUDE: Endpoint.MESSAGES,
    Protocol.OPENAI: Endpoint.CHAT_COMPLETIONS,
    Protocol.RESPONSES: Endpoint.RESPONSES,
    Protocol.GEMINI: Endpoint.GEMINI_GENERATE,
}

# Client endpoints whose calls can be translated: the ones that generate an answer.
# Token counts are answered by a provider of the client's protocol or estimated locally;
# legacy completions have no conversation to translate.
_TRANSLATABLE = frozenset(
    (
        Endpoint.MESSAGES,
        Endpoint.CHAT_COMPLETIONS,
        Endpoint.RESPONSES,
        Endpoint.GEMINI_GENERATE,
        Endpoint.GEMINI_STREAM,
    )
)

_JSON_HEADERS = (("content-type", "application/json"),)
_SSE_HEADERS = (("content-type", "text/event-stream"), ("cache-control", "no-cache"))

# Provider error statuses → our error kinds (Anthropic names, rendered per client protocol).
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def translatable(endpoint: Endpoint) -> bool:
    """Whether calls to ``endpoint`` can be served by a provider of another protocol."""
    return endpoint in _TRANSLATABLE


class Translation:
    """The translation state of one model call (see the module docstring).

    ``client``: the client's protocol; ``body``: its parsed (and sanitised) request;
    ``requested_model``: the model string exactly as the client sent it; ``route_model``
    and ``route_stream``: what a Gemini path says; ``query``: the client's query (Gemini's
    ``alt=sse``). Reading the body may raise ``BadRequest`` (in the client's terms).
    """

    __slots__ = ("client", "conversation", "streams", "_codec", "_context")

    def __init__(self, client, body, requested_model, route_model=None, route_stream=False, query=""):
        self.client = client
        self._codec = CODECS[client]
        conversation = self._codec.read_request(
            body, model=route_model, stream=route_stream if client is Protocol.GEMINI else None
        )
        if client is Protocol.GEMINI:
            conversation.stream = bool(route_stream)
        # The client's own reasoning history carries signatures only its protocol can
        # check; a provider of another protocol would reject them, so they stay here.
        _drop_thinking(conversation)
        self.conversation = conversation
        self.streams = conversation.stream
        self._context = AnswerContext(
            requested_model,
            tool_names=(
                functools.partial(anthropic_rewriter.tool_name_map, body.get("tools"))
                if client is Protocol.CLAUDE
                else None
            ),
            include_usage=_include_usage(body) if client is Protocol.OPENAI else False,
            gemini_sse="alt=sse" in query,
        )

    # -- request

    def request(self, provider: Protocol, model: str, suffix=None) -> bytes:
        """The body for a ``provider`` request to upstream ``model``, encoded. A
        model-name thinking ``suffix`` replaces the client's own setting: the writer
        applies it, together with the rules its protocol sets on thinking (Anthropic
        refuses it in some tool loops)."""
        conversation = self.conversation
        if suffix is not None:
            conversation = dataclasses.replace(conversation, thinking=suffix)
        return dumps(CODECS[provider].write_request(conversation, model)).encode("utf-8")

    # -- answers

    @property
    def headers(self):
        """The client's response fields for a translated answer (no provider field
        survives translation: framing, coding and content type are all new)."""
        if self.streams and not (self.client is Protocol.GEMINI and not self._context.gemini_sse):
            return _SSE_HEADERS
        return _JSON_HEADERS

    def answer(self, provider: Protocol, data: bytes) -> bytes:
        """The client's answer for a provider's whole JSON answer ``data``: a whole
        answer, or the events of one for a streaming client. Raises ``UpstreamError``
        when ``data`` is not an answer of ``provider``'s protocol."""
        try:
            document = loads(data)
        except ValueError:
            raise UpstreamError("the provider's answer is not valid JSON")
        if not isinstance(document, dict):
            raise UpstreamError("the provider's answer is not a JSON object")
        answer = CODECS[provider].read_response(document)
        return self._write(answer)

    def _write(self, answer) -> bytes:
        for part in answer.parts:
            if isinstance(part, Thinking):
                part.signature = None  # see StreamTranslation: meaningless to the client
        if not self.streams:
            return dumps(self._codec.write_response(answer, self._context)).encode("utf-8")
        writer = self._codec.StreamWriter(self._context)
        replay(answer, writer, dumps)
        return writer.take()

    def stream(self, provider: Protocol):
        """The pipeline for a provider's SSE answer: ``feed(chunk) -> bytes``,
        ``flush() -> bytes`` and ``close() -> bytes``, as the executor's relays have."""
        reader = CODECS[provider].StreamReader
        if self.streams:
            return StreamTranslation(reader, self._codec.StreamWriter(self._context))
        return CollectedAnswer(reader, self)

    def error(self, status: int, data: bytes) -> ProxyError:
        """A provider's error answer as an error for the client's protocol."""
        return provider_error(status, data)


class StreamTranslation:
    """Provider SSE bytes in, the client's stream bytes out, event by event.

    A ``FieldParser`` gives each read's whole events as one text (no reader needs an
    event's raw bytes); readers read the delta events they know by their shape straight
    from that text, without cutting it or parsing them (``codecs.shapes``), and cut out
    and parse the others.

    A thinking signature is proof only the protocol that made it can check; the client
    speaks another, and would send it back where it is invalid, so the writer is given
    none (its ``signature`` event is silenced on this instance: no extra call per event).
    """

    __slots__ = ("_parser", "_reader", "_writer")

    def __init__(self, reader_class, writer):
        self._parser = FieldParser()
        writer.signature = _ignore_signature
        self._writer = writer
        self._reader = reader_class(writer)

    def feed(self, chunk: bytes) -> bytes:
        _read(self._parser, self._reader, chunk)
        return self._writer.take()

    def flush(self) -> bytes:
        """What the stream's last bytes (an event without its blank line) produce."""
        self._reader.feed_events(self._parser.flush())
        return self._writer.take()

    def close(self) -> bytes:
        """The closing events; raises ``UpstreamError`` when the provider's stream ended
        before its answer did."""
        self._reader.close()
        return self._writer.take()

    def usage(self) -> Optional[Usage]:
        """The provider's token counts seen so far (None when it sent none)."""
        return _known(self._writer.counted)


class CollectedAnswer:
    """A provider stream collected for a client that asked for a whole answer: nothing
    comes out until ``close``, which gives the whole answer (or raises the provider's
    error)."""

    __slots__ = ("_parser", "_reader", "_builder", "_translation")

    def __init__(self, reader_class, translation):
        self._parser = FieldParser()
        self._builder = AnswerBuilder()
        self._reader = reader_class(self._builder)
        self._translation = translation

    def feed(self, chunk: bytes) -> bytes:
        _read(self._parser, self._reader, chunk)
        return b""

    def flush(self) -> bytes:
        self._reader.feed_events(self._parser.flush())
        return b""

    def close(self) -> bytes:
        self._reader.close()
        if self._builder.failure is not None:
            raise self._builder.failure
        return self._translation._write(self._builder.answer)

    def usage(self) -> Optional[Usage]:
        """The provider's token counts (None when it sent none)."""
        return _known(self._builder.answer.usage)


def _read(parser: FieldParser, reader, chunk: bytes) -> None:
    """Feed ``reader`` the events ``chunk`` completes in ``parser``."""
    text, events = parser.feed_text(chunk)
    if text:
        reader.feed_text(text)
    elif events:
        reader.feed_events(events)


def _known(usage: Usage) -> Optional[Usage]:
    """``usage``, or None when it holds no count at all."""
    if usage.input_tokens is None and usage.output_tokens is None:
        return None
    return usage


def _ignore_signature(index, value):
    """A writer's ``signature`` event, silenced (see ``StreamTranslation``)."""


def provider_error(status: int, data: bytes) -> ProxyError:
    """A ``ProxyError`` carrying a provider's error answer (status ``status``, body
    ``data``): its status, a kind fitting the status, and the provider's own message."""
    message = error_message(data) or "the provider answered %d" % status
    if status >= 500:
        kind = _ERROR_TYPES.get(status, "api_error")
    else:
        kind = _ERROR_TYPES.get(status, "invalid_request_error")
    return ProxyError(message, status=status, error_type=kind)


def error_message(data: bytes) -> Optional[str]:
    """The message of any of the four protocols' error bodies, shortened; the start of
    a body that is not JSON; None for an empty body."""
    try:
        document = loads(data)
    except ValueError:
        text = data[:300].decode("utf-8", "replace").strip()
        return text or None
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(document, list) and document and isinstance(document[0], dict):
        error = document[0].get("error")  # Gemini's streamed array form
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"][:1000]
    if isinstance(error, str):
        return error[:1000]
    return None


def _drop_thinking(conversation) -> None:
    """Remove every ``Thinking`` part, and the messages left with no part."""
    kept = []
    for message in conversation.messages:
        parts = [part for part in message.parts if not isinstance(part, Thinking)]
        if len(parts) != len(message.parts):
            if not parts:
                continue
            message.parts = parts
        kept.append(message)
    conversation.messages = kept


def _include_usage(body: dict) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True
