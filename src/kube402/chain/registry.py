"""Typed binding for an ERC-8004 identity registry (ERC8004.md section 2).

Why: a seller registers itself (``register(string)``), keeps its URI and metadata current, and must recover
an agentId from ``Registered`` logs after a crash (ERC8004.md section 8). Calldata always comes from the ABI
encoder (obol once hand-encoded ``setMetadata`` with a wrong selector and every write reverted silently); the
selectors and topics below are asserted against the EIP's values in the unit tests. The ABI is that of
kube402's own ``contracts/IdentityRegistry.sol``, which implements the same interface as the official
registries, so the binding serves both.

Fencing and read-before-write policy belong to the caller (controller/registration.py): this module offers the
pieces (an explicit ``nonce``, ``rpc.Rpc.sign``/``broadcast``, log scans) and decides nothing.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping
from typing import Any, Final, cast

from eth_abi import abi
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import TransactionNotFound
from web3.types import FilterParams, TxReceipt

from kube402.chain import artifacts, rpc

__all__ = [
    "METADATA_SET_TOPIC",
    "REGISTERED_TOPIC",
    "RESERVED_AGENT_WALLET_KEY",
    "URI_UPDATED_TOPIC",
    "IdentityRegistry",
    "Registered",
    "encode_set_metadata",
    "local_signer",
    "parse_registered",
]

REGISTERED_TOPIC: Final = bytes(Web3.keccak(text="Registered(uint256,string,address)"))
URI_UPDATED_TOPIC: Final = bytes(Web3.keccak(text="URIUpdated(uint256,string,address)"))
METADATA_SET_TOPIC: Final = bytes(Web3.keccak(text="MetadataSet(uint256,string,string,bytes)"))
RESERVED_AGENT_WALLET_KEY: Final = "agentWallet"
"""Written only at mint and through ``setAgentWallet``; ``setMetadata`` reverts with "reserved key"."""

_NONEXISTENT_TOKEN: Final = "0x" + bytes(Web3.keccak(text="ERC721NonexistentToken(uint256)"))[:4].hex()
_SET_METADATA: Final = "setMetadata(uint256,string,bytes)"


@dataclasses.dataclass(frozen=True, slots=True)
class Registered:
    """One decoded ``Registered(agentId, agentURI, owner)`` log."""

    agent_id: int
    agent_uri: str
    owner: str
    tx_hash: str
    block_number: int
    log_index: int


def local_signer(private_key: str) -> rpc.LocalSigner:
    """A signer for a hex private key (optional ``0x``). The key never appears in an error message."""
    from eth_account import Account

    text = private_key.strip().removeprefix("0x").removeprefix("0X")
    try:
        account = Account.from_key(bytes.fromhex(text))
    except (ValueError, TypeError):
        raise ValueError("the ERC-8004 private key is not 32 bytes of hex") from None
    return rpc.LocalSigner(account)


def encode_set_metadata(agent_id: int, key: str, value: bytes) -> bytes:
    """Calldata of ``setMetadata(uint256,string,bytes)`` (selector ``0x466648da``), ABI-encoded."""
    selector = artifacts.load(artifacts.REGISTRY).selector(_SET_METADATA)
    return selector + abi.encode(["uint256", "string", "bytes"], [agent_id, key, value])


def _decode_registered(log: Mapping[str, Any]) -> Registered:
    topics = [HexBytes(t) for t in log["topics"]]
    (uri,) = abi.decode(["string"], bytes(HexBytes(log["data"])))
    return Registered(
        agent_id=int.from_bytes(topics[1], "big"),
        agent_uri=str(uri),
        owner=Web3.to_checksum_address(topics[2][-20:]),
        tx_hash="0x" + bytes(HexBytes(log["transactionHash"])).hex(),
        block_number=int(log["blockNumber"]),
        log_index=int(log["logIndex"]),
    )


def parse_registered(logs: Iterable[Mapping[str, Any]], *, registry: str) -> list[Registered]:
    """The ``Registered`` events among ``logs`` (a receipt's or ``eth_getLogs``'), emitted by ``registry``."""
    address = Web3.to_checksum_address(registry)
    return [
        _decode_registered(log)
        for log in logs
        if Web3.to_checksum_address(log["address"]) == address
        and len(log["topics"]) == 3
        and bytes(HexBytes(log["topics"][0])) == REGISTERED_TOPIC
    ]


class IdentityRegistry:
    """The registry at ``address``, read and written through ``node``."""

    def __init__(self, node: rpc.Rpc, address: str) -> None:
        self.rpc = node
        self.address = Web3.to_checksum_address(address)
        self.contract = node.contract(self.address, artifacts.load(artifacts.REGISTRY).abi)

    # ---- writes (each returns after the receipt; reverts raise rpc.Reverted) ----

    async def register(self, agent_uri: str, *, signer: rpc.TxSigner, nonce: int | None = None) -> Registered:
        """``register(string)``: mint the next agentId to the signer and return its ``Registered`` event."""
        receipt = await self.rpc.transact(signer, self.register_call(agent_uri), nonce=nonce)
        events = parse_registered(receipt["logs"], registry=self.address)
        if len(events) != 1:
            raise rpc.ChainError(
                f"expected one Registered log in {receipt['transactionHash'].hex()}, found {len(events)}"
            )
        return events[0]

    def register_call(self, agent_uri: str) -> rpc.Call:
        """The bound ``register(string)`` call, for callers that sign, persist and broadcast themselves."""
        return cast(rpc.Call, self.contract.get_function_by_signature("register(string)")(agent_uri))

    async def set_agent_uri(
        self, agent_id: int, uri: str, *, signer: rpc.TxSigner, nonce: int | None = None
    ) -> TxReceipt:
        return await self.rpc.transact(
            signer, self.contract.functions.setAgentURI(agent_id, uri), nonce=nonce
        )

    async def set_metadata(
        self, agent_id: int, key: str, value: bytes, *, signer: rpc.TxSigner, nonce: int | None = None
    ) -> TxReceipt:
        """Write one metadata entry; the ``agentWallet`` key is refused locally, as the contract would."""
        if key == RESERVED_AGENT_WALLET_KEY:
            raise ValueError("agentWallet is reserved; it changes only through setAgentWallet")
        fn = self.contract.get_function_by_signature(_SET_METADATA)(agent_id, key, value)
        return await self.rpc.transact(signer, fn, nonce=nonce)

    # ---- reads ----

    async def get_metadata(self, agent_id: int, key: str) -> bytes:
        """The stored value; empty bytes when unset."""
        return bytes(await self.rpc.run(self.contract.functions.getMetadata(agent_id, key).call))

    async def owner_of(self, agent_id: int) -> str | None:
        """The controlling address, or None when ``agent_id`` does not exist (yet)."""
        try:
            return str(await self.rpc.run(self.contract.functions.ownerOf(agent_id).call))
        except rpc.Reverted as err:
            if err.data and err.data.startswith(_NONEXISTENT_TOKEN):
                return None
            raise

    async def token_uri(self, agent_id: int) -> str:
        return str(await self.rpc.run(self.contract.functions.tokenURI(agent_id).call))

    async def agent_wallet(self, agent_id: int) -> str:
        """``getAgentWallet``: the zero address when unset, cleared by a transfer, or unknown."""
        return str(await self.rpc.run(self.contract.functions.getAgentWallet(agent_id).call))

    # ---- recovery helpers (SPEC 6.3 step 7) ----

    async def registered_in_receipt(self, tx_hash: str) -> tuple[bool, list[Registered]]:
        """(mined, Registered events of this registry) for ``tx_hash``; (False, []) while there is no receipt.
        A mined but reverted transaction counts as mined with no events."""
        try:
            receipt = await self.rpc.run(
                functools.partial(self.rpc.w3.eth.get_transaction_receipt, HexBytes(tx_hash))
            )
        except rpc.ChainError as err:  # web3 raises TransactionNotFound (an RPC error) while unmined
            if isinstance(err.__cause__, TransactionNotFound):
                return False, []
            raise
        if receipt is None:
            return False, []
        if receipt["status"] != 1:
            return True, []
        return True, parse_registered(receipt["logs"], registry=self.address)

    async def transaction_known(self, tx_hash: str) -> bool:
        """Whether the node still knows ``tx_hash`` (in its pool or mined); False once it was dropped."""
        try:
            await self.rpc.run(functools.partial(self.rpc.w3.eth.get_transaction, HexBytes(tx_hash)))
        except rpc.ChainError as err:
            if isinstance(err.__cause__, TransactionNotFound):
                return False
            raise
        return True

    async def confirmed_nonce(self, address: str) -> int:
        """``eth_getTransactionCount(address, "latest")``: a transaction signed with it can only replace an
        unmined earlier one, never add a second."""
        sender = Web3.to_checksum_address(address)
        return int(await self.rpc.run(lambda: self.rpc.w3.eth.get_transaction_count(sender, "latest")))

    async def find_registered(
        self, *, from_block: int, to_block: int | None = None, owner: str | None = None, chunk: int = 2_000
    ) -> list[Registered]:
        """``Registered`` logs in [from_block, to_block] (default: head), optionally by owner, scanned in
        chunks (public RPCs cap ``eth_getLogs`` ranges)."""
        if chunk < 1:
            raise ValueError("chunk must be positive")
        last = await self.rpc.block_number() if to_block is None else to_block
        topics: list[Any] = ["0x" + REGISTERED_TOPIC.hex()]
        if owner is not None:
            topics += [None, "0x" + bytes(12).hex() + Web3.to_checksum_address(owner)[2:].lower()]
        found: list[Registered] = []
        for start in range(from_block, last + 1, chunk):
            params: FilterParams = {
                "address": self.address,
                "fromBlock": start,
                "toBlock": min(start + chunk - 1, last),
                "topics": topics,
            }
            logs = await self.rpc.run(functools.partial(self.rpc.w3.eth.get_logs, params))
            found += parse_registered(logs, registry=self.address)
        return found
