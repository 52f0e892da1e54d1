"""The host loop: feeds the core Node, group-commits, then releases replies.

This is the whole of the asyncio shell's protocol-free duty (STYLE.md rule
20): requests arrive from the front ends during an event-loop turn; once per
turn the host commits the storage engine (one transaction, fsynced under
``--fsync always``) and only then hands each reply to whoever asked, so that
no write is acknowledged before it is durable. A timer drives ``Node.tick``
and, under ``--fsync batch``, the periodic fsync.

**Pipelined group commit.** Under ``--fsync always`` the commit runs on the
engine's commit thread (``Engine.start_commit``) and the loop goes on taking
requests and messages meanwhile, instead of standing still for the fsync.
A turn's ``after_commit`` messages and replies wait in a *batch*: the batch
of the turns before a commit starts is released when that commit is durable;
the turns that run while it is in flight form the next batch, released when
the commit after it is durable (or when the one in flight is, if they wrote
nothing: what they read may be in it). Batches are released in order, so no
reply or acknowledgement ever leaves before everything it could have seen is
durable, and one commit is in flight at a time (it takes everything written
so far, so under load each commit carries one fsync's worth of turns).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from ringkv.core.errors import ErrorKind, OpError
from ringkv.core.messages import Message
from ringkv.core.node import Node, Outbox, Request
from ringkv.storage.base import Engine, FsyncPolicy, PendingCommit, StorageError

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
        self.pipelined_commits = 0  # commits run on the engine's thread
        # The commit in flight, the turns waiting for it, and the turns that
        # ran since it started (they wait for the next one).
        self._commit: PendingCommit | None = None
        self._committing: list[Outbox] = []
        self._next_batch: list[Outbox] = []
        self._closing = False
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
        send, me = self.send, self.node.config.node_id
        for dst, message in messages:
            if dst == me:
                # To the node itself (its acceptor's answer to its own
                # proposal, after the commit: core/node.py): the next turn.
                assert self._loop is not None
                self._loop.call_soon(self.on_message, message)
            elif send is None:
                self.messages_unsent += 1
            else:
                send(dst, message)

    def end_turn(self) -> None:
        """Send what may go now, commit what this turn wrote, then send what
        needed the commit and release the turn's replies (at once when the
        commit ran in place, else when it is durable: module docstring)."""
        self._scheduled = False
        out = self.node.take_outbox()
        self._send_all(out.messages)
        for completion, result in out.replies_now:
            completion.deliver(result)  # type: ignore[attr-defined]
        if self._commit is not None:
            self._next_batch.append(out)
        elif not self._start_commit([out]):
            self._release([out], self._commit_in_place())
        self._after_turn()

    def _after_turn(self) -> None:
        touched, self.touched = self.touched, []
        for conn in touched:
            conn.write_out()
        self._schedule_wake()

    def _commit_in_place(self) -> OpError | None:
        """Flush on this thread; the error the turn's replies get, if it failed."""
        if not self.engine.dirty:
            return None
        try:
            self.engine.flush()
        except StorageError as exc:
            return self._commit_failed(exc)
        self.commits += 1
        return None

    def _start_commit(self, batch: list[Outbox]) -> bool:
        """Start a pipelined commit for ``batch``; False if the engine commits
        in place (or has nothing to commit)."""
        if not self.engine.dirty or self._loop is None or self._closing:
            return False
        try:
            commit = self.engine.start_commit()
        except StorageError as exc:
            self._release(batch, self._commit_failed(exc))
            return True
        if commit is None:
            return False
        self._commit, self._committing = commit, batch
        self.pipelined_commits += 1
        loop = self._loop
        commit.future.add_done_callback(
            lambda _: loop.call_soon_threadsafe(self._on_committed, commit)
        )
        return True

    def _on_committed(self, commit: PendingCommit) -> None:
        """The commit in flight is done: release its batch, start the next."""
        if commit is not self._commit:
            return  # close() settled it already
        failure: OpError | None = None
        try:
            self.engine.finish_commit(commit)
            self.commits += 1
        except StorageError as exc:
            failure = self._commit_failed(exc)
        batch, self._commit, self._committing = self._committing, None, []
        self._release(batch, failure)
        waiting, self._next_batch = self._next_batch, []
        if waiting and not self._start_commit(waiting):
            self._release(waiting, self._commit_in_place())
        self._after_turn()

    def _commit_failed(self, exc: StorageError) -> OpError:
        self.commit_failures += 1
        log.error("group commit failed: %s", exc)
        return OpError(
            ErrorKind.TIMEOUT, f"storage commit failed: {exc}", code="TIMEOUT", definite=False
        )

    def _release(self, batch: list[Outbox], failure: OpError | None) -> None:
        """Send the batch's after-commit messages (unless the commit failed:
        they promise durability) and deliver its replies, in turn order."""
        for out in batch:
            if failure is None:
                self._send_all(out.after_commit)  # acks and replies that promise durability
            for completion, result in out.replies:
                completion.deliver(failure if failure is not None else result)  # type: ignore[attr-defined]

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
        self._closing = True  # commit in place from here on
        commit = self._commit
        if commit is not None:
            commit.future.result()  # the commit thread ends it soon
            self._on_committed(commit)
        if self._scheduled or self.engine.dirty:
            self.end_turn()
        self._closed = True
        for handle in (self._tick_handle, self._sync_handle, self._wake_handle):
            if handle is not None:
                handle.cancel()
