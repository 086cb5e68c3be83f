"""Conditions with API-convention semantics (SPEC 3.1, 3.3): order, lastTransitionTime, semantic equality."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kube402.api import conditions as c

T0 = dt.datetime(2026, 3, 27, 12, 0, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(seconds=90)
CT = c.ConditionType


def at(seconds: int) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


class TestRfc3339:
    def test_utc_second_precision_with_z(self) -> None:
        assert c.rfc3339(dt.datetime(2026, 11, 29, 3, 5, 38, 999_999, tzinfo=dt.UTC)) == (
            "2026-11-29T03:05:38Z"
        )

    def test_other_offsets_are_converted_to_utc(self) -> None:
        tz = dt.timezone(dt.timedelta(hours=2))
        assert c.rfc3339(dt.datetime(2026, 1, 1, 1, 0, 0, tzinfo=tz)) == "2025-12-31T23:00:00Z"


class TestLastTransitionTime:
    def test_a_new_condition_gets_now(self) -> None:
        conds = c.set_condition([], type=CT.READY, status=False, reason="Reconciling", message="m", now=T0)
        assert conds == [c.Condition("Ready", "False", "Reconciling", "m", "2026-03-27T12:00:00Z")]

    def test_a_reason_or_message_change_keeps_it(self) -> None:
        first = c.set_condition(
            [],
            type=CT.UPSTREAM_HEALTHY,
            status=False,
            reason=c.Reason.MISSING_SERVICE,
            message="Upstream Service does not exist",
            now=T0,
        )
        second = c.set_condition(
            first,
            type=CT.UPSTREAM_HEALTHY,
            status=False,
            reason=c.Reason.UNHEALTHY,
            message="HTTP 503 from upstream",
            now=T1,
        )
        assert second == [
            c.Condition(
                "UpstreamHealthy", "False", "Unhealthy", "HTTP 503 from upstream", "2026-03-27T12:00:00Z"
            )
        ]

    def test_a_status_flip_moves_it(self) -> None:
        first = c.set_condition([], type=CT.READY, status=False, reason="Reconciling", message="m", now=T0)
        second = c.set_condition(first, type=CT.READY, status=True, reason="Reconciled", message="m", now=T1)
        assert second[0].last_transition_time == "2026-03-27T12:01:30Z"

    def test_a_missing_previous_time_is_filled_in(self) -> None:
        previous = [c.Condition("Ready", "True", "Reconciled", "m", "")]
        conds = c.set_condition(
            previous, type=CT.READY, status=True, reason="Reconciled", message="m", now=T1
        )
        assert conds[0].last_transition_time == "2026-03-27T12:01:30Z"

    def test_status_may_be_given_as_enum_or_bool(self) -> None:
        a = c.set_condition([], type=CT.READY, status=c.Status.UNKNOWN, reason="R", message="", now=T0)
        b = c.set_condition([], type=CT.READY, status=True, reason="R", message="", now=T0)
        assert (a[0].status, b[0].status) == ("Unknown", "True")

    @settings(max_examples=300)
    @given(
        updates=st.lists(
            st.tuples(
                st.sampled_from(list(CT)),
                st.sampled_from(["True", "False", "Unknown"]),
                st.sampled_from(["A", "B"]),
                st.sampled_from(["x", "y"]),
            ),
            max_size=30,
        )
    )
    def test_it_is_always_the_time_of_the_latest_status_change(
        self, updates: list[tuple[c.ConditionType, str, str, str]]
    ) -> None:
        conds: list[c.Condition] = []
        model: dict[str, tuple[str, str]] = {}  # type → (status, time of the latest flip)
        for i, (ctype, status, reason, message) in enumerate(updates):
            now = at(i)
            conds = c.set_condition(
                conds, type=ctype, status=c.Status(status), reason=reason, message=message, now=now
            )
            if ctype.value not in model or model[ctype.value][0] != status:
                model[ctype.value] = (status, c.rfc3339(now))
            else:
                model[ctype.value] = (status, model[ctype.value][1])
        assert {x.type: (x.status, x.last_transition_time) for x in conds} == model
        assert len(conds) == len(model)


class TestOrder:
    def test_the_spec_order(self) -> None:
        assert [t.value for t in c.ORDER] == [
            "ModelReady",
            "UpstreamHealthy",
            "PaymentGateReady",
            "RoutePublished",
            "Registered",
            "Ready",
        ]

    @settings(max_examples=200)
    @given(types=st.permutations(list(CT)))
    def test_conditions_come_out_in_spec_order_whatever_order_they_are_set_in(
        self, types: list[c.ConditionType]
    ) -> None:
        conds: list[c.Condition] = []
        for t in types:
            conds = c.set_condition(conds, type=t, status=True, reason="R", message="", now=T0)
        assert [x.type for x in conds] == [t.value for t in c.ORDER]

    def test_foreign_types_are_kept_after_ours_sorted_by_name(self) -> None:
        conds = [c.Condition("Zeta", "True", "R", ""), c.Condition("Alpha", "True", "R", "")]
        conds = c.set_condition(conds, type=CT.READY, status=True, reason="R", message="", now=T0)
        conds = c.set_condition(conds, type=CT.MODEL_READY, status=True, reason="R", message="", now=T0)
        assert [x.type for x in conds] == ["ModelReady", "Ready", "Alpha", "Zeta"]

    def test_set_condition_does_not_mutate_its_input(self) -> None:
        before = [c.Condition("Ready", "False", "Reconciling", "m", "2026-01-01T00:00:00Z")]
        snapshot = list(before)
        c.set_condition(before, type=CT.READY, status=True, reason="Reconciled", message="m", now=T0)
        assert before == snapshot


class TestRawConversion:
    def test_round_trip(self) -> None:
        conds = [
            c.Condition("ModelReady", "True", "Skipped", "m", "2026-01-01T00:00:00Z"),
            c.Condition("Ready", "False", "Reconciling", "n", "2026-01-02T00:00:00Z"),
        ]
        raw = c.to_raw(conds)
        assert raw[0] == {
            "type": "ModelReady",
            "status": "True",
            "reason": "Skipped",
            "message": "m",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
        assert c.from_raw(raw) == conds

    @pytest.mark.parametrize("raw", [None, "x", 3, {"type": "Ready"}], ids=repr)
    def test_a_non_list_is_no_conditions(self, raw: object) -> None:
        assert c.from_raw(raw) == []

    def test_malformed_entries_are_dropped_and_missing_fields_defaulted(self) -> None:
        raw = [None, "Ready", {"status": "True"}, {"type": 5}, {"type": "Ready"}]
        assert c.from_raw(raw) == [c.Condition("Ready", "Unknown", "", "", "")]

    def test_find(self) -> None:
        conds = [c.Condition("Ready", "True", "R", "")]
        assert c.find(conds, "Ready") is conds[0]
        assert c.find(conds, "ModelReady") is None


BASE = (
    c.Condition("ModelReady", "True", "Skipped", "m", "2026-01-01T00:00:00Z"),
    c.Condition("Ready", "True", "Reconciled", "ok", "2026-01-01T00:00:00Z"),
)


class TestSemanticEquality:
    base: ClassVar[list[c.Condition]] = list(BASE)

    def test_times_and_order_do_not_matter(self) -> None:
        other = [
            c.Condition("Ready", "True", "Reconciled", "ok", "2030-01-01T00:00:00Z"),
            c.Condition("ModelReady", "True", "Skipped", "m", ""),
        ]
        assert c.semantically_equal(self.base, other)

    @pytest.mark.parametrize("field", ["status", "reason", "message", "type"])
    def test_any_of_type_status_reason_message_matters(self, field: str) -> None:
        changed = {"type": "Ready", "status": "True", "reason": "Reconciled", "message": "ok"}
        changed[field] = "different"
        other = [self.base[0], c.Condition(**changed)]
        assert not c.semantically_equal(self.base, other)

    def test_a_missing_condition_matters(self) -> None:
        assert not c.semantically_equal(self.base, self.base[:1])
        assert not c.semantically_equal([], self.base)
