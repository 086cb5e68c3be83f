"""Async client for a facilitator's ``/verify``, ``/settle`` and ``/supported`` (X402.md section 8).

Why this module exists instead of the SDK's ``HTTPFacilitatorClient``: kube402 needs short per-endpoint
deadlines (verify 5 s, settle 30 s, supported 5 s — whole-call deadlines, not per-phase), redirects
followed only for 307/308 with method and body preserved (at most 3 hops), and one failure mode for
everything that is not a well-formed ``200``: :class:`FacilitatorUnavailable`, which the verifier answers
with ``503`` + ``Retry-After`` and never with ``402`` or ``200``. A ``settle`` whose reason is
``settlement_pending`` is reported as pending, not as a terminal failure.

Boundary: HTTP only. Production requests go through aiohttp's client (about 0.2 ms per call on loopback,
against about 0.7 ms for httpx's async client, and the paid path makes two calls); tests inject an
``httpx`` transport (``httpx.MockTransport``) instead, and the redirect, status and size rules above run the
same code either way. The
payload is forwarded exactly as received and the requirements are always the server's own copy; this
module never inspects or alters them. :class:`SupportedCache` refreshes ``/supported`` in the background
so that the request path only reads a frozen set.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
from collections.abc import Mapping
from typing import Any, Final, Self

import aiohttp
import httpx
import orjson

from kube402.x402 import codes

__all__ = [
    "CLAIM_HEADER",
    "Endpoint",
    "FacilitatorClient",
    "FacilitatorUnavailable",
    "Failure",
    "SettleOutcome",
    "SettleResult",
    "SupportedCache",
    "SupportedKinds",
    "Timeouts",
    "VerifyResult",
]

log = logging.getLogger(__name__)

MAX_REDIRECTS: Final = 3
MAX_RESPONSE_BYTES: Final = 1 << 20
_REDIRECT_STATUSES: Final = frozenset({307, 308})


class Endpoint(enum.StrEnum):
    VERIFY = "verify"
    SETTLE = "settle"
    SUPPORTED = "supported"
    RELEASE = "release"


CLAIM_HEADER: Final = "X-Kube402-Claim"
"""Per-request idempotency key; a facilitator listing the ``kube402-claim`` extension admits one request
per payment across every verifier replica (others ignore the header)."""


class Failure(enum.StrEnum):
    """Why the facilitator could not be used (a bounded metric label)."""

    TIMEOUT = "timeout"
    TRANSPORT = "transport"
    STATUS = "status"
    BODY = "body"
    REDIRECT = "redirect"


class FacilitatorUnavailable(Exception):
    """The facilitator gave no usable answer; the payment outcome is unknown (fail closed with 503)."""

    endpoint: Endpoint
    cause: Failure
    status: int | None

    def __init__(self, endpoint: Endpoint, cause: Failure, *, status: int | None = None) -> None:
        detail = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"facilitator {endpoint.value}: {cause.value}{detail}")
        self.endpoint = endpoint
        self.cause = cause
        self.status = status


@dataclasses.dataclass(frozen=True, slots=True)
class Timeouts:
    """Whole-call deadlines in seconds, redirects included (SPEC 7.3)."""

    verify: float = 5.0
    settle: float = 30.0
    supported: float = 5.0

    def of(self, endpoint: Endpoint) -> float:
        if endpoint is Endpoint.VERIFY:
            return self.verify
        if endpoint is Endpoint.SETTLE:
            return self.settle
        return self.supported


@dataclasses.dataclass(frozen=True, slots=True)
class VerifyResult:
    is_valid: bool
    invalid_reason: str | None
    """The facilitator's reason, an open set: pass it through, never switch on it."""
    payer: str | None
    raw: Mapping[str, Any]


class SettleOutcome(enum.StrEnum):
    SUCCESS = "success"
    FAILED = "failed"
    PENDING = "pending"


@dataclasses.dataclass(frozen=True, slots=True)
class SettleResult:
    success: bool
    error_reason: str | None
    transaction: str
    network: str
    payer: str | None
    raw: Mapping[str, Any]
    """The whole response object, e.g. for the base64 receipt header."""

    @property
    def outcome(self) -> SettleOutcome:
        if self.success:
            return SettleOutcome.SUCCESS
        if self.error_reason == codes.SETTLEMENT_PENDING:
            return SettleOutcome.PENDING
        return SettleOutcome.FAILED

    @property
    def pending(self) -> bool:
        return self.outcome is SettleOutcome.PENDING


@dataclasses.dataclass(frozen=True, slots=True)
class SupportedKinds:
    """The facilitator's ``/supported`` kinds as a set of (x402Version, scheme, network)."""

    kinds: frozenset[tuple[int, str, str]]
    raw: Mapping[str, Any]

    def supports(self, version: int, scheme: str, network: str) -> bool:
        if (version, scheme, network) in self.kinds:
            return True
        namespace = network.partition(":")[0]
        return bool(namespace) and (version, scheme, f"{namespace}:*") in self.kinds


class FacilitatorClient:
    """``POST /verify``, ``POST /settle`` and ``GET /supported`` against one facilitator base URL."""

    def __init__(
        self,
        base_url: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeouts: Timeouts | None = None,
        authorization: str | None = None,
        max_redirects: int = MAX_REDIRECTS,
        limits: httpx.Limits | None = None,
    ) -> None:
        timeouts = Timeouts() if timeouts is None else timeouts
        if httpx.URL(base_url).scheme not in ("http", "https"):
            raise ValueError("facilitator URL must be http(s)")
        self._base = base_url.rstrip("/")
        self._timeouts = timeouts
        self._authorization = authorization
        self._max_redirects = max_redirects
        self._limits = limits
        self._urls = {ep: httpx.URL(f"{base_url.rstrip('/')}/{ep.value}") for ep in Endpoint}
        self._aio: aiohttp.ClientSession | None = None
        self._use_httpx = transport is not None
        self._http = httpx.AsyncClient(
            transport=transport,
            follow_redirects=False,
            timeout=httpx.Timeout(max(timeouts.verify, timeouts.settle, timeouts.supported)),
            limits=limits or httpx.Limits(max_connections=256, max_keepalive_connections=64),
            headers={"accept": "application/json", "user-agent": "kube402"},
        )

    def __repr__(self) -> str:  # never show the authorization value
        return f"FacilitatorClient({self._base!r})"

    @property
    def base_url(self) -> str:
        return self._base

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._aio is not None:
            await self._aio.close()
            self._aio = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def verify(
        self,
        payload_raw: Mapping[str, Any],
        requirements: Mapping[str, Any],
        *,
        version: int,
        claim: str | None = None,
    ) -> VerifyResult:
        """Ask whether the payment is valid for the server's requirements; nothing is executed on chain."""
        body = _parse(
            await self._call(Endpoint.VERIFY, _body(payload_raw, requirements, version), claim=claim),
            Endpoint.VERIFY,
        )
        is_valid = body.get("isValid")
        if type(is_valid) is not bool:
            raise FacilitatorUnavailable(Endpoint.VERIFY, Failure.BODY)
        return VerifyResult(
            is_valid=is_valid,
            invalid_reason=_optional_text(body, "invalidReason", Endpoint.VERIFY),
            payer=_optional_text(body, "payer", Endpoint.VERIFY),
            raw=body,
        )

    async def release(
        self, payload_raw: Mapping[str, Any], requirements: Mapping[str, Any], *, version: int, claim: str
    ) -> None:
        """Tell a claim-aware facilitator that the claim's request served nothing (best effort)."""
        await self._call(Endpoint.RELEASE, _body(payload_raw, requirements, version), claim=claim)

    async def settle(
        self,
        payload_raw: Mapping[str, Any],
        requirements: Mapping[str, Any],
        *,
        version: int,
        claim: str | None = None,
    ) -> SettleResult:
        """Execute the payment; ``FacilitatorUnavailable`` here means the outcome is unknown, not failed."""
        body = _parse(
            await self._call(Endpoint.SETTLE, _body(payload_raw, requirements, version), claim=claim),
            Endpoint.SETTLE,
        )
        success = body.get("success")
        if type(success) is not bool:
            raise FacilitatorUnavailable(Endpoint.SETTLE, Failure.BODY)
        return SettleResult(
            success=success,
            error_reason=_optional_text(body, "errorReason", Endpoint.SETTLE),
            transaction=_optional_text(body, "transaction", Endpoint.SETTLE) or "",
            network=_optional_text(body, "network", Endpoint.SETTLE) or "",
            payer=_optional_text(body, "payer", Endpoint.SETTLE),
            raw=body,
        )

    async def supported(self) -> SupportedKinds:
        """The payment kinds the facilitator accepts."""
        body = _parse(await self._call(Endpoint.SUPPORTED, None), Endpoint.SUPPORTED)
        kinds = body.get("kinds")
        if type(kinds) is not list:
            raise FacilitatorUnavailable(Endpoint.SUPPORTED, Failure.BODY)
        found: set[tuple[int, str, str]] = set()
        for kind in kinds:
            if type(kind) is not dict:
                raise FacilitatorUnavailable(Endpoint.SUPPORTED, Failure.BODY)
            version, scheme, network = kind.get("x402Version"), kind.get("scheme"), kind.get("network")
            if type(version) is not int or type(scheme) is not str or type(network) is not str:
                raise FacilitatorUnavailable(Endpoint.SUPPORTED, Failure.BODY)
            found.add((version, scheme, network))
        return SupportedKinds(kinds=frozenset(found), raw=body)

    async def _call(self, endpoint: Endpoint, content: bytes | None, *, claim: str | None = None) -> bytes:
        try:
            async with asyncio.timeout(self._timeouts.of(endpoint)):
                return await self._follow(endpoint, content, claim)
        except TimeoutError:
            raise FacilitatorUnavailable(endpoint, Failure.TIMEOUT) from None
        except httpx.TimeoutException:
            raise FacilitatorUnavailable(endpoint, Failure.TIMEOUT) from None
        except (httpx.HTTPError, httpx.InvalidURL, httpx.CookieConflict, aiohttp.ClientError, OSError) as err:
            raise FacilitatorUnavailable(endpoint, Failure.TRANSPORT) from err

    async def _exchange(
        self, endpoint: Endpoint, method: str, url: httpx.URL, content: bytes | None, headers: dict[str, str]
    ) -> tuple[int, str | None, bytes | None]:
        """One HTTP exchange: (status, Location header, body if 200 — read with the size cap)."""
        if self._use_httpx:
            request = self._http.build_request(method, url, content=content, headers=headers)
            response = await self._http.send(request, stream=True)
            try:
                status = response.status_code
                body = await _read_capped(response, endpoint) if status == 200 else None
                return status, response.headers.get("location"), body
            finally:
                await response.aclose()
        if self._aio is None:
            limit = self._limits.max_connections if self._limits and self._limits.max_connections else 256
            self._aio = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=limit, ttl_dns_cache=300),
                headers={"accept": "application/json", "user-agent": "kube402"},
                auto_decompress=True,
            )
        async with self._aio.request(
            method, str(url), data=content, headers=headers, allow_redirects=False
        ) as resp:
            status = resp.status
            body = None
            if status == 200:
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_any():
                    size += len(chunk)
                    if size > MAX_RESPONSE_BYTES:
                        raise FacilitatorUnavailable(endpoint, Failure.BODY, status=status)
                    chunks.append(chunk)
                body = b"".join(chunks)
            return status, resp.headers.get("location"), body

    async def _follow(self, endpoint: Endpoint, content: bytes | None, claim: str | None = None) -> bytes:
        method = "GET" if content is None else "POST"
        url = self._urls[endpoint]
        origin = (url.scheme, url.host, url.port)
        headers = {"content-type": "application/json"} if content is not None else {}
        if claim is not None:
            headers[CLAIM_HEADER] = claim
        if self._authorization is not None:
            headers["authorization"] = self._authorization
        for _hop in range(self._max_redirects + 1):
            status, location, body = await self._exchange(endpoint, method, url, content, headers)
            if status in _REDIRECT_STATUSES:
                if not location:
                    raise FacilitatorUnavailable(endpoint, Failure.REDIRECT, status=status)
                target = url.join(location)
                if target.scheme not in ("http", "https") or (
                    url.scheme == "https" and target.scheme != "https"
                ):
                    raise FacilitatorUnavailable(endpoint, Failure.REDIRECT, status=status)
                if (target.scheme, target.host, target.port) != origin:
                    headers.pop("authorization", None)  # credentials stay with the configured origin
                url = target
                continue
            if status != 200 or body is None:
                raise FacilitatorUnavailable(endpoint, Failure.STATUS, status=status)
            return body
        raise FacilitatorUnavailable(endpoint, Failure.REDIRECT)


async def _read_capped(response: httpx.Response, endpoint: Endpoint) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise FacilitatorUnavailable(endpoint, Failure.BODY, status=response.status_code)
        chunks.append(chunk)
    return b"".join(chunks)


def _body(payload_raw: Mapping[str, Any], requirements: Mapping[str, Any], version: int) -> bytes:
    return orjson.dumps(
        {
            "x402Version": version,
            "paymentPayload": payload_raw if type(payload_raw) is dict else dict(payload_raw),
            "paymentRequirements": requirements if type(requirements) is dict else dict(requirements),
        }
    )


def _parse(content: bytes, endpoint: Endpoint) -> dict[str, Any]:
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise FacilitatorUnavailable(endpoint, Failure.BODY, status=200) from None
    if type(body) is not dict:
        raise FacilitatorUnavailable(endpoint, Failure.BODY, status=200)
    return body


def _optional_text(body: Mapping[str, Any], key: str, endpoint: Endpoint) -> str | None:
    value = body.get(key)
    if value is None or type(value) is str:
        return value
    raise FacilitatorUnavailable(endpoint, Failure.BODY, status=200)


class SupportedCache:
    """``/supported``, fetched in the background every ``ttl_seconds``; the request path only reads it.

    :meth:`kind_supported` answers None until a fetch has succeeded (unknown: do not refuse on it). A failed
    refresh keeps the last good answer and is retried after ``retry_seconds``.
    """

    def __init__(
        self, client: FacilitatorClient, *, ttl_seconds: float = 600.0, retry_seconds: float = 10.0
    ) -> None:
        self._client = client
        self._ttl = ttl_seconds
        self._retry = min(retry_seconds, ttl_seconds)
        self._kinds: SupportedKinds | None = None
        self.last_error: FacilitatorUnavailable | None = None

    @property
    def kinds(self) -> SupportedKinds | None:
        return self._kinds

    def kind_supported(self, version: int, scheme: str, network: str) -> bool | None:
        kinds = self._kinds
        return None if kinds is None else kinds.supports(version, scheme, network)

    async def refresh(self) -> bool:
        """Fetch once; True on success. Failures are logged and remembered, never raised."""
        try:
            self._kinds = await self._client.supported()
        except FacilitatorUnavailable as err:
            self.last_error = err
            log.warning("facilitator /supported refresh failed: %s", err)
            return False
        self.last_error = None
        return True

    async def run(self) -> None:
        """Refresh now and then periodically until cancelled (run it as a task)."""
        while True:
            ok = await self.refresh()
            await asyncio.sleep(self._ttl if ok else self._retry)
