"""Compatibility with the PyPI ``x402`` package: its parsers accept our 402, its client's payments pass our checks.

These tests import ``x402.mechanisms.evm`` (and so web3); kube402's request path does not.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson
import pytest
from eth_account import Account
from x402 import x402Client
from x402.http import (
    decode_payment_required_header,
    encode_payment_signature_header,
)
from x402.mechanisms.evm.eip712 import hash_eip3009_authorization
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.mechanisms.evm.types import ExactEIP3009Authorization
from x402.schemas import PaymentRequired
from x402.schemas.v1 import PaymentRequiredV1

from kube402.x402 import headers, precheck, requirements
from tests.support.payments import PAYER_KEY, URL


def sdk_client() -> x402Client:
    client = x402Client()
    register_exact_evm_client(client, EthAccountSigner(Account.from_key(PAYER_KEY)))
    return client


class TestSdkParsesOurChallenge:
    def test_v2_header(self, route: requirements.PricedRoute) -> None:
        challenge = route.challenge(URL)
        parsed = decode_payment_required_header(challenge.header)
        assert isinstance(parsed, PaymentRequired)
        assert parsed.model_dump(by_alias=True, exclude_none=True) == orjson.loads(
            base64.b64decode(challenge.header)
        )
        accept = parsed.accepts[0]
        assert (accept.network, accept.amount, accept.pay_to) == (
            "eip155:84532",
            "1000",
            route.requirements[0].pay_to,
        )
        assert parsed.resource is not None and parsed.resource.url == URL

    def test_v1_body(self, route: requirements.PricedRoute) -> None:
        parsed = PaymentRequiredV1.model_validate_json(route.challenge(URL).body)
        assert parsed.accepts[0].max_amount_required == "1000"
        assert parsed.accepts[0].network == "base-sepolia"
        assert parsed.model_dump(by_alias=True, exclude_none=True) == orjson.loads(route.challenge(URL).body)

    def test_refusal_variant_still_parses(self, route: requirements.PricedRoute) -> None:
        parsed = decode_payment_required_header(route.challenge(URL).with_error("insufficient_funds").header)
        assert parsed.error == "insufficient_funds"


class TestSdkPaymentsPassOurChecks:
    async def _pay(self, payment_required: Any) -> tuple[str, dict[str, Any]]:
        payload = await sdk_client().create_payment_payload(payment_required)
        value = encode_payment_signature_header(payload)
        return value, payload.model_dump(by_alias=True, exclude_none=True)

    @pytest.mark.parametrize("version", [2, 1])
    async def test_sdk_payment_decodes_binds_and_verifies(
        self, route: requirements.PricedRoute, version: int
    ) -> None:
        challenge = route.challenge(URL)
        if version == 2:
            value, raw = await self._pay(decode_payment_required_header(challenge.header))
        else:
            value, raw = await self._pay(PaymentRequiredV1.model_validate_json(challenge.body))
        decoded = headers.decode_payment_header(
            value, max_bytes=headers.DEFAULT_MAX_PAYMENT_HEADER_BYTES, accept_v1=True
        )
        assert decoded.version == version
        assert decoded.raw == raw
        req = requirements.match_requirement(decoded, route.requirements)
        assert req is route.requirements[0]
        assert precheck.check(decoded, req, now=int(time.time())) is None
        assert challenge.server_requirements(req, version=version)["payTo"] == req.pay_to

    async def test_our_digest_equals_the_sdks(self, route: requirements.PricedRoute) -> None:
        value, _ = await self._pay(decode_payment_required_header(route.challenge(URL).header))
        decoded = headers.decode_payment_header(
            value, max_bytes=headers.DEFAULT_MAX_PAYMENT_HEADER_BYTES, accept_v1=True
        )
        auth = decoded.authorization
        req = route.requirements[0]
        sdk_digest = hash_eip3009_authorization(
            ExactEIP3009Authorization(
                from_address=auth.from_address,
                to=auth.to,
                value=str(auth.value),
                valid_after=str(auth.valid_after),
                valid_before=str(auth.valid_before),
                nonce="0x" + auth.nonce.hex(),
            ),
            req.chain.chain_id,
            req.asset,
            req.eip712_name,
            req.eip712_version,
        )
        separator = precheck.domain_separator(
            req.chain.chain_id, req.asset, req.eip712_name, req.eip712_version
        )
        assert precheck.transfer_digest(auth, separator=separator) == sdk_digest

    async def test_sdk_payment_for_another_route_does_not_bind(self, route: requirements.PricedRoute) -> None:
        value, _ = await self._pay(decode_payment_required_header(route.challenge(URL).header))
        decoded = headers.decode_payment_header(
            value, max_bytes=headers.DEFAULT_MAX_PAYMENT_HEADER_BYTES, accept_v1=True
        )
        pricier = requirements.priced_route(
            route.requirements[0].chain, amount=2000, pay_to=route.requirements[0].pay_to, description="x"
        )
        assert requirements.match_requirement(decoded, pricier.requirements) is None
