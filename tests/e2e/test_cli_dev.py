"""A fresh checkout, nothing started: `kube402 dev up` (real Traefik), a demo upstream, `sell http … --wait`,
`sell test`.

Only the CLI, as a subprocess, in an empty directory; the kubeconfig and the gateway come from the
``.kube402/dev.env`` that ``dev up`` writes (nothing is sourced). ``dev down`` stops every process it started.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import httpx
import pytest

from kube402.devenv import process

from .cli_helpers import cli, cli_env

pytestmark = pytest.mark.e2e


async def test_dev_up_then_sell_http_wait_then_sell_test(tmp_path: Path) -> None:
    env = cli_env()  # no KUBECONFIG: the CLI finds the local stack's in .kube402/dev.env
    up = (await cli("dev", "up", env=env, cwd=tmp_path, within=600)).ok()
    try:
        dev = dict(line.split("=", 1) for line in up.out.split())
        for key in (
            "KUBECONFIG",
            "KUBE402_GATEWAY_URL",
            "KUBE402_HOST_ADDRESS",
            "KUBE402_FACILITATOR_URL",
            "KUBE402_BUYER_KEY_FILE",
        ):
            assert key in dev, up.out
        key_file = Path(dev["KUBE402_BUYER_KEY_FILE"])
        assert oct((await asyncio.to_thread(key_file.stat)).st_mode & 0o777) == "0o600"
        again = (await cli("dev", "up", env=env, cwd=tmp_path, within=600)).ok()
        assert "already running" in again.err
        assert dict(line.split("=", 1) for line in again.out.split()) == dev, "idempotent: same endpoints"

        port = process.free_port(dev["KUBE402_HOST_ADDRESS"])  # upstreams listen where Traefik routes to
        served = (
            await cli("dev", "upstream", "demo", "-n", "demo", "--port", str(port), env=env, cwd=tmp_path)
        ).ok()
        assert f"Service demo/demo port {port}" in served.out
        sold = (
            await cli(
                "sell", "http", "demo", "-n", "demo", "--upstream", "demo", "--port", str(port),
                "--price", "0.001", "--wallet", dev["X402_WALLET"], "--wait",
                env=env, cwd=tmp_path,
            )
        ).ok()  # fmt: skip
        assert "ServiceOffer demo/demo created (type: http)" in sold.out
        assert "ServiceOffer demo/demo is Ready" in sold.out
        tested = (await cli("sell", "test", "demo", "-n", "demo", env=env, cwd=tmp_path)).ok()
        assert tested.out.startswith("Endpoint is live and payment-gated.")
        assert dev["KUBE402_GATEWAY_URL"] in tested.out

        async with httpx.AsyncClient() as http:
            unpaid = await http.post(
                f"{dev['KUBE402_GATEWAY_URL']}/services/demo/v1/chat/completions", json={}
            )
            supported = (await http.get(f"{dev['KUBE402_FACILITATOR_URL']}/supported")).json()
        assert unpaid.status_code == 402
        terms = json.loads(base64.b64decode(unpaid.headers["payment-required"]))["accepts"][0]
        assert terms["payTo"] == dev["X402_WALLET"] and terms["amount"] == "1000"
        assert any(k["network"] == "eip155:84532" for k in supported["kinds"])
    finally:
        state = json.loads((tmp_path / ".kube402" / "state.json").read_text())
        down = await cli("dev", "down", env=env, cwd=tmp_path)
        assert down.code == 0, str(down)
        for name, pid in state["pids"].items():
            assert not process.alive(pid), f"{name} (pid {pid}) survived dev down"
        assert not await asyncio.to_thread((tmp_path / ".kube402" / "buyer.key").exists)
