"""Run ``kube402`` as a user does: a subprocess, its exit code, stdout and stderr (async: the in-process
controller and verifier of the ``stack`` fixture share the test's event loop and must keep running)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["Run", "cli", "cli_env"]

SCRUB = ("KUBECONFIG", "X402_WALLET", "X402_FACILITATOR_URL", "KUBE402_GATEWAY_URL", "KUBE402_DEBUG")


@dataclasses.dataclass
class Run:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"kube402 {' '.join(self.args)} → {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"

    def ok(self) -> Run:
        assert self.code == 0, str(self)
        assert "Traceback" not in self.out + self.err, str(self)
        return self


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


async def cli(
    *args: str,
    env: Mapping[str, str],
    cwd: Path,
    stdin: bytes | None = None,
    within: float = 300.0,
) -> Run:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kube402.cli",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), within)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Run(tuple(args), proc.returncode, out.decode(), err.decode())
