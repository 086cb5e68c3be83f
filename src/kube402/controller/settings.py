"""Controller configuration: one frozen object, from flags and environment (SPEC 5.7)."""

from __future__ import annotations

import dataclasses
import os
import socket

from kube402.api import names

__all__ = ["GatewayRef", "ServiceRef", "Settings"]


@dataclasses.dataclass(frozen=True, slots=True)
class GatewayRef:
    namespace: str = "traefik"
    name: str = "traefik-gateway"
    section: str = "web"

    @classmethod
    def parse(cls, text: str) -> GatewayRef:
        """``namespace/name/sectionName`` (section optional)."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"--gateway must be namespace/name[/section], got {text!r}")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else "")


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceRef:
    namespace: str = names.SYSTEM_NAMESPACE
    name: str = "x402-verifier"
    port: int = 8081

    @classmethod
    def parse(cls, text: str) -> ServiceRef:
        """``namespace/name:port``."""
        try:
            ns_name, port_text = text.rsplit(":", 1)
            ns, name = ns_name.split("/", 1)
            port = int(port_text)
        except ValueError:
            port, ns, name = 0, "", ""
        if not ns or not name or "/" in name or not 1 <= port <= 65535:
            raise ValueError(f"--verifier-service must be namespace/name:port, got {text!r}")
        return cls(ns, name, port)


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    namespace: str = names.SYSTEM_NAMESPACE
    """System namespace: Lease and catalog live here."""
    verifier_address: str = "http://x402-verifier.x402.svc.cluster.local:8080/verify"
    """ForwardAuth address written into every Middleware."""
    verifier_service: ServiceRef = ServiceRef()
    """Backend of proxy-mode HTTPRoutes."""
    gateway: GatewayRef = GatewayRef()
    """parentRef of every HTTPRoute."""
    default_gate_mode: str = "forwardAuth"
    """Mode for offers without spec.gateMode."""
    route_acceptance: str = "ingress"
    """When RoutePublished turns True: ``ingress`` once the Gateway controller reports the HTTPRoute
    Accepted and ResolvedRefs for our parent (Kubernetes convention); ``applied`` as soon as the apply
    succeeds, for clusters without a Gateway controller that writes route status."""
    upstream_resolution: str = "dns"
    """How the health probe reaches upstreams: dns (cluster DNS) or endpointslice (Service objects)."""
    workers: int = 4
    """Concurrent reconciles."""
    probe_timeout: float = 2.0
    """Upstream health probe timeout in seconds."""
    requeue_not_ready: float = 5.0
    requeue_ready: float = 30.0
    leader_elect: bool = True
    identity: str = dataclasses.field(
        default_factory=lambda: os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    )
    """Lease holder identity."""
    metrics_listen: str = "127.0.0.1:8081"
    """Ops endpoints (/healthz, /readyz, /metrics); empty disables."""
