"""Fixtures for the verifier unit tests (helpers live in ``tests.support.verifier_env``; payment signing in
``tests.support.payments``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.support.verifier_env import Env, make_env


@pytest_asyncio.fixture
async def env() -> AsyncIterator[Env]:
    e = make_env()
    try:
        yield e
    finally:
        await e.aclose()
