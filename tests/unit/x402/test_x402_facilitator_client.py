"""Facilitator client over httpx.MockTransport: bodies, redirects, timeouts, junk, pending, /supported cache."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import httpx
import orjson
import pytest

from kube402.x402 import facilitator_client as fc

BASE = "https://facilitator.test/api"
PAYLOAD = {"x402Version": 2, "accepted": {"scheme": "exact"}, "payload": {"signature": "0x00"}}
REQUIREMENTS = {"scheme": "exact", "network": "eip155:84532", "amount": "1000"}
Handler = (
    Callable[[httpx.Request], httpx.Response]
    | Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]
)


def client(handler: Handler, **kwargs: Any) -> fc.FacilitatorClient:
    return fc.FacilitatorClient(BASE, transport=httpx.MockTransport(handler), **kwargs)


def json_response(obj: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=orjson.dumps(obj), headers={"content-type": "application/json"})


async def unavailable(call: Awaitable[Any]) -> fc.FacilitatorUnavailable:
    with pytest.raises(fc.FacilitatorUnavailable) as err:
        await call
    return err.value


class TestVerify:
    async def test_request_body_and_result(self) -> None:
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return json_response({"isValid": True, "payer": "0xabc", "invalidMessage": None})

        async with client(handler) as c:
            result = await c.verify(PAYLOAD, REQUIREMENTS, version=2)
        assert result == fc.VerifyResult(
            is_valid=True,
            invalid_reason=None,
            payer="0xabc",
            raw={"isValid": True, "payer": "0xabc", "invalidMessage": None},
        )
        (request,) = seen
        assert request.method == "POST" and str(request.url) == f"{BASE}/verify"
        assert request.headers["content-type"] == "application/json"
        assert "authorization" not in request.headers
        assert orjson.loads(request.content) == {
            "x402Version": 2,
            "paymentPayload": PAYLOAD,
            "paymentRequirements": REQUIREMENTS,
        }

    async def test_invalid_reason_is_passed_through(self) -> None:
        async with client(
            lambda r: json_response({"isValid": False, "invalidReason": "some_new_reason"})
        ) as c:
            result = await c.verify(PAYLOAD, REQUIREMENTS, version=1)
        assert (result.is_valid, result.invalid_reason, result.payer) == (False, "some_new_reason", None)

    async def test_static_authorization_header_is_sent_and_never_shown(self) -> None:
        seen: list[str | None] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request.headers.get("authorization"))
            return json_response({"isValid": True})

        async with client(handler, authorization="Bearer s3cret") as c:
            await c.verify(PAYLOAD, REQUIREMENTS, version=2)
            assert "s3cret" not in repr(c)
        assert seen == ["Bearer s3cret"]

    async def test_trailing_slash_of_the_base_url_is_trimmed(self) -> None:
        seen: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(str(request.url))
            return json_response({"isValid": True})

        c = fc.FacilitatorClient(BASE + "/", transport=httpx.MockTransport(handler))
        await c.verify(PAYLOAD, REQUIREMENTS, version=2)
        await c.aclose()
        assert seen == [f"{BASE}/verify"] and c.base_url == BASE


def test_base_url_must_be_http() -> None:
    with pytest.raises(ValueError):
        fc.FacilitatorClient("ftp://facilitator.test")


GARBAGE = [
    pytest.param(lambda: httpx.Response(200, content=b"<html>oops</html>"), id="html"),
    pytest.param(lambda: httpx.Response(200, content=b""), id="empty"),
    pytest.param(lambda: json_response([1, 2]), id="array"),
    pytest.param(lambda: json_response({}), id="no-fields"),
    pytest.param(lambda: json_response({"isValid": "true", "success": "true"}), id="string-bool"),
    pytest.param(
        lambda: json_response({"isValid": False, "success": False, "invalidReason": 5, "errorReason": 5}),
        id="reason-type",
    ),
    pytest.param(lambda: httpx.Response(200, content=b"{" * 100_000), id="deep"),
    pytest.param(lambda: httpx.Response(200, content=b" " * (fc.MAX_RESPONSE_BYTES + 1)), id="oversized"),
]


class TestFailuresAreUnavailable:
    @pytest.mark.parametrize("status", [500, 502, 503, 504, 400, 401, 404, 201, 204])
    @pytest.mark.parametrize("endpoint", ["verify", "settle"])
    async def test_non_200_status(self, status: int, endpoint: str) -> None:
        async with client(lambda r: json_response({"isValid": True, "success": True}, status)) as c:
            err = await unavailable(getattr(c, endpoint)(PAYLOAD, REQUIREMENTS, version=2))
        assert (err.cause, err.status, err.endpoint.value) == (fc.Failure.STATUS, status, endpoint)

    @pytest.mark.parametrize("response", GARBAGE)
    @pytest.mark.parametrize("endpoint", ["verify", "settle"])
    async def test_garbage_body(self, response: Callable[[], httpx.Response], endpoint: str) -> None:
        async with client(lambda r: response()) as c:
            err = await unavailable(getattr(c, endpoint)(PAYLOAD, REQUIREMENTS, version=2))
        assert err.cause is fc.Failure.BODY

    @pytest.mark.parametrize(
        "exc",
        [httpx.ConnectError("refused"), httpx.RemoteProtocolError("bad"), httpx.ReadError("reset")],
        ids=lambda e: type(e).__name__,
    )
    async def test_transport_errors(self, exc: Exception) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            raise exc

        async with client(handler) as c:
            err = await unavailable(c.verify(PAYLOAD, REQUIREMENTS, version=2))
        assert err.cause is fc.Failure.TRANSPORT and err.__cause__ is exc

    async def test_httpx_timeouts(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            raise httpx.ReadTimeout("slow", request=request)

        async with client(handler) as c:
            err = await unavailable(c.settle(PAYLOAD, REQUIREMENTS, version=2))
        assert err.cause is fc.Failure.TIMEOUT

    @pytest.mark.parametrize("endpoint", ["verify", "settle", "supported"])
    async def test_whole_call_deadline_per_endpoint(self, endpoint: str) -> None:
        async def slow(request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(5)
            return json_response({})

        timeouts = fc.Timeouts(verify=0.05, settle=0.05, supported=0.05)
        async with client(slow, timeouts=timeouts) as c:
            call = (
                c.supported()
                if endpoint == "supported"
                else getattr(c, endpoint)(PAYLOAD, REQUIREMENTS, version=2)
            )
            loop = asyncio.get_running_loop()
            start = loop.time()
            err = await unavailable(call)
        assert err.cause is fc.Failure.TIMEOUT and loop.time() - start < 1

    def test_default_timeouts(self) -> None:
        t = fc.Timeouts()
        assert (t.of(fc.Endpoint.VERIFY), t.of(fc.Endpoint.SETTLE), t.of(fc.Endpoint.SUPPORTED)) == (5, 30, 5)


def redirecting(
    status: int, hops: int, *, location: str | None = None
) -> tuple[Handler, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) <= hops:
            target = (
                location if location is not None else f"https://www.facilitator.test/hop{len(seen)}/verify"
            )
            return httpx.Response(status, headers={"location": target})
        return json_response({"isValid": True})

    return handler, seen


class TestRedirects:
    @pytest.mark.parametrize("status", [307, 308])
    async def test_307_and_308_are_followed_with_method_and_body(self, status: int) -> None:
        handler, seen = redirecting(status, 3)
        async with client(handler) as c:
            assert (await c.verify(PAYLOAD, REQUIREMENTS, version=2)).is_valid
        assert len(seen) == 4
        assert {r.method for r in seen} == {"POST"}
        assert len({r.content for r in seen}) == 1
        assert str(seen[-1].url) == "https://www.facilitator.test/hop3/verify"

    async def test_at_most_three_hops(self) -> None:
        handler, seen = redirecting(308, 4)
        async with client(handler) as c:
            err = await unavailable(c.verify(PAYLOAD, REQUIREMENTS, version=2))
        assert err.cause is fc.Failure.REDIRECT and len(seen) == 4

    @pytest.mark.parametrize("status", [301, 302, 303])
    async def test_other_redirects_are_not_followed(self, status: int) -> None:
        handler, seen = redirecting(status, 1)
        async with client(handler) as c:
            err = await unavailable(c.verify(PAYLOAD, REQUIREMENTS, version=2))
        assert (err.cause, err.status, len(seen)) == (fc.Failure.STATUS, status, 1)

    async def test_relative_location(self) -> None:
        handler, seen = redirecting(307, 1, location="/v2/verify")
        async with client(handler) as c:
            await c.verify(PAYLOAD, REQUIREMENTS, version=2)
        assert str(seen[1].url) == "https://facilitator.test/v2/verify"

    @pytest.mark.parametrize(
        "location", ["", "http://facilitator.test/verify", "ftp://facilitator.test/verify"]
    )
    async def test_unusable_location(self, location: str) -> None:
        handler, seen = redirecting(308, 1, location=location)
        async with client(handler) as c:
            err = await unavailable(c.verify(PAYLOAD, REQUIREMENTS, version=2))
        assert err.cause is fc.Failure.REDIRECT and len(seen) == 1

    async def test_credentials_stay_with_the_configured_origin(self) -> None:
        handler, seen = redirecting(307, 2, location="https://other.test/verify")
        async with client(handler, authorization="Bearer s3cret") as c:
            await c.verify(PAYLOAD, REQUIREMENTS, version=2)
        assert [r.headers.get("authorization") for r in seen] == ["Bearer s3cret", None, None]

    async def test_same_origin_redirect_keeps_credentials(self) -> None:
        handler, seen = redirecting(308, 1, location="/api/v2/verify")
        async with client(handler, authorization="Bearer s3cret") as c:
            await c.verify(PAYLOAD, REQUIREMENTS, version=2)
        assert [r.headers.get("authorization") for r in seen] == ["Bearer s3cret", "Bearer s3cret"]


class TestSettle:
    async def test_success(self) -> None:
        body = {
            "success": True,
            "transaction": "0x" + "aa" * 32,
            "network": "eip155:84532",
            "payer": "0xp",
            "amount": "1000",
        }
        async with client(lambda r: json_response(body)) as c:
            result = await c.settle(PAYLOAD, REQUIREMENTS, version=2)
        assert result.success and result.outcome is fc.SettleOutcome.SUCCESS and not result.pending
        assert (result.transaction, result.network, result.payer, result.raw) == (
            "0x" + "aa" * 32,
            "eip155:84532",
            "0xp",
            body,
        )

    async def test_terminal_failure(self) -> None:
        body = {
            "success": False,
            "errorReason": "invalid_exact_evm_nonce_already_used",
            "transaction": "",
            "network": "base",
        }
        async with client(lambda r: json_response(body)) as c:
            result = await c.settle(PAYLOAD, REQUIREMENTS, version=1)
        assert (
            result.outcome is fc.SettleOutcome.FAILED
            and result.error_reason == "invalid_exact_evm_nonce_already_used"
        )

    async def test_settlement_pending_is_not_terminal(self) -> None:
        body = {
            "success": False,
            "errorReason": "settlement_pending",
            "transaction": "0x" + "bb" * 32,
            "network": "eip155:8453",
        }
        async with client(lambda r: json_response(body)) as c:
            result = await c.settle(PAYLOAD, REQUIREMENTS, version=2)
        assert result.pending and result.outcome is fc.SettleOutcome.PENDING
        assert result.transaction == "0x" + "bb" * 32

    async def test_missing_optional_fields(self) -> None:
        async with client(lambda r: json_response({"success": False})) as c:
            result = await c.settle(PAYLOAD, REQUIREMENTS, version=2)
        assert (result.transaction, result.network, result.error_reason, result.payer) == ("", "", None, None)

    async def test_request_goes_to_settle(self) -> None:
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return json_response({"success": True, "transaction": "0x1", "network": "n"})

        async with client(handler) as c:
            await c.settle(PAYLOAD, REQUIREMENTS, version=2)
        assert str(seen[0].url) == f"{BASE}/settle"
        assert orjson.loads(seen[0].content)["paymentRequirements"] == REQUIREMENTS


SUPPORTED = {
    "kinds": [
        {"x402Version": 2, "scheme": "exact", "network": "eip155:84532"},
        {"x402Version": 1, "scheme": "exact", "network": "base-sepolia", "extra": {"feePayer": "x"}},
        {"x402Version": 2, "scheme": "exact", "network": "solana:*"},
    ],
    "extensions": [],
    "signers": {"eip155:*": ["0x1"]},
}


class TestSupported:
    async def test_parse(self) -> None:
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return json_response(SUPPORTED)

        async with client(handler) as c:
            kinds = await c.supported()
        assert seen[0].method == "GET" and str(seen[0].url) == f"{BASE}/supported"
        assert kinds.supports(2, "exact", "eip155:84532")
        assert kinds.supports(1, "exact", "base-sepolia")
        assert not kinds.supports(1, "exact", "eip155:84532")
        assert not kinds.supports(2, "exact", "eip155:8453")
        assert not kinds.supports(2, "upto", "eip155:84532")
        assert kinds.supports(2, "exact", "solana:mainnet")

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"kinds": {}},
            {"kinds": [1]},
            {"kinds": [{"x402Version": "2", "scheme": "exact", "network": "n"}]},
        ],
        ids=str,
    )
    async def test_garbage(self, body: Any) -> None:
        async with client(lambda r: json_response(body)) as c:
            err = await unavailable(c.supported())
        assert err.cause is fc.Failure.BODY and err.endpoint is fc.Endpoint.SUPPORTED


class TestSupportedCache:
    async def test_unknown_until_fetched_then_last_good_answer_is_kept(self) -> None:
        responses = [json_response({}, 503), json_response(SUPPORTED), json_response({}, 500)]
        async with client(lambda r: responses.pop(0)) as c:
            cache = fc.SupportedCache(c, ttl_seconds=600)
            assert cache.kind_supported(2, "exact", "eip155:84532") is None
            assert await cache.refresh() is False
            assert cache.kind_supported(2, "exact", "eip155:84532") is None and cache.last_error is not None
            assert await cache.refresh() is True
            assert cache.kind_supported(2, "exact", "eip155:84532") is True and cache.last_error is None
            assert cache.kind_supported(2, "exact", "eip155:1") is False
            assert await cache.refresh() is False
            assert cache.kind_supported(2, "exact", "eip155:84532") is True
            assert cache.kinds is not None

    async def test_run_refreshes_in_the_background_and_stops_when_cancelled(self) -> None:
        calls = 0

        def handler(request: httpx.Request) -> httpx.Response:
            nonlocal calls
            calls += 1
            return json_response(SUPPORTED) if calls % 2 else json_response({}, 502)

        async with client(handler) as c:
            cache = fc.SupportedCache(c, ttl_seconds=0.01, retry_seconds=0.01)
            task = asyncio.create_task(cache.run())
            for _ in range(200):
                await asyncio.sleep(0.005)
                if calls >= 4:
                    break
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert calls >= 4
        assert cache.kind_supported(2, "exact", "eip155:84532") is True

    async def test_the_request_path_never_calls_the_facilitator(self) -> None:
        calls = 0

        def handler(request: httpx.Request) -> httpx.Response:
            nonlocal calls
            calls += 1
            return json_response(SUPPORTED)

        async with client(handler) as c:
            cache = fc.SupportedCache(c)
            await cache.refresh()
            for _ in range(100):
                cache.kind_supported(2, "exact", "eip155:84532")
        assert calls == 1
