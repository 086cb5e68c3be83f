"""Structure-aware fuzzing (issue 9) across the three HTTP faces of the money path: ``/verify`` (Gate), the
proxy gate and the facilitator's HTTP API (its RSGI app over a Service whose chain is unreachable).

Inputs: nesting depth (up to 600 levels in any field, 100,000 in raw bodies), huge numbers (integers of
thousands of digits, ``1e400``, ``-0``), unicode in every header and every field (astral planes, control
characters, lone surrogates escaped in JSON, RTL marks), 1 MB targets, and genuinely signed payments
carried next to that junk. Invariants:
never a 5xx (except the deliberate 503s: a guarded offer, a facilitator or chain that cannot be asked),
never a 200 without a settled payment (``unmatched: deny``, so a free 200 cannot hide), and no admission
state left behind: no in-flight replay entry, no facilitator claim or in-flight settle.

Example counts: about 2,400 in a default run, 52,000 with ``HYPOTHESIS_PROFILE=ci`` (CI).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from eth_account import Account
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kube402.chain.facilitator import app as fac_app
from kube402.chain.facilitator import config as fac_config
from kube402.chain.facilitator import metrics as fac_metrics
from kube402.chain.facilitator import service as fac_service
from kube402.verifier.proxy import ProxyGate
from tests.support.payments import PAYER
from tests.support.verifier_env import (
    Env,
    Recorder,
    Upstream,
    fwd,
    hget,
    jresp,
    keeper,
    make_env,
    offer,
    preq,
    proxy_gate,
)

pytestmark = pytest.mark.timeout(1800)

CI = os.environ.get("HYPOTHESIS_PROFILE") == "ci"
FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))
ALLOWED_503 = {"offer_unavailable", "facilitator_unavailable", "settlement_pending", "not_ready"}

UNICODE = [
    "é",
    "\u0661\u0662",
    "\u202e",
    "\ufeff",
    "\U0001f4b0",
    "\u0000",
    "\x7f",
    "\u2028",
    "\uff46\uff55\uff4c\uff4c",
    "\ud800",
    "\udfff",
    "ß",
    "İ",
    "\r\n",
    "\t",
    "%00",
    "%2F",
    "%",
    "../",
    "//",
]


def unicode_text(rng: random.Random, n: int = 12) -> str:
    parts = []
    for _ in range(rng.randint(0, n)):
        roll = rng.random()
        if roll < 0.5:
            parts.append(rng.choice(UNICODE))
        elif roll < 0.8:
            parts.append(chr(rng.randint(0x20, 0x7E)))
        else:
            parts.append(chr(rng.choice([rng.randint(0x80, 0xD7FF), rng.randint(0xE000, 0x10FFFF)])))
    return "".join(parts)


def nested(rng: random.Random, depth: int) -> Any:
    value: Any = rng.choice([{}, [], 1, "x", None])
    for _ in range(depth):
        value = {"a": value} if rng.random() < 0.5 else [value]
    return value


def huge_number_text(rng: random.Random) -> str:
    return rng.choice(
        [
            "9" * rng.randint(19, 5000),
            "-" + "9" * rng.randint(19, 300),
            "1e400",
            "-1e400",
            "1E-400",
            "-0",
            "0.0000000000000000000001",
            "1" + "0" * 78,
            "115792089237316195423570985008687907853269984665640564039457584007913129639936",
        ]
    )


def structural(rng: random.Random, base: dict[str, Any]) -> str:
    """JSON text of ``base`` with one structural attack applied somewhere (text, so huge numbers survive)."""
    obj = copy.deepcopy(base)
    spots: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k in list(node):
                spots.append((node, k))
                walk(node[k])
        elif isinstance(node, list):
            for i in range(len(node)):
                spots.append((node, i))
                walk(node[i])

    walk(obj)
    marker = "__HUGE__"
    huge: str | None = None
    for _ in range(rng.randint(1, 3)):
        container, key = rng.choice(spots) if spots else (obj, "x")
        roll = rng.random()
        if roll < 0.3:
            container[key] = nested(rng, rng.choice([5, 17, 64, 255, 256, 300, 600]))
        elif roll < 0.55:
            huge = huge_number_text(rng)
            container[key] = marker
        elif roll < 0.85:
            value = container[key]
            if isinstance(value, str):
                container[key] = rng.choice([value + unicode_text(rng, 3), unicode_text(rng), value.upper()])
            else:
                container[key] = unicode_text(rng)
        elif isinstance(container, dict):
            container[unicode_text(rng, 4) or "k"] = unicode_text(rng)
    text = json.dumps(obj, ensure_ascii=rng.random() < 0.5)
    if huge is not None:
        text = text.replace(json.dumps(marker), huge, 1)
    return text


def b64(text: str, rng: random.Random) -> str:
    raw = text.encode("utf-8", "surrogatepass")
    out = (base64.urlsafe_b64encode(raw) if rng.random() < 0.3 else base64.b64encode(raw)).decode()
    return out.rstrip("=") if rng.random() < 0.3 else out


def junk_headers(rng: random.Random) -> dict[str, str]:
    names = [
        "accept",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-method",
        "x-forwarded-for",
        "origin",
        "access-control-request-method",
        "access-control-request-headers",
        "content-type",
        "user-agent",
        "authorization",
        "x-payment-status",
        "cookie",
    ]
    return {n: unicode_text(rng, 20) for n in rng.sample(names, rng.randint(0, 6))}


def target(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.01:
        return "/services/qwen/" + "a" * (1 << 20)  # 1 MB
    if roll < 0.05:
        return "/services/qwen/" + "/".join("s" for _ in range(rng.randint(100, 20000)))
    path = rng.choice(["/services/qwen", "/services/qwen/v1/chat", "//services/qwen/x", "/services/paused/a"])
    if rng.random() < 0.4:
        path += "/" + unicode_text(rng, 8)
    if rng.random() < 0.3:
        path += "?" + unicode_text(rng, 8)
    return path


# -- the verifier worlds -----------------------------------------------------------------------------------


class World:
    def __init__(self, env: Env) -> None:
        self.env = env
        f = env.factory
        self.genuine = [f.v2(), f.v1()]
        self.genuine_text = [json.dumps(g) for g in self.genuine]
        self.settled = 0
        env.fac.behaviour["verify"] = self.verify
        env.fac.behaviour["settle"] = self.settle
        k = keeper(env)
        k.offer_changed(("llm", "qwen"), offer())
        k.offer_changed(("llm", "paused"), offer("paused", paused=True))
        k.rebuild()

    def verify(self, _r: httpx.Request, body: Any) -> httpx.Response:
        ok = body["paymentPayload"] in self.genuine
        return jresp({"isValid": ok, "payer": PAYER, **({} if ok else {"invalidReason": "fuzz_rejected"})})

    def settle(self, _r: httpx.Request, body: Any) -> httpx.Response:
        if body["paymentPayload"] in self.genuine:
            self.settled += 1
            return jresp({"success": True, "transaction": "0x" + "ab" * 32, "network": "eip155:84532"})
        return jresp({"success": False, "errorReason": "fuzz_rejected", "network": "eip155:84532"})

    def payment(self, rng: random.Random) -> dict[str, str]:
        roll = rng.random()
        if roll < 0.1:
            value = b64(rng.choice(self.genuine_text), rng)
        elif roll < 0.8:
            value = b64(structural(rng, rng.choice(self.genuine)), rng)
        elif roll < 0.9:
            value = unicode_text(rng, 40)
        else:
            n = rng.choice([100, 300, 1000, 3000])
            value = b64('{"x402Version":2,"a":' + "[" * n + "]" * n + "}", rng)
        name = rng.choice(["payment-signature", "x-payment"])
        return {name: value}

    def reset(self) -> None:
        replay = self.env.gate.replay
        assert replay.counts()["in_flight"] == 0, "an admission survived its request"
        replay._entries.clear()
        self.settled = 0


def check_status(world: World, status: int, body: bytes, *, method: str) -> None:
    event(f"{status}")
    if status >= 500:
        assert status == 503, (status, body[:200])
        assert orjson.loads(body)["error"] in ALLOWED_503, body[:200]
    if 200 <= status < 300 and world.settled != 1:
        # by design: a CORS preflight is free, a paid HEAD is verified but not charged (one per payment)
        assert method in ("OPTIONS", "HEAD"), (status, method, "2xx without a settled payment")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world() -> AsyncIterator[World]:
    env = make_env(unmatched="deny")
    yield World(env)
    await env.aclose()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def proxy_world() -> AsyncIterator[tuple[World, ProxyGate, Upstream]]:
    env = make_env(unmatched="deny", route=None)
    w = World(env)
    upstream = Upstream()
    pg = proxy_gate(env, upstream)
    yield w, pg, upstream
    await pg.aclose()
    await env.aclose()


@settings(FUZZ, max_examples=20_000 if CI else 1000)
@given(seed=st.integers(0, 2**64))
async def test_fuzz_structure_verify(world: World, seed: int) -> None:
    rng = random.Random(seed)
    method = rng.choice(["GET", "POST", "HEAD", "OPTIONS", unicode_text(rng, 3)])
    hdrs = fwd(target(rng), method=method)
    hdrs |= junk_headers(rng)
    pay = world.payment(rng)
    hdrs |= pay
    resp = await world.env.gate.forward_auth(hget(hdrs), peer=rng.choice(["10.0.0.1:1", unicode_text(rng)]))
    check_status(world, resp.status, resp.body, method=method.upper())
    world.reset()


@settings(FUZZ, max_examples=16_000 if CI else 800)
@given(seed=st.integers(0, 2**64))
async def test_fuzz_structure_proxy(proxy_world: tuple[World, ProxyGate, Upstream], seed: int) -> None:
    world, pg, upstream = proxy_world
    rng = random.Random(seed)
    before = len(upstream.requests)
    hdrs = junk_headers(rng) | world.payment(rng)
    out = Recorder()
    method = rng.choice(["GET", "POST", "HEAD", "OPTIONS", "PUT"])
    await pg.handle(preq(target(rng), method=method, body=(b"{}",), **hdrs), out)
    assert out.status is not None
    check_status(world, out.status, out.body, method=method)
    if out.status == 200 and method != "HEAD":
        assert len(upstream.requests) == before + 1
    world.reset()


# -- the facilitator's HTTP API ----------------------------------------------------------------------------


class _Headers(dict[str, str]):
    pass


class _Scope:
    def __init__(self, path: str, method: str, headers: dict[str, str]) -> None:
        self.path, self.method, self.headers = path, method, _Headers(headers)


class _Protocol:
    def __init__(self, body: bytes) -> None:
        self.body = body
        self.status: int | None = None
        self.reply = b""

    def __aiter__(self) -> AsyncIterator[bytes]:
        async def chunks() -> AsyncIterator[bytes]:
            yield self.body

        return chunks()

    def response_bytes(self, status: int, _headers: list[tuple[str, str]], body: bytes) -> None:
        self.status, self.reply = status, body


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def facilitator_app() -> AsyncIterator[fac_app.FacilitatorApp]:
    # the chain is unreachable (a closed loopback port): nothing can verify or settle for real
    settings_ = fac_config.Settings(
        networks=(fac_config.parse_network("base-sepolia=http://127.0.0.1:9"),),
        rpc_timeout=0.5,
        confirmation_timeout=0.5,
        workers=4,
    )
    svc = fac_service.Service(settings_, account=Account.create(), metrics=fac_metrics.Metrics())
    yield fac_app.FacilitatorApp(svc, max_body_bytes=settings_.max_body_bytes)
    await svc.close()


@settings(FUZZ, max_examples=16_000 if CI else 600)
@given(seed=st.integers(0, 2**64))
async def test_fuzz_structure_facilitator_api(
    world: World, facilitator_app: fac_app.FacilitatorApp, seed: int
) -> None:
    rng = random.Random(seed)
    requirement = dict(world.env.route.priced.requirements[0].v2)
    payload = rng.choice(world.genuine)
    version = payload["x402Version"]
    doc = {"x402Version": version, "paymentPayload": payload, "paymentRequirements": requirement}
    roll = rng.random()
    if roll < 0.8:
        text = structural(rng, doc)
    elif roll < 0.9:
        text = unicode_text(rng, 60)
    else:
        n = rng.choice([100, 1000, 5000, 100_000])
        text = '{"a":' * n + "1" + "}" * n if rng.random() < 0.5 else "[" * n + "]" * n
    body = text.encode("utf-8", "surrogatepass")
    path = rng.choice(["/verify", "/settle", "/release", "/supported", "/" + unicode_text(rng, 4)])
    hdrs = dict(junk_headers(rng))
    if rng.random() < 0.5:
        hdrs["x-kube402-claim"] = rng.choice(["c" * 20, unicode_text(rng, 10), "x" * 200])
    proto = _Protocol(body)
    await facilitator_app.__rsgi__(_Scope(path, rng.choice(["POST", "GET", "PUT"]), hdrs), proto)
    event(f"{proto.status}")
    assert proto.status is not None
    assert proto.status in (200, 400, 401, 404, 405, 413, 503), (proto.status, proto.reply[:200])
    reply = orjson.loads(proto.reply)
    if proto.status == 503:
        assert reply.get("errorReason", reply.get("invalidReason")) == "facilitator_unavailable"
    if path == "/settle" and proto.status == 200:
        assert reply["success"] is False  # nothing can have been settled
    svc = facilitator_app.service
    assert svc.claims.held() == 0, "a claim survived a request that did not verify"
    assert svc.ledger.in_flight == 0
