"""The set-full checker on hand-written histories: each outcome, and that it bites."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringkv.check.history import FAIL, INFO, OK, Event, HistoryError, Recorder
from ringkv.check.sets import SetElement, check_set_full, latency_summary

MS = 1_000_000


class History:
    """A Recorder on a clock the test sets: ``h.at(ms)`` before each event."""

    def __init__(self) -> None:
        self.now_ns = 0
        self.recorder = Recorder(clock=lambda: self.now_ns)

    def at(self, ms: float) -> History:
        self.now_ns = int(ms * MS)
        return self

    def invoke(
        self, client: int, f: str, value: Any = None, key: str = "s", node: str = "n1"
    ) -> Event:
        return self.recorder.invoke(client, f, key, value, node=node)

    def ok(self, invoke: Event, value: Any = None) -> Event:
        return self.recorder.complete(invoke, OK, value)

    def end(self, invoke: Event, type: str) -> Event:
        return self.recorder.complete(invoke, type)

    def add(self, client: int, element: Any, key: str = "s") -> Event:
        return self.ok(self.invoke(client, "add", element, key))

    def read(self, client: int, elements: list[Any], key: str = "s", node: str = "n1") -> Event:
        return self.ok(self.invoke(client, "read", key=key, node=node), elements)

    @property
    def events(self) -> list[Event]:
        return self.recorder.events


def test_elements_every_later_read_sees_are_stable_at_once() -> None:
    h = History()
    h.at(0).add(0, 1)
    h.at(1).add(1, "two")
    h.at(5).read(2, [1, "two"])
    result = check_set_full(h.events)
    assert result.valid is True
    assert (result.attempted, result.acknowledged, result.stable) == (2, 2, 2)
    assert (result.lost, result.stale, result.never_read) == ((), (), ())
    assert result.stable_latency is not None and result.stable_latency.max_ms == 0.0


def test_an_acknowledged_element_a_later_read_misses_for_good_is_lost() -> None:
    h = History()
    h.at(0).add(0, 1)
    h.at(2).add(0, 2)
    h.at(5).read(1, [1, 2])
    final = h.at(9).invoke(1, "read", node="n3")
    h.ok(final, [2])
    result = check_set_full(h.events)
    assert result.valid is False
    [lost] = result.lost
    assert (lost.key, lost.element, lost.acknowledged) == ("s", 1, True)
    assert (lost.missing_index, lost.missing_node) == (final.index, "n3")
    assert lost.last_seen_index == 4  # the read invoked at event 4 saw it
    assert result.stable == 1
    assert "1 lost" in result.verdict().summary


def test_a_final_read_missing_an_element_is_a_loss_even_if_a_later_one_has_it() -> None:
    # Final reads begin after every add ended; after the heal every node must
    # return every acknowledged element, so n2 missing it is a loss.
    h = History()
    h.at(0).add(0, 1)
    h.at(1).read(1, [], node="n2")
    h.at(2).read(1, [1], node="n1")
    [lost] = check_set_full(h.events).lost
    assert lost.missing_node == "n2"


def test_a_miss_before_the_element_showed_up_for_good_is_stale_with_its_window() -> None:
    h = History()
    h.at(10).add(0, 1)  # known at 10 ms
    h.at(20).read(1, [])  # stale
    h.at(25).read(1, [])  # stale
    h.at(30).read(1, [1])  # stable from here: window 20 ms
    h.at(40).add(0, 2)
    h.at(50).read(1, [1, 2])  # the final read
    result = check_set_full(h.events)
    assert result.valid is True
    [stale] = result.stale
    assert (stale.element, stale.stale_reads, stale.window_ms) == (1, 2, 20.0)
    assert result.stable == 2
    assert result.stable_latency is not None
    assert (result.stable_latency.p50_ms, result.stable_latency.max_ms) == (0.0, 20.0)
    strict = check_set_full(h.events, stale_allowed=False)
    assert strict.valid is False and strict.lost == ()


def test_a_read_concurrent_with_the_add_may_miss_it() -> None:
    h = History()
    add = h.at(0).invoke(0, "add", 1)
    read = h.at(1).invoke(1, "read")
    h.at(2).ok(add)
    h.at(3).ok(read, [])  # began before the add completed: not stale
    h.at(4).read(1, [1])
    result = check_set_full(h.events, stale_allowed=False)
    assert result.valid is True and result.stale == ()


def test_an_element_no_read_began_after_is_never_read() -> None:
    h = History()
    h.at(0).add(0, 1)
    read = h.at(1).invoke(1, "read")
    h.at(2).add(0, 2)  # completes while the read is in flight
    h.at(3).ok(read, [1])
    result = check_set_full(h.events)
    assert result.never_read == (SetElement("s", 2),)
    assert result.valid is True and result.stable == 1
    only_unread = History()
    only_unread.add(0, 1)
    assert check_set_full(only_unread.events).valid is None  # nothing verified: unknown


def test_info_adds_that_show_up_are_recovered_and_the_others_are_fine() -> None:
    h = History()
    h.end(h.at(0).invoke(0, "add", 1), INFO)
    h.end(h.at(1).invoke(1, "add", 2), INFO)
    h.at(2).invoke(2, "add", 3)  # never completes: in flight at the end
    h.at(5).read(3, [1])
    h.at(6).read(3, [1])
    result = check_set_full(h.events)
    assert result.recovered == (SetElement("s", 1),)
    assert result.valid is True
    assert (result.attempted, result.acknowledged, result.stable) == (3, 0, 1)


def test_a_recovered_element_that_vanishes_is_lost() -> None:
    h = History()
    h.end(h.at(0).invoke(0, "add", 1), INFO)
    h.at(5).read(1, [1])
    h.at(6).read(1, [])
    result = check_set_full(h.events)
    [lost] = result.lost
    assert lost.acknowledged is False and result.valid is False


def test_failed_unexpected_and_duplicated_elements_are_errors() -> None:
    h = History()
    h.end(h.at(0).invoke(0, "add", 1), FAIL)
    h.at(1).add(1, 2)
    h.at(2).read(2, [1, 2, 2, 9])
    result = check_set_full(h.events)
    assert result.failed_but_read == (SetElement("s", 1),)
    assert result.unexpected == (SetElement("s", 9),)
    assert result.duplicated == (SetElement("s", 2),)
    assert result.valid is False


def test_keys_are_separate_sets() -> None:
    h = History()
    h.add(0, 1, key="a")
    h.add(0, 1, key="b")
    h.read(1, [1], key="a")
    h.read(1, [], key="b")
    result = check_set_full(h.events)
    assert [(e.key, e.element) for e in result.lost] == [("b", 1)]


def test_stable_latency_percentiles_are_nearest_rank() -> None:
    summary = latency_summary(float(ms) for ms in range(1, 101))
    assert summary is not None
    assert (summary.count, summary.p50_ms, summary.p99_ms, summary.max_ms) == (100, 50, 99, 100)
    assert latency_summary([]) is None
    h = History()
    for element, window_ms in enumerate([0, 10, 20, 30]):
        start = element * 100
        h.at(start).add(0, element)
        if window_ms:
            h.at(start + 1).read(1, list(range(element)))  # misses it
        h.at(start + window_ms).read(1, list(range(element + 1)))
    h.at(1000).add(0, 99)  # so that the reads above are not final reads
    h.at(1001).read(1, [0, 1, 2, 3, 99])
    result = check_set_full(h.events)
    assert result.stable_latency is not None
    assert (result.stable_latency.p50_ms, result.stable_latency.p99_ms) == (10, 30)
    assert [s.window_ms for s in result.stale] == [10, 20, 30]


def test_malformed_set_histories_are_refused() -> None:
    h = History()
    h.add(0, 1)
    h.add(0, 1)
    with pytest.raises(HistoryError, match="added twice"):
        check_set_full(h.events)
    h = History()
    h.read(0, 5)  # type: ignore[arg-type]
    with pytest.raises(HistoryError, match="list"):
        check_set_full(h.events)
    h = History()
    h.add(0, [1])
    with pytest.raises(HistoryError, match="int or a str"):
        check_set_full(h.events)


def test_the_verdict_truncates_long_lists() -> None:
    h = History()
    for element in range(15):
        h.add(0, element)
    h.read(1, [])
    verdict = check_set_full(h.events).verdict(list_max=4)
    assert verdict.valid is False and verdict.checker == "set-full"
    assert verdict.details["lost_count"] == 15
    assert len(verdict.details["lost"]) == 5 and verdict.details["lost"][-1] == "... 11 more"


# A model set behind a linearizable "cluster": each add takes effect at some
# point inside its invoke/complete window, each read returns the set at a point
# in its window. Such a history is valid even for a linearizable run.

_steps = st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["add", "read"]), st.booleans()))


def _model_history(steps: list[tuple[int, str, bool]]) -> tuple[History, list[int]]:
    h = History()
    model: set[int] = set()
    in_flight: dict[int, tuple[Event, int | None]] = {}
    acked: list[int] = []
    next_element = 0
    for tick, (client, f, early) in enumerate(steps):
        h.at(tick)
        if client not in in_flight:
            if f == "add":
                invoke = h.invoke(client, "add", next_element)
                in_flight[client] = (invoke, next_element)
                if early:
                    model.add(next_element)  # takes effect right away
                next_element += 1
            else:
                in_flight[client] = (h.invoke(client, "read"), None)
            continue
        invoke, element = in_flight.pop(client)
        if element is None:
            h.ok(invoke, sorted(model))
        else:
            model.add(element)
            h.ok(invoke)
            acked.append(element)
    for _client, (invoke, element) in sorted(in_flight.items()):
        if element is None:
            h.ok(invoke, sorted(model))
        else:
            model.add(element)
            h.ok(invoke)
            acked.append(element)
    for node in ("n1", "n2", "n3"):
        h.read(9, sorted(model), node=node)
    return h, acked


@settings(max_examples=60, deadline=None)
@given(_steps)
def test_a_history_of_a_faultless_model_set_is_valid(steps: list[tuple[int, str, bool]]) -> None:
    h, acked = _model_history(steps)
    result = check_set_full(h.events, stale_allowed=False)
    assert (result.lost, result.stale, result.never_read) == ((), (), ())
    assert result.stable == len(acked)
    assert result.valid is (True if acked else None)


@settings(max_examples=60, deadline=None)
@given(_steps, st.integers(0, 2), st.data())
def test_dropping_an_acknowledged_element_from_a_final_read_makes_it_lost(
    steps: list[tuple[int, str, bool]], final_node: int, data: st.DataObject
) -> None:
    h, acked = _model_history(steps)
    if not acked:
        return
    victim = data.draw(st.sampled_from(acked))
    final = h.events[-2 * (3 - final_node) + 1]
    assert final.f == "read" and final.type == OK
    events = list(h.events)
    events[final.index] = Event(
        index=final.index,
        process=final.process,
        type=OK,
        f="read",
        key=final.key,
        value=[e for e in final.value if e != victim],
        time_ns=final.time_ns,
        node=final.node,
    )
    result = check_set_full(events)
    assert [lost.element for lost in result.lost] == [victim]
    assert result.valid is False
