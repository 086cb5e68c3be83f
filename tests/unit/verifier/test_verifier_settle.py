"""Gate.forward_auth settlement (SPEC 7.7 steps 12-14, 7.9): success receipts and headers, terminal failure,
unknown outcomes held as pending and resolved by the same payload, paid HEAD never settled."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import httpx
import pytest

from tests.support.payments import NOW, PAYER
from tests.support.verifier_env import (
    CAIP2,
    TX,
    Env,
    b64,
    body_json,
    call,
    decode_b64,
    fwd,
    hdr,
    jresp,
    litellm_secrets,
    make_env,
    offer,
    offer_route,
    required,
)

PENDING_TX = "0x" + "cd" * 32


def pay(payload: dict[str, Any], *, name: str = "payment-signature", **kw: Any) -> dict[str, str]:
    return fwd(**kw) | {name: b64(payload)}


def settle_pending(_r: httpx.Request, _b: Any) -> httpx.Response:
    return jresp(
        {"success": False, "errorReason": "settlement_pending", "transaction": PENDING_TX, "network": CAIP2}
    )


def settle_5xx(_r: httpx.Request, _b: Any) -> httpx.Response:
    return httpx.Response(502, content=b"upstream connect error")


def settle_terminal(reason: str = "invalid_exact_evm_nonce_already_used") -> Any:
    return lambda _r, _b: jresp(
        {"success": False, "errorReason": reason, "transaction": "", "network": CAIP2, "payer": PAYER}
    )


def assert_503_pending(resp: Any) -> None:
    assert resp.status == 503, (resp.status, resp.body)
    assert body_json(resp)["error"] == "settlement_pending"
    assert hdr(resp, "retry-after") == "5"
    assert hdr(resp, "authorization") is None and hdr(resp, "x-payment-status") is None


class TestSettleSuccess:
    async def test_v2_success_headers(self, env: Env) -> None:
        p = env.factory.v2()
        resp = await call(env.gate, pay(p))
        assert resp.status == 200
        assert resp.body == b""
        assert hdr(resp, "x-payment-status") == "settled"
        assert hdr(resp, "x-payment-tx") == TX
        receipt = decode_b64(hdr(resp, "payment-response"))
        assert receipt == {"success": True, "transaction": TX, "network": CAIP2, "payer": PAYER}
        assert hdr(resp, "x-payment-response") is None
        assert hdr(resp, "authorization") is None  # not a litellm upstream
        assert env.fac.events == ["verify", "settle"]
        assert env.fac.bodies["settle"][0] == env.fac.bodies["verify"][0]
        m = env.gate.metrics
        assert m.charged.value(*env.route.labels) == 1
        assert m.settlements.value(*env.route.labels, "success") == 1

    async def test_v1_success_uses_x_payment_response(self, env: Env) -> None:
        resp = await call(env.gate, pay(env.factory.v1(), name="x-payment"))
        assert resp.status == 200
        assert hdr(resp, "x-payment-status") == "settled"
        assert decode_b64(hdr(resp, "x-payment-response"))["transaction"] == TX
        assert hdr(resp, "payment-response") is None
        assert env.fac.bodies["settle"][0]["x402Version"] == 1

    async def test_v2_envelope_in_x_payment_is_v2(self, env: Env) -> None:
        resp = await call(env.gate, pay(env.factory.v2(), name="x-payment"))
        assert resp.status == 200
        assert hdr(resp, "payment-response") is not None and hdr(resp, "x-payment-response") is None
        assert env.fac.bodies["settle"][0]["x402Version"] == 2

    async def test_litellm_upstream_auth_only_on_2xx(self) -> None:
        route = offer_route(offer(service="litellm"), secrets=litellm_secrets)
        assert route.upstream_auth == "Bearer sk-master-123"
        env = make_env(route=route)
        assert hdr(await call(env.gate, fwd()), "authorization") is None  # the challenge
        p = env.factory.v2()
        resp = await call(env.gate, pay(p))
        assert resp.status == 200
        assert hdr(resp, "authorization") == "Bearer sk-master-123"
        assert hdr(await call(env.gate, pay(p)), "authorization") is None  # replay refusal
        env.fac.behaviour["settle"] = settle_terminal()
        assert hdr(await call(env.gate, pay(env.factory.v2())), "authorization") is None
        env.fac.behaviour["settle"] = settle_5xx
        assert hdr(await call(env.gate, pay(env.factory.v2())), "authorization") is None
        await env.aclose()

    async def test_one_retry_on_unknown_then_success(self, env: Env) -> None:
        env.fac.script["settle"] += [settle_5xx]
        resp = await call(env.gate, pay(env.factory.v2()))
        assert resp.status == 200 and hdr(resp, "x-payment-tx") == TX
        assert env.fac.calls["settle"] == 2
        # both attempts carried the same body
        assert env.fac.bodies["settle"][0] == env.fac.bodies["settle"][1]

    async def test_one_retry_after_pending_then_success(self, env: Env) -> None:
        env.fac.script["settle"] += [settle_pending]
        assert (await call(env.gate, pay(env.factory.v2()))).status == 200
        assert env.fac.calls["settle"] == 2


class TestSettleTerminalFailure:
    async def test_terminal_failure_is_402_with_failed_receipt(self, env: Env) -> None:
        env.fac.script["settle"].append(settle_terminal("insufficient_funds"))
        p = env.factory.v2()
        resp = await call(env.gate, pay(p))
        assert resp.status == 402
        assert hdr(resp, "cache-control") == "no-store"
        assert body_json(resp)["error"] == "insufficient_funds"
        assert required(resp)["error"] == "insufficient_funds"
        receipt = decode_b64(hdr(resp, "payment-response"))
        assert receipt["success"] is False and receipt["errorReason"] == "insufficient_funds"
        assert hdr(resp, "x-payment-status") is None and hdr(resp, "x-payment-tx") is None
        assert env.fac.calls["settle"] == 1  # terminal: no retry
        m = env.gate.metrics
        assert m.settlements.value(*env.route.labels, "failed") == 1
        assert m.failures.value(*env.route.labels, "settle_failed") == 1
        assert m.charged.values == {}
        # entry dropped: the buyer may try again (e.g. after funding)
        assert (await call(env.gate, pay(p))).status == 200

    async def test_v1_terminal_failure_receipt_name(self, env: Env) -> None:
        env.fac.script["settle"].append(settle_terminal())
        resp = await call(env.gate, pay(env.factory.v1(), name="x-payment"))
        assert resp.status == 402
        assert decode_b64(hdr(resp, "x-payment-response"))["success"] is False
        assert hdr(resp, "payment-response") is None

    async def test_unknown_then_terminal(self, env: Env) -> None:
        env.fac.script["settle"] += [settle_5xx, settle_terminal("transaction_failed")]
        resp = await call(env.gate, pay(env.factory.v2()))
        # the first attempt may have executed (issue 9, defect 2): without chain access it stays pending
        assert resp.status == 503 and body_json(resp)["error"] == "settlement_pending"

    async def test_unknown_then_terminal_not_transferred_is_402(self, env: Env) -> None:
        async def canceled(_a: Any) -> bool:
            return False

        env.gate.chain = canceled
        env.fac.script["settle"] += [settle_5xx, settle_terminal("transaction_failed")]
        resp = await call(env.gate, pay(env.factory.v2()))
        assert resp.status == 402 and body_json(resp)["error"] == "transaction_failed"


class TestSettlementPending:
    @pytest.mark.parametrize("unknown", ["5xx", "pending", "timeout", "transport", "garbage"])
    async def test_unknown_twice_is_pending_then_same_payload_resolves(self, unknown: str) -> None:
        env = make_env()
        env.gate.facilitator = env.fac.facilitator(settle_timeout=0.05)

        async def hang(_r: httpx.Request, _b: Any) -> httpx.Response:
            await asyncio.sleep(5)
            return jresp({"success": True})

        def transport(_r: httpx.Request, _b: Any) -> httpx.Response:
            raise httpx.ConnectError("refused")

        fn = {
            "5xx": settle_5xx,
            "pending": settle_pending,
            "timeout": hang,
            "transport": transport,
            "garbage": lambda r, b: httpx.Response(200, content=b"not json"),
        }[unknown]
        env.fac.script["settle"] += [fn, fn]
        p = env.factory.v2()
        resp = await call(env.gate, pay(p))
        assert_503_pending(resp)
        assert env.fac.calls["settle"] == 2
        m = env.gate.metrics
        assert m.settlements.value(*env.route.labels, "pending") == 1
        assert m.unavailable.value(*env.route.labels, "settlement_pending") == 1
        assert m.charged.values == {}
        entry = env.gate.replay.get(env.gate.replay._entries.__iter__().__next__())
        assert entry is not None and entry.state == "pending"
        if unknown == "pending":
            assert entry.tx == PENDING_TX
        # the same payload again: re-settled (not re-verified), success → served
        resp = await call(env.gate, pay(p))
        assert resp.status == 200
        assert hdr(resp, "x-payment-status") == "settled" and hdr(resp, "x-payment-tx") == TX
        assert env.fac.calls == {"verify": 1, "settle": 3, "supported": 0}
        assert env.fac.bodies["settle"][2] == env.fac.bodies["settle"][0]
        # and now it is settled
        assert body_json(await call(env.gate, pay(p)))["error"] == "nonce_already_used"
        await env.aclose()

    async def test_same_payload_in_other_header_or_encoding_resolves(self, env: Env) -> None:
        env.fac.script["settle"] += [settle_pending, settle_pending]
        p = env.factory.v2()
        assert_503_pending(await call(env.gate, pay(p)))
        resp = await call(env.gate, pay(p, name="x-payment"))
        assert resp.status == 200

    async def test_pending_keeps_the_transaction_hash(self, env: Env) -> None:
        """SPEC 7.9: a pending entry stores any transaction hash — also when the retry that followed the
        facilitator's ``settlement_pending`` (with its tx) failed in transport, and across later unknowns."""
        env.fac.script["settle"] += [settle_pending, settle_5xx]
        p = env.factory.v2()
        assert_503_pending(await call(env.gate, pay(p)))
        ((_key, entry),) = env.gate.replay._entries.items()
        assert entry.state == "pending"
        assert entry.tx == PENDING_TX
        env.fac.script["settle"] += [settle_5xx, settle_5xx]
        assert_503_pending(await call(env.gate, pay(p)))
        ((_key, entry),) = env.gate.replay._entries.items()
        assert entry.tx == PENDING_TX

    async def test_still_unknown_stays_pending(self, env: Env) -> None:
        env.fac.behaviour["settle"] = settle_pending
        p = env.factory.v2()
        for _ in range(3):
            assert_503_pending(await call(env.gate, pay(p)))
        assert env.fac.calls["verify"] == 1
        assert env.fac.calls["settle"] == 6

    async def test_different_payload_same_nonce_while_pending(self, env: Env) -> None:
        env.fac.script["settle"] += [settle_pending, settle_pending]
        p = env.factory.v2()
        assert_503_pending(await call(env.gate, pay(p)))
        q = copy.deepcopy(p)
        q["resource"] = {"url": "https://other.example/x", "description": "", "mimeType": "application/json"}
        resp = await call(env.gate, pay(q))
        assert_503_pending(resp)
        assert env.fac.calls["settle"] == 2 and env.fac.calls["verify"] == 1
        # the original still resolves
        assert (await call(env.gate, pay(p))).status == 200

    async def test_pending_resolution_terminal_failure_is_402_with_receipt(self, env: Env) -> None:
        async def not_transferred(_a: Any) -> bool:
            return False

        env.gate.chain = not_transferred
        env.fac.script["settle"] += [settle_pending, settle_pending, settle_terminal("transaction_failed")]
        p = env.factory.v2()
        assert_503_pending(await call(env.gate, pay(p)))
        resp = await call(env.gate, pay(p))
        assert resp.status == 402
        assert body_json(resp)["error"] == "transaction_failed"
        assert decode_b64(hdr(resp, "payment-response"))["success"] is False

    async def test_concurrent_resolution_attempts(self, env: Env) -> None:
        env.fac.script["settle"] += [settle_pending, settle_pending]
        p = env.factory.v2()
        assert_503_pending(await call(env.gate, pay(p)))
        release = asyncio.Event()

        async def slow_ok(_r: httpx.Request, _b: Any) -> httpx.Response:
            await release.wait()
            return jresp({"success": True, "transaction": TX, "network": CAIP2})

        env.fac.script["settle"].append(slow_ok)
        first = asyncio.create_task(call(env.gate, pay(p)))
        for _ in range(200):
            if env.fac.calls["settle"] == 3:
                break
            await asyncio.sleep(0.001)
        second = await call(env.gate, pay(p))
        assert second.status == 409
        release.set()
        assert (await first).status == 200

    async def test_pending_survives_a_paid_head(self, env: Env) -> None:
        """A HEAD with the pending payload verifies but does not settle; the pending record must survive
        (SPEC 7.9: pending is kept until resolved or validBefore + 10 min)."""
        env.fac.script["settle"] += [settle_pending, settle_pending]
        p = env.factory.v2()
        assert_503_pending(await call(env.gate, pay(p)))
        head = await call(env.gate, pay(p, method="HEAD"))
        assert head.status in (200, 503)
        assert env.fac.calls["settle"] == 2  # HEAD never settles
        # a different payload with the same nonce must still be held off by the unresolved settlement
        q = copy.deepcopy(p)
        q["resource"] = {"url": "https://other.example/x"}
        assert_503_pending(await call(env.gate, pay(q)))

    async def test_pending_forgotten_after_valid_before(self, env: Env) -> None:
        env.fac.script["settle"] += [settle_pending, settle_pending]
        p = env.factory.v2()
        assert_503_pending(await call(env.gate, pay(p)))
        env.clock[0] = NOW + 300 + 601
        resp = await call(env.gate, pay(p))
        assert resp.status == 402  # the authorization can no longer execute: a fresh 402 is safe
        assert body_json(resp)["error"] == "invalid_exact_evm_payload_authorization_valid_before"
        (key,) = list(env.gate.replay._entries)
        assert env.gate.replay.get(key) is None  # expired at validBefore + 10 min
        assert len(env.gate.replay) == 0


class TestHead:
    async def test_paid_head_is_verified_never_settled(self, env: Env) -> None:
        p = env.factory.v2()
        resp = await call(env.gate, pay(p, method="HEAD"))
        assert resp.status == 200
        assert hdr(resp, "x-payment-status") == "verified"
        assert hdr(resp, "x-payment-tx") is None and hdr(resp, "payment-response") is None
        assert env.fac.calls["verify"] == 1 and env.fac.calls["settle"] == 0
        assert env.gate.metrics.charged.values == {}
        # the authorization was not consumed: a GET with it is served and settled once
        assert (await call(env.gate, pay(p))).status == 200
        assert env.fac.calls["settle"] == 1

    async def test_paid_head_with_litellm_auth(self) -> None:
        env = make_env(route=offer_route(offer(service="litellm"), secrets=litellm_secrets))
        resp = await call(env.gate, pay(env.factory.v2(), method="head"))
        assert resp.status == 200 and hdr(resp, "authorization") == "Bearer sk-master-123"
        assert env.fac.calls["settle"] == 0
        await env.aclose()

    async def test_many_heads_never_settle(self, env: Env) -> None:
        for _ in range(5):
            assert (await call(env.gate, pay(env.factory.v2(), method="HEAD"))).status == 200
        assert env.fac.calls["settle"] == 0
