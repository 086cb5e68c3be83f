"""Direct ERC-8004 registration of the stack's agent (``kube402 sell register``, SPEC 10), with the same fence
and recovery as the controller (SPEC 6.3), the fence kept in a local state file instead of an RR status.

Why the same planner: "at most one register transaction per (owner, URI) fence, across crashes" must hold for
the CLI too; :mod:`kube402.controller.registration_plan` decides, this module persists each decision to
``$XDG_STATE_HOME/kube402/registrations.json`` (atomically, fsynced) before acting on it. After the agent is
known, metadata ``x402`` = ``{"x402":true}`` is written read-before-write, and a changed agentURI is set with
``setAgentURI`` on the same agentId.

Use: ``await register(agent_uri=…, signer=…, rpc_url=…, chain="base-sepolia")`` → :class:`Outcome`.
The CLI flag wiring (``sell register``, ``sell http --register*``) belongs to the CLI.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from kube402.api import chains
from kube402.chain import registry as chain_registry
from kube402.chain import rpc
from kube402.controller import registration_plan as plan

__all__ = ["Outcome", "RegistrationFailed", "default_state_file", "recover", "register"]

X402_METADATA: Final = {"x402": b'{"x402":true}'}


class RegistrationFailed(Exception):
    """The registration could not complete (chain unreachable, wrong chain, timeout); the message says why."""


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    agent_id: int
    tx_hash: str
    agent_uri: str
    owner: str
    agent_registry: str
    submitted: bool
    """Whether this call broadcast a register transaction (False: an earlier registration was adopted)."""


def default_state_file() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "kube402" / "registrations.json"


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise RegistrationFailed(f"state file {path} is unreadable: {err}") from None
    return data if isinstance(data, dict) else {}


def _save(path: Path, data: dict[str, Any]) -> None:
    """Atomic and durable: a crash leaves the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".registrations-")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


async def register(
    *,
    agent_uri: str,
    signer: rpc.TxSigner,
    rpc_url: str,
    chain: str = "base-sepolia",
    registry: str = "",
    state_file: Path | None = None,
    log_chunk: int = 2000,
    deadline_s: float = 120.0,
    poll: float = 1.0,
) -> Outcome:
    """Register ``agent_uri`` for ``signer`` once, or adopt the existing registration; idempotent."""
    path = state_file or default_state_file()
    ident = chains.lookup(chain)
    address = registry or chains.identity_registry(ident.chain_id)
    node = rpc.Rpc(rpc_url)
    reg = chain_registry.IdentityRegistry(node, address)
    agent_registry = f"eip155:{ident.chain_id}:{reg.address}"
    key = f"{agent_registry}:{signer.address.lower()}"
    submitted = False
    deadline = time.monotonic() + deadline_s

    def current() -> plan.RRStatus:
        return plan.RRStatus.from_dict(_load(path).get(key) or {})

    def persist(st: plan.RRStatus) -> None:
        data = _load(path)
        data[key] = st.to_dict()
        _save(path, data)

    while True:
        inputs = plan.Inputs(status=current(), published_url=agent_uri, signer=signer.address)
        while True:
            step = plan.plan_active(inputs)
            if isinstance(step, plan.NeedChain):
                try:
                    actual = await node.run(lambda: node.w3.eth.chain_id)
                    error = (
                        ""
                        if int(actual) == ident.chain_id
                        else f"RPC chain id {actual} does not match configured chain {ident.chain_id}"
                    )
                except rpc.ChainError as err:
                    error = f"Waiting for ERC-8004 RPC connectivity: {err}"
                if error:
                    raise RegistrationFailed(error)
                inputs = dataclasses.replace(inputs, chain_error="")
            elif isinstance(step, plan.NeedHead):
                inputs = dataclasses.replace(inputs, head=await node.block_number())
            elif isinstance(step, plan.NeedRecovery):
                inputs = dataclasses.replace(inputs, recovery=await recover(reg, step, log_chunk))
            else:
                break
        if isinstance(step, plan.Write):
            persist(step.status)
            if step.error:
                raise RegistrationFailed(step.status.message)
            if step.status.phase == plan.Phase.REGISTERED:
                st = step.status
                return Outcome(int(st.agent_id), st.tx_hash, st.uri, st.owner, agent_registry, submitted)
            if step.requeue == plan.SOON:
                continue
        elif isinstance(step, plan.Submit):
            nonce = await reg.confirmed_nonce(signer.address)
            signed = await node.sign(signer, reg.register_call(step.uri), nonce=nonce)
            persist(step.status.with_(tx_hash=signed.hash, message=f"Submitted {signed.hash}"))
            try:
                await node.broadcast(signed)
            except rpc.ChainError as err:
                text = str(err).lower()
                if "already known" not in text and "nonce too low" not in text:
                    raise RegistrationFailed(f"Submitting on-chain registration: {err}") from None
            submitted = True
        elif isinstance(step, plan.Adopted):
            persist(step.status)
            continue
        elif isinstance(step, plan.Maintain):
            st = step.status
            if step.set_uri is not None:
                await reg.set_agent_uri(step.agent_id, step.set_uri, signer=signer)
                st = st.with_(uri=step.set_uri)
            if step.sync:
                for mkey, value in X402_METADATA.items():
                    if await reg.get_metadata(step.agent_id, mkey) != value:
                        await reg.set_metadata(step.agent_id, mkey, value, signer=signer)
            st = st.with_(metadata_synced=True)
            persist(st)
            return Outcome(int(st.agent_id), st.tx_hash, st.uri, st.owner, agent_registry, submitted)
        if time.monotonic() > deadline:
            raise RegistrationFailed(f"registration of {agent_uri} did not complete within {deadline_s:g}s")
        await asyncio.sleep(poll)


async def recover(reg: chain_registry.IdentityRegistry, need: plan.NeedRecovery, chunk: int) -> plan.Recovery:
    """SPEC 6.3 step 7: the recorded tx's receipt first, else a chunked scan of ``Registered`` logs by owner
    from the fence block, keeping those whose agentURI is the fenced URI."""
    try:
        tx_known = False
        if need.tx_hash:
            mined, events = await reg.registered_in_receipt(need.tx_hash)
            hits = [e for e in events if e.agent_uri == need.uri]
            if hits:
                return plan.Recovery(need.uri, tuple(_found(e) for e in hits), tx_known=True)
            tx_known = not mined and await reg.transaction_known(need.tx_hash)
        found = await reg.find_registered(from_block=need.from_block, owner=need.owner, chunk=chunk)
        hits = [e for e in found if e.agent_uri == need.uri]
        return plan.Recovery(need.uri, tuple(_found(e) for e in hits), tx_known=tx_known)
    except rpc.ChainError as err:
        return plan.Recovery(need.uri, error=str(err))


def _found(e: chain_registry.Registered) -> plan.Found:
    return plan.Found(e.agent_id, e.tx_hash, e.block_number, e.log_index)
