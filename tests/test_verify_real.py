"""``ringkv verify`` against real processes: a fresh local cluster started
with ``--faults``, partitions through /v1/admin/faults, SIGKILL and SIGSTOP by
PID, then the checkers. Bounded: a few seconds of faults, then recovery.

REGRESSIONS are runs that once found a bug, replayed in CI with what they
found; the same arguments must now pass."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REGRESSIONS = [
    (
        "--nodes 3 --workload set --nemesis isolate,kill,pause --time 12 --seed 2",
        "a node back from SIGKILL acknowledged writes as a cluster of one (its ring "
        "was itself until it heard the others); a quorum read elsewhere missed them",
    ),
]


@pytest.mark.parametrize(("arguments", "found"), REGRESSIONS)
def test_regression_runs_on_real_processes_stay_valid(
    arguments: str, found: str, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "ringkv", "verify", *arguments.split(), "--recovery", "40",
         "--out", str(out)],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"{found}\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
    summary = json.loads((out / "verdicts.json").read_text())
    assert summary["executor"] == "processes" and summary["valid"] is True
    checkers = {v["checker"]: v["valid"] for v in summary["verdicts"]}
    assert checkers == {"set-full": True, "convergence": True, "liveness": True}
    assert summary["faults"], "the nemesis injected nothing"
    assert summary["outcomes"]["add"]["ok"] > 100
