"""``sell http --wait`` progress as a user sees it: a live line on a terminal (a real pseudo-terminal here),
plain timestamped lines in a pipe, and a timeout that names the condition still False.

The upstream's health answers 500 at first, so the offer visibly waits on UpstreamHealthy; the test flips it
to 200 only after the CLI has shown that wait, and the offer then walks to Ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kube402.devenv.upstream import TestUpstream
from kube402.kube import resources
from kube402.localstack import LocalStack

from .cli_helpers import cli, cli_env

pytestmark = pytest.mark.e2e
W = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
ORDER = ["ModelReady", "UpstreamHealthy", "PaymentGateReady", "RoutePublished", "Ready"]
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")


@pytest.fixture
def sick_upstream(stack: LocalStack) -> Iterator[TestUpstream]:
    server = TestUpstream(host=stack.host_address).start()
    server.health_status = 500
    try:
        yield server
    finally:
        server.stop()


async def seller_ns(stack: LocalStack, ns: str, upstream_name: str, port: int) -> None:
    """Namespace ``ns`` with Service ``upstream_name`` (selector-less + EndpointSlice: what Traefik accepts)."""
    await stack.expose(ns, upstream_name, port)


def http_args(name: str, ns: str, port: int, *extra: str) -> list[str]:
    return [
        "sell", "http", name, "-n", ns, "--upstream", "up", "--port", str(port),
        "--wallet", W, "--price", "0.001", "--wait", *extra,
    ]  # fmt: skip


def first_index(text: str, word: str) -> int:
    i = text.find(word)
    assert i >= 0, f"{word} missing in {text!r}"
    return i


async def test_wait_on_a_terminal_shows_a_live_line(
    stack: LocalStack, sick_upstream: TestUpstream, tmp_path: Path
) -> None:
    ns = "cli-progress-tty"
    await seller_ns(stack, ns, "up", sick_upstream.port)
    master, slave = pty.openpty()
    env = cli_env(KUBECONFIG=str(stack.kubeconfig), TERM="xterm")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kube402.cli", *http_args("tty-demo", ns, sick_upstream.port),
        stdin=slave, stdout=slave, stderr=slave, env=env, cwd=tmp_path,
    )  # fmt: skip
    os.close(slave)
    seen = bytearray()
    loop = asyncio.get_running_loop()
    chunk_ready: asyncio.Queue[bytes] = asyncio.Queue()

    def readable() -> None:
        try:
            data = os.read(master, 65536)
        except OSError:
            data = b""
        chunk_ready.put_nowait(data)
        if not data:
            loop.remove_reader(master)

    loop.add_reader(master, readable)
    try:

        async def read_until(pattern: bytes, within: float) -> None:
            async with asyncio.timeout(within):
                while pattern not in seen:
                    data = await chunk_ready.get()
                    if not data:
                        raise AssertionError(f"output ended before {pattern!r}: {bytes(seen)!r}")
                    seen.extend(data)

        await read_until(b"UpstreamHealthy   False", 60)
        mark = len(seen)
        await read_until(b"waiting until Ready", 10)
        # the live line keeps redrawing (spinner + elapsed) while the offer waits on its upstream
        async with asyncio.timeout(10):
            while bytes(seen[mark:]).count(b"\r\x1b[2K") < 3:
                data = await chunk_ready.get()
                seen.extend(data)
        sick_upstream.health_status = 200
        await read_until(b"is Ready", 60)
        async with asyncio.timeout(30):
            await proc.wait()
    finally:
        with contextlib.suppress(Exception):
            loop.remove_reader(master)
        os.close(master)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = seen.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "Traceback" not in text
    assert "ServiceOffer cli-progress-tty/tty-demo created (type: http)" in text
    assert re.search(
        r"[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] cli-progress-tty/tty-demo: waiting until Ready; UpstreamHealthy is False", text
    )
    assert re.search(r"\(\d+\.\ds\)", text), "elapsed time on the live line"
    assert not STAMP.search(text.replace("\r", "\n")), "no timestamps on a terminal"
    positions = [first_index(text, f"  {c:<17} True") for c in ORDER]
    assert positions == sorted(positions), "conditions turn True in SPEC order"
    assert text.index("UpstreamHealthy   False") < text.index("UpstreamHealthy   True")


async def test_wait_in_a_pipe_prints_plain_timestamped_lines(
    stack: LocalStack, sick_upstream: TestUpstream, tmp_path: Path
) -> None:
    ns = "cli-progress-pipe"
    await seller_ns(stack, ns, "up", sick_upstream.port)
    env = cli_env(KUBECONFIG=str(stack.kubeconfig))
    run_task = asyncio.create_task(
        cli(*http_args("pipe-demo", ns, sick_upstream.port), env=env, cwd=tmp_path)
    )
    kube = stack.kube
    assert kube is not None

    async def unhealthy_seen() -> None:
        while True:
            obj = await kube.get(resources.SERVICE_OFFER, "pipe-demo", namespace=ns)
            conds = {c["type"]: c for c in ((obj or {}).get("status") or {}).get("conditions") or []}
            if conds.get("UpstreamHealthy", {}).get("status") == "False":
                return
            await asyncio.sleep(0.1)

    await asyncio.wait_for(unhealthy_seen(), 60)
    await asyncio.sleep(1.0)  # let the CLI poll (and print) the unhealthy state at least once more
    sick_upstream.health_status = 200
    run = await asyncio.wait_for(run_task, 120)
    assert run.code == 0, str(run)
    assert "\r" not in run.out and "\x1b" not in run.out, "no terminal control codes in a pipe"
    lines = run.out.splitlines()
    assert lines[0] == f"ServiceOffer {ns}/pipe-demo created (type: http)"
    assert lines[-1].startswith(f"ServiceOffer {ns}/pipe-demo is Ready")
    progress = lines[1:-1]
    assert progress and all(STAMP.match(ln) for ln in progress), progress
    assert any("UpstreamHealthy   False  Unhealthy: HTTP 500 from upstream" in ln for ln in progress), (
        progress
    )
    order = [next(i for i, ln in enumerate(progress) if f"Z {c:<17} True" in ln) for c in ORDER]
    assert order == sorted(order), progress


async def test_wait_timeout_names_the_condition_still_false(
    stack: LocalStack, sick_upstream: TestUpstream, tmp_path: Path
) -> None:
    ns = "cli-progress-timeout"
    await seller_ns(stack, ns, "up", sick_upstream.port)
    env = cli_env(KUBECONFIG=str(stack.kubeconfig))
    run = await cli(*http_args("slow-demo", ns, sick_upstream.port, "--timeout", "4"), env=env, cwd=tmp_path)
    assert run.code == 1, str(run)
    assert (
        "timed out after 4s waiting until Ready: UpstreamHealthy is still False (Unhealthy): "
        "HTTP 500 from upstream" in run.err
    ), str(run)
    assert "Traceback" not in run.out + run.err
