"""Fixtures for the x402 adapter tests (helpers live in ``tests.support.payments``)."""

from __future__ import annotations

import pytest

from kube402.x402 import requirements
from tests.support.payments import BASE_SEPOLIA, PAY_TO, PaymentFactory


@pytest.fixture
def route() -> requirements.PricedRoute:
    return requirements.priced_route(BASE_SEPOLIA, amount=1000, pay_to=PAY_TO, description="Qwen chat")


@pytest.fixture
def requirement(route: requirements.PricedRoute) -> requirements.Requirement:
    return route.requirements[0]


@pytest.fixture
def factory(requirement: requirements.Requirement) -> PaymentFactory:
    return PaymentFactory(requirement)
