"""The facilitator's wire format: request bodies in, x402 response models out. Pure: no I/O, no clock.

``POST /verify`` and ``POST /settle`` take ``{x402Version, paymentPayload, paymentRequirements}`` (X402.md
section 8) in either protocol version. :func:`parse_request` turns a body into a :class:`PaymentRequest`
holding the x402 package's own models (``PaymentPayload`` / ``PaymentPayloadV1`` and the matching
requirements), the network as the caller spelled it, and two identities:

* ``body_key`` — sha256 over the canonical JSON (sorted keys) of version, payload and requirements: "the same
  payment request", whatever the whitespace or key order;
* :meth:`PaymentRequest.authorization` — (chain id, asset, from, nonce) of the EIP-3009 authorization: "the
  same on-chain transfer", which a different body (even one of the other protocol version) may carry too.

Client mistakes raise :class:`Invalid` (answered ``200`` with ``isValid``/``success`` false and a reason);
only a body that is not JSON raises :class:`NotJson` (answered ``400``). Nothing here decides validity
beyond shape: amounts, recipients, windows and signatures are the x402 mechanism's job.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import re
from collections.abc import Iterable
from typing import Any, Final

import orjson
import pydantic
from web3 import Web3
from x402.schemas import (
    PaymentPayload,
    PaymentPayloadV1,
    PaymentRequirements,
    PaymentRequirementsV1,
    SettleResponse,
    SupportedKind,
    SupportedResponse,
    VerifyResponse,
)

__all__ = [
    "SCHEME",
    "AuthorizationKey",
    "Invalid",
    "Kind",
    "NotJson",
    "PaymentRequest",
    "Reason",
    "dump",
    "parse_request",
    "settle_failure",
    "supported",
    "verify_failure",
]

SCHEME: Final = "exact"
CLAIM_EXTENSION: Final = "kube402-claim"
"""``/supported`` extension: verify/settle honour ``X-Kube402-Claim`` (one request per payment, claims.py)."""
EVM_FAMILY: Final = "eip155:*"

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_NONCE = re.compile(r"^0x[0-9a-fA-F]{64}$")
_HEX = re.compile(r"^0x(?:[0-9a-fA-F]{2})+$")
_UINT = re.compile(r"^[0-9]{1,78}$")
_AUTH_FIELDS: Final = ("from", "to", "value", "validAfter", "validBefore", "nonce")


class Reason(enum.StrEnum):
    """Reasons this service emits itself; the x402 mechanism's reasons pass through untouched."""

    INVALID_PAYLOAD = "invalid_payload"
    INVALID_PAYMENT_REQUIREMENTS = "invalid_payment_requirements"
    INVALID_NETWORK = "invalid_network"
    INVALID_X402_VERSION = "invalid_x402_version"
    UNSUPPORTED_SCHEME = "unsupported_scheme"
    UNEXPECTED_VERIFY_ERROR = "unexpected_verify_error"
    UNEXPECTED_SETTLE_ERROR = "unexpected_settle_error"
    SETTLEMENT_PENDING = "settlement_pending"
    ASSET_NOT_ALLOWED = "asset_not_allowed"
    """The asset is not the chain table's token for this network (a relayer must not serve any contract)."""
    SMART_WALLET_NOT_ENABLED = "smart_wallet_not_enabled"
    INSUFFICIENT_BALANCE = "invalid_exact_evm_insufficient_balance"
    FACILITATOR_UNAVAILABLE = "facilitator_unavailable"
    """Only in ``503`` bodies: the chain could not be asked, so nothing is known about the payment."""


class NotJson(ValueError):
    """The body is not a JSON document (answered ``400``)."""


class Invalid(ValueError):
    """A JSON body that is not a usable payment request (answered ``200`` with a reason)."""

    def __init__(self, reason: Reason, message: str, *, network: str = "", payer: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.network = network
        self.payer = payer


@dataclasses.dataclass(frozen=True, slots=True)
class AuthorizationKey:
    """One EIP-3009 authorization on one token: at most one transfer can ever carry it."""

    chain_id: int
    asset: str
    payer: str
    nonce: str


@dataclasses.dataclass(frozen=True, slots=True)
class PaymentRequest:
    version: int
    payload: PaymentPayload | PaymentPayloadV1
    requirements: PaymentRequirements | PaymentRequirementsV1
    network: str
    """``paymentRequirements.network`` as sent: CAIP-2 for v2, a v1 name for v1."""
    payer: str
    nonce: str
    body_key: str
    value: int = 0
    signature_bytes: int = 65

    def authorization(self, chain_id: int) -> AuthorizationKey:
        return AuthorizationKey(
            chain_id=chain_id,
            asset=self.requirements.asset.lower(),
            payer=self.payer.lower(),
            nonce=self.nonce.lower(),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Kind:
    """One advertised network: its CAIP-2 id and, when x402 v1 has a name for it, that name."""

    caip2: str
    v1_name: str | None


def parse_request(body: bytes) -> PaymentRequest:
    """Parse and shape-check a ``/verify`` or ``/settle`` body."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise NotJson("request body is not JSON") from err
    if type(doc) is not dict:
        raise Invalid(Reason.INVALID_PAYLOAD, "request body must be a JSON object")
    payload_raw = doc.get("paymentPayload")
    requirements_raw = doc.get("paymentRequirements")
    if type(payload_raw) is not dict:
        raise Invalid(Reason.INVALID_PAYLOAD, "paymentPayload must be an object")
    if type(requirements_raw) is not dict:
        raise Invalid(Reason.INVALID_PAYMENT_REQUIREMENTS, "paymentRequirements must be an object")
    version = _version(doc, payload_raw)
    payload_raw, requirements_raw = _checksummed(payload_raw), _checksummed(requirements_raw)
    network_raw = requirements_raw.get("network")
    network = network_raw if type(network_raw) is str else ""
    payload = _model(
        PaymentPayloadV1 if version == 1 else PaymentPayload, payload_raw, Reason.INVALID_PAYLOAD, network
    )
    requirements = _model(
        PaymentRequirementsV1 if version == 1 else PaymentRequirements,
        requirements_raw,
        Reason.INVALID_PAYMENT_REQUIREMENTS,
        network,
    )
    if requirements.scheme != SCHEME:
        raise Invalid(
            Reason.UNSUPPORTED_SCHEME, f"scheme {requirements.scheme!r} is not supported", network=network
        )
    auth = _authorization(payload_raw.get("payload"), network)
    payer = auth["from"]
    return PaymentRequest(
        version=version,
        payload=payload,
        requirements=requirements,
        network=network,
        payer=payer,
        nonce=auth["nonce"],
        body_key=_body_key(version, payload_raw, requirements_raw),
        value=int(auth["value"]),
        signature_bytes=(len(payload_raw["payload"]["signature"]) - 2) // 2,
    )


_ADDRESS_KEYS: Final = frozenset({"from", "to", "payTo", "asset"})


def _checksummed(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy with every address field (``from``, ``to``, ``payTo``, ``asset`` at any depth of the payment
    objects) in EIP-55 form. Addresses are case-insensitive data; clients such as x402-reqwest send lowercase
    hex, and web3 refuses anything but checksummed input, so they are normalized here, at the boundary."""

    def walk(value: Any, depth: int) -> Any:
        if depth > 8:
            return value
        if type(value) is dict:
            return {
                k: (
                    Web3.to_checksum_address(v)
                    if k in _ADDRESS_KEYS and type(v) is str and _ADDRESS.fullmatch(v)
                    else walk(v, depth + 1)
                )
                for k, v in value.items()
            }
        return value

    out: dict[str, Any] = walk(obj, 0)
    return out


def _version(doc: dict[str, Any], payload_raw: dict[str, Any]) -> int:
    """The protocol version is the payload's; a top-level ``x402Version`` must agree with it."""
    inner = payload_raw.get("x402Version")
    outer = doc.get("x402Version", inner)
    if type(inner) is not int or inner not in (1, 2):
        raise Invalid(Reason.INVALID_X402_VERSION, "paymentPayload.x402Version must be 1 or 2")
    if outer != inner:
        raise Invalid(Reason.INVALID_X402_VERSION, "x402Version differs from paymentPayload.x402Version")
    return inner


def _model(cls: Any, raw: dict[str, Any], reason: Reason, network: str) -> Any:
    try:
        return cls.model_validate(raw)
    except pydantic.ValidationError as err:
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in err.errors()})
        raise Invalid(reason, f"invalid fields: {', '.join(fields)[:200]}", network=network) from None


def _authorization(inner: Any, network: str) -> dict[str, str]:
    """The EIP-3009 ``{authorization, signature}`` object, shape-checked (values stay strings)."""
    if type(inner) is not dict:
        raise Invalid(Reason.INVALID_PAYLOAD, "paymentPayload.payload must be an object", network=network)
    if "permit2Authorization" in inner:
        raise Invalid(Reason.INVALID_PAYLOAD, "only EIP-3009 authorizations are supported", network=network)
    auth, signature = inner.get("authorization"), inner.get("signature")
    if type(auth) is not dict or any(type(auth.get(k)) is not str for k in _AUTH_FIELDS):
        raise Invalid(
            Reason.INVALID_PAYLOAD,
            "payload.authorization needs string fields " + ", ".join(_AUTH_FIELDS),
            network=network,
        )
    payer = auth.get("from") if _ADDRESS.fullmatch(auth["from"]) else None
    checks = (
        ("from", _ADDRESS),
        ("to", _ADDRESS),
        ("value", _UINT),
        ("validAfter", _UINT),
        ("validBefore", _UINT),
        ("nonce", _NONCE),
    )
    for name, pattern in checks:
        if not pattern.fullmatch(auth[name]):
            raise Invalid(
                Reason.INVALID_PAYLOAD,
                f"payload.authorization.{name} is malformed",
                network=network,
                payer=payer,
            )
    if type(signature) is not str or not _HEX.fullmatch(signature):
        raise Invalid(
            Reason.INVALID_PAYLOAD, "payload.signature must be 0x-prefixed hex", network=network, payer=payer
        )
    return {k: auth[k] for k in _AUTH_FIELDS}


def _body_key(version: int, payload: dict[str, Any], requirements: dict[str, Any]) -> str:
    try:
        canonical = orjson.dumps([version, payload, requirements], option=orjson.OPT_SORT_KEYS)
    except TypeError as err:  # not reachable from orjson.loads output; defensive for hand-built dicts
        raise Invalid(Reason.INVALID_PAYLOAD, "payload is not canonical JSON") from err
    return hashlib.sha256(canonical).hexdigest()


def supported(kinds: Iterable[Kind], *, signers: Iterable[str]) -> SupportedResponse:
    """``GET /supported``: v2 (CAIP-2) and, where named, v1 kinds of exactly the configured networks."""
    out: list[SupportedKind] = []
    for kind in kinds:
        if kind.v1_name is not None:
            out.append(SupportedKind(x402_version=1, scheme=SCHEME, network=kind.v1_name))
        out.append(SupportedKind(x402_version=2, scheme=SCHEME, network=kind.caip2))
    return SupportedResponse(
        kinds=out, extensions=[CLAIM_EXTENSION], signers={EVM_FAMILY: list(dict.fromkeys(signers))}
    )


def verify_failure(reason: str, message: str, *, payer: str | None = None) -> VerifyResponse:
    return VerifyResponse(is_valid=False, invalid_reason=reason, invalid_message=message, payer=payer)


def settle_failure(
    reason: str, message: str, *, network: str, payer: str | None = None, transaction: str = ""
) -> SettleResponse:
    return SettleResponse(
        success=False,
        error_reason=reason,
        error_message=message,
        network=network,
        payer=payer,
        transaction=transaction,
    )


def dump(model: pydantic.BaseModel) -> bytes:
    """camelCase JSON without null fields, as the reference facilitators answer."""
    return orjson.dumps(model.model_dump(mode="json", by_alias=True, exclude_none=True))
