"""Payment header decoding: accepted encodings, typed fields, and one error code per kind of junk."""

from __future__ import annotations

import base64
import copy
import subprocess
import sys
from typing import Any

import orjson
import pytest

from kube402.x402 import codes, headers
from tests.support.payments import PAY_TO, PAYER, PaymentFactory, decode

MAX = headers.DEFAULT_MAX_PAYMENT_HEADER_BYTES
Code = codes.Code


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class TestWireNames:
    def test_header_names_match_the_x402_package(self) -> None:
        import x402.http as sdk

        assert headers.PAYMENT_REQUIRED == sdk.PAYMENT_REQUIRED_HEADER
        assert headers.PAYMENT_SIGNATURE == sdk.PAYMENT_SIGNATURE_HEADER
        assert headers.PAYMENT_RESPONSE == sdk.PAYMENT_RESPONSE_HEADER
        assert headers.X_PAYMENT == sdk.X_PAYMENT_HEADER
        assert headers.X_PAYMENT_RESPONSE == sdk.X_PAYMENT_RESPONSE_HEADER
        assert headers.ASGI_PAYMENT_SIGNATURE == b"payment-signature"
        assert headers.ASGI_X_PAYMENT == b"x-payment"

    def test_receipt_header_follows_the_payload_version(self) -> None:
        assert headers.receipt_header(2) == "PAYMENT-RESPONSE"
        assert headers.receipt_header(1) == "X-PAYMENT-RESPONSE"

    def test_public_surface_is_explicit(self) -> None:
        import kube402.x402
        from kube402.x402 import facilitator_client, paywall, precheck, requirements

        assert kube402.x402.__all__ == sorted(kube402.x402.__all__)
        for module in (codes, headers, paywall, requirements, precheck, facilitator_client):
            assert module.__name__.rpartition(".")[2] in kube402.x402.__all__
            for name in module.__all__:
                assert hasattr(module, name), f"{module.__name__}.{name}"


class TestImportCost:
    @pytest.mark.timeout(30)  # starts a fresh interpreter
    def test_request_path_modules_import_neither_web3_nor_the_sdk(self) -> None:
        code = (
            "import sys\n"
            "from kube402.x402 import codes, facilitator_client, headers, precheck, requirements\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('web3', 'x402', 'eth_account'))\n"
            "print(','.join(heavy))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
        )
        assert result.stdout.strip() == ""


class TestEncode:
    def test_standard_base64_with_padding_of_compact_json(self) -> None:
        value = headers.encode_b64_json({"a": "?>", "b": [1, 2]})
        assert value == base64.b64encode(b'{"a":"?>","b":[1,2]}').decode()
        assert value.endswith("=")
        assert "-" not in value and "_" not in value


class TestDecodeValid:
    def test_v2_fields_are_typed_and_raw_is_kept(self, factory: PaymentFactory) -> None:
        obj = factory.v2()
        decoded = decode(obj)
        assert decoded.version == 2
        assert decoded.raw == obj
        assert decoded.scheme == "exact" and decoded.network == "eip155:84532"
        assert decoded.accepted == factory.requirement.v2
        auth = decoded.authorization
        assert auth.from_address == PAYER and auth.to == PAY_TO
        assert auth.value == 1000 and auth.valid_after == 0 and isinstance(auth.valid_before, int)
        assert auth.nonce == bytes.fromhex(obj["payload"]["authorization"]["nonce"][2:])
        assert len(decoded.signature) == 65

    def test_v1_fields(self, factory: PaymentFactory) -> None:
        decoded = decode(factory.v1())
        assert decoded.version == 1
        assert decoded.accepted is None
        assert (decoded.scheme, decoded.network) == ("exact", "base-sepolia")

    @pytest.mark.parametrize(
        "transform",
        [
            pytest.param(lambda s: s, id="standard-padded"),
            pytest.param(lambda s: s.rstrip("="), id="standard-unpadded"),
            pytest.param(lambda s: s.replace("+", "-").replace("/", "_"), id="urlsafe-padded"),
            pytest.param(lambda s: s.replace("+", "-").replace("/", "_").rstrip("="), id="urlsafe-unpadded"),
            pytest.param(lambda s: f"  {s}\t", id="surrounding-whitespace"),
            pytest.param(lambda s: s.encode(), id="bytes"),
        ],
    )
    def test_transport_encodings(self, factory: PaymentFactory, transform: Any) -> None:
        obj = factory.v2()
        raw = orjson.dumps(obj)
        # Make sure the encoding actually contains URL-unsafe characters and needs padding.
        obj["resource"]["description"] = "??>>" * ((3 - len(raw) % 3) % 3 + 1)
        value = headers.encode_b64_json(obj)
        decoded = headers.decode_payment_header(transform(value), max_bytes=MAX, accept_v1=True)
        assert decoded.raw == obj

    def test_extra_fields_and_extensions_are_kept_verbatim(self, factory: PaymentFactory) -> None:
        obj = factory.v2()
        obj["extensions"] = {"payment-identifier": {"info": {"id": "abc_123-xyz-0000"}}}
        obj["accepted"]["extra"]["clientOnly"] = True
        assert decode(obj).raw == obj

    def test_uint256_bounds(self, factory: PaymentFactory) -> None:
        top = str(2**256 - 1)
        auth = factory.authorization(validBefore=top)
        assert (
            decode(factory.v2(auth=auth, signature="0x" + "11" * 65)).authorization.valid_before == 2**256 - 1
        )

    def test_long_signature_is_kept_for_the_facilitator(self, factory: PaymentFactory) -> None:
        decoded = decode(factory.v2(signature="0x" + "ab" * 300))
        assert len(decoded.signature) == 300


def _mutated(base: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(base)
    target = obj
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return obj


_DELETE = object()
_AUTH = ("payload", "authorization")

SCHEMA_VIOLATIONS_V2 = [
    (("accepted",), _DELETE),
    (("accepted",), []),
    (("accepted", "scheme"), ""),
    (("accepted", "scheme"), 1),
    (("accepted", "network"), None),
    (("accepted", "amount"), 1000),
    (("accepted", "amount"), "1e3"),
    (("accepted", "amount"), "-1"),
    (("accepted", "amount"), "1000 "),
    (("accepted", "amount"), "１０００"),  # noqa: RUF001 - fullwidth digits on purpose
    (("accepted", "asset"), "0x036CbD53842c5426634e7929541eC2318f3dCF7"),
    (("accepted", "asset"), "036CbD53842c5426634e7929541eC2318f3dCF7e00"),
    (("accepted", "payTo"), "0x70997970C51812dc3A010C7d01b50e0d17dc79CZ"),
    (("accepted", "maxTimeoutSeconds"), "300"),
    (("accepted", "maxTimeoutSeconds"), 300.0),
    (("accepted", "maxTimeoutSeconds"), True),
    (("accepted", "maxTimeoutSeconds"), -1),
    (("accepted", "maxTimeoutSeconds"), _DELETE),
    (("accepted", "extra"), "USDC"),
    (("resource",), "http://x"),
    (("extensions",), []),
    (("payload",), _DELETE),
    (("payload",), "0x"),
    (("payload", "signature"), _DELETE),
    (("payload", "signature"), "0x"),
    (("payload", "signature"), "0xabc"),
    (("payload", "signature"), "abcd"),
    (("payload", "signature"), "0xzz"),
    (("payload", "signature"), "0xab  "),
    (("payload", "signature"), "0x\tabcd\n"),
    (("payload", "signature"), "0X" + "ab" * 65),
    (("payload", "signature"), "0x" + "ab" * 64 + "é"),
    (("payload", "authorization"), None),
    ((*_AUTH, "from"), _DELETE),
    ((*_AUTH, "from"), "0x1234"),
    ((*_AUTH, "to"), 12),
    ((*_AUTH, "value"), 1000),
    ((*_AUTH, "value"), "0x3e8"),
    ((*_AUTH, "value"), str(2**256)),
    ((*_AUTH, "value"), "9" * 79),
    ((*_AUTH, "validAfter"), ""),
    ((*_AUTH, "validBefore"), None),
    ((*_AUTH, "validBefore"), "12.5"),
    ((*_AUTH, "nonce"), "0x" + "00" * 31),
    ((*_AUTH, "nonce"), "0x" + "00" * 33),
    ((*_AUTH, "nonce"), "00" * 32),
    ((*_AUTH, "nonce"), "0x" + "00" * 31 + "  "),
    ((*_AUTH, "nonce"), "0x" + "00" * 31 + "0 0"),
    ((*_AUTH, "nonce"), 0),
]


class TestDecodeErrors:
    def test_too_large(self, factory: PaymentFactory) -> None:
        value = headers.encode_b64_json(factory.v2())
        for candidate in (value, value.encode()):
            with pytest.raises(headers.PaymentHeaderError) as err:
                headers.decode_payment_header(candidate, max_bytes=len(value) - 1, accept_v1=True)
            assert err.value.code is Code.PAYMENT_HEADER_TOO_LARGE
        assert headers.decode_payment_header(value, max_bytes=len(value), accept_v1=True).version == 2

    @pytest.mark.parametrize(
        "value",
        [
            pytest.param("", id="empty"),
            pytest.param("   ", id="blank"),
            pytest.param("====", id="only-padding"),
            pytest.param("abcde", id="length-mod-4-is-1"),
            pytest.param("ab$d", id="bad-character"),
            pytest.param("ab=cd", id="padding-in-the-middle"),
            pytest.param("é" * 8, id="non-ascii-text"),
            pytest.param(b"\xff\xfe\x00", id="binary"),
            pytest.param(b64(b"\xff\xfe"), id="not-utf8"),
            pytest.param(b64(b"{'a': 1}"), id="not-json"),
            pytest.param(b64(b"NaN"), id="nan"),
            pytest.param(b64(b"[1,2]"), id="array"),
            pytest.param(b64(b'"x402"'), id="string"),
            pytest.param(b64(b"null"), id="null"),
            pytest.param(b64(b"[" * 5000 + b"]" * 5000), id="deeply-nested"),
        ],
    )
    def test_not_a_json_object(self, value: str | bytes) -> None:
        with pytest.raises(headers.PaymentHeaderError) as err:
            headers.decode_payment_header(value, max_bytes=MAX * 4, accept_v1=True)
        assert err.value.code is Code.INVALID_PAYMENT_HEADER

    @pytest.mark.parametrize(
        "number", [str(2**64), str(-(2**63) - 1), "1" + "0" * 30, "1e400", "-1e400"], ids=lambda n: n[:12]
    )
    def test_numbers_that_would_change_when_forwarded(self, factory: PaymentFactory, number: str) -> None:
        raw = orjson.dumps(factory.v2())[:-1] + b',"extensions":{"x":{"info":' + number.encode() + b"}}}"
        with pytest.raises(headers.PaymentHeaderError) as err:
            headers.decode_payment_header(b64(raw), max_bytes=MAX, accept_v1=True)
        assert err.value.code is Code.INVALID_PAYMENT_HEADER

    def test_64_bit_numbers_and_long_digit_strings_are_fine(self, factory: PaymentFactory) -> None:
        obj = factory.v2()
        obj["extensions"] = {"x": {"info": [2**64 - 1, -(2**63), "1" * 40, 1.5e300]}}
        assert decode(obj).raw == obj

    def test_lone_surrogate(self, factory: PaymentFactory) -> None:
        raw = orjson.dumps(factory.v2())[:-1] + b',"extensions":{"x":"\\ud800"}}'
        with pytest.raises(headers.PaymentHeaderError) as err:
            headers.decode_payment_header(b64(raw), max_bytes=MAX, accept_v1=True)
        assert err.value.code is Code.INVALID_PAYMENT_HEADER

    def test_not_text_at_all(self) -> None:
        with pytest.raises(headers.PaymentHeaderError) as err:
            headers.decode_payment_header(None, max_bytes=MAX, accept_v1=True)  # type: ignore[arg-type]
        assert err.value.code is Code.INVALID_PAYMENT_HEADER

    @pytest.mark.parametrize("version", [_DELETE, 0, 3, "2", 2.0, True, None, [2]])
    def test_unsupported_version(self, factory: PaymentFactory, version: Any) -> None:
        obj = _mutated(factory.v2(), ("x402Version",), version)
        with pytest.raises(headers.PaymentHeaderError) as err:
            decode(obj)
        assert err.value.code is Code.INVALID_X402_VERSION

    def test_v1_refused_when_disabled(self, factory: PaymentFactory) -> None:
        with pytest.raises(headers.PaymentHeaderError) as err:
            decode(factory.v1(), accept_v1=False)
        assert err.value.code is Code.INVALID_X402_VERSION
        assert decode(factory.v2(), accept_v1=False).version == 2

    @pytest.mark.parametrize(("path", "value"), SCHEMA_VIOLATIONS_V2, ids=lambda p: repr(p)[:40])
    def test_v2_schema_violation(self, factory: PaymentFactory, path: tuple[str, ...], value: Any) -> None:
        with pytest.raises(headers.PaymentHeaderError) as err:
            decode(_mutated(factory.v2(), path, value))
        assert err.value.code is Code.INVALID_PAYMENT_HEADER

    @pytest.mark.parametrize(
        ("path", "value"),
        [
            (("scheme",), _DELETE),
            (("scheme",), ""),
            (("network",), 84532),
            (("payload",), []),
            ((*_AUTH, "value"), "1.5"),
            ((*_AUTH, "nonce"), "0x" + "g" * 64),
        ],
        ids=lambda p: repr(p)[:40],
    )
    def test_v1_schema_violation(self, factory: PaymentFactory, path: tuple[str, ...], value: Any) -> None:
        with pytest.raises(headers.PaymentHeaderError) as err:
            decode(_mutated(factory.v1(), path, value))
        assert err.value.code is Code.INVALID_PAYMENT_HEADER

    def test_messages_never_echo_the_header(self, factory: PaymentFactory) -> None:
        secret = "0x" + "5ec7e7" * 10 + "0000"
        obj = _mutated(factory.v2(), ("payload", "signature"), secret + "z")
        value = headers.encode_b64_json(obj)
        with pytest.raises(headers.PaymentHeaderError) as err:
            headers.decode_payment_header(value, max_bytes=MAX, accept_v1=True)
        text = str(err.value) + err.value.message + repr(err.value)
        assert "5ec7e7" not in text and value[:20] not in text
        assert err.value.__cause__ is None

    def test_lower_level_errors_are_not_chained(self) -> None:
        # orjson's message quotes the input; it must not travel along as cause or visible context.
        with pytest.raises(headers.PaymentHeaderError) as err:
            headers.decode_payment_header(b64(b'{"secret": nope}'), max_bytes=MAX, accept_v1=True)
        assert err.value.__cause__ is None
        assert err.value.__context__ is None or err.value.__suppress_context__
