"""``ringkv verify --simulate``: a verification run in the deterministic simulator.

The same workload, nemesis vocabulary and checkers as a run on real
processes (``verify/real.py``), executed on ``ringkv.sim``: production nodes
on a simulated network, disk and clocks. The nemesis acts on the simulated
network (cut links, loss, duplication, delay), disks (a kill is a crash that
loses unsynced writes), clocks (offsets) and scheduling (a paused node's
events wait). Everything is a function of the seed: the same options give
the same history, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ringkv.check.history import FAIL, INFO, OK, Event, Recorder
from ringkv.core import ops
from ringkv.core.config import KeyspaceSpec, Level, NodeConfig
from ringkv.core.errors import OpError
from ringkv.core.record import ConflictMode
from ringkv.core.requests import Cas, Mutate, Read, RegisterValue
from ringkv.core.ring import key_token, preference_list
from ringkv.sim.history import Op
from ringkv.sim.network import LinkFault
from ringkv.sim.world import SimConfig, Simulation
from ringkv.storage.base import FsyncPolicy
from ringkv.verify.nemesis import Step, schedule, steps
from ringkv.verify.options import KEYSPACE, RunData, VerifyOptions
from ringkv.verify.workloads import OpSpec, make_workload

__all__ = ["run_simulated"]

THINK_MS = (0, 30)  # pause between a process's operations
FINAL_READ_ATTEMPTS = 10


def run_simulated(options: VerifyOptions, progress: Callable[[str], None] | None = None) -> RunData:
    sim = Simulation(
        options.seed,
        [f"n{i}" for i in range(1, options.nodes + 1)],
        config=SimConfig(fsync=FsyncPolicy(options.fsync), keep_trace=False),
        node_config=NodeConfig(broken_ack_without_storing=options.broken_ack_without_storing),
        keyspaces=[
            KeyspaceSpec(
                name=KEYSPACE,
                mode=ConflictMode(options.mode),
                n_replicas=options.n_replicas,
            )
        ],
    )
    duration_ms = int(options.time_s * 1000)
    faults = schedule(sim.fault_rng, sim.node_ids, options.faults, duration_ms)
    for step in steps(faults, duration_ms):
        sim.schedule(step.at_ms, step.label or step.action, _applier(sim, step))
    recorder = Recorder(clock=lambda: sim.now * 1_000_000)
    workload = make_workload(options.workload, cas=options.strong)
    runner = _Runner(sim, recorder, options)
    rng = sim.workload_rng
    for client in range(options.processes):
        node = sim.node_ids[client % len(sim.node_ids)]
        runner.loop(client, node, lambda c: workload.next_op(c, rng), duration_ms)
    if progress:
        progress(f"fault phase: {len(faults)} faults in {options.time_s:g} s of simulated time")
    sim.run_until(duration_ms)
    # Recovery: the last step healed everything at duration_ms; let the
    # requests of the fault phase end, then wait for the hints to drain.
    sim.run_for(sim.node_config.request_timeout_ms)
    limit = int(options.recovery_s * 1000)
    while sum(sim.hints_pending(n) for n in sim.node_ids) and sim.now - duration_ms < limit:
        sim.run_for(sim.node_config.tick_interval_ms)
    recovery_ms = sim.now - duration_ms
    if progress:
        progress(f"recovered in {recovery_ms} ms; final reads from every node")
    # Let in-flight operations finish (their clients time out at the latest).
    sim.run_for(sim.config.client_timeout_ms + 1)
    client = options.processes
    for node in sim.node_ids:
        for spec in workload.final_reads():
            client += 1  # concurrent final reads: one client process each
            runner.final_read(client, node, spec)
    sim.run_for(3000)  # read repairs land
    n = min(options.n_replicas, options.nodes)
    replicas: dict[str, dict[str, list[Any] | None]] = {}
    homes: dict[str, tuple[str, ...]] = {}
    for key in sorted(runner.touched) if options.compares_replicas else []:
        raw = key.encode()
        homes[key] = preference_list(sim.ring, key_token(raw), n)
        replicas[key] = {
            node: list(sim.stored_versions(node, KEYSPACE, raw)) for node in homes[key]
        }
    return RunData(
        options=options,
        events=recorder.events,
        faults=faults,
        replicas=replicas,
        homes=homes,
        recovery_ms=recovery_ms,
        executor="simulator",
    )


class _Runner:
    """Client processes on the simulator, recording into ``recorder``."""

    def __init__(self, sim: Simulation, recorder: Recorder, options: VerifyOptions) -> None:
        self.sim = sim
        self.recorder = recorder
        self.options = options
        self.level = options.level
        self.touched: set[str] = set()
        self._hooks: dict[int, Callable[[Op], None]] = {}
        sim.on_complete.append(self._on_complete)

    def _on_complete(self, op: Op) -> None:
        hook = self._hooks.pop(op.op_id, None)
        if hook is not None:
            hook(op)

    def _call(self, node: str, start: Callable[[Any], Op], done: Callable[[Op], None]) -> None:
        client = self.sim.client(node)
        client.keyspace = KEYSPACE
        op = start(client)
        if op.done:
            done(op)
        else:
            self._hooks[op.op_id] = done

    def loop(self, client: int, node: str, next_op: Callable[[int], OpSpec], stop_ms: int) -> None:
        def issue() -> None:
            if self.sim.now >= stop_ms:
                return
            spec = next_op(client)
            self.perform(client, node, spec, lambda _event: think())

        def think() -> None:
            delay = self.sim.workload_rng.randint(*THINK_MS)
            self.sim.schedule(self.sim.now + delay, "", issue)

        self.sim.schedule(self.sim.workload_rng.randint(*THINK_MS), "", issue)

    def final_read(self, client: int, node: str, spec: OpSpec, attempt: int = 0) -> None:
        def done(event: Event) -> None:
            if event.type != OK and attempt + 1 < FINAL_READ_ATTEMPTS:
                self.sim.schedule(
                    self.sim.now + 500, "", lambda: self.final_read(client, node, spec, attempt + 1)
                )

        self.perform(client, node, spec, done, final=True)

    def perform(
        self,
        client: int,
        node: str,
        spec: OpSpec,
        then: Callable[[Event], None],
        *,
        final: bool = False,
    ) -> None:
        extra: dict[str, Any] = {"level": self.level}
        if final:
            extra["final"] = True
        invoke = self.recorder.invoke(client, spec.f, spec.key, spec.value, node=node, **extra)
        level = self.level

        def finish(kind: str, value: Any = None, error: str = "", **more: Any) -> None:
            then(self.recorder.complete(invoke, kind, value, error, **more))

        if spec.f in ("read", "write", "cas", "add") and self.options.workload != "set":
            self.touched.add(spec.key)
        if self.options.strong:
            self._strong(node, spec, finish)
        elif spec.f == "read" and spec.members:
            self._read_set(node, spec, finish)
        elif spec.f == "read":

            def read_done(op: Op) -> None:
                if op.outcome != OK:
                    finish(op.outcome, error=op.error)
                elif self.options.workload == "siblings":
                    finish(OK, sorted(v.decode() for v in op.read_values))
                else:
                    finish(OK, int(op.read_values[-1]) if op.read_values else None)

            self._call(node, lambda c: c.get(spec.key, level=level), read_done)
        elif spec.f == "add":
            (member,) = spec.members
            self.touched.add(member)
            self._call(
                node,
                lambda c: c.put(member, str(spec.value), level=level),
                lambda op: finish(op.outcome, error=op.error),
            )
        elif spec.f == "write" and self.options.workload == "siblings":
            self._read_then_write(node, spec, finish)
        elif spec.f == "write":
            self._call(
                node,
                lambda c: c.put(spec.key, str(spec.value), level=level),
                lambda op: finish(op.outcome, error=op.error),
            )
        else:
            raise ValueError(f"the simulator has no {spec.f!r} operation")

    def _strong(self, node: str, spec: OpSpec, finish: Callable[..., None]) -> None:
        """A register in a strong keyspace: requests straight to the node."""
        key = spec.key.encode()
        level = Level(self.level)
        request: object
        if spec.f == "read":
            request = Read(KEYSPACE, key, level)
        elif spec.f == "write":
            request = Mutate(KEYSPACE, key, ops.Put(str(spec.value).encode()))
        elif spec.f == "cas":
            expected, new = spec.value
            request = Cas(KEYSPACE, key, str(expected).encode(), str(new).encode())
        elif spec.f == "add":  # the counter workload: INCRBY
            request = Mutate(KEYSPACE, key, ops.IncrBy(spec.value))
        else:
            raise ValueError(f"no strong request for {spec.f!r}")

        def done(result: object) -> None:
            if isinstance(result, OpError):
                finish(FAIL if result.definite else INFO, error=f"{result.code}: {result.message}")
            elif isinstance(result, RegisterValue):
                finish(OK, int(result.value) if result.value is not None else None)
            else:
                finish(OK)

        self.sim.submit_request(node, request, done, label=f"{spec.f} {spec.key}")

    def _read_set(self, node: str, spec: OpSpec, finish: Callable[..., None]) -> None:
        parts: dict[str, Op] = {}
        left = len(spec.members)

        def part_done(op: Op) -> None:
            nonlocal left
            left -= 1
            if left:
                return
            outcomes = {p.outcome for p in parts.values()}
            if outcomes != {OK}:
                kind = INFO if INFO in outcomes else FAIL
                finish(kind, error="a member read failed")
                return
            found = sorted(int(p.read_values[-1]) for p in parts.values() if p.read_values)
            finish(OK, found)

        for member in spec.members:
            client = self.sim.client(node)
            client.keyspace = KEYSPACE
            op = client.get(member, level=self.level)
            parts[member] = op
            if op.done:
                part_done(op)
            else:
                self._hooks[op.op_id] = part_done

    def _read_then_write(self, node: str, spec: OpSpec, finish: Callable[..., None]) -> None:
        def read_done(read: Op) -> None:
            if read.outcome != OK:
                finish(FAIL, error=f"the read before the write: {read.error}")
                return
            saw = sorted(v.decode() for v in read.read_values)
            context = dict(read.read_context or {})

            def write_done(write: Op) -> None:
                finish(write.outcome, error=write.error, context=context, saw=saw)

            self._call(
                node,
                lambda c: c.put(
                    spec.key, str(spec.value), level=self.level, context=context,
                    saw=read.read_values,
                ),
                write_done,
            )  # fmt: skip

        self._call(node, lambda c: c.get(spec.key, level=self.level), read_done)


def _applier(sim: Simulation, step: Step) -> Callable[[], None]:
    return lambda: apply_step(sim, step)


def apply_step(sim: Simulation, step: Step) -> None:
    match step.action:
        case "cut":
            for src, dst in sorted(step.links):
                sim.cut(src, dst)
        case "heal_network":
            sim.heal()
        case "kill":
            sim.crash(step.node, lose_unsynced=True)
        case "restart":
            sim.restart(step.node)
        case "pause":
            sim.pause(step.node)
        case "resume":
            sim.resume(step.node)
        case "clock":
            sim.set_clock_offset(step.node, step.offset_ms)
        case "links":
            sim.set_rates(drop_rate=step.rate, duplicate_rate=step.dup_rate)
            fault = LinkFault(extra_delay_ms=step.delay_ms) if step.delay_ms else None
            for src in sim.node_ids:
                for dst in sim.node_ids:
                    if src != dst:
                        sim.network.set_link(src, dst, fault)
        case "heal":
            sim.heal()
            sim.set_rates(drop_rate=0.0, duplicate_rate=0.0)
            for node in sim.node_ids:
                sim.set_clock_offset(node, 0)
                sim.resume(node)
                sim.restart(node)
        case _:
            raise ValueError(f"unknown nemesis step {step.action!r}")


_ = Level  # levels are validated by the simulator's Client
