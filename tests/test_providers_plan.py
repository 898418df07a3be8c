"""The failover order of a model call (cliproxy.providers.plan), with a real router and a
real credential pool on a hand-moved clock."""

import gc
from types import SimpleNamespace

from cliproxy.config.model import AmpCode, Config, ModelEntry, ModelMapping, Protocol, ProviderEntry, ProviderKind
from cliproxy.errors import NotImplementedYet, ProxyError, UpstreamError
from cliproxy.providers.credentials import CredentialPool, FailureKind
from cliproxy.providers.outbound import Endpoint
from cliproxy.providers.plan import AttemptPlan, Failure
from cliproxy.routing.router import Router
from tests.support.proxy import FakeClock


def claude(index, *models):
    return ProviderEntry(
        ProviderKind.CLAUDE,
        "claude-api-key[%d]" % index,
        "sk-ant-%d" % index,
        "http://127.0.0.1:9",
        "claude-api-key",
        models=tuple(ModelEntry(name, name) for name in models),
    )


def ollama(*models):
    return ProviderEntry(
        ProviderKind.OPENAI_COMPAT,
        "openai-compatibility[0].api-key-entries[0]",
        "",
        "http://127.0.0.1:11434/v1",
        "ollama",
        models=tuple(ModelEntry(name, name) for name in models),
    )


def make_call(providers, model, request_retry=0, mappings=(), protocol=Protocol.CLAUDE, endpoint=Endpoint.MESSAGES):
    config = Config(providers=tuple(providers), request_retry=request_retry, ampcode=AmpCode(model_mappings=mappings))
    decision = Router.from_config(config).decide(model, protocol)
    return SimpleNamespace(config=config, decision=decision, protocol=protocol, endpoint=endpoint, thread_id=None)


def walk(call, pool, outcomes):
    """Drive a plan, answering each attempt with the next (kind, status) of ``outcomes``;
    the credential paths tried, and the plan."""
    plan = AttemptPlan(call, pool)
    tried = []
    choice = plan.first()
    while choice is not None:
        tried.append((choice.candidate.model, choice.served.entry.path))
        kind = outcomes[len(tried) - 1]
        pool.failure(choice.served, choice.candidate.model, kind)
        choice = plan.after(Failure(kind, ProxyError("attempt %d failed" % len(tried), status=502)))
    return tried, plan


def test_a_call_tries_each_credential_once_then_answers_the_last_error():
    call = make_call([claude(0, "m"), claude(1, "m")], "m")
    tried, plan = walk(call, CredentialPool(clock=FakeClock()), [FailureKind.RATE_LIMITED] * 2)
    assert sorted(path for _, path in tried) == ["claude-api-key[0]", "claude-api-key[1]"]
    assert plan.error.message == "attempt 2 failed"


def test_transient_failures_earn_another_round_and_a_cooled_credential_is_skipped():
    call = make_call([claude(0, "m"), claude(1, "m")], "m", request_retry=1)
    # Both fail with a 5xx (no cool-down for the first blip): round two tries both again.
    tried, _ = walk(call, CredentialPool(clock=FakeClock()), [FailureKind.SERVER_ERROR] * 4)
    assert len(tried) == 4
    # A 429 cools its credential: the second round has only the other one.
    tried, _ = walk(
        call,
        CredentialPool(clock=FakeClock()),
        [FailureKind.RATE_LIMITED, FailureKind.SERVER_ERROR, FailureKind.SERVER_ERROR],
    )
    assert len(tried) == 3
    assert tried[2] == tried[1]


def test_a_failure_that_is_not_transient_ends_the_rounds():
    call = make_call([claude(0, "m")], "m", request_retry=3)
    tried, _ = walk(call, CredentialPool(clock=FakeClock()), [FailureKind.AUTH])
    assert len(tried) == 1


def test_a_mapping_moves_on_to_its_next_target_after_the_first_is_spent():
    mappings = (ModelMapping("claude-opus-4-5", ("first", "second"), index=0),)
    call = make_call([claude(0, "first"), claude(1, "second")], "claude-opus-4-5", mappings=mappings)
    tried, _ = walk(call, CredentialPool(clock=FakeClock()), [FailureKind.SERVER_ERROR, FailureKind.SERVER_ERROR])
    assert tried == [("first", "claude-api-key[0]"), ("second", "claude-api-key[1]")]


def test_when_every_credential_cools_the_error_is_a_429_with_the_wait():
    clock = FakeClock()
    pool = CredentialPool(clock=clock)
    call = make_call([claude(0, "m")], "m")
    walk(call, pool, [FailureKind.RATE_LIMITED])  # cools claude-api-key[0] for 1 s
    plan = AttemptPlan(call, pool)
    assert plan.first() is None
    assert plan.error.status == 429
    assert dict(plan.error.headers)["retry-after"] == "1"


def test_a_provider_of_another_protocol_is_tried_for_a_call_that_translates():
    call = make_call([ollama("qwen3-coder"), claude(0, "qwen3-coder")], "qwen3-coder")
    tried, _ = walk(call, CredentialPool(clock=FakeClock()), [FailureKind.SERVER_ERROR] * 2)
    assert sorted(path for _, path in tried) == ["claude-api-key[0]", "openai-compatibility[0].api-key-entries[0]"]


def test_a_count_that_cannot_translate_is_a_501_when_only_another_protocol_serves():
    call = make_call([ollama("qwen3-coder")], "qwen3-coder", endpoint=Endpoint.COUNT_TOKENS)
    plan = AttemptPlan(call, CredentialPool(clock=FakeClock()))
    assert plan.first() is None
    assert isinstance(plan.error, NotImplementedYet)
    assert "openai" in plan.error.message and "claude" in plan.error.message


def test_a_count_skips_the_credentials_of_another_protocol():
    call = make_call([ollama("m"), claude(0, "m")], "m", endpoint=Endpoint.COUNT_TOKENS)
    tried, _ = walk(call, CredentialPool(clock=FakeClock()), [FailureKind.SERVER_ERROR] * 2)
    assert tried == [("m", "claude-api-key[0]")]


def test_a_call_with_no_candidate_has_a_generic_upstream_error():
    call = make_call([claude(0, "m")], "m")
    call.decision = SimpleNamespace(candidates=(), requested="m")
    plan = AttemptPlan(call, CredentialPool(clock=FakeClock()))
    assert plan.first() is None
    assert isinstance(plan.error, UpstreamError)


def test_a_plan_holds_no_reference_cycle():
    # A cycle would keep the call (its parsed body) alive until the cyclic collector ran.
    call = make_call([claude(0, "m")], "m")
    pool = CredentialPool(clock=FakeClock())
    gc.collect()
    gc.disable()
    try:
        plan = AttemptPlan(call, pool)
        plan.first()
        del plan
        assert not [obj for obj in gc.get_objects() if type(obj) is AttemptPlan]
    finally:
        gc.enable()
