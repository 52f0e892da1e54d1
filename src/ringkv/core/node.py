"""The Node: one ringkv process's protocol logic, with no I/O.

Theory of operation (the shape of etcd's raft ``RawNode``). The runtime, the
simulator or a test feeds the node inputs and drains its outputs:

* ``submit(request, token, now_ms)``: a client request (``core/requests.py``);
  ``token`` is opaque to the node and comes back with the reply;
* ``step(message, now_ms)``: a message from a peer (``core/messages.py``);
* ``tick(now_ms)``: time passed; bounded background work (request deadlines,
  hint delivery, reclaiming expired keys);
* ``take_outbox()``: messages to send now, messages to send only after the
  engine's flush, ``(token, result)`` replies to release after it, and
  replies to release now (``replies_now``: answers that rest on no write of
  this node's, such as a CASPaxos outcome decided by a durable quorum).

A result is a plain value or an ``OpError``. The driver must commit the
engine (``engine.flush()``, or a pipelined commit: runtime/host.py) before it
sends the ``after_commit`` messages or releases the other replies, so that
nothing is acknowledged before it is durable (group commit). An
``after_commit`` message addressed to this node itself is delivered back to
it (``step``) like any other, after the commit: that is how this node's own
acceptor answers its proposals only once durable. ``take_replies()`` is the
single-node shortcut.

A server is a one-node cluster: with effective N = 1 the node is the only home
replica of every key, so it applies a mutation atomically to its own storage.
With more nodes, reads and blind writes are coordinated across the key's
replicas (``coordinator.py``, docs/replication.md). Keys of a ``strong``
keyspace are CASPaxos registers (``strong.py``, whose docstring lists the
requests and answers for frontends): every request on one goes there first,
so the lww/causal paths never read or write a strong table.
"""

from __future__ import annotations

import random
from typing import assert_never

import msgpack

from ringkv.core import messages as msg
from ringkv.core import ops
from ringkv.core.clocks import HlcClock, HlcTimestamp
from ringkv.core.config import DEFAULT_KEYSPACE, ConfigError, KeyspaceSpec, Level, NodeConfig
from ringkv.core.coordinator import PENDING, Coordination, Gather, NodeStats, Outbox
from ringkv.core.errors import ErrorKind, OpError
from ringkv.core.handoff import HINTS_TABLE, HintInFlight
from ringkv.core.listing import Listing, PendingListing
from ringkv.core.membership import Membership, MemberState
from ringkv.core.record import (
    ConflictMode,
    RecordError,
    Version,
    WriteSpec,
    live_versions,
    lww_order_key,
    new_write,
    pack_record,
    record_expiry,
    record_vv,
    unpack_record,
)
from ringkv.core.replication import PendingForward, PendingRead, PendingWrite
from ringkv.core.requests import (
    Cas,
    Count,
    CreateKeyspace,
    Flush,
    Inspect,
    ListKeyspaces,
    Lock,
    LockGranted,
    LockReleased,
    Mutate,
    PutMany,
    RandomKey,
    Read,
    ReadResult,
    RegisterReport,
    RegisterValue,
    ReplicaReport,
    Request,
    Scan,
    ScanResult,
    Unlock,
    Versioned,
)
from ringkv.core.ring import Member, Ring, build_ring, ring_epoch
from ringkv.core.strong import Strong, StrongStats, wrong_level
from ringkv.storage.base import Engine, FsyncPolicy, StorageError, Table

__all__ = [
    "HLC_RESERVE_MS",
    "META_TABLE",
    "Cas",
    "Count",
    "CreateKeyspace",
    "Flush",
    "Inspect",
    "ListKeyspaces",
    "Lock",
    "LockGranted",
    "LockReleased",
    "Mutate",
    "Node",
    "NodeStats",
    "Outbox",
    "PutMany",
    "Read",
    "ReadResult",
    "RegisterReport",
    "RegisterValue",
    "ReplicaReport",
    "RandomKey",
    "Request",
    "Scan",
    "ScanResult",
    "StrongStats",
    "Unlock",
    "Versioned",
]


META_TABLE = "meta"
HLC_RESERVE_MS = 1000  # the HLC high-water mark is persisted this far ahead
_HLC_KEY = b"hlc"
_EPOCH_KEY = b"incarnation"
_CLEAN_KEY = b"clean_stop"
_KEYSPACE_PREFIX = b"keyspace:"
_RING_KEY = b"ring_members"
_RUN_KEY = b"run"
_TABLE_PREFIX = "ks:"
_STRONG = ConflictMode.STRONG  # module constants: the request path reads them per call
_LINEARIZABLE = Level.LINEARIZABLE


class Node(Coordination, Listing, Strong):
    """Protocol logic of one node; see the module docstring for the interface."""

    def __init__(
        self,
        config: NodeConfig,
        engine: Engine,
        rng: random.Random,
        now_ms: int,
        ring: Ring | None = None,
        membership: Membership | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.engine = engine
        self.rng = rng
        self._meta = engine.table(META_TABLE)
        self.actor, run = self._start_incarnation()
        # CASPaxos ballots are (counter, "<node>~<run>"): a new run, a new
        # proposer id, so a ballot is never reused across restarts.
        self._init_strong(f"{config.node_id}~{run}")
        self.hlc = HlcClock(_load_hlc(self._meta))
        self.hlc.now(now_ms)
        self._hlc_reserved_ms = self.hlc.last.wall_ms
        self.limits = ops.Limits(max_value_bytes=config.max_value_bytes)
        self.keyspaces: dict[str, KeyspaceSpec] = {
            DEFAULT_KEYSPACE: KeyspaceSpec(name=DEFAULT_KEYSPACE)
        }
        self.keyspaces.update(_load_keyspaces(self._meta))
        self.expired_keys = 0
        self.stats = NodeStats()
        self._tables: dict[str, Table] = {}
        self._replies: list[tuple[object, object]] = []
        self._replies_now: list[tuple[object, object]] = []
        self._messages: list[tuple[str, msg.Message]] = []
        self._after_commit: list[tuple[str, msg.Message]] = []
        # Coordination state (core/replication.py), all bounded by
        # pending_requests_max, and the local failure detector: routing only.
        self._writes: dict[int, PendingWrite] = {}
        self._write_of_copy: dict[int, int] = {}  # copy req_id -> write id
        self._reads: dict[int, PendingRead] = {}
        self._read_of_ask: dict[int, int] = {}  # ask req_id -> read id
        self._forwards: dict[int, PendingForward] = {}
        self._forwards_seen: dict[tuple[str, int], None] = {}
        self._listings: dict[int, PendingListing] = {}
        self._suspect_until: dict[str, int] = {}
        self._hints = engine.table(HINTS_TABLE, evictable=False)
        self._hints_in_flight: dict[int, HintInFlight] = {}
        self._hint_cursor = 0
        # Request ids start at a random point (from the injected rng), so that
        # answers still queued for a previous run of this node id cannot
        # collide with this run's requests (they are also checked by sender).
        self._next_id = rng.getrandbits(48) << 8
        # The members of the ring this node last knew, kept in the meta table:
        # a restarted node starts with them instead of a ring of itself, which
        # would make it acknowledge writes as a cluster of one before it
        # hears from the others (found by `ringkv verify` on real processes).
        # They stay on the ring until membership says they left.
        remembered = [m for m in _load_ring_members(self._meta) if m.node_id != config.node_id]
        if ring is None and remembered:
            members = [Member(node_id=config.node_id), *remembered]
            ring = build_ring(members, epoch=ring_epoch(members))
        self.ring = ring or build_ring([Member(node_id=config.node_id)], epoch=0)
        self.cluster_size = len(self.ring.members)
        # SWIM membership (core/membership.py): drives routing and, in this
        # version, the ring: a member that joins is added to it (a join is
        # committed when its Alive is first heard); one that leaves is removed.
        # A death changes routing only, never ownership.
        self.membership = membership
        if membership is not None:
            self._follow_membership(now_ms)

    # -- inputs -----------------------------------------------------------

    def submit(self, request: Request, token: object, now_ms: int) -> None:
        """Take a client request; its reply appears in the outbox."""
        try:
            refused = self._joining(request)
            result: object
            if refused is not None:
                result = refused
            elif type(request) is Read or type(request) is Mutate:  # the hot path
                spec = self.keyspaces.get(request.keyspace)
                if spec is not None and spec.mode is _STRONG:
                    result = self._submit_strong(request, token, now_ms)
                elif request.level is _LINEARIZABLE:
                    result = wrong_level("level linearizable", spec, request.keyspace)
                elif self.cluster_size == 1:
                    result = self._execute(request, now_ms)
                else:
                    result = self._route(request, token, now_ms)
            elif isinstance(request, Inspect | PutMany):
                result = self._submit_keyed(request, token, now_ms)
            elif isinstance(request, Cas | Lock | Unlock):
                result = self._submit_strong(request, token, now_ms)
            elif self.cluster_size > 1 and isinstance(request, Scan | Count):
                result = self._start_listing(request, token, now_ms)
            else:
                result = self._execute(request, now_ms)
        except StorageError as exc:
            kind = ErrorKind.OUT_OF_MEMORY if "OOM" in str(exc) else ErrorKind.UNAVAILABLE
            code = "OOM" if kind is ErrorKind.OUT_OF_MEMORY else "ERR"
            message = str(exc).removeprefix("OOM ")
            result = OpError(kind, message, code=code)
        if result is not PENDING:
            self._resolve(token, result)
        if self._timers and self._timers[0][0] <= now_ms:
            self._run_due_timers(now_ms)

    def _submit_keyed(self, request: Inspect | PutMany, token: object, now_ms: int) -> object:
        """INSPECT or MSET(NX): a strong keyspace's go to ``strong.py``."""
        spec = self.keyspaces.get(request.keyspace)
        if spec is not None and spec.strong:
            if isinstance(request, PutMany):
                return self._put_many_strong(request, token, now_ms)
            return self._submit_strong(request, token, now_ms)
        if self.cluster_size == 1:
            return self._execute(request, now_ms)
        if isinstance(request, PutMany):
            return self._put_many_in_cluster(request, token, now_ms)
        return self._route(request, token, now_ms)

    def step(self, message: msg.Message, now_ms: int) -> None:
        """Take a message from a peer (already decoded by the codec)."""
        self._suspect_until.pop(message.src, None)  # it is alive: route to it again
        match message:
            case msg.ReplicaWrite():
                if not self._refused_as_strong(message):
                    self._on_replica_write(message, now_ms)
            case msg.ReplicaWriteAck():
                self._on_replica_write_ack(message, now_ms)
            case msg.ReplicaRead():
                if not self._refused_as_strong(message):
                    self._on_replica_read(message, now_ms)
            case msg.ReplicaReadReply():
                self._on_replica_read_reply(message, now_ms)
            case msg.CoordinateWrite():
                if not self._refused_as_strong(message):
                    self._on_coordinate_write(message, now_ms)
            case msg.CoordinateWriteReply():
                self._on_coordinate_write_reply(message)
            case msg.KeyspaceDefined():
                self._on_keyspace_defined(message)
            case msg.RangeScan():
                self._on_range_scan(message, now_ms)
            case msg.RangeScanReply():
                self._on_range_scan_reply(message, now_ms)
            case msg.PaxosPrepare() | msg.PaxosAccept():
                self._on_paxos_request(message, now_ms)
            case msg.PaxosPromise() | msg.PaxosAccepted():
                self._on_paxos_reply(message, now_ms)
            case msg.PaxosRead():
                self._on_paxos_read(message, now_ms)
            case msg.PaxosReadReply():
                self._on_paxos_read_reply(message, now_ms)
            case msg.Ping() | msg.PingReq() | msg.PingAck() | msg.MemberSync():
                if self.membership is not None:
                    self.membership.step(message, now_ms)
                    self._follow_membership(now_ms)
            case _:
                assert_never(message)
        if self._timers and self._timers[0][0] <= now_ms:
            self._run_due_timers(now_ms)

    def take_outbox(self) -> Outbox:
        """Drain everything to do: send ``messages`` now; flush the engine; then
        send ``after_commit`` and release ``replies``."""
        if self.membership is not None:
            self._messages.extend(self.membership.take_messages())
        out = Outbox(self._messages, self._after_commit, self._replies, self._replies_now)
        self._messages, self._after_commit, self._replies = [], [], []
        self._replies_now = []
        return out

    def tick(self, now_ms: int) -> None:
        """Background work bounded per call: time out requests, hand hints
        off, reclaim expired keys."""
        if self.membership is not None:
            self.membership.tick(now_ms)
            self._follow_membership(now_ms)
        if self.cluster_size > 1:
            self._tick_requests(now_ms)
            self._tick_listings(now_ms)
            self._deliver_hints(now_ms)
        if self._proposals or self._register_reads or self._waiting or self._probed_ms:
            self._tick_strong(now_ms)
        budget = self.config.expire_reclaim_per_tick
        for name in list(self._tables):
            spec = self.keyspaces.get(name)
            if spec is None or spec.strong or spec.effective_n(self.cluster_size) > 1:
                # Reclaiming would forget the record's dots, which replicas
                # still hold; tombstone purging comes with anti-entropy. An
                # acceptor's row is never removed (docs/paxos.md, tombstones).
                continue
            table = self._tables[name]
            # Expired means now > expiry, so only expiries before now qualify.
            for key in table.expiry_candidates(now_ms - 1, budget):
                raw = table.get(key)
                if raw is None:
                    continue
                versions = self._decode(raw)
                if not live_versions(versions, now_ms):
                    table.delete(key)
                    self.expired_keys += 1

    def count_keys(self, keyspace: str) -> int:
        """Keys stored for ``keyspace`` (including expired ones not yet reclaimed)."""
        return self._table(keyspace).count() if keyspace in self.keyspaces else 0

    def hints_pending(self) -> int:
        """Hints this node holds for other nodes, not yet delivered."""
        return self._hints.count()

    def count_expiring(self, keyspace: str) -> int:
        """Keys of ``keyspace`` that carry an expiry."""
        return self._table(keyspace).count_expiring() if keyspace in self.keyspaces else 0

    def take_replies(self) -> list[tuple[object, object]]:
        replies, self._replies = self._replies_now + self._replies, []
        self._replies_now = []
        return replies

    # -- requests ---------------------------------------------------------

    def _execute(self, request: Request, now_ms: int) -> object:
        match request:
            case Read(keyspace=ks, key=key):
                return self._read(ks, key, now_ms)
            case Mutate(keyspace=ks, key=key, mutation=mutation, context=context):
                return self._mutate(ks, key, mutation, now_ms, context)
            case PutMany():
                return self._put_many(request, now_ms)
            case Scan():
                return self._scan(request, now_ms)
            case Count(keyspace=ks):
                table = self._table_or_error(ks)
                if isinstance(table, OpError):
                    return table
                if self.keyspaces[ks].strong:  # acceptor rows stay after a delete
                    return self._list_range(table, 0, 2**64 - 1, table.count() + 1, True, now_ms)[1]
                return table.count()
            case RandomKey(keyspace=ks):
                return self._random_key(ks, now_ms)
            case CreateKeyspace(spec=spec):
                return self._create_keyspace(spec)
            case ListKeyspaces():
                return list(self.keyspaces.values())
            case Inspect(keyspace=ks, key=key):
                table = self._table_or_error(ks)
                if isinstance(table, OpError):
                    return table
                raw = table.get(key)
                versions = self._decode(raw) if raw is not None else []
                me = self.config.node_id
                return ReplicaReport(key, [me], {me: versions}, {})
            case Flush(keyspace=ks):
                return self._flush(ks)
            case Cas() | Lock() | Unlock():
                raise AssertionError("submit sends these to _submit_strong")

    def _flush(self, keyspace: str | None) -> object:
        """FLUSHDB / FLUSHALL on this node. A strong keyspace is cleared only
        in a cluster of one: clearing one acceptor's rows among several would
        make it forget promises, which CASPaxos's safety rests on; FLUSHALL
        leaves such keyspaces alone, FLUSHDB of one is refused."""
        names = list(self.keyspaces) if keyspace is None else [keyspace]
        kept = [n for n in names if n in self.keyspaces and self.keyspaces[n].strong]
        if self.cluster_size == 1:
            kept = []
        if keyspace is not None and kept:
            return OpError(
                ErrorKind.WRONG_LEVEL,
                f"keyspace {keyspace!r} is strong and replicated: FLUSHDB would make this "
                "node's acceptors forget their promises; delete its keys one by one",
                code="WRONGLEVEL",
            )
        for name in names:
            if name not in kept:
                self._table(name).clear()
        return True

    def _read(self, keyspace: str, key: bytes, now_ms: int) -> ReadResult | OpError:
        table = self._tables.get(keyspace) or self._table_or_error(keyspace)
        if isinstance(table, OpError):
            return table
        if len(key) > self.config.max_key_bytes:
            return self._key_too_large(key)
        raw = table.get(key)
        if raw is None:
            return ReadResult([], [])
        versions = self._decode(raw)
        return ReadResult(live_versions(versions, now_ms), versions)

    def _mutate(
        self,
        keyspace: str,
        key: bytes,
        mutation: ops.Mutation,
        now_ms: int,
        context: dict[str, int] | None = None,
    ) -> object:
        table = self._tables.get(keyspace) or self._table_or_error(keyspace)
        if isinstance(table, OpError):
            return table
        if len(key) > self.config.max_key_bytes:
            return self._key_too_large(key)
        raw = table.get(key)
        versions = self._decode(raw) if raw is not None else []
        live = live_versions(versions, now_ms)
        if len(live) == 1:
            current: Version | None = live[0]
        else:
            current = max(live, key=lww_order_key) if live else None
        outcome = mutation.apply(current, now_ms, self.limits)
        if isinstance(outcome.result, OpError) or not outcome.writes:
            return outcome.result
        if outcome.delete:
            # Effective N = 1: this node is the key's only home replica, so
            # the tombstone would be purged at once; remove the key instead.
            table.delete(key)
            return outcome.result
        assert outcome.value is not None
        if len(outcome.value) > self.config.max_value_bytes:
            return self._value_too_large(outcome.value)
        spec = self.keyspaces[keyspace]
        # A write with a context supersedes what the context saw; a
        # read-modify-write saw every version it read; a blind write in a
        # causal keyspace saw nothing, and so becomes a sibling. In lww and
        # strong mode every write here supersedes what this replica holds.
        saw: dict[str, int] | None = context
        if saw is None and spec.mode is ConflictMode.CAUSAL and not mutation.blind:
            saw = record_vv(versions)
        write = WriteSpec(
            value=outcome.value,
            hlc=self._next_hlc(now_ms),
            node=self.actor,
            expires_at_ms=outcome.expires_at_ms,
        )
        new = new_write(versions, write, spec.mode, saw)
        if len(new) > self.config.siblings_max:
            return OpError(
                ErrorKind.INVALID,
                f"key has {len(new) - 1} siblings, the most this keyspace keeps; "
                "read them with RINGKV.SIBLINGS and write with their CONTEXT to resolve",
                code="SIBLINGS",
            )
        table.put(key, pack_record(new), record_expiry(new))
        return outcome.result

    def _put_many(self, request: PutMany, now_ms: int) -> object:
        keyspace = request.keyspace
        for key, value in request.items:
            if len(key) > self.config.max_key_bytes:
                return self._key_too_large(key)
            if len(value) > self.config.max_value_bytes:
                return self._value_too_large(value)
        if request.only_if_all_absent:
            spec = self.keyspaces.get(keyspace)
            if spec is not None and spec.effective_n(self.cluster_size) > 1:
                return OpError(
                    ErrorKind.WRONG_LEVEL,
                    "MSETNX needs one replica holding every key; use a strong keyspace",
                    code="WRONGLEVEL",
                )
            for key, _ in request.items:
                read = self._read(keyspace, key, now_ms)
                if isinstance(read, OpError):
                    return read
                if read.versions:
                    return False
        for key, value in request.items:
            result = self._mutate(keyspace, key, ops.Put(value), now_ms)
            if isinstance(result, OpError):
                return result
        return True

    def _scan(self, request: Scan, now_ms: int) -> ScanResult | OpError:
        table = self._table_or_error(request.keyspace)
        if isinstance(table, OpError):
            return table
        if request.unbounded:
            keys, cursor = table.scan(0, table.count() + 1)
            assert cursor == 0
        else:
            count = min(request.count, self.config.scan_count_max)
            keys, cursor = table.scan(request.cursor, count)
        strong = self.keyspaces[request.keyspace].strong
        live = []
        for key in keys:  # skip keys that expired but are not reclaimed yet
            raw = table.get(key)
            if strong:
                if self._register_live(raw, now_ms):
                    live.append(key)
            elif raw is not None and live_versions(self._decode(raw), now_ms):
                live.append(key)
        return ScanResult(live, cursor)

    def _random_key(self, keyspace: str, now_ms: int) -> bytes | OpError | None:
        table = self._table_or_error(keyspace)
        if isinstance(table, OpError):
            return table
        strong = self.keyspaces[keyspace].strong
        for _ in range(16):  # skip keys that expired but are not reclaimed yet
            key = table.random_key(self.rng.getrandbits(62))
            if key is None:
                return None
            if strong:
                if self._register_live(table.get(key), now_ms):
                    return key
                continue
            read = self._read(keyspace, key, now_ms)
            if isinstance(read, ReadResult) and read.versions:
                return key
        return None

    # -- helpers ----------------------------------------------------------

    def attach_membership(self, membership: Membership, now_ms: int) -> None:
        """Join a cluster (the runtime attaches membership once the peer port is bound)."""
        self.membership = membership
        self._follow_membership(now_ms)

    def _follow_membership(self, now_ms: int) -> None:
        """Route around dead members, and keep the ring to the joined members."""
        assert self.membership is not None
        for node_id, state in self.membership.take_events():
            if node_id == self.config.node_id:
                continue
            if state in (MemberState.DEAD, MemberState.LEFT):
                self._suspect_until[node_id] = 2**62  # until it is heard from again
            elif state is MemberState.ALIVE:
                self._suspect_until.pop(node_id, None)
                for spec in self.keyspaces.values():  # it may have missed some
                    if spec.name != DEFAULT_KEYSPACE:
                        self._messages.append((node_id, self._keyspace_message(spec)))
        members: dict[str, Member] = {}
        left: set[str] = set()
        for m in self.membership.members():
            if m.state is MemberState.LEFT:
                left.add(m.node_id)
            else:
                members[m.node_id] = Member(
                    node_id=m.node_id, weight=m.weight, zone=m.zone, host=m.host
                )
        if self.config.node_id not in members:
            return
        for member in self.ring.members:  # known before, not heard of yet: kept
            if member.node_id not in left:
                members.setdefault(member.node_id, member)
        ring = build_ring(members.values(), epoch=ring_epoch(members.values()))
        if ring != self.ring:
            self.ring = ring
            self.cluster_size = len(ring.members)
            self._meta.put(_RING_KEY, _pack_ring_members(ring.members), 0)
            self._strong_ring_changed(now_ms)

    def _joining(self, request: Request) -> OpError | None:
        """A node started to join a cluster refuses data requests until it has
        heard from another member: as a cluster of one it would keep writes
        that belong elsewhere."""
        if (
            self.cluster_size > 1
            or self.membership is None
            or not self.membership.has_seeds
            or not isinstance(
                request, Read | Mutate | PutMany | Scan | Count | RandomKey | Cas | Lock | Unlock
            )
        ):
            return None
        return OpError(
            ErrorKind.UNAVAILABLE,
            "this node is still joining the cluster (no other member heard from yet); "
            "retry in a moment",
            code="UNAVAILABLE",
        )

    def _start_incarnation(self) -> tuple[str, int]:
        """The actor id this node's writes are dotted with, for this run, and
        the run number (bumped at every start: CASPaxos ballots).

        A coordinator numbers a key's next version from its own copy. If a
        power loss took writes this node had already sent to its peers (only
        possible without ``--fsync always``), it would number the next one the
        same, and replicas would take two writes for one. So after an unclean
        stop under such a policy the node takes a new incarnation, and its
        dots a new actor id, ``<node>~<incarnation>``: its old dots can never
        be handed out again. The incarnation is made durable before anything
        else happens (the one place the core asks the engine to sync).

        The run number changes at every start, clean or not: a CASPaxos
        proposer's ballot counter starts over each run, so its id
        ``<node>~<run>`` must be new each run for no ballot ever to name two
        states (docs/paxos.md). It is synced with the incarnation.
        """
        raw_epoch = self._meta.get(_EPOCH_KEY)
        epoch = int(raw_epoch) if raw_epoch is not None else 0
        clean = self._meta.get(_CLEAN_KEY) == b"1"
        if raw_epoch is not None and not clean and self.engine.fsync is not FsyncPolicy.ALWAYS:
            epoch += 1
        raw_run = self._meta.get(_RUN_KEY)
        try:
            run = int(raw_run) + 1 if raw_run is not None else 1
        except ValueError as exc:
            raise StorageError(f"damaged run number in the meta table: {raw_run!r}") from exc
        self._meta.put(_EPOCH_KEY, str(epoch).encode(), 0)
        self._meta.put(_CLEAN_KEY, b"0", 0)
        self._meta.put(_RUN_KEY, str(run).encode(), 0)
        self.engine.flush()
        self.engine.sync()
        actor = self.config.node_id if epoch == 0 else f"{self.config.node_id}~{epoch}"
        return actor, run

    def _put_many_in_cluster(self, request: PutMany, token: object, now_ms: int) -> object:
        """MSET across replicas: every limit checked first, then one write per
        key (per key, not atomic, as DESIGN.md states), answered once all are."""
        if request.only_if_all_absent:
            return OpError(
                ErrorKind.WRONG_LEVEL,
                "MSETNX needs every key on one replica; a strong keyspace will carry it",
                code="WRONGLEVEL",
            )
        for key, value in request.items:
            if len(key) > self.config.max_key_bytes:
                return self._key_too_large(key)
            if len(value) > self.config.max_value_bytes:
                return self._value_too_large(value)
        gather = Gather(self, token, len(request.items))
        for key, value in request.items:
            self.submit(Mutate(request.keyspace, key, ops.Put(value)), gather, now_ms)
        return PENDING

    def _put_many_strong(self, request: PutMany, token: object, now_ms: int) -> object:
        """MSET in a strong keyspace: one round per key (not atomic across
        keys). MSETNX is all or nothing, which CASPaxos gives per key only:
        served when this node is every key's only acceptor (a cluster of one),
        where the rounds run in place within this one call, else refused."""
        for key, value in request.items:
            if len(key) > self.config.max_key_bytes:
                return self._key_too_large(key)
            if len(value) > self.config.max_value_bytes:
                return self._value_too_large(value)
        spec = self.keyspaces[request.keyspace]
        if request.only_if_all_absent:
            me = (self.config.node_id,)
            if any(self._homes(spec, key) != me for key, _ in request.items):
                return OpError(
                    ErrorKind.WRONG_LEVEL,
                    "MSETNX needs one acceptor holding every key; in a replicated strong "
                    "keyspace each key is its own register (use one key, or a CAS per key)",
                    code="WRONGLEVEL",
                )
            for key, _ in request.items:
                read = self._submit_strong(Read(spec.name, key, Level.LINEARIZABLE), None, now_ms)
                assert isinstance(read, RegisterValue)
                if read.value is not None:
                    return False
        gather = Gather(self, token, len(request.items))
        for key, value in request.items:
            self.submit(Mutate(request.keyspace, key, ops.Put(value)), gather, now_ms)
        return PENDING

    def _list_range(
        self, table: Table, start: int, end: int, count: int, count_only: bool, now_ms: int
    ) -> tuple[list[bytes], int, int | None]:
        """Listing's step over a local range; a strong table's rows are
        acceptor states, judged by ``strong.py``."""
        spec = self.keyspaces.get(table.name.removeprefix(_TABLE_PREFIX))
        if spec is not None and spec.strong:
            return self._list_strong_range(table, start, end, count, count_only, now_ms)
        return Listing._list_range(self, table, start, end, count, count_only, now_ms)

    def _create_keyspace(self, spec: KeyspaceSpec) -> object:
        try:
            spec.validate()
        except ConfigError as exc:
            return OpError(ErrorKind.INVALID, str(exc))
        existing = self.keyspaces.get(spec.name)
        if existing is not None:
            if existing == spec:
                return False  # already there, as asked
            return OpError(
                ErrorKind.INVALID,
                f"keyspace {spec.name!r} exists as {_describe(existing)}; a keyspace's mode, "
                "n and level are fixed at creation: create one with another name",
            )
        if len(self.keyspaces) >= self.config.keyspaces_max:
            return OpError(
                ErrorKind.INVALID, f"{len(self.keyspaces)} keyspaces exist, the most allowed"
            )
        self._meta.put(_KEYSPACE_PREFIX + spec.name.encode(), _pack_keyspace(spec), 0)
        self.keyspaces[spec.name] = spec
        if self.membership is not None:
            for member in self.membership.members():
                if member.node_id != self.config.node_id and member.state is not MemberState.LEFT:
                    self._messages.append((member.node_id, self._keyspace_message(spec)))
        return True

    def _keyspace_message(self, spec: KeyspaceSpec) -> msg.KeyspaceDefined:
        return msg.KeyspaceDefined(
            src=self.config.node_id, name=spec.name, mode=spec.mode.value,
            n_replicas=spec.n_replicas, level=spec.level.value,
        )  # fmt: skip

    def _on_keyspace_defined(self, m: msg.KeyspaceDefined) -> None:
        try:
            spec = KeyspaceSpec(
                name=m.name,
                mode=ConflictMode(m.mode),
                n_replicas=m.n_replicas,
                level=Level(m.level),
            )
        except ValueError:
            self.stats.malformed_replies += 1
            return
        result = self._create_keyspace(spec)
        if isinstance(result, OpError):
            self.stats.keyspace_conflicts += 1

    def close(self) -> None:
        """Record a clean stop (the next start keeps this incarnation)."""
        self._meta.put(_CLEAN_KEY, b"1", 0)
        self.engine.flush()
        self.engine.sync()

    def _next_hlc(self, now_ms: int) -> HlcTimestamp:
        """Timestamp a write; never below any timestamp handed out before a restart.

        The clock's high-water mark is persisted ``HLC_RESERVE_MS`` ahead, in
        the same group commit as the write that crossed the previous mark, and
        a restarted node starts above it: so the HLC is monotonic even when
        the wall clock steps back across a crash. The cost is one small meta
        write per reserve period, and a restarted clock up to that far ahead.
        """
        ts = self.hlc.now(now_ms)
        if ts.wall_ms >= self._hlc_reserved_ms:
            self._hlc_reserved_ms = ts.wall_ms + HLC_RESERVE_MS
            self._meta.put(_HLC_KEY, msgpack.packb([self._hlc_reserved_ms, 0]), 0)
        return ts

    def _table(self, keyspace: str) -> Table:
        table = self._tables.get(keyspace)
        if table is None:
            # A cache engine may evict lww/causal rows, never an acceptor's state.
            spec = self.keyspaces.get(keyspace)
            evictable = spec is None or spec.mode is not _STRONG
            table = self._tables[keyspace] = self.engine.table(
                _TABLE_PREFIX + keyspace, evictable=evictable
            )
        return table

    def _table_or_error(self, keyspace: str) -> Table | OpError:
        if keyspace not in self.keyspaces:
            return OpError(
                ErrorKind.NOT_FOUND,
                f"no keyspace {keyspace!r}; create it with `ringkv keyspace create {keyspace}`",
            )
        return self._table(keyspace)

    def _decode(self, raw: bytes) -> list[Version]:
        try:
            return unpack_record(raw)
        except RecordError as exc:  # our own bug or a damaged disk, never client input
            raise StorageError(f"damaged record: {exc}") from exc

    def _key_too_large(self, key: bytes) -> OpError:
        return OpError(
            ErrorKind.TOO_LARGE,
            f"key is {len(key)} bytes, over max-key-bytes ({self.config.max_key_bytes})",
        )

    def _value_too_large(self, value: bytes) -> OpError:
        return OpError(
            ErrorKind.TOO_LARGE,
            f"value is {len(value)} bytes, over max-value-bytes ({self.config.max_value_bytes})",
        )


def _pack_keyspace(spec: KeyspaceSpec) -> bytes:
    packed: bytes = msgpack.packb([spec.mode.value, spec.n_replicas, spec.level.value])
    return packed


def _load_keyspaces(meta: Table) -> dict[str, KeyspaceSpec]:
    """Keyspaces defined on this node (kept in the meta table)."""
    found: dict[str, KeyspaceSpec] = {}
    keys, _ = meta.scan(0, meta.count() + 1)
    for key in keys:
        if not key.startswith(_KEYSPACE_PREFIX):
            continue
        raw = meta.get(key)
        try:
            mode, n, level = msgpack.unpackb(raw or b"")
            name = key[len(_KEYSPACE_PREFIX) :].decode()
            found[name] = KeyspaceSpec(
                name=name, mode=ConflictMode(mode), n_replicas=int(n), level=Level(level)
            )
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise StorageError(f"damaged keyspace definition {key!r}: {exc}") from exc
    return found


def _pack_ring_members(members: tuple[Member, ...]) -> bytes:
    packed: bytes = msgpack.packb([[m.node_id, m.weight, m.zone, m.host] for m in members])
    return packed


def _load_ring_members(meta: Table) -> list[Member]:
    raw = meta.get(_RING_KEY)
    if raw is None:
        return []
    try:
        return [
            Member(node_id=str(node), weight=int(weight), zone=str(zone), host=str(host))
            for node, weight, zone, host in msgpack.unpackb(raw)
        ]
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise StorageError(f"damaged ring members in the meta table: {exc}") from exc


def _describe(spec: KeyspaceSpec) -> str:
    return f"mode {spec.mode.value}, n {spec.n_replicas}, level {spec.level.value}"


def _load_hlc(meta: Table) -> HlcTimestamp:
    raw = meta.get(_HLC_KEY)
    if raw is None:
        return HlcTimestamp(0, 0)
    try:
        wall, logical = msgpack.unpackb(raw)
        return HlcTimestamp(int(wall), int(logical))
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise StorageError(f"damaged HLC high-water mark in the meta table: {exc}") from exc
