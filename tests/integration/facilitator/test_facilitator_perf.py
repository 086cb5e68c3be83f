"""Latency and throughput of verify and settle over real HTTP against anvil (numbers printed, loose bounds).

Sequential p50 over 40 calls each; throughput as settles per second with 200 distinct payments and at most
20 in flight. Payments are signed before the clock starts.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest

from kube402.chain import devchain, rpc
from kube402.x402.facilitator_client import FacilitatorClient

from . import support
from .conftest import StartFacilitator

pytestmark = pytest.mark.integration


def _ms(samples: list[float], q: float) -> float:
    return (
        1000 * statistics.quantiles(samples, n=100)[int(q) - 1]
        if q != 50
        else 1000 * statistics.median(samples)
    )


async def test_latency_and_throughput(
    start_facilitator: StartFacilitator,
    dev_chain: devchain.DevChainInfo,
    node: rpc.Rpc,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fac = await start_facilitator()
    parties = await support.funded_buyer(dev_chain)
    reqs = support.requirements(parties.seller)
    raw_reqs = support.raw(reqs)
    sequential = [support.raw(await support.pay(parties.buyer, reqs)) for _ in range(40)]
    burst = [support.raw(await support.pay(parties.buyer, reqs)) for _ in range(200)]
    async with FacilitatorClient(fac.url) as client:
        await client.verify(sequential[0], raw_reqs, version=2)  # warm: connection, chain-id check, caches
        verify_s, settle_s = [], []
        for payload in sequential:
            t = time.perf_counter()
            assert (await client.verify(payload, raw_reqs, version=2)).is_valid
            verify_s.append(time.perf_counter() - t)
        for payload in sequential:
            t = time.perf_counter()
            assert (await client.settle(payload, raw_reqs, version=2)).success
            settle_s.append(time.perf_counter() - t)

        gate = asyncio.Semaphore(20)

        async def settle(payload: dict[str, object]) -> bool:
            async with gate:
                return (await client.settle(payload, raw_reqs, version=2)).success

        t = time.perf_counter()
        results = await asyncio.gather(*(settle(p) for p in burst))
        elapsed = time.perf_counter() - t
    assert all(results)
    assert await support.balance(node, parties.seller) == 240 * support.AMOUNT
    rate = len(burst) / elapsed
    report = (
        f"facilitator over HTTP on anvil: verify p50 {_ms(verify_s, 50):.1f} ms p95 {_ms(verify_s, 95):.1f} ms; "
        f"settle p50 {_ms(settle_s, 50):.1f} ms p95 {_ms(settle_s, 95):.1f} ms; "
        f"{rate:.0f} settles/s with 20 in flight (200 payments, {elapsed:.2f} s)"
    )
    with capsys.disabled():
        print("\n" + report)
    assert statistics.median(settle_s) < 0.5 and statistics.median(verify_s) < 0.25 and rate > 5
