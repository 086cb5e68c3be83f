"""Settings: network specs, the relayer key's sources (never echoed), URL redaction, listen addresses."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kube402.chain.facilitator import config

KEY = "0x" + "4c" * 32


class TestNetworks:
    @pytest.mark.parametrize(
        ("spec", "caip2", "v1", "url"),
        [
            ("http://127.0.0.1:8545", "eip155:84532", "base-sepolia", "http://127.0.0.1:8545"),
            ("base-sepolia=http://n:1/x?k=v", "eip155:84532", "base-sepolia", "http://n:1/x?k=v"),
            ("https://rpc.test/v2/key=abc", "eip155:84532", "base-sepolia", "https://rpc.test/v2/key=abc"),
            ("base=https://rpc.test", "eip155:8453", "base", "https://rpc.test"),
            ("eip155:8453=https://rpc.test", "eip155:8453", "base", "https://rpc.test"),
            ("arbitrum-one=https://rpc.test", "eip155:42161", None, "https://rpc.test"),
            ("eip155:31337=http://127.0.0.1:8545", "eip155:31337", None, "http://127.0.0.1:8545"),
            ("celo=https://rpc.test", "eip155:42220", "celo", "https://rpc.test"),
        ],
    )
    def test_a_spec_names_a_chain_and_its_rpc_url(
        self, spec: str, caip2: str, v1: str | None, url: str
    ) -> None:
        net = config.parse_network(spec)
        assert (net.caip2, net.v1_name, net.rpc_url) == (caip2, v1, url)
        assert net.chain_id == int(caip2.split(":")[1])

    @pytest.mark.parametrize(
        "spec", ["nowhere=http://x", "base-sepolia=ftp://x", "base-sepolia=", "eip155:0=http://x"]
    )
    def test_a_bad_spec_is_a_config_error(self, spec: str) -> None:
        with pytest.raises(config.ConfigError):
            config.parse_network(spec)

    def test_the_rpc_url_is_not_in_the_repr(self) -> None:
        assert "secret" not in repr(config.parse_network("https://rpc.test/v2/secret"))

    def test_settings_need_distinct_networks_and_sane_limits(self) -> None:
        net = config.parse_network("http://x:1")
        with pytest.raises(config.ConfigError):
            config.Settings(networks=())
        with pytest.raises(config.ConfigError):
            config.Settings(networks=(net, config.parse_network("eip155:84532=http://y:2")))
        ok = config.Settings(networks=(net,))
        for bad in ({"gas_limit": 1}, {"workers": 0}, {"confirmation_timeout": 0.0}):
            with pytest.raises(config.ConfigError):
                dataclasses.replace(ok, **bad)


class TestKey:
    def test_the_key_file_wins_over_the_environment(self, tmp_path: Path) -> None:
        path = tmp_path / "k"
        path.write_text(KEY + "\n")
        account = config.load_key(key_file=str(path), env={config.KEY_ENV: "0x" + "11" * 32})
        assert account.key.hex().removeprefix("0x") == KEY[2:]

    def test_the_key_file_env_then_the_key_env(self, tmp_path: Path) -> None:
        path = tmp_path / "k"
        path.write_text(KEY[2:])
        assert config.load_key(env={config.KEY_FILE_ENV: str(path)}).key.hex().endswith(KEY[2:])
        assert config.load_key(env={config.KEY_ENV: KEY}).key.hex().endswith(KEY[2:])

    @pytest.mark.parametrize("text", ["0x" + "zz" * 32, "0x1234abcd5678", "0x" + "00" * 32, "ff" * 32])
    def test_a_bad_key_is_reported_by_source_never_by_value(self, text: str) -> None:
        with pytest.raises(config.ConfigError) as caught:
            config.load_key(env={config.KEY_ENV: text})
        assert text not in str(caught.value) and text[2:] not in str(caught.value)
        assert config.KEY_ENV in str(caught.value)

    def test_no_key_at_all(self, tmp_path: Path) -> None:
        with pytest.raises(config.ConfigError, match="no relayer key"):
            config.load_key(env={})
        with pytest.raises(config.ConfigError, match="cannot read key file"):
            config.load_key(key_file=str(tmp_path / "missing"), env={})


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@base-sepolia.g.alchemy.com/v2/KEY?x=1", "https://base-sepolia.g.alchemy.com"),
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
    ],
)
def test_rpc_urls_are_shown_as_scheme_and_host(url: str, shown: str) -> None:
    assert config.redact_url(url) == shown


@pytest.mark.parametrize(
    ("listen", "address"),
    [
        ("127.0.0.1:4040", ("127.0.0.1", 4040)),
        (":4040", ("0.0.0.0", 4040)),
        ("[::1]:0", ("::1", 0)),
    ],
)
def test_listen_addresses(listen: str, address: tuple[str, int]) -> None:
    assert config.listen_address(listen) == address


@pytest.mark.parametrize("listen", ["4040", "host:", "h:99999", "h:x"])
def test_bad_listen_addresses(listen: str) -> None:
    with pytest.raises(config.ConfigError):
        config.listen_address(listen)
