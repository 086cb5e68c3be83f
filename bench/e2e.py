"""bench/e2e: paid requests end to end on the local chain, through real Traefik and directly at the gate.

The whole stack runs as the demo runs it (real kube-apiserver, anvil, Traefik v3.7.13 built from Go modules,
`kube402 facilitator`, `verifier`, `controller`, demo upstream, each its own process, in a temporary state
directory). The buyer is the x402 package's httpx client: every request gets a 402, signs a fresh EIP-3009
authorization and retries; the verifier's proxy gate verifies it with the facilitator, calls the upstream and
settles on chain before the answer is relayed. Every paid answer is checked (200 + a successful
PAYMENT-RESPONSE); the seller's balance is checked against the count at the end.

Reported: paid latency p50/p95 through Traefik and directly at the proxy gate (same run, same offer);
sustained paid req/s through Traefik; and, when ``wrk`` and ``nginx`` are installed, ``wrk -c32`` POST runs
through Traefik to an unpaid route in each gate mode, as a ratio of Traefik → nginx in the same run, with
every answer other than the expected status counted (Traefik, the verifier and nginx pinned to CPU 0, wrk
to CPU 1).

    .venv/bin/python bench/e2e.py [--sequential 200] [--seconds 30] [--concurrency 16] [--wrk-seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from x402 import x402Client
from x402.http.clients.httpx import x402HttpxClient
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import register_exact_evm_client

from kube402.api import v1alpha1
from kube402.chain import devchain, rpc, token
from kube402.devenv import process, services, stack, traefik
from kube402.devenv.testing import condition, eventually
from kube402.kube import resources
from kube402.kube.client import Kube
from kube402.localstack import pricing_yaml

BODY = {"model": "qwen3:0.6b", "messages": [{"role": "user", "content": "hi"}]}
WRK_LUA = """
wrk.method = "POST"
wrk.body = '{"model":"qwen3:0.6b","messages":[{"role":"user","content":"hi"}]}'
wrk.headers["Content-Type"] = "application/json"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) want = tonumber(args[1]); other = 0 end
function response(status, headers, body) if status ~= want then other = other + 1 end end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("other") end
  io.write(string.format("UNEXPECTED %d\\n", n))
end
"""


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


NGINX_CONF = """
daemon off; master_process off; worker_processes 1; user root; pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off; client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};
  uwsgi_temp_path {d}; scgi_temp_path {d}; keepalive_requests 1000000;
  server {{ listen {host}:{port}; location / {{ return 200 '{{"ok":true}}'; }} }}
}}
"""


async def start_nginx_route(kube: Kube, d: Path, host: str) -> subprocess.Popen[bytes] | None:
    """nginx behind a plain HTTPRoute ``/nginx`` on the Gateway: Traefik's own cost, the wrk baseline."""
    if not (shutil.which("nginx") and shutil.which("wrk")):
        print("  (wrk runs skipped: apt-get install nginx wrk)")
        return None
    port = process.free_port(host)
    (d / "nginx.conf").write_text(NGINX_CONF.format(d=d, host=host, port=port))
    proc = process.spawn(["nginx", "-c", str(d / "nginx.conf"), "-p", str(d)], log=d / "out.log")
    await traefik.expose(kube, namespace="llm", name="nginx", port=port, address=host)
    await kube.apply(
        resources.HTTPROUTE,
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "nginx", "namespace": "llm"},
            "spec": {
                "parentRefs": [{"name": "traefik-gateway", "namespace": "traefik", "sectionName": "web"}],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/nginx"}}],
                        "backendRefs": [{"name": "nginx", "port": port}],
                    }
                ],
            },
        },
    )
    return proc


def wrk_runs(gateway: str, seconds: int, pids: list[int]) -> None:
    """wrk -c32 POST through Traefik: nginx (200), then each gate mode's unpaid route (402)."""
    lua = Path(tempfile.mkdtemp(prefix="kube402-wrk-")) / "post.lua"
    lua.write_text(WRK_LUA)
    for pid in pids:
        subprocess.run(["taskset", "-a", "-p", "-c", "0", str(pid)], capture_output=True, check=False)
    results: dict[str, tuple[float, int, int]] = {}
    for label, path, want in (
        ("Traefik → nginx", "/nginx/x", 200),
        ("Traefik → ForwardAuth /verify (unpaid)", "/services/bench-fa/v1/chat/completions", 402),
        ("Traefik → proxy gate (unpaid)", "/services/bench/v1/chat/completions", 402),
    ):
        out = subprocess.run(
            [
                "taskset",
                "-c",
                "1",
                "wrk",
                "-t1",
                "-c32",
                f"-d{seconds}s",
                "-s",
                str(lua),
                gateway + path,
                "--",
                str(want),
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        ).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        unexpected = int(re.search(r"UNEXPECTED (\d+)", out).group(1))  # type: ignore[union-attr]
        errors = re.search(r"Socket errors: (.*)", out)
        results[label] = (rps, total, unexpected)
        print(
            f"  wrk -t1 -c32 -d{seconds}s POST {label:40} {rps:>8.0f} req/s, {total} answers, "
            f"{unexpected} not {want}" + (f", socket errors: {errors.group(1)}" if errors else "")
        )
    base = results["Traefik → nginx"][0]
    for label, (rps, _total, unexpected) in results.items():
        if label != "Traefik → nginx":
            print(f"    {label}: {rps / base:.2f} x Traefik → nginx, {unexpected} answers other than 402")


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sequential", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--wrk-seconds", type=int, default=60, help="each wrk run; 0 skips them")
    args = ap.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="kube402-e2e-bench-")) / ".kube402"
    state, _ = await stack.up(directory)
    nginx: subprocess.Popen[bytes] | None = None
    try:
        ports = await services.start(directory)
        seller, buyer = devchain.dev_account(1), devchain.dev_account(2)
        info = await devchain.setup_base_sepolia(state.rpc_url)
        await devchain.mint(info, buyer.address, 10**12)
        node = await rpc.connect(state.rpc_url, chain_id=84532)
        usdc = token.Token(node, info.token)
        kube = Kube.connect(kubeconfig=state.kubeconfig, field_manager="bench")
        fac = f"http://127.0.0.1:{ports['facilitator']}"
        await kube.apply(
            resources.CONFIGMAP,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "x402-pricing", "namespace": "x402"},
                "data": {
                    "pricing.yaml": pricing_yaml(
                        wallet=seller.address,
                        facilitator_url=fac,
                        facilitator_token_file=str(services.token_file(directory)),
                    )
                },
            },
        )
        await kube.apply(
            resources.NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "llm"}}
        )
        host = str(state.extra["KUBE402_HOST_ADDRESS"])
        gateway = str(state.extra["KUBE402_GATEWAY_URL"])
        # Traefik routes to EndpointSlice addresses only: the demo upstream listens on the test-host address.
        await traefik.expose(kube, namespace="llm", name="ollama", port=ports["upstream"], address=host)
        for name, mode in (("bench", "proxy"), ("bench-fa", "forwardAuth")):
            await kube.apply(
                resources.SERVICE_OFFER,
                v1alpha1.offer_manifest(
                    name,
                    namespace="llm",
                    upstream="ollama",
                    port=ports["upstream"],
                    pay_to=seller.address,
                    gate_mode=mode,
                ),
            )
        await eventually(
            lambda: kube.get(resources.SERVICE_OFFER, "bench", namespace="llm"),
            timeout=60,
            until=lambda o: condition(o, "Ready")[0] == "True",
            what="offer Ready",
        )
        nginx = await start_nginx_route(kube, Path(tempfile.mkdtemp(prefix="kube402-e2e-nginx-")), host)
        await kube.aclose()
        direct = f"http://{host}:{ports['gate']}/services/bench/v1/chat/completions"
        url = f"{gateway}/services/bench/v1/chat/completions"
        client = register_exact_evm_client(x402Client(), EthAccountSigner(buyer))
        start_balance = await usdc.balance_of(seller.address)
        paid = 0

        async def one(http: x402HttpxClient, target: str = url) -> float:
            s = time.perf_counter()
            r = await http.post(target, json=BODY)
            took = time.perf_counter() - s
            receipt = json.loads(base64.b64decode(r.headers.get("payment-response", "e30=")))
            if r.status_code != 200 or not receipt.get("success"):
                raise RuntimeError(f"paid request failed: {r.status_code} {r.text[:200]}")
            return took

        async with x402HttpxClient(client, timeout=60) as http:
            await eventually(
                lambda: http.post(url, json=BODY),
                until=lambda r: r.status_code == 200,
                timeout=20,
                what="first paid request",
            )
            paid += 1
            print(
                "kube402 end-to-end paid requests (x402 client → [Traefik →] verifier proxy gate → "
                "facilitator → anvil; every process on this shared 2-core machine)"
            )
            for label, target in (("through Traefik", url), ("direct to the proxy gate", direct)):
                lat = []
                for _ in range(args.sequential):
                    lat.append(await one(http, target))
                    paid += 1
                print(
                    f"  {label:26} sequential, {args.sequential} requests: "
                    f"p50 {pct(lat, 0.5) * 1000:.1f} ms, "
                    f"p95 {pct(lat, 0.95) * 1000:.1f} ms (each: 402, sign, paid retry, verify, upstream, "
                    f"settle on chain)"
                )

            done = 0
            stop_at = time.monotonic() + args.seconds

            async def worker() -> None:
                nonlocal done
                while time.monotonic() < stop_at:
                    await one(http)
                    done += 1

            t0 = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
            elapsed = time.monotonic() - t0
            paid += done
            print(
                f"  sustained through Traefik {elapsed:.0f} s, {args.concurrency} concurrent buyers: {done} "
                f"paid requests, {done / elapsed:.1f} paid req/s, all settled"
            )
        moved = await usdc.balance_of(seller.address) - start_balance
        assert moved == paid * 1000 - 1000 or moved == paid * 1000, (moved, paid)
        print(f"  seller balance moved by {moved} atomic units = {moved // 1000} settled payments (checked)")
        if nginx is not None and args.wrk_seconds > 0:
            running = stack.load(directory)
            assert running is not None
            pids = [running.pids["traefik"], running.pids["verifier"], nginx.pid]
            wrk_runs(gateway, args.wrk_seconds, pids)
    finally:
        if nginx is not None:
            process.stop(nginx.pid)
        stack.down(directory)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
