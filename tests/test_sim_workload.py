"""Workloads and fault schedules: drawn from the seed, well formed."""

from __future__ import annotations

import random

import pytest

from ringkv.core.config import KeyspaceSpec
from ringkv.core.record import ConflictMode
from ringkv.sim.checks import LostWrite, divergent_keys, is_quorum_write, lost_writes
from ringkv.sim.history import Op
from ringkv.sim.workload import FAULT_KINDS, Workload, WorkloadConfig, fault_schedule
from ringkv.sim.world import Simulation

NODES = ["n1", "n2", "n3", "n4", "n5"]


def test_same_seed_same_schedule() -> None:
    def schedule(seed: int) -> list[str]:
        steps = fault_schedule(random.Random(seed), NODES, FAULT_KINDS, 60_000)
        return [f"{s.at_ms} {s.describe()}" for s in steps]

    assert schedule(1) == schedule(1)
    assert schedule(1) != schedule(2)


def test_every_fault_ends_and_a_minority_at_most_is_down() -> None:
    for seed in range(30):
        steps = fault_schedule(random.Random(seed), NODES, FAULT_KINDS, 60_000)
        assert steps == sorted(steps, key=lambda s: s.at_ms)
        assert all(0 < s.at_ms <= 60_000 for s in steps)
        down: set[str] = set()
        cuts: set[tuple[str, str]] = set()
        for step in steps:
            if step.action == "crash":
                assert step.node not in down
                down.add(step.node)
                assert len(down) <= 2
            elif step.action == "restart":
                down.remove(step.node)
            elif step.action == "cut":
                cuts.add((step.node, step.peer))
            elif step.action == "uncut":
                cuts.discard((step.node, step.peer))
            elif step.action == "partition":
                assert sorted(n for g in step.groups for n in g) == NODES
                assert all(step.groups)
        assert not down and not cuts


def test_schedule_draws_only_the_kinds_asked() -> None:
    steps = fault_schedule(random.Random(3), NODES, ["crash"], 60_000)
    assert steps and {s.action for s in steps} == {"crash", "restart"}
    assert fault_schedule(random.Random(3), NODES, [], 60_000) == []
    with pytest.raises(ValueError, match="unknown fault 'flood'"):
        fault_schedule(random.Random(3), NODES, ["flood"], 60_000)


def test_workload_processes_are_single_threaded_with_unique_values() -> None:
    spec = KeyspaceSpec(name="wl", mode=ConflictMode.CAUSAL)
    sim = Simulation(5, NODES, keyspaces=[spec])
    workload = Workload(sim, WorkloadConfig(keyspace="wl", process_count=6), sim.workload_rng)
    workload.start(stop_ms=3000)
    sim.run_until(3000)
    sim.run_for(15_000)
    assert sim.in_flight_ops() == 0
    puts = [op.value for op in sim.ops if op.f == "put"]
    assert len(puts) > 50 and len(set(puts)) == len(puts)
    assert all(op.invoke_ms < 3000 for op in sim.ops)
    open_ops: dict[int, str] = {}
    for event in sim.history:
        if event.type == "invoke":
            assert event.process not in open_ops, "a process has one operation at a time"
            open_ops[event.process] = event.f
        else:
            del open_ops[event.process]
    deletes = [op for op in sim.ops if op.f == "delete"]
    assert deletes and all(op.context is not None for op in deletes)
    with_context = [op for op in sim.ops if op.f == "put" and op.context is not None]
    assert with_context and all(op.saw or op.context == {} for op in with_context)


def _put(op_id: int, key: bytes, value: bytes, outcome: str = "ok", **kw: object) -> Op:
    op = Op(op_id, 1, "n1", "put", "ks", key, value, 0, outcome=outcome, complete_ms=5)
    for name, v in kw.items():
        setattr(op, name, v)
    return op


def test_lost_writes_checker() -> None:
    ops = [
        _put(1, b"a", b"x"),
        _put(2, b"a", b"y"),
        _put(3, b"a", b"z", saw=(b"y",)),  # supersedes y
        _put(4, b"b", b"u"),
        _put(5, b"b", b"w", outcome="fail", saw=(b"u",)),  # failed: supersedes nothing
        _put(6, b"b", b"v", level="one"),  # not a quorum write: not judged
        _put(7, b"c", b"t"),  # no final read of c: not judged
        _put(8, b"a", b"q", outcome="info", saw=(b"x",)),  # may have superseded x
    ]
    final = {b"a": (b"z",), b"b": ()}
    assert lost_writes(ops, final, n=3) == [LostWrite(b"b", b"u", 4, 1, "n1", 5)]
    assert is_quorum_write(_put(9, b"a", b"x", acks=2), 3)
    assert not is_quorum_write(_put(9, b"a", b"x", acks=1), 3)


def test_divergent_keys_checker() -> None:
    sim = Simulation(1, ["n1", "n2"], keyspaces=[KeyspaceSpec(name="ks", n_replicas=2)])
    sim.complete(sim.client("n1").put("a", "x"))
    sim.run_for(100)
    stored = {b"a": {n: sim.stored_versions(n, "ks", b"a") for n in sim.node_ids}}
    assert divergent_keys(stored) == []
    stored[b"a"]["n2"] = []
    assert [key for key, _ in divergent_keys(stored)] == [b"a"]
