"""Pure data: kube402's API surface (CRD models, conditions, money, chains, names). No I/O."""

from kube402.api import chains, conditions, money, names, v1alpha1, validation

__all__ = ["chains", "conditions", "money", "names", "v1alpha1", "validation"]
