"""Re-validation of the CRD rules (SPEC 2.2) for clusters running the original's looser schema.

``path_problem`` is compared against an independent transcription of the CRD's pattern and CEL rules; the
regexes are matched in full, the way the API server's Go regexes treat ``$``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kube402.api import v1alpha1, validation

PAY_TO = "0x" + "ab" * 20


def crd_accepts_path(path: str) -> bool:
    """deploy/crds/serviceoffers.obol.org.yaml spec.path: pattern plus the five CEL rules."""
    return (
        re.fullmatch(r"/[a-zA-Z0-9/_.-]*", path) is not None
        and path != "/"
        and "//" not in path
        and re.search(r"(^|/)[.][.]?(/|$)", path) is None
        and not (path == "/.well-known" or path.startswith("/.well-known/"))
        and path not in ("/skill.md", "/skill.md/", "/api/services.json", "/api/services.json/")
    )


class TestPathProblem:
    @pytest.mark.parametrize(
        "path",
        [
            "",
            "/services/demo",
            "/services/demo/",
            "/v1.2/chat",
            "/a..b",
            "/.hidden",
            "/a_b-c/D9",
            "/.well-knownx",
            "/skill.md/x",
            "/skill.mdx",
            "/api/services.json.bak",
            "/api",
        ],
    )
    def test_acceptable_paths(self, path: str) -> None:
        assert validation.path_problem(path) is None

    @pytest.mark.parametrize(
        ("path", "words"),
        [
            pytest.param("services", "must match", id="no leading slash"),
            pytest.param("/a b", "must match", id="space"),
            pytest.param("/ä", "must match", id="non-ascii"),
            pytest.param("/a?x=1", "must match", id="query"),
            pytest.param("/", "must not be /", id="root"),
            pytest.param("//", "must not", id="double slash only"),
            pytest.param("/a//b", "//", id="double slash"),
            pytest.param("/./a", ". or ..", id="dot segment"),
            pytest.param("/a/.", ". or ..", id="trailing dot segment"),
            pytest.param("/a/..", ". or ..", id="trailing dotdot segment"),
            pytest.param("/../x", ". or ..", id="leading dotdot segment"),
            pytest.param("/a/../b/", ". or ..", id="inner dotdot segment"),
            pytest.param("/.well-known", "/.well-known/", id="well-known itself"),
            pytest.param("/.well-known/", "/.well-known/", id="well-known slash"),
            pytest.param("/.well-known/agent-registration.json", "/.well-known/", id="under well-known"),
            pytest.param("/skill.md", "reserved", id="catalog"),
            pytest.param("/skill.md/", "reserved", id="catalog slash"),
            pytest.param("/api/services.json", "reserved", id="services json"),
            pytest.param("/api/services.json/", "reserved", id="services json slash"),
        ],
    )
    def test_each_rule_is_reported(self, path: str, words: str) -> None:
        problem = validation.path_problem(path)
        assert problem is not None
        assert words in problem

    @pytest.mark.parametrize("path", ["/services/demo\n", "/a\n"], ids=["demo+newline", "a+newline"])
    def test_a_trailing_newline_is_not_a_valid_path(self, path: str) -> None:
        assert validation.path_problem(path) is not None

    @settings(max_examples=1000)
    @given(
        path=st.one_of(
            st.text(alphabet="/._-aZ9", max_size=24).map(lambda s: "/" + s),
            st.text(alphabet="/._-a", max_size=24),
            st.sampled_from(["/skill.md", "/api/services.json", "/.well-known"]).flatmap(
                lambda base: st.text(alphabet="/.ax", max_size=6).map(lambda tail: base + tail)
            ),
        )
    )
    @example(path="/a/.")
    @example(path="/.well-known")
    def test_it_agrees_with_the_crd_rules(self, path: str) -> None:
        if not path:
            return  # empty = the default path; the CRD never sees it
        assert (validation.path_problem(path) is None) == crd_accepts_path(path), path


def offer(**spec_overrides: Any) -> v1alpha1.ServiceOffer:
    spec: dict[str, Any] = {
        "type": "http",
        "upstream": {"service": "qwen", "namespace": "llm", "port": 8080, "healthPath": "/health"},
        "payment": {
            "scheme": "exact",
            "network": "base-sepolia",
            "payTo": PAY_TO,
            "maxTimeoutSeconds": 300,
            "price": {"perRequest": "0.001"},
        },
        "gateMode": "forwardAuth",
    }
    for dotted, value in spec_overrides.items():
        target = spec
        *parents, leaf = dotted.split("__")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return v1alpha1.ServiceOffer.from_dict({"metadata": {"name": "demo", "namespace": "shop"}, "spec": spec})


class TestSpecProblems:
    def test_a_valid_offer_has_no_problems(self) -> None:
        assert validation.spec_problems(offer()) == []

    @pytest.mark.parametrize(
        "overrides",
        [
            pytest.param({"type": ""}, id="empty type means http"),
            pytest.param({"type": "inference"}, id="inference"),
            pytest.param({"type": "fine-tuning"}, id="fine-tuning"),
            pytest.param({"upstream__namespace": ""}, id="empty namespace means the offer's"),
            pytest.param({"upstream__service": "a" * 63}, id="63-char service"),
            pytest.param({"upstream__namespace": "n" * 63}, id="63-char namespace"),
            pytest.param({"upstream__port": 1}, id="port 1"),
            pytest.param({"upstream__port": 65535}, id="port 65535"),
            pytest.param({"payment__maxTimeoutSeconds": 30}, id="timeout 30"),
            pytest.param({"payment__maxTimeoutSeconds": 86400}, id="timeout 86400"),
            pytest.param({"gateMode": "proxy"}, id="proxy"),
            pytest.param({"gateMode": ""}, id="no gate mode"),
        ],
    )
    def test_boundary_values_are_accepted(self, overrides: dict[str, Any]) -> None:
        assert validation.spec_problems(offer(**overrides)) == []

    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            pytest.param({"type": "chat"}, "type", id="unknown type"),
            pytest.param({"upstream__service": ""}, "upstream.service", id="empty service"),
            pytest.param({"upstream__service": "Qwen"}, "upstream.service", id="upper-case service"),
            pytest.param({"upstream__service": "1qwen"}, "upstream.service", id="service starts with digit"),
            pytest.param({"upstream__service": "qwen-"}, "upstream.service", id="service ends with dash"),
            pytest.param({"upstream__service": "a" * 64}, "upstream.service", id="64-char service"),
            pytest.param({"upstream__service": "qwen\n"}, "upstream.service", id="service with newline"),
            pytest.param({"upstream__namespace": "Shop"}, "upstream.namespace", id="upper-case namespace"),
            pytest.param({"upstream__namespace": "n" * 64}, "upstream.namespace", id="64-char namespace"),
            pytest.param({"upstream__namespace": "llm\n"}, "upstream.namespace", id="namespace with newline"),
            pytest.param({"upstream__port": 65536}, "upstream.port", id="port too high"),
            pytest.param({"upstream__port": -1}, "upstream.port", id="negative port"),
            pytest.param(
                {"upstream__healthPath": "health"}, "upstream.healthPath", id="relative health path"
            ),
            pytest.param(
                {"upstream__healthPath": "/a/../b"}, "upstream.healthPath", id="health path with .."
            ),
            pytest.param({"payment__scheme": "upto"}, "payment.scheme", id="scheme upto"),
            pytest.param({"payment__payTo": "0x1234"}, "payment.payTo", id="short payTo"),
            pytest.param({"payment__payTo": "ab" * 21}, "payment.payTo", id="payTo without 0x"),
            pytest.param({"payment__payTo": PAY_TO + "\n"}, "payment.payTo", id="payTo with newline"),
            pytest.param({"payment__maxTimeoutSeconds": 29}, "payment.maxTimeoutSeconds", id="timeout 29"),
            pytest.param(
                {"payment__maxTimeoutSeconds": 86401}, "payment.maxTimeoutSeconds", id="timeout 86401"
            ),
            pytest.param({"gateMode": "direct"}, "gateMode", id="unknown gate mode"),
        ],
    )
    def test_each_violation_is_reported_once_naming_its_field(
        self, overrides: dict[str, Any], field: str
    ) -> None:
        problems = validation.spec_problems(offer(**overrides))
        assert len(problems) == 1, problems
        assert problems[0].startswith(field + " ")

    def test_several_violations_are_all_reported(self) -> None:
        problems = validation.spec_problems(
            offer(type="chat", payment__scheme="upto", gateMode="direct", upstream__port=0 - 5)
        )
        assert len(problems) == 4
