"""Stored versions of a key and how sibling sets are reconciled.

Theory of operation. Everything a replica stores for one key is one packed
record: the list of its current versions (usually one; several when
concurrent writes to a ``causal`` keyspace left siblings). Each version carries
its value, the HLC timestamp of the write, the dot naming the write, the causal
context (version vector) the write had seen, an optional absolute expiry and a
tombstone flag (a delete is a version too, so that it can supersede older
versions on replicas that missed it).

Reconciling two sibling sets (``sync``) keeps every version that no version on
the other side has seen; this is the DVV ``sync`` of Preguiça et al., a join:
commutative, associative and idempotent, so replicas that exchange records in
any order converge. In an ``lww`` keyspace a reader is answered with one
version (``resolve``): the largest ``(hlc, writer node, counter)`` of the
reconciled set. A write that causally follows another carries a context
covering the other's dot, so it always survives ``sync`` and hence always
wins, whatever the HLC; only truly concurrent writes are ordered by time.

A replica stores what ``sync`` returns, never what ``resolve`` picked from
it: an lww record holds one version after a local write (whose context covers
everything the coordinator held) and can hold concurrent ones between an
exchange and the next write. Storing the resolved record instead would make
a replica forget the losers' dots (a coordinator numbers its next dot from
the record, and would hand out one dot for two writes), and would not
converge when an HLC is smaller than one its write causally follows: storing
the pick of each pairwise merge is not associative.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from types import MappingProxyType
from typing import NamedTuple

import msgpack

from ringkv.core.clocks import (
    Dot,
    HlcTimestamp,
    vv_covers,
    vv_descends,
    vv_from_flat,
    vv_merge,
    vv_to_flat,
)

__all__ = [
    "ConflictMode",
    "RecordError",
    "Version",
    "causal_past",
    "live_versions",
    "lww_order_key",
    "new_write",
    "pack_record",
    "record_expiry",
    "record_vv",
    "resolve",
    "sync",
    "unpack_record",
]

RECORD_FORMAT = 1
_NO_CONTEXT: Mapping[str, int] = MappingProxyType({})
_ROW_FIELDS = 8


class ConflictMode(Enum):
    """How a keyspace treats concurrent writes (DESIGN.md, keyspaces)."""

    LWW = "lww"
    CAUSAL = "causal"
    STRONG = "strong"


class RecordError(ValueError):
    """A stored or received record could not be decoded."""


class Version(NamedTuple):
    """One stored version. A named tuple (immutable, and four times cheaper to
    build than a frozen dataclass): one is decoded for every read. Treat
    ``context`` as read-only; build it with keyword arguments."""

    value: bytes
    hlc: HlcTimestamp
    dot: Dot
    context: Mapping[str, int] = _NO_CONTEXT
    expires_at_ms: int = 0  # 0: never expires
    tombstone: bool = False

    def is_live(self, now_ms: int) -> bool:
        """Readable: not a delete and not past its expiry (Redis's
        ``keyIsExpired``: a key expires once now is *after* its expiry time)."""
        return not self.tombstone and (self.expires_at_ms == 0 or self.expires_at_ms >= now_ms)


def causal_past(version: Version) -> dict[str, int]:
    """The version vector of everything ``version`` has seen, itself included.

    A vector cannot hold a gap, so this also covers the dots of the writer's
    node below ``version.dot`` that the write never saw: right for the context
    a reader of the whole record gets (``record_vv``), wrong for deciding
    what a version supersedes (``sync`` uses the context alone)."""
    past = dict(version.context)
    if past.get(version.dot.node, 0) < version.dot.counter:
        past[version.dot.node] = version.dot.counter
    return past


def record_vv(versions: Sequence[Version]) -> dict[str, int]:
    """The causal context a reader of ``versions`` gets: the join of their pasts."""
    if len(versions) == 1:
        return causal_past(versions[0])
    return vv_merge(*(causal_past(v) for v in versions))


def lww_order_key(version: Version) -> tuple[int, int, str, int]:
    """Total order for last-writer-wins: HLC, then writer node id, then counter."""
    return (version.hlc.wall_ms, version.hlc.logical, version.dot.node, version.dot.counter)


def sync(ours: Sequence[Version], theirs: Sequence[Version]) -> list[Version]:
    """Union of two sibling sets minus every version the other side has seen.

    A version is superseded when another version's *context* covers its dot.
    The context, not ``causal_past``: a dot need not follow its context
    without a gap (a blind write ``(n1, 2)`` with an empty context is
    concurrent with ``(n1, 1)``, which it never saw), and filling the gap would
    silently drop the sibling ``(n1, 1)``.

    Nothing a dropped version knew is forgotten: a version that supersedes
    another has, by transitivity, seen everything the other had seen, and its
    context is lifted to say so. For contexts read from whole records this
    changes nothing (they already include it); it keeps a record from
    forgetting dots when a client wrote with a hand-made context. Such a
    context can even make two versions cover each other; neither has then
    superseded the other, and both are kept. Two copies of one dot hold one
    write; should their contexts differ, the union is kept.

    With contexts read from records, the result depends only on the union,
    so ``sync`` is commutative, associative and idempotent.
    """
    by_dot: dict[Dot, Version] = {}
    for version in (*ours, *theirs):
        seen = by_dot.get(version.dot)
        if seen is None:
            by_dot[version.dot] = version
        elif seen.context != version.context:
            by_dot[version.dot] = seen._replace(context=vv_merge(seen.context, version.context))
    candidates = list(by_dot.values())
    contexts = _closed_contexts(candidates)
    kept = [
        version if contexts[i] is version.context else version._replace(context=contexts[i])
        for i, version in enumerate(candidates)
        if not any(
            j != i and vv_covers(context, version.dot) and not vv_covers(contexts[i], other.dot)
            for j, (other, context) in enumerate(zip(candidates, contexts, strict=True))
        )
    ]
    kept.sort(key=lww_order_key)
    return kept


def _closed_contexts(candidates: Sequence[Version]) -> list[Mapping[str, int]]:
    """Each candidate's context, lifted until it includes the context of every
    candidate whose dot it covers; unchanged contexts are returned as is."""
    contexts: list[Mapping[str, int]] = [v.context for v in candidates]
    changed = True
    while changed:  # at most one round per lifted entry: contexts only grow
        changed = False
        for i in range(len(candidates)):
            for j, other in enumerate(candidates):
                if (
                    j != i
                    and vv_covers(contexts[i], other.dot)
                    and not vv_descends(contexts[i], contexts[j])
                ):
                    contexts[i] = vv_merge(contexts[i], contexts[j])
                    changed = True
    return contexts


def resolve(versions: list[Version], mode: ConflictMode) -> list[Version]:
    """What a reader of a reconciled sibling set is answered with.

    Causal mode: every sibling. Otherwise the largest by ``lww_order_key``.
    Never store the result in place of the record (see the module docstring).
    """
    if mode is ConflictMode.CAUSAL or len(versions) <= 1:
        return versions
    return [max(versions, key=lww_order_key)]


class WriteSpec(NamedTuple):
    """What a coordinator writes (build it with keyword arguments)."""

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
    if mode is not ConflictMode.CAUSAL and client_context is None:
        # The common blind write in lww/strong mode: it has seen (and so
        # supersedes) every version here, whose pasts seen_here already joins.
        counter = seen_here.get(spec.node, 0) + 1
        return [
            Version(
                value=spec.value,
                hlc=spec.hlc,
                dot=Dot(spec.node, counter),
                context=seen_here,
                expires_at_ms=spec.expires_at_ms,
                tombstone=spec.tombstone,
            )
        ]
    if mode is ConflictMode.CAUSAL:
        context = dict(client_context or {})
    else:
        context = vv_merge(seen_here, client_context or {})
    replaced = [v for v in existing if vv_covers(context, v.dot)]
    survivors = [v for v in existing if not vv_covers(context, v.dot)]
    if replaced:
        # What the replaced versions had seen, this write has now seen too: a
        # no-op for a context read from the record, but a hand-made context
        # must not make the record forget dots (see ``sync``).
        context = vv_merge(context, *(v.context for v in replaced))
    counter = max(seen_here.get(spec.node, 0), context.get(spec.node, 0)) + 1
    version = Version(
        value=spec.value,
        hlc=spec.hlc,
        dot=Dot(spec.node, counter),
        context=context,
        expires_at_ms=spec.expires_at_ms,
        tombstone=spec.tombstone,
    )
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
    """Decode ``pack_record``'s output; anything else raises RecordError."""
    try:
        rows = msgpack.unpackb(data, raw=False, use_list=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise RecordError(f"undecodable record: {exc}") from exc
    if not isinstance(rows, list) or not rows or type(rows[0]) is not int:
        raise RecordError("record has an unknown format")
    if rows[0] != RECORD_FORMAT:
        raise RecordError(f"record has an unknown format {rows[0]}")
    return [_unpack_version(row) for row in rows[1:]]


def _unpack_version(row: object) -> Version:
    # Every field is checked for its exact type: a converting constructor such
    # as bytes(n) or int(x) would turn damage into an allocation of n bytes,
    # an OverflowError, or a plausible but wrong value.
    if not isinstance(row, list) or len(row) != _ROW_FIELDS:
        raise RecordError("malformed version in record: not a row of 8 fields")
    value, wall, logical, node, counter, flat, expires, tombstone = row
    if not (
        type(value) is bytes
        and type(wall) is int
        and wall >= 0
        and type(logical) is int
        and logical >= 0
        and type(node) is str
        and type(counter) is int
        and counter >= 1
        and type(flat) is list
        and type(expires) is int
        and expires >= 0
        and type(tombstone) is bool
    ):
        raise RecordError("malformed version in record: a field has the wrong type")
    try:
        context = vv_from_flat(flat) if flat else _NO_CONTEXT
    except ValueError as exc:
        raise RecordError(f"malformed version in record: {exc}") from exc
    return Version(
        value=value,
        hlc=HlcTimestamp(wall, logical),
        dot=Dot(node, counter),
        context=context,
        expires_at_ms=expires,
        tombstone=tombstone,
    )


def record_expiry(versions: Sequence[Version]) -> int:
    """When the whole record can be reclaimed: its last expiry, or 0 (never)."""
    if len(versions) == 1:
        return versions[0].expires_at_ms
    if any(v.expires_at_ms == 0 for v in versions):
        return 0
    return max(v.expires_at_ms for v in versions)
