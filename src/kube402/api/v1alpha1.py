"""ServiceOffer and RegistrationRequest (obol.org/v1alpha1) as typed, read-only views.

Parsing is tolerant: kube402 may run against a cluster whose CRD is the original's looser schema, so
``ServiceOffer.from_dict`` never raises on a bad spec. Rules the schema should have enforced are re-checked
by :func:`kube402.api.validation.spec_problems` and reported on the offer's conditions.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from kube402.api import names

__all__ = [
    "DEFAULT_HEALTH_PATH",
    "DEFAULT_PORT",
    "GateMode",
    "Metadata",
    "Model",
    "OfferType",
    "Payment",
    "Registration",
    "RegistrationRequest",
    "ServiceOffer",
    "Upstream",
    "offer_manifest",
]

DEFAULT_PORT = 11434
DEFAULT_HEALTH_PATH = "/health"
DEFAULT_MAX_TIMEOUT = 300


class OfferType(enum.StrEnum):
    INFERENCE = "inference"
    FINE_TUNING = "fine-tuning"
    HTTP = "http"


class GateMode(enum.StrEnum):
    FORWARD_AUTH = "forwardAuth"
    PROXY = "proxy"


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: object, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _int(value: object, default: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    return default


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _strs(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


@dataclasses.dataclass(frozen=True, slots=True)
class Metadata:
    namespace: str
    name: str
    uid: str = ""
    generation: int = 0
    resource_version: str = ""
    creation_timestamp: str = ""
    deletion_timestamp: str = ""
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    finalizers: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Metadata:
        ann = {k: v for k, v in _map(raw.get("annotations")).items() if isinstance(v, str)}
        lab = {k: v for k, v in _map(raw.get("labels")).items() if isinstance(v, str)}
        return cls(
            namespace=_str(raw.get("namespace")),
            name=_str(raw.get("name")),
            uid=_str(raw.get("uid")),
            generation=_int(raw.get("generation"), 0),
            resource_version=_str(raw.get("resourceVersion")),
            creation_timestamp=_str(raw.get("creationTimestamp")),
            deletion_timestamp=_str(raw.get("deletionTimestamp")),
            annotations=ann,
            labels=lab,
            finalizers=_strs(raw.get("finalizers")),
        )

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclasses.dataclass(frozen=True, slots=True)
class Model:
    name: str
    runtime: str


@dataclasses.dataclass(frozen=True, slots=True)
class Upstream:
    service: str
    namespace: str
    port: int
    health_path: str


@dataclasses.dataclass(frozen=True, slots=True)
class Payment:
    scheme: str
    network: str
    pay_to: str
    max_timeout_seconds: int
    price: Mapping[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Registration:
    enabled: bool = False
    name: str = ""
    description: str = ""
    image: str = ""
    services: tuple[Mapping[str, Any], ...] = ()
    skills: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    supported_trust: tuple[str, ...] = ()
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceOffer:
    """A read-only view of one ServiceOffer with its effective values (SPEC 2.2)."""

    metadata: Metadata
    type: str
    model: Model | None
    upstream: Upstream
    payment: Payment
    path: str
    gate_mode: str
    registration: Registration
    provenance: Mapping[str, str]
    status: Mapping[str, Any]
    raw: Mapping[str, Any] = dataclasses.field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ServiceOffer:
        meta = Metadata.from_dict(_map(raw.get("metadata")))
        spec = _map(raw.get("spec"))
        model_raw = spec.get("model")
        model = None
        if isinstance(model_raw, Mapping):
            model = Model(name=_str(model_raw.get("name")), runtime=_str(model_raw.get("runtime")))
        up = _map(spec.get("upstream"))
        pay = _map(spec.get("payment"))
        reg = _map(spec.get("registration"))
        registration = Registration(
            enabled=reg.get("enabled") is True,
            name=_str(reg.get("name")),
            description=_str(reg.get("description")),
            image=_str(reg.get("image")),
            services=tuple(s for s in _list(reg.get("services")) if isinstance(s, Mapping)),
            skills=_strs(reg.get("skills")),
            domains=_strs(reg.get("domains")),
            supported_trust=_strs(reg.get("supportedTrust")),
            metadata={k: v for k, v in _map(reg.get("metadata")).items() if isinstance(v, str)},
        )
        return cls(
            metadata=meta,
            type=_str(spec.get("type")),
            model=model,
            upstream=Upstream(
                service=_str(up.get("service")),
                namespace=_str(up.get("namespace")),
                port=_int(up.get("port"), DEFAULT_PORT),
                health_path=_str(up.get("healthPath")),
            ),
            payment=Payment(
                scheme=_str(pay.get("scheme"), "exact"),
                network=_str(pay.get("network")),
                pay_to=_str(pay.get("payTo")),
                max_timeout_seconds=_int(pay.get("maxTimeoutSeconds"), DEFAULT_MAX_TIMEOUT),
                price=_map(pay.get("price")),
            ),
            path=_str(spec.get("path")),
            gate_mode=_str(spec.get("gateMode")),
            registration=registration,
            provenance={k: v for k, v in _map(spec.get("provenance")).items() if isinstance(v, str)},
            status=_map(raw.get("status")),
            raw=raw,
        )

    # -- effective values -------------------------------------------------------------------------------

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def effective_type(self) -> str:
        return self.type or OfferType.HTTP.value

    @property
    def effective_path(self) -> str:
        if self.path:
            trimmed = self.path.rstrip("/")
            if not trimmed.startswith("/"):
                trimmed = "/" + trimmed  # an invalid path (reported as InvalidPath) still yields a path
            return trimmed
        return f"/services/{self.metadata.name}"

    @property
    def upstream_namespace(self) -> str:
        return self.upstream.namespace or self.metadata.namespace

    @property
    def upstream_port(self) -> int:
        return self.upstream.port or DEFAULT_PORT

    @property
    def health_path(self) -> str:
        return self.upstream.health_path or DEFAULT_HEALTH_PATH

    def effective_gate_mode(self, default: str = GateMode.FORWARD_AUTH.value) -> str:
        return self.gate_mode or default

    @property
    def paused(self) -> bool:
        return names.is_paused(dict(self.metadata.annotations))

    @property
    def deleting(self) -> bool:
        return bool(self.metadata.deletion_timestamp)

    @property
    def description(self) -> str:
        return (
            self.registration.description or f"x402 payment-gated {self.effective_type} service: {self.name}"
        )

    @property
    def conditions_raw(self) -> list[Any]:
        value = self.status.get("conditions")
        return value if isinstance(value, list) else []


@dataclasses.dataclass(frozen=True, slots=True)
class RegistrationRequest:
    metadata: Metadata
    service_offer_name: str
    service_offer_namespace: str
    desired_state: str
    chain: str
    status: Mapping[str, Any]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RegistrationRequest:
        spec = _map(raw.get("spec"))
        return cls(
            metadata=Metadata.from_dict(_map(raw.get("metadata"))),
            service_offer_name=_str(spec.get("serviceOfferName")),
            service_offer_namespace=_str(spec.get("serviceOfferNamespace")),
            desired_state=_str(spec.get("desiredState")),
            chain=_str(spec.get("chain")),
            status=_map(raw.get("status")),
        )


def offer_manifest(
    name: str,
    *,
    namespace: str,
    upstream: str,
    pay_to: str,
    upstream_namespace: str = "",
    port: int | None = None,
    network: str = "base-sepolia",
    price: Mapping[str, str] | None = None,
    health_path: str | None = None,
    type: str | None = None,
    model: Mapping[str, str] | None = None,
    path: str | None = None,
    gate_mode: str | None = None,
    max_timeout_seconds: int | None = None,
    registration: Mapping[str, Any] | None = None,
    provenance: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A ServiceOffer manifest carrying only what the caller decided (the server applies defaults)."""
    up: dict[str, Any] = {"service": upstream, "namespace": upstream_namespace}
    if port is not None:
        up["port"] = port
    if health_path is not None:
        up["healthPath"] = health_path
    payment: dict[str, Any] = {
        "network": network,
        "payTo": pay_to,
        "price": dict(price or {"perRequest": "0.001"}),
    }
    if max_timeout_seconds is not None:
        payment["maxTimeoutSeconds"] = max_timeout_seconds
    spec: dict[str, Any] = {"upstream": up, "payment": payment}
    if type is not None:
        spec["type"] = type
    if model is not None:
        spec["model"] = dict(model)
    if path is not None:
        spec["path"] = path
    if gate_mode is not None:
        spec["gateMode"] = gate_mode
    if registration is not None:
        spec["registration"] = dict(registration)
    if provenance is not None:
        spec["provenance"] = dict(provenance)
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": names.API_VERSION, "kind": names.KIND_OFFER, "metadata": meta, "spec": spec}
