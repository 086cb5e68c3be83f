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
from kube402.devenv.controlplane import ControlPlane, ControlPlaneInfo
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
    "NetworkPolicy": resources.Resource("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies"),
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
            "NetworkPolicy",
            *per_component,
            *per_component,
        ]
    )
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy")
    assert policy["spec"]["podSelector"] == {"matchLabels": {"app": "x402-verifier"}}
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}}}
    ]
    assert sorted(p["port"] for p in rule["ports"]) == [8080, 8081]
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
            "--route-acceptance",
            "applied",  # no Gateway controller in the integration tests
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
            seen: list[int] = []

            async def verify() -> int:
                r = await http.get(
                    f"http://127.0.0.1:{port}/verify",
                    headers={"X-Forwarded-Uri": f"/services/{namespace}-v/x"},
                )
                seen.append(r.status_code)
                return r.status_code

            # Once in a full-suite run on a loaded machine the first answer after /readyz was a 403 (the
            # offer not yet in the table; not reproduced alone): it must become the 402 and never be a 200.
            await eventually(verify, timeout=10, until=lambda s: s == 402, what="the offer priced")
        assert 200 not in seen, seen
        log = (tmp_path / "verifier.log").read_text()
        assert 'User \\"system:serviceaccount' not in log and "cannot" not in log, log[-2000:]
    finally:
        process.stop(proc.pid)


def test_deployments_run_the_image_make_image_builds() -> None:
    """The Deployments' image and the kustomize override name the reference ``hack/image/build.sh`` tags."""
    root = paths.repo_root()
    version = next(
        ln.split('"')[1]
        for ln in (root / "pyproject.toml").read_text().splitlines()
        if ln.startswith("version")
    )
    script = (root / "hack" / "image" / "build.sh").read_text()
    assert "ref=${KUBE402_IMAGE:-ghcr.io/kube402/kube402:$version}" in script
    want = f"ghcr.io/kube402/kube402:{version}"
    kustomization = yaml.safe_load((root / "deploy" / "kustomization.yaml").read_text())
    (override,) = kustomization["images"]
    assert f"{override['newName']}:{override['newTag']}" == want
    images = [
        c["image"]
        for d in kustomize()
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
    ]
    assert images == [want, want]


async def test_one_command_installs_into_an_empty_cluster(tmp_path: Path) -> None:
    """``kubectl apply --server-side -k deploy/`` on a fresh apiserver (no CRDs): dry-run, then for real."""
    cp = ControlPlane(tmp_path / "cp", install_crds=False, controller_manager=False, namespaces=())
    info = await cp.start()
    try:
        kubectl = str(paths.controlplane_bin() / "kubectl")
        env = {"KUBECONFIG": str(info.kubeconfig), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
        deploy = str(paths.repo_root() / "deploy")

        def run(*args: str) -> str:
            out = subprocess.run([kubectl, *args], capture_output=True, text=True, env=env, timeout=120)
            assert out.returncode == 0, out.stderr
            return out.stdout

        # (A server-side dry-run cannot precede the first install: its namespace does not exist yet. The
        # dry-run against a cluster that has it is test_kustomization_applies_with_server_side_dry_run.)
        real = await asyncio.to_thread(run, "apply", "--server-side", "-k", deploy)
        applied = {ln.split()[0] for ln in real.splitlines() if ln.strip()}
        assert {
            "namespace/x402",
            "customresourcedefinition.apiextensions.k8s.io/serviceoffers.obol.org",
            "customresourcedefinition.apiextensions.k8s.io/registrationrequests.obol.org",
            "deployment.apps/serviceoffer-controller",
            "deployment.apps/x402-verifier",
            "service/x402-verifier",
            "networkpolicy.networking.k8s.io/x402-verifier-ingress-only",
            "clusterrole.rbac.authorization.k8s.io/serviceoffer-controller",
            "clusterrole.rbac.authorization.k8s.io/x402-verifier",
        } <= applied, real
        await asyncio.to_thread(
            run, "wait", "--for=condition=Established", "--timeout=60s", "crd/serviceoffers.obol.org"
        )
        dry = await asyncio.to_thread(run, "apply", "--server-side", "--dry-run=server", "-k", deploy)
        assert dry.count("serverside-applied (server dry run)") == len(applied), dry
        # Idempotent: a second apply changes nothing.
        again = await asyncio.to_thread(run, "apply", "--server-side", "-k", deploy)
        assert again.count("serverside-applied") == len(applied), again
    finally:
        cp.stop()
