"""A controller and a kube-mode verifier, both in-process, against the real apiserver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from kube402.controller import main as controller_main
from kube402.controller.settings import Settings
from kube402.devenv import process
from kube402.devenv.controlplane import ControlPlaneInfo
from kube402.kube import resources
from kube402.kube.client import Kube
from kube402.verifier.main import Options, Verifier

PRICING = """\
wallet: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
chain: base-sepolia
facilitatorURL: http://127.0.0.1:9
guardGraceSeconds: 2
"""


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def controller(control_plane: ControlPlaneInfo) -> AsyncIterator[controller_main.Controller]:
    kube = Kube.connect(kubeconfig=str(control_plane.kubeconfig))
    try:
        settings = Settings(
            upstream_resolution="endpointslice",
            # No Gateway controller runs in these tests: RoutePublished once applied (the e2e tests
            # run real Traefik and the default, "ingress").
            route_acceptance="applied",
            leader_elect=False,
            metrics_listen="",
            requeue_not_ready=1.0,
            requeue_ready=1.0,
        )
        async with controller_main.started(kube, settings) as ctl:
            await asyncio.wait_for(asyncio.gather(*(inf.synced.wait() for inf in ctl.informers)), 30)
            yield ctl
    finally:
        await kube.aclose()


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def verifier(
    control_plane: ControlPlaneInfo, kube: Kube, tmp_path_factory: object
) -> AsyncIterator[Verifier]:
    await kube.apply(
        resources.CONFIGMAP,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "x402-pricing", "namespace": "x402"},
            "data": {"pricing.yaml": PRICING},
        },
    )
    v = Verifier(
        Options(
            config_path=str(Path("/nonexistent/pricing.yaml")),
            route_source="kube",
            kubeconfig=str(control_plane.kubeconfig),
            listen=f"127.0.0.1:{process.free_port()}",
            proxy_listen=f"127.0.0.1:{process.free_port()}",
            upstream_resolution="endpointslice",
        )
    )
    await v.start()
    try:
        yield v
    finally:
        await v.stop()
