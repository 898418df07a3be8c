"""OpenAI Responses: request sanitising, response and SSE rewriting (SPEC §3.2).

Strategy: requests from Amp carry fields that a provider's Responses endpoint rejects;
``sanitize_request`` removes exactly the fields listed in ``REJECTED_FIELDS`` and nothing
else (the list grows only with a documented rejection). Responses name their model in the
response object: top level in a non-streaming answer, ``response.model`` in the stream's
lifecycle events (``RESPONSE_EVENTS``). Every other stream event (the many deltas) passes
through as the exact bytes received, decided by the event name before any parsing.
"""

from cliproxy.translate.context import (
    RewriteContext,
    encode_json_value,
    has_value,
    loads_object,
    reencode,
    rewrite_model,
    rewrite_model_raw,
)

__all__ = [
    "REJECTED_FIELDS",
    "RESPONSE_EVENTS",
    "RewriteContext",
    "StreamRewriter",
    "rewrite_raw",
    "rewrite_response",
    "sanitize_request",
]

# Request fields removed before a Responses provider sees them:
# - stream_options: Chat Completions' option that Amp also sends on the Responses API;
#   providers' Responses endpoints answer 400 "Unsupported parameter" (SPEC §3.2).
REJECTED_FIELDS = ("stream_options",)

# Stream events whose payload carries the whole response object (and so its model).
RESPONSE_EVENTS = frozenset(
    (
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.completed",
        "response.failed",
        "response.incomplete",
    )
)


def sanitize_request(body: dict) -> dict:
    """Remove ``REJECTED_FIELDS`` from a Responses request body, in place; returns
    ``body``. Never raises."""
    sanitize(body)
    return body


def sanitize(body: dict) -> bool:
    """``sanitize_request``, saying whether anything was removed."""
    changed = False
    for name in REJECTED_FIELDS:
        if name in body:
            del body[name]
            changed = True
    return changed


# The only field to give back: the model the client asked for.
rewrite_response = rewrite_model
rewrite_raw = rewrite_model_raw


_RESPONSE_EVENT_BYTES = tuple(name.encode("ascii") for name in sorted(RESPONSE_EVENTS))


class StreamRewriter:
    """Rewrites ``response.model`` in the lifecycle events of a Responses stream."""

    def __init__(self, ctx: RewriteContext):
        self._ctx = ctx
        self._model_json = encode_json_value(ctx.requested_model)

    # The lifecycle events carrying the model: a run without them passes unparsed.
    markers = _RESPONSE_EVENT_BYTES

    def event(self, ev) -> bytes:
        """The bytes to send for ``ev`` (a ``cliproxy.http.sse.Event``). Never raises."""
        data = ev.data
        if not data:
            return ev.raw
        name = ev.event
        if name is not None and name not in RESPONSE_EVENTS:
            return ev.raw
        if name is None and '"response"' not in data:
            return ev.raw
        if has_value(data, "model", self._model_json):
            return ev.raw
        obj = loads_object(data)
        if obj is None or obj.get("type") not in RESPONSE_EVENTS:
            return ev.raw
        response = obj.get("response")
        if not isinstance(response, dict) or not isinstance(response.get("model"), str):
            return ev.raw
        if response["model"] == self._ctx.requested_model:
            return ev.raw
        response["model"] = self._ctx.requested_model
        return reencode(ev, obj)
