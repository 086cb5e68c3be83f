"""Shared helpers for kube402.chain's unit tests: the compile driver loaded from hack/, and the ``slow`` marker."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[3]


def load_compile_driver() -> ModuleType:
    """hack/compile_contracts.py as a module (hack/ is not a package)."""
    name = "kube402_hack_compile_contracts"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "hack" / "compile_contracts.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def compile_driver() -> ModuleType:
    return load_compile_driver()
