"""The in-memory engine: a cache, optionally bounded by ``maxmemory``.

Each table spreads its keys over ``BUCKET_COUNT`` dicts by the top bits of the
key's ring token, so a SCAN resumes at a token without keeping the whole table
sorted: only the bucket being walked is ordered, on demand.

With ``maxmemory`` set, every bucket keeps its keys in access order (a read
moves the key to the end), and when a write would pass the limit the engine
evicts the least recently used key of one bucket after another, in turn, until
the write fits: an approximate LRU, like Redis's sampled ``allkeys-lru``, at the
cost of one ordered dict per bucket. A record that alone exceeds ``maxmemory``
is refused with ``OutOfMemory``. Memory is counted as key + record bytes plus
``ENTRY_OVERHEAD_BYTES`` per key (two bytes objects and a dict slot).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from itertools import islice

from ringkv.core.ring import TOKEN_BITS, key_token
from ringkv.storage.base import FsyncPolicy, PendingCommit, StorageError

__all__ = ["BUCKET_COUNT", "MemoryEngine", "MemoryTable", "OutOfMemory"]

BUCKET_BITS = 10
BUCKET_COUNT = 1 << BUCKET_BITS
_SHIFT = TOKEN_BITS - BUCKET_BITS
ENTRY_OVERHEAD_BYTES = 2 * 33 + 48  # two bytes headers + a dict entry and index slot
EXPIRY_HEAP_MAX_FACTOR = 4  # the heap is rebuilt when it holds 4x the keys with a TTL


class OutOfMemory(StorageError):
    """The write does not fit under maxmemory even after evicting."""


class MemoryTable:
    def __init__(self, name: str, engine: MemoryEngine, lru: bool) -> None:
        self.name = name
        self._engine = engine
        self._lru = lru
        self._buckets: list[dict[bytes, bytes]] = [
            OrderedDict() if lru else {} for _ in range(BUCKET_COUNT)
        ]
        self._expiry_heap: list[tuple[int, bytes]] = []
        # key -> its indexed expiry: the one heap entry per key that is current
        self._expires: dict[bytes, int] = {}
        self._count = 0
        # A write is nearly always a get then a put of the same key object:
        # remember the last bucket looked up so the key is hashed once.
        self._last_key: bytes | None = None
        self._last_bucket: dict[bytes, bytes] = self._buckets[0]

    def _bucket(self, key: bytes) -> dict[bytes, bytes]:
        if key is self._last_key:
            return self._last_bucket
        bucket = self._buckets[key_token(key) >> _SHIFT]
        self._last_key = key
        self._last_bucket = bucket
        return bucket

    def get(self, key: bytes) -> bytes | None:
        bucket = self._bucket(key)
        record = bucket.get(key)
        if record is not None and self._lru:
            bucket.move_to_end(key)  # type: ignore[attr-defined]
        return record

    def put(self, key: bytes, record: bytes, expires_at_ms: int) -> None:
        bucket = self._bucket(key)
        if self._engine.maxmemory:
            self._engine.make_room(len(key) + len(record) + ENTRY_OVERHEAD_BYTES)
        old = bucket.get(key)  # after make_room, which may have evicted this very key
        grow = len(record) - (len(old) if old is not None else -len(key) - ENTRY_OVERHEAD_BYTES)
        if old is not None and self._lru:
            bucket.move_to_end(key)  # type: ignore[attr-defined]
        bucket[key] = record
        if old is None:
            self._count += 1
        self._engine.used_bytes += grow
        if expires_at_ms:
            if self._expires.get(key) != expires_at_ms:
                self._expires[key] = expires_at_ms
                heapq.heappush(self._expiry_heap, (expires_at_ms, key))
                if len(self._expiry_heap) > EXPIRY_HEAP_MAX_FACTOR * max(len(self._expires), 1024):
                    self._compact_expiry_heap()
        elif self._expires:
            self._expires.pop(key, None)

    def delete(self, key: bytes) -> bool:
        bucket = self._bucket(key)
        old = bucket.pop(key, None)
        if old is None:
            return False
        self._expires.pop(key, None)
        self._count -= 1
        self._engine.used_bytes -= len(key) + len(old) + ENTRY_OVERHEAD_BYTES
        return True

    def scan(
        self, start_token: int, count: int, end_token: int = 2**64 - 1
    ) -> tuple[list[bytes], int]:
        keys: list[bytes] = []
        index = start_token >> _SHIFT
        last_index = end_token >> _SHIFT
        while index <= last_index:
            ordered = sorted((key_token(k), k) for k in self._buckets[index])
            last_token = -1
            for token, key in ordered:
                if token < start_token:
                    continue
                if token > end_token:
                    return keys, 0
                if len(keys) >= count and token != last_token:
                    return keys, token
                keys.append(key)
                last_token = token
            index += 1
            start_token = index << _SHIFT
            if len(keys) >= count and index <= last_index:
                return keys, start_token
        return keys, 0

    def count(self) -> int:
        return self._count

    def count_expiring(self) -> int:
        return len(self._expires)

    def expiry_candidates(self, now_ms: int, limit: int) -> list[bytes]:
        heap = self._expiry_heap
        found: list[bytes] = []
        expires = self._expires
        while heap and heap[0][0] <= now_ms and len(found) < limit:
            expires_at_ms, key = heapq.heappop(heap)
            if expires.get(key) == expires_at_ms:  # else stale: overwritten or deleted
                del expires[key]
                found.append(key)
        return found

    def random_key(self, pick: int) -> bytes | None:
        if self._count == 0:
            return None
        for step in range(BUCKET_COUNT):
            bucket = self._buckets[(pick + step) % BUCKET_COUNT]
            if bucket:
                offset = (pick >> BUCKET_BITS) % len(bucket)
                return next(islice(iter(bucket), offset, None))
        return None

    def clear(self) -> None:
        for bucket in self._buckets:
            for key, record in bucket.items():
                self._engine.used_bytes -= len(key) + len(record) + ENTRY_OVERHEAD_BYTES
            bucket.clear()
        self._expiry_heap.clear()
        self._expires.clear()
        self._count = 0

    @property
    def evictable(self) -> bool:
        """Kept in LRU order and given up under maxmemory (never meta, hints
        or a strong keyspace's acceptor state)."""
        return self._lru

    def evict_one(self, bucket_index: int) -> int:
        """Drop the least recently used key of one bucket; returns bytes freed."""
        bucket = self._buckets[bucket_index]
        if not bucket:
            return 0
        key, record = bucket.popitem(last=False)  # type: ignore[call-arg]
        self._expires.pop(key, None)
        freed = len(key) + len(record) + ENTRY_OVERHEAD_BYTES
        self._count -= 1
        self._engine.used_bytes -= freed
        self._engine.evicted_keys += 1
        return freed

    def _compact_expiry_heap(self) -> None:
        # Keep only the current entry of each key: the heap then holds one
        # entry per key with an expiry, whatever the history of overwrites.
        expires = self._expires
        live = [(at, k) for at, k in self._expiry_heap if expires.get(k) == at]
        heapq.heapify(live)
        self._expiry_heap = live


class MemoryEngine:
    """Tables in memory; ``maxmemory`` 0 means unbounded."""

    name = "memory"

    def __init__(self, maxmemory: int = 0) -> None:
        assert maxmemory >= 0
        self.fsync = FsyncPolicy.NEVER
        self.maxmemory = maxmemory
        self.used_bytes = 0
        self.evicted_keys = 0
        self._tables: dict[str, MemoryTable] = {}
        self._evict_cursor = 0

    def table(self, name: str, *, evictable: bool = True) -> MemoryTable:
        table = self._tables.get(name)
        if table is None:
            lru = evictable and self.maxmemory > 0 and name != "meta"
            table = self._tables[name] = MemoryTable(name, self, lru=lru)
        return table

    def table_names(self) -> list[str]:
        return list(self._tables)

    @property
    def dirty(self) -> bool:
        return False

    def start_commit(self) -> None:
        return None  # commits in place: flush

    def finish_commit(self, commit: PendingCommit) -> None:
        raise RuntimeError("this engine never starts a commit")

    def flush(self) -> None:
        return None

    def sync(self) -> None:
        return None

    def memory_bytes(self) -> int:
        return self.used_bytes

    def make_room(self, needed: int) -> None:
        if self.maxmemory == 0 or self.used_bytes + needed <= self.maxmemory:
            return
        if needed > self.maxmemory:
            raise OutOfMemory("OOM command not allowed when used memory > 'maxmemory'.")
        victims = [t for t in self._tables.values() if t.evictable]
        empty_rounds = 0
        while self.used_bytes + needed > self.maxmemory and empty_rounds < BUCKET_COUNT:
            freed = 0
            for table in victims:
                freed += table.evict_one(self._evict_cursor)
            self._evict_cursor = (self._evict_cursor + 1) % BUCKET_COUNT
            empty_rounds = 0 if freed else empty_rounds + 1
        if self.used_bytes + needed > self.maxmemory:
            raise OutOfMemory("OOM command not allowed when used memory > 'maxmemory'.")

    def close(self) -> None:
        self._tables.clear()
