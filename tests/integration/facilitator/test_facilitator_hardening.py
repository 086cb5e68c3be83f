"""Issue 9 against a real ``kube402 facilitator`` over HTTP on anvil: defect 11 (payments from other clients:
lowercase addresses, ``validAfter`` in the past on an idle chain) and defect 2's facilitator half (a success
it returned is never forgotten: the same body settled again answers the same success, without a second
transfer)."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import httpx
import pytest

from kube402.chain import devchain, rpc, token
from kube402.x402.facilitator_client import FacilitatorClient

from . import support

pytestmark = pytest.mark.integration


async def signed_payload(
    parties: support.Parties, reqs: Any, *, valid_after: int, valid_before: int
) -> dict[str, Any]:
    """A v2 payload signed here (as another client would, with its own window), not by the x402 client."""
    auth = token.Authorization(
        from_=parties.buyer.address,
        to=parties.seller,
        value=support.AMOUNT,
        valid_after=valid_after,
        valid_before=valid_before,
        nonce=secrets.token_bytes(32),
    )
    domain = token.Domain(
        name="USDC", version="2", chain_id=84532, verifying_contract=devchain.BASE_SEPOLIA_USDC
    )
    signature = token.sign_authorization(parties.buyer, auth, domain=domain)
    return {
        "x402Version": 2,
        "accepted": support.raw(reqs),
        "payload": {
            "signature": "0x" + signature.hex(),
            "authorization": {
                "from": parties.buyer.address,
                "to": parties.seller,
                "value": str(support.AMOUNT),
                "validAfter": str(valid_after),
                "validBefore": str(valid_before),
                "nonce": "0x" + auth.nonce.hex(),
            },
        },
    }


class TestDefect11PaymentsFromOtherClients:
    async def test_lowercase_addresses_verify_and_settle(
        self, kube_client: FacilitatorClient, dev_chain: devchain.DevChainInfo, node: rpc.Rpc
    ) -> None:
        """x402-reqwest writes from/to (and may write payTo/asset) as lowercase hex: valid data."""
        parties = await support.funded_buyer(dev_chain)
        reqs = support.requirements(parties.seller)
        payload = support.raw(await support.pay(parties.buyer, reqs))
        auth = payload["payload"]["authorization"]
        auth["from"], auth["to"] = auth["from"].lower(), auth["to"].lower()
        server = support.raw(reqs)
        server["payTo"], server["asset"] = server["payTo"].lower(), server["asset"].lower()
        payload["accepted"] = dict(server)
        before = await support.balance(node, parties.seller)
        v = await kube_client.verify(payload, server, version=2)
        assert v.is_valid, v.raw
        s = await kube_client.settle(payload, server, version=2)
        assert s.success, s.raw
        assert await support.balance(node, parties.seller) == before + support.AMOUNT

    async def test_valid_after_in_the_past_on_an_idle_chain(
        self, kube_client: FacilitatorClient, dev_chain: devchain.DevChainInfo, node: rpc.Rpc
    ) -> None:
        """``validAfter`` ≤ now but later than the last (idle) block: valid now, and valid when mined."""
        parties = await support.funded_buyer(dev_chain)
        latest = int((await node.run(lambda: node.w3.eth.get_block("latest")))["timestamp"])
        while time.time() < latest + 2:  # wall time moves on; the idle chain's latest block does not
            await _tick()
        valid_after = latest + 1  # in the past for the wall clock, in the future for the latest block
        assert valid_after < time.time()
        reqs = support.requirements(parties.seller)
        payload = await signed_payload(
            parties, reqs, valid_after=valid_after, valid_before=int(time.time()) + 60
        )
        v = await kube_client.verify(payload, support.raw(reqs), version=2)
        assert v.is_valid, v.raw
        s = await kube_client.settle(payload, support.raw(reqs), version=2)
        assert s.success, s.raw


class TestDefect2FacilitatorNeverForgetsASuccess:
    async def test_same_body_settled_again_answers_the_same_success(
        self, kube_client: FacilitatorClient, dev_chain: devchain.DevChainInfo, node: rpc.Rpc
    ) -> None:
        parties = await support.funded_buyer(dev_chain)
        reqs = support.requirements(parties.seller)
        payload = support.raw(await support.pay(parties.buyer, reqs))
        claim = "request-" + secrets.token_hex(8)
        first = await kube_client.settle(payload, support.raw(reqs), version=2, claim=claim)
        assert first.success, first.raw
        # the verifier's deadline passed before it read that answer; it retries with the same payload
        again = await kube_client.settle(payload, support.raw(reqs), version=2, claim=claim)
        assert again.success, again.raw
        assert again.transaction == first.transaction
        assert await support.transfers_to(node, parties.seller) == 1
        # another request (another claim, or none) replaying that body is refused: one payment, one request
        other = await kube_client.settle(payload, support.raw(reqs), version=2, claim="other-" + "x" * 12)
        assert not other.success and other.error_reason == "duplicate_settlement"
        bare = await kube_client.settle(payload, support.raw(reqs), version=2)
        assert not bare.success


async def _tick() -> None:
    await asyncio.sleep(0.1)


class TestDefect8GasGriefing:
    async def test_twenty_concurrent_authorizations_beyond_the_balance(
        self, start_facilitator: Any, dev_chain: devchain.DevChainInfo, node: rpc.Rpc
    ) -> None:
        """20 authorizations of one payer whose sum is 4x its balance, settled at once: only the affordable
        ones are submitted, and every relayer transaction is a successful transfer (no gas on reverts)."""
        fac = await start_facilitator()
        parties = await support.funded_buyer(dev_chain, amount=5 * support.AMOUNT)
        reqs = support.requirements(parties.seller)
        payloads = [await support.pay(parties.buyer, reqs) for _ in range(20)]
        async with FacilitatorClient(fac.url) as client:
            results = await asyncio.gather(
                *(client.settle(support.raw(p), support.raw(reqs), version=2) for p in payloads)
            )
        assert sum(r.success for r in results) == 5
        relayer = fac.service.relayer_address
        sent = await node.run(lambda: node.w3.eth.get_transaction_count(relayer))
        assert sent == 5, f"{sent} relayer transactions for 5 transfers"  # nothing doomed was broadcast
        for r in results:
            if r.success:
                assert (await node.wait_for_receipt(r.transaction, timeout=5))["status"] == 1
        assert await support.balance(node, parties.seller) == 5 * support.AMOUNT

    async def test_settle_and_verify_need_the_bearer_token(
        self, start_facilitator: Any, dev_chain: devchain.DevChainInfo
    ) -> None:
        fac = await start_facilitator(auth_token="t" * 32)
        parties = await support.funded_buyer(dev_chain)
        reqs = support.requirements(parties.seller)
        payload, requirements = support.raw(await support.pay(parties.buyer, reqs)), support.raw(reqs)
        body = {"x402Version": 2, "paymentPayload": payload, "paymentRequirements": requirements}
        async with httpx.AsyncClient() as http:
            for path in ("/verify", "/settle"):
                assert (await http.post(fac.url + path, json=body)).status_code == 401
                wrong = {"authorization": "Bearer " + "u" * 32}
                assert (await http.post(fac.url + path, json=body, headers=wrong)).status_code == 401
            assert (await http.get(fac.url + "/supported")).status_code == 200
        async with FacilitatorClient(fac.url, authorization="Bearer " + "t" * 32) as client:
            s = await client.settle(payload, requirements, version=2)
            assert s.success, s.raw

    async def test_an_asset_outside_the_chain_table_is_refused_before_any_chain_work(
        self, start_facilitator: Any, dev_chain: devchain.DevChainInfo, node: rpc.Rpc
    ) -> None:
        fac = await start_facilitator()
        parties = await support.funded_buyer(dev_chain)
        reqs = support.raw(support.requirements(parties.seller))
        payload = support.raw(await support.pay(parties.buyer, support.requirements(parties.seller)))
        reqs["asset"] = payload["accepted"]["asset"] = "0x" + "5a" * 20  # the attacker's own contract
        async with FacilitatorClient(fac.url) as client:
            v = await client.verify(payload, reqs, version=2)
            s = await client.settle(payload, reqs, version=2)
        assert not v.is_valid and v.invalid_reason == "asset_not_allowed"
        assert not s.success and s.error_reason == "asset_not_allowed"
        relayer = fac.service.relayer_address
        assert await node.run(lambda: node.w3.eth.get_transaction_count(relayer)) == 0

    async def test_gas_price_above_the_cap_broadcasts_nothing(
        self, start_facilitator: Any, dev_chain: devchain.DevChainInfo, node: rpc.Rpc
    ) -> None:
        fac = await start_facilitator(max_gas_price=1)  # 1 wei: below anything the node asks
        parties = await support.funded_buyer(dev_chain)
        reqs = support.requirements(parties.seller)
        payload = support.raw(await support.pay(parties.buyer, reqs))
        async with httpx.AsyncClient() as http:
            r = await http.post(
                fac.url + "/settle",
                json={"x402Version": 2, "paymentPayload": payload, "paymentRequirements": support.raw(reqs)},
            )
        assert r.status_code == 503 and r.headers.get("retry-after")
        relayer = fac.service.relayer_address
        assert await node.run(lambda: node.w3.eth.get_transaction_count(relayer)) == 0

    async def test_smart_wallet_signatures_only_when_enabled(
        self, start_facilitator: Any, dev_chain: devchain.DevChainInfo
    ) -> None:
        fac = await start_facilitator()
        parties = await support.funded_buyer(dev_chain)
        reqs = support.requirements(parties.seller)
        payload = support.raw(await support.pay(parties.buyer, reqs))
        payload["payload"]["signature"] += "00" * 32  # longer than 65 bytes: EIP-1271 / ERC-6492 form
        async with FacilitatorClient(fac.url) as client:
            v = await client.verify(payload, support.raw(reqs), version=2)
            s = await client.settle(payload, support.raw(reqs), version=2)
        assert not v.is_valid and v.invalid_reason == "smart_wallet_not_enabled"
        assert not s.success and s.error_reason == "smart_wallet_not_enabled"


async def test_defect8_a_stuck_transaction_is_replaced_with_the_same_nonce_and_a_higher_fee(
    start_facilitator: Any, dev_chain: devchain.DevChainInfo, node: rpc.Rpc
) -> None:
    """A settlement transaction that stays unmined past a full confirmation wait is re-broadcast with the same
    nonce and a bumped fee (a stuck nonce would stall every later settle); whichever is mined settles it."""
    fac = await start_facilitator(confirmation_timeout=0.5, replace_after=0.5)
    parties = await support.funded_buyer(dev_chain)
    reqs = support.requirements(parties.seller)
    payload = support.raw(await support.pay(parties.buyer, reqs))
    claim = "stuck-request-" + secrets.token_hex(4)
    async with FacilitatorClient(fac.url) as client:
        await node.request("evm_setAutomine", [False])
        try:
            first = await client.settle(payload, support.raw(reqs), version=2, claim=claim)
            assert first.error_reason == "settlement_pending", first.raw
            original = await node.run(lambda: node.w3.eth.get_transaction(first.transaction))  # type: ignore[arg-type]
            second = await client.settle(payload, support.raw(reqs), version=2, claim=claim)
            assert second.error_reason == "settlement_pending", second.raw
            assert second.transaction != first.transaction
            replacement = await node.run(lambda: node.w3.eth.get_transaction(second.transaction))  # type: ignore[arg-type]
            assert replacement["nonce"] == original["nonce"]
            assert replacement["gasPrice"] > original["gasPrice"]
            await node.request("evm_mine", [])
        finally:
            await node.request("evm_setAutomine", [True])
        done = await client.settle(payload, support.raw(reqs), version=2, claim=claim)
    assert done.success and done.transaction == second.transaction, done.raw
    assert await support.transfers_to(node, parties.seller) == 1
    relayer = fac.service.relayer_address
    assert await node.run(lambda: node.w3.eth.get_transaction_count(relayer)) == 1
