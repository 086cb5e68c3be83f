"""``kube402 controller``: reconcile ServiceOffers into payment gates and routes."""

from __future__ import annotations

import argparse
import asyncio
import os

from kube402.controller.settings import GatewayRef, RegistrationSettings, ServiceRef, Settings

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("controller", help="run the ServiceOffer controller")
    d = Settings()
    p.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default $KUBECONFIG, then in-cluster)"
    )
    p.add_argument("--context", default=None)
    p.add_argument(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE", d.namespace),
        help="system namespace (Lease, catalog)",
    )
    p.add_argument("--verifier-address", default=d.verifier_address)
    p.add_argument("--verifier-service", default="x402/x402-verifier:8081")
    p.add_argument("--gateway", default="traefik/traefik-gateway/web")
    p.add_argument("--default-gate-mode", choices=["forwardAuth", "proxy"], default=d.default_gate_mode)
    p.add_argument(
        "--route-acceptance",
        choices=["ingress", "applied"],
        default=d.route_acceptance,
        help="RoutePublished=True when the ingress accepts the HTTPRoute (default), or once applied "
        "(only for clusters whose Gateway controller writes no route status)",
    )
    p.add_argument("--upstream-resolution", choices=["dns", "endpointslice"], default=d.upstream_resolution)
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument(
        "--metrics-listen", default=d.metrics_listen, help="host:port of /healthz /readyz /metrics"
    )
    p.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--requeue-ready", type=float, default=d.requeue_ready)
    p.add_argument("--requeue-not-ready", type=float, default=d.requeue_not_ready)
    p.add_argument("--static-image", default=d.static_image, help="registration and catalog httpd image")
    p.add_argument(
        "--registration-readiness",
        choices=["strict", "objects"],
        default="strict",
        help="objects: only check that the registration objects exist (clusters without nodes or Gateway)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings(
            namespace=args.namespace,
            verifier_address=args.verifier_address,
            verifier_service=ServiceRef.parse(args.verifier_service),
            gateway=GatewayRef.parse(args.gateway),
            default_gate_mode=args.default_gate_mode,
            upstream_resolution=args.upstream_resolution,
            route_acceptance=args.route_acceptance,
            workers=args.workers,
            metrics_listen=args.metrics_listen,
            leader_elect=args.leader_elect,
            requeue_ready=args.requeue_ready,
            requeue_not_ready=args.requeue_not_ready,
            static_image=args.static_image,
            registration=RegistrationSettings.from_env(os.environ, readiness=args.registration_readiness),
        )
        from kube402.controller import registration

        registration.validate(settings)
    except ValueError as err:
        print(f"kube402 controller: {err}")
        return 2
    from kube402.controller import main as controller_main  # heavy: only when the controller runs

    return asyncio.run(controller_main.run(settings, kubeconfig=args.kubeconfig, context=args.context))
