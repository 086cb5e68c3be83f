"""ServiceOffers and static routes → verifier routes and guards (SPEC 7.4). Pure.

An offer is *published* iff it is not paused, not deleting and its RoutePublished condition is True. A
published offer becomes a priced route ``<effective path>/*``; its price and network are re-validated here,
and an invalid one is skipped (reported) and its path guarded. Every cached offer that is not published —
paused, withdrawn, invalid, deleting — guards its path: requests get 503, never a free 200.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from kube402.api import chains, money, v1alpha1
from kube402.api import conditions as c
from kube402.verifier import config as config_mod
from kube402.verifier.routes import Guard, Route
from kube402.x402 import requirements

__all__ = ["SETTLE_ANNOTATION", "OfferView", "route_for_offer", "static_route", "upstream_auth_for"]

SETTLE_ANNOTATION = "obol.org/settle"
"""``beforeUpstream`` on an offer: proxy mode settles before the upstream runs (side-effecting services)."""


@dataclasses.dataclass(frozen=True, slots=True)
class OfferView:
    """What one cached offer contributes: a route, or a guard (with the reason), never both."""

    route: Route | None
    guard: Guard | None
    skipped: str = ""
    """Why a published-looking offer was not priced (invalid price/network), for logs and gauges."""
    published_guard: Guard | None = None
    """The path the controller last published (``status.endpoint``) when it differs from the current one:
    its HTTPRoute (with the x402 Middleware) may still route there, so it stays guarded until the status
    moves on — across verifier restarts too, unlike a grace period."""


def published(offer: v1alpha1.ServiceOffer) -> bool:
    if offer.paused or offer.deleting:
        return False
    cond = c.find(c.from_raw(offer.conditions_raw), c.ConditionType.ROUTE_PUBLISHED.value)
    return cond is not None and cond.is_true


def upstream_auth_for(
    offer: v1alpha1.ServiceOffer, secrets: Callable[[str], Mapping[str, Any] | None]
) -> str:
    """``Bearer <LITELLM_MASTER_KEY>`` for a ``litellm`` upstream, from Secret litellm-secrets in its namespace."""
    if offer.upstream.service.lower() != "litellm":
        return ""
    secret = secrets(offer.upstream_namespace)
    data = ((secret or {}).get("data") or {}).get("LITELLM_MASTER_KEY")
    if not isinstance(data, str):
        return ""
    try:
        key = base64.b64decode(data).decode().strip()
    except (ValueError, UnicodeDecodeError):
        return ""
    return f"Bearer {key}" if key else ""


def route_for_offer(
    raw: Mapping[str, Any],
    *,
    default_gate_mode: str = "forwardAuth",
    secrets: Callable[[str], Mapping[str, Any] | None] = lambda _ns: None,
) -> OfferView:
    offer = v1alpha1.ServiceOffer.from_dict(raw)
    pattern = offer.effective_path.rstrip("/") + "/*"
    endpoint = offer.status.get("endpoint")
    published_guard = None
    if isinstance(endpoint, str) and endpoint.startswith("/"):
        old = endpoint.rstrip("/") + "/*"
        if old != pattern:
            published_guard = Guard(old, "moved")
    if not published(offer):
        reason = "paused" if offer.paused else "deleting" if offer.deleting else "unpublished"
        return OfferView(None, Guard(pattern, reason), published_guard=published_guard)
    try:
        chain = chains.lookup(offer.payment.network)
        charge = money.per_request_charge(offer.payment.price, decimals=chain.decimals)
        priced = requirements.priced_route(
            chain,
            amount=charge.amount,
            pay_to=offer.payment.pay_to,
            description=offer.description,
            max_timeout_seconds=offer.payment.max_timeout_seconds,
        )
    except (chains.UnknownNetworkError, money.InvalidPriceError, ValueError) as err:
        return OfferView(None, Guard(pattern, "invalid"), skipped=str(err), published_guard=published_guard)
    return OfferView(
        Route(
            pattern=pattern,
            priced=priced,
            offer_namespace=offer.namespace,
            offer_name=offer.name,
            source="offer",
            mode=offer.effective_gate_mode(default_gate_mode),
            upstream_auth=upstream_auth_for(offer, secrets),
            upstream={
                "namespace": offer.upstream_namespace,
                "service": offer.upstream.service,
                "port": offer.upstream_port,
            },
            max_timeout_seconds=offer.payment.max_timeout_seconds,
            settle_before_upstream=offer.metadata.annotations.get(SETTLE_ANNOTATION)
            == config_mod.SETTLE_BEFORE_UPSTREAM,
        ),
        None,
        published_guard=published_guard,
    )


def static_route(r: config_mod.StaticRoute) -> Route:
    """A static route from ``pricing.yaml``; ValueError (its path is then guarded) when it cannot be priced."""
    if r.invalid:
        raise ValueError(r.invalid)
    chain = chains.lookup(r.network)
    if r.price_model == "perMTok" and r.per_mtok:
        charge = money.per_request_charge({"perMTok": r.per_mtok}, decimals=chain.decimals)
    else:
        charge = money.per_request_charge({"perRequest": r.price}, decimals=chain.decimals)
    priced = requirements.priced_route(
        chain,
        amount=charge.amount,
        pay_to=r.pay_to,
        description=r.description or f"x402 payment-gated route {r.pattern}",
        max_timeout_seconds=r.max_timeout_seconds,
    )
    return Route(
        pattern=r.pattern,
        priced=priced,
        offer_namespace=r.offer_namespace,
        offer_name=r.offer_name,
        source="static",
        mode="proxy" if r.upstream else "forwardAuth",
        upstream_auth=r.upstream_auth,
        upstream={"url": r.upstream} if r.upstream else {},
        max_timeout_seconds=r.max_timeout_seconds,
        settle_before_upstream=r.settle == config_mod.SETTLE_BEFORE_UPSTREAM,
    )
