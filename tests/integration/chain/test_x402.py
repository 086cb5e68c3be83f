"""The x402 package's own client and facilitator pay and settle against the local chain as if it were Base Sepolia."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from x402 import x402Client, x402Facilitator
from x402.mechanisms.evm import EthAccountSigner, FacilitatorWeb3Signer
from x402.mechanisms.evm.exact import register_exact_evm_client, register_exact_evm_facilitator
from x402.mechanisms.evm.exact.server import ExactEvmScheme as ExactEvmServerScheme
from x402.schemas import PaymentPayload, PaymentRequired, PaymentRequirements

from kube402.chain import devchain, rpc, token

pytestmark = pytest.mark.integration

NETWORK = "eip155:84532"


def _requirements(pay_to: str) -> PaymentRequirements:
    """What a resource server derives from ``price="$0.001"`` on Base Sepolia, with x402's own defaults."""
    price = ExactEvmServerScheme().parse_price("$0.001", NETWORK)  # type: ignore[no-untyped-call]
    return PaymentRequirements(
        scheme="exact",
        network=NETWORK,
        asset=price.asset,
        amount=price.amount,
        pay_to=pay_to,
        max_timeout_seconds=60,
        extra=price.extra or {},
    )


async def _pay(buyer: LocalAccount, requirements: PaymentRequirements) -> PaymentPayload:
    client = register_exact_evm_client(
        x402Client(), EthAccountSigner(buyer)
    )  # default spend controls stay on
    payload = await client.create_payment_payload(PaymentRequired(accepts=[requirements]))
    assert isinstance(payload, PaymentPayload)
    return payload


def _facilitator(relayer: LocalAccount, rpc_url: str) -> x402Facilitator:
    signer = FacilitatorWeb3Signer(
        private_key=relayer.key.hex(), rpc_url=rpc_url, confirmation_timeout_seconds=10
    )
    return register_exact_evm_facilitator(
        x402Facilitator(), signer, networks=NETWORK, simulate_in_settle=True
    )


async def test_x402_verifies_and_settles_at_the_canonical_usdc(
    node: rpc.Rpc, chain: devchain.DevChainInfo, buyer: LocalAccount, relayer: LocalAccount
) -> None:
    seller = Account.create().address
    requirements = _requirements(seller)
    assert (requirements.asset, requirements.amount, requirements.extra) == (
        chain.token,
        "1000",
        {"name": "USDC", "version": "2"},
    )
    await devchain.mint(chain, buyer.address, 1_000_000_000)
    payload = await _pay(buyer, requirements)
    facilitator = _facilitator(relayer, chain.rpc_url)

    verified = await facilitator.verify(payload, requirements)
    assert verified.is_valid, verified.invalid_reason
    assert verified.payer == buyer.address

    relayer_eth = await node.eth_balance(relayer.address)
    settled = await facilitator.settle(payload, requirements)
    assert settled.success, settled.error_reason
    assert settled.network == NETWORK and settled.transaction.startswith("0x")
    receipt = await node.wait_for_receipt(settled.transaction, timeout=5)
    assert receipt["status"] == 1 and receipt["from"] == relayer.address
    usdc = token.Token(node, chain.token)
    assert await usdc.balance_of(buyer.address) == 999_999_000
    assert await usdc.balance_of(seller) == 1_000
    assert await node.eth_balance(buyer.address) == 0  # the buyer never needed gas
    assert await node.eth_balance(relayer.address) < relayer_eth

    block = await node.block_number()
    replay = await facilitator.settle(payload, requirements)
    assert (replay.success, replay.error_reason) == (False, "invalid_exact_evm_nonce_already_used")
    assert await node.block_number() == block  # simulate_in_settle: nothing was broadcast


async def test_x402_maps_an_unfunded_payer_to_insufficient_balance(
    chain: devchain.DevChainInfo, buyer: LocalAccount, relayer: LocalAccount
) -> None:
    requirements = _requirements(Account.create().address)
    payload = await _pay(buyer, requirements)
    verified = await _facilitator(relayer, chain.rpc_url).verify(payload, requirements)
    assert (verified.is_valid, verified.invalid_reason) == (False, "invalid_exact_evm_insufficient_balance")
