"""Quorum replication: how many replicas must answer, and the state of a
request being coordinated.

Theory of operation (Dynamo §4.5, "Execution of get() and put() operations";
Riak's get/put FSMs). A key has N home replicas: the first N distinct nodes of
its preference list. A write is acknowledged to the client once W replicas
have durably stored it; a read answers once R replicas have replied, with the
reconciliation (``record.sync``) of what they returned. The levels fix R and W:
``one`` = 1, ``quorum`` = N // 2 + 1, ``all`` = N; an explicit count overrides
the level. With R + W > N a read quorum meets every write quorum of *home*
replicas; a sloppy quorum (fallbacks standing in for unreachable homes) keeps
writes available and gives that guarantee up until the hints are delivered.

A replica that does not answer within ``replica_timeout_ms`` is *suspected*
(locally, by this coordinator: routing only, never ownership): a write is then
sent to the next healthy node on the ring with a hint naming the home replica
it stands in for. When the request deadline passes with fewer than W
acknowledgements the client gets TIMEOUT, an unknown outcome (the write may
yet be on some replicas), never a definite failure. Each home replica counts
once toward W, whether it answered itself, through a fallback, or both. A
home replica that the client's OK did not wait for is covered by a durable
hint on the coordinator itself until it has the write (``handoff.py``,
self-hints), so that hinted handoff never silently gives up on it.

This module is pure: the pending-request records and the arithmetic. The Node
(``node.py``) owns them, feeds them acknowledgements and ticks, and emits the
messages they call for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ringkv.core.config import Level
from ringkv.core.record import Version

__all__ = [
    "PendingForward",
    "PendingRead",
    "PendingWrite",
    "WriteTarget",
    "required_acks",
]


def required_acks(level: Level, n: int, explicit: int = 0) -> int:
    """Replies a coordinator waits for: R for a read, W for a write.

    >>> [required_acks(Level.QUORUM, n) for n in (1, 2, 3, 4, 5)]
    [1, 2, 2, 3, 3]
    """
    assert n >= 1
    if explicit:
        return max(1, min(explicit, n))
    match level:
        case Level.ONE:
            return 1
        case Level.ALL:
            return n
        case Level.QUORUM | Level.LOCAL_QUORUM | Level.LINEARIZABLE:
            return n // 2 + 1


@dataclass(slots=True)
class WriteTarget:
    """Where one copy of a write went: a home replica, or a fallback for one."""

    node: str
    home: str  # the home replica this copy counts for
    sent_ms: int
    acked: bool = False
    refused: bool = False

    @property
    def is_hint(self) -> bool:
        return self.node != self.home


@dataclass(slots=True)
class PendingWrite:
    """A write this node coordinates, waiting for W acknowledgements."""

    token: object
    keyspace: str
    key: bytes
    record: bytes  # the packed sibling set every replica merges
    result: object  # what the client gets once W is reached
    needed: int
    deadline_ms: int
    targets: dict[int, WriteTarget] = field(default_factory=dict)  # req_id -> copy
    acks: int = 1  # the coordinator's own durable copy
    replied: bool = False
    # Level ``all`` promises every home replica: a fallback's hinted copy is
    # still sent (it helps the home replica catch up) but does not count.
    homes_only: bool = False
    # Self-hints (handoff.py): home replica -> the hint this write left in the
    # coordinator's own hint store for it (None: one that holds more than this
    # write, not to be deleted on its account), until that home is covered.
    self_hints: dict[str, bytes | None] = field(default_factory=dict)

    def record_ack(self, req_id: int, ok: bool) -> bool:
        """Count one replica's answer; True when W has just been reached.

        Each home replica counts once: a late direct answer and a fallback's
        answer for the same home are one replica, not two (otherwise W = N
        could be reached with a home replica holding nothing, nor a hint)."""
        target = self.targets.get(req_id)
        if target is None or target.acked or target.refused:
            return False
        if not ok:
            target.refused = True
            return False
        counted_before = self._counts_for(target.home)
        target.acked = True
        if counted_before or (self.homes_only and target.is_hint):
            return False
        self.acks += 1
        return not self.replied and self.acks >= self.needed

    def _counts_for(self, home: str) -> bool:
        """Whether an acknowledgement already counted toward W for ``home``."""
        return any(
            t.acked and t.home == home and not (self.homes_only and t.is_hint)
            for t in self.targets.values()
        )

    def covered(self, home: str) -> bool:
        """Whether ``home`` has the write, or a fallback's durable hint of it:
        the coordinator no longer needs its own hint for that home."""
        return any(t.acked and t.home == home for t in self.targets.values())

    def uncovered_homes(self) -> list[str]:
        """Home replicas this write was sent for that are not covered yet."""
        homes = dict.fromkeys(t.home for t in self.targets.values())
        return [home for home in homes if not self.covered(home)]

    @property
    def settled(self) -> bool:
        """Every copy answered: nothing more to wait for."""
        return all(t.acked or t.refused for t in self.targets.values())

    def overdue(self, now_ms: int, replica_timeout_ms: int) -> list[tuple[int, WriteTarget]]:
        """Copies that have not answered in time and whose home replica has no
        copy under way elsewhere: for each, send another to a fallback.

        A home replica is covered while a hinted copy for it has been
        acknowledged or may still be (sent less than replica_timeout_ms ago).
        A fallback that does not answer either (it may have died with the
        copy) is itself overdue, so the home replica gets the next fallback.
        """
        late: dict[str, tuple[int, WriteTarget]] = {}
        covered: set[str] = set()
        for req_id, t in self.targets.items():
            waited = now_ms - t.sent_ms >= replica_timeout_ms
            if t.acked or (not t.refused and not waited):
                covered.add(t.home)
            elif not t.refused or t.is_hint:
                late.setdefault(t.home, (req_id, t))
        return [late[home] for home in late if home not in covered]


@dataclass(slots=True)
class PendingRead:
    """A read this node coordinates, waiting for R replies."""

    token: object
    keyspace: str
    key: bytes
    needed: int
    deadline_ms: int
    asked: dict[int, str] = field(default_factory=dict)  # req_id -> replica
    replies: dict[str, list[Version]] = field(default_factory=dict)  # replica -> its versions
    raw: dict[str, bytes] = field(default_factory=dict)  # replica -> its packed record
    expected: int = 0  # replicas that will answer: those asked, plus this node if home
    replied: bool = False
    report: bool = False  # an operator's inspection: answer with every copy, repair nothing
    homes: tuple[str, ...] = ()

    @property
    def settled(self) -> bool:
        """Every replica asked has answered: time for read repair."""
        return len(self.replies) >= self.expected


@dataclass(slots=True)
class PendingForward:
    """A write forwarded to a home replica that coordinates it."""

    token: object
    target: str
    deadline_ms: int
