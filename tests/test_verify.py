"""``ringkv verify`` in the simulator: the nemesis vocabulary, the executor,
the workloads, and the checkers biting on deliberately broken builds.

The real-process run is in test_verify_real.py."""

from __future__ import annotations

import json
import random
from itertools import combinations, pairwise
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ringkv.check.history import operations, read_jsonl
from ringkv.cli import app
from ringkv.sim.world import Simulation
from ringkv.verify.judge import judge
from ringkv.verify.nemesis import (
    FAULT_KINDS,
    PARTITION_KINDS,
    NemesisError,
    grudge,
    parse_kinds,
    schedule,
    steps,
)
from ringkv.verify.options import VerifyOptions
from ringkv.verify.simulated import run_simulated

NODES = ["n1", "n2", "n3", "n4", "n5"]
ALL_FAULTS = tuple(k for k in FAULT_KINDS)


def reachable(links: frozenset[tuple[str, str]], nodes: list[str]) -> dict[str, set[str]]:
    """Who each node can send to (itself included) under a grudge."""
    return {a: {b for b in nodes if (a, b) not in links} for a in nodes}


# -- the vocabulary -------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_partition_shapes_cut_what_their_names_say(seed: int) -> None:
    rng = random.Random(seed)
    majority = len(NODES) // 2 + 1
    links, _ = grudge("partition", NODES, rng)
    sides = {frozenset(v) for v in reachable(links, NODES).values()}
    assert len(sides) == 2 and sorted(len(s) for s in sides) == [2, 3]
    links, _ = grudge("isolate", NODES, rng)
    assert sorted(len(v) for v in reachable(links, NODES).values()) == [1, 4, 4, 4, 4]
    links, _ = grudge("majority", NODES, rng)
    sizes = sorted(len(v) for v in reachable(links, NODES).values())
    assert sizes[-1] >= majority and sizes[0] < majority
    links, _ = grudge("majorities-ring", NODES, rng)
    views = reachable(links, NODES)
    assert all(len(v) == majority for v in views.values())  # everyone sees a majority
    assert len({frozenset(v) for v in views.values()}) == len(NODES)  # no two the same
    assert all((b, a) in links for a, b in links)  # cut both ways
    links, _ = grudge("bridge", NODES, rng)
    views = reachable(links, NODES)
    bridges = [n for n, v in views.items() if len(v) == len(NODES)]
    assert len(bridges) == 1
    others = [n for n in NODES if n not in bridges]
    assert not all(b in views[a] for a, b in combinations(others, 2))
    links, _ = grudge("one-way", NODES, rng)
    (src,) = {a for a, _ in links}
    assert len(links) == len(NODES) - 1 and not any(b == src for _, b in links)


def test_schedules_are_a_function_of_the_seed_and_end_healed() -> None:
    one = schedule(random.Random(9), NODES, ALL_FAULTS, 60_000)
    two = schedule(random.Random(9), NODES, ALL_FAULTS, 60_000)
    assert one == two and len(one) > 5
    assert {f.kind for f in schedule(random.Random(1), NODES, ALL_FAULTS, 600_000)} == set(
        FAULT_KINDS
    )
    for earlier, later in pairwise(one):
        assert earlier.end_ms <= later.start_ms  # one fault at a time
    plan = steps(one, 60_000)
    assert plan[-1].action == "heal" and plan[-1].at_ms == 60_000
    assert [s.at_ms for s in plan] == sorted(s.at_ms for s in plan)
    kills = [f for f in one if f.kind in ("kill", "pause")]
    assert all(len(f.nodes) <= (len(NODES) - 1) // 2 for f in kills)  # a minority only


def test_fault_names_are_checked_and_dup_needs_the_simulator() -> None:
    assert parse_kinds("partition,kill", simulated=False) == ("partition", "kill")
    assert set(parse_kinds("all", simulated=True)) == set(FAULT_KINDS)
    assert "dup" not in parse_kinds("all", simulated=False)
    assert parse_kinds("partitions", simulated=False) == PARTITION_KINDS
    with pytest.raises(NemesisError, match="unknown fault 'partiton'"):
        parse_kinds("partiton", simulated=True)
    with pytest.raises(NemesisError, match="TCP never duplicates"):
        parse_kinds("dup", simulated=False)


def test_a_paused_simulated_node_holds_its_messages_until_it_resumes() -> None:
    sim = Simulation(1, ["n1", "n2", "n3"])
    sim.run_for(500)
    sim.pause("n2")
    client = sim.client("n2")
    op = client.put("k", "v")
    sim.run_for(3000)
    assert not op.done  # the node is stopped: no answer, no timeout yet
    sim.resume("n2")
    sim.complete(op)
    assert op.outcome == "ok"


# -- runs --------------------------------------------------------------------------


def options(**changes: object) -> VerifyOptions:
    base = {"seed": 1, "time_s": 12.0, "faults": ALL_FAULTS, "recovery_s": 30.0}
    base.update(changes)
    return VerifyOptions(**base)  # type: ignore[arg-type]


def test_the_same_seed_gives_the_same_history() -> None:
    one = run_simulated(options(workload="set", seed=5, time_s=6.0))
    two = run_simulated(options(workload="set", seed=5, time_s=6.0))
    assert one.events == two.events and one.faults == two.faults


# The CI sweep: every nemesis at once, (workload, mode, level, seed). Runs
# that found a bug are kept, with what they found, in test_verify_real.py's
# REGRESSIONS (real processes) or as scenario files (tests/scenarios).
SWEEP = [
    *(("set", "lww", "quorum", seed) for seed in (1, 2, 3, 4)),
    *(("set", "causal", "quorum", seed) for seed in (5, 6)),
    *(("set", "lww", "all", seed) for seed in (7, 8)),
    *(("siblings", "causal", "quorum", seed) for seed in (1, 2, 3)),
    *(("register", "strong", "linearizable", seed) for seed in (1, 2, 3)),
    *(("counter", "strong", "linearizable", seed) for seed in (4, 5)),
]


@pytest.mark.parametrize(("workload", "mode", "level", "seed"), SWEEP)
def test_sweep_under_every_fault_keeps_the_contract(
    workload: str, mode: str, level: str, seed: int
) -> None:
    data = run_simulated(options(workload=workload, mode=mode, level=level, seed=seed))
    judgement = judge(data)
    assert judgement.valid, [v.to_json() for v in judgement.verdicts]
    assert any(op.type == "ok" for op in operations(data.events))


def test_the_checker_finds_quorum_reads_and_writes_not_linearizable() -> None:
    """Dynamo-style quorums (sloppy, with read repair) are not linearizable:
    the register checker must find a violation under partitions."""
    data = run_simulated(options(workload="register", seed=3, faults=("partition", "kill")))
    judgement = judge(data)
    lin = judgement.verdicts[0]
    assert lin.checker == "linearizability" and lin.valid is False
    assert judgement.linearizability is not None
    failing = judgement.linearizability.failures[0]
    assert failing.unplaced and len(failing.linearization) < len(failing.operations)


def test_replicas_that_ack_without_storing_go_red() -> None:
    data = run_simulated(
        options(workload="set", seed=2, faults=("kill",), broken_ack_without_storing=True)
    )
    verdicts = {v.checker: v for v in judge(data).verdicts}
    assert verdicts["set-full"].valid is False or verdicts["convergence"].valid is False


def test_level_one_with_crashes_under_fsync_never_loses_writes() -> None:
    found = []
    for seed in range(1, 6):
        data = run_simulated(
            options(workload="set", seed=seed, level="one", fsync="never", faults=("kill",))
        )
        set_full = judge(data).verdicts[0]
        if set_full.valid is False:
            found.append((seed, set_full.summary))
            break
    assert found, "level one with power loss under fsync never should lose an add"


def test_verify_command_in_the_simulator_writes_history_and_verdicts(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["verify", "--simulate", "--workload", "set", "--nemesis", "partition,kill",
         "--time", "5", "--seed", "3", "--out", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "set-full" in result.output and "valid" in result.output
    events = read_jsonl(tmp_path / "history.jsonl")
    assert events and {e.type for e in events} >= {"invoke", "ok"}
    summary = json.loads((tmp_path / "verdicts.json").read_text())
    assert summary["valid"] is True and summary["options"]["seed"] == 3


def test_verify_command_exits_1_on_a_violation(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["verify", "--simulate", "--workload", "register", "--nemesis", "partition,kill",
         "--time", "12", "--seed", "3", "--out", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "not linearizable" in result.output
    assert (tmp_path / "timeline.html").read_text().startswith("<!DOCTYPE html>")


def test_verify_command_refuses_bad_arguments() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["verify", "--simulate", "--nemesis", "meteor"])
    assert result.exit_code == 2 and "unknown fault" in result.output
    result = runner.invoke(app, ["verify", "--nemesis", "dup"])
    assert result.exit_code == 2 and "--simulate" in result.output
    result = runner.invoke(app, ["verify", "--simulate", "--workload", "siblings", "--mode", "lww"])
    assert result.exit_code == 2 and "causal" in result.output
