"""The offer's status (SPEC 2.3, 3.1-3.3): exact condition strings, the Ready rule, semantic change detection."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kube402.api import conditions as c
from kube402.api import v1alpha1
from kube402.controller import status

T0 = dt.datetime(2026, 3, 27, 12, 0, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=5)
R = c.Reason
OK = status.CondValue(True, R.RECONCILED, "fine")


def make_offer(
    spec: dict[str, Any] | None = None,
    *,
    st_raw: dict[str, Any] | None = None,
    generation: int = 2,
    name: str = "demo",
) -> v1alpha1.ServiceOffer:
    raw: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "shop", "generation": generation},
        "spec": spec or {},
    }
    if st_raw is not None:
        raw["status"] = st_raw
    return v1alpha1.ServiceOffer.from_dict(raw)


def observed(**overrides: Any) -> status.Observed:
    values: dict[str, Any] = {
        "model": (True, R.SKIPPED, "HTTP offer does not require model preparation"),
        "upstream": status.UpstreamObservation.from_status(200),
        "gate": status.gate_ready(False),
        "route": status.route_ready("/services/demo"),
        "registered": (True, R.DISABLED, "Registration disabled"),
    }
    values.update(overrides)
    # Condition values may be written as (status, reason, message) tuples in the tables below.
    values = {
        k: status.CondValue(*v) if isinstance(v, tuple) and len(v) == 3 else v for k, v in values.items()
    }
    return status.Observed(**values)


def conds_of(st_: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {x["type"]: (x["status"], x["reason"], x["message"]) for x in st_["conditions"]}


class TestConditionStrings:
    @pytest.mark.parametrize(
        ("spec", "expected"),
        [
            pytest.param(
                {}, (True, "Skipped", "HTTP offer does not require model preparation"), id="no type"
            ),
            pytest.param(
                {"type": "http"},
                (True, "Skipped", "HTTP offer does not require model preparation"),
                id="http",
            ),
            pytest.param(
                {"type": "fine-tuning"},
                (True, "Skipped", "HTTP offer does not require model preparation"),
                id="fine-tuning",
            ),
            pytest.param(
                {"type": "inference"},
                (False, "MissingModel", "Inference offer is missing spec.model.name"),
                id="inference without model",
            ),
            pytest.param(
                {"type": "inference", "model": {"name": "", "runtime": "ollama"}},
                (False, "MissingModel", "Inference offer is missing spec.model.name"),
                id="inference with empty model name",
            ),
            pytest.param(
                {"type": "inference", "model": {"name": "qwen3:0.6b", "runtime": "ollama"}},
                (True, "Declared", "Model qwen3:0.6b declared"),
                id="inference with model",
            ),
        ],
    )
    def test_model_ready(self, spec: dict[str, Any], expected: tuple[bool, str, str]) -> None:
        assert status.model_condition(make_offer(spec)).astuple() == expected

    @pytest.mark.parametrize(
        ("obs", "expected"),
        [
            pytest.param(
                status.UpstreamObservation.missing(),
                (False, "MissingService", "Upstream Service does not exist"),
                id="missing",
            ),
            pytest.param(
                status.UpstreamObservation.from_status(200),
                (True, "Healthy", "Upstream responded with HTTP 200"),
                id="200",
            ),
            pytest.param(
                status.UpstreamObservation.from_status(404),
                (True, "Healthy", "Upstream responded with HTTP 404"),
                id="404 is healthy",
            ),
            pytest.param(
                status.UpstreamObservation.from_status(499),
                (True, "Healthy", "Upstream responded with HTTP 499"),
                id="499",
            ),
            pytest.param(
                status.UpstreamObservation.from_status(500),
                (False, "Unhealthy", "HTTP 500 from upstream"),
                id="500",
            ),
            pytest.param(
                status.UpstreamObservation.from_status(503),
                (False, "Unhealthy", "HTTP 503 from upstream"),
                id="503",
            ),
            pytest.param(
                status.UpstreamObservation.transport_error("connect refused"),
                (False, "Unhealthy", "connect refused"),
                id="transport error",
            ),
        ],
    )
    def test_upstream_healthy(self, obs: status.UpstreamObservation, expected: tuple[bool, str, str]) -> None:
        assert (obs.healthy, obs.reason, obs.message) == expected

    def test_transport_error_text_is_cut_to_256_characters(self) -> None:
        text = "x" * 255 + "yz" + "w" * 100
        obs = status.UpstreamObservation.transport_error(text)
        assert obs.message == text[:256] and len(obs.message) == 256

    def test_gate_route_and_registration_strings(self) -> None:
        assert status.PAUSED.astuple() == (False, "Paused", "Offer is paused")
        assert status.WAITING_FOR_UPSTREAM.astuple() == (
            False,
            "WaitingForUpstream",
            "Waiting for upstream health before publishing payment gate",
        )
        assert status.WAITING_FOR_GATE.astuple() == (
            False,
            "WaitingForPaymentGate",
            "Waiting for payment gate before publishing route",
        )
        assert status.gate_ready(False).astuple() == (True, "Reconciled", "Middleware is present")
        assert status.gate_ready(True).astuple() == (True, "Reconciled", "Proxy gate is present")
        assert status.route_ready("/services/demo").astuple() == (
            True,
            "Reconciled",
            "HTTPRoute published at /services/demo",
        )
        assert status.path_conflict("/p", ("other-ns", "older")).astuple() == (
            False,
            "PathConflict",
            "Path /p is already published by other-ns/older",
        )
        assert status.registered_condition(make_offer()).astuple() == (
            True,
            "Disabled",
            "Registration disabled",
        )

    def test_ready_strings(self) -> None:
        ready = conds_of(status.build(make_offer(), observed(), now=T0))["Ready"]
        assert ready == ("True", "Reconciled", "Offer reconciled successfully")
        not_ready = conds_of(status.build(make_offer(), observed(gate=status.PAUSED), now=T0))["Ready"]
        assert not_ready == ("False", "Reconciling", "Offer is not fully reconciled yet")


class TestBuild:
    def test_all_six_conditions_in_spec_order(self) -> None:
        st_ = status.build(make_offer(), observed(), now=T0)
        assert [x["type"] for x in st_["conditions"]] == [
            "ModelReady",
            "UpstreamHealthy",
            "PaymentGateReady",
            "RoutePublished",
            "Registered",
            "Ready",
        ]
        assert all(x["lastTransitionTime"] == "2026-03-27T12:00:00Z" for x in st_["conditions"])

    def test_the_values_passed_in_are_written_verbatim(self) -> None:
        st_ = status.build(
            make_offer(),
            observed(
                upstream=status.UpstreamObservation.missing(),
                gate=(False, R.INVALID_NETWORK, "Unsupported payment network solana"),
                route=status.WAITING_FOR_GATE,
            ),
            now=T0,
        )
        got = conds_of(st_)
        assert got["UpstreamHealthy"] == ("False", "MissingService", "Upstream Service does not exist")
        assert got["PaymentGateReady"] == ("False", "InvalidNetwork", "Unsupported payment network solana")
        assert got["RoutePublished"] == (
            "False",
            "WaitingForPaymentGate",
            "Waiting for payment gate before publishing route",
        )

    def test_scalar_fields(self) -> None:
        st_ = status.build(make_offer({"path": "/p/"}, generation=7), observed(), now=T0)
        assert st_["observedGeneration"] == 7
        assert st_["endpoint"] == "/p"
        assert "agentId" not in st_ and "registrationTxHash" not in st_

    def test_agent_fields_are_carried_over_and_zero_is_a_valid_id(self) -> None:
        offer = make_offer(st_raw={"agentId": "0", "registrationTxHash": "0xabc"})
        st_ = status.build(offer, observed(), now=T0)
        assert (st_["agentId"], st_["registrationTxHash"]) == ("0", "0xabc")

    def test_empty_agent_fields_are_not_written(self) -> None:
        st_ = status.build(make_offer(st_raw={"agentId": "", "registrationTxHash": 5}), observed(), now=T0)
        assert "agentId" not in st_ and "registrationTxHash" not in st_

    def test_last_transition_time_moves_only_on_a_status_flip(self) -> None:
        first = status.build(
            make_offer(), observed(upstream=status.UpstreamObservation.from_status(503)), now=T0
        )
        offer = make_offer(st_raw=first)
        second = status.build(offer, observed(upstream=status.UpstreamObservation.missing()), now=T1)
        third = status.build(make_offer(st_raw=second), observed(), now=T1 + dt.timedelta(seconds=1))
        times = [
            {x["type"]: x["lastTransitionTime"] for x in s["conditions"]} for s in (first, second, third)
        ]
        assert times[1]["UpstreamHealthy"] == "2026-03-27T12:00:00Z"  # reason changed, status did not
        assert times[1]["ModelReady"] == "2026-03-27T12:00:00Z"
        assert times[2]["UpstreamHealthy"] == "2026-03-27T12:05:01Z"  # False → True
        assert times[2]["Ready"] == "2026-03-27T12:05:01Z"
        assert times[2]["ModelReady"] == "2026-03-27T12:00:00Z"

    def test_conditions_of_unknown_types_are_dropped(self) -> None:
        offer = make_offer(
            st_raw={"conditions": [{"type": "Foo", "status": "True", "reason": "X", "message": ""}]}
        )
        st_ = status.build(offer, observed(), now=T0)
        assert "Foo" not in conds_of(st_)

    @settings(max_examples=200)
    @given(flags=st.tuples(*[st.booleans()] * 5))
    def test_ready_iff_the_five_others_are_true(self, flags: tuple[bool, ...]) -> None:
        model, up, gate, route, reg = flags
        obs = observed(
            model=(model, R.SKIPPED, "m"),
            upstream=status.UpstreamObservation.from_status(200 if up else 500),
            gate=(gate, R.RECONCILED, "g"),
            route=(route, R.RECONCILED, "r"),
            registered=(reg, R.DISABLED, "d"),
        )
        got = conds_of(status.build(make_offer(), obs, now=T0))
        assert got["Ready"][0] == ("True" if all(flags) else "False")
        assert [
            got[t][0] == "True"
            for t in ("ModelReady", "UpstreamHealthy", "PaymentGateReady", "RoutePublished", "Registered")
        ] == list(flags)


class TestStatusChanged:
    def current(self) -> dict[str, Any]:
        return status.build(make_offer(), observed(), now=T0)

    def test_a_rebuild_with_nothing_new_is_not_a_change(self) -> None:
        cur = self.current()
        again = status.build(make_offer(st_raw=cur), observed(), now=T1)
        assert not status.status_changed(cur, again)

    def test_times_and_order_alone_are_not_a_change(self) -> None:
        cur = self.current()
        other = dict(
            cur,
            conditions=[
                dict(x, lastTransitionTime="2030-01-01T00:00:00Z") for x in reversed(cur["conditions"])
            ],
        )
        assert not status.status_changed(cur, other)

    @pytest.mark.parametrize("field", ["status", "reason", "message"])
    def test_a_condition_field_change_is_a_change(self, field: str) -> None:
        cur = self.current()
        other = dict(cur, conditions=[dict(x) for x in cur["conditions"]])
        other["conditions"][2][field] = "Other"
        assert status.status_changed(cur, other)

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("endpoint", "/elsewhere"),
            ("observedGeneration", 3),
            ("agentId", "0"),
            ("registrationTxHash", "0x1"),
        ],
    )
    def test_a_scalar_change_is_a_change(self, field: str, value: Any) -> None:
        cur = self.current()
        assert status.status_changed(cur, dict(cur, **{field: value}))

    @pytest.mark.parametrize("current", [None, {}, "garbage", []], ids=repr)
    def test_no_current_status_is_a_change(self, current: Any) -> None:
        assert status.status_changed(current, self.current())


class TestRouteAcceptance:
    """RoutePublished from the ingress's verdict on the HTTPRoute (issue 10)."""

    GW = ("traefik", "traefik-gateway", "web")

    @staticmethod
    def route(parents: list[dict[str, Any]] | None, generation: int = 3) -> dict[str, Any]:
        obj: dict[str, Any] = {"metadata": {"name": "so-demo", "namespace": "shop", "generation": generation}}
        if parents is not None:
            obj["status"] = {"parents": parents}
        return obj

    @staticmethod
    def parent(
        accepted: str = "True",
        resolved: str = "True",
        *,
        gen: int = 3,
        name: str = "traefik-gateway",
        reason: str = "BackendNotFound",
    ) -> dict[str, Any]:
        return {
            "parentRef": {"name": name, "namespace": "traefik", "sectionName": "web"},
            "controllerName": "traefik.io/gateway-controller",
            "conditions": [
                {"type": "Accepted", "status": accepted, "reason": "Accepted", "observedGeneration": gen},
                {
                    "type": "ResolvedRefs",
                    "status": resolved,
                    "reason": "ResolvedRefs" if resolved == "True" else reason,
                    "message": "" if resolved == "True" else "type ExternalName is not supported",
                    "observedGeneration": gen,
                },
            ],
        }

    def verdict(self, obj: dict[str, Any] | None) -> status.CondValue:
        return status.route_acceptance(obj, gateway=self.GW, path="/services/demo", route_name="so-demo")

    def test_accepted_and_resolved_is_published(self) -> None:
        assert self.verdict(self.route([self.parent()])) == status.route_ready("/services/demo")

    @pytest.mark.parametrize(
        "obj",
        [
            None,
            {"metadata": {"name": "so-demo", "namespace": "shop", "generation": 3}},
            {
                "metadata": {"name": "so-demo", "namespace": "shop", "generation": 3},
                "status": {"parents": []},
            },
        ],
    )
    def test_no_verdict_yet_is_waiting(self, obj: dict[str, Any] | None) -> None:
        assert self.verdict(obj).astuple() == (
            False,
            R.WAITING_FOR_INGRESS,
            "Waiting for the ingress to accept HTTPRoute so-demo",
        )

    def test_a_verdict_on_an_older_generation_is_waiting(self) -> None:
        assert self.verdict(self.route([self.parent(gen=2)])).reason == R.WAITING_FOR_INGRESS

    def test_another_gateways_verdict_does_not_count(self) -> None:
        assert self.verdict(self.route([self.parent(name="other")])).reason == R.WAITING_FOR_INGRESS

    def test_refused_backend_reports_the_ingress_reason(self) -> None:
        ok, reason, message = self.verdict(self.route([self.parent(resolved="False")])).astuple()
        assert (ok, reason) == (False, "BackendNotFound")
        assert "ResolvedRefs=False" in message and "type ExternalName is not supported" in message

    def test_not_accepted_reports_the_ingress_reason(self) -> None:
        p = self.parent(accepted="False")
        p["conditions"][0]["reason"] = "NotAllowedByListeners"
        ok, reason, _ = self.verdict(self.route([p])).astuple()
        assert (ok, reason) == (False, "NotAllowedByListeners")
