"""CAP made visible, on five real processes (the README walk-through).

Partition 2 | 3 through /v1/admin/faults (nodes started with --faults):
- a `causal` keyspace keeps accepting writes on both sides; after the heal
  the two writes come back as siblings;
- a `strong` keyspace (N = 5, so every key's majority is the 3-node side)
  accepts writes on the majority side and answers the minority side with a
  fast, definite `-UNAVAILABLE`, where `one` reads still answer;
- every strong operation of the run goes into a history that the
  linearizability checker accepts.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from conftest import ServerProcess, spawn_server
from ringkv.check.history import Recorder
from ringkv.check.linearizability import check_register
from test_cluster import cluster_size, poll, secret_file

MINORITY, MAJORITY = ("n1", "n2"), ("n3", "n4", "n5")


def http(node: ServerProcess, method: str, path: str, body: object = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{node.http_port}{path}", data=data, method=method
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        text = reply.read()
    return json.loads(text) if text else None


@pytest.fixture
def five(tmp_path: Path) -> Iterator[dict[str, ServerProcess]]:
    secret = secret_file(tmp_path, "secret", "s3cret-for-the-cap-walkthrough-42")
    nodes: dict[str, ServerProcess] = {}
    try:
        for i in range(1, 6):
            args = ["--node-id", f"n{i}", "--peer-port", "0", "--cluster-secret-file", secret,
                    "--faults"]  # fmt: skip
            if nodes:
                args += ["--join", f"127.0.0.1:{nodes['n1'].peer_port}"]
            nodes[f"n{i}"] = spawn_server(tmp_path, *args, name=f"n{i}")
        poll(lambda: all(cluster_size(n) == 5 for n in nodes.values()), 40, "five members")
        yield nodes
    finally:
        for node in nodes.values():
            node.terminate()


def client(node: ServerProcess, keyspace: str, level: str = "") -> redis.Redis:
    conn = redis.Redis(port=node.resp_port, socket_timeout=15, single_connection_client=True)
    conn.execute_command("RINGKV.KEYSPACE", keyspace)
    if level:
        conn.execute_command("RINGKV.CONSISTENCY", level)
    return conn


def partition(nodes: dict[str, ServerProcess]) -> None:
    for a in MINORITY:
        for b in MAJORITY:
            http(nodes[a], "POST", "/v1/admin/faults",
                 {"link": {"to": b, "direction": "both", "mode": "blackhole"}})  # fmt: skip


def heal(nodes: dict[str, ServerProcess]) -> None:
    for node in nodes.values():
        http(node, "DELETE", "/v1/admin/faults")


def test_cap_under_a_two_three_partition(five: dict[str, ServerProcess]) -> None:
    nodes = five
    http(nodes["n1"], "PUT", "/v1/keyspaces/carts", {"mode": "causal", "n": 3})
    http(nodes["n1"], "PUT", "/v1/keyspaces/accounts",
         {"mode": "strong", "n": 5, "level": "linearizable"})  # fmt: skip
    poll(lambda: all(bool(client(n, "accounts")) for n in nodes.values()), 20, "keyspaces")

    # A causal key with home replicas on both sides (N = 3 of 5).
    def homes(k: str) -> set[str]:
        report = http(nodes["n3"], "GET", f"/v1/kv/{k}?keyspace=carts&replicas=true")
        return {r["node"] for r in report["replicas"]}

    key = next(
        k for k in (f"cart-{i}" for i in range(200))
        if homes(k) & set(MINORITY) and homes(k) & set(MAJORITY)
    )  # fmt: skip
    recorder = Recorder(clock=time.monotonic_ns)
    strong = {n: client(nodes[n], "accounts", "linearizable") for n in nodes}

    def strong_op(node: str, f: str, value: int | None = None) -> object:
        event = recorder.invoke(int(node[1:]), f, "balance", value, node=node)
        try:
            if f == "write":
                strong[node].set("balance", str(value))
                recorder.complete(event, "ok")
                return True
            raw = strong[node].get("balance")
            recorder.complete(event, "ok", int(raw) if raw is not None else None)
            return raw
        except redis.ResponseError as exc:
            kind = "fail" if str(exc).startswith("UNAVAILABLE") else "info"
            recorder.complete(event, kind, error=str(exc))
            return exc

    assert strong_op("n1", "write", 100) is True
    partition(nodes)
    time.sleep(1)
    # causal: both sides accept a write; neither saw the other.
    assert client(nodes["n1"], "carts").set(key, "apple")
    assert client(nodes["n4"], "carts").set(key, "pear")
    # strong: the majority side writes; the minority side is refused, fast and definite.
    assert strong_op("n4", "write", 200) is True
    started = time.monotonic()
    refused = strong_op("n2", "write", 300)
    took = time.monotonic() - started
    assert isinstance(refused, redis.ResponseError) and str(refused).startswith("UNAVAILABLE")
    assert took < 3.0, f"the minority side took {took:.1f} s to refuse"
    assert isinstance(strong_op("n1", "read"), redis.ResponseError)  # linearizable: no majority
    stale = client(nodes["n2"], "accounts", "one").get("balance")
    assert stale in (b"100", b"200")  # `one` answers, possibly stale
    assert strong_op("n5", "read") == b"200"
    heal(nodes)
    # After the heal: siblings in the causal keyspace; the strong key as the majority wrote it.
    poll(
        lambda: (
            sorted(client(nodes["n2"], "carts").execute_command("RINGKV.SIBLINGS", key)[1])
            == [b"apple", b"pear"]
        ),
        30,
        "the two causal writes come back as siblings",
    )
    poll(lambda: strong_op("n1", "read") == b"200", 30, "the minority reads the majority's write")
    result = check_register(recorder.events)
    assert result.valid is True, [r.explain() for r in result.failures]
