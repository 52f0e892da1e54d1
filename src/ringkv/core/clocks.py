"""Logical time: Lamport clocks, hybrid logical clocks and dotted version vectors.

Theory of operation.

* A **Lamport clock** (Lamport 1978) is a counter that every event increments
  and every received message advances past the sender's value, so that if
  event a happened before b then ``L(a) < L(b)``. Paxos ballots use it.
* A **hybrid logical clock** (Kulkarni et al. 2014, "Logical Physical Clocks")
  pairs the largest physical time seen (milliseconds) with a logical counter.
  It stays within the clock skew of physical time, yet never goes backwards,
  even when the wall clock does, and a timestamp taken after receiving another
  is larger than it. Last-writer-wins compares HLC timestamps, never raw wall
  clocks; ties are broken by the writer's node id (see ``record.py``).
* A **dotted version vector** (Preguiça, Baquero et al. 2010, "Dotted Version
  Vectors: Logical Clocks for Optimistic Replication") tags each stored
  version with a *dot* ``(node, counter)`` naming the write that made it, plus
  the version vector of what that write had seen (its causal context). A
  version is superseded exactly when another version's causal past (context
  plus dot) covers its dot; two versions neither of which covers the other are
  concurrent siblings. Unlike plain version vectors this keeps siblings from
  multiplying when many clients write through one coordinator.

The time of day is never read here: every function takes ``now_ms`` from the
caller (STYLE.md rule 5).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

__all__ = [
    "Dot",
    "HlcClock",
    "HlcTimestamp",
    "LamportClock",
    "VersionVector",
    "vv_covers",
    "vv_descends",
    "vv_from_flat",
    "vv_merge",
    "vv_to_flat",
]

# Largest logical counter an HLC timestamp carries; past it, the clock waits
# for physical time to advance by borrowing one millisecond (never wraps).
HLC_LOGICAL_MAX = 0xFFFF_FFFF


class HlcTimestamp(NamedTuple):
    """A hybrid logical timestamp; tuples compare lexicographically."""

    wall_ms: int
    logical: int


_HLC_ZERO = HlcTimestamp(0, 0)


class LamportClock:
    """A Lamport counter: ``tick`` for a local event, ``observe`` on receipt."""

    __slots__ = ("value",)

    def __init__(self, value: int = 0) -> None:
        assert value >= 0
        self.value = value

    def tick(self) -> int:
        self.value += 1
        return self.value

    def observe(self, remote: int) -> int:
        """Advance past a value seen in a message; returns the new value."""
        if remote < 0:
            raise ValueError("a Lamport time is never negative")
        self.value = max(self.value, remote) + 1
        return self.value


class HlcClock:
    """A hybrid logical clock (Kulkarni et al. 2014, figure 5)."""

    __slots__ = ("last",)

    def __init__(self, last: HlcTimestamp = _HLC_ZERO) -> None:
        self.last = last

    def now(self, physical_ms: int) -> HlcTimestamp:
        """Timestamp a local event (a write) at physical time ``physical_ms``."""
        last = self.last
        if physical_ms > last.wall_ms:
            ts = HlcTimestamp(physical_ms, 0)
        elif last.logical < HLC_LOGICAL_MAX:
            ts = HlcTimestamp(last.wall_ms, last.logical + 1)
        else:
            ts = HlcTimestamp(last.wall_ms + 1, 0)
        self.last = ts
        return ts

    def observe(self, remote: HlcTimestamp, physical_ms: int) -> HlcTimestamp:
        """Merge a timestamp received from another node; returns the new time."""
        last = self.last
        wall = max(last.wall_ms, remote.wall_ms, physical_ms)
        if wall == last.wall_ms and wall == remote.wall_ms:
            logical = max(last.logical, remote.logical) + 1
        elif wall == last.wall_ms:
            logical = last.logical + 1
        elif wall == remote.wall_ms:
            logical = remote.logical + 1
        else:
            logical = 0
        if logical > HLC_LOGICAL_MAX:
            wall, logical = wall + 1, 0
        ts = HlcTimestamp(wall, logical)
        self.last = ts
        return ts


class Dot(NamedTuple):
    """One write event: the ``counter``-th write of ``node`` to this key.

    A named tuple rather than a frozen dataclass: one is built for every
    version decoded on the request path, and a tuple is four times cheaper."""

    node: str
    counter: int


VersionVector = Mapping[str, int]
"""node id -> highest counter seen; a missing node means 0."""


def vv_merge(*vectors: VersionVector) -> dict[str, int]:
    """Pointwise maximum; commutative, associative and idempotent."""
    merged: dict[str, int] = {}
    for vector in vectors:
        get = merged.get
        for node, counter in vector.items():
            if counter > get(node, 0):
                merged[node] = counter
    # Sorted by node id, so the result does not depend on the input order.
    return dict(sorted(merged.items())) if len(merged) > 1 else merged


def vv_covers(vector: VersionVector, dot: Dot) -> bool:
    """True when the write ``dot`` is in the causal past described by ``vector``."""
    return vector.get(dot.node, 0) >= dot.counter


def vv_descends(a: VersionVector, b: VersionVector) -> bool:
    """True when ``a`` has seen everything ``b`` has (a >= b pointwise)."""
    return all(a.get(node, 0) >= counter for node, counter in b.items())


def vv_to_flat(vector: VersionVector) -> list[str | int]:
    """Encode as ``[node, counter, node, counter, ...]`` sorted by node."""
    flat: list[str | int] = []
    for node in sorted(vector):
        counter = vector[node]
        if counter > 0:
            flat.append(node)
            flat.append(counter)
    return flat


def vv_from_flat(flat: Iterable[object]) -> dict[str, int]:
    """Decode ``vv_to_flat``'s output; raises ValueError on a malformed list."""
    items = flat if type(flat) is list else list(flat)
    if len(items) == 2:  # the common case: one writer
        node, counter = items
        if type(node) is str and type(counter) is int and counter >= 0:
            return {node: counter}
    if len(items) % 2:
        raise ValueError("a flat version vector has an even length")
    vector: dict[str, int] = {}
    for i in range(0, len(items), 2):
        node, counter = items[i], items[i + 1]
        if not isinstance(node, str) or type(counter) is not int or counter < 0:
            raise ValueError("a flat version vector alternates node ids and counters")
        vector[node] = max(vector.get(node, 0), counter)
    return vector
