"""Strong keyspaces: CASPaxos wired into the Node (a mixin, like listing.py).

Theory of operation (Rystsov 2018, "CASPaxos", §2; docs/paxos.md). Each key
of a ``strong`` keyspace is a linearizable register: its N home replicas
(``preference_list`` at the current ring epoch, never fallbacks) are its
acceptors, and any node proposes. A client operation becomes a *change
function* (``paxos.ChangeFunction``) run by a ``paxos.Proposal`` on the node
that took the request; the proposal's messages go to the homes, and their
answers come back here by request id. The protocol is ``core/paxos.py``; this
module is its plumbing:

* **Acceptor.** A ``PaxosPrepare``/``PaxosAccept`` for a key this node is a
  home of, at its ring epoch, goes through ``paxos.on_prepare``/``on_accept``
  against the ``AcceptorState`` row kept in the keyspace's table (the only
  format a strong table holds: no lww/causal path reads it). The new row is
  put in the engine and the reply joins ``after_commit``: it leaves only
  after the group commit made the promise durable.
* **Proposer.** A proposal's messages leave at once. Its message to this
  node's own acceptor is ruled on in place (the row joins this turn's
  commit), and the answer comes back to this node as an ``after_commit``
  message to itself, so the proposer only ever acts on durable promises and
  accepts (its own included) and never has to hold its sends back: the
  accepts of a round go out while this node's own commit runs, and the
  quorum is the first majority durable anywhere. For the same reason the
  client's answer leaves as soon as the outcome is known (``replies_now``),
  not after this node's next commit. At most one proposal per key runs on a node;
  later operations on the key wait in a FIFO behind it (so the node's own
  operations never duel, and each one after the first uses the one-round-trip
  promise, ``LeaderCache``, kept per key in a bounded LRU). Due timers run at
  every input of the node and at ``Node.tick`` (``strong_wakeup_ms`` says
  when the next is due). The failure detector's verdicts reach a proposal
  through ``Proposal.unreachable``: a home suspected at the start, or silent
  for ``replica_timeout_ms`` (which suspects it), so the minority side of a
  partition is answered UNAVAILABLE (definite): within about
  ``replica_timeout_ms`` the first time, at once after. (A node holding a
  one-round-trip promise sends its accept at once, so an operation of its
  that is cut off ends TIMEOUT, unknown, at its deadline.) A suspected home
  is probed (``PaxosRead``) until it answers, which ends the suspicion soon
  after a heal.
* **One acceptor, this node** (a cluster of one, or ``n_replicas`` 1): the
  round runs in place, prepare and accept in one step on the local row,
  written only when the register changes. No message, one put.
* **Ballots** are ``(counter, "<node>~<run>")``: the run number is bumped and
  synced at every start (``Node._start_incarnation``), so no ballot is ever
  used twice across restarts even though each run's counter starts low.
* **Reads below linearizable** (``one``, ``quorum``, ``all``) ask that many
  homes for their rows (``PaxosRead``) and answer the state accepted at the
  highest ballot, labelled ``stale``: it may be a state only a minority
  accepted, or miss the newest commit.
* **Linearizable reads, one round trip, nothing written** (the "quorum read"
  of Paxos systems; docs/paxos.md, "Reads without a round"). Every home is
  asked for its row (``PaxosRead``; this node's own row is read in place and
  may hold an accept not yet durable, so the answer waits for this node's
  commit), and the read is answered, not stale, as soon as a majority of the
  homes report the same accepted ballot (and state): ``agreed_state``. Safe
  because acceptor rows only move forward (the accepted ballot never
  decreases) and every row reported is durable (sent after the commit):
  (1) a state a majority accepted at one ballot is *chosen*: every later
  round's prepare majority meets that majority, so every later state
  descends from it, and every later read sees it or a newer one; (2) a write
  acknowledged before the read began was accepted by a majority M' at some
  ballot b'; each acceptor of M' answers the read later, so with a ballot
  >= b'; the agreeing majority meets M', so the agreed ballot is >= b' and
  its state is that write's or a later one. A ballot carries one state (its
  proposer sends one accept per ballot, the cached one-round-trip ballot
  included, and never reuses one across retries or restarts), so the same
  ballot means the same state; the state is compared too, as a check. When
  no majority can agree any more (a write in flight, a minority holding a
  newer accept, a home refusing or suspected), or after
  ``paxos_round_timeout_ms`` without agreement, the read becomes a full round
  (``read_register``) within the same deadline, the failure detector's clock
  still running from the read's start. Fewer than a majority of homes
  reachable at the start: UNAVAILABLE at once, like every read. The read
  changes no acceptor row, so it never raises a promise: a proposer's
  one-round-trip promise (``LeaderCache``) survives it, and it never duels
  with writes. It drops this node's own cached promise for the key when it
  sees a newer state (that promise could only meet a conflict).

The Node API for frontends (RESP, HTTP, the Python client). Requests are in
``core/requests.py``; every error is an ``OpError`` (``core/errors.py``):

| request, in a strong keyspace | answer |
| --- | --- |
| ``Read(ks, key, level)``, level ``linearizable`` | ``RegisterValue(value, version, expires_at_ms, stale=False)``: the homes' rows when a majority agree (one round trip, no write), else a Paxos round; UNAVAILABLE when fewer than a majority can answer |
| ``Read`` at ``one`` / ``quorum`` (``local_quorum``) / ``all`` (``acks`` overrides) | ``RegisterValue(..., stale=True)``: 1 / N//2+1 / N acceptors must answer, no round; UNAVAILABLE when fewer can |
| ``Mutate(ks, key, mutation)`` (any ``ops`` mutation, any level) | ``Versioned(result, version)``: ``result`` as in lww (SET True/False/old value, INCRBY the integer, DEL existed, ...) |
| ``Cas(ks, key, expected, new)`` / ``Cas(ks, key, None, new, version=v)`` | ``Versioned(True, new_version)`` or MISMATCH |
| ``Lock(name, owner, ttl_ms, keyspace="locks")`` | ``LockGranted(token, expires_at_ms)`` or MISMATCH (held by another) |
| ``Unlock(name, token, owner=None, keyspace="locks")`` | ``LockReleased(version)`` or MISMATCH |
| ``Inspect(ks, key)`` | ``RegisterReport(key, homes, {home: AcceptorState or None})`` |
| ``PutMany`` (MSET) | True: one round per key, not atomic across keys; MSETNX only when this node is every key's only acceptor |
| ``Scan``/``Count``/``RandomKey`` | as in lww; each key judged by one acceptor's row (like a read at ``one``) |

``version`` counts the changes to a key (0: never written; a delete is a
change too, so it never goes back): an HTTP ETag, RINGKV.CAS's reply, the
lock's fencing token. The level of a read is the request's, else the
keyspace's (create strong keyspaces with ``level linearizable`` unless stale
reads by default are wanted). Writes are linearizable whatever the level.

| error (``OpError.code``) | when | ``definite`` |
| --- | --- | --- |
| ``MISMATCH`` (412) | Cas/Lock/Unlock compared and did not match (the state seen was committed) | yes |
| ``UNAVAILABLE`` (503) | fewer than a majority of the key's homes reachable, and nothing that could change the key was sent; also too many requests in flight | yes |
| ``TIMEOUT`` (504) | gave up after sending an accept that could change the key: it may still take effect | no |
| ``WRONGLEVEL`` (409) | Cas/Lock/Unlock or level ``linearizable`` on an lww/causal keyspace; MSETNX across acceptors; FLUSHDB of a replicated strong keyspace | yes |
| Redis's own (``ERR ...``) | INCR on a non-integer, overflow, value too large, bad arguments | yes |

A read that fails is always definite (it changed nothing). Locks: a request
that names no keyspace uses ``locks``, created on first use on any node
(strong, N = 3, level linearizable); a keyspace of that name that is not
strong makes lock requests WRONGLEVEL.
"""

from __future__ import annotations

import heapq
import random
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from ringkv.core import errors, ops, paxos
from ringkv.core.clocks import Dot, HlcTimestamp
from ringkv.core.config import LOCKS_KEYSPACE, LOCKS_KEYSPACE_SPEC, KeyspaceSpec, Level
from ringkv.core.coordinator import PENDING
from ringkv.core.errors import ErrorKind, OpError
from ringkv.core.messages import (
    CoordinateWrite,
    CoordinateWriteReply,
    Message,
    PaxosAccept,
    PaxosAccepted,
    PaxosPrepare,
    PaxosPromise,
    PaxosRead,
    PaxosReadReply,
    ReplicaRead,
    ReplicaReadReply,
    ReplicaWrite,
    ReplicaWriteAck,
)
from ringkv.core.parts import NodeParts
from ringkv.core.paxos import (
    AcceptorState,
    AcceptorStateError,
    Ballot,
    BallotClock,
    Change,
    ChangeFunction,
    LeaderCache,
    PaxosConfig,
    Phase,
    Proposal,
    RegisterState,
    Send,
    Written,
)
from ringkv.core.record import Version
from ringkv.core.replication import required_acks
from ringkv.core.requests import (
    Cas,
    Inspect,
    Lock,
    Mutate,
    Read,
    RegisterReport,
    RegisterValue,
    Unlock,
    Versioned,
)
from ringkv.core.ring import key_token, preference_list
from ringkv.storage.base import StorageError

if TYPE_CHECKING:
    from ringkv.storage.base import Table

__all__ = [
    "LOCK_TTL_MAX_MS",
    "PendingProposal",
    "PendingRegisterRead",
    "QueuedOperation",
    "Strong",
    "StrongRequest",
    "StrongStats",
    "agreed_state",
    "agreement_possible",
    "freshest",
    "mutation_change",
    "read_register",
    "register_value",
    "versioned_cas",
    "wrong_level",
]

LOCK_TTL_MAX_MS = 2**40  # about 35 years: keeps now + ttl far inside int64
_EXPIRY_MAX_MS = ops.INT64_MAX
_NO_HLC = HlcTimestamp(0, 0)
_NO_DOT = Dot("", 0)

StrongRequest: TypeAlias = Read | Mutate | Inspect | Cas | Lock | Unlock
KeyRef: TypeAlias = tuple[str, bytes]  # (keyspace, key)


# -- pure pieces -----------------------------------------------------------------


def mutation_change(mutation: ops.Mutation, limits: ops.Limits) -> ChangeFunction:
    """Any ``ops`` mutation (SET and its NX/XX/GET/EX/PX/KEEPTTL options, DEL,
    GETDEL, EXPIRE, GETEX, INCRBY, INCRBYFLOAT, APPEND, SETRANGE) as a change
    function: the very ``apply`` the lww path runs (ops.py's theory), on the
    register's live value, answering ``Versioned(result, version)``. An error
    (not an integer, too long, a bad expiry) changes nothing and is definite."""

    def change(state: RegisterState, now_ms: int) -> Change:
        live = state.live_value(now_ms)
        current = (
            None
            if live is None
            else Version(value=live, hlc=_NO_HLC, dot=_NO_DOT, expires_at_ms=state.expires_at_ms)
        )
        outcome = mutation.apply(current, now_ms, limits)
        if isinstance(outcome.result, OpError):
            return Change(outcome.result)
        if not outcome.writes:
            return Change(Versioned(outcome.result, state.version))
        answer = Versioned(outcome.result, state.version + 1)
        if outcome.delete:
            return Change(answer, True, None)
        assert outcome.value is not None
        if len(outcome.value) > limits.max_value_bytes:
            return Change(errors.STRING_TOO_LONG)
        if not 0 <= outcome.expires_at_ms <= _EXPIRY_MAX_MS:
            return Change(errors.invalid("invalid expire time"))
        return Change(answer, True, outcome.value, outcome.expires_at_ms)

    return change


def read_register() -> ChangeFunction:
    """A linearizable read (paxos.get, answering the expiry too)."""

    def change(state: RegisterState, now_ms: int) -> Change:
        return Change(register_value(state, now_ms, stale=False))

    return change


def versioned_cas(expected: bytes | None, new: bytes | None, version: int | None) -> ChangeFunction:
    """``paxos.cas_value`` or ``cas_version``, answering ``Versioned(True, v)``."""
    inner = paxos.cas_value(expected, new) if version is None else paxos.cas_version(version, new)

    def change(state: RegisterState, now_ms: int) -> Change:
        decided = inner(state, now_ms)
        if isinstance(decided.result, Written):
            return decided._replace(result=Versioned(True, decided.result.version))
        return decided

    return change


def register_value(state: RegisterState, now_ms: int, *, stale: bool) -> RegisterValue:
    value = state.live_value(now_ms)
    expires = state.expires_at_ms if value is not None else 0
    return RegisterValue(value, state.version, expires, stale)


def freshest(states: list[AcceptorState]) -> RegisterState:
    """The state accepted at the highest ballot (empty when none was):
    what a read below linearizable answers. Two acceptors that accepted at
    one ballot hold one state (ballots are never reused)."""
    best = max(states, key=lambda s: s.accepted, default=AcceptorState())
    return best.state


def _agreement(states: Iterable[AcceptorState]) -> dict[tuple[Ballot, RegisterState], int]:
    """How many rows report each (accepted ballot, state). A ballot carries
    one state (its proposer uses it once), so the state in the key is only a
    sanity check: rows that differ in it never count as agreeing."""
    counts: dict[tuple[Ballot, RegisterState], int] = {}
    for row in states:
        group = (row.accepted, row.state)
        counts[group] = counts.get(group, 0) + 1
    return counts


def agreed_state(states: Iterable[AcceptorState], needed: int) -> RegisterState | None:
    """The state a linearizable read answers without a round: one that at
    least ``needed`` acceptors (a majority of the key's homes) report as
    accepted at the same ballot, hence chosen (module docstring,
    "Linearizable reads"). None: no such majority (yet).

    >>> agreed_state([AcceptorState(), AcceptorState()], 2) == paxos.EMPTY_STATE
    True
    """
    assert needed >= 1
    for (_, state), count in _agreement(states).items():
        if count >= needed:
            return state
    return None


def agreement_possible(states: Iterable[AcceptorState], outstanding: int, needed: int) -> bool:
    """Whether ``outstanding`` more answers could still give ``needed`` rows
    agreeing on one accepted ballot (False: fall back to a full round)."""
    assert needed >= 1 and outstanding >= 0
    return max(_agreement(states).values(), default=0) + outstanding >= needed


def wrong_level(what: str, spec: KeyspaceSpec | None, name: str) -> OpError:
    mode = f"mode {spec.mode.value}" if spec is not None else "not strong"
    return OpError(
        ErrorKind.WRONG_LEVEL,
        f"{what} needs a strong keyspace, and {name!r} is {mode}; create one with "
        "`ringkv keyspace create NAME --mode strong` (HTTP: PUT /v1/keyspaces/NAME "
        '{"mode": "strong"})',
        code="WRONGLEVEL",
    )


def _unavailable(why: str) -> OpError:
    return OpError(ErrorKind.UNAVAILABLE, why, code="UNAVAILABLE")


def _refusal(
    m: PaxosPrepare | PaxosAccept, acceptor: str, epoch: int, error: str
) -> PaxosPromise | PaxosAccepted:
    """An acceptor's refusal of a message it could not even look at."""
    if isinstance(m, PaxosPrepare):
        return PaxosPromise(
            src=acceptor, req_id=m.req_id, ring_epoch=epoch, ok=False,
            ballot_counter=m.ballot_counter, ballot_proposer=m.ballot_proposer,
            promised_counter=0, promised_proposer="", error=error,
        )  # fmt: skip
    return PaxosAccepted(
        src=acceptor, req_id=m.req_id, ring_epoch=epoch, ok=False,
        ballot_counter=m.ballot_counter, ballot_proposer=m.ballot_proposer,
        promised_counter=0, promised_proposer="", error=error,
    )  # fmt: skip


# -- bookkeeping -----------------------------------------------------------------


@dataclass(slots=True)
class StrongStats:
    """Counters of CASPaxos work (INFO, metrics, the simulator)."""

    proposals: int = 0  # proposals started with remote acceptors
    local_rounds: int = 0  # rounds run in place (this node the only acceptor)
    fast_path: int = 0  # proposals that began with a cached promise (one round trip)
    rounds: int = 0  # rounds of finished proposals
    round_trips: int = 0  # broadcasts of finished proposals
    queued: int = 0  # operations that waited behind another on the same key
    unavailable: int = 0
    timeouts: int = 0
    acceptor_writes: int = 0  # acceptor rows put
    acceptor_refusals: int = 0  # messages refused before the acceptor rules (epoch, not ours)
    stale_reads: int = 0  # reads below linearizable (answered without a round)
    fast_reads: int = 0  # linearizable reads answered by a majority's agreeing rows
    read_fallbacks: int = 0  # linearizable reads that found no agreement: a full round
    probes: int = 0  # PaxosRead probes sent to suspected homes
    stray_replies: int = 0  # answers to no running request (mostly the slowest acceptor's)
    malformed_replies: int = 0
    refused_replica_messages: int = 0  # lww/causal replica messages for a strong keyspace


@dataclass(slots=True)
class PendingProposal:
    """A proposal this node runs for a client (or a forwarded request)."""

    proposal: Proposal
    token: object
    ref: KeyRef
    started_ms: int
    heard: dict[str, None] = field(default_factory=dict)  # acceptors that answered
    timer_ms: int | None = None  # the wakeup last put on the node's timer heap


@dataclass(frozen=True, slots=True)
class QueuedOperation:
    """An operation waiting for the proposal ahead of it on the same key."""

    spec: KeyspaceSpec
    key: bytes
    change: ChangeFunction
    token: object
    deadline_ms: int


@dataclass(slots=True)
class PendingRegisterRead:
    """A read of acceptor rows waiting for their answers: below
    linearizable, an inspection (``report``), or a linearizable read's
    first try (``linearizable``: answered once ``needed`` rows agree, else
    handed to a full round, at ``fallback_at_ms`` at the latest)."""

    token: object
    spec: KeyspaceSpec
    key: bytes
    homes: tuple[str, ...]
    needed: int
    started_ms: int
    deadline_ms: int
    ring_epoch: int
    report: bool = False
    linearizable: bool = False
    fallback_at_ms: int = 0
    states: dict[str, AcceptorState] = field(default_factory=dict)
    refused: dict[str, None] = field(default_factory=dict)


class Strong(NodeParts):
    """The strong-keyspace half of ``Node`` (a mixin; see the module docstring)."""

    # Provided by Node (beyond NodeParts).
    limits: ops.Limits
    rng: random.Random

    def _create_keyspace(self, spec: KeyspaceSpec) -> object:
        raise NotImplementedError

    def _init_strong(self, proposer_id: str) -> None:
        """Called by ``Node.__init__`` with this run's proposer id."""
        self.proposer_id = proposer_id
        self._ballots = BallotClock(proposer_id)
        self._paxos_config = PaxosConfig(
            round_timeout_ms=self.config.paxos_round_timeout_ms,
            rounds_max=self.config.paxos_rounds_max,
        )
        self.strong_stats = StrongStats()
        self._proposals: dict[int, PendingProposal] = {}
        self._proposing: dict[KeyRef, int] = {}  # key -> its running proposal's req_id
        self._waiting: dict[KeyRef, deque[QueuedOperation]] = {}
        self._waiting_count = 0
        self._register_reads: dict[int, PendingRegisterRead] = {}
        self._leader_caches: OrderedDict[KeyRef, LeaderCache] = OrderedDict()
        self._probed_ms: dict[str, int] = {}
        # (wakeup_ms, req_id) of proposals; entries go stale and are skipped.
        self._timers: list[tuple[int, int]] = []

    def _strong_pending(self) -> int:
        """Requests in flight here, for the pending_requests_max limit."""
        return len(self._proposals) + self._waiting_count + len(self._register_reads)

    # -- requests ---------------------------------------------------------------

    def _strong_spec(self, request: StrongRequest) -> KeyspaceSpec | OpError:
        """The strong keyspace a request runs in, or why it cannot."""
        name = request.keyspace
        spec = self.keyspaces.get(name)
        if spec is None and name == LOCKS_KEYSPACE and isinstance(request, Lock | Unlock):
            created = self._create_keyspace(LOCKS_KEYSPACE_SPEC)
            if isinstance(created, OpError):
                return created
            spec = self.keyspaces[name]
        if spec is None:
            table = self._table_or_error(name)
            assert isinstance(table, OpError)
            return table
        if not spec.strong:
            return wrong_level(_describe_request(request), spec, name)
        return spec

    def _submit_strong(self, request: StrongRequest, token: object, now_ms: int) -> object:
        """A request on a strong keyspace, or one only a strong keyspace serves."""
        spec = self._strong_spec(request)
        if isinstance(spec, OpError):
            return spec
        key = request.name if isinstance(request, Lock | Unlock) else request.key
        if len(key) > self.config.max_key_bytes:
            return self._key_too_large(key)
        change: ChangeFunction
        match request:
            case Read(level=level, acks=acks):
                level = level or spec.level
                homes = self._homes(spec, key)
                if level is not Level.LINEARIZABLE:
                    needed = required_acks(level, len(homes), acks)
                    return self._start_register_read(spec, key, needed, token, now_ms)
                if homes != (self.config.node_id,):
                    needed = paxos.majority(len(homes))
                    return self._start_register_read(
                        spec, key, needed, token, now_ms, linearizable=True
                    )
                change = read_register()  # this node the only acceptor: in place
            case Mutate(mutation=mutation):
                if (
                    isinstance(mutation, ops.Put)
                    and len(mutation.value) > self.limits.max_value_bytes
                ):
                    return self._value_too_large(mutation.value)
                change = mutation_change(mutation, self.limits)
            case Cas(expected=expected, new=new, version=version):
                if version is not None and (expected is not None or version < 0):
                    return errors.invalid("CAS on a version takes no expected value, and v >= 0")
                if new is not None and len(new) > self.limits.max_value_bytes:
                    return self._value_too_large(new)
                change = versioned_cas(expected, new, version)
            case Lock(owner=owner, ttl_ms=ttl_ms):
                if not owner or not 1 <= ttl_ms <= LOCK_TTL_MAX_MS:
                    return errors.invalid(
                        f"a lock needs an owner and 1 <= ttl_ms <= {LOCK_TTL_MAX_MS}"
                    )
                change = paxos.lock_acquire(owner, ttl_ms)
            case Unlock(owner=owner, token=fencing):
                change = paxos.lock_release(owner or None, fencing)
            case Inspect():
                homes = self._homes(spec, key)
                return self._start_register_read(spec, key, len(homes), token, now_ms, report=True)
        return self._propose(spec, key, change, token, now_ms)

    def _homes(self, spec: KeyspaceSpec, key: bytes) -> tuple[str, ...]:
        return preference_list(self.ring, key_token(key), spec.effective_n(self.cluster_size))

    # -- proposer ---------------------------------------------------------------

    def _propose(
        self,
        spec: KeyspaceSpec,
        key: bytes,
        change: ChangeFunction,
        token: object,
        now_ms: int,
        *,
        after_read: PendingRegisterRead | None = None,
    ) -> object:
        """Run ``change`` on the key (``after_read``: the linearizable read
        this round takes over, whose deadline, start and answers it keeps)."""
        if self._homes(spec, key) == (self.config.node_id,):
            return self._local_round(spec.name, key, change, now_ms)
        busy = self._busy()
        if busy is not None:
            return busy
        ref = (spec.name, key)
        deadline_ms = now_ms + self.config.request_timeout_ms
        if after_read is not None:
            deadline_ms = after_read.deadline_ms
        if ref in self._proposing:
            # One proposal per key from this node: the next waits, then runs
            # with the promise this one leaves (no duel with ourselves).
            self._waiting.setdefault(ref, deque()).append(
                QueuedOperation(spec, key, change, token, deadline_ms)
            )
            self._waiting_count += 1
            self.strong_stats.queued += 1
            return PENDING
        pending = self._start_proposal(spec, key, change, token, deadline_ms, now_ms, after_read)
        if pending.proposal.phase is Phase.DONE:
            self._finish_proposal(pending, now_ms)
        return PENDING

    def _local_round(
        self, keyspace: str, key: bytes, change: ChangeFunction, now_ms: int
    ) -> object:
        """This node is the key's only acceptor: prepare and accept at once on
        the local row (a ballot above its promise), written only on a change;
        durable before the reply leaves, like every reply."""
        table = self._table(keyspace)
        current = self._acceptor_state(table.get(key))
        self._ballots.observe(current.promised)
        ballot = self._ballots.next()
        decided = change(current.state, now_ms)
        self.strong_stats.local_rounds += 1
        if decided.write:
            state = current.state.successor(decided.value, decided.expires_at_ms, ballot)
            table.put(key, AcceptorState(promised=ballot, accepted=ballot, state=state).pack(), 0)
            self.strong_stats.acceptor_writes += 1
        return decided.result

    def _start_proposal(
        self,
        spec: KeyspaceSpec,
        key: bytes,
        change: ChangeFunction,
        token: object,
        deadline_ms: int,
        now_ms: int,
        after_read: PendingRegisterRead | None = None,
    ) -> PendingProposal:
        ref = (spec.name, key)
        homes = self._homes(spec, key)
        req_id = self._new_id()
        cached = self._leader_caches.pop(ref, None)
        proposal = Proposal(
            src=self.config.node_id, req_id=req_id, ring_epoch=self.ring.epoch,
            keyspace=spec.name, key=key, acceptors=homes, change=change,
            deadline_ms=deadline_ms, ballots=self._ballots, rng=self.rng,
            config=self._paxos_config, cached=cached,
        )  # fmt: skip
        pending = PendingProposal(proposal, token, ref, now_ms)
        if after_read is not None:
            # A home silent since the read began is as silent for this round
            # (the failure detector's clock does not restart), and one that
            # answered the read is alive.
            pending.started_ms = after_read.started_ms
            pending.heard.update(dict.fromkeys(after_read.states))
        self._proposals[req_id] = pending
        self._proposing[ref] = req_id
        self.strong_stats.proposals += 1
        if proposal.cached is not None:
            self.strong_stats.fast_path += 1
        suspected = [h for h in homes if self._suspect_of(h, now_ms)]
        for home in suspected:
            proposal.unreachable(home, now_ms)
        if suspected:
            self._probe(spec.name, key, suspected, now_ms)
        self._drive(pending, proposal.start(now_ms), now_ms)
        return pending

    def _suspect_of(self, node: str, now_ms: int) -> bool:
        return node != self.config.node_id and self._suspected(node, now_ms)

    def _drive(self, pending: PendingProposal, sends: list[Send], now_ms: int) -> None:
        """Send a proposal's messages now; this node's own acceptor rules on
        its message in place, and its answer comes back to this node after the
        commit, like every other acceptor's (module docstring: send after
        persist, and the proposer acts on durable answers only)."""
        me = self.config.node_id
        for dst, message in sends:
            if dst != me:
                self._messages.append((dst, message))
            else:
                self._after_commit.append((me, self._acceptor_step(message, now_ms)))
        wakeup = pending.proposal.wakeup_ms
        if wakeup is not None and wakeup != pending.timer_ms:
            pending.timer_ms = wakeup
            self._push_timer(wakeup, pending.proposal.req_id)

    def _push_timer(self, wakeup_ms: int, req_id: int) -> None:
        """Put a proposal's or a linearizable read's wakeup on the heap; past
        four entries per live request (most of them stale), rebuild it."""
        heapq.heappush(self._timers, (wakeup_ms, req_id))
        if len(self._timers) > 4 * (len(self._proposals) + len(self._register_reads) + 16):
            self._timers = [
                (p.timer_ms, r) for r, p in self._proposals.items() if p.timer_ms is not None
            ]
            self._timers += [
                (read.fallback_at_ms, r)
                for r, read in self._register_reads.items()
                if read.linearizable
            ]
            heapq.heapify(self._timers)

    def _run_due_timers(self, now_ms: int) -> None:
        """Run the proposals whose wakeup has come. Called at every input, not
        only at ticks: a back-off of a few milliseconds must not become a
        whole tick, or duelling proposers would all retry at the same tick
        and meet again (the random wait is what separates them)."""
        while self._timers and self._timers[0][0] <= now_ms:
            _, req_id = heapq.heappop(self._timers)
            pending = self._proposals.get(req_id)
            if pending is None:
                read = self._register_reads.get(req_id)
                if read is not None and read.linearizable and now_ms >= read.fallback_at_ms:
                    self._fall_back_to_round(req_id, read, now_ms)
                continue
            wakeup = pending.proposal.wakeup_ms
            if wakeup is None or wakeup > now_ms:
                continue  # a stale entry: the later one is on the heap
            pending.timer_ms = None
            self._drive(pending, pending.proposal.tick(now_ms), now_ms)
            if pending.proposal.phase is Phase.DONE:
                self._finish_proposal(pending, now_ms)

    def wake(self, now_ms: int) -> None:
        """Run the proposal timers that are due (the host calls this at
        ``strong_wakeup_ms``, between ticks)."""
        self._run_due_timers(now_ms)

    def strong_wakeup_ms(self) -> int | None:
        """The earliest time a proposal or a linearizable read here has
        something to do (possibly earlier): a host that calls ``tick`` then,
        not only every tick_interval_ms, gives back-offs their full
        resolution. Entries of requests that ended are dropped first: every
        linearizable read arms a timer, and most end long before it."""
        while self._timers and not self._timer_live(*self._timers[0]):
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def _timer_live(self, wakeup_ms: int, req_id: int) -> bool:
        pending = self._proposals.get(req_id)
        if pending is not None:
            return pending.timer_ms == wakeup_ms
        read = self._register_reads.get(req_id)
        return read is not None and read.linearizable and read.fallback_at_ms == wakeup_ms

    def _finish_proposal(self, pending: PendingProposal, now_ms: int) -> None:
        """Answer a finished proposal, then start what waits on its key."""
        self._complete(pending, None)
        self._start_waiting(pending.ref, now_ms)

    def _complete(self, pending: PendingProposal, abort: OpError | None) -> None:
        """Forget a proposal and answer its client: its outcome, or ``abort``."""
        proposal = pending.proposal
        del self._proposals[proposal.req_id]
        if self._proposing.get(pending.ref) == proposal.req_id:
            del self._proposing[pending.ref]
        stats = self.strong_stats
        stats.rounds += proposal.rounds
        stats.round_trips += proposal.round_trips
        stats.malformed_replies += proposal.malformed_replies
        if abort is None:
            assert proposal.outcome is not None
            result = proposal.outcome.result
            if proposal.leader_cache is not None:
                self._remember_leader(pending.ref, proposal.leader_cache)
        else:
            result = abort
        if isinstance(result, OpError) and result.code == "UNAVAILABLE":
            stats.unavailable += 1
        elif isinstance(result, OpError) and result.code == "TIMEOUT":
            stats.timeouts += 1
        # The outcome rests on a durable quorum (this node's acceptor counts
        # only once its answer came back after the commit): it needs no commit.
        self._resolve(pending.token, result, needs_commit=False)

    def _start_waiting(self, ref: KeyRef, now_ms: int) -> None:
        """Start the next operation waiting on ``ref`` (a loop, not recursion:
        one that ends at once lets the one after it go)."""
        queue = self._waiting.get(ref)
        while queue and ref not in self._proposing:
            item = queue.popleft()
            self._waiting_count -= 1
            if now_ms >= item.deadline_ms:
                self._resolve(item.token, _unavailable("the key was busy until the deadline"))
                self.strong_stats.unavailable += 1
                continue
            pending = self._start_proposal(
                item.spec, item.key, item.change, item.token, item.deadline_ms, now_ms
            )
            if pending.proposal.phase is Phase.DONE:
                self._complete(pending, None)
        if queue is not None and not queue:
            del self._waiting[ref]

    def _remember_leader(self, ref: KeyRef, cache: LeaderCache) -> None:
        if self.config.leader_cache_keys_max == 0:
            return
        self._leader_caches[ref] = cache
        self._leader_caches.move_to_end(ref)
        while len(self._leader_caches) > self.config.leader_cache_keys_max:
            self._leader_caches.popitem(last=False)

    def _on_paxos_reply(self, m: PaxosPromise | PaxosAccepted, now_ms: int) -> None:
        pending = self._proposals.get(m.req_id)
        if pending is None or m.src not in pending.proposal.acceptors:
            self.strong_stats.stray_replies += 1
            return
        pending.heard[m.src] = None
        self._drive(pending, pending.proposal.step(m, now_ms), now_ms)
        if pending.proposal.phase is Phase.DONE:
            self._finish_proposal(pending, now_ms)

    def _probe(self, keyspace: str, key: bytes, nodes: list[str], now_ms: int) -> None:
        """Ask suspected homes for a row, at most once per replica_timeout_ms
        each, and again at ticks while they stay suspected: any answer ends
        the suspicion (``Node.step``), so a healed minority proposes again
        within about replica_timeout_ms instead of waiting out ``suspect_ms``."""
        for node in nodes:
            if now_ms - self._probed_ms.get(node, -(2**62)) < self.config.replica_timeout_ms:
                continue
            self._probed_ms[node] = now_ms
            self.strong_stats.probes += 1
            self._messages.append(
                (
                    node,
                    PaxosRead(
                        src=self.config.node_id, req_id=self._new_id(),
                        ring_epoch=self.ring.epoch, keyspace=keyspace, key=key,
                    ),
                )
            )  # fmt: skip

    # -- acceptor ---------------------------------------------------------------

    def _acceptor_problem(self, ring_epoch: int, keyspace: str, key: bytes) -> str:
        """Why this node may not answer for the key as its acceptor ("": it may)."""
        if ring_epoch != self.ring.epoch:
            return paxos.REFUSED_EPOCH
        spec = self.keyspaces.get(keyspace)
        if spec is None and keyspace == LOCKS_KEYSPACE:
            self._create_keyspace(LOCKS_KEYSPACE_SPEC)  # the first lock anywhere
            spec = self.keyspaces.get(keyspace)
        if spec is None or not spec.strong or len(key) > self.config.max_key_bytes:
            return paxos.REFUSED_INVALID
        if self.config.node_id not in self._homes(spec, key):
            return paxos.REFUSED_INVALID
        return ""

    def _acceptor_state(self, raw: bytes | None) -> AcceptorState:
        if raw is None:
            return AcceptorState()
        try:
            return AcceptorState.unpack(raw)
        except AcceptorStateError as exc:  # our bug or a damaged disk
            raise StorageError(f"damaged acceptor state: {exc}") from exc

    def _acceptor_step(
        self, m: PaxosPrepare | PaxosAccept, now_ms: int
    ) -> PaxosPromise | PaxosAccepted:
        """The acceptor rules on this node's row; the new row is put (the
        caller sends the reply only after the commit)."""
        me, epoch = self.config.node_id, self.ring.epoch
        problem = self._acceptor_problem(m.ring_epoch, m.keyspace, m.key)
        if problem:
            self.strong_stats.acceptor_refusals += 1
            return _refusal(m, me, epoch, problem)
        table = self._table(m.keyspace)
        state = self._acceptor_state(table.get(m.key))
        new: AcceptorState
        reply: PaxosPromise | PaxosAccepted
        if isinstance(m, PaxosPrepare):
            new, reply = paxos.on_prepare(state, m, acceptor=me, epoch=epoch)
        else:
            new, reply = paxos.on_accept(state, m, acceptor=me, epoch=epoch)
        if new is not state:
            table.put(m.key, new.pack(), 0)
            self.strong_stats.acceptor_writes += 1
        return reply

    def _on_paxos_request(self, m: PaxosPrepare | PaxosAccept, now_ms: int) -> None:
        # After commit: a promise or an accept is acknowledged only once durable.
        self._after_commit.append((m.src, self._acceptor_step(m, now_ms)))

    def _on_paxos_read(self, m: PaxosRead, now_ms: int) -> None:
        problem = self._acceptor_problem(m.ring_epoch, m.keyspace, m.key)
        raw = b"" if problem else self._table(m.keyspace).get(m.key) or b""
        reply = PaxosReadReply(
            src=self.config.node_id, req_id=m.req_id, ring_epoch=self.ring.epoch,
            ok=not problem, state=raw, error=problem,
        )  # fmt: skip
        self._after_commit.append((m.src, reply))  # never report what is not durable

    # -- reads of acceptor rows: below linearizable, linearizable, inspection ------

    def _start_register_read(
        self,
        spec: KeyspaceSpec,
        key: bytes,
        needed: int,
        token: object,
        now_ms: int,
        *,
        report: bool = False,
        linearizable: bool = False,
    ) -> object:
        """Ask the key's homes for their rows (this node's own read in place:
        the answer leaves only after the group commit, like every reply)."""
        homes = self._homes(spec, key)
        me = self.config.node_id
        pending = PendingRegisterRead(
            token=token, spec=spec, key=key, homes=homes, needed=needed, started_ms=now_ms,
            deadline_ms=now_ms + self.config.request_timeout_ms, ring_epoch=self.ring.epoch,
            report=report, linearizable=linearizable,
            fallback_at_ms=now_ms + self.config.paxos_round_timeout_ms,
        )  # fmt: skip
        if me in homes:
            pending.states[me] = self._acceptor_state(self._table(spec.name).get(key))
        done = self._register_read_result(pending, now_ms)
        if done is not None:
            return done
        suspected = [h for h in homes if self._suspect_of(h, now_ms)]
        if not report and len(homes) - len(suspected) < needed:
            self._probe(spec.name, key, suspected, now_ms)
            self.strong_stats.unavailable += 1
            return _unavailable(
                f"{len(homes) - len(suspected)} of the key's {len(homes)} home replicas are "
                f"reachable, {needed} must answer; nothing was read"
            )
        busy = self._busy()
        if busy is not None:
            return busy
        read_id = self._new_id()
        ask = PaxosRead(
            src=me, req_id=read_id, ring_epoch=self.ring.epoch, keyspace=spec.name, key=key
        )
        self._messages.extend((home, ask) for home in homes if home != me)
        self._register_reads[read_id] = pending
        if linearizable:
            self._push_timer(pending.fallback_at_ms, read_id)
        return PENDING

    def _register_read_result(self, pending: PendingRegisterRead, now_ms: int) -> object | None:
        """The answer once enough acceptors answered (None: not yet)."""
        if pending.report:
            if len(pending.states) < len(pending.homes):
                return None
            acceptors: dict[str, AcceptorState | None] = {
                home: pending.states.get(home) for home in pending.homes
            }
            return RegisterReport(pending.key, list(pending.homes), acceptors)
        if pending.linearizable:
            agreed = agreed_state(pending.states.values(), pending.needed)
            if agreed is None:
                return None
            self.strong_stats.fast_reads += 1
            cached = self._leader_caches.get((pending.spec.name, pending.key))
            if cached is not None and cached.state.version < agreed.version:
                # Another proposer changed the key since this node's last
                # round, at a ballot above the cached one: an accept with the
                # cache could only meet a conflict and cost a round trip. The
                # next round prepares above the promises seen instead.
                del self._leader_caches[(pending.spec.name, pending.key)]
                self._ballots.observe(max(s.promised for s in pending.states.values()))
            return register_value(agreed, now_ms, stale=False)
        if len(pending.states) < pending.needed:
            return None
        self.strong_stats.stale_reads += 1
        return register_value(freshest(list(pending.states.values())), now_ms, stale=True)

    def _on_paxos_read_reply(self, m: PaxosReadReply, now_ms: int) -> None:
        pending = self._register_reads.get(m.req_id)
        if pending is None:
            return  # a probe's answer (it ended a suspicion), or a late one
        if m.src not in pending.homes:
            self.strong_stats.stray_replies += 1
            return
        if not m.ok:
            pending.refused[m.src] = None
            if len(pending.homes) - len(pending.refused) < pending.needed:
                self._end_register_read(m.req_id, pending, now_ms, f"refused: {m.error}")
            elif pending.linearizable and not self._agreement_possible(pending, now_ms):
                self._fall_back_to_round(m.req_id, pending, now_ms)
            return
        try:
            pending.states[m.src] = AcceptorState.unpack(m.state) if m.state else AcceptorState()
        except AcceptorStateError:
            self.strong_stats.malformed_replies += 1
            return
        pending.refused.pop(m.src, None)
        result = self._register_read_result(pending, now_ms)
        if result is not None:
            del self._register_reads[m.req_id]
            self._resolve(pending.token, result)  # after this node's commit (its own row)
        elif pending.linearizable and not self._agreement_possible(pending, now_ms):
            self._fall_back_to_round(m.req_id, pending, now_ms)

    def _agreement_possible(self, pending: PendingRegisterRead, now_ms: int) -> bool:
        """Whether the homes yet to answer (neither refused nor suspected)
        could still make a majority agree."""
        outstanding = sum(
            1
            for home in pending.homes
            if home not in pending.states
            and home not in pending.refused
            and not self._suspect_of(home, now_ms)
        )
        return agreement_possible(pending.states.values(), outstanding, pending.needed)

    def _fall_back_to_round(self, read_id: int, pending: PendingRegisterRead, now_ms: int) -> None:
        """No majority agrees (a write in flight, a minority ahead, homes
        silent): a full round decides, within the read's deadline. It writes
        the state it reads back unchanged, so it ends definite whatever
        happens (docs/paxos.md)."""
        del self._register_reads[read_id]
        self.strong_stats.read_fallbacks += 1
        result = self._propose(
            pending.spec, pending.key, read_register(), pending.token, now_ms, after_read=pending
        )
        if result is not PENDING:
            self._resolve(pending.token, result)

    def _end_register_read(
        self, read_id: int, pending: PendingRegisterRead, now_ms: int, why: str
    ) -> None:
        """Give up: an inspection answers what it has; a read is UNAVAILABLE
        (definite: a read changes nothing)."""
        del self._register_reads[read_id]
        if pending.report:
            acceptors = {home: pending.states.get(home) for home in pending.homes}
            self._resolve(
                pending.token, RegisterReport(pending.key, list(pending.homes), acceptors)
            )
            return
        self.strong_stats.unavailable += 1
        self._resolve(
            pending.token,
            _unavailable(
                f"{len(pending.states)} of the key's home replicas answered, "
                f"{pending.needed} needed ({why}); nothing was read"
            ),
        )

    # -- timers and ring changes ---------------------------------------------------

    def _tick_strong(self, now_ms: int) -> None:
        """Deadlines, round timeouts and back-offs; failure-detector verdicts."""
        silent_after = self.config.replica_timeout_ms
        for req_id, pending in list(self._proposals.items()):
            if self._proposals.get(req_id) is not pending:
                continue  # finished while an earlier one was driven
            proposal = pending.proposal
            sends: list[Send] = []
            for acceptor in proposal.acceptors:
                if acceptor == self.config.node_id:
                    continue
                silent = now_ms - pending.started_ms >= silent_after
                if self._suspected(acceptor, now_ms):
                    sends += proposal.unreachable(acceptor, now_ms)
                elif silent and acceptor not in pending.heard:
                    self._suspect(acceptor, now_ms)  # the failure detector's verdict
                    sends += proposal.unreachable(acceptor, now_ms)
            wakeup = proposal.wakeup_ms
            if wakeup is not None and now_ms >= wakeup:
                sends += proposal.tick(now_ms)
            pending.timer_ms = None  # re-arm the timer whatever it was
            self._drive(pending, sends, now_ms)
            if proposal.phase is Phase.DONE:
                self._finish_proposal(pending, now_ms)
        for read_id, read in list(self._register_reads.items()):
            if read.linearizable and now_ms >= read.fallback_at_ms:
                self._fall_back_to_round(read_id, read, now_ms)  # its timer was dropped
            elif now_ms >= read.deadline_ms:
                self._end_register_read(read_id, read, now_ms, "deadline passed")
        for ref in list(self._waiting):
            if ref not in self._proposing:
                self._start_waiting(ref, now_ms)  # its proposal was dropped
        for node in list(self._probed_ms):
            if self._suspected(node, now_ms):
                self._probe("", b"", [node], now_ms)  # refused as invalid: an answer all the same
            else:
                del self._probed_ms[node]

    def _strong_ring_changed(self, now_ms: int) -> None:
        """A new ring epoch: promises cached for the old one are void, and
        proposals and reads of the old epoch end (acceptors would refuse them)."""
        self._leader_caches.clear()
        epoch = self.ring.epoch
        for pending in list(self._proposals.values()):
            proposal = pending.proposal
            if proposal.ring_epoch == epoch:
                continue
            if proposal.changed_accept_sent:
                abort = OpError(
                    ErrorKind.TIMEOUT,
                    "outcome unknown: the ring changed after a write was sent",
                    code="TIMEOUT",
                    definite=False,
                )
            else:
                abort = _unavailable("the ring changed; nothing was written, retry")
            self._complete(pending, abort)
        for read_id, read in list(self._register_reads.items()):
            if read.ring_epoch != epoch:
                self._end_register_read(read_id, read, now_ms, "the ring changed")
        for ref in list(self._waiting):
            self._start_waiting(ref, now_ms)
        members = {m.node_id for m in self.ring.members}
        self._probed_ms = {n: t for n, t in self._probed_ms.items() if n in members}

    # -- guards for the lww/causal paths --------------------------------------------

    def _refused_as_strong(self, m: ReplicaWrite | ReplicaRead | CoordinateWrite) -> bool:
        """A replica message of the lww/causal protocol for a keyspace that is
        strong here is answered with a refusal, never applied to its table."""
        spec = self.keyspaces.get(m.keyspace)
        if spec is None or not spec.strong:
            return False
        me = self.config.node_id
        why = f"keyspace {m.keyspace!r} is strong here: its keys change only through CASPaxos"
        self.strong_stats.refused_replica_messages += 1
        reply: Message
        match m:
            case ReplicaWrite(want_ack=False):
                return True
            case ReplicaWrite():
                reply = ReplicaWriteAck(src=me, req_id=m.req_id, ok=False, error=why)
            case ReplicaRead():
                reply = ReplicaReadReply(src=me, req_id=m.req_id, ok=False, error=why)
            case CoordinateWrite():
                reply = CoordinateWriteReply(
                    src=me, req_id=m.req_id, error_kind=ErrorKind.WRONG_LEVEL.value, message=why
                )
        self._messages.append((m.src, reply))
        return True

    def _list_strong_range(
        self, table: Table, start: int, end: int, count: int, count_only: bool, now_ms: int
    ) -> tuple[list[bytes], int, int | None]:
        """``Listing._list_range`` for a strong table: a key is listed when
        this acceptor's accepted state is live (like a read at ``one``)."""
        keys, resume = table.scan(start, count, end)
        found: list[bytes] = []
        counted = 0
        for key in keys:
            if self._register_live(table.get(key), now_ms):
                counted += 1
                if not count_only:
                    found.append(key)
        return found, counted, resume or None

    def _register_live(self, raw: bytes | None, now_ms: int) -> bool:
        if raw is None:
            return False
        try:
            return AcceptorState.unpack(raw).state.live_value(now_ms) is not None
        except AcceptorStateError:
            return False  # a damaged row is the read path's to report


def _describe_request(request: StrongRequest) -> str:
    match request:
        case Cas():
            return "compare-and-set"
        case Lock() | Unlock():
            return "a lock"
        case Read() | Mutate():
            return "level linearizable"
        case Inspect():
            return "inspecting a register"
