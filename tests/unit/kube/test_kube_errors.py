"""API failure Status → the small error tree callers match on."""

from __future__ import annotations

import pytest

from kube402.kube import errors


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (404, errors.NotFound),
        (409, errors.Conflict),
        (410, errors.Gone),
        (400, errors.Invalid),
        (403, errors.Invalid),
        (422, errors.Invalid),
        (429, errors.Unavailable),
        (500, errors.Unavailable),
        (503, errors.Unavailable),
        (504, errors.Unavailable),
        (401, errors.ApiError),
        (405, errors.ApiError),
    ],
)
def test_each_code_maps_to_its_class(code: int, cls: type[errors.ApiError]) -> None:
    err = errors.from_status(code, {"reason": "R", "message": "m"})
    assert type(err) is cls
    assert isinstance(err, errors.ApiError)
    assert (err.code, err.reason, err.message) == (code, "R", "m")


def test_a_kubernetes_status_body_gives_reason_and_message() -> None:
    body = {
        "kind": "Status",
        "status": "Failure",
        "reason": "NotFound",
        "message": 'serviceoffers.obol.org "demo" not found',
        "code": 404,
    }
    err = errors.from_status(404, body)
    assert str(err) == '404 NotFound: serviceoffers.obol.org "demo" not found'


def test_a_text_body_becomes_the_message_cut_to_500() -> None:
    err = errors.from_status(502, "<html>" + "x" * 1000)
    assert err.reason == ""
    assert err.message == ("<html>" + "x" * 1000)[:500]


@pytest.mark.parametrize("body", [None, "", b"", [], {}], ids=repr)
def test_an_empty_body_is_fine(body: object) -> None:
    err = errors.from_status(500, body)
    assert (err.reason, err.message) == ("", "")


def test_the_subclasses_are_distinct() -> None:
    classes = [errors.NotFound, errors.Conflict, errors.Gone, errors.Invalid, errors.Unavailable]
    for a in classes:
        for b in classes:
            assert issubclass(a, b) == (a is b)
