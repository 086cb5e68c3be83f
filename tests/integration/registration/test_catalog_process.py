"""`kube402 catalog` as a process: the exact ConfigMap bytes at the SPEC paths; bad flags in one sentence."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import httpx
import pytest

from kube402.api import names
from kube402.devenv import netns, process
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


def test_publish_endpoints_on_loopback_is_one_sentence() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kube402.cli", "catalog", "--listen", "127.0.0.1:8080", "--publish-endpoints"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    assert out.stdout.strip() == "kube402 catalog: --publish-endpoints needs a non-loopback --listen address"
    assert "Traceback" not in out.stderr


def _service(namespace: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 8080, "targetPort": 8080, "protocol": "TCP"}],
        },
    }


async def test_publish_endpoints_points_document_services_at_the_catalog(
    kube: Kube, namespace: str, control_plane: ControlPlaneInfo
) -> None:
    """Services that appear after the start get an EndpointSlice → the catalog's address and port, under the
    Service's port name; other kube402 Services do not; the slice goes with its Service."""
    host = await asyncio.to_thread(netns.TestHost)
    port = process.free_port(host.host_address)
    proc = process.spawn(
        [
            sys.executable,
            "-m",
            "kube402.cli",
            "catalog",
            "--kubeconfig",
            str(control_plane.kubeconfig),
            "--listen",
            f"{host.host_address}:{port}",
            "--namespace",
            namespace,
            "--publish-endpoints",
        ],
        log=control_plane.directory / f"catalog-{port}.log",
    )
    try:
        async with httpx.AsyncClient() as http:

            async def ready() -> int:
                try:
                    return (await http.get(f"http://{host.host_address}:{port}/readyz")).status_code
                except httpx.HTTPError:
                    return 0

            await eventually(ready, until=lambda c: c == 200, timeout=30, what="catalog ready")
        # First a kube402 Service that is not a document's: its event precedes the others' (one watch, one
        # queue), so once their slices exist this one was seen and skipped.
        await kube.apply(resources.SERVICE, _service(namespace, "so-x-upstream", dict(LABELS)))
        reg_labels = {**LABELS, "obol.org/registration": "so-x-registration"}
        await kube.apply(resources.SERVICE, _service(namespace, "so-x-registration", reg_labels))
        await kube.apply(
            resources.SERVICE, _service(namespace, "obol-skill-md", {**LABELS, "app": "obol-skill-md"})
        )
        for svc in ("so-x-registration", "obol-skill-md"):

            async def slice_of(svc: str = svc) -> dict[str, Any] | None:
                return await kube.get(resources.ENDPOINTSLICE, f"{svc}-kube402-catalog", namespace=namespace)

            eps = await eventually(
                slice_of, until=lambda o: o is not None, timeout=20, what=f"slice for {svc}"
            )
            assert eps is not None
            assert eps["metadata"]["labels"] == {
                "kubernetes.io/service-name": svc,
                "endpointslice.kubernetes.io/managed-by": "kube402-catalog",
            }
            assert eps["endpoints"][0]["addresses"] == [host.host_address]
            assert eps["ports"] == [{"name": "http", "port": port, "protocol": "TCP"}]
        items, _ = await kube.list(resources.ENDPOINTSLICE, namespace=namespace)
        assert {
            o["metadata"]["name"] for o in items if o["metadata"]["name"].endswith("-kube402-catalog")
        } == {
            "so-x-registration-kube402-catalog",
            "obol-skill-md-kube402-catalog",
        }
    finally:
        process.stop(proc.pid)
        await asyncio.to_thread(host.close)
