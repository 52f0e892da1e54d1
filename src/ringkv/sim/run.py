"""One random simulation run: workload and faults, then heal, recover and check.

This is what ``ringkv sim`` runs (and what the seed sweeps in the tests run):

1. **fault phase** (``time_s``): the workload's clients run while the fault
   schedule partitions, cuts, crashes, drops, duplicates and skews;
2. **recovery phase**: everything is healed (network, rates, clocks, crashed
   nodes restarted) and the cluster runs until no node holds a hint, at most
   ``recovery_s``;
3. **final reads**: every key is read at ``all`` (retried until it answers),
   which also repairs; then a short quiet period lets the repairs land;
4. **checks** (``checks.py``): no acknowledged write lost (causal keyspaces),
   and the home replicas of every key converged.

Everything is a function of ``RunOptions``; ``replay_command`` prints the
command line that repeats a run exactly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ringkv.core.config import KeyspaceSpec, NodeConfig
from ringkv.core.record import ConflictMode, Version
from ringkv.core.ring import key_token, preference_list
from ringkv.sim.checks import (
    LostWrite,
    Resurrected,
    divergent_keys,
    lost_writes,
    resurrected_values,
)
from ringkv.sim.history import OK, Op
from ringkv.sim.network import NetworkConfig
from ringkv.sim.workload import FaultStep, Workload, WorkloadConfig, fault_schedule, install
from ringkv.sim.world import SimConfig, Simulation
from ringkv.storage.base import FsyncPolicy

__all__ = ["RunOptions", "RunReport", "replay_command", "run"]

KEYSPACE = "sim"
FINAL_READ_ATTEMPTS = 10
QUIET_MS = 3000  # after the final reads, for read repairs to land


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    seed: int
    nodes: int = 5
    time_s: float = 60.0
    mode: str = "causal"
    drop: float = 0.0
    dup: float = 0.0
    faults: tuple[str, ...] = ()
    fsync: str = "always"
    n_replicas: int = 3
    keys: int = 8
    processes: int = 10
    level: str = ""  # the workload's level; "" for the keyspace's (quorum)
    power_loss_rate: float = 0.5  # of crashes; the others are process crashes
    recovery_s: float = 60.0
    keep_trace: bool = False
    node_config: NodeConfig | None = None  # node_id is set per node


@dataclass(slots=True)
class RunReport:
    options: RunOptions
    sim: Simulation
    schedule: list[FaultStep]
    final: dict[bytes, tuple[bytes, ...]] = field(default_factory=dict)
    unread_keys: list[bytes] = field(default_factory=list)
    lost: list[LostWrite] = field(default_factory=list)
    resurrected: list[Resurrected] = field(default_factory=list)
    divergent: list[tuple[bytes, dict[str, list[str]]]] = field(default_factory=list)
    hints_left: int = 0
    recovery_ms: int = 0
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not (
            self.lost or self.resurrected or self.divergent or self.unread_keys or self.hints_left
        )

    def failures(self) -> list[str]:
        lines = [f"lost write: {w.describe()}" for w in self.lost]
        lines += [f"resurrected: {r.describe()}" for r in self.resurrected]
        lines += [
            f"divergent replicas of {k.decode(errors='replace')}: {v}" for k, v in self.divergent
        ]
        lines += [
            f"final read at all never answered for {k.decode(errors='replace')}"
            for k in self.unread_keys
        ]
        if self.hints_left:
            lines.append(f"{self.hints_left} hints still pending after the recovery phase")
        return lines


def replay_command(options: RunOptions) -> str:
    parts = [
        "ringkv sim",
        f"--seed {options.seed}",
        f"--nodes {options.nodes}",
        f"--time {options.time_s:g}",
        f"--keyspace-mode {options.mode}",
    ]
    if options.drop:
        parts.append(f"--drop {options.drop:g}")
    if options.dup:
        parts.append(f"--dup {options.dup:g}")
    if options.faults:
        parts.append(f"--faults {','.join(options.faults)}")
    if options.fsync != "always":
        parts.append(f"--fsync {options.fsync}")
    return " ".join(parts)


def run(options: RunOptions) -> RunReport:
    started = time.perf_counter()
    sim = _build(options)
    duration_ms = int(options.time_s * 1000)
    schedule = fault_schedule(
        sim.fault_rng,
        sim.node_ids,
        options.faults,
        duration_ms,
        base_drop_rate=options.drop,
        base_duplicate_rate=options.dup,
        power_loss_rate=options.power_loss_rate,
    )
    install(sim, schedule)
    workload = Workload(
        sim,
        WorkloadConfig(
            keyspace=KEYSPACE,
            key_count=options.keys,
            process_count=options.processes,
            level=options.level,
        ),
        sim.workload_rng,
    )
    workload.start(stop_ms=duration_ms)
    sim.note("fault phase")
    sim.run_until(duration_ms)
    report = RunReport(options, sim, schedule)
    _recover(sim, report, int(options.recovery_s * 1000))
    keys = workload.config.keys()
    _final_reads(sim, report, keys)
    sim.run_for(QUIET_MS)
    _check(sim, report, keys, options)
    report.wall_s = time.perf_counter() - started
    return report


def _build(options: RunOptions) -> Simulation:
    network = NetworkConfig(drop_rate=options.drop, duplicate_rate=options.dup)
    config = SimConfig(
        network=network, fsync=FsyncPolicy(options.fsync), keep_trace=options.keep_trace
    )
    spec = KeyspaceSpec(
        name=KEYSPACE, mode=ConflictMode(options.mode), n_replicas=options.n_replicas
    )
    node_ids = [f"n{i}" for i in range(1, options.nodes + 1)]
    return Simulation(
        options.seed, node_ids, config=config, node_config=options.node_config, keyspaces=[spec]
    )


def _recover(sim: Simulation, report: RunReport, recovery_ms: int) -> None:
    """Heal every fault, then wait (bounded) until no hint is pending."""
    sim.note("recovery phase")
    start = sim.now
    sim.heal()
    sim.set_rates(drop_rate=0.0, duplicate_rate=0.0)
    for node in sim.node_ids:
        sim.set_clock_offset(node, 0)
        sim.restart(node)
    # Let the requests of the fault phase end before judging hints.
    sim.run_for(sim.node_config.request_timeout_ms)

    def drained() -> bool:
        return sum(sim.hints_pending(n) for n in sim.node_ids) == 0

    # Poll once per tick interval: checking after every event costs a scan per event.
    step = sim.node_config.tick_interval_ms
    while not drained() and sim.now - start < recovery_ms:
        sim.run_for(step)
    report.hints_left = sum(sim.hints_pending(n) for n in sim.node_ids)
    report.recovery_ms = sim.now - start


def _final_reads(sim: Simulation, report: RunReport, keys: Sequence[bytes]) -> None:
    sim.note("final reads")
    for index, key in enumerate(keys):
        node = sim.node_ids[index % len(sim.node_ids)]
        client = sim.client(node)
        client.keyspace = KEYSPACE
        for _ in range(FINAL_READ_ATTEMPTS):
            op = sim.complete(client.get(key, level="all"))
            if op.outcome == OK:
                report.final[key] = op.read_values
                break
            sim.run_for(500)
        else:
            report.unread_keys.append(key)


def _check(sim: Simulation, report: RunReport, keys: Sequence[bytes], options: RunOptions) -> None:
    n = min(options.n_replicas, options.nodes)
    if options.mode == ConflictMode.CAUSAL.value:
        report.lost = lost_writes(sim.ops, report.final, n)
    report.resurrected = resurrected_values(sim.ops, report.final, n)
    stored: dict[bytes, dict[str, list[Version]]] = {}
    for key in keys:
        homes = preference_list(sim.ring, key_token(key), n)
        stored[key] = {node: sim.stored_versions(node, KEYSPACE, key) for node in homes}
    report.divergent = divergent_keys(stored)


def outcome_counts(ops: Sequence[Op]) -> dict[str, dict[str, int]]:
    """Operation -> outcome -> count, for the summary."""
    counts: dict[str, dict[str, int]] = {}
    for op in ops:
        row = counts.setdefault(op.f, {"ok": 0, "fail": 0, "info": 0})
        row[op.outcome or "in flight"] = row.get(op.outcome or "in flight", 0) + 1
    return dict(sorted(counts.items()))
