"""``reconcile.subset_equal``: desired state is "already applied" when every desired key matches.

Server defaults may add keys to what the cache holds; anything the controller wants must be present and
equal, lists must match element by element.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kube402.controller.reconcile import subset_equal

ROUTE_SPEC = {
    "parentRefs": [{"name": "traefik-gateway", "namespace": "traefik", "sectionName": "web"}],
    "rules": [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/services/demo"}}],
            "backendRefs": [{"name": "web", "namespace": "shop", "port": 8080}],
        }
    ],
}


@pytest.mark.parametrize(
    ("desired", "actual"),
    [
        pytest.param({}, {"anything": 1}, id="empty desired"),
        pytest.param({"a": 1}, {"a": 1, "b": 2}, id="extra actual key"),
        pytest.param(
            ROUTE_SPEC,
            {
                "parentRefs": [
                    {
                        "group": "gateway.networking.k8s.io",
                        "kind": "Gateway",
                        "name": "traefik-gateway",
                        "namespace": "traefik",
                        "sectionName": "web",
                    }
                ],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/services/demo"}}],
                        "backendRefs": [
                            {
                                "group": "",
                                "kind": "Service",
                                "name": "web",
                                "namespace": "shop",
                                "port": 8080,
                                "weight": 1,
                            }
                        ],
                    }
                ],
            },
            id="server defaults inside lists",
        ),
        pytest.param([1, 2], [1, 2], id="equal lists"),
        pytest.param("x", "x", id="equal scalars"),
    ],
)
def test_actual_state_with_server_defaults_satisfies_the_desired_state(desired: Any, actual: Any) -> None:
    assert subset_equal(desired, actual)


@pytest.mark.parametrize(
    ("desired", "actual"),
    [
        pytest.param({"a": 1}, {}, id="missing key"),
        pytest.param({"a": 1}, {"a": 2}, id="different value"),
        pytest.param({"a": {"b": 1}}, {"a": {"c": 0}}, id="missing nested key"),
        pytest.param({"a": {"b": 1}}, {"a": 5}, id="mapping replaced by scalar"),
        pytest.param([1, 2], [1, 2, 3], id="longer list"),
        pytest.param([1, 2], [2, 1], id="reordered list"),
        pytest.param([{"a": 1}], {"a": 1}, id="list replaced by mapping"),
        pytest.param({"a": None}, {}, id="explicit None still needs the key"),
        pytest.param({"port": 8080}, {"port": "8080"}, id="int vs string"),
    ],
)
def test_anything_missing_or_different_needs_an_apply(desired: Any, actual: Any) -> None:
    assert not subset_equal(desired, actual)


json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=200)
@given(value=json)
def test_every_value_is_a_subset_of_itself(value: Any) -> None:
    assert subset_equal(value, value)


@settings(max_examples=200)
@given(desired=st.dictionaries(st.text(max_size=3), json, min_size=1, max_size=4), data=st.data())
def test_dropping_a_desired_key_from_actual_breaks_equality(
    desired: dict[str, Any], data: st.DataObject
) -> None:
    key = data.draw(st.sampled_from(sorted(desired)))
    actual = {k: v for k, v in desired.items() if k != key}
    assert not subset_equal(desired, actual)
