"""Ops endpoints of the controller (/healthz, /readyz, /metrics) as a tiny RSGI app for granian."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import prometheus_client

__all__ = ["OpsApp"]


class OpsApp:
    def __init__(self, *, ready: Callable[[], bool], registry: prometheus_client.CollectorRegistry) -> None:
        self.ready = ready
        self.registry = registry

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        path = scope.path
        if path == "/healthz":
            protocol.response_bytes(200, [("content-type", "application/json")], b'{"status":"ok"}')
        elif path == "/readyz":
            if self.ready():
                protocol.response_bytes(200, [("content-type", "application/json")], b'{"status":"ready"}')
            else:
                protocol.response_bytes(503, [("content-type", "text/plain")], b"not ready")
        elif path == "/metrics":
            body = prometheus_client.generate_latest(self.registry)
            protocol.response_bytes(200, [("content-type", prometheus_client.CONTENT_TYPE_LATEST)], body)
        else:
            protocol.response_bytes(404, [("content-type", "text/plain")], b"not found")
