"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager.

The binaries are built from Go modules (``hack/controlplane``). Each environment gets free ports, fresh
credentials, an admin kubeconfig and its own directory; ``stop`` ends the processes by PID and removes the
directory when it owns it. There are no nodes: Pods never run, so kube402's processes run on the host.
The controller-manager runs only the garbage collector and the namespace controller.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from kube402.api import names
from kube402.devenv import certs, crds, paths, process
from kube402.kube import errors, resources
from kube402.kube.client import Kube

__all__ = ["ControlPlane", "ControlPlaneInfo"]


@dataclasses.dataclass(frozen=True, slots=True)
class ControlPlaneInfo:
    directory: Path
    kubeconfig: Path
    server: str
    etcd_url: str
    pids: dict[str, int]
    """component name → PID (etcd, kube-apiserver, kube-controller-manager)."""


def _kubeconfig(server: str, creds: certs.Credentials) -> dict[str, Any]:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "kube402-dev",
                "cluster": {"server": server, "certificate-authority-data": b64(creds.ca_cert)},
            }
        ],
        "users": [
            {
                "name": "kube402-admin",
                "user": {
                    "client-certificate-data": b64(creds.admin_cert),
                    "client-key-data": b64(creds.admin_key),
                },
            }
        ],
        "contexts": [{"name": "kube402-dev", "context": {"cluster": "kube402-dev", "user": "kube402-admin"}}],
        "current-context": "kube402-dev",
        "preferences": {},
    }


class ControlPlane:
    """Start with ``await start()``; stop with ``stop()``. ``keep=True`` leaves the directory in place."""

    def __init__(
        self,
        directory: Path,
        *,
        bin_dir: Path | None = None,
        controller_manager: bool = True,
        install_crds: bool = True,
        owns_directory: bool = True,
        namespaces: tuple[str, ...] = (names.SYSTEM_NAMESPACE,),
    ) -> None:
        self.directory = directory
        self.bin_dir = bin_dir
        self.controller_manager = controller_manager
        self.install_crds = install_crds
        self.owns_directory = owns_directory
        self.namespaces = namespaces
        self.info: ControlPlaneInfo | None = None
        self._pids: dict[str, int] = {}
        self._apiserver_argv: list[Any] = []

    async def start(self, *, timeout: float = 90.0) -> ControlPlaneInfo:
        bin_dir = (
            self.bin_dir if self.bin_dir is not None else await asyncio.to_thread(paths.controlplane_bin)
        )
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        logs = d / "logs"
        creds = await asyncio.to_thread(certs.generate, d)
        try:
            etcd_url = await self._start_etcd(bin_dir, d, logs, timeout)
            server = await self._start_apiserver(bin_dir, d, logs, creds, etcd_url, timeout)
            kubeconfig = d / "admin.kubeconfig"
            kubeconfig.write_text(yaml.safe_dump(_kubeconfig(server, creds)))
            kubeconfig.chmod(0o600)
            kube = Kube.connect(kubeconfig=str(kubeconfig), field_manager=crds.FIELD_MANAGER)
            try:
                await self._wait_ready(kube, timeout)
                if self.install_crds:
                    docs = await asyncio.to_thread(crds.all_crds)
                    await crds.install(kube, docs)
                for ns in self.namespaces:
                    await kube.apply(
                        resources.NAMESPACE,
                        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                    )
                # After the CRDs: the garbage collector discovers resources at start-up, and
                # would otherwise notice the CRDs only at its next 30 s discovery resync.
                if self.controller_manager:
                    self._pids["kube-controller-manager"] = process.spawn(
                        [
                            bin_dir / "kube-controller-manager",
                            "--kubeconfig",
                            kubeconfig,
                            "--controllers",
                            "garbage-collector-controller,namespace-controller",
                            "--leader-elect=false",
                            "--bind-address",
                            "127.0.0.1",
                            "--secure-port",
                            "0",
                            "--concurrent-gc-syncs",
                            "5",
                        ],
                        log=logs / "kube-controller-manager.log",
                    ).pid
            finally:
                await kube.aclose()
        except BaseException:
            self.stop()
            raise
        self.info = ControlPlaneInfo(
            directory=d, kubeconfig=kubeconfig, server=server, etcd_url=etcd_url, pids=dict(self._pids)
        )
        return self.info

    async def _start_etcd(self, bin_dir: Path, d: Path, logs: Path, timeout: float) -> str:
        client, peer = process.free_port(), process.free_port()
        url = f"http://127.0.0.1:{client}"
        peer_url = f"http://127.0.0.1:{peer}"
        self._pids["etcd"] = process.spawn(
            [
                bin_dir / "etcd",
                "--name",
                "default",
                "--data-dir",
                d / "etcd",
                "--listen-client-urls",
                url,
                "--advertise-client-urls",
                url,
                "--listen-peer-urls",
                peer_url,
                "--initial-advertise-peer-urls",
                peer_url,
                "--initial-cluster",
                f"default={peer_url}",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
            log=logs / "etcd.log",
        ).pid
        await _wait_http(f"{url}/health", timeout, self._pids["etcd"], logs / "etcd.log")
        return url

    async def _start_apiserver(
        self, bin_dir: Path, d: Path, logs: Path, creds: certs.Credentials, etcd_url: str, timeout: float
    ) -> str:
        port = process.free_port()
        server = f"https://127.0.0.1:{port}"
        self._apiserver_argv = [
            bin_dir / "kube-apiserver",
            "--etcd-servers",
            etcd_url,
            "--bind-address",
            "127.0.0.1",
            "--secure-port",
            str(port),
            "--tls-cert-file",
            creds.serving_cert,
            "--tls-private-key-file",
            creds.serving_key,
            "--client-ca-file",
            creds.ca_cert,
            "--service-account-issuer",
            server,
            "--service-account-key-file",
            creds.sa_pub,
            "--service-account-signing-key-file",
            creds.sa_key,
            "--service-cluster-ip-range",
            "10.0.0.0/24",
            "--authorization-mode",
            "RBAC",
            "--disable-admission-plugins",
            "ServiceAccount",
            "--endpoint-reconciler-type",
            "none",
            "--allow-privileged=true",
            "--watch-cache=true",
            "--v",
            "0",
        ]
        self._pids["kube-apiserver"] = process.spawn(
            self._apiserver_argv, log=logs / "kube-apiserver.log"
        ).pid
        return server

    async def _wait_ready(self, kube: Kube, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pid = self._pids["kube-apiserver"]
        last = ""
        while time.monotonic() < deadline:
            if not process.alive(pid):
                raise RuntimeError(
                    f"kube-apiserver exited; see {self.directory / 'logs' / 'kube-apiserver.log'}"
                )
            try:
                text = await kube.raw("GET", "/readyz")
                if text == "ok" or text == {"status": "ok"} or text:
                    return
            except errors.ApiError as err:
                last = str(err)
            await asyncio.sleep(0.2)
        raise TimeoutError(f"kube-apiserver not ready after {timeout}s: {last}")

    async def restart_apiserver(self, *, down_for: float = 0.0, timeout: float = 60.0) -> None:
        """Stop kube-apiserver, wait ``down_for`` seconds, start it again on the same port (etcd keeps the data)."""
        assert self.info is not None
        # Off the event loop: a graceful apiserver shutdown takes seconds, and the loop must keep serving.
        await asyncio.to_thread(process.stop, self._pids["kube-apiserver"])
        await asyncio.sleep(down_for)
        self._pids["kube-apiserver"] = process.spawn(
            self._apiserver_argv, log=self.directory / "logs" / "kube-apiserver.log"
        ).pid
        self.info.pids["kube-apiserver"] = self._pids["kube-apiserver"]
        kube = Kube.connect(kubeconfig=str(self.info.kubeconfig))
        try:
            await self._wait_ready(kube, timeout)
        finally:
            await kube.aclose()

    def stop(self) -> None:
        """Stop in reverse order; remove the directory if this object created it."""
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            pid = self._pids.pop(name, None)
            if pid:
                process.stop(pid)
        if self.owns_directory and self.directory.exists():
            shutil.rmtree(self.directory, ignore_errors=True)


async def _wait_http(url: str, timeout: float, pid: int, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if not process.alive(pid):
                raise RuntimeError(f"process {pid} exited; see {log}")
            try:
                resp = await http.get(url)
                if resp.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{url} not healthy after {timeout}s")
