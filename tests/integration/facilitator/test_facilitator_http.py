"""The HTTP surface: client mistakes are answered (never 5xx), an unreachable chain is a fail-closed 503,
ops endpoints and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from x402.http import FacilitatorConfig, HTTPFacilitatorClient

from kube402.chain import devchain, rpc
from kube402.chain.facilitator import main
from kube402.devenv import anvil, process
from kube402.x402.facilitator_client import FacilitatorClient, FacilitatorUnavailable

from . import support
from .conftest import StartFacilitator, funded_relayer

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture
async def http(facilitator: main.Facilitator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=facilitator.url, timeout=30) as client:
        yield client


@pytest_asyncio.fixture
async def body(dev_chain: devchain.DevChainInfo) -> dict[str, Any]:
    """A valid v2 /verify body to spoil."""
    parties = await support.funded_buyer(dev_chain)
    reqs = support.requirements(parties.seller)
    payload = await support.pay(parties.buyer, reqs)
    return {
        "x402Version": 2,
        "paymentPayload": support.raw(payload),
        "paymentRequirements": support.raw(reqs),
    }


def _spoil(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = orjson.loads(orjson.dumps(body))
    *parents, leaf = path.split(".")
    target = out
    for p in parents:
        target = target[p]
    if value is KeyError:
        del target[leaf]
    else:
        target[leaf] = value
    return out  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        pytest.param("paymentRequirements.network", "eip155:1", "invalid_network", id="unserved-chain"),
        pytest.param("paymentRequirements.scheme", "upto", "unsupported_scheme", id="scheme"),
        pytest.param("paymentPayload.accepted.scheme", "upto", "unsupported_scheme", id="payload-scheme"),
        pytest.param("paymentPayload.accepted.network", "eip155:1", "network_mismatch", id="payload-network"),
        pytest.param("paymentPayload.x402Version", 3, "invalid_x402_version", id="version"),
        pytest.param("x402Version", 1, "invalid_x402_version", id="version-disagrees"),
        pytest.param("paymentPayload.payload.signature", KeyError, "invalid_payload", id="no-signature"),
        pytest.param(
            "paymentPayload.payload.authorization.nonce", "0x12", "invalid_payload", id="short-nonce"
        ),
        pytest.param(
            "paymentPayload.payload.authorization.value", 1000, "invalid_payload", id="numeric-value"
        ),
        pytest.param("paymentPayload.accepted", KeyError, "invalid_payload", id="no-accepted"),
        pytest.param("paymentRequirements.amount", KeyError, "invalid_payment_requirements", id="no-amount"),
        pytest.param("paymentPayload", [], "invalid_payload", id="payload-array"),
    ],
)
@pytest.mark.parametrize("endpoint", ["verify", "settle"])
async def test_a_malformed_request_is_answered_with_a_reason(
    http: httpx.AsyncClient,
    body: dict[str, Any],
    node: rpc.Rpc,
    endpoint: str,
    path: str,
    value: Any,
    reason: str,
) -> None:
    block = await node.block_number()
    response = await http.post(f"/{endpoint}", json=_spoil(body, path, value))
    assert response.status_code == 200
    answer = response.json()
    if endpoint == "verify":
        assert (answer["isValid"], answer["invalidReason"]) == (False, reason)
    else:
        assert (answer["success"], answer["errorReason"], answer["transaction"]) == (False, reason, "")
    assert await node.block_number() == block


async def test_a_v1_body_for_a_chain_without_an_rpc_url_is_an_invalid_network(
    http: httpx.AsyncClient, dev_chain: devchain.DevChainInfo
) -> None:
    parties = await support.funded_buyer(dev_chain)
    reqs = support.requirements(parties.seller, version=1)
    payload = support.raw(await support.pay(parties.buyer, reqs))
    answer = (
        await http.post(
            "/verify",
            json={
                "x402Version": 1,
                "paymentPayload": {**payload, "network": "base"},
                "paymentRequirements": {**support.raw(reqs), "network": "base"},
            },
        )
    ).json()
    assert (answer["isValid"], answer["invalidReason"]) == (False, "invalid_network")


async def test_a_v1_payload_for_another_network_than_the_requirements_is_a_mismatch(
    http: httpx.AsyncClient, dev_chain: devchain.DevChainInfo
) -> None:
    parties = await support.funded_buyer(dev_chain)
    reqs = support.requirements(parties.seller, version=1)
    payload = support.raw(await support.pay(parties.buyer, reqs))
    for endpoint, key in (("verify", "invalidReason"), ("settle", "errorReason")):
        answer = (
            await http.post(
                f"/{endpoint}",
                json={
                    "x402Version": 1,
                    "paymentPayload": {**payload, "network": "base"},
                    "paymentRequirements": support.raw(reqs),
                },
            )
        ).json()
        assert answer[key] == "network_mismatch"


@pytest.mark.parametrize("content", [b"not json", b"", b'{"x402Version": 2,'])
async def test_a_body_that_is_not_json_is_a_400(http: httpx.AsyncClient, content: bytes) -> None:
    for endpoint in ("verify", "settle"):
        response = await http.post(f"/{endpoint}", content=content)
        assert response.status_code == 400
        assert response.json().get("invalidReason", response.json().get("errorReason")) == "invalid_payload"
    response = await http.post("/verify", content=b"[1, 2]")
    assert (response.status_code, response.json()["invalidReason"]) == (200, "invalid_payload")


async def test_wrong_methods_paths_and_sizes(http: httpx.AsyncClient) -> None:
    assert (await http.get("/verify")).status_code == 405
    assert (await http.post("/supported")).status_code == 405
    assert (await http.get("/nope")).status_code == 404
    assert (await http.post("/settle", content=b"{" + b" " * 70_000 + b"}")).status_code == 413
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    assert (await http.get("/readyz")).status_code == 200


async def test_metrics_count_answers_by_result(http: httpx.AsyncClient, body: dict[str, Any]) -> None:
    assert (await http.post("/verify", json=body)).json()["isValid"] is True
    assert (await http.post("/settle", json=body)).json()["success"] is True
    assert (await http.post("/settle", json=body)).json()["success"] is False
    text = (await http.get("/metrics")).text
    for needle in (
        'kube402_facilitator_verify_total{network="base-sepolia",reason="",result="valid"}',
        'kube402_facilitator_settle_total{network="base-sepolia",reason="",result="success"}',
        (
            'kube402_facilitator_settle_total{network="base-sepolia",reason="invalid_exact_evm_nonce_already_used",'
            'result="failed"}'
        ),
        'kube402_facilitator_request_duration_seconds_count{endpoint="settle"}',
        'kube402_facilitator_relayer_nonce{network="base-sepolia"}',
        "kube402_facilitator_pending_settlements 0.0",
    ):
        assert needle in text, needle


async def test_an_unreachable_chain_is_a_fail_closed_503(
    start_facilitator: StartFacilitator, body: dict[str, Any]
) -> None:
    dead = f"http://127.0.0.1:{process.free_port()}"
    fac = await start_facilitator(dead, rpc_timeout=1.0)
    async with httpx.AsyncClient(base_url=fac.url) as http:
        for endpoint in ("verify", "settle"):
            response = await http.post(f"/{endpoint}", json=body)
            assert response.status_code == 503 and response.headers["retry-after"]
            answer = response.json()
            assert answer.get("invalidReason", answer.get("errorReason")) == "facilitator_unavailable"
            assert dead not in response.text
        assert (await http.get("/supported")).status_code == 200
        assert (await http.get("/readyz")).status_code == 503
    async with FacilitatorClient(fac.url) as client:
        with pytest.raises(FacilitatorUnavailable):
            await client.verify(body["paymentPayload"], body["paymentRequirements"], version=2)


async def test_a_chain_that_goes_down_mid_service_is_a_503_not_an_invalid_payment(
    start_facilitator: StartFacilitator, tmp_path: Path
) -> None:
    chain = anvil.Anvil(log=tmp_path / "anvil.log")
    proc = chain.start()
    try:
        info = await devchain.setup_base_sepolia(proc.rpc_url)
        fac = await start_facilitator(
            proc.rpc_url, account=await funded_relayer(proc.rpc_url), rpc_timeout=2.0
        )
        parties = await support.funded_buyer(info)
        reqs = support.requirements(parties.seller)
        payload = await support.pay(parties.buyer, reqs)
        sdk = HTTPFacilitatorClient(FacilitatorConfig(url=fac.url, timeout=30))
        assert (await sdk.verify(payload, reqs)).is_valid
        chain.stop()
        async with FacilitatorClient(fac.url) as client:
            for call in (client.verify, client.settle):
                with pytest.raises(FacilitatorUnavailable) as caught:
                    await call(support.raw(payload), support.raw(reqs), version=2)
                assert caught.value.status == 503
        with pytest.raises(ValueError, match="503"):
            await sdk.settle(payload, reqs)
        await sdk.aclose()
    finally:
        chain.stop()
