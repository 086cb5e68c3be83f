"""Registration under exactly the shipped controller RBAC (a real service-account token): register, publish,
tombstone and delete without a single permission denial."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from kube402.chain import devchain
from kube402.chain import registry as chain_registry
from kube402.devenv import process
from kube402.devenv.controlplane import ControlPlaneInfo
from kube402.devenv.testing import eventually
from kube402.devenv.upstream import TestUpstream
from kube402.kube import resources
from kube402.kube.client import Kube

from ..deploy.test_manifests import kustomize, resource_for, sa_kubeconfig
from .conftest import BASE, PUBLISHED, make_offer, registered_logs, wait_phase

pytestmark = pytest.mark.integration


async def test_registration_under_the_shipped_rbac(
    kube: Kube,
    namespace: str,
    control_plane: ControlPlaneInfo,
    tmp_path: Path,
    upstream: TestUpstream,
    dev_chain: devchain.DevChainInfo,
    reg: chain_registry.IdentityRegistry,
    key: Any,
) -> None:
    for doc in kustomize("deploy/controller"):
        if doc["kind"] != "Deployment":
            await kube.apply(resource_for(doc), doc)
    kubeconfig = await sa_kubeconfig(kube, control_plane, tmp_path, "x402", "serviceoffer-controller")
    log = tmp_path / "controller.log"
    proc = process.spawn(
        [
            sys.executable,
            "-m",
            "kube402.cli",
            "controller",
            "--kubeconfig",
            str(kubeconfig),
            "--upstream-resolution",
            "endpointslice",
            "--registration-readiness",
            "objects",
            "--route-acceptance",
            "applied",
            "--metrics-listen",
            f"127.0.0.1:{process.free_port()}",
        ],
        log=log,
        env={
            "POD_NAME": "rbac-registration",
            "ERC8004_PRIVATE_KEY": "0x" + bytes(key.key).hex(),
            "ERC8004_RPC_URL": dev_chain.rpc_url,
            "AGENT_BASE_URL": BASE,
        },
    )
    try:
        await make_offer(kube, namespace, "rbacreg", upstream)
        done = await wait_phase(kube, namespace, "rbacreg", "Registered", wait_s=60)
        assert [str(e.agent_id) for e in await registered_logs(reg, key.address, PUBLISHED)] == [
            done["status"]["agentId"]
        ]
        catalog = await eventually(
            lambda: kube.get(resources.CONFIGMAP, "obol-skill-md", namespace="x402"),
            until=lambda c: c is not None and "rbacreg" in c["data"]["skill.md"],
            timeout=20,
        )
        assert catalog is not None
        await kube.delete(resources.SERVICE_OFFER, "rbacreg", namespace=namespace)
        await eventually(
            lambda: kube.get(resources.SERVICE_OFFER, "rbacreg", namespace=namespace),
            until=lambda o: o is None,
            timeout=40,
            what="tombstoned and deleted under the shipped RBAC",
        )
        assert (await reg.token_uri(int(done["status"]["agentId"]))).startswith(
            "data:application/json;base64,"
        )
        text = log.read_text()
        assert 'User \\"system:serviceaccount' not in text and "cannot" not in text, text[-3000:]
        assert bytes(key.key).hex() not in text, "the signing key never appears in the log"
    finally:
        process.stop(proc.pid)
