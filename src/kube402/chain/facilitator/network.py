"""One configured chain: its RPC node, the relayer and the x402 facilitator registered for it.

Each chain gets its own ``x402FacilitatorSync`` with the EVM ``exact`` scheme registered for exactly its
CAIP-2 id (v2) and, when x402 v1 has a name for the chain, the v1 scheme for that name — registering
several chains on one x402 facilitator would route them by the ``eip155:*`` pattern to whichever scheme
was registered first. Both schemes run with ``simulate_in_settle=True``; the v2 scheme's own pending store
is a no-op because the ledger owns pending settlements.

The node is checked once for the configured chain id before its first use (:meth:`Network.ensure_ready`);
until then, and whenever it cannot be asked, requests fail with :class:`Unavailable`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from eth_account.signers.local import LocalAccount
from web3.types import RPCEndpoint
from x402 import x402FacilitatorSync
from x402.mechanisms.evm.exact import ExactEvmFacilitatorScheme
from x402.mechanisms.evm.exact.facilitator import ExactEvmSchemeConfig
from x402.mechanisms.evm.exact.v1.facilitator import ExactEvmSchemeV1, ExactEvmSchemeV1Config

from kube402.chain import rpc
from kube402.chain.facilitator import config, relayer

__all__ = ["Network", "Unavailable", "redact"]

log = logging.getLogger(__name__)


class Unavailable(Exception):
    """The chain could not be asked; the answer is ``503`` and nothing was broadcast."""


class _NoPendingStore:
    """x402's PendingSettlementStore that remembers nothing: the ledger owns pending settlements."""

    def get(self, key: str) -> str | None:
        return None

    def set(self, key: str, tx_hash: str) -> None:
        return None

    def delete(self, key: str) -> None:
        return None


class Network:
    """One configured chain: its RPC node, relayer and x402 facilitator (v2, and v1 when named)."""

    def __init__(
        self,
        cfg: config.NetworkConfig,
        *,
        account: LocalAccount,
        settings: config.Settings,
        on_nonce: Callable[[int], None],
    ) -> None:
        self.config = cfg
        self.node = rpc.Rpc(cfg.rpc_url, request_timeout=settings.rpc_timeout)
        # web3's validation middleware asks eth_chainId before every eth_call (~15% of a settle's CPU);
        # the chain id is checked once in ensure_ready and cannot change under a URL, so cache just that.
        provider = self.node.w3.provider
        provider.cacheable_requests = {RPCEndpoint("eth_chainId")}
        provider.cache_allowed_requests = True
        self.relayer = relayer.Relayer(
            node=self.node,
            account=account,
            chain_id=cfg.chain_id,
            gas_limit=settings.gas_limit,
            confirmation_timeout=settings.confirmation_timeout,
            poll=settings.receipt_poll,
            on_nonce=on_nonce,
            max_gas_price=settings.max_gas_price,
            allow_smart_wallets=settings.allow_smart_wallets,
        )
        self.x402 = x402FacilitatorSync()
        self.x402.register(
            [cfg.caip2],
            ExactEvmFacilitatorScheme(
                self.relayer, ExactEvmSchemeConfig(simulate_in_settle=True), pending_store=_NoPendingStore()
            ),
        )
        if cfg.v1_name is not None:
            self.x402.register_v1(
                [cfg.v1_name], ExactEvmSchemeV1(self.relayer, ExactEvmSchemeV1Config(simulate_in_settle=True))
            )
        self._checked = False
        self._check_lock = asyncio.Lock()

    async def ensure_ready(self) -> None:
        """Check once that the node answers with the configured chain id; :class:`Unavailable` until then."""
        if self._checked:
            return
        async with self._check_lock:
            if self._checked:
                return
            try:
                await self.node.require_chain_id(self.config.chain_id)
            except rpc.WrongChain as err:
                log.error("%s: %s", self.config.label, redact(str(err), self.config.rpc_url))
                raise Unavailable("the RPC node serves another chain") from None
            except rpc.ChainError:
                raise Unavailable("the RPC node is unreachable") from None
            self._checked = True
            log.info(
                "network ready",
                extra={
                    "fields": {
                        "network": self.config.caip2,
                        "v1": self.config.v1_name,
                        "rpc": config.redact_url(self.config.rpc_url),
                        "relayer": self.relayer.address,
                    }
                },
            )

    @property
    def ready(self) -> bool:
        return self._checked


def redact(text: str, url: str) -> str:
    """``text`` with ``url`` shown as scheme and host only."""
    return text.replace(url, config.redact_url(url)) if url else text
