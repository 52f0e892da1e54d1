"""Embedded ringkv: one node inside your Python process, no server.

``ringkv.open(path)`` returns a ``Store``: a durable key-value store on LMDB at
``path``, or an in-memory cache with ``path=None``. It is the same core
``Node`` that ``ringkv serve`` runs (a one-node cluster, DESIGN.md), driven
synchronously instead of by an event loop::

    import ringkv

    with ringkv.open("./data") as store:
        store.set("user:1", "alice", ttl_ms=60_000)
        store["counter"] = b"0"
        store.incr("counter")
        print(store.get("user:1"), store.ttl_ms("user:1"), list(store.scan("user:")))

How a call runs. Every method takes the store's lock, submits its request(s)
to the node, lets the node do its bounded background work when a tick is due
(reclaiming expired keys; an expired key is invisible at once whether or not
it has been reclaimed), commits the engine (one LMDB transaction, fsynced
under ``fsync="always"``), and only then returns. So a method that returned
has made its write durable as the fsync policy says, exactly as a server
acknowledges a write only after its group commit. Under ``fsync="batch"`` the
fsync happens at most every ``fsync_interval_ms``, checked on each call, and
at ``close()``.

Keys and values are ``bytes`` or ``str`` (encoded as UTF-8); values come back
as ``bytes``. A missing key is not an error (``get`` returns None); a failed
request raises a ``ringkv.exceptions.RingkvError`` subclass. The store is safe
to share between threads (one lock; operations are short). One path must be
opened by one store at a time: neither another ``Store`` nor ``ringkv serve``
may use the same directory concurrently.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from datetime import timedelta
from types import TracebackType
from typing import ParamSpec, TypeVar

from ringkv.core import ops
from ringkv.core.config import DEFAULT_KEYSPACE, NodeConfig
from ringkv.core.errors import ErrorKind, OpError
from ringkv.core.node import Count, Flush, Mutate, Node, Read, ReadResult, Request, Scan, ScanResult
from ringkv.exceptions import (
    OutcomeUnknownError,
    RingkvError,
    StoreClosedError,
    error_from_op,
)
from ringkv.storage.base import Engine, FsyncPolicy, StorageError
from ringkv.storage.memory import MemoryEngine

__all__ = ["AsyncStore", "Store", "open", "open_async"]

KeyLike = str | bytes
ValueLike = str | bytes | bytearray | memoryview

_P = ParamSpec("_P")
_T = TypeVar("_T")

SCAN_BATCH_DEFAULT = 1000  # keys fetched per lock hold while iterating


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _key_bytes(key: KeyLike) -> bytes:
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    raise TypeError(f"a key must be str or bytes, not {type(key).__name__}")


def _value_bytes(value: ValueLike) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"a value must be str or bytes, not {type(value).__name__}")


def _positive_ms(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive whole number of milliseconds, not {value!r}")
    return value


def open(  # shadows the builtin on purpose, as dbm.open and shelve.open do
    path: str | os.PathLike[str] | None = None,
    *,
    fsync: str | FsyncPolicy = "always",
    fsync_interval_ms: int = 100,
    max_key_bytes: int = 8 * 1024,
    max_value_bytes: int = 8 * 1024 * 1024,
    maxmemory: int = 0,
    node_id: str = "n1",
    map_size: int = 16 * 2**30,
) -> Store:
    """Open a store: in memory when ``path`` is None, else LMDB in directory ``path``.

    ``fsync`` is ``"always"`` (each call's writes are fsynced before it
    returns), ``"batch"`` (fsync at most every ``fsync_interval_ms``) or
    ``"never"``; it applies to LMDB only. ``maxmemory`` (bytes, 0 = no limit)
    applies to the in-memory engine only: past it the least recently used
    keys are evicted, as in a cache. ``map_size`` is LMDB's maximum file size.
    """
    policy = FsyncPolicy(fsync) if isinstance(fsync, str) else fsync
    if maxmemory < 0:
        raise ValueError("maxmemory must be 0 (no limit) or a number of bytes")
    if path is not None and maxmemory:
        raise ValueError("maxmemory applies to the in-memory store (path=None) only")
    if fsync_interval_ms < 1:
        raise ValueError("fsync_interval_ms must be at least 1")
    config = NodeConfig(
        node_id=node_id, max_key_bytes=max_key_bytes, max_value_bytes=max_value_bytes
    )
    config.validate()  # before opening anything, so a bad knob leaves no files behind
    engine: Engine
    if path is None:
        engine = MemoryEngine(maxmemory=maxmemory)
    else:
        from ringkv.storage.lmdb_engine import LmdbEngine

        try:
            engine = LmdbEngine(path, fsync=policy, map_size=map_size)
        except StorageError as exc:
            raise RingkvError(str(exc)) from exc
    node = Node(config, engine, random.Random(), _now_ms())
    return Store(node, engine, path=None if path is None else os.fspath(path),
                 fsync_interval_ms=fsync_interval_ms)  # fmt: skip


def open_async(
    path: str | os.PathLike[str] | None = None,
    *,
    fsync: str | FsyncPolicy = "always",
    fsync_interval_ms: int = 100,
    max_key_bytes: int = 8 * 1024,
    max_value_bytes: int = 8 * 1024 * 1024,
    maxmemory: int = 0,
    node_id: str = "n1",
    map_size: int = 16 * 2**30,
) -> AsyncStore:
    """``open`` for asyncio code: the same store with coroutine methods.

    Use it as ``async with ringkv.open_async(path) as store: await store.get(k)``.
    The options are those of ``open``. Opening is synchronous and quick.
    """
    store = open(
        path,
        fsync=fsync,
        fsync_interval_ms=fsync_interval_ms,
        max_key_bytes=max_key_bytes,
        max_value_bytes=max_value_bytes,
        maxmemory=maxmemory,
        node_id=node_id,
        map_size=map_size,
    )
    return AsyncStore(store)


class Store:
    """A ringkv node in this process. Create it with ``ringkv.open``.

    Besides the named methods it behaves like a mutable mapping of bytes to
    bytes: ``store[k]``, ``store[k] = v``, ``del store[k]``, ``k in store``,
    ``len(store)``, ``iter(store)``, ``store.update(...)``, ``store.clear()``.
    """

    def __init__(
        self,
        node: Node,
        engine: Engine,
        *,
        path: str | None = None,
        keyspace: str = DEFAULT_KEYSPACE,
        fsync_interval_ms: int = 100,
    ) -> None:
        self._node = node
        self._engine = engine
        self._keyspace = keyspace
        self._path = path
        self._fsync_interval_ms = fsync_interval_ms
        self._lock = threading.RLock()
        self._closed = False
        self._last_tick_ms = self._last_sync_ms = _now_ms()

    # -- the engine loop, run synchronously -------------------------------

    def _run(self, requests: list[Request]) -> list[object]:
        """Submit, do due background work, commit, and return the results in order."""
        with self._lock:
            self._check_open()
            now = _now_ms()
            try:
                # Replies are drained before the lock is released, so the
                # request's position is a token unique among the pending ones.
                for position, request in enumerate(requests):
                    self._node.submit(request, position, now)
                self._background(now)
                self._commit(now)
            finally:
                replies = self._node.take_replies()
        by_position = dict(replies)
        return [by_position[position] for position in range(len(requests))]

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the store is closed; open it again with ringkv.open()")

    def _background(self, now: int) -> None:
        if now - self._last_tick_ms >= self._node.config.tick_interval_ms:
            self._last_tick_ms = now
            self._node.tick(now)

    def _commit(self, now: int) -> None:
        try:
            if self._engine.dirty:
                self._engine.flush()
            if (
                self._engine.fsync is FsyncPolicy.BATCH
                and now - self._last_sync_ms >= self._fsync_interval_ms
            ):
                self._last_sync_ms = now
                self._engine.sync()
        except StorageError as exc:
            raise OutcomeUnknownError(
                f"storage commit failed, so this call's writes may or may not persist: {exc}"
            ) from exc

    def _one(self, request: Request, key: bytes | None = None) -> object:
        result = self._run([request])[0]
        if isinstance(result, OpError):
            raise self._error(result, key)
        return result

    def _error(self, error: OpError, key: bytes | None) -> RingkvError:
        too_large_key = None
        if error.kind is ErrorKind.TOO_LARGE and key is not None:
            too_large_key = len(key) > self._node.config.max_key_bytes
        return error_from_op(error, key_too_large=too_large_key)

    def _read(self, key: KeyLike) -> ReadResult:
        raw = _key_bytes(key)
        result = self._one(Read(self._keyspace, raw), raw)
        assert isinstance(result, ReadResult)
        return result

    def _mutate(self, key: KeyLike, mutation: ops.Mutation) -> object:
        raw = _key_bytes(key)
        return self._one(Mutate(self._keyspace, raw, mutation), raw)

    def _mutate_many(self, items: list[tuple[bytes, ops.Mutation]]) -> list[object]:
        """Several mutations in one commit; raise the first error after all ran."""
        requests: list[Request] = [Mutate(self._keyspace, k, m) for k, m in items]
        results = self._run(requests)
        for (key, _), result in zip(items, results, strict=True):
            if isinstance(result, OpError):
                raise self._error(result, key)
        return results

    # -- reads ------------------------------------------------------------

    def get(self, key: KeyLike) -> bytes | None:
        """The value of ``key``, or None if it does not exist (or has expired)."""
        newest = self._read(key).newest
        return None if newest is None else newest.value

    def exists(self, key: KeyLike) -> bool:
        return self._read(key).newest is not None

    def ttl_ms(self, key: KeyLike) -> int | None:
        """Milliseconds until ``key`` expires, or None if it never expires.

        Raises ``KeyError`` if the key does not exist (Redis's PTTL answers
        -2 and -1 for these two cases; here they are told apart by type).
        """
        newest = self._read(key).newest
        if newest is None:
            raise KeyError(key)
        if newest.expires_at_ms == 0:
            return None
        return max(0, newest.expires_at_ms - _now_ms())

    def ttl(self, key: KeyLike) -> timedelta | None:
        """``ttl_ms`` as a ``timedelta``: None if the key never expires, KeyError if absent."""
        remaining = self.ttl_ms(key)
        return None if remaining is None else timedelta(milliseconds=remaining)

    def scan(self, prefix: KeyLike = b"", *, count: int = SCAN_BATCH_DEFAULT) -> Iterator[bytes]:
        """Every live key that starts with ``prefix``, in ring (hash) order.

        Keys are fetched ``count`` at a time, each batch under the lock, so
        other threads may write while you iterate. As with Redis SCAN, a key
        present for the whole iteration is returned exactly once; a key added
        or removed meanwhile may or may not be.
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        return self._scan(_key_bytes(prefix), count)

    def _scan(self, prefix: bytes, count: int) -> Iterator[bytes]:
        cursor = 0
        while True:
            keys, cursor = self._scan_batch(cursor, count)
            yield from (k for k in keys if k.startswith(prefix))
            if cursor == 0:
                return

    def _scan_batch(self, cursor: int, count: int) -> tuple[list[bytes], int]:
        result = self._one(Scan(self._keyspace, cursor, count))
        assert isinstance(result, ScanResult)
        return result.keys, result.cursor

    def keys(self, prefix: KeyLike = b"") -> list[bytes]:
        """The keys that start with ``prefix``, as a list (see ``scan`` for large stores)."""
        return list(self.scan(prefix))

    def count(self) -> int:
        """The number of live keys (``len(store)``).

        Expired keys not yet reclaimed are reclaimed first, so that the count
        is exact (Redis's DBSIZE counts them until they are reclaimed).
        """
        with self._lock:
            self._check_open()
            before = -1
            while self._node.expired_keys != before:
                before = self._node.expired_keys
                self._node.tick(_now_ms())
            result = self._one(Count(self._keyspace))
        assert isinstance(result, int)
        return result

    # -- writes -----------------------------------------------------------

    def set(
        self,
        key: KeyLike,
        value: ValueLike,
        *,
        ttl_ms: int | None = None,
        nx: bool = False,
        xx: bool = False,
        keep_ttl: bool = False,
    ) -> bool:
        """Store ``value`` under ``key``; True if stored.

        ``ttl_ms``: expire after this many milliseconds (else the key never
        expires, unless ``keep_ttl`` keeps the TTL it had). ``nx``: only if
        the key does not exist; ``xx``: only if it does; False when refused.
        """
        if nx and xx:
            raise ValueError("nx and xx exclude each other")
        if ttl_ms is not None and keep_ttl:
            raise ValueError("ttl_ms and keep_ttl exclude each other")
        expiry = None if ttl_ms is None else ops.Expiry(ttl_ms=_positive_ms("ttl_ms", ttl_ms))
        condition = ops.Condition.NX if nx else ops.Condition.XX if xx else None
        put = ops.Put(_value_bytes(value), expiry=expiry, keep_ttl=keep_ttl, condition=condition)
        return bool(self._mutate(key, put))

    def delete(self, *keys: KeyLike) -> int:
        """Delete the keys; the number that existed."""
        results = self._mutate_many([(_key_bytes(k), ops.Remove()) for k in keys])
        return sum(1 for r in results if r is True)

    def expire(self, key: KeyLike, ttl_ms: int) -> bool:
        """Expire ``key`` ``ttl_ms`` ms from now (0 or less: delete it now).

        True if the key exists (and so got the new TTL), else False.
        """
        if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int):
            raise ValueError(f"ttl_ms must be a whole number of milliseconds, not {ttl_ms!r}")
        return bool(self._mutate(key, ops.Expire(ops.Expiry(ttl_ms=ttl_ms))))

    def persist(self, key: KeyLike) -> bool:
        """Remove the key's TTL; True if it had one."""
        return bool(self._mutate(key, ops.Expire(None)))

    def incr(self, key: KeyLike, by: int = 1) -> int:
        """Add ``by`` to the 64-bit integer stored at ``key`` (0 if absent); the new value.

        Raises ``NotIntegerError`` if the value is not a decimal integer and
        ``IncrementOverflowError`` past the signed 64-bit range. The TTL is kept.
        """
        if isinstance(by, bool) or not isinstance(by, int):
            raise TypeError(f"by must be an int, not {type(by).__name__}")
        result = self._mutate(key, ops.IncrBy(by))
        assert isinstance(result, int)
        return result

    def decr(self, key: KeyLike, by: int = 1) -> int:
        return self.incr(key, -by)

    def update(
        self, items: Mapping[KeyLike, ValueLike] | Iterable[tuple[KeyLike, ValueLike]] = ()
    ) -> None:
        """Set many keys in one commit (one fsync). Per key, not atomic: on an
        error the keys before the failing one are stored."""
        pairs = items.items() if isinstance(items, Mapping) else items
        self._mutate_many([(_key_bytes(k), ops.Put(_value_bytes(v))) for k, v in pairs])

    def clear(self) -> None:
        """Delete every key."""
        self._one(Flush(self._keyspace))

    # -- mapping protocol -------------------------------------------------

    def __getitem__(self, key: KeyLike) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: KeyLike, value: ValueLike) -> None:
        self.set(key, value)

    def __delitem__(self, key: KeyLike) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str | bytes):
            return False
        return self.exists(key)

    def __iter__(self) -> Iterator[bytes]:
        return self.scan()

    def __len__(self) -> int:
        return self.count()

    # -- life cycle -------------------------------------------------------

    @property
    def path(self) -> str | None:
        """The LMDB directory, or None for an in-memory store."""
        return self._path

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def uses_disk(self) -> bool:
        """True when calls may block on disk I/O (the LMDB engine)."""
        return not isinstance(self._engine, MemoryEngine)

    def close(self) -> None:
        """Commit and fsync what is pending and close the engine; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._node.close()
                self._engine.close()
            except StorageError as exc:
                raise OutcomeUnknownError(f"closing the store failed: {exc}") from exc

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "memory" if self._path is None else repr(self._path)
        state = " closed" if self._closed else ""
        return f"<ringkv.Store {where}{state}>"


class AsyncStore:
    """The ``Store`` API as coroutines, for asyncio programs.

    Why not a second implementation: every operation is a short, in-process
    call, so the coroutine runs the very same ``Store`` method. On the
    in-memory engine it runs inline (microseconds; a thread hop would cost
    more than the work). On LMDB a call may wait for an fsync (milliseconds),
    which must not stall the event loop, so it runs in a worker thread with
    ``asyncio.to_thread``; the store's lock keeps such calls in order. A
    cancelled call that is already running in its thread still completes.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._offload = store.uses_disk

    @property
    def sync(self) -> Store:
        """The underlying synchronous store (shared, same data)."""
        return self._store

    async def _call(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        if self._offload:
            return await asyncio.to_thread(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    async def get(self, key: KeyLike) -> bytes | None:
        return await self._call(self._store.get, key)

    async def exists(self, key: KeyLike) -> bool:
        return await self._call(self._store.exists, key)

    async def ttl_ms(self, key: KeyLike) -> int | None:
        return await self._call(self._store.ttl_ms, key)

    async def ttl(self, key: KeyLike) -> timedelta | None:
        return await self._call(self._store.ttl, key)

    async def set(
        self,
        key: KeyLike,
        value: ValueLike,
        *,
        ttl_ms: int | None = None,
        nx: bool = False,
        xx: bool = False,
        keep_ttl: bool = False,
    ) -> bool:
        call = functools.partial(
            self._store.set, key, value, ttl_ms=ttl_ms, nx=nx, xx=xx, keep_ttl=keep_ttl
        )
        return await self._call(call)

    async def delete(self, *keys: KeyLike) -> int:
        return await self._call(self._store.delete, *keys)

    async def expire(self, key: KeyLike, ttl_ms: int) -> bool:
        return await self._call(self._store.expire, key, ttl_ms)

    async def persist(self, key: KeyLike) -> bool:
        return await self._call(self._store.persist, key)

    async def incr(self, key: KeyLike, by: int = 1) -> int:
        return await self._call(self._store.incr, key, by)

    async def decr(self, key: KeyLike, by: int = 1) -> int:
        return await self._call(self._store.decr, key, by)

    async def update(
        self, items: Mapping[KeyLike, ValueLike] | Iterable[tuple[KeyLike, ValueLike]] = ()
    ) -> None:
        await self._call(self._store.update, items)

    async def clear(self) -> None:
        await self._call(self._store.clear)

    async def count(self) -> int:
        return await self._call(self._store.count)

    async def keys(self, prefix: KeyLike = b"") -> list[bytes]:
        return await self._call(self._store.keys, prefix)

    def scan(
        self, prefix: KeyLike = b"", *, count: int = SCAN_BATCH_DEFAULT
    ) -> AsyncIterator[bytes]:
        """``Store.scan`` as an async iterator: ``async for key in store.scan(prefix)``."""
        if count < 1:
            raise ValueError("count must be at least 1")
        return self._scan(_key_bytes(prefix), count)

    async def _scan(self, prefix: bytes, count: int) -> AsyncIterator[bytes]:
        cursor = 0
        while True:
            keys, cursor = await self._call(self._store._scan_batch, cursor, count)
            for key in keys:
                if key.startswith(prefix):
                    yield key
            if cursor == 0:
                return

    async def aclose(self) -> None:
        await self._call(self._store.close)

    @property
    def closed(self) -> bool:
        return self._store.closed

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<ringkv.AsyncStore over {self._store!r}>"
