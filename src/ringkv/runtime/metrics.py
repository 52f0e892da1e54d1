"""Counters and latency histograms kept in plain dicts, exported on scrape.

The request path only increments integers (a prometheus_client ``Counter``
takes a lock per increment, too slow for every RESP command); ``/metrics``
turns them into Prometheus families through a custom collector.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

__all__ = ["LATENCY_BUCKETS_S", "Metrics"]

LATENCY_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    total_s: float = 0.0


class Metrics:
    """Operation counters by (interface, command, outcome) and latencies by command."""

    def __init__(self) -> None:
        self.ops: dict[tuple[str, str, str], int] = {}
        self.latency: dict[tuple[str, str], _Histogram] = {}
        self.gauges: dict[str, Callable[[], float]] = {}
        self.counters: dict[str, Callable[[], float]] = {}

    def observe(self, interface: str, command: str, ok: bool, seconds: float) -> None:
        key = (interface, command, "ok" if ok else "error")
        self.ops[key] = self.ops.get(key, 0) + 1
        hist = self.latency.get((interface, command))
        if hist is None:
            hist = self.latency[(interface, command)] = _Histogram()
        hist.counts[bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        hist.total_s += seconds

    def registry(self) -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        return registry


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        ops = CounterMetricFamily(
            "ringkv_ops", "Client operations by interface, command and outcome",
            labels=["interface", "command", "outcome"],
        )  # fmt: skip
        for (interface, command, outcome), count in sorted(m.ops.items()):
            ops.add_metric([interface, command, outcome], count)
        yield ops
        latency = HistogramMetricFamily(
            "ringkv_op_latency_seconds", "Client operation latency, from parse to reply",
            labels=["interface", "command"],
        )  # fmt: skip
        for (interface, command), hist in sorted(m.latency.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*LATENCY_BUCKETS_S, float("inf")), hist.counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            latency.add_metric([interface, command], buckets, hist.total_s)
        yield latency
        for name, read in sorted(m.gauges.items()):
            yield GaugeMetricFamily(f"ringkv_{name}", name.replace("_", " "), value=read())
        for name, read in sorted(m.counters.items()):
            yield CounterMetricFamily(f"ringkv_{name}", name.replace("_", " "), value=read())
