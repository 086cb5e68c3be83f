"""kubectl-shaped output: YAML quoting, tables, AGE, printer columns; and the waiting progress."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from kube402.cli import sell_output as out
from kube402.cli.sell_progress import Progress, Timeout, first_blocker, ready, wait_offer

NOW = dt.datetime(2026, 12, 2, 12, 0, 0, tzinfo=dt.UTC)


def test_yaml_double_quotes_what_would_read_back_as_something_else() -> None:
    text = out.to_yaml(
        {
            "status": "True",
            "price": "0.001",
            "t": "2026-12-02T04:04:18Z",
            "port": 8080,
            "plain": "ollama",
            "empty": "",
            "addr": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        }
    )
    assert 'status: "True"' in text
    assert 'price: "0.001"' in text
    assert 't: "2026-12-02T04:04:18Z"' in text
    assert "port: 8080" in text and "plain: ollama" in text and 'empty: ""' in text
    assert yaml.safe_load(text)["status"] == "True", "round trip keeps strings strings"


def test_table_is_aligned_like_kubectl() -> None:
    text = out.table(["NAME", "READY"], [["flow-qwen", "True"], ["a", ""]])
    assert text.splitlines() == ["NAME        READY", "flow-qwen   True", "a"]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (5, "5s"),
        (119, "119s"),
        (150, "2m30s"),
        (600, "10m"),
        (3 * 3600 + 60, "3h1m"),
        (9 * 3600, "9h"),
        (3 * 86400 + 3600, "3d1h"),
        (30 * 86400, "30d"),
    ],
)
def test_age(seconds: int, shown: str) -> None:
    stamp = (NOW - dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert out.age(stamp, now=NOW) == shown
    assert out.age("", now=NOW) == "<unknown>"


def test_offer_row_uses_the_printer_columns() -> None:
    obj = {
        "metadata": {"namespace": "llm", "name": "flow-qwen", "creationTimestamp": "2026-12-02T11:59:50Z"},
        "spec": {
            "payment": {"network": "base-sepolia", "price": {"perRequest": "0.001"}},
            "model": {"name": "qwen3"},
        },
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    assert out.offer_row(obj, now=NOW) == [
        "llm",
        "flow-qwen",
        "http",
        "qwen3",
        "0.001",
        "base-sepolia",
        "True",
        "10s",
    ]


def offer(gen: int, seen: int, *conds: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "metadata": {"generation": gen},
        "status": {
            "observedGeneration": seen,
            "conditions": [{"type": t, "status": s, "reason": r, "message": f"{t} {r}"} for t, s, r in conds],
        },
    }


ALL_TRUE = [
    (t, "True", "Ok")
    for t in ("ModelReady", "UpstreamHealthy", "PaymentGateReady", "RoutePublished", "Registered", "Ready")
]


def test_ready_needs_the_current_generation() -> None:
    assert ready(offer(2, 2, *ALL_TRUE))
    assert not ready(offer(3, 2, *ALL_TRUE)), "a status about an older spec does not count"
    blocker = first_blocker(
        offer(
            1,
            1,
            ("ModelReady", "True", "S"),
            ("UpstreamHealthy", "False", "Unhealthy"),
            ("Ready", "False", "R"),
        )
    )
    assert blocker is not None and blocker.type == "UpstreamHealthy"


def sequence(*objs: Mapping[str, Any] | None) -> Any:
    items = list(objs)

    async def get() -> Mapping[str, Any] | None:
        return items.pop(0) if len(items) > 1 else items[0]

    return get


async def test_plain_progress_prints_each_change_once_with_a_timestamp() -> None:
    stream = io.StringIO()
    sick = offer(
        1,
        1,
        ("ModelReady", "True", "Skipped"),
        ("UpstreamHealthy", "False", "Unhealthy"),
        ("Ready", "False", "Reconciling"),
    )
    get = sequence(offer(1, 0), sick, sick, offer(1, 1, *ALL_TRUE))
    await wait_offer(
        get,
        key="llm/x",
        until=ready,
        goal="Ready",
        seconds=10,
        progress=Progress(stream, live=False),
        interval=0.01,
    )
    lines = stream.getvalue().splitlines()
    assert all(ln[:4] == "2026" or ln[:2] == "20" for ln in lines)
    bodies = [ln.split(" ", 1)[1] for ln in lines]
    assert bodies.count("UpstreamHealthy   False  Unhealthy: UpstreamHealthy Unhealthy") == 1
    assert bodies[-1] == "Ready             True   Ok: Ready Ok"
    assert "\r" not in stream.getvalue()


async def test_live_progress_redraws_one_line() -> None:
    stream = io.StringIO()
    sick = offer(1, 1, ("UpstreamHealthy", "False", "Unhealthy"))
    get = sequence(sick, sick, sick, offer(1, 1, *ALL_TRUE))
    await wait_offer(
        get,
        key="llm/x",
        until=ready,
        goal="Ready",
        seconds=10,
        progress=Progress(stream, live=True),
        interval=0.05,
    )
    text = stream.getvalue()
    assert text.count("\r\x1b[2K") >= 3
    assert "llm/x: waiting until Ready; UpstreamHealthy is False (Unhealthy)" in text
    assert "  Ready             True   Ok: Ready Ok\n" in text


async def test_timeout_names_the_condition_still_false() -> None:
    sick = offer(
        1,
        1,
        ("ModelReady", "True", "S"),
        ("UpstreamHealthy", "False", "Unhealthy"),
        ("PaymentGateReady", "False", "WaitingForUpstream"),
    )
    with pytest.raises(
        Timeout,
        match=r"timed out after 0.2s waiting until Ready: UpstreamHealthy is still False \(Unhealthy\): "
        r"UpstreamHealthy Unhealthy",
    ):
        await wait_offer(
            sequence(sick),
            key="k",
            until=ready,
            goal="Ready",
            seconds=0.2,
            progress=Progress(io.StringIO(), live=False),
            interval=0.05,
        )
    with pytest.raises(Timeout, match="has not reconciled k yet"):
        await wait_offer(
            sequence(offer(2, 1)),
            key="k",
            until=ready,
            goal="Ready",
            seconds=0.1,
            progress=Progress(io.StringIO(), live=False),
            interval=0.05,
        )
    with pytest.raises(Timeout, match="does not exist"):
        await wait_offer(
            sequence(None),
            key="k",
            until=ready,
            goal="Ready",
            seconds=0.1,
            progress=Progress(io.StringIO(), live=False),
            interval=0.05,
        )


def test_sell_test_verdicts() -> None:
    from kube402.cli.sell_cmd import test_verdict

    assert test_verdict("u", 402, "Payment Required", "{}") == (
        ["Endpoint is live and payment-gated.", "  GET u → 402 Payment Required"],
        0,
    )
    lines, code = test_verdict("u", 200, "OK", "free")
    assert code == 1 and "answered 200 without payment: the payment gate is not enforcing" in lines[0]
    lines, code = test_verdict(
        "u", 503, "Service Unavailable", '{"error":"offer_unavailable"}\n' + "x" * 1000
    )
    assert code == 1 and lines[0].startswith(
        'GET u → 503 Service Unavailable: {"error":"offer_unavailable"} x'
    )
    assert len(lines[0]) < 400
