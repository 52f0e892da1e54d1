"""The linearizability checker (issue 5): known answers, an oracle, classic cases.

1. The 103 Jepsen etcd logs of Porcupine's test data must get the verdicts in
   tests/data/linearizability/README.md.
2. On small random histories (several keys, fail and info completions,
   operations left in flight) the checker must agree with a brute-force
   search straight from the definition, and what it reports (the
   linearization, or the longest prefix and the misfits) must hold up.
3. Hand-written classics: stale read, lost cas, info writes seen and unseen,
   writes seen in two orders, the budget.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ringkv.check.history import FAIL, INFO, INVOKE, OK, Event, HistoryError, operations
from ringkv.check.linearizability import (
    LINEARIZABLE,
    NOT_LINEARIZABLE,
    UNKNOWN,
    KeyResult,
    check_register,
    parse_jepsen_log,
)
from ringkv.check.timeline import render_timeline_html, write_timeline_html

DATA = Path(__file__).resolve().parent / "data" / "linearizability"
_EXPECTED = dict(
    re.findall(
        r"^\| (etcd_\d{3}\.log) \| (true|false|none) \|", (DATA / "README.md").read_text(), re.M
    )
)
_INFINITY = float("inf")


# -- 1. known answers ----------------------------------------------------------


def test_readme_lists_every_log() -> None:
    logs = sorted(path.name for path in DATA.glob("etcd_*.log"))
    assert len(logs) == 103
    assert sorted(_EXPECTED) == logs
    assert list(_EXPECTED.values()).count("true") == 23
    assert list(_EXPECTED.values()).count("false") == 79


@pytest.mark.parametrize(
    "name", sorted(name for name, answer in _EXPECTED.items() if answer != "none")
)
def test_etcd_log_gets_the_known_verdict(name: str) -> None:
    events = parse_jepsen_log(DATA / name)
    result = check_register(events, max_states=2_000_000)
    assert result.valid is (_EXPECTED[name] == "true"), result.keys[0].explain()
    [key] = result.keys
    if result.valid is False:
        _assert_failure_report_holds(key)
    else:
        _assert_linearization_holds(key)


def test_etcd_log_without_an_answer_terminates() -> None:
    # etcd_095.log is empty upstream ("etcd cluster failed to start up"): no
    # operations, so no keys, vacuously linearizable.
    events = parse_jepsen_log(DATA / "etcd_095.log")
    result = check_register(events, max_states=1000, deadline_s=5.0)
    assert events == []
    assert result.keys == ()
    assert result.verdict == LINEARIZABLE


def test_all_etcd_logs_are_quick() -> None:
    started = time.perf_counter()
    for name in _EXPECTED:
        check_register(parse_jepsen_log(DATA / name), deadline_s=10.0)
    elapsed_s = time.perf_counter() - started
    assert elapsed_s < 10.0, f"103 etcd logs took {elapsed_s:.2f} s"


def test_parse_jepsen_log_reads_every_shape(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text(
        "INFO  jepsen.util - 0\t:invoke\t:read\tnil\n"
        "INFO  jepsen.util - 0\t:ok\t:read\tnil\n"
        "\n"
        "INFO  jepsen.util - 1   :invoke :cas    [1 4]\n"
        "INFO  jepsen.util - 1\t:fail\t:cas\t[1 4]\n"
        "INFO  jepsen.util - 2\t:invoke\t:write\t3\n"
        "INFO  jepsen.util - 2\t:info\t:write\t:timed-out\n"
    )
    events = parse_jepsen_log(log, key="k")
    assert [(e.index, e.process, e.type, e.f, e.value, e.error) for e in events] == [
        (0, 0, INVOKE, "read", None, ""),
        (1, 0, OK, "read", None, ""),
        (3, 1, INVOKE, "cas", [1, 4], ""),
        (4, 1, FAIL, "cas", [1, 4], ""),
        (5, 2, INVOKE, "write", 3, ""),
        (6, 2, INFO, "write", None, "timed-out"),
    ]
    assert {e.key for e in events} == {"k"}
    assert [op.value for op in operations(events)] == [None, [1, 4], 3]


def test_parse_jepsen_log_refuses_other_lines(tmp_path: Path) -> None:
    log = tmp_path / "bad.log"
    log.write_text("INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO jepsen.core - run complete\n")
    with pytest.raises(HistoryError, match="line 2"):
        parse_jepsen_log(log)


# -- 2. the oracle -------------------------------------------------------------


def _brute_force(events: Sequence[Event], initial: Any = None) -> bool:
    """Straight from the definition, over all keys at once: is there an order
    of every completed operation, plus any subset of the info / unfinished
    ones, that respects real time (a before b when a returned before b was
    invoked) and that a sequential register accepts? Fails are dropped."""
    ops = []
    for op in operations(events):
        if op.type == FAIL:
            continue
        end = _INFINITY if op.end is None else op.end
        ops.append((op.start, end, op.f, op.key, op.value, op.type == OK))

    def legal(op: tuple[Any, ...], state: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        _, _, f, key, value, ok = op
        current = state.get(key, initial)
        if f == "read":
            return (not ok or value == current), state
        if f == "write":
            return True, {**state, key: value}
        if value[0] == current:
            return True, {**state, key: value[1]}
        return not ok, state

    def extend(placed: frozenset[int], state: dict[str, Any]) -> bool:
        if all(i in placed for i, op in enumerate(ops) if op[5]):
            return True
        for i, op in enumerate(ops):
            if i in placed:
                continue
            if any(j not in placed and other[1] < op[0] for j, other in enumerate(ops)):
                continue  # something that returned before op was invoked is not placed
            accepted, after = legal(op, state)
            if accepted and extend(placed | {i}, after):
                return True
        return False

    return extend(frozenset(), {})


@st.composite
def _histories(draw: st.DrawFn) -> list[Event]:
    """2-4 clients, up to 7 operations on 1-2 keys, values 0..2 (and null),
    completions ok / fail / info, some operations never completed."""
    clients = draw(st.integers(2, 4))
    ops_max = draw(st.integers(1, 7))
    keys = draw(st.sampled_from(["x", "xy"]))
    values = st.sampled_from([None, 0, 1, 2])
    events: list[Event] = []
    process = list(range(clients))
    next_process = clients
    in_flight: dict[int, Event] = {}
    invoked = 0
    while True:
        idle = [c for c in range(clients) if c not in in_flight] if invoked < ops_max else []
        choices = idle + sorted(in_flight)
        if not choices or (invoked == ops_max and draw(st.integers(0, 5)) == 0):
            return events  # anything still in flight never completes
        client = draw(st.sampled_from(choices))
        index = len(events)
        if client not in in_flight:
            f = draw(st.sampled_from(["read", "write", "cas"]))
            value: Any = None
            if f == "write":
                value = draw(st.integers(0, 2))
            elif f == "cas":
                value = [draw(values), draw(st.integers(0, 2))]
            invoke = Event(index, process[client], INVOKE, f, draw(st.sampled_from(keys)), value)
            in_flight[client] = invoke
            events.append(invoke)
            invoked += 1
            continue
        invoke = in_flight.pop(client)
        kind = draw(st.sampled_from([OK, OK, OK, FAIL, INFO]))
        value = draw(values) if kind == OK and invoke.f == "read" else invoke.value
        events.append(Event(index, invoke.process, kind, invoke.f, invoke.key, value))
        if kind == INFO:
            process[client], next_process = next_process, next_process + 1


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=_histories(), initial=st.sampled_from([None, None, 0]))
def test_agrees_with_brute_force(events: list[Event], initial: Any) -> None:
    result = check_register(events, initial=initial)
    expected = _brute_force(events, initial)
    event(result.verdict)
    assert result.valid is expected
    for key in result.keys:
        if key.valid:
            _assert_linearization_holds(key)
        else:
            _assert_failure_report_holds(key)


def _replay(key: KeyResult) -> set[int]:
    """The reported linearization (or prefix) respects real time and the register."""
    value = key.initial
    placed: set[int] = set()
    for op in key.linearization:
        assert op.type in (OK, INFO) and op.key == key.key
        for other in key.operations:
            if other.type == OK and other.end is not None and other.end < op.start:
                assert id(other) in placed, f"{op} placed before {other}, which returned earlier"
        if op.f == "read":
            assert op.value == value
        elif op.f == "write":
            value = op.value
        elif op.value[0] == value:
            value = op.value[1]
        else:
            assert op.type == INFO, f"{op} is an ok cas that did not match {value!r}"
        placed.add(id(op))
    assert value == key.value_after
    return placed


def _assert_linearization_holds(key: KeyResult) -> None:
    placed = _replay(key)
    assert {id(op) for op in key.operations if op.type == OK} <= placed
    assert key.unplaced == ()


def _assert_failure_report_holds(key: KeyResult) -> None:
    placed = _replay(key)
    assert key.unplaced, "a failure names what could not be placed"
    for op in key.unplaced:
        assert op.type == OK and id(op) not in placed
        for other in key.operations:  # nothing unplaced had to come before it
            if other.type == OK and other.end is not None and other.end < op.start:
                assert id(other) in placed
        if op.f == "read":
            assert op.value != key.value_after
        else:
            assert op.f == "cas" and op.value[0] != key.value_after


# -- 3. classics ---------------------------------------------------------------


def _history(*rows: str, key: str = "x") -> list[Event]:
    """``"0 invoke write 1"``: process, type, f, value as JSON; index = row."""
    events = []
    for index, row in enumerate(rows):
        process, kind, f, *rest = row.split(maxsplit=3)
        value = json.loads(rest[0]) if rest else None
        events.append(Event(index, int(process), kind, f, key, value))
    return events


def test_a_stale_read_is_not_linearizable() -> None:
    events = _history("0 invoke write 1", "0 ok write 1", "1 invoke read", "1 ok read null")
    result = check_register(events)
    assert result.verdict == NOT_LINEARIZABLE and result.valid is False
    [key] = result.failures
    assert [op.f for op in key.linearization] == ["write"]
    assert [(op.f, op.value) for op in key.unplaced] == [("read", None)]
    assert key.value_after == 1
    assert "read -> null" in key.explain()


def test_a_read_concurrent_with_a_write_may_see_either_value() -> None:
    for seen in ("null", "1"):
        events = _history("0 invoke write 1", "1 invoke read", f"1 ok read {seen}", "0 ok write 1")
        assert check_register(events).verdict == LINEARIZABLE


def test_two_cas_from_the_same_value_cannot_both_succeed() -> None:
    events = _history(
        "0 invoke write 0",
        "0 ok write 0",
        "1 invoke cas [0, 1]",
        "2 invoke cas [0, 2]",
        "1 ok cas [0, 1]",
        "2 ok cas [0, 2]",
    )
    assert check_register(events).valid is False


def test_a_lost_cas_is_not_linearizable() -> None:
    events = _history(
        "0 invoke cas [null, 1]", "0 ok cas [null, 1]", "1 invoke read", "1 ok read null"
    )
    assert check_register(events).valid is False
    events[-1] = Event(3, 1, OK, "read", "x", 1)
    assert check_register(events).valid is True


def test_a_failed_operation_had_no_effect() -> None:
    failed = ["0 invoke write 1", "0 fail write 1", "1 invoke read"]
    assert check_register(_history(*failed, "1 ok read null")).valid is True
    assert check_register(_history(*failed, "1 ok read 1")).valid is False
    failed_cas = ["0 invoke cas [null, 2]", "0 fail cas [null, 2]", "1 invoke read"]
    assert check_register(_history(*failed_cas, "1 ok read 2")).valid is False


def test_an_info_write_seen_later_is_linearizable() -> None:
    events = _history(
        "0 invoke write 1", "0 info write 1", "1 invoke read", "1 ok read 1", "2 invoke read"
    )
    assert check_register(events).valid is True


def test_an_info_write_never_seen_is_linearizable() -> None:
    events = _history(
        "0 invoke write 1",
        "0 info write 1",
        "1 invoke read",
        "1 ok read null",
        "2 invoke write 2",
        "2 ok write 2",
        "1 invoke read",
        "1 ok read 2",
    )
    assert check_register(events).valid is True
    never_completed = _history("0 invoke write 1", "1 invoke read", "1 ok read null")
    assert check_register(never_completed).valid is True


def test_an_info_write_takes_effect_at_most_once() -> None:
    events = _history(
        "0 invoke write 1",
        "0 info write 1",
        "1 invoke read",
        "1 ok read 1",
        "1 invoke write 2",
        "1 ok write 2",
        "1 invoke read",
        "1 ok read 1",
    )
    assert check_register(events).valid is False


def test_an_info_read_tells_nothing() -> None:
    events = _history("0 invoke write 1", "0 ok write 1", "1 invoke read", "1 info read 7")
    assert check_register(events).valid is True


def test_concurrent_writes_seen_in_both_orders_are_not_linearizable() -> None:
    events = _history(
        "0 invoke write 1",
        "1 invoke write 2",
        "0 ok write 1",
        "1 ok write 2",
        "2 invoke read",
        "2 ok read 1",
        "3 invoke read",
        "3 ok read 2",
    )
    assert check_register(events).valid is False
    # the same reads while the writes are still running are fine
    overlapping = [events[0], events[1], *events[4:], events[2], events[3]]
    overlapping = [
        Event(index, e.process, e.type, e.f, e.key, e.value) for index, e in enumerate(overlapping)
    ]
    assert check_register(overlapping).valid is True


def test_initial_value_is_configurable() -> None:
    events = _history("0 invoke read", "0 ok read 0")
    assert check_register(events).valid is False
    assert check_register(events, initial=0).valid is True


def test_keys_are_checked_independently() -> None:
    good = _history("0 invoke write 1", "0 ok write 1", key="a")
    bad = _history("1 invoke read", "1 ok read 5", key="b")
    events = [
        Event(index, e.process, e.type, e.f, e.key, e.value) for index, e in enumerate(good + bad)
    ]
    result = check_register(events)
    assert result.valid is False
    assert [(k.key, k.verdict) for k in result.keys] == [
        ("a", LINEARIZABLE),
        ("b", NOT_LINEARIZABLE),
    ]
    assert [k.key for k in result.failures] == ["b"]
    assert result.key("a").valid is True


def test_the_report_row_names_the_failing_key() -> None:
    good = _history("0 invoke write 1", "0 ok write 1", key="a")
    bad = _history("1 invoke write 2", "1 ok write 2", "1 invoke read", "1 ok read 5", key="b")
    events = [
        Event(index, e.process, e.type, e.f, e.key, e.value) for index, e in enumerate(good + bad)
    ]
    verdict = check_register(events).to_verdict()
    assert verdict.checker == "linearizable" and verdict.valid is False and not verdict.passed
    assert "1 not linearizable" in verdict.summary
    assert verdict.details["not_linearizable"] == ["b"]
    assert verdict.details["first_failure"] == "b"
    assert verdict.details["value_after_prefix"] == "2"
    assert [line.split(" [")[0] for line in verdict.details["unplaced"]] == ["p1 read -> 5 ok"]
    assert check_register(good).to_verdict().passed
    unknown = check_register(parse_jepsen_log(DATA / "etcd_002.log"), max_states=5).to_verdict()
    assert unknown.valid is None and unknown.status == "UNKNOWN"


def test_an_exhausted_budget_is_unknown_never_a_pass() -> None:
    events = parse_jepsen_log(DATA / "etcd_002.log")  # linearizable in 65 states
    assert check_register(events).valid is True
    result = check_register(events, max_states=10)
    assert result.valid is None and result.verdict == UNKNOWN
    assert not result.valid
    [key] = result.failures
    assert key.states_explored == 10 and key.linearization and not key.unplaced
    assert check_register(events, deadline_s=0.0).verdict == UNKNOWN
    # an unknown key does not hide a failing one
    bad = [Event(10_000, 999, INVOKE, "read", "zz", None), Event(10_001, 999, OK, "read", "zz", 9)]
    assert check_register(events + bad, max_states=10).valid is False
    with pytest.raises(ValueError):
        check_register(events, max_states=-1)


def test_many_info_writes_do_not_blow_up_the_search() -> None:
    # 20 concurrent writes of distinct values time out; then reads see 0, 1, 0.
    # Each info write may or may not have happened, in any order: 2^20 subsets
    # for a naive search, a few states when info writes are only linearized
    # right before a read that needs them.
    rows = [f"{p} invoke write {p}" for p in range(20)] + [f"{p} info write {p}" for p in range(20)]
    reads = [
        f"{r} {kind} read {value}"
        for r, value in enumerate([0, 1, 0], 100)
        for kind in ("invoke", "ok")
    ]
    result = check_register(_history(*rows, *reads), max_states=10_000)
    assert result.valid is False
    [key] = result.keys
    assert [op.value for op in key.linearization] == [0, 0, 1, 1]
    assert [op.value for op in key.unplaced] == [0]


def test_identical_info_writes_are_interchangeable() -> None:
    # 24 info writes of 1 and 24 of 2, then reads alternating 1, 2, ... 48
    # times (fine), then a read of 1 (one write of 1 too many).
    rows = [f"{p} invoke write {1 + p % 2}" for p in range(48)]
    rows += [f"{p} info write {1 + p % 2}" for p in range(48)]
    values = [1 + i % 2 for i in range(48)]
    reads = [f"99 {kind} read {value}" for value in values for kind in ("invoke", "ok")]
    ok = check_register(_history(*rows, *reads), max_states=10_000)
    assert ok.valid is True
    bad = check_register(
        _history(*rows, *reads, "99 invoke read", "99 ok read 1"), max_states=10_000
    )
    assert bad.valid is False


def _simulated_history(seed: int, clients: int, ops_max: int, info_rate: float) -> list[Event]:
    """A register that really is linearizable, used by clients that overlap:
    each operation takes effect at one random point between its invoke and
    its completion (or never, then it fails); some completions are lost
    (info), whether the operation took effect or not."""
    rng = random.Random(seed)
    value: Any = None
    events: list[Event] = []
    in_flight: dict[int, tuple[Event, bool, Any]] = {}
    process = list(range(clients))
    while len(events) < 2 * ops_max or in_flight:
        client = rng.randrange(clients)
        if client in in_flight:
            invoke, applied, seen = in_flight.pop(client)
            if not applied and rng.random() < 0.7:
                applied, seen, value = True, *_apply(invoke, value)
            if rng.random() < info_rate:
                kind = INFO
                process[client] += clients
            else:
                kind = OK if applied and seen is not False else FAIL
            shown = seen if invoke.f == "read" and kind == OK else invoke.value
            events.append(Event(len(events), invoke.process, kind, invoke.f, "k", shown))
        elif len(events) < 2 * ops_max:
            f = rng.choice(["read", "write", "cas"])
            argument = {"read": None, "write": rng.randrange(5)}.get(
                f, [rng.randrange(5), rng.randrange(5)]
            )
            invoke = Event(len(events), process[client], INVOKE, f, "k", argument)
            events.append(invoke)
            applied, seen = rng.random() < 0.3, None
            if applied:
                seen, value = _apply(invoke, value)
            in_flight[client] = (invoke, applied, seen)
    return events


def _apply(invoke: Event, value: Any) -> tuple[Any, Any]:
    """(what the client sees, the register after): a read sees the value, a
    write or cas whether it took effect."""
    if invoke.f == "read":
        return value, value
    if invoke.f == "write":
        return True, invoke.value
    if invoke.value[0] == value:
        return True, invoke.value[1]
    return False, value


@pytest.mark.parametrize("seed", [0, 3, 4, 6])
def test_a_long_history_with_timeouts_is_decided(seed: int) -> None:
    # ~1800 events, 5 clients, 5% info: linearizable as recorded (~1k states),
    # and not once one read in the middle sees a value nobody wrote. Proving
    # that means going through every way the earlier info operations could
    # have happened: 3k-50k states for these seeds, up to ~260k for others
    # (seeds 1, 2, 7: about 1-2 s), which is why they are not here.
    events = _simulated_history(seed, clients=5, ops_max=900, info_rate=0.05)
    result = check_register(events, max_states=5_000)
    assert result.valid is True
    reads = [i for i, e in enumerate(events) if e.type == OK and e.f == "read"]
    middle = reads[len(reads) // 2]
    events[middle] = dataclasses.replace(events[middle], value=9)
    [key] = check_register(events, max_states=100_000).keys
    assert key.valid is False
    assert [op.completion.index for op in key.unplaced if op.completion] == [middle]


def test_nothing_to_linearize_needs_no_budget() -> None:
    events = _history("0 invoke write 1", "0 info write 1", "1 invoke read", "1 fail read")
    assert check_register(events, max_states=0).valid is True
    assert check_register([]).valid is True


def test_the_register_refuses_what_it_does_not_know() -> None:
    with pytest.raises(HistoryError, match="append"):
        check_register(_history("0 invoke append 1", "0 ok append 1"))
    with pytest.raises(HistoryError, match="expected, new"):
        check_register(_history("0 invoke cas 1", "0 ok cas 1"))
    with pytest.raises(HistoryError):
        check_register(_history("0 ok read 1"))


# -- the timeline --------------------------------------------------------------


def test_timeline_draws_a_failing_key_escaped(tmp_path: Path) -> None:
    evil = "<script>alert('k')</script>"
    events = [
        Event(0, 0, INVOKE, "write", evil, "</svg><img src=x onerror=alert(1)>"),
        Event(1, 0, OK, "write", evil, "</svg><img src=x onerror=alert(1)>"),
        Event(2, 1, INVOKE, "read", evil, None),
        Event(3, 2, INVOKE, "cas", evil, [1, 2]),
        Event(4, 1, OK, "read", evil, '"&'),
        Event(5, 2, INFO, "cas", evil, [1, 2]),
        Event(6, 3, INVOKE, "write", evil, 3),
        Event(7, 3, FAIL, "write", evil, 3),
    ]
    [key] = check_register(events).keys
    assert key.valid is False
    path = tmp_path / "timeline.html"
    write_timeline_html(key, path)
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;" in page and "&lt;img src=x" in page
    assert "not linearizable" in page and "#1" in page
    assert 'class="op ok linearized"' in page and "unplaced" in page
    assert 'class="op open' not in page and 'class="op info' in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "src=" not in page.replace("src=x", "")


def test_timeline_of_a_linearizable_etcd_log_and_its_limit() -> None:
    [key] = check_register(parse_jepsen_log(DATA / "etcd_007.log")).keys
    page = render_timeline_html(key)
    assert "Linearization" in page and page.count("<g class=") == len(key.operations)
    short = render_timeline_html(key, operations_max=5)
    assert short.count("<g class=") == 5
    assert f"{len(key.operations) - 5} later operations are not drawn" in short
