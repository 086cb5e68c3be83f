"""The verifier's Prometheus series (SPEC 7.10): the original's counters plus kube402's additions.

The request path updates plain Python ints (a dict keyed by the label tuple) and bisects histogram buckets;
a custom collector turns them into Prometheus families only when ``/metrics`` is scraped. prometheus_client's
own ``labels().inc()`` costs several microseconds per call, a large share of a 402 answer.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from typing import Any

import prometheus_client as prom
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

__all__ = ["Counter", "Gauge", "Histogram", "Metrics"]

P = "obol_x402_verifier_"
ROUTE = ("route", "offer_namespace", "offer_name")
BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
Labels = tuple[str, ...]


class _Child:
    __slots__ = ("key", "parent")

    def __init__(self, parent: Any, key: Labels) -> None:
        self.parent = parent
        self.key = key

    def inc(self, n: int = 1) -> None:
        self.parent.inc(self.key, n)

    def set(self, value: float) -> None:
        self.parent.set(self.key, value)

    def observe(self, value: float) -> None:
        self.parent.observe(self.key, value)


class Counter:
    def __init__(self, name: str, doc: str, labelnames: Labels) -> None:
        self.name, self.doc, self.labelnames = name, doc, labelnames
        self.values: dict[Labels, int] = {}

    def inc(self, key: Labels, n: int = 1) -> None:
        v = self.values
        v[key] = v.get(key, 0) + n

    def labels(self, *key: str) -> _Child:
        return _Child(self, key)

    def value(self, *key: str) -> int:
        return self.values.get(key, 0)

    def remove(self, *key: str) -> None:
        self.values.pop(key, None)

    def family(self) -> CounterMetricFamily:
        fam = CounterMetricFamily(self.name.removesuffix("_total"), self.doc, labels=self.labelnames)
        for key, val in self.values.items():
            fam.add_metric(list(key), val)
        return fam


class Gauge(Counter):
    def __init__(self, name: str, doc: str, labelnames: Labels) -> None:
        super().__init__(name, doc, labelnames)
        self.gvalues: dict[Labels, float] = {}

    def set(self, key: Labels, value: float) -> None:
        self.gvalues[key] = value

    def value(self, *key: str) -> float:  # type: ignore[override]
        return self.gvalues.get(key, 0.0)

    def family(self) -> GaugeMetricFamily:  # type: ignore[override]
        fam = GaugeMetricFamily(self.name, self.doc, labels=self.labelnames)
        for key, val in self.gvalues.items():
            fam.add_metric(list(key), val)
        return fam


class Histogram:
    def __init__(self, name: str, doc: str, labelnames: Labels, buckets: tuple[float, ...] = BUCKETS) -> None:
        self.name, self.doc, self.labelnames, self.buckets = name, doc, labelnames, buckets
        self.values: dict[Labels, list[Any]] = {}

    def observe(self, key: Labels, value: float) -> None:
        entry = self.values.get(key)
        if entry is None:
            entry = self.values[key] = [[0] * (len(self.buckets) + 1), 0.0]
        entry[0][bisect.bisect_left(self.buckets, value)] += 1
        entry[1] += value

    def labels(self, *key: str) -> _Child:
        return _Child(self, key)

    def count(self, *key: str) -> int:
        entry = self.values.get(key)
        return sum(entry[0]) if entry else 0

    def family(self) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(self.name, self.doc, labels=self.labelnames)
        for key, (counts, total) in self.values.items():
            cumulative, acc = [], 0
            for bound, c in zip((*self.buckets, float("inf")), counts, strict=True):
                acc += c
                cumulative.append((str(bound) if bound != float("inf") else "+Inf", acc))
            fam.add_metric(list(key), cumulative, total)
        return fam


class _Collector(Collector):
    def __init__(self, metrics: Iterable[Counter | Histogram]) -> None:
        self.metrics = list(metrics)

    def collect(self) -> Iterator[Any]:
        for m in self.metrics:
            yield m.family()


class Metrics:
    def __init__(self) -> None:
        self.requests = Counter(P + "requests_total", "Requests on priced routes", ROUTE)
        self.payment_required = Counter(P + "payment_required_total", "402 without payment", ROUTE)
        self.verified = Counter(P + "payment_verified_total", "Facilitator said valid", ROUTE)
        self.failed = Counter(P + "payment_failed_total", "Payment presented, request refused", ROUTE)
        self.charged = Counter(P + "charged_requests_total", "Requests with a successful settlement", ROUTE)
        self.failures = Counter(P + "payment_failures_total", "Refusals by reason", (*ROUTE, "reason"))
        self.settlements = Counter(P + "settlements_total", "Settlement outcomes", (*ROUTE, "result"))
        self.unavailable = Counter(P + "unavailable_total", "503 answers by cause", (*ROUTE, "cause"))
        self.duration = Histogram(P + "request_duration_seconds", "Verifier handling time", ("mode", "code"))
        self.facilitator = Histogram(
            P + "facilitator_duration_seconds", "Facilitator call time", ("endpoint", "outcome")
        )
        self.routes = Gauge(P + "routes", "Routes in the table", ("source",))
        self.offers_skipped = Gauge(P + "offers_skipped", "Offers not priced", ("reason",))
        self.reloads = Counter(P + "config_reloads_total", "Config reloads", ("result",))
        self.replay = Gauge(P + "replay_entries", "Replay store entries", ("state",))
        self.registry = prom.CollectorRegistry()
        self.registry.register(
            _Collector(
                [
                    self.requests,
                    self.payment_required,
                    self.verified,
                    self.failed,
                    self.charged,
                    self.failures,
                    self.settlements,
                    self.unavailable,
                    self.duration,
                    self.facilitator,
                    self.routes,
                    self.offers_skipped,
                    self.reloads,
                    self.replay,
                ]
            )
        )

    def forget_routes(self, labels: Iterable[tuple[str, str, str]]) -> None:
        """Delete the series of routes that left the table."""
        gone = set(labels)
        if not gone:
            return
        for metric in (
            self.requests,
            self.payment_required,
            self.verified,
            self.failed,
            self.charged,
            self.failures,
            self.settlements,
            self.unavailable,
        ):
            for key in [k for k in metric.values if k[:3] in gone]:
                del metric.values[key]

    def render(self) -> bytes:
        return prom.generate_latest(self.registry)
