"""Linearizability of a register history: the Wing-Gong-Lowe search (issue 5).

Theory of operation. A history is linearizable when every operation can be
given one instant between its invoke and its completion such that, run in the
order of those instants, the operations follow a sequential register
(``read`` returns the value, ``write`` sets it, ``cas [expected, new]`` sets
``new`` when the value is ``expected``). The search is Wing and Gong's
(J. Parallel Distrib. Comput. 1993) as Lowe improved it ("Testing for
linearizability", 2017) and Knossos and Porcupine implement it:

* The completed operations form a doubly-linked list of entries, one call
  and one return each, in real-time order. Walking from the head, a call
  before any return is a candidate to linearize next: if the model accepts
  it, its call and return are *lifted* out of the list, the old state is
  pushed, and the walk restarts at the head. Reaching a return means the
  operation it ends was not linearized in time: pop the last choice,
  *unlift* its entries (dancing links: the removed nodes still point at their
  neighbours) and try the next candidate after it.
* Lowe's memoization: the pair (set of linearized operations, model state),
  the set being an ``int`` used as a bitset, is cached; reaching a pair again
  cannot succeed where it failed before, so the branch is cut.
* P-compositionality (Herlihy and Wing 1990; Horn and Kroening, FORTE 2015):
  a history is linearizable iff each key's sub-history is, so keys are
  checked one by one.

What the outcomes mean (STYLE.md rule 11, history.py): a ``fail`` certainly
had no effect and is dropped. An ``info`` operation, or one never completed,
may take effect at any instant after its invoke, or never (its return is at
+infinity, as in Porcupine): it is a candidate from its invoke on, it need
not be linearized, and the search accepts as soon as every *completed*
operation is. An ``info`` read tells nothing and is dropped.

Info operations are what makes the search explode (each may or may not have
happened, and its effect never expires), so they get rules of their own,
each keeping at least one linearization if any exists:

* one is linearized only where it changes the state, and only right before
  an operation that reads it (a read, a cas): followed by a write, or by
  nothing, its effect is lost and leaving it out is as good;
* identical ones (same function and values) are interchangeable, so they are
  spent in invoke order;
* in the cache, a state reached having spent a superset of the info
  operations spent by a failed visit fails too (fewer left, fewer options),
  and completed candidates are tried before info ones so the small sets come
  first.

A legal operation that leaves the state as it was (a read, a ``cas`` with
``expected == new``) dominates its alternatives: if the search fails after
linearizing it right away, it fails with it anywhere later too, so
backtracking skips the other candidates at its level.

A budget (``max_states`` per key, ``deadline_s`` for the whole check) turns an
unfinished search into ``unknown``; ``valid`` is then None, which is never a
pass. Values compare by their JSON text (``1`` and ``1.0`` and ``true``
differ).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from ringkv.check.history import INFO, INVOKE, OK, Event, HistoryError, Operation, operations
from ringkv.check.report import LIST_MAX, Verdict, truncated

__all__ = [
    "LINEARIZABLE",
    "NOT_LINEARIZABLE",
    "UNKNOWN",
    "KeyResult",
    "LinearizabilityResult",
    "check_register",
    "describe_operation",
    "parse_jepsen_log",
    "register_step",
]

LINEARIZABLE: Final = "linearizable"
NOT_LINEARIZABLE: Final = "not linearizable"
UNKNOWN: Final = "unknown"

_REGISTER_FUNCTIONS: Final = ("read", "write", "cas")
_READ, _WRITE, _CAS = 0, 1, 2
_DEADLINE_CHECK_MASK: Final = 0xFF  # look at the clock every 256 new states
_INFINITY: Final = float("inf")


def _verdict(valid: bool | None) -> str:
    if valid is None:
        return UNKNOWN
    return LINEARIZABLE if valid else NOT_LINEARIZABLE


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyResult:
    """The verdict on one key's sub-history, with what the search found.

    ``linearization`` is a whole linearization when ``valid`` (every completed
    operation, plus the ``info`` ones it chose to let take effect); otherwise
    the longest linearizable prefix found. ``unplaced`` (only when ``valid`` is
    False) lists the completed operations that had to come next after that
    prefix by real-time order, none of which the register in state
    ``value_after`` accepts.
    """

    key: str
    valid: bool | None
    operations: tuple[Operation, ...]  # every operation on the key, in invoke order
    linearization: tuple[Operation, ...]
    unplaced: tuple[Operation, ...]
    initial: Any
    value_after: Any  # the register after ``linearization``
    states_explored: int

    @property
    def verdict(self) -> str:
        return _verdict(self.valid)

    def explain(self, prefix_lines_max: int = 10) -> str:
        """A few lines for a person: the verdict, the end of the prefix, the misfits."""
        lines = [
            f"key {self.key!r}: {self.verdict} ({len(self.operations)} operations, "
            f"{self.states_explored} states explored)"
        ]
        if self.valid is True:
            return lines[0]
        shown = self.linearization[-prefix_lines_max:]
        lines.append(
            f"  longest linearizable prefix: {len(self.linearization)} operations, "
            f"after which the register holds {_json(self.value_after)}"
        )
        if len(shown) < len(self.linearization):
            lines.append(f"    ... {len(self.linearization) - len(shown)} earlier")
        lines.extend(f"    {describe_operation(op)}" for op in shown)
        if self.unplaced:
            lines.append("  none of the operations that must come next fits:")
            lines.extend(f"    {describe_operation(op)}" for op in self.unplaced)
        return "\n".join(lines)


@dataclass(frozen=True, slots=True, kw_only=True)
class LinearizabilityResult:
    """Per-key results, sorted by key. ``valid`` is False if any key is not
    linearizable, else None if any key is unknown, else True."""

    keys: tuple[KeyResult, ...]

    @property
    def valid(self) -> bool | None:
        verdicts = [result.valid for result in self.keys]
        if False in verdicts:
            return False
        if None in verdicts:
            return None
        return True

    @property
    def verdict(self) -> str:
        return _verdict(self.valid)

    @property
    def failures(self) -> tuple[KeyResult, ...]:
        """The keys that did not pass: not linearizable first, then unknown."""
        return tuple(r for r in self.keys if r.valid is False) + tuple(
            r for r in self.keys if r.valid is None
        )

    @property
    def states_explored(self) -> int:
        return sum(result.states_explored for result in self.keys)

    def key(self, key: str) -> KeyResult:
        for result in self.keys:
            if result.key == key:
                return result
        raise KeyError(key)

    def to_verdict(self, list_max: int = LIST_MAX) -> Verdict:
        """The ``ringkv.check.report`` row: counts, the failing keys, and for the
        first of them the end of its longest prefix and what would not fit."""
        bad = [r for r in self.keys if r.valid is False]
        unknown = [r for r in self.keys if r.valid is None]
        summary = (
            f"{len(self.keys)} keys, {sum(len(r.operations) for r in self.keys)} operations: "
            f"{len(bad)} not linearizable, {len(unknown)} unknown "
            f"({self.states_explored} states explored)"
        )
        details: dict[str, Any] = {
            "keys": len(self.keys),
            "not_linearizable": truncated([r.key for r in bad], list_max),
            "unknown": truncated([r.key for r in unknown], list_max),
            "states_explored": self.states_explored,
        }
        if self.failures:
            first = self.failures[0]
            details["first_failure"] = first.key
            details["prefix_length"] = len(first.linearization)
            details["prefix_end"] = [
                describe_operation(op) for op in first.linearization[-list_max:]
            ]
            details["value_after_prefix"] = _json(first.value_after)
            details["unplaced"] = truncated(
                [describe_operation(op) for op in first.unplaced], list_max
            )
        return Verdict(checker="linearizable", valid=self.valid, summary=summary, details=details)


def check_register(
    events: Sequence[Event],
    *,
    initial: Any = None,
    max_states: int | None = None,
    deadline_s: float | None = None,
) -> LinearizabilityResult:
    """Check a register history (read / write / cas per key) for linearizability.

    ``initial`` is every key's value before the history. ``max_states`` bounds
    the states explored per key and ``deadline_s`` the wall-clock seconds of
    the whole check; past either the key's verdict is ``unknown``. Raises
    HistoryError for a malformed history or an operation the register model
    does not know.
    """
    if max_states is not None and max_states < 0:
        raise ValueError(f"max_states must be >= 0, not {max_states}")
    deadline = None if deadline_s is None else time.monotonic() + deadline_s
    by_key: dict[str, list[Operation]] = {}
    for op in operations(events):
        _validate(op)
        by_key.setdefault(op.key, []).append(op)
    return LinearizabilityResult(
        keys=tuple(
            _check_key(key, tuple(by_key[key]), initial, max_states, deadline)
            for key in sorted(by_key)
        )
    )


def register_step(value: Any, op: Operation) -> tuple[bool, Any]:
    """The sequential register: is ``op`` legal on ``value``, and the value after.

    An ``info`` cas applies only when it matches (its outcome is unknown); an
    ``info`` read is legal on anything.
    """
    if op.f == "read":
        return (op.type != OK or _same(op.value, value)), value
    if op.f == "write":
        return True, op.value
    expected, new = _cas_arguments(op)
    if _same(expected, value):
        return True, new
    return op.type != OK, value


def describe_operation(op: Operation) -> str:
    """``p3 cas [1,2] ok [12..15]``: process, function, value(s), outcome, and
    the indexes of the invoke and of the completion (none if never completed)."""
    end = "" if op.completion is None else str(op.completion.index)
    outcome = op.type if op.completion is not None else "never completed"
    if op.f == "read" and op.type == OK:
        what = f"read -> {_json(op.value)}"
    elif op.f == "read":
        what = "read"
    else:
        what = f"{op.f} {_json(op.value)}"
    return f"p{op.process} {what} {outcome} [{op.start}..{end}]"


# -- the search ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Problem:
    """One key's candidates as flat lists, ready for the search.

    The entry list holds the completed candidates only: node 0 is the head,
    1..n their calls and returns in time order, n + 1 the tail; ``match`` maps
    a call node to its return node. The info candidates have no return and
    stay out of the list: ``info_ops`` in invoke order, tried once the walk
    reaches a return, if invoked by then.
    """

    candidates: tuple[Operation, ...]  # ok ops and info writes / cas
    values: tuple[Any, ...]  # value id -> value; id 0 is the initial value
    kind: tuple[int, ...]  # per candidate: _READ / _WRITE / _CAS
    argument: tuple[int, ...]  # read value, written value, cas expected (value ids)
    new: tuple[int, ...]  # cas new value id, else -1
    read_only: tuple[bool, ...]  # completed and never changes the state
    completed_count: int
    info_ops: tuple[int, ...]  # info candidates by invoke index
    info_start: tuple[int, ...]
    twin_before: tuple[int, ...]  # per info_ops entry: the previous identical one, else -1
    node_op: tuple[int, ...]  # node -> candidate, -1 for head and tail
    node_time: tuple[float, ...]
    is_call: tuple[bool, ...]
    match: tuple[int, ...]
    tail: int


@dataclass(slots=True, kw_only=True)
class _Outcome:
    valid: bool | None
    path: list[int]  # candidates, in linearization order
    state: int
    next_ops: list[int]  # candidates that had to come next (when not valid)
    states: int


def _check_key(
    key: str,
    ops: tuple[Operation, ...],
    initial: Any,
    max_states: int | None,
    deadline: float | None,
) -> KeyResult:
    problem = _prepare(ops, initial)
    outcome = _search(problem, max_states, deadline)
    return KeyResult(
        key=key,
        valid=outcome.valid,
        operations=ops,
        linearization=tuple(problem.candidates[i] for i in outcome.path),
        unplaced=tuple(problem.candidates[i] for i in outcome.next_ops),
        initial=initial,
        value_after=problem.values[outcome.state],
        states_explored=outcome.states,
    )


def _prepare(ops: Sequence[Operation], initial: Any) -> _Problem:
    ids: dict[str, int] = {}
    values: list[Any] = []

    def intern(value: Any) -> int:
        text = _json(value)
        found = ids.get(text)
        if found is None:
            found = ids[text] = len(values)
            values.append(value)
        return found

    intern(initial)
    candidates = [op for op in ops if op.type == OK or (op.type == INFO and op.f != "read")]
    kind, argument, new = [], [], []
    for op in candidates:
        if op.f == "cas":
            expected, replacement = _cas_arguments(op)
            kind.append(_CAS)
            argument.append(intern(expected))
            new.append(intern(replacement))
        else:
            kind.append(_READ if op.f == "read" else _WRITE)
            argument.append(intern(op.value))
            new.append(-1)
    read_only = [
        op.type == OK and (k == _READ or (k == _CAS and a == b))
        for op, k, a, b in zip(candidates, kind, argument, new, strict=True)
    ]
    info_ops = sorted(
        (i for i, op in enumerate(candidates) if op.end is None), key=lambda i: candidates[i].start
    )
    twin_before: list[int] = []
    last_twin: dict[tuple[int, int, int], int] = {}
    for i in info_ops:
        twin_before.append(last_twin.get((kind[i], argument[i], new[i]), -1))
        last_twin[(kind[i], argument[i], new[i])] = i
    entries = sorted(
        [(op.start, 0, i) for i, op in enumerate(candidates) if op.end is not None]
        + [(op.end, 1, i) for i, op in enumerate(candidates) if op.end is not None]
    )  # calls before returns at equal times, as Porcupine orders them
    node_op = [-1, *(i for _, _, i in entries), -1]
    is_call = [False, *(which == 0 for _, which, _ in entries), False]
    return_node = {i: node for node, (_, which, i) in enumerate(entries, 1) if which == 1}
    match = [return_node[i] if call else 0 for i, call in zip(node_op, is_call, strict=True)]
    return _Problem(
        candidates=tuple(candidates),
        values=tuple(values),
        kind=tuple(kind),
        argument=tuple(argument),
        new=tuple(new),
        read_only=tuple(read_only),
        completed_count=len(return_node),
        info_ops=tuple(info_ops),
        info_start=tuple(candidates[i].start for i in info_ops),
        twin_before=tuple(twin_before),
        node_op=tuple(node_op),
        node_time=(-1.0, *(float(time) for time, _, _ in entries), _INFINITY),
        is_call=tuple(is_call),
        match=tuple(match),
        tail=len(entries) + 1,
    )


def _search(problem: _Problem, max_states: int | None, deadline: float | None) -> _Outcome:
    """The WGL walk over the entry list (module docstring). Hot loop: kept flat.

    ``done`` is the bitset of linearized completed candidates, ``used`` that of
    linearized info ones. The cache maps (done, state) to the ``used`` sets
    explored (and failed) from there; a ``used`` that contains one of them is
    cut, since spending more info operations leaves fewer options. At each
    level the completed candidates are tried before the info ones, so the
    small ``used`` sets come first and cut the large ones.

    An info operation is only linearized right before one that reads the
    state (a read, a cas): followed by a write or by nothing its effect is
    lost, and a linearization without it is as good. So after an info one
    the search is ``observing``: writes wait. Such states are cached apart
    (``~state``). A stack frame is (call node, state before, -1, observing
    before) for a completed candidate, (return node reached, state before,
    index in ``info_ops``, observing before) for an info one.
    """
    kind, argument, new_value = problem.kind, problem.argument, problem.new
    node_op, is_call, match, read_only = (
        problem.node_op,
        problem.is_call,
        problem.match,
        problem.read_only,
    )
    nxt = [*range(1, problem.tail + 1), problem.tail]
    prv = [0, *range(problem.tail)]
    budget = _Budget(max_states, deadline)
    cache: dict[tuple[int, int], list[int]] = {}
    stack: list[tuple[int, int, int, bool]] = []
    best = _Outcome(valid=None, path=[], state=0, next_ops=[], states=0)  # None: none yet
    best_done = -1  # completed ops in the best prefix; -1: even an empty one is news
    state, done, used, node, info, observing = 0, 0, 0, nxt[0], 0, False
    remaining = problem.completed_count
    while remaining:
        if is_call[node]:
            op = node_op[node]
            k = kind[op]
            if k == _WRITE:
                new = -1 if observing else argument[op]
            elif argument[op] != state:
                new = -1
            else:
                new = state if k == _READ else new_value[op]
            if new >= 0 and _remember(cache, (done | 1 << op, new), used):
                if budget.spent():
                    return _give_up(problem, stack, best, state, budget.states)
                stack.append((node, state, -1, observing))
                state, done, observing = new, done | 1 << op, False
                _lift(node, match[node], nxt, prv)
                remaining -= 1
                node, info = nxt[0], 0
                continue
            node = nxt[node]
            continue
        assert node != problem.tail, "walked past every return with operations left"
        if not info and not observing and done.bit_count() > best_done:
            best_done = done.bit_count()
            best = _Outcome(
                valid=False,
                path=_path(problem, stack),
                state=state,
                next_ops=_next_completed(problem, nxt),
                states=0,
            )
        info, new = _next_info(problem, info, node, state, observing, done, used, cache)
        if new >= 0:
            if budget.spent():
                return _give_up(problem, stack, best, state, budget.states)
            stack.append((node, state, info, observing))
            state, used, observing = new, used | 1 << problem.info_ops[info], True
            node, info = nxt[0], 0
            continue
        while True:  # backtrack; past a read-only choice its siblings are dominated
            if not stack:
                assert best.valid is False, "the first return reached is always recorded"
                best.states = budget.states
                return best
            node, state, info, observing = stack.pop()
            if info >= 0:
                used ^= 1 << problem.info_ops[info]
                info += 1
                break
            op = node_op[node]
            done ^= 1 << op
            remaining += 1
            _unlift(node, match[node], nxt, prv)
            if not read_only[op]:
                node, info = nxt[node], 0
                break
    return _Outcome(
        valid=True, path=_path(problem, stack), state=state, next_ops=[], states=budget.states
    )


def _remember(cache: dict[tuple[int, int], list[int]], key: tuple[int, int], used: int) -> bool:
    """Add (key, used) unless a subset of ``used`` was explored at ``key`` already."""
    seen = cache.get(key)
    if seen is None:
        cache[key] = [used]
        return True
    if any(prior & used == prior for prior in seen):
        return False
    seen[:] = [prior for prior in seen if prior & used != used]  # now subsumed by ``used``
    seen.append(used)
    return True


def _next_info(
    problem: _Problem,
    info: int,
    node: int,
    state: int,
    observing: bool,
    done: int,
    used: int,
    cache: dict[tuple[int, int], list[int]],
) -> tuple[int, int]:
    """From ``info_ops[info]`` on, the first info candidate invoked by the time of
    return ``node`` that is unused, changes the state (else it may as well
    never happen), is no write when ``observing``, follows its earlier
    identical twins (they are interchangeable) and leads somewhere new: (its
    index, new state), or (-1, -1)."""
    until = problem.node_time[node]
    while info < len(problem.info_ops) and problem.info_start[info] <= until:
        op, twin = problem.info_ops[info], problem.twin_before[info]
        if not used >> op & 1 and (twin < 0 or used >> twin & 1):
            if problem.kind[op] != _WRITE:
                new = problem.new[op] if problem.argument[op] == state else state
            else:
                new = state if observing else problem.argument[op]
            if new != state and _remember(cache, (done, ~new), used | 1 << op):
                return info, new
        info += 1
    return -1, -1


class _Budget:
    """States explored against ``max_states``, and the clock against ``deadline``."""

    __slots__ = ("deadline", "max_states", "states")

    def __init__(self, max_states: int | None, deadline: float | None) -> None:
        self.max_states = max_states
        self.deadline = deadline
        self.states = 0

    def spent(self) -> bool:
        """Count one more state; True (and not counted) when over budget."""
        if self.max_states is not None and self.states >= self.max_states:
            return True
        if (
            self.deadline is not None
            and not self.states & _DEADLINE_CHECK_MASK
            and time.monotonic() >= self.deadline
        ):
            return True
        self.states += 1
        return False


def _lift(call: int, ret: int, nxt: list[int], prv: list[int]) -> None:
    before, after = prv[call], nxt[call]
    nxt[before], prv[after] = after, before
    before, after = prv[ret], nxt[ret]
    nxt[before], prv[after] = after, before


def _unlift(call: int, ret: int, nxt: list[int], prv: list[int]) -> None:
    nxt[prv[ret]] = prv[nxt[ret]] = ret  # dancing links: in the reverse order of _lift
    nxt[prv[call]] = prv[nxt[call]] = call


def _path(problem: _Problem, stack: list[tuple[int, int, int, bool]]) -> list[int]:
    return [
        problem.node_op[node] if info < 0 else problem.info_ops[info] for node, _, info, _ in stack
    ]


def _next_completed(problem: _Problem, nxt: list[int]) -> list[int]:
    """The candidates whose call comes before the first pending return."""
    found, node = [], nxt[0]
    while problem.is_call[node]:
        found.append(problem.node_op[node])
        node = nxt[node]
    return found


def _give_up(
    problem: _Problem,
    stack: list[tuple[int, int, int, bool]],
    best: _Outcome,
    state: int,
    states: int,
) -> _Outcome:
    if best.valid is None or len(stack) > len(best.path):  # nothing recorded, or shorter
        return _Outcome(
            valid=None, path=_path(problem, stack), state=state, next_ops=[], states=states
        )
    return _Outcome(valid=None, path=best.path, state=best.state, next_ops=[], states=states)


# -- values and validation -------------------------------------------------------


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)


def _same(a: Any, b: Any) -> bool:
    return _json(a) == _json(b)


def _cas_arguments(op: Operation) -> tuple[Any, Any]:
    value = op.invoke.value
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise HistoryError(f"event {op.start}: cas value must be [expected, new], not {value!r}")
    return value[0], value[1]


def _validate(op: Operation) -> None:
    if op.f not in _REGISTER_FUNCTIONS:
        raise HistoryError(
            f"event {op.start}: the register model knows read, write and cas, not {op.f!r}"
        )
    if op.f == "cas":
        _cas_arguments(op)


# -- Jepsen's text log -----------------------------------------------------------

_JEPSEN_LINE: Final = re.compile(
    r"^INFO\s+jepsen\.util\s+-\s+(\d+)\s+:(invoke|ok|fail|info)\s+:([\w-]+)\s+(.*?)\s*$"
)
_JEPSEN_INTEGER: Final = re.compile(r"-?\d+")


def parse_jepsen_log(source: Path | str | IO[str], *, key: str = "register") -> list[Event]:
    """Events from a Jepsen ``jepsen.util`` log (as in Porcupine's test data).

    Each line is ``INFO  jepsen.util - <process> :<type> :<f> <value>``; the
    line number (from 0) is the event index. ``nil`` is None, ``[1 4]`` a cas's
    ``[expected, new]``; a keyword value such as ``:timed-out`` becomes the
    error. Every event is on ``key``. Raises HistoryError on any other line.
    """
    if isinstance(source, (str, Path)):
        with open(source, encoding="utf-8") as handle:
            return list(_parse_jepsen(handle, key))
    return list(_parse_jepsen(source, key))


def _parse_jepsen(lines: Iterable[str], key: str) -> Iterator[Event]:
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        found = _JEPSEN_LINE.match(line)
        if found is None:
            raise HistoryError(f"line {number + 1}: not a jepsen.util operation: {line[:200]!r}")
        process, kind, f, text = found.groups()
        error = ""
        if text.startswith(":"):
            value, error = None, text[1:]
        else:
            value = _jepsen_value(text, number)
        if kind == INVOKE and f == "read":
            value = None
        yield Event(
            index=number, process=int(process), type=kind, f=f, key=key, value=value, error=error
        )


def _jepsen_value(text: str, number: int) -> Any:
    if text == "nil":
        return None
    if _JEPSEN_INTEGER.fullmatch(text):
        return int(text)
    if text.startswith("[") and text.endswith("]"):
        return [_jepsen_value(part, number) for part in text[1:-1].split()]
    raise HistoryError(f"line {number + 1}: cannot read the value {text[:100]!r}")
