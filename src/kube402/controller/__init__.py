"""kube402.controller."""
