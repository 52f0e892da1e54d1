"""Siblings: in a ``causal`` keyspace no acknowledged write is silently lost
(DESIGN.md, concurrent writes; Dynamo §4.4, Riak's siblings).

Theory of operation. Each write (``f`` ``write`` or ``put``) writes a value
never written before, with the causal context of an earlier read of its key
(``extra["context"]``: a version vector ``{node: counter}`` or an opaque
string; absent or empty for a blind write) and the values that read returned
(``extra["saw"]``). Writing with a context supersedes exactly what the read
saw; a blind write supersedes nothing and becomes a sibling. So once the
faults are healed the *final reads* of a key (reads begun after every write
to it had ended; the runner reads every key from every node) must each
return every acknowledged write's value, unless the value was superseded:
some write or delete of the key that did not definitely fail saw it.

A write whose outcome is unknown (``info``) counts as a superseder whether or
not anyone saw its own value: it may have happened, seen the value, and then
itself been superseded by a write whose context covered its dot without its
value ever being read (a context covers a writer's earlier dots with no gap).
A definitely failed write did not happen and supersedes nothing.

Three more outcomes:

* **unverified**: a missing value that a write with a context but no recorded
  ``saw``, invoked after it, may have superseded; the run is then unknown;
* **resurrected**: a final read returns a value that an acknowledged write
  or delete saw; that write superseded it everywhere it landed, so it must
  not come back (nor may a delete's);
* writes acknowledged at a level that may lose them (``one``: the single
  replica may die first) and writes to keys without a final read are not
  judged.

Also reported: how many reads returned siblings, and the most seen at once.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ringkv.check.history import FAIL, OK, Event, HistoryError, Operation, operations
from ringkv.check.report import LIST_MAX, Verdict, truncated

__all__ = [
    "MissingWrite",
    "ResurrectedValue",
    "SiblingsResult",
    "check_siblings",
]

WRITE_FS = ("write", "put")
SUPERSEDING_FS = ("write", "put", "delete")


@dataclass(frozen=True, slots=True, kw_only=True)
class MissingWrite:
    key: str
    value: Any
    write_index: int  # the write's invoke event
    process: int
    node: str
    missing_from: tuple[str, ...]  # the final reads without it (node, else @index)

    def describe(self) -> str:
        return (
            f"{self.key}={self.value!r} (written at {self.write_index} by p{self.process} "
            f"via {self.node or '?'}) is missing from the final read(s) on "
            f"{', '.join(self.missing_from)}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ResurrectedValue:
    key: str
    value: Any
    by_index: int  # invoke of the acknowledged write or delete that saw it
    read_on: tuple[str, ...]  # the final reads that returned it

    def describe(self) -> str:
        return (
            f"{self.key}={self.value!r} was superseded by the write invoked at {self.by_index} "
            f"yet the final read(s) on {', '.join(self.read_on)} returned it"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SiblingsResult:
    valid: bool | None  # None: a value is unverified, or no write could be judged
    writes_judged: int
    writes_unjudged: int  # acknowledged at an exempt level, or no final read of the key
    present: int  # judged writes in every final read of their key
    superseded: int  # judged writes missing from a final read but superseded
    missing: tuple[MissingWrite, ...]
    unverified: tuple[MissingWrite, ...]
    resurrected: tuple[ResurrectedValue, ...]
    sibling_reads: int  # ok reads that returned more than one value
    max_siblings: int

    def verdict(self, list_max: int = LIST_MAX) -> Verdict:
        summary = (
            f"{self.writes_judged} acknowledged writes judged: {self.present} present, "
            f"{self.superseded} superseded, {len(self.missing)} missing"
        )
        if self.unverified:
            summary += f", {len(self.unverified)} unverified"
        if self.resurrected:
            summary += f"; {len(self.resurrected)} resurrected"
        summary += f"; {self.sibling_reads} reads saw siblings (at most {self.max_siblings})"
        details: dict[str, object] = {
            "writes_judged": self.writes_judged,
            "writes_unjudged": self.writes_unjudged,
            "present": self.present,
            "superseded": self.superseded,
            "missing_count": len(self.missing),
            "missing": truncated([m.describe() for m in self.missing], list_max),
            "unverified": truncated([m.describe() for m in self.unverified], list_max),
            "resurrected": truncated([r.describe() for r in self.resurrected], list_max),
            "sibling_reads": self.sibling_reads,
            "max_siblings": self.max_siblings,
        }
        return Verdict(checker="siblings", valid=self.valid, summary=summary, details=details)


@dataclass(slots=True)
class _Key:
    """One key's writes and ok reads, in invoke order."""

    writes: list[Operation] = field(default_factory=list)  # write, put and delete
    reads: list[tuple[Event, frozenset[Hashable]]] = field(default_factory=list)


def check_siblings(
    events: Iterable[Event], *, exempt_levels: Collection[str] = ("one",)
) -> SiblingsResult:
    """Judge a causal keyspace's history; ``exempt_levels`` are the write levels
    (``extra["level"]``) allowed to lose an acknowledged write."""
    keys: dict[str, _Key] = {}
    sibling_reads = max_siblings = 0
    for op in operations(events):
        if op.f in SUPERSEDING_FS:
            keys.setdefault(op.key, _Key()).writes.append(op)
        elif op.f == "read" and op.completion is not None and op.completion.type == OK:
            values = _read_values(op.completion)
            keys.setdefault(op.key, _Key()).reads.append((op.invoke, values))
            sibling_reads += len(values) > 1
            max_siblings = max(max_siblings, len(values))
    tally = _Tally()
    for key in sorted(keys):
        _judge_key(key, keys[key], exempt_levels, tally)
    valid: bool | None = True if tally.judged else None
    if tally.unverified:
        valid = None
    if tally.missing or tally.resurrected:
        valid = False
    return SiblingsResult(
        valid=valid,
        writes_judged=tally.judged,
        writes_unjudged=tally.unjudged,
        present=tally.present,
        superseded=tally.superseded,
        missing=tuple(tally.missing),
        unverified=tuple(tally.unverified),
        resurrected=tuple(tally.resurrected),
        sibling_reads=sibling_reads,
        max_siblings=max_siblings,
    )


@dataclass(slots=True)
class _Tally:
    judged: int = 0
    unjudged: int = 0
    present: int = 0
    superseded: int = 0
    missing: list[MissingWrite] = field(default_factory=list)
    unverified: list[MissingWrite] = field(default_factory=list)
    resurrected: list[ResurrectedValue] = field(default_factory=list)


def _judge_key(key: str, data: _Key, exempt_levels: Collection[str], tally: _Tally) -> None:
    ended = max((op.completion or op.invoke).index for op in data.writes) if data.writes else -1
    final = [(invoke, values) for invoke, values in data.reads if invoke.index > ended]
    saw_by: dict[Hashable, Operation] = {}  # value -> first write that may have seen it
    acked_saw: dict[Hashable, Operation] = {}  # value -> first acknowledged one
    blind_to_saw: list[int] = []  # invokes of writes with a context but no "saw"
    for op in data.writes:
        if op.type == FAIL:
            continue
        if _extra(op, "saw") is None:
            if _extra(op, "context"):
                blind_to_saw.append(op.invoke.index)
            continue
        for value in _saw(op):
            saw_by.setdefault(value, op)
            if op.type == OK and _extra(op, "level") not in exempt_levels:
                acked_saw.setdefault(value, op)
    for value, op in acked_saw.items():
        read_on = tuple(_label(invoke) for invoke, values in final if value in values)
        if read_on:
            tally.resurrected.append(
                ResurrectedValue(key=key, value=value, by_index=op.invoke.index, read_on=read_on)
            )
    for op in data.writes:
        if op.f not in WRITE_FS or op.type != OK:
            continue
        if not final or _extra(op, "level") in exempt_levels:
            tally.unjudged += 1
            continue
        tally.judged += 1
        value = _hashable(op.invoke.value, op.invoke)
        missing_from = tuple(_label(invoke) for invoke, values in final if value not in values)
        superseder = saw_by.get(value)
        if not missing_from:
            tally.present += 1
        elif superseder is not None and superseder is not op:
            tally.superseded += 1
        else:
            missing = MissingWrite(
                key=key,
                value=value,
                write_index=op.invoke.index,
                process=op.process,
                node=op.invoke.node,
                missing_from=missing_from,
            )
            maybe = any(index > op.invoke.index for index in blind_to_saw)
            (tally.unverified if maybe else tally.missing).append(missing)


def _extra(op: Operation, name: str) -> Any:
    """A field the workload recorded beside the event, at completion or invoke."""
    if op.completion is not None and name in op.completion.extra:
        return op.completion.extra[name]
    return op.invoke.extra.get(name)


def _saw(op: Operation) -> list[Hashable]:
    saw = _extra(op, "saw")
    if not isinstance(saw, list | tuple):
        raise HistoryError(f"event {op.start}: 'saw' is a list of values, not {saw!r}")
    return [_hashable(value, op.invoke) for value in saw]


def _read_values(completion: Event) -> frozenset[Hashable]:
    value: Sequence[Any] | None = completion.value
    if value is None:
        return frozenset()
    if not isinstance(value, list | tuple):
        raise HistoryError(f"event {completion.index}: a read returns a list of siblings")
    return frozenset(_hashable(v, completion) for v in value)


def _hashable(value: Any, event: Event) -> Hashable:
    if not isinstance(value, Hashable):
        raise HistoryError(f"event {event.index}: value {value!r} is not a plain value")
    return value


def _label(invoke: Event) -> str:
    return invoke.node or f"@{invoke.index}"
