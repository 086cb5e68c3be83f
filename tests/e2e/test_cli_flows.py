"""SPEC 11 flow-06, flow-07, flow-10 and flow-09 driven only through the ``kube402`` CLI as a subprocess,
against the real control plane, controller, verifier, facilitator and anvil of the ``stack`` fixture.

The tests run in file order and share the offer ``llm/flow-qwen`` (setup → verify → facilitator switch →
lifecycle), as the flows do. The seed's upstream ``ollama:11434`` is the demo upstream on a free port (11434
may be taken on a shared machine); everything else is the seed's constants.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml
from eth_account import Account
from x402 import x402Client
from x402.http.clients.httpx import x402HttpxClient
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import register_exact_evm_client

from kube402.chain import devchain, rpc, token
from kube402.chain.facilitator import config as fac_config
from kube402.chain.facilitator import main as fac_main
from kube402.devenv.testing import eventually
from kube402.devenv.upstream import TestUpstream
from kube402.kube import resources
from kube402.kube.client import Kube
from kube402.localstack import LocalStack

from .cli_helpers import Run, cli, cli_env

pytestmark = pytest.mark.e2e
NS, NAME = "llm", "flow-qwen"
CHAT = {"model": "qwen3:0.6b", "messages": [{"role": "user", "content": "hello"}]}
USDC = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"


@pytest.fixture(scope="module")
def seller() -> str:
    """A fresh seller wallet: its balance moves only by this module's payments."""
    return str(Account.create().address)


@pytest.fixture(scope="module")
def ollama(stack: LocalStack) -> Any:
    """The upstream on the stack's host address (Traefik routes only to EndpointSlice addresses)."""
    server = TestUpstream(host=stack.host_address).start()
    try:
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def seller_env(stack: LocalStack, ollama: TestUpstream) -> AsyncIterator[dict[str, str]]:
    """What the seller has before the flows: namespace llm with a Service ollama (the upstream), in the form
    Traefik accepts: selector-less, with an EndpointSlice to the upstream's address."""
    await stack.expose(NS, "ollama", ollama.port)
    yield cli_env(KUBECONFIG=str(stack.kubeconfig), KUBE402_GATEWAY_URL=stack.gateway_url)


async def sell(env: dict[str, str], tmp_path: Path, *args: str) -> Run:
    run = await cli("sell", *args, env=env, cwd=tmp_path)
    assert "Traceback" not in run.out + run.err, str(run)
    return run


def sell_http_args(seller: str, port: int) -> list[str]:
    return [
        "http",
        NAME,
        "--wallet",
        seller,
        "--chain",
        "base-sepolia",
        "--per-request",
        "0.001",
        "--namespace",
        NS,
        "--upstream",
        "ollama",
        "--port",
        str(port),
    ]


async def pay(stack: LocalStack, url: str) -> httpx.Response:
    client = register_exact_evm_client(x402Client(), EthAccountSigner(stack.buyer))
    async with x402HttpxClient(client, timeout=60) as buyer:
        return await buyer.post(url, json=CHAT)


def routes_count(status_out: str) -> int:
    line = next(ln for ln in status_out.splitlines() if ln.strip().startswith("Routes:"))
    return int(line.split(":", 1)[1])


async def test_flow_06_sell_setup(
    stack: LocalStack, seller_env: dict[str, str], seller: str, ollama: TestUpstream, tmp_path: Path
) -> None:
    kube = stack.kube
    assert kube is not None
    # sell pricing writes the wallet, the chain and verifyOnly: false (kube402's decision, SPEC 10)
    priced = (await sell(seller_env, tmp_path, "pricing", "--wallet", seller, "--chain", "base-sepolia")).ok()
    assert "Payment configuration updated" in priced.out
    cm = await kube.get(resources.CONFIGMAP, "x402-pricing", namespace="x402")
    pricing = yaml.safe_load(cm["data"]["pricing.yaml"])  # type: ignore[index]
    assert pricing["wallet"] == seller and pricing["chain"] == "base-sepolia"
    assert pricing["verifyOnly"] is False
    assert pricing["facilitatorURL"] == stack.facilitator.url, "other keys are preserved"  # type: ignore[union-attr]
    secret = await kube.get(resources.SECRET, "x402-secrets", namespace="x402")
    assert base64.b64decode(secret["data"]["WALLET_ADDRESS"]).decode() == seller  # type: ignore[index]

    gone = await sell(seller_env, tmp_path, "delete", NAME, "-n", NS, "--force")  # failure tolerated
    assert gone.code in (0, 1), str(gone)

    created = (await sell(seller_env, tmp_path, *sell_http_args(seller, ollama.port))).ok()
    assert created.out.strip() == f"ServiceOffer {NS}/{NAME} created (type: http)"
    updated = (await sell(seller_env, tmp_path, *sell_http_args(seller, ollama.port))).ok()
    assert updated.out.strip() == f"ServiceOffer {NS}/{NAME} updated (type: http)"

    async def listed() -> str:
        return (await sell(seller_env, tmp_path, "list")).ok().out

    table = await eventually(
        listed,
        until=lambda out: any(
            ln.split()[:2] == [NS, NAME] and "True" in ln.split() for ln in out.splitlines()
        ),
        timeout=240,
        interval=0.5,
        what="sell list shows flow-qwen Ready",
    )
    header = table.splitlines()[0].split()
    assert header == ["NAMESPACE", "NAME", "TYPE", "MODEL", "PRICE", "NETWORK", "READY", "AGE"]

    status = json.loads((await sell(seller_env, tmp_path, "status", NAME, "-n", NS, "-o", "json")).ok().out)
    assert status["spec"]["upstream"]["service"] == "ollama"
    assert status["spec"]["payment"]["payTo"] == seller
    assert status["spec"]["payment"]["price"]["perRequest"] == "0.001"
    assert "monetize.obol.org/finalizer" in status["metadata"]["finalizers"]

    mw = await kube.get(resources.MIDDLEWARE, f"x402-{NAME}", namespace=NS)
    route = await kube.get(resources.HTTPROUTE, f"so-{NAME}", namespace=NS)
    assert mw is not None and route is not None
    first = route["spec"]["rules"][0]["filters"][0]
    assert first["type"] == "ExtensionRef" and first["extensionRef"]["name"] == f"x402-{NAME}"

    wide = (await sell(seller_env, tmp_path, "list", "-n", NS, "-o", "wide")).ok().out
    row = next(ln.split() for ln in wide.splitlines() if ln.split()[:2] == [NS, NAME])
    assert "0.001" in row and "http" in row and "base-sepolia" in row


async def test_flow_07_sell_verify(
    stack: LocalStack, seller_env: dict[str, str], seller: str, tmp_path: Path
) -> None:
    tested = (await sell(seller_env, tmp_path, "test", NAME, "-n", NS)).ok()
    assert tested.out.splitlines()[0] == "Endpoint is live and payment-gated."

    url = f"{stack.gateway_url}/services/{NAME}/v1/chat/completions"
    async with httpx.AsyncClient() as http:
        unpaid = await http.post(url, json=CHAT)
        metrics = (await http.get(stack.verify_url.removesuffix("/verify") + "/metrics")).text
    assert unpaid.status_code == 402
    body = unpaid.json()
    assert "x402Version" in body and body["accepts"][0]["payTo"] == seller
    v2 = json.loads(base64.b64decode(unpaid.headers["payment-required"]))
    assert v2["x402Version"] == 2
    assert v2["accepts"][0]["network"] == "eip155:84532" and v2["accepts"][0]["amount"] == "1000"
    assert "obol_x402" in metrics

    status = (await sell(seller_env, tmp_path, "status", NAME, "-n", NS)).ok().out
    assert 'status: "True"' in status
    conds = {c["type"]: c["status"] for c in yaml.safe_load(status)["status"]["conditions"]}
    assert conds["RoutePublished"] == "True" and conds["Ready"] == "True"


async def test_flow_10_local_chain_and_facilitator_switch(
    stack: LocalStack, seller_env: dict[str, str], seller: str, tmp_path: Path
) -> None:
    assert stack.chain is not None and stack.facilitator is not None and stack.verifier is not None
    node = rpc.Rpc(stack.chain.rpc_url)
    assert await node.request("eth_chainId", []) == "0x14a34"
    usdc = token.Token(node, USDC)
    assert await usdc.name() == "USDC" and await usdc.decimals() == 6
    assert await usdc.balance_of(stack.buyer.address) >= 2000

    relayer = Account.create()
    await devchain.set_eth_balance(stack.chain.rpc_url, relayer.address, 10**18)
    second = fac_main.Facilitator(
        fac_config.Settings(
            networks=(fac_config.parse_network(f"base-sepolia={stack.chain.rpc_url}"),),
            listen="127.0.0.1:0",
            confirmation_timeout=10.0,
        ),
        account=relayer,
    )
    second_url = await second.start()
    verifier_before = stack.verifier
    try:
        async with httpx.AsyncClient() as http:
            kinds = (await http.get(f"{second_url}/supported")).json()["kinds"]
        assert {(k["x402Version"], k["network"]) for k in kinds} >= {(1, "base-sepolia"), (2, "eip155:84532")}

        (await sell(seller_env, tmp_path, "pricing", "--facilitator-url", second_url)).ok()
        await eventually(
            lambda: _facilitator_of(stack),
            until=lambda u: u == second_url,
            timeout=30,
            what="the running verifier picked up the new facilitator",
        )
        gas_before = await node.eth_balance(relayer.address)
        seller_before = await usdc.balance_of(seller)
        resp = await pay(stack, f"{stack.gateway_url}/services/{NAME}/v1/chat/completions")
        assert resp.status_code == 200, resp.text
        assert await usdc.balance_of(seller) - seller_before == 1000
        assert await node.eth_balance(relayer.address) < gas_before, "the new facilitator paid the gas"
        assert stack.verifier is verifier_before, "no verifier restart"
    finally:
        assert stack.facilitator is not None
        original = stack.facilitator.url
        await sell(seller_env, tmp_path, "pricing", "--facilitator-url", original)
        await eventually(lambda: _facilitator_of(stack), until=lambda u: u == original, timeout=30)
        await second.stop()


async def _facilitator_of(stack: LocalStack) -> str:
    assert stack.verifier is not None
    return stack.verifier.gate.config.facilitator_url


async def test_flow_09_lifecycle(
    stack: LocalStack, seller_env: dict[str, str], seller: str, kube: Kube, tmp_path: Path
) -> None:
    """list/status, pay, `sell stop --wait`, `sell resume --wait`, pay again, `sell delete --force`.

    What a buyer sees through real Traefik once the offer is paused: the controller withdraws the HTTPRoute,
    and until Traefik drops it (a fraction of a second to a few seconds) the verifier's guard answers 503 for
    the path; after that Traefik itself answers 404 (no route). So the gateway is never 200 on the way and
    ends at 404, and the verifier's own answer for the paused path is asserted separately: 503 + Retry-After.
    (Measured with `make demo`'s offer: 402, then 503 for ~0.5 s, then 404.)
    """
    assert stack.usdc is not None
    url = f"{stack.gateway_url}/services/{NAME}/v1/chat/completions"
    row = next(
        ln.split()
        for ln in (await sell(seller_env, tmp_path, "list")).ok().out.splitlines()
        if ln.split()[:2] == [NS, NAME]
    )
    assert row[2:5] == ["http", "0.001", "base-sepolia"]
    status = (await sell(seller_env, tmp_path, "status")).ok().out
    for label in ("Wallet:", "Chain:", "Facilitator:", "Routes:"):
        assert label in status, status
    assert f"Wallet:       {seller}" in status
    routes_before = routes_count(status)
    assert routes_before >= 1

    before = await stack.usdc.balance_of(seller)
    assert (await pay(stack, url)).status_code == 200
    assert await stack.usdc.balance_of(seller) - before == 1000

    stopped = (await sell(seller_env, tmp_path, "stop", NAME, "-n", NS, "--wait")).ok()
    assert f"ServiceOffer {NS}/{NAME} paused" in stopped.out
    assert routes_count((await sell(seller_env, tmp_path, "status")).ok().out) == routes_before - 1
    (await sell(seller_env, tmp_path, "status", NAME, "-n", NS)).ok()  # the offer still exists
    seen: list[int] = []

    async def probe() -> int:
        async with httpx.AsyncClient() as http:
            code = (await http.post(url, json=CHAT)).status_code
        seen.append(code)
        return code

    await eventually(probe, until=lambda code: code == 404, timeout=30, interval=0.1, what="route withdrawn")
    assert 200 not in seen and set(seen) <= {402, 503, 404}, seen  # 404: Traefik, the route is gone
    async with httpx.AsyncClient() as http:  # the verifier guards the paused offer's path itself: 503
        guarded = await http.get(
            stack.verify_url, headers={"X-Forwarded-Uri": f"/services/{NAME}/v1/chat/completions"}
        )
    assert guarded.status_code == 503 and guarded.headers["retry-after"]

    resumed = (await sell(seller_env, tmp_path, "resume", NAME, "-n", NS, "--wait")).ok()
    assert f"ServiceOffer {NS}/{NAME} is Ready" in resumed.out
    await eventually(probe, until=lambda code: code == 402, timeout=30, interval=0.1, what="route back")
    before = await stack.usdc.balance_of(seller)
    assert (await pay(stack, url)).status_code == 200
    assert await stack.usdc.balance_of(seller) - before == 1000, "paid again after resume"

    deleted = (await sell(seller_env, tmp_path, "delete", NAME, "-n", NS, "--force")).ok()
    assert deleted.out.strip().endswith(f"ServiceOffer {NS}/{NAME} deleted")
    assert await kube.get(resources.SERVICE_OFFER, NAME, namespace=NS) is None
    assert await kube.get(resources.MIDDLEWARE, f"x402-{NAME}", namespace=NS) is None
    assert await kube.get(resources.HTTPROUTE, f"so-{NAME}", namespace=NS) is None
