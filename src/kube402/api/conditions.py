"""Status conditions with Kubernetes API-convention semantics.

``lastTransitionTime`` is set when a condition first appears and when its ``status`` flips; a change of
reason or message alone keeps it. Conditions are kept in the fixed SPEC order. Pure: the caller passes
``now``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "ORDER",
    "Condition",
    "ConditionType",
    "Reason",
    "Status",
    "find",
    "from_raw",
    "rfc3339",
    "semantically_equal",
    "set_condition",
    "to_raw",
]


class Status(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"

    @classmethod
    def of(cls, value: bool) -> Status:
        return cls.TRUE if value else cls.FALSE


class ConditionType(enum.StrEnum):
    MODEL_READY = "ModelReady"
    UPSTREAM_HEALTHY = "UpstreamHealthy"
    PAYMENT_GATE_READY = "PaymentGateReady"
    ROUTE_PUBLISHED = "RoutePublished"
    REGISTERED = "Registered"
    READY = "Ready"


ORDER: tuple[ConditionType, ...] = tuple(ConditionType)


class Reason(enum.StrEnum):
    SKIPPED = "Skipped"
    MISSING_MODEL = "MissingModel"
    DECLARED = "Declared"
    MISSING_SERVICE = "MissingService"
    UPSTREAM_NOT_PERMITTED = "UpstreamNotPermitted"
    UNHEALTHY = "Unhealthy"
    HEALTHY = "Healthy"
    PAUSED = "Paused"
    INVALID_PRICE = "InvalidPrice"
    INVALID_NETWORK = "InvalidNetwork"
    INVALID_SPEC = "InvalidSpec"
    WAITING_FOR_UPSTREAM = "WaitingForUpstream"
    WAITING_FOR_PAYMENT_GATE = "WaitingForPaymentGate"
    APPLY_FAILED = "ApplyFailed"
    RECONCILED = "Reconciled"
    INVALID_PATH = "InvalidPath"
    PATH_CONFLICT = "PathConflict"
    WAITING_FOR_INGRESS = "WaitingForIngress"
    DISABLED = "Disabled"
    SINGLETON_CONFLICT = "SingletonConflict"
    WAITING_FOR_ROUTE = "WaitingForRoute"
    PENDING = "Pending"
    REGISTERED = "Registered"
    OFF_CHAIN_ONLY = "OffChainOnly"
    # RegistrationRequest phases surfaced as Registered reasons (SPEC 3.1 row 5; issue 12)
    PUBLISHING = "Publishing"
    REGISTERING = "Registering"
    AWAITING_EXTERNAL_REGISTRATION = "AwaitingExternalRegistration"
    TOMBSTONED = "Tombstoned"
    RECONCILING = "Reconciling"


@dataclasses.dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str
    last_transition_time: str = ""

    def same_state(self, other: Condition) -> bool:
        return (self.type, self.status, self.reason, self.message) == (
            other.type,
            other.status,
            other.reason,
            other.message,
        )

    @property
    def is_true(self) -> bool:
        return self.status == Status.TRUE


def rfc3339(now: dt.datetime) -> str:
    """RFC 3339 UTC with second precision (``2026-11-29T03:05:38Z``)."""
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_raw(raw: object) -> list[Condition]:
    """Tolerant parse of ``status.conditions``: malformed entries are dropped."""
    out: list[Condition] = []
    if not isinstance(raw, list):
        return out
    for item in raw:
        if not isinstance(item, Mapping) or not isinstance(item.get("type"), str):
            continue
        out.append(
            Condition(
                type=item["type"],
                status=str(item.get("status", Status.UNKNOWN)),
                reason=str(item.get("reason", "")),
                message=str(item.get("message", "")),
                last_transition_time=str(item.get("lastTransitionTime", "")),
            )
        )
    return out


def to_raw(conditions: Iterable[Condition]) -> list[dict[str, Any]]:
    return [
        {
            "type": c.type,
            "status": c.status,
            "reason": c.reason,
            "message": c.message,
            "lastTransitionTime": c.last_transition_time,
        }
        for c in conditions
    ]


def find(conditions: Sequence[Condition], type_: str) -> Condition | None:
    for c in conditions:
        if c.type == type_:
            return c
    return None


def _order_key(c: Condition) -> tuple[int, str]:
    try:
        return (ORDER.index(ConditionType(c.type)), c.type)
    except ValueError:
        return (len(ORDER), c.type)


def set_condition(
    conditions: Sequence[Condition],
    *,
    type: ConditionType,
    status: Status | bool,
    reason: Reason | str,
    message: str,
    now: dt.datetime,
) -> list[Condition]:
    """Return a new list with ``type`` set; lastTransitionTime moves only when status flips."""
    status_value = Status.of(status) if isinstance(status, bool) else status
    previous = find(conditions, type.value)
    if previous is not None and previous.status == status_value.value and previous.last_transition_time:
        ltt = previous.last_transition_time
    else:
        ltt = rfc3339(now)
    new = Condition(type.value, status_value.value, str(reason), message, ltt)
    rest = [c for c in conditions if c.type != type.value]
    return sorted([*rest, new], key=_order_key)


def semantically_equal(a: Sequence[Condition], b: Sequence[Condition]) -> bool:
    """Compare by type/status/reason/message, order-insensitive."""
    if len(a) != len(b):
        return False
    ka = sorted((c.type, c.status, c.reason, c.message) for c in a)
    kb = sorted((c.type, c.status, c.reason, c.message) for c in b)
    return ka == kb
