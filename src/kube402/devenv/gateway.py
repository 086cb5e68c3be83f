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

__all__ = ["ForwardAuthGateway", "Route", "routes_from_cluster", "serving"]

AUTH_RESPONSE_HEADERS = ("x-payment-status", "x-payment-tx", "authorization")
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


class Route:
    """One HTTPRoute rule as the gateway applies it."""

    def __init__(
        self, prefix: str, upstream: str, *, forward_auth: str | None = None, strip: bool = True
    ) -> None:
        self.prefix = prefix.rstrip("/")
        self.upstream = upstream.rstrip("/")
        self.forward_auth = forward_auth
        """ForwardAuth address (the Middleware's), or None for a plain route (proxy mode)."""
        self.strip = strip
        """URLRewrite ReplacePrefixMatch ``/``."""


class ForwardAuthGateway:
    """Serve with granian (RSGI). ``routes()`` returns the current prefix → upstream map (longest wins)."""

    def __init__(self, *, routes: Callable[[], list[Route]]) -> None:
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
        route = next(
            (
                r
                for r in sorted(self.routes(), key=lambda r: -len(r.prefix))
                if scope.path == r.prefix or scope.path.startswith(r.prefix + "/")
            ),
            None,
        )
        if route is None:
            protocol.response_bytes(404, [("content-type", "text/plain")], b"404 page not found\n")
            return
        client_headers = [(k.lower(), v) for k, v in scope.headers.items()]
        forwarded = [
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", scope.headers.get("host") or "localhost"),
            ("x-forwarded-for", (scope.client or "").rsplit(":", 1)[0]),
        ]
        granted: dict[str, str] = {}
        if route.forward_auth:
            auth_headers = [(k, v) for k, v in client_headers if k not in HOP]
            auth_headers += [*forwarded, ("x-forwarded-method", scope.method), ("x-forwarded-uri", uri)]
            self.auth_calls += 1
            async with http.get(route.forward_auth, headers=auth_headers, allow_redirects=False) as auth:
                auth_body = await auth.read()
                if not 200 <= auth.status < 300:
                    hdrs = [(k, v) for k, v in auth.headers.items() if k.lower() not in HOP]
                    protocol.response_bytes(auth.status, hdrs, auth_body)
                    return
                granted = {
                    k.lower(): v for k, v in auth.headers.items() if k.lower() in AUTH_RESPONSE_HEADERS
                }
        body = await protocol()
        fwd = [
            (k, v)
            for k, v in client_headers
            if k not in HOP and (k not in AUTH_RESPONSE_HEADERS or not route.forward_auth)
        ]
        fwd += list(granted.items()) + ([] if route.forward_auth else forwarded)
        rest = (scope.path[len(route.prefix) :] or "/") if route.strip else scope.path
        target = route.upstream + rest + ("?" + scope.query_string if scope.query_string else "")
        try:
            async with http.request(
                scope.method, target, headers=fwd, data=body or None, allow_redirects=False
            ) as up:
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
        server.stop()  # type: ignore[no-untyped-call]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)


def routes_from_cluster(
    *,
    httproutes: Any,
    middlewares: Any,
    services: Any,
    verify_url: str,
    verifier_service: tuple[str, str],
    verifier_proxy_url: str,
) -> list[Route]:
    """Routes as Traefik's Gateway provider would build them from the cached HTTPRoutes (informer stores).

    A Middleware's ForwardAuth address (a cluster DNS name) is replaced by ``verify_url``; a backend that is
    the verifier's Service goes to ``verifier_proxy_url``; other backends resolve through their Service (an
    ExternalName Service to its external name). Rules with unresolvable backends are left out (Traefik
    would answer 5xx for them).
    """
    out: list[Route] = []
    for hr in httproutes:
        ns = hr["metadata"]["namespace"]
        for rule in (hr.get("spec") or {}).get("rules") or []:
            matches = rule.get("matches") or []
            backends = rule.get("backendRefs") or []
            if not matches or not backends:
                continue
            prefix = ((matches[0].get("path") or {}).get("value")) or "/"
            forward_auth = None
            strip = False
            for f in rule.get("filters") or []:
                if f.get("type") == "ExtensionRef":
                    mw = middlewares.get((ns, f["extensionRef"]["name"]))
                    forward_auth = "missing" if mw is None else verify_url
                elif f.get("type") == "URLRewrite":
                    strip = True
            if forward_auth == "missing":
                continue  # Traefik refuses a route whose middleware does not exist
            be = backends[0]
            be_ns = be.get("namespace") or ns
            if (be_ns, be["name"]) == verifier_service:
                out.append(Route(prefix, verifier_proxy_url, forward_auth=forward_auth, strip=strip))
                continue
            svc = services.get((be_ns, be["name"]))
            spec = (svc or {}).get("spec") or {}
            if spec.get("type") != "ExternalName":
                continue
            out.append(
                Route(
                    prefix,
                    f"http://{spec['externalName']}:{be['port']}",
                    forward_auth=forward_auth,
                    strip=strip,
                )
            )
    return out
