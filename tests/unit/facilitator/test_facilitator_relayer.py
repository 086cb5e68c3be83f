"""The relayer's nonce sequence and probe against a scripted node (no chain): order under concurrency,
resynchronisation after failures, and what the probe records."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
import rlp  # type: ignore[import-untyped]
from eth_account import Account
from web3 import exceptions as w3exc

from kube402.chain.facilitator import relayer

TO = "0x" + "22" * 20


class FakeEth:
    """The slice of ``web3.eth`` the relayer's send path uses; records the nonces in arrival order."""

    def __init__(self, *, pending: int = 5) -> None:
        self.pending = pending
        self.latest = pending
        self.arrived: list[int] = []
        self.failures: list[BaseException] = []
        self.count_reads = 0
        self.gas_price = 10**9
        self.lock = threading.Lock()

    def get_transaction_count(self, address: str, block: str) -> int:
        self.count_reads += 1
        return self.pending if block == "pending" else self.latest

    def send_raw_transaction(self, raw: bytes) -> bytes:
        with self.lock:
            if self.failures:
                raise self.failures.pop(0)
            nonce = int.from_bytes(rlp.decode(raw)[0], "big")
            self.arrived.append(nonce)
            self.pending = max(self.pending, nonce + 1)
            return b"\x00" * 32

    def get_transaction(self, tx_hash: Any) -> Any:
        raise w3exc.TransactionNotFound("nope")

    def get_transaction_receipt(self, tx_hash: Any) -> Any:
        raise w3exc.TransactionNotFound("nope")


class FakeNode:
    def __init__(self, eth: FakeEth) -> None:
        self.w3 = type("W3", (), {"eth": eth})()


def make(eth: FakeEth, nonces: list[int] | None = None) -> relayer.Relayer:
    return relayer.Relayer(
        node=FakeNode(eth),  # type: ignore[arg-type]  # the relayer only reads node.w3.eth
        account=Account.create(),
        chain_id=84532,
        gas_limit=300_000,
        confirmation_timeout=1.0,
        on_nonce=None if nonces is None else nonces.append,
    )


def test_concurrent_sends_reach_the_node_with_consecutive_nonces_in_order() -> None:
    eth, seen = FakeEth(pending=5), list[int]()
    r = make(eth, seen)
    with ThreadPoolExecutor(16) as pool:
        hashes = list(pool.map(lambda _: r.send_transaction(TO, b"\x01"), range(50)))
    assert eth.arrived == list(range(5, 55))
    assert len(set(hashes)) == 50
    assert eth.count_reads == 1 and seen[-1] == 55


def test_a_send_lost_in_transport_is_recorded_as_possibly_broadcast_and_the_nonce_is_reread() -> None:
    eth = FakeEth(pending=3)
    r = make(eth)
    eth.failures.append(requests.ConnectionError("reset"))
    with relayer.observe() as probe, pytest.raises(requests.ConnectionError):
        r.send_transaction(TO, b"")
    assert probe.tx_hash is not None and probe.tx_nonce == 3 and not probe.accepted
    assert probe.rpc_failure == "eth_sendRawTransaction: ConnectionError"
    with relayer.observe() as probe:
        r.send_transaction(TO, b"")
    assert probe.accepted and probe.tx_nonce == 3 and eth.count_reads == 2  # the node never got nonce 3


def test_nonce_too_low_is_retried_once_with_a_fresh_nonce() -> None:
    eth = FakeEth(pending=3)
    r = make(eth)
    r.send_transaction(TO, b"")
    eth.pending = 10  # someone else used the key
    eth.failures.append(w3exc.Web3RPCError("nonce too low: next nonce 10, tx nonce 4"))
    with relayer.observe() as probe:
        r.send_transaction(TO, b"")
    assert eth.arrived == [3, 10] and probe.accepted and probe.rpc_failure is None


def test_a_refused_send_is_unavailable_and_certainly_not_broadcast() -> None:
    eth = FakeEth()
    r = make(eth)
    eth.failures.append(w3exc.Web3RPCError("insufficient funds for gas * price + value"))
    with relayer.observe() as probe, pytest.raises(relayer.RelayerUnavailable):
        r.send_transaction(TO, b"")
    assert probe.tx_hash is None and probe.rpc_failure == "eth_sendRawTransaction refused"


def test_already_known_counts_as_sent() -> None:
    eth = FakeEth(pending=1)
    r = make(eth)
    eth.failures.append(w3exc.Web3RPCError("already known"))
    with relayer.observe() as probe:
        r.send_transaction(TO, b"")
    assert probe.accepted
    r.send_transaction(TO, b"")
    assert eth.arrived == [2]


def test_reverts_are_not_infrastructure_failures() -> None:
    with relayer.observe() as probe:
        with pytest.raises(w3exc.ContractLogicError):
            relayer._guard("eth_call", lambda: (_ for _ in ()).throw(w3exc.ContractLogicError("reverted")))
        assert probe.rpc_failure is None
        with pytest.raises(w3exc.Web3RPCError):
            relayer._guard("eth_call", lambda: (_ for _ in ()).throw(w3exc.Web3RPCError("header not found")))
        assert probe.rpc_failure == "eth_call: JSON-RPC error"


def test_probes_are_per_thread_and_restored() -> None:
    with relayer.observe() as outer:
        with relayer.observe() as inner:
            relayer._probe().fail("x")
        assert inner.rpc_failure == "x" and outer.rpc_failure is None
        other: list[relayer.Probe] = []
        t = threading.Thread(target=lambda: other.append(relayer._probe()))
        t.start()
        t.join()
        assert other[0] is not outer


def test_a_receiptless_unknown_transaction_whose_nonce_was_used_is_dead() -> None:
    eth = FakeEth(pending=9)
    eth.latest = 9
    r = make(eth)
    assert r.lookup("0x" + "11" * 32, nonce=8) is relayer.Lookup.DEAD
    assert r.lookup("0x" + "11" * 32, nonce=9) is relayer.Lookup.UNKNOWN
    assert r.lookup("0x" + "11" * 32, nonce=None) is relayer.Lookup.UNKNOWN


def test_the_key_is_not_in_the_repr() -> None:
    account = Account.create()
    r = relayer.Relayer(
        node=FakeNode(FakeEth()),  # type: ignore[arg-type]
        account=account,
        chain_id=1,
        gas_limit=21_000,
        confirmation_timeout=1,
    )
    assert account.key.hex().removeprefix("0x") not in repr(r) and account.address in repr(r)
