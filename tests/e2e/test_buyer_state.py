"""The state file is never torn: SIGKILL a process writing it through the buyer's own code, in a loop."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kube402.buyer import statefile
from kube402.buyer.ledger import load_consumed
from kube402.buyer.main import Buyer, Options

pytestmark = pytest.mark.e2e

WRITER = r"""
import asyncio, sys
from pathlib import Path
from kube402.buyer import statefile
from kube402.buyer.ledger import Ledger, load_consumed
from kube402.buyer.main import Persister
from kube402.buyer.vouchers import Voucher

async def main(path: Path) -> None:
    raw = statefile.read(path)
    led = Ledger(load_consumed(raw) if raw else None)
    pool = [Voucher("0x11", "0x" + "aa" * 20, "0x" + "bb" * 20, 1, 0, 4_000_000_000, "0x%064x" % i)
            for i in range(100_000)]
    led.set_pools({"u": pool})
    persist = Persister(led, path)
    while True:  # 8 concurrent "requests" holding vouchers, each persisted before it would be sent
        held = [led.hold("u", now=1_800_000_000) for _ in range(8)]
        await asyncio.gather(*(persist(led.version) for _ in held))

asyncio.run(main(Path(sys.argv[1])))
"""


def test_state_file_survives_sigkill_during_writes(tmp_path: Path) -> None:
    path = tmp_path / "consumed.json"
    seen = 0
    rng = random.Random(402)
    for _round in range(15):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
        deadline = time.monotonic() + 30
        try:  # wait for an observable event: this round's writer has written something new
            while True:
                raw = statefile.read(path)
                if raw is not None:
                    try:
                        if len(load_consumed(raw).get("u", ())) > seen:
                            break
                    except ValueError:
                        pass  # checked strictly below, after the kill
                assert proc.poll() is None, "writer died on its own"
                assert time.monotonic() < deadline, "writer made no progress"
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.05))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        raw = statefile.read(path)
        assert raw is not None
        consumed = load_consumed(raw)  # raises StateError on a torn file
        assert len(consumed["u"]) >= seen, "a durable write was never lost"
        seen = len(consumed["u"])
        assert path.stat().st_mode & 0o777 == 0o600
    assert seen > 15 * 8
    Buyer(Options(state_file=str(path), listen="127.0.0.1:0"))  # a restart accepts the file


def test_a_corrupt_state_file_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "consumed.json"
    path.write_text('{"consumed": {"u": ["0x01"')
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kube402.cli",
            "buyer",
            "--config-dir",
            str(tmp_path),
            "--state-file",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    assert out.stdout.strip().startswith("kube402 buyer: --state-file") and "Traceback" not in out.stderr
