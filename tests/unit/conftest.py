"""Unit tests are fast: each gets 2 s before pytest-timeout fails it, so a hang shows as a failure.

Property tests (hypothesis ``@given``) run hundreds to thousands of examples and tests marked ``slow`` run a
compiler; they get 60 s. A test that sets its own ``@pytest.mark.timeout`` keeps it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
UNIT_TIMEOUT_S = 2
PROPERTY_TIMEOUT_S = 60


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE not in item.path.resolve().parents or item.get_closest_marker("timeout") is not None:
            continue
        func = getattr(item, "obj", None)
        long = getattr(func, "is_hypothesis_test", False) or item.get_closest_marker("slow") is not None
        item.add_marker(pytest.mark.timeout(PROPERTY_TIMEOUT_S if long else UNIT_TIMEOUT_S))
