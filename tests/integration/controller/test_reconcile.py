"""The controller against the real apiserver: publish, update, pause, health flaps, deletion, bad offers."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from kube402.api import v1alpha1
from kube402.controller.main import Controller
from kube402.devenv import golden
from kube402.devenv.testing import condition, conditions, eventually
from kube402.devenv.upstream import TestUpstream
from kube402.kube import resources
from kube402.kube.client import Kube

from .conftest import external_service

pytestmark = pytest.mark.integration

WALLET = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
GOLDEN = Path(__file__).parents[2] / "golden"


def offer(name: str, ns: str, port: int, **kw: Any) -> dict[str, Any]:
    return v1alpha1.offer_manifest(name, namespace=ns, upstream="ollama", port=port, pay_to=WALLET, **kw)


async def get_offer(kube: Kube, ns: str, name: str) -> dict[str, Any] | None:
    return await kube.get(resources.SERVICE_OFFER, name, namespace=ns)


async def wait_condition(
    kube: Kube, ns: str, name: str, ctype: str, want: tuple[str, str], timeout: float = 15
) -> dict[str, Any]:
    obj = await eventually(
        lambda: get_offer(kube, ns, name),
        until=lambda o: condition(o, ctype) == want,
        timeout=timeout,
        what=f"{ns}/{name} {ctype}={want}",
    )
    assert obj is not None
    return obj


async def children(kube: Kube, ns: str, name: str) -> tuple[Any, Any]:
    return (
        await kube.get(resources.MIDDLEWARE, f"x402-{name}", namespace=ns),
        await kube.get(resources.HTTPROUTE, f"so-{name}", namespace=ns),
    )


async def test_create_publishes_gate_and_route(
    kube: Kube,
    namespace: str,
    controller: Controller,
    upstream: TestUpstream,
    request: pytest.FixtureRequest,
) -> None:
    await external_service(kube, namespace)
    await kube.create(resources.SERVICE_OFFER, offer("flow-qwen", namespace, upstream.port))
    obj = await wait_condition(kube, namespace, "flow-qwen", "Ready", ("True", "Reconciled"))
    assert obj["metadata"]["finalizers"] == ["monetize.obol.org/finalizer"]
    conds = conditions(obj)
    assert list(conds) == [
        "ModelReady",
        "UpstreamHealthy",
        "PaymentGateReady",
        "RoutePublished",
        "Registered",
        "Ready",
    ]
    assert [(c["status"], c["reason"], c["message"]) for c in conds.values()] == [
        ("True", "Skipped", "HTTP offer does not require model preparation"),
        ("True", "Healthy", "Upstream responded with HTTP 200"),
        ("True", "Reconciled", "Middleware is present"),
        ("True", "Reconciled", "HTTPRoute published at /services/flow-qwen"),
        ("True", "Disabled", "Registration disabled"),
        ("True", "Reconciled", "Offer reconciled successfully"),
    ]
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert obj["status"]["endpoint"] == "/services/flow-qwen"
    mw, route = await children(kube, namespace, "flow-qwen")
    update = request.config.getoption("--update-golden")
    golden.check(GOLDEN / "server-middleware.yaml", golden.normalize(mw, namespace=namespace), update=update)
    route_view = golden.normalize(route, namespace=namespace)
    assert route_view["spec"]["rules"][0]["backendRefs"][0]["port"] == upstream.port
    route_view["spec"]["rules"][0]["backendRefs"][0]["port"] = "<upstream-port>"
    golden.check(GOLDEN / "server-httproute.yaml", route_view, update=update)
    assert route["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]


async def test_second_pass_writes_nothing(
    kube: Kube,
    namespace: str,
    controller: Controller,
    upstream: TestUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await external_service(kube, namespace)
    await kube.create(resources.SERVICE_OFFER, offer("idle", namespace, upstream.port))
    obj = await wait_condition(kube, namespace, "idle", "Ready", ("True", "Reconciled"))
    mw, route = await children(kube, namespace, "idle")
    # Three more passes over this offer (requeued every 2 s when Ready in these tests) rewrite nothing.
    caplog.set_level(logging.DEBUG, logger="kube402.controller.main")
    caplog.clear()

    def passes() -> int:
        return sum(1 for r in caplog.records if r.getMessage().startswith(f"reconciled {namespace}/idle;"))

    await eventually(lambda: asyncio.sleep(0, passes()), until=lambda n: n >= 3, timeout=30, what="3 passes")
    obj2 = await get_offer(kube, namespace, "idle")
    mw2, route2 = await children(kube, namespace, "idle")
    assert obj2 is not None
    assert obj2["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
    assert mw2["metadata"]["resourceVersion"] == mw["metadata"]["resourceVersion"]
    assert route2["metadata"]["resourceVersion"] == route["metadata"]["resourceVersion"]


async def test_update_price_path_port_updates_children_in_place(
    kube: Kube, namespace: str, controller: Controller, upstream: TestUpstream
) -> None:
    await external_service(kube, namespace)
    await kube.create(resources.SERVICE_OFFER, offer("svc", namespace, upstream.port))
    await wait_condition(kube, namespace, "svc", "Ready", ("True", "Reconciled"))
    _, route = await children(kube, namespace, "svc")
    other = TestUpstream().start()
    try:
        await kube.merge_patch(
            resources.SERVICE_OFFER,
            "svc",
            namespace=namespace,
            patch={
                "spec": {
                    "path": "/paid/svc",
                    "upstream": {"port": other.port},
                    "payment": {"price": {"perRequest": "0.002"}, "maxTimeoutSeconds": 600},
                }
            },
        )

        async def route_now() -> Any:
            return await kube.get(resources.HTTPROUTE, "so-svc", namespace=namespace)

        new = await eventually(
            route_now,
            until=lambda r: r["spec"]["rules"][0]["matches"][0]["path"]["value"] == "/paid/svc",
            what="route path updated",
        )
        assert new["metadata"]["uid"] == route["metadata"]["uid"], "updated in place, not recreated"
        assert new["spec"]["rules"][0]["backendRefs"][0]["port"] == other.port
        assert new["spec"]["rules"][0]["timeouts"]["request"] == "720s"
        await wait_condition(kube, namespace, "svc", "RoutePublished", ("True", "Reconciled"))
        settled = await eventually(
            lambda: get_offer(kube, namespace, "svc"),
            until=lambda o: (
                o is not None and o["status"]["observedGeneration"] == o["metadata"]["generation"]
            ),
        )
        assert settled is not None and settled["status"]["endpoint"] == "/paid/svc"
    finally:
        other.stop()


async def test_pause_withdraws_and_resume_republishes(
    kube: Kube, namespace: str, controller: Controller, upstream: TestUpstream
) -> None:
    await external_service(kube, namespace)
    await kube.create(resources.SERVICE_OFFER, offer("p", namespace, upstream.port))
    await wait_condition(kube, namespace, "p", "Ready", ("True", "Reconciled"))
    await kube.merge_patch(
        resources.SERVICE_OFFER,
        "p",
        namespace=namespace,
        patch={"metadata": {"annotations": {"obol.org/paused": " TRUE "}}},
    )
    obj = await wait_condition(kube, namespace, "p", "RoutePublished", ("False", "Paused"))
    assert condition(obj, "PaymentGateReady") == ("False", "Paused")
    assert condition(obj, "Ready") == ("False", "Reconciling")
    assert await children(kube, namespace, "p") == (None, None)
    await kube.merge_patch(
        resources.SERVICE_OFFER,
        "p",
        namespace=namespace,
        patch={"metadata": {"annotations": {"obol.org/paused": None}}},
    )
    await wait_condition(kube, namespace, "p", "Ready", ("True", "Reconciled"))
    mw, route = await children(kube, namespace, "p")
    assert mw is not None and route is not None


async def test_unhealthy_upstream_withdraws_route_and_recovers_without_edit(
    kube: Kube, namespace: str, controller: Controller, upstream: TestUpstream
) -> None:
    await external_service(kube, namespace)
    await kube.create(resources.SERVICE_OFFER, offer("flap", namespace, upstream.port))
    await wait_condition(kube, namespace, "flap", "Ready", ("True", "Reconciled"))
    upstream.stop()
    obj = await wait_condition(kube, namespace, "flap", "UpstreamHealthy", ("False", "Unhealthy"))
    assert condition(obj, "RoutePublished") == ("False", "WaitingForPaymentGate")
    assert condition(obj, "PaymentGateReady") == ("False", "WaitingForUpstream")
    assert await children(kube, namespace, "flap") == (None, None), "route withdrawn in the same pass"
    upstream.start()
    await wait_condition(kube, namespace, "flap", "Ready", ("True", "Reconciled"))
    # A 500 from the health path also withdraws.
    upstream.health_status = 500
    obj = await wait_condition(kube, namespace, "flap", "UpstreamHealthy", ("False", "Unhealthy"))
    assert conditions(obj)["UpstreamHealthy"]["message"] == "HTTP 500 from upstream"
    assert await children(kube, namespace, "flap") == (None, None)
    upstream.health_status = 404  # < 500 counts as healthy
    await wait_condition(kube, namespace, "flap", "Ready", ("True", "Reconciled"))


async def test_missing_service_and_invalid_offer_do_not_block_a_healthy_one(
    kube: Kube, namespace: str, controller: Controller, upstream: TestUpstream
) -> None:
    await kube.create(
        resources.SERVICE_OFFER,
        v1alpha1.offer_manifest(
            "nosvc", namespace=namespace, upstream="absent", port=upstream.port, pay_to=WALLET
        ),
    )
    await kube.create(resources.SERVICE_OFFER, offer("nomodel", namespace, upstream.port, type="inference"))
    await kube.create(
        resources.SERVICE_OFFER,
        offer("badprice", namespace, upstream.port, price={"perRequest": "0.0000001"}),
    )
    await kube.create(resources.SERVICE_OFFER, offer("badnet", namespace, upstream.port, network="solana"))
    await kube.create(
        resources.SERVICE_OFFER, offer("epoch", namespace, upstream.port, price={"perEpoch": "1"})
    )
    await external_service(kube, namespace)
    await kube.create(resources.SERVICE_OFFER, offer("good", namespace, upstream.port))
    await wait_condition(kube, namespace, "good", "Ready", ("True", "Reconciled"))
    obj = await wait_condition(kube, namespace, "nosvc", "UpstreamHealthy", ("False", "MissingService"))
    assert conditions(obj)["UpstreamHealthy"]["message"] == "Upstream Service does not exist"
    obj = await wait_condition(kube, namespace, "nomodel", "ModelReady", ("False", "MissingModel"))
    assert condition(obj, "RoutePublished") == ("False", "WaitingForPaymentGate")
    obj = await wait_condition(kube, namespace, "badprice", "PaymentGateReady", ("False", "InvalidPrice"))
    assert (
        conditions(obj)["PaymentGateReady"]["message"]
        == "perRequest 0.0000001 has more than 6 decimal places"
    )
    obj = await wait_condition(kube, namespace, "badnet", "PaymentGateReady", ("False", "InvalidNetwork"))
    assert conditions(obj)["PaymentGateReady"]["message"] == "Unsupported payment network solana"
    obj = await wait_condition(kube, namespace, "epoch", "PaymentGateReady", ("False", "InvalidPrice"))
    assert "perEpoch" in conditions(obj)["PaymentGateReady"]["message"]
    for name in ("nosvc", "nomodel", "badprice", "badnet", "epoch"):
        assert await children(kube, namespace, name) == (None, None)


async def test_registration_enabled_waits_for_the_document_workload(
    kube: Kube, namespace: str, controller: Controller, upstream: TestUpstream
) -> None:
    # issue 12: this package's controller runs the default --registration-readiness=strict on a control plane
    # without kubelets, so the document Deployment never becomes available (tests/integration/registration
    # covers registration itself).
    await external_service(kube, namespace)
    await kube.create(
        resources.SERVICE_OFFER, offer("reg", namespace, upstream.port, registration={"enabled": True})
    )
    obj = await wait_condition(kube, namespace, "reg", "RoutePublished", ("True", "Reconciled"))
    obj = await wait_condition(kube, namespace, "reg", "Registered", ("False", "Publishing"))
    assert conditions(obj)["Registered"]["message"] == "Waiting for registration Deployment availability"
    assert condition(obj, "Ready") == ("False", "Reconciling")


async def test_delete_removes_children_then_finalizer(
    kube: Kube, namespace: str, controller: Controller, upstream: TestUpstream
) -> None:
    await external_service(kube, namespace)
    await kube.create(resources.SERVICE_OFFER, offer("gone", namespace, upstream.port))
    await wait_condition(kube, namespace, "gone", "Ready", ("True", "Reconciled"))
    await kube.delete(resources.SERVICE_OFFER, "gone", namespace=namespace)
    await eventually(
        lambda: get_offer(kube, namespace, "gone"), until=lambda o: o is None, what="offer deleted"
    )
    assert await children(kube, namespace, "gone") == (None, None)


async def test_manual_child_deletion_is_repaired(
    kube: Kube, namespace: str, controller: Controller, upstream: TestUpstream
) -> None:
    await external_service(kube, namespace)
    await kube.create(resources.SERVICE_OFFER, offer("heal", namespace, upstream.port))
    await wait_condition(kube, namespace, "heal", "Ready", ("True", "Reconciled"))
    await kube.delete(resources.HTTPROUTE, "so-heal", namespace=namespace)
    await eventually(
        lambda: kube.get(resources.HTTPROUTE, "so-heal", namespace=namespace),
        until=lambda r: r is not None,
        what="route recreated",
    )


async def test_path_conflict_older_offer_wins(
    kube: Kube, namespace: str, controller: Controller, upstream: TestUpstream
) -> None:
    await external_service(kube, namespace)
    await kube.create(resources.SERVICE_OFFER, offer("first", namespace, upstream.port, path="/shared"))
    await wait_condition(kube, namespace, "first", "Ready", ("True", "Reconciled"))
    import asyncio

    await asyncio.sleep(1.1)  # creationTimestamp has second precision
    await kube.create(resources.SERVICE_OFFER, offer("second", namespace, upstream.port, path="/shared/"))
    obj = await wait_condition(kube, namespace, "second", "RoutePublished", ("False", "PathConflict"))
    assert conditions(obj)["RoutePublished"]["message"] == (
        f"Path /shared is already published by {namespace}/first"
    )
    await kube.delete(resources.SERVICE_OFFER, "first", namespace=namespace)
    await wait_condition(kube, namespace, "second", "Ready", ("True", "Reconciled"))


async def test_defect7_a_prefix_owned_by_another_namespace_is_refused(
    kube: Kube, namespace: str, controller: Controller, upstream: TestUpstream
) -> None:
    """Issue 9, defect 7 (path hijack): an offer of another namespace under a published prefix would capture
    the victim's traffic by longest prefix; it is refused with PathConflict."""
    other = namespace + "-hj"
    await kube.create(
        resources.NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}}
    )
    try:
        await external_service(kube, namespace)
        await external_service(kube, other)
        await kube.create(
            resources.SERVICE_OFFER, offer("victim", namespace, upstream.port, path="/svc/victim")
        )
        await wait_condition(kube, namespace, "victim", "Ready", ("True", "Reconciled"))
        await kube.create(
            resources.SERVICE_OFFER, offer("thief", other, upstream.port, path="/svc/victim/v1")
        )
        obj = await wait_condition(kube, other, "thief", "RoutePublished", ("False", "PathConflict"))
        assert conditions(obj)["RoutePublished"]["message"] == (
            f"Path /svc/victim/v1 is already published by {namespace}/victim"
        )
        assert await kube.get(resources.HTTPROUTE, "so-thief", namespace=other) is None
        # the same namespace may nest its own offers
        await kube.create(
            resources.SERVICE_OFFER, offer("own", namespace, upstream.port, path="/svc/victim/v2")
        )
        await wait_condition(kube, namespace, "own", "Ready", ("True", "Reconciled"))
    finally:
        await kube.delete(resources.NAMESPACE, other)


async def test_defect7_cross_namespace_upstream_needs_the_owners_reference_grant(
    kube: Kube, namespace: str, controller: Controller, upstream: TestUpstream
) -> None:
    """Issue 9, defect 7 (confused deputy): selling another namespace's Service needs a ReferenceGrant made
    by that namespace's owner; the controller checks for it and never creates one."""
    other = namespace + "-up"
    await kube.create(
        resources.NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}}
    )
    try:
        await external_service(kube, other)
        await kube.create(
            resources.SERVICE_OFFER, offer("xns", namespace, upstream.port, upstream_namespace=other)
        )
        obj = await wait_condition(
            kube, namespace, "xns", "UpstreamHealthy", ("False", "UpstreamNotPermitted")
        )
        assert conditions(obj)["RoutePublished"]["status"] == "False"
        assert await kube.get(resources.HTTPROUTE, "so-xns", namespace=namespace) is None
        assert (await kube.list(resources.REFERENCEGRANT, namespace=other))[0] == []  # none created for it
        # the upstream namespace's owner consents
        await kube.create(
            resources.REFERENCEGRANT,
            {
                "apiVersion": "gateway.networking.k8s.io/v1beta1",
                "kind": "ReferenceGrant",
                "metadata": {"name": "allow-sellers", "namespace": other},
                "spec": {
                    "from": [
                        {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": namespace}
                    ],
                    "to": [{"group": "", "kind": "Service", "name": "ollama"}],
                },
            },
        )
        await wait_condition(kube, namespace, "xns", "Ready", ("True", "Reconciled"))
        grants, _ = await kube.list(resources.REFERENCEGRANT, namespace=other)
        assert [g["metadata"]["name"] for g in grants] == ["allow-sellers"]
        # consent withdrawn → the offer is withdrawn
        await kube.delete(resources.REFERENCEGRANT, "allow-sellers", namespace=other)
        await wait_condition(kube, namespace, "xns", "UpstreamHealthy", ("False", "UpstreamNotPermitted"))
        await eventually(
            lambda: kube.get(resources.HTTPROUTE, "so-xns", namespace=namespace),
            until=lambda r: r is None,
            what="route withdrawn",
        )
    finally:
        await kube.delete(resources.NAMESPACE, other)


async def test_proxy_mode_routes_to_verifier(
    kube: Kube, namespace: str, controller: Controller, upstream: TestUpstream
) -> None:
    await external_service(kube, namespace)
    await kube.create(resources.SERVICE_OFFER, offer("px", namespace, upstream.port, gate_mode="proxy"))
    obj = await wait_condition(kube, namespace, "px", "Ready", ("True", "Reconciled"))
    assert conditions(obj)["PaymentGateReady"]["message"] == "Proxy gate is present"
    mw, route = await children(kube, namespace, "px")
    assert mw is None
    rule = route["spec"]["rules"][0]
    assert "filters" not in rule
    assert rule["backendRefs"][0]["name"] == "x402-verifier"
    assert rule["backendRefs"][0]["namespace"] == "x402"
    assert rule["backendRefs"][0]["port"] == 8081
    grant = await kube.get(resources.REFERENCEGRANT, f"so-{namespace}.px-backend-grant", namespace="x402")
    assert grant is not None and grant["spec"]["to"][0]["name"] == "x402-verifier"
    # Switching the mode deletes the other mode's objects in the same pass.
    await kube.merge_patch(
        resources.SERVICE_OFFER, "px", namespace=namespace, patch={"spec": {"gateMode": "forwardAuth"}}
    )
    await eventually(
        lambda: children(kube, namespace, "px"),
        until=lambda c: c[0] is not None and "filters" in c[1]["spec"]["rules"][0],
        what="forwardAuth objects",
    )
    await eventually(
        lambda: kube.get(resources.REFERENCEGRANT, f"so-{namespace}.px-backend-grant", namespace="x402"),
        until=lambda g: g is None,
        what="proxy grant gone",
    )
