"""kube402.buyer."""
