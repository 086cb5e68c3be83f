"""Selectors, event topics and EIP-712 type hashes equal the published ones (ERC8004.md §2, X402.md §6, USDC)."""

from __future__ import annotations

import pytest
from eth_account.messages import encode_typed_data
from eth_utils.abi import event_abi_to_log_topic
from web3 import Web3

from kube402.chain import artifacts, registry, token

ERC8004_SELECTORS = {
    "register()": "1aa3a008",
    "register(string)": "f2c298be",
    "register(string,(string,bytes)[])": "8ea42286",
    "setAgentURI(uint256,string)": "0af28bd3",
    "tokenURI(uint256)": "c87b56dd",
    "ownerOf(uint256)": "6352211e",
    "getMetadata(uint256,string)": "cb4799f2",
    "setMetadata(uint256,string,bytes)": "466648da",
    "getAgentWallet(uint256)": "00339509",
    "setAgentWallet(uint256,address,uint256,bytes)": "2d1ef5ae",
    "unsetAgentWallet(uint256)": "3fddcf19",
}
ERC8004_TOPICS = {
    "Registered": "ca52e62c367d81bb2e328eb795f7c7ba24afb478408a26c0e201d155c449bc4a",
    "URIUpdated": "3a2c7fffc2cba7582c690e3b82c453ea02a308326a98a3ad7576c606336409fb",
    "MetadataSet": "2c149ed548c6d2993cd73efe187df6eccabe4538091b33adbd25fafdb8a1468b",
}
USDC_SELECTORS = {
    "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)": "e3ee160e",
    "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)": "cf092995",
    "authorizationState(address,bytes32)": "e94a0102",
    "receiveWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)": "ef55bec6",
    "receiveWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)": "88b7ab63",
    "cancelAuthorization(address,bytes32,uint8,bytes32,bytes32)": "5a049a70",
    "cancelAuthorization(address,bytes32,bytes)": "b7b72899",
    "balanceOf(address)": "70a08231",
    "transfer(address,uint256)": "a9059cbb",
    "mint(address,uint256)": "40c10f19",
    "DOMAIN_SEPARATOR()": "3644e515",
    "eip712Domain()": "84b0196e",
}
USDC_TYPEHASHES = {  # FiatTokenV2's public constants
    "TRANSFER_WITH_AUTHORIZATION_TYPEHASH": "7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267",
    "RECEIVE_WITH_AUTHORIZATION_TYPEHASH": "d099cc98ef71107a616c4f0f941f04c322d8e254fe26b3c6668db87aae413de8",
    "CANCEL_AUTHORIZATION_TYPEHASH": "158b0a9edf7a828aad02f63cd515c68ef2f50ba807396f6d12842833a1597429",
    "DOMAIN_TYPEHASH": "8b73c3c69bb8fe3d512ecc4cf759cc79239f7b179b0ffacaa9a75d522b39400f",
}


@pytest.mark.parametrize(("signature", "selector"), ERC8004_SELECTORS.items())
def test_registry_selectors_are_erc8004s(signature: str, selector: str) -> None:
    assert artifacts.load(artifacts.REGISTRY).method_identifiers[signature] == selector
    assert Web3.keccak(text=signature)[:4].hex() == selector


@pytest.mark.parametrize(("event", "topic"), ERC8004_TOPICS.items())
def test_registry_event_topics_are_erc8004s(event: str, topic: str) -> None:
    (abi,) = [
        e for e in artifacts.load(artifacts.REGISTRY).abi if e["type"] == "event" and e["name"] == event
    ]
    assert event_abi_to_log_topic(abi).hex() == topic  # type: ignore[arg-type]
    constant = {
        "Registered": registry.REGISTERED_TOPIC,
        "URIUpdated": registry.URI_UPDATED_TOPIC,
        "MetadataSet": registry.METADATA_SET_TOPIC,
    }[event]
    assert constant.hex() == topic


def test_registry_event_shapes_match_the_eip() -> None:
    events = {e["name"]: e for e in artifacts.load(artifacts.REGISTRY).abi if e["type"] == "event"}
    shape = {n: [(i["name"], i["type"], i["indexed"]) for i in events[n]["inputs"]] for n in ERC8004_TOPICS}
    assert shape == {
        "Registered": [
            ("agentId", "uint256", True),
            ("agentURI", "string", False),
            ("owner", "address", True),
        ],
        "URIUpdated": [
            ("agentId", "uint256", True),
            ("newURI", "string", False),
            ("updatedBy", "address", True),
        ],
        "MetadataSet": [
            ("agentId", "uint256", True),
            ("indexedMetadataKey", "string", True),
            ("metadataKey", "string", False),
            ("metadataValue", "bytes", False),
        ],
    }


@pytest.mark.parametrize(("signature", "selector"), USDC_SELECTORS.items())
def test_token_selectors_are_usdcs(signature: str, selector: str) -> None:
    assert artifacts.load(artifacts.TOKEN).method_identifiers[signature] == selector


@pytest.mark.parametrize(("name", "value"), USDC_TYPEHASHES.items())
def test_typehashes_are_usdcs(name: str, value: str) -> None:
    assert getattr(token, name).hex() == value


def test_token_abi_has_fiattoken_events() -> None:
    events = {e["name"]: e for e in artifacts.load(artifacts.TOKEN).abi if e["type"] == "event"}
    assert event_abi_to_log_topic(events["Transfer"]).hex() == (  # type: ignore[arg-type]
        Web3.keccak(text="Transfer(address,address,uint256)").hex()
    )
    for name in ("AuthorizationUsed", "AuthorizationCanceled"):
        assert [(i["type"], i["indexed"]) for i in events[name]["inputs"]] == [
            ("address", True),
            ("bytes32", True),
        ]


def test_set_metadata_calldata_comes_from_the_abi_encoder() -> None:
    data = registry.encode_set_metadata(7, "x402.supported", b"\x01")
    assert data[:4].hex() == "466648da"
    contract = Web3().eth.contract(abi=list(artifacts.load(artifacts.REGISTRY).abi))
    assert "0x" + data.hex() == contract.encode_abi("setMetadata", args=[7, "x402.supported", b"\x01"])
    assert len(data) == 4 + 32 * 7  # head (3 words) + string (len, data) + bytes (len, data)


def test_domain_separator_equals_eth_accounts_domain_hash() -> None:
    domain = token.Domain("USDC", "2", 84532, "0x036CbD53842c5426634e7929541eC2318f3dCF7e")
    auth = token.Authorization(
        from_="0x" + "11" * 20,
        to="0x" + "22" * 20,
        value=1000,
        valid_after=0,
        valid_before=2**32,
        nonce=b"\x33" * 32,
    )
    signable = encode_typed_data(full_message=auth.typed_data(domain))
    assert signable.header == domain.separator()
    assert token.Domain("USD Coin", "2", 84532, domain.verifying_contract).separator() != domain.separator()


def test_parse_registered_reads_id_owner_and_uri_and_ignores_other_emitters() -> None:
    reg = "0x8004A818BFB912233c491871b3d84c89A494BD9e"
    owner = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    log = {
        "address": reg,
        "topics": [registry.REGISTERED_TOPIC, (42).to_bytes(32, "big"), bytes(12) + bytes.fromhex(owner[2:])],
        "data": bytes.fromhex("20".rjust(64, "0") + "3".rjust(64, "0") + b"abc".hex().ljust(64, "0")),
        "transactionHash": b"\xaa" * 32,
        "blockNumber": 5,
        "logIndex": 1,
    }
    (event,) = registry.parse_registered([log, {**log, "address": "0x" + "99" * 20}], registry=reg)
    assert (event.agent_id, event.owner, event.agent_uri, event.block_number) == (42, owner, "abc", 5)
    assert event.tx_hash == "0x" + "aa" * 32
