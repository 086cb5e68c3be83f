"""Shared builders for the buyer's unit tests: seller terms, 402 answers and signed vouchers."""

from __future__ import annotations

import base64
import json
from typing import Any

from kube402.buyer.vouchers import Terms, Voucher

USDC = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
SELLER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BUYER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
NOW = 1_800_000_000
TERMS = Terms(network="eip155:84532", pay_to=SELLER, asset=USDC, price=1000)


def v2_requirement(**over: Any) -> dict[str, Any]:
    req = {
        "scheme": "exact",
        "network": "eip155:84532",
        "amount": "1000",
        "asset": USDC,
        "payTo": SELLER,
        "maxTimeoutSeconds": 300,
        "extra": {"name": "USDC", "version": "2"},
    }
    req.update(over)
    return req


def v1_requirement(**over: Any) -> dict[str, Any]:
    req = {
        "scheme": "exact",
        "network": "base-sepolia",
        "maxAmountRequired": "1000",
        "asset": USDC,
        "payTo": SELLER,
        "resource": "http://seller/services/x",
        "description": "",
        "mimeType": "application/json",
        "maxTimeoutSeconds": 300,
        "extra": {"name": "USDC", "version": "2"},
    }
    req.update(over)
    return req


def v2_header(
    *accepts: dict[str, Any], resource: str = "http://seller/services/x/v1/chat/completions"
) -> str:
    obj = {"x402Version": 2, "resource": {"url": resource}, "accepts": list(accepts) or [v2_requirement()]}
    return base64.b64encode(json.dumps(obj).encode()).decode()


def v1_body(*accepts: dict[str, Any], error: str = "payment_required") -> bytes:
    return json.dumps(
        {"x402Version": 1, "error": error, "accepts": list(accepts) or [v1_requirement()]}
    ).encode()


def voucher(
    i: int = 1, *, valid_before: int = NOW + 7 * 86400, value: int = 1000, to: str = SELLER
) -> Voucher:
    return Voucher(
        signature="0x" + "11" * 65,
        from_=BUYER,
        to=to,
        value=value,
        valid_after=0,
        valid_before=valid_before,
        nonce="0x" + f"{i:064x}",
    )
