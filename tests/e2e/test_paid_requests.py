"""A seller sells, a buyer pays with the x402 package's client, the money moves on chain — in both gate modes.

Every request goes through real Traefik (the Gateway API provider routing the controller's HTTPRoutes, the
CRD provider running its ForwardAuth Middlewares)."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
from typing import Any

import httpx
import pytest
from eth_account import Account
from x402 import x402Client
from x402.http.clients.httpx import x402HttpxClient
from x402.http.x402_http_client import x402HTTPClient
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import register_exact_evm_client

from kube402.api import v1alpha1
from kube402.chain import devchain
from kube402.chain.facilitator import config as fac_config
from kube402.chain.facilitator import main as fac_main
from kube402.devenv.testing import condition, eventually
from kube402.devenv.upstream import TestUpstream
from kube402.kube import resources
from kube402.kube.client import Kube
from kube402.localstack import LocalStack

pytestmark = pytest.mark.e2e
CHAT = {"model": "qwen3:0.6b", "messages": [{"role": "user", "content": "hello"}]}


def x402_client(stack: LocalStack) -> x402Client:
    return register_exact_evm_client(x402Client(), EthAccountSigner(stack.buyer))


async def sell(stack: LocalStack, ns: str, name: str, upstream: TestUpstream, **kw: Any) -> None:
    """What a seller does: a Service for the upstream and a ServiceOffer in the seed shape.

    The Service is selector-less with an EndpointSlice naming the upstream's address (real Traefik refuses
    ExternalName backends)."""
    kube = stack.kube
    assert kube is not None
    await stack.expose(ns, f"{name}-llm", upstream.port)
    await kube.create(
        resources.SERVICE_OFFER,
        v1alpha1.offer_manifest(
            name,
            namespace=ns,
            upstream=f"{name}-llm",
            port=upstream.port,
            pay_to=stack.seller.address,
            price={"perRequest": "0.001"},
            network="base-sepolia",
            **kw,
        ),
    )
    await eventually(
        lambda: kube.get(resources.SERVICE_OFFER, name, namespace=ns),
        until=lambda o: condition(o, "Ready") == ("True", "Reconciled"),
        timeout=30,
        what=f"{name} Ready",
    )


async def chain_quiet(stack: LocalStack) -> None:
    """Wait until the relayer has no transaction in flight (pending nonce == mined nonce).

    Every request of the test has been answered by then, so a transfer the gate decided on is either mined
    or was never sent: the balances read afterwards are final, with no guessed sleep before a negative check.
    """
    assert stack.node is not None
    node, relayer = stack.node, stack.relayer.address

    def in_flight() -> int:
        eth = node.w3.eth
        return int(eth.get_transaction_count(relayer, "pending")) - int(eth.get_transaction_count(relayer))

    await eventually(lambda: node.run(in_flight), until=lambda n: n == 0, what="the relayer idle")


async def routed(stack: LocalStack, url: str, want: int = 402) -> httpx.Response:
    """Wait until the gateway routes ``url`` (Traefik, too, picks routes up after a moment)."""
    async with httpx.AsyncClient() as http:
        return await eventually(
            lambda: http.post(url, json=CHAT),
            until=lambda r: r.status_code == want,
            timeout=20,
            interval=0.1,
            what=f"{url} → {want}",
        )


async def gas_and_balances(stack: LocalStack) -> dict[str, int]:
    assert stack.node is not None
    seller, buyer = await stack.balances(stack.seller.address, stack.buyer.address)
    return {
        "seller": seller,
        "buyer": buyer,
        "relayer_eth": await stack.node.eth_balance(stack.relayer.address),
        "buyer_eth": await stack.node.eth_balance(stack.buyer.address),
    }


@pytest.fixture
def ns(request: pytest.FixtureRequest) -> str:
    name: str = request.node.name
    return "e2e-" + name.replace("_", "-")[5:40].strip("-").lower()


async def test_forward_auth_v2_payment_moves_exactly_one_thousand(
    stack: LocalStack, upstream: TestUpstream, ns: str
) -> None:
    name = "fa-v2"
    await sell(stack, ns, name, upstream)
    url = f"{stack.gateway_url}/services/{name}/v1/chat/completions"
    unpaid = await routed(stack, url)
    v2 = json.loads(base64.b64decode(unpaid.headers["payment-required"]))
    assert v2["accepts"][0]["network"] == "eip155:84532" and v2["accepts"][0]["amount"] == "1000"
    assert unpaid.json()["x402Version"] == 1 and unpaid.json()["accepts"][0]["payTo"] == stack.seller.address
    assert upstream.paid_requests() == [], "the unpaid request never reached the upstream"

    before = await gas_and_balances(stack)
    async with x402HttpxClient(x402_client(stack)) as buyer:
        # Forged payment facts, also spelled with underscores (CGI/WSGI upstreams read X_Payment_Status
        # as X-Payment-Status): Traefik replaces the first, the entrypoint deletes the aliases.
        forged = {"X-Payment-Status": "forged", "X_Payment_Status": "forged", "X_Payment_Tx": "0xforged"}
        resp = await buyer.post(url, json=CHAT, headers=forged)
    assert resp.status_code == 200, resp.text
    assert "payment-response" not in resp.headers, "Traefik passes no auth-response header to the buyer"
    assert resp.json()["choices"][0]["message"]["content"] == "Hello from the upstream"
    after = await gas_and_balances(stack)
    assert after["seller"] - before["seller"] == 1000
    assert before["buyer"] - after["buyer"] == 1000
    assert after["relayer_eth"] < before["relayer_eth"], "the facilitator paid the gas"
    assert after["buyer_eth"] == before["buyer_eth"], "the buyer paid no gas"
    seen = upstream.paid_requests()[-1]
    assert seen["path"] == "/v1/chat/completions", "URLRewrite stripped the offer prefix"
    assert seen["headers"]["x-payment-status"] == "settled"
    assert "x_payment_status" not in seen["headers"] and "x_payment_tx" not in seen["headers"]
    tx = seen["headers"]["x-payment-tx"]
    assert stack.node is not None
    receipt = await stack.node.wait_for_receipt(tx, timeout=5)
    assert receipt["status"] == 1
    assert "payment-signature" in seen["headers"], (
        "Traefik forwards client headers; the upstream may see them"
    )


async def test_forward_auth_v1_x_payment_client(stack: LocalStack, upstream: TestUpstream, ns: str) -> None:
    name = "fa-v1"
    await sell(stack, ns, name, upstream)
    url = f"{stack.gateway_url}/services/{name}/v1/chat/completions"
    unpaid = await routed(stack, url)
    http_client = x402HTTPClient(x402_client(stack))
    required = http_client.get_payment_required_response(lambda _n: None, unpaid.json())  # v1 body only
    assert required.x402_version == 1
    payload = await x402_client(stack).create_payment_payload(required)
    hdrs = http_client.encode_payment_signature_header(payload)
    assert list(hdrs) == ["X-PAYMENT"]
    before = await stack.balances(stack.seller.address)
    async with httpx.AsyncClient() as http:
        resp = await http.post(url, json=CHAT, headers=hdrs)
        assert resp.status_code == 200, resp.text
        again = await http.post(url, json=CHAT, headers=hdrs)
    assert again.status_code == 402 and again.json()["error"] == "nonce_already_used"
    await chain_quiet(stack)
    assert (await stack.balances(stack.seller.address))[0] - before[0] == 1000, "replay moved nothing"


async def test_proxy_mode_settles_after_upstream_2xx_and_returns_receipt(
    stack: LocalStack, upstream: TestUpstream, ns: str
) -> None:
    name = "px-ok"
    await sell(stack, ns, name, upstream, gate_mode="proxy")
    url = f"{stack.gateway_url}/services/{name}/v1/chat/completions"
    await routed(stack, url)
    before = await stack.balances(stack.seller.address, stack.buyer.address)
    async with x402HttpxClient(x402_client(stack)) as buyer:
        resp = await buyer.post(url, json=CHAT)
    assert resp.status_code == 200, resp.text
    receipt = json.loads(base64.b64decode(resp.headers["payment-response"]))
    assert receipt["success"] is True and receipt["network"] == "eip155:84532"
    assert resp.headers["cache-control"] == "private"
    after = await stack.balances(stack.seller.address, stack.buyer.address)
    assert (after[0] - before[0], before[1] - after[1]) == (1000, 1000)
    assert upstream.paid_requests()[-1]["path"] == "/v1/chat/completions"
    assert "payment-signature" not in upstream.paid_requests()[-1]["headers"]


async def test_proxy_mode_upstream_500_means_no_transfer(
    stack: LocalStack, upstream: TestUpstream, ns: str
) -> None:
    name = "px-500"
    await sell(stack, ns, name, upstream, gate_mode="proxy")
    url = f"{stack.gateway_url}/services/{name}/v1/chat/completions"
    await routed(stack, url)
    upstream.answer_status = 500
    before = await stack.balances(stack.seller.address, stack.buyer.address)
    async with x402HttpxClient(x402_client(stack)) as buyer:
        resp = await buyer.post(url, json=CHAT)
    assert resp.status_code == 500
    assert "payment-response" not in resp.headers
    await chain_quiet(stack)
    assert await stack.balances(stack.seller.address, stack.buyer.address) == before


async def test_streamed_answer_streams_in_proxy_mode(
    stack: LocalStack, upstream: TestUpstream, ns: str
) -> None:
    name = "px-sse"
    await sell(stack, ns, name, upstream, gate_mode="proxy")
    url = f"{stack.gateway_url}/services/{name}/v1/chat/completions"
    await routed(stack, url)
    upstream.stream_delay = 0.2
    async with (
        x402HttpxClient(x402_client(stack), timeout=30) as buyer,
        buyer.stream("POST", url, json={**CHAT, "stream": True}) as resp,
    ):
        assert resp.status_code == 200
        assert "payment-response" in resp.headers, "settled before the body was relayed"
        chunks = [c async for c in resp.aiter_text() if c.strip()]
    assert len(chunks) >= 3, "the answer arrived in several pieces"
    assert chunks[-1].strip().endswith("[DONE]")


async def test_facilitator_down_fails_closed_without_transfer(
    stack: LocalStack, upstream: TestUpstream, ns: str
) -> None:
    name = "fac-down"
    await sell(stack, ns, name, upstream)
    url = f"{stack.gateway_url}/services/{name}/v1/chat/completions"
    await routed(stack, url)
    assert stack.chain is not None and stack.facilitator is not None
    spare = fac_main.Facilitator(
        fac_config.Settings(
            networks=(fac_config.parse_network(f"base-sepolia={stack.chain.rpc_url}"),), listen="127.0.0.1:0"
        ),
        account=devchain.dev_account(6),
    )
    spare_url = await spare.start()
    try:
        await stack.set_facilitator(spare_url)
        assert stack.verifier is not None
        await eventually(
            lambda: asyncio.sleep(0, stack.verifier.gate.config.facilitator_url),  # type: ignore[union-attr]
            until=lambda u: u == spare_url,
            what="verifier uses the spare facilitator",
        )
        await spare.stop()
        before = await stack.balances(stack.seller.address, stack.buyer.address)
        served_before = len(upstream.paid_requests())
        async with x402HttpxClient(x402_client(stack)) as buyer:
            resp = await buyer.post(url, json=CHAT)
        assert resp.status_code == 503
        assert resp.headers["retry-after"]
        assert resp.json()["error"] == "facilitator_unavailable"
        assert len(upstream.paid_requests()) == served_before, "no free request reached the upstream"
        await chain_quiet(stack)
        assert await stack.balances(stack.seller.address, stack.buyer.address) == before
    finally:
        assert stack.facilitator is not None and stack.verifier is not None
        facilitator_url, gate = stack.facilitator.url, stack.verifier.gate
        await stack.set_facilitator(facilitator_url)
        await eventually(
            lambda: asyncio.sleep(0, gate.config.facilitator_url),
            until=lambda u: u == facilitator_url,
            what="restored",
        )


async def test_the_facilitator_takes_only_the_verifiers_bearer_token(
    stack: LocalStack, upstream: TestUpstream, ns: str
) -> None:
    """As a seller runs it: ``kube402 facilitator --auth-token-file`` and the verifier's
    ``facilitatorTokenFile``; anyone else is refused before any chain work, the gate still sells."""
    assert stack.facilitator is not None and stack.verifier is not None
    token_file = stack.facilitator_token_file
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert stack.verifier.gate.config.facilitator_token_file == str(token_file)
    name = "fac-token"
    await sell(stack, ns, name, upstream, gate_mode="proxy")
    url = f"{stack.gateway_url}/services/{name}/v1/chat/completions"
    unpaid = await routed(stack, url)
    http_client = x402HTTPClient(x402_client(stack))
    required = http_client.get_payment_required_response(unpaid.headers.get, unpaid.json())
    payload = await x402_client(stack).create_payment_payload(required)
    body = {
        "x402Version": 2,
        "paymentPayload": payload.model_dump(by_alias=True, exclude_none=True),
        "paymentRequirements": required.accepts[0].model_dump(by_alias=True, exclude_none=True),
    }
    before = await stack.balances(stack.seller.address)
    async with httpx.AsyncClient() as http:
        for path in ("/verify", "/settle"):
            resp = await http.post(stack.facilitator.url + path, json=body)
            assert resp.status_code == 401, (path, resp.status_code, resp.text)
        assert (await http.get(stack.facilitator.url + "/supported")).status_code == 200
        resp = await http.post(url, json=CHAT, headers=http_client.encode_payment_signature_header(payload))
    assert resp.status_code == 200, resp.text
    assert "payment-response" in resp.headers
    await chain_quiet(stack)
    assert (await stack.balances(stack.seller.address))[0] - before[0] == 1000


async def test_deleted_offer_has_no_route(stack: LocalStack, upstream: TestUpstream, ns: str) -> None:
    name = "gone"
    await sell(stack, ns, name, upstream)
    url = f"{stack.gateway_url}/services/{name}/v1/chat/completions"
    await routed(stack, url)
    kube: Kube = stack.kube  # type: ignore[assignment]
    await kube.delete(resources.SERVICE_OFFER, name, namespace=ns)
    await eventually(
        lambda: kube.get(resources.SERVICE_OFFER, name, namespace=ns),
        until=lambda o: o is None,
        what="offer deleted",
    )
    assert await kube.get(resources.HTTPROUTE, f"so-{name}", namespace=ns) is None
    resp = await routed(stack, url, want=404)
    assert resp.status_code == 404
    assert stack.verifier is not None
    await eventually(
        lambda: asyncio.sleep(0, stack.verifier.gate.table.lookup(f"/services/{name}/x").kind.value),  # type: ignore[union-attr]
        until=lambda k: k == "none",
        timeout=10,
        what="verifier forgot the route after its grace",
    )


async def test_fifty_distinct_payments_in_parallel_make_fifty_transfers(
    stack: LocalStack, upstream: TestUpstream, ns: str
) -> None:
    name = "par"
    await sell(stack, ns, name, upstream)
    url = f"{stack.gateway_url}/services/{name}/v1/chat/completions"
    await routed(stack, url)
    assert stack.node is not None
    node = stack.node
    relayer_nonce = await node.run(lambda: node.w3.eth.get_transaction_count(stack.relayer.address))
    before = await stack.balances(stack.seller.address)
    async with x402HttpxClient(x402_client(stack), timeout=60) as buyer:
        results = await asyncio.gather(*(buyer.post(url, json=CHAT) for _ in range(50)))
    assert [r.status_code for r in results] == [200] * 50
    after = await stack.balances(stack.seller.address)
    assert after[0] - before[0] == 50 * 1000
    txs = {r["headers"]["x-payment-tx"] for r in upstream.paid_requests()}
    assert len(txs) == 50, "fifty distinct transactions"

    def tx_nonce(tx: str) -> int:
        return int(node.w3.eth.get_transaction(tx)["nonce"])  # type: ignore[arg-type]

    nonces = sorted([await node.run(functools.partial(tx_nonce, t)) for t in txs])
    assert nonces == list(range(relayer_nonce, relayer_nonce + 50)), "relayer nonces never collided"


async def test_twenty_copies_of_one_payment_make_one_transfer(
    stack: LocalStack, upstream: TestUpstream, ns: str
) -> None:
    name = "dup"
    await sell(stack, ns, name, upstream)
    url = f"{stack.gateway_url}/services/{name}/v1/chat/completions"
    unpaid = await routed(stack, url)
    http_client = x402HTTPClient(x402_client(stack))
    required = http_client.get_payment_required_response(unpaid.headers.get, unpaid.json())
    payload = await x402_client(stack).create_payment_payload(required)
    hdrs = http_client.encode_payment_signature_header(payload)
    before = await stack.balances(stack.seller.address)
    async with httpx.AsyncClient(timeout=60) as http:
        results = await asyncio.gather(*(http.post(url, json=CHAT, headers=hdrs) for _ in range(20)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) == 1, codes
    assert set(codes) <= {200, 402, 409}, codes
    await chain_quiet(stack)
    assert (await stack.balances(stack.seller.address))[0] - before[0] == 1000
    assert len(upstream.paid_requests()) == 1, "exactly one request was served"


async def test_bad_payments_are_refused_with_the_right_reason(
    stack: LocalStack, upstream: TestUpstream, ns: str
) -> None:
    """Each defect in a payment is refused (402, nothing served, nothing moved) with its reason."""
    name = "bad"
    await sell(stack, ns, name, upstream)
    url = f"{stack.gateway_url}/services/{name}/v1/chat/completions"
    unpaid = await routed(stack, url)
    http_client = x402HTTPClient(x402_client(stack))
    required = http_client.get_payment_required_response(unpaid.headers.get, unpaid.json())
    good = required.accepts[0]

    async def pay_with(
        requirement: Any, *, client: x402Client | None = None, tamper: Any = None
    ) -> httpx.Response:
        req = required.model_copy(update={"accepts": [requirement]})
        payload = await (client or x402_client(stack)).create_payment_payload(req)
        raw = payload.model_dump(by_alias=True, exclude_none=True)
        if tamper:
            tamper(raw)
        value = base64.b64encode(json.dumps(raw).encode()).decode()
        async with httpx.AsyncClient() as http:
            return await http.post(url, json=CHAT, headers={"PAYMENT-SIGNATURE": value})

    def expire(raw: dict[str, Any]) -> None:
        raw["payload"]["authorization"]["validBefore"] = "1"

    def flip_signature(raw: dict[str, Any]) -> None:
        sig = raw["payload"]["signature"]
        raw["payload"]["signature"] = sig[:10] + ("0" if sig[10] != "0" else "1") + sig[11:]

    unfunded = register_exact_evm_client(x402Client(), EthAccountSigner(Account.create()))
    # The client's default spend controls refuse our asset on another chain; the point here is the verifier.
    no_limits = x402_client(stack)
    no_limits.set_spend_controls(False)
    cases = {
        "wrong amount": (await pay_with(good.model_copy(update={"amount": "999"})), "requirements_mismatch"),
        "wrong payTo": (
            await pay_with(good.model_copy(update={"pay_to": Account.create().address})),
            "requirements_mismatch",
        ),
        "wrong network": (
            await pay_with(good.model_copy(update={"network": "eip155:8453"}), client=no_limits),
            "requirements_mismatch",
        ),
        "expired": (
            await pay_with(good, tamper=expire),
            "invalid_exact_evm_payload_authorization_valid_before",
        ),
        "bad signature": (await pay_with(good, tamper=flip_signature), "invalid_exact_evm_payload_signature"),
        # Passes every local check; the real facilitator refuses it on chain state.
        "unfunded payer": (await pay_with(good, client=unfunded), "invalid_exact_evm_insufficient_balance"),
    }
    before = await stack.balances(stack.seller.address, stack.buyer.address)
    for label, (resp, reason) in cases.items():
        assert resp.status_code == 402, (label, resp.status_code, resp.text)
        assert resp.json()["error"] == reason, (label, resp.json())
        assert json.loads(base64.b64decode(resp.headers["payment-required"]))["error"] == reason
    assert upstream.paid_requests() == [], "no refused payment reached the upstream"
    assert await stack.balances(stack.seller.address, stack.buyer.address) == before
