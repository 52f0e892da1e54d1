"""``ringkv verify``: run a workload under faults and check the history.

Against a fresh local cluster of real processes (the default), an existing
one (``--cluster D``, started with ``ringkv cluster up --faults``), or the
simulator (``--simulate``). Prints a verdict table per checker, keeps the
history, verdicts and HTML report in ``--out``, and exits 1 on any violation
(an unknown verdict counts as one).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ringkv.check.report import render_table
from ringkv.core.config import Level
from ringkv.verify.judge import judge, outcome_counts, write_artifacts
from ringkv.verify.nemesis import NemesisError, parse_kinds
from ringkv.verify.options import RunData, VerifyOptions
from ringkv.verify.workloads import WORKLOADS

__all__ = ["verify"]

console = Console()


def verify(
    nodes: Annotated[int, typer.Option("--nodes", min=1, max=15, help="Cluster size.")] = 5,
    workload: Annotated[
        str, typer.Option("--workload", help=f"One of {', '.join(WORKLOADS)}.")
    ] = "register",
    nemesis: Annotated[
        str,
        typer.Option(
            "--nemesis",
            help="Faults, comma-separated: partition, isolate, majority, majorities-ring, "
            "bridge, one-way, kill, pause, clock-bump, clock-strobe, drop, dup (simulator "
            "only), delay; or a group: all, partitions, processes, clocks, links, none.",
        ),
    ] = "partition,kill",
    time_s: Annotated[float, typer.Option("--time", help="Seconds of fault phase.")] = 30.0,
    seed: Annotated[int, typer.Option("--seed", help="Draws the faults and the workload.")] = 0,
    mode: Annotated[str, typer.Option("--mode", help="Keyspace mode: lww or causal.")] = "",
    consistency: Annotated[
        str, typer.Option("--consistency", help="Level of every operation.")
    ] = "quorum",
    replicas: Annotated[int, typer.Option("--replicas", min=1, help="n_replicas.")] = 3,
    processes: Annotated[int, typer.Option("--processes", min=1, max=200)] = 10,
    recovery_s: Annotated[
        float, typer.Option("--recovery", help="Seconds the cluster has to heal (liveness).")
    ] = 30.0,
    simulate: Annotated[
        bool, typer.Option("--simulate", help="Run in the deterministic simulator.")
    ] = False,
    cluster: Annotated[
        str,
        typer.Option("--cluster", help="Use the running cluster in this directory."),
    ] = "",
    out: Annotated[str, typer.Option("--out", help="Where the history and report go.")] = "",
    fsync: Annotated[
        str, typer.Option("--fsync", help="Simulator only: always, batch or never.")
    ] = "always",
    budget_s: Annotated[
        float, typer.Option("--checker-budget", help="Seconds for the linearizability search.")
    ] = 60.0,
) -> None:
    """Run a workload under a nemesis; check the history; exit 1 on a violation."""
    if workload not in WORKLOADS:
        _die(f"unknown workload {workload!r}; choose from {', '.join(WORKLOADS)}")
    try:
        level = Level(consistency)
    except ValueError:
        _die(f"unknown level {consistency!r}; choose from {', '.join(lv.value for lv in Level)}")
    try:
        kinds = parse_kinds(nemesis, simulated=simulate)
    except NemesisError as exc:
        _die(str(exc))
    if fsync not in ("always", "batch", "never"):
        _die(f"--fsync must be always, batch or never, not {fsync!r}")
    if fsync != "always" and not simulate:
        _die("--fsync applies to the simulator; real nodes keep the fsync they were started with")
    chosen_mode = mode or {"siblings": "causal", "counter": "strong"}.get(workload, "lww")
    if chosen_mode not in ("lww", "causal", "strong"):
        _die(f"--mode must be lww, causal or strong, not {mode!r}")
    if chosen_mode == "strong" and workload not in ("register", "counter"):
        _die("a strong keyspace runs the register or counter workload")
    if workload == "siblings" and chosen_mode != "causal":
        _die("the siblings workload needs --mode causal")
    if workload == "counter" and chosen_mode != "strong":
        _die("the counter workload uses INCRBY, which needs a strong keyspace (--mode strong)")
    options = VerifyOptions(
        seed=seed,
        nodes=nodes,
        workload=workload,
        faults=kinds,
        time_s=time_s,
        mode=chosen_mode,
        level=level.value,
        n_replicas=replicas,
        processes=processes,
        recovery_s=recovery_s,
        checker_budget_s=budget_s,
        fsync=fsync,
    )
    console.print(f"[bold]verify[/] {options.describe()}")
    started = time.monotonic()
    data = _execute(options, simulate, cluster)
    console.print(_outcomes_table(data))
    with console.status("checking the history"):
        judgement = judge(data)
    out_dir = Path(out) if out else Path(tempfile.mkdtemp(prefix="ringkv-verify-"))
    paths = write_artifacts(data, judgement, out_dir)
    console.print(render_table(judgement.verdicts, title="verdicts"))
    if judgement.linearizability is not None and judgement.linearizability.failures:
        console.print(judgement.linearizability.failures[0].explain(), markup=False)
    for name, path in paths.items():
        console.print(f"{name}: {path}", markup=False)
    elapsed = time.monotonic() - started
    if judgement.valid:
        console.print(f"[green]valid[/] ({data.executor}, {elapsed:.1f} s)")
        return
    console.print(f"[red]violations found[/] ({data.executor}, {elapsed:.1f} s)")
    raise typer.Exit(1)


def _execute(options: VerifyOptions, simulate: bool, cluster: str) -> RunData:
    def progress(text: str) -> None:
        console.print(f"  {text}", markup=False)

    if simulate:
        from ringkv.verify.simulated import run_simulated

        return run_simulated(options, progress)
    from ringkv.cluster_cli import free_base_port
    from ringkv.verify.real import ClusterHandle, run_real, start_cluster

    if cluster:
        handle = ClusterHandle(Path(cluster), owned=False)
    else:
        directory = Path(tempfile.mkdtemp(prefix="ringkv-verify-cluster-"))
        base = free_base_port(options.nodes)
        with console.status(f"starting {options.nodes} nodes in {directory}"):
            handle = start_cluster(directory, options.nodes, base)
    try:
        return run_real(options, handle, progress)
    finally:
        handle.stop()


def _outcomes_table(data: RunData) -> Table:
    table = Table("operation", "ok", "fail", "info", title=f"history ({data.executor})")
    for f, counts in outcome_counts(data).items():
        table.add_row(f, str(counts["ok"]), str(counts["fail"]), str(counts["info"]))
    return table


def _die(message: str) -> None:
    console.print(f"[red]error:[/] {message}")
    raise typer.Exit(2)
