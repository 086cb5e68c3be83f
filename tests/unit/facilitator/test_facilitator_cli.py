"""``kube402 facilitator`` argument handling and the package's public surface."""

from __future__ import annotations

import importlib

import pytest

import kube402.chain.facilitator
from kube402.cli import facilitator_cmd
from kube402.cli import main as cli


def test_the_subcommand_is_wired_with_its_flags() -> None:
    args = cli.build_parser().parse_args(
        [
            "facilitator",
            "--listen",
            ":4040",
            "--rpc-url",
            "base-sepolia=http://a:1",
            "--rpc-url",
            "base=http://b:2",
            "--key-file",
            "/k",
            "--confirmation-timeout",
            "5",
            "--gas-limit",
            "200000",
            "--workers",
            "8",
        ]
    )
    assert args.func is facilitator_cmd.run
    assert (args.listen, args.rpc_url, args.key_file) == (
        ":4040",
        ["base-sepolia=http://a:1", "base=http://b:2"],
        "/k",
    )
    assert (args.confirmation_timeout, args.gas_limit, args.workers) == (5.0, 200_000, 8)


def test_defaults() -> None:
    args = cli.build_parser().parse_args(["facilitator"])
    assert (args.listen, args.rpc_url, args.confirmation_timeout) == ("127.0.0.1:4040", None, 20.0)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["facilitator"], {}, "no RPC URL"),
        (["facilitator", "--rpc-url", "http://a:1"], {}, "no relayer key"),
        (
            ["facilitator", "--rpc-url", "mars=http://a:1"],
            {"KUBE402_FACILITATOR_KEY": "0x" + "4c" * 32},
            "unknown network",
        ),
        (
            ["facilitator", "--rpc-url", "http://a:1", "--listen", "nope"],
            {"KUBE402_FACILITATOR_KEY": "0x" + "4c" * 32},
            "--listen",
        ),
    ],
)
def test_bad_settings_exit_2_with_a_message(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    for name in ("KUBE402_FACILITATOR_KEY", "KUBE402_FACILITATOR_KEY_FILE", facilitator_cmd.RPC_ENV):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = cli.build_parser().parse_args(argv)
    assert args.func(args) == 2
    out = capsys.readouterr().out
    assert message in out and "4c4c4c" not in out


@pytest.mark.parametrize("name", kube402.chain.facilitator.__all__)
def test_every_module_has_a_docstring_and_an_explicit_public_surface(name: str) -> None:
    assert kube402.chain.facilitator.__all__ == sorted(kube402.chain.facilitator.__all__)
    module = importlib.import_module(f"kube402.chain.facilitator.{name}")
    assert module.__doc__ and module.__all__
    assert all(hasattr(module, n) for n in module.__all__)
