"""Issue 9 (hardening the money path): one test per defect, named after it, each failing on the code before
its fix. Mocks only (facilitator and upstream behind httpx.MockTransport); the multi-replica and on-chain
proofs are in ``tests/integration/hardening``."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import httpx
import pytest

from kube402.verifier import config as config_mod
from kube402.verifier import gate as gate_mod
from kube402.verifier.main import Options, Verifier
from kube402.verifier.proxy import ProxyGate
from kube402.verifier.routes import MatchKind, RouteTable, normalize_path
from kube402.x402 import requirements
from tests.support.payments import NOW, PAY_TO
from tests.support.verifier_env import (
    CAIP2,
    TX,
    Env,
    Recorder,
    Upstream,
    b64,
    body_json,
    call,
    fwd,
    hdr,
    jresp,
    keeper,
    make_env,
    offer,
    offer_route,
    preq,
    proxy_gate,
)

WALLET = PAY_TO


def pricing(*routes: str, extra: str = "") -> config_mod.Config:
    text = f"wallet: '{WALLET}'\nfacilitatorURL: 'https://facilitator.test'\n{extra}routes:\n" + "".join(
        routes
    )
    cfg, _ = config_mod.parse(text, env={})
    return cfg


async def proxy_run(
    pg: ProxyGate, target: str, *, payload: dict[str, Any] | None = None, **kw: Any
) -> Recorder:
    hdrs = dict(kw.pop("headers", {}))
    if payload is not None:
        hdrs["payment-signature"] = b64(payload)
    out = Recorder()
    await pg.handle(preq(target, **hdrs, **kw), out)
    return out


# -- defect 3: a bad static route is served free ------------------------------------------------------


class TestDefect3BadStaticRouteServedFree:
    @pytest.mark.parametrize(
        "route",
        [
            "  - pattern: /paid/*\n    price: '0.001'\n    payTo: ''\n",
            "  - pattern: /paid/*\n    price: '0.0000001'\n",
            "  - pattern: /paid/*\n    price: '0.001'\n    maxTimeoutSeconds: 5\n",
            "  - pattern: /paid/*\n    price: '0.001'\n    network: nowhere-chain\n",
        ],
        ids=["missing-payTo", "seven-decimals", "timeout-below-minimum", "unknown-network"],
    )
    async def test_invalid_static_route_guards_its_path(self, route: str) -> None:
        env = make_env()
        cfg = pricing(route)
        if "payTo: ''" in route:
            cfg = config_mod.parse("facilitatorURL: 'https://facilitator.test'\nroutes:\n" + route, env={})[0]
        env.gate.apply_config(cfg)
        k = keeper(env)
        k.set_static(cfg)
        k.rebuild()
        resp = await call(env.gate, fwd("/paid/thing"))
        assert resp.status == 503, (resp.status, resp.body)
        assert body_json(resp)["error"] == "offer_unavailable"
        await env.aclose()

    async def test_reload_breaking_a_route_keeps_the_old_one(self) -> None:
        env = make_env()
        k = keeper(env)
        good = pricing("  - pattern: /paid/*\n    price: '0.002'\n")
        k.set_static(good)
        k.rebuild()
        assert (await call(env.gate, fwd("/paid/x"))).status == 402
        bad = pricing("  - pattern: /paid/*\n    price: '0.0000001'\n")
        k.set_static(bad)
        k.rebuild()
        resp = await call(env.gate, fwd("/paid/x"))
        assert resp.status == 402
        from tests.support.verifier_env import required

        assert required(resp)["accepts"][0]["amount"] == "2000"
        await env.aclose()


# -- defect 10: empty path segments ---------------------------------------------------------------------


class TestDefect10EmptyPathSegments:
    def test_normalize_collapses_empty_segments(self) -> None:
        assert normalize_path("//services/paused/a") == "/services/paused/a"
        assert normalize_path("/services//x/a") == "/services/x/a"
        assert normalize_path("/services/x//") == "/services/x/"

    async def test_double_slash_does_not_escape_a_guard(self, env: Env) -> None:
        k = keeper(env)
        k.offer_changed(("llm", "paused"), offer("paused", paused=True))
        k.offer_changed(("llm", "qwen"), offer())
        k.rebuild()
        for uri in ("//services/paused/a", "/services//paused/a", "/%2Fservices/paused/a"):
            resp = await call(env.gate, fwd(uri))
            assert resp.status == 503, uri
        for uri in ("/services//qwen/a", "//services/qwen", "/services/qwen//v1"):
            resp = await call(env.gate, fwd(uri))
            assert resp.status == 402, uri


# -- defect 9: 5xx and leaks from junk ------------------------------------------------------------------


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


class TestDefect9JunkNever5xxNorLeaks:
    async def test_deeply_nested_field_is_400(self, env: Env) -> None:
        payload = env.factory.v2()
        payload["extensions"] = nested(300)
        # stdlib json: orjson itself refuses to write this depth (that asymmetry is the defect)
        header = base64.b64encode(json.dumps(payload).encode()).decode()
        resp = await call(env.gate, fwd() | {"payment-signature": header})
        assert resp.status == 400, resp.status
        assert body_json(resp)["error"] == "invalid_payment_header"
        assert len(env.gate.replay) == 0
        assert env.fac.calls["verify"] == 0

    async def test_proxy_failure_after_admission_leaves_no_entry(self, env: Env) -> None:
        upstream = Upstream()
        pg = proxy_gate(env, upstream)
        payload = env.factory.v2()
        out = await proxy_run(pg, "/services/qwen/a", payload=payload, headers={"x-note": "caf\u00e9 \u2603"})
        assert out.status is not None and out.status < 500, out.status
        assert env.gate.replay.counts()["in_flight"] == 0
        await pg.aclose()

    async def test_proxy_long_target_is_4xx_and_leaves_no_entry(self, env: Env) -> None:
        upstream = Upstream()
        pg = proxy_gate(env, upstream)
        out = await proxy_run(pg, "/services/qwen/" + "a" * 70_000, payload=env.factory.v2())
        assert out.status == 414, out.status
        assert env.gate.replay.counts()["in_flight"] == 0
        assert upstream.requests == []
        await pg.aclose()

    async def test_exception_after_admission_releases_the_entry(self, env: Env) -> None:
        upstream = Upstream()

        def boom(_route: Any) -> str:
            raise RuntimeError("resolver bug")

        pg = ProxyGate(env.gate, resolve=boom, http=upstream.client())
        out = await proxy_run(pg, "/services/qwen/a", payload=env.factory.v2())
        assert out.status == 502
        assert env.gate.replay.counts()["in_flight"] == 0
        await pg.aclose()


# -- defect 5: CPU and memory exhaustion ----------------------------------------------------------------


class _CountingDict(dict[str, Any]):
    lookups = 0

    def get(self, key: str, default: Any = None) -> Any:
        type(self).lookups += 1
        return super().get(key, default)


class TestDefect5Exhaustion:
    async def test_huge_forwarded_uri_is_414(self, env: Env) -> None:
        started = time.perf_counter()
        resp = await call(env.gate, fwd("/services/qwen/" + "a/" * 500_000))
        assert resp.status == 414
        assert body_json(resp)["error"] == "uri_too_long"
        assert time.perf_counter() - started < 0.05

    async def test_huge_proxy_target_is_414(self, env: Env) -> None:
        pg = proxy_gate(env, Upstream())
        out = await proxy_run(pg, "/services/qwen/" + "a" * 1_000_000)
        assert out.status == 414
        await pg.aclose()

    def test_prefix_walk_bounded_by_table_depth(self) -> None:
        table = RouteTable.build(offer_routes=[offer_route()])
        counting = _CountingDict(table._prefix)
        table._prefix = counting
        _CountingDict.lookups = 0
        match = table.lookup("/services/qwen" + "/a" * 5000)
        assert match.kind is MatchKind.PRICED
        assert _CountingDict.lookups <= 3, _CountingDict.lookups

    def test_challenge_cache_bounded_by_bytes(self) -> None:
        route = offer_route()
        priced = route.priced
        for i in range(600):
            priced.challenge(f"https://h/services/qwen/{i}/" + "x" * 16_000)
        cache = priced._cache
        total = sum(len(c.header) + len(c.body) for c in cache._entries.values())
        assert total <= requirements.DEFAULT_CACHE_BYTES
        assert priced.challenge("https://h/services/qwen/y").header  # still works


# -- paid HEAD; CORS preflight in proxy mode ------------------------------------------------------------


class TestPaidHeadAndCors:
    async def test_paid_head_cannot_be_reused(self, env: Env) -> None:
        payload = env.factory.v2()
        h = fwd(method="HEAD") | {"payment-signature": b64(payload)}
        first = await call(env.gate, h)
        assert first.status == 200
        again = [await call(env.gate, h) for _ in range(3)]
        assert all(r.status != 200 for r in again), [r.status for r in again]
        assert env.fac.calls["settle"] == 0

    async def test_proxy_cors_preflight_has_cors_headers(self, env: Env) -> None:
        upstream = Upstream()
        pg = proxy_gate(env, upstream)
        out = await proxy_run(
            pg,
            "/services/qwen/v1/chat",
            method="OPTIONS",
            headers={
                "origin": "https://app.example",
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type, payment-signature",
            },
        )
        assert out.status in (200, 204)
        assert out.header("access-control-allow-origin") in ("*", "https://app.example")
        allowed = (out.header("access-control-allow-headers") or "").lower()
        assert "payment-signature" in allowed and "content-type" in allowed
        assert "POST" in (out.header("access-control-allow-methods") or "")
        exposed = (out.header("access-control-expose-headers") or "").lower()
        assert "payment-required" in exposed and "payment-response" in exposed
        assert upstream.requests == []
        await pg.aclose()


# -- defect 6: a path change opens the old path ---------------------------------------------------------


class TestDefect6PathChangeOpensOldPath:
    async def test_published_endpoint_stays_guarded_without_grace(self) -> None:
        env = make_env(guard_grace=0.0)
        k = keeper(env)
        moved = offer(path="/services/new")
        moved["status"]["endpoint"] = "/services/qwen"  # the route the controller published last
        k.offer_changed(("llm", "qwen"), moved)  # as after a verifier restart: no earlier view
        k.rebuild()
        old = await call(env.gate, fwd("/services/qwen/v1/chat"))
        assert old.status == 503, old.status
        assert (await call(env.gate, fwd("/services/new/v1/chat"))).status == 402
        await env.aclose()

    def test_kube_mode_unmatched_default_is_refusal(self) -> None:
        v = Verifier(Options(route_source="kube"))
        assert v.gate.unmatched == "deny"
        f = Verifier(Options(route_source="file"))
        assert f.gate.unmatched == "allow"

    async def test_kube_mode_explicit_allow_is_kept(self) -> None:
        cfg, _ = config_mod.parse("unmatched: allow\n", env={})
        g = gate_mod.Gate(config=cfg, metrics=make_env().gate.metrics, default_unmatched="deny")
        assert g.unmatched == "allow"


# -- defect 4: free upstream work in proxy mode ----------------------------------------------------------


class TestDefect4FreeUpstreamWork:
    async def test_short_window_refused_before_upstream(self, env: Env) -> None:
        upstream = Upstream()
        pg = proxy_gate(env, upstream)
        auth = env.factory.authorization(validBefore=str(NOW + 7))
        out = await proxy_run(pg, "/services/qwen/a", payload=env.factory.v2(auth=auth), method="POST")
        assert out.status == 402
        assert out.json()["error"] == "invalid_exact_evm_payload_authorization_valid_before"
        assert upstream.requests == [] and env.fac.calls["verify"] == 0
        await pg.aclose()

    async def test_upstream_deadline_ends_before_valid_before(self, env: Env) -> None:
        seen: list[float] = []

        def reply(r: httpx.Request) -> httpx.Response:
            seen.append(float(r.extensions["timeout"]["read"]))
            return httpx.Response(200, content=b"ok")

        upstream = Upstream(reply)
        pg = proxy_gate(env, upstream)
        auth = env.factory.authorization(validBefore=str(NOW + 120))
        out = await proxy_run(pg, "/services/qwen/a", payload=env.factory.v2(auth=auth), method="POST")
        assert out.status == 200
        settle = env.gate.config.settle_timeout
        assert seen and seen[0] <= 120 - settle - gate_mod.SETTLE_MARGIN_SECONDS + 1e-6

    async def test_settle_before_upstream_option(self) -> None:
        route = offer_route(offer(gate_mode="proxy"))
        cfg = pricing(
            "  - pattern: /side/*\n    price: '0.001'\n    upstream: 'http://side.test'\n"
            "    settle: beforeUpstream\n"
        )
        env = make_env(route=route)
        k = keeper(env)
        k.set_static(cfg)
        k.rebuild()
        events: list[str] = []
        env.fac.events = events

        def reply(_r: httpx.Request) -> httpx.Response:
            events.append("upstream")
            return httpx.Response(200, content=b"done")

        upstream = Upstream(reply)
        pg = ProxyGate(env.gate, resolve=lambda r: "http://side.test", http=upstream.client())
        payload = env.factory.v2()
        out = await proxy_run(pg, "/side/x", payload=payload, method="POST", body=(b"{}",))
        assert out.status == 200, out.body
        assert events.index("settle") < events.index("upstream")
        # a failed settlement means the upstream never runs
        env.fac.script["settle"].append(
            lambda _r, _b: jresp({"success": False, "errorReason": "insufficient_funds", "network": CAIP2})
        )
        out = await proxy_run(pg, "/side/x", payload=env.factory.v2(), method="POST", body=(b"{}",))
        assert out.status == 402
        assert events.count("upstream") == 1
        await pg.aclose()
        await env.aclose()


# -- defect 2: paid but refused ---------------------------------------------------------------------------


class FakeChain:
    """What the chain says about authorizations: ``used`` keys were executed as transfers."""

    def __init__(self) -> None:
        self.used: set[tuple[str, str]] = set()
        self.calls = 0

    async def transferred(self, a: gate_mod.Admitted) -> bool | None:
        self.calls += 1
        auth = a.decoded.authorization
        return (auth.from_address.lower(), "0x" + auth.nonce.hex()) in self.used


class TestDefect2PaidButRefused:
    async def test_unknown_then_nonce_used_resolved_from_chain(self, env: Env) -> None:
        chain = FakeChain()
        env.gate.chain = chain.transferred
        payload = env.factory.v2()
        auth = payload["payload"]["authorization"]

        async def timeout(_r: httpx.Request, _b: Any) -> httpx.Response:
            chain.used.add((auth["from"].lower(), auth["nonce"]))  # it lands on chain meanwhile
            raise httpx.ReadTimeout("slow")

        env.fac.script["settle"] += [
            timeout,
            lambda _r, _b: jresp(
                {
                    "success": False,
                    "errorReason": "invalid_exact_evm_nonce_already_used",
                    "transaction": "",
                    "network": CAIP2,
                }
            ),
        ]
        resp = await call(env.gate, fwd() | {"payment-signature": b64(payload)})
        assert resp.status == 200, (resp.status, resp.body)
        assert hdr(resp, "x-payment-status") == "settled"
        again = await call(env.gate, fwd() | {"payment-signature": b64(payload)})
        assert again.status == 402  # once
        assert chain.calls == 1

    async def test_terminal_failure_without_transfer_is_402(self, env: Env) -> None:
        chain = FakeChain()
        env.gate.chain = chain.transferred
        env.fac.script["settle"] += [
            lambda _r, _b: (_ for _ in ()).throw(httpx.ReadTimeout("slow")),
            lambda _r, _b: jresp(
                {"success": False, "errorReason": "invalid_exact_evm_nonce_already_used", "network": CAIP2}
            ),
        ]
        resp = await call(env.gate, fwd() | {"payment-signature": b64(env.factory.v2())})
        assert resp.status == 402
        assert chain.calls == 1

    async def test_unknown_then_failure_without_chain_access_stays_pending(self, env: Env) -> None:
        env.fac.script["settle"] += [
            lambda _r, _b: (_ for _ in ()).throw(httpx.ReadTimeout("slow")),
            lambda _r, _b: jresp(
                {"success": False, "errorReason": "invalid_exact_evm_nonce_already_used", "network": CAIP2}
            ),
        ]
        resp = await call(env.gate, fwd() | {"payment-signature": b64(env.factory.v2())})
        assert resp.status == 503  # never a fresh 402 while it may have executed
        assert body_json(resp)["error"] == "settlement_pending"


def _unused() -> None:  # keep imports used by parametrized helpers honest
    _ = (TX, asyncio)


class TestDefect8VerifierSendsTheFacilitatorToken:
    async def test_token_file_becomes_the_bearer_header(self, tmp_path: Any) -> None:
        token = tmp_path / "token"
        token.write_text("s3cret-token-0123456789\n")
        cfg = config_mod.parse(
            f"facilitatorURL: 'https://facilitator.test'\nfacilitatorTokenFile: '{token}'\n", env={}
        )[0]
        fac = gate_mod.Facilitator.start(cfg)
        try:
            assert fac.client._authorization == "Bearer s3cret-token-0123456789"
        finally:
            await fac.close()


class TestDefect7PathHijack:
    async def test_foreign_offer_under_a_published_prefix_cannot_block_it(self) -> None:
        """The controller refuses the nested offer of another namespace (PathConflict); its unpublished
        guard must not shadow the owner's route with 503s."""
        env = make_env()
        k = keeper(env)
        k.offer_changed(("llm", "victim"), offer("victim", path="/services/victim"))
        k.offer_changed(
            ("evil", "thief"), offer("thief", namespace="evil", path="/services/victim/v1", published=False)
        )
        k.offer_changed(("llm", "own"), offer("own", path="/services/victim/v2", published=False))
        k.rebuild()
        assert (await call(env.gate, fwd("/services/victim/v1/chat"))).status == 402  # the victim's route
        assert (await call(env.gate, fwd("/services/victim/v2/chat"))).status == 503  # own nested guard kept
        await env.aclose()
