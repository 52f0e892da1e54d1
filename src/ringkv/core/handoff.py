"""Hinted handoff: what a fallback keeps for an unreachable home replica.

Theory of operation (Dynamo §4.6). When a home replica does not answer, the
coordinator sends the write to the next healthy node on the ring with
``hint_for`` naming the home replica. That fallback stores the record in its
durable *hint store* (one record per (home, keyspace, key), merged with
``record.sync`` when several writes are hinted for the same key) and
acknowledges; the acknowledgement counts toward W. On every tick the holder
offers a bounded number of hints to their home replicas (skipping suspected
ones) with an ordinary ``ReplicaWrite``; a hint is deleted only when the home
replica acknowledged that very record (if the hint changed meanwhile, it is
sent again). Hints are bounded by ``hints_max``: when the store is full a
write that would need one more is *refused* (the fallback answers not-ok, and
the coordinator does not count it), never silently dropped.

*Self-hints.* A fallback's hint exists only once the coordinator has noticed
a silent home replica (``replica_timeout_ms``) and the fallback answered; a
coordinator that crashed before that, or found no fallback, or whose copy the
home refused (a ring epoch it has not learned yet), would leave the home
without the write for good, though the client heard OK. So a coordinator
whose client may be answered before every home replica has the write (W < N)
also keeps a hint for each other home in its own hint store, written in the
same group commit as its own copy (hence no extra fsync before the client's
answer). Once that home acknowledges the write, or a fallback acknowledges a
hinted copy of it (then that hint is the durable one), the self-hint is
deleted at the next tick, together with all others found so, in one commit
(deleting it at once would cost a commit of its own before the client's
answer). A write that ends (every copy answered, or its deadline passed) with
a home neither acknowledged nor hinted keeps a self-hint for it too, whatever
W was. Left over, a self-hint is delivered like any other hint, which is the
point: it survives a crash of the coordinator. (Cassandra, too, keeps hints
on the coordinator.) It is not offered while its write is still under way:
the write's own copy is its first offer. When the store is full the self-hint
is not kept (counted: the write still needs W replicas, and read repair
remains); past ``pending_requests_max`` entries of this bookkeeping a
self-hint is merely delivered as any other hint, a redundant copy.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HINTS_TABLE", "HintInFlight", "hint_key", "parse_hint_key"]

HINTS_TABLE = "hints"
_SEP = b"\x00"


def hint_key(home: str, keyspace: str, key: bytes) -> bytes:
    """Storage key of a hint; node ids and keyspace names never contain NUL."""
    return home.encode() + _SEP + keyspace.encode() + _SEP + key


def parse_hint_key(raw: bytes) -> tuple[str, str, bytes]:
    home, keyspace, key = raw.split(_SEP, 2)
    return home.decode(), keyspace.decode(), key


@dataclass(slots=True)
class HintInFlight:
    """A hint offered to its home replica, awaiting the acknowledgement; or a
    self-hint found ``delivered``, to delete at the next delivery round."""

    storage_key: bytes
    record: bytes
    sent_ms: int
    delivered: bool = False
