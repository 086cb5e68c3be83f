"""`make demo`: sell an HTTP service on a real local stack, pay for it with the x402 client, show the money move.

Everything runs on this machine, offline: a real kube-apiserver + etcd (built from Go modules), anvil made to
look like Base Sepolia, `kube402 facilitator`, `kube402 controller`, `kube402 verifier` and a demo upstream, as
background processes recorded in .kube402/ — they keep running afterwards; `kube402 dev down` stops them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from pathlib import Path

import httpx

from kube402.api import money, v1alpha1
from kube402.chain import devchain, rpc, token
from kube402.devenv import services, stack, traefik
from kube402.devenv.testing import conditions
from kube402.kube import resources
from kube402.kube.client import Kube
from kube402.localstack import BUYER_FUNDS, pricing_yaml

STATE = Path(".kube402")
NS = "llm"
OFFER = "demo-qwen"
T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {text}", flush=True)


def usdc(amount: int) -> str:
    return f"{money.format_atomic(amount, decimals=6)} USDC"


async def main() -> int:
    say("bringing up the local environment: kube-apiserver + etcd + controller-manager, anvil (chain 84532)")
    state, started = await stack.up(STATE, progress=lambda t: say("  " + t))
    if not started:
        say("  environment already running; reusing it")
    kubeconfig = state.kubeconfig
    seller, buyer, relayer = devchain.dev_account(1), devchain.dev_account(2), devchain.dev_account(5)
    say("starting kube402 facilitator, verifier, controller and the demo upstream")
    ports = await services.start(STATE)
    fac_url = f"http://127.0.0.1:{ports['facilitator']}"
    supported = httpx.get(f"{fac_url}/supported").json()
    say(
        f"  facilitator {fac_url} supports "
        + ", ".join(f"v{k['x402Version']} {k['network']}" for k in supported["kinds"])
    )

    node = await rpc.connect(state.rpc_url, chain_id=84532)
    usdc_token = token.Token(node, state.extra["KUBE402_USDC"])
    say(
        f"USDC at {state.extra['KUBE402_USDC']} (the Base Sepolia address): "
        f"name {await usdc_token.name()!r}, {await usdc_token.decimals()} decimals"
    )
    if await usdc_token.balance_of(buyer.address) < 1000:
        info = await devchain.setup_base_sepolia(state.rpc_url)
        await devchain.mint(info, buyer.address, BUYER_FUNDS)
        say(f"funded buyer {buyer.address} with {usdc(BUYER_FUNDS)}")

    kube = Kube.connect(kubeconfig=kubeconfig, field_manager="kube402-demo")
    try:
        say(f"seller settings: wallet {seller.address}, chain base-sepolia, facilitator {fac_url}")
        await kube.apply(
            resources.CONFIGMAP,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "x402-pricing", "namespace": "x402"},
                "data": {
                    "pricing.yaml": pricing_yaml(
                        wallet=seller.address,
                        facilitator_url=fac_url,
                        facilitator_token_file=str(services.token_file(STATE)),
                    )
                },
            },
        )
        await kube.apply(
            resources.NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
        )
        host = str(state.extra["KUBE402_HOST_ADDRESS"])
        # Traefik routes only to EndpointSlice addresses: a selector-less Service → the demo upstream.
        await traefik.expose(kube, namespace=NS, name="ollama", port=ports["upstream"], address=host)
        manifest = v1alpha1.offer_manifest(
            OFFER,
            namespace=NS,
            upstream="ollama",
            port=ports["upstream"],
            pay_to=seller.address,
            price={"perRequest": "0.001"},
            network="base-sepolia",
            gate_mode="proxy",
        )
        await kube.apply(resources.SERVICE_OFFER, manifest)
        say(f"ServiceOffer {NS}/{OFFER}: sell Service {NS}/ollama at 0.001 USDC per request (proxy gate)")

        seen: dict[str, str] = {}
        deadline = time.monotonic() + 120
        while True:
            obj = await kube.get(resources.SERVICE_OFFER, OFFER, namespace=NS)
            for ctype, c in conditions(obj).items():
                line = f"{c['status']}/{c['reason']}"
                if seen.get(ctype) != line:
                    seen[ctype] = line
                    say(f"  {ctype:17} {c['status']:5} {c['reason']}: {c['message']}")
            if conditions(obj).get("Ready", {}).get("status") == "True":
                break
            if time.monotonic() > deadline:
                raise TimeoutError("offer not Ready; see .kube402/logs/controller.log")
            await asyncio.sleep(0.2)

        gateway = state.extra["KUBE402_GATEWAY_URL"]
        say(f"buyers reach the offer through Traefik (Gateway traefik/traefik-gateway) at {gateway}")
        url = f"{gateway}/services/{OFFER}/v1/chat/completions"
        body = {"model": "qwen3:0.6b", "messages": [{"role": "user", "content": "Say hello"}]}
        async with httpx.AsyncClient() as http:
            for _ in range(50):
                unpaid = await http.post(url, json=body)
                if unpaid.status_code == 402:
                    break
                await asyncio.sleep(0.1)
        say(f"unpaid POST {url} → {unpaid.status_code} {unpaid.reason_phrase}")
        terms = json.loads(base64.b64decode(unpaid.headers["payment-required"]))
        acc = terms["accepts"][0]
        say(
            f"  PAYMENT-REQUIRED (x402 v{terms['x402Version']}): pay {acc['amount']} atomic units "
            f"({usdc(int(acc['amount']))}) of {acc['asset']} on {acc['network']} to {acc['payTo']}, "
            f"EIP-712 domain {acc['extra']}, within {acc['maxTimeoutSeconds']} s"
        )

        from x402 import x402Client
        from x402.http.clients.httpx import x402HttpxClient
        from x402.mechanisms.evm import EthAccountSigner
        from x402.mechanisms.evm.exact import register_exact_evm_client

        before = [await usdc_token.balance_of(a) for a in (buyer.address, seller.address)]
        gas_before = await node.eth_balance(relayer.address)
        client = register_exact_evm_client(x402Client(), EthAccountSigner(buyer))
        say(f"buyer {buyer.address} pays with the x402 package's client (signs an EIP-3009 authorization)")
        async with x402HttpxClient(client, timeout=60) as paying:
            resp = await paying.post(url, json=body)
        say(
            f"paid POST → {resp.status_code}; upstream answered: "
            f"{resp.json()['choices'][0]['message']['content']!r}"
        )
        receipt = json.loads(base64.b64decode(resp.headers["payment-response"]))
        say(
            f"  settlement receipt (PAYMENT-RESPONSE): success={receipt['success']} tx {receipt['transaction']}"
        )
        after = [await usdc_token.balance_of(a) for a in (buyer.address, seller.address)]
        gas_after = await node.eth_balance(relayer.address)
        say(f"  buyer  {buyer.address}: {usdc(before[0])} → {usdc(after[0])}  ({after[0] - before[0]:+d})")
        say(f"  seller {seller.address}: {usdc(before[1])} → {usdc(after[1])}  ({after[1] - before[1]:+d})")
        say(f"  facilitator relayer {relayer.address} paid {gas_before - gas_after} wei of gas")
    finally:
        await kube.aclose()

    print(f"""
kube402 demo is up and stays running ({time.monotonic() - T0:.0f} s). Try it:
  set -a; . {STATE.resolve() / "dev.env"}; set +a
  curl -si -X POST {url} -d '{{}}' | head -5          # 402 with PAYMENT-REQUIRED
  curl -s http://127.0.0.1:{ports["verifier"]}/metrics | grep obol_x402_verifier_charged
  .venv/bin/kube402 dev status
Stop everything with: .venv/bin/kube402 dev down
""")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(asyncio.run(main()))
