"""The simulated network: codec on every message, loss, duplication, delay,
reordering, partitions and one-way cuts, all from a seeded generator."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest

from ringkv.core import messages as m
from ringkv.sim.network import LinkFault, NetworkConfig, SimNetwork, describe


def _read(i: int = 1, src: str = "n1") -> m.ReplicaRead:
    return m.ReplicaRead(src=src, req_id=i, ring_epoch=1, keyspace="ks", key=b"k%d" % i)


def _network(seed: int = 1, **config: object) -> SimNetwork:
    return SimNetwork(random.Random(seed), NetworkConfig(**config))  # type: ignore[arg-type]


def test_a_message_arrives_decoded_by_the_codec() -> None:
    net = _network()
    message = _read()
    copies, reason = net.send("n1", "n2", message)
    assert reason == ""
    assert len(copies) == 1
    (copy,) = copies
    assert 1 <= copy.delay_ms <= 10 + 100
    assert copy.kind == "ReplicaRead"
    arrived = net.arrive(copy)
    assert arrived == message
    assert arrived is not message, "delivered as decoded bytes, not the sender's object"
    assert net.counters() == {
        "ReplicaRead": {"sent": 1, "dropped": 0, "duplicated": 0, "delivered": 1}
    }


def test_full_partition_blocks_both_ways_and_isolates_unnamed_nodes() -> None:
    net = _network()
    net.partition([["n1", "n2"], ["n3"]])
    assert not net.blocked("n1", "n2")
    assert net.blocked("n1", "n3") and net.blocked("n3", "n1")
    assert net.blocked("n4", "n1") and net.blocked("n1", "n4"), "unnamed: cut off"
    assert net.blocked("n4", "n5")
    assert not net.blocked("n4", "n4")
    copies, reason = net.send("n1", "n3", _read())
    assert (copies, reason) == ([], "partition")
    assert net.dropped["ReplicaRead"] == 1
    assert net.describe_faults() == "partition n1,n2 | n3"
    net.heal()
    assert not net.blocked("n1", "n3")
    assert net.describe_faults() == "healthy"


def test_partition_refuses_a_node_in_two_groups() -> None:
    with pytest.raises(ValueError, match="two groups"):
        _network().partition([["n1", "n2"], ["n2"]])


def test_one_way_cut() -> None:
    net = _network()
    net.cut("n1", "n3")
    assert net.block_reason("n1", "n3") == "cut"
    assert not net.blocked("n3", "n1")
    assert net.send("n3", "n1", _read(src="n3"))[0]
    assert net.send("n1", "n3", _read()) == ([], "cut")
    net.uncut("n1", "n3")
    assert not net.blocked("n1", "n3")


def test_a_partition_during_flight_loses_the_message() -> None:
    net = _network()
    copies, _ = net.send("n1", "n2", _read())
    net.partition([["n1"], ["n2"]])
    assert net.arrive(copies[0]) is None
    assert net.dropped["ReplicaRead"] == 1
    assert net.delivered["ReplicaRead"] == 0


def test_loss_and_duplication_rates() -> None:
    net = _network(drop_rate=0.2, duplicate_rate=0.3)
    outcomes = [net.send("n1", "n2", _read(i)) for i in range(4000)]
    lost = sum(1 for copies, _ in outcomes if not copies)
    doubled = sum(1 for copies, _ in outcomes if len(copies) == 2)
    assert 700 < lost < 900
    assert 0.25 < doubled / (4000 - lost) < 0.35
    assert all(reason == "loss" for copies, reason in outcomes if not copies)
    assert net.dropped["ReplicaRead"] == lost
    assert net.duplicated["ReplicaRead"] == doubled


def test_independent_delays_reorder() -> None:
    net = _network(delay_min_ms=1, delay_max_ms=10, slow_rate=0.0)
    delays = [net.send("n1", "n2", _read(i))[0][0].delay_ms for i in range(200)]
    assert set(delays) == set(range(1, 11))
    assert any(a > b for a, b in pairwise(delays)), "later can arrive first"


def test_slow_tail_and_link_faults() -> None:
    net = _network(delay_min_ms=1, delay_max_ms=1, slow_rate=0.5, slow_delay_max_ms=50)
    delays = [net.send("n1", "n2", _read(i))[0][0].delay_ms for i in range(200)]
    assert max(delays) > 10
    net.set_link("n1", "n2", LinkFault(drop_rate=1.0))
    assert net.send("n1", "n2", _read()) == ([], "loss")
    assert net.send("n2", "n1", _read(src="n2"))[0], "a link fault is one-way"
    net.set_link("n1", "n2", LinkFault(extra_delay_ms=1000))
    assert net.send("n1", "n2", _read())[0][0].delay_ms >= 1001
    net.set_link("n1", "n2", None)
    assert net.send("n1", "n2", _read())[0][0].delay_ms < 1000


def test_messages_to_self_are_never_lost() -> None:
    net = _network(drop_rate=1.0, duplicate_rate=1.0)
    net.partition([["n1"], ["n2"]])
    copies, reason = net.send("n1", "n1", _read())
    assert reason == ""
    assert [(c.delay_ms, c.copy) for c in copies] == [(0, 0)]


def test_same_seed_same_fates() -> None:
    def fates(seed: int) -> list[tuple[int, ...]]:
        net = _network(seed, drop_rate=0.1, duplicate_rate=0.1)
        return [tuple(c.delay_ms for c in net.send("n1", "n2", _read(i))[0]) for i in range(300)]

    assert fates(5) == fates(5)
    assert fates(5) != fates(6)


def test_set_rates_validates() -> None:
    net = _network()
    net.set_rates(drop_rate=0.5)
    assert net.config.drop_rate == 0.5
    assert net.config.duplicate_rate == 0.0
    with pytest.raises(ValueError, match="drop_rate"):
        net.set_rates(drop_rate=1.5)


def test_describe_abbreviates_bytes() -> None:
    message = m.ReplicaWrite(
        src="n1", req_id=7, ring_epoch=1, keyspace="ks", key=b"a", record=bytes(40)
    )
    assert describe(message) == (
        "ReplicaWrite req_id=7 ring_epoch=1 keyspace=ks key=a record=<40B> hint_for='' want_ack=True"
    )
