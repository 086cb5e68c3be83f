"""The pinned network table (X402.md section 7) and the ERC-8004 identity registries (ERC8004.md section 3)."""

from __future__ import annotations

import pytest

from kube402.api import chains

# X402.md section 7, copied by hand: (name, aliases, CAIP-2, USDC contract, EIP-712 name, has a v1 name).
X402_TABLE = [
    (
        "base",
        ("base-mainnet",),
        "eip155:8453",
        "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
        "USD Coin",
        True,
    ),
    ("base-sepolia", (), "eip155:84532", "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "USDC", True),
    ("ethereum", ("mainnet",), "eip155:1", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", "USD Coin", True),
    (
        "polygon",
        ("polygon-mainnet",),
        "eip155:137",
        "0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359",
        "USD Coin",
        True,
    ),
    ("polygon-amoy", (), "eip155:80002", "0x41E94Eb019C0762f9Bfcf9Fb1E58725BfB0e7582", "USDC", True),
    (
        "avalanche",
        ("avalanche-mainnet",),
        "eip155:43114",
        "0xB97EF9Ef8734C71904D8002F8b6Bc66Dd9c48a6E",
        "USD Coin",
        True,
    ),
    ("avalanche-fuji", (), "eip155:43113", "0x5425890298aed601595a70AB815c96711a31Bc65", "USD Coin", True),
    ("arbitrum-one", (), "eip155:42161", "0xaf88d065e77c8cC2239327C5EDb3A432268e5831", "USD Coin", False),
    (
        "arbitrum-sepolia",
        (),
        "eip155:421614",
        "0x75faf114eafb1BDbe2F0316DF893fd58CE46AA4d",
        "USD Coin",
        False,
    ),
]
TESTNETS = {"base-sepolia", "polygon-amoy", "avalanche-fuji", "arbitrum-sepolia"}

IDENTITY_MAINNET = "0x8004A169FB4a3325136EB29fA0ceB6D2e539a432"
IDENTITY_TESTNET = "0x8004A818BFB912233c491871b3d84c89A494BD9e"


class TestTheTableIsPinnedToX402Md:
    def test_the_table_holds_exactly_the_documented_chains(self) -> None:
        assert [c.name for c in chains.CHAINS] == [row[0] for row in X402_TABLE]

    @pytest.mark.parametrize(
        ("name", "aliases", "caip2", "usdc", "eip712", "has_v1"),
        X402_TABLE,
        ids=[row[0] for row in X402_TABLE],
    )
    def test_each_entry_matches_the_document(
        self, name: str, aliases: tuple[str, ...], caip2: str, usdc: str, eip712: str, has_v1: bool
    ) -> None:
        chain = chains.lookup(name)
        assert chain.name == name
        assert chain.aliases == aliases
        assert chain.caip2 == caip2
        assert chain.usdc == usdc
        assert chain.eip712_name == eip712
        assert chain.eip712_version == "2"
        assert chain.decimals == 6
        assert chain.v1_name == (name if has_v1 else None)
        assert chain.testnet == (name in TESTNETS)
        assert chain.extra == {"name": eip712, "version": "2"}

    def test_the_default_chain_is_base_sepolia(self) -> None:
        assert chains.DEFAULT_CHAIN == "base-sepolia"
        assert chains.lookup(chains.DEFAULT_CHAIN).caip2 == "eip155:84532"


@pytest.mark.parametrize("chain", chains.CHAINS, ids=lambda c: c.name)
class TestEveryEntryIsConsistent:
    def test_caip2_is_derived_from_the_chain_id(self, chain: chains.Chain) -> None:
        assert chain.caip2 == f"eip155:{chain.chain_id}"

    def test_it_is_found_by_name_v1_name_aliases_and_caip2(self, chain: chains.Chain) -> None:
        keys = [chain.name, chain.caip2, *chain.aliases]
        if chain.v1_name is not None:
            keys.append(chain.v1_name)
        for key in keys:
            assert chains.lookup(key) is chain, key

    def test_the_usdc_address_is_a_20_byte_hex_address(self, chain: chains.Chain) -> None:
        assert chain.usdc.startswith("0x") and len(chain.usdc) == 42
        int(chain.usdc, 16)


class TestNoKeyIsAmbiguous:
    def test_chain_ids_are_unique(self) -> None:
        ids = [c.chain_id for c in chains.CHAINS]
        assert len(ids) == len(set(ids))

    def test_names_and_aliases_are_unique_across_chains(self) -> None:
        keys = [k for c in chains.CHAINS for k in (c.name, *c.aliases)]
        assert len(keys) == len(set(keys))

    def test_names_and_aliases_satisfy_the_crd_network_pattern(self) -> None:
        import re

        for c in chains.CHAINS:
            for key in (c.name, *c.aliases, c.caip2):
                assert re.fullmatch(r"[a-z0-9][a-z0-9-]*|eip155:[0-9]+", key), key


class TestUnknownNetworks:
    @pytest.mark.parametrize("network", ["solana", "eip155:999999", "eip155:", "base_sepolia", "", "sepolia"])
    def test_an_unknown_network_raises_with_the_spec_message(self, network: str) -> None:
        with pytest.raises(chains.UnknownNetworkError) as info:
            chains.lookup(network)
        assert str(info.value) == f"Unsupported payment network {network}"

    def test_unknown_network_error_is_a_value_error(self) -> None:
        assert issubclass(chains.UnknownNetworkError, ValueError)


class TestIdentityRegistries:
    @pytest.mark.parametrize("chain_id", [1, 8453], ids=["ethereum", "base"])
    def test_mainnets_use_the_mainnet_registry(self, chain_id: int) -> None:
        assert chains.identity_registry(chain_id) == IDENTITY_MAINNET

    @pytest.mark.parametrize("chain_id", [11155111, 84532], ids=["sepolia", "base-sepolia"])
    def test_testnets_use_the_testnet_registry(self, chain_id: int) -> None:
        assert chains.identity_registry(chain_id) == IDENTITY_TESTNET

    def test_base_mainnet_does_not_use_the_testnet_address(self) -> None:
        # obol-stack's networks.go mapped Base mainnet to the testnet address (ERC8004.md section 3).
        assert chains.identity_registry(8453) != IDENTITY_TESTNET

    def test_table_chains_with_a_registry_agree_with_their_testnet_flag(self) -> None:
        for c in chains.CHAINS:
            try:
                address = chains.identity_registry(c.chain_id)
            except chains.UnknownNetworkError:
                continue
            assert address == (IDENTITY_TESTNET if c.testnet else IDENTITY_MAINNET), c.name

    def test_a_chain_without_an_official_registry_raises(self) -> None:
        with pytest.raises(chains.UnknownNetworkError, match="31337"):
            chains.identity_registry(31337)
