"""`kube402 catalog` as a process: the exact ConfigMap bytes at the SPEC paths; bad flags in one sentence."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from kube402.api import names
from kube402.devenv import process
from kube402.devenv.controlplane import ControlPlaneInfo
from kube402.devenv.testing import eventually
from kube402.kube import resources
from kube402.kube.client import Kube

pytestmark = pytest.mark.integration
LABELS = {names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE}


async def test_catalog_process_serves_configmap_bytes(
    kube: Kube, namespace: str, control_plane: ControlPlaneInfo
) -> None:
    doc = '{\n  "type": "https://eips.ethereum.org/EIPS/eip-8004#registration-v1",\n  "name": "ünï"\n}\n'
    await kube.apply(
        resources.CONFIGMAP,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "so-x-registration",
                "namespace": namespace,
                "labels": {**LABELS, "obol.org/registration": "so-x-registration"},
            },
            "data": {"agent-registration.json": doc},
        },
    )
    await kube.apply(
        resources.CONFIGMAP,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "obol-skill-md",
                "namespace": namespace,
                "labels": {**LABELS, "app": "obol-skill-md"},
            },
            "data": {"skill.md": "# Obol Stack Service Catalog\n", "services.json": '{"services": []}\n'},
        },
    )
    port = process.free_port()
    log = control_plane.directory / f"catalog-{port}.log"
    proc = process.spawn(
        [
            sys.executable,
            "-m",
            "kube402.cli",
            "catalog",
            "--kubeconfig",
            str(control_plane.kubeconfig),
            "--listen",
            f"127.0.0.1:{port}",
            "--namespace",
            namespace,
        ],
        log=log,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as http:

            async def ready() -> int:
                try:
                    return (await http.get(base + "/readyz")).status_code
                except httpx.HTTPError:
                    return 0

            await eventually(ready, until=lambda c: c == 200, timeout=30, what="catalog ready")
            r = await http.get(base + "/.well-known/agent-registration.json")
            assert r.status_code == 200 and r.content == doc.encode()
            assert r.headers["content-type"] == "application/json"
            r = await http.get(base + "/skill.md")
            assert r.text == "# Obol Stack Service Catalog\n" and r.headers["content-type"].startswith(
                "text/markdown"
            )
            assert (await http.get(base + "/api/services.json")).json() == {"services": []}
            assert (await http.get(base + "/other")).status_code == 404
            assert (await http.post(base + "/skill.md")).status_code == 405
    finally:
        process.stop(proc.pid)


def test_bad_listen_is_one_sentence() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kube402.cli", "catalog", "--listen", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    assert out.stdout.strip() == "kube402 catalog: --listen must be host:port, got 'nope'"
    assert "Traceback" not in out.stderr
