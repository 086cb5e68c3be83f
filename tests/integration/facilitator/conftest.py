"""A real anvil made to look like Base Sepolia, and real ``kube402 facilitator`` servers on loopback.

``facilitator`` is one in-process server (granian, real HTTP) for the session with its own freshly funded
relayer key; ``start_facilitator`` starts extra ones (other settings, other keys: two servers must never
share a relayer nonce sequence) and stops them after the test. No snapshots/reverts: a revert would rewind
the relayer's nonce under a running server, so tests isolate themselves with fresh buyers and sellers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
from eth_account import Account
from eth_account.signers.local import LocalAccount
from x402.http import FacilitatorConfig, HTTPFacilitatorClient

from kube402.chain import devchain, rpc
from kube402.chain.facilitator import config, main
from kube402.devenv import anvil
from kube402.x402.facilitator_client import FacilitatorClient

StartFacilitator = Callable[..., Awaitable[main.Facilitator]]


@pytest.fixture(scope="session")
def anvil_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[anvil.AnvilProcess]:
    chain = anvil.Anvil(log=tmp_path_factory.mktemp("anvil") / "anvil.log")
    proc = chain.start()
    try:
        yield proc
    finally:
        chain.stop()


@pytest_asyncio.fixture(scope="session")
async def dev_chain(anvil_process: anvil.AnvilProcess) -> devchain.DevChainInfo:
    return await devchain.setup_base_sepolia(anvil_process.rpc_url)


@pytest.fixture
def node(dev_chain: devchain.DevChainInfo) -> rpc.Rpc:
    return rpc.Rpc(dev_chain.rpc_url)


async def funded_relayer(rpc_url: str) -> LocalAccount:
    account: LocalAccount = Account.create()
    await devchain.set_eth_balance(rpc_url, account.address, 100 * 10**18)
    return account


def settings_for(rpc_url: str, **overrides: Any) -> config.Settings:
    base = config.Settings(
        networks=(config.parse_network(f"base-sepolia={rpc_url}"),),
        listen="127.0.0.1:0",
        confirmation_timeout=10.0,
    )
    return dataclasses.replace(base, **overrides)


@pytest_asyncio.fixture(scope="session")
async def facilitator(dev_chain: devchain.DevChainInfo) -> AsyncIterator[main.Facilitator]:
    fac = main.Facilitator(settings_for(dev_chain.rpc_url), account=await funded_relayer(dev_chain.rpc_url))
    await fac.start()
    try:
        yield fac
    finally:
        await fac.stop()


@pytest_asyncio.fixture
async def start_facilitator(dev_chain: devchain.DevChainInfo) -> AsyncIterator[StartFacilitator]:
    started: list[main.Facilitator] = []

    async def start(
        rpc_url: str | None = None, *, account: LocalAccount | None = None, **overrides: Any
    ) -> main.Facilitator:
        url = rpc_url or dev_chain.rpc_url
        fac = main.Facilitator(
            settings_for(url, **overrides), account=account or await funded_relayer(dev_chain.rpc_url)
        )
        await fac.start()
        started.append(fac)
        return fac

    try:
        yield start
    finally:
        for fac in started:
            await fac.stop()


@pytest_asyncio.fixture
async def kube_client(facilitator: main.Facilitator) -> AsyncIterator[FacilitatorClient]:
    client = FacilitatorClient(facilitator.url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest_asyncio.fixture
async def sdk_client(facilitator: main.Facilitator) -> AsyncIterator[HTTPFacilitatorClient]:
    client = HTTPFacilitatorClient(FacilitatorConfig(url=facilitator.url, timeout=30))
    try:
        yield client
    finally:
        await client.aclose()
