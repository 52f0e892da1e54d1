"""Node-to-node TCP: length-prefixed frames, an authenticating handshake, queues.

Theory of operation (docs/transport.md has the diagrams). Every frame is a
4-byte big-endian length and a body; after the handshake the body is one
core message (``core/codec.py``). A node keeps one *outbound* connection per
peer, opened on demand by the first ``send`` to it and fed from that peer's
bounded queue; it *accepts* any number of inbound connections (up to
``inbound_connections_max``), reads them one frame at a time and hands each
decoded message to ``on_message``. So a pair of nodes talks over two
connections, one per direction, and each connection carries frames one way.
The frames queued for a peer leave together, in one write of up to
``WRITE_BATCH_BYTES_MAX``: what a turn sends to a peer costs one ``send(2)``.

Before any message is accepted both ends run a challenge-response handshake
(ISO/IEC 9798-4 style, as in RFC 1994 CHAP but mutual): each sends a hello
(protocol version, cluster name, node id, a fresh 16-byte nonce); the
initiator proves knowledge of the cluster secret with an HMAC-SHA256 over
both nonces, the cluster name, both node ids and the label ``initiator``; the
responder verifies it and only then proves itself with the label
``responder``. The responder, which anyone on the network can reach, thus
never computes a proof for a stranger; the initiator's proof covers its own
fresh nonce, so it is worthless for any other session.

Nothing here decides anything about the protocol (STYLE.md rule 20). A lost
message is a network drop to the core, whose requests have timeouts and
retries of their own: so when a peer's queue is full ``send`` drops the
message, counts it and returns False rather than block the event loop or
grow without bound (STYLE.md rule 8). A malformed frame from a peer (too big,
undecodable, or naming another sender than the one that authenticated)
closes the connection and is counted (rule 9).

The cluster secret lives only inside a ``ClusterSecret``, whose repr hides it
and which computes MACs without handing the bytes out: it never reaches a
log line, an exception message or a repr.

For tests only (``serve --faults``), a transport made with a ``LinkFaults``
table loses or holds frames per link, by the peer's authenticated id:
outbound ones as they reach the head of the send queue, inbound ones as they
are read (runtime/faults.py, docs/faults.md). Handshakes are never affected.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import random
import secrets
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from ringkv.core import codec
from ringkv.core.messages import Message
from ringkv.runtime.faults import (
    FAULT_COUNTER_NAMES,
    DelayLine,
    Direction,
    LinkFault,
    LinkFaults,
    LinkMode,
)

__all__ = [
    "COUNTER_NAMES",
    "ENV_CLUSTER_SECRET",
    "FRAME_MAX_BYTES_DEFAULT",
    "PROTOCOL_VERSION",
    "SECRET_MIN_BYTES",
    "ClusterSecret",
    "SecretError",
    "Transport",
    "load_cluster_secret",
]

log = logging.getLogger("ringkv.transport")

PROTOCOL_VERSION = 1
# Values go up to 8 MiB (NodeConfig.max_value_bytes); a ReplicaWrite carries a
# sibling set, so room for two full values plus 64 KiB of key and fields.
FRAME_MAX_BYTES_DEFAULT = 16 * 1024 * 1024 + 64 * 1024
SEND_QUEUE_MAX_DEFAULT = 1024  # messages per peer
# A connection whose socket accepts no bytes for this long is given up and
# redialled (a peer that is stopped, or a half-dead connection the kernel has
# not reported yet): the queue behind it must not wait forever.
WRITE_STALL_S = 10.0
# Frames queued for a peer go out together, in writes of at most this many
# bytes of bodies (one frame alone may be bigger): a copy no larger than that.
WRITE_BATCH_BYTES_MAX = 256 * 1024
SEND_QUEUE_MAX_BYTES_DEFAULT = 64 * 1024 * 1024  # per peer: four maximal frames
INBOUND_CONNECTIONS_MAX_DEFAULT = 256  # a cluster's members plus reconnect overlap
HANDSHAKE_FRAME_MAX_BYTES = 512  # before authentication a stranger gets no more
NONCE_BYTES = 16
NAME_MAX_BYTES = 128  # node ids and cluster names in a hello
SECRET_MIN_BYTES = 16  # 128 bits if random
SECRET_FILE_MAX_BYTES = 4096
CLOSE_WAIT_S = 2.0  # close() waits at most this long per phase
LOG_INTERVAL_S = 10.0  # at most one warning per counter per interval; counters stay exact
ENV_CLUSTER_SECRET = "RINGKV_CLUSTER_SECRET"

COUNTER_NAMES = (
    "inbound_accepted",
    "inbound_refused_limit",
    "connects",
    "connect_failures",
    "disconnects",
    "write_stalls",
    "handshakes_ok",
    "handshake_timeouts",
    "handshake_failed",
    "handshake_malformed",
    "handshake_refused_version",
    "handshake_refused_cluster",
    "handshake_refused_peer_id",
    "handshake_refused_proof",
    "handshake_refused_by_peer",
    "frames_sent",
    "bytes_sent",
    "frames_received",
    "bytes_received",
    "frames_too_big",
    "frames_undecodable",
    "frames_spoofed_src",
    "send_dropped_queue_full",
    "send_dropped_too_big",
    "send_dropped_no_address",
    "send_dropped_closed",
    "send_dropped_forgotten",
    "delivered_local",
    "on_message_errors",
    *FAULT_COUNTER_NAMES,
)

_HEADER = struct.Struct(">I")
_MAC_DOMAIN = b"ringkv-v1"
_INITIATOR = b"initiator"
_RESPONDER = b"responder"


class SecretError(ValueError):
    """The cluster secret is missing, unreadable or too short (never contains it)."""


class ClusterSecret:
    """The cluster secret: computes MACs, never shows itself."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        if not isinstance(value, bytes):
            raise TypeError("a cluster secret is bytes")
        if len(value) < SECRET_MIN_BYTES:
            raise SecretError(
                f"the cluster secret is too short: use at least {SECRET_MIN_BYTES} "
                "random bytes (for example `openssl rand -hex 32`)"
            )
        self._value = value

    def mac(self, data: bytes) -> bytes:
        return hmac.new(self._value, data, hashlib.sha256).digest()

    def __repr__(self) -> str:
        return "ClusterSecret(<hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a ClusterSecret cannot be pickled")


def load_cluster_secret(
    file: str | None,
    env: Mapping[str, str],
    flag_value: str | None,
    log: logging.Logger,
) -> ClusterSecret | None:
    """DESIGN.md's rule: the file, else ``$RINGKV_CLUSTER_SECRET``, else the
    ``--cluster-secret`` flag (with a warning: argv is visible in ``ps``).

    Returns None when none is given (the caller decides whether a node without
    a secret may run); raises ``SecretError`` for an unreadable file or a
    secret shorter than ``SECRET_MIN_BYTES``. Surrounding whitespace (the
    file's trailing newline) is stripped."""
    if file is not None:
        try:
            with open(file, "rb") as handle:
                raw = handle.read(SECRET_FILE_MAX_BYTES + 1)
                mode = os.fstat(handle.fileno()).st_mode
        except OSError as exc:
            raise SecretError(
                f"cannot read the cluster secret file {file}: {exc.strerror}"
            ) from None
        if len(raw) > SECRET_FILE_MAX_BYTES:
            raise SecretError(
                f"the cluster secret file {file} is over {SECRET_FILE_MAX_BYTES} bytes"
            )
        if os.name == "posix" and mode & 0o077:
            log.warning("the cluster secret file %s is readable by others: chmod 600 it", file)
        return _checked_secret(raw.strip(), f"the cluster secret file {file}")
    value = env.get(ENV_CLUSTER_SECRET)
    if value is not None:
        return _checked_secret(value.strip().encode(), f"${ENV_CLUSTER_SECRET}")
    if flag_value is not None:
        log.warning(
            "--cluster-secret puts the secret in argv (visible in ps and shell history); "
            "use --cluster-secret-file or $%s",
            ENV_CLUSTER_SECRET,
        )
        return _checked_secret(flag_value.strip().encode(), "--cluster-secret")
    return None


def _checked_secret(value: bytes, source: str) -> ClusterSecret:
    try:
        return ClusterSecret(value)
    except SecretError as exc:
        raise SecretError(f"{source}: {exc}") from None


# -- frames and handshake messages --------------------------------------------


class _FrameTooBig(Exception):
    def __init__(self, length: int) -> None:
        super().__init__(f"frame of {length} bytes")
        self.length = length


class _Refused(Exception):
    """The handshake failed; ``counter`` names what to count."""

    def __init__(self, counter: str, detail: str) -> None:
        super().__init__(detail)
        self.counter = counter


def _frame(body: bytes) -> bytes:
    return _HEADER.pack(len(body)) + body


def _take_frames(link: _PeerLink) -> tuple[bytes, int]:
    """The frames queued for ``link`` (at least one, then as many as fit in
    WRITE_BATCH_BYTES_MAX) as one buffer to write, and how many: one write,
    so one send(2) for what a turn queued instead of one per message."""
    queue = link.queue
    body = queue.popleft()
    parts = [_HEADER.pack(len(body)), body]
    size = len(body)
    while queue and size + len(queue[0]) <= WRITE_BATCH_BYTES_MAX:
        body = queue.popleft()
        parts += (_HEADER.pack(len(body)), body)
        size += len(body)
    link.queued_bytes -= size
    return b"".join(parts), len(parts) // 2


async def _read_frame(reader: asyncio.StreamReader, max_bytes: int) -> bytes:
    (length,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if length > max_bytes:
        raise _FrameTooBig(length)
    return await reader.readexactly(length)


@dataclass(frozen=True, slots=True)
class _Hello:
    version: int
    cluster: str
    node_id: str
    nonce: bytes

    def pack(self) -> bytes:
        return _pack(
            "hello", v=self.version, cluster=self.cluster, node=self.node_id, nonce=self.nonce
        )


def _pack(kind: str, **fields: object) -> bytes:
    packed: bytes = msgpack.packb({"t": kind, **fields}, use_bin_type=True)
    return packed


def _unpack_handshake(body: bytes, kind: str) -> dict[str, object]:
    """A handshake map of the expected kind; a refusal or junk raises _Refused."""
    try:
        fields = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException):
        raise _Refused("handshake_malformed", "undecodable handshake frame") from None
    if type(fields) is not dict:
        raise _Refused("handshake_malformed", "a handshake frame is a map")
    if fields.get("t") == "refused":
        reason = fields.get("reason")
        shown = reason[:32] if type(reason) is str else "?"
        raise _Refused("handshake_refused_by_peer", f"the peer refused us ({shown!r})")
    if fields.get("t") != kind:
        raise _Refused("handshake_malformed", f"expected a {kind}")
    return fields


def _parse_hello(body: bytes) -> _Hello:
    fields = _unpack_handshake(body, "hello")
    version, cluster = fields.get("v"), fields.get("cluster")
    node_id, nonce = fields.get("node"), fields.get("nonce")
    if not (
        type(version) is int
        and type(cluster) is str
        and type(node_id) is str
        and type(nonce) is bytes
        and len(nonce) == NONCE_BYTES
        and 0 < len(node_id.encode()) <= NAME_MAX_BYTES
        and len(cluster.encode()) <= NAME_MAX_BYTES
    ):
        raise _Refused("handshake_malformed", "malformed hello")
    return _Hello(version, cluster, node_id, nonce)


def _parse_proof(body: bytes) -> bytes:
    mac = _unpack_handshake(body, "proof").get("mac")
    if type(mac) is not bytes:
        raise _Refused("handshake_malformed", "malformed proof")
    return mac


def _proof_input(cluster: str, initiator: _Hello, responder: _Hello, label: bytes) -> bytes:
    """What a proof MACs: fixed order, names length-prefixed so no two
    different sessions share an input."""
    parts = [_MAC_DOMAIN, initiator.nonce, responder.nonce]
    for name in (cluster, initiator.node_id, responder.node_id):
        encoded = name.encode()
        parts += [len(encoded).to_bytes(2, "big"), encoded]
    parts.append(label)
    return b"".join(parts)


def _peername(writer: asyncio.StreamWriter) -> str:
    address = writer.get_extra_info("peername")
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return "?"


def _keepalive(writer: asyncio.StreamWriter) -> None:
    """TCP keepalive, so that a half-open connection eventually errors out."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


class _PeerLink:
    """One peer's outbound side: its bounded queue of encoded frames and the
    task that connects, handshakes and writes them."""

    __slots__ = (
        "failures", "node_id", "queue", "queued_at", "queued_bytes", "remote_id", "task",
        "wakeup", "writer",
    )  # fmt: skip

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        # The authenticated id of the node at the other end: node_id, or, for
        # a seed dialled by address ("addr:host:port"), whoever answered.
        self.remote_id = node_id
        self.queue: deque[bytes] = deque()
        # Event-loop time each queued frame was queued at, kept only with
        # fault injection on (a delay fault holds a frame until then + delay).
        self.queued_at: deque[float] = deque()
        self.queued_bytes = 0
        self.wakeup = asyncio.Event()
        self.writer: asyncio.StreamWriter | None = None
        self.failures = 0
        self.task: asyncio.Task[None] | None = None


class Transport:
    """Node-to-node TCP for one node; see the module docstring."""

    def __init__(
        self,
        node_id: str,
        cluster_name: str,
        secret: bytes | ClusterSecret,
        on_message: Callable[[Message], None],
        *,
        send_queue_max: int = SEND_QUEUE_MAX_DEFAULT,
        send_queue_max_bytes: int = SEND_QUEUE_MAX_BYTES_DEFAULT,
        frame_max_bytes: int = FRAME_MAX_BYTES_DEFAULT,
        inbound_connections_max: int = INBOUND_CONNECTIONS_MAX_DEFAULT,
        connect_timeout_s: float = 2.0,
        handshake_timeout_s: float = 5.0,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 5.0,  # a restarted peer is found again within this
        rng: random.Random | None = None,
        faults: LinkFaults | None = None,
    ) -> None:
        if not 0 < len(node_id.encode()) <= NAME_MAX_BYTES:
            raise ValueError(f"node id must be 1..{NAME_MAX_BYTES} bytes")
        if len(cluster_name.encode()) > NAME_MAX_BYTES:
            raise ValueError(f"cluster name must be at most {NAME_MAX_BYTES} bytes")
        if min(send_queue_max, send_queue_max_bytes, frame_max_bytes, inbound_connections_max) < 1:
            raise ValueError("queue, frame and connection limits must be positive")
        if min(connect_timeout_s, handshake_timeout_s, backoff_initial_s) <= 0:
            raise ValueError("timeouts and back-off must be positive")
        if backoff_max_s < backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")
        self.node_id = node_id
        self.cluster_name = cluster_name
        self._secret = secret if isinstance(secret, ClusterSecret) else ClusterSecret(secret)
        self._on_message = on_message
        self.send_queue_max = send_queue_max
        self.send_queue_max_bytes = send_queue_max_bytes
        self.frame_max_bytes = frame_max_bytes
        self.inbound_connections_max = inbound_connections_max
        self.connect_timeout_s = connect_timeout_s
        self.handshake_timeout_s = handshake_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._rng = rng or random.Random()
        # Fault injection (runtime/faults.py, `serve --faults`); None: off.
        self.faults = faults
        self._held_inbound: dict[str, DelayLine[Message]] = {}
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self.port: int | None = None
        self._addresses: dict[str, tuple[str, int]] = {}
        self._links: dict[str, _PeerLink] = {}
        self._inbound: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._closing = False
        self._last_warning: dict[str, float] = {}

    def __repr__(self) -> str:
        return (
            f"Transport(node_id={self.node_id!r}, cluster={self.cluster_name!r}, port={self.port})"
        )

    # -- public interface ---------------------------------------------------

    async def start(self, host: str, port: int) -> int:
        """Listen for peers; port 0 picks a free one. Returns the bound port."""
        assert self._server is None and not self._closing, "start() once, before close()"
        self._server = await asyncio.start_server(self._accept, host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("%s: listening for peers on %s:%d", self.node_id, host, self.port)
        return self.port

    def set_peer_address(self, node_id: str, host: str, port: int) -> None:
        """Where ``node_id`` listens. A changed address drops the current
        connection; the next message reconnects to the new one."""
        old = self._addresses.get(node_id)
        self._addresses[node_id] = (host, port)
        link = self._links.get(node_id)
        if old is not None and old != (host, port) and link is not None and link.writer:
            link.writer.close()

    def forget_peer(self, node_id: str) -> None:
        """Drop a peer's address, connection and queued messages (counted)."""
        self._addresses.pop(node_id, None)
        link = self._links.pop(node_id, None)
        if link is not None:
            self._count("send_dropped_forgotten", len(link.queue))
            link.queue.clear()
            link.queued_at.clear()
            if link.task is not None:
                link.task.cancel()

    def send(self, node_id: str, message: Message) -> bool:
        """Queue ``message`` for ``node_id`` without blocking.

        False (and counted) when it is dropped: transport closed, no address,
        too big, or the peer's queue full. Safe, because the core treats a
        lost message as a network drop. A message to this node itself is
        delivered locally on the next loop iteration, never dropped."""
        if self._closing:
            return self._drop("send_dropped_closed")
        if node_id == self.node_id:
            asyncio.get_running_loop().call_soon(self._deliver_local, message)
            return True
        if node_id not in self._addresses:
            return self._drop("send_dropped_no_address")
        body = codec.encode(message)
        if len(body) > self.frame_max_bytes:
            self._warn(
                "send_dropped_too_big", "dropped a %d-byte message to %s", len(body), node_id
            )
            return self._drop("send_dropped_too_big")
        link = self._links.get(node_id)
        if link is None:
            link = self._links[node_id] = _PeerLink(node_id)
            link.task = asyncio.get_running_loop().create_task(
                self._run_link(link), name=f"ringkv-transport-{self.node_id}-to-{node_id}"
            )
        if (
            len(link.queue) >= self.send_queue_max
            or link.queued_bytes + len(body) > self.send_queue_max_bytes
        ):
            return self._drop(self._queue_full_counter(link))
        link.queue.append(body)
        link.queued_bytes += len(body)
        if self.faults is not None:
            link.queued_at.append(asyncio.get_running_loop().time())
        link.wakeup.set()
        return True

    def queued(self, node_id: str) -> int:
        """Messages waiting in ``node_id``'s send queue (a gauge)."""
        link = self._links.get(node_id)
        return len(link.queue) if link is not None else 0

    def connected_peers(self) -> list[str]:
        """Peers with an authenticated outbound connection, sorted."""
        return sorted(peer for peer, link in self._links.items() if link.writer is not None)

    # -- fault injection (runtime/faults.py; only with `faults`) ---------------

    def set_link_fault(self, fault: LinkFault) -> None:
        """Start ``fault``, replacing the one on the same (peer, direction).

        A blackhole on ``in`` also loses the frames already held from those
        peers; queued outbound frames are judged as they reach the head of
        their queue, so an ``out`` blackhole loses them too."""
        assert self.faults is not None, "the transport was made without fault injection"
        self.faults.set(fault)
        for peer, line in list(self._held_inbound.items()):
            held = self.faults.find(peer, Direction.IN)
            if held is not None and held.mode is LinkMode.BLACKHOLE:
                self._count("fault_dropped_in", line.discard())
                del self._held_inbound[peer]
        self._wake_links()

    def clear_link_faults(self) -> None:
        """End every link fault; frames held by a delay go now, in order."""
        assert self.faults is not None, "the transport was made without fault injection"
        self.faults.clear()
        lines, self._held_inbound = self._held_inbound, {}
        for line in lines.values():
            line.flush()
        self._wake_links()

    def _wake_links(self) -> None:
        """Let every pump judge its queue again under the new faults."""
        for link in self._links.values():
            link.wakeup.set()

    def _queue_full_counter(self, link: _PeerLink) -> str:
        """A full queue behind a delay fault is the fault's doing: count it so."""
        if self.faults is not None:
            fault = self.faults.find(link.remote_id, Direction.OUT)
            if fault is not None and fault.mode is LinkMode.DELAY:
                return "fault_delay_dropped"
        return "send_dropped_queue_full"

    def _admit_inbound(self, peer_id: str, message: Message) -> bool:
        """Under an ``in`` fault: False when ``message`` is lost or held (it is
        then delivered later by the peer's delay line, in order)."""
        assert self.faults is not None
        line = self._held_inbound.get(peer_id)
        fault = self.faults.find(peer_id, Direction.IN)
        hold_s = self.faults.verdict(fault) if fault is not None else 0.0
        if hold_s is None:
            self._count("fault_dropped_in")
            return False
        if hold_s == 0 and line is None:
            return True
        if line is None:
            line = self._held_inbound[peer_id] = DelayLine(
                lambda held: self._release_inbound(peer_id, held), self.faults.delay_queue_max
            )
        if not line.push(message, asyncio.get_running_loop().time() + hold_s):
            self._count("fault_delay_dropped")
        return False

    def _release_inbound(self, peer_id: str, message: Message) -> None:
        line = self._held_inbound.get(peer_id)
        if line is not None and not line:
            del self._held_inbound[peer_id]  # emptied: the next frame may pass directly
        self._count("fault_delayed_in")
        self._deliver(message)

    def _judge_outbound(self, link: _PeerLink) -> float | None:
        """The fate of the frame at the head of ``link``'s queue under its
        ``out`` fault: 0 to send it now, seconds to wait before judging it
        again, or None when it was lost (taken off the queue and counted)."""
        assert self.faults is not None
        fault = self.faults.find(link.remote_id, Direction.OUT)
        if fault is None:
            return 0.0
        hold_s = self.faults.verdict(fault)
        if hold_s is None:
            body = link.queue.popleft()
            link.queued_at.popleft()
            link.queued_bytes -= len(body)
            self._count("fault_dropped_out")
            return None
        if hold_s == 0:
            return 0.0
        wait_s = link.queued_at[0] + hold_s - asyncio.get_running_loop().time()
        if wait_s <= 0:
            self._count("fault_delayed_out")
            return 0.0
        return wait_s

    async def close(self) -> None:
        """Stop listening, close every connection, cancel every task (bounded)."""
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        tasks = [link.task for link in self._links.values() if link.task is not None]
        tasks += list(self._inbound)
        for task in tasks:
            task.cancel()
        for line in self._held_inbound.values():
            line.discard()
        self._held_inbound.clear()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_WAIT_S)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_WAIT_S):
                    await self._server.wait_closed()
        self._links.clear()

    # -- counting and logging -----------------------------------------------

    def _count(self, name: str, amount: int = 1) -> None:
        self.counters[name] += amount

    def _drop(self, counter: str) -> bool:
        self._count(counter)
        return False

    def _warn(self, key: str, fmt: str, *args: object) -> None:
        """A warning, at most one per ``key`` per LOG_INTERVAL_S (a hostile
        peer must not flood the log); the counters stay exact."""
        now = time.monotonic()
        last = self._last_warning.get(key)
        if last is None or now - last >= LOG_INTERVAL_S:
            self._last_warning[key] = now
            log.warning("%s: " + fmt, self.node_id, *args)

    def _deliver_local(self, message: Message) -> None:
        self._count("delivered_local")
        self._deliver(message)

    def _deliver(self, message: Message) -> None:
        try:
            self._on_message(message)
        except Exception:
            self._count("on_message_errors")
            log.exception("%s: on_message failed for %s", self.node_id, type(message).__name__)

    def _handshake_failed(self, exc: BaseException, where: str) -> None:
        if isinstance(exc, _Refused):
            counter, detail = exc.counter, str(exc)
        elif isinstance(exc, TimeoutError):
            counter, detail = "handshake_timeouts", "timed out"
        elif isinstance(exc, _FrameTooBig):
            counter, detail = "handshake_malformed", str(exc)
        else:
            counter, detail = "handshake_failed", f"connection lost ({type(exc).__name__})"
        self._count(counter)
        self._warn(counter, "handshake with %s failed: %s", where, detail)

    # -- handshake ----------------------------------------------------------

    async def _refuse(self, writer: asyncio.StreamWriter, counter: str, detail: str) -> None:
        """Tell the peer why (best effort) and fail the handshake."""
        reason = counter.removeprefix("handshake_refused_")
        with contextlib.suppress(OSError):
            writer.write(_frame(_pack("refused", reason=reason)))
            await writer.drain()
        raise _Refused(counter, detail)

    async def _check_hello(self, hello: _Hello, writer: asyncio.StreamWriter) -> None:
        if hello.version != PROTOCOL_VERSION:
            await self._refuse(
                writer, "handshake_refused_version", f"protocol version {hello.version}"
            )
        if hello.cluster != self.cluster_name:
            await self._refuse(
                writer, "handshake_refused_cluster", f"peer is in cluster {hello.cluster!r}"
            )

    def _hello(self) -> _Hello:
        return _Hello(
            PROTOCOL_VERSION, self.cluster_name, self.node_id, secrets.token_bytes(NONCE_BYTES)
        )

    async def _handshake_as_initiator(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer_id: str
    ) -> str:
        """Returns the responder's authenticated node id."""
        mine = self._hello()
        writer.write(_frame(mine.pack()))
        theirs = _parse_hello(await _read_frame(reader, HANDSHAKE_FRAME_MAX_BYTES))
        await self._check_hello(theirs, writer)
        # A seed dialled by address ("addr:host:port") may be any node.
        if theirs.node_id != peer_id and not peer_id.startswith("addr:"):
            await self._refuse(
                writer, "handshake_refused_peer_id", f"expected {peer_id}, found {theirs.node_id!r}"
            )
        proof = self._secret.mac(_proof_input(self.cluster_name, mine, theirs, _INITIATOR))
        writer.write(_frame(_pack("proof", mac=proof)))
        their_proof = _parse_proof(await _read_frame(reader, HANDSHAKE_FRAME_MAX_BYTES))
        expected = self._secret.mac(_proof_input(self.cluster_name, mine, theirs, _RESPONDER))
        if not hmac.compare_digest(their_proof, expected):
            await self._refuse(writer, "handshake_refused_proof", f"{peer_id} gave a wrong proof")
        return theirs.node_id

    async def _handshake_as_responder(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> str:
        """Returns the initiator's authenticated node id."""
        mine = self._hello()
        writer.write(_frame(mine.pack()))
        theirs = _parse_hello(await _read_frame(reader, HANDSHAKE_FRAME_MAX_BYTES))
        await self._check_hello(theirs, writer)
        if theirs.node_id == self.node_id:
            await self._refuse(writer, "handshake_refused_peer_id", "peer claims our own node id")
        their_proof = _parse_proof(await _read_frame(reader, HANDSHAKE_FRAME_MAX_BYTES))
        expected = self._secret.mac(_proof_input(self.cluster_name, theirs, mine, _INITIATOR))
        if not hmac.compare_digest(their_proof, expected):
            await self._refuse(
                writer, "handshake_refused_proof", f"{theirs.node_id!r}: wrong cluster secret"
            )
        # Only now, with the initiator authenticated, do we prove ourselves.
        proof = self._secret.mac(_proof_input(self.cluster_name, theirs, mine, _RESPONDER))
        writer.write(_frame(_pack("proof", mac=proof)))
        await writer.drain()
        return theirs.node_id

    # -- inbound --------------------------------------------------------------

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing or len(self._inbound) >= self.inbound_connections_max:
            self._count("inbound_refused_limit")
            self._warn("inbound_refused_limit", "refused a connection: inbound limit reached")
            writer.close()
            return
        self._count("inbound_accepted")
        task = asyncio.get_running_loop().create_task(self._serve_inbound(reader, writer))
        self._inbound.add(task)
        task.add_done_callback(self._inbound.discard)

    async def _serve_inbound(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        where = _peername(writer)
        try:
            _keepalive(writer)
            try:
                async with asyncio.timeout(self.handshake_timeout_s):
                    peer_id = await self._handshake_as_responder(reader, writer)
            except (OSError, asyncio.IncompleteReadError, _Refused, _FrameTooBig) as exc:
                self._handshake_failed(exc, where)
                return
            self._count("handshakes_ok")
            log.debug("%s: accepted %s from %s", self.node_id, peer_id, where)
            await self._receive_frames(reader, peer_id)
        finally:
            writer.close()

    async def _receive_frames(self, reader: asyncio.StreamReader, peer_id: str) -> None:
        """Decode and deliver frames one at a time until EOF or a bad frame.

        Reading the next frame only after ``on_message`` returned is the
        back-pressure: a slow node stops reading and TCP slows the sender."""
        while True:
            try:
                body = await _read_frame(reader, self.frame_max_bytes)
            except _FrameTooBig as exc:
                self._count("frames_too_big")
                self._warn("frames_too_big", "%s sent a %d-byte frame", peer_id, exc.length)
                return
            except (OSError, asyncio.IncompleteReadError):
                return
            try:
                message = codec.decode(body)
            except codec.CodecError as exc:
                self._count("frames_undecodable")
                self._warn("frames_undecodable", "%s sent a bad frame: %s", peer_id, exc)
                return
            if message.src != peer_id:
                self._count("frames_spoofed_src")
                self._warn("frames_spoofed_src", "%s sent a frame from %r", peer_id, message.src)
                return
            counters = self.counters
            counters["frames_received"] += 1
            counters["bytes_received"] += _HEADER.size + len(body)
            if self.faults is not None and not self._admit_inbound(peer_id, message):
                continue
            self._deliver(message)

    # -- outbound -------------------------------------------------------------

    def _backoff_s(self, failures: int) -> float:
        """Exponential back-off with "equal jitter" (AWS Architecture Blog,
        "Exponential Backoff and Jitter"): half fixed, half random, so that
        nodes that lost a peer together do not all retry together."""
        ceiling = min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** min(failures, 32))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    async def _run_link(self, link: _PeerLink) -> None:
        """Connect when there is something to send; write; reconnect on loss."""
        while True:
            while not link.queue:
                link.wakeup.clear()
                await link.wakeup.wait()
            streams = await self._connect(link.node_id)
            if streams is None:
                await asyncio.sleep(self._backoff_s(link.failures))
                link.failures += 1
                continue
            link.failures = 0
            reader, writer, link.remote_id = streams
            link.writer = writer
            try:
                await self._pump(link, reader, writer)
            finally:
                link.writer = None
                writer.close()
            self._count("disconnects")
            log.info("%s: connection to %s lost", self.node_id, link.node_id)
            await asyncio.sleep(self._backoff_s(0))  # a flapping peer is not a busy loop

    async def _connect(
        self, peer_id: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str] | None:
        """An authenticated connection and the id of the node that answered."""
        address = self._addresses.get(peer_id)
        if address is None:
            return None
        host, port = address
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                reader, writer = await asyncio.open_connection(host, port)
            _keepalive(writer)
            async with asyncio.timeout(self.handshake_timeout_s):
                remote_id = await self._handshake_as_initiator(reader, writer, peer_id)
        except (OSError, asyncio.IncompleteReadError, _Refused, _FrameTooBig) as exc:
            if writer is None:
                self._count("connect_failures")
                self._warn(f"connect:{peer_id}", "cannot reach %s at %s:%d", peer_id, host, port)
            else:
                writer.close()
                self._handshake_failed(exc, f"{peer_id} at {host}:{port}")
            return None
        self._count("connects")
        self._count("handshakes_ok")
        log.info("%s: connected to %s at %s:%d", self.node_id, peer_id, host, port)
        return reader, writer, remote_id

    async def _pump(
        self, link: _PeerLink, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Write queued frames in order, all that are queued at once (one at a
        time under fault injection), until the connection fails. The peer
        never writes after the handshake, so any read result means it is gone."""
        gone = asyncio.ensure_future(reader.read(1))
        try:
            while True:
                hold_s: float | None = None  # None: until woken
                if link.queue:
                    hold_s = self._judge_outbound(link) if self.faults is not None else 0.0
                    if hold_s is None:  # lost to a fault; judge the next frame
                        continue
                if hold_s != 0:
                    await self._wait_for_wakeup(link, gone, hold_s)
                    if gone.done():
                        return
                    continue
                if self.faults is None:
                    data, frames = _take_frames(link)
                else:  # one at a time: each frame is judged on its own
                    body = link.queue.popleft()
                    link.queued_at.popleft()
                    link.queued_bytes -= len(body)
                    data, frames = _frame(body), 1
                writer.write(data)
                counters = self.counters
                counters["frames_sent"] += frames
                counters["bytes_sent"] += len(data)
                transport = writer.transport
                if transport.get_write_buffer_size() <= transport.get_write_buffer_limits()[0]:
                    await writer.drain()  # below the low-water mark: never waits
                    continue
                try:  # back-pressure from the socket buffer, bounded
                    async with asyncio.timeout(WRITE_STALL_S):
                        await writer.drain()
                except TimeoutError:
                    self._count("write_stalls")
                    log.info("%s: no bytes to %s accepted in %.0f s", self.node_id,
                             link.node_id, WRITE_STALL_S)  # fmt: skip
                    return
        except (OSError, asyncio.IncompleteReadError):
            return
        finally:
            gone.cancel()
            if gone.done() and not gone.cancelled():
                gone.exception()  # retrieved, so asyncio does not log it

    @staticmethod
    async def _wait_for_wakeup(
        link: _PeerLink, gone: asyncio.Future[Any], timeout_s: float | None
    ) -> None:
        """Until something is queued (or the faults change), the peer goes
        away, or ``timeout_s`` (a delay fault's hold) passes."""
        link.wakeup.clear()
        woken: asyncio.Future[Any] = asyncio.ensure_future(link.wakeup.wait())
        try:
            await asyncio.wait(
                {woken, gone}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            woken.cancel()
