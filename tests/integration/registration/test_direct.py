"""Direct registration (the library behind `kube402 sell register`): one mint per (owner, URI) whatever
the state file says after a crash, adoption on rerun, setAgentURI on a new URI, x402 metadata
read-before-write."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kube402.chain import devchain, rpc
from kube402.chain import registry as chain_registry
from kube402.controller import direct_registration as direct

from .conftest import REGISTRY, registered_logs

pytestmark = pytest.mark.integration
URI = "https://agent.example/.well-known/agent-registration.json"


async def test_register_once_then_adopt_then_move(
    dev_chain: devchain.DevChainInfo, reg: chain_registry.IdentityRegistry, key: Any, tmp_path: Path
) -> None:
    state = tmp_path / "registrations.json"
    signer = rpc.LocalSigner(key)
    first = await direct.register(
        agent_uri=URI, signer=signer, rpc_url=dev_chain.rpc_url, state_file=state, poll=0.1
    )
    assert first.submitted
    assert first.agent_registry == f"eip155:84532:{REGISTRY}"
    assert await reg.owner_of(first.agent_id) == key.address
    assert await reg.token_uri(first.agent_id) == URI
    assert await reg.get_metadata(first.agent_id, "x402") == b'{"x402":true}'

    again = await direct.register(
        agent_uri=URI, signer=signer, rpc_url=dev_chain.rpc_url, state_file=state, poll=0.1
    )
    assert (again.agent_id, again.submitted) == (first.agent_id, False)

    # A crash after the broadcast that lost the agentId from the state file (only fence + hash left):
    data = json.loads(state.read_text())
    (entry,) = data.values()
    for k in ("agentId", "metadataSynced", "phase", "message"):
        entry.pop(k, None)
    state.write_text(json.dumps(data))
    recovered = await direct.register(
        agent_uri=URI, signer=signer, rpc_url=dev_chain.rpc_url, state_file=state, poll=0.1
    )
    assert (recovered.agent_id, recovered.submitted) == (first.agent_id, False)
    # A lost tx hash too (only the fence): the log scan finds it.
    data = json.loads(state.read_text())
    (entry,) = data.values()
    for k in ("agentId", "registrationTxHash", "metadataSynced"):
        entry.pop(k, None)
    state.write_text(json.dumps(data))
    scanned = await direct.register(
        agent_uri=URI, signer=signer, rpc_url=dev_chain.rpc_url, state_file=state, poll=0.1
    )
    assert (scanned.agent_id, scanned.submitted) == (first.agent_id, False)
    assert len(await registered_logs(reg, key.address, URI)) == 1

    moved_uri = "https://moved.example/.well-known/agent-registration.json"
    moved = await direct.register(
        agent_uri=moved_uri, signer=signer, rpc_url=dev_chain.rpc_url, state_file=state, poll=0.1
    )
    assert moved.agent_id == first.agent_id and not moved.submitted
    assert await reg.token_uri(first.agent_id) == moved_uri
    assert [e.agent_id for e in await reg.find_registered(from_block=0, owner=key.address)] == [
        first.agent_id
    ]


async def test_wrong_chain_is_refused_in_one_sentence(
    dev_chain: devchain.DevChainInfo, key: Any, tmp_path: Path
) -> None:
    with pytest.raises(
        direct.RegistrationFailed, match="RPC chain id 84532 does not match configured chain 8453"
    ):
        await direct.register(
            agent_uri=URI,
            signer=rpc.LocalSigner(key),
            rpc_url=dev_chain.rpc_url,
            chain="base",
            registry=REGISTRY,
            state_file=tmp_path / "s.json",
        )
