"""x402 header names and the defensive decoder for payment headers.

Why this module exists: the payment header is attacker-controlled input on the verifier's hot path. It is
decoded here once, strictly, into a typed :class:`DecodedPayment`, and every failure becomes one
:class:`PaymentHeaderError` carrying a closed :class:`~kube402.x402.codes.Code` — never any other exception,
never a message that echoes the header (SPEC 7.7 steps 6-7, X402.md sections 3 and 5).

Boundary: no HTTP framework, no facilitator, no chain, no clock. Route binding lives in
``requirements``, time and signature checks in ``precheck``. Only the ``exact`` EIP-3009 payload shape is
accepted; anything else (Permit2, other schemes) is an invalid header for kube402.

Decoding is lenient about the transport (standard or URL-safe base64, padding optional, surrounding
whitespace) and strict about content (exact JSON types; addresses ``0x`` + 40 hex; nonce ``0x`` + 64 hex;
amounts and times decimal digit strings that fit a uint256; signature ``0x`` + an even number of hex).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any, Final

import orjson

from kube402.x402 import codes

__all__ = [
    "ASGI_PAYMENT_SIGNATURE",
    "ASGI_X_PAYMENT",
    "DEFAULT_MAX_PAYMENT_HEADER_BYTES",
    "MAX_JSON_DEPTH",
    "PAYMENT_REQUIRED",
    "PAYMENT_RESPONSE",
    "PAYMENT_SIGNATURE",
    "SCHEME_EXACT",
    "V1",
    "V2",
    "X_PAYMENT",
    "X_PAYMENT_RESPONSE",
    "Authorization",
    "DecodedPayment",
    "PaymentHeaderError",
    "decode_b64_json",
    "decode_payment_header",
    "encode_b64_json",
    "receipt_header",
]

PAYMENT_REQUIRED: Final = "PAYMENT-REQUIRED"
"""v2: the 402's requirements (base64 JSON)."""
PAYMENT_SIGNATURE: Final = "PAYMENT-SIGNATURE"
"""v2 name of the client's payment header."""
PAYMENT_RESPONSE: Final = "PAYMENT-RESPONSE"
"""v2 settlement receipt."""
X_PAYMENT: Final = "X-PAYMENT"
"""v1 name of the client's payment header (the version is still read from the payload)."""
X_PAYMENT_RESPONSE: Final = "X-PAYMENT-RESPONSE"
"""v1 settlement receipt."""

ASGI_PAYMENT_SIGNATURE: Final = PAYMENT_SIGNATURE.lower().encode("ascii")
ASGI_X_PAYMENT: Final = X_PAYMENT.lower().encode("ascii")

DEFAULT_MAX_PAYMENT_HEADER_BYTES: Final = 16384
"""SPEC 7.3 ``maxPaymentHeaderBytes``."""

V1: Final = 1
V2: Final = 2
SCHEME_EXACT: Final = "exact"

_UINT256_LIMIT: Final = 1 << 256
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_DIGITS = re.compile(r"[0-9]{1,78}")
_URLSAFE_TO_STANDARD: Final = bytes.maketrans(b"-_", b"+/")
_WHITESPACE: Final = b" \t\r\n"
_DIGIT_MASK: Final = bytes(0x39 if 0x30 <= i <= 0x39 else 0x2E for i in range(256))
"""Maps every digit to ``9`` and everything else to ``.``, so a digit run is a substring search."""
MAX_JSON_DEPTH: Final = 16
"""Deepest nesting accepted in a payment header (a real payload nests 4 deep; extensions a few more). The
decoded object is re-serialized later (payload hash, facilitator body), and the JSON libraries' own limits
differ between parsing and serializing, so depth is bounded here, at the boundary."""
_LONG_DIGIT_RUN: Final = b"9" * 19
"""19 digits are needed to leave the exact range of orjson's integers ([-2**63, 2**64))."""


class PaymentHeaderError(ValueError):
    """The payment header cannot be used; ``code`` says why, ``message`` is short and never echoes input."""

    code: codes.Code
    message: str

    def __init__(self, code: codes.Code, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True, slots=True)
class Authorization:
    """The EIP-3009 ``TransferWithAuthorization`` fields, typed."""

    from_address: str
    """Payer address as sent (``0x`` + 40 hex, any case)."""
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: bytes
    """32 bytes."""


@dataclasses.dataclass(frozen=True, slots=True)
class DecodedPayment:
    """A schema-valid payment header: the raw object (forwarded to the facilitator as received) and typed views."""

    version: int
    """``x402Version`` of the payload (1 or 2), whichever header name carried it."""
    raw: Mapping[str, Any]
    """The decoded JSON object exactly as received; never mutated."""
    scheme: str
    """v2: ``accepted.scheme``; v1: top-level ``scheme``."""
    network: str
    """v2: ``accepted.network`` (CAIP-2); v1: top-level ``network`` (v1 name)."""
    accepted: Mapping[str, Any] | None
    """v2 only: the requirement the client says it accepted (its echo, never trusted as the server's copy)."""
    authorization: Authorization
    signature: bytes


def receipt_header(version: int) -> str:
    """The receipt header name for a payment of this x402 version."""
    return X_PAYMENT_RESPONSE if version == V1 else PAYMENT_RESPONSE


def encode_b64_json(obj: Any) -> str:
    """Standard base64 (with padding) of compact JSON — what reference SDKs emit."""
    return base64.b64encode(orjson.dumps(obj)).decode("ascii")


def _invalid(message: str) -> PaymentHeaderError:
    return PaymentHeaderError(codes.Code.INVALID_PAYMENT_HEADER, message)


def _to_bytes(value: object, *, max_bytes: int) -> bytes:
    if isinstance(value, str):
        if len(value) > max_bytes:
            raise PaymentHeaderError(codes.Code.PAYMENT_HEADER_TOO_LARGE, "payment header too large")
        try:
            data = value.encode("ascii")
        except UnicodeEncodeError:
            raise _invalid("payment header is not base64") from None
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    else:
        raise _invalid("payment header is not text")
    if len(data) > max_bytes:
        raise PaymentHeaderError(codes.Code.PAYMENT_HEADER_TOO_LARGE, "payment header too large")
    return data


def decode_b64_json(value: str | bytes, *, max_bytes: int) -> object:
    """Lenient base64 (standard or URL-safe, padding optional) → JSON value; PaymentHeaderError otherwise."""
    data = _to_bytes(value, max_bytes=max_bytes).strip(_WHITESPACE).rstrip(b"=")
    if not data:
        raise _invalid("payment header is empty")
    if len(data) % 4 == 1:
        raise _invalid("payment header is not base64")
    if b"-" in data or b"_" in data:
        data = data.translate(_URLSAFE_TO_STANDARD)
    data += b"=" * (-len(data) % 4)
    try:
        decoded = binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError):
        raise _invalid("payment header is not base64") from None
    try:
        value = orjson.loads(decoded)
        if _LONG_DIGIT_RUN in decoded.translate(_DIGIT_MASK):
            # orjson turns integers outside [-2**63, 2**64) into floats; the payload is forwarded to the
            # facilitator as parsed, so such numbers are refused rather than silently changed.
            json.loads(decoded, parse_int=_int64)
    except (ValueError, RecursionError):  # orjson.JSONDecodeError is a ValueError
        raise _invalid("payment header is not JSON") from None
    if _too_deep(value, MAX_JSON_DEPTH):
        raise _invalid("payment header nests too deeply")
    return value


def _too_deep(value: object, limit: int) -> bool:
    """True when containers nest deeper than ``limit`` (iterative: no recursion on attacker input)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if type(item) is dict:
            children: Any = item.values()
        elif type(item) is list:
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if type(child) in (dict, list))
    return False


def _int64(text: str) -> int:
    number = int(text)
    if not -(1 << 63) <= number < 1 << 64:
        raise ValueError("integer out of range")
    return number


def decode_payment_header(value: str | bytes, *, max_bytes: int, accept_v1: bool) -> DecodedPayment:
    """Decode ``PAYMENT-SIGNATURE`` / ``X-PAYMENT``; raise only :class:`PaymentHeaderError`."""
    try:
        return _decode(value, max_bytes=max_bytes, accept_v1=accept_v1)
    except PaymentHeaderError:
        raise
    except Exception:  # noqa: BLE001 - the contract is "one exception type for any input"; a bug must not 5xx
        raise _invalid("payment header could not be decoded") from None


def _decode(value: str | bytes, *, max_bytes: int, accept_v1: bool) -> DecodedPayment:
    obj = decode_b64_json(value, max_bytes=max_bytes)
    if type(obj) is not dict:
        raise _invalid("payment header must hold a JSON object")
    version = obj.get("x402Version")
    if type(version) is not int or version not in (V1, V2) or (version == V1 and not accept_v1):
        raise PaymentHeaderError(codes.Code.INVALID_X402_VERSION, "unsupported x402Version")
    accepted: dict[str, Any] | None
    if version == V2:
        accepted = _object(obj, "accepted", "accepted")
        scheme = _text(accepted, "scheme", "accepted.scheme")
        network = _text(accepted, "network", "accepted.network")
        _uint256(accepted, "amount", "accepted.amount")
        _address(accepted, "asset", "accepted.asset")
        _address(accepted, "payTo", "accepted.payTo")
        timeout = accepted.get("maxTimeoutSeconds")
        if type(timeout) is not int or timeout < 0:
            raise _invalid("accepted.maxTimeoutSeconds must be a non-negative integer")
        extra = accepted.get("extra")
        if extra is not None and type(extra) is not dict:
            raise _invalid("accepted.extra must be an object")
        for optional in ("resource", "extensions"):
            if obj.get(optional) is not None and type(obj[optional]) is not dict:
                raise _invalid(f"{optional} must be an object")
    else:
        accepted = None
        scheme = _text(obj, "scheme", "scheme")
        network = _text(obj, "network", "network")
    payload = _object(obj, "payload", "payload")
    signature = _hex_bytes(payload.get("signature"))
    if signature is None or not signature:
        raise _invalid("payload.signature must be 0x followed by an even number of hex digits")
    auth = _object(payload, "authorization", "payload.authorization")
    nonce = _hex_bytes(auth.get("nonce"))
    if nonce is None or len(nonce) != 32:
        raise _invalid("payload.authorization.nonce must be 0x followed by 64 hex digits")
    authorization = Authorization(
        from_address=_address(auth, "from", "payload.authorization.from"),
        to=_address(auth, "to", "payload.authorization.to"),
        value=_uint256(auth, "value", "payload.authorization.value"),
        valid_after=_uint256(auth, "validAfter", "payload.authorization.validAfter"),
        valid_before=_uint256(auth, "validBefore", "payload.authorization.validBefore"),
        nonce=nonce,
    )
    return DecodedPayment(
        version=version,
        raw=obj,
        scheme=scheme,
        network=network,
        accepted=accepted,
        authorization=authorization,
        signature=signature,
    )


def _hex_bytes(value: object) -> bytes | None:
    """``0x`` + an even number of hex digits → bytes; None otherwise (faster than a regex on long values)."""
    if type(value) is not str or not value.startswith("0x") or not value.isascii():
        return None
    try:
        data = bytes.fromhex(value[2:])
    except ValueError:
        return None
    # fromhex skips ASCII whitespace; equal lengths prove there was none.
    return data if 2 * len(data) == len(value) - 2 else None


def _object(parent: dict[str, Any], key: str, label: str) -> dict[str, Any]:
    value = parent.get(key)
    if type(value) is not dict:
        raise _invalid(f"{label} must be an object")
    return value


def _text(parent: dict[str, Any], key: str, label: str) -> str:
    value = parent.get(key)
    if type(value) is not str or not value:
        raise _invalid(f"{label} must be a non-empty string")
    return value


def _address(parent: dict[str, Any], key: str, label: str) -> str:
    value = parent.get(key)
    if type(value) is not str or not _ADDRESS.fullmatch(value):
        raise _invalid(f"{label} must be 0x followed by 40 hex digits")
    return value


def _uint256(parent: dict[str, Any], key: str, label: str) -> int:
    value = parent.get(key)
    if type(value) is not str or not _DIGITS.fullmatch(value):
        raise _invalid(f"{label} must be a decimal string")
    number = int(value)
    if number >= _UINT256_LIMIT:
        raise _invalid(f"{label} does not fit a uint256")
    return number
