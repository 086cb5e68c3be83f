"""Pure parts of the dev-chain setup: storage encoding and the well-known dev accounts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from web3 import Web3

from kube402.api import chains
from kube402.chain import devchain, token


def _decode(words: dict[int, bytes], slot: int) -> str:
    head = int.from_bytes(words[slot], "big")
    if head & 1 == 0:
        return words[slot][: (head & 0xFF) // 2].decode()
    length = (head - 1) // 2
    base = int.from_bytes(Web3.keccak(slot.to_bytes(32, "big")), "big")
    data = b"".join(words[base + i] for i in range((length + 31) // 32))
    return data[:length].decode()


def test_short_string_is_stored_in_place() -> None:
    assert devchain.encode_storage_string(1, "USDC") == {1: b"USDC" + bytes(27) + bytes([8])}


def test_long_string_is_stored_from_the_hashed_slot() -> None:
    words = devchain.encode_storage_string(2, "x" * 40)
    assert words[2] == (81).to_bytes(32, "big") and len(words) == 3


@given(st.text(max_size=80), st.integers(min_value=0, max_value=2**16))
def test_storage_string_round_trips(value: str, slot: int) -> None:
    words = devchain.encode_storage_string(slot, value)
    assert all(len(w) == 32 for w in words.values())
    assert _decode(words, slot) == value


def test_dev_accounts_come_from_the_public_test_mnemonic() -> None:
    assert devchain.dev_account(0).address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert devchain.dev_account(1).address == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def test_canonical_addresses_are_base_sepolias() -> None:
    assert chains.lookup("base-sepolia").usdc == devchain.BASE_SEPOLIA_USDC
    assert chains.identity_registry(84532) == devchain.BASE_SEPOLIA_IDENTITY_REGISTRY
    assert chains.lookup("base-sepolia").eip712_name == devchain.USDC_NAME
    assert token.Domain(devchain.USDC_NAME, "2", 84532, devchain.BASE_SEPOLIA_USDC).separator()
