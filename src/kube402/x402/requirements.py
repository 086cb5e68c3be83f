"""What a priced route asks for: payment requirements, the ready-made 402 challenge, and route binding.

Why this module exists: the verifier must answer the unpaid path at tens of thousands of requests per
second, so everything a 402 carries is computed once per (route, resource URL) and kept in a small LRU
on the route; a refusal with a different ``error`` reuses precomputed JSON fragments. It also owns route
binding (SPEC 7.7 step 8): the signature binds no URL, so the client's echo is compared with the server's
own requirements field by field and is never trusted as the server's copy.

Boundary: PURE. No HTTP framework, no clock, no facilitator, no chain. The caller passes the resource
URL (``<proto>://<host><path>``); it decides status codes and content types. Shapes follow SPEC 7.6:
the v2 object goes in ``PAYMENT-REQUIRED``, the v1 object is the JSON body (v2 if no option has a v1
network name), and an HTML paywall variant (``paywall``) is available for browsers.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from kube402.api import chains
from kube402.x402 import codes, headers, paywall

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "DEFAULT_MAX_TIMEOUT_SECONDS",
    "MIME_JSON",
    "Challenge",
    "ChallengeCache",
    "PricedRoute",
    "Requirement",
    "build_requirement",
    "match_requirement",
    "priced_route",
]

MIME_JSON: Final = "application/json"
DEFAULT_MAX_TIMEOUT_SECONDS: Final = 300
DEFAULT_CACHE_SIZE: Final = 1024
"""Distinct resource URLs remembered per route (a prefix route can see many paths)."""
DEFAULT_CACHE_BYTES: Final = 1 << 20
"""Bytes of challenges remembered per route. The resource URL is attacker-chosen, so the cache is bounded by
size, not only by count: 100 requests with 300 KB URIs must not cost 100 large challenges."""
SHARED_CACHE_BYTES: Final = 16 << 20
"""Bytes of challenges remembered across all routes of the process."""
_MAX_CACHED_CHALLENGE_BYTES: Final = DEFAULT_CACHE_BYTES // 64
"""A larger challenge (a long URL) is built per request and never cached."""
_MAX_VARIANT_BYTES: Final = 4096
"""Refusal variants are memoized only for challenges up to this size."""
MAX_ERROR_CHARS: Final = 256
"""Longer refusal texts (e.g. a pathological facilitator reason) are truncated."""
MAX_ERROR_VARIANTS: Final = 64
"""Distinct ``error`` variants memoized per challenge; others are built on demand (about a microsecond)."""

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


@dataclasses.dataclass(frozen=True, slots=True)
class Requirement:
    """One payment option (scheme ``exact``, EIP-3009) with the v2 wire dict precomputed."""

    chain: chains.Chain
    amount: int
    """Atomic units, > 0."""
    pay_to: str
    asset: str
    max_timeout_seconds: int
    eip712_name: str
    eip712_version: str
    decimals: int
    v2: Mapping[str, Any] = dataclasses.field(compare=False, hash=False)
    """The v2 ``PaymentRequirements`` object (derived from the fields above): the server's own copy sent to
    the facilitator."""

    @property
    def scheme(self) -> str:
        return headers.SCHEME_EXACT

    @property
    def extra(self) -> dict[str, str]:
        return {"name": self.eip712_name, "version": self.eip712_version}

    def v1(self, *, resource: str, description: str, mime_type: str = MIME_JSON) -> dict[str, Any] | None:
        """The v1 ``PaymentRequirements`` for one resource URL, or None if the chain has no v1 name."""
        if self.chain.v1_name is None:
            return None
        return {
            "scheme": headers.SCHEME_EXACT,
            "network": self.chain.v1_name,
            "maxAmountRequired": str(self.amount),
            "asset": self.asset,
            "payTo": self.pay_to,
            "resource": resource,
            "description": description,
            "mimeType": mime_type,
            "maxTimeoutSeconds": self.max_timeout_seconds,
            "extra": self.extra,
        }


def build_requirement(
    chain: chains.Chain,
    *,
    amount: int,
    pay_to: str,
    asset: str | None = None,
    max_timeout_seconds: int = DEFAULT_MAX_TIMEOUT_SECONDS,
    eip712_name: str | None = None,
    eip712_version: str | None = None,
    decimals: int | None = None,
) -> Requirement:
    """A requirement on ``chain``; the asset defaults to the chain's USDC with its pinned EIP-712 domain.

    Raises ValueError for a configuration that could never be paid (checked at route build time, not per
    request).
    """
    if type(amount) is not int or amount <= 0 or amount >= 1 << 256:
        raise ValueError("amount must be a positive integer of atomic units")
    if not _ADDRESS.fullmatch(pay_to):
        raise ValueError("payTo must be 0x followed by 40 hex digits")
    token = chain.usdc if asset is None else asset
    if not _ADDRESS.fullmatch(token):
        raise ValueError("asset must be 0x followed by 40 hex digits")
    if type(max_timeout_seconds) is not int or max_timeout_seconds <= 0:
        raise ValueError("maxTimeoutSeconds must be a positive integer")
    is_usdc = token.lower() == chain.usdc.lower()
    if not is_usdc and (eip712_name is None or eip712_version is None or decimals is None):
        raise ValueError("a non-USDC asset needs its EIP-712 name, version and decimals")
    name = chain.eip712_name if eip712_name is None else eip712_name
    version = chain.eip712_version if eip712_version is None else eip712_version
    v2 = {
        "scheme": headers.SCHEME_EXACT,
        "network": chain.caip2,
        "amount": str(amount),
        "asset": token,
        "payTo": pay_to,
        "maxTimeoutSeconds": max_timeout_seconds,
        "extra": {"name": name, "version": version},
    }
    return Requirement(
        chain=chain,
        amount=amount,
        pay_to=pay_to,
        asset=token,
        max_timeout_seconds=max_timeout_seconds,
        eip712_name=name,
        eip712_version=version,
        decimals=chain.decimals if decimals is None else decimals,
        v2=v2,
    )


def match_requirement(
    decoded: headers.DecodedPayment, requirements: Sequence[Requirement]
) -> Requirement | None:
    """The advertised requirement this payment binds to (SPEC 7.7 step 8), or None → ``requirements_mismatch``.

    v2: ``accepted`` equals a requirement (scheme, network, amount, asset and payTo case-insensitively,
    maxTimeoutSeconds; every server ``extra`` key present and equal, client-only keys allowed). v1: scheme and
    v1 network name equal. Both: ``authorization.to`` is payTo and ``authorization.value`` is the amount.
    """
    auth = decoded.authorization
    to = auth.to.lower()
    for req in requirements:
        if auth.value != req.amount or to != req.pay_to.lower():
            continue
        if decoded.version == headers.V2:
            if decoded.accepted is not None and _accepted_equals(decoded.accepted, req):
                return req
        elif decoded.scheme == headers.SCHEME_EXACT and decoded.network == req.chain.v1_name:
            return req
    return None


def _accepted_equals(accepted: Mapping[str, Any], req: Requirement) -> bool:
    # Types were checked by the decoder; values are compared here.
    if (
        accepted.get("scheme") != headers.SCHEME_EXACT
        or accepted.get("network") != req.chain.caip2
        or accepted.get("maxTimeoutSeconds") != req.max_timeout_seconds
        or str(accepted.get("asset", "")).lower() != req.asset.lower()
        or str(accepted.get("payTo", "")).lower() != req.pay_to.lower()
    ):
        return False
    amount = accepted.get("amount")
    if type(amount) is not str or not (amount.isascii() and amount.isdigit()) or int(amount) != req.amount:
        return False
    extra = accepted.get("extra")
    if type(extra) is not dict:
        return False
    return all(key in extra and extra[key] == value for key, value in req.v2["extra"].items())


@dataclasses.dataclass(frozen=True, slots=True)
class _Parts:
    """The JSON around the ``error`` value, shared by every variant of one (route, URL) challenge."""

    v2_prefix: bytes
    v2_suffix: bytes
    v1_prefix: bytes | None
    v1_suffix: bytes | None
    v1_requirements: tuple[dict[str, Any] | None, ...]
    variants: dict[str, Challenge]


class Challenge:
    """A ready-to-send 402 for one (route, resource URL) and one ``error`` text.

    ``header`` is the ``PAYMENT-REQUIRED`` value (standard base64 of the v2 object), ``body`` the JSON body
    (v1 object, or v2 if no option has a v1 name); :meth:`with_error` gives the same challenge with another
    refusal reason, :attr:`html` the paywall page.
    """

    __slots__ = ("_html", "_parts", "body", "error", "header", "resource_url", "route")

    route: PricedRoute
    resource_url: str
    error: str
    header: str
    body: bytes
    _parts: _Parts
    _html: bytes | None

    def __init__(self, route: PricedRoute, *, resource_url: str, error: str, parts: _Parts) -> None:
        self.route = route
        self.resource_url = resource_url
        self.error = error
        self._parts = parts
        self._html = None
        error_json = orjson.dumps(error)
        v2 = parts.v2_prefix + error_json + parts.v2_suffix
        self.header = base64.b64encode(v2).decode("ascii")
        if parts.v1_prefix is None or parts.v1_suffix is None:
            self.body = v2
        else:
            self.body = parts.v1_prefix + error_json + parts.v1_suffix

    @property
    def nbytes(self) -> int:
        """Approximate memory held by this challenge (its texts and the shared JSON fragments)."""
        p = self._parts
        return (
            len(self.header)
            + len(self.body)
            + len(self.resource_url)
            + len(p.v2_suffix)
            + len(p.v1_suffix or b"")
        )

    def with_error(self, error: str) -> Challenge:
        """The same challenge with ``error`` set to a refusal reason (a kube402 code or a facilitator reason)."""
        error = error[:MAX_ERROR_CHARS]
        if error == self.error:
            return self
        variants = self._parts.variants
        found = variants.get(error)
        if found is not None:
            return found
        made = Challenge(self.route, resource_url=self.resource_url, error=error, parts=self._parts)
        if len(variants) < MAX_ERROR_VARIANTS and made.nbytes <= _MAX_VARIANT_BYTES:
            variants[error] = made
        return made

    def server_requirements(self, requirement: Requirement, *, version: int) -> Mapping[str, Any]:
        """The server's own copy of ``requirement`` in the payload's version, for the facilitator body."""
        if version == headers.V1:
            for req, v1 in zip(self.route.requirements, self._parts.v1_requirements, strict=True):
                if (req is requirement or req == requirement) and v1 is not None:
                    return v1
            raise ValueError("requirement has no v1 form on this route")
        return requirement.v2

    @property
    def html(self) -> bytes:
        """A small, escaped HTML paywall page (UTF-8) for clients that prefer ``text/html``."""
        if self._html is None:
            self._html = paywall.render_html(
                error=self.error,
                resource_url=self.resource_url,
                description=self.route.description,
                requirements=self.route.requirements,
            )
        return self._html


class _Budget:
    """Bytes held by every ChallengeCache of the process (event-loop confined)."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0


_SHARED_BUDGET: Final = _Budget(SHARED_CACHE_BYTES)


class ChallengeCache:
    """A bounded LRU of default challenges keyed by resource URL; a hit is one dict lookup.

    Bounded three ways: entries (``size``), bytes per route (``max_bytes``) and bytes per process (a shared
    budget). A challenge too large to be worth keeping is built on demand and not remembered.
    """

    __slots__ = ("_budget", "_bytes", "_entries", "_max_bytes", "_route", "_size")

    def __init__(
        self,
        route: PricedRoute,
        *,
        size: int,
        max_bytes: int = DEFAULT_CACHE_BYTES,
        budget: _Budget = _SHARED_BUDGET,
    ) -> None:
        self._route = route
        self._size = max(1, size)
        self._max_bytes = max_bytes
        self._budget = budget
        self._bytes = 0
        self._entries: collections.OrderedDict[str, Challenge] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __del__(self) -> None:
        self._budget.used -= self._bytes

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, resource_url: str) -> Challenge:
        entries = self._entries
        found = entries.get(resource_url)
        if found is not None:
            with contextlib.suppress(KeyError):  # evicted concurrently; the value is still good
                entries.move_to_end(resource_url)
            return found
        made = _build_challenge(self._route, resource_url)
        cost = made.nbytes
        if cost > min(_MAX_CACHED_CHALLENGE_BYTES, self._max_bytes):
            return made
        entries[resource_url] = made
        self._bytes += cost
        self._budget.used += cost
        while entries and (
            len(entries) > self._size
            or self._bytes > self._max_bytes
            or self._budget.used > self._budget.limit
        ):
            try:
                _, old = entries.popitem(last=False)
            except KeyError:
                break
            self._bytes -= old.nbytes
            self._budget.used -= old.nbytes
        return made


def _build_challenge(route: PricedRoute, resource_url: str) -> Challenge:
    resource = {"url": resource_url, "description": route.description, "mimeType": route.mime_type}
    accepts = [req.v2 for req in route.requirements]
    v2_suffix = b"," + orjson.dumps({"resource": resource, "accepts": accepts})[1:]
    v1_requirements = tuple(
        req.v1(resource=resource_url, description=route.description, mime_type=route.mime_type)
        for req in route.requirements
    )
    v1_accepts = [v1 for v1 in v1_requirements if v1 is not None]
    v1_prefix = v1_suffix = None
    if v1_accepts:
        v1_prefix = b'{"x402Version":1,"error":'
        v1_suffix = b"," + orjson.dumps({"accepts": v1_accepts})[1:]
    parts = _Parts(
        v2_prefix=b'{"x402Version":2,"error":',
        v2_suffix=v2_suffix,
        v1_prefix=v1_prefix,
        v1_suffix=v1_suffix,
        v1_requirements=v1_requirements,
        variants={},
    )
    challenge = Challenge(route, resource_url=resource_url, error=codes.DEFAULT_CHALLENGE_ERROR, parts=parts)
    parts.variants[challenge.error] = challenge
    return challenge


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class PricedRoute:
    """What one route charges: its payment options and resource metadata, with a per-route challenge cache."""

    requirements: tuple[Requirement, ...]
    description: str
    mime_type: str = MIME_JSON
    cache_size: int = DEFAULT_CACHE_SIZE
    _cache: ChallengeCache = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.requirements:
            raise ValueError("a priced route needs at least one requirement")
        object.__setattr__(self, "_cache", ChallengeCache(self, size=self.cache_size))

    def challenge(self, resource_url: str) -> Challenge:
        """The default challenge for ``resource_url`` (cached; use ``.with_error`` for refusals)."""
        return self._cache.get(resource_url)


def priced_route(
    chain: chains.Chain,
    *,
    amount: int,
    pay_to: str,
    description: str,
    asset: str | None = None,
    max_timeout_seconds: int = DEFAULT_MAX_TIMEOUT_SECONDS,
    mime_type: str = MIME_JSON,
    eip712_name: str | None = None,
    eip712_version: str | None = None,
    decimals: int | None = None,
    cache_size: int = DEFAULT_CACHE_SIZE,
) -> PricedRoute:
    """A one-option route (the usual case: one network per offer); see :func:`build_requirement`."""
    req = build_requirement(
        chain,
        amount=amount,
        pay_to=pay_to,
        asset=asset,
        max_timeout_seconds=max_timeout_seconds,
        eip712_name=eip712_name,
        eip712_version=eip712_version,
        decimals=decimals,
    )
    return PricedRoute(
        requirements=(req,), description=description, mime_type=mime_type, cache_size=cache_size
    )
