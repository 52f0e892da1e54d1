"""Node configuration: one validated, frozen dataclass (STYLE.md rule 10)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from ringkv.core.record import ConflictMode

__all__ = [
    "DEFAULT_KEYSPACE",
    "LOCKS_KEYSPACE",
    "LOCKS_KEYSPACE_SPEC",
    "ConfigError",
    "KeyspaceSpec",
    "Level",
    "NodeConfig",
]

_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
DEFAULT_KEYSPACE = "default"


class ConfigError(ValueError):
    """A configuration value, or a relation between two, is wrong."""


class Level(Enum):
    """Consistency levels (DESIGN.md: requests and the consistency contract).

    ``linearizable`` exists only in ``strong`` keyspaces (a CASPaxos round,
    core/strong.py); asked of an ``lww`` or ``causal`` one it is refused with
    WRONGLEVEL. In a strong keyspace every write is linearizable whatever the
    level, and a read at ``one``, ``quorum`` or ``all`` reads that many
    acceptors' states without a round: possibly stale, and labelled so."""

    ONE = "one"
    QUORUM = "quorum"
    ALL = "all"
    LOCAL_QUORUM = "local_quorum"
    LINEARIZABLE = "linearizable"


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyspaceSpec:
    """Fixed at creation and for good, like a Riak bucket type.

    ``mode`` ``strong`` (``ConflictMode.STRONG``) makes each key a CASPaxos
    register over its N home replicas (core/strong.py); its table holds
    ``paxos.AcceptorState`` rows, never ``record`` ones, and no lww/causal
    code path reads it. Give such a keyspace ``level=Level.LINEARIZABLE``
    unless possibly stale reads are what its users want by default."""

    name: str
    mode: ConflictMode = ConflictMode.LWW
    n_replicas: int = 3
    level: Level = Level.QUORUM

    @property
    def strong(self) -> bool:
        return self.mode is ConflictMode.STRONG

    def validate(self) -> None:
        if not _NAME_RE.fullmatch(self.name):
            raise ConfigError(
                f"keyspace name {self.name!r}: use 1-64 letters, digits, '_', '.' or '-'"
            )
        if not 1 <= self.n_replicas <= 15:
            raise ConfigError("n_replicas must be between 1 and 15")
        if self.level is Level.LINEARIZABLE and not self.strong:
            raise ConfigError(
                f"level linearizable needs mode strong (create the keyspace with "
                f"`ringkv keyspace create {self.name} --mode strong`)"
            )

    def effective_n(self, cluster_size: int) -> int:
        return min(self.n_replicas, cluster_size)


# Locks (``requests.Lock``) live here unless the request names another strong
# keyspace; a node creates it on first use, as if `ringkv keyspace create locks
# --mode strong --n 3 --level linearizable` had been run.
LOCKS_KEYSPACE = "locks"
LOCKS_KEYSPACE_SPEC = KeyspaceSpec(
    name=LOCKS_KEYSPACE, mode=ConflictMode.STRONG, n_replicas=3, level=Level.LINEARIZABLE
)


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
    # Requests being coordinated at once; past it, new ones are refused
    # (UNAVAILABLE). CASPaxos proposals, the operations queued behind one on
    # the same key, and strong reads count too.
    pending_requests_max: int = 10_000
    # CASPaxos (core/paxos.py, core/strong.py). A round without its quorum by
    # then is retried: a few LAN round trips, well under request_timeout_ms.
    paxos_round_timeout_ms: int = 200
    # Rounds per operation before it gives up as at its deadline.
    paxos_rounds_max: int = 32
    # Keys whose one-round-trip promise (paxos.LeaderCache) this node keeps,
    # least recently used dropped first (losing one costs a round trip). An
    # entry is a ballot and a register state: about 200 B plus the value.
    leader_cache_keys_max: int = 4096
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
        if not 1 <= self.paxos_round_timeout_ms < self.request_timeout_ms:
            raise ConfigError(
                "paxos_round_timeout_ms must be at least 1 and below request_timeout_ms"
            )
        if self.paxos_rounds_max < 1 or self.leader_cache_keys_max < 0:
            raise ConfigError("paxos_rounds_max >= 1, leader_cache_keys_max >= 0")
