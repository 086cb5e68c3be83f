"""kube402's own processes on top of the control plane and anvil: facilitator, verifier, controller, ingress.

Started in the background and recorded in ``.kube402/state.json`` (so ``kube402 dev down`` stops them), on
free loopback ports kept in the state. ``kube402 dev up`` runs :func:`start` and :func:`seed`; so do
``make demo`` and ``bench/e2e.py``. Idempotent: services that are already running are left alone.

Every endpoint a seller or buyer needs lands in ``.kube402/dev.env`` (:data:`ENV_KEYS`), written from one
place (:func:`endpoints`). The ingress is the one pluggable part (:func:`start_ingress`): today the
ForwardAuth stand-in gateway of :mod:`kube402.devenv.gateway`, run by ``kube402 dev gateway``; the real
Traefik of :mod:`kube402.devenv.traefik` replaces it there, and ``KUBE402_GATEWAY_URL`` follows.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from kube402.chain import devchain
from kube402.devenv import process, stack

__all__ = [
    "BUYER_INDEX",
    "ENV_KEYS",
    "PORTS",
    "RELAYER_INDEX",
    "SELLER_INDEX",
    "demo_upstream",
    "endpoints",
    "seed",
    "start",
    "start_ingress",
    "upstream_service",
    "wait_http",
]

PORTS = ("facilitator", "verifier", "gate", "controller", "upstream", "ingress")
SELLER_INDEX = 1
BUYER_INDEX = 2
RELAYER_INDEX = 5
BUYER_FUNDS = 1_000_000_000
ENV_KEYS = (
    "KUBE402_GATEWAY_URL",
    "KUBE402_FACILITATOR_URL",
    "X402_FACILITATOR_URL",
    "KUBE402_VERIFIER_URL",
    "KUBE402_GATE_URL",
    "KUBE402_BUYER_KEY_FILE",
    "KUBE402_BUYER_ADDRESS",
    "X402_WALLET",
)


async def wait_http(url: str, what: str, *, within: float = 60) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as http:
        while True:
            try:
                if (await http.get(url)).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not come up on {url}")
            await asyncio.sleep(0.1)


def _spawn(
    directory: Path, state: stack.DevState, name: str, argv: list[str], env: dict[str, str] | None = None
) -> None:
    pid = state.pids.get(name)
    if pid and process.alive(pid):
        return
    proc = process.spawn(
        [sys.executable, "-m", "kube402.cli", "--log-level", "warning", *argv],
        log=directory / "logs" / f"{name}.log",
        env=env,
    )
    stack.add_process(directory, name, proc.pid)
    state.pids[name] = proc.pid


async def start(
    directory: Path, *, controller_workers: int = 4, upstream: bool = True, ingress: bool = True
) -> dict[str, int]:
    """Start the services of an environment that ``stack.up`` brought up; returns their ports.

    ``upstream`` also runs the demo upstream on ``ports["upstream"]`` (the demo and the benchmark sell it);
    ``ingress`` runs the gateway (:func:`start_ingress`) on ``ports["ingress"]``.
    """
    directory = _absolute(directory)
    state = stack.load(directory)
    if state is None:
        raise RuntimeError("no running environment; run `kube402 dev up` first")
    ports: dict[str, int] = dict(state.extra.get("ports") or {})
    for k in PORTS:
        ports.setdefault(k, process.free_port())
    stack.set_extra(directory, ports=ports, **endpoints(directory, ports))
    relayer = devchain.dev_account(RELAYER_INDEX)
    kubeconfig = state.kubeconfig
    _spawn(
        directory,
        state,
        "facilitator",
        [
            "facilitator",
            "--listen",
            f"127.0.0.1:{ports['facilitator']}",
            "--rpc-url",
            f"base-sepolia={state.rpc_url}",
        ],
        env={"KUBE402_FACILITATOR_KEY": relayer.key.hex()},
    )
    _spawn(
        directory,
        state,
        "verifier",
        [
            "verifier",
            "--route-source",
            "kube",
            "--kubeconfig",
            kubeconfig,
            "--config",
            str(directory / "no-pricing-file.yaml"),
            "--listen",
            f"127.0.0.1:{ports['verifier']}",
            "--proxy-listen",
            f"127.0.0.1:{ports['gate']}",
            "--upstream-resolution",
            "endpointslice",
        ],
    )
    _spawn(
        directory,
        state,
        "controller",
        [
            "controller",
            "--kubeconfig",
            kubeconfig,
            "--upstream-resolution",
            "endpointslice",
            "--workers",
            str(controller_workers),
            "--metrics-listen",
            f"127.0.0.1:{ports['controller']}",
        ],
    )
    if upstream:
        _spawn(directory, state, "upstream", ["dev", "upstream", "--port", str(ports["upstream"])])
    if ingress:
        start_ingress(directory, state, ports)
    await wait_http(f"http://127.0.0.1:{ports['facilitator']}/healthz", "facilitator")
    await wait_http(f"http://127.0.0.1:{ports['verifier']}/healthz", "verifier")
    await wait_http(f"http://127.0.0.1:{ports['controller']}/healthz", "controller")
    if upstream:
        await wait_http(f"http://127.0.0.1:{ports['upstream']}/health", "demo upstream")
    if ingress:
        await wait_http(f"http://127.0.0.1:{ports['ingress']}/", "ingress")
    return ports


def endpoints(directory: Path, ports: dict[str, int]) -> dict[str, str]:
    """Every endpoint of the environment, by its dev.env name (the one place they are named)."""
    fac = f"http://127.0.0.1:{ports['facilitator']}"
    return {
        "KUBE402_GATEWAY_URL": f"http://127.0.0.1:{ports['ingress']}",
        "KUBE402_FACILITATOR_URL": fac,
        "X402_FACILITATOR_URL": fac,
        "KUBE402_VERIFIER_URL": f"http://127.0.0.1:{ports['verifier']}",
        "KUBE402_GATE_URL": f"http://127.0.0.1:{ports['gate']}",
        "KUBE402_BUYER_KEY_FILE": str(directory / "buyer.key"),
        "KUBE402_BUYER_ADDRESS": devchain.dev_account(BUYER_INDEX).address,
        "X402_WALLET": devchain.dev_account(SELLER_INDEX).address,
    }


def start_ingress(directory: Path, state: stack.DevState, ports: dict[str, int]) -> None:
    """The ingress hook: what answers on ``KUBE402_GATEWAY_URL``.

    Today: the ForwardAuth stand-in of :mod:`kube402.devenv.gateway` (routes from the HTTPRoutes and
    Middlewares the controller renders; ExternalName backends), as the process ``kube402 dev gateway``.
    Replace this body with the real Traefik (:mod:`kube402.devenv.traefik`) listening on ``ports["ingress"]``.
    """
    _spawn(
        directory,
        state,
        "ingress",
        [
            "dev",
            "gateway",
            "--kubeconfig",
            state.kubeconfig,
            "--listen",
            f"127.0.0.1:{ports['ingress']}",
            "--verify-url",
            f"http://127.0.0.1:{ports['verifier']}/verify",
            "--proxy-url",
            f"http://127.0.0.1:{ports['gate']}",
        ],
    )


async def seed(directory: Path) -> list[str]:
    """First-run facts a seller and a buyer need: a funded buyer key file, and (only when absent) the pricing
    ConfigMap and wallet Secret pointing at the local facilitator. Returns what it did."""
    from kube402.chain import rpc, token
    from kube402.kube import resources
    from kube402.kube.client import Kube

    directory = _absolute(directory)
    state = stack.load(directory)
    if state is None:
        raise RuntimeError("no running environment; run `kube402 dev up` first")
    env = endpoints(directory, state.extra["ports"])
    done: list[str] = []
    buyer = devchain.dev_account(BUYER_INDEX)
    _write_key(Path(env["KUBE402_BUYER_KEY_FILE"]), buyer.key.hex())
    node = await rpc.connect(state.rpc_url, chain_id=84532)
    usdc = token.Token(node, state.extra["KUBE402_USDC"])
    if await usdc.balance_of(buyer.address) == 0:
        info = await devchain.setup_base_sepolia(state.rpc_url)
        await devchain.mint(info, buyer.address, BUYER_FUNDS)
        done.append(f"funded buyer {buyer.address} with {BUYER_FUNDS} atomic USDC")
    kube = Kube.connect(kubeconfig=state.kubeconfig, field_manager="kube402-dev")
    try:
        if await kube.get(resources.CONFIGMAP, "x402-pricing", namespace="x402") is None:
            seller = env["X402_WALLET"]
            text = (
                f'wallet: "{seller}"\nchain: base-sepolia\nfacilitatorURL: {env["KUBE402_FACILITATOR_URL"]}\n'
                "verifyOnly: false\n"
            )
            await kube.apply(
                resources.SECRET,
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "x402-secrets", "namespace": "x402"},
                    "data": {"WALLET_ADDRESS": base64.b64encode(seller.encode()).decode()},
                },
            )
            await kube.apply(
                resources.CONFIGMAP,
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "x402-pricing", "namespace": "x402"},
                    "data": {"pricing.yaml": text},
                },
            )
            done.append(f"pricing: wallet {seller}, facilitator {env['KUBE402_FACILITATOR_URL']}")
    finally:
        await kube.aclose()
    return done


def _absolute(directory: Path) -> Path:
    return directory if directory.is_absolute() else Path.cwd() / directory


def _write_key(path: Path, key_hex: str) -> None:
    """The buyer key file (mode 0600), written once."""
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(key_hex + "\n")


def upstream_service(name: str, namespace: str, port: int) -> dict[str, Any]:
    """The Service that stands for a demo upstream listening on 127.0.0.1:<port> of this machine.

    ExternalName ``localhost``: the controller (EndpointSlice resolution) and today's stand-in gateway both
    follow it. When the ingress becomes the real Traefik (which does not route to ExternalName backends),
    this is the one place to change: a selector-less Service plus an EndpointSlice on a netns test host.
    """
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "kube402-dev"},
        },
        "spec": {
            "type": "ExternalName",
            "externalName": "localhost",
            "ports": [{"name": "http", "port": port}],
        },
    }


async def demo_upstream(directory: Path, name: str, namespace: str, port: int) -> int:
    """Run the demo upstream on 127.0.0.1:<port> in the background (``dev down`` stops it) and apply its
    Namespace and Service; returns the port it serves on (an already running one keeps its own)."""
    from kube402.kube import resources
    from kube402.kube.client import Kube

    directory = _absolute(directory)
    state = stack.load(directory)
    if state is None:
        raise RuntimeError("no running environment; run `kube402 dev up` first")
    key = f"upstream-{namespace}-{name}"
    ports: dict[str, int] = dict(state.extra.get("upstreams") or {})
    pid = state.pids.get(key)
    if pid and process.alive(pid) and key in ports:
        port = ports[key]  # already running: keep its port (and its Service) as they are
    else:
        _spawn(directory, state, key, ["dev", "upstream", "--port", str(port)])
        ports[key] = port
        stack.set_extra(directory, upstreams=ports)
    url = f"http://127.0.0.1:{port}"
    await wait_http(f"{url}/health", f"demo upstream {namespace}/{name}", within=30)
    kube = Kube.connect(kubeconfig=state.kubeconfig, field_manager="kube402-dev")
    try:
        if await kube.get(resources.NAMESPACE, namespace) is None:
            await kube.apply(
                resources.NAMESPACE,
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            )
        await kube.apply(resources.SERVICE, upstream_service(name, namespace, port))
    finally:
        await kube.aclose()
    return port
