"""kube402's own processes on top of ``kube402 dev up``: facilitator, verifier, controller, demo upstream.

The facilitator requires a bearer token (:func:`token_file`, in the environment's directory); whoever writes
the pricing ConfigMap names that file as ``facilitatorTokenFile`` so the verifier sends it.

Started in the background and recorded in ``.kube402/state.json`` (so ``kube402 dev down`` stops them), on
free loopback ports kept in the state. Used by ``make demo`` and ``bench/e2e.py``. Idempotent: services that
are already running are left alone.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from pathlib import Path

import httpx

from kube402.chain import devchain
from kube402.devenv import process, stack

__all__ = ["PORTS", "RELAYER_INDEX", "TOKEN_FILE", "start", "token_file", "wait_http", "write_token_file"]

PORTS = ("facilitator", "verifier", "gate", "controller", "upstream")
RELAYER_INDEX = 5
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


async def wait_http(url: str, what: str, *, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
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


async def start(directory: Path, *, controller_workers: int = 4) -> dict[str, int]:
    """Start the services of an environment that ``stack.up`` brought up; returns their ports."""
    directory = await asyncio.to_thread(directory.resolve)
    state = stack.load(directory)
    if state is None:
        raise RuntimeError("no running environment; run `kube402 dev up` first")
    ports: dict[str, int] = state.extra.get("ports") or {k: process.free_port() for k in PORTS}
    stack.set_extra(directory, ports=ports)
    relayer = devchain.dev_account(RELAYER_INDEX)
    kubeconfig = state.kubeconfig
    # Traefik routes only to EndpointSlice addresses, never loopback: the gate and the demo upstream
    # listen on the environment's test-host address (see devenv.netns, devenv.traefik).
    host = str(state.extra.get("KUBE402_HOST_ADDRESS") or "127.0.0.1")
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
        ],
    )
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
    await wait_http(f"http://{host}:{ports['upstream']}/health", "demo upstream")
    return ports
