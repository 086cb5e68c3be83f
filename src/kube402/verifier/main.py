"""Wiring: config source → gate; route source (file or kube informers) → table keeper; granian servers.

``Verifier`` is usable in-process (tests, benchmarks) with ``await start()`` / ``await stop()`` and is what
``kube402 verifier`` runs. In ``kube`` mode it watches ServiceOffers (all namespaces), the pricing ConfigMap
(the mounted file lags about a minute) and ``litellm-secrets`` Secrets; it is ready only after the first
offer and secret lists synced. During an API-server outage the last table keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from kube402 import aio
from kube402.api import names
from kube402.kube import endpoints, resources
from kube402.kube.client import Kube
from kube402.kube.informer import Event, EventType, Informer
from kube402.verifier import config as config_mod
from kube402.verifier.app import ProxyApp, VerifierApp
from kube402.verifier.gate import Admitted, Facilitator, Gate
from kube402.verifier.metrics import Metrics
from kube402.verifier.proxy import ProxyGate
from kube402.verifier.routes import Route
from kube402.verifier.table import TableKeeper

__all__ = ["Options", "Verifier"]

log = logging.getLogger(__name__)
PRICING_CONFIGMAP = "x402-pricing"
LITELLM_SECRET = "litellm-secrets"


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    config_path: str = "/config/pricing.yaml"
    listen: str = ":8080"
    proxy_listen: str = ":8081"
    """Empty disables the proxy gate; equal to ``listen`` serves it on the same port."""
    watch: bool = True
    route_source: str = "file"
    kubeconfig: str | None = None
    namespace: str = names.SYSTEM_NAMESPACE
    upstream_resolution: str = "dns"
    default_gate_mode: str = "forwardAuth"
    poll_seconds: float = 5.0


def _split(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return (host.strip("[]") or "0.0.0.0", int(port))


class Verifier:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.metrics = Metrics()
        self.gate = Gate(
            config=config_mod.Config(),
            metrics=self.metrics,
            default_unmatched="deny" if options.route_source == "kube" else "allow",
            chain=self._chain_outcome,
        )
        self._rpcs: dict[str, Any] = {}
        self.keeper = TableKeeper(
            self.gate,
            default_gate_mode=options.default_gate_mode,
            secrets=self._secret,
            publish=self.gate.publish_table,
        )
        self.proxy = ProxyGate(self.gate, resolve=self._resolve)
        self.kube: Kube | None = None
        self.informers: list[Informer] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._servers: list[Any] = []
        self._config_ok = False
        self._file_mtime = 0.0
        self._secrets: Informer | None = None
        self._services: Informer | None = None
        self._slices: Informer | None = None
        self._offers: Informer | None = None
        self.ports: dict[str, int] = {}

    # -- config ------------------------------------------------------------------------------------------

    async def apply_config_text(self, text: str, *, origin: str) -> bool:
        try:
            cfg, warnings = config_mod.parse(text)
        except config_mod.ConfigError as err:
            self.metrics.reloads.labels("rejected").inc()
            log.error("config from %s rejected (previous config kept): %s", origin, err)
            return False
        for w in warnings:
            log.warning("config from %s: %s", origin, w)
        await self.apply_config(cfg)
        self.metrics.reloads.labels("applied").inc()
        log.info(
            "config from %s applied",
            origin,
            extra={
                "fields": {
                    "facilitator": cfg.facilitator_url,
                    "chain": cfg.chain,
                    "verifyOnly": cfg.verify_only,
                    "routes": len(cfg.routes),
                }
            },
        )
        return True

    async def apply_config(self, cfg: config_mod.Config) -> None:
        old = self.gate.config
        old_fac = self.gate.facilitator
        if (
            old_fac is None
            or old.facilitator_url != cfg.facilitator_url
            or old.facilitator_token_file != cfg.facilitator_token_file
            or (old.verify_timeout, old.settle_timeout, old.supported_ttl)
            != (cfg.verify_timeout, cfg.settle_timeout, cfg.supported_ttl)
        ):
            self.gate.facilitator = Facilitator.start(cfg)
            if old_fac is not None:
                await old_fac.close()
        self.gate.apply_config(cfg)
        if cfg.verify_only:
            log.warning(
                "verifyOnly is on: requests are served on /verify alone, nothing is settled; "
                "replay memory is per replica, so this mode is not replay-safe with more than one"
            )
        self.keeper.set_static(cfg)
        self._config_ok = True
        self._update_ready()

    def _update_ready(self) -> None:
        if self.options.route_source == "file":
            self.gate.ready = self._config_ok
            return
        synced = all(inf.synced.is_set() for inf in (self._offers, self._secrets) if inf is not None)
        if self._config_ok and synced and not self.gate.ready:
            self.keeper.rebuild()
        self.gate.ready = self._config_ok and synced

    async def _watch_file(self) -> None:
        path = Path(self.options.config_path)
        while True:
            await asyncio.sleep(self.options.poll_seconds)
            try:
                mtime = (await asyncio.to_thread(path.stat)).st_mtime
            except OSError:
                continue
            if mtime != self._file_mtime:
                self._file_mtime = mtime
                await self.apply_config_text(await asyncio.to_thread(path.read_text), origin=str(path))

    async def _chain_outcome(self, a: Admitted) -> bool | str | None:
        """SPEC 7.9: an unknown settlement outcome resolved from the chain via ``rpcURLs`` (None: cannot)."""
        chain = a.requirement.chain
        urls = self.gate.config.rpc_urls
        url = next(
            (u for k, u in urls.items() if k in (chain.caip2, chain.v1_name, str(chain.chain_id))), None
        )
        if url is None:
            return None
        from kube402.chain import rpc, token  # web3 is heavy: imported only when rpcURLs are used

        node = self._rpcs.get(url)
        if node is None:
            node = self._rpcs[url] = rpc.Rpc(url, request_timeout=5.0)
        await node.require_chain_id(chain.chain_id)
        auth = a.decoded.authorization
        outcome = await token.Token(node, a.requirement.asset).authorization_outcome(
            auth.from_address, auth.nonce
        )
        if outcome.state == "used":
            return outcome.tx_hash or True
        if outcome.state == "canceled":
            return False
        return None  # unused: the earlier transaction may still be mined; keep it pending

    # -- kube sources ------------------------------------------------------------------------------------

    def _secret(self, namespace: str) -> Any:
        if self._secrets is None:
            return None
        return self._secrets.store.get((namespace, LITELLM_SECRET))

    def _on_offer(self, event: Event) -> None:
        if event.type is EventType.DELETED:
            self.keeper.offer_deleted(event.key)
        else:
            self.keeper.offer_changed(event.key, event.obj)

    def _on_pricing(self, event: Event) -> None:
        text = (
            ((event.obj.get("data") or {}).get("pricing.yaml"))
            if event.type is not EventType.DELETED
            else None
        )
        if text is not None:
            asyncio.get_running_loop().create_task(self.apply_config_text(text, origin="ConfigMap"))

    def _resolve(self, route: Route) -> str:
        up = route.upstream
        if "url" in up:
            return str(up["url"])
        if not up:
            raise LookupError("route has no upstream")
        ns, svc, port = str(up["namespace"]), str(up["service"]), int(up["port"])
        if self._services is None:
            return f"http://{svc}.{ns}.svc.cluster.local:{port}"
        service = self._services.store.get((ns, svc))
        if service is None:
            raise LookupError(f"Service {ns}/{svc} not found")

        def slices(n: str, s: str) -> list[Any]:
            return self._slices.store.by_index("service", f"{n}/{s}") if self._slices else []

        try:
            return endpoints.resolve_base_url(
                service, port=port, mode=self.options.upstream_resolution, slices=slices
            )
        except endpoints.UnresolvableError as err:
            raise LookupError(str(err)) from None

    def _start_kube(self) -> None:
        o = self.options
        self.kube = kube = Kube.connect(kubeconfig=o.kubeconfig)
        self._offers = Informer(kube, resources.SERVICE_OFFER)
        self._offers.add_handler(self._on_offer)
        self._secrets = Informer(kube, resources.SECRET, field_selector=f"metadata.name={LITELLM_SECRET}")
        self._secrets.add_handler(lambda e: self.keeper.refresh_secrets(e.key[0]))
        pricing = Informer(
            kube,
            resources.CONFIGMAP,
            namespace=o.namespace,
            field_selector=f"metadata.name={PRICING_CONFIGMAP}",
        )
        pricing.add_handler(self._on_pricing)
        self.informers = [self._offers, self._secrets, pricing]
        if o.upstream_resolution == endpoints.Resolution.ENDPOINTSLICE:
            self._services = Informer(kube, resources.SERVICE)
            self._slices = Informer(kube, resources.ENDPOINTSLICE)
            self._slices.store.add_index(
                "service", lambda o: [k] if (k := endpoints.slice_service_key(o)) else []
            )
            self.informers += [self._services, self._slices]
        for inf in self.informers:
            inf.on_sync(self._update_ready)
            self._tasks.append(asyncio.get_running_loop().create_task(inf.run()))

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        o = self.options
        path = Path(o.config_path)
        if await asyncio.to_thread(path.exists):
            self._file_mtime = (await asyncio.to_thread(path.stat)).st_mtime
            if not await self.apply_config_text(await asyncio.to_thread(path.read_text), origin=str(path)):
                log.error("initial config invalid: staying not ready")
        elif o.route_source == "file":
            log.error("config file %s not found: staying not ready", path)
        else:
            await self.apply_config(config_mod.Config(wallet=os.environ.get("WALLET_ADDRESS", "")))
        if o.watch and o.route_source == "file":
            self._tasks.append(asyncio.get_running_loop().create_task(self._watch_file()))
        if o.route_source == "kube":
            self._start_kube()
        await self._serve()

    async def _serve(self) -> None:
        from granian.constants import Interfaces
        from granian.server.embed import Server

        o = self.options
        same = o.proxy_listen and o.proxy_listen == o.listen
        apps: list[tuple[str, str, Any]] = [
            ("verify", o.listen, VerifierApp(self.gate, proxy=self.proxy if same else None))
        ]
        if o.proxy_listen and not same:
            apps.append(("proxy", o.proxy_listen, ProxyApp(self.proxy)))
        for name, listen, app in apps:
            host, port = _split(listen)
            server = Server(
                app, address=host, port=port, interface=Interfaces.RSGI, log_enabled=False, backlog=2048
            )
            self._servers.append((server, asyncio.get_running_loop().create_task(server.serve())))
            self.ports[name] = port
        await asyncio.sleep(0)

    async def stop(self) -> None:
        for server, task in self._servers:
            with contextlib.suppress(Exception):
                server.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
        await aio.cancel_and_wait(self._tasks)
        if self.gate.facilitator is not None:
            await self.gate.facilitator.close()
        await self.proxy.aclose()
        if self.kube is not None:
            await self.kube.aclose()

    async def run_forever(self) -> int:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()
        return 0
