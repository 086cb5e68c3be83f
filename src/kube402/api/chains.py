"""The pinned network table: which chains kube402 accepts payments on, and how USDC looks on each.

Pure data. A wrong EIP-712 ``name`` makes every signature on that chain invalid, so the table is
pinned in code (X402.md section 7) and looked up by v1 name, alias or CAIP-2 id.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Final

__all__ = [
    "CHAINS",
    "DEFAULT_CHAIN",
    "Chain",
    "UnknownNetworkError",
    "identity_registry",
    "lookup",
]


class UnknownNetworkError(ValueError):
    """The network is not a chain kube402 accepts payments on."""


@dataclasses.dataclass(frozen=True, slots=True)
class Chain:
    name: str
    """Canonical kube402 name (the x402 v1 network name where one exists)."""
    chain_id: int
    usdc: str
    """USDC contract address (checksummed)."""
    eip712_name: str
    """USDC's EIP-712 domain ``name``; differs between chains."""
    eip712_version: str = "2"
    decimals: int = 6
    v1_name: str | None = None
    """x402 v1 network name, or None when v1 has no name for this chain."""
    aliases: tuple[str, ...] = ()
    testnet: bool = False

    @property
    def caip2(self) -> str:
        return f"eip155:{self.chain_id}"

    @property
    def extra(self) -> dict[str, str]:
        """The ``extra`` object of an x402 exact/EIP-3009 requirement."""
        return {"name": self.eip712_name, "version": self.eip712_version}


CHAINS: Final[tuple[Chain, ...]] = (
    Chain(
        "base",
        8453,
        "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
        "USD Coin",
        v1_name="base",
        aliases=("base-mainnet",),
    ),
    Chain(
        "base-sepolia",
        84532,
        "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        "USDC",
        v1_name="base-sepolia",
        testnet=True,
    ),
    Chain(
        "ethereum",
        1,
        "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
        "USD Coin",
        v1_name="ethereum",
        aliases=("mainnet",),
    ),
    Chain(
        "polygon",
        137,
        "0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359",
        "USD Coin",
        v1_name="polygon",
        aliases=("polygon-mainnet",),
    ),
    Chain(
        "polygon-amoy",
        80002,
        "0x41E94Eb019C0762f9Bfcf9Fb1E58725BfB0e7582",
        "USDC",
        v1_name="polygon-amoy",
        testnet=True,
    ),
    Chain(
        "avalanche",
        43114,
        "0xB97EF9Ef8734C71904D8002F8b6Bc66Dd9c48a6E",
        "USD Coin",
        v1_name="avalanche",
        aliases=("avalanche-mainnet",),
    ),
    Chain(
        "avalanche-fuji",
        43113,
        "0x5425890298aed601595a70AB815c96711a31Bc65",
        "USD Coin",
        v1_name="avalanche-fuji",
        testnet=True,
    ),
    Chain("arbitrum-one", 42161, "0xaf88d065e77c8cC2239327C5EDb3A432268e5831", "USD Coin"),
    Chain("arbitrum-sepolia", 421614, "0x75faf114eafb1BDbe2F0316DF893fd58CE46AA4d", "USD Coin", testnet=True),
)

DEFAULT_CHAIN: Final = "base-sepolia"

_BY_KEY: Final[dict[str, Chain]] = {}
for _c in CHAINS:
    for _k in (_c.name, _c.caip2, *_c.aliases):
        _BY_KEY[_k] = _c
_CAIP2 = re.compile(r"^eip155:([0-9]+)$")

# ERC-8004 identity registries (ERC8004.md section 3): one address on every mainnet, another on every testnet.
IDENTITY_MAINNET: Final = "0x8004A169FB4a3325136EB29fA0ceB6D2e539a432"
IDENTITY_TESTNET: Final = "0x8004A818BFB912233c491871b3d84c89A494BD9e"
_IDENTITY: Final[dict[int, str]] = {
    1: IDENTITY_MAINNET,
    8453: IDENTITY_MAINNET,
    11155111: IDENTITY_TESTNET,
    84532: IDENTITY_TESTNET,
}


def lookup(network: str) -> Chain:
    """Resolve a v1 name, alias or CAIP-2 id to its chain; raise UnknownNetworkError otherwise."""
    key = network.strip().lower()
    chain = _BY_KEY.get(key)
    if chain is None:
        raise UnknownNetworkError(f"Unsupported payment network {network}")
    return chain


def identity_registry(chain_id: int) -> str:
    """The official ERC-8004 identity registry address for a chain id."""
    try:
        return _IDENTITY[chain_id]
    except KeyError:
        raise UnknownNetworkError(f"no official ERC-8004 identity registry for chain id {chain_id}") from None
