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


@dataclasses.dataclass(slots=True)
class _Session:
    """One ``register`` call's chain handles and its entry in the state file."""

    node: rpc.Rpc
    reg: chain_registry.IdentityRegistry
    chain_id: int
    signer: rpc.TxSigner
    path: Path
    key: str
    agent_registry: str
    log_chunk: int
    submitted: bool = False

    def current(self) -> plan.RRStatus:
        return plan.RRStatus.from_dict(_load(self.path).get(self.key) or {})

    def persist(self, st: plan.RRStatus) -> None:
        data = _load(self.path)
        data[self.key] = st.to_dict()
        _save(self.path, data)

    def outcome(self, st: plan.RRStatus) -> Outcome:
        return Outcome(int(st.agent_id), st.tx_hash, st.uri, st.owner, self.agent_registry, self.submitted)

    async def chain_error(self) -> str:
        try:
            actual = await self.node.run(lambda: self.node.w3.eth.chain_id)
        except rpc.ChainError as err:
            return f"Waiting for ERC-8004 RPC connectivity: {err}"
        if int(actual) == self.chain_id:
            return ""
        return f"RPC chain id {actual} does not match configured chain {self.chain_id}"

    async def next_step(self, inputs: plan.Inputs) -> plan.Step:
        """Plan, answering the plan's questions (chain, head, recovery) until it names an action."""
        while True:
            step = plan.plan_active(inputs)
            if isinstance(step, plan.NeedChain):
                error = await self.chain_error()
                if error:
                    raise RegistrationFailed(error)
                inputs = dataclasses.replace(inputs, chain_error="")
            elif isinstance(step, plan.NeedHead):
                inputs = dataclasses.replace(inputs, head=await self.node.block_number())
            elif isinstance(step, plan.NeedRecovery):
                inputs = dataclasses.replace(inputs, recovery=await recover(self.reg, step, self.log_chunk))
            else:
                return step

    async def submit(self, step: plan.Submit) -> None:
        nonce = await self.reg.confirmed_nonce(self.signer.address)
        signed = await self.node.sign(self.signer, self.reg.register_call(step.uri), nonce=nonce)
        self.persist(step.status.with_(tx_hash=signed.hash, message=f"Submitted {signed.hash}"))
        try:
            await self.node.broadcast(signed)
        except rpc.ChainError as err:
            text = str(err).lower()
            if "already known" not in text and "nonce too low" not in text:
                raise RegistrationFailed(f"Submitting on-chain registration: {err}") from None
        self.submitted = True

    async def maintain(self, step: plan.Maintain) -> Outcome:
        st = step.status
        if step.set_uri is not None:
            await self.reg.set_agent_uri(step.agent_id, step.set_uri, signer=self.signer)
            st = st.with_(uri=step.set_uri)
        if step.sync:
            for mkey, value in X402_METADATA.items():
                if await self.reg.get_metadata(step.agent_id, mkey) != value:
                    await self.reg.set_metadata(step.agent_id, mkey, value, signer=self.signer)
        st = st.with_(metadata_synced=True)
        self.persist(st)
        return self.outcome(st)


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
    ident = chains.lookup(chain)
    node = rpc.Rpc(rpc_url)
    reg = chain_registry.IdentityRegistry(node, registry or chains.identity_registry(ident.chain_id))
    agent_registry = f"eip155:{ident.chain_id}:{reg.address}"
    session = _Session(
        node=node,
        reg=reg,
        chain_id=ident.chain_id,
        signer=signer,
        path=state_file or default_state_file(),
        key=f"{agent_registry}:{signer.address.lower()}",
        agent_registry=agent_registry,
        log_chunk=log_chunk,
    )
    deadline = time.monotonic() + deadline_s
    while True:
        inputs = plan.Inputs(status=session.current(), published_url=agent_uri, signer=signer.address)
        step = await session.next_step(inputs)
        if isinstance(step, plan.Write):
            session.persist(step.status)
            if step.error:
                raise RegistrationFailed(step.status.message)
            if step.status.phase == plan.Phase.REGISTERED:
                return session.outcome(step.status)
            if step.requeue == plan.SOON:
                continue
        elif isinstance(step, plan.Submit):
            await session.submit(step)
        elif isinstance(step, plan.Adopted):
            session.persist(step.status)
            continue
        elif isinstance(step, plan.Maintain):
            return await session.maintain(step)
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
