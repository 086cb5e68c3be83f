"""Where the repository, the build cache and the control-plane binaries are."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

__all__ = ["cache_dir", "controlplane_bin", "repo_root", "traefik_bin"]


@functools.cache
def repo_root() -> Path:
    """The kube402 checkout ($KUBE402_REPO, else found upwards from this file)."""
    env = os.environ.get("KUBE402_REPO")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "hack" / "controlplane" / "go.mod").is_file():
            return parent
    raise RuntimeError("cannot find the kube402 checkout; set KUBE402_REPO")


def cache_dir() -> Path:
    return Path(os.environ.get("KUBE402_CACHE") or Path.home() / ".cache" / "kube402")


@functools.cache
def controlplane_bin() -> Path:
    """Directory with kube-apiserver, kube-controller-manager, kubectl and etcd; built on first use.

    ``$KUBE402_BIN_DIR`` overrides (a directory holding the four binaries).
    """
    env = os.environ.get("KUBE402_BIN_DIR")
    if env:
        return Path(env)
    script = repo_root() / "hack" / "controlplane" / "build.sh"
    out = subprocess.run([str(script)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


@functools.cache
def traefik_bin() -> Path:
    """The Traefik binary built from Go modules by ``hack/traefik/build.sh`` (on first use).

    ``$KUBE402_TRAEFIK_BIN`` overrides (a path to a Traefik v3 binary).
    """
    env = os.environ.get("KUBE402_TRAEFIK_BIN")
    if env:
        return Path(env)
    script = repo_root() / "hack" / "traefik" / "build.sh"
    out = subprocess.run([str(script)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])
