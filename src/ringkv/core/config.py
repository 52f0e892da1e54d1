"""Node configuration: one validated, frozen dataclass (STYLE.md rule 10)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from ringkv.core.record import ConflictMode

__all__ = ["ConfigError", "KeyspaceSpec", "Level", "NodeConfig", "DEFAULT_KEYSPACE"]

_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
DEFAULT_KEYSPACE = "default"


class ConfigError(ValueError):
    """A configuration value, or a relation between two, is wrong."""


class Level(Enum):
    """Consistency levels (DESIGN.md: requests and the consistency contract)."""

    ONE = "one"
    QUORUM = "quorum"
    ALL = "all"
    LOCAL_QUORUM = "local_quorum"
    LINEARIZABLE = "linearizable"


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyspaceSpec:
    """Fixed at creation and for good, like a Riak bucket type."""

    name: str
    mode: ConflictMode = ConflictMode.LWW
    n_replicas: int = 3
    level: Level = Level.QUORUM

    def validate(self) -> None:
        if not _NAME_RE.fullmatch(self.name):
            raise ConfigError(
                f"keyspace name {self.name!r}: use 1-64 letters, digits, '_', '.' or '-'"
            )
        if not 1 <= self.n_replicas <= 15:
            raise ConfigError("n_replicas must be between 1 and 15")

    def effective_n(self, cluster_size: int) -> int:
        return min(self.n_replicas, cluster_size)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    node_id: str = "n1"
    max_key_bytes: int = 8 * 1024
    max_value_bytes: int = 8 * 1024 * 1024
    # Expired keys reclaimed per tick, per keyspace: bounded work, like Redis's
    # active expire cycle (20 keys per sample, repeated while it pays off).
    expire_reclaim_per_tick: int = 256
    tick_interval_ms: int = 100
    # Siblings kept per key in a causal keyspace before a plain write is refused.
    siblings_max: int = 64
    # Most keys one SCAN step may return, whatever COUNT asked for.
    scan_count_max: int = 100_000
    keyspaces_max: int = 256
    # Replication (core/replication.py, core/handoff.py).
    # A client request gets a definite answer or TIMEOUT within this.
    request_timeout_ms: int = 2000
    # A replica that has not answered by then is suspected and, for a write,
    # replaced by a fallback that keeps a hint. Several round trips on a LAN.
    replica_timeout_ms: int = 400
    # How long a suspected node is routed around before it is tried again.
    suspect_ms: int = 5000
    # Hints: at most this many stored (a write needing one more is refused,
    # never dropped), delivered at most hints_per_tick per tick, each retried
    # after hint_retry_ms.
    hints_max: int = 100_000
    hints_per_tick: int = 64
    hint_retry_ms: int = 1000
    # Requests being coordinated at once; past it, new ones are refused (UNAVAILABLE).
    pending_requests_max: int = 10_000
    # TEST ONLY: replicas acknowledge writes without storing them. A broken
    # build on purpose, so the simulator can prove its checkers catch lost
    # writes. Never set outside tests; `ringkv serve` has no flag for it.
    broken_ack_without_storing: bool = False

    def validate(self) -> None:
        if not _NAME_RE.fullmatch(self.node_id):
            raise ConfigError(f"node id {self.node_id!r}: use letters, digits, '_', '.' or '-'")
        if not 1 <= self.max_key_bytes <= 64 * 1024 * 1024:
            raise ConfigError("max_key_bytes must be between 1 and 64 MiB")
        if not 1 <= self.max_value_bytes <= 512 * 1024 * 1024:
            raise ConfigError("max_value_bytes must be between 1 and 512 MiB")
        if self.expire_reclaim_per_tick < 1:
            raise ConfigError("expire_reclaim_per_tick must be at least 1")
        if self.tick_interval_ms < 1:
            raise ConfigError("tick_interval_ms must be at least 1")
        if self.siblings_max < 1:
            raise ConfigError("siblings_max must be at least 1")
        if self.scan_count_max < 1:
            raise ConfigError("scan_count_max must be at least 1")
        if not 1 <= self.replica_timeout_ms < self.request_timeout_ms:
            raise ConfigError("replica_timeout_ms must be at least 1 and below request_timeout_ms")
        if self.suspect_ms < 1 or self.hint_retry_ms < 1:
            raise ConfigError("suspect_ms and hint_retry_ms must be at least 1")
        if self.hints_max < 0 or self.hints_per_tick < 1 or self.pending_requests_max < 1:
            raise ConfigError("hints_max >= 0, hints_per_tick >= 1, pending_requests_max >= 1")
