"""bench/controller: create → RoutePublished latency and reconcile throughput of `kube402 controller`.

Starts a fresh real control plane, one `kube402 controller` process (leader election on, as deployed) and a
test upstream; then creates 1 offer (20 times, one at a time), 100 offers and 1000 offers (all at once) and
measures, in this process, the time from each create's response to the watch event that shows
RoutePublished=True. Reconciles per second come from the controller's own counter.

    .venv/bin/python bench/controller.py [--workers 4] [--sizes 1,100,1000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from kube402.api import v1alpha1
from kube402.devenv import process
from kube402.devenv.controlplane import ControlPlane
from kube402.devenv.testing import condition
from kube402.devenv.upstream import TestUpstream
from kube402.kube import resources
from kube402.kube.client import Kube

WALLET = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(q * (len(values) - 1))))
    return values[k]


def reconciles(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("kube402_controller_reconciles_total{")
    )


async def run_batch(kube: Kube, ns: str, n: int, port: int, upstream_port: int) -> dict[str, Any]:
    await kube.create(
        resources.NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    )
    await kube.create(
        resources.SERVICE,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "ollama", "namespace": ns},
            "spec": {"type": "ExternalName", "externalName": "localhost"},
        },
    )
    _, rv = await kube.list(resources.SERVICE_OFFER, namespace=ns)
    created: dict[str, float] = {}
    published: dict[str, float] = {}
    ready: dict[str, float] = {}
    done = asyncio.Event()

    async def watch() -> None:
        async for etype, obj in kube.watch(
            resources.SERVICE_OFFER, resource_version=rv, namespace=ns, timeout_seconds=600
        ):
            if etype == "BOOKMARK":
                continue
            name = obj["metadata"]["name"]
            now = time.perf_counter()
            if condition(obj, "RoutePublished")[0] == "True":
                published.setdefault(name, now)
            if condition(obj, "Ready")[0] == "True":
                ready.setdefault(name, now)
                if len(ready) == n:
                    done.set()
                    return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    before = await asyncio.to_thread(reconciles, port)
    start = time.perf_counter()
    sem = asyncio.Semaphore(32)

    async def create(i: int) -> None:
        name = f"{ns}-{i:04d}"
        async with sem:
            await kube.create(
                resources.SERVICE_OFFER,
                v1alpha1.offer_manifest(
                    name, namespace=ns, upstream="ollama", port=upstream_port, pay_to=WALLET
                ),
            )
            created[name] = time.perf_counter()

    await asyncio.gather(*(create(i) for i in range(n)))
    try:
        await asyncio.wait_for(done.wait(), timeout=120)
    except TimeoutError:
        objs, _ = await kube.list(resources.SERVICE_OFFER, namespace=ns)
        missing = [o for o in objs if o["metadata"]["name"] not in ready]
        print(f"TIMEOUT in {ns}: {len(ready)}/{n} Ready; e.g. {missing[:1]}", file=sys.stderr)
        raise
    total = time.perf_counter() - start
    after = await asyncio.to_thread(reconciles, port)
    watcher.cancel()
    lat = [published[k] - created[k] for k in created]
    return {
        "n": n,
        "p50": pct(lat, 0.5),
        "p95": pct(lat, 0.95),
        "all_ready": total,
        "reconciles": after - before,
        "rps": (after - before) / total,
    }


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--sizes", default="1,100,1000")
    ap.add_argument("--single-repeats", type=int, default=20)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="kube402-bench-"))
    cp = ControlPlane(tmp / "cp")
    info = await cp.start()
    upstream = TestUpstream().start()
    port = process.free_port()
    proc = process.spawn(
        [
            sys.executable,
            "-m",
            "kube402.cli",
            "--log-level",
            "warning",
            "controller",
            "--kubeconfig",
            str(info.kubeconfig),
            "--upstream-resolution",
            "endpointslice",
            # No Gateway controller in this benchmark: RoutePublished once the route is applied.
            "--route-acceptance",
            "applied",
            "--workers",
            str(args.workers),
            "--metrics-listen",
            f"127.0.0.1:{port}",
        ],
        log=tmp / "controller.log",
    )
    kube = Kube.connect(kubeconfig=str(info.kubeconfig), field_manager="bench", timeout=60)
    try:
        for _ in range(100):
            try:
                await asyncio.to_thread(reconciles, port)
                break
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
        await asyncio.sleep(3)  # lease acquisition
        print(
            f"kube402 controller bench: kube-apiserver {(await kube.version())['gitVersion']}, "
            f"{args.workers} workers, one controller process, 2-core machine"
        )
        print(f"{'offers':>7} {'p50 publish':>12} {'p95 publish':>12} {'all Ready':>10} {'reconciles/s':>13}")
        for n in sizes:
            if n == 1:
                lat: list[float] = []
                for i in range(args.single_repeats):
                    r = await run_batch(kube, f"single-{i}", 1, port, upstream.port)
                    lat.append(r["p50"])
                print(
                    f"{1:>7} {pct(lat, 0.5) * 1000:>10.0f}ms {pct(lat, 0.95) * 1000:>10.0f}ms "
                    f"{'-':>10} {'-':>13}   ({args.single_repeats} sequential single-offer runs)"
                )
                continue
            r = await run_batch(kube, f"batch-{n}", n, port, upstream.port)
            print(
                f"{n:>7} {r['p50'] * 1000:>10.0f}ms {r['p95'] * 1000:>10.0f}ms {r['all_ready']:>9.1f}s "
                f"{r['rps']:>13.0f}"
            )
    finally:
        await kube.aclose()
        process.stop(proc.pid)
        upstream.stop()
        cp.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
