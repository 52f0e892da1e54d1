"""The nemesis: one vocabulary of faults, drawn from a seed, for two executors.

A *fault* is what a verification run injects for a while: a network
partition of some shape, killed or paused processes, skewed clocks, lossy,
duplicating or slow links. ``schedule`` draws a list of faults from a seeded
``random.Random`` (so a seed replays the same run), one at a time with quiet
gaps between them, and ``steps`` compiles them into timed ``Step`` actions
that an executor performs: the simulator's (``verify/simulated.py``: the
simulated network, disk and clocks) or the real one's (``verify/real.py``:
``/v1/admin/faults`` of nodes started with ``--faults``, and signals to our
own child processes by PID).

Partitions are *grudges* (Jepsen's word): the set of directed links
``(src, dst)`` that drop everything. Their shapes, for nodes in a random
order:

- ``partition``: two halves, ``n // 2`` and the rest;
- ``isolate``: one node cut off from every other;
- ``majority``: a random minority (1 to ``(n - 1) // 2`` nodes) against the rest;
- ``majorities-ring``: nodes on a ring, each sees itself and its nearest
  neighbours on both sides, just enough for a majority, so every node sees a
  majority and no two see the same one (the shape that breaks quorum
  systems that assume majorities are stable);
- ``bridge``: two halves that cannot talk, and one node that talks to both;
- ``one-way``: one node's outgoing links are cut, its incoming ones work.

The other faults: ``kill`` (SIGKILL a minority of nodes, restart at the
end; in the simulator a crash loses unsynced writes), ``pause`` (SIGSTOP,
then SIGCONT; the simulator holds the node's events), ``clock-bump`` (one
node's clock jumps by up to ±``clock_max_ms``), ``clock-strobe`` (a node's
clock flips between two offsets every few tens of milliseconds), ``drop``
(every link loses a fraction of messages), ``dup`` (every link duplicates
some; simulator only: TCP never duplicates), ``delay`` (every link holds
messages for a while).

Every fault ends by ``end_ms`` at the latest; ``steps`` ends with a ``heal``
that undoes everything, so the recovery phase always starts healthy.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "FAULT_KINDS",
    "PARTITION_KINDS",
    "SIM_ONLY_KINDS",
    "Fault",
    "NemesisError",
    "Step",
    "grudge",
    "parse_kinds",
    "schedule",
    "steps",
]

PARTITION_KINDS = ("partition", "isolate", "majority", "majorities-ring", "bridge", "one-way")
FAULT_KINDS = (
    *PARTITION_KINDS,
    "kill",
    "pause",
    "clock-bump",
    "clock-strobe",
    "drop",
    "dup",
    "delay",
)
SIM_ONLY_KINDS = frozenset({"dup"})
_GROUPS = {
    "none": (),
    "partitions": PARTITION_KINDS,
    "clocks": ("clock-bump", "clock-strobe"),
    "processes": ("kill", "pause"),
    "links": ("drop", "dup", "delay"),
    "all": FAULT_KINDS,
}
STROBE_PERIOD_MS = (20, 200)


class NemesisError(ValueError):
    """A fault list that cannot be run (unknown kind, too few nodes)."""


def parse_kinds(text: str, *, simulated: bool) -> tuple[str, ...]:
    """``"partition,kill"`` or a group (``all``, ``partitions``, ``clocks``,
    ``processes``, ``links``, ``none``) as a tuple of fault kinds."""
    kinds: list[str] = []
    for word in (w.strip() for w in text.split(",")):
        if not word:
            continue
        expanded = _GROUPS.get(word, (word,))
        for kind in expanded:
            if kind not in FAULT_KINDS:
                raise NemesisError(
                    f"unknown fault {kind!r}; choose from {', '.join(FAULT_KINDS)} "
                    f"or a group: {', '.join(_GROUPS)}"
                )
            if kind in SIM_ONLY_KINDS and not simulated:
                if word == kind:
                    raise NemesisError(f"{kind!r} needs --simulate: TCP never duplicates messages")
                continue
            if kind not in kinds:
                kinds.append(kind)
    return tuple(kinds)


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault, active from ``start_ms`` to ``end_ms`` of the run."""

    kind: str
    start_ms: int
    end_ms: int
    links: frozenset[tuple[str, str]] = frozenset()  # partitions: directed links cut
    nodes: tuple[str, ...] = ()  # kill, pause, clocks
    rate: float = 0.0  # drop, dup
    delay_ms: int = 0  # delay
    offset_ms: int = 0  # clock-bump; clock-strobe: the far offset
    period_ms: int = 0  # clock-strobe: time between flips
    shape: str = ""  # partitions: the groups, for people

    def describe(self) -> str:
        span = f"{self.start_ms / 1000:.1f}-{self.end_ms / 1000:.1f}s"
        match self.kind:
            case kind if kind in PARTITION_KINDS:
                return f"{span} {kind} {self.shape}"
            case "kill" | "pause":
                return f"{span} {self.kind} {','.join(self.nodes)}"
            case "clock-bump":
                return f"{span} clock-bump {self.nodes[0]} {self.offset_ms:+d}ms"
            case "clock-strobe":
                return (
                    f"{span} clock-strobe {self.nodes[0]} 0/{self.offset_ms:+d}ms "
                    f"every {self.period_ms}ms"
                )
            case "drop" | "dup":
                return f"{span} {self.kind} {self.rate:.0%}"
            case "delay":
                return f"{span} delay {self.delay_ms}ms"
        return f"{span} {self.kind}"


@dataclass(frozen=True, slots=True)
class Step:
    """One action of an executor at ``at_ms``.

    ``action`` is one of ``cut`` (``links``: block these directed links, in
    addition to any already blocked), ``heal_network``, ``kill``, ``restart``,
    ``pause``, ``resume``, ``clock`` (``node``, ``offset_ms``), ``links``
    (``rate``/``dup_rate``/``delay_ms`` on every link; zeros restore) and
    ``heal`` (everything back to normal, the last step)."""

    at_ms: int
    action: str
    links: frozenset[tuple[str, str]] = frozenset()
    node: str = ""
    offset_ms: int = 0
    rate: float = 0.0
    dup_rate: float = 0.0
    delay_ms: int = 0
    label: str = field(default="", compare=False)


def _all_links(a: Iterable[str], b: Iterable[str]) -> set[tuple[str, str]]:
    side_b = list(b)
    return {(x, y) for x in a for y in side_b if x != y} | {
        (y, x) for x in a for y in side_b if x != y
    }


def _groups_text(groups: Sequence[Sequence[str]]) -> str:
    return " | ".join(",".join(sorted(g)) for g in groups)


def grudge(
    kind: str, nodes: Sequence[str], rng: random.Random
) -> tuple[frozenset[tuple[str, str]], str]:
    """The directed links a partition of this ``kind`` cuts, and its shape in words."""
    order = list(nodes)
    rng.shuffle(order)
    n = len(order)
    if n < 2:
        raise NemesisError(f"{kind} needs at least two nodes")
    match kind:
        case "partition":
            a, b = order[: n // 2], order[n // 2 :]
            return frozenset(_all_links(a, b)), _groups_text([a, b])
        case "isolate":
            a, b = order[:1], order[1:]
            return frozenset(_all_links(a, b)), _groups_text([a, b])
        case "majority":
            size = rng.randint(1, max(1, (n - 1) // 2))
            a, b = order[:size], order[size:]
            return frozenset(_all_links(a, b)), _groups_text([a, b])
        case "majorities-ring":
            majority = n // 2 + 1
            reach = majority // 2  # neighbours on each side; self + 2*reach >= majority
            if 1 + 2 * reach < majority:
                reach += 1
            links: set[tuple[str, str]] = set()
            views = []
            for i, node in enumerate(order):
                seen = {order[(i + d) % n] for d in range(-reach, reach + 1)}
                views.append(f"{node}:{','.join(sorted(seen - {node}))}")
                links |= {(node, other) for other in order if other not in seen}
            return frozenset(links), "sees " + " ".join(views)
        case "bridge":
            if n < 3:
                raise NemesisError("bridge needs at least three nodes")
            middle = order[0]
            rest = order[1:]
            a, b = rest[: len(rest) // 2], rest[len(rest) // 2 :]
            return frozenset(_all_links(a, b)), f"{','.join(sorted(a))} | {middle} | " + ",".join(
                sorted(b)
            )
        case "one-way":
            src = order[0]
            links = {(src, other) for other in order[1:]}
            return frozenset(links), f"{src} -/-> {','.join(sorted(order[1:]))}"
    raise NemesisError(f"{kind!r} is not a partition")


def schedule(
    rng: random.Random,
    nodes: Sequence[str],
    kinds: Sequence[str],
    duration_ms: int,
    *,
    gap_ms: tuple[int, int] = (1000, 4000),
    fault_ms: tuple[int, int] = (2000, 8000),
    clock_max_ms: int = 5000,
) -> list[Fault]:
    """Faults of the given kinds, one at a time, with a quiet gap before each."""
    for kind in kinds:
        if kind not in FAULT_KINDS:
            raise NemesisError(f"unknown fault {kind!r}; choose from {', '.join(FAULT_KINDS)}")
    ordered = sorted(nodes)
    faults: list[Fault] = []
    time_ms = 0
    usable = [k for k in kinds if len(ordered) >= (3 if k == "bridge" else 2) or k in _SINGLE_OK]
    while usable:
        start = time_ms + rng.randint(*gap_ms)
        if start >= duration_ms:
            break
        end = min(start + rng.randint(*fault_ms), duration_ms)
        kind = rng.choice(usable)
        faults.append(_draw(kind, start, end, ordered, rng, clock_max_ms))
        time_ms = end
    return faults


_SINGLE_OK = frozenset({"kill", "pause", "clock-bump", "clock-strobe", "drop", "dup", "delay"})


def _draw(
    kind: str, start: int, end: int, nodes: list[str], rng: random.Random, clock_max_ms: int
) -> Fault:
    if kind in PARTITION_KINDS:
        links, shape = grudge(kind, nodes, rng)
        return Fault(kind, start, end, links=links, shape=shape)
    if kind in ("kill", "pause"):
        most = max(1, (len(nodes) - 1) // 2)  # a minority, so a majority keeps serving
        chosen = tuple(sorted(rng.sample(nodes, rng.randint(1, most))))
        return Fault(kind, start, end, nodes=chosen)
    if kind == "clock-bump":
        offset = rng.choice((-1, 1)) * rng.randint(100, clock_max_ms)
        return Fault(kind, start, end, nodes=(rng.choice(nodes),), offset_ms=offset)
    if kind == "clock-strobe":
        offset = rng.choice((-1, 1)) * rng.randint(100, clock_max_ms)
        period = rng.randint(*STROBE_PERIOD_MS)
        return Fault(
            kind, start, end, nodes=(rng.choice(nodes),), offset_ms=offset, period_ms=period
        )
    if kind in ("drop", "dup"):
        return Fault(kind, start, end, rate=round(rng.uniform(0.05, 0.3), 3))
    if kind == "delay":
        return Fault(kind, start, end, delay_ms=rng.randint(20, 300))
    raise NemesisError(f"unknown fault {kind!r}")


def steps(faults: Sequence[Fault], end_ms: int) -> list[Step]:
    """The executor's actions for ``faults``, in time order, ending with ``heal``."""
    out: list[Step] = []
    for fault in faults:
        label = fault.describe()
        if fault.kind in PARTITION_KINDS:
            out.append(Step(fault.start_ms, "cut", links=fault.links, label=label))
            out.append(Step(fault.end_ms, "heal_network", label=f"end {fault.kind}"))
        elif fault.kind in ("kill", "pause"):
            undo = "restart" if fault.kind == "kill" else "resume"
            for node in fault.nodes:
                out.append(Step(fault.start_ms, fault.kind, node=node, label=label))
                out.append(Step(fault.end_ms, undo, node=node, label=f"{undo} {node}"))
        elif fault.kind == "clock-bump":
            node = fault.nodes[0]
            out.append(Step(fault.start_ms, "clock", node=node, offset_ms=fault.offset_ms,
                            label=label))  # fmt: skip
            out.append(Step(fault.end_ms, "clock", node=node, label=f"clock {node} back"))
        elif fault.kind == "clock-strobe":
            node, far = fault.nodes[0], True
            at = fault.start_ms
            while at < fault.end_ms:
                offset = fault.offset_ms if far else 0
                out.append(Step(at, "clock", node=node, offset_ms=offset, label=label))
                far = not far
                at += fault.period_ms
            out.append(Step(fault.end_ms, "clock", node=node, label=f"clock {node} back"))
        elif fault.kind == "drop":
            out.append(Step(fault.start_ms, "links", rate=fault.rate, label=label))
            out.append(Step(fault.end_ms, "links", label="links healthy"))
        elif fault.kind == "dup":
            out.append(Step(fault.start_ms, "links", dup_rate=fault.rate, label=label))
            out.append(Step(fault.end_ms, "links", label="links healthy"))
        elif fault.kind == "delay":
            out.append(Step(fault.start_ms, "links", delay_ms=fault.delay_ms, label=label))
            out.append(Step(fault.end_ms, "links", label="links healthy"))
    out.append(Step(end_ms, "heal", label="heal everything"))
    order = sorted(range(len(out)), key=lambda i: (out[i].at_ms, i))
    return [out[i] for i in order]
