"""`kube402 controller` as real processes: leader election, crash mid-reconcile, restart convergence."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kube402.api import v1alpha1
from kube402.devenv import process
from kube402.devenv.controlplane import ControlPlaneInfo
from kube402.devenv.testing import condition, eventually
from kube402.devenv.upstream import TestUpstream
from kube402.kube import resources
from kube402.kube.client import Kube

from .conftest import external_service

pytestmark = pytest.mark.integration

WALLET = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


class ControllerProcess:
    def __init__(self, info: ControlPlaneInfo, identity: str, tmp: Path, *, namespace: str) -> None:
        self.port = process.free_port()
        self.identity = identity
        self.log = tmp / f"{identity}.log"
        self.proc = process.spawn(
            [
                sys.executable,
                "-m",
                "kube402.cli",
                "controller",
                "--kubeconfig",
                str(info.kubeconfig),
                "--upstream-resolution",
                "endpointslice",
                "--route-acceptance",
                "applied",  # no Gateway controller in the integration tests
                "--metrics-listen",
                f"127.0.0.1:{self.port}",
                "--requeue-ready",
                "2",
                "--requeue-not-ready",
                "1",
                "--namespace",
                namespace,
            ],
            log=self.log,
            env={"POD_NAME": identity},
        )

    def metric(self, name: str) -> float:
        try:
            text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return -1
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            process.stop(self.proc.pid)


@pytest.fixture
def procs(control_plane: ControlPlaneInfo, tmp_path: Path) -> Iterator[list[ControllerProcess]]:
    started: list[ControllerProcess] = []
    yield started
    for p in started:
        p.stop()
    for p in started:
        assert not process.alive(p.proc.pid)


async def lease_holder(kube: Kube, ns: str) -> str:
    lease = await kube.get(resources.LEASE, "serviceoffer-controller", namespace=ns)
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


async def test_two_replicas_one_leader_and_takeover(
    kube: Kube,
    namespace: str,
    control_plane: ControlPlaneInfo,
    tmp_path: Path,
    procs: list[ControllerProcess],
    upstream: TestUpstream,
) -> None:
    # The Lease lives in this test's namespace so that the session's in-process controller is not involved.
    a = ControllerProcess(control_plane, "replica-a", tmp_path, namespace=namespace)
    procs.append(a)
    holder = await eventually(lambda: lease_holder(kube, namespace), timeout=30, what="a leader")
    assert holder == "replica-a"
    b = ControllerProcess(control_plane, "replica-b", tmp_path, namespace=namespace)
    procs.append(b)
    await eventually(
        lambda: asyncio.to_thread(b.metric, "kube402_controller_leader"),
        until=lambda v: v == 0,
        timeout=30,
        what="b up as follower",
    )
    # Work for the leader: an offer created now is seen by both replicas' informers. Once the leader has
    # reconciled it twice (the first pass and a 2 s requeue), the follower has had every chance to.
    reconciled_by_a = await asyncio.to_thread(a.metric, "kube402_controller_reconciles_total")
    await external_service(kube, namespace)
    await kube.create(
        resources.SERVICE_OFFER,
        v1alpha1.offer_manifest(
            "lead", namespace=namespace, upstream="ollama", port=upstream.port, pay_to=WALLET
        ),
    )
    await eventually(
        lambda: asyncio.to_thread(a.metric, "kube402_controller_reconciles_total"),
        until=lambda v: v >= reconciled_by_a + 2,
        timeout=30,
        what="the leader reconciling the new offer twice",
    )
    assert await lease_holder(kube, namespace) == "replica-a"
    assert a.metric("kube402_controller_leader") == 1
    assert b.metric("kube402_controller_leader") == 0
    assert b.metric("kube402_controller_reconciles_total") == 0, "the follower must not reconcile"

    a.kill()
    killed = time.monotonic()
    await eventually(
        lambda: lease_holder(kube, namespace),
        until=lambda h: h == "replica-b",
        timeout=20,
        interval=0.1,
        what="takeover by b",
    )
    takeover = time.monotonic() - killed
    assert takeover < 15, f"takeover took {takeover:.1f}s"
    await eventually(
        lambda: asyncio.to_thread(b.metric, "kube402_controller_leader"),
        until=lambda v: v == 1,
        timeout=10,
        what="b leading",
    )


async def test_killed_mid_reconcile_converges_without_duplicates(
    kube: Kube,
    namespace: str,
    control_plane: ControlPlaneInfo,
    tmp_path: Path,
    procs: list[ControllerProcess],
    upstream: TestUpstream,
) -> None:
    await external_service(kube, namespace)
    names = [f"crash-{i}" for i in range(20)]
    for name in names:
        await kube.create(
            resources.SERVICE_OFFER,
            v1alpha1.offer_manifest(
                name,
                namespace=namespace,
                upstream="ollama",
                port=upstream.port,
                pay_to=WALLET,
                annotations={"kube402.test/owner": "process-test"},
            ),
        )
    lease_ns = namespace
    first = ControllerProcess(control_plane, "crashy", tmp_path, namespace=lease_ns)
    procs.append(first)
    # Let it get going, then kill it hard while passes are in flight.
    await eventually(
        lambda: asyncio.to_thread(first.metric, "kube402_controller_reconciles_total"),
        until=lambda v: v >= 3,
        timeout=30,
        interval=0.02,
        what="some reconciles",
    )
    first.kill()
    second = ControllerProcess(control_plane, "restarted", tmp_path, namespace=lease_ns)
    procs.append(second)

    async def all_ready() -> list[Any]:
        objs, _ = await kube.list(resources.SERVICE_OFFER, namespace=namespace)
        return [o for o in objs if condition(o, "Ready") == ("True", "Reconciled")]

    await eventually(all_ready, until=lambda r: len(r) == len(names), timeout=60, what="all 20 Ready")
    objs, _ = await kube.list(resources.SERVICE_OFFER, namespace=namespace)
    for o in objs:
        assert o["metadata"]["finalizers"] == ["monetize.obol.org/finalizer"]
    for res, prefix in ((resources.MIDDLEWARE, "x402-"), (resources.HTTPROUTE, "so-")):
        items, _ = await kube.list(res, namespace=namespace)
        assert sorted(i["metadata"]["name"] for i in items) == sorted(prefix + n for n in names)
        for i in items:
            assert len(i["metadata"]["ownerReferences"]) == 1
