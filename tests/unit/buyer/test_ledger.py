from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kube402.buyer import statefile
from kube402.buyer.ledger import Exhausted, Ledger, StateError, load_consumed
from kube402.buyer.vouchers import Voucher
from tests.support.buyer_env import NOW, voucher


def ledger(*vs: Voucher, consumed: dict[str, set[str]] | None = None) -> Ledger:
    led = Ledger(consumed)
    led.set_pools({"a": vs})
    return led


def test_hold_marks_consumed_before_anything_else_and_confirm_counts_spent() -> None:
    led = ledger(voucher(1), voucher(2))
    v0 = led.version
    v = led.hold("a", now=NOW)
    assert isinstance(v, Voucher)
    assert v.nonce in led.consumed["a"] and led.version == v0 + 1
    s = led.stats("a", now=NOW)
    assert (s.remaining, s.spent, s.held) == (1, 0, 1)
    led.confirm("a", v.nonce)
    s = led.stats("a", now=NOW)
    assert (s.remaining, s.spent, s.held) == (1, 1, 0)


def test_release_returns_the_voucher_and_keep_does_not() -> None:
    led = ledger(voucher(1))
    v = led.hold("a", now=NOW)
    assert isinstance(v, Voucher)
    led.release("a", v.nonce)
    again = led.hold("a", now=NOW)
    assert again == v
    led.keep("a", v.nonce)
    assert isinstance(led.hold("a", now=NOW), Exhausted)
    assert led.stats("a", now=NOW).spent == 1


def test_expired_vouchers_are_skipped_and_counted_earliest_expiry_first() -> None:
    late, early, dead = (
        voucher(1, valid_before=NOW + 9000),
        voucher(2, valid_before=NOW + 100),
        voucher(3, valid_before=NOW + 5),
    )
    led = ledger(late, early, dead)
    assert led.hold("a", now=NOW) == early
    assert led.expired_skips["a"] == 1
    assert led.stats("a", now=NOW).expired == 1
    assert led.hold("a", now=NOW) == late
    out = led.hold("a", now=NOW)
    assert isinstance(out, Exhausted) and "empty" in out.message and "a" in out.message
    assert out.stats.expired == 1 and out.stats.held == 2


def test_not_yet_valid_voucher_is_not_used() -> None:
    v = dataclasses.replace(voucher(1), valid_after=NOW + 60)
    assert isinstance(ledger(v).hold("a", now=NOW), Exhausted)


def test_consumed_survives_a_new_configuration_and_a_restart() -> None:
    led = ledger(voucher(1), voucher(2))
    v = led.hold("a", now=NOW)
    assert isinstance(v, Voucher)
    led.set_pools({"a": (voucher(2), voucher(1), voucher(3))})
    assert led.stats("a", now=NOW).remaining == 2
    restarted = Ledger(load_consumed(led.snapshot_bytes()))
    restarted.set_pools({"a": (voucher(1), voucher(2))})
    got = restarted.hold("a", now=NOW)
    assert isinstance(got, Voucher) and got.nonce != v.nonce
    assert restarted.stats("a", now=NOW).spent == 1, "a voucher held when the process died counts as spent"


def test_ending_a_hold_twice_is_a_bug() -> None:
    led = ledger(voucher(1))
    v = led.hold("a", now=NOW)
    assert isinstance(v, Voucher)
    led.confirm("a", v.nonce)
    with pytest.raises(KeyError):
        led.release("a", v.nonce)


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b'{"consumed": []}', b'{"consumed": {"a": [1]}}'])
def test_a_corrupt_state_file_refuses_to_load(data: bytes) -> None:
    with pytest.raises(StateError):
        load_consumed(data)


OPS = st.lists(
    st.tuples(st.sampled_from(["hold", "confirm", "keep", "release", "reload"]), st.integers(0, 9))
)


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_ledger_invariants_under_any_operation_sequence(ops: list[tuple[str, int]]) -> None:
    pool = [voucher(i) for i in range(6)]
    led = ledger(*pool)
    held: list[str] = []
    ever_confirmed: set[str] = set()
    for op, i in ops:
        if op == "hold":
            v = led.hold("a", now=NOW)
            if isinstance(v, Voucher):
                assert v.nonce not in held, "a held voucher is never handed out again"
                assert v.nonce not in ever_confirmed, "a spent voucher is never handed out again"
                held.append(v.nonce)
        elif op == "reload":
            led.set_pools({"a": tuple(reversed(pool))})
        elif held:
            n = held.pop(i % len(held))
            getattr(led, op)("a", n)
            if op != "release":
                ever_confirmed.add(n)
        s = led.stats("a", now=NOW)
        assert s.held == len(held)
        assert s.remaining + s.spent + s.held == len(pool)
        assert set(held) <= led.consumed.get("a", set())


def test_state_file_is_written_atomically_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "consumed.json"
    old = os.umask(0)
    try:
        statefile.write_atomic(path, b'{"consumed": {}}')
        statefile.write_atomic(path, b'{"consumed": {"a": ["0x01"]}}')
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_bytes()) == {"consumed": {"a": ["0x01"]}}
    assert [p.name for p in tmp_path.iterdir()] == ["consumed.json"], "no temp file left behind"


def test_stale_temp_files_of_a_killed_writer_are_removed(tmp_path: Path) -> None:
    path = tmp_path / "consumed.json"
    (tmp_path / ".consumed.json.123.0.tmp").write_text("{")
    (tmp_path / "other.tmp").write_text("x")
    assert statefile.remove_stale_temps(path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.tmp"]
    assert statefile.read(path) is None
