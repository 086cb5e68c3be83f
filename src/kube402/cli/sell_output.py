"""Output shaped like kubectl's: aligned tables, ``-o yaml`` (ambiguous strings quoted), ``-o json``."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

__all__ = ["age", "dump", "offer_row", "table", "to_yaml"]

OFFER_COLUMNS = ("NAMESPACE", "NAME", "TYPE", "MODEL", "PRICE", "NETWORK", "READY", "AGE")


class _Dumper(yaml.SafeDumper):
    """Strings that would read back as something else (``True``, ``0.001``, timestamps) get double quotes,
    as ``kubectl get -o yaml`` writes them (the flows grep ``status: "True"``)."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    tag = dumper.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    if tag != "tag:yaml.org,2002:str" or value == "" or value[:1] in "!&*{}[]|>'\"%@`#,?:-" or ": " in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def to_yaml(obj: Any) -> str:
    return yaml.dump(
        obj, Dumper=_Dumper, sort_keys=True, default_flow_style=False, allow_unicode=True, width=4096
    )


def dump(obj: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(obj, indent=4, sort_keys=False) + "\n"
    return to_yaml(obj)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """kubectl's layout: columns separated by at least three spaces, no trailing blanks."""
    rows = [list(map(str, r)) for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = []
    for r in [list(headers), *rows]:
        cells = [c.ljust(widths[i]) for i, c in enumerate(r)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def age(timestamp: str, *, now: dt.datetime | None = None) -> str:
    """``3d4h``, ``5m10s``, ``42s`` like kubectl's AGE column."""
    if not timestamp:
        return "<unknown>"
    try:
        then = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = int(((now or dt.datetime.now(dt.UTC)) - then).total_seconds())
    seconds = max(seconds, 0)
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def _condition(obj: Mapping[str, Any], ctype: str) -> str:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(c, Mapping) and c.get("type") == ctype:
            return str(c.get("status", ""))
    return ""


def offer_row(obj: Mapping[str, Any], *, now: dt.datetime | None = None) -> list[str]:
    """The CRD's printer columns (SPEC 2.1) for one ServiceOffer."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    pay = spec.get("payment") or {}
    model = spec.get("model") or {}
    return [
        str(meta.get("namespace", "")),
        str(meta.get("name", "")),
        str(spec.get("type") or "http"),
        str(model.get("name", "")) if isinstance(model, Mapping) else "",
        str((pay.get("price") or {}).get("perRequest", "")),
        str(pay.get("network", "")),
        _condition(obj, "Ready"),
        age(str(meta.get("creationTimestamp", "")), now=now),
    ]
