"""Catalog regeneration (SPEC 5.6): ``/skill.md`` and ``/api/services.json`` recomputed from the offer cache,
debounced and serialized, applied only when the content hash differs from the deployed one."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kube402.controller import documents
from kube402.controller.registration import base_url
from kube402.controller.settings import Settings
from kube402.kube import errors, resources
from kube402.kube.client import Kube
from kube402.kube.store import Store

__all__ = ["CatalogWriter"]

log = logging.getLogger(__name__)

_RESOURCES = {
    "ConfigMap": resources.CONFIGMAP,
    "Deployment": resources.DEPLOYMENT,
    "Service": resources.SERVICE,
    "HTTPRoute": resources.HTTPROUTE,
}


class CatalogWriter:
    def __init__(self, kube: Kube, settings: Settings, *, offers: Store) -> None:
        self.kube = kube
        self.settings = settings
        self.offers = offers
        self._wake = asyncio.Event()
        self.deployed: str | None = None
        """Content hash of the applied catalog; None until read from the cluster."""
        self.applies = 0

    def schedule(self) -> None:
        self._wake.set()

    def render(self, base: str) -> tuple[str, str]:
        listed = documents.catalog_offers(self.offers)
        return documents.skill_md(listed, base_url=base), documents.services_json(listed, base_url=base)

    async def _deployed_hash(self) -> str:
        cm = await self.kube.get(
            resources.CONFIGMAP, documents.CATALOG_NAME, namespace=self.settings.namespace
        )
        data: dict[str, Any] = (cm or {}).get("data") or {}
        if not data:
            return ""
        return documents.content_hash(data.get(documents.SKILL_KEY, ""), data.get(documents.SERVICES_KEY, ""))

    async def sync_once(self) -> bool:
        """Regenerate; True when the objects were applied (content changed)."""
        base = await base_url(self.kube, self.settings)
        skill, services = self.render(base)
        digest = documents.content_hash(skill, services)
        if self.deployed is None:
            self.deployed = await self._deployed_hash()
        if digest == self.deployed:
            return False
        gw = self.settings.gateway
        for obj in documents.catalog_objects(
            namespace=self.settings.namespace,
            skill=skill,
            services=services,
            image=self.settings.static_image,
            gateway=(gw.namespace, gw.name, gw.section),
        ):
            await self.kube.apply(_RESOURCES[obj["kind"]], obj)
        self.deployed = digest
        self.applies += 1
        return True

    async def run(self) -> None:
        self._wake.set()
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.settings.catalog_debounce)
            self._wake.clear()
            try:
                await self.sync_once()
            except errors.ApiError as err:
                log.warning("catalog regeneration failed: %s; retrying", err)
                self.deployed = None
                await asyncio.sleep(1.0)
                self._wake.set()
