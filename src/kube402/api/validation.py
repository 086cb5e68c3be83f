"""Re-validation of ServiceOffer rules that the CRD schema should have enforced (SPEC 2.2).

The controller and the verifier run these checks because the installed CRD may be the original's looser
schema. Pure: returns human-readable problems, never raises.
"""

from __future__ import annotations

import re
from typing import Final

from kube402.api import v1alpha1

__all__ = ["path_problem", "spec_problems"]

PAY_TO: Final = re.compile(r"^0x[0-9a-fA-F]{40}$")
DNS1035: Final = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
PATH: Final = re.compile(r"^/[a-zA-Z0-9/_.-]*$")
NETWORK: Final = re.compile(r"^([a-z0-9][a-z0-9-]*|eip155:[0-9]+)$")
RESERVED_EXACT: Final = ("/skill.md", "/api/services.json")


def path_problem(path: str) -> str | None:
    """Why ``spec.path`` is not acceptable, or None. An empty path means the default and is fine."""
    if not path:
        return None
    if not PATH.fullmatch(path):
        return f"path {path!r} must match ^/[a-zA-Z0-9/_.-]*$"
    trimmed = path.rstrip("/")
    if trimmed == "":
        return "path must not be /"
    if "//" in path:
        return f"path {path!r} must not contain //"
    segments = trimmed.split("/")[1:]
    if any(s in (".", "..") for s in segments):
        return f"path {path!r} must not contain . or .. segments"
    if trimmed == "/.well-known" or trimmed.startswith("/.well-known/"):
        return f"path {path!r} must not be under /.well-known/"
    if trimmed in RESERVED_EXACT:
        return f"path {path!r} is reserved"
    return None


def spec_problems(offer: v1alpha1.ServiceOffer) -> list[str]:
    """Spec violations other than price, network and path (those have their own reasons)."""
    out: list[str] = []
    if offer.type and offer.type not in {t.value for t in v1alpha1.OfferType}:
        out.append(f"type {offer.type!r} is not one of inference, fine-tuning, http")
    if (
        not offer.upstream.service
        or len(offer.upstream.service) > 63
        or not DNS1035.fullmatch(offer.upstream.service)
    ):
        out.append(f"upstream.service {offer.upstream.service!r} is not a valid Service name")
    if offer.upstream.namespace and (
        len(offer.upstream.namespace) > 63 or not DNS1123.fullmatch(offer.upstream.namespace)
    ):
        out.append(f"upstream.namespace {offer.upstream.namespace!r} is not a valid namespace")
    if not 1 <= offer.upstream_port <= 65535:
        out.append(f"upstream.port {offer.upstream_port} is outside 1..65535")
    hp = offer.health_path
    if not hp.startswith("/") or ".." in hp:
        out.append(f"upstream.healthPath {hp!r} must start with / and not contain ..")
    if offer.payment.scheme != "exact":
        out.append(f"payment.scheme {offer.payment.scheme!r} is not supported (only exact)")
    if not PAY_TO.fullmatch(offer.payment.pay_to):
        out.append(f"payment.payTo {offer.payment.pay_to!r} is not an address")
    if not 30 <= offer.payment.max_timeout_seconds <= 86400:
        out.append(f"payment.maxTimeoutSeconds {offer.payment.max_timeout_seconds} is outside 30..86400")
    if offer.gate_mode and offer.gate_mode not in {m.value for m in v1alpha1.GateMode}:
        out.append(f"gateMode {offer.gate_mode!r} is not one of forwardAuth, proxy")
    return out
