"""Stored versions: the packed record, and how sibling sets are reconciled.

Sibling sets for the properties are not drawn at random (random dots and
contexts would describe impossible histories); they come from a simulated
history: three replicas take writes with the contexts clients read, and
exchange their records. Beside the dotted version vectors, the simulation
keeps each write's causal history as an explicit set of dots (the dots the
writing client had read, and its own), an oracle that owes nothing to the
version-vector encoding.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringkv.core.clocks import HLC_LOGICAL_MAX, Dot, HlcTimestamp, vv_covers, vv_merge
from ringkv.core.record import (
    ConflictMode,
    RecordError,
    Version,
    WriteSpec,
    causal_past,
    live_versions,
    lww_order_key,
    new_write,
    pack_record,
    record_vv,
    resolve,
    sync,
    unpack_record,
)

NODES = ("n1", "n2", "n3")


def _version(
    node: str,
    counter: int,
    context: dict[str, int] | None = None,
    *,
    value: bytes | None = None,
    hlc: tuple[int, int] = (1000, 0),
    expires_at_ms: int = 0,
    tombstone: bool = False,
) -> Version:
    return Version(
        value=value if value is not None else f"{node}:{counter}".encode(),
        hlc=HlcTimestamp(*hlc),
        dot=Dot(node, counter),
        context=context or {},
        expires_at_ms=expires_at_ms,
        tombstone=tombstone,
    )


def _spec(node: str, value: bytes, wall_ms: int = 1000, **kwargs: object) -> WriteSpec:
    return WriteSpec(value=value, hlc=HlcTimestamp(wall_ms, 0), node=node, **kwargs)  # type: ignore[arg-type]


def _dots(versions: Sequence[Version]) -> set[Dot]:
    return {v.dot for v in versions}


# -- pack / unpack -------------------------------------------------------------

node_ids = st.text(min_size=1, max_size=6)
contexts = st.dictionaries(node_ids, st.integers(min_value=1, max_value=2**64 - 1), max_size=4)
versions = st.builds(
    Version,
    value=st.binary(max_size=64),
    hlc=st.builds(
        HlcTimestamp,
        st.integers(min_value=0, max_value=2**63),
        st.integers(min_value=0, max_value=HLC_LOGICAL_MAX),
    ),
    dot=st.builds(Dot, node_ids, st.integers(min_value=1, max_value=2**64 - 1)),
    context=contexts,
    expires_at_ms=st.integers(min_value=0, max_value=2**63),
    tombstone=st.booleans(),
)


@given(st.lists(versions, max_size=5))
def test_pack_unpack_round_trip(record: list[Version]) -> None:
    assert unpack_record(pack_record(record)) == record


def test_pack_record_is_one_compact_msgpack_list() -> None:
    packed = pack_record([_version("n1", 1, {"n2": 3}, value=b"v")])
    assert msgpack.unpackb(packed) == [1, [b"v", 1000, 0, "n1", 1, ["n2", 3], 0, False]]


def _unpack_or_record_error(data: bytes) -> None:
    """unpack_record either decodes or raises RecordError: nothing else."""
    try:
        decoded = unpack_record(data)
    except RecordError:
        return
    assert all(isinstance(v, Version) for v in decoded)


@given(st.binary(max_size=200))
def test_unpack_record_on_garbage_bytes_raises_only_record_error(data: bytes) -> None:
    _unpack_or_record_error(data)


@given(st.binary(max_size=40))
def test_unpack_record_on_garbage_after_a_valid_header(tail: bytes) -> None:
    # 0x92 0x01: a 2-element list whose first element is the format; the
    # garbage then has to be parsed as a version row.
    _unpack_or_record_error(b"\x92\x01" + tail)
    _unpack_or_record_error(b"\x92\x01\x98" + tail)


msgpack_junk = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.floats(allow_nan=True),
        st.text(max_size=5),
        st.binary(max_size=5),
    ),
    lambda children: st.lists(children, max_size=9),
    max_leaves=20,
)
field_junk = st.one_of(
    msgpack_junk,
    st.sampled_from([2**62, 2**64 - 1, -1, 0, float("inf"), float("nan"), "12", True, [], {}]),
)


@given(st.lists(field_junk, min_size=8, max_size=8), st.integers(min_value=0, max_value=7))
def test_unpack_record_on_wrong_field_types_raises_only_record_error(
    row: list[object], keep: int
) -> None:
    valid: list[object] = [b"v", 1, 0, "n1", 1, ["n2", 1], 0, False]
    row = [*valid[:keep], *row[keep:]]
    _unpack_or_record_error(msgpack.packb([1, row]))
    _unpack_or_record_error(msgpack.packb([1, valid, row]))


@given(msgpack_junk)
def test_unpack_record_on_any_msgpack_value_raises_only_record_error(value: object) -> None:
    _unpack_or_record_error(msgpack.packb(value))
    _unpack_or_record_error(msgpack.packb([1, value]))


@pytest.mark.parametrize(
    "record",
    [
        [],
        {"a": 1},
        [2],  # a future format
        [True],  # True == 1 in Python, but is not the format number
        [1.0],
        [1, [b"v", 1, 0, "n1", 1, [], 0]],  # a field missing
        [1, [b"v", 1, 0, "n1", 1, [], 0, False, 9]],  # a field too many
        [1, [2**62, 1, 0, "n1", 1, [], 0, False]],  # bytes(2**62) would not fit in memory
        [1, [10**6, 1, 0, "n1", 1, [], 0, False]],  # bytes(10**6): a megabyte of zeros
        [1, ["text", 1, 0, "n1", 1, [], 0, False]],
        [1, [b"v", 1.5, 0, "n1", 1, [], 0, False]],
        [1, [b"v", float("inf"), 0, "n1", 1, [], 0, False]],  # int(inf): OverflowError
        [1, [b"v", "1", 0, "n1", 1, [], 0, False]],
        [1, [b"v", True, 0, "n1", 1, [], 0, False]],
        [1, [b"v", -1, 0, "n1", 1, [], 0, False]],
        [1, [b"v", 1, 0, 7, 1, [], 0, False]],  # a node id that is not text
        [1, [b"v", 1, 0, b"n1", 1, [], 0, False]],
        [1, [b"v", 1, 0, "n1", 0, [], 0, False]],  # dots count from 1
        [1, [b"v", 1, 0, "n1", 1, "n2", 0, False]],  # a context that is not a list
        [1, [b"v", 1, 0, "n1", 1, ["n2"], 0, False]],
        [1, [b"v", 1, 0, "n1", 1, ["n2", True], 0, False]],
        [1, [b"v", 1, 0, "n1", 1, [], None, False]],
        [1, [b"v", 1, 0, "n1", 1, [], 0, 1]],  # tombstone flag not a bool
        [1, "abcdefgh"],  # eight characters unpack into eight fields
        [1, b"abcdefgh"],
    ],
)
def test_unpack_record_rejects_malformed_records(record: object) -> None:
    with pytest.raises(RecordError):
        unpack_record(msgpack.packb(record))


def test_unpack_record_rejects_every_truncation_and_trailing_bytes() -> None:
    packed = pack_record([_version("n1", 1, {"n2": 3}), _version("n2", 4)])
    for end in range(len(packed)):
        with pytest.raises(RecordError):
            unpack_record(packed[:end])
    with pytest.raises(RecordError):
        unpack_record(packed + b"\x00")


# -- causal past ----------------------------------------------------------------


def test_causal_past_is_the_context_plus_the_dot() -> None:
    assert causal_past(_version("n1", 3, {"n1": 2, "n2": 5})) == {"n1": 3, "n2": 5}
    assert causal_past(_version("n1", 3, {"n1": 7})) == {"n1": 7}


def test_record_vv_joins_the_pasts_of_all_siblings() -> None:
    siblings = [_version("n1", 2, {"n2": 1}), _version("n2", 3, {"n1": 1})]
    assert record_vv(siblings) == {"n1": 2, "n2": 3}
    assert record_vv([]) == {}


def test_lww_order_key_is_hlc_then_node_then_counter() -> None:
    ordered = [
        _version("n9", 9, hlc=(1, 5)),
        _version("n1", 1, hlc=(2, 0)),
        _version("n1", 2, hlc=(2, 0)),
        _version("n2", 1, hlc=(2, 0)),
        _version("n1", 1, hlc=(2, 1)),
    ]
    shuffled = [ordered[i] for i in (3, 0, 4, 2, 1)]
    assert sorted(shuffled, key=lww_order_key) == ordered


# -- sync: examples ---------------------------------------------------------------


def test_sync_keeps_concurrent_versions_and_drops_superseded_ones() -> None:
    a = _version("n1", 1)
    b = _version("n2", 1)
    c = _version("n1", 2, {"n1": 1})  # saw a
    assert _dots(sync([a], [b])) == {a.dot, b.dot}
    assert sync([a, b], [c]) == sorted([b, c], key=lww_order_key)
    assert sync([c], [a]) == [c]


def test_sync_keeps_a_blind_write_concurrent_with_an_older_dot_of_its_node() -> None:
    # Regression: a causal blind write on n1 after (n1, 1) gets the dot
    # (n1, 2) with an empty context. It never saw (n1, 1), but sync used to
    # read its causal past as {n1: 2}, and so dropped (n1, 1): a lost sibling.
    first = _version("n1", 1, value=b"first")
    blind = _version("n1", 2, {}, value=b"blind")
    assert _dots(sync([first, blind], [first, blind])) == {first.dot, blind.dot}
    assert _dots(sync([first], [blind])) == {first.dot, blind.dot}
    assert _dots(sync([blind], [first])) == {first.dot, blind.dot}


def test_sync_returns_siblings_in_lww_order() -> None:
    low = _version("n2", 1, hlc=(5, 0))
    high = _version("n1", 1, hlc=(9, 0))
    assert sync([high], [low]) == [low, high]


def test_sync_merges_the_contexts_of_two_copies_of_one_dot() -> None:
    # Two copies of one write never differ when written by ringkv; should they
    # (a damaged or hand-edited record), sync keeps the union, whatever the order.
    w1 = _version("n1", 5, {"n2": 1})
    w2 = _version("n1", 5, {"n3": 2})
    (merged,) = sync([w1], [w2])
    assert merged.dot == Dot("n1", 5)
    assert merged.context == {"n2": 1, "n3": 2}
    assert sync([w2], [w1]) == [merged]
    assert sync([w1, _version("n3", 2)], [w2]) == [merged]


# -- the simulated history ---------------------------------------------------------


@dataclass
class History:
    """Three replicas of one key, written by clients with the contexts they read."""

    mode: ConflictMode
    # When set, a write's HLC is above that of everything it saw, as when the
    # coordinator's clock observes the stamps the client read.
    causal_hlc: bool = False
    replicas: dict[str, list[Version]] = field(default_factory=lambda: {n: [] for n in NODES})
    reads: list[tuple[dict[str, int], frozenset[Dot]]] = field(default_factory=list)
    written: dict[Dot, Version] = field(default_factory=dict)
    # The oracle: each write's causal history as an explicit set of dots.
    true_past: dict[Dot, frozenset[Dot]] = field(default_factory=dict)
    snapshots: list[list[Version]] = field(default_factory=list)
    # (state before, context, tombstone, state after) of every causal write
    writes: list[tuple[list[Version], dict[str, int] | None, list[Version]]] = field(
        default_factory=list
    )

    def read(self, node: str) -> tuple[dict[str, int], frozenset[Dot]]:
        state = self.replicas[node]
        seen = frozenset().union(*(self.true_past[v.dot] for v in state))
        return record_vv(state), seen

    def write(self, node: str, how: int, wall_ms: int, tombstone: bool) -> None:
        if how == 0 or (how >= 3 and not self.reads):
            context, seen = None, frozenset[Dot]()  # blind, as a plain SET
        elif how == 1:
            context, seen = self.read(node)  # read-modify-write on the coordinator
        elif how == 2:
            context, seen = self.read(NODES[(NODES.index(node) + 1) % len(NODES)])
        else:
            context, seen = self.reads[how % len(self.reads)]  # a stale context
        before = self.replicas[node]
        if self.mode is not ConflictMode.CAUSAL:  # an lww write saw the coordinator's record
            seen = seen.union(*(self.true_past[v.dot] for v in before))
        if self.causal_hlc:  # the coordinator's HLC observed every stamp the write saw
            wall_ms = max([wall_ms, *(self.written[d].hlc.wall_ms + 1 for d in seen)])
        value = f"w{len(self.written)}".encode()
        spec = _spec(node, value, wall_ms, tombstone=tombstone)
        after = new_write(before, spec, self.mode, context)
        (new,) = [v for v in after if v.value == value]
        assert new.dot not in self.written, "a dot was handed out twice"
        assert record_vv(after) == vv_merge(record_vv(before), context or {}, causal_past(new))
        self.written[new.dot] = new
        self.true_past[new.dot] = seen | {new.dot}
        self.replicas[node] = after
        self.writes.append((before, context, after))
        self.snapshots.append(after)

    def exchange(self, into: str, source: str) -> None:
        # A replica stores what sync returns, in every mode (record.py).
        ours, theirs = self.replicas[into], self.replicas[source]
        merged = sync(ours, theirs)
        # A record forgets no dot, or a coordinator could hand one out twice.
        assert record_vv(merged) == vv_merge(record_vv(ours), record_vv(theirs))
        self.replicas[into] = merged
        self.snapshots.append(merged)

    def states(self) -> list[list[Version]]:
        return [*self.replicas.values(), *self.snapshots[-6:]]


steps = st.lists(
    st.tuples(
        st.sampled_from(["write", "write", "read", "sync"]),
        st.sampled_from(NODES),
        st.sampled_from(NODES),
        st.integers(min_value=0, max_value=6),  # how the writer got its context
        st.integers(min_value=1000, max_value=1010),  # HLC wall time: ties are common
        st.integers(min_value=0, max_value=5),  # 0: a delete
    ),
    max_size=30,
)


def _run(
    mode: ConflictMode,
    script: list[tuple[str, str, str, int, int, int]],
    causal_hlc: bool = False,
) -> History:
    history = History(mode, causal_hlc)
    for kind, node, other, how, wall_ms, delete in script:
        if kind == "write":
            history.write(node, how, wall_ms, tombstone=delete == 0)
        elif kind == "read":
            history.reads.append(history.read(node))
        else:
            history.exchange(node, other)
    return history


causal_histories = steps.map(functools.partial(_run, ConflictMode.CAUSAL))
lww_histories = steps.map(functools.partial(_run, ConflictMode.LWW))
lww_causal_hlc_histories = steps.map(functools.partial(_run, ConflictMode.LWW, causal_hlc=True))
sim_settings = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _expected_sync(a: Sequence[Version], b: Sequence[Version], h: History) -> set[Dot]:
    """The oracle: the union minus every version in another's true causal past."""
    union = _dots(a) | _dots(b)
    return {d for d in union if not any(e != d and d in h.true_past[e] for e in union)}


# -- sync: properties over histories -------------------------------------------------


@sim_settings
@given(causal_histories)
def test_sync_keeps_exactly_the_versions_no_other_version_has_seen(h: History) -> None:
    for a, b in itertools.product(h.states(), repeat=2):
        assert _dots(sync(a, b)) == _expected_sync(a, b, h)


@sim_settings
@given(causal_histories)
def test_context_coverage_agrees_with_the_true_causal_past(h: History) -> None:
    # The version vector encoding is exact for every pair of written versions
    # that can meet in one record.
    for a, b in itertools.combinations(h.states(), 2):
        union = {v.dot: v for v in (*a, *b)}
        for v, w in itertools.permutations(union.values(), 2):
            assert vv_covers(w.context, v.dot) == (v.dot in h.true_past[w.dot])


@sim_settings
@given(causal_histories)
def test_sync_is_idempotent(h: History) -> None:
    for state in h.states():
        assert _dots(sync(state, state)) == _dots(state)
        assert _dots(sync(state, [])) == _dots(state)
        assert _dots(sync([], state)) == _dots(state)
    for a, b in itertools.product(h.states(), repeat=2):
        once = sync(a, b)
        assert sync(once, once) == once
        assert sync(once, b) == once
        assert sync(once, a) == once


@sim_settings
@given(causal_histories)
def test_sync_is_commutative(h: History) -> None:
    for a, b in itertools.product(h.states(), repeat=2):
        assert sync(a, b) == sync(b, a)


@sim_settings
@given(causal_histories)
def test_sync_is_associative(h: History) -> None:
    for a, b, c in itertools.product(h.states()[:5], repeat=3):
        assert sync(sync(a, b), c) == sync(a, sync(b, c))


@sim_settings
@given(causal_histories)
def test_causal_mode_loses_no_write_that_nothing_superseded(h: History) -> None:
    # DESIGN.md: no acknowledged write is silently lost in causal mode. After
    # the replicas exchange everything, exactly the writes that no later
    # write saw are left, as siblings.
    everything = functools.reduce(sync, h.replicas.values(), [])
    maximal = {d for d in h.written if not any(e != d and d in h.true_past[e] for e in h.written)}
    assert _dots(everything) == maximal
    for order in itertools.permutations(h.replicas.values()):
        assert functools.reduce(sync, order, []) == everything


# -- new_write in causal mode ------------------------------------------------------------


@sim_settings
@given(causal_histories)
def test_causal_new_write_replaces_exactly_what_its_context_saw(h: History) -> None:
    for before, context, after in h.writes:
        new = after[-1]
        expected_survivors = [v for v in before if not vv_covers(context or {}, v.dot)]
        assert after == [*expected_survivors, new]
        assert new.context == (context or {})
        # The new dot is fresh: past every dot of its node seen here or by the client.
        assert new.dot.counter > vv_merge(record_vv(before), context or {}).get(new.dot.node, 0)
        if context is None:
            assert after[:-1] == list(before)  # a blind write adds a sibling
        if context is not None and _dots(before) <= {
            v.dot for v in before if vv_covers(context, v.dot)
        }:
            assert after == [new]  # the client saw everything: one version is left


def test_causal_blind_write_adds_a_sibling() -> None:
    a = new_write([], _spec("n1", b"a"), ConflictMode.CAUSAL, None)
    ab = new_write(a, _spec("n1", b"b"), ConflictMode.CAUSAL, None)
    abc = new_write(ab, _spec("n2", b"c"), ConflictMode.CAUSAL, None)
    assert [v.value for v in abc] == [b"a", b"b", b"c"]
    assert [v.dot for v in abc] == [Dot("n1", 1), Dot("n1", 2), Dot("n2", 1)]
    assert all(v.context == {} for v in abc)
    # ...and the siblings stay siblings when the record travels.
    assert _dots(sync(abc, abc)) == _dots(abc)


def test_causal_write_with_a_context_that_saw_all_siblings_replaces_them() -> None:
    siblings = [_version("n1", 1), _version("n2", 1), _version("n1", 2)]
    after = new_write(siblings, _spec("n3", b"resolved"), ConflictMode.CAUSAL, record_vv(siblings))
    assert [v.value for v in after] == [b"resolved"]
    assert after[0].dot == Dot("n3", 1)
    assert after[0].context == {"n1": 2, "n2": 1}


def test_causal_write_with_a_context_that_saw_some_siblings_replaces_only_those() -> None:
    a, b = _version("n1", 1), _version("n2", 1)
    seen_only_a = record_vv([a])
    c = _version("n3", 1)  # arrived after the client read
    after = new_write([a, b, c], _spec("n1", b"d"), ConflictMode.CAUSAL, seen_only_a)
    assert [v.dot for v in after] == [b.dot, c.dot, Dot("n1", 2)]
    assert after[-1].context == {"n1": 1}


def test_causal_write_dot_is_past_the_clients_context_too() -> None:
    # The client read a newer record elsewhere than this coordinator holds.
    after = new_write([], _spec("n1", b"x"), ConflictMode.CAUSAL, {"n1": 7})
    assert after[0].dot == Dot("n1", 8)


# -- last-writer-wins ------------------------------------------------------------------------


@sim_settings
@given(lww_histories)
def test_lww_write_always_leaves_a_single_version(h: History) -> None:
    for _, _, after in h.writes:
        assert len(after) == 1


@sim_settings
@given(lww_histories)
def test_lww_dot_names_one_write_everywhere(h: History) -> None:
    for state in h.states():
        for v in state:
            assert (v.value, v.hlc) == (h.written[v.dot].value, h.written[v.dot].hlc)


@sim_settings
@given(lww_histories)
def test_lww_replicas_converge_on_the_newest_write_nothing_superseded(h: History) -> None:
    # Whatever the HLCs: after the replicas exchange everything, readers get
    # the newest of the writes no later write saw, from every replica.
    maximal = [
        v
        for d, v in h.written.items()
        if not any(e != d and d in h.true_past[e] for e in h.written)
    ]
    expected = [max(maximal, key=lww_order_key)] if maximal else []
    for node in NODES:
        h.exchange("n1", node)
    for node in NODES:
        h.exchange(node, "n1")
    for state in h.replicas.values():
        assert _dots(state) == _dots(maximal)
        assert resolve(state, ConflictMode.LWW) == expected


@sim_settings
@given(lww_causal_hlc_histories)
def test_lww_newest_write_wins_when_hlc_respects_causality(h: History) -> None:
    # When every write's HLC is above those it saw, no write ever saw the
    # newest one: it is what readers get in the end.
    if not h.written:
        return
    newest = max(h.written.values(), key=lww_order_key)
    for node in NODES:
        h.exchange("n1", node)
    for node in NODES:
        h.exchange(node, "n1")
        assert resolve(h.replicas[node], ConflictMode.LWW) == [newest]


@pytest.mark.xfail(
    strict=True,
    reason="design: storing resolve()'s pick after each pairwise merge is not associative "
    "when a write's HLC is below that of a write it causally follows",
)
def test_lww_storing_the_resolved_record_converges() -> None:
    # x causally follows z, yet carries a smaller HLC; y is concurrent with
    # both. By (hlc, node): z > y > x, while x supersedes z. Keeping only the
    # pick after each merge, merging x and y first ends on z (y beats x, z
    # beats y), merging y and z first ends on x (z beats y, x supersedes z).
    # Storing sync's result and resolving when read converges on y.
    z = new_write([], _spec("n3", b"z", 1000), ConflictMode.LWW, None)
    x = new_write([], _spec("n1", b"x", 1000), ConflictMode.LWW, record_vv(z))
    y = new_write([], _spec("n2", b"y", 1000), ConflictMode.LWW, None)
    assert resolve(sync(sync(x, y), z), ConflictMode.LWW)[0].value == b"y"
    assert resolve(sync(sync(y, z), x), ConflictMode.LWW)[0].value == b"y"
    first = resolve(sync(resolve(sync(x, y), ConflictMode.LWW), z), ConflictMode.LWW)
    second = resolve(sync(resolve(sync(y, z), ConflictMode.LWW), x), ConflictMode.LWW)
    assert [v.value for v in first] == [v.value for v in second]


def test_lww_record_that_stores_the_sync_result_forgets_no_dot() -> None:
    # Had n1 stored only the pick of the merge (theirs), it would have
    # forgotten its own dot (n1, 1) and numbered its next write 1 again: two
    # writes under one dot, on replicas that would never converge.
    mine = new_write([], _spec("n1", b"mine", 100), ConflictMode.LWW, None)
    theirs = new_write([], _spec("n2", b"theirs", 200), ConflictMode.LWW, None)
    on_n1 = sync(mine, theirs)
    assert [v.value for v in resolve(on_n1, ConflictMode.LWW)] == [b"theirs"]
    again = new_write(on_n1, _spec("n1", b"again", 300), ConflictMode.LWW, None)
    assert [(v.dot, v.value) for v in again] == [(Dot("n1", 2), b"again")]
    on_n3 = mine  # n3 still holds the first write
    assert sync(on_n3, again) == again
    assert sync(again, on_n3) == again


def test_sync_lifts_a_superseding_context_over_what_the_superseded_had_seen() -> None:
    # A client wrote w with a hand-made context that covers v's dot but not
    # what v had seen; the record still knows (n1, 1) after dropping v.
    v = _version("n3", 1, {"n1": 1})
    w = _version("n2", 2, {"n2": 1, "n3": 1})
    (kept,) = sync([v], [w])
    assert (kept.dot, kept.value) == (w.dot, w.value)
    assert kept.context == {"n1": 1, "n2": 1, "n3": 1}
    assert sync([w], [v]) == [kept]
    # A context that already includes it is left as it is.
    closed = _version("n2", 2, {"n1": 1, "n2": 1, "n3": 1})
    assert sync([v], [closed]) == [closed]
    assert sync([v], [closed])[0] is closed


def test_sync_keeps_both_of_two_versions_that_cover_each_other() -> None:
    # Only hand-made contexts can do this; neither version has then
    # superseded the other, and dropping both would lose two writes.
    a = _version("n1", 1, {"n2": 1})
    b = _version("n2", 1, {"n1": 1})
    assert _dots(sync([a], [b])) == {a.dot, b.dot}
    assert sync([a], [b]) == sync([b], [a])
    assert _dots(sync([a, b], [_version("n3", 1, {"n1": 1, "n2": 1})])) == {Dot("n3", 1)}


def test_causal_write_with_a_hand_made_context_forgets_no_dot() -> None:
    # A client context that covers a sibling's dot but not what the sibling
    # had seen (RINGKV.PUT takes any context) still leaves a record that knows
    # every dot it held.
    sibling = _version("n1", 2, {"n1": 1, "n2": 5})
    after = new_write([sibling], _spec("n3", b"x"), ConflictMode.CAUSAL, {"n1": 2})
    assert [v.value for v in after] == [b"x"]
    assert after[0].context == {"n1": 2, "n2": 5}
    assert record_vv(after) == {"n1": 2, "n2": 5, "n3": 1}


@pytest.mark.parametrize("mode", [ConflictMode.LWW, ConflictMode.STRONG])
def test_lww_blind_write_replaces_everything(mode: ConflictMode) -> None:
    siblings = [_version("n1", 1), _version("n2", 1)]
    after = new_write(siblings, _spec("n3", b"x", 1), mode, None)
    assert [v.value for v in after] == [b"x"]
    assert after[0].context == {"n1": 1, "n2": 1}


@pytest.mark.parametrize("ours_first", [True, False])
def test_lww_write_that_saw_another_wins_even_with_a_smaller_hlc(ours_first: bool) -> None:
    # n1's clock runs ahead: its write carries a larger HLC than the write
    # on n2 that read it. The later write must still win.
    first = new_write([], _spec("n1", b"first", 5000), ConflictMode.LWW, None)
    later = new_write([], _spec("n2", b"later", 1000), ConflictMode.LWW, record_vv(first))
    pair = (first, later) if ours_first else (later, first)
    assert sync(*pair) == later
    assert resolve(sync(*pair), ConflictMode.LWW) == later
    # Without the causal link, the larger HLC wins.
    blind = new_write([], _spec("n2", b"blind", 1000), ConflictMode.LWW, None)
    assert resolve(sync(first, blind), ConflictMode.LWW)[0].value == b"first"


concurrent_writes = st.lists(
    st.tuples(
        st.sampled_from(NODES),
        st.integers(min_value=0, max_value=3),  # wall
        st.integers(min_value=0, max_value=2),  # logical
    ),
    min_size=1,
    max_size=8,
)


@given(concurrent_writes, st.permutations(range(len(NODES))))
def test_concurrent_lww_writes_resolve_by_hlc_then_node_then_counter(
    writes: list[tuple[str, int, int]], order: list[int]
) -> None:
    # Each node writes blind on its own record: the nodes' writes are concurrent.
    records: dict[str, list[Version]] = {n: [] for n in NODES}
    for i, (node, wall, logical) in enumerate(writes):
        spec = WriteSpec(value=b"%d" % i, hlc=HlcTimestamp(wall, logical), node=node)
        records[node] = new_write(records[node], spec, ConflictMode.LWW, None)
    latest = [record[0] for record in records.values() if record]
    expected = max(latest, key=lambda v: (v.hlc, v.dot.node, v.dot.counter))
    merged: list[Version] = []
    for i in order:
        merged = sync(merged, records[NODES[i]])
        if merged:
            assert resolve(merged, ConflictMode.LWW) == [max(merged, key=lww_order_key)]
    assert _dots(merged) == _dots(latest)
    assert resolve(merged, ConflictMode.LWW) == [expected]


def test_lww_tie_on_hlc_is_broken_by_node_id_then_counter() -> None:
    a = _version("n1", 9, hlc=(7, 0), value=b"a")
    b = _version("n2", 1, hlc=(7, 0), value=b"b")
    c = _version("n2", 2, hlc=(7, 0), value=b"c")
    assert resolve(sync([a], [b]), ConflictMode.LWW)[0].value == b"b"
    assert resolve(sync([b], [a]), ConflictMode.LWW)[0].value == b"b"
    assert resolve([a, b], ConflictMode.STRONG)[0].value == b"b"
    assert resolve([c, a, b], ConflictMode.LWW)[0].value == b"c"


def test_resolve_keeps_siblings_in_causal_mode() -> None:
    siblings = [_version("n1", 1), _version("n2", 1)]
    assert resolve(siblings, ConflictMode.CAUSAL) == siblings


def test_resolve_picks_the_newest_version_unchanged() -> None:
    loser = _version("n2", 3, {"n3": 4}, hlc=(1, 0))
    winner = _version("n1", 1, hlc=(2, 0))
    assert resolve([loser, winner], ConflictMode.LWW)[0] is winner
    assert resolve([winner], ConflictMode.LWW) == [winner]
    assert resolve([], ConflictMode.LWW) == []


# -- liveness ------------------------------------------------------------------------------


def test_live_versions_filters_tombstones_and_expired_versions() -> None:
    forever = _version("n1", 1, expires_at_ms=0)
    later = _version("n2", 1, expires_at_ms=1001)
    now = _version("n3", 1, expires_at_ms=1000)
    past = _version("n4", 1, expires_at_ms=999)
    deleted = _version("n5", 1, tombstone=True)
    deleted_later = _version("n6", 1, tombstone=True, expires_at_ms=5000)
    record = [forever, later, now, past, deleted, deleted_later]
    # Redis's keyIsExpired: a version expires once now is after its expiry.
    assert live_versions(record, 1000) == [forever, later, now]
    assert live_versions(record, 1001) == [forever, later]
    assert live_versions(record, 0) == [forever, later, now, past]
    assert live_versions(record, 10**15) == [forever]
    assert live_versions([], 1000) == []


@given(st.lists(versions, max_size=6), st.integers(min_value=0, max_value=2**63))
def test_live_versions_is_the_order_preserving_filter_of_is_live(
    record: list[Version], now_ms: int
) -> None:
    live = live_versions(record, now_ms)
    assert live == [v for v in record if v.is_live(now_ms)]
    for v in live:
        assert not v.tombstone
        assert v.expires_at_ms == 0 or v.expires_at_ms >= now_ms
