"""Whether an offer's upstream is healthy (SPEC 3.1 UpstreamHealthy).

The probe is one HTTP GET, 2 s timeout, redirects not followed; < 500 is healthy. Where the upstream answers
is :func:`kube402.kube.endpoints.resolve_base_url`'s question (SPEC 5.1).
"""

from __future__ import annotations

import httpx

from kube402.controller.status import UpstreamObservation

__all__ = ["probe"]


async def probe(http: httpx.AsyncClient, url: str, *, timeout: float = 2.0) -> UpstreamObservation:
    try:
        # A fresh connection per probe, like kubelet's: a reused keep-alive connection can outlive the
        # listener and report a dead upstream as healthy.
        resp = await http.get(url, timeout=timeout, follow_redirects=False, headers={"Connection": "close"})
    except httpx.HTTPError as err:
        text = str(err) or type(err).__name__
        return UpstreamObservation.transport_error(f"GET {url}: {text}")
    return UpstreamObservation.from_status(resp.status_code)
