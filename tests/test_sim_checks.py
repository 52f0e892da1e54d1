"""The simulator's checkers on hand-made histories: they pass the right ones and bite."""

from __future__ import annotations

from ringkv.sim.checks import lost_writes, resurrected_values
from ringkv.sim.history import FAIL, OK, Op


def op(op_id: int, f: str, key: bytes, value: bytes | None, outcome: str, **kw: object) -> Op:
    made = Op(op_id, op_id, "n1", f, "ks", key, value, invoke_ms=op_id, **kw)  # type: ignore[arg-type]
    made.outcome = outcome
    made.complete_ms = op_id + 1
    return made


def test_a_superseded_value_read_again_is_reported() -> None:
    history = [
        op(1, "put", b"k", b"a", OK),
        op(2, "put", b"k", b"b", OK, saw=(b"a",), context={"n1": 1}),
    ]
    assert resurrected_values(history, {b"k": (b"b",)}, 3) == []
    [found] = resurrected_values(history, {b"k": (b"a", b"b")}, 3)
    assert (found.value, found.by_op) == (b"a", 2)


def test_a_delete_that_saw_a_value_keeps_it_gone() -> None:
    history = [
        op(1, "put", b"k", b"a", OK),
        op(2, "delete", b"k", None, OK, saw=(b"a",), context={"n1": 1}),
    ]
    assert resurrected_values(history, {b"k": ()}, 3) == []
    assert len(resurrected_values(history, {b"k": (b"a",)}, 3)) == 1


def test_writes_below_quorum_or_failed_supersede_nothing_for_sure() -> None:
    history = [
        op(1, "put", b"k", b"a", OK),
        op(2, "put", b"k", b"b", OK, saw=(b"a",), level="one"),
        op(3, "put", b"k", b"c", FAIL, saw=(b"a",)),
    ]
    assert resurrected_values(history, {b"k": (b"a", b"b")}, 3) == []


def test_lost_writes_counts_supersession_only_by_writes_that_may_have_happened() -> None:
    history = [
        op(1, "put", b"k", b"a", OK),
        op(2, "put", b"k", b"b", FAIL, saw=(b"a",)),
    ]
    [lost] = lost_writes(history, {b"k": ()}, 3)
    assert lost.value == b"a"
    history[1].outcome = "info"  # may have happened: then it may have superseded a
    assert lost_writes(history, {b"k": ()}, 3) == []
