"""``ringkv serve``: storage engine + core Node + host loop + RESP and HTTP.

A server is a one-node cluster (DESIGN.md): every request from every front
end goes through ``NodeHost`` into the core ``Node``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import random
import resource
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ringkv import __version__
from ringkv.core.config import NodeConfig
from ringkv.core.messages import Message
from ringkv.core.node import Node
from ringkv.frontend.commands import VERSION_TEXT, Session
from ringkv.frontend.resp import ParserLimits
from ringkv.runtime.faults import FAULT_COUNTER_NAMES, LinkFaults
from ringkv.runtime.host import NodeHost, now_ms
from ringkv.runtime.metrics import Metrics
from ringkv.runtime.resp_server import RespConnection
from ringkv.storage.base import Engine, FsyncPolicy
from ringkv.storage.memory import MemoryEngine

if TYPE_CHECKING:
    from ringkv.runtime.transport import Transport

__all__ = ["Server", "ServerSettings", "open_engine", "run_server"]

log = logging.getLogger("ringkv.server")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    node_id: str = "n1"
    host: str = "127.0.0.1"
    resp_port: int = 6380
    http_port: int = 8380
    data_dir: str = "./.ringkv/n1"
    engine: str = "lmdb"  # memory | lmdb
    fsync: FsyncPolicy = FsyncPolicy.ALWAYS
    fsync_interval_ms: int = 100
    commit_thread: bool = False  # pipelined group commit (storage/lmdb_engine.py)
    requirepass: str | None = None
    max_key_bytes: int = 8 * 1024
    max_value_bytes: int = 8 * 1024 * 1024
    maxmemory: int = 0
    max_clients: int = 10_000
    idle_timeout_s: float = 300.0  # 0: never close idle clients
    request_timeout_s: float = 30.0  # a half-sent request is dropped after this
    lmdb_map_size: int = 16 * 2**30
    ready_file: str | None = None
    # Cluster (issue 4): the peer transport runs when a cluster secret is set.
    peer_port: int = 7380
    join: tuple[str, ...] = ()  # seeds, "host:port" of their peer ports
    advertise_addr: str | None = None  # "host:port"; default host:peer_port
    zone: str = ""
    weight: int = 1
    cluster_name: str = "ringkv"
    cluster_secret_file: str | None = None
    cluster_secret: str | None = None  # for tests; logged with a warning
    # POST/DELETE /v1/admin/faults (runtime/faults.py): for tests, never production.
    faults: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        if self.engine not in ("memory", "lmdb"):
            raise ValueError(f"unknown engine {self.engine!r}: use memory or lmdb")
        for name in ("resp_port", "http_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ValueError(f"{name.replace('_', '-')} must be between 0 and 65535")
        if self.max_clients < 1:
            raise ValueError("max-clients must be at least 1")
        if self.idle_timeout_s < 0 or self.request_timeout_s <= 0:
            raise ValueError("timeouts must be positive (idle-timeout 0 means never)")


def open_engine(settings: ServerSettings) -> Engine:
    if settings.engine == "memory":
        return MemoryEngine(maxmemory=settings.maxmemory)
    from ringkv.storage.lmdb_engine import LmdbEngine

    return LmdbEngine(
        settings.data_dir,
        fsync=settings.fsync,
        map_size=settings.lmdb_map_size,
        commit_thread=settings.commit_thread,
    )


@dataclass
class Stats:
    commands: int = 0
    errors: int = 0
    protocol_errors: int = 0
    total_connections: int = 0
    rejected_connections: int = 0


class Server:
    """One running node; also the ``ServerView`` that introspection commands use."""

    def __init__(self, settings: ServerSettings) -> None:
        settings.validate()
        self.settings = settings
        self.requirepass = settings.requirepass
        self.started_ms = now_ms()
        self.engine = open_engine(settings)
        config = NodeConfig(
            node_id=settings.node_id,
            max_key_bytes=settings.max_key_bytes,
            max_value_bytes=settings.max_value_bytes,
        )
        self.node = Node(config, self.engine, random.Random(), self.started_ms)
        self.host = NodeHost(self.node, self.engine, fsync_interval_ms=settings.fsync_interval_ms)
        self.parser_limits = ParserLimits(
            bulk_max_bytes=max(settings.max_value_bytes, settings.max_key_bytes) + 64 * 1024
        )
        # Link faults the transport consults; None unless `--faults`.
        self.link_faults = LinkFaults() if settings.faults else None
        self.metrics = Metrics()
        self.stats = Stats()
        self.resp_connections: dict[int, RespConnection] = {}
        self.resp_port = settings.resp_port
        self.http_port = settings.http_port
        self.peer_port = 0
        self.transport: Transport | None = None
        self._peer_addrs: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._resp_server: asyncio.base_events.Server | None = None
        self._http_runner: object | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._register_gauges()

    # -- ServerView ---------------------------------------------------------

    def now_ms(self) -> int:
        return self.host.now_ms()  # with any injected clock offset, as the core sees it

    def now_us(self) -> int:
        return time.time_ns() // 1000

    def next_client_id(self) -> int:
        return next(self._ids)

    def client_list(self) -> list[Session]:
        return [conn.session for conn in self.resp_connections.values()]

    def config_values(self) -> dict[str, str]:
        s = self.settings
        return {
            "bind": s.host,
            "port": str(self.resp_port),
            "maxmemory": str(s.maxmemory),
            "maxmemory-policy": "allkeys-lru" if s.maxmemory else "noeviction",
            "maxclients": str(s.max_clients),
            "timeout": str(int(s.idle_timeout_s)),
            "databases": "1",
            "save": "",
            "appendonly": "no",
            "appendfsync": {"always": "always", "batch": "everysec", "never": "no"}[s.fsync.value],
            "proto-max-bulk-len": str(s.max_value_bytes),
            "requirepass": "",
            "dir": str(Path(s.data_dir).resolve()),
        }

    def info_sections(self, sections: list[str]) -> str:
        wanted = set(sections) or {"default"}
        everything = bool(wanted & {"all", "everything"})
        default = everything or "default" in wanted
        out: list[str] = []
        for name, build in (
            ("server", self._info_server),
            ("clients", self._info_clients),
            ("memory", self._info_memory),
            ("persistence", self._info_persistence),
            ("stats", self._info_stats),
            ("replication", self._info_replication),
            ("keyspace", self._info_keyspace),
            ("ringkv", self._info_ringkv),
            ("strong", self._info_strong),
        ):
            if default or name in wanted:
                out.append(f"# {name.capitalize()}\r\n")
                out.extend(f"{k}:{v}\r\n" for k, v in build().items())
                out.append("\r\n")
        return "".join(out).rstrip("\r\n") + "\r\n"

    def _info_server(self) -> dict[str, object]:
        uptime = (now_ms() - self.started_ms) // 1000
        return {
            "redis_version": VERSION_TEXT,
            "ringkv_version": __version__,
            "redis_mode": "standalone",
            "os": f"{os.uname().sysname} {os.uname().release} {os.uname().machine}",
            "arch_bits": 64,
            "process_id": os.getpid(),
            "tcp_port": self.resp_port,
            "http_port": self.http_port,
            "uptime_in_seconds": uptime,
            "uptime_in_days": uptime // 86400,
            "executable": sys.executable,
        }

    def _info_clients(self) -> dict[str, object]:
        return {
            "connected_clients": len(self.resp_connections),
            "maxclients": self.settings.max_clients,
            "blocked_clients": 0,
        }

    def _info_memory(self) -> dict[str, object]:
        rss = rss_bytes()
        return {
            "used_memory": self.engine.memory_bytes(),
            "used_memory_human": _human(self.engine.memory_bytes()),
            "used_memory_rss": rss,
            "used_memory_rss_human": _human(rss),
            "maxmemory": self.settings.maxmemory,
            "maxmemory_human": _human(self.settings.maxmemory),
            "maxmemory_policy": "allkeys-lru" if self.settings.maxmemory else "noeviction",
        }

    def _info_persistence(self) -> dict[str, object]:
        return {
            "engine": self.engine.name,
            "fsync": self.engine.fsync.value,
            "commit_thread": int(self.settings.commit_thread),
            "group_commits": self.host.commits,
            "group_commits_pipelined": self.host.pipelined_commits,
            "group_commit_failures": self.host.commit_failures,
        }

    def _info_stats(self) -> dict[str, object]:
        evicted = getattr(self.engine, "evicted_keys", 0)
        return {
            "total_connections_received": self.stats.total_connections,
            "total_commands_processed": self.stats.commands,
            "rejected_connections": self.stats.rejected_connections,
            "expired_keys": self.node.expired_keys,
            "evicted_keys": evicted,
            "total_error_replies": self.stats.errors,
            "protocol_errors": self.stats.protocol_errors,
        }

    def _info_replication(self) -> dict[str, object]:
        return {"role": "master", "connected_slaves": 0}

    def _info_keyspace(self) -> dict[str, object]:
        info: dict[str, object] = {}
        for name in self.node.keyspaces:
            count = self.node.count_keys(name)
            expiring = self.node.count_expiring(name)
            if name == "default":
                if count:
                    info["db0"] = f"keys={count},expires={expiring},avg_ttl=0"
            else:
                info[f"keyspace_{name}"] = f"keys={count},expires={expiring}"
        return info

    def _info_ringkv(self) -> dict[str, object]:
        node = self.node
        return {
            "node_id": node.config.node_id,
            "cluster_size": node.cluster_size,
            "keyspaces": ",".join(
                f"{s.name}:{s.mode.value}:n={s.effective_n(node.cluster_size)}"
                for s in node.keyspaces.values()
            ),
            "max_key_bytes": node.config.max_key_bytes,
            "max_value_bytes": node.config.max_value_bytes,
            "ring_epoch": node.ring.epoch,
            "hints_pending": node.hints_pending(),
            **dataclasses.asdict(node.stats),
            **self._info_faults(),
        }

    def _info_strong(self) -> dict[str, object]:
        """CASPaxos work on this node (core/strong.py StrongStats), paxos_*."""
        return {f"paxos_{k}": v for k, v in dataclasses.asdict(self.node.strong_stats).items()}

    def _info_faults(self) -> dict[str, object]:
        if self.link_faults is None:
            return {}
        counters = self.transport.counters if self.transport is not None else {}
        return {
            "faults_enabled": 1,
            "fault_links": len(self.link_faults),
            "clock_offset_ms": self.host.clock_offset_ms,
            **{name: counters.get(name, 0) for name in FAULT_COUNTER_NAMES},
        }

    def _register_gauges(self) -> None:
        m = self.metrics
        m.gauges["connections"] = lambda: len(self.resp_connections)
        m.gauges["keys"] = lambda: sum(self.node.count_keys(n) for n in self.node.keyspaces)
        m.gauges["data_bytes"] = self.engine.memory_bytes
        m.gauges["resident_memory_bytes"] = rss_bytes
        m.counters["expired_keys"] = lambda: self.node.expired_keys
        m.counters["evicted_keys"] = lambda: getattr(self.engine, "evicted_keys", 0)
        m.counters["group_commits"] = lambda: self.host.commits
        strong = self.node.strong_stats
        for stat in dataclasses.fields(strong):
            m.counters[f"paxos_{stat.name}"] = _stat_reader(strong, stat.name)
        m.counters["protocol_errors"] = lambda: self.stats.protocol_errors
        links = self.link_faults
        if links is not None:
            m.gauges["fault_clock_offset_ms"] = lambda: self.host.clock_offset_ms
            m.gauges["fault_links"] = lambda: len(links)

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.host.start()
        s = self.settings
        self._resp_server = await loop.create_server(
            lambda: RespConnection(self), s.host, s.resp_port, reuse_address=True, backlog=1024
        )
        self.resp_port = _bound_port(self._resp_server)
        await self._start_http()
        await self._start_cluster()
        if s.faults:
            log.warning(
                "fault injection is on (--faults): /v1/admin/faults can partition this node "
                "and skew its clock; for tests only, never in production"
            )
        self._sweeper = asyncio.create_task(self._sweep_connections())
        log.info(
            "ringkv %s node %s: RESP on %s:%d, HTTP on http://%s:%d, engine %s, fsync %s",
            __version__, s.node_id, s.host, self.resp_port, s.host, self.http_port,
            self.engine.name, self.engine.fsync.value,
        )  # fmt: skip
        if s.ready_file:
            _write_ready_file(s.ready_file, self)

    async def _start_cluster(self) -> None:
        """The peer transport and SWIM membership, when a cluster secret is set."""
        from ringkv.core.membership import Membership, MembershipConfig
        from ringkv.runtime.transport import Transport, load_cluster_secret

        s = self.settings
        secret = load_cluster_secret(s.cluster_secret_file, os.environ, s.cluster_secret, log)
        if secret is None:
            if s.join:
                raise ValueError(
                    "--join needs the cluster secret: --cluster-secret-file or RINGKV_CLUSTER_SECRET"
                )
            log.info("no cluster secret: a single node, peers refused")
            return
        transport = Transport(
            s.node_id, s.cluster_name, secret, self.host.on_message, faults=self.link_faults
        )
        self.peer_port = await transport.start(s.host, s.peer_port)
        self.transport = transport
        advertise = s.advertise_addr or f"{s.host}:{self.peer_port}"
        host_name = advertise.rsplit(":", 1)[0]
        membership = Membership(
            MembershipConfig(zone=s.zone, weight=s.weight, host=host_name),
            s.node_id, advertise, random.Random(), now_ms(), seeds=s.join,
            # Above any incarnation used before a restart, so a restarted
            # node is not taken for its dead former self.
            incarnation=now_ms() // 1000,
        )  # fmt: skip
        self.host.send = self._send_to_peer
        self.node.attach_membership(membership, now_ms())
        self.metrics.counters.update(
            {f"transport_{name}": _counter(transport, name) for name in transport.counters}
        )
        log.info("peers on %s (advertised as %s), cluster %r, seeds %s",
                 self.peer_port, advertise, s.cluster_name, ",".join(s.join) or "none")  # fmt: skip

    def _send_to_peer(self, dst: str, message: Message) -> None:
        """Look the destination up (a node id, or "addr:host:port" for a seed) and send."""
        assert self.transport is not None
        if dst.startswith("addr:"):
            addr: str | None = dst[len("addr:") :]
        else:
            membership = self.node.membership
            addr = membership.address_of(dst) if membership is not None else None
        if addr is None:
            return  # unknown peer: like a lost message, the protocol retries
        if self._peer_addrs.get(dst) != addr:
            host, _, port = addr.rpartition(":")
            if not port.isdigit():
                return
            self.transport.set_peer_address(dst, host, int(port))
            self._peer_addrs[dst] = addr
        self.transport.send(dst, message)

    async def _start_http(self) -> None:
        from aiohttp import web

        from ringkv.runtime.http import create_app

        runner = web.AppRunner(create_app(self), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.host, self.settings.http_port, reuse_address=True)
        await site.start()
        self._http_runner = runner
        server = getattr(site, "_server", None)
        if server is not None:
            self.http_port = _bound_port(server)

    async def _sweep_connections(self) -> None:
        s = self.settings
        while True:
            await asyncio.sleep(1.0)
            now = self.now_ms()  # the clock the sessions' times were taken with
            for conn in list(self.resp_connections.values()):
                idle_ms = now - conn.session.last_active_ms
                if conn.pending:
                    continue
                if conn.parser.buffered_bytes and idle_ms > s.request_timeout_s * 1000:
                    conn.close_idle("request not completed in time")
                elif s.idle_timeout_s and idle_ms > s.idle_timeout_s * 1000:
                    conn.close_idle("idle timeout")

    async def _drain_in_flight(self, deadline_s: float) -> None:
        """Wait, bounded, until every connection has had its replies released."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if not any(c.pending for c in self.resp_connections.values()):
                return
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop accepting, finish what is in flight, flush, close the engine."""
        if self._resp_server is not None:
            self._resp_server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self._drain_in_flight(deadline_s=5.0)
        self.host.close()
        for conn in list(self.resp_connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        if self._http_runner is not None:
            from aiohttp import web

            assert isinstance(self._http_runner, web.AppRunner)
            await self._http_runner.cleanup()
        if self.node.membership is not None:
            self.node.membership.leave(self.now_ms())
            self.host.end_turn()  # send the Left rumour
            await asyncio.sleep(0.05)
        if self.transport is not None:
            await self.transport.close()
        self.node.close()
        self.engine.close()
        log.info("ringkv node %s stopped cleanly", self.settings.node_id)


def _counter(transport: Transport, name: str) -> Callable[[], float]:
    return lambda: transport.counters[name]


def _bound_port(server: object) -> int:
    sockets = getattr(server, "sockets", None) or []
    for sock in sockets:
        if isinstance(sock, socket.socket) or hasattr(sock, "getsockname"):
            return int(sock.getsockname()[1])
    raise RuntimeError("server has no bound socket")


def _write_ready_file(path: str, server: Server) -> None:
    data = {
        "pid": os.getpid(),
        "node_id": server.settings.node_id,
        "host": server.settings.host,
        "resp_port": server.resp_port,
        "http_port": server.http_port,
        "peer_port": server.peer_port,
    }
    tmp = Path(path).with_suffix(".tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (Linux) or getrusage."""
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _human(n: int) -> str:
    for unit in ("B", "K", "M", "G"):
        if n < 1024:
            return f"{n:.2f}{unit}" if unit != "B" else f"{n}B"
        n //= 1024
    return f"{n:.2f}T"


async def _serve(settings: ServerSettings) -> None:
    server = Server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        await stop.wait()
    finally:
        log.info("shutting down: no new connections, finishing in-flight requests")
        await server.stop()


def run_server(settings: ServerSettings) -> None:
    """Run until SIGTERM or SIGINT; exits cleanly after flushing."""
    try:
        import uvloop

        uvloop.run(_serve(settings))
    except ImportError:
        asyncio.run(_serve(settings))


def _stat_reader(stats: object, name: str) -> Callable[[], float]:
    """A metrics callback reading one counter of a stats dataclass."""

    def read() -> float:
        value: float = getattr(stats, name)
        return value

    return read
