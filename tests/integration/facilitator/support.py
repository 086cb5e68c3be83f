"""Helpers for the facilitator's integration tests: requirements, payments signed by the x402 client, chain reads."""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from x402 import x402Client
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.schemas import (
    PaymentPayload,
    PaymentPayloadV1,
    PaymentRequired,
    PaymentRequiredV1,
    PaymentRequirements,
    PaymentRequirementsV1,
)

from kube402.chain import devchain, rpc, token

NETWORK: Final = "eip155:84532"
NETWORK_V1: Final = "base-sepolia"
AMOUNT: Final = 1000
TRANSFER_TOPIC: Final = "0x" + Web3.keccak(text="Transfer(address,address,uint256)").hex().removeprefix("0x")
EXTRA: Final = {"name": "USDC", "version": "2"}


def requirements(
    pay_to: str, *, version: int = 2, amount: int = AMOUNT, max_timeout: int = 60
) -> PaymentRequirements | PaymentRequirementsV1:
    """The seller's own requirements for the canonical Base Sepolia USDC."""
    if version == 1:
        return PaymentRequirementsV1(
            scheme="exact",
            network=NETWORK_V1,
            max_amount_required=str(amount),
            resource="http://seller.test/paid",
            pay_to=pay_to,
            max_timeout_seconds=max_timeout,
            asset=devchain.BASE_SEPOLIA_USDC,
            extra=dict(EXTRA),
        )
    return PaymentRequirements(
        scheme="exact",
        network=NETWORK,
        asset=devchain.BASE_SEPOLIA_USDC,
        amount=str(amount),
        pay_to=pay_to,
        max_timeout_seconds=max_timeout,
        extra=dict(EXTRA),
    )


async def pay(
    buyer: LocalAccount, reqs: PaymentRequirements | PaymentRequirementsV1
) -> PaymentPayload | PaymentPayloadV1:
    """A payment signed by the x402 package's own client (default spend controls: the canonical USDC)."""
    client = register_exact_evm_client(x402Client(), EthAccountSigner(buyer))
    if isinstance(reqs, PaymentRequirementsV1):
        return await client.create_payment_payload(PaymentRequiredV1(accepts=[reqs]))
    return await client.create_payment_payload(PaymentRequired(accepts=[reqs]))


def raw(model: Any) -> dict[str, Any]:
    out: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return out


@dataclasses.dataclass
class Parties:
    buyer: LocalAccount
    seller: str


async def funded_buyer(chain: devchain.DevChainInfo, amount: int = 1_000_000_000) -> Parties:
    buyer: LocalAccount = Account.create()
    await devchain.mint(chain, buyer.address, amount)
    return Parties(buyer=buyer, seller=Account.create().address)


async def balance(node: rpc.Rpc, address: str) -> int:
    return await token.Token(node, devchain.BASE_SEPOLIA_USDC).balance_of(address)


async def transfers_to(node: rpc.Rpc, seller: str) -> int:
    """How many USDC Transfer events credit ``seller`` (over the whole chain)."""
    topic_to = "0x" + "00" * 12 + seller.lower().removeprefix("0x")
    logs = await node.run(
        lambda: node.w3.eth.get_logs(
            {
                "fromBlock": 0,
                "toBlock": "latest",
                "address": Web3.to_checksum_address(devchain.BASE_SEPOLIA_USDC),
                "topics": [TRANSFER_TOPIC, None, topic_to],
            }
        )
    )
    return len(logs)


async def tx_nonce(node: rpc.Rpc, tx_hash: str) -> int:
    tx = await node.run(lambda: node.w3.eth.get_transaction(tx_hash))  # type: ignore[arg-type]
    return int(tx["nonce"])
