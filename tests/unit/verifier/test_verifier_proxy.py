"""ProxyGate (SPEC 7.8): admission as in ForwardAuth, then the upstream (httpx.MockTransport) with the offer
prefix stripped and payment headers removed; settlement only on a 2xx status line and never on HEAD; the
upstream body is withheld when settlement fails."""

from __future__ import annotations

import asyncio
import copy
import ipaddress
from typing import Any

import httpx
import pytest

from kube402.verifier.proxy import ProxyGate
from tests.support.payments import PAYER
from tests.support.verifier_env import (
    CAIP2,
    TX,
    Env,
    Recorder,
    Upstream,
    b64,
    decode_b64,
    jresp,
    keeper,
    litellm_secrets,
    make_env,
    offer,
    offer_route,
    preq,
    proxy_gate,
)


def settle_pending(_r: httpx.Request, _b: Any) -> httpx.Response:
    return jresp(
        {
            "success": False,
            "errorReason": "settlement_pending",
            "transaction": "0x" + "cd" * 32,
            "network": CAIP2,
        }
    )


def settle_failed(_r: httpx.Request, _b: Any) -> httpx.Response:
    return jresp({"success": False, "errorReason": "insufficient_funds", "transaction": "", "network": CAIP2})


async def run(
    pg: ProxyGate,
    target: str,
    *,
    payload: dict[str, Any] | None = None,
    name: str = "payment-signature",
    **kw: Any,
) -> Recorder:
    hdrs = dict(kw.pop("headers", {}))
    if payload is not None:
        hdrs[name] = b64(payload)
    out = Recorder()
    await pg.handle(preq(target, **hdrs, **kw), out)
    return out


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture
async def pg(env: Env, upstream: Upstream) -> Any:
    gate = proxy_gate(env, upstream)
    yield gate
    await gate.aclose()


class TestAdmission:
    async def test_unmatched_is_404_route_not_found(
        self, env: Env, pg: ProxyGate, upstream: Upstream
    ) -> None:
        out = await run(pg, "/nothing/here?x=1")
        assert out.status == 404
        assert out.json()["error"] == "route_not_found"
        assert out.header("content-type") == "application/json"
        assert upstream.requests == []

    async def test_prefix_never_matches_longer_name(self, pg: ProxyGate, upstream: Upstream) -> None:
        assert (await run(pg, "/services/qwenx/a")).status == 404

    async def test_not_ready(self, env: Env, pg: ProxyGate) -> None:
        env.gate.ready = False
        out = await run(pg, "/services/qwen/a")
        assert out.status == 503 and out.json()["error"] == "not_ready"
        assert out.header("retry-after") == "5"

    async def test_untrusted(self, upstream: Upstream) -> None:
        env = make_env(trusted_proxies=(ipaddress.ip_network("10.9.0.0/16"),))
        pg = proxy_gate(env, upstream)
        out = await run(pg, "/services/qwen/a", peer="10.1.2.3:5555")
        assert out.status == 403 and out.json()["error"] == "untrusted_source"
        assert (await run(pg, "/services/qwen/a", peer="10.9.1.1:80")).status == 402
        await pg.aclose()
        await env.aclose()

    async def test_guarded(self, env: Env, pg: ProxyGate, upstream: Upstream) -> None:
        k = keeper(env)
        k.offer_changed(("llm", "qwen"), offer(paused=True))
        k.rebuild()
        out = await run(pg, "/services/qwen/a", payload=env.factory.v2())
        assert out.status == 503 and out.json()["error"] == "offer_unavailable"
        assert out.header("retry-after") == "5"
        assert upstream.requests == [] and env.fac.calls["verify"] == 0

    async def test_challenge_uses_gateway_forwarded_headers(
        self, env: Env, pg: ProxyGate, upstream: Upstream
    ) -> None:
        out = await run(
            pg,
            "/services/qwen/v1/models?x=1",
            headers={"x-forwarded-proto": "https", "x-forwarded-host": "pay.example", "host": "inner"},
        )
        assert out.status == 402
        assert out.header("cache-control") == "no-store"
        pr = decode_b64(out.header("payment-required"))
        assert pr["resource"]["url"] == "https://pay.example/services/qwen/v1/models"
        assert upstream.requests == []

    async def test_challenge_falls_back_to_host(self, pg: ProxyGate) -> None:
        out = await run(pg, "/services/qwen", headers={"host": "obol.stack:8081"})
        assert (
            decode_b64(out.header("payment-required"))["resource"]["url"]
            == "http://obol.stack:8081/services/qwen"
        )

    async def test_header_errors(self, env: Env, pg: ProxyGate, upstream: Upstream) -> None:
        out = await run(pg, "/services/qwen/a", headers={"payment-signature": "x" * 20000})
        assert out.status == 431 and out.json()["error"] == "payment_header_too_large"
        out = await run(
            pg,
            "/services/qwen/a",
            headers={"payment-signature": b64(env.factory.v2()), "x-payment": b64(env.factory.v2())},
        )
        assert out.status == 400 and out.json()["error"] == "conflicting_payment_headers"
        out = await run(pg, "/services/qwen/a", headers={"x-payment": "!!"})
        assert out.status == 400 and out.json()["error"] == "invalid_payment_header"
        assert out.header("payment-required") is not None
        assert upstream.requests == []

    async def test_verify_unavailable(self, env: Env, pg: ProxyGate, upstream: Upstream) -> None:
        env.fac.script["verify"].append(lambda r, b: httpx.Response(500))
        p = env.factory.v2()
        out = await run(pg, "/services/qwen/a", payload=p)
        assert out.status == 503 and out.json()["error"] == "facilitator_unavailable"
        assert upstream.requests == []
        assert (await run(pg, "/services/qwen/a", payload=p)).status == 200

    async def test_preflight_is_free(self, env: Env, pg: ProxyGate) -> None:
        out = await run(
            pg, "/services/qwen/a", method="OPTIONS", headers={"access-control-request-method": "POST"}
        )
        assert out.status == 204  # answered by the gate, with CORS headers (issue 9)
        assert out.header("access-control-allow-methods")
        assert env.fac.calls["verify"] == 0


class TestUpstreamRequest:
    @pytest.mark.parametrize(
        ("target", "expected"),
        [
            ("/services/qwen", "/"),
            ("/services/qwen/", "/"),
            ("/services/qwen?q=1", "/?q=1"),
            ("/services/qwen/a?q=1", "/a?q=1"),
            ("/services/qwen/v1/chat/completions", "/v1/chat/completions"),
            ("/services/qwen/a/b/?x=1&y=%20", "/a/b/?x=1&y=%20"),
        ],
    )
    async def test_prefix_stripped_query_kept(
        self, env: Env, pg: ProxyGate, upstream: Upstream, target: str, expected: str
    ) -> None:
        out = await run(pg, target, payload=env.factory.v2())
        assert out.status == 200, out.body
        (req,) = upstream.requests
        assert req.url.raw_path.decode() == expected
        assert str(req.url).startswith("http://qwen-svc.llm.svc:8000/")

    async def test_percent_encoded_match_is_stripped_too(
        self, env: Env, pg: ProxyGate, upstream: Upstream
    ) -> None:
        """A path that matched only after normalization must not reach the upstream with the offer prefix."""
        out = await run(pg, "/services/%71wen/a", payload=env.factory.v2())
        assert out.status == 200
        (req,) = upstream.requests
        assert not req.url.raw_path.decode().startswith("/services/")

    async def test_headers_to_upstream(self, env: Env, pg: ProxyGate, upstream: Upstream) -> None:
        p = env.factory.v2()
        out = await run(
            pg,
            "/services/qwen/a",
            payload=p,
            headers={
                "x-payment": b64(p),
                "x-payment-status": "settled",
                "x-payment-payer": "0xdeadbeef",
                "x-payment-tx": "0xfake",
                "x-payment-anything": "1",
                "connection": "keep-alive, x-foo",
                "te": "trailers",
                "upgrade": "h2c",
                "keep-alive": "timeout=5",
                "proxy-authorization": "Basic abc",
                "authorization": "Bearer client-token",
                "x-forwarded-for": "198.51.100.7",
                "accept": "application/json",
                "x-custom": "kept",
            },
        )
        assert out.status == 200
        (req,) = upstream.requests
        h = req.headers
        for gone in (
            "payment-signature",
            "x-payment",
            "x-payment-tx",
            "x-payment-anything",
            "te",
            "upgrade",
            "keep-alive",
            "proxy-authorization",
        ):
            assert gone not in h, gone
        assert h.get_list("x-payment-status") == ["verified"]
        assert h.get_list("x-payment-payer") == [PAYER]
        assert (
            h["authorization"] == "Bearer client-token"
        )  # no upstreamAuth on this route: the client's passes
        assert h["x-forwarded-for"] == "198.51.100.7, 10.1.2.3"
        assert h["x-custom"] == "kept" and h["accept"] == "application/json"
        assert h["host"] == "qwen-svc.llm.svc:8000"

    async def test_litellm_authorization_replaces_clients(self, upstream: Upstream) -> None:
        env = make_env(route=offer_route(offer(service="litellm"), secrets=litellm_secrets))
        pg = proxy_gate(env, upstream)
        out = await run(
            pg,
            "/services/qwen/v1/chat",
            payload=env.factory.v2(),
            headers={"authorization": "Bearer attacker"},
        )
        assert out.status == 200
        assert upstream.requests[0].headers.get_list("authorization") == ["Bearer sk-master-123"]
        # the secret is never sent back to the client
        assert out.header("authorization") is None
        await pg.aclose()
        await env.aclose()

    async def test_no_peer_xff(self, env: Env, pg: ProxyGate, upstream: Upstream) -> None:
        out = Recorder()
        await pg.handle(preq("/services/qwen/a", peer=None, payment_signature=b64(env.factory.v2())), out)
        assert out.status == 200
        assert upstream.requests[0].headers.get("x-forwarded-for", "") == ""

    async def test_body_streamed(self, env: Env, pg: ProxyGate, upstream: Upstream) -> None:
        out = await run(
            pg,
            "/services/qwen/v1/chat",
            method="POST",
            body=(b'{"model":', b'"qwen"}'),
            payload=env.factory.v2(),
            headers={"content-type": "application/json"},
        )
        assert out.status == 200
        assert upstream.bodies == [b'{"model":"qwen"}']
        assert upstream.requests[0].method == "POST"

    async def test_upstream_timeout(self, env: Env, pg: ProxyGate, upstream: Upstream) -> None:
        await run(pg, "/services/qwen/a", payload=env.factory.v2())
        t = upstream.requests[0].extensions["timeout"]
        # max(maxTimeoutSeconds + 120, 60) = 420, but the settle must end before validBefore (now + 300):
        # 300 - settleTimeoutSeconds (30) - margin (5) = 265 (issue 9, defect 4)
        assert t["read"] == 265.0 and t["connect"] == 5.0

    async def test_short_max_timeout_gets_at_least_60s(self, upstream: Upstream) -> None:
        env = make_env(route=offer_route(offer(max_timeout=30)))
        pg = proxy_gate(env, upstream)
        await run(pg, "/services/qwen/a", payload=env.factory.v2())
        assert upstream.requests[0].extensions["timeout"]["read"] == 150.0
        await pg.aclose()
        await env.aclose()


class TestSettlement:
    async def test_2xx_settles_before_relaying(self, env: Env, upstream: Upstream) -> None:
        events: list[str] = []
        env.fac.events = events

        def reply(_r: httpx.Request) -> httpx.Response:
            events.append("upstream")
            return httpx.Response(
                201,
                content=b'{"id":1}',
                headers={
                    "content-type": "application/json",
                    "cache-control": "public, max-age=60",
                    "x-up": "1",
                },
            )

        upstream.reply = reply
        pg = proxy_gate(env, upstream)
        out = Recorder(events)
        await pg.handle(preq("/services/qwen/a", payment_signature=b64(env.factory.v2())), out)
        assert events == ["verify", "upstream", "settle", "start"]
        assert out.status == 201 and out.streamed
        assert out.body == b'{"id":1}'
        assert out.header("cache-control") == "private"
        assert out.header("x-up") == "1"
        assert out.header("content-length") is None  # hop-by-hop: the adapter frames the body
        receipt = decode_b64(out.header("payment-response"))
        assert receipt["success"] is True and receipt["transaction"] == TX
        assert out.header("x-payment-response") is None
        m = env.gate.metrics
        assert m.charged.value(*env.route.labels) == 1
        assert m.duration.count("proxy", "201") == 1
        await pg.aclose()

    async def test_no_store_kept(self, env: Env, upstream: Upstream) -> None:
        upstream.reply = lambda r: httpx.Response(200, content=b"x", headers={"cache-control": "no-store"})
        pg = proxy_gate(env, upstream)
        out = await run(pg, "/services/qwen/a", payload=env.factory.v2())
        assert out.header("cache-control") == "no-store"
        await pg.aclose()

    async def test_v1_receipt(self, env: Env, pg: ProxyGate) -> None:
        out = await run(pg, "/services/qwen/a", payload=env.factory.v1(), name="x-payment")
        assert out.status == 200
        assert decode_b64(out.header("x-payment-response"))["success"] is True
        assert out.header("payment-response") is None

    async def test_verify_only_does_not_apply(self, upstream: Upstream) -> None:
        env = make_env(verify_only=True)
        pg = proxy_gate(env, upstream)
        out = await run(pg, "/services/qwen/a", payload=env.factory.v2())
        assert out.status == 200 and env.fac.calls["settle"] == 1
        assert out.header("payment-response") is not None
        await pg.aclose()
        await env.aclose()

    @pytest.mark.parametrize("status", [500, 503, 302, 304, 404, 400, 101])
    async def test_non_2xx_relayed_unsettled(self, env: Env, upstream: Upstream, status: int) -> None:
        upstream.reply = lambda r: httpx.Response(
            status, content=b"upstream says no", headers={"location": "/elsewhere", "x-up": "1"}
        )
        pg = proxy_gate(env, upstream)
        p = env.factory.v2()
        out = await run(pg, "/services/qwen/a", payload=p)
        assert out.status == status
        assert out.body == b"upstream says no"
        assert out.header("location") == "/elsewhere"
        assert out.header("payment-response") is None
        assert env.fac.calls["settle"] == 0
        assert len(env.gate.replay) == 0
        assert env.gate.metrics.charged.values == {}
        # the entry was dropped: the same payment can be used again, and is charged when it succeeds
        upstream.reply = lambda r: httpx.Response(200, content=b"ok")
        out = await run(pg, "/services/qwen/a", payload=p)
        assert out.status == 200 and out.body == b"ok"
        assert env.fac.calls["settle"] == 1
        await pg.aclose()

    async def test_head_never_settles(self, env: Env, pg: ProxyGate, upstream: Upstream) -> None:
        p = env.factory.v2()
        out = await run(pg, "/services/qwen/a", method="HEAD", payload=p)
        assert out.status == 200
        assert upstream.requests[0].method == "HEAD"
        assert env.fac.calls["settle"] == 0 and env.gate.replay.counts()["in_flight"] == 0
        assert out.header("payment-response") is None
        again = await run(pg, "/services/qwen/a", method="HEAD", payload=p)
        assert again.status == 402 and len(upstream.requests) == 1  # one authorization, one HEAD

    @pytest.mark.parametrize(
        "error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("bad")]
    )
    async def test_upstream_unreachable(self, env: Env, upstream: Upstream, error: Exception) -> None:
        def reply(_r: httpx.Request) -> httpx.Response:
            raise error

        upstream.reply = reply
        pg = proxy_gate(env, upstream)
        p = env.factory.v2()
        out = await run(pg, "/services/qwen/a", payload=p)
        assert out.status == 502 and out.json()["error"] == "upstream_unavailable"
        assert env.fac.calls["settle"] == 0 and len(env.gate.replay) == 0
        await pg.aclose()

    async def test_unresolvable_upstream(self, env: Env, upstream: Upstream) -> None:
        def resolve(_route: Any) -> str:
            raise LookupError("Service llm/qwen-svc not found")

        pg = ProxyGate(env.gate, resolve=resolve, http=upstream.client())
        out = await run(pg, "/services/qwen/a", payload=env.factory.v2())
        assert out.status == 502 and out.json()["error"] == "upstream_unavailable"
        assert env.fac.calls["settle"] == 0 and len(env.gate.replay) == 0 and upstream.requests == []
        await pg.aclose()

    async def test_settle_failure_withholds_body(self, env: Env, upstream: Upstream) -> None:
        upstream.reply = lambda r: httpx.Response(200, content=b"SECRET ANSWER")
        env.fac.script["settle"].append(settle_failed)
        pg = proxy_gate(env, upstream)
        out = await run(pg, "/services/qwen/a", payload=env.factory.v2())
        assert out.status == 402
        assert not out.streamed
        assert b"SECRET ANSWER" not in out.body
        assert out.json()["error"] == "insufficient_funds"
        assert decode_b64(out.header("payment-response"))["success"] is False
        assert decode_b64(out.header("payment-required"))["error"] == "insufficient_funds"
        assert len(env.gate.replay) == 0
        await pg.aclose()

    async def test_settle_unknown_withholds_body_then_resolves(self, env: Env, upstream: Upstream) -> None:
        upstream.reply = lambda r: httpx.Response(200, content=b"SECRET ANSWER")
        env.fac.script["settle"] += [settle_pending, lambda r, b: httpx.Response(504)]
        pg = proxy_gate(env, upstream)
        p = env.factory.v2()
        out = await run(pg, "/services/qwen/a", payload=p)
        assert out.status == 503 and out.json()["error"] == "settlement_pending"
        assert out.header("retry-after") == "5"
        assert b"SECRET" not in out.body
        out = await run(pg, "/services/qwen/a", payload=p)
        assert out.status == 200 and out.body == b"SECRET ANSWER"
        assert env.fac.calls == {"verify": 1, "settle": 3, "supported": 0}
        await pg.aclose()

    async def test_pending_survives_upstream_failure_during_resolution(
        self, env: Env, upstream: Upstream
    ) -> None:
        """Re-presenting a pending payment whose upstream now fails must not forget the unresolved
        settlement (SPEC 7.9: pending is kept until resolved or validBefore + 10 min)."""
        env.fac.script["settle"] += [settle_pending, settle_pending]
        pg = proxy_gate(env, upstream)
        p = env.factory.v2()
        assert (await run(pg, "/services/qwen/a", payload=p)).status == 503
        upstream.reply = lambda r: httpx.Response(500, content=b"boom")
        assert (await run(pg, "/services/qwen/a", payload=p)).status == 500
        q = copy.deepcopy(p)
        q["resource"] = {"url": "https://other.example/"}
        out = await run(pg, "/services/qwen/a", payload=q)
        assert out.status == 503 and out.json()["error"] == "settlement_pending"
        await pg.aclose()

    async def test_hundred_concurrent_identical(self, env: Env, upstream: Upstream) -> None:
        async def slowish(req: httpx.Request, body: Any) -> httpx.Response:
            await asyncio.sleep(0.01)
            return jresp({"isValid": True, "payer": PAYER})

        env.fac.behaviour["verify"] = slowish
        pg = proxy_gate(env, upstream)
        p = env.factory.v2()
        outs = await asyncio.gather(*(run(pg, "/services/qwen/a", payload=p) for _ in range(100)))
        statuses = [o.status for o in outs]
        assert statuses.count(200) == 1
        assert set(statuses) <= {200, 409, 402}
        assert env.fac.calls["settle"] == 1 and len(upstream.requests) == 1
        await pg.aclose()

    async def test_static_route_with_url_upstream(self, upstream: Upstream) -> None:
        from kube402.verifier import config as config_mod
        from kube402.verifier import offers

        r = offers.static_route(
            config_mod.StaticRoute(
                pattern="/api/*",
                price="0.01",
                pay_to="0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
                network="base-sepolia",
                upstream="http://static-up:9000",
            )
        )
        assert r.mode == "proxy" and r.upstream == {"url": "http://static-up:9000"}
        env = make_env(route=r)
        pg = ProxyGate(env.gate, resolve=lambda route: str(route.upstream["url"]), http=upstream.client())
        out = await run(pg, "/api/v1/x?y=2", payload=env.factory.v2())
        assert out.status == 200
        assert str(upstream.requests[0].url) == "http://static-up:9000/v1/x?y=2"
        await pg.aclose()
        await env.aclose()
