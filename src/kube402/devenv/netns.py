"""Test hosts with addresses of their own: a network namespace joined to this host by a veth pair.

The API server refuses loopback addresses in EndpointSlices, so an upstream that an EndpointSlice points at
must listen on another address. ``TestHost`` creates namespace ``k402-<id>`` with ``10.231.<n>.2/30`` on its
side and ``10.231.<n>.1/30`` on the host side (iproute2, needs CAP_NET_ADMIN), runs processes inside it, and
removes everything on ``close()``.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Sequence
from pathlib import Path

from kube402.devenv import process

__all__ = ["TestHost"]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class TestHost:
    __test__ = False

    def __init__(self) -> None:
        self.id = secrets.token_hex(3)
        self.name = f"k402-{self.id}"
        n = int(self.id, 16) % 250 + 1
        self.host_if, self.peer_if = f"k4h{self.id}", f"k4n{self.id}"
        self.address = f"10.231.{n}.2"
        self.gateway = f"10.231.{n}.1"
        self.pids: list[int] = []
        _ip("netns", "add", self.name)
        try:
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
