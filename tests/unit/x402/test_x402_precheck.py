"""Local checks: time windows and EIP-712 signer recovery against eth-account signatures."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import eth_keys.backends
import pytest
from eth_account.messages import encode_typed_data
from eth_hash.auto import keccak

from kube402.api import chains
from kube402.x402 import codes, headers, precheck, requirements
from tests.support.payments import NOW, OTHER_KEY, PAYER, PaymentFactory, decode

Code = codes.Code
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def check(decoded: headers.DecodedPayment, req: requirements.Requirement, **kw: int) -> codes.Code | None:
    return precheck.check(decoded, req, now=kw.pop("now", NOW), **kw)


def with_signature(factory: PaymentFactory, signature: bytes) -> headers.DecodedPayment:
    auth = factory.authorization()
    return decode(factory.v2(auth=auth, signature="0x" + signature.hex()))


class TestConstants:
    def test_typehashes_are_the_documented_ones(self) -> None:
        assert (
            precheck.DOMAIN_TYPEHASH.hex()
            == "8b73c3c69bb8fe3d512ecc4cf759cc79239f7b179b0ffacaa9a75d522b39400f"
        )
        assert (
            precheck.TRANSFER_WITH_AUTHORIZATION_TYPEHASH.hex()
            == "7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267"
        )

    def test_eth_keys_uses_the_coincurve_backend(self) -> None:
        backend = eth_keys.backends.get_backend()
        assert type(backend).__name__ == "CoinCurveECCBackend", "the pure-Python backend is ~20x slower"

    def test_digest_equals_eth_accounts_typed_data_hash(self, factory: PaymentFactory) -> None:
        req = factory.requirement
        auth = factory.authorization()
        signable = encode_typed_data(
            full_message={
                "types": {
                    "EIP712Domain": [
                        {"name": "name", "type": "string"},
                        {"name": "version", "type": "string"},
                        {"name": "chainId", "type": "uint256"},
                        {"name": "verifyingContract", "type": "address"},
                    ],
                    "TransferWithAuthorization": [
                        {"name": "from", "type": "address"},
                        {"name": "to", "type": "address"},
                        {"name": "value", "type": "uint256"},
                        {"name": "validAfter", "type": "uint256"},
                        {"name": "validBefore", "type": "uint256"},
                        {"name": "nonce", "type": "bytes32"},
                    ],
                },
                "primaryType": "TransferWithAuthorization",
                "domain": {
                    "name": req.eip712_name,
                    "version": req.eip712_version,
                    "chainId": req.chain.chain_id,
                    "verifyingContract": req.asset,
                },
                "message": {
                    **auth,
                    "value": int(auth["value"]),
                    "validAfter": 0,
                    "validBefore": int(auth["validBefore"]),
                },
            }
        )
        expected = keccak(b"\x19" + signable.version + signable.header + signable.body)
        separator = precheck.domain_separator(
            req.chain.chain_id, req.asset, req.eip712_name, req.eip712_version
        )
        assert signable.header == separator
        decoded = decode(factory.v2(auth=auth))
        assert precheck.transfer_digest(decoded.authorization, separator=separator) == expected


class TestWindow:
    def test_a_fresh_payment_passes(self, factory: PaymentFactory) -> None:
        assert check(decode(factory.v2()), factory.requirement) is None

    @pytest.mark.parametrize(
        ("valid_after", "valid_before", "expected"),
        [
            pytest.param(NOW, NOW + 60, None, id="valid-after-now"),
            pytest.param(NOW + 1, NOW + 60, Code.VALID_AFTER, id="valid-after-future"),
            pytest.param(0, NOW + 6, None, id="valid-before-now-plus-6"),
            pytest.param(0, NOW + 5, Code.VALID_BEFORE, id="valid-before-now-plus-5"),
            pytest.param(0, NOW - 1, Code.VALID_BEFORE, id="expired"),
            pytest.param(0, NOW + precheck.DEFAULT_MAX_VALIDITY_SECONDS, None, id="window-at-cap"),
            pytest.param(
                0,
                NOW + precheck.DEFAULT_MAX_VALIDITY_SECONDS + 1,
                Code.AUTHORIZATION_WINDOW_TOO_LONG,
                id="cap",
            ),
            pytest.param(0, 2**256 - 1, Code.AUTHORIZATION_WINDOW_TOO_LONG, id="forever"),
        ],
    )
    def test_window(
        self, factory: PaymentFactory, valid_after: int, valid_before: int, expected: codes.Code | None
    ) -> None:
        auth = factory.authorization(validAfter=str(valid_after), validBefore=str(valid_before))
        assert check(decode(factory.v2(auth=auth)), factory.requirement) is expected

    def test_cap_is_configurable(self, factory: PaymentFactory) -> None:
        auth = factory.authorization(validBefore=str(NOW + 600))
        decoded = decode(factory.v2(auth=auth))
        assert (
            check(decoded, factory.requirement, max_validity_seconds=599)
            is Code.AUTHORIZATION_WINDOW_TOO_LONG
        )
        assert check(decoded, factory.requirement, max_validity_seconds=600) is None

    def test_time_checks_come_before_the_signature(self, factory: PaymentFactory) -> None:
        auth = factory.authorization(validBefore=str(NOW))
        assert (
            check(decode(factory.v2(auth=auth, signature="0x" + "00" * 65)), factory.requirement)
            is Code.VALID_BEFORE
        )


class TestSignature:
    def test_v1_payload_is_checked_the_same_way(self, factory: PaymentFactory) -> None:
        assert check(decode(factory.v1()), factory.requirement) is None

    def test_signed_by_someone_else(self, factory: PaymentFactory) -> None:
        decoded = decode(factory.v2(key=OTHER_KEY))
        assert check(decoded, factory.requirement) is Code.INVALID_SIGNATURE

    def test_from_is_not_the_signer(self, factory: PaymentFactory) -> None:
        auth = factory.authorization()
        signature = factory.sign(auth)
        auth["from"] = "0x" + "cd" * 20
        assert (
            check(decode(factory.v2(auth=auth, signature=signature)), factory.requirement)
            is Code.INVALID_SIGNATURE
        )

    def test_tampered_value(self, factory: PaymentFactory) -> None:
        auth = factory.authorization()
        signature = factory.sign(auth)
        auth["validBefore"] = str(int(auth["validBefore"]) + 1)
        assert (
            check(decode(factory.v2(auth=auth, signature=signature)), factory.requirement)
            is Code.INVALID_SIGNATURE
        )

    @pytest.mark.parametrize(
        "domain",
        [
            pytest.param({"name": "USD Coin"}, id="name"),
            pytest.param({"version": "1"}, id="version"),
            pytest.param({"chain_id": 8453}, id="chain"),
            pytest.param({"contract": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"}, id="token"),
        ],
    )
    def test_wrong_domain(self, factory: PaymentFactory, domain: dict[str, Any]) -> None:
        assert check(decode(factory.v2(**domain)), factory.requirement) is Code.INVALID_SIGNATURE

    def test_signature_for_one_chain_is_invalid_on_another(self, factory: PaymentFactory) -> None:
        decoded = decode(factory.v2())
        base = requirements.build_requirement(
            chains.lookup("base"), amount=1000, pay_to=factory.requirement.pay_to
        )
        assert check(decoded, base) is Code.INVALID_SIGNATURE

    def test_recovery_ids_0_1_and_27_28_are_both_accepted(self, factory: PaymentFactory) -> None:
        auth = factory.authorization()
        signature = bytes.fromhex(factory.sign(auth)[2:])
        assert signature[64] in (27, 28)
        compact_v = signature[:64] + bytes((signature[64] - 27,))
        assert (
            check(decode(factory.v2(auth=auth, signature="0x" + compact_v.hex())), factory.requirement)
            is None
        )

    def test_high_s_is_refused(self, factory: PaymentFactory) -> None:
        auth = factory.authorization()
        signature = bytes.fromhex(factory.sign(auth)[2:])
        s = int.from_bytes(signature[32:64], "big")
        flipped = signature[:32] + (N - s).to_bytes(32, "big") + bytes((55 - signature[64],))
        separator = precheck.domain_separator(84532, factory.requirement.asset, "USDC", "2")
        digest = precheck.transfer_digest(decode(factory.v2(auth=auth)).authorization, separator=separator)
        # The malleated signature is mathematically valid for the same signer ...
        import coincurve

        public = coincurve.PublicKey.from_signature_and_message(
            flipped[:64] + bytes((flipped[64] - 27,)), digest, hasher=None
        )
        assert "0x" + keccak(public.format(compressed=False)[1:])[12:].hex() == PAYER.lower()
        # ... but the token would reject it, so kube402 does too.
        assert check(decode(factory.v2(auth=auth, signature="0x" + flipped.hex())), factory.requirement) is (
            Code.INVALID_SIGNATURE
        )

    @pytest.mark.parametrize(
        "signature",
        [
            pytest.param(bytes(65), id="zeros"),
            pytest.param(b"\x01" * 64 + b"\x1d", id="v-29"),
            pytest.param(b"\x01" * 64 + b"\x02", id="v-2"),
            pytest.param(N.to_bytes(32, "big") + b"\x01" * 32 + b"\x1b", id="r-equals-n"),
            pytest.param(b"\x01" * 32 + bytes(32) + b"\x1b", id="s-zero"),
            pytest.param(b"\xff" * 64 + b"\x1c", id="r-s-out-of-range"),
            pytest.param((5).to_bytes(32, "big") + (1).to_bytes(32, "big") + b"\x1b", id="r-not-on-curve"),
        ],
    )
    def test_malformed_eoa_signatures(self, factory: PaymentFactory, signature: bytes) -> None:
        assert check(with_signature(factory, signature), factory.requirement) is Code.INVALID_SIGNATURE

    @pytest.mark.parametrize("length", [1, 64, 66, 97, 300])
    def test_non_eoa_lengths_are_left_to_the_facilitator(self, factory: PaymentFactory, length: int) -> None:
        assert check(with_signature(factory, b"\x07" * length), factory.requirement) is None

    def test_a_nonce_that_is_not_32_bytes(self, factory: PaymentFactory) -> None:
        decoded = decode(factory.v2())
        auth = dataclasses.replace(decoded.authorization, nonce=bytes(31))
        assert check(dataclasses.replace(decoded, authorization=auth), factory.requirement) is (
            Code.INVALID_PAYMENT_HEADER
        )

    def test_recover_signer_rejects_bad_lengths(self) -> None:
        assert precheck.recover_signer(bytes(31), bytes(65)) is None
        assert precheck.recover_signer(bytes(32), bytes(64)) is None

    def test_a_check_takes_well_under_a_millisecond(self, factory: PaymentFactory) -> None:
        decoded = decode(factory.v2())
        rounds = 300
        start = time.perf_counter()
        for _ in range(rounds):
            assert precheck.check(decoded, factory.requirement, now=NOW) is None
        assert (time.perf_counter() - start) / rounds < 1e-3
