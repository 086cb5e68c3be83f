"""What one offer pass should converge to (SPEC 5.2 steps 5-9). Pure: no I/O, no clock, no cache reads.

:func:`plan` takes the offer and what the pass observed (the upstream's health, the older offer owning the
path, if any) and returns the children to publish, what is withdrawn and the conditions those steps set.
:mod:`kube402.controller.reconcile` reads the caches, calls it, applies the result and writes the status.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from kube402.api import chains, money, v1alpha1, validation
from kube402.api import conditions as c
from kube402.controller import render, status
from kube402.controller.settings import Settings

__all__ = ["ChildKey", "Plan", "PlannedConditions", "Withdrawal", "plan"]

R = c.Reason
ChildKey = tuple[str, str, str]
"""(kind, namespace, name) of a child object."""


class Withdrawal(enum.StrEnum):
    """A part of the offer's publication that this pass takes down (SPEC 5.2 steps 8 and 9)."""

    GATE = "gate"
    ROUTE = "route"


@dataclasses.dataclass(frozen=True, slots=True)
class PlannedConditions:
    """The conditions the planning steps decide; RoutePublished may still be refined after the apply."""

    model: status.CondValue
    gate: status.CondValue
    route: status.CondValue


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    gate_objects: tuple[dict[str, Any], ...]
    """Published before the route (SPEC 4.3 / 4.5)."""
    route_objects: tuple[dict[str, Any], ...]
    """Published only once the gate is applied (SPEC 4.4)."""
    deletions: frozenset[Withdrawal]
    """Parts withdrawn: every observed child outside :attr:`keep` is deleted, route before gate."""
    conditions: PlannedConditions

    @property
    def keep(self) -> frozenset[ChildKey]:
        return frozenset(render.child_key(o) for o in (*self.gate_objects, *self.route_objects))


def _payment_problem(offer: v1alpha1.ServiceOffer) -> status.CondValue | None:
    """PaymentGateReady for an unknown network or a price the chain's token cannot charge (SPEC 8)."""
    try:
        chain = chains.lookup(offer.payment.network)
    except chains.UnknownNetworkError as err:
        return status.CondValue(False, R.INVALID_NETWORK, str(err))
    try:
        money.per_request_charge(offer.payment.price, decimals=chain.decimals)
    except money.InvalidPriceError as err:
        return status.CondValue(False, R.INVALID_PRICE, str(err))
    return None


def _withdrawn(model: status.CondValue, gate: status.CondValue, route: status.CondValue) -> Plan:
    return Plan((), (), frozenset(Withdrawal), PlannedConditions(model, gate, route))


def plan(
    offer: v1alpha1.ServiceOffer,
    upstream: status.UpstreamObservation,
    path_owner: tuple[str, str] | None,
    settings: Settings,
) -> Plan:
    """The desired children and conditions of ``offer`` (SPEC 5.2 steps 5-9).

    ``path_owner`` is the offer that already publishes this offer's path (older, or another namespace's
    prefix of it), or None; it is only consulted once the gate is servable and the path valid.
    """
    model = status.model_condition(offer)
    if offer.paused:
        return _withdrawn(model, status.PAUSED, status.PAUSED)
    problems = validation.spec_problems(offer)
    if problems:
        return _withdrawn(
            model, status.CondValue(False, R.INVALID_SPEC, "; ".join(problems)), status.WAITING_FOR_GATE
        )
    payment = _payment_problem(offer)
    if payment is not None:
        return _withdrawn(model, payment, status.WAITING_FOR_GATE)
    if not (model.ok and upstream.healthy):
        return _withdrawn(model, status.WAITING_FOR_UPSTREAM, status.WAITING_FOR_GATE)
    proxy = offer.effective_gate_mode(settings.default_gate_mode) == v1alpha1.GateMode.PROXY
    gate = status.gate_ready(proxy)
    gate_objects = tuple(render.gate_objects(offer, settings=settings))
    path_error = validation.path_problem(offer.path)
    route: status.CondValue
    if path_error:
        route = status.CondValue(False, R.INVALID_PATH, path_error)
    elif path_owner is not None:
        route = status.path_conflict(offer.effective_path, path_owner)
    else:
        route_objects = tuple(render.route_objects(offer, settings=settings))
        conditions = PlannedConditions(model, gate, status.route_ready(offer.effective_path))
        return Plan(gate_objects, route_objects, frozenset(), conditions)
    return Plan(gate_objects, (), frozenset({Withdrawal.ROUTE}), PlannedConditions(model, gate, route))
