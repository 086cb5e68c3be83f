"""Start and stop a local anvil (the EVM dev chain from npm ``@foundry-rs/anvil``) that answers as Base Sepolia.

Why: tests and ``kube402 dev up`` need a real chain with chain id 84532 (x402's ``eip155:84532`` then works
unchanged). The binary is executed directly (``npx anvil`` costs a second and an extra node process), on
127.0.0.1 and a free port, in its own session, logging to a file. Ready means ``eth_chainId`` answers
``0x14a34``. Stopping is by PID: SIGTERM, a bounded wait, then SIGKILL.

Two ways to use it: :class:`Anvil` ties the process to a ``with`` block or explicit start/stop (pytest
fixtures); :func:`start_detached` returns an :class:`AnvilProcess` (PID, URL) and leaves the chain running for
a caller that records the PID and later calls :func:`stop`. This module speaks JSON-RPC only to probe
readiness (stdlib urllib); chain logic lives in ``kube402.chain``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from kube402.devenv import paths, process

__all__ = ["CHAIN_ID", "Anvil", "AnvilError", "AnvilProcess", "binary", "start_detached", "stop"]

CHAIN_ID: Final = 84532
"""Base Sepolia's chain id; anvil's default would be 31337."""
_BINARY_IN_REPO: Final = Path("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
_PORT_ATTEMPTS: Final = 3


class AnvilError(RuntimeError):
    """anvil could not be found, did not start, or did not become ready."""


@dataclasses.dataclass(frozen=True, slots=True)
class AnvilProcess:
    """A running anvil, described well enough to find and stop it from another process."""

    pid: int
    port: int
    rpc_url: str
    log: Path


def binary() -> Path:
    """``$KUBE402_ANVIL`` if set, else the npm-installed binary under the repository's node_modules/."""
    override = os.environ.get("KUBE402_ANVIL")
    path = Path(override) if override else paths.repo_root() / _BINARY_IN_REPO
    if not os.access(path, os.X_OK):
        raise AnvilError(f"anvil not found or not executable at {path} (npm ci, or set KUBE402_ANVIL)")
    return path


def _chain_id(rpc_url: str, *, timeout: float) -> int | None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    request = urllib.request.Request(rpc_url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(json.loads(response.read())["result"], 16)
    except (OSError, ValueError, KeyError, urllib.error.URLError):
        return None


def _log_tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_ready(proc: AnvilProcess, *, chain_id: int, timeout: float) -> bool:
    """True once ``eth_chainId`` answers ``chain_id``; False if the process died (e.g. port taken)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive(proc.pid):
            return False
        answer = _chain_id(proc.rpc_url, timeout=1.0)
        if answer == chain_id:
            return True
        if answer is not None:
            stop(proc.pid)
            raise AnvilError(f"anvil at {proc.rpc_url} answers chain id {answer}, expected {chain_id}")
        time.sleep(0.02)
    stop(proc.pid)
    raise AnvilError(
        f"anvil did not answer eth_chainId within {timeout:g}s; log tail:\n{_log_tail(proc.log)}"
    )


def start_detached(
    *,
    log: Path,
    port: int | None = None,
    chain_id: int = CHAIN_ID,
    extra_args: Sequence[str] = (),
    timeout: float = 15.0,
) -> AnvilProcess:
    """Start anvil in its own session and return once it is ready; it keeps running after this process exits.

    ``port`` None picks a free one (retrying if another process grabs it first). ``extra_args`` go to anvil as
    is (e.g. ``["--state", file]``). The caller owns the PID and stops it with :func:`stop`.
    """
    exe = binary()
    attempts = 1 if port is not None else _PORT_ATTEMPTS
    for _ in range(attempts):
        chosen = port if port is not None else process.free_port()
        argv: list[str | os.PathLike[str]] = [
            exe,
            "--host",
            "127.0.0.1",
            "--port",
            str(chosen),
            "--chain-id",
            str(chain_id),
            *extra_args,
        ]
        popen = process.spawn(argv, log=log)
        proc = AnvilProcess(pid=popen.pid, port=chosen, rpc_url=f"http://127.0.0.1:{chosen}", log=log)
        if _wait_ready(proc, chain_id=chain_id, timeout=timeout):
            return proc
        stop(proc.pid)
    raise AnvilError(f"anvil exited before becoming ready ({attempts} attempts); log tail:\n{_log_tail(log)}")


def stop(pid: int, *, timeout: float = 10.0) -> None:
    """SIGTERM anvil's process group, wait up to ``timeout``, then SIGKILL. A gone PID is fine."""
    process.stop(pid, timeout=timeout)


class Anvil:
    """An anvil whose lifetime the caller manages: ``start()``/``stop()`` or ``with Anvil(log=…) as chain:``."""

    def __init__(
        self, *, log: Path, port: int | None = None, chain_id: int = CHAIN_ID, extra_args: Sequence[str] = ()
    ) -> None:
        self._log = log
        self._port = port
        self._chain_id = chain_id
        self._extra_args = tuple(extra_args)
        self._proc: AnvilProcess | None = None

    def start(self) -> AnvilProcess:
        if self._proc is not None:
            raise AnvilError(f"already started (pid {self._proc.pid})")
        self._proc = start_detached(
            log=self._log, port=self._port, chain_id=self._chain_id, extra_args=self._extra_args
        )
        return self._proc

    def stop(self) -> None:
        """Stop the process if running; safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop(proc.pid)

    @property
    def process(self) -> AnvilProcess:
        if self._proc is None:
            raise AnvilError("anvil is not running")
        return self._proc

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def rpc_url(self) -> str:
        return self.process.rpc_url

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
