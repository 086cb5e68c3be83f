"""Upstream address resolution and the health probe (SPEC 5.1, 3.1 UpstreamHealthy)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest

from kube402.controller import health
from kube402.kube import endpoints


def service(
    *, type_: str = "ClusterIP", ports: list[dict[str, Any]] | None = None, external: str | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": type_}
    if ports is not None:
        spec["ports"] = ports
    if external is not None:
        spec["externalName"] = external
    return {"metadata": {"name": "web", "namespace": "shop"}, "spec": spec}


def endpoint(address: str, ready: bool | None = True) -> dict[str, Any]:
    ep: dict[str, Any] = {"addresses": [address]}
    if ready is not None:
        ep["conditions"] = {"ready": ready}
    return ep


def slices_of(*slices: dict[str, Any]) -> Callable[[str, str], list[Mapping[str, Any]]]:
    def lookup(ns: str, name: str) -> list[Mapping[str, Any]]:
        assert (ns, name) == ("shop", "web")
        return list(slices)

    return lookup


def no_slices(ns: str, name: str) -> list[Mapping[str, Any]]:
    raise AssertionError("EndpointSlices must not be consulted")


class TestDnsResolution:
    def test_cluster_dns_name_with_the_offer_port(self) -> None:
        url = endpoints.resolve_base_url(
            service(ports=[{"port": 80}]), port=8080, mode="dns", slices=no_slices
        )
        assert url == "http://web.shop.svc.cluster.local:8080"

    def test_dns_mode_does_not_need_a_matching_service_port(self) -> None:
        url = endpoints.resolve_base_url(
            service(), port=11434, mode=endpoints.Resolution.DNS, slices=no_slices
        )
        assert url == "http://web.shop.svc.cluster.local:11434"


class TestExternalName:
    @pytest.mark.parametrize("mode", ["dns", "endpointslice"])
    def test_external_name_is_used_in_both_modes(self, mode: str) -> None:
        svc = service(type_="ExternalName", external="api.example.com.")
        assert (
            endpoints.resolve_base_url(svc, port=443, mode=mode, slices=no_slices)
            == "http://api.example.com:443"
        )

    def test_an_ipv6_external_name_is_bracketed(self) -> None:
        svc = service(type_="ExternalName", external="::1")
        assert endpoints.resolve_base_url(svc, port=80, mode="dns", slices=no_slices) == "http://[::1]:80"

    def test_an_empty_external_name_is_unresolvable(self) -> None:
        with pytest.raises(endpoints.UnresolvableError, match="shop/web"):
            endpoints.resolve_base_url(
                service(type_="ExternalName", external=""), port=80, mode="dns", slices=no_slices
            )


class TestEndpointSliceResolution:
    def test_a_named_port_uses_the_slice_port_of_the_same_name(self) -> None:
        svc = service(
            ports=[
                {"name": "metrics", "port": 9090, "targetPort": 9091},
                {"name": "http", "port": 8080, "targetPort": "web"},
            ]
        )
        es = {
            "ports": [{"name": "metrics", "port": 9091}, {"name": "http", "port": 3000}],
            "endpoints": [endpoint("10.0.0.7")],
        }
        url = endpoints.resolve_base_url(svc, port=8080, mode="endpointslice", slices=slices_of(es))
        assert url == "http://10.0.0.7:3000"

    def test_an_unnamed_port_uses_the_unnamed_slice_port(self) -> None:
        svc = service(ports=[{"port": 8080, "targetPort": 3000}])
        es = {"ports": [{"port": 3001}], "endpoints": [endpoint("10.0.0.8")]}
        url = endpoints.resolve_base_url(svc, port=8080, mode="endpointslice", slices=slices_of(es))
        assert url == "http://10.0.0.8:3001"

    def test_an_unnamed_port_falls_back_to_the_numeric_target_port(self) -> None:
        svc = service(ports=[{"port": 8080, "targetPort": 3000}])
        es = {"endpoints": [endpoint("10.0.0.8")]}
        url = endpoints.resolve_base_url(svc, port=8080, mode="endpointslice", slices=slices_of(es))
        assert url == "http://10.0.0.8:3000"

    def test_a_slice_without_the_named_port_is_skipped(self) -> None:
        svc = service(ports=[{"name": "http", "port": 8080}])
        wrong = {"ports": [{"name": "grpc", "port": 5000}], "endpoints": [endpoint("10.0.0.1")]}
        right = {"ports": [{"name": "http", "port": 5001}], "endpoints": [endpoint("10.0.0.2")]}
        url = endpoints.resolve_base_url(svc, port=8080, mode="endpointslice", slices=slices_of(wrong, right))
        assert url == "http://10.0.0.2:5001"

    def test_not_ready_endpoints_are_skipped(self) -> None:
        svc = service(ports=[{"name": "http", "port": 8080}])
        es = {
            "ports": [{"name": "http", "port": 80}],
            "endpoints": [endpoint("10.0.0.1", ready=False), endpoint("10.0.0.2", ready=True)],
        }
        url = endpoints.resolve_base_url(svc, port=8080, mode="endpointslice", slices=slices_of(es))
        assert url == "http://10.0.0.2:80"

    def test_an_endpoint_with_unknown_readiness_counts_as_ready(self) -> None:
        svc = service(ports=[{"name": "http", "port": 8080}])
        es = {"ports": [{"name": "http", "port": 80}], "endpoints": [endpoint("10.0.0.3", ready=None)]}
        url = endpoints.resolve_base_url(svc, port=8080, mode="endpointslice", slices=slices_of(es))
        assert url == "http://10.0.0.3:80"

    def test_an_ipv6_endpoint_is_bracketed(self) -> None:
        svc = service(ports=[{"name": "http", "port": 8080}])
        es = {"ports": [{"name": "http", "port": 80}], "endpoints": [endpoint("fd00::5")]}
        url = endpoints.resolve_base_url(svc, port=8080, mode="endpointslice", slices=slices_of(es))
        assert url == "http://[fd00::5]:80"

    def test_no_service_port_equal_to_the_offer_port_is_unresolvable(self) -> None:
        svc = service(ports=[{"name": "http", "port": 80}])
        with pytest.raises(endpoints.UnresolvableError, match="no port 8080"):
            endpoints.resolve_base_url(svc, port=8080, mode="endpointslice", slices=no_slices)

    def test_a_service_without_ports_is_unresolvable(self) -> None:
        with pytest.raises(endpoints.UnresolvableError):
            endpoints.resolve_base_url(service(), port=8080, mode="endpointslice", slices=no_slices)

    @pytest.mark.parametrize(
        "slices",
        [
            pytest.param([], id="no slices"),
            pytest.param(
                [{"ports": [{"name": "http", "port": 80}], "endpoints": [endpoint("10.0.0.1", False)]}],
                id="only not-ready endpoints",
            ),
            pytest.param([{"ports": [{"name": "http", "port": 80}], "endpoints": []}], id="empty slice"),
            pytest.param(
                [{"ports": [{"name": "http", "port": 80}], "endpoints": [{"addresses": []}]}],
                id="endpoint without address",
            ),
        ],
    )
    def test_no_ready_address_is_unresolvable(self, slices: list[dict[str, Any]]) -> None:
        svc = service(ports=[{"name": "http", "port": 8080}])
        with pytest.raises(endpoints.UnresolvableError, match="no ready endpoint"):
            endpoints.resolve_base_url(svc, port=8080, mode="endpointslice", slices=slices_of(*slices))

    def test_an_unknown_mode_is_rejected(self) -> None:
        with pytest.raises(ValueError):
            endpoints.resolve_base_url(service(ports=[{"port": 80}]), port=80, mode="magic", slices=no_slices)


class TestProbe:
    async def probe_with(
        self, handler: Callable[[httpx.Request], httpx.Response]
    ) -> tuple[Any, list[httpx.Request]]:
        seen: list[httpx.Request] = []

        def record(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return handler(request)

        async with httpx.AsyncClient(transport=httpx.MockTransport(record)) as http:
            obs = await health.probe(http, "http://web.shop.svc.cluster.local:8080/health")
        return obs, seen

    @pytest.mark.parametrize("code", [200, 204, 302, 401, 404, 499])
    async def test_any_status_below_500_is_healthy(self, code: int) -> None:
        obs, _ = await self.probe_with(lambda r: httpx.Response(code, headers={"Location": "/elsewhere"}))
        assert (obs.healthy, obs.reason, obs.message) == (
            True,
            "Healthy",
            f"Upstream responded with HTTP {code}",
        )

    @pytest.mark.parametrize("code", [500, 502, 503])
    async def test_a_5xx_status_is_unhealthy(self, code: int) -> None:
        obs, _ = await self.probe_with(lambda r: httpx.Response(code))
        assert (obs.healthy, obs.reason, obs.message) == (False, "Unhealthy", f"HTTP {code} from upstream")

    async def test_one_get_to_the_url_redirects_not_followed_with_a_two_second_timeout(self) -> None:
        _, seen = await self.probe_with(lambda r: httpx.Response(301, headers={"Location": "http://x/"}))
        assert len(seen) == 1
        assert seen[0].method == "GET"
        assert str(seen[0].url) == "http://web.shop.svc.cluster.local:8080/health"
        assert seen[0].extensions["timeout"] == {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}

    async def test_a_transport_error_is_unhealthy_with_its_text_cut_to_256(self) -> None:
        def fail(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused " + "z" * 1000, request=request)

        obs, _ = await self.probe_with(fail)
        assert (obs.healthy, obs.reason) == (False, "Unhealthy")
        assert len(obs.message) == 256
        assert "connection refused" in obs.message

    async def test_a_timeout_without_text_is_still_explained(self) -> None:
        def fail(request: httpx.Request) -> httpx.Response:
            raise httpx.ReadTimeout("", request=request)

        obs, _ = await self.probe_with(fail)
        assert not obs.healthy
        assert "ReadTimeout" in obs.message
