"""ERC-8004 registration on the real stack: control plane, anvil with the registry at its Base Sepolia
address, the controller with a funded key, the catalog process behind the gateway, read as a buyer would."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from kube402.api import v1alpha1
from kube402.chain import registry as chain_registry
from kube402.devenv.testing import condition, eventually
from kube402.devenv.upstream import TestUpstream
from kube402.kube import resources
from kube402.kube.client import Kube
from kube402.localstack import LocalStack

from .test_paid_requests import sell

pytestmark = pytest.mark.e2e
REGISTRY = "0x8004A818BFB912233c491871b3d84c89A494BD9e"
WELL_KNOWN = "/.well-known/agent-registration.json"


def registry(stack: LocalStack) -> chain_registry.IdentityRegistry:
    assert stack.node is not None
    return chain_registry.IdentityRegistry(stack.node, REGISTRY)


async def registered_logs(stack: LocalStack, *, owner: str, uri: str, from_block: int) -> list[Any]:
    found = await registry(stack).find_registered(from_block=from_block, owner=owner)
    return [e for e in found if e.agent_uri == uri]


async def rr_of(kube: Kube, ns: str, name: str) -> dict[str, Any] | None:
    return await kube.get(resources.REGISTRATION_REQUEST, f"so-{name}-registration", namespace=ns)


async def delete_and_wait_gone(kube: Kube, ns: str, name: str, wait_s: float = 40) -> None:
    await kube.delete(resources.SERVICE_OFFER, name, namespace=ns)
    await eventually(
        lambda: kube.get(resources.SERVICE_OFFER, name, namespace=ns),
        until=lambda o: o is None,
        timeout=wait_s,
        what=f"{ns}/{name} gone",
    )


@pytest_asyncio.fixture(loop_scope="session")
async def kube(stack: LocalStack) -> AsyncIterator[Kube]:
    assert stack.kube is not None
    yield stack.kube


@pytest.fixture
def ns(request: pytest.FixtureRequest) -> str:
    return "reg-" + str(request.node.name).replace("_", "-")[5:40].strip("-").lower()


async def test_registered_offer_is_ready_on_chain_published_and_tombstoned(
    stack: LocalStack, upstream: TestUpstream, kube: Kube, ns: str
) -> None:
    name = "agent"
    assert stack.erc8004 is not None
    key_address = stack.erc8004.address
    await sell(
        stack,
        ns,
        name,
        upstream,
        registration={
            "enabled": True,
            "skills": ["natural_language_processing/natural_language_generation/text_completion"],
            "domains": ["technology/data_science/data_science"],
            "metadata": {"team": "kube402"},
        },
    )
    offer = await kube.get(resources.SERVICE_OFFER, name, namespace=ns)
    assert condition(offer, "Registered") == ("True", "Registered")
    rr = await rr_of(kube, ns, name)
    assert rr is not None
    assert rr["metadata"]["ownerReferences"][0]["uid"] == offer["metadata"]["uid"]  # type: ignore[index]
    st = rr["status"]
    assert st["phase"] == "Registered"
    published = f"{stack.gateway_url}{WELL_KNOWN}"
    assert st["publishedUrl"] == published
    agent_id = int(st["agentId"])
    assert offer["status"]["agentId"] == st["agentId"]  # type: ignore[index]
    assert offer["status"]["registrationTxHash"] == st["registrationTxHash"]  # type: ignore[index]

    reg = registry(stack)
    assert await reg.owner_of(agent_id) == key_address
    assert await reg.token_uri(agent_id) == published
    metadata = await eventually(
        lambda: reg.get_metadata(agent_id, "x402.supported"), until=lambda v: v == b"\x01", timeout=20
    )
    assert metadata == b"\x01"
    assert await reg.get_metadata(agent_id, "service.type") == b"http"
    assert await reg.get_metadata(agent_id, "metadata.team") == b"kube402"
    logs = await registered_logs(
        stack, owner=key_address, uri=published, from_block=st["registrationSearchFromBlock"]
    )
    assert [e.agent_id for e in logs] == [agent_id]

    async with httpx.AsyncClient() as http:
        doc = await eventually(
            lambda: http.get(published),
            until=lambda r: r.status_code == 200 and "registrations" in r.json(),
            timeout=20,
            what="document with registrations through the gateway",
        )
        body = doc.json()
        assert doc.headers["content-type"].startswith("application/json")
        assert body["type"] == "https://eips.ethereum.org/EIPS/eip-8004#registration-v1"
        assert body["x402Support"] is True and body["active"] is True
        assert body["registrations"] == [{"agentId": agent_id, "agentRegistry": f"eip155:84532:{REGISTRY}"}]
        web = next(s for s in body["services"] if s["name"] == "web")
        assert web["endpoint"] == f"{stack.gateway_url}/services/{name}"
        oasf = next(s for s in body["services"] if s["name"] == "OASF")
        assert oasf["skills"] and oasf["domains"]
        # Traefik's Gateway and CRD providers converge independently: the router can name the offer's
        # Middleware a moment before the CRD provider has it (a 404 meanwhile), as `routed()` waits for.
        unpaid = await eventually(
            lambda: http.post(web["endpoint"] + "/v1/chat/completions", json={"x": 1}),
            until=lambda r: r.status_code == 402,
            timeout=20,
            interval=0.1,
            what="the document's web endpoint answers 402 through Traefik",
        )
        assert unpaid.status_code == 402
        skill = await eventually(
            lambda: http.get(f"{stack.gateway_url}/skill.md"),
            until=lambda r: r.status_code == 200 and f"| {name} |" in r.text,
            timeout=10,
            what="/skill.md lists the offer",
        )
        assert f"{stack.gateway_url}/services/{name}" in skill.text

    events = await kube.list(resources.EVENT, namespace=ns)
    reasons = {e["reason"] for e in events[0] if e["involvedObject"]["name"] == name}
    assert {"RegistrationSubmitted", "Registered"} <= reasons
    secret = bytes(stack.erc8004.key).hex()
    for obj in (offer, await rr_of(kube, ns, name), events[0]):
        assert secret not in json.dumps(obj), "the signing key is in no status and no event"

    # Deletion tombstones on chain before the offer goes away.
    await delete_and_wait_gone(kube, ns, name)
    uri = await reg.token_uri(agent_id)
    prefix = "data:application/json;base64,"
    assert uri.startswith(prefix)
    tomb = json.loads(base64.b64decode(uri[len(prefix) :], validate=True))
    assert tomb["active"] is False and tomb["x402Support"] is False and tomb["services"] == []
    assert await reg.get_metadata(agent_id, "x402.supported") == b"\x00"
    assert await rr_of(kube, ns, name) is None
    for res, obj_name in (
        (resources.CONFIGMAP, f"so-{name}-registration"),
        (resources.DEPLOYMENT, f"so-{name}-registration"),
        (resources.SERVICE, f"so-{name}-registration"),
        (resources.HTTPROUTE, f"so-{name}-wellknown"),
    ):
        assert await kube.get(res, obj_name, namespace=ns) is None, obj_name
    # Still exactly one registration for that owner and URI.
    assert (
        len(
            await registered_logs(
                stack, owner=key_address, uri=published, from_block=st["registrationSearchFromBlock"]
            )
        )
        == 1
    )


async def test_catalog_through_the_gateway_lists_ready_unpaused_offers_and_drops_a_paused_one_fast(
    stack: LocalStack, upstream: TestUpstream, kube: Kube, ns: str
) -> None:
    await sell(stack, ns, "cat-one", upstream)
    await kube.create(
        resources.SERVICE_OFFER,
        v1alpha1.offer_manifest(
            "cat-two",
            namespace=ns,
            upstream="cat-one-llm",
            port=upstream.port,
            pay_to=stack.seller.address,
            price={"perRequest": "0.000249"},
        ),
    )
    await eventually(
        lambda: kube.get(resources.SERVICE_OFFER, "cat-two", namespace=ns),
        until=lambda o: condition(o, "Ready") == ("True", "Reconciled"),
        timeout=30,
    )
    base = stack.gateway_url

    async def services() -> list[dict[str, Any]]:
        async with httpx.AsyncClient() as http:
            r = await http.get(f"{base}/api/services.json")
        if r.status_code != 200:
            return []
        return [s for s in r.json()["services"] if s["namespace"] == ns]

    listed = await eventually(services, until=lambda s: len(s) == 2, timeout=10, what="both offers listed")
    assert [s["name"] for s in listed] == ["cat-one", "cat-two"]
    assert [s["amount"] for s in listed] == ["1000", "249"]
    assert listed[1]["endpoint"] == f"{base}/services/cat-two"
    async with httpx.AsyncClient() as http:
        skill = (await http.get(f"{base}/skill.md")).text
    assert skill.index("### cat-one") < skill.index("### cat-two")
    assert "0.000249 USDC (249 atomic units)" in skill

    await kube.merge_patch(
        resources.SERVICE_OFFER,
        "cat-two",
        namespace=ns,
        patch={"metadata": {"annotations": {"obol.org/paused": "true"}}},
    )
    t0 = asyncio.get_running_loop().time()
    await eventually(
        services, until=lambda s: [x["name"] for x in s] == ["cat-one"], timeout=2, interval=0.05
    )
    assert asyncio.get_running_loop().time() - t0 < 2
    async with httpx.AsyncClient() as http:
        assert "cat-two" not in (await http.get(f"{base}/skill.md")).text
    for name in ("cat-one", "cat-two"):
        await delete_and_wait_gone(kube, ns, name)
