"""``kube402 facilitator``: an x402 facilitator for EVM ``exact`` payments with EIP-3009 tokens (USDC).

``POST /verify``, ``POST /settle`` and ``GET /supported`` for x402 v1 and v2 bodies, plus ``/healthz``,
``/readyz`` and ``/metrics``. Payment logic is the x402 package's EVM mechanism; kube402 adds the relayer
(one nonce sequence), the settlement ledger (no double broadcast, pending settlements) and fail-closed
answers. Modules, bottom up: ``wire`` (pure request/response shapes), ``config`` (settings, key loading),
``relayer`` (the chain side), ``network`` (one chain: node, relayer, x402 schemes), ``ledger`` (idempotent
settles), ``metrics``, ``service`` (verify/settle), ``app`` (RSGI routes), ``main``
(:class:`~kube402.chain.facilitator.main.Facilitator`, the in-process server). Only ``kube402.cli`` starts it.
"""

__all__ = ["app", "config", "ledger", "main", "metrics", "network", "relayer", "service", "wire"]
