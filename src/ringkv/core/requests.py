"""Client requests to a Node, and the results it answers with.

Read and Mutate are named tuples, not frozen dataclasses: one is built for
every request on the hot path, and a tuple costs a quarter as much to build.

Strong keyspaces (core/strong.py, whose docstring is the frontend's guide)
answer ``Read`` with a ``RegisterValue`` and ``Mutate`` with a ``Versioned``,
and add ``Cas``, ``Lock`` and ``Unlock``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, TypeAlias

from ringkv.core import ops
from ringkv.core.config import LOCKS_KEYSPACE, KeyspaceSpec, Level
from ringkv.core.paxos import AcceptorState, LockGranted, LockReleased
from ringkv.core.record import Version, record_vv

__all__ = [
    "Cas",
    "Count",
    "CreateKeyspace",
    "ListKeyspaces",
    "Flush",
    "Inspect",
    "Lock",
    "LockGranted",
    "LockReleased",
    "Mutate",
    "PutMany",
    "RandomKey",
    "Read",
    "ReadResult",
    "RegisterReport",
    "RegisterValue",
    "ReplicaReport",
    "Request",
    "Scan",
    "ScanResult",
    "Unlock",
    "Versioned",
]


class Read(NamedTuple):
    """Read one key. Read and Mutate are named tuples, not frozen dataclasses:
    one is built for every request, and a tuple costs a quarter as much.

    ``level`` None means the keyspace's level; ``acks`` > 0 is an explicit R."""

    keyspace: str
    key: bytes
    level: Level | None = None
    acks: int = 0


class Mutate(NamedTuple):
    """``level`` None means the keyspace's level; ``acks`` > 0 is an explicit W.
    ``context`` is the causal context the client read (None: it read nothing)."""

    keyspace: str
    key: bytes
    mutation: ops.Mutation
    level: Level | None = None
    acks: int = 0
    context: dict[str, int] | None = None


@dataclass(frozen=True, slots=True)
class PutMany:
    """MSET (per key, not atomic) or MSETNX (``only_if_all_absent``: all or
    nothing, atomic only where one replica holds every key). Every key and
    value is checked against the limits before anything is written."""

    keyspace: str
    items: tuple[tuple[bytes, bytes], ...]
    only_if_all_absent: bool = False


@dataclass(frozen=True, slots=True)
class Scan:
    """SCAN step (about ``count`` live keys from ``cursor``), or KEYS (unbounded)."""

    keyspace: str
    cursor: int
    count: int
    unbounded: bool = False


@dataclass(frozen=True, slots=True)
class Count:
    keyspace: str


@dataclass(frozen=True, slots=True)
class RandomKey:
    keyspace: str


@dataclass(frozen=True, slots=True)
class Flush:
    """FLUSHDB / FLUSHALL: drop every key of one keyspace, or of all (None)."""

    keyspace: str | None


@dataclass(frozen=True, slots=True)
class CreateKeyspace:
    """Define a keyspace; its mode and N are fixed for good. Creating it again
    with the same definition is a no-op; with another, an error."""

    spec: KeyspaceSpec


@dataclass(frozen=True, slots=True)
class ListKeyspaces:
    pass


@dataclass(frozen=True, slots=True)
class Inspect:
    """An operator's look at every home replica's copy of a key (no repair)."""

    keyspace: str
    key: bytes


@dataclass(frozen=True, slots=True)
class ReplicaReport:
    """What each home replica stores for a key (None: it did not answer in
    time), and the hints this node holds for it, by home replica."""

    key: bytes
    homes: list[str]
    replicas: dict[str, list[Version] | None]
    hints: dict[str, list[Version]]


@dataclass(frozen=True, slots=True)
class Cas:
    """Compare-and-set one key of a ``strong`` keyspace (RINGKV.CAS, HTTP
    If-Match): write ``new`` (None: delete) if the key's value is ``expected``
    (None: absent), or, when ``version`` is given, if its version is
    ``version`` (0: never written; ``expected`` must then be None). Answers
    ``Versioned(True, new_version)``, or a definite MISMATCH."""

    keyspace: str
    key: bytes
    expected: bytes | None
    new: bytes | None
    version: int | None = None


@dataclass(frozen=True, slots=True)
class Lock:
    """Take (or renew, when ``owner`` already holds it) the lock ``name`` for
    ``ttl_ms``. Answers ``LockGranted(token, expires_at_ms)``: the fencing
    token grows with every change to the lock, never reused; a definite
    MISMATCH while another owner holds it. ``owner`` must be unique per
    client (two clients with one owner id would share the lock)."""

    name: bytes
    owner: str
    ttl_ms: int
    keyspace: str = LOCKS_KEYSPACE


@dataclass(frozen=True, slots=True)
class Unlock:
    """Release the lock ``name`` granted with ``token`` (to ``owner``; None:
    whoever holds it with that token). Answers ``LockReleased(version)``; a
    definite MISMATCH unless it is held with that token (a later grant, a
    renewal, or an earlier release)."""

    name: bytes
    token: int
    owner: str | None = None
    keyspace: str = LOCKS_KEYSPACE


Request: TypeAlias = (
    Read
    | Mutate
    | PutMany
    | Scan
    | Count
    | RandomKey
    | Flush
    | CreateKeyspace
    | ListKeyspaces
    | Inspect
    | Cas
    | Lock
    | Unlock
)


class ReadResult:
    """The live siblings of a key (newest last) and the causal context to write with.

    The context is computed on first use: most reads (a plain GET) never ask.
    """

    __slots__ = ("_context", "_stored", "versions")

    def __init__(self, versions: list[Version], stored: list[Version]) -> None:
        self.versions = versions  # live versions, in lww order
        self._stored = stored  # every stored version, tombstones and expired included
        self._context: dict[str, int] | None = None

    @property
    def context(self) -> dict[str, int]:
        if self._context is None:
            self._context = record_vv(self._stored)
        return self._context

    @property
    def newest(self) -> Version | None:
        return self.versions[-1] if self.versions else None

    def __repr__(self) -> str:
        return f"ReadResult(versions={self.versions!r})"


@dataclass(frozen=True, slots=True)
class ScanResult:
    keys: list[bytes]
    cursor: int  # 0 when the walk is complete


@dataclass(frozen=True, slots=True)
class RegisterValue:
    """A key of a ``strong`` keyspace as read. ``value`` None: absent (never
    written, deleted, or expired at the reading proposer's clock);
    ``version``: the register's version, the one ``Cas(version=...)``
    compares (0: never written; a delete makes a version too); ``expires_at_ms``
    0: no expiry. ``stale``: read at ``one``/``quorum``/``all`` from that
    many acceptors without a Paxos round, so possibly not the latest
    committed value; False after a ``linearizable`` read."""

    value: bytes | None
    version: int
    expires_at_ms: int = 0
    stale: bool = False


class Versioned(NamedTuple):
    """A write to a ``strong`` keyspace: ``result`` is what the request
    answers in an lww keyspace (SET: True, or False when NX/XX refused, or the
    old value with GET; INCRBY: the new integer; DEL: whether it existed ...;
    ``Cas``: True), and ``version`` the key's version afterwards (the new one
    when it wrote, else the one it read)."""

    result: object
    version: int


@dataclass(frozen=True, slots=True)
class RegisterReport:
    """What each home replica's acceptor holds for a key of a ``strong``
    keyspace (None: no answer in time; an empty ``AcceptorState()``: nothing)."""

    key: bytes
    homes: list[str]
    acceptors: dict[str, AcceptorState | None]
