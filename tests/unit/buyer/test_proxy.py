"""The paying proxy against a scripted seller (httpx.MockTransport): every outcome of SPEC §9's hold rules."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kube402.buyer import config, statefile
from kube402.buyer.ledger import Ledger, load_consumed
from kube402.buyer.main import Persister
from kube402.buyer.metrics import Metrics
from kube402.buyer.proxy import BuyerProxy, Request, Responder, Response
from kube402.x402 import headers
from tests.support.buyer_env import NOW, SELLER, USDC, v1_body, v2_header, v2_requirement, voucher

CHAT = {"model": "paid/qwen", "messages": [{"role": "user", "content": "hi"}], "stream": False}


class Out(Responder):
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.chunks: list[bytes] = []

    async def respond(self, resp: Response) -> None:
        self.status, self.headers, self.body = resp.status, dict(resp.headers), resp.body

    async def start(self, status: int, headers: list[tuple[str, str]]) -> Callable[[bytes], Awaitable[None]]:
        self.status, self.headers = status, dict(headers)

        async def send(chunk: bytes) -> None:
            self.chunks.append(chunk)
            self.body += chunk

        return send

    def json(self) -> Any:
        return json.loads(self.body)


class Seller:
    """Answers 402 to unpaid requests; ``paid`` decides the answer to a paid one."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.seen: list[httpx.Request] = []
        self.unpaid: Callable[[httpx.Request], httpx.Response] = lambda _r: httpx.Response(
            402, headers={"payment-required": v2_header()}, content=v1_body()
        )
        self.paid: Callable[[httpx.Request], httpx.Response] = lambda _r: httpx.Response(
            200,
            headers={"payment-response": base64.b64encode(b'{"success":true,"transaction":"0xab"}').decode()},
            json={"choices": [{"message": {"content": "ok"}}]},
        )
        self.on_disk_at_send: list[set[str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if "payment-signature" in request.headers or "x-payment" in request.headers:
            raw = statefile.read(self.state)
            self.on_disk_at_send.append(load_consumed(raw).get("q", set()) if raw else set())
            return _streamed(self.paid(request))
        return _streamed(self.unpaid(request))


def _streamed(resp: httpx.Response) -> httpx.Response:
    """As a network response arrives: an unread stream (MockTransport responses come pre-read)."""
    return httpx.Response(resp.status_code, headers=resp.headers, stream=httpx.ByteStream(resp.content))


def make(tmp_path: Path, n: int = 3, **cfg_over: Any) -> tuple[BuyerProxy, Seller, Ledger]:
    state = tmp_path / "consumed.json"
    seller = Seller(state)
    led = Ledger()
    proxy = BuyerProxy(
        ledger=led,
        persist=Persister(led, state),
        metrics=Metrics(list),
        clock=lambda: NOW,
        http=httpx.AsyncClient(transport=httpx.MockTransport(seller)),
    )
    up = {
        "url": "http://seller/services/q",
        "remoteModel": "qwen",
        "network": "base-sepolia",
        "payTo": SELLER,
        "asset": USDC,
        "price": "1000",
        **cfg_over,
    }
    proxy.apply(
        config.parse(
            json.dumps({"upstreams": {"q": up}}), json.dumps({"q": [voucher(i).to_json() for i in range(n)]})
        )
    )
    return proxy, seller, led


def chat(body: dict[str, Any] | bytes = CHAT, path: str = "/v1/chat/completions") -> Request:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Request(
        "POST", path, "", [("content-type", "application/json"), ("authorization", "Bearer sk-local")], raw
    )


def stats(proxy: BuyerProxy) -> tuple[int, int, int]:
    s = proxy.status()["upstreams"]["q"]
    return s["remaining"], s["spent"], s["held"]


async def test_paid_from_a_voucher_persisted_before_the_paid_request_left(tmp_path: Path) -> None:
    proxy, seller, _ = make(tmp_path)
    out = Out()
    assert await proxy.handle(chat(), out) == 200
    assert out.json()["choices"][0]["message"]["content"] == "ok"
    assert out.headers["x-kube402-payment"] == "paid"
    unpaid, paid = seller.seen
    assert unpaid.url == paid.url == "http://seller/services/q/v1/chat/completions"
    assert json.loads(unpaid.content) == json.loads(paid.content)
    assert json.loads(paid.content)["model"] == "qwen", "paid/ prefix stripped, model rewritten"
    assert "authorization" not in paid.headers, "the agent's local key never reaches a seller"
    decoded = headers.decode_payment_header(
        paid.headers["payment-signature"], max_bytes=16384, accept_v1=True
    )
    nonce = "0x" + decoded.authorization.nonce.hex()
    assert seller.on_disk_at_send == [{nonce}], "the nonce was on disk before the paid request left"
    assert stats(proxy) == (2, 1, 0)
    assert (tmp_path / "consumed.json").stat().st_mode & 0o777 == 0o600


async def test_v1_only_seller_gets_x_payment(tmp_path: Path) -> None:
    proxy, seller, _ = make(tmp_path)
    seller.unpaid = lambda _r: httpx.Response(402, content=v1_body())
    out = Out()
    assert await proxy.handle(chat(), out) == 200
    assert "x-payment" in seller.seen[1].headers and "payment-signature" not in seller.seen[1].headers


async def test_free_answer_passes_through_without_spending(tmp_path: Path) -> None:
    proxy, seller, _ = make(tmp_path)
    seller.unpaid = lambda _r: httpx.Response(200, json={"free": True})
    out = Out()
    assert await proxy.handle(chat(), out) == 200
    assert out.headers["x-kube402-payment"] == "none" and stats(proxy) == (3, 0, 0)


async def test_402_without_receipt_releases_and_the_next_request_reuses_it(tmp_path: Path) -> None:
    proxy, seller, _led = make(tmp_path, n=1)
    seller.paid = lambda _r: httpx.Response(402, json={"error": "invalid_exact_evm_payload_signature"})
    out = Out()
    assert await proxy.handle(chat(), out) == 402
    assert stats(proxy) == (1, 0, 0)
    assert load_consumed((tmp_path / "consumed.json").read_bytes()) == {}
    seller.paid = Seller(tmp_path / "x").paid
    out2 = Out()
    assert await proxy.handle(chat(), out2) == 200
    first = seller.seen[1].headers["payment-signature"]
    second = seller.seen[3].headers["payment-signature"]
    assert first == second, "the released voucher was the one used next"
    assert len(seller.seen) == 4, "one paid attempt per request"


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(500, json={"error": "boom"}),
        httpx.Response(402, headers={"payment-response": base64.b64encode(b'{"success":false}').decode()}),
    ],
)
async def test_failures_after_send_keep_the_voucher_consumed(tmp_path: Path, answer: httpx.Response) -> None:
    proxy, seller, _ = make(tmp_path)
    seller.paid = lambda _r: answer
    out = Out()
    assert await proxy.handle(chat(), out) == answer.status_code
    assert stats(proxy) == (2, 1, 0)


async def test_timeout_after_send_keeps_the_voucher(tmp_path: Path) -> None:
    proxy, seller, _ = make(tmp_path)

    def slow(r: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=r)

    seller.paid = slow
    out = Out()
    assert await proxy.handle(chat(), out) == 504
    assert "stays spent" in out.json()["error"]["message"]
    assert stats(proxy) == (2, 1, 0)


async def test_never_sent_releases(tmp_path: Path) -> None:
    proxy, seller, _ = make(tmp_path)

    def refused(r: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=r)

    seller.paid = refused
    out = Out()
    assert await proxy.handle(chat(), out) == 502
    assert stats(proxy) == (3, 0, 0)


async def test_replayed_voucher_is_reported_and_stays_spent(tmp_path: Path) -> None:
    proxy, seller, _ = make(tmp_path)
    seller.paid = lambda _r: httpx.Response(402, json={"error": "nonce_already_used"})
    out = Out()
    assert await proxy.handle(chat(), out) == 402
    err = out.json()["error"]
    assert err["code"] == "voucher_replayed" and "already used" in err["message"]
    assert stats(proxy) == (2, 1, 0)


@pytest.mark.parametrize(
    ("over", "word"),
    [
        ({"amount": "2000"}, "amount"),
        ({"payTo": "0x" + "ab" * 20}, "payTo"),
        ({"asset": "0x" + "cd" * 20}, "asset"),
        ({"network": "eip155:8453"}, "network"),
    ],
)
async def test_a_voucher_for_other_terms_is_never_sent(
    tmp_path: Path, over: dict[str, str], word: str
) -> None:
    proxy, seller, _ = make(tmp_path)
    seller.unpaid = lambda _r: httpx.Response(
        402, headers={"payment-required": v2_header(v2_requirement(**over))}
    )
    out = Out()
    assert await proxy.handle(chat(), out) == 402
    err = out.json()["error"]
    assert err["code"] == "voucher_mismatch" and word in err["message"]
    assert len(seller.seen) == 1 and stats(proxy) == (3, 0, 0)


async def test_empty_pool_is_a_clear_402_and_nothing_is_sent(tmp_path: Path) -> None:
    proxy, seller, _ = make(tmp_path, n=1)
    assert await proxy.handle(chat(), Out()) == 200
    out = Out()
    assert await proxy.handle(chat(), out) == 402
    err = out.json()["error"]
    assert err["code"] == "vouchers_exhausted" and "pool for upstream q is empty" in err["message"]
    assert len(seller.seen) == 3


async def test_state_file_unwritable_pays_nothing(tmp_path: Path) -> None:
    proxy, seller, _led = make(tmp_path)

    async def broken(_v: int) -> None:
        raise OSError("disk full")

    proxy.persist = broken
    out = Out()
    assert await proxy.handle(chat(), out) == 503
    assert len(seller.seen) == 1 and stats(proxy) == (3, 0, 0)


async def test_routing_errors(tmp_path: Path) -> None:
    proxy, seller, _ = make(tmp_path)
    out = Out()
    assert await proxy.handle(chat({"model": "paid/unknown"}), out) == 404
    assert out.json()["error"]["message"] == "no purchased upstream mapped for requested model"
    assert await proxy.handle(chat(b"not json"), Out()) == 400
    assert await proxy.handle(chat({"messages": []}), Out()) == 400
    assert seller.seen == []


async def test_upstream_pass_through_keeps_path_query_and_body(tmp_path: Path) -> None:
    proxy, seller, _ = make(tmp_path)
    req = Request("PUT", "/upstream/q/any/path", "a=1", [("content-type", "text/plain")], b"raw body")
    assert await proxy.handle(req, Out()) == 200
    assert str(seller.seen[1].url) == "http://seller/services/q/any/path?a=1"
    assert seller.seen[0].content == seller.seen[1].content == b"raw body"
    assert await proxy.handle(Request("GET", "/upstream/nope/x", "", [], b""), Out()) == 404


async def test_reload_keeps_the_consumed_set(tmp_path: Path) -> None:
    proxy, _seller, _ = make(tmp_path, n=2)
    assert await proxy.handle(chat(), Out()) == 200
    up = json.dumps(
        {
            "upstreams": {
                "q": {
                    "url": "http://seller/services/q",
                    "remoteModel": "qwen",
                    "network": "eip155:84532",
                    "payTo": SELLER,
                    "asset": USDC,
                    "price": "1000",
                }
            }
        }
    )
    proxy.apply(config.parse(up, json.dumps({"q": [voucher(i).to_json() for i in range(3)]})))
    assert stats(proxy) == (2, 1, 0)


async def test_metrics_count_requests_payments_pools_and_latency(tmp_path: Path) -> None:
    proxy, _seller, _ = make(tmp_path)
    proxy.metrics = Metrics(proxy.pool_stats)
    assert await proxy.handle(chat(), Out()) == 200
    text = proxy.metrics.render().decode()
    assert 'kube402_buyer_requests_total{route="model",status="200",upstream="q"} 1.0' in text
    assert 'kube402_buyer_payments_total{result="confirmed",upstream="q"} 1.0' in text
    assert 'kube402_buyer_vouchers_remaining{upstream="q"} 2.0' in text
    assert 'kube402_buyer_upstream_latency_seconds_count{attempt="paid",upstream="q"} 1.0' in text
