"""Keeps the live route table: per-offer views updated incrementally, one debounced rebuild, atomic swap.

Watch events update only the view of the offer they concern (a PricedRoute is built once per change); the
immutable table is then reassembled at most once per ``debounce`` seconds and swapped into the gate in one
assignment, so a request sees either the old or the new table, never a mix. Deleted offers keep their path
guarded for ``guardGraceSeconds`` (Traefik may still route through a stale HTTPRoute for a few seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from kube402.verifier import config as config_mod
from kube402.verifier import offers
from kube402.verifier.gate import Gate
from kube402.verifier.routes import Guard, Route, RouteTable

__all__ = ["TableKeeper"]

log = logging.getLogger(__name__)
Key = tuple[str, str]


class TableKeeper:
    def __init__(
        self,
        gate: Gate,
        *,
        default_gate_mode: str = "forwardAuth",
        secrets: Callable[[str], Mapping[str, Any] | None] = lambda _ns: None,
        debounce: float = 0.01,
        clock: Callable[[], float] = time.monotonic,
        publish: Callable[[RouteTable], None] | None = None,
    ) -> None:
        """``publish`` receives every rebuilt table (default: :meth:`Gate.publish_table` of ``gate``)."""
        self.gate = gate
        self.publish = publish if publish is not None else gate.publish_table
        self.default_gate_mode = default_gate_mode
        self.secrets = secrets
        self.debounce = debounce
        self.clock = clock
        self.views: dict[Key, offers.OfferView] = {}
        self.raw: dict[Key, Mapping[str, Any]] = {}
        self.deleted: dict[str, float] = {}
        self.static: tuple[Route, ...] = ()
        self.static_guards: tuple[Guard, ...] = ()
        self._handle: asyncio.TimerHandle | None = None
        self._labels: set[tuple[str, str, str]] = set()
        self.rebuilds = 0

    # -- inputs -----------------------------------------------------------------------------------------

    def set_static(self, cfg: config_mod.Config) -> None:
        """Static routes from a (re)loaded config. A route that cannot be priced keeps the working route it
        replaces (a reload must not break a paid path), or else guards its path: never unmatched or free."""
        previous = {r.pattern: r for r in self.static}
        built: list[Route] = []
        guards: list[Guard] = []
        for r in cfg.routes:
            try:
                built.append(offers.static_route(r))
            except (ValueError, LookupError) as err:
                kept = previous.get(r.pattern)
                if kept is not None:
                    log.error("static route %s invalid, previous route kept: %s", r.pattern, err)
                    built.append(kept)
                else:
                    log.error("static route %s invalid, path guarded: %s", r.pattern, err)
                    guards.append(Guard(r.pattern, "invalid"))
        self.static = tuple(built)
        self.static_guards = tuple(guards)
        self.schedule()

    def offer_changed(self, key: Key, raw: Mapping[str, Any]) -> None:
        self.raw[key] = raw
        old = self.views.get(key)
        view = offers.route_for_offer(raw, default_gate_mode=self.default_gate_mode, secrets=self.secrets)
        old_pattern = _pattern(old)
        if old_pattern and old_pattern != _pattern(view):
            self._guard_for_grace(old_pattern)  # a stale HTTPRoute may still send the old path here
        if view.skipped:
            log.warning("offer %s/%s not priced: %s", key[0], key[1], view.skipped)
        self.views[key] = view
        if view.route is not None:
            self.deleted.pop(view.route.pattern, None)
        self.schedule()

    def offer_deleted(self, key: Key) -> None:
        view = self.views.pop(key, None)
        self.raw.pop(key, None)
        pattern = _pattern(view)
        if pattern:
            self._guard_for_grace(pattern)
        self.schedule()

    def _guard_for_grace(self, pattern: str) -> None:
        if self.gate.config.guard_grace <= 0:
            return
        self.deleted[pattern] = self.clock() + self.gate.config.guard_grace
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().call_later(self.gate.config.guard_grace + 0.05, self.schedule)

    def refresh_secrets(self, namespace: str) -> None:
        """A litellm-secrets Secret changed: recompute the litellm offers of that namespace."""
        for key, raw in list(self.raw.items()):
            spec = raw.get("spec") or {}
            up = spec.get("upstream") or {}
            if (
                str(up.get("service", "")).lower() == "litellm"
                and (up.get("namespace") or key[0]) == namespace
            ):
                self.offer_changed(key, raw)

    # -- rebuild ----------------------------------------------------------------------------------------

    def schedule(self) -> None:
        if self._handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.rebuild()
            return
        self._handle = loop.call_later(self.debounce, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self.rebuild()

    def rebuild(self) -> RouteTable:
        now = self.clock()
        self.deleted = {p: t for p, t in self.deleted.items() if t > now}
        routes = [v.route for v in self.views.values() if v.route is not None]
        owners = {r.prefix: r.offer_namespace for r in routes}
        guards = [
            g
            for key, v in self.views.items()
            for g in (v.guard, v.published_guard)
            if g is not None and not _under_foreign_prefix(g.pattern, key[0], owners)
        ]
        guards += self.static_guards
        live = {r.pattern for r in routes}
        guards += [Guard(p, "deleted") for p in self.deleted if p not in live]
        routes.sort(key=lambda r: r.pattern)
        table = RouteTable.build(offer_routes=routes, static_routes=self.static, guards=guards)
        self.publish(table)
        self.rebuilds += 1
        m = self.gate.metrics
        m.routes.labels("offer").set(sum(1 for r in table.routes if r.source == "offer"))
        m.routes.labels("static").set(sum(1 for r in table.routes if r.source == "static"))
        skipped = sum(1 for v in self.views.values() if v.skipped)
        m.offers_skipped.labels("invalid").set(skipped)
        labels = {r.labels for r in table.routes}
        m.forget_routes(self._labels - labels)
        self._labels = labels
        return table


def _under_foreign_prefix(pattern: str, namespace: str, owners: Mapping[str, str]) -> bool:
    """True when ``pattern`` lies under a live route of another namespace. An offer there is refused by the
    controller (PathConflict, issue 9 defect 7); guarding its path would let it block that namespace's
    traffic (503) instead, so its guard is dropped: the owner's route answers."""
    prefix = pattern.removesuffix("/*")
    while (cut := prefix.rfind("/")) > 0:
        prefix = prefix[:cut]
        owner = owners.get(prefix)
        if owner is not None and owner != namespace:
            return True
    return False


def _pattern(view: offers.OfferView | None) -> str | None:
    if view is None:
        return None
    if view.route is not None:
        return view.route.pattern
    return view.guard.pattern if view.guard is not None else None
