"""Every wire name kube402 owns: group/kinds, field manager, finalizer, labels, annotations, child names.

These are contract items (SPEC sections 2, 4): a manifest written for obol-stack must produce the same
object names under kube402.
"""

from __future__ import annotations

import hashlib
from typing import Final

__all__ = [
    "ANNOTATION_PAUSED",
    "FIELD_MANAGER",
    "FINALIZER",
    "GROUP",
    "LABEL_MANAGED_BY",
    "LABEL_OFFER",
    "LABEL_OFFER_NAMESPACE",
    "VERSION",
    "backend_grant_name",
    "httproute_name",
    "is_paused",
    "middleware_name",
    "registration_name",
    "safe_name",
]

GROUP: Final = "obol.org"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND_OFFER: Final = "ServiceOffer"
PLURAL_OFFER: Final = "serviceoffers"
KIND_RR: Final = "RegistrationRequest"
PLURAL_RR: Final = "registrationrequests"

# Third-party kinds the controller renders (apiVersion, kind).
MIDDLEWARE_KIND: Final = ("traefik.io/v1alpha1", "Middleware")
HTTPROUTE_KIND: Final = ("gateway.networking.k8s.io/v1", "HTTPRoute")
REFERENCEGRANT_KIND: Final = ("gateway.networking.k8s.io/v1beta1", "ReferenceGrant")

FIELD_MANAGER: Final = "serviceoffer-controller"
FINALIZER: Final = "monetize.obol.org/finalizer"
ANNOTATION_PAUSED: Final = "obol.org/paused"
LABEL_MANAGED_BY: Final = "obol.org/managed-by"
LABEL_OFFER: Final = "obol.org/serviceoffer"
LABEL_OFFER_NAMESPACE: Final = "obol.org/serviceoffer-namespace"
MANAGED_BY_VALUE: Final = "serviceoffer-controller"

SYSTEM_NAMESPACE: Final = "x402"
LEASE_NAME: Final = "serviceoffer-controller"

DNS_SUBDOMAIN_LIMIT: Final = 253
LABEL_LIMIT: Final = 63


def safe_name(prefix: str, name: str, suffix: str = "", *, limit: int = DNS_SUBDOMAIN_LIMIT) -> str:
    """``prefix+name+suffix`` if it fits in ``limit``; else ``name`` cut and tagged with 8 hex of md5(name)."""
    full = prefix + name + suffix
    if len(full) <= limit:
        return full
    tag = "-" + hashlib.md5(name.encode(), usedforsecurity=False).hexdigest()[:8]
    keep = limit - len(prefix) - len(suffix) - len(tag)
    if keep < 1:
        raise ValueError(f"prefix and suffix leave no room for the name within {limit} characters")
    return prefix + name[:keep] + tag + suffix


def label_value(value: str) -> str:
    return safe_name("", value, limit=LABEL_LIMIT)


def middleware_name(offer: str) -> str:
    return safe_name("x402-", offer)


def httproute_name(offer: str) -> str:
    return safe_name("so-", offer)


def backend_grant_name(offer_namespace: str, offer: str) -> str:
    return safe_name("so-", f"{offer_namespace}.{offer}", "-backend-grant")


def registration_name(offer: str) -> str:
    return safe_name("so-", offer, "-registration")


def is_paused(annotations: object) -> bool:
    """Paused iff ``obol.org/paused``, trimmed and lower-cased, is ``true``."""
    if not isinstance(annotations, dict):
        return False
    value = annotations.get(ANNOTATION_PAUSED)
    return isinstance(value, str) and value.strip().lower() == "true"
