"""Prices → atomic units (SPEC 8): exact decimal arithmetic, the CRD price pattern, half-up rounding.

The expected values are computed independently with ``fractions.Fraction`` so that a wrong rounding mode,
a float sneaking in, or a lost digit shows up as a counter-example.
"""

from __future__ import annotations

import ast
import math
import re
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kube402.api import money

REPO = Path(__file__).resolve().parents[3]
MONEY_SOURCE = REPO / "src" / "kube402" / "api" / "money.py"
CRD = REPO / "deploy" / "crds" / "serviceoffers.obol.org.yaml"

# The CRD pattern (SPEC 2.2), written out here rather than imported, and matched in full.
CRD_PRICE = r"(0|[1-9][0-9]{0,17})(\.[0-9]{1,18})?"

PROPERTY = settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])

valid_prices = st.from_regex(rf"\A{CRD_PRICE}\Z", fullmatch=True)
decimals = st.integers(min_value=0, max_value=18)


def round_half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def near_misses() -> st.SearchStrategy[str]:
    """Valid prices with one edit that the pattern should (mostly) reject."""
    edits = st.sampled_from(
        ["\n", " ", "+", "-", "e3", "E-2", ".", "0", "1", "_", "\t", "٣", "x", ".5", "00"]
    )
    return st.builds(lambda p, e, front: e + p if front else p + e, valid_prices, edits, st.booleans())


# -- parse_price: exactly the CRD pattern ------------------------------------------------------------------


class TestParsePriceAcceptsExactlyTheCrdPattern:
    def test_the_crd_declares_the_same_pattern_for_every_price_field(self) -> None:
        crd = yaml.safe_load(CRD.read_text())
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        price = schema["properties"]["spec"]["properties"]["payment"]["properties"]["price"]
        patterns = {name: prop["pattern"] for name, prop in price["properties"].items()}
        assert set(patterns) == {"perRequest", "perMTok", "perHour", "perEpoch"}
        assert set(patterns.values()) == {f"^{CRD_PRICE}$"}

    @PROPERTY
    @given(text=valid_prices)
    def test_every_string_of_the_pattern_parses_to_its_exact_decimal(self, text: str) -> None:
        value = money.parse_price(text)
        assert isinstance(value, Decimal)
        assert Fraction(value) == Fraction(text)

    @PROPERTY
    @given(text=st.one_of(st.text(max_size=40), near_misses()))
    @example("1\n")
    @example("0.001\n")
    @example("1e3")
    @example("-1")
    @example("+1")
    @example(".5")
    @example("01")
    @example("1.")
    @example(" 1")
    @example("NaN")
    @example("Infinity")
    @example("1" * 19)
    @example("0." + "1" * 19)
    @example("١")  # noqa: RUF001 - Arabic-Indic digit one: Decimal accepts it, the pattern does not
    def test_any_text_is_accepted_iff_it_fully_matches_the_pattern(self, text: str) -> None:
        if re.fullmatch(CRD_PRICE, text):
            assert Fraction(money.parse_price(text)) == Fraction(text)
        else:
            with pytest.raises(money.InvalidPriceError):
                money.parse_price(text)

    @pytest.mark.parametrize("text", ["1\n", "0.001\n"], ids=["1+newline", "0.001+newline"])
    def test_a_trailing_newline_is_rejected(self, text: str) -> None:
        with pytest.raises(money.InvalidPriceError):
            money.parse_price(text)

    @pytest.mark.parametrize("value", [0.001, 1, None, Decimal("0.001"), b"0.001", ["0.001"]], ids=repr)
    def test_non_strings_are_rejected_even_when_numeric(self, value: object) -> None:
        with pytest.raises(money.InvalidPriceError, match="must be a decimal string"):
            money.parse_price(value, field="perRequest")


# -- to_atomic / format_atomic ------------------------------------------------------------------------------


class TestAtomicRoundTrip:
    @PROPERTY
    @given(amount=st.integers(min_value=0, max_value=2**256), decimals=decimals)
    @example(amount=2**256 - 1, decimals=18)
    @example(amount=0, decimals=0)
    @example(amount=0, decimals=18)
    def test_format_then_to_atomic_returns_the_same_integer(self, amount: int, decimals: int) -> None:
        text = money.format_atomic(amount, decimals=decimals)
        assert Fraction(text) == Fraction(amount, 10**decimals)
        assert money.to_atomic(Decimal(text), decimals=decimals) == amount

    @pytest.mark.parametrize("amount", [10**130 + 1, 2**512 + 7], ids=["10**130+1", "2**512+7"])
    def test_amounts_wider_than_any_working_precision_still_round_trip(self, amount: int) -> None:
        text = money.format_atomic(amount, decimals=6)
        assert Fraction(text) == Fraction(amount, 10**6)
        assert money.to_atomic(Decimal(text), decimals=6) == amount

    @PROPERTY
    @given(amount=st.integers(min_value=0, max_value=2**256), decimals=decimals)
    def test_formatted_amounts_are_plain_canonical_decimals(self, amount: int, decimals: int) -> None:
        text = money.format_atomic(amount, decimals=decimals)
        assert re.fullmatch(r"(0|[1-9][0-9]*)(\.[0-9]*[1-9])?", text), text

    @PROPERTY
    @given(text=valid_prices, decimals=decimals)
    def test_to_atomic_is_exact_or_refuses(self, text: str, decimals: int) -> None:
        scaled = Fraction(text) * 10**decimals
        if scaled.denominator != 1:
            with pytest.raises(money.InvalidPriceError, match=f"more than {decimals} decimal places"):
                money.to_atomic(Decimal(text), decimals=decimals)
        else:
            amount = money.to_atomic(Decimal(text), decimals=decimals)
            assert type(amount) is int
            assert amount == scaled
            assert Fraction(money.format_atomic(amount, decimals=decimals)) == Fraction(text)

    @pytest.mark.parametrize("value", ["-1", "NaN", "Infinity", "-0.5"])
    def test_to_atomic_rejects_negative_and_non_finite_values(self, value: str) -> None:
        with pytest.raises(money.InvalidPriceError):
            money.to_atomic(Decimal(value), decimals=6)

    def test_format_atomic_rejects_negative_amounts(self) -> None:
        with pytest.raises(ValueError):
            money.format_atomic(-1, decimals=6)

    @pytest.mark.parametrize(
        ("amount", "decimals", "text"),
        [
            (1000, 6, "0.001"),
            (1, 6, "0.000001"),
            (1_000_000, 6, "1"),
            (0, 6, "0"),
            (1230, 0, "1230"),
            (10**18, 18, "1"),
            (1, 18, "0.000000000000000001"),
            (249, 6, "0.000249"),
        ],
    )
    def test_format_atomic_examples(self, amount: int, decimals: int, text: str) -> None:
        assert money.format_atomic(amount, decimals=decimals) == text


# -- per_request_charge -------------------------------------------------------------------------------------


class TestPerRequestIsExact:
    @PROPERTY
    @given(text=valid_prices, decimals=decimals)
    def test_per_request_charges_the_value_itself_or_refuses(self, text: str, decimals: int) -> None:
        scaled = Fraction(text) * 10**decimals
        if scaled.denominator != 1:
            with pytest.raises(
                money.InvalidPriceError,
                match=re.escape(f"perRequest {text} has more than {decimals} decimal"),
            ):
                money.per_request_charge({"perRequest": text}, decimals=decimals)
        elif scaled == 0:
            with pytest.raises(money.InvalidPriceError, match="rounds to 0 atomic units"):
                money.per_request_charge({"perRequest": text}, decimals=decimals)
        else:
            charge = money.per_request_charge({"perRequest": text}, decimals=decimals)
            assert charge.model is money.PriceModel.PER_REQUEST
            assert type(charge.amount) is int
            assert Fraction(charge.amount, 10**decimals) == Fraction(text)
            assert charge.declared == Decimal(text)
            assert charge.amount_str == str(charge.amount)


class TestDerivedPricesRoundHalfUp:
    @PROPERTY
    @given(text=valid_prices, decimals=decimals)
    def test_per_mtok_charges_a_thousandth_rounded_half_up(self, text: str, decimals: int) -> None:
        expected = round_half_up(Fraction(text) / 1000 * 10**decimals)
        if expected == 0:
            with pytest.raises(money.InvalidPriceError, match=re.escape(f"perMTok {text} rounds to 0")):
                money.per_request_charge({"perMTok": text}, decimals=decimals)
        else:
            charge = money.per_request_charge({"perMTok": text}, decimals=decimals)
            assert (charge.model, charge.amount) == (money.PriceModel.PER_MTOK, expected)

    @PROPERTY
    @given(text=valid_prices, decimals=decimals)
    def test_per_hour_charges_five_minutes_rounded_half_up(self, text: str, decimals: int) -> None:
        expected = round_half_up(Fraction(text) * 5 / 60 * 10**decimals)
        if expected == 0:
            with pytest.raises(money.InvalidPriceError, match=re.escape(f"perHour {text} rounds to 0")):
                money.per_request_charge({"perHour": text}, decimals=decimals)
        else:
            charge = money.per_request_charge({"perHour": text}, decimals=decimals)
            assert (charge.model, charge.amount) == (money.PriceModel.PER_HOUR, expected)

    @pytest.mark.parametrize(
        ("price", "amount"),
        [
            pytest.param({"perMTok": "0.0005"}, 1, id="perMTok exactly half rounds up"),
            pytest.param({"perMTok": "0.000499"}, 0, id="perMTok just below half rounds down to nothing"),
            pytest.param({"perMTok": "0.0025"}, 3, id="perMTok 2.5 rounds up, not to even"),
            pytest.param({"perHour": "0.000006"}, 1, id="perHour 0.5 rounds up"),
        ],
    )
    def test_ties_round_up_never_to_even(self, price: dict[str, str], amount: int) -> None:
        if amount == 0:
            with pytest.raises(money.InvalidPriceError):
                money.per_request_charge(price, decimals=6)
        else:
            assert money.per_request_charge(price, decimals=6).amount == amount


class TestWhichFieldIsCharged:
    fields = ("perRequest", "perMTok", "perHour")

    @PROPERTY
    @given(
        present=st.lists(
            st.sampled_from(["perRequest", "perMTok", "perHour", "perEpoch"]), min_size=1, unique=True
        ),
        value=st.sampled_from(["1", "2.5", "1000", "0.12"]),
    )
    def test_the_first_present_field_wins(self, present: list[str], value: str) -> None:
        price = dict.fromkeys(present, value)
        chargeable = [f for f in self.fields if f in price]
        if not chargeable:
            with pytest.raises(
                money.InvalidPriceError, match="perEpoch pricing is not chargeable per request"
            ):
                money.per_request_charge(price, decimals=6)
            return
        charge = money.per_request_charge(price, decimals=6)
        assert charge.model == chargeable[0]

    def test_per_epoch_alone_is_not_chargeable(self) -> None:
        with pytest.raises(money.InvalidPriceError, match="perEpoch pricing is not chargeable per request"):
            money.per_request_charge({"perEpoch": "10"}, decimals=6)

    def test_a_price_without_any_field_is_invalid(self) -> None:
        with pytest.raises(money.InvalidPriceError):
            money.per_request_charge({}, decimals=6)

    def test_a_price_that_is_not_an_object_is_invalid(self) -> None:
        with pytest.raises(money.InvalidPriceError):
            money.per_request_charge("0.001", decimals=6)  # type: ignore[arg-type]

    def test_an_invalid_first_field_is_not_skipped_in_favour_of_a_later_one(self) -> None:
        with pytest.raises(money.InvalidPriceError):
            money.per_request_charge({"perRequest": "1e-3", "perMTok": "1"}, decimals=6)

    @pytest.mark.parametrize("field", ["perRequest", "perMTok", "perHour"])
    @pytest.mark.parametrize("zero", ["0", "0.0", "0.000000"])
    def test_zero_is_never_served_free(self, field: str, zero: str) -> None:
        with pytest.raises(money.InvalidPriceError, match="rounds to 0 atomic units"):
            money.per_request_charge({field: zero}, decimals=6)


@pytest.mark.parametrize(
    ("price", "amount"),
    [
        pytest.param({"perRequest": "0.001"}, 1000, id="perRequest 0.001"),
        pytest.param({"perRequest": "0.000249"}, 249, id="perRequest 0.000249 (float gave 248)"),
        pytest.param({"perMTok": "0.5"}, 500, id="perMTok 0.5"),
        pytest.param({"perMTok": "0.0015"}, 2, id="perMTok 0.0015 rounds 1.5 up"),
        pytest.param({"perHour": "0.12"}, 10000, id="perHour 0.12"),
        pytest.param({"perHour": "1"}, 83333, id="perHour 1"),
    ],
)
def test_spec_section_8_examples(price: dict[str, str], amount: int) -> None:
    charge = money.per_request_charge(price, decimals=6)
    assert charge.amount == amount
    assert charge.amount_str == str(amount)


def test_spec_section_8_sub_atomic_per_request_is_invalid() -> None:
    with pytest.raises(
        money.InvalidPriceError, match=r"perRequest 0\.0000001 has more than 6 decimal places"
    ):
        money.per_request_charge({"perRequest": "0.0000001"}, decimals=6)


def test_the_money_module_contains_no_float() -> None:
    tree = ast.parse(MONEY_SOURCE.read_text())
    floats = [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if (isinstance(node, ast.Constant) and isinstance(node.value, float))
        or (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "float")
        or (isinstance(node, ast.Name) and node.id == "float")
        or (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Div)
            and not any(
                isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Fraction" for n in ast.walk(node)
            )
        )
    ]
    assert floats == []
