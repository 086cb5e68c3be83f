"""Settlement under pressure: one relayer nonce sequence for concurrent settles, one transfer per authorization
whatever the duplicates, and late receipts reported as ``settlement_pending`` then resolved on retry."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from x402.http import HTTPFacilitatorClient

from kube402.chain import devchain, rpc
from kube402.chain.facilitator import main
from kube402.x402.facilitator_client import FacilitatorClient

from . import support
from .conftest import StartFacilitator

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def manual_mining(node: rpc.Rpc) -> AsyncIterator[None]:
    """Blocks are mined only by ``evm_mine`` inside the block (anvil's automine off), restored afterwards."""
    await node.request("evm_setAutomine", [False])
    try:
        yield
    finally:
        await node.request("evm_setAutomine", [True])


async def txpool_pending(node: rpc.Rpc) -> int:
    return int((await node.request("txpool_status", []))["pending"], 16)


async def test_fifty_concurrent_settles_use_fifty_consecutive_relayer_nonces(
    start_facilitator: StartFacilitator, dev_chain: devchain.DevChainInfo, node: rpc.Rpc
) -> None:
    fac = await start_facilitator()
    parties = await support.funded_buyer(dev_chain)
    reqs = support.requirements(parties.seller)
    payloads = [await support.pay(parties.buyer, reqs) for _ in range(50)]
    async with FacilitatorClient(fac.url) as client:
        results = await asyncio.gather(
            *(client.settle(support.raw(p), support.raw(reqs), version=2) for p in payloads)
        )
    assert [(r.success, r.error_reason) for r in results] == [(True, None)] * 50
    hashes = {r.transaction for r in results}
    assert len(hashes) == 50
    assert sorted([await support.tx_nonce(node, h) for h in hashes]) == list(range(50))  # a fresh relayer
    for h in hashes:
        assert (await node.wait_for_receipt(h, timeout=5))["status"] == 1
    assert await support.transfers_to(node, parties.seller) == 50
    assert await support.balance(node, parties.seller) == 50 * support.AMOUNT


async def test_twenty_concurrent_copies_of_one_payment_make_one_transfer(
    facilitator: main.Facilitator,
    kube_client: FacilitatorClient,
    sdk_client: HTTPFacilitatorClient,
    dev_chain: devchain.DevChainInfo,
    node: rpc.Rpc,
) -> None:
    parties = await support.funded_buyer(dev_chain)
    reqs = support.requirements(parties.seller)
    payload = await support.pay(parties.buyer, reqs)
    kube = [kube_client.settle(support.raw(payload), support.raw(reqs), version=2) for _ in range(10)]
    sdk = [sdk_client.settle(payload, reqs) for _ in range(10)]
    results: list[Any] = await asyncio.gather(*kube, *sdk)
    outcomes = {(r.success, r.error_reason, r.transaction) for r in results}
    (tx,) = {r.transaction for r in results if r.success}
    assert outcomes <= {(True, None, tx), (False, "invalid_exact_evm_nonce_already_used", "")}
    assert await support.transfers_to(node, parties.seller) == 1
    assert await support.balance(node, parties.seller) == support.AMOUNT


async def test_different_bodies_carrying_one_authorization_make_one_transfer(
    kube_client: FacilitatorClient, dev_chain: devchain.DevChainInfo, node: rpc.Rpc
) -> None:
    parties = await support.funded_buyer(dev_chain)
    reqs = support.requirements(parties.seller)
    payload = support.raw(await support.pay(parties.buyer, reqs))
    other = {**payload, "resource": {"url": "http://elsewhere.test/"}}  # same signature, another body
    v1 = {"x402Version": 1, "scheme": "exact", "network": "base-sepolia", "payload": payload["payload"]}
    v1_reqs = support.raw(support.requirements(parties.seller, version=1))
    calls = [kube_client.settle(p, support.raw(reqs), version=2) for p in (payload, other) * 5]
    calls += [kube_client.settle(v1, v1_reqs, version=1) for _ in range(5)]
    results = await asyncio.gather(*calls)
    assert sum(1 for r in results if r.success) >= 1
    assert {r.error_reason for r in results if not r.success} <= {"invalid_exact_evm_nonce_already_used"}
    assert len({r.transaction for r in results if r.success}) == 1
    assert await support.transfers_to(node, parties.seller) == 1


@pytest.mark.parametrize("version", [2, 1])
async def test_a_late_receipt_is_pending_and_a_retry_resolves_it_without_a_second_broadcast(
    start_facilitator: StartFacilitator, dev_chain: devchain.DevChainInfo, node: rpc.Rpc, version: int
) -> None:
    fac = await start_facilitator(confirmation_timeout=0.3)
    parties = await support.funded_buyer(dev_chain)
    reqs = support.requirements(parties.seller, version=version)
    payload = await support.pay(parties.buyer, reqs)
    network = support.NETWORK if version == 2 else support.NETWORK_V1
    async with FacilitatorClient(fac.url) as client, manual_mining(node):
        first = await client.settle(support.raw(payload), support.raw(reqs), version=version)
        assert (first.success, first.error_reason, first.network) == (False, "settlement_pending", network)
        assert first.pending and first.transaction.startswith("0x")
        retries = await asyncio.gather(
            *(client.settle(support.raw(payload), support.raw(reqs), version=version) for _ in range(5))
        )
        assert {(r.error_reason, r.transaction) for r in retries} == {
            ("settlement_pending", first.transaction)
        }
        assert await txpool_pending(node) == 1  # the one transaction, never re-sent
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(fac.url + "/metrics")).text
        assert "kube402_facilitator_pending_settlements 1.0" in metrics

        await node.request("evm_mine", [])
        resolved = await client.settle(support.raw(payload), support.raw(reqs), version=version)
        assert (resolved.success, resolved.transaction, resolved.network) == (
            True,
            first.transaction,
            network,
        )
    assert await support.transfers_to(node, parties.seller) == 1
    assert await support.balance(node, parties.seller) == support.AMOUNT
    async with FacilitatorClient(fac.url) as client:
        replay = await client.settle(support.raw(payload), support.raw(reqs), version=version)
    assert (replay.success, replay.error_reason) == (False, "invalid_exact_evm_nonce_already_used")


async def test_a_pending_transaction_that_can_never_be_mined_is_settled_again(
    start_facilitator: StartFacilitator, dev_chain: devchain.DevChainInfo, node: rpc.Rpc
) -> None:
    fac = await start_facilitator(confirmation_timeout=0.3)
    parties = await support.funded_buyer(dev_chain)
    reqs = support.requirements(parties.seller)
    payload = await support.pay(parties.buyer, reqs)
    async with FacilitatorClient(fac.url) as client:
        async with manual_mining(node):
            first = await client.settle(support.raw(payload), support.raw(reqs), version=2)
            assert first.pending
            dropped_nonce = await support.tx_nonce(node, first.transaction)
            await node.request("anvil_dropTransaction", [first.transaction])
            await node.request("anvil_setNonce", [fac.relayer_address, hex(dropped_nonce + 1)])
        second = await client.settle(support.raw(payload), support.raw(reqs), version=2)
    assert second.success and second.transaction != first.transaction
    assert await support.transfers_to(node, parties.seller) == 1
