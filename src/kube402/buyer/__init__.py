"""``kube402 buyer``: an OpenAI-compatible proxy that pays x402 sellers from pre-signed EIP-3009 vouchers.

It never holds a private key. The pure parts are ``terms`` (parse a seller's 402), ``vouchers`` (the voucher
model, exact matching against a requirement, payment payloads), ``config`` (the two ConfigMaps' files) and
``ledger`` (hold / confirm / release). ``statefile`` writes the consumed set atomically; ``proxy`` makes the
HTTP attempts; ``app`` adapts it to granian (RSGI); ``main`` wires config sources, state and servers.
"""

__all__ = ["app", "config", "ledger", "main", "metrics", "proxy", "statefile", "terms", "vouchers"]
