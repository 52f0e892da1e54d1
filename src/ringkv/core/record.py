"""Stored versions of a key and how sibling sets are reconciled.

Theory of operation. Everything a replica stores for one key is one packed
record: the list of its current versions (usually one; several when
concurrent writes to a ``causal`` keyspace left siblings). Each version carries
its value, the HLC timestamp of the write, the dot naming the write, the causal
context (version vector) the write had seen, an optional absolute expiry and a
tombstone flag (a delete is a version too, so that it can supersede older
versions on replicas that missed it).

Reconciling two sibling sets (``sync``) keeps every version that no version on
the other side has seen; this is the DVV ``sync`` of Preguiça et al. In an
``lww`` keyspace the survivors are then cut to one: the largest
``(hlc, writer node, counter)``. A write that causally follows another carries
a context covering the other's dot, so it always survives ``sync`` and hence
always wins, whatever the HLC; only truly concurrent writes are ordered by
time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

import msgpack

from ringkv.core.clocks import Dot, HlcTimestamp, vv_covers, vv_from_flat, vv_merge, vv_to_flat

__all__ = [
    "ConflictMode",
    "RecordError",
    "Version",
    "causal_past",
    "live_versions",
    "lww_order_key",
    "new_write",
    "pack_record",
    "record_vv",
    "resolve",
    "sync",
    "unpack_record",
]

RECORD_FORMAT = 1


class ConflictMode(Enum):
    """How a keyspace treats concurrent writes (DESIGN.md, keyspaces)."""

    LWW = "lww"
    CAUSAL = "causal"
    STRONG = "strong"


class RecordError(ValueError):
    """A stored or received record could not be decoded."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Version:
    value: bytes
    hlc: HlcTimestamp
    dot: Dot
    context: Mapping[str, int] = field(default_factory=dict)
    expires_at_ms: int = 0  # 0: never expires
    tombstone: bool = False

    def is_live(self, now_ms: int) -> bool:
        """Readable: not a delete and not past its expiry."""
        return not self.tombstone and (self.expires_at_ms == 0 or self.expires_at_ms > now_ms)


def causal_past(version: Version) -> dict[str, int]:
    """The version vector of everything ``version`` has seen, itself included."""
    past = dict(version.context)
    if past.get(version.dot.node, 0) < version.dot.counter:
        past[version.dot.node] = version.dot.counter
    return past


def record_vv(versions: Sequence[Version]) -> dict[str, int]:
    """The causal context a reader of ``versions`` gets: the join of their pasts."""
    return vv_merge(*(causal_past(v) for v in versions))


def lww_order_key(version: Version) -> tuple[int, int, str, int]:
    """Total order for last-writer-wins: HLC, then writer node id, then counter."""
    return (version.hlc.wall_ms, version.hlc.logical, version.dot.node, version.dot.counter)


def sync(ours: Sequence[Version], theirs: Sequence[Version]) -> list[Version]:
    """Union of two sibling sets minus every version the other side has seen."""
    by_dot: dict[Dot, Version] = {}
    for version in (*ours, *theirs):
        by_dot.setdefault(version.dot, version)
    candidates = list(by_dot.values())
    pasts = [causal_past(v) for v in candidates]
    kept = []
    for version in candidates:
        superseded = any(
            other is not version and vv_covers(past, version.dot)
            for other, past in zip(candidates, pasts, strict=True)
        )
        if not superseded:
            kept.append(version)
    kept.sort(key=lww_order_key)
    return kept


def resolve(versions: list[Version], mode: ConflictMode) -> list[Version]:
    """Apply the keyspace's conflict rule to a reconciled sibling set."""
    if mode is ConflictMode.CAUSAL or len(versions) <= 1:
        return versions
    return [max(versions, key=lww_order_key)]


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteSpec:
    value: bytes
    hlc: HlcTimestamp
    node: str
    expires_at_ms: int = 0
    tombstone: bool = False


def new_write(
    existing: Sequence[Version],
    spec: WriteSpec,
    mode: ConflictMode,
    client_context: Mapping[str, int] | None,
) -> list[Version]:
    """The sibling set after a coordinator applies a write to ``existing``.

    ``client_context`` is the causal context the client read (``None``: the
    client read nothing, as a plain Redis SET). In ``lww`` and ``strong`` mode
    a blind write supersedes everything the coordinator holds; in ``causal``
    mode it supersedes exactly what the context saw, so a blind write becomes
    a new sibling.
    """
    seen_here = record_vv(existing)
    if mode is ConflictMode.CAUSAL:
        context = dict(client_context or {})
    else:
        context = vv_merge(seen_here, client_context or {})
    counter = max(seen_here.get(spec.node, 0), context.get(spec.node, 0)) + 1
    version = Version(
        value=spec.value,
        hlc=spec.hlc,
        dot=Dot(spec.node, counter),
        context=context,
        expires_at_ms=spec.expires_at_ms,
        tombstone=spec.tombstone,
    )
    survivors = [v for v in existing if not vv_covers(context, v.dot)]
    return resolve([*survivors, version], mode)


def live_versions(versions: Sequence[Version], now_ms: int) -> list[Version]:
    return [v for v in versions if v.is_live(now_ms)]


def pack_record(versions: Sequence[Version]) -> bytes:
    """One compact msgpack record per key (DESIGN.md: data model)."""
    rows: list[object] = [RECORD_FORMAT]
    for v in versions:
        rows.append(
            [
                v.value,
                v.hlc.wall_ms,
                v.hlc.logical,
                v.dot.node,
                v.dot.counter,
                vv_to_flat(v.context),
                v.expires_at_ms,
                v.tombstone,
            ]
        )
    packed: bytes = msgpack.packb(rows, use_bin_type=True)
    return packed


def unpack_record(data: bytes) -> list[Version]:
    try:
        rows = msgpack.unpackb(data, raw=False, use_list=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise RecordError(f"undecodable record: {exc}") from exc
    if not isinstance(rows, list) or not rows or rows[0] != RECORD_FORMAT:
        raise RecordError("record has an unknown format")
    versions = []
    for row in rows[1:]:
        try:
            value, wall, logical, node, counter, flat, expires, tomb = row
            versions.append(
                Version(
                    value=bytes(value),
                    hlc=HlcTimestamp(int(wall), int(logical)),
                    dot=Dot(str(node), int(counter)),
                    context=vv_from_flat(flat),
                    expires_at_ms=int(expires),
                    tombstone=bool(tomb),
                )
            )
        except (TypeError, ValueError) as exc:
            raise RecordError(f"malformed version in record: {exc}") from exc
    return versions
