"""The LMDB engine: durable tables in one memory-mapped B+tree file.

Theory of operation. One LMDB environment holds every table of the node. A
table is two named sub-databases: ``t:<name>`` maps a *storage key* to a value,
and ``x:<name>`` is its expiry index. LMDB lists its named databases as keys of
the main database, so the tables of a previous run are found again at open
(``t:`` names only; the index names are internal).

The storage key is the key's 8-byte big-endian ring token followed by the key,
so LMDB's byte order (memcmp) is ring order and ``scan`` is a cursor walk. LMDB
keys are at most 511 bytes, and an expiry-index key is the 8-byte expiry time
plus the storage key, so a storage key is kept to ``STORAGE_KEY_MAX`` (500)
bytes: a longer key is stored under its token, its first ``LONG_KEY_PREFIX``
bytes and a 32-byte blake2b digest of the whole key, and the full key travels
inside the value, where ``get`` and ``delete`` check it.

A value is one flag byte, then the expiry time (8 bytes, if flagged), then the
full key (4-byte length + key, if flagged as long), then the record. Keeping
the expiry in the value lets an overwrite or a delete remove the key's old
index entry, so the index holds exactly one entry per indexed live key.

Writes are group-committed (see ``base.py``): ``put`` and ``delete`` go to a
per-table pending buffer that every read of this engine consults first, and
``flush`` applies all tables' buffers in one write transaction. Reads use one
cached read transaction, renewed after each commit. The buffer is bounded by
``pending_bytes_max``: past it a write flushes early, which is always safe
(an earlier commit only makes unacknowledged writes durable sooner).
"""

from __future__ import annotations

import fcntl
import heapq
import os
from bisect import bisect_left
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from hashlib import blake2b
from typing import NamedTuple

import lmdb

from ringkv.core import ring
from ringkv.storage.base import FsyncPolicy, PendingCommit, StorageError

__all__ = [
    "LONG_KEY_PREFIX",
    "STORAGE_KEY_MAX",
    "LmdbEngine",
    "LmdbTable",
    "LmdbCommit",
    "storage_key",
]

TOKEN_BYTES = 8
STORAGE_KEY_MAX = 500  # + 8 bytes of expiry time = 508 <= LMDB's 511-byte key limit
SHORT_KEY_MAX = STORAGE_KEY_MAX - TOKEN_BYTES
LONG_KEY_PREFIX = 400
LONG_KEY_DIGEST_BYTES = 32
LONG_STORAGE_KEY_LEN = TOKEN_BYTES + LONG_KEY_PREFIX + LONG_KEY_DIGEST_BYTES
FULL_KEY_MAX = 2**32 - 1  # the full key's length is stored in 4 bytes

_FLAG_EXPIRES = 1
_FLAG_LONG_KEY = 2
_TABLE_PREFIX = b"t:"
_EXPIRY_PREFIX = b"x:"
_TOKEN_SPACE = 2**ring.TOKEN_BITS
_ZERO_TOKEN = bytes(TOKEN_BYTES)

_Buffer = bytes | memoryview


def storage_key(key: bytes) -> bytes:
    """Ring token + key, or ring token + key prefix + digest for a long key."""
    token = ring.key_token(key).to_bytes(TOKEN_BYTES, "big")
    if len(key) <= SHORT_KEY_MAX:
        return token + key
    digest = blake2b(key, digest_size=LONG_KEY_DIGEST_BYTES).digest()
    return token + key[:LONG_KEY_PREFIX] + digest


def _encode_value(key: bytes, record: bytes, expires_at_ms: int) -> bytes:
    is_long = len(key) > SHORT_KEY_MAX
    if not is_long and not expires_at_ms:
        return b"\x00" + record
    flags = (_FLAG_EXPIRES if expires_at_ms else 0) | (_FLAG_LONG_KEY if is_long else 0)
    parts = [bytes((flags,))]
    if expires_at_ms:
        parts.append(expires_at_ms.to_bytes(8, "big"))
    if is_long:
        parts.append(len(key).to_bytes(4, "big"))
        parts.append(key)
    parts.append(record)
    return b"".join(parts)


def _split_value(value: _Buffer) -> tuple[int, _Buffer | None, int]:
    """(expires_at_ms or 0, the full key if stored, offset of the record)."""
    flags = value[0]
    if not flags:
        return 0, None, 1
    expires_at_ms = 0
    offset = 1
    if flags & _FLAG_EXPIRES:
        expires_at_ms = int.from_bytes(value[1:9], "big")
        offset = 9
    full_key: _Buffer | None = None
    if flags & _FLAG_LONG_KEY:
        length = int.from_bytes(value[offset : offset + 4], "big")
        full_key = value[offset + 4 : offset + 4 + length]
        offset += 4 + length
    return expires_at_ms, full_key, offset


def _user_key(skey: bytes, value: _Buffer) -> bytes:
    _, full_key, _ = _split_value(value)
    return skey[TOKEN_BYTES:] if full_key is None else bytes(full_key)


def _index_key(expires_at_ms: int, skey: bytes) -> bytes:
    return expires_at_ms.to_bytes(8, "big") + skey


class LmdbTable:
    """One table: a sub-database, its expiry index, and the pending writes."""

    def __init__(
        self,
        name: str,
        engine: LmdbEngine,
        db: lmdb._Database,
        expiry_db: lmdb._Database,
        count: int,
    ) -> None:
        self.name = name
        self._engine = engine
        self._db = db
        self._expiry_db = expiry_db
        self._count = count
        # storage key -> encoded value, or None for a delete
        self._pending: dict[bytes, bytes | None] = {}
        # expiry-index key -> True (add) or False (remove)
        self._expiry_pending: dict[bytes, bool] = {}
        self._pending_sorted: list[bytes] | None = None  # sorted keys of _pending
        self._cleared = False  # clear() not yet committed: ignore what LMDB holds
        self._clears = 0  # clear() calls, to tell whether one came after a snapshot

    # --- reads -----------------------------------------------------------

    def _lookup(self, skey: bytes) -> _Buffer | None:
        pending = self._pending
        if skey in pending:
            return pending[skey]
        if self._cleared:
            return None
        return self._engine.read_txn().get(skey, db=self._db)

    def get(self, key: bytes) -> bytes | None:
        value = self._lookup(storage_key(key))
        if value is None:
            return None
        if not value[0]:
            return bytes(value[1:]) if len(key) <= SHORT_KEY_MAX else None
        _, full_key, offset = _split_value(value)
        if full_key is not None and full_key != key:
            return None
        return bytes(value[offset:])

    def count(self) -> int:
        return self._count

    def count_expiring(self) -> int:
        txn = self._engine.read_txn()
        committed = 0 if self._cleared else int(txn.stat(self._expiry_db)["entries"])
        for ekey, add in self._expiry_pending.items():
            there = not self._cleared and txn.get(ekey, db=self._expiry_db) is not None
            committed += (1 if add and not there else 0) - (1 if not add and there else 0)
        return committed

    def scan(
        self, start_token: int, count: int, end_token: int = _TOKEN_SPACE - 1
    ) -> tuple[list[bytes], int]:
        assert count > 0, count
        assert 0 <= start_token < _TOKEN_SPACE, start_token
        keys: list[bytes] = []
        last_token = b""
        end = end_token.to_bytes(TOKEN_BYTES, "big")
        for skey, key in self._live_from(start_token.to_bytes(TOKEN_BYTES, "big")):
            token = skey[:TOKEN_BYTES]
            if token > end:
                return keys, 0
            if len(keys) >= count and token != last_token:
                return keys, int.from_bytes(token, "big")
            keys.append(key)
            last_token = token
        return keys, 0

    def random_key(self, pick: int) -> bytes | None:
        if self._count == 0:
            return None
        start = (pick % _TOKEN_SPACE).to_bytes(TOKEN_BYTES, "big")
        for _, key in self._live_from(start):
            return key
        for _, key in self._live_from(_ZERO_TOKEN):
            return key
        return None

    def _live_from(self, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(storage key, user key) of every live key from ``start`` on, in order."""
        stored = self._stored_from(start)
        if not self._pending:
            return stored
        # Storage keys are unique across the two streams (stored ones that are
        # also pending are skipped), so the merge never compares user keys.
        return heapq.merge(stored, self._pending_from(start))

    def _stored_from(self, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        if self._cleared:
            return
        pending = self._pending
        cursor = self._engine.read_txn().cursor(db=self._db)
        if not cursor.set_range(start):
            return
        for raw in cursor.iternext(values=False):
            skey = bytes(raw)
            if skey in pending:
                continue
            if len(skey) == LONG_STORAGE_KEY_LEN:
                yield skey, _user_key(skey, cursor.value())
            else:
                yield skey, skey[TOKEN_BYTES:]

    def _pending_from(self, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        ordered = self._pending_sorted
        if ordered is None:
            ordered = self._pending_sorted = sorted(self._pending)
        pending = self._pending
        for index in range(bisect_left(ordered, start), len(ordered)):
            skey = ordered[index]
            value = pending[skey]
            if value is not None:
                yield skey, _user_key(skey, value)

    # --- writes ----------------------------------------------------------

    def _set_pending(self, skey: bytes, value: bytes | None) -> None:
        pending = self._pending
        if skey not in pending:
            self._pending_sorted = None
        pending[skey] = value
        self._engine.note_pending(self, len(skey) + (len(value) if value is not None else 0))

    def put(self, key: bytes, record: bytes, expires_at_ms: int) -> None:
        assert 0 <= expires_at_ms < 2**64, expires_at_ms
        if len(key) > FULL_KEY_MAX:
            raise StorageError(f"key of {len(key)} bytes is too long for the LMDB engine")
        skey = storage_key(key)
        old = self._lookup(skey)
        if old is None:
            self._count += 1
        elif old[0] & _FLAG_EXPIRES:
            old_expires_at_ms, _, _ = _split_value(old)
            if old_expires_at_ms != expires_at_ms:
                self._expiry_pending[_index_key(old_expires_at_ms, skey)] = False
        if expires_at_ms:
            self._expiry_pending[_index_key(expires_at_ms, skey)] = True
        self._set_pending(skey, _encode_value(key, record, expires_at_ms))

    def delete(self, key: bytes) -> bool:
        skey = storage_key(key)
        old = self._lookup(skey)
        if old is None:
            return False
        expires_at_ms, full_key, _ = _split_value(old)
        if (full_key is None) != (len(key) <= SHORT_KEY_MAX) or (
            full_key is not None and full_key != key
        ):
            return False  # another key under the same storage key: not ours
        if expires_at_ms:
            self._expiry_pending[_index_key(expires_at_ms, skey)] = False
        self._count -= 1
        self._set_pending(skey, None)
        return True

    def clear(self) -> None:
        self._pending.clear()
        self._expiry_pending.clear()
        self._pending_sorted = None
        self._cleared = True
        self._clears += 1
        self._count = 0
        self._engine.note_pending(self, 0)

    # --- expiry ----------------------------------------------------------

    def expiry_candidates(self, now_ms: int, limit: int) -> list[bytes]:
        if limit <= 0:
            return []
        pending_due = sorted(
            index_key
            for index_key, present in self._expiry_pending.items()
            if present and int.from_bytes(index_key[:8], "big") <= now_ms
        )
        chosen: list[bytes] = []
        for index_key in heapq.merge(self._stored_due(now_ms), pending_due):
            chosen.append(index_key)
            if len(chosen) >= limit:
                break
        keys: list[bytes] = []
        for index_key in chosen:
            self._expiry_pending[index_key] = False
            skey = index_key[8:]
            value = self._lookup(skey)
            # The index is kept exact, so this check only guards against a bug.
            expires_at_ms = int.from_bytes(index_key[:8], "big")
            if value is not None and _split_value(value)[0] == expires_at_ms:
                keys.append(_user_key(skey, value))
        if chosen:
            self._engine.note_pending(self, 0)
        return keys

    def _stored_due(self, now_ms: int) -> Iterator[bytes]:
        if self._cleared:
            return
        expiry_pending = self._expiry_pending
        cursor = self._engine.read_txn().cursor(db=self._expiry_db)
        if not cursor.first():
            return
        for raw in cursor.iternext(values=False):
            if int.from_bytes(raw[:8], "big") > now_ms:
                return
            index_key = bytes(raw)
            if index_key not in expiry_pending:
                yield index_key

    # --- group commit (called by the engine) ------------------------------

    def snapshot(self) -> _TableSnapshot:
        """What a group commit writes for this table: the pending changes as
        they are now. They stay pending (and visible) until ``settle``."""
        return _TableSnapshot(
            self, self._clears if self._cleared else -1, list(self._pending.items()),
            list(self._expiry_pending.items()),
        )  # fmt: skip

    def settle(self, snapshot: _TableSnapshot) -> None:
        """``snapshot`` is committed: forget the pending changes it wrote,
        except the ones changed again since (they wait for the next commit).
        The caller renews the read transaction at the same time."""
        pending = self._pending
        removed = False
        for skey, value in snapshot.changes:
            if skey in pending and pending[skey] is value:
                del pending[skey]
                removed = True
        if removed:
            self._pending_sorted = None
        expiry_pending = self._expiry_pending
        for index_key, present in snapshot.index_changes:
            if index_key in expiry_pending and expiry_pending[index_key] is present:
                del expiry_pending[index_key]
        if snapshot.clears == self._clears:
            self._cleared = False  # no clear() since: LMDB holds the table again


class _TableSnapshot(NamedTuple):
    table: LmdbTable
    clears: int  # the table's clear() count when taken, -1 if not cleared
    changes: list[tuple[bytes, bytes | None]]  # storage key -> value, None: delete
    index_changes: list[tuple[bytes, bool]]  # expiry-index key -> add or remove

    def apply(self, txn: lmdb.Transaction[bytes]) -> None:
        """Write the changes into ``txn`` (any thread: reads nothing shared)."""
        db, expiry_db = self.table._db, self.table._expiry_db
        if self.clears >= 0:
            txn.drop(db, delete=False)
            txn.drop(expiry_db, delete=False)
        puts = [(skey, value) for skey, value in self.changes if value is not None]
        if puts:
            txn.cursor(db=db).putmulti(puts)
        for skey, value in self.changes:
            if value is None:
                txn.delete(skey, db=db)
        index_puts = [(key, b"") for key, present in self.index_changes if present]
        if index_puts:
            txn.cursor(db=expiry_db).putmulti(index_puts)
        for key, present in self.index_changes:
            if not present:
                txn.delete(key, db=expiry_db)


class LmdbCommit:
    """A group commit running on the engine's commit thread
    (``LmdbEngine.start_commit``). ``future`` completes when LMDB has
    committed (and, under ``always``, fsynced) it; then ``finish_commit``."""

    __slots__ = ("error", "future", "settled", "snapshots")

    def __init__(self, snapshots: list[_TableSnapshot]) -> None:
        self.snapshots = snapshots
        self.future: Future[None] = Future()
        self.settled = False
        self.error: StorageError | None = None


class LmdbEngine:
    """Tables in one LMDB environment at ``path`` (a directory, created)."""

    name = "lmdb"

    def __init__(
        self,
        path: str | os.PathLike[str],
        fsync: FsyncPolicy = FsyncPolicy.ALWAYS,
        map_size: int = 16 * 2**30,
        max_tables: int = 512,
        pending_bytes_max: int = 64 * 2**20,
        commit_thread: bool = False,
    ) -> None:
        assert map_size > 0 and max_tables > 0 and pending_bytes_max > 0
        self.path = os.fspath(path)
        self.fsync = fsync
        self.map_size = map_size
        self.max_tables = max_tables
        self.pending_bytes_max = pending_bytes_max
        self.commit_thread = commit_thread
        self._tables: dict[str, LmdbTable] = {}
        self._dirty_tables: dict[str, LmdbTable] = {}
        self._pending_bytes = 0
        self._unsynced = False  # committed without fsync
        self._read_txn: lmdb.Transaction[memoryview] | None = None
        self._inflight: LmdbCommit | None = None  # start_commit's, not yet settled
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        always = fsync is FsyncPolicy.ALWAYS
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the data directory {self.path}: {exc}") from exc
        self._lock_fd = _lock_data_dir(self.path)
        try:
            # ALWAYS: LMDB syncs inside commit (data pages, then the meta page
            # with O_DSYNC). Committing with MDB_NOSYNC and calling env.sync()
            # after would save one flush per commit (about 15% here), but then
            # the kernel may write the new meta page before the pages it points
            # to, and a power loss in that window corrupts the file (LMDB's
            # MDB_NOSYNC caveat). BATCH and NEVER accept that window by design.
            self._env = lmdb.open(
                self.path,
                map_size=map_size,
                max_dbs=2 * max_tables,
                sync=always,
                metasync=always,
                readahead=False,  # random access by hash: readahead only evicts
            )
        except (lmdb.Error, OSError) as exc:
            os.close(self._lock_fd)
            raise StorageError(f"cannot open LMDB environment at {self.path}: {exc}") from exc
        self._open_existing_tables()

    # --- tables ----------------------------------------------------------

    def _open_existing_tables(self) -> None:
        try:
            with self._env.begin(write=True) as txn:
                for db_name in self._env.dbs(txn):
                    if db_name.startswith(_TABLE_PREFIX):
                        name = db_name[len(_TABLE_PREFIX) :].decode()
                        self._tables[name] = self._open_table(name, txn)
        except lmdb.Error as exc:
            self._env.close()
            os.close(self._lock_fd)
            raise StorageError(f"cannot open the tables of {self.path}: {exc}") from exc

    def _open_table(self, name: str, txn: lmdb.Transaction[bytes]) -> LmdbTable:
        encoded = name.encode()
        db = self._env.open_db(_TABLE_PREFIX + encoded, txn=txn)
        expiry_db = self._env.open_db(_EXPIRY_PREFIX + encoded, txn=txn)
        return LmdbTable(name, self, db, expiry_db, txn.stat(db)["entries"])

    def table(self, name: str, *, evictable: bool = True) -> LmdbTable:  # never evicts
        table = self._tables.get(name)
        if table is not None:
            return table
        self._check_open()
        if not name:
            raise StorageError("a table needs a name")
        if len(self._tables) >= self.max_tables:
            raise StorageError(f"too many tables: max_tables is {self.max_tables}")
        self._await_inflight()  # one write transaction at a time
        self._drop_read_txn()  # a read txn begun before the new db cannot use it
        try:
            with self._env.begin(write=True) as txn:
                table = self._open_table(name, txn)
        except lmdb.Error as exc:
            raise _storage_error(f"cannot create table {name!r}", exc, self.map_size) from exc
        if self.fsync is not FsyncPolicy.ALWAYS:
            self._unsynced = True
        self._tables[name] = table
        return table

    def table_names(self) -> list[str]:
        return list(self._tables)

    # --- group commit ----------------------------------------------------

    def read_txn(self) -> lmdb.Transaction[memoryview]:
        """The cached read transaction (renewed after every commit)."""
        txn = self._read_txn
        if txn is None:
            self._check_open()
            txn = self._read_txn = self._env.begin(buffers=True)
        return txn

    def _drop_read_txn(self) -> None:
        if self._read_txn is not None:
            self._read_txn.abort()
            self._read_txn = None

    def note_pending(self, table: LmdbTable, size_bytes: int) -> None:
        """``table`` has pending changes taking about ``size_bytes`` more."""
        self._dirty_tables[table.name] = table
        self._pending_bytes += size_bytes
        if self._pending_bytes > self.pending_bytes_max:
            try:
                self.flush()
            except StorageError:
                # The write that got here is pending and visible: it did
                # happen. The runtime's own flush reports the error.
                pass

    @property
    def dirty(self) -> bool:
        return bool(self._dirty_tables) or (self._unsynced and self.fsync is FsyncPolicy.ALWAYS)

    def flush(self) -> None:
        """Commit every pending change now, on this thread (after the commit
        in flight, if any, which it settles)."""
        self._await_inflight()
        if not self._dirty_tables:
            if self._unsynced and self.fsync is FsyncPolicy.ALWAYS:
                self.sync()
            return
        commit = self._begin_commit()
        self._drop_read_txn()  # so that the write txn may reuse the pages the last one freed
        self._run_commit(commit)
        self._settle(commit)
        if commit.error is not None:
            raise commit.error

    def start_commit(self) -> LmdbCommit | None:
        """Begin a group commit on the commit thread and return at once, or
        return None when this engine commits in place (``flush``): unless it
        was opened with ``commit_thread``, and under any policy but
        ``always`` (a commit without fsync is cheaper than the hand-off). One
        commit runs at a time.

        Measured on a 2-core machine (3 nodes, strong keyspace, 32 clients):
        about the same throughput as in place and 15-20% more CPU per write
        (thread hand-offs, GIL), so it is off by default; it pays off where
        fsync is slow next to the CPU, when a loop standing still for each
        fsync is what limits the node.

        The event loop keeps working while LMDB writes and fsyncs: reads see
        the pending changes as before, new writes wait for the next commit.
        Call ``finish_commit`` on the loop's thread once ``future`` is done,
        and release what waited for this commit only if it did not raise."""
        if not (self.commit_thread and self.fsync is FsyncPolicy.ALWAYS and self._dirty_tables):
            return None
        self._await_inflight()
        commit = self._begin_commit()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="lmdb-commit")
        self._inflight = commit
        self._executor.submit(self._run_commit, commit)
        return commit

    def finish_commit(self, commit: PendingCommit) -> None:
        """Settle a commit begun by ``start_commit``; raise StorageError if it
        failed (its changes are pending again, for the next commit)."""
        assert isinstance(commit, LmdbCommit), "a commit of this engine"
        if not commit.future.done():
            raise RuntimeError("finish_commit before the commit is done")
        self._settle(commit)
        if commit.error is not None:
            raise commit.error

    def _begin_commit(self) -> LmdbCommit:
        self._check_open()
        commit = LmdbCommit([table.snapshot() for table in self._dirty_tables.values()])
        self._dirty_tables.clear()
        self._pending_bytes = 0
        return commit

    def _run_commit(self, commit: LmdbCommit) -> None:
        """Write and commit the snapshots (the commit thread, or ``flush``'s)."""
        try:
            with self._env.begin(write=True) as txn:
                for snapshot in commit.snapshots:
                    snapshot.apply(txn)
        except lmdb.Error as exc:
            commit.error = _storage_error("commit failed", exc, self.map_size)
        except Exception as exc:  # never report a commit that did not happen as done
            commit.error = StorageError(f"commit failed: {exc!r}")
        finally:
            commit.future.set_result(None)

    def _settle(self, commit: LmdbCommit) -> None:
        if commit.settled:
            return
        commit.settled = True
        if self._inflight is commit:
            self._inflight = None
        if commit.error is not None:
            # Aborted: the changes are still pending (and visible); the next
            # commit writes them again.
            for snapshot in commit.snapshots:
                self._dirty_tables[snapshot.table.name] = snapshot.table
            return
        self._drop_read_txn()  # the next read sees what was just committed
        for snapshot in commit.snapshots:
            snapshot.table.settle(snapshot)
        if self.fsync is not FsyncPolicy.ALWAYS:
            self._unsynced = True

    def _await_inflight(self) -> None:
        commit = self._inflight
        if commit is not None:
            commit.future.result()
            self._settle(commit)

    def sync(self) -> None:
        if not self._unsynced:
            return
        self._check_open()
        try:
            self._env.sync(True)
        except lmdb.Error as exc:
            raise StorageError(f"fsync of {self.path} failed: {exc}") from exc
        self._unsynced = False

    def memory_bytes(self) -> int:
        self._check_open()
        pages = self._env.info()["last_pgno"] + 1
        return pages * self._env.stat()["psize"] + self._pending_bytes

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
            self.sync()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
            self._drop_read_txn()
            self._env.close()
            os.close(self._lock_fd)  # releases the data directory lock
            self._closed = True
            self._tables.clear()
            self._dirty_tables.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"the LMDB engine at {self.path} is closed")


def _lock_data_dir(path: str) -> int:
    """Take an exclusive lock on ``path/LOCK`` for this process's lifetime.

    Two processes writing one environment (an embedded store and a server,
    or two servers) would each keep their own pending buffers and counters;
    the second one is refused with a clear error instead. The kernel drops
    the lock when the process dies, so a SIGKILL never leaves it stale.
    """
    fd = os.open(os.path.join(path, "LOCK"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise StorageError(
            f"the data directory {path} is in use by another ringkv process; "
            "stop it, or give this one its own --data-dir"
        ) from exc
    return fd


def _storage_error(what: str, exc: lmdb.Error, map_size: int) -> StorageError:
    if isinstance(exc, lmdb.MapFullError):
        return StorageError(
            f"LMDB {what}: the map is full (map_size={map_size} bytes); "
            "delete data or restart with a larger map size"
        )
    return StorageError(f"LMDB {what}: {exc}")
