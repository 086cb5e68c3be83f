"""Rendered children of a ServiceOffer (SPEC 4.1-4.5), checked against reviewed golden files.

Regenerate with ``pytest tests/unit/controller --update-golden`` and review the diff against SPEC section 4.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path
from typing import Any

import pytest

from kube402.api import names, v1alpha1
from kube402.controller import render
from kube402.controller.settings import GatewayRef, ServiceRef, Settings
from kube402.devenv import golden

GOLDEN = Path(__file__).parent / "golden"
REPO = Path(__file__).resolve().parents[3]
PAY_TO = "0x" + "12" * 20
LONG_NAME = ("a-very-long-offer-name-" * 11)[:250] + "x"
SETTINGS = Settings(identity="test")


def make_offer(
    name: str = "demo",
    *,
    namespace: str = "shop",
    upstream_namespace: str = "",
    gate_mode: str | None = None,
    max_timeout_seconds: int | None = None,
    path: str | None = None,
    port: int | None = 8080,
) -> v1alpha1.ServiceOffer:
    raw = v1alpha1.offer_manifest(
        name,
        namespace=namespace,
        upstream="web",
        pay_to=PAY_TO,
        upstream_namespace=upstream_namespace,
        port=port,
        gate_mode=gate_mode,
        max_timeout_seconds=max_timeout_seconds,
        path=path,
    )
    raw["metadata"]["uid"] = "0b5e1f7c-offer-uid"
    return v1alpha1.ServiceOffer.from_dict(raw)


def objects_by_kind(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    by_kind = {o["kind"]: o for o in objs}
    assert len(by_kind) == len(objs), "one object per kind expected"
    return by_kind


@pytest.fixture
def update(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


class TestGoldenFiles:
    def test_forward_auth_same_namespace(self, update: bool) -> None:
        offer = make_offer()
        gate = objects_by_kind(render.gate_objects(offer, settings=SETTINGS))
        route = objects_by_kind(render.route_objects(offer, settings=SETTINGS))
        assert set(gate) == {"Middleware"} and set(route) == {"HTTPRoute"}
        golden.check(GOLDEN / "forward-auth.middleware.yaml", gate["Middleware"], update=update)
        golden.check(GOLDEN / "forward-auth.httproute.yaml", route["HTTPRoute"], update=update)

    def test_forward_auth_cross_namespace_renders_no_reference_grant(self, update: bool) -> None:
        """Issue 9, defect 7: the upstream namespace's owner grants access; the controller never does."""
        offer = make_offer(upstream_namespace="llm")
        route = objects_by_kind(render.route_objects(offer, settings=SETTINGS))
        assert set(route) == {"HTTPRoute"}
        golden.check(GOLDEN / "cross-namespace.httproute.yaml", route["HTTPRoute"], update=update)

    def test_proxy_mode(self, update: bool) -> None:
        offer = make_offer(gate_mode="proxy", upstream_namespace="llm")
        gate = objects_by_kind(render.gate_objects(offer, settings=SETTINGS))
        route = objects_by_kind(render.route_objects(offer, settings=SETTINGS))
        assert set(gate) == {"ReferenceGrant"} and set(route) == {"HTTPRoute"}
        golden.check(GOLDEN / "proxy.referencegrant.yaml", gate["ReferenceGrant"], update=update)
        golden.check(GOLDEN / "proxy.httproute.yaml", route["HTTPRoute"], update=update)

    def test_long_names_are_truncated_with_a_hash(self, update: bool) -> None:
        assert len(LONG_NAME) == 251
        offer = make_offer(LONG_NAME, upstream_namespace="llm")
        gate = objects_by_kind(render.gate_objects(offer, settings=SETTINGS))
        route = objects_by_kind(render.route_objects(offer, settings=SETTINGS))
        golden.check(GOLDEN / "long-name.middleware.yaml", gate["Middleware"], update=update)
        golden.check(GOLDEN / "long-name.httproute.yaml", route["HTTPRoute"], update=update)


class TestRequestTimeout:
    @pytest.mark.parametrize(
        ("max_timeout", "timeout"),
        [(1, None), (30, None), (31, "151s"), (300, "420s"), (600, "720s"), (86400, "86520s")],
    )
    def test_max_timeout_plus_two_minutes_above_thirty_seconds(
        self, max_timeout: int, timeout: str | None
    ) -> None:
        assert render.request_timeout(max_timeout) == timeout

    @pytest.mark.parametrize("mode", ["forwardAuth", "proxy"])
    @pytest.mark.parametrize(
        ("max_timeout", "timeout"), [(30, None), (None, "420s"), (300, "420s"), (600, "720s")]
    )
    def test_the_route_carries_it_in_both_modes(
        self, mode: str, max_timeout: int | None, timeout: str | None
    ) -> None:
        route = render.httproute(
            make_offer(gate_mode=mode, max_timeout_seconds=max_timeout), settings=SETTINGS
        )
        rule = route["spec"]["rules"][0]
        if timeout is None:
            assert "timeouts" not in rule
        else:
            assert rule["timeouts"] == {"request": timeout}


class TestForwardAuthRoute:
    def test_extension_ref_runs_before_the_rewrite(self) -> None:
        rule = render.httproute(make_offer(), settings=SETTINGS)["spec"]["rules"][0]
        assert [f["type"] for f in rule["filters"]] == ["ExtensionRef", "URLRewrite"]
        assert rule["filters"][0]["extensionRef"] == {
            "group": "traefik.io",
            "kind": "Middleware",
            "name": "x402-demo",
        }

    def test_it_matches_the_effective_path(self) -> None:
        rule = render.httproute(make_offer(path="/llm/qwen/"), settings=SETTINGS)["spec"]["rules"][0]
        assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/llm/qwen"}}]

    def test_backend_uses_the_default_port(self) -> None:
        rule = render.httproute(make_offer(port=None), settings=SETTINGS)["spec"]["rules"][0]
        assert rule["backendRefs"] == [{"name": "web", "namespace": "shop", "port": 11434}]

    def test_a_gateway_without_section_has_no_section_name(self) -> None:
        settings = Settings(identity="t", gateway=GatewayRef("gw-ns", "gw", ""))
        route = render.httproute(make_offer(), settings=settings)
        assert route["spec"]["parentRefs"] == [{"name": "gw", "namespace": "gw-ns"}]

    def test_the_middleware_points_at_the_configured_verifier(self) -> None:
        settings = Settings(identity="t", verifier_address="http://v.example:9/verify")
        mw = render.middleware(make_offer(), settings=settings)
        assert mw["spec"] == {
            "forwardAuth": {
                "address": "http://v.example:9/verify",
                "authResponseHeaders": ["X-Payment-Status", "X-Payment-Tx", "Authorization"],
                "trustForwardHeader": False,
                "maxResponseBodySize": 1048576,
            }
        }

    def test_same_namespace_upstream_needs_no_grant(self) -> None:
        route = render.route_objects(make_offer(upstream_namespace="shop"), settings=SETTINGS)
        assert [o["kind"] for o in route] == ["HTTPRoute"]


class TestProxyMode:
    def test_the_route_has_no_filters_and_targets_the_gate_port(self) -> None:
        rule = render.httproute(make_offer(gate_mode="proxy"), settings=SETTINGS)["spec"]["rules"][0]
        assert "filters" not in rule
        assert rule["backendRefs"] == [{"name": "x402-verifier", "namespace": "x402", "port": 8081}]

    def test_the_controller_default_mode_applies_to_offers_without_gate_mode(self) -> None:
        settings = Settings(identity="t", default_gate_mode="proxy")
        assert [o["kind"] for o in render.gate_objects(make_offer(), settings=settings)] == ["ReferenceGrant"]

    def test_no_middleware_and_no_upstream_grant(self) -> None:
        offer = make_offer(gate_mode="proxy", upstream_namespace="llm")
        kinds = [o["kind"] for o in render.gate_objects(offer, settings=SETTINGS)]
        kinds += [o["kind"] for o in render.route_objects(offer, settings=SETTINGS)]
        assert "Middleware" not in kinds
        assert kinds.count("ReferenceGrant") == 1

    def test_an_offer_in_the_verifier_namespace_needs_no_grant(self) -> None:
        offer = make_offer(namespace="x402", gate_mode="proxy")
        assert render.gate_objects(offer, settings=SETTINGS) == []

    def test_a_custom_verifier_service_is_used(self) -> None:
        settings = Settings(identity="t", verifier_service=ServiceRef("gate-ns", "gate", 9000))
        offer = make_offer(gate_mode="proxy")
        rule = render.httproute(offer, settings=settings)["spec"]["rules"][0]
        assert rule["backendRefs"] == [{"name": "gate", "namespace": "gate-ns", "port": 9000}]
        (grant,) = render.gate_objects(offer, settings=settings)
        assert grant["metadata"]["namespace"] == "gate-ns"
        assert grant["spec"]["to"] == [{"group": "", "kind": "Service", "name": "gate"}]


class TestMetadata:
    def test_same_namespace_children_carry_a_controller_owner_reference(self) -> None:
        offer = make_offer()
        for obj in render.gate_objects(offer, settings=SETTINGS) + render.route_objects(
            offer, settings=SETTINGS
        ):
            assert obj["metadata"]["namespace"] == "shop"
            assert obj["metadata"]["ownerReferences"] == [
                {
                    "apiVersion": "obol.org/v1alpha1",
                    "kind": "ServiceOffer",
                    "name": "demo",
                    "uid": "0b5e1f7c-offer-uid",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
            assert obj["metadata"]["labels"] == {
                "obol.org/managed-by": "serviceoffer-controller",
                "obol.org/serviceoffer": "demo",
            }

    def test_foreign_namespace_grants_have_no_owner_and_name_the_offer_namespace(self) -> None:
        offer = make_offer(upstream_namespace="llm", gate_mode="proxy")
        grant = objects_by_kind(render.gate_objects(offer, settings=SETTINGS))["ReferenceGrant"]
        assert "ownerReferences" not in grant["metadata"]
        assert grant["metadata"]["labels"] == {
            "obol.org/managed-by": "serviceoffer-controller",
            "obol.org/serviceoffer": "demo",
            "obol.org/serviceoffer-namespace": "shop",
        }

    @pytest.mark.parametrize("name", ["demo", LONG_NAME])
    @pytest.mark.parametrize("mode", ["forwardAuth", "proxy"])
    def test_every_child_maps_back_to_its_offer_through_labels(self, name: str, mode: str) -> None:
        offer = make_offer(name, upstream_namespace="llm", gate_mode=mode)
        children = render.gate_objects(offer, settings=SETTINGS) + render.route_objects(
            offer, settings=SETTINGS
        )
        assert children
        for child in children:
            assert render.owner_label_key(child) == render.offer_label_key("shop", name)
            assert all(len(v) <= 63 for v in child["metadata"]["labels"].values())
            assert len(child["metadata"]["name"]) <= 253

    def test_unmanaged_objects_map_to_no_offer(self) -> None:
        assert render.owner_label_key({"metadata": {"namespace": "shop", "labels": {}}}) is None
        assert render.owner_label_key({"metadata": {"labels": {names.LABEL_OFFER: "demo"}}}) is None
        assert (
            render.owner_label_key(
                {"metadata": {"labels": {names.LABEL_MANAGED_BY: "someone-else", names.LABEL_OFFER: "demo"}}}
            )
            is None
        )
        assert render.owner_label_key({}) is None

    def test_child_key_is_kind_namespace_name(self) -> None:
        mw = render.middleware(make_offer(), settings=SETTINGS)
        assert render.child_key(mw) == ("Middleware", "shop", "x402-demo")


class TestPurity:
    def test_rendering_twice_gives_equal_objects_and_leaves_the_offer_alone(self) -> None:
        offer = make_offer(upstream_namespace="llm")
        before = copy.deepcopy(dict(offer.raw))
        first = render.gate_objects(offer, settings=SETTINGS) + render.route_objects(offer, settings=SETTINGS)
        second = render.gate_objects(offer, settings=SETTINGS) + render.route_objects(
            offer, settings=SETTINGS
        )
        assert first == second
        assert dict(offer.raw) == before

    def test_mutating_a_rendered_object_does_not_leak_into_the_next(self) -> None:
        offer = make_offer()
        mw = render.middleware(offer, settings=SETTINGS)
        mw["spec"]["forwardAuth"]["authResponseHeaders"].append("X-Evil")
        mw["metadata"]["labels"]["x"] = "y"
        again = render.middleware(offer, settings=SETTINGS)
        assert again["spec"]["forwardAuth"]["authResponseHeaders"] == list(render.AUTH_RESPONSE_HEADERS)
        assert "x" not in again["metadata"]["labels"]

    @pytest.mark.parametrize("module", ["render", "status"])
    def test_pure_modules_import_no_cluster_chain_or_http_client(self, module: str) -> None:
        # STYLE.md section 3: controller.render and controller.status import no kube, chain, httpx,
        # lightkube or web3.
        tree = ast.parse((REPO / "src" / "kube402" / "controller" / f"{module}.py").read_text())
        imported: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        forbidden = ("kube402.kube", "kube402.chain", "httpx", "lightkube", "web3")
        assert [m for m in imported if m.startswith(forbidden)] == []
