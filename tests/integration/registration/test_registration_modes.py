"""Registration modes and chain trouble on the real control plane and anvil (in-process controllers)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from kube402.chain import devchain, rpc
from kube402.chain import registry as chain_registry
from kube402.controller import documents
from kube402.devenv.controlplane import ControlPlaneInfo
from kube402.devenv.testing import condition, eventually
from kube402.devenv.upstream import TestUpstream
from kube402.kube import resources
from kube402.kube.client import Kube
from tests.support.controller import running

from .conftest import (
    PUBLISHED,
    REGISTRY,
    RpcProxy,
    delete_offers,
    make_offer,
    registered_logs,
    rr,
    settings,
    wait_phase,
)

pytestmark = pytest.mark.integration


async def offer(kube: Kube, ns: str, name: str) -> dict[str, Any] | None:
    return await kube.get(resources.SERVICE_OFFER, name, namespace=ns)


async def wait_ready(kube: Kube, ns: str, name: str, wait_s: float = 30) -> dict[str, Any]:
    got = await eventually(
        lambda: offer(kube, ns, name),
        until=lambda o: condition(o, "Ready") == ("True", "Reconciled"),
        timeout=wait_s,
        what=f"{name} Ready",
    )
    assert got is not None
    return got


async def test_no_key_is_off_chain_only_and_ready(
    kube: Kube, namespace: str, control_plane: ControlPlaneInfo, upstream: TestUpstream
) -> None:
    async with running(control_plane, settings("http://127.0.0.1:9")):
        await make_offer(kube, namespace, "nokey", upstream)
        o = await wait_ready(kube, namespace, "nokey")
        assert condition(o, "Registered") == ("True", "OffChainOnly")
        got = await rr(kube, namespace, "nokey")
        assert got is not None and got["status"]["publishedUrl"] == PUBLISHED
        cm = await kube.get(resources.CONFIGMAP, "so-nokey-registration", namespace=namespace)
        assert cm is not None
        doc = cm["data"][documents.DOCUMENT_KEY]
        assert '"registrations"' not in doc and doc.startswith('{\n  "type": ')
        await delete_offers(kube, namespace)


async def test_keyless_waits_for_external_registration(
    kube: Kube,
    namespace: str,
    control_plane: ControlPlaneInfo,
    upstream: TestUpstream,
    dev_chain: devchain.DevChainInfo,
    reg: chain_registry.IdentityRegistry,
    key: Any,
) -> None:
    async with running(control_plane, settings(dev_chain.rpc_url, registrant=key.address)):
        await make_offer(kube, namespace, "keyless", upstream)
        waiting = await wait_phase(kube, namespace, "keyless", "AwaitingExternalRegistration")
        assert waiting["status"]["message"] == f"Waiting for {key.address} to register {PUBLISHED}"
        o = await eventually(  # the offer copies the RR phase on its next pass
            lambda: offer(kube, namespace, "keyless"),
            until=lambda x: condition(x, "Registered") == ("False", "AwaitingExternalRegistration"),
            timeout=10,
        )
        assert condition(o, "Ready")[0] == "False"
        # The operator registers the URL from its own account (as `kube402 sell register` would).
        event = await reg.register(PUBLISHED, signer=rpc.LocalSigner(key))
        done = await wait_phase(kube, namespace, "keyless", "Registered")
        assert done["status"]["agentId"] == str(event.agent_id)
        o = await wait_ready(kube, namespace, "keyless")
        assert o["status"]["agentId"] == str(event.agent_id)
        await delete_offers(kube, namespace)


async def test_rpc_down_or_wrong_chain_is_registering_other_offers_unaffected_then_recovers(
    kube: Kube,
    namespace: str,
    control_plane: ControlPlaneInfo,
    upstream: TestUpstream,
    rpc_proxy: RpcProxy,
    reg: chain_registry.IdentityRegistry,
    key: Any,
) -> None:
    rpc_proxy.mode = "down"
    async with running(control_plane, settings(rpc_proxy.url, key=key)) as ctl:
        await make_offer(kube, namespace, "plain", upstream, registration={"enabled": False})
        await make_offer(kube, namespace, "reg", upstream)
        got = await eventually(
            lambda: rr(kube, namespace, "reg"),
            until=lambda o: (
                ((o or {}).get("status") or {})
                .get("message", "")
                .startswith("Waiting for ERC-8004 RPC connectivity: ")
            ),
            timeout=30,
            what="RPC down message",
        )
        assert got is not None and got["status"]["phase"] == "Registering"
        plain = await wait_ready(kube, namespace, "plain")
        assert condition(plain, "Registered") == ("True", "Disabled")

        rpc_proxy.mode = "wrong"
        await eventually(
            lambda: rr(kube, namespace, "reg"),
            until=lambda o: (
                ((o or {}).get("status") or {}).get("message")
                == "RPC chain id 1 does not match configured chain 84532"
            ),
            timeout=20,
            what="wrong chain message",
        )
        assert await reg.find_registered(from_block=0, owner=key.address) == []

        rpc_proxy.mode = "up"
        done = await wait_phase(kube, namespace, "reg", "Registered", wait_s=30)
        logs = await registered_logs(reg, key.address, PUBLISHED)
        assert [str(e.agent_id) for e in logs] == [done["status"]["agentId"]]
        assert await reg.owner_of(logs[0].agent_id) == key.address
        await wait_ready(kube, namespace, "reg")
        text = ctl.metrics.registry
        import prometheus_client

        metrics = prometheus_client.generate_latest(text).decode()
        assert "kube402_registration_submissions_total 1.0" in metrics
        assert 'kube402_registration_recoveries_total{outcome="none"}' in metrics
        assert 'kube402_registration_phase{phase="Registered"}' in metrics
        await delete_offers(kube, namespace)


async def test_base_url_change_updates_agent_uri_without_second_mint(
    kube: Kube,
    namespace: str,
    control_plane: ControlPlaneInfo,
    upstream: TestUpstream,
    dev_chain: devchain.DevChainInfo,
    reg: chain_registry.IdentityRegistry,
    key: Any,
) -> None:
    ns_frontend = "obol-frontend"
    if await kube.get(resources.NAMESPACE, ns_frontend) is None:
        await kube.create(
            resources.NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns_frontend}}
        )

    async def tunnel(url: str) -> None:
        await kube.apply(
            resources.CONFIGMAP,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "obol-stack-config", "namespace": ns_frontend},
                "data": {"tunnelURL": url},
            },
        )

    first, second = "https://one.example/", "https://two.example"
    await tunnel(first)
    try:
        async with running(control_plane, settings(dev_chain.rpc_url, key=key, base="")):
            await make_offer(kube, namespace, "moving", upstream)
            done = await wait_phase(kube, namespace, "moving", "Registered")
            agent = int(done["status"]["agentId"])
            assert await reg.token_uri(agent) == "https://one.example" + documents.WELL_KNOWN_PATH
            await tunnel(second)
            new_url = second + documents.WELL_KNOWN_PATH
            await eventually(lambda: reg.token_uri(agent), until=lambda u: u == new_url, timeout=30)
            moved = await eventually(
                lambda: rr(kube, namespace, "moving"),
                until=lambda o: (
                    o is not None
                    and phase(o) == "Registered"
                    and o["status"].get("registrationUri") == new_url
                ),
                timeout=20,
            )
            assert moved is not None and moved["status"]["agentId"] == str(agent)
            all_logs = await reg.find_registered(from_block=0, owner=key.address)
            assert [e.agent_id for e in all_logs] == [agent], "no second mint"
            cm = await kube.get(resources.CONFIGMAP, "so-moving-registration", namespace=namespace)
            assert "https://two.example/services/moving" in cm["data"][documents.DOCUMENT_KEY]  # type: ignore[index]
            await delete_offers(kube, namespace)
    finally:
        await kube.delete(resources.CONFIGMAP, "obol-stack-config", namespace=ns_frontend)


def phase(o: dict[str, Any] | None) -> str:
    return str(((o or {}).get("status") or {}).get("phase") or "")


async def test_dropped_transaction_is_resubmitted_with_the_same_nonce(
    kube: Kube,
    namespace: str,
    control_plane: ControlPlaneInfo,
    upstream: TestUpstream,
    dev_chain: devchain.DevChainInfo,
    node: rpc.Rpc,
    reg: chain_registry.IdentityRegistry,
    key: Any,
) -> None:
    await node.request("evm_setAutomine", [False])
    try:
        async with running(control_plane, settings(dev_chain.rpc_url, key=key)) as ctl:
            await make_offer(kube, namespace, "dropped", upstream)
            pending = await eventually(
                lambda: rr(kube, namespace, "dropped"),
                until=lambda o: (
                    ((o or {}).get("status") or {})
                    .get("message", "")
                    .startswith("Waiting for on-chain registration transaction")
                ),
                timeout=30,
                what="a pending registration transaction",
            )
            assert pending is not None
            first_hash = pending["status"]["registrationTxHash"]
            first_tx = await node.run(lambda: node.w3.eth.get_transaction(first_hash))
            assert await node.request("anvil_dropTransaction", [first_hash]) is not None

            import prometheus_client

            def submissions() -> float:
                text = prometheus_client.generate_latest(ctl.metrics.registry).decode()
                line = next(
                    x for x in text.splitlines() if x.startswith("kube402_registration_submissions_total")
                )
                return float(line.split()[1])

            async def resubmitted() -> float:
                return submissions()

            await eventually(resubmitted, until=lambda n: n >= 2, timeout=30, what="a resubmission")
            again = await eventually(
                lambda: rr(kube, namespace, "dropped"),
                until=lambda o: bool(((o or {}).get("status") or {}).get("registrationTxHash")),
                timeout=10,
            )
            assert again is not None
            second_hash = again["status"]["registrationTxHash"]
            second_tx = await node.run(lambda: node.w3.eth.get_transaction(second_hash))
            assert second_tx["nonce"] == first_tx["nonce"]
            await node.request("evm_mine", [])
            await node.request("evm_setAutomine", [True])  # metadata writes follow the adoption
            done = await wait_phase(kube, namespace, "dropped", "Registered")
            logs = await registered_logs(reg, key.address, PUBLISHED)
            assert [str(e.agent_id) for e in logs] == [done["status"]["agentId"]]
            await delete_offers(kube, namespace)
    finally:
        await node.request("evm_setAutomine", [True])


async def test_singleton_younger_conflicts_and_pausing_the_older_hands_over(
    kube: Kube, namespace: str, control_plane: ControlPlaneInfo, upstream: TestUpstream
) -> None:
    async with running(control_plane, settings("http://127.0.0.1:9")):
        await make_offer(kube, namespace, "older", upstream)
        await wait_ready(kube, namespace, "older")
        await make_offer(kube, namespace, "younger", upstream)
        young = await eventually(
            lambda: offer(kube, namespace, "younger"),
            until=lambda o: condition(o, "Registered") == ("False", "SingletonConflict"),
            timeout=20,
        )
        msg = next(c for c in young["status"]["conditions"] if c["type"] == "Registered")["message"]  # type: ignore[index]
        assert (
            msg == f"Registration path /.well-known/agent-registration.json is reserved by {namespace}/older"
        )
        assert await rr(kube, namespace, "younger") is None
        await kube.merge_patch(
            resources.SERVICE_OFFER,
            "older",
            namespace=namespace,
            patch={"metadata": {"annotations": {"obol.org/paused": "true"}}},
        )
        await wait_ready(kube, namespace, "younger")
        assert await rr(kube, namespace, "older") is None
        assert (await rr(kube, namespace, "younger")) is not None
        await delete_offers(kube, namespace)


async def test_catalog_is_byte_identical_across_controller_restarts(
    kube: Kube, namespace: str, control_plane: ControlPlaneInfo, upstream: TestUpstream
) -> None:
    s = settings("http://127.0.0.1:9", namespace=namespace)
    async with running(control_plane, s) as ctl:
        await make_offer(kube, namespace, "cat-a", upstream, registration={"enabled": False})
        await make_offer(
            kube, namespace, "cat-b", upstream, registration={"enabled": False}, price={"perMTok": "1.5"}
        )
        await wait_ready(kube, namespace, "cat-a")
        await wait_ready(kube, namespace, "cat-b")
        cm = await eventually(
            lambda: kube.get(resources.CONFIGMAP, documents.CATALOG_NAME, namespace=namespace),
            until=lambda c: c is not None and "cat-b" in c["data"]["skill.md"],
            timeout=10,
        )
        assert cm is not None
        # The ConfigMap is the first of the four objects a catalog pass applies: wait for that pass to end
        # (the writer records the hash it deployed) before stopping the controller.
        digest = documents.content_hash(cm["data"][documents.SKILL_KEY], cm["data"][documents.SERVICES_KEY])

        async def deployed() -> str | None:
            return ctl.catalog.deployed

        await eventually(deployed, until=lambda d: d == digest, timeout=10, what="the catalog pass finished")
        applies = ctl.catalog.applies
    async with running(control_plane, s) as ctl2:
        await eventually(lambda: _synced(ctl2), timeout=10)
        await ctl2.catalog.sync_once()
        assert ctl2.catalog.applies == 0, "same content: nothing re-applied"
        again = await kube.get(resources.CONFIGMAP, documents.CATALOG_NAME, namespace=namespace)
        assert again is not None
        assert again["data"] == cm["data"]
        assert again["metadata"]["resourceVersion"] == cm["metadata"]["resourceVersion"]
    assert applies >= 1
    await _cleanup(kube, namespace, control_plane, s)


async def _synced(ctl: Any) -> bool:
    return bool(ctl.synced())


async def _cleanup(kube: Kube, ns: str, control_plane: ControlPlaneInfo, s: Any) -> None:
    async with running(control_plane, s):
        await delete_offers(kube, ns)


_ = REGISTRY


async def test_strict_readiness_waits_for_availability_and_route_acceptance(
    kube: Kube, namespace: str, control_plane: ControlPlaneInfo, upstream: TestUpstream
) -> None:
    s = settings("http://127.0.0.1:9")
    strict = dataclasses.replace(s, registration=dataclasses.replace(s.registration, readiness="strict"))
    async with running(control_plane, strict):
        await make_offer(kube, namespace, "strict", upstream)
        got = await eventually(
            lambda: rr(kube, namespace, "strict"),
            until=lambda o: (
                ((o or {}).get("status") or {}).get("message")
                == "Waiting for registration Deployment availability"
            ),
            timeout=30,
        )
        assert got is not None and got["status"]["phase"] == "Publishing"
        await eventually(
            lambda: offer(kube, namespace, "strict"),
            until=lambda x: condition(x, "Registered") == ("False", "Publishing"),
            timeout=10,
        )
        # What a kubelet and a Gateway controller would report:
        await kube.merge_patch(
            resources.DEPLOYMENT,
            "so-strict-registration",
            namespace=namespace,
            subresource="status",
            patch={"status": {"availableReplicas": 1, "replicas": 1, "readyReplicas": 1}},
        )
        await eventually(
            lambda: rr(kube, namespace, "strict"),
            until=lambda o: (
                ((o or {}).get("status") or {}).get("message")
                == "Waiting for registration HTTPRoute acceptance"
            ),
            timeout=30,
        )
        parent = {"name": "traefik-gateway", "namespace": "traefik", "sectionName": "web"}
        await kube.merge_patch(
            resources.HTTPROUTE,
            "so-strict-wellknown",
            namespace=namespace,
            subresource="status",
            patch={
                "status": {
                    "parents": [
                        {
                            "parentRef": parent,
                            "controllerName": "traefik.io/gateway-controller",
                            "conditions": [
                                {
                                    "type": "Accepted",
                                    "status": "True",
                                    "reason": "Accepted",
                                    "message": "",
                                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                                    "observedGeneration": 1,
                                }
                            ],
                        }
                    ]
                }
            },
        )
        await wait_phase(kube, namespace, "strict", "OffChainOnly")
        await wait_ready(kube, namespace, "strict")
        await delete_offers(kube, namespace)
