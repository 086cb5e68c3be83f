"""Test support for the verifier unit tests: a scriptable mock facilitator, gate/table builders, offers, a
recording proxy Responder. No sockets, no processes: the facilitator is an ``httpx.MockTransport``."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx
import orjson

from kube402.verifier import config as config_mod
from kube402.verifier import gate as gate_mod
from kube402.verifier import offers
from kube402.verifier.metrics import Metrics
from kube402.verifier.proxy import ProxyGate, ProxyRequest, Responder
from kube402.verifier.routes import Route, RouteTable
from kube402.verifier.table import TableKeeper
from kube402.x402 import facilitator_client as fc
from kube402.x402 import headers
from tests.support.payments import NOW, PAY_TO, PAYER, PaymentFactory

FAC_URL = "https://facilitator.test"
TX = "0x" + "ab" * 32
CAIP2 = "eip155:84532"
OFFER_NS = "llm"
OFFER_NAME = "qwen"
OFFER_PATH = "/services/qwen"
LITELLM_KEY = "sk-master-123"

Behaviour = Callable[[httpx.Request, dict[str, Any] | None], Any]


def jresp(obj: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=orjson.dumps(obj), headers={"content-type": "application/json"})


def verify_ok(_req: httpx.Request, _body: dict[str, Any] | None) -> httpx.Response:
    return jresp({"isValid": True, "payer": PAYER})


def settle_ok(_req: httpx.Request, _body: dict[str, Any] | None) -> httpx.Response:
    return jresp({"success": True, "transaction": TX, "network": CAIP2, "payer": PAYER})


def supported_all(_req: httpx.Request, _body: dict[str, Any] | None) -> httpx.Response:
    return jresp(
        {
            "kinds": [
                {"x402Version": 2, "scheme": "exact", "network": "eip155:*"},
                {"x402Version": 1, "scheme": "exact", "network": "base-sepolia"},
            ],
            "extensions": [],
            "signers": {},
        }
    )


class FakeFacilitator:
    """A facilitator behind ``httpx.MockTransport``. Each endpoint's behaviour is a callable
    ``(request, parsed_json_body) -> Response | awaitable Response`` (it may raise httpx errors); the
    ``script`` lists let a test queue one-shot behaviours that run before the default."""

    def __init__(self) -> None:
        self.behaviour: dict[str, Behaviour] = {
            "verify": verify_ok,
            "settle": settle_ok,
            "supported": supported_all,
        }
        self.script: dict[str, list[Behaviour]] = {"verify": [], "settle": [], "supported": []}
        self.calls: dict[str, int] = {"verify": 0, "settle": 0, "supported": 0}
        self.bodies: dict[str, list[dict[str, Any]]] = {"verify": [], "settle": []}
        self.events: list[str] = []

    async def handler(self, request: httpx.Request) -> httpx.Response:
        endpoint = request.url.path.rsplit("/", 1)[-1]
        self.calls[endpoint] += 1
        self.events.append(endpoint)
        body = None
        if request.method == "POST":
            body = orjson.loads(await request.aread())
            self.bodies[endpoint].append(body)
        queued = self.script[endpoint]
        fn = queued.pop(0) if queued else self.behaviour[endpoint]
        result = fn(request, body)
        if inspect.isawaitable(result):
            result = await result
        return result  # type: ignore[no-any-return]

    def client(self, *, verify_timeout: float = 0.5, settle_timeout: float = 0.5) -> fc.FacilitatorClient:
        return fc.FacilitatorClient(
            FAC_URL,
            transport=httpx.MockTransport(self.handler),
            timeouts=fc.Timeouts(verify=verify_timeout, settle=settle_timeout, supported=0.5),
        )

    def facilitator(self, **kw: float) -> gate_mod.Facilitator:
        client = self.client(**kw)
        return gate_mod.Facilitator(client, fc.SupportedCache(client))


def make_config(**overrides: Any) -> config_mod.Config:
    base: dict[str, Any] = {"wallet": PAY_TO, "facilitator_url": FAC_URL}
    base.update(overrides)
    return config_mod.Config(**base)


def offer(
    name: str = OFFER_NAME,
    *,
    namespace: str = OFFER_NS,
    path: str | None = None,
    price: Mapping[str, str] | None = None,
    network: str = "base-sepolia",
    pay_to: str = PAY_TO,
    published: bool = True,
    paused: bool = False,
    deleting: bool = False,
    service: str = "qwen-svc",
    upstream_namespace: str = "",
    port: int = 8000,
    max_timeout: int | None = None,
    description: str | None = None,
    gate_mode: str | None = None,
) -> dict[str, Any]:
    """A ServiceOffer as the API server would return it (RoutePublished condition set)."""
    meta: dict[str, Any] = {"namespace": namespace, "name": name, "uid": f"uid-{name}", "generation": 1}
    if paused:
        meta["annotations"] = {"obol.org/paused": "true"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    payment: dict[str, Any] = {
        "network": network,
        "payTo": pay_to,
        "price": dict(price if price is not None else {"perRequest": "0.001"}),
    }
    if max_timeout is not None:
        payment["maxTimeoutSeconds"] = max_timeout
    spec: dict[str, Any] = {
        "type": "inference",
        "upstream": {"service": service, "namespace": upstream_namespace, "port": port},
        "payment": payment,
    }
    if path is not None:
        spec["path"] = path
    if description is not None:
        spec["registration"] = {"enabled": False, "description": description}
    if gate_mode is not None:
        spec["gateMode"] = gate_mode
    return {
        "apiVersion": "obol.org/v1alpha1",
        "kind": "ServiceOffer",
        "metadata": meta,
        "spec": spec,
        "status": {
            "conditions": [
                {"type": "RoutePublished", "status": "True" if published else "False", "reason": "Published"}
            ]
        },
    }


def litellm_secrets(_ns: str) -> Mapping[str, Any]:
    return {"data": {"LITELLM_MASTER_KEY": base64.b64encode(f"  {LITELLM_KEY}\n".encode()).decode()}}


def offer_route(raw: Mapping[str, Any] | None = None, **kw: Any) -> Route:
    view = offers.route_for_offer(raw or offer(), **kw)
    assert view.route is not None, view
    return view.route


@dataclasses.dataclass
class Env:
    """A ready gate with one offer route (``/services/qwen/*``) and its payment factory."""

    gate: gate_mod.Gate
    fac: FakeFacilitator
    route: Route
    factory: PaymentFactory
    clock: list[float]

    def set_routes(self, *routes: Route) -> None:
        self.gate.table = RouteTable.build(offer_routes=routes)

    async def aclose(self) -> None:
        if self.gate.facilitator is not None:
            await self.gate.facilitator.client.aclose()


def make_env(
    *, route: Route | None = None, fac: FakeFacilitator | None = None, ready: bool = True, **config: Any
) -> Env:
    fac = fac or FakeFacilitator()
    clock = [float(NOW)]
    g = gate_mod.Gate(
        config=make_config(**config),
        metrics=Metrics(),
        facilitator=fac.facilitator(),
        clock=lambda: clock[0],
        settle_retry_delay=0.0,
    )
    route = route or offer_route()
    g.table = RouteTable.build(offer_routes=[route])
    g.ready = ready
    return Env(g, fac, route, PaymentFactory(route.priced.requirements[0]), clock)


def b64(obj: Any) -> str:
    return headers.encode_b64_json(obj)


def hget(hdrs: Mapping[str, str]) -> Callable[[str], str | None]:
    low = {k.lower(): v for k, v in hdrs.items()}
    return low.get


def fwd(
    uri: str | None = "/services/qwen/v1/chat?stream=1",
    *,
    method: str = "GET",
    proto: str = "https",
    host: str = "api.example.com",
    **extra: str,
) -> dict[str, str]:
    """Traefik-style ForwardAuth headers (plus any extra client headers, ``_`` → ``-``)."""
    h = {"x-forwarded-method": method, "x-forwarded-proto": proto, "x-forwarded-host": host}
    if uri is not None:
        h["x-forwarded-uri"] = uri
    for k, v in extra.items():
        h[k.replace("_", "-").lower()] = v
    return h


async def call(
    g: gate_mod.Gate, hdrs: Mapping[str, str], *, peer: str | None = "10.0.0.5:40000"
) -> gate_mod.Response:
    return await g.forward_auth(hget(hdrs), peer=peer)


def hdr(resp: gate_mod.Response, name: str) -> str | None:
    values = [v for k, v in resp.headers if k.lower() == name.lower()]
    assert len(values) <= 1, f"duplicate header {name}: {values}"
    return values[0] if values else None


def body_json(resp: gate_mod.Response) -> Any:
    return orjson.loads(resp.body)


def decode_b64(value: str | None) -> Any:
    assert value is not None
    return orjson.loads(base64.b64decode(value))


def required(resp: gate_mod.Response) -> Any:
    """The decoded PAYMENT-REQUIRED header."""
    return decode_b64(hdr(resp, "payment-required"))


def error_of(resp: gate_mod.Response) -> str:
    """The refusal code: the JSON body's ``error`` (error bodies and challenge bodies alike)."""
    return str(body_json(resp)["error"])


# -- proxy ---------------------------------------------------------------------------------------------


class Recorder(Responder):
    """An in-memory Responder: what the proxy gate sent, whole or streamed."""

    def __init__(self, events: list[str] | None = None) -> None:
        self.status: int | None = None
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.streamed = False
        self.events = events if events is not None else []

    async def respond(self, resp: gate_mod.Response) -> None:
        assert self.status is None, "responded twice"
        self.status, self.headers, self.body = resp.status, list(resp.headers), resp.body
        self.events.append("respond")

    async def start(self, status: int, headers: list[tuple[str, str]]) -> Callable[[bytes], Awaitable[None]]:
        assert self.status is None, "responded twice"
        self.status, self.headers, self.streamed = status, list(headers), True
        self.events.append("start")

        async def send(chunk: bytes) -> None:
            self.body += chunk

        return send

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(values) <= 1, f"duplicate header {name}: {values}"
        return values[0] if values else None

    def json(self) -> Any:
        return orjson.loads(self.body)


async def body_iter(*chunks: bytes) -> AsyncIterator[bytes]:
    for c in chunks:
        await asyncio.sleep(0)
        yield c


def preq(
    target: str,
    *,
    method: str = "GET",
    body: tuple[bytes, ...] = (),
    peer: str | None = "10.1.2.3:5555",
    **hdrs: str,
) -> ProxyRequest:
    h = [(k.replace("_", "-").lower(), v) for k, v in hdrs.items()]
    return ProxyRequest(method=method, target=target, headers=h, body=body_iter(*body), peer=peer)


class Upstream:
    """A mock upstream: records requests (with bodies), answers with ``reply`` (or raises)."""

    def __init__(self, reply: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []
        self.reply = reply or (
            lambda _r: httpx.Response(
                200, content=b'{"ok":true}', headers={"content-type": "application/json"}
            )
        )

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(await request.aread())
        self.requests.append(request)
        resp = self.reply(request)
        # a real transport answers with an unread stream (the proxy relays it with aiter_raw)
        return httpx.Response(resp.status_code, headers=resp.headers, stream=httpx.ByteStream(resp.content))

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler), follow_redirects=False)


def proxy_gate(env: Env, upstream: Upstream, *, base: str = "http://qwen-svc.llm.svc:8000") -> ProxyGate:
    def resolve(route: Route) -> str:
        if not route.upstream:
            raise LookupError("no upstream")
        return base

    return ProxyGate(env.gate, resolve=resolve, http=upstream.client())


def keeper(env: Env, clock: list[float] | None = None) -> TableKeeper:
    clk = clock if clock is not None else [0.0]
    return TableKeeper(env.gate, clock=lambda: clk[0], debounce=0.001)
