"""Pre-signed EIP-3009 vouchers: the model, exact matching against a seller's requirement, payment payloads.

Pure. A voucher can pay a requirement iff the upstream's configured terms and the requirement agree on
network (v1 name or CAIP-2, normalized), payTo and asset (case-insensitive) and amount, the voucher itself is
for that payTo and value, and it is inside its window with a margin (``validBefore > now + 10 s``). Anything
else is a :class:`Mismatch` naming every differing field: a voucher signed for other terms is never sent.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from kube402.buyer.terms import PaymentRequired, Requirement, normalize_address, normalize_network
from kube402.x402 import headers

__all__ = [
    "EXPIRY_MARGIN_SECONDS",
    "Mismatch",
    "Terms",
    "Voucher",
    "VoucherError",
    "choose_requirement",
    "payment_header",
    "usable",
]

EXPIRY_MARGIN_SECONDS: Final = 10
_ADDRESS: Final = re.compile(r"0x[0-9a-fA-F]{40}")
_NONCE: Final = re.compile(r"0x[0-9a-fA-F]{64}")
_SIGNATURE: Final = re.compile(r"0x(?:[0-9a-fA-F]{2})+")
_DIGITS: Final = re.compile(r"[0-9]{1,78}")


class VoucherError(ValueError):
    """A voucher entry of ``x402-buyer-auths`` is malformed."""


def _uint(entry: Mapping[str, Any], key: str) -> int:
    value = entry.get(key)
    if isinstance(value, bool):
        raise VoucherError(f"{key} must be a decimal string")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    raise VoucherError(f"{key} must be a decimal string")


def _match(entry: Mapping[str, Any], key: str, pattern: re.Pattern[str]) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise VoucherError(f"{key} is malformed")
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class Voucher:
    """One pre-signed ``TransferWithAuthorization``: worth exactly one request at its seller's price."""

    signature: str
    from_: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: str
    """``0x`` + 64 lower-case hex: the voucher's identity in the consumed set."""

    @classmethod
    def parse(cls, entry: object) -> Voucher:
        if not isinstance(entry, Mapping):
            raise VoucherError("voucher is not an object")
        return cls(
            signature=_match(entry, "signature", _SIGNATURE),
            from_=_match(entry, "from", _ADDRESS),
            to=_match(entry, "to", _ADDRESS),
            value=_uint(entry, "value"),
            valid_after=_uint(entry, "validAfter"),
            valid_before=_uint(entry, "validBefore"),
            nonce=_match(entry, "nonce", _NONCE).lower(),
        )

    def to_json(self) -> dict[str, str]:
        """The ConfigMap shape (SPEC §9) and the ``payload.authorization`` + signature of a payment."""
        return {
            "signature": self.signature,
            "from": self.from_,
            "to": self.to,
            "value": str(self.value),
            "validAfter": str(self.valid_after),
            "validBefore": str(self.valid_before),
            "nonce": self.nonce,
        }

    def authorization(self) -> dict[str, str]:
        out = self.to_json()
        del out["signature"]
        return out

    def expired(self, now: float) -> bool:
        return self.valid_before <= now + EXPIRY_MARGIN_SECONDS

    def not_yet_valid(self, now: float) -> bool:
        return self.valid_after > now


def usable(v: Voucher, now: float) -> bool:
    return not v.expired(now) and not v.not_yet_valid(now)


@dataclasses.dataclass(frozen=True, slots=True)
class Terms:
    """What an upstream's vouchers were signed for (``x402-buyer-config``)."""

    network: str
    pay_to: str
    asset: str
    price: int

    def differences(self, req: Requirement) -> list[str]:
        """Human-readable field differences between these terms and a seller's requirement ([] = match)."""
        out: list[str] = []
        if req.scheme != headers.SCHEME_EXACT:
            out.append(f"scheme {req.scheme!r} (vouchers are EIP-3009 'exact')")
        if normalize_network(req.network) != normalize_network(self.network):
            out.append(f"network {req.network} (vouchers are for {self.network})")
        if normalize_address(req.pay_to) != normalize_address(self.pay_to):
            out.append(f"payTo {req.pay_to} (vouchers pay {self.pay_to})")
        if normalize_address(req.asset) != normalize_address(self.asset):
            out.append(f"asset {req.asset} (vouchers are for {self.asset})")
        if req.amount != self.price:
            out.append(f"amount {req.amount} (vouchers are worth {self.price})")
        return out

    def fits(self, v: Voucher) -> bool:
        """The voucher itself pays these terms (recipient and value)."""
        return normalize_address(v.to) == normalize_address(self.pay_to) and v.value == self.price


@dataclasses.dataclass(frozen=True, slots=True)
class Mismatch:
    """No requirement of the 402 matches the upstream's voucher terms."""

    differences: tuple[str, ...]

    @property
    def message(self) -> str:
        return "the seller asks for " + "; ".join(self.differences)


def choose_requirement(required: PaymentRequired, terms: Terms) -> Requirement | Mismatch:
    """The first requirement the vouchers can pay, else the mismatch of the closest one."""
    best: list[str] | None = None
    for req in required.accepts:
        diff = terms.differences(req)
        if not diff:
            return req
        if best is None or len(diff) < len(best):
            best = diff
    return Mismatch(tuple(best or ("no requirement",)))


def payment_header(required: PaymentRequired, req: Requirement, voucher: Voucher) -> tuple[str, str]:
    """(header name, base64 value) of the payment built from ``voucher`` for ``req``.

    v2: ``PAYMENT-SIGNATURE`` with ``accepted`` = the requirement as received, the 402's ``resource`` and
    ``extensions`` echoed. v1: ``X-PAYMENT`` ``{x402Version: 1, scheme, network, payload}``.
    """
    payload = {"signature": voucher.signature, "authorization": voucher.authorization()}
    if req.version >= 2:
        body: dict[str, Any] = {"x402Version": 2}
        if required.resource is not None:
            body["resource"] = dict(required.resource)
        body["accepted"] = dict(req.raw)
        body["payload"] = payload
        if required.extensions:
            body["extensions"] = dict(required.extensions)
        return headers.PAYMENT_SIGNATURE, headers.encode_b64_json(body)
    body = {"x402Version": 1, "scheme": req.scheme, "network": req.network, "payload": payload}
    return headers.X_PAYMENT, headers.encode_b64_json(body)


def parse_pool(entries: object) -> tuple[list[Voucher], list[str]]:
    """Vouchers of one upstream and the problems of the entries that were skipped (duplicates included)."""
    if not isinstance(entries, Sequence) or isinstance(entries, (str, bytes)):
        return [], ["voucher list is not a list"]
    out: list[Voucher] = []
    seen: set[str] = set()
    problems: list[str] = []
    for i, entry in enumerate(entries):
        try:
            v = Voucher.parse(entry)
        except VoucherError as err:
            problems.append(f"voucher {i}: {err}")
            continue
        if v.nonce in seen:
            problems.append(f"voucher {i}: duplicate nonce")
            continue
        seen.add(v.nonce)
        out.append(v)
    return out, problems
