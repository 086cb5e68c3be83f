"""kube402.kube."""
