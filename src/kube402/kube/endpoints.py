"""Where a Service answers: ``http://host:port`` from a Service object, for the health probe and the proxy gate.

Resolution is pluggable (SPEC 5.1): ``dns`` uses the cluster DNS name; ``endpointslice`` (clusters without
cluster DNS, such as ``kube402 dev``) goes through the Service object: an ExternalName Service resolves to its
external name, any other Service to the first ready address of its EndpointSlices. Pure: the caller passes
the Service and a lookup for its EndpointSlices (normally from an informer cache).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["SERVICE_NAME_LABEL", "Resolution", "UnresolvableError", "resolve_base_url", "slice_service_key"]

Obj = Mapping[str, Any]
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def slice_service_key(endpoint_slice: Obj) -> str | None:
    """``namespace/service`` an EndpointSlice belongs to (its service-name label), for cache indexes."""
    meta = endpoint_slice.get("metadata") or {}
    svc = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return f"{meta.get('namespace', '')}/{svc}" if svc else None


class Resolution(enum.StrEnum):
    DNS = "dns"
    ENDPOINTSLICE = "endpointslice"


class UnresolvableError(Exception):
    """The Service exists but has no usable address (yet)."""


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def resolve_base_url(
    service: Obj,
    *,
    port: int,
    mode: Resolution | str,
    slices: Callable[[str, str], list[Obj]],
) -> str:
    """``http://host:port`` of a Service for the offer's port. ``slices(ns, name)`` returns its EndpointSlices."""
    meta = service.get("metadata") or {}
    spec = service.get("spec") or {}
    ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    if spec.get("type") == "ExternalName":
        external = str(spec.get("externalName") or "").rstrip(".")
        if not external:
            raise UnresolvableError(f"ExternalName Service {ns}/{name} has no externalName")
        return f"http://{_host(external)}:{port}"
    if Resolution(mode) == Resolution.DNS:
        return f"http://{name}.{ns}.svc.cluster.local:{port}"
    svc_port = next((p for p in spec.get("ports") or [] if p.get("port") == port), None)
    if svc_port is None:
        raise UnresolvableError(f"Service {ns}/{name} has no port {port}")
    port_name = svc_port.get("name") or ""
    target = svc_port.get("targetPort", port)
    for es in slices(ns, name):
        slice_port = None
        for p in es.get("ports") or []:
            if (p.get("name") or "") == port_name:
                slice_port = p.get("port")
                break
        if slice_port is None:
            if port_name or not isinstance(target, int):
                continue
            slice_port = target
        for ep in es.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            if cond.get("ready") is False:
                continue
            addresses = ep.get("addresses") or []
            if addresses:
                return f"http://{_host(str(addresses[0]))}:{slice_port}"
    raise UnresolvableError(f"Service {ns}/{name} has no ready endpoint")
