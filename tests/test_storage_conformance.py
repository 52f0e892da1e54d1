"""Storage conformance: every engine keeps the contract of ``storage/base.py``.

The shared tests run against the memory engine and the LMDB engine alike; a
Hypothesis state machine compares each engine with a plain dict. Engine-only
behaviour (durability, map full, maxmemory eviction) follows at the end.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from hashlib import blake2b
from itertools import islice
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ringkv.core import ring
from ringkv.core.ring import key_token
from ringkv.storage import memory
from ringkv.storage.base import Engine, FsyncPolicy, StorageError, Table
from ringkv.storage.lmdb_engine import LONG_KEY_PREFIX, SHORT_KEY_MAX, LmdbEngine
from ringkv.storage.memory import BUCKET_BITS, MemoryEngine, OutOfMemory

ENGINE_KINDS = ["memory", "lmdb"]


def make_engine(kind: str, path: Path, fsync: FsyncPolicy = FsyncPolicy.ALWAYS) -> Engine:
    if kind == "memory":
        return MemoryEngine()
    return LmdbEngine(path, fsync=fsync)


@pytest.fixture(params=ENGINE_KINDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(request.param, tmp_path / "db")
    yield eng
    eng.close()


def scan_all(table: Table, count: int, between: Callable[[], None] | None = None) -> list[bytes]:
    """Every key the scan cursor yields from token 0 to the end, in call order."""
    keys: list[bytes] = []
    token = 0
    for _ in range(1_000_000):
        batch, token = table.scan(token, count)
        keys.extend(batch)
        if token == 0:
            return keys
        if between is not None:
            between()
    raise AssertionError("scan did not finish")


def assert_token_order(keys: list[bytes]) -> None:
    tokens = [key_token(k) for k in keys]
    assert tokens == sorted(tokens)


# --- basic operations ------------------------------------------------------


def test_put_get_delete_count(engine: Engine) -> None:
    table = engine.table("ks")
    assert table.get(b"a") is None
    assert table.count() == 0
    table.put(b"a", b"record-a", 0)
    table.put(b"b", b"record-b", 0)
    table.put(b"", b"empty key", 0)
    assert table.get(b"a") == b"record-a"
    assert table.get(b"") == b"empty key"
    assert table.count() == 3
    engine.flush()
    assert table.delete(b"a") is True
    assert table.delete(b"a") is False
    assert table.delete(b"never") is False
    assert table.get(b"a") is None
    assert table.count() == 2
    engine.flush()
    assert table.get(b"a") is None
    assert table.get(b"b") == b"record-b"
    assert table.count() == 2


def test_overwrite_keeps_count(engine: Engine) -> None:
    table = engine.table("ks")
    table.put(b"k", b"one", 0)
    table.put(b"k", b"two", 0)
    assert table.count() == 1
    engine.flush()
    table.put(b"k", b"three" * 100, 5)
    assert table.count() == 1
    assert table.get(b"k") == b"three" * 100
    engine.flush()
    table.put(b"k", b"", 0)
    assert table.get(b"k") == b""
    assert table.count() == 1


def test_pending_writes_visible_before_flush(engine: Engine) -> None:
    table = engine.table("ks")
    for i in range(10):
        table.put(b"old-%d" % i, b"v", 0)
    engine.flush()
    assert not engine.dirty
    table.put(b"new", b"pending", 0)
    table.put(b"old-0", b"overwritten", 0)
    assert table.delete(b"old-1")
    if isinstance(engine, LmdbEngine):
        assert engine.dirty
    expected = {b"old-%d" % i for i in range(10)} - {b"old-1"} | {b"new"}
    for _ in range(2):  # before and after the flush
        assert table.get(b"new") == b"pending"
        assert table.get(b"old-0") == b"overwritten"
        assert table.get(b"old-1") is None
        assert table.count() == len(expected)
        keys = scan_all(table, 3)
        assert sorted(keys) == sorted(expected)
        assert_token_order(keys)
        assert all(table.random_key(pick) in expected for pick in range(0, 2**64, 2**59))
        engine.flush()
        assert not engine.dirty


def test_memory_bytes_grows_with_data(engine: Engine) -> None:
    before = engine.memory_bytes()
    table = engine.table("ks")
    for i in range(500):
        table.put(b"key-%d" % i, bytes(1000), 0)
    engine.flush()
    assert engine.memory_bytes() >= before + 500 * 1000


# --- scan ------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["flushed", "pending", "mixed"])
def test_scan_walks_every_key_once_in_token_order(engine: Engine, layout: str) -> None:
    table = engine.table("ks")
    keys = [b"key-%d" % i for i in range(2000)]
    for i, key in enumerate(keys):
        table.put(key, b"v", 0)
        if layout == "mixed" and i == 1000:
            engine.flush()
    if layout == "flushed":
        engine.flush()
    for count in (1, 7, 5000):
        walked = scan_all(table, count)
        assert len(walked) == len(keys)
        assert set(walked) == set(keys)
        assert_token_order(walked)


@pytest.mark.parametrize("layout", ["flushed", "mixed"])
def test_scan_stops_at_the_end_token(engine: Engine, layout: str) -> None:
    table = engine.table("ks")
    keys = [b"key-%d" % i for i in range(1500)]
    for i, key in enumerate(keys):
        table.put(key, b"v", 0)
        if layout == "mixed" and i == 700:
            engine.flush()
    if layout == "flushed":
        engine.flush()
    rng = random.Random(3)
    for _ in range(20):
        start, end = sorted(rng.randrange(2**64) for _ in range(2))
        expected = {k for k in keys if start <= ring.key_token(k) <= end}
        for count in (1, 9, 5000):
            walked: list[bytes] = []
            cursor = start
            while True:
                found, cursor = table.scan(cursor, count, end)
                walked.extend(found)
                if cursor == 0:
                    break
                assert start < cursor <= end
            assert len(walked) == len(expected) and set(walked) == expected
            assert_token_order(walked)


def test_scan_while_keys_change_between_calls(engine: Engine) -> None:
    rng = random.Random(7)
    table = engine.table("ks")
    keys = [b"key-%d" % i for i in range(2000)]
    for key in keys:
        table.put(key, b"v", 0)
    engine.flush()
    doomed = set(rng.sample(keys, 600))
    to_delete = sorted(doomed)
    rng.shuffle(to_delete)
    added: list[bytes] = []

    def change() -> None:
        for _ in range(3):
            if to_delete:
                assert table.delete(to_delete.pop())
        added.append(b"added-%d" % len(added))
        table.put(added[-1], b"v", 0)
        if len(added) % 50 == 0:
            engine.flush()

    walked = scan_all(table, 7, between=change)
    assert len(walked) == len(set(walked)), "a key was returned twice"
    assert_token_order(walked)
    survivors = set(keys) - doomed
    assert survivors <= set(walked)
    assert set(walked) <= set(keys) | set(added)


def test_scan_never_splits_keys_that_share_a_token(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def few_tokens(key: bytes) -> int:  # 16 tokens for all keys
        return blake2b(key, digest_size=1).digest()[0] % 16 << 60

    monkeypatch.setattr(ring, "key_token", few_tokens)
    monkeypatch.setattr(memory, "key_token", few_tokens)
    table = engine.table("ks")
    keys = [b"key-%d" % i for i in range(300)]
    for i, key in enumerate(keys):
        table.put(key, b"v", 0)
        if i == 150:
            engine.flush()
    groups: list[list[bytes]] = []
    token = 0
    while True:
        batch, token = table.scan(token, 1)
        groups.append(batch)
        if token == 0:
            break
    assert sorted(k for group in groups for k in group) == sorted(keys)
    if not groups[-1]:
        groups.pop()  # the cursor may end on an empty batch, like Redis SCAN
    assert len(groups) == len({few_tokens(k) for k in keys})
    for group in groups:
        assert len({few_tokens(k) for k in group}) == 1


# --- expiry, random_key, clear ----------------------------------------------


def test_expiry_candidates(engine: Engine) -> None:
    table = engine.table("ks")
    table.put(b"at-100", b"v", 100)
    table.put(b"at-200", b"v", 200)
    table.put(b"at-300", b"v", 300)
    table.put(b"never", b"v", 0)
    engine.flush()
    table.put(b"pending-at-150", b"v", 150)
    assert table.expiry_candidates(50, 10) == []
    assert table.expiry_candidates(100, 10) == [b"at-100"]
    assert table.expiry_candidates(100, 10) == [], "candidates leave the index"
    assert table.expiry_candidates(1000, 2) == [b"pending-at-150", b"at-200"]
    engine.flush()
    # An overwrite moves the key's expiry; a delete removes it; an overwrite
    # with no expiry removes it too; each key comes out once.
    table.put(b"at-300", b"v", 400)
    table.put(b"at-300", b"v", 400)
    table.put(b"gone", b"v", 250)
    assert table.delete(b"gone")
    table.put(b"unset", b"v", 260)
    table.put(b"unset", b"v", 0)
    assert table.expiry_candidates(350, 10) == []
    assert table.expiry_candidates(400, 10) == [b"at-300"]
    assert table.get(b"at-300") == b"v", "the caller deletes, not the engine"
    engine.flush()
    assert table.expiry_candidates(10**15, 10) == []


def test_expiry_index_follows_overwrites_and_deletes(engine: Engine) -> None:
    table = engine.table("ks")
    for i in range(100):
        table.put(b"key-%d" % i, b"v", 100 + i)
    engine.flush()
    for i in range(0, 100, 2):
        assert table.delete(b"key-%d" % i)
    for i in range(1, 100, 4):
        table.put(b"key-%d" % i, b"v", 10_000 + i)  # expires later now
    for i in range(3, 30, 4):
        table.put(b"key-%d" % i, b"v", 0)  # expires never now
    due = {b"key-%d" % i for i in range(31, 100, 4)}
    # Stale entries must not use up the limit: the first call is full.
    first = table.expiry_candidates(1000, 10)
    assert len(first) == 10
    rest = table.expiry_candidates(1000, 100)
    assert sorted(first + rest) == sorted(due)
    engine.flush()
    assert table.expiry_candidates(1000, 100) == []
    later = table.expiry_candidates(20_000, 100)
    assert sorted(later) == sorted(b"key-%d" % i for i in range(1, 100, 4))


def test_expiry_candidates_in_expiry_order(engine: Engine) -> None:
    table = engine.table("ks")
    rng = random.Random(3)
    expiries = {b"key-%d" % i: rng.randrange(1, 10_000) for i in range(300)}
    for i, (key, at) in enumerate(expiries.items()):
        table.put(key, b"v", at)
        if i == 150:
            engine.flush()
    popped: list[bytes] = []
    while batch := table.expiry_candidates(5_000, 7):
        popped.extend(batch)
    assert sorted(popped) == sorted(k for k, at in expiries.items() if at <= 5_000)
    times = [expiries[k] for k in popped]
    assert times == sorted(times)


def test_random_key(engine: Engine) -> None:
    table = engine.table("ks")
    assert table.random_key(12345) is None
    keys = {b"key-%d" % i for i in range(100)}
    for key in keys:
        table.put(key, b"v", 0)
    engine.flush()
    rng = random.Random(1)
    picked = [table.random_key(rng.getrandbits(64)) for _ in range(300)]
    assert set(picked) <= keys
    assert len(set(picked)) > 20
    assert table.random_key(2**64 - 1) in keys  # wraps around the ring
    for key in keys:
        table.delete(key)
    assert table.random_key(99) is None


def test_clear(engine: Engine) -> None:
    table = engine.table("ks")
    other = engine.table("other")
    for i in range(50):
        table.put(b"key-%d" % i, b"v", 100)
    other.put(b"key-0", b"kept", 100)
    engine.flush()
    table.put(b"pending", b"v", 100)
    table.clear()
    assert table.count() == 0
    assert table.get(b"key-0") is None
    assert table.get(b"pending") is None
    assert scan_all(table, 10) == []
    assert table.random_key(5) is None
    assert table.expiry_candidates(1000, 100) == []
    table.put(b"after", b"v", 0)
    assert scan_all(table, 10) == [b"after"]
    engine.flush()
    assert table.count() == 1
    assert scan_all(table, 10) == [b"after"]
    assert table.get(b"key-1") is None
    assert other.get(b"key-0") == b"kept"
    assert other.expiry_candidates(1000, 10) == [b"key-0"]


# --- long keys --------------------------------------------------------------

PREFIX = b"p" * LONG_KEY_PREFIX
LONG_KEYS = [
    b"q" * SHORT_KEY_MAX,  # the longest key stored as is
    b"q" * (SHORT_KEY_MAX + 1),  # the shortest stored under a digest
    PREFIX + b"a" * 200,  # 600 bytes
    PREFIX + b"b" * 200,  # 600 bytes, same first 400 bytes
    PREFIX + b"a" * 199 + b"b",
    PREFIX + b"c" * (8192 - LONG_KEY_PREFIX),  # 8 KiB
    PREFIX + b"d" * (8192 - LONG_KEY_PREFIX),
]


def test_long_keys_round_trip_and_stay_distinct(engine: Engine) -> None:
    table = engine.table("ks")
    for i, key in enumerate(LONG_KEYS):
        table.put(key, b"record-%d" % i, 1000 + i)
        if i == 3:
            engine.flush()
    for _ in range(2):  # pending, then flushed
        assert table.count() == len(LONG_KEYS)
        for i, key in enumerate(LONG_KEYS):
            assert table.get(key) == b"record-%d" % i
        assert table.get(PREFIX + b"a" * 201) is None
        assert table.get(PREFIX) is None
        assert sorted(scan_all(table, 2)) == sorted(LONG_KEYS)
        assert table.random_key(0) in LONG_KEYS
        engine.flush()
    assert table.delete(PREFIX + b"a" * 201) is False
    assert table.delete(LONG_KEYS[2]) is True
    assert table.get(LONG_KEYS[2]) is None
    assert table.get(LONG_KEYS[3]) == b"record-3"
    assert table.get(LONG_KEYS[4]) == b"record-4"
    assert table.count() == len(LONG_KEYS) - 1
    due = table.expiry_candidates(10_000, 100)
    assert sorted(due) == sorted(LONG_KEYS[:2] + LONG_KEYS[3:])
    engine.flush()
    assert sorted(scan_all(table, 3)) == sorted(LONG_KEYS[:2] + LONG_KEYS[3:])


def test_huge_key(engine: Engine) -> None:
    huge = PREFIX + bytes(64 * 2**20)
    table = engine.table("ks")
    table.put(huge, b"record", 0)
    engine.flush()
    assert table.get(huge) == b"record"
    assert table.get(huge[:-1]) is None
    assert scan_all(table, 10) == [huge]
    assert table.delete(huge)
    assert table.count() == 0


def test_tables_are_isolated(engine: Engine) -> None:
    left, right = engine.table("left"), engine.table("right")
    assert engine.table("left") is left
    left.put(b"k", b"left", 10)
    right.put(b"k", b"right", 20)
    right.put(b"only-right", b"v", 0)
    engine.flush()
    assert left.get(b"k") == b"left"
    assert right.get(b"k") == b"right"
    assert left.count() == 1 and right.count() == 2
    assert left.delete(b"k")
    assert right.get(b"k") == b"right"
    assert scan_all(left, 10) == []
    assert sorted(scan_all(right, 10)) == [b"k", b"only-right"]
    left.put(b"only-left", b"v", 30)
    assert left.expiry_candidates(100, 10) == [b"only-left"]  # k left with its delete
    assert right.expiry_candidates(100, 10) == [b"k"]
    assert right.get(b"only-left") is None
    assert set(engine.table_names()) >= {"left", "right"}


# --- against a model --------------------------------------------------------

MODEL_KEYS = [b"", b"a", b"b", b"key-1", b"key-2", b"key-3", *LONG_KEYS[:5]]
# Rules draw an index, so that a failing run prints short steps, not 600-byte keys.
key_indexes = st.integers(0, len(MODEL_KEYS) - 1)


class EngineAgainstModel(RuleBasedStateMachine):
    """Random operations on one table, checked against a dict after each step."""

    kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="ringkv-model-")
        self.engine = make_engine(self.kind, Path(self.directory), FsyncPolicy.NEVER)
        self.table = self.engine.table("ks")
        self.model: dict[bytes, bytes] = {}
        self.indexed: dict[bytes, int] = {}  # key -> expiry, while in the expiry index

    @initialize()
    def start(self) -> None:
        assert self.table.count() == 0

    @rule(
        index=key_indexes,
        record=st.binary(max_size=12),
        expires_at_ms=st.sampled_from([0, 0, 10, 20, 30]),
    )
    def put(self, index: int, record: bytes, expires_at_ms: int) -> None:
        key = MODEL_KEYS[index]
        self.table.put(key, record, expires_at_ms)
        self.model[key] = record
        if expires_at_ms:
            self.indexed[key] = expires_at_ms
        else:
            self.indexed.pop(key, None)

    @rule(index=key_indexes)
    def delete(self, index: int) -> None:
        key = MODEL_KEYS[index]
        assert self.table.delete(key) == (key in self.model)
        self.model.pop(key, None)
        self.indexed.pop(key, None)

    @rule(index=key_indexes)
    def get(self, index: int) -> None:
        key = MODEL_KEYS[index]
        assert self.table.get(key) == self.model.get(key)

    @rule()
    def flush(self) -> None:
        self.engine.flush()
        assert not self.engine.dirty

    @rule(count=st.integers(1, 4))
    def scan(self, count: int) -> None:
        keys = scan_all(self.table, count)
        assert sorted(keys) == sorted(self.model)
        assert_token_order(keys)

    @rule(now_ms=st.integers(0, 40), limit=st.integers(1, 4))
    def expire(self, now_ms: int, limit: int) -> None:
        got = self.table.expiry_candidates(now_ms, limit)
        due = {k for k, at in self.indexed.items() if at <= now_ms}
        assert len(got) == len(set(got)) == min(limit, len(due))
        assert set(got) <= due
        if got and due - set(got):
            assert max(self.indexed[k] for k in got) <= min(self.indexed[k] for k in due - set(got))
        for key in got:
            del self.indexed[key]

    @rule(pick=st.integers(0, 2**70))
    def random_key(self, pick: int) -> None:
        key = self.table.random_key(pick)
        assert key in self.model if self.model else key is None

    @rule()
    def clear(self) -> None:
        self.table.clear()
        self.model.clear()
        self.indexed.clear()

    @precondition(lambda self: self.kind == "lmdb")
    @rule()
    def reopen(self) -> None:
        self.engine.close()
        self.engine = make_engine(self.kind, Path(self.directory), FsyncPolicy.NEVER)
        assert self.engine.table_names() == ["ks"]
        self.table = self.engine.table("ks")

    @invariant()
    def count_matches(self) -> None:
        assert self.table.count() == len(self.model)

    def teardown(self) -> None:
        self.engine.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class MemoryAgainstModel(EngineAgainstModel):
    kind = "memory"


class LmdbAgainstModel(EngineAgainstModel):
    kind = "lmdb"


_MODEL_SETTINGS = settings(max_examples=100, stateful_step_count=50, deadline=None)
TestMemoryAgainstModel = MemoryAgainstModel.TestCase
TestMemoryAgainstModel.settings = _MODEL_SETTINGS
TestLmdbAgainstModel = LmdbAgainstModel.TestCase
TestLmdbAgainstModel.settings = _MODEL_SETTINGS


# --- LMDB only ----------------------------------------------------------------


def test_lmdb_data_survives_close_and_reopen(tmp_path: Path) -> None:
    engine = LmdbEngine(tmp_path)
    table = engine.table("ks")
    for i in range(100):
        table.put(b"key-%d" % i, b"record-%d" % i, 500 + i)
    for i, key in enumerate(LONG_KEYS):
        table.put(key, b"long-%d" % i, 0)
    engine.table("meta").put(b"node", b"n1", 0)
    engine.flush()
    table.delete(b"key-0")
    engine.close()  # flushes the delete

    engine = LmdbEngine(tmp_path)
    assert sorted(engine.table_names()) == ["ks", "meta"]
    table = engine.table("ks")
    assert table.count() == 99 + len(LONG_KEYS)
    assert table.get(b"key-0") is None
    assert table.get(b"key-1") == b"record-1"
    assert all(table.get(k) == b"long-%d" % i for i, k in enumerate(LONG_KEYS))
    assert engine.table("meta").get(b"node") == b"n1"
    assert table.expiry_candidates(502, 10) == [b"key-1", b"key-2"]
    engine.close()


CRASH_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from ringkv.storage.base import FsyncPolicy
    from ringkv.storage.lmdb_engine import LmdbEngine

    engine = LmdbEngine(sys.argv[1], fsync=FsyncPolicy(sys.argv[2]))
    table = engine.table("ks")
    table.put(b"flushed", b"1", 0)
    table.put(b"flushed-then-deleted", b"1", 0)
    engine.flush()
    table.put(b"unflushed", b"2", 0)
    table.delete(b"flushed-then-deleted")
    engine.table("unflushed-table")
    os._exit(0)  # no close: the process dies with writes pending
    """
)


@pytest.mark.parametrize("fsync", list(FsyncPolicy))
def test_lmdb_flushed_writes_survive_a_process_crash(tmp_path: Path, fsync: FsyncPolicy) -> None:
    subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(tmp_path), fsync.value], check=True, timeout=60
    )
    engine = LmdbEngine(tmp_path)
    table = engine.table("ks")
    assert table.get(b"flushed") == b"1"
    assert table.get(b"flushed-then-deleted") == b"1"
    assert table.get(b"unflushed") is None
    assert table.count() == 2
    assert "unflushed-table" in engine.table_names()  # creating a table commits at once
    engine.close()


def test_lmdb_dirty_and_fsync_policies(tmp_path: Path) -> None:
    for policy in FsyncPolicy:
        engine = LmdbEngine(tmp_path / policy.value, fsync=policy)
        table = engine.table("ks")
        assert not engine.dirty
        table.put(b"k", b"v", 0)
        assert engine.dirty
        engine.flush()
        assert not engine.dirty
        engine.sync()
        assert table.delete(b"k")
        assert engine.dirty
        engine.close()
        with pytest.raises(StorageError, match="closed"):
            engine.table("other")


def test_lmdb_pending_buffer_is_bounded(tmp_path: Path) -> None:
    engine = LmdbEngine(tmp_path, fsync=FsyncPolicy.NEVER, pending_bytes_max=10_000)
    table = engine.table("ks")
    dirty_after: list[bool] = []
    for i in range(100):
        table.put(b"key-%d" % i, bytes(1000), 0)
        dirty_after.append(engine.dirty)
    assert not all(dirty_after), "a write past pending_bytes_max flushes"
    assert table.count() == 100
    assert sorted(scan_all(table, 9)) == sorted(b"key-%d" % i for i in range(100))
    engine.close()


def test_lmdb_map_full_is_a_storage_error(tmp_path: Path) -> None:
    engine = LmdbEngine(tmp_path, map_size=256 * 1024)
    table = engine.table("ks")
    for i in range(100):
        table.put(b"key-%d" % i, bytes(8192), 0)
    with pytest.raises(StorageError, match="map is full"):
        engine.flush()
    assert engine.dirty
    assert table.get(b"key-1") == bytes(8192), "the failed group stays pending"
    with pytest.raises(StorageError, match="map is full"):
        engine.close()
    engine = LmdbEngine(tmp_path, map_size=16 * 2**20)  # the failed close closed the env
    table = engine.table("ks")
    assert table.count() == 0
    table.put(b"key-1", bytes(8192), 0)
    engine.close()


def test_lmdb_too_many_tables(tmp_path: Path) -> None:
    engine = LmdbEngine(tmp_path, max_tables=2)
    engine.table("a")
    engine.table("b")
    with pytest.raises(StorageError, match="max_tables"):
        engine.table("c")
    engine.close()


# --- memory only --------------------------------------------------------------


def test_memory_maxmemory_keeps_used_bytes_under_the_limit() -> None:
    engine = MemoryEngine(maxmemory=50_000)
    meta = engine.table("meta")
    meta.put(b"node", b"n1", 0)
    table = engine.table("ks")
    for i in range(2000):
        table.put(b"key-%d" % i, bytes(100), 0)
        assert engine.memory_bytes() <= engine.maxmemory
    assert engine.evicted_keys > 0
    assert table.count() == 2000 - engine.evicted_keys
    assert len(scan_all(table, 50)) == table.count()
    assert meta.get(b"node") == b"n1", "meta is never evicted"


def test_memory_evicts_least_recently_used_first_within_a_bucket() -> None:
    def bucket(key: bytes) -> int:
        return key_token(key) >> (ring.TOKEN_BITS - BUCKET_BITS)

    keys = (b"key-%d" % i for i in range(10**6))
    a = next(keys)
    b, c, d = islice((k for k in keys if bucket(k) == bucket(a)), 3)
    record = bytes(1000)
    engine = MemoryEngine(maxmemory=3 * 1200)  # room for three entries, not four
    table = engine.table("ks")
    for key in (a, b, c):
        table.put(key, record, 0)
    assert table.get(a) == record  # a is now more recent than b
    table.put(d, record, 0)
    assert table.get(b) is None, "b was the least recently used"
    assert table.get(a) == record
    assert table.get(c) == record
    assert table.get(d) == record
    assert engine.evicted_keys == 1


def test_memory_record_larger_than_maxmemory_is_refused() -> None:
    engine = MemoryEngine(maxmemory=10_000)
    table = engine.table("ks")
    table.put(b"small", b"v", 0)
    with pytest.raises(OutOfMemory):
        table.put(b"big", bytes(20_000), 0)
    assert isinstance(OutOfMemory("x"), StorageError)
    assert table.get(b"big") is None
    assert table.get(b"small") == b"v"
    assert table.count() == 1


def test_memory_expiry_heap_stays_bounded_under_overwrites() -> None:
    # Regression: re-putting a live key with a new expiry pushed a heap entry
    # each time and compaction kept them all (the key was alive), so the heap
    # grew without bound and was rebuilt on every write.
    table = MemoryEngine().table("ks")
    for i in range(20_000):
        table.put(b"k", b"v", 1_000_000 + i)
    assert len(table._expiry_heap) <= 4 * 1024 + 1
    assert table.expiry_candidates(10**12, 10) == [b"k"]


def test_lmdb_data_dir_is_locked_against_a_second_process(tmp_path: Path) -> None:
    engine = LmdbEngine(tmp_path / "db")
    try:
        code = (
            "import sys; from ringkv.storage.lmdb_engine import LmdbEngine\n"
            "from ringkv.storage.base import StorageError\n"
            "try:\n    LmdbEngine(sys.argv[1])\nexcept StorageError as e:\n"
            "    print(e); sys.exit(7)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "db")],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 7, result.stderr
        assert "in use by another ringkv process" in result.stdout
    finally:
        engine.close()
    # Once closed, another engine may open it.
    LmdbEngine(tmp_path / "db").close()


def test_count_expiring_follows_puts_overwrites_and_deletes(engine: Engine) -> None:
    table = engine.table("ks:x")
    table.put(b"a", b"r", 1000)
    table.put(b"b", b"r", 2000)
    table.put(b"c", b"r", 0)
    assert table.count_expiring() == 2
    engine.flush()
    assert table.count_expiring() == 2
    table.put(b"a", b"r", 0)  # persist
    table.delete(b"b")
    table.put(b"c", b"r", 5000)
    assert table.count_expiring() == 1
    engine.flush()
    assert table.count_expiring() == 1
    table.clear()
    assert table.count_expiring() == 0
