"""Point the document Services at this catalog: EndpointSlices for where the busybox Deployments cannot run.

In a cluster the controller's ``so-<name>-registration`` Services (SPEC 4.6) and ``<system>/obol-skill-md``
(SPEC 4.7) select the pods of their Deployments. Out of cluster (the local stack, ``kube402 dev``) no pod runs,
so the catalog process, which serves the same ConfigMap contents, publishes itself as their endpoints: for
each such Service, an EndpointSlice ``<service>-kube402-catalog`` (label ``kubernetes.io/service-name``; managed
by kube402, not by the endpointslice controller, which leaves it alone) naming the catalog's address and port
under the Service's port name. The Services appear and go as offers come and go, so a Service informer drives
it; each slice is owned by its Service (garbage-collected with it).

The address must not be loopback (the apiserver refuses it): the host end of a network-namespace test host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any, Final

from kube402.api import names
from kube402.kube import errors, resources
from kube402.kube.client import Kube
from kube402.kube.informer import Event, EventType, Informer

__all__ = ["MANAGED_BY", "SLICE_SUFFIX", "is_document_service", "publish", "slice_for"]

log = logging.getLogger(__name__)

SLICE_SUFFIX: Final = "-kube402-catalog"
MANAGED_BY: Final = "kube402-catalog"
REGISTRATION_LABEL: Final = "obol.org/registration"
CATALOG_SERVICE: Final = "obol-skill-md"


def is_document_service(svc: Mapping[str, Any], *, system_namespace: str) -> bool:
    """A Service the controller renders for the registration document or the catalog."""
    meta = svc.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(names.LABEL_MANAGED_BY) != names.MANAGED_BY_VALUE:
        return False
    if REGISTRATION_LABEL in labels:
        return True
    return bool(meta.get("name") == CATALOG_SERVICE and meta.get("namespace") == system_namespace)


def slice_for(svc: Mapping[str, Any], *, address: str, port: int) -> dict[str, Any]:
    meta = svc["metadata"]
    svc_ports = (svc.get("spec") or {}).get("ports") or [{}]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": names.safe_name("", meta["name"], SLICE_SUFFIX),
            "namespace": meta["namespace"],
            "labels": {
                "kubernetes.io/service-name": meta["name"],
                "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
            },
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Service", "name": meta["name"], "uid": meta.get("uid", "")}
            ],
        },
        "addressType": "IPv6" if ":" in address else "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [
            {"name": p.get("name", ""), "port": port, "protocol": p.get("protocol", "TCP")} for p in svc_ports
        ],
    }


async def publish(kube: Kube, *, address: str, port: int, system_namespace: str) -> None:
    """Keep an EndpointSlice → ``address:port`` for every document Service; runs until cancelled."""
    informer = Informer(
        kube, resources.SERVICE, label_selector=f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY_VALUE}"
    )
    pending: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    def on_event(ev: Event) -> None:
        if ev.type is not EventType.DELETED and is_document_service(
            ev.obj, system_namespace=system_namespace
        ):
            pending.put_nowait(ev.key)

    informer.add_handler(on_event)
    watch = asyncio.create_task(informer.run(), name="catalog-endpoints-informer")
    try:
        while True:
            ns, name = await pending.get()
            svc = informer.store.get((ns, name))
            if svc is None:
                continue
            try:
                await kube.apply(resources.ENDPOINTSLICE, slice_for(svc, address=address, port=port))
            except errors.Invalid:
                log.exception("catalog EndpointSlice for %s/%s refused", ns, name)
            except (errors.ApiError, OSError) as exc:
                # The Service was deleted meanwhile (its informer event drops it), or the apiserver blinked.
                log.warning("catalog EndpointSlice for %s/%s not applied: %s; retrying", ns, name, exc)
                await asyncio.sleep(0.5)
                if informer.store.get((ns, name)) is not None:
                    pending.put_nowait((ns, name))
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watch
