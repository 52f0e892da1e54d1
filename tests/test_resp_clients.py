"""Real clients against a ringkv server: redis-py (sync and asyncio, RESP2
and RESP3, pipelines, connection pools under threads), redis-cli and
redis-benchmark."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio

from conftest import RunningServer, start_in_thread
from conftest import test_settings as settings_for


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_in_thread(settings_for(tmp_path_factory.mktemp("clients")))
    yield running
    running.stop()


@pytest.fixture
def port(shared: RunningServer) -> int:
    client = redis.Redis(port=shared.resp_port)
    client.flushall()
    client.close()
    return shared.resp_port


# -- redis-py -------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 3])
def test_sync_client(port: int, protocol: int) -> None:
    client = redis.Redis(port=port, protocol=protocol, decode_responses=True)
    assert client.ping() is True
    assert client.set("k", "v", ex=100) is True and client.get("k") == "v"
    assert client.mset({"a": "1", "b": "2"}) is True and client.mget("a", "b", "c") == [
        "1",
        "2",
        None,
    ]
    assert client.incrby("n", 5) == 5 and client.incrbyfloat("f", 2.5) == 2.5
    assert 99 <= client.ttl("k") <= 100 and client.exists("k", "a", "zz") == 2
    assert client.delete("a", "b") == 2 and client.dbsize() == 3
    info = client.info("server")
    assert isinstance(info, dict) and info["redis_mode"] == "standalone"
    assert client.config_get("appendonly") == {"appendonly": "no"}
    hello = client.execute_command("HELLO")
    proto = hello["proto"] if isinstance(hello, dict) else hello[hello.index("proto") + 1]
    assert proto == protocol
    client.close()


def test_pipeline_of_1000_commands_keeps_order(port: int) -> None:
    client = redis.Redis(port=port, decode_responses=True)
    with client.pipeline(transaction=False) as pipe:
        for i in range(250):
            pipe.set(f"key:{i}", f"value:{i}")
            pipe.incr("counter")
            pipe.get(f"key:{i}")
            pipe.echo(f"echo:{i}")
        results = pipe.execute()
    assert len(results) == 1000
    for i in range(250):
        assert results[4 * i : 4 * i + 4] == [True, i + 1, f"value:{i}", f"echo:{i}"]
    client.close()


def test_pipeline_with_errors_keeps_order(port: int) -> None:
    client = redis.Redis(port=port, decode_responses=True)
    client.set("text", "abc")
    with client.pipeline(transaction=False) as pipe:
        pipe.incr("text").get("text").execute_command("NOSUCHCMD").set("x", "1").get("x")
        results = pipe.execute(raise_on_error=False)
    assert isinstance(results[0], redis.ResponseError)
    assert results[1] == "abc"
    assert isinstance(results[2], redis.ResponseError) and "unknown command" in str(results[2])
    assert results[3:] == [True, "1"]
    client.close()


def test_resp3_types(port: int) -> None:
    client = redis.Redis(port=port, protocol=3)
    client.set("k", "v")
    assert client.get("k") == b"v" and client.get("missing") is None
    assert client.execute_command("HELLO")[b"proto"] == 3
    assert client.config_get("maxmemory") in ({b"maxmemory": b"0"}, {"maxmemory": "0"})
    assert client.incrbyfloat("f", 0.5) == 0.5 and client.exists("f", "k") == 2
    assert isinstance(client.client_info(), dict)
    assert isinstance(client.info(), dict)
    cursor, keys = client.scan(0, count=100)
    assert cursor == 0 and sorted(keys) == [b"f", b"k"]
    client.close()


def test_connection_pool_with_many_threads(port: int) -> None:
    pool = redis.ConnectionPool(port=port, max_connections=32, decode_responses=True)
    client = redis.Redis(connection_pool=pool)
    failures: list[BaseException] = []
    threads_count, ops = 16, 150

    def work(thread_id: int) -> None:
        try:
            for i in range(ops):
                key = f"t{thread_id}:{i}"
                assert client.set(key, f"{thread_id}-{i}") is True
                assert client.get(key) == f"{thread_id}-{i}"
                client.incr("shared-counter")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures[:3]
    assert client.get("shared-counter") == str(threads_count * ops)
    assert client.dbsize() == threads_count * ops + 1
    pool.disconnect()


@pytest.mark.parametrize("protocol", [2, 3])
async def test_asyncio_client(port: int, protocol: int) -> None:
    pool = redis.asyncio.BlockingConnectionPool(
        port=port, protocol=protocol, decode_responses=True, max_connections=20
    )
    client = redis.asyncio.Redis(connection_pool=pool)
    try:
        assert await client.ping() is True
        assert await client.set("k", "v") is True and await client.get("k") == "v"

        async def worker(n: int) -> str | None:
            await client.set(f"a:{n}", str(n))
            await client.incr("async-counter")
            return await client.get(f"a:{n}")

        results = await asyncio.gather(*(worker(n) for n in range(200)))
        assert results == [str(n) for n in range(200)]
        assert await client.get("async-counter") == "200"
        async with client.pipeline(transaction=False) as pipe:
            for _ in range(500):
                pipe.incr("async-pipe")
            replies = await pipe.execute()
        assert replies == list(range(1, 501))
        keys = [key async for key in client.scan_iter(match="a:*", count=50)]
        assert sorted(keys) == sorted(f"a:{n}" for n in range(200))
    finally:
        await client.aclose()
        await pool.aclose()


# -- redis-cli and redis-benchmark ---------------------------------------------------

_CLI = shutil.which("redis-cli")
_BENCHMARK = shutil.which("redis-benchmark")
needs_cli = pytest.mark.skipif(_CLI is None, reason="redis-cli not installed (redis-tools)")
needs_benchmark = pytest.mark.skipif(
    _BENCHMARK is None, reason="redis-benchmark not installed (redis-tools)"
)


def _cli(port: int, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert _CLI is not None
    return subprocess.run(
        [_CLI, "-p", str(port), "--no-raw", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@needs_cli
def test_redis_cli_commands(port: int) -> None:
    assert _cli(port, "ping").stdout == "PONG\n"
    assert _cli(port, "set", "k", "hello world").stdout == "OK\n"
    assert _cli(port, "get", "k").stdout == '"hello world"\n'
    assert _cli(port, "--raw", "get", "k").stdout == "hello world\n"
    assert _cli(port, "--raw", "incr", "counter").stdout == "1\n"
    assert _cli(port, "get", "missing").stdout == "(nil)\n"
    assert _cli(port, "incrby", "n", "41").stdout == "(integer) 41\n"
    assert _cli(port, "mget", "k", "n", "missing").stdout == '1) "hello world"\n2) "41"\n3) (nil)\n'
    assert _cli(port, "dbsize").stdout == "(integer) 3\n"
    error = _cli(port, "nosuchcmd", "x")
    assert error.stdout.startswith("(error) ERR unknown command 'nosuchcmd'")
    assert "redis_version:" in _cli(port, "info", "server").stdout
    assert _cli(port, "-3", "get", "k").stdout == '"hello world"\n'
    assert _cli(port, "--scan", "--pattern", "k*").stdout == '"k"\n'


@needs_cli
def test_redis_cli_reads_commands_from_stdin(port: int) -> None:
    result = _cli(port, stdin='SET a 1\nINCR a\nGET a\nSET "b c" "d e"\nGET "b c"\n')
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["OK", "(integer) 2", '"2"', "OK", '"d e"']


@needs_cli
def test_redis_cli_pipe_mode_sends_inline_commands(port: int) -> None:
    inline = "".join(f"SET inline:{i} {i}\r\n" for i in range(100)) + "INCR inline:7\r\n"
    result = _cli(port, "--pipe", stdin=inline)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "errors: 0, replies: 101" in result.stdout
    client = redis.Redis(port=port)
    assert client.get("inline:7") == b"8" and client.get("inline:99") == b"99"
    client.close()


@needs_cli
def test_redis_cli_with_password(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    running = start_in_thread(settings_for(tmp_path, requirepass="s3cret"))
    try:
        port = running.resp_port
        assert _cli(port, "get", "k").stdout.startswith("(error) NOAUTH")
        ok = _cli(port, "--no-auth-warning", "-a", "s3cret", "set", "k", "v")
        assert ok.stdout == "OK\n"
        refused = _cli(port, "--no-auth-warning", "-a", "wrong", "get", "k")
        assert refused.stderr.startswith("AUTH failed: WRONGPASS")
        assert refused.stdout.startswith("(error) NOAUTH")
    finally:
        running.stop()


@needs_benchmark
@pytest.mark.parametrize("pipeline", ["1", "16"])
def test_redis_benchmark_runs_cleanly(port: int, pipeline: str) -> None:
    assert _BENCHMARK is not None
    result = subprocess.run(
        [
            _BENCHMARK,
            "-p",
            str(port),
            "-t",
            "set,get",
            "-n",
            "2000",
            "-c",
            "10",
            "-P",
            pipeline,
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "ERR" not in output and "WARNING" not in output, output
    assert "SET:" in output and "GET:" in output, output
    client = redis.Redis(port=port)
    assert len(client.get("key:__rand_int__") or b"") == 3  # the benchmark's own key
    client.close()
