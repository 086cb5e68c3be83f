"""Make a local anvil chain look like Base Sepolia to kube402 and to the x402 library.

Why: x402 resolves ``eip155:84532`` prices to USDC at its canonical address with EIP-712 name ``"USDC"``, and
ERC-8004 code expects the identity registry at its canonical testnet address. On a local chain started with
``--chain-id 84532`` this module deploys kube402's TestUSDC and IdentityRegistry normally, copies their runtime
code to the canonical addresses with ``anvil_setCode`` and writes the per-deployment storage there (owner,
EIP-712 name, symbol) with ``anvil_setStorageAt``, using the slots from solc's storage layout; constructor
effects do not move with the code. Funding goes through the token's owner-only ``mint``.

Local chains only: the dev accounts come from the public test mnemonic, and :func:`setup_base_sepolia` refuses
a node that is not anvil. Async like the rest of kube402; from synchronous code wrap calls in ``asyncio.run``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Final

from eth_account import Account
from eth_account.hdaccount import key_from_seed, seed_from_mnemonic
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from kube402.chain import artifacts, rpc, token

__all__ = [
    "BASE_SEPOLIA_CHAIN_ID",
    "BASE_SEPOLIA_IDENTITY_REGISTRY",
    "BASE_SEPOLIA_USDC",
    "DEV_MNEMONIC",
    "USDC_NAME",
    "DevChainInfo",
    "NotADevChain",
    "dev_account",
    "encode_storage_string",
    "install",
    "mint",
    "set_eth_balance",
    "setup_base_sepolia",
]

BASE_SEPOLIA_CHAIN_ID: Final = 84532
BASE_SEPOLIA_USDC: Final = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
BASE_SEPOLIA_IDENTITY_REGISTRY: Final = "0x8004A818BFB912233c491871b3d84c89A494BD9e"
USDC_NAME: Final = "USDC"
"""Base Sepolia USDC's EIP-712 name (mainnets use "USD Coin")."""
DEV_MNEMONIC: Final = "test test test test test test test test test test test junk"
"""anvil's public test mnemonic. Never fund these keys anywhere but a local chain."""


class NotADevChain(rpc.ChainError):
    """The node is not an anvil dev chain; code and storage overrides are refused."""


@functools.cache
def dev_account(index: int = 0) -> LocalAccount:
    """Dev account ``index`` of the test mnemonic (account 0 is 0xf39F…2266); anvil pre-funds 0-9 with ETH."""
    seed = seed_from_mnemonic(DEV_MNEMONIC, "")
    account: LocalAccount = Account.from_key(key_from_seed(seed, f"m/44'/60'/0'/0/{index}"))
    return account


@dataclasses.dataclass(frozen=True, slots=True)
class DevChainInfo:
    rpc_url: str
    chain_id: int
    token: str
    """TestUSDC at the canonical Base Sepolia USDC address."""
    registry: str
    """IdentityRegistry at the canonical testnet ERC-8004 identity address."""
    owner: LocalAccount = dataclasses.field(repr=False)
    """Owner of both (mints test USDC); dev account 0 unless chosen otherwise."""
    token_deployment: str
    """Where the token was first deployed (holds the constructor's storage; kube402 does not use it)."""
    registry_deployment: str


def encode_storage_string(slot: int, value: str) -> dict[int, bytes]:
    """The storage words Solidity uses for a ``string`` state variable at ``slot``: slot → 32-byte word.

    Up to 31 bytes: the data left-aligned with ``2·len`` in the lowest byte. Longer: ``2·len + 1`` at the slot and
    the data in consecutive words from ``keccak256(slot)``.
    """
    data = value.encode()
    if len(data) < 32:
        return {slot: data.ljust(31, b"\0") + bytes([2 * len(data)])}
    words = {slot: (2 * len(data) + 1).to_bytes(32, "big")}
    base = int.from_bytes(Web3.keccak(slot.to_bytes(32, "big")), "big")
    for i in range(0, len(data), 32):
        words[base + i // 32] = data[i : i + 32].ljust(32, b"\0")
    return words


def _encode_address(address: str) -> bytes:
    return bytes.fromhex(Web3.to_checksum_address(address)[2:]).rjust(32, b"\0")


async def _set_storage(node: rpc.Rpc, address: str, words: dict[int, bytes]) -> None:
    for slot, word in words.items():
        await node.request(
            "anvil_setStorageAt", [address, "0x" + slot.to_bytes(32, "big").hex(), "0x" + word.hex()]
        )


async def install(
    node: rpc.Rpc,
    *,
    name: str,
    at: str,
    constructor_args: tuple[object, ...],
    storage: dict[str, str],
    deployer: rpc.TxSigner,
) -> str:
    """Deploy artifact ``name`` normally, then copy its runtime code to ``at`` and write ``storage`` there.

    The code is copied from the deployment (not taken from the artifact) because the constructor fills the
    immutables inside it; it is checked against the artifact with the immutables masked.

    ``storage`` maps state-variable labels to values (``t_address`` and ``t_string_storage`` variables).
    Returns the normal deployment's address. Anything already at ``at`` is replaced.
    """
    art = artifacts.load(name)
    factory = node.w3.eth.contract(abi=list(art.abi), bytecode=art.bytecode)
    receipt = await node.transact(deployer, factory.constructor(*constructor_args))
    deployed = str(receipt["contractAddress"])
    runtime = await node.get_code(deployed)
    if not art.matches_runtime(runtime):
        raise rpc.ChainError(f"{name}: deployed code differs from the artifact's deployedBytecode")
    target = Web3.to_checksum_address(at)
    await node.request("anvil_setCode", [target, "0x" + runtime.hex()])
    for label, value in storage.items():
        var = art.slot(label)
        if var.offset != 0:
            raise ValueError(f"{name}.{label} is packed; only whole-slot variables are supported")
        if var.type == "t_address":
            await _set_storage(node, target, {var.slot: _encode_address(value)})
        elif var.type == "t_string_storage":
            await _set_storage(node, target, encode_storage_string(var.slot, value))
        else:
            raise ValueError(f"{name}.{label} has type {var.type}; only addresses and strings are supported")
    return deployed


async def setup_base_sepolia(rpc_url: str, *, owner: LocalAccount | None = None) -> DevChainInfo:
    """Put TestUSDC ("USDC", version "2", owner = dev account 0) and the identity registry at their Base Sepolia
    addresses on the anvil at ``rpc_url`` (which must run with ``--chain-id 84532``). Repeatable: a second run
    reinstalls the code and rewrites the slots; balances already minted at the canonical address stay."""
    owner = owner or dev_account(0)
    signer = rpc.LocalSigner(owner)
    node = await rpc.connect(rpc_url, chain_id=BASE_SEPOLIA_CHAIN_ID)
    version = str(await node.request("web3_clientVersion", []))
    if "anvil" not in version.lower():
        raise NotADevChain(f"{rpc_url} runs {version!r}, not anvil; refusing to override code and storage")
    token_deployment = await install(
        node,
        name=artifacts.TOKEN,
        at=BASE_SEPOLIA_USDC,
        constructor_args=(USDC_NAME, USDC_NAME),
        storage={"owner": owner.address, "_name": USDC_NAME, "_symbol": USDC_NAME},
        deployer=signer,
    )
    registry_deployment = await install(
        node,
        name=artifacts.REGISTRY,
        at=BASE_SEPOLIA_IDENTITY_REGISTRY,
        constructor_args=(owner.address,),
        storage={"_owner": owner.address},
        deployer=signer,
    )
    usdc = token.Token(node, BASE_SEPOLIA_USDC)
    expected = token.Domain(USDC_NAME, "2", BASE_SEPOLIA_CHAIN_ID, BASE_SEPOLIA_USDC)
    if await usdc.domain_separator() != expected.separator():
        raise rpc.ChainError("TestUSDC at the canonical address reports an unexpected EIP-712 domain")
    return DevChainInfo(
        rpc_url=rpc_url,
        chain_id=BASE_SEPOLIA_CHAIN_ID,
        token=Web3.to_checksum_address(BASE_SEPOLIA_USDC),
        registry=Web3.to_checksum_address(BASE_SEPOLIA_IDENTITY_REGISTRY),
        owner=owner,
        token_deployment=token_deployment,
        registry_deployment=registry_deployment,
    )


async def mint(info: DevChainInfo, to: str, amount: int) -> TxReceipt:
    """Fund ``to`` with ``amount`` atomic units of the dev USDC (6 decimals: 1_000_000 = 1 USDC)."""
    usdc = token.Token(rpc.Rpc(info.rpc_url), info.token)
    return await usdc.mint(to, amount, signer=rpc.LocalSigner(info.owner))


async def set_eth_balance(rpc_url: str, address: str, wei: int) -> None:
    """Give ``address`` exactly ``wei`` of native ETH for gas (anvil_setBalance)."""
    await rpc.Rpc(rpc_url).request("anvil_setBalance", [Web3.to_checksum_address(address), hex(wei)])
