from __future__ import annotations

import json

import pytest

from kube402.buyer import terms
from tests.support.buyer_env import SELLER, USDC, v1_body, v1_requirement, v2_header, v2_requirement


def hdr(values: dict[str, str]):  # type: ignore[no-untyped-def]
    return lambda name: values.get(name)


def test_v2_header_wins_over_the_v1_body() -> None:
    required = terms.parse_402(hdr({"payment-required": v2_header(v2_requirement(amount="2000"))}), v1_body())
    assert required.version == 2
    assert required.accepts[0].amount == 2000
    assert required.resource == {"url": "http://seller/services/x/v1/chat/completions"}


def test_v1_body_is_the_fallback_and_reads_max_amount_required() -> None:
    required = terms.parse_402(hdr({}), v1_body())
    req = required.accepts[0]
    assert (required.version, req.amount, req.network, req.caip2) == (1, 1000, "base-sepolia", "eip155:84532")
    assert required.resource == {"url": "http://seller/services/x"}


def test_undecodable_header_falls_back_to_the_body() -> None:
    required = terms.parse_402(hdr({"payment-required": "%%%not base64"}), v1_body())
    assert required.version == 1


def test_amount_field_also_accepted_in_v1() -> None:
    entry = v1_requirement()
    entry["amount"] = entry.pop("maxAmountRequired")
    assert terms.parse_402(hdr({}), v1_body(entry)).accepts[0].amount == 1000


@pytest.mark.parametrize(
    "bad",
    [
        {"amount": "1e3"},
        {"amount": 1000},
        {"amount": "-1"},
        {"payTo": "0x123"},
        {"asset": None},
        {"network": ""},
        {"maxTimeoutSeconds": "300"},
        {"extra": "USDC"},
    ],
)
def test_malformed_entries_are_skipped_and_reported(bad: dict[str, object]) -> None:
    with pytest.raises(terms.TermsError):
        terms.parse_402(hdr({"payment-required": v2_header(v2_requirement(**bad))}), b"")
    good_and_bad = terms.parse_402(
        hdr({"payment-required": v2_header(v2_requirement(**bad), v2_requirement())}), b""
    )
    assert len(good_and_bad.accepts) == 1 and len(good_and_bad.skipped) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        json.dumps({"x402Version": 3, "accepts": [v2_requirement()]}).encode(),
        json.dumps({"x402Version": 1, "accepts": []}).encode(),
    ],
)
def test_no_terms_is_a_terms_error(body: bytes) -> None:
    with pytest.raises(terms.TermsError):
        terms.parse_402(hdr({}), body)


def test_network_and_address_normalization() -> None:
    assert (
        terms.normalize_network("base-sepolia") == terms.normalize_network("EIP155:84532") == "eip155:84532"
    )
    assert terms.normalize_network("some-chain") == "some-chain"
    assert terms.normalize_address(SELLER) == terms.normalize_address(SELLER.lower())
    assert USDC.lower() == terms.normalize_address(USDC)


def test_error_code_of_a_402_body() -> None:
    assert terms.error_code(b'{"error":"nonce_already_used"}') == "nonce_already_used"
    assert terms.error_code(b"garbage") == ""
    assert terms.error_code(b'{"error":{"x":1}}') == ""
