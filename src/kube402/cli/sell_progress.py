"""Progress while waiting on an offer: each condition as it changes, a live line on a terminal.

On a terminal the last line is redrawn in place (spinner, what is awaited, elapsed time) and every condition
change is printed above it; elsewhere (CI logs, pipes) each change is one plain line with a UTC timestamp.
A timeout names the first condition, in SPEC order, that is not True, with its reason and message.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TextIO

from kube402.api import conditions as c
from kube402.cli.errors import CliError

__all__ = ["Progress", "Timeout", "wait_offer"]

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
Obj = Mapping[str, Any]


class Timeout(CliError):
    pass


class Progress:
    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.t0 = time.monotonic()
        self._status = ""
        self._frame = 0
        self._drawn = False

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[2K")
            self._drawn = False

    def event(self, text: str) -> None:
        """A permanent line."""
        if self.live:
            self._clear()
            self.stream.write(f"  {text}\n")
            self._draw()
        else:
            stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            self.stream.write(f"{stamp} {text}\n")
        self.stream.flush()

    def status(self, text: str) -> None:
        """What is being awaited now (the live line; nothing on a non-terminal)."""
        self._status = text
        if self.live:
            self._draw()

    def tick(self) -> None:
        if self.live:
            self._frame += 1
            self._draw()

    def _draw(self) -> None:
        if not self._status:
            return
        spin = SPINNER[self._frame % len(SPINNER)]
        self.stream.write(f"\r\x1b[2K{spin} {self._status} ({self.elapsed():.1f}s)")
        self.stream.flush()
        self._drawn = True

    def done(self) -> None:
        if self.live:
            self._clear()
            self.stream.flush()


def _conds(obj: Obj | None) -> list[c.Condition]:
    raw = ((obj or {}).get("status") or {}).get("conditions") or []
    return c.from_raw(raw if isinstance(raw, list) else [])


def current(obj: Obj | None) -> bool:
    """True when the status describes the offer's current spec (observedGeneration caught up)."""
    if not obj:
        return False
    gen = (obj.get("metadata") or {}).get("generation") or 0
    seen = (obj.get("status") or {}).get("observedGeneration") or 0
    return isinstance(gen, int) and isinstance(seen, int) and seen >= gen


def first_blocker(obj: Obj | None) -> c.Condition | None:
    """The first condition in SPEC order that is not True."""
    by_type = {k.type: k for k in _conds(obj)}
    for ctype in c.ORDER:
        cond = by_type.get(ctype.value)
        if cond is not None and not cond.is_true:
            return cond
    return None


def condition_is(obj: Obj | None, ctype: str, status: str, reason: str | None = None) -> bool:
    for k in _conds(obj):
        if k.type == ctype:
            return k.status == status and (reason is None or k.reason == reason)
    return False


def ready(obj: Obj | None) -> bool:
    return current(obj) and condition_is(obj, c.ConditionType.READY.value, "True")


async def wait_offer(
    get: Callable[[], Awaitable[Obj | None]],
    *,
    key: str,
    until: Callable[[Obj | None], bool],
    goal: str,
    seconds: float,
    progress: Progress,
    interval: float = 0.3,
) -> Obj | None:
    """Poll the offer until ``until(obj)``, reporting condition changes; Timeout names what is still False."""
    seen: dict[str, tuple[str, str, str]] = {}
    deadline = time.monotonic() + seconds
    obj: Obj | None = None
    progress.status(f"{key}: waiting until {goal}")
    while True:
        obj = await get()
        if obj is not None and current(obj):
            for k in _conds(obj):
                line = (k.status, k.reason, k.message)
                if seen.get(k.type) != line:
                    seen[k.type] = line
                    progress.event(f"{k.type:<17} {k.status:<6} {k.reason}: {k.message}")
        blocker = first_blocker(obj) if obj is not None else None
        if until(obj):
            progress.done()
            return obj
        if blocker is not None:
            progress.status(
                f"{key}: waiting until {goal}; {blocker.type} is {blocker.status} ({blocker.reason})"
            )
        if time.monotonic() >= deadline:
            progress.done()
            if obj is None:
                raise Timeout(
                    f"timed out after {seconds:g}s waiting until {goal}: ServiceOffer {key} does not exist"
                )
            if not current(obj):
                raise Timeout(
                    f"timed out after {seconds:g}s waiting until {goal}: the controller has not reconciled "
                    f"{key} yet (is `kube402 controller` running?)"
                )
            if blocker is not None:
                raise Timeout(
                    f"timed out after {seconds:g}s waiting until {goal}: {blocker.type} is still "
                    f"{blocker.status} ({blocker.reason}): {blocker.message}"
                )
            raise Timeout(f"timed out after {seconds:g}s waiting until {goal}")
        steps = max(1, int(interval / 0.1))
        for _ in range(steps):
            await asyncio.sleep(interval / steps)
            progress.tick()
