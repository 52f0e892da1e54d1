"""Client requests to a Node, and the results it answers with.

Read and Mutate are named tuples, not frozen dataclasses: one is built for
every request on the hot path, and a tuple costs a quarter as much to build.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, TypeAlias

from ringkv.core import ops
from ringkv.core.config import KeyspaceSpec, Level
from ringkv.core.record import Version, record_vv

__all__ = [
    "Count",
    "CreateKeyspace",
    "ListKeyspaces",
    "Flush",
    "Inspect",
    "Mutate",
    "PutMany",
    "RandomKey",
    "Read",
    "ReadResult",
    "ReplicaReport",
    "Request",
    "Scan",
    "ScanResult",
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
