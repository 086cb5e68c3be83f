"""The buyer's configuration: ConfigMaps ``x402-buyer-config`` (upstreams), ``x402-buyer-auths`` (vouchers).

Pure. Both are JSON (YAML accepted, a superset): ``config.json`` = ``{"upstreams": {<name>: {url,
remoteModel, network, payTo, asset, price}}}`` with ``price`` in atomic units as a string; ``auths.json`` =
``{<name>: [voucher, …]}``. A malformed upstream is skipped with a warning (the others keep working); vouchers
that do not pay their upstream's terms (other recipient or value) are dropped with a warning, so they can
never be sent.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, Final

import yaml

from kube402.buyer.terms import normalize_network
from kube402.buyer.vouchers import Terms, Voucher, parse_pool

__all__ = [
    "AUTHS_CONFIGMAP",
    "AUTHS_KEY",
    "CONFIG_CONFIGMAP",
    "CONFIG_KEY",
    "BuyerConfig",
    "ConfigError",
    "Upstream",
    "parse",
    "public_model",
    "strip_model",
]

CONFIG_CONFIGMAP: Final = "x402-buyer-config"
AUTHS_CONFIGMAP: Final = "x402-buyer-auths"
CONFIG_KEY: Final = "config.json"
AUTHS_KEY: Final = "auths.json"
_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?")
_ADDRESS: Final = re.compile(r"0x[0-9a-fA-F]{40}")
_PRICE: Final = re.compile(r"[1-9][0-9]{0,77}")
_PREFIXES: Final = ("paid/", "openai/")


class ConfigError(ValueError):
    """The configuration as a whole cannot be used (the previous one stays in force)."""


def strip_model(model: str) -> str:
    """Strip leading ``paid/`` and ``openai/`` prefixes, repeatedly (``paid/openai/paid/x`` → ``x``)."""
    while True:
        for p in _PREFIXES:
            if model.startswith(p):
                model = model[len(p) :]
                break
        else:
            return model


def public_model(remote_model: str) -> str:
    return f"paid/{remote_model}"


@dataclasses.dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    url: str
    remote_model: str
    terms: Terms

    @property
    def network(self) -> str:
        return self.terms.network


@dataclasses.dataclass(frozen=True, slots=True)
class BuyerConfig:
    upstreams: Mapping[str, Upstream] = dataclasses.field(default_factory=dict)
    vouchers: Mapping[str, tuple[Voucher, ...]] = dataclasses.field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def by_model(self, model: str) -> Upstream | None:
        want = strip_model(model)
        for up in self.upstreams.values():
            if up.remote_model == want:
                return up
        return None


def _load(text: str, what: str) -> Any:
    if not text.strip():
        return {}
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} is not JSON/YAML: {str(err).splitlines()[0]}") from None


def _upstream(name: str, raw: object) -> Upstream:
    if not isinstance(raw, Mapping):
        raise ConfigError("is not an object")
    url = raw.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError("url must be an http(s) URL")
    model = raw.get("remoteModel")
    if not isinstance(model, str) or not model or strip_model(model) != model:
        raise ConfigError("remoteModel must be a model name without paid/ or openai/ prefix")
    network = raw.get("network")
    if not isinstance(network, str) or not network:
        raise ConfigError("network is required")
    for key in ("payTo", "asset"):
        value = raw.get(key)
        if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
            raise ConfigError(f"{key} must be a 0x address")
    price = raw.get("price")
    if isinstance(price, int) and not isinstance(price, bool):
        price = str(price)
    if not isinstance(price, str) or not _PRICE.fullmatch(price):
        raise ConfigError('price must be a positive integer of atomic units (a string, e.g. "1000")')
    return Upstream(
        name=name,
        url=url.rstrip("/"),
        remote_model=model,
        terms=Terms(
            network=normalize_network(network), pay_to=raw["payTo"], asset=raw["asset"], price=int(price)
        ),
    )


def parse(config_text: str, auths_text: str) -> BuyerConfig:
    """Both files' text → config; ConfigError only when a file as a whole is unusable."""
    raw_cfg = _load(config_text, CONFIG_KEY)
    raw_auths = _load(auths_text, AUTHS_KEY)
    if not isinstance(raw_cfg, Mapping):
        raise ConfigError(f"{CONFIG_KEY} must be an object with 'upstreams'")
    if not isinstance(raw_auths, Mapping):
        raise ConfigError(f"{AUTHS_KEY} must be an object of voucher lists")
    ups = raw_cfg.get("upstreams") or {}
    if not isinstance(ups, Mapping):
        raise ConfigError("upstreams must be an object")
    warnings: list[str] = []
    upstreams: dict[str, Upstream] = {}
    models: dict[str, str] = {}
    for name, raw in ups.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            warnings.append(f"upstream {name!r} skipped: name must be a lower-case DNS-style name")
            continue
        try:
            up = _upstream(name, raw)
        except ConfigError as err:
            warnings.append(f"upstream {name} skipped: {err}")
            continue
        if up.remote_model in models:
            warnings.append(
                f"upstream {name} skipped: remoteModel {up.remote_model} already served by "
                f"{models[up.remote_model]}"
            )
            continue
        models[up.remote_model] = name
        upstreams[name] = up
    vouchers: dict[str, tuple[Voucher, ...]] = {}
    for name, entries in raw_auths.items():
        target = upstreams.get(str(name))
        if target is None:
            warnings.append(f"vouchers for {name} ignored: no such upstream")
            continue
        pool, problems = parse_pool(entries)
        warnings += [f"{name}: {p}" for p in problems]
        good = [v for v in pool if target.terms.fits(v)]
        if len(good) != len(pool):
            warnings.append(
                f"{name}: {len(pool) - len(good)} voucher(s) dropped: recipient or value differs from the "
                f"upstream's payTo/price"
            )
        vouchers[target.name] = tuple(good)
    return BuyerConfig(upstreams=upstreams, vouchers=vouchers, warnings=tuple(warnings))


def render(
    upstreams: Mapping[str, Mapping[str, str]], auths: Mapping[str, list[dict[str, str]]]
) -> tuple[str, str]:
    """The two files' text (stable, indented JSON) — what ``kube402 buy vouchers`` writes."""
    import json

    return (
        json.dumps({"upstreams": upstreams}, indent=2, sort_keys=True) + "\n",
        json.dumps(auths, indent=2, sort_keys=True) + "\n",
    )
