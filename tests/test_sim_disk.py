"""The simulated disk: the storage conformance suite, then crashes.

The conformance tests of ``test_storage_conformance.py`` are imported and
rerun here against ``SimEngine`` (a test function collected in this module
takes this module's ``engine`` fixture). Then the disk model itself: what a
crash keeps under each fsync policy, and a Hypothesis state machine that
compares the engine, crashes included, with a model of the three states a
write passes through (written, committed, durable).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import test_storage_conformance as conformance
from ringkv.sim.disk import SimEngine
from ringkv.storage.base import Engine, FsyncPolicy

test_put_get_delete_count = conformance.test_put_get_delete_count
test_overwrite_keeps_count = conformance.test_overwrite_keeps_count
test_pending_writes_visible_before_flush = conformance.test_pending_writes_visible_before_flush
test_memory_bytes_grows_with_data = conformance.test_memory_bytes_grows_with_data
test_scan_walks_every_key_once_in_token_order = (
    conformance.test_scan_walks_every_key_once_in_token_order
)
test_scan_while_keys_change_between_calls = conformance.test_scan_while_keys_change_between_calls
test_scan_never_splits_keys_that_share_a_token = (
    conformance.test_scan_never_splits_keys_that_share_a_token
)
test_expiry_candidates = conformance.test_expiry_candidates
test_expiry_index_follows_overwrites_and_deletes = (
    conformance.test_expiry_index_follows_overwrites_and_deletes
)
test_expiry_candidates_in_expiry_order = conformance.test_expiry_candidates_in_expiry_order
test_random_key = conformance.test_random_key
test_clear = conformance.test_clear
test_long_keys_round_trip_and_stay_distinct = (
    conformance.test_long_keys_round_trip_and_stay_distinct
)
test_huge_key = conformance.test_huge_key
test_tables_are_isolated = conformance.test_tables_are_isolated
test_count_expiring_follows_puts_overwrites_and_deletes = (
    conformance.test_count_expiring_follows_puts_overwrites_and_deletes
)


@pytest.fixture(params=list(FsyncPolicy))
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    eng = SimEngine(fsync=request.param)
    yield eng
    eng.close()


def test_sim_engine_is_an_engine() -> None:
    engine: Engine = SimEngine()  # mypy checks the protocol here
    assert engine.name == "sim"


# --- crashes ------------------------------------------------------------------


def _contents(engine: SimEngine, name: str = "ks") -> dict[bytes, bytes]:
    table = engine.table(name)
    keys = conformance.scan_all(table, 100)
    return {k: r for k in keys if (r := table.get(k)) is not None}


@pytest.mark.parametrize("lose_unsynced", [True, False])
def test_crash_loses_writes_never_committed(lose_unsynced: bool) -> None:
    engine = SimEngine(FsyncPolicy.ALWAYS)
    table = engine.table("ks")
    table.put(b"flushed", b"1", 0)
    table.put(b"flushed-then-deleted", b"1", 0)
    engine.flush()
    table.put(b"unflushed", b"2", 0)
    table.delete(b"flushed-then-deleted")
    engine.table("unflushed-table")
    assert engine.dirty
    engine.crash(lose_unsynced=lose_unsynced)
    assert not engine.dirty
    assert _contents(engine) == {b"flushed": b"1", b"flushed-then-deleted": b"1"}
    assert "unflushed-table" in engine.table_names()  # creating a table commits at once


@pytest.mark.parametrize(
    ("policy", "lose_unsynced", "survives"),
    [
        (FsyncPolicy.ALWAYS, True, True),
        (FsyncPolicy.ALWAYS, False, True),
        (FsyncPolicy.BATCH, True, False),  # committed, not yet fsynced: power loss
        (FsyncPolicy.BATCH, False, True),  # process crash: the page cache keeps it
        (FsyncPolicy.NEVER, True, False),
        (FsyncPolicy.NEVER, False, True),
    ],
)
def test_committed_writes_survive_as_the_policy_says(
    policy: FsyncPolicy, lose_unsynced: bool, survives: bool
) -> None:
    engine = SimEngine(policy)
    table = engine.table("ks")
    table.put(b"old", b"synced", 0)
    engine.flush()
    engine.sync()
    table.put(b"old", b"committed", 0)
    table.put(b"new", b"committed", 0)
    engine.flush()
    engine.crash(lose_unsynced=lose_unsynced)
    expected = {b"old": b"committed", b"new": b"committed"} if survives else {b"old": b"synced"}
    assert _contents(engine) == expected


def test_sync_after_flush_makes_batch_writes_durable() -> None:
    engine = SimEngine(FsyncPolicy.BATCH)
    table = engine.table("ks")
    table.put(b"a", b"1", 500)
    engine.flush()
    assert engine.unsynced_keys() == 1
    engine.sync()
    assert engine.unsynced_keys() == 0
    table.put(b"b", b"2", 0)  # written, then crash before the commit
    engine.crash(lose_unsynced=True)
    assert _contents(engine) == {b"a": b"1"}
    assert engine.table("ks").expiry_candidates(1000, 10) == [b"a"], "expiry index rebuilt"


def test_clear_is_durable_only_once_committed() -> None:
    engine = SimEngine(FsyncPolicy.ALWAYS)
    table = engine.table("ks")
    for i in range(20):
        table.put(b"k%d" % i, b"v", 0)
    engine.flush()
    table.clear()
    table.put(b"after", b"v", 0)
    engine.crash()
    assert len(_contents(engine)) == 20
    table = engine.table("ks")
    table.clear()
    table.put(b"after", b"v", 0)
    engine.flush()
    engine.crash()
    assert _contents(engine) == {b"after": b"v"}


def test_tables_from_before_a_crash_refuse_use() -> None:
    engine = SimEngine()
    old = engine.table("ks")
    old.put(b"k", b"v", 0)
    engine.flush()
    engine.crash()
    with pytest.raises(AssertionError, match="after the engine crashed"):
        old.get(b"k")
    assert engine.table("ks").get(b"k") == b"v"


def test_durable_snapshot_is_a_copy() -> None:
    engine = SimEngine()
    engine.table("ks").put(b"k", b"v", 7)
    engine.flush()
    snapshot = engine.durable_snapshot()
    assert snapshot == {"ks": {b"k": (b"v", 7)}}
    snapshot["ks"].clear()
    assert engine.durable_snapshot() == {"ks": {b"k": (b"v", 7)}}


# --- against a model, crashes included ------------------------------------------

KEYS = [b"a", b"b", b"c", b"key-1", b"key-2"]
key_indexes = st.integers(0, len(KEYS) - 1)


class SimDiskAgainstModel(RuleBasedStateMachine):
    """Three dicts model the three states: live, committed and durable."""

    policy = FsyncPolicy.BATCH

    def __init__(self) -> None:
        super().__init__()
        self.engine = SimEngine(self.policy)
        self.live: dict[bytes, bytes] = {}
        self.committed: dict[bytes, bytes] = {}
        self.durable: dict[bytes, bytes] = {}

    @rule(index=key_indexes, record=st.binary(max_size=4), expires=st.sampled_from([0, 10]))
    def put(self, index: int, record: bytes, expires: int) -> None:
        self.engine.table("ks").put(KEYS[index], record, expires)
        self.live[KEYS[index]] = record

    @rule(index=key_indexes)
    def delete(self, index: int) -> None:
        found = self.engine.table("ks").delete(KEYS[index])
        assert found == (KEYS[index] in self.live)
        self.live.pop(KEYS[index], None)

    @rule()
    def clear(self) -> None:
        self.engine.table("ks").clear()
        self.live.clear()

    @rule()
    def flush(self) -> None:
        self.engine.flush()
        self.committed = dict(self.live)
        if self.policy is FsyncPolicy.ALWAYS:
            self.durable = dict(self.live)

    @rule()
    def sync(self) -> None:
        self.engine.sync()
        self.durable = dict(self.committed)

    @rule(lose_unsynced=st.booleans())
    def crash(self, lose_unsynced: bool) -> None:
        self.engine.crash(lose_unsynced=lose_unsynced)
        if not lose_unsynced:
            self.durable = dict(self.committed)
        self.live = dict(self.durable)
        self.committed = dict(self.durable)

    @invariant()
    def contents_match(self) -> None:
        assert _contents(self.engine) == self.live
        assert self.engine.table("ks").count() == len(self.live)
        durable = self.engine.durable_snapshot().get("ks", {})
        assert {k: r for k, (r, _) in durable.items()} == self.durable


class AlwaysAgainstModel(SimDiskAgainstModel):
    policy = FsyncPolicy.ALWAYS


_SETTINGS = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestBatchAgainstModel = SimDiskAgainstModel.TestCase
TestBatchAgainstModel.settings = _SETTINGS
TestAlwaysAgainstModel = AlwaysAgainstModel.TestCase
TestAlwaysAgainstModel.settings = _SETTINGS
