"""Test support for the x402 adapter: constants, a payment factory signing with eth-account, a decode helper."""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

from eth_account import Account

from kube402.api import chains
from kube402.x402 import headers, requirements

# Well-known development keys (anvil accounts 0 and 2); never funded on a real network.
PAYER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
PAYER = Account.from_key(PAYER_KEY).address
OTHER_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
PAY_TO = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
NOW = 1_767_225_600
URL = "http://obol.stack:8080/services/qwen/v1/chat/completions"
BASE_SEPOLIA = chains.lookup("base-sepolia")


@dataclasses.dataclass
class PaymentFactory:
    """Builds signed x402 payloads (as dicts) for a requirement; every field can be overridden."""

    requirement: requirements.Requirement

    def authorization(self, **overrides: Any) -> dict[str, Any]:
        auth = {
            "from": PAYER,
            "to": self.requirement.pay_to,
            "value": str(self.requirement.amount),
            "validAfter": "0",
            "validBefore": str(NOW + 300),
            "nonce": "0x" + secrets.token_hex(32),
        }
        auth.update(overrides)
        return auth

    def sign(
        self,
        auth: dict[str, Any],
        *,
        key: str = PAYER_KEY,
        name: str | None = None,
        version: str | None = None,
        chain_id: int | None = None,
        contract: str | None = None,
    ) -> str:
        req = self.requirement
        signed = Account.sign_typed_data(
            key,
            domain_data={
                "name": req.eip712_name if name is None else name,
                "version": req.eip712_version if version is None else version,
                "chainId": req.chain.chain_id if chain_id is None else chain_id,
                "verifyingContract": req.asset if contract is None else contract,
            },
            message_types={
                "TransferWithAuthorization": [
                    {"name": "from", "type": "address"},
                    {"name": "to", "type": "address"},
                    {"name": "value", "type": "uint256"},
                    {"name": "validAfter", "type": "uint256"},
                    {"name": "validBefore", "type": "uint256"},
                    {"name": "nonce", "type": "bytes32"},
                ]
            },
            message_data={
                "from": auth["from"],
                "to": auth["to"],
                "value": int(auth["value"]),
                "validAfter": int(auth["validAfter"]),
                "validBefore": int(auth["validBefore"]),
                "nonce": bytes.fromhex(auth["nonce"][2:]),
            },
        )
        return "0x" + bytes(signed.signature).hex()

    def v2(
        self, *, auth: dict[str, Any] | None = None, signature: str | None = None, **sign: Any
    ) -> dict[str, Any]:
        auth = self.authorization() if auth is None else auth
        return {
            "x402Version": 2,
            "resource": {"url": URL, "description": "test", "mimeType": "application/json"},
            "accepted": dict(self.requirement.v2),
            "payload": {"signature": signature or self.sign(auth, **sign), "authorization": auth},
        }

    def v1(
        self, *, auth: dict[str, Any] | None = None, signature: str | None = None, **sign: Any
    ) -> dict[str, Any]:
        auth = self.authorization() if auth is None else auth
        return {
            "x402Version": 1,
            "scheme": "exact",
            "network": self.requirement.chain.v1_name,
            "payload": {"signature": signature or self.sign(auth, **sign), "authorization": auth},
        }


def decode(obj: dict[str, Any], *, accept_v1: bool = True) -> headers.DecodedPayment:
    return headers.decode_payment_header(
        headers.encode_b64_json(obj), max_bytes=headers.DEFAULT_MAX_PAYMENT_HEADER_BYTES, accept_v1=accept_v1
    )
