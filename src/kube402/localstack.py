"""The whole seller story in one process, on real parts: for end-to-end tests and benchmarks.

:class:`LocalStack` takes a running control plane and starts: anvil made to look like Base Sepolia (token
and registry at their canonical addresses, the buyer funded), ``kube402 facilitator``, the controller and
the verifier (kube route source, EndpointSlice upstream resolution), and **real Traefik** (built from Go
modules) with the Gateway API and CRD providers routing by the controller's HTTPRoutes and Middlewares.

Traefik refuses ExternalName backends and the apiserver refuses loopback EndpointSlice addresses, so the
stack claims a network-namespace test host (``devenv.netns``) and uses its host-side address
(``host_address``, a non-loopback address of this machine) for everything Traefik routes to: test upstreams
bind there and are published as selector-less Services + EndpointSlices (:meth:`expose`), and so is the
verifier's proxy gate (Service ``x402/x402-verifier:8081``) and the in-process ``kube402 catalog``, which
publishes itself as the endpoints of the controller's registration and catalog Services (the ERC-8004
document, ``/skill.md``, ``/api/services.json``; ``kube402.catalog.endpoints``). The controller's agent base
URL is Traefik's URL, so the document's ``web`` endpoint is the gated route. The ForwardAuth address is the verifier's
loopback ``/verify`` (Traefik runs on this host). The facilitator requires a bearer token (a file
in the workdir, 0600) and the verifier sends it (``facilitatorTokenFile``), as a seller runs them. The demo
(``hack/demo.py``) runs the same parts as background processes instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from pathlib import Path

from eth_account.signers.local import LocalAccount

from kube402.api import names
from kube402.catalog.server import CatalogServer
from kube402.chain import devchain, rpc, token
from kube402.chain.facilitator import config as fac_config
from kube402.chain.facilitator import main as fac_main
from kube402.controller import main as controller_main
from kube402.controller.settings import RegistrationSettings, SigningKey
from kube402.controller.settings import Settings as ControllerSettings
from kube402.devenv import anvil, netns, process, services, traefik
from kube402.kube import resources
from kube402.kube.client import Kube
from kube402.verifier.main import Options, Verifier

__all__ = ["LocalStack", "pricing_yaml"]

BUYER_FUNDS = 1_000_000_000


def pricing_yaml(
    *, wallet: str, facilitator_url: str, guard_grace: int = 2, facilitator_token_file: str = ""
) -> str:
    """The verifier's pricing config; ``facilitator_token_file`` names the file with the bearer token that
    ``kube402 facilitator --auth-token-file`` requires (as a seller mounts it from a Secret)."""
    text = (
        f'wallet: "{wallet}"\nchain: base-sepolia\nfacilitatorURL: {facilitator_url}\nverifyOnly: false\n'
        f"guardGraceSeconds: {guard_grace}\n"
    )
    if facilitator_token_file:
        text += f"facilitatorTokenFile: {json.dumps(facilitator_token_file)}\n"
    return text


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
        self.ingress: traefik.TraefikInfo | None = None
        self.host: netns.TestHost | None = None
        self.catalog: CatalogServer | None = None
        self.catalog_port = 0
        self._anvil: anvil.Anvil | None = None
        self._stack = contextlib.AsyncExitStack()

    @property
    def gateway_url(self) -> str:
        """Traefik's ``web`` entrypoint (the Gateway listener), as ``KUBE402_GATEWAY_URL``."""
        assert self.ingress is not None
        return self.ingress.url

    @property
    def host_address(self) -> str:
        """A non-loopback address of this host that EndpointSlices (and so Traefik) can point at."""
        assert self.host is not None
        return self.host.host_address

    async def expose(self, namespace: str, name: str, port: int, *, target_port: int | None = None) -> None:
        """Selector-less Service ``namespace/name:port`` → EndpointSlice ``host_address:target_port``."""
        assert self.kube is not None
        await traefik.expose(
            self.kube,
            namespace=namespace,
            name=name,
            port=port,
            address=self.host_address,
            target_port=target_port,
        )

    @property
    def rpc_url(self) -> str:
        """The local chain's JSON-RPC endpoint (anvil as Base Sepolia)."""
        assert self._anvil is not None
        return self._anvil.rpc_url

    @property
    def facilitator_token_file(self) -> Path:
        """The bearer token ``kube402 facilitator`` requires on /verify, /settle and /release; the verifier
        reads it through ``facilitatorTokenFile``."""
        return self.workdir / "facilitator.token"

    @property
    def proxy_url(self) -> str:
        assert self.verifier is not None
        return f"http://{self.host_address}:{self.verifier.ports['proxy']}"

    @property
    def verify_url(self) -> str:
        assert self.verifier is not None
        return f"http://127.0.0.1:{self.verifier.ports['verify']}/verify"

    async def set_facilitator(self, url: str) -> None:
        """Point the verifier at another facilitator through the pricing ConfigMap (like `sell pricing`)."""
        assert self.kube is not None
        await self.kube.apply(
            resources.CONFIGMAP,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "x402-pricing", "namespace": names.SYSTEM_NAMESPACE},
                "data": {
                    "pricing.yaml": pricing_yaml(
                        wallet=self.seller.address,
                        facilitator_url=url,
                        facilitator_token_file=str(self.facilitator_token_file),
                    )
                },
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
            auth_token=fac_config.load_token(
                token_file=str(services.write_token_file(self.facilitator_token_file))
            ),
        )
        self.facilitator = await self._stack.enter_async_context(
            fac_main.Facilitator(settings, account=self.relayer)
        )

        self.kube = Kube.connect(kubeconfig=str(self.kubeconfig), field_manager="kube402-story")
        await self.set_facilitator(self.facilitator.url)

        self.host = await asyncio.to_thread(netns.TestHost)
        verify_port = process.free_port()
        proxy_port = process.free_port(self.host_address)
        # The verifier's proxy gate, as the Service proxy-mode HTTPRoutes name (SPEC 4.5).
        await self.expose(names.SYSTEM_NAMESPACE, "x402-verifier", 8081, target_port=proxy_port)

        ctl_kube = Kube.connect(kubeconfig=str(self.kubeconfig))
        self._ctl_kube = ctl_kube
        # Traefik starts last (it needs the controller's routes); its port is chosen now because the
        # controller publishes it as the agent's base URL (the document's `web` endpoint, SPEC 6.6).
        gateway_port = process.free_port()
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
                    verifier_address=f"http://127.0.0.1:{verify_port}/verify",
                    upstream_resolution="endpointslice",
                    leader_elect=False,
                    metrics_listen="",
                    workers=self.controller_workers,
                    requeue_not_ready=1.0,
                    requeue_ready=5.0,
                    registration=registration,
                    agent_base_url=f"http://127.0.0.1:{gateway_port}",
                    catalog_debounce=0.3,
                ),
            )
        )

        self.verifier = Verifier(
            Options(
                config_path=str(self.workdir / "no-file.yaml"),
                route_source="kube",
                kubeconfig=str(self.kubeconfig),
                listen=f"127.0.0.1:{verify_port}",
                proxy_listen=f"{self.host_address}:{proxy_port}",
                upstream_resolution="endpointslice",
            )
        )
        await self.verifier.start()

        # The document Services (SPEC 4.6/4.7) select busybox pods that do not run out of cluster: the
        # catalog serves the same ConfigMaps on the host address and publishes itself as their endpoints.
        cat_kube = Kube.connect(kubeconfig=str(self.kubeconfig), field_manager="kube402-catalog")
        self._cat_kube = cat_kube
        self.catalog = CatalogServer(cat_kube)
        self.catalog_port = process.free_port(self.host_address)
        await self._stack.enter_async_context(
            self.catalog.serving(self.host_address, self.catalog_port, publish_endpoints=True)
        )

        self.ingress = await self._stack.enter_async_context(
            traefik.Traefik(self.kubeconfig, log=self.workdir / "traefik.log", port=gateway_port)
        )
        return self

    async def stop(self) -> None:
        await self._stack.aclose()
        if self.verifier is not None:
            await self.verifier.stop()
        for k in (
            self.kube,
            getattr(self, "_ctl_kube", None),
            getattr(self, "_cat_kube", None),
        ):
            if k is not None:
                await k.aclose()
        if self._anvil is not None:
            self._anvil.stop()
        if self.host is not None:
            await asyncio.to_thread(self.host.close)

    async def balances(self, *addresses: str) -> list[int]:
        assert self.usdc is not None
        return [await self.usdc.balance_of(a) for a in addresses]
