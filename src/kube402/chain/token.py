"""Typed binding for an EIP-3009 USD-Coin token: Circle's FiatTokenV2 USDC or kube402's TestUSDC stand-in.

Why: kube402 reads ``name()``/``version()`` to check the pinned EIP-712 domain (X402.md section 7), reads
balances and ``authorizationState`` to observe payments, and on local chains mints test funds. It uses the
committed TestUSDC ABI, whose FiatTokenV2 subset is identical to USDC's, so the same binding works against
the real token. Amounts are ``int`` atomic units (6 decimals for USDC), never floats.

:class:`Authorization` and :func:`sign_authorization` build and sign the EIP-3009 typed data with eth-account;
production buyers sign through the x402 library, these serve tests, benchmarks and the relayer's checks.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final, Literal

from eth_abi import abi
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from kube402.chain import artifacts, rpc

__all__ = [
    "CANCEL_AUTHORIZATION_TYPEHASH",
    "DOMAIN_TYPEHASH",
    "RECEIVE_WITH_AUTHORIZATION_TYPEHASH",
    "TRANSFER_WITH_AUTHORIZATION_TYPEHASH",
    "Authorization",
    "AuthorizationOutcome",
    "Domain",
    "Token",
    "sign_authorization",
]

_AUTH_FIELDS: Final = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]
_DOMAIN_FIELDS: Final = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


def _type_string(primary: str, fields: list[dict[str, str]]) -> str:
    return f"{primary}({','.join(f['type'] + ' ' + f['name'] for f in fields)})"


DOMAIN_TYPEHASH: Final = bytes(Web3.keccak(text=_type_string("EIP712Domain", _DOMAIN_FIELDS)))
TRANSFER_WITH_AUTHORIZATION_TYPEHASH: Final = bytes(
    Web3.keccak(text=_type_string("TransferWithAuthorization", _AUTH_FIELDS))
)
RECEIVE_WITH_AUTHORIZATION_TYPEHASH: Final = bytes(
    Web3.keccak(text=_type_string("ReceiveWithAuthorization", _AUTH_FIELDS))
)
CANCEL_AUTHORIZATION_TYPEHASH: Final = bytes(
    Web3.keccak(text="CancelAuthorization(address authorizer,bytes32 nonce)")
)

AuthorizationKind = Literal["TransferWithAuthorization", "ReceiveWithAuthorization"]


@dataclasses.dataclass(frozen=True, slots=True)
class Domain:
    """An EIP-712 domain of the form USDC uses."""

    name: str
    version: str
    chain_id: int
    verifying_contract: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "chainId": self.chain_id,
            "verifyingContract": Web3.to_checksum_address(self.verifying_contract),
        }

    def separator(self) -> bytes:
        """keccak256 of the encoded domain: what ``DOMAIN_SEPARATOR()`` returns on chain."""
        encoded = abi.encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                DOMAIN_TYPEHASH,
                Web3.keccak(text=self.name),
                Web3.keccak(text=self.version),
                self.chain_id,
                Web3.to_checksum_address(self.verifying_contract),
            ],
        )
        return bytes(Web3.keccak(encoded))


@dataclasses.dataclass(frozen=True, slots=True)
class Authorization:
    """An EIP-3009 transfer (or receive) authorization; ``value`` in atomic units, times in unix seconds."""

    from_: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: bytes
    """32 random bytes; unique per authorizer."""

    def message(self) -> dict[str, Any]:
        return {
            "from": Web3.to_checksum_address(self.from_),
            "to": Web3.to_checksum_address(self.to),
            "value": self.value,
            "validAfter": self.valid_after,
            "validBefore": self.valid_before,
            "nonce": self.nonce,
        }

    def typed_data(
        self, domain: Domain, *, kind: AuthorizationKind = "TransferWithAuthorization"
    ) -> dict[str, Any]:
        """The full EIP-712 message, as eth-account's ``sign_typed_data(full_message=…)`` takes it."""
        return {
            "types": {"EIP712Domain": _DOMAIN_FIELDS, kind: _AUTH_FIELDS},
            "primaryType": kind,
            "domain": domain.as_dict(),
            "message": self.message(),
        }

    def args(self) -> tuple[str, str, int, int, int, bytes]:
        """The first six arguments of ``transferWithAuthorization``."""
        m = self.message()
        return (m["from"], m["to"], self.value, self.valid_after, self.valid_before, self.nonce)


def sign_authorization(
    account: LocalAccount,
    auth: Authorization,
    *,
    domain: Domain,
    kind: AuthorizationKind = "TransferWithAuthorization",
) -> bytes:
    """65 bytes r ‖ s ‖ v (v ∈ {27, 28}) signed by ``account`` over the authorization."""
    return bytes(account.sign_typed_data(full_message=auth.typed_data(domain, kind=kind)).signature)


class Token:
    """The token at ``address``, read and written through ``node``."""

    def __init__(self, node: rpc.Rpc, address: str) -> None:
        self.rpc = node
        self.address = Web3.to_checksum_address(address)
        self.contract = node.contract(self.address, artifacts.load(artifacts.TOKEN).abi)

    async def name(self) -> str:
        return str(await self.rpc.run(self.contract.functions.name().call))

    async def symbol(self) -> str:
        return str(await self.rpc.run(self.contract.functions.symbol().call))

    async def version(self) -> str:
        return str(await self.rpc.run(self.contract.functions.version().call))

    async def decimals(self) -> int:
        return int(await self.rpc.run(self.contract.functions.decimals().call))

    async def total_supply(self) -> int:
        return int(await self.rpc.run(self.contract.functions.totalSupply().call))

    async def owner(self) -> str:
        """TestUSDC's minting owner (USDC itself has no ``owner()`` with this meaning)."""
        return str(await self.rpc.run(self.contract.functions.owner().call))

    async def balance_of(self, account: str) -> int:
        fn = self.contract.functions.balanceOf(Web3.to_checksum_address(account))
        return int(await self.rpc.run(fn.call))

    async def domain_separator(self) -> bytes:
        return bytes(await self.rpc.run(self.contract.functions.DOMAIN_SEPARATOR().call))

    async def domain(self) -> Domain:
        """The EIP-712 domain as the chain reports it (name and version read from the token)."""
        return Domain(
            name=await self.name(),
            version=await self.version(),
            chain_id=await self.rpc.chain_id(),
            verifying_contract=self.address,
        )

    async def authorization_state(self, authorizer: str, nonce: bytes) -> bool:
        """True once ``nonce`` was used or canceled by ``authorizer``."""
        fn = self.contract.functions.authorizationState(Web3.to_checksum_address(authorizer), nonce)
        return bool(await self.rpc.run(fn.call))

    async def authorization_outcome(
        self, authorizer: str, nonce: bytes, *, lookback_blocks: int = 50_000
    ) -> AuthorizationOutcome:
        """What happened to an EIP-3009 authorization: used (a transfer to its ``to`` of its ``value`` ran,
        since the signature binds both; the hash of that transaction when its log is found), canceled (no
        transfer), or unused. Raises :class:`~kube402.chain.rpc.ChainError` when the node cannot say."""
        if not await self.authorization_state(authorizer, nonce):
            return AuthorizationOutcome("unused")
        latest = await self.rpc.block_number()
        w3 = self.rpc.w3
        topics = [_topic_address(authorizer), "0x" + nonce.hex()]

        def logs(topic0: str) -> list[Any]:
            return list(
                w3.eth.get_logs(
                    {
                        "address": self.address,
                        "fromBlock": max(0, latest - lookback_blocks),
                        "toBlock": "latest",
                        "topics": [topic0, *topics],
                    }
                )
            )

        if await self.rpc.run(lambda: logs(_AUTH_CANCELED)):
            return AuthorizationOutcome("canceled")
        used = await self.rpc.run(lambda: logs(_AUTH_USED))
        tx = "0x" + bytes(used[-1]["transactionHash"]).hex() if used else ""
        return AuthorizationOutcome("used", tx)

    async def mint(self, to: str, amount: int, *, signer: rpc.TxSigner) -> TxReceipt:
        """Owner-only test funding (TestUSDC); ``amount`` in atomic units."""
        _check_amount(amount)
        fn = self.contract.functions.mint(Web3.to_checksum_address(to), amount)
        return await self.rpc.transact(signer, fn)

    async def transfer_with_authorization(
        self, auth: Authorization, signature: bytes, *, signer: rpc.TxSigner, split_signature: bool = False
    ) -> TxReceipt:
        """Relay a signed authorization; ``signer`` pays the gas.

        ``split_signature`` selects the ``(v, r, s)`` overload (EOA signatures only, what x402 sends) instead of
        the ``bytes`` overload (also EIP-1271 wallets). A doomed transfer raises :class:`rpc.Reverted` with
        the FiatTokenV2 reason before anything is sent.
        """
        if split_signature:
            if len(signature) != 65:
                raise ValueError("a (v, r, s) signature is 65 bytes")
            fn = self.contract.get_function_by_signature(
                "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)"
            )(*auth.args(), signature[64], signature[:32], signature[32:64])
        else:
            fn = self.contract.get_function_by_signature(
                "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)"
            )(*auth.args(), signature)
        return await self.rpc.transact(signer, fn)


@dataclasses.dataclass(frozen=True, slots=True)
class AuthorizationOutcome:
    state: Literal["used", "canceled", "unused"]
    tx_hash: str = ""


_AUTH_USED: Final = Web3.to_hex(Web3.keccak(text="AuthorizationUsed(address,bytes32)"))
_AUTH_CANCELED: Final = Web3.to_hex(Web3.keccak(text="AuthorizationCanceled(address,bytes32)"))


def _topic_address(address: str) -> str:
    return "0x" + "00" * 12 + address.lower().removeprefix("0x")


def _check_amount(amount: int) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise ValueError(f"amount must be a non-negative int of atomic units, got {amount!r}")
