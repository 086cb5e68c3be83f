"""What real Traefik decides, and what kube402 reports and does because of it (issue 10).

* The controller reads the HTTPRoute status Traefik writes: ``RoutePublished`` is True only once Traefik
  accepted the route, and False with Traefik's own reason when Traefik refuses it.
* The seed's own offer, applied with kubectl, is sold through Traefik.
* Keep-alive connections between Traefik and the proxy gate stay healthy under unpaid POSTs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
from x402 import x402Client
from x402.http.clients.httpx import x402HttpxClient
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import register_exact_evm_client

from kube402.api import v1alpha1
from kube402.devenv import paths
from kube402.devenv.controlplane import ControlPlaneInfo
from kube402.devenv.testing import condition, conditions, eventually
from kube402.devenv.upstream import TestUpstream
from kube402.kube import resources
from kube402.localstack import LocalStack

from .test_paid_requests import routed, sell

pytestmark = pytest.mark.e2e
CHAT = {"model": "qwen3:0.6b", "messages": [{"role": "user", "content": "hello"}]}


def x402_client(stack: LocalStack) -> x402Client:
    return register_exact_evm_client(x402Client(), EthAccountSigner(stack.buyer))


async def test_a_route_traefik_refuses_is_not_published_and_says_why(
    stack: LocalStack, upstream: TestUpstream
) -> None:
    """An ExternalName upstream: healthy to the controller's probe, refused by Traefik's Gateway provider."""
    kube = stack.kube
    assert kube is not None
    ns = "e2e-refused"
    await kube.create(
        resources.NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    )
    await kube.apply(
        resources.SERVICE,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "external-llm", "namespace": ns},
            "spec": {"type": "ExternalName", "externalName": stack.host_address},
        },
    )
    await kube.create(
        resources.SERVICE_OFFER,
        v1alpha1.offer_manifest(
            "refused",
            namespace=ns,
            upstream="external-llm",
            port=upstream.port,
            pay_to=stack.seller.address,
        ),
    )
    offer = await eventually(
        lambda: kube.get(resources.SERVICE_OFFER, "refused", namespace=ns),
        until=lambda o: (
            condition(o, "RoutePublished")[0] == "False"
            and condition(o, "RoutePublished")[1] not in ("", "WaitingForIngress", "WaitingForPaymentGate")
        ),
        timeout=30,
        what="Traefik's verdict on the route",
    )
    route = await kube.get(resources.HTTPROUTE, "so-refused", namespace=ns)
    assert route is not None, "the controller applied the route; Traefik refused it"
    parent = route["status"]["parents"][0]
    refused = next(c for c in parent["conditions"] if c["status"] == "False")
    published = conditions(offer)["RoutePublished"]
    assert published["reason"] == refused["reason"], (published, refused)
    assert refused["message"] in published["message"]
    assert "ExternalName" in published["message"]
    assert condition(offer, "UpstreamHealthy") == ("True", "Healthy")
    assert condition(offer, "PaymentGateReady") == ("True", "Reconciled")
    assert condition(offer, "Ready") == ("False", "Reconciling")
    # Not published → guarded by the verifier: a request Traefik might still route is never free.
    assert stack.verifier is not None
    assert stack.verifier.gate.table.lookup("/services/refused/x").kind.value == "guarded"


def kubectl(cp: ControlPlaneInfo, *args: str, stdin: str | None = None) -> str:
    binary = paths.controlplane_bin() / "kubectl"
    out = subprocess.run(
        [str(binary), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": str(cp.kubeconfig)},
    )
    return out.stdout


SEED = """\
apiVersion: v1
kind: Namespace
metadata:
  name: llm
---
apiVersion: obol.org/v1alpha1
kind: ServiceOffer
metadata:
  name: flow-qwen
  namespace: llm
spec:
  type: inference
  model:
    name: qwen3:0.6b
    runtime: ollama
  upstream:
    service: ollama
    namespace: llm
    port: 11434
  payment:
    network: base-sepolia
    payTo: "{pay_to}"
    price:
      perRequest: "0.001"
"""


async def test_the_seed_offer_sells_through_traefik(
    stack: LocalStack, control_plane: ControlPlaneInfo, tmp_path: Path
) -> None:
    """flow-qwen in llm → ollama:11434, 0.001 USDC on base-sepolia, applied with kubectl."""
    ollama = TestUpstream(11434, host=stack.host_address).start()
    try:
        # The local stand-in for the in-cluster ollama Service: selector-less, EndpointSlice → the upstream.
        await stack.expose("llm", "ollama", 11434)
        kubectl(control_plane, "apply", "-f", "-", stdin=SEED.format(pay_to=stack.seller.address))
        kube = stack.kube
        assert kube is not None
        await eventually(
            lambda: kube.get(resources.SERVICE_OFFER, "flow-qwen", namespace="llm"),
            until=lambda o: condition(o, "Ready") == ("True", "Reconciled"),
            timeout=30,
            what="flow-qwen Ready",
        )
        url = f"{stack.gateway_url}/services/flow-qwen/v1/chat/completions"
        async with httpx.AsyncClient() as http:
            unpaid = await eventually(
                lambda: http.post(url, json=CHAT),
                until=lambda r: r.status_code == 402,
                timeout=20,
                interval=0.1,
                what="402 through Traefik",
            )
        required = json.loads(base64.b64decode(unpaid.headers["payment-required"]))
        assert required["accepts"][0]["amount"] == "1000"
        assert required["accepts"][0]["network"] == "eip155:84532"
        assert required["accepts"][0]["payTo"] == stack.seller.address
        assert ollama.paid_requests() == []
        before = await stack.balances(stack.seller.address)
        async with x402HttpxClient(x402_client(stack)) as buyer:
            resp = await buyer.post(url, json=CHAT)
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["message"]["content"] == "Hello from the upstream"
        assert (await stack.balances(stack.seller.address))[0] - before[0] == 1000
        assert ollama.paid_requests()[-1]["path"] == "/v1/chat/completions"
        # ForwardAuth mode (the seed's): Traefik passes no auth-response header to the client.
        assert "payment-response" not in resp.headers
        assert ollama.paid_requests()[-1]["headers"]["x-payment-status"] == "settled"
    finally:
        ollama.stop()
        if stack.kube is not None:
            await stack.kube.delete(resources.SERVICE_OFFER, "flow-qwen", namespace="llm")


async def test_unpaid_posts_on_pooled_connections_all_get_402(
    stack: LocalStack, upstream: TestUpstream
) -> None:
    """Traefik pools its connections to the proxy gate; every unpaid POST (with a body) gets the 402."""
    ns = "e2e-pooled"
    await sell(stack, ns, "pooled", upstream, gate_mode="proxy")
    url = f"{stack.gateway_url}/services/pooled/v1/chat/completions"
    await routed(stack, url)
    body = {**CHAT, "pad": "x" * 2048}
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:

        async def burst() -> list[int]:
            return [(await http.post(url, json=body)).status_code for _ in range(50)]

        codes = [c for batch in await asyncio.gather(*(burst() for _ in range(8))) for c in batch]
    assert codes == [402] * len(codes), {c: codes.count(c) for c in set(codes)}
    assert upstream.paid_requests() == []
