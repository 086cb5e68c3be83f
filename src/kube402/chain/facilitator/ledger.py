"""The settlement ledger: at most one transfer per EIP-3009 authorization, and pending settlements remembered.

Keyed by :class:`~kube402.chain.facilitator.wire.AuthorizationKey` (chain, asset, payer, nonce): only one
transfer can ever carry an authorization, so only one settle job per key runs at a time.

* Concurrent settles of the **same body** share the running job and all get its answer (one transfer).
* A **different body** carrying the same authorization waits for the running job, then is decided afresh
  (the x402 mechanism's simulation then refuses a used nonce).
* A job that ends with ``settlement_pending`` leaves the entry behind with the transaction hash. A retry
  resolves it from that transaction's receipt through the resolver of the body that broadcast it — never by
  broadcasting again. If the transaction turns out to be dead (never mined, its nonce used by another one),
  the entry's own attempt runs again: the authorization was not executed, so a fresh broadcast is safe.
* A **success is never forgotten** while its authorization could matter (until ``validBefore`` plus the
  grace): the same body settled again — a verifier retrying after its own deadline passed — gets the same
  success, not "nonce already used" for its own transfer. A different body with that authorization is
  decided afresh (the mechanism refuses the used nonce).
* A terminal failure forgets the entry, so a later replay is judged on chain again. An error raised by a
  job (the chain could not be asked) reaches every waiter and forgets nothing pending.

Pending entries are kept until the authorization's ``validBefore`` plus a grace period (after that the
transfer can no longer execute). Memory only: a restart forgets pending hashes (a retry then re-simulates,
which refuses a nonce the pending transaction has since used). Event-loop confined; no locks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable

from x402.schemas import SettleResponse

from kube402.chain.facilitator import wire

__all__ = ["Attempt", "Ledger"]

_PRUNE_EVERY = 1.0


@dataclasses.dataclass(frozen=True, slots=True)
class Attempt:
    """One settle answer, plus the nonce of the transaction it is waiting for when pending."""

    response: SettleResponse
    tx_nonce: int | None = None

    @property
    def pending(self) -> bool:
        r = self.response
        return not r.success and r.error_reason == wire.Reason.SETTLEMENT_PENDING and bool(r.transaction)


Run = Callable[[], Awaitable[Attempt]]
Resolve = Callable[[str, "int | None"], Awaitable["Attempt | None"]]
"""Resolve a pending transaction: its outcome, a still-pending answer, or None when it can never be mined."""


class _Entry:
    __slots__ = ("attempt", "body", "expires", "job", "resolve", "success", "tx_hash", "tx_nonce")

    def __init__(self, *, body: str, attempt: Run, resolve: Resolve, expires: float) -> None:
        self.body = body
        self.attempt = attempt
        self.resolve = resolve
        self.expires = expires
        self.job: asyncio.Future[Attempt] | None = None
        self.tx_hash: str | None = None
        self.tx_nonce: int | None = None
        self.success: Attempt | None = None


class Ledger:
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._entries: dict[wire.AuthorizationKey, _Entry] = {}
        self._clock = clock
        self._next_prune = 0.0

    @property
    def pending(self) -> int:
        """Settlements broadcast whose outcome nobody has collected yet."""
        return sum(1 for e in self._entries.values() if e.tx_hash is not None and e.success is None)

    @property
    def in_flight(self) -> int:
        return sum(1 for e in self._entries.values() if e.job is not None)

    def pending_hash(self, key: wire.AuthorizationKey) -> str | None:
        entry = self._entries.get(key)
        return None if entry is None else entry.tx_hash

    async def settle(
        self,
        key: wire.AuthorizationKey,
        *,
        body: str,
        expires: float,
        attempt: Run,
        resolve: Resolve,
        owner_retry: bool = True,
    ) -> SettleResponse:
        """Settle (or join, or resolve) the payment ``body`` whose authorization is ``key``.

        ``owner_retry``: the caller is the request that settled (its claim says so); only it gets a remembered
        success back. Anyone else replaying the body is judged afresh (the used nonce is refused)."""
        while True:
            self._prune()
            entry = self._entries.get(key)
            if entry is None:
                entry = _Entry(body=body, attempt=attempt, resolve=resolve, expires=expires)
                self._entries[key] = entry
            if entry.success is not None:
                if entry.body == body and owner_retry:
                    return entry.success.response
                return (await attempt()).response  # another body with a used authorization: refused afresh
            if entry.job is None:
                entry.job = asyncio.ensure_future(self._drive(key, entry))
            owner, job = entry.body, entry.job
            result = await asyncio.shield(job)
            if owner == body or result.pending:
                return result.response

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for running jobs (shutdown)."""
        jobs = [e.job for e in self._entries.values() if e.job is not None]
        if jobs:
            await asyncio.wait(jobs, timeout=timeout)

    async def _drive(self, key: wire.AuthorizationKey, entry: _Entry) -> Attempt:
        try:
            result: Attempt | None = None
            if entry.tx_hash is not None:
                result = await entry.resolve(entry.tx_hash, entry.tx_nonce)
                if result is None:  # dead transaction: the authorization was never executed
                    entry.tx_hash = entry.tx_nonce = None
            if result is None:
                result = await entry.attempt()
        except BaseException:
            entry.job = None
            if entry.tx_hash is None:
                self._forget(key, entry)
            raise
        entry.job = None
        if result.pending:
            entry.tx_hash = result.response.transaction
            if result.tx_nonce is not None:
                entry.tx_nonce = result.tx_nonce
        elif result.response.success:
            entry.success = result
            entry.tx_hash = None
        else:
            self._forget(key, entry)
        return result

    def _forget(self, key: wire.AuthorizationKey, entry: _Entry) -> None:
        if self._entries.get(key) is entry:
            del self._entries[key]

    def _prune(self) -> None:
        now = self._clock()
        if now < self._next_prune:
            return
        self._next_prune = now + _PRUNE_EVERY
        stale = [k for k, e in self._entries.items() if e.job is None and e.expires < now]
        for k in stale:
            del self._entries[k]
