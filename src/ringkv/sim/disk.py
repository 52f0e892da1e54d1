"""A simulated disk: the storage ``Engine`` protocol with a crash that loses data.

Theory of operation. A real engine passes a write through three states:
*written* (visible to readers of this process at once), *committed* (the
group commit ran: a process crash no longer loses it, but it may still sit in
the operating system's page cache) and *durable* (fsynced: a power loss no
longer loses it). ``flush`` commits; under ``--fsync always`` it also fsyncs;
``sync`` fsyncs what is committed (the ``batch`` timer, or the operating
system's own write-back under ``never``).

``SimEngine`` keeps the live data in a ``MemoryEngine`` (so every read, scan
and expiry behaves exactly as the memory engine does) and records which keys
each write touched. At a commit it copies the touched keys' current records
into a *committed* overlay; at a sync it folds the overlay into the *durable*
snapshot (table -> key -> (record, expiry)). ``crash`` throws the live engine
away and rebuilds one from what survives: the durable snapshot after a power
loss (``lose_unsynced=True``), or the durable snapshot plus the committed
overlay after a process crash (``lose_unsynced=False``). Writes never
committed are lost either way, as with LMDB (see the storage conformance
tests). Creating a table is durable at once, as in LMDB.

Tables handed out before a crash belong to the dead process: using one again
is a bug in the simulator or in a test, and asserts.
"""

from __future__ import annotations

from ringkv.storage.base import FsyncPolicy, PendingCommit
from ringkv.storage.memory import MemoryEngine, MemoryTable

__all__ = ["SimEngine", "SimTable"]

# What a key holds at a durable or committed point: (record, expiry) or None (absent).
Entry = tuple[bytes, int] | None
Snapshot = dict[str, dict[bytes, tuple[bytes, int]]]


class SimTable:
    """One table of a ``SimEngine``: the memory table plus write tracking."""

    __slots__ = ("_engine", "_generation", "_inner", "name")

    def __init__(self, engine: SimEngine, inner: MemoryTable, generation: int) -> None:
        self.name = inner.name
        self._engine = engine
        self._inner = inner
        self._generation = generation

    def _live(self) -> MemoryTable:
        assert self._generation == self._engine.generation, (
            f"table {self.name!r} used after the engine crashed"
        )
        return self._inner

    def get(self, key: bytes) -> bytes | None:
        return self._live().get(key)

    def put(self, key: bytes, record: bytes, expires_at_ms: int) -> None:
        self._live().put(key, record, expires_at_ms)
        self._engine.touch(self.name, key, (record, expires_at_ms))

    def delete(self, key: bytes) -> bool:
        found = self._live().delete(key)
        if found:
            self._engine.touch(self.name, key, None)
        return found

    def scan(
        self, start_token: int, count: int, end_token: int = 2**64 - 1
    ) -> tuple[list[bytes], int]:
        return self._live().scan(start_token, count, end_token)

    def count(self) -> int:
        return self._live().count()

    def count_expiring(self) -> int:
        return self._live().count_expiring()

    def expiry_candidates(self, now_ms: int, limit: int) -> list[bytes]:
        return self._live().expiry_candidates(now_ms, limit)

    def random_key(self, pick: int) -> bytes | None:
        return self._live().random_key(pick)

    def clear(self) -> None:
        inner = self._live()
        keys, cursor = inner.scan(0, inner.count() + 1)
        assert cursor == 0
        inner.clear()
        for key in keys:
            self._engine.touch(self.name, key, None)


class SimEngine:
    """The ``Engine`` protocol over memory, with commit, sync and crash modelled."""

    name = "sim"

    def __init__(self, fsync: FsyncPolicy = FsyncPolicy.ALWAYS) -> None:
        self.fsync = fsync
        self.generation = 0  # bumped by every crash
        self.crashes = 0
        self.commits = 0
        self.syncs = 0
        self._memory = MemoryEngine()
        self._tables: dict[str, SimTable] = {}
        self._durable: Snapshot = {}
        # Written since the last commit: table -> key -> entry (the latest write).
        self._pending: dict[str, dict[bytes, Entry]] = {}
        # Committed since the last sync: table -> key -> entry at commit time.
        self._committed: dict[str, dict[bytes, Entry]] = {}
        self._closed = False

    # -- the Engine protocol ---------------------------------------------

    def table(self, name: str, *, evictable: bool = True) -> SimTable:
        assert not self._closed, "engine used after close"
        table = self._tables.get(name)
        if table is None:
            inner = self._memory.table(name, evictable=evictable)
            table = self._tables[name] = SimTable(self, inner, self.generation)
            self._durable.setdefault(name, {})  # creating a table commits at once
        return table

    def table_names(self) -> list[str]:
        return list(self._tables)

    @property
    def dirty(self) -> bool:
        return bool(self._pending)

    def start_commit(self) -> None:
        return None  # commits in place: flush

    def finish_commit(self, commit: PendingCommit) -> None:
        raise RuntimeError("this engine never starts a commit")

    def flush(self) -> None:
        """Commit the writes so far; with ``--fsync always`` they are durable too."""
        if self._pending:
            self.commits += 1
            for name, changes in self._pending.items():
                self._committed.setdefault(name, {}).update(changes)
            self._pending = {}
        if self.fsync is FsyncPolicy.ALWAYS:
            self.sync()

    def sync(self) -> None:
        """Make every committed write durable."""
        if not self._committed:
            return
        self.syncs += 1
        for name, changes in self._committed.items():
            durable = self._durable.setdefault(name, {})
            for key, entry in changes.items():
                if entry is None:
                    durable.pop(key, None)
                else:
                    durable[key] = entry
        self._committed = {}

    def memory_bytes(self) -> int:
        return self._memory.memory_bytes()

    def close(self) -> None:
        """A clean shutdown: commit and sync everything, then refuse further use."""
        self.flush()
        self.sync()
        self._closed = True

    # -- the simulated disk --------------------------------------------------

    def touch(self, table: str, key: bytes, entry: Entry) -> None:
        """Note a write (called by the tables)."""
        self._pending.setdefault(table, {})[key] = entry

    def crash(self, lose_unsynced: bool = True) -> None:
        """The process died: keep only what survives, in a fresh engine.

        ``lose_unsynced`` True is a power loss (only fsynced writes survive);
        False is a process crash (committed writes survive in the page cache).
        Writes that were never committed are lost either way."""
        self.crashes += 1
        self.generation += 1
        self._pending = {}
        if not lose_unsynced:
            self.sync()
        self._committed = {}
        self._closed = False
        self._memory = MemoryEngine()
        self._tables = {}
        for name in sorted(self._durable):
            table = self.table(name)._inner
            for key, (record, expires_at_ms) in self._durable[name].items():
                table.put(key, record, expires_at_ms)

    def durable_snapshot(self) -> Snapshot:
        """A copy of what a power loss now would leave (for tests and ``state``)."""
        return {name: dict(rows) for name, rows in self._durable.items()}

    def unsynced_keys(self) -> int:
        """Keys written but not yet durable (pending or committed)."""
        keys = {(n, k) for n, rows in self._pending.items() for k in rows}
        keys |= {(n, k) for n, rows in self._committed.items() for k in rows}
        return len(keys)
