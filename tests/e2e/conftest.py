"""The whole story on real parts: control plane, anvil, facilitator, controller, verifier, real Traefik."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from kube402.devenv.controlplane import ControlPlaneInfo
from kube402.devenv.upstream import TestUpstream
from kube402.localstack import LocalStack


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def stack(
    control_plane: ControlPlaneInfo, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LocalStack]:
    s = LocalStack(kubeconfig=control_plane.kubeconfig, workdir=Path(tmp_path_factory.mktemp("story")))
    try:
        await s.start()
        yield s
    finally:
        await s.stop()  # also after a failed start: releases the test host and the processes started


@pytest.fixture
def upstream(stack: LocalStack) -> Iterator[TestUpstream]:
    """An upstream on the stack's host address, so a selector-less Service + EndpointSlice can name it."""
    server = TestUpstream(host=stack.host_address).start()
    try:
        yield server
    finally:
        server.stop()
