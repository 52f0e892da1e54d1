"""Pipelined group commit: the LMDB engine commits on its own thread while the
event loop goes on (storage/lmdb_engine.py ``start_commit``), and the host
releases each turn's replies and after-commit messages only once a commit
that covers everything the turn could have seen is durable (runtime/host.py).
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import threading
from pathlib import Path

import lmdb
import pytest

from ringkv.core import ops
from ringkv.core.config import DEFAULT_KEYSPACE, NodeConfig
from ringkv.core.node import Mutate, Node, Read, ReadResult
from ringkv.runtime.host import NodeHost, now_ms
from ringkv.storage import lmdb_engine
from ringkv.storage.base import FsyncPolicy, StorageError
from ringkv.storage.lmdb_engine import LmdbEngine


def reopened(path: Path) -> LmdbEngine:
    return LmdbEngine(path, map_size=2**26)


def committed(engine: LmdbEngine, commit: object) -> None:
    """Wait for a started commit and settle it, as the host does."""
    assert isinstance(commit, lmdb_engine.LmdbCommit)
    commit.future.result(timeout=10)
    engine.finish_commit(commit)


# -- the engine ------------------------------------------------------------------


@pytest.mark.parametrize("policy", [FsyncPolicy.BATCH, FsyncPolicy.NEVER])
def test_only_always_commits_on_the_thread(tmp_path: Path, policy: FsyncPolicy) -> None:
    engine = LmdbEngine(tmp_path / "db", fsync=policy, map_size=2**26, commit_thread=True)
    engine.table("t").put(b"k", b"v", 0)
    assert engine.start_commit() is None  # a commit without fsync is cheaper in place
    assert engine.dirty
    engine.close()


def test_commits_in_place_unless_asked(tmp_path: Path) -> None:
    engine = LmdbEngine(tmp_path / "db", map_size=2**26)  # --commit-thread is off by default
    engine.table("t").put(b"k", b"v", 0)
    assert engine.start_commit() is None and engine.dirty
    engine.close()


def test_nothing_to_commit_starts_nothing(tmp_path: Path) -> None:
    engine = LmdbEngine(tmp_path / "db", map_size=2**26, commit_thread=True)
    engine.table("t")
    assert engine.start_commit() is None
    engine.close()


def test_writes_made_during_a_commit_win_and_wait_for_the_next(tmp_path: Path) -> None:
    engine = LmdbEngine(tmp_path / "db", map_size=2**26, commit_thread=True)
    table = engine.table("t")
    table.put(b"overwritten", b"old", 0)
    table.put(b"deleted", b"old", 0)
    table.put(b"kept", b"v", 0)
    commit = engine.start_commit()
    assert commit is not None and not engine.dirty
    commit.future.result(timeout=10)  # durable on disk, not yet settled
    table.put(b"overwritten", b"new", 0)
    assert table.delete(b"deleted")
    table.put(b"added", b"v", 0)
    engine.finish_commit(commit)
    # Settling forgot only the pending changes the commit wrote.
    assert table.get(b"overwritten") == b"new"
    assert table.get(b"deleted") is None
    assert table.get(b"kept") == b"v" and table.get(b"added") == b"v"
    assert table.count() == 3 and engine.dirty
    engine.close()  # commits the rest
    again = reopened(tmp_path / "db")
    t = again.table("t")
    assert (t.get(b"overwritten"), t.get(b"deleted"), t.get(b"kept"), t.get(b"added")) == (
        b"new",
        None,
        b"v",
        b"v",
    )
    assert t.count() == 3
    again.close()


def test_only_what_was_committed_is_durable_before_the_next_commit(tmp_path: Path) -> None:
    engine = LmdbEngine(tmp_path / "db", map_size=2**26, commit_thread=True)
    table = engine.table("t")
    table.put(b"first", b"1", 0)
    commit = engine.start_commit()
    table.put(b"second", b"2", 0)
    committed(engine, commit)
    # Another process opening the file sees the first commit, not the second write.
    script = (
        "import lmdb, sys\n"
        "env = lmdb.open(sys.argv[1], max_dbs=8, readonly=True, lock=False)\n"
        "txn = env.begin()\n"
        "db = env.open_db(b't:t', txn=txn, create=False)\n"
        "print(','.join(bytes(k)[8:].decode() for k, _ in txn.cursor(db=db)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "db")],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    stored = out.stdout.strip().split(",")
    assert stored == ["first"]
    engine.close()


def test_a_clear_during_a_commit_is_not_undone_by_it(tmp_path: Path) -> None:
    engine = LmdbEngine(tmp_path / "db", map_size=2**26, commit_thread=True)
    table = engine.table("t")
    table.put(b"a", b"1", 0)
    table.put(b"b", b"1", 0)
    commit = engine.start_commit()
    table.clear()
    table.put(b"c", b"1", 0)
    committed(engine, commit)
    assert table.get(b"a") is None and table.get(b"c") == b"1"
    assert table.scan(0, 10)[0] == [b"c"]
    engine.close()
    again = reopened(tmp_path / "db")
    assert again.table("t").scan(0, 10)[0] == [b"c"]
    again.close()


def test_expiry_index_changed_during_a_commit(tmp_path: Path) -> None:
    engine = LmdbEngine(tmp_path / "db", map_size=2**26, commit_thread=True)
    table = engine.table("t")
    table.put(b"k", b"v", 1_000)
    commit = engine.start_commit()
    table.put(b"k", b"v2", 5_000)  # a new expiry: the old index entry goes
    committed(engine, commit)
    assert table.count_expiring() == 1
    assert table.expiry_candidates(2_000, 10) == []
    engine.flush()
    assert table.count_expiring() == 1
    assert table.expiry_candidates(6_000, 10) == [b"k"]
    engine.close()


def test_a_failed_commit_keeps_its_writes_pending_for_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = LmdbEngine(tmp_path / "db", map_size=2**26, commit_thread=True)
    table = engine.table("t")
    table.put(b"k", b"v", 0)
    real_apply = lmdb_engine._TableSnapshot.apply

    def failing(self: lmdb_engine._TableSnapshot, txn: lmdb.Transaction[bytes]) -> None:
        raise lmdb.DiskError("injected")

    monkeypatch.setattr(lmdb_engine._TableSnapshot, "apply", failing)
    commit = engine.start_commit()
    assert commit is not None
    commit.future.result(timeout=10)
    with pytest.raises(StorageError, match="commit failed"):
        engine.finish_commit(commit)
    assert table.get(b"k") == b"v" and engine.dirty
    monkeypatch.setattr(lmdb_engine._TableSnapshot, "apply", real_apply)
    engine.close()
    again = reopened(tmp_path / "db")
    assert again.table("t").get(b"k") == b"v"
    again.close()


def test_flush_and_new_tables_wait_for_the_commit_in_flight(tmp_path: Path) -> None:
    engine = LmdbEngine(tmp_path / "db", map_size=2**26, commit_thread=True)
    gate = threading.Event()
    real_run = engine._run_commit

    def slow_run(commit: lmdb_engine.LmdbCommit) -> None:
        assert gate.wait(10)
        real_run(commit)

    engine._run_commit = slow_run  # type: ignore[method-assign]
    engine.table("t").put(b"k", b"v", 0)
    commit = engine.start_commit()
    assert commit is not None and not commit.future.done()
    threading.Timer(0.05, gate.set).start()
    other = engine.table("u")  # one write transaction at a time: waits for it
    assert commit.future.done()
    other.put(b"x", b"y", 0)
    engine.flush()  # settles the one in flight, then commits in place
    engine.finish_commit(commit)  # the host's late settle is a no-op
    engine.close()
    again = reopened(tmp_path / "db")
    assert again.table("t").get(b"k") == b"v" and again.table("u").get(b"x") == b"y"
    again.close()


# -- the host ----------------------------------------------------------------------


class Collect:
    def __init__(self, into: list[tuple[str, object]], name: str) -> None:
        self.into, self.name = into, name

    def deliver(self, result: object) -> None:
        self.into.append((self.name, result))


async def test_replies_wait_for_the_commit_that_covers_their_turn(tmp_path: Path) -> None:
    engine = LmdbEngine(tmp_path / "db", map_size=2**26, commit_thread=True)
    gate = threading.Event()
    real_run = engine._run_commit
    started: list[int] = []

    def gated_run(commit: lmdb_engine.LmdbCommit) -> None:
        started.append(len(commit.snapshots))
        assert gate.wait(10)
        real_run(commit)

    node = Node(NodeConfig(node_id="n1"), engine, random.Random(1), now_ms())
    engine._run_commit = gated_run  # type: ignore[method-assign]
    host = NodeHost(node, engine)
    host.start()
    out: list[tuple[str, object]] = []
    set_a = Mutate(DEFAULT_KEYSPACE, b"a", ops.Put(b"1"))
    host.submit(set_a, Collect(out, "set a"))
    await asyncio.sleep(0.05)
    assert len(started) == 1 and out == []  # committing, on the thread: nothing released
    host.submit(Read(DEFAULT_KEYSPACE, b"a"), Collect(out, "get a"))  # reads the write in flight
    await asyncio.sleep(0.05)
    host.submit(Mutate(DEFAULT_KEYSPACE, b"b", ops.Put(b"2")), Collect(out, "set b"))
    await asyncio.sleep(0.05)
    assert out == [] and len(started) == 1  # one commit at a time; the loop kept serving
    gate.set()
    for _ in range(200):
        if len(out) == 3:
            break
        await asyncio.sleep(0.01)
    assert [name for name, _ in out] == ["set a", "get a", "set b"]
    read = out[1][1]
    assert isinstance(read, ReadResult) and [v.value for v in read.versions] == [b"1"]
    assert host.pipelined_commits == 2 and host.commits == 2
    host.close()
    engine.close()
    again = reopened(tmp_path / "db")
    assert again.table("ks:" + DEFAULT_KEYSPACE).get(b"b") is not None
    again.close()


async def test_a_failed_pipelined_commit_answers_outcome_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = LmdbEngine(tmp_path / "db", map_size=2**26, commit_thread=True)
    node = Node(NodeConfig(node_id="n1"), engine, random.Random(1), now_ms())
    host = NodeHost(node, engine)
    host.start()
    real_apply = lmdb_engine._TableSnapshot.apply
    failures = [1]

    def fail_once(self: lmdb_engine._TableSnapshot, txn: lmdb.Transaction[bytes]) -> None:
        if failures:
            failures.pop()
            raise lmdb.DiskError("injected")
        real_apply(self, txn)

    monkeypatch.setattr(lmdb_engine._TableSnapshot, "apply", fail_once)
    out: list[tuple[str, object]] = []
    host.submit(Mutate(DEFAULT_KEYSPACE, b"a", ops.Put(b"1")), Collect(out, "set a"))
    for _ in range(200):
        if out:
            break
        await asyncio.sleep(0.01)
    [(_, result)] = out
    assert getattr(result, "code", None) == "TIMEOUT" and not getattr(result, "definite", True)
    assert host.commit_failures == 1
    host.submit(Mutate(DEFAULT_KEYSPACE, b"b", ops.Put(b"2")), Collect(out, "set b"))
    for _ in range(200):
        if len(out) == 2:
            break
        await asyncio.sleep(0.01)
    assert out[1] == ("set b", True)
    host.close()
    engine.close()
    again = reopened(tmp_path / "db")
    table = again.table("ks:" + DEFAULT_KEYSPACE)
    assert table.get(b"a") is not None and table.get(b"b") is not None  # retried, then kept
    again.close()
