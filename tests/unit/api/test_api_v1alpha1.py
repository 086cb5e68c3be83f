"""ServiceOffer / RegistrationRequest views (SPEC 2.2): tolerant parsing and the effective values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kube402.api import names, v1alpha1

PAY_TO = "0x" + "cd" * 20


def parse(
    spec: dict[str, Any], *, name: str = "demo", namespace: str = "shop", **meta: Any
) -> v1alpha1.ServiceOffer:
    return v1alpha1.ServiceOffer.from_dict(
        {"metadata": {"name": name, "namespace": namespace, **meta}, "spec": spec}
    )


FULL = {
    "apiVersion": "obol.org/v1alpha1",
    "kind": "ServiceOffer",
    "metadata": {
        "name": "flow-qwen",
        "namespace": "llm",
        "uid": "u-1",
        "generation": 3,
        "resourceVersion": "42",
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "annotations": {"obol.org/paused": "false", "n": 5},
        "labels": {"a": "b"},
        "finalizers": ["monetize.obol.org/finalizer", 7],
    },
    "spec": {
        "type": "inference",
        "model": {"name": "qwen3:0.6b", "runtime": "ollama"},
        "upstream": {"service": "ollama", "namespace": "models", "port": 11434, "healthPath": "/api/tags"},
        "payment": {
            "scheme": "exact",
            "network": "base",
            "payTo": PAY_TO,
            "maxTimeoutSeconds": 600,
            "price": {"perMTok": "0.5"},
        },
        "path": "/llm/qwen/",
        "gateMode": "proxy",
        "registration": {
            "enabled": True,
            "name": "Qwen",
            "description": "d",
            "image": "i",
            "services": [{"name": "web", "endpoint": "https://x"}, "junk"],
            "skills": ["a/b", 1],
            "domains": ["c"],
            "supportedTrust": ["reputation"],
            "metadata": {"k": "v", "bad": 1},
        },
        "provenance": {"framework": "torch", "paramCount": 600},
    },
    "status": {"agentId": "0", "conditions": [{"type": "Ready", "status": "True"}]},
}


class TestFullManifest:
    def test_every_field_is_read(self) -> None:
        o = v1alpha1.ServiceOffer.from_dict(FULL)
        assert o.metadata == v1alpha1.Metadata(
            namespace="llm",
            name="flow-qwen",
            uid="u-1",
            generation=3,
            resource_version="42",
            creation_timestamp="2026-01-01T00:00:00Z",
            annotations={"obol.org/paused": "false"},
            labels={"a": "b"},
            finalizers=("monetize.obol.org/finalizer",),
        )
        assert o.metadata.key == ("llm", "flow-qwen")
        assert o.type == "inference" and o.model == v1alpha1.Model("qwen3:0.6b", "ollama")
        assert o.upstream == v1alpha1.Upstream("ollama", "models", 11434, "/api/tags")
        assert o.payment == v1alpha1.Payment("exact", "base", PAY_TO, 600, {"perMTok": "0.5"})
        assert o.gate_mode == "proxy"
        assert o.registration.enabled is True
        assert o.registration.services == ({"name": "web", "endpoint": "https://x"},)
        assert o.registration.skills == ("a/b",)
        assert o.registration.metadata == {"k": "v"}
        assert o.provenance == {"framework": "torch"}
        assert o.status["agentId"] == "0"
        assert o.conditions_raw == [{"type": "Ready", "status": "True"}]

    def test_effective_values_of_the_full_manifest(self) -> None:
        o = v1alpha1.ServiceOffer.from_dict(FULL)
        assert o.effective_path == "/llm/qwen"
        assert o.upstream_namespace == "models"
        assert o.upstream_port == 11434
        assert o.health_path == "/api/tags"
        assert o.effective_type == "inference"
        assert o.effective_gate_mode() == "proxy"
        assert not o.paused and not o.deleting

    def test_offer_manifest_round_trips_through_from_dict(self) -> None:
        raw = v1alpha1.offer_manifest(
            "demo",
            namespace="shop",
            upstream="web",
            pay_to=PAY_TO,
            upstream_namespace="web-ns",
            port=8080,
            network="base",
            price={"perHour": "1"},
            health_path="/ready",
            type="http",
            path="/p",
            gate_mode="proxy",
            max_timeout_seconds=60,
            annotations={names.ANNOTATION_PAUSED: "true"},
        )
        assert raw["apiVersion"] == "obol.org/v1alpha1" and raw["kind"] == "ServiceOffer"
        o = v1alpha1.ServiceOffer.from_dict(raw)
        assert (o.name, o.namespace, o.upstream.service, o.upstream_namespace, o.upstream_port) == (
            "demo",
            "shop",
            "web",
            "web-ns",
            8080,
        )
        assert (
            o.payment.network,
            o.payment.pay_to,
            dict(o.payment.price),
            o.payment.max_timeout_seconds,
        ) == ("base", PAY_TO, {"perHour": "1"}, 60)
        assert (o.health_path, o.type, o.path, o.gate_mode, o.paused) == (
            "/ready",
            "http",
            "/p",
            "proxy",
            True,
        )

    def test_offer_manifest_sends_only_what_the_caller_decided(self) -> None:
        raw = v1alpha1.offer_manifest("demo", namespace="shop", upstream="web", pay_to=PAY_TO)
        assert raw["spec"] == {
            "upstream": {"service": "web", "namespace": ""},
            "payment": {"network": "base-sepolia", "payTo": PAY_TO, "price": {"perRequest": "0.001"}},
        }
        assert raw["metadata"] == {"name": "demo", "namespace": "shop"}


class TestEffectiveValues:
    @pytest.mark.parametrize(
        ("path", "effective"),
        [("", "/services/demo"), ("/a/b", "/a/b"), ("/a/b/", "/a/b"), ("/a/b///", "/a/b"), ("/x", "/x")],
    )
    def test_path(self, path: str, effective: str) -> None:
        assert parse({"path": path}).effective_path == effective

    def test_path_defaults_to_services_name(self) -> None:
        assert parse({}, name="flow-qwen").effective_path == "/services/flow-qwen"

    def test_upstream_namespace_defaults_to_the_offer_namespace(self) -> None:
        assert parse({"upstream": {"namespace": ""}}).upstream_namespace == "shop"
        assert parse({"upstream": {}}).upstream_namespace == "shop"
        assert parse({"upstream": {"namespace": "models"}}).upstream_namespace == "models"

    @pytest.mark.parametrize(
        ("port", "effective"), [(None, 11434), (8080, 8080), ("8080", 11434), (True, 11434)]
    )
    def test_port(self, port: object, effective: int) -> None:
        up = {} if port is None else {"port": port}
        assert parse({"upstream": up}).upstream_port == effective

    @pytest.mark.parametrize(("hp", "effective"), [(None, "/health"), ("", "/health"), ("/ready", "/ready")])
    def test_health_path_defaults_to_health_never_root(self, hp: str | None, effective: str) -> None:
        up = {} if hp is None else {"healthPath": hp}
        assert parse({"upstream": up}).health_path == effective

    @pytest.mark.parametrize(("t", "effective"), [(None, "http"), ("", "http"), ("inference", "inference")])
    def test_empty_type_is_http_never_inference(self, t: str | None, effective: str) -> None:
        spec = {} if t is None else {"type": t}
        assert parse(spec).effective_type == effective

    def test_gate_mode_defaults_to_the_controller_default(self) -> None:
        assert parse({}).effective_gate_mode() == "forwardAuth"
        assert parse({}).effective_gate_mode("proxy") == "proxy"
        assert parse({"gateMode": "forwardAuth"}).effective_gate_mode("proxy") == "forwardAuth"

    def test_payment_defaults(self) -> None:
        p = parse({}).payment
        assert (p.scheme, p.max_timeout_seconds, dict(p.price)) == ("exact", 300, {})

    def test_paused_follows_the_annotation(self) -> None:
        assert parse({}, annotations={names.ANNOTATION_PAUSED: " True "}).paused
        assert not parse({}, annotations={names.ANNOTATION_PAUSED: "no"}).paused

    def test_deleting_follows_the_deletion_timestamp(self) -> None:
        assert parse({}, deletionTimestamp="2026-01-01T00:00:00Z").deleting
        assert not parse({}).deleting

    def test_registration_is_disabled_unless_exactly_true(self) -> None:
        assert not parse({"registration": {"enabled": "true"}}).registration.enabled
        assert not parse({}).registration.enabled
        assert parse({"registration": {"enabled": True}}).registration.enabled

    def test_description_default(self) -> None:
        assert parse({}).description == "x402 payment-gated http service: demo"
        assert parse({"registration": {"description": "mine"}}).description == "mine"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def garbage_offer() -> st.SearchStrategy[dict[str, Any]]:
    """Real keys with arbitrary JSON values at every level."""

    def section(keys: list[str]) -> st.SearchStrategy[Any]:
        return json_values | st.fixed_dictionaries({}, optional=dict.fromkeys(keys, json_values))

    spec = st.fixed_dictionaries(
        {},
        optional={
            "type": json_values,
            "model": section(["name", "runtime"]),
            "upstream": section(["service", "namespace", "port", "healthPath"]),
            "payment": section(["scheme", "network", "payTo", "maxTimeoutSeconds", "price"]),
            "path": json_values,
            "gateMode": json_values,
            "provenance": json_values,
            "status": json_values,
            "registration": section(
                [
                    "enabled",
                    "name",
                    "description",
                    "image",
                    "services",
                    "skills",
                    "domains",
                    "supportedTrust",
                    "metadata",
                ]
            ),
        },
    )
    meta = section(
        [
            "name",
            "namespace",
            "uid",
            "generation",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "annotations",
            "labels",
            "finalizers",
        ]
    )
    return st.fixed_dictionaries(
        {}, optional={"metadata": meta, "spec": spec | json_values, "status": json_values}
    )


class TestTolerantParsing:
    @settings(max_examples=250, suppress_health_check=[HealthCheck.too_slow])
    @given(raw=garbage_offer())
    @example(raw={"spec": {"registration": {"services": 5}}})
    @example(raw={"spec": {"registration": {"services": {"name": "web"}}}})
    @example(raw={"spec": {"upstream": {"port": 1.5}}, "metadata": {"generation": "3"}})
    def test_from_dict_never_raises_and_effective_values_are_well_typed(self, raw: dict[str, Any]) -> None:
        o = v1alpha1.ServiceOffer.from_dict(raw)
        assert isinstance(o.effective_path, str) and o.effective_path.startswith("/")
        assert isinstance(o.upstream_namespace, str)
        assert isinstance(o.upstream_port, int)
        assert isinstance(o.health_path, str) and o.health_path
        assert isinstance(o.effective_type, str) and o.effective_type
        assert isinstance(o.paused, bool) and isinstance(o.deleting, bool)
        assert isinstance(o.conditions_raw, list)
        assert isinstance(o.payment.price, Mapping)
        assert isinstance(o.payment.network, str) and isinstance(o.payment.pay_to, str)
        assert all(isinstance(s, str) for s in o.registration.skills)
        assert isinstance(o.metadata.generation, int)

    @settings(max_examples=200)
    @given(
        raw=st.fixed_dictionaries(
            {}, optional={"metadata": json_values, "spec": json_values, "status": json_values}
        )
    )
    def test_registration_request_from_dict_never_raises(self, raw: dict[str, Any]) -> None:
        rr = v1alpha1.RegistrationRequest.from_dict(raw)
        assert isinstance(rr.service_offer_name, str) and isinstance(rr.desired_state, str)


def test_registration_request_fields() -> None:
    rr = v1alpha1.RegistrationRequest.from_dict(
        {
            "metadata": {"name": "so-demo-registration", "namespace": "shop"},
            "spec": {
                "serviceOfferName": "demo",
                "serviceOfferNamespace": "shop",
                "desiredState": "Active",
                "chain": "base-sepolia",
            },
            "status": {"phase": "Registered"},
        }
    )
    assert (rr.service_offer_name, rr.service_offer_namespace, rr.desired_state, rr.chain) == (
        "demo",
        "shop",
        "Active",
        "base-sepolia",
    )
    assert rr.status == {"phase": "Registered"}
    assert rr.metadata.key == ("shop", "so-demo-registration")
