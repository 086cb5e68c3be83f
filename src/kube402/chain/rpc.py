"""The one adapter between kube402 and an EVM node's JSON-RPC.

Why it exists: web3.py's HTTP provider is blocking, and kube402 is async throughout (STYLE §4.12). Every
web3 call in kube402 goes through :meth:`Rpc.run`, which runs it in a worker thread and translates web3's and
requests' errors into :class:`ChainError` subclasses at this boundary: :class:`ChainUnavailable` is retryable,
:class:`Reverted` and :class:`WrongChain` are not, :class:`ReceiptTimeout` means "not known yet" (never
re-send; look the hash up again). Transactions are signed locally through the :class:`TxSigner` protocol, so
a remote signer can slot in later. Receipt waits are always bounded.

Not here: nonce sequencing for concurrent senders (a relayer's job); contract-specific encoding (token.py,
registry.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, TypeVar, cast

import requests
from eth_abi import abi
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3 import exceptions as w3exc
from web3.contract.contract import Contract, ContractConstructor, ContractFunction
from web3.middleware import ExtraDataToPOAMiddleware
from web3.providers.rpc import HTTPProvider
from web3.types import Nonce, RPCEndpoint, TxParams, TxReceipt

__all__ = [
    "Call",
    "ChainError",
    "ChainUnavailable",
    "LocalSigner",
    "ReceiptTimeout",
    "Reverted",
    "Rpc",
    "RpcError",
    "SignedTx",
    "TxSigner",
    "WrongChain",
    "connect",
    "revert_reason",
]

T = TypeVar("T")
Call = ContractFunction | ContractConstructor
"""Something web3 can turn into a transaction: a bound contract function or a constructor."""

_ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)


class ChainError(Exception):
    """Base of every error kube402.chain raises."""

    retryable: ClassVar[bool] = False


class ChainUnavailable(ChainError):
    """The node did not answer (connection refused, timeout). Retry later."""

    retryable = True


class RpcError(ChainError):
    """The node answered with a JSON-RPC error that is not a revert."""


class WrongChain(ChainError):
    """The node serves another chain than the one configured."""


class Reverted(ChainError):
    """A call, a gas estimate or a mined transaction reverted; ``reason`` is the revert string when there is one."""

    def __init__(self, reason: str, *, tx_hash: str | None = None, data: str | None = None) -> None:
        super().__init__(reason if tx_hash is None else f"{reason} (tx {tx_hash})")
        self.reason = reason
        self.tx_hash = tx_hash
        self.data = data


class ReceiptTimeout(ChainError):
    """No receipt within the bound. The transaction may still be mined: look it up again, never re-send."""

    retryable = True

    def __init__(self, tx_hash: str, timeout: float) -> None:
        super().__init__(f"no receipt for {tx_hash} within {timeout:g}s")
        self.tx_hash = tx_hash


class TxSigner(Protocol):
    """Signs transactions for one account; a local key or a remote signer."""

    @property
    def address(self) -> str: ...

    async def sign_transaction(self, tx: dict[str, Any]) -> bytes:
        """Return the raw signed transaction (RLP / typed envelope bytes)."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class LocalSigner:
    """A :class:`TxSigner` over an in-process eth-account key."""

    account: LocalAccount

    @property
    def address(self) -> str:
        return str(self.account.address)

    async def sign_transaction(self, tx: dict[str, Any]) -> bytes:
        return bytes(self.account.sign_transaction(tx).raw_transaction)


@dataclasses.dataclass(frozen=True, slots=True)
class SignedTx:
    raw: bytes
    hash: str
    """0x-prefixed transaction hash, known before broadcasting (persist it first to fence a resubmission)."""
    nonce: int


def revert_reason(err: w3exc.ContractLogicError) -> str:
    """The ``Error(string)`` message of a revert, else web3's message without its prefix."""
    data = HexBytes(err.data) if isinstance(err.data, str) and err.data else b""
    if data[:4] == _ERROR_SELECTOR:
        with contextlib.suppress(Exception):  # malformed revert data: fall back to the message
            (text,) = abi.decode(["string"], bytes(data[4:]))
            return str(text)
    message = str(err.message or err)
    return message.removeprefix("execution reverted: ").removeprefix("execution reverted")


def _translated(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except w3exc.ContractLogicError as err:
        raise Reverted(revert_reason(err), data=err.data if isinstance(err.data, str) else None) from err
    except (
        requests.ConnectionError,
        requests.Timeout,
        w3exc.ProviderConnectionError,
        w3exc.RequestTimedOut,
    ) as err:
        raise ChainUnavailable(str(err)) from err
    except w3exc.Web3RPCError as err:
        raise RpcError(str(err)) from err


class Rpc:
    """A connection to one node. Cheap to create; holds no state but the cached chain id."""

    def __init__(self, url: str, *, request_timeout: float = 10.0) -> None:
        provider = HTTPProvider(
            url, request_kwargs={"timeout": request_timeout}, exception_retry_configuration=None
        )
        self.url = url
        self.w3 = Web3(provider)
        self.w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
        self._chain_id: int | None = None

    async def run(self, fn: Callable[[], T]) -> T:
        """Run blocking web3 work in a worker thread; its errors arrive as :class:`ChainError`."""
        return await asyncio.to_thread(_translated, fn)

    def contract(self, address: str, abi: Any) -> Contract:
        """A web3 contract object (no I/O)."""
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=list(abi))

    async def request(self, method: str, params: list[Any]) -> Any:
        """A raw JSON-RPC call (e.g. ``anvil_setCode``); JSON-RPC errors raise :class:`RpcError`."""
        return await self.run(lambda: self.w3.manager.request_blocking(RPCEndpoint(method), params))

    async def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(await self.run(lambda: self.w3.eth.chain_id))
        return self._chain_id

    async def require_chain_id(self, expected: int) -> None:
        """Refuse a node that serves another chain (a wrong RPC URL must never sign or settle anything)."""
        actual = await self.chain_id()
        if actual != expected:
            raise WrongChain(f"{self.url} serves chain id {actual}, expected {expected}")

    async def block_number(self) -> int:
        return int(await self.run(lambda: self.w3.eth.block_number))

    async def get_code(self, address: str) -> bytes:
        return bytes(await self.run(lambda: self.w3.eth.get_code(Web3.to_checksum_address(address))))

    async def eth_balance(self, address: str) -> int:
        return int(await self.run(lambda: self.w3.eth.get_balance(Web3.to_checksum_address(address))))

    async def sign(
        self, signer: TxSigner, call: Call, *, nonce: int | None = None, gas: int | None = None
    ) -> SignedTx:
        """Build (estimating gas unless given: a doomed call raises :class:`Reverted` here), then sign.

        ``nonce`` defaults to the signer's pending nonce; pass the confirmed one to make a resubmission
        replace rather than duplicate.
        """
        sender = Web3.to_checksum_address(signer.address)
        if nonce is None:
            nonce = int(await self.run(lambda: self.w3.eth.get_transaction_count(sender, "pending")))
        params: TxParams = {"from": sender, "nonce": Nonce(nonce), "chainId": await self.chain_id()}
        if gas is not None:
            params["gas"] = gas
        tx = cast(dict[str, Any], dict(await self.run(lambda: call.build_transaction(params))))
        tx.pop("from", None)
        raw = await signer.sign_transaction(tx)
        return SignedTx(raw=raw, hash="0x" + Web3.keccak(raw).hex().removeprefix("0x"), nonce=nonce)

    async def broadcast(self, signed: SignedTx) -> str:
        """Send a signed transaction without waiting; returns its hash."""
        await self.run(lambda: self.w3.eth.send_raw_transaction(signed.raw))
        return signed.hash

    async def wait_for_receipt(self, tx_hash: str, *, timeout: float = 30.0, poll: float = 0.05) -> TxReceipt:
        """The receipt, or :class:`ReceiptTimeout` after ``timeout`` seconds. Does not check the status."""
        try:
            return await self.run(
                lambda: self.w3.eth.wait_for_transaction_receipt(
                    HexBytes(tx_hash), timeout=timeout, poll_latency=poll
                )
            )
        except w3exc.TimeExhausted:
            raise ReceiptTimeout(tx_hash, timeout) from None

    async def transact(
        self,
        signer: TxSigner,
        call: Call,
        *,
        nonce: int | None = None,
        gas: int | None = None,
        timeout: float = 30.0,
    ) -> TxReceipt:
        """Sign, send and wait; a mined failure raises :class:`Reverted` carrying the hash."""
        signed = await self.sign(signer, call, nonce=nonce, gas=gas)
        await self.broadcast(signed)
        receipt = await self.wait_for_receipt(signed.hash, timeout=timeout)
        if receipt["status"] != 1:
            raise Reverted("transaction failed", tx_hash=signed.hash)
        return receipt


async def connect(url: str, *, chain_id: int | None = None, request_timeout: float = 10.0) -> Rpc:
    """An :class:`Rpc` for ``url`` that answered ``eth_chainId`` (and matched ``chain_id`` when given)."""
    rpc = Rpc(url, request_timeout=request_timeout)
    if chain_id is None:
        await rpc.chain_id()
    else:
        await rpc.require_chain_id(chain_id)
    return rpc
