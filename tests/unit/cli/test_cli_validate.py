"""Flag checks of the seller CLI: the rule of kube402.api, the flag that carried the value, exit code 2."""

from __future__ import annotations

import argparse
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kube402.api import chains, money
from kube402.cli import sell_cmd
from kube402.cli import sell_validate as check
from kube402.cli.errors import EXIT_USAGE, UsageError
from kube402.cli.main import build_parser

W = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BASE_SEPOLIA = chains.lookup("base-sepolia")


def http_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["sell", "http", *argv])


@pytest.mark.parametrize("name", ["a", "demo", "flow-qwen", "a" * 63, "0x"])
def test_good_names(name: str) -> None:
    assert check.check_name(name) == name


@pytest.mark.parametrize("name", ["", "Demo", "-a", "a-", "a_b", "a.b", "a" * 64])
def test_bad_names_say_dns_1123(name: str) -> None:
    with pytest.raises(UsageError, match="DNS-1123 label") as err:
        check.check_name(name, flag="NAME")
    assert err.value.code == EXIT_USAGE


@pytest.mark.parametrize(
    "wallet", ["0x123", W + "0", "70997970C51812dc3A010C7d01b50e0d17dc79C8aa", "0x" + "g" * 40]
)
def test_bad_wallets(wallet: str) -> None:
    with pytest.raises(UsageError, match=r"--wallet .*0x followed by 40 hexadecimal digits"):
        check.check_wallet(wallet)


def test_chain_names_and_caip2() -> None:
    assert check.check_chain("base-sepolia").chain_id == 84532
    assert check.check_chain("eip155:8453").name == "base"
    with pytest.raises(UsageError, match="--chain 'solana': unknown chain"):
        check.check_chain("solana")


@given(st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(10**9), places=6))
def test_any_price_with_at_most_six_places_is_accepted_exactly(value: Decimal) -> None:
    text = format(value.normalize(), "f")
    assert check.check_price(text, chain=BASE_SEPOLIA) == text
    charge = money.per_request_charge({"perRequest": text}, decimals=6)
    assert Decimal(charge.amount) == value * 10**6


@given(st.integers(min_value=1, max_value=9), st.integers(min_value=0, max_value=10**6))
def test_seven_places_are_refused(last: int, whole: int) -> None:
    text = f"{whole}.{'0' * 6}{last}"
    with pytest.raises(UsageError, match="more than 6 decimal places"):
        check.check_price(text, chain=BASE_SEPOLIA)


@pytest.mark.parametrize("price", ["-1", "+1", "1e-3", ".5", "0", "0.0000000", "abc", " 1"])
def test_bad_prices_name_the_flag(price: str) -> None:
    with pytest.raises(UsageError, match=r"^--price '"):
        check.check_price(price, chain=BASE_SEPOLIA)


def test_derived_prices() -> None:
    assert check.check_price("0.5", model="perMTok", flag="--per-mtok", chain=BASE_SEPOLIA) == "0.5"
    with pytest.raises(UsageError, match=r"--per-mtok '0\.0000001': perMTok 0\.0000001 rounds to 0"):
        check.check_price("0.0000001", model="perMTok", flag="--per-mtok", chain=BASE_SEPOLIA)


def test_facilitator_url_rule() -> None:
    assert check.check_facilitator_url("http://127.0.0.1:4040/") == "http://127.0.0.1:4040"
    assert check.check_facilitator_url("https://facilitator.x402.rs") == "https://facilitator.x402.rs"
    for bad in ("http://example.com", "ftp://x", "https://u:p@h", "https://h/?q=1"):
        with pytest.raises(UsageError, match="--facilitator-url"):
            check.check_facilitator_url(bad)


def manifest(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "upstream": {"service": "ollama", "namespace": "", "port": 11434},
        "payment": {"network": "base-sepolia", "payTo": W, "price": {"perRequest": "0.001"}},
    }
    base.update(spec)
    return {
        "apiVersion": "obol.org/v1alpha1",
        "kind": "ServiceOffer",
        "metadata": {"name": "x", "namespace": "llm"},
        "spec": base,
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"upstream": {"service": "ollama", "namespace": "", "port": 0}},
            "--port: upstream.port 0 is outside 1..65535",
        ),
        (
            {"upstream": {"service": "Ollama", "namespace": "", "port": 1}},
            "--upstream: upstream.service 'Ollama'",
        ),
        ({"upstream": {"service": "o", "namespace": "", "port": 1, "healthPath": "h"}}, "--health-path"),
        ({"path": "/services//x"}, "--path: path '/services//x' must not contain //"),
        ({"path": "/skill.md"}, "--path: path '/skill.md' is reserved"),
        ({"gateMode": "tunnel"}, "--gate-mode: gateMode 'tunnel'"),
        (
            {"payment": {"network": "base-sepolia", "payTo": W, "price": {"perEpoch": "1"}}},
            "perEpoch pricing is not chargeable",
        ),
        ({"payment": {"network": "base-sepolia", "payTo": W, "price": {}}}, "a price is required"),
        (
            {"payment": {"network": "base-sepolia", "payTo": W, "price": {"perRequest": 0.001}}},
            "must be a decimal string",
        ),
        ({"payment": {"network": "mars", "payTo": W, "price": {"perRequest": "1"}}}, "--chain 'mars'"),
        (
            {"payment": {"network": "base", "payTo": "0x1", "price": {"perRequest": "1"}}},
            "--wallet: payment.payTo '0x1'",
        ),
    ],
)
def test_check_offer_names_the_flag(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as err:
        check.check_offer(manifest(**spec))
    assert message in str(err.value)


def test_check_offer_accepts_the_seed_offer() -> None:
    check.check_offer(manifest())


def test_build_offer_flags_defaults_and_from_json(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("X402_WALLET", raising=False)
    offer = sell_cmd.build_offer(
        http_args("demo", "-n", "llm", "--upstream", "ollama", "--wallet", W, "--price", "0.001")
    )
    assert offer["spec"]["upstream"] == {"service": "ollama", "namespace": "", "port": 8080}
    assert offer["spec"]["payment"] == {
        "network": "base-sepolia",
        "payTo": W,
        "price": {"perRequest": "0.001"},
    }
    assert offer["spec"]["type"] == "http"

    monkeypatch.setenv("X402_WALLET", W)
    full = tmp_path / "offer.yaml"
    full.write_text(
        "apiVersion: obol.org/v1alpha1\nkind: ServiceOffer\nmetadata: {name: from-file, namespace: ai}\n"
        "spec:\n  upstream: {service: vllm, namespace: '', port: 8000}\n"
        "  payment: {network: base, payTo: '" + W + "', price: {perMTok: '0.5'}}\n"
    )
    offer = sell_cmd.build_offer(http_args("--from-json", str(full), "--port", "9000"))
    assert offer["metadata"] == {"name": "from-file", "namespace": "ai"}
    assert offer["spec"]["upstream"]["port"] == 9000, "a flag overrides the file"
    assert (
        offer["spec"]["payment"]["price"] == {"perMTok": "0.5"}
        and offer["spec"]["payment"]["network"] == "base"
    )


def test_missing_wallet_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("X402_WALLET", raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(UsageError, match="--wallet is required"):
        sell_cmd.build_offer(http_args("demo", "--upstream", "ollama", "--price", "0.001"))
