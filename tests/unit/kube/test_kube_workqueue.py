"""The work queue (STYLE: fair, stingy; SPEC 5.1: per-item backoff 1 s doubling to 60 s).

Delays are real but tiny (tens of milliseconds); long backoffs are checked through their return value and
the pending timer, never waited for.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from kube402.kube.workqueue import ShutDown, WorkQueue


async def drain(q: WorkQueue[str]) -> list[str]:
    """Every key that is ready now (each is marked done at once)."""
    out: list[str] = []
    while len(q):
        key = await q.get()
        q.done(key)
        out.append(key)
    return out


async def get_soon(q: WorkQueue[str], timeout: float = 0.5) -> str:
    return await asyncio.wait_for(q.get(), timeout)


async def nothing_within(q: WorkQueue[str], seconds: float) -> bool:
    try:
        await asyncio.wait_for(q.get(), seconds)
    except TimeoutError:
        return True
    return False


class TestFairAndStingy:
    async def test_keys_come_out_first_in_first_out(self) -> None:
        q: WorkQueue[str] = WorkQueue()
        for k in ["a", "b", "c"]:
            q.add(k)
        assert await drain(q) == ["a", "b", "c"]

    async def test_repeated_adds_collapse_into_one(self) -> None:
        q: WorkQueue[str] = WorkQueue()
        for k in ["a", "b", "a", "a", "b"]:
            q.add(k)
        assert len(q) == 2
        assert await drain(q) == ["a", "b"]

    async def test_a_key_in_flight_is_not_handed_out_again(self) -> None:
        q: WorkQueue[str] = WorkQueue()
        q.add("a")
        assert await q.get() == "a"
        q.add("a")
        assert len(q) == 0
        assert await nothing_within(q, 0.02)

    async def test_a_re_add_during_processing_is_queued_again_after_done(self) -> None:
        q: WorkQueue[str] = WorkQueue()
        q.add("a")
        key = await q.get()
        q.add("a")
        q.add("a")
        q.done(key)
        assert len(q) == 1
        assert await get_soon(q) == "a"

    async def test_done_without_a_re_add_does_not_requeue(self) -> None:
        q: WorkQueue[str] = WorkQueue()
        q.add("a")
        q.done(await q.get())
        assert len(q) == 0

    async def test_a_waiting_worker_wakes_on_add(self) -> None:
        q: WorkQueue[str] = WorkQueue()
        waiter = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        assert not waiter.done()
        q.add("a")
        assert await asyncio.wait_for(waiter, 0.5) == "a"

    async def test_two_workers_never_hold_the_same_key(self) -> None:
        q: WorkQueue[str] = WorkQueue()
        in_flight: set[str] = set()
        overlaps: list[str] = []
        processed: list[str] = []
        forty = asyncio.Event()

        async def worker() -> None:
            while True:
                try:
                    key = await q.get()
                except ShutDown:
                    return
                if key in in_flight:
                    overlaps.append(key)
                in_flight.add(key)
                await asyncio.sleep(0.001)
                if len(processed) < 40:
                    q.add(key)  # re-add while processing
                processed.append(key)
                if len(processed) >= 40:
                    forty.set()
                in_flight.discard(key)
                q.done(key)

        for k in ["a", "b"]:
            q.add(k)
        workers = [asyncio.create_task(worker()) for _ in range(4)]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(forty.wait(), 1.0)
        q.shutdown()
        await asyncio.wait_for(asyncio.gather(*workers), 1)
        assert len(processed) >= 40, "re-added keys were lost"
        assert overlaps == []


class TestDelayedAdds:
    async def test_add_after_delivers_after_the_delay(self) -> None:
        q: WorkQueue[str] = WorkQueue()
        loop = asyncio.get_running_loop()
        start = loop.time()
        q.add_after("a", 0.05)
        assert len(q) == 0
        assert await get_soon(q) == "a"
        assert loop.time() - start >= 0.045

    async def test_a_non_positive_delay_adds_at_once(self) -> None:
        q: WorkQueue[str] = WorkQueue()
        q.add_after("a", 0)
        q.add_after("b", -1)
        assert len(q) == 2

    async def test_an_earlier_deadline_replaces_a_later_one(self) -> None:
        q: WorkQueue[str] = WorkQueue()
        q.add_after("a", 5.0)
        q.add_after("a", 0.02)
        assert await get_soon(q, 0.3) == "a"
        q.done("a")
        assert await nothing_within(q, 0.05)  # the 5 s timer is gone, not merely late

    async def test_a_later_deadline_does_not_postpone_an_earlier_one(self) -> None:
        q: WorkQueue[str] = WorkQueue()
        q.add_after("a", 0.02)
        q.add_after("a", 5.0)
        assert await get_soon(q, 0.3) == "a"
        q.done("a")
        q.shutdown()  # cancels anything left

    async def test_a_delayed_add_while_processing_requeues_after_done(self) -> None:
        q: WorkQueue[str] = WorkQueue()
        q.add("a")
        key = await q.get()
        q.add_after("a", 0.01)
        await asyncio.sleep(0.03)
        assert len(q) == 0
        q.done(key)
        assert await get_soon(q) == "a"


class TestBackoff:
    async def test_rate_limited_delays_double_from_base_to_max(self) -> None:
        q: WorkQueue[str] = WorkQueue(base_delay=1.0, max_delay=60.0)
        delays = [q.add_rate_limited("a") for _ in range(9)]
        assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
        assert q.failures("a") == 9
        q.shutdown()

    async def test_backoff_is_per_key(self) -> None:
        q: WorkQueue[str] = WorkQueue(base_delay=1.0, max_delay=60.0)
        q.add_rate_limited("a")
        q.add_rate_limited("a")
        assert q.add_rate_limited("b") == 1
        q.shutdown()

    async def test_forget_resets_the_backoff(self) -> None:
        q: WorkQueue[str] = WorkQueue(base_delay=1.0, max_delay=60.0)
        for _ in range(4):
            q.add_rate_limited("a")
        q.forget("a")
        assert q.failures("a") == 0
        assert q.add_rate_limited("a") == 1
        q.shutdown()

    async def test_a_rate_limited_key_is_delivered_after_its_backoff(self) -> None:
        q: WorkQueue[str] = WorkQueue(base_delay=0.02, max_delay=1.0)
        q.add_rate_limited("a")
        assert len(q) == 0
        assert await get_soon(q) == "a"

    async def test_a_key_that_keeps_failing_stays_capped_at_max(self) -> None:
        # SPEC 5.1: backoff from 1 s to 60 s. A key failing for a day (1440 failures at the cap) must keep
        # being retried every 60 s, not crash the worker that re-queues it.
        q: WorkQueue[str] = WorkQueue(base_delay=1.0, max_delay=60.0)
        try:
            delays = [q.add_rate_limited("a") for _ in range(1500)]
            assert delays[-1] == 60
        finally:
            q.shutdown()


class TestShutdown:
    async def test_a_waiting_worker_is_released(self) -> None:
        q: WorkQueue[str] = WorkQueue()
        waiter = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        q.shutdown()
        with pytest.raises(ShutDown):
            await asyncio.wait_for(waiter, 0.5)

    async def test_adds_after_shutdown_are_ignored(self) -> None:
        q: WorkQueue[str] = WorkQueue()
        q.shutdown()
        q.add("a")
        q.add_after("b", 0.01)
        assert len(q) == 0
        with pytest.raises(ShutDown):
            await get_soon(q)

    async def test_pending_timers_are_cancelled(self) -> None:
        q: WorkQueue[str] = WorkQueue()
        q.add_after("a", 0.02)
        q.shutdown()
        await asyncio.sleep(0.05)
        assert len(q) == 0

    async def test_keys_queued_before_shutdown_are_still_handed_out(self) -> None:
        q: WorkQueue[str] = WorkQueue()
        q.add("a")
        q.shutdown()
        assert await get_soon(q) == "a"
        with pytest.raises(ShutDown):
            await get_soon(q)
