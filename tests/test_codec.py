"""Every node-to-node message round-trips; anything else is a CodecError."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringkv.core import codec
from ringkv.core import messages as m

EXAMPLES: list[m.Message] = [
    m.KeyspaceDefined(src="n1", name="carts", mode="causal", n_replicas=3, level="quorum"),
    m.RangeScan(
        src="n1", req_id=4, ring_epoch=9, keyspace="ks", start=-(2**63), end=2**63 - 1, count=50
    ),
    m.RangeScanReply(src="n2", req_id=4, ok=True, keys=[b"a", b"\xff"], done=False, next=-5),
    m.RangeScanReply(src="n2", req_id=5, ok=False, keys=[], error="ring epoch 3 is not 9"),
    m.ReplicaWrite(src="n1", req_id=1, ring_epoch=3, keyspace="ks", key=b"k\x00", record=b"r"),
    m.ReplicaWrite(
        src="n1",
        req_id=2,
        ring_epoch=3,
        keyspace="ks",
        key=b"k",
        record=b"",
        hint_for="n4",
        want_ack=False,
    ),
    m.ReplicaWriteAck(src="n2", req_id=1, ok=True),
    m.ReplicaWriteAck(src="n2", req_id=1, ok=False, error="hint store full"),
    m.ReplicaRead(src="n3", req_id=9, ring_epoch=0, keyspace="default", key=b""),
    m.ReplicaReadReply(src="n3", req_id=9, ok=True, record=b"\x92\x01"),
    m.CoordinateWrite(
        src="n5",
        req_id=7,
        ring_epoch=1,
        keyspace="ks",
        key=b"k",
        value=b"v",
        expires_at_ms=0,
        tombstone=False,
        context=None,
        w=2,
    ),
    m.CoordinateWrite(
        src="n5",
        req_id=8,
        ring_epoch=1,
        keyspace="ks",
        key=b"k",
        value=b"",
        expires_at_ms=5,
        tombstone=True,
        context=["n1", 3, "n2", 1],
        w=3,
    ),
    m.CoordinateWriteReply(src="n1", req_id=7),
    m.CoordinateWriteReply(
        src="n1", req_id=8, error_kind="timeout", message="slow", definite=False
    ),
    m.Ping(
        src="n1",
        src_addr="10.0.0.1:7380",
        seq=1,
        target="n2",
        gossip=[["alive", "n3", 2, "n3", "10.0.0.3:7380", "eu-1", 1, "h3"]],
    ),
    m.Ping(src="n1", src_addr="h:1", seq=2, target="n2", gossip=[]),
    m.PingReq(
        src="n1",
        src_addr="h:1",
        seq=3,
        target="n4",
        target_addr="h:4",
        gossip=[["suspect", "n4", 0, "n1", "h:4", "", 1, ""]],
    ),
    m.PingAck(src="n2", seq=1, gossip=[["dead", "n5", 7, "n2", "h:5", "", 1, ""]]),
    m.MemberSync(
        src="n6",
        src_addr="h:6",
        want_reply=True,
        members=[
            ["alive", "n6", 0, "n6", "h:6", "", 2, ""],
            ["left", "n7", 3, "n7", "h:7", "", 1, ""],
        ],
    ),
    m.PaxosPrepare(
        src="n1", req_id=11, ring_epoch=4, keyspace="locks", key=b"job\x00",
        ballot_counter=7, ballot_proposer="n1~3",
    ),
    m.PaxosPromise(
        src="n2", req_id=11, ring_epoch=4, ok=True, ballot_counter=7, ballot_proposer="n1~3",
        promised_counter=7, promised_proposer="n1~3", accepted_counter=5,
        accepted_proposer="n3~1", value=b"v", version=2, expires_at_ms=9,
        origins=[5, "n3~1", 2, "n1~2"],
    ),
    m.PaxosPromise(
        src="n2", req_id=12, ring_epoch=5, ok=False, ballot_counter=7, ballot_proposer="n1~3",
        promised_counter=9, promised_proposer="n4~1", error="conflict",
    ),
    m.PaxosAccept(
        src="n1", req_id=11, ring_epoch=4, keyspace="locks", key=b"job", ballot_counter=7,
        ballot_proposer="n1~3", next_counter=8, value=None, version=3, expires_at_ms=0,
        origins=[7, "n1~3", 5, "n3~1", 2, "n1~2"],
    ),
    m.PaxosAccepted(
        src="n3", req_id=11, ring_epoch=4, ok=True, ballot_counter=7, ballot_proposer="n1~3",
        promised_counter=8, promised_proposer="n1~3",
    ),
    m.PaxosRead(src="n1", req_id=13, ring_epoch=4, keyspace="ks", key=b""),
    m.PaxosReadReply(src="n2", req_id=13, ring_epoch=4, ok=True, state=b"\x99\x01"),
    m.PaxosReadReply(src="n2", req_id=14, ring_epoch=6, ok=False, error="epoch"),
]  # fmt: skip


def test_every_message_type_has_an_example() -> None:
    assert {type(e) for e in EXAMPLES} == set(codec.TAGS.values())


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda e: type(e).__name__)
def test_round_trip(message: m.Message) -> None:
    assert codec.decode(codec.encode(message)) == message


def test_tags_are_append_only() -> None:
    # Changing a tag breaks nodes of other versions: this table may only grow.
    assert {tag: cls.__name__ for tag, cls in codec.TAGS.items()} == {
        1: "ReplicaWrite",
        2: "ReplicaWriteAck",
        3: "ReplicaRead",
        4: "ReplicaReadReply",
        5: "CoordinateWrite",
        6: "CoordinateWriteReply",
        7: "Ping",
        8: "PingReq",
        9: "PingAck",
        10: "MemberSync",
        11: "KeyspaceDefined",
        12: "RangeScan",
        13: "RangeScanReply",
        14: "PaxosPrepare",
        15: "PaxosPromise",
        16: "PaxosAccept",
        17: "PaxosAccepted",
        18: "PaxosRead",
        19: "PaxosReadReply",
    }


@pytest.mark.parametrize(
    "row",
    [
        [],
        ["1"],
        [99, "x"],
        [2, "n1", 1],  # too few fields
        [2, "n1", 1, True, "", "extra"],  # too many
        [2, "n1", "1", True, ""],  # req_id as text
        [2, "n1", 1, 1, ""],  # ok as an integer
        [2, "n1", 2**63, True, ""],  # out of int64
        [5, "n5", 7, 1, "ks", b"k", b"v", 0, False, ["n1", b"x"], 2, False],  # bad context item
        [16, "n1", 1, 1, "ks", b"k", 1, "n1", 2, None, 1, 0, [1, b"n1"]],  # bad origins item
        [17, "n3", 1, 1, "yes", 1, "n1", 1, "n1", ""],  # ok as text
    ],
)
def test_malformed_rows_are_codec_errors(row: list[object]) -> None:
    with pytest.raises(codec.CodecError):
        codec.decode(msgpack.packb(row, use_bin_type=True))


@given(st.binary(max_size=200))
def test_garbage_is_only_ever_a_codec_error(data: bytes) -> None:
    try:
        codec.decode(data)
    except codec.CodecError:
        pass


@given(st.sampled_from(EXAMPLES), st.integers(0, 10), st.binary(max_size=3))
def test_flipped_fields_are_rejected_or_well_typed(
    message: m.Message, index: int, junk: bytes
) -> None:
    row = msgpack.unpackb(codec.encode(message), raw=False)
    index = 1 + index % (len(row) - 1)
    row[index] = junk
    try:
        decoded = codec.decode(msgpack.packb(row, use_bin_type=True))
    except codec.CodecError:
        return
    field = dataclasses.fields(decoded)[index - 1]
    assert getattr(decoded, field.name) == junk
