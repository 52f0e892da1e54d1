"""SWIM membership and failure detection: a pure state machine.

Theory of operation (Das, Gupta, Motivala 2002, "SWIM", §3-4; Lifeguard,
Dadgar et al. 2018; hashicorp/memberlist ``state.go``, ``suspicion.go``,
``util.go``). Every ``probe_interval_ms`` a member pings the next member of a
shuffled round-robin order (§4.3: every member is probed at most
``2(n-1)-1`` periods apart). Without an ack within ``probe_timeout_ms`` it asks
``indirect_checks`` other members to ping the target for it (``PingReq``) and
relay the ack. Without any ack by the end of the period it *suspects* the
target: a suspect is still routable, and is declared dead only when its
suspicion times out, after between ``suspicion_timeout`` and
``suspicion_max_timeout_mult`` times that, shorter the more members
independently confirm it (Lifeguard). A member that hears that it is
suspected (or dead) refutes by raising its incarnation and gossiping Alive.

State spreads by infection (§4.1): every Ping, PingReq and PingAck carries up
to ``piggyback_max`` rumours, the least transmitted and newest first, each
sent at most ``retransmit_mult * ceil(log10(n + 1))`` times. A new node sends
its state to its seeds (``MemberSync``) and gets their member list back
(push-pull); members also push-pull with a random member every
``push_pull_interval_ms``, which heals anything gossip missed.

Precedence (§4.2, memberlist ``aliveNode``/``suspectNode``/``deadNode``) is the
free function ``supersedes``. Membership drives routing only, never
ownership: the ring changes only by a committed join, leave or remove.

Addresses: outgoing messages are addressed by node id (resolve it with
``address_of``), or, for a peer known only by address (a seed, the sender of
a ping from a stranger), by ``"addr:" + host:port``.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import assert_never

from ringkv.core import messages as m
from ringkv.core.config import ConfigError

__all__ = [
    "ADDR_PREFIX",
    "MemberInfo",
    "MemberState",
    "Membership",
    "MembershipConfig",
    "detection_bound_ms",
    "refutes",
    "retransmit_limit",
    "supersedes",
    "suspicion_deadline_ms",
    "suspicion_timeout_ms",
]

ADDR_PREFIX = "addr:"
_TEXT_MAX = 255  # bytes of any id, address, zone or host in a gossip row
_WEIGHT_MAX = 65_535


class MemberState(Enum):
    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"


_LIVE = (MemberState.ALIVE, MemberState.SUSPECT)
_STATE_OF = {s.value: s for s in MemberState}


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberInfo:
    """One member as this node sees it; zone, weight and host are gossiped
    with the member's Alive rumours (the ring reads them on a committed join)."""

    node_id: str
    addr: str
    state: MemberState
    incarnation: int
    zone: str
    weight: int
    host: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MembershipConfig:
    # memberlist DefaultLANConfig: ProbeInterval 1 s, ProbeTimeout 500 ms.
    probe_interval_ms: int = 1000
    # A few LAN round trips; below probe_interval_ms so the indirect probe
    # (two more hops) still fits in the period.
    probe_timeout_ms: int = 500
    # SWIM's k: members asked to ping a target that missed its ack.
    indirect_checks: int = 3
    # suspicion_timeout = suspicion_mult * max(1, log10(n)) * probe_interval_ms
    # (memberlist util.go); Lifeguard stretches it up to
    # suspicion_max_timeout_mult times that until suspicion_mult - 2 other
    # members confirm the suspicion.
    suspicion_mult: int = 4
    suspicion_max_timeout_mult: int = 6
    # Each rumour is sent retransmit_mult * ceil(log10(n + 1)) times.
    retransmit_mult: int = 4
    # Rumours piggybacked on one Ping / PingReq / PingAck.
    piggyback_max: int = 8
    # Rumours queued (one per member at most). Overflow: drop the most
    # transmitted, then oldest, rumour (safe: gossip is idempotent and
    # push-pull repairs what it misses); counted in stats["rumours_dropped"].
    rumours_max: int = 1024
    # Members known (dead and left included). Overflow: forget the member
    # that has been dead or left longest; if none, refuse the newcomer
    # (stats["members_refused"]).
    members_max: int = 4096
    # Rows in one MemberSync, and rows read from any one incoming message.
    sync_members_max: int = 1024
    # Indirect probes relayed for others at once. Overflow: refuse (the
    # asker has k - 1 other helpers); each expires after a probe interval.
    relays_max: int = 1024
    # Push-pull with one random member (memberlist LAN: 30 s); 0 disables.
    push_pull_interval_ms: int = 30_000
    # While no other member is known, resend our state to the seeds this often.
    join_retry_ms: int = 1000
    # Push-pull with one random *dead* member this often (Serf's reconnect):
    # dead members are not probed, so without it two sides of a healed
    # partition that each declared the other dead would stay apart. The dead
    # member refutes our view of it and comes back alive. 0 disables.
    reconnect_interval_ms: int = 3000
    # This node's metadata, gossiped with it.
    zone: str = ""
    weight: int = 1
    host: str = ""

    def validate(self) -> None:
        if not 1 <= self.probe_timeout_ms < self.probe_interval_ms:
            raise ConfigError("probe_timeout_ms must be at least 1 and below probe_interval_ms")
        if not 0 <= self.indirect_checks <= 16:
            raise ConfigError("indirect_checks must be between 0 and 16")
        if self.suspicion_mult < 1 or self.suspicion_max_timeout_mult < 1:
            raise ConfigError("suspicion_mult and suspicion_max_timeout_mult must be at least 1")
        if self.retransmit_mult < 1 or self.piggyback_max < 1:
            raise ConfigError("retransmit_mult and piggyback_max must be at least 1")
        if self.rumours_max < 1 or self.relays_max < 1 or self.members_max < 2:
            raise ConfigError("rumours_max >= 1, relays_max >= 1, members_max >= 2")
        if self.sync_members_max < self.piggyback_max:
            raise ConfigError("sync_members_max must be at least piggyback_max")
        if self.push_pull_interval_ms < 0 or self.join_retry_ms < 1:
            raise ConfigError("push_pull_interval_ms >= 0 and join_retry_ms >= 1")
        if self.reconnect_interval_ms < 0:
            raise ConfigError("reconnect_interval_ms must not be negative")
        if not 0 <= self.weight <= _WEIGHT_MAX:
            raise ConfigError(f"weight must be between 0 and {_WEIGHT_MAX}")
        if max(len(self.zone), len(self.host)) > _TEXT_MAX:
            raise ConfigError(f"zone and host are at most {_TEXT_MAX} characters")


# -- pure math (memberlist util.go, suspicion.go) ------------------------------


def suspicion_timeout_ms(suspicion_mult: int, cluster_size: int, probe_interval_ms: int) -> int:
    """The shortest suspicion: ``mult * max(1, log10(n)) * interval``."""
    node_scale = max(1.0, math.log10(max(1, cluster_size)))
    return int(suspicion_mult * node_scale * probe_interval_ms)


def retransmit_limit(retransmit_mult: int, cluster_size: int) -> int:
    """How many times a rumour is sent: ``mult * ceil(log10(n + 1))``."""
    return retransmit_mult * math.ceil(math.log10(cluster_size + 1))


def suspicion_deadline_ms(
    *, confirmations: int, confirmations_wanted: int, min_ms: int, max_ms: int
) -> int:
    """How long after it started a suspicion expires (Lifeguard): ``max_ms``
    with no independent confirmation, falling logarithmically to ``min_ms``
    once ``confirmations_wanted`` members have confirmed it."""
    if confirmations_wanted < 1 or confirmations >= confirmations_wanted:
        return min_ms
    fraction = math.log(confirmations + 1) / math.log(confirmations_wanted + 1)
    return max(min_ms, math.floor(max_ms - fraction * (max_ms - min_ms)))


def detection_bound_ms(config: MembershipConfig, cluster_size: int) -> int:
    """Worst case from a crash until a given live member declares it dead,
    not counting the shell's tick granularity: the member's round robin
    reaches the crashed node within ``2(n-1) - 1`` periods (SWIM §4.3), that
    probe fails by the end of its period, then the suspicion runs out after
    at most its longest timeout (earlier if it heard the suspicion first)."""
    others = cluster_size - 1
    shortest = suspicion_timeout_ms(config.suspicion_mult, cluster_size, config.probe_interval_ms)
    return 2 * others * config.probe_interval_ms + config.suspicion_max_timeout_mult * shortest


def supersedes(
    current: MemberState, current_incarnation: int, update: MemberState, update_incarnation: int
) -> bool:
    """Whether a rumour about *another* member replaces what we know of it
    (SWIM §4.2; memberlist state.go). A suspect rumour with the same
    incarnation as a known suspicion is not news but a confirmation."""
    newer = update_incarnation > current_incarnation
    same = update_incarnation == current_incarnation
    match update:
        case MemberState.ALIVE:  # only a refutation (higher incarnation) clears anything
            return newer
        case MemberState.SUSPECT:  # overrides alive of the same incarnation
            return (current is MemberState.ALIVE and (newer or same)) or (
                current is MemberState.SUSPECT and newer
            )
        case MemberState.DEAD:  # overrides all but a newer incarnation, and left
            return newer or (same and current in _LIVE)
        case MemberState.LEFT:  # final for its incarnation
            return newer or (same and current is not MemberState.LEFT)
        case _:
            assert_never(update)


def refutes(own_incarnation: int, update: MemberState, update_incarnation: int) -> bool:
    """Whether a rumour about *this* node makes it refute (raise its
    incarnation past the rumour's and gossip Alive): any accusation at our
    incarnation or later, or an Alive newer than ours (we restarted)."""
    if update is MemberState.ALIVE:
        return update_incarnation > own_incarnation
    return update_incarnation >= own_incarnation


# -- internal records ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Update:
    state: MemberState
    node_id: str
    incarnation: int
    origin: str
    addr: str
    zone: str
    weight: int
    host: str

    def row(self) -> m.GossipRow:
        return [
            self.state.value,
            self.node_id,
            self.incarnation,
            self.origin,
            self.addr,
            self.zone,
            self.weight,
            self.host,
        ]


def _parse_row(row: m.GossipRow) -> _Update | None:
    """A gossip row from a peer, checked field by field; ``None`` if malformed."""
    if len(row) != 8:
        return None
    kind, node_id, incarnation, origin, addr, zone, weight, host = row
    if not isinstance(kind, str) or kind not in _STATE_OF:
        return None
    texts = (node_id, origin, addr, zone, host)
    if not all(isinstance(t, str) and len(t) <= _TEXT_MAX for t in texts):
        return None
    if not isinstance(incarnation, int) or not isinstance(weight, int):
        return None
    assert isinstance(node_id, str) and isinstance(origin, str) and isinstance(addr, str)
    assert isinstance(zone, str) and isinstance(host, str)
    state = _STATE_OF[kind]
    if not node_id or incarnation < 0 or not 0 <= weight <= _WEIGHT_MAX:
        return None
    if state is MemberState.ALIVE and not addr:
        return None
    return _Update(state, node_id, incarnation, origin, addr, zone, weight, host)


@dataclass(slots=True)
class _Member:
    node_id: str
    addr: str
    state: MemberState
    incarnation: int
    zone: str
    weight: int
    host: str
    changed_ms: int


@dataclass(slots=True)
class _Rumour:
    update: _Update
    transmits: int
    order: int  # higher is newer


@dataclass(slots=True)
class _Suspicion:
    origin: str
    start_ms: int
    min_ms: int
    max_ms: int
    confirmations_wanted: int
    confirmers: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Probe:
    target: str
    seq: int
    sent_ms: int
    acked: bool = False
    indirect_sent: bool = False


@dataclass(frozen=True, slots=True)
class _Relay:
    origin: str
    origin_addr: str
    origin_seq: int
    expires_ms: int


class Membership:
    """One node's SWIM view of the cluster: ``step`` / ``tick`` in,
    ``take_messages`` / ``take_events`` out, queries in between."""

    def __init__(
        self,
        config: MembershipConfig,
        self_id: str,
        self_addr: str,
        rng: random.Random,
        now_ms: int,
        seeds: Sequence[str] = (),
        incarnation: int = 0,
    ) -> None:
        """``incarnation`` must exceed any this node used before a restart
        (the runtime starts it at the wall-clock second), or the members that
        declared the old incarnation dead would ignore the new one."""
        config.validate()
        assert incarnation >= 0
        assert self_id and self_addr
        self.config = config
        self.self_id = self_id
        self.self_addr = self_addr
        self._rng = rng
        self._seeds = [s for s in dict.fromkeys(seeds) if s != self_addr]
        self._members: dict[str, _Member] = {
            self_id: _Member(
                self_id,
                self_addr,
                MemberState.ALIVE,
                incarnation,
                config.zone,
                config.weight,
                config.host,
                now_ms,
            )
        }
        self._left = False
        self._outbox: list[tuple[str, m.Message]] = []
        self._events: dict[str, MemberState] = {}  # coalesced: latest state per member
        self._rumours: dict[str, _Rumour] = {}  # at most one per member
        self._rumour_order = 0
        self._suspicions: dict[str, _Suspicion] = {}
        self._relays: dict[int, _Relay] = {}  # by our seq; insertion order = expiry order
        self._probe_order: list[str] = []
        self._probe_index = 0
        self._probe: _Probe | None = None
        self._seq = 0
        self.stats: Counter[str] = Counter()
        # A random phase, so that members started together do not probe in step.
        self._next_probe_ms = now_ms + rng.randrange(config.probe_interval_ms)
        self._next_push_pull_ms = now_ms + config.push_pull_interval_ms
        self._next_join_ms = now_ms
        self._next_reconnect_ms = now_ms + config.reconnect_interval_ms
        self._enqueue(self._update_of(self._me, MemberState.ALIVE, self_id))
        self._maybe_join(now_ms)

    # -- queries ---------------------------------------------------------------

    @property
    def _me(self) -> _Member:
        return self._members[self.self_id]

    @property
    def incarnation(self) -> int:
        return self._me.incarnation

    @property
    def has_left(self) -> bool:
        return self._left

    @property
    def has_seeds(self) -> bool:
        """True when this node was started to join through seeds."""
        return bool(self._seeds)

    def members(self) -> list[MemberInfo]:
        """Every member known, this node included, sorted by id."""
        return [
            MemberInfo(
                node_id=mem.node_id,
                addr=mem.addr,
                state=mem.state,
                incarnation=mem.incarnation,
                zone=mem.zone,
                weight=mem.weight,
                host=mem.host,
            )
            for _, mem in sorted(self._members.items())
        ]

    def state_of(self, node_id: str) -> MemberState | None:
        mem = self._members.get(node_id)
        return None if mem is None else mem.state

    def is_reachable(self, node_id: str) -> bool:
        """Alive or suspect (a suspect is still routed to, as in memberlist:
        most suspicions are refuted, and routing around one costs a hint)."""
        mem = self._members.get(node_id)
        return mem is not None and mem.state in _LIVE

    def address_of(self, node_id: str) -> str | None:
        mem = self._members.get(node_id)
        return None if mem is None else mem.addr

    def live_count(self) -> int:
        """Alive and suspect members, this node included: SWIM's n."""
        return sum(1 for mem in self._members.values() if mem.state in _LIVE)

    def rumour_count(self) -> int:
        return len(self._rumours)

    def relay_count(self) -> int:
        return len(self._relays)

    # -- outputs ---------------------------------------------------------------

    def take_messages(self) -> list[tuple[str, m.Message]]:
        """Messages to send: (node id or ``"addr:" + address``, message)."""
        out, self._outbox = self._outbox, []
        return out

    def take_events(self) -> list[tuple[str, MemberState]]:
        """Members whose state changed since the last call, with their
        latest state, oldest change first (coalesced per member, so bounded
        by ``members_max``). A new member appears as ALIVE."""
        out = list(self._events.items())
        self._events = {}
        return out

    # -- inputs ----------------------------------------------------------------

    def step(self, message: m.MembershipMessage, now_ms: int) -> None:
        if self._left:
            self.stats["ignored_after_leave"] += 1
            return
        match message:
            case m.Ping():
                self._on_ping(message, now_ms)
            case m.PingReq():
                self._on_ping_req(message, now_ms)
            case m.PingAck():
                self._on_ping_ack(message, now_ms)
            case m.MemberSync():
                self._on_sync(message, now_ms)
            case _:
                assert_never(message)

    def tick(self, now_ms: int) -> None:
        if self._left:
            return
        self._expire_relays(now_ms)
        self._expire_suspicions(now_ms)
        self._maybe_join(now_ms)
        self._maybe_push_pull(now_ms)
        self._maybe_reconnect(now_ms)
        self._probe_tick(now_ms)

    def leave(self, now_ms: int) -> None:
        """Graceful leave: raise the incarnation, mark ourselves LEFT and send
        that to ``retransmit_limit`` random members, who gossip it on. After
        this the instance answers nothing; the shell may stop at once."""
        if self._left:
            return
        me = self._me
        me.incarnation += 1
        me.state = MemberState.LEFT
        me.changed_ms = now_ms
        row = self._update_of(me, MemberState.LEFT, self.self_id).row()
        others = [i for i, mem in self._members.items() if i != self.self_id and mem.state in _LIVE]
        fanout = min(len(others), retransmit_limit(self.config.retransmit_mult, len(others) + 1))
        for node_id in self._rng.sample(others, fanout):
            self._send(node_id, self._sync_message(want_reply=False, rows=[row]))
        self._left = True
        self._probe = None
        self._rumours.clear()
        self.stats["left"] += 1

    # -- message handlers --------------------------------------------------------

    def _on_ping(self, ping: m.Ping, now_ms: int) -> None:
        self._merge(ping.gossip, now_ms, rumour_about=None)
        if ping.target != self.self_id:
            self.stats["pings_misaddressed"] += 1
            return
        gossip = self._take_gossip()
        sender = self._members.get(ping.src)
        if sender is not None and sender.state not in _LIVE:
            # Tell a member we think dead or gone so, so it can refute at once.
            verdict = self._update_of(sender, sender.state, self.self_id).row()
            gossip = [verdict, *gossip[: self.config.piggyback_max - 1]]
        self.stats["acks_sent"] += 1
        ack = m.PingAck(src=self.self_id, seq=ping.seq, gossip=gossip)
        self._send(self._dst(ping.src, ping.src_addr), ack)

    def _on_ping_req(self, req: m.PingReq, now_ms: int) -> None:
        self._merge(req.gossip, now_ms, rumour_about=None)
        if len(self._relays) >= self.config.relays_max:
            self.stats["relays_refused"] += 1
            return
        seq = self._next_seq()
        relay = _Relay(req.src, req.src_addr, req.seq, now_ms + self.config.probe_interval_ms)
        self._relays[seq] = relay
        self.stats["relays"] += 1
        ping = m.Ping(
            src=self.self_id,
            src_addr=self.self_addr,
            seq=seq,
            target=req.target,
            gossip=self._take_gossip(),
        )
        self._send(self._dst(req.target, req.target_addr), ping)

    def _on_ping_ack(self, ack: m.PingAck, now_ms: int) -> None:
        self._merge(ack.gossip, now_ms, rumour_about=None)
        relay = self._relays.pop(ack.seq, None)
        if relay is not None:
            forwarded = m.PingAck(
                src=self.self_id, seq=relay.origin_seq, gossip=self._take_gossip()
            )
            self._send(self._dst(relay.origin, relay.origin_addr), forwarded)
            return
        probe = self._probe
        if probe is not None and probe.seq == ack.seq and not probe.acked:
            probe.acked = True
            self.stats["probes_acked" if ack.src == probe.target else "probes_acked_indirect"] += 1

    def _on_sync(self, sync: m.MemberSync, now_ms: int) -> None:
        # Push-pull state: only the sender's own row is news to gossip on (a
        # join, a leave); the others are anti-entropy the sender already has.
        self._merge(sync.members, now_ms, rumour_about=sync.src, from_sync=True)
        if sync.want_reply:
            reply = self._sync_message(want_reply=False, rows=self._sync_rows())
            self._send(self._dst(sync.src, sync.src_addr), reply)

    # -- applying rumours --------------------------------------------------------

    def _merge(
        self,
        rows: list[m.GossipRow],
        now_ms: int,
        *,
        rumour_about: str | None,
        from_sync: bool = False,
    ) -> None:
        limit = self.config.sync_members_max
        if len(rows) > limit:
            self.stats["rows_over_limit"] += len(rows) - limit
        for row in rows[:limit]:
            update = _parse_row(row)
            if update is None:
                self.stats["rows_malformed"] += 1
                continue
            if from_sync and update.node_id != rumour_about:
                # State, not an independent observation: it confirms no
                # suspicion (origin ""), and, as memberlist's mergeState does,
                # a peer's "dead" only makes us suspect.
                state = MemberState.SUSPECT if update.state is MemberState.DEAD else update.state
                update = replace(update, state=state, origin="")
            rumour = rumour_about is None or update.node_id == rumour_about
            self._apply(update, now_ms, rumour=rumour)

    def _apply(self, update: _Update, now_ms: int, *, rumour: bool = True) -> None:
        if update.node_id == self.self_id:
            self._maybe_refute(update)
            return
        current = self._members.get(update.node_id)
        if current is None:
            if update.state is MemberState.ALIVE:
                self._add_member(update, now_ms, rumour=rumour)
            return
        if (
            update.state is MemberState.SUSPECT
            and current.state is MemberState.SUSPECT
            and update.incarnation == current.incarnation
        ):
            self._confirm(current, update.origin)
            return
        if not supersedes(current.state, current.incarnation, update.state, update.incarnation):
            return
        previous = current.state
        current.incarnation = update.incarnation
        current.state = update.state
        if update.state is MemberState.ALIVE:
            current.addr, current.zone = update.addr, update.zone
            current.weight, current.host = update.weight, update.host
        if update.state is MemberState.SUSPECT:
            self._start_suspicion(current, update.origin, now_ms)
        else:
            self._suspicions.pop(current.node_id, None)
        if rumour:
            self._enqueue(self._update_of(current, current.state, update.origin))
        if previous is not current.state:
            current.changed_ms = now_ms
            self._note_event(current.node_id, current.state)

    def _maybe_refute(self, update: _Update) -> None:
        me = self._me
        if self._left:
            return
        if refutes(me.incarnation, update.state, update.incarnation):
            me.incarnation = update.incarnation + 1
            self.stats["refutations"] += 1
        elif update.state is MemberState.ALIVE or me.node_id in self._rumours:
            return
        else:
            # A stale accusation: whoever still spreads it missed our last
            # refutation (its rumour ran out). Gossip our Alive again.
            self.stats["stale_accusations"] += 1
        self._enqueue(self._update_of(me, MemberState.ALIVE, self.self_id))

    def _add_member(self, update: _Update, now_ms: int, *, rumour: bool) -> None:
        if len(self._members) >= self.config.members_max and not self._reclaim_one():
            self.stats["members_refused"] += 1
            return
        mem = _Member(
            update.node_id,
            update.addr,
            MemberState.ALIVE,
            update.incarnation,
            update.zone,
            update.weight,
            update.host,
            now_ms,
        )
        self._members[mem.node_id] = mem
        # memberlist: a new member goes to a random place in the rest of the round.
        position = self._rng.randint(self._probe_index, len(self._probe_order))
        self._probe_order.insert(position, mem.node_id)
        if rumour:
            self._enqueue(self._update_of(mem, MemberState.ALIVE, update.origin))
        self._note_event(mem.node_id, MemberState.ALIVE)

    def _reclaim_one(self) -> bool:
        """Forget the member dead or left the longest, to make room."""
        gone = [mem for mem in self._members.values() if mem.state not in _LIVE]
        if not gone:
            return False
        oldest = min(gone, key=lambda mem: (mem.changed_ms, mem.node_id))
        del self._members[oldest.node_id]
        self._rumours.pop(oldest.node_id, None)
        self.stats["members_reclaimed"] += 1
        return True

    def _note_event(self, node_id: str, state: MemberState) -> None:
        self._events.pop(node_id, None)
        self._events[node_id] = state
        self.stats[f"became_{state.value}"] += 1

    # -- suspicion (Lifeguard) -------------------------------------------------------

    def _start_suspicion(self, mem: _Member, origin: str, now_ms: int) -> None:
        n = self.live_count()
        wanted = self.config.suspicion_mult - 2
        if n - 2 < wanted:  # too few members to ever confirm it
            wanted = 0
        shortest = suspicion_timeout_ms(
            self.config.suspicion_mult, n, self.config.probe_interval_ms
        )
        longest = self.config.suspicion_max_timeout_mult * shortest
        self._suspicions[mem.node_id] = _Suspicion(origin, now_ms, shortest, longest, wanted)

    def _confirm(self, mem: _Member, origin: str) -> None:
        suspicion = self._suspicions.get(mem.node_id)
        assert suspicion is not None, "a suspect member always has a suspicion"
        if (
            not origin
            or origin == suspicion.origin
            or origin in suspicion.confirmers
            or len(suspicion.confirmers) >= suspicion.confirmations_wanted
        ):
            return
        suspicion.confirmers.append(origin)
        self.stats["confirmations"] += 1
        # memberlist re-gossips a new confirmation so others can count it too.
        self._enqueue(self._update_of(mem, MemberState.SUSPECT, origin))

    def _expire_suspicions(self, now_ms: int) -> None:
        expired = [
            node_id
            for node_id, s in self._suspicions.items()
            if now_ms - s.start_ms
            >= suspicion_deadline_ms(
                confirmations=len(s.confirmers),
                confirmations_wanted=s.confirmations_wanted,
                min_ms=s.min_ms,
                max_ms=s.max_ms,
            )
        ]
        for node_id in expired:
            mem = self._members[node_id]
            dead = self._update_of(mem, MemberState.DEAD, self.self_id)
            self._apply(dead, now_ms)

    # -- probing -------------------------------------------------------------------

    def _probe_tick(self, now_ms: int) -> None:
        probe = self._probe
        if (
            probe is not None
            and not probe.acked
            and not probe.indirect_sent
            and now_ms >= probe.sent_ms + self.config.probe_timeout_ms
        ):
            probe.indirect_sent = True
            self._send_indirect(probe)
        if now_ms < self._next_probe_ms:
            return
        self._next_probe_ms += self.config.probe_interval_ms
        if self._next_probe_ms <= now_ms:  # the shell stalled: do not burst
            self._next_probe_ms = now_ms + self.config.probe_interval_ms
        if probe is not None and not probe.acked:
            self._probe_failed(probe, now_ms)
        self._probe = None
        target = self._next_target()
        if target is None:
            return
        seq = self._next_seq()
        self._probe = _Probe(target.node_id, seq, now_ms)
        self.stats["probes"] += 1
        gossip = self._take_gossip()
        if target.state is MemberState.SUSPECT:
            # Lifeguard's buddy system: tell a suspect so, so it refutes at once.
            buddy = self._update_of(target, MemberState.SUSPECT, self.self_id).row()
            gossip = [buddy, *gossip[: self.config.piggyback_max - 1]]
        ping = m.Ping(
            src=self.self_id,
            src_addr=self.self_addr,
            seq=seq,
            target=target.node_id,
            gossip=gossip,
        )
        self._send(target.node_id, ping)

    def _send_indirect(self, probe: _Probe) -> None:
        target = self._members.get(probe.target)
        if target is None:
            return
        helpers = [
            node_id
            for node_id, mem in self._members.items()
            if node_id not in (self.self_id, probe.target) and mem.state is MemberState.ALIVE
        ]
        count = min(self.config.indirect_checks, len(helpers))
        for node_id in self._rng.sample(helpers, count):
            self.stats["ping_reqs"] += 1
            req = m.PingReq(
                src=self.self_id,
                src_addr=self.self_addr,
                seq=probe.seq,
                target=probe.target,
                target_addr=target.addr,
                gossip=self._take_gossip(),
            )
            self._send(node_id, req)

    def _probe_failed(self, probe: _Probe, now_ms: int) -> None:
        mem = self._members.get(probe.target)
        if mem is None or mem.state not in _LIVE:
            return
        self.stats["probes_failed"] += 1
        self._apply(self._update_of(mem, MemberState.SUSPECT, self.self_id), now_ms)

    def _next_target(self) -> _Member | None:
        """The next live member of a shuffled round robin (SWIM §4.3)."""
        for _ in range(2):
            while self._probe_index < len(self._probe_order):
                node_id = self._probe_order[self._probe_index]
                self._probe_index += 1
                mem = self._members.get(node_id)
                if mem is not None and mem.state in _LIVE:
                    return mem
            self._probe_order = [
                node_id
                for node_id, mem in self._members.items()
                if node_id != self.self_id and mem.state in _LIVE
            ]
            self._rng.shuffle(self._probe_order)
            self._probe_index = 0
        return None

    # -- joining and push-pull ----------------------------------------------------------

    def _maybe_join(self, now_ms: int) -> None:
        if not self._seeds or now_ms < self._next_join_ms or self.live_count() > 1:
            return
        self._next_join_ms = now_ms + self.config.join_retry_ms
        self.stats["join_attempts"] += 1
        rows = self._sync_rows()
        for seed in self._seeds:
            self._send(ADDR_PREFIX + seed, self._sync_message(want_reply=True, rows=rows))

    def _maybe_push_pull(self, now_ms: int) -> None:
        if not self.config.push_pull_interval_ms or now_ms < self._next_push_pull_ms:
            return
        self._next_push_pull_ms = now_ms + self.config.push_pull_interval_ms
        peers = [
            node_id
            for node_id, mem in self._members.items()
            if node_id != self.self_id and mem.state is MemberState.ALIVE
        ]
        if peers:
            self.stats["push_pulls"] += 1
            peer = self._rng.choice(peers)
            self._send(peer, self._sync_message(want_reply=True, rows=self._sync_rows()))

    def _maybe_reconnect(self, now_ms: int) -> None:
        """Push-pull with a random dead (not left) member, which, if it is in
        fact alive, refutes our view of it (Serf's reconnect; see the config)."""
        if not self.config.reconnect_interval_ms or now_ms < self._next_reconnect_ms:
            return
        self._next_reconnect_ms = now_ms + self.config.reconnect_interval_ms
        dead = sorted(
            node_id for node_id, mem in self._members.items() if mem.state is MemberState.DEAD
        )
        if dead:
            self.stats["reconnects"] += 1
            mem = self._members[self._rng.choice(dead)]
            message = self._sync_message(want_reply=True, rows=self._sync_rows())
            self._send(self._dst(mem.node_id, mem.addr), message)

    def _sync_rows(self) -> list[m.GossipRow]:
        """Our row first, then the others (a random sample if too many)."""
        others = [mem for node_id, mem in self._members.items() if node_id != self.self_id]
        room = self.config.sync_members_max - 1
        if len(others) > room:
            others = self._rng.sample(others, room)
        rows = [self._update_of(self._me, self._me.state, self.self_id).row()]
        rows.extend(self._update_of(mem, mem.state, self.self_id).row() for mem in others)
        return rows

    def _sync_message(self, *, want_reply: bool, rows: list[m.GossipRow]) -> m.MemberSync:
        return m.MemberSync(
            src=self.self_id, src_addr=self.self_addr, want_reply=want_reply, members=rows
        )

    # -- dissemination -----------------------------------------------------------

    def _enqueue(self, update: _Update) -> None:
        """Queue a rumour, replacing any older one about the same member."""
        self._rumour_order += 1
        self._rumours.pop(update.node_id, None)
        self._rumours[update.node_id] = _Rumour(update, 0, self._rumour_order)
        if len(self._rumours) > self.config.rumours_max:
            victim = max(self._rumours.values(), key=lambda r: (r.transmits, -r.order))
            del self._rumours[victim.update.node_id]
            self.stats["rumours_dropped"] += 1

    def _take_gossip(self) -> list[m.GossipRow]:
        """Up to ``piggyback_max`` rumours, least transmitted and newest first;
        a rumour sent ``retransmit_limit`` times is retired."""
        if not self._rumours:
            return []
        limit = retransmit_limit(self.config.retransmit_mult, self.live_count())
        chosen = heapq.nsmallest(
            self.config.piggyback_max,
            self._rumours.values(),
            key=lambda r: (r.transmits, -r.order),
        )
        rows = []
        for rumour in chosen:
            rumour.transmits += 1
            rows.append(rumour.update.row())
            if rumour.transmits >= limit:
                del self._rumours[rumour.update.node_id]
        return rows

    # -- helpers ---------------------------------------------------------------

    def _update_of(self, mem: _Member, state: MemberState, origin: str) -> _Update:
        return _Update(
            state, mem.node_id, mem.incarnation, origin, mem.addr, mem.zone, mem.weight, mem.host
        )

    def _dst(self, node_id: str, addr: str) -> str:
        return node_id if node_id in self._members else ADDR_PREFIX + addr

    def _send(self, dst: str, message: m.Message) -> None:
        self._outbox.append((dst, message))

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _expire_relays(self, now_ms: int) -> None:
        while self._relays:
            seq, relay = next(iter(self._relays.items()))
            if relay.expires_ms > now_ms:
                return
            del self._relays[seq]
            self.stats["relays_expired"] += 1
