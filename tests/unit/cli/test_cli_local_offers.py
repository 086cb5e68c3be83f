"""``sell local``: offers (flags or file) → the verifier's own pricing.yaml, with exact per-request prices."""

from __future__ import annotations

import pytest

from kube402.cli import sell_local
from kube402.cli.errors import UsageError
from kube402.verifier import config as verifier_config
from kube402.verifier import offers as verifier_offers

W = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
FILE = f"""
wallet: "{W}"
facilitatorURL: http://127.0.0.1:4040
offers:
  - name: chat
    upstream: http://127.0.0.1:11434/
    price: "0.001"
  - name: tools
    upstream: https://tools.internal:8443
    perMTok: "2"
    path: /tools/
    chain: base
  - name: gpu
    upstream: http://127.0.0.1:9000
    perHour: "0.12"
    maxTimeoutSeconds: 600
"""


def test_offers_file_becomes_static_proxy_routes_with_exact_prices() -> None:
    cfg = sell_local.load_offers(FILE, where="offers.yaml", wallet=None, chain=None, facilitator=None)
    parsed, warnings = verifier_config.parse(sell_local.pricing_text(cfg), env={})
    assert warnings == []
    assert parsed.facilitator_url == "http://127.0.0.1:4040" and parsed.unmatched == "deny"
    routes = {r.offer_name: verifier_offers.static_route(r) for r in parsed.routes}
    assert {n: r.pattern for n, r in routes.items()} == {
        "chat": "/services/chat/*",
        "tools": "/tools/*",
        "gpu": "/services/gpu/*",
    }
    amounts = {n: r.priced.requirements[0].amount for n, r in routes.items()}
    assert amounts == {"chat": 1000, "tools": 2000, "gpu": 10000}
    assert all(r.mode == "proxy" for r in routes.values())
    assert routes["chat"].upstream == {"url": "http://127.0.0.1:11434"}
    assert routes["tools"].priced.requirements[0].chain.caip2 == "eip155:8453"
    assert routes["gpu"].max_timeout_seconds == 600


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("offers: []", "non-empty list `offers:`"),
        ("offers: [ {name: Bad, upstream: 'http://h', price: '1'} ]", "offers[0].name 'Bad'"),
        ("offers: [ {name: a, upstream: 'ftp://h', price: '1'} ]", "offers[0].upstream 'ftp://h'"),
        (
            "offers: [ {name: a, upstream: 'http://h', price: [1]} ]",
            "write the price as a quoted decimal string",
        ),
        ("offers: [ {name: a, upstream: 'http://h', price: '0.0000001'} ]", "more than 6 decimal places"),
        ("offers: [ {name: a, upstream: 'http://h', price: '1', perMTok: '1'} ]", "exactly one price"),
        (
            "offers: [ {name: a, upstream: 'http://h', price: '1', path: /skill.md} ]",
            "offers[0].path: path '/skill.md' is reserved",
        ),
        (
            "offers: [ {name: a, upstream: 'http://h', price: '1', chain: mars} ]",
            "offers[0].chain 'mars': unknown chain",
        ),
        (
            "offers: [ {name: a, upstream: 'http://h', price: '1'},"
            " {name: b, upstream: 'http://h', price: '1', path: /services/a} ]",
            "two offers use the path /services/a",
        ),
        (
            "facilitatorURL: http://evil.example\noffers: [ {name: a, upstream: 'http://h', price: '1'} ]",
            "plain http is only allowed for local hosts",
        ),
        ("offers: [", "not valid YAML"),
    ],
)
def test_bad_offers_files_name_the_key(text: str, message: str) -> None:
    with pytest.raises(UsageError) as err:
        sell_local.load_offers(text, where="offers.yaml", wallet=W, chain=None, facilitator=None)
    assert message in str(err.value)


def test_unquoted_prices_stay_exact() -> None:
    cfg = sell_local.load_offers(
        "offers: [ {name: a, upstream: 'http://h', price: 0.000249},"
        " {name: b, upstream: 'http://h', price: 2} ]",
        where="f",
        wallet=W,
        chain=None,
        facilitator=None,
    )
    assert [(o.price, o.amount) for o in cfg.offers] == [("0.000249", 249), ("2", 2000000)]


def test_wallet_missing() -> None:
    with pytest.raises(UsageError, match=r"offers\.yaml: offers\[0\]\.wallet is required"):
        sell_local.load_offers(
            "offers: [ {name: a, upstream: 'http://h', price: '1'} ]",
            where="offers.yaml",
            wallet=None,
            chain=None,
            facilitator=None,
        )


def test_describe_shows_the_exact_terms() -> None:
    cfg = sell_local.load_offers(FILE, where="f", wallet=None, chain=None, facilitator=None)
    text = "\n".join(sell_local.describe(cfg, "http://127.0.0.1:8402"))
    assert "chat: http://127.0.0.1:8402/services/chat/ → http://127.0.0.1:11434/" in text
    assert "price  0.01 USDC per request (10000 atomic units; declared perHour 0.12)" in text
    assert "0x036CbD53842c5426634e7929541eC2318f3dCF7e (EIP-712 USDC v2)" in text
