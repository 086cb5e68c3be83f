"""``kube402 sell …``: the seller CLI of SPEC 10 (``obol sell`` and ``monetize.py`` in one).

Every command validates its flags first (nothing is sent on a usage error, exit 2), then talks to the API
server through :mod:`kube402.kube` (exit 1 with one sentence on any failure). ``sell local`` (no cluster)
lives in :mod:`kube402.cli.sell_local`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from kube402 import __version__
from kube402.api import names, v1alpha1
from kube402.cli import sell_validate as check
from kube402.cli.errors import CliError, UsageError
from kube402.cli.sell_kube import Cluster, gateway_url
from kube402.cli.sell_output import OFFER_COLUMNS, dump, offer_row, table, to_yaml
from kube402.cli.sell_progress import Progress, condition_is, ready, wait_offer
from kube402.kube import resources
from kube402.verifier import config as verifier_config
from kube402.verifier import offers as verifier_offers

__all__ = ["add_parser"]

PRICING_CONFIGMAP = "x402-pricing"
PRICING_KEY = "pricing.yaml"
SECRETS = "x402-secrets"
DEFAULT_PORT = 8080


# -- parser ----------------------------------------------------------------------------------------


def _cluster_flags() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("cluster")
    g.add_argument(
        "--kubeconfig",
        default=None,
        help="kubeconfig file (default $KUBECONFIG, ~/.kube/config, .kube402/dev.env)",
    )
    g.add_argument("--context", default=None, help="kubeconfig context (default: its current context)")
    g.add_argument("--request-timeout", type=float, default=10.0, help="seconds per API request (default 10)")
    return p


def _ns_flag(p: argparse.ArgumentParser, *, default: str | None = "default") -> None:
    p.add_argument("-n", "--namespace", default=default, help=f"namespace (default {default or 'all'})")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sell",
        help="sell an HTTP service: offers, pricing, status, test, pause, delete (SPEC 10)",
        description="Sell HTTP services for x402 micropayments: ServiceOffers on a cluster, "
        "or `sell local` without one.",
    )
    s = p.add_subparsers(dest="sell_command", metavar="COMMAND", required=True)
    kube = _cluster_flags()

    h = s.add_parser("http", parents=[kube], help="create or update a ServiceOffer (server-side apply)")
    h.add_argument("name", nargs="?", help="offer name (DNS-1123 label); from --from-json when omitted")
    _ns_flag(h, default=None)
    h.add_argument("--upstream", help="Service (in the offer's namespace) that serves the API")
    h.add_argument("--port", type=int, help=f"upstream Service port (default {DEFAULT_PORT})")
    h.add_argument("-w", "--wallet", help="address receiving the payments (env X402_WALLET)")
    h.add_argument("--chain", help="payment chain (default base-sepolia)")
    price = h.add_mutually_exclusive_group()
    price.add_argument("--price", "--per-request", dest="per_request", help="USDC per request, e.g. 0.001")
    price.add_argument("--per-mtok", help="USDC per million tokens (charged as 1000 tokens per request)")
    price.add_argument("--per-hour", help="USDC per hour (charged as 5 minutes per request)")
    h.add_argument("--health-path", help="upstream health path (default /health)")
    h.add_argument("--path", help="public path (default /services/<name>)")
    h.add_argument(
        "--max-timeout", type=int, help="payment validity and route timeout in seconds (default 300)"
    )
    h.add_argument("--type", choices=[t.value for t in v1alpha1.OfferType], help="offer type (default http)")
    h.add_argument("--model", help="model name (inference offers)")
    h.add_argument("--runtime", choices=["ollama", "vllm", "tgi"], help="model runtime (default ollama)")
    h.add_argument(
        "--gate-mode", choices=[m.value for m in v1alpha1.GateMode], help="forwardAuth (default) or proxy"
    )
    h.add_argument("--register", action="store_true", default=None, help="publish an ERC-8004 registration")
    h.add_argument("--register-name")
    h.add_argument("--register-description")
    h.add_argument("--register-image")
    h.add_argument("--register-skills", action="append", default=None, metavar="SKILL")
    h.add_argument("--register-domains", action="append", default=None, metavar="DOMAIN")
    h.add_argument("--register-metadata", action="append", default=None, metavar="KEY=VALUE")
    h.add_argument("--provenance-file", help="JSON or YAML file with spec.provenance")
    h.add_argument(
        "--from-json", metavar="FILE|-", help="a spec or a whole ServiceOffer manifest (JSON or YAML)"
    )
    h.add_argument("--wait", action="store_true", help="wait until Ready, showing each condition")
    h.add_argument("--timeout", type=float, default=240.0, help="seconds --wait waits (default 240)")
    h.add_argument("--dry-run", action="store_true", help="print the manifest instead of applying it")
    h.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml", help="--dry-run format")
    h.add_argument("--obol-token", help=argparse.SUPPRESS)
    h.set_defaults(func=run_http)

    ls = s.add_parser("list", parents=[kube], help="list offers (all namespaces unless -n)")
    _ns_flag(ls, default=None)
    ls.add_argument("-o", "--output", choices=["table", "wide", "json", "yaml"], default="table")
    ls.set_defaults(func=_run(cmd_list))

    st = s.add_parser("status", parents=[kube], help="one offer as YAML, or the payment configuration")
    st.add_argument("name", nargs="?")
    _ns_flag(st)
    st.add_argument("-o", "--output", choices=["yaml", "json", "text"], default=None)
    st.add_argument("--system-namespace", default=names.SYSTEM_NAMESPACE, help=argparse.SUPPRESS)
    st.set_defaults(func=_run(cmd_status))

    t = s.add_parser("test", parents=[kube], help="check that the offer answers 402 through the gateway")
    t.add_argument("name")
    _ns_flag(t)
    t.add_argument(
        "--host", help="gateway host[:port] or URL (default $KUBE402_GATEWAY_URL, else obol.stack:8080)"
    )
    t.add_argument("--path", default="/health", help="path below the offer's endpoint (default /health)")
    t.set_defaults(func=_run(cmd_test))

    for cmd, alias, func, what in (
        ("stop", "pause", cmd_stop, "pause an offer (withdraws gate and route)"),
        ("resume", "start", cmd_resume, "resume a paused offer"),
    ):
        q = s.add_parser(cmd, aliases=[alias], parents=[kube], help=what)
        q.add_argument("name")
        _ns_flag(q)
        q.add_argument("--wait", action="store_true", help="wait for the controller")
        q.add_argument("--timeout", type=float, default=120.0)
        q.set_defaults(func=_run(func))

    d = s.add_parser("delete", parents=[kube], help="delete an offer and wait until its children are gone")
    d.add_argument("name")
    _ns_flag(d)
    d.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    d.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True)
    d.add_argument("--timeout", type=float, default=120.0)
    d.set_defaults(func=run_delete)

    pr = s.add_parser("pricing", parents=[kube], help="set wallet, chain and facilitator (x402-pricing)")
    pr.add_argument("-w", "--wallet", help="default payTo (env X402_WALLET)")
    pr.add_argument("--chain", help="default chain")
    pr.add_argument("--facilitator-url", help="facilitator base URL (env X402_FACILITATOR_URL)")
    pr.add_argument("--from-json", metavar="FILE|-", help="object with wallet, chain, facilitatorURL")
    pr.add_argument("--system-namespace", default=names.SYSTEM_NAMESPACE, help=argparse.SUPPRESS)
    pr.set_defaults(func=_run(cmd_pricing))

    w = s.add_parser("wait", parents=[kube], help="wait until offers are Ready, printing condition changes")
    w.add_argument("name", nargs="?")
    w.add_argument("--all", action="store_true", help="every offer in -n (or in all namespaces)")
    _ns_flag(w, default=None)
    w.add_argument("--timeout", type=float, default=240.0)
    w.add_argument("--quick", action="store_true", help="do not wait: report and exit 0 iff all are Ready")
    w.set_defaults(func=_run(cmd_wait))

    i = s.add_parser("info", parents=[kube], help="versions, contexts and the pricing summary")
    i.add_argument("--system-namespace", default=names.SYSTEM_NAMESPACE, help=argparse.SUPPRESS)
    i.set_defaults(func=_run(cmd_info))

    r = s.add_parser("register", help="direct ERC-8004 registration of the stack's agent")
    r.add_argument("--chain", default="base-sepolia")
    r.add_argument("--endpoint")
    r.add_argument("--name", default="Obol Agent")
    r.add_argument("--description")
    r.add_argument("--image")
    r.add_argument("--agent-uri")
    r.add_argument("--private-key-file")
    r.add_argument("--rpc-url")
    r.add_argument("--sponsored", action="store_true")
    r.set_defaults(func=cmd_register)

    from kube402.cli import sell_local

    sell_local.add_parser(s)


def _run(fn: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        result = asyncio.run(fn(args))
        return int(result or 0)

    return run


def _open(args: argparse.Namespace) -> Any:
    return Cluster.open(
        kubeconfig=args.kubeconfig, context=args.context, request_timeout=args.request_timeout
    )


def _say(text: str) -> None:
    print(text, flush=True)


# -- input helpers ---------------------------------------------------------------------------------


def _read_doc(source: str, flag: str) -> Any:
    """JSON or YAML from a file or ``-`` (stdin)."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as err:
        raise UsageError(f"{flag} {source}: cannot read it ({err.strerror or err})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise UsageError(f"{flag} {source}: neither JSON nor YAML") from None


def _wallet(value: str | None, *, required: bool = True) -> str | None:
    wallet = value or os.environ.get("X402_WALLET") or None
    if wallet is None and required and sys.stdin.isatty():
        wallet = input("Wallet address (0x…) that receives the payments: ").strip() or None
    if wallet is None:
        if required:
            raise UsageError(
                "--wallet is required (or set X402_WALLET): the 0x address that receives the payments"
            )
        return None
    return check.check_wallet(wallet)


def build_offer(args: argparse.Namespace) -> dict[str, Any]:
    """The manifest ``sell http`` applies: --from-json as the base, flags on top, then every rule checked."""
    if args.obol_token is not None:
        raise UsageError("--obol-token is not supported by kube402 (it manages no tunnels)")
    base: dict[str, Any] = {}
    spec: dict[str, Any] = {}
    if args.from_json:
        doc = _read_doc(args.from_json, "--from-json")
        if not isinstance(doc, dict):
            raise UsageError("--from-json: expected an object (a ServiceOffer spec or manifest)")
        if "spec" in doc or "kind" in doc or "apiVersion" in doc:
            if doc.get("kind", names.KIND_OFFER) != names.KIND_OFFER:
                raise UsageError(f"--from-json: kind {doc.get('kind')!r} is not ServiceOffer")
            base = copy.deepcopy(doc)
            spec = copy.deepcopy(doc.get("spec") or {})
        else:
            spec = copy.deepcopy(doc)
    meta = base.get("metadata") or {}
    name = args.name or meta.get("name")
    if not name:
        raise UsageError("NAME is required (or a --from-json manifest with metadata.name)")
    namespace = args.namespace or meta.get("namespace") or "default"
    check.check_name(str(name), flag="NAME", what="ServiceOffer name")
    check.check_name(str(namespace), flag="--namespace", what="namespace")

    up = dict(spec.get("upstream") or {})
    if args.upstream:
        up["service"] = args.upstream
    if not up.get("service"):
        raise UsageError("--upstream is required: the name of the Service that serves the API")
    up.setdefault("namespace", "")
    if args.port is not None:
        up["port"] = args.port
    up.setdefault("port", DEFAULT_PORT)
    if args.health_path is not None:
        up["healthPath"] = args.health_path
    spec["upstream"] = up

    pay = dict(spec.get("payment") or {})
    pay["network"] = args.chain or pay.get("network") or "base-sepolia"
    check.check_chain(pay["network"])
    if args.wallet or not pay.get("payTo"):
        pay["payTo"] = _wallet(args.wallet)
    for flag, key in (("per_request", "perRequest"), ("per_mtok", "perMTok"), ("per_hour", "perHour")):
        value = getattr(args, flag)
        if value is not None:
            pay["price"] = {key: value}
    if not pay.get("price"):
        raise UsageError("a price is required: pass --price (USDC per request), --per-mtok or --per-hour")
    if args.max_timeout is not None:
        pay["maxTimeoutSeconds"] = args.max_timeout
    spec["payment"] = pay

    spec["type"] = args.type or spec.get("type") or "http"
    if args.model:
        spec["model"] = {"name": args.model, "runtime": args.runtime or "ollama"}
    elif args.runtime:
        raise UsageError("--runtime needs --model")
    if args.path is not None:
        spec["path"] = args.path
    if args.gate_mode:
        spec["gateMode"] = args.gate_mode
    reg = dict(spec.get("registration") or {})
    for flag, key in (
        ("register_name", "name"),
        ("register_description", "description"),
        ("register_image", "image"),
    ):
        if getattr(args, flag) is not None:
            reg[key] = getattr(args, flag)
    if args.register_skills:
        reg["skills"] = args.register_skills
    if args.register_domains:
        reg["domains"] = args.register_domains
    if args.register_metadata:
        meta_map: dict[str, str] = {}
        for item in args.register_metadata:
            k, sep, v = item.partition("=")
            if not sep or not k:
                raise UsageError(f"--register-metadata {item!r}: expected KEY=VALUE")
            meta_map[k] = v
        reg["metadata"] = meta_map
    if args.register:
        reg["enabled"] = True
    if reg:
        spec["registration"] = reg
    if args.provenance_file:
        prov = _read_doc(args.provenance_file, "--provenance-file")
        if not isinstance(prov, dict) or not all(isinstance(v, str) for v in prov.values()):
            raise UsageError("--provenance-file: expected an object of string values")
        spec["provenance"] = prov

    out_meta: dict[str, Any] = {"name": name, "namespace": namespace}
    for key in ("labels", "annotations"):
        if meta.get(key):
            out_meta[key] = meta[key]
    manifest = {"apiVersion": names.API_VERSION, "kind": names.KIND_OFFER, "metadata": out_meta, "spec": spec}
    check.check_offer(manifest)
    return manifest


# -- commands --------------------------------------------------------------------------------------


def run_http(args: argparse.Namespace) -> int:
    manifest = build_offer(args)  # may prompt for the wallet: before the event loop
    if args.dry_run:
        sys.stdout.write(dump(manifest, args.output))
        return 0
    return asyncio.run(cmd_http(args, manifest))


async def cmd_http(args: argparse.Namespace, manifest: dict[str, Any]) -> int:
    name, ns = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    kind = manifest["spec"]["type"]
    async with _open(args) as c:
        await c.require_crds()
        existed = await c.get(resources.SERVICE_OFFER, name, namespace=ns) is not None
        await c.call(
            "apply", resources.SERVICE_OFFER, c.kube.apply(resources.SERVICE_OFFER, manifest), namespace=ns
        )
        _say(f"ServiceOffer {ns}/{name} {'updated' if existed else 'created'} (type: {kind})")
        if args.wait:
            await _wait_ready(c, name, ns, seconds=args.timeout)
    return 0


async def _wait_ready(c: Cluster, name: str, ns: str, *, seconds: float) -> None:
    progress = Progress()
    await wait_offer(
        lambda: c.get(resources.SERVICE_OFFER, name, namespace=ns),
        key=f"{ns}/{name}",
        until=ready,
        goal="Ready",
        seconds=seconds,
        progress=progress,
    )
    _say(f"ServiceOffer {ns}/{name} is Ready ({progress.elapsed():.1f}s)")


def _clean(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    (out.get("metadata") or {}).pop("managedFields", None)
    return out


async def cmd_list(args: argparse.Namespace) -> int:
    async with _open(args) as c:
        await c.require_crds()
        items = await c.list(resources.SERVICE_OFFER, namespace=args.namespace)
    items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"].get("name", "")))
    if args.output in ("json", "yaml"):
        doc = {"apiVersion": "v1", "kind": "List", "items": [_clean(o) for o in items], "metadata": {}}
        sys.stdout.write(dump(doc, args.output))
        return 0
    if not items:
        where = f" in {args.namespace} namespace" if args.namespace else ""
        print(f"No resources found{where}.", file=sys.stderr)
        return 0
    headers: list[str] = list(OFFER_COLUMNS)
    rows = [offer_row(o) for o in items]
    if args.output == "wide":
        headers += ["MODE", "PATH", "UPSTREAM"]
        for row, o in zip(rows, items, strict=True):
            so = v1alpha1.ServiceOffer.from_dict(o)
            row += [so.effective_gate_mode(), so.effective_path, f"{so.upstream.service}:{so.upstream_port}"]
    sys.stdout.write(table(headers, rows))
    return 0


async def _pricing(c: Cluster, system_ns: str) -> tuple[dict[str, Any], str]:
    """(raw pricing.yaml mapping, wallet from the Secret or '')."""
    cm = await c.get(resources.CONFIGMAP, PRICING_CONFIGMAP, namespace=system_ns)
    raw: dict[str, Any] = {}
    text = ((cm or {}).get("data") or {}).get(PRICING_KEY)
    if text:
        loaded = yaml.load(text, Loader=verifier_config._Loader)
        raw = loaded if isinstance(loaded, dict) else {}
    wallet = ""
    try:
        secret = await c.get(resources.SECRET, SECRETS, namespace=system_ns)
    except CliError:
        secret = None  # not readable with these credentials: show the ConfigMap's wallet
    encoded = ((secret or {}).get("data") or {}).get("WALLET_ADDRESS")
    if isinstance(encoded, str):
        wallet = base64.b64decode(encoded).decode(errors="replace").strip()
    return raw, wallet


async def cmd_status(args: argparse.Namespace) -> int:
    async with _open(args) as c:
        if args.name:
            await c.require_crds()
            obj = await c.offer(args.name, args.namespace)
            sys.stdout.write(dump(_clean(obj), args.output if args.output in ("json", "yaml") else "yaml"))
            return 0
        raw, secret_wallet = await _pricing(c, args.system_namespace)
        await c.require_crds()
        items = await c.list(resources.SERVICE_OFFER)
    static = raw.get("routes") if isinstance(raw.get("routes"), list) else []
    published = sum(1 for o in items if verifier_offers.published(v1alpha1.ServiceOffer.from_dict(o)))
    summary = {
        "wallet": secret_wallet or str(raw.get("wallet") or ""),
        "chain": str(raw.get("chain") or "base-sepolia"),
        "facilitator": str(raw.get("facilitatorURL") or verifier_config.DEFAULT_FACILITATOR),
        "verifyOnly": raw.get("verifyOnly") is True,
        "routes": len(static or []) + published,
    }
    registered = [o for o in items if (o.get("status") or {}).get("agentId") not in (None, "")]
    if args.output in ("json", "yaml"):
        summary["registrations"] = [
            {
                "namespace": o["metadata"]["namespace"],
                "name": o["metadata"]["name"],
                "agentId": o["status"]["agentId"],
                "tx": (o.get("status") or {}).get("registrationTxHash", ""),
            }
            for o in registered
        ]
        sys.stdout.write(dump(summary, args.output))
        return 0
    print("Payment Configuration")
    print(f"  Wallet:       {summary['wallet'] or '<not set: kube402 sell pricing --wallet 0x…>'}")
    print(f"  Chain:        {summary['chain']}")
    print(f"  Facilitator:  {summary['facilitator']}")
    print(f"  Verify Only:  {str(summary['verifyOnly']).lower()}")
    print(f"  Routes:       {summary['routes']}")
    print()
    print("ERC-8004 Registrations")
    rows = [
        [
            o["metadata"]["namespace"],
            o["metadata"]["name"],
            str(o["status"]["agentId"]),
            str(o["status"].get("registrationTxHash", "")),
        ]
        for o in registered
    ]
    sys.stdout.write(table(["NAMESPACE", "NAME", "AGENT-ID", "TX"], rows))
    return 0


def _test_url(host: str, endpoint: str, path: str) -> str:
    base = host if "://" in host else f"http://{host}"
    return base.rstrip("/") + endpoint.rstrip("/") + (path if path.startswith("/") else "/" + path)


async def cmd_test(args: argparse.Namespace) -> int:
    check.check_name(args.name, flag="NAME", what="ServiceOffer name")
    if ".." in args.path:
        raise UsageError(f"--path {args.path!r}: must not contain ..")
    async with _open(args) as c:
        await c.require_crds()
        obj = await c.offer(args.name, args.namespace)
    offer = v1alpha1.ServiceOffer.from_dict(obj)
    endpoint = str((obj.get("status") or {}).get("endpoint") or offer.effective_path)
    host = gateway_url(args.host)
    url = _test_url(host, endpoint, args.path)
    try:
        async with httpx.AsyncClient(timeout=15.0, trust_env=False) as http:
            resp = await http.get(url)
    except httpx.HTTPError as err:
        raise CliError(
            f"cannot reach the gateway at {host} ({type(err).__name__}: {err or 'no answer'}); "
            "pass --host HOST[:PORT] or set KUBE402_GATEWAY_URL"
        ) from None
    lines, code = test_verdict(url, resp.status_code, resp.reason_phrase, resp.text)
    for line in lines:
        _say(line)
    return code


def test_verdict(url: str, status: int, reason: str, body: str) -> tuple[list[str], int]:
    """What ``sell test`` says about one unpaid GET (SPEC 10): 402 is the only success."""
    if status == 402:
        return ["Endpoint is live and payment-gated.", f"  GET {url} → 402 Payment Required"], 0
    if status == 200:
        return [f"warning: GET {url} answered 200 without payment: the payment gate is not enforcing"], 1
    head = body[:300].strip().replace("\n", " ")
    return [f"GET {url} → {status} {reason}: {head}"], 1


async def _set_paused(args: argparse.Namespace, paused: bool) -> int:
    check.check_name(args.name, flag="NAME", what="ServiceOffer name")
    check.check_name(args.namespace, flag="--namespace", what="namespace")
    name, ns = args.name, args.namespace
    async with _open(args) as c:
        await c.require_crds()
        await c.offer(name, ns)
        patch = {"metadata": {"annotations": {names.ANNOTATION_PAUSED: "true" if paused else None}}}
        await c.call(
            "patch",
            resources.SERVICE_OFFER,
            c.kube.merge_patch(resources.SERVICE_OFFER, name, patch, namespace=ns),
            namespace=ns,
        )
        _say(f"ServiceOffer {ns}/{name} {'paused' if paused else 'resumed'}")
        if args.wait and paused:
            await wait_offer(
                lambda: c.get(resources.SERVICE_OFFER, name, namespace=ns),
                key=f"{ns}/{name}",
                until=lambda o: condition_is(o, "RoutePublished", "False", "Paused"),
                goal="RoutePublished is False (Paused)",
                seconds=args.timeout,
                progress=Progress(),
            )
            _say(f"ServiceOffer {ns}/{name}: route withdrawn")
        elif args.wait:
            await _wait_ready(c, name, ns, seconds=args.timeout)
    return 0


async def cmd_stop(args: argparse.Namespace) -> int:
    return await _set_paused(args, True)


async def cmd_resume(args: argparse.Namespace) -> int:
    return await _set_paused(args, False)


def run_delete(args: argparse.Namespace) -> int:
    check.check_name(args.name, flag="NAME", what="ServiceOffer name")
    check.check_name(args.namespace, flag="--namespace", what="namespace")
    name, ns = args.name, args.namespace
    if not args.force:
        if not sys.stdin.isatty():
            raise UsageError(
                f"refusing to delete ServiceOffer {ns}/{name} without confirmation: pass --force"
            )
        answer = input(f"Delete ServiceOffer {ns}/{name}? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            _say("not deleted")
            return 1
    return asyncio.run(cmd_delete(args))


async def cmd_delete(args: argparse.Namespace) -> int:
    name, ns = args.name, args.namespace
    async with _open(args) as c:
        await c.require_crds()
        await c.offer(name, ns)
        await c.call(
            "delete",
            resources.SERVICE_OFFER,
            c.kube.delete(resources.SERVICE_OFFER, name, namespace=ns),
            namespace=ns,
        )
        _say(f"ServiceOffer {ns}/{name} deletion requested")
        if not args.wait:
            return 0
        progress = Progress()
        children = [
            ("ServiceOffer", resources.SERVICE_OFFER, name),
            ("Middleware", resources.MIDDLEWARE, names.middleware_name(name)),
            ("HTTPRoute", resources.HTTPROUTE, names.httproute_name(name)),
        ]
        deadline = asyncio.get_running_loop().time() + args.timeout
        for label, res, obj_name in children:
            progress.status(f"{ns}/{name}: waiting until {label} {obj_name} is gone")
            while True:
                obj = await c.get(res, obj_name, namespace=ns)
                if obj is None:
                    progress.event(f"{label} {ns}/{obj_name} gone")
                    break
                if asyncio.get_running_loop().time() >= deadline:
                    progress.done()
                    fins = (obj.get("metadata") or {}).get("finalizers") or []
                    why = (
                        f": finalizers {', '.join(fins)} still present (is the controller running?)"
                        if fins
                        else ""
                    )
                    raise CliError(
                        f"timed out after {args.timeout:g}s: {label} {ns}/{obj_name} still exists{why}"
                    )
                for _ in range(3):
                    await asyncio.sleep(0.1)
                    progress.tick()
        progress.done()
        _say(f"ServiceOffer {ns}/{name} deleted")
    return 0


async def cmd_pricing(args: argparse.Namespace) -> int:
    given: dict[str, Any] = {}
    if args.from_json:
        doc = _read_doc(args.from_json, "--from-json")
        if not isinstance(doc, dict):
            raise UsageError("--from-json: expected an object with wallet, chain and/or facilitatorURL")
        given.update({k: doc[k] for k in ("wallet", "chain", "facilitatorURL") if k in doc})
    wallet = args.wallet or given.get("wallet") or os.environ.get("X402_WALLET")
    if wallet:
        given["wallet"] = check.check_wallet(str(wallet))
    chain = args.chain or given.get("chain")
    if chain:
        check.check_chain(str(chain))
        given["chain"] = str(chain)
    fac = args.facilitator_url or given.get("facilitatorURL") or os.environ.get("X402_FACILITATOR_URL")
    if fac:
        given["facilitatorURL"] = check.check_facilitator_url(str(fac))
    if not given:
        raise UsageError("nothing to set: pass --wallet, --chain and/or --facilitator-url")
    ns = args.system_namespace
    async with _open(args) as c:
        raw, secret_wallet = await _pricing(c, ns)
        merged = {**raw, **given, "verifyOnly": False}
        if not merged.get("wallet") and secret_wallet:
            merged["wallet"] = secret_wallet
        if not merged.get("wallet"):
            raise UsageError("--wallet is required (or set X402_WALLET): no wallet is configured yet")
        merged.setdefault("chain", "base-sepolia")
        merged.setdefault("facilitatorURL", verifier_config.DEFAULT_FACILITATOR)
        text = yaml.safe_dump(merged, sort_keys=False, default_flow_style=False)
        try:
            verifier_config.parse(text, env={})
        except verifier_config.ConfigError as err:
            raise CliError(f"the resulting pricing.yaml would be rejected by the verifier: {err}") from None
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRETS, "namespace": ns},
            "type": "Opaque",
            "data": {"WALLET_ADDRESS": base64.b64encode(str(merged["wallet"]).encode()).decode()},
        }
        cm = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": PRICING_CONFIGMAP, "namespace": ns},
            "data": {PRICING_KEY: text},
        }
        await c.call("apply", resources.SECRET, c.kube.apply(resources.SECRET, secret), namespace=ns)
        await c.call("apply", resources.CONFIGMAP, c.kube.apply(resources.CONFIGMAP, cm), namespace=ns)
    _say(f"Payment configuration updated ({ns}/{PRICING_CONFIGMAP}, {ns}/{SECRETS})")
    _say(f"  Wallet:       {merged['wallet']}")
    _say(f"  Chain:        {merged['chain']}")
    _say(f"  Facilitator:  {merged['facilitatorURL']}")
    _say("  Verify Only:  false")
    return 0


async def cmd_wait(args: argparse.Namespace) -> int:
    if bool(args.name) == bool(args.all):
        raise UsageError("pass exactly one of NAME or --all")
    if args.name:
        check.check_name(args.name, flag="NAME", what="ServiceOffer name")
    ns = args.namespace or ("default" if args.name else None)
    async with _open(args) as c:
        await c.require_crds()
        if args.name:
            assert ns is not None
            keys = [(ns, args.name)]
            await c.offer(args.name, ns)
        else:
            items = await c.list(resources.SERVICE_OFFER, namespace=ns)
            keys = sorted((o["metadata"]["namespace"], o["metadata"]["name"]) for o in items)
            if not keys:
                _say("no ServiceOffers to wait for")
                return 0
        if args.quick:
            not_ready = []
            for kns, kname in keys:
                obj = await c.get(resources.SERVICE_OFFER, kname, namespace=kns)
                ok = ready(obj)
                _say(f"{kns}/{kname}: {'Ready' if ok else 'not Ready'}")
                if not ok:
                    not_ready.append(kname)
            return 1 if not_ready else 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + args.timeout
        for kns, kname in keys:
            await _wait_ready(c, kname, kns, seconds=max(deadline - loop.time(), 0.0))
    return 0


async def cmd_info(args: argparse.Namespace) -> int:
    print(f"kube402 {__version__} (python {sys.version.split()[0]})")
    async with _open(args) as c:
        print(f"Kubeconfig:   {c.kubeconfig} (from {c.source})")
        print(f"Context:      {c.context or '-'}")
        print(f"Server:       {c.server or '-'}")
        version = await c.call("get", "/version", c.kube.version())
        print(f"API server:   {version.get('gitVersion', '?')}")
        try:
            await c.require_crds()
            crds = f"{names.PLURAL_OFFER}.{names.GROUP} {names.VERSION} installed"
        except CliError as err:
            crds = str(err)
        print(f"CRDs:         {crds}")
        raw, secret_wallet = await _pricing(c, args.system_namespace)
    print(f"Gateway:      {gateway_url(None)}")
    print("Pricing:")
    print(f"  Wallet:       {secret_wallet or raw.get('wallet') or '<not set>'}")
    print(f"  Chain:        {raw.get('chain') or 'base-sepolia'}")
    print(f"  Facilitator:  {raw.get('facilitatorURL') or verifier_config.DEFAULT_FACILITATOR}")
    print(f"  Verify Only:  {str(raw.get('verifyOnly') is True).lower()}")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    if args.sponsored:
        raise UsageError(
            "--sponsored is refused: gasless sponsored registration produced event-less transactions"
        )
    from kube402.cli import sell_register

    return sell_register.run(args)


def describe(obj: Mapping[str, Any]) -> str:
    """The offer as ``sell status`` prints it (kubectl-style YAML)."""
    return to_yaml(_clean(dict(obj)))
