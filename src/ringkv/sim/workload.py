"""Random workloads and fault schedules, drawn from the simulation's seed.

Theory of operation. A workload is Jepsen's: a fixed set of single-threaded
client processes, each bound to one node, each issuing its next operation a
random think time after the previous one completed (a closed loop, so a slow
cluster sees less load, as with real clients). Operations are puts, gets and
deletes over a small key space, so keys collide and concurrent writes happen;
every put writes a value never written before, so a value names its write.
A process that read a key may write it with the context of that read, which
supersedes exactly the siblings the read returned (``Op.saw`` records them
for the checker); deletes always carry a context, as a blind delete in a
causal keyspace supersedes nothing.

A fault schedule is a list of ``FaultStep`` (time, action) drawn from its own
generator before the run starts: each fault has a start and an end
(partition / heal, one-way cut / uncut, crash / restart, loss or duplication
rate up / back, clock offset / back). At most a minority of nodes is down at
a time. ``install`` puts the steps on the simulation's event queue.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ringkv.sim.history import OK, Op
from ringkv.sim.world import Client, Simulation

__all__ = [
    "FAULT_KINDS",
    "FaultStep",
    "Workload",
    "WorkloadConfig",
    "fault_schedule",
    "install",
]

FAULT_KINDS = ("partition", "cut", "crash", "drop", "dup", "skew")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadConfig:
    keyspace: str
    key_count: int = 8
    process_count: int = 10
    think_ms_max: int = 50
    put_weight: int = 5
    get_weight: int = 4
    delete_weight: int = 1
    context_rate: float = 0.8  # a write uses the process's last read of the key this often
    level: str = ""  # "" for the keyspace's default
    refused_backoff_ms: int = 1000  # wait after "connection refused" before the next try

    def keys(self) -> list[bytes]:
        return [b"k%d" % i for i in range(self.key_count)]


class Workload:
    """Drives ``process_count`` clients until ``stop_ms``."""

    def __init__(self, sim: Simulation, config: WorkloadConfig, rng: random.Random) -> None:
        self.sim = sim
        self.config = config
        self.rng = rng
        self.stop_ms = 0
        self._clients: list[Client] = []
        self._client_of_op: dict[int, int] = {}
        self._last_read: dict[tuple[int, bytes], Op] = {}  # (client index, key) -> get
        self._values = 0
        sim.on_complete.append(self._on_complete)

    def start(self, stop_ms: int) -> None:
        """Start every process now; none invokes anything at or after ``stop_ms``."""
        self.stop_ms = stop_ms
        nodes = self.sim.node_ids
        for index in range(self.config.process_count):
            client = self.sim.client(nodes[index % len(nodes)])
            client.keyspace = self.config.keyspace
            self._clients.append(client)
            self._schedule(index)

    def _schedule(self, index: int, backoff_ms: int = 0) -> None:
        at = self.sim.now + backoff_ms + self.rng.randint(0, self.config.think_ms_max)
        if at < self.stop_ms:
            self.sim.schedule(at, f"workload p{index}", lambda: self._next(index))

    def _on_complete(self, op: Op) -> None:
        index = self._client_of_op.pop(op.op_id, None)
        if index is None:
            return
        if op.f == "get" and op.outcome == OK:
            self._last_read[(index, op.key)] = op
        self._schedule(index)

    def _next(self, index: int) -> None:
        config = self.config
        client = self._clients[index]
        key = self.rng.choice(config.keys())
        weights = [config.put_weight, config.get_weight, config.delete_weight]
        f = self.rng.choices(["put", "get", "delete"], weights)[0]
        read = self._last_read.get((index, key))
        use_context = read is not None and self.rng.random() < config.context_rate
        if f == "delete" and not use_context:
            f = "get"
        if f == "get":
            op = client.get(key, level=config.level)
        else:
            context: dict[str, int] | None = None
            saw: tuple[bytes, ...] = ()
            if use_context and read is not None:
                context, saw = dict(read.read_context or {}), read.read_values
                del self._last_read[(index, key)]  # one write per read
            if f == "put":
                self._values += 1
                value = b"%s-%d" % (key, self._values)
                op = client.put(key, value, level=config.level, context=context, saw=saw)
            else:
                op = client.delete(key, level=config.level, context=context, saw=saw)
        if not op.done:
            self._client_of_op[op.op_id] = index
        else:  # refused at once (the node is down): back off, like a reconnecting client
            self._schedule(index, self.config.refused_backoff_ms)


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultStep:
    at_ms: int
    action: str  # partition heal cut uncut crash restart drop dup clock
    groups: tuple[tuple[str, ...], ...] = ()
    node: str = ""
    peer: str = ""
    rate: float = 0.0
    offset_ms: int = 0
    lose_unsynced: bool = True
    before_flush: bool = False  # crash in the node's next turn, between send and flush

    def describe(self) -> str:
        match self.action:
            case "partition":
                return "partition " + " | ".join(",".join(g) for g in self.groups)
            case "cut" | "uncut":
                return f"{self.action} {self.node} -> {self.peer}"
            case "crash":
                text = f"crash {self.node}" + ("" if self.lose_unsynced else " keep-unsynced")
                return text + (" before-flush" if self.before_flush else "")
            case "restart":
                return f"restart {self.node}"
            case "drop" | "dup":
                return f"{self.action} {self.rate}"
            case "clock":
                return f"clock {self.node} {self.offset_ms:+d}"
        return self.action


def fault_schedule(
    rng: random.Random,
    node_ids: Sequence[str],
    kinds: Sequence[str],
    duration_ms: int,
    *,
    gap_ms: int = 3000,
    fault_ms: tuple[int, int] = (500, 6000),
    base_drop_rate: float = 0.0,
    base_duplicate_rate: float = 0.0,
    power_loss_rate: float = 0.5,
    before_flush_rate: float = 0.3,
) -> list[FaultStep]:
    """Faults of the given kinds, one starting about every ``gap_ms``."""
    for kind in kinds:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; choose from {', '.join(FAULT_KINDS)}")
    nodes = sorted(node_ids)
    steps: list[FaultStep] = []
    down_until: dict[str, int] = {}
    time_ms = 0
    while kinds:
        time_ms += rng.randint(gap_ms // 2, gap_ms * 3 // 2)
        if time_ms >= duration_ms:
            break
        end = min(time_ms + rng.randint(*fault_ms), duration_ms)
        kind = rng.choice(list(kinds))
        if kind == "partition" and len(nodes) > 1:
            shuffled = rng.sample(nodes, len(nodes))
            cut_at = rng.randint(1, len(nodes) - 1)
            groups = (tuple(sorted(shuffled[:cut_at])), tuple(sorted(shuffled[cut_at:])))
            steps.append(FaultStep(at_ms=time_ms, action="partition", groups=groups))
            steps.append(FaultStep(at_ms=end, action="heal"))
        elif kind == "cut" and len(nodes) > 1:
            src, dst = rng.sample(nodes, 2)
            steps.append(FaultStep(at_ms=time_ms, action="cut", node=src, peer=dst))
            steps.append(FaultStep(at_ms=end, action="uncut", node=src, peer=dst))
        elif kind == "crash":
            up = [n for n in nodes if down_until.get(n, 0) < time_ms]
            down = len(nodes) - len(up)
            if up and (down < (len(nodes) - 1) // 2 or len(nodes) == 1):
                node = rng.choice(up)
                lose = rng.random() < power_loss_rate
                before_flush = rng.random() < before_flush_rate
                down_until[node] = end
                crash = FaultStep(
                    at_ms=time_ms,
                    action="crash",
                    node=node,
                    lose_unsynced=lose,
                    before_flush=before_flush,
                )
                steps.append(crash)
                steps.append(FaultStep(at_ms=end, action="restart", node=node))
        elif kind in ("drop", "dup"):
            rate = round(rng.uniform(0.05, 0.3), 3)
            base = base_drop_rate if kind == "drop" else base_duplicate_rate
            steps.append(FaultStep(at_ms=time_ms, action=kind, rate=rate))
            steps.append(FaultStep(at_ms=end, action=kind, rate=base))
        elif kind == "skew":
            node = rng.choice(nodes)
            offset = rng.randint(-3000, 3000)
            steps.append(FaultStep(at_ms=time_ms, action="clock", node=node, offset_ms=offset))
            steps.append(FaultStep(at_ms=end, action="clock", node=node, offset_ms=0))
    order = sorted(range(len(steps)), key=lambda i: (steps[i].at_ms, i))
    return [steps[i] for i in order]


def install(sim: Simulation, steps: Sequence[FaultStep]) -> None:
    """Put the steps on the simulation's event queue."""
    for step in steps:
        sim.schedule(step.at_ms, step.describe(), _applier(sim, step))


def _applier(sim: Simulation, step: FaultStep) -> Callable[[], None]:
    return lambda: apply(sim, step)


def apply(sim: Simulation, step: FaultStep) -> None:
    match step.action:
        case "partition":
            sim.partition(step.groups)
        case "heal":
            sim.heal()
        case "cut":
            sim.cut(step.node, step.peer)
        case "uncut":
            sim.uncut(step.node, step.peer)
        case "crash" if step.before_flush:
            sim.crash_before_flush(step.node, lose_unsynced=step.lose_unsynced)
        case "crash":
            sim.crash(step.node, lose_unsynced=step.lose_unsynced)
        case "restart":
            sim.restart(step.node)
        case "drop":
            sim.set_rates(drop_rate=step.rate)
        case "dup":
            sim.set_rates(duplicate_rate=step.rate)
        case "clock":
            sim.set_clock_offset(step.node, step.offset_ms)
        case _:
            raise ValueError(f"unknown fault action {step.action!r}")
