"""Request parsing, payment identities and ``/supported`` building (pure)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from x402.schemas import PaymentPayload, PaymentPayloadV1, SettleResponse

from kube402.chain.facilitator import wire

PAYER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
PAY_TO = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
ASSET = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
NONCE = "0x" + "ab" * 32
AUTH = {
    "from": PAYER,
    "to": PAY_TO,
    "value": "1000",
    "validAfter": "0",
    "validBefore": "1999999999",
    "nonce": NONCE,
}
INNER = {"authorization": AUTH, "signature": "0x" + "11" * 65}
REQ_V2 = {
    "scheme": "exact",
    "network": "eip155:84532",
    "asset": ASSET,
    "amount": "1000",
    "payTo": PAY_TO,
    "maxTimeoutSeconds": 60,
    "extra": {"name": "USDC", "version": "2"},
}
REQ_V1 = {
    "scheme": "exact",
    "network": "base-sepolia",
    "maxAmountRequired": "1000",
    "resource": "http://x/y",
    "payTo": PAY_TO,
    "maxTimeoutSeconds": 60,
    "asset": ASSET,
    "extra": {"name": "USDC", "version": "2"},
}


def v2_body(**top: Any) -> dict[str, Any]:
    payload = {"x402Version": 2, "accepted": REQ_V2, "payload": INNER}
    return {"x402Version": 2, "paymentPayload": payload, "paymentRequirements": REQ_V2, **top}


def v1_body() -> dict[str, Any]:
    payload = {"x402Version": 1, "scheme": "exact", "network": "base-sepolia", "payload": INNER}
    return {"x402Version": 1, "paymentPayload": payload, "paymentRequirements": REQ_V1}


def encode(doc: Any) -> bytes:
    return orjson.dumps(doc)


def spoiled(path: str, value: Any) -> bytes:
    doc = orjson.loads(encode(v2_body()))  # no shared sub-objects
    *parents, leaf = path.split(".")
    target = doc
    for p in parents:
        target = target[p]
    if value is KeyError:
        del target[leaf]
    else:
        target[leaf] = value
    return encode(doc)


class TestParsing:
    def test_a_v2_body_becomes_the_x402_models(self) -> None:
        req = wire.parse_request(encode(v2_body()))
        assert req.version == 2 and isinstance(req.payload, PaymentPayload)
        assert (req.network, req.payer, req.nonce) == ("eip155:84532", PAYER, NONCE)
        assert req.requirements.pay_to == PAY_TO

    def test_a_v1_body_becomes_the_v1_models(self) -> None:
        req = wire.parse_request(encode(v1_body()))
        assert req.version == 1 and isinstance(req.payload, PaymentPayloadV1)
        assert req.network == "base-sepolia"

    def test_the_top_level_version_may_be_omitted(self) -> None:
        doc = v2_body()
        del doc["x402Version"]
        assert wire.parse_request(encode(doc)).version == 2

    @pytest.mark.parametrize("content", [b"", b"nope", b"{", b"\xff\xfe"])
    def test_a_body_that_is_not_json_is_not_json(self, content: bytes) -> None:
        with pytest.raises(wire.NotJson):
            wire.parse_request(content)

    @pytest.mark.parametrize(
        ("content", "reason"),
        [
            pytest.param(b"[]", wire.Reason.INVALID_PAYLOAD, id="array"),
            pytest.param(b"null", wire.Reason.INVALID_PAYLOAD, id="null"),
            pytest.param(spoiled("paymentPayload", "x"), wire.Reason.INVALID_PAYLOAD, id="payload-string"),
            pytest.param(
                spoiled("paymentRequirements", KeyError),
                wire.Reason.INVALID_PAYMENT_REQUIREMENTS,
                id="no-requirements",
            ),
            pytest.param(spoiled("paymentPayload.x402Version", 3), wire.Reason.INVALID_X402_VERSION, id="v3"),
            pytest.param(
                spoiled("paymentPayload.x402Version", "2"), wire.Reason.INVALID_X402_VERSION, id="v-str"
            ),
            pytest.param(spoiled("x402Version", 1), wire.Reason.INVALID_X402_VERSION, id="disagree"),
            pytest.param(
                spoiled("paymentRequirements.scheme", "upto"), wire.Reason.UNSUPPORTED_SCHEME, id="upto"
            ),
            pytest.param(
                spoiled("paymentRequirements.maxTimeoutSeconds", "soon"),
                wire.Reason.INVALID_PAYMENT_REQUIREMENTS,
                id="timeout-type",
            ),
            pytest.param(
                spoiled("paymentPayload.accepted", KeyError), wire.Reason.INVALID_PAYLOAD, id="no-accepted"
            ),
            pytest.param(
                spoiled("paymentPayload.payload", {"permit2Authorization": {}}),
                wire.Reason.INVALID_PAYLOAD,
                id="permit2",
            ),
            pytest.param(
                spoiled("paymentPayload.payload.signature", "0x1"),
                wire.Reason.INVALID_PAYLOAD,
                id="odd-signature",
            ),
            pytest.param(
                spoiled("paymentPayload.payload.authorization.from", "0x12"),
                wire.Reason.INVALID_PAYLOAD,
                id="short-from",
            ),
            pytest.param(
                spoiled("paymentPayload.payload.authorization.value", "-1"),
                wire.Reason.INVALID_PAYLOAD,
                id="negative",
            ),
            pytest.param(
                spoiled("paymentPayload.payload.authorization.validBefore", 5),
                wire.Reason.INVALID_PAYLOAD,
                id="number",
            ),
            pytest.param(
                spoiled("paymentPayload.payload.authorization", KeyError),
                wire.Reason.INVALID_PAYLOAD,
                id="no-authorization",
            ),
        ],
    )
    def test_a_json_body_that_is_not_a_payment_request_is_invalid(
        self, content: bytes, reason: wire.Reason
    ) -> None:
        with pytest.raises(wire.Invalid) as caught:
            wire.parse_request(content)
        assert caught.value.reason == reason

    def test_an_invalid_body_still_reports_the_network_and_payer_it_carries(self) -> None:
        with pytest.raises(wire.Invalid) as caught:
            wire.parse_request(spoiled("paymentPayload.payload.authorization.nonce", "0x00"))
        assert (caught.value.network, caught.value.payer) == ("eip155:84532", PAYER)


class TestIdentity:
    def test_the_body_key_ignores_key_order_and_whitespace(self) -> None:
        a = wire.parse_request(encode(v2_body()))
        reordered = (
            b'{"paymentRequirements": '
            + encode(dict(reversed(REQ_V2.items())))
            + b', "paymentPayload": '
            + encode(v2_body()["paymentPayload"])
            + b', "x402Version": 2}'
        )
        assert wire.parse_request(reordered).body_key == a.body_key

    def test_the_body_key_changes_with_any_field(self) -> None:
        a = wire.parse_request(encode(v2_body()))
        b = wire.parse_request(spoiled("paymentRequirements.maxTimeoutSeconds", 61))
        assert a.body_key != b.body_key

    def test_one_authorization_has_one_key_across_versions_and_spellings(self) -> None:
        v2 = wire.parse_request(encode(v2_body())).authorization(84532)
        v1 = wire.parse_request(encode(v1_body())).authorization(84532)
        upper = wire.parse_request(
            spoiled("paymentPayload.payload.authorization.nonce", NONCE.upper().replace("0X", "0x"))
        ).authorization(84532)
        assert v2 == v1 == upper
        assert v2 != wire.parse_request(encode(v2_body())).authorization(8453)


class TestReplies:
    def test_supported_lists_v1_and_v2_kinds_of_the_given_networks_only(self) -> None:
        answer = wire.supported(
            [wire.Kind("eip155:84532", "base-sepolia"), wire.Kind("eip155:42161", None)],
            signers=["0xA", "0xA"],
        )
        assert orjson.loads(wire.dump(answer)) == {
            "kinds": [
                {"x402Version": 1, "scheme": "exact", "network": "base-sepolia"},
                {"x402Version": 2, "scheme": "exact", "network": "eip155:84532"},
                {"x402Version": 2, "scheme": "exact", "network": "eip155:42161"},
            ],
            "extensions": ["kube402-claim"],
            "signers": {"eip155:*": ["0xA"]},
        }

    def test_replies_are_camel_case_without_nulls(self) -> None:
        assert orjson.loads(wire.dump(wire.verify_failure("invalid_payload", "bad"))) == {
            "isValid": False,
            "invalidReason": "invalid_payload",
            "invalidMessage": "bad",
        }
        ok = SettleResponse(success=True, transaction="0x" + "1" * 64, network="eip155:84532", payer=PAYER)
        assert orjson.loads(wire.dump(ok)) == {
            "success": True,
            "transaction": "0x" + "1" * 64,
            "network": "eip155:84532",
            "payer": PAYER,
        }
        failed = orjson.loads(wire.dump(wire.settle_failure("x", "m", network="base-sepolia")))
        assert failed["transaction"] == "" and failed["success"] is False
