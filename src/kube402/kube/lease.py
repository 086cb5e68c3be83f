"""Leader election with a coordination.k8s.io Lease.

Expiry is judged by local observation, as client-go does: a lease held by someone else is considered
expired when its record has not changed for ``lease_duration`` seconds of *our* clock, so clock skew between
replicas does not matter. Updates carry the resourceVersion, so two candidates never both win. A leader that
cannot renew within ``renew_deadline`` stops leading at once; a graceful shutdown releases the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from kube402.kube import errors, resources
from kube402.kube.client import Kube

__all__ = ["LeaderElector"]

log = logging.getLogger(__name__)


def _micro_time(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 10.0,
        renew_deadline: float = 7.0,
        retry_period: float = 2.0,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.is_leader = asyncio.Event()
        self._observed_record: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._rv = ""

    def _body(self, *, acquire: bool, transitions: int, acquire_time: str | None) -> dict[str, Any]:
        now = _micro_time(dt.datetime.now(dt.UTC))
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace, "resourceVersion": self._rv},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease_duration),
                "acquireTime": now if acquire else acquire_time,
                "renewTime": now,
                "leaseTransitions": transitions,
            },
        }

    async def _try_acquire_or_renew(self) -> bool:
        lease = await self.kube.get(resources.LEASE, self.name, namespace=self.namespace)
        if lease is None:
            body = self._body(acquire=True, transitions=0, acquire_time=None)
            del body["metadata"]["resourceVersion"]
            try:
                created = await self.kube.create(resources.LEASE, body)
            except (errors.Conflict, errors.Invalid):
                return False
            self._rv = created["metadata"]["resourceVersion"]
            return True
        spec = lease.get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))
        now = time.monotonic()
        if record != self._observed_record:
            self._observed_record = record
            self._observed_at = now
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and now < self._observed_at + duration:
            return False
        self._rv = lease["metadata"]["resourceVersion"]
        transitions = int(spec.get("leaseTransitions") or 0)
        ours = holder == self.identity
        body = self._body(
            acquire=not ours,
            transitions=transitions if ours else transitions + 1,
            acquire_time=spec.get("acquireTime"),
        )
        try:
            updated = await self.kube.replace(resources.LEASE, body)
        except errors.Conflict:
            return False
        self._rv = updated["metadata"]["resourceVersion"]
        spec = updated["spec"]
        self._observed_record = (
            spec.get("holderIdentity"),
            spec.get("renewTime"),
            spec.get("leaseTransitions"),
        )
        self._observed_at = time.monotonic()
        return True

    async def _acquire(self) -> None:
        while True:
            try:
                if await self._try_acquire_or_renew():
                    log.info("acquired lease %s/%s as %s", self.namespace, self.name, self.identity)
                    return
            except errors.ApiError as err:
                log.warning("lease acquire failed: %s", err)
            await asyncio.sleep(self.retry_period)

    async def _renew_loop(self) -> None:
        """Returns when leadership is lost."""
        while True:
            await asyncio.sleep(self.retry_period)
            deadline = time.monotonic() + self.renew_deadline
            while True:
                try:
                    if await asyncio.wait_for(self._try_acquire_or_renew(), timeout=self.renew_deadline):
                        break
                except (errors.ApiError, TimeoutError) as err:
                    log.warning("lease renew failed: %s", err)
                if time.monotonic() >= deadline:
                    log.error("could not renew lease %s/%s; stepping down", self.namespace, self.name)
                    return
                await asyncio.sleep(min(self.retry_period, 1.0))

    async def release(self) -> None:
        """Give the lease up so that another replica can take over at once."""
        with contextlib.suppress(errors.ApiError):
            lease = await self.kube.get(resources.LEASE, self.name, namespace=self.namespace)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = ""
                lease["spec"]["leaseDurationSeconds"] = 1
                await self.kube.replace(resources.LEASE, lease)

    async def run(self, lead: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Acquire, run ``lead()`` while leading; return when leadership is lost (caller decides to exit)."""
        await self._acquire()
        self.is_leader.set()
        task = asyncio.create_task(lead())
        renew = asyncio.create_task(self._renew_loop())
        try:
            done, _ = await asyncio.wait({task, renew}, return_when=asyncio.FIRST_COMPLETED)
            if task in done and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        finally:
            self.is_leader.clear()
            for t in (task, renew):
                t.cancel()
            for t in (task, renew):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            await self.release()
