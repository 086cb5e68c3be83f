"""The proxy gate (SPEC 7.8): the verifier in front of the upstream, settling only after a 2xx status line.

Same admission as ForwardAuth (route, payment checks, facilitator /verify); then the request (body streamed)
goes to the upstream with the offer prefix stripped and payment headers removed. The buyer is charged only
when the upstream's status is 2xx and the method is not HEAD; settlement happens on receipt of the status
line, before any of the body is relayed, so streamed answers still stream. A failed settlement withholds the
body (402 with the failed receipt); an unknown outcome answers 503 and is resolved on a retry.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import httpx

from kube402.verifier.gate import CORS_EXPOSE, Admitted, Gate, Response
from kube402.verifier.request import ForwardedRequest
from kube402.verifier.routes import MatchKind, Route, normalize_path
from kube402.x402 import codes, headers

__all__ = ["ProxyGate", "ProxyRequest", "Responder"]

log = logging.getLogger(__name__)
Code = codes.Code

HOP_BY_HOP = frozenset(
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
"""Not copied between hops. (A request's Content-Length is passed on when the body is streamed unchanged.)"""
_X_PAYMENT_PREFIX = headers.X_PAYMENT.lower()  # and every X-PAYMENT-* header
STRIP_REQUEST = frozenset({headers.PAYMENT_SIGNATURE.lower(), headers.X_PAYMENT.lower()})
MAX_PROXY_TARGET_BYTES = 60000
"""The upstream URL (base + target) must stay below httpx's 64 KiB URL limit."""


@dataclasses.dataclass(slots=True)
class ProxyRequest:
    method: str
    target: str
    """Path and query as received."""
    headers: Sequence[tuple[str, str]]
    """Lower-case names."""
    body: AsyncIterator[bytes]
    peer: str | None = None

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


DRAIN_LIMIT = 1 << 20
"""Bytes of an unforwarded request body read (and discarded) before answering without the upstream."""


async def drain(body: AsyncIterator[bytes], limit: int = DRAIN_LIMIT) -> int:
    """Read and discard what is left of a request body, up to ``limit`` bytes; returns the bytes read.

    An answer sent while the request body is still unread (a 402 to an unpaid POST) leaves the server
    unable to reuse the connection: behind Traefik, whose next request on that pooled connection then
    fails, the buyer got a 500. Draining first keeps keep-alive connections reusable. A body larger than
    ``limit`` is not read to its end (an unpaid upload is not worth unbounded reading); only then may the
    server close that one connection.
    """
    seen = 0
    async for chunk in body:
        seen += len(chunk)
        if seen >= limit:
            break
    return seen


class _DrainFirst(Responder):
    """Drains the request body before the answer starts (a no-op once the upstream request consumed it)."""

    __slots__ = ("body", "inner")

    def __init__(self, inner: Responder, body: AsyncIterator[bytes]) -> None:
        self.inner = inner
        self.body = body

    async def respond(self, resp: Response) -> None:
        await _drain_quietly(self.body)
        await self.inner.respond(resp)

    async def start(self, status: int, headers: list[tuple[str, str]]) -> Callable[[bytes], Awaitable[None]]:
        await _drain_quietly(self.body)
        return await self.inner.start(status, headers)


async def _drain_quietly(body: AsyncIterator[bytes]) -> None:
    try:
        await drain(body)
    except (RuntimeError, OSError) as err:  # the client hung up mid-body: nothing to keep alive
        log.debug("request body not drained: %s", type(err).__name__)


UpstreamResolver = Callable[[Route], str]
"""Route → upstream base URL (``http://host:port``); raises LookupError when it cannot be resolved."""


class ProxyGate:
    def __init__(
        self, gate: Gate, *, resolve: UpstreamResolver, http: httpx.AsyncClient | None = None
    ) -> None:
        self.gate = gate
        self.resolve = resolve
        self.http = http or httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def handle(self, req: ProxyRequest, out: Responder) -> None:
        start = time.perf_counter()
        status = await self._handle(req, _DrainFirst(out, req.body))
        self.gate.metrics.duration.observe(("proxy", str(status)), time.perf_counter() - start)

    async def _handle(self, req: ProxyRequest, out: Responder) -> int:
        gate = self.gate
        if not gate.trusted(req.peer):
            return await _send(
                out, gate.error(403, Code.UNTRUSTED_SOURCE.value, "forbidden: untrusted source")
            )
        if len(req.target) > min(gate.config.max_target_bytes, MAX_PROXY_TARGET_BYTES):
            return await _send(out, gate.error(414, Code.URI_TOO_LONG.value, "request target too long"))
        if not gate.ready:
            return await _send(
                out, gate.unavailable(None, Code.NOT_READY, "verifier has not synced its routes yet")
            )
        match = gate.table.lookup(req.target)
        if match.kind is MatchKind.GUARDED:
            return await _send(
                out, gate.unavailable(None, Code.OFFER_UNAVAILABLE, "this offer is not available right now")
            )
        if match.route is None:
            return await _send(out, gate.error(404, Code.ROUTE_NOT_FOUND.value, "no offer at this path"))
        route = match.route
        fwd = ForwardedRequest.parse(req.header, method=req.method, target=req.target)
        admitted = await gate.admit(
            route, req.header, resource_url=fwd.resource_url, method=fwd.method, proxy=True
        )
        if isinstance(admitted, Response):
            return await _send(out, _with_cors(admitted, req))
        tracked = _Tracked(out)
        try:
            return await self._serve(req, tracked, route, admitted)
        except Exception:
            log.exception("proxy request on %s failed after admission", route.pattern)
            if tracked.started:
                raise
            return await _send(out, gate.error(502, Code.UPSTREAM_UNAVAILABLE.value, "upstream unavailable"))
        finally:
            gate.abandon(admitted)  # no admission state survives a failed or cancelled request

    async def _serve(self, req: ProxyRequest, out: Responder, route: Route, admitted: Admitted) -> int:
        gate = self.gate
        prepaid: tuple[str, str, str] | None = None
        if route.settle_before_upstream and req.method.upper() != "HEAD":
            settled = await gate.settle(admitted, accept=req.header("accept"))
            if isinstance(settled, Response):
                return await _send(out, _with_cors(settled, req))  # the upstream never runs unpaid
            prepaid = settled
        try:
            base = self.resolve(route)
        except LookupError as err:
            gate.release(admitted)
            log.warning("cannot resolve upstream of %s: %s", route.pattern, err)
            return await _send(out, gate.error(502, Code.UPSTREAM_UNAVAILABLE.value, "upstream unavailable"))
        timeout = float(max(route.max_timeout_seconds + 120, 60))
        if prepaid is None:
            timeout = gate.upstream_deadline(admitted, timeout)
        try:
            upstream_req = self._build(req, route, base, payer=admitted.payer, timeout=timeout)
        except (ValueError, UnicodeError, httpx.InvalidURL) as err:
            gate.release(admitted)
            log.info("request on %s cannot be forwarded: %s", route.pattern, type(err).__name__)
            return await _send(
                out, gate.error(400, Code.INVALID_REQUEST.value, "request cannot be forwarded")
            )
        try:
            resp = await self.http.send(upstream_req, stream=True)
        except httpx.HTTPError as err:
            gate.release(admitted)
            log.warning("upstream of %s unreachable: %s", route.pattern, type(err).__name__)
            return await _send(out, gate.error(502, Code.UPSTREAM_UNAVAILABLE.value, "upstream unavailable"))
        try:
            hdrs = [(k.lower(), v) for k, v in resp.headers.multi_items() if k.lower() not in HOP_BY_HOP]
            if prepaid is None and (not (200 <= resp.status_code < 300) or req.method.upper() == "HEAD"):
                if req.method.upper() == "HEAD" and 200 <= resp.status_code < 300:
                    gate.use_unsettled(admitted, head=True)  # one authorization buys at most one HEAD
                else:
                    gate.release(admitted)  # nothing delivered: no charge
                send = await out.start(resp.status_code, hdrs)
                async for chunk in resp.aiter_raw():
                    await send(chunk)
                return resp.status_code
            if prepaid is None:
                settled = await gate.settle(admitted, accept=req.header("accept"))
                if isinstance(settled, Response):
                    return await _send(out, _with_cors(settled, req))  # the upstream's body is withheld
                prepaid = settled
            receipt_name, receipt, _tx = prepaid
            cache = next((v for k, v in hdrs if k == "cache-control"), "")
            hdrs = [(k, v) for k, v in hdrs if k != "cache-control"]
            hdrs.append(("cache-control", cache if "no-store" in cache else "private"))
            hdrs.append((receipt_name.lower(), receipt))
            send = await out.start(resp.status_code, hdrs)
            async for chunk in resp.aiter_raw():
                await send(chunk)
            return resp.status_code
        finally:
            await resp.aclose()

    def _build(
        self, req: ProxyRequest, route: Route, base: str, *, payer: str, timeout: float
    ) -> httpx.Request:
        target = req.target
        prefix = route.prefix
        if prefix != "/" and not target.startswith(prefix):
            # Matched on the normalized path (percent-encoding, dot segments): strip from that form.
            path, sep, query = target.partition("?")
            target = normalize_path(path) + sep + query
        if prefix != "/" and target.startswith(prefix):
            target = target[len(prefix) :]
        if not target.startswith("/"):
            target = "/" + target
        fwd: list[tuple[str, str]] = []
        xff = ""
        for k, v in req.headers:
            if k in HOP_BY_HOP or k in STRIP_REQUEST or k.startswith(_X_PAYMENT_PREFIX):
                continue
            if k == "authorization" and route.upstream_auth:
                continue
            if k == "x-forwarded-for":
                xff = v
                continue
            fwd.append((k, v))
        length = req.header("content-length")
        if length is not None and req.header("transfer-encoding") is None:
            fwd.append(("content-length", length))
        if route.upstream_auth:
            fwd.append(("authorization", route.upstream_auth))
        fwd.append(("x-payment-status", "verified"))
        fwd.append(("x-payment-payer", payer))
        peer = (req.peer or "").rsplit(":", 1)[0]
        fwd.append(("x-forwarded-for", f"{xff}, {peer}" if xff and peer else (xff or peer)))
        has_body = req.method.upper() not in ("GET", "HEAD") or req.header("content-length") not in (
            None,
            "0",
        )
        return self.http.build_request(
            req.method,
            base.rstrip("/") + target,
            headers=[
                (k.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape")) for k, v in fwd
            ],
            content=req.body if has_body else None,
            timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
        )


def _with_cors(resp: Response, req: ProxyRequest) -> Response:
    """The gate's own answers (402, 503, …) readable by a browser client: allow the origin, expose the
    payment headers. Upstream answers are relayed as they are."""
    origin = req.header("origin")
    if not origin or any(k == "access-control-allow-origin" for k, _ in resp.headers):
        return resp
    return Response(
        resp.status,
        [
            *resp.headers,
            ("access-control-allow-origin", "*"),
            ("access-control-expose-headers", CORS_EXPOSE),
        ],
        resp.body,
    )


class _Tracked(Responder):
    """Remembers whether a response was begun (after that, a failure cannot be answered any more)."""

    __slots__ = ("inner", "started")

    def __init__(self, inner: Responder) -> None:
        self.inner = inner
        self.started = False

    async def respond(self, resp: Response) -> None:
        self.started = True
        await self.inner.respond(resp)

    async def start(self, status: int, headers: list[tuple[str, str]]) -> Callable[[bytes], Awaitable[None]]:
        self.started = True
        return await self.inner.start(status, headers)


async def _send(out: Responder, resp: Response) -> int:
    await out.respond(resp)
    return resp.status
