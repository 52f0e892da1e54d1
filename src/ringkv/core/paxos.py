"""CASPaxos: one linearizable register per key, without a log.

Theory of operation (Rystsov 2018, "CASPaxos: Replicated State Machines
without logs", §2). A key's register lives on its N *home* replicas, its
acceptors (never fallbacks: a fallback's promise would not intersect a later
majority of homes). A client operation is a change function ``f`` of the
register's state, run by one *proposer* in rounds of two phases:

1. **prepare** with a ballot ``b`` to every acceptor; an acceptor that has
   promised nothing higher promises ``b`` and returns what it has accepted;
2. on a majority of promises, take the state accepted with the highest
   ballot (or the empty initial state), compute ``f(state)`` and **accept**
   it with ``b`` at every acceptor; an acceptor that promised nothing higher
   than ``b`` stores it. A majority of accepts commits the new state.

A read is a full round that writes the state back unchanged (§2.1: otherwise
a read could return a state accepted by a minority and a later read miss it).
So is an operation that refuses (a compare-and-set that did not match): its
answer is about the state it saw, which must be committed too.

Ballots are ``(counter, proposer)``, ordered lexicographically; a conflict
reply carries the acceptor's promise so the proposer's next ballot jumps
past it (``BallotClock``). Duelling proposers back off for a random time
(``backoff_ms``, full jitter) and retry until the operation's deadline.

**One round trip (§2.2.1).** Every accept also carries the promise for the
proposer's *next* ballot. After a successful round the proposer keeps
``(next ballot, committed state)`` for the key (``LeaderCache``); its next
operation on the key skips prepare and sends the accept at once. Any other
proposer's prepare raises the acceptors' promise, the accept meets a
conflict, and the proposer falls back to the two phases.

**Exactly once, and what a failure means (STYLE.md rule 11).** A round that
fails after its accept was sent may still take effect later: an acceptor may
hold it, and a later proposer that sees it with the highest ballot builds on
it. Applying ``f`` again in the next round could then apply it twice. So
every change increments ``version`` and every state carries ``origins``: for
each of the last ``ORIGINS_KEPT`` proposers to change the key, the ballot of
its latest change in the chain (newest first), and a ``horizon``, at least
the newest ballot ever dropped from that list. A proposer makes one state per
ballot and runs one operation per key at a time, so a retry round that reads
state X can tell, for each changed state S this operation proposed before,
whether S is X or an ancestor of X (``RegisterState.made_by``: X's entry for
this proposer is S's round): then S took effect; the round commits X and
answers what S's round computed. When none is, ``f`` runs again on X; once
that round commits, the older accepts (lower ballots) can never be chosen.
Only when the proposer's entry was pushed out by ``ORIGINS_KEPT`` others
(S's ballot at or below the horizon) can nobody tell, and the answer is
TIMEOUT (unknown). The operation ends:

* with ``f``'s result when a round commits (a MISMATCH is definite);
* ``UNAVAILABLE`` (definite, no effect) when it gives up and no accept
  carrying a *changed* state was ever sent for it, in particular as soon as
  fewer than a majority of acceptors can answer (known unreachable, or
  refusing the ring epoch) before any such accept;
* ``TIMEOUT`` (unknown) when it gives up after one was sent.

**Deletes** write a tombstone state (value ``None``, version incremented);
the acceptor record is never removed, so a lagging acceptor's old value
cannot come back (purging tombstones is out of scope).

**Durability.** An acceptor's reply is a promise about its future behaviour:
the caller must persist ``on_prepare``'s and ``on_accept``'s new state
before the reply leaves (send after persist, like the Node's
``after_commit``). A ballot must never be reused for a different state, so a
proposer identity must not restart its counter: the Node gives each run
its own proposer id (``<node>~<run>``, the run number persisted at start).

Everything here is pure: no I/O, no clock (``now_ms`` is passed in), and the
only randomness is the ``random.Random`` the caller gives for back-off.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import partial
from itertools import chain
from typing import NamedTuple, TypeAlias, assert_never, cast

import msgpack

from ringkv.core import errors
from ringkv.core.clocks import LamportClock
from ringkv.core.errors import ErrorKind, OpError
from ringkv.core.messages import (
    PaxosAccept,
    PaxosAccepted,
    PaxosMessage,
    PaxosPrepare,
    PaxosPromise,
)
from ringkv.core.ops import INT64_MAX, INT64_MIN, parse_int64

__all__ = [
    "ACCEPTOR_STATE_FORMAT",
    "EMPTY_STATE",
    "ORIGINS_KEPT",
    "REFUSED_CONFLICT",
    "REFUSED_EPOCH",
    "REFUSED_INVALID",
    "ZERO_BALLOT",
    "AcceptorState",
    "AcceptorStateError",
    "Ballot",
    "BallotClock",
    "Change",
    "ChangeFunction",
    "Deleted",
    "IllegalTransition",
    "Incremented",
    "LeaderCache",
    "LockGranted",
    "LockReleased",
    "PaxosAccept",
    "PaxosAccepted",
    "PaxosConfig",
    "PaxosMessage",
    "PaxosPrepare",
    "PaxosPromise",
    "Phase",
    "Proposal",
    "ProposalOutcome",
    "ReadValue",
    "RegisterState",
    "Send",
    "Written",
    "backoff_ms",
    "cas_value",
    "cas_version",
    "delete",
    "get",
    "increment",
    "lock_acquire",
    "lock_release",
    "majority",
    "on_accept",
    "on_prepare",
    "origins_from_wire",
    "origins_to_wire",
    "set_if_absent",
    "set_value",
]


# -- ballots and states ----------------------------------------------------------


class Ballot(NamedTuple):
    """A round's number: counter first, then the proposer id as a tie-break."""

    counter: int
    proposer: str


ZERO_BALLOT = Ballot(0, "")  # below every real ballot (their counters start at 1)


class RegisterState(NamedTuple):
    """The register's value as acceptors store it.

    ``value`` None means absent (never written, or deleted: a tombstone).
    ``version`` counts the changes committed to the key (0 before the first).
    ``expires_at_ms`` 0 is never; otherwise a reader past it sees the key
    absent. ``origins``: for each of the last ``ORIGINS_KEPT`` proposers to
    change the key, the ballot of its latest change in this state's chain,
    newest first (so ``origins[0]`` made this version). ``horizon``: at least
    the newest ballot ever dropped from ``origins`` (ZERO_BALLOT: none ever
    was). A read writes a state back unchanged, origins included."""

    value: bytes | None = None
    version: int = 0
    expires_at_ms: int = 0
    origins: tuple[Ballot, ...] = ()
    horizon: Ballot = ZERO_BALLOT

    @property
    def origin(self) -> Ballot:
        """The ballot of the round that made this version."""
        return self.origins[0] if self.origins else ZERO_BALLOT

    def made_by(self, origin: Ballot, version: int) -> bool | None:
        """Whether the change of version ``version`` made by round ``origin``
        is in this state's chain: True, False, or None (cannot tell).

        A proposer makes one state per ballot, and a chain keeps its
        proposer's entry at its latest change: if that state is in the chain,
        the entry is its ballot or a later one of the same proposer; if the
        entry was dropped, ``horizon`` is at least its ballot."""
        if self.version < version:
            return False  # the chain has not reached that version
        for ballot in self.origins:
            if ballot.proposer == origin.proposer:
                return ballot == origin
        return False if origin > self.horizon else None

    def successor(self, value: bytes | None, expires_at_ms: int, origin: Ballot) -> RegisterState:
        """The next version, made by round ``origin``."""
        assert origin > self.origin
        origins = (origin, *(b for b in self.origins if b.proposer != origin.proposer))
        horizon = self.horizon
        if len(origins) > ORIGINS_KEPT:
            horizon = max(horizon, origins[ORIGINS_KEPT])  # newest first: the newest dropped
            origins = origins[:ORIGINS_KEPT]
        return RegisterState(
            value=value,
            version=self.version + 1,
            expires_at_ms=expires_at_ms if value is not None else 0,
            origins=origins,
            horizon=horizon,
        )

    def live_value(self, now_ms: int) -> bytes | None:
        """The value a reader at ``now_ms`` sees (record.Version.is_live's rule)."""
        if self.value is None or (self.expires_at_ms and self.expires_at_ms < now_ms):
            return None
        return self.value


EMPTY_STATE = RegisterState()
# A Ballot from a checked (counter, proposer) pair, without the NamedTuple's
# Python-level __new__ (origins_from_wire makes several per accept).
_ballot = cast(Callable[[tuple[int, str]], Ballot], partial(tuple.__new__, Ballot))
# One packer, reused (packb builds a new one per call); the core runs on one thread.
_pack = msgpack.Packer(use_bin_type=True).pack
# Proposers whose latest change a state remembers: a retry can tell whether
# its own earlier accept took effect however many changes others made since,
# unless this many other proposers changed the key after it (then TIMEOUT).
ORIGINS_KEPT = 8


def origins_to_wire(origins: tuple[Ballot, ...], horizon: Ballot) -> list[str | int]:
    """``[counter, proposer, ..., horizon counter, horizon proposer]``, origins
    newest first; ``[]`` for a state never changed (no origins)."""
    if not origins:
        assert horizon == ZERO_BALLOT
        return []
    flat: list[str | int] = list(chain.from_iterable(origins))  # a Ballot is a pair
    flat += horizon
    return flat


def origins_from_wire(flat: object, version: object) -> tuple[tuple[Ballot, ...], Ballot] | None:
    """The inverse of ``origins_to_wire``, or None unless well-formed: for
    version 0 nothing; else 1 to ``min(version, ORIGINS_KEPT)`` real ballots
    of distinct proposers, strictly decreasing, then a horizon no newer than
    the last of them (ZERO_BALLOT, or a real ballot). (On every accept and
    every stored row read: one plain loop.)"""
    if type(flat) is not list or type(version) is not int or version < 0:
        return None
    if version == 0:
        return ((), ZERO_BALLOT) if not flat else None
    pairs_count, odd = divmod(len(flat), 2)
    if odd or not 2 <= pairs_count <= min(version, ORIGINS_KEPT) + 1:
        return None
    origins: list[Ballot] = []
    proposers: set[str] = set()
    previous: Ballot | None = None
    pairs = iter(flat)
    for counter, proposer in zip(pairs, pairs, strict=True):  # an even length, checked above
        if not (
            type(counter) is int
            and 1 <= counter <= INT64_MAX
            and type(proposer) is str
            and proposer
        ):
            if (
                len(origins) == pairs_count - 1
                and type(counter) is int
                and counter == 0
                and type(proposer) is str
                and not proposer
            ):
                return tuple(origins), ZERO_BALLOT  # the horizon: nothing ever dropped
            return None
        ballot = _ballot((counter, proposer))
        if len(origins) == pairs_count - 1:  # the horizon
            return (tuple(origins), ballot) if ballot <= origins[-1] else None
        if (previous is not None and not ballot < previous) or proposer in proposers:
            return None
        origins.append(ballot)
        proposers.add(proposer)
        previous = ballot
    return None  # unreachable: the last pair is the horizon


def _window_from_wire(flat: object, version: object) -> tuple[Ballot, ...] | None:
    """Format 1's origins: ``min(version, 8)`` real ballots, strictly
    decreasing (the rounds of the last versions), or None."""
    if type(flat) is not list or type(version) is not int or version < 0:
        return None
    if len(flat) != 2 * min(version, 8):
        return None
    window: list[Ballot] = []
    pairs = iter(flat)
    for counter, proposer in zip(pairs, pairs, strict=True):
        if not (_is_natural(counter) and counter >= 1 and type(proposer) is str and proposer):
            return None
        ballot = Ballot(counter, proposer)
        if window and not ballot < window[-1]:
            return None
        window.append(ballot)
    return tuple(window)


def _origins_from_window(
    window: tuple[Ballot, ...], version: int
) -> tuple[tuple[Ballot, ...], Ballot]:
    """Origins and horizon from the format 1 window (the ballots of the last
    ``min(version, 8)`` versions): each proposer's newest entry; when older
    versions had been dropped, the horizon is the oldest ballot kept (every
    dropped one is older)."""
    newest: dict[str, Ballot] = {}
    for ballot in window:
        newest.setdefault(ballot.proposer, ballot)  # newest first: the first is the latest
    dropped = version > len(window)
    return tuple(newest.values())[:ORIGINS_KEPT], window[-1] if dropped else ZERO_BALLOT


class AcceptorStateError(ValueError):
    """Stored acceptor state that could not be decoded."""


# 2: origins as the last change of each of the last proposers, and a horizon
# (origins_to_wire). 1, still read: origins as the window of the ballots of
# the last 8 versions.
ACCEPTOR_STATE_FORMAT = 2
_PACKED_FIELDS = 9


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptorState:
    """One acceptor's state for one key: what it promised, what it accepted."""

    promised: Ballot = ZERO_BALLOT
    accepted: Ballot = ZERO_BALLOT
    state: RegisterState = EMPTY_STATE

    def __post_init__(self) -> None:
        assert self.accepted <= self.promised, "an acceptor promises what it accepts"
        assert self.state.origin <= self.accepted, "a state is accepted at or after its round"

    def pack(self) -> bytes:
        """One msgpack row, like ``record.pack_record``."""
        s = self.state
        row = [
            ACCEPTOR_STATE_FORMAT,
            *self.promised,
            *self.accepted,
            s.value,
            s.version,
            s.expires_at_ms,
            origins_to_wire(s.origins, s.horizon),
        ]
        packed: bytes = _pack(row)
        return packed

    @classmethod
    def unpack(cls, data: bytes) -> AcceptorState:
        """Decode ``pack``'s output; anything else raises AcceptorStateError."""
        try:
            row = msgpack.unpackb(data, raw=False, use_list=True)
        except (ValueError, msgpack.UnpackException) as exc:
            raise AcceptorStateError(f"undecodable acceptor state: {exc}") from exc
        if not isinstance(row, list) or len(row) != _PACKED_FIELDS:
            raise AcceptorStateError("acceptor state is not a row of 9 fields")
        fmt, p_counter, p_node, a_counter, a_node, value, version, expires, flat = row
        if type(fmt) is not int or fmt not in (1, ACCEPTOR_STATE_FORMAT):
            raise AcceptorStateError(f"acceptor state has an unknown format {fmt!r}")
        if not (
            _is_ballot(p_counter, p_node)
            and _is_ballot(a_counter, a_node)
            and (value is None or type(value) is bytes)
            and _is_natural(version)
            and _is_natural(expires)
        ):
            raise AcceptorStateError("acceptor state: a field has the wrong type")
        if fmt == ACCEPTOR_STATE_FORMAT:
            origins = origins_from_wire(flat, version)
        else:
            window = _window_from_wire(flat, version)
            origins = None if window is None else _origins_from_window(window, version)
        if origins is None:
            raise AcceptorStateError("acceptor state: malformed origins")
        state = RegisterState(value, version, expires, *origins)
        promised, accepted = Ballot(p_counter, p_node), Ballot(a_counter, a_node)
        if not state.origin <= accepted <= promised:
            raise AcceptorStateError("acceptor state: ballots out of order")
        return cls(promised=promised, accepted=accepted, state=state)


def _is_natural(value: object) -> bool:
    return type(value) is int and 0 <= value <= INT64_MAX


def _is_ballot(counter: object, proposer: object) -> bool:
    return _is_natural(counter) and type(proposer) is str


class BallotClock:
    """Hands out a proposer's ballots: counters above every ballot it has seen
    (a Lamport clock, ``clocks.LamportClock``). One per proposer identity,
    shared by all its keys; ``proposer`` must be unique per run (module
    docstring: a ballot is never reused)."""

    __slots__ = ("_clock", "proposer")

    def __init__(self, proposer: str, counter: int = 0) -> None:
        assert proposer, "a proposer id is not empty (the empty one is ZERO_BALLOT's)"
        self.proposer = proposer
        self._clock = LamportClock(counter)

    def next(self) -> Ballot:
        return Ballot(self._clock.tick(), self.proposer)

    def observe(self, ballot: Ballot) -> None:
        """Move past a ballot seen in a reply, so the next one is above it."""
        if ballot.counter > self._clock.value:
            self._clock.observe(ballot.counter)

    @property
    def counter(self) -> int:
        return self._clock.value


def majority(acceptor_count: int) -> int:
    """Acceptors that must answer: N // 2 + 1.

    >>> [majority(n) for n in (1, 2, 3, 4, 5)]
    [1, 2, 2, 3, 3]
    """
    assert acceptor_count >= 1
    return acceptor_count // 2 + 1


def backoff_ms(attempt: int, rng: random.Random, *, base_ms: int, max_ms: int) -> int:
    """How long to wait before retry ``attempt`` (0 for the first): uniform in
    ``[0, min(max_ms, base_ms * 2**attempt)]``, "full jitter", so duelling
    proposers soon stop meeting."""
    assert attempt >= 0 and base_ms >= 0 and max_ms >= 0
    ceiling = min(max_ms, base_ms << min(attempt, 32))
    return rng.randint(0, ceiling)


# -- messages (core/messages.py, tags 14-17 in codec.py) ----------------------------

REFUSED_CONFLICT = "conflict"  # a higher ballot was promised: the reply carries it
REFUSED_EPOCH = "epoch"  # the message's ring epoch is not the acceptor's
REFUSED_INVALID = "invalid"  # a malformed request (or, at a Node, not its key to accept)

Send: TypeAlias = tuple[str, PaxosPrepare | PaxosAccept]  # (acceptor, message)


# -- the acceptor ----------------------------------------------------------------


def on_prepare(
    state: AcceptorState, message: PaxosPrepare, *, acceptor: str, epoch: int
) -> tuple[AcceptorState, PaxosPromise]:
    """Phase 1 at an acceptor. Persist the returned state (when it is not
    ``state`` itself) before sending the reply."""
    ballot = Ballot(message.ballot_counter, message.ballot_proposer)

    def refuse(error: str) -> tuple[AcceptorState, PaxosPromise]:
        return state, PaxosPromise(
            src=acceptor,
            req_id=message.req_id,
            ring_epoch=epoch,
            ok=False,
            ballot_counter=ballot.counter,
            ballot_proposer=ballot.proposer,
            promised_counter=state.promised.counter,
            promised_proposer=state.promised.proposer,
            error=error,
        )

    if message.ring_epoch != epoch:
        return refuse(REFUSED_EPOCH)
    if ballot.counter < 1 or not ballot.proposer:
        return refuse(REFUSED_INVALID)
    if ballot < state.promised:
        return refuse(REFUSED_CONFLICT)
    # Equal: a duplicate of the promise already made (ballots are never
    # reused), answered again with no change.
    new = state if ballot == state.promised else _replace_promised(state, ballot)
    s = new.state
    return new, PaxosPromise(
        src=acceptor,
        req_id=message.req_id,
        ring_epoch=epoch,
        ok=True,
        ballot_counter=ballot.counter,
        ballot_proposer=ballot.proposer,
        promised_counter=new.promised.counter,
        promised_proposer=new.promised.proposer,
        accepted_counter=new.accepted.counter,
        accepted_proposer=new.accepted.proposer,
        value=s.value,
        version=s.version,
        expires_at_ms=s.expires_at_ms,
        origins=origins_to_wire(s.origins, s.horizon),
    )


def _replace_promised(state: AcceptorState, promised: Ballot) -> AcceptorState:
    return AcceptorState(promised=promised, accepted=state.accepted, state=state.state)


def on_accept(
    state: AcceptorState, message: PaxosAccept, *, acceptor: str, epoch: int
) -> tuple[AcceptorState, PaxosAccepted]:
    """Phase 2 at an acceptor (with §2.2.1's piggybacked promise). Persist the
    returned state (when it is not ``state`` itself) before sending the reply."""
    ballot = Ballot(message.ballot_counter, message.ballot_proposer)
    proposed = _accepted_state(message, ballot)
    new = state
    if message.ring_epoch != epoch:
        error = REFUSED_EPOCH
    elif proposed is None:
        error = REFUSED_INVALID
    elif ballot == state.accepted:
        error = ""  # a duplicate: this very state was accepted at this ballot
    elif ballot < state.promised:
        error = REFUSED_CONFLICT
    else:
        next_ballot = Ballot(message.next_counter, ballot.proposer)
        new = AcceptorState(promised=max(ballot, next_ballot), accepted=ballot, state=proposed)
        error = ""
    return new, PaxosAccepted(
        src=acceptor,
        req_id=message.req_id,
        ring_epoch=epoch,
        ok=not error,
        ballot_counter=ballot.counter,
        ballot_proposer=ballot.proposer,
        promised_counter=new.promised.counter,
        promised_proposer=new.promised.proposer,
        error=error,
    )


def _accepted_state(message: PaxosAccept, ballot: Ballot) -> RegisterState | None:
    """The state an accept proposes, or None when the accept is malformed."""
    state = _message_state(message)
    if (
        state is None
        or ballot.counter < 1
        or not ballot.proposer
        or not (message.next_counter == 0 or message.next_counter > ballot.counter)
        or not state.origin <= ballot
    ):
        return None
    return state


def _message_state(message: PaxosAccept | PaxosPromise) -> RegisterState | None:
    """The state a message carries, or None when it is malformed."""
    origins = origins_from_wire(message.origins, message.version)
    if origins is None or not _is_natural(message.expires_at_ms):
        return None
    return RegisterState(message.value, message.version, message.expires_at_ms, *origins)


# -- change functions --------------------------------------------------------------


class Change(NamedTuple):
    """What a change function decided: the client's answer, and whether to
    write ``value`` (None: a tombstone) with ``expires_at_ms`` as the next
    version. ``write`` false: the state read is written back unchanged."""

    result: object
    write: bool = False
    value: bytes | None = None
    expires_at_ms: int = 0


# (current state, the proposer's now_ms) -> Change. Pure and deterministic.
ChangeFunction: TypeAlias = Callable[[RegisterState, int], Change]


class ReadValue(NamedTuple):
    value: bytes | None  # None: absent
    version: int


class Written(NamedTuple):
    version: int  # the new version


class Deleted(NamedTuple):
    existed: bool
    version: int  # the tombstone's version, or the unchanged one when absent


class Incremented(NamedTuple):
    value: int
    version: int


class LockGranted(NamedTuple):
    token: int  # the fencing token: the lock key's version, strictly increasing
    expires_at_ms: int


class LockReleased(NamedTuple):
    version: int


def _mismatch(message: str) -> OpError:
    return OpError(ErrorKind.MISMATCH, message, code="MISMATCH")


def get() -> ChangeFunction:
    """Read: a full round that writes the state back (§2.1)."""

    def change(state: RegisterState, now_ms: int) -> Change:
        return Change(ReadValue(state.live_value(now_ms), state.version))

    return change


def set_value(value: bytes, expires_at_ms: int = 0) -> ChangeFunction:
    """SET: store ``value`` (a plain SET drops any earlier expiry)."""
    assert expires_at_ms >= 0

    def change(state: RegisterState, now_ms: int) -> Change:
        return Change(Written(state.version + 1), True, value, expires_at_ms)

    return change


def delete() -> ChangeFunction:
    """DEL: write a tombstone; nothing to do when the key is absent."""

    def change(state: RegisterState, now_ms: int) -> Change:
        if state.live_value(now_ms) is None:
            return Change(Deleted(False, state.version))
        return Change(Deleted(True, state.version + 1), True, None)

    return change


def cas_value(expected: bytes | None, new: bytes | None) -> ChangeFunction:
    """Compare-and-set on the value (``None``: absent); ``new`` None deletes.
    MISMATCH (definite) when the value is not ``expected``."""

    def change(state: RegisterState, now_ms: int) -> Change:
        if state.live_value(now_ms) != expected:
            return Change(_mismatch("the value is not the expected one"))
        return Change(Written(state.version + 1), True, new)

    return change


def cas_version(expected_version: int, new: bytes | None) -> ChangeFunction:
    """Compare-and-set on the version; MISMATCH when it is another."""

    def change(state: RegisterState, now_ms: int) -> Change:
        if state.version != expected_version:
            return Change(_mismatch(f"the version is {state.version}, not {expected_version}"))
        return Change(Written(state.version + 1), True, new)

    return change


def set_if_absent(value: bytes, expires_at_ms: int = 0) -> ChangeFunction:
    """SETNX: store ``value`` only when the key is absent; else MISMATCH."""

    def change(state: RegisterState, now_ms: int) -> Change:
        if state.live_value(now_ms) is not None:
            return Change(_mismatch("the key exists"))
        return Change(Written(state.version + 1), True, value, expires_at_ms)

    return change


def increment(delta: int) -> ChangeFunction:
    """INCRBY: the value as a Redis integer (ASCII decimal, 64-bit; absent is
    0); the expiry is kept. A non-integer or an overflow is Redis's definite
    error and changes nothing."""
    assert INT64_MIN <= delta <= INT64_MAX

    def change(state: RegisterState, now_ms: int) -> Change:
        current = state.live_value(now_ms)
        base = 0 if current is None else parse_int64(current)
        if base is None:
            return Change(errors.NOT_INTEGER)
        total = base + delta
        if not INT64_MIN <= total <= INT64_MAX:
            return Change(errors.OVERFLOW)
        expires = state.expires_at_ms if current is not None else 0
        return Change(Incremented(total, state.version + 1), True, str(total).encode(), expires)

    return change


def lock_acquire(owner: str, ttl_ms: int) -> ChangeFunction:
    """Take the lock (a key whose value is the owner, whose expiry is the
    lease's end) when it is free, expired, or already ``owner``'s (a renewal).
    The answer's fencing token is the new version: it grows with every change
    to the key, so a token is never handed out twice, expiry or not. Expiry is
    judged by the proposer's ``now_ms`` (docs/paxos.md: bounded clock drift
    for the lease, fencing tokens for safety). MISMATCH when held by another."""
    assert owner and ttl_ms >= 1
    name = owner.encode()

    def change(state: RegisterState, now_ms: int) -> Change:
        holder = state.live_value(now_ms)
        if holder is not None and holder != name:
            return Change(_mismatch("the lock is held by another owner"))
        expires = now_ms + ttl_ms
        return Change(LockGranted(state.version + 1, expires), True, name, expires)

    return change


def lock_release(owner: str | None, token: int) -> ChangeFunction:
    """Release the lock ``owner`` took with ``token`` (a tombstone). Allowed
    after expiry too while nobody took it since (the version is still
    ``token``); MISMATCH otherwise. ``owner`` None: whoever holds it with
    ``token`` (a token names one grant: versions are never reused)."""
    name = owner.encode() if owner is not None else None

    def change(state: RegisterState, now_ms: int) -> Change:
        held = state.value is not None and (name is None or state.value == name)
        if not held or state.version != token:
            return Change(_mismatch("the lock is not held with this token"))
        return Change(LockReleased(state.version + 1), True, None)

    return change


# -- the proposer ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PaxosConfig:
    """Proposer knobs (STYLE.md rule 10). The deadline is per operation."""

    # A round without its quorum by then is abandoned and retried: a few LAN
    # round trips, well under the node's request_timeout_ms (2 s).
    round_timeout_ms: int = 200
    # Back-off before retry k: uniform in [0, min(backoff_max_ms, base * 2**k)].
    backoff_base_ms: int = 4
    backoff_max_ms: int = 200
    # Rounds per operation, then it gives up as at its deadline.
    rounds_max: int = 32

    def validate(self) -> None:
        if self.round_timeout_ms < 1 or self.rounds_max < 1:
            raise ValueError("round_timeout_ms and rounds_max must be at least 1")
        if not 0 <= self.backoff_base_ms <= self.backoff_max_ms:
            raise ValueError("0 <= backoff_base_ms <= backoff_max_ms")


class LeaderCache(NamedTuple):
    """What a proposer keeps after a successful round for its next operation
    on the key: the ballot its acceptors already promised, and the state they
    accepted (§2.2.1). Use it once (pop it), and drop it on a ring change."""

    ballot: Ballot
    state: RegisterState
    ring_epoch: int


class ProposalOutcome(NamedTuple):
    """``result``: the change's answer, or an ``OpError`` (UNAVAILABLE is
    definite, TIMEOUT unknown). ``state``: the committed state, if any."""

    result: object
    state: RegisterState | None = None


class Phase(Enum):
    NEW = "new"
    PREPARING = "preparing"
    ACCEPTING = "accepting"
    BACKING_OFF = "backing_off"
    DONE = "done"


_TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.NEW: frozenset((Phase.PREPARING, Phase.ACCEPTING, Phase.DONE)),
    Phase.PREPARING: frozenset((Phase.ACCEPTING, Phase.BACKING_OFF, Phase.DONE)),
    Phase.ACCEPTING: frozenset((Phase.BACKING_OFF, Phase.DONE)),
    Phase.BACKING_OFF: frozenset((Phase.PREPARING, Phase.DONE)),
    Phase.DONE: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A proposal was driven out of order (a bug of its caller)."""


class Proposal:
    """One client operation on one key, from its first prepare to its answer.

    Drive it with ``start``, ``step`` (each reply), ``tick`` (at
    ``wakeup_ms``) and ``unreachable`` (an acceptor the caller knows is down);
    each returns the messages to send now. ``outcome`` is set once ``phase``
    is DONE; ``leader_cache`` then holds what the next operation on the key
    may use for one round trip."""

    def __init__(
        self,
        *,
        src: str,
        req_id: int,
        ring_epoch: int,
        keyspace: str,
        key: bytes,
        acceptors: Sequence[str],
        change: ChangeFunction,
        deadline_ms: int,
        ballots: BallotClock,
        rng: random.Random,
        config: PaxosConfig | None = None,
        cached: LeaderCache | None = None,
    ) -> None:
        assert acceptors and len(set(acceptors)) == len(acceptors), "distinct acceptors"
        self.config = config or PaxosConfig()
        self.config.validate()
        self.src, self.req_id, self.ring_epoch = src, req_id, ring_epoch
        self.keyspace, self.key = keyspace, key
        self.acceptors = tuple(acceptors)
        self.needed = majority(len(acceptors))
        self.change = change
        self.deadline_ms = deadline_ms
        self.ballots, self.rng = ballots, rng
        self.cached = cached if cached is not None and cached.ring_epoch == ring_epoch else None
        self.phase = Phase.NEW
        self.outcome: ProposalOutcome | None = None
        self.leader_cache: LeaderCache | None = None
        self.rounds = 0  # rounds started (a fast accept counts as one)
        self.round_trips = 0  # broadcasts sent: one per phase of every round
        self.malformed_replies = 0
        self._ballot = ZERO_BALLOT
        self._next = ZERO_BALLOT
        self._round_started_ms = 0
        self._retry_at_ms = 0
        self._promises: dict[str, tuple[Ballot, RegisterState]] = {}
        self._accepted_by: dict[str, None] = {}
        self._refused: dict[str, None] = {}  # this round: epoch or invalid
        self._down: dict[str, None] = {}  # the caller says unreachable
        self._proposed = EMPTY_STATE
        self._result: object = None
        # (origin ballot, version) -> answer, for each changed state sent.
        self._mine: dict[tuple[Ballot, int], object] = {}

    # -- inputs -----------------------------------------------------------------

    def start(self, now_ms: int) -> list[Send]:
        """Begin: the first prepare, or with a cache the accept right away."""
        if self._reachable() < self.needed:
            self._to(Phase.DONE)
            self.outcome = ProposalOutcome(self._give_up_error("too few acceptors reachable"))
            return []
        if self.cached is None:
            self._to(Phase.PREPARING)
            return self._prepare(now_ms)
        self._to(Phase.ACCEPTING)
        self._begin_round(now_ms, self.cached.ballot)
        self.ballots.observe(self.cached.ballot)
        return self._accept(now_ms, *self._apply(self.cached.state, now_ms))

    def step(self, reply: PaxosPromise | PaxosAccepted, now_ms: int) -> list[Send]:
        """One acceptor's reply. Replies to other rounds, from strangers, or
        after the end are ignored."""
        if self.phase is Phase.DONE or reply.src not in self.acceptors:
            return []
        if Ballot(reply.ballot_counter, reply.ballot_proposer) != self._ballot:
            return []
        match reply:
            case PaxosPromise():
                if self.phase is Phase.PREPARING:
                    return self._on_promise(reply, now_ms)
            case PaxosAccepted():
                if self.phase is Phase.ACCEPTING:
                    return self._on_accepted(reply, now_ms)
            case _:
                assert_never(reply)
        return []

    def tick(self, now_ms: int) -> list[Send]:
        """Time passed: the deadline, a round's timeout, the end of a back-off."""
        if self.phase is Phase.DONE or self.phase is Phase.NEW:
            return []
        if now_ms >= self.deadline_ms:
            return self._finish(self._give_up_error("deadline passed"))
        if self.phase is Phase.BACKING_OFF:
            if now_ms < self._retry_at_ms:
                return []
            self._to(Phase.PREPARING)
            return self._prepare(now_ms)
        if now_ms - self._round_started_ms >= self.config.round_timeout_ms:
            return self._fail_round(now_ms, excluded=False)
        return []

    def unreachable(self, acceptor: str, now_ms: int) -> list[Send]:
        """The caller knows ``acceptor`` cannot answer (its failure detector,
        a refused connection). An answer from it later is still counted."""
        if acceptor not in self.acceptors or acceptor in self._down:
            return []
        self._down[acceptor] = None
        if self.phase in (Phase.PREPARING, Phase.ACCEPTING) and self._impossible():
            return self._fail_round(now_ms, excluded=True)
        if self.phase is Phase.BACKING_OFF and self._reachable() < self.needed and not self._mine:
            return self._finish(self._give_up_error("too few acceptors reachable"))
        return []

    @property
    def wakeup_ms(self) -> int | None:
        """When ``tick`` has something to do (None once done)."""
        match self.phase:
            case Phase.DONE | Phase.NEW:
                return None
            case Phase.BACKING_OFF:
                return min(self.deadline_ms, self._retry_at_ms)
            case Phase.PREPARING | Phase.ACCEPTING:
                return min(self.deadline_ms, self._round_started_ms + self.config.round_timeout_ms)
            case _:
                assert_never(self.phase)

    @property
    def changed_accept_sent(self) -> bool:
        """Whether an accept that could change the register went out: the
        difference between UNAVAILABLE (definite) and TIMEOUT (unknown)."""
        return bool(self._mine)

    # -- rounds -----------------------------------------------------------------

    def _to(self, phase: Phase) -> None:
        if phase not in _TRANSITIONS[self.phase]:
            raise IllegalTransition(f"proposal {self.req_id}: {self.phase.value} -> {phase.value}")
        self.phase = phase

    def _begin_round(self, now_ms: int, ballot: Ballot) -> None:
        self.rounds += 1
        self._ballot = ballot
        self._round_started_ms = now_ms
        self._promises.clear()
        self._accepted_by.clear()
        self._refused.clear()

    def _prepare(self, now_ms: int) -> list[Send]:
        self._begin_round(now_ms, self.ballots.next())
        return self._broadcast(
            PaxosPrepare(
                src=self.src,
                req_id=self.req_id,
                ring_epoch=self.ring_epoch,
                keyspace=self.keyspace,
                key=self.key,
                ballot_counter=self._ballot.counter,
                ballot_proposer=self._ballot.proposer,
            )
        )

    def _broadcast(self, message: PaxosPrepare | PaxosAccept) -> list[Send]:
        """One phase's message to every acceptor: the same (frozen) object."""
        self.round_trips += 1
        return [(acceptor, message) for acceptor in self.acceptors]

    def _on_promise(self, reply: PaxosPromise, now_ms: int) -> list[Send]:
        if not reply.ok:
            return self._on_refusal(reply, now_ms)
        accepted = Ballot(reply.accepted_counter, reply.accepted_proposer)
        state = _message_state(reply)
        if state is None or not state.origin <= accepted < self._ballot:
            self.malformed_replies += 1
            return []
        self._down.pop(reply.src, None)
        self._promises.setdefault(reply.src, (accepted, state))
        if len(self._promises) < self.needed:
            return []
        _, current = max(self._promises.values(), key=lambda promise: promise[0])
        unknown = False
        for (origin, version), result in self._mine.items():
            made = current.made_by(origin, version)
            if made:
                # One of this operation's earlier accepts took hold (this
                # state is it, or was built on it): commit the state and
                # answer what that round computed. Exactly once.
                return self._accept(now_ms, current, result)
            unknown = unknown or made is None
        if unknown:
            return self._finish(
                OpError(
                    ErrorKind.TIMEOUT,
                    "outcome unknown: the key changed too often while this operation's "
                    "write was in flight",
                    code="TIMEOUT",
                    definite=False,
                )
            )
        return self._accept(now_ms, *self._apply(current, now_ms))

    def _apply(self, current: RegisterState, now_ms: int) -> tuple[RegisterState, object]:
        """Run the change on the state read; remember a changed state as ours."""
        change = self.change(current, now_ms)
        if not change.write:
            return current, change.result
        new = current.successor(change.value, change.expires_at_ms, self._ballot)
        self._mine[(self._ballot, new.version)] = change.result
        return new, change.result

    def _accept(self, now_ms: int, state: RegisterState, result: object) -> list[Send]:
        if self.phase is Phase.PREPARING:
            self._to(Phase.ACCEPTING)
        self._proposed, self._result = state, result
        self._next = self.ballots.next()
        return self._broadcast(
            PaxosAccept(
                src=self.src,
                req_id=self.req_id,
                ring_epoch=self.ring_epoch,
                keyspace=self.keyspace,
                key=self.key,
                ballot_counter=self._ballot.counter,
                ballot_proposer=self._ballot.proposer,
                next_counter=self._next.counter,
                value=state.value,
                version=state.version,
                expires_at_ms=state.expires_at_ms,
                origins=origins_to_wire(state.origins, state.horizon),
            )
        )

    def _on_accepted(self, reply: PaxosAccepted, now_ms: int) -> list[Send]:
        if not reply.ok:
            return self._on_refusal(reply, now_ms)
        self._down.pop(reply.src, None)
        self._accepted_by[reply.src] = None
        if len(self._accepted_by) < self.needed:
            return []
        self.leader_cache = LeaderCache(self._next, self._proposed, self.ring_epoch)
        return self._finish(self._result, self._proposed)

    def _on_refusal(self, reply: PaxosPromise | PaxosAccepted, now_ms: int) -> list[Send]:
        promised = Ballot(reply.promised_counter, reply.promised_proposer)
        if reply.error == REFUSED_CONFLICT:
            if promised <= self._ballot:
                self.malformed_replies += 1  # a conflict must name a higher ballot
                return []
            self.ballots.observe(promised)
            return self._fail_round(now_ms, excluded=False)
        self._refused[reply.src] = None
        if self._impossible():
            return self._fail_round(now_ms, excluded=True)
        return []

    def _fail_round(self, now_ms: int, *, excluded: bool) -> list[Send]:
        """This round cannot commit: back off and retry, or give up.

        ``excluded``: too few acceptors can answer at all. Before any changed
        accept that is a definite UNAVAILABLE at once (DESIGN.md: the minority
        side of a partition is answered fast); after one, retrying until the
        deadline may still learn the outcome."""
        if excluded and not self._mine:
            return self._finish(self._give_up_error("too few acceptors reachable"))
        if self.rounds >= self.config.rounds_max:
            return self._finish(self._give_up_error(f"no quorum in {self.rounds} rounds"))
        delay = backoff_ms(
            self.rounds - 1,
            self.rng,
            base_ms=self.config.backoff_base_ms,
            max_ms=self.config.backoff_max_ms,
        )
        if now_ms + delay >= self.deadline_ms:
            return self._finish(self._give_up_error("deadline passed"))
        self._to(Phase.BACKING_OFF)
        self._retry_at_ms = now_ms + delay
        return []

    def _reachable(self) -> int:
        return len(self.acceptors) - len(self._down)

    def _impossible(self) -> bool:
        """Whether this round's quorum can no longer form."""
        answered = self._promises if self.phase is Phase.PREPARING else self._accepted_by
        possible = sum(
            1
            for acceptor in self.acceptors
            if acceptor in answered
            or (acceptor not in self._down and acceptor not in self._refused)
        )
        return possible < self.needed

    def _give_up_error(self, why: str) -> OpError:
        if self._mine:
            return OpError(
                ErrorKind.TIMEOUT,
                f"outcome unknown: {why} after a write was sent",
                code="TIMEOUT",
                definite=False,
            )
        return OpError(ErrorKind.UNAVAILABLE, f"{why}; nothing was written", code="UNAVAILABLE")

    def _finish(self, result: object, state: RegisterState | None = None) -> list[Send]:
        self._to(Phase.DONE)
        self.outcome = ProposalOutcome(result, state)
        return []
