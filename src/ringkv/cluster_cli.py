"""``ringkv cluster up|down|status``: a local cluster of ``ringkv serve`` processes.

``up`` starts n nodes on 127.0.0.1 (node i on RESP 6379+i, HTTP 8379+i, peers
7379+i unless ``--base-port`` moves them), joined through n1, sharing a
cluster secret generated into ``DIR/secret`` (mode 0600; never in argv,
logs or cluster.json), and writes ``DIR/cluster.json`` as DESIGN.md fixes it.
In the foreground it shows a table and Ctrl-C stops every node; with
``--detach`` it returns once every node answers. ``down`` stops the nodes of
``cluster.json`` by their PIDs; ``status`` shows each node's view.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["cluster_app"]

cluster_app = typer.Typer(help="A local cluster of ringkv processes, with cluster.json.")
console = Console()
DEFAULT_DIR = "./.ringkv/cluster"
DirOption = Annotated[str, typer.Option("--dir", help="Where cluster.json, data and logs go.")]


def _node_spec(index: int, base: int, directory: Path) -> dict[str, Any]:
    name = f"n{index}"
    return {
        "id": name,
        "resp_port": base + index,
        "http_port": base + 2000 + index,
        "peer_port": base + 1000 + index,
        "data_dir": str(directory / name),
        "zone": "",
        "weight": 1,
        "log": str(directory / f"{name}.log"),
    }


def free_base_port(nodes: int, rng: random.Random | None = None) -> int:
    """A ``--base-port`` whose 3n ports (base+i, +1000+i, +2000+i: see
    ``_node_spec``) are all free now, drawn below the kernel's ephemeral
    range so that no outgoing connection takes one of them meanwhile."""
    rng = rng or random.Random()
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    top = max(12_000, low - 2100 - nodes)
    for _ in range(200):
        base = rng.randrange(10_000, top)
        if all(_port_free(base + offset + i) for offset in (0, 1000, 2000)
               for i in range(1, nodes + 1)):  # fmt: skip
            return base
    raise RuntimeError("found no free block of ports for a local cluster")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _argv(
    spec: dict[str, Any],
    secret_path: Path,
    seed: dict[str, Any] | None,
    engine: str,
    *,
    faults: bool = False,
) -> list[str]:
    argv = [
        sys.executable, "-m", "ringkv", "serve", "--node-id", spec["id"],
        "--host", "127.0.0.1", "--resp-port", str(spec["resp_port"]),
        "--http-port", str(spec["http_port"]), "--peer-port", str(spec["peer_port"]),
        "--data-dir", spec["data_dir"], "--engine", engine,
        "--cluster-secret-file", str(secret_path),
    ]  # fmt: skip
    if seed is not None:
        argv += ["--join", f"127.0.0.1:{seed['peer_port']}"]
    if faults:
        argv.append("--faults")
    return argv


def _health(spec: dict[str, Any]) -> dict[str, Any] | None:
    try:
        url = f"http://127.0.0.1:{spec['http_port']}/v1/cluster"
        with urllib.request.urlopen(url, timeout=2) as reply:
            body: dict[str, Any] = json.loads(reply.read())
            return body
    except (OSError, ValueError):
        return None


def _table(nodes: list[dict[str, Any]]) -> Table:
    table = Table("node", "pid", "RESP", "HTTP", "peers", "state", "members seen", "keys")
    for spec in nodes:
        view = _health(spec)
        if view is None:
            table.add_row(spec["id"], str(spec["pid"]), str(spec["resp_port"]),
                          str(spec["http_port"]), str(spec["peer_port"]), "[red]down[/]", "-", "-")  # fmt: skip
            continue
        alive = sum(1 for m in view["members"] if m["state"] == "alive")
        mine: dict[str, Any] = next((m for m in view["members"] if m["id"] == spec["id"]), {})
        table.add_row(spec["id"], str(spec["pid"]), str(spec["resp_port"]), str(spec["http_port"]),
                      str(spec["peer_port"]), "[green]up[/]", f"{alive} alive of {len(view['members'])}",
                      str(mine.get("keys", "-")))  # fmt: skip
    return table


def _load(directory: str) -> dict[str, Any]:
    path = Path(directory) / "cluster.json"
    if not path.exists():
        console.print(f"[red]no cluster at {path}[/]: start one with `ringkv cluster up -n 3`")
        raise typer.Exit(1)
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _stop(
    nodes: list[dict[str, Any]],
    timeout_s: float = 15.0,
    children: list[subprocess.Popen[bytes]] | None = None,
) -> None:
    """SIGTERM every node by PID; SIGKILL what is still there after timeout_s.
    Our own children (the foreground ``up``) are waited for, so none is left
    a zombie."""
    for spec in nodes:
        try:
            os.kill(spec["pid"], signal.SIGTERM)
        except ProcessLookupError:
            continue
    if children is not None:
        for child in children:
            try:
                child.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=5)
        return
    deadline = time.monotonic() + timeout_s
    for spec in nodes:
        while time.monotonic() < deadline:
            try:
                os.kill(spec["pid"], 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            try:
                os.kill(spec["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass


@cluster_app.command("up")
def up(
    n: Annotated[int, typer.Option("-n", "--nodes", min=1, max=32, help="How many nodes.")] = 3,
    directory: DirOption = DEFAULT_DIR,
    base_port: Annotated[
        int,
        typer.Option(
            "--base-port", help="Node i: RESP base+i, peers base+1000+i, HTTP base+2000+i."
        ),
    ] = 6379,
    engine: Annotated[str, typer.Option("--engine", help="lmdb or memory.")] = "lmdb",
    detach: Annotated[
        bool, typer.Option("--detach", help="Return once every node answers.")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the nodes.")
    ] = 30.0,
    faults: Annotated[
        bool,
        typer.Option(
            "--faults",
            help="Start every node with --faults (/v1/admin/faults, for tests; never production).",
        ),
    ] = False,
) -> None:
    """Start a local cluster of N nodes (and a dashboard-ready HTTP port each)."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    if (root / "cluster.json").exists():
        old = json.loads((root / "cluster.json").read_text())
        if any(_health(spec) for spec in old["nodes"]):
            console.print(
                f"[red]a cluster is already running from {root}[/]: `ringkv cluster down --dir {root}`"
            )
            raise typer.Exit(1)
    secret_path = root / "secret"
    if not secret_path.exists():
        secret_path.write_text(secrets.token_hex(32))
    secret_path.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k != "RINGKV_CLUSTER_SECRET"}
    # Ctrl-C, and SIGTERM too, stop the cluster at any point (a shell may
    # start us with SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    nodes: list[dict[str, Any]] = []
    children: list[subprocess.Popen[bytes]] = []
    keep_running = False
    try:
        for i in range(1, n + 1):
            spec = _node_spec(i, base_port, root)
            argv = _argv(spec, secret_path, nodes[0] if nodes else None, engine, faults=faults)
            with open(spec["log"], "ab") as log:
                proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=detach)  # fmt: skip
            spec["pid"] = proc.pid
            spec["argv"] = argv
            nodes.append(spec)
            children.append(proc)
        data = {"version": 1, "cluster_name": "ringkv", "nodes": nodes}
        (root / "cluster.json").write_text(json.dumps(data, indent=2))
        if not _wait_ready(nodes, timeout):
            console.print(f"[red]the nodes did not all answer in {timeout} s[/]; logs in {root}")
            raise typer.Exit(3)
        console.print(_table(nodes))
        first = nodes[0]
        console.print(f"redis-cli -p {first['resp_port']}  ·  http://127.0.0.1:{first['http_port']}"
                      f"  ·  {root}/cluster.json", soft_wrap=True)  # fmt: skip
        if detach:
            keep_running = True
            return
        console.print("Ctrl-C stops every node")
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        if not keep_running:
            _stop(nodes, children=children)
            console.print("stopped")


def _wait_ready(nodes: list[dict[str, Any]], timeout_s: float) -> bool:
    """True once every node answers and sees every other."""
    deadline = time.monotonic() + timeout_s
    with console.status(f"starting {len(nodes)} nodes"):
        while time.monotonic() < deadline:
            views = [_health(spec) for spec in nodes]
            if all(v is not None and len(v["members"]) == len(nodes) for v in views):
                return True
            time.sleep(0.2)
    return False


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@cluster_app.command("down")
def down(directory: DirOption = DEFAULT_DIR) -> None:
    """Stop every node of the cluster in DIR (SIGTERM by PID, then SIGKILL)."""
    data = _load(directory)
    _stop(data["nodes"])
    console.print(f"stopped {len(data['nodes'])} nodes")


@cluster_app.command("status")
def status(directory: DirOption = DEFAULT_DIR) -> None:
    """Show each node: up or down, what it sees of the members, its keys."""
    console.print(_table(_load(directory)["nodes"]))
