"""Which Services the catalog publishes itself for, and the EndpointSlice it writes (pure parts)."""

from __future__ import annotations

from typing import Any

from kube402.api import names
from kube402.catalog import endpoints

KUBE402 = {names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE}


def svc(name: str, namespace: str, labels: dict[str, str], port_name: str = "http") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "uid": "u-1"},
        "spec": {"ports": [{"name": port_name, "port": 8080, "targetPort": 8080, "protocol": "TCP"}]},
    }


def test_document_services_are_registration_and_catalog_services_of_kube402_only() -> None:
    reg = {**KUBE402, "obol.org/registration": "so-a-registration"}
    assert endpoints.is_document_service(svc("so-a-registration", "llm", reg), system_namespace="x402")
    assert endpoints.is_document_service(svc("obol-skill-md", "x402", KUBE402), system_namespace="x402")
    assert not endpoints.is_document_service(svc("obol-skill-md", "llm", KUBE402), system_namespace="x402")
    assert not endpoints.is_document_service(svc("so-a-upstream", "llm", KUBE402), system_namespace="x402")
    other = {"obol.org/registration": "so-a-registration"}  # not managed by kube402
    assert not endpoints.is_document_service(svc("so-a-registration", "llm", other), system_namespace="x402")


def test_slice_names_the_service_port_and_points_at_the_catalog() -> None:
    out = endpoints.slice_for(svc("obol-skill-md", "x402", KUBE402), address="10.231.7.1", port=41234)
    assert out["metadata"]["name"] == "obol-skill-md-kube402-catalog"
    assert out["metadata"]["labels"] == {
        "kubernetes.io/service-name": "obol-skill-md",
        "endpointslice.kubernetes.io/managed-by": "kube402-catalog",
    }
    assert out["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Service", "name": "obol-skill-md", "uid": "u-1"}
    ]
    assert out["addressType"] == "IPv4"
    assert out["endpoints"] == [{"addresses": ["10.231.7.1"], "conditions": {"ready": True}}]
    assert out["ports"] == [{"name": "http", "port": 41234, "protocol": "TCP"}]


def test_long_service_names_give_valid_slice_names() -> None:
    name = "so-" + "x" * 240 + "-registration"
    out = endpoints.slice_for(svc(name, "llm", KUBE402), address="10.231.7.1", port=1)
    assert len(out["metadata"]["name"]) <= names.DNS_SUBDOMAIN_LIMIT
    assert out["metadata"]["name"].endswith(endpoints.SLICE_SUFFIX)
