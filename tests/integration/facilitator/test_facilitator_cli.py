"""``kube402 facilitator`` as a real process: it serves payments, logs JSON, and never logs its key."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import orjson
import pytest
from eth_account import Account

from kube402.chain import devchain, rpc
from kube402.devenv import process
from kube402.x402.facilitator_client import FacilitatorClient

from . import support

pytestmark = pytest.mark.integration


def _text(log: Path) -> str:
    """The process log for a failure message (read once, on the way out of the test)."""
    return log.read_text()


async def _wait_healthy(url: str, pid: int, log: Path) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            if not process.alive(pid):
                raise AssertionError("facilitator exited:\n" + _text(log))
            try:
                if (await http.get(url + "/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("facilitator did not become healthy:\n" + _text(log))


@pytest.mark.parametrize("source", ["key-file", "env"])
async def test_the_cli_serves_payments_and_never_logs_its_key(
    tmp_path: Path, dev_chain: devchain.DevChainInfo, node: rpc.Rpc, source: str
) -> None:
    relayer = Account.create()
    await devchain.set_eth_balance(dev_chain.rpc_url, relayer.address, 10**20)
    key_hex = relayer.key.hex().removeprefix("0x")
    port = process.free_port()
    argv = [
        sys.executable,
        "-m",
        "kube402.cli",
        "--log-level",
        "debug",
        "facilitator",
        "--listen",
        f"127.0.0.1:{port}",
        "--rpc-url",
        f"base-sepolia={dev_chain.rpc_url}",
    ]
    env = {"KUBE402_FACILITATOR_KEY": "", "KUBE402_FACILITATOR_KEY_FILE": ""}
    if source == "key-file":
        key_file = tmp_path / "relayer.key"
        key_file.write_text("0x" + key_hex + "\n")
        argv += ["--key-file", str(key_file)]
    else:
        env["KUBE402_FACILITATOR_KEY"] = key_hex
    log = tmp_path / "facilitator.log"
    child = process.spawn(argv, log=log, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_healthy(url, child.pid, log)
        parties = await support.funded_buyer(dev_chain)
        reqs = support.requirements(parties.seller)
        payload = await support.pay(parties.buyer, reqs)
        async with FacilitatorClient(url) as client:
            assert (await client.supported()).raw["signers"] == {"eip155:*": [relayer.address]}
            assert (await client.verify(support.raw(payload), support.raw(reqs), version=2)).is_valid
            settled = await client.settle(support.raw(payload), support.raw(reqs), version=2)
            assert settled.success
            replay = await client.settle(support.raw(payload), support.raw(reqs), version=2)
            assert replay.error_reason == "invalid_exact_evm_nonce_already_used"
        async with httpx.AsyncClient() as http:
            assert (await http.post(url + "/verify", content=b"garbage")).status_code == 400
    finally:
        process.stop(child.pid)
    assert child.wait(timeout=5) == 0
    text = log.read_text()
    assert key_hex.lower() not in text.lower()
    lines = [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(
        line.get("msg") == "settle" and line.get("transaction") == settled.transaction for line in lines
    )
    assert await support.balance(node, parties.seller) == support.AMOUNT


def test_the_cli_refuses_to_start_without_a_key_and_names_only_the_source(tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    secret = "ab" * 31 + "zz"
    bad.write_text(secret)
    log = tmp_path / "out.log"
    child = process.spawn(
        [
            sys.executable,
            "-m",
            "kube402.cli",
            "facilitator",
            "--rpc-url",
            "http://127.0.0.1:1",
            "--key-file",
            str(bad),
        ],
        log=log,
    )
    assert child.wait(timeout=30) == 2
    text = log.read_text()
    assert "does not hold a 32-byte hex private key" in text and secret not in text
