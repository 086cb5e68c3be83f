"""TestUSDC at the canonical Base Sepolia address behaves like Circle's FiatTokenV2 USDC."""

from __future__ import annotations

import os
import time

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount

from kube402.chain import devchain, rpc, token

pytestmark = pytest.mark.integration

CANONICAL_USDC = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _auth(
    buyer: LocalAccount,
    *,
    value: int = 1000,
    valid_after: int = 0,
    valid_before: int | None = None,
    to: str = "0x" + "5e" * 20,
) -> token.Authorization:
    return token.Authorization(
        from_=buyer.address,
        to=to,
        value=value,
        valid_after=valid_after,
        valid_before=valid_before or int(time.time()) + 3600,
        nonce=os.urandom(32),
    )


def _domain() -> token.Domain:
    return token.Domain("USDC", "2", 84532, CANONICAL_USDC)


@pytest.fixture
def usdc(node: rpc.Rpc) -> token.Token:
    return token.Token(node, CANONICAL_USDC)


async def test_the_canonical_address_holds_usdc_with_base_sepolias_domain(
    usdc: token.Token, chain: devchain.DevChainInfo
) -> None:
    assert chain.token == CANONICAL_USDC
    assert (await usdc.name(), await usdc.symbol(), await usdc.version(), await usdc.decimals()) == (
        "USDC",
        "USDC",
        "2",
        6,
    )
    assert await usdc.owner() == chain.owner.address
    eth_account_domain_hash = encode_typed_data(
        full_message=_auth(Account.create()).typed_data(_domain())
    ).header
    assert await usdc.domain_separator() == eth_account_domain_hash
    fields, name, version, chain_id, verifying, salt, extensions = await usdc.rpc.run(
        usdc.contract.functions.eip712Domain().call
    )
    assert (fields, name, version, chain_id, verifying, salt, extensions) == (
        b"\x0f",
        "USDC",
        "2",
        84532,
        CANONICAL_USDC,
        bytes(32),
        [],
    )
    assert await usdc.domain() == _domain()


async def test_mint_is_owner_only_and_counts_atomic_units(
    usdc: token.Token, chain: devchain.DevChainInfo, buyer: LocalAccount, relayer: LocalAccount
) -> None:
    await devchain.mint(chain, buyer.address, 1_500_000)
    assert await usdc.balance_of(buyer.address) == 1_500_000
    assert await usdc.total_supply() == 1_500_000
    with pytest.raises(rpc.Reverted, match="caller is not the owner"):
        await usdc.mint(buyer.address, 1, signer=rpc.LocalSigner(relayer))
    with pytest.raises(ValueError):
        await usdc.mint(buyer.address, 1.5, signer=rpc.LocalSigner(chain.owner))  # type: ignore[arg-type]


@pytest.mark.parametrize("split_signature", [True, False], ids=["v-r-s overload", "bytes overload"])
async def test_transfer_with_authorization_moves_funds_and_the_relayer_pays_gas(
    usdc: token.Token,
    node: rpc.Rpc,
    chain: devchain.DevChainInfo,
    buyer: LocalAccount,
    relayer: LocalAccount,
    split_signature: bool,
) -> None:
    await devchain.mint(chain, buyer.address, 10_000)
    await devchain.set_eth_balance(chain.rpc_url, buyer.address, 10**18)
    seller = Account.create().address
    auth = _auth(buyer, to=seller)
    signature = token.sign_authorization(buyer, auth, domain=_domain())
    relayer_eth = await node.eth_balance(relayer.address)

    receipt = await usdc.transfer_with_authorization(
        auth, signature, signer=rpc.LocalSigner(relayer), split_signature=split_signature
    )

    assert receipt["status"] == 1
    assert await usdc.balance_of(buyer.address) == 9_000
    assert await usdc.balance_of(seller) == 1_000
    assert await usdc.authorization_state(buyer.address, auth.nonce) is True
    assert await node.eth_balance(buyer.address) == 10**18
    assert await node.eth_balance(relayer.address) < relayer_eth
    assert receipt["from"] == relayer.address


async def test_v_of_0_or_1_is_normalised(
    usdc: token.Token, chain: devchain.DevChainInfo, buyer: LocalAccount, relayer: LocalAccount
) -> None:
    await devchain.mint(chain, buyer.address, 1_000)
    auth = _auth(buyer)
    signature = token.sign_authorization(buyer, auth, domain=_domain())
    lowered = signature[:64] + bytes([signature[64] - 27])
    await usdc.transfer_with_authorization(auth, lowered, signer=rpc.LocalSigner(relayer))
    assert await usdc.balance_of(buyer.address) == 0


def _high_s(signature: bytes) -> bytes:
    s = int.from_bytes(signature[32:64], "big")
    return signature[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - signature[64]])


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("expired", "FiatTokenV2: authorization is expired"),
        ("not yet valid", "FiatTokenV2: authorization is not yet valid"),
        ("replay", "FiatTokenV2: authorization is used or canceled"),
        ("canceled", "FiatTokenV2: authorization is used or canceled"),
        ("wrong signer", "FiatTokenV2: invalid signature"),
        ("tampered amount", "FiatTokenV2: invalid signature"),
        ("high s", "FiatTokenV2: invalid signature"),
        ("insufficient balance", "ERC20: transfer amount exceeds balance"),
    ],
)
async def test_each_failure_reverts_with_fiattokenv2s_string(
    usdc: token.Token,
    chain: devchain.DevChainInfo,
    buyer: LocalAccount,
    relayer: LocalAccount,
    case: str,
    reason: str,
) -> None:
    await devchain.mint(chain, buyer.address, 500 if case == "insufficient balance" else 5_000)
    now = int(time.time())
    auth = {
        "expired": _auth(buyer, valid_before=now - 10),
        "not yet valid": _auth(buyer, valid_after=now + 3600),
    }.get(case) or _auth(buyer)
    signer = Account.create() if case == "wrong signer" else buyer
    signature = token.sign_authorization(signer, auth, domain=_domain())
    relay = rpc.LocalSigner(relayer)
    if case == "replay":
        await usdc.transfer_with_authorization(auth, signature, signer=relay)
    if case == "canceled":
        cancel = buyer.sign_typed_data(
            full_message={
                "types": {
                    "EIP712Domain": auth.typed_data(_domain())["types"]["EIP712Domain"],
                    "CancelAuthorization": [
                        {"name": "authorizer", "type": "address"},
                        {"name": "nonce", "type": "bytes32"},
                    ],
                },
                "primaryType": "CancelAuthorization",
                "domain": _domain().as_dict(),
                "message": {"authorizer": buyer.address, "nonce": auth.nonce},
            }
        ).signature
        fn = usdc.contract.get_function_by_signature("cancelAuthorization(address,bytes32,bytes)")
        await usdc.rpc.transact(relay, fn(buyer.address, auth.nonce, bytes(cancel)))
        assert await usdc.authorization_state(buyer.address, auth.nonce) is True
    if case == "tampered amount":
        auth = token.Authorization(
            auth.from_, auth.to, auth.value + 1, auth.valid_after, auth.valid_before, auth.nonce
        )
    if case == "high s":
        signature = _high_s(signature)

    with pytest.raises(rpc.Reverted) as err:
        await usdc.transfer_with_authorization(auth, signature, signer=relay)
    assert err.value.reason == reason


async def test_receive_with_authorization_must_be_called_by_the_payee(
    usdc: token.Token, chain: devchain.DevChainInfo, buyer: LocalAccount, relayer: LocalAccount
) -> None:
    await devchain.mint(chain, buyer.address, 1_000)
    payee = devchain.dev_account(4)
    auth = _auth(buyer, to=payee.address)
    signature = token.sign_authorization(buyer, auth, domain=_domain(), kind="ReceiveWithAuthorization")
    receive = usdc.contract.get_function_by_signature(
        "receiveWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)"
    )
    call = receive(*auth.args(), signature[64], signature[:32], signature[32:64])
    with pytest.raises(rpc.Reverted) as err:
        await usdc.rpc.transact(rpc.LocalSigner(relayer), call)
    assert err.value.reason == "FiatTokenV2: caller must be the payee"
    await usdc.rpc.transact(rpc.LocalSigner(payee), call)
    assert await usdc.balance_of(payee.address) == 1_000


async def test_a_long_eip712_name_is_written_to_storage_correctly(node: rpc.Rpc) -> None:
    name = "A Rather Long Stablecoin Name For Slot Tests"
    address = "0x" + "a1" * 20
    await devchain.install(
        node,
        name="TestUSDC",
        at=address,
        constructor_args=("x", "y"),
        storage={"_name": name, "_symbol": "LONG"},
        deployer=rpc.LocalSigner(devchain.dev_account(0)),
    )
    moved = token.Token(node, address)
    assert (await moved.name(), await moved.symbol()) == (name, "LONG")
    assert await moved.domain_separator() == token.Domain(name, "2", 84532, address).separator()


# Hand-assembled wallets: PUSH4 0x1626ba7e, PUSH1 224, SHL, PUSH1 0, MSTORE, PUSH1 32, PUSH1 0, RETURN answers
# every call with the EIP-1271 magic value; PUSH1 0, PUSH1 0, RETURN answers with nothing.
APPROVING_WALLET = bytes.fromhex("631626ba7e60e01b60005260206000f3")
REFUSING_WALLET = bytes.fromhex("60006000f3")


@pytest.mark.parametrize(
    ("code", "reason"),
    [(APPROVING_WALLET, None), (REFUSING_WALLET, "FiatTokenV2: invalid signature")],
    ids=["wallet approves", "wallet refuses"],
)
async def test_a_contract_payer_is_checked_with_eip1271(
    usdc: token.Token,
    node: rpc.Rpc,
    chain: devchain.DevChainInfo,
    relayer: LocalAccount,
    code: bytes,
    reason: str | None,
) -> None:
    wallet = Account.create().address
    await node.request("anvil_setCode", [wallet, "0x" + code.hex()])
    await devchain.mint(chain, wallet, 1_000)
    auth = token.Authorization(
        from_=wallet,
        to="0x" + "5e" * 20,
        value=1_000,
        valid_after=0,
        valid_before=int(time.time()) + 3600,
        nonce=os.urandom(32),
    )
    send = usdc.transfer_with_authorization(auth, b"opaque wallet proof", signer=rpc.LocalSigner(relayer))
    if reason is None:
        await send
        assert await usdc.balance_of(wallet) == 0
    else:
        with pytest.raises(rpc.Reverted) as err:
            await send
        assert err.value.reason == reason


async def test_authorization_outcome_reads_the_chain(
    usdc: token.Token,
    node: rpc.Rpc,
    chain: devchain.DevChainInfo,
    buyer: LocalAccount,
    relayer: LocalAccount,
) -> None:
    """Issue 9, defect 2: how the verifier resolves an unknown settlement from ``rpcURLs``."""
    await devchain.mint(chain, buyer.address, 10_000)
    auth = _auth(buyer, to=Account.create().address)
    assert await usdc.authorization_outcome(buyer.address, auth.nonce) == token.AuthorizationOutcome("unused")
    signature = token.sign_authorization(buyer, auth, domain=_domain())
    receipt = await usdc.transfer_with_authorization(auth, signature, signer=rpc.LocalSigner(relayer))
    outcome = await usdc.authorization_outcome(buyer.address.lower(), auth.nonce)
    assert outcome.state == "used"
    assert outcome.tx_hash == "0x" + bytes(receipt["transactionHash"]).hex()
