"""RSGI adapter (granian) for the facilitator: routes, body limits and JSON replies. Decides nothing.

``POST /verify``, ``POST /settle``, ``GET /supported``, ``GET /healthz`` (the process serves), ``GET /readyz``
(every configured RPC node answered with its chain id), ``GET /metrics``. A body larger than
``max_body_bytes`` gets ``413``; an unknown path ``404``; a wrong method ``405``. Handler bugs become a
generic ``500`` without details (they are logged).
"""

from __future__ import annotations

import hmac
import logging
from typing import Any, Final

from kube402.chain.facilitator import claims
from kube402.chain.facilitator import service as service_mod

__all__ = ["FacilitatorApp"]

log = logging.getLogger(__name__)
_JSON: Final = [("content-type", "application/json")]
_OK: Final = b'{"status":"ok"}'
_READY: Final = b'{"status":"ready"}'


def _error(code: str, message: str) -> bytes:
    return b'{"error":"' + code.encode() + b'","message":"' + message.encode() + b'"}'


class _TooLarge(Exception):
    pass


class FacilitatorApp:
    def __init__(self, service: service_mod.Service, *, max_body_bytes: int) -> None:
        self.service = service
        self.max_body_bytes = max_body_bytes

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        try:
            reply = await self._route(scope, protocol)
        except _TooLarge:
            reply = service_mod.Reply(413, _error("payload_too_large", "request body too large"))
        except Exception:
            log.exception("facilitator handler failed for %s %s", scope.method, scope.path)
            reply = service_mod.Reply(500, _error("internal_error", "internal error"))
        protocol.response_bytes(reply.status, list(reply.headers), reply.body)

    async def _route(self, scope: Any, protocol: Any) -> service_mod.Reply:
        path, method = scope.path, scope.method
        if path in ("/verify", "/settle", "/release"):
            if method != "POST":
                return _method_not_allowed("POST")
            if not self._authorized(scope.headers.get("authorization")):
                return service_mod.Reply(
                    401,
                    _error("unauthorized", "a valid bearer token is required"),
                    (*_JSON, ("www-authenticate", "Bearer")),
                )
            claim = scope.headers.get(claims.CLAIM_HEADER)
            if claim is not None and not claims.valid_claim_id(claim):
                return service_mod.Reply(
                    400, _error("invalid_claim", "X-Kube402-Claim must be 16-128 of [A-Za-z0-9_-]")
                )
            body = await self._body(scope, protocol)
            if path == "/verify":
                return await self.service.verify(body, claim=claim)
            if path == "/settle":
                return await self.service.settle(body, claim=claim)
            return await self.service.release(body, claim=claim)
        if path in ("/supported", "/healthz", "/readyz", "/metrics"):
            if method not in ("GET", "HEAD"):
                return _method_not_allowed("GET")
            if path == "/supported":
                return self.service.supported()
            if path == "/healthz":
                return service_mod.Reply(200, _OK)
            if path == "/readyz":
                if await self.service.ready():
                    return service_mod.Reply(200, _READY)
                return service_mod.Reply(
                    503, _error("not_ready", "an RPC node is unreachable"), (*_JSON, ("retry-after", "5"))
                )
            return service_mod.Reply(
                200,
                self.service.metrics.render(),
                (("content-type", "text/plain; version=0.0.4; charset=utf-8"),),
            )
        return service_mod.Reply(404, _error("not_found", "unknown endpoint"))

    def _authorized(self, header: str | None) -> bool:
        token = self.service.settings.auth_token
        if token is None:
            return True
        expected = ("Bearer " + token).encode()
        return header is not None and hmac.compare_digest(header.encode("utf-8", "replace"), expected)

    async def _body(self, scope: Any, protocol: Any) -> bytes:
        declared = scope.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise _TooLarge
        chunks: list[bytes] = []
        size = 0
        async for chunk in protocol:
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
        return b"".join(chunks)


def _method_not_allowed(allowed: str) -> service_mod.Reply:
    return service_mod.Reply(
        405, _error("method_not_allowed", f"use {allowed}"), (*_JSON, ("allow", allowed))
    )
