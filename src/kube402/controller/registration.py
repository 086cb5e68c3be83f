"""ERC-8004 registration: the offer side (SPEC 5.3, 5.4) and the RegistrationRequest side (SPEC 6.2-6.4).

Why a separate queue and a fresh read: an RR pass may wait on a chain, and its status is the fence of the
"no duplicate mint" invariant, so every RR pass starts from a GET (not the cache) and every status write is
conditional on the resourceVersion it read (a stale replica's write fails with 409 instead of overwriting a
newer fence). The decisions are :mod:`kube402.controller.registration_plan`'s; this module observes and
executes. The signing key is held by :class:`kube402.controller.settings.SigningKey` and never logged.

Test hook: ``KUBE402_TEST_CRASH_AT=<step>`` makes the process SIGKILL itself at that step (after-fence,
after-hash-stored, after-broadcast, after-mined); unset by default, used by the crash-safety tests only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
from collections.abc import Mapping
from typing import Any, Final

import prometheus_client

from kube402.api import chains, names, v1alpha1
from kube402.api import conditions as c
from kube402.chain import registry as chain_registry
from kube402.chain import rpc
from kube402.controller import direct_registration, documents, status
from kube402.controller import registration_plan as plan
from kube402.controller.settings import Settings
from kube402.kube import errors, resources
from kube402.kube.client import Kube
from kube402.kube.events import Recorder
from kube402.kube.informer import Event, Informer
from kube402.kube.store import Key, Store
from kube402.kube.workqueue import ShutDown, WorkQueue

__all__ = [
    "CleanupPending",
    "OfferRegistration",
    "RegistrationMetrics",
    "RegistrationReconciler",
    "RegistrationRuntime",
    "base_url",
    "crash_point",
    "validate",
]

log = logging.getLogger(__name__)
R = c.Reason
CondValue = status.CondValue

DEFAULT_BASE_URL: Final = "http://obol.stack:8080"
BASE_URL_CONFIGMAP: Final = ("obol-frontend", "obol-stack-config")
CRASH_ENV: Final = "KUBE402_TEST_CRASH_AT"
STATUS_KEYS: Final = (
    "phase",
    "message",
    "publishedUrl",
    "agentId",
    "registrationTxHash",
    "registrationOwner",
    "registrationUri",
    "registrationSearchFromBlock",
    "metadataSynced",
)
TERMINAL_DELETE_PHASES: Final = frozenset({plan.Phase.TOMBSTONED, plan.Phase.OFF_CHAIN_ONLY})
REGISTRATION_RESOURCES: Final = (
    resources.HTTPROUTE,
    resources.SERVICE,
    resources.DEPLOYMENT,
    resources.CONFIGMAP,
)


class CleanupPending(Exception):
    """Deletion must wait for the tombstone (SPEC 5.4 step 4): back off and retry."""


def crash_point(step: str) -> None:
    """Test-only: SIGKILL this process at ``step`` when ``$KUBE402_TEST_CRASH_AT`` names it."""
    if os.environ.get(CRASH_ENV) == step:
        log.warning("test crash hook: SIGKILL at %s", step)
        os.kill(os.getpid(), signal.SIGKILL)


async def base_url(kube: Kube, settings: Settings) -> str:
    """SPEC section 0: AGENT_BASE_URL, else obol-stack-config ``tunnelURL``, else the default; no trailing /.
    A read error other than NotFound propagates (the pass aborts)."""
    if settings.agent_base_url:
        return settings.agent_base_url.rstrip("/")
    cm = await kube.get(resources.CONFIGMAP, BASE_URL_CONFIGMAP[1], namespace=BASE_URL_CONFIGMAP[0])
    url = ((cm or {}).get("data") or {}).get("tunnelURL", "")
    return (url.strip() or DEFAULT_BASE_URL).rstrip("/")


def _subset(desired: Any, actual: Any) -> bool:
    if isinstance(desired, Mapping):
        return isinstance(actual, Mapping) and all(
            k in actual and _subset(v, actual[k]) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(desired)
            and all(_subset(d, a) for d, a in zip(desired, actual, strict=True))
        )
    return bool(desired == actual)


def _needs_apply(desired: Mapping[str, Any], actual: Mapping[str, Any] | None) -> bool:
    if actual is None:
        return True
    dm, am = desired.get("metadata") or {}, actual.get("metadata") or {}
    for field in ("labels", "ownerReferences"):
        if not _subset(dm.get(field) or {}, am.get(field) or {}):
            return True
    return any(not _subset(desired[k], actual.get(k)) for k in ("spec", "data") if k in desired)


class RegistrationMetrics:
    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self.submissions = prometheus_client.Counter(
            "kube402_registration_submissions_total",
            "register(agentURI) transactions broadcast",
            registry=registry,
        )
        self.recoveries = prometheus_client.Counter(
            "kube402_registration_recoveries_total",
            "Receipt/log recoveries run before a submission, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.phases = prometheus_client.Gauge(
            "kube402_registration_phase",
            "RegistrationRequests per phase (from the watch cache)",
            ["phase"],
            registry=registry,
        )
        self.chain_writes = prometheus_client.Counter(
            "kube402_registration_chain_writes_total",
            "setAgentURI / setMetadata transactions, by kind",
            ["kind"],
            registry=registry,
        )
        self.reconciles = prometheus_client.Counter(
            "kube402_registration_reconciles_total",
            "RegistrationRequest passes",
            ["result"],
            registry=registry,
        )

    def count_phases(self, store: Store) -> None:
        counts = dict.fromkeys([p.value for p in plan.Phase], 0)
        for rr in store:
            phase = str((rr.get("status") or {}).get("phase") or "")
            if phase in counts:
                counts[phase] += 1
        for phase, n in counts.items():
            self.phases.labels(phase).set(n)


# ---- chain access ----------------------------------------------------------------------------------------


class ChainAccess:
    """Everything an RR pass asks of the identity chain, through ``kube402.chain`` only."""

    def __init__(self, settings: Settings) -> None:
        reg = settings.registration
        self.settings = reg
        self.chain = chains.lookup(reg.chain)
        self.chain_id = self.chain.chain_id
        self.registry_address = reg.registry or chains.identity_registry(self.chain_id)
        self.node = rpc.Rpc(reg.rpc_url, request_timeout=reg.rpc_timeout)
        self.registry = chain_registry.IdentityRegistry(self.node, self.registry_address)
        self.signer: rpc.LocalSigner | None = (
            chain_registry.local_signer(reg.key.reveal()) if reg.key is not None else None
        )

    @property
    def address(self) -> str:
        return self.signer.address if self.signer is not None else ""

    @property
    def agent_registry(self) -> str:
        return f"eip155:{self.chain_id}:{self.registry_address}"

    async def check(self) -> str:
        """ "" when the RPC answers with the configured chain id, else the SPEC 6.3 step 5 message."""
        try:
            actual = int(await self.node.run(lambda: self.node.w3.eth.chain_id))
        except rpc.ChainError as err:
            return plan.truncate(f"Waiting for ERC-8004 RPC connectivity: {err}")
        except Exception as err:  # noqa: BLE001 - any transport failure is "not connected"
            return plan.truncate(f"Waiting for ERC-8004 RPC connectivity: {err}")
        if actual != self.chain_id:
            return f"RPC chain id {actual} does not match configured chain {self.chain_id}"
        return ""

    async def head(self) -> int:
        return await self.node.block_number()

    async def recover(self, need: plan.NeedRecovery, chunk: int) -> plan.Recovery:
        """Receipt first (when a hash is recorded), else a chunked log scan by owner for the fenced URI."""
        return await direct_registration.recover(self.registry, need, chunk)

    async def sign_register(self, uri: str) -> rpc.SignedTx:
        assert self.signer is not None
        nonce = await self.registry.confirmed_nonce(self.signer.address)
        return await self.node.sign(self.signer, self.registry.register_call(uri), nonce=nonce)

    async def set_uri(self, agent_id: int, uri: str) -> None:
        assert self.signer is not None
        await self.registry.set_agent_uri(agent_id, uri, signer=self.signer)

    async def sync_metadata(self, agent_id: int, desired: Mapping[str, bytes]) -> int:
        """Read each key first; write only those that differ. Returns the number of writes."""
        assert self.signer is not None
        writes = 0
        for key, value in desired.items():
            if await self.registry.get_metadata(agent_id, key) == value:
                continue
            await self.registry.set_metadata(agent_id, key, value, signer=self.signer)
            writes += 1
        return writes


def validate(settings: Settings) -> None:
    """Refuse unusable registration settings up front in one sentence (ValueError), not at the first pass."""
    reg = settings.registration
    try:
        chain = chains.lookup(reg.chain)
    except chains.UnknownNetworkError:
        raise ValueError(f"ERC8004_CHAIN {reg.chain!r} is not a known chain") from None
    if not reg.registry:
        try:
            chains.identity_registry(chain.chain_id)
        except chains.UnknownNetworkError:
            raise ValueError(
                f"ERC8004_CHAIN {reg.chain} has no official identity registry; set ERC8004_REGISTRY"
            ) from None
    if reg.key is not None:
        chain_registry.local_signer(reg.key.reveal())  # raises a key-free ValueError


def desired_metadata(
    offer: v1alpha1.ServiceOffer, previous_doc: Mapping[str, Any] | None
) -> dict[str, bytes]:
    """SPEC 6.3 step 8: x402.supported, service.type, metadata.<k>; keys gone since the last document are
    written empty."""
    out: dict[str, bytes] = {"x402.supported": b"\x01", "service.type": offer.effective_type.encode()}
    for key, value in sorted(offer.registration.metadata.items()):
        if value.strip():
            out[f"metadata.{key}"] = value.encode()
    previous = (previous_doc or {}).get("metadata")
    if isinstance(previous, Mapping):
        for key in previous:
            out.setdefault(f"metadata.{key}", b"")
    return out


# ---- RR side ---------------------------------------------------------------------------------------------


class RegistrationReconciler:
    def __init__(
        self,
        *,
        kube: Kube,
        settings: Settings,
        offers: Store,
        recorder: Recorder,
        metrics: RegistrationMetrics,
        chain: ChainAccess | None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.offers = offers
        self.recorder = recorder
        self.metrics = metrics
        self.chain = chain

    async def _write(self, rr: dict[str, Any], st: plan.RRStatus) -> dict[str, Any]:
        """Conditional status write (resourceVersion precondition): a stale writer gets 409."""
        current = rr.get("status") or {}
        new = st.to_dict()
        if all(current.get(k) == new.get(k) for k in STATUS_KEYS):
            return rr
        body = {k: new.get(k) for k in STATUS_KEYS}  # None removes a key (merge patch)
        meta = rr["metadata"]
        updated = await self.kube.merge_patch(
            resources.REGISTRATION_REQUEST,
            meta["name"],
            namespace=meta["namespace"],
            subresource="status",
            patch={"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": body},
        )
        return updated

    async def _offer_event(self, offer_raw: Mapping[str, Any], reason: str, message: str) -> None:
        await self.recorder.event(
            {**offer_raw, "kind": names.KIND_OFFER, "apiVersion": names.API_VERSION},
            reason=reason,
            message=message,
        )

    async def _delete_objects(self, ns: str, offer_name: str) -> None:
        rr_name = names.registration_name(offer_name)
        await self.kube.delete(resources.HTTPROUTE, documents.wellknown_route_name(offer_name), namespace=ns)
        await self.kube.delete(
            resources.SERVICE, names.safe_name("", rr_name, limit=names.LABEL_LIMIT), namespace=ns
        )
        await self.kube.delete(resources.DEPLOYMENT, rr_name, namespace=ns)
        await self.kube.delete(resources.CONFIGMAP, rr_name, namespace=ns)

    def _signer(self) -> str:
        return self.chain.address if self.chain is not None else ""

    def _registrant(self) -> str:
        return self.settings.registration.registrant if self.chain is not None else ""

    async def reconcile(self, key: Key) -> float | None:
        """One pass; returns the requeue delay (None: none). Raises on API and chain errors (backoff)."""
        ns, name = key
        raw = await self.kube.get(resources.REGISTRATION_REQUEST, name, namespace=ns)
        if raw is None:
            return None
        rr = v1alpha1.RegistrationRequest.from_dict(raw)
        offer_key = (rr.service_offer_namespace or ns, rr.service_offer_name)
        offer_raw = self.offers.get(offer_key) or await self.kube.get(
            resources.SERVICE_OFFER, offer_key[1], namespace=offer_key[0]
        )
        st = plan.RRStatus.from_dict(rr.status)
        if offer_raw is None:
            await self._delete_objects(ns, rr.service_offer_name)
            await self._write(
                raw, st.with_(phase=plan.Phase.TOMBSTONED, message="ServiceOffer no longer exists")
            )
            return None
        offer = v1alpha1.ServiceOffer.from_dict(offer_raw)
        base = await base_url(self.kube, self.settings)
        if rr.desired_state == "Tombstoned":
            return await self._tombstone(raw, offer, st, base)
        return await self._active(raw, offer, st, base)

    def _document(self, offer: v1alpha1.ServiceOffer, base: str, agent_id: str) -> dict[str, Any]:
        chain_id = (
            self.chain.chain_id
            if self.chain is not None
            else chains.lookup(self.settings.registration.chain).chain_id
        )
        reg_addr = (
            self.chain.registry_address
            if self.chain is not None
            else (self.settings.registration.registry or chains.identity_registry(chain_id))
        )
        return documents.registration_document(
            offer, base_url=base, agent_id=agent_id, chain_id=chain_id, registry=reg_addr
        )

    async def _readiness(self, objs: list[dict[str, Any]], actual: list[dict[str, Any] | None]) -> str:
        cm, dep, svc, route = actual
        if cm is None:
            return "Waiting for registration ConfigMap"
        if dep is None:
            return "Waiting for registration Deployment"
        strict = self.settings.registration.readiness == "strict"
        if strict and int(((dep.get("status") or {}).get("availableReplicas")) or 0) < 1:
            return "Waiting for registration Deployment availability"
        if svc is None:
            return "Waiting for registration Service"
        if route is None:
            return "Waiting for registration HTTPRoute"
        if strict:
            parents = (route.get("status") or {}).get("parents") or []
            ok = False
            for parent in parents:
                conds = {x.get("type"): x.get("status") for x in parent.get("conditions") or []}
                if conds.get("Accepted") == c.Status.TRUE and conds.get("ResolvedRefs") != c.Status.FALSE:
                    ok = True
            if not ok:
                return "Waiting for registration HTTPRoute acceptance"
        return ""

    async def _active(
        self, raw: dict[str, Any], offer: v1alpha1.ServiceOffer, st: plan.RRStatus, base: str
    ) -> float | None:
        offer_agent = str(offer.status.get("agentId") or "")
        doc = self._document(offer, base, st.agent_id or offer_agent)
        objs, actual, previous_doc = await self._publish_documents(raw, offer, doc)
        inputs = plan.Inputs(
            status=st,
            published_url=base + documents.WELL_KNOWN_PATH,
            offer_agent_id=offer_agent,
            offer_tx_hash=str(offer.status.get("registrationTxHash") or ""),
            readiness=await self._readiness(objs, actual),
            signer=self._signer(),
            registrant=self._registrant(),
            document_changed=previous_doc != doc,
        )
        while True:
            step = plan.plan_active(inputs)
            answered = await self._answer(inputs, step)
            if answered is None:
                return await self._act(raw, offer, st, step, previous_doc)
            inputs = answered

    async def _publish_documents(
        self, raw: dict[str, Any], offer: v1alpha1.ServiceOffer, doc: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any] | None], dict[str, Any] | None]:
        """Apply what differs of the document's children; returns them, their current state and the document
        the ConfigMap held before this pass (None if unreadable)."""
        ns = raw["metadata"]["namespace"]
        objs = documents.registration_objects(
            rr=raw,
            offer_name=offer.name,
            document=documents.serialize(doc),
            image=self.settings.static_image,
            gateway=(
                self.settings.gateway.namespace,
                self.settings.gateway.name,
                self.settings.gateway.section,
            ),
        )
        by_kind = {r.kind: r for r in REGISTRATION_RESOURCES}
        actual: list[dict[str, Any] | None] = []
        previous_doc: dict[str, Any] | None = None
        for obj in objs:
            res = by_kind[obj["kind"]]
            current = await self.kube.get(res, obj["metadata"]["name"], namespace=ns)
            if obj["kind"] == "ConfigMap" and current is not None:
                with contextlib.suppress(ValueError, TypeError):
                    previous_doc = json.loads((current.get("data") or {}).get(documents.DOCUMENT_KEY, ""))
            if _needs_apply(obj, current):
                current = await self.kube.apply(res, obj)
            actual.append(current)
        return objs, actual, previous_doc

    async def _answer(self, inputs: plan.Inputs, step: plan.Step) -> plan.Inputs | None:
        """The inputs with the plan's question (chain, head, recovery) answered; None if ``step`` is an action."""
        if isinstance(step, plan.NeedChain):
            assert self.chain is not None
            return _replace(inputs, chain_error=await self.chain.check())
        if isinstance(step, plan.NeedHead):
            assert self.chain is not None
            try:
                return _replace(inputs, head=await self.chain.head())
            except rpc.ChainError as err:
                return _replace(inputs, head_error=str(err) or type(err).__name__)
        if isinstance(step, plan.NeedRecovery):
            assert self.chain is not None
            rec = await self.chain.recover(step, self.settings.registration.log_chunk)
            outcome = "error" if rec.error else ("found" if rec.found else "none")
            self.metrics.recoveries.labels(outcome).inc()
            return _replace(inputs, recovery=rec)
        return None

    async def _act(
        self,
        raw: dict[str, Any],
        offer: v1alpha1.ServiceOffer,
        st: plan.RRStatus,
        step: plan.Step,
        previous_doc: dict[str, Any] | None,
    ) -> float | None:
        """Carry out one action step of an Active pass; returns the requeue delay."""
        ns = raw["metadata"]["namespace"]
        if isinstance(step, plan.Write):
            fencing = (
                step.status.from_block != st.from_block
                or step.status.owner != st.owner
                or step.status.uri != st.uri
            )
            raw = await self._write(raw, step.status)
            if fencing and not step.status.agent_id:
                crash_point("after-fence")
            if step.event == status.EventReason.REGISTERED and st.phase != plan.Phase.REGISTERED:
                log.info("registered %s/%s as agent %s", ns, raw["metadata"]["name"], step.status.agent_id)
            if step.error:
                raise RegistrationChainError(step.error)
            return step.requeue
        if isinstance(step, plan.Submit):
            return await self._submit(raw, offer, step)
        if isinstance(step, plan.Adopted):
            crash_point("after-mined")
            raw = await self._write(raw, step.status)
            if step.duplicates:
                log.warning("%s/%s: %s", ns, raw["metadata"]["name"], step.status.message)
            return plan.SOON
        if isinstance(step, plan.Maintain):
            await self._maintain(raw, offer, step, previous_doc)
            return None
        raise AssertionError(step)  # pragma: no cover - Tombstone is not an active step

    async def _submit(self, raw: dict[str, Any], offer: v1alpha1.ServiceOffer, step: plan.Submit) -> float:
        assert self.chain is not None
        try:
            signed = await self.chain.sign_register(step.uri)
        except rpc.ChainError as err:
            await self._write(raw, step.status.with_(message=f"Submitting on-chain registration: {err}"))
            raise RegistrationChainError(str(err)) from None
        st = step.status.with_(
            tx_hash=signed.hash, message=f"Submitted on-chain registration transaction {signed.hash}"
        )
        raw = await self._write(raw, st)  # the hash is stored before the broadcast
        crash_point("after-hash-stored")
        try:
            await self.chain.node.broadcast(signed)
        except rpc.ChainError as err:
            text = str(err).lower()
            if "already known" not in text and "nonce too low" not in text:
                await self._write(raw, st.with_(message=f"Submitting on-chain registration: {err}"))
                raise RegistrationChainError(str(err)) from None
        self.metrics.submissions.inc()
        crash_point("after-broadcast")
        await self._offer_event(offer.raw, status.EventReason.REGISTRATION_SUBMITTED, st.message)
        return plan.RETRY

    async def _maintain(
        self,
        raw: dict[str, Any],
        offer: v1alpha1.ServiceOffer,
        step: plan.Maintain,
        previous_doc: Mapping[str, Any] | None,
    ) -> None:
        assert self.chain is not None
        st = step.status
        if step.set_uri is not None:
            try:
                await self.chain.set_uri(step.agent_id, step.set_uri)
                self.metrics.chain_writes.labels("setAgentURI").inc()
                st = st.with_(uri=step.set_uri)
                raw = await self._write(
                    raw,
                    st.with_(
                        phase=plan.Phase.REGISTERING,
                        metadata_synced=False,
                        message=f"Updated agentURI of agent {step.agent_id} to {step.set_uri}",
                    ),
                )
            except rpc.ChainError as err:
                await self._write(
                    raw, st.with_(phase=plan.Phase.REGISTERING, message=f"Updating agentURI: {err}")
                )
                raise RegistrationChainError(str(err)) from None
        synced = st.metadata_synced
        if step.sync:
            try:
                writes = await self.chain.sync_metadata(step.agent_id, desired_metadata(offer, previous_doc))
                self.metrics.chain_writes.labels("setMetadata").inc(writes)
                synced = True
            except rpc.ChainError as err:
                log.warning("metadata sync for agent %s failed: %s", step.agent_id, err)
        final = st.with_(
            metadata_synced=synced,
            message=plan._registered_message(st.agent_id, pending_sync=not synced),
        )
        await self._write(raw, final)

    async def _tombstone(
        self, raw: dict[str, Any], offer: v1alpha1.ServiceOffer, st: plan.RRStatus, base: str
    ) -> float | None:
        ns = raw["metadata"]["namespace"]
        inputs = plan.Inputs(
            status=st,
            published_url=base + documents.WELL_KNOWN_PATH,
            offer_agent_id=str(offer.status.get("agentId") or ""),
            signer=self._signer(),
        )
        while True:
            step = plan.plan_tombstone(inputs)
            if isinstance(step, plan.NeedChain):
                assert self.chain is not None
                inputs = _replace(inputs, chain_error=await self.chain.check())
                continue
            break
        if isinstance(step, plan.Tombstone):
            assert self.chain is not None
            active = self._document(offer, base, str(step.agent_id))
            try:
                await self.chain.set_uri(step.agent_id, documents.tombstone_uri(active))
                self.metrics.chain_writes.labels("setAgentURI").inc()
            except rpc.ChainError as err:
                step_status = step.status.with_(
                    phase=plan.Phase.OFF_CHAIN_ONLY,
                    message=f"Deleted registration resources but could not tombstone on-chain: {err}",
                )
            else:
                step_status = step.status
                try:
                    await self.chain.sync_metadata(step.agent_id, {"x402.supported": b"\x00"})
                    self.metrics.chain_writes.labels("setMetadata").inc()
                except rpc.ChainError as err:
                    log.warning("tombstone metadata for agent %s failed: %s", step.agent_id, err)
                await self._offer_event(offer.raw, "Tombstoned", step_status.message)
            await self._delete_objects(ns, offer.name)
            await self._write(raw, step_status)
            return None
        assert isinstance(step, plan.Write)
        await self._delete_objects(ns, offer.name)
        await self._write(raw, step.status)
        return None


class RegistrationChainError(Exception):
    """An RR pass that must back off (recovery or submission failed); the status already says why."""


def _replace(inputs: plan.Inputs, **changes: Any) -> plan.Inputs:
    return dataclasses.replace(inputs, **changes)


# ---- offer side (SPEC 5.3, 5.4) ------------------------------------------------------------------------


def _creation_order(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return (
        str(meta.get("creationTimestamp") or "~"),
        str(meta.get("namespace", "")),
        str(meta.get("name", "")),
    )


def singleton_owner(offers: Store) -> tuple[str, str] | None:
    """The oldest offer (not deleting, not paused, registration enabled) owning the well-known path."""
    candidates = []
    for raw in offers.by_index("registration", "enabled"):
        o = v1alpha1.ServiceOffer.from_dict(raw)
        if not o.deleting and not o.paused and o.registration.enabled:
            candidates.append(raw)
    if not candidates:
        return None
    first = min(candidates, key=_creation_order)["metadata"]
    return (first["namespace"], first["name"])


def index_registration(obj: Mapping[str, Any]) -> list[str]:
    reg = ((obj.get("spec") or {}).get("registration")) or {}
    return ["enabled"] if isinstance(reg, Mapping) and reg.get("enabled") is True else []


class OfferRegistration:
    """What the offer reconciler asks about registration."""

    def __init__(self, *, kube: Kube, offers: Store, rrs: Store, settings: Settings) -> None:
        self.kube = kube
        self.offers = offers
        self.rrs = rrs
        self.settings = settings

    def _rr(self, offer: v1alpha1.ServiceOffer, desired: str) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "serviceOfferName": offer.name,
            "serviceOfferNamespace": offer.namespace,
            "desiredState": desired,
            "chain": self.settings.registration.chain,
        }
        return {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND_RR,
            "metadata": {
                "name": names.registration_name(offer.name),
                "namespace": offer.namespace,
                "labels": {
                    names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE,
                    names.LABEL_OFFER: names.label_value(offer.name),
                },
                "ownerReferences": [
                    {
                        "apiVersion": names.API_VERSION,
                        "kind": names.KIND_OFFER,
                        "name": offer.name,
                        "uid": offer.metadata.uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": spec,
        }

    async def _delete_rr(self, offer: v1alpha1.ServiceOffer) -> None:
        name = names.registration_name(offer.name)
        if self.rrs.get((offer.namespace, name)) is not None:
            await self.kube.delete(resources.REGISTRATION_REQUEST, name, namespace=offer.namespace)

    async def step(
        self, offer: v1alpha1.ServiceOffer, *, route_published: bool
    ) -> tuple[CondValue, str, str]:
        """(Registered condition, agentId, tx hash) for the offer status (SPEC 5.3)."""
        agent = str(offer.status.get("agentId") or "")
        tx = str(offer.status.get("registrationTxHash") or "")
        if not offer.registration.enabled:
            await self._delete_rr(offer)
            return CondValue(True, R.DISABLED, "Registration disabled"), agent, tx
        owner = singleton_owner(self.offers)
        if owner is not None and owner != (offer.namespace, offer.name):
            await self._delete_rr(offer)
            return (
                CondValue(
                    False,
                    R.SINGLETON_CONFLICT,
                    f"Registration path {documents.WELL_KNOWN_PATH} is reserved by {owner[0]}/{owner[1]}",
                ),
                agent,
                tx,
            )
        if not route_published:
            return (
                CondValue(False, R.WAITING_FOR_ROUTE, "Waiting for route publication before registration"),
                agent,
                tx,
            )
        desired = self._rr(offer, "Active")
        current = self.rrs.get((offer.namespace, desired["metadata"]["name"]))
        try:
            if _needs_apply(desired, current):
                current = await self.kube.apply(resources.REGISTRATION_REQUEST, desired)
        except errors.NotFound:
            raise  # the offer's namespace is going away; the worker forgets the key
        except errors.ApiError as err:
            return CondValue(False, R.APPLY_FAILED, str(err)), agent, tx
        if current is None:
            return CondValue(False, R.PENDING, "Waiting for RegistrationRequest"), agent, tx
        rst = current.get("status") or {}
        agent = str(rst.get("agentId") or "") or agent
        tx = str(rst.get("registrationTxHash") or "") or tx
        phase = str(rst.get("phase") or "")
        if phase in (plan.Phase.REGISTERED, plan.Phase.OFF_CHAIN_ONLY):
            return (
                CondValue(True, c.Reason(phase), str(rst.get("message") or "Registration reconciled")),
                agent,
                tx,
            )
        reason = c.Reason(phase) if phase in {r.value for r in c.Reason} else R.PENDING
        return (
            CondValue(False, reason, str(rst.get("message") or "Waiting for RegistrationRequest to finish")),
            agent,
            tx,
        )

    async def cleanup(self, offer: v1alpha1.ServiceOffer) -> None:
        """SPEC 5.4 steps 2-5 (the RR part); raises :class:`CleanupPending` until the tombstone is done."""
        name = names.registration_name(offer.name)
        agent = str(offer.status.get("agentId") or "")
        if not offer.registration.enabled and not agent:
            await self.kube.delete(resources.REGISTRATION_REQUEST, name, namespace=offer.namespace)
            return
        current = await self.kube.get(resources.REGISTRATION_REQUEST, name, namespace=offer.namespace)
        if current is None and not agent:
            return
        if current is None or (current.get("spec") or {}).get("desiredState") != "Tombstoned":
            current = await self.kube.apply(resources.REGISTRATION_REQUEST, self._rr(offer, "Tombstoned"))
        phase = str((current.get("status") or {}).get("phase") or "")
        if phase not in TERMINAL_DELETE_PHASES:
            raise CleanupPending(f"registration cleanup pending for {offer.namespace}/{offer.name}")
        await self.kube.delete(resources.REGISTRATION_REQUEST, name, namespace=offer.namespace)


# ---- wiring ----------------------------------------------------------------------------------------------


class RegistrationRuntime:
    """The RR informer, the registration work queue and its workers; the offer side's view."""

    def __init__(
        self,
        kube: Kube,
        settings: Settings,
        *,
        offers: Informer,
        offer_queue: WorkQueue[Key],
        registry: prometheus_client.CollectorRegistry,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.offers = offers
        self.offer_queue = offer_queue
        self.queue: WorkQueue[Key] = WorkQueue(base_delay=1.0, max_delay=60.0)
        self.metrics = RegistrationMetrics(registry)
        self.rrs = Informer(kube, resources.REGISTRATION_REQUEST)
        self.rrs.add_handler(self._on_rr)
        self.base_cm = Informer(
            kube,
            resources.CONFIGMAP,
            namespace=BASE_URL_CONFIGMAP[0],
            field_selector=f"metadata.name={BASE_URL_CONFIGMAP[1]}",
        )
        self.base_cm.add_handler(self._on_base_url)
        self.informers = [self.rrs, self.base_cm]
        self.offer_side = OfferRegistration(
            kube=kube, offers=offers.store, rrs=self.rrs.store, settings=settings
        )
        self.chain = (
            ChainAccess(settings) if (settings.registration.key or settings.registration.registrant) else None
        )

    def _on_rr(self, event: Event) -> None:
        self.queue.add(event.key)
        spec = event.obj.get("spec") or {}
        offer_ns = spec.get("serviceOfferNamespace") or event.key[0]
        offer = spec.get("serviceOfferName")
        if offer:
            self.offer_queue.add((offer_ns, offer))
        self.metrics.count_phases(self.rrs.store)

    def _on_base_url(self, event: Event) -> None:
        for key in self.rrs.store.keys():  # noqa: SIM118 - Store iterates values
            self.queue.add(key)

    def on_offer(self, event: Event) -> None:
        """A registration-enabled offer changed: the singleton owner may have changed for all of them."""
        if not (index_registration(event.obj) or (event.old is not None and index_registration(event.old))):
            return
        for raw in self.offers.store.by_index("registration", "enabled"):
            meta = raw["metadata"]
            if (meta["namespace"], meta["name"]) != event.key:
                self.offer_queue.add((meta["namespace"], meta["name"]))

    async def _worker(self, reconciler: RegistrationReconciler) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                requeue = await reconciler.reconcile(key)
            except errors.Conflict:
                self.metrics.reconciles.labels("conflict").inc()
                self.queue.add_rate_limited(key)
            except (errors.ApiError, RegistrationChainError) as err:
                self.metrics.reconciles.labels("error").inc()
                delay = self.queue.add_rate_limited(key)
                log.warning("registration %s/%s: %s; retry in %.0fs", *key, err, delay)
            except Exception:
                self.metrics.reconciles.labels("error").inc()
                delay = self.queue.add_rate_limited(key)
                log.exception("registration %s/%s crashed; retry in %.0fs", *key, delay)
            else:
                self.metrics.reconciles.labels("success").inc()
                self.queue.forget(key)
                if requeue is not None:
                    self.queue.add_after(key, requeue)
            finally:
                self.queue.done(key)

    async def run_workers(self, recorder: Recorder) -> None:
        await asyncio.gather(*(inf.synced.wait() for inf in self.informers))
        for key in self.rrs.store.keys():  # noqa: SIM118 - Store iterates values
            self.queue.add(key)
        reconciler = RegistrationReconciler(
            kube=self.kube,
            settings=self.settings,
            offers=self.offers.store,
            recorder=recorder,
            metrics=self.metrics,
            chain=self.chain,
        )
        await asyncio.gather(*(self._worker(reconciler) for _ in range(max(1, self.settings.workers))))
