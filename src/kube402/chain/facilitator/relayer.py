"""The relayer: the x402 mechanism's ``FacilitatorEvmSigner`` for one chain, with one nonce sequence.

Why not the package's ``FacilitatorWeb3Signer``: it reserves a nonce under a lock but signs and sends outside
it, so concurrent settles can reach the node out of order, and a failed send leaves a permanent gap. It also
cannot tell the caller *why* a mechanism call failed — the x402 mechanism turns every exception into a
reason string, so "the RPC node is down" would reach a buyer as an invalid payment.

This class fixes both, still speaking the x402 protocol so ``ExactEvmFacilitatorScheme`` does all payment
logic (checks, simulation, error mapping, Transfer-log confirmation):

* **One sequence.** Signing and ``eth_sendRawTransaction`` happen under one lock, so nonces reach the node in
  order without gaps. The next nonce is read once (``pending`` count) and then counted locally; any send
  error clears it so the next send re-reads it; "nonce too low" (someone else used the key) is retried once.
* **A probe per call.** Blocking x402 calls run in worker threads; :func:`observe` gives each one a
  :class:`Probe` (thread-local) in which the relayer records RPC failures, the signed transaction it handed
  to the node (hash and nonce, recorded *before* the send, since a send that times out may still have
  landed) and late receipts. The service reads the probe to answer ``503`` or ``settlement_pending``.
* **Bounded receipt waits** (``confirmation_timeout``), and :meth:`Relayer.lookup` to resolve a pending
  hash later, including "this transaction can never be mined" (its nonce was used by another one).
* **Multicall3 stand-in.** x402 diagnoses failed simulations through Multicall3's ``tryAggregate``; where
  the chain has no Multicall3 (a fresh anvil) the same read-only calls are made one by one.

The account's key never leaves this object: ``repr`` shows the address only and nothing here logs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import requests
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3 import exceptions as w3exc
from web3.types import Nonce, TxParams, TxReceipt, Wei
from x402.mechanisms.evm.constants import (
    EIP1271_MAGIC_VALUE,
    IS_VALID_SIGNATURE_ABI,
    MULTICALL3_ADDRESS,
    TX_STATUS_SUCCESS,
)
from x402.mechanisms.evm.data_suffix import append_data_suffix
from x402.mechanisms.evm.types import TransactionReceipt

from kube402.chain import rpc

__all__ = ["Lookup", "Probe", "Relayer", "RelayerUnavailable", "observe"]

log = logging.getLogger(__name__)

T = TypeVar("T")
_TRANSPORT = (requests.RequestException, w3exc.ProviderConnectionError, w3exc.RequestTimedOut, OSError)
_GAS_PRICE_TTL = 2.0
_REPLACEMENT_BUMP = 1.125
"""Nodes accept a replacement (same nonce) only with a fee at least 10 % higher; 12.5 % leaves a margin."""
_MAX_POLL = 0.5
_ERC20_BALANCE_ABI = [
    {
        "type": "function",
        "name": "balanceOf",
        "stateMutability": "view",
        "inputs": [{"name": "account", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
    }
]
_local = threading.local()


class RelayerUnavailable(Exception):
    """The node could not be used (transport failure, a non-revert JSON-RPC error, a refused send)."""


@dataclasses.dataclass(slots=True)
class Probe:
    """What one mechanism call did on chain, recorded by the relayer and read by the service."""

    rpc_failure: str | None = None
    """The first infrastructure failure (never a revert): the call's verdict is not about the payment."""
    tx_hash: str | None = None
    """The last transaction handed to the node; it may be on chain even if the send raised."""
    tx_nonce: int | None = None
    accepted: bool = False
    """The node acknowledged ``tx_hash``."""
    receipt_late: bool = False

    def fail(self, what: str) -> None:
        if self.rpc_failure is None:
            self.rpc_failure = what


@contextlib.contextmanager
def observe() -> Iterator[Probe]:
    """Give the calling thread a fresh :class:`Probe` for the duration of one mechanism call."""
    probe, previous = Probe(), getattr(_local, "probe", None)
    _local.probe = probe
    try:
        yield probe
    finally:
        _local.probe = previous


def _probe() -> Probe:
    probe = getattr(_local, "probe", None)
    return probe if isinstance(probe, Probe) else Probe()


def _guard(what: str, fn: Callable[[], T]) -> T:
    """Run one RPC; reverts pass through untouched, infrastructure failures are recorded first."""
    try:
        return fn()
    except (w3exc.ContractLogicError, w3exc.TransactionNotFound, w3exc.TimeExhausted):
        raise
    except _TRANSPORT as err:
        _probe().fail(f"{what}: {type(err).__name__}")
        raise
    except w3exc.Web3RPCError:
        _probe().fail(f"{what}: JSON-RPC error")
        raise


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


class Lookup(enum.Enum):
    """What became of a broadcast transaction that has no receipt yet."""

    MINED = "mined"
    UNKNOWN = "unknown"
    """Not mined yet; it may still be (pending)."""
    DEAD = "dead"
    """Not known to the node and its nonce is used by another transaction: it can never be mined."""


class Relayer:
    """Signs and sends the facilitator's transactions on one chain, and answers x402's chain reads."""

    def __init__(
        self,
        *,
        node: rpc.Rpc,
        account: LocalAccount,
        chain_id: int,
        gas_limit: int,
        confirmation_timeout: float,
        poll: float = 0.01,
        on_nonce: Callable[[int], None] | None = None,
        max_gas_price: int | None = None,
        allow_smart_wallets: bool = False,
    ) -> None:
        self.max_gas_price = max_gas_price
        self.allow_smart_wallets = allow_smart_wallets
        self._w3: Web3 = node.w3
        self._account = account
        self._address = Web3.to_checksum_address(account.address)
        self._chain_id = chain_id
        self._gas_limit = gas_limit
        self.confirmation_timeout = confirmation_timeout
        self._poll = poll
        self._on_nonce = on_nonce
        self._send_lock = threading.Lock()
        self._next_nonce: int | None = None
        self._price_lock = threading.Lock()
        self._price: tuple[float, int] | None = None
        self._multicall: bool | None = None
        self._sent: dict[str, tuple[int, str, bytes, int, float]] = {}
        """Broadcast hash → (nonce, to, data, gas price, monotonic send time), for replacements."""
        self._siblings: dict[int, list[str]] = {}
        """Nonce → every hash broadcast with it (the original and its replacements)."""

    def __repr__(self) -> str:
        return f"Relayer({self._address}, chain {self._chain_id})"

    @property
    def address(self) -> str:
        return self._address

    # -- x402 FacilitatorEvmSigner ------------------------------------------------------------------

    def get_addresses(self) -> list[str]:
        return [self._address]

    def get_chain_id(self) -> int:
        return self._chain_id

    def get_code(self, address: str) -> bytes:
        target = Web3.to_checksum_address(address)
        return bytes(_guard("eth_getCode", lambda: self._w3.eth.get_code(target)))

    def get_balance(self, address: str, token_address: str) -> int:
        owner = Web3.to_checksum_address(address)
        if not token_address or int(token_address, 16) == 0:
            return int(_guard("eth_getBalance", lambda: self._w3.eth.get_balance(owner)))
        return int(self.read_contract(token_address, _ERC20_BALANCE_ABI, "balanceOf", owner))

    def read_contract(self, address: str, abi: list[dict[str, Any]], function_name: str, *args: Any) -> Any:
        if (
            address.lower() == MULTICALL3_ADDRESS.lower()
            and function_name == "tryAggregate"
            and not self._has_multicall()
        ):
            return self._try_aggregate(args[1])
        contract = self._w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi)
        call = getattr(contract.functions, function_name)(*args)
        # Simulate the way the chain will execute: against the pending block (current time), not the
        # latest one, whose timestamp on an idle chain lags behind a validAfter that is valid now.
        return _guard("eth_call", lambda: call.call({"from": self._address}, block_identifier="pending"))

    def verify_typed_data(
        self,
        address: str,
        domain: Any,
        types: dict[str, list[Any]],
        primary_type: str,
        message: dict[str, Any],
        signature: bytes,
    ) -> bool:
        domain_dict = (
            domain
            if isinstance(domain, dict)
            else {
                k: v
                for k, v in (
                    ("name", domain.name),
                    ("version", domain.version),
                    ("chainId", domain.chain_id),
                    ("verifyingContract", domain.verifying_contract),
                )
                if v is not None
            }
        )
        fields = {
            "name": "string",
            "version": "string",
            "chainId": "uint256",
            "verifyingContract": "address",
            "salt": "bytes32",
        }
        full_types: dict[str, Any] = {"EIP712Domain": [{"name": k, "type": fields[k]} for k in domain_dict]}
        for name, entries in types.items():
            full_types[name] = [
                e if isinstance(e, dict) else {"name": e.name, "type": e.type} for e in entries
            ]
        msg = {k: (_hex(v) if isinstance(v, bytes) else v) for k, v in message.items()}
        typed = {"types": full_types, "primaryType": primary_type, "domain": domain_dict, "message": msg}
        signable = encode_typed_data(full_message=typed)
        with contextlib.suppress(Exception):  # malformed signature bytes: not an EOA signature
            if str(Account.recover_message(signable, signature=signature)).lower() == address.lower():
                return True
        if not self.allow_smart_wallets:
            return False  # EIP-1271 payers only when enabled: a contract can pass simulation and revert
        if not self.get_code(address):
            return False
        digest = HexBytes(b"\x19\x01" + signable.header + signable.body)
        try:
            result = self.read_contract(
                address, IS_VALID_SIGNATURE_ABI, "isValidSignature", bytes(Web3.keccak(digest)), signature
            )
        except w3exc.ContractLogicError:
            return False
        return isinstance(result, bytes) and result[:4] == EIP1271_MAGIC_VALUE

    def write_contract(
        self,
        address: str,
        abi: list[dict[str, Any]],
        function_name: str,
        *args: Any,
        data_suffix: str | None = None,
    ) -> str:
        contract = self._w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi)
        calldata = append_data_suffix(str(contract.encode_abi(function_name, args=list(args))), data_suffix)
        return self._send(address, bytes(HexBytes(calldata)))

    def send_transaction(self, to: str, data: bytes) -> str:
        return self._send(to, data)

    def wait_for_transaction_receipt(self, tx_hash: str) -> TransactionReceipt:
        receipt = self.receipt(tx_hash, timeout=self.confirmation_timeout)
        if receipt is None:
            _probe().receipt_late = True
            raise TimeoutError(f"no receipt for {tx_hash} within {self.confirmation_timeout:g}s")
        return TransactionReceipt(
            status=TX_STATUS_SUCCESS if receipt["status"] == 1 else 0,
            block_number=int(receipt["blockNumber"]),
            tx_hash=tx_hash,
            logs=list(receipt.get("logs") or []),
        )

    # -- receipts -----------------------------------------------------------------------------------

    def receipt(self, tx_hash: str, *, timeout: float) -> TxReceipt | None:
        """The receipt, waiting at most ``timeout`` seconds; None if it has not arrived by then.

        Polls after ``poll`` seconds, then twice as long each time up to half a second: quick on a local
        chain, a few requests per second per transaction against a remote node.
        """
        deadline = time.monotonic() + timeout
        delay = self._poll
        while True:
            receipt = _guard("eth_getTransactionReceipt", lambda: self._receipt_or_none(tx_hash))
            remaining = deadline - time.monotonic()
            if receipt is not None or remaining <= 0:
                return receipt
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, _MAX_POLL)

    def lookup(self, tx_hash: str, *, nonce: int | None) -> Lookup:
        """Whether a receipt-less transaction may still be mined (only the relayer uses its key)."""
        if _guard("eth_getTransactionReceipt", lambda: self._receipt_or_none(tx_hash)) is not None:
            return Lookup.MINED
        try:
            _guard("eth_getTransactionByHash", lambda: self._w3.eth.get_transaction(HexBytes(tx_hash)))
            return Lookup.UNKNOWN
        except w3exc.TransactionNotFound:
            pass
        if nonce is None:
            return Lookup.UNKNOWN
        mined = int(
            _guard(
                "eth_getTransactionCount", lambda: self._w3.eth.get_transaction_count(self._address, "latest")
            )
        )
        return Lookup.DEAD if mined > nonce else Lookup.UNKNOWN

    def _receipt_or_none(self, tx_hash: str) -> TxReceipt | None:
        try:
            return self._w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        except (w3exc.TransactionNotFound, w3exc.TransactionIndexingInProgress):
            return None

    # -- sending ------------------------------------------------------------------------------------

    def _send(self, to: str, data: bytes) -> str:
        price = self._gas_price()
        probe = _probe()
        if self.max_gas_price is not None and price > self.max_gas_price:
            probe.fail("gas price above the configured cap")
            raise RelayerUnavailable(f"gas price {price} wei is above the cap of {self.max_gas_price} wei")
        target = Web3.to_checksum_address(to)
        with self._send_lock:
            for attempt in (1, 2):
                nonce = self._nonce()
                tx: TxParams = {
                    "to": target,
                    "data": data,
                    "value": Wei(0),
                    "nonce": Nonce(nonce),
                    "gas": self._gas_limit,
                    "gasPrice": Wei(price),
                    "chainId": self._chain_id,
                }
                signed = self._account.sign_transaction(tx)  # type: ignore[arg-type]
                tx_hash = _hex(signed.hash)
                probe.tx_hash, probe.tx_nonce, probe.accepted = tx_hash, nonce, False
                try:
                    self._w3.eth.send_raw_transaction(signed.raw_transaction)
                except _TRANSPORT as err:  # it may have reached the node: keep tx_hash, re-read the nonce
                    self._next_nonce = None
                    probe.fail(f"eth_sendRawTransaction: {type(err).__name__}")
                    raise
                except w3exc.Web3RPCError as err:
                    text = str(err).lower()
                    if "already known" not in text:
                        self._next_nonce = None
                        probe.tx_hash = probe.tx_nonce = None  # refused: certainly not broadcast
                        if attempt == 1 and "nonce too low" in text:
                            continue
                        probe.fail("eth_sendRawTransaction refused")
                        raise RelayerUnavailable("the node refused the relayer's transaction") from err
                self._next_nonce = nonce + 1
                probe.accepted = True
                self._remember(tx_hash, nonce, target, data, price)
                if self._on_nonce is not None:
                    self._on_nonce(nonce + 1)
                return tx_hash
        raise AssertionError("unreachable")

    def _remember(self, tx_hash: str, nonce: int, to: str, data: bytes, price: int) -> None:
        self._sent[tx_hash] = (nonce, to, data, price, time.monotonic())
        self._siblings.setdefault(nonce, []).append(tx_hash)
        if len(self._sent) > 10_000:  # bounded: the oldest records are of long-mined transactions
            for old in list(self._sent)[:1000]:
                n = self._sent.pop(old)[0]
                self._siblings.pop(n, None)

    def siblings(self, tx_hash: str) -> list[str]:
        """Every hash broadcast with ``tx_hash``'s nonce, newest last (just ``[tx_hash]`` if unknown)."""
        sent = self._sent.get(tx_hash)
        return list(self._siblings.get(sent[0], [tx_hash])) if sent else [tx_hash]

    def mined_sibling(self, tx_hash: str) -> tuple[str, TxReceipt] | None:
        """The hash (of ``tx_hash`` or a replacement of it) that was mined, with its receipt."""
        for h in self.siblings(tx_hash):
            receipt = _guard("eth_getTransactionReceipt", lambda h=h: self._receipt_or_none(h))  # type: ignore[misc]
            if receipt is not None:
                return h, receipt
        return None

    def replace_if_stuck(self, tx_hash: str, *, older_than: float) -> str | None:
        """Re-broadcast a transaction that is still unmined after ``older_than`` seconds with the same nonce
        and a bumped gas price (a stuck nonce would stall every later settle). Returns the new hash, or
        None when it is not stuck, already mined, or the bumped price would exceed the cap."""
        with self._send_lock:
            newest = self.siblings(tx_hash)[-1]
            sent = self._sent.get(newest)
            if sent is None or time.monotonic() - sent[4] < older_than:
                return None
            nonce, to, data, old_price, _ = sent
            mined = int(
                _guard(
                    "eth_getTransactionCount",
                    lambda: self._w3.eth.get_transaction_count(self._address, "latest"),
                )
            )
            if mined > nonce:
                return None
            with self._price_lock:
                self._price = None
            price = max(int(old_price * _REPLACEMENT_BUMP) + 1, self._gas_price())
            if self.max_gas_price is not None and price > self.max_gas_price:
                log.warning(
                    "transaction %s is stuck but its replacement would exceed the gas-price cap", newest
                )
                return None
            tx: TxParams = {
                "to": to,
                "data": data,
                "value": Wei(0),
                "nonce": Nonce(nonce),
                "gas": self._gas_limit,
                "gasPrice": Wei(price),
                "chainId": self._chain_id,
            }
            signed = self._account.sign_transaction(tx)  # type: ignore[arg-type]
            new_hash = _hex(signed.hash)
            try:
                self._w3.eth.send_raw_transaction(signed.raw_transaction)
            except w3exc.Web3RPCError as err:
                log.warning("replacement of %s refused: %s", newest, str(err)[:200])
                return None
            self._remember(new_hash, nonce, to, data, price)
            log.warning("transaction %s stuck; replaced by %s at %d wei/gas", newest, new_hash, price)
            return new_hash

    def _nonce(self) -> int:
        if self._next_nonce is None:
            count = _guard(
                "eth_getTransactionCount",
                lambda: self._w3.eth.get_transaction_count(self._address, "pending"),
            )
            self._next_nonce = int(count)
            if self._on_nonce is not None:
                self._on_nonce(self._next_nonce)
        return self._next_nonce

    def _gas_price(self) -> int:
        now = time.monotonic()
        with self._price_lock:
            if self._price is not None and self._price[0] > now:
                return self._price[1]
        price = int(_guard("eth_gasPrice", lambda: self._w3.eth.gas_price))
        with self._price_lock:
            self._price = (now + _GAS_PRICE_TTL, price)
        return price

    # -- Multicall3 stand-in ------------------------------------------------------------------------

    def _call(self, params: TxParams) -> bytes:
        return bytes(_guard("eth_call", lambda: self._w3.eth.call(params, "pending")))

    def _has_multicall(self) -> bool:
        if self._multicall is None:
            self._multicall = bool(self.get_code(MULTICALL3_ADDRESS))
        return self._multicall

    def _try_aggregate(self, calls: list[tuple[str, bytes]]) -> list[tuple[bool, bytes]]:
        """``tryAggregate(false, calls)`` as separate ``eth_call``s: the same results for read-only calls."""
        results: list[tuple[bool, bytes]] = []
        for target, call_data in calls:
            params: TxParams = {
                "to": Web3.to_checksum_address(target),
                "data": HexBytes(call_data),
                "from": self._address,
            }
            try:
                results.append((True, self._call(params)))
            except w3exc.ContractLogicError as err:
                data = err.data if isinstance(err.data, str) else ""
                results.append((False, bytes(HexBytes(data)) if data.startswith("0x") else b""))
        return results
