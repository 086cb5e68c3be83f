"""kube402.devenv."""
