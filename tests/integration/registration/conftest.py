"""Registration on the real control plane and a real anvil (registry at its Base Sepolia address).

Controllers are started per test (in-process, or as ``kube402 controller`` processes for the crash tests),
each with the registration settings that test needs; ``rpc_proxy`` sits between a controller and anvil so a
test can take the RPC down or make it answer for another chain, then bring it back.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from kube402.api import v1alpha1
from kube402.chain import devchain, rpc
from kube402.chain import registry as chain_registry
from kube402.controller.settings import RegistrationSettings, Settings, SigningKey
from kube402.devenv import anvil, process
from kube402.devenv.controlplane import ControlPlaneInfo
from kube402.devenv.testing import eventually
from kube402.devenv.upstream import TestUpstream
from kube402.kube import resources
from kube402.kube.client import Kube

REGISTRY = devchain.BASE_SEPOLIA_IDENTITY_REGISTRY
WALLET = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BASE = "http://seller.test:8080"
PUBLISHED = BASE + "/.well-known/agent-registration.json"


@pytest.fixture(scope="package")
def anvil_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[anvil.AnvilProcess]:
    chain = anvil.Anvil(log=tmp_path_factory.mktemp("anvil-reg") / "anvil.log")
    proc = chain.start()
    try:
        yield proc
    finally:
        chain.stop()


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def dev_chain(anvil_process: anvil.AnvilProcess) -> devchain.DevChainInfo:
    return await devchain.setup_base_sepolia(anvil_process.rpc_url)


@pytest.fixture
def node(dev_chain: devchain.DevChainInfo) -> rpc.Rpc:
    return rpc.Rpc(dev_chain.rpc_url)


@pytest.fixture
def reg(node: rpc.Rpc) -> chain_registry.IdentityRegistry:
    return chain_registry.IdentityRegistry(node, REGISTRY)


_ACCOUNTS = iter(range(10, 200))


@pytest.fixture
async def key(dev_chain: devchain.DevChainInfo) -> Any:
    """A fresh funded dev account per test (so per-owner log counts are per test)."""
    account = devchain.dev_account(next(_ACCOUNTS))
    await devchain.set_eth_balance(dev_chain.rpc_url, account.address, 10**20)
    return account


def signing_key(account: Any) -> SigningKey:
    return SigningKey("0x" + bytes(account.key).hex())


def settings(rpc_url: str, *, key: Any = None, registrant: str = "", base: str = BASE, **kw: Any) -> Settings:
    return Settings(
        upstream_resolution="endpointslice",
        route_acceptance="applied",  # no Gateway controller runs in these tests
        leader_elect=False,
        metrics_listen="",
        requeue_not_ready=1.0,
        requeue_ready=2.0,
        agent_base_url=base,
        catalog_debounce=0.2,
        registration=RegistrationSettings(
            key=signing_key(key) if key is not None else None,
            rpc_url=rpc_url,
            registrant=registrant,
            readiness="objects",
            rpc_timeout=2.0,
        ),
        **kw,
    )


@pytest.fixture
def upstream() -> Iterator[TestUpstream]:
    server = TestUpstream().start()
    try:
        yield server
    finally:
        server.stop()


async def make_offer(
    kube: Kube,
    ns: str,
    name: str,
    upstream: TestUpstream,
    *,
    registration: dict[str, Any] | None = None,
    **kw: Any,
) -> None:
    if await kube.get(resources.SERVICE, "ollama", namespace=ns) is None:
        await kube.create(
            resources.SERVICE,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "ollama", "namespace": ns},
                "spec": {"type": "ExternalName", "externalName": "localhost"},
            },
        )
    await kube.create(
        resources.SERVICE_OFFER,
        v1alpha1.offer_manifest(
            name,
            namespace=ns,
            upstream="ollama",
            port=upstream.port,
            pay_to=WALLET,
            registration={"enabled": True} if registration is None else registration,
            **kw,
        ),
    )


async def rr(kube: Kube, ns: str, name: str) -> dict[str, Any] | None:
    return await kube.get(resources.REGISTRATION_REQUEST, f"so-{name}-registration", namespace=ns)


def phase(obj: dict[str, Any] | None) -> str:
    return str(((obj or {}).get("status") or {}).get("phase") or "")


async def wait_phase(kube: Kube, ns: str, name: str, want: str, wait_s: float = 30) -> dict[str, Any]:
    got = await eventually(
        lambda: rr(kube, ns, name),
        until=lambda o: phase(o) == want,
        timeout=wait_s,
        what=f"rr {name} {want}",
    )
    assert got is not None
    return got


async def delete_offers(kube: Kube, ns: str, wait_s: float = 30) -> None:
    """Delete every offer of the namespace and wait until the controller let them go (tombstones done)."""
    items, _ = await kube.list(resources.SERVICE_OFFER, namespace=ns)
    for o in items:
        await kube.delete(resources.SERVICE_OFFER, o["metadata"]["name"], namespace=ns)

    async def left() -> int:
        objs, _ = await kube.list(resources.SERVICE_OFFER, namespace=ns)
        return len(objs)

    await eventually(left, until=lambda n: n == 0, timeout=wait_s, what=f"offers of {ns} gone")


async def registered_logs(reg: chain_registry.IdentityRegistry, owner: str, uri: str) -> list[Any]:
    return [e for e in await reg.find_registered(from_block=0, owner=owner) if e.agent_uri == uri]


class RpcProxy:
    """A JSON-RPC pass-through to anvil that a test can switch: ``up``, ``down`` (502) or ``wrong`` (answers
    ``eth_chainId`` for chain 1)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.mode = "up"
        self.port = process.free_port()
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if self.mode == "down":
            return web.Response(status=502, text="bad gateway")
        if self.mode == "wrong":
            msg = json.loads(body)
            if isinstance(msg, dict) and msg.get("method") == "eth_chainId":
                return web.json_response({"jsonrpc": "2.0", "id": msg.get("id"), "result": "0x1"})
        assert self._http is not None
        async with self._http.post(self.target, data=body, headers={"content-type": "application/json"}) as r:
            return web.Response(status=r.status, body=await r.read(), content_type="application/json")

    async def start(self) -> RpcProxy:
        self._http = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()


@pytest_asyncio.fixture(loop_scope="session")
async def rpc_proxy(dev_chain: devchain.DevChainInfo) -> AsyncIterator[RpcProxy]:
    proxy = await RpcProxy(dev_chain.rpc_url).start()
    try:
        yield proxy
    finally:
        await proxy.stop()


def kubeconfig_path(info: ControlPlaneInfo) -> Path:
    return Path(info.kubeconfig)
