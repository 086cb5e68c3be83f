"""Issue 9, defects 1 and 2 end to end: **two** ``kube402 verifier`` processes (file route source) in front of
one ``kube402 facilitator`` on anvil, a counting upstream, payments signed by the x402 client.

* 50 concurrent copies of one payment spread across both replicas → exactly one 200, one transfer and one
  upstream call, in ForwardAuth mode (``/verify``; Traefik calls the upstream once per 200) and in proxy mode.
* A settle that times out at the verifier but lands on chain → the buyer gets 200, once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from eth_account.signers.local import LocalAccount
from x402 import x402Client
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.schemas import PaymentRequired

from kube402.chain import devchain, rpc
from kube402.chain.facilitator import main
from kube402.devenv import process

from . import support

pytestmark = pytest.mark.integration

COPIES = 50


class Upstream:
    """A real HTTP upstream on loopback that counts the requests it served."""

    def __init__(self) -> None:
        self.calls = 0
        self.port = process.free_port()
        self._runner: web.AppRunner | None = None

    async def _handle(self, _request: web.Request) -> web.Response:
        self.calls += 1
        return web.json_response({"answer": 42})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@contextlib.asynccontextmanager
async def replicas(
    tmp_path: Path, *, facilitator_url: str, seller: str, upstream: Upstream, extra: str = ""
) -> AsyncIterator[list[dict[str, int]]]:
    """Two verifier processes sharing one pricing.yaml; yields their ``{"verify", "proxy"}`` ports."""
    config = tmp_path / "pricing.yaml"
    config.write_text(
        f'wallet: "{seller}"\nchain: base-sepolia\nfacilitatorURL: "{facilitator_url}"\n{extra}'
        f"routes:\n  - pattern: /paid/*\n    price: '0.001'\n    upstream: 'http://127.0.0.1:{upstream.port}'\n"
    )
    children: list[Any] = []
    ports: list[dict[str, int]] = []
    try:
        for i in range(2):
            p = {"verify": process.free_port(), "proxy": process.free_port()}
            argv = [
                sys.executable,
                "-m",
                "kube402.cli",
                "verifier",
                "--config",
                str(config),
                "--listen",
                f"127.0.0.1:{p['verify']}",
                "--proxy-listen",
                f"127.0.0.1:{p['proxy']}",
                "--route-source",
                "file",
            ]
            children.append(process.spawn(argv, log=tmp_path / f"verifier-{i}.log"))
            ports.append(p)
        async with httpx.AsyncClient() as http:
            for p in ports:
                for _ in range(300):
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get(f"http://127.0.0.1:{p['verify']}/readyz")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
                else:
                    logs = await asyncio.to_thread(_tails, tmp_path)
                    raise AssertionError(f"verifier on {p} never became ready:\n{logs}")
        yield ports
    finally:
        for child in children:
            child.terminate()
        for child in children:
            with contextlib.suppress(Exception):
                child.wait(timeout=10)


def _tails(directory: Path) -> str:
    return "\n".join(f.read_text()[-2000:] for f in directory.glob("verifier-*.log"))


async def payment_header(http: httpx.AsyncClient, buyer: LocalAccount, verify_port: int) -> str:
    """The 402 challenge of the route, signed by the x402 package's client."""
    resp = await http.get(
        f"http://127.0.0.1:{verify_port}/verify",
        headers={"x-forwarded-uri": "/paid/answer", "x-forwarded-host": "seller.test"},
    )
    assert resp.status_code == 402, resp.text
    required = PaymentRequired.model_validate(
        orjson.loads(base64.b64decode(resp.headers["payment-required"]))
    )
    client = register_exact_evm_client(x402Client(), EthAccountSigner(buyer))
    payload = await client.create_payment_payload(required)
    return base64.b64encode(payload.model_dump_json(by_alias=True, exclude_none=True).encode()).decode()


async def send(http: httpx.AsyncClient, mode: str, port: dict[str, int], header: str) -> int:
    if mode == "forwardAuth":
        r = await http.get(
            f"http://127.0.0.1:{port['verify']}/verify",
            headers={
                "x-forwarded-uri": "/paid/answer",
                "x-forwarded-method": "POST",
                "x-forwarded-host": "seller.test",
                "payment-signature": header,
            },
        )
    else:
        r = await http.post(
            f"http://127.0.0.1:{port['proxy']}/paid/answer",
            headers={"payment-signature": header, "host": "seller.test"},
            content=b'{"q":1}',
        )
    return r.status_code


@pytest.mark.parametrize("mode", ["forwardAuth", "proxy"])
async def test_defect1_one_payment_one_request_across_two_replicas(
    mode: str,
    facilitator: main.Facilitator,
    dev_chain: devchain.DevChainInfo,
    node: rpc.Rpc,
    tmp_path: Path,
) -> None:
    parties = await support.funded_buyer(dev_chain)
    upstream = Upstream()
    await upstream.start()
    try:
        async with (
            replicas(
                tmp_path, facilitator_url=facilitator.url, seller=parties.seller, upstream=upstream
            ) as ports,
            httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200)) as http,
        ):
            header = await payment_header(http, parties.buyer, ports[0]["verify"])
            statuses = await asyncio.gather(*(send(http, mode, ports[i % 2], header) for i in range(COPIES)))
            served = statuses.count(200)
            upstream_calls = served if mode == "forwardAuth" else upstream.calls
            assert served == 1, sorted(statuses)
            assert upstream_calls == 1, (upstream.calls, sorted(statuses))
            assert all(s in (200, 402, 409) for s in statuses), sorted(statuses)
            assert await support.transfers_to(node, parties.seller) == 1
            assert await support.balance(node, parties.seller) == support.AMOUNT
            # every loser later sees the payment as used, on either replica; nothing is left in flight
            later = [await send(http, mode, p, header) for p in ports]
            assert later == [402, 402], later
    finally:
        await upstream.stop()


async def test_defect2_settle_timing_out_at_the_verifier_but_landing_is_served_once(
    facilitator: main.Facilitator,
    dev_chain: devchain.DevChainInfo,
    node: rpc.Rpc,
    tmp_path: Path,
) -> None:
    """anvil mines only every 4 s here, the verifiers wait 1 s for a settle: both attempts of the first
    request time out (503 settlement_pending) while the transfer goes through. Once it is on chain and the
    facilitator's job is over, the buyer retries the same payment: it gets 200 exactly once (not a 402 for
    its own used nonce)."""
    parties = await support.funded_buyer(dev_chain)
    upstream = Upstream()
    await upstream.start()
    try:
        async with (
            replicas(
                tmp_path,
                facilitator_url=facilitator.url,
                seller=parties.seller,
                upstream=upstream,
                extra="settleTimeoutSeconds: 1\n",
            ) as ports,
            httpx.AsyncClient(timeout=60) as http,
        ):
            header = await payment_header(http, parties.buyer, ports[0]["verify"])
            await node.request("evm_setAutomine", [False])
            await node.request("evm_setIntervalMining", [4])
            try:
                first = await send(http, "forwardAuth", ports[0], header)
                assert first == 503, first
                for _ in range(300):  # wait for the observable event: the transfer is on chain
                    if await support.transfers_to(node, parties.seller) == 1:
                        break
                    await asyncio.sleep(0.05)
            finally:
                await node.request("evm_setIntervalMining", [0])
                await node.request("evm_setAutomine", [True])
            for _ in range(300):  # ... and the facilitator's settle job has finished
                if facilitator.service.ledger.in_flight == 0:
                    break
                await asyncio.sleep(0.05)
            assert facilitator.service.ledger.in_flight == 0
            statuses = [first]
            for _ in range(5):  # the buyer retries the same payment until it has an answer
                statuses.append(await send(http, "forwardAuth", ports[0], header))
                if statuses[-1] != 503:
                    break
            assert statuses[-1] == 200 and statuses.count(200) == 1, statuses
            assert await support.transfers_to(node, parties.seller) == 1
            # once served, never again: on either replica
            assert [await send(http, "forwardAuth", p, header) for p in ports] == [402, 402]
    finally:
        await upstream.stop()


async def test_defect2_unknown_outcome_resolved_from_the_chain_after_the_facilitator_forgot(
    dev_chain: devchain.DevChainInfo, node: rpc.Rpc, tmp_path: Path
) -> None:
    """The facilitator restarts (its memory of the success is gone) while the verifier holds the payment
    pending: the retry's settle says "nonce already used"; with ``rpcURLs`` the verifier reads the chain
    (authorizationState + AuthorizationUsed log) and serves the buyer once, instead of a 402."""
    from .conftest import funded_relayer, settings_for

    parties = await support.funded_buyer(dev_chain)
    relayer = await funded_relayer(dev_chain.rpc_url)
    listen = f"127.0.0.1:{process.free_port()}"
    fac = main.Facilitator(settings_for(dev_chain.rpc_url, listen=listen), account=relayer)
    await fac.start()
    upstream = Upstream()
    await upstream.start()
    try:
        async with (
            replicas(
                tmp_path,
                facilitator_url=fac.url,
                seller=parties.seller,
                upstream=upstream,
                extra=f"settleTimeoutSeconds: 1\nrpcURLs:\n  base-sepolia: {dev_chain.rpc_url}\n",
            ) as ports,
            httpx.AsyncClient(timeout=60) as http,
        ):
            header = await payment_header(http, parties.buyer, ports[0]["verify"])
            await node.request("evm_setAutomine", [False])
            await node.request("evm_setIntervalMining", [4])
            try:
                first = await send(http, "forwardAuth", ports[0], header)
                assert first == 503, first
                for _ in range(300):
                    if await support.transfers_to(node, parties.seller) == 1:
                        break
                    await asyncio.sleep(0.05)
            finally:
                await node.request("evm_setIntervalMining", [0])
                await node.request("evm_setAutomine", [True])
            for _ in range(300):
                if fac.service.ledger.in_flight == 0:
                    break
                await asyncio.sleep(0.05)
            await fac.stop()  # forgets its ledger and claims
            fac = main.Facilitator(settings_for(dev_chain.rpc_url, listen=listen), account=relayer)
            await fac.start()
            statuses = [first]
            for _ in range(5):
                statuses.append(await send(http, "forwardAuth", ports[0], header))
                if statuses[-1] != 503:
                    break
            assert statuses[-1] == 200 and statuses.count(200) == 1, statuses
            assert await support.transfers_to(node, parties.seller) == 1
            assert [await send(http, "forwardAuth", p, header) for p in ports] == [402, 402]
    finally:
        await upstream.stop()
        await fac.stop()
