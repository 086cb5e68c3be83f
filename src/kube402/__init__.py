"""kube402: sell HTTP services for x402 stablecoin micropayments on Kubernetes."""

__version__ = "0.1.0"
__all__ = ["__version__"]
