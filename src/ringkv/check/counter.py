"""The counter checker (after Jepsen's ``counter``): increments and reads.

History: ``add`` events whose value is a positive increment, and ``read``
events whose ok value is the counter's integer value (null: 0). Every key is
a separate counter starting at 0.

A read is legal when its value lies between

- the **lower bound**: the sum of the increments that were acknowledged
  (``ok``) before the read was invoked — they certainly happened before it;
- the **upper bound**: the sum of the increments invoked before the read
  completed that may have happened (``ok``, ``info``, or never completed) —
  a definite ``fail`` certainly did not.

A read outside the bounds is a violation: below, an acknowledged increment
was lost (or not yet visible, which a linearizable counter forbids); above, a
failed increment took effect or one was applied twice. Reads in an eventually
consistent keyspace may legally lag: ``lagging_allowed`` then reports reads
below the lower bound as *stale* rather than invalid, except the final reads
(those that began after every increment ended), which must be within bounds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ringkv.check.history import FAIL, OK, Event, HistoryError, Operation, operations
from ringkv.check.report import LIST_MAX, Verdict, truncated

__all__ = ["BadRead", "CounterResult", "check_counter"]


@dataclass(frozen=True, slots=True)
class BadRead:
    key: str
    read_index: int
    value: int
    lower: int
    upper: int
    final: bool

    def describe(self) -> str:
        where = "final read" if self.final else "read"
        return (
            f"{self.key}: {where} at {self.read_index} saw {self.value}, "
            f"outside [{self.lower}, {self.upper}]"
        )


@dataclass(frozen=True, slots=True)
class CounterResult:
    valid: bool | None
    keys: int
    reads: int
    acknowledged_sum: int
    invalid: tuple[BadRead, ...]
    stale: tuple[BadRead, ...]

    def verdict(self, list_max: int = LIST_MAX) -> Verdict:
        summary = (
            f"{self.reads} reads of {self.keys} counters: {len(self.invalid)} outside the "
            f"bounds, {len(self.stale)} lagging"
        )
        details = {
            "acknowledged_sum": self.acknowledged_sum,
            "invalid_count": len(self.invalid),
            "invalid": truncated([r.describe() for r in self.invalid], list_max),
            "stale_count": len(self.stale),
            "stale": truncated([r.describe() for r in self.stale], list_max),
        }
        return Verdict(checker="counter", valid=self.valid, summary=summary, details=details)


def check_counter(events: Iterable[Event], *, lagging_allowed: bool = False) -> CounterResult:
    by_key: dict[str, list[Operation]] = {}
    for op in operations(events):
        if op.f in ("add", "read"):
            by_key.setdefault(op.key, []).append(op)
    invalid: list[BadRead] = []
    stale: list[BadRead] = []
    reads = acknowledged = 0
    for key, ops in sorted(by_key.items()):
        adds = [op for op in ops if op.f == "add"]
        for op in adds:
            if not isinstance(op.invoke.value, int) or op.invoke.value < 0:
                raise HistoryError(f"event {op.invoke.index}: an add must be a positive integer")
        acknowledged += sum(op.invoke.value for op in adds if op.type == OK)
        last_add_end = max((_end(op) for op in adds), default=-1)
        for read in (op for op in ops if op.f == "read" and op.type == OK):
            reads += 1
            value = read.value if read.value is not None else 0
            if not isinstance(value, int):
                raise HistoryError(f"event {read.start}: a counter read must be an integer")
            end = read.end if read.end is not None else read.start
            lower = sum(
                a.invoke.value
                for a in adds
                if a.type == OK and a.end is not None and a.end < read.start
            )
            upper = sum(a.invoke.value for a in adds if a.type != FAIL and a.start < end)
            if lower <= value <= upper:
                continue
            final = read.start > last_add_end
            bad = BadRead(key, read.start, value, lower, upper, final)
            if value < lower and lagging_allowed and not final:
                stale.append(bad)
            else:
                invalid.append(bad)
    valid: bool | None = not invalid if reads else None
    return CounterResult(valid, len(by_key), reads, acknowledged, tuple(invalid), tuple(stale))


def _end(op: Operation) -> int:
    """Where an add ended, for telling final reads apart: its completion, or
    for an unknown outcome its invoke (it may still land later, and the
    upper bound allows for that)."""
    return op.end if op.end is not None else op.start
