"""The catalog server: a ConfigMap watch cache and a tiny RSGI app over it.

Paths: ``/.well-known/agent-registration.json`` (the ``agent-registration.json`` key of the registration
ConfigMap ``so-<offer>-registration``; when several exist, e.g. during a singleton hand-over, the one whose
offer owns the well-known path: the oldest), ``/skill.md`` and ``/api/services.json`` (ConfigMap
``<system namespace>/obol-skill-md``), ``/healthz`` and ``/readyz``. Bytes are served exactly as stored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

from kube402.api import names
from kube402.catalog import endpoints
from kube402.kube import resources
from kube402.kube.client import Kube
from kube402.kube.informer import Informer

__all__ = ["CatalogApp", "CatalogServer", "serve"]

DOCUMENT_KEY: Final = "agent-registration.json"
CATALOG_NAME: Final = "obol-skill-md"
JSON: Final = "application/json"
MARKDOWN: Final = "text/markdown; charset=utf-8"


class CatalogApp:
    """RSGI app answering from ``informer``'s store."""

    def __init__(self, informer: Informer, *, namespace: str) -> None:
        self.informer = informer
        self.namespace = namespace

    def _registration_document(self) -> str | None:
        docs: list[tuple[str, str, str, str]] = []
        for cm in self.informer.store:
            data: Mapping[str, Any] = cm.get("data") or {}
            meta = cm.get("metadata") or {}
            if DOCUMENT_KEY in data and (meta.get("labels") or {}).get("obol.org/registration"):
                docs.append(
                    (
                        str(meta.get("creationTimestamp") or "~"),
                        str(meta.get("namespace")),
                        str(meta.get("name")),
                        str(data[DOCUMENT_KEY]),
                    )
                )
        return min(docs)[3] if docs else None

    def _catalog(self, key: str) -> str | None:
        cm = self.informer.store.get((self.namespace, CATALOG_NAME))
        value = ((cm or {}).get("data") or {}).get(key)
        return str(value) if value is not None else None

    def lookup(self, path: str) -> tuple[int, str, bytes]:
        if path == "/healthz":
            return 200, JSON, b'{"status":"ok"}'
        if path == "/readyz":
            if self.informer.synced.is_set():
                return 200, JSON, b'{"status":"ready"}'
            return 503, "text/plain", b"not ready"
        body: str | None = None
        ctype = JSON
        if path == "/.well-known/agent-registration.json":
            body = self._registration_document()
        elif path == "/skill.md":
            body, ctype = self._catalog("skill.md"), MARKDOWN
        elif path == "/api/services.json":
            body = self._catalog("services.json")
        if body is None:
            return 404, "text/plain", b"404 page not found\n"
        return 200, ctype, body.encode()

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.method not in ("GET", "HEAD"):
            protocol.response_bytes(405, [("content-type", "text/plain"), ("allow", "GET, HEAD")], b"")
            return
        status, ctype, body = self.lookup(scope.path)
        headers = [("content-type", ctype), ("cache-control", "no-cache")]
        protocol.response_bytes(status, headers, b"" if scope.method == "HEAD" else body)


class CatalogServer:
    """Informer + app; ``serving()`` binds ``host:port`` (any address: loopback or a netns host)."""

    def __init__(self, kube: Kube, *, namespace: str = names.SYSTEM_NAMESPACE) -> None:
        self.informer = Informer(
            kube, resources.CONFIGMAP, label_selector=f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY_VALUE}"
        )
        self.app = CatalogApp(self.informer, namespace=namespace)
        self.kube = kube

    @contextlib.asynccontextmanager
    async def serving(
        self, host: str, port: int, *, publish_endpoints: bool = False
    ) -> AsyncIterator[CatalogServer]:
        """Bind ``host:port``. ``publish_endpoints``: also point the controller's document Services at
        ``host:port`` with EndpointSlices (:mod:`kube402.catalog.endpoints`; out of cluster, behind an ingress
        that routes by Services, e.g. the local Traefik)."""
        from granian.constants import Interfaces
        from granian.server.embed import Server

        tasks = [asyncio.create_task(self.informer.run(), name="catalog-informer")]
        server = Server(self.app, address=host, port=port, interface=Interfaces.RSGI, log_enabled=False)
        tasks.append(asyncio.create_task(server.serve(), name="catalog-http"))
        if publish_endpoints:
            tasks.append(
                asyncio.create_task(
                    endpoints.publish(
                        self.kube, address=host, port=port, system_namespace=self.app.namespace
                    ),
                    name="catalog-endpoints",
                )
            )
        try:
            await asyncio.wait_for(self.informer.synced.wait(), 30)
            yield self
        finally:
            server.stop()  # type: ignore[no-untyped-call]
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t


async def serve(kube: Kube, *, host: str, port: int, namespace: str, publish_endpoints: bool = False) -> None:
    """Run until cancelled."""
    server = CatalogServer(kube, namespace=namespace)
    async with server.serving(host, port, publish_endpoints=publish_endpoints):
        await asyncio.Event().wait()
