"""The verifier's static configuration file (``pricing.yaml``, SPEC 7.3), parsed and validated.

Global settings that break a rule (unknown chain, bad wallet, facilitator URL outside the URL rule) make the
whole file invalid — the caller keeps the previous config. A bad static *route* is skipped and reported; the
rest keep working. Unknown keys are reported as warnings. Pure: text in, Config and messages out.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any, Final

import yaml

from kube402.api import chains

__all__ = ["Config", "ConfigError", "StaticRoute", "parse", "validate_facilitator_url"]

WALLET = re.compile(r"^0x[0-9a-fA-F]{40}$")
HTTP_HOSTS = {"localhost", "127.0.0.1", "::1", "host.k3d.internal", "host.docker.internal"}
ROUTE_KEYS = {
    "pattern",
    "price",
    "description",
    "payTo",
    "network",
    "upstreamAuth",
    "priceModel",
    "perMTok",
    "approxTokensPerRequest",
    "offerNamespace",
    "offerName",
    "maxTimeoutSeconds",
    "upstream",
    "settle",
}
SETTLE_AFTER_UPSTREAM = "afterUpstream"
SETTLE_BEFORE_UPSTREAM = "beforeUpstream"
"""Proxy mode: settle before the upstream runs (side-effecting services; the buyer pays even if it fails)."""
DEFAULT_MAX_TARGET_BYTES = 16384
"""Longest request target / X-Forwarded-Uri accepted; longer → 414 before any other work."""


DEFAULT_FACILITATOR = "https://facilitator.x402.rs"


class _Loader(yaml.SafeLoader):
    """YAML floats are kept as their source text: ``price: 0.001`` must stay exactly ``0.001``."""


_Loader.add_constructor("tag:yaml.org,2002:float", lambda loader, node: str(node.value))


class ConfigError(ValueError):
    """The configuration as a whole is unusable."""


@dataclasses.dataclass(frozen=True, slots=True)
class StaticRoute:
    pattern: str
    price: str
    description: str = ""
    pay_to: str = ""
    network: str = ""
    upstream_auth: str = ""
    offer_namespace: str = ""
    offer_name: str = ""
    max_timeout_seconds: int = 300
    upstream: str = ""
    price_model: str = "perRequest"
    per_mtok: str = ""
    settle: str = SETTLE_AFTER_UPSTREAM
    invalid: str = ""
    """Why this route cannot be priced (its path is then guarded, never served free); empty when valid."""


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    wallet: str = ""
    chain: str = chains.DEFAULT_CHAIN
    facilitator_url: str = DEFAULT_FACILITATOR
    verify_only: bool = False
    routes: tuple[StaticRoute, ...] = ()
    accept_v1: bool = True
    challenge_status: int = 402
    verify_timeout: float = 5.0
    settle_timeout: float = 30.0
    supported_ttl: float = 600.0
    retry_after: int = 5
    max_validity_seconds: int = 2592000
    replay_ttl: float = 600.0
    guard_grace: float = 60.0
    max_payment_header_bytes: int = 16384
    unmatched: str = ""
    """``allow``/``deny``; empty = the route source's default (file: allow, kube: deny)."""
    max_target_bytes: int = DEFAULT_MAX_TARGET_BYTES
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    rpc_urls: Mapping[str, str] = dataclasses.field(default_factory=dict)
    facilitator_token_file: str = ""
    """File holding the bearer token for a facilitator that requires one (``kube402 facilitator
    --auth-token-file``); sent as ``Authorization: Bearer …`` to that origin only."""


def validate_facilitator_url(url: str) -> str:
    """SPEC 7.3 URL rule; returns the URL without a trailing ``/``."""
    parsed = urllib.parse.urlsplit(url)
    host = (parsed.hostname or "").lower()
    if parsed.scheme not in ("https", "http") or not host:
        raise ConfigError(f"facilitatorURL {url!r} must be an http(s) URL")
    if parsed.scheme == "http" and host not in HTTP_HOSTS:
        raise ConfigError(f"facilitatorURL {url!r}: plain http is only allowed for local hosts")
    if parsed.username or parsed.password or parsed.query or parsed.fragment or "?" in url or "#" in url:
        raise ConfigError(f"facilitatorURL {url!r} must not carry userinfo, a query or a fragment")
    return url.rstrip("/")


def _bool(raw: Mapping[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false (unquoted), got {value!r}")
    return value


def _list(raw: Mapping[str, Any], key: str) -> list[Any]:
    value = raw.get(key) or []
    if not isinstance(value, list):
        raise ConfigError(f"{key} must be a list")
    return value


def _route(r: Mapping[str, Any], *, wallet: str, chain: str) -> StaticRoute:
    """One static route; ValueError (the route is skipped) when a value is unusable."""
    timeout = r.get("maxTimeoutSeconds", 300)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 30 <= timeout <= 86400:
        raise ValueError("maxTimeoutSeconds must be an integer in 30..86400")
    price = r.get("price", "")
    texts = {
        k: r.get(k)
        for k in (
            "description",
            "payTo",
            "network",
            "upstreamAuth",
            "offerNamespace",
            "offerName",
            "upstream",
            "priceModel",
            "perMTok",
        )
    }
    for key, value in texts.items():
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{key} must be a string")
    settle = r.get("settle", SETTLE_AFTER_UPSTREAM)
    if settle not in (SETTLE_AFTER_UPSTREAM, SETTLE_BEFORE_UPSTREAM):
        raise ValueError(f"settle must be {SETTLE_AFTER_UPSTREAM} or {SETTLE_BEFORE_UPSTREAM}")
    return StaticRoute(
        pattern=r["pattern"],
        price=str(price),
        description=str(texts["description"] or ""),
        pay_to=str(texts["payTo"] or wallet),
        network=str(texts["network"] or chain),
        upstream_auth=str(texts["upstreamAuth"] or ""),
        offer_namespace=str(texts["offerNamespace"] or ""),
        offer_name=str(texts["offerName"] or ""),
        max_timeout_seconds=timeout,
        upstream=str(texts["upstream"] or ""),
        price_model=str(texts["priceModel"] or "perRequest"),
        per_mtok=str(texts["perMTok"] or ""),
        settle=settle,
    )


def _int(raw: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{key} must be an integer in {lo}..{hi}")
    return value


TOP_KEYS: Final = frozenset(
    {
        "wallet",
        "chain",
        "facilitatorURL",
        "verifyOnly",
        "routes",
        "acceptV1",
        "challengeStatus",
        "verifyTimeoutSeconds",
        "settleTimeoutSeconds",
        "supportedTTLSeconds",
        "retryAfterSeconds",
        "maxValiditySeconds",
        "replayTTLSeconds",
        "guardGraceSeconds",
        "maxPaymentHeaderBytes",
        "unmatched",
        "trustedProxies",
        "rpcURLs",
        "maxTargetBytes",
        "facilitatorTokenFile",
    }
)


def _load(text: str) -> dict[Any, Any]:
    """The top-level mapping of ``pricing.yaml`` (an empty document is an empty mapping)."""
    try:
        raw = yaml.load(text, Loader=_Loader) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"pricing.yaml is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError("pricing.yaml must be a mapping")
    return raw


def _trusted_proxies(raw: Mapping[str, Any]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    proxies = []
    for cidr in _list(raw, "trustedProxies"):
        try:
            proxies.append(ipaddress.ip_network(str(cidr), strict=False))
        except ValueError:
            raise ConfigError(f"trustedProxies entry {cidr!r} is not a CIDR") from None
    return proxies


def _routes(raw: Mapping[str, Any], *, wallet: str, chain: str, warnings: list[str]) -> list[StaticRoute]:
    """The ``routes`` list; malformed entries are skipped or kept as invalid (guarded), with a warning."""
    routes: list[StaticRoute] = []
    for i, r in enumerate(_list(raw, "routes")):
        if (
            not isinstance(r, dict)
            or not isinstance(r.get("pattern"), str)
            or not r["pattern"].startswith("/")
        ):
            warnings.append(f"routes[{i}] skipped: needs a pattern starting with /")
            continue
        warnings += [f"routes[{i}]: unknown key {k!r} ignored" for k in r if k not in ROUTE_KEYS]
        try:
            routes.append(_route(r, wallet=wallet, chain=chain))
        except ValueError as err:
            # Kept as an invalid route: its path is guarded (503), never left unmatched and served free.
            warnings.append(f"routes[{i}] ({r['pattern']}) not priced, path guarded: {err}")
            routes.append(StaticRoute(pattern=r["pattern"], price="", invalid=str(err)))
    return routes


def parse(text: str, *, env: Mapping[str, str] = os.environ) -> tuple[Config, list[str]]:
    """Parse ``pricing.yaml``; returns the config and warnings (skipped routes, unknown keys)."""
    raw = _load(text)
    warnings: list[str] = []
    wallet = str(raw.get("wallet") or env.get("WALLET_ADDRESS") or "")
    if wallet and not WALLET.fullmatch(wallet):
        raise ConfigError(f"wallet {wallet!r} is not an address")
    chain = str(raw.get("chain") or chains.DEFAULT_CHAIN)
    try:
        chains.lookup(chain)
    except chains.UnknownNetworkError as err:
        raise ConfigError(str(err)) from None
    facilitator = validate_facilitator_url(str(raw.get("facilitatorURL") or DEFAULT_FACILITATOR))
    unmatched = str(raw.get("unmatched") or "")
    if unmatched not in ("", "allow", "deny"):
        raise ConfigError("unmatched must be allow or deny")
    status = _int(raw, "challengeStatus", 402, 401, 402)
    proxies = _trusted_proxies(raw)
    rpc_urls = raw.get("rpcURLs") or {}
    if not isinstance(rpc_urls, dict):
        raise ConfigError("rpcURLs must map network to URL")
    warnings += [f"unknown key {k!r} ignored" for k in raw if k not in TOP_KEYS]
    routes = _routes(raw, wallet=wallet, chain=chain, warnings=warnings)
    return Config(
        wallet=wallet,
        chain=chain,
        facilitator_url=facilitator,
        verify_only=_bool(raw, "verifyOnly", False),
        routes=tuple(routes),
        accept_v1=_bool(raw, "acceptV1", True),
        challenge_status=status,
        verify_timeout=float(_int(raw, "verifyTimeoutSeconds", 5, 1, 120)),
        settle_timeout=float(_int(raw, "settleTimeoutSeconds", 30, 1, 300)),
        supported_ttl=float(_int(raw, "supportedTTLSeconds", 600, 1, 86400)),
        retry_after=_int(raw, "retryAfterSeconds", 5, 1, 3600),
        max_validity_seconds=_int(raw, "maxValiditySeconds", 2592000, 60, 10 * 365 * 86400),
        replay_ttl=float(_int(raw, "replayTTLSeconds", 600, 1, 86400)),
        guard_grace=float(_int(raw, "guardGraceSeconds", 60, 0, 3600)),
        max_payment_header_bytes=_int(raw, "maxPaymentHeaderBytes", 16384, 1024, 1 << 20),
        unmatched=unmatched,
        max_target_bytes=_int(raw, "maxTargetBytes", DEFAULT_MAX_TARGET_BYTES, 1024, 1 << 20),
        trusted_proxies=tuple(proxies),
        rpc_urls={str(k): str(v) for k, v in rpc_urls.items()},
        facilitator_token_file=str(raw.get("facilitatorTokenFile") or ""),
    ), warnings
