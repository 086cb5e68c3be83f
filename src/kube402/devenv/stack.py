"""``kube402 dev``: the local environment as background processes that outlive the command.

State lives in ``.kube402/`` of the working directory: ``state.json`` (component → PID, endpoints),
``dev.env`` (``KUBECONFIG=…``, ``KUBE402_RPC_URL=…``), the control plane's directory and every log.
``up`` is idempotent while the recorded processes live; ``down`` stops exactly those PIDs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kube402.devenv import process
from kube402.devenv.controlplane import ControlPlane

__all__ = ["DevState", "add_process", "down", "load", "set_extra", "status", "up"]

Progress = Callable[[str], None]
CORE = ("etcd", "kube-apiserver", "kube-controller-manager", "anvil", "traefik")
"""The processes ``up`` starts itself (the ingress too: its test-host address is tied to the apiserver's
PID); kube402's services on top are restarted one by one (``services``)."""


@dataclasses.dataclass(slots=True)
class DevState:
    directory: Path
    pids: dict[str, int]
    kubeconfig: str
    rpc_url: str
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def env_file(self) -> Path:
        return self.directory / "dev.env"

    def env_lines(self) -> list[str]:
        lines = [f"KUBECONFIG={self.kubeconfig}", f"KUBE402_RPC_URL={self.rpc_url}"]
        lines += [f"{k}={v}" for k, v in sorted(self.extra.items()) if k.isupper()]
        return lines

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "state.json").write_text(
            json.dumps(
                {
                    "pids": self.pids,
                    "kubeconfig": self.kubeconfig,
                    "rpc_url": self.rpc_url,
                    "extra": self.extra,
                },
                indent=2,
            )
        )
        self.env_file.write_text("\n".join(self.env_lines()) + "\n")


def load(directory: Path) -> DevState | None:
    path = directory / "state.json"
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    return DevState(
        directory=directory,
        pids={k: int(v) for k, v in raw["pids"].items()},
        kubeconfig=raw["kubeconfig"],
        rpc_url=raw["rpc_url"],
        extra=raw.get("extra", {}),
    )


def status(directory: Path) -> dict[str, bool]:
    """component → alive, for the processes recorded in ``directory``."""
    state = load(directory)
    if state is None:
        return {}
    return {name: process.alive(pid) for name, pid in state.pids.items()}


async def up(directory: Path, *, progress: Progress = lambda _: None) -> tuple[DevState, bool]:
    """Start (or find running) the local environment. Returns (state, started_now)."""
    directory = await asyncio.to_thread(directory.resolve)
    existing = load(directory)
    if existing is not None:
        alive = {n: process.alive(p) for n, p in existing.pids.items() if n in CORE}
        if alive and all(alive.values()):
            for name, pid in list(existing.pids.items()):
                if name not in CORE and not process.alive(pid):
                    del existing.pids[name]  # a dead service: its starter brings it back
            existing.save()
            return existing, False
        progress("previous environment is partly down; stopping its remains")
        down(directory)
    from kube402.devenv import anvil as anvil_mod

    directory.mkdir(parents=True, exist_ok=True)
    progress(
        "starting etcd, kube-apiserver and kube-controller-manager (first run builds them from Go modules)"
    )
    cp = ControlPlane(directory / "controlplane", owns_directory=False)
    pids: dict[str, int] = {}
    extra: dict[str, Any] = {}
    try:
        info = await cp.start()
        pids.update(info.pids)
        progress(f"control plane ready at {info.server}")
        progress("starting anvil (chain id 84532)")
        chain = anvil_mod.start_detached(log=directory / "logs" / "anvil.log")
        pids["anvil"] = chain.pid
        from kube402.chain import devchain

        progress("placing USDC and the ERC-8004 identity registry at their Base Sepolia addresses")
        dc = await devchain.setup_base_sepolia(chain.rpc_url)
        extra.update(
            {
                "KUBE402_USDC": dc.token,
                "KUBE402_IDENTITY_REGISTRY": dc.registry,
            }
        )
        extra.update(await _start_ingress(directory, info.kubeconfig, pids, progress))
        state = DevState(
            directory=directory,
            pids=pids,
            kubeconfig=str(info.kubeconfig),
            rpc_url=chain.rpc_url,
            extra=extra,
        )
        state.save()
    except BaseException:
        cp.stop()
        for pid in pids.values():
            process.stop(pid)
        _remove_test_host(extra)
        raise
    return state, True


async def _start_ingress(
    directory: Path, kubeconfig: Path, pids: dict[str, int], progress: Progress
) -> dict[str, Any]:
    """Real Traefik on loopback, plus a test-host address for the EndpointSlices Traefik routes to.

    Records ``KUBE402_GATEWAY_URL`` (Traefik's ``web`` entrypoint = Gateway ``traefik/traefik-gateway``
    listener ``web``) and ``KUBE402_HOST_ADDRESS`` (this host's end of a veth; bind upstreams and the
    verifier's proxy gate there and publish them as selector-less Service + EndpointSlice).
    """
    from kube402.devenv import netns, traefik

    host = netns.TestHost(owner_pid=pids["kube-apiserver"])
    found: dict[str, Any] = {
        "KUBE402_HOST_ADDRESS": host.host_address,
        "netns": {"name": host.name, "host_if": host.host_if, "block": host.block, "owner": host.owner_pid},
    }
    try:
        progress("starting Traefik v3.7.13 (first run builds it from Go modules, several minutes)")
        ingress = await traefik.start_detached(kubeconfig, log=directory / "logs" / "traefik.log")
    except BaseException:
        _remove_test_host(found)
        raise
    pids["traefik"] = ingress.pid
    progress(f"Traefik routes Gateway traefik/traefik-gateway at {ingress.url}")
    found["KUBE402_GATEWAY_URL"] = ingress.url
    return found


def _remove_test_host(extra: dict[str, Any]) -> None:
    info = extra.get("netns")
    if isinstance(info, dict):
        from kube402.devenv import netns

        netns.TestHost.remove(info["name"], info["host_if"], int(info["block"]), int(info["owner"]))


def _loaded(directory: Path) -> DevState:
    state = load(directory.resolve())
    if state is None:
        raise RuntimeError("no running environment; run `kube402 dev up` first")
    return state


def add_process(directory: Path, name: str, pid: int) -> DevState:
    """Record one more background process so that ``dev down`` stops it too."""
    state = _loaded(directory)
    state.pids[name] = pid
    state.save()
    return state


def set_extra(directory: Path, **extra: Any) -> DevState:
    """Record endpoints or other facts of the running environment in ``state.json``."""
    state = _loaded(directory)
    state.extra.update(extra)
    state.save()
    return state


def down(directory: Path) -> list[str]:
    """Stop exactly the recorded PIDs (reverse start order) and remove the state; returns what was stopped."""
    directory = directory.resolve()
    state = load(directory)
    stopped: list[str] = []
    if state is not None:
        for name, pid in reversed(list(state.pids.items())):
            if process.alive(pid):
                process.stop(pid)
                stopped.append(name)
        _remove_test_host(state.extra)
    for sub in ("controlplane", "state.json", "dev.env", "logs", "buyer.key", "buyer"):
        target = directory / sub
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        elif target.exists():
            target.unlink()
    return stopped
