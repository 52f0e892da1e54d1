"""Cluster-wide SCAN, KEYS and DBSIZE (core/listing.py) through the core Node.

Uses the deterministic message pump of test_replication.py: every message
goes through the real codec; ``down`` nodes receive nothing.
"""

from __future__ import annotations

import random

import pytest

from ringkv.core import codec, ops
from ringkv.core import messages as msg
from ringkv.core.config import KeyspaceSpec, Level, NodeConfig
from ringkv.core.errors import ErrorKind, OpError
from ringkv.core.listing import from_wire, to_wire
from ringkv.core.node import Count, Mutate, Node, Scan, ScanResult
from ringkv.core.record import ConflictMode
from ringkv.core.ring import TOKEN_MAX, Member, arc_end, build_ring, key_token, preference_list
from ringkv.storage.memory import MemoryEngine
from test_replication import T0, Cluster, make_cluster


def fill(cluster: Cluster, count: int, via: str = "n1", prefix: bytes = b"key") -> set[bytes]:
    keys = {b"%s-%d" % (prefix, i) for i in range(count)}
    for key in sorted(keys):
        assert cluster.call(via, Mutate("ks", key, ops.Put(b"v"), level=Level.ALL)) is True
    return keys


def scan_all(cluster: Cluster, node: str, count: int) -> list[bytes]:
    cursor, walked, calls = 0, [], 0
    while True:
        result = cluster.call(node, Scan("ks", cursor, count))
        assert isinstance(result, ScanResult), result
        walked.extend(result.keys)
        cursor = result.cursor
        calls += 1
        assert calls < 10_000
        if cursor == 0:
            return walked


def test_tokens_cross_the_wire_shifted_into_signed_range() -> None:
    for token in (0, 1, 2**63, TOKEN_MAX):
        assert from_wire(to_wire(token)) == token
        message = msg.RangeScan(
            src="n1",
            req_id=1,
            ring_epoch=1,
            keyspace="ks",
            start=to_wire(token),
            end=to_wire(TOKEN_MAX),
            count=10,
        )
        assert codec.decode(codec.encode(message)) == message


def test_arc_end_partitions_the_token_space_into_arcs_with_one_preference_list() -> None:
    ring = build_ring([Member(node_id=f"n{i}") for i in range(1, 6)], epoch=1)
    token, arcs = 0, 0
    rng = random.Random(5)
    while True:
        end = arc_end(ring, token)
        assert end >= token
        homes = preference_list(ring, token, 3)
        for probe in (token, end, rng.randint(token, end)):
            assert preference_list(ring, probe, 3) == homes
        arcs += 1
        if end == TOKEN_MAX:
            break
        token = end + 1
    assert arcs == len(ring.vnode_tokens) + 1  # the arc of vnode 0 is split at TOKEN_MAX


@pytest.mark.parametrize("count", [1, 10, 1000])
def test_scan_through_any_node_walks_every_key_once(count: int) -> None:
    cluster = make_cluster(5)
    keys = fill(cluster, 300)
    for node in ("n1", "n4"):
        walked = scan_all(cluster, node, count)
        assert sorted(walked) == sorted(keys)  # once each: one replica lists an arc
        tokens = [key_token(k) for k in walked]
        assert tokens == sorted(tokens)


def test_keys_and_dbsize_are_cluster_wide_and_skip_deleted_keys() -> None:
    cluster = make_cluster(5)
    keys = fill(cluster, 200)
    gone = sorted(keys)[:30]
    for key in gone:
        assert cluster.call("n2", Mutate("ks", key, ops.Remove(), level=Level.ALL)) is True
    live = keys - set(gone)
    for node in cluster.nodes:
        result = cluster.call(node, Scan("ks", 0, 0, unbounded=True))
        assert isinstance(result, ScanResult) and result.cursor == 0
        assert sorted(result.keys) == sorted(live)
        assert cluster.call(node, Count("ks")) == len(live)


def test_n1_keyspace_lists_keys_held_only_by_other_nodes() -> None:
    ids = [f"n{i}" for i in range(1, 4)]
    ring = build_ring([Member(node_id=i) for i in ids], epoch=1)
    nodes = {}
    for i, node_id in enumerate(ids):
        node = Node(NodeConfig(node_id=node_id), MemoryEngine(), random.Random(i), T0, ring=ring)
        node.keyspaces["ks"] = KeyspaceSpec(name="ks", mode=ConflictMode.LWW, n_replicas=1)
        nodes[node_id] = node
    cluster = Cluster(nodes)
    keys = fill(cluster, 90)
    held = {n: nodes[n].count_keys("ks") for n in ids}
    assert all(0 < c < 90 for c in held.values()), held  # spread, one copy each
    assert cluster.call("n3", Count("ks")) == 90
    result = cluster.call("n3", Scan("ks", 0, 0, unbounded=True))
    assert isinstance(result, ScanResult) and sorted(result.keys) == sorted(keys)


def test_a_dead_replica_is_skipped_after_the_replica_timeout() -> None:
    cluster = make_cluster(5)
    keys = fill(cluster, 200)
    cluster.down.add("n3")
    assert sorted(scan_all(cluster, "n1", 25)) == sorted(keys)
    assert cluster.call("n1", Count("ks")) == len(keys)
    assert cluster.nodes["n1"]._suspected("n3", cluster.now)


def test_with_every_home_replica_of_an_arc_down_the_listing_is_refused_definitely() -> None:
    cluster = make_cluster(5)
    fill(cluster, 50)
    cluster.down.update({"n2", "n3", "n4"})
    result = cluster.call("n1", Count("ks"))
    assert isinstance(result, OpError), result
    assert result.kind is ErrorKind.UNAVAILABLE and result.definite


def test_a_replica_that_sends_the_walk_backwards_is_not_believed() -> None:
    cluster = make_cluster(5)
    keys = fill(cluster, 150)
    victim = cluster.nodes["n2"]
    honest = victim._on_range_scan

    def lying(m: msg.RangeScan, now_ms: int) -> None:
        victim._after_commit.append(
            (
                m.src,
                msg.RangeScanReply(
                    src="n2", req_id=m.req_id, ok=True, keys=[], done=False, next=m.start
                ),
            )
        )

    victim._on_range_scan = lying  # type: ignore[method-assign]
    assert sorted(scan_all(cluster, "n1", 40)) == sorted(keys)
    victim._on_range_scan = honest  # type: ignore[method-assign]


def test_a_scan_cursor_stays_valid_when_a_node_dies_between_calls() -> None:
    cluster = make_cluster(5)
    keys = fill(cluster, 200)
    first = cluster.call("n1", Scan("ks", 0, 60))
    assert isinstance(first, ScanResult) and first.cursor != 0
    cluster.down.add("n5")
    cursor, walked = first.cursor, list(first.keys)
    while cursor:
        step = cluster.call("n1", Scan("ks", cursor, 60))
        assert isinstance(step, ScanResult)
        walked.extend(step.keys)
        cursor = step.cursor
    assert sorted(walked) == sorted(keys)
