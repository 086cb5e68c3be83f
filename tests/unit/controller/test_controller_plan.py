"""The pure offer plan (SPEC 5.2 steps 5-9), as a table: one row per branch of the pass."""

from __future__ import annotations

from typing import Any

import pytest

from kube402.api import conditions as c
from kube402.api import names, v1alpha1
from kube402.controller import plan, status
from kube402.controller.settings import Settings

R = c.Reason
W = plan.Withdrawal
PAY_TO = "0x" + "12" * 20
SETTINGS = Settings(identity="test")
HEALTHY = status.UpstreamObservation.from_status(200)
UNHEALTHY = status.UpstreamObservation.from_status(503)
MISSING = status.UpstreamObservation.missing()
OWNER = ("other", "older")


def offer(**overrides: Any) -> v1alpha1.ServiceOffer:
    paused = overrides.pop("paused", False)
    kwargs: dict[str, Any] = {"namespace": "shop", "upstream": "web", "pay_to": PAY_TO, "port": 8080}
    kwargs.update(overrides)
    raw = v1alpha1.offer_manifest("demo", **kwargs)
    raw["metadata"]["uid"] = "0b5e1f7c-offer-uid"
    if paused:
        raw["metadata"].setdefault("annotations", {})[names.ANNOTATION_PAUSED] = "true"
    return v1alpha1.ServiceOffer.from_dict(raw)


def kinds(objs: tuple[dict[str, Any], ...]) -> list[str]:
    return sorted(o["kind"] for o in objs)


# (id, offer overrides, upstream, path owner, gate reason, route reason, gate kinds, route kinds, withdrawn)
CASES: list[
    tuple[str, dict[str, Any], status.UpstreamObservation, Any, str, str, list[str], list[str], set[W]]
] = [
    ("paused", {"paused": True}, HEALTHY, None, R.PAUSED, R.PAUSED, [], [], {W.GATE, W.ROUTE}),
    (
        "paused-before-invalid",
        {"paused": True, "pay_to": "nope"},
        HEALTHY,
        None,
        R.PAUSED,
        R.PAUSED,
        [],
        [],
        {W.GATE, W.ROUTE},
    ),
    (
        "invalid-spec",
        {"pay_to": "nope"},
        status.UpstreamObservation.not_probed(),
        None,
        R.INVALID_SPEC,
        R.WAITING_FOR_PAYMENT_GATE,
        [],
        [],
        {W.GATE, W.ROUTE},
    ),
    (
        "invalid-network",
        {"network": "no-such-chain"},
        HEALTHY,
        None,
        R.INVALID_NETWORK,
        R.WAITING_FOR_PAYMENT_GATE,
        [],
        [],
        {W.GATE, W.ROUTE},
    ),
    (
        "invalid-price",
        {"price": {"perRequest": "0.0000001"}},
        HEALTHY,
        None,
        R.INVALID_PRICE,
        R.WAITING_FOR_PAYMENT_GATE,
        [],
        [],
        {W.GATE, W.ROUTE},
    ),
    (
        "model-missing",
        {"type": "inference"},
        HEALTHY,
        None,
        R.WAITING_FOR_UPSTREAM,
        R.WAITING_FOR_PAYMENT_GATE,
        [],
        [],
        {W.GATE, W.ROUTE},
    ),
    (
        "upstream-unhealthy",
        {},
        UNHEALTHY,
        None,
        R.WAITING_FOR_UPSTREAM,
        R.WAITING_FOR_PAYMENT_GATE,
        [],
        [],
        {W.GATE, W.ROUTE},
    ),
    (
        "upstream-missing",
        {},
        MISSING,
        None,
        R.WAITING_FOR_UPSTREAM,
        R.WAITING_FOR_PAYMENT_GATE,
        [],
        [],
        {W.GATE, W.ROUTE},
    ),
    (
        "invalid-path",
        {"path": "/.well-known/x"},
        HEALTHY,
        None,
        R.RECONCILED,
        R.INVALID_PATH,
        ["Middleware"],
        [],
        {W.ROUTE},
    ),
    ("path-conflict", {}, HEALTHY, OWNER, R.RECONCILED, R.PATH_CONFLICT, ["Middleware"], [], {W.ROUTE}),
    ("published", {}, HEALTHY, None, R.RECONCILED, R.RECONCILED, ["Middleware"], ["HTTPRoute"], set()),
    (
        "published-inference",
        {"type": "inference", "model": {"name": "llama"}},
        HEALTHY,
        None,
        R.RECONCILED,
        R.RECONCILED,
        ["Middleware"],
        ["HTTPRoute"],
        set(),
    ),
    (
        "published-cross-namespace",
        {"upstream_namespace": "backend"},
        HEALTHY,
        None,
        R.RECONCILED,
        R.RECONCILED,
        ["Middleware"],
        ["HTTPRoute"],  # the grant is the upstream owner's to make, never the controller's
        set(),
    ),
]


@pytest.mark.parametrize(
    ("overrides", "up", "owner", "gate_reason", "route_reason", "gate_kinds", "route_kinds", "withdrawn"),
    [pytest.param(*row[1:], id=row[0]) for row in CASES],
)
def test_plan_branch(
    overrides: dict[str, Any],
    up: status.UpstreamObservation,
    owner: tuple[str, str] | None,
    gate_reason: str,
    route_reason: str,
    gate_kinds: list[str],
    route_kinds: list[str],
    withdrawn: set[plan.Withdrawal],
) -> None:
    o = offer(**overrides)
    p = plan.plan(o, up, owner, SETTINGS)
    assert p.conditions.gate.reason == gate_reason
    assert p.conditions.route.reason == route_reason
    assert p.conditions.gate.ok is (gate_reason == R.RECONCILED)
    assert p.conditions.route.ok is (route_reason == R.RECONCILED)
    assert p.conditions.model == status.model_condition(o)
    assert kinds(p.gate_objects) == gate_kinds
    assert kinds(p.route_objects) == route_kinds
    assert p.deletions == frozenset(withdrawn)
    assert p.keep == {
        (x["kind"], x["metadata"]["namespace"], x["metadata"]["name"])
        for x in p.gate_objects + p.route_objects
    }


def test_published_messages_name_the_path_and_the_owner() -> None:
    o = offer()
    assert plan.plan(o, HEALTHY, None, SETTINGS).conditions.route == status.route_ready(o.effective_path)
    conflict = plan.plan(o, HEALTHY, OWNER, SETTINGS).conditions.route
    assert conflict == status.path_conflict(o.effective_path, OWNER)


def test_proxy_mode_gate_objects_and_message() -> None:
    p = plan.plan(offer(gate_mode="proxy"), HEALTHY, None, SETTINGS)
    assert p.conditions.gate == status.gate_ready(True)
    assert kinds(p.gate_objects) == ["ReferenceGrant"]  # to the verifier's gate port in its namespace


def test_invalid_spec_joins_every_problem() -> None:
    p = plan.plan(
        offer(pay_to="nope", max_timeout_seconds=5), status.UpstreamObservation.not_probed(), None, SETTINGS
    )
    assert p.conditions.gate.message.count(";") >= 1


def test_plan_is_a_frozen_value() -> None:
    p = plan.plan(offer(), HEALTHY, None, SETTINGS)
    with pytest.raises(AttributeError):
        p.deletions = frozenset()  # type: ignore[misc]
