"""The paying proxy: route a request to its upstream, answer the seller's 402 from a voucher, stream back.

One unpaid attempt, then at most one paid attempt (``max_paid_attempts`` = 1: never pay twice silently). The
request body was buffered once by the adapter; every attempt sends that same immutable ``bytes`` object. The
voucher's nonce is persisted as consumed before the paid request leaves (hold); a ``2xx`` confirms it; it is
released only when the seller provably did not settle (the request never left, or a ``402`` without any
receipt and without ``nonce_already_used``); every other outcome keeps it consumed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import httpx

from kube402.buyer import terms as terms_mod
from kube402.buyer import vouchers as vouchers_mod
from kube402.buyer.config import BuyerConfig, Upstream, public_model
from kube402.buyer.ledger import Exhausted, Ledger
from kube402.buyer.metrics import Metrics
from kube402.x402 import headers as x402_headers

__all__ = ["MODEL_PATHS", "BuyerProxy", "Request", "Responder", "Response"]

log = logging.getLogger(__name__)

MODEL_PATHS: Final = frozenset({"/v1/chat/completions", "/chat/completions", "/v1/responses", "/responses"})
NO_UPSTREAM: Final = "no purchased upstream mapped for requested model"
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
STRIP_REQUEST: Final = frozenset(
    {"authorization", "payment-signature", "x-payment", "accept-encoding", "cookie"}
)
"""Never forwarded to a seller: the agent's local API key, payment headers of its own, cookies.
``accept-encoding`` is replaced by ``identity`` so a 402 body can be read and relayed unchanged."""
RECEIPTS: Final = (x402_headers.PAYMENT_RESPONSE.lower(), x402_headers.X_PAYMENT_RESPONSE.lower())
MAX_402_BODY: Final = 65536
_JSON: Final = [("content-type", "application/json")]


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def error(status: int, code: str, message: str, **extra: Any) -> Response:
    body = {"error": {"type": code, "code": code, "message": message, **extra}}
    return Response(status, list(_JSON), json.dumps(body).encode())


@dataclasses.dataclass(slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: Sequence[tuple[str, str]]
    """Lower-case names."""
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


class Responder:
    """What the HTTP adapter provides: a whole response, or a streamed one."""

    async def respond(self, resp: Response) -> None:
        raise NotImplementedError

    async def start(self, status: int, headers: list[tuple[str, str]]) -> Callable[[bytes], Awaitable[None]]:
        raise NotImplementedError


Persist = Callable[[int], Awaitable[None]]
"""Make the consumed set durable at least up to the given ledger version (raises OSError on failure)."""


def decode_receipt(value: str) -> dict[str, Any] | None:
    """The decoded settlement receipt (``PAYMENT-RESPONSE`` / ``X-PAYMENT-RESPONSE``), None if undecodable."""
    try:
        obj = x402_headers.decode_b64_json(value, max_bytes=MAX_402_BODY)
    except x402_headers.PaymentHeaderError:
        return None
    return obj if isinstance(obj, dict) else None


class BuyerProxy:
    def __init__(
        self,
        *,
        ledger: Ledger,
        persist: Persist,
        metrics: Metrics,
        upstream_timeout: float = 300.0,
        max_paid_attempts: int = 1,
        clock: Callable[[], float] = time.time,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = BuyerConfig()
        self.ledger = ledger
        self.persist = persist
        self.metrics = metrics
        self.clock = clock
        self.max_paid_attempts = max_paid_attempts
        self.http = http or httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(upstream_timeout, connect=5.0, pool=10.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    def apply(self, config: BuyerConfig) -> None:
        self.config = config
        self.ledger.set_pools(config.vouchers)

    # -- read-only endpoints -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = self.clock()
        ups: dict[str, Any] = {}
        for name, up in sorted(self.config.upstreams.items()):
            s = self.ledger.stats(name, now=now)
            ups[name] = {
                "url": up.url,
                "remote_model": up.remote_model,
                "public_model": public_model(up.remote_model),
                "network": up.network,
                "payTo": up.terms.pay_to,
                "asset": up.terms.asset,
                "price": str(up.terms.price),
                "remaining": s.remaining,
                "spent": s.spent,
                "held": s.held,
                "expired": s.expired,
            }
        return {"upstreams": ups}

    def pool_stats(self) -> list[tuple[str, Any, int]]:
        now = self.clock()
        return [
            (n, self.ledger.stats(n, now=now), self.ledger.expired_skips.get(n, 0))
            for n in sorted(self.config.upstreams)
        ]

    def models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": public_model(up.remote_model), "object": "model", "owned_by": name}
                for name, up in sorted(self.config.upstreams.items())
            ],
        }

    # -- routing -----------------------------------------------------------------------------------------

    async def handle(self, req: Request, out: Responder) -> int:
        path = req.path
        if path in MODEL_PATHS:
            return await self._model_routed(req, out)
        if path.startswith("/upstream/"):
            name, _, rest = path[len("/upstream/") :].partition("/")
            up = self.config.upstreams.get(name)
            if up is None:
                return await self._send(
                    out, error(404, "unknown_upstream", f"no purchased upstream named {name}")
                )
            target = up.url + "/" + rest + ("?" + req.query if req.query else "")
            return await self.forward(up, req, target, req.body, route="upstream", out=out)
        return await self._send(out, error(404, "not_found", "unknown endpoint"))

    async def _model_routed(self, req: Request, out: Responder) -> int:
        if req.method != "POST":
            return await self._send(out, error(405, "method_not_allowed", "use POST"))
        try:
            body = json.loads(req.body)
        except ValueError:
            return await self._send(out, error(400, "invalid_json", "request body is not JSON"))
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return await self._send(out, error(400, "invalid_request", "request body needs a string 'model'"))
        up = self.config.by_model(body["model"])
        if up is None:
            self.metrics.requests.labels("", "model", "404").inc()
            return await self._send(out, error(404, "model_not_found", NO_UPSTREAM, model=body["model"]))
        body["model"] = up.remote_model
        target = up.url + req.path + ("?" + req.query if req.query else "")
        return await self.forward(up, req, target, json.dumps(body).encode(), route="model", out=out)

    async def _send(self, out: Responder, resp: Response) -> int:
        await out.respond(resp)
        return resp.status

    # -- the payment exchange ----------------------------------------------------------------------------

    def _headers(self, req: Request) -> list[tuple[str, str]]:
        hdrs = [(k, v) for k, v in req.headers if k not in HOP_BY_HOP and k not in STRIP_REQUEST]
        hdrs.append(("accept-encoding", "identity"))
        return hdrs

    async def _open(
        self, up: Upstream, method: str, target: str, hdrs: list[tuple[str, str]], body: bytes, attempt: str
    ) -> httpx.Response:
        start = time.perf_counter()
        request = self.http.build_request(method, target, headers=hdrs, content=body if body else None)
        resp = await self.http.send(request, stream=True)
        self.metrics.latency.labels(up.name, attempt).observe(time.perf_counter() - start)
        return resp

    async def forward(
        self, up: Upstream, req: Request, target: str, body: bytes, *, route: str, out: Responder
    ) -> int:
        status = await self._forward(up, req, target, body, out)
        self.metrics.requests.labels(up.name, route, str(status)).inc()
        return status

    async def _forward(self, up: Upstream, req: Request, target: str, body: bytes, out: Responder) -> int:
        hdrs = self._headers(req)
        try:
            resp = await self._open(up, req.method, target, hdrs, body, "unpaid")
        except httpx.HTTPError as err:
            log.warning("upstream %s unreachable: %s", up.name, type(err).__name__)
            return await self._send(
                out, error(502, "upstream_unavailable", f"upstream {up.name} unreachable")
            )
        if resp.status_code != 402:
            return await self._relay(resp, out, extra=[("x-kube402-payment", "none")])
        try:
            raw402 = await _read_capped(resp)
        finally:
            await resp.aclose()
        try:
            required = terms_mod.parse_402(resp.headers.get, raw402)
        except terms_mod.TermsError as err:
            log.warning("upstream %s: 402 without usable terms: %s", up.name, err)
            return await self._send(out, _passthrough(resp, raw402))
        chosen = vouchers_mod.choose_requirement(required, up.terms)
        if isinstance(chosen, vouchers_mod.Mismatch):
            self.metrics.payments.labels(up.name, "mismatch").inc()
            log.warning("upstream %s: terms mismatch: %s", up.name, chosen.message)
            return await self._send(
                out,
                error(
                    402,
                    "voucher_mismatch",
                    f"vouchers for upstream {up.name} cannot pay this seller: {chosen.message}",
                    upstream=up.name,
                    mismatch=list(chosen.differences),
                ),
            )
        return await self._pay(up, req, target, hdrs, body, required, chosen, out)

    async def _pay(
        self,
        up: Upstream,
        req: Request,
        target: str,
        hdrs: list[tuple[str, str]],
        body: bytes,
        required: terms_mod.PaymentRequired,
        chosen: terms_mod.Requirement,
        out: Responder,
    ) -> int:
        held = self.ledger.hold(up.name, now=self.clock())
        if isinstance(held, Exhausted):
            self.metrics.payments.labels(up.name, "exhausted").inc()
            return await self._send(
                out, error(402, "vouchers_exhausted", held.message, upstream=up.name, remaining=0)
            )
        voucher = held
        try:
            await self.persist(self.ledger.version)
        except OSError as err:
            self.ledger.release(up.name, voucher.nonce)
            self.metrics.payments.labels(up.name, "state_error").inc()
            log.error("state file not writable, request not paid: %s", err)
            return await self._send(
                out, error(503, "state_unwritable", "cannot record the voucher as consumed; nothing was paid")
            )
        name, value = vouchers_mod.payment_header(required, chosen, voucher)
        short = voucher.nonce[:18]
        log.info("paying %s with voucher %s... (x402 v%d)", up.name, short, chosen.version)
        try:
            resp = await self._open(up, req.method, target, [*hdrs, (name.lower(), value)], body, "paid")
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as err:
            await self._release(up, voucher, why=f"request never left ({type(err).__name__})")
            return await self._send(
                out, error(502, "upstream_unavailable", f"upstream {up.name} unreachable")
            )
        except httpx.HTTPError as err:
            self._keep(up, voucher, why=type(err).__name__)
            status = 504 if isinstance(err, httpx.TimeoutException) else 502
            return await self._send(
                out,
                error(
                    status,
                    "upstream_failed_after_payment",
                    f"upstream {up.name} failed after the paid request was sent ({type(err).__name__}); "
                    "the voucher stays spent",
                ),
            )
        receipt_value = next((resp.headers[h] for h in RECEIPTS if h in resp.headers), None)
        if 200 <= resp.status_code < 300:
            self.ledger.confirm(up.name, voucher.nonce)
            self.metrics.payments.labels(up.name, "confirmed").inc()
            receipt = decode_receipt(receipt_value) if receipt_value else None
            log.info(
                "paid %s: %d, voucher %s... spent%s",
                up.name,
                resp.status_code,
                short,
                f", tx {receipt.get('transaction')}" if receipt else "",
            )
            return await self._relay(resp, out, extra=[("x-kube402-payment", "paid")])
        if resp.status_code != 402:
            self._keep(up, voucher, why=f"status {resp.status_code}")
            return await self._relay(resp, out, extra=[("x-kube402-payment", "kept")])
        try:
            raw = await _read_capped(resp)
        finally:
            await resp.aclose()
        code = terms_mod.error_code(raw)
        if code == "nonce_already_used":
            self._keep(up, voucher, why="seller says nonce_already_used", result="replay_refused")
            return await self._send(
                out,
                error(
                    402,
                    "voucher_replayed",
                    f"the seller refused voucher {short}… of upstream {up.name} as already used "
                    "(nonce_already_used); it stays spent, retry to use the next voucher",
                    upstream=up.name,
                    seller_error=code,
                ),
            )
        if receipt_value is not None:
            self._keep(up, voucher, why=f"402 with receipt ({code or 'settlement failed'})")
            return await self._send(out, _passthrough(resp, raw))
        await self._release(up, voucher, why=f"402 without receipt ({code or 'no reason'})")
        return await self._send(out, _passthrough(resp, raw))

    def _keep(self, up: Upstream, voucher: vouchers_mod.Voucher, *, why: str, result: str = "kept") -> None:
        self.ledger.keep(up.name, voucher.nonce)
        self.metrics.payments.labels(up.name, result).inc()
        log.warning("voucher %s... of %s stays spent: %s", voucher.nonce[:18], up.name, why)

    async def _release(self, up: Upstream, voucher: vouchers_mod.Voucher, *, why: str) -> None:
        self.ledger.release(up.name, voucher.nonce)
        self.metrics.payments.labels(up.name, "released").inc()
        log.info("voucher %s... of %s released: %s", voucher.nonce[:18], up.name, why)
        try:
            await self.persist(self.ledger.version)
        except OSError as err:  # the nonce stays consumed on disk: the safe direction
            log.error("state file not writable after a release: %s", err)

    async def _relay(self, resp: httpx.Response, out: Responder, *, extra: list[tuple[str, str]]) -> int:
        try:
            hdrs = [(k.lower(), v) for k, v in resp.headers.multi_items() if k.lower() not in HOP_BY_HOP]
            send = await out.start(resp.status_code, hdrs + extra)
            try:
                async for chunk in resp.aiter_raw():
                    await send(chunk)
            except httpx.HTTPError as err:
                log.warning("upstream stream broke: %s", type(err).__name__)
            return resp.status_code
        finally:
            await resp.aclose()


def _passthrough(resp: httpx.Response, body: bytes) -> Response:
    hdrs = [(k.lower(), v) for k, v in resp.headers.multi_items() if k.lower() not in HOP_BY_HOP]
    return Response(resp.status_code, hdrs, body)


async def _read_capped(resp: httpx.Response) -> bytes:
    buf = bytearray()
    async for chunk in resp.aiter_bytes():
        buf += chunk
        if len(buf) > MAX_402_BODY:
            return b""
    return bytes(buf)
