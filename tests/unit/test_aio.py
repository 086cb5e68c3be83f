"""cancel_and_wait: every task ends; a failure that happened earlier is reported, not swallowed."""

from __future__ import annotations

import asyncio

import pytest

from kube402 import aio


async def test_running_tasks_are_cancelled_and_awaited() -> None:
    forever = asyncio.create_task(asyncio.Event().wait(), name="forever")
    await asyncio.sleep(0)
    await aio.cancel_and_wait([forever])
    assert forever.cancelled()


async def test_a_task_that_had_failed_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async def boom() -> None:
        raise RuntimeError("informer exploded")

    failed = asyncio.create_task(boom(), name="informer-serviceoffers")
    forever = asyncio.create_task(asyncio.Event().wait(), name="forever")
    await asyncio.wait([failed])
    await aio.cancel_and_wait([failed, forever])
    assert forever.cancelled()
    (record,) = [r for r in caplog.records if r.name == "kube402.aio"]
    assert "informer-serviceoffers" in record.getMessage() and "informer exploded" in record.getMessage()
    assert record.exc_info is not None
