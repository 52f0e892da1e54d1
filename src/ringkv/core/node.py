"""The Node: one ringkv process's protocol logic, with no I/O.

Theory of operation (the shape of etcd's raft ``RawNode``). The runtime (or
the simulator, or a test) feeds the node inputs and drains its outputs:

* ``submit(request, token, now_ms)``: a client request; ``token`` is opaque to
  the node and comes back with the reply;
* ``tick(now_ms)``: time passed; the node does its bounded background work
  (reclaiming expired keys);
* ``take_replies()``: the outbox of ``(token, result)`` pairs.

A result is a plain value or an ``OpError``. The runtime must call
``engine.flush()`` before it releases any reply taken after a write, so that
nothing is acknowledged before it is durable (group commit).

A server is a one-node cluster: with effective N = 1 the node is the only home
replica of every key, so it applies a mutation atomically to its own storage;
this is the same path a replicated write takes on each replica, and the path
through which every front end (RESP, HTTP, embedded) goes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import NamedTuple, TypeAlias, assert_never

import msgpack

from ringkv.core import messages as msg
from ringkv.core import ops
from ringkv.core.clocks import HlcClock, HlcTimestamp, vv_from_flat, vv_to_flat
from ringkv.core.config import DEFAULT_KEYSPACE, KeyspaceSpec, Level, NodeConfig
from ringkv.core.errors import ErrorKind, OpError
from ringkv.core.handoff import HINTS_TABLE, HintInFlight, hint_key, parse_hint_key
from ringkv.core.record import (
    ConflictMode,
    RecordError,
    Version,
    WriteSpec,
    live_versions,
    lww_order_key,
    new_write,
    pack_record,
    record_vv,
    resolve,
    sync,
    unpack_record,
)
from ringkv.core.replication import (
    PendingForward,
    PendingRead,
    PendingWrite,
    WriteTarget,
    required_acks,
)
from ringkv.core.ring import Member, Ring, build_ring, fallback_order, key_token, preference_list
from ringkv.storage.base import Engine, StorageError, Table

__all__ = [
    "Count",
    "Flush",
    "Mutate",
    "Node",
    "PutMany",
    "Read",
    "ReadResult",
    "RandomKey",
    "Request",
    "Scan",
    "ScanResult",
]


META_TABLE = "meta"
HLC_RESERVE_MS = 1000  # the HLC high-water mark is persisted this far ahead
_HLC_KEY = b"hlc"


class Read(NamedTuple):
    """Read one key. Read and Mutate are named tuples, not frozen dataclasses:
    one is built for every request, and a tuple costs a quarter as much.

    ``level`` None means the keyspace's level; ``acks`` > 0 is an explicit R."""

    keyspace: str
    key: bytes
    level: Level | None = None
    acks: int = 0


class Mutate(NamedTuple):
    """``level`` None means the keyspace's level; ``acks`` > 0 is an explicit W.
    ``context`` is the causal context the client read (None: it read nothing)."""

    keyspace: str
    key: bytes
    mutation: ops.Mutation
    level: Level | None = None
    acks: int = 0
    context: dict[str, int] | None = None


@dataclass(frozen=True, slots=True)
class PutMany:
    """MSET (per key, not atomic) or MSETNX (``only_if_all_absent``: all or
    nothing, atomic only where one replica holds every key). Every key and
    value is checked against the limits before anything is written."""

    keyspace: str
    items: tuple[tuple[bytes, bytes], ...]
    only_if_all_absent: bool = False


@dataclass(frozen=True, slots=True)
class Scan:
    """SCAN step (about ``count`` live keys from ``cursor``), or KEYS (unbounded)."""

    keyspace: str
    cursor: int
    count: int
    unbounded: bool = False


@dataclass(frozen=True, slots=True)
class Count:
    keyspace: str


@dataclass(frozen=True, slots=True)
class RandomKey:
    keyspace: str


@dataclass(frozen=True, slots=True)
class Flush:
    """FLUSHDB / FLUSHALL: drop every key of one keyspace, or of all (None)."""

    keyspace: str | None


Request: TypeAlias = Read | Mutate | PutMany | Scan | Count | RandomKey | Flush


class ReadResult:
    """The live siblings of a key (newest last) and the causal context to write with.

    The context is computed on first use: most reads (a plain GET) never ask.
    """

    __slots__ = ("_context", "_stored", "versions")

    def __init__(self, versions: list[Version], stored: list[Version]) -> None:
        self.versions = versions  # live versions, in lww order
        self._stored = stored  # every stored version, tombstones and expired included
        self._context: dict[str, int] | None = None

    @property
    def context(self) -> dict[str, int]:
        if self._context is None:
            self._context = record_vv(self._stored)
        return self._context

    @property
    def newest(self) -> Version | None:
        return self.versions[-1] if self.versions else None

    def __repr__(self) -> str:
        return f"ReadResult(versions={self.versions!r})"


@dataclass(frozen=True, slots=True)
class ScanResult:
    keys: list[bytes]
    cursor: int  # 0 when the walk is complete


class Node:
    """Protocol logic of one node; see the module docstring for the interface."""

    def __init__(
        self,
        config: NodeConfig,
        engine: Engine,
        rng: random.Random,
        now_ms: int,
        ring: Ring | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.engine = engine
        self.rng = rng
        self._meta = engine.table(META_TABLE)
        self.hlc = HlcClock(_load_hlc(self._meta))
        self.hlc.now(now_ms)
        self._hlc_reserved_ms = self.hlc.last.wall_ms
        self.limits = ops.Limits(max_value_bytes=config.max_value_bytes)
        self.keyspaces: dict[str, KeyspaceSpec] = {
            DEFAULT_KEYSPACE: KeyspaceSpec(name=DEFAULT_KEYSPACE)
        }
        self.expired_keys = 0
        self.stats = NodeStats()
        self._tables: dict[str, Table] = {}
        self._replies: list[tuple[object, object]] = []
        self._messages: list[tuple[str, msg.Message]] = []
        self._after_commit: list[tuple[str, msg.Message]] = []
        # Coordination state (core/replication.py), all bounded by
        # pending_requests_max, and the local failure detector: routing only.
        self._writes: dict[int, PendingWrite] = {}
        self._write_of_copy: dict[int, int] = {}  # copy req_id -> write id
        self._reads: dict[int, PendingRead] = {}
        self._read_of_ask: dict[int, int] = {}  # ask req_id -> read id
        self._forwards: dict[int, PendingForward] = {}
        self._suspect_until: dict[str, int] = {}
        self._hints = engine.table(HINTS_TABLE)
        self._hints_in_flight: dict[int, HintInFlight] = {}
        self._hint_cursor = 0
        self._next_id = 0
        self.ring = ring or build_ring([Member(node_id=config.node_id)], epoch=0)
        self.cluster_size = len(self.ring.members)

    # -- inputs -----------------------------------------------------------

    def submit(self, request: Request, token: object, now_ms: int) -> None:
        """Take a client request; its reply appears in the outbox."""
        try:
            if self.cluster_size > 1 and isinstance(request, Read | Mutate):
                result = self._route(request, token, now_ms)
            else:
                result = self._execute(request, now_ms)
        except StorageError as exc:
            kind = ErrorKind.OUT_OF_MEMORY if "OOM" in str(exc) else ErrorKind.UNAVAILABLE
            code = "OOM" if kind is ErrorKind.OUT_OF_MEMORY else "ERR"
            message = str(exc).removeprefix("OOM ")
            result = OpError(kind, message, code=code)
        if result is not _PENDING:
            self._replies.append((token, result))

    def step(self, message: msg.Message, now_ms: int) -> None:
        """Take a message from a peer (already decoded by the codec)."""
        self._suspect_until.pop(message.src, None)  # it is alive: route to it again
        match message:
            case msg.ReplicaWrite():
                self._on_replica_write(message, now_ms)
            case msg.ReplicaWriteAck():
                self._on_replica_write_ack(message, now_ms)
            case msg.ReplicaRead():
                self._on_replica_read(message, now_ms)
            case msg.ReplicaReadReply():
                self._on_replica_read_reply(message, now_ms)
            case msg.CoordinateWrite():
                self._on_coordinate_write(message, now_ms)
            case msg.CoordinateWriteReply():
                self._on_coordinate_write_reply(message)
            case _:
                assert_never(message)

    def take_outbox(self) -> Outbox:
        """Drain everything to do: send ``messages`` now; flush the engine; then
        send ``after_commit`` and release ``replies``."""
        out = Outbox(self._messages, self._after_commit, self._replies)
        self._messages, self._after_commit, self._replies = [], [], []
        return out

    def tick(self, now_ms: int) -> None:
        """Background work bounded per call: time out requests, hand hints
        off, reclaim expired keys."""
        if self.cluster_size > 1:
            self._tick_requests(now_ms)
            self._deliver_hints(now_ms)
        budget = self.config.expire_reclaim_per_tick
        for name in list(self._tables):
            spec = self.keyspaces.get(name)
            if spec is None or spec.effective_n(self.cluster_size) > 1:
                # Reclaiming would forget the record's dots, which replicas
                # still hold; tombstone purging comes with anti-entropy.
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

    def count_expiring(self, keyspace: str) -> int:
        """Keys of ``keyspace`` that carry an expiry."""
        return self._table(keyspace).count_expiring() if keyspace in self.keyspaces else 0

    def take_replies(self) -> list[tuple[object, object]]:
        replies, self._replies = self._replies, []
        return replies

    # -- requests ---------------------------------------------------------

    def _execute(self, request: Request, now_ms: int) -> object:
        match request:
            case Read(keyspace=ks, key=key):
                return self._read(ks, key, now_ms)
            case Mutate(keyspace=ks, key=key, mutation=mutation):
                return self._mutate(ks, key, mutation, now_ms)
            case PutMany():
                return self._put_many(request, now_ms)
            case Scan():
                return self._scan(request, now_ms)
            case Count(keyspace=ks):
                table = self._table_or_error(ks)
                return table if isinstance(table, OpError) else table.count()
            case RandomKey(keyspace=ks):
                return self._random_key(ks, now_ms)
            case Flush(keyspace=ks):
                names = list(self.keyspaces) if ks is None else [ks]
                for name in names:
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

    def _mutate(self, keyspace: str, key: bytes, mutation: ops.Mutation, now_ms: int) -> object:
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
        # A read-modify-write saw every version it read; a blind write in a
        # causal keyspace saw nothing, and so becomes a sibling. In lww and
        # strong mode every write here supersedes what this replica holds.
        if spec.mode is ConflictMode.CAUSAL and not mutation.blind:
            saw: dict[str, int] | None = record_vv(versions)
        else:
            saw = None
        write = WriteSpec(
            value=outcome.value,
            hlc=self._next_hlc(now_ms),
            node=self.config.node_id,
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
        table.put(key, pack_record(new), _record_expiry(new))
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
        live = []
        for key in keys:  # skip keys that expired but are not reclaimed yet
            raw = table.get(key)
            if raw is not None and live_versions(self._decode(raw), now_ms):
                live.append(key)
        return ScanResult(live, cursor)

    def _random_key(self, keyspace: str, now_ms: int) -> bytes | OpError | None:
        table = self._table_or_error(keyspace)
        if isinstance(table, OpError):
            return table
        for _ in range(16):  # skip keys that expired but are not reclaimed yet
            key = table.random_key(self.rng.getrandbits(62))
            if key is None:
                return None
            read = self._read(keyspace, key, now_ms)
            if isinstance(read, ReadResult) and read.versions:
                return key
        return None

    # -- coordination (cluster) ------------------------------------------

    def _route(self, request: Read | Mutate, token: object, now_ms: int) -> object:
        spec = self.keyspaces.get(request.keyspace)
        if spec is None:
            return self._table_or_error(request.keyspace)
        if len(request.key) > self.config.max_key_bytes:
            return self._key_too_large(request.key)
        n = spec.effective_n(self.cluster_size)
        homes = preference_list(self.ring, key_token(request.key), n)
        level = request.level or spec.level
        if type(request) is Read:
            return self._start_read(
                spec, request.key, homes, required_acks(level, n, request.acks), token, now_ms
            )
        assert isinstance(request, Mutate)
        mutation = request.mutation
        if not mutation.blind:
            if n == 1 and homes[0] == self.config.node_id:
                return self._mutate(spec.name, request.key, mutation, now_ms)
            return OpError(
                ErrorKind.WRONG_LEVEL,
                f"{type(mutation).__name__} reads the current value before writing, which is "
                "atomic only in a strong keyspace (or one with n_replicas 1 on this node)",
                code="WRONGLEVEL",
            )
        result: object = True
        if isinstance(mutation, ops.Remove):
            # A delete is a tombstone version. Whether the key existed is not
            # known without a read, so DEL counts it as removed.
            value, expires_at_ms, tombstone = b"", 0, True
        else:
            outcome = mutation.apply(None, now_ms, self.limits)
            if isinstance(outcome.result, OpError):
                return outcome.result
            value = outcome.value if outcome.value is not None else b""
            expires_at_ms, tombstone, result = outcome.expires_at_ms, outcome.delete, outcome.result
        if len(value) > self.config.max_value_bytes:
            return self._value_too_large(value)
        write = _ClientWrite(
            value=value,
            expires_at_ms=expires_at_ms,
            tombstone=tombstone,
            context=request.context,
            acks=required_acks(level, n, request.acks),
            result=result,
        )
        if self.config.node_id in homes:
            return self._start_write(spec, request.key, homes, write, token, now_ms)
        return self._forward_write(spec, request.key, homes, write, token, now_ms)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _suspected(self, node: str, now_ms: int) -> bool:
        until = self._suspect_until.get(node)
        if until is None:
            return False
        if until <= now_ms:
            del self._suspect_until[node]
            return False
        return True

    def _busy(self) -> OpError | None:
        pending = len(self._writes) + len(self._reads) + len(self._forwards)
        if pending < self.config.pending_requests_max:
            return None
        return OpError(
            ErrorKind.UNAVAILABLE,
            f"{pending} requests are being coordinated here, the most allowed; retry shortly",
            code="UNAVAILABLE",
        )

    def _forward_write(
        self,
        spec: KeyspaceSpec,
        key: bytes,
        homes: tuple[str, ...],
        write: _ClientWrite,
        token: object,
        now_ms: int,
    ) -> object:
        target = next((h for h in homes if not self._suspected(h, now_ms)), None)
        if target is None:
            return OpError(
                ErrorKind.UNAVAILABLE,
                "no home replica of this key is reachable, and only a home replica may "
                "coordinate a write (it numbers the key's versions); nothing was written",
                code="UNAVAILABLE",
            )
        busy = self._busy()
        if busy is not None:
            return busy
        req_id = self._new_id()
        self._forwards[req_id] = PendingForward(
            token, target, now_ms + self.config.request_timeout_ms
        )
        self.stats.writes_forwarded += 1
        self._messages.append(
            (
                target,
                msg.CoordinateWrite(
                    src=self.config.node_id,
                    req_id=req_id,
                    ring_epoch=self.ring.epoch,
                    keyspace=spec.name,
                    key=key,
                    value=write.value,
                    expires_at_ms=write.expires_at_ms,
                    tombstone=write.tombstone,
                    context=None if write.context is None else vv_to_flat(write.context),
                    w=write.acks,
                ),
            )
        )
        return _PENDING

    def _start_write(
        self,
        spec: KeyspaceSpec,
        key: bytes,
        homes: tuple[str, ...],
        write: _ClientWrite,
        token: object,
        now_ms: int,
    ) -> object:
        """Coordinate a write as a home replica: mint the version, store it,
        send it to the other replicas (after it is durable here)."""
        busy = self._busy()
        if busy is not None:
            return busy
        table = self._table(spec.name)
        raw = table.get(key)
        versions = self._decode(raw) if raw is not None else []
        for version in versions:  # a write that follows these must be timestamped after them
            self.hlc.observe(version.hlc, now_ms)
        spec_write = WriteSpec(
            value=write.value,
            hlc=self._next_hlc(now_ms),
            node=self.config.node_id,
            expires_at_ms=write.expires_at_ms,
            tombstone=write.tombstone,
        )
        new = new_write(versions, spec_write, spec.mode, write.context)
        if len(new) > self.config.siblings_max:
            return self._too_many_siblings(new)
        record = pack_record(new)
        table.put(key, record, _record_expiry(new))
        self.stats.writes_coordinated += 1
        pending = PendingWrite(
            token=token,
            keyspace=spec.name,
            key=key,
            record=record,
            result=write.result,
            needed=write.acks,
            deadline_ms=now_ms + self.config.request_timeout_ms,
        )
        write_id = self._new_id()
        for home in homes:
            if home == self.config.node_id:
                continue
            target = home
            if self._suspected(home, now_ms):
                target = self._pick_fallback(spec, key, homes, pending, now_ms) or home
            self._send_copy(write_id, pending, target, home, now_ms)
        if pending.acks >= pending.needed:
            pending.replied = True
            self._resolve(token, write.result)
        if not pending.settled:
            self._writes[write_id] = pending
        return _PENDING

    def _send_copy(
        self, write_id: int, pending: PendingWrite, node: str, home: str, now_ms: int
    ) -> None:
        req_id = self._new_id()
        pending.targets[req_id] = WriteTarget(node=node, home=home, sent_ms=now_ms)
        self._write_of_copy[req_id] = write_id
        if node != home:
            self.stats.hinted_copies_sent += 1
        self._after_commit.append(
            (
                node,
                msg.ReplicaWrite(
                    src=self.config.node_id,
                    req_id=req_id,
                    ring_epoch=self.ring.epoch,
                    keyspace=pending.keyspace,
                    key=pending.key,
                    record=pending.record,
                    hint_for="" if node == home else home,
                ),
            )
        )

    def _pick_fallback(
        self,
        spec: KeyspaceSpec,
        key: bytes,
        homes: tuple[str, ...],
        pending: PendingWrite,
        now_ms: int,
    ) -> str | None:
        """The first healthy node after the home replicas not already holding a copy."""
        used = {t.node for t in pending.targets.values()}
        n = spec.effective_n(self.cluster_size)
        for node in fallback_order(self.ring, key_token(key), n):
            if (
                node not in used
                and node != self.config.node_id
                and not self._suspected(node, now_ms)
            ):
                return node
        return None

    def _resolve(self, token: object, result: object) -> None:
        if isinstance(token, _RemoteToken):
            reply = msg.CoordinateWriteReply(src=self.config.node_id, req_id=token.req_id)
            if isinstance(result, OpError):
                reply = msg.CoordinateWriteReply(
                    src=self.config.node_id,
                    req_id=token.req_id,
                    error_kind=result.kind.value,
                    message=result.message,
                    definite=result.definite,
                )
            self._after_commit.append((token.node, reply))
        else:
            self._replies.append((token, result))

    def _start_read(
        self,
        spec: KeyspaceSpec,
        key: bytes,
        homes: tuple[str, ...],
        needed: int,
        token: object,
        now_ms: int,
    ) -> object:
        busy = self._busy()
        if busy is not None:
            return busy
        pending = PendingRead(
            token=token,
            keyspace=spec.name,
            key=key,
            needed=needed,
            deadline_ms=now_ms + self.config.request_timeout_ms,
            expected=len(homes),
        )
        read_id = self._new_id()
        for home in homes:
            if home == self.config.node_id:
                raw = self._table(spec.name).get(key)
                pending.raw[home] = raw or b""
                pending.replies[home] = self._decode(raw) if raw else []
                continue
            req_id = self._new_id()
            pending.asked[req_id] = home
            self._read_of_ask[req_id] = read_id
            self._messages.append(
                (
                    home,
                    msg.ReplicaRead(
                        src=self.config.node_id,
                        req_id=req_id,
                        ring_epoch=self.ring.epoch,
                        keyspace=spec.name,
                        key=key,
                    ),
                )
            )
        self._reads[read_id] = pending
        self._progress_read(read_id, pending, now_ms)
        return _PENDING

    def _progress_read(self, read_id: int, pending: PendingRead, now_ms: int) -> None:
        if not pending.replied and len(pending.replies) >= pending.needed:
            pending.replied = True
            merged = self._merge_replies(pending)
            mode = self.keyspaces[pending.keyspace].mode
            live = live_versions(resolve(merged, mode), now_ms)
            self._resolve(pending.token, ReadResult(live, merged))
        if pending.settled:
            self._repair(pending)
            self._drop_read(read_id, pending)

    def _merge_replies(self, pending: PendingRead) -> list[Version]:
        merged: list[Version] = []
        for replica in sorted(pending.replies):
            merged = sync(merged, pending.replies[replica])
        return merged

    def _repair(self, pending: PendingRead) -> None:
        """Read repair: send the reconciled record to every replica that lacks part of it."""
        merged = self._merge_replies(pending)
        if not merged:
            return
        dots = {v.dot for v in merged}
        record = pack_record(merged)
        for replica in sorted(pending.replies):
            if {v.dot for v in pending.replies[replica]} == dots:
                continue
            self.stats.read_repairs += 1
            if replica == self.config.node_id:
                self._merge_into(self._table(pending.keyspace), pending.key, merged)
            else:
                self._messages.append(
                    (
                        replica,
                        msg.ReplicaWrite(
                            src=self.config.node_id,
                            req_id=self._new_id(),
                            ring_epoch=self.ring.epoch,
                            keyspace=pending.keyspace,
                            key=pending.key,
                            record=record,
                            want_ack=False,
                        ),
                    )
                )

    def _drop_read(self, read_id: int, pending: PendingRead) -> None:
        self._reads.pop(read_id, None)
        for req_id in pending.asked:
            self._read_of_ask.pop(req_id, None)

    def _drop_write(self, write_id: int, pending: PendingWrite) -> None:
        self._writes.pop(write_id, None)
        for req_id in pending.targets:
            self._write_of_copy.pop(req_id, None)

    # -- replica side -----------------------------------------------------

    def _on_replica_write(self, m: msg.ReplicaWrite, now_ms: int) -> None:
        error = self._check_replica_message(m.ring_epoch, m.keyspace)
        if error:
            if m.want_ack:
                self._messages.append(
                    (
                        m.src,
                        msg.ReplicaWriteAck(
                            src=self.config.node_id, req_id=m.req_id, ok=False, error=error
                        ),
                    )
                )
            return
        incoming = unpack_record(m.record) if m.record else []
        for version in incoming:
            self.hlc.observe(version.hlc, now_ms)
        if m.hint_for and m.hint_for != self.config.node_id:
            ok, error = self._store_hint(m.hint_for, m.keyspace, m.key, incoming)
        elif self.config.broken_ack_without_storing:
            ok, error = True, ""  # the deliberate bug the simulator must catch
        else:
            self._merge_into(self._table(m.keyspace), m.key, incoming)
            self.stats.replica_writes += 1
            ok, error = True, ""
        if m.want_ack:
            self._after_commit.append(
                (
                    m.src,
                    msg.ReplicaWriteAck(
                        src=self.config.node_id, req_id=m.req_id, ok=ok, error=error
                    ),
                )
            )

    def _merge_into(self, table: Table, key: bytes, incoming: list[Version]) -> None:
        raw = table.get(key)
        existing = self._decode(raw) if raw is not None else []
        merged = sync(existing, incoming)
        if raw is None or merged != existing:
            table.put(key, pack_record(merged), _record_expiry(merged))

    def _store_hint(
        self, home: str, keyspace: str, key: bytes, incoming: list[Version]
    ) -> tuple[bool, str]:
        storage_key = hint_key(home, keyspace, key)
        raw = self._hints.get(storage_key)
        if raw is None and self._hints.count() >= self.config.hints_max:
            self.stats.hints_refused += 1
            return False, "hint store full"
        existing = self._decode(raw) if raw is not None else []
        self._hints.put(storage_key, pack_record(sync(existing, incoming)), 0)
        self.stats.hints_written += 1
        return True, ""

    def _on_replica_read(self, m: msg.ReplicaRead, now_ms: int) -> None:
        error = self._check_replica_message(m.ring_epoch, m.keyspace)
        raw = None if error else self._table(m.keyspace).get(m.key)
        # After commit: never answer with a write that is not durable yet.
        self._after_commit.append(
            (
                m.src,
                msg.ReplicaReadReply(
                    src=self.config.node_id,
                    req_id=m.req_id,
                    ok=not error,
                    record=raw or b"",
                    error=error,
                ),
            )
        )

    def _check_replica_message(self, ring_epoch: int, keyspace: str) -> str:
        if ring_epoch != self.ring.epoch:
            return f"ring epoch {ring_epoch} is not this node's ({self.ring.epoch})"
        if keyspace not in self.keyspaces:
            return f"no keyspace {keyspace!r} on this node"
        return ""

    def _on_coordinate_write(self, m: msg.CoordinateWrite, now_ms: int) -> None:
        token = _RemoteToken(m.src, m.req_id)
        spec = self.keyspaces.get(m.keyspace)
        if m.ring_epoch != self.ring.epoch or spec is None:
            self._resolve(
                token,
                OpError(ErrorKind.UNAVAILABLE, "ring or keyspace mismatch", code="UNAVAILABLE"),
            )
            return
        n = spec.effective_n(self.cluster_size)
        homes = preference_list(self.ring, key_token(m.key), n)
        if self.config.node_id not in homes:
            self._resolve(
                token,
                OpError(
                    ErrorKind.UNAVAILABLE, "not a home replica of this key", code="UNAVAILABLE"
                ),
            )
            return
        context = None if m.context is None else vv_from_flat(m.context)
        write = _ClientWrite(
            value=m.value,
            expires_at_ms=m.expires_at_ms,
            tombstone=m.tombstone,
            context=context,
            acks=max(1, min(m.w, n)),
            result=True,
        )
        result = self._start_write(spec, m.key, homes, write, token, now_ms)
        if result is not _PENDING:
            self._resolve(token, result)

    # -- replies to this coordinator ---------------------------------------

    def _on_replica_write_ack(self, m: msg.ReplicaWriteAck, now_ms: int) -> None:
        hint = self._hints_in_flight.pop(m.req_id, None)
        if hint is not None:
            if m.ok and self._hints.get(hint.storage_key) == hint.record:
                self._hints.delete(hint.storage_key)
                self.stats.hints_delivered += 1
            return
        write_id = self._write_of_copy.get(m.req_id)
        pending = self._writes.get(write_id) if write_id is not None else None
        if pending is None or write_id is None:
            return
        if pending.record_ack(m.req_id, m.ok):
            pending.replied = True
            self._resolve(pending.token, pending.result)
        if pending.settled:
            self._drop_write(write_id, pending)

    def _on_replica_read_reply(self, m: msg.ReplicaReadReply, now_ms: int) -> None:
        read_id = self._read_of_ask.get(m.req_id)
        pending = self._reads.get(read_id) if read_id is not None else None
        if pending is None or read_id is None or not m.ok:
            return
        replica = pending.asked[m.req_id]
        try:
            pending.replies[replica] = unpack_record(m.record) if m.record else []
        except RecordError:
            self.stats.malformed_replies += 1
            return
        pending.raw[replica] = m.record
        self._progress_read(read_id, pending, now_ms)

    def _on_coordinate_write_reply(self, m: msg.CoordinateWriteReply) -> None:
        pending = self._forwards.pop(m.req_id, None)
        if pending is None:
            return
        if not m.error_kind:
            self._resolve(pending.token, True)
            return
        try:
            kind = ErrorKind(m.error_kind)
        except ValueError:
            kind = ErrorKind.TIMEOUT
        code = {ErrorKind.TIMEOUT: "TIMEOUT", ErrorKind.UNAVAILABLE: "UNAVAILABLE"}.get(kind, "ERR")
        self._resolve(pending.token, OpError(kind, m.message, code=code, definite=m.definite))

    # -- timers -----------------------------------------------------------------

    def _tick_requests(self, now_ms: int) -> None:
        timeout = OpError(
            ErrorKind.TIMEOUT,
            "fewer replicas than required answered in time; the outcome is unknown",
            code="TIMEOUT",
            definite=False,
        )
        for write_id, pending in list(self._writes.items()):
            for _, target in pending.overdue(now_ms, self.config.replica_timeout_ms):
                self._suspect(target.home, now_ms)
                spec = self.keyspaces[pending.keyspace]
                homes = preference_list(
                    self.ring, key_token(pending.key), spec.effective_n(self.cluster_size)
                )
                fallback = self._pick_fallback(spec, pending.key, homes, pending, now_ms)
                if fallback is not None:
                    self._send_copy(write_id, pending, fallback, target.home, now_ms)
            if now_ms >= pending.deadline_ms:
                if not pending.replied:
                    self.stats.timeouts += 1
                    self._resolve(pending.token, timeout)
                self._drop_write(write_id, pending)
        for read_id, read in list(self._reads.items()):
            if now_ms >= read.deadline_ms:
                if not read.replied:
                    self.stats.timeouts += 1
                    self._resolve(read.token, timeout)
                self._repair(read)
                self._drop_read(read_id, read)
        for req_id, forward in list(self._forwards.items()):
            if now_ms >= forward.deadline_ms:
                del self._forwards[req_id]
                self.stats.timeouts += 1
                self._resolve(forward.token, timeout)

    def _suspect(self, node: str, now_ms: int) -> None:
        self._suspect_until[node] = now_ms + self.config.suspect_ms

    def _deliver_hints(self, now_ms: int) -> None:
        """Offer a bounded number of hints to their home replicas."""
        for req_id, hint in list(self._hints_in_flight.items()):
            if now_ms - hint.sent_ms >= self.config.hint_retry_ms:
                del self._hints_in_flight[req_id]
        if not self._hints.count():
            return
        in_flight = {h.storage_key for h in self._hints_in_flight.values()}
        keys, self._hint_cursor = self._hints.scan(self._hint_cursor, self.config.hints_per_tick)
        for storage_key in keys:
            if storage_key in in_flight:
                continue
            home, keyspace, key = parse_hint_key(storage_key)
            record = self._hints.get(storage_key)
            if record is None or self._suspected(home, now_ms):
                continue
            req_id = self._new_id()
            self._hints_in_flight[req_id] = HintInFlight(storage_key, record, now_ms)
            self._messages.append(
                (
                    home,
                    msg.ReplicaWrite(
                        src=self.config.node_id,
                        req_id=req_id,
                        ring_epoch=self.ring.epoch,
                        keyspace=keyspace,
                        key=key,
                        record=record,
                    ),
                )
            )

    def _too_many_siblings(self, new: list[Version]) -> OpError:
        return OpError(
            ErrorKind.INVALID,
            f"key has {len(new) - 1} siblings, the most this keyspace keeps; "
            "read them with RINGKV.SIBLINGS and write with their CONTEXT to resolve",
            code="SIBLINGS",
        )

    # -- helpers ----------------------------------------------------------

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
            table = self._tables[keyspace] = self.engine.table(f"ks:{keyspace}")
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


_PENDING = object()  # a request whose reply will come later, through the outbox


@dataclass(frozen=True, slots=True)
class _RemoteToken:
    """The reply to a forwarded write goes back to the node that forwarded it."""

    node: str
    req_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class _ClientWrite:
    value: bytes
    expires_at_ms: int
    tombstone: bool
    context: dict[str, int] | None
    acks: int
    result: object


@dataclass(slots=True)
class NodeStats:
    """Counters of replication work (shown by INFO, metrics and ``ringkv sim``)."""

    writes_coordinated: int = 0
    writes_forwarded: int = 0
    replica_writes: int = 0
    hinted_copies_sent: int = 0
    hints_written: int = 0
    hints_delivered: int = 0
    hints_refused: int = 0
    read_repairs: int = 0
    timeouts: int = 0
    malformed_replies: int = 0


@dataclass(frozen=True, slots=True)
class Outbox:
    messages: list[tuple[str, msg.Message]]
    after_commit: list[tuple[str, msg.Message]]
    replies: list[tuple[object, object]]


def _load_hlc(meta: Table) -> HlcTimestamp:
    raw = meta.get(_HLC_KEY)
    if raw is None:
        return HlcTimestamp(0, 0)
    try:
        wall, logical = msgpack.unpackb(raw)
        return HlcTimestamp(int(wall), int(logical))
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise StorageError(f"damaged HLC high-water mark in the meta table: {exc}") from exc


def _record_expiry(versions: list[Version]) -> int:
    """When the whole record can be reclaimed: its last expiry, or 0 (never)."""
    if len(versions) == 1:
        return versions[0].expires_at_ms
    if any(v.expires_at_ms == 0 for v in versions):
        return 0
    return max(v.expires_at_ms for v in versions)
