"""The HTTP API through its real port: values, listing, errors, metrics, OpenAPI."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import aiohttp
import msgpack
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import RunningServer, start_in_thread
from conftest import test_settings as settings_for
from ringkv.core.config import KeyspaceSpec
from ringkv.core.record import ConflictMode
from ringkv.runtime.http import create_app
from ringkv.storage.base import StorageError
from ringkv.storage.memory import MemoryTable

ETAG_RE = re.compile(r'^"\d+\.\d+\.n1\.\d+"$')


def b64(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode()


async def expect_error(resp: aiohttp.ClientResponse, status: int, code: str) -> dict[str, object]:
    """The response is the JSON error of DESIGN.md with this status and code."""
    text = await resp.text()
    assert resp.status == status, text
    assert resp.content_type == "application/json", text
    error = json.loads(text)["error"]
    assert error["code"] == code, text
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["definite"], bool)
    assert "Traceback" not in text
    return error  # type: ignore[no-any-return]


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    async with aiohttp.ClientSession() as session:
        yield session, server.http_url


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[RunningServer]:
    """Small limits, so that over-limit keys and values are cheap to send."""
    running = start_in_thread(settings_for(tmp_path, max_key_bytes=64, max_value_bytes=1024))
    yield running
    running.stop()


async def health_ok(session: aiohttp.ClientSession, url: str) -> None:
    async with session.get(f"{url}/health") as resp:
        assert resp.status == 200
        assert (await resp.json())["status"] == "ok"


# -- values ------------------------------------------------------------------


async def test_put_get_delete_round_trip(client: tuple[aiohttp.ClientSession, str]) -> None:
    session, url = client
    value = bytes(range(256)) * 3
    async with session.put(f"{url}/v1/kv/greeting", data=value) as resp:
        assert resp.status == 204
        assert await resp.read() == b""
    async with session.get(f"{url}/v1/kv/greeting") as resp:
        assert resp.status == 200
        assert await resp.read() == value
        assert resp.headers["Content-Type"] == "application/octet-stream"
        assert ETAG_RE.match(resp.headers["ETag"]), resp.headers["ETag"]
        context = msgpack.unpackb(base64.urlsafe_b64decode(resp.headers["X-Ringkv-Context"]))
        assert context[0] == "n1" and context[1] >= 1
        assert "X-Ringkv-Expires-At-Ms" not in resp.headers
        first_etag = resp.headers["ETag"]
    async with session.put(f"{url}/v1/kv/greeting", data=b"v2") as resp:
        assert resp.status == 204
    async with session.get(f"{url}/v1/kv/greeting") as resp:
        assert await resp.read() == b"v2"
        assert resp.headers["ETag"] != first_etag
    async with session.delete(f"{url}/v1/kv/greeting") as resp:
        assert resp.status == 204
    async with session.get(f"{url}/v1/kv/greeting") as resp:
        await expect_error(resp, 404, "not_found")
    async with session.delete(f"{url}/v1/kv/greeting") as resp:
        await expect_error(resp, 404, "not_found")


async def test_empty_value_and_text_keys_with_slashes(
    client: tuple[aiohttp.ClientSession, str],
) -> None:
    session, url = client
    key = "dir/sub/grüße €+ %"
    async with session.put(f"{url}/v1/kv/{quote(key, safe='/')}", data=b"") as resp:
        assert resp.status == 204
    # The same key, fully percent-encoded, and as key_b64.
    async with session.get(f"{url}/v1/kv/{quote(key, safe='')}") as resp:
        assert resp.status == 200
        assert await resp.read() == b""
    async with session.get(f"{url}/v1/kv", params={"key_b64": b64(key.encode())}) as resp:
        assert resp.status == 200
    async with session.get(f"{url}/v1/kv", params={"prefix": "dir/"}) as resp:
        assert (await resp.json())["keys"] == [key]


async def test_binary_keys_via_key_b64(client: tuple[aiohttp.ClientSession, str]) -> None:
    session, url = client
    key = b"\xff\x00bin\x80"
    for padded in (b64(key), b64(key).rstrip("=")):
        async with session.put(f"{url}/v1/kv", params={"key_b64": padded}, data=padded) as resp:
            assert resp.status == 204
        async with session.get(f"{url}/v1/kv", params={"key_b64": padded}) as resp:
            assert resp.status == 200
            assert await resp.read() == padded.encode()
    # Percent-encoded bytes in the path name the same key.
    path = "".join(f"%{b:02X}" for b in key)
    async with session.get(f"{url}/v1/kv/{path}") as resp:
        assert resp.status == 200
    async with session.get(f"{url}/v1/kv") as resp:
        page = await resp.json()
        assert page == {"keys": [], "keys_b64": [b64(key)], "cursor": None}
    async with session.delete(f"{url}/v1/kv", params={"key_b64": b64(key)}) as resp:
        assert resp.status == 204
    async with session.get(f"{url}/v1/kv", params={"key_b64": b64(key)}) as resp:
        await expect_error(resp, 404, "not_found")


async def test_ttl_expiry_is_visible(client: tuple[aiohttp.ClientSession, str]) -> None:
    session, url = client
    before_ms = time.time_ns() // 1_000_000
    async with session.put(f"{url}/v1/kv/brief", params={"ttl_ms": "300"}, data=b"x") as resp:
        assert resp.status == 204
    async with session.get(f"{url}/v1/kv/brief") as resp:
        assert resp.status == 200
        expires = int(resp.headers["X-Ringkv-Expires-At-Ms"])
        assert before_ms + 300 <= expires <= time.time_ns() // 1_000_000 + 300
    deadline = time.monotonic() + 5
    while True:
        async with session.get(f"{url}/v1/kv/brief") as resp:
            if resp.status == 404:
                break
            assert resp.status == 200
        assert time.monotonic() < deadline, "key did not expire"
        await asyncio.sleep(0.05)
    async with session.get(f"{url}/v1/kv") as resp:
        assert "brief" not in (await resp.json())["keys"]


async def test_siblings_answer_300_with_context(
    server: RunningServer, client: tuple[aiohttp.ClientSession, str]
) -> None:
    session, url = client
    # No HTTP route creates keyspaces yet: register a causal one in the node.
    node = server.server.node
    node.keyspaces["c"] = KeyspaceSpec(name="c", mode=ConflictMode.CAUSAL)
    for value in (b"text", b"\xff\xfe"):
        async with session.put(f"{url}/v1/kv/k", params={"keyspace": "c"}, data=value) as resp:
            assert resp.status == 204
    async with session.get(f"{url}/v1/kv/k", params={"keyspace": "c"}) as resp:
        assert resp.status == 300
        body = await resp.json()
    assert sorted(body["siblings"], key=lambda s: s["encoding"]) == [
        {"value": base64.b64encode(b"\xff\xfe").decode(), "encoding": "base64"},
        {"value": "text", "encoding": "utf-8"},
    ]
    assert msgpack.unpackb(base64.urlsafe_b64decode(body["context"])) == ["n1", 2]
    assert resp.headers["X-Ringkv-Context"] == body["context"]


# -- listing -------------------------------------------------------------------


async def walk(session: aiohttp.ClientSession, url: str, **params: str) -> tuple[list[str], int]:
    keys: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        async with session.get(f"{url}/v1/kv", params=query) as resp:
            assert resp.status == 200, await resp.text()
            page = await resp.json()
        pages += 1
        assert len(page["keys"]) <= int(params.get("limit", "100"))
        keys.extend(page["keys"])
        cursor = page["cursor"]
        if cursor is None:
            return keys, pages
        assert pages < 1000


async def put_many(session: aiohttp.ClientSession, url: str, keys: list[str]) -> None:
    async def put(key: str) -> None:
        async with session.put(f"{url}/v1/kv/{quote(key)}", data=key.encode()) as resp:
            assert resp.status == 204

    await asyncio.gather(*(put(k) for k in keys))


async def test_listing_walks_every_key_exactly_once(
    client: tuple[aiohttp.ClientSession, str],
) -> None:
    session, url = client
    users = [f"user:{i}" for i in range(250)]
    items = [f"item:{i}" for i in range(250)]
    await put_many(session, url, users + items)
    keys, pages = await walk(session, url, limit="37")
    assert len(keys) == 500 and set(keys) == set(users + items)
    assert pages == 14  # ceil(500 / 37): every page but the last is full
    keys, _ = await walk(session, url, limit="37", prefix="user:")
    assert sorted(keys) == sorted(users)
    keys, _ = await walk(session, url, limit="10000", prefix_b64=b64(b"item:"))
    assert sorted(keys) == sorted(items)
    async with session.get(f"{url}/v1/kv") as resp:
        page = await resp.json()
        assert len(page["keys"]) == 100 and page["cursor"] is not None
    async with session.get(f"{url}/v1/kv", params={"prefix": "nothing"}) as resp:
        assert await resp.json() == {"keys": [], "keys_b64": [], "cursor": None}


async def test_lmdb_values_and_listing(lmdb_server: RunningServer) -> None:
    url = lmdb_server.http_url
    async with aiohttp.ClientSession() as session:
        keys = [f"k{i}" for i in range(120)]
        await put_many(session, url, keys)
        listed, _ = await walk(session, url, limit="7")
        assert sorted(listed) == sorted(keys)
        async with session.get(f"{url}/v1/kv/k5") as resp:
            assert await resp.read() == b"k5"
        async with session.get(f"{url}/v1/info") as resp:
            info = await resp.json()
            assert (info["engine"], info["fsync"], info["keys"]) == ("lmdb", "always", 120)


# -- other routes ------------------------------------------------------------------


async def test_health_and_info(
    server: RunningServer, client: tuple[aiohttp.ClientSession, str]
) -> None:
    session, url = client
    await put_many(session, url, ["a", "b", "c"])
    async with session.get(f"{url}/health") as resp:
        health = await resp.json()
    assert health == {"status": "ok", "node": "n1", "keys": 3, "resp_port": server.resp_port}
    async with session.get(f"{url}/v1/info") as resp:
        info = await resp.json()
    assert info["node_id"] == "n1"
    assert (info["engine"], info["fsync"], info["keys"]) == ("memory", "never", 3)
    assert info["keyspaces"] == {"default": 3}
    assert info["memory"]["data_bytes"] > 0 and info["memory"]["rss_bytes"] > 0
    assert info["limits"] == {"max_key_bytes": 8192, "max_value_bytes": 8 * 1024 * 1024}


async def test_metrics_count_http_requests(client: tuple[aiohttp.ClientSession, str]) -> None:
    session, url = client
    await put_many(session, url, ["m1", "m2"])
    async with session.get(f"{url}/v1/kv/m1") as resp:
        assert resp.status == 200
    async with session.get(f"{url}/v1/kv/absent") as resp:
        assert resp.status == 404
    async with session.get(f"{url}/v1/kv", params={"limit": "0"}) as resp:
        assert resp.status == 400
    async with session.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    ops = {line for line in text.splitlines() if line.startswith("ringkv_ops_total{")}
    assert 'ringkv_ops_total{command="PUT /v1/kv/{key}",interface="http",outcome="ok"} 2.0' in ops
    assert 'ringkv_ops_total{command="GET /v1/kv/{key}",interface="http",outcome="ok"} 2.0' in ops
    assert 'ringkv_ops_total{command="GET /v1/kv",interface="http",outcome="error"} 1.0' in ops
    assert (
        'ringkv_op_latency_seconds_count{command="PUT /v1/kv/{key}",interface="http"} 2.0' in text
    )
    for family in (
        "ringkv_keys 2.0",
        "ringkv_data_bytes",
        "ringkv_connections",
        "ringkv_expired_keys",
    ):
        assert family in text


async def test_openapi_is_valid_and_describes_every_route(
    server: RunningServer, client: tuple[aiohttp.ClientSession, str]
) -> None:
    from openapi_spec_validator import validate

    session, url = client
    async with session.get(f"{url}/openapi.json") as resp:
        assert resp.status == 200
        doc = await resp.json()
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    app = create_app(server.server)
    registered = {
        (r.method.lower(), r.resource.canonical) for r in app.router.routes() if r.resource
    }
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    documented = {(m, path) for path, item in doc["paths"].items() for m in item if m in methods}
    assert registered == documented
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            assert "500" in statuses, (method, path)
            if path != "/health":
                assert "401" in statuses, (method, path)
            if path.startswith("/v1/kv"):
                assert {"400", "404", "413", "503", "504"} <= statuses, (method, path)
    parameters = doc["components"]["parameters"]
    assert {"key", "key_b64", "keyspace", "ttl_ms", "prefix", "limit", "cursor"} <= set(parameters)


# -- errors ----------------------------------------------------------------------


BAD_REQUESTS = [
    ("PUT", "/v1/kv/a?ttl_ms=0", {}),
    ("PUT", "/v1/kv/a?ttl_ms=-5", {}),
    ("PUT", "/v1/kv/a?ttl_ms=abc", {}),
    ("PUT", "/v1/kv/a?ttl_ms=1.5", {}),
    ("PUT", f"/v1/kv/a?ttl_ms={2**63}", {}),
    ("PUT", "/v1/kv/a", {"If-Match": '"1.0.n1.1"'}),
    ("GET", "/v1/kv?key_b64=!!!", {}),
    ("GET", "/v1/kv?key_b64=a", {}),
    ("GET", "/v1/kv/a?key_b64=YQ", {}),
    ("GET", "/v1/kv?key_b64=YQ&limit=5", {}),
    ("PUT", "/v1/kv", {}),
    ("DELETE", "/v1/kv", {}),
    ("GET", "/v1/kv?limit=0", {}),
    ("GET", "/v1/kv?limit=10001", {}),
    ("GET", "/v1/kv?limit=ten", {}),
    ("GET", "/v1/kv?cursor=-1", {}),
    ("GET", "/v1/kv?cursor=abc", {}),
    ("GET", f"/v1/kv?cursor={2**64}", {}),
    ("GET", "/v1/kv?prefix=a&prefix_b64=YQ", {}),
    ("GET", "/v1/kv?prefix_b64=***", {}),
]


async def test_bad_requests_are_400_and_the_server_keeps_serving(
    client: tuple[aiohttp.ClientSession, str],
) -> None:
    session, url = client
    for method, path, headers in BAD_REQUESTS:
        async with session.request(method, f"{url}{path}", data=b"v", headers=headers) as resp:
            error = await expect_error(resp, 400, "invalid")
            assert error["definite"] is True
    async with session.get(f"{url}/v1/kv/a") as resp:
        await expect_error(resp, 404, "not_found")  # nothing was stored
    await health_ok(session, url)


async def test_not_found(client: tuple[aiohttp.ClientSession, str]) -> None:
    session, url = client
    for path in ("/nope", "/v1/kv/", "/v1/kv/absent", "/v1/kv/a?keyspace=nosuch"):
        async with session.get(f"{url}{path}") as resp:
            await expect_error(resp, 404, "not_found")
    async with session.put(f"{url}/v1/kv/a?keyspace=nosuch", data=b"v") as resp:
        await expect_error(resp, 404, "not_found")


async def test_method_not_allowed(client: tuple[aiohttp.ClientSession, str]) -> None:
    session, url = client
    for method, path, allowed in (
        ("POST", "/v1/kv/a", {"GET", "PUT", "DELETE"}),
        ("PATCH", "/v1/kv", {"GET", "PUT", "DELETE"}),
        ("POST", "/health", {"GET"}),
        ("DELETE", "/metrics", {"GET"}),
    ):
        async with session.request(method, f"{url}{path}", data=b"x") as resp:
            await expect_error(resp, 405, "method_not_allowed")
            assert set(resp.headers["Allow"].split(", ")) == allowed
    async with session.head(f"{url}/v1/kv/a") as resp:
        assert resp.status == 405
    await health_ok(session, url)


async def test_password_required_everywhere_but_health(tmp_path: Path) -> None:
    running = start_in_thread(settings_for(tmp_path, requirepass="s3cret"))
    url = running.http_url
    good = {"Authorization": "Bearer s3cret"}
    try:
        async with aiohttp.ClientSession() as session:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
                for method, path in (
                    ("PUT", "/v1/kv/a"), ("GET", "/v1/kv/a"), ("DELETE", "/v1/kv/a"),
                    ("GET", "/v1/kv"), ("GET", "/v1/info"), ("GET", "/metrics"),
                    ("GET", "/openapi.json"), ("GET", "/nope"), ("POST", "/v1/kv/a"),
                ):  # fmt: skip
                    async with session.request(
                        method, f"{url}{path}", data=b"v", headers=headers
                    ) as resp:
                        await expect_error(resp, 401, "unauthorized")
                        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            await health_ok(session, url)
            async with session.get(f"{url}/v1/kv/a", headers=good) as resp:
                await expect_error(resp, 404, "not_found")  # the refused PUTs stored nothing
            async with session.put(f"{url}/v1/kv/a", data=b"v", headers=good) as resp:
                assert resp.status == 204
            async with session.get(f"{url}/v1/kv/a", headers=good) as resp:
                assert await resp.read() == b"v"
            async with session.get(f"{url}/metrics", headers=good) as resp:
                assert resp.status == 200
    finally:
        running.stop()


async def test_too_large_keys_and_values(small_server: RunningServer) -> None:
    url = small_server.http_url
    long_key = "k" * 65
    async with aiohttp.ClientSession() as session:
        for method in ("GET", "PUT", "DELETE"):
            async with session.request(method, f"{url}/v1/kv/{long_key}", data=b"v") as resp:
                await expect_error(resp, 413, "too_large")
            params = {"key_b64": b64(long_key.encode())}
            async with session.request(method, f"{url}/v1/kv", params=params, data=b"v") as resp:
                await expect_error(resp, 413, "too_large")
        async with session.put(f"{url}/v1/kv/{'k' * 64}", data=b"v" * 1024) as resp:
            assert resp.status == 204  # exactly at both limits
        async with session.put(f"{url}/v1/kv/big", data=b"v" * 1025) as resp:
            await expect_error(resp, 413, "too_large")

        async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length
            for _ in range(4):
                yield b"v" * 300

        async with session.put(f"{url}/v1/kv/big", data=chunks()) as resp:
            await expect_error(resp, 413, "too_large")
        async with session.get(f"{url}/v1/kv/big") as resp:
            await expect_error(resp, 404, "not_found")
        await health_ok(session, url)


def raw_exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize("expect", [False, True])
def test_oversized_body_is_refused_before_it_is_sent(
    small_server: RunningServer, expect: bool
) -> None:
    """A declared 100 MB body gets 413 and a closed connection after 1 KB was sent."""
    head = (
        "PUT /v1/kv/huge HTTP/1.1\r\nHost: ringkv\r\nContent-Length: 104857600\r\n"
        + ("Expect: 100-continue\r\n" if expect else "")
        + "\r\n"
    ).encode()
    started = time.monotonic()
    reply = raw_exchange(small_server.http_port, head + (b"" if expect else b"x" * 1024))
    assert time.monotonic() - started < 3  # answered, not waiting for the body
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:200]
    assert b"100 Continue" not in reply
    headers, _, body = reply.partition(b"\r\n\r\n")
    assert b"connection: close" in headers.lower()
    assert json.loads(body)["error"]["code"] == "too_large"
    conn = http.client.HTTPConnection("127.0.0.1", small_server.http_port, timeout=5)
    conn.request("GET", "/health")
    assert conn.getresponse().status == 200
    conn.close()


async def test_storage_failure_is_503(
    client: tuple[aiohttp.ClientSession, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    session, url = client

    def failing_get(self: MemoryTable, key: bytes) -> bytes | None:
        raise StorageError("disk on fire")

    monkeypatch.setattr(MemoryTable, "get", failing_get)
    async with session.get(f"{url}/v1/kv/a") as resp:
        error = await expect_error(resp, 503, "unavailable")
        assert error["definite"] is True
    monkeypatch.undo()
    await health_ok(session, url)


async def test_failed_commit_is_504_and_not_definite(
    lmdb_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lmdb

    from ringkv.storage import lmdb_engine

    def failing_apply(self: object, txn: object) -> None:
        raise lmdb.DiskError("fsync failed")  # whether committed in place or on the thread

    url = lmdb_server.http_url
    monkeypatch.setattr(lmdb_engine._TableSnapshot, "apply", failing_apply)
    async with aiohttp.ClientSession() as session:
        async with session.put(f"{url}/v1/kv/a", data=b"v") as resp:
            error = await expect_error(resp, 504, "timeout")
            assert error["definite"] is False
        monkeypatch.undo()
        await health_ok(session, url)


async def test_slow_core_answer_is_504(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    running = start_in_thread(settings_for(tmp_path, request_timeout_s=0.2))
    try:

        async def never(request: object) -> object:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        monkeypatch.setattr(running.server.host, "call", never)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{running.http_url}/v1/kv/a") as resp:
                error = await expect_error(resp, 504, "timeout")
                assert error["definite"] is False
            monkeypatch.undo()
            await health_ok(session, running.http_url)
    finally:
        running.stop()


async def test_unexpected_exception_is_500_json_and_logged(
    server: RunningServer,
    client: tuple[aiohttp.ClientSession, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    session, url = client

    async def boom(request: object) -> object:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(server.server.host, "call", boom)
    with caplog.at_level(logging.ERROR, logger="ringkv.http"):
        async with session.get(f"{url}/v1/kv/a") as resp:
            error = await expect_error(resp, 500, "internal")
            assert "secret" not in json.dumps(error)
    assert any("secret internal detail" in r.exc_text for r in caplog.records if r.exc_text)
    monkeypatch.undo()
    await health_ok(session, url)


# -- fuzzing -------------------------------------------------------------------

_METHODS = st.sampled_from(["GET", "GET", "PUT", "PUT", "DELETE", "POST", "HEAD", "PATCH"])
_SEGMENTS = st.one_of(
    st.text(min_size=1, max_size=24).map(lambda t: quote(t, safe="/%+;=:@")),
    st.binary(min_size=1, max_size=8).map(quote),
)
_PATHS = st.one_of(
    _SEGMENTS.map(lambda tail: "/v1/kv/" + tail),
    _SEGMENTS.map(lambda tail: "/v1/kv/" + tail),
    st.sampled_from(["/v1/kv", "/v1/kv", "/health", "/metrics", "/openapi.json", "/v1/info"]),
    _SEGMENTS.map(lambda tail: "/" + tail),
)
_QUERY_NAMES = st.sampled_from(
    ["ttl_ms", "key_b64", "prefix", "prefix_b64", "limit", "cursor", "keyspace", "other"]
)
_QUERY_VALUES = st.one_of(
    st.text(max_size=16),
    st.integers(-5, 2000).map(str),
    st.integers(-(2**70), 2**70).map(str),
    st.binary(max_size=12).map(b64),
)
_QUERIES = st.lists(st.tuples(_QUERY_NAMES, _QUERY_VALUES), max_size=4).map(urlencode)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=_METHODS,
    path=_PATHS,
    query=_QUERIES,
    body=st.one_of(st.none(), st.binary(max_size=256)),
)
def test_fuzzed_requests_never_get_500(
    server: RunningServer, method: str, path: str, query: str, body: bytes | None
) -> None:
    target = path + (f"?{query}" if query else "")
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=5)
    try:
        conn.request(method, target, body=body)
        resp = conn.getresponse()
        payload = resp.read()
        event(f"status {resp.status}")
        assert resp.status < 500, (method, target, resp.status, payload[:300])
        if resp.status >= 400 and method != "HEAD":
            assert json.loads(payload)["error"]["code"], payload
    finally:
        conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=5)
    conn.request("GET", "/health")
    assert conn.getresponse().status == 200
    conn.close()
