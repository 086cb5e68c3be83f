"""Checks of the seller's flags before anything is sent, each naming the flag and the rule.

The rules themselves live in :mod:`kube402.api` (names, validation, money, chains) and in the verifier's
config rules (facilitator URL); this module only maps a rule's complaint to the flag that carries the value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kube402.api import chains, money, v1alpha1, validation
from kube402.cli.errors import UsageError
from kube402.verifier import config as verifier_config

__all__ = [
    "check_chain",
    "check_facilitator_url",
    "check_name",
    "check_offer",
    "check_price",
    "check_wallet",
]

PRICE_FLAGS = {
    "perRequest": "--price",
    "perMTok": "--per-mtok",
    "perHour": "--per-hour",
    "perEpoch": "--from-json",
}
FIELD_FLAGS = (
    ("type ", "--type"),
    ("upstream.service", "--upstream"),
    ("upstream.namespace", "--upstream (namespace)"),
    ("upstream.port", "--port"),
    ("upstream.healthPath", "--health-path"),
    ("payment.scheme", "--from-json (payment.scheme)"),
    ("payment.payTo", "--wallet"),
    ("payment.maxTimeoutSeconds", "--max-timeout"),
    ("gateMode", "--gate-mode"),
)


def check_name(value: str, *, flag: str = "NAME", what: str = "name") -> str:
    """A DNS-1123 label: lower-case letters, digits and '-', starting and ending alphanumeric, ≤ 63."""
    if not value or len(value) > 63 or not validation.DNS1123.fullmatch(value):
        raise UsageError(
            f"{flag} {value!r}: a {what} must be a DNS-1123 label (lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters)"
        )
    return value


def check_wallet(value: str, *, flag: str = "--wallet") -> str:
    if not validation.PAY_TO.fullmatch(value):
        raise UsageError(f"{flag} {value!r}: a wallet must be 0x followed by 40 hexadecimal digits")
    return value


def check_chain(value: str, *, flag: str = "--chain") -> chains.Chain:
    try:
        return chains.lookup(value)
    except chains.UnknownNetworkError:
        known = ", ".join(c.name for c in chains.CHAINS)
        raise UsageError(
            f"{flag} {value!r}: unknown chain (one of {known}, or eip155:<id> of those)"
        ) from None


def check_price(value: str, *, flag: str = "--price", model: str = "perRequest", chain: chains.Chain) -> str:
    """A decimal price, at most the asset's decimals (perRequest), that charges at least one atomic unit."""
    try:
        money.per_request_charge({model: value}, decimals=chain.decimals)
    except money.InvalidPriceError as err:
        raise UsageError(
            f"{flag} {value!r}: {err} (a price is a plain decimal like 0.001: no sign, no exponent, at most "
            f"{chain.decimals} decimal places per request for USDC on {chain.name})"
        ) from None
    return value


def check_facilitator_url(value: str, *, flag: str = "--facilitator-url") -> str:
    try:
        return verifier_config.validate_facilitator_url(value)
    except verifier_config.ConfigError as err:
        raise UsageError(f"{flag}: {err} (https, or http for localhost/127.0.0.1/::1)") from None


def _flag_for(problem: str) -> str:
    for prefix, flag in FIELD_FLAGS:
        if problem.startswith(prefix):
            return flag
    return "--from-json"


def check_offer(manifest: Mapping[str, Any]) -> None:
    """Every rule of SPEC 2.2 that kube402 checks, on the manifest ``sell http`` is about to apply."""
    meta = manifest.get("metadata") or {}
    check_name(str(meta.get("name", "")), flag="NAME", what="ServiceOffer name")
    check_name(str(meta.get("namespace", "")), flag="--namespace", what="namespace")
    offer = v1alpha1.ServiceOffer.from_dict(manifest)
    port = ((manifest.get("spec") or {}).get("upstream") or {}).get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
        # the effective value (0 → the default) would hide it; the CRD's minimum is 1
        raise UsageError(f"--port: upstream.port {port!r} is outside 1..65535")
    problems = [f"{_flag_for(p)}: {p}" for p in validation.spec_problems(offer)]
    if problems:
        raise UsageError("; ".join(problems))
    chain = check_chain(offer.payment.network)
    price = offer.payment.price
    present = [k for k in ("perRequest", "perMTok", "perHour", "perEpoch") if price.get(k) not in (None, "")]
    if not present:
        raise UsageError("a price is required: pass --price (per request), --per-mtok or --per-hour")
    for key in present[:1]:
        value = price[key]
        if not isinstance(value, str):
            raise UsageError(f"{PRICE_FLAGS[key]}: price.{key} must be a decimal string, got {value!r}")
        check_price(value, flag=PRICE_FLAGS[key], model=key, chain=chain)
    path_problem = validation.path_problem(offer.path)
    if path_problem:
        raise UsageError(
            f"--path: {path_problem} (a path starts with /, has no //, no . or .. segment, "
            "and is not /, /.well-known/…, /skill.md or /api/services.json)"
        )
