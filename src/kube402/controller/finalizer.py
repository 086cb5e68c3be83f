"""kube402's finalizer on a ServiceOffer: added before anything is published, removed once deletion is done.

Both writes are merge patches pinned to the offer's ``resourceVersion``, so a stale cache read fails with a
conflict instead of overwriting another writer's finalizer list.
"""

from __future__ import annotations

from kube402.api import names, v1alpha1
from kube402.kube import resources
from kube402.kube.client import Kube

__all__ = ["add", "present", "remove"]


def present(offer: v1alpha1.ServiceOffer) -> bool:
    return names.FINALIZER in offer.metadata.finalizers


async def _patch(kube: Kube, offer: v1alpha1.ServiceOffer, finalizers: list[str] | None) -> None:
    await kube.merge_patch(
        resources.SERVICE_OFFER,
        offer.name,
        namespace=offer.namespace,
        patch={"metadata": {"finalizers": finalizers, "resourceVersion": offer.metadata.resource_version}},
    )


async def add(kube: Kube, offer: v1alpha1.ServiceOffer) -> None:
    """Append the finalizer (SPEC 5.2 step 3); the update event re-enqueues the offer."""
    await _patch(kube, offer, [*offer.metadata.finalizers, names.FINALIZER])


async def remove(kube: Kube, offer: v1alpha1.ServiceOffer) -> None:
    """Drop the finalizer, keeping the others (SPEC 5.4 step 5); an empty list is removed (``null``)."""
    await _patch(kube, offer, [f for f in offer.metadata.finalizers if f != names.FINALIZER] or None)
