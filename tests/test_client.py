"""ringkv.Client and ringkv.AsyncClient against a real server."""

from __future__ import annotations

import json
import urllib.request

import pytest

import ringkv
from conftest import RunningServer


def make_keyspace(server: RunningServer, name: str, mode: str) -> None:
    request = urllib.request.Request(
        f"{server.http_url}/v1/keyspaces/{name}",
        data=json.dumps({"mode": mode}).encode(),
        method="PUT",
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status in (200, 201)


def test_client_keyspace_siblings_and_context(server: RunningServer) -> None:
    make_keyspace(server, "carts", "causal")
    url = f"redis://127.0.0.1:{server.resp_port}"
    with ringkv.Client(url, keyspace="carts", level="quorum", w=1) as db:
        db.set("cart", "apple")
        db.put("cart", "pear")  # no context: a sibling
        both = db.get_siblings("cart")
        assert sorted(both.values) == [b"apple", b"pear"]
        db.put("cart", "apple,pear", context=both.context)
        version = db.get_version("cart")
        assert version.value == b"apple,pear" and version.version
        assert db.get_siblings("cart").values == [b"apple,pear"]
        assert db.delete("cart") == 1 and db.get("cart") is None
    with ringkv.Client(url) as plain:  # the default keyspace is another namespace
        assert plain.get("cart") is None
        plain.set("k", "v", ttl_ms=60_000)
        assert plain.get("k") == b"v"


def test_client_resolves_an_http_url_and_checks_levels(server: RunningServer) -> None:
    with ringkv.Client(server.http_url) as db:
        db.set("h", "1")
        assert db.get("h") == b"1"
    with pytest.raises(ValueError, match="unknown level"):
        ringkv.Client(server.http_url, level="most")
    with pytest.raises(ValueError, match="unsupported URL"):
        ringkv.Client("ftp://x")


async def test_async_client(server: RunningServer) -> None:
    make_keyspace(server, "carts", "causal")
    async with ringkv.AsyncClient(f"redis://127.0.0.1:{server.resp_port}", keyspace="carts") as db:
        await db.set("cart", "apple")
        await db.put("cart", "pear")
        both = await db.get_siblings("cart")
        assert sorted(both.values) == [b"apple", b"pear"]
        await db.put("cart", "one", context=both.context)
        assert (await db.get_version("cart")).value == b"one"
        assert await db.get("cart") == b"one"
