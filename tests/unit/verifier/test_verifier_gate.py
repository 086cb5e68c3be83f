"""Gate.forward_auth (SPEC 7.7): every status-code path before settlement — trust, forwarded URI, readiness,
guards, unmatched paths, preflight, the 402 challenge, header errors, route binding, local checks, replay,
and the facilitator's /supported and /verify outcomes."""

from __future__ import annotations

import asyncio
import copy
import ipaddress
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from kube402.api import chains
from kube402.x402 import codes, precheck
from tests.support.payments import NOW, OTHER_KEY, PAY_TO, PAYER, PaymentFactory
from tests.support.verifier_env import (
    CAIP2,
    Env,
    FakeFacilitator,
    b64,
    body_json,
    call,
    error_of,
    fwd,
    hdr,
    jresp,
    keeper,
    litellm_secrets,
    make_env,
    offer,
    offer_route,
    required,
    verify_ok,
)

Code = codes.Code
USDC = chains.lookup("base-sepolia").usdc
RESOURCE = "https://api.example.com/services/qwen/v1/chat"
N = precheck._SECP256K1_N


def pay(
    env: Env, payload: dict[str, Any] | str, *, name: str = "payment-signature", **kw: Any
) -> dict[str, str]:
    value = payload if isinstance(payload, str) else b64(payload)
    return fwd(**kw) | {name: value}


def assert_json_error(resp: Any, status: int, code: str) -> None:
    assert resp.status == status, (resp.status, resp.body)
    assert hdr(resp, "content-type") == "application/json"
    body = body_json(resp)
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]
    if status == 503:
        assert hdr(resp, "retry-after") is not None
    assert hdr(resp, "authorization") is None
    assert hdr(resp, "x-payment-status") is None


def assert_challenge(resp: Any, error: str, *, status: int = 402) -> dict[str, Any]:
    assert resp.status == status, (resp.status, resp.body)
    assert hdr(resp, "cache-control") == "no-store"
    assert hdr(resp, "content-type") == "application/json"
    pr = required(resp)
    assert pr["x402Version"] == 2 and pr["error"] == error
    assert body_json(resp)["error"] == error
    assert hdr(resp, "authorization") is None
    return pr  # type: ignore[no-any-return]


# -- steps 1-5 ---------------------------------------------------------------------------------------------


class TestPreconditions:
    async def test_untrusted_peer_is_refused_before_anything_else(self) -> None:
        env = make_env(trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),), ready=False)
        for peer in ("192.168.1.5:41000", None, "garbage", "11.0.0.1:80"):
            resp = await call(env.gate, fwd(uri=None), peer=peer)
            assert_json_error(resp, 403, "untrusted_source")
        assert env.fac.calls == {"verify": 0, "settle": 0, "supported": 0}
        await env.aclose()

    async def test_trusted_peer_passes(self) -> None:
        env = make_env(trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")))
        for peer in ("10.0.0.5:40000", "10.200.1.1", "[::1]:9000"):
            resp = await call(env.gate, fwd(), peer=peer)
            assert resp.status == 402, peer
        await env.aclose()

    async def test_no_trusted_proxies_trusts_everyone(self, env: Env) -> None:
        resp = await call(env.gate, fwd(), peer="203.0.113.9:1")
        assert resp.status == 402

    async def test_missing_forwarded_uri(self, env: Env) -> None:
        resp = await call(env.gate, fwd(uri=None))
        assert_json_error(resp, 403, "missing_forwarded_uri")
        assert body_json(resp)["message"] == "forbidden: missing forwarded URI"
        assert env.gate.metrics.requests.values == {}

    async def test_missing_forwarded_uri_comes_before_readiness(self) -> None:
        env = make_env(ready=False)
        assert_json_error(await call(env.gate, fwd(uri=None)), 403, "missing_forwarded_uri")
        await env.aclose()

    async def test_not_ready_is_503_with_retry_after(self) -> None:
        env = make_env(ready=False, retry_after=7)
        p = env.factory.v2()
        resp = await call(env.gate, pay(env, p))
        assert_json_error(resp, 503, "not_ready")
        assert hdr(resp, "retry-after") == "7"
        assert env.fac.calls["verify"] == 0
        await env.aclose()

    async def test_unmatched_allow_is_empty_200(self, env: Env) -> None:
        resp = await call(env.gate, fwd("/public/index.html?x=1"))
        assert resp.status == 200
        assert resp.body == b""
        assert hdr(resp, "x-payment-status") is None and hdr(resp, "authorization") is None
        assert env.gate.metrics.requests.values == {}

    async def test_unmatched_with_payment_is_still_free_and_never_calls_facilitator(self, env: Env) -> None:
        resp = await call(env.gate, pay(env, env.factory.v2(), uri="/other"))
        assert resp.status == 200 and resp.body == b""
        assert env.fac.calls["verify"] == 0

    async def test_unmatched_deny_is_403_route_denied(self) -> None:
        env = make_env(unmatched="deny")
        assert_json_error(await call(env.gate, fwd("/public")), 403, "route_denied")
        await env.aclose()

    async def test_cors_preflight_is_free(self, env: Env) -> None:
        resp = await call(env.gate, fwd(method="OPTIONS", access_control_request_method="POST"))
        assert resp.status == 200
        assert env.fac.calls == {"verify": 0, "settle": 0, "supported": 0}
        assert env.gate.metrics.requests.value(*env.route.labels) == 1
        assert env.gate.metrics.payment_required.value(*env.route.labels) == 0

    async def test_options_without_preflight_header_is_challenged(self, env: Env) -> None:
        resp = await call(env.gate, fwd(method="OPTIONS"))
        assert_challenge(resp, codes.DEFAULT_CHALLENGE_ERROR)

    async def test_forwarded_method_not_subrequest_method_decides(self, env: Env) -> None:
        # the header getter has no notion of the sub-request's method: absent X-Forwarded-Method means GET
        h = fwd()
        del h["x-forwarded-method"]
        h["access-control-request-method"] = "POST"
        assert (await call(env.gate, h)).status == 402


class TestGuards:
    """Offers that exist but are not published answer 503 offer_unavailable — never 200, never 402."""

    @pytest.mark.parametrize("kind", ["paused", "unpublished", "deleting", "bad_price", "bad_network"])
    async def test_guarded_offer_paths(self, env: Env, kind: str) -> None:
        k = keeper(env)
        raw = {
            "paused": offer(paused=True),
            "unpublished": offer(published=False),
            "deleting": offer(deleting=True),
            "bad_price": offer(price={"perEpoch": "1"}),
            "bad_network": offer(network="solana"),
        }[kind]
        k.offer_changed(("llm", "qwen"), raw)
        k.rebuild()
        for uri in ("/services/qwen", "/services/qwen/", "/services/qwen/v1/chat?x=1"):
            resp = await call(env.gate, fwd(uri))
            assert_json_error(resp, 503, "offer_unavailable")
        paid = await call(env.gate, pay(env, env.factory.v2()))
        assert_json_error(paid, 503, "offer_unavailable")
        assert env.fac.calls["verify"] == 0
        # a sibling path is not affected
        assert (await call(env.gate, fwd("/services/qwenx/a"))).status == 200

    async def test_deleted_offer_guarded_for_grace_then_unmatched(self) -> None:
        env = make_env(guard_grace=60.0)
        clock = [100.0]
        k = keeper(env, clock)
        k.offer_changed(("llm", "qwen"), offer())
        k.rebuild()
        assert (await call(env.gate, fwd())).status == 402
        k.offer_deleted(("llm", "qwen"))
        k.rebuild()
        assert_json_error(await call(env.gate, fwd()), 503, "offer_unavailable")
        assert_json_error(await call(env.gate, pay(env, env.factory.v2())), 503, "offer_unavailable")
        clock[0] = 159.0
        k.rebuild()
        assert_json_error(await call(env.gate, fwd()), 503, "offer_unavailable")
        clock[0] = 161.0
        k.rebuild()
        resp = await call(env.gate, fwd())
        assert resp.status == 200 and resp.body == b""
        await env.aclose()

    async def test_deleted_paused_offer_stays_guarded_within_grace(self) -> None:
        env = make_env(guard_grace=60.0)
        clock = [0.0]
        k = keeper(env, clock)
        k.offer_changed(("llm", "qwen"), offer(paused=True))
        k.offer_deleted(("llm", "qwen"))
        k.rebuild()
        assert_json_error(await call(env.gate, fwd()), 503, "offer_unavailable")
        await env.aclose()

    async def test_recreated_offer_lifts_the_deleted_guard(self) -> None:
        env = make_env(guard_grace=60.0)
        clock = [0.0]
        k = keeper(env, clock)
        k.offer_changed(("llm", "qwen"), offer())
        k.offer_deleted(("llm", "qwen"))
        k.rebuild()
        assert (await call(env.gate, fwd())).status == 503
        k.offer_changed(("llm", "qwen"), offer())
        k.rebuild()
        assert (await call(env.gate, fwd())).status == 402
        await env.aclose()

    async def test_resume_after_pause(self, env: Env) -> None:
        k = keeper(env)
        k.offer_changed(("llm", "qwen"), offer(paused=True))
        k.rebuild()
        assert (await call(env.gate, fwd())).status == 503
        k.offer_changed(("llm", "qwen"), offer())
        k.rebuild()
        assert (await call(env.gate, fwd())).status == 402

    async def test_guard_hit_on_normalized_path(self, env: Env) -> None:
        k = keeper(env)
        k.offer_changed(("llm", "qwen"), offer(paused=True))
        k.rebuild()
        for uri in ("/services/%71wen/v1", "/public/../services/qwen/v1", "/services/./qwen"):
            assert_json_error(await call(env.gate, fwd(uri)), 503, "offer_unavailable")


# -- the challenge (SPEC 7.6) -------------------------------------------------------------------------


class TestChallenge:
    async def test_v2_header_and_v1_body_shape(self) -> None:
        route = offer_route(offer(max_timeout=120, description="Qwen chat"))
        env = make_env(route=route)
        resp = await call(env.gate, fwd("/services/qwen/v1/chat?stream=1#frag"))
        assert resp.status == 402
        assert hdr(resp, "cache-control") == "no-store"
        assert hdr(resp, "content-type") == "application/json"
        requirement = {
            "scheme": "exact",
            "network": CAIP2,
            "amount": "1000",
            "asset": USDC,
            "payTo": PAY_TO,
            "maxTimeoutSeconds": 120,
            "extra": {"name": "USDC", "version": "2"},
        }
        assert required(resp) == {
            "x402Version": 2,
            "error": "Payment required for this resource",
            "resource": {"url": RESOURCE, "description": "Qwen chat", "mimeType": "application/json"},
            "accepts": [requirement],
        }
        # standard base64 (not URL-safe), with padding
        value = hdr(resp, "payment-required")
        assert value is not None and "-" not in value and "_" not in value and len(value) % 4 == 0
        assert body_json(resp) == {
            "x402Version": 1,
            "error": "Payment required for this resource",
            "accepts": [
                {
                    "scheme": "exact",
                    "network": "base-sepolia",
                    "maxAmountRequired": "1000",
                    "asset": USDC,
                    "payTo": PAY_TO,
                    "resource": RESOURCE,
                    "description": "Qwen chat",
                    "mimeType": "application/json",
                    "maxTimeoutSeconds": 120,
                    "extra": {"name": "USDC", "version": "2"},
                }
            ],
        }
        assert env.gate.metrics.payment_required.value(*route.labels) == 1
        assert env.gate.metrics.requests.value(*route.labels) == 1
        await env.aclose()

    async def test_default_description_and_default_timeout(self, env: Env) -> None:
        pr = required(await call(env.gate, fwd()))
        assert pr["resource"]["description"] == "x402 payment-gated inference service: qwen"
        assert pr["accepts"][0]["maxTimeoutSeconds"] == 300

    async def test_resource_url_defaults_to_http_and_host_header(self, env: Env) -> None:
        h = {"x-forwarded-uri": "/services/qwen/a?b=c", "host": "obol.stack:8080"}
        pr = required(await call(env.gate, h))
        assert pr["resource"]["url"] == "http://obol.stack:8080/services/qwen/a"

    async def test_distinct_resource_urls_per_path(self, env: Env) -> None:
        a = required(await call(env.gate, fwd("/services/qwen/a")))
        b = required(await call(env.gate, fwd("/services/qwen/b?q=1")))
        assert a["resource"]["url"].endswith("/services/qwen/a")
        assert b["resource"]["url"] == "https://api.example.com/services/qwen/b"

    @pytest.mark.parametrize(
        "accept",
        [
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "text/html",
            "application/json;q=0.5, text/html",
        ],
    )
    async def test_html_paywall_when_browser_prefers_html(self, env: Env, accept: str) -> None:
        json_resp = await call(env.gate, fwd())
        resp = await call(env.gate, fwd(accept=accept))
        assert resp.status == 402
        assert hdr(resp, "content-type").startswith("text/html")  # type: ignore[union-attr]
        assert hdr(resp, "cache-control") == "no-store"
        assert hdr(resp, "payment-required") == hdr(json_resp, "payment-required")
        page = resp.body.decode()
        assert "<html" in page and "0.001 USDC" in page
        assert PAY_TO in page and RESOURCE in page and "PAYMENT-SIGNATURE" in page

    @pytest.mark.parametrize(
        "accept",
        [
            "application/json",
            "*/*",
            "application/json, text/html",
            "text/html;q=0.5, application/json",
            "text/html;q=0",
        ],
    )
    async def test_json_when_json_is_preferred(self, env: Env, accept: str) -> None:
        resp = await call(env.gate, fwd(accept=accept))
        assert hdr(resp, "content-type") == "application/json"
        assert body_json(resp)["x402Version"] == 1

    async def test_challenge_status_401_for_nginx(self) -> None:
        env = make_env(challenge_status=401)
        resp = await call(env.gate, fwd())
        assert resp.status == 401
        assert required(resp)["accepts"][0]["amount"] == "1000"
        assert hdr(resp, "cache-control") == "no-store"
        # refusals use it too
        p = env.factory.v2(auth=env.factory.authorization(value="5"))
        assert (await call(env.gate, pay(env, p))).status == 401
        await env.aclose()

    async def test_head_unpaid_gets_the_same_challenge(self, env: Env) -> None:
        get = await call(env.gate, fwd())
        head = await call(env.gate, fwd(method="HEAD"))
        assert head.status == 402
        assert hdr(head, "payment-required") == hdr(get, "payment-required")
        assert head.body == get.body

    async def test_network_without_v1_name_body_is_v2(self) -> None:
        env = make_env(route=offer_route(offer(network="arbitrum-one")))
        resp = await call(env.gate, fwd())
        body = body_json(resp)
        assert body["x402Version"] == 2
        assert body == required(resp)
        assert body["accepts"][0]["network"] == "eip155:42161"
        await env.aclose()


# -- step 6-7: the payment header -----------------------------------------------------------------------


class TestPaymentHeader:
    async def test_conflicting_headers(self, env: Env) -> None:
        a, b = env.factory.v2(), env.factory.v2()
        resp = await call(env.gate, fwd(payment_signature=b64(a), x_payment=b64(b)))
        assert_json_error(resp, 400, "conflicting_payment_headers")
        pr = required(resp)
        assert pr["error"] == "conflicting_payment_headers" and pr["accepts"]
        assert env.fac.calls["verify"] == 0

    async def test_identical_headers_are_fine(self, env: Env) -> None:
        v = b64(env.factory.v2())
        resp = await call(env.gate, fwd(payment_signature=v, x_payment=v))
        assert resp.status == 200

    async def test_too_large(self) -> None:
        env = make_env(max_payment_header_bytes=1024)
        for name in ("payment-signature", "x-payment"):
            resp = await call(env.gate, pay(env, "A" * 1025, name=name))
            assert_json_error(resp, 431, "payment_header_too_large")
            assert required(resp)["accepts"][0]["amount"] == "1000"
        at_limit = await call(env.gate, pay(env, "A" * 1024))
        assert at_limit.status == 400  # not too large, just not a payment
        assert env.fac.calls["verify"] == 0
        await env.aclose()

    async def test_default_limit_is_16k(self, env: Env) -> None:
        p = env.factory.v2()
        p["resource"]["description"] = "x" * 20000
        assert_json_error(await call(env.gate, pay(env, p)), 431, "payment_header_too_large")

    @pytest.mark.parametrize(
        "value",
        [
            "not base64 !!",
            "e30",  # {} (no x402Version → version error), see below
            b64([1, 2, 3]),
            b64("string"),
            "AAAA",
            "=",
            " ",
            "eyJ4NDAyVmVyc2lvbiI6Mn0",  # {"x402Version":2} — no accepted
            b64({"x402Version": 2, "accepted": {}, "payload": {}}),
            "😀",
        ],
    )
    async def test_invalid_payment_header(self, env: Env, value: str) -> None:
        resp = await call(env.gate, pay(env, value))
        assert resp.status == 400
        code = error_of(resp)
        assert code in {"invalid_payment_header", "invalid_x402_version"}
        pr = required(resp)
        assert pr["error"] == code and pr["accepts"][0]["payTo"] == PAY_TO
        assert env.fac.calls["verify"] == 0
        assert env.gate.metrics.failed.value(*env.route.labels) == 1

    async def test_invalid_header_body_shape(self, env: Env) -> None:
        resp = await call(env.gate, pay(env, "%%%"))
        assert_json_error(resp, 400, "invalid_payment_header")

    async def test_schema_failures_are_400(self, env: Env) -> None:
        good = env.factory.v2()
        broken = []
        mutations: tuple[Callable[[dict[str, Any]], object], ...] = (
            lambda p: p["payload"].pop("signature"),
            lambda p: p["payload"]["authorization"].__setitem__("nonce", "0x1234"),
            lambda p: p["payload"]["authorization"].__setitem__("value", 1000),
            lambda p: p["payload"]["authorization"].__setitem__("from", "0xnothex"),
            lambda p: p["accepted"].__setitem__("maxTimeoutSeconds", "300"),
            lambda p: p.__setitem__("accepted", "exact"),
        )
        for mutate in mutations:
            p = copy.deepcopy(good)
            mutate(p)
            broken.append(p)
        for p in broken:
            assert_json_error(await call(env.gate, pay(env, p)), 400, "invalid_payment_header")

    @pytest.mark.parametrize("version", [0, 3, "2", 2.0, None, True])
    async def test_invalid_x402_version(self, env: Env, version: Any) -> None:
        p = env.factory.v2()
        p["x402Version"] = version
        resp = await call(env.gate, pay(env, p))
        assert_json_error(resp, 400, "invalid_x402_version")
        assert required(resp)["error"] == "invalid_x402_version"

    async def test_v1_refused_when_accept_v1_false(self) -> None:
        env = make_env(accept_v1=False)
        resp = await call(env.gate, pay(env, env.factory.v1(), name="x-payment"))
        assert_json_error(resp, 400, "invalid_x402_version")
        # v2 still works
        assert (await call(env.gate, pay(env, env.factory.v2()))).status == 200
        await env.aclose()

    @pytest.mark.parametrize("encoding", ["urlsafe-nopad", "std-nopad", "whitespace"])
    async def test_lenient_base64(self, env: Env, encoding: str) -> None:
        import base64

        import orjson

        raw = orjson.dumps(env.factory.v2())
        value = {
            "urlsafe-nopad": base64.urlsafe_b64encode(raw).decode().rstrip("="),
            "std-nopad": base64.b64encode(raw).decode().rstrip("="),
            "whitespace": " " + base64.b64encode(raw).decode() + " ",
        }[encoding]
        assert (await call(env.gate, pay(env, value))).status == 200


# -- step 8: route binding ---------------------------------------------------------------------------


def _v2_with(
    factory: PaymentFactory, *, accepted: dict[str, Any] | None = None, auth: dict[str, Any] | None = None
) -> dict[str, Any]:
    a = factory.authorization(**(auth or {}))
    p = factory.v2(auth=a)
    p["accepted"].update(accepted or {})
    return p


OTHER_PAYTO = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


class TestRouteBinding:
    @pytest.mark.parametrize(
        "case",
        [
            "amount",
            "amount_and_value",
            "payTo",
            "payTo_and_to",
            "network",
            "asset",
            "extra_name",
            "extra_version",
            "extra_missing_key",
            "extra_null",
            "maxTimeoutSeconds",
            "scheme",
            "to_only",
            "value_only",
        ],
    )
    async def test_v2_mismatch(self, env: Env, case: str) -> None:
        f = env.factory
        p = {
            "amount": lambda: _v2_with(f, accepted={"amount": "999"}),
            "amount_and_value": lambda: _v2_with(f, accepted={"amount": "1"}, auth={"value": "1"}),
            "payTo": lambda: _v2_with(f, accepted={"payTo": OTHER_PAYTO}),
            "payTo_and_to": lambda: _v2_with(f, accepted={"payTo": OTHER_PAYTO}, auth={"to": OTHER_PAYTO}),
            "network": lambda: _v2_with(f, accepted={"network": "eip155:8453"}),
            "asset": lambda: _v2_with(f, accepted={"asset": chains.lookup("base").usdc}),
            "extra_name": lambda: _v2_with(f, accepted={"extra": {"name": "USD Coin", "version": "2"}}),
            "extra_version": lambda: _v2_with(f, accepted={"extra": {"name": "USDC", "version": "1"}}),
            "extra_missing_key": lambda: _v2_with(f, accepted={"extra": {"name": "USDC"}}),
            "extra_null": lambda: _v2_with(f, accepted={"extra": None}),
            "maxTimeoutSeconds": lambda: _v2_with(f, accepted={"maxTimeoutSeconds": 60}),
            "scheme": lambda: _v2_with(f, accepted={"scheme": "upto"}),
            "to_only": lambda: _v2_with(f, auth={"to": OTHER_PAYTO}),
            "value_only": lambda: _v2_with(f, auth={"value": "1001"}),
        }[case]()
        resp = await call(env.gate, pay(env, p))
        pr = assert_challenge(resp, "requirements_mismatch")
        assert pr["accepts"][0]["amount"] == "1000"
        assert env.fac.calls["verify"] == 0
        m = env.gate.metrics
        assert m.failures.value(*env.route.labels, "requirements_mismatch") == 1
        assert m.failed.value(*env.route.labels) == 1

    @pytest.mark.parametrize("case", ["network", "scheme", "to", "value"])
    async def test_v1_mismatch(self, env: Env, case: str) -> None:
        f = env.factory
        if case == "to":
            p = f.v1(auth=f.authorization(to=OTHER_PAYTO))
        elif case == "value":
            p = f.v1(auth=f.authorization(value="2000"))
        else:
            p = f.v1()
            p[case] = {"network": "base", "scheme": "upto"}[case]
        resp = await call(env.gate, pay(env, p, name="x-payment"))
        assert_challenge(resp, "requirements_mismatch")
        assert env.fac.calls["verify"] == 0

    async def test_case_insensitive_hex_and_client_extra_keys_bind(self, env: Env) -> None:
        p = _v2_with(
            env.factory,
            accepted={
                "payTo": PAY_TO.lower(),
                "asset": USDC.upper().replace("0X", "0x"),
                "extra": {"name": "USDC", "version": "2", "client": "x"},
            },
        )
        resp = await call(env.gate, pay(env, p))
        assert resp.status == 200
        # the facilitator got the server's own requirements, and the payload exactly as received
        assert env.fac.bodies["verify"][0]["paymentRequirements"] == dict(env.route.priced.requirements[0].v2)
        assert env.fac.bodies["verify"][0]["paymentPayload"] == p
        assert env.fac.bodies["verify"][0]["x402Version"] == 2

    async def test_v1_facilitator_body_uses_the_v1_requirements(self, env: Env) -> None:
        p = env.factory.v1()
        resp = await call(env.gate, pay(env, p, name="x-payment"))
        assert resp.status == 200
        body = env.fac.bodies["verify"][0]
        assert body["x402Version"] == 1 and body["paymentPayload"] == p
        reqs = body["paymentRequirements"]
        assert reqs["network"] == "base-sepolia" and reqs["maxAmountRequired"] == "1000"
        assert reqs["resource"] == RESOURCE and reqs["payTo"] == PAY_TO
        assert env.fac.bodies["settle"][0] == body


# -- step 9: local checks -----------------------------------------------------------------------------


def _high_s(sig: str) -> str:
    raw = bytes.fromhex(sig[2:])
    r, s, v = raw[:32], int.from_bytes(raw[32:64], "big"), raw[64]
    return "0x" + (r + (N - s).to_bytes(32, "big") + bytes([55 - v])).hex()


class TestLocalChecks:
    @pytest.mark.parametrize(
        ("auth", "code"),
        [
            ({"validAfter": str(NOW + 1)}, "invalid_exact_evm_payload_authorization_valid_after"),
            ({"validBefore": str(NOW + 5)}, "invalid_exact_evm_payload_authorization_valid_before"),
            ({"validBefore": str(NOW - 100)}, "invalid_exact_evm_payload_authorization_valid_before"),
            ({"validBefore": str(NOW + 2592000 + 1)}, "authorization_window_too_long"),
        ],
    )
    async def test_window(self, env: Env, auth: dict[str, str], code: str) -> None:
        f = env.factory
        p = f.v2(auth=f.authorization(**auth))
        assert_challenge(await call(env.gate, pay(env, p)), code)
        assert env.fac.calls["verify"] == 0
        assert env.gate.metrics.failures.value(*env.route.labels, code) == 1

    @pytest.mark.parametrize(
        "auth",
        [
            {"validBefore": str(NOW + 6)},
            {"validAfter": str(NOW)},
            {"validBefore": str(NOW + 2592000)},
        ],
    )
    async def test_window_edges_pass(self, env: Env, auth: dict[str, str]) -> None:
        f = env.factory
        assert (await call(env.gate, pay(env, f.v2(auth=f.authorization(**auth))))).status == 200

    async def test_max_validity_is_configurable(self) -> None:
        env = make_env(max_validity_seconds=3600)
        f = env.factory
        p = f.v2(auth=f.authorization(validBefore=str(NOW + 3601)))
        assert_challenge(await call(env.gate, pay(env, p)), "authorization_window_too_long")
        await env.aclose()

    @pytest.mark.parametrize(
        "case", ["other_key", "wrong_domain_name", "wrong_chain", "high_s", "tampered", "bad_v", "zero"]
    )
    async def test_bad_signature(self, env: Env, case: str) -> None:
        f = env.factory
        a = f.authorization()
        sig = {
            "other_key": lambda: f.sign(a, key=OTHER_KEY),
            "wrong_domain_name": lambda: f.sign(a, name="USD Coin"),
            "wrong_chain": lambda: f.sign(a, chain_id=8453),
            "high_s": lambda: _high_s(f.sign(a)),
            "tampered": lambda: f.sign(dict(a, value="1")),
            "bad_v": lambda: f.sign(a)[:-2] + "1d",
            "zero": lambda: "0x" + "00" * 65,
        }[case]()
        p = f.v2(auth=a, signature=sig)
        assert_challenge(await call(env.gate, pay(env, p)), "invalid_exact_evm_payload_signature")
        assert env.fac.calls["verify"] == 0

    async def test_v1_bad_signature(self, env: Env) -> None:
        f = env.factory
        a = f.authorization()
        p = f.v1(auth=a, signature=f.sign(a, key=OTHER_KEY))
        assert_challenge(
            await call(env.gate, pay(env, p, name="x-payment")), "invalid_exact_evm_payload_signature"
        )

    async def test_smart_wallet_signature_left_to_facilitator(self, env: Env) -> None:
        f = env.factory
        p = f.v2(signature="0x" + "12" * 200)
        env.fac.behaviour["verify"] = lambda r, b: jresp(
            {"isValid": False, "invalidReason": "invalid_exact_evm_failed_to_verify_signature"}
        )
        resp = await call(env.gate, pay(env, p))
        assert_challenge(resp, "invalid_exact_evm_failed_to_verify_signature")
        assert env.fac.calls["verify"] == 1


# -- step 10: replay --------------------------------------------------------------------------------


class TestReplay:
    async def test_payment_in_progress_while_first_waits(self, env: Env) -> None:
        release = asyncio.Event()

        async def slow(req: httpx.Request, body: Any) -> httpx.Response:
            await release.wait()
            return verify_ok(req, body)

        env.fac.behaviour["verify"] = slow
        p = env.factory.v2()
        first = asyncio.create_task(call(env.gate, pay(env, p)))
        for _ in range(200):
            if env.fac.calls["verify"]:
                break
            await asyncio.sleep(0.001)
        assert env.fac.calls["verify"] == 1
        second = await call(env.gate, pay(env, p))
        assert_json_error(second, 409, "payment_in_progress")
        # the same authorization in the other header, or re-encoded, is the same payment
        third = await call(env.gate, pay(env, p, name="x-payment"))
        assert_json_error(third, 409, "payment_in_progress")
        release.set()
        assert (await first).status == 200
        assert env.fac.calls == {"verify": 1, "settle": 1, "supported": 0}

    async def test_nonce_already_used_after_settlement(self, env: Env) -> None:
        p = env.factory.v2()
        assert (await call(env.gate, pay(env, p))).status == 200
        again = await call(env.gate, pay(env, p))
        assert_challenge(again, "nonce_already_used")
        # a different envelope around the same authorization (unsigned fields changed) is refused too
        q = copy.deepcopy(p)
        q["resource"] = {"url": "https://elsewhere/"}
        assert_challenge(await call(env.gate, pay(env, q)), "nonce_already_used")
        # same nonce, different case of from → same key
        r = copy.deepcopy(p)
        r["payload"]["authorization"]["from"] = PAYER.lower()
        assert_challenge(await call(env.gate, pay(env, r)), "nonce_already_used")
        assert env.fac.calls == {"verify": 1, "settle": 1, "supported": 0}
        assert env.gate.metrics.failures.value(*env.route.labels, "nonce_already_used") == 3

    async def test_settled_entries_expire_after_replay_ttl(self) -> None:
        env = make_env(replay_ttl=10.0)
        env.gate.replay.replay_ttl = 10.0
        p = env.factory.v2()
        assert (await call(env.gate, pay(env, p))).status == 200
        env.clock[0] += 11
        # after the TTL the chain's nonce is authoritative: the facilitator is asked again
        env.fac.behaviour["verify"] = lambda r, b: jresp(
            {"isValid": False, "invalidReason": "invalid_exact_evm_nonce_already_used"}
        )
        assert_challenge(await call(env.gate, pay(env, p)), "invalid_exact_evm_nonce_already_used")
        await env.aclose()

    async def test_hundred_concurrent_copies_one_200_one_settle(self, env: Env) -> None:
        async def slowish(req: httpx.Request, body: Any) -> httpx.Response:
            await asyncio.sleep(0.01)
            return verify_ok(req, body)

        env.fac.behaviour["verify"] = slowish
        h = pay(env, env.factory.v2())
        results = await asyncio.gather(*(call(env.gate, h) for _ in range(100)))
        statuses = [r.status for r in results]
        assert statuses.count(200) == 1
        assert set(statuses) <= {200, 409, 402}
        assert env.fac.calls["settle"] == 1
        assert env.fac.calls["verify"] == 1
        assert env.gate.metrics.charged.value(*env.route.labels) == 1

    async def test_distinct_nonces_each_served(self, env: Env) -> None:
        hs = [pay(env, env.factory.v2()) for _ in range(5)]
        results = await asyncio.gather(*(call(env.gate, h) for h in hs))
        assert [r.status for r in results] == [200] * 5
        assert env.fac.calls["settle"] == 5


# -- step 11: facilitator /supported and /verify -----------------------------------------------------


def _supported(kinds: list[dict[str, Any]]) -> Any:
    return lambda r, b: jresp({"kinds": kinds, "extensions": [], "signers": {}})


class TestFacilitatorVerify:
    async def test_unsupported_kind(self, env: Env) -> None:
        env.fac.behaviour["supported"] = _supported(
            [{"x402Version": 2, "scheme": "exact", "network": "eip155:8453"}]
        )
        assert await env.gate.facilitator.supported.refresh()  # type: ignore[union-attr]
        p = env.factory.v2()
        resp = await call(env.gate, pay(env, p))
        assert_json_error(resp, 503, "facilitator_unsupported")
        assert hdr(resp, "retry-after") == "5"
        assert env.fac.calls["verify"] == 0
        assert env.gate.metrics.unavailable.value(*env.route.labels, "facilitator_unsupported") == 1
        # the entry was dropped: once the facilitator supports it, the same payment works
        env.fac.behaviour["supported"] = _supported([{"x402Version": 2, "scheme": "exact", "network": CAIP2}])
        assert await env.gate.facilitator.supported.refresh()  # type: ignore[union-attr]
        assert (await call(env.gate, pay(env, p))).status == 200

    async def test_unsupported_v1_kind_only(self, env: Env) -> None:
        env.fac.behaviour["supported"] = _supported([{"x402Version": 2, "scheme": "exact", "network": CAIP2}])
        assert await env.gate.facilitator.supported.refresh()  # type: ignore[union-attr]
        assert_json_error(
            await call(env.gate, pay(env, env.factory.v1(), name="x-payment")), 503, "facilitator_unsupported"
        )
        assert (await call(env.gate, pay(env, env.factory.v2()))).status == 200

    async def test_failed_supported_fetch_does_not_refuse(self, env: Env) -> None:
        env.fac.behaviour["supported"] = lambda r, b: httpx.Response(500)
        assert not await env.gate.facilitator.supported.refresh()  # type: ignore[union-attr]
        assert (await call(env.gate, pay(env, env.factory.v2()))).status == 200

    @pytest.mark.parametrize(
        "failure",
        [
            "connect",
            "read",
            "timeout",
            "500",
            "502",
            "404",
            "garbage",
            "not_object",
            "no_isValid",
            "isValid_string",
            "reason_not_text",
        ],
    )
    async def test_verify_unavailable_fails_closed_and_allows_retry(self, failure: str) -> None:
        fac = FakeFacilitator()
        env = make_env(fac=fac)
        env.gate.facilitator = fac.facilitator(verify_timeout=0.05)

        async def hang(_r: httpx.Request, _b: Any) -> httpx.Response:
            await asyncio.sleep(5)
            return jresp({"isValid": True})

        def raise_(exc: Exception) -> Any:
            def f(_r: httpx.Request, _b: Any) -> httpx.Response:
                raise exc

            return f

        fac.script["verify"].append(
            {
                "connect": raise_(httpx.ConnectError("refused")),
                "read": raise_(httpx.ReadError("reset")),
                "timeout": hang,
                "500": lambda r, b: jresp({"isValid": True}, 500),
                "502": lambda r, b: httpx.Response(502, content=b"bad gateway"),
                "404": lambda r, b: httpx.Response(404),
                "garbage": lambda r, b: httpx.Response(200, content=b"<html>oops"),
                "not_object": lambda r, b: jresp([True]),
                "no_isValid": lambda r, b: jresp({"valid": True}),
                "isValid_string": lambda r, b: jresp({"isValid": "true"}),
                "reason_not_text": lambda r, b: jresp({"isValid": False, "invalidReason": 7}),
            }[failure]
        )
        p = env.factory.v2()
        resp = await call(env.gate, pay(env, p))
        assert_json_error(resp, 503, "facilitator_unavailable")
        assert hdr(resp, "retry-after") == "5"
        assert fac.calls["settle"] == 0
        assert len(env.gate.replay) == 0
        assert env.gate.metrics.unavailable.value(*env.route.labels, "facilitator_unavailable") == 1
        assert env.gate.metrics.charged.values == {}
        # the replay entry was dropped: the same payment succeeds once the facilitator is back
        assert (await call(env.gate, pay(env, p))).status == 200
        await env.aclose()

    async def test_no_facilitator_configured(self, env: Env) -> None:
        fac = env.gate.facilitator
        env.gate.facilitator = None
        assert_json_error(await call(env.gate, pay(env, env.factory.v2())), 503, "facilitator_unavailable")
        assert len(env.gate.replay) == 0
        env.gate.facilitator = fac

    @pytest.mark.parametrize(
        "reason",
        [
            "insufficient_funds",
            "invalid_exact_evm_insufficient_balance",
            "some_brand_new_reason",
            "x" * 300,
            None,
        ],
    )
    async def test_invalid_reason_passed_through(self, env: Env, reason: str | None) -> None:
        body: dict[str, Any] = {"isValid": False}
        if reason is not None:
            body["invalidReason"] = reason
        env.fac.script["verify"].append(lambda r, b: jresp(body))
        p = env.factory.v2()
        resp = await call(env.gate, pay(env, p, accept="application/json"))
        expected = (reason or "invalid_payment")[:256]
        assert_challenge(resp, expected)
        assert env.fac.calls["settle"] == 0
        assert env.gate.metrics.failures.value(*env.route.labels, "facilitator_invalid") == 1
        # entry dropped: a retry is verified again
        assert (await call(env.gate, pay(env, p))).status == 200
        assert env.fac.calls["verify"] == 2

    async def test_invalid_reason_html_escaped_in_paywall(self, env: Env) -> None:
        env.fac.script["verify"].append(
            lambda r, b: jresp({"isValid": False, "invalidReason": "<script>x</script>"})
        )
        resp = await call(env.gate, pay(env, env.factory.v2(), accept="text/html"))
        assert resp.status == 402
        assert b"<script>x" not in resp.body and b"&lt;script&gt;" in resp.body
        assert required(resp)["error"] == "<script>x</script>"

    async def test_verified_metric(self, env: Env) -> None:
        await call(env.gate, pay(env, env.factory.v2()))
        m = env.gate.metrics
        assert m.verified.value(*env.route.labels) == 1
        assert m.charged.value(*env.route.labels) == 1
        assert m.settlements.value(*env.route.labels, "success") == 1
        assert m.facilitator.count("verify", "valid") == 1
        assert m.duration.count("forwardAuth", "200") == 1
        text = m.render().decode()
        assert (
            'obol_x402_verifier_charged_requests_total{offer_name="qwen",offer_namespace="llm",'
            'route="/services/qwen/*"} 1.0' in text
        )


class TestVerifyOnly:
    async def test_verified_without_settlement_then_replay_refused(self) -> None:
        route = offer_route(offer(service="LiteLLM"), secrets=litellm_secrets)
        env = make_env(route=route, verify_only=True)
        p = env.factory.v2()
        resp = await call(env.gate, pay(env, p))
        assert resp.status == 200
        assert hdr(resp, "x-payment-status") == "verified"
        assert hdr(resp, "authorization") == "Bearer sk-master-123"
        assert hdr(resp, "x-payment-tx") is None and hdr(resp, "payment-response") is None
        assert env.fac.calls == {"verify": 1, "settle": 0, "supported": 0}
        assert env.gate.metrics.charged.values == {}
        assert env.gate.metrics.verified.value(*route.labels) == 1
        assert_challenge(await call(env.gate, pay(env, p)), "nonce_already_used")
        assert env.fac.calls["verify"] == 1
        # kept until validBefore, then forgotten
        env.clock[0] = NOW + 301
        assert_challenge(
            await call(env.gate, pay(env, p)), "invalid_exact_evm_payload_authorization_valid_before"
        )
        await env.aclose()
