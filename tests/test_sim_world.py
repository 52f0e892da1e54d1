"""The simulated world: event order, the driver's duty per turn, clocks,
crashes and restarts, clients and histories, and determinism.

Most tests drive a small fake node (``EchoNode``) so that they pin the
world's behaviour whatever the replication protocol does; the last ones run
the production ``Node``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from itertools import pairwise

import pytest

from ringkv.core import messages as m
from ringkv.core.config import KeyspaceSpec, NodeConfig
from ringkv.core.errors import ErrorKind, OpError
from ringkv.core.node import Node
from ringkv.core.record import ConflictMode
from ringkv.core.requests import Mutate, Read
from ringkv.core.ring import Ring
from ringkv.sim.network import NetworkConfig
from ringkv.sim.world import EPOCH_MS, SimConfig, SimNode, Simulation
from ringkv.storage.base import Engine, FsyncPolicy


@dataclass
class Outbox:
    messages: list[tuple[str, m.Message]] = field(default_factory=list)
    after_commit: list[tuple[str, m.Message]] = field(default_factory=list)
    replies: list[tuple[object, object]] = field(default_factory=list)
    replies_now: list[tuple[object, object]] = field(default_factory=list)


class EchoNode:
    """A toy protocol: a put stores the key locally and asks every peer to
    read it (``ReplicaRead`` before the commit, ``ReplicaWrite`` after it);
    the reply waits for every peer's answer, or times out on a tick."""

    def __init__(
        self, config: NodeConfig, engine: Engine, rng: random.Random, now_ms: int, ring: Ring
    ) -> None:
        self.id = config.node_id
        self.engine = engine
        self.rng = rng
        self.peers = [n for n in ring.node_ids if n != self.id]
        self.started_ms = now_ms
        self.ticks: list[int] = []
        self.steps: list[tuple[int, m.Message]] = []
        self.waiting: dict[int, tuple[object, set[str], int]] = {}
        self.out = Outbox()
        self.next_id = 0
        self.keyspaces: dict[str, KeyspaceSpec] = {}

    def submit(self, request: object, token: object, now_ms: int) -> None:
        assert isinstance(request, Mutate | Read)
        if isinstance(request, Read):
            raw = self.engine.table("ks:default").get(request.key)
            self.out.replies.append((token, raw))
            return
        self.engine.table("ks:default").put(request.key, b"v", 0)
        self.next_id += 1
        self.waiting[self.next_id] = (token, set(self.peers), now_ms)
        for peer in self.peers:
            ask = m.ReplicaRead(
                src=self.id, req_id=self.next_id, ring_epoch=1, keyspace="x", key=request.key
            )
            self.out.messages.append((peer, ask))
            tell = m.ReplicaWrite(
                src=self.id,
                req_id=self.next_id,
                ring_epoch=1,
                keyspace="x",
                key=request.key,
                record=b"r",
                want_ack=False,
            )
            self.out.after_commit.append((peer, tell))
        if not self.peers:
            self.out.replies.append((token, True))

    def step(self, message: m.Message, now_ms: int) -> None:
        self.steps.append((now_ms, message))
        if isinstance(message, m.ReplicaRead):
            reply = m.ReplicaReadReply(src=self.id, req_id=message.req_id, ok=True)
            self.out.after_commit.append((message.src, reply))
        elif isinstance(message, m.ReplicaReadReply) and message.req_id in self.waiting:
            token, missing, _ = self.waiting[message.req_id]
            missing.discard(message.src)
            if not missing:
                del self.waiting[message.req_id]
                self.out.replies.append((token, True))

    def tick(self, now_ms: int) -> None:
        self.ticks.append(now_ms)
        for req_id in sorted(self.waiting):
            token, _, started = self.waiting[req_id]
            if now_ms - started > 500:
                del self.waiting[req_id]
                self.out.replies.append((token, OpError(ErrorKind.TIMEOUT, "slow", definite=False)))

    def take_outbox(self) -> Outbox:
        out, self.out = self.out, Outbox()
        return out


def echo_sim(seed: int = 1, nodes: int = 3, **config: object) -> Simulation:
    network = config.pop("network", NetworkConfig())
    return Simulation(
        seed,
        [f"n{i}" for i in range(nodes, 0, -1)],  # given unsorted on purpose
        config=SimConfig(network=network, **config),  # type: ignore[arg-type]
        node_factory=EchoNode,
    )


def echo(sim: Simulation, node_id: str) -> EchoNode:
    node = sim.node(node_id)
    assert isinstance(node, EchoNode)
    return node


# --- time and events --------------------------------------------------------------


def test_nodes_are_sorted_and_see_virtual_time_plus_skew() -> None:
    sim = echo_sim()
    assert sim.node_ids == ("n1", "n2", "n3")
    assert echo(sim, "n1").started_ms == EPOCH_MS
    sim.set_clock_offset("n2", -250)
    sim.run_until(1000)
    assert sim.now == 1000
    assert sim.node_now("n1") == EPOCH_MS + 1000
    assert sim.node_now("n2") == EPOCH_MS + 750
    ticks = echo(sim, "n2").ticks
    assert ticks and all(b - a == 100 for a, b in pairwise(ticks))
    assert ticks[-1] > EPOCH_MS + 500, "ticks carry the node's skewed clock"


def test_scheduled_actions_run_in_time_then_insertion_order() -> None:
    sim = echo_sim()
    seen: list[str] = []
    sim.schedule(20, "b", lambda: seen.append(f"b@{sim.now}"))
    sim.schedule(10, "a", lambda: seen.append(f"a@{sim.now}"))
    sim.schedule(20, "c", lambda: seen.append(f"c@{sim.now}"))
    sim.run_until(15)
    assert seen == ["a@10"]
    sim.run_until(20)
    assert seen == ["a@10", "b@20", "c@20"]
    assert any(line.endswith("do c") for line in sim.trace_lines)


def test_run_until_true_stops_at_the_condition_or_the_bound() -> None:
    sim = echo_sim()
    assert sim.run_until_true(lambda: sim.now >= 250, max_ms=10_000)
    assert 250 <= sim.now < 300
    assert not sim.run_until_true(lambda: False, max_ms=1000)
    assert sim.now >= 1250


# --- the driver's duty per turn -------------------------------------------------------


def test_messages_go_before_the_flush_after_commit_and_replies_after_it() -> None:
    sim = echo_sim()
    dirty_at_send: list[tuple[str, str, bool]] = []
    send = sim.network.send

    def spy(src: str, dst: str, message: m.Message):  # type: ignore[no-untyped-def]
        dirty_at_send.append((src, type(message).__name__, sim.engine(src).dirty))
        return send(src, dst, message)

    sim.network.send = spy  # type: ignore[method-assign]
    durable_at_reply: list[bool] = []
    sim.on_complete.append(
        lambda op: durable_at_reply.append(
            b"a" in sim.engine("n1").durable_snapshot()["ks:default"]
        )
    )
    op = sim.complete(sim.client("n1").put("a", "x"))
    assert op.outcome == "ok"
    from_n1 = [(kind, dirty) for src, kind, dirty in dirty_at_send if src == "n1"]
    assert from_n1 == [
        ("ReplicaRead", True),
        ("ReplicaRead", True),
        ("ReplicaWrite", False),
        ("ReplicaWrite", False),
    ]
    assert durable_at_reply == [True], "no reply before the write is durable"


def test_every_message_is_decoded_from_bytes_on_delivery() -> None:
    sim = echo_sim()
    sim.complete(sim.client("n1").put("a", "x"))
    sim.run_for(100)
    steps = echo(sim, "n2").steps
    assert steps
    counters = sim.network.counters()
    assert counters["ReplicaRead"]["delivered"] == 2
    assert counters["ReplicaWrite"]["delivered"] == 2


# --- crashes ------------------------------------------------------------------------------


def test_crash_drops_the_node_and_its_unsynced_writes() -> None:
    sim = echo_sim(fsync=FsyncPolicy.BATCH, fsync_interval_ms=1000)
    sim.complete(sim.client("n1").put("a", "x"))
    assert sim.engine("n1").unsynced_keys() == 1
    before = sim.node("n1")
    sim.crash("n1")
    assert sim.node("n1") is None and not sim.is_up("n1")
    sim.run_for(500)
    assert sim.engine("n1").table("ks:default").get(b"a") is None, "never synced: lost"
    sim.restart("n1")
    assert sim.node("n1") is not before
    sim.complete(sim.client("n1").put("b", "y"))
    sim.run_for(1100)  # the batch timer syncs
    sim.crash("n1")
    sim.restart("n1")
    assert sim.engine("n1").table("ks:default").get(b"b") == b"v"


def test_crash_ends_in_flight_requests_as_info_and_retires_the_process() -> None:
    sim = echo_sim()
    sim.partition([["n1"], ["n2", "n3"]])  # the put waits for answers that never come
    client = sim.client("n1")
    process = client.process
    op = client.put("a", "x")
    sim.run_for(50)
    sim.crash("n1")
    assert (op.outcome, op.error) == ("info", "connection lost: the node crashed")
    assert client.process != process
    refused = client.put("a", "y")
    assert (refused.outcome, refused.error) == ("fail", "connection refused: the node is down")
    assert [e.type for e in sim.history] == ["invoke", "info", "invoke", "fail"]


def test_messages_to_a_crashed_or_restarted_node_are_lost() -> None:
    sim = echo_sim(network=NetworkConfig(delay_min_ms=50, delay_max_ms=50, slow_rate=0))
    sim.client("n1").put("a", "x")
    sim.run_for(10)
    sim.crash("n2")
    sim.crash("n3")
    sim.restart("n3")
    sim.run_for(100)
    assert any("drop n1->n2 ReplicaRead" in line and "(down)" in line for line in sim.trace_lines)
    assert any(
        "drop n1->n3 ReplicaRead" in line and "(restarted)" in line for line in sim.trace_lines
    )
    assert echo(sim, "n3").steps == []


def test_crash_before_flush_sends_then_loses_the_write() -> None:
    sim = echo_sim()
    sim.crash_before_flush("n1")
    op = sim.client("n1").put("a", "x")
    assert op.outcome == "info"
    assert not sim.is_up("n1")
    sim.run_for(50)
    assert len(echo(sim, "n2").steps) == 1, "the ReplicaRead sent before the crash arrives"
    assert all(not isinstance(s, m.ReplicaWrite) for _, s in echo(sim, "n2").steps)
    sim.restart("n1")
    assert sim.engine("n1").table("ks:default").get(b"a") is None


def test_client_timeout_is_info() -> None:
    sim = echo_sim(client_timeout_ms=300)
    sim.partition([["n1"], ["n2", "n3"]])
    op = sim.complete(sim.client("n1").put("a", "x"))
    assert (op.outcome, op.error, op.complete_ms) == ("info", "client timeout", 300)
    sim.run_for(1000)  # the node's own timeout answers later
    assert any("late reply n1" in line for line in sim.trace_lines)


def test_ticks_stop_while_down_and_resume_after_restart() -> None:
    sim = echo_sim()
    sim.run_for(1000)
    sim.crash("n2")
    sim.run_for(1000)
    sim.restart("n2")
    sim.run_for(1000)
    ticks = echo(sim, "n2").ticks
    assert ticks and all(t >= EPOCH_MS + 2000 for t in ticks)
    assert 9 <= len(ticks) <= 10


# --- history and determinism ---------------------------------------------------------------


def test_history_records_invoke_and_completion() -> None:
    sim = echo_sim()
    sim.complete(sim.client("n2").put("a", "x"))
    invoke, ok = sim.history
    assert invoke.to_json() == {
        "index": 0,
        "process": 1,
        "type": "invoke",
        "f": "put",
        "key": "a",
        "value": "x",
        "error": None,
        "time_ns": 0,
        "node": "n2",
    }
    assert (ok.type, ok.process, ok.value) == ("ok", 1, "x")
    assert ok.time_ns > 0


def _busy_run(seed: int) -> Simulation:
    network = NetworkConfig(drop_rate=0.1, duplicate_rate=0.1, slow_rate=0.2)
    sim = echo_sim(seed, nodes=4, network=network, fsync=FsyncPolicy.BATCH)
    clients = [sim.client(n) for n in sim.node_ids]
    for i in range(60):
        client = clients[sim.workload_rng.randrange(len(clients))]
        sim.schedule(i * 37, "put", lambda c=client, i=i: c.put(f"k{i % 5}", str(i)))  # type: ignore[misc]
    sim.schedule(500, "crash", lambda: sim.crash("n2"))
    sim.schedule(900, "restart", lambda: sim.restart("n2"))
    sim.schedule(1200, "partition", lambda: sim.partition([["n1", "n2"], ["n3", "n4"]]))
    sim.schedule(1800, "heal", sim.heal)
    sim.run_until(4000)
    return sim


def test_same_seed_byte_identical_trace() -> None:
    first, second = _busy_run(11), _busy_run(11)
    assert first.trace_lines == second.trace_lines
    assert first.trace_digest() == second.trace_digest()
    assert len(first.trace_lines) > 300
    assert _busy_run(12).trace_digest() != first.trace_digest()


def test_trace_digest_covers_unkept_lines() -> None:
    sim = echo_sim(keep_trace=False)
    kept = echo_sim()
    for s in (sim, kept):
        s.complete(s.client("n1").put("a", "x"))
    assert sim.trace_lines == []
    assert sim.trace_line_count == kept.trace_line_count
    assert sim.trace_digest() == kept.trace_digest()


# --- the production node ------------------------------------------------------------------


def test_the_simulator_runs_the_production_node_class() -> None:
    from ringkv.runtime import server

    sim = Simulation(1, ["n1", "n2", "n3"])
    node: SimNode | None = sim.node("n1")
    assert type(node) is Node
    assert server.Node is Node, "the server builds the same class"


def test_real_nodes_replicate_through_the_simulator() -> None:
    spec = KeyspaceSpec(name="carts", mode=ConflictMode.CAUSAL)
    sim = Simulation(3, ["n1", "n2", "n3"], keyspaces=[spec])
    op = sim.complete(sim.client("n1").put("a", "x"))
    assert op.outcome == "ok"
    read = sim.complete(sim.client("n3").get("a", level="all"))
    assert (read.outcome, read.read_values) == ("ok", (b"x",))
    sim.run_for(100)
    for node in sim.node_ids:
        assert [v.value for v in sim.stored_versions(node, "carts", b"a")] == [b"x"]


@pytest.mark.parametrize("lose_unsynced", [True, False])
def test_real_node_restarts_from_its_disk(lose_unsynced: bool) -> None:
    spec = KeyspaceSpec(name="carts", mode=ConflictMode.CAUSAL)
    sim = Simulation(4, ["n1", "n2", "n3"], keyspaces=[spec])
    sim.complete(sim.client("n1").put("a", "x"))
    sim.crash("n1", lose_unsynced=lose_unsynced)
    sim.restart("n1")
    node = sim.node("n1")
    assert isinstance(node, Node)
    assert "carts" in node.keyspaces, "the simulator declares keyspaces on restart"
    assert [v.value for v in sim.stored_versions("n1", "carts", b"a")] == [b"x"]
