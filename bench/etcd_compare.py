"""Linearizable writes and compare-and-set: a 3-node ringkv cluster against 3-member etcd.

Both clusters run side by side on this machine, on free 127.0.0.1 ports, each
member with its own data directory in one scratch directory:

- etcd (Debian's ``etcd-server``): three members started here with
  ``--initial-cluster`` flags, driven through its JSON gRPC gateway
  (HTTP/1.1 ``POST /v3/kv/put``, ``/v3/kv/txn``, ``/v3/kv/range``, base64 keys
  and values) over keep-alive connections. etcd fsyncs its WAL before it
  acknowledges a write; nothing here turns that off.
- ringkv: ``python -m ringkv cluster up -n 3 --detach`` (LMDB, ``--fsync
  always``, the default: a write is acknowledged only after its group commit
  is fsynced), a keyspace ``bench`` created with ``PUT /v1/keyspaces/bench
  {"mode": "strong", "n": 3}``, driven over RESP. Every write in a strong
  keyspace is a CASPaxos round over the key's three replicas.

One load generator drives both: ``--workers`` processes, each running asyncio
tasks on uvloop (``--concurrency`` in total, default 32, spread evenly over
the three members of either system), one connection per task. By default
both sides use a bare asyncio client (HTTP/1.1 for etcd, RESP for ringkv):
the generator shares the CPUs with the servers, and aiohttp costs about three
times the CPU per request of the bare HTTP client (redis-py about twice the
bare RESP one), which would be taken from the servers of one side more than
the other. ``--etcd-client aiohttp`` and ``--resp-client redis-py`` measure
with the libraries instead. Operations:

- ``put``: etcd ``/v3/kv/put``; ringkv ``SET`` on a connection that sent
  ``RINGKV.KEYSPACE bench``.
- ``cas``: etcd ``/v3/kv/txn`` comparing the key's value; ringkv
  ``RINGKV.CAS key expected new``. Each task owns its keys and swaps from the
  value it last wrote, so nearly every CAS succeeds; one that compared and did
  not match (``succeeded`` false, ``-MISMATCH``) counts as a completed
  operation and the mismatch rate is reported.
- ``get``: a linearizable read: etcd ``/v3/kv/range`` (default
  ``serializable=false``); ringkv ``GET`` after ``RINGKV.CONSISTENCY
  linearizable``.

Each measurement: setup and a warm-up (``--warmup``), then ``--seconds`` of
measured load. Throughput counts operations completed inside the window;
p50/p99 are over those operations; the generator's CPU (user + system, summed
over its worker processes, from ``getrusage`` in each worker) and the servers'
CPU (``/proc/<pid>/stat``) are taken over the same window. ``--rounds``
repeats every measurement, alternating which system goes first; a row is the
run with the median ops/s, and ``x etcd`` is the median of the per-round
ratios (ringkv ops/s / etcd ops/s, measured back to back).

When this build's ringkv has no strong keyspaces (the PUT answers 400, or a
probe finds SET/GET, RINGKV.CAS or linearizable reads not wired yet), the
ringkv rows say so and the etcd rows are still measured.

    .venv/bin/python bench/etcd_compare.py                 # put, cas, get; 10 s each
    .venv/bin/python bench/etcd_compare.py --rounds 3 --markdown
    .venv/bin/python bench/etcd_compare.py --quick         # put, cas; 1.5 s each: ~15 s

Results go to ``bench/results/<timestamp>-etcd_compare.json`` (gitignored).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import multiprocessing
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from _common import (
    RESULTS_DIR,
    HarnessError,
    ProcessSet,
    ProcessSpec,
    console,
    cpu_seconds,
    free_port,
    machine_info,
    markdown_table,
    median,
    resp_call,
    run_main,
    stop_on_signals,
    timestamp,
    write_results,
)
from rich.table import Table

from ringkv.cluster_cli import free_base_port

OPS = ("put", "cas", "get")
OP_LABELS = {"put": "put", "cas": "cas", "get": "get-linearizable"}
SYSTEMS = ("etcd", "ringkv")
KEYSPACE = "bench"
UNAVAILABLE = "ringkv strong keyspaces not available in this build"
OK, MISMATCH, ERROR = "ok", "mismatch", "error"
HOST = "127.0.0.1"
SETUP_TIMEOUT_S = 120.0  # connecting and preloading the owned keys, per measurement


# -- etcd ---------------------------------------------------------------------------


@dataclass
class EtcdSpec(ProcessSpec):
    """One etcd member; ``initial_cluster`` names all three (ports picked up front)."""

    name: str
    client_port: int
    peer_port: int
    initial_cluster: str
    token: str
    binary: str = "etcd"
    labels: dict[str, str] = field(default_factory=dict)
    host: str = HOST
    kind: str = "etcd"

    def prepare(self, workdir: Path) -> tuple[list[str], dict[str, str], int]:
        client = f"http://{self.host}:{self.client_port}"
        peer = f"http://{self.host}:{self.peer_port}"
        argv = [
            self.binary, "--name", self.name, "--data-dir", str(workdir / f"{self.name}-data"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", self.initial_cluster, "--initial-cluster-state", "new",
            "--initial-cluster-token", self.token,
            "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        return argv, env, self.client_port

    def wait_ready(
        self, proc: subprocess.Popen[bytes], port: int, workdir: Path, deadline: float
    ) -> tuple[int, int, dict[str, Any]]:
        url = f"http://{self.host}:{port}/health"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise HarnessError(f"{self.name} exited with code {proc.returncode}")
            status, body = _http_json("GET", url, timeout_s=1.0)
            if status == 200 and body.get("health") == "true":  # has a leader
                return proc.pid, port, {"peer_port": self.peer_port}
            time.sleep(0.1)
        raise HarnessError(f"{self.name} was not healthy at {url} in time")


def etcd_specs(binary: str, members: int = 3) -> list[EtcdSpec]:
    ports: list[int] = []
    while len(ports) < 2 * members:
        port = free_port(HOST)
        if port not in ports:
            ports.append(port)
    names = [f"etcd{i + 1}" for i in range(members)]
    cluster = ",".join(f"{n}=http://{HOST}:{ports[members + i]}" for i, n in enumerate(names))
    token = f"ringkv-bench-{os.getpid()}-{time.time_ns()}"
    return [
        EtcdSpec(n, ports[i], ports[members + i], cluster, token, binary=binary)
        for i, n in enumerate(names)
    ]


def _http_json(
    method: str, url: str, body: object = None, timeout_s: float = 5.0
) -> tuple[int, dict[str, Any]]:
    """One HTTP request with a JSON body; ``(0, {})`` when nothing answered."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            status, raw = reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (OSError, ValueError):
        return 0, {}
    try:
        parsed = json.loads(raw or b"{}")
    except ValueError:
        parsed = {"raw": raw[:300].decode(errors="replace")}
    return status, parsed if isinstance(parsed, dict) else {"value": parsed}


def _tool_first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else "?"


# -- ringkv cluster -----------------------------------------------------------------


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RINGKV_")}


class RingkvCluster:
    """``ringkv cluster up -n N --detach --dir D``; stopped by ``cluster down --dir D``.

    The nodes are detached (their own session), so they do not die with this
    process: ``close`` runs ``cluster down`` and then checks, by the PIDs in
    ``cluster.json``, that every node is gone (SIGKILL otherwise).
    """

    def __init__(self, directory: Path, nodes: int = 3, python: str = sys.executable) -> None:
        self.directory = directory
        self.count = nodes
        self.python = python
        self.nodes: list[dict[str, Any]] = []
        self.base_port = 0

    def __enter__(self) -> RingkvCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _cli(self, *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
        argv = [self.python, "-m", "ringkv", "cluster", *args, "--dir", str(self.directory)]
        return subprocess.run(
            argv, check=False, capture_output=True, text=True, timeout=timeout_s,
            env={**_clean_env(), "COLUMNS": "160", "NO_COLOR": "1", "TERM": "dumb"},
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def start(self, timeout_s: float = 60.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.base_port = free_base_port(self.count)
        try:
            out = self._cli(
                "up", "-n", str(self.count), "--detach", "--base-port", str(self.base_port),
                "--timeout", str(timeout_s), timeout_s=timeout_s + 60,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            self._read_nodes()
            raise HarnessError("`ringkv cluster up` did not return in time") from None
        self._read_nodes()
        if out.returncode != 0 or len(self.nodes) != self.count:
            logs = "\n".join(self._log_tail(node) for node in self.nodes)
            raise HarnessError(
                f"`ringkv cluster up` failed (exit {out.returncode}):\n"
                f"{out.stdout[-2000:]}{out.stderr[-2000:]}\n{logs}"
            )

    def _read_nodes(self) -> None:
        path = self.directory / "cluster.json"
        with contextlib.suppress(OSError, ValueError):
            self.nodes = list(json.loads(path.read_text())["nodes"])

    @staticmethod
    def _log_tail(node: dict[str, Any], lines: int = 15) -> str:
        try:
            text = Path(node["log"]).read_text(errors="replace")
        except OSError:
            return ""
        return f"--- {node['log']} ---\n" + "\n".join(text.splitlines()[-lines:])

    def pids(self) -> list[int]:
        return [int(node["pid"]) for node in self.nodes]

    def alive(self) -> list[int]:
        return [pid for pid in self.pids() if self._is_ours(pid)]

    def _is_ours(self, pid: int) -> bool:
        """Running, not a zombie, and still one of our nodes (not a reused PID)."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, IndexError):
            return False
        return stat[0] != "Z" and str(self.directory).encode() in cmdline

    def close(self) -> None:
        if not self.nodes:
            self._read_nodes()
        if not self.nodes:
            return
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            self._cli("down", timeout_s=60)
        deadline = time.monotonic() + 20
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def durability(self) -> list[dict[str, Any]]:
        """Each node's engine and fsync mode, as its INFO persistence reports them."""
        found = []
        for node in self.nodes:
            info = resp_call(int(node["resp_port"]), "INFO", "persistence")
            found.append(
                {"node": node["id"], "engine": info.get("engine", "?"), "fsync": info.get("fsync")}
            )
        return found


def probe_strong(cluster: RingkvCluster, ops: list[str]) -> dict[str, str | None]:
    """Which operations this build can run in a strong keyspace: op -> reason it cannot.

    The keyspace is created here (201, or 200 when it exists). A 400 means
    no strong keyspaces; a 201 is not trusted alone: one write is read back
    from another node, one CAS must succeed and one must MISMATCH, and a
    linearizable read must see the last value.
    """
    http = int(cluster.nodes[0]["http_port"])
    url = f"http://{HOST}:{http}/v1/keyspaces/{KEYSPACE}"
    status, body = _http_json("PUT", url, {"mode": "strong", "n": 3}, timeout_s=30)
    if status not in (200, 201):
        message = body.get("error", {}).get("message", "") if isinstance(body, dict) else ""
        reason = f"{UNAVAILABLE} (PUT /v1/keyspaces/{KEYSPACE} mode strong: {status} {message})"
        return dict.fromkeys(ops, reason.replace(" )", ")"))
    if body.get("mode") != "strong":
        return dict.fromkeys(ops, f"{UNAVAILABLE} (the keyspace was created as {body})")
    ports = [int(node["resp_port"]) for node in cluster.nodes]
    reasons: dict[str, str | None] = dict.fromkeys(ops)
    checks: list[tuple[str, Callable[[Any, Any], str | None]]] = [
        ("put", _probe_set_get),
        ("cas", _probe_cas),
        ("get", _probe_linearizable_get),
    ]
    import redis

    first = redis.Redis(host=HOST, port=ports[0], single_connection_client=True, socket_timeout=30)
    other = redis.Redis(host=HOST, port=ports[-1], single_connection_client=True, socket_timeout=30)
    try:
        for client in (first, other):
            client.execute_command("RINGKV.KEYSPACE", KEYSPACE)
        for op, check in checks:
            try:
                problem = check(first, other)
            except redis.RedisError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if problem is not None:
                if op == "put":  # no write, no preload: nothing else can run
                    return dict.fromkeys(ops, f"{UNAVAILABLE} ({problem})")
                reasons[op] = f"{UNAVAILABLE} ({problem})"
    except redis.RedisError as exc:
        return dict.fromkeys(ops, f"{UNAVAILABLE} (RINGKV.KEYSPACE {KEYSPACE}: {exc})")
    finally:
        first.close()
        other.close()
    return {op: reasons[op] for op in ops}


def _probe_set_get(first: Any, other: Any) -> str | None:
    first.execute_command("SET", "probe", "v1")
    got = other.execute_command("GET", "probe")
    if got != b"v1":
        return f"SET on one node, then GET on another read {got!r}, not b'v1'"
    return None


def _probe_cas(first: Any, other: Any) -> str | None:
    import redis

    version = first.execute_command("RINGKV.CAS", "probe", "v1", "v2")
    if not isinstance(version, int):
        return f"RINGKV.CAS answered {version!r}, not a version"
    try:
        reply = other.execute_command("RINGKV.CAS", "probe", "v1", "v3")
    except redis.ResponseError as exc:
        if str(exc).startswith("MISMATCH"):
            return None
        return f"RINGKV.CAS with a stale value: {exc}"
    return f"RINGKV.CAS with a stale value answered {reply!r}, not MISMATCH"


def _probe_linearizable_get(first: Any, other: Any) -> str | None:
    first.execute_command("SET", "probe", "v4")
    other.execute_command("RINGKV.CONSISTENCY", "linearizable")
    got = other.execute_command("GET", "probe")
    other.execute_command("RINGKV.CONSISTENCY", "quorum")
    return None if got == b"v4" else f"a linearizable GET read {got!r}, not b'v4'"


# -- the load generator: worker processes -------------------------------------------


class OpError(Exception):
    """A definite error answer (an HTTP error status, a RESP error reply)."""


class RespError(OpError):
    """A RESP error reply (``-MISMATCH ...``, ``-TIMEOUT ...``)."""


@dataclass
class TaskState:
    """One asyncio task of a worker: its member, its keys, what it last wrote."""

    index: int  # over all workers: spreads tasks over the members
    port: int
    put_keys: list[bytes]
    owned_keys: list[bytes]  # cas and get: keys only this task writes
    value_bytes: int
    last: list[bytes | None] = field(default_factory=list)
    stale: set[int] = field(default_factory=set)  # owned keys whose value is unknown
    counter: int = 0
    cursor: int = 0
    conn: Any = None

    def new_value(self) -> bytes:
        self.counter += 1
        return (b"%d:%d:" % (self.index, self.counter)).ljust(self.value_bytes, b"v")

    def next_put_key(self) -> bytes:
        self.cursor += 1
        return self.put_keys[self.cursor % len(self.put_keys)]

    def next_owned(self) -> int:
        self.cursor += 1
        return self.cursor % len(self.owned_keys)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class RawHttp:
    """A bare HTTP/1.1 keep-alive connection: one POST, one response, in turn.

    The lean alternative to aiohttp (``--etcd-client raw``), as ``RawResp`` is
    to redis-py: it reads Content-Length and chunked bodies, nothing more."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int
    ) -> None:
        self.reader, self.writer = reader, writer
        self.host = b"%s:%d" % (HOST.encode(), port)

    @classmethod
    async def connect(cls, port: int) -> RawHttp:
        reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
        return cls(reader, writer, port)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.writer.write(
            b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path.encode(), self.host, len(body), body)
        )
        status_line = await self.reader.readline()
        if not status_line.startswith(b"HTTP/1.1 "):
            raise ConnectionError(f"bad status line {status_line[:60]!r}")
        length, chunked = -1, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        if chunked:
            return int(status_line[9:12]), await self._chunks()
        if length < 0:
            raise ConnectionError("a response without a length")
        return int(status_line[9:12]), await self.reader.readexactly(length)

    async def _chunks(self) -> bytes:
        parts = []
        while size := int((await self.reader.readline()).split(b";")[0], 16):
            parts.append((await self.reader.readexactly(size + 2))[:-2])
        while await self.reader.readline() not in (b"\r\n", b""):  # trailers
            pass
        return b"".join(parts)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self.writer.wait_closed()


class EtcdDriver:
    """etcd's JSON gateway: aiohttp keep-alive connections (one pool per worker),
    or with ``--etcd-client raw`` one ``RawHttp`` connection per task."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.raw = job["etcd_client"] == "raw"
        self.session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        if not self.raw:
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=120)
            self.session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None)
            )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def connect(self, task: TaskState) -> None:
        if self.raw:
            task.conn = await RawHttp.connect(task.port)
        else:
            task.conn = f"http://{HOST}:{task.port}"

    async def recover(self, task: TaskState) -> None:
        """A fresh raw connection; aiohttp drops a connection it was cancelled on itself."""
        if self.raw:
            if task.conn is not None:
                await task.conn.close()
                task.conn = None
            await self.connect(task)

    async def _post(self, task: TaskState, path: str, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        if self.raw:
            status, raw = await task.conn.post(path, data)
        else:
            assert self.session is not None
            async with self.session.post(
                task.conn + path, data=data, headers={"Content-Type": "application/json"}
            ) as response:
                status, raw = response.status, await response.read()
        if status != 200:
            raise OpError(f"HTTP {status}: {raw[:160].decode(errors='replace')}")
        reply: dict[str, Any] = json.loads(raw)
        return reply

    async def write(self, task: TaskState, key: bytes, value: bytes) -> None:
        await self._post(task, "/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    async def read(self, task: TaskState, key: bytes) -> bytes | None:
        reply = await self._post(task, "/v3/kv/range", {"key": _b64(key)})
        kvs = reply.get("kvs") or []
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None

    async def put(self, task: TaskState) -> str:
        await self.write(task, task.next_put_key(), task.new_value())
        return OK

    async def cas(self, task: TaskState) -> str:
        i = task.next_owned()
        key, expected, new = task.owned_keys[i], task.last[i] or b"", task.new_value()
        compare = {"key": _b64(key), "result": "EQUAL", "target": "VALUE", "value": _b64(expected)}
        body = {
            "compare": [compare],
            "success": [{"request_put": {"key": _b64(key), "value": _b64(new)}}],
        }
        reply = await self._post(task, "/v3/kv/txn", body)
        if reply.get("succeeded"):  # the gateway leaves out a false
            task.last[i] = new
            return OK
        task.last[i] = await self.read(task, key)
        return MISMATCH

    async def get(self, task: TaskState) -> str:
        await self.read(task, task.owned_keys[task.next_owned()])
        return OK


async def _read_reply(reader: asyncio.StreamReader) -> Any:
    line = await reader.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("the server closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RespError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else (await reader.readexactly(size + 2))[:-2]
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [await _read_reply(reader) for _ in range(size)]
    if kind == b"_":
        return None
    raise ConnectionError(f"unexpected reply {line[:60]!r}")


class RawResp:
    """A bare asyncio RESP connection: one command, one reply (no pipelining)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> RawResp:
        reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
        return cls(reader, writer)

    async def call(self, *args: bytes) -> Any:
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
        self.writer.write(b"".join(parts))
        return await _read_reply(self.reader)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self.writer.wait_closed()


class RedisPyResp:
    """redis-py's asyncio client (hiredis parser), one connection per task."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @classmethod
    async def connect(cls, port: int) -> RedisPyResp:
        import redis.asyncio

        client = redis.asyncio.Redis(host=HOST, port=port, single_connection_client=True)
        await client.initialize()
        return cls(client)

    async def call(self, *args: bytes) -> Any:
        import redis

        try:
            return await self.client.execute_command(*args)
        except redis.ResponseError as exc:
            raise RespError(str(exc)) from None

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.aclose()


class RingkvDriver:
    """RESP to ringkv, one connection per task, in the strong keyspace ``bench``."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.client_class = RawResp if job["resp_client"] == "raw" else RedisPyResp

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def connect(self, task: TaskState) -> None:
        conn = await self.client_class.connect(task.port)
        await conn.call(b"RINGKV.KEYSPACE", KEYSPACE.encode())
        if self.job["op"] == "get":
            await conn.call(b"RINGKV.CONSISTENCY", b"linearizable")
        task.conn = conn

    async def recover(self, task: TaskState) -> None:
        """After a timeout or a broken connection: a fresh connection."""
        if task.conn is not None:
            await task.conn.close()
            task.conn = None
        await self.connect(task)

    async def write(self, task: TaskState, key: bytes, value: bytes) -> None:
        reply = await task.conn.call(b"SET", key, value)
        if reply not in (b"OK", True):
            raise OpError(f"SET answered {reply!r}")

    async def read(self, task: TaskState, key: bytes) -> bytes | None:
        value: bytes | None = await task.conn.call(b"GET", key)
        return value

    async def put(self, task: TaskState) -> str:
        await self.write(task, task.next_put_key(), task.new_value())
        return OK

    async def cas(self, task: TaskState) -> str:
        i = task.next_owned()
        key, expected, new = task.owned_keys[i], task.last[i] or b"", task.new_value()
        try:
            await task.conn.call(b"RINGKV.CAS", key, expected, new)
        except RespError as exc:
            if not str(exc).startswith("MISMATCH"):
                raise
            task.last[i] = await self.read(task, key)
            return MISMATCH
        task.last[i] = new
        return OK

    async def get(self, task: TaskState) -> str:
        await self.read(task, task.owned_keys[task.next_owned()])
        return OK


Driver = EtcdDriver | RingkvDriver


@dataclass
class Stats:
    """What one worker saw inside the measured window."""

    start_at: float
    end_at: float
    ops: int = 0
    errors: int = 0
    mismatches: int = 0
    latencies_ms: array[float] = field(default_factory=lambda: array("d"))
    error_kinds: Counter[str] = field(default_factory=Counter)

    def record(self, outcome: str, started: float, finished: float, error: str = "") -> None:
        if not self.start_at <= finished <= self.end_at:
            return
        if outcome == ERROR:
            self.errors += 1
            self.error_kinds[error[:120]] += 1
            return
        self.ops += 1
        self.mismatches += outcome == MISMATCH
        self.latencies_ms.append((finished - started) * 1000.0)


async def _drive(
    driver: Driver, task: TaskState, operation: Callable[[TaskState], Awaitable[str]],
    stats: Stats, op_timeout_s: float,
) -> None:  # fmt: skip
    """One task: operations back to back until the window closes."""
    clock = time.monotonic
    while (started := clock()) < stats.end_at:
        error = ""
        try:
            async with asyncio.timeout(op_timeout_s):
                outcome = await operation(task)
        except TimeoutError:
            outcome, error = ERROR, f"no answer in {op_timeout_s:g} s (outcome unknown)"
        except Exception as exc:
            outcome, error = ERROR, f"{type(exc).__name__}: {exc}"
        stats.record(outcome, started, clock(), error)
        if outcome == ERROR:
            await _recover(driver, task, op_timeout_s)


async def _recover(driver: Driver, task: TaskState, op_timeout_s: float) -> None:
    """Reconnect; for cas, re-read the owned keys (after an unknown outcome the
    value is unknown, and a CAS from a wrong value would only MISMATCH)."""
    await asyncio.sleep(0.01)  # a refusing server must not turn into a busy loop
    if task.last:  # cas and get preloaded their keys
        task.stale.update(range(len(task.owned_keys)))
    with contextlib.suppress(Exception):
        async with asyncio.timeout(op_timeout_s):
            await driver.recover(task)
            for i in sorted(task.stale):
                task.last[i] = await driver.read(task, task.owned_keys[i])
            task.stale.clear()


async def _prepare_task(driver: Driver, task: TaskState, job: dict[str, Any]) -> None:
    """Connect, and write each owned key once (cas and get need it to exist)."""
    async with asyncio.timeout(job["op_timeout_s"] * (2 + len(task.owned_keys))):
        await driver.connect(task)
        if job["op"] in ("cas", "get"):
            task.last = [None] * len(task.owned_keys)
            for i, key in enumerate(task.owned_keys):
                value = task.new_value()
                await driver.write(task, key, value)
                task.last[i] = value


def _make_tasks(job: dict[str, Any]) -> list[TaskState]:
    tasks = []
    for local in range(job["tasks"]):
        index = job["task_offset"] + local
        prefix = f"bench/{job['run_id']}/{job['op']}/t{index}/".encode()
        tasks.append(
            TaskState(
                index=index,
                port=job["ports"][index % len(job["ports"])],
                put_keys=[prefix + b"%d" % i for i in range(job["put_keys_per_task"])],
                owned_keys=[prefix + b"own%d" % i for i in range(job["owned_keys_per_task"])],
                value_bytes=job["value_bytes"],
            )
        )
    return tasks


def _cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _run_job(job: dict[str, Any], conn: Connection) -> dict[str, Any]:
    """Set up, report ready, wait for go, run the window; the result as a dict."""
    driver: Driver = EtcdDriver(job) if job["system"] == "etcd" else RingkvDriver(job)
    tasks = _make_tasks(job)
    await driver.open()
    try:
        try:
            await asyncio.gather(*(_prepare_task(driver, t, job) for t in tasks))
        except Exception as exc:
            conn.send({"setup_error": f"{type(exc).__name__}: {exc}"[:500]})
        else:
            conn.send({"ready": True})
        if not conn.poll(SETUP_TIMEOUT_S + 30):
            return {"aborted": "no go from the parent"}
        control = conn.recv()
        if not isinstance(control, dict) or "abort" in control:  # None: the parent is closing
            return {"aborted": control and control["abort"]}
        stats = Stats(control["start_at"], control["end_at"])
        operation = getattr(driver, job["op"])
        runners = [
            asyncio.create_task(_drive(driver, t, operation, stats, job["op_timeout_s"]))
            for t in tasks
        ]
        await asyncio.sleep(max(0.0, stats.start_at - time.monotonic()))
        cpu0 = _cpu_now()
        await asyncio.sleep(max(0.0, stats.end_at - time.monotonic()))
        cpu1 = _cpu_now()
        await asyncio.gather(*runners)
        return {
            "ops": stats.ops,
            "errors": stats.errors,
            "mismatches": stats.mismatches,
            "latencies_ms": stats.latencies_ms.tobytes(),
            "error_kinds": dict(stats.error_kinds.most_common(5)),
            "cpu_s": cpu1 - cpu0,
        }
    finally:
        for task in tasks:
            if isinstance(task.conn, RawResp | RedisPyResp | RawHttp):
                await task.conn.close()
        await driver.close()


def _worker_main(conn: Connection) -> None:
    """A load generator process: runs the jobs it is sent until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us; Ctrl-C is its
    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        try:
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                result = runner.run(_run_job(job, conn))
        except Exception:
            result = {"crashed": traceback.format_exc()[-2000:]}
        try:
            conn.send(result)
        except (BrokenPipeError, OSError):
            return


# -- the load generator: the parent's side ------------------------------------------


@dataclass
class System:
    """One cluster under test."""

    name: str
    ports: list[int]  # where clients connect: etcd client ports, ringkv RESP ports
    pids: list[int]
    durability: str
    unavailable: dict[str, str | None] = field(default_factory=dict)  # op -> why not


class LoadGenerator:
    """``workers`` spawned processes, kept for every measurement of the run."""

    def __init__(self, workers: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        for _ in range(workers):
            parent_end, child_end = context.Pipe()
            proc = context.Process(target=_worker_main, args=(child_end,), daemon=True)
            proc.start()
            child_end.close()
            self.conns.append(parent_end)
            self.procs.append(proc)

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        deadline = time.monotonic() + 10
        for proc in self.procs:
            proc.join(timeout=max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()  # by its PID
                proc.join(timeout=5)
        for conn in self.conns:
            conn.close()

    def _receive(self, conn: Connection, deadline: float, what: str) -> dict[str, Any]:
        if not conn.poll(max(0.0, deadline - time.monotonic())):
            raise HarnessError(f"a load generator process sent no {what} in time")
        try:
            message: dict[str, Any] = conn.recv()
        except EOFError:
            raise HarnessError("a load generator process died") from None
        if "crashed" in message:
            raise HarnessError(f"a load generator process failed:\n{message['crashed']}")
        return message

    def run(self, job: dict[str, Any], warmup_s: float, seconds: float,
            server_pids: list[int], idle_pids: list[int]) -> dict[str, Any]:  # fmt: skip
        """Send ``job`` to every worker; measure ``seconds`` after ``warmup_s``."""
        total = job["concurrency"]
        count = len(self.conns)
        shares = [total // count + (i < total % count) for i in range(count)]
        for i, conn in enumerate(self.conns):
            conn.send({**job, "tasks": shares[i], "task_offset": sum(shares[:i])})
        deadline = time.monotonic() + SETUP_TIMEOUT_S
        setup = [self._receive(conn, deadline, "ready signal") for conn in self.conns]
        problems = [m["setup_error"] for m in setup if "setup_error" in m]
        start_at = time.monotonic() + warmup_s
        end_at = start_at + seconds
        control = {"abort": problems[0]} if problems else {"start_at": start_at, "end_at": end_at}
        for conn in self.conns:
            conn.send(control)
        server_cpu = idle_cpu = 0.0
        if not problems:
            time.sleep(max(0.0, start_at - time.monotonic()))
            before = _servers_cpu(server_pids), _servers_cpu(idle_pids)
            time.sleep(max(0.0, end_at - time.monotonic()))
            server_cpu = _servers_cpu(server_pids) - before[0]
            idle_cpu = _servers_cpu(idle_pids) - before[1]
        deadline = end_at + 2 * job["op_timeout_s"] + 30
        results = [self._receive(conn, deadline, "result") for conn in self.conns]
        if problems:
            return {"setup_error": problems[0]}
        merged = _merge(results, seconds, server_cpu)
        merged["idle_neighbour_cpu_s"] = idle_cpu  # the other cluster, idle meanwhile
        return merged


def _servers_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            user, system = cpu_seconds(pid)
            total += user + system
    return total


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest rank, on a sorted list."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _merge(results: list[dict[str, Any]], seconds: float, server_cpu: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors_by_kind: Counter[str] = Counter()
    for result in results:
        samples = array("d")
        samples.frombytes(result["latencies_ms"])
        latencies.extend(samples)
        errors_by_kind.update(result["error_kinds"])
    latencies.sort()
    ops = sum(r["ops"] for r in results)
    generator_cpu = sum(r["cpu_s"] for r in results)
    nproc = os.cpu_count() or 1
    return {
        "ops": ops,
        "seconds": seconds,
        "ops_per_s": ops / seconds,
        "p50_ms": _percentile(latencies, 0.50),
        "p99_ms": _percentile(latencies, 0.99),
        "max_ms": latencies[-1] if latencies else math.nan,
        "errors": sum(r["errors"] for r in results),
        "error_kinds": dict(errors_by_kind.most_common(5)),
        "mismatches": sum(r["mismatches"] for r in results),
        "mismatch_rate": sum(r["mismatches"] for r in results) / ops if ops else 0.0,
        "generator_cpu_s": generator_cpu,
        "generator_cpu_share": generator_cpu / (seconds * nproc),
        "generator_cpu_us_per_op": 1e6 * generator_cpu / ops if ops else math.nan,
        "server_cpu_s": server_cpu,
        "server_cpu_us_per_op": 1e6 * server_cpu / ops if ops else math.nan,
    }


# -- rounds, rows, reporting ----------------------------------------------------------


def run_rounds(
    generator: LoadGenerator, systems: dict[str, System], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Every (op, system) measured ``rounds`` times; the first system alternates."""
    runs: list[dict[str, Any]] = []
    order = [name for name in SYSTEMS if name in systems]
    for round_no in range(args.rounds):
        for op in args.ops:
            for name in order if round_no % 2 == 0 else order[::-1]:
                system = systems[name]
                if system.unavailable.get(op):
                    continue
                for pid in system.pids:
                    if not _pid_alive(pid):
                        raise HarnessError(f"{name} process {pid} died before the {op} run")
                job = {
                    "system": name, "op": op, "ports": system.ports,
                    "concurrency": args.concurrency, "value_bytes": args.value_bytes,
                    "put_keys_per_task": args.put_keys, "owned_keys_per_task": args.owned_keys,
                    "op_timeout_s": args.op_timeout, "resp_client": args.resp_client,
                    "etcd_client": args.etcd_client,
                    "run_id": f"{args.stamp}/r{round_no}",
                }  # fmt: skip
                idle = [
                    pid for other in systems.values() if other is not system for pid in other.pids
                ]
                result = generator.run(job, args.warmup, args.seconds, system.pids, idle)
                run = {"system": name, "op": op, "round": round_no, **result}
                runs.append(run)
                console.print(_progress_line(run, args.rounds), markup=False)
    return runs


def _pid_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _progress_line(run: dict[str, Any], rounds: int) -> str:
    label = f"{run['system']:<6} {OP_LABELS[run['op']]:<18}"
    if rounds > 1:
        label += f" round {run['round'] + 1}"
    if "setup_error" in run:
        return f"{label}: setup failed: {run['setup_error']}"
    return (
        f"{label}: {run['ops_per_s']:,.0f} ops/s, p50 {run['p50_ms']:.2f} ms, "
        f"p99 {run['p99_ms']:.2f} ms, {run['errors']} errors, "
        f"generator {100 * run['generator_cpu_share']:.0f}% of the CPUs"
    )


def summarize(
    runs: list[dict[str, Any]], systems: dict[str, System], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """One row per (op, system): the run with the median ops/s, and the ratio."""
    rows: list[dict[str, Any]] = []
    for op in args.ops:
        ratios = _round_ratios(runs, op)
        for name in (n for n in SYSTEMS if n in systems):
            system = systems[name]
            base = {"system": name, "op": op, "concurrency": args.concurrency,
                    "durability": system.durability}  # fmt: skip
            reason = system.unavailable.get(op)
            mine = [r for r in runs if r["system"] == name and r["op"] == op]
            good = [r for r in mine if "setup_error" not in r]
            if reason or not good:
                why = reason or (mine[0]["setup_error"] if mine else "not run")
                rows.append({**base, "available": False, "note": why})
                continue
            mid = median([r["ops_per_s"] for r in good])
            chosen = min(good, key=lambda r: abs(r["ops_per_s"] - mid))
            row = {**base, "available": True, **chosen, "ops_per_s_median": mid}
            row["errors"] = sum(r["errors"] for r in good)
            row["error_kinds"] = dict(sum((Counter(r["error_kinds"]) for r in good), Counter()))
            row["ratio_etcd"] = (median(ratios) if ratios else None) if name != "etcd" else 1.0
            row["ratio_etcd_by_round"] = ratios if name != "etcd" else None
            row["runs"] = good
            del row["round"]
            rows.append(row)
    return rows


def _round_ratios(runs: list[dict[str, Any]], op: str) -> list[float]:
    """ringkv ops/s over etcd ops/s, round by round (measured back to back)."""
    by_round: dict[int, dict[str, float]] = {}
    for r in runs:
        if r["op"] == op and "setup_error" not in r:
            by_round.setdefault(r["round"], {})[r["system"]] = r["ops_per_s"]
    return [
        pair["ringkv"] / pair["etcd"]
        for _, pair in sorted(by_round.items())
        if pair.get("etcd") and "ringkv" in pair
    ]


TABLE_HEADERS = [
    "system", "durability", "op", "conc", "ops/s", "p50 ms", "p99 ms", "errors", "mismatch %",
    "gen CPU s", "gen CPU %", "gen us/op", "srv us/op", "x etcd",
]  # fmt: skip


def table_cells(row: dict[str, Any]) -> list[str]:
    head = [row["system"], row["durability"], OP_LABELS[row["op"]], str(row["concurrency"])]
    if not row["available"]:
        return [*head, "n/a", *["-"] * (len(TABLE_HEADERS) - len(head) - 1)]
    ratio = row.get("ratio_etcd")
    return [
        *head,
        f"{row['ops_per_s']:,.0f}",
        f"{row['p50_ms']:.2f}",
        f"{row['p99_ms']:.2f}",
        f"{row['errors']:,}",
        f"{100 * row['mismatch_rate']:.2f}" if row["op"] == "cas" else "-",
        f"{row['generator_cpu_s']:.2f}",
        f"{100 * row['generator_cpu_share']:.1f}",
        f"{row['generator_cpu_us_per_op']:.0f}",
        f"{row['server_cpu_us_per_op']:.0f}",
        "-" if ratio is None else f"{ratio:.2f}",
    ]


def report(payload: dict[str, Any], args: argparse.Namespace) -> None:
    rows = payload["results"]
    title = (
        f"3 members each, {args.concurrency} clients, {args.seconds:g} s per run "
        f"(+{args.warmup:g} s warm-up), median of {args.rounds} round(s); "
        "x etcd: ringkv/etcd ops/s, same round"
    )
    table = Table(title=title, title_justify="left")
    for header in TABLE_HEADERS:
        table.add_column(header, justify="left" if header in TABLE_HEADERS[:3] else "right")
    previous = None
    for row in rows:
        if previous is not None and row["op"] != previous:
            table.add_section()
        previous = row["op"]
        table.add_row(*table_cells(row), style="bold" if row["system"] == "ringkv" else None)
    console.print(table)
    for row in rows:
        if not row["available"]:
            console.print(f"{row['system']} {OP_LABELS[row['op']]}: {row['note']}", markup=False)
            continue
        if row["errors"]:
            kinds = "; ".join(f"{n} x {k}" for k, n in row.get("error_kinds", {}).items())
            console.print(f"{row['system']} {row['op']} errors: {kinds}", markup=False)
        if row.get("ratio_etcd_by_round") and args.rounds > 1:
            by_round = " / ".join(f"{r:.2f}" for r in row["ratio_etcd_by_round"])
            console.print(f"{row['system']} {row['op']}: x etcd by round {by_round}", markup=False)
    settings, machine = payload["settings"], payload["machine"]
    console.print(
        f"generator: {args.workers} processes x asyncio ({settings['event_loop']}); ringkv over "
        f"{args.resp_client} RESP, etcd over {args.etcd_client} HTTP; {machine['nproc']} CPUs "
        "shared by the generator and both clusters. gen CPU % = the generator's share of all "
        "CPUs; srv us/op = CPU of the measured cluster's 3 processes per operation.",
        markup=False,
    )
    if args.markdown:
        print(markdown_table(TABLE_HEADERS, [table_cells(r) for r in rows]))


# -- main -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="linearizable put, CAS, get: 3-node ringkv (strong keyspace) vs 3-member etcd",
    )
    p.add_argument("-c", "--concurrency", type=int, default=32, help="clients in all (32)")
    p.add_argument(
        "--workers", type=int, default=None,
        help="load generator processes (default: CPUs, between 2 and 4)",
    )  # fmt: skip
    p.add_argument("--seconds", type=float, default=None, help="measured seconds per run (10)")
    p.add_argument("--warmup", type=float, default=None, help="warm-up seconds per run (2)")
    p.add_argument("--rounds", type=int, default=1, help="alternate the systems, take medians")
    p.add_argument("--ops", default=None, help="comma-separated, of put,cas,get (all three)")
    p.add_argument("--systems", default="etcd,ringkv", help="etcd,ringkv or one of them")
    p.add_argument("--value-bytes", type=int, default=100, help="value size (100)")
    p.add_argument("--put-keys", type=int, default=100, help="keys each client cycles through")
    p.add_argument("--owned-keys", type=int, default=4, help="keys each client owns for cas/get")
    p.add_argument("--op-timeout", type=float, default=5.0, help="seconds before an op is an error")
    p.add_argument(
        "--resp-client", choices=("raw", "redis-py"), default="raw",
        help="ringkv client: a bare asyncio RESP connection (raw) or redis.asyncio",
    )  # fmt: skip
    p.add_argument(
        "--etcd-client", choices=("raw", "aiohttp"), default="raw",
        help="etcd client: a bare asyncio HTTP/1.1 keep-alive connection, or aiohttp's pools",
    )  # fmt: skip
    p.add_argument("--etcd-binary", default=None, help="etcd (default: on PATH, /usr/bin/etcd)")
    p.add_argument("--quick", action="store_true", help="put,cas; 1.5 s runs: a sanity check")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="JSON goes here")
    p.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    p.add_argument("--keep", action="store_true", help="keep the scratch dir (logs, data)")
    args = p.parse_args(argv)
    args.seconds = args.seconds or (1.5 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 2.0)
    ops = args.ops or ("put,cas" if args.quick else ",".join(OPS))
    args.ops = [o.strip() for o in ops.split(",") if o.strip()]
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    args.workers = args.workers or min(4, max(2, os.cpu_count() or 2))
    args.workers = min(args.workers, args.concurrency)
    unknown = [o for o in args.ops if o not in OPS] + [s for s in args.systems if s not in SYSTEMS]
    if unknown:
        p.error(f"unknown operations or systems {unknown}")
    if min(args.concurrency, args.rounds, args.workers, args.put_keys, args.owned_keys) < 1:
        p.error("--concurrency, --rounds, --workers and the key counts must be positive")
    if args.seconds <= 0 or args.warmup < 0 or args.op_timeout <= 0 or args.value_bytes < 16:
        p.error("--seconds and --op-timeout must be positive, --value-bytes at least 16")
    return args


def start_etcd(procs: ProcessSet, binary: str) -> System:
    services = procs.start(*etcd_specs(binary), timeout_s=60)
    return System(
        name="etcd",
        ports=[s.port for s in services],
        pids=[s.pid for s in services],
        durability="WAL fsync",
        unavailable={},
    )


def start_ringkv(cluster: RingkvCluster, ops: list[str]) -> tuple[System, list[dict[str, Any]]]:
    cluster.start()
    nodes = cluster.durability()
    modes = sorted({f"{n['engine']}, fsync {n['fsync']}" for n in nodes})
    if modes != ["lmdb, fsync always"]:
        console.print(f"[yellow]warning[/]: ringkv nodes run with {modes}, not lmdb + fsync always")
    system = System(
        name="ringkv",
        ports=[int(n["resp_port"]) for n in cluster.nodes],
        pids=cluster.pids(),
        durability="fsync " + "/".join(sorted({str(n["fsync"]) for n in nodes})),
        unavailable=probe_strong(cluster, ops),
    )
    return system, nodes


def _describe(systems: dict[str, System]) -> dict[str, Any]:
    return {
        name: {"ports": s.ports, "pids": s.pids, "durability": s.durability,
               "unavailable": {op: why for op, why in s.unavailable.items() if why}}
        for name, s in systems.items()
    }  # fmt: skip


def _shown_path(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_signals()
    etcd_binary = args.etcd_binary or shutil.which("etcd") or "/usr/bin/etcd"
    if "etcd" in args.systems and not Path(etcd_binary).exists():
        console.print("[red]etcd not found[/] (Debian: apt-get install etcd-server)")
        return 2
    args.stamp = timestamp()
    payload: dict[str, Any] = {
        "benchmark": "etcd_compare",
        "format_version": 1,
        "timestamp": args.stamp,
        "command": " ".join([_shown_path(sys.executable), *sys.argv]),
        "settings": {k: v for k, v in vars(args).items() if k not in ("results_dir", "stamp")},
    }
    payload["settings"]["event_loop"] = "uvloop" if _has_uvloop() else "asyncio"
    systems: dict[str, System] = {}
    with ProcessSet(keep=args.keep) as procs, contextlib.ExitStack() as stack:
        payload["machine"] = machine_info(procs.workdir)
        payload["machine"]["etcd"] = _tool_first_line([etcd_binary, "--version"])
        console.print(
            f"[bold]etcd comparison[/]: {args.concurrency} clients over {args.workers} processes, "
            f"ops {','.join(args.ops)}, {args.seconds:g} s x {args.rounds} round(s); "
            f"{payload['machine']['nproc']} CPUs, load {payload['machine']['loadavg'][0]:.2f}"
        )
        generator = stack.enter_context(LoadGenerator(args.workers))  # spawns while servers start
        if "etcd" in args.systems:
            systems["etcd"] = start_etcd(procs, etcd_binary)
        if "ringkv" in args.systems:
            cluster = stack.enter_context(RingkvCluster(procs.workdir / "ringkv-cluster"))
            systems["ringkv"], payload["ringkv_nodes"] = start_ringkv(cluster, args.ops)
            for op, why in systems["ringkv"].unavailable.items():
                if why:
                    console.print(f"ringkv {op}: {why}", markup=False)
        payload["systems"] = _describe(systems)
        runs = run_rounds(generator, systems, args)
        if args.keep:
            console.print(f"scratch dir kept: {procs.workdir}")
    payload["results"] = summarize(runs, systems, args)
    payload["finished_at"] = timestamp()
    path = write_results("etcd_compare", payload, args.results_dir)
    report(payload, args)
    console.print(f"results: {path}")
    return 0


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    run_main(main)
