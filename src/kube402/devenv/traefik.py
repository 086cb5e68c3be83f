"""Real Traefik as the local ingress: its Gateway API and Kubernetes CRD providers on the local apiserver.

The binary is Traefik v3.7.13 built from Go modules (``hack/traefik/build.sh``). It runs on this host,
outside the cluster, and finds the apiserver through the ``KUBECONFIG`` environment variable (Traefik has no
kubeconfig flag). Its ``web`` entrypoint listens on ``127.0.0.1:<port>``; :func:`apply_gateway` creates the
GatewayClass ``traefik`` and Gateway ``traefik/traefik-gateway`` with listener ``web`` on **the same port**
(Traefik binds Gateway listeners to entrypoints by port) and waits until Traefik reports the Gateway
Programmed. kube402's HTTPRoutes name that Gateway as their parent, exactly as in a cluster.

What the real Traefik needs from the cluster (``../shared/design/TRAEFIK.md``): every Gateway API and
``traefik.io`` CRD it watches (``devenv.crds``), and backends it accepts: Services with EndpointSlices,
not ExternalName Services (see ``devenv.netns`` for the addresses such EndpointSlices point at).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import httpx

from kube402.devenv import paths, process
from kube402.kube import errors, resources
from kube402.kube.client import Kube

__all__ = [
    "CONTROLLER_NAME",
    "GATEWAY_CLASS",
    "GATEWAY_NAME",
    "GATEWAY_NAMESPACE",
    "LISTENER",
    "Traefik",
    "TraefikInfo",
    "apply_gateway",
    "argv",
    "expose",
    "start_detached",
]

CONTROLLER_NAME: Final = "traefik.io/gateway-controller"
GATEWAY_CLASS: Final = "traefik"
GATEWAY_NAMESPACE: Final = "traefik"
GATEWAY_NAME: Final = "traefik-gateway"
LISTENER: Final = "web"
FIELD_MANAGER: Final = "kube402-devenv"


@dataclasses.dataclass(frozen=True, slots=True)
class TraefikInfo:
    pid: int
    port: int
    """The ``web`` entrypoint (and Gateway listener) port on 127.0.0.1."""
    api_port: int
    """Traefik's own entrypoint (``/ping``, ``/api/...``) on 127.0.0.1."""
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def argv(binary: Path, *, port: int, api_port: int, log_level: str = "INFO") -> list[str]:
    return [
        str(binary),
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
        f"--entrypoints.web.address=127.0.0.1:{port}",
        # Drop client headers whose names alias another's (X_Payment_Status for X-Payment-Status): Traefik
        # replaces only the exact authResponseHeaders names, and CGI/WSGI-style upstreams read both alike.
        "--entrypoints.web.http.aliasHeadersStrategy=delete",
        f"--entrypoints.traefik.address=127.0.0.1:{api_port}",
        "--api.insecure=true",
        "--ping=true",
        "--providers.kubernetesgateway=true",
        "--providers.kubernetescrd=true",
        f"--log.level={log_level}",
    ]


def gateway_objects(port: int) -> list[tuple[resources.Resource, dict[str, Any]]]:
    return [
        (
            resources.NAMESPACE,
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": GATEWAY_NAMESPACE}},
        ),
        (
            resources.GATEWAYCLASS,
            {
                "apiVersion": resources.GATEWAYCLASS.api_version,
                "kind": "GatewayClass",
                "metadata": {"name": GATEWAY_CLASS},
                "spec": {"controllerName": CONTROLLER_NAME},
            },
        ),
        (
            resources.GATEWAY,
            {
                "apiVersion": resources.GATEWAY.api_version,
                "kind": "Gateway",
                "metadata": {"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE},
                "spec": {
                    "gatewayClassName": GATEWAY_CLASS,
                    "listeners": [
                        {
                            "name": LISTENER,
                            "port": port,
                            "protocol": "HTTP",
                            "allowedRoutes": {"namespaces": {"from": "All"}},
                        }
                    ],
                },
            },
        ),
    ]


def _true(obj: Mapping[str, Any] | None, ctype: str) -> bool:
    conds = ((obj or {}).get("status") or {}).get("conditions") or []
    gen = int(((obj or {}).get("metadata") or {}).get("generation") or 0)
    return any(
        c.get("type") == ctype
        and c.get("status") == "True"
        and int(c.get("observedGeneration") or gen) >= gen
        for c in conds
    )


async def apply_gateway(kube: Kube, port: int, *, pid: int | None = None, within: float = 60.0) -> None:
    """Apply GatewayClass + Gateway for ``port``; wait until Traefik reports it Accepted and Programmed."""
    for res, obj in gateway_objects(port):
        await kube.apply(res, obj)
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        if pid is not None and not process.alive(pid):
            raise RuntimeError("traefik exited before programming the Gateway; see its log")
        last = await kube.get(resources.GATEWAY, GATEWAY_NAME, namespace=GATEWAY_NAMESPACE)
        if _true(last, "Accepted") and _true(last, "Programmed"):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"Gateway {GATEWAY_NAMESPACE}/{GATEWAY_NAME} not Programmed; last status: {last!r}")


async def _wait_ping(api_port: int, pid: int, log: Path, within: float) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if not process.alive(pid):
                raise RuntimeError(f"traefik exited; see {log}")
            try:
                if (await http.get(f"http://127.0.0.1:{api_port}/ping")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError(f"traefik did not answer /ping within {within}s; see {log}")


async def start_detached(kubeconfig: Path, *, log: Path, port: int = 0, within: float = 90.0) -> TraefikInfo:
    """Start Traefik in its own session (outlives the caller), apply the Gateway, wait until it routes."""
    binary = await asyncio.to_thread(paths.traefik_bin)
    port = port or process.free_port()
    api_port = process.free_port()
    proc = process.spawn(
        argv(binary, port=port, api_port=api_port), log=log, env={"KUBECONFIG": str(kubeconfig)}
    )
    try:
        await _wait_ping(api_port, proc.pid, log, within)
        kube = Kube.connect(kubeconfig=str(kubeconfig), field_manager=FIELD_MANAGER)
        try:
            await apply_gateway(kube, port, pid=proc.pid, within=within)
        finally:
            await kube.aclose()
    except BaseException:
        process.stop(proc.pid)
        raise
    return TraefikInfo(pid=proc.pid, port=port, api_port=api_port, log=log)


class Traefik:
    """``async with Traefik(kubeconfig, log=...) as t:`` — started on entry, stopped by PID on exit."""

    def __init__(self, kubeconfig: Path, *, log: Path, port: int = 0) -> None:
        self.kubeconfig = kubeconfig
        self.log = log
        self.port = port
        self.info: TraefikInfo | None = None

    async def __aenter__(self) -> TraefikInfo:
        self.info = await start_detached(self.kubeconfig, log=self.log, port=self.port)
        return self.info

    async def __aexit__(self, *exc: object) -> None:
        if self.info is not None:
            await asyncio.to_thread(process.stop, self.info.pid)
            self.info = None


async def expose(
    kube: Kube,
    *,
    namespace: str,
    name: str,
    port: int,
    address: str,
    target_port: int | None = None,
) -> None:
    """A selector-less Service ``namespace/name:port`` whose EndpointSlice points at ``address:target_port``.

    The form of upstream real Traefik routes to (it refuses ExternalName backends): the Service has no
    selector, so no controller manages its endpoints, and the EndpointSlice (label
    ``kubernetes.io/service-name``) names the address. ``address`` must not be loopback (the apiserver
    refuses it): a network-namespace test host, or this host's end of its veth (``TestHost.gateway``).
    """
    if await kube.get(resources.NAMESPACE, namespace) is None:
        with contextlib.suppress(errors.Conflict):
            await kube.create(
                resources.NAMESPACE,
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            )
    await kube.apply(
        resources.SERVICE,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"ports": [{"port": port, "protocol": "TCP", "targetPort": target_port or port}]},
        },
    )
    await kube.apply(
        resources.ENDPOINTSLICE,
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-kube402",
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
            "ports": [{"port": target_port or port, "protocol": "TCP"}],
        },
    )
