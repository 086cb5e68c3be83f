"""Issue 9 against a real ``kube402 facilitator`` over HTTP on anvil: defect 11 (payments from other clients:
lowercase addresses, ``validAfter`` in the past on an idle chain) and defect 2's facilitator half (a success
it returned is never forgotten: the same body settled again answers the same success, without a second
transfer)."""

from __future__ import annotations

import secrets
import time
from typing import Any

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
    import asyncio

    await asyncio.sleep(0.1)
