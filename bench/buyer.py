"""bench/buyer: what the buyer proxy costs — paid requests/s through it and the latency it adds over a direct
call to the seller with the same kind of payment, measured in the same run.

Real parts, one process plus the buyer: kube-apiserver + etcd, anvil, ``kube402 facilitator``, controller,
verifier (proxy gate: verify → upstream → settle on chain before the answer), the echo upstream, and the real
``kube402 buyer`` command as a child process. Both paths spend pre-signed vouchers from the same pool kind:

* direct: the client sends ``PAYMENT-SIGNATURE`` (a pre-signed voucher) straight to the seller (one trip);
* buyer:  the client sends a plain chat request to the buyer, which probes (402), holds a voucher (fsync'ed
  state file), pays and relays — what an agent behind ``paid/<model>`` experiences.

Direct and buyer requests alternate, so both see the same machine load. Every answer must be 200 and the
seller's balance must grow by exactly price times paid requests. Bounded in count; on a shared, busy
machine the absolute numbers are noisy — compare the two columns, not runs.

    .venv/bin/python bench/buyer.py [--pairs 40] [--concurrent 80] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx

from kube402.api import v1alpha1
from kube402.buyer import local, market, vouchers
from kube402.devenv.controlplane import ControlPlane
from kube402.devenv.testing import condition, eventually
from kube402.devenv.upstream import TestUpstream
from kube402.kube import resources
from kube402.localstack import LocalStack

BODY = {"model": "paid/bench-model", "messages": [{"role": "user", "content": "hi"}]}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=40, help="sequential direct/buyer request pairs")
    ap.add_argument("--concurrent", type=int, default=80, help="paid requests for the throughput phase")
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kube402-buyer-bench-"))
    cp = ControlPlane(work / "cp")
    info = await cp.start()
    upstream = TestUpstream().start()
    st = LocalStack(kubeconfig=info.kubeconfig, workdir=work / "stack")
    buyer: local.BuyerProcess | None = None
    try:
        await st.start()
        assert st.kube is not None
        await st.kube.create(
            resources.NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}
        )
        await st.kube.apply(
            resources.SERVICE,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "bench-llm", "namespace": "bench"},
                "spec": {"type": "ExternalName", "externalName": "localhost"},
            },
        )
        await st.kube.create(
            resources.SERVICE_OFFER,
            v1alpha1.offer_manifest(
                "bench",
                namespace="bench",
                upstream="bench-llm",
                port=upstream.port,
                pay_to=st.seller.address,
                price={"perRequest": "0.001"},
                network="base-sepolia",
                gate_mode="proxy",
            ),
        )
        await eventually(
            lambda: st.kube.get(resources.SERVICE_OFFER, "bench", namespace="bench"),  # type: ignore[union-attr]
            until=lambda o: condition(o, "Ready")[0] == "True",
            timeout=60,
            what="offer Ready",
        )
        url = f"{st.gateway_url}/services/bench"
        async with httpx.AsyncClient(timeout=60, trust_env=False) as http:
            await eventually(lambda: http.get(url), until=lambda r: r.status_code == 402, timeout=30)
            pool = work / "pool"
            n_buyer = args.pairs + args.concurrent + 1
            await local.write_pool(
                pool, name="bench", url=url, model="bench-model", account=st.buyer, count=n_buyer
            )
            probe = await market.probe(url, skill=False)
            assert probe.required is not None
            req = probe.required.accepts[0]
            direct_pool = market.sign_vouchers(
                st.buyer, req, count=args.pairs + 1, validity_seconds=3600, chain_id=84532
            )
            direct_burst = market.sign_vouchers(
                st.buyer, req, count=args.concurrent, validity_seconds=3600, chain_id=84532
            )
            buyer = await local.BuyerProcess(work / "buyer", config_dir=pool).start()
            target = url + "/v1/chat/completions"
            direct_body = {**BODY, "model": "bench-model"}
            before = (await st.balances(st.seller.address))[0]

            # warm-up (connections, caches): one of each, not measured
            name, value = vouchers.payment_header(probe.required, req, direct_pool.pop())
            assert (await http.post(target, json=direct_body, headers={name: value})).status_code == 200
            assert (await http.post(buyer.url + "/v1/chat/completions", json=BODY)).status_code == 200
            paid = 2

            direct_lat: list[float] = []
            buyer_lat: list[float] = []
            for v in direct_pool:
                name, value = vouchers.payment_header(probe.required, req, v)
                t0 = time.perf_counter()
                r = await http.post(target, json=direct_body, headers={name: value})
                direct_lat.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text
                t0 = time.perf_counter()
                r = await http.post(buyer.url + "/v1/chat/completions", json=BODY)
                buyer_lat.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text
                paid += 2

            sem = asyncio.Semaphore(args.concurrency)
            remaining = args.concurrent

            async def one() -> None:
                async with sem:
                    r = await http.post(buyer.url + "/v1/chat/completions", json=BODY)
                    assert r.status_code == 200, r.text

            async def one_direct(v: vouchers.Voucher) -> None:
                name, value = vouchers.payment_header(probe.required, req, v)  # type: ignore[arg-type]
                async with sem:
                    r = await http.post(target, json=direct_body, headers={name: value})
                    assert r.status_code == 200, r.text

            t0 = time.perf_counter()
            await asyncio.gather(*(one_direct(v) for v in direct_burst))
            direct_elapsed = time.perf_counter() - t0
            t0 = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(remaining)))
            elapsed = time.perf_counter() - t0
            paid += remaining + len(direct_burst)
            after = (await st.balances(st.seller.address))[0]
            assert after - before == 1000 * paid, (after - before, paid)
            st_ = (await buyer.status())["bench"]
            assert st_["remaining"] == 0 and st_["held"] == 0

        ms = 1000.0
        added = [b - d for d, b in zip(direct_lat, buyer_lat, strict=True)]
        print("bench/buyer — proxy gate, settle on chain (anvil) per request; shared, busy 2-core machine")
        print(f"  sequential pairs: {len(direct_lat)} (direct and via buyer alternating)")
        print(f"  direct  p50 {pct(direct_lat, 0.5) * ms:7.1f} ms   p99 {pct(direct_lat, 0.99) * ms:7.1f} ms")
        print(f"  buyer   p50 {pct(buyer_lat, 0.5) * ms:7.1f} ms   p99 {pct(buyer_lat, 0.99) * ms:7.1f} ms")
        print(
            f"  added   p50 {pct(added, 0.5) * ms:7.1f} ms   p99 {pct(added, 0.99) * ms:7.1f} ms  (per pair)"
        )
        print(
            f"  throughput, {remaining} paid requests each, concurrency {args.concurrency}: direct "
            f"{len(direct_burst) / direct_elapsed:.1f} paid req/s, "
            f"via buyer {remaining / elapsed:.1f} paid req/s"
        )
        print(f"  seller received exactly {after - before} atomic units for {paid} paid requests")
        return 0
    finally:
        if buyer is not None:
            buyer.stop()
        await st.stop()
        upstream.stop()
        cp.stop()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
