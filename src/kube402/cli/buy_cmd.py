"""``kube402 buy``: find a seller, read its terms, fund the buyer's voucher pool, see what is left.

``probe URL`` prints the terms of a seller's 402; ``discover`` walks the ERC-8004 identity registry;
``vouchers NAME`` signs N EIP-3009 vouchers for a seller's exact terms and writes ``x402-buyer-config`` /
``x402-buyer-auths`` (cluster or ``--out DIR``); ``status`` asks a running buyer; ``balance`` reads the chain.
The buyer's key comes only from ``--key-file``, ``$KUBE402_BUYER_KEY_FILE`` or ``$KUBE402_BUYER_KEY``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser"]

DEFAULT_BUYER_URL = "http://127.0.0.1:8402"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "buy", help="buyer tools: probe, discover, vouchers, status, balance", allow_abbrev=False
    )
    bsub = p.add_subparsers(dest="buy_command", metavar="SUBCOMMAND")

    pr = bsub.add_parser("probe", allow_abbrev=False, help="print a seller's payment terms from its 402")
    pr.add_argument("url")
    pr.add_argument("-o", "--output", choices=["text", "json"], default="text")
    pr.set_defaults(func=_sync(_probe))

    di = bsub.add_parser(
        "discover", allow_abbrev=False, help="list sellers registered in the ERC-8004 identity registry"
    )
    di.add_argument(
        "--registry-chain", default="base-sepolia", help="chain of the registry (default %(default)s)"
    )
    di.add_argument("--registry", default=None, help="registry address (default: the chain's official one)")
    di.add_argument(
        "--rpc-url", required=False, default=None, help="JSON-RPC URL of that chain (env KUBE402_RPC_URL)"
    )
    di.add_argument("--from-block", type=int, default=0)
    di.add_argument("-o", "--output", choices=["text", "json"], default="text")
    di.set_defaults(func=_sync(_discover))

    vo = bsub.add_parser(
        "vouchers", allow_abbrev=False, help="sign N vouchers for a seller and write the buyer's ConfigMaps"
    )
    vo.add_argument("name", help="upstream name in the buyer's config")
    vo.add_argument("--url", required=True, help="the seller's base URL, e.g. http://host/services/NAME")
    vo.add_argument("--count", type=int, required=True)
    vo.add_argument("--key-file", default=None, help="file with the buyer's hex private key")
    vo.add_argument(
        "--rpc-url", default=None, help="JSON-RPC URL of the seller's chain (env KUBE402_RPC_URL)"
    )
    vo.add_argument(
        "--validity", default="7d", help="voucher lifetime, e.g. 12h, 7d (default %(default)s, max 30d)"
    )
    vo.add_argument("--budget", default=None, help="refuse if the vouchers cost more than this many USDC")
    vo.add_argument("--model", default=None, help="the seller's model name (default: NAME)")
    out = vo.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", default=None, help="write config.json and auths.json into this directory")
    out.add_argument("--namespace", default=None, help="write the ConfigMaps into this namespace")
    vo.add_argument("--kubeconfig", default=None)
    _refuse_key(vo)
    vo.set_defaults(func=_sync(_vouchers))

    st = bsub.add_parser(
        "status", allow_abbrev=False, help="vouchers left per upstream, from a running buyer"
    )
    st.add_argument("--buyer-url", default=DEFAULT_BUYER_URL)
    st.add_argument("-o", "--output", choices=["text", "json"], default="text")
    st.set_defaults(func=_sync(_status))

    ba = bsub.add_parser("balance", allow_abbrev=False, help="the buyer's USDC (and gas) balance on chain")
    who = ba.add_mutually_exclusive_group()
    who.add_argument("--address", default=None)
    who.add_argument("--key-file", default=None)
    ba.add_argument("--rpc-url", default=None, help="JSON-RPC URL (env KUBE402_RPC_URL)")
    ba.add_argument("--network", default="base-sepolia")
    ba.add_argument("--buyer-url", default=None, help="also show the vouchers left on this running buyer")
    _refuse_key(ba)
    ba.set_defaults(func=_sync(_balance))

    def usage(_args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=usage)


class UsageError(Exception):
    pass


class _RefuseKey(argparse.Action):
    """``--key``/``--private-key``: refused without echoing the value (argparse would print it back)."""

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kw: Any) -> None:
        parser.error(
            "a private key is never taken on the command line: use --key-file FILE or $KUBE402_BUYER_KEY"
        )


def _refuse_key(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key", "--private-key", nargs="?", action=_RefuseKey, help=argparse.SUPPRESS)


def _sync(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        from kube402.buyer.market import MarketError

        try:
            return int(asyncio.run(fn(args)))
        except UsageError as err:
            print(f"kube402 buy: {err}", file=sys.stderr)
            return 2
        except MarketError as err:
            print(f"kube402 buy: {err}", file=sys.stderr)
            return 1

    return run


def _rpc_url(args: argparse.Namespace) -> str:
    import os

    url = args.rpc_url or os.environ.get("KUBE402_RPC_URL")
    if not url:
        raise UsageError("--rpc-url is required (or set $KUBE402_RPC_URL)")
    return str(url)


def _print_terms(p: Any) -> None:
    from kube402.buyer import market

    print(f"URL:       {p.url}")
    print(f"Status:    {p.status}{'' if p.valid else '  (' + p.problem + ')'}")
    if p.required is not None:
        res = p.required.resource or {}
        if res.get("url"):
            print(f"Resource:  {res.get('url')}")
        if res.get("description"):
            print(f"About:     {res.get('description')}")
        for i, req in enumerate(p.required.accepts):
            print(f"Option {i + 1}:")
            for k, v in market.describe(req).items():
                print(f"  {k + ':':<19}{v}")
    print(f"skill.md:  {p.skill_row or '(the seller publishes no /skill.md row for this URL)'}")


def _terms_json(p: Any) -> dict[str, Any]:
    from kube402.buyer import market

    return {
        "url": p.url,
        "status": p.status,
        "valid": p.valid,
        "problem": p.problem,
        "resource": dict(p.required.resource or {}) if p.required else None,
        "accepts": [
            dict(market.describe(r), amount=str(r.amount), network_id=r.network) for r in p.required.accepts
        ]
        if p.required
        else [],
        "skill": p.skill_row,
    }


async def _probe(args: argparse.Namespace) -> int:
    from kube402.buyer import market

    if not args.url.startswith(("http://", "https://")):
        raise UsageError(f"URL must start with http:// or https://, got {args.url!r}")
    p = await market.probe(args.url)
    if args.output == "json":
        print(json.dumps(_terms_json(p), indent=2))
    else:
        _print_terms(p)
    return 0 if p.valid else 1


async def _discover(args: argparse.Namespace) -> int:
    from kube402.api import chains
    from kube402.buyer import market

    try:
        chain = chains.lookup(args.registry_chain)
    except chains.UnknownNetworkError:
        raise UsageError(f"--registry-chain {args.registry_chain!r} is not a known chain") from None
    registry = args.registry or chains.identity_registry(chain.chain_id)
    found = await market.discover(
        _rpc_url(args), chain_id=chain.chain_id, registry=registry, from_block=args.from_block
    )
    if args.output == "json":
        print(
            json.dumps(
                [
                    {
                        "agentId": d.agent_id,
                        "owner": d.owner,
                        "name": d.name,
                        "agentURI": d.agent_uri if not d.agent_uri.startswith("data:") else "data:…",
                        "endpoint": d.endpoint,
                        "valid402": bool(d.probe and d.probe.valid),
                        "problem": d.problem,
                        "terms": _terms_json(d.probe) if d.probe else None,
                    }
                    for d in found
                ],
                indent=2,
            )
        )
        return 0
    print(f"{len(found)} registered agent(s) in {registry} on {chain.name}")
    print(f"{'AGENT-ID':<9} {'NAME':<20} {'402':<6} {'PRICE':<28} {'PAY-TO':<43} ENDPOINT")
    for d in found:
        price = payto = "-"
        if d.probe and d.probe.valid and d.probe.required:
            r = d.probe.required.accepts[0]
            desc = market.describe(r)
            price, payto = desc["price"].split(" (")[0], r.pay_to
        mark = "valid" if d.probe and d.probe.valid else "no"
        print(f"{d.agent_id:<9} {d.name[:20]:<20} {mark:<6} {price:<28} {payto:<43} {d.endpoint or '-'}")
        if d.problem:
            print(f"{'':<9} └ {d.problem}")
    return 0


async def _vouchers(args: argparse.Namespace) -> int:
    from kube402.api import chains
    from kube402.buyer import config as cfg
    from kube402.buyer import market, vouchers

    if not (1 <= args.count <= 100_000):
        raise UsageError("--count must be between 1 and 100000")
    if not args.url.startswith(("http://", "https://")):
        raise UsageError(f"--url must start with http:// or https://, got {args.url!r}")
    if not cfg._NAME.fullmatch(args.name):
        raise UsageError(f"NAME {args.name!r} must be a lower-case DNS-style name")
    validity = market.parse_validity(args.validity)
    rpc_url = _rpc_url(args)
    account = market.load_key(args.key_file)
    p = await market.probe(args.url, skill=False)
    if not p.valid or p.required is None:
        raise market.MarketError(f"--url {args.url}: {p.problem or 'no x402 terms'}")
    req = next((r for r in p.required.accepts if r.scheme == "exact"), None)
    assert req is not None
    try:
        chain = chains.lookup(req.network)
    except chains.UnknownNetworkError:
        raise market.MarketError(
            f"the seller asks for network {req.network}, which kube402 does not know"
        ) from None
    cost = req.amount * args.count
    if args.budget is not None:
        budget = market.budget_atomic(args.budget, decimals=chain.decimals)
        if cost > budget:
            raise market.MarketError(
                f"--budget {args.budget}: {args.count} vouchers at {market.usdc(req.amount, chain.decimals)} "
                f"cost {market.usdc(cost, chain.decimals)}, more than the budget"
            )
    from kube402.chain import rpc, token

    try:
        node = await rpc.connect(rpc_url, chain_id=chain.chain_id)
        usdc = token.Token(node, req.asset)
        balance = await usdc.balance_of(account.address)
        name, version = await usdc.name(), await usdc.version()
    except rpc.ChainError as err:
        raise market.MarketError(f"--rpc-url {rpc_url}: {err}") from None
    if (name, version) != (req.extra.get("name"), req.extra.get("version")):
        raise market.MarketError(
            f"the seller's EIP-712 domain {req.extra.get('name')!r}/{req.extra.get('version')!r} differs "
            f"from the token's {name!r}/{version!r}: vouchers would be invalid"
        )
    if balance < cost:
        raise market.MarketError(
            f"balance of {account.address} is {market.usdc(balance, chain.decimals)}; "
            f"{args.count} vouchers need {market.usdc(cost, chain.decimals)}"
        )
    signed = market.sign_vouchers(
        account, req, count=args.count, validity_seconds=validity, chain_id=chain.chain_id
    )
    del account
    terms = vouchers.Terms(network=chain.caip2, pay_to=req.pay_to, asset=req.asset, price=req.amount)
    assert all(terms.fits(v) for v in signed)
    upstream = {
        "url": args.url.rstrip("/"),
        "remoteModel": args.model or args.name,
        "network": chain.name,
        "payTo": req.pay_to,
        "asset": req.asset,
        "price": str(req.amount),
    }
    if args.out is not None:
        out = Path(args.out)
        pool = _write_files(out, args.name, upstream, signed)
        where = f"{out / cfg.CONFIG_KEY} and {out / cfg.AUTHS_KEY}"
    else:
        pool = await _write_configmaps(args, upstream, signed)
        where = (
            f"ConfigMaps {args.namespace}/{cfg.CONFIG_CONFIGMAP} and {args.namespace}/{cfg.AUTHS_CONFIGMAP}"
        )
    print(
        f"signed {args.count} vouchers for {args.name} ({market.usdc(req.amount, chain.decimals)} each, "
        f"{market.usdc(cost, chain.decimals)} total, payTo {req.pay_to}, {chain.name}); pool now {pool}; "
        f"wrote {where}"
    )
    print(f"model: paid/{upstream['remoteModel']}")
    return 0


def _write_files(out: Path, name: str, upstream: dict[str, str], signed: list[Any]) -> int:
    from kube402.buyer import local

    try:
        return local.write_files(out, name, upstream, signed)
    except OSError as err:
        from kube402.buyer.market import MarketError

        raise MarketError(f"--out {out}: cannot write ({err.strerror})") from None


async def _write_configmaps(args: argparse.Namespace, upstream: dict[str, str], signed: list[Any]) -> int:
    from kube402.buyer import config as cfg
    from kube402.buyer import market
    from kube402.kube import errors, resources
    from kube402.kube.client import Kube

    try:
        kube = Kube.connect(kubeconfig=args.kubeconfig, field_manager="kube402-buy")
    except Exception as err:  # noqa: BLE001 - kubeconfig problems of any kind become one sentence
        raise market.MarketError(
            f"--kubeconfig: cannot load a cluster config ({type(err).__name__})"
        ) from None
    try:
        cm_cfg = await kube.get(resources.CONFIGMAP, cfg.CONFIG_CONFIGMAP, namespace=args.namespace)
        cm_auths = await kube.get(resources.CONFIGMAP, cfg.AUTHS_CONFIGMAP, namespace=args.namespace)

        def data(cm: dict[str, Any] | None, key: str) -> dict[str, Any]:
            text = ((cm or {}).get("data") or {}).get(key) or "{}"
            try:
                obj = json.loads(text)
            except ValueError:
                return {}
            return obj if isinstance(obj, dict) else {}

        c, a = market.merge(
            data(cm_cfg, cfg.CONFIG_KEY), data(cm_auths, cfg.AUTHS_KEY), args.name, upstream, signed
        )
        ctext, atext = cfg.render(c["upstreams"], a)
        for name, key, text in (
            (cfg.AUTHS_CONFIGMAP, cfg.AUTHS_KEY, atext),
            (cfg.CONFIG_CONFIGMAP, cfg.CONFIG_KEY, ctext),
        ):
            await kube.apply(
                resources.CONFIGMAP,
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": args.namespace},
                    "data": {key: text},
                },
            )
        return len(a[args.name])
    except errors.ApiError as err:
        raise market.MarketError(f"--namespace {args.namespace}: the API server refused: {err}") from None
    finally:
        await kube.aclose()


async def _get_status(url: str) -> dict[str, Any]:
    import httpx

    from kube402.buyer import market

    try:
        async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
            resp = await http.get(url.rstrip("/") + "/status")
    except httpx.HTTPError as err:
        raise market.MarketError(f"--buyer-url {url}: unreachable ({type(err).__name__})") from None
    if resp.status_code != 200:
        raise market.MarketError(f"--buyer-url {url}: /status answered {resp.status_code}")
    obj = resp.json()
    return obj if isinstance(obj, dict) else {}


def _print_status(st: dict[str, Any]) -> None:
    ups = st.get("upstreams") or {}
    print(f"{'UPSTREAM':<20} {'MODEL':<28} {'REMAINING':>9} {'SPENT':>6} {'HELD':>5} {'EXPIRED':>7}  NETWORK")
    for name, u in ups.items():
        print(
            f"{name:<20} {u['public_model']:<28} {u['remaining']:>9} {u['spent']:>6} {u['held']:>5} "
            f"{u['expired']:>7}  {u['network']}"
        )


async def _status(args: argparse.Namespace) -> int:
    st = await _get_status(args.buyer_url)
    if args.output == "json":
        print(json.dumps(st, indent=2))
    else:
        _print_status(st)
    return 0


async def _balance(args: argparse.Namespace) -> int:
    from kube402.api import chains, money
    from kube402.buyer import market
    from kube402.chain import rpc, token

    try:
        chain = chains.lookup(args.network)
    except chains.UnknownNetworkError:
        raise UsageError(f"--network {args.network!r} is not a known chain") from None
    if args.address:
        import re

        if not re.fullmatch(r"0x[0-9a-fA-F]{40}", args.address):
            raise UsageError("--address must be 0x followed by 40 hex digits")
        address = args.address
    else:
        address = market.load_key(args.key_file).address
    rpc_url = _rpc_url(args)
    try:
        node = await rpc.connect(rpc_url, chain_id=chain.chain_id)
        bal = await token.Token(node, chain.usdc).balance_of(address)
        eth = await node.eth_balance(address)
    except rpc.ChainError as err:
        raise market.MarketError(f"--rpc-url {rpc_url}: {err}") from None
    print(f"Address:  {address}")
    print(
        f"USDC:     {money.format_atomic(bal, decimals=chain.decimals)} ({bal} atomic units) on {chain.name}"
    )
    print(f"Gas:      {money.format_atomic(eth, decimals=18)} ETH")
    if args.buyer_url:
        st = await _get_status(args.buyer_url)
        for name, u in (st.get("upstreams") or {}).items():
            committed = u["remaining"] * int(u["price"])
            print(
                f"Vouchers: {name}: {u['remaining']} left "
                f"({money.format_atomic(committed, decimals=chain.decimals)} USDC committed), "
                f"{u['spent']} spent"
            )
    return 0
