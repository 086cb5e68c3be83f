from __future__ import annotations

import dataclasses

import pytest
from eth_account import Account
from x402.schemas import PaymentPayload, PaymentPayloadV1

from kube402.buyer import market, terms, vouchers
from kube402.x402 import headers, precheck
from tests.support.buyer_env import (
    NOW,
    SELLER,
    TERMS,
    USDC,
    v1_body,
    v1_requirement,
    v2_header,
    v2_requirement,
    voucher,
)


def required(*accepts: dict[str, object]) -> terms.PaymentRequired:
    return terms.parse_402(lambda n: v2_header(*accepts) if n == "payment-required" else None, b"")


def test_exact_terms_match_with_case_insensitive_addresses_and_v1_names() -> None:
    req = required(v2_requirement(payTo=SELLER.lower(), asset=USDC.upper().replace("0X", "0x")))
    assert vouchers.choose_requirement(req, TERMS) == req.accepts[0]
    v1 = terms.parse_402(lambda _n: None, v1_body())
    assert (
        vouchers.choose_requirement(v1, dataclasses.replace(TERMS, network="base-sepolia")) == v1.accepts[0]
    )


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"amount": "2000"}, "amount 2000"),
        ({"amount": "999"}, "amount 999"),
        ({"payTo": "0x" + "ab" * 20}, "payTo"),
        ({"asset": "0x" + "cd" * 20}, "asset"),
        ({"network": "eip155:8453"}, "network eip155:8453"),
        ({"scheme": "upto"}, "scheme"),
    ],
)
def test_any_other_term_is_a_mismatch_naming_the_field(over: dict[str, object], field: str) -> None:
    got = vouchers.choose_requirement(required(v2_requirement(**over)), TERMS)
    assert isinstance(got, vouchers.Mismatch)
    assert len(got.differences) == 1 and field in got.message


def test_the_matching_option_is_chosen_among_several() -> None:
    req = required(v2_requirement(network="eip155:8453"), v2_requirement())
    assert vouchers.choose_requirement(req, TERMS) == req.accepts[1]


def test_voucher_fits_only_its_recipient_and_value() -> None:
    assert TERMS.fits(voucher())
    assert not TERMS.fits(voucher(value=999))
    assert not TERMS.fits(voucher(to="0x" + "ab" * 20))


def test_expiry_margin_is_ten_seconds() -> None:
    assert voucher(valid_before=NOW + 11).expired(NOW) is False
    assert voucher(valid_before=NOW + 10).expired(NOW) is True


def test_voucher_parse_rejects_malformed_entries() -> None:
    good = voucher().to_json()
    assert vouchers.Voucher.parse(good) == voucher()
    for key, bad in [
        ("nonce", "0x12"),
        ("value", "1.5"),
        ("from", "x"),
        ("signature", "0xz"),
        ("value", True),
    ]:
        with pytest.raises(vouchers.VoucherError):
            vouchers.Voucher.parse({**good, key: bad})
    pool, problems = vouchers.parse_pool([good, good, {"bad": 1}])
    assert len(pool) == 1 and len(problems) == 2


def _signed(req: terms.Requirement) -> vouchers.Voucher:
    account = Account.create()
    return market.sign_vouchers(account, req, count=1, validity_seconds=3600, chain_id=84532, now=NOW)[0]


def test_v2_payment_decodes_as_the_verifier_and_the_sdk_read_it_and_the_signature_recovers() -> None:
    req402 = required()
    req = req402.accepts[0]
    v = _signed(req)
    name, value = vouchers.payment_header(req402, req, v)
    assert name == "PAYMENT-SIGNATURE"
    decoded = headers.decode_payment_header(value, max_bytes=16384, accept_v1=True)
    assert decoded.version == 2 and decoded.accepted == req.raw
    assert decoded.authorization.value == 1000 and decoded.authorization.to.lower() == SELLER.lower()
    sep = precheck.domain_separator(84532, USDC, "USDC", "2")
    signer = precheck.recover_signer(
        precheck.transfer_digest(decoded.authorization, separator=sep), decoded.signature
    )
    assert signer == v.from_.lower()
    sdk = PaymentPayload.model_validate(headers.decode_b64_json(value, max_bytes=16384))
    assert sdk.accepted.amount == "1000" and sdk.resource is not None


def test_v1_payment_shape() -> None:
    req402 = terms.parse_402(lambda _n: None, v1_body())
    v = _signed(req402.accepts[0])
    name, value = vouchers.payment_header(req402, req402.accepts[0], v)
    assert name == "X-PAYMENT"
    obj = headers.decode_b64_json(value, max_bytes=16384)
    assert isinstance(obj, dict) and obj["network"] == "base-sepolia" and obj["x402Version"] == 1
    PaymentPayloadV1.model_validate(obj)
    assert headers.decode_payment_header(value, max_bytes=16384, accept_v1=True).version == 1


def test_signing_needs_the_eip712_domain() -> None:
    req = required(v2_requirement(extra={})).accepts[0]
    with pytest.raises(market.MarketError):
        _signed(req)


def test_v1_requirement_with_amount_field() -> None:
    assert v1_requirement()["maxAmountRequired"] == "1000"
