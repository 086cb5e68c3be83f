"""Test-host address blocks are claimed collision-free across processes and worktrees (devenv.netns)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kube402.devenv import netns

pytestmark = pytest.mark.integration


@pytest.fixture
def claims(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KUBE402_NETNS_CLAIMS", str(tmp_path))
    return tmp_path


def test_live_claims_are_never_handed_out_twice(claims: Path) -> None:
    got = [netns.claim_block() for _ in range(40)]
    assert len(set(got)) == 40
    assert all((claims / str(n)).read_text().strip() == str(os.getpid()) for n in got)
    for n in got:
        netns.release_block(n)
    assert not [p for p in claims.iterdir() if p.name != ".lock"]


def test_claims_from_other_processes_are_respected_and_dead_ones_reclaimed(claims: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for n in netns.BLOCKS:  # every block held by a live process except one, held by a dead PID
            (claims / str(n)).write_text(f"{holder.pid}\n")
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
        in_use = netns._blocks_in_use()
        free = next(n for n in netns.BLOCKS if n not in in_use)
        (claims / str(free)).write_text(f"{int(dead.stdout)}\n")
        script = (
            "import os; from kube402.devenv import netns; print(netns.claim_block(int(os.environ['OWNER'])))"
        )
        out = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env={**os.environ, "KUBE402_NETNS_CLAIMS": str(claims), "OWNER": str(holder.pid)},
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert int(out.stdout) == free, "the only block whose owner is gone"
        assert (claims / str(free)).read_text().strip() == str(holder.pid)
        with pytest.raises(RuntimeError, match="no free"):
            netns.claim_block()
    finally:
        holder.kill()
        holder.wait()


def test_blocks_already_configured_on_the_host_are_skipped(claims: Path) -> None:
    host = netns.TestHost()
    try:
        (claims / str(host.block)).unlink()  # as if an older allocator had made it without a claim
        got = [netns.claim_block() for _ in range(len(netns.BLOCKS) - len(netns._blocks_in_use()))]
        assert host.block not in got
    finally:
        host.close()
