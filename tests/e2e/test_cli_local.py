"""``kube402 sell local``: the verifier's proxy gate in the foreground, no cluster, run as a subprocess.

Real parts: anvil as Base Sepolia and ``kube402 facilitator`` (the ``stack`` fixture's), the x402 package's
client as the buyer, a local demo upstream. Each test sells to a fresh wallet, so its balance moves only by
that test's payments. Negative checks need no waiting: the proxy gate settles (and the facilitator waits for
the receipt) before it relays the upstream's answer, so a transfer would already be on chain.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from x402 import x402Client
from x402.http.clients.httpx import x402HttpxClient
from x402.http.x402_http_client import x402HTTPClient
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import register_exact_evm_client

from kube402.devenv import process
from kube402.devenv.testing import eventually
from kube402.devenv.upstream import TestUpstream
from kube402.localstack import LocalStack

from .cli_helpers import cli_env

pytestmark = pytest.mark.e2e
CHAT = {"model": "qwen3:0.6b", "messages": [{"role": "user", "content": "hello"}]}


class Gate:
    def __init__(self, proc: asyncio.subprocess.Process, base: str) -> None:
        self.proc = proc
        self.base = base
        self.out = bytearray()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := await self.proc.stdout.read(4096):
            self.out.extend(chunk)

    @property
    def text(self) -> str:
        return self.out.decode(errors="replace")

    async def printed(self, what: str, within: float = 30) -> str:
        async with asyncio.timeout(within):
            while what not in self.text:
                if self.proc.returncode is not None:
                    raise AssertionError(f"sell local exited {self.proc.returncode}: {self.text}")
                await asyncio.sleep(0.05)
        return self.text


@contextlib.asynccontextmanager
async def sell_local(tmp_path: Path, *args: str, token: Path | None = None) -> AsyncIterator[Gate]:
    """``kube402 sell local`` in the foreground; ``token``: the facilitator's bearer-token file, passed as
    KUBE402_FACILITATOR_TOKEN_FILE (the stack's facilitator requires one)."""
    port = process.free_port()
    env = cli_env(**({"KUBE402_FACILITATOR_TOKEN_FILE": str(token)} if token else {}))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kube402.cli", "--log-level", "warning", "sell", "local", *args,
        "--listen", f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env, cwd=tmp_path,
    )  # fmt: skip
    gate = Gate(proc, f"http://127.0.0.1:{port}")
    try:
        await gate.printed("stop with Ctrl-C", within=60)
        yield gate
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 20)
        await gate._reader
    assert "Traceback" not in gate.text, gate.text
    assert "kube402 sell local: stopped" in gate.text, gate.text


@pytest.fixture
def upstream() -> Any:
    server = TestUpstream().start()
    try:
        yield server
    finally:
        server.stop()


def buyer(stack: LocalStack) -> x402Client:
    return register_exact_evm_client(x402Client(), EthAccountSigner(stack.buyer))


async def balances(stack: LocalStack, seller: str) -> tuple[int, int]:
    b, s = await stack.balances(stack.buyer.address, seller)
    return b, s


async def test_pays_exactly_the_price_and_refuses_a_replay(
    stack: LocalStack, upstream: TestUpstream, tmp_path: Path
) -> None:
    assert stack.facilitator is not None
    seller = Account.create().address
    args = ("qwen", "--upstream", upstream.url, "--price", "0.001", "--wallet", seller,
            "--facilitator-url", stack.facilitator.url)  # fmt: skip
    async with sell_local(tmp_path, *args, token=stack.facilitator_token_file) as gate:
        text = gate.text
        assert f"x402 gate on {gate.base}" in text
        assert f"qwen: {gate.base}/services/qwen/ → {upstream.url}/" in text
        assert "price  0.001 USDC per request (1000 atomic units; declared perRequest 0.001)" in text
        assert f"pay    {seller} on base-sepolia (eip155:84532)" in text
        url = f"{gate.base}/services/qwen/v1/chat/completions"
        async with httpx.AsyncClient() as http:
            unpaid = await http.post(url, json=CHAT)
        assert unpaid.status_code == 402
        v2 = json.loads(base64.b64decode(unpaid.headers["payment-required"]))
        assert v2["accepts"][0]["amount"] == "1000" and v2["accepts"][0]["payTo"] == seller
        assert upstream.paid_requests() == []

        before = await balances(stack, seller)
        async with x402HttpxClient(buyer(stack), timeout=60) as paying:
            resp = await paying.post(url, json=CHAT)
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["message"]["content"] == "Hello from the upstream"
        assert json.loads(base64.b64decode(resp.headers["payment-response"]))["success"] is True
        after = await balances(stack, seller)
        assert (before[0] - after[0], after[1] - before[1]) == (1000, 1000)

        http_client = x402HTTPClient(buyer(stack))
        required = http_client.get_payment_required_response(lambda n: unpaid.headers.get(n), unpaid.json())
        payload = await buyer(stack).create_payment_payload(required)
        hdrs = http_client.encode_payment_signature_header(payload)
        async with httpx.AsyncClient() as http:
            first = await http.post(url, json=CHAT, headers=hdrs)
            replay = await http.post(url, json=CHAT, headers=hdrs)
            metrics = (await http.get(f"{gate.base}/metrics")).text
        assert first.status_code == 200, first.text
        assert replay.status_code == 402 and replay.json()["error"] == "nonce_already_used"
        assert (await balances(stack, seller))[1] - after[1] == 1000, "the replay moved nothing"
        charged = [
            ln for ln in metrics.splitlines() if ln.startswith("obol_x402_verifier_charged_requests_total{")
        ]
        assert any('offer_name="qwen"' in ln and ln.endswith(" 2.0") for ln in charged), charged


async def test_upstream_500_means_no_transfer(
    stack: LocalStack, upstream: TestUpstream, tmp_path: Path
) -> None:
    assert stack.facilitator is not None
    seller = Account.create().address
    upstream.answer_status = 500
    args = ("broken", "--upstream", upstream.url, "--price", "0.002", "--wallet", seller,
            "--facilitator-url", stack.facilitator.url)  # fmt: skip
    async with sell_local(tmp_path, *args, token=stack.facilitator_token_file) as gate:
        before = await balances(stack, seller)
        async with x402HttpxClient(buyer(stack), timeout=60) as paying:
            resp = await paying.post(f"{gate.base}/services/broken/v1/chat/completions", json=CHAT)
        assert resp.status_code == 500
        assert "payment-response" not in resp.headers
        assert len(upstream.paid_requests()) == 1, "the paid request did reach the upstream"
        assert await balances(stack, seller) == before, "an upstream failure is never charged"


async def test_facilitator_down_is_503_with_retry_after(
    stack: LocalStack, upstream: TestUpstream, tmp_path: Path
) -> None:
    seller = Account.create().address
    dead = f"http://127.0.0.1:{process.free_port()}"
    args = (
        "nofac",
        "--upstream",
        upstream.url,
        "--price",
        "0.001",
        "--wallet",
        seller,
        "--facilitator-url",
        dead,
    )
    async with sell_local(tmp_path, *args, token=stack.facilitator_token_file) as gate:
        before = await balances(stack, seller)
        async with x402HttpxClient(buyer(stack), timeout=60) as paying:
            resp = await paying.post(f"{gate.base}/services/nofac/v1/chat/completions", json=CHAT)
        assert resp.status_code == 503
        assert int(resp.headers["retry-after"]) > 0
        assert resp.json()["error"] == "facilitator_unavailable"
        assert upstream.paid_requests() == [], "no free request"
        assert await balances(stack, seller) == before


def offers_yaml(facilitator: str, seller: str, upstream: str, other: str, price: str) -> str:
    return (
        f'wallet: "{seller}"\nchain: base-sepolia\nfacilitatorURL: {facilitator}\noffers:\n'
        f'  - name: chat\n    upstream: {upstream}\n    price: "{price}"\n'
        f'  - name: tools\n    upstream: {other}\n    perMTok: "2"\n    path: /tools\n'
    )


async def test_offers_file_edited_while_running_charges_the_new_price(
    stack: LocalStack, upstream: TestUpstream, tmp_path: Path
) -> None:
    assert stack.facilitator is not None
    seller = Account.create().address
    other = TestUpstream().start()
    offers = tmp_path / "offers.yaml"
    offers.write_text(offers_yaml(stack.facilitator.url, seller, upstream.url, other.url, "0.001"))
    try:
        async with sell_local(tmp_path, "--offers", str(offers), token=stack.facilitator_token_file) as gate:
            assert "chat: " in gate.text and f"tools: {gate.base}/tools/ → {other.url}/" in gate.text
            assert "price  0.002 USDC per request (2000 atomic units; declared perMTok 2)" in gate.text
            chat = f"{gate.base}/services/chat/v1/chat/completions"

            async def amount(url: str) -> str:
                async with httpx.AsyncClient() as http:
                    r = await http.post(url, json=CHAT)
                assert r.status_code == 402, r.text
                return str(
                    json.loads(base64.b64decode(r.headers["payment-required"]))["accepts"][0]["amount"]
                )

            assert await amount(chat) == "1000"
            assert await amount(f"{gate.base}/tools/v1/chat/completions") == "2000"

            async def pay_chat(expected: int) -> None:
                before = await balances(stack, seller)
                async with x402HttpxClient(buyer(stack), timeout=60) as paying:
                    resp = await paying.post(chat, json=CHAT)
                assert resp.status_code == 200, resp.text
                after = await balances(stack, seller)
                assert (before[0] - after[0], after[1] - before[1]) == (expected, expected)

            await pay_chat(1000)
            pid = gate.proc.pid
            offers.write_text(offers_yaml(stack.facilitator.url, seller, upstream.url, other.url, "0.0025"))
            await gate.printed(f"reloaded {offers}")
            await eventually(lambda: amount(chat), until=lambda a: a == "2500", timeout=10, what="new price")
            await pay_chat(2500)
            assert gate.proc.pid == pid and gate.proc.returncode is None, "no restart"

            offers.write_text("offers: [ {name: Bad, upstream: x} ]\n")
            await gate.printed("previous offers kept")
            assert await amount(chat) == "2500", "a broken edit keeps the last good offers"
    finally:
        other.stop()
