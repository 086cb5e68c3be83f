"""``kube402 catalog``: serve the registration document, ``/skill.md`` and ``/api/services.json`` from their
ConfigMaps where no busybox Deployment can run (SPEC 10)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os

from kube402.api import names

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("catalog", help="serve the registration document and the service catalog")
    p.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default $KUBECONFIG, then in-cluster)"
    )
    p.add_argument("--context", default=None)
    p.add_argument("--listen", default="127.0.0.1:8080", help="host:port to bind (any local address)")
    p.add_argument(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE", names.SYSTEM_NAMESPACE),
        help="system namespace holding the obol-skill-md ConfigMap",
    )
    p.add_argument(
        "--publish-endpoints",
        action="store_true",
        help="point the controller's document Services at --listen with EndpointSlices (out of cluster, "
        "behind an ingress that routes by Services; --listen must then be a non-loopback address)",
    )
    p.set_defaults(func=run)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return host == "localhost"


def run(args: argparse.Namespace) -> int:
    host, sep, port_text = args.listen.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        print(f"kube402 catalog: --listen must be host:port, got {args.listen!r}")
        return 2
    if args.publish_endpoints and _loopback(host.strip("[]")):
        print("kube402 catalog: --publish-endpoints needs a non-loopback --listen address")
        return 2
    from kube402.catalog import server
    from kube402.kube.client import Kube

    async def main() -> None:
        kube = Kube.connect(kubeconfig=args.kubeconfig, context=args.context, field_manager="kube402-catalog")
        try:
            await server.serve(
                kube,
                host=host.strip("[]"),
                port=int(port_text),
                namespace=args.namespace,
                publish_endpoints=args.publish_endpoints,
            )
        finally:
            await kube.aclose()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0
