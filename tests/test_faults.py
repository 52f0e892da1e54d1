"""Fault injection (``serve --faults``, runtime/faults.py): the admin route,
the transport's link faults, the clock offset; docs/faults.md.

Three layers of test: the pure validation and fault table; two in-process
``Transport``s on 127.0.0.1 (exact counters, order, bounds); and real
``ringkv serve --faults`` processes, partitioned and slowed through the HTTP
route. Every wait polls a condition against a deadline; time is only ever
asserted as a lower bound.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from conftest import RunningServer, ServerProcess, spawn_server, start_in_thread
from conftest import test_settings as settings_for
from ringkv.runtime.faults import (
    ClockOffset,
    DelayLine,
    Direction,
    FaultError,
    LinkFault,
    LinkFaults,
    LinkMode,
    parse_fault,
)
from ringkv.runtime.http import create_app
from test_cluster import cluster_size, poll, secret_file
from test_transport import Factory, make, meet, read, wait_until

__all__ = ["make"]  # test_transport's fixture, used by name here: imported, not copied

SECRET = "s3cret-for-the-fault-tests-0123456"
FAULTS = "/v1/admin/faults"


def http(
    port: int,
    method: str,
    path: str = FAULTS,
    body: object = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, object]]:
    """(status, JSON body) of one request; error statuses do not raise."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def link(**fields: object) -> dict[str, object]:
    return {"link": fields}


# -- validation (pure) -----------------------------------------------------------

PEERS = {"n1", "n2", "n3"}

INVALID = [
    ("not an object", []),
    ("empty", {}),
    ("unknown top field", {"partition": True}),
    ("both kinds", {**link(to="n2", mode="blackhole"), "clock_offset_ms": 5}),
    ("link not an object", {"link": "n2"}),
    ("unknown link field", link(to="n2", mode="blackhole", seconds=3)),
    ("missing to", link(mode="blackhole")),
    ("to not text", link(to=2, mode="blackhole")),
    ("unknown peer", link(to="n9", mode="blackhole")),
    ("to itself", link(to="n1", mode="blackhole")),
    ("missing mode", link(to="n2")),
    ("bad mode", link(to="n2", mode="partition")),
    ("bad direction", link(to="n2", mode="blackhole", direction="sideways")),
    ("drop without rate", link(to="n2", mode="drop")),
    ("rate above 1", link(to="n2", mode="drop", rate=1.5)),
    ("rate below 0", link(to="n2", mode="drop", rate=-0.1)),
    ("rate not a number", link(to="n2", mode="drop", rate="half")),
    ("rate a bool", link(to="n2", mode="drop", rate=True)),
    ("rate on a blackhole", link(to="n2", mode="blackhole", rate=0.5)),
    ("delay without delay_ms", link(to="n2", mode="delay")),
    ("negative delay", link(to="n2", mode="delay", delay_ms=-1)),
    ("fractional delay", link(to="n2", mode="delay", delay_ms=1.5)),
    ("delay over the cap", link(to="n2", mode="delay", delay_ms=60_001)),
    ("delay_ms on a drop", link(to="n2", mode="drop", rate=0.5, delay_ms=10)),
    ("offset not an integer", {"clock_offset_ms": 1.5}),
    ("offset a bool", {"clock_offset_ms": True}),
    ("offset too large", {"clock_offset_ms": 86_400_001}),
]


@pytest.mark.parametrize(("case", "body"), INVALID, ids=[case for case, _ in INVALID])
def test_invalid_fault_requests_are_refused(case: str, body: object) -> None:
    with pytest.raises(FaultError):
        parse_fault(body, self_id="n1", peers=PEERS)


def test_valid_fault_requests() -> None:
    def parse(body: object) -> LinkFault | ClockOffset:
        return parse_fault(body, self_id="n1", peers=PEERS)

    assert parse(link(to="n2", mode="blackhole")) == LinkFault(
        to="n2", direction=Direction.BOTH, mode=LinkMode.BLACKHOLE
    )
    dropped = parse(link(to="*", direction="in", mode="drop", rate=0, delay_ms=None))
    assert dropped == LinkFault(to="*", direction=Direction.IN, mode=LinkMode.DROP, rate=0.0)
    delayed = parse(link(to="n3", direction="out", mode="delay", delay_ms=250))
    assert isinstance(delayed, LinkFault)
    assert delayed.to_json() == {"to": "n3", "direction": "out", "mode": "delay", "delay_ms": 250}
    assert parse({"clock_offset_ms": -86_400_000}) == ClockOffset(offset_ms=-86_400_000)


def test_a_peer_fault_overrides_the_star_and_a_new_one_replaces_the_old() -> None:
    table = LinkFaults(random.Random(1))
    table.set(LinkFault(to="*", direction=Direction.BOTH, mode=LinkMode.BLACKHOLE))
    table.set(LinkFault(to="n2", direction=Direction.OUT, mode=LinkMode.DROP, rate=0.0))
    out_n2 = table.find("n2", Direction.OUT)
    assert out_n2 is not None and out_n2.mode is LinkMode.DROP
    in_n2 = table.find("n2", Direction.IN)
    assert in_n2 is not None and in_n2.mode is LinkMode.BLACKHOLE
    assert table.verdict(out_n2) == 0.0 and table.verdict(in_n2) is None
    table.set(LinkFault(to="n2", direction=Direction.OUT, mode=LinkMode.DELAY, delay_ms=20))
    assert table.verdict(table.find("n2", Direction.OUT)) == 0.02  # type: ignore[arg-type]
    assert len(table) == 3
    table.clear()
    assert table.find("n2", Direction.OUT) is None and len(table) == 0


async def test_a_delay_line_keeps_order_and_its_bound() -> None:
    import asyncio

    released: list[int] = []
    line: DelayLine[int] = DelayLine(released.append, limit=3)
    now = asyncio.get_running_loop().time()
    assert line.push(1, now + 0.05)
    assert line.push(2, now)  # never due before the one ahead of it
    assert line.push(3, now + 0.01)
    assert not line.push(4, now)  # over the limit: refused
    await wait_until(lambda: len(released) == 3, 5)
    assert released == [1, 2, 3]
    assert line.push(5, now + 60)
    line.flush()
    assert released == [1, 2, 3, 5] and len(line) == 0


# -- the transport under faults (two in-process transports) -----------------------------


async def test_blackhole_out_loses_frames_but_keeps_the_connection(make: Factory) -> None:
    faults = LinkFaults(random.Random(1))
    a, _ = await make("n1", faults=faults)
    b, inbox_b = await make("n2")
    meet(a, b)
    assert a.send("n2", read("n1", 0))
    await wait_until(lambda: len(inbox_b) == 1)
    a.set_link_fault(LinkFault(to="n2", direction=Direction.OUT, mode=LinkMode.BLACKHOLE))
    for req_id in range(1, 11):
        a.send("n2", read("n1", req_id))
    await wait_until(lambda: a.counters["fault_dropped_out"] == 10)
    assert len(inbox_b) == 1 and a.connected_peers() == ["n2"]
    assert a.counters["disconnects"] == 0 and a.counters["frames_sent"] == 1
    a.clear_link_faults()
    assert a.send("n2", read("n1", 11))
    await wait_until(lambda: len(inbox_b) == 2)
    assert [m.req_id for m in inbox_b] == [0, 11]


async def test_blackhole_in_loses_frames_from_that_peer_only(make: Factory) -> None:
    faults = LinkFaults(random.Random(1))
    a, inbox_a = await make("n1", faults=faults)
    b, _ = await make("n2")
    c, _ = await make("n3")
    meet(a, b, c)
    a.set_link_fault(LinkFault(to="n2", direction=Direction.IN, mode=LinkMode.BLACKHOLE))
    for req_id in range(5):
        b.send("n1", read("n2", req_id))
        c.send("n1", read("n3", req_id))
    await wait_until(lambda: a.counters["fault_dropped_in"] == 5 and len(inbox_a) == 5)
    assert {m.src for m in inbox_a} == {"n3"}


async def test_drop_rate_loses_some_frames_with_a_seeded_rng(make: Factory) -> None:
    faults = LinkFaults(random.Random(42))
    a, _ = await make("n1", faults=faults)
    b, inbox_b = await make("n2")
    meet(a, b)
    a.set_link_fault(LinkFault(to="*", direction=Direction.OUT, mode=LinkMode.DROP, rate=0.5))
    for req_id in range(200):
        a.send("n2", read("n1", req_id))
    await wait_until(lambda: a.counters["fault_dropped_out"] + len(inbox_b) == 200)
    assert 50 < len(inbox_b) < 150
    received = [m.req_id for m in inbox_b]
    assert received == sorted(received)  # what survives keeps its order


@pytest.mark.parametrize("direction", [Direction.OUT, Direction.IN])
async def test_delay_holds_every_frame_in_order(make: Factory, direction: Direction) -> None:
    faults_a, faults_b = LinkFaults(random.Random(1)), LinkFaults(random.Random(2))
    a, _ = await make("n1", faults=faults_a)
    b, inbox_b = await make("n2", faults=faults_b)
    meet(a, b)
    assert a.send("n2", read("n1", -1))  # connect first: the delay alone is measured
    await wait_until(lambda: len(inbox_b) == 1)
    delayed = LinkFault(to="*", direction=direction, mode=LinkMode.DELAY, delay_ms=150)
    (a if direction is Direction.OUT else b).set_link_fault(delayed)
    started = time.monotonic()
    for req_id in range(50):
        assert a.send("n2", read("n1", req_id))
    await wait_until(lambda: len(inbox_b) == 51)
    assert time.monotonic() - started >= 0.15
    assert [m.req_id for m in inbox_b] == list(range(-1, 50))
    counter = "fault_delayed_out" if direction is Direction.OUT else "fault_delayed_in"
    assert (a if direction is Direction.OUT else b).counters[counter] == 50


async def test_delayed_frames_over_the_bound_are_dropped_and_counted(make: Factory) -> None:
    a, _ = await make("n1", faults=LinkFaults(random.Random(1)), send_queue_max=5)
    b, inbox_b = await make("n2", faults=LinkFaults(random.Random(2), delay_queue_max=3))
    meet(a, b)
    a.set_link_fault(LinkFault(to="n2", direction=Direction.OUT, mode=LinkMode.DELAY, delay_ms=50))
    sent = [a.send("n2", read("n1", req_id)) for req_id in range(8)]
    assert sent == [True] * 5 + [False] * 3
    assert a.counters["fault_delay_dropped"] == 3 and a.counters["send_dropped_queue_full"] == 0
    await wait_until(lambda: len(inbox_b) == 5)
    a.clear_link_faults()
    b.set_link_fault(
        LinkFault(to="n1", direction=Direction.IN, mode=LinkMode.DELAY, delay_ms=60_000)
    )
    for req_id in range(10, 15):  # a's queue takes 5; b holds 3 and drops 2
        assert a.send("n2", read("n1", req_id))
    await wait_until(lambda: b.counters["fault_delay_dropped"] == 2)
    assert len(inbox_b) == 5 and b.counters["fault_delayed_in"] == 0
    b.clear_link_faults()  # held frames go at once, in order
    assert [m.req_id for m in inbox_b] == [0, 1, 2, 3, 4, 10, 11, 12]
    assert b.counters["fault_delayed_in"] == 3


# -- the admin route on an in-process server ---------------------------------------------


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[RunningServer]:
    """A single node with a peer transport and --faults."""
    running = start_in_thread(
        settings_for(tmp_path, faults=True, cluster_secret=SECRET, peer_port=0)
    )
    yield running
    running.stop()


def test_without_the_flag_the_route_does_not_exist(server: RunningServer) -> None:
    for method in ("GET", "POST", "DELETE"):
        status, body = http(server.http_port, method, body=link(to="*", mode="blackhole"))
        assert status == 404 and body["error"]["code"] == "not_found"  # type: ignore[index]
    status, doc = http(server.http_port, "GET", "/openapi.json")
    assert status == 200 and FAULTS not in doc["paths"]  # type: ignore[operator]
    assert "faults_enabled" not in redis.Redis(port=server.resp_port).info("ringkv")


def test_the_route_validates_lists_and_clears(faulty: RunningServer) -> None:
    port = faulty.http_port
    for case, body in INVALID:
        status, answer = http(port, "POST", body=body)
        assert status == 400, case
        assert answer["error"] == {  # DESIGN.md's error body
            "code": "invalid",
            "message": answer["error"]["message"],  # type: ignore[index]
            "definite": True,
        }, case
    for raw in (b"{not json", b"x" * 70_000):
        status, answer = http(port, "POST", raw=raw)
        assert status in (400, 413) and "error" in answer
    status, listed = http(port, "GET")
    assert status == 200 and listed["links"] == [] and listed["clock_offset_ms"] == 0
    status, listed = http(port, "POST", body=link(to="*", mode="drop", rate=0.25))
    assert status == 200
    assert listed["links"] == [
        {"to": "*", "direction": "in", "mode": "drop", "rate": 0.25},
        {"to": "*", "direction": "out", "mode": "drop", "rate": 0.25},
    ]
    http(port, "POST", body=link(to="*", direction="out", mode="blackhole"))
    status, listed = http(port, "POST", body={"clock_offset_ms": -1500})
    assert [(f["direction"], f["mode"]) for f in listed["links"]] == [  # type: ignore[union-attr]
        ("in", "drop"),
        ("out", "blackhole"),
    ]
    assert listed["clock_offset_ms"] == -1500
    assert set(listed["counters"]) >= {"fault_dropped_out", "fault_delay_dropped"}  # type: ignore[arg-type]
    info = redis.Redis(port=faulty.resp_port).info("ringkv")
    assert info["faults_enabled"] == 1 and info["clock_offset_ms"] == -1500
    assert info["fault_links"] == 2
    status, listed = http(port, "DELETE")
    assert status == 200 and listed["links"] == [] and listed["clock_offset_ms"] == 0
    _, metrics = http_text(port, "/metrics")
    assert "ringkv_transport_fault_dropped_out" in metrics
    assert "ringkv_fault_clock_offset_ms 0.0" in metrics


def http_text(port: int, path: str) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
        return reply.status, reply.read().decode()


def test_a_link_fault_needs_a_peer_transport(tmp_path: Path) -> None:
    running = start_in_thread(settings_for(tmp_path, faults=True))
    try:
        status, answer = http(running.http_port, "POST", body=link(to="*", mode="blackhole"))
        assert status == 400 and "transport" in answer["error"]["message"]  # type: ignore[index]
        status, answer = http(running.http_port, "POST", body={"clock_offset_ms": 10})
        assert status == 200 and answer["clock_offset_ms"] == 10
    finally:
        running.stop()


def test_the_route_needs_the_password(tmp_path: Path) -> None:
    running = start_in_thread(settings_for(tmp_path, faults=True, requirepass="pw"))
    try:
        for method in ("GET", "POST", "DELETE"):
            status, answer = http(running.http_port, method, body={"clock_offset_ms": 1})
            assert status == 401 and answer["error"]["code"] == "unauthorized"  # type: ignore[index]
        good = {"Authorization": "Bearer pw"}
        status, answer = http(running.http_port, "POST", body={"clock_offset_ms": 1}, headers=good)
        assert status == 200 and answer["clock_offset_ms"] == 1
    finally:
        running.stop()


def test_openapi_documents_the_route_when_it_exists(faulty: RunningServer) -> None:
    from openapi_spec_validator import validate

    status, doc = http(faulty.http_port, "GET", "/openapi.json")
    assert status == 200
    validate(doc)
    registered = {
        (r.method.lower(), r.resource.canonical)
        for r in create_app(faulty.server).router.routes()
        if r.resource
    }
    documented = {(m, path) for path, item in doc["paths"].items() for m in item}  # type: ignore[attr-defined]
    assert registered == documented
    assert {"get", "post", "delete"} == set(doc["paths"][FAULTS])  # type: ignore[index]


def test_a_clock_offset_shows_in_the_hlc_and_never_turns_it_back(
    faulty: RunningServer,
) -> None:
    port = faulty.http_port

    def put_and_hlc(value: str) -> tuple[int, int]:
        status, _ = http(port, "PUT", "/v1/kv/clocked", raw=value.encode())
        assert status == 204
        status, report = http(port, "GET", "/v1/kv/clocked?replicas=true")
        (version,) = report["replicas"][0]["versions"]  # type: ignore[index]
        assert version["value"] == value
        wall_ms, logical = version["hlc"]
        return wall_ms, logical

    hour_ms = 3_600_000
    before_ms = time.time_ns() // 1_000_000
    http(port, "POST", body={"clock_offset_ms": hour_ms})
    ahead = put_and_hlc("ahead")
    assert ahead[0] >= before_ms + hour_ms  # the write took the skewed clock
    http(port, "POST", body={"clock_offset_ms": -hour_ms})  # a step back of two hours
    behind = put_and_hlc("behind")
    assert behind > ahead  # the HLC went on from its high-water mark (the newer value won)
    http(port, "DELETE")
    healed = put_and_hlc("healed")
    assert healed > behind


def test_the_cluster_cli_passes_faults_to_every_node(tmp_path: Path) -> None:
    from ringkv.cli import resolve_serve_settings
    from ringkv.cluster_cli import _argv, _node_spec

    spec = _node_spec(2, 6379, tmp_path)
    assert "--faults" in _argv(spec, tmp_path / "secret", None, "memory", faults=True)
    assert "--faults" not in _argv(spec, tmp_path / "secret", None, "memory")
    assert resolve_serve_settings({"faults": True})[0].faults is True
    assert resolve_serve_settings({})[0].faults is False


# -- real processes: partitions and slow links -----------------------------------------


def start_faulty(tmp_path: Path, name: str, secret: str, seed: ServerProcess | None):  # type: ignore[no-untyped-def]
    args = ["--node-id", name, "--peer-port", "0", "--cluster-secret-file", secret]
    args += ["--engine", "memory", "--faults"]
    if seed is not None:
        args += ["--join", f"127.0.0.1:{seed.peer_port}"]
    return spawn_server(tmp_path, *args, name=name)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    """Three `ringkv serve --faults` processes; each test leaves the faults cleared."""
    tmp_path = tmp_path_factory.mktemp("faults-cluster")
    secret = secret_file(tmp_path, "secret", SECRET)
    nodes: list[ServerProcess] = []
    try:
        nodes.append(start_faulty(tmp_path, "n1", secret, None))
        nodes += [start_faulty(tmp_path, name, secret, nodes[0]) for name in ("n2", "n3")]
        poll(lambda: all(cluster_size(n) == 3 for n in nodes), 20, "three members everywhere")
        yield nodes
    finally:
        for node in nodes:
            node.terminate()


def states(node: ServerProcess) -> dict[str, str]:
    status, body = http(node.http_port, "GET", "/v1/cluster")
    assert status == 200
    return {m["id"]: m["state"] for m in body["members"]}  # type: ignore[attr-defined]


def test_a_blackholed_node_is_suspected_and_heals(cluster: list[ServerProcess]) -> None:
    """n3 blackholes every link both ways: n1 and n2 suspect it (then declare it
    dead) and still see each other alive; n3 suspects both. DELETE heals."""
    n3 = cluster[2]
    status, _ = http(n3.http_port, "POST", body=link(to="*", direction="both", mode="blackhole"))
    assert status == 200
    down = ("suspect", "dead")
    try:

        def partitioned() -> bool:
            views = [states(n) for n in cluster]
            return (
                all(v["n3"] in down and v["n1"] == v["n2"] == "alive" for v in views[:2])
                and views[2]["n1"] in down
                and views[2]["n2"] in down
            )

        poll(partitioned, 20, "n1, n2 suspect n3 and n3 suspects them, n1-n2 alive")
    finally:
        status, _ = http(n3.http_port, "DELETE")
    assert status == 200
    _, report = http(n3.http_port, "GET")
    counters = report["counters"]
    assert counters["fault_dropped_out"] > 0 and counters["fault_dropped_in"] > 0  # type: ignore[index]
    poll(
        lambda: all(set(states(n).values()) == {"alive"} for n in cluster),
        20,
        "every member alive everywhere after the heal",
    )


@pytest.mark.parametrize("direction", ["out", "in"])
def test_a_delay_slows_a_write_at_all(cluster: list[ServerProcess], direction: str) -> None:
    """n1 coordinates a write at `all`: its copies (out) or the acks (in) are
    held 250 ms, below replica_timeout_ms (400), so the write waits for them."""
    n1 = cluster[0]
    client = redis.Redis(port=n1.resp_port, socket_timeout=10)
    assert client.execute_command("RINGKV.CONSISTENCY", "all") == b"OK"
    poll(lambda: bool(client.set("warm", "up")), 15, "a write at all before the fault")
    delay = link(to="*", direction=direction, mode="delay", delay_ms=250)
    assert http(n1.http_port, "POST", body=delay)[0] == 200
    try:
        started = time.monotonic()
        assert client.set(f"slow-{direction}", "v")
        elapsed = time.monotonic() - started
    finally:
        http(n1.http_port, "DELETE")
    assert elapsed >= 0.25, f"the write took {elapsed * 1000:.0f} ms"
    _, report = http(n1.http_port, "GET")
    assert report["counters"][f"fault_delayed_{direction}"] >= 2  # type: ignore[index]
    for node in cluster:  # every replica has it (a write at all)
        assert redis.Redis(port=node.resp_port).get(f"slow-{direction}") == b"v"
