"""Test hosts with addresses of their own: a network namespace joined to this host by a veth pair.

The API server refuses loopback addresses in EndpointSlices, and real Traefik refuses ExternalName Service
backends, so an upstream that an EndpointSlice points at must listen on another address. ``TestHost``
creates namespace ``k402-<id>`` with ``10.231.<n>.2/30`` on its side and ``10.231.<n>.1/30`` on the host
side (iproute2, needs CAP_NET_ADMIN), runs processes inside it, and removes everything on ``close()``.

Both ends are usable: processes inside the namespace listen on ``address``; processes of this host (a test
upstream thread, the verifier's proxy gate) can bind ``gateway``, the host end, which is a local,
non-loopback address of this host that Traefik, the controller's probe and the apiserver's EndpointSlice
validation all accept.

Allocation is collision-safe across processes and worktrees of one machine: block ``n`` is claimed under
an exclusive lock in ``$KUBE402_NETNS_CLAIMS`` (default ``/run/kube402-netns``) by a file naming the
owner's PID; claims of dead owners are reclaimed, and blocks that already have an address on this host
(e.g. made by an older allocator) are skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import re
import secrets
import subprocess
from collections.abc import Sequence
from pathlib import Path

from kube402.devenv import process

__all__ = ["TestHost", "claim_block", "release_block"]

BLOCKS = range(1, 251)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _claims_dir() -> Path:
    d = Path(os.environ.get("KUBE402_NETNS_CLAIMS") or "/run/kube402-netns")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _blocks_in_use() -> set[int]:
    """Third octets of every 10.231.x.y address configured on this host (any interface)."""
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, timeout=10)
    return {int(m) for m in re.findall(r"inet 10\.231\.(\d+)\.\d+", out.stdout)}


def _owner(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def claim_block(owner_pid: int | None = None) -> int:
    """Claim a free 10.231.<n>.0/30 block for ``owner_pid`` (default: this process); returns ``n``."""
    owner = owner_pid or os.getpid()
    d = _claims_dir()
    with open(d / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        in_use = _blocks_in_use()
        candidates = list(BLOCKS)
        random.shuffle(candidates)
        for n in candidates:
            path = d / str(n)
            holder = _owner(path) if path.exists() else 0
            if holder and process.alive(holder):
                continue
            if n in in_use:
                continue
            path.write_text(f"{owner}\n")
            return n
    raise RuntimeError(f"no free 10.231.x.0/30 test block (claims in {d})")


def release_block(n: int, owner_pid: int | None = None) -> None:
    """Give block ``n`` back (only if ``owner_pid`` still holds it)."""
    owner = owner_pid or os.getpid()
    d = _claims_dir()
    with open(d / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = d / str(n)
        if path.exists() and _owner(path) == owner:
            path.unlink()


class TestHost:
    """A namespace with ``address`` (inside) and ``gateway`` (this host's end of the veth)."""

    __test__ = False

    def __init__(self, *, owner_pid: int | None = None) -> None:
        self.owner_pid = owner_pid or os.getpid()
        self.block = claim_block(self.owner_pid)
        self.id = secrets.token_hex(3)
        self.name = f"k402-{self.id}"
        n = self.block
        self.host_if, self.peer_if = f"k4h{self.id}", f"k4n{self.id}"
        self.address = f"10.231.{n}.2"
        self.gateway = f"10.231.{n}.1"
        self.pids: list[int] = []
        try:
            _ip("netns", "add", self.name)
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.peer_if)
            _ip("link", "set", self.peer_if, "netns", self.name)
            _ip("addr", "add", f"{self.gateway}/30", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            _ip("netns", "exec", self.name, "ip", "addr", "add", f"{self.address}/30", "dev", self.peer_if)
            _ip("netns", "exec", self.name, "ip", "link", "set", self.peer_if, "up")
            _ip("netns", "exec", self.name, "ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    @property
    def host_address(self) -> str:
        """This host's end of the veth: bind host processes here to make them EndpointSlice targets."""
        return self.gateway

    def spawn(self, argv: Sequence[str], *, log: Path) -> int:
        pid = process.spawn(["ip", "netns", "exec", self.name, *argv], log=log).pid
        self.pids.append(pid)
        return pid

    def close(self) -> None:
        for pid in self.pids:
            process.stop(pid)
        self.pids.clear()
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, check=False, timeout=10)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False, timeout=10)
        with contextlib.suppress(OSError):
            release_block(self.block, self.owner_pid)

    @classmethod
    def remove(cls, name: str, host_if: str, block: int, owner_pid: int) -> None:
        """Tear down a host made by another process (``kube402 dev down``)."""
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False, timeout=10)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False, timeout=10)
        with contextlib.suppress(OSError):
            release_block(block, owner_pid)
