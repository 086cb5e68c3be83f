"""Prometheus series of ``kube402 facilitator``, in a registry of their own.

Reasons are an open set on the wire (X402.md section 9); as a label they are bounded to the x402 package's
own ``ERR_*`` codes plus this service's :class:`~kube402.chain.facilitator.wire.Reason` values, anything else
counting as ``other``. Request rates are bounded by the chain, so prometheus_client's own objects are fine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import prometheus_client as prom
from x402.mechanisms.evm import constants as evm_constants

from kube402.chain.facilitator import wire

__all__ = ["Metrics", "reason_label"]

P: Final = "kube402_facilitator_"
_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)
_KNOWN_REASONS: Final = frozenset(
    {str(v) for k, v in vars(evm_constants).items() if k.startswith("ERR_") and isinstance(v, str)}
    | {r.value for r in wire.Reason}
)


def reason_label(reason: str | None) -> str:
    if not reason:
        return ""
    return reason if reason in _KNOWN_REASONS else "other"


class Metrics:
    def __init__(self) -> None:
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.verify = prom.Counter(
            P + "verify_total",
            "POST /verify answers by network, result and reason",
            ["network", "result", "reason"],
            registry=r,
        )
        self.settle = prom.Counter(
            P + "settle_total",
            "POST /settle answers by network, result and reason",
            ["network", "result", "reason"],
            registry=r,
        )
        self.duration = prom.Histogram(
            P + "request_duration_seconds",
            "Time to answer /verify and /settle",
            ["endpoint"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.nonce = prom.Gauge(
            P + "relayer_nonce", "Next nonce the relayer will use, per network", ["network"], registry=r
        )
        self.pending = prom.Gauge(
            P + "pending_settlements",
            "Broadcast settlements whose receipt has not been collected",
            registry=r,
        )
        self.in_flight = prom.Gauge(P + "settlements_in_flight", "Settle jobs running now", registry=r)

    def track_ledger(self, *, pending: Callable[[], int], in_flight: Callable[[], int]) -> None:
        self.pending.set_function(lambda: float(pending()))
        self.in_flight.set_function(lambda: float(in_flight()))

    def nonce_setter(self, network: str) -> Callable[[int], None]:
        child = self.nonce.labels(network)
        return lambda n: child.set(n)

    def render(self) -> bytes:
        return prom.generate_latest(self.registry)
