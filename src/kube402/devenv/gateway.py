"""A tiny ForwardAuth gateway for tests and the demo, shaped exactly like Traefik's ForwardAuth + URLRewrite.

There is no Traefik here (ENVIRONMENT.md 7), so this stands in for the ingress *only*: for each request it
sends the auth sub-request Traefik sends (GET to the verifier's ``/verify``, no body, the client's headers
plus ``X-Forwarded-Method/-Proto/-Host/-Uri/-For``), returns any non-2xx auth answer to the client unchanged,
and on 2xx copies the ``authResponseHeaders`` (removing client-sent ones of those names), strips the route
prefix and forwards the request to the upstream. The payment logic under test is entirely the verifier's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import aiohttp

__all__ = ["ForwardAuthGateway", "Route"]

AUTH_RESPONSE_HEADERS = ("x-payment-status", "x-payment-tx", "authorization")
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


class Route:
    def __init__(self, prefix: str, upstream: str) -> None:
        self.prefix = prefix.rstrip("/")
        self.upstream = upstream.rstrip("/")


class ForwardAuthGateway:
    """Serve with granian (RSGI). ``routes()`` returns the current prefix → upstream map (longest wins)."""

    def __init__(self, *, verify_url: str, routes: Callable[[], list[Route]]) -> None:
        self.verify_url = verify_url
        self.routes = routes
        self._http: aiohttp.ClientSession | None = None
        self.auth_calls = 0

    async def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(auto_decompress=False)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        http = await self._session()
        uri = scope.path + ("?" + scope.query_string if scope.query_string else "")
        route = next((r for r in sorted(self.routes(), key=lambda r: -len(r.prefix))
                      if scope.path == r.prefix or scope.path.startswith(r.prefix + "/")), None)
        if route is None:
            protocol.response_bytes(404, [("content-type", "text/plain")], b"404 page not found\n")
            return
        client_headers = [(k.lower(), v) for k, v in scope.headers.items()]
        auth_headers = [(k, v) for k, v in client_headers if k not in HOP]
        auth_headers += [("x-forwarded-method", scope.method), ("x-forwarded-proto", "http"),
                         ("x-forwarded-host", scope.headers.get("host") or "localhost"),
                         ("x-forwarded-uri", uri), ("x-forwarded-for", (scope.client or "").rsplit(":", 1)[0])]
        self.auth_calls += 1
        async with http.get(self.verify_url, headers=auth_headers, allow_redirects=False) as auth:
            auth_body = await auth.read()
            if not 200 <= auth.status < 300:
                hdrs = [(k, v) for k, v in auth.headers.items() if k.lower() not in HOP]
                protocol.response_bytes(auth.status, hdrs, auth_body)
                return
            granted = {k.lower(): v for k, v in auth.headers.items() if k.lower() in AUTH_RESPONSE_HEADERS}
        body = await protocol()
        fwd = [(k, v) for k, v in client_headers if k not in HOP and k not in AUTH_RESPONSE_HEADERS]
        fwd += list(granted.items())
        rest = scope.path[len(route.prefix):] or "/"
        target = route.upstream + rest + ("?" + scope.query_string if scope.query_string else "")
        try:
            async with http.request(scope.method, target, headers=fwd, data=body or None,
                                    allow_redirects=False) as up:
                hdrs = [(k, v) for k, v in up.headers.items() if k.lower() not in HOP]
                transport = protocol.response_stream(up.status, hdrs)
                async for chunk in up.content.iter_any():
                    await transport.send_bytes(chunk)
        except aiohttp.ClientError:
            protocol.response_bytes(502, [("content-type", "text/plain")], b"Bad Gateway")


@contextlib.asynccontextmanager
async def serving(app: Any, port: int) -> Any:
    """Serve an RSGI app on 127.0.0.1:port inside the running loop (granian embedded)."""
    from granian.constants import Interfaces
    from granian.server.embed import Server

    server = Server(app, address="127.0.0.1", port=port, interface=Interfaces.RSGI, log_enabled=False)
    task = asyncio.get_running_loop().create_task(server.serve())
    await asyncio.sleep(0.2)
    try:
        yield server
    finally:
        server.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)
