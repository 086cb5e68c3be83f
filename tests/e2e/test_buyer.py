"""The buyer side on real parts: an agent (the ``openai`` client) → ``kube402 buyer`` (vouchers) → gateway →
verifier (both gate modes) → ``kube402 facilitator`` → anvil. Money is read back from the chain."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from kube402.api import v1alpha1
from kube402.buyer import config as buyer_config
from kube402.buyer import local, market, vouchers
from kube402.chain import devchain, registry, rpc
from kube402.devenv.testing import condition, eventually
from kube402.devenv.upstream import TestUpstream
from kube402.kube import resources
from kube402.localstack import LocalStack
from kube402.x402 import headers

pytestmark = pytest.mark.e2e
HELLO = "Hello from the upstream"


# -- helpers ------------------------------------------------------------------------------------------


async def sell(
    stack: LocalStack, ns: str, name: str, upstream: TestUpstream, *, price: str = "0.001", **kw: Any
) -> str:
    """A Service for the upstream that real Traefik accepts (selector-less, EndpointSlice to the upstream's
    address) and a ServiceOffer; returns the offer's base URL at the gateway."""
    kube = stack.kube
    assert kube is not None
    if await kube.get(resources.NAMESPACE, ns) is None:
        await kube.create(
            resources.NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        )
    await stack.expose(ns, f"{name}-llm", upstream.port)
    await kube.create(
        resources.SERVICE_OFFER,
        v1alpha1.offer_manifest(
            name,
            namespace=ns,
            upstream=f"{name}-llm",
            port=upstream.port,
            pay_to=stack.seller.address,
            price={"perRequest": price},
            network="base-sepolia",
            **kw,
        ),
    )
    await eventually(
        lambda: kube.get(resources.SERVICE_OFFER, name, namespace=ns),
        until=lambda o: condition(o, "Ready") == ("True", "Reconciled"),
        timeout=30,
        what=f"{name} Ready",
    )
    url = f"{stack.gateway_url}/services/{name}"
    async with httpx.AsyncClient() as http:
        await eventually(
            lambda: http.get(url),
            until=lambda r: r.status_code == 402,
            timeout=20,
            interval=0.1,
            what=f"{url} → 402",
        )
    return url


def agent(buyer: local.BuyerProcess, **kw: Any) -> openai.AsyncOpenAI:
    """The agent: the openai package's client pointed at the buyer (no retries: every request is one try)."""
    return openai.AsyncOpenAI(base_url=f"{buyer.url}/v1", api_key="sk-local-agent", max_retries=0, **kw)


def nonce_of(seen: dict[str, Any]) -> str:
    """The voucher nonce an upstream saw (ForwardAuth mode: Traefik passes the client's headers on)."""
    d = headers.decode_payment_header(seen["headers"]["payment-signature"], max_bytes=16384, accept_v1=True)
    return "0x" + d.authorization.nonce.hex()


def kube402(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kube402.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


async def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(kube402, *args, env=env)


async def used_on_chain(stack: LocalStack, authorizer: str, nonce: str) -> bool:
    assert stack.usdc is not None
    return await stack.usdc.authorization_state(authorizer, bytes.fromhex(nonce[2:]))


@pytest.fixture
def ns(request: pytest.FixtureRequest) -> str:
    name: str = request.node.name
    return "b2e-" + name.replace("_", "-").replace("[", "-")[5:38].strip("-]").lower()


@pytest.fixture
def buyers(tmp_path: Path) -> Iterator[list[local.BuyerProcess]]:
    started: list[local.BuyerProcess] = []
    yield started
    for b in started:
        b.stop()


@pytest.fixture
def key_file(stack: LocalStack, tmp_path: Path) -> Path:
    p = tmp_path / "buyer.key"
    p.write_text(stack.buyer.key.hex())
    p.chmod(0o600)
    return p


async def start_buyer(buyers: list[local.BuyerProcess], workdir: Path, **kw: Any) -> local.BuyerProcess:
    b = local.BuyerProcess(workdir, **kw)
    buyers.append(b)
    return await b.start()


# -- the story ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("gate_mode", ["forwardAuth", "proxy"])
async def test_chat_and_stream_paid_from_vouchers_written_by_buy_vouchers(
    stack: LocalStack,
    upstream: TestUpstream,
    ns: str,
    tmp_path: Path,
    key_file: Path,
    buyers: list[local.BuyerProcess],
    gate_mode: str,
) -> None:
    name = f"chat-{gate_mode.lower()}"
    url = await sell(stack, ns, name, upstream, gate_mode=gate_mode)
    assert stack.chain is not None
    pool = tmp_path / "pool"
    out = await run_cli(
        "buy", "vouchers", name, "--url", url, "--count", "3", "--key-file", str(key_file),
        "--rpc-url", stack.chain.rpc_url, "--model", "qwen3:0.6b", "--budget", "0.003", "--out", str(pool),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "signed 3 vouchers" in out.stdout and stack.buyer.key.hex() not in out.stdout + out.stderr
    buyer = await start_buyer(buyers, tmp_path / "buyer", config_dir=pool)
    st0 = (await buyer.status())[name]
    assert (st0["remaining"], st0["spent"], st0["public_model"]) == (3, 0, "paid/qwen3:0.6b")

    client = agent(buyer)
    before = await stack.balances(stack.seller.address, stack.buyer.address)
    answer = await client.chat.completions.create(
        model="paid/qwen3:0.6b", messages=[{"role": "user", "content": "hello"}]
    )
    assert answer.choices[0].message.content == HELLO
    mid = await stack.balances(stack.seller.address, stack.buyer.address)
    assert (mid[0] - before[0], before[1] - mid[1]) == (1000, 1000), "seller +price, buyer -price"
    st1 = (await buyer.status())[name]
    assert (st1["remaining"], st1["spent"], st1["held"]) == (2, 1, 0)
    assert upstream.paid_requests()[-1]["path"] == "/v1/chat/completions"
    assert json.loads(upstream.paid_requests()[-1]["body"])["model"] == "qwen3:0.6b", "paid/ stripped"

    upstream.stream_delay = 0.1
    stream = await client.chat.completions.create(
        model="paid/qwen3:0.6b", messages=[{"role": "user", "content": "hello"}], stream=True
    )
    chunks = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
    assert len(chunks) >= 3 and "".join(chunks) == HELLO, "SSE chunks arrived one by one"
    after = await stack.balances(stack.seller.address, stack.buyer.address)
    assert (after[0] - mid[0], mid[1] - after[1]) == (1000, 1000), "the streamed answer was paid once"
    st2 = (await buyer.status())[name]
    assert (st2["remaining"], st2["spent"]) == (1, 2)
    assert len(buyer.consumed()[name]) == 2

    status = await run_cli("buy", "status", "--buyer-url", buyer.url)
    assert status.returncode == 0 and name in status.stdout and "paid/qwen3:0.6b" in status.stdout
    bal = await run_cli(
        "buy", "balance", "--address", stack.buyer.address, "--rpc-url", stack.chain.rpc_url,
        "--buyer-url", buyer.url,
    )  # fmt: skip
    assert bal.returncode == 0, bal.stderr
    assert f"({after[1]} atomic units)" in bal.stdout and f"{name}: 1 left" in bal.stdout


async def test_twenty_parallel_requests_twenty_vouchers_from_configmaps_then_a_clear_empty_pool(
    stack: LocalStack,
    upstream: TestUpstream,
    ns: str,
    tmp_path: Path,
    key_file: Path,
    buyers: list[local.BuyerProcess],
) -> None:
    name = "par20"
    url = await sell(stack, ns, name, upstream, gate_mode="proxy")
    assert stack.chain is not None
    out = await run_cli(
        "buy", "vouchers", name, "--url", url, "--count", "20", "--key-file", str(key_file),
        "--rpc-url", stack.chain.rpc_url, "--model", "par-model", "--namespace", ns,
        "--kubeconfig", str(stack.kubeconfig),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert stack.kube is not None
    cm = await stack.kube.get(resources.CONFIGMAP, buyer_config.AUTHS_CONFIGMAP, namespace=ns)
    assert cm is not None and len(json.loads(cm["data"][buyer_config.AUTHS_KEY])[name]) == 20
    buyer = await start_buyer(buyers, tmp_path / "buyer", kubeconfig=str(stack.kubeconfig), namespace=ns)
    await eventually(buyer.status, until=lambda s: s.get(name, {}).get("remaining") == 20, what="pool read")

    client = agent(buyer, timeout=60)
    before = await stack.balances(stack.seller.address, stack.buyer.address)
    answers = await asyncio.gather(
        *(
            client.chat.completions.create(
                model="paid/par-model", messages=[{"role": "user", "content": str(i)}]
            )
            for i in range(20)
        )
    )
    assert all(a.choices[0].message.content == HELLO for a in answers)
    after = await stack.balances(stack.seller.address, stack.buyer.address)
    assert (after[0] - before[0], before[1] - after[1]) == (20_000, 20_000), "20 transfers of 1000"
    nonces = buyer.consumed()[name]
    assert len(nonces) == 20, "20 distinct nonces"
    used = await asyncio.gather(*(used_on_chain(stack, stack.buyer.address, n) for n in nonces))
    assert all(used), "every one of the 20 authorizations executed on chain"
    st = (await buyer.status())[name]
    assert (st["remaining"], st["spent"], st["held"]) == (0, 20, 0)

    served = len(upstream.paid_requests())
    with pytest.raises(openai.APIStatusError) as info:
        await client.chat.completions.create(
            model="paid/par-model", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 402
    assert f"voucher pool for upstream {name} is empty" in info.value.message
    assert len(upstream.paid_requests()) == served, "nothing reached the seller's upstream"
    assert await stack.balances(stack.seller.address, stack.buyer.address) == after, "no transfer"


async def test_sigkill_between_hold_and_answer_never_offers_the_held_voucher_again(
    stack: LocalStack,
    upstream: TestUpstream,
    ns: str,
    tmp_path: Path,
    buyers: list[local.BuyerProcess],
) -> None:
    name = "killed"
    url = await sell(stack, ns, name, upstream)
    pool = tmp_path / "pool"
    await local.write_pool(pool, name=name, url=url, model="kill-model", account=stack.buyer, count=3)
    buyer = await start_buyer(buyers, tmp_path / "buyer", config_dir=pool)
    upstream.stream_delay = 1.0
    served = len(upstream.paid_requests())

    async def stream_forever() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            body = {"model": "paid/kill-model", "messages": [], "stream": True}
            async with http.stream("POST", buyer.url + "/v1/chat/completions", json=body) as resp:
                async for _ in resp.aiter_bytes():
                    pass

    task = asyncio.create_task(stream_forever())
    await eventually(
        lambda: asyncio.sleep(0, len(upstream.paid_requests())),
        until=lambda n: n > served,
        what="paid request",
    )
    buyer.kill()  # the voucher is held and settled; its answer is still streaming
    with pytest.raises(httpx.HTTPError):
        await task
    held = nonce_of(upstream.paid_requests()[-1])
    assert buyer.consumed()[name] == {held}, "the held nonce was on disk before the request left"

    restarted = await start_buyer(buyers, tmp_path / "buyer", config_dir=pool)
    st = (await restarted.status())[name]
    assert (st["remaining"], st["spent"], st["held"]) == (2, 1, 0)
    upstream.stream_delay = 0.01
    answer = await agent(restarted).chat.completions.create(model="paid/kill-model", messages=[])
    assert answer.choices[0].message.content == HELLO
    assert nonce_of(upstream.paid_requests()[-1]) != held, "the held voucher was not offered again"
    assert await used_on_chain(stack, stack.buyer.address, held)


async def test_seller_500_after_send_keeps_the_voucher_consumed(
    stack: LocalStack, upstream: TestUpstream, ns: str, tmp_path: Path, buyers: list[local.BuyerProcess]
) -> None:
    name = "px-fail"
    url = await sell(stack, ns, name, upstream, gate_mode="proxy")
    pool = tmp_path / "pool"
    await local.write_pool(pool, name=name, url=url, model="fail-model", account=stack.buyer, count=2)
    buyer = await start_buyer(buyers, tmp_path / "buyer", config_dir=pool)
    upstream.answer_status = 500
    before = await stack.balances(stack.seller.address, stack.buyer.address)
    with pytest.raises(openai.InternalServerError) as info:
        await agent(buyer).chat.completions.create(model="paid/fail-model", messages=[])
    assert info.value.status_code == 500
    st = (await buyer.status())[name]
    assert (st["remaining"], st["spent"]) == (1, 1), "a possibly-settled voucher is never reused"
    assert await stack.balances(stack.seller.address, stack.buyer.address) == before, "proxy mode: no charge"


async def test_seller_timeout_after_send_keeps_the_voucher_consumed(
    stack: LocalStack, upstream: TestUpstream, ns: str, tmp_path: Path, buyers: list[local.BuyerProcess]
) -> None:
    name = "fa-slow"
    url = await sell(stack, ns, name, upstream)
    pool = tmp_path / "pool"
    await local.write_pool(pool, name=name, url=url, model="slow-model", account=stack.buyer, count=2)
    buyer = await start_buyer(buyers, tmp_path / "buyer", config_dir=pool, upstream_timeout=1.5)
    upstream.answer_delay = 4.0
    before = await stack.balances(stack.seller.address)
    with pytest.raises(openai.APIStatusError) as info:
        await agent(buyer).chat.completions.create(model="paid/slow-model", messages=[])
    assert info.value.status_code == 504 and "stays spent" in info.value.message
    st = (await buyer.status())[name]
    assert (st["remaining"], st["spent"]) == (1, 1)
    after = await stack.balances(stack.seller.address)
    assert after[0] - before[0] == 1000, "ForwardAuth settled before the upstream ran: the voucher was spent"


async def test_402_without_receipt_releases_the_voucher_and_the_next_request_reuses_it(
    stack: LocalStack, upstream: TestUpstream, ns: str, tmp_path: Path, buyers: list[local.BuyerProcess]
) -> None:
    name = "fa-poor"
    url = await sell(stack, ns, name, upstream)
    poor = devchain.dev_account(8)
    assert stack.usdc is not None and stack.chain is not None
    assert await stack.usdc.balance_of(poor.address) == 0
    pool = tmp_path / "pool"
    signed = await local.write_pool(pool, name=name, url=url, model="poor-model", account=poor, count=2)
    buyer = await start_buyer(buyers, tmp_path / "buyer", config_dir=pool)
    with pytest.raises(openai.APIStatusError) as info:
        await agent(buyer).chat.completions.create(model="paid/poor-model", messages=[])
    assert info.value.status_code == 402, "the facilitator refused: no funds"
    assert buyer.consumed().get(name, set()) == set(), "released: not recorded as consumed"
    st = (await buyer.status())[name]
    assert (st["remaining"], st["spent"], st["held"]) == (2, 0, 0)
    first = signed[0].nonce if signed[0].valid_before <= signed[1].valid_before else signed[1].nonce
    assert f"voucher {first[:18]}... of {name} released" in buyer.log.read_text()

    await devchain.mint(stack.chain, poor.address, 1000)
    answer = await agent(buyer).chat.completions.create(model="paid/poor-model", messages=[])
    assert answer.choices[0].message.content == HELLO
    assert nonce_of(upstream.paid_requests()[-1]) == first, "the released voucher paid the next request"
    assert await stack.usdc.balance_of(poor.address) == 0


async def test_replayed_voucher_is_refused_by_the_seller_and_reported(
    stack: LocalStack, upstream: TestUpstream, ns: str, tmp_path: Path, buyers: list[local.BuyerProcess]
) -> None:
    name = "fa-replay"
    url = await sell(stack, ns, name, upstream)
    pool = tmp_path / "pool"
    (v,) = await local.write_pool(
        pool, name=name, url=url, model="replay-model", account=stack.buyer, count=1
    )
    probe = await market.probe(url, skill=False)
    assert probe.required is not None
    hname, hvalue = vouchers.payment_header(probe.required, probe.required.accepts[0], v)
    async with httpx.AsyncClient() as http:  # someone spends the voucher directly, outside the buyer
        direct = await http.post(url + "/v1/chat/completions", json={"model": "x"}, headers={hname: hvalue})
    assert direct.status_code == 200
    before = await stack.balances(stack.seller.address, stack.buyer.address)
    buyer = await start_buyer(buyers, tmp_path / "buyer", config_dir=pool)
    with pytest.raises(openai.APIStatusError) as info:
        await agent(buyer).chat.completions.create(model="paid/replay-model", messages=[])
    assert info.value.status_code == 402
    body = info.value.body
    assert isinstance(body, dict) and body["code"] == "voucher_replayed", body
    assert "already used" in info.value.message
    st = (await buyer.status())[name]
    assert (st["remaining"], st["spent"]) == (0, 1)
    assert await stack.balances(stack.seller.address, stack.buyer.address) == before


@pytest.mark.parametrize("field", ["amount", "payTo", "asset", "network"])
async def test_a_voucher_for_other_terms_is_never_sent(
    stack: LocalStack,
    upstream: TestUpstream,
    ns: str,
    tmp_path: Path,
    buyers: list[local.BuyerProcess],
    field: str,
) -> None:
    name = f"mm-{field.lower()}"
    url = await sell(stack, ns, name, upstream)
    probe = await market.probe(url, skill=False)
    assert probe.required is not None
    req = probe.required.accepts[0]
    other = "0x" + "ab" * 20
    changed = {
        "amount": dataclasses.replace(req, amount=2000),
        "payTo": dataclasses.replace(req, pay_to=other),
        "asset": dataclasses.replace(req, asset=other),
        "network": req,
    }[field]
    signed = market.sign_vouchers(stack.buyer, changed, count=2, validity_seconds=3600, chain_id=84532)
    upstream_cfg = {
        "url": url,
        "remoteModel": "mm-model",
        "network": "eip155:8453" if field == "network" else req.network,
        "payTo": changed.pay_to,
        "asset": changed.asset,
        "price": str(changed.amount),
    }
    local.write_files(tmp_path / "pool", name, upstream_cfg, signed)
    buyer = await start_buyer(buyers, tmp_path / "buyer", config_dir=tmp_path / "pool")
    served = len(upstream.paid_requests())
    before = await stack.balances(stack.seller.address, stack.buyer.address)
    with pytest.raises(openai.APIStatusError) as info:
        await agent(buyer).chat.completions.create(model="paid/mm-model", messages=[])
    assert info.value.status_code == 402
    assert isinstance(info.value.body, dict) and info.value.body["code"] == "voucher_mismatch"
    assert f"{field} " in info.value.message, info.value.message
    assert (await buyer.status())[name]["remaining"] == 2 and buyer.consumed() == {}
    assert len(upstream.paid_requests()) == served
    assert await stack.balances(stack.seller.address, stack.buyer.address) == before
    assert not any([await used_on_chain(stack, stack.buyer.address, v.nonce) for v in signed])


async def test_buy_probe_and_discover_on_the_local_registry(
    stack: LocalStack, upstream: TestUpstream, ns: str
) -> None:
    url_a = await sell(stack, ns, "disc-a", upstream)
    url_b = await sell(stack, ns, "disc-b", upstream)
    assert stack.chain is not None and stack.node is not None
    probe = await run_cli("buy", "probe", url_a)
    assert probe.returncode == 0, probe.stdout + probe.stderr
    for want in (
        "0.001 USDC (1000 atomic units)",
        "eip155:84532",
        stack.seller.address,
        stack.chain.token,
        "maxTimeoutSeconds: 300",
        "/services/disc-a",
    ):
        assert want in probe.stdout, (want, probe.stdout)
    assert "skill.md" in probe.stdout
    free = await run_cli("buy", "probe", upstream.url + "/v1/chat/completions")
    assert free.returncode == 1 and "not payment-gated" in free.stdout

    def data_uri(doc: dict[str, Any]) -> str:
        return "data:application/json;base64," + base64.b64encode(json.dumps(doc).encode()).decode()

    def document(agent_name: str, endpoint: str) -> dict[str, Any]:
        return {
            "type": "https://eips.ethereum.org/EIPS/eip-8004#registration-v1",
            "name": agent_name,
            "description": "test seller",
            "image": "",
            "services": [{"name": "web", "endpoint": endpoint}, {"name": "OASF", "version": "0.8"}],
            "x402Support": True,
            "active": True,
        }

    reg = registry.IdentityRegistry(stack.node, stack.chain.registry)
    signer = rpc.LocalSigner(stack.seller)
    a = await reg.register(data_uri(document("disc-a", url_a)), signer=signer)
    ungated = await reg.register(data_uri(document("disc-free", upstream.url + "/health")), signer=signer)
    out = await run_cli(
        "buy", "discover", "--registry-chain", "base-sepolia", "--rpc-url", stack.chain.rpc_url, "-o", "json"
    )
    assert out.returncode == 0, out.stderr
    found = {d["agentId"]: d for d in json.loads(out.stdout)}
    assert found[a.agent_id]["valid402"] is True and found[a.agent_id]["endpoint"] == url_a
    assert found[a.agent_id]["terms"]["accepts"][0]["amount"] == "1000"
    assert found[ungated.agent_id]["valid402"] is False
    assert not any(d["endpoint"] == url_b for d in found.values()), "an unregistered seller is not listed"
    text = await run_cli("buy", "discover", "--rpc-url", stack.chain.rpc_url)
    assert text.returncode == 0
    row = next(line for line in text.stdout.splitlines() if line.startswith(f"{a.agent_id} "))
    assert "valid" in row and "0.001 USDC" in row and url_a in row
