"""Whole simulated runs of the production nodes: seed sweeps, determinism,
regression seeds, deliberately broken builds, and ``ringkv sim``.

Every failure message carries the replay command of its run.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ringkv.cli import app
from ringkv.core.config import KeyspaceSpec, NodeConfig
from ringkv.core.record import ConflictMode
from ringkv.sim.checks import LostWrite, lost_writes
from ringkv.sim.run import RunOptions, RunReport, replay_command, run
from ringkv.sim.workload import FAULT_KINDS
from ringkv.sim.world import SimConfig, Simulation
from ringkv.storage.base import FsyncPolicy

SWEEP_SECONDS = 10.0


def _explain(report: RunReport) -> str:
    lines = report.failures()[:10]
    return "\n".join([f"replay: {replay_command(report.options)}", *lines])


@pytest.mark.parametrize(
    ("seed", "fsync"), [(s, "always") for s in range(14)] + [(s, "batch") for s in range(14, 18)]
)
def test_causal_sweep_loses_no_acknowledged_write(seed: int, fsync: str) -> None:
    options = RunOptions(
        seed=seed, time_s=SWEEP_SECONDS, faults=FAULT_KINDS, drop=0.02, dup=0.02, fsync=fsync
    )
    report = run(options)
    assert report.ok, _explain(report)
    assert sum(1 for op in report.sim.ops if op.outcome == "ok") > 200


@pytest.mark.parametrize("seed", range(4))
def test_lww_sweep_converges(seed: int) -> None:
    options = RunOptions(seed=seed, time_s=SWEEP_SECONDS, mode="lww", faults=FAULT_KINDS, dup=0.02)
    report = run(options)
    assert report.ok, _explain(report)


@pytest.mark.parametrize("seed", range(3))
def test_process_crashes_under_fsync_never_lose_nothing_acknowledged(seed: int) -> None:
    # A process crash keeps what was committed (the page cache survives).
    options = RunOptions(
        seed=seed, time_s=SWEEP_SECONDS, faults=("crash",), fsync="never", power_loss_rate=0.0
    )
    report = run(options)
    assert report.sim.crash_count() > 0
    assert report.ok, _explain(report)


def test_same_seed_same_run() -> None:
    options = RunOptions(seed=7, time_s=5, faults=FAULT_KINDS, drop=0.05, dup=0.05)
    first, second = run(options), run(options)
    assert first.sim.trace_digest() == second.sim.trace_digest()
    assert first.sim.trace_line_count == second.sim.trace_line_count > 1000
    assert [e.to_json() for e in first.sim.history] == [e.to_json() for e in second.sim.history]
    other = run(RunOptions(seed=8, time_s=5, faults=FAULT_KINDS, drop=0.05, dup=0.05))
    assert other.sim.trace_digest() != first.sim.trace_digest()


@pytest.mark.parametrize("seed", range(3))
def test_broken_build_that_acks_without_storing_is_caught(seed: int) -> None:
    options = RunOptions(
        seed=seed,
        time_s=5,
        faults=("partition",),
        node_config=NodeConfig(broken_ack_without_storing=True),
    )
    report = run(options)
    assert not report.ok, "the checkers must catch replicas that do not store"


def test_power_loss_of_every_replica_under_fsync_never_is_caught() -> None:
    # Nothing is synced for 30 s under --fsync never: when every replica of a
    # key loses power, an acknowledged write is gone, and the checker says so.
    spec = KeyspaceSpec(name="ks", mode=ConflictMode.CAUSAL)
    sim = Simulation(
        1, ["n1", "n2", "n3"], config=SimConfig(fsync=FsyncPolicy.NEVER), keyspaces=[spec]
    )
    put = sim.complete(sim.client("n1").put("a", "x"))
    assert put.outcome == "ok"
    for node in sim.node_ids:
        sim.crash(node, lose_unsynced=True)
        sim.restart(node)
    read = sim.complete(sim.client("n2").get("a", level="all"))
    assert read.outcome == "ok"
    assert lost_writes(sim.ops, {b"a": read.read_values}, n=3) == [
        LostWrite(b"a", b"x", put.op_id, put.process, "n1", put.complete_ms or 0)
    ]


# Seeds that found a bug. Add a new one with
# ``marks=pytest.mark.xfail(strict=True, reason=...)`` until it is fixed (a
# fix then fails as XPASS, and the mark goes); it stays here as a regression.
KNOWN_BUGS = [
    pytest.param(
        RunOptions(seed=2, time_s=20, faults=("crash",), drop=0.02, dup=0.02, fsync="batch"),
        id="dot-reuse-after-power-loss",  # tests/scenarios/power_loss_reuses_dot.txt
    ),
]


@pytest.mark.parametrize("options", KNOWN_BUGS)
def test_regression_seeds(options: RunOptions) -> None:
    report = run(options)
    assert report.ok, _explain(report)


def test_cli_sim_prints_a_summary_and_the_replay_command() -> None:
    result = CliRunner().invoke(
        app, ["sim", "--seed", "5", "--nodes", "3", "--time", "3", "--faults", "partition,crash"]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "seed 5" in out
    assert "replay: ringkv sim --seed 5 --nodes 3 --time 3 --keyspace-mode causal" in out
    assert "--faults partition,crash" in out
    for text in ("operations by outcome", "messages by type", "ReplicaWrite", "hints written"):
        assert text in out
    assert "check no acknowledged write lost: pass" in out


def test_a_failed_check_prints_its_failures_and_exits_non_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rich.console import Console

    from ringkv.sim import cli as sim_cli

    console = Console(record=True, width=200)
    broken = RunOptions(
        seed=1,
        time_s=3,
        faults=("partition",),
        node_config=NodeConfig(broken_ack_without_storing=True),
    )
    assert sim_cli.main(broken, console) == 1
    out = console.export_text()
    assert "check home replicas converged: fail" in out
    assert "divergent replicas of" in out
    assert "replay: ringkv sim --seed 1" in out

    monkeypatch.setattr(sim_cli, "main", lambda options: 1)
    result = CliRunner().invoke(app, ["sim", "--seed", "1", "--time", "1"])
    assert result.exit_code == 3


@pytest.mark.parametrize(
    "args",
    [
        ["--keyspace-mode", "strong"],
        ["--faults", "flood"],
        ["--fsync", "sometimes"],
        ["--drop", "2"],
    ],
)
def test_cli_sim_usage_errors(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["sim", "--seed", "1", "--time", "1", *args])
    assert result.exit_code == 2, result.output
