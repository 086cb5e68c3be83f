"""The RR planner: phase transitions, the fence before any transaction, recovery before any submission."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from kube402.controller import registration_plan as p

URL = "http://obol.stack:8080/.well-known/agent-registration.json"
OLD = "http://old.example/.well-known/agent-registration.json"
KEY = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
EXT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
FENCE = p.RRStatus(owner=KEY, uri=URL, from_block=10, phase="Registering")


def run(
    inp: p.Inputs, *, head: int = 11, chain_error: str = "", recovery: p.Recovery | None = None
) -> p.Step:
    """Answer the planner's questions the way the I/O layer would, until it returns a step to execute."""
    for _ in range(10):
        step = p.plan_active(inp)
        if isinstance(step, p.NeedChain):
            inp = dataclasses.replace(inp, chain_error=chain_error)
        elif isinstance(step, p.NeedHead):
            inp = dataclasses.replace(inp, head=head)
        elif isinstance(step, p.NeedRecovery):
            inp = dataclasses.replace(inp, recovery=recovery or p.Recovery(step.uri))
        else:
            return step
    raise AssertionError("planner did not converge")


def test_readiness_gate_publishing() -> None:
    step = run(p.Inputs(p.RRStatus(), URL, readiness="Waiting for registration Deployment", signer=KEY))
    assert isinstance(step, p.Write)
    assert step.status.phase == "Publishing" and step.requeue == 5.0


def test_no_key_no_registrant_is_off_chain_only() -> None:
    step = p.plan_active(p.Inputs(p.RRStatus(), URL))
    assert isinstance(step, p.Write)
    assert step.status.phase == "OffChainOnly"
    assert step.status.message == "Published registration document; controller has no ERC-8004 signing key"
    assert step.status.published_url == URL


def test_chain_errors_stay_registering() -> None:
    msg = "RPC chain id 1 does not match configured chain 84532"
    step = run(p.Inputs(p.RRStatus(), URL, signer=KEY), chain_error=msg)
    assert isinstance(step, p.Write)
    assert (step.status.phase, step.status.message, step.error) == ("Registering", msg, "")


def test_fence_is_written_first_and_alone() -> None:
    """No recovery and no submission before the fence is persisted."""
    step = run(p.Inputs(p.RRStatus(tx_hash="0xstale"), URL, signer=KEY), head=100)
    assert isinstance(step, p.Write)
    s = step.status
    assert (s.owner, s.uri, s.from_block, s.tx_hash) == (KEY, URL, 99, "")
    assert s.message == "Prepared on-chain registration and fenced duplicate retries"


def test_head_error() -> None:
    inp = p.Inputs(p.RRStatus(), URL, signer=KEY, chain_error="", head_error="boom")
    step = p.plan_active(inp)
    assert isinstance(step, p.Write) and step.status.message == "Preparing on-chain registration: boom"


def test_fence_then_recover_then_submit() -> None:
    inp = p.Inputs(FENCE, URL, signer=KEY, chain_error="")
    need = p.plan_active(inp)
    assert need == p.NeedRecovery(KEY, URL, 10, "")
    step = p.plan_active(dataclasses.replace(inp, recovery=p.Recovery(URL)))
    assert isinstance(step, p.Submit) and step.uri == URL and step.status.owner == KEY


def test_recovery_finds_agent_adopts_earliest_and_names_duplicates() -> None:
    rec = p.Recovery(URL, (p.Found(5, "0xb", 20, 0), p.Found(3, "0xa", 12, 1)))
    step = run(p.Inputs(FENCE, URL, signer=KEY), recovery=rec)
    assert isinstance(step, p.Adopted)
    assert (step.status.agent_id, step.status.tx_hash) == ("3", "0xa")
    assert "agents 5" in step.status.message and step.duplicates[0].agent_id == 5


def test_known_tx_waits_dropped_tx_is_forgotten_not_resubmitted_in_same_pass() -> None:
    fenced = dataclasses.replace(FENCE, tx_hash="0xabc")
    wait = run(p.Inputs(fenced, URL, signer=KEY), recovery=p.Recovery(URL, tx_known=True))
    assert isinstance(wait, p.Write)
    assert wait.status.message == "Waiting for on-chain registration transaction 0xabc"
    dropped = run(p.Inputs(fenced, URL, signer=KEY), recovery=p.Recovery(URL, tx_known=False))
    assert isinstance(dropped, p.Write)
    assert dropped.status.tx_hash == "" and dropped.status.from_block == 10  # fence kept


def test_recovery_error_fails_the_pass() -> None:
    step = run(p.Inputs(FENCE, URL, signer=KEY), recovery=p.Recovery(URL, error="timeout"))
    assert isinstance(step, p.Write) and step.error == "timeout"
    assert step.status.message == "Recovering on-chain registration state: timeout"


def test_keyless_awaits_external_registration_then_registers() -> None:
    fence = dataclasses.replace(FENCE, owner=EXT)
    wait = run(p.Inputs(fence, URL, registrant=EXT))
    assert isinstance(wait, p.Write)
    assert wait.status.phase == "AwaitingExternalRegistration"
    assert wait.status.message == f"Waiting for {EXT} to register {URL}"
    found = run(p.Inputs(fence, URL, registrant=EXT), recovery=p.Recovery(URL, (p.Found(4, "0xe", 30, 0),)))
    assert isinstance(found, p.Adopted)
    final = p.plan_active(p.Inputs(found.status, URL, registrant=EXT))
    assert isinstance(final, p.Write) and final.status.phase == "Registered"


def test_base_url_change_recovers_under_old_uri_before_resetting() -> None:
    old = dataclasses.replace(FENCE, uri=OLD, tx_hash="0xold")
    inp = p.Inputs(old, URL, signer=KEY, chain_error="")
    assert p.plan_active(inp) == p.NeedRecovery(KEY, OLD, 10, "0xold")
    # Found under the old URI: adopt (the agentURI is updated afterwards).
    adopted = p.plan_active(dataclasses.replace(inp, recovery=p.Recovery(OLD, (p.Found(9, "0xold", 11, 0),))))
    assert isinstance(adopted, p.Adopted) and adopted.status.uri == OLD
    maint = p.plan_active(p.Inputs(adopted.status, URL, signer=KEY, chain_error=""))
    assert isinstance(maint, p.Maintain) and maint.set_uri == URL and maint.agent_id == 9
    # Still in flight under the old URI: wait, never re-fence.
    wait = p.plan_active(dataclasses.replace(inp, recovery=p.Recovery(OLD, tx_known=True)))
    assert isinstance(wait, p.Write) and wait.status.uri == OLD
    # Nothing landed and nothing in flight: the fence is reset to the new URL.
    reset = p.plan_active(dataclasses.replace(inp, recovery=p.Recovery(OLD), head=50))
    assert isinstance(reset, p.Write)
    assert (reset.status.uri, reset.status.from_block, reset.status.tx_hash) == (URL, 49, "")


def test_registered_with_nothing_to_do_needs_no_chain() -> None:
    done = p.RRStatus(agent_id="0", owner=KEY, uri=URL, from_block=3, metadata_synced=True)
    step = p.plan_active(p.Inputs(done, URL, signer=KEY))
    assert isinstance(step, p.Write)
    assert step.status.phase == "Registered"
    assert step.status.message == "Published registration document and recorded agent 0"


def test_metadata_sync_pending_after_document_change() -> None:
    done = p.RRStatus(agent_id="2", owner=KEY, uri=URL, from_block=3, metadata_synced=True)
    step = run(p.Inputs(done, URL, signer=KEY, document_changed=True))
    assert isinstance(step, p.Maintain) and step.sync and step.set_uri is None


def test_offer_agent_id_is_adopted() -> None:
    step = run(p.Inputs(p.RRStatus(), URL, signer=KEY, offer_agent_id="12", offer_tx_hash="0x1"))
    assert isinstance(step, p.Maintain) and step.agent_id == 12


def test_tombstone_plans() -> None:
    assert p.plan_tombstone(p.Inputs(p.RRStatus(), URL)).status.phase == "Tombstoned"  # type: ignore[union-attr]
    no_key = p.plan_tombstone(p.Inputs(p.RRStatus(agent_id="1"), URL))
    assert isinstance(no_key, p.Write) and no_key.status.phase == "OffChainOnly"
    assert isinstance(p.plan_tombstone(p.Inputs(p.RRStatus(agent_id="1"), URL, signer=KEY)), p.NeedChain)
    down = p.plan_tombstone(p.Inputs(p.RRStatus(agent_id="1"), URL, signer=KEY, chain_error="x"))
    assert isinstance(down, p.Write) and down.status.phase == "OffChainOnly"
    ok = p.plan_tombstone(p.Inputs(p.RRStatus(agent_id="1"), URL, signer=KEY, chain_error=""))
    assert isinstance(ok, p.Tombstone) and ok.status.message == "Tombstoned registration for agent 1"


def test_status_round_trip_and_truncation() -> None:
    s = p.RRStatus(phase="Registering", agent_id="0", from_block=5, metadata_synced=True)
    assert p.RRStatus.from_dict(s.to_dict()) == s
    assert len(s.with_(message="x" * 500).message) == 200


# ---- the invariant, explored: a crash can happen after any step --------------------------------------

statuses = st.builds(
    p.RRStatus,
    phase=st.sampled_from(["", "Publishing", "Registering"]),
    agent_id=st.just(""),
    tx_hash=st.sampled_from(["", "0xabc"]),
    owner=st.sampled_from(["", KEY, EXT]),
    uri=st.sampled_from(["", URL, OLD]),
    from_block=st.sampled_from([0, 7]),
)


@given(statuses, st.booleans(), st.booleans())
def test_never_submits_without_a_persisted_fence_and_a_clean_recovery(
    status: p.RRStatus, tx_known: bool, head_known: bool
) -> None:
    """Submit is only ever planned when the *persisted* status already holds the fence for this URL and
    signer, no tx hash is recorded, and a recovery for that very fence found nothing."""
    inp = p.Inputs(status, URL, signer=KEY, chain_error="", head=11 if head_known else None)
    for _ in range(10):
        step = p.plan_active(inp)
        if isinstance(step, p.NeedRecovery):
            inp = dataclasses.replace(inp, recovery=p.Recovery(step.uri, tx_known=tx_known))
            continue
        if isinstance(step, p.NeedHead):
            inp = dataclasses.replace(inp, head=11)
            continue
        break
    if isinstance(step, p.Submit):
        assert status.owner == KEY and status.uri == URL and status.from_block > 0
        assert not status.tx_hash
        assert inp.recovery is not None and inp.recovery.uri == URL and not inp.recovery.found
    else:
        assert not isinstance(step, p.NeedChain)
