"""The host loop: feeds the core Node, group-commits, then releases replies.

This is the whole of the asyncio shell's protocol-free duty (STYLE.md rule
20): requests arrive from the front ends during an event-loop turn; once per
turn the host flushes the storage engine (one transaction, fsynced under
``--fsync always``) and only then hands each reply to whoever asked, so that
no write is acknowledged before it is durable. A timer drives ``Node.tick``
and, under ``--fsync batch``, the periodic fsync.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from ringkv.core.errors import ErrorKind, OpError
from ringkv.core.messages import Message
from ringkv.core.node import Node, Request
from ringkv.storage.base import Engine, FsyncPolicy, StorageError

__all__ = ["Completion", "FutureCompletion", "NodeHost", "now_ms"]

log = logging.getLogger("ringkv.host")


def now_ms() -> int:
    """Wall-clock milliseconds: the physical part of the HLC and of expiry."""
    return time.time_ns() // 1_000_000


class Completion(Protocol):
    def deliver(self, result: object) -> None: ...


class Flushable(Protocol):
    def write_out(self) -> None: ...


class FutureCompletion:
    """A completion that resolves an asyncio future (for HTTP handlers)."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[object]) -> None:
        self.future = future

    def deliver(self, result: object) -> None:
        if not self.future.done():
            self.future.set_result(result)


class NodeHost:
    def __init__(self, node: Node, engine: Engine, *, fsync_interval_ms: int = 100) -> None:
        self.node = node
        self.engine = engine
        # Sends a message to a peer (the transport's send); None: no peers.
        self.send: Callable[[str, Message], object] | None = None
        self.messages_unsent = 0
        # Added to the wall clock the core sees; set only by fault injection
        # (runtime/faults.py, `serve --faults`): 0 in production.
        self.clock_offset_ms = 0
        self.fsync_interval_ms = fsync_interval_ms
        self.touched: list[Flushable] = []
        self.commits = 0
        self.commit_failures = 0
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._sync_handle: asyncio.TimerHandle | None = None
        # An early wake-up for the core's strong-keyspace timers (a back-off of
        # a few ms must not wait for the next tick), and when it is due.
        self._wake_handle: asyncio.TimerHandle | None = None
        self._wake_at_ms: int | None = None
        self._closed = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._schedule_tick()
        if self.engine.fsync is FsyncPolicy.BATCH:
            self._schedule_sync()

    def now_ms(self) -> int:
        """The node's wall clock: what the core is given (HLC, expiry, timers).

        The core's HLC never goes backwards whatever this does (HlcClock.now).
        Its timers (SWIM probes, request deadlines) compare against this clock
        too, as in the simulator: a step forward fires them early, a step back
        holds them until the clock catches up, as a real wall-clock step would."""
        return now_ms() + self.clock_offset_ms

    def submit(self, request: Request, completion: Completion) -> None:
        """Hand a request to the node; ``completion`` gets the reply after commit."""
        self.node.submit(request, completion, self.now_ms())
        self._schedule_end_turn()

    async def call(self, request: Request) -> object:
        """Submit and wait (HTTP and other awaiting callers)."""
        assert self._loop is not None
        future: asyncio.Future[object] = self._loop.create_future()
        self.submit(request, FutureCompletion(future))
        return await future

    def on_message(self, message: Message) -> None:
        """A message from a peer (the transport's callback)."""
        self.node.step(message, self.now_ms())
        self._schedule_end_turn()

    def _schedule_end_turn(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self.end_turn)

    def _send_all(self, messages: list[tuple[str, Message]]) -> None:
        send = self.send
        for dst, message in messages:
            if send is None:
                self.messages_unsent += 1
            else:
                send(dst, message)

    def end_turn(self) -> None:
        """Send what may go now, commit what this turn wrote, then send what
        needed the commit and release the turn's replies."""
        self._scheduled = False
        out = self.node.take_outbox()
        self._send_all(out.messages)
        failure: OpError | None = None
        if self.engine.dirty:
            try:
                self.engine.flush()
                self.commits += 1
            except StorageError as exc:
                self.commit_failures += 1
                log.error("group commit failed: %s", exc)
                failure = OpError(
                    ErrorKind.TIMEOUT,
                    f"storage commit failed: {exc}",
                    code="TIMEOUT",
                    definite=False,
                )
        if failure is None:
            self._send_all(out.after_commit)  # acks and replies that promise durability
        for completion, result in out.replies:
            completion.deliver(failure if failure is not None else result)  # type: ignore[attr-defined]
        touched, self.touched = self.touched, []
        for conn in touched:
            conn.write_out()
        self._schedule_wake()

    def _schedule_wake(self) -> None:
        """Call the core again when its next proposal timer is due, if that is
        sooner than the next tick (and sooner than a wake-up already set)."""
        due = self.node.strong_wakeup_ms()
        if due is None or self._loop is None or self._closed:
            return
        if self._wake_at_ms is not None and self._wake_at_ms <= due:
            return
        if self._wake_handle is not None:
            self._wake_handle.cancel()
        delay_s = max(0.0, (due - self.now_ms()) / 1000)
        if delay_s >= self.node.config.tick_interval_ms / 1000:
            return  # the tick comes first
        self._wake_at_ms = due
        self._wake_handle = self._loop.call_later(delay_s, self._on_wake)

    def _on_wake(self) -> None:
        self._wake_handle, self._wake_at_ms = None, None
        if self._closed:
            return
        self.node.wake(self.now_ms())
        if not self._scheduled:
            self.end_turn()

    def _schedule_tick(self) -> None:
        assert self._loop is not None
        self._tick_handle = self._loop.call_later(
            self.node.config.tick_interval_ms / 1000, self._on_tick
        )

    def _on_tick(self) -> None:
        if self._closed:
            return
        try:
            self.node.tick(self.now_ms())
            if not self._scheduled:
                self.end_turn()
        finally:
            self._schedule_tick()

    def _schedule_sync(self) -> None:
        assert self._loop is not None
        self._sync_handle = self._loop.call_later(self.fsync_interval_ms / 1000, self._on_sync)

    def _on_sync(self) -> None:
        if self._closed:
            return
        try:
            self.engine.sync()
        except StorageError as exc:
            log.error("periodic fsync failed: %s", exc)
        finally:
            self._schedule_sync()

    def close(self) -> None:
        """Commit what is pending and stop the timers; the engine stays open."""
        if self._scheduled or self.engine.dirty:
            self.end_turn()
        self._closed = True
        for handle in (self._tick_handle, self._sync_handle, self._wake_handle):
            if handle is not None:
                handle.cancel()
