"""An in-process controller for integration tests: started on its own client, informers synced first."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from kube402.controller import main as controller_main
from kube402.controller.settings import Settings
from kube402.devenv.controlplane import ControlPlaneInfo
from kube402.kube.client import Kube

__all__ = ["running"]


@contextlib.asynccontextmanager
async def running(control_plane: ControlPlaneInfo, s: Settings) -> AsyncIterator[controller_main.Controller]:
    """A controller with settings ``s`` in this event loop, yielded once every informer has synced (≤ 30 s)."""
    kube = Kube.connect(kubeconfig=str(control_plane.kubeconfig))
    try:
        async with controller_main.started(kube, s) as ctl:
            await asyncio.wait_for(asyncio.gather(*(inf.synced.wait() for inf in ctl.informers)), 30)
            yield ctl
    finally:
        await kube.aclose()
