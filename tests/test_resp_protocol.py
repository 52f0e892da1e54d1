"""Bad input on the RESP port, through raw sockets: each malformed request gets
the exact error reply, its connection is closed, and the server goes on
serving other clients. Also limits (key and value size, clients, idle and
half-sent timeouts, small frames before AUTH) and partial frames."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import RunningServer, start_in_thread
from conftest import test_settings as settings_for

# -- helpers ------------------------------------------------------------------


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_until_closed(sock: socket.socket, timeout_s: float = 5.0) -> bytes:
    """Everything the server sends until it closes; fails if it never does."""
    received = b""
    deadline = time.monotonic() + timeout_s
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"connection still open; received {received!r}") from None
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def _read_exactly(sock: socket.socket, size: int, timeout_s: float = 5.0) -> bytes:
    received = b""
    sock.settimeout(timeout_s)
    while len(received) < size:
        chunk = sock.recv(size - len(received))
        if not chunk:
            raise AssertionError(f"closed after {received!r}")
        received += chunk
    return received


def _exchange_and_close(port: int, payload: bytes) -> bytes:
    with _connect(port) as sock:
        sock.sendall(payload)
        return _read_until_closed(sock)


def _assert_serves(port: int, **kwargs: object) -> None:
    """Another client is still served normally."""
    client = redis.Redis(port=port, socket_timeout=5, **kwargs)  # type: ignore[arg-type]
    try:
        assert client.set("probe", "ok") is True
        assert client.get("probe") == b"ok"
    finally:
        client.close()


def _poll(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_in_thread(settings_for(tmp_path_factory.mktemp("proto")))
    yield running
    running.stop()


# -- malformed requests -----------------------------------------------------------

MALFORMED: dict[str, tuple[bytes, str]] = {
    "bad type byte": (b"*1\r\n:5\r\n", "Protocol error: expected '$', got ':'"),
    "array as argument": (b"*1\r\n*1\r\n$4\r\nping\r\n", "Protocol error: expected '$', got '*'"),
    "negative multibulk length": (b"*-5\r\n", "Protocol error: invalid multibulk length"),
    "null multibulk": (b"*-1\r\nPING\r\n", "Protocol error: invalid multibulk length"),
    "huge multibulk length": (
        b"*99999999999999999999\r\n",
        "Protocol error: invalid multibulk length",
    ),
    "multibulk over the argument limit": (
        b"*1048577\r\n",
        "Protocol error: invalid multibulk length",
    ),
    "non-numeric multibulk length": (b"*abc\r\n", "Protocol error: invalid multibulk length"),
    "multibulk length with a sign": (b"*+1\r\n", "Protocol error: invalid multibulk length"),
    "multibulk length with a space": (b"*1 \r\n", "Protocol error: invalid multibulk length"),
    "multibulk length with a leading zero": (
        b"*01\r\n$4\r\nPING\r\n",
        "Protocol error: invalid multibulk length",
    ),
    "negative bulk length": (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
    "huge bulk length": (b"*1\r\n$99999999999\r\n", "Protocol error: invalid bulk length"),
    "non-numeric bulk length": (b"*1\r\n$abc\r\n", "Protocol error: invalid bulk length"),
    "bulk length with a leading zero": (
        b"*1\r\n$04\r\nPING\r\n",
        "Protocol error: invalid bulk length",
    ),
    "bulk length with a space": (b"*1\r\n$ 4\r\nPING\r\n", "Protocol error: invalid bulk length"),
    "bulk length line without CRLF": (
        b"*2\r\n$" + b"9" * 40,
        "Protocol error: invalid bulk length",
    ),
    "missing CRLF after bulk data": (
        b"*1\r\n$4\r\nPINGXX\r\n",
        "Protocol error: expected CRLF after bulk data",
    ),
    "garbage after a multibulk header": (
        b"*3\r\n\x00\xff\xfe garbage",
        "Protocol error: expected '$', got '\\x00'",
    ),
    "unbalanced double quote": (
        b'SET k "unbalanced\r\n',
        "Protocol error: unbalanced quotes in request",
    ),
    "unbalanced single quote": (b"SET k 'v\r\n", "Protocol error: unbalanced quotes in request"),
    "text after a closing quote": (
        b'SET "k"v 1\r\n',
        "Protocol error: unbalanced quotes in request",
    ),
    "too big inline request": (
        b"SET k " + b"x" * (64 * 1024 + 10),
        "Protocol error: too big inline request",
    ),
    "too big multibulk count string": (
        b"*" + b"1" * (64 * 1024 + 10),
        "Protocol error: too big mbulk count string",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request_is_answered_and_closed(case: str, shared: RunningServer) -> None:
    payload, message = MALFORMED[case]
    assert _exchange_and_close(shared.resp_port, payload) == f"-ERR {message}\r\n".encode()
    _assert_serves(shared.resp_port)


def test_requests_before_a_malformed_one_are_answered_first(shared: RunningServer) -> None:
    payload = (
        b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\nGET key\r\n*1\r\n$4\r\nPING\r\n"
        b"*1\r\n:1\r\nPING\r\n"
    )
    assert _exchange_and_close(shared.resp_port, payload) == (
        b"+OK\r\n$5\r\nvalue\r\n+PONG\r\n-ERR Protocol error: expected '$', got ':'\r\n"
    )
    _assert_serves(shared.resp_port)


def test_a_protocol_error_does_not_disturb_a_client_in_mid_request(shared: RunningServer) -> None:
    with _connect(shared.resp_port) as other:
        other.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$3\r\nab")  # half a request
        assert _exchange_and_close(shared.resp_port, b"*1\r\n:5\r\n").startswith(b"-ERR Protocol")
        other.sendall(b"c\r\nGET a\r\n")
        assert _read_exactly(other, len(b"+OK\r\n$3\r\nabc\r\n")) == b"+OK\r\n$3\r\nabc\r\n"


def test_empty_lines_and_empty_multibulk_are_skipped(shared: RunningServer) -> None:
    with _connect(shared.resp_port) as sock:
        sock.sendall(b"\r\n\n   \r\n*0\r\nPING\r\n")
        assert _read_exactly(sock, 7) == b"+PONG\r\n"


def test_unknown_inline_garbage_is_an_unknown_command(shared: RunningServer) -> None:
    # As in Redis, bytes that do not start with '*' are an inline command.
    with _connect(shared.resp_port) as sock:
        sock.sendall(b"\xff\xfeGARBAGE x\r\nPING\r\n")
        sock.settimeout(5)
        received = b""
        while not received.endswith(b"+PONG\r\n"):
            chunk = sock.recv(1024)
            assert chunk, received
            received += chunk
        assert received.startswith(b"-ERR unknown command '")
        assert received.endswith(b"GARBAGE', with args beginning with: 'x' \r\n+PONG\r\n")


# -- partial frames -----------------------------------------------------------------

_PIPELINE = (
    b"*3\r\n$3\r\nSET\r\n$4\r\nkey1\r\n$6\r\nva\r\nlu\r\n"
    b'SET key2 "in\\x00line" \r\n'
    b"*2\r\n$3\r\nGET\r\n$4\r\nkey1\r\n"
    b"GET key2\n"
    b"*3\r\n$4\r\nMGET\r\n$4\r\nkey1\r\n$7\r\nmissing\r\n"
    b"*1\r\n$4\r\nPING\r\n"
    b"ECHO 'it\\'s'\r\n"
    b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n"
)
_REPLIES = (
    b"+OK\r\n+OK\r\n$6\r\nva\r\nlu\r\n$7\r\nin\x00line\r\n*2\r\n$6\r\nva\r\nlu\r\n$-1\r\n"
    b"+PONG\r\n$4\r\nit's\r\n$0\r\n\r\n"
)


def test_pipeline_split_at_every_byte_boundary(shared: RunningServer) -> None:
    with _connect(shared.resp_port) as sock:
        sock.sendall(_PIPELINE)
        assert _read_exactly(sock, len(_REPLIES)) == _REPLIES
        for cut in range(1, len(_PIPELINE)):
            sock.sendall(_PIPELINE[:cut])
            time.sleep(0.0005)  # let the first part arrive as its own read
            sock.sendall(_PIPELINE[cut:])
            assert _read_exactly(sock, len(_REPLIES)) == _REPLIES, cut


def test_pipeline_sent_one_byte_at_a_time(shared: RunningServer) -> None:
    with _connect(shared.resp_port) as sock:
        for byte in _PIPELINE:
            sock.sendall(bytes([byte]))
        assert _read_exactly(sock, len(_REPLIES)) == _REPLIES


def test_large_value_in_many_reads(shared: RunningServer) -> None:
    value = bytes(range(256)) * 4096  # 1 MiB
    frame = b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$%d\r\n%s\r\n" % (len(value), value)
    with _connect(shared.resp_port) as sock:
        for start in range(0, len(frame), 7919):
            sock.sendall(frame[start : start + 7919])
        assert _read_exactly(sock, 5) == b"+OK\r\n"
    client = redis.Redis(port=shared.resp_port)
    assert client.get("big") == value
    client.close()


# -- before AUTH ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_in_thread(settings_for(tmp_path_factory.mktemp("locked"), requirepass="pw"))
    yield running
    running.stop()


def _frame(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def test_commands_before_auth_get_noauth(locked: RunningServer) -> None:
    with _connect(locked.resp_port) as sock:
        sock.sendall(b"GET k\r\n" + _frame(b"SET", b"k", b"v") + b"PING\r\n")
        noauth = b"-NOAUTH Authentication required.\r\n"
        assert _read_exactly(sock, 3 * len(noauth)) == 3 * noauth
        sock.sendall(b"AUTH pw\r\nSET k v\r\nGET k\r\n")
        expected = b"+OK\r\n+OK\r\n$1\r\nv\r\n"
        assert _read_exactly(sock, len(expected)) == expected


def test_too_many_arguments_before_auth(locked: RunningServer) -> None:
    payload = _frame(b"MGET", *[b"k%d" % i for i in range(10)])  # 11 arguments
    reply = _exchange_and_close(locked.resp_port, payload)
    assert reply == b"-ERR Protocol error: unauthenticated multibulk length\r\n"
    _assert_serves(locked.resp_port, password="pw")


def test_too_long_bulk_before_auth(locked: RunningServer) -> None:
    payload = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$16385\r\n"
    reply = _exchange_and_close(locked.resp_port, payload)
    assert reply == b"-ERR Protocol error: unauthenticated bulk length\r\n"
    _assert_serves(locked.resp_port, password="pw")


def test_small_frames_are_fine_before_auth_and_limits_lift_after(locked: RunningServer) -> None:
    big = b"x" * 100_000
    with _connect(locked.resp_port) as sock:
        sock.sendall(
            _frame(b"AUTH", b"pw") + _frame(b"SET", b"big", big) + _frame(b"MGET", *[b"big"] * 20)
        )
        head = b"+OK\r\n+OK\r\n*20\r\n"
        assert _read_exactly(sock, len(head)) == head
        bulks = 20 * (b"$100000\r\n" + big + b"\r\n")
        assert _read_exactly(sock, len(bulks)) == bulks


def test_auth_and_pipeline_split_at_every_byte_boundary(locked: RunningServer) -> None:
    payload = b"AUTH pw\r\n" + _PIPELINE
    replies = b"+OK\r\n" + _REPLIES
    for cut in range(1, len(payload), 3):
        with _connect(locked.resp_port) as sock:
            sock.sendall(payload[:cut])
            time.sleep(0.0005)
            sock.sendall(payload[cut:])
            assert _read_exactly(sock, len(replies)) == replies, cut


def test_inline_too_many_arguments_before_auth(locked: RunningServer) -> None:
    reply = _exchange_and_close(locked.resp_port, b"MGET a b c d e f g h i j k\r\n")
    assert reply == b"-ERR Protocol error: unauthenticated multibulk length\r\n"
    _assert_serves(locked.resp_port, password="pw")


# -- key and value limits -----------------------------------------------------------------


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    settings = settings_for(
        tmp_path_factory.mktemp("limited"), max_key_bytes=100, max_value_bytes=1000
    )
    running = start_in_thread(settings)
    yield running
    running.stop()


def test_key_over_the_limit_is_refused(limited: RunningServer) -> None:
    client = redis.Redis(port=limited.resp_port, decode_responses=True)
    client.flushall()
    key = "k" * 101
    with pytest.raises(
        redis.ResponseError, match=r"^key is 101 bytes, over max-key-bytes \(100\)$"
    ):
        client.set(key, "v")
    for command in (("GET", key), ("APPEND", key, "x"), ("INCR", key), ("EXPIRE", key, "10")):
        with pytest.raises(redis.ResponseError, match="over max-key-bytes"):
            client.execute_command(*command)
    assert client.dbsize() == 0 and client.keys("*") == []
    assert client.set("k" * 100, "v") is True  # exactly at the limit
    assert client.ping() is True  # the connection is still usable
    client.close()


def test_value_over_the_limit_is_refused(limited: RunningServer) -> None:
    client = redis.Redis(port=limited.resp_port, decode_responses=True)
    client.flushall()
    with pytest.raises(
        redis.ResponseError, match=r"^value is 1001 bytes, over max-value-bytes \(1000\)$"
    ):
        client.set("k", "v" * 1001)
    assert client.exists("k") == 0
    assert client.set("k", "v" * 1000) is True  # exactly at the limit
    with pytest.raises(redis.ResponseError, match="string exceeds maximum allowed size"):
        client.append("k", "x")
    with pytest.raises(redis.ResponseError, match="string exceeds maximum allowed size"):
        client.setrange("k", 1000, "x")
    with pytest.raises(redis.ResponseError, match="over max-value-bytes"):
        client.getset("k", "v" * 1001)
    assert client.get("k") == "v" * 1000  # unchanged
    assert client.ping() is True
    client.close()


def test_oversized_value_in_msetnx_stores_nothing(limited: RunningServer) -> None:
    client = redis.Redis(port=limited.resp_port)
    client.flushall()
    with pytest.raises(redis.ResponseError, match="over max-value-bytes"):
        client.msetnx({"first": "x", "second": "y" * 1001})
    assert client.dbsize() == 0


def test_oversized_value_in_mset_stores_nothing(limited: RunningServer) -> None:
    client = redis.Redis(port=limited.resp_port)
    client.flushall()
    with pytest.raises(redis.ResponseError, match="over max-value-bytes"):
        client.mset({"first": "x", "second": "y" * 1001, "third": "z"})
    assert client.dbsize() == 0


def test_value_far_over_the_limit_is_discarded_unbuffered_and_refused(
    limited: RunningServer,
) -> None:
    # A bulk far beyond max-value-bytes streams through without being buffered;
    # the request is refused with a clear error, nothing is stored, and the
    # same connection goes on serving.
    big = 3_000_000
    header = b"*4\r\n$3\r\nSET\r\n$3\r\nfar\r\n$%d\r\n" % big
    with _connect(limited.resp_port) as sock:
        sock.sendall(header)
        chunk = b"x" * 65536
        sent = 0
        while sent < big:
            piece = chunk[: big - sent]
            sock.sendall(piece)
            sent += len(piece)
        # The fourth argument (also over the limit) arrives after the first.
        sock.sendall(b"\r\n$5000\r\n" + b"y" * 5000 + b"\r\n*1\r\n$4\r\nPING\r\n")
        reply = b""
        deadline = time.monotonic() + 10
        while not reply.endswith(b"+PONG\r\n") and time.monotonic() < deadline:
            reply += sock.recv(65536)
    assert reply.startswith(b"-ERR request has an argument of 3000000 bytes, over the limit")
    assert b"nothing was stored" in reply
    assert reply.endswith(b"\r\n+PONG\r\n")
    assert limited.server.parser_limits.bulk_max_bytes < big
    assert redis.Redis(port=limited.resp_port).exists("far") == 0
    _assert_serves(limited.resp_port)


def test_bulk_past_the_discard_limit_is_a_protocol_error(limited: RunningServer) -> None:
    # Past Redis's proto-max-bulk-len (512 MiB) the request is not even read.
    payload = b"*3\r\n$3\r\nSET\r\n$3\r\nfar\r\n$%d\r\n" % (512 * 1024 * 1024 + 1)
    reply = _exchange_and_close(limited.resp_port, payload + b"x" * 1000)
    assert reply == b"-ERR Protocol error: invalid bulk length\r\n"
    _assert_serves(limited.resp_port)
    assert redis.Redis(port=limited.resp_port).exists("far") == 0


# -- clients, timeouts, back-pressure --------------------------------------------------------


def test_max_clients(tmp_path: Path) -> None:
    running = start_in_thread(settings_for(tmp_path, max_clients=2))
    try:
        port = running.resp_port
        first, second = _connect(port), _connect(port)
        for sock in (first, second):
            sock.sendall(b"PING\r\n")
            assert _read_exactly(sock, 7) == b"+PONG\r\n"
        third = _connect(port)
        third.sendall(b"PING\r\n")
        assert _read_until_closed(third) == b"-ERR max number of clients reached\r\n"
        third.close()
        first.sendall(b"PING\r\n")  # the clients already in are unaffected
        assert _read_exactly(first, 7) == b"+PONG\r\n"
        first.close()

        def admitted() -> bool:
            with _connect(port) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64) == b"+PONG\r\n"

        _poll(admitted, timeout_s=5)
        assert running.server.stats.rejected_connections >= 1
        second.close()
    finally:
        running.stop()


def _closed_within(sock: socket.socket, timeout_s: float) -> float:
    """Seconds until the server closes ``sock`` (fails after ``timeout_s``)."""
    started = time.monotonic()
    assert _read_until_closed(sock, timeout_s) == b""
    return time.monotonic() - started


def test_idle_connection_is_closed(tmp_path: Path) -> None:
    running = start_in_thread(settings_for(tmp_path, idle_timeout_s=1, request_timeout_s=30))
    try:
        with _connect(running.resp_port) as idle, _connect(running.resp_port) as busy:
            idle.sendall(b"PING\r\n")
            assert _read_exactly(idle, 7) == b"+PONG\r\n"
            started = time.monotonic()
            while time.monotonic() - started < 1.5:  # busy stays active meanwhile
                busy.sendall(b"PING\r\n")
                assert _read_exactly(busy, 7) == b"+PONG\r\n"
                time.sleep(0.1)
            assert _closed_within(idle, timeout_s=4) < 4
            busy.sendall(b"PING\r\n")
            assert _read_exactly(busy, 7) == b"+PONG\r\n"
        _assert_serves(running.resp_port)
    finally:
        running.stop()


def test_half_sent_request_is_closed(tmp_path: Path) -> None:
    running = start_in_thread(settings_for(tmp_path, idle_timeout_s=0, request_timeout_s=1))
    try:
        with _connect(running.resp_port) as half, _connect(running.resp_port) as idle:
            idle.sendall(b"PING\r\n")
            assert _read_exactly(idle, 7) == b"+PONG\r\n"
            half.sendall(b"*2\r\n$3\r\nGET\r\n$5\r\nab")
            assert _closed_within(half, timeout_s=5) < 5
            # idle_timeout_s=0: a connection with nothing half-sent stays open.
            idle.sendall(b"PING\r\n")
            assert _read_exactly(idle, 7) == b"+PONG\r\n"
    finally:
        running.stop()


def test_trickled_request_is_closed(tmp_path: Path) -> None:
    """A request sent a byte at a time (slowloris) is still bounded in time."""
    running = start_in_thread(settings_for(tmp_path, idle_timeout_s=0, request_timeout_s=1))
    try:
        with _connect(running.resp_port) as sock:
            frame = b"*2\r\n$3\r\nGET\r\n$100\r\n" + b"x" * 100
            deadline = time.monotonic() + 5
            closed = False
            for byte in frame:
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    closed = True
                    break
                sock.settimeout(0.25)
                try:
                    if sock.recv(64) == b"":
                        closed = True
                        break
                except TimeoutError:
                    pass
                assert time.monotonic() < deadline, "a trickled request was never closed"
            assert closed
    finally:
        running.stop()


def test_client_that_never_reads_does_not_break_others(shared: RunningServer) -> None:
    client = redis.Redis(port=shared.resp_port, socket_timeout=5)
    value = b"v" * (1 << 20)
    client.set("hog", value)
    count = 64  # 64 MiB of replies that the hog does not read for a while
    hog = _connect(shared.resp_port)
    hog.sendall(b"GET hog\r\n" * count)
    started = time.monotonic()
    for i in range(50):
        assert client.set(f"k{i}", i) is True and client.get(f"k{i}") == str(i).encode()
    assert time.monotonic() - started < 5
    reply = b"$%d\r\n%s\r\n" % (len(value), value)
    assert _read_exactly(hog, count * len(reply), timeout_s=30) == reply * count
    hog.close()
    client.close()


def test_pipeline_of_many_small_commands_without_reading(shared: RunningServer) -> None:
    count = 20_000
    with _connect(shared.resp_port) as sock:
        sock.sendall(b"INCR pipelined\r\n" * count)
        expected = b"".join(b":%d\r\n" % i for i in range(1, count + 1))
        assert _read_exactly(sock, len(expected), timeout_s=30) == expected


# -- inline commands and protocol errors against a real redis-server ------------------


def _answer(port: int, payload: bytes) -> tuple[bytes, bool]:
    """Send ``payload`` then PING; everything up to the PONG, or until closed."""
    with _connect(port) as sock:
        sock.sendall(payload + b"\r\nPING\r\n")
        received = b""
        sock.settimeout(5)
        while not received.endswith(b"+PONG\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                return received, True
            received += chunk
        return received, False


_INLINE_ALPHABET = st.sampled_from(
    [b"a", b"b", b"x", b"4", b"F", b" ", b"\t", b"\v", b"\f", b"\r", b'"', b"'", b"\\",
     b"\\x", b"\\n", b"\\'", b'\\"', b"\xc3\xa9", b"\xff"]
)  # fmt: skip


@given(st.lists(_INLINE_ALPHABET, max_size=24).map(b"".join))
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_inline_commands_split_like_redis(
    real_redis: int, shared: RunningServer, line: bytes
) -> None:
    # An unknown command echoes its arguments, so the reply shows the split.
    payload = b"NOSUCHCMD " + line
    assert _answer(shared.resp_port, payload) == _answer(real_redis, payload)


RAW_DIFFERENTIAL = [
    b"*1\r\n:5\r\n",
    b"*1\r\n*1\r\n$4\r\nPING\r\n",
    b"*99999999999999999999\r\n",
    b"*abc\r\n",
    b"*+1\r\n",
    b"*01\r\n$4\r\nPING\r\n",
    b"*1\r\n$-1\r\n",
    b"*1\r\n$abc\r\n",
    b"*1\r\n$04\r\nPING\r\n",
    b"*1\r\n$999999999999\r\n",
    b'SET k "unbalanced',
    b"SET k 'v",
    b'SET "k"v 1',
    b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*1\r\n:1\r\n",
    b"NOSUCHCMD " + b" ".join(b"arg%d" % i for i in range(40)),
    b"NOSUCHCMD " + b"y" * 300,
    b"GET",
    b"GET a b",
    b"  \r\n\r\n",
]


@pytest.mark.parametrize("payload", RAW_DIFFERENTIAL)
def test_raw_requests_answered_like_redis(
    payload: bytes, real_redis: int, shared: RunningServer
) -> None:
    assert _answer(shared.resp_port, payload) == _answer(real_redis, payload)
