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
    rewrite_model,
    rewrite_model_raw,
)

__all__ = ["RewriteContext", "StreamRewriter", "rewrite_raw", "rewrite_response"]


# The only field to give back: the model the client asked for.
rewrite_response = rewrite_model
rewrite_raw = rewrite_model_raw


class StreamRewriter(TopLevelFieldRewriter):
    """Rewrites each ``chat.completion.chunk``'s ``model``; ``event(ev) -> bytes``."""

    def __init__(self, ctx: RewriteContext):
        super().__init__("model", ctx.requested_model)
