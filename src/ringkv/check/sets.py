"""Set-full: is every acknowledged element of a grow-only set kept, and when
did it become visible? (Jepsen's ``set-full`` checker, jepsen.checker.)

Theory of operation. The workload adds unique elements to sets (``f="add"``,
value the element, an int or a str, unique per key) and reads whole sets
(``f="read"``, its ok value the list of elements present). For each element:

* its *known* point is the completion of its add when that was ok, or the
  completion of the first read that saw it, whichever came first; an element
  whose add failed or ended ``info`` and that no read saw is never known, and
  its absence means nothing;
* a read *counts* for an element when it began after the element was known.
  Reads are ordered by the index of their invoke (history order is real-time
  order);
* **lost**: a counting read missed it, and either no read begun later saw it
  (Jepsen's rule) or a missing read is one of the key's *final reads* — the
  reads begun after every add to the key had ended, which the runner issues
  from every node once the faults are healed: there every read must see
  every acknowledged element;
* **stale** (but stable): counting reads missed it before every later read
  saw it. Eventually consistent levels allow this (``stale_allowed``); a
  linearizable run does not. The *stale window* runs from the known point to
  the start of the first read after which every read saw it;
* **never read**: no read began after it was known;
* **recovered**: its add ended ``info`` (outcome unknown) and a read saw it.

Besides Jepsen's checks three are plain safety: an element whose add
*failed* (a definite error: it certainly had no effect, STYLE.md rule 11)
must never be read; a read must not return an element no add wrote; and a
read returns each element at most once.

The stable latency of an element is 0 when every counting read saw it, else
its stale window; percentiles are nearest-rank.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ringkv.check.history import FAIL, OK, Event, HistoryError, Operation, operations
from ringkv.check.report import LIST_MAX, Verdict, truncated

__all__ = [
    "Element",
    "LatencySummary",
    "LostElement",
    "SetElement",
    "SetFullResult",
    "StaleElement",
    "check_set_full",
    "latency_summary",
]

Element = int | str
_NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class SetElement:
    key: str
    element: Hashable  # an Element, except for an unexpected value a read returned

    def describe(self) -> str:
        return f"{self.key}:{self.element!r}"


@dataclass(frozen=True, slots=True, kw_only=True)
class LostElement:
    key: str
    element: Element
    add_index: int  # the add's invoke event
    acknowledged: bool  # False: an info add that a read saw, then lost
    known_index: int
    last_seen_index: int | None  # invoke of the last read that saw it
    missing_index: int  # invoke of the last read that missed it
    missing_node: str

    def describe(self) -> str:
        how = "acknowledged" if self.acknowledged else "seen"
        seen = (
            f"last seen by the read invoked at {self.last_seen_index}"
            if self.last_seen_index is not None
            else "never read"
        )
        return (
            f"{self.key}:{self.element!r} ({how} at {self.known_index}, {seen}) is missing "
            f"from the read invoked at {self.missing_index} via {self.missing_node or '?'}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StaleElement:
    key: str
    element: Element
    stale_reads: int  # reads begun after it was known that missed it
    window_ms: float  # known -> start of the first read after which all saw it

    def describe(self) -> str:
        return (
            f"{self.key}:{self.element!r} missed by {self.stale_reads} read(s), "
            f"stable after {self.window_ms:.3f} ms"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencySummary:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    def describe(self) -> str:
        return f"p50 {self.p50_ms:.3f} ms, p99 {self.p99_ms:.3f} ms, max {self.max_ms:.3f} ms"


def latency_summary(latencies_ms: Iterable[float]) -> LatencySummary | None:
    """Nearest-rank p50 / p99 / max; None for no samples."""
    ordered = sorted(latencies_ms)
    if not ordered:
        return None

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p * len(ordered)) - 1)]

    return LatencySummary(
        count=len(ordered), p50_ms=rank(0.5), p99_ms=rank(0.99), max_ms=ordered[-1]
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SetFullResult:
    valid: bool | None  # None: nothing became stable, so nothing was verified
    stale_allowed: bool
    attempted: int
    acknowledged: int
    stable: int
    lost: tuple[LostElement, ...]
    stale: tuple[StaleElement, ...]
    never_read: tuple[SetElement, ...]
    recovered: tuple[SetElement, ...]
    failed_but_read: tuple[SetElement, ...]
    unexpected: tuple[SetElement, ...]
    duplicated: tuple[SetElement, ...]
    stable_latency: LatencySummary | None

    def verdict(self, list_max: int = LIST_MAX) -> Verdict:
        summary = (
            f"{self.acknowledged} of {self.attempted} adds acknowledged: {self.stable} stable, "
            f"{len(self.lost)} lost, {len(self.stale)} stale, {len(self.never_read)} never read, "
            f"{len(self.recovered)} recovered"
        )
        if self.stable_latency is not None:
            summary += f"; stable after {self.stable_latency.describe()}"
        for name, found in (
            ("read though failed", self.failed_but_read),
            ("unexpected", self.unexpected),
            ("duplicated", self.duplicated),
        ):
            if found:
                summary += f"; {len(found)} {name}"
        worst = sorted(self.stale, key=lambda s: -s.window_ms)
        details: dict[str, object] = {
            "stale_allowed": self.stale_allowed,
            "attempted": self.attempted,
            "acknowledged": self.acknowledged,
            "stable": self.stable,
            "lost_count": len(self.lost),
            "lost": truncated([e.describe() for e in self.lost], list_max),
            "stale_count": len(self.stale),
            "worst_stale": truncated([e.describe() for e in worst], list_max),
            "never_read_count": len(self.never_read),
            "never_read": truncated([e.describe() for e in self.never_read], list_max),
            "recovered_count": len(self.recovered),
            "recovered": truncated([e.describe() for e in self.recovered], list_max),
            "failed_but_read": truncated([e.describe() for e in self.failed_but_read], list_max),
            "unexpected": truncated([e.describe() for e in self.unexpected], list_max),
            "duplicated": truncated([e.describe() for e in self.duplicated], list_max),
        }
        if self.stable_latency is not None:
            details["stable_latency_ms"] = {
                "count": self.stable_latency.count,
                "p50": self.stable_latency.p50_ms,
                "p99": self.stable_latency.p99_ms,
                "max": self.stable_latency.max_ms,
            }
        return Verdict(checker="set-full", valid=self.valid, summary=summary, details=details)


@dataclass(frozen=True, slots=True)
class _Read:
    invoke: Event
    completion: Event
    elements: frozenset[Hashable]
    duplicated: tuple[Hashable, ...]  # elements returned more than once


@dataclass(slots=True)
class _Tally:
    """What the per-element judgements add up to."""

    stable: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    lost: list[LostElement] = field(default_factory=list)
    stale: list[StaleElement] = field(default_factory=list)
    never_read: list[SetElement] = field(default_factory=list)
    recovered: list[SetElement] = field(default_factory=list)
    failed_but_read: list[SetElement] = field(default_factory=list)
    unexpected: set[SetElement] = field(default_factory=set)
    duplicated: set[SetElement] = field(default_factory=set)


def check_set_full(events: Iterable[Event], *, stale_allowed: bool = True) -> SetFullResult:
    """Judge the ``add`` and ``read`` operations of a history (other ``f`` are ignored).

    Raises HistoryError for an added element that is not an int or a str, an
    element added twice to one key, or a read whose ok value is not a list of
    plain values (null reads as the empty set).
    """
    adds: dict[str, dict[Element, Operation]] = {}
    reads: dict[str, list[_Read]] = {}
    for op in operations(events):
        if op.f == "add":
            element = _element(op.invoke.value, op.invoke)
            per_key = adds.setdefault(op.key, {})
            if element in per_key:
                raise HistoryError(f"event {op.start}: {op.key}:{element!r} added twice")
            per_key[element] = op
        elif op.f == "read" and op.completion is not None and op.completion.type == OK:
            reads.setdefault(op.key, []).append(_read(op.invoke, op.completion))
    tally = _Tally()
    for key in sorted(adds.keys() | reads.keys()):
        _judge_key(key, adds.get(key, {}), reads.get(key, []), tally)
    broken = tally.lost or tally.failed_but_read or tally.unexpected or tally.duplicated
    valid: bool | None = True if tally.stable else None
    if broken or (tally.stale and not stale_allowed):
        valid = False
    return SetFullResult(
        valid=valid,
        stale_allowed=stale_allowed,
        attempted=sum(len(per_key) for per_key in adds.values()),
        acknowledged=sum(op.type == OK for per_key in adds.values() for op in per_key.values()),
        stable=tally.stable,
        lost=tuple(tally.lost),
        stale=tuple(tally.stale),
        never_read=tuple(tally.never_read),
        recovered=tuple(tally.recovered),
        failed_but_read=tuple(tally.failed_but_read),
        unexpected=tuple(sorted(tally.unexpected, key=_order)),
        duplicated=tuple(sorted(tally.duplicated, key=_order)),
        stable_latency=latency_summary(tally.latencies_ms),
    )


def _judge_key(
    key: str, adds: Mapping[Element, Operation], reads: Sequence[_Read], tally: _Tally
) -> None:
    """Judge each element of one key; ``reads`` are the key's ok reads in invoke order."""
    invoked = [read.invoke.index for read in reads]
    # Final reads began after every add to the key had ended (an add still in
    # flight when the history ends: after its invoke).
    ended = [op.completion.index if op.completion else op.invoke.index for op in adds.values()]
    final_start = bisect_right(invoked, max(ended, default=-1))
    presence = _presence(reads)
    tally.unexpected.update(SetElement(key, e) for e in presence.keys() - adds.keys())
    tally.duplicated.update(SetElement(key, e) for read in reads for e in read.duplicated)
    for element, add in adds.items():
        here = SetElement(key, element)
        runs = presence.get(element, [])
        seen = _first_seen(reads, runs)
        if add.type == FAIL:
            if seen is not None:
                tally.failed_but_read.append(here)
            continue
        if add.type != OK and seen is not None:
            tally.recovered.append(here)
        known = add.completion if add.type == OK else None
        if seen is not None and (known is None or seen.index < known.index):
            known = seen
        if known is None:
            continue  # an info add nobody saw: its absence means nothing
        # Reads that count began after it was known (and after its add's invoke).
        lowest = max(bisect_right(invoked, known.index), bisect_right(invoked, add.invoke.index))
        if lowest == len(reads):
            tally.never_read.append(here)
            continue
        # The last counting read that missed it: just before its last run of
        # sightings when that run reaches the last read, else the last read.
        missed = runs[-1][0] - 1 if runs and runs[-1][1] == len(reads) else len(reads) - 1
        if missed < lowest:
            tally.stable += 1
            tally.latencies_ms.append(0.0)
            continue
        if not runs or runs[-1][1] <= missed or missed >= final_start:
            last_seen = reads[runs[-1][1] - 1].invoke.index if runs else None
            tally.lost.append(_lost(here, add, known, last_seen, reads[missed].invoke))
            continue
        # Stale, then stable from the read after the last miss on.
        window_ms = max(0, reads[missed + 1].invoke.time_ns - known.time_ns) / _NS_PER_MS
        seen_after = sum(max(0, end - max(start, lowest)) for start, end in runs)
        tally.stale.append(
            StaleElement(
                key=key,
                element=element,
                stale_reads=len(reads) - lowest - seen_after,
                window_ms=window_ms,
            )
        )
        tally.stable += 1
        tally.latencies_ms.append(window_ms)


def _lost(
    here: SetElement, add: Operation, known: Event, last_seen: int | None, missing: Event
) -> LostElement:
    assert isinstance(here.element, int | str)
    return LostElement(
        key=here.key,
        element=here.element,
        add_index=add.invoke.index,
        acknowledged=add.type == OK,
        known_index=known.index,
        last_seen_index=last_seen,
        missing_index=missing.index,
        missing_node=missing.node,
    )


def _presence(reads: Sequence[_Read]) -> dict[Hashable, list[tuple[int, int]]]:
    """Per element, the runs ``[start, end)`` of consecutive reads that saw it.

    Consecutive reads of a set mostly agree, so comparing each read with the
    one before (set differences, in C) does the work; the Python loops run once
    per change, not once per element read."""
    runs: dict[Hashable, list[tuple[int, int]]] = {}
    opened: dict[Hashable, int] = {}
    previous: frozenset[Hashable] = frozenset()
    for position, read in enumerate(reads):
        for element in previous - read.elements:
            runs.setdefault(element, []).append((opened.pop(element), position))
        for element in read.elements - previous:
            opened[element] = position
        previous = read.elements
    for element, start in opened.items():
        runs.setdefault(element, []).append((start, len(reads)))
    return runs  # each element's runs in order: they close in position order


def _first_seen(reads: Sequence[_Read], runs: Sequence[tuple[int, int]]) -> Event | None:
    """The earliest completion of a read that saw the element. Reads are in
    invoke order, so the search stops at the first read invoked after the best
    completion found: it, and every read after it, completed later."""
    best: Event | None = None
    for start, end in runs:
        for position in range(start, end):
            read = reads[position]
            if best is not None and read.invoke.index > best.index:
                return best
            if best is None or read.completion.index < best.index:
                best = read.completion
    return best


def _element(value: object, event: Event) -> Element:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise HistoryError(f"event {event.index}: a set element is an int or a str, not {value!r}")
    return value


def _read(invoke: Event, completion: Event) -> _Read:
    value = completion.value
    if value is None:
        value = []
    try:
        if not isinstance(value, list | tuple):
            raise TypeError("not a list")
        elements = frozenset(value)
    except TypeError:
        raise HistoryError(
            f"event {completion.index}: a set read returns a list of plain values, not {value!r}"
        ) from None
    duplicated: tuple[Hashable, ...] = ()
    if len(elements) != len(value):
        duplicated = tuple(e for e, n in Counter(value).items() if n > 1)
    return _Read(invoke, completion, elements, duplicated)


def _order(item: SetElement) -> tuple[str, int, int, str]:
    element = item.element
    if isinstance(element, int) and not isinstance(element, bool):
        return (item.key, 0, element, "")
    if isinstance(element, str):
        return (item.key, 1, 0, element)
    return (item.key, 2, 0, repr(element))
