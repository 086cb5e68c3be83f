"""Controller settings (SPEC 5.7): defaults and the --gateway / --verifier-service parsers."""

from __future__ import annotations

import pytest

from kube402.controller.settings import GatewayRef, ServiceRef, Settings


class TestDefaults:
    def test_shipped_defaults(self) -> None:
        s = Settings(identity="pod-0")
        assert s.namespace == "x402"
        assert s.verifier_address == "http://x402-verifier.x402.svc.cluster.local:8080/verify"
        assert s.verifier_service == ServiceRef("x402", "x402-verifier", 8081)
        assert s.gateway == GatewayRef("traefik", "traefik-gateway", "web")
        assert s.default_gate_mode == "forwardAuth"
        assert s.upstream_resolution == "dns"
        assert s.workers == 4
        assert s.probe_timeout == 2.0
        assert (s.requeue_not_ready, s.requeue_ready) == (5.0, 30.0)

    def test_identity_defaults_to_pod_name(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("POD_NAME", "serviceoffer-controller-abc")
        assert Settings().identity == "serviceoffer-controller-abc"

    def test_identity_without_pod_name_is_host_and_pid(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import os
        import socket

        monkeypatch.delenv("POD_NAME", raising=False)
        assert Settings().identity == f"{socket.gethostname()}-{os.getpid()}"


class TestGatewayRef:
    @pytest.mark.parametrize(
        ("text", "ref"),
        [
            ("traefik/traefik-gateway/web", GatewayRef("traefik", "traefik-gateway", "web")),
            ("gw-ns/gw", GatewayRef("gw-ns", "gw", "")),
        ],
    )
    def test_namespace_name_and_optional_section(self, text: str, ref: GatewayRef) -> None:
        assert GatewayRef.parse(text) == ref

    @pytest.mark.parametrize("text", ["", "traefik", "a/b/c/d", "/gw/web", "ns//web", "ns/gw/"])
    def test_anything_else_is_rejected_naming_the_flag(self, text: str) -> None:
        with pytest.raises(ValueError, match="--gateway"):
            GatewayRef.parse(text)


class TestServiceRef:
    @pytest.mark.parametrize(
        ("text", "ref"),
        [
            ("x402/x402-verifier:8081", ServiceRef("x402", "x402-verifier", 8081)),
            ("gate-ns/gate:9000", ServiceRef("gate-ns", "gate", 9000)),
        ],
    )
    def test_namespace_name_and_port(self, text: str, ref: ServiceRef) -> None:
        assert ServiceRef.parse(text) == ref

    @pytest.mark.parametrize(
        "text",
        ["", "x402-verifier:8081", "x402/x402-verifier", "x402/x402-verifier:http", "x402/x402-verifier:"],
    )
    def test_malformed_values_are_rejected_naming_the_flag(self, text: str) -> None:
        with pytest.raises(ValueError, match="--verifier-service"):
            ServiceRef.parse(text)

    @pytest.mark.parametrize(
        "text", ["/x402-verifier:8081", "x402/:8081", "x402/x402-verifier:0", "x402/x402-verifier:65536"]
    )
    def test_empty_parts_and_impossible_ports_are_rejected(self, text: str) -> None:
        # These would otherwise render backendRefs the API server refuses, on every proxy-mode offer.
        with pytest.raises(ValueError, match="--verifier-service"):
            ServiceRef.parse(text)
