"""A real anvil (chain id 84532) set up to look like Base Sepolia, shared by this package's tests.

``anvil_process`` starts one anvil per session and stops it by PID afterwards; ``dev_chain`` installs TestUSDC
and the identity registry at their canonical addresses once; ``chain`` wraps every test in
``evm_snapshot``/``evm_revert`` so each test sees that fresh state (agentIds start at 0 again, balances are
empty).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from eth_account import Account
from eth_account.signers.local import LocalAccount

from kube402.chain import devchain, rpc
from kube402.devenv import anvil


@pytest.fixture(scope="session")
def anvil_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[anvil.AnvilProcess]:
    chain = anvil.Anvil(log=tmp_path_factory.mktemp("anvil") / "anvil.log")
    proc = chain.start()
    try:
        yield proc
    finally:
        chain.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def dev_chain(anvil_process: anvil.AnvilProcess) -> devchain.DevChainInfo:
    return await devchain.setup_base_sepolia(anvil_process.rpc_url)


@pytest_asyncio.fixture(loop_scope="session")
async def chain(dev_chain: devchain.DevChainInfo) -> AsyncIterator[devchain.DevChainInfo]:
    node = rpc.Rpc(dev_chain.rpc_url)
    snapshot = await node.request("evm_snapshot", [])
    try:
        yield dev_chain
    finally:
        assert await node.request("evm_revert", [snapshot]) is True


@pytest.fixture
def node(chain: devchain.DevChainInfo) -> rpc.Rpc:
    return rpc.Rpc(chain.rpc_url)


@pytest.fixture
def relayer() -> LocalAccount:
    """Pays gas for relayed transfers (a pre-funded dev account)."""
    return devchain.dev_account(3)


@pytest.fixture
def buyer() -> LocalAccount:
    """A fresh key per test: no ETH, no USDC until a test funds it."""
    account: LocalAccount = Account.create()
    return account
