"""The storage interface: small, synchronous, and the same for every engine.

An *engine* holds named *tables* (one per keyspace, plus ``meta`` for node
state). A table maps a key (bytes) to one packed record (bytes, see
``core/record.py``); the engine never looks inside a record, except that
``put`` is told the record's expiry so that expired keys can be found without
scanning everything.

Writes are *group-committed*: ``put`` and ``delete`` take effect at once for
readers of the same engine, and ``flush`` makes every write so far durable as
the engine's fsync policy says. The runtime commits at the end of each event
loop turn and releases the replies of that turn only after the commit, so
that no write is acknowledged before it is durable (``--fsync always``).
An engine may *pipeline* its commits (``start_commit``): the commit runs on
another thread while the event loop goes on, and the turns that ran during
it wait for the commit after it.

Keys are kept in ring order (``core/ring.key_token``): ``scan`` takes a start
token and returns the keys from there on, with the token to resume at (0 once
the whole ring has been walked).
"""

from __future__ import annotations

from concurrent.futures import Future
from enum import Enum
from typing import Protocol

__all__ = ["Engine", "FsyncPolicy", "PendingCommit", "StorageError", "Table"]


class FsyncPolicy(Enum):
    ALWAYS = "always"  # fsync each group commit before acknowledging anything in it
    BATCH = "batch"  # fsync every fsync_interval_ms
    NEVER = "never"  # leave it to the operating system


class StorageError(RuntimeError):
    """The engine could not do what it was asked (disk full, map full, ...)."""


class Table(Protocol):
    name: str

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, record: bytes, expires_at_ms: int) -> None:
        """Store ``record``; ``expires_at_ms`` (0 = never) feeds the expiry index."""

    def delete(self, key: bytes) -> bool:
        """Remove the key; True if it was there."""

    def scan(
        self, start_token: int, count: int, end_token: int = 2**64 - 1
    ) -> tuple[list[bytes], int]:
        """About ``count`` keys with tokens in ``[start_token, end_token]``, in
        ring order, and the token to resume at (0 when done). Keys that share a
        token are never split across two calls."""

    def count(self) -> int: ...

    def count_expiring(self) -> int:
        """Keys that carry an expiry (for INFO's ``expires=``)."""

    def expiry_candidates(self, now_ms: int, limit: int) -> list[bytes]:
        """Up to ``limit`` keys whose recorded expiry is <= now_ms, removed
        from the expiry index; the caller checks each record before deleting."""

    def random_key(self, pick: int) -> bytes | None:
        """Some key, chosen by ``pick`` (a random integer from the caller)."""

    def clear(self) -> None: ...


class PendingCommit(Protocol):
    """A commit ``Engine.start_commit`` began; ``future`` is done when it is
    durable as the fsync policy says (or failed: ``finish_commit`` raises)."""

    @property
    def future(self) -> Future[None]: ...


class Engine(Protocol):
    name: str
    fsync: FsyncPolicy

    def table(self, name: str, *, evictable: bool = True) -> Table:
        """The table called ``name``, created if absent. ``evictable=False``:
        a cache engine must never evict from it (hints, acceptor state: losing
        a row would lose data or break consensus); the first call decides."""

    def table_names(self) -> list[str]: ...

    @property
    def dirty(self) -> bool:
        """True when writes since the last flush are not yet durable."""

    def flush(self) -> None:
        """Commit the writes so far; fsync them when the policy is ``always``."""

    def sync(self) -> None:
        """fsync whatever is committed (the ``batch`` policy's timer calls this)."""

    def start_commit(self) -> PendingCommit | None:
        """Begin committing the writes so far on another thread and return at
        once; None: this engine commits in place, call ``flush``. Reads see
        every write as before; one commit runs at a time."""

    def finish_commit(self, commit: PendingCommit) -> None:
        """On the caller's thread once ``commit.future`` is done: settle it,
        or raise StorageError (the writes stay pending for the next commit)."""

    def memory_bytes(self) -> int:
        """Approximate bytes of data held (keys, records and overhead)."""

    def close(self) -> None: ...
