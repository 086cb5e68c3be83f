"""``kube402 verifier``: the x402 request path (Traefik ForwardAuth ``/verify`` and the proxy gate)."""

from __future__ import annotations

import argparse
import asyncio

__all__ = ["add_parser"]

# Defaults of kube402.verifier.main.Options, repeated here so that building the parser does not import the
# verifier (every kube402 command builds it); run() fills them in from Options itself.
_DEFAULTS = {
    "config_path": "/config/pricing.yaml",
    "listen": ":8080",
    "proxy_listen": ":8081",
    "route_source": "file",
    "namespace": "x402",
    "upstream_resolution": "dns",
    "default_gate_mode": "forwardAuth",
}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("verifier", help="run the x402 verifier (ForwardAuth /verify and proxy gate)")
    d = argparse.Namespace(**_DEFAULTS)
    p.add_argument("--config", default=d.config_path, help="pricing.yaml path")
    p.add_argument("--listen", default=d.listen, help="host:port of /verify and the ops endpoints")
    p.add_argument(
        "--proxy-listen",
        default=d.proxy_listen,
        help="host:port of the proxy gate; empty disables it; equal to --listen shares the port",
    )
    p.add_argument(
        "--watch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reload the config file when it changes (polled every 5 s)",
    )
    p.add_argument("--route-source", choices=["file", "kube"], default=d.route_source)
    p.add_argument("--kubeconfig", default=None)
    p.add_argument("--namespace", default=d.namespace, help="namespace of the x402-pricing ConfigMap")
    p.add_argument("--upstream-resolution", choices=["dns", "endpointslice"], default=d.upstream_resolution)
    p.add_argument("--default-gate-mode", choices=["forwardAuth", "proxy"], default=d.default_gate_mode)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kube402.verifier.main import Options, Verifier

    options = Options(
        config_path=args.config,
        listen=args.listen,
        proxy_listen=args.proxy_listen,
        watch=args.watch,
        route_source=args.route_source,
        kubeconfig=args.kubeconfig,
        namespace=args.namespace,
        upstream_resolution=args.upstream_resolution,
        default_gate_mode=args.default_gate_mode,
    )
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a pinned dependency; plain asyncio still works
        return asyncio.run(Verifier(options).run_forever())
    return uvloop.run(Verifier(options).run_forever())
