"""Judging a finished run: the checkers for its workload, and its artifacts.

Every run gets the checkers that fit its workload (``register``:
linearizability; ``set``: set-full; ``siblings``: the causal siblings
checker), plus ``convergence`` (every home replica of every key touched
holds the same versions after heal) and ``liveness`` (the cluster served
every final read from every node within the recovery bound). An unknown
verdict counts as a failure. ``write_artifacts`` keeps the history as JSONL,
the verdicts as JSON, the faults, and an HTML timeline of the first key that
is not linearizable.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

from ringkv.check.convergence import check_convergence
from ringkv.check.counter import check_counter
from ringkv.check.history import OK, operations, write_jsonl
from ringkv.check.linearizability import LinearizabilityResult, check_register
from ringkv.check.report import Verdict
from ringkv.check.sets import check_set_full
from ringkv.check.siblings import check_siblings
from ringkv.check.timeline import write_timeline_html
from ringkv.verify.options import RunData

__all__ = ["Judgement", "judge", "write_artifacts"]


class Judgement:
    def __init__(
        self, verdicts: list[Verdict], linearizability: LinearizabilityResult | None
    ) -> None:
        self.verdicts = verdicts
        self.linearizability = linearizability

    @property
    def valid(self) -> bool:
        return all(v.passed for v in self.verdicts)


def judge(data: RunData) -> Judgement:
    options = data.options
    verdicts: list[Verdict] = []
    lin: LinearizabilityResult | None = None
    if options.workload == "register":
        lin = check_register(data.events, deadline_s=options.checker_budget_s)
        failures = lin.failures
        summary = f"{len(lin.keys)} keys, {lin.states_explored} states explored: {lin.verdict}" + (
            f"; first failing key {failures[0].key!r}" if failures else ""
        )
        verdicts.append(
            Verdict(
                checker="linearizability",
                valid=lin.valid,
                summary=summary,
                details={"explain": failures[0].explain() if failures else ""},
            )
        )
    elif options.workload == "set":
        stale_allowed = options.level != "linearizable"
        verdicts.append(check_set_full(data.events, stale_allowed=stale_allowed).verdict())
    elif options.workload == "siblings":
        verdicts.append(check_siblings(data.events).verdict())
    elif options.workload == "counter":
        lagging = options.level != "linearizable"
        verdicts.append(check_counter(data.events, lagging_allowed=lagging).verdict())
    if options.compares_replicas:
        convergence = check_convergence(
            data.replicas, data.homes, converged_after_ms=data.recovery_ms
        )
        verdicts.append(convergence.verdict())
    verdicts.append(_liveness(data))
    return Judgement(verdicts, lin)


def _liveness(data: RunData) -> Verdict:
    """Every final read (one per key per node) answered within the recovery bound."""
    final = [op for op in operations(data.events) if op.invoke.extra.get("final")]
    wanted = {(op.invoke.node, op.key) for op in final}
    answered = {(op.invoke.node, op.key) for op in final if op.type == OK}
    missing = sorted(wanted - answered)
    bound_ms = data.options.recovery_s * 1000
    in_time = data.recovery_ms <= bound_ms
    valid = bool(wanted) and not missing and in_time
    summary = (
        f"recovered {data.recovery_ms} ms after heal (bound {bound_ms:.0f} ms); "
        f"{len(answered)} of {len(wanted)} final reads answered"
    )
    return Verdict(
        checker="liveness",
        valid=valid,
        summary=summary,
        details={"unanswered": [f"{key} via {node}" for node, key in missing[:10]]},
    )


def outcome_counts(data: RunData) -> dict[str, dict[str, int]]:
    counts: Counter[tuple[str, str]] = Counter((op.f, op.type) for op in operations(data.events))
    table: dict[str, dict[str, int]] = {}
    for (f, kind), count in sorted(counts.items()):
        table.setdefault(f, {"ok": 0, "fail": 0, "info": 0})[kind] = count
    return table


def write_artifacts(data: RunData, judgement: Judgement, directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "history": directory / "history.jsonl",
        "verdicts": directory / "verdicts.json",
    }
    with open(paths["history"], "w", encoding="utf-8") as out:
        write_jsonl(data.events, out)
    summary = {
        "options": dataclasses.asdict(data.options),
        "executor": data.executor,
        "describe": data.options.describe(),
        "faults": [f.describe() for f in data.faults],
        "recovery_ms": data.recovery_ms,
        "outcomes": outcome_counts(data),
        "valid": judgement.valid,
        "verdicts": [v.to_json() for v in judgement.verdicts],
    }
    paths["verdicts"].write_text(json.dumps(summary, indent=2, default=str))
    lin = judgement.linearizability
    if lin is not None and lin.failures:
        paths["timeline"] = directory / "timeline.html"
        write_timeline_html(lin.failures[0], paths["timeline"])
    return paths
