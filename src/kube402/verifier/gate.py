"""The payment decision for one request: challenge, refuse, or verify and settle (SPEC 7.7, 7.9).

Framework-free: the HTTP adapters (``app.py``) pass a header getter and get a :class:`Response` back.
:meth:`Gate.forward_auth` is Traefik's ``/verify``; :meth:`Gate.admit` and :meth:`Gate.settle` are the shared
steps the proxy gate (``proxy.py``) wraps around the upstream call. Fail closed everywhere: an unready table,
a guarded path or an unreachable facilitator answer 503 with ``Retry-After``, never 200; a settlement whose
outcome is unknown is retried with the same payload and then held as pending, never answered with a new 402
while it could still execute.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import ipaddress
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson

from kube402.verifier import config as config_mod
from kube402.verifier.metrics import Metrics
from kube402.verifier.replay import ReplayStore, State
from kube402.verifier.request import ForwardedRequest
from kube402.verifier.routes import MatchKind, Route, RouteTable
from kube402.x402 import codes, facilitator_client, headers, precheck, requirements

__all__ = [
    "MIN_UPSTREAM_SECONDS",
    "SETTLE_MARGIN_SECONDS",
    "Admitted",
    "ChainCheck",
    "Facilitator",
    "Gate",
    "Response",
]

log = logging.getLogger(__name__)
Code = codes.Code
HeaderGetter = Callable[[str], "str | None"]

JSON = "application/json"
_STATUS = {code: str(code) for code in range(100, 600)}
SETTLE_MARGIN_SECONDS: Final = 5
"""Proxy mode: time kept between the end of the upstream deadline plus a settle and ``validBefore``."""
MIN_UPSTREAM_SECONDS: Final = 10
"""Proxy mode (settling after the upstream): the shortest upstream deadline an authorization must leave.
An authorization that expires sooner could let the upstream work and then fail to settle (free work)."""

ChainCheck = Callable[["Admitted"], Awaitable["bool | str | None"]]
"""Asks the chain whether an authorization was executed as a transfer to payTo: a transaction hash or True
(it was), False (it was not: canceled), None (cannot tell, or not executed yet)."""


@dataclasses.dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""


@dataclasses.dataclass(slots=True)
class Facilitator:
    """The facilitator in use (swapped as a whole when ``facilitatorURL`` changes)."""

    client: facilitator_client.FacilitatorClient
    supported: facilitator_client.SupportedCache
    task: asyncio.Task[None] | None = None

    @classmethod
    def start(cls, cfg: config_mod.Config) -> Facilitator:
        token = ""
        if cfg.facilitator_token_file:
            try:
                with open(cfg.facilitator_token_file, encoding="utf-8") as f:
                    token = f.read().strip()
            except OSError as err:
                log.error("facilitator token file unreadable: %s", err.strerror)
        client = facilitator_client.FacilitatorClient(
            cfg.facilitator_url,
            timeouts=facilitator_client.Timeouts(verify=cfg.verify_timeout, settle=cfg.settle_timeout),
            authorization=f"Bearer {token}" if token else None,
        )
        supported = facilitator_client.SupportedCache(client, ttl_seconds=cfg.supported_ttl)
        fac = cls(client, supported)
        fac.task = asyncio.get_running_loop().create_task(supported.run())
        return fac

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        await self.client.aclose()


@dataclasses.dataclass(slots=True)
class Admitted:
    """A payment that passed every check and the facilitator's /verify; next: serve and settle."""

    route: Route
    decoded: headers.DecodedPayment
    requirement: requirements.Requirement
    server_requirements: Any
    challenge: requirements.Challenge
    key: tuple[int, str, str, str]
    payload_hash: str
    payer: str
    pending_tx: str | None = None
    """Set when this request resumes an earlier settlement whose outcome is unknown (its tx hash, maybe "")."""
    claim: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(18))
    """Per-request idempotency key sent to the facilitator (``X-Kube402-Claim``): a claim-aware facilitator
    admits one request per payment across all replicas; this request's own retries reuse it."""
    settling: bool = False
    """A settle call may have reached the facilitator: abandoning now leaves the outcome unknown."""
    done: bool = False
    """The entry got its final state (settled, dropped, pending); nothing to clean up."""


def _error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"error": code, "message": message})


class Gate:
    def __init__(
        self,
        *,
        config: config_mod.Config,
        metrics: Metrics,
        facilitator: Facilitator | None = None,
        clock: Callable[[], float] = time.time,
        settle_retry_delay: float = 1.0,
        default_unmatched: str = "allow",
        chain: ChainCheck | None = None,
    ) -> None:
        self.config = config
        self.default_unmatched = default_unmatched
        """``unmatched`` when the config leaves it empty: ``allow`` for file routes, ``deny`` in kube mode,
        where every /verify call comes through an offer's Middleware: an unmatched path is a stale route."""
        self.chain = chain
        """Resolves unknown settlement outcomes from the chain (``rpcURLs``); None = no chain access."""
        self.metrics = metrics
        self.facilitator = facilitator
        self.clock = clock
        self.settle_retry_delay = settle_retry_delay
        self.table = RouteTable.empty()
        self.ready = False
        self.replay = ReplayStore(replay_ttl=config.replay_ttl, clock=clock)
        self._retry_after = str(config.retry_after)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def unmatched(self) -> str:
        return self.config.unmatched or self.default_unmatched

    def apply_config(self, config: config_mod.Config) -> None:
        """Take a new configuration (the facilitator is swapped by the caller)."""
        self.config = config
        self._retry_after = str(config.retry_after)
        self.replay.replay_ttl = config.replay_ttl

    # -- responses --------------------------------------------------------------------------------------

    def error(self, status: int, code: str, message: str, *extra: tuple[str, str]) -> Response:
        body = _error_body(code, message)
        hdrs = [("content-type", JSON), ("cache-control", "no-store"), *extra]
        if status == 503:
            hdrs.append(("retry-after", self._retry_after))
        return Response(status, hdrs, body)

    def unavailable(self, route: Route | None, cause: Code, message: str) -> Response:
        labels = route.labels if route else ("", "", "")
        self.metrics.unavailable.inc((*labels, cause.value))
        return self.error(503, cause.value, message)

    def challenge_response(
        self,
        challenge: requirements.Challenge,
        *,
        accept: str | None,
        status: int | None = None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> Response:
        html = bool(accept) and _prefers_html(accept or "")
        body = challenge.html if html else challenge.body
        return Response(
            status or self.config.challenge_status,
            [
                ("content-type", "text/html; charset=utf-8" if html else JSON),
                ("cache-control", "no-store"),
                (headers.PAYMENT_REQUIRED, challenge.header),
                *extra,
            ],
            body,
        )

    def refuse(
        self,
        route: Route,
        challenge: requirements.Challenge,
        reason: str,
        *,
        metric_reason: str,
        accept: str | None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> Response:
        self.metrics.failed.inc(route.labels)
        self.metrics.failures.inc((*route.labels, metric_reason))
        return self.challenge_response(challenge.with_error(reason), accept=accept, extra=extra)

    # -- ForwardAuth ------------------------------------------------------------------------------------

    def publish_table(self, table: RouteTable) -> None:
        """Serve from ``table`` from now on (the route table keeper's callback)."""
        self.table = table

    def trusted(self, peer: str | None) -> bool:
        nets = self.config.trusted_proxies
        if not nets:
            return True
        text = peer or ""
        host = text.rsplit(":", 1)[0] if text.count(":") == 1 or text.startswith("[") else text
        try:
            addr = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        mapped = getattr(addr, "ipv4_mapped", None)
        return any(addr in n or (mapped is not None and mapped in n) for n in nets)

    async def forward_auth(self, h: HeaderGetter, *, peer: str | None) -> Response:
        start = time.perf_counter()
        resp = await self._forward_auth(h, peer)
        self.metrics.duration.observe(("forwardAuth", _STATUS[resp.status]), time.perf_counter() - start)
        return resp

    async def _forward_auth(self, h: HeaderGetter, peer: str | None) -> Response:
        if not self.trusted(peer):
            return self.error(403, Code.UNTRUSTED_SOURCE.value, "forbidden: untrusted source")
        uri = h("x-forwarded-uri")
        if not uri:
            return self.error(403, Code.MISSING_FORWARDED_URI.value, "forbidden: missing forwarded URI")
        if len(uri) > self.config.max_target_bytes:
            return self.error(414, Code.URI_TOO_LONG.value, "request target too long")
        if not self.ready:
            return self.unavailable(None, Code.NOT_READY, "verifier has not synced its routes yet")
        match = self.table.lookup(uri)
        if match.kind is MatchKind.GUARDED:
            return self.unavailable(None, Code.OFFER_UNAVAILABLE, "this offer is not available right now")
        if match.route is None:
            if self.unmatched == "deny":
                return self.error(403, Code.ROUTE_DENIED.value, "no priced route for this path")
            return Response(200, [], b"")
        route = match.route
        fwd = ForwardedRequest.parse(h, method=h("x-forwarded-method") or "GET", target=uri)
        method = fwd.method
        admitted = await self.admit(route, h, resource_url=fwd.resource_url, method=method)
        if isinstance(admitted, Response):
            return admitted
        extra: list[tuple[str, str]] = []
        if route.upstream_auth:
            extra.append(("authorization", route.upstream_auth))
        if method == "HEAD" and admitted.pending_tx is not None:
            self.release(admitted)  # an unresolved settlement stays pending; a HEAD does not resolve it
            return self.unavailable(
                route, Code.SETTLEMENT_PENDING, "settlement outcome unknown; retry with the same payment"
            )
        if method == "HEAD" or self.config.verify_only:
            # Verified, never settled: one authorization buys at most one HEAD (or verify-only pass).
            self.use_unsettled(admitted, head=method == "HEAD")
            return Response(200, [("x-payment-status", "verified"), *extra], b"")
        settled = await self.settle(admitted, accept=h("accept"))
        if isinstance(settled, Response):
            return settled
        receipt_name, receipt, tx = settled
        return Response(
            200, [("x-payment-status", "settled"), ("x-payment-tx", tx), *extra, (receipt_name, receipt)], b""
        )

    # -- shared steps -----------------------------------------------------------------------------------

    async def admit(
        self, route: Route, h: HeaderGetter, *, resource_url: str, method: str, proxy: bool = False
    ) -> Admitted | Response:
        """SPEC 7.7 steps 5-11 for a priced route: a Response (challenge or refusal) or an Admitted payment.

        ``proxy``: the proxy gate asks; a CORS preflight is answered here with CORS headers (there is no
        upstream answer to pass on), and an authorization must outlive the upstream call plus a settle.
        """
        self.metrics.requests.inc(route.labels)
        if method == "OPTIONS" and h("access-control-request-method"):
            return Response(204 if proxy else 200, cors_preflight(h) if proxy else [], b"")
        accept = h("accept")
        challenge = route.priced.challenge(resource_url)
        decoded = self._decode_payment(route, challenge, h, accept=accept)
        if isinstance(decoded, Response):
            return decoded
        requirement = self._check_payment(route, challenge, decoded, accept=accept, proxy=proxy)
        if isinstance(requirement, Response):
            return requirement
        auth = decoded.authorization
        key = (
            requirement.chain.chain_id,
            requirement.asset.lower(),
            auth.from_address.lower(),
            auth.nonce.hex(),
        )
        payload_hash = hashlib.sha256(orjson.dumps(decoded.raw, option=orjson.OPT_SORT_KEYS)).hexdigest()
        reserved = self._reserve(route, challenge, key, payload_hash, method=method, accept=accept)
        if isinstance(reserved, Response):
            return reserved
        pending_tx, pending_claim = reserved
        try:
            server_reqs = challenge.server_requirements(requirement, version=decoded.version)
        except ValueError:
            self.replay.drop(key)
            return self._bad(route, challenge, Code.INVALID_X402_VERSION, "this route has no x402 v1 form")
        admitted = Admitted(
            route,
            decoded,
            requirement,
            server_reqs,
            challenge,
            key,
            payload_hash,
            payer=auth.from_address,
            pending_tx=pending_tx,
        )
        if pending_claim:
            admitted.claim = pending_claim
        if pending_tx is not None:
            return admitted  # it verified before; only its settlement is unresolved
        try:
            return await self._verify(admitted, accept=accept)
        except BaseException:
            self.replay.drop(key)  # cancelled (client gone) or a bug: nothing may stay in flight
            self._release_claim(admitted)
            raise

    def _decode_payment(
        self, route: Route, challenge: requirements.Challenge, h: HeaderGetter, *, accept: str | None
    ) -> headers.DecodedPayment | Response:
        """SPEC 7.7 steps 5-7: the decoded payment header, or the challenge / refusal to answer with."""
        m = self.metrics
        labels = route.labels
        sig = h(_PAYMENT_SIGNATURE)
        xpay = h(_X_PAYMENT)
        if not sig and not xpay:
            m.payment_required.inc(labels)
            return self.challenge_response(challenge, accept=accept)
        if sig and xpay and sig != xpay:
            return self._bad(
                route,
                challenge,
                Code.CONFLICTING_PAYMENT_HEADERS,
                "PAYMENT-SIGNATURE and X-PAYMENT carry different payments",
            )
        value = sig or xpay or ""
        limit = self.config.max_payment_header_bytes
        if len(value) > limit:
            m.failed.inc(labels)
            m.failures.inc((*labels, Code.PAYMENT_HEADER_TOO_LARGE.value))
            return self.error(
                431,
                Code.PAYMENT_HEADER_TOO_LARGE.value,
                f"payment header larger than {limit} bytes",
                (headers.PAYMENT_REQUIRED, challenge.header),
            )
        try:
            return headers.decode_payment_header(value, max_bytes=limit, accept_v1=self.config.accept_v1)
        except headers.PaymentHeaderError as err:
            return self._bad(route, challenge, err.code, err.message)

    def _check_payment(
        self,
        route: Route,
        challenge: requirements.Challenge,
        decoded: headers.DecodedPayment,
        *,
        accept: str | None,
        proxy: bool,
    ) -> requirements.Requirement | Response:
        """SPEC 7.7 steps 8-9: the requirement the payment binds to, or the refusal (mismatch, precheck)."""
        requirement = requirements.match_requirement(decoded, route.priced.requirements)
        if requirement is None:
            return self.refuse(
                route,
                challenge,
                Code.REQUIREMENTS_MISMATCH.value,
                metric_reason=Code.REQUIREMENTS_MISMATCH.value,
                accept=accept,
            )
        now = int(self.clock())
        problem = precheck.check(
            decoded, requirement, now=now, max_validity_seconds=self.config.max_validity_seconds
        )
        if (
            problem is None
            and proxy
            and not route.settle_before_upstream
            and decoded.authorization.valid_before < now + self.min_proxy_window()
        ):
            problem = Code.VALID_BEFORE
        if problem is not None:
            return self.refuse(route, challenge, problem.value, metric_reason=problem.value, accept=accept)
        return requirement

    def _reserve(
        self,
        route: Route,
        challenge: requirements.Challenge,
        key: tuple[int, str, str, str],
        payload_hash: str,
        *,
        method: str,
        accept: str | None,
    ) -> tuple[str | None, str] | Response:
        """SPEC 7.7 step 10: claim the nonce in the replay store.

        Returns ``(pending_tx, pending_claim)`` (both empty unless an unresolved settlement of this same
        payload is taken over), or the refusal when the nonce is in flight, pending for another payload or used.
        """
        existing = self.replay.begin(key, payload_hash=payload_hash)
        if existing is None:
            return None, ""
        m = self.metrics
        labels = route.labels
        if existing.state is State.IN_FLIGHT:
            m.failed.inc(labels)
            m.failures.inc((*labels, Code.PAYMENT_IN_PROGRESS.value))
            return self.error(409, Code.PAYMENT_IN_PROGRESS.value, "this payment is already being processed")
        if existing.state is State.HEAD_USED and method != "HEAD":
            self.replay.take_over(key)  # a HEAD was served with it; the paid request may follow
            return None, ""
        if existing.state is State.PENDING:
            if existing.payload_hash != payload_hash:
                return self.unavailable(
                    route,
                    Code.SETTLEMENT_PENDING,
                    "an earlier settlement of this authorization is unresolved",
                )
            self.replay.take_over(key)
            return existing.tx, existing.claim
        return self.refuse(
            route,
            challenge,
            Code.NONCE_ALREADY_USED.value,
            metric_reason=Code.NONCE_ALREADY_USED.value,
            accept=accept,
        )

    def min_proxy_window(self) -> int:
        """Shortest ``validBefore - now`` the proxy gate accepts when it settles after the upstream."""
        return MIN_UPSTREAM_SECONDS + int(self.config.settle_timeout) + SETTLE_MARGIN_SECONDS

    def upstream_deadline(self, a: Admitted, route_timeout: float) -> float:
        """Seconds the upstream may take so that the settle still ends before ``validBefore``."""
        left = a.decoded.authorization.valid_before - self.clock()
        return max(1.0, min(route_timeout, left - self.config.settle_timeout - SETTLE_MARGIN_SECONDS))

    def use_unsettled(self, a: Admitted, *, head: bool) -> None:
        """Verified and served without settlement: a HEAD marks the authorization ``head_used`` (no second
        HEAD; a GET may still settle it), verifyOnly spends it until validBefore (on this replica)."""
        a.done = True
        vb = a.decoded.authorization.valid_before
        if head:
            self.replay.head_used(a.key, valid_before=vb)
            self._release_claim(a)  # the paid request that may follow the HEAD needs the claim
        else:
            self.replay.verify_only(a.key, valid_before=vb)

    def abandon(self, a: Admitted) -> None:
        """The request failed or was cancelled before its entry got a final state: leave nothing in flight.
        Before any settle call: released; once a settle may have been sent: pending (outcome unknown)."""
        if a.done:
            return
        if a.settling:
            a.done = True
            self.replay.pending(
                a.key,
                payload_hash=a.payload_hash,
                tx=a.pending_tx or "",
                valid_before=a.decoded.authorization.valid_before,
                claim=a.claim,
            )
        else:
            self.release(a)

    def release(self, a: Admitted) -> None:
        """Nothing was settled by this request: forget its entry, or keep an earlier unknown settlement pending."""
        if a.done:
            return
        a.done = True
        if a.pending_tx is None:
            self.replay.drop(a.key)
            self._release_claim(a)
        else:
            self.replay.pending(
                a.key,
                payload_hash=a.payload_hash,
                tx=a.pending_tx,
                valid_before=a.decoded.authorization.valid_before,
                claim=a.claim,
            )

    def _bad(self, route: Route, challenge: requirements.Challenge, code: Code, message: str) -> Response:
        self.metrics.failed.inc(route.labels)
        self.metrics.failures.inc((*route.labels, code.value))
        return self.error(
            400, code.value, message, (headers.PAYMENT_REQUIRED, challenge.with_error(code.value).header)
        )

    async def _verify(self, a: Admitted, *, accept: str | None) -> Admitted | Response:
        fac = self.facilitator
        route = a.route
        if fac is None:
            self.replay.drop(a.key)
            return self.unavailable(route, Code.FACILITATOR_UNAVAILABLE, "no facilitator configured")
        if fac.supported.kind_supported(a.decoded.version, headers.SCHEME_EXACT, a.decoded.network) is False:
            self.replay.drop(a.key)
            return self.unavailable(
                route, Code.FACILITATOR_UNSUPPORTED, "the facilitator does not support this payment kind"
            )
        start = time.perf_counter()
        try:
            result = await fac.client.verify(
                a.decoded.raw, a.server_requirements, version=a.decoded.version, claim=a.claim
            )
        except facilitator_client.FacilitatorUnavailable as err:
            self.metrics.facilitator.labels("verify", "unavailable").observe(time.perf_counter() - start)
            self.replay.drop(a.key)
            self._release_claim(a)  # the verify may have reached it and reserved the payment
            log.warning("facilitator verify failed: %s", err)
            return self.unavailable(route, Code.FACILITATOR_UNAVAILABLE, "payment facilitator unavailable")
        self.metrics.facilitator.labels("verify", "valid" if result.is_valid else "invalid").observe(
            time.perf_counter() - start
        )
        if not result.is_valid:
            self.replay.drop(a.key)
            reason = result.invalid_reason or "invalid_payment"
            if reason == Code.PAYMENT_IN_PROGRESS.value:  # another replica's request holds the claim
                self.metrics.failed.inc(route.labels)
                self.metrics.failures.inc((*route.labels, Code.PAYMENT_IN_PROGRESS.value))
                return self.error(
                    409, Code.PAYMENT_IN_PROGRESS.value, "this payment is already being processed"
                )
            log.info(
                "payment refused by facilitator", extra={"fields": {"reason": reason, "route": route.pattern}}
            )
            return self.refuse(route, a.challenge, reason, metric_reason="facilitator_invalid", accept=accept)
        self.metrics.verified.inc(route.labels)
        return a

    async def settle(self, a: Admitted, *, accept: str | None) -> tuple[str, str, str] | Response:
        """Settle (one retry on an unknown outcome); (receipt header name, value, tx) or a refusal.

        Cancellation or an error inside leaves the entry pending (a settle may have been sent), never in
        flight. A terminal failure after an unknown outcome is not believed blindly: the first attempt may
        have executed (the retry then sees its nonce used), so the chain is asked before answering 402.
        """
        a.settling = True
        try:
            return await self._settle(a, accept=accept)
        finally:
            self.abandon(a)

    async def _settle(self, a: Admitted, *, accept: str | None) -> tuple[str, str, str] | Response:
        fac = self.facilitator
        route = a.route
        if fac is None:
            self._pending(a, a.pending_tx or "")
            return self.unavailable(route, Code.FACILITATOR_UNAVAILABLE, "no facilitator configured")
        result, known_tx, unknown = await self._settle_attempts(a, fac)
        receipt_name = headers.receipt_header(a.decoded.version)
        if result is not None and not result.pending and not result.success and unknown:
            verdict = await self._ask_chain(a)
            if verdict is None:
                result = None  # cannot tell: keep it pending rather than refuse a payment that went through
            elif verdict is not False:
                tx = verdict if isinstance(verdict, str) else known_tx
                log.info(
                    "settlement resolved from the chain",
                    extra={"fields": {"route": route.pattern, "transaction": tx}},
                )
                return self._settled(
                    a,
                    receipt_name,
                    {
                        "success": True,
                        "transaction": tx,
                        "network": a.requirement.chain.caip2,
                        "payer": a.payer,
                    },
                    tx,
                )
        if result is None or result.pending:
            self._pending(a, known_tx)
            self.metrics.settlements.inc((*route.labels, "pending"))
            return self.unavailable(
                route, Code.SETTLEMENT_PENDING, "settlement outcome unknown; retry with the same payment"
            )
        receipt = headers.encode_b64_json(result.raw)
        if not result.success:
            self.release_dropped(a)
            self.metrics.settlements.inc((*route.labels, "failed"))
            reason = result.error_reason or "settle_failed"
            log.info("settlement failed", extra={"fields": {"reason": reason, "route": route.pattern}})
            return self.refuse(
                route,
                a.challenge,
                reason,
                metric_reason="settle_failed",
                accept=accept,
                extra=((receipt_name, receipt),),
            )
        return self._settled(a, receipt_name, result.raw, result.transaction)

    async def _settle_attempts(
        self, a: Admitted, fac: Facilitator
    ) -> tuple[facilitator_client.SettleResult | None, str, bool]:
        """Call the facilitator's settle up to twice (again after an unknown or pending outcome).

        Returns the last answer (None when the outcome is unknown), the best known transaction hash, and
        whether any attempt may have reached the chain without a final answer.
        """
        result = None
        known_tx = a.pending_tx or ""
        unknown = a.pending_tx is not None
        for attempt in range(2):
            if attempt:
                await asyncio.sleep(self.settle_retry_delay)
            start = time.perf_counter()
            try:
                result = await fac.client.settle(
                    a.decoded.raw, a.server_requirements, version=a.decoded.version, claim=a.claim
                )
            except facilitator_client.FacilitatorUnavailable as err:
                self.metrics.facilitator.labels("settle", "unknown").observe(time.perf_counter() - start)
                log.warning("facilitator settle outcome unknown: %s", err)
                result = None
                unknown = True
                continue
            known_tx = result.transaction or known_tx
            outcome = "pending" if result.pending else ("success" if result.success else "failed")
            self.metrics.facilitator.labels("settle", outcome).observe(time.perf_counter() - start)
            if not result.pending:
                break
            unknown = True
        return result, known_tx, unknown

    def _settled(self, a: Admitted, receipt_name: str, raw: Any, tx: str) -> tuple[str, str, str]:
        a.done = True
        self.replay.settled(a.key, tx=tx)
        self.metrics.settlements.inc((*a.route.labels, "success"))
        self.metrics.charged.inc(a.route.labels)
        return receipt_name, headers.encode_b64_json(raw), tx

    def _pending(self, a: Admitted, tx: str) -> None:
        a.done = True
        self.replay.pending(
            a.key,
            payload_hash=a.payload_hash,
            tx=tx,
            valid_before=a.decoded.authorization.valid_before,
            claim=a.claim,
        )

    def _release_claim(self, a: Admitted) -> None:
        """Best effort: tell the facilitator this request served nothing (its claim would else hold the
        payment until validBefore). A facilitator without claims answers 404, which is ignored."""
        fac = self.facilitator
        if fac is None:
            return

        async def release() -> None:
            try:
                await fac.client.release(
                    a.decoded.raw, a.server_requirements, version=a.decoded.version, claim=a.claim
                )
            except Exception as err:  # noqa: BLE001 - best effort; the claim expires with the authorization
                log.debug("claim release not confirmed: %s", err)

        with contextlib.suppress(RuntimeError):
            task = asyncio.get_running_loop().create_task(release())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def release_dropped(self, a: Admitted) -> None:
        a.done = True
        self.replay.drop(a.key)

    async def _ask_chain(self, a: Admitted) -> bool | str | None:
        if self.chain is None:
            return None
        try:
            return await self.chain(a)
        except Exception as err:  # noqa: BLE001 - any chain failure means "cannot tell", never a refusal
            log.warning("chain lookup of an unknown settlement failed: %s", type(err).__name__)
            return None


def cors_preflight(h: HeaderGetter) -> list[tuple[str, str]]:
    """CORS headers for a preflight answered by the proxy gate: the browser may then send the payment
    headers and read the challenge and the receipt. Requested names are echoed only if they are tokens."""
    origin = h("origin")
    method = (h("access-control-request-method") or "").strip()
    asked = [n.strip() for n in (h("access-control-request-headers") or "").split(",")]
    names = [n for n in asked if n and _TOKEN.fullmatch(n)]
    for extra in (_PAYMENT_SIGNATURE, _X_PAYMENT, "content-type"):
        if extra not in (n.lower() for n in names):
            names.append(extra)
    methods = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"
    if method and _TOKEN.fullmatch(method) and method.upper() not in methods:
        methods += ", " + method.upper()
    out = [
        ("access-control-allow-origin", origin if origin and _ORIGIN.fullmatch(origin) else "*"),
        ("access-control-allow-methods", methods),
        ("access-control-allow-headers", ", ".join(names[:32])),
        ("access-control-expose-headers", CORS_EXPOSE),
        ("access-control-max-age", "600"),
        ("vary", "Origin"),
    ]
    return out


_PAYMENT_SIGNATURE: Final = headers.PAYMENT_SIGNATURE.lower()
_X_PAYMENT: Final = headers.X_PAYMENT.lower()
CORS_EXPOSE: Final = ", ".join(
    (headers.PAYMENT_REQUIRED, headers.PAYMENT_RESPONSE, headers.X_PAYMENT_RESPONSE)
)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[A-Za-z0-9.:\[\]-]{1,255}")


def _prefers_html(accept: str) -> bool:
    """True when ``text/html`` ranks above JSON in an Accept header (browsers)."""
    best_html = best_json = -1.0
    for part in accept.split(","):
        fields = part.strip().split(";")
        mtype = fields[0].strip().lower()
        q = 1.0
        for f in fields[1:]:
            f = f.strip()
            if f.startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        if mtype == "text/html":
            best_html = max(best_html, q)
        elif mtype in ("application/json", "application/*"):
            best_json = max(best_json, q)
    return best_html > 0 and best_html > best_json
