"""Which vouchers are left: hold / confirm / release over the consumed set (SPEC §9). Pure, no I/O, no clock.

*hold* takes the next usable voucher of an upstream (earliest ``validBefore`` first, so fewer expire unused)
and marks its nonce consumed; the caller persists the consumed set before the paid request leaves.
*confirm* (a ``2xx``) and *keep* (``5xx``, timeout after send, failed receipt, replay refusal) end the hold
with the nonce still consumed; *release* removes it, only when the seller provably did not settle. The
consumed set only grows otherwise and is never pruned when the configuration changes, so a voucher removed
and re-added is still known as spent.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any

from kube402.buyer.vouchers import Voucher

__all__ = ["Exhausted", "Ledger", "PoolStats", "StateError", "load_consumed"]


class StateError(ValueError):
    """The state file exists but is not a consumed set: refusing to guess which vouchers are spent."""


def load_consumed(data: bytes) -> dict[str, set[str]]:
    try:
        raw = json.loads(data)
    except ValueError:
        raise StateError("state file is not JSON") from None
    consumed = raw.get("consumed") if isinstance(raw, dict) else None
    if not isinstance(consumed, dict):
        raise StateError("state file has no 'consumed' object")
    out: dict[str, set[str]] = {}
    for name, nonces in consumed.items():
        if not isinstance(nonces, list) or not all(isinstance(n, str) for n in nonces):
            raise StateError(f"consumed[{name!r}] is not a list of nonces")
        out[str(name)] = {n.lower() for n in nonces}
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class PoolStats:
    remaining: int
    spent: int
    held: int
    expired: int


@dataclasses.dataclass(frozen=True, slots=True)
class Exhausted:
    """No usable voucher for the upstream."""

    upstream: str
    stats: PoolStats

    @property
    def message(self) -> str:
        s = self.stats
        return (
            f"voucher pool for upstream {self.upstream} is empty: {s.spent} spent, {s.held} in flight, "
            f"{s.expired} expired; sign more with `kube402 buy vouchers {self.upstream}`"
        )


class Ledger:
    def __init__(self, consumed: Mapping[str, Iterable[str]] | None = None) -> None:
        self.consumed: dict[str, set[str]] = {k: set(v) for k, v in (consumed or {}).items()}
        self.held: dict[str, set[str]] = {}
        self.pools: dict[str, tuple[Voucher, ...]] = {}
        self.version = 0
        """Incremented on every change of the consumed set (what the persister compares)."""
        self.expired_skips: dict[str, int] = {}

    def set_pools(self, pools: Mapping[str, Iterable[Voucher]]) -> None:
        """New configuration: vouchers per upstream. The consumed set is kept as it is."""
        self.pools = {name: tuple(sorted(vs, key=lambda v: v.valid_before)) for name, vs in pools.items()}

    def _consumed(self, upstream: str) -> set[str]:
        return self.consumed.setdefault(upstream, set())

    def hold(self, upstream: str, *, now: float) -> Voucher | Exhausted:
        consumed = self._consumed(upstream)
        skipped = 0
        for v in self.pools.get(upstream, ()):
            if v.nonce in consumed:
                continue
            if v.expired(now):
                skipped += 1
                continue
            if v.not_yet_valid(now):
                continue
            consumed.add(v.nonce)
            self.held.setdefault(upstream, set()).add(v.nonce)
            self.version += 1
            if skipped:
                self.expired_skips[upstream] = self.expired_skips.get(upstream, 0) + skipped
            return v
        if skipped:
            self.expired_skips[upstream] = self.expired_skips.get(upstream, 0) + skipped
        return Exhausted(upstream, self.stats(upstream, now=now))

    def _end_hold(self, upstream: str, nonce: str) -> None:
        held = self.held.get(upstream)
        if held is None or nonce not in held:
            raise KeyError(f"{nonce} is not held for {upstream}")
        held.discard(nonce)

    def confirm(self, upstream: str, nonce: str) -> None:
        """The paid request got a 2xx: the voucher is spent."""
        self._end_hold(upstream, nonce)

    def keep(self, upstream: str, nonce: str) -> None:
        """Unknown or failed outcome after sending: the voucher stays consumed (at most a budget loss)."""
        self._end_hold(upstream, nonce)

    def release(self, upstream: str, nonce: str) -> None:
        """The seller provably did not settle: the voucher goes back into the pool."""
        self._end_hold(upstream, nonce)
        self._consumed(upstream).discard(nonce)
        self.version += 1

    def stats(self, upstream: str, *, now: float) -> PoolStats:
        consumed = self.consumed.get(upstream, set())
        held = self.held.get(upstream, set())
        remaining = expired = 0
        for v in self.pools.get(upstream, ()):
            if v.nonce in consumed:
                continue
            if v.expired(now):
                expired += 1
            else:
                remaining += 1
        return PoolStats(
            remaining=remaining, spent=len(consumed - held), held=len(held & consumed), expired=expired
        )

    def snapshot(self) -> dict[str, Any]:
        return {"consumed": {k: sorted(v) for k, v in sorted(self.consumed.items()) if v}}

    def snapshot_bytes(self) -> bytes:
        return (json.dumps(self.snapshot(), indent=1) + "\n").encode()
