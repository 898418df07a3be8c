"""Which credential a model call tries next: candidates × rounds × credentials, sans-IO.

Strategy: the failover policy (SPEC §2 ``request-retry``, the mapping's ``to`` list, the
credential pool's order) is one loop, written once as a generator that yields the next
``Choice`` and is sent the ``Failure`` of each attempt. ``AttemptPlan`` wraps it for
the executor, whose coroutine only makes the attempts; the policy is tested here without
any socket. No I/O and no clock here: the pool owns the clock.

The loop, per candidate model (primary first): every credential serving it may be tried
(a provider of another protocol through translation), except for calls that cannot be
translated (token counts, legacy completions), which only credentials speaking the
client's protocol serve (else the candidate's error is a 501 naming both); each round
asks the pool for the usable credentials in order and tries each; another round follows
only when some failure was transient (connect, timeout, 5xx). When no credential is usable
the model's error is a 429 whose ``Retry-After`` is the wait for the first to come back.
When every candidate is spent, ``error`` is the last error seen.
"""

import math
from typing import NamedTuple, Optional

from cliproxy.errors import NotImplementedYet, ProxyError, UpstreamError
from cliproxy.providers.credentials import FailureKind
from cliproxy.translate.translator import translatable

# Failures worth another round over the same credentials (SPEC §2 request-retry).
RETRYABLE = frozenset((FailureKind.CONNECT, FailureKind.TIMEOUT, FailureKind.SERVER_ERROR))


class Choice(NamedTuple):
    """One attempt to make: a candidate model and one credential serving it."""

    candidate: object  # routing.router.Candidate
    served: object  # routing.registry.Served


class Failure(NamedTuple):
    """How an attempt failed, and the error the client gets if nothing else works."""

    kind: FailureKind
    error: ProxyError


class AttemptPlan:
    """The attempts of one model call, in order.

    ``first()`` gives the first ``Choice`` (or ``None``), ``after(failure)`` the one to
    try after an attempt failed (or ``None``); once either returns ``None``, ``error``
    is the error to answer with. Call ``first()`` exactly once, before ``after``.
    """

    __slots__ = ("error", "_steps")

    def __init__(self, call, pool):
        self.error = None  # type: Optional[ProxyError]
        # The generator must not refer back to the plan: that cycle would keep the call
        # (its parsed body, a 60 KB agent turn) until the cyclic collector ran.
        self._steps = _walk(call, pool)

    def first(self):
        """The first choice, or None."""
        return self.after(None)

    def after(self, failure=None):
        """The choice to try after an attempt failed with ``failure``, or None."""
        try:
            return self._steps.send(failure)
        except StopIteration as spent:
            self.error = spent.value
            return None


def _walk(call, pool):
    """The policy loop (see the module docstring); returns the error when spent."""
    last_error = None
    protocol = call.protocol
    any_protocol = translatable(call.endpoint)
    for candidate in call.decision.candidates:
        served = candidate.served
        for member in served:
            if not any_protocol and member.entry.protocol is not protocol:
                served = tuple(s for s in served if s.entry.protocol is protocol)
                break
        if not served:
            last_error = untranslated(candidate, protocol)
            continue
        model_error = None  # the last error of this model; None: every credential cools
        for _ in range(1 + call.config.request_retry):
            order = pool.order(served, candidate.model, call.thread_id)
            if not order:
                model_error = model_error or cooling(candidate.model, pool.soonest_recovery(served, candidate.model))
                break
            worth_another_round = False
            for member in order:
                failure = yield Choice(candidate, member)
                model_error = failure.error
                worth_another_round = worth_another_round or failure.kind in RETRYABLE
            if not worth_another_round:
                break
        last_error = model_error or last_error
    return last_error or UpstreamError("no provider could serve %s" % call.decision.requested)


def cooling(model, wait):
    """The 429 for a model whose credentials all cool down; ``wait`` (seconds until the
    first comes back) becomes ``Retry-After`` so clients back off that long, not less."""
    headers = (("retry-after", "%d" % max(1, math.ceil(wait))),) if wait else ()
    return ProxyError(
        "every credential serving %s is cooling down after recent failures; retry shortly" % model,
        status=429,
        error_type="rate_limit_error",
        headers=headers,
    )


def untranslated(candidate, protocol):
    """The 501 for a call that cannot be translated (a token count, a legacy completion)
    whose candidate only providers of another protocol serve."""
    native = candidate.served[0].entry.protocol if candidate.served else None
    name = native.value if native else "?"
    return NotImplementedYet(
        "%s is served by a provider speaking %s; this %s endpoint can only be served by a provider of its own protocol"
        % (candidate.model, name, protocol.value)
    )
