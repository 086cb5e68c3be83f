"""Claims: one payment admits at most one request across every verifier replica (issue 9, defect 1).

The chain's nonce guarantees one *transfer*, not one *service*: two replicas that both verify a copy of the
same authorization both run (or let through) the upstream before one settle fails — or, when both send the
same body, both get the ledger's shared success. So admission itself is made exclusive here, at the one
place every replica asks: ``/verify`` with an ``X-Kube402-Claim`` header (a per-request idempotency key
the verifier generates) reserves the authorization (chain, asset, payer, nonce) for that request before any
upstream work, and ``/settle`` is refused to any other request while the claim is held.

* The owner's own retries (the same claim id) always pass: a settle retried after a timeout gets its own
  result (the ledger remembers successes).
* A claim whose settlement ended ``pending`` may be taken over by another request carrying the **same
  body** (the buyer retrying on another replica); a different body never can.
* A terminal settle failure or an explicit ``/release`` (the verifier served nothing) frees the claim;
  otherwise it lives until the authorization's ``validBefore`` plus the grace period.

Memory only, event-loop confined (check-and-insert without an await in between). A facilitator restart
forgets held claims; the on-chain nonce still allows one transfer.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import time
from collections.abc import Callable
from typing import Final

from kube402.chain.facilitator import wire

__all__ = ["CLAIM_HEADER", "EXTENSION", "Claims", "State", "valid_claim_id"]

CLAIM_HEADER: Final = "x-kube402-claim"
EXTENSION: Final = wire.CLAIM_EXTENSION
"""Listed in ``/supported`` ``extensions``: this facilitator serializes admission across replicas."""
IN_PROGRESS: Final = "payment_in_progress"
ALREADY_USED: Final = "invalid_exact_evm_nonce_already_used"
DUPLICATE: Final = "duplicate_settlement"
_CLAIM_ID = re.compile(r"[A-Za-z0-9_-]{16,128}")
_PRUNE_EVERY = 1.0


def valid_claim_id(value: str | None) -> bool:
    return value is not None and _CLAIM_ID.fullmatch(value) is not None


class State(enum.StrEnum):
    HELD = "held"
    PENDING = "pending"
    SETTLED = "settled"


@dataclasses.dataclass(slots=True)
class _Claim:
    owner: str
    body: str
    state: State
    expires: float


class Claims:
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._claims: dict[wire.AuthorizationKey, _Claim] = {}
        self._clock = clock
        self._next_prune = 0.0

    def __len__(self) -> int:
        return len(self._claims)

    def held(self) -> int:
        return sum(1 for c in self._claims.values() if c.state is State.HELD)

    def _get(self, key: wire.AuthorizationKey) -> _Claim | None:
        now = self._clock()
        if now >= self._next_prune:
            self._next_prune = now + _PRUNE_EVERY
            for k in [k for k, c in self._claims.items() if c.expires <= now]:
                del self._claims[k]
        claim = self._claims.get(key)
        if claim is not None and claim.expires <= now:
            del self._claims[key]
            return None
        return claim

    def reserve(self, key: wire.AuthorizationKey, *, owner: str, body: str, expires: float) -> str | None:
        """Admit ``owner`` for ``key``: None when granted, else the refusal reason."""
        claim = self._get(key)
        if claim is None:
            self._claims[key] = _Claim(owner, body, State.HELD, expires)
            return None
        if claim.owner == owner:
            return None
        if claim.state is State.PENDING and claim.body == body:
            claim.owner, claim.state = owner, State.HELD
            return None
        return ALREADY_USED if claim.state is State.SETTLED else IN_PROGRESS

    def may_settle(
        self, key: wire.AuthorizationKey, *, owner: str | None, body: str, expires: float
    ) -> str | None:
        """Whether ``owner`` (None: a caller without claims) may settle ``key`` now; None = yes."""
        claim = self._get(key)
        if claim is None:
            if owner is not None:
                self._claims[key] = _Claim(owner, body, State.HELD, expires)
            return None
        if owner is not None and claim.owner == owner:
            return None
        if owner is not None and claim.state is State.PENDING and claim.body == body:
            claim.owner, claim.state = owner, State.HELD
            return None
        return DUPLICATE

    def settled(self, key: wire.AuthorizationKey, *, owner: str | None, pending: bool) -> None:
        claim = self._claims.get(key)
        if claim is not None and (owner is None or claim.owner == owner):
            claim.state = State.PENDING if pending else State.SETTLED

    def release(self, key: wire.AuthorizationKey, *, owner: str | None) -> bool:
        """Free a held claim of ``owner`` (nothing was served, or its settle failed for good)."""
        claim = self._claims.get(key)
        if claim is None or owner is None or claim.owner != owner or claim.state is not State.HELD:
            return False
        del self._claims[key]
        return True
