"""Property tests: the payment header decoder raises nothing but PaymentHeaderError, whatever it is fed.

About 14k examples in the default run: random bytes and text, base64 of random JSON, structure-aware
mutations of valid v1/v2 payloads, character-level corruption of a valid header, and a round trip of
generated valid payloads. Hypothesis-native strategies shrink well but cost about 2 ms per example for
nested JSON, so the bulk of the JSON-shaped cases is generated from a hypothesis-seeded ``random.Random``.
"""

from __future__ import annotations

import base64
import copy
import json
import random
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kube402.x402 import codes, headers, requirements
from tests.support.payments import BASE_SEPOLIA, PAY_TO, PAYER, URL

pytestmark = pytest.mark.timeout(120)

MAX = headers.DEFAULT_MAX_PAYMENT_HEADER_BYTES
DECODE_CODES = {
    codes.Code.INVALID_PAYMENT_HEADER,
    codes.Code.INVALID_X402_VERSION,
    codes.Code.PAYMENT_HEADER_TOO_LARGE,
}
FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=False)

_REQ = requirements.build_requirement(BASE_SEPOLIA, amount=1000, pay_to=PAY_TO)
_AUTH = {
    "from": PAYER,
    "to": PAY_TO,
    "value": "1000",
    "validAfter": "0",
    "validBefore": "1767225900",
    "nonce": "0x" + "ab" * 32,
}
VALID_V2: dict[str, Any] = {
    "x402Version": 2,
    "resource": {"url": URL},
    "accepted": dict(_REQ.v2),
    "payload": {"signature": "0x" + "11" * 65, "authorization": _AUTH},
}
VALID_V1: dict[str, Any] = {
    "x402Version": 1,
    "scheme": "exact",
    "network": "base-sepolia",
    "payload": {"signature": "0x" + "11" * 65, "authorization": _AUTH},
}
KEYS = sorted(
    {"x402Version", "accepted", "payload", "authorization", "signature", "scheme", "network", "extra"}
    | set(_REQ.v2)
    | set(_AUTH)
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**300), max_value=2**300)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=24)
    | st.sampled_from(["0x", "0x" + "a" * 40, "0x" + "0" * 64, "1000", "exact", "eip155:84532", str(2**256)])
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=10,
)


def attempt(
    value: str | bytes, *, max_bytes: int = MAX, accept_v1: bool = True
) -> headers.DecodedPayment | None:
    try:
        decoded = headers.decode_payment_header(value, max_bytes=max_bytes, accept_v1=accept_v1)
    except headers.PaymentHeaderError as err:
        assert err.code in DECODE_CODES
        assert isinstance(err.message, str) and len(err.message) < 120
        return None
    check_invariants(decoded)
    return decoded


def check_invariants(decoded: headers.DecodedPayment) -> None:
    assert decoded.version in (1, 2)
    auth = decoded.authorization
    for number in (auth.value, auth.valid_after, auth.valid_before):
        assert type(number) is int and 0 <= number < 2**256
    assert len(auth.nonce) == 32
    assert len(auth.from_address) == 42 and len(auth.to) == 42
    assert len(decoded.signature) >= 1
    assert (decoded.accepted is None) == (decoded.version == 1)
    # What is forwarded to the facilitator re-serializes losslessly.
    assert orjson.loads(orjson.dumps(decoded.raw)) == decoded.raw


def encode_json(value: Any, *, urlsafe: bool, pad: bool) -> str:
    raw = json.dumps(value, separators=(",", ":"), allow_nan=True).encode()
    text = (base64.urlsafe_b64encode(raw) if urlsafe else base64.b64encode(raw)).decode()
    return text if pad else text.rstrip("=")


def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(obj, dict):
        for key, value in obj.items():
            found.extend(paths(value, (*prefix, key)))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            found.extend(paths(value, (*prefix, index)))
    return found


@st.composite
def mutated_payloads(draw: st.DrawFn) -> dict[str, Any]:
    obj: dict[str, Any] = copy.deepcopy(draw(st.sampled_from([VALID_V2, VALID_V1])))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        candidates = paths(obj)
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        parent = obj
        for key in path[:-1]:
            parent = parent[key]
        operation = draw(st.sampled_from(["delete", "replace", "add"]))
        if operation == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif operation == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = draw(json_values)
        else:
            parent[path[-1]] = draw(json_values)
    return obj


@settings(FUZZ, max_examples=3000)
@given(value=st.binary(max_size=2048), max_bytes=st.sampled_from([16, 1024, MAX]), accept_v1=st.booleans())
def test_random_bytes(value: bytes, max_bytes: int, accept_v1: bool) -> None:
    attempt(value, max_bytes=max_bytes, accept_v1=accept_v1)


@settings(FUZZ, max_examples=1500)
@given(value=st.text(max_size=600))
def test_random_text(value: str) -> None:
    attempt(value)


@settings(FUZZ, max_examples=1000)
@given(value=json_values, urlsafe=st.booleans(), pad=st.booleans())
def test_base64_of_random_json(value: Any, urlsafe: bool, pad: bool) -> None:
    attempt(encode_json(value, urlsafe=urlsafe, pad=pad))


@settings(FUZZ, max_examples=1000)
@given(obj=mutated_payloads(), urlsafe=st.booleans(), pad=st.booleans(), accept_v1=st.booleans())
def test_mutated_valid_payloads(obj: dict[str, Any], urlsafe: bool, pad: bool, accept_v1: bool) -> None:
    decoded = attempt(encode_json(obj, urlsafe=urlsafe, pad=pad), accept_v1=accept_v1)
    if decoded is not None:
        assert decoded.raw == obj


@settings(FUZZ, max_examples=1500)
@given(
    position=st.integers(min_value=0, max_value=10_000),
    replacement=st.characters(codec="ascii"),
    cut=st.integers(min_value=0, max_value=8),
)
def test_corrupted_valid_header(position: int, replacement: str, cut: int) -> None:
    valid = headers.encode_b64_json(VALID_V2)
    index = position % len(valid)
    attempt(valid[:index] + replacement + valid[index + 1 : len(valid) - cut])


hex_digits = "0123456789abcdefABCDEF"
addresses = st.text(alphabet=hex_digits, min_size=40, max_size=40).map(lambda h: "0x" + h)
uint256 = st.integers(min_value=0, max_value=2**256 - 1)


@settings(FUZZ, max_examples=600)
@given(
    sender=addresses,
    to=addresses,
    value=uint256,
    after=uint256,
    before=uint256,
    nonce=st.binary(min_size=32, max_size=32),
    signature=st.binary(min_size=1, max_size=200),
    version=st.sampled_from([1, 2]),
)
def test_generated_valid_payloads_round_trip(
    sender: str, to: str, value: int, after: int, before: int, nonce: bytes, signature: bytes, version: int
) -> None:
    auth = {
        "from": sender,
        "to": to,
        "value": str(value),
        "validAfter": str(after),
        "validBefore": str(before),
        "nonce": "0x" + nonce.hex(),
    }
    base = VALID_V2 if version == 2 else VALID_V1
    obj = {**base, "payload": {"signature": "0x" + signature.hex(), "authorization": auth}}
    decoded = attempt(headers.encode_b64_json(obj))
    assert decoded is not None
    assert decoded.authorization == headers.Authorization(sender, to, value, after, before, nonce)
    assert decoded.signature == signature


# Bulk generation from a seeded Random: cheap, so many more examples per second.
_SCALARS: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2,
    2**63,
    -(2**63) - 1,
    2**64,
    10**30,
    1.5,
    -0.0,
    1e308,
    "",
    "0x",
    "exact",
    "0x" + "a" * 40,
    "0x" + "0" * 64,
    "1000",
    str(2**256),
    "eip155:84532",
    "base-sepolia",
    "\u0000",
    "é",
    "\ud7ff",
]


def random_json(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth >= 4 or roll < 0.55:
        if rng.random() < 0.7:
            return rng.choice(_SCALARS)
        return "".join(rng.choice("0123456789abcdefxX:-_ ") for _ in range(rng.randrange(0, 70)))
    if roll < 0.75:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {rng.choice(KEYS): random_json(rng, depth + 1) for _ in range(rng.randrange(0, 6))}


def random_mutation(rng: random.Random) -> dict[str, Any]:
    obj: dict[str, Any] = copy.deepcopy(rng.choice([VALID_V2, VALID_V1]))
    for _ in range(rng.randrange(1, 4)):
        candidates = paths(obj)
        if not candidates:
            break
        path = rng.choice(candidates)
        parent = obj
        for key in path[:-1]:
            parent = parent[key]
        operation = rng.random()
        if operation < 0.3 and isinstance(parent, dict):
            del parent[path[-1]]
        elif operation < 0.5 and isinstance(parent, dict):
            parent[rng.choice(KEYS)] = random_json(rng)
        else:
            parent[path[-1]] = random_json(rng)
    return obj


@settings(FUZZ, max_examples=3000)
@given(rng=st.randoms(use_true_random=False))
def test_mutated_valid_payloads_bulk(rng: random.Random) -> None:
    obj = random_mutation(rng)
    decoded = attempt(
        encode_json(obj, urlsafe=rng.random() < 0.5, pad=rng.random() < 0.5), accept_v1=rng.random() < 0.8
    )
    if decoded is not None:
        assert decoded.raw == obj


@settings(FUZZ, max_examples=2000)
@given(rng=st.randoms(use_true_random=False))
def test_random_json_bulk(rng: random.Random) -> None:
    value = random_json(rng)
    if rng.random() < 0.5:
        value = {
            "x402Version": rng.choice([1, 2, 3, "2", None]),
            "payload": value,
            "accepted": random_json(rng),
        }
    attempt(encode_json(value, urlsafe=rng.random() < 0.5, pad=rng.random() < 0.5))
