"""ForwardedRequest: one parse of the forwarded request for both adapters."""

from __future__ import annotations

import pytest

from kube402.verifier.request import ForwardedRequest


def _headers(values: dict[str, str]):  # type: ignore[no-untyped-def]
    return lambda name: values.get(name)


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        ("/a/b?x=1#frag", "/a/b", "x=1"),
        ("/a#f?x=1", "/a", ""),
        ("/a", "/a", ""),
        ("?x=1", "/", "x=1"),
        ("", "/", ""),
    ],
)
def test_parse_splits_path_and_query(target: str, path: str, query: str) -> None:
    fwd = ForwardedRequest.parse(_headers({}), method="get", target=target)
    assert (fwd.method, fwd.proto, fwd.host, fwd.path, fwd.query) == ("GET", "http", "localhost", path, query)


def test_forwarded_host_and_proto_win_over_host() -> None:
    h = _headers({"x-forwarded-proto": "https", "x-forwarded-host": "api.example", "host": "inner"})
    fwd = ForwardedRequest.parse(h, method="POST", target="/p?q")
    assert fwd.resource_url == "https://api.example/p"
    assert ForwardedRequest.parse(_headers({"host": "inner"}), method="GET", target="/").resource_url == (
        "http://inner/"
    )


def test_resource_url_is_valid_utf8() -> None:
    fwd = ForwardedRequest.parse(_headers({"host": "h\udcff"}), method="GET", target="/")
    fwd.resource_url.encode("utf-8")
