"""``ringkv sim``: run one seeded simulation and print a readable summary."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from ringkv.sim.run import RunOptions, RunReport, outcome_counts, replay_command, run
from ringkv.sim.workload import FAULT_KINDS

__all__ = ["main", "parse_faults", "print_report"]

# Node counters shown in the summary (``node.stats``, read with a default of 0).
SHOWN_STATS = (
    ("hints written", "hints_written"),
    ("hints delivered", "hints_delivered"),
    ("hints refused", "hints_refused"),
    ("read repairs", "read_repairs"),
    ("request timeouts", "timeouts"),
    ("writes forwarded", "writes_forwarded"),
)


def parse_faults(text: str) -> tuple[str, ...]:
    """``partition,crash`` -> ("partition", "crash"); ``all`` for every kind."""
    if text.strip() in ("", "none"):
        return ()
    if text.strip() == "all":
        return FAULT_KINDS
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    for kind in kinds:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; choose from {', '.join(FAULT_KINDS)}, all")
    return kinds


def main(options: RunOptions, console: Console | None = None) -> int:
    """Run, print the summary; 0 when every check passed, 1 otherwise."""
    console = console or Console()
    console.print(f"[bold]ringkv sim[/] seed [bold cyan]{options.seed}[/]")
    report = run(options)
    print_report(report, console)
    return 0 if report.ok else 1


def print_report(report: RunReport, console: Console) -> None:
    sim = report.sim
    options = report.options
    console.print(
        f"{options.nodes} nodes, {options.mode} keyspace (N={options.n_replicas}), "
        f"fsync {options.fsync}, {options.time_s:g} s of faults "
        f"({', '.join(options.faults) or 'none'}; {len(report.schedule)} steps), "
        f"recovery {report.recovery_ms / 1000:g} s, "
        f"simulated in {report.wall_s:.1f} s",
        soft_wrap=True,
    )
    console.print(_ops_table(report))
    console.print(_messages_table(report))
    stats = sim.total_stats()
    reads = [op for op in sim.ops if op.f == "get" and op.outcome == "ok"]
    with_siblings = [op for op in reads if len(op.read_values) > 1]
    most = max((len(op.read_values) for op in reads), default=0)
    lines = [f"{label}: {stats.get(name, 0)}" for label, name in SHOWN_STATS]
    lines.append(f"crashes: {sim.crash_count()}")
    lines.append(f"reads with siblings: {len(with_siblings)} of {len(reads)} (most: {most})")
    console.print("  ".join(lines), soft_wrap=True)
    _print_checks(report, console)
    console.print(f"trace digest {sim.trace_digest()} ({sim.trace_line_count} lines)")
    console.print(
        f"seed {options.seed}; replay: [bold]{replay_command(options)}[/]", soft_wrap=True
    )


def _ops_table(report: RunReport) -> Table:
    table = Table(title="operations by outcome", title_justify="left")
    for column in ("op", "ok", "fail", "info"):
        table.add_column(column, justify="right" if column != "op" else "left")
    for f, row in outcome_counts(report.sim.ops).items():
        table.add_row(f, str(row.get("ok", 0)), str(row.get("fail", 0)), str(row.get("info", 0)))
    return table


def _messages_table(report: RunReport) -> Table:
    table = Table(title="messages by type", title_justify="left")
    for column in ("type", "sent", "dropped", "duplicated", "delivered"):
        table.add_column(column, justify="right" if column != "type" else "left")
    for kind, counts in report.sim.network.counters().items():
        table.add_row(
            kind,
            str(counts["sent"]),
            str(counts["dropped"]),
            str(counts["duplicated"]),
            str(counts["delivered"]),
        )
    return table


def _print_checks(report: RunReport, console: Console) -> None:
    if report.options.mode == "causal":
        verdict = "[green]pass[/]" if not report.lost else f"[red]{len(report.lost)} lost[/]"
    else:
        verdict = "skipped (lww drops one of two concurrent writes by design)"
    console.print(f"check no acknowledged write lost: {verdict}")
    back = (
        "[green]pass[/]"
        if not report.resurrected
        else f"[red]{len(report.resurrected)} read again[/]"
    )
    console.print(f"check superseded values stay gone: {back}")
    converged = "[green]pass[/]" if not report.divergent else "[red]fail[/]"
    console.print(f"check home replicas converged: {converged}")
    hints = "[green]pass[/]" if not report.hints_left else f"[red]{report.hints_left} left[/]"
    console.print(f"check hints delivered after heal: {hints}")
    for line in _limited(report.failures()):
        console.print(f"  [red]{line}[/]")


def _limited(lines: Sequence[str], most: int = 20) -> list[str]:
    if len(lines) <= most:
        return list(lines)
    return [*lines[:most], f"... and {len(lines) - most} more"]
