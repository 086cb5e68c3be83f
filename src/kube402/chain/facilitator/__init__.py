"""kube402.chain.facilitator."""
