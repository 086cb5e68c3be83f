"""kube402's only door to an EVM node: RPC, the token and registry bindings, and the local dev chain.

Nothing else in kube402 imports web3. Submodules are imported on use (web3 costs ~2 s to import):
``kube402.chain.rpc`` (connection, chain-id check, bounded receipt waits, error translation),
``kube402.chain.token`` (EIP-3009 USDC), ``kube402.chain.registry`` (ERC-8004 identity registry),
``kube402.chain.devchain`` (a local anvil made to look like Base Sepolia) and ``kube402.chain.artifacts``
(the committed compiler output of ``contracts/``).
"""

__all__ = ["artifacts", "devchain", "registry", "rpc", "token"]
