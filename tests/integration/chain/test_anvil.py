"""The anvil process: chain id, own process group, detached start and stop by PID."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kube402.chain import rpc
from kube402.devenv import anvil, process

pytestmark = pytest.mark.integration


async def test_the_shared_anvil_answers_as_base_sepolia(anvil_process: anvil.AnvilProcess) -> None:
    node = await rpc.connect(anvil_process.rpc_url, chain_id=84532)
    assert await node.chain_id() == 84532
    assert os.getpgid(anvil_process.pid) == anvil_process.pid  # its own session: stop() reaches the group
    with pytest.raises(rpc.WrongChain):
        await rpc.connect(anvil_process.rpc_url, chain_id=8453)


def test_a_detached_anvil_outlives_its_starter_until_stopped_by_pid(tmp_path: Path) -> None:
    started = anvil.start_detached(log=tmp_path / "anvil.log")
    try:
        assert process.alive(started.pid)
        assert started.rpc_url == f"http://127.0.0.1:{started.port}"
    finally:
        anvil.stop(started.pid)
    assert not process.alive(started.pid)
    anvil.stop(started.pid)  # stopping a gone PID is fine
    assert (tmp_path / "anvil.log").exists()


def test_anvil_class_stops_on_exit_and_tolerates_a_second_stop(tmp_path: Path) -> None:
    with anvil.Anvil(log=tmp_path / "a.log") as chain:
        pid = chain.pid
        assert process.alive(pid)
    assert not process.alive(pid)
    chain.stop()
    with pytest.raises(anvil.AnvilError):
        _ = chain.rpc_url


def test_a_missing_binary_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBE402_ANVIL", str(tmp_path / "nope"))
    with pytest.raises(anvil.AnvilError, match="KUBE402_ANVIL"):
        anvil.start_detached(log=tmp_path / "x.log")


async def test_an_unreachable_node_is_a_retryable_error() -> None:
    with pytest.raises(rpc.ChainUnavailable) as err:
        await rpc.connect(f"http://127.0.0.1:{process.free_port()}", request_timeout=2)
    assert err.value.retryable


async def test_receipt_waits_are_bounded(node: rpc.Rpc) -> None:
    with pytest.raises(rpc.ReceiptTimeout) as err:
        await node.wait_for_receipt("0x" + "ab" * 32, timeout=0.2)
    assert err.value.tx_hash == "0x" + "ab" * 32
