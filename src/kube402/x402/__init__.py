"""Protocol adapter over the PyPI ``x402`` package: headers, requirements, local checks, facilitator client.

No cluster and no chain RPC. ``requirements`` and ``precheck`` are pure; ``headers`` is the defensive
decoder for attacker-controlled payment headers; ``facilitator_client`` is the only module doing I/O (HTTP
to the facilitator). Submodules are imported explicitly (``from kube402.x402 import headers``) so that the
pure ones do not pull in ``httpx``.
"""

__all__ = ["codes", "facilitator_client", "headers", "paywall", "precheck", "requirements"]
