"""ServiceOffer → Route/Guard (SPEC 7.4, 8) and the TableKeeper that assembles the live table: prices
re-validated, invalid offers skipped and guarded while the others stay priced, upstreamAuth for litellm,
deleted offers guarded for guardGraceSeconds, metrics series of removed routes deleted."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from kube402.api import chains
from kube402.verifier import offers
from kube402.verifier.routes import MatchKind
from tests.support.payments import PAY_TO
from tests.support.verifier_env import LITELLM_KEY, Env, call, fwd, keeper, litellm_secrets, make_env, offer


def view(raw: dict[str, Any], **kw: Any) -> offers.OfferView:
    return offers.route_for_offer(raw, **kw)


class TestRouteForOffer:
    def test_published_offer_route(self) -> None:
        v = view(offer(max_timeout=90, description="Qwen 2.5 chat", port=4000))
        assert v.guard is None and v.skipped == ""
        r = v.route
        assert r is not None
        assert r.pattern == "/services/qwen/*" and r.prefix == "/services/qwen"
        assert (r.offer_namespace, r.offer_name, r.source) == ("llm", "qwen", "offer")
        assert r.mode == "forwardAuth" and r.upstream_auth == ""
        assert r.upstream == {"namespace": "llm", "service": "qwen-svc", "port": 4000}
        assert r.max_timeout_seconds == 90
        req = r.priced.requirements[0]
        assert req.amount == 1000 and req.pay_to == PAY_TO and req.chain.caip2 == "eip155:84532"
        assert req.max_timeout_seconds == 90
        assert r.priced.description == "Qwen 2.5 chat"

    def test_default_description(self) -> None:
        r = view(offer()).route
        assert r is not None and r.priced.description == "x402 payment-gated inference service: qwen"

    @pytest.mark.parametrize(
        ("path", "pattern"),
        [
            ("/api/llm", "/api/llm/*"),
            ("/api/llm/", "/api/llm/*"),
            (None, "/services/qwen/*"),
        ],
    )
    def test_paths(self, path: str | None, pattern: str) -> None:
        r = view(offer(path=path)).route
        assert r is not None and r.pattern == pattern

    def test_upstream_namespace_override(self) -> None:
        r = view(offer(upstream_namespace="models")).route
        assert r is not None and r.upstream["namespace"] == "models"

    @pytest.mark.parametrize(
        ("gate_mode", "default", "mode"),
        [
            ("proxy", "forwardAuth", "proxy"),
            (None, "proxy", "proxy"),
            ("forwardAuth", "proxy", "forwardAuth"),
        ],
    )
    def test_gate_mode(self, gate_mode: str | None, default: str, mode: str) -> None:
        r = view(offer(gate_mode=gate_mode), default_gate_mode=default).route
        assert r is not None and r.mode == mode

    @pytest.mark.parametrize(
        ("price", "amount"),
        [
            ({"perRequest": "0.001"}, 1000),
            ({"perRequest": "0.000249"}, 249),
            ({"perRequest": "1"}, 1000000),
            ({"perMTok": "0.5"}, 500),
            ({"perMTok": "0.0015"}, 2),
            ({"perHour": "0.12"}, 10000),
            ({"perHour": "1"}, 83333),
            ({"perRequest": "", "perMTok": "0.5"}, 500),
            ({"perRequest": "0.002", "perHour": "1"}, 2000),
            ({"perHour": "0.5", "perEpoch": "10"}, 41667),
        ],
    )
    def test_price_models(self, price: dict[str, str], amount: int) -> None:
        r = view(offer(price=price)).route
        assert r is not None and r.priced.requirements[0].amount == amount
        assert r.priced.requirements[0].v2["amount"] == str(amount)

    @pytest.mark.parametrize(
        "price",
        [
            {"perRequest": "0.0000001"},
            {"perRequest": "abc"},
            {"perRequest": "-1"},
            {"perRequest": "0"},
            {"perEpoch": "1"},
            {},
            {"perMTok": "0.0000001"},
            {"perHour": "1e-9"},
            {"perRequest": "1e3"},
        ],
    )
    def test_invalid_price_is_skipped_and_guarded(self, price: dict[str, str]) -> None:
        v = view(offer(price=price))
        assert v.route is None
        assert v.guard is not None and v.guard.pattern == "/services/qwen/*" and v.guard.reason == "invalid"
        assert v.skipped

    @pytest.mark.parametrize("network", ["solana", "eip155:999999", "", "base-goerli"])
    def test_unknown_network_is_skipped_and_guarded(self, network: str) -> None:
        v = view(offer(network=network))
        assert v.route is None and v.guard is not None and v.guard.reason == "invalid" and v.skipped

    @pytest.mark.parametrize(
        "network", ["base", "eip155:8453", "base-mainnet", "arbitrum-one", "polygon-amoy"]
    )
    def test_known_networks(self, network: str) -> None:
        r = view(offer(network=network)).route
        assert r is not None and r.priced.requirements[0].chain is chains.lookup(network)

    def test_bad_pay_to_is_skipped_and_guarded(self) -> None:
        v = view(offer(pay_to="0x1234"))
        assert v.route is None and v.guard is not None and v.skipped

    @pytest.mark.parametrize(
        ("kw", "reason"),
        [
            ({"paused": True}, "paused"),
            ({"deleting": True}, "deleting"),
            ({"published": False}, "unpublished"),
            ({"paused": True, "published": False}, "paused"),
        ],
    )
    def test_not_published_is_guarded(self, kw: dict[str, Any], reason: str) -> None:
        v = view(offer(**kw))
        assert v.route is None and v.guard is not None
        assert v.guard.reason == reason and v.guard.pattern == "/services/qwen/*"
        assert v.skipped == ""

    def test_no_conditions_is_unpublished(self) -> None:
        raw = offer()
        raw["status"] = {}
        v = view(raw)
        assert v.route is None and v.guard is not None and v.guard.reason == "unpublished"

    def test_ready_not_required(self) -> None:
        raw = offer()
        raw["status"]["conditions"].append({"type": "Ready", "status": "False", "reason": "NotReady"})
        assert view(raw).route is not None

    def test_paused_annotation_is_trimmed_and_case_insensitive(self) -> None:
        raw = offer()
        raw["metadata"]["annotations"] = {"obol.org/paused": " TRUE "}
        assert view(raw).guard is not None
        raw["metadata"]["annotations"] = {"obol.org/paused": "false"}
        assert view(raw).route is not None


class TestUpstreamAuth:
    @pytest.mark.parametrize("service", ["litellm", "LiteLLM", "LITELLM"])
    def test_litellm_gets_bearer(self, service: str) -> None:
        seen: list[str] = []

        def secrets(ns: str) -> Any:
            seen.append(ns)
            return litellm_secrets(ns)

        r = view(offer(service=service, upstream_namespace="llm-system"), secrets=secrets).route
        assert r is not None and r.upstream_auth == f"Bearer {LITELLM_KEY}"
        assert seen == ["llm-system"]

    def test_other_services_never_get_it(self) -> None:
        r = view(offer(service="litellm-proxy"), secrets=litellm_secrets).route
        assert r is not None and r.upstream_auth == ""

    @pytest.mark.parametrize(
        "secret",
        [
            None,
            {},
            {"data": {}},
            {"data": {"LITELLM_MASTER_KEY": "!!notb64"}},
            {"data": {"LITELLM_MASTER_KEY": base64.b64encode(b"   ").decode()}},
            {"data": {"LITELLM_MASTER_KEY": 5}},
            {"data": {"LITELLM_MASTER_KEY": base64.b64encode(b"\xff\xfe").decode()}},
        ],
    )
    def test_missing_or_bad_secret_means_no_auth(self, secret: Any) -> None:
        r = view(offer(service="litellm"), secrets=lambda ns: secret).route
        assert r is not None and r.upstream_auth == ""


class TestTableKeeper:
    async def test_one_invalid_offer_does_not_affect_others(self, env: Env) -> None:
        k = keeper(env)
        k.offer_changed(("llm", "good"), offer("good"))
        k.offer_changed(("llm", "bad-price"), offer("bad-price", price={"perEpoch": "1"}))
        k.offer_changed(("llm", "bad-net"), offer("bad-net", network="dogecoin"))
        k.offer_changed(("llm", "hourly"), offer("hourly", price={"perHour": "0.12"}))
        table = k.rebuild()
        assert sorted(r.offer_name for r in table.routes) == ["good", "hourly"]
        assert table.lookup("/services/good/x").kind is MatchKind.PRICED
        assert table.lookup("/services/bad-price/x").kind is MatchKind.GUARDED
        assert table.lookup("/services/bad-net").kind is MatchKind.GUARDED
        hourly = table.lookup("/services/hourly/a").route
        assert hourly is not None and hourly.priced.requirements[0].amount == 10000
        m = env.gate.metrics
        assert m.offers_skipped.value("invalid") == 2
        assert m.routes.value("offer") == 2
        assert (await call(env.gate, fwd("/services/good/a"))).status == 402
        assert (await call(env.gate, fwd("/services/bad-price/a"))).status == 503

    async def test_debounced_rebuild_swaps_the_table(self, env: Env) -> None:
        k = keeper(env)
        before = env.gate.table
        k.offer_changed(("llm", "a"), offer("a"))
        k.offer_changed(("llm", "b"), offer("b"))
        assert env.gate.table is before  # not yet: debounced
        for _ in range(100):
            await asyncio.sleep(0.005)
            if env.gate.table is not before:
                break
        assert env.gate.table is not before
        assert sorted(r.offer_name for r in env.gate.table.routes) == ["a", "b"]
        assert k.rebuilds == 1

    async def test_static_and_offer_routes_combined(self, env: Env) -> None:
        from kube402.verifier import config as config_mod

        cfg = config_mod.Config(
            wallet=PAY_TO,
            routes=(
                config_mod.StaticRoute(
                    pattern="/services/qwen/*", price="5", pay_to=PAY_TO, network="base-sepolia"
                ),
                config_mod.StaticRoute(
                    pattern="/weather/*", price="0.01", pay_to=PAY_TO, network="base-sepolia"
                ),
            ),
        )
        k = keeper(env)
        k.set_static(cfg)
        k.offer_changed(("llm", "qwen"), offer())
        table = k.rebuild()
        q = table.lookup("/services/qwen/a").route
        assert q is not None and q.source == "offer" and q.priced.requirements[0].amount == 1000
        w = table.lookup("/weather/today").route
        assert w is not None and w.source == "static"
        assert env.gate.metrics.routes.value("static") == 1

    async def test_refresh_secrets_recomputes_litellm_offers(self, env: Env) -> None:
        secrets: dict[str, Any] = {}
        k = keeper(env)
        k.secrets = lambda ns: secrets.get(ns)
        k.offer_changed(("llm", "lite"), offer("lite", service="litellm"))
        k.offer_changed(("llm", "other"), offer("other"))
        assert k.rebuild().lookup("/services/lite/x").route.upstream_auth == ""  # type: ignore[union-attr]
        secrets["llm"] = litellm_secrets("llm")
        k.refresh_secrets("llm")
        table = k.rebuild()
        lite = table.lookup("/services/lite/x").route
        assert lite is not None and lite.upstream_auth == f"Bearer {LITELLM_KEY}"

    async def test_deleted_offer_series_forgotten_after_grace(self) -> None:
        env = make_env(guard_grace=10.0)
        clock = [0.0]
        k = keeper(env, clock)
        k.offer_changed(("llm", "qwen"), offer())
        k.rebuild()
        await call(env.gate, fwd())
        labels = ("/services/qwen/*", "llm", "qwen")
        assert env.gate.metrics.requests.value(*labels) == 1
        k.offer_deleted(("llm", "qwen"))
        k.rebuild()
        assert env.gate.metrics.requests.value(*labels) == 0  # the route left the table
        assert env.gate.table.lookup("/services/qwen/a").kind is MatchKind.GUARDED
        clock[0] = 11.0
        assert env.gate.table.lookup("/services/qwen/a").kind is MatchKind.GUARDED  # until the next rebuild
        k.rebuild()
        assert env.gate.table.lookup("/services/qwen/a").kind is MatchKind.NONE
        await env.aclose()

    async def test_no_grace_means_no_guard(self) -> None:
        env = make_env(guard_grace=0.0)
        k = keeper(env)
        k.offer_changed(("llm", "qwen"), offer())
        k.offer_deleted(("llm", "qwen"))
        assert k.rebuild().lookup("/services/qwen/a").kind is MatchKind.NONE
        await env.aclose()

    async def test_deleting_unknown_offer_is_harmless(self, env: Env) -> None:
        k = keeper(env)
        k.offer_deleted(("nope", "nope"))
        assert len(k.rebuild()) == 0
