"""`make demo` registration step (issue 12): enable ERC-8004 registration on the demo offer, show the agent.

A separate step so the lead can merge it into the CLI-based ``hack/demo.py``: call
``await register_step(kube, ns=…, offer=…, gateway_url=…, rpc_url=…, say=…)`` after the offer is Ready
(``gateway_url`` = ``KUBE402_GATEWAY_URL`` of ``.kube402/dev.env``, Traefik's URL). Run alone
(``.venv/bin/python hack/demo_registration.py``) it uses the environment that ``make demo`` left running.

It prints the agentId, the registration transaction, the document URL (the agentURI on chain: Traefik's
``/.well-known/agent-registration.json``, routed by ``so-<offer>-wellknown`` to ``kube402 catalog``, which
serves the ConfigMap the controller wrote) and the offer's ``/skill.md`` row fetched through Traefik; it reads
``ownerOf``/``tokenURI``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    gateway_url: str,
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
    doc_url = f"{gateway_url.rstrip('/')}/.well-known/agent-registration.json"
    doc: dict[str, Any] = {}
    row = ""
    async with httpx.AsyncClient(timeout=10) as http:
        # Traefik picks up a new HTTPRoute (and the catalog's EndpointSlice) a moment after it is written.
        while time.monotonic() < deadline and not (doc.get("registrations") and row):
            r = await http.get(doc_url)
            if r.status_code == 200:
                doc = r.json()
            skill = await http.get(f"{gateway_url.rstrip('/')}/skill.md")
            if skill.status_code == 200:
                row = next((ln for ln in skill.text.splitlines() if ln.startswith(f"| {offer} |")), "")
            if not (doc.get("registrations") and row):
                await asyncio.sleep(0.2)
    if not doc.get("registrations") or not row:
        raise TimeoutError(f"document or /skill.md row not served through {gateway_url}; see .kube402/logs")
    say(f"  ERC-8004 agent {agent_id} on eip155:84532 (registry {registry.address}), owner {owner}")
    say(f"  registration tx {tx}")
    say(f"  agentURI on chain: {uri}")
    say(f"  document (through Traefik, served by kube402 catalog): {doc_url}")
    say(f"    registrations: {json.dumps(doc.get('registrations'))}")
    say(f"  /skill.md row: {row}")
    return {"agentId": agent_id, "tx": tx, "document": doc_url, "skill_row": row, "agentURI": uri}


async def _main() -> int:
    state = stack.load(Path.cwd() / ".kube402")
    if state is None or "ports" not in state.extra or "KUBE402_GATEWAY_URL" not in state.extra:
        print("no running demo environment: run `make demo` first", file=sys.stderr)
        return 1
    kube = Kube.connect(kubeconfig=state.kubeconfig, field_manager="kube402-demo")
    try:
        await register_step(
            kube,
            ns="llm",
            offer="demo-qwen",
            gateway_url=str(state.extra["KUBE402_GATEWAY_URL"]),
            rpc_url=state.rpc_url,
        )
    finally:
        await kube.aclose()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(asyncio.run(_main()))
