"""``kube402 sell register``: direct ERC-8004 registration of the stack's agent (SPEC §10).

The same fence-and-recover planner as the controller's RegistrationRequests
(:mod:`kube402.controller.direct_registration`), with the fence in a local state file; one registration per
chain named in ``--chain``. The key comes from ``--private-key-file`` or ``ERC8004_PRIVATE_KEY`` only, and is
never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from kube402.api import chains
from kube402.cli.errors import CliError, UsageError

__all__ = ["run"]

WELL_KNOWN = "/.well-known/agent-registration.json"


def _agent_uri(args: argparse.Namespace) -> str:
    if args.agent_uri:
        uri = str(args.agent_uri)
    elif args.endpoint:
        uri = str(args.endpoint).rstrip("/") + WELL_KNOWN
    elif os.environ.get("AGENT_BASE_URL") or os.environ.get("KUBE402_GATEWAY_URL"):
        base = os.environ.get("AGENT_BASE_URL") or os.environ["KUBE402_GATEWAY_URL"]
        uri = base.rstrip("/") + WELL_KNOWN
    else:
        raise UsageError(
            "--agent-uri or --endpoint is required: the URL the registration points at "
            "(or set AGENT_BASE_URL / KUBE402_GATEWAY_URL)"
        )
    if not uri.startswith(("https://", "http://")):
        raise UsageError(f"--agent-uri {uri!r}: must be an http(s) URL")
    return uri


def _key(args: argparse.Namespace) -> str:
    if args.private_key_file:
        path = Path(args.private_key_file)
        try:
            return path.read_text().strip()
        except OSError as err:
            raise CliError(f"--private-key-file {path}: cannot read it ({err.strerror})") from None
    env = os.environ.get("ERC8004_PRIVATE_KEY", "").strip()
    if env:
        return env
    raise UsageError(
        "--private-key-file is required (or set ERC8004_PRIVATE_KEY): the key that owns the agent"
    )


def _chains(text: str) -> list[chains.Chain]:
    found: list[chains.Chain] = []
    for name in (part.strip() for part in text.split(",")):
        try:
            found.append(chains.lookup(name))
        except (KeyError, ValueError):
            known = ", ".join(c.name for c in chains.CHAINS)
            raise UsageError(f"--chain {name!r}: unknown chain (one of {known})") from None
    return found


def run(args: argparse.Namespace) -> int:
    from kube402.chain import registry as chain_registry
    from kube402.controller import direct_registration as direct

    uri = _agent_uri(args)
    targets = _chains(args.chain)
    rpc_url = args.rpc_url or os.environ.get("ERC8004_RPC_URL") or os.environ.get("KUBE402_RPC_URL")
    if not rpc_url:
        raise UsageError("--rpc-url is required (or set ERC8004_RPC_URL): the chain's JSON-RPC endpoint")
    try:
        signer = chain_registry.local_signer(_key(args))
    except ValueError as err:
        raise CliError(str(err)) from None
    for chain in targets:
        try:
            outcome = asyncio.run(
                direct.register(agent_uri=uri, signer=signer, rpc_url=rpc_url, chain=chain.name)
            )
        except direct.RegistrationFailed as err:
            raise CliError(f"registration on {chain.name} failed: {err}") from None
        verb = "registered" if outcome.submitted else "already registered (adopted)"
        print(f"{chain.name}: agent {outcome.agent_id} {verb}")
        print(f"  owner:    {outcome.owner}")
        print(f"  registry: {outcome.agent_registry}")
        print(f"  agentURI: {outcome.agent_uri}")
        print(f"  tx:       {outcome.tx_hash}")
    return 0
