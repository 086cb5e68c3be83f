"""The published documents: SPEC 6.6 key order and values, tombstone, /skill.md and /api/services.json."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kube402.api import v1alpha1
from kube402.controller import documents

BASE = "http://obol.stack:8080"
REGISTRY = "0x8004A818BFB912233c491871b3d84c89A494BD9e"
PAY_TO = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def offer(name: str = "demo", *, ns: str = "llm", ready: bool = True, **kw: Any) -> v1alpha1.ServiceOffer:
    raw = v1alpha1.offer_manifest(name, namespace=ns, upstream="ollama", pay_to=PAY_TO, **kw)
    raw["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    raw["status"] = {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    return v1alpha1.ServiceOffer.from_dict(raw)


def test_document_key_order_and_registrations() -> None:
    o = offer(
        registration={
            "enabled": True,
            "skills": ["natural_language_processing/text_completion"],
            "domains": ["technology/data_science"],
            "services": [{"name": "A2A", "endpoint": "https://x/card", "version": ""}],
            "supportedTrust": ["reputation"],
            "metadata": {"b": "2", "a": "1", "blank": "  "},
        },
        provenance={"framework": " torch ", "trainHash": ""},
    )
    doc = documents.registration_document(o, base_url=BASE, agent_id="0", chain_id=84532, registry=REGISTRY)
    assert list(doc) == [
        "type",
        "name",
        "description",
        "image",
        "services",
        "x402Support",
        "active",
        "registrations",
        "supportedTrust",
        "metadata",
        "provenance",
    ]
    assert doc["type"] == "https://eips.ethereum.org/EIPS/eip-8004#registration-v1"
    assert doc["name"] == "demo"
    assert doc["description"] == "x402 payment-gated http service: demo"
    assert doc["image"] == f"{BASE}/agent-icon.png"
    assert doc["services"] == [
        {"name": "web", "endpoint": f"{BASE}/services/demo"},
        {
            "name": "OASF",
            "version": "0.8",
            "skills": ["natural_language_processing/text_completion"],
            "domains": ["technology/data_science"],
        },
        {"name": "A2A", "endpoint": "https://x/card"},
    ]
    # agentId 0 is a valid id and a JSON number; the registry comes from the configured chain.
    assert doc["registrations"] == [{"agentId": 0, "agentRegistry": f"eip155:84532:{REGISTRY}"}]
    assert doc["metadata"] == {"a": "1", "b": "2"}
    assert doc["provenance"] == {"framework": "torch"}
    text = documents.serialize(doc)
    assert text.startswith('{\n  "type": ')
    assert json.loads(text) == doc


def test_document_without_agent_omits_registrations_and_empty_optionals() -> None:
    doc = documents.registration_document(
        offer(registration={"enabled": True}), base_url=BASE, chain_id=1, registry=REGISTRY
    )
    assert list(doc) == ["type", "name", "description", "image", "services", "x402Support", "active"]
    assert doc["services"] == [{"name": "web", "endpoint": f"{BASE}/services/demo"}]


def test_inference_description_and_overrides() -> None:
    o = offer(
        type="inference", model={"name": "qwen3.5:9b", "runtime": "ollama"}, registration={"enabled": True}
    )
    doc = documents.registration_document(o, base_url=BASE, chain_id=84532, registry=REGISTRY)
    assert doc["description"] == "qwen3.5:9b inference via x402 micropayments"
    o2 = offer(registration={"enabled": True, "name": "N", "description": "D", "image": "https://i/x.png"})
    doc2 = documents.registration_document(o2, base_url=BASE, chain_id=84532, registry=REGISTRY)
    assert (doc2["name"], doc2["description"], doc2["image"]) == ("N", "D", "https://i/x.png")


def test_tombstone_is_base64_data_url_with_active_false() -> None:
    active = documents.registration_document(
        offer(registration={"enabled": True}), base_url=BASE, agent_id="7", chain_id=84532, registry=REGISTRY
    )
    uri = documents.tombstone_uri(active)
    prefix = "data:application/json;base64,"
    assert uri.startswith(prefix)
    decoded = json.loads(base64.b64decode(uri[len(prefix) :], validate=True))
    assert decoded["active"] is False
    assert decoded["x402Support"] is False
    assert decoded["services"] == []
    assert decoded["description"] == active["description"] + " (deactivated)"
    assert decoded["registrations"] == active["registrations"]
    assert list(decoded) == list(active)


def test_catalog_selection_order_and_exact_amounts() -> None:
    raws = [
        offer("zeta", ns="b").raw,
        offer("alpha", ns="b", price={"perMTok": "0.5"}).raw,
        offer("paused", ns="a", annotations={"obol.org/paused": " TRUE "}).raw,
        offer("notready", ns="a", ready=False).raw,
        offer("first", ns="a", price={"perRequest": "0.000249"}).raw,
    ]
    listed = documents.catalog_offers(raws)
    assert [(o.namespace, o.name) for o in listed] == [("a", "first"), ("b", "alpha"), ("b", "zeta")]
    md = documents.skill_md(listed, base_url=BASE)
    assert md.startswith("# Obol Stack Service Catalog\n")
    assert "Generated from 3 ready ServiceOffer(s)" in md
    assert f"{BASE}/.well-known/agent-registration.json" in md
    assert f"| first | http | — | 0.000249 USDC/request | {BASE}/services/first |" in md
    assert "0.5 USDC/MTok" in md
    assert "- **Charged per request**: 0.000249 USDC (249 atomic units)" in md
    assert md.index("### first") < md.index("### alpha") < md.index("### zeta")
    services = json.loads(documents.services_json(listed, base_url=BASE))
    assert services["baseUrl"] == BASE
    assert [s["name"] for s in services["services"]] == ["first", "alpha", "zeta"]
    first = services["services"][0]
    assert first["amount"] == "249"
    assert first["network"] == "eip155:84532"
    assert first["asset"] == "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
    assert first["price"] == {"perRequest": "0.000249"}
    assert list(first) == [
        "namespace",
        "name",
        "type",
        "model",
        "endpoint",
        "network",
        "asset",
        "payTo",
        "amount",
        "price",
        "maxTimeoutSeconds",
        "description",
    ]


def test_empty_catalog() -> None:
    md = documents.skill_md([], base_url=BASE)
    assert "**No services currently available.**" in md
    assert "Generated from 0 ready ServiceOffer(s)" in md


@given(st.permutations(list(range(6))))
def test_catalog_is_content_addressed(order: list[int]) -> None:
    """Byte-identical whatever the cache order: no timestamps, sorted offers, stable hash."""
    raws = [offer(f"o{i}", ns=f"n{i % 2}", price={"perRequest": f"0.00{i + 1}"}).raw for i in range(6)]
    shuffled = [raws[i] for i in order]
    a = documents.catalog_offers(raws)
    b = documents.catalog_offers(shuffled)
    skill_a, skill_b = documents.skill_md(a, base_url=BASE), documents.skill_md(b, base_url=BASE)
    json_a, json_b = documents.services_json(a, base_url=BASE), documents.services_json(b, base_url=BASE)
    assert skill_a == skill_b and json_a == json_b
    assert documents.content_hash(skill_a, json_a) == documents.content_hash(skill_b, json_b)


def test_objects_match_spec_4_6() -> None:
    rr = {"metadata": {"name": "so-demo-registration", "namespace": "llm", "uid": "u1"}}
    cm, dep, svc, route = documents.registration_objects(
        rr=rr,
        offer_name="demo",
        document="{}\n",
        image="busybox:1.36",
        gateway=("traefik", "traefik-gateway", "web"),
    )
    assert cm["data"] == {"agent-registration.json": "{}\n", "httpd.conf": ".json:application/json\n"}
    assert cm["metadata"]["ownerReferences"][0]["kind"] == "RegistrationRequest"
    pod = dep["spec"]["template"]
    assert pod["metadata"]["annotations"]["obol.org/content-hash"] == documents.content_hash("{}\n")
    assert pod["spec"]["volumes"][0]["configMap"]["items"] == [
        {"key": "agent-registration.json", "path": ".well-known/agent-registration.json"}
    ]
    assert dep["spec"]["selector"]["matchLabels"] == {
        "app": "so-demo-registration",
        "obol.org/registration": "so-demo-registration",
        "obol.org/serviceoffer": "demo",
        "obol.org/managed-by": "serviceoffer-controller",
    }
    assert svc["spec"]["ports"][0]["port"] == 8080
    assert route["metadata"]["name"] == "so-demo-wellknown"
    rule = route["spec"]["rules"][0]
    assert rule["matches"] == [{"path": {"type": "Exact", "value": "/.well-known/agent-registration.json"}}]
    assert "filters" not in rule
    _, _, _, catalog_route = documents.catalog_objects(
        namespace="x402",
        skill="s",
        services="j",
        image="busybox:1.36",
        gateway=("traefik", "traefik-gateway", "web"),
    )
    assert [r["matches"][0]["path"]["value"] for r in catalog_route["spec"]["rules"]] == [
        "/skill.md",
        "/api/services.json",
    ]
