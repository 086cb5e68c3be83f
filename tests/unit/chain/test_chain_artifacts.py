"""The committed artifacts in src/kube402/chain/artifacts match contracts/, the compiler and its settings."""

from __future__ import annotations

import json
from types import ModuleType

import pytest

from kube402.chain import artifacts


def test_sources_compiler_and_settings_match_the_recorded_fingerprints(compile_driver: ModuleType) -> None:
    reasons = compile_driver.stale_tree()
    assert reasons == [], "artifacts are stale; run `make contracts`:\n" + "\n".join(reasons)


def test_every_artifact_records_its_provenance() -> None:
    assert artifacts.names() == sorted([artifacts.TOKEN, artifacts.REGISTRY])
    for name in artifacts.names():
        raw = artifacts.load(name).raw
        assert raw["compiler"]["version"].startswith("0.8.37+commit.")
        assert raw["settings"]["evmVersion"] and raw["settings"]["optimizer"]["enabled"] is True
        assert raw["sourceName"] in raw["sources"]
        assert all(len(digest) == 64 for digest in raw["sources"].values())


@pytest.mark.parametrize("name", [artifacts.TOKEN, artifacts.REGISTRY])
def test_loader_exposes_code_and_storage_layout(name: str) -> None:
    art = artifacts.load(name)
    assert art.bytecode and art.deployed_bytecode
    assert art.matches_runtime(art.deployed_bytecode)
    assert not art.matches_runtime(art.deployed_bytecode + b"\0")
    with pytest.raises(KeyError):
        art.slot("no_such_variable")


def test_per_deployment_slots_are_where_devchain_writes_them() -> None:
    token = artifacts.load(artifacts.TOKEN)
    assert (token.slot("owner").type, token.slot("_name").type) == ("t_address", "t_string_storage")
    assert token.slot("_symbol").type == "t_string_storage"
    assert token.immutables == ()  # nothing deployment-specific is baked into the token's code
    registry = artifacts.load(artifacts.REGISTRY)
    assert registry.slot("_owner").type == "t_address"


def test_immutables_are_masked_when_matching_deployed_code() -> None:
    registry = artifacts.load(artifacts.REGISTRY)
    assert registry.immutables, "OpenZeppelin's EIP712 keeps its cache in immutables"
    start, length = registry.immutables[0]
    code = bytearray(registry.deployed_bytecode)
    code[start : start + length] = b"\x11" * length
    assert registry.matches_runtime(bytes(code))
    code[start + length] ^= 0xFF
    assert not registry.matches_runtime(bytes(code))


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_recompiling_reproduces_the_committed_bytes_exactly(compile_driver: ModuleType) -> None:
    built = compile_driver.artifacts_from(compile_driver.run_solc())
    assert sorted(built) == artifacts.names()
    for name, artifact in built.items():
        committed = (compile_driver.ARTIFACTS_DIR / f"{name}.json").read_text()
        assert artifact["bytecode"] == json.loads(committed)["bytecode"], name
        assert artifact["deployedBytecode"] == json.loads(committed)["deployedBytecode"], name
        assert compile_driver.render(artifact) == committed, f"{name}.json differs; run `make contracts`"
