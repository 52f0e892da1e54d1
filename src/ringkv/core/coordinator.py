"""Coordination in a cluster: the coordinator and replica halves of replication.

The theory is in ``replication.py`` (quorums, sloppy quorum, timeouts) and
``handoff.py`` (hints); the walk-through with a diagram is docs/replication.md.
``Coordination`` is a mixin of ``Node``: it holds the message handlers and the
request state machines, and uses the node's storage helpers (declared below so
the type checker sees them). Nothing here does I/O: messages go to the outbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ringkv.core import messages as msg
from ringkv.core import ops
from ringkv.core.clocks import HlcClock, HlcTimestamp, vv_from_flat, vv_to_flat
from ringkv.core.config import KeyspaceSpec, Level
from ringkv.core.errors import ErrorKind, OpError
from ringkv.core.handoff import HintInFlight, hint_key, parse_hint_key
from ringkv.core.parts import NodeParts
from ringkv.core.record import (
    RecordError,
    Version,
    WriteSpec,
    live_versions,
    new_write,
    pack_record,
    record_expiry,
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
from ringkv.core.requests import Inspect, Mutate, Read, ReadResult, ReplicaReport
from ringkv.core.ring import fallback_order, key_token, preference_list

if TYPE_CHECKING:
    from ringkv.storage.base import Table

__all__ = ["PENDING", "Coordination", "Gather", "NodeStats", "Outbox"]


PENDING = object()  # a request whose reply will come later, through the outbox


@dataclass(frozen=True, slots=True)
class _RemoteToken:
    """The reply to a forwarded write goes back to the node that forwarded it."""

    node: str
    req_id: int


class Gather:
    """The token of one part of a multi-key request (MSET across replicas):
    the parent's reply (True, or the first error) goes out once every part
    has answered."""

    __slots__ = ("errors", "owner", "remaining", "token")

    def __init__(self, owner: Coordination, token: object, parts: int) -> None:
        self.owner = owner
        self.token = token
        self.remaining = parts
        self.errors: list[OpError] = []

    def part_done(self, result: object) -> None:
        if isinstance(result, OpError):
            self.errors.append(result)
        self.remaining -= 1
        if self.remaining == 0:
            self.owner._resolve(self.token, self.errors[0] if self.errors else True)


@dataclass(frozen=True, slots=True, kw_only=True)
class _ClientWrite:
    value: bytes
    expires_at_ms: int
    tombstone: bool
    context: dict[str, int] | None
    acks: int
    result: object
    homes_only: bool = False


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
    # A coordinator's own hints for its writes (handoff.py): kept; found no
    # longer needed (the home or a fallback acknowledged), deleted at a tick
    # (covered - cleared are awaiting that tick); not kept, the store full.
    self_hints_written: int = 0
    self_hints_covered: int = 0
    self_hints_cleared: int = 0
    self_hints_refused: int = 0
    read_repairs: int = 0
    timeouts: int = 0
    malformed_replies: int = 0
    keyspace_conflicts: int = 0  # a peer's definition differs from ours (refused)
    stray_replies: int = 0  # answers whose id or sender matches no request of ours
    duplicate_forwards: int = 0  # a forwarded write seen twice (the network duplicated it)


@dataclass(frozen=True, slots=True)
class Outbox:
    """A turn's outputs (``Node.take_outbox``), in the order a driver handles them."""

    messages: list[tuple[str, msg.Message]]  # send now
    after_commit: list[tuple[str, msg.Message]]  # send once the turn's commit is durable
    replies: list[tuple[object, object]]  # release once the turn's commit is durable
    # Release now: answers that rest on no write of this node's that could
    # still be lost (a CASPaxos outcome: a durable quorum of acceptors).
    replies_now: list[tuple[object, object]] = field(default_factory=list)


class Coordination(NodeParts):
    """The cluster half of ``Node`` (a mixin; see the module docstring)."""

    # Provided by Node (beyond NodeParts).
    actor: str
    limits: ops.Limits
    hlc: HlcClock
    stats: NodeStats
    _replies: list[tuple[object, object]]
    _replies_now: list[tuple[object, object]]
    _writes: dict[int, PendingWrite]
    _write_of_copy: dict[int, int]
    _reads: dict[int, PendingRead]
    _read_of_ask: dict[int, int]
    _forwards: dict[int, PendingForward]
    _forwards_seen: dict[tuple[str, int], None]  # insertion-ordered, bounded
    _listings: dict[int, Any]  # core/listing.py
    _suspect_until: dict[str, int]
    _hints: Table
    _hints_in_flight: dict[int, HintInFlight]
    _hint_cursor: int
    _next_id: int

    def _decode(self, raw: bytes) -> list[Version]:
        raise NotImplementedError

    def _next_hlc(self, now_ms: int) -> HlcTimestamp:
        raise NotImplementedError

    def _mutate(self, keyspace: str, key: bytes, mutation: ops.Mutation, now_ms: int) -> object:
        raise NotImplementedError

    def _route(self, request: Read | Mutate | Inspect, token: object, now_ms: int) -> object:
        spec = self.keyspaces.get(request.keyspace)
        if spec is None:
            return self._table_or_error(request.keyspace)
        if isinstance(request, Inspect):
            return self._start_inspect(spec, request.key, token, now_ms)
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
            homes_only=level is Level.ALL and not request.acks,
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
        pending = (
            len(self._writes)
            + len(self._reads)
            + len(self._forwards)
            + len(self._listings)
            + self._strong_pending()  # CASPaxos work, core/strong.py
        )
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
                    homes_only=write.homes_only,
                ),
            )
        )
        return PENDING

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
            node=self.actor,
            expires_at_ms=write.expires_at_ms,
            tombstone=write.tombstone,
        )
        new = new_write(versions, spec_write, spec.mode, write.context)
        if len(new) > self.config.siblings_max:
            return self._too_many_siblings(new)
        record = pack_record(new)
        table.put(key, record, record_expiry(new))
        self.stats.writes_coordinated += 1
        pending = PendingWrite(
            token=token,
            keyspace=spec.name,
            key=key,
            record=record,
            result=write.result,
            needed=write.acks,
            deadline_ms=now_ms + self.config.request_timeout_ms,
            homes_only=write.homes_only,
        )
        if pending.needed < len(homes):
            # The client may hear OK before every home replica has the write:
            # keep a durable hint for each (same group commit as our copy).
            for home in homes:
                if home != self.config.node_id:
                    self._store_self_hint(pending, home, new)
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
        return PENDING

    def _send_copy(
        self, write_id: int, pending: PendingWrite, node: str, home: str, now_ms: int
    ) -> None:
        req_id = self._new_id()
        pending.targets[req_id] = WriteTarget(node=node, home=home, sent_ms=now_ms)
        self._write_of_copy[req_id] = write_id
        if node != home:
            self.stats.hinted_copies_sent += 1
        else:
            stored = pending.self_hints.get(home)
            if stored is not None and self._hint_bookkeeping_room():
                # This copy is the first offer of the self-hint: no other
                # offer of it while the write is under way.
                storage_key = hint_key(home, pending.keyspace, pending.key)
                self._hints_in_flight[req_id] = HintInFlight(storage_key, stored, now_ms)
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

    def _resolve(self, token: object, result: object, *, needs_commit: bool = True) -> None:
        """Deliver a request's result to whoever asked: a local client, a node
        that forwarded the write, or the multi-key request it is part of.
        ``needs_commit`` False: the result rests on nothing this node still
        has to make durable, so it may leave before the turn's commit."""
        kind = type(token)
        if kind is Gather:
            assert isinstance(token, Gather)
            token.part_done(result)
        elif kind is _RemoteToken:
            assert isinstance(token, _RemoteToken)
            reply = msg.CoordinateWriteReply(src=self.config.node_id, req_id=token.req_id)
            if isinstance(result, OpError):
                reply = msg.CoordinateWriteReply(
                    src=self.config.node_id,
                    req_id=token.req_id,
                    error_kind=result.kind.value,
                    message=result.message,
                    definite=result.definite,
                )
            (self._after_commit if needs_commit else self._messages).append((token.node, reply))
        elif needs_commit:
            self._replies.append((token, result))
        else:
            self._replies_now.append((token, result))

    def _start_read(
        self,
        spec: KeyspaceSpec,
        key: bytes,
        homes: tuple[str, ...],
        needed: int,
        token: object,
        now_ms: int,
        *,
        report: bool = False,
    ) -> object:
        busy = self._busy()
        if busy is not None:
            return busy
        pending = PendingRead(
            token=token,
            keyspace=spec.name,
            key=key,
            needed=needed,
            report=report,
            homes=homes,
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
        return PENDING

    def _start_inspect(self, spec: KeyspaceSpec, key: bytes, token: object, now_ms: int) -> object:
        homes = preference_list(self.ring, key_token(key), spec.effective_n(self.cluster_size))
        return self._start_read(spec, key, homes, len(homes), token, now_ms, report=True)

    def _report(self, pending: PendingRead) -> ReplicaReport:
        replicas: dict[str, list[Version] | None] = {
            node: pending.replies.get(node) for node in pending.homes
        }
        hints: dict[str, list[Version]] = {}
        for home in pending.homes:
            raw = self._hints.get(hint_key(home, pending.keyspace, pending.key))
            if raw is not None:
                hints[home] = self._decode(raw)
        return ReplicaReport(pending.key, list(pending.homes), replicas, hints)

    def _progress_read(self, read_id: int, pending: PendingRead, now_ms: int) -> None:
        if pending.report:
            if pending.settled and not pending.replied:
                pending.replied = True
                self._resolve(pending.token, self._report(pending))
                self._drop_read(read_id, pending)
            return
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
            table.put(key, pack_record(merged), record_expiry(merged))

    def _store_hint(
        self, home: str, keyspace: str, key: bytes, incoming: list[Version]
    ) -> tuple[bool, str]:
        if self._put_hint(home, keyspace, key, incoming) is None:
            self.stats.hints_refused += 1
            return False, "hint store full"
        self.stats.hints_written += 1
        return True, ""

    def _put_hint(
        self,
        home: str,
        keyspace: str,
        key: bytes,
        incoming: list[Version],
        packed: bytes | None = None,
    ) -> tuple[bytes, list[Version]] | None:
        """Merge ``incoming`` (``packed``: the same, packed, if at hand) into
        the hint for ``home``: the stored record, packed and not; or None
        when the store is full (hints_max)."""
        storage_key = hint_key(home, keyspace, key)
        raw = self._hints.get(storage_key)
        if raw is None and self._hints.count() >= self.config.hints_max:
            return None
        if raw is None and packed is not None:
            merged, stored = incoming, packed
        else:
            merged = sync(self._decode(raw) if raw is not None else [], incoming)
            stored = pack_record(merged)
        self._hints.put(storage_key, stored, 0)
        return stored, merged

    def _store_self_hint(self, pending: PendingWrite, home: str, versions: list[Version]) -> None:
        """Keep, on this coordinator, a hint of its write for home replica
        ``home`` (handoff.py): it outlives a crash of this node."""
        put = self._put_hint(home, pending.keyspace, pending.key, versions, pending.record)
        if put is None:
            self.stats.self_hints_refused += 1
            return
        self.stats.self_hints_written += 1
        stored, merged = put
        # Only a hint that holds nothing but this write's record may go once
        # ``home`` has that record (``_self_hint_delivered``); one that held more
        # (say a hint kept here under another ring) is delivered as any other.
        clearable = {v.dot for v in merged} == {v.dot for v in versions}
        pending.self_hints[home] = stored if clearable else None

    def _self_hint_delivered(
        self, pending: PendingWrite, home: str, req_id: int, now_ms: int
    ) -> None:
        """``home`` has the write, or a fallback's durable hint of it: its
        self-hint goes at the next delivery round (``_deliver_hints``), with
        every other one in one commit: deleting it now would cost this turn a
        commit of its own before the client's answer. Unless a later write
        merged into it meanwhile: then it is delivered as any other hint."""
        stored = pending.self_hints.pop(home, None)
        if stored is None:  # none kept, or one that is not this write's alone
            return
        if not self._hint_bookkeeping_room():
            return  # it stays, and is delivered as any other: a redundant copy
        storage_key = hint_key(home, pending.keyspace, pending.key)
        self._hints_in_flight[req_id] = HintInFlight(storage_key, stored, now_ms, delivered=True)
        self.stats.self_hints_covered += 1

    def _hint_bookkeeping_room(self) -> bool:
        """``_hints_in_flight`` is bounded: offers (hints_per_tick per tick,
        over hint_retry_ms) and self-hint entries, at most
        ``pending_requests_max`` in all. Past it a self-hint is only left to
        ordinary delivery: an extra copy to its home, never a lost one."""
        return len(self._hints_in_flight) < self.config.pending_requests_max

    def _finish_write(self, write_id: int, pending: PendingWrite) -> None:
        """The write is over (every copy answered, or its deadline passed):
        a home replica still without the write, nor a fallback's hint of it,
        keeps a self-hint, which hint delivery hands over later. Never is a
        home replica's copy silently abandoned."""
        uncovered = [h for h in pending.uncovered_homes() if h not in pending.self_hints]
        if uncovered:
            versions = unpack_record(pending.record)
            for home in uncovered:
                self._store_self_hint(pending, home, versions)
        for req_id in pending.targets:  # its self-hints may now be offered
            offer = self._hints_in_flight.get(req_id)
            if offer is not None and not offer.delivered:
                del self._hints_in_flight[req_id]
        self._drop_write(write_id, pending)

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
        # A duplicated forward must not be coordinated twice: it would mint a
        # second version of one client write (found by simulator seed 99).
        # Remembered per (sender, request id), the oldest forgotten first.
        seen = self._forwards_seen
        if (m.src, m.req_id) in seen:
            self.stats.duplicate_forwards += 1
            return
        seen[(m.src, m.req_id)] = None
        if len(seen) > self.config.pending_requests_max:
            del seen[next(iter(seen))]
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
            homes_only=m.homes_only,
        )
        result = self._start_write(spec, m.key, homes, write, token, now_ms)
        if result is not PENDING:
            self._resolve(token, result)

    # -- replies to this coordinator ---------------------------------------

    # Every answer is matched by request id *and* sender: an answer queued for
    # a previous run of this node (same node id, its ids started over) must
    # never be taken for the answer to a new request.

    def _on_replica_write_ack(self, m: msg.ReplicaWriteAck, now_ms: int) -> None:
        write_id = self._write_of_copy.get(m.req_id)
        pending = self._writes.get(write_id) if write_id is not None else None
        if pending is None or write_id is None:
            self._on_hint_ack(m)
            return
        target = pending.targets.get(m.req_id)
        if target is None or target.node != m.src:
            self.stats.stray_replies += 1
            return
        if pending.record_ack(m.req_id, m.ok):
            pending.replied = True
            self._resolve(pending.token, pending.result)
        if target.acked:
            self._self_hint_delivered(pending, target.home, m.req_id, now_ms)
        if pending.settled:
            self._finish_write(write_id, pending)

    def _on_hint_ack(self, m: msg.ReplicaWriteAck) -> None:
        """The answer to a hint offered to its home replica."""
        hint = self._hints_in_flight.get(m.req_id)
        if hint is None or hint.delivered or parse_hint_key(hint.storage_key)[0] != m.src:
            return
        del self._hints_in_flight[m.req_id]
        if m.ok and self._hints.get(hint.storage_key) == hint.record:
            self._hints.delete(hint.storage_key)
            self.stats.hints_delivered += 1

    def _on_replica_read_reply(self, m: msg.ReplicaReadReply, now_ms: int) -> None:
        read_id = self._read_of_ask.get(m.req_id)
        pending = self._reads.get(read_id) if read_id is not None else None
        if pending is None or read_id is None or not m.ok:
            return
        replica = pending.asked[m.req_id]
        if replica != m.src:
            self.stats.stray_replies += 1
            return
        try:
            pending.replies[replica] = unpack_record(m.record) if m.record else []
        except RecordError:
            self.stats.malformed_replies += 1
            return
        pending.raw[replica] = m.record
        self._progress_read(read_id, pending, now_ms)

    def _on_coordinate_write_reply(self, m: msg.CoordinateWriteReply) -> None:
        pending = self._forwards.get(m.req_id)
        if pending is None or pending.target != m.src:
            self.stats.stray_replies += 1
            return
        del self._forwards[m.req_id]
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
                self._suspect(target.node, now_ms)  # the home replica, or a silent fallback
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
                self._finish_write(write_id, pending)
        for read_id, read in list(self._reads.items()):
            if now_ms >= read.deadline_ms and read.report:
                read.replied = True
                self._resolve(read.token, self._report(read))  # with the silent ones as None
                self._drop_read(read_id, read)
            elif now_ms >= read.deadline_ms:
                if not read.replied:
                    self.stats.timeouts += 1
                    self._resolve(read.token, timeout)
                self._repair(read)
                self._drop_read(read_id, read)
        for req_id, forward in list(self._forwards.items()):
            if now_ms >= forward.deadline_ms:
                del self._forwards[req_id]
                self.stats.timeouts += 1
                # The home replica it went to did not answer: forward the next
                # writes to another home until it is heard from again, rather
                # than waiting for the failure detector.
                self._suspect(forward.target, now_ms)
                self._resolve(forward.token, timeout)

    def _suspect(self, node: str, now_ms: int) -> None:
        self._suspect_until[node] = now_ms + self.config.suspect_ms

    def _deliver_hints(self, now_ms: int) -> None:
        """Delete the self-hints found delivered since the last round (in one
        commit), then offer a bounded number of hints to their home replicas."""
        for req_id, hint in list(self._hints_in_flight.items()):
            if hint.delivered:
                del self._hints_in_flight[req_id]
                if self._hints.get(hint.storage_key) == hint.record:
                    self._hints.delete(hint.storage_key)
                    self.stats.self_hints_cleared += 1
            elif now_ms - hint.sent_ms >= self.config.hint_retry_ms:
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
