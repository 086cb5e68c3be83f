"""`kube402 dev up/status/down` as a user runs it: background processes, dev.env, idempotence, clean stop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from kube402.devenv import process

pytestmark = pytest.mark.integration


def kube402(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kube402.cli", *args],
        cwd=cwd,
        capture_output=True,
        check=False,
        text=True,
        timeout=600,
    )


def test_dev_up_status_down(tmp_path: Path) -> None:
    up = kube402(tmp_path, "dev", "up")
    try:
        assert up.returncode == 0, up.stderr
        env = dict(line.split("=", 1) for line in up.stdout.split())
        assert Path(env["KUBECONFIG"]).is_file()
        state = json.loads((tmp_path / ".kube402" / "state.json").read_text())
        pids = state["pids"]
        assert set(pids) == {
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "anvil",
            "traefik",
            "facilitator",
            "verifier",
            "controller",
            "catalog",
        }
        assert all(process.alive(pid) for pid in pids.values())
        assert (tmp_path / ".kube402" / "dev.env").read_text().splitlines()[:2] == [
            f"KUBECONFIG={env['KUBECONFIG']}",
            f"KUBE402_RPC_URL={env['KUBE402_RPC_URL']}",
        ]

        chain_id = httpx.post(
            env["KUBE402_RPC_URL"], json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}
        ).json()
        assert chain_id["result"] == "0x14a34"
        assert env["KUBE402_ERC8004_OWNER"].startswith("0x"), "the local controller's ERC-8004 key owner"

        # Real Traefik on loopback, routing the Gateway's listener: nothing sold yet, so its own 404.
        gateway = env["KUBE402_GATEWAY_URL"]
        assert gateway.startswith("http://127.0.0.1:")
        assert httpx.get(f"{gateway}/services/nothing").status_code == 404
        host = env["KUBE402_HOST_ADDRESS"]
        addrs = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
        assert f"inet {host}/30" in addrs, "the test-host address is configured on this host"

        again = kube402(tmp_path, "dev", "up")
        assert again.returncode == 0 and "already running" in again.stderr
        assert json.loads((tmp_path / ".kube402" / "state.json").read_text())["pids"] == pids

        status = kube402(tmp_path, "dev", "status")
        assert status.returncode == 0 and status.stdout.count("running") == len(pids)

        down = kube402(tmp_path, "dev", "down")
        assert down.returncode == 0, down.stderr
        for name, pid in pids.items():
            assert not process.alive(pid), f"{name} (pid {pid}) survived dev down"
        assert not (tmp_path / ".kube402" / "controlplane").exists()
        addrs = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
        assert f"inet {host}/" not in addrs, "dev down removed the test host"
        assert kube402(tmp_path, "dev", "status").returncode == 1

    finally:  # a failed assertion must not leave the environment running
        kube402(tmp_path, "dev", "down")
