"""pricing.yaml parsing (SPEC 7.3): defaults, the facilitator URL rule, wallets and chains, global settings
that reject the file, static routes skipped one by one, unknown keys warned."""

from __future__ import annotations

import ipaddress
import textwrap

import pytest

from kube402.verifier import config as config_mod
from kube402.verifier.config import ConfigError, parse, validate_facilitator_url
from kube402.verifier.table import TableKeeper
from tests.support.payments import PAY_TO
from tests.support.verifier_env import make_env

WALLET = PAY_TO


def yaml(text: str) -> str:
    return textwrap.dedent(text)


class TestDefaults:
    def test_empty_file(self) -> None:
        cfg, warnings = parse("", env={})
        assert warnings == []
        assert cfg.wallet == "" and cfg.chain == "base-sepolia"
        assert cfg.facilitator_url == "https://facilitator.x402.rs"
        assert cfg.verify_only is False and cfg.routes == ()
        assert cfg.accept_v1 is True and cfg.challenge_status == 402
        assert (cfg.verify_timeout, cfg.settle_timeout, cfg.supported_ttl) == (5.0, 30.0, 600.0)
        assert cfg.retry_after == 5 and cfg.max_validity_seconds == 2592000
        assert cfg.replay_ttl == 600.0 and cfg.guard_grace == 60.0
        assert (
            cfg.max_payment_header_bytes == 16384 and cfg.unmatched == ""
        )  # the route source decides (file: allow, kube: deny)
        assert cfg.trusted_proxies == () and dict(cfg.rpc_urls) == {}

    def test_wallet_from_env(self) -> None:
        cfg, _ = parse("chain: base\n", env={"WALLET_ADDRESS": WALLET})
        assert cfg.wallet == WALLET and cfg.chain == "base"

    def test_file_wallet_beats_env(self) -> None:
        other = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
        cfg, _ = parse(f"wallet: '{other}'\n", env={"WALLET_ADDRESS": WALLET})
        assert cfg.wallet == other

    def test_all_keys(self) -> None:
        cfg, warnings = parse(
            yaml(f"""
            wallet: "{WALLET}"
            chain: base
            facilitatorURL: https://fac.example/api/
            verifyOnly: true
            acceptV1: false
            challengeStatus: 401
            verifyTimeoutSeconds: 3
            settleTimeoutSeconds: 40
            supportedTTLSeconds: 60
            retryAfterSeconds: 9
            maxValiditySeconds: 3600
            replayTTLSeconds: 120
            guardGraceSeconds: 0
            maxPaymentHeaderBytes: 8192
            unmatched: deny
            trustedProxies: ["10.0.0.0/8", "fd00::/8", "192.168.1.7"]
            rpcURLs: {{base: "https://rpc.example"}}
            routes: []
        """),
            env={},
        )
        assert warnings == []
        assert cfg.facilitator_url == "https://fac.example/api"
        assert cfg.verify_only and not cfg.accept_v1 and cfg.challenge_status == 401
        assert (cfg.verify_timeout, cfg.settle_timeout, cfg.supported_ttl) == (3.0, 40.0, 60.0)
        assert cfg.retry_after == 9 and cfg.max_validity_seconds == 3600 and cfg.replay_ttl == 120.0
        assert cfg.guard_grace == 0.0 and cfg.max_payment_header_bytes == 8192 and cfg.unmatched == "deny"
        assert ipaddress.ip_address("10.1.2.3") in cfg.trusted_proxies[0]
        assert cfg.trusted_proxies[2] == ipaddress.ip_network("192.168.1.7/32")
        assert dict(cfg.rpc_urls) == {"base": "https://rpc.example"}


class TestFacilitatorURL:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("https://facilitator.example", "https://facilitator.example"),
            ("https://facilitator.example/", "https://facilitator.example"),
            ("https://facilitator.example/api/v2/", "https://facilitator.example/api/v2"),
            ("https://facilitator.example:8443", "https://facilitator.example:8443"),
            ("http://localhost:4022", "http://localhost:4022"),
            ("http://LOCALHOST:4022/", "http://LOCALHOST:4022"),
            ("http://127.0.0.1:4022", "http://127.0.0.1:4022"),
            ("http://[::1]:4022", "http://[::1]:4022"),
            ("http://host.k3d.internal:4022", "http://host.k3d.internal:4022"),
            ("http://host.docker.internal", "http://host.docker.internal"),
        ],
    )
    def test_accepted(self, url: str, expected: str) -> None:
        assert validate_facilitator_url(url) == expected
        cfg, _ = parse(f"facilitatorURL: '{url}'\n", env={})
        assert cfg.facilitator_url == expected

    @pytest.mark.parametrize(
        "url",
        [
            "http://facilitator.example",
            "http://10.0.0.1:4022",
            "http://localhost.evil.example",
            "http://127.0.0.2",
            "ftp://facilitator.example",
            "facilitator.example",
            "https://",
            "https://user:secret@facilitator.example",
            "https://user@facilitator.example",
            "https://facilitator.example?x=1",
            "https://facilitator.example/#frag",
            "https://facilitator.example/api?token=abc",
        ],
    )
    def test_rejected(self, url: str) -> None:
        with pytest.raises(ConfigError):
            validate_facilitator_url(url)
        with pytest.raises(ConfigError):
            parse(f"facilitatorURL: '{url}'\n", env={})

    @pytest.mark.parametrize("url", ["https://facilitator.example?", "https://facilitator.example/#"])
    def test_empty_query_or_fragment_marker_rejected(self, url: str) -> None:
        """A bare ``?`` / ``#`` is still a query / fragment: appending ``/verify`` to it breaks the
        endpoint URL."""
        with pytest.raises(ConfigError):
            validate_facilitator_url(url)


class TestGlobalErrors:
    @pytest.mark.parametrize(
        "text",
        [
            "wallet: '0x1234'\n",
            "wallet: 'not-an-address'\n",
            "wallet: '0xgggggggggggggggggggggggggggggggggggggggg'\n",
            f"wallet: '{WALLET}00'\n",
            "chain: solana\n",
            "chain: eip155:999999\n",
            "unmatched: maybe\n",
            "challengeStatus: 403\n",
            "challengeStatus: true\n",
            "verifyTimeoutSeconds: 0\n",
            "settleTimeoutSeconds: '30'\n",
            "retryAfterSeconds: -1\n",
            "maxValiditySeconds: 10\n",
            "maxPaymentHeaderBytes: 100\n",
            "guardGraceSeconds: 999999\n",
            "trustedProxies: ['10.0.0.0/33']\n",
            "trustedProxies: ['not-a-cidr']\n",
            "rpcURLs: [a, b]\n",
            "- a list\n",
            "just a string\n",
            "key: [unclosed\n",
        ],
    )
    def test_rejected(self, text: str) -> None:
        with pytest.raises(ConfigError):
            parse(text, env={})

    def test_bad_wallet_from_env_rejected(self) -> None:
        with pytest.raises(ConfigError):
            parse("", env={"WALLET_ADDRESS": "0xnope"})

    @pytest.mark.parametrize("text", ["routes: 5\n", "trustedProxies: 5\n", "routes: {a: 1}\n"])
    def test_wrong_container_types_are_config_errors(self, text: str) -> None:
        """Any unusable file must be reported as ConfigError (the reload path catches only that)."""
        with pytest.raises(ConfigError):
            parse(text, env={})

    @pytest.mark.parametrize("key", ["verifyOnly", "acceptV1"])
    def test_quoted_false_is_not_true(self, key: str) -> None:
        """``verifyOnly: "false"`` must not switch verify-only on (it would serve without settling)."""
        try:
            cfg, _ = parse(f'{key}: "false"\n', env={})
        except ConfigError:
            return
        assert getattr(cfg, {"verifyOnly": "verify_only", "acceptV1": "accept_v1"}[key]) is False


class TestRoutes:
    def test_routes_parsed_with_defaults(self) -> None:
        cfg, warnings = parse(
            yaml(f"""
            wallet: "{WALLET}"
            chain: base-sepolia
            routes:
              - pattern: /api/*
                price: "0.01"
                description: Weather
                upstreamAuth: Bearer abc
                offerNamespace: ns
                offerName: weather
                maxTimeoutSeconds: 120
                upstream: http://weather:8080
              - pattern: /chat/*
                price: 0.001
                network: base
                payTo: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
                priceModel: perMTok
                perMTok: "0.5"
                approxTokensPerRequest: 1000
        """),
            env={},
        )
        assert warnings == []
        a, b = cfg.routes
        assert (
            a.pattern == "/api/*" and a.price == "0.01" and a.pay_to == WALLET and a.network == "base-sepolia"
        )
        assert a.description == "Weather" and a.upstream_auth == "Bearer abc"
        assert (a.offer_namespace, a.offer_name, a.max_timeout_seconds) == ("ns", "weather", 120)
        assert a.upstream == "http://weather:8080"
        assert b.price == "0.001" and b.network == "base" and b.pay_to.startswith("0x3C44")
        assert b.price_model == "perMTok" and b.per_mtok == "0.5" and b.max_timeout_seconds == 300

    def test_unknown_keys_warned(self) -> None:
        cfg, warnings = parse(
            yaml(f"""
            wallet: "{WALLET}"
            walet: typo
            routes:
              - pattern: /a/*
                price: "0.01"
                prize: "1"
        """),
            env={},
        )
        assert any("walet" in w for w in warnings)
        assert any("prize" in w and "routes[0]" in w for w in warnings)
        assert len(cfg.routes) == 1

    def test_routes_without_pattern_skipped_others_kept(self) -> None:
        cfg, warnings = parse(
            yaml(f"""
            wallet: "{WALLET}"
            routes:
              - price: "0.01"
              - pattern: relative/*
                price: "0.01"
              - "/just-a-string"
              - pattern: 5
              - pattern: /good/*
                price: "0.01"
        """),
            env={},
        )
        assert [r.pattern for r in cfg.routes] == ["/good/*"]
        assert sum("skipped" in w for w in warnings) == 4

    def test_route_with_unusable_max_timeout_is_skipped_not_fatal(self) -> None:
        """SPEC 7.1: an invalid route is skipped and everything else keeps working."""
        text = yaml(f"""
            wallet: "{WALLET}"
            routes:
              - pattern: /good/*
                price: "0.01"
              - pattern: /bad/*
                price: "0.01"
                maxTimeoutSeconds: soon
        """)
        try:
            cfg, _warnings = parse(text, env={})
        except ConfigError:
            pytest.fail("one bad route rejected the whole file")
        assert "/good/*" in [r.pattern for r in cfg.routes]

    async def test_unpriceable_static_routes_skipped_others_kept(self) -> None:
        cfg, _ = parse(
            yaml(f"""
            wallet: "{WALLET}"
            routes:
              - pattern: /bad-price/*
                price: "abc"
              - pattern: /too-precise/*
                price: "0.0000001"
              - pattern: /zero/*
                price: "0"
              - pattern: /bad-network/*
                price: "0.01"
                network: solana
              - pattern: /bad-payto/*
                price: "0.01"
                payTo: nope
              - pattern: /negative-timeout/*
                price: "0.01"
                maxTimeoutSeconds: -5
              - pattern: /good/*
                price: "0.01"
              - pattern: /tokens/*
                priceModel: perMTok
                perMTok: "0.0015"
        """),
            env={},
        )
        env = make_env(routes=cfg.routes)
        k = TableKeeper(env.gate, debounce=0.001)
        k.set_static(cfg)
        table = k.rebuild()
        assert sorted(r.pattern for r in table.routes) == ["/good/*", "/tokens/*"]
        good = table.lookup("/good/x").route
        assert good is not None and good.priced.requirements[0].amount == 10000
        assert good.source == "static" and good.mode == "forwardAuth"
        assert good.priced.description == "x402 payment-gated route /good/*"
        tokens = table.lookup("/tokens/x").route
        assert tokens is not None and tokens.priced.requirements[0].amount == 2
        assert table.lookup("/bad-price/x").route is None
        assert env.gate.metrics.routes.value("static") == 2
        await env.aclose()

    def test_static_routes_without_wallet_are_unpriceable(self) -> None:
        cfg, _ = parse("routes: [{pattern: /a/*, price: '0.01'}]\n", env={})
        assert cfg.routes[0].pay_to == ""
        from kube402.verifier import offers

        with pytest.raises(ValueError):
            offers.static_route(cfg.routes[0])


def test_config_is_frozen() -> None:
    cfg = config_mod.Config()
    with pytest.raises(AttributeError):
        cfg.wallet = "x"  # type: ignore[misc]


def test_table_keeper_publishes_through_its_callback() -> None:
    env = make_env()
    before = env.gate.table
    published: list[object] = []
    k = TableKeeper(env.gate, debounce=0.001, publish=published.append)
    table = k.rebuild()
    assert published == [table]
    assert env.gate.table is before  # the keeper never writes the gate's table itself
