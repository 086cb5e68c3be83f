"""The verifier's Prometheus series (SPEC 7.10): the original's counters plus kube402's additions."""

from __future__ import annotations

from collections.abc import Iterable

import prometheus_client as prom

__all__ = ["Metrics"]

P = "obol_x402_verifier_"
ROUTE = ("route", "offer_namespace", "offer_name")
BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = prom.CollectorRegistry()
        self.requests = prom.Counter(P + "requests_total", "Requests on priced routes", ROUTE, registry=r)
        self.payment_required = prom.Counter(P + "payment_required_total", "402 without payment", ROUTE,
                                             registry=r)
        self.verified = prom.Counter(P + "payment_verified_total", "Facilitator said valid", ROUTE, registry=r)
        self.failed = prom.Counter(P + "payment_failed_total", "Payment presented, request refused", ROUTE,
                                   registry=r)
        self.charged = prom.Counter(P + "charged_requests_total", "Requests with a successful settlement",
                                    ROUTE, registry=r)
        self.failures = prom.Counter(P + "payment_failures_total", "Refusals by reason", (*ROUTE, "reason"),
                                     registry=r)
        self.settlements = prom.Counter(P + "settlements_total", "Settlement outcomes", (*ROUTE, "result"),
                                        registry=r)
        self.unavailable = prom.Counter(P + "unavailable_total", "503 answers by cause", (*ROUTE, "cause"),
                                        registry=r)
        self.duration = prom.Histogram(P + "request_duration_seconds", "Verifier handling time",
                                       ("mode", "code"), buckets=BUCKETS, registry=r)
        self.facilitator = prom.Histogram(P + "facilitator_duration_seconds", "Facilitator call time",
                                          ("endpoint", "outcome"), buckets=BUCKETS, registry=r)
        self.routes = prom.Gauge(P + "routes", "Routes in the table", ("source",), registry=r)
        self.offers_skipped = prom.Gauge(P + "offers_skipped", "Offers not priced", ("reason",), registry=r)
        self.reloads = prom.Counter(P + "config_reloads_total", "Config reloads", ("result",), registry=r)
        self.replay = prom.Gauge(P + "replay_entries", "Replay store entries", ("state",), registry=r)

    def forget_routes(self, labels: Iterable[tuple[str, str, str]]) -> None:
        """Delete the series of routes that left the table."""
        for lab in labels:
            for metric in (self.requests, self.payment_required, self.verified, self.failed, self.charged):
                try:
                    metric.remove(*lab)
                except KeyError:
                    pass

    def render(self) -> bytes:
        return prom.generate_latest(self.registry)
