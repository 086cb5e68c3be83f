"""The informer cache: objects by (namespace, name) and secondary indexes kept in step with put/remove."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kube402.kube.store import Store, key_of


def obj(name: str, ns: str = "shop", **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "labels": labels}}


def by_app(o: Any) -> list[str]:
    app = (o.get("metadata") or {}).get("labels", {}).get("app")
    return [app] if app else []


def names(objs: list[Any]) -> list[str]:
    return [o["metadata"]["name"] for o in objs]


class TestKeys:
    def test_key_is_namespace_and_name(self) -> None:
        assert key_of(obj("a", "ns")) == ("ns", "a")

    def test_cluster_scoped_and_malformed_objects_get_empty_parts(self) -> None:
        assert key_of({"metadata": {"name": "n"}}) == ("", "n")
        assert key_of({}) == ("", "")


class TestItems:
    def test_put_returns_the_previous_object(self) -> None:
        s = Store()
        first, second = obj("a"), obj("a", app="x")
        assert s.put(first) is None
        assert s.put(second) is first
        assert s.get(("shop", "a")) is second
        assert len(s) == 1

    def test_remove_returns_the_removed_object_or_none(self) -> None:
        s = Store()
        a = obj("a")
        s.put(a)
        assert s.remove(("shop", "a")) is a
        assert s.remove(("shop", "a")) is None
        assert s.get(("shop", "a")) is None and len(s) == 0

    def test_iteration_is_a_snapshot(self) -> None:
        s = Store()
        s.put(obj("a"))
        s.put(obj("b"))
        for o in s:
            s.remove(key_of(o))  # must not break the iteration
        assert len(s) == 0

    def test_keys(self) -> None:
        s = Store()
        s.put(obj("a", "x"))
        s.put(obj("b", "y"))
        assert sorted(s.keys()) == [("x", "a"), ("y", "b")]


class TestIndexes:
    def test_put_indexes_and_lookup_is_sorted_by_key(self) -> None:
        s = Store()
        s.add_index("app", by_app)
        s.put(obj("b", app="web"))
        s.put(obj("a", app="web"))
        s.put(obj("c", app="db"))
        assert names(s.by_index("app", "web")) == ["a", "b"]
        assert names(s.by_index("app", "db")) == ["c"]

    def test_an_update_moves_the_object_between_index_values(self) -> None:
        s = Store()
        s.add_index("app", by_app)
        s.put(obj("a", app="web"))
        s.put(obj("a", app="db"))
        assert s.by_index("app", "web") == []
        assert names(s.by_index("app", "db")) == ["a"]

    def test_remove_unindexes(self) -> None:
        s = Store()
        s.add_index("app", by_app)
        s.put(obj("a", app="web"))
        s.remove(("shop", "a"))
        assert s.by_index("app", "web") == []

    def test_an_index_added_late_covers_existing_objects(self) -> None:
        s = Store()
        s.put(obj("a", app="web"))
        s.add_index("app", by_app)
        assert names(s.by_index("app", "web")) == ["a"]

    def test_an_unknown_index_or_value_is_empty(self) -> None:
        s = Store()
        s.put(obj("a", app="web"))
        assert s.by_index("nope", "web") == []
        s.add_index("app", by_app)
        assert s.by_index("app", "nope") == []

    def test_lookups_return_the_current_object(self) -> None:
        s = Store()
        s.add_index("app", by_app)
        s.put(obj("a", app="web"))
        newer = obj("a", app="web")
        newer["spec"] = {"v": 2}
        s.put(newer)
        assert s.by_index("app", "web") == [newer]

    @settings(max_examples=200)
    @given(
        ops=st.lists(
            st.tuples(
                st.booleans(),
                st.sampled_from(["a", "b", "c", "d"]),
                st.sampled_from(["x", "y"]),
                st.lists(st.sampled_from(["web", "db", "cache"]), max_size=2, unique=True),
            ),
            max_size=40,
        )
    )
    def test_indexes_always_agree_with_a_full_scan(self, ops: list[tuple[bool, str, str, list[str]]]) -> None:
        def tags_of(o: Any) -> list[str]:
            return [t for t in o["metadata"]["labels"]["tags"].split(",") if t]

        s = Store()
        s.add_index("tags", tags_of)
        for is_put, name, ns, tags in ops:
            if is_put:
                s.put({"metadata": {"name": name, "namespace": ns, "labels": {"tags": ",".join(tags)}}})
            else:
                s.remove((ns, name))
        for tag in ["web", "db", "cache"]:
            expected = sorted(key_of(o) for o in s if tag in tags_of(o))
            assert [key_of(o) for o in s.by_index("tags", tag)] == expected
