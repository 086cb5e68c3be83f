"""Prices as exact decimals and amounts as integer atomic units.

Never a float: a price is the decimal string the seller wrote, an amount is an ``int`` of the
asset's smallest unit. SPEC section 8 fixes the arithmetic:

* ``perRequest`` converts exactly; more fractional digits than the asset has is an error.
* ``perMTok`` charges ``perMTok / 1000`` (1000 tokens per request) and ``perHour`` charges
  ``perHour * 5 / 60`` (five minutes of compute); both are rounded half-up to an atomic unit.
* ``perEpoch`` alone cannot be charged per request; a result of 0 is an error (never serve free).
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Final

__all__ = [
    "APPROX_TOKENS_PER_REQUEST",
    "Charge",
    "InvalidPriceError",
    "PriceModel",
    "format_atomic",
    "parse_price",
    "per_request_charge",
    "to_atomic",
]

PRICE_PATTERN: Final = re.compile(r"^(0|[1-9][0-9]{0,17})(\.[0-9]{1,18})?$")
APPROX_TOKENS_PER_REQUEST: Final = 1000
HOUR_FRACTION: Final = Fraction(5, 60)


class InvalidPriceError(ValueError):
    """No per-request charge can be derived from the declared price."""


class PriceModel(enum.StrEnum):
    PER_REQUEST = "perRequest"
    PER_MTOK = "perMTok"
    PER_HOUR = "perHour"
    PER_EPOCH = "perEpoch"


@dataclasses.dataclass(frozen=True, slots=True)
class Charge:
    """What one request costs."""

    model: PriceModel
    declared: Decimal
    """The declared rate, exactly as written."""
    amount: int
    """Atomic units per request (> 0)."""

    @property
    def amount_str(self) -> str:
        return str(self.amount)


def parse_price(text: object, *, field: str = "price") -> Decimal:
    """Parse a decimal price string (no sign, exponent or leading dot); reject anything else."""
    if not isinstance(text, str):
        raise InvalidPriceError(f"{field} must be a decimal string, got {type(text).__name__}")
    if not PRICE_PATTERN.fullmatch(text):
        raise InvalidPriceError(f"{field} {text!r} is not a non-negative decimal number")
    return Decimal(text)


def to_atomic(value: Decimal, *, decimals: int) -> int:
    """Exact conversion; raises InvalidPriceError if ``value`` has more than ``decimals`` places."""
    if value.is_nan() or value.is_infinite() or value < 0:
        raise InvalidPriceError(f"{value} is not a non-negative finite amount")
    exact = Fraction(value) * 10**decimals  # exact at any size: no working precision to run out of
    if exact.denominator != 1:
        raise InvalidPriceError(f"{value} has more than {decimals} decimal places")
    return int(exact.numerator)


def _round_half_up(value: Fraction) -> int:
    """Round an exact rational half-up (away from zero for the non-negative values used here)."""
    floor, rest = divmod(value.numerator, value.denominator)
    return floor + (1 if 2 * rest >= value.denominator else 0)


def format_atomic(amount: int, *, decimals: int) -> str:
    """Render atomic units as a plain decimal string (``1000`` at 6 decimals → ``0.001``)."""
    if amount < 0:
        raise ValueError("amount must be non-negative")
    if decimals <= 0:
        return str(amount * 10**-decimals)
    digits = str(amount).rjust(decimals + 1, "0")  # string slicing: exact for any size
    whole, frac = digits[:-decimals], digits[-decimals:].rstrip("0")
    return f"{whole}.{frac}" if frac else whole


def per_request_charge(price: Mapping[str, object], *, decimals: int) -> Charge:
    """The per-request charge of a ServiceOffer ``spec.payment.price`` (first present field wins)."""
    if not isinstance(price, Mapping):
        raise InvalidPriceError("price must be an object")

    def present(key: PriceModel) -> bool:
        value = price.get(key.value)
        return value is not None and value != ""

    if present(PriceModel.PER_REQUEST):
        declared = parse_price(price[PriceModel.PER_REQUEST.value], field="perRequest")
        try:
            amount = to_atomic(declared, decimals=decimals)
        except InvalidPriceError:
            raise InvalidPriceError(
                f"perRequest {price[PriceModel.PER_REQUEST.value]} has more than {decimals} decimal places"
            ) from None
        model = PriceModel.PER_REQUEST
    elif present(PriceModel.PER_MTOK):
        declared = parse_price(price[PriceModel.PER_MTOK.value], field="perMTok")
        amount = _round_half_up(Fraction(declared) * 10**decimals / APPROX_TOKENS_PER_REQUEST)
        model = PriceModel.PER_MTOK
    elif present(PriceModel.PER_HOUR):
        declared = parse_price(price[PriceModel.PER_HOUR.value], field="perHour")
        amount = _round_half_up(Fraction(declared) * 10**decimals * HOUR_FRACTION)
        model = PriceModel.PER_HOUR
    elif present(PriceModel.PER_EPOCH):
        parse_price(price[PriceModel.PER_EPOCH.value], field="perEpoch")
        raise InvalidPriceError("perEpoch pricing is not chargeable per request")
    else:
        raise InvalidPriceError("price declares none of perRequest, perMTok, perHour")
    if amount <= 0:
        raise InvalidPriceError(f"{model.value} {price[model.value]} rounds to 0 atomic units")
    return Charge(model=model, declared=declared, amount=amount)
