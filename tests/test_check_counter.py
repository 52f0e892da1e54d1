"""The counter checker on hand-written histories."""

from __future__ import annotations

import pytest

from ringkv.check.counter import check_counter
from ringkv.check.history import HistoryError, Recorder


def history(*steps: tuple[str, int, str, int | None, str]) -> Recorder:
    """(action, client, f, value, outcome): action 'i' invokes, 'c' completes."""
    rec = Recorder()
    open_: dict[int, object] = {}
    for action, client, f, value, outcome in steps:
        if action == "i":
            open_[client] = rec.invoke(client, f, "c", value)
        else:
            rec.complete(open_.pop(client), outcome, value)  # type: ignore[arg-type]
    return rec


def test_reads_within_the_bounds_are_valid() -> None:
    rec = history(
        ("i", 1, "add", 2, ""), ("c", 1, "add", None, "ok"),
        ("i", 2, "add", 3, ""),  # in flight while the read runs: may or may not count
        ("i", 3, "read", None, ""), ("c", 3, "read", 5, "ok"),
        ("c", 2, "add", None, "ok"),
        ("i", 3, "read", None, ""), ("c", 3, "read", 5, "ok"),
    )  # fmt: skip
    result = check_counter(rec.events)
    assert result.valid is True and result.reads == 2 and result.acknowledged_sum == 5


def test_a_lost_acknowledged_increment_is_invalid() -> None:
    rec = history(
        ("i", 1, "add", 2, ""), ("c", 1, "add", None, "ok"),
        ("i", 2, "read", None, ""), ("c", 2, "read", 0, "ok"),
    )  # fmt: skip
    result = check_counter(rec.events)
    assert result.valid is False
    assert "outside [2, 2]" in result.invalid[0].describe() and result.invalid[0].final


def test_a_failed_increment_that_took_effect_is_invalid() -> None:
    rec = history(
        ("i", 1, "add", 4, ""), ("c", 1, "add", None, "fail"),
        ("i", 2, "read", None, ""), ("c", 2, "read", 4, "ok"),
    )  # fmt: skip
    assert check_counter(rec.events).valid is False


def test_an_unknown_increment_may_count_or_not() -> None:
    for seen in (0, 3):
        rec = history(
            ("i", 1, "add", 3, ""), ("c", 1, "add", None, "info"),
            ("i", 2, "read", None, ""), ("c", 2, "read", seen, "ok"),
        )  # fmt: skip
        assert check_counter(rec.events).valid is True


def test_lagging_reads_are_stale_when_allowed_but_final_reads_must_be_in_bounds() -> None:
    rec = history(
        ("i", 1, "add", 2, ""), ("c", 1, "add", None, "ok"),
        ("i", 2, "read", None, ""), ("c", 2, "read", 0, "ok"),  # lags: final, though
    )  # fmt: skip
    assert check_counter(rec.events, lagging_allowed=True).valid is False
    rec = history(
        ("i", 1, "add", 2, ""), ("c", 1, "add", None, "ok"),
        ("i", 2, "read", None, ""), ("c", 2, "read", 0, "ok"),
        ("i", 1, "add", 1, ""), ("c", 1, "add", None, "ok"),
        ("i", 2, "read", None, ""), ("c", 2, "read", 3, "ok"),
    )  # fmt: skip
    result = check_counter(rec.events, lagging_allowed=True)
    assert result.valid is True and len(result.stale) == 1
    assert check_counter(rec.events).valid is False


def test_no_read_is_unknown_and_bad_values_are_refused() -> None:
    rec = history(("i", 1, "add", 2, ""), ("c", 1, "add", None, "ok"))
    assert check_counter(rec.events).valid is None
    rec = history(("i", 1, "add", -2, ""), ("c", 1, "add", None, "ok"))
    with pytest.raises(HistoryError):
        check_counter(rec.events)
