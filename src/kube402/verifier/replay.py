"""The replay store: one authorization (chain, asset, from, nonce) is served at most once (SPEC 7.9).

An in-process map with atomic check-and-insert (the event loop is single-threaded; no await between the
check and the insert). States: ``in_flight`` while a request works on it, ``settled`` (kept
``replay_ttl``; afterwards the chain's nonce is authoritative), ``verify_only`` (kept until validBefore),
``pending`` (settlement outcome unknown; kept until resolved or validBefore + 10 min). Across replicas the
on-chain nonce guarantees a single transfer; the loser's settle fails.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable

__all__ = ["Entry", "ReplayStore", "State"]

Key = tuple[int, str, str, str]


class State(enum.StrEnum):
    IN_FLIGHT = "in_flight"
    SETTLED = "settled"
    VERIFY_ONLY = "verify_only"
    PENDING = "pending"
    HEAD_USED = "head_used"
    """A paid HEAD was served (never settled): no further HEAD with it; a GET may still settle it."""


@dataclasses.dataclass(slots=True)
class Entry:
    state: State
    expires: float
    payload_hash: str = ""
    tx: str = ""
    claim: str = ""
    """The facilitator claim id of the request that settled or left it pending (resumed with the same id)."""


class ReplayStore:
    def __init__(self, *, replay_ttl: float = 600.0, clock: Callable[[], float] = time.time) -> None:
        self.replay_ttl = replay_ttl
        self.clock = clock
        self._entries: dict[Key, Entry] = {}
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._entries)

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in State}
        for e in self._entries.values():
            out[e.state.value] += 1
        return out

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + 5
        for key in [k for k, e in self._entries.items() if e.expires <= now and e.state != State.IN_FLIGHT]:
            del self._entries[key]

    def get(self, key: Key) -> Entry | None:
        now = self.clock()
        self._sweep(now)
        entry = self._entries.get(key)
        if entry is not None and entry.expires <= now and entry.state != State.IN_FLIGHT:
            del self._entries[key]
            return None
        return entry

    def begin(self, key: Key, *, payload_hash: str) -> Entry | None:
        """Insert ``in_flight`` unless an entry exists; returns the existing entry (caller refuses) or None."""
        existing = self.get(key)
        if existing is not None:
            return existing
        self._entries[key] = Entry(State.IN_FLIGHT, expires=float("inf"), payload_hash=payload_hash)
        return None

    def take_over(self, key: Key) -> None:
        """Move a ``pending`` entry back to ``in_flight`` for a resolution attempt."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.state = State.IN_FLIGHT

    def drop(self, key: Key) -> None:
        self._entries.pop(key, None)

    def settled(self, key: Key, *, tx: str = "") -> None:
        self._entries[key] = Entry(State.SETTLED, expires=self.clock() + self.replay_ttl, tx=tx)

    def verify_only(self, key: Key, *, valid_before: int) -> None:
        self._entries[key] = Entry(State.VERIFY_ONLY, expires=float(valid_before))

    def head_used(self, key: Key, *, valid_before: int) -> None:
        self._entries[key] = Entry(State.HEAD_USED, expires=float(valid_before))

    def pending(self, key: Key, *, payload_hash: str, tx: str, valid_before: int, claim: str = "") -> None:
        self._entries[key] = Entry(
            State.PENDING, expires=float(valid_before + 600), payload_hash=payload_hash, tx=tx, claim=claim
        )
