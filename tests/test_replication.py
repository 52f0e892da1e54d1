"""Replication through the core Node: a tiny deterministic message pump.

Every message goes through the real codec. The pump models the runtime's
duty: send ``messages`` now, flush, then send ``after_commit`` and release
replies. ``down`` nodes receive nothing (their messages are dropped).
The seeded simulator (ringkv.sim) covers faults at scale; these tests pin
down the protocol step by step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from ringkv.core import codec, ops
from ringkv.core.config import KeyspaceSpec, Level, NodeConfig
from ringkv.core.errors import ErrorKind, OpError
from ringkv.core.node import Mutate, Node, Read, ReadResult
from ringkv.core.record import ConflictMode, unpack_record
from ringkv.core.ring import Member, build_ring, key_token, preference_list
from ringkv.storage.memory import MemoryEngine

T0 = 1_700_000_000_000


@dataclass
class Cluster:
    nodes: dict[str, Node]
    now: int = T0
    down: set[str] = field(default_factory=set)
    queue: list[tuple[str, bytes]] = field(default_factory=list)
    replies: dict[object, object] = field(default_factory=dict)
    delivered: int = 0

    def drain(self, node_id: str) -> None:
        node = self.nodes[node_id]
        out = node.take_outbox()
        for dst, message in out.messages:
            self.queue.append((dst, codec.encode(message)))
        for token, result in out.replies_now:
            self.replies[token] = result
        node.engine.flush()
        for dst, message in out.after_commit:  # to itself too: its acceptor's answers
            self.queue.append((dst, codec.encode(message)))
        for token, result in out.replies:
            self.replies[token] = result

    def pump(self, max_steps: int = 10_000) -> None:
        for node_id in sorted(self.nodes):
            self.drain(node_id)
        steps = 0
        while self.queue and steps < max_steps:
            dst, data = self.queue.pop(0)
            steps += 1
            if dst in self.down:
                continue
            self.delivered += 1
            self.nodes[dst].step(codec.decode(data), self.now)
            self.drain(dst)
        assert steps < max_steps, "message storm"

    def tick(self, ms: int, every: int = 100) -> None:
        end = self.now + ms
        while self.now < end:
            self.now += every
            for node_id in sorted(self.nodes):
                if node_id not in self.down:
                    self.nodes[node_id].tick(self.now)
            self.pump()

    def restart(self, node_id: str) -> None:
        """SIGKILL and restart: what was committed survives (the pump flushes
        before anything leaves a node); memory and messages to it are lost."""
        old = self.nodes[node_id]
        self.queue = [(dst, data) for dst, data in self.queue if dst != node_id]
        new = Node(old.config, old.engine, random.Random(self.now), self.now, ring=old.ring)
        new.keyspaces.update(old.keyspaces)
        self.nodes[node_id] = new

    def call(self, node_id: str, request: object) -> object:
        token = object()
        self.nodes[node_id].submit(request, token, self.now)  # type: ignore[arg-type]
        self.pump()
        for _ in range(100):
            if token in self.replies:
                return self.replies.pop(token)
            self.tick(100)
        raise AssertionError("no reply within 10 s of simulated time")


def make_cluster(count: int, mode: ConflictMode = ConflictMode.LWW) -> Cluster:
    ids = [f"n{i}" for i in range(1, count + 1)]
    ring = build_ring([Member(node_id=i) for i in ids], epoch=1)
    nodes = {}
    for i, node_id in enumerate(ids):
        node = Node(NodeConfig(node_id=node_id), MemoryEngine(), random.Random(i), T0, ring=ring)
        node.keyspaces["ks"] = KeyspaceSpec(name="ks", mode=mode, n_replicas=3)
        nodes[node_id] = node
    return Cluster(nodes)


def homes_of(cluster: Cluster, key: bytes) -> tuple[str, ...]:
    ring = next(iter(cluster.nodes.values())).ring
    return preference_list(ring, key_token(key), 3)


def put(
    key: bytes, value: bytes, level: Level = Level.QUORUM, context: dict[str, int] | None = None
) -> Mutate:
    return Mutate("ks", key, ops.Put(value), level=level, context=context)


def get(key: bytes, level: Level = Level.QUORUM) -> Read:
    return Read("ks", key, level=level)


def values(result: object) -> list[bytes]:
    assert isinstance(result, ReadResult), result
    return sorted(v.value for v in result.versions)


def stored(cluster: Cluster, node_id: str, key: bytes) -> list[bytes]:
    raw = cluster.nodes[node_id]._table("ks").get(key)
    if raw is None:
        return []
    from ringkv.core.record import unpack_record

    return sorted(v.value for v in unpack_record(raw) if not v.tombstone)


def test_a_quorum_write_is_read_back_through_any_node() -> None:
    cluster = make_cluster(5)
    assert cluster.call("n1", put(b"k", b"v1")) is True
    for node_id in cluster.nodes:
        assert values(cluster.call(node_id, get(b"k"))) == [b"v1"]
    for home in homes_of(cluster, b"k"):
        assert stored(cluster, home, b"k") == [b"v1"]


def test_a_non_home_coordinator_forwards_the_write() -> None:
    cluster = make_cluster(5)
    homes = homes_of(cluster, b"fwd")
    outsider = next(n for n in sorted(cluster.nodes) if n not in homes)
    assert cluster.call(outsider, put(b"fwd", b"x")) is True
    assert cluster.nodes[outsider].stats.writes_forwarded == 1
    assert stored(cluster, outsider, b"fwd") == []
    assert all(stored(cluster, h, b"fwd") == [b"x"] for h in homes)


def test_after_a_forward_times_out_the_next_write_goes_to_another_home() -> None:
    cluster = make_cluster(5)
    homes = homes_of(cluster, b"fwd")
    outsider = next(n for n in sorted(cluster.nodes) if n not in homes)
    cluster.down.add(homes[0])  # the first home, where forwards go
    first = cluster.call(outsider, put(b"fwd", b"1"))
    assert isinstance(first, OpError) and first.kind is ErrorKind.TIMEOUT
    started = cluster.now
    assert cluster.call(outsider, put(b"fwd", b"2")) is True
    assert cluster.now - started < 1000  # not another request timeout


def test_a_duplicated_forward_is_coordinated_once() -> None:
    cluster = make_cluster(5, ConflictMode.CAUSAL)
    homes = homes_of(cluster, b"dup")
    outsider = next(n for n in sorted(cluster.nodes) if n not in homes)
    token = object()
    cluster.nodes[outsider].submit(put(b"dup", b"once"), token, cluster.now)
    cluster.drain(outsider)
    forwards = [(dst, data) for dst, data in cluster.queue if dst in homes]
    assert len(forwards) == 1
    cluster.queue.append(forwards[0])  # the network delivers it twice
    cluster.pump()
    assert cluster.replies.pop(token) is True
    cluster.tick(1000)
    for home in homes:
        raw = cluster.nodes[home]._table("ks").get(b"dup")
        assert raw is not None and len(unpack_record(raw)) == 1, home  # one version, not two
    assert sum(n.stats.duplicate_forwards for n in cluster.nodes.values()) == 1


def test_a_down_home_replica_gets_a_hint_that_is_delivered_when_it_returns() -> None:
    cluster = make_cluster(5)
    homes = homes_of(cluster, b"h")
    victim = homes[2]
    cluster.down.add(victim)
    # An explicit W = 3 is a sloppy quorum: the fallback's hinted copy counts.
    assert cluster.call(homes[0], Mutate("ks", b"h", ops.Put(b"v"), acks=3)) is True
    holders = [n for n in cluster.nodes if n not in homes and cluster.nodes[n].stats.hints_written]
    assert len(holders) == 1
    assert stored(cluster, victim, b"h") == []
    cluster.down.discard(victim)
    cluster.tick(6000)  # past suspect_ms: the hint is offered and acknowledged
    assert stored(cluster, victim, b"h") == [b"v"]
    holder = cluster.nodes[holders[0]]
    assert holder.stats.hints_delivered == 1
    assert holder._hints.count() == 0


def test_level_all_counts_only_home_replicas_not_fallbacks() -> None:
    # Regression (tests/scenarios/write_at_all_counts_fallbacks.txt): `all`
    # promises every home replica, so a hint does not make it succeed.
    cluster = make_cluster(5)
    homes = homes_of(cluster, b"a")
    cluster.down.add(homes[2])
    result = cluster.call(homes[0], put(b"a", b"v", level=Level.ALL))
    assert isinstance(result, OpError) and result.kind is ErrorKind.TIMEOUT
    assert not result.definite  # stored on two homes and a fallback: outcome unknown
    assert sum(n.stats.hints_written for n in cluster.nodes.values()) == 1


def test_read_repair_brings_a_stale_replica_up_to_date() -> None:
    cluster = make_cluster(3)
    homes = homes_of(cluster, b"r")
    cluster.down.add(homes[2])
    assert cluster.call(homes[0], put(b"r", b"new")) is True
    cluster.down.clear()
    assert stored(cluster, homes[2], b"r") == []
    assert values(cluster.call(homes[1], get(b"r", level=Level.ALL))) == [b"new"]
    assert stored(cluster, homes[2], b"r") == [b"new"]
    assert cluster.nodes[homes[1]].stats.read_repairs >= 1


def test_fewer_than_w_acknowledgements_is_an_unknown_outcome_not_a_failure() -> None:
    cluster = make_cluster(3)
    homes = homes_of(cluster, b"t")
    cluster.down.update(homes[1:])
    result = cluster.call(homes[0], put(b"t", b"v"))
    assert isinstance(result, OpError)
    assert result.kind is ErrorKind.TIMEOUT and not result.definite


def test_with_every_home_replica_unreachable_a_write_is_refused_definitely() -> None:
    cluster = make_cluster(5)
    homes = homes_of(cluster, b"u")
    outsider = next(n for n in sorted(cluster.nodes) if n not in homes)
    for home in homes:
        cluster.nodes[outsider]._suspect(home, cluster.now)
    result = cluster.call(outsider, put(b"u", b"v"))
    assert isinstance(result, OpError)
    assert result.kind is ErrorKind.UNAVAILABLE and result.definite


def test_concurrent_writes_in_a_causal_keyspace_become_siblings_and_a_context_resolves_them() -> (
    None
):
    cluster = make_cluster(3, ConflictMode.CAUSAL)
    homes = homes_of(cluster, b"cart")
    assert cluster.call(homes[0], put(b"cart", b"apple", level=Level.ONE)) is True
    assert cluster.call(homes[1], put(b"cart", b"pear", level=Level.ONE)) is True
    both = cluster.call(homes[2], get(b"cart", level=Level.ALL))
    assert values(both) == [b"apple", b"pear"]
    assert isinstance(both, ReadResult)
    assert cluster.call(homes[2], put(b"cart", b"apple+pear", context=both.context)) is True
    assert values(cluster.call(homes[0], get(b"cart", level=Level.ALL))) == [b"apple+pear"]


def test_in_lww_a_write_that_follows_another_wins_even_with_an_older_clock() -> None:
    cluster = make_cluster(3)
    homes = homes_of(cluster, b"w")
    assert cluster.call(homes[0], put(b"w", b"first")) is True
    cluster.now -= 60_000  # every clock jumps back a minute
    assert cluster.call(homes[1], put(b"w", b"second")) is True
    assert values(cluster.call(homes[2], get(b"w", level=Level.ALL))) == [b"second"]


def test_delete_is_a_tombstone_that_does_not_come_back() -> None:
    cluster = make_cluster(3)
    homes = homes_of(cluster, b"d")
    assert cluster.call(homes[0], put(b"d", b"v")) is True
    cluster.down.add(homes[2])
    assert cluster.call(homes[0], Mutate("ks", b"d", ops.Remove())) is True
    cluster.down.clear()
    assert values(cluster.call(homes[2], get(b"d", level=Level.ALL))) == []
    # The stale replica was repaired with the tombstone, so a read of it alone stays empty.
    assert values(cluster.call(homes[2], get(b"d", level=Level.ONE))) == []


@pytest.mark.parametrize("level", [Level.ONE, Level.QUORUM, Level.ALL])
def test_every_message_round_trips_through_the_codec(level: Level) -> None:
    cluster = make_cluster(4)
    assert cluster.call("n2", put(b"c", b"v", level=level)) is True
    assert values(cluster.call("n4", get(b"c", level=level))) == [b"v"]
    assert cluster.delivered > 0


def test_read_modify_write_is_refused_in_a_replicated_lww_keyspace() -> None:
    cluster = make_cluster(3)
    result = cluster.call("n1", Mutate("ks", b"n", ops.IncrBy(1)))
    assert isinstance(result, OpError) and result.kind is ErrorKind.WRONG_LEVEL


def test_the_broken_build_switch_really_loses_replica_copies() -> None:
    # The simulator's checkers are validated against this switch; make sure it bites.
    cluster = make_cluster(3)
    for node in cluster.nodes.values():
        object.__setattr__(node.config, "broken_ack_without_storing", True)
    homes = homes_of(cluster, b"b")
    assert cluster.call(homes[0], put(b"b", b"v", level=Level.ALL)) is True
    assert stored(cluster, homes[0], b"b") == [b"v"]
    assert stored(cluster, homes[1], b"b") == [] and stored(cluster, homes[2], b"b") == []


def test_a_full_hint_store_refuses_the_copy_rather_than_dropping_it() -> None:
    cluster = make_cluster(5)
    for node in cluster.nodes.values():
        object.__setattr__(node.config, "hints_max", 0)
    homes = homes_of(cluster, b"f")
    cluster.down.add(homes[2])
    result = cluster.call(homes[0], Mutate("ks", b"f", ops.Put(b"v"), acks=3))
    assert isinstance(result, OpError) and result.kind is ErrorKind.TIMEOUT
    assert sum(n.stats.hints_refused for n in cluster.nodes.values()) >= 1
    assert sum(n._hints.count() for n in cluster.nodes.values()) == 0
    # A quorum write still succeeds on the two reachable home replicas.
    assert cluster.call(homes[0], put(b"f", b"w")) is True


def test_inspect_reports_every_home_replica_and_marks_the_silent_one() -> None:
    from ringkv.core.node import Inspect, ReplicaReport

    cluster = make_cluster(5)
    homes = homes_of(cluster, b"i")
    cluster.down.add(homes[2])
    assert cluster.call(homes[0], put(b"i", b"v")) is True
    report = cluster.call(homes[1], Inspect("ks", b"i"))
    assert isinstance(report, ReplicaReport)
    assert report.homes == list(homes)
    assert [v.value for v in report.replicas[homes[0]] or []] == [b"v"]
    assert report.replicas[homes[2]] is None  # did not answer before the deadline
    assert cluster.nodes[homes[1]].stats.read_repairs == 0  # an inspection repairs nothing


def test_mset_in_a_cluster_is_one_write_per_key_answered_once() -> None:
    from ringkv.core.node import PutMany

    cluster = make_cluster(5)
    items = tuple((b"m%d" % i, b"v%d" % i) for i in range(10))
    assert cluster.call("n1", PutMany("ks", items)) is True
    for key, value in items:
        assert values(cluster.call("n3", get(key))) == [value]
    too_big = (*items, (b"big", b"x" * (8 * 1024 * 1024 + 1)))
    result = cluster.call("n2", PutMany("ks", too_big))
    assert isinstance(result, OpError) and result.kind is ErrorKind.TOO_LARGE
    assert values(cluster.call("n3", get(b"big"))) == []
    nx = cluster.call("n2", PutMany("ks", items, only_if_all_absent=True))
    assert isinstance(nx, OpError) and nx.kind is ErrorKind.WRONG_LEVEL


# -- a home replica's copy of an acknowledged write is never abandoned ------------
#
# Regression (tests/test_cluster.py::test_hints_survive_a_sigkill_of_the_node_that_holds_them):
# a coordinator answered OK at quorum and was SIGKILLed before the third home
# replica's copy was overdue (replica_timeout_ms), so before any fallback held a
# hint; that replica then never got the write from hinted handoff. The
# coordinator now keeps a durable self-hint for each home replica (handoff.py).


def test_a_coordinator_killed_before_it_hinted_still_hands_the_write_over() -> None:
    cluster = make_cluster(5)
    coordinator, _, victim = homes_of(cluster, b"k")
    cluster.down.add(victim)
    assert cluster.call(coordinator, put(b"k", b"v")) is True  # two homes: W = 2
    assert sum(n.stats.hints_written for n in cluster.nodes.values()) == 0  # no fallback yet
    cluster.restart(coordinator)
    cluster.down.discard(victim)
    cluster.tick(3000)
    assert stored(cluster, victim, b"k") == [b"v"]  # no read has repaired it
    assert all(n.hints_pending() == 0 for n in cluster.nodes.values())


def test_with_no_fallback_left_the_coordinator_hands_the_write_over_itself() -> None:
    cluster = make_cluster(3)  # N = 3 of 3 nodes: there is no fallback at all
    coordinator, _, victim = homes_of(cluster, b"k")
    cluster.down.add(victim)
    assert cluster.call(coordinator, put(b"k", b"v")) is True
    cluster.tick(3000)  # past the write's deadline: it is over
    assert not cluster.nodes[coordinator]._writes
    assert cluster.nodes[coordinator].hints_pending() == 1
    cluster.down.discard(victim)
    cluster.tick(6000)  # past suspect_ms
    assert stored(cluster, victim, b"k") == [b"v"]
    assert cluster.nodes[coordinator].hints_pending() == 0


def test_a_home_replica_that_refused_the_copy_gets_it_later() -> None:
    # A home replica that has not learned the ring yet (it just restarted)
    # refuses the copy (ring epoch mismatch); the write settles at once.
    cluster = make_cluster(5)
    coordinator, _, late = homes_of(cluster, b"k")
    ring = cluster.nodes[late].ring
    cluster.nodes[late].ring = build_ring([Member(node_id=late)], epoch=2)
    assert cluster.call(coordinator, put(b"k", b"v")) is True
    assert not cluster.nodes[coordinator]._writes  # every copy answered
    assert stored(cluster, late, b"k") == []
    cluster.tick(1500)  # offered again, refused again: kept
    cluster.nodes[late].ring = ring
    cluster.tick(1500)
    assert stored(cluster, late, b"k") == [b"v"]
    assert all(n.hints_pending() == 0 for n in cluster.nodes.values())


def test_a_healthy_write_leaves_no_hint_and_sends_no_extra_copy() -> None:
    cluster = make_cluster(5)
    coordinator = homes_of(cluster, b"k")[0]
    assert cluster.call(coordinator, put(b"k", b"v")) is True
    assert cluster.delivered == 4  # two copies, two acknowledgements
    node = cluster.nodes[coordinator]
    assert node.stats.self_hints_written == 2
    # Both homes acknowledged: the self-hints go at the next tick (in one
    # commit, not one per acknowledgement), and were never offered again.
    assert node.hints_pending() == 2
    cluster.tick(100)
    assert node.hints_pending() == 0 and node.stats.hints_delivered == 0
    assert cluster.delivered == 4
    assert cluster.call(coordinator, put(b"k", b"w", level=Level.ALL)) is True
    assert node.stats.self_hints_written == 2  # `all` waits for every home itself


def test_a_late_answer_and_a_fallback_for_the_same_home_count_once() -> None:
    from ringkv.core.replication import PendingWrite, WriteTarget

    pending = PendingWrite(
        token=None, keyspace="ks", key=b"k", record=b"", result=True, needed=3, deadline_ms=1
    )
    pending.targets[1] = WriteTarget(node="b", home="b", sent_ms=0)
    pending.targets[2] = WriteTarget(node="d", home="b", sent_ms=0)  # b was slow: a fallback
    pending.targets[3] = WriteTarget(node="c", home="c", sent_ms=0)
    assert pending.record_ack(2, True) is False  # coordinator + b (through d)
    assert pending.record_ack(1, True) is False  # b again: still two replicas
    assert pending.acks == 2
    assert pending.uncovered_homes() == ["c"]
    assert pending.record_ack(3, True) is True
