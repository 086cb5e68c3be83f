"""Controller configuration: one frozen object, from flags and environment (SPEC 5.7)."""

from __future__ import annotations

import dataclasses
import enum
import os
import socket
from collections.abc import Mapping

from kube402.api import names, v1alpha1

__all__ = ["GatewayRef", "RegistrationSettings", "RouteAcceptance", "ServiceRef", "Settings", "SigningKey"]


class RouteAcceptance(enum.StrEnum):
    """When RoutePublished turns True (``--route-acceptance``)."""

    INGRESS = "ingress"
    APPLIED = "applied"


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
    default_gate_mode: str = v1alpha1.GateMode.FORWARD_AUTH
    """Mode for offers without spec.gateMode."""
    route_acceptance: str = RouteAcceptance.INGRESS
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
    # -- registration (issue 12) --
    registration: RegistrationSettings = dataclasses.field(default_factory=lambda: RegistrationSettings())
    static_image: str = "busybox:1.36"
    """Image of the registration and catalog httpd Deployments."""
    agent_base_url: str = dataclasses.field(default_factory=lambda: os.environ.get("AGENT_BASE_URL", ""))
    """Public base URL override (AGENT_BASE_URL); empty: the obol-stack-config ConfigMap, then the default."""
    catalog_debounce: float = 1.0


DEFAULT_RPC_URL = "https://sepolia.base.org"
DEFAULT_IDENTITY_CHAIN = "base-sepolia"


class SigningKey:
    """An ERC-8004 private key (hex) that never prints: repr and str are redacted."""

    __slots__ = ("_hex",)

    def __init__(self, hex_key: str) -> None:
        self._hex = hex_key.strip()

    def reveal(self) -> str:
        return self._hex

    def __repr__(self) -> str:
        return "SigningKey(<redacted>)"

    __str__ = __repr__

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SigningKey | None:
        """``ERC8004_PRIVATE_KEY``, else the file named by ``ERC8004_PRIVATE_KEY_FILE``; None when neither."""
        value = env.get("ERC8004_PRIVATE_KEY", "").strip()
        if not value and env.get("ERC8004_PRIVATE_KEY_FILE"):
            path = env["ERC8004_PRIVATE_KEY_FILE"]
            try:
                with open(path, encoding="utf-8") as fh:
                    value = fh.read().strip()
            except OSError as err:
                raise ValueError(f"ERC8004_PRIVATE_KEY_FILE {path} cannot be read: {err.strerror}") from None
        return cls(value) if value else None


@dataclasses.dataclass(frozen=True, slots=True)
class RegistrationSettings:
    """ERC-8004 identity settings (SPEC 5.7)."""

    key: SigningKey | None = dataclasses.field(default=None, repr=False)
    rpc_url: str = DEFAULT_RPC_URL
    chain: str = DEFAULT_IDENTITY_CHAIN
    registry: str = ""
    """Override of the official address (local chains); empty = the table."""
    registrant: str = ""
    """Keyless mode: the address expected to register externally."""
    log_chunk: int = 2000
    readiness: str = "strict"
    """strict | objects (SPEC 6.3 step 3)."""
    rpc_timeout: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: object) -> RegistrationSettings:
        kw: dict[str, object] = {
            "key": SigningKey.from_env(env),
            "rpc_url": env.get("ERC8004_RPC_URL") or DEFAULT_RPC_URL,
            "chain": env.get("ERC8004_CHAIN") or DEFAULT_IDENTITY_CHAIN,
            "registry": env.get("ERC8004_REGISTRY", ""),
            "registrant": env.get("ERC8004_REGISTRANT", ""),
        }
        chunk = env.get("ERC8004_LOG_CHUNK")
        if chunk:
            try:
                kw["log_chunk"] = int(chunk)
            except ValueError:
                raise ValueError(f"ERC8004_LOG_CHUNK must be a positive integer, got {chunk!r}") from None
            if int(chunk) < 1:
                raise ValueError(f"ERC8004_LOG_CHUNK must be a positive integer, got {chunk!r}")
        kw.update(overrides)
        if kw.get("readiness") not in (None, "strict", "objects"):
            raise ValueError(f"--registration-readiness must be strict or objects, got {kw['readiness']!r}")
        return cls(**kw)  # type: ignore[arg-type]
