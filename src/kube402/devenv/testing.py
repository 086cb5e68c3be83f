"""Small waiting and inspection helpers shared by tests, benchmarks and the demo."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

__all__ = ["condition", "conditions", "eventually"]

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    *,
    until: Callable[[T], bool] = bool,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until ``until(result)``; raise TimeoutError with the last result otherwise."""
    deadline = time.monotonic() + timeout
    last: T
    while True:
        last = await probe()
        if until(last):
            return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s; last: {last!r}")
        await asyncio.sleep(interval)


def conditions(obj: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """type → condition of an object's status (empty when there is none)."""
    if not obj:
        return {}
    return {c.get("type", ""): c for c in ((obj.get("status") or {}).get("conditions") or [])}


def condition(obj: Mapping[str, Any] | None, ctype: str) -> tuple[str, str]:
    """(status, reason) of one condition, ("", "") when absent."""
    c = conditions(obj).get(ctype)
    return (c.get("status", ""), c.get("reason", "")) if c else ("", "")
