"""Contention on one key of a strong keyspace: INCR from several clients
spread over a 3-node local cluster (proposers duel on the key).

    .venv/bin/python bench/hot_key.py [--clients 6] [--seconds 8]

Prints operations, TIMEOUT errors, p50 / p99 / max latency. Each client is a
thread with its own connection to node (i mod 3); the key's final value is
checked against the acknowledged increments (a TIMEOUT may or may not count).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import redis

from ringkv.cluster_cli import free_base_port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="ringkv-hot-key-"))
    base = free_base_port(3)
    up = [sys.executable, "-m", "ringkv", "cluster", "up", "-n", "3", "--dir", str(directory),
          "--base-port", str(base), "--detach", "--timeout", "90"]  # fmt: skip
    subprocess.run(up, check=True, capture_output=True, timeout=120)
    try:
        nodes = json.loads((directory / "cluster.json").read_text())["nodes"]
        request = urllib.request.Request(
            f"http://127.0.0.1:{nodes[0]['http_port']}/v1/keyspaces/hot",
            data=json.dumps({"mode": "strong", "n": 3}).encode(),
            method="PUT",
        )
        urllib.request.urlopen(request, timeout=10).read()
        time.sleep(1)  # the definition reaches every node
        latencies: list[float] = []
        timeouts = [0]
        acked = [0]
        lock = threading.Lock()
        stop = time.monotonic() + args.seconds

        def client(i: int) -> None:
            conn = redis.Redis(port=nodes[i % 3]["resp_port"], socket_timeout=10)
            conn.execute_command("RINGKV.KEYSPACE", "hot")
            while time.monotonic() < stop:
                started = time.perf_counter()
                try:
                    conn.incr("k")
                except redis.ResponseError:
                    with lock:
                        timeouts[0] += 1
                    continue
                with lock:
                    latencies.append(time.perf_counter() - started)
                    acked[0] += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        latencies.sort()
        check = redis.Redis(port=nodes[0]["resp_port"], socket_timeout=10)
        check.execute_command("RINGKV.KEYSPACE", "hot")
        final = int(check.get("k") or 0)
        assert acked[0] <= final <= acked[0] + timeouts[0], (acked[0], final, timeouts[0])
        print(
            f"{args.clients} clients, {args.seconds:g} s: {len(latencies)} INCRs "
            f"({len(latencies) / args.seconds:.0f}/s), {timeouts[0]} TIMEOUT; "
            f"p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
            f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms, "
            f"max {latencies[-1] * 1000:.0f} ms; final value {final} within "
            f"[{acked[0]}, {acked[0] + timeouts[0]}]"
        )
    finally:
        subprocess.run(
            [sys.executable, "-m", "ringkv", "cluster", "down", "--dir", str(directory)],
            capture_output=True,
            timeout=60,
            check=False,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
