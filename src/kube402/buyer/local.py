"""Run ``kube402 buyer`` next to a local seller: for e2e tests, benchmarks and the demo.

:class:`BuyerProcess` starts the real command as a child process (so it can be SIGKILLed and restarted on
the same state file) and waits until ``/healthz`` answers. :func:`write_pool` signs vouchers for a seller's
live terms and writes the two ConfigMaps' files into a directory, as ``kube402 buy vouchers --out`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx

from kube402.buyer import config as config_mod
from kube402.buyer import market, statefile
from kube402.buyer.vouchers import Voucher

__all__ = ["BuyerProcess", "write_pool"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BuyerProcess:
    def __init__(
        self,
        workdir: Path,
        *,
        config_dir: Path | None = None,
        kubeconfig: str | None = None,
        namespace: str | None = None,
        upstream_timeout: float | None = None,
        port: int = 0,
    ) -> None:
        self.workdir = workdir
        self.state_file = workdir / "state" / "consumed.json"
        self.config_dir = config_dir
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.upstream_timeout = upstream_timeout
        self.port = port or _free_port()
        self.log = workdir / "buyer.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        args = [sys.executable, "-m", "kube402.cli", "buyer", "--listen", f"127.0.0.1:{self.port}"]
        args += ["--state-file", str(self.state_file), "--poll-seconds", "0.2"]
        if self.config_dir is not None:
            args += ["--config-dir", str(self.config_dir)]
        if self.kubeconfig is not None:
            args += ["--kubeconfig", self.kubeconfig]
        if self.namespace is not None:
            args += ["--namespace", self.namespace]
        if self.upstream_timeout is not None:
            args += ["--upstream-timeout", str(self.upstream_timeout)]
        return args

    def spawn(self) -> None:
        """Start the child process (returns at once; :meth:`start` also waits until it is healthy)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(self.argv(), stdout=self._log, stderr=subprocess.STDOUT)

    async def start(self, *, within: float = 30.0) -> BuyerProcess:
        self.spawn()
        assert self.proc is not None
        timeout = within
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(trust_env=False, timeout=2.0) as http:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"kube402 buyer exited with {self.proc.returncode}; see {self.log}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(self.url + "/healthz")).status_code == 200:
                        return self
                if time.monotonic() > deadline:
                    raise TimeoutError(f"kube402 buyer not healthy within {timeout}s; see {self.log}")
                await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no cleanup, no final write — what a crash looks like."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None

    async def status(self) -> dict[str, Any]:
        async with httpx.AsyncClient(trust_env=False, timeout=5.0) as http:
            resp = await http.get(self.url + "/status")
            resp.raise_for_status()
            ups = resp.json()["upstreams"]
            return ups if isinstance(ups, dict) else {}

    def consumed(self) -> dict[str, set[str]]:
        from kube402.buyer.ledger import load_consumed

        raw = statefile.read(self.state_file)
        return load_consumed(raw) if raw is not None else {}


async def write_pool(
    directory: Path,
    *,
    name: str,
    url: str,
    model: str,
    account: Any,
    count: int,
    validity_seconds: int = 3600,
    chain_id: int = 84532,
) -> list[Voucher]:
    """Probe ``url``, sign ``count`` vouchers for its exact terms, add them to ``directory``'s two files."""
    p = await market.probe(url, skill=False)
    if not p.valid or p.required is None:
        raise market.MarketError(f"{url}: {p.problem}")
    req = next(r for r in p.required.accepts if r.scheme == "exact")
    signed = market.sign_vouchers(
        account, req, count=count, validity_seconds=validity_seconds, chain_id=chain_id
    )
    upstream = {
        "url": url.rstrip("/"),
        "remoteModel": model,
        "network": req.network,
        "payTo": req.pay_to,
        "asset": req.asset,
        "price": str(req.amount),
    }
    write_files(directory, name, upstream, signed)
    return signed


def write_files(directory: Path, name: str, upstream: dict[str, str], signed: list[Voucher]) -> int:
    """Merge one upstream and its vouchers into ``directory``/config.json and auths.json (atomic writes)."""
    import json

    directory.mkdir(parents=True, exist_ok=True)

    def load(p: Path) -> dict[str, Any]:
        try:
            obj = json.loads(p.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return obj if isinstance(obj, dict) else {}

    c, a = market.merge(
        load(directory / config_mod.CONFIG_KEY),
        load(directory / config_mod.AUTHS_KEY),
        name,
        upstream,
        signed,
    )
    ctext, atext = config_mod.render(c["upstreams"], a)
    statefile.write_atomic(directory / config_mod.AUTHS_KEY, atext.encode())
    statefile.write_atomic(directory / config_mod.CONFIG_KEY, ctext.encode())
    return len(a[name])
