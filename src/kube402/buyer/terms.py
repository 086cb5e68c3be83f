"""A seller's payment terms, read from its 402 (SPEC §9: v2 ``PAYMENT-REQUIRED`` first, v1 body second).

Pure: bytes and header values in, typed :class:`Requirement` values out. Amounts stay integer atomic units;
networks are normalized to CAIP-2 where kube402 knows the chain (``base-sepolia`` → ``eip155:84532``) so a v1
and a v2 answer for the same terms compare equal.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from kube402.api import chains
from kube402.x402 import headers

__all__ = [
    "MAX_REQUIRED_BYTES",
    "PaymentRequired",
    "Requirement",
    "TermsError",
    "normalize_address",
    "normalize_network",
    "parse_402",
]

MAX_REQUIRED_BYTES: Final = 65536
"""Largest 402 header or body the buyer decodes."""
_ADDRESS: Final = re.compile(r"0x[0-9a-fA-F]{40}")
_DIGITS: Final = re.compile(r"[0-9]{1,78}")


class TermsError(ValueError):
    """The 402 carries no usable requirement."""


def normalize_network(network: str) -> str:
    """CAIP-2 for a known chain (v1 name, alias or CAIP-2); otherwise the trimmed lower-case text."""
    try:
        return chains.lookup(network).caip2
    except chains.UnknownNetworkError:
        return network.strip().lower()


def normalize_address(address: str) -> str:
    return address.strip().lower()


@dataclasses.dataclass(frozen=True, slots=True)
class Requirement:
    """One ``accepts`` entry: what the seller asks for one request."""

    version: int
    scheme: str
    network: str
    """As received (v1 name or CAIP-2)."""
    pay_to: str
    asset: str
    amount: int
    max_timeout_seconds: int
    extra: Mapping[str, Any]
    raw: Mapping[str, Any]
    """The entry exactly as received (echoed as ``accepted`` in a v2 payment)."""

    @property
    def caip2(self) -> str:
        return normalize_network(self.network)


@dataclasses.dataclass(frozen=True, slots=True)
class PaymentRequired:
    version: int
    accepts: tuple[Requirement, ...]
    resource: Mapping[str, Any] | None
    """v2 top-level ``resource`` (v1: the first requirement's ``resource`` URL as ``{"url": …}``)."""
    error: str
    extensions: Mapping[str, Any] | None
    skipped: tuple[str, ...] = ()
    """Why entries were not understood (unknown scheme, malformed fields)."""


def _requirement(entry: object, version: int) -> Requirement:
    if not isinstance(entry, dict):
        raise TermsError("accepts entry is not an object")
    amount_key = (
        "amount" if version >= 2 else ("maxAmountRequired" if "maxAmountRequired" in entry else "amount")
    )
    amount = entry.get(amount_key)
    if not isinstance(amount, str) or not _DIGITS.fullmatch(amount):
        raise TermsError(f"{amount_key} is not a decimal string of atomic units")
    for key in ("payTo", "asset"):
        value = entry.get(key)
        if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
            raise TermsError(f"{key} is not an address")
    network, scheme = entry.get("network"), entry.get("scheme")
    if not isinstance(network, str) or not network:
        raise TermsError("network missing")
    if not isinstance(scheme, str):
        raise TermsError("scheme missing")
    timeout = entry.get("maxTimeoutSeconds", 0)
    if isinstance(timeout, bool) or not isinstance(timeout, int):
        raise TermsError("maxTimeoutSeconds is not an integer")
    extra = entry.get("extra") or {}
    if not isinstance(extra, dict):
        raise TermsError("extra is not an object")
    return Requirement(
        version=version,
        scheme=scheme,
        network=network,
        pay_to=entry["payTo"],
        asset=entry["asset"],
        amount=int(amount),
        max_timeout_seconds=timeout,
        extra=extra,
        raw=entry,
    )


def _from_object(obj: object, *, source: str) -> PaymentRequired:
    if not isinstance(obj, dict):
        raise TermsError(f"{source} is not a JSON object")
    version = obj.get("x402Version")
    if version not in (1, 2):
        raise TermsError(f"{source} has x402Version {version!r}")
    accepts = obj.get("accepts")
    if not isinstance(accepts, list) or not accepts:
        raise TermsError(f"{source} has no accepts")
    parsed: list[Requirement] = []
    skipped: list[str] = []
    for entry in accepts:
        try:
            parsed.append(_requirement(entry, version))
        except TermsError as err:
            skipped.append(str(err))
    if not parsed:
        raise TermsError(f"{source}: no usable accepts entry ({'; '.join(skipped)})")
    resource = obj.get("resource")
    if version == 1:
        url = parsed[0].raw.get("resource")
        resource = {"url": url} if isinstance(url, str) else None
    elif not isinstance(resource, dict):
        resource = None
    error = obj.get("error")
    extensions = obj.get("extensions")
    return PaymentRequired(
        version=version,
        accepts=tuple(parsed),
        resource=resource,
        error=error if isinstance(error, str) else "",
        extensions=extensions if isinstance(extensions, dict) else None,
        skipped=tuple(skipped),
    )


def parse_402(header: Callable[[str], str | None], body: bytes) -> PaymentRequired:
    """The seller's terms: the v2 ``PAYMENT-REQUIRED`` header if it decodes, else the v1 JSON body."""
    problems: list[str] = []
    value = header(headers.PAYMENT_REQUIRED.lower())
    if value:
        try:
            return _from_object(
                headers.decode_b64_json(value, max_bytes=MAX_REQUIRED_BYTES), source="PAYMENT-REQUIRED"
            )
        except (headers.PaymentHeaderError, TermsError) as err:
            problems.append(str(err))
    if body and len(body) <= MAX_REQUIRED_BYTES:
        try:
            return _from_object(json.loads(body), source="402 body")
        except (ValueError, TermsError) as err:
            problems.append(str(err))
    raise TermsError("; ".join(problems) or "402 without PAYMENT-REQUIRED header or JSON body")


def error_code(body: bytes) -> str:
    """The ``error`` of a JSON 402 body ('' if none), e.g. ``nonce_already_used``."""
    try:
        obj = json.loads(body) if body and len(body) <= MAX_REQUIRED_BYTES else None
    except ValueError:
        return ""
    err = obj.get("error") if isinstance(obj, dict) else None
    return err if isinstance(err, str) else ""
