"""The buyer's Prometheus series (own registry, ``GET /metrics``).

``kube402_buyer_requests_total{upstream,route,status}``, ``kube402_buyer_payments_total{upstream,result}``
(``confirmed``, ``kept``, ``released``, ``exhausted``, ``mismatch``, ``replay_refused``, ``state_error``),
``kube402_buyer_vouchers_remaining{upstream}`` / ``…_held`` / ``…_expired`` (gauges computed at scrape time),
``kube402_buyer_expired_skipped_total{upstream}`` and
``kube402_buyer_upstream_latency_seconds{upstream,attempt}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import prometheus_client as prom
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from kube402.buyer.ledger import PoolStats

__all__ = ["Metrics"]

P = "kube402_buyer_"
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _Pools(Collector):
    def __init__(self, source: Callable[[], Iterable[tuple[str, PoolStats, int]]]) -> None:
        self.source = source

    def collect(self) -> Iterator[Any]:
        remaining = GaugeMetricFamily(P + "vouchers_remaining", "Usable vouchers left", labels=["upstream"])
        held = GaugeMetricFamily(P + "vouchers_held", "Vouchers in flight (held)", labels=["upstream"])
        expired = GaugeMetricFamily(
            P + "vouchers_expired", "Unspent vouchers past validBefore", labels=["upstream"]
        )
        spent = GaugeMetricFamily(
            P + "vouchers_spent", "Consumed vouchers (not in flight)", labels=["upstream"]
        )
        skipped = CounterMetricFamily(
            P + "expired_skipped", "Expired vouchers skipped while selecting", labels=["upstream"]
        )
        for name, s, skips in self.source():
            remaining.add_metric([name], s.remaining)
            held.add_metric([name], s.held)
            expired.add_metric([name], s.expired)
            spent.add_metric([name], s.spent)
            skipped.add_metric([name], skips)
        yield from (remaining, held, expired, spent, skipped)


class Metrics:
    def __init__(self, pools: Callable[[], Iterable[tuple[str, PoolStats, int]]]) -> None:
        self.registry = prom.CollectorRegistry()
        self.requests = prom.Counter(
            P + "requests", "Requests answered", ["upstream", "route", "status"], registry=self.registry
        )
        self.payments = prom.Counter(
            P + "payments", "Payment outcomes", ["upstream", "result"], registry=self.registry
        )
        self.latency = prom.Histogram(
            P + "upstream_latency_seconds",
            "Time to the seller's status line",
            ["upstream", "attempt"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_Pools(pools))

    def render(self) -> bytes:
        return bytes(prom.generate_latest(self.registry))
