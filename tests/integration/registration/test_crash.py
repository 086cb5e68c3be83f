"""No duplicate mint, ever: ``kube402 controller`` processes SIGKILLed at each step of the registration state
machine, then restarted (or replaced by a second replica); exactly one ``Registered`` event for the owner and
URI at the end, adopted by the RegistrationRequest and copied into the offer."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kube402.chain import devchain, rpc
from kube402.chain import registry as chain_registry
from kube402.devenv import process
from kube402.devenv.controlplane import ControlPlaneInfo
from kube402.devenv.testing import condition, eventually
from kube402.devenv.upstream import TestUpstream
from kube402.kube import resources
from kube402.kube.client import Kube

from .conftest import BASE, PUBLISHED, make_offer, registered_logs, rr, wait_phase

pytestmark = pytest.mark.integration
STEPS = ["after-fence", "after-hash-stored", "after-broadcast", "after-mined"]


class Proc:
    def __init__(
        self,
        info: ControlPlaneInfo,
        identity: str,
        tmp: Path,
        *,
        lease_ns: str,
        rpc_url: str,
        key: Any,
        crash_at: str = "",
        leader_elect: bool = True,
    ) -> None:
        self.port = process.free_port()
        self.log = tmp / f"{identity}.log"
        env = {
            "POD_NAME": identity,
            "ERC8004_PRIVATE_KEY": "0x" + bytes(key.key).hex(),
            "ERC8004_RPC_URL": rpc_url,
            "AGENT_BASE_URL": BASE,
        }
        if crash_at:
            env["KUBE402_TEST_CRASH_AT"] = crash_at
        argv = [
            sys.executable,
            "-m",
            "kube402.cli",
            "controller",
            "--kubeconfig",
            str(info.kubeconfig),
            "--upstream-resolution",
            "endpointslice",
            "--registration-readiness",
            "objects",
            "--route-acceptance",
            "applied",
            "--metrics-listen",
            f"127.0.0.1:{self.port}",
            "--requeue-ready",
            "2",
            "--requeue-not-ready",
            "1",
            "--namespace",
            lease_ns,
        ]
        if not leader_elect:
            argv.append("--no-leader-elect")
        self.proc = process.spawn(argv, log=self.log, env=env)

    def metrics(self) -> str:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return ""

    async def exited(self, wait_s: float = 60) -> int:
        return await asyncio.wait_for(asyncio.to_thread(self.proc.wait), wait_s)

    def stop(self) -> None:
        if self.proc.poll() is None:
            process.stop(self.proc.pid)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        p.stop()


async def finish(kube: Kube, ns: str, reg: chain_registry.IdentityRegistry, key: Any) -> None:
    done = await wait_phase(kube, ns, "crashy", "Registered", wait_s=60)
    logs = await registered_logs(reg, key.address, PUBLISHED)
    assert len(logs) == 1, f"exactly one Registered event for owner and URI, found {logs}"
    assert done["status"]["agentId"] == str(logs[0].agent_id), "the RR adopted the one registration"
    assert done["status"]["registrationTxHash"] == logs[0].tx_hash
    offer = await eventually(
        lambda: kube.get(resources.SERVICE_OFFER, "crashy", namespace=ns),
        until=lambda o: condition(o, "Ready") == ("True", "Reconciled"),
        timeout=30,
    )
    assert offer is not None and offer["status"]["agentId"] == str(logs[0].agent_id)


async def delete_with(procs: list[Proc], kube: Kube, ns: str) -> None:
    await kube.delete(resources.SERVICE_OFFER, "crashy", namespace=ns)
    await eventually(
        lambda: kube.get(resources.SERVICE_OFFER, "crashy", namespace=ns),
        until=lambda o: o is None,
        timeout=40,
        what="offer tombstoned and gone",
    )


@pytest.mark.parametrize("step", STEPS)
async def test_killed_at_each_step_registers_exactly_once(
    step: str,
    kube: Kube,
    namespace: str,
    control_plane: ControlPlaneInfo,
    upstream: TestUpstream,
    dev_chain: devchain.DevChainInfo,
    node: rpc.Rpc,
    reg: chain_registry.IdentityRegistry,
    key: Any,
    tmp_path: Path,
    procs: list[Proc],
) -> None:
    if step == "after-broadcast":
        await node.request("evm_setAutomine", [False])  # so the broadcast is really not mined yet
    try:
        first = Proc(
            control_plane,
            "first",
            tmp_path,
            lease_ns=namespace,
            rpc_url=dev_chain.rpc_url,
            key=key,
            crash_at=step,
        )
        procs.append(first)
        await make_offer(kube, namespace, "crashy", upstream)
        code = await first.exited()
        assert code == -signal.SIGKILL, f"the controller died at {step} by SIGKILL (log {first.log})"
        assert f"test crash hook: SIGKILL at {step}" in first.log.read_text()
        at_crash = await rr(kube, namespace, "crashy")
        st = (at_crash or {}).get("status") or {}
        assert st.get("registrationSearchFromBlock", 0) > 0, "the fence was persisted first"
        if step in ("after-hash-stored", "after-broadcast"):
            assert st.get("registrationTxHash"), "the hash was stored before the broadcast"
        if step == "after-fence":
            assert not st.get("registrationTxHash")
        assert "agentId" not in st

        second = Proc(
            control_plane, "second", tmp_path, lease_ns=namespace, rpc_url=dev_chain.rpc_url, key=key
        )
        procs.append(second)
        if step == "after-broadcast":
            waiting = await eventually(
                lambda: rr(kube, namespace, "crashy"),
                until=lambda o: (
                    ((o or {}).get("status") or {}).get("message", "")
                    == f"Waiting for on-chain registration transaction {st['registrationTxHash']}"
                ),
                timeout=40,
                what="the restarted controller waits for the in-flight transaction",
            )
            assert waiting is not None
            await node.request("evm_mine", [])
            await node.request("evm_setAutomine", [True])
        await finish(kube, namespace, reg, key)
        text = await asyncio.to_thread(second.metrics)
        assert 'kube402_registration_phase{phase="Registered"}' in text
        assert "kube402_registration_recoveries_total" in text
        await delete_with(procs, kube, namespace)
        assert len(await registered_logs(reg, key.address, PUBLISHED)) == 1
    finally:
        await node.request("evm_setAutomine", [True])


@pytest.mark.parametrize("step", ["after-hash-stored", "after-mined"])
async def test_two_replicas_leader_killed_mid_registration_registers_once(
    step: str,
    kube: Kube,
    namespace: str,
    control_plane: ControlPlaneInfo,
    upstream: TestUpstream,
    dev_chain: devchain.DevChainInfo,
    reg: chain_registry.IdentityRegistry,
    key: Any,
    tmp_path: Path,
    procs: list[Proc],
) -> None:
    a = Proc(
        control_plane,
        "replica-a",
        tmp_path,
        lease_ns=namespace,
        rpc_url=dev_chain.rpc_url,
        key=key,
        crash_at=step,
    )
    procs.append(a)

    async def holder() -> str:
        lease = await kube.get(resources.LEASE, "serviceoffer-controller", namespace=namespace)
        return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")

    await eventually(holder, until=lambda h: h == "replica-a", timeout=30, what="replica-a leads")
    b = Proc(control_plane, "replica-b", tmp_path, lease_ns=namespace, rpc_url=dev_chain.rpc_url, key=key)
    procs.append(b)
    await eventually(
        lambda: asyncio.to_thread(b.metrics),
        until=lambda t: "kube402_controller_leader 0.0" in t,
        timeout=30,
        what="replica-b up as follower",
    )
    await make_offer(kube, namespace, "crashy", upstream)
    assert await a.exited() == -signal.SIGKILL
    await eventually(holder, until=lambda h: h == "replica-b", timeout=20, what="takeover by replica-b")
    await finish(kube, namespace, reg, key)
    await delete_with(procs, kube, namespace)
    assert len(await registered_logs(reg, key.address, PUBLISHED)) == 1
