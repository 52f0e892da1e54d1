"""The embedded API: ``ringkv.open`` / ``ringkv.open_async`` through their public methods."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import ringkv
from ringkv import exceptions


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(0.005)


@pytest.fixture(params=["memory", "lmdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ringkv.Store]:
    path = None if request.param == "memory" else tmp_path / "db"
    with ringkv.open(path) as opened:
        yield opened


# -- basic operations --------------------------------------------------------


def test_get_set_with_str_and_bytes(store: ringkv.Store) -> None:
    assert store.get("missing") is None
    assert store.set("greeting", "héllo") is True
    assert store.get("greeting") == "héllo".encode()
    assert store.get(b"greeting") == "héllo".encode()
    assert store.set(b"\x00\xffbin", b"\x01\x02") is True
    assert store.get(b"\x00\xffbin") == b"\x01\x02"
    store.set("buf", bytearray(b"ab"))
    store.set("view", memoryview(b"cd"))
    assert (store.get("buf"), store.get("view")) == (b"ab", b"cd")


def test_set_nx_xx_keep_ttl(store: ringkv.Store) -> None:
    assert store.set("k", "1", xx=True) is False
    assert store.get("k") is None
    assert store.set("k", "1", nx=True) is True
    assert store.set("k", "2", nx=True) is False
    assert store.get("k") == b"1"
    assert store.set("k", "3", xx=True) is True
    assert store.get("k") == b"3"
    store.set("k", "4", ttl_ms=60_000)
    store.set("k", "5", keep_ttl=True)
    remaining = store.ttl_ms("k")
    assert remaining is not None and 0 < remaining <= 60_000
    store.set("k", "6")  # a plain set clears the TTL, as in Redis
    assert store.ttl_ms("k") is None


def test_set_rejects_bad_arguments(store: ringkv.Store) -> None:
    with pytest.raises(ValueError, match="exclude"):
        store.set("k", "v", nx=True, xx=True)
    with pytest.raises(ValueError, match="exclude"):
        store.set("k", "v", ttl_ms=10, keep_ttl=True)
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match="ttl_ms"):
            store.set("k", "v", ttl_ms=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key"):
        store.set(12, "v")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="value"):
        store.set("k", 12)  # type: ignore[arg-type]
    assert store.get("k") is None


def test_delete_and_exists(store: ringkv.Store) -> None:
    store.set("a", "1")
    store.set(b"b", "2")
    assert store.exists("a") and store.exists(b"b")
    assert not store.exists("c")
    assert store.delete("a", "b", "c") == 2
    assert store.delete("a") == 0
    assert store.delete() == 0
    assert not store.exists("a")


def test_incr_and_decr(store: ringkv.Store) -> None:
    assert store.incr("n") == 1
    assert store.incr("n", 10) == 11
    assert store.decr("n") == 10
    assert store.decr("n", 20) == -10
    assert store.get("n") == b"-10"
    store.set("text", "abc")
    with pytest.raises(exceptions.NotIntegerError, match="not an integer"):
        store.incr("text")
    with pytest.raises(ValueError):  # NotIntegerError is a ValueError too
        store.incr("text")
    store.set("big", str(2**63 - 1))
    with pytest.raises(exceptions.IncrementOverflowError, match="overflow"):
        store.incr("big")
    assert store.get("big") == str(2**63 - 1).encode()
    with pytest.raises(TypeError):
        store.incr("n", 1.5)  # type: ignore[arg-type]


def test_incr_keeps_ttl(store: ringkv.Store) -> None:
    store.set("n", "1", ttl_ms=60_000)
    store.incr("n")
    remaining = store.ttl_ms("n")
    assert remaining is not None and remaining > 0


# -- expiry ------------------------------------------------------------------


def test_ttl_of_missing_persistent_and_expiring_keys(store: ringkv.Store) -> None:
    with pytest.raises(KeyError):
        store.ttl_ms("missing")
    with pytest.raises(KeyError):
        store.ttl("missing")
    store.set("forever", "v")
    assert store.ttl_ms("forever") is None
    assert store.ttl("forever") is None
    store.set("soon", "v", ttl_ms=30_000)
    remaining = store.ttl_ms("soon")
    assert remaining is not None and 29_000 < remaining <= 30_000
    as_delta = store.ttl("soon")
    assert as_delta is not None and timedelta(seconds=29) < as_delta <= timedelta(seconds=30)


def test_expired_key_is_invisible_and_then_reclaimed(store: ringkv.Store) -> None:
    store.set("short", "v", ttl_ms=30)
    store.set("long", "v")
    assert store.get("short") == b"v"
    wait_until(lambda: store.get("short") is None)
    assert not store.exists("short")
    assert "short" not in store
    assert store.keys() == [b"long"]
    assert len(store) == 1  # reclaimed, not merely hidden
    with pytest.raises(KeyError):
        store.ttl_ms("short")


def test_expire_and_persist(store: ringkv.Store) -> None:
    assert store.expire("missing", 1000) is False
    assert store.persist("missing") is False
    store.set("k", "v")
    assert store.persist("k") is False  # had no TTL
    assert store.expire("k", 60_000) is True
    remaining = store.ttl_ms("k")
    assert remaining is not None and 59_000 < remaining <= 60_000
    assert store.persist("k") is True
    assert store.ttl_ms("k") is None
    assert store.expire("k", 20) is True
    wait_until(lambda: not store.exists("k"))
    store.set("gone", "v")
    assert store.expire("gone", 0) is True  # 0 or less deletes at once, as in Redis
    assert store.get("gone") is None
    with pytest.raises(ValueError, match="ttl_ms"):
        store.expire("k", 1.5)  # type: ignore[arg-type]


# -- scan and the mapping protocol -------------------------------------------


def test_scan_with_prefix_and_small_batches(store: ringkv.Store) -> None:
    users = {f"user:{i}".encode() for i in range(250)}
    store.update(dict.fromkeys(users, b"x"))
    store.update([(b"order:1", b"y"), ("order:2", "z")])
    assert set(store.scan("user:", count=7)) == users
    assert sorted(store.scan(b"order:")) == [b"order:1", b"order:2"]
    everything = list(store.scan(count=1))
    assert len(everything) == len(set(everything)) == 252
    assert set(store.keys("order:")) == {b"order:1", b"order:2"}
    assert list(store.scan("nothing-has-this-prefix")) == []
    with pytest.raises(ValueError):
        store.scan(count=0)  # checked at the call, not at the first next()


def test_scan_sees_writes_made_between_batches(store: ringkv.Store) -> None:
    store.update({f"k{i}": "v" for i in range(50)})
    seen = []
    for key in store.scan(count=5):
        seen.append(key)
        store.set(b"extra-" + key, "v")  # writing while iterating is allowed
    assert {f"k{i}".encode() for i in range(50)} <= set(seen)


def test_mapping_protocol(store: ringkv.Store) -> None:
    assert len(store) == 0
    assert not store
    store["a"] = "1"
    store[b"b"] = b"2"
    assert store["a"] == b"1"
    assert store[b"b"] == b"2"
    assert "a" in store and b"b" in store
    assert "c" not in store
    assert 42 not in store
    with pytest.raises(KeyError):
        store["c"]
    assert sorted(store) == [b"a", b"b"]
    assert len(store) == 2
    del store["a"]
    assert "a" not in store
    with pytest.raises(KeyError):
        del store["a"]
    store.clear()
    assert len(store) == 0
    assert store.get("b") is None


# -- limits and errors -------------------------------------------------------


def test_limits_raise_typed_errors_and_store_nothing(tmp_path: Path) -> None:
    with ringkv.open(tmp_path / "db", max_key_bytes=16, max_value_bytes=32) as store:
        with pytest.raises(exceptions.KeyTooLargeError, match="max-key-bytes"):
            store.set("k" * 17, "v")
        with pytest.raises(exceptions.ValueTooLargeError, match="max-value-bytes"):
            store.set("k", "v" * 33)
        with pytest.raises(exceptions.TooLargeError):
            store.get("k" * 17)
        assert store.get("k") is None
        assert store.set("k" * 16, "v" * 32)
        assert len(store) == 1
        with pytest.raises(exceptions.RingkvError) as caught:
            store.set("k", "v" * 40)
        assert caught.value.definite is True


def test_long_keys_work_on_lmdb(tmp_path: Path) -> None:
    with ringkv.open(tmp_path / "db") as store:
        long_a = b"a" * 8000 + b"1"
        long_b = b"a" * 8000 + b"2"
        store.set(long_a, "one")
        store.set(long_b, "two")
        assert (store.get(long_a), store.get(long_b)) == (b"one", b"two")
        assert sorted(store.keys()) == [long_a, long_b]


def test_maxmemory_evicts_in_memory(tmp_path: Path) -> None:
    with ringkv.open(maxmemory=64 * 1024) as cache:
        for i in range(2000):
            cache.set(f"key:{i}", "v" * 100)
        assert 0 < len(cache) < 2000
        assert cache.get("key:1999") == b"v" * 100  # the newest survives
        with pytest.raises(exceptions.OutOfMemoryError):
            cache.set("huge", "v" * 100_000)


def test_open_rejects_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ringkv.open(tmp_path / "a", maxmemory=1024)
    with pytest.raises(ValueError):
        ringkv.open(fsync="sometimes")
    with pytest.raises(ValueError):
        ringkv.open(max_key_bytes=0)
    with pytest.raises(ValueError):
        ringkv.open(node_id="bad id")


def test_closed_store_raises(store: ringkv.Store) -> None:
    store.set("k", "v")
    store.close()
    assert store.closed
    store.close()  # idempotent
    with pytest.raises(exceptions.StoreClosedError):
        store.get("k")
    with pytest.raises(exceptions.StoreClosedError):
        len(store)
    assert "closed" in repr(store)


# -- persistence -------------------------------------------------------------


@pytest.mark.parametrize("fsync", ["always", "batch", "never"])
def test_data_survives_close_and_reopen(tmp_path: Path, fsync: str) -> None:
    path = tmp_path / "db"
    with ringkv.open(path, fsync=fsync) as store:
        assert store.path == str(path)
        store.set("plain", "value")
        store.set("expiring", "soon", ttl_ms=60_000)
        store.set("deleted", "x")
        store.delete("deleted")
        store.incr("counter", 41)
        store.update({f"bulk:{i}": str(i) for i in range(500)})
    with ringkv.open(path, fsync=fsync) as store:
        assert store.get("plain") == b"value"
        assert store.get("deleted") is None
        assert store.incr("counter") == 42
        remaining = store.ttl_ms("expiring")
        assert remaining is not None and 0 < remaining <= 60_000
        assert len(store.keys("bulk:")) == 500
        assert store.get("bulk:499") == b"499"
        assert len(store) == 503


def test_expired_keys_stay_gone_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with ringkv.open(path) as store:
        store.set("short", "v", ttl_ms=20)
        store.set("kept", "v")
    with ringkv.open(path) as store:
        wait_until(lambda: store.get("short") is None)
        assert store.keys() == [b"kept"]


def test_threads_share_one_store(store: ringkv.Store) -> None:
    def writer(worker: int) -> None:
        for i in range(50):
            store.set(f"w{worker}:{i}", str(i))
            store.incr("total")

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get("total") == b"200"  # no increment lost to a race
    assert len(store) == 201


# -- asyncio twin ------------------------------------------------------------


@pytest.mark.parametrize("on_disk", [False, True])
async def test_async_store_mirrors_the_sync_api(tmp_path: Path, on_disk: bool) -> None:
    path = tmp_path / "db" if on_disk else None
    async with ringkv.open_async(path) as store:
        assert await store.get("k") is None
        assert await store.set("k", "v", ttl_ms=60_000) is True
        assert await store.set("k", "w", nx=True) is False
        assert await store.get(b"k") == b"v"
        assert await store.exists("k")
        remaining = await store.ttl_ms("k")
        assert remaining is not None and remaining > 0
        assert await store.ttl("k") is not None
        assert await store.persist("k") is True
        assert await store.ttl_ms("k") is None
        assert await store.expire("k", 60_000) is True
        assert await store.incr("n", 5) == 5
        assert await store.decr("n") == 4
        await store.update({f"p:{i}": "x" for i in range(30)})
        assert sorted([k async for k in store.scan("p:", count=4)]) == sorted(
            f"p:{i}".encode() for i in range(30)
        )
        assert len(await store.keys("p:")) == 30
        assert await store.count() == 32
        assert await store.delete("k", "n", "missing") == 2
        with pytest.raises(exceptions.NotIntegerError):
            await store.incr("p:1")
        with pytest.raises(KeyError):
            await store.ttl_ms("missing")
        with pytest.raises(ValueError):
            store.scan(count=0)
        store.sync.set("shared", "yes")  # the same data through the sync store
        assert await store.get("shared") == b"yes"
        await store.clear()
        assert await store.count() == 0
    assert store.closed


async def test_async_expiry_and_persistence(tmp_path: Path) -> None:
    path = tmp_path / "db"
    async with ringkv.open_async(path) as store:
        await store.set("short", "v", ttl_ms=30)
        await store.set("kept", "v")
        deadline = time.monotonic() + 5
        while await store.get("short") is not None:
            assert time.monotonic() < deadline, "key did not expire"
            await asyncio.sleep(0.005)
    async with ringkv.open_async(path) as store:
        assert await store.get("kept") == b"v"
        assert await store.keys() == [b"kept"]
