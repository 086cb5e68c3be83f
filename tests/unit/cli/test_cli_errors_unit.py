"""Every failure a user meets is one sentence; so is a genuine bug (KUBE402_DEBUG=1 shows its traceback)."""

from __future__ import annotations

import argparse

import pytest
import yaml
from lightkube.core.exceptions import ConfigError

from kube402.cli import errors, main, verifier_cmd
from kube402.kube import errors as kube_errors


def test_explain_known_failures() -> None:
    assert errors.explain(errors.UsageError("--port: bad")) == ("--port: bad", 2)
    text, code = errors.explain(ConfigError("Configuration file /x not found"))  # type: ignore[misc]
    assert code == 1 and text.startswith("kubeconfig /x not found: pass --kubeconfig FILE or set KUBECONFIG")
    text, _ = errors.explain(kube_errors.Unavailable(0, "Transport", "All connection attempts failed"))  # type: ignore[misc]
    assert text == "cannot reach the Kubernetes API server: All connection attempts failed"
    text, _ = errors.explain(kube_errors.Invalid(403, "Forbidden", "cannot list"))  # type: ignore[misc]
    assert text == "permission denied (RBAC): cannot list"
    try:
        yaml.safe_load("a: [")
    except yaml.YAMLError as err:
        assert "not valid YAML" in errors.explain(err)[0]  # type: ignore[index]
    assert errors.explain(FileNotFoundError(2, "No such file", "/nope"))[0] == "/nope: no such file"  # type: ignore[index]
    assert errors.explain(ZeroDivisionError()) is None


def test_entry_prints_one_sentence_never_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(argv: object) -> int:
        raise kube_errors.Unavailable(0, "Transport", "refused")

    monkeypatch.setattr(main, "main", boom)
    monkeypatch.setattr("sys.argv", ["kube402", "sell", "list"])
    monkeypatch.delenv("KUBE402_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main.entry()
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach the Kubernetes API server: refused" in err

    def bug(argv: object) -> int:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(main, "main", bug)
    with pytest.raises(SystemExit) as exit_:
        main.entry()
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert (
        "internal error (ZeroDivisionError: oops); rerun with KUBE402_DEBUG=1" in err
        and "Traceback" not in err
    )
    monkeypatch.setenv("KUBE402_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main.entry()


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main.build_parser().parse_args(["sell", "http", "x", "--port", "eighty"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert (
        err == "kube402 sell http: argument --port: invalid int value: 'eighty' "
        "(see `kube402 sell http --help`)\n"
    )


def test_verifier_flag_defaults_are_the_verifiers_own() -> None:
    from kube402.verifier.main import Options

    d = Options()
    for key, value in verifier_cmd._DEFAULTS.items():
        assert getattr(d, key) == value, key
    assert isinstance(main.build_parser().parse_args(["verifier"]), argparse.Namespace)
