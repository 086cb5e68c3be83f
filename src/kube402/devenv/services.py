"""kube402's own processes on top of ``stack.up`` (control plane, anvil, Traefik): facilitator, verifier,
controller, demo upstreams.

The facilitator requires a bearer token (:func:`token_file`, in the environment's directory); whoever writes
the pricing ConfigMap names that file as ``facilitatorTokenFile`` so the verifier sends it.

Started in the background and recorded in ``.kube402/state.json`` (so ``kube402 dev down`` stops them), on
free ports kept in the state. ``kube402 dev up`` runs :func:`start` and :func:`seed`; so do ``make demo`` and
``bench/e2e.py``. Idempotent: services that are already running are left alone.

Every endpoint a seller or buyer needs lands in ``.kube402/dev.env`` (:data:`ENV_KEYS`), written from one
place (:func:`endpoints`). The ingress is the real Traefik that ``stack.up`` starts
(:mod:`kube402.devenv.traefik`; ``KUBE402_GATEWAY_URL``). Traefik routes only to EndpointSlice addresses,
never loopback, so the verifier's proxy gate and the demo upstreams listen on the environment's test-host
address ``KUBE402_HOST_ADDRESS`` and are published as selector-less Services + EndpointSlices
(:func:`kube402.devenv.traefik.expose`).
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import sys
import time
from pathlib import Path

import httpx

from kube402.chain import devchain
from kube402.devenv import process, stack

__all__ = [
    "BUYER_INDEX",
    "ENV_KEYS",
    "ERC8004_INDEX",
    "PORTS",
    "RELAYER_INDEX",
    "SELLER_INDEX",
    "TOKEN_FILE",
    "demo_upstream",
    "endpoints",
    "seed",
    "start",
    "token_file",
    "wait_http",
    "write_token_file",
]

PORTS = ("facilitator", "verifier", "gate", "controller", "upstream", "catalog")
SELLER_INDEX = 1
BUYER_INDEX = 2
RELAYER_INDEX = 5
ERC8004_INDEX = 7
"""Dev account whose key the local controller registers with (ERC-8004); its address is in dev.env as
KUBE402_ERC8004_OWNER."""
BUYER_FUNDS = 1_000_000_000
ENV_KEYS = (
    "KUBE402_GATEWAY_URL",
    "KUBE402_FACILITATOR_URL",
    "KUBE402_FACILITATOR_TOKEN_FILE",
    "X402_FACILITATOR_URL",
    "KUBE402_VERIFIER_URL",
    "KUBE402_GATE_URL",
    "KUBE402_CATALOG_URL",
    "KUBE402_BUYER_KEY_FILE",
    "KUBE402_BUYER_ADDRESS",
    "KUBE402_ERC8004_OWNER",
    "X402_WALLET",
)
TOKEN_FILE = "facilitator.token"
"""The facilitator's bearer token in the environment's directory (``--auth-token-file`` of the facilitator,
``facilitatorTokenFile`` of the verifier's pricing config)."""


def write_token_file(path: Path) -> Path:
    """A fresh random bearer token in ``path`` (created with mode 0600); an existing file is kept."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    return path


def token_file(directory: Path) -> Path:
    """The environment's facilitator token file (created on first use)."""
    return write_token_file(directory.resolve() / TOKEN_FILE)


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


async def _expose_gate(kubeconfig: str, host: str, port: int) -> None:
    """Service ``x402/x402-verifier:8081`` (the proxy-mode HTTPRoutes' backend) → the gate's address."""
    from kube402.devenv import traefik
    from kube402.kube.client import Kube

    kube = Kube.connect(kubeconfig=kubeconfig, field_manager="kube402-devenv")
    try:
        await traefik.expose(
            kube, namespace="x402", name="x402-verifier", port=8081, address=host, target_port=port
        )
    finally:
        await kube.aclose()


def host_address(state: stack.DevState) -> str:
    """Where the gate and the demo upstreams listen: the test-host address Traefik's EndpointSlices reach."""
    return str(state.extra.get("KUBE402_HOST_ADDRESS") or "127.0.0.1")


async def start(directory: Path, *, controller_workers: int = 4, upstream: bool = True) -> dict[str, int]:
    """Start the services of an environment that ``stack.up`` brought up; returns their ports.

    ``upstream`` also runs the demo upstream on ``ports["upstream"]`` (the demo and the benchmark sell it).
    """
    directory = _absolute(directory)
    state = stack.load(directory)
    if state is None:
        raise RuntimeError("no running environment; run `kube402 dev up` first")
    ports: dict[str, int] = {k: v for k, v in (state.extra.get("ports") or {}).items() if k in PORTS}
    for k in PORTS:
        ports.setdefault(k, process.free_port())
    stack.set_extra(directory, ports=ports, **endpoints(directory, state, ports))
    relayer = devchain.dev_account(RELAYER_INDEX)
    kubeconfig = state.kubeconfig
    host = host_address(state)
    gateway_url = str(state.extra["KUBE402_GATEWAY_URL"])
    token = await asyncio.to_thread(token_file, directory)
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
            "--auth-token-file",
            str(token),
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
            f"{host}:{ports['gate']}",
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
            "--verifier-address",
            f"http://127.0.0.1:{ports['verifier']}/verify",
            "--upstream-resolution",
            "endpointslice",
            "--workers",
            str(controller_workers),
            "--metrics-listen",
            f"127.0.0.1:{ports['controller']}",
            "--registration-readiness",
            "objects",
        ],
        # issue 12: a funded anvil account as the ERC-8004 key; the public base URL is the local ingress
        # (Traefik), which serves both the offers and the documents.
        env={
            "ERC8004_PRIVATE_KEY": devchain.dev_account(ERC8004_INDEX).key.hex(),
            "ERC8004_RPC_URL": state.rpc_url,
            "AGENT_BASE_URL": gateway_url,
        },
    )
    # The document Services select pods that do not run here: the catalog serves the same ConfigMaps on the
    # host address and, behind Traefik, publishes itself as their EndpointSlices.
    catalog = ["catalog", "--kubeconfig", kubeconfig, "--listen", f"{host}:{ports['catalog']}"]
    _spawn(directory, state, "catalog", [*catalog, "--publish-endpoints"] if host != "127.0.0.1" else catalog)
    if upstream:
        _spawn(
            directory,
            state,
            "upstream",
            ["dev", "upstream", "--host", host, "--port", str(ports["upstream"])],
        )
    if host != "127.0.0.1":
        await _expose_gate(kubeconfig, host, ports["gate"])
    await wait_http(f"http://127.0.0.1:{ports['facilitator']}/healthz", "facilitator")
    await wait_http(f"http://127.0.0.1:{ports['verifier']}/healthz", "verifier")
    await wait_http(f"http://127.0.0.1:{ports['controller']}/healthz", "controller")
    if upstream:
        await wait_http(f"http://{host}:{ports['upstream']}/health", "demo upstream")
    await wait_http(f"http://{host}:{ports['catalog']}/healthz", "catalog")
    return ports


def endpoints(directory: Path, state: stack.DevState, ports: dict[str, int]) -> dict[str, str]:
    """Every endpoint of the environment, by its dev.env name (the one place they are named).

    ``KUBE402_GATEWAY_URL`` (Traefik's ``web`` entrypoint) and ``KUBE402_HOST_ADDRESS`` are recorded by
    ``stack.up``, which starts Traefik; the gateway URL is repeated here so every name a seller or buyer
    reads is listed in one place.
    """
    fac = f"http://127.0.0.1:{ports['facilitator']}"
    return {
        "KUBE402_GATEWAY_URL": str(state.extra["KUBE402_GATEWAY_URL"]),
        "KUBE402_FACILITATOR_URL": fac,
        "KUBE402_FACILITATOR_TOKEN_FILE": str(token_file(directory)),
        "X402_FACILITATOR_URL": fac,
        "KUBE402_VERIFIER_URL": f"http://127.0.0.1:{ports['verifier']}",
        "KUBE402_GATE_URL": f"http://{host_address(state)}:{ports['gate']}",
        "KUBE402_CATALOG_URL": f"http://{host_address(state)}:{ports['catalog']}",
        "KUBE402_BUYER_KEY_FILE": str(directory / "buyer.key"),
        "KUBE402_BUYER_ADDRESS": devchain.dev_account(BUYER_INDEX).address,
        "KUBE402_ERC8004_OWNER": devchain.dev_account(ERC8004_INDEX).address,
        "X402_WALLET": devchain.dev_account(SELLER_INDEX).address,
    }


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
    env = endpoints(directory, state, state.extra["ports"])
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
                f"facilitatorTokenFile: {token_file(directory)}\nverifyOnly: false\n"
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


async def demo_upstream(directory: Path, name: str, namespace: str, port: int | None) -> tuple[str, int]:
    """Run the demo upstream on the test-host address (``KUBE402_HOST_ADDRESS``) in the background (``dev
    down`` stops it) and publish it as Service ``namespace/name`` (selector-less, with an EndpointSlice to that
    address: the form Traefik routes to). Returns (address, port) it serves on; an already running one keeps
    its own port. ``port`` None: a free one."""
    from kube402.devenv import traefik
    from kube402.kube.client import Kube

    directory = _absolute(directory)
    state = stack.load(directory)
    if state is None:
        raise RuntimeError("no running environment; run `kube402 dev up` first")
    host = host_address(state)
    key = f"upstream-{namespace}-{name}"
    ports: dict[str, int] = dict(state.extra.get("upstreams") or {})
    pid = state.pids.get(key)
    if pid and process.alive(pid) and key in ports:
        port = ports[key]  # already running: keep its port (and its Service) as they are
    else:
        port = port or process.free_port(host=host)
        _spawn(directory, state, key, ["dev", "upstream", "--host", host, "--port", str(port)])
        ports[key] = port
        stack.set_extra(directory, upstreams=ports)
    await wait_http(f"http://{host}:{port}/health", f"demo upstream {namespace}/{name}", within=30)
    kube = Kube.connect(kubeconfig=state.kubeconfig, field_manager="kube402-dev")
    try:
        await traefik.expose(kube, namespace=namespace, name=name, port=port, address=host)
    finally:
        await kube.aclose()
    return host, port
