"""The benchmark harness keeps working: bench/single_node.py in its quickest mode.

This proves the plumbing (free ports, starting redis-server and ringkv serve,
redis-benchmark, the ratio table, JSON results, stopping every process); it
asserts nothing about speed, which depends on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "single_node.py"

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("redis-benchmark") is None,
    reason="needs Debian's redis-server and redis-tools (redis-benchmark)",
)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.timeout(90)
def test_single_node_quick_run_writes_results_with_ratios(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGKV_")}
    argv = [
        sys.executable, str(SCRIPT), "--quick", "--skip-memory", "-n", "2000",
        "--results-dir", str(tmp_path),
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out, _ = proc.communicate(timeout=80)
    assert proc.returncode == 0, out

    files = list(tmp_path.glob("*-single_node.json"))
    assert len(files) == 1, out
    result = json.loads(files[0].read_text())
    assert result["benchmark"] == "single_node"
    assert result["machine"]["nproc"] >= 1
    pids = [target["pid"] for target in result["targets"]]
    assert len(pids) == 5
    assert [pid for pid in pids if _running(pid)] == []  # every server it started is stopped

    rows = result["results"]
    targets = {row["target"] for row in rows}
    assert targets == {
        "redis",
        "redis-aof",
        "ringkv-memory",
        "ringkv-lmdb-always",
        "ringkv-lmdb-never",
    }
    assert {(row["test"], row["pipeline"]) for row in rows} == {
        ("set", 1), ("set", 16), ("get", 1), ("get", 16),
    }  # fmt: skip
    for row in rows:
        assert row["rps"] > 0
        assert isinstance(row["ratio_redis"], float) and row["ratio_redis"] > 0
        assert row["fsync"]
        if row["target"] == "redis":
            assert row["ratio_redis"] == pytest.approx(1.0)
        if row["target"] == "ringkv-lmdb-always":
            assert isinstance(row["ratio_redis_aof"], float) and row["ratio_redis_aof"] > 0
    assert "ringkv-memory" in out and "x redis" in out  # the table was printed
