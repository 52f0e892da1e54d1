"""Convergence: after the faults heal, every home replica of a key stores the
same versions (eventual consistency, Dynamo §4.7 and §4.8; STYLE.md rule 13).

Theory of operation. Once every fault is healed and every key has been read
from every node (reads repair), the runner asks each key's replicas what they
store (``GET /v1/kv/{key}?replicas=true`` on a real cluster, the engines'
records in the simulator). Two replicas agree when they hold the same set of
versions, a version being identified by its dot, value and tombstone flag:
the dot names the write, and a value or flag that differs under one dot is a
corruption worth seeing. HLCs, contexts and expiry times are not compared (a
context can be lifted by ``sync`` without changing the write it belongs to).

Only *home* replicas are compared: a fallback node may still hold a hint. A
home replica that did not answer leaves its key undecided, so a run with one
is *unknown*, not valid. The runner may also measure how long after the heal
the cluster converged; that number is reported, not judged.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from ringkv.check.history import HistoryError
from ringkv.check.report import LIST_MAX, Verdict, truncated
from ringkv.core.clocks import Dot
from ringkv.core.record import Version

__all__ = [
    "ConvergenceResult",
    "DivergentKey",
    "NodeDiff",
    "StoredVersion",
    "VersionLike",
    "check_convergence",
    "replicas_from_operator_json",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredVersion:
    """One version as a replica stores it (the fields the operator JSON shows)."""

    value: bytes
    dot: Dot
    tombstone: bool = False
    hlc: tuple[int, int] = (0, 0)
    expires_at_ms: int = 0

    @property
    def identity(self) -> tuple[str, int, bytes, bool]:
        """What two replicas must agree on: dot, value, tombstone flag."""
        return (self.dot.node, self.dot.counter, self.value, self.tombstone)

    def describe(self) -> str:
        shown = "<tombstone>" if self.tombstone else _text(self.value)
        return f"{self.dot.node}:{self.dot.counter}={shown}"

    @classmethod
    def from_version(cls, version: Version) -> StoredVersion:
        return cls(
            value=version.value,
            dot=version.dot,
            tombstone=version.tombstone,
            hlc=(version.hlc.wall_ms, version.hlc.logical),
            expires_at_ms=version.expires_at_ms,
        )

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> StoredVersion:
        """One entry of ``versions`` in DESIGN.md's operator JSON."""
        try:
            node, counter = row["dvv"]["dot"]
            raw = row.get("value") or ""
            if row.get("encoding") == "base64":
                value = base64.b64decode(raw, validate=True)
            else:
                value = str(raw).encode("utf-8")
            wall_ms, logical = row.get("hlc") or (0, 0)
            return cls(
                value=value,
                dot=Dot(str(node), int(counter)),
                tombstone=bool(row.get("tombstone", False)),
                hlc=(int(wall_ms), int(logical)),
                expires_at_ms=int(row.get("expires_at_ms") or 0),
            )
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise HistoryError(f"malformed stored version {row!r}: {exc}") from None


VersionLike: TypeAlias = StoredVersion | Version | Mapping[str, Any]
"""A ``StoredVersion``, a core ``Version`` (simulator) or an operator-JSON dict."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeDiff:
    node: str
    missing: tuple[StoredVersion, ...]  # held by another home replica, not here
    extra: tuple[StoredVersion, ...]  # held here, not by every home replica

    def describe(self) -> str:
        missing = ", ".join(v.describe() for v in self.missing) or "-"
        extra = ", ".join(v.describe() for v in self.extra) or "-"
        return f"{self.node} missing [{missing}] extra [{extra}]"


@dataclass(frozen=True, slots=True, kw_only=True)
class DivergentKey:
    key: str
    nodes: tuple[NodeDiff, ...]  # every reachable home replica, by node id

    def describe(self) -> str:
        return f"{self.key}: " + "; ".join(diff.describe() for diff in self.nodes)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConvergenceResult:
    valid: bool | None  # None: a home replica did not answer, or no key was checked
    keys_checked: int
    divergent: tuple[DivergentKey, ...]
    unreachable: tuple[tuple[str, str], ...]  # (key, home node) with no answer
    converged_after_ms: float | None  # measured by the runner after the heal

    def verdict(self, list_max: int = LIST_MAX) -> Verdict:
        if self.divergent:
            summary = f"{len(self.divergent)} of {self.keys_checked} keys diverge"
        elif self.unreachable:
            summary = (
                f"{len(self.unreachable)} home replica(s) did not answer; "
                f"the other replicas of {self.keys_checked} keys agree"
            )
        else:
            summary = f"every home replica of {self.keys_checked} keys holds the same versions"
        if self.converged_after_ms is not None:
            summary += f"; converged {self.converged_after_ms:.0f} ms after the heal"
        details: dict[str, object] = {
            "keys_checked": self.keys_checked,
            "divergent_count": len(self.divergent),
            "divergent": truncated([d.describe() for d in self.divergent], list_max),
            "unreachable": truncated([f"{k} on {n}" for k, n in self.unreachable], list_max),
            "converged_after_ms": self.converged_after_ms,
        }
        return Verdict(checker="convergence", valid=self.valid, summary=summary, details=details)


def check_convergence(
    stored: Mapping[str, Mapping[str, Sequence[VersionLike] | None]],
    homes: Mapping[str, Collection[str]] | None = None,
    *,
    converged_after_ms: float | None = None,
) -> ConvergenceResult:
    """Compare the versions each home replica of each key stores.

    ``stored`` maps key -> node -> the versions that node holds (None: the node
    did not answer). ``homes`` maps key -> its home nodes; nodes of ``stored``
    that are not homes are ignored, a home missing from ``stored`` counts as
    not answering, and a key only in ``homes`` is checked too. Without
    ``homes`` every node listed for a key is a home.
    """
    keys = sorted(stored.keys() | (homes.keys() if homes is not None else set()))
    divergent: list[DivergentKey] = []
    unreachable: list[tuple[str, str]] = []
    for key in keys:
        held = stored.get(key, {})
        key_homes = sorted(homes.get(key, ()) if homes is not None else held.keys())
        answers: dict[str, dict[tuple[str, int, bytes, bool], StoredVersion]] = {}
        for node in key_homes:
            versions = held.get(node)
            if versions is None:
                unreachable.append((key, node))
                continue
            converted = (_stored(v) for v in versions)
            answers[node] = {v.identity: v for v in converted}
        diff = _diff(key, answers)
        if diff is not None:
            divergent.append(diff)
    valid: bool | None = True
    if divergent:
        valid = False
    elif unreachable or not keys:
        valid = None
    return ConvergenceResult(
        valid=valid,
        keys_checked=len(keys),
        divergent=tuple(divergent),
        unreachable=tuple(unreachable),
        converged_after_ms=converged_after_ms,
    )


def _diff(
    key: str, answers: Mapping[str, Mapping[tuple[str, int, bytes, bool], StoredVersion]]
) -> DivergentKey | None:
    held = [set(versions) for versions in answers.values()]
    if not held or all(ids == held[0] for ids in held):
        return None
    union: dict[tuple[str, int, bytes, bool], StoredVersion] = {}
    for versions in answers.values():
        union.update(versions)
    common = set.intersection(*held)
    nodes = tuple(
        NodeDiff(
            node=node,
            missing=tuple(union[i] for i in sorted(union.keys() - versions.keys())),
            extra=tuple(versions[i] for i in sorted(versions.keys() - common)),
        )
        for node, versions in answers.items()
    )
    return DivergentKey(key=key, nodes=nodes)


def replicas_from_operator_json(
    reports: Iterable[Mapping[str, Any]],
) -> tuple[dict[str, dict[str, list[StoredVersion] | None]], dict[str, list[str]]]:
    """``check_convergence``'s two arguments from ``GET /v1/kv/{key}?replicas=true``
    answers, one per key: a replica with ``reachable`` false holds None."""
    stored: dict[str, dict[str, list[StoredVersion] | None]] = {}
    homes: dict[str, list[str]] = {}
    for report in reports:
        try:
            key = str(report["key"])
            replicas = [(str(r["node"]), r) for r in report["replicas"]]
        except (KeyError, TypeError) as exc:
            raise HistoryError(f"malformed replica report {report!r}: {exc}") from None
        per_node = stored.setdefault(key, {})
        key_homes = homes.setdefault(key, [])
        for node, replica in replicas:
            if replica.get("home", True) and node not in key_homes:
                key_homes.append(node)
            versions = replica.get("versions") or []
            reachable = replica.get("reachable", True)
            per_node[node] = [StoredVersion.from_json(v) for v in versions] if reachable else None
    return stored, homes


def _stored(version: VersionLike) -> StoredVersion:
    if isinstance(version, StoredVersion):
        return version
    if isinstance(version, Version):
        return StoredVersion.from_version(version)
    if not isinstance(version, Mapping):
        raise HistoryError(f"not a stored version: {version!r}")
    return StoredVersion.from_json(version)


def _text(raw: bytes) -> str:
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return "0x" + raw.hex()
    return text if text.isprintable() and text else repr(raw)
