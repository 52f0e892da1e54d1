"""The simulated world: virtual time, an event queue, nodes, clients and faults.

Theory of operation (FoundationDB's simulation, TigerBeetle's VOPR). The world
owns the only source of randomness, ``random.Random(seed)``; at construction
it draws, in a fixed order, the seeds of the network, the workload, the fault
schedule and one stream per node (sorted by id). Time is a virtual clock in
milliseconds and nothing happens except by popping the event queue, a heap
of ``(time_ms, seq, event)`` whose ``seq`` breaks ties in insertion order. So
a run is a function of its seed, and replays byte for byte: every event is
written to a trace whose blake2b digest two runs can compare.

Each node is the production ``core.node.Node`` on a ``SimEngine`` (the disk
model), driven exactly as the asyncio host drives it: after each input
(a delivered message, a tick, a client request) the world takes the node's
outbox, sends ``messages``, flushes the engine (the group commit), then sends
``after_commit`` and releases the replies. A node sees the virtual time plus
its own clock offset (skew), added to ``SimConfig.start_ms`` so that the
wall clock a node reads looks like a real one.

A crash drops the node object and its in-memory state; the engine keeps only
what its durable state holds (``SimEngine.crash``), and a restart builds a new
``Node`` on it. Messages still in flight to the crashed incarnation are lost
(its connections were reset); requests it was coordinating end ``info`` for
their clients (the connection dropped: unknown outcome).

Clients are Jepsen's single-threaded processes: each operation is recorded
as ``invoke`` then ``ok``/``fail``/``info`` in ``history`` (``history.py``).
A test that needs a request the ``Client`` does not speak (a compare-and-set,
a lock) sends any core request with ``submit_request`` and gets its result
back through a callback, with the same crash and timeout rules, and keeps its
own history.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any, NamedTuple, Protocol

from ringkv.check.history import Event
from ringkv.core import ops
from ringkv.core.config import KeyspaceSpec, Level, NodeConfig
from ringkv.core.errors import ErrorKind, OpError
from ringkv.core.handoff import HINTS_TABLE, parse_hint_key
from ringkv.core.messages import Message
from ringkv.core.node import Node
from ringkv.core.record import Version, unpack_record
from ringkv.core.requests import Mutate, Read, ReadResult
from ringkv.core.ring import Member, Ring, build_ring
from ringkv.sim.disk import SimEngine
from ringkv.sim.history import FAIL, INFO, INVOKE, OK, Op, format_context
from ringkv.sim.network import Delivery, NetworkConfig, SimNetwork, describe
from ringkv.storage.base import Engine, FsyncPolicy

__all__ = [
    "EPOCH_MS",
    "Client",
    "NodeFactory",
    "SimConfig",
    "SimNode",
    "Simulation",
    "keyspace_table",
]

# What a node's wall clock reads at virtual time 0: 2023-11-14, so HLC
# timestamps and expiry times look like real ones.
EPOCH_MS = 1_700_000_000_000
PAUSED_EVENTS_MAX = 100_000  # events held for a paused node, like a socket buffer
STAT_NAMES = ("hints_written", "hints_delivered", "read_repairs")  # read with getattr, default 0


def keyspace_table(keyspace: str) -> str:
    """The storage table that holds a keyspace (``Node._table``'s naming)."""
    return f"ks:{keyspace}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    network: NetworkConfig = field(default_factory=NetworkConfig)
    fsync: FsyncPolicy = FsyncPolicy.ALWAYS
    fsync_interval_ms: int = 100  # the batch policy's fsync timer
    # Under --fsync never the operating system writes dirty pages back by
    # itself; Linux's dirty_expire_centisecs is 30 s.
    os_writeback_ms: int = 30_000
    # A client gives up on a request after this (info): well past the node's
    # own request_timeout_ms, which should answer first.
    client_timeout_ms: int = 10_000
    keep_trace: bool = True
    trace_lines_max: int = 2_000_000  # past it lines still feed the digest, unkept
    start_ms: int = EPOCH_MS


class OutboxLike(Protocol):
    @property
    def messages(self) -> list[tuple[str, Message]]: ...
    @property
    def after_commit(self) -> list[tuple[str, Message]]: ...
    @property
    def replies(self) -> list[tuple[object, object]]: ...
    @property
    def replies_now(self) -> list[tuple[object, object]]: ...


class SimNode(Protocol):
    """What the world needs of a node: ``core.node.Node``, or a test's fake."""

    def submit(self, request: Any, token: object, now_ms: int) -> None: ...
    def step(self, message: Any, now_ms: int) -> None: ...
    def tick(self, now_ms: int) -> None: ...
    def take_outbox(self) -> OutboxLike: ...


NodeFactory = Callable[[NodeConfig, Engine, random.Random, int, Ring], SimNode]


def _production_node(
    config: NodeConfig, engine: Engine, rng: random.Random, now_ms: int, ring: Ring
) -> SimNode:
    return Node(config, engine, rng, now_ms, ring)


# -- events ------------------------------------------------------------------


class _Deliver(NamedTuple):
    delivery: Delivery
    incarnation: int  # of the receiver when sent: a restart resets connections


class _Tick(NamedTuple):
    node: str
    incarnation: int


class _Sync(NamedTuple):
    node: str
    incarnation: int


class _Loopback(NamedTuple):
    """A message a node sent itself (its own acceptor's answer, after its
    commit): delivered at once, never through the network's faults."""

    node: str
    incarnation: int
    message: Message


class _ClientTimeout(NamedTuple):
    op_id: int


class _Action(NamedTuple):
    label: str
    run: Callable[[], None]


_Event = _Deliver | _Loopback | _Tick | _Sync | _ClientTimeout | _Action


@dataclass(slots=True)
class _Host:
    """One node's slot in the world: its disk survives crashes, its Node does not."""

    node_id: str
    engine: SimEngine
    seeds: random.Random  # draws each incarnation's rng seed and tick phase
    node: SimNode | None = None
    incarnation: int = 0
    clock_offset_ms: int = 0
    crashes: int = 0
    # Armed by crash_before_flush: the lose_unsynced of the crash to come.
    crash_before_flush: bool | None = None
    # Armed by crash_after_flush: likewise, for a crash after the flush.
    crash_after_flush: bool | None = None
    # While paused (SIGSTOP): the node's deliveries, ticks and client requests
    # wait here, bounded like a socket buffer, and run when it resumes.
    paused: bool = False
    held: list[_Event] = field(default_factory=list)
    carried_stats: dict[str, int] = field(default_factory=dict)  # of dead incarnations


class Client:
    """A single-threaded client process talking to one node."""

    def __init__(self, sim: Simulation, node: str, process: int) -> None:
        self.sim = sim
        self.node = node
        self.process = process
        self.keyspace = sim.default_keyspace

    def put(
        self,
        key: bytes | str,
        value: bytes | str,
        *,
        level: str = "",
        acks: int = 0,
        context: dict[str, int] | None = None,
        saw: Sequence[bytes] = (),
        keyspace: str | None = None,
    ) -> Op:
        return self._invoke("put", key, _bytes(value), level, acks, context, saw, keyspace)

    def delete(
        self,
        key: bytes | str,
        *,
        level: str = "",
        acks: int = 0,
        context: dict[str, int] | None = None,
        saw: Sequence[bytes] = (),
        keyspace: str | None = None,
    ) -> Op:
        return self._invoke("delete", key, None, level, acks, context, saw, keyspace)

    def get(
        self, key: bytes | str, *, level: str = "", acks: int = 0, keyspace: str | None = None
    ) -> Op:
        return self._invoke("get", key, None, level, acks, None, (), keyspace)

    def _invoke(
        self,
        f: str,
        key: bytes | str,
        value: bytes | None,
        level: str,
        acks: int,
        context: dict[str, int] | None,
        saw: Sequence[bytes],
        keyspace: str | None,
    ) -> Op:
        if level:
            Level(level)  # a typo is our bug: fail here, not in the node
        op = Op(
            op_id=self.sim.next_op_id(),
            process=self.process,
            node=self.node,
            f=f,
            keyspace=keyspace or self.keyspace,
            key=_bytes(key),
            value=value,
            invoke_ms=self.sim.now,
            level=level,
            acks=acks,
            context=dict(context) if context is not None else None,
            saw=tuple(saw),
        )
        self.sim.invoke(self, op)
        return op


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


class Simulation:
    """A seeded cluster of production nodes on a simulated network and disk."""

    def __init__(
        self,
        seed: int,
        node_ids: Iterable[str],
        *,
        config: SimConfig | None = None,
        node_config: NodeConfig | None = None,
        keyspaces: Sequence[KeyspaceSpec] = (),
        node_factory: NodeFactory | None = None,
    ) -> None:
        ids = sorted(node_ids)
        assert ids and len(set(ids)) == len(ids), "node ids must be distinct"
        self.seed = seed
        self.config = config or SimConfig()
        self.node_ids: tuple[str, ...] = tuple(ids)
        self.rng = random.Random(seed)
        # Derived streams, drawn in this fixed order (append new ones at the end).
        self.network = SimNetwork(random.Random(self.rng.getrandbits(64)), self.config.network)
        self.workload_rng = random.Random(self.rng.getrandbits(64))
        self.fault_rng = random.Random(self.rng.getrandbits(64))
        self._hosts: dict[str, _Host] = {}
        for node_id in ids:
            engine = SimEngine(self.config.fsync)
            self._hosts[node_id] = _Host(node_id, engine, random.Random(self.rng.getrandbits(64)))
        self.node_config = node_config or NodeConfig()
        self.ring = build_ring([Member(node_id=n) for n in ids], epoch=1)
        self._factory = node_factory or _production_node
        self.now = 0
        self._queue: list[tuple[int, int, _Event]] = []
        self._seq = 0
        self._next_op_id = 0
        self._next_process = 0
        self.ops: list[Op] = []
        self._in_flight: dict[int, tuple[Op, Client]] = {}
        # submit_request: token -> (node, callback), for requests no Client speaks.
        self._requests: dict[int, tuple[str, Callable[[object], None]]] = {}
        self.history: list[Event] = []  # Jepsen's shape (check/history.py)
        self.on_complete: list[Callable[[Op], None]] = []
        self.keyspaces: dict[str, KeyspaceSpec] = {}
        self.default_keyspace = "default"
        self.trace_lines: list[str] = []
        self.trace_line_count = 0
        self._digest = blake2b(digest_size=16)
        self._trace(f"seed {seed} nodes {' '.join(ids)} fsync {self.config.fsync.value}")
        for node_id in ids:
            self._start(node_id)
        for spec in keyspaces:
            self.create_keyspace(spec)

    # -- running -------------------------------------------------------------

    def run_until(self, time_ms: int) -> None:
        """Process every event up to and including ``time_ms``; the clock ends there."""
        while self._queue and self._queue[0][0] <= time_ms:
            self.step_event()
        self.now = max(self.now, time_ms)

    def run_for(self, duration_ms: int) -> None:
        self.run_until(self.now + duration_ms)

    def run_until_true(self, done: Callable[[], bool], max_ms: int) -> bool:
        """Run until ``done()`` holds (checked after each event) or ``max_ms`` passed."""
        deadline = self.now + max_ms
        while not done():
            if not self._queue or self._queue[0][0] > deadline:
                self.now = max(self.now, deadline)
                return done()
            self.step_event()
        return True

    def complete(self, op: Op, max_ms: int | None = None) -> Op:
        """Run until ``op`` completes (the client timeout bounds it)."""
        limit = max_ms if max_ms is not None else self.config.client_timeout_ms + 1
        self.run_until_true(lambda: op.done, limit)
        return op

    def step_event(self) -> None:
        time_ms, _, event = heapq.heappop(self._queue)
        assert time_ms >= self.now, "time never goes back"
        self.now = time_ms
        match event:
            case _Deliver():
                self._deliver(event)
            case _Loopback():
                self._loopback(event)
            case _Tick(node=node_id, incarnation=incarnation):
                self._on_tick(node_id, incarnation)
            case _Sync(node=node_id, incarnation=incarnation):
                self._on_sync(node_id, incarnation)
            case _ClientTimeout(op_id=op_id):
                self._on_client_timeout(op_id)
            case _Action(label=label, run=run):
                self._trace(f"do {label}")
                run()

    def schedule(self, at_ms: int, label: str, run: Callable[[], None]) -> None:
        """Run ``run`` at virtual time ``at_ms`` (traced as ``label``)."""
        self._push(max(at_ms, self.now), _Action(label, run))

    def _push(self, at_ms: int, event: _Event) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at_ms, self._seq, event))

    # -- nodes ---------------------------------------------------------------

    def node_now(self, node_id: str) -> int:
        """The wall clock ``node_id`` reads: virtual time plus its skew."""
        return self.config.start_ms + self.now + self._hosts[node_id].clock_offset_ms

    def node(self, node_id: str) -> SimNode | None:
        """The running node object, or None while it is down."""
        return self._hosts[node_id].node

    def engine(self, node_id: str) -> SimEngine:
        return self._hosts[node_id].engine

    def is_up(self, node_id: str) -> bool:
        return self._hosts[node_id].node is not None

    def create_keyspace(self, spec: KeyspaceSpec) -> None:
        """Declare a keyspace on every node (and on every node restarted later)."""
        spec.validate()
        self.keyspaces[spec.name] = spec
        self.default_keyspace = spec.name
        self._trace(
            f"keyspace {spec.name} mode={spec.mode.value} n={spec.n_replicas} "
            f"level={spec.level.value}"
        )
        for node_id in self.node_ids:
            node = self._hosts[node_id].node
            if node is not None:
                _install_keyspace(node, spec)

    def crash(self, node_id: str, lose_unsynced: bool = True) -> None:
        host = self._hosts[node_id]
        if host.node is None:
            self._trace(f"crash {node_id}: already down")
            return
        _add_stats(host.carried_stats, _node_stats(host.node))
        host.node = None
        host.crash_before_flush = host.crash_after_flush = None
        host.paused, host.held = False, []
        host.crashes += 1
        lost = host.engine.unsynced_keys()
        host.engine.crash(lose_unsynced=lose_unsynced)
        mode = "power loss" if lose_unsynced else "process crash"
        self._trace(f"crash {node_id} ({mode}; {lost} keys unsynced)")
        for op_id in sorted(self._in_flight):
            op, client = self._in_flight[op_id]
            if op.node == node_id:
                self._finish(op, client, INFO, "connection lost: the node crashed")
        for token in sorted(self._requests):
            if self._requests[token][0] == node_id:
                self._answer_request(token, _LOST_IN_CRASH)

    def crash_before_flush(self, node_id: str, lose_unsynced: bool = True) -> None:
        """Crash ``node_id`` in its next turn that sends messages, after it sent
        them and before the engine's flush: the window in which peers hold
        what the node's own disk never committed."""
        host = self._hosts[node_id]
        if host.node is None:
            self._trace(f"crash {node_id} before flush: already down")
            return
        host.crash_before_flush = lose_unsynced
        self._trace(f"armed: {node_id} crashes after its next send, before the flush")

    def crash_after_flush(self, node_id: str, lose_unsynced: bool = True) -> None:
        """Crash ``node_id`` in its next turn that has messages to send after
        its commit, right after the flush and before they (and its replies)
        leave: what it acknowledges is durable, and the acknowledgement lost
        (a CASPaxos acceptor that persisted an accept, its reply never sent)."""
        host = self._hosts[node_id]
        if host.node is None:
            self._trace(f"crash {node_id} after flush: already down")
            return
        host.crash_after_flush = lose_unsynced
        self._trace(f"armed: {node_id} crashes after its next flush, before what follows it")

    def restart(self, node_id: str) -> None:
        host = self._hosts[node_id]
        if host.node is not None:
            if host.crash_before_flush is not None or host.crash_after_flush is not None:
                host.crash_before_flush = host.crash_after_flush = None
                self._trace(f"restart {node_id}: disarmed, it sent nothing meanwhile")
                return
            self._trace(f"restart {node_id}: already up")
            return
        self._start(node_id)

    def pause(self, node_id: str) -> None:
        """Stop ``node_id`` like SIGSTOP: it keeps its memory; what arrives for
        it waits (up to ``PAUSED_EVENTS_MAX``) until ``resume``."""
        host = self._hosts[node_id]
        if host.node is None or host.paused:
            self._trace(f"pause {node_id}: {'down' if host.node is None else 'already paused'}")
            return
        host.paused = True
        self._trace(f"pause {node_id}")

    def resume(self, node_id: str) -> None:
        host = self._hosts[node_id]
        if not host.paused:
            self._trace(f"resume {node_id}: not paused")
            return
        host.paused = False
        held, host.held = host.held, []
        self._trace(f"resume {node_id} ({len(held)} events held)")
        for event in held:
            self._push(self.now, event)

    def _hold(self, node_id: str, event: _Event) -> bool:
        """True when ``node_id`` is paused and ``event`` was held (or dropped)."""
        host = self._hosts[node_id]
        if not host.paused:
            return False
        if len(host.held) < PAUSED_EVENTS_MAX:
            host.held.append(event)
        else:
            self._trace(f"drop event for paused {node_id} (buffer full)")
        return True

    def set_clock_offset(self, node_id: str, offset_ms: int) -> None:
        self._hosts[node_id].clock_offset_ms = offset_ms
        self._trace(f"clock {node_id} offset {offset_ms:+d} ms")

    def _start(self, node_id: str) -> None:
        host = self._hosts[node_id]
        assert host.node is None
        host.incarnation += 1
        rng = random.Random(host.seeds.getrandbits(64))
        config = dataclasses.replace(self.node_config, node_id=node_id)
        node = self._factory(config, host.engine, rng, self.node_now(node_id), self.ring)
        host.node = node
        for name in sorted(self.keyspaces):
            _install_keyspace(node, self.keyspaces[name])
        self._trace(f"start {node_id} incarnation {host.incarnation}")
        tick_ms = self.node_config.tick_interval_ms
        self._push(
            self.now + host.seeds.randrange(1, tick_ms + 1), _Tick(node_id, host.incarnation)
        )
        interval = self._sync_interval_ms()
        if interval:
            self._push(self.now + interval, _Sync(node_id, host.incarnation))
        self._turn(node_id)  # a node may have work from its recovered state

    def _sync_interval_ms(self) -> int:
        if self.config.fsync is FsyncPolicy.BATCH:
            return self.config.fsync_interval_ms
        if self.config.fsync is FsyncPolicy.NEVER:
            return self.config.os_writeback_ms
        return 0

    def _on_tick(self, node_id: str, incarnation: int) -> None:
        host = self._hosts[node_id]
        if host.node is None or host.incarnation != incarnation:
            return
        if self._hold(node_id, _Tick(node_id, incarnation)):
            return
        host.node.tick(self.node_now(node_id))
        self._turn(node_id)
        self._push(self.now + self.node_config.tick_interval_ms, _Tick(node_id, incarnation))

    def _on_sync(self, node_id: str, incarnation: int) -> None:
        host = self._hosts[node_id]
        if host.node is None or host.incarnation != incarnation:
            return
        host.engine.sync()
        self._push(self.now + self._sync_interval_ms(), _Sync(node_id, incarnation))

    def _turn(self, node_id: str) -> None:
        """What the asyncio host does once per loop turn, in the same order."""
        host = self._hosts[node_id]
        assert host.node is not None
        outbox = host.node.take_outbox()
        for dst, message in outbox.messages:
            self._send(node_id, dst, message)
        for token, result in outbox.replies_now:
            self._on_reply(node_id, token, result)
        if host.crash_before_flush is not None and outbox.messages:
            lose_unsynced = host.crash_before_flush
            self._trace(f"{node_id} dies after sending, before its flush")
            self.crash(node_id, lose_unsynced=lose_unsynced)
            return
        host.engine.flush()
        if host.crash_after_flush is not None and outbox.after_commit:
            lose_unsynced = host.crash_after_flush
            self._trace(f"{node_id} dies after its flush, before sending what followed it")
            self.crash(node_id, lose_unsynced=lose_unsynced)
            return
        for dst, message in outbox.after_commit:
            self._send(node_id, dst, message)
        for token, result in outbox.replies:
            self._on_reply(node_id, token, result)

    # -- network ---------------------------------------------------------------

    def _send(self, src: str, dst: str, message: Message) -> None:
        assert dst in self._hosts, f"{src} sent to unknown node {dst!r}"
        if src == dst:
            self._trace(f"loop {src} {describe(message)}")
            self._push(self.now, _Loopback(src, self._hosts[src].incarnation, message))
            return
        copies, reason = self.network.send(src, dst, message)
        text = describe(message)
        if not copies:
            self._trace(f"drop {src}->{dst} {text} ({reason})")
            return
        incarnation = self._hosts[dst].incarnation
        for copy in copies:
            tag = " dup" if copy.copy else ""
            self._trace(f"send {src}->{dst}{tag} +{copy.delay_ms}ms {text} #{copy.digest}")
            self._push(self.now + copy.delay_ms, _Deliver(copy, incarnation))

    def _deliver(self, event: _Deliver) -> None:
        delivery = event.delivery
        host = self._hosts[delivery.dst]
        label = f"{delivery.src}->{delivery.dst} {delivery.kind} #{delivery.digest}"
        if host.node is None or host.incarnation != event.incarnation:
            self.network.lost_at_down_node(delivery)
            state = "down" if host.node is None else "restarted"
            self._trace(f"drop {label} ({state})")
            return
        if self._hold(delivery.dst, event):
            return
        message = self.network.arrive(delivery)
        if message is None:
            self._trace(f"drop {label} (partitioned in flight)")
            return
        self._trace(f"recv {label}")
        host.node.step(message, self.node_now(delivery.dst))
        self._turn(delivery.dst)

    def _loopback(self, event: _Loopback) -> None:
        host = self._hosts[event.node]
        if host.node is None or host.incarnation != event.incarnation:
            return  # it died with the process
        if self._hold(event.node, event):
            return
        host.node.step(event.message, self.node_now(event.node))
        self._turn(event.node)

    def partition(self, groups: Sequence[Sequence[str]]) -> None:
        self.network.partition(groups)
        self._trace(f"net {self.network.describe_faults()}")

    def cut(self, src: str, dst: str) -> None:
        self.network.cut(src, dst)
        self._trace(f"net {self.network.describe_faults()}")

    def uncut(self, src: str, dst: str) -> None:
        self.network.uncut(src, dst)
        self._trace(f"net {self.network.describe_faults()}")

    def heal(self) -> None:
        self.network.heal()
        self._trace("net healed")

    def set_rates(
        self, *, drop_rate: float | None = None, duplicate_rate: float | None = None
    ) -> None:
        self.network.set_rates(drop_rate=drop_rate, duplicate_rate=duplicate_rate)
        config = self.network.config
        self._trace(f"net drop={config.drop_rate} dup={config.duplicate_rate}")

    # -- clients -----------------------------------------------------------------

    def client(self, node_id: str) -> Client:
        """A new client process bound to ``node_id``."""
        assert node_id in self._hosts, f"unknown node {node_id!r}"
        return Client(self, node_id, self._new_process())

    def next_op_id(self) -> int:
        self._next_op_id += 1
        return self._next_op_id

    def _new_process(self) -> int:
        self._next_process += 1
        return self._next_process

    def invoke(self, client: Client, op: Op) -> None:
        """Send ``op`` for ``client`` (called by ``Client``)."""
        self.ops.append(op)
        self._history(op, INVOKE)
        self._trace(f"invoke p{op.process} {op.node} op{op.op_id} {op.describe()}")
        node = self._hosts[op.node].node
        if node is None:
            self._finish(op, client, FAIL, "connection refused: the node is down")
            return
        self._in_flight[op.op_id] = (op, client)
        self._push(self.now + self.config.client_timeout_ms, _ClientTimeout(op.op_id))
        if self._hold(
            op.node, _Action(f"op{op.op_id} reaches {op.node}", lambda: self._submit(op))
        ):
            return
        self._submit(op)

    def _submit(self, op: Op) -> None:
        node = self._hosts[op.node].node
        if node is None or op.op_id not in self._in_flight:
            return  # the node crashed or the client gave up meanwhile
        node.submit(_request(op), op.op_id, self.node_now(op.node))
        self._turn(op.node)

    def submit_request(
        self, node_id: str, request: object, done: Callable[[object], None], label: str = ""
    ) -> None:
        """Send any core request to ``node_id`` now; ``done`` gets its result
        (an ``OpError`` for a failure). A node that is down refuses it
        (UNAVAILABLE, definite); a crash of the node before it answers, or
        no answer within ``client_timeout_ms``, is a non-definite TIMEOUT."""
        token = self.next_op_id()
        self._trace(f"request {node_id} op{token} {label or type(request).__name__}")
        node = self._hosts[node_id].node
        if node is None:
            done(_REFUSED_DOWN)
            return
        self._requests[token] = (node_id, done)
        self._push(self.now + self.config.client_timeout_ms, _ClientTimeout(token))

        def submit() -> None:
            target = self._hosts[node_id].node
            if target is None or token not in self._requests:
                return  # the node crashed or the client gave up meanwhile
            target.submit(request, token, self.node_now(node_id))
            self._turn(node_id)

        if not self._hold(node_id, _Action(f"op{token} reaches {node_id}", submit)):
            submit()

    def _answer_request(self, token: int, result: object) -> None:
        entry = self._requests.pop(token, None)
        if entry is None:
            return
        self._trace(f"answer {entry[0]} op{token} {_describe_result(result)}")
        entry[1](result)

    def _on_reply(self, node_id: str, token: object, result: object) -> None:
        assert isinstance(token, int)
        if token in self._requests:
            self._answer_request(token, result)
            return
        entry = self._in_flight.get(token)
        if entry is None:
            self._trace(f"late reply {node_id} op{token} {_describe_result(result)}")
            return
        op, client = entry
        if isinstance(result, OpError):
            outcome = FAIL if result.definite else INFO
            self._finish(op, client, outcome, f"{result.kind.name}: {result.message}")
            return
        if isinstance(result, ReadResult):
            op.read_values = tuple(v.value for v in result.versions)
            op.read_context = dict(result.context)
        self._finish(op, client, OK, "")

    def _on_client_timeout(self, op_id: int) -> None:
        if op_id in self._requests:
            self._answer_request(op_id, _CLIENT_TIMEOUT)
            return
        entry = self._in_flight.get(op_id)
        if entry is not None:
            self._finish(entry[0], entry[1], INFO, "client timeout")

    def _finish(self, op: Op, client: Client, outcome: str, error: str) -> None:
        self._in_flight.pop(op.op_id, None)
        op.outcome = outcome
        op.error = error
        op.complete_ms = self.now
        self._history(op, outcome)
        text = f"{outcome} p{op.process} {op.node} op{op.op_id} {op.f}"
        if op.f == "get" and outcome == OK:
            values = ",".join(v.decode(errors="replace") for v in op.read_values)
            text += f" [{values}] ctx={format_context(op.read_context or {})}"
        if error:
            text += f" {error}"
        self._trace(text)
        if outcome == INFO:
            client.process = self._new_process()  # Jepsen: retire the process
        for hook in self.on_complete:
            hook(op)

    def _history(self, op: Op, kind: str) -> None:
        if kind == INVOKE or op.f != "get":
            value: object = op.value.decode(errors="replace") if op.value is not None else None
        else:
            value = [v.decode(errors="replace") for v in op.read_values] if kind == OK else None
        self.history.append(
            Event(
                index=len(self.history),
                process=op.process,
                type=kind,
                f=op.f,
                key=op.key.decode(errors="replace"),
                value=value,
                error=op.error if kind != INVOKE else "",
                time_ns=self.now * 1_000_000,
                node=op.node,
            )
        )

    # -- inspection ------------------------------------------------------------------

    def stored_versions(self, node_id: str, keyspace: str, key: bytes) -> list[Version]:
        """What ``node_id``'s disk holds for the key (live, tombstones, expired)."""
        raw = self._hosts[node_id].engine.table(keyspace_table(keyspace)).get(key)
        return unpack_record(raw) if raw is not None else []

    def table_count(self, node_id: str, table: str) -> int:
        return self._hosts[node_id].engine.table(table).count()

    def hints_pending(self, node_id: str) -> int:
        """Hints ``node_id`` holds for other nodes (durable or not yet)."""
        return self.table_count(node_id, HINTS_TABLE)

    def stored_hints(
        self, node_id: str, keyspace: str, key: bytes
    ) -> list[tuple[str, list[Version]]]:
        """The hints ``node_id`` holds for this key: (home node, versions), by home."""
        table = self._hosts[node_id].engine.table(HINTS_TABLE)
        keys, cursor = table.scan(0, table.count() + 1)
        assert cursor == 0
        found = []
        for raw_key in keys:
            home, hint_keyspace, hint_key = parse_hint_key(raw_key)
            raw = table.get(raw_key)
            if hint_keyspace == keyspace and hint_key == key and raw is not None:
                found.append((home, unpack_record(raw)))
        return sorted(found)

    def node_stats(self, node_id: str) -> dict[str, int]:
        """Counters of the node's ``stats`` over all its incarnations."""
        host = self._hosts[node_id]
        stats = dict(host.carried_stats)
        if host.node is not None:
            _add_stats(stats, _node_stats(host.node))
        for name in STAT_NAMES:
            stats.setdefault(name, 0)
        return stats

    def total_stats(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for node_id in self.node_ids:
            _add_stats(total, self.node_stats(node_id))
        return dict(sorted(total.items()))

    def crash_count(self) -> int:
        return sum(self._hosts[n].crashes for n in self.node_ids)

    def in_flight_ops(self) -> int:
        return len(self._in_flight) + len(self._requests)

    # -- trace -----------------------------------------------------------------------

    def _trace(self, text: str) -> None:
        line = f"{self.now:>8} {text}"
        self._digest.update(line.encode() + b"\n")
        self.trace_line_count += 1
        if self.config.keep_trace and len(self.trace_lines) < self.config.trace_lines_max:
            self.trace_lines.append(line)

    def note(self, text: str) -> None:
        """Add a line of the caller's to the trace (a scenario step, a phase)."""
        self._trace(f"note {text}")

    def trace_digest(self) -> str:
        """blake2b of every trace line so far: equal digests, equal runs."""
        return self._digest.copy().hexdigest()


_LOST_IN_CRASH = OpError(
    ErrorKind.TIMEOUT, "connection lost: the node crashed", code="TIMEOUT", definite=False
)
_REFUSED_DOWN = OpError(
    ErrorKind.UNAVAILABLE, "connection refused: the node is down", code="UNAVAILABLE"
)
_CLIENT_TIMEOUT = OpError(ErrorKind.TIMEOUT, "client timeout", code="TIMEOUT", definite=False)


def _request(op: Op) -> Read | Mutate:
    level = Level(op.level) if op.level else None
    if op.f == "get":
        return Read(op.keyspace, op.key, level, op.acks)
    mutation: ops.Mutation = (
        ops.Put(op.value) if op.f == "put" and op.value is not None else ops.Remove()
    )
    return Mutate(op.keyspace, op.key, mutation, level, op.acks, op.context)


def _install_keyspace(node: SimNode, spec: KeyspaceSpec) -> None:
    create = getattr(node, "create_keyspace", None)
    if callable(create):
        create(spec)
        return
    keyspaces = getattr(node, "keyspaces", None)
    if isinstance(keyspaces, dict):
        keyspaces[spec.name] = spec


def _node_stats(node: SimNode) -> dict[str, int]:
    stats = getattr(node, "stats", None)
    if stats is None:
        return {}
    if dataclasses.is_dataclass(stats):
        names = [f.name for f in dataclasses.fields(stats)]
    else:
        names = sorted(vars(stats))
    return {n: v for n in names if isinstance(v := getattr(stats, n), int)}


def _add_stats(into: dict[str, int], stats: dict[str, int]) -> None:
    for name, value in stats.items():
        into[name] = into.get(name, 0) + value


def _describe_result(result: object) -> str:
    if isinstance(result, OpError):
        return f"{result.kind.name}"
    if isinstance(result, ReadResult):
        return "[" + ",".join(v.value.decode(errors="replace") for v in result.versions) + "]"
    return repr(result)
