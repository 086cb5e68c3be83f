"""`make demo` registration step (issue 12): enable ERC-8004 registration on the demo offer, show the agent.

A separate step so the lead can merge it into the CLI-based ``hack/demo.py``: call
``await register_step(kube, ns=…, offer=…, ports=…, rpc_url=…, say=…)`` after the offer is Ready. Run alone
(``.venv/bin/python hack/demo_registration.py``) it uses the environment that ``make demo`` left running.

It prints the agentId, the registration transaction, the document URL (served by ``kube402 catalog`` from
the ConfigMap the controller wrote) and the offer's ``/skill.md`` row; it reads ``ownerOf``/``tokenURI``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from kube402.chain import devchain, rpc
from kube402.chain import registry as chain_registry
from kube402.devenv import stack
from kube402.devenv.testing import conditions
from kube402.kube import resources
from kube402.kube.client import Kube

__all__ = ["register_step"]


async def register_step(
    kube: Kube,
    *,
    ns: str,
    offer: str,
    ports: Mapping[str, int],
    rpc_url: str,
    say: Callable[[str], None] = print,
    wait_s: float = 90.0,
) -> dict[str, str]:
    """Turn registration on for ``ns/offer`` and wait until it is Registered; returns what it printed."""
    await kube.merge_patch(
        resources.SERVICE_OFFER,
        offer,
        namespace=ns,
        patch={"spec": {"registration": {"enabled": True, "description": "kube402 demo: pay per request"}}},
    )
    say(f"registration enabled on {ns}/{offer}: the controller publishes the document and registers on chain")
    deadline = time.monotonic() + wait_s
    seen = ""
    while True:
        obj = await kube.get(resources.SERVICE_OFFER, offer, namespace=ns)
        reg = conditions(obj).get("Registered", {})
        line = f"{reg.get('status')}/{reg.get('reason')}: {reg.get('message')}"
        if line != seen:
            seen = line
            say(f"  Registered {line}")
        if reg.get("reason") == "Registered" and conditions(obj).get("Ready", {}).get("status") == "True":
            break
        if time.monotonic() > deadline:
            raise TimeoutError("offer not Registered; see .kube402/logs/controller.log")
        await asyncio.sleep(0.2)
    assert obj is not None
    agent_id, tx = obj["status"]["agentId"], obj["status"]["registrationTxHash"]
    node = rpc.Rpc(rpc_url)
    registry = chain_registry.IdentityRegistry(node, devchain.BASE_SEPOLIA_IDENTITY_REGISTRY)
    owner, uri = await registry.owner_of(int(agent_id)), await registry.token_uri(int(agent_id))
    catalog = f"http://127.0.0.1:{ports['catalog']}"
    doc_url = f"{catalog}/.well-known/agent-registration.json"
    async with httpx.AsyncClient() as http:
        doc = (await http.get(doc_url)).json()
        row = ""
        for _ in range(50):
            skill = (await http.get(f"{catalog}/skill.md")).text
            row = next((ln for ln in skill.splitlines() if ln.startswith(f"| {offer} |")), "")
            if row:
                break
            await asyncio.sleep(0.1)
    say(f"  ERC-8004 agent {agent_id} on eip155:84532 (registry {registry.address}), owner {owner}")
    say(f"  registration tx {tx}")
    say(f"  agentURI on chain: {uri}")
    say(f"  document (served by kube402 catalog): {doc_url}")
    say(f"    registrations: {json.dumps(doc.get('registrations'))}")
    say(f"  /skill.md row: {row}")
    return {"agentId": agent_id, "tx": tx, "document": doc_url, "skill_row": row, "agentURI": uri}


async def _main() -> int:
    state = stack.load(Path.cwd() / ".kube402")
    if state is None or "ports" not in state.extra:
        print("no running demo environment: run `make demo` first", file=sys.stderr)
        return 1
    kube = Kube.connect(kubeconfig=state.kubeconfig, field_manager="kube402-demo")
    try:
        await register_step(
            kube, ns="llm", offer="demo-qwen", ports=state.extra["ports"], rpc_url=state.rpc_url
        )
    finally:
        await kube.aclose()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(asyncio.run(_main()))
