"""The one place that decides where a model call goes (SPEC §3.2 steps 1-5).

Strategy: decide once, act once. ``Router.decide`` is a pure function of the config
snapshot (through the registry and mapper built from it) and the request's model and
client protocol; it returns a frozen ``RouteDecision`` that the executor carries out, the
error renderer turns into a response, the request log records (``log_fields``) and the
``route`` command prints (``explain``). The order of the checks:

1. split the thinking suffix; everything below matches on the base name;
2. a local provider serves the model → LOCAL_PROVIDER (with ``force-model-mappings`` this
   check comes after step 3);
3. the first model-mappings rule matching the model (exact before regex) whose targets
   include at least one locally served model → MODEL_MAPPING, candidates in ``to``
   order with unserved targets skipped. A rule whose targets are all unserved does not
   apply, and no later rule is tried (first match decides, as in CLIProxyAPI);
4. an Amp upstream is configured and ``paid-fallback`` is allow → AMP_CREDITS;
5. else NO_PROVIDER: 404, or 402 when an upstream exists but ``paid-fallback`` is deny.

A target's own suffix (``"to": "qwen3-coder(high)"``) overrides the user's; otherwise
the user's is kept. AMP_CREDITS and NO_PROVIDER carry a hint: the model-mappings entry
that would have kept the call local. Nothing here ever reads or prints an API key:
credentials are named by their JSON path.
"""

import enum
import json
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from cliproxy.config.model import Config, ModelMapping, PaidFallback, Protocol
from cliproxy.errors import NotFound, PaymentRequired, ProxyError
from cliproxy.routing.mapper import ModelMapper
from cliproxy.routing.registry import ModelRegistry, Served
from cliproxy.routing.suffix import ThinkingSuffix, split_suffix, with_suffix


class RouteType(enum.Enum):
    LOCAL_PROVIDER = "LOCAL_PROVIDER"
    MODEL_MAPPING = "MODEL_MAPPING"
    AMP_CREDITS = "AMP_CREDITS"
    NO_PROVIDER = "NO_PROVIDER"


STATUS_NOT_FOUND = 404
STATUS_PAYMENT_REQUIRED = 402

# The provider name logged for calls forwarded to the Amp upstream.
AMP_UPSTREAM_NAME = "ampcode"

_MAPS_LOCALLY = "maps it to a locally served model"


@dataclass(frozen=True)
class Candidate:
    """One model to try: ``model`` is its visible base name, ``suffix`` the thinking
    suffix to apply, ``served`` its credentials in config order (never empty)."""

    model: str
    suffix: Optional[ThinkingSuffix]
    served: Tuple[Served, ...]

    @property
    def resolved(self) -> str:
        """The model with its suffix, as logged (``qwen3-coder(high)``)."""
        return with_suffix(self.model, self.suffix)


@dataclass(frozen=True)
class RouteDecision:
    """Where one model call goes.

    ``requested`` is the exact string the client sent, ``base``/``suffix`` its parts,
    ``protocol`` the protocol the client speaks. ``candidates``: one for LOCAL_PROVIDER,
    the served targets of ``mapping`` in order for MODEL_MAPPING, empty otherwise.
    ``hint`` (AMP_CREDITS, NO_PROVIDER): the model-mappings JSON entry that would avoid
    the route (it starts with ``{``), or a sentence when no local provider exists.
    ``status``: ``None`` when the call can proceed, else 404 or 402 (NO_PROVIDER only).
    ``reason``: one line saying why this route was chosen.
    """

    route: RouteType
    requested: str
    base: str
    suffix: Optional[ThinkingSuffix]
    protocol: Protocol
    candidates: Tuple[Candidate, ...] = ()
    mapping: Optional[ModelMapping] = None
    hint: Optional[str] = None
    status: Optional[int] = None
    reason: str = ""

    @property
    def routable(self) -> bool:
        return self.status is None

    @property
    def resolved(self) -> str:
        """The first candidate's model with its suffix, else the requested model."""
        if self.candidates:
            return self.candidates[0].resolved
        return self.requested

    @property
    def message(self) -> Optional[str]:
        """The user-facing text: the error message for NO_PROVIDER, the warning logged
        for AMP_CREDITS, ``None`` for locally served calls. Names the model and the
        mapping to add; never contains a secret."""
        if self.route is RouteType.NO_PROVIDER:
            return 'no provider for model "%s": %s. %s' % (
                self.requested,
                self.reason,
                _advice(self.hint),
            )
        if self.route is RouteType.AMP_CREDITS:
            return (
                'model "%s" is not served locally; forwarding it to the Amp upstream '
                "(uses Amp credits). %s" % (self.requested, _advice(self.hint))
            )
        return None

    def error(self) -> Optional[ProxyError]:
        """The error to answer with (``NotFound`` or ``PaymentRequired``), or ``None``
        when the call can proceed."""
        if self.status is None:
            return None
        if self.status == STATUS_PAYMENT_REQUIRED:
            return PaymentRequired(self.message)
        return NotFound(self.message)


@dataclass(frozen=True)
class Router:
    """The routing table of one config snapshot; build with ``from_config``."""

    registry: ModelRegistry
    mapper: ModelMapper
    force_model_mappings: bool = False
    upstream_configured: bool = True
    paid_fallback: PaidFallback = PaidFallback.ALLOW

    @classmethod
    def from_config(cls, config: Config) -> "Router":
        """Build the registry and mapper for ``config`` once. Never raises for a valid
        ``Config``."""
        amp = config.ampcode
        return cls(
            registry=ModelRegistry.from_config(config),
            mapper=ModelMapper(amp.model_mappings),
            force_model_mappings=amp.force_model_mappings,
            upstream_configured=amp.upstream_url is not None,
            paid_fallback=amp.paid_fallback,
        )

    def decide(self, model: str, protocol: Protocol) -> RouteDecision:
        """The route for a call to ``model`` (exactly as the client sent it) from a client
        speaking ``protocol``. Never raises: refusals are decisions with a ``status``."""
        base, suffix = split_suffix(model)
        mapping = self.mapper.find(base)
        mapped = self._mapped_candidates(mapping, suffix) if mapping is not None else ()
        local = self.registry.lookup(base)

        def decision(route, candidates=(), used=None, **rest):
            return RouteDecision(route, model, base, suffix, protocol, candidates, used, **rest)

        if mapped and self.force_model_mappings:
            return decision(
                RouteType.MODEL_MAPPING, mapped, mapping,
                reason="force-model-mappings: %s %s" % (_mapping_path(mapping), _MAPS_LOCALLY),
            )
        if local:
            return decision(
                RouteType.LOCAL_PROVIDER, (Candidate(base, suffix, local),),
                reason="a local provider serves it",
            )
        if mapped:
            return decision(
                RouteType.MODEL_MAPPING, mapped, mapping,
                reason="no local provider serves it; %s %s" % (_mapping_path(mapping), _MAPS_LOCALLY),
            )
        unserved = _unserved_reason(mapping)
        hint = self._hint(base, protocol)
        if self.upstream_configured and self.paid_fallback is PaidFallback.ALLOW:
            return decision(
                RouteType.AMP_CREDITS, hint=hint,
                reason="%s; paid-fallback allows the Amp upstream" % unserved,
            )
        if self.upstream_configured:
            return decision(
                RouteType.NO_PROVIDER, hint=hint, status=STATUS_PAYMENT_REQUIRED,
                reason='%s; paid fallback denied (ampcode.paid-fallback is "deny")' % unserved,
            )
        return decision(
            RouteType.NO_PROVIDER, hint=hint, status=STATUS_NOT_FOUND,
            reason="%s; no Amp upstream is configured (offline mode)" % unserved,
        )

    def _mapped_candidates(self, mapping: ModelMapping, user_suffix) -> Tuple[Candidate, ...]:
        """The mapping's targets that a local provider serves, in ``to`` order."""
        candidates = []  # type: List[Candidate]
        for target in mapping.targets:
            target_base, target_suffix = split_suffix(target)
            served = self.registry.lookup(target_base)
            if served:
                suffix = target_suffix if target_suffix is not None else user_suffix
                candidates.append(Candidate(target_base, suffix, served))
        return tuple(candidates)

    def _hint(self, base: str, protocol: Protocol) -> str:
        target = self._suggested_target(protocol)
        if target is None:
            return (
                'no local provider is configured: add a claude-api-key, gemini-api-key, '
                'codex-api-key or openai-compatibility entry that serves "%s"' % base
            )
        return json.dumps({"from": base, "to": target})

    def _suggested_target(self, protocol: Protocol) -> Optional[str]:
        """A locally served model to map to: the first listed model whose provider speaks
        the client's protocol (no translation needed), else the first listed model, else
        a placeholder naming a default family (same preference), else ``None``."""
        models = self.registry.visible_models()
        for model in models:
            if model.protocol is protocol:
                return model.id
        if models:
            return models[0].id
        families = self.registry.families
        for rule in families:
            if rule.entry.protocol is protocol:
                return _family_placeholder(rule.patterns)
        if families:
            return _family_placeholder(families[0].patterns)
        return None


def _family_placeholder(patterns: Tuple[str, ...]) -> str:
    return "<a model matching %s>" % " or ".join(patterns)


def _mapping_path(mapping: ModelMapping) -> str:
    return "ampcode.model-mappings[%d]" % mapping.index


def _mapping_json(mapping: ModelMapping) -> str:
    entry = {"from": mapping.source}  # type: Dict[str, object]
    entry["to"] = mapping.targets[0] if len(mapping.targets) == 1 else list(mapping.targets)
    if mapping.regex:
        entry["regex"] = True
    return json.dumps(entry)


def _unserved_reason(mapping: Optional[ModelMapping]) -> str:
    if mapping is None:
        return "no local provider serves it and no model-mappings entry matches"
    return (
        "no local provider serves it and %s matches but none of its targets (%s) is served "
        "locally" % (_mapping_path(mapping), ", ".join(mapping.targets))
    )


def _advice(hint: Optional[str]) -> str:
    if hint is None:
        return ""
    if hint.startswith("{"):
        return "To serve it locally, add to ampcode.model-mappings: %s" % hint
    return hint[:1].upper() + hint[1:] + "."


def explain(decision: RouteDecision) -> str:
    """The multi-line text ``cliproxy route MODEL`` prints for ``decision``. Credentials
    are named by their config path, never by their key."""
    lines = [
        "route: %s" % decision.route.value,
        "requested: %s" % decision.requested,
        "model: %s" % decision.base,
        "resolved: %s" % decision.resolved,
        "suffix: %s" % (_describe_suffix(decision.suffix)),
        "client protocol: %s" % decision.protocol.value,
    ]
    if decision.mapping is not None:
        mapping = decision.mapping
        lines.append("mapping: %s %s" % (_mapping_path(mapping), _mapping_json(mapping)))
    for number, candidate in enumerate(decision.candidates, 1):
        lines.extend(_explain_candidate(number, candidate, decision.protocol))
    lines.extend(_explain_skipped(decision))
    if decision.route is RouteType.AMP_CREDITS:
        lines.append("upstream: forwarded as received to ampcode.upstream-url (uses Amp credits)")
    lines.append("reason: %s" % decision.reason)
    if decision.status is not None:
        lines.append("status: %d" % decision.status)
    if decision.hint is not None:
        lines.append("hint: %s" % decision.hint)
    return "\n".join(lines)


def _describe_suffix(suffix: Optional[ThinkingSuffix]) -> str:
    if suffix is None:
        return "none"
    return "(%s): %s" % (suffix.text, suffix.describe())


def _explain_candidate(number: int, candidate: Candidate, client: Protocol) -> List[str]:
    suffix = " (%s)" % candidate.suffix.describe() if candidate.suffix else ""
    lines = ["candidate %d: %s%s" % (number, candidate.resolved, suffix)]
    for served in candidate.served:
        entry = served.entry
        kind = entry.kind.value
        if entry.name and entry.name != kind:
            kind = '%s "%s"' % (kind, entry.name)
        native = entry.protocol
        translation = "none" if native is client else "%s -> %s" % (client.value, native.value)
        lines.append(
            "  credential %s: %s, native protocol %s, upstream model %s, translation %s"
            % (entry.path, kind, native.value, served.upstream_model, translation)
        )
    return lines


def _explain_skipped(decision: RouteDecision) -> List[str]:
    """The mapping's targets left out because no local provider serves them."""
    if decision.mapping is None:
        return []
    used = {candidate.model.lower() for candidate in decision.candidates}
    lines = []
    for target in decision.mapping.targets:
        if split_suffix(target)[0].lower() not in used:
            lines.append("skipped target: %s (not served by any local provider)" % target)
    return lines


def debug_fields(decision: RouteDecision) -> Dict[str, str]:
    """The routing steps behind ``decision``, for the debug log: the base model, the
    thinking suffix, the mapping, and every candidate with the credentials serving it
    (entry path, upstream model, native protocol) in the order they would be tried before
    round-robin and stickiness reorder them. No secret is among them."""
    candidates = []
    for candidate in decision.candidates:
        serving = ",".join(
            "%s:%s:%s" % (served.entry.path, served.upstream_model, served.entry.protocol.value)
            for served in candidate.served
        )
        suffix = "(%s)" % candidate.suffix.text if candidate.suffix else ""
        candidates.append("%s%s[%s]" % (candidate.model, suffix, serving))
    return {
        "requested": decision.requested,
        "base": decision.base,
        "suffix": _describe_suffix(decision.suffix),
        "client_protocol": decision.protocol.value,
        "mapping": _mapping_path(decision.mapping) if decision.mapping is not None else "none",
        "candidates": " ".join(candidates) or "none",
    }


def log_fields(decision: RouteDecision) -> Dict[str, str]:
    """The fields of the one log line per decision: ``route``, ``requested``,
    ``resolved``, ``provider`` (the first credential's provider name, or ``ampcode`` for
    AMP_CREDITS; absent for NO_PROVIDER), and ``mapping``, ``status`` and ``hint`` when
    set."""
    fields = {
        "route": decision.route.value,
        "requested": decision.requested,
        "resolved": decision.resolved,
    }
    if decision.candidates:
        fields["provider"] = decision.candidates[0].served[0].entry.name
    elif decision.route is RouteType.AMP_CREDITS:
        fields["provider"] = AMP_UPSTREAM_NAME
    if decision.mapping is not None:
        fields["mapping"] = _mapping_path(decision.mapping)
    if decision.status is not None:
        fields["status"] = str(decision.status)
    if decision.hint is not None:
        fields["hint"] = decision.hint
    return fields
