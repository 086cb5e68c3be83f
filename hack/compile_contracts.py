#!/usr/bin/env python3
"""Compile contracts/*.sol with solc-js and write the committed artifacts (``make contracts``).

Why this exists: no native solc is reachable offline, and loading solc-js costs seconds and ~250 MB, so the
compiler runs only here and kube402 reads committed JSON at run time (``src/kube402/chain/artifacts/``). Each
artifact records what produced it (compiler version, sha256 of the compiler's wasm bundle, settings, sha256 of every
source the contract was built from), so a fast unit test can detect drift without compiling and a slower test
recompiles and compares the bytes.

Usage: ``python hack/compile_contracts.py`` (write), ``--check`` (recompile, exit 1 if any artifact would change),
``--stale`` (no compile: exit 1 if sources, compiler or settings no longer match the recorded fingerprints).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CONTRACTS_DIR = REPO / "contracts"
ARTIFACTS_DIR = REPO / "src" / "kube402" / "chain" / "artifacts"
NODE_MODULES = REPO / "node_modules"
SOLC_DIR = NODE_MODULES / "solc"
SOLC_JS = REPO / "hack" / "solc-stdjson.js"

SOLC_VERSION = "0.8.37"
"""The npm ``solc`` version the artifacts are built with (package.json pins the same)."""

SETTINGS: dict[str, Any] = {
    "evmVersion": "prague",
    "optimizer": {"enabled": True, "runs": 200},
    "metadata": {"bytecodeHash": "ipfs"},
}
"""Compiler settings recorded in every artifact; outputSelection is added per compile and not recorded."""

_OUTPUT_SELECTION = {
    "*": {
        "*": [
            "abi",
            "evm.bytecode.object",
            "evm.bytecode.linkReferences",
            "evm.deployedBytecode.object",
            "evm.deployedBytecode.immutableReferences",
            "evm.methodIdentifiers",
            "storageLayout",
            "metadata",
        ]
    }
}


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def source_path(unit: str) -> Path:
    """Where a solc source unit name lives on disk: ours under the repo, imports under node_modules/."""
    if unit.startswith("contracts/"):
        return REPO / unit
    return NODE_MODULES / unit


def compiler_fingerprint() -> dict[str, str]:
    """The installed compiler: npm version and sha256 of the wasm bundle actually executed."""
    package = json.loads((SOLC_DIR / "package.json").read_text())
    return {"npmVersion": package["version"], "soljsonSha256": sha256_file(SOLC_DIR / "soljson.js")}


def our_sources() -> list[str]:
    return sorted(f"contracts/{p.name}" for p in CONTRACTS_DIR.glob("*.sol"))


def run_solc() -> dict[str, Any]:
    """One standard-JSON compile of every file in contracts/; raises on any compiler error."""
    installed = compiler_fingerprint()["npmVersion"]
    if installed != SOLC_VERSION:
        raise SystemExit(f"node_modules/solc is {installed}, expected {SOLC_VERSION} (run npm ci)")
    request = {
        "language": "Solidity",
        "sources": {unit: {"content": source_path(unit).read_text()} for unit in our_sources()},
        "settings": {**SETTINGS, "outputSelection": _OUTPUT_SELECTION},
    }
    proc = subprocess.run(
        ["node", str(SOLC_JS)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"solc-stdjson.js failed ({proc.returncode}): {proc.stderr.strip()}")
    output: dict[str, Any] = json.loads(proc.stdout)
    diagnostics = output.get("errors", [])
    for d in diagnostics:
        if d.get("severity") != "error":
            print(d.get("formattedMessage", d.get("message")), file=sys.stderr)
    errors = [d for d in diagnostics if d.get("severity") == "error"]
    if errors:
        raise SystemExit("\n".join(str(e.get("formattedMessage", e.get("message"))) for e in errors))
    return output


def artifacts_from(output: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Contract name → artifact, for every deployable contract defined in contracts/."""
    fingerprint = compiler_fingerprint()
    result: dict[str, dict[str, Any]] = {}
    for unit, contracts in sorted(output.get("contracts", {}).items()):
        if not unit.startswith("contracts/"):
            continue
        for name, c in sorted(contracts.items()):
            bytecode = c["evm"]["bytecode"]["object"]
            if not bytecode:
                continue  # interfaces and abstract contracts
            if c["evm"]["bytecode"].get("linkReferences"):
                raise SystemExit(f"{name} needs library linking, which kube402 does not support")
            if name in result:
                raise SystemExit(f"contract name {name} is defined twice")
            metadata = json.loads(c["metadata"])
            result[name] = {
                "contractName": name,
                "sourceName": unit,
                "abi": c["abi"],
                "bytecode": "0x" + bytecode,
                "deployedBytecode": "0x" + c["evm"]["deployedBytecode"]["object"],
                "immutableReferences": c["evm"]["deployedBytecode"].get("immutableReferences", {}),
                "methodIdentifiers": c["evm"]["methodIdentifiers"],
                "storageLayout": c["storageLayout"],
                "compiler": {"version": metadata["compiler"]["version"], **fingerprint},
                "settings": SETTINGS,
                "sources": {src: sha256_file(source_path(src)) for src in sorted(metadata["sources"])},
            }
    return result


def render(artifact: dict[str, Any]) -> str:
    """The exact file text: stable key order, so an unchanged build rewrites identical bytes."""
    return json.dumps(artifact, indent=1, sort_keys=True) + "\n"


def stale_reasons(artifact: dict[str, Any]) -> list[str]:
    """Why a committed artifact no longer matches the tree, without compiling (empty = up to date)."""
    reasons: list[str] = []
    name = artifact.get("contractName", "?")
    fingerprint = compiler_fingerprint()
    recorded = artifact.get("compiler", {})
    for key, value in fingerprint.items():
        if recorded.get(key) != value:
            reasons.append(f"{name}: compiler {key} is {value}, artifact has {recorded.get(key)}")
    if artifact.get("settings") != SETTINGS:
        reasons.append(f"{name}: settings changed")
    for unit, digest in artifact.get("sources", {}).items():
        path = source_path(unit)
        if not path.is_file():
            reasons.append(f"{name}: source {unit} is gone")
        elif sha256_file(path) != digest:
            reasons.append(f"{name}: source {unit} changed")
    return reasons


def committed() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(ARTIFACTS_DIR.glob("*.json"))}


def stale_tree() -> list[str]:
    """Every reason the committed artifacts are stale, including sources in contracts/ that no artifact covers."""
    arts = committed()
    reasons = [r for a in arts.values() for r in stale_reasons(a)]
    covered = {unit for a in arts.values() for unit in a.get("sources", {})}
    reasons += [f"{unit} is not compiled into any artifact" for unit in our_sources() if unit not in covered]
    return reasons


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="recompile; exit 1 if any artifact would change")
    mode.add_argument("--stale", action="store_true", help="no compile; exit 1 if fingerprints drifted")
    args = parser.parse_args(argv)
    if args.stale:
        reasons = stale_tree()
        print("\n".join(reasons) or "artifacts are up to date")
        return 1 if reasons else 0
    started = time.monotonic()
    built = {name: render(a) for name, a in artifacts_from(run_solc()).items()}
    elapsed = time.monotonic() - started
    if args.check:
        on_disk = {p.stem: p.read_text() for p in ARTIFACTS_DIR.glob("*.json")}
        differ = sorted(n for n in set(built) | set(on_disk) if built.get(n) != on_disk.get(n))
        print(
            f"compiled in {elapsed:.1f}s; "
            + (f"out of date: {', '.join(differ)}" if differ else "up to date")
        )
        return 1 if differ else 0
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    for stale in {p.stem for p in ARTIFACTS_DIR.glob("*.json")} - set(built):
        (ARTIFACTS_DIR / f"{stale}.json").unlink()
    for name, text in built.items():
        (ARTIFACTS_DIR / f"{name}.json").write_text(text)
    print(f"compiled {', '.join(sorted(built))} in {elapsed:.1f}s → {ARTIFACTS_DIR.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
