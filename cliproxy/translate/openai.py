"""OpenAI Chat Completions: response and SSE rewriting (SPEC §3.2).

Strategy: the only change a locally served Chat Completions answer needs is its ``model``,
which goes back to the exact string the client sent (suffix included). Every stream chunk
carries ``model``; a chunk that already names the requested model (the common case when
no alias, mapping or suffix is involved), ``data: [DONE]`` and anything that is not a JSON
object pass through as the exact bytes received. Chat Completions requests need no
sanitising, so this module has no ``sanitize_request``.
"""

from cliproxy.translate.context import (
    RewriteContext,
    TopLevelFieldRewriter,
    dumps,
    loads_object,
)

__all__ = ["RewriteContext", "StreamRewriter", "rewrite_raw", "rewrite_response"]


def rewrite_response(body: dict, ctx: RewriteContext) -> dict:
    """Set a Chat Completions response's ``model`` (when present) to
    ``ctx.requested_model``, in place; returns ``body``. Never raises."""
    if isinstance(body.get("model"), str):
        body["model"] = ctx.requested_model
    return body


def rewrite_raw(data: bytes, ctx: RewriteContext) -> bytes:
    """``rewrite_response`` over a raw body; a body that is not a JSON object is returned
    unchanged."""
    body = loads_object(data)
    if body is None:
        return data
    return dumps(rewrite_response(body, ctx)).encode("utf-8")


class StreamRewriter(TopLevelFieldRewriter):
    """Rewrites each ``chat.completion.chunk``'s ``model``; ``event(ev) -> bytes``."""

    def __init__(self, ctx: RewriteContext):
        super().__init__("model", ctx.requested_model)
