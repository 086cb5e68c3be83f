"""The facilitator's verify / settle / supported logic, built on the x402 package's EVM ``exact`` mechanism.

Choice (X402.md section 16): every payment decision — scheme, network, EIP-712 ``extra``, recipient, exact
amount, time window, signature (EOA, EIP-1271), token code, ``eth_call`` simulation, revert-to-reason
mapping, Transfer-log confirmation — is made by x402's ``ExactEvmFacilitatorScheme`` (v2) and
``ExactEvmSchemeV1`` (v1), registered with ``simulate_in_settle=True`` so a replayed authorization is refused
before anything is broadcast. What the package's blocking, exception-swallowing model cannot provide is
added around it instead of rewriting it:

* the mechanism runs in a dedicated thread pool (``Settings.workers``), never on the event loop;
* the chain side is kube402's :class:`~kube402.chain.facilitator.relayer.Relayer` (one nonce sequence,
  bounded receipt waits, a per-call probe), not ``FacilitatorWeb3Signer``;
* :class:`~kube402.chain.facilitator.ledger.Ledger` makes settles idempotent per authorization and keeps
  ``settlement_pending`` hashes for retries. The package's own pending store is replaced by a no-op, so
  the ledger is the one source of truth;
* a verdict reached while the RPC node failed is not a verdict: it becomes ``503`` (see below).

Answers (X402.md section 8): ``200`` with ``isValid``/``success`` and the mechanism's reason for every
payment outcome and every client mistake (unknown network, wrong scheme, malformed payload); ``400`` only
for a body that is not JSON; ``503`` with ``Retry-After`` and reason ``facilitator_unavailable`` when the
chain could not be asked (node down, wrong chain id, relayer refused by the node) and nothing was
broadcast — clients must fail closed on it. A settle that may have broadcast is never ``503``: it is
``settlement_pending`` with the transaction hash. ``/verify`` never sends a transaction and never touches
the ledger.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from eth_account.signers.local import LocalAccount
from x402.mechanisms.evm.constants import (
    ERR_NETWORK_MISMATCH,
    ERR_TRANSACTION_FAILED,
    ERR_TRANSFER_EVENT_MISMATCH,
    ERR_UNSUPPORTED_SCHEME,
)
from x402.mechanisms.evm.exact.eip3009_utils import verify_eip3009_transfer_event
from x402.schemas import SchemeNotFoundError, SettleResponse, VerifyResponse

from kube402.api import chains
from kube402.chain import rpc
from kube402.chain.facilitator import claims, config, ledger, metrics, network, relayer, wire

__all__ = ["Reply", "Service"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_JSON = (("content-type", "application/json"),)
_RETRY_AFTER = "2"
_MESSAGE_MAX = 300
_READY_TIMEOUT = 3.0


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = _JSON


@dataclasses.dataclass(slots=True)
class _Seen:
    """What a request handler learned before it failed: the metric label and the network it asked for."""

    label: str = ""
    network: str = ""


class Service:
    def __init__(self, settings: config.Settings, *, account: LocalAccount, metrics: metrics.Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.networks = tuple(
            network.Network(n, account=account, settings=settings, on_nonce=metrics.nonce_setter(n.label))
            for n in settings.networks
        )
        self._by_name: dict[tuple[int, str], network.Network] = {}
        for net in self.networks:
            self._by_name[(2, net.config.caip2)] = net
            if net.config.v1_name is not None:
                self._by_name[(1, net.config.v1_name)] = net
        self.ledger = ledger.Ledger()
        self.claims = claims.Claims()
        self._assets = {net.config.chain_id: _allowed_assets(net.config) for net in self.networks}
        self._in_flight: dict[tuple[int, str, str], int] = {}
        """Atomic units being settled per (chain, asset, payer): reserved against the balance first."""
        self._payer_locks: dict[tuple[int, str, str], asyncio.Lock] = {}
        metrics.track_ledger(pending=lambda: self.ledger.pending, in_flight=lambda: self.ledger.in_flight)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            settings.workers, thread_name_prefix="x402-mechanism"
        )
        self._supported = Reply(
            200,
            wire.dump(
                wire.supported(
                    (wire.Kind(n.caip2, n.v1_name) for n in settings.networks), signers=[account.address]
                )
            ),
        )

    @property
    def relayer_address(self) -> str:
        return self.networks[0].relayer.address

    def supported(self) -> Reply:
        return self._supported

    async def ready(self) -> bool:
        """Every node has shown the right chain id once and answers now (``/readyz``)."""
        for net in self.networks:
            try:
                await net.ensure_ready()
                await asyncio.wait_for(net.node.block_number(), _READY_TIMEOUT)
            except (network.Unavailable, rpc.ChainError, TimeoutError):
                return False
        return True

    async def close(self) -> None:
        await self.ledger.drain(timeout=self.settings.confirmation_timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- /verify ------------------------------------------------------------------------------------

    async def verify(self, body: bytes, *, claim: str | None = None) -> Reply:
        started = time.perf_counter()
        seen = _Seen()
        try:
            response = self._sanitized(await self._verify(body, seen, claim))
        except wire.NotJson as err:
            reply = Reply(400, wire.dump(wire.verify_failure(wire.Reason.INVALID_PAYLOAD, str(err))))
            self.metrics.verify.labels(seen.label, "bad_request", "").inc()
        except network.Unavailable as err:
            reply = self._unavailable(wire.verify_failure(wire.Reason.FACILITATOR_UNAVAILABLE, str(err)))
            self.metrics.verify.labels(seen.label, "unavailable", "").inc()
        else:
            self.metrics.verify.labels(
                seen.label,
                "valid" if response.is_valid else "invalid",
                metrics.reason_label(response.invalid_reason),
            ).inc()
            reply = Reply(200, wire.dump(response))
        self.metrics.duration.labels("verify").observe(time.perf_counter() - started)
        return reply

    async def _verify(self, body: bytes, seen: _Seen, claim: str | None) -> VerifyResponse:
        """The verdict; raises :class:`wire.NotJson` or :class:`Unavailable` for the non-200 answers.

        With a claim id, a valid verdict also reserves the authorization for that request (claims.py):
        the reservation is taken before the mechanism runs (no await in between) and dropped if invalid.
        """
        try:
            request = wire.parse_request(body)
            net = self._network(request)
        except wire.Invalid as err:
            return wire.verify_failure(err.reason, err.message, payer=err.payer)
        seen.label = net.config.label
        try:
            self._admissible(net, request)
        except wire.Invalid as err:
            return wire.verify_failure(err.reason, err.message, payer=request.payer)
        key = request.authorization(net.config.chain_id)
        if claim is not None:
            refused = self.claims.reserve(
                key, owner=claim, body=request.body_key, expires=self._claim_expiry(request)
            )
            if refused is not None:
                return wire.verify_failure(
                    refused, "this authorization is claimed by another request", payer=request.payer
                )
        try:
            await net.ensure_ready()
            response, probe, error = await self._run(
                lambda: net.x402.verify(request.payload, request.requirements)
            )
            if error is not None or response is None:
                response = self._verify_error(error, probe, net, request)
            elif not response.is_valid and probe.rpc_failure:
                raise network.Unavailable(probe.rpc_failure)
        except BaseException:
            self.claims.release(key, owner=claim)
            raise
        if not response.is_valid:
            self.claims.release(key, owner=claim)
        return response

    def _claim_expiry(self, request: wire.PaymentRequest) -> float:
        return _valid_before(request) + self.settings.pending_grace

    def _verify_error(
        self,
        error: BaseException | None,
        probe: relayer.Probe,
        net: network.Network,
        request: wire.PaymentRequest,
    ) -> VerifyResponse:
        if probe.rpc_failure:
            raise network.Unavailable(probe.rpc_failure)
        if isinstance(error, SchemeNotFoundError):
            return wire.verify_failure(*_unrouted(request), payer=request.payer)
        log.error("verify failed unexpectedly on %s", net.config.label, exc_info=error)
        return wire.verify_failure(wire.Reason.UNEXPECTED_VERIFY_ERROR, "unexpected verification error")

    # -- /settle ------------------------------------------------------------------------------------

    async def settle(self, body: bytes, *, claim: str | None = None) -> Reply:
        started = time.perf_counter()
        seen = _Seen()
        try:
            response = self._sanitized(await self._settle(body, seen, claim))
        except wire.NotJson as err:
            reply = Reply(
                400, wire.dump(wire.settle_failure(wire.Reason.INVALID_PAYLOAD, str(err), network=""))
            )
            self.metrics.settle.labels(seen.label, "bad_request", "").inc()
        except network.Unavailable as err:
            reply = self._unavailable(
                wire.settle_failure(wire.Reason.FACILITATOR_UNAVAILABLE, str(err), network=seen.network)
            )
            self.metrics.settle.labels(seen.label, "unavailable", "").inc()
        else:
            result = (
                "success"
                if response.success
                else ("pending" if response.error_reason == wire.Reason.SETTLEMENT_PENDING else "failed")
            )
            self.metrics.settle.labels(seen.label, result, metrics.reason_label(response.error_reason)).inc()
            log.info(
                "settle",
                extra={
                    "fields": {
                        "network": seen.label,
                        "result": result,
                        "reason": response.error_reason,
                        "payer": response.payer,
                        "transaction": response.transaction or None,
                        "ms": round((time.perf_counter() - started) * 1000, 1),
                    }
                },
            )
            reply = Reply(200, wire.dump(response))
        self.metrics.duration.labels("settle").observe(time.perf_counter() - started)
        return reply

    async def release(self, body: bytes, *, claim: str | None) -> Reply:
        """``POST /release``: the claim's request served nothing; another request may now use the payment."""
        try:
            request = wire.parse_request(body)
            net = self._network(request)
        except wire.NotJson as err:
            return Reply(400, b'{"released":false,"error":"' + str(err).encode() + b'"}')
        except wire.Invalid:
            return Reply(200, b'{"released":false}')
        done = self.claims.release(request.authorization(net.config.chain_id), owner=claim)
        return Reply(200, b'{"released":true}' if done else b'{"released":false}')

    async def _settle(self, body: bytes, seen: _Seen, claim: str | None = None) -> SettleResponse:
        """The outcome; raises :class:`wire.NotJson` or :class:`Unavailable` for the non-200 answers."""
        try:
            request = wire.parse_request(body)
            seen.network = request.network
            net = self._network(request)
        except wire.Invalid as err:
            return wire.settle_failure(
                err.reason, err.message, network=err.network or seen.network, payer=err.payer
            )
        seen.label = net.config.label
        try:
            self._admissible(net, request)
        except wire.Invalid as err:
            return wire.settle_failure(err.reason, err.message, network=request.network, payer=request.payer)
        key = request.authorization(net.config.chain_id)
        refused = self.claims.may_settle(
            key, owner=claim, body=request.body_key, expires=self._claim_expiry(request)
        )
        if refused is not None:
            return wire.settle_failure(
                refused,
                "another request holds this authorization",
                network=request.network,
                payer=request.payer,
            )
        try:
            await net.ensure_ready()
            response = await self.ledger.settle(
                key,
                body=request.body_key,
                expires=_valid_before(request) + self.settings.pending_grace,
                attempt=lambda: self._budgeted(net, request),
                resolve=lambda tx, nonce: self._resolve(net, request, tx, nonce),
                owner_retry=claim is not None,
            )
        except network.Unavailable:
            self.claims.release(key, owner=claim)  # nothing was broadcast
            raise
        if response.success or response.error_reason == wire.Reason.SETTLEMENT_PENDING:
            self.claims.settled(key, owner=claim, pending=not response.success)
        else:
            self.claims.release(key, owner=claim)
        return response

    def _admissible(self, net: network.Network, request: wire.PaymentRequest) -> None:
        """Refusals before any chain work (defect 8): only the chain table's token, EOA payers unless
        smart wallets are enabled."""
        if request.requirements.asset.lower() not in self._assets[net.config.chain_id]:
            raise wire.Invalid(
                wire.Reason.ASSET_NOT_ALLOWED,
                "this facilitator settles only the chain's USDC",
                network=request.network,
                payer=request.payer,
            )
        if request.signature_bytes != 65 and not self.settings.allow_smart_wallets:
            raise wire.Invalid(
                wire.Reason.SMART_WALLET_NOT_ENABLED,
                "only 65-byte EOA signatures are accepted (smart-wallet payers are not enabled)",
                network=request.network,
                payer=request.payer,
            )

    async def _budgeted(self, net: network.Network, request: wire.PaymentRequest) -> ledger.Attempt:
        """Settle only what the payer can afford counting every settle of its already in flight, so N
        concurrent authorizations beyond the balance cannot all pass simulation and revert at the
        relayer's cost. The balance is read at the pending block; the check and the reservation happen
        under a per-payer lock."""
        budget_key = (net.config.chain_id, request.requirements.asset.lower(), request.payer.lower())
        lock = self._payer_locks.setdefault(budget_key, asyncio.Lock())
        async with lock:
            balance, probe, error = await self._run(
                lambda: net.relayer.get_balance(request.payer, request.requirements.asset)
            )
            if error is not None or balance is None:
                if probe.rpc_failure:
                    raise network.Unavailable(probe.rpc_failure)
                raise network.Unavailable("the payer's balance could not be read")
            reserved = self._in_flight.get(budget_key, 0)
            if balance < reserved + request.value:
                return ledger.Attempt(
                    wire.settle_failure(
                        wire.Reason.INSUFFICIENT_BALANCE,
                        "the payer's balance does not cover this and its settlements in flight",
                        network=request.network,
                        payer=request.payer,
                    )
                )
            self._in_flight[budget_key] = reserved + request.value
        try:
            return await self._attempt(net, request)
        finally:
            left = self._in_flight.get(budget_key, 0) - request.value
            if left > 0:
                self._in_flight[budget_key] = left
            else:
                self._in_flight.pop(budget_key, None)
                if not lock.locked():
                    self._payer_locks.pop(budget_key, None)

    async def _attempt(self, net: network.Network, request: wire.PaymentRequest) -> ledger.Attempt:
        response, probe, error = await self._run(
            lambda: net.x402.settle(request.payload, request.requirements)
        )
        sent = probe.tx_hash
        if response is not None and (response.success or response.transaction):
            return ledger.Attempt(response, probe.tx_nonce)
        if sent is not None and (
            error is not None or probe.receipt_late or probe.rpc_failure or not probe.accepted
        ):
            # The mechanism lost the hash (v1 receipt timeout, an uncertain send): the transfer may happen.
            return ledger.Attempt(_pending(request, sent, payer=request.payer), probe.tx_nonce)
        if probe.rpc_failure:
            raise network.Unavailable(probe.rpc_failure)
        if response is None:
            if isinstance(error, SchemeNotFoundError):
                return ledger.Attempt(
                    wire.settle_failure(*_unrouted(request), network=request.network, payer=request.payer)
                )
            log.error("settle failed unexpectedly on %s", net.config.label, exc_info=error)
            return ledger.Attempt(
                wire.settle_failure(
                    wire.Reason.UNEXPECTED_SETTLE_ERROR,
                    "unexpected settlement error",
                    network=request.network,
                    payer=request.payer,
                )
            )
        return ledger.Attempt(response)

    async def _resolve(
        self, net: network.Network, request: wire.PaymentRequest, tx_hash: str, nonce: int | None
    ) -> ledger.Attempt | None:
        """The outcome of a pending transaction from its receipt (waiting once more, bounded)."""
        auth = request.payload.payload["authorization"]

        def work() -> ledger.Attempt | None:
            rel = net.relayer
            newest = rel.siblings(tx_hash)[-1]  # the latest replacement, if the original was stuck
            found = rel.mined_sibling(tx_hash)
            if found is None:
                late = rel.receipt(newest, timeout=rel.confirmation_timeout)
                found = (newest, late) if late is not None else rel.mined_sibling(tx_hash)
            if found is None:
                if rel.lookup(newest, nonce=nonce) is relayer.Lookup.DEAD:
                    found = rel.mined_sibling(tx_hash)
                    if found is None:
                        log.warning("pending settlement %s was never mined; settling again", newest)
                        return None
                else:
                    # still unmined after a full confirmation wait: same nonce, bumped fee (defect 8)
                    replaced = rel.replace_if_stuck(newest, older_than=self.settings.replace_after)
                    return ledger.Attempt(_pending(request, replaced or newest, payer=request.payer), nonce)
            mined_hash, receipt = found
            reason: str | None = None
            if receipt["status"] != 1:
                reason = ERR_TRANSACTION_FAILED
            elif not verify_eip3009_transfer_event(
                list(receipt.get("logs") or []),
                request.requirements.asset,
                from_address=auth["from"],
                to=auth["to"],
                value=int(auth["value"]),
            ):
                reason = ERR_TRANSFER_EVENT_MISMATCH
            return ledger.Attempt(
                SettleResponse(
                    success=reason is None,
                    error_reason=reason,
                    transaction=mined_hash,
                    network=request.network,
                    payer=request.payer,
                )
            )

        result, probe, error = await self._run(work)
        if error is not None:  # could not look: still pending
            if not probe.rpc_failure:
                log.error("resolving %s failed", tx_hash, exc_info=error)
            return ledger.Attempt(_pending(request, tx_hash, payer=request.payer), nonce)
        return result

    # -- helpers ------------------------------------------------------------------------------------

    def _network(self, request: wire.PaymentRequest) -> network.Network:
        net = self._by_name.get((request.version, request.network))
        if net is None:
            raise wire.Invalid(
                wire.Reason.INVALID_NETWORK,
                f"network {request.network!r} is not served by this facilitator for x402 v{request.version}",
                network=request.network,
                payer=request.payer,
            )
        return net

    async def _run(self, fn: Callable[[], T]) -> tuple[T | None, relayer.Probe, BaseException | None]:
        """Run blocking mechanism work in the pool with a fresh probe; exceptions are returned."""

        def work() -> tuple[T | None, relayer.Probe, BaseException | None]:
            with relayer.observe() as probe:
                try:
                    return fn(), probe, None
                except Exception as err:  # noqa: BLE001 - classified by the caller with the probe
                    return None, probe, err

        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    def _unavailable(self, model: Any) -> Reply:
        return Reply(503, wire.dump(model), (*_JSON, ("retry-after", _RETRY_AFTER)))

    def _sanitized(self, model: T) -> T:
        """Drop RPC URLs (they may carry API keys) from free-text messages and cap their length."""
        assert isinstance(model, VerifyResponse | SettleResponse)
        field = "invalid_message" if isinstance(model, VerifyResponse) else "error_message"
        text = getattr(model, field)
        if not text:
            return model
        for net in self.networks:
            text = network.redact(text, net.config.rpc_url)
        return model.model_copy(update={field: text[:_MESSAGE_MAX]})  # type: ignore[return-value]


def _pending(request: wire.PaymentRequest, tx_hash: str, *, payer: str | None) -> SettleResponse:
    return wire.settle_failure(
        wire.Reason.SETTLEMENT_PENDING,
        "the transaction has no receipt yet; retry with the same payload",
        network=request.network,
        payer=payer,
        transaction=tx_hash,
    )


def _unrouted(request: wire.PaymentRequest) -> tuple[str, str]:
    """Why x402 found no scheme for a payload whose requirements this service serves."""
    if request.payload.get_scheme() != wire.SCHEME:
        return ERR_UNSUPPORTED_SCHEME, f"scheme {request.payload.get_scheme()!r} is not supported"
    return ERR_NETWORK_MISMATCH, f"the payload is for network {request.payload.get_network()!r}"


def _allowed_assets(cfg: config.NetworkConfig) -> frozenset[str]:
    """The chain table's USDC for this network (lower-case); unknown chains allow nothing."""
    try:
        return frozenset({chains.lookup(cfg.caip2).usdc.lower()})
    except chains.UnknownNetworkError:
        return frozenset()


def _valid_before(request: wire.PaymentRequest) -> float:
    return float(int(request.payload.payload["authorization"]["validBefore"]))
