"""The node-to-node transport over real sockets on 127.0.0.1.

Raw clients here speak the wire format as docs/transport.md describes it
(an independent check of the documented handshake); every wait polls a
condition against a deadline.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import random
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgpack
import pytest

from ringkv.core import codec
from ringkv.core.messages import Message, ReplicaRead, ReplicaReadReply
from ringkv.runtime.transport import (
    COUNTER_NAMES,
    WRITE_BATCH_BYTES_MAX,
    ClusterSecret,
    SecretError,
    Transport,
    load_cluster_secret,
)

SECRET = b"correct horse battery staple 42!"
OTHER_SECRET = b"an entirely different secret 99!"
CLUSTER = "test-cluster"
FAST = {
    "connect_timeout_s": 1.0,
    "handshake_timeout_s": 1.0,
    "backoff_initial_s": 0.01,
    "backoff_max_s": 0.2,
}

Factory = Callable[..., Awaitable[tuple[Transport, list[Message]]]]


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within the deadline")
        await asyncio.sleep(0.01)


def read(src: str, req_id: int) -> ReplicaRead:
    return ReplicaRead(src=src, req_id=req_id, ring_epoch=1, keyspace="default", key=b"k")


@pytest.fixture
async def make() -> AsyncIterator[Factory]:
    made: list[Transport] = []

    async def factory(
        node_id: str,
        *,
        secret: bytes = SECRET,
        cluster: str = CLUSTER,
        port: int = 0,
        **options: object,
    ) -> tuple[Transport, list[Message]]:
        inbox: list[Message] = []
        settings: dict[str, object] = {**FAST, **options}
        transport = Transport(
            node_id, cluster, secret, inbox.append, rng=random.Random(7), **settings
        )  # type: ignore[arg-type]
        await transport.start("127.0.0.1", port)
        made.append(transport)
        return transport, inbox

    yield factory
    for transport in made:
        await asyncio.wait_for(transport.close(), timeout=5)


def meet(*transports: Transport) -> None:
    """Give every transport every other's address (membership's job later)."""
    for a in transports:
        for b in transports:
            if a is not b:
                assert b.port is not None
                a.set_peer_address(b.node_id, "127.0.0.1", b.port)


# -- raw peers that follow docs/transport.md ----------------------------------


def _send_frame(writer: asyncio.StreamWriter, body: bytes) -> None:
    writer.write(struct.pack(">I", len(body)) + body)


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (length,) = struct.unpack(">I", await reader.readexactly(4))
    return await reader.readexactly(length)


def _lp(name: str) -> bytes:
    return len(name.encode()).to_bytes(2, "big") + name.encode()


def _proof(secret: bytes, nonce_i: bytes, nonce_r: bytes, ids: tuple[str, str], label: bytes):
    data = b"ringkv-v1" + nonce_i + nonce_r + _lp(CLUSTER) + _lp(ids[0]) + _lp(ids[1]) + label
    return hmac.new(secret, data, hashlib.sha256).digest()


async def raw_join(
    port: int, node_id: str, *, secret: bytes = SECRET, nonce: bytes | None = None, mac=None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, dict[str, object]]:
    """Handshake as an initiator by hand; returns the streams and the last
    handshake frame received (the responder's proof, or a refusal)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    nonce = nonce or os.urandom(16)
    hello = {"t": "hello", "v": 1, "cluster": CLUSTER, "node": node_id, "nonce": nonce}
    _send_frame(writer, msgpack.packb(hello))
    theirs = msgpack.unpackb(await _read_frame(reader))
    assert theirs["t"] == "hello" and len(theirs["nonce"]) == 16
    ids = (node_id, theirs["node"])
    mine = mac or _proof(secret, nonce, theirs["nonce"], ids, b"initiator")
    _send_frame(writer, msgpack.packb({"t": "proof", "mac": mine}))
    last = msgpack.unpackb(await _read_frame(reader))
    if last["t"] == "proof":  # the responder proves itself: check it like a peer would
        assert last["mac"] == _proof(secret, nonce, theirs["nonce"], ids, b"responder")
    last["_my_mac"] = mine
    last["_my_nonce"] = nonce
    return reader, writer, last


async def closed_by_peer(reader: asyncio.StreamReader, timeout_s: float = 3.0) -> bool:
    """True once the peer has closed the connection (EOF or reset)."""
    try:
        async with asyncio.timeout(timeout_s):
            while await reader.read(65536):
                pass
    except ConnectionError:
        return True
    return True


# -- exchanging messages ------------------------------------------------------


async def test_two_transports_exchange_messages_both_ways(make: Factory) -> None:
    a, inbox_a = await make("n1")
    b, inbox_b = await make("n2")
    meet(a, b)
    assert a.send("n2", read("n1", 1))
    reply = ReplicaReadReply(src="n2", req_id=1, ok=True, record=b"\x00" * 1000)
    assert b.send("n1", reply)
    await wait_until(lambda: len(inbox_a) == 1 and len(inbox_b) == 1)
    assert inbox_b == [read("n1", 1)]
    assert inbox_a == [reply]
    assert a.counters["handshakes_ok"] == 2  # its outbound and b's inbound
    assert a.counters["frames_sent"] == 1 and a.counters["frames_received"] == 1
    assert a.connected_peers() == ["n2"]
    assert set(a.counters) == set(COUNTER_NAMES)


async def test_three_transports_all_to_all(make: Factory) -> None:
    nodes = [await make(f"n{i}") for i in (1, 2, 3)]
    transports = [t for t, _ in nodes]
    meet(*transports)
    for sender in transports:
        for receiver in transports:
            if sender is not receiver:
                assert sender.send(receiver.node_id, read(sender.node_id, 7))
    await wait_until(lambda: all(len(inbox) == 2 for _, inbox in nodes))
    for transport, inbox in nodes:
        others = sorted(t.node_id for t in transports if t is not transport)
        assert sorted(m.src for m in inbox) == others


async def test_order_per_peer_is_preserved(make: Factory) -> None:
    a, _ = await make("n1")
    b, inbox_b = await make("n2")
    meet(a, b)
    for req_id in range(500):
        assert a.send("n2", read("n1", req_id))
    await wait_until(lambda: len(inbox_b) == 500)
    assert [m.req_id for m in inbox_b] == list(range(500))


async def test_frames_queued_together_arrive_whole_in_order_and_counted(make: Factory) -> None:
    # Frames queued in one turn leave in writes of up to WRITE_BATCH_BYTES_MAX
    # bytes (a large frame ends a batch). Each arrives whole and in order, is
    # counted on both sides, and frees its bytes in the queue: every wave
    # fits the byte limit only if the waves before it were taken off.
    def wave(number: int) -> list[Message]:
        messages: list[Message] = []
        for i in range(100):
            size = WRITE_BATCH_BYTES_MAX // 3 if i % 40 == 7 else i
            record = bytes([i]) * size
            req_id = 1000 * number + i
            messages.append(ReplicaReadReply(src="n1", req_id=req_id, ok=True, record=record))
        return messages

    waves = [wave(number) for number in range(3)]
    wave_bytes_max = max(sum(len(codec.encode(m)) for m in messages) for messages in waves)
    a, _ = await make("n1", send_queue_max_bytes=wave_bytes_max + 64)
    b, inbox_b = await make("n2")
    meet(a, b)
    sent: list[Message] = []
    for messages in waves:
        for message in messages:
            assert a.send("n2", message)
        sent.extend(messages)
        await wait_until(lambda: len(inbox_b) == len(sent))
    assert inbox_b == sent
    wire_bytes = sum(4 + len(codec.encode(message)) for message in sent)
    assert a.counters["frames_sent"] == len(sent) == b.counters["frames_received"]
    assert a.counters["bytes_sent"] == wire_bytes == b.counters["bytes_received"]


async def test_a_message_to_itself_is_delivered_locally(make: Factory) -> None:
    a, inbox_a = await make("n1")
    assert a.send("n1", read("n1", 3))
    await wait_until(lambda: inbox_a == [read("n1", 3)])
    assert a.counters["delivered_local"] == 1 and a.counters["frames_sent"] == 0


async def test_reconnects_after_the_peer_restarts(make: Factory) -> None:
    a, _ = await make("n1")
    b, inbox_b = await make("n2")
    meet(a, b)
    assert a.send("n2", read("n1", 1))
    await wait_until(lambda: len(inbox_b) == 1)
    port = b.port
    await b.close()
    await wait_until(lambda: a.counters["disconnects"] == 1)

    b2, inbox_b2 = await make("n2", port=port)  # same address, new process
    assert a.send("n2", read("n1", 2))
    await wait_until(lambda: read("n1", 2) in inbox_b2)
    assert a.counters["connects"] == 2

    await b2.close()
    b3, inbox_b3 = await make("n2")  # new address, told by membership
    assert b3.port is not None
    a.set_peer_address("n2", "127.0.0.1", b3.port)
    await wait_until(lambda: a.counters["disconnects"] == 2)
    assert a.send("n2", read("n1", 3))
    await wait_until(lambda: read("n1", 3) in inbox_b3)


# -- refusing strangers -------------------------------------------------------


async def test_wrong_secret_is_refused_on_both_sides(make: Factory, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    a, inbox_a = await make("n1")
    b, inbox_b = await make("n2", secret=OTHER_SECRET)
    meet(a, b)
    assert a.send("n2", read("n1", 1))  # a initiates: b refuses a's proof
    assert b.send("n1", read("n2", 1))  # b initiates: a refuses b's proof
    await wait_until(
        lambda: all(
            t.counters["handshake_refused_proof"] >= 1
            and t.counters["handshake_refused_by_peer"] >= 1
            for t in (a, b)
        )
    )
    assert inbox_a == [] and inbox_b == []
    assert a.counters["handshakes_ok"] == 0 and b.counters["handshakes_ok"] == 0
    assert "wrong cluster secret" in caplog.text
    for secret in (SECRET, OTHER_SECRET):
        assert secret.decode() not in caplog.text
        assert secret.hex() not in caplog.text


async def test_wrong_cluster_name_is_refused_on_both_sides(make: Factory) -> None:
    a, inbox_a = await make("n1")
    b, inbox_b = await make("n2", cluster="another-cluster")
    meet(a, b)
    assert a.send("n2", read("n1", 1))
    assert b.send("n1", read("n2", 1))
    await wait_until(
        lambda: (
            a.counters["handshake_refused_cluster"] >= 2
            and b.counters["handshake_refused_cluster"] >= 2
        )
    )
    assert inbox_a == [] and inbox_b == []
    assert a.counters["handshakes_ok"] == 0 and b.counters["handshakes_ok"] == 0


async def test_a_replayed_proof_is_refused(make: Factory) -> None:
    a, inbox_a = await make("n1")
    _, writer, last = await raw_join(a.port or 0, "n9")
    assert last["t"] == "proof"
    writer.close()
    # Same hello nonce, same proof: the responder's fresh nonce makes it stale.
    nonce, mac = last["_my_nonce"], last["_my_mac"]
    reader, writer, last = await raw_join(a.port or 0, "n9", nonce=nonce, mac=mac)
    assert last == {"t": "refused", "reason": "proof", "_my_mac": mac, "_my_nonce": nonce}
    assert await closed_by_peer(reader)
    writer.close()
    assert a.counters["handshake_refused_proof"] == 1
    assert a.counters["handshakes_ok"] == 1
    assert inbox_a == []


async def test_a_silent_client_is_dropped_after_the_handshake_timeout(make: Factory) -> None:
    a, _ = await make("n1", handshake_timeout_s=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", a.port)
    started = time.monotonic()
    assert await closed_by_peer(reader, timeout_s=3.0)
    assert time.monotonic() - started < 2.0
    writer.close()
    await wait_until(lambda: a.counters["handshake_timeouts"] == 1)


# -- malformed frames from an authenticated peer ------------------------------


@pytest.mark.parametrize(
    ("payload", "counter"),
    [
        (struct.pack(">I", 5) + b"\xc1\xc1\xc1\xc1\xc1", "frames_undecodable"),
        (struct.pack(">I", 5) + msgpack.packb([999, 1]), "frames_undecodable"),  # unknown tag
        (struct.pack(">I", 0xFFFFFFFF), "frames_too_big"),
        (struct.pack(">I", 4097), "frames_too_big"),  # just past frame_max_bytes
    ],
)
async def test_a_malformed_frame_disconnects_only_that_peer(
    make: Factory, payload: bytes, counter: str
) -> None:
    a, inbox_a = await make("n1", frame_max_bytes=4096)
    b, _ = await make("n2")
    meet(a, b)
    reader, writer, last = await raw_join(a.port or 0, "n9")
    assert last["t"] == "proof"
    writer.write(payload)
    assert await closed_by_peer(reader)
    writer.close()
    assert a.counters[counter] == 1
    assert b.send("n1", read("n2", 1))  # another peer keeps working
    await wait_until(lambda: inbox_a == [read("n2", 1)])


async def test_a_frame_with_a_spoofed_src_disconnects(make: Factory) -> None:
    a, inbox_a = await make("n1")
    b, _ = await make("n2")
    meet(a, b)
    reader, writer, _ = await raw_join(a.port or 0, "n9")
    body = codec.encode(read("n2", 1))  # n9 pretends to be n2
    writer.write(struct.pack(">I", len(body)) + body)
    assert await closed_by_peer(reader)
    writer.close()
    assert a.counters["frames_spoofed_src"] == 1
    assert inbox_a == []
    # A real member that sends someone else's message is cut off the same way.
    mallory, _ = await make("n3")
    meet(a, mallory)
    assert mallory.send("n1", read("n2", 2))
    await wait_until(lambda: a.counters["frames_spoofed_src"] == 2)
    assert b.send("n1", read("n2", 3))
    await wait_until(lambda: inbox_a == [read("n2", 3)])


async def test_frames_after_the_handshake_from_a_raw_peer_are_delivered(make: Factory) -> None:
    a, inbox_a = await make("n1")
    _, writer, _ = await raw_join(a.port or 0, "n9")
    for req_id in (1, 2):
        body = codec.encode(read("n9", req_id))
        writer.write(struct.pack(">I", len(body)) + body)
    await wait_until(lambda: inbox_a == [read("n9", 1), read("n9", 2)])
    writer.close()


# -- limits ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_send_queue_bound_drops_and_counts(make: Factory) -> None:
    a, _ = await make("n1", send_queue_max=5)
    a.set_peer_address("n2", "127.0.0.1", free_port())  # nobody listens there
    results = [a.send("n2", read("n1", i)) for i in range(8)]
    assert results == [True] * 5 + [False] * 3
    assert a.counters["send_dropped_queue_full"] == 3
    assert a.queued("n2") == 5
    await wait_until(lambda: a.counters["connect_failures"] >= 2)  # it keeps retrying
    assert not a.send("n3", read("n1", 1))  # no address known
    assert a.counters["send_dropped_no_address"] == 1
    a.forget_peer("n2")
    assert a.counters["send_dropped_forgotten"] == 5 and a.queued("n2") == 0


async def test_queued_messages_are_sent_once_the_peer_comes_up(make: Factory) -> None:
    a, _ = await make("n1")
    port = free_port()
    a.set_peer_address("n2", "127.0.0.1", port)
    for req_id in range(3):
        assert a.send("n2", read("n1", req_id))
    await wait_until(lambda: a.counters["connect_failures"] >= 1)
    _, inbox_b = await make("n2", port=port)
    await wait_until(lambda: len(inbox_b) == 3, timeout_s=5)
    assert [m.req_id for m in inbox_b] == [0, 1, 2]


async def test_an_oversized_message_is_refused_by_the_sender(make: Factory) -> None:
    a, _ = await make("n1", frame_max_bytes=1024)
    b, inbox_b = await make("n2")
    meet(a, b)
    big = ReplicaReadReply(src="n1", req_id=1, ok=True, record=b"x" * 2000)
    assert not a.send("n2", big)
    assert a.counters["send_dropped_too_big"] == 1
    assert a.send("n2", read("n1", 2))
    await wait_until(lambda: inbox_b == [read("n1", 2)])


async def test_inbound_connection_limit(make: Factory) -> None:
    a, _ = await make("n1", inbound_connections_max=1, handshake_timeout_s=2.0)
    first_reader, first = await asyncio.open_connection("127.0.0.1", a.port)
    await first_reader.readexactly(4)  # its hello: the first connection is being served
    second_reader, second = await asyncio.open_connection("127.0.0.1", a.port)
    assert await closed_by_peer(second_reader, timeout_s=2.0)
    assert a.counters["inbound_refused_limit"] == 1
    first.close()
    second.close()


async def test_close_is_prompt_and_final(make: Factory) -> None:
    a, _ = await make("n1")
    b, _ = await make("n2")
    meet(a, b)
    assert a.send("n2", read("n1", 1))
    await wait_until(lambda: b.counters["frames_received"] == 1)
    started = time.monotonic()
    await a.close()
    assert time.monotonic() - started < 2.5
    assert not a.send("n2", read("n1", 2))
    assert a.counters["send_dropped_closed"] == 1
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", a.port)


# -- the secret -------------------------------------------------------------------


async def test_the_secret_never_shows(make: Factory, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    text = SECRET.decode()
    a, _ = await make("n1")
    assert text not in repr(a) and text not in str(vars(a))
    secret = ClusterSecret(SECRET)
    assert repr(secret) == str(secret) == "ClusterSecret(<hidden>)"
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(secret)
    short = "tooshort"
    with pytest.raises(SecretError) as error:
        Transport("n1", CLUSTER, short.encode(), lambda m: None)
    assert short not in str(error.value)
    logger = logging.getLogger("test.secret")
    for kwargs in (
        {"file": None, "env": {"RINGKV_CLUSTER_SECRET": short}, "flag_value": None},
        {"file": None, "env": {}, "flag_value": short},
    ):
        with pytest.raises(SecretError) as error:
            load_cluster_secret(log=logger, **kwargs)  # type: ignore[arg-type]
        assert short not in str(error.value) and "too short" in str(error.value)
    assert text not in caplog.text and short not in caplog.text


def test_load_cluster_secret_precedence(tmp_path: Path, caplog) -> None:
    logger = logging.getLogger("test.secret")
    file = tmp_path / "secret"
    file.write_bytes(SECRET + b"\n")
    file.chmod(0o600)
    env = {"RINGKV_CLUSTER_SECRET": OTHER_SECRET.decode()}
    from_file = load_cluster_secret(str(file), env, "flag-value-0123456789", logger)
    assert from_file is not None
    assert from_file.mac(b"x") == ClusterSecret(SECRET).mac(b"x")  # newline stripped
    from_env = load_cluster_secret(None, env, "flag-value-0123456789", logger)
    assert from_env is not None and from_env.mac(b"x") == ClusterSecret(OTHER_SECRET).mac(b"x")
    assert caplog.text == ""
    with caplog.at_level(logging.WARNING):
        from_flag = load_cluster_secret(None, {}, "flag-value-0123456789", logger)
    assert from_flag is not None
    assert "--cluster-secret puts the secret in argv" in caplog.text
    assert "flag-value" not in caplog.text
    assert load_cluster_secret(None, {}, None, logger) is None
    with pytest.raises(SecretError, match="cannot read"):
        load_cluster_secret(str(tmp_path / "missing"), {}, None, logger)
    file.chmod(0o644)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_cluster_secret(str(file), {}, None, logger)
    assert "chmod 600" in caplog.text and SECRET.decode() not in caplog.text


async def test_a_changed_address_moves_the_connection(make: Factory) -> None:
    a, _ = await make("n1")
    old, inbox_old = await make("n2")
    meet(a, old)
    assert a.send("n2", read("n1", 1))
    await wait_until(lambda: len(inbox_old) == 1)
    new, inbox_new = await make("n2")  # n2 came back elsewhere; the old one still runs
    assert new.port is not None
    a.set_peer_address("n2", "127.0.0.1", new.port)
    await wait_until(lambda: a.counters["disconnects"] == 1)
    assert a.send("n2", read("n1", 2))
    await wait_until(lambda: inbox_new == [read("n1", 2)])
    assert inbox_old == [read("n1", 1)]
