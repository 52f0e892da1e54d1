"""Logical time: Lamport clocks, hybrid logical clocks, version vectors.

The HLC properties are those of Kulkarni et al. 2014 ("Logical Physical
Clocks"), checked under any sequence of physical readings: the clock never
goes backwards, a timestamp taken after receiving another is larger than it,
it never falls behind physical time, and it runs ahead of the largest
physical time seen only by the milliseconds it borrows on logical overflow.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringkv.core.clocks import (
    HLC_LOGICAL_MAX,
    Dot,
    HlcClock,
    HlcTimestamp,
    LamportClock,
    vv_covers,
    vv_descends,
    vv_from_flat,
    vv_merge,
    vv_to_flat,
)

# -- Lamport ---------------------------------------------------------------


def test_lamport_tick_counts_up_by_one() -> None:
    clock = LamportClock()
    assert [clock.tick() for _ in range(3)] == [1, 2, 3]
    assert clock.value == 3


def test_lamport_observe_moves_past_the_remote_value() -> None:
    clock = LamportClock(5)
    assert clock.observe(10) == 11
    assert clock.observe(3) == 12  # an older remote value still advances the clock
    assert clock.observe(12) == 13


@pytest.mark.parametrize("remote", [-1, -(2**63)])
def test_lamport_observe_rejects_a_negative_time_and_keeps_its_value(remote: int) -> None:
    clock = LamportClock(7)
    with pytest.raises(ValueError, match="never negative"):
        clock.observe(remote)
    assert clock.value == 7


lamport_events = st.lists(st.none() | st.integers(min_value=0, max_value=2**64), max_size=50)


@given(start=st.integers(min_value=0, max_value=2**40), events=lamport_events)
def test_lamport_is_strictly_monotonic_and_passes_every_remote(
    start: int, events: list[int | None]
) -> None:
    clock = LamportClock(start)
    previous = start
    for remote in events:
        if remote is None:
            value = clock.tick()
            assert value == previous + 1
        else:
            value = clock.observe(remote)
            assert value > remote
            assert value == max(previous, remote) + 1
        assert value > previous
        assert clock.value == value
        previous = value


# -- HLC: now --------------------------------------------------------------

# Physical readings that go backwards, repeat and jump by years.
physical_times = st.integers(min_value=-(10**6), max_value=2**53)
physical_sequences = st.lists(
    st.one_of(physical_times, st.integers(min_value=0, max_value=5)), min_size=1, max_size=60
)


@given(physical_sequences)
def test_hlc_now_is_strictly_increasing_under_any_physical_sequence(times: list[int]) -> None:
    clock = HlcClock()
    previous = clock.last
    for physical in times:
        ts = clock.now(physical)
        assert ts > previous
        assert clock.last == ts
        previous = ts


@given(physical_sequences)
def test_hlc_now_never_falls_behind_nor_runs_ahead_of_physical_time(times: list[int]) -> None:
    clock = HlcClock()
    seen_max = 0  # the clock starts at (0, 0)
    for count, physical in enumerate(times, start=1):
        ts = clock.now(physical)
        seen_max = max(seen_max, physical)
        assert ts >= HlcTimestamp(physical, 0)
        # Far from overflow, the wall part is exactly the largest reading seen.
        assert ts.wall_ms == seen_max
        assert 0 <= ts.logical <= count


@given(st.lists(st.integers(min_value=1, max_value=1000), min_size=1, max_size=30))
def test_hlc_now_follows_a_strictly_advancing_physical_clock_exactly(steps: list[int]) -> None:
    clock = HlcClock()
    physical = 0
    for step in steps:
        physical += step
        assert clock.now(physical) == HlcTimestamp(physical, 0)


def test_hlc_now_counts_logically_while_the_physical_clock_stands_or_goes_back() -> None:
    clock = HlcClock(HlcTimestamp(100, 0))
    assert clock.now(100) == HlcTimestamp(100, 1)
    assert clock.now(90) == HlcTimestamp(100, 2)
    assert clock.now(101) == HlcTimestamp(101, 0)


def test_hlc_now_borrows_a_millisecond_on_logical_overflow() -> None:
    clock = HlcClock(HlcTimestamp(100, HLC_LOGICAL_MAX - 1))
    assert clock.now(100) == HlcTimestamp(100, HLC_LOGICAL_MAX)
    assert clock.now(100) == HlcTimestamp(101, 0)  # never wraps to a smaller stamp
    assert clock.now(50) == HlcTimestamp(101, 1)
    assert clock.now(101) == HlcTimestamp(101, 2)  # physical time caught up: no second borrow
    assert clock.now(102) == HlcTimestamp(102, 0)


# -- HLC: observe ----------------------------------------------------------

remote_stamps = st.builds(
    HlcTimestamp,
    st.integers(min_value=0, max_value=2**53),
    st.integers(min_value=0, max_value=1000),
)
# A local event (a physical reading) or a received stamp (and the physical
# reading at receipt).
hlc_events = st.lists(st.tuples(st.none() | remote_stamps, physical_times), min_size=1, max_size=60)


@given(hlc_events)
def test_hlc_observe_passes_both_the_local_and_the_remote_stamp(
    events: list[tuple[HlcTimestamp | None, int]],
) -> None:
    clock = HlcClock()
    previous = clock.last
    for remote, physical in events:
        if remote is None:
            ts = clock.now(physical)
        else:
            ts = clock.observe(remote, physical)
            assert ts > remote
        assert ts > previous
        assert ts >= HlcTimestamp(physical, 0)
        assert clock.last == ts
        previous = ts


@given(hlc_events)
def test_hlc_stays_within_the_largest_time_seen(
    events: list[tuple[HlcTimestamp | None, int]],
) -> None:
    clock = HlcClock()
    seen_max = 0
    logical_bound = 0
    for remote, physical in events:
        seen_max = max(seen_max, physical)
        if remote is None:
            ts = clock.now(physical)
        else:
            seen_max = max(seen_max, remote.wall_ms)
            logical_bound = max(logical_bound, remote.logical)
            ts = clock.observe(remote, physical)
        logical_bound += 1
        # Without overflow the clock never invents time: its wall part is the
        # largest physical time it was shown, locally or by a peer.
        assert ts.wall_ms == seen_max
        assert ts.logical <= logical_bound


@given(
    start_logical=st.integers(min_value=HLC_LOGICAL_MAX - 5, max_value=HLC_LOGICAL_MAX),
    events=st.lists(
        st.tuples(
            st.none()
            | st.builds(
                HlcTimestamp,
                st.integers(min_value=990, max_value=1010),
                st.integers(min_value=HLC_LOGICAL_MAX - 5, max_value=HLC_LOGICAL_MAX),
            ),
            st.integers(min_value=900, max_value=1010),
        ),
        min_size=1,
        max_size=40,
    ),
)
def test_hlc_near_overflow_borrows_at_most_one_millisecond(
    start_logical: int, events: list[tuple[HlcTimestamp | None, int]]
) -> None:
    clock = HlcClock(HlcTimestamp(1000, start_logical))
    previous = clock.last
    seen_max = 1000
    for remote, physical in events:
        seen_max = max(seen_max, physical)
        if remote is None:
            ts = clock.now(physical)
        else:
            seen_max = max(seen_max, remote.wall_ms)
            ts = clock.observe(remote, physical)
            assert ts > remote
        assert ts > previous
        assert 0 <= ts.logical <= HLC_LOGICAL_MAX
        # Fewer than 2**32 events: at most one borrowed millisecond.
        assert seen_max <= ts.wall_ms <= seen_max + 1
        previous = ts


@pytest.mark.parametrize(
    ("last", "remote", "physical", "expected"),
    [
        # physical time is ahead of both: logical restarts
        ((100, 5), (90, 7), 120, (120, 0)),
        # the remote is ahead: its logical + 1
        ((100, 5), (110, 7), 105, (110, 8)),
        # the local clock is ahead: local logical + 1
        ((110, 5), (100, 7), 105, (110, 6)),
        # both at the same wall time: the larger logical + 1
        ((100, 5), (100, 9), 50, (100, 10)),
        ((100, 9), (100, 5), 100, (100, 10)),
        # the remote's logical is at the maximum: borrow a millisecond
        ((100, 5), (110, HLC_LOGICAL_MAX), 105, (111, 0)),
        ((100, HLC_LOGICAL_MAX), (100, 3), 100, (101, 0)),
        ((100, HLC_LOGICAL_MAX), (100, HLC_LOGICAL_MAX), 99, (101, 0)),
    ],
)
def test_hlc_observe_cases(
    last: tuple[int, int], remote: tuple[int, int], physical: int, expected: tuple[int, int]
) -> None:
    clock = HlcClock(HlcTimestamp(*last))
    assert clock.observe(HlcTimestamp(*remote), physical) == HlcTimestamp(*expected)
    assert clock.last == HlcTimestamp(*expected)


def test_hlc_timestamps_order_as_tuples() -> None:
    assert HlcTimestamp(1, 9) < HlcTimestamp(2, 0) < HlcTimestamp(2, 1)


# -- version vectors ---------------------------------------------------------

nodes = st.sampled_from(["a", "b", "c", "d"])
vectors = st.dictionaries(nodes, st.integers(min_value=0, max_value=4))


def _norm(vector: dict[str, int]) -> dict[str, int]:
    """A missing node means 0: the canonical form drops zero entries."""
    return {node: counter for node, counter in vector.items() if counter > 0}


@given(vectors, vectors)
def test_vv_merge_is_commutative(a: dict[str, int], b: dict[str, int]) -> None:
    assert vv_merge(a, b) == vv_merge(b, a)


@given(vectors, vectors, vectors)
def test_vv_merge_is_associative(a: dict[str, int], b: dict[str, int], c: dict[str, int]) -> None:
    assert vv_merge(vv_merge(a, b), c) == vv_merge(a, vv_merge(b, c)) == vv_merge(a, b, c)


@given(vectors)
def test_vv_merge_is_idempotent_and_has_the_empty_vector_as_identity(a: dict[str, int]) -> None:
    assert vv_merge(a, a) == vv_merge(a) == vv_merge(a, {}) == _norm(a)
    assert vv_merge() == {}


@given(vectors, vectors, vectors)
def test_vv_merge_is_the_least_upper_bound(
    a: dict[str, int], b: dict[str, int], c: dict[str, int]
) -> None:
    merged = vv_merge(a, b)
    assert vv_descends(merged, a)
    assert vv_descends(merged, b)
    assert list(merged) == sorted(merged)  # deterministic order, whatever the input order
    assert all(counter > 0 for counter in merged.values())
    if vv_descends(c, a) and vv_descends(c, b):
        assert vv_descends(c, merged)
    assert vv_descends(vv_merge(merged, c), merged)


def test_vv_merge_takes_the_pointwise_maximum() -> None:
    assert vv_merge({"b": 1, "a": 3}, {"a": 2, "c": 5}, {"b": 4}) == {"a": 3, "b": 4, "c": 5}
    assert list(vv_merge({"z": 1}, {"a": 1})) == ["a", "z"]


@given(vectors)
def test_vv_descends_is_reflexive(a: dict[str, int]) -> None:
    assert vv_descends(a, a)
    assert vv_descends(a, {})


@given(vectors, vectors)
def test_vv_descends_is_antisymmetric_up_to_zero_entries(
    a: dict[str, int], b: dict[str, int]
) -> None:
    if vv_descends(a, b) and vv_descends(b, a):
        assert _norm(a) == _norm(b)


@given(vectors, vectors, vectors)
def test_vv_descends_is_transitive(a: dict[str, int], b: dict[str, int], c: dict[str, int]) -> None:
    # Built so that the premise holds: c <= b <= a.
    b = vv_merge(b, c)
    a = vv_merge(a, b)
    assert vv_descends(a, b)
    assert vv_descends(b, c)
    assert vv_descends(a, c)


@given(vectors, vectors, vectors)
def test_vv_descends_is_transitive_on_arbitrary_triples(
    a: dict[str, int], b: dict[str, int], c: dict[str, int]
) -> None:
    if vv_descends(a, b) and vv_descends(b, c):
        assert vv_descends(a, c)


@given(vectors, vectors)
def test_vv_descends_agrees_with_merge(a: dict[str, int], b: dict[str, int]) -> None:
    assert vv_descends(a, b) == (vv_merge(a, b) == _norm(a))


def test_vv_descends_cases() -> None:
    assert vv_descends({"a": 2, "b": 1}, {"a": 1})
    assert not vv_descends({"a": 1}, {"a": 1, "b": 1})
    assert not vv_descends({"a": 2}, {"b": 1})  # concurrent: neither descends
    assert not vv_descends({"b": 1}, {"a": 2})
    assert vv_descends({}, {"a": 0})  # zero entries are absent entries


@given(vectors, nodes, st.integers(min_value=1, max_value=6))
def test_vv_covers_a_dot_when_its_counter_is_at_most_the_entry(
    vector: dict[str, int], node: str, counter: int
) -> None:
    assert vv_covers(vector, Dot(node, counter)) == (vector.get(node, 0) >= counter)


@given(vectors, vectors)
def test_vv_descends_means_covering_every_dot_of_the_other(
    a: dict[str, int], b: dict[str, int]
) -> None:
    dots = [Dot(node, k) for node, top in b.items() for k in range(1, top + 1)]
    assert vv_descends(a, b) == all(vv_covers(a, dot) for dot in dots)


def test_vv_covers_cases() -> None:
    assert vv_covers({"a": 3}, Dot("a", 3))
    assert vv_covers({"a": 3}, Dot("a", 1))
    assert not vv_covers({"a": 3}, Dot("a", 4))
    assert not vv_covers({"a": 3}, Dot("b", 1))


# -- flat encoding -----------------------------------------------------------

wide_vectors = st.dictionaries(
    st.text(min_size=0, max_size=8), st.integers(min_value=0, max_value=2**64 - 1), max_size=8
)


@given(wide_vectors)
def test_vv_flat_round_trip(vector: dict[str, int]) -> None:
    flat = vv_to_flat(vector)
    assert vv_from_flat(flat) == _norm(vector)
    assert vv_to_flat(vv_from_flat(flat)) == flat


@given(wide_vectors)
def test_vv_to_flat_alternates_sorted_nodes_and_positive_counters(vector: dict[str, int]) -> None:
    flat = vv_to_flat(vector)
    node_ids, counters = flat[0::2], flat[1::2]
    assert all(isinstance(node, str) for node in node_ids)
    assert node_ids == sorted(node_ids)  # type: ignore[type-var]
    assert all(isinstance(counter, int) and counter > 0 for counter in counters)
    assert len(node_ids) == len(_norm(vector))


def test_vv_to_flat_example() -> None:
    assert vv_to_flat({"n2": 1, "n1": 4, "n3": 0}) == ["n1", 4, "n2", 1]
    assert vv_to_flat({}) == []


def test_vv_from_flat_accepts_any_iterable() -> None:
    assert vv_from_flat(("a", 1, "b", 2)) == {"a": 1, "b": 2}
    assert vv_from_flat(iter(["a", 1])) == {"a": 1}
    assert vv_from_flat([]) == {}


def test_vv_from_flat_keeps_the_larger_counter_of_a_repeated_node() -> None:
    assert vv_from_flat(["a", 3, "a", 1]) == {"a": 3}
    assert vv_from_flat(["a", 1, "a", 3]) == {"a": 3}


@pytest.mark.parametrize(
    "flat",
    [
        ["a"],
        ["a", 1, "b"],
        [1, "a"],  # swapped
        [b"a", 1],  # bytes, not a str node id
        [None, 1],
        ["a", "1"],
        ["a", 1.0],
        ["a", None],
        ["a", True],  # a bool is an int in Python, but never a counter
        ["a", False],
        ["a", -1],
        ["a", 1, "b", -(2**63)],
        ["a", ["b", 1]],
    ],
)
def test_vv_from_flat_rejects_malformed_lists(flat: list[object]) -> None:
    with pytest.raises(ValueError):
        vv_from_flat(flat)


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=3),
    st.binary(max_size=3),
    st.lists(st.integers(), max_size=2),
)


@given(st.lists(junk, max_size=8))
def test_vv_from_flat_returns_a_valid_vector_or_raises_value_error(flat: list[object]) -> None:
    try:
        vector = vv_from_flat(flat)
    except ValueError:
        return
    assert all(isinstance(node, str) for node in vector)
    assert all(type(counter) is int and counter >= 0 for counter in vector.values())
