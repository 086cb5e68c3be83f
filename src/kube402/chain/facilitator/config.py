"""Settings of ``kube402 facilitator``: networks with their RPC URLs, the relayer key, timeouts and limits.

The relayer key comes from ``--key-file``, ``$KUBE402_FACILITATOR_KEY_FILE`` or ``$KUBE402_FACILITATOR_KEY``
(in that order). It is held as an eth-account ``LocalAccount`` that no repr, log line or error message ever
shows: a malformed key is reported by its source only. RPC URLs may embed provider API keys, so they are
shown through :func:`redact_url` (scheme and host) everywhere but in the connection itself.

Light to import (the CLI builds its parser from the defaults here): eth-account and the x402 package's v1
network table are imported on use.
"""

from __future__ import annotations

import dataclasses
import os
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from kube402.api import chains

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

__all__ = [
    "DEFAULT_LISTEN",
    "DEFAULT_NETWORK",
    "KEY_ENV",
    "KEY_FILE_ENV",
    "ConfigError",
    "NetworkConfig",
    "Settings",
    "listen_address",
    "load_key",
    "networks_from",
    "parse_network",
    "redact_url",
]

DEFAULT_LISTEN: Final = "127.0.0.1:4040"
DEFAULT_NETWORK: Final = chains.DEFAULT_CHAIN
KEY_ENV: Final = "KUBE402_FACILITATOR_KEY"
KEY_FILE_ENV: Final = "KUBE402_FACILITATOR_KEY_FILE"
TOKEN_ENV: Final = "KUBE402_FACILITATOR_TOKEN"
TOKEN_FILE_ENV: Final = "KUBE402_FACILITATOR_TOKEN_FILE"
DEFAULT_MAX_GAS_PRICE: Final = 500 * 10**9
"""500 gwei: above it the relayer sends nothing (a fee spike or a hostile node must not drain it)."""
_CAIP2: Final = re.compile(r"^eip155:([1-9][0-9]{0,18})$")
_KEY: Final = re.compile(r"^(?:0x)?[0-9a-fA-F]{64}$")


class ConfigError(ValueError):
    """The settings are unusable; the message never contains key material."""


@dataclasses.dataclass(frozen=True, slots=True)
class NetworkConfig:
    caip2: str
    """``eip155:<chain id>``: the v2 network id."""
    chain_id: int
    v1_name: str | None
    """The x402 v1 name of this chain (``base-sepolia``), or None when v1 has none."""
    rpc_url: str = dataclasses.field(repr=False)

    @property
    def label(self) -> str:
        """A short name for logs and metric labels."""
        return self.v1_name or self.caip2


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    networks: tuple[NetworkConfig, ...]
    """One entry per chain; at least one."""
    listen: str = DEFAULT_LISTEN
    """``host:port``; an empty host means all interfaces."""
    confirmation_timeout: float = 20.0
    """Seconds a settle waits for its receipt before answering ``settlement_pending``; a retry waits again."""
    receipt_poll: float = 0.01
    """Seconds before the first receipt lookup is repeated; the interval then doubles up to 0.5 s."""
    rpc_timeout: float = 10.0
    """Per JSON-RPC request timeout."""
    gas_limit: int = 300_000
    """Gas limit of every relayed transfer: a cap on what one settlement can cost the relayer."""
    workers: int = 64
    """Worker threads running the (blocking) x402 mechanism: the concurrency of verify + settle."""
    max_body_bytes: int = 64 * 1024
    """Larger request bodies are refused with ``413``."""
    pending_grace: float = 300.0
    """A pending settlement is remembered until its ``validBefore`` plus this many seconds."""
    auth_token: str | None = dataclasses.field(default=None, repr=False)
    """Bearer token every ``/verify``, ``/settle`` and ``/release`` must carry (None: open, local use)."""
    max_gas_price: int | None = DEFAULT_MAX_GAS_PRICE
    """Wei per gas above which nothing is broadcast (503); None: no cap."""
    replace_after: float = 60.0
    """Seconds a settlement transaction may stay unmined before a retry re-broadcasts it with the same nonce
    and a bumped fee (a stuck nonce stalls every later settle)."""
    allow_smart_wallets: bool = False
    """Accept EIP-1271 / ERC-6492 payers (contract signatures can pass simulation and revert on chain)."""

    def __post_init__(self) -> None:
        if not self.networks:
            raise ConfigError("at least one network with an RPC URL is required")
        ids = [n.chain_id for n in self.networks]
        if len(set(ids)) != len(ids):
            raise ConfigError("a network is configured twice")
        if (
            self.confirmation_timeout <= 0
            or self.rpc_timeout <= 0
            or self.receipt_poll <= 0
            or self.replace_after <= 0
        ):
            raise ConfigError("timeouts must be positive")
        if not 21_000 <= self.gas_limit <= 10_000_000:
            raise ConfigError("gas limit must be between 21000 and 10000000")
        if not 1 <= self.workers <= 1024:
            raise ConfigError("workers must be between 1 and 1024")


def parse_network(spec: str, *, default_network: str = DEFAULT_NETWORK) -> NetworkConfig:
    """``network=url`` or a bare ``url`` (for ``default_network``). A network is a kube402 chain name
    (``base-sepolia``), an alias, or any ``eip155:<chain id>``."""
    name, sep, url = spec.partition("=")
    if not sep or "://" in name:
        name, url = default_network, spec
    name, url = name.strip(), url.strip()
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"RPC URL for {name} must be http(s)://host[:port][/path]")
    from x402.mechanisms.evm.v1.constants import V1_NETWORK_CHAIN_IDS

    chain_id = _chain_id(name, V1_NETWORK_CHAIN_IDS)
    v1_names = {cid: v1 for v1, cid in V1_NETWORK_CHAIN_IDS.items()}
    return NetworkConfig(
        caip2=f"eip155:{chain_id}", chain_id=chain_id, v1_name=v1_names.get(chain_id), rpc_url=url
    )


def _chain_id(name: str, v1_chain_ids: Mapping[str, int]) -> int:
    try:
        return chains.lookup(name).chain_id
    except chains.UnknownNetworkError:
        pass
    match = _CAIP2.fullmatch(name.strip().lower())
    if match:
        return int(match.group(1))
    if name in v1_chain_ids:
        return v1_chain_ids[name]
    raise ConfigError(
        f"unknown network {name!r} (use a chain name such as base-sepolia, or eip155:<chain id>)"
    )


def load_key(*, key_file: str | None = None, env: Mapping[str, str] | None = None) -> LocalAccount:
    """The relayer account from ``key_file``, else ``$KUBE402_FACILITATOR_KEY_FILE``, else
    ``$KUBE402_FACILITATOR_KEY``. The key is 32 bytes of hex, ``0x`` optional, surrounding whitespace
    ignored."""
    env = os.environ if env is None else env
    path = key_file or env.get(KEY_FILE_ENV)
    if path:
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise ConfigError(f"cannot read key file {path}: {err.strerror}") from None
        source = f"key file {path}"
    elif env.get(KEY_ENV):
        text, source = env[KEY_ENV], f"${KEY_ENV}"
    else:
        raise ConfigError(f"no relayer key: pass --key-file or set {KEY_FILE_ENV} or {KEY_ENV}")
    from eth_account import Account

    text = text.strip()
    if not _KEY.fullmatch(text):
        raise ConfigError(f"{source} does not hold a 32-byte hex private key")
    try:
        account: LocalAccount = Account.from_key(text if text.startswith("0x") else "0x" + text)
    except Exception:  # noqa: BLE001 - eth-keys' message could quote the key; report the source only
        raise ConfigError(f"{source} does not hold a valid secp256k1 private key") from None
    return account


def load_token(*, token_file: str | None = None, env: Mapping[str, str] | None = None) -> str | None:
    """The bearer token verifiers must send, from ``token_file``, ``$KUBE402_FACILITATOR_TOKEN_FILE`` or
    ``$KUBE402_FACILITATOR_TOKEN``; None when none is configured. At least 16 characters."""
    env = os.environ if env is None else env
    path = token_file or env.get(TOKEN_FILE_ENV)
    if path:
        try:
            text = Path(path).read_text().strip()
        except OSError as err:
            raise ConfigError(f"cannot read token file {path}: {err.strerror}") from None
    else:
        text = env.get(TOKEN_ENV, "").strip()
        if not text:
            return None
    if len(text) < 16 or not text.isascii() or any(c.isspace() for c in text):
        raise ConfigError("the facilitator token must be at least 16 visible ASCII characters")
    return text


def redact_url(url: str) -> str:
    """``scheme://host[:port]`` of an RPC URL: paths, queries and user info often carry API keys."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def listen_address(listen: str) -> tuple[str, int]:
    """``host:port`` → (host, port); ``:4040`` listens on all interfaces."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen must be host:port, got {listen!r}")
    return (host.strip("[]") or "0.0.0.0", int(port))


def networks_from(specs: Sequence[str]) -> tuple[NetworkConfig, ...]:
    return tuple(parse_network(s) for s in specs)
