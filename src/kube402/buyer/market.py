"""The buyer's view of the market: probe a seller's terms, discover registered sellers, sign voucher pools.

Used by ``kube402 buy``; not by the running sidecar (this module talks to chains, the sidecar never does).
Signing happens here, in the CLI process, with a key read from a file or the environment; the key object is
never printed or logged and is dropped after signing.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import secrets
import time
import urllib.parse
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Final

import httpx

from kube402.api import chains, money
from kube402.buyer import terms as terms_mod
from kube402.buyer.vouchers import Voucher

__all__ = [
    "KEY_ENV",
    "KEY_FILE_ENV",
    "Discovered",
    "MarketError",
    "Probe",
    "discover",
    "load_key",
    "parse_validity",
    "probe",
    "sign_vouchers",
]

KEY_ENV: Final = "KUBE402_BUYER_KEY"
KEY_FILE_ENV: Final = "KUBE402_BUYER_KEY_FILE"
MAX_VALIDITY_SECONDS: Final = 30 * 86400
"""kube402 sellers' default ``maxValiditySeconds``: a longer window is refused by the seller."""
_VALIDITY: Final = re.compile(r"([1-9][0-9]{0,8})([smhd]?)")
_UNIT: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PROBE_BODY: Final = {"model": "probe", "messages": [{"role": "user", "content": "terms?"}]}


class MarketError(Exception):
    """A one-sentence, user-facing failure."""


def parse_validity(text: str) -> int:
    m = _VALIDITY.fullmatch(text.strip())
    if not m:
        raise MarketError(f"--validity {text!r} is not a duration like 3600, 90m, 12h or 7d")
    seconds = int(m.group(1)) * _UNIT[m.group(2)]
    if seconds < 60:
        raise MarketError("--validity must be at least 60 seconds")
    if seconds > MAX_VALIDITY_SECONDS:
        raise MarketError("--validity must be at most 30d (sellers refuse longer windows by default)")
    return seconds


def load_key(key_file: str | None) -> Any:
    """The buyer's LocalAccount from ``--key-file``, ``$KUBE402_BUYER_KEY_FILE`` or ``$KUBE402_BUYER_KEY``."""
    from eth_account import Account

    path = key_file or os.environ.get(KEY_FILE_ENV)
    if path and re.fullmatch(r"(0x)?[0-9a-fA-F]{64}", path.strip()):
        raise MarketError("--key-file takes the path of a file holding the key, never the key itself")
    if path:
        try:
            text = open(path).read().strip()  # noqa: SIM115 - tiny file, read once
        except OSError as err:
            raise MarketError(f"--key-file {path}: cannot read it ({err.strerror})") from None
        where = f"--key-file {path}"
    elif os.environ.get(KEY_ENV):
        text, where = os.environ[KEY_ENV].strip(), f"${KEY_ENV}"
    else:
        raise MarketError(f"--key-file is required (or set ${KEY_FILE_ENV} / ${KEY_ENV})")
    try:
        return Account.from_key(text)
    except Exception:  # noqa: BLE001 - any parse failure; the message must not echo the key
        raise MarketError(f"{where} does not hold a hex private key") from None


@dataclasses.dataclass(frozen=True, slots=True)
class Probe:
    url: str
    status: int
    required: terms_mod.PaymentRequired | None
    problem: str
    skill_row: str | None

    @property
    def valid(self) -> bool:
        return (
            self.status == 402
            and self.required is not None
            and any(r.scheme == "exact" for r in self.required.accepts)
        )


def _origin(url: str) -> str:
    p = urllib.parse.urlsplit(url)
    return f"{p.scheme}://{p.netloc}"


async def _skill_row(http: httpx.AsyncClient, url: str) -> str | None:
    try:
        resp = await http.get(_origin(url) + "/skill.md")
    except httpx.HTTPError:
        return None
    if resp.status_code != 200 or len(resp.content) > 1 << 20:
        return None
    path = urllib.parse.urlsplit(url).path.rstrip("/")
    name = path.rsplit("/", 1)[-1] if path else ""
    for line in resp.text.splitlines():
        if line.lstrip().startswith("|") and ((path and path in line) or (name and f" {name} " in line)):
            return line.strip()
    return None


async def probe(url: str, *, http: httpx.AsyncClient | None = None, skill: bool = True) -> Probe:
    """The seller's terms from an unpaid request: GET ``url``, else POST a tiny chat body to it."""
    own = http is None
    http = http or httpx.AsyncClient(timeout=10.0, trust_env=False)
    try:
        resp: httpx.Response | None = None
        problem = ""
        for method in ("GET", "POST"):
            try:
                resp = await http.request(method, url, json=_PROBE_BODY if method == "POST" else None)
            except httpx.HTTPError as err:
                return Probe(url, 0, None, f"unreachable ({type(err).__name__})", None)
            if resp.status_code == 402:
                break
        assert resp is not None
        required = None
        if resp.status_code == 402:
            try:
                required = terms_mod.parse_402(resp.headers.get, resp.content)
            except terms_mod.TermsError as err:
                problem = f"402 without usable terms: {err}"
        else:
            problem = f"answered {resp.status_code}, not 402: not payment-gated"
        row = await _skill_row(http, url) if skill else None
        return Probe(url, resp.status_code, required, problem, row)
    finally:
        if own:
            await http.aclose()


def describe(req: terms_mod.Requirement) -> dict[str, str]:
    """One requirement in words: price in USDC and atomic units, network, asset, payTo, timeout, resource."""
    try:
        chain = chains.lookup(req.network)
        decimals, net = chain.decimals, f"{chain.name} ({chain.caip2})"
    except chains.UnknownNetworkError:
        decimals, net = 6, req.network
    return {
        "price": f"{money.format_atomic(req.amount, decimals=decimals)} USDC ({req.amount} atomic units)",
        "network": net,
        "asset": req.asset,
        "payTo": req.pay_to,
        "maxTimeoutSeconds": str(req.max_timeout_seconds),
        "scheme": req.scheme,
        "x402Version": str(req.version),
    }


def budget_atomic(text: str, *, decimals: int) -> int:
    try:
        return money.to_atomic(money.parse_price(text, field="--budget"), decimals=decimals)
    except money.InvalidPriceError as err:
        raise MarketError(f"--budget {text!r}: {err}") from None


def sign_vouchers(
    account: Any,
    req: terms_mod.Requirement,
    *,
    count: int,
    validity_seconds: int,
    chain_id: int,
    now: int | None = None,
) -> list[Voucher]:
    """``count`` EIP-3009 TransferWithAuthorization vouchers for exactly ``req`` (validAfter 0)."""
    from kube402.chain import token

    name, version = req.extra.get("name"), req.extra.get("version")
    if not isinstance(name, str) or not isinstance(version, str):
        raise MarketError("the seller's requirement has no EIP-712 name/version in extra")
    domain = token.Domain(name=name, version=version, chain_id=chain_id, verifying_contract=req.asset)
    valid_before = (int(time.time()) if now is None else now) + validity_seconds
    out: list[Voucher] = []
    for _ in range(count):
        auth = token.Authorization(
            from_=account.address,
            to=req.pay_to,
            value=req.amount,
            valid_after=0,
            valid_before=valid_before,
            nonce=secrets.token_bytes(32),
        )
        sig = token.sign_authorization(account, auth, domain=domain)
        m = auth.message()
        out.append(
            Voucher(
                signature="0x" + sig.hex(),
                from_=m["from"],
                to=m["to"],
                value=req.amount,
                valid_after=0,
                valid_before=valid_before,
                nonce="0x" + auth.nonce.hex(),
            )
        )
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class Discovered:
    agent_id: int
    owner: str
    agent_uri: str
    name: str
    endpoint: str
    probe: Probe | None
    problem: str


def _data_uri(uri: str) -> Any:
    head, _, data = uri.partition(",")
    raw = base64.b64decode(data) if head.endswith(";base64") else urllib.parse.unquote(data).encode()
    return json.loads(raw)


async def _document(http: httpx.AsyncClient, uri: str) -> Any:
    if uri.startswith("data:"):
        return _data_uri(uri)
    if not uri.startswith(("http://", "https://")):
        raise MarketError(f"unsupported agentURI scheme {uri.split(':', 1)[0]!r}")
    resp = await http.get(uri)
    if resp.status_code != 200:
        raise MarketError(f"agentURI answered {resp.status_code}")
    return resp.json()


async def discover(
    rpc_url: str, *, chain_id: int, registry: str, from_block: int = 0, http: httpx.AsyncClient | None = None
) -> list[Discovered]:
    """Registered events → agentURI → registration document → ``web`` endpoint → live terms (a probe)."""
    from kube402.chain import registry as registry_mod
    from kube402.chain import rpc

    try:
        node = await rpc.connect(rpc_url, chain_id=chain_id)
    except rpc.ChainError as err:
        raise MarketError(f"--rpc-url {rpc_url}: {err}") from None
    own = http is None
    http = http or httpx.AsyncClient(timeout=10.0, trust_env=False)
    try:
        reg = registry_mod.IdentityRegistry(node, registry)
        events = await reg.find_registered(from_block=from_block)
        out: list[Discovered] = []
        for ev in events:
            uri = ev.agent_uri
            try:
                current = await reg.token_uri(ev.agent_id)
                uri = current or uri
            except rpc.ChainError:
                pass
            name = endpoint = ""
            try:
                doc = await _document(http, uri)
                if not isinstance(doc, dict):
                    raise MarketError("registration document is not an object")
                name = str(doc.get("name", ""))
                services = doc.get("services") or doc.get("endpoints") or []
                webs = [
                    s.get("endpoint")
                    for s in services
                    if isinstance(s, dict) and s.get("name") == "web" and isinstance(s.get("endpoint"), str)
                ]
                if doc.get("active") is False:
                    raise MarketError("deactivated (active: false)")
                if not webs:
                    raise MarketError("no 'web' service in the registration document")
                endpoint = str(webs[0])
            except (MarketError, httpx.HTTPError, ValueError) as err:
                msg = (
                    str(err)
                    if isinstance(err, MarketError)
                    else f"document unreadable ({type(err).__name__})"
                )
                out.append(Discovered(ev.agent_id, ev.owner, uri, name, endpoint, None, msg))
                continue
            p = await probe(endpoint, http=http, skill=False)
            out.append(
                Discovered(ev.agent_id, ev.owner, uri, name, endpoint, p, "" if p.valid else p.problem)
            )
        return out
    finally:
        if own:
            await http.aclose()


def total_cost(price: int, count: int) -> int:
    return price * count


def usdc(amount: int, decimals: int = 6) -> str:
    return f"{money.format_atomic(amount, decimals=decimals)} USDC"


def decimal_usdc(amount: int, decimals: int = 6) -> Decimal:
    return Decimal(money.format_atomic(amount, decimals=decimals))


def merge(
    existing_cfg: dict[str, Any],
    existing_auths: dict[str, Any],
    name: str,
    upstream: dict[str, str],
    new: Sequence[Voucher],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Add/replace upstream ``name``, append the new vouchers (old ones kept only for the same terms)."""
    ups = dict(existing_cfg.get("upstreams") or {})
    old = ups.get(name)
    same = isinstance(old, dict) and all(
        str(old.get(k, "")).lower() == str(upstream[k]).lower()
        for k in ("payTo", "asset", "price", "network")
    )
    ups[name] = upstream
    auths = dict(existing_auths)
    kept = list(auths.get(name) or []) if same else []
    auths[name] = kept + [v.to_json() for v in new]
    return {**existing_cfg, "upstreams": ups}, auths
