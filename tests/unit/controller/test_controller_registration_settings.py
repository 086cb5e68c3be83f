"""The ERC-8004 key never prints; env parsing of the registration settings; desired metadata."""

from __future__ import annotations

from pathlib import Path

import pytest

from kube402.api import v1alpha1
from kube402.controller import registration
from kube402.controller.settings import RegistrationSettings, Settings, SigningKey

KEY = "0x" + "ab" * 32


def test_key_is_redacted_everywhere(tmp_path: Path) -> None:
    s = Settings(registration=RegistrationSettings(key=SigningKey(KEY)))
    for text in (repr(s), str(s), repr(s.registration), str(SigningKey(KEY)), f"{SigningKey(KEY)}"):
        assert "ab" * 32 not in text
    assert SigningKey(KEY).reveal() == KEY


def test_from_env_key_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(KEY + "\n")
    s = RegistrationSettings.from_env(
        {
            "ERC8004_PRIVATE_KEY_FILE": str(path),
            "ERC8004_RPC_URL": "http://127.0.0.1:8545",
            "ERC8004_REGISTRANT": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "ERC8004_LOG_CHUNK": "500",
        },
        readiness="objects",
    )
    assert s.key is not None and s.key.reveal() == KEY
    assert (s.rpc_url, s.chain, s.log_chunk, s.readiness) == (
        "http://127.0.0.1:8545",
        "base-sepolia",
        500,
        "objects",
    )
    assert RegistrationSettings.from_env({}).key is None
    assert RegistrationSettings.from_env(
        {"ERC8004_PRIVATE_KEY": KEY, "ERC8004_PRIVATE_KEY_FILE": "/nope"}
    ).key


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"ERC8004_PRIVATE_KEY_FILE": "/does/not/exist"},
            "ERC8004_PRIVATE_KEY_FILE /does/not/exist cannot be read",
        ),
        ({"ERC8004_LOG_CHUNK": "0"}, "ERC8004_LOG_CHUNK must be a positive integer"),
        ({"ERC8004_LOG_CHUNK": "x"}, "ERC8004_LOG_CHUNK must be a positive integer"),
    ],
)
def test_from_env_errors_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RegistrationSettings.from_env(env)


def test_desired_metadata_read_before_write_set() -> None:
    raw = v1alpha1.offer_manifest(
        "m",
        namespace="n",
        upstream="u",
        pay_to="0x" + "12" * 20,
        type="inference",
        model={"name": "q", "runtime": "ollama"},
        registration={"enabled": True, "metadata": {"team": "k", "blank": " "}},
    )
    offer = v1alpha1.ServiceOffer.from_dict(raw)
    desired = registration.desired_metadata(offer, {"metadata": {"gone": "x", "team": "old"}})
    assert desired == {
        "x402.supported": b"\x01",
        "service.type": b"inference",
        "metadata.team": b"k",
        "metadata.gone": b"",
    }


def test_crash_point_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBE402_TEST_CRASH_AT", raising=False)
    registration.crash_point("after-fence")  # returns: no hook configured
    monkeypatch.setenv("KUBE402_TEST_CRASH_AT", "after-mined")
    registration.crash_point("after-fence")  # another step: still alive


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ERC8004_PRIVATE_KEY": "0x1234"}, "the ERC-8004 private key is not 32 bytes of hex"),
        (
            {"ERC8004_PRIVATE_KEY": KEY, "ERC8004_CHAIN": "nochain"},
            "ERC8004_CHAIN 'nochain' is not a known chain",
        ),
    ],
)
def test_controller_refuses_bad_registration_settings_in_one_sentence(
    env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from kube402.cli import main

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main.main(["controller"]) == 2
    out = capsys.readouterr().out
    assert out.strip() == f"kube402 controller: {message}"
    assert "1234" not in out.replace("0x1234", "") and "ab" * 32 not in out
