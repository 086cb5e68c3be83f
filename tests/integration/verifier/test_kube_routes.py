"""The verifier's live route table from a watch on ServiceOffers, against the real apiserver."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from kube402.api import v1alpha1
from kube402.controller.main import Controller
from kube402.devenv.controlplane import ControlPlane
from kube402.devenv.testing import condition, eventually
from kube402.devenv.upstream import TestUpstream
from kube402.kube import errors, resources
from kube402.kube.client import Kube
from kube402.verifier.main import Verifier

pytestmark = pytest.mark.integration
WALLET = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


async def verify(v: Verifier, path: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(
            f"http://127.0.0.1:{v.ports['verify']}/verify",
            headers={"X-Forwarded-Uri": path, "X-Forwarded-Host": "obol.stack:8080"},
        )


async def status_of(v: Verifier, path: str) -> int:
    return (await verify(v, path)).status_code


async def setup_offer(kube: Kube, ns: str, name: str, upstream: TestUpstream, **kw: Any) -> None:
    if await kube.get(resources.SERVICE, "ollama", namespace=ns) is None:
        await kube.create(
            resources.SERVICE,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "ollama", "namespace": ns},
                "spec": {"type": "ExternalName", "externalName": "localhost"},
            },
        )
    await kube.create(
        resources.SERVICE_OFFER,
        v1alpha1.offer_manifest(
            name, namespace=ns, upstream="ollama", port=upstream.port, pay_to=WALLET, **kw
        ),
    )


async def test_readyz_after_first_sync(verifier: Verifier) -> None:
    async with httpx.AsyncClient() as http:
        await eventually(
            lambda: http.get(f"http://127.0.0.1:{verifier.ports['verify']}/readyz"),
            until=lambda r: r.status_code == 200,
            timeout=20,
            what="verifier ready",
        )


async def test_published_offer_is_priced_within_a_second(
    kube: Kube,
    namespace: str,
    controller: Controller,
    verifier: Verifier,
) -> None:
    upstream = TestUpstream().start()
    try:
        name = f"{namespace}-pub"
        await setup_offer(kube, namespace, name, upstream, max_timeout_seconds=120)
        obj = await eventually(
            lambda: kube.get(resources.SERVICE_OFFER, name, namespace=namespace),
            until=lambda o: condition(o, "RoutePublished")[0] == "True",
            interval=0.01,
            timeout=20,
            what="published",
        )
        published_at = time.monotonic()
        resp = await eventually(
            lambda: verify(verifier, f"/services/{name}/v1/chat/completions?x=1"),
            until=lambda r: r.status_code == 402,
            interval=0.01,
            timeout=5,
            what="402",
        )
        assert time.monotonic() - published_at < 1.0
        import base64
        import json

        v2 = json.loads(base64.b64decode(resp.headers["payment-required"]))
        assert v2["x402Version"] == 2
        assert v2["resource"]["url"] == f"http://obol.stack:8080/services/{name}/v1/chat/completions"
        assert v2["accepts"][0]["network"] == "eip155:84532"
        assert v2["accepts"][0]["amount"] == "1000"
        assert v2["accepts"][0]["maxTimeoutSeconds"] == 120
        assert v2["resource"]["description"] == f"x402 payment-gated http service: {name}"
        assert resp.json()["accepts"][0]["maxAmountRequired"] == "1000"
        assert obj is not None and obj["status"]["endpoint"] == f"/services/{name}"
        # unmatched in kube mode is refused (issue 9, defect 6: a stale route must not be free)
        assert await status_of(verifier, f"/services/{name}x") == 403, "no /services/xy match for /services/x"
    finally:
        upstream.stop()


async def test_paused_and_unhealthy_offers_answer_503_never_200(
    kube: Kube,
    namespace: str,
    controller: Controller,
    verifier: Verifier,
) -> None:
    upstream = TestUpstream().start()
    try:
        name = f"{namespace}-p"
        await setup_offer(kube, namespace, name, upstream)
        path = f"/services/{name}/x"
        await eventually(lambda: status_of(verifier, path), until=lambda s: s == 402, timeout=20, what="402")
        await kube.merge_patch(
            resources.SERVICE_OFFER,
            name,
            namespace=namespace,
            patch={"metadata": {"annotations": {"obol.org/paused": "true"}}},
        )
        seen: set[int] = set()

        async def poll() -> int:
            s = await status_of(verifier, path)
            seen.add(s)
            return s

        await eventually(poll, until=lambda s: s == 503, timeout=10, interval=0.01, what="503 when paused")
        resp = await verify(verifier, path)
        assert resp.json()["error"] == "offer_unavailable" and resp.headers["retry-after"]
        await kube.merge_patch(
            resources.SERVICE_OFFER,
            name,
            namespace=namespace,
            patch={"metadata": {"annotations": {"obol.org/paused": None}}},
        )
        await eventually(poll, until=lambda s: s == 402, timeout=20, interval=0.01, what="402 again")
        upstream.health_status = 500
        await eventually(poll, until=lambda s: s == 503, timeout=20, interval=0.01, what="503 when unhealthy")
        assert 200 not in seen, f"a priced path answered 200 (free) during a transition: {seen}"
    finally:
        upstream.stop()


async def test_deleted_offer_route_gone_after_grace(
    kube: Kube,
    namespace: str,
    controller: Controller,
    verifier: Verifier,
) -> None:
    upstream = TestUpstream().start()
    try:
        name = f"{namespace}-del"
        await setup_offer(kube, namespace, name, upstream)
        path = f"/services/{name}"
        await eventually(lambda: status_of(verifier, path), until=lambda s: s == 402, timeout=20, what="402")
        await kube.delete(resources.SERVICE_OFFER, name, namespace=namespace)
        await eventually(
            lambda: status_of(verifier, path),
            until=lambda s: s == 503,
            timeout=10,
            interval=0.01,
            what="guarded right after deletion",
        )
        await eventually(
            lambda: status_of(verifier, path),
            until=lambda s: s == 403,  # kube mode: unmatched is refused, never free (issue 9, defect 6)
            timeout=10,
            what="unknown after the guard grace (2 s here)",
        )
    finally:
        upstream.stop()


async def test_invalid_offer_skipped_others_keep_working(
    kube: Kube,
    namespace: str,
    controller: Controller,
    verifier: Verifier,
) -> None:
    upstream = TestUpstream().start()
    try:
        good, bad = f"{namespace}-good", f"{namespace}-bad"
        await setup_offer(kube, namespace, good, upstream)
        await setup_offer(kube, namespace, bad, upstream, price={"perRequest": "0.0000001"})
        await eventually(
            lambda: status_of(verifier, f"/services/{good}"),
            until=lambda s: s == 402,
            timeout=20,
            what="good offer priced",
        )
        obj = await eventually(
            lambda: kube.get(resources.SERVICE_OFFER, bad, namespace=namespace),
            until=lambda o: condition(o, "PaymentGateReady") == ("False", "InvalidPrice"),
            timeout=20,
            what="InvalidPrice",
        )
        assert obj is not None
        assert await status_of(verifier, f"/services/{bad}") == 503
    finally:
        upstream.stop()


def reloads(verifier: Verifier, result: str) -> float:
    """How many pricing reloads the verifier has counted with ``result`` (applied / rejected)."""
    value = verifier.metrics.registry.get_sample_value(
        "obol_x402_verifier_config_reloads_total", {"result": result}
    )
    return value or 0.0


async def test_pricing_configmap_change_takes_effect_without_restart(
    kube: Kube,
    verifier: Verifier,
) -> None:
    from .conftest import PRICING

    await kube.apply(
        resources.CONFIGMAP,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "x402-pricing", "namespace": "x402"},
            "data": {"pricing.yaml": PRICING.replace("http://127.0.0.1:9", "http://127.0.0.1:4040")},
        },
    )
    await eventually(
        lambda: asyncio.sleep(0, verifier.gate.config.facilitator_url),
        until=lambda u: u == "http://127.0.0.1:4040",
        timeout=10,
        what="facilitator URL reloaded",
    )
    rejected_before = reloads(verifier, "rejected")
    await kube.apply(
        resources.CONFIGMAP,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "x402-pricing", "namespace": "x402"},
            "data": {"pricing.yaml": "chain: not-a-chain\n"},
        },
    )
    await eventually(
        lambda: asyncio.sleep(0, reloads(verifier, "rejected")),
        until=lambda n: n > rejected_before,
        timeout=10,
        what="the invalid reload rejected",
    )
    assert verifier.gate.config.facilitator_url == "http://127.0.0.1:4040", "an invalid reload is rejected"
    await kube.apply(
        resources.CONFIGMAP,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "x402-pricing", "namespace": "x402"},
            "data": {"pricing.yaml": PRICING},
        },
    )
    await eventually(
        lambda: asyncio.sleep(0, verifier.gate.config.facilitator_url),
        until=lambda u: u == "http://127.0.0.1:9",
        timeout=10,
        what="restored",
    )


async def test_survives_apiserver_restart_and_resumes_watch(
    kube: Kube,
    namespace: str,
    controller: Controller,
    verifier: Verifier,
    control_plane_handle: ControlPlane | None,
) -> None:
    if control_plane_handle is None:
        pytest.skip("needs the tests' own control plane to restart it")
    upstream = TestUpstream().start()
    try:
        a, b = f"{namespace}-ra", f"{namespace}-rb"
        await setup_offer(kube, namespace, a, upstream)
        await eventually(
            lambda: status_of(verifier, f"/services/{a}"),
            until=lambda s: s == 402,
            timeout=20,
            what="402 before restart",
        )
        relists = verifier._offers.relists if verifier._offers else 0
        restart = asyncio.create_task(control_plane_handle.restart_apiserver(down_for=3))

        async def apiserver_down() -> bool:
            try:
                await kube.get(resources.SERVICE_OFFER, a, namespace=namespace)
            except errors.Unavailable:
                return True
            print("DBG up", time.monotonic(), flush=True)
            return False

        await eventually(apiserver_down, timeout=10, interval=0.05, what="the apiserver stopped")
        assert await status_of(verifier, f"/services/{a}") == 402, (
            "last table keeps serving during the outage"
        )
        await restart
        await setup_offer(kube, namespace, b, upstream)
        await eventually(
            lambda: status_of(verifier, f"/services/{b}"),
            until=lambda s: s == 402,
            timeout=30,
            what="a new offer is priced after the restart (watch resumed)",
        )
        await kube.delete(resources.SERVICE_OFFER, a, namespace=namespace)
        await eventually(
            lambda: status_of(verifier, f"/services/{a}"),
            until=lambda s: s == 403,  # kube mode: unmatched is refused (issue 9, defect 6)
            timeout=30,
            what="a deletion after the restart is seen",
        )
        print("offer informer lists:", relists, "→", verifier._offers.relists if verifier._offers else 0)
    finally:
        upstream.stop()
