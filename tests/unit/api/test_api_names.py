"""Wire names (SPEC 2.4, 4.1, 4.2): safeName truncation, child names, the pause annotation."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kube402.api import names


def md5_tag(name: str) -> str:
    return "-" + hashlib.md5(name.encode()).hexdigest()[:8]


class TestSafeName:
    def test_a_short_name_is_the_plain_concatenation(self) -> None:
        assert names.safe_name("so-", "demo", "-registration") == "so-demo-registration"

    def test_a_name_exactly_at_the_limit_is_not_truncated(self) -> None:
        name = "a" * 60
        assert names.safe_name("so-", name, limit=63) == "so-" + name

    def test_one_character_over_the_limit_is_truncated_to_exactly_the_limit(self) -> None:
        name = "a" * 61
        out = names.safe_name("so-", name, limit=63)
        assert len(out) == 63
        assert out == "so-" + "a" * (63 - 3 - 9) + md5_tag(name)

    def test_the_suffix_stays_at_the_end(self) -> None:
        name = "n" * 300
        out = names.safe_name("so-", name, "-registration")
        assert len(out) == 253
        assert out == "so-" + name[: 253 - 3 - 13 - 9] + md5_tag(name) + "-registration"

    def test_the_default_limit_is_the_dns_subdomain_limit(self) -> None:
        assert len(names.safe_name("x402-", "m" * 300)) == 253
        assert names.DNS_SUBDOMAIN_LIMIT == 253 and names.LABEL_LIMIT == 63

    def test_names_sharing_a_long_prefix_stay_distinct(self) -> None:
        a = names.safe_name("so-", "x" * 100 + "a", limit=63)
        b = names.safe_name("so-", "x" * 100 + "b", limit=63)
        assert a != b and len(a) == len(b) == 63

    def test_no_room_for_the_name_is_an_error(self) -> None:
        with pytest.raises(ValueError):
            names.safe_name("p" * 30, "n" * 40, "s" * 30, limit=63)

    @settings(max_examples=500)
    @given(
        prefix=st.text("abc-", max_size=20),
        name=st.text("abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=300),
        suffix=st.text("xyz-", max_size=20),
        limit=st.integers(min_value=50, max_value=260),
    )
    def test_the_spec_rule(self, prefix: str, name: str, suffix: str, limit: int) -> None:
        out = names.safe_name(prefix, name, suffix, limit=limit)
        full = prefix + name + suffix
        if len(full) <= limit:
            assert out == full
        else:
            k = limit - len(prefix) - len(suffix) - 9
            assert k >= 1
            assert out == prefix + name[:k] + md5_tag(name) + suffix
            assert len(out) == limit
        assert names.safe_name(prefix, name, suffix, limit=limit) == out  # deterministic


class TestChildNames:
    def test_original_names_for_short_offers(self) -> None:
        assert names.middleware_name("demo") == "x402-demo"
        assert names.httproute_name("demo") == "so-demo"
        assert names.backend_grant_name("llm", "demo") == "so-llm.demo-backend-grant"
        assert names.registration_name("demo") == "so-demo-registration"

    def test_label_values_are_cut_to_63(self) -> None:
        assert names.label_value("demo") == "demo"
        long = "d" * 64
        assert names.label_value(long) == "d" * 54 + md5_tag(long)

    @pytest.mark.parametrize(
        "make",
        [names.middleware_name, names.httproute_name, names.registration_name],
        ids=lambda f: f.__name__,
    )
    def test_long_offer_names_fit_253(self, make: object) -> None:
        assert len(make("o" * 253)) == 253  # type: ignore[operator]

    def test_contract_constants(self) -> None:
        assert names.GROUP == "obol.org"
        assert names.API_VERSION == "obol.org/v1alpha1"
        assert names.FIELD_MANAGER == "serviceoffer-controller"
        assert names.FINALIZER == "monetize.obol.org/finalizer"
        assert names.ANNOTATION_PAUSED == "obol.org/paused"
        assert names.LABEL_MANAGED_BY == "obol.org/managed-by"
        assert names.LABEL_OFFER == "obol.org/serviceoffer"
        assert names.LABEL_OFFER_NAMESPACE == "obol.org/serviceoffer-namespace"
        assert names.MANAGED_BY_VALUE == "serviceoffer-controller"


class TestIsPaused:
    @pytest.mark.parametrize("value", ["true", "TRUE", "True", " true ", "\ttrue\n", "tRuE"])
    def test_true_trimmed_and_lower_cased_pauses(self, value: str) -> None:
        assert names.is_paused({names.ANNOTATION_PAUSED: value})

    @pytest.mark.parametrize("value", ["", "false", "yes", "1", "on", "t", "true!", "truee", "tr ue"])
    def test_any_other_value_does_not_pause(self, value: str) -> None:
        assert not names.is_paused({names.ANNOTATION_PAUSED: value})

    @pytest.mark.parametrize(
        "annotations",
        [
            None,
            {},
            {"obol.org/pause": "true"},
            {names.ANNOTATION_PAUSED: True},
            "obol.org/paused=true",
            [names.ANNOTATION_PAUSED],
        ],
        ids=repr,
    )
    def test_absence_or_garbage_does_not_pause(self, annotations: object) -> None:
        assert not names.is_paused(annotations)
