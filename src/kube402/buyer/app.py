"""RSGI adapter (granian) for the buyer: ops endpoints plus the paying proxy. Decides nothing about payment.

The request body is read once here, bounded (``max_body_bytes``, 10 MiB → ``413``), and handed to the proxy
as one immutable ``bytes``; responses are streamed chunk by chunk as the seller sends them (SSE included).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

from kube402.buyer.proxy import BuyerProxy, Request, Responder, Response, error

__all__ = ["MAX_BODY_BYTES", "BuyerApp"]

MAX_BODY_BYTES: Final = 10 * 1024 * 1024
DRAIN_FACTOR: Final = 4
"""An oversized body is read and discarded up to this many times the limit, so clients can read the 413."""
_JSON: Final = [("content-type", "application/json")]


class _RSGIResponder(Responder):
    __slots__ = ("protocol",)

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol

    async def respond(self, resp: Response) -> None:
        self.protocol.response_bytes(resp.status, resp.headers, resp.body)

    async def start(self, status: int, headers: list[tuple[str, str]]) -> Callable[[bytes], Awaitable[None]]:
        transport = self.protocol.response_stream(status, headers)
        return transport.send_bytes  # type: ignore[no-any-return]


class BuyerApp:
    def __init__(self, proxy: BuyerProxy, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.proxy = proxy
        self.max_body_bytes = max_body_bytes

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        path, method = scope.path, scope.method
        if method == "GET" and path in ("/healthz", "/status", "/metrics", "/v1/models", "/models"):
            self._ops(path, protocol)
            return
        hdrs = [(k.lower(), v) for k, v in scope.headers.items()]
        buf = bytearray()
        too_large = False
        seen = 0
        async for chunk in protocol:
            seen += len(chunk)
            if seen > self.max_body_bytes:
                too_large = True  # keep reading (discarding) so the client can read the 413
                buf.clear()
                if seen > DRAIN_FACTOR * self.max_body_bytes:
                    break  # past this the connection is simply answered and closed
            else:
                buf += chunk
        if too_large:
            resp = error(413, "body_too_large", f"request body exceeds {self.max_body_bytes} bytes")
            protocol.response_bytes(resp.status, resp.headers, resp.body)
            return
        req = Request(method=method, path=path, query=scope.query_string, headers=hdrs, body=bytes(buf))
        await self.proxy.handle(req, _RSGIResponder(protocol))

    def _ops(self, path: str, protocol: Any) -> None:
        if path == "/healthz":
            protocol.response_bytes(200, [("content-type", "text/plain")], b"ok")
        elif path == "/status":
            protocol.response_bytes(200, _JSON, json.dumps(self.proxy.status(), indent=1).encode())
        elif path == "/metrics":
            protocol.response_bytes(
                200, [("content-type", "text/plain; version=0.0.4")], self.proxy.metrics.render()
            )
        else:
            protocol.response_bytes(200, _JSON, json.dumps(self.proxy.models()).encode())
