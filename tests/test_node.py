"""The core Node through its own interface: submit, tick, take_replies."""

from __future__ import annotations

import random

import pytest

from ringkv.core import ops
from ringkv.core.config import KeyspaceSpec, NodeConfig
from ringkv.core.errors import ErrorKind, OpError
from ringkv.core.node import (
    HLC_RESERVE_MS,
    Count,
    Mutate,
    Node,
    PutMany,
    Read,
    ReadResult,
    Scan,
    ScanResult,
)
from ringkv.core.record import ConflictMode
from ringkv.storage.memory import MemoryEngine

T0 = 1_700_000_000_000


def make_node(engine: MemoryEngine | None = None, now_ms: int = T0, **config: int) -> Node:
    return Node(NodeConfig(**config), engine or MemoryEngine(), random.Random(7), now_ms)  # type: ignore[arg-type]


def call(node: Node, request: object, now_ms: int = T0) -> object:
    node.submit(request, "token", now_ms)  # type: ignore[arg-type]
    [(token, result)] = node.take_replies()
    assert token == "token"
    return result


def read(node: Node, key: bytes, now_ms: int = T0, keyspace: str = "default") -> ReadResult:
    result = call(node, Read(keyspace, key), now_ms)
    assert isinstance(result, ReadResult)
    return result


def test_replies_come_back_with_their_tokens_in_order() -> None:
    node = make_node()
    for i in range(5):
        node.submit(Mutate("default", b"k%d" % i, ops.Put(b"v")), i, T0)
    node.submit(Count("default"), "count", T0)
    assert node.take_replies() == [
        (0, True),
        (1, True),
        (2, True),
        (3, True),
        (4, True),
        ("count", 5),
    ]
    assert node.take_replies() == []


def test_a_key_expires_once_now_is_past_its_expiry_as_in_redis() -> None:
    node = make_node()
    call(node, Mutate("default", b"k", ops.Put(b"v", ops.Expiry(at_ms=T0 + 10))))
    assert read(node, b"k", T0 + 10).newest is not None  # Redis: expired when now > when
    assert read(node, b"k", T0 + 11).newest is None


def test_tick_reclaims_expired_keys_with_bounded_work_per_tick() -> None:
    node = make_node(expire_reclaim_per_tick=10)
    for i in range(25):
        call(node, Mutate("default", b"e%d" % i, ops.Put(b"v", ops.Expiry(ttl_ms=5))))
    call(node, Mutate("default", b"keep", ops.Put(b"v")))
    assert call(node, Count("default")) == 26
    node.tick(T0 + 100)
    assert call(node, Count("default")) == 16
    assert node.expired_keys == 10
    node.tick(T0 + 200)
    node.tick(T0 + 300)
    assert call(node, Count("default")) == 1
    assert read(node, b"keep").newest is not None


def test_scan_skips_keys_that_expired_but_are_not_reclaimed() -> None:
    node = make_node()
    call(node, Mutate("default", b"gone", ops.Put(b"v", ops.Expiry(ttl_ms=5))))
    call(node, Mutate("default", b"here", ops.Put(b"v")))
    result = call(node, Scan("default", 0, 100), T0 + 50)
    assert isinstance(result, ScanResult)
    assert result.keys == [b"here"]


def test_hlc_never_goes_back_across_a_restart_even_if_the_wall_clock_does() -> None:
    engine = MemoryEngine()
    node = make_node(engine)
    call(node, Mutate("default", b"k", ops.Put(b"before")), T0 + 500)
    before = read(node, b"k").newest
    assert before is not None
    # Restart on the same storage with the wall clock an hour behind.
    restarted = make_node(engine, now_ms=T0 - 3_600_000)
    call(restarted, Mutate("default", b"k2", ops.Put(b"after")), T0 - 3_600_000)
    after = read(restarted, b"k2").newest
    assert after is not None
    assert after.hlc > before.hlc
    assert after.hlc.wall_ms <= T0 + 500 + HLC_RESERVE_MS + 1


def test_unknown_keyspace_and_oversized_keys_are_definite_errors() -> None:
    node = make_node(max_key_bytes=8, max_value_bytes=16)
    missing = call(node, Read("nope", b"k"))
    assert isinstance(missing, OpError) and missing.kind is ErrorKind.NOT_FOUND and missing.definite
    big_key = call(node, Mutate("default", b"k" * 9, ops.Put(b"v")))
    assert isinstance(big_key, OpError) and big_key.kind is ErrorKind.TOO_LARGE
    big_value = call(node, Mutate("default", b"k", ops.Put(b"v" * 17)))
    assert isinstance(big_value, OpError) and big_value.kind is ErrorKind.TOO_LARGE
    assert call(node, Count("default")) == 0


def test_put_many_checks_every_limit_before_writing_anything() -> None:
    node = make_node(max_value_bytes=16)
    result = call(node, PutMany("default", ((b"a", b"1"), (b"b", b"x" * 17), (b"c", b"3"))))
    assert isinstance(result, OpError) and result.kind is ErrorKind.TOO_LARGE
    assert call(node, Count("default")) == 0
    assert call(node, PutMany("default", ((b"a", b"1"), (b"b", b"2")))) is True
    assert (
        call(node, PutMany("default", ((b"b", b"x"), (b"z", b"2")), only_if_all_absent=True))
        is False
    )
    assert read(node, b"z").newest is None


def test_causal_keyspace_keeps_blind_writes_as_siblings_and_rmw_supersedes_them() -> None:
    node = make_node(siblings_max=3)
    node.keyspaces["carts"] = KeyspaceSpec(name="carts", mode=ConflictMode.CAUSAL, n_replicas=1)
    call(node, Mutate("carts", b"c", ops.Put(b"apple")), T0)
    call(node, Mutate("carts", b"c", ops.Put(b"pear")), T0 + 1)
    siblings = read(node, b"c", keyspace="carts")
    assert sorted(v.value for v in siblings.versions) == [b"apple", b"pear"]
    # A read-modify-write saw both, so it replaces both.
    assert call(node, Mutate("carts", b"c", ops.Append(b"!")), T0 + 2) == len(b"pear!")
    after = read(node, b"c", keyspace="carts")
    assert [v.value for v in after.versions] == [b"pear!"]
    # Past siblings_max, a blind write is refused and nothing is lost.
    call(node, Mutate("carts", b"c", ops.Put(b"x")), T0 + 3)
    call(node, Mutate("carts", b"c", ops.Put(b"y")), T0 + 4)
    refused = call(node, Mutate("carts", b"c", ops.Put(b"z")), T0 + 5)
    assert isinstance(refused, OpError) and refused.code == "SIBLINGS"
    assert len(read(node, b"c", keyspace="carts").versions) == 3


def test_lww_keyspace_keeps_one_version_and_its_context_grows() -> None:
    node = make_node()
    call(node, Mutate("default", b"k", ops.Put(b"1")))
    call(node, Mutate("default", b"k", ops.Put(b"2")), T0 + 1)
    result = read(node, b"k", T0 + 1)
    assert [v.value for v in result.versions] == [b"2"]
    assert result.context == {"n1": 2}


@pytest.mark.parametrize("bad", [0, -1])
def test_config_is_validated(bad: int) -> None:
    with pytest.raises(ValueError, match="expire_reclaim_per_tick"):
        make_node(expire_reclaim_per_tick=bad)


def test_an_unclean_restart_without_fsync_always_takes_a_new_actor_id() -> None:
    # Regression (tests/scenarios/power_loss_reuses_dot.txt): after a power
    # loss under --fsync batch a coordinator must not number a version with a
    # dot it may already have handed out.
    engine = MemoryEngine()  # its fsync policy is "never"
    first = make_node(engine)
    assert first.actor == "n1"
    call(first, Mutate("default", b"k", ops.Put(b"x")))
    crashed = make_node(engine)  # no close(): an unclean stop
    assert crashed.actor == "n1~1"
    call(crashed, Mutate("default", b"k", ops.Put(b"y")))
    assert read(crashed, b"k").context == {"n1": 1, "n1~1": 1}
    crashed.close()
    assert make_node(engine).actor == "n1~1"  # a clean stop keeps the incarnation
