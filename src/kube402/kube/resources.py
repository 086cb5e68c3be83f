"""The API resources kube402 reads and writes, named once with group, version, plural and scope."""

from __future__ import annotations

import dataclasses

from kube402.api import names

__all__ = [
    "CONFIGMAP",
    "CRD",
    "DEPLOYMENT",
    "ENDPOINTSLICE",
    "EVENT",
    "GATEWAY",
    "GATEWAYCLASS",
    "HTTPROUTE",
    "LEASE",
    "MIDDLEWARE",
    "NAMESPACE",
    "REFERENCEGRANT",
    "REGISTRATION_REQUEST",
    "SECRET",
    "SERVICE",
    "SERVICE_OFFER",
    "Resource",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, *, namespace: str | None = None, name: str | None = None, subresource: str = "") -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base


SERVICE_OFFER = Resource(names.GROUP, names.VERSION, names.KIND_OFFER, names.PLURAL_OFFER)
REGISTRATION_REQUEST = Resource(names.GROUP, names.VERSION, names.KIND_RR, names.PLURAL_RR)
MIDDLEWARE = Resource("traefik.io", "v1alpha1", "Middleware", "middlewares")
HTTPROUTE = Resource("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes")
GATEWAY = Resource("gateway.networking.k8s.io", "v1", "Gateway", "gateways")
GATEWAYCLASS = Resource("gateway.networking.k8s.io", "v1", "GatewayClass", "gatewayclasses", namespaced=False)
REFERENCEGRANT = Resource("gateway.networking.k8s.io", "v1beta1", "ReferenceGrant", "referencegrants")
SERVICE = Resource("", "v1", "Service", "services")
CONFIGMAP = Resource("", "v1", "ConfigMap", "configmaps")
SECRET = Resource("", "v1", "Secret", "secrets")
NAMESPACE = Resource("", "v1", "Namespace", "namespaces", namespaced=False)
EVENT = Resource("", "v1", "Event", "events")
ENDPOINTSLICE = Resource("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices")
LEASE = Resource("coordination.k8s.io", "v1", "Lease", "leases")
DEPLOYMENT = Resource("apps", "v1", "Deployment", "deployments")
CRD = Resource(
    "apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", namespaced=False
)
