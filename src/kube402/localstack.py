"""The whole seller story in one process, on real parts: for end-to-end tests and benchmarks.

:class:`LocalStack` takes a running control plane and starts, on loopback: anvil made to look like Base
Sepolia (token and registry at their canonical addresses, the buyer funded), ``kube402 facilitator``, the
controller and the verifier (kube route source, EndpointSlice/ExternalName upstream resolution), and the
ForwardAuth gateway that routes by the controller's HTTPRoutes and Middlewares as Traefik would. The demo
(``hack/demo.py``) runs the same parts as background processes instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from kube402.api import names
from kube402.catalog.server import CatalogServer
from kube402.chain import devchain, rpc, token
from kube402.chain.facilitator import config as fac_config
from kube402.chain.facilitator import main as fac_main
from kube402.controller import main as controller_main
from kube402.controller.settings import RegistrationSettings, SigningKey
from kube402.controller.settings import Settings as ControllerSettings
from kube402.devenv import anvil, gateway, process
from kube402.kube import resources
from kube402.kube.client import Kube
from kube402.kube.informer import Informer
from kube402.verifier.main import Options, Verifier

__all__ = ["LocalStack", "catalog_routes", "pricing_yaml"]

BUYER_FUNDS = 1_000_000_000


def pricing_yaml(*, wallet: str, facilitator_url: str, guard_grace: int = 2) -> str:
    return (
        f'wallet: "{wallet}"\nchain: base-sepolia\nfacilitatorURL: {facilitator_url}\nverifyOnly: false\n'
        f"guardGraceSeconds: {guard_grace}\n"
    )


CATALOG_BACKENDS_SUFFIX = "-registration"


def catalog_routes(httproutes: Any, *, catalog_url: str, system_namespace: str) -> list[gateway.Route]:
    """Gateway routes for the registration and catalog HTTPRoutes (``so-<name>-wellknown``,
    ``obol-skill-md-route``): their backends are Services of Deployments that cannot run out of cluster, so
    the gateway sends those exact paths to the ``kube402 catalog`` process, which serves the same ConfigMap
    contents. The one place where the out-of-cluster gateway learns about the catalog (issue 12)."""
    out: list[gateway.Route] = []
    for hr in httproutes:
        meta = hr.get("metadata") or {}
        labels = meta.get("labels") or {}
        if labels.get(names.LABEL_MANAGED_BY) != names.MANAGED_BY_VALUE:
            continue
        is_catalog = meta.get("name") == "obol-skill-md-route" and meta.get("namespace") == system_namespace
        if not is_catalog and "obol.org/registration" not in labels:
            continue
        for rule in (hr.get("spec") or {}).get("rules") or []:
            for match in rule.get("matches") or []:
                path = (match.get("path") or {}).get("value")
                if path:
                    out.append(gateway.Route(path, catalog_url, strip=False))
    return out


@dataclasses.dataclass
class LocalStack:
    kubeconfig: Path
    workdir: Path
    seller: LocalAccount = dataclasses.field(default_factory=lambda: devchain.dev_account(1))
    buyer: LocalAccount = dataclasses.field(default_factory=lambda: devchain.dev_account(2))
    relayer: LocalAccount = dataclasses.field(default_factory=lambda: devchain.dev_account(5))
    controller_workers: int = 4
    erc8004: LocalAccount | None = dataclasses.field(default_factory=lambda: devchain.dev_account(7))
    """The controller's ERC-8004 signing key (a funded anvil account); None runs it keyless."""
    erc8004_registrant: str = ""

    def __post_init__(self) -> None:
        self.kube: Kube | None = None
        self.chain: devchain.DevChainInfo | None = None
        self.node: rpc.Rpc | None = None
        self.usdc: token.Token | None = None
        self.facilitator: fac_main.Facilitator | None = None
        self.verifier: Verifier | None = None
        self.controller: controller_main.Controller | None = None
        self.gateway: gateway.ForwardAuthGateway | None = None
        self.gateway_port = 0
        self.catalog: CatalogServer | None = None
        self.catalog_port = 0
        self._anvil: anvil.Anvil | None = None
        self._stack = contextlib.AsyncExitStack()
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def proxy_url(self) -> str:
        assert self.verifier is not None
        return f"http://127.0.0.1:{self.verifier.ports['proxy']}"

    @property
    def verify_url(self) -> str:
        assert self.verifier is not None
        return f"http://127.0.0.1:{self.verifier.ports['verify']}/verify"

    async def set_facilitator(self, url: str) -> None:
        """Point the verifier at another facilitator through the pricing ConfigMap (as `sell pricing` does)."""
        assert self.kube is not None
        await self.kube.apply(
            resources.CONFIGMAP,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "x402-pricing", "namespace": names.SYSTEM_NAMESPACE},
                "data": {"pricing.yaml": pricing_yaml(wallet=self.seller.address, facilitator_url=url)},
            },
        )

    async def start(self) -> LocalStack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._anvil = anvil.Anvil(log=self.workdir / "anvil.log")
        self._anvil.start()
        self.chain = await devchain.setup_base_sepolia(self._anvil.rpc_url)
        self.node = await rpc.connect(self._anvil.rpc_url, chain_id=84532)
        self.usdc = token.Token(self.node, self.chain.token)
        await devchain.mint(self.chain, self.buyer.address, BUYER_FUNDS)

        settings = fac_config.Settings(
            networks=(fac_config.parse_network(f"base-sepolia={self._anvil.rpc_url}"),),
            listen="127.0.0.1:0",
            confirmation_timeout=10.0,
        )
        self.facilitator = await self._stack.enter_async_context(
            fac_main.Facilitator(settings, account=self.relayer)
        )

        self.kube = Kube.connect(kubeconfig=str(self.kubeconfig), field_manager="kube402-story")
        await self.set_facilitator(self.facilitator.url)

        ctl_kube = Kube.connect(kubeconfig=str(self.kubeconfig))
        self.gateway_port = process.free_port()
        registration = RegistrationSettings(
            key=SigningKey("0x" + bytes(self.erc8004.key).hex()) if self.erc8004 is not None else None,
            rpc_url=self._anvil.rpc_url,
            registrant=self.erc8004_registrant,
            readiness="objects",
        )
        self.controller = await self._stack.enter_async_context(
            controller_main.started(
                ctl_kube,
                ControllerSettings(
                    upstream_resolution="endpointslice",
                    leader_elect=False,
                    metrics_listen="",
                    workers=self.controller_workers,
                    requeue_not_ready=1.0,
                    requeue_ready=5.0,
                    registration=registration,
                    agent_base_url=self.gateway_url,
                    catalog_debounce=0.3,
                ),
            )
        )

        self.verifier = Verifier(
            Options(
                config_path=str(self.workdir / "no-file.yaml"),
                route_source="kube",
                kubeconfig=str(self.kubeconfig),
                listen=f"127.0.0.1:{process.free_port()}",
                proxy_listen=f"127.0.0.1:{process.free_port()}",
                upstream_resolution="endpointslice",
            )
        )
        await self.verifier.start()

        gw_kube = Kube.connect(kubeconfig=str(self.kubeconfig))
        routes = Informer(gw_kube, resources.HTTPROUTE)
        mws = Informer(gw_kube, resources.MIDDLEWARE)
        svcs = Informer(gw_kube, resources.SERVICE)
        self._gw_kube = gw_kube
        for inf in (routes, mws, svcs):
            self._tasks.append(asyncio.create_task(inf.run()))
        verifier = self.verifier
        cat_kube = Kube.connect(kubeconfig=str(self.kubeconfig))
        self._cat_kube = cat_kube
        self.catalog = CatalogServer(cat_kube)
        self.catalog_port = process.free_port()
        await self._stack.enter_async_context(self.catalog.serving("127.0.0.1", self.catalog_port))
        catalog_url = f"http://127.0.0.1:{self.catalog_port}"
        self.gateway = gateway.ForwardAuthGateway(
            routes=lambda: (
                gateway.routes_from_cluster(
                    httproutes=routes.store,
                    middlewares=mws.store,
                    services=svcs.store,
                    verify_url=self.verify_url,
                    verifier_service=("x402", "x402-verifier"),
                    verifier_proxy_url=f"http://127.0.0.1:{verifier.ports['proxy']}",
                )
                + catalog_routes(
                    routes.store, catalog_url=catalog_url, system_namespace=names.SYSTEM_NAMESPACE
                )
            )
        )
        await self._stack.enter_async_context(gateway.serving(self.gateway, self.gateway_port))
        self._ctl_kube = ctl_kube
        return self

    async def stop(self) -> None:
        if self.gateway is not None:
            await self.gateway.aclose()
        await self._stack.aclose()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.verifier is not None:
            await self.verifier.stop()
        for k in (
            self.kube,
            getattr(self, "_ctl_kube", None),
            getattr(self, "_gw_kube", None),
            getattr(self, "_cat_kube", None),
        ):
            if k is not None:
                await k.aclose()
        if self._anvil is not None:
            self._anvil.stop()

    async def balances(self, *addresses: str) -> list[int]:
        assert self.usdc is not None
        return [await self.usdc.balance_of(a) for a in addresses]
