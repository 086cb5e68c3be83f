"""pytest fixtures for the real local environment (load with ``pytest_plugins``).

* ``control_plane`` (session): etcd + kube-apiserver + kube-controller-manager with all CRDs installed.
  ``$KUBE402_TEST_KUBECONFIG`` points the tests at an already running environment instead.
* ``kube`` (session): a :class:`kube402.kube.client.Kube` for that cluster.
* ``namespace`` (function): a fresh namespace per test, deleted afterwards.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from kube402.devenv.controlplane import ControlPlane, ControlPlaneInfo
from kube402.kube import resources
from kube402.kube.client import Kube


@pytest.fixture(scope="session")
def _controlplane_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="kube402-cp-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest_asyncio.fixture(scope="session")
async def control_plane_handle(
    request: pytest.FixtureRequest, _controlplane_dir: Path
) -> AsyncIterator[ControlPlane | None]:
    """The running ControlPlane (None when the tests use an existing cluster)."""
    existing = os.environ.get("KUBE402_TEST_KUBECONFIG")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if existing:
        kube = Kube.connect(kubeconfig=existing)
        version = await kube.version()
        await kube.aclose()
        if reporter:
            reporter.write_line(f"kube-apiserver {version.get('gitVersion')} (existing, {existing})")
        yield None
        return
    cp = ControlPlane(_controlplane_dir, owns_directory=False)
    info = await cp.start()
    try:
        kube = Kube.connect(kubeconfig=str(info.kubeconfig))
        version = await kube.version()
        await kube.aclose()
        if reporter:
            reporter.write_line(
                f"\nkube-apiserver {version.get('gitVersion')} ({version.get('goVersion')}) at {info.server}, "
                f"pids {info.pids}"
            )
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def control_plane(control_plane_handle: ControlPlane | None) -> ControlPlaneInfo:
    """etcd + kube-apiserver + kube-controller-manager with all CRDs (or $KUBE402_TEST_KUBECONFIG)."""
    if control_plane_handle is None:
        existing = os.environ["KUBE402_TEST_KUBECONFIG"]
        return ControlPlaneInfo(
            directory=Path(existing).parent, kubeconfig=Path(existing), server="", etcd_url="", pids={}
        )
    assert control_plane_handle.info is not None
    return control_plane_handle.info


@pytest_asyncio.fixture(scope="session")
async def kube(control_plane: ControlPlaneInfo) -> AsyncIterator[Kube]:
    client = Kube.connect(kubeconfig=str(control_plane.kubeconfig), field_manager="kube402-tests")
    try:
        yield client
    finally:
        await client.aclose()


@pytest_asyncio.fixture
async def namespace(kube: Kube) -> AsyncIterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    await kube.create(
        resources.NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    try:
        yield name
    finally:
        await kube.delete(resources.NAMESPACE, name)
