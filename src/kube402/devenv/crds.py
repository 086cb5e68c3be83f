"""The CRDs a kube402 cluster needs: our two, Gateway API standard, and Traefik's.

Ours come from ``deploy/crds``. Gateway API and Traefik manifests are read at setup time from their
released Go modules (``go mod download``), never committed. Traefik's Kubernetes providers wait for an
informer on every kind they know before they sync, so the cluster carries all of them: the Gateway API
kinds Traefik's Gateway provider watches (HTTP, gRPC and TLS routes, BackendTLSPolicy) and all ten
``traefik.io`` CRDs.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import yaml

from kube402.devenv import paths
from kube402.kube import errors, resources
from kube402.kube.client import Kube

__all__ = ["GATEWAY_API_VERSION", "TRAEFIK_VERSION", "all_crds", "install", "own_crds"]

GATEWAY_API_VERSION: Final = "v1.6.3"
TRAEFIK_VERSION: Final = "v3.7.13"
GATEWAY_KINDS: Final = (
    "httproutes",
    "gateways",
    "gatewayclasses",
    "referencegrants",
    "grpcroutes",
    "backendtlspolicies",
    "tlsroutes",
)
FIELD_MANAGER: Final = "kube402-devenv"


def _load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


def own_crds() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted((paths.repo_root() / "deploy" / "crds").glob("*.yaml")):
        out.extend(_load(path))
    return out


@functools.cache
def _module_dir(module: str, version: str) -> Path:
    env = {**os.environ, "GOFLAGS": "-modcacherw", "GOTOOLCHAIN": "local", "GO111MODULE": "on"}
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["go", "mod", "download", "-json", f"{module}@{version}"],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp,
        )
    info = json.loads(out.stdout)
    if info.get("Error"):
        raise RuntimeError(f"go mod download {module}@{version}: {info['Error']}")
    return Path(info["Dir"])


def third_party_crds() -> list[dict[str, Any]]:
    gw = _module_dir("sigs.k8s.io/gateway-api", GATEWAY_API_VERSION) / "config" / "crd" / "standard"
    docs: list[dict[str, Any]] = []
    for kind in GATEWAY_KINDS:
        docs.extend(_load(gw / f"gateway.networking.k8s.io_{kind}.yaml"))
    traefik = _module_dir("github.com/traefik/traefik/v3", TRAEFIK_VERSION)
    for path in sorted((traefik / "docs/content/reference/dynamic-configuration").glob("traefik.io_*.yaml")):
        docs.extend(_load(path))
    return [d for d in docs if d.get("kind") == "CustomResourceDefinition"]


def all_crds() -> list[dict[str, Any]]:
    return own_crds() + third_party_crds()


async def install(kube: Kube, docs: list[dict[str, Any]], *, timeout: float = 60.0) -> None:
    """Server-side apply every CRD and wait until each is Established."""
    for doc in docs:
        await kube.apply(resources.CRD, doc)
    deadline = time.monotonic() + timeout
    for doc in docs:
        name = doc["metadata"]["name"]
        while True:
            obj = await kube.get(resources.CRD, name)
            conds = ((obj or {}).get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Established" and c.get("status") == "True" for c in conds):
                break
            if time.monotonic() > deadline:
                raise errors.Unavailable(0, "Timeout", f"CRD {name} not Established after {timeout}s")
            await asyncio.sleep(0.1)
