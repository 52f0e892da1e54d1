"""Keyspaces and the RESP extensions, through HTTP, RESP and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis

from conftest import RunningServer, spawn_server


def http(
    method: str, url: str, body: object = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def create(server: RunningServer, name: str, **definition: object) -> int:
    status, _, _ = http("PUT", f"{server.http_url}/v1/keyspaces/{name}", definition)
    return status


def test_keyspaces_are_created_once_and_listed(server: RunningServer) -> None:
    assert create(server, "carts", mode="causal", n=3) == 201
    assert create(server, "carts", mode="causal", n=3) == 200  # same definition: a no-op
    status, _, body = http("PUT", f"{server.http_url}/v1/keyspaces/carts", {"mode": "lww"})
    assert status == 400 and b"fixed at creation" in body
    assert create(server, "bad%21name") == 400
    assert create(server, "x", mode="nope") == 400
    status, _, body = http("GET", f"{server.http_url}/v1/keyspaces")
    assert status == 200
    names = {k["name"]: k for k in json.loads(body)["keyspaces"]}
    assert names["carts"] == {"name": "carts", "mode": "causal", "n": 3, "level": "quorum"}
    assert names["default"]["mode"] == "lww"


def test_resp_keyspace_siblings_and_context(server: RunningServer) -> None:
    assert create(server, "carts", mode="causal") == 201
    r = redis.Redis(port=server.resp_port)
    with pytest.raises(redis.ResponseError, match="no keyspace 'nope'"):
        r.execute_command("RINGKV.KEYSPACE", "nope")
    assert r.execute_command("RINGKV.KEYSPACE", "carts") == b"OK"
    assert r.execute_command("RINGKV.KEYSPACE") == b"carts"
    # Two plain writes in a causal keyspace: neither saw the other, both are kept.
    r.set("cart", "apple")
    r.set("cart", "pear")
    context, values = r.execute_command("RINGKV.SIBLINGS", "cart")
    assert sorted(values) == [b"apple", b"pear"]
    assert r.get("cart") in (b"apple", b"pear")  # plain GET: the HLC-newest sibling
    # A write with the context supersedes exactly what it saw.
    assert r.execute_command("RINGKV.PUT", "cart", "apple,pear", "CONTEXT", context) == b"OK"
    value, version, context2 = r.execute_command("RINGKV.GETV", "cart")
    assert value == b"apple,pear" and version.count(b".") == 3 and context2
    _, values = r.execute_command("RINGKV.SIBLINGS", "cart")
    assert values == [b"apple,pear"]
    # The default keyspace is untouched, and other connections still use it.
    assert redis.Redis(port=server.resp_port).get("cart") is None
    with pytest.raises(redis.ResponseError, match="context"):
        r.execute_command("RINGKV.PUT", "cart", "x", "CONTEXT", "!!not-a-context")


def test_resp_consistency_levels(server: RunningServer) -> None:
    r = redis.Redis(port=server.resp_port)
    assert r.execute_command("RINGKV.CONSISTENCY") == [b"default", 0, 0]
    assert r.execute_command("RINGKV.CONSISTENCY", "all", "R", "1", "W", "1") == b"OK"
    assert r.execute_command("RINGKV.CONSISTENCY") == [b"all", 1, 1]
    assert r.set("k", "v") and r.get("k") == b"v"
    with pytest.raises(redis.ResponseError, match="unknown consistency level"):
        r.execute_command("RINGKV.CONSISTENCY", "most")
    with pytest.raises(
        redis.ResponseError, match=r"^WRONGLEVEL linearizable needs a strong keyspace"
    ):
        r.execute_command("RINGKV.CONSISTENCY", "linearizable")
    with pytest.raises(redis.ResponseError, match="syntax error"):
        r.execute_command("RINGKV.CONSISTENCY", "one", "X", "2")


def test_http_put_with_the_context_of_a_300_resolves_siblings(server: RunningServer) -> None:
    assert create(server, "carts", mode="causal") == 201
    url = f"{server.http_url}/v1/kv/cart?keyspace=carts"
    assert http("PUT", url, b"apple")[0] == 204
    assert http("PUT", url, b"pear")[0] == 204
    status, headers, body = http("GET", url)
    assert status == 300
    assert sorted(s["value"] for s in json.loads(body)["siblings"]) == ["apple", "pear"]
    context = headers["X-Ringkv-Context"]
    assert http("PUT", url, b"both", {"X-Ringkv-Context": context})[0] == 204
    status, _, body = http("GET", url)
    assert (status, body) == (200, b"both")
    assert http("PUT", url, b"x", {"X-Ringkv-Context": "%%%"})[0] == 400


def test_keyspaces_survive_a_restart_and_the_cli_manages_them(tmp_path: Path) -> None:
    server = spawn_server(tmp_path)
    url = f"http://127.0.0.1:{server.http_port}"
    try:
        cli = [sys.executable, "-m", "ringkv", "keyspace"]
        created = subprocess.run(
            [*cli, "create", "carts", "--mode", "causal", "--n", "3", "--url", url],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        assert "created: carts mode=causal n=3 level=quorum" in created.stdout
        conflict = subprocess.run(
            [*cli, "create", "carts", "--mode", "lww", "--url", url],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert conflict.returncode == 3 and "fixed at creation" in conflict.stderr
        redis.Redis(port=server.resp_port).execute_command("RINGKV.KEYSPACE", "carts")
        assert server.terminate() == 0
        server = spawn_server(tmp_path)
        listed = subprocess.run(
            [*cli, "list", "--url", f"http://127.0.0.1:{server.http_port}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert listed.returncode == 0 and "carts" in listed.stdout and "causal" in listed.stdout
    finally:
        server.terminate()


def test_replicas_true_shows_the_stored_versions(server: RunningServer) -> None:
    r = redis.Redis(port=server.resp_port)
    r.set("k", "v", px=60_000)
    status, _, body = http("GET", f"{server.http_url}/v1/kv/k?replicas=true")
    assert status == 200
    report = json.loads(body)
    assert report["key"] == "k" and report["hints"] == []
    [replica] = report["replicas"]
    assert replica["node"] == "n1" and replica["home"] and replica["reachable"]
    [version] = replica["versions"]
    assert version["value"] == "v" and version["encoding"] == "utf-8"
    assert version["dvv"]["dot"] == ["n1", 1] and not version["tombstone"]
    assert version["expires_at_ms"] > version["hlc"][0]
