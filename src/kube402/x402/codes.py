"""The closed set of refusal codes kube402 itself emits (X402.md section 9, SPEC section 7.7).

These strings travel in the 402's ``error`` field, in JSON error bodies and as bounded metric labels.
Facilitator reasons are an *open* set and are deliberately not listed here: they are passed through as
strings, never switched on, except ``settlement_pending`` (non-terminal), which is named below because
kube402 also emits it. Pure data.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["DEFAULT_CHALLENGE_ERROR", "SETTLEMENT_PENDING", "Code"]


class Code(enum.StrEnum):
    """A refusal reason kube402 produces (its own codes plus the spec's local-check names)."""

    PAYMENT_REQUIRED = "payment_required"
    REQUIREMENTS_MISMATCH = "requirements_mismatch"
    AUTHORIZATION_WINDOW_TOO_LONG = "authorization_window_too_long"
    NONCE_ALREADY_USED = "nonce_already_used"
    INVALID_PAYMENT_HEADER = "invalid_payment_header"
    CONFLICTING_PAYMENT_HEADERS = "conflicting_payment_headers"
    PAYMENT_HEADER_TOO_LARGE = "payment_header_too_large"
    INVALID_X402_VERSION = "invalid_x402_version"
    PAYMENT_IN_PROGRESS = "payment_in_progress"
    OFFER_UNAVAILABLE = "offer_unavailable"
    FACILITATOR_UNAVAILABLE = "facilitator_unavailable"
    FACILITATOR_UNSUPPORTED = "facilitator_unsupported"
    SETTLEMENT_PENDING = "settlement_pending"
    NOT_READY = "not_ready"
    UNTRUSTED_SOURCE = "untrusted_source"
    MISSING_FORWARDED_URI = "missing_forwarded_uri"
    ROUTE_DENIED = "route_denied"
    ROUTE_NOT_FOUND = "route_not_found"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    URI_TOO_LONG = "uri_too_long"
    INVALID_REQUEST = "invalid_request"
    # Local checks reuse the x402 spec's reason names (SPEC 7.7 step 9).
    VALID_AFTER = "invalid_exact_evm_payload_authorization_valid_after"
    VALID_BEFORE = "invalid_exact_evm_payload_authorization_valid_before"
    INVALID_SIGNATURE = "invalid_exact_evm_payload_signature"


DEFAULT_CHALLENGE_ERROR: Final = "Payment required for this resource"
"""The 402 ``error`` text when no payment was sent (SPEC 7.6)."""

SETTLEMENT_PENDING: Final = Code.SETTLEMENT_PENDING.value
"""The one facilitator reason with special meaning: the settlement outcome is not known yet."""
