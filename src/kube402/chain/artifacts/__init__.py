"""Committed compiler output for ``contracts/`` and its loader.

Why: solc-js needs seconds and ~250 MB per compile, so ``hack/compile_contracts.py`` (``make contracts``)
writes ``<Contract>.json`` here and kube402 only ever reads JSON at run time. Each file holds the ABI,
creation and runtime bytecode, solc's storage layout (used to write per-deployment slots with
``anvil_setStorageAt``) and the fingerprints that let the unit tests detect drift. Pure: no I/O but
reading these files.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any, Final

__all__ = ["Artifact", "REGISTRY", "StorageSlot", "TOKEN", "load", "names"]  # noqa: RUF022 - sorted(), STYLE §4.21

TOKEN: Final = "TestUSDC"
"""The EIP-3009 USD-Coin stand-in (contracts/TestUSDC.sol)."""
REGISTRY: Final = "IdentityRegistry"
"""The ERC-8004 identity registry (contracts/IdentityRegistry.sol)."""

_DIR: Final = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True, slots=True)
class StorageSlot:
    """One state variable as solc laid it out."""

    label: str
    slot: int
    offset: int
    """Byte offset inside the slot (from the low-order end) for packed variables."""
    type: str
    """solc's type id, e.g. ``t_address`` or ``t_string_storage``."""


@dataclasses.dataclass(frozen=True, slots=True)
class Artifact:
    name: str
    abi: tuple[dict[str, Any], ...]
    bytecode: bytes
    """Creation code (constructor arguments are appended to it)."""
    deployed_bytecode: bytes
    """Runtime code as compiled: what ``eth_getCode`` returns after a deployment, except that the byte ranges in
    :attr:`immutables` are zero here and filled by the constructor on chain."""
    immutables: tuple[tuple[int, int], ...]
    """(start, length) of every immutable's bytes inside :attr:`deployed_bytecode`, sorted."""
    method_identifiers: dict[str, str]
    """``"transfer(address,uint256)"`` → ``"a9059cbb"``."""
    storage: tuple[StorageSlot, ...]
    raw: dict[str, Any] = dataclasses.field(repr=False, compare=False)
    """The whole JSON file, for fingerprints and anything not modelled above."""

    def slot(self, label: str) -> StorageSlot:
        """The storage slot of the state variable ``label``; KeyError if the contract has none."""
        for s in self.storage:
            if s.label == label:
                return s
        raise KeyError(f"{self.name} has no state variable {label!r}")

    def matches_runtime(self, code: bytes) -> bool:
        """True if ``code`` (from ``eth_getCode``) is this contract's runtime, immutables aside."""
        if len(code) != len(self.deployed_bytecode):
            return False
        masked = bytearray(code)
        for start, length in self.immutables:
            masked[start : start + length] = bytes(length)
        return bytes(masked) == self.deployed_bytecode

    def selector(self, signature: str) -> bytes:
        """The 4-byte selector of ``signature`` (e.g. ``"register(string)"``) as compiled."""
        return bytes.fromhex(self.method_identifiers[signature])


def names() -> list[str]:
    """The contract names that have a committed artifact."""
    return sorted(p.stem for p in _DIR.glob("*.json"))


@functools.cache
def load(name: str) -> Artifact:
    """Read ``<name>.json``; cached, so every binding shares one parsed copy."""
    raw: dict[str, Any] = json.loads((_DIR / f"{name}.json").read_text())
    return Artifact(
        name=raw["contractName"],
        abi=tuple(raw["abi"]),
        bytecode=bytes.fromhex(raw["bytecode"].removeprefix("0x")),
        deployed_bytecode=bytes.fromhex(raw["deployedBytecode"].removeprefix("0x")),
        immutables=tuple(
            sorted(
                (int(ref["start"]), int(ref["length"]))
                for refs in raw["immutableReferences"].values()
                for ref in refs
            )
        ),
        method_identifiers=dict(raw["methodIdentifiers"]),
        storage=tuple(
            StorageSlot(label=s["label"], slot=int(s["slot"]), offset=int(s["offset"]), type=s["type"])
            for s in raw["storageLayout"]["storage"]
        ),
        raw=raw,
    )
