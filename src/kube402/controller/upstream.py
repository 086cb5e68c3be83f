"""Where an offer's upstream answers, and whether it is healthy.

Resolution is pluggable (SPEC 5.1): ``dns`` uses the cluster DNS name; ``endpointslice`` (clusters without
cluster DNS, such as ``kube402 dev``) goes through the Service object: an ExternalName Service resolves to its
external name, any other Service to the first ready address of its EndpointSlices. The verifier's proxy mode
uses the same resolver. The probe is one HTTP GET, 2 s timeout, redirects not followed; < 500 is healthy.
"""

from __future__ import annotations

import httpx

from kube402.controller.status import UpstreamObservation
from kube402.kube.endpoints import Resolution, UnresolvableError, resolve_base_url

__all__ = ["Resolution", "UnresolvableError", "probe", "resolve_base_url"]


async def probe(http: httpx.AsyncClient, url: str, *, timeout: float = 2.0) -> UpstreamObservation:
    try:
        # A fresh connection per probe, like kubelet's: a reused keep-alive connection can outlive the
        # listener and report a dead upstream as healthy.
        resp = await http.get(url, timeout=timeout, follow_redirects=False, headers={"Connection": "close"})
    except httpx.HTTPError as err:
        text = str(err) or type(err).__name__
        return UpstreamObservation.transport_error(f"GET {url}: {text}")
    return UpstreamObservation.from_status(resp.status_code)
