"""RSGI adapters (granian) for the verifier: ``/verify`` + ops endpoints, and the proxy gate.

Adapts, decides nothing: the payment logic is in ``gate.py`` and ``proxy.py``. Every response carries an
explicit Content-Length (granian sets it for byte bodies; an empty 200 is ``Content-Length: 0``), which keeps
nginx and Traefik connections alive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from kube402.verifier.gate import Gate, Response
from kube402.verifier.proxy import ProxyGate, ProxyRequest, Responder

__all__ = ["ProxyApp", "VerifierApp"]

_HEALTH = b'{"status":"ok"}'
_READY = b'{"status":"ready"}'
_JSON = [("content-type", "application/json")]


class _RSGIResponder(Responder):
    __slots__ = ("protocol",)

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol

    async def respond(self, resp: Response) -> None:
        self.protocol.response_bytes(resp.status, resp.headers, resp.body)

    async def start(self, status: int, headers: list[tuple[str, str]]) -> Callable[[bytes], Awaitable[None]]:
        transport = self.protocol.response_stream(status, headers)
        return transport.send_bytes  # type: ignore[no-any-return]


async def _body(protocol: Any) -> AsyncIterator[bytes]:
    async for chunk in protocol:
        yield chunk


class VerifierApp:
    """``--listen``: ``/verify`` (any method), ``/healthz``, ``/readyz``, ``/metrics``; with ``proxy`` set,
    every other path goes to the proxy gate (single-port mode)."""

    def __init__(self, gate: Gate, *, proxy: ProxyGate | None = None) -> None:
        self.gate = gate
        self.proxy = proxy
        self._proxy_app = ProxyApp(proxy) if proxy is not None else None  # one for all requests

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        path = scope.path
        if path == "/verify":
            hdrs = scope.headers
            resp = await self.gate.forward_auth(hdrs.get, peer=scope.client)
            protocol.response_bytes(resp.status, resp.headers, resp.body)
        elif path == "/healthz":
            protocol.response_bytes(200, _JSON, _HEALTH)
        elif path == "/readyz":
            if self.gate.ready:
                protocol.response_bytes(200, _JSON, _READY)
            else:
                protocol.response_bytes(
                    503, [("content-type", "text/plain"), ("retry-after", "5")], b"not ready"
                )
        elif path == "/metrics" and scope.method == "GET":
            protocol.response_bytes(
                200, [("content-type", "text/plain; version=0.0.4")], self.gate.metrics.render()
            )
        elif self._proxy_app is not None:
            await self._proxy_app.__rsgi__(scope, protocol)
        else:
            protocol.response_bytes(404, _JSON, b'{"error":"not_found","message":"unknown endpoint"}')


class ProxyApp:
    """``--proxy-listen``: every path is a priced (or guarded, or unknown) offer path."""

    def __init__(self, proxy: ProxyGate) -> None:
        self.proxy = proxy

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        target = scope.path + ("?" + scope.query_string if scope.query_string else "")
        req = ProxyRequest(
            method=scope.method,
            target=target,
            headers=[(k.lower(), v) for k, v in scope.headers.items()],
            body=_body(protocol),
            peer=scope.client,
        )
        await self.proxy.handle(req, _RSGIResponder(protocol))
