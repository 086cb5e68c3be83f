"""`kube402 sell register` (SPEC §10) as a user runs it: a subprocess against the local chain's ERC-8004
identity registry at its Base Sepolia address. One mint, then an adoption — never a second mint."""

from __future__ import annotations

from pathlib import Path

import pytest

from kube402.api import chains
from kube402.chain import devchain
from kube402.chain import registry as chain_registry
from kube402.localstack import LocalStack
from tests.e2e.cli_helpers import cli, cli_env

pytestmark = pytest.mark.e2e

OWNER_INDEX = 8  # a funded anvil account that no other test registers with


async def test_sell_register_mints_once_and_adopts_after(stack: LocalStack, tmp_path: Path) -> None:
    owner = devchain.dev_account(OWNER_INDEX)
    key_file = tmp_path / "erc8004.key"
    key_file.write_text(owner.key.hex() + "\n")
    key_file.chmod(0o600)
    uri = f"http://seller-{tmp_path.name}.example/.well-known/agent-registration.json"
    env = cli_env(XDG_STATE_HOME=str(tmp_path / "state"))
    args = (
        "sell",
        "register",
        "--agent-uri",
        uri,
        "--private-key-file",
        str(key_file),
        "--rpc-url",
        stack.rpc_url,
    )

    first = (await cli(*args, env=env, cwd=tmp_path)).ok()
    assert "base-sepolia: agent " in first.out and " registered" in first.out, str(first)
    assert owner.key.hex() not in first.out + first.err, "the key is never printed"
    agent_id = int(first.out.split("agent ", 1)[1].split()[0])

    assert stack.node is not None
    reg = chain_registry.IdentityRegistry(stack.node, chains.identity_registry(84532))
    assert (await reg.owner_of(agent_id) or "").lower() == owner.address.lower()
    assert await reg.token_uri(agent_id) == uri

    again = (await cli(*args, env=env, cwd=tmp_path)).ok()
    assert f"agent {agent_id} already registered (adopted)" in again.out, str(again)
    # Even with the local fence lost, the chain's Registered log is adopted: still one mint.
    (tmp_path / "state" / "kube402" / "registrations.json").unlink()
    recovered = (await cli(*args, env=env, cwd=tmp_path)).ok()
    assert f"agent {agent_id} already registered (adopted)" in recovered.out, str(recovered)
    found = await reg.find_registered(from_block=0, owner=owner.address)
    assert [e.agent_id for e in found if e.agent_uri == uri] == [agent_id], "exactly one mint"
