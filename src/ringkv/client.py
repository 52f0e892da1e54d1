"""The Python client: ``ringkv.Client(url)`` and ``ringkv.AsyncClient(url)``.

They speak RESP through redis-py (with hiredis when installed) and add what a
Redis client does not know: consistency levels, keyspaces, siblings with
their causal context, and context-carrying writes. One client keeps one
connection pool; every pooled connection is set up with the client's
keyspace and level (``RINGKV.KEYSPACE``, ``RINGKV.CONSISTENCY``), so the
settings hold whatever connection a command takes.

    with ringkv.Client("redis://127.0.0.1:6380", keyspace="carts") as db:
        db.set("cart", "apple")
        read = db.get_siblings("cart")          # Siblings(values=[...], context=...)
        db.put("cart", b"apple,pear", context=read.context)

``url`` is ``redis://[:password@]host:port``; ``http://host:port`` is accepted
too and resolved to the node's RESP port through its ``/health``.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis

__all__ = ["AsyncClient", "Client", "Siblings", "Version"]

_LEVELS = ("one", "quorum", "all", "local_quorum", "linearizable")


@dataclass(frozen=True, slots=True)
class Siblings:
    """Every live value of a key (one unless concurrent writes left siblings),
    and the causal context to write back with to supersede them all."""

    values: list[bytes]
    context: str


@dataclass(frozen=True, slots=True)
class Version:
    """The newest value of a key, its version, and the causal context."""

    value: bytes | None
    version: str | None
    context: str


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

    def get(self, key: str | bytes) -> bytes | None:
        """The newest value (the HLC-newest sibling), or None."""
        value: bytes | None = self.redis.get(key)
        return value

    def set(self, key: str | bytes, value: str | bytes, *, ttl_ms: int | None = None) -> None:
        self.redis.set(key, value, px=ttl_ms)

    def delete(self, *keys: str | bytes) -> int:
        return int(self.redis.delete(*keys))

    def get_version(self, key: str | bytes) -> Version:
        value, version, context = self.redis.execute_command("RINGKV.GETV", key)
        return Version(value, version.decode() if version else None, context.decode())

    def get_siblings(self, key: str | bytes) -> Siblings:
        context, values = self.redis.execute_command("RINGKV.SIBLINGS", key)
        return Siblings(list(values), context.decode())

    def put(self, key: str | bytes, value: str | bytes, *, context: str | None = None) -> None:
        """Write ``value``, superseding exactly what ``context`` saw (None: nothing)."""
        if context is None:
            self.redis.execute_command("RINGKV.PUT", key, value)
        else:
            self.redis.execute_command("RINGKV.PUT", key, value, "CONTEXT", context)

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

    async def get(self, key: str | bytes) -> bytes | None:
        value: bytes | None = await self.redis.get(key)
        return value

    async def set(self, key: str | bytes, value: str | bytes, *, ttl_ms: int | None = None) -> None:
        await self.redis.set(key, value, px=ttl_ms)

    async def delete(self, *keys: str | bytes) -> int:
        return int(await self.redis.delete(*keys))

    async def get_version(self, key: str | bytes) -> Version:
        value, version, context = await self.redis.execute_command("RINGKV.GETV", key)
        return Version(value, version.decode() if version else None, context.decode())

    async def get_siblings(self, key: str | bytes) -> Siblings:
        context, values = await self.redis.execute_command("RINGKV.SIBLINGS", key)
        return Siblings(list(values), context.decode())

    async def put(
        self, key: str | bytes, value: str | bytes, *, context: str | None = None
    ) -> None:
        if context is None:
            await self.redis.execute_command("RINGKV.PUT", key, value)
        else:
            await self.redis.execute_command("RINGKV.PUT", key, value, "CONTEXT", context)

    async def close(self) -> None:
        await self.redis.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
