"""Operation histories: the record every checker reads (Jepsen's shape).

One record per event, written as one JSON object per line::

    {"index": 0, "process": 3, "type": "invoke", "f": "write", "key": "k1",
     "value": 2, "error": null, "time_ns": 1200, "node": "n2"}

``type`` is ``invoke`` when a client sends a request, then one of ``ok`` (it
happened), ``fail`` (it certainly had no effect: a definite error, STYLE.md
rule 11) or ``info`` (unknown: a timeout, a lost connection, a crash). A
process is one single-threaded client: it has at most one operation in flight,
and after an ``info`` it is retired and its client continues as a new process,
since the old operation may still take effect at any later time.

``f`` and ``value`` depend on the workload: a register has ``read`` (value
null at invoke, the value read at ok), ``write`` (the value written) and
``cas`` (``[expected, new]``); a set has ``add`` (the element) and ``read``
(the elements at ok). Extra fields a workload needs (the causal context a
write carried, a version) live beside these and are kept as they are.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = [
    "FAIL",
    "INFO",
    "INVOKE",
    "OK",
    "Event",
    "HistoryError",
    "Operation",
    "Recorder",
    "operations",
    "read_jsonl",
    "write_jsonl",
]

INVOKE, OK, FAIL, INFO = "invoke", "ok", "fail", "info"
_TYPES = frozenset((INVOKE, OK, FAIL, INFO))
_FIELDS = ("index", "process", "type", "f", "key", "value", "error", "time_ns", "node")


class HistoryError(ValueError):
    """A history that breaks the rules above (a checker refuses to judge it)."""


@dataclass(frozen=True, slots=True)
class Event:
    index: int
    process: int
    type: str  # invoke | ok | fail | info
    f: str
    key: str
    value: Any = None
    error: str = ""
    time_ns: int = 0
    node: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = dict(self.extra)
        row.update(
            index=self.index,
            process=self.process,
            type=self.type,
            f=self.f,
            key=self.key,
            value=self.value,
            error=self.error or None,
            time_ns=self.time_ns,
            node=self.node,
        )
        return row

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Event:
        try:
            kind = row["type"]
            if kind not in _TYPES:
                raise HistoryError(f"event {row.get('index')}: unknown type {kind!r}")
            return cls(
                index=int(row["index"]),
                process=int(row["process"]),
                type=kind,
                f=str(row["f"]),
                key=str(row.get("key", "")),
                value=row.get("value"),
                error=row.get("error") or "",
                time_ns=int(row.get("time_ns") or 0),
                node=str(row.get("node") or ""),
                extra={k: v for k, v in row.items() if k not in _FIELDS},
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, HistoryError):
                raise
            raise HistoryError(f"malformed history event {row!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation from its invoke to its completion.

    ``completion`` is None when the history ends with the operation still in
    flight; checkers treat that exactly like ``info``.
    """

    invoke: Event
    completion: Event | None

    @property
    def process(self) -> int:
        return self.invoke.process

    @property
    def f(self) -> str:
        return self.invoke.f

    @property
    def key(self) -> str:
        return self.invoke.key

    @property
    def type(self) -> str:
        """ok | fail | info (info also for an operation never completed)."""
        return self.completion.type if self.completion is not None else INFO

    @property
    def value(self) -> Any:
        """The value at completion when ok (what a read saw), else at invoke."""
        if self.completion is not None and self.completion.type == OK and self.f == "read":
            return self.completion.value
        return self.invoke.value

    @property
    def start(self) -> int:
        return self.invoke.index

    @property
    def end(self) -> int | None:
        """The completion's index; None for info (it may take effect until the end)."""
        if self.completion is None or self.completion.type == INFO:
            return None
        return self.completion.index


def operations(events: Iterable[Event]) -> list[Operation]:
    """Pair each invoke with its completion, in invoke order.

    Raises HistoryError for a completion without an invoke, a second invoke by
    a process with an operation in flight, or an event after a process's info.
    """
    pending: dict[int, Event] = {}
    retired: set[int] = set()
    result: list[Operation | None] = []
    slot: dict[int, int] = {}
    for event in events:
        if event.process in retired:
            raise HistoryError(
                f"event {event.index}: process {event.process} was retired by an info"
            )
        if event.type == INVOKE:
            if event.process in pending:
                raise HistoryError(
                    f"event {event.index}: process {event.process} invoked with "
                    f"event {pending[event.process].index} still in flight"
                )
            pending[event.process] = event
            slot[event.process] = len(result)
            result.append(None)
            continue
        invoke = pending.pop(event.process, None)
        if invoke is None:
            raise HistoryError(
                f"event {event.index}: {event.type} from process {event.process} without an invoke"
            )
        result[slot.pop(event.process)] = Operation(invoke, event)
        if event.type == INFO:
            retired.add(event.process)
    for process, invoke in pending.items():
        result[slot[process]] = Operation(invoke, None)
    return [op for op in result if op is not None]


def write_jsonl(events: Iterable[Event], out: IO[str]) -> None:
    for event in events:
        out.write(json.dumps(event.to_json(), sort_keys=True) + "\n")


def read_jsonl(source: Path | str | IO[str]) -> list[Event]:
    if isinstance(source, (str, Path)):
        with open(source, encoding="utf-8") as handle:
            return list(_parse(handle))
    return list(_parse(source))


def _parse(lines: Iterable[str]) -> Iterator[Event]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HistoryError(f"line {number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise HistoryError(f"line {number}: not a JSON object")
        yield Event.from_json(row)


class Recorder:
    """Builds a history as operations happen, keeping its rules.

    ``invoke`` returns the process the operation runs as; ``complete`` records
    its end, and an ``info`` retires the process: the client's next operation
    runs as a fresh process id. Indexes are assigned in call order, so the
    caller's order of calls is the real-time order of the history.
    """

    __slots__ = ("_clock", "_next_process", "_processes", "events")

    def __init__(self, clock: Any = None) -> None:
        self.events: list[Event] = []
        self._processes: dict[int, int] = {}  # client -> its current process
        self._next_process = 0
        self._clock = clock  # () -> time_ns; None: 0

    def process_of(self, client: int) -> int:
        process = self._processes.get(client)
        if process is None:
            process = self._processes[client] = self._next_process
            self._next_process += 1
        return process

    def invoke(
        self, client: int, f: str, key: str, value: Any = None, node: str = "", **extra: Any
    ) -> Event:
        return self._add(self.process_of(client), INVOKE, f, key, value, "", node, extra)

    def complete(
        self,
        invoke: Event,
        type: str,
        value: Any = None,
        error: str = "",
        **extra: Any,
    ) -> Event:
        if type not in (OK, FAIL, INFO):
            raise ValueError(f"a completion is ok, fail or info, not {type!r}")
        if type != OK or invoke.f != "read":
            value = invoke.value if value is None else value
        event = self._add(
            invoke.process, type, invoke.f, invoke.key, value, error, invoke.node, extra
        )
        if type == INFO:
            for client, process in self._processes.items():
                if process == invoke.process:
                    self._processes[client] = self._next_process
                    self._next_process += 1
                    break
        return event

    def _add(
        self,
        process: int,
        type: str,
        f: str,
        key: str,
        value: Any,
        error: str,
        node: str,
        extra: dict[str, Any],
    ) -> Event:
        event = Event(
            index=len(self.events),
            process=process,
            type=type,
            f=f,
            key=key,
            value=value,
            error=error,
            time_ns=self._clock() if self._clock is not None else 0,
            node=node,
            extra=extra,
        )
        self.events.append(event)
        return event
