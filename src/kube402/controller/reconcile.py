"""One level-based pass over one ServiceOffer: read the caches, decide, converge, write status.

``Reconciler.reconcile(key)`` never asks which event woke it. It withdraws before it publishes (route before
gate on the way down, gate before route on the way up), so no request can reach an upstream unpaid, and a
pass with nothing to change makes no API write. Problems of one offer go on that offer's conditions; only
API failures raise (the queue backs the key off).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from kube402.api import conditions as c
from kube402.api import names, v1alpha1, validation
from kube402.controller import finalizer, health, plan, render, status
from kube402.controller.registration import OfferRegistration
from kube402.controller.settings import RouteAcceptance, Settings
from kube402.kube import endpoints, errors, resources
from kube402.kube.client import Kube
from kube402.kube.events import Recorder
from kube402.kube.store import Key, Store

__all__ = ["Caches", "Reconciler", "Result", "subset_equal"]

log = logging.getLogger(__name__)
R = c.Reason
T = c.ConditionType

CHILD_RESOURCES: tuple[resources.Resource, ...] = (
    resources.HTTPROUTE,
    resources.REFERENCEGRANT,
    resources.MIDDLEWARE,
)
"""Withdrawal order: the route first, the gate last."""


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    requeue_after: float | None = None


Owner = tuple[str, str]
"""(namespace, name) of another offer."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Applied:
    """The planned conditions as the apply left them, and the API failure it kept, if any."""

    model: status.CondValue
    gate: status.CondValue
    route: status.CondValue
    failure: errors.ApiError | None


@dataclasses.dataclass(slots=True)
class Caches:
    offers: Store
    children: dict[str, Store]
    """Child kind → store (indexed by ``owner``)."""
    services: Store
    slices: Store | None = None
    """EndpointSlices indexed by ``service`` (endpointslice resolution only)."""
    grants: Store | None = None
    """Every ReferenceGrant (not only kube402's): a cross-namespace upstream needs one made by its owner."""


def subset_equal(desired: Any, actual: Any) -> bool:
    """Every key of ``desired`` is in ``actual`` with an equal value (server defaults may add keys)."""
    if isinstance(desired, Mapping):
        if not isinstance(actual, Mapping):
            return False
        return all(k in actual and subset_equal(v, actual[k]) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(actual, list) or len(actual) != len(desired):
            return False
        return all(subset_equal(d, a) for d, a in zip(desired, actual, strict=True))
    return bool(desired == actual)


def _needs_apply(desired: Mapping[str, Any], actual: Mapping[str, Any] | None) -> bool:
    if actual is None:
        return True
    dm, am = desired.get("metadata") or {}, actual.get("metadata") or {}
    if not subset_equal(dm.get("labels") or {}, am.get("labels") or {}):
        return True
    if not subset_equal(dm.get("ownerReferences") or [], am.get("ownerReferences") or []):
        return True
    return not subset_equal(desired.get("spec") or {}, actual.get("spec") or {})


def _creation_order(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    ts = str(meta.get("creationTimestamp") or "~")  # missing timestamps sort last
    return (ts, str(meta.get("namespace", "")), str(meta.get("name", "")))


class Reconciler:
    def __init__(
        self,
        *,
        kube: Kube,
        caches: Caches,
        http: httpx.AsyncClient,
        settings: Settings,
        recorder: Recorder,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        registration: OfferRegistration | None = None,
    ) -> None:
        self.registration = registration
        self.kube = kube
        self.caches = caches
        self.http = http
        self.settings = settings
        self.recorder = recorder
        self.clock = clock

    # -- observations -----------------------------------------------------------------------------------

    def _upstream_permitted(self, offer: v1alpha1.ServiceOffer) -> bool:
        """Same namespace, or a ReferenceGrant in the upstream's namespace, not made by kube402, lets
        HTTPRoutes of the offer's namespace reach that Service (Gateway API semantics)."""
        ns, svc = offer.upstream_namespace, offer.upstream.service
        if ns == offer.namespace:
            return True
        if self.caches.grants is None:
            return False
        for grant in self.caches.grants.by_index("namespace", ns):
            meta = grant.get("metadata") or {}
            if (meta.get("labels") or {}).get(names.LABEL_MANAGED_BY) == names.MANAGED_BY_VALUE:
                continue  # one kube402 made itself proves nothing about the owner's consent
            spec = grant.get("spec") or {}
            froms = [f for f in spec.get("from") or [] if isinstance(f, Mapping)]
            tos = [t for t in spec.get("to") or [] if isinstance(t, Mapping)]
            if any(
                f.get("group") == "gateway.networking.k8s.io"
                and f.get("kind") == "HTTPRoute"
                and f.get("namespace") == offer.namespace
                for f in froms
            ) and any(
                t.get("group", "") == "" and t.get("kind") == "Service" and t.get("name") in (None, "", svc)
                for t in tos
            ):
                return True
        return False

    async def _observe_upstream(self, offer: v1alpha1.ServiceOffer) -> status.UpstreamObservation:
        if not self._upstream_permitted(offer):
            return status.UpstreamObservation.not_permitted(
                offer.upstream_namespace, offer.upstream.service, offer.namespace
            )
        svc = self.caches.services.get((offer.upstream_namespace, offer.upstream.service))
        if svc is None:
            return status.UpstreamObservation.missing()

        def slices(ns: str, name: str) -> list[Mapping[str, Any]]:
            if self.caches.slices is None:
                return []
            return self.caches.slices.by_index("service", f"{ns}/{name}")

        try:
            base = endpoints.resolve_base_url(
                svc, port=offer.upstream_port, mode=self.settings.upstream_resolution, slices=slices
            )
        except endpoints.UnresolvableError as err:
            return status.UpstreamObservation.transport_error(str(err))
        return await health.probe(self.http, base + offer.health_path, timeout=self.settings.probe_timeout)

    def _path_owner(self, offer: v1alpha1.ServiceOffer) -> Owner | None:
        """The older offer that already publishes this offer's effective path, or an offer of another
        namespace that owns a prefix of it (issue 9, defect 7: it would capture that namespace's traffic by
        longest prefix), if any."""
        prefix = offer.effective_path
        while (cut := prefix.rfind("/")) > 0:
            prefix = prefix[:cut]
            for o in self.caches.offers.by_index("path", prefix):
                meta = o.get("metadata") or {}
                if meta.get("namespace") != offer.namespace and not meta.get("deletionTimestamp"):
                    return (str(meta.get("namespace")), str(meta.get("name")))
        mine = _creation_order(offer.raw)
        older = [
            o
            for o in self.caches.offers.by_index("path", offer.effective_path)
            if (o.get("metadata") or {}).get("name") != offer.name
            or (o.get("metadata") or {}).get("namespace") != offer.namespace
        ]
        older = [o for o in older if not (o.get("metadata") or {}).get("deletionTimestamp")]
        older = [o for o in older if _creation_order(o) < mine]
        if not older:
            return None
        first = min(older, key=_creation_order)["metadata"]
        return (first["namespace"], first["name"])

    # -- converge ---------------------------------------------------------------------------------------

    def _actual_children(self, offer: v1alpha1.ServiceOffer) -> dict[tuple[str, str, str], Mapping[str, Any]]:
        owner = render.offer_label_key(offer.namespace, offer.name)
        out: dict[tuple[str, str, str], Mapping[str, Any]] = {}
        for res in CHILD_RESOURCES:
            for obj in self.caches.children[res.kind].by_index("owner", owner):
                if "obol.org/registration" in ((obj.get("metadata") or {}).get("labels") or {}):
                    continue  # owned by the RegistrationRequest (so-<name>-wellknown), not the offer (issue 12)
                out[render.child_key({**obj, "kind": res.kind})] = obj
        return out

    async def _delete_children(
        self,
        actual: Mapping[tuple[str, str, str], Mapping[str, Any]],
        keep: set[tuple[str, str, str]],
    ) -> int:
        deleted = 0
        for res in CHILD_RESOURCES:
            for kind, ns, name in actual:
                if kind == res.kind and (kind, ns, name) not in keep:
                    await self.kube.delete(res, name, namespace=ns)
                    deleted += 1
        return deleted

    async def _apply_all(
        self, objs: list[dict[str, Any]], actual: Mapping[tuple[str, str, str], Mapping[str, Any]]
    ) -> set[tuple[str, str, str]]:
        """Apply what differs from the cache; returns the keys written in this pass."""
        by_kind = {r.kind: r for r in CHILD_RESOURCES}
        written: set[tuple[str, str, str]] = set()
        for obj in objs:
            if _needs_apply(obj, actual.get(render.child_key(obj))):
                await self.kube.apply(by_kind[obj["kind"]], obj)
                written.add(render.child_key(obj))
        return written

    def _ingress_verdict(
        self,
        offer: v1alpha1.ServiceOffer,
        actual: Mapping[tuple[str, str, str], Mapping[str, Any]],
        written: set[tuple[str, str, str]],
    ) -> status.CondValue:
        """RoutePublished once the route is applied: the ingress's verdict (or "applied", if configured)."""
        if self.settings.route_acceptance == RouteAcceptance.APPLIED:
            return status.route_ready(offer.effective_path)
        key = (resources.HTTPROUTE.kind, offer.namespace, names.httproute_name(offer.name))
        if key in written:  # the cached status describes an older spec; the update event re-enqueues
            return status.waiting_for_ingress(key[2])
        gw = self.settings.gateway
        return status.route_acceptance(
            actual.get(key),
            gateway=(gw.namespace, gw.name, gw.section),
            path=offer.effective_path,
            route_name=key[2],
        )

    # -- the pass ---------------------------------------------------------------------------------------

    async def reconcile(self, key: Key) -> Result:
        raw = self.caches.offers.get(key)
        if raw is None:
            return Result()
        offer = v1alpha1.ServiceOffer.from_dict(raw)
        if offer.deleting:
            await self._finalize(offer)
            return Result()
        if not finalizer.present(offer):
            await finalizer.add(self.kube, offer)
            return Result()
        up, owner = await self._observe(offer)
        desired = plan.plan(offer, up, owner, self.settings)
        applied = await self._apply(offer, desired)
        return await self._write_status(offer, up, applied)

    async def _observe(self, offer: v1alpha1.ServiceOffer) -> tuple[status.UpstreamObservation, Owner | None]:
        """The upstream's health (not probed for an invalid spec) and the owner of a valid path, if any."""
        if validation.spec_problems(offer):
            up = status.UpstreamObservation.not_probed()
        else:
            up = await self._observe_upstream(offer)
        owner = None if validation.path_problem(offer.path) else self._path_owner(offer)
        return up, owner

    async def _apply(self, offer: v1alpha1.ServiceOffer, desired: plan.Plan) -> _Applied:
        """Converge the children to ``desired``: withdraw first (route before gate), then publish (gate before
        route). An API failure is kept (reported on the conditions, raised after the status write)."""
        model, gate, route = desired.conditions.model, desired.conditions.gate, desired.conditions.route
        actual = self._actual_children(offer)
        failure: errors.ApiError | None = None
        try:
            await self._delete_children(actual, set(desired.keep))
            try:
                await self._apply_all(list(desired.gate_objects), actual)
            except errors.ApiError as err:
                gate, route, failure = (
                    status.CondValue(False, R.APPLY_FAILED, str(err)),
                    status.WAITING_FOR_GATE,
                    err,
                )
                await self._delete_children(actual, set())
            else:
                try:
                    written = await self._apply_all(list(desired.route_objects), actual)
                except errors.ApiError as err:
                    route, failure = status.CondValue(False, R.APPLY_FAILED, str(err)), err
                else:
                    if desired.route_objects:
                        route = self._ingress_verdict(offer, actual, written)
        except errors.ApiError as err:  # a failed withdrawal
            failure = err
        return _Applied(model, gate, route, failure)

    async def _write_status(
        self, offer: v1alpha1.ServiceOffer, up: status.UpstreamObservation, applied: _Applied
    ) -> Result:
        """Registration sub-step (SPEC 5.3, issue 12), then the status write and transition events; a kept
        API failure is raised after the write."""
        failure = applied.failure
        registered = status.registered_condition(offer)
        agent: tuple[str, str] | None = None
        if self.registration is not None:
            try:
                registered, agent_id, tx_hash = await self.registration.step(
                    offer, route_published=applied.route.ok
                )
                agent = (agent_id, tx_hash)
            except errors.ApiError as err:
                registered = status.CondValue(False, R.APPLY_FAILED, str(err))
                failure = failure or err
        observed = status.Observed(
            model=applied.model,
            upstream=up,
            gate=applied.gate,
            route=applied.route,
            registered=registered,
            agent=agent,
        )
        desired_status = status.build(offer, observed, now=self.clock())
        if status.status_changed(offer.status, desired_status):
            await self.kube.apply_status(
                resources.SERVICE_OFFER, namespace=offer.namespace, name=offer.name, status=desired_status
            )
            await self._record_transitions(offer, desired_status)
        if failure is not None:
            raise failure
        ready = any(
            x.get("type") == c.ConditionType.READY and x.get("status") == c.Status.TRUE
            for x in desired_status["conditions"]
        )
        return Result(self.settings.requeue_ready if ready else self.settings.requeue_not_ready)

    async def _finalize(self, offer: v1alpha1.ServiceOffer) -> None:
        if not finalizer.present(offer):
            return
        await self._delete_children(self._actual_children(offer), set())
        # Children outside the cache's view (e.g. created while we were down and not yet seen) are
        # removed by name as well; deletes ignore NotFound.
        await self.kube.delete(
            resources.HTTPROUTE, names.httproute_name(offer.name), namespace=offer.namespace
        )
        await self.kube.delete(
            resources.MIDDLEWARE, names.middleware_name(offer.name), namespace=offer.namespace
        )
        if self.registration is not None:  # SPEC 5.4 steps 2-5 (issue 12): raises until tombstoned
            await self.registration.cleanup(offer)
        await finalizer.remove(self.kube, offer)

    async def _record_transitions(self, offer: v1alpha1.ServiceOffer, new: Mapping[str, Any]) -> None:
        old = {x.type: x for x in c.from_raw(offer.conditions_raw)}
        cur = {x.type: x for x in c.from_raw(new.get("conditions"))}
        obj = offer.raw
        rp_old, rp_new = old.get(T.ROUTE_PUBLISHED), cur[T.ROUTE_PUBLISHED]
        gate_new = cur[T.PAYMENT_GATE_READY]
        was_paused = rp_old is not None and rp_old.reason == R.PAUSED
        if rp_new.reason == R.PAUSED and not was_paused:
            await self.recorder.event(
                obj, reason=status.EventReason.PAUSED, message="Offer paused; gate and route withdrawn"
            )
        elif was_paused and rp_new.reason != R.PAUSED:
            await self.recorder.event(obj, reason=status.EventReason.RESUMED, message="Offer resumed")
        if rp_new.is_true and (rp_old is None or not rp_old.is_true):
            await self.recorder.event(obj, reason=status.EventReason.PUBLISHED, message=rp_new.message)
        elif rp_old is not None and rp_old.is_true and not rp_new.is_true:
            cause = gate_new.message if not gate_new.is_true else rp_new.message
            await self.recorder.event(
                obj, reason=status.EventReason.WITHDRAWN, message=f"Route withdrawn: {cause}", warning=True
            )
        reg_old, reg_new = old.get(T.REGISTERED), cur[T.REGISTERED]
        if reg_new.reason == R.REGISTERED and (reg_old is None or reg_old.reason != R.REGISTERED):
            await self.recorder.event(obj, reason=status.EventReason.REGISTERED, message=reg_new.message)
        gate_old = old.get(T.PAYMENT_GATE_READY)
        if gate_new.reason in (R.INVALID_PRICE, R.INVALID_NETWORK, R.INVALID_SPEC) and (
            gate_old is None or gate_old.reason != gate_new.reason or gate_old.message != gate_new.message
        ):
            await self.recorder.event(obj, reason=gate_new.reason, message=gate_new.message, warning=True)
