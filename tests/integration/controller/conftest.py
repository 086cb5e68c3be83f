"""An in-process controller (one for this package's tests, all namespaces) and test upstreams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from kube402.controller import main as controller_main
from kube402.controller.settings import Settings
from kube402.devenv.controlplane import ControlPlaneInfo
from kube402.devenv.upstream import TestUpstream
from kube402.kube import resources
from kube402.kube.client import Kube
from tests.support.controller import running

SETTINGS = Settings(
    upstream_resolution="endpointslice",
    # No Gateway controller runs in these tests: RoutePublished once applied (the e2e tests
    # run real Traefik and the default, "ingress").
    route_acceptance="applied",
    leader_elect=False,
    metrics_listen="",
    requeue_not_ready=1.0,
    requeue_ready=2.0,
)


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def controller(control_plane: ControlPlaneInfo) -> AsyncIterator[controller_main.Controller]:
    async with running(control_plane, SETTINGS) as ctl:
        yield ctl


@pytest.fixture
def upstream() -> Iterator[TestUpstream]:
    server = TestUpstream().start()
    try:
        yield server
    finally:
        server.stop()


async def external_service(kube: Kube, namespace: str, name: str = "ollama", host: str = "localhost") -> None:
    """An ExternalName Service: resolved out of cluster to ``host`` (the test upstream on loopback)."""
    await kube.create(
        resources.SERVICE,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"type": "ExternalName", "externalName": host},
        },
    )
