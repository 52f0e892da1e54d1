"""The RESP listener: one asyncio Protocol per client connection.

Decode, dispatch, submit to the host, encode the replies in request order:
nothing here decides anything about the data (STYLE.md rule 20). Replies of
a pipeline leave in order: each request takes a slot in the connection's
queue and the queue drains from the front as slots complete. Every buffer is
bounded: the parser by its limits, the reply queue by ``PENDING_MAX`` and the
transport's write buffer by its high-water mark; past either, the connection
stops reading until the client catches up (back-pressure, never dropping).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from ringkv.core.errors import ErrorKind, OpError
from ringkv.frontend.commands import Call, Close, Session, dispatch
from ringkv.frontend.resp import Oversized, ParserLimits, ProtocolError, RequestParser, encode

if TYPE_CHECKING:
    from ringkv.runtime.server import Server, ServerSettings

__all__ = ["RespConnection"]

log = logging.getLogger("ringkv.resp")

PENDING_MAX = 4096  # replies queued per connection before it stops reading
WRITE_HIGH_WATER_BYTES = 4 * 1024 * 1024
_perf = time.perf_counter


class _Slot:
    """One request's place in the reply order."""

    __slots__ = ("command", "conn", "done", "finish", "remaining", "reply", "results", "started")

    def __init__(
        self,
        conn: RespConnection,
        finish: Callable[[list[object]], object] | None,
        n: int,
        command: str,
    ) -> None:
        self.conn = conn
        self.finish = finish
        self.remaining = n
        self.results: list[object] = [None] * n
        self.done = finish is None
        self.reply: object = None
        self.command = command
        self.started = _perf()

    def deliver(self, result: object) -> None:  # single-request slots
        self.results[0] = result
        self._complete()

    def _complete(self) -> None:
        assert self.finish is not None
        self.reply = self.finish(self.results)
        self.done = True
        self.conn.slot_done(self)


class _Part:
    __slots__ = ("index", "slot")

    def __init__(self, slot: _Slot, index: int) -> None:
        self.slot = slot
        self.index = index

    def deliver(self, result: object) -> None:
        slot = self.slot
        slot.results[self.index] = result
        slot.remaining -= 1
        if slot.remaining == 0:
            slot._complete()


class RespConnection(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.session = Session(id=0)
        self.parser = RequestParser(ParserLimits())
        self.pending: deque[_Slot] = deque()
        self.out: list[bytes] = []
        self.registered = False
        self.closing = False
        self.paused_reading = False
        self.write_paused = False

    # -- asyncio callbacks -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        tcp = cast(asyncio.Transport, transport)
        self.transport = tcp
        server = self.server
        if len(server.resp_connections) >= server.settings.max_clients:
            server.stats.rejected_connections += 1
            tcp.write(b"-ERR max number of clients reached\r\n")
            tcp.close()
            self.closing = True
            return
        tcp.set_write_buffer_limits(high=WRITE_HIGH_WATER_BYTES)
        now = server.now_ms()
        peer, local = transport.get_extra_info("peername"), transport.get_extra_info("sockname")
        self.session = Session(
            id=server.next_client_id(),
            addr=_addr(peer),
            laddr=_addr(local),
            created_ms=now,
            last_active_ms=now,
            authenticated=server.settings.requirepass is None,
        )
        self.parser = RequestParser(server.parser_limits, authenticated=self.session.authenticated)
        server.resp_connections[self.session.id] = self
        server.stats.total_connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server.resp_connections.pop(self.session.id, None)

    def pause_writing(self) -> None:
        self.write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._maybe_resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        session = self.session
        parser = self.parser
        now = self.server.now_ms()
        # The idle clock restarts when a request begins or completes, not on
        # every read, so that a request trickling in a byte at a time is still
        # closed after request_timeout_s (the sweep measures from here).
        if not parser.buffered_bytes:
            session.last_active_ms = now
        while True:
            try:
                requests = parser.feed(data)
            except ProtocolError as exc:
                self._protocol_error(str(exc))
                return
            data = b""
            if not requests:
                break
            session.last_active_ms = now
            for args in requests:
                self._run(args)
                if self.closing:
                    return
            if parser.failed:
                continue  # the requests before a malformed one ran; now answer it
            if parser.authenticated:
                break  # everything complete has been parsed
            # Unauthenticated parsing returns one request at a time; once AUTH
            # has succeeded, the small-frame limits are lifted.
            if session.authenticated:
                parser.authenticated = True
        if self.out and not self.registered:
            self.write_out()
        if len(self.pending) >= PENDING_MAX:
            self._pause_reading()

    # -- requests ----------------------------------------------------------

    def _run(self, args: list[bytes]) -> None:
        server = self.server
        server.stats.commands += 1
        if type(args) is Oversized:
            result: object = _oversized_error(args.size, server.settings)
        else:
            result = dispatch(self.session, args, server)
        kind = type(result)
        if kind is Call:
            assert isinstance(result, Call)
            requests = result.requests
            slot = _Slot(self, result.finish, len(requests), self.session.last_command)
            self.pending.append(slot)
            host = server.host
            if len(requests) == 1:
                host.submit(requests[0], slot)
            else:
                for index, request in enumerate(requests):
                    host.submit(request, _Part(slot, index))
            return
        if kind is Close:
            assert isinstance(result, Close)
            self._reply_now(result.reply)
            self.closing = True
            if not self.pending:
                self.write_out()
            return
        if isinstance(result, OpError):
            server.stats.errors += 1
        self._reply_now(result)

    def _reply_now(self, reply: object) -> None:
        if self.pending:
            slot = _Slot(self, None, 0, "")
            slot.reply = reply
            self.pending.append(slot)
        else:
            encode(reply, self.session.proto, self.out)

    def slot_done(self, slot: _Slot) -> None:
        pending = self.pending
        proto = self.session.proto
        metrics = self.server.metrics
        while pending and pending[0].done:
            head = pending.popleft()
            reply = head.reply
            if head.command:
                ok = type(reply) is not OpError
                metrics.observe("resp", head.command, ok, _perf() - head.started)
                if not ok:
                    self.server.stats.errors += 1
            encode(reply, proto, self.out)
        if self.out and not self.registered:
            self.registered = True
            self.server.host.touched.append(self)

    def write_out(self) -> None:
        self.registered = False
        transport = self.transport
        if transport is None:
            return
        if self.out:
            data = b"".join(self.out) if len(self.out) > 1 else self.out[0]
            self.out.clear()
            if not transport.is_closing():
                transport.write(data)
        if self.closing and not self.pending:
            transport.close()
            return
        self._maybe_resume_reading()

    # -- flow control and errors ---------------------------------------------

    def _pause_reading(self) -> None:
        if not self.paused_reading and self.transport is not None:
            self.paused_reading = True
            self.transport.pause_reading()

    def _maybe_resume_reading(self) -> None:
        if (
            self.paused_reading
            and not self.write_paused
            and len(self.pending) < PENDING_MAX // 2
            and self.transport is not None
            and not self.closing
        ):
            self.paused_reading = False
            self.transport.resume_reading()

    def _protocol_error(self, message: str) -> None:
        self.server.stats.protocol_errors += 1
        log.info("closing client %s: %s", self.session.addr, message)
        self.closing = True
        self._reply_now(OpError(ErrorKind.INVALID, message))
        if not self.pending:
            self.write_out()

    def close_idle(self, reason: str) -> None:
        log.info("closing client %s: %s", self.session.addr, reason)
        self.closing = True
        if self.transport is not None:
            self.transport.close()


def _oversized_error(size: int, settings: ServerSettings) -> OpError:
    return OpError(
        ErrorKind.TOO_LARGE,
        f"request has an argument of {size} bytes, over the limit "
        f"(max-value-bytes {settings.max_value_bytes}, max-key-bytes {settings.max_key_bytes}); "
        "it was discarded and nothing was stored",
    )


def _addr(info: object) -> str:
    if isinstance(info, tuple) and len(info) >= 2:
        return f"{info[0]}:{info[1]}"
    return str(info or "")
