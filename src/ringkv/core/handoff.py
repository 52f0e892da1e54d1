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
    """A hint offered to its home replica, awaiting the acknowledgement."""

    storage_key: bytes
    record: bytes
    sent_ms: int
