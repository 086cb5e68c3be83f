"""Golden-file comparison for rendered and server-side objects (regenerate with ``pytest --update-golden``)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

__all__ = ["check", "normalize"]

_SERVER_FIELDS = ("managedFields", "uid", "resourceVersion", "creationTimestamp", "generation")


def normalize(obj: dict[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
    """Drop server-assigned metadata; replace the test namespace and owner uids with placeholders."""
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.get("metadata") or {}
    for field in _SERVER_FIELDS:
        meta.pop(field, None)
    for ref in meta.get("ownerReferences") or []:
        ref["uid"] = "<offer-uid>"
    text = yaml.safe_dump(out, sort_keys=True)
    if namespace:
        text = text.replace(namespace, "<ns>")
    result: dict[str, Any] = yaml.safe_load(text)
    return result


def check(path: Path, actual: dict[str, Any], *, update: bool) -> None:
    text = yaml.safe_dump(actual, sort_keys=True)
    if update or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if not update:
            raise AssertionError(f"golden file {path} did not exist; written now, review and re-run")
        return
    expected = path.read_text()
    assert text == expected, f"{path.name} differs from golden:\n--- expected\n{expected}\n--- actual\n{text}"
