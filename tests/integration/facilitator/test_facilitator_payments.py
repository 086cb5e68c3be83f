"""Payments signed by the x402 client, verified and settled by ``kube402 facilitator`` over real HTTP,
through kube402's own FacilitatorClient and through the x402 package's HTTPFacilitatorClient, v1 and v2."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from x402.http import HTTPFacilitatorClient
from x402.schemas import PaymentPayload

from kube402.chain import devchain, rpc
from kube402.chain.facilitator import main
from kube402.x402.facilitator_client import FacilitatorClient

from . import support

pytestmark = pytest.mark.integration


@dataclasses.dataclass
class Verdict:
    ok: bool
    reason: str | None
    payer: str | None
    transaction: str = ""
    network: str = ""


class Clients:
    """Both facilitator clients behind one shape, so every scenario runs through each."""

    def __init__(self, kind: str, kube: FacilitatorClient, sdk: HTTPFacilitatorClient) -> None:
        self.kind, self.kube, self.sdk = kind, kube, sdk

    async def verify(self, payload: Any, reqs: Any) -> Verdict:
        if self.kind == "kube402":
            v = await self.kube.verify(support.raw(payload), support.raw(reqs), version=payload.x402_version)
            return Verdict(v.is_valid, v.invalid_reason, v.payer)
        r = await self.sdk.verify(payload, reqs)
        return Verdict(r.is_valid, r.invalid_reason, r.payer)

    async def settle(self, payload: Any, reqs: Any) -> Verdict:
        if self.kind == "kube402":
            s = await self.kube.settle(support.raw(payload), support.raw(reqs), version=payload.x402_version)
            return Verdict(s.success, s.error_reason, s.payer, s.transaction, s.network)
        r = await self.sdk.settle(payload, reqs)
        return Verdict(r.success, r.error_reason, r.payer, r.transaction, r.network)


@pytest.fixture(params=["kube402", "x402"])
def clients(
    request: pytest.FixtureRequest, kube_client: FacilitatorClient, sdk_client: HTTPFacilitatorClient
) -> Clients:
    return Clients(request.param, kube_client, sdk_client)


async def test_supported_lists_exactly_the_configured_network(
    facilitator: main.Facilitator, kube_client: FacilitatorClient, sdk_client: HTTPFacilitatorClient
) -> None:
    kinds = await kube_client.supported()
    assert kinds.kinds == {(1, "exact", "base-sepolia"), (2, "exact", "eip155:84532")}
    assert kinds.raw["extensions"] == ["kube402-claim"]
    assert kinds.raw["signers"] == {"eip155:*": [facilitator.relayer_address]}
    sdk = await asyncio.to_thread(sdk_client.get_supported)  # sync client; the server shares this loop
    assert sorted((k.x402_version, k.network) for k in sdk.kinds) == [
        (1, "base-sepolia"),
        (2, "eip155:84532"),
    ]


@pytest.mark.parametrize("version", [2, 1])
async def test_a_payment_is_verified_then_settled_and_the_relayer_pays_the_gas(
    clients: Clients,
    facilitator: main.Facilitator,
    dev_chain: devchain.DevChainInfo,
    node: rpc.Rpc,
    version: int,
) -> None:
    parties = await support.funded_buyer(dev_chain)
    reqs = support.requirements(parties.seller, version=version)
    payload = await support.pay(parties.buyer, reqs)
    relayer_eth = await node.eth_balance(facilitator.relayer_address)

    verified = await clients.verify(payload, reqs)
    assert (verified.ok, verified.reason, verified.payer) == (True, None, parties.buyer.address)
    settled = await clients.settle(payload, reqs)
    assert settled.ok, settled.reason
    assert settled.network == (support.NETWORK if version == 2 else support.NETWORK_V1)
    assert settled.payer == parties.buyer.address

    receipt = await node.wait_for_receipt(settled.transaction, timeout=5)
    assert receipt["status"] == 1 and receipt["from"] == facilitator.relayer_address
    assert await support.balance(node, parties.buyer.address) == 1_000_000_000 - support.AMOUNT
    assert await support.balance(node, parties.seller) == support.AMOUNT
    assert await node.eth_balance(parties.buyer.address) == 0  # the buyer never needed gas
    assert await node.eth_balance(facilitator.relayer_address) < relayer_eth


@pytest.mark.parametrize("version", [2, 1])
async def test_a_replayed_payment_is_refused_and_nothing_is_broadcast(
    clients: Clients, dev_chain: devchain.DevChainInfo, node: rpc.Rpc, version: int
) -> None:
    parties = await support.funded_buyer(dev_chain)
    reqs = support.requirements(parties.seller, version=version)
    payload = await support.pay(parties.buyer, reqs)
    assert (await clients.settle(payload, reqs)).ok

    block = await node.block_number()
    replay = await clients.settle(payload, reqs)
    assert (replay.ok, replay.reason, replay.transaction) == (
        False,
        "invalid_exact_evm_nonce_already_used",
        "",
    )
    again = await clients.verify(payload, reqs)
    assert (again.ok, again.reason) == (False, "invalid_exact_evm_nonce_already_used")
    assert await node.block_number() == block
    assert await support.balance(node, parties.seller) == support.AMOUNT


def _wrong_amount(seller: str, version: int) -> Any:
    return support.requirements(seller, version=version, amount=support.AMOUNT + 1)


def _wrong_pay_to(seller: str, version: int) -> Any:
    return support.requirements("0x" + "11" * 20, version=version)


@pytest.mark.parametrize(
    ("version", "mistake", "reason"),
    [
        pytest.param(
            2, _wrong_amount, "invalid_exact_evm_payload_authorization_value_mismatch", id="v2-amount"
        ),
        pytest.param(
            1, _wrong_amount, "invalid_exact_evm_payload_authorization_value_mismatch", id="v1-amount"
        ),
        pytest.param(2, _wrong_pay_to, "invalid_exact_evm_payload_recipient_mismatch", id="v2-pay-to"),
        pytest.param(1, _wrong_pay_to, "invalid_exact_evm_payload_recipient_mismatch", id="v1-pay-to"),
    ],
)
async def test_a_payment_for_other_requirements_is_invalid(
    clients: Clients, dev_chain: devchain.DevChainInfo, node: rpc.Rpc, version: int, mistake: Any, reason: str
) -> None:
    parties = await support.funded_buyer(dev_chain)
    payload = await support.pay(parties.buyer, support.requirements(parties.seller, version=version))
    server_copy = mistake(parties.seller, version)
    if isinstance(payload, PaymentPayload):  # the v2 echo claims the server's terms; the signature does not
        payload = payload.model_copy(
            update={
                "accepted": payload.accepted.model_copy(
                    update={"amount": server_copy.amount, "pay_to": server_copy.pay_to}
                )
            }
        )
    block = await node.block_number()
    verified = await clients.verify(payload, server_copy)
    assert (verified.ok, verified.reason) == (False, reason)
    settled = await clients.settle(payload, server_copy)
    assert (settled.ok, settled.reason, settled.transaction) == (False, reason, "")
    assert await node.block_number() == block


async def test_an_expired_authorization_is_invalid(
    clients: Clients, dev_chain: devchain.DevChainInfo
) -> None:
    parties = await support.funded_buyer(dev_chain)
    reqs = support.requirements(parties.seller, max_timeout=3)  # validBefore = now + 3 < now + 6
    payload = await support.pay(parties.buyer, reqs)
    verified = await clients.verify(payload, reqs)
    assert (verified.ok, verified.reason) == (False, "invalid_exact_evm_payload_authorization_valid_before")


async def test_a_tampered_signature_is_invalid(clients: Clients, dev_chain: devchain.DevChainInfo) -> None:
    parties = await support.funded_buyer(dev_chain)
    reqs = support.requirements(parties.seller)
    payload = await support.pay(parties.buyer, reqs)
    signature = payload.payload["signature"]
    flipped = signature[:10] + ("0" if signature[10] != "0" else "1") + signature[11:]
    tampered = payload.model_copy(update={"payload": {**payload.payload, "signature": flipped}})
    verified = await clients.verify(tampered, reqs)
    assert (verified.ok, verified.reason) == (False, "invalid_exact_evm_payload_signature")


async def test_an_unfunded_payer_is_refused_before_broadcasting(
    clients: Clients, dev_chain: devchain.DevChainInfo, node: rpc.Rpc
) -> None:
    parties = await support.funded_buyer(dev_chain, amount=10)
    reqs = support.requirements(parties.seller)
    payload = await support.pay(parties.buyer, reqs)
    block = await node.block_number()
    settled = await clients.settle(payload, reqs)
    assert (settled.ok, settled.reason) == (False, "invalid_exact_evm_insufficient_balance")
    assert await node.block_number() == block


async def test_verify_commits_nothing(
    clients: Clients, dev_chain: devchain.DevChainInfo, node: rpc.Rpc
) -> None:
    parties = await support.funded_buyer(dev_chain)
    reqs = support.requirements(parties.seller)
    payload = await support.pay(parties.buyer, reqs)
    block = await node.block_number()
    for _ in range(3):
        assert (await clients.verify(payload, reqs)).ok
    assert await node.block_number() == block
    assert (await clients.settle(payload, reqs)).ok
