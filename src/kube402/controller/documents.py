"""The published documents, rendered purely from offers: the ERC-8004 registration document (SPEC 6.6), its
tombstone (6.4), ``/skill.md`` and ``/api/services.json`` (6.7), and the objects that serve them (4.6, 4.7).

Content-addressed (SPEC 5.6): every output is a deterministic function of its inputs (no timestamps, stable
key order, sorted offers), so a regeneration after a controller restart is byte-identical and its hash says
whether anything must be applied at all.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from kube402.api import chains, money, names, v1alpha1
from kube402.api import conditions as c

__all__ = [
    "CATALOG_NAME",
    "CATALOG_ROUTE_NAME",
    "DOCUMENT_KEY",
    "REGISTRATION_TYPE",
    "SERVICES_KEY",
    "SKILL_KEY",
    "WELL_KNOWN_PATH",
    "catalog_offers",
    "content_hash",
    "registration_document",
    "serialize",
    "services_json",
    "skill_md",
    "tombstone_document",
    "tombstone_uri",
]

REGISTRATION_TYPE: Final = "https://eips.ethereum.org/EIPS/eip-8004#registration-v1"
WELL_KNOWN_PATH: Final = "/.well-known/agent-registration.json"
SKILL_PATH: Final = "/skill.md"
SERVICES_PATH: Final = "/api/services.json"
DOCUMENT_KEY: Final = "agent-registration.json"
SKILL_KEY: Final = "skill.md"
SERVICES_KEY: Final = "services.json"
HTTPD_CONF_KEY: Final = "httpd.conf"
REGISTRATION_HTTPD_CONF: Final = ".json:application/json\n"
CATALOG_HTTPD_CONF: Final = ".md:text/markdown\n.json:application/json\n"
CATALOG_NAME: Final = "obol-skill-md"
CATALOG_ROUTE_NAME: Final = "obol-skill-md-route"


def serialize(doc: Mapping[str, Any]) -> str:
    """2-space indented JSON in the document's own key order (dicts keep insertion order)."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def content_hash(*texts: str) -> str:
    """First 8 hex characters of md5 over the concatenated texts (the pod annotation of SPEC 4.2)."""
    digest = hashlib.md5(usedforsecurity=False)
    for text in texts:
        digest.update(text.encode())
    return digest.hexdigest()[:8]


def _description(offer: v1alpha1.ServiceOffer) -> str:
    if offer.registration.description:
        return offer.registration.description
    if offer.effective_type == v1alpha1.OfferType.INFERENCE and offer.model is not None and offer.model.name:
        return f"{offer.model.name} inference via x402 micropayments"
    return f"x402 payment-gated {offer.effective_type} service: {offer.name}"


def registration_document(
    offer: v1alpha1.ServiceOffer,
    *,
    base_url: str,
    agent_id: str = "",
    chain_id: int,
    registry: str,
) -> dict[str, Any]:
    """The active document of SPEC 6.6, keys in contract order, empty optional values omitted."""
    reg = offer.registration
    services: list[dict[str, Any]] = [{"name": "web", "endpoint": base_url + offer.effective_path}]
    if reg.skills or reg.domains:
        oasf: dict[str, Any] = {"name": "OASF", "version": "0.8"}
        if reg.skills:
            oasf["skills"] = list(reg.skills)
        if reg.domains:
            oasf["domains"] = list(reg.domains)
        services.append(oasf)
    for entry in reg.services:
        item: dict[str, Any] = {
            "name": str(entry.get("name", "")),
            "endpoint": str(entry.get("endpoint", "")),
        }
        version = entry.get("version")
        if isinstance(version, str) and version:
            item["version"] = version
        services.append(item)
    doc: dict[str, Any] = {
        "type": REGISTRATION_TYPE,
        "name": reg.name or offer.name,
        "description": _description(offer),
        "image": reg.image or f"{base_url}/agent-icon.png",
        "services": services,
        "x402Support": True,
        "active": True,
    }
    if agent_id:
        doc["registrations"] = [{"agentId": int(agent_id), "agentRegistry": f"eip155:{chain_id}:{registry}"}]
    if reg.supported_trust:
        doc["supportedTrust"] = list(reg.supported_trust)
    metadata = {k: v for k, v in sorted(reg.metadata.items()) if v.strip()}
    if metadata:
        doc["metadata"] = metadata
    provenance = {k: v.strip() for k, v in sorted(offer.provenance.items()) if v.strip()}
    if provenance:
        doc["provenance"] = provenance
    return doc


def tombstone_document(active: Mapping[str, Any]) -> dict[str, Any]:
    """The deactivated document (SPEC 6.4): same key order, no services, ``active``/``x402Support`` false."""
    out = dict(active)
    out["description"] = f"{active.get('description', '')} (deactivated)"
    out["services"] = []
    out["x402Support"] = False
    out["active"] = False
    return out


def tombstone_uri(active: Mapping[str, Any]) -> str:
    """``data:application/json;base64,<standard base64 of the compact tombstone JSON>``."""
    compact = json.dumps(tombstone_document(active), separators=(",", ":"), ensure_ascii=False)
    return "data:application/json;base64," + base64.b64encode(compact.encode()).decode("ascii")


# ---- catalog (SPEC 6.7) -------------------------------------------------------------------------------


def _ready(offer: v1alpha1.ServiceOffer) -> bool:
    return any(
        isinstance(x, Mapping) and x.get("type") == c.ConditionType.READY and x.get("status") == c.Status.TRUE
        for x in offer.conditions_raw
    )


def catalog_offers(raw_offers: Iterable[Mapping[str, Any]]) -> list[v1alpha1.ServiceOffer]:
    """Offers listed: not deleting, not paused, Ready=True; sorted by namespace, then name."""
    offers = [v1alpha1.ServiceOffer.from_dict(o) for o in raw_offers]
    listed = [o for o in offers if not o.deleting and not o.paused and _ready(o)]
    return sorted(listed, key=lambda o: (o.namespace, o.name))


def _price_text(price: Mapping[str, Any]) -> str:
    for key, unit in (("perRequest", "request"), ("perMTok", "MTok"), ("perHour", "hour")):
        value = price.get(key)
        if isinstance(value, str) and value:
            return f"{value} USDC/{unit}"
    return "—"


def _charge(offer: v1alpha1.ServiceOffer) -> tuple[chains.Chain | None, money.Charge | None]:
    try:
        chain = chains.lookup(offer.payment.network)
    except chains.UnknownNetworkError:
        return None, None
    try:
        return chain, money.per_request_charge(offer.payment.price, decimals=chain.decimals)
    except money.InvalidPriceError:
        return chain, None


def _catalog_description(offer: v1alpha1.ServiceOffer) -> str:
    return offer.registration.description or f"x402 payment-gated {offer.effective_type} service"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def skill_md(offers: Sequence[v1alpha1.ServiceOffer], *, base_url: str) -> str:
    """``/skill.md`` for the (already selected and sorted) offers."""
    lines = [
        "# Obol Stack Service Catalog",
        "",
        f"> Generated from {len(offers)} ready ServiceOffer(s). Agent registration: "
        f"{base_url}{WELL_KNOWN_PATH}",
        "",
    ]
    if not offers:
        lines += ["**No services currently available.**", ""]
        return "\n".join(lines)
    lines += ["## Services", "", "| Service | Type | Model | Price | Endpoint |", "|---|---|---|---|---|"]
    for o in offers:
        model = o.model.name if o.model is not None and o.model.name else "—"
        lines.append(
            f"| {_cell(o.name)} | {o.effective_type} | {_cell(model)} | {_price_text(o.payment.price)} | "
            f"{base_url}{o.effective_path} |"
        )
    lines += ["", "## Service Details", ""]
    for o in offers:
        chain, charge = _charge(o)
        lines += [
            f"### {o.name}",
            "",
            f"- **Endpoint**: {base_url}{o.effective_path}",
            f"- **Type**: {o.effective_type}",
        ]
        if o.model is not None and o.model.name:
            lines.append(f"- **Model**: {o.model.name}")
        lines.append(f"- **Price**: {_price_text(o.payment.price)}")
        if chain is not None and charge is not None:
            exact = money.format_atomic(charge.amount, decimals=chain.decimals)
            lines.append(f"- **Charged per request**: {exact} USDC ({charge.amount} atomic units)")
        lines += [
            f"- **Pay To**: {o.payment.pay_to}",
            f"- **Network**: {o.payment.network}",
            f"- **Description**: {_catalog_description(o)}",
            "",
        ]
    return "\n".join(lines)


def services_json(offers: Sequence[v1alpha1.ServiceOffer], *, base_url: str) -> str:
    """``/api/services.json`` (kube402): the same selection and order, exact atomic amounts, no timestamps."""
    items: list[dict[str, Any]] = []
    for o in offers:
        chain, charge = _charge(o)
        items.append(
            {
                "namespace": o.namespace,
                "name": o.name,
                "type": o.effective_type,
                "model": o.model.name if o.model is not None else "",
                "endpoint": base_url + o.effective_path,
                "network": chain.caip2 if chain is not None else o.payment.network,
                "asset": chain.usdc if chain is not None else "",
                "payTo": o.payment.pay_to,
                "amount": charge.amount_str if charge is not None else "",
                "price": dict(o.payment.price),
                "maxTimeoutSeconds": o.payment.max_timeout_seconds,
                "description": _catalog_description(o),
            }
        )
    return serialize({"baseUrl": base_url, "services": items})


# ---- the objects that serve the documents (SPEC 4.6, 4.7) ----------------------------------------------


def registration_labels(rr_name: str, offer: str) -> dict[str, str]:
    return {
        "app": names.label_value(rr_name),
        "obol.org/registration": names.label_value(rr_name),
        names.LABEL_OFFER: names.label_value(offer),
        names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE,
    }


def _restricted_container(image: str, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "httpd",
        "image": image,
        "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        "volumeMounts": mounts,
        "resources": {"requests": {"cpu": "5m", "memory": "8Mi"}, "limits": {"cpu": "50m", "memory": "32Mi"}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def _deployment(
    *,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    owner: list[dict[str, Any]],
    image: str,
    items: list[dict[str, str]],
    digest: str,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels)}
    if owner:
        meta["ownerReferences"] = owner
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels), "annotations": {"obol.org/content-hash": digest}},
                "spec": {
                    "containers": [
                        _restricted_container(
                            image,
                            [
                                {"name": "content", "mountPath": "/www", "readOnly": True},
                                {
                                    "name": "httpdconf",
                                    "mountPath": "/etc/httpd.conf",
                                    "subPath": HTTPD_CONF_KEY,
                                },
                            ],
                        )
                    ],
                    "volumes": [
                        {"name": "content", "configMap": {"name": name, "items": items}},
                        {
                            "name": "httpdconf",
                            "configMap": {
                                "name": name,
                                "items": [{"key": HTTPD_CONF_KEY, "path": HTTPD_CONF_KEY}],
                            },
                        },
                    ],
                },
            },
        },
    }


def _service(
    name: str, namespace: str, labels: Mapping[str, str], owner: list[dict[str, Any]]
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": names.safe_name("", name, limit=names.LABEL_LIMIT),
        "namespace": namespace,
        "labels": dict(labels),
    }
    if owner:
        meta["ownerReferences"] = owner
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "selector": dict(labels),
            "ports": [{"name": "http", "port": 8080, "targetPort": 8080, "protocol": "TCP"}],
        },
    }


def _route(
    *,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    owner: list[dict[str, Any]],
    gateway: tuple[str, str, str],
    paths: Sequence[str],
    service: str,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels)}
    if owner:
        meta["ownerReferences"] = owner
    parent: dict[str, Any] = {"name": gateway[1], "namespace": gateway[0]}
    if gateway[2]:
        parent["sectionName"] = gateway[2]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": meta,
        "spec": {
            "parentRefs": [parent],
            "rules": [
                {
                    "matches": [{"path": {"type": "Exact", "value": p}}],
                    "backendRefs": [{"name": service, "port": 8080}],
                }
                for p in paths
            ],
        },
    }


def wellknown_route_name(offer: str) -> str:
    return names.safe_name("so-", offer, "-wellknown")


def registration_objects(
    *,
    rr: Mapping[str, Any],
    offer_name: str,
    document: str,
    image: str,
    gateway: tuple[str, str, str],
) -> list[dict[str, Any]]:
    """ConfigMap, Deployment, Service, HTTPRoute of SPEC 4.6, owned by the RegistrationRequest ``rr``."""
    meta = rr["metadata"]
    ns, rr_name = meta["namespace"], meta["name"]
    owner = [
        {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND_RR,
            "name": rr_name,
            "uid": meta.get("uid", ""),
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    labels = registration_labels(rr_name, offer_name)
    svc = _service(rr_name, ns, labels, owner)
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": rr_name, "namespace": ns, "labels": dict(labels), "ownerReferences": owner},
        "data": {DOCUMENT_KEY: document, HTTPD_CONF_KEY: REGISTRATION_HTTPD_CONF},
    }
    dep = _deployment(
        name=rr_name,
        namespace=ns,
        labels=labels,
        owner=owner,
        image=image,
        items=[{"key": DOCUMENT_KEY, "path": ".well-known/agent-registration.json"}],
        digest=content_hash(document),
    )
    route = _route(
        name=wellknown_route_name(offer_name),
        namespace=ns,
        labels=labels,
        owner=owner,
        gateway=gateway,
        paths=[WELL_KNOWN_PATH],
        service=svc["metadata"]["name"],
    )
    return [cm, dep, svc, route]


def catalog_objects(
    *, namespace: str, skill: str, services: str, image: str, gateway: tuple[str, str, str]
) -> list[dict[str, Any]]:
    """ConfigMap, Deployment, Service, HTTPRoute of SPEC 4.7 (no ownerReferences)."""
    labels = {"app": CATALOG_NAME, names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE}
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CATALOG_NAME, "namespace": namespace, "labels": dict(labels)},
        "data": {SKILL_KEY: skill, SERVICES_KEY: services, HTTPD_CONF_KEY: CATALOG_HTTPD_CONF},
    }
    dep = _deployment(
        name=CATALOG_NAME,
        namespace=namespace,
        labels=labels,
        owner=[],
        image=image,
        items=[{"key": SKILL_KEY, "path": "skill.md"}, {"key": SERVICES_KEY, "path": "api/services.json"}],
        digest=content_hash(skill, services),
    )
    svc = _service(CATALOG_NAME, namespace, labels, [])
    route = _route(
        name=CATALOG_ROUTE_NAME,
        namespace=namespace,
        labels=labels,
        owner=[],
        gateway=gateway,
        paths=[SKILL_PATH, SERVICES_PATH],
        service=CATALOG_NAME,
    )
    return [cm, dep, svc, route]
