"""Three real `ringkv serve` processes: SWIM, the authenticated transport and
replication, through redis-py and HTTP. Nodes are killed with SIGKILL."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from conftest import ServerProcess, spawn_server
from ringkv.cluster_cli import free_base_port


def poll(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def cluster_size(node: ServerProcess) -> int:
    info = redis.Redis(port=node.resp_port, socket_timeout=5).info("ringkv")
    return int(info["cluster_size"])


def secret_file(tmp_path: Path, name: str, secret: str) -> str:
    path = tmp_path / name
    path.write_text(secret)
    path.chmod(0o600)
    return str(path)


def start_node(tmp_path: Path, name: str, secret: str, seed: ServerProcess | None) -> ServerProcess:
    args = ["--node-id", name, "--peer-port", "0", "--cluster-secret-file", secret]
    if seed is not None:
        args += ["--join", f"127.0.0.1:{seed.peer_port}"]
    return spawn_server(tmp_path, *args, name=name)


@pytest.fixture
def three(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    secret = secret_file(tmp_path, "secret", "s3cret-for-the-cluster-tests-0123")
    n1 = start_node(tmp_path, "n1", secret, None)
    nodes = [n1, start_node(tmp_path, "n2", secret, n1), start_node(tmp_path, "n3", secret, n1)]
    try:
        poll(lambda: all(cluster_size(n) == 3 for n in nodes), 20, "three members everywhere")
        yield nodes
    finally:
        for node in nodes:
            node.terminate()


def replicas(node: ServerProcess, key: str) -> dict[str, list[str]]:
    url = f"http://127.0.0.1:{node.http_port}/v1/kv/{key}?replicas=true"
    with urllib.request.urlopen(url, timeout=10) as reply:
        report = json.loads(reply.read())
    return {r["node"]: [v["value"] for v in r["versions"]] for r in report["replicas"]}


def test_writes_go_on_through_a_sigkill_and_the_node_catches_up(
    three: list[ServerProcess], tmp_path: Path
) -> None:
    n1, n2, n3 = three
    client1 = redis.Redis(port=n1.resp_port, socket_timeout=10)
    client2 = redis.Redis(port=n2.resp_port, socket_timeout=10)
    pipe = client1.pipeline(transaction=False)
    for i in range(1000):  # at quorum, the default level
        pipe.set(f"k{i}", f"v{i}")
    assert all(pipe.execute())
    assert client2.get("k7") == b"v7"
    n3.kill9()
    # Keep writing through n1 and reading through n2, at quorum (W = R = 2 of 3).
    longest_gap, last_ok = 0.0, time.monotonic()
    for i in range(1000, 1300):
        assert client1.set(f"k{i}", f"v{i}")
        assert client2.get(f"k{i - 500}") == f"v{i - 500}".encode()
        now = time.monotonic()
        longest_gap, last_ok = max(longest_gap, now - last_ok), now
    print(f"longest gap between successful operations after SIGKILL: {longest_gap * 1000:.0f} ms")
    # Restart n3 on its data; every sampled key reaches it (queued copies or read repair).
    secret = str(tmp_path / "secret")
    three[2] = start_node(tmp_path, "n3", secret, n1)
    poll(lambda: cluster_size(three[2]) == 3, 20, "n3 back in the cluster")
    sample = [f"k{i}" for i in range(0, 1300, 37)]
    for key in sample:
        client1.get(key)  # a quorum read repairs a stale replica
    poll(
        lambda: all(replicas(n1, key).get("n3") == [f"v{key[1:]}"] for key in sample),
        20,
        "every sampled key on the restarted node",
    )


def test_a_node_with_the_wrong_secret_cannot_join(
    three: list[ServerProcess], tmp_path: Path
) -> None:
    wrong = secret_file(tmp_path, "wrong", "not-the-cluster-secret-at-all-987")
    stranger = start_node(tmp_path, "n9", wrong, three[0])
    try:
        time.sleep(3)  # give a join every chance to happen, then check it did not
        assert cluster_size(stranger) == 1
        assert all(cluster_size(n) == 3 for n in three)
    finally:
        stranger.terminate()
    log = "".join(n.log_path.read_text() for n in three)
    assert "not-the-cluster-secret" not in log and "s3cret-for" not in log


def test_cluster_json_lists_every_member_and_the_ring(three: list[ServerProcess]) -> None:
    url = f"http://127.0.0.1:{three[1].http_port}/v1/cluster"
    with urllib.request.urlopen(url, timeout=10) as reply:
        body = json.loads(reply.read())
    assert sorted(m["id"] for m in body["members"]) == ["n1", "n2", "n3"]
    assert all(m["state"] == "alive" for m in body["members"])
    assert abs(sum(m["ring_share"] for m in body["members"]) - 1.0) < 1e-3
    assert body["node"] == "n2" and body["ring_epoch"] > 0
    mine = next(m for m in body["members"] if m["id"] == "n2")
    assert mine["keys"] == 0 and mine["hints_pending"] == 0


def test_cluster_up_status_down(tmp_path: Path) -> None:
    import subprocess
    import sys

    base = free_base_port(3)
    directory = tmp_path / "cluster"
    cli = [sys.executable, "-m", "ringkv", "cluster"]
    up = subprocess.run(
        [*cli, "up", "-n", "3", "--dir", str(directory), "--base-port", str(base), "--detach",
         "--engine", "memory"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    data = json.loads((directory / "cluster.json").read_text())
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert data["version"] == 1 and [n["id"] for n in data["nodes"]] == ["n1", "n2", "n3"]
        first = data["nodes"][0]
        assert first["resp_port"] == base + 1 and first["peer_port"] == base + 1001
        secret = (directory / "secret").read_text()
        assert secret not in json.dumps(data)
        assert redis.Redis(port=first["resp_port"]).set("k", "v")
        assert redis.Redis(port=data["nodes"][2]["resp_port"]).get("k") == b"v"
        status = subprocess.run([*cli, "status", "--dir", str(directory)],
                                capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
        assert status.returncode == 0 and status.stdout.count("3 alive of 3") == 3
    finally:
        down = subprocess.run([*cli, "down", "--dir", str(directory)],
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        _kill_leftovers(directory)
    assert down.returncode == 0
    poll(lambda: all(_gone(node["pid"]) for node in data["nodes"]), 15, "every node stopped")


def _kill_leftovers(directory: Path) -> None:
    """Whatever the outcome, no node this test started outlives it (by PID)."""
    import os
    import signal

    path = directory / "cluster.json"
    if not path.exists():
        return
    for node in json.loads(path.read_text())["nodes"]:
        if not _gone(node["pid"]):
            os.kill(node["pid"], signal.SIGKILL)


def _gone(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_causal_keyspace_reaches_every_node_and_keeps_concurrent_writes(
    three: list[ServerProcess],
) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{three[0].http_port}/v1/keyspaces/carts",
        data=json.dumps({"mode": "causal", "n": 3}).encode(),
        method="PUT",
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 201
    clients = [redis.Redis(port=n.resp_port, socket_timeout=10) for n in three]

    def defined_everywhere() -> bool:
        for client in clients:
            client.execute_command("RINGKV.KEYSPACE", "carts")
        return True

    poll(defined_everywhere, 15, "the keyspace on every node")
    clients[0].set("cart", "apple")  # neither write saw the other
    clients[1].set("cart", "pear")
    context, values = clients[2].execute_command("RINGKV.SIBLINGS", "cart")
    assert sorted(values) == [b"apple", b"pear"]
    assert clients[2].execute_command("RINGKV.PUT", "cart", "both", "CONTEXT", context) == b"OK"
    assert clients[0].execute_command("RINGKV.SIBLINGS", "cart")[1] == [b"both"]


def test_scan_keys_and_dbsize_are_cluster_wide(three: list[ServerProcess]) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{three[0].http_port}/v1/keyspaces/single",
        data=json.dumps({"mode": "lww", "n": 1}).encode(),
        method="PUT",
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 201
    clients = [redis.Redis(port=n.resp_port, socket_timeout=10) for n in three]

    def use_single() -> bool:
        for client in clients:
            client.execute_command("RINGKV.KEYSPACE", "single")
        return True

    poll(use_single, 15, "the keyspace on every node")
    keys = {f"user:{i}".encode() for i in range(150)} | {f"order:{i}".encode() for i in range(50)}
    pipe = clients[0].pipeline(transaction=False)
    for key in sorted(keys):
        pipe.set(key, b"x")
    assert all(pipe.execute())
    clients[1].delete("user:0")
    keys.discard(b"user:0")
    # One copy per key (n = 1), spread over the nodes; every node lists them all.
    held = [int(c.info("keyspace")["keyspace_single"]["keys"]) for c in clients]
    assert all(0 < count < len(keys) for count in held) and sum(held) == len(keys) + 1, held
    for client in clients:
        assert client.dbsize() == len(keys)
        assert set(client.keys("*")) == keys
        assert set(client.keys("order:*")) == {k for k in keys if k.startswith(b"order:")}
        assert set(client.scan_iter(count=7)) == keys
        assert set(client.scan_iter(match="user:1*", count=20)) == {
            k for k in keys if k.startswith(b"user:1")
        }
    cursor, first = clients[2].scan(0, count=20)
    assert cursor != 0 and first


def test_hints_survive_a_sigkill_of_the_node_that_holds_them(tmp_path: Path) -> None:
    """Five nodes, N = 3: a home replica is down, a fallback keeps hints;
    that fallback is killed and restarted before it can deliver them, and
    the home replica still gets every acknowledged write once it returns,
    from hints alone (before any read could repair it)."""
    secret = secret_file(tmp_path, "secret", "s3cret-for-the-cluster-tests-0123")
    n1 = start_node(tmp_path, "n1", secret, None)
    nodes = [n1] + [start_node(tmp_path, f"n{i}", secret, n1) for i in range(2, 6)]
    try:
        poll(lambda: all(cluster_size(n) == 5 for n in nodes), 30, "five members everywhere")
        victim = nodes[4]
        victim.kill9()
        client = redis.Redis(port=n1.resp_port, socket_timeout=10)
        keys = [f"h{i}" for i in range(120)]
        for key in keys:
            # Until SWIM notices n5 is dead, a write forwarded to it times
            # out (an unknown outcome); SET is idempotent, so retry it.
            poll(lambda key=key: bool(client.set(key, f"v-{key}")), 30, f"SET {key}")

        def pending(node: ServerProcess) -> int:
            url = f"http://127.0.0.1:{node.http_port}/v1/cluster"
            with urllib.request.urlopen(url, timeout=5) as reply:
                body = json.loads(reply.read())
            return next(m["hints_pending"] for m in body["members"] if m["id"] == body["node"])

        def hint_info(node: ServerProcess) -> dict[str, int]:
            info = redis.Redis(port=node.resp_port, socket_timeout=5).info("ringkv")
            return {k: int(v) for k, v in info.items() if "hint" in k}

        poll(lambda: sum(pending(n) for n in nodes[:4]) > 0, 20, "hints written for n5")
        # The fallback that took the most hinted copies for n5 (coordinators
        # hold hints too: their own, for the homes they did not hear from).
        written = [hint_info(n)["hints_written"] for n in nodes[:4]]
        holder_index = max(range(4), key=lambda i: written[i])
        # Killed at once: it also coordinated writes less than
        # replica_timeout_ms ago, whose copy for n5 no fallback holds yet.
        before = hint_info(nodes[holder_index])
        nodes[holder_index].kill9()
        nodes[holder_index] = start_node(
            tmp_path, f"n{holder_index + 1}", secret, n1 if holder_index else nodes[1]
        )
        # Durable: nothing lost in the crash. Only a coordinator's self-hints
        # whose home had the write already (covered, not yet cleared) may have
        # gone before the kill; since the restart, hints may have been delivered.
        after = hint_info(nodes[holder_index])
        kept = before["hints_pending"] - (
            before["self_hints_covered"] - before["self_hints_cleared"]
        )
        assert after["hints_pending"] + after["hints_delivered"] >= kept > 0
        nodes[4] = start_node(tmp_path, "n5", secret, nodes[0])  # n1 may have restarted
        poll(lambda: all(pending(n) == 0 for n in nodes), 40, "every hint delivered")
        # Hinted handoff alone brought n5 up to date: an inspection repairs
        # nothing. (Values are compared as sets: a SET retried after a TIMEOUT
        # may have landed twice, as two concurrent versions of one value.)
        # Asked through a node that never restarted: peers may take a while
        # to learn a restarted node's new address, and answer it late.
        observer = nodes[2] if holder_index != 2 else nodes[3]
        reports = {k: replicas(observer, k) for k in keys}
        home_keys = [k for k in keys if "n5" in reports[k]]
        assert home_keys, "n5 is a home replica of some keys"
        missing = [k for k in home_keys if set(reports[k]["n5"]) != {f"v-{k}"}]
        assert not missing, f"n5 lacks {len(missing)} of {len(home_keys)} keys: {missing}"
        # Nothing acknowledged is lost: every key reads back at `all`.
        reader = redis.Redis(port=observer.resp_port, socket_timeout=10)
        assert reader.execute_command("RINGKV.CONSISTENCY", "all") == b"OK"
        for key in keys:
            poll(lambda key=key: reader.get(key) == f"v-{key}".encode(), 20, f"GET {key} at all")
        assert all(set(replicas(observer, k)["n5"]) == {f"v-{k}"} for k in home_keys)
    finally:
        for node in nodes:
            node.terminate()


def test_cluster_up_in_the_foreground_stops_every_node_on_ctrl_c(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    directory = tmp_path / "fg"
    base = free_base_port(2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ringkv", "cluster", "up", "-n", "2", "--dir", str(directory),
         "--base-port", str(base), "--engine", "memory"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        poll((directory / "cluster.json").exists, 30, "cluster.json written")
        data = json.loads((directory / "cluster.json").read_text())
        poll(lambda: redis.Redis(port=data["nodes"][1]["resp_port"]).ping(), 30, "n2 answers")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        poll(lambda: all(_gone(node["pid"]) for node in data["nodes"]), 15, "every node stopped")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        _kill_leftovers(directory)
