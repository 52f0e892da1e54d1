"""``ringkv verify`` on real processes: a local cluster, real faults.

The run starts a fresh local cluster (``ringkv cluster up --detach
--faults``) or uses one already running (``--cluster D``, started with
``--faults``), creates the ``verify`` keyspace, and runs the workload's
client processes through redis-py (RESP), each a single-threaded client of
one node. The nemesis acts through each node's ``/v1/admin/faults`` (links
blackholed, lossy or slow; clock offsets) and through signals to the nodes'
PIDs from cluster.json (SIGKILL then a restart with the same argv; SIGSTOP /
SIGCONT). Nothing is ever killed by name.

Outcomes follow the error table of DESIGN.md: a reply is ``ok``; an error
that says nothing happened (``UNAVAILABLE``, ``WRONGLEVEL``, ``MISMATCH``, a
refused connection) is ``fail``; a ``TIMEOUT``, a lost connection or a
client-side timeout is ``info``, and the process is retired.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ringkv.check.convergence import replicas_from_operator_json
from ringkv.check.history import FAIL, INFO, OK, Event, Recorder
from ringkv.verify.nemesis import Step, schedule, steps
from ringkv.verify.options import KEYSPACE, RunData, VerifyOptions
from ringkv.verify.workloads import OpSpec, make_workload

__all__ = ["ClusterHandle", "run_real", "start_cluster"]

OP_TIMEOUT_S = 5.0  # a client gives up (info) after this
THINK_S = (0.0, 0.02)
FINAL_READ_ATTEMPTS = 10
_DEFINITE = ("UNAVAILABLE", "WRONGLEVEL", "MISMATCH", "SIBLINGS", "ERR", "WRONGTYPE", "OOM")


class ClusterHandle:
    """A local cluster described by its cluster.json (ours or an existing one)."""

    def __init__(self, directory: Path, *, owned: bool) -> None:
        self.directory = directory
        self.owned = owned
        data = json.loads((directory / "cluster.json").read_text())
        self.nodes: dict[str, dict[str, Any]] = {spec["id"]: spec for spec in data["nodes"]}
        self.killed: set[str] = set()
        self.paused: set[str] = set()

    @property
    def ids(self) -> list[str]:
        return sorted(self.nodes, key=lambda n: (len(n), n))

    def http(self, node: str) -> str:
        return f"http://127.0.0.1:{self.nodes[node]['http_port']}"

    def kill(self, node: str) -> None:
        if node in self.killed:
            return
        self.resume(node)
        _signal(self.nodes[node]["pid"], signal.SIGKILL)
        self.killed.add(node)

    def restart(self, node: str) -> None:
        if node not in self.killed:
            return
        spec = self.nodes[node]
        argv = list(spec["argv"])
        if "--join" not in argv:  # the first node: join through any other
            other = next(n for n in self.ids if n != node)
            argv += ["--join", f"127.0.0.1:{self.nodes[other]['peer_port']}"]
        env = {k: v for k, v in os.environ.items() if k != "RINGKV_CLUSTER_SECRET"}
        with open(spec["log"], "ab") as log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        spec["pid"] = proc.pid
        self.killed.discard(node)
        self._save()

    def pause(self, node: str) -> None:
        if node in self.killed or node in self.paused:
            return
        _signal(self.nodes[node]["pid"], signal.SIGSTOP)
        self.paused.add(node)

    def resume(self, node: str) -> None:
        if node in self.paused:
            _signal(self.nodes[node]["pid"], signal.SIGCONT)
            self.paused.discard(node)

    def _save(self) -> None:
        path = self.directory / "cluster.json"
        data = json.loads(path.read_text())
        data["nodes"] = [self.nodes[n["id"]] for n in data["nodes"]]
        path.write_text(json.dumps(data, indent=2))

    def stop(self) -> None:
        for node in list(self.paused):
            self.resume(node)
        if not self.owned:
            return
        subprocess.run(
            [sys.executable, "-m", "ringkv", "cluster", "down", "--dir", str(self.directory)],
            capture_output=True,
            timeout=60,
            check=False,
        )


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def start_cluster(directory: Path, nodes: int, base_port: int) -> ClusterHandle:
    """``ringkv cluster up --detach --faults``: a fresh cluster we own."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ringkv",
            "cluster",
            "up",
            "-n",
            str(nodes),
            "--dir",
            str(directory),
            "--base-port",
            str(base_port),
            "--detach",
            "--faults",
            "--timeout",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"could not start the cluster ({result.returncode}): {result.stdout}{result.stderr}"
        )
    return ClusterHandle(directory, owned=True)


def run_real(
    options: VerifyOptions,
    cluster: ClusterHandle,
    progress: Callable[[str], None] | None = None,
) -> RunData:
    return asyncio.run(_run(options, cluster, progress or (lambda _text: None)))


async def _run(
    options: VerifyOptions, cluster: ClusterHandle, progress: Callable[[str], None]
) -> RunData:
    rng = random.Random(options.seed)
    fault_rng = random.Random(rng.getrandbits(64))
    workload_rng = random.Random(rng.getrandbits(64))
    duration_ms = int(options.time_s * 1000)
    faults = schedule(fault_rng, cluster.ids, options.faults, duration_ms)
    started = time.monotonic()
    recorder = Recorder(clock=lambda: int((time.monotonic() - started) * 1e9))
    workload = make_workload(options.workload, cas=options.strong)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        await _create_keyspace(http, cluster, options)
        nemesis = _Nemesis(cluster, http)
        driver = _Driver(cluster, recorder, options)
        stop_at = started + options.time_s
        clients = [
            asyncio.create_task(
                driver.loop(c, cluster.ids[c % len(cluster.ids)], workload, workload_rng, stop_at)
            )
            for c in range(options.processes)
        ]
        progress(f"fault phase: {len(faults)} faults over {options.time_s:g} s")
        try:
            await nemesis.run(steps(faults, duration_ms), started, progress)
            await asyncio.gather(*clients)
        finally:
            for task in clients:
                task.cancel()
            await nemesis.heal()
        recovery_started = time.monotonic()
        await _wait_recovered(http, cluster, options.recovery_s)
        recovery_ms = int((time.monotonic() - recovery_started) * 1000)
        progress(f"recovered in {recovery_ms} ms; final reads from every node")
        for index, node in enumerate(cluster.ids):
            for spec in workload.final_reads():
                await driver.final_read(1000 + index, node, spec)
        await asyncio.sleep(2)  # read repairs land
        touched = sorted(driver.touched) if options.compares_replicas else []
        replicas, homes = await _collect_replicas(http, cluster, touched)
        await driver.close()
    return RunData(
        options=options,
        events=recorder.events,
        faults=faults,
        replicas=replicas,
        homes=homes,
        recovery_ms=recovery_ms,
        executor="processes",
    )


async def _create_keyspace(
    http: aiohttp.ClientSession, cluster: ClusterHandle, options: VerifyOptions
) -> None:
    body: dict[str, Any] = {"mode": options.mode, "n": options.n_replicas}
    url = f"{cluster.http(cluster.ids[0])}/v1/keyspaces/{KEYSPACE}"
    async with http.put(url, json=body) as reply:
        if reply.status not in (200, 201):
            raise RuntimeError(f"could not create keyspace {KEYSPACE}: {await reply.text()}")
    deadline = time.monotonic() + 20
    for node in cluster.ids:  # the definition travels by gossip: wait for it
        while True:
            async with http.get(f"{cluster.http(node)}/v1/keyspaces") as reply:
                names = [k["name"] for k in (await reply.json()).get("keyspaces", [])]
            if KEYSPACE in names:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"keyspace {KEYSPACE} did not reach {node} in 20 s")
            await asyncio.sleep(0.1)


async def _wait_recovered(
    http: aiohttp.ClientSession, cluster: ClusterHandle, limit_s: float
) -> None:
    """Every node up, seeing every member alive, and no hint pending (bounded)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        healthy = True
        for node in cluster.ids:
            try:
                async with http.get(f"{cluster.http(node)}/v1/cluster") as reply:
                    view = await reply.json()
            except (TimeoutError, aiohttp.ClientError):
                healthy = False
                break
            members = view["members"]
            if any(m["state"] != "alive" for m in members) or any(
                m["hints_pending"] for m in members if m["id"] == view["node"]
            ):
                healthy = False
                break
        if healthy:
            return
        await asyncio.sleep(0.25)


async def _collect_replicas(
    http: aiohttp.ClientSession, cluster: ClusterHandle, keys: list[str]
) -> tuple[dict[str, dict[str, list[Any] | None]], dict[str, tuple[str, ...]]]:
    """Every home replica's versions of ``keys``, from ``?replicas=true``."""
    base = cluster.http(cluster.ids[0])
    reports = []
    for key in keys:
        url = f"{base}/v1/kv/{key}"
        async with http.get(url, params={"replicas": "true", "keyspace": KEYSPACE}) as reply:
            reports.append(await reply.json())
    stored, homes = replicas_from_operator_json(reports)
    return dict(stored), {key: tuple(nodes) for key, nodes in homes.items()}


class _Nemesis:
    def __init__(self, cluster: ClusterHandle, http: aiohttp.ClientSession) -> None:
        self.cluster = cluster
        self.http = http

    async def run(self, plan: list[Step], started: float, progress: Callable[[str], None]) -> None:
        said = ""
        for step in plan:
            delay = started + step.at_ms / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            label = step.label or step.action
            if label != said:  # a clock strobe's many flips are one line
                progress(f"nemesis: {label}")
                said = label
            await self.apply(step)

    async def apply(self, step: Step) -> None:
        cluster = self.cluster
        match step.action:
            case "cut":
                for src, dst in sorted(step.links):
                    await self._post(src, {"link": {"to": dst, "direction": "out",
                                                    "mode": "blackhole"}})  # fmt: skip
            case "heal_network" | "links" if not (step.rate or step.delay_ms):
                await self._clear_all()
            case "links":
                for node in cluster.ids:
                    link: dict[str, Any] = {"to": "*", "direction": "out"}
                    if step.rate:
                        link.update(mode="drop", rate=step.rate)
                    else:
                        link.update(mode="delay", delay_ms=step.delay_ms)
                    await self._post(node, {"link": link})
            case "kill":
                cluster.kill(step.node)
            case "restart":
                cluster.restart(step.node)
            case "pause":
                cluster.pause(step.node)
            case "resume":
                cluster.resume(step.node)
            case "clock":
                await self._post(step.node, {"clock_offset_ms": step.offset_ms})
            case "heal":
                await self.heal()
            case _:
                raise ValueError(f"unknown nemesis step {step.action!r}")

    async def heal(self) -> None:
        for node in list(self.cluster.paused):
            self.cluster.resume(node)
        for node in list(self.cluster.killed):
            self.cluster.restart(node)
        await self._clear_all()

    async def _clear_all(self) -> None:
        for node in self.cluster.ids:
            await self._request("DELETE", node, None)

    async def _post(self, node: str, body: dict[str, Any]) -> None:
        await self._request("POST", node, body)

    async def _request(self, method: str, node: str, body: dict[str, Any] | None) -> None:
        if node in self.cluster.killed or node in self.cluster.paused:
            return  # a paused node cannot answer; a heal clears it after it resumes
        url = f"{self.cluster.http(node)}/v1/admin/faults"
        for _ in range(20):  # a restarted node takes a moment to listen
            try:
                async with self.http.request(method, url, json=body) as reply:
                    if reply.status >= 400:
                        raise RuntimeError(f"{method} {url}: {reply.status} {await reply.text()}")
                    return
            except (TimeoutError, aiohttp.ClientConnectionError):
                await asyncio.sleep(0.25)
        raise RuntimeError(f"{node} did not answer {method} /v1/admin/faults")


class _Driver:
    """Client processes over RESP, recording into ``recorder``."""

    def __init__(self, cluster: ClusterHandle, recorder: Recorder, options: VerifyOptions) -> None:
        self.cluster = cluster
        self.recorder = recorder
        self.options = options
        self.touched: set[str] = set()
        self._connections: dict[int, aioredis.Redis] = {}

    async def _connection(self, client: int, node: str) -> aioredis.Redis:
        conn = self._connections.get(client)
        if conn is None:
            spec = self.cluster.nodes[node]
            conn = aioredis.Redis(
                host="127.0.0.1",
                port=spec["resp_port"],
                socket_timeout=OP_TIMEOUT_S,
                socket_connect_timeout=2,
                single_connection_client=True,
                # No silent retries: a retried command could apply twice, and
                # its outcome must be recorded as the client saw it.
                retry=Retry(NoBackoff(), 0),
            )
            setup: Any = conn
            await setup.execute_command("RINGKV.KEYSPACE", KEYSPACE)
            await setup.execute_command("RINGKV.CONSISTENCY", self.options.level)
            self._connections[client] = conn
        return conn

    async def _drop(self, client: int) -> None:
        conn = self._connections.pop(client, None)
        if conn is not None:
            try:
                await conn.aclose()
            except (OSError, RedisConnectionError):
                pass

    async def close(self) -> None:
        for client in list(self._connections):
            await self._drop(client)

    async def loop(
        self,
        client: int,
        node: str,
        workload: Any,
        rng: random.Random,
        stop_at: float,
    ) -> None:
        while time.monotonic() < stop_at:
            spec: OpSpec = workload.next_op(client, rng)
            await self.perform(client, node, spec)
            await asyncio.sleep(rng.uniform(*THINK_S))

    async def final_read(self, client: int, node: str, spec: OpSpec) -> None:
        for _ in range(FINAL_READ_ATTEMPTS):
            event = await self.perform(client, node, spec, final=True)
            if event.type == OK:
                return
            await asyncio.sleep(0.5)

    async def perform(self, client: int, node: str, spec: OpSpec, *, final: bool = False) -> Event:
        extra: dict[str, Any] = {"level": self.options.level}
        if final:
            extra["final"] = True
        invoke = self.recorder.invoke(client, spec.f, spec.key, spec.value, node=node, **extra)
        if spec.f == "add" and spec.members:
            self.touched.update(spec.members)
        elif not spec.members:
            self.touched.add(spec.key)
        more: dict[str, Any] = {}  # what the operation saw before it wrote (siblings)
        try:
            conn = await self._connection(client, node)
        except (RedisConnectionError, RedisTimeoutError, ResponseError, OSError) as exc:
            # Nothing of this operation was sent: certainly no effect.
            await self._drop(client)
            return self.recorder.complete(invoke, FAIL, error=f"no connection: {exc}")
        try:
            value = await asyncio.wait_for(self._execute(conn, spec, more), OP_TIMEOUT_S)
        except ResponseError as exc:
            text = str(exc)
            kind = FAIL if text.split(" ", 1)[0] in _DEFINITE else INFO
            event = self.recorder.complete(invoke, self._unsent(kind, more), error=text, **more)
        except (RedisConnectionError, ConnectionRefusedError) as exc:
            # The command may have been sent before the connection broke: unknown.
            await self._drop(client)
            kind = self._unsent(INFO, more)
            event = self.recorder.complete(invoke, kind, error=str(exc), **more)
        except (TimeoutError, RedisTimeoutError, OSError) as exc:
            await self._drop(client)
            kind = self._unsent(INFO, more)
            event = self.recorder.complete(invoke, kind, error=f"timeout: {exc!r}", **more)
        else:
            event = self.recorder.complete(invoke, OK, value, **more)
        if event.type == INFO:
            await self._drop(client)  # the retired process's connection goes with it
        return event

    @staticmethod
    def _unsent(kind: str, more: dict[str, Any]) -> str:
        """A read-then-write that failed before its write was sent had no effect."""
        return FAIL if more.pop("unsent", False) else kind

    async def _execute(self, conn: Any, spec: OpSpec, more: dict[str, Any]) -> Any:
        workload = self.options.workload
        if spec.f == "read" and spec.members:
            values = await conn.mget(list(spec.members))
            return sorted(int(v) for v in values if v is not None)
        if spec.f == "read" and workload == "siblings":
            _context, values = await conn.execute_command("RINGKV.SIBLINGS", spec.key)
            return sorted(v.decode() for v in values)
        if spec.f == "read":
            raw = await conn.get(spec.key)
            return int(raw) if raw is not None else None
        if spec.f == "add" and workload == "counter":
            await conn.incrby(spec.key, spec.value)
            return None
        if spec.f == "add":
            (member,) = spec.members
            await conn.set(member, str(spec.value))
            return None
        if spec.f == "write" and workload == "siblings":
            more["unsent"] = True
            context, values = await conn.execute_command("RINGKV.SIBLINGS", spec.key)
            # Kept on the completion whatever happens next: a write that timed
            # out may still supersede what it saw (the siblings checker needs it).
            more["saw"] = sorted(v.decode() for v in values)
            more["context"] = context.decode() if isinstance(context, bytes) else context
            args = ["RINGKV.PUT", spec.key, str(spec.value)]
            if context:
                args += ["CONTEXT", context]
            del more["unsent"]
            await conn.execute_command(*args)
            return None
        if spec.f == "write":
            await conn.set(spec.key, str(spec.value))
            return None
        if spec.f == "cas":
            expected, new = spec.value
            await conn.execute_command("RINGKV.CAS", spec.key, str(expected), str(new))
            return None  # a mismatch is the -MISMATCH error: a definite fail
        raise ValueError(f"no RESP mapping for {spec.f!r}")
