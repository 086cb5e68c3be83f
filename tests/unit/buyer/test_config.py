from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kube402.api import money
from kube402.buyer import config, market
from tests.support.buyer_env import SELLER, USDC, voucher


def cfg(**over: object) -> str:
    up: dict[str, object] = {
        "url": "http://seller/services/q/",
        "remoteModel": "qwen3:0.6b",
        "network": "base-sepolia",
        "payTo": SELLER,
        "asset": USDC,
        "price": "1000",
    }
    up.update(over)
    return json.dumps({"upstreams": {"q": up}})


def auths(*vs: object) -> str:
    return json.dumps({"q": [v.to_json() if hasattr(v, "to_json") else v for v in vs]})


@pytest.mark.parametrize(
    ("model", "want"),
    [("paid/x", "x"), ("openai/x", "x"), ("paid/openai/paid/x", "x"), ("x", "x"), ("org/x", "org/x")],
)
def test_strip_model(model: str, want: str) -> None:
    assert config.strip_model(model) == want


def test_parse_routes_by_remote_model_and_normalizes() -> None:
    c = config.parse(cfg(), auths(voucher(1), voucher(2)))
    up = c.by_model("paid/qwen3:0.6b")
    assert up is not None and up.url == "http://seller/services/q" and up.network == "eip155:84532"
    assert c.by_model("paid/other") is None
    assert len(c.vouchers["q"]) == 2 and not c.warnings


def test_vouchers_for_other_terms_are_dropped_with_a_warning() -> None:
    c = config.parse(cfg(), auths(voucher(1), voucher(2, value=2000), voucher(3, to="0x" + "ab" * 20)))
    assert [v.nonce for v in c.vouchers["q"]] == [voucher(1).nonce]
    assert any("2 voucher(s) dropped" in w for w in c.warnings)


@pytest.mark.parametrize(
    "over",
    [
        {"url": "ftp://x"},
        {"remoteModel": "paid/x"},
        {"payTo": "0x1"},
        {"price": "0"},
        {"price": "0.001"},
        {"network": ""},
    ],
)
def test_a_bad_upstream_is_skipped_not_fatal(over: dict[str, object]) -> None:
    c = config.parse(cfg(**over), auths(voucher(1)))
    assert c.upstreams == {} and c.warnings


def test_unusable_files_raise() -> None:
    with pytest.raises(config.ConfigError):
        config.parse("[1, 2]", "")
    with pytest.raises(config.ConfigError):
        config.parse(cfg(), "{not: [valid")
    assert config.parse("", "").upstreams == {}


def test_merge_appends_for_same_terms_and_replaces_for_new_terms() -> None:
    up = json.loads(cfg())["upstreams"]["q"]
    c, a = market.merge({}, {}, "q", up, [voucher(1)])
    c, a = market.merge(c, a, "q", up, [voucher(2)])
    assert len(a["q"]) == 2
    c, a = market.merge(c, a, "q", {**up, "price": "2000"}, [voucher(3, value=2000)])
    assert [v["nonce"] for v in a["q"]] == [voucher(3).nonce]


@given(st.integers(min_value=0, max_value=18), st.data())
def test_usdc_text_and_atomic_units_round_trip_exactly(decimals: int, data: st.DataObject) -> None:
    amount = data.draw(st.integers(min_value=0, max_value=10 ** (18 + decimals) - 1))
    text = money.format_atomic(amount, decimals=decimals)
    assert market.budget_atomic(text, decimals=decimals) == amount
    assert Fraction(Decimal(text)) * 10**decimals == amount


@given(st.integers(min_value=1, max_value=10**12), st.integers(min_value=1, max_value=100_000))
def test_budget_check_is_exact_at_the_boundary(price: int, count: int) -> None:
    cost = price * count
    exact = market.budget_atomic(money.format_atomic(cost, decimals=6), decimals=6)
    assert exact == cost
    assert market.budget_atomic(money.format_atomic(cost - 1, decimals=6), decimals=6) < cost


def test_budget_with_too_many_decimals_is_refused() -> None:
    with pytest.raises(market.MarketError, match="--budget"):
        market.budget_atomic("0.0000001", decimals=6)


@pytest.mark.parametrize(("text", "seconds"), [("3600", 3600), ("90m", 5400), ("12h", 43200), ("7d", 604800)])
def test_validity(text: str, seconds: int) -> None:
    assert market.parse_validity(text) == seconds


@pytest.mark.parametrize("text", ["", "7w", "-1d", "31d", "10s", "1.5d"])
def test_bad_validity(text: str) -> None:
    with pytest.raises(market.MarketError, match="--validity"):
        market.parse_validity(text)
