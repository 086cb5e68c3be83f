"""kube402's ERC-8004 identity registry at the canonical testnet address."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3

from kube402.chain import devchain, registry, rpc

pytestmark = pytest.mark.integration

CANONICAL_REGISTRY = "0x8004A818BFB912233c491871b3d84c89A494BD9e"
URI = "https://seller.example/.well-known/agent-registration.json"
TRANSFER_TOPIC = bytes(Web3.keccak(text="Transfer(address,address,uint256)"))
METADATA_UPDATE_TOPIC = bytes(Web3.keccak(text="MetadataUpdate(uint256)"))


@pytest.fixture
def reg(node: rpc.Rpc) -> registry.IdentityRegistry:
    return registry.IdentityRegistry(node, CANONICAL_REGISTRY)


@pytest.fixture
def seller() -> LocalAccount:
    return devchain.dev_account(5)


async def test_register_mints_agent_0_first_and_emits_registered(
    reg: registry.IdentityRegistry, chain: devchain.DevChainInfo, seller: LocalAccount
) -> None:
    assert chain.registry == CANONICAL_REGISTRY
    first = await reg.register(URI, signer=rpc.LocalSigner(seller))
    assert (first.agent_id, first.owner, first.agent_uri) == (0, seller.address, URI)
    second = await reg.register(URI + "?2", signer=rpc.LocalSigner(seller))
    assert second.agent_id == 1
    assert await reg.owner_of(0) == seller.address
    assert await reg.token_uri(0) == URI
    assert await reg.agent_wallet(0) == seller.address
    assert await reg.get_metadata(0, "agentWallet") == bytes.fromhex(seller.address[2:])
    assert await reg.owner_of(2) is None
    assert await reg.find_registered(from_block=0, owner=seller.address, chunk=1) == [first, second]
    assert await reg.find_registered(from_block=0, owner=devchain.dev_account(6).address) == []


async def test_register_logs_come_in_the_documented_order(
    reg: registry.IdentityRegistry, node: rpc.Rpc, seller: LocalAccount
) -> None:
    event = await reg.register(URI, signer=rpc.LocalSigner(seller))
    receipt = await node.wait_for_receipt(event.tx_hash)
    topics = [bytes(HexBytes(log["topics"][0])) for log in receipt["logs"]]
    assert topics == [
        TRANSFER_TOPIC,
        METADATA_UPDATE_TOPIC,
        registry.REGISTERED_TOPIC,
        registry.METADATA_SET_TOPIC,
    ]
    registered = receipt["logs"][2]
    assert bytes(registered["topics"][1]) == (0).to_bytes(32, "big")
    assert bytes(registered["topics"][2]) == bytes(12) + bytes.fromhex(seller.address[2:])


async def test_metadata_round_trips_and_the_wallet_key_is_reserved(
    reg: registry.IdentityRegistry, node: rpc.Rpc, seller: LocalAccount
) -> None:
    signer = rpc.LocalSigner(seller)
    agent = (await reg.register(URI, signer=signer)).agent_id
    receipt = await reg.set_metadata(agent, "x402.supported", b"\x01", signer=signer)
    assert await reg.get_metadata(agent, "x402.supported") == b"\x01"
    assert await reg.get_metadata(agent, "unset") == b""
    (log,) = receipt["logs"]
    assert bytes(log["topics"][0]) == registry.METADATA_SET_TOPIC
    assert bytes(log["topics"][2]) == bytes(Web3.keccak(text="x402.supported"))
    assert bytes(receipt["logs"][0]["data"]).endswith(b"\x01" + bytes(31))
    await reg.set_metadata(agent, "x402.supported", b"\x01", signer=signer)  # unchanged value: no revert

    with pytest.raises(ValueError):
        await reg.set_metadata(agent, "agentWallet", b"\x00", signer=signer)
    direct = reg.contract.get_function_by_signature("setMetadata(uint256,string,bytes)")(
        agent, "agentWallet", b""
    )
    with pytest.raises(rpc.Reverted) as err:
        await node.transact(signer, direct)
    assert err.value.reason == "reserved key"
    with_metadata = reg.contract.get_function_by_signature("register(string,(string,bytes)[])")(
        URI, [("service.type", b"http"), ("agentWallet", b"\x00")]
    )
    with pytest.raises(rpc.Reverted, match="reserved key"):
        await node.transact(signer, with_metadata)


async def test_register_with_metadata_sets_each_entry(
    reg: registry.IdentityRegistry, node: rpc.Rpc, seller: LocalAccount
) -> None:
    call = reg.contract.get_function_by_signature("register(string,(string,bytes)[])")(
        URI, [("service.type", b"http"), ("metadata.model", b"qwen")]
    )
    receipt = await node.transact(rpc.LocalSigner(seller), call)
    (event,) = registry.parse_registered(receipt["logs"], registry=reg.address)
    assert await reg.get_metadata(event.agent_id, "service.type") == b"http"
    assert await reg.get_metadata(event.agent_id, "metadata.model") == b"qwen"


async def test_only_owner_approved_or_operator_may_update(
    reg: registry.IdentityRegistry, node: rpc.Rpc, seller: LocalAccount
) -> None:
    agent = (await reg.register(URI, signer=rpc.LocalSigner(seller))).agent_id
    stranger = rpc.LocalSigner(devchain.dev_account(6))
    with pytest.raises(rpc.Reverted, match="not authorized"):
        await reg.set_agent_uri(agent, "https://evil.example/", signer=stranger)
    with pytest.raises(rpc.Reverted, match="not authorized"):
        await reg.set_metadata(agent, "k", b"v", signer=stranger)

    receipt = await reg.set_agent_uri(agent, URI + "#v2", signer=rpc.LocalSigner(seller))
    assert await reg.token_uri(agent) == URI + "#v2"
    updated = [log for log in receipt["logs"] if bytes(log["topics"][0]) == registry.URI_UPDATED_TOPIC]
    assert len(updated) == 1 and bytes(updated[0]["topics"][2])[-20:] == bytes.fromhex(seller.address[2:])

    operator = devchain.dev_account(7)
    await node.transact(
        rpc.LocalSigner(seller), reg.contract.functions.setApprovalForAll(operator.address, True)
    )
    await reg.set_metadata(agent, "k", b"by operator", signer=rpc.LocalSigner(operator))
    assert await reg.get_metadata(agent, "k") == b"by operator"


async def test_a_transfer_clears_the_agent_wallet(
    reg: registry.IdentityRegistry, node: rpc.Rpc, seller: LocalAccount
) -> None:
    agent = (await reg.register(URI, signer=rpc.LocalSigner(seller))).agent_id
    buyer = devchain.dev_account(8).address
    await node.transact(
        rpc.LocalSigner(seller), reg.contract.functions.transferFrom(seller.address, buyer, agent)
    )
    assert await reg.owner_of(agent) == buyer
    assert await reg.agent_wallet(agent) == "0x" + "00" * 20
    assert await reg.get_metadata(agent, "agentWallet") == b""


async def test_set_agent_wallet_verifies_the_new_wallets_eip712_proof_at_the_moved_address(
    reg: registry.IdentityRegistry, node: rpc.Rpc, seller: LocalAccount
) -> None:
    agent = (await reg.register(URI, signer=rpc.LocalSigner(seller))).agent_id
    wallet: LocalAccount = Account.create()
    latest = await node.run(lambda: node.w3.eth.get_block("latest"))
    deadline = int(latest["timestamp"]) + 120
    proof = wallet.sign_typed_data(
        full_message={
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "AgentWalletSet": [
                    {"name": "agentId", "type": "uint256"},
                    {"name": "newWallet", "type": "address"},
                    {"name": "owner", "type": "address"},
                    {"name": "deadline", "type": "uint256"},
                ],
            },
            "primaryType": "AgentWalletSet",
            "domain": {
                "name": "ERC8004IdentityRegistry",
                "version": "1",
                "chainId": 84532,
                "verifyingContract": CANONICAL_REGISTRY,
            },
            "message": {
                "agentId": agent,
                "newWallet": wallet.address,
                "owner": seller.address,
                "deadline": deadline,
            },
        }
    ).signature
    call = reg.contract.functions.setAgentWallet(agent, wallet.address, deadline, bytes(proof))
    await node.transact(rpc.LocalSigner(seller), call)
    assert await reg.agent_wallet(agent) == wallet.address

    too_far = reg.contract.functions.setAgentWallet(agent, wallet.address, deadline + 3600, bytes(proof))
    with pytest.raises(rpc.Reverted, match="deadline too far"):
        await node.transact(rpc.LocalSigner(seller), too_far)
    await node.transact(rpc.LocalSigner(seller), reg.contract.functions.unsetAgentWallet(agent))
    assert await reg.agent_wallet(agent) == "0x" + "00" * 20


async def test_per_deployment_values_survive_the_move(
    reg: registry.IdentityRegistry, chain: devchain.DevChainInfo
) -> None:
    call = reg.rpc.run
    assert await call(reg.contract.functions.name().call) == "AgentIdentity"
    assert await call(reg.contract.functions.symbol().call) == "AGENT"
    assert await call(reg.contract.functions.owner().call) == chain.owner.address
    domain = await call(reg.contract.functions.eip712Domain().call)
    assert tuple(domain[1:5]) == ("ERC8004IdentityRegistry", "1", 84532, CANONICAL_REGISTRY)
    assert (
        await call(reg.contract.functions.supportsInterface(bytes.fromhex("80ac58cd")).call) is True
    )  # ERC-721
