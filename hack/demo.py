"""`make demo`: sell an HTTP service with the kube402 CLI on a real local stack, pay, see the money move.

Every step a seller takes is a `kube402` command, echoed before its output so the demo teaches the CLI:
`dev up` (real kube-apiserver + etcd, anvil as Base Sepolia, real Traefik as the ingress, facilitator,
verifier, controller, catalog), `dev upstream` (a demo OpenAI-compatible service on the test-host address and
its selector-less Service + EndpointSlice, the form Traefik routes to), `sell pricing`, `sell http … --wait`,
`sell test`, `sell list`. The offer registers as an ERC-8004 agent (`--register`; agentId, tx, document and
`/skill.md` row printed, ``hack/demo_registration.py``). Then buyers pay through Traefik
(`KUBE402_GATEWAY_URL`): once with the x402 package's client, once as an agent (the openai client) through
`kube402 buyer` spending vouchers signed by `kube402 buy vouchers` (``hack/demo_buyer.py``); the balances are
read from the chain. Everything keeps running afterwards; `kube402 dev down` stops it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from demo_buyer import buy_and_chat  # hack/ is on sys.path: this file runs as a script
from demo_registration import register_step
from eth_account import Account

from kube402.api import money
from kube402.chain import rpc, token
from kube402.kube.client import Kube

STATE = Path(".kube402")
NS = "llm"
OFFER = "demo-qwen"
T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {text}", flush=True)


def kube402(*args: str) -> str:
    """Run one CLI command as a user would, echoing it and its output; stop the demo if it fails."""
    print(f"\n$ kube402 {' '.join(args)}", flush=True)
    proc = subprocess.run(
        [sys.executable, "-m", "kube402.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    print(proc.stdout, end="" if proc.stdout.endswith("\n") else "\n", flush=True)
    if proc.returncode != 0:
        raise SystemExit(f"demo: `kube402 {' '.join(args)}` failed with exit code {proc.returncode}")
    return proc.stdout


def usdc(amount: int) -> str:
    return f"{money.format_atomic(amount, decimals=6)} USDC"


def dev_env() -> dict[str, str]:
    lines = (STATE / "dev.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


async def seller_balance(env: dict[str, str]) -> int:
    node = await rpc.connect(env["KUBE402_RPC_URL"], chain_id=84532)
    return await token.Token(node, env["KUBE402_USDC"]).balance_of(env["X402_WALLET"])


async def agent_buys(env: dict[str, str]) -> int:
    """The buyer's part: vouchers → `kube402 buyer` → an openai chat for paid/<model>, through Traefik."""
    print("\n# an agent buys through `kube402 buyer` (pre-signed vouchers; the agent holds no key)")
    before = await seller_balance(env)
    await buy_and_chat(
        state_dir=STATE,
        seller_url=f"{env['KUBE402_GATEWAY_URL']}/services/{OFFER}",
        model="qwen3:0.6b",
        rpc_url=env["KUBE402_RPC_URL"],
        say=say,
    )
    return await seller_balance(env) - before


async def show_registration(env: dict[str, str]) -> None:
    """The offer's ERC-8004 identity: agentId, tx, the document and its /skill.md row, through Traefik."""
    print("\n# the offer is findable: ERC-8004 agent on the local Base Sepolia registry, /skill.md catalog")
    kube = Kube.connect(kubeconfig=env["KUBECONFIG"], field_manager="kube402-demo")
    try:
        await register_step(
            kube,
            ns=NS,
            offer=OFFER,
            gateway_url=env["KUBE402_GATEWAY_URL"],
            rpc_url=env["KUBE402_RPC_URL"],
            say=say,
        )
    finally:
        await kube.aclose()


async def pay(env: dict[str, str], url: str, key: str) -> int:
    from x402 import x402Client
    from x402.http.clients.httpx import x402HttpxClient
    from x402.mechanisms.evm import EthAccountSigner
    from x402.mechanisms.evm.exact import register_exact_evm_client

    buyer = Account.from_key(key)
    seller = env["X402_WALLET"]
    node = await rpc.connect(env["KUBE402_RPC_URL"], chain_id=84532)
    usdc_token = token.Token(node, env["KUBE402_USDC"])
    before = [await usdc_token.balance_of(a) for a in (buyer.address, seller)]
    body = {"model": "qwen3:0.6b", "messages": [{"role": "user", "content": "Say hello"}]}
    client = register_exact_evm_client(x402Client(), EthAccountSigner(buyer))
    print(f"\n# a buyer ({buyer.address}, key in KUBE402_BUYER_KEY_FILE) pays with the x402 package's client")
    async with x402HttpxClient(client, timeout=60) as paying:
        resp = await paying.post(url, json=body)
    say(f"paid POST {url} (Traefik, Gateway traefik/traefik-gateway) → {resp.status_code}")
    if resp.status_code != 200:
        raise SystemExit(f"demo: the paid request failed: {resp.text[:300]}")
    say(f"  upstream answered: {resp.json()['choices'][0]['message']['content']!r}")
    receipt = json.loads(base64.b64decode(resp.headers["payment-response"]))
    say(f"  settlement receipt (PAYMENT-RESPONSE): success={receipt['success']} tx {receipt['transaction']}")
    after = [await usdc_token.balance_of(a) for a in (buyer.address, seller)]
    say(f"  buyer  {buyer.address}: {usdc(before[0])} → {usdc(after[0])}  ({after[0] - before[0]:+d})")
    say(f"  seller {seller}: {usdc(before[1])} → {usdc(after[1])}  ({after[1] - before[1]:+d})")
    return after[1] - before[1]


def main() -> int:
    say("the whole stack on this machine, offline; every seller step is a kube402 command")
    kube402("dev", "up")
    env = dev_env()
    served = kube402("dev", "upstream", "ollama", "-n", NS)
    port = served.split(" port ", 1)[1].split(")", 1)[0]
    kube402(
        "sell",
        "pricing",
        "--wallet",
        env["X402_WALLET"],
        "--chain",
        "base-sepolia",
        "--facilitator-url",
        env["KUBE402_FACILITATOR_URL"],
    )
    kube402(
        "sell", "http", OFFER, "-n", NS, "--upstream", "ollama", "--port", port,
        "--price", "0.001", "--wallet", env["X402_WALLET"], "--gate-mode", "proxy",
        "--register", "--register-description", "kube402 demo: pay per request", "--wait",
    )  # fmt: skip
    kube402("sell", "test", OFFER, "-n", NS)
    kube402("sell", "list", "-n", NS)
    asyncio.run(show_registration(env))
    url = f"{env['KUBE402_GATEWAY_URL']}/services/{OFFER}/v1/chat/completions"
    moved = asyncio.run(pay(env, url, Path(env["KUBE402_BUYER_KEY_FILE"]).read_text().strip()))
    if moved != 1000:
        raise SystemExit(f"demo: the seller received {moved} atomic units, expected 1000")
    moved = asyncio.run(agent_buys(env))
    if moved != 1000:
        raise SystemExit(
            f"demo: the agent's purchase moved {moved} atomic units to the seller, expected 1000"
        )
    say("balances moved: the seller received 1000 atomic USDC (0.001) per paid request, twice")
    print(f"""
kube402 demo is up and stays running ({time.monotonic() - T0:.0f} s). Try it:
  set -a; . {(STATE / "dev.env").resolve()}; set +a
  curl -si -X POST {url} -d '{{}}' | head -5          # 402 with PAYMENT-REQUIRED
  .venv/bin/kube402 sell status                          # wallet, chain, facilitator, routes
  .venv/bin/kube402 sell stop {OFFER} -n {NS} --wait      # pause (the path stops answering)
Stop everything with: .venv/bin/kube402 dev down
""")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
