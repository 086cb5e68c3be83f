"""An informer's cache: (namespace, name) → the last object seen, plus secondary indexes.

Objects are the raw API dicts and must be treated as read-only by everyone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ["Key", "Store", "key_of"]

Key = tuple[str, str]
Obj = Mapping[str, Any]


def key_of(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))


class Store:
    """Dict-backed cache with optional indexes ``name → fn(obj) → index values``."""

    def __init__(self) -> None:
        self._items: dict[Key, Obj] = {}
        self._indexers: dict[str, Callable[[Obj], list[str]]] = {}
        self._indexes: dict[str, dict[str, set[Key]]] = {}

    def add_index(self, name: str, fn: Callable[[Obj], list[str]]) -> None:
        self._indexers[name] = fn
        index: dict[str, set[Key]] = {}
        for key, obj in self._items.items():
            for value in fn(obj):
                index.setdefault(value, set()).add(key)
        self._indexes[name] = index

    def get(self, key: Key) -> Obj | None:
        return self._items.get(key)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Obj]:
        return iter(list(self._items.values()))

    def keys(self) -> list[Key]:
        return list(self._items)

    def by_index(self, name: str, value: str) -> list[Obj]:
        keys = self._indexes.get(name, {}).get(value, set())
        return [self._items[k] for k in sorted(keys) if k in self._items]

    def put(self, obj: Obj) -> Obj | None:
        key = key_of(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        for name, fn in self._indexers.items():
            for value in fn(obj):
                self._indexes[name].setdefault(value, set()).add(key)
        return old

    def remove(self, key: Key) -> Obj | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def _unindex(self, key: Key, obj: Obj) -> None:
        for name, fn in self._indexers.items():
            for value in fn(obj):
                bucket = self._indexes[name].get(value)
                if bucket is not None:
                    bucket.discard(key)
                    if not bucket:
                        del self._indexes[name][value]
