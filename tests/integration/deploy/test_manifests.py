"""The shipped manifests on the real apiserver: server-side dry-run, and the controller running with exactly
the shipped RBAC (a real service-account token), reconciling an offer to Ready without a single 403."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kube402.api import v1alpha1
from kube402.devenv import paths, process
from kube402.devenv.controlplane import ControlPlaneInfo
from kube402.devenv.testing import condition, eventually
from kube402.devenv.upstream import TestUpstream
from kube402.kube import errors, resources
from kube402.kube.client import Kube

pytestmark = pytest.mark.integration

BY_KIND = {r.kind: r for r in vars(resources).values() if isinstance(r, resources.Resource)}
RBAC = {
    "ClusterRole": resources.Resource(
        "rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False
    ),
    "ClusterRoleBinding": resources.Resource(
        "rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False
    ),
    "Role": resources.Resource("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    "RoleBinding": resources.Resource("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    "ServiceAccount": resources.Resource("", "v1", "ServiceAccount", "serviceaccounts"),
}


def kustomize(directory: str = "deploy") -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(paths.controlplane_bin() / "kubectl"), "kustomize", str(paths.repo_root() / directory)],
        check=True,
        capture_output=True,
        text=True,
    )
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def resource_for(doc: dict[str, Any]) -> resources.Resource:
    return RBAC.get(doc["kind"]) or BY_KIND[doc["kind"]]


async def test_kustomization_applies_with_server_side_dry_run(kube: Kube) -> None:
    docs = kustomize()
    kinds = sorted(d["kind"] for d in docs)
    per_component = [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
    ]
    assert kinds == sorted(
        [
            "Namespace",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Service",
            *per_component,
            *per_component,
        ]
    )
    verifier = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "x402-verifier")
    assert verifier["spec"]["replicas"] == 2
    service = next(d for d in docs if d["kind"] == "Service")
    assert [p["port"] for p in service["spec"]["ports"]] == [8080, 8081]
    for doc in docs:
        applied = await kube.apply(resource_for(doc), doc, dry_run=True)
        assert applied["metadata"]["name"] == doc["metadata"]["name"]


async def sa_kubeconfig(kube: Kube, info: ControlPlaneInfo, tmp: Path, ns: str, sa: str) -> Path:
    token = await kube.raw(
        "POST",
        f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token",
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )
    admin = yaml.safe_load(info.kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    conf = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": sa, "user": {"token": token["status"]["token"]}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": sa}}],
        "current-context": "c",
    }
    path = tmp / f"{sa}.kubeconfig"
    path.write_text(yaml.safe_dump(conf))
    return path


async def test_controller_runs_with_exactly_the_shipped_rbac(
    kube: Kube, namespace: str, control_plane: ControlPlaneInfo, tmp_path: Path
) -> None:
    for doc in kustomize("deploy/controller"):
        if doc["kind"] != "Deployment":
            await kube.apply(resource_for(doc), doc)
    kubeconfig = await sa_kubeconfig(kube, control_plane, tmp_path, "x402", "serviceoffer-controller")
    sa_kube = Kube.connect(kubeconfig=str(kubeconfig))
    with pytest.raises(errors.Invalid) as denied:  # least privilege: no Secrets
        await sa_kube.list(resources.SECRET, namespace="x402")
    assert denied.value.code == 403
    await sa_kube.aclose()

    upstream = TestUpstream().start()
    port = process.free_port()
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
            "--metrics-listen",
            f"127.0.0.1:{port}",
        ],
        log=tmp_path / "controller.log",
        env={"POD_NAME": "rbac-test"},
    )
    try:
        await kube.create(
            resources.SERVICE,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "ollama", "namespace": namespace},
                "spec": {"type": "ExternalName", "externalName": "localhost"},
            },
        )
        await kube.create(
            resources.SERVICE_OFFER,
            v1alpha1.offer_manifest(
                "rbac", namespace=namespace, upstream="ollama", port=upstream.port, pay_to="0x" + "12" * 20
            ),
        )
        await eventually(
            lambda: kube.get(resources.SERVICE_OFFER, "rbac", namespace=namespace),
            until=lambda o: condition(o, "Ready") == ("True", "Reconciled"),
            timeout=40,
            what="Ready under the shipped RBAC",
        )
        await kube.delete(resources.SERVICE_OFFER, "rbac", namespace=namespace)
        await eventually(
            lambda: kube.get(resources.SERVICE_OFFER, "rbac", namespace=namespace),
            until=lambda o: o is None,
            timeout=20,
            what="deleted under the shipped RBAC",
        )
        metrics = (await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{port}/metrics")).text
        errors_seen = [
            ln
            for ln in metrics.splitlines()
            if ln.startswith('kube402_controller_reconciles_total{result="error"}')
        ]
        assert not errors_seen or float(errors_seen[0].rsplit(" ", 1)[1]) == 0, errors_seen
        log = (tmp_path / "controller.log").read_text()
        # RBAC denials read 'User "system:serviceaccount:x402:…" cannot …' (other 403s, such as writes into a
        # namespace other tests are deleting, are not permission problems).
        assert 'User \\"system:serviceaccount' not in log and "cannot" not in log, log[-2000:]
    finally:
        process.stop(proc.pid)
        upstream.stop()


async def test_verifier_runs_with_exactly_the_shipped_rbac(
    kube: Kube, namespace: str, control_plane: ControlPlaneInfo, tmp_path: Path
) -> None:
    for doc in kustomize("deploy/verifier"):
        if doc["kind"] not in ("Deployment", "Service"):
            await kube.apply(resource_for(doc), doc)
    kubeconfig = await sa_kubeconfig(kube, control_plane, tmp_path, "x402", "x402-verifier")
    sa_kube = Kube.connect(kubeconfig=str(kubeconfig))
    try:
        with pytest.raises(errors.Invalid) as denied:  # read-only: no writes to offers
            await sa_kube.merge_patch(
                resources.SERVICE_OFFER, "x", namespace=namespace, patch={"metadata": {}}
            )
        assert denied.value.code == 403
        with pytest.raises(errors.Invalid):  # only litellm-secrets, never other Secrets
            await sa_kube.get(resources.SECRET, "x402-secrets", namespace="x402")
    finally:
        await sa_kube.aclose()
    offer = v1alpha1.offer_manifest(
        f"{namespace}-v", namespace=namespace, upstream="ollama", port=11434, pay_to="0x" + "12" * 20
    )
    await kube.create(resources.SERVICE_OFFER, offer)
    await kube.apply_status(
        resources.SERVICE_OFFER,
        namespace=namespace,
        name=f"{namespace}-v",
        status={
            "conditions": [
                {
                    "type": "RoutePublished",
                    "status": "True",
                    "reason": "Reconciled",
                    "message": "x",
                    "lastTransitionTime": "2026-11-29T00:00:00Z",
                }
            ]
        },
    )
    port = process.free_port()
    proc = process.spawn(
        [
            sys.executable,
            "-m",
            "kube402.cli",
            "verifier",
            "--kubeconfig",
            str(kubeconfig),
            "--route-source",
            "kube",
            "--config",
            str(tmp_path / "absent.yaml"),
            "--listen",
            f"127.0.0.1:{port}",
            "--proxy-listen",
            "",
        ],
        log=tmp_path / "verifier.log",
    )
    try:
        async with httpx.AsyncClient() as http:

            async def readyz() -> int:
                try:
                    return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code
                except httpx.ConnectError:
                    return 0

            await eventually(readyz, timeout=30, until=lambda s: s == 200, what="verifier ready with its SA")
            resp = await http.get(
                f"http://127.0.0.1:{port}/verify", headers={"X-Forwarded-Uri": f"/services/{namespace}-v/x"}
            )
        assert resp.status_code == 402
        log = (tmp_path / "verifier.log").read_text()
        assert 'User \\"system:serviceaccount' not in log and "cannot" not in log, log[-2000:]
    finally:
        process.stop(proc.pid)
