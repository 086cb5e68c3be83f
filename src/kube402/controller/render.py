"""Turns a ServiceOffer into the child objects it implies. Pure: no client, no clock, no logging.

SPEC section 4: Middleware ``x402-<name>`` (ForwardAuth to the verifier), HTTPRoute ``so-<name>`` (ExtensionRef
filter, then URLRewrite; or, in proxy mode, no filters and the verifier's gate as backend), and ReferenceGrants
for cross-namespace backends. Every object carries the managed-by and offer labels; same-namespace children
carry a controller ownerReference to the offer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kube402.api import names, v1alpha1
from kube402.controller.settings import Settings

__all__ = [
    "AUTH_RESPONSE_HEADERS",
    "FORWARD_AUTH_MAX_RESPONSE_BODY",
    "child_key",
    "gate_objects",
    "httproute",
    "labels",
    "middleware",
    "offer_label_key",
    "owner_label_key",
    "owner_reference",
    "request_timeout",
    "route_objects",
]

AUTH_RESPONSE_HEADERS = ("X-Payment-Status", "X-Payment-Tx", "Authorization")
FORWARD_AUTH_MAX_RESPONSE_BODY = 1 << 20
"""``maxResponseBodySize``: the verifier's answers (402 challenge, error bodies) are a few KiB; Traefik's
default is unlimited and warns when the field is unset."""

Obj = dict[str, Any]


def labels(offer: v1alpha1.ServiceOffer, *, foreign_namespace: bool = False) -> dict[str, str]:
    out = {
        names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE,
        names.LABEL_OFFER: names.label_value(offer.name),
    }
    if foreign_namespace:
        out[names.LABEL_OFFER_NAMESPACE] = names.label_value(offer.namespace)
    return out


def owner_reference(offer: v1alpha1.ServiceOffer) -> dict[str, Any]:
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND_OFFER,
        "name": offer.name,
        "uid": offer.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _meta(offer: v1alpha1.ServiceOffer, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": offer.namespace,
        "labels": labels(offer),
        "ownerReferences": [owner_reference(offer)],
    }


def request_timeout(max_timeout_seconds: int) -> str | None:
    """HTTPRoute request timeout: ``max(maxTimeout + 120, 60)s`` when maxTimeout > 30, else none."""
    if max_timeout_seconds <= 30:
        return None
    return f"{max(max_timeout_seconds + 120, 60)}s"


def middleware(offer: v1alpha1.ServiceOffer, *, settings: Settings) -> Obj:
    return {
        "apiVersion": names.MIDDLEWARE_KIND[0],
        "kind": names.MIDDLEWARE_KIND[1],
        "metadata": _meta(offer, names.middleware_name(offer.name)),
        "spec": {
            "forwardAuth": {
                "address": settings.verifier_address,
                "authResponseHeaders": list(AUTH_RESPONSE_HEADERS),
                # Explicit (Traefik warns when unset): Traefik itself writes the X-Forwarded-* headers
                # the verifier prices by; a client's copies are never trusted.
                "trustForwardHeader": False,
                "maxResponseBodySize": FORWARD_AUTH_MAX_RESPONSE_BODY,
            }
        },
    }


def httproute(offer: v1alpha1.ServiceOffer, *, settings: Settings) -> Obj:
    mode = offer.effective_gate_mode(settings.default_gate_mode)
    parent: dict[str, Any] = {"name": settings.gateway.name, "namespace": settings.gateway.namespace}
    if settings.gateway.section:
        parent["sectionName"] = settings.gateway.section
    rule: dict[str, Any] = {"matches": [{"path": {"type": "PathPrefix", "value": offer.effective_path}}]}
    if mode == v1alpha1.GateMode.PROXY:
        svc = settings.verifier_service
        rule["backendRefs"] = [{"name": svc.name, "namespace": svc.namespace, "port": svc.port}]
    else:
        rule["filters"] = [
            {
                "type": "ExtensionRef",
                "extensionRef": {
                    "group": "traefik.io",
                    "kind": "Middleware",
                    "name": names.middleware_name(offer.name),
                },
            },
            {
                "type": "URLRewrite",
                "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
            },
        ]
        rule["backendRefs"] = [
            {
                "name": offer.upstream.service,
                "namespace": offer.upstream_namespace,
                "port": offer.upstream_port,
            }
        ]
    timeout = request_timeout(offer.payment.max_timeout_seconds)
    if timeout:
        rule["timeouts"] = {"request": timeout}
    return {
        "apiVersion": names.HTTPROUTE_KIND[0],
        "kind": names.HTTPROUTE_KIND[1],
        "metadata": _meta(offer, names.httproute_name(offer.name)),
        "spec": {"parentRefs": [parent], "rules": [rule]},
    }


def _grant(offer: v1alpha1.ServiceOffer, *, target_namespace: str, service: str) -> Obj:
    return {
        "apiVersion": names.REFERENCEGRANT_KIND[0],
        "kind": names.REFERENCEGRANT_KIND[1],
        "metadata": {
            "name": names.backend_grant_name(offer.namespace, offer.name),
            "namespace": target_namespace,
            "labels": labels(offer, foreign_namespace=True),
        },
        "spec": {
            "from": [
                {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": offer.namespace}
            ],
            "to": [{"group": "", "kind": "Service", "name": service}],
        },
    }


def gate_objects(offer: v1alpha1.ServiceOffer, *, settings: Settings) -> list[Obj]:
    """The payment gate: the ForwardAuth Middleware, or in proxy mode the grant to the verifier's gate port."""
    if offer.effective_gate_mode(settings.default_gate_mode) == v1alpha1.GateMode.PROXY:
        svc = settings.verifier_service
        if svc.namespace == offer.namespace:
            return []
        return [_grant(offer, target_namespace=svc.namespace, service=svc.name)]
    return [middleware(offer, settings=settings)]


def route_objects(offer: v1alpha1.ServiceOffer, *, settings: Settings) -> list[Obj]:
    """The published route: HTTPRoute ``so-<name>`` plus, for a cross-namespace upstream, its grant."""
    # A cross-namespace upstream needs a ReferenceGrant that the upstream namespace's owner created: the
    # controller checks for it and never creates one (issue 9, defect 7: it would be a confused deputy,
    # letting any offer author sell any namespace's Service).
    return [httproute(offer, settings=settings)]


def child_key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    """(kind, namespace, name) identity of a rendered child."""
    meta = obj.get("metadata") or {}
    return (str(obj.get("kind")), str(meta.get("namespace", "")), str(meta.get("name", "")))


def offer_label_key(namespace: str, name: str) -> str:
    """The value a child's labels point back to (label values may be truncated with a hash)."""
    return f"{namespace}/{names.label_value(name)}"


def owner_label_key(child: Mapping[str, Any]) -> str | None:
    """Which offer (as :func:`offer_label_key`) a managed child belongs to, from its labels."""
    meta = child.get("metadata") or {}
    lab = meta.get("labels") or {}
    if lab.get(names.LABEL_MANAGED_BY) != names.MANAGED_BY_VALUE or names.LABEL_OFFER not in lab:
        return None
    ns = lab.get(names.LABEL_OFFER_NAMESPACE) or meta.get("namespace", "")
    return f"{ns}/{lab[names.LABEL_OFFER]}"
