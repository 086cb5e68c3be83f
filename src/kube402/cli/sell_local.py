"""``kube402 sell local``: the verifier's proxy gate in the foreground before a local upstream, no cluster.

The gate is :class:`kube402.verifier.main.Verifier` itself in its file route source: the offers given by
flags, or by ``--offers offers.yaml``, become the static routes of a ``pricing.yaml`` (each with an
``upstream`` base URL, so the proxy gate serves it), and the verifier's own parser validates and applies it.
So a local sale has the same 402 answer, local checks, replay guard, settle-after-2xx and metrics as an offer
on a cluster. The offers file is polled and re-applied when it changes; a broken edit is reported and the
previous offers keep serving.

``offers.yaml``::

    wallet: "0x…"                 # default payTo
    chain: base-sepolia           # default chain
    facilitatorURL: http://127.0.0.1:4040
    offers:
      - name: qwen
        upstream: http://127.0.0.1:11434
        price: "0.001"            # or perMTok / perHour, like the ServiceOffer price
        path: /services/qwen      # default /services/<name>
        wallet / chain / maxTimeoutSeconds / description   # optional per offer
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import sys
import tempfile
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from kube402.api import chains, money, validation
from kube402.cli import sell_validate as check
from kube402.cli.errors import UsageError
from kube402.verifier import config as verifier_config

if TYPE_CHECKING:
    from kube402.verifier.main import Verifier

__all__ = ["LocalOffer", "add_parser", "load_offers", "pricing_text"]

DEFAULT_LISTEN = "127.0.0.1:8402"
PRICE_KEYS = (
    ("price", "perRequest"),
    ("perRequest", "perRequest"),
    ("perMTok", "perMTok"),
    ("perHour", "perHour"),
)


@dataclasses.dataclass(frozen=True, slots=True)
class LocalOffer:
    name: str
    upstream: str
    price_model: str
    price: str
    pay_to: str
    chain: chains.Chain
    path: str
    max_timeout_seconds: int = 300
    description: str = ""

    @property
    def amount(self) -> int:
        return money.per_request_charge({self.price_model: self.price}, decimals=self.chain.decimals).amount


@dataclasses.dataclass(frozen=True, slots=True)
class LocalConfig:
    facilitator_url: str
    offers: tuple[LocalOffer, ...]
    wallet: str
    chain: str
    facilitator_token_file: str = ""
    """A bearer-token file the gate sends to the facilitator (``facilitatorTokenFile``); empty: none."""


def add_parser(s: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = s.add_parser(
        "local",
        help="sell a local service without Kubernetes: the verifier's proxy gate in the foreground",
        description="Run the x402 proxy gate in front of a local upstream (no cluster, no controller).",
    )
    p.add_argument("name", nargs="?", help="offer name (DNS-1123 label); not with --offers")
    p.add_argument("--upstream", help="upstream base URL, e.g. http://127.0.0.1:11434")
    price = p.add_mutually_exclusive_group()
    price.add_argument("--price", "--per-request", dest="per_request", help="USDC per request, e.g. 0.001")
    price.add_argument("--per-mtok", help="USDC per million tokens (charged as 1000 tokens per request)")
    price.add_argument("--per-hour", help="USDC per hour (charged as 5 minutes per request)")
    p.add_argument("-w", "--wallet", help="address receiving the payments (env X402_WALLET)")
    p.add_argument("--chain", help="payment chain (default base-sepolia)")
    p.add_argument(
        "--facilitator-url",
        help=f"facilitator (env X402_FACILITATOR_URL, default {verifier_config.DEFAULT_FACILITATOR})",
    )
    p.add_argument(
        "--facilitator-token-file",
        help="file with the facilitator's bearer token (env KUBE402_FACILITATOR_TOKEN_FILE)",
    )
    p.add_argument(
        "--listen", default=DEFAULT_LISTEN, help=f"host:port of the gate (default {DEFAULT_LISTEN})"
    )
    p.add_argument("--path", help="public path (default /services/<name>)")
    p.add_argument("--max-timeout", type=int, default=None, help="payment validity in seconds (default 300)")
    p.add_argument("--offers", metavar="FILE", help="YAML file with several offers; reloaded when it changes")
    p.add_argument("--reload-interval", type=float, default=0.5, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


# -- offers from flags or file ---------------------------------------------------------------------


def _upstream(value: object, *, flag: str) -> str:
    if not isinstance(value, str) or not value:
        raise UsageError(
            f"{flag} is required: the base URL of the service to sell, e.g. http://127.0.0.1:11434"
        )
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{flag} {value!r}: must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise UsageError(f"{flag} {value!r}: must not carry a query or fragment")
    return value.rstrip("/")


def _offer(raw: Mapping[str, Any], *, where: str, wallet: str | None, chain: str, flags: bool) -> LocalOffer:
    def flag(name: str, key: str) -> str:
        return name if flags else f"{where}.{key}"

    name = str(raw.get("name") or "")
    check.check_name(name, flag="NAME" if flags else f"{where}.name", what="offer name")
    upstream = _upstream(raw.get("upstream"), flag=flag("--upstream", "upstream"))
    net = str(raw.get("chain") or chain)
    ch = check.check_chain(net, flag=flag("--chain", "chain"))
    pay_to = raw.get("wallet") or wallet
    if not pay_to:
        raise UsageError(
            f"{flag('--wallet', 'wallet')} is required (or set X402_WALLET): "
            "the 0x address that receives the payments"
        )
    check.check_wallet(str(pay_to), flag=flag("--wallet", "wallet"))
    found = [(k, model) for k, model in PRICE_KEYS if raw.get(k) not in (None, "")]
    if len(found) != 1:
        raise UsageError(
            f"{flag('--price', 'price')}: exactly one price is required "
            "(price/perRequest, perMTok or perHour)"
        )
    key, model = found[0]
    value = raw[key]
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # YAML floats already arrive as their exact text (the verifier's loader)
    if not isinstance(value, str):
        raise UsageError(f'{flag("--price", key)}: write the price as a quoted decimal string, e.g. "0.001"')
    check.check_price(
        value,
        flag=flag({"perMTok": "--per-mtok", "perHour": "--per-hour"}.get(model, "--price"), key),
        model=model,
        chain=ch,
    )
    path = str(raw.get("path") or f"/services/{name}").rstrip("/") or "/"
    problem = validation.path_problem(path)
    if problem:
        raise UsageError(f"{flag('--path', 'path')}: {problem}")
    timeout = raw.get("maxTimeoutSeconds", 300)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 30 <= timeout <= 86400:
        raise UsageError(
            f"{flag('--max-timeout', 'maxTimeoutSeconds')} {timeout!r}: must be an integer in 30..86400"
        )
    return LocalOffer(
        name=name,
        upstream=upstream,
        price_model=model,
        price=value,
        pay_to=str(pay_to),
        chain=ch,
        path=path,
        max_timeout_seconds=timeout,
        description=str(raw.get("description") or f"x402 payment-gated local service: {name}"),
    )


def load_offers(
    text: str, *, where: str, wallet: str | None, chain: str | None, facilitator: str | None
) -> LocalConfig:
    """Parse and check an offers file; UsageError names the key and the rule."""
    try:
        doc = yaml.load(text, Loader=verifier_config._Loader)
    except yaml.YAMLError as err:
        raise UsageError(f"{where} is not valid YAML: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("offers"), list) or not doc["offers"]:
        raise UsageError(f"{where}: expected a mapping with a non-empty list `offers:`")
    default_wallet = wallet or (str(doc["wallet"]) if doc.get("wallet") else None)
    default_chain = chain or str(doc.get("chain") or chains.DEFAULT_CHAIN)
    fac = facilitator or str(doc.get("facilitatorURL") or verifier_config.DEFAULT_FACILITATOR)
    fac = check.check_facilitator_url(fac, flag=f"{where}: facilitatorURL")
    if default_wallet:
        check.check_wallet(default_wallet, flag=f"{where}: wallet")
    offers = []
    for i, raw in enumerate(doc["offers"]):
        if not isinstance(raw, dict):
            raise UsageError(f"{where}: offers[{i}] must be a mapping")
        offers.append(
            _offer(
                raw, where=f"{where}: offers[{i}]", wallet=default_wallet, chain=default_chain, flags=False
            )
        )
    paths = [o.path for o in offers]
    dup = next((p for p in paths if paths.count(p) > 1), None)
    if dup:
        raise UsageError(f"{where}: two offers use the path {dup}")
    return LocalConfig(fac, tuple(offers), default_wallet or "", default_chain)


def pricing_text(cfg: LocalConfig) -> str:
    """The ``pricing.yaml`` the verifier serves: a static proxy route per offer, exact per-request prices."""
    routes = []
    for o in cfg.offers:
        routes.append(
            {
                "pattern": o.path + "/*",
                "price": money.format_atomic(o.amount, decimals=o.chain.decimals),
                "payTo": o.pay_to,
                "network": o.chain.name,
                "upstream": o.upstream,
                "maxTimeoutSeconds": o.max_timeout_seconds,
                "description": o.description,
                "offerNamespace": "local",
                "offerName": o.name,
            }
        )
    doc: dict[str, Any] = {
        "facilitatorURL": cfg.facilitator_url,
        "verifyOnly": False,
        "unmatched": "deny",
        "routes": routes,
    }
    if cfg.facilitator_token_file:
        doc["facilitatorTokenFile"] = cfg.facilitator_token_file
    if cfg.wallet:
        doc["wallet"] = cfg.wallet
    if cfg.chain:
        doc["chain"] = cfg.chain
    text = yaml.safe_dump(doc, sort_keys=False)
    _, warnings = verifier_config.parse(text, env={})
    if warnings:
        raise UsageError("; ".join(warnings))
    return text


def _from_flags(args: argparse.Namespace, env: Mapping[str, str]) -> LocalConfig:
    if args.name is None:
        raise UsageError("NAME is required (or --offers FILE)")
    raw: dict[str, Any] = {"name": args.name, "upstream": args.upstream}
    for flag, key in (("per_request", "perRequest"), ("per_mtok", "perMTok"), ("per_hour", "perHour")):
        if getattr(args, flag) is not None:
            raw[key] = getattr(args, flag)
    if args.path is not None:
        raw["path"] = args.path
    if args.max_timeout is not None:
        raw["maxTimeoutSeconds"] = args.max_timeout
    chain = args.chain or chains.DEFAULT_CHAIN
    wallet = args.wallet or env.get("X402_WALLET")
    offer = _offer(raw, where="", wallet=wallet, chain=chain, flags=True)
    fac = check.check_facilitator_url(
        args.facilitator_url or env.get("X402_FACILITATOR_URL") or verifier_config.DEFAULT_FACILITATOR
    )
    return LocalConfig(fac, (offer,), offer.pay_to, chain)


def _with_token(cfg: LocalConfig, args: argparse.Namespace, env: Mapping[str, str]) -> LocalConfig:
    token = args.facilitator_token_file or env.get("KUBE402_FACILITATOR_TOKEN_FILE") or ""
    if token and not os.path.isfile(token):
        raise UsageError(f"--facilitator-token-file {token}: no such file")
    return dataclasses.replace(cfg, facilitator_token_file=token)


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(f"--listen {value!r}: expected HOST:PORT with a port in 1..65535")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, int(port)))
        except OSError as err:
            raise UsageError(f"--listen {value}: cannot listen there ({err.strerror})") from None
    return host, int(port)


def describe(cfg: LocalConfig, base: str) -> list[str]:
    """The exact terms buyers will see, one block per offer."""
    lines = []
    for o in cfg.offers:
        amount = o.amount
        lines += [
            f"  {o.name}: {base}{o.path}/ → {o.upstream}/",
            f"    price  {money.format_atomic(amount, decimals=o.chain.decimals)} USDC per request "
            f"({amount} atomic units; declared {o.price_model} {o.price})",
            f"    pay    {o.pay_to} on {o.chain.name} ({o.chain.caip2}), asset {o.chain.usdc} "
            f"(EIP-712 {o.chain.eip712_name} v{o.chain.eip712_version}), within {o.max_timeout_seconds} s",
            f"    try    curl -si {base}{o.path}/   # 402 Payment Required with PAYMENT-REQUIRED",
        ]
    return lines


# -- run -------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    import os

    env = dict(os.environ)
    offers_path = Path(args.offers) if args.offers else None
    if offers_path is not None:
        if args.name or args.upstream or args.per_request or args.per_mtok or args.per_hour or args.path:
            raise UsageError(
                "--offers FILE replaces NAME, --upstream, --price and --path: pass one or the other"
            )
        try:
            text = offers_path.read_text()
        except OSError as err:
            raise UsageError(f"--offers {offers_path}: cannot read it ({err.strerror})") from None
        cfg = load_offers(
            text,
            where=str(offers_path),
            wallet=args.wallet or env.get("X402_WALLET"),
            chain=args.chain,
            facilitator=args.facilitator_url or env.get("X402_FACILITATOR_URL"),
        )
    else:
        cfg = _from_flags(args, env)
    cfg = _with_token(cfg, args, env)
    host, port = _listen(args.listen)
    return asyncio.run(_serve(args, cfg, host, port, offers_path, env))


async def _serve(
    args: argparse.Namespace,
    cfg: LocalConfig,
    host: str,
    port: int,
    offers_path: Path | None,
    env: Mapping[str, str],
) -> int:
    from kube402.verifier.main import Options, Verifier  # the gate itself: imported only to run it

    with tempfile.TemporaryDirectory(prefix="kube402-local-") as tmp:
        pricing = Path(tmp) / "pricing.yaml"
        pricing.write_text(pricing_text(cfg))
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        verifier = Verifier(
            Options(
                config_path=str(pricing), listen=listen, proxy_listen=listen, watch=False, route_source="file"
            )
        )
        await verifier.start()
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
        base = f"http://{shown}:{port}"
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await _wait_up(base)
            out = sys.stdout
            out.write(f"kube402 sell local: x402 gate on {base} (facilitator {cfg.facilitator_url})\n")
            out.write("\n".join(describe(cfg, base)) + "\n")
            out.write(f"  metrics {base}/metrics; stop with Ctrl-C\n")
            out.flush()
            watcher = None
            if offers_path is not None:
                watcher = loop.create_task(_watch(args, verifier, offers_path, env, base))
            await stop.wait()
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        finally:
            await verifier.stop()
    sys.stdout.write("kube402 sell local: stopped\n")
    return 0


async def _wait_up(base: str) -> None:
    import httpx

    async with httpx.AsyncClient(trust_env=False) as http:
        for _ in range(100):
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(base + "/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise UsageError(f"the gate did not come up on {base}")


async def _watch(
    args: argparse.Namespace, verifier: Verifier, path: Path, env: Mapping[str, str], base: str
) -> None:
    def stamp() -> float:
        try:
            return path.stat().st_mtime_ns
        except OSError:
            return -1

    last = stamp()
    last_text = await asyncio.to_thread(path.read_text) if last >= 0 else ""
    while True:
        await asyncio.sleep(args.reload_interval)
        now = stamp()
        if now == last:
            continue
        last = now
        try:
            text = await asyncio.to_thread(path.read_text)
        except OSError as err:
            print(
                f"kube402 sell local: {path}: cannot read it ({err.strerror}); previous offers kept",
                flush=True,
            )
            continue
        if text == last_text:
            continue
        try:
            cfg = load_offers(
                text,
                where=str(path),
                wallet=args.wallet or env.get("X402_WALLET"),
                chain=args.chain,
                facilitator=args.facilitator_url or env.get("X402_FACILITATOR_URL"),
            )
            pricing = pricing_text(_with_token(cfg, args, env))
        except UsageError as err:
            print(f"kube402 sell local: {err}; previous offers kept", flush=True)
            continue
        if await verifier.apply_config_text(pricing, origin=str(path)):
            last_text = text
            print(f"kube402 sell local: reloaded {path}", flush=True)
            print("\n".join(describe(cfg, base)), flush=True)
        else:
            print(f"kube402 sell local: {path} rejected by the verifier; previous offers kept", flush=True)
