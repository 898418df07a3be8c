"""Gemini generateContent: response and SSE rewriting (SPEC §3.2).

Strategy: a Gemini answer names its model in ``modelVersion``; it goes back to the exact
string the client asked for. ``generateContent`` answers one object,
``streamGenerateContent`` without ``alt=sse`` one JSON array of them, and with ``alt=sse``
one object per ``data:`` event; each carries ``modelVersion``. Events that already carry
the requested value, or none, pass through as the exact bytes received. ``countTokens``
answers have no ``modelVersion`` and come back unchanged.
"""

from cliproxy.translate.context import RewriteContext, TopLevelFieldRewriter, holds_only, rewrite_json

__all__ = ["RewriteContext", "StreamRewriter", "rewrite_raw", "rewrite_response"]

_MODEL_KEY = "modelVersion"


def rewrite_response(body, ctx: RewriteContext):
    """Set ``modelVersion`` (when present) to ``ctx.requested_model`` in one response
    object, or in each object of a streamed JSON array; in place, returns ``body``.
    Never raises."""
    for item in body if isinstance(body, list) else (body,):
        if isinstance(item, dict) and isinstance(item.get(_MODEL_KEY), str):
            item[_MODEL_KEY] = ctx.requested_model
    return body


def rewrite_raw(data: bytes, ctx: RewriteContext) -> bytes:
    """``rewrite_response`` over a raw body (see ``context.rewrite_json``); a body that
    already names the requested model goes out as received."""
    if holds_only(data, _MODEL_KEY, ctx.requested_model):
        return data
    return rewrite_json(data, rewrite_response, ctx, arrays=True)


class StreamRewriter(TopLevelFieldRewriter):
    """Rewrites each ``alt=sse`` chunk's ``modelVersion``; ``event(ev) -> bytes``."""

    def __init__(self, ctx: RewriteContext):
        super().__init__(_MODEL_KEY, ctx.requested_model)
