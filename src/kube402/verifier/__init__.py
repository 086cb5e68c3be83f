"""kube402.verifier."""
