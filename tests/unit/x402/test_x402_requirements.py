"""Requirements, the precomputed 402 challenge (SPEC 7.6) and route binding (SPEC 7.7 step 8)."""

from __future__ import annotations

import base64
import copy
from typing import Any

import orjson
import pytest

from kube402.api import chains
from kube402.x402 import codes, headers, requirements
from tests.support.payments import BASE_SEPOLIA, PAY_TO, URL, PaymentFactory, decode

USDC_BASE_SEPOLIA = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
EXPECTED_V2_ACCEPT = {
    "scheme": "exact",
    "network": "eip155:84532",
    "amount": "1000",
    "asset": USDC_BASE_SEPOLIA,
    "payTo": PAY_TO,
    "maxTimeoutSeconds": 300,
    "extra": {"name": "USDC", "version": "2"},
}


def header_object(challenge: requirements.Challenge) -> Any:
    return orjson.loads(base64.b64decode(challenge.header, validate=True))


class TestChallengeShape:
    def test_header_holds_the_exact_v2_object(self, route: requirements.PricedRoute) -> None:
        challenge = route.challenge(URL)
        assert header_object(challenge) == {
            "x402Version": 2,
            "error": "Payment required for this resource",
            "resource": {"url": URL, "description": "Qwen chat", "mimeType": "application/json"},
            "accepts": [EXPECTED_V2_ACCEPT],
        }
        assert list(header_object(challenge)) == ["x402Version", "error", "resource", "accepts"]
        assert challenge.header == headers.encode_b64_json(header_object(challenge))

    def test_body_holds_the_exact_v1_object(self, route: requirements.PricedRoute) -> None:
        assert orjson.loads(route.challenge(URL).body) == {
            "x402Version": 1,
            "error": "Payment required for this resource",
            "accepts": [
                {
                    "scheme": "exact",
                    "network": "base-sepolia",
                    "maxAmountRequired": "1000",
                    "asset": USDC_BASE_SEPOLIA,
                    "payTo": PAY_TO,
                    "resource": URL,
                    "description": "Qwen chat",
                    "mimeType": "application/json",
                    "maxTimeoutSeconds": 300,
                    "extra": {"name": "USDC", "version": "2"},
                }
            ],
        }

    def test_header_is_compact_and_small(self, route: requirements.PricedRoute) -> None:
        raw = base64.b64decode(route.challenge(URL).header)
        assert b": " not in raw and b", " not in raw
        assert len(route.challenge(URL).header) < 700

    def test_chain_without_v1_name_gets_the_v2_body(self) -> None:
        route = requirements.priced_route(
            chains.lookup("arbitrum-one"), amount=5, pay_to=PAY_TO, description="d", max_timeout_seconds=60
        )
        challenge = route.challenge(URL)
        assert route.requirements[0].v1(resource=URL, description="d") is None
        assert orjson.loads(challenge.body) == header_object(challenge)
        assert header_object(challenge)["accepts"][0]["extra"] == {"name": "USD Coin", "version": "2"}

    def test_mixed_route_lists_only_v1_capable_options_in_the_body(self) -> None:
        reqs = (
            requirements.build_requirement(chains.lookup("arbitrum-one"), amount=5, pay_to=PAY_TO),
            requirements.build_requirement(chains.lookup("base"), amount=5, pay_to=PAY_TO),
        )
        challenge = requirements.PricedRoute(requirements=reqs, description="d").challenge(URL)
        assert [a["network"] for a in header_object(challenge)["accepts"]] == ["eip155:42161", "eip155:8453"]
        assert [a["network"] for a in orjson.loads(challenge.body)["accepts"]] == ["base"]
        assert challenge.server_requirements(reqs[1], version=1)["network"] == "base"
        with pytest.raises(ValueError):
            challenge.server_requirements(reqs[0], version=1)
        assert challenge.server_requirements(reqs[0], version=2) is reqs[0].v2

    def test_route_metadata_is_filled(self) -> None:
        route = requirements.priced_route(
            BASE_SEPOLIA,
            amount=7,
            pay_to=PAY_TO,
            description="GPU hour",
            max_timeout_seconds=90,
            mime_type="text/csv",
        )
        obj = header_object(route.challenge(URL))
        assert obj["resource"] == {"url": URL, "description": "GPU hour", "mimeType": "text/csv"}
        assert obj["accepts"][0]["maxTimeoutSeconds"] == 90


class TestChallengeVariants:
    def test_with_error_changes_only_the_error(self, route: requirements.PricedRoute) -> None:
        default = route.challenge(URL)
        refused = default.with_error(codes.Code.REQUIREMENTS_MISMATCH)
        assert refused.error == "requirements_mismatch"
        expected = header_object(default) | {"error": "requirements_mismatch"}
        assert header_object(refused) == expected
        assert orjson.loads(refused.body) == orjson.loads(default.body) | {"error": "requirements_mismatch"}

    def test_variants_are_memoized_and_shared(self, route: requirements.PricedRoute) -> None:
        default = route.challenge(URL)
        first = default.with_error("insufficient_funds")
        assert default.with_error("insufficient_funds") is first
        assert first.with_error("insufficient_funds") is first
        assert first.with_error(codes.DEFAULT_CHALLENGE_ERROR) is default
        assert default.with_error(codes.DEFAULT_CHALLENGE_ERROR) is default

    def test_many_distinct_errors_stay_bounded(self, route: requirements.PricedRoute) -> None:
        default = route.challenge(URL)
        for i in range(requirements.MAX_ERROR_VARIANTS * 3):
            assert default.with_error(f"reason_{i}").error == f"reason_{i}"
        assert len(default._parts.variants) == requirements.MAX_ERROR_VARIANTS

    def test_hostile_error_text_is_escaped_and_truncated(self, route: requirements.PricedRoute) -> None:
        nasty = '"}],"x402Version":9,"x":"' + "\u2028<script>" + "a" * 1000
        refused = route.challenge(URL).with_error(nasty)
        obj = header_object(refused)
        assert obj["x402Version"] == 2 and obj["error"] == nasty[: requirements.MAX_ERROR_CHARS]
        assert orjson.loads(refused.body)["x402Version"] == 1


class TestChallengeCache:
    def test_a_url_is_built_once(self, route: requirements.PricedRoute) -> None:
        assert route.challenge(URL) is route.challenge(URL)
        other = route.challenge(URL + "/other")
        assert other is not route.challenge(URL)
        assert header_object(other)["resource"]["url"] == URL + "/other"

    def test_least_recently_used_urls_are_evicted(self) -> None:
        route = requirements.priced_route(
            BASE_SEPOLIA, amount=1, pay_to=PAY_TO, description="d", cache_size=2
        )
        a, b = route.challenge("http://h/a"), route.challenge("http://h/b")
        assert route.challenge("http://h/a") is a  # a is now most recently used
        route.challenge("http://h/c")  # evicts b
        assert route.challenge("http://h/a") is a
        assert route.challenge("http://h/b") is not b
        assert len(route._cache) == 2


class TestPaywall:
    def test_html_shows_price_network_pay_to_and_how_to_pay(self, route: requirements.PricedRoute) -> None:
        page = route.challenge(URL).html.decode()
        assert page.startswith("<!DOCTYPE html>")
        for needle in (
            "0.001 USDC",
            "base-sepolia",
            "eip155:84532",
            PAY_TO,
            URL,
            "PAYMENT-SIGNATURE",
            "Qwen chat",
        ):
            assert needle in page
        assert route.challenge(URL).html is route.challenge(URL).html

    def test_html_escapes_everything_dynamic(self) -> None:
        route = requirements.priced_route(
            BASE_SEPOLIA, amount=1_234_567, pay_to=PAY_TO, description="<img src=x onerror=alert(1)>"
        )
        page = route.challenge('http://h/"><script>alert(1)</script>').with_error("<b>no</b>").html.decode()
        assert "<script>alert" not in page and "<img" not in page and "<b>no" not in page
        assert "&lt;img src=x onerror=alert(1)&gt;" in page and "1.234567 USDC" in page


class TestBuildRequirement:
    def test_defaults_to_the_chains_usdc_domain(self) -> None:
        req = requirements.build_requirement(chains.lookup("base"), amount=1, pay_to=PAY_TO)
        assert req.asset == "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
        assert req.extra == {"name": "USD Coin", "version": "2"} and req.decimals == 6
        assert req.v2["extra"] == req.extra and req.scheme == "exact"

    def test_custom_token_needs_its_domain(self) -> None:
        token = "0x" + "12" * 20
        with pytest.raises(ValueError):
            requirements.build_requirement(BASE_SEPOLIA, amount=1, pay_to=PAY_TO, asset=token)
        req = requirements.build_requirement(
            BASE_SEPOLIA,
            amount=1,
            pay_to=PAY_TO,
            asset=token,
            eip712_name="Test",
            eip712_version="1",
            decimals=18,
        )
        assert req.v2["asset"] == token and req.v2["extra"] == {"name": "Test", "version": "1"}

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"amount": 0},
            {"amount": -1},
            {"amount": True},
            {"amount": 2**256},
            {"pay_to": "0x123"},
            {"asset": "not-an-address"},
            {"max_timeout_seconds": 0},
        ],
        ids=str,
    )
    def test_unpayable_configuration_is_refused(self, kwargs: dict[str, Any]) -> None:
        args: dict[str, Any] = {"amount": 1, "pay_to": PAY_TO} | kwargs
        with pytest.raises(ValueError):
            requirements.build_requirement(BASE_SEPOLIA, **args)

    def test_a_route_needs_an_option(self) -> None:
        with pytest.raises(ValueError):
            requirements.PricedRoute(requirements=(), description="d")


def _with(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    target = obj
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return obj


OTHER = "0x" + "ab" * 20


class TestRouteBinding:
    def test_v2_exact_echo_matches(self, factory: PaymentFactory, route: requirements.PricedRoute) -> None:
        assert (
            requirements.match_requirement(decode(factory.v2()), route.requirements) is route.requirements[0]
        )

    def test_v1_matches_by_scheme_and_v1_network(
        self, factory: PaymentFactory, route: requirements.PricedRoute
    ) -> None:
        assert (
            requirements.match_requirement(decode(factory.v1()), route.requirements) is route.requirements[0]
        )

    def test_hex_case_is_ignored_and_client_extra_keys_are_allowed(
        self, factory: PaymentFactory, route: requirements.PricedRoute
    ) -> None:
        obj = factory.v2(auth=factory.authorization(to=PAY_TO.lower()))
        obj["accepted"]["payTo"] = PAY_TO.upper().replace("0X", "0x")
        obj["accepted"]["asset"] = USDC_BASE_SEPOLIA.lower()
        obj["accepted"]["extra"]["assetTransferMethod"] = "eip3009"
        assert requirements.match_requirement(decode(obj), route.requirements) is not None

    @pytest.mark.parametrize(
        ("path", "value"),
        [
            pytest.param(("accepted", "amount"), "999", id="amount"),
            pytest.param(("accepted", "amount"), "1001", id="amount-more"),
            pytest.param(("accepted", "payTo"), OTHER, id="payTo"),
            pytest.param(("accepted", "network"), "eip155:8453", id="network"),
            pytest.param(("accepted", "network"), "base-sepolia", id="network-v1-name-in-v2"),
            pytest.param(("accepted", "asset"), OTHER, id="asset"),
            pytest.param(("accepted", "scheme"), "upto", id="scheme"),
            pytest.param(("accepted", "maxTimeoutSeconds"), 301, id="maxTimeoutSeconds"),
            pytest.param(("accepted", "extra"), None, id="extra-missing"),
            pytest.param(("accepted", "extra", "name"), None, id="extra-key-missing"),
            pytest.param(("accepted", "extra", "name"), "USD Coin", id="extra-name"),
            pytest.param(("accepted", "extra", "version"), "1", id="extra-version"),
            pytest.param(("payload", "authorization", "to"), OTHER, id="to"),
            pytest.param(("payload", "authorization", "value"), "999", id="value"),
            pytest.param(("payload", "authorization", "value"), "1001", id="value-more"),
        ],
    )
    def test_v2_mismatch(
        self, factory: PaymentFactory, route: requirements.PricedRoute, path: tuple[str, ...], value: Any
    ) -> None:
        decoded = decode(_with(factory.v2(), path, value))
        assert requirements.match_requirement(decoded, route.requirements) is None

    @pytest.mark.parametrize(
        ("path", "value"),
        [
            pytest.param(("scheme",), "upto", id="scheme"),
            pytest.param(("network",), "eip155:84532", id="network-caip2-in-v1"),
            pytest.param(("network",), "base", id="network"),
            pytest.param(("payload", "authorization", "to"), OTHER, id="to"),
            pytest.param(("payload", "authorization", "value"), "10000", id="value"),
        ],
    )
    def test_v1_mismatch(
        self, factory: PaymentFactory, route: requirements.PricedRoute, path: tuple[str, ...], value: Any
    ) -> None:
        decoded = decode(_with(factory.v1(), path, value))
        assert requirements.match_requirement(decoded, route.requirements) is None

    def test_the_right_option_of_a_multi_network_route(self, factory: PaymentFactory) -> None:
        base = requirements.build_requirement(chains.lookup("base"), amount=1000, pay_to=PAY_TO)
        sepolia = factory.requirement
        decoded = decode(factory.v2())
        assert requirements.match_requirement(decoded, (base, sepolia)) is sepolia
        assert requirements.match_requirement(decoded, (base,)) is None
        assert requirements.match_requirement(decoded, ()) is None
