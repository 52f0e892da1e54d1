"""Single-node benchmark: ringkv against redis-server, side by side, in one run.

Starts, on free ports, a plain Redis (no persistence), a Redis with
``appendfsync always`` (the fair durable peer), and ``ringkv serve`` with the
memory engine and with LMDB under ``--fsync always`` and ``--fsync never``.
Runs ``redis-benchmark -t set,get -n N -c 50`` with ``-P 1`` and ``-P 16``
against each, interleaved (for each pipeline depth, every target back to
back), so that a noisy machine affects neighbours alike: compare the ratios.
Then loads 1,000,000 distinct keys with 100-byte values into a fresh Redis and
a fresh ringkv (memory engine) and compares resident memory. With
``--profile`` it also runs a ringkv memory server under ``py-spy record``
during a ``SET -P 1`` run and writes the profile and its top functions.

    .venv/bin/python bench/single_node.py              # full run, a few minutes
    .venv/bin/python bench/single_node.py --quick      # smaller N, 100k keys
    .venv/bin/python bench/single_node.py --profile --markdown

Results go to ``bench/results/<timestamp>-single_node.json`` (gitignored).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    RESULTS_DIR,
    HarnessError,
    ProcessSet,
    ProcessSpec,
    RedisSpec,
    RingkvSpec,
    Service,
    console,
    cpu_seconds,
    format_profile,
    load_keys,
    machine_info,
    markdown_table,
    median,
    py_spy_wrapper,
    redis_benchmark,
    resp_call,
    run_main,
    stop_on_signals,
    summarize_collapsed,
    timestamp,
    write_results,
)
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TimeElapsedColumn
from rich.table import Table

BASELINE = "redis"
DURABLE_BASELINE = "redis-aof"


@dataclass(frozen=True)
class Target:
    name: str
    fsync: str  # as printed: the durability the row ran with
    durable: bool  # acknowledged writes survive power loss
    spec: ProcessSpec


def make_targets() -> dict[str, Target]:
    return {
        t.name: t
        for t in (
            Target("redis", "off (no AOF)", False, RedisSpec("redis")),
            Target(
                "redis-aof",
                "always (AOF)",
                True,
                RedisSpec(
                    "redis-aof",
                    args=("--save", "", "--appendonly", "yes", "--appendfsync", "always"),
                ),
            ),
            Target(
                "ringkv-memory",
                "- (memory)",
                False,
                RingkvSpec("ringkv-memory", engine="memory", fsync="never"),
            ),
            Target(
                "ringkv-lmdb-always",
                "always",
                True,
                RingkvSpec("ringkv-lmdb-always", engine="lmdb", fsync="always"),
            ),
            Target(
                "ringkv-lmdb-never",
                "never",
                False,
                RingkvSpec("ringkv-lmdb-never", engine="lmdb", fsync="never"),
            ),
        )
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="ringkv vs redis-server on one machine (throughput, memory, profile)",
    )
    p.add_argument(
        "-n",
        "--requests",
        type=int,
        default=None,
        help="requests per redis-benchmark test (default 200000, 20000 with --quick)",
    )
    p.add_argument("-c", "--clients", type=int, default=50, help="redis-benchmark -c (default 50)")
    p.add_argument("--pipelines", default="1,16", help="comma-separated -P values (default 1,16)")
    p.add_argument("--tests", default="set,get", help="redis-benchmark -t (default set,get)")
    p.add_argument(
        "--targets",
        default=",".join(make_targets()),
        help="comma-separated subset of the targets (default: all five)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat each measurement, report the median (default 1)",
    )
    p.add_argument("--quick", action="store_true", help="smaller N and 100k keys: a sanity run")
    p.add_argument("--skip-memory", action="store_true", help="skip the 1M-key memory test")
    p.add_argument(
        "--keys",
        type=int,
        default=None,
        help="keys for the memory test (default 1000000, 100000 with --quick)",
    )
    p.add_argument("--value-bytes", type=int, default=100, help="memory test value size (100)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="also profile ringkv-memory under py-spy during SET -P 1",
    )
    p.add_argument(
        "--profile-rate", type=int, default=200, help="py-spy samples per second (default 200)"
    )
    p.add_argument(
        "--profile-native",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="include native frames (system calls, uvloop, CPython) in the profile (default on)",
    )
    p.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS_DIR,
        help="where the JSON (and profile) go (default bench/results)",
    )
    p.add_argument("--markdown", action="store_true", help="also print the tables as Markdown")
    p.add_argument("--keep", action="store_true", help="keep the scratch dir (logs, data)")
    args = p.parse_args(argv)  # fmt: skip
    args.requests = args.requests or (20_000 if args.quick else 200_000)
    args.keys = args.keys or (100_000 if args.quick else 1_000_000)
    args.pipelines = [int(x) for x in args.pipelines.split(",") if x]
    args.tests = [t.strip().lower() for t in args.tests.split(",") if t.strip()]
    known = make_targets()
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in args.targets if t not in known]
    if unknown:
        p.error(f"unknown targets {unknown}; choose from {list(known)}")
    if args.rounds < 1 or args.requests < 1 or args.keys < 1:
        p.error("--rounds, --requests and --keys must be positive")
    return args


# -- throughput ----------------------------------------------------------------


def run_throughput(
    procs: ProcessSet, targets: list[Target], args: argparse.Namespace, progress: Progress
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every (test, pipeline, target) measured ``rounds`` times, interleaved.

    One redis-benchmark run per test, so that the server's CPU time (user and
    system, from /proc) can be charged to that test: CPU per operation is a
    steadier figure than ops/s on a shared machine.
    """
    status = progress.add_task("starting servers", total=None)
    services = procs.start(*(t.spec for t in targets))
    progress.update(status, description="servers up", total=1, completed=1)
    described = [s.describe() for s in services]
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    total = args.rounds * len(args.pipelines) * len(args.tests) * len(targets)
    task = progress.add_task("redis-benchmark", total=total)
    for round_no in range(args.rounds):
        for pipeline in args.pipelines:
            for test in args.tests:
                for target, service in zip(targets, services, strict=True):
                    label = f"{target.name} {test.upper()} -P {pipeline}"
                    if args.rounds > 1:
                        label += f" (round {round_no + 1})"
                    progress.update(task, description=label)
                    runs.setdefault((target.name, test, pipeline), []).append(
                        _one_run(service, test, pipeline, args)
                    )
                    progress.advance(task)
    for service in services:
        _check_alive(service)
        procs.stop(service)
    return summarize(targets, runs, args), described


def _one_run(
    service: Service, test: str, pipeline: int, args: argparse.Namespace
) -> dict[str, Any]:
    _check_alive(service)
    user0, sys0 = cpu_seconds(service.pid)
    result = redis_benchmark(
        service.port, tests=[test], requests=args.requests, clients=args.clients, pipeline=pipeline
    )[test]
    user1, sys1 = cpu_seconds(service.pid)
    run = result.as_dict()
    run["server_cpu_user_s"] = user1 - user0
    run["server_cpu_sys_s"] = sys1 - sys0
    run["server_cpu_us_per_op"] = 1e6 * (user1 - user0 + sys1 - sys0) / args.requests
    return run


def _check_alive(service: Service) -> None:
    if not service.alive():
        raise HarnessError(f"{service.name} died:\n{service.log_tail()}")


def summarize(
    targets: list[Target],
    runs: dict[tuple[str, str, int], list[dict[str, Any]]],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """One row per (test, pipeline, target): the median run, and the ratios."""
    medians: dict[tuple[str, str, int], dict[str, Any]] = {}
    for key, results in runs.items():
        mid = median([r["rps"] for r in results])
        medians[key] = min(results, key=lambda r: abs(r["rps"] - mid))
    rows: list[dict[str, Any]] = []
    for test in args.tests:
        for pipeline in args.pipelines:
            base = medians.get((BASELINE, test, pipeline))
            durable_base = medians.get((DURABLE_BASELINE, test, pipeline))
            for target in targets:
                res = medians.get((target.name, test, pipeline))
                if res is None:
                    continue
                rows.append(
                    {
                        "target": target.name,
                        "kind": target.spec.kind,
                        "engine": target.spec.labels.get("engine", "redis"),
                        "fsync": target.fsync,
                        "durable": target.durable,
                        "test": test,
                        "pipeline": pipeline,
                        "clients": args.clients,
                        "requests": args.requests,
                        "rps": res["rps"],
                        "p50_ms": res["p50_ms"],
                        "p99_ms": res["p99_ms"],
                        "avg_ms": res["avg_ms"],
                        "server_cpu_us_per_op": res["server_cpu_us_per_op"],
                        "ratio_redis": res["rps"] / base["rps"] if base else None,
                        "ratio_redis_aof": (
                            res["rps"] / durable_base["rps"]
                            if durable_base and target.durable
                            else None
                        ),
                        "runs": runs[(target.name, test, pipeline)],
                    }
                )
    return rows


TABLE_HEADERS = [
    "target",
    "fsync",
    "test",
    "P",
    "ops/s",
    "p50 ms",
    "p99 ms",
    "CPU us/op",
    "x redis",
    "x redis-aof",
]


def table_cells(row: dict[str, Any]) -> list[str]:
    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    return [
        row["target"],
        row["fsync"],
        row["test"].upper(),
        str(row["pipeline"]),
        f"{row['rps']:,.0f}",
        f"{row['p50_ms']:.3f}",
        f"{row['p99_ms']:.3f}",
        f"{row['server_cpu_us_per_op']:.1f}",
        ratio(row["ratio_redis"]),
        ratio(row["ratio_redis_aof"]),
    ]


def throughput_table(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for header in TABLE_HEADERS:
        table.add_column(
            header, justify="left" if header in ("target", "fsync", "test") else "right"
        )
    previous = None
    for row in rows:
        group = (row["test"], row["pipeline"])
        if previous is not None and group != previous:
            table.add_section()
        previous = group
        cells = table_cells(row)
        style = "bold" if row["kind"] == "ringkv" else None
        table.add_row(*cells, style=style)
    return table


# -- memory -----------------------------------------------------------------------


def measure_memory(
    procs: ProcessSet, args: argparse.Namespace, progress: Progress
) -> dict[str, Any]:
    """Load the same keys into a fresh Redis and a fresh ringkv; compare RSS."""
    status = progress.add_task("memory: starting fresh servers", total=None)
    redis, ringkv = procs.start(
        RedisSpec("mem-redis"), RingkvSpec("mem-ringkv-memory", engine="memory", fsync="never")
    )
    redis_before = int(resp_call(redis.port, "INFO", "memory")["used_memory_rss"])
    ringkv_before = ringkv.rss_bytes()
    progress.update(status, description="memory: servers up", total=1, completed=1)
    for service in (redis, ringkv):
        task = progress.add_task(f"memory: loading {service.name}", total=args.keys)
        started = time.perf_counter()
        load_keys(
            service.port,
            args.keys,
            value_bytes=args.value_bytes,
            progress=functools.partial(progress.advance, task),
        )
        progress.update(task, description=f"memory: loaded {service.name} "
                        f"({args.keys / (time.perf_counter() - started):,.0f} keys/s)")  # fmt: skip
        dbsize = int(resp_call(service.port, "DBSIZE"))
        if dbsize != args.keys:
            raise HarnessError(f"{service.name} holds {dbsize} keys, expected {args.keys}")
    time.sleep(1.0)  # Redis refreshes used_memory_rss in its 100 ms cron
    redis_info = resp_call(redis.port, "INFO", "memory")
    redis_rss = int(redis_info["used_memory_rss"])
    ringkv_rss = ringkv.rss_bytes()
    ringkv_info = resp_call(ringkv.port, "INFO", "memory")
    result = {
        "keys": args.keys,
        "value_bytes": args.value_bytes,
        "redis_used_memory_rss": redis_rss,
        "redis_used_memory": int(redis_info["used_memory"]),
        "redis_vmrss": redis.rss_bytes(),
        "redis_rss_empty": redis_before,
        "ringkv_vmrss": ringkv_rss,
        "ringkv_used_memory": int(ringkv_info.get("used_memory", 0)),
        "ringkv_rss_empty": ringkv_before,
        "ratio_rss": ringkv_rss / redis_rss,
        "redis_bytes_per_key": (redis_rss - redis_before) / args.keys,
        "ringkv_bytes_per_key": (ringkv_rss - ringkv_before) / args.keys,
    }
    procs.stop(ringkv)
    procs.stop(redis)
    return result


MEMORY_HEADERS = ["server", "keys", "RSS empty MiB", "RSS loaded MiB", "bytes/key", "x redis"]


def memory_cells(mem: dict[str, Any]) -> list[list[str]]:
    mib = 1024 * 1024
    return [
        [
            "redis (used_memory_rss)",
            f"{mem['keys']:,}",
            f"{mem['redis_rss_empty'] / mib:.1f}",
            f"{mem['redis_used_memory_rss'] / mib:.1f}",
            f"{mem['redis_bytes_per_key']:.0f}",
            "1.00",
        ],
        [
            "ringkv-memory (VmRSS)",
            f"{mem['keys']:,}",
            f"{mem['ringkv_rss_empty'] / mib:.1f}",
            f"{mem['ringkv_vmrss'] / mib:.1f}",
            f"{mem['ringkv_bytes_per_key']:.0f}",
            f"{mem['ratio_rss']:.2f}",
        ],
    ]


# -- profile ------------------------------------------------------------------------


def run_profile(
    procs: ProcessSet, args: argparse.Namespace, stamp: str, progress: Progress
) -> dict[str, Any]:
    """A separate ringkv-memory server under py-spy during ``SET -P 1`` (not in the table)."""
    args.results_dir.mkdir(parents=True, exist_ok=True)
    raw_path = args.results_dir / f"{stamp}-profile-ringkv-memory-set-P1.collapsed"
    text_path = raw_path.with_suffix(".txt")
    wrapper = py_spy_wrapper(raw_path, rate_hz=args.profile_rate, native=args.profile_native)
    task = progress.add_task("profile: ringkv-memory under py-spy, SET -P 1", total=None)
    (service,) = procs.start(
        RingkvSpec("profiled-ringkv-memory", engine="memory", fsync="never", wrapper=wrapper)
    )
    started = time.perf_counter()
    user0, sys0 = cpu_seconds(service.pid)
    out = redis_benchmark(service.port, tests=["set"], requests=args.requests,
                          clients=args.clients, pipeline=1)  # fmt: skip
    user1, sys1 = cpu_seconds(service.pid)
    seconds = time.perf_counter() - started
    procs.stop(service)  # the server exits; py-spy then writes its file and exits
    progress.update(task, total=1, completed=1)
    if not raw_path.exists():
        raise HarnessError(f"py-spy wrote no profile:\n{service.log_tail()}")
    summary = summarize_collapsed(raw_path.read_text())
    bench_cmd = f"redis-benchmark -t set -n {args.requests} -c {args.clients} -P 1"
    summary.update(
        {
            "tool": " ".join(Path(wrapper[0]).name if i == 0 else a for i, a in enumerate(wrapper)),
            "native": args.profile_native,
            "rate_hz": args.profile_rate,
            "benchmark": bench_cmd,
            "rps_under_profiler": out["set"].rps,
            "benchmark_seconds": seconds,
            "cpu_user_us_per_op": 1e6 * (user1 - user0) / args.requests,
            "cpu_sys_us_per_op": 1e6 * (sys1 - sys0) / args.requests,
            "collapsed": str(raw_path),
            "summary": str(text_path),
        }
    )
    summary["title"] = (
        f"{bench_cmd} against ringkv serve --engine memory, under py-spy "
        f"({'native + Python' if args.profile_native else 'Python'} stacks, {args.profile_rate} Hz): "
        f"{summary['rps_under_profiler']:,.0f} SET/s while profiled, {seconds:.1f} s"
    )
    text_path.write_text(format_profile(summary, title=summary["title"]))
    return summary


def _shown_path(path: str) -> str:
    """``.venv/bin/python`` rather than an absolute path, when under the cwd."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


# -- main -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_signals()
    for tool in ("redis-server", "redis-benchmark"):
        if shutil.which(tool) is None:
            console.print(
                f"[red]{tool} not found[/] (Debian: apt-get install redis-server redis-tools)"
            )
            return 2
    all_targets = make_targets()
    targets = [all_targets[name] for name in args.targets]
    stamp = timestamp()
    payload: dict[str, Any] = {
        "benchmark": "single_node",
        "format_version": 1,
        "timestamp": stamp,
        "command": " ".join([_shown_path(sys.executable), *sys.argv]),
        "settings": {
            "requests": args.requests,
            "clients": args.clients,
            "pipelines": args.pipelines,
            "tests": args.tests,
            "rounds": args.rounds,
            "keys": None if args.skip_memory else args.keys,
            "value_bytes": args.value_bytes,
            "ringkv_launcher": RingkvSpec.launcher(),
        },
    }
    with ProcessSet(keep=args.keep) as procs:
        payload["machine"] = machine_info(procs.workdir)
        console.print(
            f"[bold]single-node benchmark[/]: -n {args.requests:,} -c {args.clients} "
            f"-P {','.join(map(str, args.pipelines))}, targets {', '.join(args.targets)}; "
            f"{payload['machine']['nproc']} CPUs, load {payload['machine']['loadavg'][0]:.2f}"
        )
        with Progress(
            SpinnerColumn(), "[progress.description]{task.description}", BarColumn(),
            MofNCompleteColumn(), TimeElapsedColumn(), console=console,
        ) as progress:  # fmt: skip
            rows, described = run_throughput(procs, targets, args, progress)
            payload["targets"] = described
            payload["results"] = rows
            if args.profile:
                payload["profile"] = run_profile(procs, args, stamp, progress)
            if not args.skip_memory:
                payload["memory"] = measure_memory(procs, args, progress)
        if args.keep:
            console.print(f"scratch dir kept: {procs.workdir}")
    payload["finished_at"] = timestamp()
    path = write_results("single_node", payload, args.results_dir)
    report(payload, args)
    console.print(f"results: {path}")
    return 0


def report(payload: dict[str, Any], args: argparse.Namespace) -> None:
    rows = payload["results"]
    title = (
        f"redis-benchmark -t {','.join(args.tests)} -n {args.requests:,} -c {args.clients} "
        "(ratios: same test, same pipeline, same run)"
    )
    console.print(throughput_table(rows, title))
    mem = payload.get("memory")
    if mem:
        table = Table(title=f"resident memory, {mem['keys']:,} keys x {mem['value_bytes']} B values",
                      title_justify="left")  # fmt: skip
        for header in MEMORY_HEADERS:
            table.add_column(header, justify="left" if header == "server" else "right")
        for cells in memory_cells(mem):
            table.add_row(*cells)
        console.print(table)
    prof = payload.get("profile")
    if prof:
        console.print(format_profile(prof, top=15, title=prof["title"]), markup=False)
    if args.markdown:
        print(markdown_table(TABLE_HEADERS, [table_cells(r) for r in rows]))
        if mem:
            print()
            print(markdown_table(MEMORY_HEADERS, memory_cells(mem)))


if __name__ == "__main__":
    run_main(main)
