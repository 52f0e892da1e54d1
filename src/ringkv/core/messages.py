"""Node-to-node messages: one frozen, slotted, keyword-only dataclass per type.

Theory of operation (Dynamo §4.5-4.6). Any node accepts a client request. A
write is coordinated by a *home* replica of the key (one of the first N nodes
of its preference list): the coordinator mints the new version's dot from its
own copy of the key, so dots stay unique and contiguous per (node, key), then
sends the resulting sibling set to the other replicas in ``ReplicaWrite``. A
node that is not a home replica forwards the write to one in
``CoordinateWrite``. A read asks the replicas with ``ReplicaRead``. A replica
that does not answer is replaced by the next node on the ring (a fallback),
which keeps the data as a *hint* for the home replica it stands in for
(``hint_for``) and delivers it later with an ordinary ``ReplicaWrite``.

Every message names its sender and the ring epoch it was computed with. The
wire tags live in ``codec.py`` (append only).

The CASPaxos messages (``Paxos*``, CASPaxos §2; the protocol is
``core/paxos.py``, its wiring ``core/strong.py``) serve ``strong`` keyspaces:
a proposer's prepare and accept, an acceptor's promise and accepted, and a
plain read of one acceptor's state for reads below ``linearizable``. Each
carries ``src``, ``req_id`` and ``ring_epoch``; acceptors refuse another epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "KeyspaceDefined",
    "CoordinateWrite",
    "CoordinateWriteReply",
    "GossipRow",
    "MemberSync",
    "MembershipMessage",
    "Message",
    "PaxosAccept",
    "PaxosAccepted",
    "PaxosMessage",
    "PaxosPrepare",
    "PaxosPromise",
    "PaxosRead",
    "PaxosReadReply",
    "Ping",
    "RangeScan",
    "RangeScanReply",
    "PingAck",
    "PingReq",
    "ReplicaRead",
    "ReplicaReadReply",
    "ReplicaWrite",
    "ReplicaWriteAck",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaWrite:
    """Merge ``record`` (a packed sibling set) into your copy, persist, then ack.

    ``hint_for`` is set when the receiver is a fallback standing in for that
    home node; ``want_ack`` is false for read repair and background
    replication, which need no answer."""

    src: str
    req_id: int
    ring_epoch: int
    keyspace: str
    key: bytes
    record: bytes
    hint_for: str = ""
    want_ack: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaWriteAck:
    """Sent only after the write is durable. ``ok`` false: refused (for
    example a full hint store); the coordinator must not count it."""

    src: str
    req_id: int
    ok: bool
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaRead:
    src: str
    req_id: int
    ring_epoch: int
    keyspace: str
    key: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaReadReply:
    """``record`` is the replica's packed sibling set, empty when it has none."""

    src: str
    req_id: int
    ok: bool
    record: bytes = b""
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CoordinateWrite:
    """A blind write forwarded to a home replica, which coordinates it.

    ``context`` is the client's causal context as a flat version vector
    (``clocks.vv_to_flat``), or ``None`` when the client read nothing.
    ``w`` is the number of replica acknowledgements required; with
    ``homes_only`` only home replicas count toward it (level ``all``)."""

    src: str
    req_id: int
    ring_epoch: int
    keyspace: str
    key: bytes
    value: bytes
    expires_at_ms: int
    tombstone: bool
    context: list[str | int] | None
    w: int
    homes_only: bool = False  # level ``all``: fallbacks' copies do not count


@dataclass(frozen=True, slots=True, kw_only=True)
class CoordinateWriteReply:
    """The forwarded write's outcome. ``error_kind`` empty means success;
    otherwise a ``core.errors.ErrorKind`` value, with ``definite`` saying
    whether the write certainly had no effect."""

    src: str
    req_id: int
    error_kind: str = ""
    message: str = ""
    definite: bool = True


# Membership (core/membership.py: SWIM). A gossip row is
# [state, node_id, incarnation, origin, addr, zone, weight, host]:
# ``state`` is "alive", "suspect", "dead" or "left"; ``origin`` is the node
# that raised it (Lifeguard counts independent suspicions by it). Rows are
# checked field by field by ``membership``, which counts and skips bad ones.
GossipRow: TypeAlias = list[str | int]


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    """SWIM probe. ``target`` is the node id the sender means to reach: a
    node that is not it (a new process on a reused address) does not answer."""

    src: str
    src_addr: str
    seq: int
    target: str
    gossip: list[GossipRow]


@dataclass(frozen=True, slots=True, kw_only=True)
class PingReq:
    """Indirect probe: ping ``target`` for me and relay its ack (SWIM §3.1)."""

    src: str
    src_addr: str
    seq: int
    target: str
    target_addr: str
    gossip: list[GossipRow]


@dataclass(frozen=True, slots=True, kw_only=True)
class PingAck:
    """Answers the Ping (or relayed PingReq) numbered ``seq`` by its receiver."""

    src: str
    seq: int
    gossip: list[GossipRow]


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberSync:
    """Push-pull state exchange (join through a seed, periodic anti-entropy,
    graceful leave): ``members`` is the sender's member list, its own row
    first, at most ``sync_members_max`` rows."""

    src: str
    src_addr: str
    want_reply: bool
    members: list[GossipRow]


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyspaceDefined:
    """A keyspace definition, sent to every member when it is created and to a
    member whenever it (re)joins, so definitions reach every node: idempotent,
    and a definition that conflicts with a local one is refused and logged."""

    src: str
    name: str
    mode: str
    n_replicas: int
    level: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RangeScan:
    """List (or count) the live keys this replica holds whose tokens lie in
    ``[start, end]``, at most about ``count`` of them from ``start`` on: one
    step of a cluster-wide SCAN, KEYS or DBSIZE (core/listing.py).

    Tokens are in [0, 2**64) but the codec carries signed 64-bit integers, so
    ``start`` and ``end`` travel shifted down by 2**63 (``listing.to_wire``)."""

    src: str
    req_id: int
    ring_epoch: int
    keyspace: str
    start: int
    end: int
    count: int
    count_only: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RangeScanReply:
    """The keys found (none when counting), how many, and where to go on:
    ``done`` when the range is exhausted, else ``next`` (wire-shifted)."""

    src: str
    req_id: int
    ok: bool
    keys: list[bytes]
    counted: int = 0
    done: bool = True
    next: int = 0
    error: str = ""


# CASPaxos (core/paxos.py). Ballots travel as (counter, proposer) pairs of
# fields; a register state as value, version, expires_at_ms and ``origins``
# (``paxos.origins_to_wire``: [counter, proposer, ..., horizon counter,
# horizon proposer]).


@dataclass(frozen=True, slots=True, kw_only=True)
class PaxosPrepare:
    """Phase 1: promise ballot ``(ballot_counter, ballot_proposer)`` and tell
    me what you accepted."""

    src: str
    req_id: int
    ring_epoch: int
    keyspace: str
    key: bytes
    ballot_counter: int
    ballot_proposer: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PaxosPromise:
    """The answer to a prepare of ballot ``ballot_*``, sent after the promise
    is durable. ``ok`` false: refused for ``error`` (``paxos.REFUSED_*``); on a
    conflict ``promised_*`` is the higher ballot. When ``ok`` the accepted
    ballot and state follow (all zero when nothing was accepted)."""

    src: str
    req_id: int
    ring_epoch: int
    ok: bool
    ballot_counter: int
    ballot_proposer: str
    promised_counter: int
    promised_proposer: str
    accepted_counter: int = 0
    accepted_proposer: str = ""
    value: bytes | None = None
    version: int = 0
    expires_at_ms: int = 0
    origins: list[str | int] | None = None  # origins_to_wire; None when refused
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PaxosAccept:
    """Phase 2: accept this state at ballot ``ballot_*`` and promise the
    sender's next ballot ``(next_counter, ballot_proposer)`` (§2.2.1; 0: none)."""

    src: str
    req_id: int
    ring_epoch: int
    keyspace: str
    key: bytes
    ballot_counter: int
    ballot_proposer: str
    next_counter: int
    value: bytes | None
    version: int
    expires_at_ms: int
    origins: list[str | int]  # origins_to_wire


@dataclass(frozen=True, slots=True, kw_only=True)
class PaxosAccepted:
    """The answer to an accept of ballot ``ballot_*``, sent after the state is
    durable; refusals as in ``PaxosPromise``."""

    src: str
    req_id: int
    ring_epoch: int
    ok: bool
    ballot_counter: int
    ballot_proposer: str
    promised_counter: int
    promised_proposer: str
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PaxosRead:
    """Send me your acceptor state for this key, as it is (no round): a read
    of a strong keyspace below ``linearizable``, an operator's inspection, or
    a probe of an acceptor this node suspects."""

    src: str
    req_id: int
    ring_epoch: int
    keyspace: str
    key: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class PaxosReadReply:
    """``state``: the acceptor's packed ``paxos.AcceptorState`` (empty when it
    holds nothing for the key), sent after commit. ``ok`` false: refused for
    ``error`` (another ring epoch, an unknown or not strong keyspace)."""

    src: str
    req_id: int
    ring_epoch: int
    ok: bool
    state: bytes = b""
    error: str = ""


PaxosMessage: TypeAlias = PaxosPrepare | PaxosPromise | PaxosAccept | PaxosAccepted


Message: TypeAlias = (
    ReplicaWrite
    | ReplicaWriteAck
    | ReplicaRead
    | ReplicaReadReply
    | CoordinateWrite
    | CoordinateWriteReply
    | Ping
    | PingReq
    | PingAck
    | MemberSync
    | KeyspaceDefined
    | RangeScan
    | RangeScanReply
    | PaxosPrepare
    | PaxosPromise
    | PaxosAccept
    | PaxosAccepted
    | PaxosRead
    | PaxosReadReply
)
MembershipMessage: TypeAlias = Ping | PingReq | PingAck | MemberSync
