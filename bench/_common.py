"""The benchmark harness of ringkv: processes, ports, load, results.

Every benchmark script in ``bench/`` builds on this module rather than
repeating it (issue 2 item 9: one harness, extended by later issues for
clusters and etcd). What lives here:

- ``ProcessSet``: starts servers (``redis-server``, ``ringkv serve``, and
  anything else given as a ``ProcessSpec``) on free ports, waits until each
  answers, and stops every process it started *by PID* (SIGTERM, then SIGKILL
  after a grace period) on normal exit, on error and on Ctrl-C. Children run
  in their own session, so a Ctrl-C at the terminal reaches only the harness,
  which then stops them in order; ``PR_SET_PDEATHSIG`` makes the kernel stop
  them even if the harness itself is killed with SIGKILL.
- ``redis_benchmark``: runs Debian's ``redis-benchmark --csv`` and parses it.
- ``load_keys``: a raw pipelined RESP loader (exact, distinct keys; much
  faster than a Python client), ``resp_call``: one command and its reply.
- ``rss_bytes``, ``machine_info``: what the host and each process look like.
- ``write_results``, ``markdown_table``, ``console``: JSON output under
  ``bench/results/`` (gitignored) and tables for rich and for the README.

This file is run from the scripts next to it (``python bench/x.py`` puts
``bench/`` on ``sys.path``), so it imports nothing from ``bench`` itself.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import datetime as dt
import functools
import importlib.util
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

__all__ = [
    "BENCH_DIR",
    "RESULTS_DIR",
    "BenchResult",
    "HarnessError",
    "ProcessSet",
    "ProcessSpec",
    "RedisSpec",
    "RingkvSpec",
    "Service",
    "console",
    "cpu_seconds",
    "find_tool",
    "format_profile",
    "free_port",
    "load_keys",
    "machine_info",
    "markdown_table",
    "median",
    "py_spy_wrapper",
    "redis_benchmark",
    "resp_call",
    "rss_bytes",
    "stop_on_signals",
    "summarize_collapsed",
    "timed",
    "timestamp",
    "write_results",
]

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

# Not a terminal (CI, a pipe, a test): wide enough that tables do not wrap.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


class HarnessError(RuntimeError):
    """A server did not start, a tool failed, or a result does not add up."""


def run_main(main: Callable[[], int]) -> None:
    """A benchmark's entry point: its exit code; Ctrl-C and HarnessError
    said in one line (every server it started is stopped by then)."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]: every started server was stopped")
        sys.exit(130)
    except HarnessError as exc:
        console.print(f"benchmark failed: {exc}", style="red", markup=False)
        sys.exit(1)


# -- small helpers -------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for servers that cannot bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def timestamp(now: dt.datetime | None = None) -> str:
    """``20250101T120000Z``: sortable, safe in file names."""
    now = now or dt.datetime.now(dt.UTC)
    return now.strftime("%Y%m%dT%H%M%SZ")


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("median of nothing")
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from ``/proc/<pid>/status`` (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise HarnessError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds a process has used, from ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def find_tool(name: str) -> str | None:
    """A tool next to this Python (the venv's ``py-spy``) or on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    return shutil.which(name)


def stop_on_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt, so ``finally`` blocks stop the servers.

    Set explicitly: a harness started in the background by a shell inherits
    an ignored SIGINT, and Python's default SIGTERM would kill it outright.
    """

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while stopping servers, so a second Ctrl-C cannot cut it short."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    received: list[int] = []
    for sig in saved:
        signal.signal(sig, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    if received:
        raise KeyboardInterrupt(signal.Signals(received[0]).name)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


# -- processes -------------------------------------------------------------------


@dataclass
class Service:
    """A started server: where it listens and which process it is."""

    name: str
    kind: str  # "redis", "ringkv", or whatever a ProcessSpec says
    host: str
    port: int
    pid: int  # the server's own PID (not a wrapper's, e.g. py-spy)
    proc: subprocess.Popen[bytes]
    log_path: Path
    labels: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # e.g. the ready file
    argv: list[str] = field(default_factory=list)

    def rss_bytes(self) -> int:
        return rss_bytes(self.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "port": self.port,
            "pid": self.pid,
            **self.labels,
            "argv": self.argv,
        }


class ProcessSpec:
    """How to launch one server and how to tell that it is ready.

    Subclasses fill in ``argv`` and ``wait_ready``; ``ProcessSet.start``
    launches every spec first and only then waits, so slow starters (Python
    servers import for ~1 s) start in parallel.
    """

    name: str
    kind: str = "process"
    host: str = "127.0.0.1"
    labels: dict[str, str]

    def prepare(self, workdir: Path) -> tuple[list[str], dict[str, str], int]:
        """Return ``(argv, env, port)``; ``port`` 0 means "learn it in wait_ready"."""
        raise NotImplementedError

    def wait_ready(
        self, proc: subprocess.Popen[bytes], port: int, workdir: Path, deadline: float
    ) -> tuple[int, int, dict[str, Any]]:
        """Block until the server answers; return ``(pid, port, info)``."""
        raise NotImplementedError


def _ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisSpec(ProcessSpec):
    """``redis-server`` on a free port; ``args`` are extra config flags."""

    name: str
    args: tuple[str, ...] = ("--save", "", "--appendonly", "no")
    labels: dict[str, str] = field(default_factory=dict)
    binary: str = "redis-server"
    host: str = "127.0.0.1"
    kind: str = "redis"

    def prepare(self, workdir: Path) -> tuple[list[str], dict[str, str], int]:
        port = free_port(self.host)
        data = workdir / f"{self.name}-data"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            self.binary, "--bind", self.host, "--port", str(port), "--dir", str(data),
            "--daemonize", "no", "--protected-mode", "no", "--logfile", "", *self.args,
        ]  # fmt: skip
        return argv, dict(os.environ), port

    def wait_ready(
        self, proc: subprocess.Popen[bytes], port: int, workdir: Path, deadline: float
    ) -> tuple[int, int, dict[str, Any]]:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise HarnessError(f"{self.name} exited with code {proc.returncode}")
            if _ping(self.host, port):
                return proc.pid, port, {}
            time.sleep(0.05)
        raise HarnessError(f"{self.name} did not answer PING on port {port}")


@functools.cache
def ringkv_serve_flags(python: str = sys.executable) -> frozenset[str]:
    """The flags ``ringkv serve --help`` lists; empty when there is no CLI yet."""
    if importlib.util.find_spec("ringkv.cli") is None:
        return frozenset()
    try:
        out = subprocess.run(
            [python, "-m", "ringkv", "serve", "--help"],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            env={**_clean_env(), "COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    if out.returncode != 0:
        return frozenset()
    return frozenset(w.strip(",.[]│") for w in out.stdout.split() if w.startswith("--"))


def _clean_env() -> dict[str, str]:
    # The user's RINGKV_* settings must not leak into a benchmarked server.
    return {k: v for k, v in os.environ.items() if not k.startswith("RINGKV_")}


_FALLBACK_SERVE = """\
import json, sys
from ringkv.runtime.server import ServerSettings, run_server
from ringkv.storage.base import FsyncPolicy
o = json.loads(sys.argv[1])
run_server(ServerSettings(host=o["host"], resp_port=0, http_port=0, engine=o["engine"],
    fsync=FsyncPolicy(o["fsync"]), data_dir=o["data_dir"], ready_file=o["ready_file"]))
"""


@dataclass
class RingkvSpec(ProcessSpec):
    """``ringkv serve`` on free ports (port 0 + ``--ready-file``).

    Uses the CLI (``python -m ringkv serve``) when it exists, else runs
    ``ringkv.runtime.server.run_server`` directly. ``wrapper`` is put in
    front of the command line (e.g. ``py-spy record -o f --``): the ready
    file still names the server's own PID, which is what gets stopped.
    """

    name: str
    engine: str = "memory"
    fsync: str = "always"
    args: tuple[str, ...] = ()
    wrapper: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    python: str = sys.executable
    host: str = "127.0.0.1"
    kind: str = "ringkv"

    def __post_init__(self) -> None:
        self.labels = {"engine": self.engine, "fsync": self.fsync, **self.labels}

    def prepare(self, workdir: Path) -> tuple[list[str], dict[str, str], int]:
        data_dir = workdir / f"{self.name}-data"
        ready = workdir / f"{self.name}.ready.json"
        ready.unlink(missing_ok=True)
        flags = ringkv_serve_flags(self.python)
        if flags:
            argv = [
                self.python, "-m", "ringkv", "serve", "--host", self.host,
                "--resp-port", "0", "--http-port", "0", "--engine", self.engine,
                "--fsync", self.fsync, "--data-dir", str(data_dir), "--ready-file", str(ready),
            ]  # fmt: skip
            if "--peer-port" in flags:  # side by side: never the default 7380
                argv += ["--peer-port", "0"]
            argv += list(self.args)
        else:
            options = {
                "host": self.host,
                "engine": self.engine,
                "fsync": self.fsync,
                "data_dir": str(data_dir),
                "ready_file": str(ready),
            }
            argv = [self.python, "-c", _FALLBACK_SERVE, json.dumps(options)]
        return [*self.wrapper, *argv], _clean_env(), 0

    def wait_ready(
        self, proc: subprocess.Popen[bytes], port: int, workdir: Path, deadline: float
    ) -> tuple[int, int, dict[str, Any]]:
        ready = workdir / f"{self.name}.ready.json"
        while time.monotonic() < deadline:
            if ready.exists():
                with contextlib.suppress(ValueError):
                    info = json.loads(ready.read_text())
                    if _ping(self.host, int(info["resp_port"])):
                        return int(info["pid"]), int(info["resp_port"]), info
            if proc.poll() is not None:
                raise HarnessError(f"{self.name} exited with code {proc.returncode}")
            time.sleep(0.05)
        raise HarnessError(f"{self.name} wrote no ready file in time")

    @staticmethod
    def launcher() -> str:
        return "cli" if ringkv_serve_flags() else "run_server"


class ProcessSet:
    """Starts servers in a scratch directory and guarantees they are stopped.

    Use as a context manager; ``stop`` one service early if you like. Every
    stop is by PID: the server's own PID first (SIGTERM, then SIGKILL after
    ``grace_s``), then the launched process (a wrapper such as py-spy exits
    by itself once its target is gone).
    """

    def __init__(
        self, workdir: Path | None = None, *, keep: bool = False, grace_s: float = 15.0
    ) -> None:
        self._own_dir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="ringkv-bench-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.grace_s = grace_s
        self.services: list[Service] = []
        self._launched: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> ProcessSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, *specs: ProcessSpec, timeout_s: float = 60.0) -> list[Service]:
        """Launch every spec, then wait for all of them; a failure stops the lot."""
        launched: list[tuple[ProcessSpec, subprocess.Popen[bytes], int, Path, list[str]]] = []
        for spec in specs:
            argv, env, port = spec.prepare(self.workdir)
            log_path = self.workdir / f"{spec.name}.log"
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.workdir,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, no locks
                )
            self._launched.append(proc)
            launched.append((spec, proc, port, log_path, argv))
        deadline = time.monotonic() + timeout_s
        started: list[Service] = []
        for spec, proc, port, log_path, argv in launched:
            try:
                pid, bound, info = spec.wait_ready(proc, port, self.workdir, deadline)
            except HarnessError as exc:
                tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
                raise HarnessError(f"{exc}\n--- {log_path} ---\n{tail}") from None
            service = Service(
                name=spec.name,
                kind=spec.kind,
                host=spec.host,
                port=bound,
                pid=pid,
                proc=proc,
                log_path=log_path,
                labels=dict(spec.labels),
                info=info,
                argv=argv,
            )
            self.services.append(service)
            started.append(service)
        return started

    def stop(self, service: Service) -> int | None:
        """Stop one service by PID; return the launched process's exit code."""
        _terminate(service.pid, service.proc, self.grace_s)
        if service in self.services:
            self.services.remove(service)
        return service.proc.returncode

    def close(self) -> None:
        with _signals_held():
            for service in reversed(list(self.services)):
                with contextlib.suppress(Exception):
                    self.stop(service)
            for proc in self._launched:  # anything that never became ready
                if proc.poll() is None:
                    _terminate(proc.pid, proc, self.grace_s)
            self._launched.clear()
            if self._own_dir and not self.keep:
                shutil.rmtree(self.workdir, ignore_errors=True)


def _pid_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _terminate(pid: int, proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM ``pid``, wait for it (and for ``proc``), SIGKILL after ``grace_s``."""

    def signal_pid(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)

    def wait_gone(deadline: float) -> bool:
        while time.monotonic() < deadline:
            proc.poll()  # reaps the launched process when it is the server itself
            if proc.returncode is not None and not _pid_running(pid):
                return True
            time.sleep(0.02)
        return False

    if proc.returncode is not None and not _pid_running(pid):
        return
    signal_pid(signal.SIGTERM)
    if wait_gone(time.monotonic() + grace_s):
        return
    signal_pid(signal.SIGKILL)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()  # a wrapper (py-spy) that outlived its target
    wait_gone(time.monotonic() + grace_s)


# -- load generators -----------------------------------------------------------


@dataclass(frozen=True)
class BenchResult:
    """One line of ``redis-benchmark --csv``."""

    test: str
    rps: float
    avg_ms: float
    p50_ms: float
    p99_ms: float
    max_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "rps": self.rps,
            "avg_ms": self.avg_ms,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
        }


def parse_benchmark_csv(text: str) -> list[BenchResult]:
    results: list[BenchResult] = []
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return results
    header = rows[0]
    for row in rows[1:]:
        if len(row) != len(header):
            continue
        rec = dict(zip(header, row, strict=True))
        results.append(
            BenchResult(
                test=rec["test"].split()[0].lower(),
                rps=float(rec["rps"]),
                avg_ms=float(rec.get("avg_latency_ms", "nan")),
                p50_ms=float(rec.get("p50_latency_ms", "nan")),
                p99_ms=float(rec.get("p99_latency_ms", "nan")),
                max_ms=float(rec.get("max_latency_ms", "nan")),
            )
        )
    return results


def redis_benchmark(
    port: int,
    *,
    tests: Sequence[str] = ("set", "get"),
    requests: int = 200_000,
    clients: int = 50,
    pipeline: int = 1,
    host: str = "127.0.0.1",
    extra_args: Sequence[str] = (),
    binary: str = "redis-benchmark",
    timeout_s: float | None = None,
) -> dict[str, BenchResult]:
    """Run ``redis-benchmark --csv`` once; results by lower-case test name."""
    argv = [
        binary, "-h", host, "-p", str(port), "-t", ",".join(tests), "-n", str(requests),
        "-c", str(clients), "-P", str(pipeline), "--csv", *extra_args,
    ]  # fmt: skip
    if timeout_s is None:  # generous: a 2k ops/s server must still finish
        timeout_s = 60.0 + len(tests) * requests / 2000
    try:
        out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"redis-benchmark timed out after {timeout_s:.0f} s: {argv}") from exc
    results = {r.test: r for r in parse_benchmark_csv(out.stdout)}
    missing = [t for t in tests if t.lower() not in results]
    if out.returncode != 0 or missing:
        raise HarnessError(
            f"redis-benchmark failed (exit {out.returncode}, missing {missing}): "
            f"{' '.join(argv)}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
        )
    return results


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks: list[bytes] = []
    while n > 0:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise HarnessError("server closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def load_keys(
    port: int,
    count: int,
    *,
    value_bytes: int = 100,
    prefix: bytes = b"key:",
    batch: int = 5000,
    host: str = "127.0.0.1",
    progress: Callable[[int], None] | None = None,
) -> None:
    """SET ``prefix`` + 000000.. ``count`` distinct keys, ``value_bytes`` each.

    Raw pipelined RESP over one socket: a batch is sent, then exactly one
    ``+OK`` per command is required back (anything else is an error), so the
    load is exact and costs the client almost nothing.
    """
    width = max(6, len(str(count - 1)))
    ok = b"+OK\r\n"
    with socket.create_connection((host, port), timeout=120) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start in range(0, count, batch):
            stop = min(start + batch, count)
            parts: list[bytes] = []
            for i in range(start, stop):
                key = prefix + str(i).zfill(width).encode()
                value = str(i).zfill(value_bytes).encode()[-value_bytes:]
                parts.append(
                    b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                    % (len(key), key, len(value), value)
                )
            sock.sendall(b"".join(parts))
            reply = _recv_exactly(sock, len(ok) * (stop - start))
            if reply != ok * (stop - start):
                raise HarnessError(f"unexpected reply while loading: {reply[:200]!r}")
            if progress is not None:
                progress(stop - start)


def resp_call(port: int, *args: str | bytes, host: str = "127.0.0.1") -> Any:
    """Send one command with redis-py; return the parsed reply."""
    import redis

    client = redis.Redis(host=host, port=port, socket_timeout=60)
    try:
        return client.execute_command(*args)
    finally:
        client.close()


# -- profiles --------------------------------------------------------------------

# Leaf frames that mean "waiting for I/O", not work: a native (--native) profile
# samples them, the Python-only one already drops idle threads.
_IDLE_LEAVES = ("epoll_wait", "epoll_pwait", "epoll_pwait2", "poll ", "ppoll", "select ", "pselect")
_SYSCALL_AREA = "libc / system calls"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::\d+)?\)$")


def py_spy_wrapper(output: Path, *, rate_hz: int = 200, native: bool = True) -> tuple[str, ...]:
    """Argv prefix that runs a server under ``py-spy record`` (raw collapsed stacks).

    py-spy must *launch* the server: attaching to a running PID needs ptrace
    rights that containers often lack, while a child can always be read.
    The output is written when the server exits; open it in speedscope.app.
    """
    py_spy = find_tool("py-spy")
    if py_spy is None:
        raise HarnessError("profiling needs py-spy (pip install py-spy, or the dev extra)")
    argv = [py_spy, "record", "--format", "raw", "--output", str(output), "--rate", str(rate_hz)]
    if native:
        argv.append("--native")
    return (*argv, "--")


def frame_name(frame: str) -> str:
    """``func (file:line)`` -> ``func (file)``: functions, not lines."""
    m = _FRAME.match(frame)
    return f"{m['func']} ({m['file']})" if m else frame


def frame_area(frame: str) -> str:
    """Which part of the system a leaf frame belongs to."""
    m = _FRAME.match(frame)
    where = m["file"] if m else frame
    if where.startswith("ringkv/"):
        return "ringkv/" + where.split("/")[1].removesuffix(".py")
    if where.startswith(("libc.so", "[vdso]", "libpthread")):
        return _SYSCALL_AREA
    if where.startswith(("loop.c", "core.c", "linux.c", "timer.c", "stream.c", "internal.h")) or (
        m and m["func"].startswith("uv")
    ):
        return "uvloop / libuv"
    if where.startswith(("libpython", "Objects/", "Python/", "object.h", "<string>")) or (
        where.endswith((".c", ".h")) and "blake2" not in where
    ):
        return "CPython interpreter"
    if where.startswith(("asyncio/", "uvloop/")):
        return "event loop (Python side)"
    if where.startswith("msgpack/") or "msgpack" in where:
        return "msgpack"
    if "blake2" in where:
        return "hashlib (blake2b)"
    return "other: " + where.split("/")[0]


def summarize_collapsed(
    text: str, *, top: int = 30, within: str = "run_server ("
) -> dict[str, Any]:
    """Self time, inclusive time and time by area from py-spy raw output.

    Only stacks that pass through ``within`` (the server's event loop) count,
    and neither import-time nor idle (epoll) stacks: the profile is of the
    server at work during the benchmark, not of Python starting or waiting.
    """
    self_counts: Counter[str] = Counter()
    user_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    samples = idle = skipped = 0
    lines = [line.rpartition(" ") for line in text.splitlines()]
    stacks = [(stack, int(n)) for stack, _, n in lines if stack and n.isdigit()]
    if not any(within in stack for stack, _ in stacks):
        within = ""  # the server was restructured: keep every stack
    for stack, count in stacks:
        if "<frozen importlib" in stack or within not in stack:
            skipped += count
            continue
        frames = [f for f in stack.split(";") if f]
        if frames[-1].startswith(_IDLE_LEAVES):
            idle += count
            continue
        samples += count
        names = [frame_name(f) for f in frames]
        self_counts[names[-1]] += count
        # Generated code (a dataclass's __init__, file "<string>") is charged
        # to the module that called it.
        leaf = next((f for f in reversed(frames) if "(<string>" not in f), frames[-1])
        area = frame_area(leaf)
        areas[area] += count
        if area != _SYSCALL_AREA:
            user_counts[names[-1]] += count
        for name in set(names):
            if "(ringkv/" in name:
                total_counts[name] += count
    for name, count in list(total_counts.items()):
        if count >= 0.995 * samples:
            del total_counts[name]  # main(), run_server(): on every stack, says nothing

    def table(counter: Counter[str], of: int) -> list[dict[str, Any]]:
        return [
            {"function": f, "samples": c, "percent": 100 * c / of}
            for f, c in counter.most_common(top)
        ] if of else []  # fmt: skip

    user_samples = sum(user_counts.values())
    return {
        "samples": samples,
        "user_samples": user_samples,
        "idle_samples": idle,
        "other_samples_skipped": skipped,
        "by_area": table(areas, samples),
        "top_self": table(self_counts, samples),
        "top_self_user": table(user_counts, user_samples),
        "top_inclusive_ringkv": table(total_counts, samples),
    }


def format_profile(summary: dict[str, Any], *, top: int = 25, title: str = "") -> str:
    """The text summary written next to a profile (and printed).

    When ``summary`` carries ``cpu_user_us_per_op`` (the server's user CPU per
    operation, from /proc, measured during the profiled run), the user-space
    table also shows an estimate of microseconds per operation per function:
    sampling profilers over-weight system calls (a thread stopped for a
    sample is often inside one), so the /proc split is the better top line.
    """
    lines = [title] if title else []
    lines.append(f"{summary['samples']} busy samples ({summary['idle_samples']} idle left out)")
    user_us = summary.get("cpu_user_us_per_op")
    if user_us is not None:
        lines.append(
            f"server CPU per operation (from /proc): {user_us:.1f} us user + "
            f"{summary['cpu_sys_us_per_op']:.1f} us system"
        )
    lines.append("")
    for heading, key in (
        ("self time by area (all samples):", "by_area"),
        ("top functions by self time (all samples):", "top_self"),
    ):
        lines.append(heading)
        lines += [f"  {e['percent']:5.1f}%  {e['function']}" for e in summary[key][:top]]
        lines.append("")
    lines.append(
        "top functions by self time in user space (system-call leaves left out)"
        + (", with est. us per operation:" if user_us is not None else ":")
    )
    for e in summary["top_self_user"][:top]:
        est = f"  {e['percent'] * user_us / 100:5.2f} us" if user_us is not None else ""
        lines.append(f"  {e['percent']:5.1f}%{est}  {e['function']}")
    lines.append("")
    lines.append("ringkv functions by inclusive time (all samples):")
    lines += [
        f"  {e['percent']:5.1f}%  {e['function']}" for e in summary["top_inclusive_ringkv"][:top]
    ]
    return "\n".join(lines) + "\n"


# -- reporting -------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _fs_type(path: Path) -> str:
    """Filesystem type under ``path`` (fsync on tmpfs would mean nothing)."""
    best, best_type = "", "unknown"
    target = str(path.resolve())
    with contextlib.suppress(OSError), open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and target.startswith(parts[1]) and len(parts[1]) > len(best):
                best, best_type = parts[1], parts[2]
    return best_type


def _tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else "?"


def machine_info(data_dir: Path | None = None) -> dict[str, Any]:
    """What the numbers were measured on; goes into every result file."""
    try:
        import ringkv

        ringkv_version = getattr(ringkv, "__version__", "?")
    except ImportError:
        ringkv_version = "not importable"
    mem_total = 0
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        mem_total = int(f.readline().split()[1]) * 1024
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "mem_total_bytes": mem_total,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "uvloop": importlib.util.find_spec("uvloop") is not None,
        "ringkv_version": ringkv_version,
        "redis_server": _tool_version(["redis-server", "--version"]),
        "redis_benchmark": _tool_version(["redis-benchmark", "--version"]),
        "data_dir_fs": _fs_type(data_dir or Path(tempfile.gettempdir())),
        "loadavg": os.getloadavg(),
    }


def write_results(name: str, payload: dict[str, Any], results_dir: Path | None = None) -> Path:
    """Write ``<results_dir>/<timestamp>-<name>.json`` and return its path."""
    results_dir = results_dir or RESULTS_DIR
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{payload.get('timestamp') or timestamp()}-{name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(path)
    return path


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured table (numbers right-aligned), for the README."""

    def is_num(text: str) -> bool:
        return text.replace(",", "").replace(".", "").replace("x", "").strip().isdigit()

    cells = [[str(c) for c in row] for row in rows]
    align = [
        "---:" if cells and all(is_num(r[i]) or r[i] in ("", "-") for r in cells) else "---"
        for i in range(len(headers))
    ]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(lines)


@contextlib.contextmanager
def timed() -> Iterator[Callable[[], float]]:
    """``with timed() as elapsed: ...; elapsed()`` in seconds."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())
