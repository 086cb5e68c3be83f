"""Fixtures for the verifier unit tests (helpers live in ``verifier_support``; payment signing in the x402
tests' ``x402_support``)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _p in (_HERE, _HERE.parent / "x402"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import pytest_asyncio
from verifier_support import Env, make_env


@pytest_asyncio.fixture
async def env() -> AsyncIterator[Env]:
    e = make_env()
    try:
        yield e
    finally:
        await e.aclose()
