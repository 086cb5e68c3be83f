"""The HTML paywall page sent instead of the JSON body when a browser asks (SPEC 7.6).

Why a separate module: it is presentation, not protocol; ``requirements`` memoizes its output per challenge.
Boundary: PURE string building. Every dynamic value (error text, resource URL, description, addresses) is
HTML-escaped, since the URL and the refusal reason can come from the client or the facilitator.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kube402.api import money

if TYPE_CHECKING:
    from kube402.x402 import requirements

__all__ = ["render_html"]

_PAGE = (
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    "<title>Payment required</title>"
    "<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}}"
    "code{{word-break:break-all}}</style></head><body>"
    "<h1>Payment required</h1>"
    "<p>{error}</p>"
    "<p>Resource: <code>{url}</code><br>{description}</p>"
    "<h2>Accepted payments</h2><ul>{rows}</ul>"
    "<h2>How to pay</h2>"
    '<p>This resource is sold through the <a href="https://x402.org">x402</a> protocol. Use an x402 client '
    "(for example <code>kube402 buy</code>): it reads the <code>PAYMENT-REQUIRED</code> header of this "
    "response, signs a token transfer authorization (EIP-3009) for the amount above, and repeats the request "
    "with the signed payment in a <code>PAYMENT-SIGNATURE</code> header. No gas is needed; the payment is "
    "settled when the request is served.</p>"
    "</body></html>\n"
)


def render_html(
    *,
    error: str,
    resource_url: str,
    description: str,
    requirements: Sequence[requirements.Requirement],
) -> bytes:
    """The paywall page (UTF-8) listing each payment option's price, network, recipient and token."""
    esc = html.escape
    rows = []
    for req in requirements:
        symbol = "USDC" if req.asset.lower() == req.chain.usdc.lower() else req.eip712_name
        price = money.format_atomic(req.amount, decimals=req.decimals)
        network = f"{req.chain.name} ({req.chain.caip2})"
        rows.append(
            f"<li><strong>{esc(price)} {esc(symbol)}</strong> on {esc(network)}<br>"
            f"pay to <code>{esc(req.pay_to)}</code><br>token <code>{esc(req.asset)}</code></li>"
        )
    page = _PAGE.format(
        error=esc(error), url=esc(resource_url), description=esc(description), rows="".join(rows)
    )
    return page.encode("utf-8")
