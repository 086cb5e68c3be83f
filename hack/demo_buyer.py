"""The buyer's part of `make demo`: fund a voucher pool with `kube402 buy vouchers`, run `kube402 buyer`
next to the seller, and send an OpenAI-style chat request for ``paid/<model>`` through it (openai client).

Kept separate from ``hack/demo.py`` (which the `sell` work rewrites) so the lead can merge it with one call at
the end of the demo::

    from demo_buyer import buy_and_chat
    await buy_and_chat(state_dir=STATE, seller_url=f"http://127.0.0.1:{ports['gate']}/services/{OFFER}",
                       model="qwen3:0.6b", rpc_url=state.rpc_url, say=say)

or afterwards, against the running demo: ``.venv/bin/python hack/demo_buyer.py``.
The buyer process is recorded in ``.kube402/state.json``, so ``kube402 dev down`` stops it too.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from kube402.api import money
from kube402.buyer import local
from kube402.chain import devchain, rpc, token
from kube402.devenv import stack

STATE = Path(".kube402")
OFFER = "demo-qwen"


def _usdc(amount: int) -> str:
    return f"{money.format_atomic(amount, decimals=6)} USDC"


def _port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def buy_and_chat(
    *,
    state_dir: Path,
    seller_url: str,
    model: str,
    rpc_url: str,
    say: Callable[[str], None] = print,
    count: int = 5,
) -> int:
    """Sign ``count`` vouchers, start the buyer, make one paid chat request; returns the buyer's port."""
    import openai

    buyer_acct, seller_acct = devchain.dev_account(2), devchain.dev_account(1)
    work = Path(os.path.abspath(state_dir / "buyer"))
    work.mkdir(parents=True, exist_ok=True)
    key_file = work / "buyer.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(buyer_acct.key.hex())
    pool = work / "pool"
    say(f"buyer: `kube402 buy vouchers {OFFER} --url {seller_url} --count {count} …` (key from a file)")
    out = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable, "-m", "kube402.cli", "buy", "vouchers", OFFER, "--url", seller_url,
            "--count", str(count), "--key-file", str(key_file), "--rpc-url", rpc_url, "--model", model,
            "--budget", "0.01", "--out", str(pool),
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"buy vouchers failed: {out.stderr.strip() or out.stdout.strip()}")
    say("  " + out.stdout.strip().splitlines()[0])
    old = stack.load(Path(os.path.abspath(state_dir)))
    if old is not None and "buyer" in old.pids:
        from kube402.devenv import process

        process.stop(old.pids["buyer"])
    buyer = local.BuyerProcess(work, config_dir=pool, port=_port(8402))
    await buyer.start()
    assert buyer.proc is not None
    stack.add_process(state_dir, "buyer", buyer.proc.pid)
    say(f"buyer: `kube402 buyer` at {buyer.url} (never holds a key; spends the pre-signed vouchers)")

    node = await rpc.connect(rpc_url, chain_id=84532)
    usdc = token.Token(node, _usdc_address())
    before = [await usdc.balance_of(a) for a in (buyer_acct.address, seller_acct.address)]
    client = openai.AsyncOpenAI(base_url=f"{buyer.url}/v1", api_key="sk-local-agent", max_retries=0)
    say(f"agent: openai client → {buyer.url}/v1, model=paid/{model}")
    answer = await client.chat.completions.create(
        model=f"paid/{model}", messages=[{"role": "user", "content": "Say hello"}]
    )
    await client.close()
    say(f"  answer: {answer.choices[0].message.content!r}")
    after = [await usdc.balance_of(a) for a in (buyer_acct.address, seller_acct.address)]
    status = (await buyer.status())[OFFER]
    say(
        f"  vouchers left {status['remaining']}, spent {status['spent']}; "
        f"buyer {_usdc(before[0])} → {_usdc(after[0])} ({after[0] - before[0]:+d}), "
        f"seller {_usdc(before[1])} → {_usdc(after[1])} ({after[1] - before[1]:+d})"
    )
    say(f"  try: curl -s {buyer.url}/status; .venv/bin/kube402 buy status --buyer-url {buyer.url}")
    return buyer.port


def _usdc_address() -> str:
    from kube402.api import chains

    return chains.lookup("base-sepolia").usdc


async def main() -> int:
    state = stack.load(Path(os.path.abspath(STATE)))
    if state is None:
        print("no running demo: run `make demo` first", file=sys.stderr)
        return 1
    ports = state.extra.get("ports") or {}
    if "gate" not in ports:
        print(f"the running demo records no gate port: {json.dumps(ports)}", file=sys.stderr)
        return 1
    seller_url = f"http://127.0.0.1:{ports['gate']}/services/{OFFER}"
    await buy_and_chat(state_dir=STATE, seller_url=seller_url, model="qwen3:0.6b", rpc_url=state.rpc_url)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
