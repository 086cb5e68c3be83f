"""Property tests of Gate.forward_auth over both payment headers (PAYMENT-SIGNATURE and X-PAYMENT).

About 11,000 examples in the default run: random bytes and text, base64 of random JSON, structure-aware
mutations of genuinely signed v1/v2 payloads (fields flipped, retyped, deleted, huge integers, wrong
versions), and character-level corruption of a valid header. The mock facilitator is healthy but accepts
only the genuine payloads, so a 5xx is never legitimate here and a 200 only for a genuine payment. One
property takes the facilitator down (transport errors): then the only 5xx is 503 facilitator_unavailable and
nothing is ever served. A last property runs against a facilitator that approves everything: then the gate's
own route binding and local checks are the only defence, and every 200 is re-checked independently
(eth-account signature recovery, exact binding to the route, time window).

JSON-shaped inputs are generated from a hypothesis-seeded ``random.Random`` (hypothesis-native nested JSON
costs milliseconds per example); failures still replay from hypothesis' seed.
"""

from __future__ import annotations

import base64
import copy
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kube402.api import chains
from tests.support.payments import NOW, PAY_TO, PAYER, URL
from tests.support.verifier_env import Env, fwd, hget, jresp, make_env, settle_ok

pytestmark = pytest.mark.timeout(120)

FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))
HEADERS = ("payment-signature", "x-payment")
USDC = chains.lookup("base-sepolia").usdc
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
ERROR_CODES_400 = {"invalid_payment_header", "invalid_x402_version", "conflicting_payment_headers"}


# -- the world under test ------------------------------------------------------------------------------


class World:
    def __init__(self, env: Env, *, permissive: bool, down: bool = False) -> None:
        self.env = env
        f = env.factory
        self.genuine_v2 = f.v2(auth=f.authorization(nonce="0x" + "a1" * 32))
        self.genuine_v1 = f.v1(auth=f.authorization(nonce="0x" + "b2" * 32, validAfter=str(NOW - 600)))
        self.genuine = (self.genuine_v1, self.genuine_v2)
        self.requirement_v2 = dict(env.route.priced.requirements[0].v2)
        self.permissive = permissive
        self.down = down
        env.fac.behaviour["verify"] = self.verify
        env.fac.behaviour["settle"] = self.settle

    def is_genuine(self, payload: Any) -> bool:
        return any(payload == g for g in self.genuine)

    def verify(self, _r: httpx.Request, body: Any) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("facilitator down")
        if self.permissive or self.is_genuine(body["paymentPayload"]):
            return jresp({"isValid": True, "payer": PAYER})
        return jresp({"isValid": False, "invalidReason": "fuzz_rejected"})

    def settle(self, r: httpx.Request, body: Any) -> httpx.Response:
        if self.permissive or self.is_genuine(body["paymentPayload"]):
            return settle_ok(r, body)
        return jresp({"success": False, "errorReason": "fuzz_rejected", "transaction": "", "network": ""})

    async def send(self, hdrs: dict[str, str]) -> Any:
        gate = self.env.gate
        gate.replay._entries.clear()  # each example starts from an empty replay store
        return await gate.forward_auth(hget(fwd("/services/qwen/v1/chat?x=1") | hdrs), peer="10.0.0.1:1")


def check(world: World, resp: Any, *, sent: Any) -> None:
    """Invariants of every answer; ``sent`` is the payload object (or None when not JSON-shaped)."""
    event(f"{resp.status} {_code(resp)}")
    if world.down and resp.status == 503:
        # the one deliberate 5xx: fail closed when the facilitator is unreachable
        assert orjson.loads(resp.body)["error"] == "facilitator_unavailable"
        assert ("retry-after", "5") in resp.headers
        return
    assert resp.status < 500, (resp.status, resp.body)
    names = {k.lower() for k, _ in resp.headers}
    if resp.status == 200:
        assert not world.down, "served while the facilitator was down"
        if not world.permissive:
            assert sent is not None and world.is_genuine(sent), sent
        assert ("x-payment-status", "settled") in resp.headers
        return
    assert "authorization" not in names and "x-payment-status" not in names
    assert resp.status in (400, 402, 431), resp.status
    assert "payment-required" in names
    body = orjson.loads(resp.body)
    if resp.status == 400:
        assert body["error"] in ERROR_CODES_400
    elif resp.status == 431:
        assert body["error"] == "payment_header_too_large"
    else:
        assert isinstance(body["error"], str) and body["error"]


def _code(resp: Any) -> str:
    try:
        return str(orjson.loads(resp.body).get("error", ""))[:40]
    except (ValueError, AttributeError):
        return ""


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world() -> AsyncIterator[World]:
    env = make_env()
    w = World(env, permissive=False)
    yield w
    await env.aclose()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def down_world() -> AsyncIterator[World]:
    env = make_env()
    w = World(env, permissive=False, down=True)
    yield w
    await env.aclose()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def permissive_world() -> AsyncIterator[World]:
    env = make_env()
    w = World(env, permissive=True)
    yield w
    await env.aclose()


# -- generators ------------------------------------------------------------------------------------------

KEYS = [
    "x402Version",
    "accepted",
    "payload",
    "authorization",
    "signature",
    "scheme",
    "network",
    "amount",
    "asset",
    "payTo",
    "maxTimeoutSeconds",
    "extra",
    "name",
    "version",
    "from",
    "to",
    "value",
    "validAfter",
    "validBefore",
    "nonce",
    "resource",
    "url",
    "extensions",
    "maxAmountRequired",
]
SPECIAL: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2,
    3,
    300,
    1000,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    2**256,
    -(2**63) - 1,
    10**80,
    1.5,
    -0.0,
    1e308,
    "",
    " ",
    "0",
    "00",
    "1000",
    "01000",
    " 1000",
    "1000 ",
    "+1000",
    "1e3",
    "1000.0",
    "-1000",
    "0x",
    "0x0",
    "0x" + "0" * 40,
    "0x" + "g" * 40,
    PAY_TO.lower(),
    PAY_TO.upper(),
    "0X" + PAY_TO[2:],
    USDC.lower(),
    PAYER,
    "0x" + "ab" * 32,
    "0x" + "ab" * 31,
    "0x" + "ab" * 33,
    "0x" + "11" * 65,
    "0x" + "1" * 131,
    "0x" + "00" * 65,
    "0x" + "ff" * 65,
    "0x" + "ab" * 200,
    "eip155:84532",
    "eip155:8453",
    "eip155:*",
    "base-sepolia",
    "base",
    "exact",
    "upto",
    "USDC",
    "USD Coin",
    "2",
    "1",
    "x" * 3000,
    "\u0000",
    "\u0661\u0662\u0663",
    "é",
    str(NOW),
    str(NOW + 5),
    str(NOW + 6),
    str(NOW + 300),
    str(NOW + 10**8),
    str(2**256),
    str(2**256 - 1),
    "9" * 78,
    "9" * 79,
    [],
    {},
    [1],
    {"a": 1},
    {"name": "USDC", "version": "2"},
    [None],
    {"": None},
]


def rand_scalar(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(SPECIAL)
    if roll < 0.75:
        return rng.randint(-(2**70), 2**70)
    if roll < 0.9:
        return "".join(rng.choice("0123456789abcdefxX:-_ ") for _ in range(rng.randint(0, 70)))
    return rng.random() * 10 ** rng.randint(-5, 30)


def rand_json(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth >= 4 or roll < 0.45:
        return rand_scalar(rng)
    if roll < 0.8:
        return {
            rng.choice(KEYS) if rng.random() < 0.85 else str(rng.random()): rand_json(rng, depth + 1)
            for _ in range(rng.randint(0, 6))
        }
    return [rand_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]


def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append((*prefix, k))
            out += paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.append((*prefix, i))
            out += paths(v, (*prefix, i))
    return out


def parent(obj: Any, path: tuple[Any, ...]) -> Any:
    for p in path[:-1]:
        obj = obj[p]
    return obj


ADDRESSES = [
    PAY_TO,
    PAY_TO.lower(),
    PAYER,
    USDC,
    chains.lookup("base").usdc,
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    "0x" + "00" * 20,
]


def _plausible(rng: random.Random, key: Any, value: Any, sibling: dict[str, Any]) -> Any:
    """A well-typed but possibly wrong value for a known field (reaches binding, window and signature
    checks)."""
    if key in ("from", "to", "payTo", "asset"):
        return rng.choice(ADDRESSES)
    if key in ("value", "amount", "maxAmountRequired"):
        return str(rng.choice([0, 1, 999, 1000, 1000, 1001, 10**6, 2**256 - 1]))
    if key == "validAfter":
        return str(max(0, NOW + rng.choice([-(10**6), -600, -1, 0, 0, 1, 60])))
    if key == "validBefore":
        return str(NOW + rng.choice([-1, 0, 5, 6, 7, 300, 2592000, 2592001, 10**9]))
    if key == "nonce":
        return "0x" + rng.randbytes(32).hex()
    if key == "signature" and isinstance(value, str) and len(value) == 132:
        raw = bytearray(bytes.fromhex(value[2:]))
        roll = rng.random()
        if roll < 0.3:
            raw[rng.randrange(65)] ^= 1 << rng.randrange(8)
        elif roll < 0.5:  # the high-s twin of the same signature
            s_ = int.from_bytes(raw[32:64], "big")
            raw[32:64] = ((N - s_) % (1 << 256)).to_bytes(32, "big")  # s may already be junk (>= N)
            raw[64] = 55 - raw[64] if raw[64] in (27, 28) else raw[64]
        elif roll < 0.7:
            raw[64] = rng.choice([0, 1, 27, 28, 29, 255])
        else:
            return "0x" + rng.randbytes(rng.choice([64, 65, 66, 100, 200])).hex()
        return "0x" + bytes(raw).hex()
    if key == "network":
        return rng.choice(
            ["eip155:84532", "eip155:8453", "base-sepolia", "base", "eip155:*", "eip155:084532"]
        )
    if key == "scheme":
        return rng.choice(["exact", "upto", "EXACT", "exact "])
    if key == "maxTimeoutSeconds":
        return rng.choice([300, 299, 0, 60, 301, 3600])
    if key in ("name", "version"):
        return rng.choice(["USDC", "USD Coin", "2", "1", ""])
    if key == "x402Version":
        return rng.choice([1, 2])
    if key == "extra":
        return rng.choice(
            [
                {"name": "USDC", "version": "2"},
                {"name": "USDC"},
                {"version": "2"},
                {"name": "USDC", "version": "2", "client": True},
                {},
                None,
            ]
        )
    return rand_scalar(rng)


def mutate(rng: random.Random, payload: dict[str, Any]) -> dict[str, Any]:
    p = copy.deepcopy(payload)
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 4])):
        op = rng.random()
        ps = paths(p)
        if op < 0.04:
            p["x402Version"] = rng.choice([0, 1, 2, 3, -1, "2", "1", 2.0, True, None, 2**64, 10**30, [2]])
        elif op < 0.08:
            # cross the shapes: v1 fields in v2 and vice versa
            if "accepted" in p:
                p.pop("accepted")
                p.update(scheme="exact", network=rng.choice(["base-sepolia", "eip155:84532", "base"]))
            else:
                p["accepted"] = {"scheme": "exact", "network": p.get("network")}
                p["x402Version"] = rng.choice([1, 2])
        elif op < 0.5 and ps:
            path = rng.choice(ps)
            container = parent(p, path)
            key = path[-1]
            container[key] = copy.deepcopy(
                _plausible(rng, key, container[key], container)
            )  # never self-referential
        elif op < 0.6 and ps:
            path = rng.choice(ps)
            container = parent(p, path)
            del container[path[-1]]
        elif op < 0.7 and ps:
            # case and whitespace games on strings (addresses stay equal case-insensitively)
            path = rng.choice(ps)
            container = parent(p, path)
            v = container[path[-1]]
            if isinstance(v, str):
                container[path[-1]] = rng.choice(
                    [v.lower(), v.upper(), v.swapcase(), v + " ", v[:-1], v + "0"]
                )
        elif op < 0.9 and ps:
            path = rng.choice(ps)
            container = parent(p, path)
            container[path[-1]] = rand_json(rng, 2) if rng.random() < 0.3 else rand_scalar(rng)
        else:
            target = rng.choice(
                [p] + [parent(p, x)[x[-1]] for x in ps if isinstance(parent(p, x)[x[-1]], dict)]
            )
            target[rng.choice([*KEYS, "client", "extra_key"])] = rand_scalar(rng)
    return p


def encode(obj: Any, rng: random.Random) -> str:
    # stdlib json: it writes integers of any size (orjson refuses beyond 64 bits)
    raw = json.dumps(obj, separators=(",", ":"), ensure_ascii=rng.random() < 0.5).encode()
    text = (base64.urlsafe_b64encode(raw) if rng.random() < 0.3 else base64.b64encode(raw)).decode()
    if rng.random() < 0.3:
        text = text.rstrip("=")
    return text


def placement(rng: random.Random, value: str, other: str | None = None) -> dict[str, str]:
    roll = rng.random()
    if roll < 0.45:
        return {"payment-signature": value}
    if roll < 0.9:
        return {"x-payment": value}
    if roll < 0.96:
        return {"payment-signature": value, "x-payment": value}
    return {"payment-signature": value, "x-payment": other if other is not None else value + "A"}


# -- properties -----------------------------------------------------------------------------------------


async def test_genuine_payments_are_served(world: World) -> None:
    for g in world.genuine:
        for name in HEADERS:
            resp = await world.send({name: base64.b64encode(orjson.dumps(g)).decode()})
            assert resp.status == 200, resp.body


@settings(FUZZ, max_examples=2000)
@given(
    value=st.one_of(st.binary(max_size=700).map(lambda b: b.decode("latin-1")), st.text(max_size=500)),
    where=st.sampled_from(["payment-signature", "x-payment", "both", "conflict"]),
)
async def test_fuzz_random_bytes_and_text(world: World, value: str, where: str) -> None:
    hdrs = {
        "both": {"payment-signature": value, "x-payment": value},
        "conflict": {"payment-signature": value, "x-payment": value + "x"},
    }.get(where, {where: value})
    resp = await world.send(hdrs)
    check(world, resp, sent=None)
    assert resp.status != 200


@settings(FUZZ, max_examples=2000)
@given(seed=st.integers(0, 2**64))
async def test_fuzz_base64_of_random_json(world: World, seed: int) -> None:
    rng = random.Random(seed)
    obj = rand_json(rng)
    if rng.random() < 0.5:
        obj = {"x402Version": rng.choice([1, 2, 2, 3]), **(obj if isinstance(obj, dict) else {"x": obj})}
    resp = await world.send(placement(rng, encode(obj, rng)))
    check(world, resp, sent=obj)


@settings(FUZZ, max_examples=4000)
@given(seed=st.integers(0, 2**64))
async def test_fuzz_mutated_signed_payloads(world: World, seed: int) -> None:
    rng = random.Random(seed)
    base = rng.choice(world.genuine)
    obj = mutate(rng, base)
    value = encode(obj, rng)
    resp = await world.send(placement(rng, value, other=encode(base, rng)))
    check(world, resp, sent=obj)


@settings(FUZZ, max_examples=1500)
@given(seed=st.integers(0, 2**64))
async def test_fuzz_corrupted_header_text(world: World, seed: int) -> None:
    rng = random.Random(seed)
    base = rng.choice(world.genuine)
    chars = list(encode(base, rng))
    for _ in range(rng.randint(1, 6)):
        if not chars:
            break
        i = rng.randrange(len(chars))
        roll = rng.random()
        if roll < 0.4:
            chars[i] = rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_= .%\t")
        elif roll < 0.6:
            del chars[i]
        elif roll < 0.8:
            chars.insert(i, rng.choice("A=/+-_ \n\x00é"))
        else:
            chars = chars[: max(1, i)]
    value = "".join(chars)
    try:
        sent = orjson.loads(base64.b64decode(value.strip() + "=" * (-len(value.strip()) % 4), altchars=None))
    except Exception:  # noqa: BLE001 - only used to tell the genuine object apart
        try:
            sent = orjson.loads(base64.urlsafe_b64decode(value.strip() + "=" * (-len(value.strip()) % 4)))
        except Exception:  # noqa: BLE001
            sent = None
    resp = await world.send(placement(rng, value))
    check(world, resp, sent=sent)


@settings(FUZZ, max_examples=500)
@given(seed=st.integers(0, 2**64))
async def test_fuzz_facilitator_down_fails_closed(down_world: World, seed: int) -> None:
    w = down_world
    rng = random.Random(seed)
    obj = mutate(rng, rng.choice(w.genuine)) if rng.random() < 0.8 else rng.choice(w.genuine)
    resp = await w.send(placement(rng, encode(obj, rng)))
    check(w, resp, sent=obj)
    assert len(w.env.gate.replay) == 0  # dropped, so a retry can succeed later


# -- with a facilitator that approves everything: the gate's own checks must still hold ------------------


_TYPES = {
    "TransferWithAuthorization": [
        {"name": "from", "type": "address"},
        {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "validAfter", "type": "uint256"},
        {"name": "validBefore", "type": "uint256"},
        {"name": "nonce", "type": "bytes32"},
    ]
}


def independently_acceptable(obj: Any) -> tuple[bool, str]:
    """Whether a payload that got a 200 really binds to the route and passes the local checks."""
    if type(obj) is not dict or type(obj.get("x402Version")) is not int or obj["x402Version"] not in (1, 2):
        return False, "version"
    try:
        auth = obj["payload"]["authorization"]
        sig = bytes.fromhex(obj["payload"]["signature"][2:])
        to, value = auth["to"], auth["value"]
        va, vb = int(auth["validAfter"]), int(auth["validBefore"])
        nonce = bytes.fromhex(auth["nonce"][2:])
    except (KeyError, TypeError, ValueError, AttributeError):
        return False, "shape"
    # leading zeros are the same uint256 (the signature covers the number, not its spelling)
    if to.lower() != PAY_TO.lower() or not (type(value) is str and value.isdigit() and int(value) == 1000):
        return False, "to/value"
    if obj["x402Version"] == 2:
        acc = obj.get("accepted")
        if type(acc) is not dict:
            return False, "accepted"
        extra = acc.get("extra")
        if not (
            acc.get("scheme") == "exact"
            and acc.get("network") == "eip155:84532"
            and type(acc.get("amount")) is str
            and acc["amount"].isdigit()
            and int(acc["amount"]) == 1000
            and str(acc.get("asset")).lower() == USDC.lower()
            and str(acc.get("payTo")).lower() == PAY_TO.lower()
            and type(acc.get("maxTimeoutSeconds")) is int
            and acc["maxTimeoutSeconds"] == 300
            and type(extra) is dict
            and extra.get("name") == "USDC"
            and extra.get("version") == "2"
        ):
            return False, "accepted binding"
    elif not (obj.get("scheme") == "exact" and obj.get("network") == "base-sepolia"):
        return False, "v1 binding"
    if not (va <= NOW and vb >= NOW + 6 and vb <= NOW + 2592000):
        return False, "window"
    if len(nonce) != 32:
        return False, "nonce"
    if len(sig) == 65:
        s = int.from_bytes(sig[32:64], "big")
        v = sig[64] + 27 if sig[64] < 27 else sig[64]
        if not 0 < s <= N // 2 or v not in (27, 28):
            return False, "signature s/v"
        msg = encode_typed_data(
            domain_data={"name": "USDC", "version": "2", "chainId": 84532, "verifyingContract": USDC},
            message_types=_TYPES,
            message_data={
                "from": auth["from"],
                "to": to,
                "value": int(value),
                "validAfter": va,
                "validBefore": vb,
                "nonce": nonce,
            },
        )
        try:
            signer = Account.recover_message(msg, signature=sig[:64] + bytes([v]))
        except Exception:  # noqa: BLE001
            return False, "signature unrecoverable"
        if signer.lower() != str(auth["from"]).lower():
            return False, "signer"
    return True, ""


@settings(FUZZ, max_examples=1000)
@given(seed=st.integers(0, 2**64))
async def test_fuzz_permissive_facilitator_gate_checks_hold(permissive_world: World, seed: int) -> None:
    w = permissive_world
    rng = random.Random(seed)
    obj = mutate(rng, rng.choice(w.genuine))
    resp = await w.send(placement(rng, encode(obj, rng)))
    check(w, resp, sent=obj)
    if resp.status == 200:
        ok, why = independently_acceptable(obj)
        assert ok, (why, obj)


def test_independent_checker_accepts_genuine_and_rejects_forgery() -> None:
    env = make_env()
    w = World(env, permissive=True)
    for g in w.genuine:
        assert independently_acceptable(g) == (True, "")
    forged = copy.deepcopy(w.genuine_v2)
    forged["payload"]["authorization"]["from"] = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
    assert independently_acceptable(forged)[0] is False
    assert w.genuine_v2["resource"]["url"] == URL
