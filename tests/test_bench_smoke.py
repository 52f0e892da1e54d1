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


# -- bench/etcd_compare.py: 3-node ringkv (strong keyspace) against 3-member etcd ------

ETCD_SCRIPT = ROOT / "bench" / "etcd_compare.py"
ETCD_BINARY = shutil.which("etcd") or "/usr/bin/etcd"


@pytest.mark.timeout(180)
def test_etcd_compare_quick_run_prints_an_etcd_row_and_stops_everything(tmp_path: Path) -> None:
    if not Path(ETCD_BINARY).exists():
        pytest.skip("needs Debian's etcd-server (/usr/bin/etcd)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RINGKV_", "ETCD"))}
    argv = [sys.executable, str(ETCD_SCRIPT), "--quick", "--results-dir", str(tmp_path)]
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        out, _ = proc.communicate(timeout=170)
    finally:
        if proc.poll() is None:
            proc.kill()  # by PID; its servers die with it (PR_SET_PDEATHSIG) or are checked below
            proc.communicate(timeout=10)
    assert proc.returncode == 0, out

    files = list(tmp_path.glob("*-etcd_compare.json"))
    assert len(files) == 1, out
    result = json.loads(files[0].read_text())
    assert result["benchmark"] == "etcd_compare"
    rows = {(row["system"], row["op"]): row for row in result["results"]}
    assert set(rows) == {("etcd", "put"), ("etcd", "cas"), ("ringkv", "put"), ("ringkv", "cas")}
    for op in ("put", "cas"):
        etcd = rows["etcd", op]
        assert etcd["available"], etcd
        assert etcd["ops_per_s"] > 0 and etcd["p50_ms"] > 0 and etcd["p99_ms"] >= etcd["p50_ms"]
        assert etcd["generator_cpu_s"] > 0 and etcd["concurrency"] == 32
        assert etcd["ratio_etcd"] == pytest.approx(1.0)
        ringkv = rows["ringkv", op]
        if ringkv["available"]:  # this build has strong keyspaces
            assert ringkv["ops_per_s"] > 0 and ringkv["ratio_etcd"] > 0
            assert ringkv["durability"] == "fsync always"
        else:
            assert ringkv["note"].startswith("ringkv strong keyspaces not available in this build")
    assert rows["etcd", "cas"]["mismatch_rate"] < 0.5  # each client CASes its own keys

    pids = [pid for system in result["systems"].values() for pid in system["pids"]]
    assert len(pids) == 6
    assert [pid for pid in pids if _running(pid)] == []  # every server it started is stopped
    etcd_lines = [line for line in out.splitlines() if line.lstrip("│ ").startswith("etcd ")]
    assert any(" put " in line for line in etcd_lines), out  # the table has an etcd put row


def test_etcd_compare_reports_ringkv_rows_unavailable_when_strong_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A build without strong keyspaces answers the PUT with 400: the ringkv rows say so."""
    import http.server
    import importlib
    import threading
    import types

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    bench = importlib.import_module("etcd_compare")

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = b'{"error": {"code": "invalid", "message": "mode lww|causal"}}'
            self.send_response(400)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        cluster = types.SimpleNamespace(nodes=[{"http_port": server.server_address[1]}])
        reasons = bench.probe_strong(cluster, ["put", "cas", "get"])
    finally:
        server.shutdown()
        server.server_close()
    assert set(reasons) == {"put", "cas", "get"}
    for reason in reasons.values():
        assert reason.startswith("ringkv strong keyspaces not available in this build")
        assert "400" in reason

    args = bench.parse_args(["--quick", "--ops", "put,cas"])
    systems = {
        "etcd": bench.System("etcd", [1, 2, 3], [], "WAL fsync", {}),
        "ringkv": bench.System("ringkv", [4, 5, 6], [], "fsync always", reasons),
    }
    run = {"ops": 10, "ops_per_s": 5.0, "p50_ms": 1.0, "p99_ms": 2.0, "errors": 0,
           "error_kinds": {}, "mismatch_rate": 0.0, "generator_cpu_s": 0.1,
           "generator_cpu_share": 0.01, "generator_cpu_us_per_op": 50.0,
           "server_cpu_us_per_op": 100.0}  # fmt: skip
    runs = [{"system": "etcd", "op": op, "round": 0, **run} for op in ("put", "cas")]
    rows = bench.summarize(runs, systems, args)
    assert [(r["system"], r["op"], r["available"]) for r in rows] == [
        ("etcd", "put", True), ("ringkv", "put", False),
        ("etcd", "cas", True), ("ringkv", "cas", False),
    ]  # fmt: skip
    assert bench.table_cells(rows[1])[4] == "n/a"
    assert rows[1]["note"] == reasons["put"]
