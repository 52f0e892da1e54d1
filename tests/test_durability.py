"""An acknowledged write survives ``kill -9`` of the server (LMDB, default ``--fsync always``).

Each test runs ``ringkv serve`` as a real process, records every write that
redis-py saw acknowledged, kills the server with SIGKILL right after the last
acknowledgement (no graceful flush), restarts it on the same data directory
and reads every recorded key back.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from conftest import ServerProcess, spawn_server


def connect(proc: ServerProcess) -> redis.Redis:
    # No retries: a command must never be silently re-sent after the kill.
    return redis.Redis(port=proc.resp_port, socket_timeout=10, retry=Retry(NoBackoff(), 0))


def assert_all_present(proc: ServerProcess, expected: dict[bytes, bytes | None]) -> None:
    client = connect(proc)
    try:
        keys = list(expected)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            values = client.mget(chunk)
            lost = [k for k, v in zip(chunk, values, strict=True) if v != expected[k]]
            assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {lost[:5]}"
    finally:
        client.close()


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """The processes a test started; any still running are stopped at the end."""
    started: list[ServerProcess] = []
    yield started
    for proc in started:
        if proc.proc.poll() is None:
            proc.terminate()


def test_acknowledged_sets_survive_kill_9(tmp_path: Path, restartable: list[ServerProcess]) -> None:
    proc = spawn_server(tmp_path)  # LMDB engine and --fsync always are the defaults
    restartable.append(proc)
    client = connect(proc)
    acked: dict[bytes, bytes | None] = {}
    for i in range(600):  # one at a time: each its own group commit
        key, value = f"single:{i}".encode(), f"value-{i}".encode()
        assert client.set(key, value) is True
        acked[key] = value
    for batch in range(28):  # pipelined: many writes in one group commit
        pipe = client.pipeline(transaction=False)
        keys = [f"piped:{batch}:{j}".encode() for j in range(50)]
        for j, key in enumerate(keys):
            pipe.set(key, b"p" * (j + 1), px=3_600_000 if j % 2 else None)
        assert pipe.execute() == [True] * len(keys)
        acked.update({key: b"p" * (j + 1) for j, key in enumerate(keys)})
    for i in range(0, 600, 10):  # overwrites and deletes are acknowledged writes too
        key = f"single:{i}".encode()
        if i % 20:
            assert client.set(key, b"overwritten") is True
            acked[key] = b"overwritten"
        else:
            assert client.delete(key) == 1
            acked[key] = None
    proc.kill9()
    client.close()

    again = spawn_server(tmp_path)  # same name, so the same data directory
    restartable.append(again)
    assert_all_present(again, acked)
    assert connect(again).dbsize() == sum(1 for v in acked.values() if v is not None)


@pytest.mark.parametrize("commit", ["in-place", "commit-thread"])
def test_concurrent_writers_acknowledged_right_before_kill_9(
    tmp_path: Path, restartable: list[ServerProcess], commit: str
) -> None:
    # --commit-thread: the fsync runs while the loop takes the next writes.
    proc = spawn_server(tmp_path, *(["--commit-thread"] if commit == "commit-thread" else []))
    restartable.append(proc)
    acked: list[dict[bytes, bytes]] = [{} for _ in range(5)]
    stop = threading.Event()

    def writer(worker: int) -> None:
        client = connect(proc)
        pipelined = worker == 0
        try:
            for n in itertools.count():
                if stop.is_set():
                    return
                if pipelined:
                    pipe = client.pipeline(transaction=False)
                    keys = [f"w{worker}:{n}:{j}".encode() for j in range(20)]
                    for key in keys:
                        pipe.set(key, key)
                    pipe.execute()
                    acked[worker].update((key, key) for key in keys)
                else:
                    key = f"w{worker}:{n}".encode()
                    client.set(key, key + b"!")
                    acked[worker][key] = key + b"!"
        except (redis.ConnectionError, redis.TimeoutError):
            return  # the server was killed mid-request: that write is unacknowledged
        finally:
            client.close()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(len(acked))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while sum(len(a) for a in acked) < 3000 or min(len(a) for a in acked) < 100:
        assert time.monotonic() < deadline, "writers too slow"
        assert all(t.is_alive() for t in threads), "a writer stopped early"
        time.sleep(0.01)
    persistence = connect(proc).info("persistence")
    pipelined = persistence["group_commits_pipelined"]
    assert (pipelined > 0) == (commit == "commit-thread"), persistence
    proc.kill9()  # while every writer is still writing
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)

    again = spawn_server(tmp_path)
    restartable.append(again)
    expected: dict[bytes, bytes | None] = {}
    for per_writer in acked:
        expected.update(per_writer)
    assert_all_present(again, expected)
