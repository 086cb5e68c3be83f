"""The route table: which paths are priced, which are guarded, and how a path finds its route. Pure.

A table is an immutable snapshot swapped atomically by the verifier. Lookup costs O(path depth), never
O(number of offers): exact patterns are one dict lookup; ``/*`` prefixes are found by walking the path's
ancestors, longest first (a path ``/services/x/a/b`` checks ``/services/x/a/b``, ``/services/x/a``, …), so the
longest prefix wins exactly as with Gateway API path precedence; other globs (static routes only) come last in
file order. Guarded paths (offers that exist but are not published) live in the same structures, so a guard
shadows only the paths it would have priced, and a nested published offer still wins by length.
"""

from __future__ import annotations

import dataclasses
import enum
import fnmatch
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from kube402.x402 import requirements

__all__ = [
    "Match",
    "MatchKind",
    "Route",
    "RouteTable",
    "needs_normalizing",
    "normalize_path",
    "split_target",
]


class MatchKind(enum.Enum):
    PRICED = "priced"
    GUARDED = "guarded"
    NONE = "none"


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Route:
    pattern: str
    priced: requirements.PricedRoute
    offer_namespace: str = ""
    offer_name: str = ""
    source: str = "offer"
    """``offer`` or ``static``."""
    mode: str = "forwardAuth"
    upstream_auth: str = ""
    """Value for ``Authorization`` toward the upstream (only ever sent after payment)."""
    upstream: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Proxy mode: ``{"namespace", "service", "port"}`` of an offer, or ``{"url"}`` of a static route."""
    max_timeout_seconds: int = 300
    settle_before_upstream: bool = False
    """Proxy mode: settle before calling the upstream (side-effecting services)."""

    @property
    def prefix(self) -> str:
        """The path prefix the proxy gate strips (``/services/x`` for ``/services/x/*``)."""
        return self.pattern.removesuffix("/*")

    @property
    def labels(self) -> tuple[str, str, str]:
        return (self.pattern, self.offer_namespace, self.offer_name)


@dataclasses.dataclass(frozen=True, slots=True)
class Guard:
    pattern: str
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Match:
    kind: MatchKind
    route: Route | None = None
    guard: Guard | None = None


NO_MATCH = Match(MatchKind.NONE)
Entry = Route | Guard


def split_target(target: str) -> str:
    """The path of a request target or forwarded URI: query and fragment dropped."""
    cut = len(target)
    for ch in "?#":
        i = target.find(ch)
        if i != -1 and i < cut:
            cut = i
    return target[:cut] or "/"


def normalize_path(path: str) -> str:
    """Percent-decoded path with dot segments removed (RFC 3986 5.2.4) and empty segments merged.

    ``//services/x`` and ``/services//x`` are the ``/services/x`` an ingress that cleans paths routes them to
    (Traefik's ``sanitizePath``); behind one that does not (nginx ``auth_request`` with ``$request_uri``),
    the raw form reaches the upstream's router, which merges them as well. A trailing ``/`` is kept.
    """
    decoded = urllib.parse.unquote(path, errors="replace") if "%" in path else path
    segments = decoded.split("/")
    last = len(segments) - 1
    out: list[str] = []
    for i, seg in enumerate(segments):
        if seg == "" or seg == ".":
            if i == last and out:
                out.append("")
            continue
        if seg == "..":
            if out:
                out.pop()
            if i == last and out:
                out.append("")
            continue
        out.append(seg)
    return "/" + "/".join(out)


def needs_normalizing(path: str) -> bool:
    return "%" in path or "/." in path or "//" in path


class RouteTable:
    """An immutable snapshot. Build with :meth:`build`; look up with :meth:`lookup`."""

    __slots__ = ("_depth", "_exact", "_globs", "_prefix", "routes")

    def __init__(
        self,
        exact: dict[str, Entry],
        prefix: dict[str, Entry],
        globs: tuple[tuple[str, Entry], ...],
        routes: tuple[Route, ...],
    ) -> None:
        self._exact = exact
        self._prefix = prefix
        self._globs = globs
        self.routes = routes
        self._depth = max((k.count("/") for k in prefix if k != "/"), default=0)
        """Segments of the deepest prefix: a lookup never walks a longer ancestor chain than this."""

    @classmethod
    def empty(cls) -> RouteTable:
        return cls({}, {}, (), ())

    @classmethod
    def build(
        cls,
        *,
        offer_routes: Iterable[Route],
        static_routes: Iterable[Route] = (),
        guards: Iterable[Guard] = (),
    ) -> RouteTable:
        """Offer routes win over static routes and guards with the same pattern; guards over static routes."""
        exact: dict[str, Entry] = {}
        prefix: dict[str, Entry] = {}
        globs: list[tuple[str, Entry]] = []
        kept: list[Route] = []

        def add(pattern: str, entry: Entry) -> bool:
            if pattern.endswith("/*") and "*" not in pattern[:-2]:
                key = pattern[:-2] or "/"
                if key in prefix:
                    return False
                prefix[key] = entry
            elif "*" in pattern:
                if any(p == pattern for p, _ in globs):
                    return False
                globs.append((pattern, entry))
            else:
                if pattern in exact:
                    return False
                exact[pattern] = entry
            return True

        for route in offer_routes:
            if add(route.pattern, route):
                kept.append(route)
        for guard in guards:
            add(guard.pattern, guard)
        for route in static_routes:
            if add(route.pattern, route):
                kept.append(route)
        return cls(exact, prefix, tuple(globs), tuple(kept))

    def _entry(self, path: str) -> Entry | None:
        found = self._exact.get(path)
        if found is not None:
            return found
        prefix = self._prefix
        if prefix:
            p = _ancestor_at_depth(path, self._depth).rstrip("/") or "/"
            while True:
                found = prefix.get(p)
                if found is not None:
                    return found
                if p == "/":
                    break
                cut = p.rfind("/")
                p = p[:cut] if cut > 0 else "/"
        for pattern, entry in self._globs:
            if _glob_match(pattern, path):
                return entry
        return None

    def lookup(self, target: str) -> Match:
        """Match a request target (query stripped here) on its raw and its normalized path (SPEC 7.5)."""
        raw = split_target(target)
        entry = self._entry(raw)
        norm = normalize_path(raw) if needs_normalizing(raw) else raw
        if norm != raw:
            other = self._entry(norm)
            if isinstance(other, Guard) or isinstance(entry, Guard):
                g = other if isinstance(other, Guard) else entry
                return Match(MatchKind.GUARDED, guard=g)  # type: ignore[arg-type]
            if other is not None:
                entry = other
        if entry is None:
            return NO_MATCH
        if isinstance(entry, Guard):
            return Match(MatchKind.GUARDED, guard=entry)
        return Match(MatchKind.PRICED, route=entry)

    def __len__(self) -> int:
        return len(self.routes)


def _ancestor_at_depth(path: str, depth: int) -> str:
    """``path`` cut after its ``depth``-th segment (``/a/b/c``, 2 → ``/a/b``): O(depth) finds, no slicing."""
    end = 0
    for _ in range(depth):
        end = path.find("/", end + 1)
        if end == -1:
            return path
    return path[:end]


def _glob_match(pattern: str, path: str) -> bool:
    """Per-segment glob; a trailing ``*`` segment swallows the rest."""
    pp = pattern.strip("/").split("/")
    sp = path.strip("/").split("/")
    for i, seg in enumerate(pp):
        if seg == "*" and i == len(pp) - 1:
            return len(sp) >= i
        if i >= len(sp) or not fnmatch.fnmatchcase(sp[i], seg):
            return False
    return len(sp) == len(pp)
