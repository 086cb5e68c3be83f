"""API-server errors translated at the boundary.

Callers match on a small tree instead of HTTP codes: NotFound, Conflict, Gone (watch expired), Invalid
(rejected by schema or admission) and Unavailable (transport trouble, 5xx, throttling) — the last is the
only one worth retrying blindly.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ApiError", "Conflict", "Gone", "Invalid", "NotFound", "Unavailable", "from_status"]


class ApiError(Exception):
    """The API server answered with a failure Status."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class Gone(ApiError):
    """The requested resourceVersion is too old (410): relist."""


class Invalid(ApiError):
    """The object was rejected (422 schema/CEL, 400 bad request, 403 forbidden)."""


class Unavailable(ApiError):
    """Transport error, timeout, 429 or 5xx: retry later."""


def from_status(code: int, body: Any) -> ApiError:
    reason = ""
    message = ""
    if isinstance(body, dict):
        reason = str(body.get("reason", ""))
        message = str(body.get("message", ""))
    elif body:
        message = str(body)[:500]
    cls: type[ApiError]
    if code == 404:
        cls = NotFound
    elif code == 409:
        cls = Conflict
    elif code == 410:
        cls = Gone
    elif code in (400, 403, 422):
        cls = Invalid
    elif code == 429 or code >= 500:
        cls = Unavailable
    else:
        cls = ApiError
    return cls(code, reason, message)
