"""Workloads for verification runs: what each client process does next.

A workload is pure: from a seeded ``random.Random`` it draws the next
operation of a process (``OpSpec``), and after the fault phase it lists the
final reads. Executors (the simulator, real processes) perform the
operations and record the history; the checkers judge it. Three workloads:

- ``register``: reads and writes (and compare-and-set where the keyspace has
  it) of small integers 0..4 on a few keys at a time, several processes per
  key, keys rotated after ``ops_per_key`` operations so histories stay small
  for the linearizability checker;
- ``set``: each ``add`` writes one new element of a set as its own key
  (``<set>:<element>``), each ``read`` reads every element ever attempted in
  that set (MGET); checked by the set-full checker for lost and stale adds;
- ``siblings`` (causal keyspaces): each process reads a key with its causal
  context and writes a fresh unique value with that context; concurrent
  writers make siblings, and the checker proves none was lost without a
  write that saw it;
- ``counter``: increments (INCRBY 1..5) and reads of a few counters, checked
  against the sums of acknowledged and possible increments. INCRBY reads
  before it writes, so it needs a `strong` keyspace.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "WORKLOADS",
    "OpSpec",
    "RegisterWorkload",
    "SetWorkload",
    "SiblingsWorkload",
    "Workload",
    "make_workload",
]

WORKLOADS = ("register", "set", "siblings", "counter")


@dataclass(frozen=True, slots=True)
class OpSpec:
    """One operation to perform: ``f`` on ``key`` with ``value`` (see each workload).

    ``members`` (set reads) are the element keys to read."""

    f: str
    key: str
    value: Any = None
    members: tuple[str, ...] = ()


class Workload:
    name = ""

    def next_op(self, process: int, rng: random.Random) -> OpSpec:
        raise NotImplementedError

    def final_reads(self) -> list[OpSpec]:
        """After heal: one read of every key the run touched (done from every node)."""
        raise NotImplementedError


@dataclass
class RegisterWorkload(Workload):
    """Read / write / cas of values 0..4, ``active_keys`` keys at a time."""

    active_keys: int = 3
    ops_per_key: int = 60
    cas: bool = False
    values: int = 5
    name: str = field(default="register", init=False)
    _keys: list[str] = field(default_factory=list, init=False)
    _used: dict[str, int] = field(default_factory=dict, init=False)
    _next_key: int = field(default=0, init=False)

    def _key(self, rng: random.Random) -> str:
        while len(self._keys) < self.active_keys:
            key = f"r{self._next_key}"
            self._next_key += 1
            self._keys.append(key)
            self._used[key] = 0
        key = rng.choice(self._keys)
        self._used[key] += 1
        if self._used[key] >= self.ops_per_key:
            self._keys.remove(key)
        return key

    def next_op(self, process: int, rng: random.Random) -> OpSpec:
        key = self._key(rng)
        roll = rng.random()
        if self.cas and roll < 0.3:
            return OpSpec("cas", key, [rng.randrange(self.values), rng.randrange(self.values)])
        if roll < 0.65:
            return OpSpec("read", key)
        return OpSpec("write", key, rng.randrange(self.values))

    def final_reads(self) -> list[OpSpec]:
        return [OpSpec("read", key) for key in sorted(self._used, key=_natural)]


@dataclass
class SetWorkload(Workload):
    """Unique adds to ``sets`` sets, reads of whole sets (15% of operations)."""

    sets: int = 2
    elements_per_set: int = 50
    name: str = field(default="set", init=False)
    _members: dict[str, list[str]] = field(default_factory=dict, init=False)
    _active: list[str] = field(default_factory=list, init=False)
    _next_set: int = field(default=0, init=False)
    _next_element: int = field(default=0, init=False)

    def next_op(self, process: int, rng: random.Random) -> OpSpec:
        while len(self._active) < self.sets:
            name = f"s{self._next_set}"
            self._next_set += 1
            self._active.append(name)
            self._members[name] = []
        name = rng.choice(self._active)
        members = self._members[name]
        if members and rng.random() < 0.15:
            return OpSpec("read", name, members=tuple(members))
        element = self._next_element
        self._next_element += 1
        members.append(f"{name}:{element}")
        if len(members) >= self.elements_per_set:
            self._active.remove(name)
        return OpSpec("add", name, element, members=(f"{name}:{element}",))

    def final_reads(self) -> list[OpSpec]:
        return [
            OpSpec("read", name, members=tuple(members))
            for name, members in sorted(self._members.items(), key=lambda kv: _natural(kv[0]))
        ]


@dataclass
class SiblingsWorkload(Workload):
    """Read-then-write with the read's context, unique values, ``keys`` keys."""

    keys: int = 4
    name: str = field(default="siblings", init=False)
    _next_value: int = field(default=0, init=False)

    def next_op(self, process: int, rng: random.Random) -> OpSpec:
        key = f"c{rng.randrange(self.keys)}"
        self._next_value += 1
        # One operation: the executor reads (value, context) and writes
        # ``value`` with that context; the history's write carries both.
        return OpSpec("write", key, f"v{self._next_value}")

    def final_reads(self) -> list[OpSpec]:
        return [OpSpec("read", f"c{i}") for i in range(self.keys)]


@dataclass
class CounterWorkload(Workload):
    """INCRBY of 1..5 (80%) and reads (20%) of ``counters`` counters."""

    counters: int = 3
    name: str = field(default="counter", init=False)

    def next_op(self, process: int, rng: random.Random) -> OpSpec:
        key = f"n{rng.randrange(self.counters)}"
        if rng.random() < 0.2:
            return OpSpec("read", key)
        return OpSpec("add", key, rng.randint(1, 5))

    def final_reads(self) -> list[OpSpec]:
        return [OpSpec("read", f"n{i}") for i in range(self.counters)]


def make_workload(name: str, *, cas: bool = False) -> Workload:
    if name == "register":
        return RegisterWorkload(cas=cas)
    if name == "set":
        return SetWorkload()
    if name == "siblings":
        return SiblingsWorkload()
    if name == "counter":
        return CounterWorkload()
    raise ValueError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")


def _natural(key: str) -> tuple[str, int]:
    digits = "".join(ch for ch in key if ch.isdigit())
    return key.rstrip("0123456789"), int(digits) if digits else 0
