"""The offer's condition set, computed from the offer and what the reconcile observed. Pure.

Each ``*_condition`` returns a :class:`CondValue` (status, reason, message) exactly as SPEC section 3.1 words
them; :func:`build` assembles the ordered list with API-convention lastTransitionTime semantics and the Ready
summary.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from typing import Any

from kube402.api import conditions as c
from kube402.api import v1alpha1

__all__ = [
    "CondValue",
    "EventReason",
    "Observed",
    "UpstreamObservation",
    "build",
    "model_condition",
    "route_acceptance",
    "status_changed",
]


@dataclasses.dataclass(frozen=True, slots=True)
class CondValue:
    """One condition's value as a pass decides it: status (True/False), reason, message."""

    ok: bool
    reason: c.Reason | str
    message: str

    def astuple(self) -> tuple[bool, c.Reason | str, str]:
        return (self.ok, self.reason, self.message)


R = c.Reason


class EventReason(enum.StrEnum):
    """Reasons of the Kubernetes Events the controller emits on a ServiceOffer (besides condition reasons)."""

    PAUSED = "Paused"
    RESUMED = "Resumed"
    PUBLISHED = "Published"
    WITHDRAWN = "Withdrawn"
    REGISTERED = "Registered"
    REGISTRATION_SUBMITTED = "RegistrationSubmitted"


REGISTRATION_UNAVAILABLE = "ERC-8004 registration is not available in this build of kube402"


@dataclasses.dataclass(frozen=True, slots=True)
class UpstreamObservation:
    healthy: bool
    reason: c.Reason
    message: str

    @classmethod
    def missing(cls) -> UpstreamObservation:
        return cls(False, R.MISSING_SERVICE, "Upstream Service does not exist")

    @classmethod
    def from_status(cls, code: int) -> UpstreamObservation:
        if code >= 500:
            return cls(False, R.UNHEALTHY, f"HTTP {code} from upstream")
        return cls(True, R.HEALTHY, f"Upstream responded with HTTP {code}")

    @classmethod
    def transport_error(cls, text: str) -> UpstreamObservation:
        return cls(False, R.UNHEALTHY, (text or "upstream unreachable")[:256])

    @classmethod
    def not_permitted(cls, namespace: str, service: str, offer_namespace: str) -> UpstreamObservation:
        return cls(
            False,
            R.UPSTREAM_NOT_PERMITTED,
            f"Service {namespace}/{service} may not be sold from namespace {offer_namespace}: no "
            f"ReferenceGrant in {namespace} allows HTTPRoutes of {offer_namespace} to reach it",
        )

    @classmethod
    def not_probed(cls) -> UpstreamObservation:
        return cls(False, R.UNHEALTHY, "Upstream not probed: the offer's spec is invalid")


@dataclasses.dataclass(frozen=True, slots=True)
class Observed:
    model: CondValue
    upstream: UpstreamObservation
    gate: CondValue
    route: CondValue
    registered: CondValue
    agent: tuple[str, str] | None = None
    """(agentId, registrationTxHash) from the RegistrationRequest; None keeps the offer's (issue 12)."""


def model_condition(offer: v1alpha1.ServiceOffer) -> CondValue:
    if offer.effective_type != v1alpha1.OfferType.INFERENCE:
        return CondValue(True, R.SKIPPED, "HTTP offer does not require model preparation")
    if offer.model is None or not offer.model.name:
        return CondValue(False, R.MISSING_MODEL, "Inference offer is missing spec.model.name")
    return CondValue(True, R.DECLARED, f"Model {offer.model.name} declared")


def registered_condition(offer: v1alpha1.ServiceOffer) -> CondValue:
    if not offer.registration.enabled:
        return CondValue(True, R.DISABLED, "Registration disabled")
    return CondValue(False, R.PENDING, REGISTRATION_UNAVAILABLE)


PAUSED = CondValue(False, R.PAUSED, "Offer is paused")
WAITING_FOR_UPSTREAM = CondValue(
    False,
    R.WAITING_FOR_UPSTREAM,
    "Waiting for upstream health before publishing payment gate",
)
WAITING_FOR_GATE = CondValue(
    False,
    R.WAITING_FOR_PAYMENT_GATE,
    "Waiting for payment gate before publishing route",
)


def gate_ready(proxy: bool) -> CondValue:
    return CondValue(True, R.RECONCILED, "Proxy gate is present" if proxy else "Middleware is present")


def route_ready(path: str) -> CondValue:
    return CondValue(True, R.RECONCILED, f"HTTPRoute published at {path}")


def waiting_for_ingress(route_name: str) -> CondValue:
    return CondValue(
        False, R.WAITING_FOR_INGRESS, f"Waiting for the ingress to accept HTTPRoute {route_name}"
    )


def route_acceptance(
    route: Mapping[str, Any] | None,
    *,
    gateway: tuple[str, str, str],
    path: str,
    route_name: str,
) -> CondValue:
    """RoutePublished from the HTTPRoute's status as the Gateway controller wrote it for our parent.

    ``gateway`` is (namespace, name, sectionName or ""). True only when that parent's ``Accepted`` and
    ``ResolvedRefs`` are both True for the route's current generation; a False one is reported with the
    ingress's own reason and message; no (current) verdict yet → ``WaitingForIngress``.
    """
    if route is None:
        return waiting_for_ingress(route_name)
    meta = route.get("metadata") or {}
    generation = int(meta.get("generation") or 0)
    ns = str(meta.get("namespace", ""))
    gw_ns, gw_name, section = gateway
    for parent in (route.get("status") or {}).get("parents") or []:
        ref = parent.get("parentRef") or {}
        if ref.get("name") != gw_name or (ref.get("namespace") or ns) != gw_ns:
            continue
        if section and (ref.get("sectionName") or "") not in ("", section):
            continue
        conds = {x.get("type"): x for x in parent.get("conditions") or []}
        verdict: list[Mapping[str, Any]] = [conds[t] for t in ("Accepted", "ResolvedRefs") if t in conds]
        if len(verdict) < 2 or any(int(x.get("observedGeneration") or 0) < generation for x in verdict):
            return waiting_for_ingress(route_name)
        for x in verdict:
            if x.get("status") != c.Status.TRUE:
                reason = str(x.get("reason") or x.get("type"))
                text = str(x.get("message") or "").strip()
                message = f"Ingress reports {x.get('type')}=False for HTTPRoute {route_name}: {reason}"
                return CondValue(False, reason, f"{message}: {text}"[:1024] if text else message)
        return route_ready(path)
    return waiting_for_ingress(route_name)


def path_conflict(path: str, owner: tuple[str, str]) -> CondValue:
    return CondValue(False, R.PATH_CONFLICT, f"Path {path} is already published by {owner[0]}/{owner[1]}")


def build(
    offer: v1alpha1.ServiceOffer,
    observed: Observed,
    *,
    now: dt.datetime,
) -> dict[str, Any]:
    """The complete desired ``status`` (conditions in SPEC order, observedGeneration, endpoint, agent fields)."""
    current = c.from_raw(offer.conditions_raw)
    conds = [x for x in current if x.type in {t.value for t in c.ConditionType}]
    values: list[tuple[c.ConditionType, CondValue]] = [
        (c.ConditionType.MODEL_READY, observed.model),
        (
            c.ConditionType.UPSTREAM_HEALTHY,
            CondValue(observed.upstream.healthy, observed.upstream.reason, observed.upstream.message),
        ),
        (c.ConditionType.PAYMENT_GATE_READY, observed.gate),
        (c.ConditionType.ROUTE_PUBLISHED, observed.route),
        (c.ConditionType.REGISTERED, observed.registered),
    ]
    for ctype, v in values:
        conds = c.set_condition(conds, type=ctype, status=v.ok, reason=v.reason, message=v.message, now=now)
    all_ok = all(v[1].ok for v in values)
    conds = c.set_condition(
        conds,
        type=c.ConditionType.READY,
        status=all_ok,
        reason=R.RECONCILED if all_ok else R.RECONCILING,
        message="Offer reconciled successfully" if all_ok else "Offer is not fully reconciled yet",
        now=now,
    )
    status: dict[str, Any] = {
        "conditions": c.to_raw(conds),
        "endpoint": offer.effective_path,
        "observedGeneration": offer.metadata.generation,
    }
    agent = observed.agent or (offer.status.get("agentId"), offer.status.get("registrationTxHash"))
    for field, value in zip(("agentId", "registrationTxHash"), agent, strict=True):
        if isinstance(value, str) and value:
            status[field] = value
    return status


def status_changed(current: dict[str, Any] | Any, desired: dict[str, Any]) -> bool:
    """Semantic comparison (conditions by type/status/reason/message, plus the scalar fields)."""
    cur = current if isinstance(current, dict) else {}
    if not c.semantically_equal(c.from_raw(cur.get("conditions")), c.from_raw(desired.get("conditions"))):
        return True
    for field in ("endpoint", "observedGeneration", "agentId", "registrationTxHash"):
        if cur.get(field) != desired.get(field):
            return True
    return False


def is_true(conds: Sequence[c.Condition], ctype: c.ConditionType) -> bool:
    cond = c.find(conds, ctype.value)
    return cond is not None and cond.is_true
