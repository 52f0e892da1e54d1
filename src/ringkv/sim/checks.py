"""The simulator's own checkers, until ``ringkv.check`` provides the full set.

* ``lost_writes`` (causal keyspaces): every write acknowledged at ``quorum``
  or ``all`` is present in the final read of its key at ``all``, or was
  causally superseded: some write that was not a definite failure carried a
  context from a read that returned it (``Op.saw``). A write whose outcome is
  unknown (``info``) may have superseded it, so it counts; a definitely
  failed one did not happen, so it does not.
* ``resurrected_values`` (every mode): a value that a quorum-acknowledged
  put or delete saw in its context is superseded, and must not be in the
  final read: a write after reading a context supersedes (at least) what it
  saw, a causally later lww write wins whatever the clocks, and a delete does
  not come back. Values are unique per put, so a superseded value that is
  read again was resurrected.
* ``divergent_keys``: after the final reads (which repair), every home
  replica of a key stores the same versions (compared by dot, value and
  tombstone flag).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ringkv.core.record import Version
from ringkv.sim.history import FAIL, OK, Op

__all__ = [
    "LostWrite",
    "Resurrected",
    "divergent_keys",
    "is_quorum_write",
    "lost_writes",
    "resurrected_values",
]


@dataclass(frozen=True, slots=True)
class LostWrite:
    key: bytes
    value: bytes
    op_id: int
    process: int
    node: str
    complete_ms: int

    def describe(self) -> str:
        return (
            f"{self.key.decode(errors='replace')}={self.value.decode(errors='replace')} "
            f"(op{self.op_id}, p{self.process} via {self.node}, acknowledged at "
            f"{self.complete_ms} ms) is neither in the final read nor superseded"
        )


def is_quorum_write(op: Op, n: int) -> bool:
    """Acknowledged by at least a quorum of the N replicas (so it must survive)."""
    if op.f != "put" or op.outcome != OK:
        return False
    if op.acks:
        return op.acks >= n // 2 + 1
    return op.level in ("", "quorum", "all")


def lost_writes(
    ops: Sequence[Op], final: Mapping[bytes, Sequence[bytes]], n: int
) -> list[LostWrite]:
    """Acknowledged quorum writes missing from ``final`` (key -> live values) and
    not superseded. Keys absent from ``final`` are not judged (no final read)."""
    superseded: set[tuple[bytes, bytes]] = set()
    for op in ops:
        if op.f in ("put", "delete") and op.outcome != FAIL:
            superseded.update((op.key, value) for value in op.saw)
    lost = []
    for op in ops:
        if not is_quorum_write(op, n) or op.key not in final:
            continue
        assert op.value is not None and op.complete_ms is not None
        if op.value in final[op.key] or (op.key, op.value) in superseded:
            continue
        lost.append(LostWrite(op.key, op.value, op.op_id, op.process, op.node, op.complete_ms))
    return lost


@dataclass(frozen=True, slots=True)
class Resurrected:
    key: bytes
    value: bytes
    by_op: int  # the acknowledged write whose context superseded it

    def describe(self) -> str:
        return (
            f"{self.key.decode(errors='replace')}={self.value.decode(errors='replace')} was "
            f"superseded by op{self.by_op} (acknowledged at quorum) yet is read again"
        )


def resurrected_values(
    ops: Sequence[Op], final: Mapping[bytes, Sequence[bytes]], n: int
) -> list[Resurrected]:
    """Values superseded by a quorum-acknowledged put or delete that are still read."""
    found: list[Resurrected] = []
    for op in ops:
        if op.f not in ("put", "delete") or op.outcome != OK or op.key not in final:
            continue
        if (op.acks and op.acks < n // 2 + 1) or op.level == "one":
            continue
        found.extend(
            Resurrected(op.key, value, op.op_id)
            for value in sorted(op.saw)
            if value in final[op.key]
        )
    return found


def divergent_keys(
    stored: Mapping[bytes, Mapping[str, Iterable[Version]]],
) -> list[tuple[bytes, dict[str, list[str]]]]:
    """Keys whose home replicas store different versions: (key, node -> versions)."""
    divergent = []
    for key in sorted(stored):
        shown: dict[str, list[str]] = {}
        for node in sorted(stored[key]):
            shown[node] = sorted(
                f"{v.dot.node}:{v.dot.counter}:{'del' if v.tombstone else v.value.hex()}"
                for v in stored[key][node]
            )
        if len({tuple(v) for v in shown.values()}) > 1:
            divergent.append((key, shown))
    return divergent
