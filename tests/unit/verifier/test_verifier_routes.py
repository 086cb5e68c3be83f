"""RouteTable, split_target, normalize_path (SPEC 7.5): pattern kinds, precedence, normalization, guards,
and lookup cost independent of the number of routes."""

from __future__ import annotations

import time

import pytest

from kube402.verifier.routes import Guard, MatchKind, Route, RouteTable, normalize_path, split_target
from kube402.x402 import requirements
from tests.support.payments import BASE_SEPOLIA, PAY_TO

PRICED = requirements.priced_route(BASE_SEPOLIA, amount=1000, pay_to=PAY_TO, description="t")


def r(pattern: str, source: str = "offer", name: str = "") -> Route:
    return Route(pattern=pattern, priced=PRICED, source=source, offer_name=name or pattern)


def hit(table: RouteTable, target: str) -> str | None:
    """The matched pattern (priced), ``guard:<pattern>``, or None."""
    m = table.lookup(target)
    if m.kind is MatchKind.GUARDED:
        assert m.guard is not None and m.route is None
        return "guard:" + m.guard.pattern
    if m.kind is MatchKind.PRICED:
        assert m.route is not None
        return m.route.offer_name
    assert m.route is None and m.guard is None
    return None


class TestSplitAndNormalize:
    @pytest.mark.parametrize(
        ("target", "path"),
        [
            ("/a/b?x=1", "/a/b"),
            ("/a/b#frag", "/a/b"),
            ("/a#f?x", "/a"),
            ("/a?x#f", "/a"),
            ("?x=1", "/"),
            ("", "/"),
            ("/", "/"),
            ("/a/b/", "/a/b/"),
        ],
    )
    def test_split_target(self, target: str, path: str) -> None:
        assert split_target(target) == path

    @pytest.mark.parametrize(
        ("raw", "norm"),
        [
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/../a", "/a"),
            ("/../../a/b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/%61/b", "/a/b"),
            ("/services/%78/y", "/services/x/y"),
            ("/a/%2e%2e/b", "/b"),
            ("/a%2Fb", "/a/b"),
            ("/plain/path", "/plain/path"),
            ("/%zz", "/%zz"),
        ],
    )
    def test_normalize(self, raw: str, norm: str) -> None:
        assert normalize_path(raw) == norm


class TestPatternKinds:
    def test_exact(self) -> None:
        t = RouteTable.build(offer_routes=[], static_routes=[r("/health", "static")])
        assert hit(t, "/health") == "/health"
        assert hit(t, "/health?x=1") == "/health"  # query dropped (the original broke here)
        assert hit(t, "/health/") is None
        assert hit(t, "/health/x") is None
        assert hit(t, "/healthz") is None

    def test_prefix_matches_itself_and_below_never_siblings(self) -> None:
        t = RouteTable.build(offer_routes=[r("/services/x/*")])
        for yes in ("/services/x", "/services/x/", "/services/x/a", "/services/x/a/b/c?q=1", "/services/x?q"):
            assert hit(t, yes) == "/services/x/*", yes
        for no in (
            "/services/xy",
            "/services/xy/a",
            "/services/",
            "/services",
            "/",
            "/services/x-y/a",
            "/other/services/x",
        ):
            assert hit(t, no) is None, no

    def test_root_prefix(self) -> None:
        t = RouteTable.build(offer_routes=[r("/*")])
        assert hit(t, "/") == "/*"
        assert hit(t, "/anything/at/all") == "/*"

    def test_glob(self) -> None:
        t = RouteTable.build(
            offer_routes=[], static_routes=[r("/api/*/items", "static"), r("/v*/x", "static")]
        )
        assert hit(t, "/api/v1/items") == "/api/*/items"
        assert hit(t, "/api/v1/items?x") == "/api/*/items"
        assert hit(t, "/api/v1/items/3") is None
        assert hit(t, "/api/items") is None
        assert hit(t, "/v2/x") == "/v*/x"
        assert hit(t, "/w2/x") is None

    def test_glob_with_trailing_star_segment_swallows_the_rest(self) -> None:
        """SPEC 7.5: other ``*`` → per-segment glob, a trailing ``*`` segment swallowing the rest."""
        route = r("/files/*/raw/*", "static")
        t = RouteTable.build(offer_routes=[], static_routes=[route])
        assert route in t.routes, "the route was silently dropped from the table"
        assert hit(t, "/files/a/raw/b") == "/files/*/raw/*"
        assert hit(t, "/files/a/raw/b/c/d") == "/files/*/raw/*"
        assert hit(t, "/files/a/other/b") is None


class TestPrecedence:
    def test_exact_before_prefix_before_glob(self) -> None:
        t = RouteTable.build(
            offer_routes=[r("/services/x/*")],
            static_routes=[
                r("/services/x/health", "static"),
                r("/services/*/health", "static"),
                r("/services/*/metrics", "static"),
            ],
        )
        assert hit(t, "/services/x/health") == "/services/x/health"
        assert hit(t, "/services/x/metrics") == "/services/x/*"
        assert hit(t, "/services/y/metrics") == "/services/*/metrics"
        assert hit(t, "/services/y/health") == "/services/*/health"

    def test_longest_prefix_wins_regardless_of_order(self) -> None:
        routes = [r("/services/*"), r("/services/x/*"), r("/services/x/v1/*"), r("/*")]
        for order in (routes, list(reversed(routes))):
            t = RouteTable.build(offer_routes=order)
            assert hit(t, "/services/x/v1/chat") == "/services/x/v1/*"
            assert hit(t, "/services/x/v2/chat") == "/services/x/*"
            assert hit(t, "/services/xy") == "/services/*"
            assert hit(t, "/services") == "/services/*"
            assert hit(t, "/elsewhere") == "/*"

    def test_globs_in_file_order(self) -> None:
        t = RouteTable.build(
            offer_routes=[],
            static_routes=[
                r("/a/*/c", "static", "first"),
                r("/a/b/*x", "static", "never"),
                r("/a/b*/c", "static", "second"),
            ],
        )
        assert hit(t, "/a/b/c") == "first"
        t2 = RouteTable.build(
            offer_routes=[], static_routes=[r("/a/b*/c", "static", "second"), r("/a/*/c", "static", "first")]
        )
        assert hit(t2, "/a/b/c") == "second"

    def test_offer_before_static_for_equal_patterns(self) -> None:
        offer, static = r("/services/x/*", "offer", "offer"), r("/services/x/*", "static", "static")
        t = RouteTable.build(offer_routes=[offer], static_routes=[static])
        assert hit(t, "/services/x/a") == "offer"
        assert t.routes == (offer,)
        te = RouteTable.build(
            offer_routes=[r("/e", "offer", "offer")], static_routes=[r("/e", "static", "static")]
        )
        assert hit(te, "/e") == "offer"

    def test_guard_before_static_and_offer_before_guard(self) -> None:
        t = RouteTable.build(
            offer_routes=[],
            static_routes=[r("/services/x/*", "static")],
            guards=[Guard("/services/x/*", "paused")],
        )
        assert hit(t, "/services/x/a") == "guard:/services/x/*"
        t2 = RouteTable.build(
            offer_routes=[r("/services/x/*", name="live")], guards=[Guard("/services/x/*", "deleted")]
        )
        assert hit(t2, "/services/x/a") == "live"

    def test_nested_published_offer_wins_over_guarded_parent(self) -> None:
        t = RouteTable.build(offer_routes=[r("/services/x/v1/*")], guards=[Guard("/services/x/*", "paused")])
        assert hit(t, "/services/x/v1/a") == "/services/x/v1/*"
        assert hit(t, "/services/x/v2") == "guard:/services/x/*"


class TestNormalizedMatching:
    def test_percent_encoded_and_dot_segments(self) -> None:
        t = RouteTable.build(offer_routes=[r("/services/x/*")])
        for target in (
            "/services/%78/a",
            "/services/%78",
            "/a/../services/x/b",
            "/services/./x/c",
            "/./services/x",
            "/services/x/%2e%2e/x/d",
            "/%73ervices/x?q=%2F",
        ):
            assert hit(t, target) == "/services/x/*", target
        # normalized misses, raw hits: the raw path's route (SPEC 7.5 step 4)
        assert hit(t, "/services/x/../y") == "/services/x/*"

    def test_normalized_route_preferred(self) -> None:
        t = RouteTable.build(offer_routes=[r("/services/x/*"), r("/services/y/*")])
        assert hit(t, "/services/x/../y/a") == "/services/y/*"

    def test_raw_route_used_when_normalized_misses(self) -> None:
        t = RouteTable.build(offer_routes=[r("/services/x/*")])
        assert hit(t, "/services/x/../../elsewhere") == "/services/x/*"

    def test_guard_on_either_path_wins(self) -> None:
        g = Guard("/services/g/*", "paused")
        t = RouteTable.build(offer_routes=[r("/services/x/*")], guards=[g])
        # raw path priced, normalized guarded
        assert hit(t, "/services/x/../g/a") == "guard:/services/g/*"
        # raw path guarded, normalized priced
        assert hit(t, "/services/g/../x/a") == "guard:/services/g/*"
        # percent-encoded guarded
        assert hit(t, "/services/%67/a") == "guard:/services/g/*"
        assert hit(t, "/services/g") == "guard:/services/g/*"

    def test_exact_pattern_via_normalization(self) -> None:
        t = RouteTable.build(offer_routes=[], static_routes=[r("/exact/path", "static")])
        assert hit(t, "/exact/%70ath") == "/exact/path"
        assert hit(t, "/exact/x/../path") == "/exact/path"


class TestTable:
    def test_empty(self) -> None:
        t = RouteTable.empty()
        assert len(t) == 0 and hit(t, "/anything") is None

    def test_duplicate_static_routes_keep_first(self) -> None:
        a, b = r("/x/*", "static", "a"), r("/x/*", "static", "b")
        t = RouteTable.build(offer_routes=[], static_routes=[a, b])
        assert t.routes == (a,) and hit(t, "/x/1") == "a"

    def test_route_properties(self) -> None:
        route = Route(pattern="/services/x/*", priced=PRICED, offer_namespace="ns", offer_name="x")
        assert route.prefix == "/services/x"
        assert route.labels == ("/services/x/*", "ns", "x")
        assert Route(pattern="/exact", priced=PRICED).prefix == "/exact"

    def test_lookup_cost_independent_of_size(self) -> None:
        small = RouteTable.build(offer_routes=[r("/services/o0/*")])
        big_routes = [
            Route(pattern=f"/services/o{i}/*", priced=PRICED, offer_name=f"o{i}") for i in range(10_000)
        ]
        big = RouteTable.build(
            offer_routes=big_routes, static_routes=[r(f"/static/s{i}", "static") for i in range(100)]
        )
        assert len(big) == 10_100
        assert hit(big, "/services/o9999/v1/chat") == "o9999"
        assert hit(big, "/services/o5000") == "o5000"
        assert hit(big, "/services/o10000/x") is None
        targets = [
            "/services/o0/v1/chat/completions?x=1",
            "/services/o0",
            "/nothing/here/at/all",
            "/services/%6f0/a",
        ]

        def best(table: RouteTable) -> float:
            times = []
            for _ in range(7):
                t0 = time.perf_counter()
                for _ in range(300):
                    for target in targets:
                        table.lookup(target)
                times.append(time.perf_counter() - t0)
            return min(times)

        best(small), best(big)  # warm up
        t_small, t_big = best(small), best(big)
        assert t_big < t_small * 5 + 0.002, (t_small, t_big)
