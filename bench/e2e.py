"""bench/e2e: paid requests end to end on the local chain — latency (p50/p95) and sustained paid req/s.

The whole stack runs as the demo runs it (real kube-apiserver, anvil, `kube402 facilitator`, `verifier`,
`controller`, demo upstream, each its own process, in a temporary state directory). The buyer is the x402
package's httpx client: every request gets a 402, signs a fresh EIP-3009 authorization and retries; the
verifier's proxy gate verifies it with the facilitator, calls the upstream and settles on chain before the
answer is relayed. Every paid answer is checked (200 + a successful PAYMENT-RESPONSE); the seller's balance
is checked against the count at the end.

    .venv/bin/python bench/e2e.py [--sequential 200] [--seconds 30] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import tempfile
import time
from pathlib import Path

from x402 import x402Client
from x402.http.clients.httpx import x402HttpxClient
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import register_exact_evm_client

from kube402.api import v1alpha1
from kube402.chain import devchain, rpc, token
from kube402.devenv import services, stack
from kube402.devenv.testing import condition, eventually
from kube402.kube import resources
from kube402.kube.client import Kube
from kube402.localstack import pricing_yaml

BODY = {"model": "qwen3:0.6b", "messages": [{"role": "user", "content": "hi"}]}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sequential", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="kube402-e2e-bench-")) / ".kube402"
    state, _ = await stack.up(directory)
    try:
        ports = await services.start(directory)
        seller, buyer = devchain.dev_account(1), devchain.dev_account(2)
        info = await devchain.setup_base_sepolia(state.rpc_url)
        await devchain.mint(info, buyer.address, 10**12)
        node = await rpc.connect(state.rpc_url, chain_id=84532)
        usdc = token.Token(node, info.token)
        kube = Kube.connect(kubeconfig=state.kubeconfig, field_manager="bench")
        fac = f"http://127.0.0.1:{ports['facilitator']}"
        await kube.apply(
            resources.CONFIGMAP,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "x402-pricing", "namespace": "x402"},
                "data": {"pricing.yaml": pricing_yaml(wallet=seller.address, facilitator_url=fac)},
            },
        )
        await kube.apply(
            resources.NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "llm"}}
        )
        await kube.apply(
            resources.SERVICE,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "ollama", "namespace": "llm"},
                "spec": {"type": "ExternalName", "externalName": "localhost"},
            },
        )
        await kube.apply(
            resources.SERVICE_OFFER,
            v1alpha1.offer_manifest(
                "bench",
                namespace="llm",
                upstream="ollama",
                port=ports["upstream"],
                pay_to=seller.address,
                gate_mode="proxy",
            ),
        )
        await eventually(
            lambda: kube.get(resources.SERVICE_OFFER, "bench", namespace="llm"),
            timeout=60,
            until=lambda o: condition(o, "Ready")[0] == "True",
            what="offer Ready",
        )
        await kube.aclose()
        url = f"http://127.0.0.1:{ports['gate']}/services/bench/v1/chat/completions"
        client = register_exact_evm_client(x402Client(), EthAccountSigner(buyer))
        start_balance = await usdc.balance_of(seller.address)
        paid = 0

        async def one(http: x402HttpxClient) -> float:
            s = time.perf_counter()
            r = await http.post(url, json=BODY)
            took = time.perf_counter() - s
            receipt = json.loads(base64.b64decode(r.headers.get("payment-response", "e30=")))
            if r.status_code != 200 or not receipt.get("success"):
                raise RuntimeError(f"paid request failed: {r.status_code} {r.text[:200]}")
            return took

        async with x402HttpxClient(client, timeout=60) as http:
            await eventually(
                lambda: http.post(url, json=BODY),
                until=lambda r: r.status_code == 200,
                timeout=20,
                what="first paid request",
            )
            paid += 1
            lat = []
            for _ in range(args.sequential):
                lat.append(await one(http))
                paid += 1
            print(
                "kube402 end-to-end paid requests (x402 client → verifier proxy gate → facilitator → anvil; "
                "every process on this 2-core machine)"
            )
            print(
                f"  sequential, {args.sequential} requests: p50 {pct(lat, 0.5) * 1000:.1f} ms, "
                f"p95 {pct(lat, 0.95) * 1000:.1f} ms (each: 402, sign, paid retry, verify, upstream, settle "
                f"on chain) — target p50 < 100 ms"
            )

            done = 0
            stop_at = time.monotonic() + args.seconds

            async def worker() -> None:
                nonlocal done
                while time.monotonic() < stop_at:
                    await one(http)
                    done += 1

            t0 = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
            elapsed = time.monotonic() - t0
            paid += done
            print(
                f"  sustained {elapsed:.0f} s, {args.concurrency} concurrent buyers: {done} paid requests, "
                f"{done / elapsed:.1f} paid req/s, all settled"
            )
        moved = await usdc.balance_of(seller.address) - start_balance
        assert moved == paid * 1000 - 1000 or moved == paid * 1000, (moved, paid)
        print(f"  seller balance moved by {moved} atomic units = {moved // 1000} settled payments (checked)")
    finally:
        stack.down(directory)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
