"""CLI mistakes: one sentence naming the flag and the rule, exit 1 or 2, no traceback, never the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from kube402.cli.main import main

KEY = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse usage errors
        code = int(exit_.code or 0)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    assert KEY not in text, "the key is never printed"
    return code, text


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["buyer"], 2, "--config-dir"),
        (["buyer", "--config-dir", "d", "--namespace", "n"], 2, "exclusive"),
        (["buyer", "--config-dir", "d", "--listen", "nope"], 2, "--listen"),
        (["buy", "vouchers", "x", "--url", "http://s/x", "--count", "0", "--out", "d"], 2, "--count"),
        (["buy", "vouchers", "x", "--url", "ftp://s", "--count", "1", "--out", "d"], 2, "--url"),
        (["buy", "vouchers", "Bad_Name", "--url", "http://s/x", "--count", "1", "--out", "d"], 2, "NAME"),
        (
            [
                "buy",
                "vouchers",
                "x",
                "--url",
                "http://s/x",
                "--count",
                "1",
                "--validity",
                "99d",
                "--out",
                "d",
            ],
            1,
            "--validity",
        ),
        (
            [
                "buy",
                "vouchers",
                "x",
                "--url",
                "http://s/x",
                "--count",
                "1",
                "--rpc-url",
                "http://r",
                "--out",
                "d",
            ],
            1,
            "--key-file",
        ),
        (
            [
                "buy",
                "vouchers",
                "x",
                "--url",
                "http://s/x",
                "--count",
                "1",
                "--rpc-url",
                "http://r",
                "--key-file",
                KEY,
                "--out",
                "d",
            ],
            1,
            "never the key itself",
        ),
        (
            ["buy", "vouchers", "x", "--url", "http://s/x", "--count", "1", "--out", "d", "--key", KEY],
            2,
            "never taken on the command line",
        ),
        (["buy", "probe", "not-a-url"], 2, "URL"),
        (["buy", "discover", "--registry-chain", "moon"], 2, "--registry-chain"),
        (["buy", "balance", "--address", "0x12", "--rpc-url", "http://r"], 2, "--address"),
        (["buy", "status", "--buyer-url", "http://127.0.0.1:9"], 1, "--buyer-url"),
    ],
)
def test_cli_errors_are_one_sentence(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    code: int,
    words: str,
) -> None:
    monkeypatch.delenv("KUBE402_BUYER_KEY", raising=False)
    monkeypatch.delenv("KUBE402_BUYER_KEY_FILE", raising=False)
    monkeypatch.delenv("KUBE402_RPC_URL", raising=False)
    got, text = run(capsys, *argv)
    assert got == code, text
    assert words in text, text


def test_a_bad_key_file_is_named_without_its_content(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    f = tmp_path / "k"
    f.write_text("not a key " + KEY[:10])
    got, text = run(
        capsys, "buy", "vouchers", "x", "--url", "http://127.0.0.1:9/x", "--count", "1", "--rpc-url", "http://r",
        "--key-file", str(f), "--out", str(tmp_path),
    )  # fmt: skip
    assert got == 1 and f"--key-file {f} does not hold a hex private key" in text
    assert KEY[:10] not in text
