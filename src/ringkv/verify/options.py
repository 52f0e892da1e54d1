"""What a verification run is asked to do, and what it brings back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ringkv.check.history import Event
from ringkv.verify.nemesis import Fault

__all__ = ["KEYSPACE", "RunData", "VerifyOptions"]

KEYSPACE = "verify"


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyOptions:
    seed: int = 0
    nodes: int = 5
    workload: str = "register"
    faults: tuple[str, ...] = ("partition", "kill")
    time_s: float = 30.0
    mode: str = "lww"  # the keyspace's conflict mode
    level: str = "quorum"  # every operation's level
    n_replicas: int = 3
    processes: int = 10
    recovery_s: float = 30.0  # bound on the recovery phase (liveness)
    fsync: str = "always"
    checker_budget_s: float = 60.0  # linearizability: beyond it the verdict is unknown
    # Test-only (the simulator): replicas acknowledge copies they never store,
    # the deliberate bug the checkers must catch.
    broken_ack_without_storing: bool = False

    @property
    def strong(self) -> bool:
        return self.mode == "strong"

    @property
    def compares_replicas(self) -> bool:
        """Whether the home replicas must converge: lww/causal ones do; a
        strong keyspace's acceptors need not (a minority may lag behind the
        committed state for good), so the executors collect nothing for it."""
        return not self.strong

    def describe(self) -> str:
        faults = ",".join(self.faults) or "none"
        return (
            f"{self.workload} on {self.nodes} nodes, {self.mode} keyspace n={self.n_replicas}, "
            f"level {self.level}, faults {faults}, {self.time_s:g} s, seed {self.seed}"
        )


@dataclass(slots=True, kw_only=True)
class RunData:
    """A finished run: the history, the faults, and every home replica's
    versions of every key touched (collected after heal and final reads)."""

    options: VerifyOptions
    events: list[Event]
    faults: list[Fault]
    # key -> node -> its versions (core Versions, or parsed operator JSON;
    # None: the replica did not answer)
    replicas: dict[str, dict[str, list[Any] | None]]
    homes: dict[str, tuple[str, ...]]
    recovery_ms: int
    executor: str  # simulator | processes
    notes: list[str] = field(default_factory=list)
