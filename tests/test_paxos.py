"""CASPaxos (core/paxos.py): acceptor rules, change functions, and proposals
driven message by message through a tiny seeded pump.

1. Pure pieces: ballots, back-off, acceptor state packing, the wire types.
2. The acceptor, one message at a time.
3. Change functions (get, set, delete, CAS, SETNX, INCRBY, locks).
4. Proposals message by message: the happy path, a minority (UNAVAILABLE,
   definite, no accept sent), contact lost after the accept (TIMEOUT,
   unknown), a lost reply after a persisted accept (exactly once), an
   ambiguous retry, duelling proposers, the one-round-trip path.
5. Loss, duplication, reordering and acceptor crashes: a single proposer's
   counter, then several proposers' register histories judged by the
   linearizability checker, and deliberately broken acceptors that it catches.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import pytest

from ringkv.check.history import FAIL, INFO, OK, Event, Recorder
from ringkv.check.linearizability import check_register
from ringkv.core import codec, errors, paxos
from ringkv.core.errors import ErrorKind, OpError
from ringkv.core.paxos import (
    EMPTY_STATE,
    ZERO_BALLOT,
    AcceptorState,
    AcceptorStateError,
    Ballot,
    BallotClock,
    Change,
    ChangeFunction,
    Deleted,
    IllegalTransition,
    Incremented,
    LeaderCache,
    LockGranted,
    LockReleased,
    PaxosAccept,
    PaxosAccepted,
    PaxosConfig,
    PaxosMessage,
    PaxosPrepare,
    PaxosPromise,
    Phase,
    Proposal,
    ReadValue,
    RegisterState,
    Written,
)

ACCEPTORS = ("a1", "a2", "a3")
EPOCH = 7
CONFIG = PaxosConfig(round_timeout_ms=40, backoff_base_ms=2, backoff_max_ms=40, rounds_max=64)


WRITER = Ballot(40, "w")


def reg(
    value: bytes | None, version: int, origin: Ballot = WRITER, expires_at_ms: int = 0
) -> RegisterState:
    """A well-formed state: ``origin`` made it (and every version before it)."""
    return RegisterState(value, version, expires_at_ms, (origin,) if version else ())


# -- 1. pure pieces --------------------------------------------------------------


def test_ballots_order_by_counter_then_proposer() -> None:
    assert ZERO_BALLOT < Ballot(1, "a") < Ballot(1, "b") < Ballot(2, "a")


def test_ballot_clock_jumps_past_what_it_saw() -> None:
    clock = BallotClock("p1")
    assert clock.next() == Ballot(1, "p1")
    clock.observe(Ballot(9, "p2"))
    assert clock.next() > Ballot(9, "p2")
    clock.observe(Ballot(2, "p3"))  # lower: no effect
    assert clock.next().counter == clock.counter


@pytest.mark.parametrize(("n", "needed"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)])
def test_majority(n: int, needed: int) -> None:
    assert paxos.majority(n) == needed


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(0, 5), (1, 10), (2, 20), (3, 40), (4, 50), (60, 50)]
)
def test_backoff_is_full_jitter_capped(attempt: int, ceiling: int) -> None:
    rng = random.Random(attempt)
    draws = [paxos.backoff_ms(attempt, rng, base_ms=5, max_ms=50) for _ in range(400)]
    assert min(draws) == 0
    assert max(draws) == ceiling


def test_backoff_comes_from_the_injected_rng_only() -> None:
    first = [paxos.backoff_ms(3, random.Random(1), base_ms=5, max_ms=50) for _ in range(3)]
    again = [paxos.backoff_ms(3, random.Random(1), base_ms=5, max_ms=50) for _ in range(3)]
    assert first == again


@pytest.mark.parametrize(
    "state",
    [
        AcceptorState(),
        AcceptorState(promised=Ballot(3, "p1"), accepted=ZERO_BALLOT),
        AcceptorState(
            promised=Ballot(9, "p2~1"),
            accepted=Ballot(8, "p2~1"),
            state=reg(b"v\x00", 4, Ballot(5, "p1"), 1_700_000_000_000),
        ),
        AcceptorState(
            promised=Ballot(20, "p1"),
            accepted=Ballot(20, "p1"),
            state=reg(None, 12, Ballot(20, "p1")),  # a tombstone
        ),
    ],
)
def test_acceptor_state_round_trip(state: AcceptorState) -> None:
    assert AcceptorState.unpack(state.pack()) == state


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        msgpack.packb([1, 0, ""]),
        msgpack.packb([3, 0, "", 0, "", None, 0, 0, []]),  # unknown format
        msgpack.packb([1, 0, "", 0, "", "text", 0, 0, []]),  # value not bytes
        msgpack.packb([1, 0, "", 0, "", None, -1, 0, []]),  # negative version
        msgpack.packb([1, 1, "p", 2, "p", None, 0, 0, []]),  # accepted > promised
        msgpack.packb([1, 3, "p", 2, "p", None, 1, 0, [3, "p"]]),  # origin > accepted
        msgpack.packb([1, True, "p", 0, "", None, 0, 0, []]),  # bool is not a counter
        msgpack.packb([1, 3, "p", 3, "p", None, 1, 0, []]),  # too few origins
        msgpack.packb([1, 3, "p", 3, "p", None, 2, 0, [2, "p", 3, "p"]]),  # not decreasing
        msgpack.packb([1, 3, "p", 3, "p", None, 1, 0, [3, ""]]),  # no proposer
        # Format 2: the latest change of each proposer, then the horizon.
        msgpack.packb([2, 3, "p", 3, "p", None, 1, 0, [3, "p"]]),  # no horizon
        msgpack.packb([2, 3, "p", 3, "p", None, 0, 0, [3, "p", 0, ""]]),  # origins at version 0
        msgpack.packb([2, 3, "p", 3, "p", None, 1, 0, [3, "p", 2, "q", 0, ""]]),  # > version
        msgpack.packb([2, 3, "p", 3, "p", None, 2, 0, [3, "p", 2, "p", 0, ""]]),  # p twice
        msgpack.packb([2, 3, "p", 3, "p", None, 2, 0, [2, "q", 3, "p", 0, ""]]),  # increasing
        msgpack.packb([2, 3, "p", 3, "p", None, 1, 0, [3, "p", 4, "q"]]),  # horizon too new
        msgpack.packb([2, 3, "p", 3, "p", None, 1, 0, [3, "p", 0, "q"]]),  # half a horizon
        msgpack.packb([2, 3, "p", 3, "p", None, 9, 0, [3, "p", *[0, ""] * 9]]),  # too many
    ],
)
def test_damaged_acceptor_state_is_a_typed_error(data: bytes) -> None:
    with pytest.raises(AcceptorStateError):
        AcceptorState.unpack(data)


EXAMPLES: list[PaxosMessage] = [
    PaxosPrepare(
        src="n1", req_id=1, ring_epoch=3, keyspace="ks", key=b"k", ballot_counter=4,
        ballot_proposer="n1~2",
    ),
    PaxosPromise(
        src="n2", req_id=1, ring_epoch=3, ok=True, ballot_counter=4, ballot_proposer="n1~2",
        promised_counter=4, promised_proposer="n1~2", accepted_counter=3,
        accepted_proposer="n3", value=b"v", version=2, expires_at_ms=0,
        origins=[3, "n3", 1, "n1~2"],
    ),
    PaxosPromise(
        src="n2", req_id=1, ring_epoch=3, ok=False, ballot_counter=4, ballot_proposer="n1",
        promised_counter=9, promised_proposer="n3", error="conflict",
    ),
    PaxosAccept(
        src="n1", req_id=2, ring_epoch=3, keyspace="ks", key=b"k", ballot_counter=4,
        ballot_proposer="n1", next_counter=5, value=None, version=3, expires_at_ms=0,
        origins=[4, "n1", 2, "n3", 1, "n3"],
    ),
    PaxosAccepted(
        src="n2", req_id=2, ring_epoch=3, ok=True, ballot_counter=4, ballot_proposer="n1",
        promised_counter=5, promised_proposer="n1",
    ),
]  # fmt: skip


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda e: type(e).__name__)
def test_messages_use_only_types_the_codec_carries(message: PaxosMessage) -> None:
    """What codec.encode/decode will do once these get tags: a row of fields,
    each checked for its exact declared type."""
    schema = codec._schema(type(message))  # raises TypeError on a type it cannot carry
    row = [getattr(message, name) for name, _ in schema]
    decoded = msgpack.unpackb(msgpack.packb(row, use_bin_type=True), raw=False)
    assert all(check(value) for (_, check), value in zip(schema, decoded, strict=True))
    assert type(message)(**{name: v for (name, _), v in zip(schema, decoded, strict=True)}) == (
        message
    )


def test_messages_are_frozen_slotted_keyword_only() -> None:
    for cls in (PaxosPrepare, PaxosPromise, PaxosAccept, PaxosAccepted):
        params = getattr(cls, "__dataclass_params__")  # noqa: B009
        assert params.frozen
        assert hasattr(cls, "__slots__")
        assert all(f.kw_only for f in dataclasses.fields(cls))
        assert [f.name for f in dataclasses.fields(cls)][:3] == ["src", "req_id", "ring_epoch"]


# -- 2. the acceptor ---------------------------------------------------------------


def prepare(counter: int, proposer: str = "p1", epoch: int = EPOCH) -> PaxosPrepare:
    return PaxosPrepare(
        src=proposer, req_id=1, ring_epoch=epoch, keyspace="ks", key=b"k",
        ballot_counter=counter, ballot_proposer=proposer,
    )  # fmt: skip


def accept(
    counter: int,
    state: RegisterState,
    proposer: str = "p1",
    next_counter: int = 0,
    epoch: int = EPOCH,
) -> PaxosAccept:
    return PaxosAccept(
        src=proposer, req_id=2, ring_epoch=epoch, keyspace="ks", key=b"k",
        ballot_counter=counter, ballot_proposer=proposer, next_counter=next_counter,
        value=state.value, version=state.version, expires_at_ms=state.expires_at_ms,
        origins=paxos.origins_to_wire(state.origins, state.horizon),
    )  # fmt: skip


def test_prepare_promises_a_higher_ballot_and_reports_the_accepted_state() -> None:
    held = reg(b"x", 3, Ballot(20, "p2"))
    state = AcceptorState(promised=Ballot(20, "p2"), accepted=Ballot(20, "p2"), state=held)
    new, reply = paxos.on_prepare(state, prepare(21), acceptor="a1", epoch=EPOCH)
    assert new == AcceptorState(promised=Ballot(21, "p1"), accepted=Ballot(20, "p2"), state=held)
    assert reply.ok and reply.src == "a1" and reply.ring_epoch == EPOCH
    assert (reply.accepted_counter, reply.accepted_proposer) == (20, "p2")
    assert (reply.value, reply.version) == (b"x", 3)
    assert reply.origins == [20, "p2", 0, ""]  # p2's change, nothing ever dropped


def test_prepare_below_the_promise_is_a_conflict_naming_the_promise() -> None:
    state = AcceptorState(promised=Ballot(5, "p2"))
    new, reply = paxos.on_prepare(state, prepare(4), acceptor="a1", epoch=EPOCH)
    assert new is state
    assert not reply.ok and reply.error == paxos.REFUSED_CONFLICT
    assert (reply.promised_counter, reply.promised_proposer) == (5, "p2")


def test_a_duplicate_prepare_is_answered_again_without_a_change() -> None:
    state, first = paxos.on_prepare(AcceptorState(), prepare(4), acceptor="a1", epoch=EPOCH)
    again, second = paxos.on_prepare(state, prepare(4), acceptor="a1", epoch=EPOCH)
    assert again is state and second == first and second.ok


@pytest.mark.parametrize("epoch", [EPOCH - 1, EPOCH + 1])
def test_a_message_from_another_ring_epoch_is_refused(epoch: int) -> None:
    state = AcceptorState()
    new, reply = paxos.on_prepare(state, prepare(1, epoch=epoch), acceptor="a1", epoch=EPOCH)
    assert new is state and not reply.ok and reply.error == paxos.REFUSED_EPOCH
    new, answer = paxos.on_accept(
        state, accept(1, reg(b"v", 1, Ballot(1, "p1")), epoch=epoch),
        acceptor="a1", epoch=EPOCH,
    )  # fmt: skip
    assert new is state and not answer.ok and answer.error == paxos.REFUSED_EPOCH
    assert answer.ring_epoch == EPOCH  # tells the proposer which epoch it has


def test_accept_at_the_promise_stores_the_state_and_the_next_promise() -> None:
    state, _ = paxos.on_prepare(AcceptorState(), prepare(4), acceptor="a1", epoch=EPOCH)
    value = reg(b"v", 1, Ballot(4, "p1"))
    new, reply = paxos.on_accept(
        state, accept(4, value, next_counter=5), acceptor="a1", epoch=EPOCH
    )
    assert new == AcceptorState(promised=Ballot(5, "p1"), accepted=Ballot(4, "p1"), state=value)
    assert reply.ok and (reply.promised_counter, reply.promised_proposer) == (5, "p1")
    # The piggybacked promise is binding: a prepare in between is refused...
    _, refused = paxos.on_prepare(new, prepare(5, "p0"), acceptor="a1", epoch=EPOCH)
    assert not refused.ok
    # ...and the next round's accept needs no prepare (§2.2.1).
    nxt = value.successor(b"w", 0, Ballot(5, "p1"))
    assert nxt == RegisterState(b"w", 2, 0, (Ballot(5, "p1"),))  # p1's latest change only
    later, ok = paxos.on_accept(new, accept(5, nxt, next_counter=6), acceptor="a1", epoch=EPOCH)
    assert ok.ok and later.state == nxt and later.promised == Ballot(6, "p1")


def test_accept_below_the_promise_is_a_conflict() -> None:
    state = AcceptorState(promised=Ballot(6, "p2"))
    new, reply = paxos.on_accept(
        state, accept(5, reg(b"v", 1, Ballot(5, "p1"))), acceptor="a1", epoch=EPOCH
    )
    assert new is state
    assert not reply.ok and reply.error == paxos.REFUSED_CONFLICT
    assert (reply.promised_counter, reply.promised_proposer) == (6, "p2")


def test_a_duplicate_accept_is_acknowledged_again() -> None:
    value = reg(b"v", 1, Ballot(4, "p1"))
    state, _ = paxos.on_accept(
        AcceptorState(), accept(4, value, next_counter=5), acceptor="a1", epoch=EPOCH
    )
    again, reply = paxos.on_accept(
        state, accept(4, value, next_counter=5), acceptor="a1", epoch=EPOCH
    )
    assert again is state and reply.ok


@pytest.mark.parametrize(
    "message",
    [
        accept(0, RegisterState(b"v", 1, 0, (Ballot(1, "p1"),))),  # no real ballot
        accept(4, reg(b"v", 1, Ballot(4, "p1")), next_counter=4),  # next <= ballot
        accept(4, RegisterState(b"v", -1, 0, ())),  # negative version
        accept(4, reg(b"v", 1, Ballot(5, "p1"))),  # made by a later round
        accept(4, reg(b"v", 1, Ballot(3, "p1"), expires_at_ms=-1)),  # negative expiry
        accept(4, RegisterState(b"v", 0, 0, (Ballot(3, "p1"),))),  # origins at version 0
        accept(4, RegisterState(b"v", 1, 0, (Ballot(3, "p1"), Ballot(2, "p2")))),  # > version
        accept(4, RegisterState(b"v", 2, 0, (Ballot(3, "p1"), Ballot(2, "p1")))),  # p1 twice
    ],
)
def test_a_malformed_accept_is_refused_not_stored(message: PaxosAccept) -> None:
    state = AcceptorState()
    new, reply = paxos.on_accept(state, message, acceptor="a1", epoch=EPOCH)
    assert new is state and not reply.ok and reply.error == paxos.REFUSED_INVALID


# -- 3. change functions -----------------------------------------------------------

NOW = 1_000_000
LIVE = reg(b"41", 5)
EXPIRED = reg(b"41", 5, expires_at_ms=NOW - 1)
TOMB = reg(None, 6)
TEXT = reg(b"abc", 2, expires_at_ms=NOW + 10)


def _mismatch(change: Change) -> bool:
    r = change.result
    return (
        isinstance(r, OpError) and r.kind is ErrorKind.MISMATCH and r.definite and not change.write
    )


@pytest.mark.parametrize(
    ("function", "state", "expected"),
    [
        (paxos.get(), EMPTY_STATE, Change(ReadValue(None, 0))),
        (paxos.get(), LIVE, Change(ReadValue(b"41", 5))),
        (paxos.get(), EXPIRED, Change(ReadValue(None, 5))),
        (paxos.get(), TOMB, Change(ReadValue(None, 6))),
        (paxos.set_value(b"x"), LIVE, Change(Written(6), True, b"x", 0)),
        (paxos.set_value(b"x", NOW + 5), TOMB, Change(Written(7), True, b"x", NOW + 5)),
        (paxos.delete(), LIVE, Change(Deleted(True, 6), True, None)),
        (paxos.delete(), TOMB, Change(Deleted(False, 6))),
        (paxos.delete(), EXPIRED, Change(Deleted(False, 5))),
        (paxos.cas_value(b"41", b"42"), LIVE, Change(Written(6), True, b"42")),
        (paxos.cas_value(None, b"1"), EMPTY_STATE, Change(Written(1), True, b"1")),
        (paxos.cas_value(None, b"1"), EXPIRED, Change(Written(6), True, b"1")),
        (paxos.cas_value(b"41", None), LIVE, Change(Written(6), True, None)),
        (paxos.cas_version(5, b"z"), LIVE, Change(Written(6), True, b"z")),
        (paxos.set_if_absent(b"n"), TOMB, Change(Written(7), True, b"n", 0)),
        (paxos.increment(1), EMPTY_STATE, Change(Incremented(1, 1), True, b"1", 0)),
        (paxos.increment(-50), LIVE, Change(Incremented(-9, 6), True, b"-9", 0)),
        (paxos.increment(2), TOMB, Change(Incremented(2, 7), True, b"2", 0)),
        (
            paxos.increment(1),
            reg(b"9", 1, expires_at_ms=NOW + 9),
            Change(Incremented(10, 2), True, b"10", NOW + 9),  # keeps the expiry, as Redis
        ),
    ],
)
def test_change_functions(function: ChangeFunction, state: RegisterState, expected: Change) -> None:
    assert function(state, NOW) == expected


@pytest.mark.parametrize(
    ("function", "state"),
    [
        (paxos.cas_value(b"40", b"42"), LIVE),
        (paxos.cas_value(None, b"1"), LIVE),
        (paxos.cas_value(b"41", b"1"), EXPIRED),
        (paxos.cas_version(4, b"z"), LIVE),
        (paxos.set_if_absent(b"n"), LIVE),
    ],
)
def test_change_functions_that_refuse_answer_mismatch(
    function: ChangeFunction, state: RegisterState
) -> None:
    assert _mismatch(function(state, NOW))


@pytest.mark.parametrize(
    ("state", "delta", "error"),
    [
        (TEXT, 1, errors.NOT_INTEGER),
        (reg(b"01", 1), 1, errors.NOT_INTEGER),
        (reg(str(2**63 - 1).encode(), 1), 1, errors.OVERFLOW),
    ],
)
def test_increment_errors_are_definite_and_change_nothing(
    state: RegisterState, delta: int, error: OpError
) -> None:
    change = paxos.increment(delta)(state, NOW)
    assert change == Change(error) and error.definite


def test_lock_tokens_grow_with_every_change_even_across_expiry() -> None:
    free = EMPTY_STATE
    first = paxos.lock_acquire("alice", 100)(free, NOW)
    assert first == Change(LockGranted(1, NOW + 100), True, b"alice", NOW + 100)
    held = reg(b"alice", 1, expires_at_ms=NOW + 100)
    assert _mismatch(paxos.lock_acquire("bob", 100)(held, NOW + 50))
    assert _mismatch(paxos.lock_acquire("bob", 100)(held, NOW + 100))
    # Expired: bob gets it with a larger token; alice's token 1 is now stale.
    taken = paxos.lock_acquire("bob", 100)(held, NOW + 101)
    assert taken.result == LockGranted(2, NOW + 201)
    # The holder renews: a new, larger token.
    renewed = paxos.lock_acquire("alice", 300)(held, NOW + 10)
    assert renewed.result == LockGranted(2, NOW + 310)


def test_lock_release_needs_the_owner_and_the_token() -> None:
    held = reg(b"alice", 4, expires_at_ms=NOW + 100)
    assert paxos.lock_release("alice", 4)(held, NOW) == Change(LockReleased(5), True, None)
    assert _mismatch(paxos.lock_release("alice", 3)(held, NOW))
    assert _mismatch(paxos.lock_release("bob", 4)(held, NOW))
    # After expiry, while nobody took it since: still the owner's to release.
    assert paxos.lock_release("alice", 4)(held, NOW + 500).result == LockReleased(5)
    released = reg(None, 5)
    assert _mismatch(paxos.lock_release("alice", 4)(released, NOW))
    # And the next acquirer's token is above every earlier one.
    assert paxos.lock_acquire("bob", 10)(released, NOW).result == LockGranted(6, NOW + 10)


# -- the pump ------------------------------------------------------------------------

Persist = Callable[[AcceptorState, AcceptorState], bool]


def persist_everything(old: AcceptorState, new: AcceptorState) -> bool:
    return new is not old


@dataclass
class World:
    """Acceptors, proposers and a network in virtual time, all from one seed.

    Messages take ``delay`` ms (uniform; unequal delays reorder them), are
    lost with probability ``loss`` and duplicated with ``dup``; ``blocked``
    cuts links one way. An acceptor's state is persisted (``persist``
    decides what reaches the disk) before its reply is posted; a crash
    reverts it to its disk and takes it down until ``restart``."""

    seed: int
    loss: float = 0.0
    dup: float = 0.0
    delay: tuple[int, int] = (1, 1)
    config: PaxosConfig = CONFIG
    acceptors: tuple[str, ...] = ACCEPTORS
    on_prepare: Callable[..., tuple[AcceptorState, PaxosPromise]] = paxos.on_prepare
    on_accept: Callable[..., tuple[AcceptorState, PaxosAccepted]] = paxos.on_accept
    persist: Persist = persist_everything
    # Nemesis: the chance that an acceptor crashes right after it answers
    # (its reply is out), coming back ``crash_down_ms`` later.
    crash_after_reply: float = 0.0
    crash_down_ms: tuple[int, int] = (1, 3)
    now: int = 0
    rng: random.Random = field(init=False)
    disk: dict[str, AcceptorState] = field(init=False)
    memory: dict[str, AcceptorState] = field(init=False)
    down: set[str] = field(default_factory=set)
    blocked: set[tuple[str, str]] = field(default_factory=set)
    sent: list[tuple[str, str, PaxosMessage]] = field(default_factory=list)
    proposals: dict[tuple[str, int], Proposal] = field(default_factory=dict)
    caches: dict[str, LeaderCache] = field(default_factory=dict)
    clocks: dict[str, BallotClock] = field(default_factory=dict)
    on_done: Callable[[Proposal], None] | None = None
    _queue: list[tuple[int, int, str, str, PaxosMessage]] = field(default_factory=list)
    _restarts: list[tuple[int, str]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _req_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.disk = {a: AcceptorState() for a in self.acceptors}
        self.memory = dict(self.disk)

    # -- proposers --

    def propose(
        self,
        node: str,
        change: ChangeFunction,
        *,
        deadline_ms: int = 1000,
        use_cache: bool = True,
        start: bool = True,
    ) -> Proposal:
        cached = self.caches.pop(node, None)
        proposal = Proposal(
            src=node, req_id=next(self._req_ids), ring_epoch=EPOCH, keyspace="ks", key=b"k",
            acceptors=self.acceptors, change=change, deadline_ms=self.now + deadline_ms,
            ballots=self.clocks.setdefault(node, BallotClock(node)), rng=self.rng,
            config=self.config, cached=cached if use_cache else None,
        )  # fmt: skip
        self.proposals[(node, proposal.req_id)] = proposal
        if start:
            self._after(proposal, proposal.start(self.now))
        return proposal

    def _after(self, proposal: Proposal, out: list[paxos.Send]) -> None:
        for dst, message in out:
            self.post(proposal.src, dst, message)
        if proposal.phase is Phase.DONE and (proposal.src, proposal.req_id) in self.proposals:
            del self.proposals[(proposal.src, proposal.req_id)]
            if proposal.leader_cache is not None:
                self.caches[proposal.src] = proposal.leader_cache
            if self.on_done is not None:
                self.on_done(proposal)

    # -- network --

    def post(self, src: str, dst: str, message: PaxosMessage) -> None:
        self.sent.append((src, dst, message))
        if (src, dst) in self.blocked or self.rng.random() < self.loss:
            return
        for _ in range(2 if self.rng.random() < self.dup else 1):
            at = self.now + self.rng.randint(*self.delay)
            heapq.heappush(self._queue, (at, next(self._seq), src, dst, message))

    def crash(self, acceptor: str) -> None:
        self.memory[acceptor] = self.disk[acceptor]
        self.down.add(acceptor)

    def restart(self, acceptor: str) -> None:
        self.down.discard(acceptor)

    def _deliver(self, src: str, dst: str, message: PaxosMessage) -> None:
        if (src, dst) in self.blocked:
            return
        if dst in self.memory:
            if dst in self.down:
                return
            old = self.memory[dst]
            reply: PaxosPromise | PaxosAccepted
            if isinstance(message, PaxosPrepare):
                new, reply = self.on_prepare(old, message, acceptor=dst, epoch=EPOCH)
            else:
                assert isinstance(message, PaxosAccept)
                new, reply = self.on_accept(old, message, acceptor=dst, epoch=EPOCH)
            self.memory[dst] = new
            if self.persist(old, new):
                self.disk[dst] = new
            self.post(dst, message.src, reply)  # after persisting
            if self.crash_after_reply and self.rng.random() < self.crash_after_reply:
                self.crash(dst)
                heapq.heappush(
                    self._restarts, (self.now + self.rng.randint(*self.crash_down_ms), dst)
                )
            return
        assert isinstance(message, PaxosPromise | PaxosAccepted)
        proposal = self.proposals.get((dst, message.req_id))
        if proposal is not None:
            self._after(proposal, proposal.step(message, self.now))

    # -- time --

    def next_time(self) -> int | None:
        times = [p.wakeup_ms for p in self.proposals.values() if p.wakeup_ms is not None]
        if self._queue:
            times.append(self._queue[0][0])
        if self._restarts:
            times.append(self._restarts[0][0])
        return min(times) if times else None

    def advance(self, until: int) -> None:
        """Deliver and tick everything due up to ``until``, in time order."""
        while (at := self.next_time()) is not None and at <= until:
            self.now = max(self.now, at)
            if self._restarts and self._restarts[0][0] <= self.now:
                self.restart(heapq.heappop(self._restarts)[1])
                continue
            if self._queue and self._queue[0][0] <= self.now:
                _, _, src, dst, message = heapq.heappop(self._queue)
                self._deliver(src, dst, message)
                continue
            for proposal in list(self.proposals.values()):
                if proposal.wakeup_ms is not None and proposal.wakeup_ms <= self.now:
                    self._after(proposal, proposal.tick(self.now))
        self.now = max(self.now, until)

    def run(self, *proposals: Proposal, limit_ms: int = 60_000) -> None:
        """Until every given proposal is done (and what they sent is settled)."""
        end = self.now + limit_ms
        while any(p.phase is not Phase.DONE for p in proposals):
            at = self.next_time()
            assert at is not None and at <= end, "stuck"
            self.advance(at)

    def sent_of(self, kind: type, src: str | None = None) -> list[PaxosMessage]:
        return [m for s, _, m in self.sent if isinstance(m, kind) and (src is None or s == src)]

    def committed(self) -> RegisterState:
        """The register as a fresh reader would find it: a full get round."""
        reader = self.propose("reader", paxos.get(), use_cache=False)
        self.run(reader)
        assert reader.outcome is not None and reader.outcome.state is not None
        return reader.outcome.state


def result_of(proposal: Proposal) -> object:
    assert proposal.phase is Phase.DONE and proposal.outcome is not None
    return proposal.outcome.result


def error_of(proposal: Proposal) -> OpError:
    result = result_of(proposal)
    assert isinstance(result, OpError), result
    return result


# -- 4. proposals, message by message ------------------------------------------------


def test_one_round_message_by_message() -> None:
    """Prepare to all, a majority of promises, accept to all, a majority of acks."""
    rng = random.Random(0)
    proposal = Proposal(
        src="n1", req_id=11, ring_epoch=EPOCH, keyspace="ks", key=b"k", acceptors=ACCEPTORS,
        change=paxos.increment(5), deadline_ms=1000, ballots=BallotClock("n1~0", 10), rng=rng,
        config=CONFIG,
    )  # fmt: skip
    prepares = proposal.start(0)
    assert [dst for dst, _ in prepares] == list(ACCEPTORS)
    assert {m for _, m in prepares} == {
        PaxosPrepare(
            src="n1", req_id=11, ring_epoch=EPOCH, keyspace="ks", key=b"k", ballot_counter=11,
            ballot_proposer="n1~0",
        )
    }  # fmt: skip
    states = {a: AcceptorState() for a in ACCEPTORS}
    states["a2"] = AcceptorState(  # a2 holds an older committed value
        promised=Ballot(5, "old"), accepted=Ballot(5, "old"), state=reg(b"10", 3, Ballot(5, "old")),
    )  # fmt: skip
    promises = {}
    for dst, message in prepares:
        assert isinstance(message, PaxosPrepare)
        states[dst], promises[dst] = paxos.on_prepare(
            states[dst], message, acceptor=dst, epoch=EPOCH
        )
    assert proposal.step(promises["a1"], 1) == []  # one promise is not a majority
    accepts = proposal.step(promises["a2"], 2)
    assert proposal.phase is Phase.ACCEPTING
    assert [dst for dst, _ in accepts] == list(ACCEPTORS)
    message = accepts[0][1]
    assert isinstance(message, PaxosAccept)
    # The highest accepted state (a2's) was the input; the new state is version 4.
    assert (message.value, message.version) == (b"15", 4)
    assert message.origins == [11, "n1~0", 5, "old", 0, ""]  # each proposer's latest change
    assert message.next_counter == 12  # the piggybacked promise for the next round
    assert proposal.step(promises["a3"], 3) == []  # late promise: ignored
    acks = {}
    for dst, msg in accepts:
        assert isinstance(msg, PaxosAccept)
        states[dst], acks[dst] = paxos.on_accept(states[dst], msg, acceptor=dst, epoch=EPOCH)
    assert proposal.step(acks["a3"], 4) == []
    assert proposal.step(acks["a3"], 4) == []  # a duplicate counts once
    assert proposal.phase is Phase.ACCEPTING
    proposal.step(acks["a1"], 5)
    assert result_of(proposal) == Incremented(15, 4)
    assert proposal.round_trips == 2 and proposal.rounds == 1
    assert proposal.leader_cache == LeaderCache(
        Ballot(12, "n1~0"),
        RegisterState(b"15", 4, 0, (Ballot(11, "n1~0"), *reg(b"10", 3, Ballot(5, "old")).origins)),
        EPOCH,
    )


def test_a_majority_known_down_is_unavailable_at_once_and_sends_nothing() -> None:
    world = World(seed=1)
    proposal = world.propose("p1", paxos.set_value(b"x"), start=False)
    proposal.unreachable("a1", 0)
    proposal.unreachable("a2", 0)
    assert proposal.start(0) == []
    error = error_of(proposal)
    assert error.kind is ErrorKind.UNAVAILABLE and error.definite
    assert not proposal.changed_accept_sent


def test_a_minority_answering_is_unavailable_definite_without_any_accept() -> None:
    world = World(seed=2)
    world.down |= {"a2", "a3"}  # silent: the proposer only sees timeouts
    proposal = world.propose("p1", paxos.set_value(b"x"), deadline_ms=500)
    world.run(proposal)
    error = error_of(proposal)
    assert error.kind is ErrorKind.UNAVAILABLE and error.definite, error
    assert world.sent_of(PaxosAccept) == []
    assert proposal.rounds > 3  # it kept trying until the deadline
    assert world.now <= 500


def test_a_minority_found_mid_round_is_unavailable_definite() -> None:
    world = World(seed=3)
    world.down |= {"a2", "a3"}
    proposal = world.propose("p1", paxos.increment(1))
    world.advance(world.now + 5)  # a1 promised; the others are silent
    assert proposal.phase is Phase.PREPARING
    proposal.unreachable("a2", world.now)
    assert proposal.phase is Phase.PREPARING  # still possible: a1 + a3
    proposal.unreachable("a3", world.now)
    error = error_of(proposal)
    assert error.kind is ErrorKind.UNAVAILABLE and error.definite
    assert world.sent_of(PaxosAccept) == []


def test_acceptors_on_another_ring_epoch_make_it_unavailable_definite() -> None:
    world = World(seed=4)
    world.on_prepare = lambda state, m, acceptor, epoch: paxos.on_prepare(
        state, m, acceptor=acceptor, epoch=epoch + 1
    )
    proposal = world.propose("p1", paxos.set_value(b"x"))
    world.run(proposal)
    error = error_of(proposal)
    assert error.kind is ErrorKind.UNAVAILABLE and error.definite
    assert proposal.rounds == 1


def test_contact_lost_after_the_accept_was_sent_is_timeout_unknown() -> None:
    world = World(seed=5)
    proposal = world.propose("p1", paxos.set_value(b"x"), deadline_ms=400)
    world.advance(1)  # prepares delivered, promises on their way
    world.blocked |= {("p1", a) for a in ACCEPTORS}  # promises arrive, nothing gets out
    world.advance(2)
    assert proposal.phase is Phase.ACCEPTING and proposal.changed_accept_sent
    world.run(proposal)  # ...the accepts never do, nor anything after
    error = error_of(proposal)
    assert error.kind is ErrorKind.TIMEOUT and not error.definite
    assert world.committed().value is None  # here it indeed had no effect: unknown, not failed


def test_a_read_that_loses_contact_after_its_accept_is_still_definite() -> None:
    """An accept that writes the state back unchanged has no effect of its own."""
    world = World(seed=6)
    proposal = world.propose("p1", paxos.cas_value(b"nope", b"x"), deadline_ms=400)
    world.advance(1)
    world.blocked |= {("p1", a) for a in ACCEPTORS}
    world.advance(2)
    assert proposal.phase is Phase.ACCEPTING and not proposal.changed_accept_sent
    world.run(proposal)
    error = error_of(proposal)
    assert error.kind is ErrorKind.UNAVAILABLE and error.definite


def test_a_reply_lost_after_a_persisted_accept_takes_effect_exactly_once() -> None:
    """The accept is durable at every acceptor, every reply is lost (as if each
    crashed right after persisting); the retry finds its own state and commits
    it instead of incrementing again."""
    world = World(seed=7)
    world.propose("p1", paxos.set_value(b"10"), use_cache=False)
    world.run(*world.proposals.values())
    proposal = world.propose("p1", paxos.increment(1), use_cache=False)
    world.advance(world.now + 2)  # promises back, accepts out
    assert proposal.phase is Phase.ACCEPTING
    world.blocked |= {(a, "p1") for a in ACCEPTORS}
    world.advance(world.now + 1)
    assert all(world.disk[a].state.value == b"11" for a in ACCEPTORS)
    world.blocked.clear()
    world.run(proposal)
    assert result_of(proposal) == Incremented(11, 2)
    assert proposal.rounds == 2
    assert world.committed().value == b"11"


def _accept_only_at_a1_then_others_write(world: World, writers: list[str]) -> Proposal:
    """p1's increment is accepted by a1 alone (its reply lost); then each of
    ``writers`` in turn, cut off from a3, commits an increment by 10: the
    first one's prepare sees p1's state as the newest and builds on it."""
    p1 = world.propose("p1", paxos.increment(1), use_cache=False)
    world.advance(world.now + 2)
    assert p1.phase is Phase.ACCEPTING
    world.blocked |= {("p1", "a2"), ("p1", "a3"), ("a1", "p1")}
    world.advance(world.now + 1)
    assert world.memory["a1"].state.value == b"1"
    for writer in writers:
        world.blocked = {("p1", a) for a in ACCEPTORS} | {(writer, "a3"), ("a3", writer)}
        world.run(world.propose(writer, paxos.increment(10), use_cache=False))
    world.blocked.clear()
    return p1


@pytest.mark.parametrize("writes", [3, 2 * paxos.ORIGINS_KEPT])
def test_a_retry_finds_its_write_under_later_ones_and_answers_once(writes: int) -> None:
    """However many changes one other proposer made since: the state keeps
    p1's latest change, which is p1's own round."""
    world = World(seed=8)
    p1 = _accept_only_at_a1_then_others_write(world, ["p2"] * writes)
    world.run(p1)
    assert result_of(p1) == Incremented(1, 1)  # what its own round computed
    assert world.committed().value == str(1 + 10 * writes).encode()  # and it counted once


def test_a_retry_that_cannot_tell_whether_it_took_effect_is_timeout() -> None:
    """After changes by as many other proposers as a state remembers, p1's own
    change is out of sight: it may or may not be under the state it reads."""
    world = World(seed=8)
    others = [f"q{i}" for i in range(paxos.ORIGINS_KEPT)]
    p1 = _accept_only_at_a1_then_others_write(world, others)
    world.run(p1)
    error = error_of(p1)
    assert error.kind is ErrorKind.TIMEOUT and not error.definite
    assert world.committed().value == str(1 + 10 * paxos.ORIGINS_KEPT).encode()


@pytest.mark.parametrize("writes", [1, 4, paxos.ORIGINS_KEPT, 2 * paxos.ORIGINS_KEPT + 1])
def test_a_retry_after_other_writes_not_built_on_its_own_reapplies(writes: int) -> None:
    """p1's accept is refused everywhere (p2 prepared higher); p2's writes do
    not descend from p1's state, and p1's retry can see that however many
    there were (p1's latest change in p2's chain is not this round's, and p1
    never dropped out of it): it applies its change again, on p2's state. The
    stale one-round-trip promise of a node whose key others wrote many times
    is this case."""
    world = World(seed=9)
    p1 = world.propose("p1", paxos.increment(1), use_cache=False)
    world.advance(world.now + 2)  # p1 holds a majority of promises, its accepts are out
    assert p1.phase is Phase.ACCEPTING
    world._queue.clear()  # those accepts are delayed indefinitely...
    for _ in range(writes):
        world.run(world.propose("p2", paxos.increment(10), use_cache=False))
    late = [m for s, _, m in world.sent if s == "p1" and isinstance(m, PaxosAccept)]
    for acceptor in ACCEPTORS:  # ...and now arrive, refused: p2 promised higher
        world.post("p1", acceptor, late[0])
    world.run(p1)
    expected = 10 * writes + 1
    assert result_of(p1) == Incremented(expected, writes + 1)
    if writes <= paxos.ORIGINS_KEPT:
        assert p1.rounds == 2
    # (With more of p2's writes, virtual time passes p1's round timeouts while
    # they run, and p1 retries against them, in vain, meanwhile.)
    assert world.committed().value == str(expected).encode()


def test_duelling_proposers_make_progress_with_back_off() -> None:
    conflicts = 0
    for seed in range(20):
        world = World(seed=seed, delay=(1, 3))
        ops = [
            world.propose(p, paxos.increment(1), use_cache=False, deadline_ms=2000)
            for p in ("p1", "p2", "p3")
        ]
        world.run(*ops)
        values = sorted(result_of(p).value for p in ops)  # type: ignore[attr-defined]
        assert values == [1, 2, 3], (seed, [result_of(p) for p in ops])
        conflicts += sum(p.rounds - 1 for p in ops)
    assert conflicts > 10  # they did duel


def test_one_round_trip_per_operation_after_the_first() -> None:
    world = World(seed=10)
    trips = []
    for _ in range(6):
        proposal = world.propose("p1", paxos.increment(1))
        world.run(proposal)
        trips.append(proposal.round_trips)
    assert trips == [2, 1, 1, 1, 1, 1]
    assert len(world.sent_of(PaxosPrepare, "p1")) == 3  # one prepare round, ever
    assert world.caches["p1"].state.value == b"6"
    read = world.propose("p1", paxos.get())
    world.run(read)
    assert result_of(read) == ReadValue(b"6", 6) and read.round_trips == 1


def test_a_competing_proposer_invalidates_the_one_round_trip_path_safely() -> None:
    world = World(seed=11)
    first = world.propose("p1", paxos.increment(1))
    world.run(first)
    assert "p1" in world.caches
    other = world.propose("p2", paxos.increment(100))  # prepares above p1's promise
    world.run(other)
    assert result_of(other) == Incremented(101, 2)
    again = world.propose("p1", paxos.increment(1))  # with its now stale cache
    world.run(again)
    assert result_of(again) == Incremented(102, 3)
    assert again.round_trips == 3  # refused accept, then prepare + accept
    nxt = world.propose("p1", paxos.increment(1))  # back on the fast path
    world.run(nxt)
    assert nxt.round_trips == 1 and result_of(nxt) == Incremented(103, 4)
    assert world.committed().value == b"103"


def test_a_stale_cache_read_never_returns_the_old_value() -> None:
    world = World(seed=12)
    world.run(world.propose("p1", paxos.set_value(b"a")))
    world.run(world.propose("p2", paxos.set_value(b"b")))
    read = world.propose("p1", paxos.get())
    world.run(read)
    assert result_of(read) == ReadValue(b"b", 2)


def test_a_cache_from_another_ring_epoch_is_not_used() -> None:
    world = World(seed=13)
    world.run(world.propose("p1", paxos.increment(1)))
    cache = world.caches.pop("p1")
    world.caches["p1"] = cache._replace(ring_epoch=EPOCH - 1)
    proposal = world.propose("p1", paxos.increment(1))
    world.run(proposal)
    assert proposal.round_trips == 2 and result_of(proposal) == Incremented(2, 2)


def test_a_delete_leaves_a_tombstone_that_a_lagging_acceptor_cannot_undo() -> None:
    world = World(seed=14)
    world.run(world.propose("p1", paxos.set_value(b"v")))
    world.down.add("a3")
    world.run(world.propose("p1", paxos.set_value(b"w")))  # a3 misses the new value...
    world.run(world.propose("p1", paxos.delete()))  # ...and the delete
    world.down = {"a1"}  # a reader quorum with the lagging a3
    assert world.memory["a3"].state.value == b"v"
    state = world.committed()
    assert state.value is None and state.version == 3  # the old value loses on ballot
    assert world.memory["a3"].state == state  # and the read wrote the tombstone back


def test_an_illegal_transition_raises_and_changes_nothing() -> None:
    world = World(seed=15)
    proposal = world.propose("p1", paxos.get())
    assert proposal.phase is Phase.PREPARING
    with pytest.raises(IllegalTransition):
        proposal.start(world.now)
    assert proposal.phase is Phase.PREPARING
    world.run(proposal)
    assert proposal.tick(world.now + 10_000) == []  # done: inert


def test_rounds_max_bounds_the_retries() -> None:
    world = World(seed=17, config=dataclasses.replace(CONFIG, rounds_max=3))
    world.down |= {"a2", "a3"}
    proposal = world.propose("p1", paxos.set_value(b"x"), deadline_ms=60_000)
    world.run(proposal)
    error = error_of(proposal)
    assert error.kind is ErrorKind.UNAVAILABLE and error.definite and "3 rounds" in error.message
    assert proposal.rounds == 3


def test_unreachable_while_backing_off_is_unavailable_before_any_write() -> None:
    world = World(seed=18)
    world.down |= {"a2", "a3"}
    proposal = world.propose("p1", paxos.increment(1))
    world.advance(CONFIG.round_timeout_ms)  # the first round timed out
    assert proposal.phase is Phase.BACKING_OFF
    assert proposal.wakeup_ms is not None and proposal.wakeup_ms >= world.now
    proposal.unreachable("a2", world.now)
    assert proposal.phase is Phase.BACKING_OFF  # a1 and a3 may still do
    proposal.unreachable("a3", world.now)
    error = error_of(proposal)
    assert error.kind is ErrorKind.UNAVAILABLE and error.definite
    assert proposal.wakeup_ms is None


def test_unreachable_after_a_write_was_sent_keeps_trying_then_times_out() -> None:
    world = World(seed=19)
    proposal = world.propose("p1", paxos.increment(1), deadline_ms=300)
    world.advance(world.now + 2)  # promises in, accepts out
    world._queue.clear()  # the accepts vanish
    world.down |= {"a2", "a3"}
    proposal.unreachable("a2", world.now)
    proposal.unreachable("a3", world.now)
    assert proposal.phase is Phase.BACKING_OFF  # its write may be somewhere: find out
    world.run(proposal)
    error = error_of(proposal)
    assert error.kind is ErrorKind.TIMEOUT and not error.definite
    assert world.now >= 300 - CONFIG.backoff_max_ms


@pytest.mark.parametrize(
    "config",
    [
        PaxosConfig(round_timeout_ms=0),
        PaxosConfig(rounds_max=0),
        PaxosConfig(backoff_base_ms=50, backoff_max_ms=10),
        PaxosConfig(backoff_base_ms=-1),
    ],
)
def test_config_is_validated(config: PaxosConfig) -> None:
    with pytest.raises(ValueError):
        config.validate()


def test_replies_from_strangers_and_other_rounds_are_ignored() -> None:
    world = World(seed=16)
    proposal = world.propose("p1", paxos.set_value(b"x"))
    stale = PaxosPromise(
        src="a1", req_id=proposal.req_id, ring_epoch=EPOCH, ok=False, ballot_counter=99,
        ballot_proposer="p1", promised_counter=200, promised_proposer="zz", error="conflict",
    )  # fmt: skip
    assert proposal.step(stale, 0) == [] and proposal.phase is Phase.PREPARING
    stranger = dataclasses.replace(stale, src="x9", ballot_counter=1)
    assert proposal.step(stranger, 0) == [] and proposal.phase is Phase.PREPARING
    bogus = dataclasses.replace(stale, ballot_counter=1, promised_counter=0)  # "conflict" lower
    assert proposal.step(bogus, 0) == [] and proposal.malformed_replies == 1
    world.run(proposal)
    assert result_of(proposal) == Written(1)


# -- 5. loss, duplication, reordering, crashes -------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_a_counter_over_a_lossy_network_counts_each_increment_once(seed: int) -> None:
    world = World(seed=seed, loss=0.2, dup=0.2, delay=(1, 15))
    ok, unknown = [], 0
    for _ in range(15):
        proposal = world.propose("p1", paxos.increment(1), deadline_ms=300)
        world.run(proposal)
        result = result_of(proposal)
        if isinstance(result, Incremented):
            ok.append(result.value)
        else:
            assert isinstance(result, OpError)
            unknown += not result.definite
    world.loss = world.dup = 0.0
    world.advance(world.now + 100)
    final = int(world.committed().value or b"0")
    assert ok == sorted(set(ok)), ok  # one client: each answer above the last
    assert len(ok) <= final <= len(ok) + unknown
    assert not ok or ok[-1] <= final


def _to_history(value: bytes | None) -> int | None:
    return None if value is None else int(value)


@dataclass
class Client:
    node: str
    ops_left: int
    next_at: int = 0
    invoke: Event | None = None
    proposal: Proposal | None = None


def register_history(
    seed: int,
    *,
    clients: int = 3,
    ops: int = 10,
    loss: float = 0.1,
    dup: float = 0.1,
    crashes: bool = True,
    crash_every_ms: tuple[int, int] = (20, 200),
    down_ms: tuple[int, int] = (5, 120),
    deadline_ms: tuple[int, int] = (60, 400),
    world_options: dict[str, Any] | None = None,
) -> list[Event]:
    """Random reads, writes and CASes from several proposers (one at a time
    each, using their one-round-trip caches) over a lossy, reordering network
    with acceptor crashes; returns the history for check_register."""
    options: dict[str, Any] = {"delay": (1, 12)} | (world_options or {})
    world = World(seed=seed, loss=loss, dup=dup, **options)
    rng = random.Random(seed * 7919 + 1)
    recorder = Recorder()
    pool = [Client(f"p{i}", ops, next_at=rng.randint(0, 20)) for i in range(clients)]
    by_node = {c.node: c for c in pool}

    def done(proposal: Proposal) -> None:
        client = by_node.get(proposal.src)
        if client is None or client.proposal is not proposal:
            return
        assert client.invoke is not None and proposal.outcome is not None
        result = proposal.outcome.result
        if isinstance(result, OpError):
            kind = FAIL if result.definite else INFO
            assert result.kind in (
                (ErrorKind.MISMATCH, ErrorKind.UNAVAILABLE)
                if result.definite
                else (ErrorKind.TIMEOUT,)
            )
            recorder.complete(client.invoke, kind, error=result.code)
        elif isinstance(result, ReadValue):
            recorder.complete(client.invoke, OK, value=_to_history(result.value))
        else:
            assert isinstance(result, Written)
            recorder.complete(client.invoke, OK)
        client.proposal, client.invoke = None, None
        client.next_at = world.now + rng.randint(0, 15)

    world.on_done = done
    crash_at, restart_at, crashed = rng.randint(*crash_every_ms), 0, ""
    while any(c.ops_left or c.proposal for c in pool):
        idle = [c for c in pool if c.proposal is None and c.ops_left]
        t_client = min((c.next_at for c in idle), default=None)
        t_world = world.next_time()
        t_nemesis = (restart_at if crashed else crash_at) if crashes else None
        candidates = [t for t in (t_client, t_world, t_nemesis) if t is not None]
        now = max(world.now, min(candidates))
        if t_nemesis is not None and now >= t_nemesis and t_nemesis <= min(candidates):
            world.advance(now)
            if crashed:
                world.restart(crashed)
                crashed, crash_at = "", now + rng.randint(*crash_every_ms)
            else:
                crashed = rng.choice(ACCEPTORS)
                world.crash(crashed)
                restart_at = now + rng.randint(*down_ms)
            continue
        if t_client is not None and t_client <= min(candidates):
            world.advance(now)
            client = next(c for c in idle if c.next_at == t_client)
            _invoke(world, rng, recorder, client, deadline_ms)
            continue
        world.advance(now)
    return recorder.events


def _invoke(
    world: World,
    rng: random.Random,
    recorder: Recorder,
    client: Client,
    deadline_ms: tuple[int, int],
) -> None:
    client.ops_left -= 1
    index = int(client.node[1:])
    kind = rng.choices(("read", "write", "cas"), weights=(4, 3, 3))[0]
    change: ChangeFunction
    if kind == "read":
        client.invoke = recorder.invoke(index, "read", "k")
        change = paxos.get()
    elif kind == "write":
        value = rng.randint(0, 4)
        client.invoke = recorder.invoke(index, "write", "k", value)
        change = paxos.set_value(str(value).encode())
    else:
        expected, new = rng.choice([None, 0, 1, 2, 3, 4]), rng.randint(0, 4)
        client.invoke = recorder.invoke(index, "cas", "k", [expected, new])
        change = paxos.cas_value(
            None if expected is None else str(expected).encode(), str(new).encode()
        )
    client.proposal = world.propose(
        client.node, change, deadline_ms=rng.randint(*deadline_ms), start=False
    )
    world._after(client.proposal, client.proposal.start(world.now))


def _verdict(events: list[Event]) -> bool | None:
    return check_register(events, max_states=200_000).valid


def test_the_history_harness_records_every_outcome() -> None:
    events = register_history(3)
    types = {e.type for e in events}
    assert {"invoke", OK, FAIL} <= types
    assert sum(e.type == "invoke" for e in events) == 30


SLOW = dataclasses.replace(CONFIG, round_timeout_ms=100, backoff_max_ms=100)
HISTORY_SCENARIOS: dict[str, tuple[int, dict[str, Any]]] = {  # name: (seeds, options)
    # 3 proposers, 10% loss, 10% duplicates, 1-12 ms, an acceptor down at times.
    "lossy-with-crashes": (100, {}),
    # 5 proposers, slow links, acceptors crashing right after they answer.
    "slow-crash-after-reply": (60, {
        "clients": 5,
        "dup": 0.2,
        "deadline_ms": (200, 1500),
        "world_options": {"delay": (1, 30), "crash_after_reply": 0.05, "config": SLOW},
    }),
    # A quarter of all messages lost, fast links: many retries and timeouts.
    "very-lossy": (80, {"clients": 4, "ops": 12, "loss": 0.25, "world_options": {"delay": (1, 4)}}),
}  # fmt: skip


@pytest.mark.parametrize("half", [0, 1])
@pytest.mark.parametrize("scenario", sorted(HISTORY_SCENARIOS))
def test_concurrent_proposers_over_a_faulty_network_are_linearizable(
    scenario: str, half: int
) -> None:
    """A seed sweep (replay one: ``register_history(seed, **options)``)."""
    count, options = HISTORY_SCENARIOS[scenario]
    outcomes: dict[str, int] = {OK: 0, FAIL: 0, INFO: 0}
    for seed in range(half * count // 2, (half + 1) * count // 2):
        events = register_history(seed, **options)
        assert _verdict(events) is True, f"{scenario} seed {seed}: not linearizable"
        for event in events:
            outcomes[event.type] = outcomes.get(event.type, 0) + 1
    assert min(outcomes[OK], outcomes[FAIL], outcomes[INFO]) > 20, outcomes  # a real mix


@pytest.mark.parametrize("seed", range(20))
def test_concurrent_increments_each_count_once(seed: int) -> None:
    """Four proposers increment one counter over a lossy network: every
    answer is a distinct value, and the final count lies between the number
    of acknowledged increments and that plus the unknown ones."""
    world = World(seed=seed, loss=0.15, dup=0.15, delay=(1, 10))
    left = dict.fromkeys(("p1", "p2", "p3", "p4"), 8)
    answers: list[int] = []
    unknown = 0

    def next_op(node: str) -> None:
        if left[node]:
            left[node] -= 1
            world.propose(node, paxos.increment(1), deadline_ms=250)

    def done(proposal: Proposal) -> None:
        nonlocal unknown
        result = result_of(proposal)
        if isinstance(result, Incremented):
            answers.append(result.value)
        else:
            assert isinstance(result, OpError)
            unknown += not result.definite
        next_op(proposal.src)

    world.on_done = done
    for node in left:
        next_op(node)
    while world.proposals:
        world.advance(world.next_time() or world.now)
    world.on_done = None
    final = int(world.committed().value or b"0")
    assert len(answers) == len(set(answers)), sorted(answers)
    assert len(answers) <= final <= len(answers) + unknown, (final, len(answers), unknown)
    assert max(answers, default=0) <= final


def _accept_below_the_promise(
    state: AcceptorState, message: PaxosAccept, *, acceptor: str, epoch: int
) -> tuple[AcceptorState, PaxosAccepted]:
    """BROKEN on purpose: an acceptor that ignores its promise when accepting."""
    if message.ring_epoch == epoch and message.ballot_counter >= 1:
        ballot = Ballot(message.ballot_counter, message.ballot_proposer)
        lowered = AcceptorState(promised=min(state.promised, ballot), accepted=ZERO_BALLOT)
        new, reply = paxos.on_accept(lowered, message, acceptor=acceptor, epoch=epoch)
        if reply.ok:
            return AcceptorState(
                promised=max(new.promised, state.promised), accepted=new.accepted, state=new.state
            ), reply
    return paxos.on_accept(state, message, acceptor=acceptor, epoch=epoch)


def _persist_accepts_only(old: AcceptorState, new: AcceptorState) -> bool:
    """BROKEN on purpose: promises are kept in memory only (lost on a crash)."""
    return new.accepted != old.accepted


def test_the_checker_catches_an_acceptor_that_accepts_below_its_promise() -> None:
    for seed in range(100):
        events = register_history(seed, world_options={"on_accept": _accept_below_the_promise})
        if _verdict(events) is False:
            return
    pytest.fail("no seed exposed the broken acceptor: the linearizability test does not bite")


def _two_cas_across_a_crash(persist: Persist) -> list[Event]:
    """p1 and p2 both CAS from absent. p1's accepts are held back while p2
    gets promises from a2 and a3; a2 crashes and restarts; p1's accepts then
    reach a1 and a2, p2's reach a2 and a3; finally p3 reads."""
    world = World(seed=0, persist=persist)
    recorder = Recorder()
    first = recorder.invoke(1, "cas", "k", [None, 1])
    p1 = world.propose("p1", paxos.cas_value(None, b"1"), use_cache=False)
    world.advance(world.now + 2)
    assert p1.phase is Phase.ACCEPTING
    held_p1, world._queue = world._queue, []
    second = recorder.invoke(2, "cas", "k", [None, 2])
    world.blocked.add(("p2", "a1"))
    p2 = world.propose("p2", paxos.cas_value(None, b"2"), use_cache=False)
    world.advance(world.now + 2)
    assert p2.phase is Phase.ACCEPTING
    held_p2, world._queue = world._queue, []
    world.crash("a2")
    world.restart("a2")
    for item in held_p1:
        if item[3] in ("a1", "a2"):
            heapq.heappush(world._queue, (world.now + 1, *item[1:]))
    world.advance(world.now + 3)
    for item in held_p2:
        heapq.heappush(world._queue, (world.now + 1, *item[1:]))
    world.run(p1, p2)
    for invoke, proposal in ((first, p1), (second, p2)):
        result = result_of(proposal)
        outcome = (
            OK if isinstance(result, Written) else FAIL if error_of(proposal).definite else INFO
        )
        recorder.complete(invoke, outcome)
    read = recorder.invoke(3, "read", "k")
    recorder.complete(read, OK, value=_to_history(world.committed().value))
    return recorder.events


def test_the_checker_catches_an_acceptor_that_forgets_its_promises_on_a_crash() -> None:
    assert _verdict(_two_cas_across_a_crash(persist_everything)) is True
    broken = _two_cas_across_a_crash(_persist_accepts_only)
    assert [e.type for e in broken if e.f == "cas"] == ["invoke", "invoke", OK, OK]
    assert _verdict(broken) is False  # both CASes from absent succeeded


def test_a_retry_without_the_origin_check_double_applies_and_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Retrying a failed round by simply applying the change again (blind to
    whether the earlier accept took effect) counts some increments twice and
    makes histories non-linearizable: the tests above would catch it."""
    monkeypatch.setattr(RegisterState, "made_by", lambda self, origin, version: False)
    with pytest.raises(AssertionError):
        test_concurrent_increments_each_count_once(0)
    assert _verdict(register_history(4)) is False
