"""Upstream resolution through EndpointSlices, with a test host that has an address of its own (netns)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kube402.api import v1alpha1
from kube402.controller.main import Controller
from kube402.devenv.netns import TestHost
from kube402.devenv.testing import condition, eventually
from kube402.kube import resources
from kube402.kube.client import Kube

pytestmark = pytest.mark.integration


@pytest.fixture
def test_host(tmp_path: Path) -> Iterator[TestHost]:
    host = TestHost()
    try:
        host.spawn(
            [
                sys.executable,
                "-m",
                "kube402.cli",
                "dev",
                "upstream",
                "--host",
                host.address,
                "--port",
                "8080",
            ],
            log=tmp_path / "upstream.log",
        )
        yield host
    finally:
        host.close()


def endpoint_slice(ns: str, address: str, *, ready: bool) -> dict[str, object]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "ollama-abcde",
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": "ollama"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": ready}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


async def test_offer_reaches_its_upstream_through_an_endpointslice(
    kube: Kube, namespace: str, controller: Controller, test_host: TestHost
) -> None:
    await kube.create(
        resources.SERVICE,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "ollama", "namespace": namespace},
            "spec": {"ports": [{"name": "http", "port": 11434, "targetPort": 8080}]},
        },
    )
    await kube.apply(resources.ENDPOINTSLICE, endpoint_slice(namespace, test_host.address, ready=True))
    await kube.create(
        resources.SERVICE_OFFER,
        v1alpha1.offer_manifest(
            "eps", namespace=namespace, upstream="ollama", port=11434, pay_to="0x" + "ab" * 20
        ),
    )

    async def offer() -> dict[str, Any] | None:
        return await kube.get(resources.SERVICE_OFFER, "eps", namespace=namespace)

    obj = await eventually(
        offer,
        until=lambda o: condition(o, "Ready") == ("True", "Reconciled"),
        timeout=30,
        what="Ready through the EndpointSlice",
    )
    assert condition(obj, "UpstreamHealthy") == ("True", "Healthy")

    # The endpoint goes not-ready: the slice update alone (no edit to the offer) withdraws the route.
    await kube.apply(resources.ENDPOINTSLICE, endpoint_slice(namespace, test_host.address, ready=False))
    obj = await eventually(
        offer,
        until=lambda o: condition(o, "UpstreamHealthy")[0] == "False",
        timeout=30,
        what="unhealthy without a ready endpoint",
    )
    assert "no ready endpoint" in obj["status"]["conditions"][1]["message"]  # type: ignore[index]
    assert await kube.get(resources.HTTPROUTE, "so-eps", namespace=namespace) is None
