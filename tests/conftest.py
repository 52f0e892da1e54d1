"""Shared fixtures: a real ringkv server on free ports, in a thread or a process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from ringkv.runtime.server import Server, ServerSettings
from ringkv.storage.base import FsyncPolicy

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RunningServer:
    server: Server
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    @property
    def resp_port(self) -> int:
        return self.server.resp_port

    @property
    def http_port(self) -> int:
        return self.server.http_port

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.server.http_port}"

    def stop(self) -> None:
        future = asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop)
        future.result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def start_in_thread(settings: ServerSettings) -> RunningServer:
    """Run a Server on its own event loop in a daemon thread; wait until it listens."""
    loop = asyncio.new_event_loop()
    server = Server(settings)
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            try:
                await server.start()
            except BaseException as exc:  # reported to the test below
                failure.append(exc)
            finally:
                started.set()

        task = loop.create_task(boot())
        loop.run_forever()
        del task

    thread = threading.Thread(target=run, daemon=True, name="ringkv-test-server")
    thread.start()
    if not started.wait(timeout=10):
        raise RuntimeError("test server did not start within 10 s")
    if failure:
        raise failure[0]
    return RunningServer(server, loop, thread)


def test_settings(tmp_path: Path, **overrides: object) -> ServerSettings:
    base = ServerSettings(
        host="127.0.0.1",
        resp_port=0,
        http_port=0,
        data_dir=str(tmp_path / "data"),
        engine="memory",
        fsync=FsyncPolicy.ALWAYS,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    """An in-memory ringkv server on free ports."""
    running = start_in_thread(test_settings(tmp_path))
    yield running
    running.stop()


@pytest.fixture
def lmdb_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A ringkv server on the LMDB engine with --fsync always."""
    running = start_in_thread(test_settings(tmp_path, engine="lmdb"))
    yield running
    running.stop()


@pytest.fixture
def redis_client(server: RunningServer):  # type: ignore[no-untyped-def]
    import redis

    client = redis.Redis(port=server.resp_port, socket_timeout=10)
    yield client
    client.close()


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    resp_port: int
    http_port: int
    log_path: Path
    peer_port: int = 0

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15)


def spawn_server(
    tmp_path: Path, *args: str, name: str = "n1", timeout_s: float = 20.0
) -> ServerProcess:
    """Start `ringkv serve` as a real process on free ports; wait for its ready file."""
    ready = tmp_path / f"{name}.ready.json"
    ready.unlink(missing_ok=True)
    log_path = tmp_path / f"{name}.log"
    argv = [
        sys.executable, "-m", "ringkv", "serve",
        "--host", "127.0.0.1", "--resp-port", "0", "--http-port", "0",
        "--data-dir", str(tmp_path / f"data-{name}"), "--ready-file", str(ready), *args,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGKV_")}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready.exists():
            info = json.loads(ready.read_text())
            return ServerProcess(
                proc, info["resp_port"], info["http_port"], log_path, info.get("peer_port", 0)
            )
        if proc.poll() is not None:
            raise RuntimeError(f"ringkv serve exited early:\n{log_path.read_text()}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"ringkv serve not ready in {timeout_s} s:\n{log_path.read_text()}")


@pytest.fixture(scope="module")
def real_redis() -> Iterator[int]:
    """A real redis-server (Debian, 7.x) on a free port, for differential
    tests; stopped by its PID. Skips when redis-server is not installed."""
    import shutil
    import socket

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(16) == b"+PONG\r\n":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
