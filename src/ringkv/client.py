"""The Python client: ``ringkv.Client(url)`` and ``ringkv.AsyncClient(url)``.

They speak RESP through redis-py (with hiredis when installed) and add what a
Redis client does not know: consistency levels, keyspaces, siblings with
their causal context, context-carrying writes, and, in ``strong`` keyspaces,
compare-and-set and locks with fencing tokens. One client keeps one
connection pool; every pooled connection is set up with the client's
keyspace and level (``RINGKV.KEYSPACE``, ``RINGKV.CONSISTENCY``), so the
settings hold whatever connection a command takes.

    with ringkv.Client("redis://127.0.0.1:6380", keyspace="carts") as db:
        db.set("cart", "apple")
        read = db.get_siblings("cart")          # Siblings(values=[...], context=...)
        db.put("cart", b"apple,pear", context=read.context)

    with ringkv.Client(url, keyspace="accounts") as db:   # a strong keyspace
        value, version = db.get_versioned("balance")
        db.cas_version("balance", version, b"90")          # the new version, or MismatchError
        with db.lock("nightly-report", ttl_ms=30_000) as lock:
            storage.write(report, fencing_token=lock.token)

Why a lock's token must travel to the resource it protects: a lock is a
lease. A holder that pauses (a GC pause, a swapped-out VM, a slow network)
past its ``ttl_ms`` no longer holds it while it still believes it does, and
another client takes it meanwhile. No client-side check can close that gap;
the resource can: every token is larger than every token handed out before
for that lock (a renewal gives a new, larger one too), so a resource that
remembers the largest token it has accepted and refuses smaller ones turns
the late writer away (Kleppmann, "How to do distributed locking", 2016).

Errors are typed (``ringkv.exceptions``): ``MismatchError`` (a CAS or a
precondition did not hold, a lock is held by another owner; certainly no
effect), ``UnavailableError`` (certainly no effect: no majority reachable),
``OutcomeUnknownError`` (a timeout: it may have happened), ``WrongLevelError``
(the keyspace's mode does not allow it). Other server errors stay redis-py's
``ResponseError``.

``url`` is ``redis://[:password@]host:port``; ``http://host:port`` is accepted
too and resolved to the node's RESP port through its ``/health``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import time
import urllib.request
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis

from ringkv.exceptions import (
    MismatchError,
    OutcomeUnknownError,
    RingkvError,
    UnavailableError,
    WrongLevelError,
)

__all__ = ["AsyncClient", "AsyncLock", "Client", "Lock", "Siblings", "Version"]

_LEVELS = ("one", "quorum", "all", "local_quorum", "linearizable")


@dataclass(frozen=True, slots=True)
class Siblings:
    """Every live value of a key (one unless concurrent writes left siblings),
    and the causal context to write back with to supersede them all."""

    values: list[bytes]
    context: str


@dataclass(frozen=True, slots=True)
class Version:
    """The newest value of a key, its version, and the causal context.

    In a strong keyspace ``version`` is the register's integer version as
    text (``get_versioned`` gives it as an int) and ``context`` is empty."""

    value: bytes | None
    version: str | None
    context: str


# RESP error prefixes of DESIGN.md's error table, and their exceptions.
_ERRORS: dict[str, type[RingkvError]] = {
    "MISMATCH": MismatchError,
    "UNAVAILABLE": UnavailableError,
    "TIMEOUT": OutcomeUnknownError,
    "WRONGLEVEL": WrongLevelError,
}


@contextlib.contextmanager
def _typed_errors() -> Iterator[None]:
    """redis-py's errors as ringkv's: a ringkv error prefix becomes its
    exception, and a reply that did not come in time is an unknown outcome."""
    try:
        yield
    except redis.ResponseError as exc:
        code, _, message = str(exc).partition(" ")
        cls = _ERRORS.get(code)
        if cls is None:
            raise
        raise cls(message) from exc
    except redis.TimeoutError as exc:
        raise OutcomeUnknownError(f"no reply in time ({exc}); it may have happened") from exc


def _version_text(version: object) -> str | None:
    if isinstance(version, bytes):
        return version.decode()
    return None if version is None else str(version)


def _as_version(reply: list[Any]) -> Version:
    value, version, context = reply
    return Version(value, _version_text(version), context.decode() if context else "")


def _as_versioned(reply: list[Any]) -> tuple[bytes | None, int]:
    value, version, _ = reply
    if not isinstance(version, int):
        raise WrongLevelError(
            "get_versioned needs a strong keyspace (integer versions); in an lww or causal "
            "keyspace use get_version"
        )
    return value, version


def _new_owner() -> str:
    """A lock owner id unique to one acquisition: two threads or processes
    never share one, so neither can renew or release the other's lock."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"


def _lock_args(name: str | bytes, ttl_ms: int, owner: str, keyspace: str | None) -> tuple[Any, ...]:
    if ttl_ms < 1:
        raise ValueError("ttl_ms must be at least 1")
    args: tuple[Any, ...] = ("RINGKV.LOCK", name, ttl_ms, "OWNER", owner)
    return (*args, "KEYSPACE", keyspace) if keyspace is not None else args


def _unlock_args(lock: Lock | AsyncLock) -> tuple[Any, ...]:
    args: tuple[Any, ...] = ("RINGKV.UNLOCK", lock.name, lock.token, "OWNER", lock.owner)
    return (*args, "KEYSPACE", lock.keyspace) if lock.keyspace is not None else args


_RETRY_FIRST_S = 0.01
_RETRY_MAX_S = 0.25


def _retry_pause_s(attempt: int, deadline: float) -> float | None:
    """How long to wait before trying a held lock again (None: give up):
    exponential back-off with jitter, never past the deadline."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return None
    pause = min(_RETRY_MAX_S, _RETRY_FIRST_S * 2.0 ** min(attempt, 16)) * random.uniform(0.5, 1.0)
    return min(pause, remaining)


class Lock:
    """A lock taken with ``Client.lock``: ``token`` is its fencing token.

    A context manager that releases the lock on exit. ``renew()`` extends the
    lease and replaces ``token`` with a new, larger one (pass that to the
    resource from then on). ``owner`` identifies this holder: another
    ``Client.lock(name, owner=lock.owner)`` (on any connection or node)
    renews this very lock."""

    def __init__(
        self, client: Client, name: str | bytes, owner: str, ttl_ms: int, keyspace: str | None
    ) -> None:
        self.client = client
        self.name = name
        self.owner = owner
        self.ttl_ms = ttl_ms
        self.keyspace = keyspace
        self.token = 0
        self.released = False

    def _acquire(self, wait_s: float) -> Lock:
        deadline = time.monotonic() + wait_s
        attempt = 0
        while True:
            try:
                self.renew()
                return self
            except MismatchError:
                pause = _retry_pause_s(attempt, deadline)
                if pause is None:
                    raise
                time.sleep(pause)
                attempt += 1

    def renew(self, ttl_ms: int | None = None) -> int:
        """Extend the lease to ``ttl_ms`` (default: the one taken with) from
        now; answers the new token. MismatchError: it was lost (it expired
        and another owner took it)."""
        if ttl_ms is not None:
            self.ttl_ms = ttl_ms
        args = _lock_args(self.name, self.ttl_ms, self.owner, self.keyspace)
        with _typed_errors():
            self.token = int(self.client.redis.execute_command(*args))
        self.released = False
        return self.token

    def release(self) -> None:
        """Release it (a no-op once released). MismatchError: it was lost
        meanwhile: another owner took it after it expired."""
        if self.released:
            return
        with _typed_errors():
            self.client.redis.execute_command(*_unlock_args(self))
        self.released = True

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self.release()
        except RingkvError:
            if exc_type is None:
                raise  # the lock was lost while held: the caller must know

    def __repr__(self) -> str:
        return f"Lock(name={self.name!r}, token={self.token}, owner={self.owner!r})"


class AsyncLock:
    """The asyncio twin of ``Lock``, from ``AsyncClient.lock``: taken when
    awaited (``lock = await db.lock(name)``) or entered (``async with
    db.lock(name) as lock``), released on exit."""

    def __init__(
        self,
        client: AsyncClient,
        name: str | bytes,
        owner: str,
        ttl_ms: int,
        keyspace: str | None,
        wait_s: float = 0.0,
    ) -> None:
        self.client = client
        self.name = name
        self.owner = owner
        self.ttl_ms = ttl_ms
        self.keyspace = keyspace
        self.wait_s = wait_s
        self.token = 0  # 0 until taken
        self.released = False

    def __await__(self) -> Generator[Any, None, AsyncLock]:
        return self._acquire(self.wait_s).__await__()

    async def _acquire(self, wait_s: float) -> AsyncLock:
        deadline = time.monotonic() + wait_s
        attempt = 0
        while True:
            try:
                await self.renew()
                return self
            except MismatchError:
                pause = _retry_pause_s(attempt, deadline)
                if pause is None:
                    raise
                await asyncio.sleep(pause)
                attempt += 1

    async def renew(self, ttl_ms: int | None = None) -> int:
        if ttl_ms is not None:
            self.ttl_ms = ttl_ms
        args = _lock_args(self.name, self.ttl_ms, self.owner, self.keyspace)
        with _typed_errors():
            self.token = int(await self.client.redis.execute_command(*args))
        self.released = False
        return self.token

    async def release(self) -> None:
        if self.released:
            return
        with _typed_errors():
            await self.client.redis.execute_command(*_unlock_args(self))
        self.released = True

    async def __aenter__(self) -> AsyncLock:
        return self if self.token else await self._acquire(self.wait_s)

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            await self.release()
        except RingkvError:
            if exc_type is None:
                raise

    def __repr__(self) -> str:
        return f"AsyncLock(name={self.name!r}, token={self.token}, owner={self.owner!r})"


def _resp_url(url: str, timeout_s: float) -> str:
    parts = urlsplit(url)
    if parts.scheme in ("redis", "rediss", "unix"):
        return url
    if parts.scheme in ("http", "https"):
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout_s) as reply:
            port = int(json.loads(reply.read())["resp_port"])
        return f"redis://{parts.hostname or '127.0.0.1'}:{port}"
    raise ValueError(f"unsupported URL {url!r}: use redis://host:port or http://host:port")


def _setup_commands(
    keyspace: str | None, level: str | None, r: int, w: int
) -> list[tuple[Any, ...]]:
    commands: list[tuple[Any, ...]] = []
    if keyspace is not None:
        commands.append(("RINGKV.KEYSPACE", keyspace))
    if level is not None or r or w:
        args: list[Any] = ["RINGKV.CONSISTENCY", level or "quorum"]
        if r:
            args += ["R", r]
        if w:
            args += ["W", w]
        commands.append(tuple(args))
    return commands


def _check_level(level: str | None) -> None:
    if level is not None and level not in _LEVELS:
        raise ValueError(f"unknown level {level!r}: use one of {', '.join(_LEVELS)}")


def _connection_class(base: type, setup: list[tuple[Any, ...]], is_async: bool) -> type:
    """A connection class that runs ``setup`` after every (re)connect.

    redis-py 6+ connects through ``on_connect_check_health``; older versions
    through ``on_connect``: hook whichever the installed version calls."""
    hook = "on_connect_check_health" if hasattr(base, "on_connect_check_health") else "on_connect"
    parent = getattr(base, hook)

    def sync_hook(self: Any, *args: Any, **kwargs: Any) -> None:
        parent(self, *args, **kwargs)
        for command in setup:
            self.send_command(*command)
            self.read_response()

    async def async_hook(self: Any, *args: Any, **kwargs: Any) -> None:
        await parent(self, *args, **kwargs)
        for command in setup:
            await self.send_command(*command)
            await self.read_response()

    return type("RingkvConnection", (base,), {hook: async_hook if is_async else sync_hook})


def _redis(
    is_async: bool,
    url: str,
    keyspace: str | None,
    level: str | None,
    r: int,
    w: int,
    timeout_s: float,
) -> Any:
    """A redis-py client whose every pooled connection is set up for ringkv."""
    _check_level(level)
    setup = _setup_commands(keyspace, level, r, w)
    module: Any = aioredis if is_async else redis
    pool = module.ConnectionPool.from_url(
        _resp_url(url, timeout_s),
        connection_class=_connection_class(module.Connection, setup, is_async=is_async),
        socket_timeout=timeout_s,
    )
    return module.Redis(connection_pool=pool)


class Client:
    """A synchronous client (thread-safe: redis-py's pool underneath)."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6380",
        *,
        keyspace: str | None = None,
        level: str | None = None,
        r: int = 0,
        w: int = 0,
        timeout_s: float = 10.0,
    ) -> None:
        # redis-py is loosely typed; the replies are checked where they are used.
        self.redis: Any = _redis(False, url, keyspace, level, r, w, timeout_s)

    def _call(self, *args: Any) -> Any:
        with _typed_errors():
            return self.redis.execute_command(*args)

    def get(self, key: str | bytes) -> bytes | None:
        """The newest value (the HLC-newest sibling), or None."""
        with _typed_errors():
            value: bytes | None = self.redis.get(key)
        return value

    def set(self, key: str | bytes, value: str | bytes, *, ttl_ms: int | None = None) -> None:
        with _typed_errors():
            self.redis.set(key, value, px=ttl_ms)

    def delete(self, *keys: str | bytes) -> int:
        with _typed_errors():
            return int(self.redis.delete(*keys))

    def get_version(self, key: str | bytes) -> Version:
        return _as_version(self._call("RINGKV.GETV", key))

    def get_siblings(self, key: str | bytes) -> Siblings:
        context, values = self._call("RINGKV.SIBLINGS", key)
        return Siblings(list(values), context.decode() if context else "")

    def put(self, key: str | bytes, value: str | bytes, *, context: str | None = None) -> None:
        """Write ``value``, superseding exactly what ``context`` saw (None: nothing)."""
        if context is None:
            self._call("RINGKV.PUT", key, value)
        else:
            self._call("RINGKV.PUT", key, value, "CONTEXT", context)

    # -- strong keyspaces ------------------------------------------------------

    def get_versioned(self, key: str | bytes) -> tuple[bytes | None, int]:
        """A strong keyspace's key: ``(value, version)``; value None when
        absent, version 0 when never written (a delete is a version too).
        Linearizable when the client's level (or the keyspace's) is."""
        return _as_versioned(self._call("RINGKV.GETV", key))

    def cas(self, key: str | bytes, expected: str | bytes, new: str | bytes) -> int:
        """Write ``new`` if the value is ``expected``; the new version.
        MismatchError (certainly not written) otherwise, an absent key
        included: to create one, ``cas_version(key, version, new)`` with the
        version ``get_versioned`` gave."""
        return int(self._call("RINGKV.CAS", key, expected, new))

    def cas_version(self, key: str | bytes, version: int, new: str | bytes) -> int:
        """Write ``new`` if the key is at ``version`` (0: never written); the
        new version, or MismatchError."""
        return int(self._call("RINGKV.CAS", key, "VERSION", version, new))

    def lock(
        self,
        name: str | bytes,
        ttl_ms: int = 10_000,
        *,
        wait_s: float = 0.0,
        owner: str | None = None,
        keyspace: str | None = None,
    ) -> Lock:
        """Take the lock ``name`` for ``ttl_ms``; its fencing token is
        ``.token``. Held by another owner: retried with back-off for up to
        ``wait_s``, then MismatchError. ``owner`` (default: unique to this
        acquisition) names the holder, for renewing from elsewhere;
        ``keyspace`` (default: ``locks``) must be a strong one. Use it as a
        context manager to release it, and pass ``token`` to the resource
        it protects (see the module docstring)."""
        lock = Lock(self, name, owner or _new_owner(), ttl_ms, keyspace)
        return lock._acquire(wait_s)

    def close(self) -> None:
        self.redis.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """The asyncio twin of ``Client`` (redis.asyncio underneath)."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6380",
        *,
        keyspace: str | None = None,
        level: str | None = None,
        r: int = 0,
        w: int = 0,
        timeout_s: float = 10.0,
    ) -> None:
        self.redis: Any = _redis(True, url, keyspace, level, r, w, timeout_s)

    async def _call(self, *args: Any) -> Any:
        with _typed_errors():
            return await self.redis.execute_command(*args)

    async def get(self, key: str | bytes) -> bytes | None:
        with _typed_errors():
            value: bytes | None = await self.redis.get(key)
        return value

    async def set(self, key: str | bytes, value: str | bytes, *, ttl_ms: int | None = None) -> None:
        with _typed_errors():
            await self.redis.set(key, value, px=ttl_ms)

    async def delete(self, *keys: str | bytes) -> int:
        with _typed_errors():
            return int(await self.redis.delete(*keys))

    async def get_version(self, key: str | bytes) -> Version:
        return _as_version(await self._call("RINGKV.GETV", key))

    async def get_siblings(self, key: str | bytes) -> Siblings:
        context, values = await self._call("RINGKV.SIBLINGS", key)
        return Siblings(list(values), context.decode() if context else "")

    async def put(
        self, key: str | bytes, value: str | bytes, *, context: str | None = None
    ) -> None:
        if context is None:
            await self._call("RINGKV.PUT", key, value)
        else:
            await self._call("RINGKV.PUT", key, value, "CONTEXT", context)

    async def get_versioned(self, key: str | bytes) -> tuple[bytes | None, int]:
        return _as_versioned(await self._call("RINGKV.GETV", key))

    async def cas(self, key: str | bytes, expected: str | bytes, new: str | bytes) -> int:
        return int(await self._call("RINGKV.CAS", key, expected, new))

    async def cas_version(self, key: str | bytes, version: int, new: str | bytes) -> int:
        return int(await self._call("RINGKV.CAS", key, "VERSION", version, new))

    def lock(
        self,
        name: str | bytes,
        ttl_ms: int = 10_000,
        *,
        wait_s: float = 0.0,
        owner: str | None = None,
        keyspace: str | None = None,
    ) -> AsyncLock:
        """``Client.lock``'s twin, taken when awaited or entered:
        ``async with db.lock("job") as lock: ...`` or ``lock = await db.lock("job")``."""
        return AsyncLock(self, name, owner or _new_owner(), ttl_ms, keyspace, wait_s)

    async def close(self) -> None:
        await self.redis.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
