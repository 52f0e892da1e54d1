"""``ringkv verify`` against real processes: a fresh local cluster started
with ``--faults``, partitions through /v1/admin/faults, SIGKILL and SIGSTOP by
PID, then the checkers. Bounded: a few seconds of faults, then recovery."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_a_short_real_run_with_partitions_kills_and_pauses_is_valid(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "ringkv", "verify", "--nodes", "3", "--workload", "set",
         "--nemesis", "isolate,kill,pause", "--time", "12", "--seed", "2",
         "--recovery", "40", "--out", str(out)],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    summary = json.loads((out / "verdicts.json").read_text())
    assert summary["executor"] == "processes" and summary["valid"] is True
    checkers = {v["checker"]: v["valid"] for v in summary["verdicts"]}
    assert checkers == {"set-full": True, "convergence": True, "liveness": True}
    assert summary["faults"], "the nemesis injected nothing"
    assert summary["outcomes"]["add"]["ok"] > 100
    print(result.stdout[-3000:])
