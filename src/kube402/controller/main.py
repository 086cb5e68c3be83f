"""Wiring only: informers → owner-key mapping → work queue → workers, leader election, ops endpoints.

Caches stay warm on every replica; only the Lease holder runs workers. A leader that loses the Lease stops
its workers at once and the process exits (the Deployment restarts it as a follower).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import prometheus_client

from kube402 import aio
from kube402.api import names, v1alpha1
from kube402.controller import render
from kube402.controller.catalog import CatalogWriter
from kube402.controller.reconcile import CHILD_RESOURCES, Caches, Reconciler
from kube402.controller.registration import CleanupPending, RegistrationRuntime, index_registration
from kube402.controller.settings import Settings
from kube402.kube import endpoints, errors, resources
from kube402.kube.client import Kube
from kube402.kube.endpoints import Resolution
from kube402.kube.events import Recorder
from kube402.kube.informer import Event, EventType, Informer
from kube402.kube.lease import LeaderElector
from kube402.kube.store import Key
from kube402.kube.workqueue import ShutDown, WorkQueue

__all__ = ["Controller", "run", "started"]

log = logging.getLogger(__name__)
Obj = Mapping[str, Any]


def _index_path(obj: Obj) -> list[str]:
    return [v1alpha1.ServiceOffer.from_dict(obj).effective_path]


def _index_upstream(obj: Obj) -> list[str]:
    offer = v1alpha1.ServiceOffer.from_dict(obj)
    return [f"{offer.upstream_namespace}/{offer.upstream.service}"]


def _index_label(obj: Obj) -> list[str]:
    meta = obj.get("metadata") or {}
    return [render.offer_label_key(str(meta.get("namespace", "")), str(meta.get("name", "")))]


class Metrics:
    def __init__(self) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        self.reconciles = prometheus_client.Counter(
            "kube402_controller_reconciles_total",
            "Offer reconcile passes",
            ["result"],
            registry=self.registry,
        )
        self.duration = prometheus_client.Histogram(
            "kube402_controller_reconcile_duration_seconds",
            "Offer reconcile pass duration",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.leader = prometheus_client.Gauge(
            "kube402_controller_leader", "1 while this replica holds the Lease", registry=self.registry
        )


class Controller:
    def __init__(self, kube: Kube, settings: Settings) -> None:
        self.kube = kube
        self.settings = settings
        self.queue: WorkQueue[Key] = WorkQueue(base_delay=1.0, max_delay=60.0)
        self.metrics = Metrics()
        self.offers = Informer(kube, resources.SERVICE_OFFER)
        self.offers.store.add_index("path", _index_path)
        self.offers.store.add_index("upstream", _index_upstream)
        self.offers.store.add_index("label", _index_label)
        selector = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY_VALUE}"
        self.children = {r.kind: Informer(kube, r, label_selector=selector) for r in CHILD_RESOURCES}
        for inf in self.children.values():
            inf.store.add_index("owner", lambda o: [k] if (k := render.owner_label_key(o)) else [])
        self.services = Informer(kube, resources.SERVICE)
        self.grants = Informer(kube, resources.REFERENCEGRANT)
        self.grants.store.add_index(
            "namespace", lambda o: [str((o.get("metadata") or {}).get("namespace", ""))]
        )
        self.slices: Informer | None = None
        if Resolution(settings.upstream_resolution) == Resolution.ENDPOINTSLICE:
            self.slices = Informer(kube, resources.ENDPOINTSLICE)
            self.slices.store.add_index(
                "service", lambda o: [k] if (k := endpoints.slice_service_key(o)) else []
            )
        # registration (issue 12): RR informer + its own queue, base-URL ConfigMap, catalog writer
        self.offers.store.add_index("registration", index_registration)
        self.registration = RegistrationRuntime(
            kube, settings, offers=self.offers, offer_queue=self.queue, registry=self.metrics.registry
        )
        self.catalog = CatalogWriter(kube, settings, offers=self.offers.store)
        self.offers.add_handler(self.registration.on_offer)
        self.offers.add_handler(lambda _event: self.catalog.schedule())
        self.informers = (
            [self.offers, *self.children.values(), self.services, self.grants]
            + ([self.slices] if self.slices else [])
            + self.registration.informers
        )
        self.offers.add_handler(self._on_offer)
        for inf in self.children.values():
            inf.add_handler(self._on_child)
        self.services.add_handler(self._on_service)
        self.grants.add_handler(self._on_grant)
        if self.slices:
            self.slices.add_handler(self._on_slice)

    # -- event → key mapping ----------------------------------------------------------------------------

    def _enqueue_path_peers(self, obj: Obj) -> None:
        path = _index_path(obj)[0]
        for peer in self.offers.store.by_index("path", path):
            meta = peer["metadata"]
            self.queue.add((meta["namespace"], meta["name"]))

    def _on_offer(self, event: Event) -> None:
        self.queue.add(event.key)
        # Path conflicts are resolved by age: a change to one offer may unblock another on the same path.
        for obj in (event.old, event.obj if event.type == EventType.DELETED else None):
            if obj is not None:
                self._enqueue_path_peers(obj)

    def _enqueue_label(self, label_key: str | None) -> None:
        if not label_key:
            return
        for offer in self.offers.store.by_index("label", label_key):
            meta = offer["metadata"]
            self.queue.add((meta["namespace"], meta["name"]))

    def _on_child(self, event: Event) -> None:
        self._enqueue_label(render.owner_label_key(event.obj))

    def _on_grant(self, event: Event) -> None:
        """A ReferenceGrant changed: offers whose upstream lives in its namespace may gain or lose it."""
        for offer in self.offers.store:
            if v1alpha1.ServiceOffer.from_dict(offer).upstream_namespace == event.key[0]:
                meta = offer["metadata"]
                self.queue.add((meta["namespace"], meta["name"]))

    def _on_service(self, event: Event) -> None:
        for offer in self.offers.store.by_index("upstream", f"{event.key[0]}/{event.key[1]}"):
            meta = offer["metadata"]
            self.queue.add((meta["namespace"], meta["name"]))

    def _on_slice(self, event: Event) -> None:
        key = endpoints.slice_service_key(event.obj)
        if key:
            ns, svc = key.split("/", 1)
            self._on_service(Event(event.type, (ns, svc), event.obj, event.old))

    # -- workers ----------------------------------------------------------------------------------------

    def synced(self) -> bool:
        return all(inf.synced.is_set() for inf in self.informers)

    async def _worker(self, reconciler: Reconciler) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            start = time.perf_counter()
            try:
                result = await reconciler.reconcile(key)
            except errors.NotFound:
                # The offer (or its namespace) went away mid-pass; its deletion event settles the rest.
                self.metrics.reconciles.labels("gone").inc()
                self.queue.forget(key)
            except errors.Conflict:
                self.metrics.reconciles.labels("conflict").inc()
                self.queue.add_rate_limited(key)
            except (errors.ApiError, CleanupPending) as err:
                self.metrics.reconciles.labels("error").inc()
                delay = self.queue.add_rate_limited(key)
                log.warning("reconcile %s/%s failed: %s; retry in %.0fs", *key, err, delay)
            except Exception:
                self.metrics.reconciles.labels("error").inc()
                delay = self.queue.add_rate_limited(key)
                log.exception("reconcile %s/%s crashed; retry in %.0fs", *key, delay)
            else:
                self.metrics.reconciles.labels("success").inc()
                log.debug("reconciled %s/%s; requeue after %s s", *key, result.requeue_after)
                self.queue.forget(key)
                if result.requeue_after is not None:
                    self.queue.add_after(key, result.requeue_after)
            finally:
                self.metrics.duration.observe(time.perf_counter() - start)
                self.queue.done(key)

    async def lead(self) -> None:
        """Run the workers (after every cache has synced) until cancelled."""
        await asyncio.gather(*(inf.synced.wait() for inf in self.informers))
        self.metrics.leader.set(1)
        log.info(
            "leading: %d offers cached; starting %d workers", len(self.offers.store), self.settings.workers
        )
        for key in self.offers.store.keys():  # noqa: SIM118 - Store iterates values
            self.queue.add(key)
        caches = Caches(
            offers=self.offers.store,
            children={k: inf.store for k, inf in self.children.items()},
            services=self.services.store,
            slices=self.slices.store if self.slices else None,
            grants=self.grants.store,
        )
        limits = httpx.Limits(max_connections=max(16, self.settings.workers * 2))
        async with httpx.AsyncClient(limits=limits, trust_env=False) as http:
            recorder = Recorder(self.kube, component=names.FIELD_MANAGER, instance=self.settings.identity)
            reconciler = Reconciler(
                kube=self.kube,
                caches=caches,
                http=http,
                settings=self.settings,
                recorder=recorder,
                registration=self.registration.offer_side,
            )
            try:
                await asyncio.gather(
                    *(self._worker(reconciler) for _ in range(self.settings.workers)),
                    self.registration.run_workers(recorder),  # issue 12
                    self.catalog.run(),  # issue 12
                )
            finally:
                self.metrics.leader.set(0)


async def _serve_ops(controller: Controller, listen: str) -> None:
    from granian.constants import Interfaces
    from granian.server.embed import Server

    from kube402.controller.app import OpsApp

    host, _, port = listen.rpartition(":")
    app = OpsApp(ready=controller.synced, registry=controller.metrics.registry)
    server = Server(
        app, address=host or "0.0.0.0", port=int(port), interface=Interfaces.RSGI, log_enabled=False
    )
    await server.serve()


async def run(settings: Settings, *, kubeconfig: str | None = None, context: str | None = None) -> int:
    kube = Kube.connect(kubeconfig=kubeconfig, context=context, field_manager=names.FIELD_MANAGER)
    controller = Controller(kube, settings)
    tasks = [
        asyncio.create_task(inf.run(), name=f"informer-{inf.resource.plural}") for inf in controller.informers
    ]
    if settings.metrics_listen:
        tasks.append(asyncio.create_task(_serve_ops(controller, settings.metrics_listen), name="ops"))
    try:
        if settings.leader_elect:
            elector = LeaderElector(
                kube, namespace=settings.namespace, name=names.LEASE_NAME, identity=settings.identity
            )
            await elector.run(controller.lead)
            log.error("lost leadership; exiting")
            return 1
        await controller.lead()
        return 0
    finally:
        await aio.cancel_and_wait(tasks)
        await kube.aclose()


@contextlib.asynccontextmanager
async def started(kube: Kube, settings: Settings) -> AsyncIterator[Controller]:
    """A controller running in this event loop (no leader election unless the settings ask for it)."""
    controller = Controller(kube, settings)
    tasks = [
        asyncio.create_task(inf.run(), name=f"informer-{inf.resource.plural}") for inf in controller.informers
    ]
    tasks.append(asyncio.create_task(controller.lead(), name="controller-workers"))
    try:
        yield controller
    finally:
        await aio.cancel_and_wait(tasks)
