"""Claims (issue 9, defect 1): one request per payment across replicas, decided by the facilitator."""

from __future__ import annotations

from kube402.chain.facilitator import claims, wire

KEY = wire.AuthorizationKey(84532, "0xusdc", "0xpayer", "0x" + "11" * 32)
A, B = "request-a-0123456789", "request-b-0123456789"


def book(now: list[float] | None = None) -> claims.Claims:
    clock = now if now is not None else [0.0]
    return claims.Claims(clock=lambda: clock[0])


def test_the_first_claimant_owns_the_payment_and_its_own_retries_pass() -> None:
    c = book()
    assert c.reserve(KEY, owner=A, body="x", expires=100) is None
    assert c.reserve(KEY, owner=A, body="x", expires=100) is None
    assert c.reserve(KEY, owner=B, body="x", expires=100) == "payment_in_progress"
    assert c.may_settle(KEY, owner=A, body="x", expires=100) is None
    assert c.may_settle(KEY, owner=B, body="x", expires=100) == "duplicate_settlement"
    assert c.may_settle(KEY, owner=None, body="x", expires=100) == "duplicate_settlement"


def test_settled_is_used_for_everyone_else() -> None:
    c = book()
    c.reserve(KEY, owner=A, body="x", expires=100)
    c.settled(KEY, owner=A, pending=False)
    assert c.reserve(KEY, owner=B, body="x", expires=100) == "invalid_exact_evm_nonce_already_used"
    assert not c.release(KEY, owner=A)  # a settled claim is never released


def test_pending_may_be_taken_over_by_the_same_body_only() -> None:
    c = book()
    c.reserve(KEY, owner=A, body="x", expires=100)
    c.settled(KEY, owner=A, pending=True)
    assert c.reserve(KEY, owner=B, body="other", expires=100) == "payment_in_progress"
    assert c.reserve(KEY, owner=B, body="x", expires=100) is None
    assert c.may_settle(KEY, owner=A, body="x", expires=100) == "duplicate_settlement"


def test_release_frees_only_a_held_claim_of_its_owner() -> None:
    c = book()
    c.reserve(KEY, owner=A, body="x", expires=100)
    assert not c.release(KEY, owner=B)
    assert c.release(KEY, owner=A)
    assert c.reserve(KEY, owner=B, body="x", expires=100) is None


def test_a_claim_expires_with_its_authorization() -> None:
    now = [0.0]
    c = book(now)
    c.reserve(KEY, owner=A, body="x", expires=10)
    now[0] = 11.0
    assert c.reserve(KEY, owner=B, body="x", expires=100) is None


def test_claim_ids_are_bounded_tokens() -> None:
    assert claims.valid_claim_id("a" * 16) and claims.valid_claim_id("A-b_9" * 20)
    assert not claims.valid_claim_id("short") and not claims.valid_claim_id("x" * 129)
    assert not claims.valid_claim_id("bad id with spaces!") and not claims.valid_claim_id(None)
