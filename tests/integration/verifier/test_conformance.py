"""The verifier's 402 answer passes the independent x402-conformance resource checks (P1-P7) with no error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kube402.devenv import process
from kube402.verifier.main import Options, Verifier

pytestmark = pytest.mark.integration

PRICING = """\
wallet: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
chain: base-sepolia
facilitatorURL: http://127.0.0.1:9
routes:
  - pattern: /paid/*
    price: "0.001"
    description: A paid test route
"""


async def test_x402_conformance_resource_checks_pass(tmp_path: Path) -> None:
    (tmp_path / "pricing.yaml").write_text(PRICING)
    verify, gate = process.free_port(), process.free_port()
    v = Verifier(
        Options(
            config_path=str(tmp_path / "pricing.yaml"),
            listen=f"127.0.0.1:{verify}",
            proxy_listen=f"127.0.0.1:{gate}",
            watch=False,
        )
    )
    await v.start()
    try:
        import asyncio

        out = await asyncio.to_thread(
            subprocess.run,
            [
                str(Path(sys.executable).parent / "x402conf"),
                "resource",
                "--fail-on-error",
                f"http://127.0.0.1:{gate}/paid/x",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        await v.stop()
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "All checks passed" in out.stderr
    report = json.loads(out.stdout)
    target = report["results"][0]
    assert target["http"] == 402
    checks = target["checks"]
    assert len(checks) >= 7 and all(c["pass"] for c in checks if c["severity"] == "error"), checks
