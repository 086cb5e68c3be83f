"""kube402.chain's public surface: sorted ``__all__`` in the package inits, and a cheap package import."""

from __future__ import annotations

import subprocess
import sys

import pytest

import kube402.chain
import kube402.chain.artifacts


def test_package_all_is_sorted() -> None:
    assert kube402.chain.__all__ == sorted(kube402.chain.__all__)
    assert kube402.chain.artifacts.__all__ == sorted(kube402.chain.artifacts.__all__)


@pytest.mark.timeout(30)  # starts a fresh interpreter
def test_importing_the_package_or_its_artifacts_does_not_import_web3() -> None:
    code = "import sys, kube402.chain, kube402.chain.artifacts as a; a.load(a.TOKEN); print('web3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=20)
    assert out.stdout.strip() == "False"
