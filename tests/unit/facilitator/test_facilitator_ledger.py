"""The settlement ledger's rules with scripted attempts: sharing, re-deciding, pending, dead, errors, expiry."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from x402.schemas import SettleResponse

from kube402.chain.facilitator import ledger, wire

KEY = wire.AuthorizationKey(chain_id=84532, asset="0xa", payer="0xb", nonce="0x01")
TX = "0x" + "ab" * 32


def ok(tx: str = TX) -> ledger.Attempt:
    return ledger.Attempt(SettleResponse(success=True, transaction=tx, network="eip155:84532"))


def used() -> ledger.Attempt:
    return ledger.Attempt(
        SettleResponse(
            success=False,
            error_reason="invalid_exact_evm_nonce_already_used",
            transaction="",
            network="eip155:84532",
        )
    )


def pending(tx: str = TX, nonce: int | None = 7) -> ledger.Attempt:
    return ledger.Attempt(
        wire.settle_failure("settlement_pending", "wait", network="eip155:84532", transaction=tx), nonce
    )


class Script:
    """An attempt and a resolver that count their calls and return queued answers (optionally after a gate)."""

    def __init__(
        self,
        attempts: list[ledger.Attempt],
        resolutions: list[ledger.Attempt | None] | None = None,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.attempts, self.resolutions, self.gate = attempts, resolutions or [], gate
        self.attempt_calls = 0
        self.resolve_calls: list[tuple[str, int | None]] = []

    async def attempt(self) -> ledger.Attempt:
        self.attempt_calls += 1
        if self.gate is not None:
            await self.gate.wait()
        return self.attempts.pop(0)

    async def resolve(self, tx: str, nonce: int | None) -> ledger.Attempt | None:
        self.resolve_calls.append((tx, nonce))
        return self.resolutions.pop(0)


def settle(
    book: ledger.Ledger, script: Script, body: str = "A", expires: float = 1e12
) -> Callable[[], Awaitable[SettleResponse]]:
    return lambda: book.settle(
        KEY, body=body, expires=expires, attempt=script.attempt, resolve=script.resolve
    )


async def test_concurrent_copies_of_one_body_share_one_attempt() -> None:
    gate = asyncio.Event()
    script = Script([ok()], gate=gate)
    book = ledger.Ledger()
    tasks = [asyncio.ensure_future(settle(book, script)()) for _ in range(20)]
    await asyncio.sleep(0)
    assert book.in_flight == 1
    gate.set()
    results = await asyncio.gather(*tasks)
    assert script.attempt_calls == 1 and all(r.success and r.transaction == TX for r in results)
    assert book.pending == book.in_flight == 0


async def test_another_body_with_the_same_authorization_is_decided_after_the_first() -> None:
    gate = asyncio.Event()
    first, second = Script([ok()], gate=gate), Script([used()])
    book = ledger.Ledger()
    a = asyncio.ensure_future(settle(book, first, "A")())
    await asyncio.sleep(0)
    b = asyncio.ensure_future(settle(book, second, "B")())
    await asyncio.sleep(0)
    assert second.attempt_calls == 0
    gate.set()
    assert (await a).success
    assert (await b).error_reason == "invalid_exact_evm_nonce_already_used"
    assert second.attempt_calls == 1


async def test_a_terminal_failure_is_forgotten_so_a_replay_is_judged_again() -> None:
    script = Script([used(), ok()])
    book = ledger.Ledger()
    assert not (await settle(book, script)()).success
    assert (await settle(book, script)()).success
    assert script.attempt_calls == 2


async def test_a_success_is_remembered_for_its_body_and_judged_afresh_for_another() -> None:
    """Issue 9, defect 2: a verifier retrying after its deadline must get its success back, not a refusal
    of its own used nonce; another body with that authorization is refused by the mechanism."""
    script = Script([ok()])
    book = ledger.Ledger()
    first = await settle(book, script)()
    assert first.success
    again = await settle(book, script)()
    assert again.success and again.transaction == first.transaction
    assert script.attempt_calls == 1
    other = Script([used()])
    assert not (await settle(book, other, "B")()).success
    assert other.attempt_calls == 1


async def test_a_pending_settlement_is_resolved_by_its_own_resolver_never_attempted_again() -> None:
    script = Script([pending()], resolutions=[pending(), ok()])
    book = ledger.Ledger()
    assert (await settle(book, script)()).error_reason == "settlement_pending"
    assert book.pending == 1 and book.pending_hash(KEY) == TX
    assert (await settle(book, script)()).error_reason == "settlement_pending"
    other = Script([used()])  # another body: the first body's resolver settles the entry, then it is judged
    assert (await settle(book, other, "B")()).error_reason == "invalid_exact_evm_nonce_already_used"
    assert script.attempt_calls == 1 and other.attempt_calls == 1 and other.resolve_calls == []
    assert script.resolve_calls == [(TX, 7), (TX, 7)]
    assert book.pending == 0


async def test_a_dead_pending_transaction_lets_the_original_attempt_run_again() -> None:
    script = Script([pending(), ok("0x" + "cd" * 32)], resolutions=[None])
    book = ledger.Ledger()
    await settle(book, script)()
    result = await settle(book, script)()
    assert result.success and result.transaction == "0x" + "cd" * 32
    assert script.attempt_calls == 2


async def test_an_error_reaches_every_waiter_and_keeps_nothing() -> None:
    gate = asyncio.Event()

    async def boom() -> ledger.Attempt:
        await gate.wait()
        raise RuntimeError("node down")

    async def never(tx: str, nonce: int | None) -> ledger.Attempt | None:
        raise AssertionError

    book = ledger.Ledger()
    tasks = [
        asyncio.ensure_future(book.settle(KEY, body="A", expires=1e12, attempt=boom, resolve=never))
        for _ in range(3)
    ]
    await asyncio.sleep(0)
    gate.set()
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        assert isinstance(outcome, RuntimeError)
    assert book.in_flight == 0 and book.pending_hash(KEY) is None


async def test_an_error_while_resolving_keeps_the_pending_hash() -> None:
    async def failing(tx: str, nonce: int | None) -> ledger.Attempt | None:
        raise RuntimeError("node down")

    script = Script([pending()])
    book = ledger.Ledger()
    await book.settle(KEY, body="A", expires=1e12, attempt=script.attempt, resolve=failing)
    with pytest.raises(RuntimeError):
        await settle(book, script)()
    assert book.pending_hash(KEY) == TX


async def test_a_pending_entry_expires_after_its_deadline() -> None:
    now = [1000.0]
    book = ledger.Ledger(clock=lambda: now[0])
    script = Script([pending(), used()])
    await settle(book, script, expires=1100.0)()
    now[0] = 1200.0
    assert (await settle(book, script)()).error_reason == "invalid_exact_evm_nonce_already_used"
    assert script.attempt_calls == 2 and script.resolve_calls == []


async def test_a_cancelled_caller_does_not_cancel_the_settlement() -> None:
    gate = asyncio.Event()
    script = Script([ok()], gate=gate)
    book = ledger.Ledger()
    impatient = asyncio.ensure_future(settle(book, script)())
    await asyncio.sleep(0)
    impatient.cancel()
    patient = asyncio.ensure_future(settle(book, script)())
    await asyncio.sleep(0)
    gate.set()
    assert (await patient).success and script.attempt_calls == 1
