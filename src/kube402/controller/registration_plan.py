"""The RegistrationRequest state machine (SPEC 6.3-6.5) as a pure planner.

Why: "no duplicate mint, ever" rests on the order of a few decisions (fence persisted before any transaction,
recovery before any submission, the hash stored before the broadcast). Those decisions live here, free of
I/O, so each can be tested exhaustively; ``controller/registration.py`` only gathers the observations the
planner asks for and executes the step it returns.

Use: build :class:`Inputs` from the RR status and what is known so far, call :func:`plan_active` (or
:func:`plan_tombstone`); an ``Need*`` answer asks for one more observation (fill it in and call again), any
other answer is the step to execute. Every step carries the complete status to write.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any, Final

from kube402.controller.status import EventReason

__all__ = [
    "Adopted",
    "Found",
    "Inputs",
    "Maintain",
    "NeedChain",
    "NeedHead",
    "NeedRecovery",
    "Phase",
    "RRStatus",
    "Recovery",
    "Step",
    "Submit",
    "Tombstone",
    "Write",
    "plan_active",
    "plan_tombstone",
    "truncate",
]

MESSAGE_LIMIT: Final = 200


class Phase(enum.StrEnum):
    PUBLISHING = "Publishing"
    REGISTERING = "Registering"
    AWAITING = "AwaitingExternalRegistration"
    REGISTERED = "Registered"
    OFF_CHAIN_ONLY = "OffChainOnly"
    TOMBSTONED = "Tombstoned"


REQUEUE_PHASES: Final = frozenset({Phase.PUBLISHING, Phase.REGISTERING, Phase.AWAITING})


def truncate(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


@dataclasses.dataclass(frozen=True, slots=True)
class RRStatus:
    """The persisted RegistrationRequest status (SPEC 6.1)."""

    phase: str = ""
    message: str = ""
    published_url: str = ""
    agent_id: str = ""
    tx_hash: str = ""
    owner: str = ""
    uri: str = ""
    from_block: int = 0
    metadata_synced: bool = False

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RRStatus:
        def s(key: str) -> str:
            v = raw.get(key)
            return v if isinstance(v, str) else ""

        block = raw.get("registrationSearchFromBlock")
        return cls(
            phase=s("phase"),
            message=s("message"),
            published_url=s("publishedUrl"),
            agent_id=s("agentId"),
            tx_hash=s("registrationTxHash"),
            owner=s("registrationOwner"),
            uri=s("registrationUri"),
            from_block=block if isinstance(block, int) and not isinstance(block, bool) else 0,
            metadata_synced=raw.get("metadataSynced") is True,
        )

    def to_dict(self) -> dict[str, Any]:
        """The status object; empty strings and a zero block are omitted (absent = none)."""
        out: dict[str, Any] = {}
        for key, value in (
            ("phase", self.phase),
            ("message", self.message),
            ("publishedUrl", self.published_url),
            ("agentId", self.agent_id),
            ("registrationTxHash", self.tx_hash),
            ("registrationOwner", self.owner),
            ("registrationUri", self.uri),
        ):
            if value:
                out[key] = value
        if self.from_block:
            out["registrationSearchFromBlock"] = self.from_block
        out["metadataSynced"] = self.metadata_synced
        return out

    def with_(self, **changes: Any) -> RRStatus:
        if "message" in changes:
            changes["message"] = truncate(changes["message"])
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True, slots=True)
class Found:
    agent_id: int
    tx_hash: str
    block_number: int
    log_index: int


@dataclasses.dataclass(frozen=True, slots=True)
class Recovery:
    """What receipt and log recovery saw for one (owner, URI) fence."""

    uri: str
    found: tuple[Found, ...] = ()
    """Matching ``Registered`` events (owner and agentURI equal to the fence)."""
    tx_known: bool = False
    """The recorded transaction is still known to the node (pending, or mined without the event yet seen)."""
    error: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Inputs:
    status: RRStatus
    published_url: str
    offer_agent_id: str = ""
    offer_tx_hash: str = ""
    readiness: str = ""
    """Empty when the registration objects are ready, else the SPEC 6.3 step 3 message."""
    signer: str = ""
    """Address of the signing key; empty when the controller holds no key."""
    registrant: str = ""
    """Keyless mode: the address expected to register externally."""
    document_changed: bool = False
    """The rendered document differs from the ConfigMap's (metadata must be re-synced)."""
    chain_error: str | None = None
    """None: connectivity not checked yet; "": fine; else the SPEC message."""
    head: int | None = None
    head_error: str = ""
    recovery: Recovery | None = None


# ---- steps ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class NeedChain:
    """Check RPC connectivity and chain id; fill ``chain_error``."""


@dataclasses.dataclass(frozen=True, slots=True)
class NeedHead:
    """Read the head block; fill ``head`` (or ``head_error``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class NeedRecovery:
    """Look up ``tx_hash``'s receipt, else scan ``Registered`` logs by ``owner`` from ``from_block``."""

    owner: str
    uri: str
    from_block: int
    tx_hash: str


@dataclasses.dataclass(frozen=True, slots=True)
class Write:
    """Write ``status``; requeue after ``requeue`` seconds (None: no requeue); ``error``: fail the pass."""

    status: RRStatus
    requeue: float | None = None
    error: str = ""
    event: str = ""
    """Reason of an offer event to emit with this write (``Registered``, ``RegistrationSubmitted``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Submit:
    """Sign ``register(uri)`` with the signer's confirmed nonce, write ``status`` with the signed hash, then
    broadcast. ``status`` already carries the fence."""

    uri: str
    status: RRStatus


@dataclasses.dataclass(frozen=True, slots=True)
class Adopted:
    """An agent was found on chain: write ``status`` (agentId recorded) before anything else."""

    status: RRStatus
    duplicates: tuple[Found, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Maintain:
    """agentId known and a key present: ``set_uri`` (setAgentURI when not None), then metadata sync when
    ``sync``; then write ``status`` with ``registrationUri``/``metadataSynced`` updated by what succeeded."""

    agent_id: int
    set_uri: str | None
    sync: bool
    status: RRStatus


@dataclasses.dataclass(frozen=True, slots=True)
class Tombstone:
    """setAgentURI(agent_id, data URL), then setMetadata(x402.supported, 0x00); then ``status``."""

    agent_id: int
    status: RRStatus


Step = NeedChain | NeedHead | NeedRecovery | Write | Submit | Adopted | Maintain | Tombstone

RETRY: Final = 5.0
SOON: Final = 0.5


def _registered_message(agent_id: str, *, pending_sync: bool) -> str:
    text = f"Published registration document and recorded agent {agent_id}"
    return text + ("; metadata sync will retry on the next reconcile" if pending_sync else "")


def _adopt(inp: Inputs, st: RRStatus, rec: Recovery) -> Adopted:
    ordered = sorted(rec.found, key=lambda f: (f.block_number, f.log_index))
    first, dups = ordered[0], tuple(ordered[1:])
    message = f"Adopted on-chain registration of agent {first.agent_id}"
    if dups:
        others = ", ".join(str(d.agent_id) for d in dups)
        message += f"; duplicate registrations exist for the same owner and URI: agents {others}"
    return Adopted(
        st.with_(
            phase=Phase.REGISTERING,
            message=message,
            agent_id=str(first.agent_id),
            tx_hash=first.tx_hash,
            uri=rec.uri,
            metadata_synced=False,
        ),
        dups,
    )


def plan_active(inp: Inputs) -> Step:
    """The next step of an Active RR pass (SPEC 6.3 steps 1 and 3-9; the document is already applied)."""
    st = _active_status(inp)
    early = _before_chain_work(inp, st)
    if early is not None:
        return early
    if st.agent_id:
        return _maintain(inp, st)
    signer = inp.signer or inp.registrant
    fence = _fence(inp, st, signer)
    if fence is not None:
        return fence
    return _recover_then_submit(inp, st)


def _active_status(inp: Inputs) -> RRStatus:
    """Step 1: agentId (and tx hash) from the RR, else from the offer; a changed document needs a sync."""
    st = inp.status.with_(published_url=inp.published_url)
    if not st.agent_id and inp.offer_agent_id:
        st = st.with_(agent_id=inp.offer_agent_id, tx_hash=st.tx_hash or inp.offer_tx_hash)
    if inp.document_changed:
        st = st.with_(metadata_synced=False)
    return st


def _before_chain_work(inp: Inputs, st: RRStatus) -> Step | None:
    """Steps 3-5: readiness, no key and no registrant, nothing to change on chain, chain connectivity."""
    if inp.readiness:
        return Write(st.with_(phase=Phase.PUBLISHING, message=inp.readiness), RETRY)
    keyed = bool(inp.signer)
    if not keyed and not inp.registrant:
        return _final(inp, st)
    # An agent already recorded with nothing left to change on chain needs no RPC at all.
    if st.agent_id and (not keyed or (st.uri == inp.published_url and st.metadata_synced)):
        return _maintain_offline(inp, st) if not keyed else _final(inp, st)
    if inp.chain_error is None:
        return NeedChain()
    if inp.chain_error:
        return Write(st.with_(phase=Phase.REGISTERING, message=inp.chain_error), RETRY)
    return None


def _waiting_for_tx(st: RRStatus) -> Write:
    message = f"Waiting for on-chain registration transaction {st.tx_hash}"
    return Write(st.with_(phase=Phase.REGISTERING, message=message), RETRY)


def _fence(inp: Inputs, st: RRStatus, signer: str) -> Step | None:
    """Step 6: the fence (owner, URI, from-block) that makes duplicate submissions recoverable; None once
    it holds for this signer and URI."""
    fenced = bool(st.owner) and bool(st.uri) and st.from_block > 0
    if fenced and st.owner.lower() == signer.lower() and st.uri != inp.published_url:
        # The base URL changed under an existing fence: recover under the OLD URI first.
        rec = inp.recovery
        if rec is None or rec.uri != st.uri:
            return NeedRecovery(st.owner, st.uri, st.from_block, st.tx_hash)
        if rec.error:
            return _recovery_error(st, rec)
        if rec.found:
            return _adopt(inp, st, rec)
        if st.tx_hash and rec.tx_known:
            return _waiting_for_tx(st)
        fenced = False  # nothing landed and nothing is in flight: the fence may be reset
    if fenced and st.owner.lower() == signer.lower() and st.uri == inp.published_url:
        return None
    if inp.head is None and not inp.head_error:
        return NeedHead()
    if inp.head_error:
        message = f"Preparing on-chain registration: {inp.head_error}"
        return Write(st.with_(phase=Phase.REGISTERING, message=message), RETRY)
    assert inp.head is not None
    return Write(
        st.with_(
            owner=signer,
            uri=inp.published_url,
            from_block=max(inp.head - 1, 0),
            tx_hash="",
            metadata_synced=False,
            phase=Phase.REGISTERING,
            message="Prepared on-chain registration and fenced duplicate retries",
        ),
        SOON,
    )


def _recover_then_submit(inp: Inputs, st: RRStatus) -> Step:
    """Steps 7-9: recover before any submission, then submit (keyed) or wait for the registrant."""
    rec = inp.recovery
    if rec is None or rec.uri != st.uri:
        return NeedRecovery(st.owner, st.uri, st.from_block, st.tx_hash)
    if rec.error:
        return _recovery_error(st, rec)
    if rec.found:
        return _adopt(inp, st, rec)
    if st.tx_hash:
        if rec.tx_known:
            return _waiting_for_tx(st)
        # Dropped by the node: forget the hash, keep the fence; the next pass scans again, then resubmits.
        return Write(
            st.with_(
                tx_hash="",
                phase=Phase.REGISTERING,
                message=f"Registration transaction {st.tx_hash} was dropped; resubmitting",
            ),
            SOON,
        )
    if inp.signer:
        return Submit(st.uri, st.with_(phase=Phase.REGISTERING))
    return Write(
        st.with_(
            phase=Phase.AWAITING, message=f"Waiting for {inp.registrant} to register {inp.published_url}"
        ),
        RETRY,
    )


def _recovery_error(st: RRStatus, rec: Recovery) -> Write:
    return Write(
        st.with_(phase=Phase.REGISTERING, message=f"Recovering on-chain registration state: {rec.error}"),
        None,
        error=rec.error,
    )


def _maintain_offline(inp: Inputs, st: RRStatus) -> Write:
    """Step 8 in keyless mode: record, and report a stale on-chain URI."""
    message = _registered_message(st.agent_id, pending_sync=False)
    if st.uri and st.uri != inp.published_url:
        message += f"; on-chain agentURI {st.uri} is stale (no signing key to update it)"
    return Write(st.with_(phase=Phase.REGISTERED, message=message), None, event=EventReason.REGISTERED)


def _maintain(inp: Inputs, st: RRStatus) -> Step:
    """Step 8 with an agentId known (chain reachable)."""
    if not inp.signer:
        return _maintain_offline(inp, st)
    set_uri = inp.published_url if st.uri != inp.published_url else None
    if set_uri is None and st.metadata_synced:
        return _final(inp, st)
    final = st.with_(phase=Phase.REGISTERED, message=_registered_message(st.agent_id, pending_sync=False))
    return Maintain(int(st.agent_id), set_uri, not st.metadata_synced, final)


def _final(inp: Inputs, st: RRStatus) -> Write:
    """Step 9."""
    if st.agent_id:
        pending = bool(inp.signer) and not st.metadata_synced
        return Write(
            st.with_(phase=Phase.REGISTERED, message=_registered_message(st.agent_id, pending_sync=pending)),
            None,
            event=EventReason.REGISTERED,
        )
    return Write(
        st.with_(
            phase=Phase.OFF_CHAIN_ONLY,
            message="Published registration document; controller has no ERC-8004 signing key",
        ),
        None,
    )


def plan_tombstone(inp: Inputs) -> Step:
    """SPEC 6.4 (the registration objects are deleted by the caller in every case)."""
    st = inp.status
    if not st.agent_id and inp.offer_agent_id:
        st = st.with_(agent_id=inp.offer_agent_id)
    if not st.agent_id:
        return Write(st.with_(phase=Phase.TOMBSTONED, message="Deleted registration resources"))
    if not inp.signer:
        return Write(
            st.with_(
                phase=Phase.OFF_CHAIN_ONLY,
                message=(
                    "Deleted registration resources; controller has no ERC-8004 signing key for tombstone"
                ),
            )
        )
    if inp.chain_error is None:
        return NeedChain()
    if inp.chain_error:
        return Write(
            st.with_(
                phase=Phase.OFF_CHAIN_ONLY,
                message=(
                    f"Deleted registration resources but could not connect for tombstone: {inp.chain_error}"
                ),
            )
        )
    return Tombstone(
        int(st.agent_id),
        st.with_(phase=Phase.TOMBSTONED, message=f"Tombstoned registration for agent {st.agent_id}"),
    )
