"""A node remembers its ring across a restart, and a joining node waits.

Found by ``ringkv verify`` on real processes: a node restarted after SIGKILL
started with a ring of itself, so until it heard from the others it
acknowledged writes as a cluster of one; a quorum read through another node
then missed an acknowledged write."""

from __future__ import annotations

import random

from ringkv.core import codec, ops
from ringkv.core import messages as msg
from ringkv.core.config import NodeConfig
from ringkv.core.errors import ErrorKind, OpError
from ringkv.core.membership import Membership, MembershipConfig
from ringkv.core.node import Mutate, Node, Read
from ringkv.storage.memory import MemoryEngine

T0 = 1_700_000_000_000


def joined_node(engine: MemoryEngine, others: list[str]) -> Node:
    """n1 with a membership that has heard an Alive from each of ``others``."""
    node = Node(NodeConfig(node_id="n1"), engine, random.Random(1), T0)
    membership = Membership(MembershipConfig(), "n1", "127.0.0.1:1", random.Random(2), T0)
    node.attach_membership(membership, T0)
    rows: list[list[str | int]] = [
        ["alive", o, 1, o, f"127.0.0.1:{i + 2}", "", 1, ""] for i, o in enumerate(others)
    ]
    sync = msg.MemberSync(src=others[0], src_addr="127.0.0.1:2", want_reply=False, members=rows)
    node.step(codec.decode(codec.encode(sync)), T0)
    return node


def reply(node: Node, request: object) -> object:
    token = object()
    node.submit(request, token, T0 + 10)  # type: ignore[arg-type]
    out = node.take_outbox()
    node.engine.flush()
    return dict(out.replies).get(token, "pending")


def test_a_restarted_node_starts_with_the_ring_it_knew() -> None:
    engine = MemoryEngine()
    first = joined_node(engine, ["n2", "n3"])
    assert first.cluster_size == 3
    epoch = first.ring.epoch
    engine.flush()
    # Restart on the same storage, with a fresh membership that knows no one yet.
    again = Node(NodeConfig(node_id="n1"), engine, random.Random(3), T0 + 5000)
    membership = Membership(
        MembershipConfig(), "n1", "127.0.0.1:1", random.Random(4), T0 + 5000, seeds=["127.0.0.1:2"]
    )
    again.attach_membership(membership, T0 + 5000)
    assert again.cluster_size == 3 and again.ring.epoch == epoch
    # A write is replicated (pending on the others' acks), not acknowledged alone.
    assert reply(again, Mutate("default", b"k", ops.Put(b"v"))) == "pending"


def test_a_node_joining_through_seeds_refuses_data_requests_until_it_hears_a_member() -> None:
    node = Node(NodeConfig(node_id="n9"), MemoryEngine(), random.Random(1), T0)
    membership = Membership(
        MembershipConfig(), "n9", "127.0.0.1:9", random.Random(2), T0, seeds=["127.0.0.1:2"]
    )
    node.attach_membership(membership, T0)
    refused = reply(node, Mutate("default", b"k", ops.Put(b"v")))
    assert isinstance(refused, OpError) and refused.kind is ErrorKind.UNAVAILABLE
    assert refused.definite and "joining" in refused.message
    assert isinstance(reply(node, Read("default", b"k")), OpError)


def test_a_member_that_left_is_forgotten() -> None:
    engine = MemoryEngine()
    node = joined_node(engine, ["n2", "n3"])
    rows: list[list[str | int]] = [["left", "n3", 9, "n3", "127.0.0.1:4", "", 1, ""]]
    node.step(msg.MemberSync(src="n3", src_addr="127.0.0.1:4", want_reply=False, members=rows), T0)
    assert sorted(m.node_id for m in node.ring.members) == ["n1", "n2"]
    engine.flush()
    again = Node(NodeConfig(node_id="n1"), engine, random.Random(3), T0)
    assert sorted(m.node_id for m in again.ring.members) == ["n1", "n2"]
