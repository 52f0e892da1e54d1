"""Cluster-wide SCAN, KEYS and DBSIZE: a walk of the token space.

Storage engines keep keys in ring-token order (core/ring.py), so a position in
a walk of the whole keyspace is a token, and a token means the same thing on
every node and across ring changes. The cursor a client sees is that token
(0 starts a walk, and a reply's cursor is 0 when it is complete), so it stays
valid when nodes join, leave or die between two SCAN calls.

One step of the walk, from cursor ``c``: every key in the arc that holds ``c``
has the same home replicas; the coordinator picks one of them (itself when it
is one, else the first it does not suspect) and asks it for the live keys
from ``c`` to the arc's end (``RangeScan``), merging the following arcs that
the same replica would answer for. The replica answers with at most about
``count`` keys and where to continue. A replica that does not answer within
``replica_timeout_ms`` is suspected and the step goes to the next home
replica; when no home replica of an arc answers, the request fails with a
definite ``UNAVAILABLE`` (a listing changes nothing).

So each key is listed by one replica, like a read at ``one``: a key whose
write has not reached that replica yet (a hint still to be delivered) is
missed until it does. As with Redis's SCAN, a key present for the whole walk
is returned at least once; one added or removed meanwhile may or may not be.
KEYS and DBSIZE walk the whole space in steps of ``LISTING_STEP_KEYS``, so one
step's work and message stay bounded however large the keyspace is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ringkv.core import messages as msg
from ringkv.core.coordinator import PENDING
from ringkv.core.errors import ErrorKind, OpError
from ringkv.core.parts import NodeParts
from ringkv.core.record import RecordError, live_versions, unpack_record
from ringkv.core.requests import Count, Scan, ScanResult
from ringkv.core.ring import TOKEN_MAX, arc_end, preference_list

if TYPE_CHECKING:
    from ringkv.storage.base import Table

__all__ = ["LISTING_STEP_KEYS", "Listing", "PendingListing", "from_wire", "to_wire"]

LISTING_STEP_KEYS = 5_000  # keys per step of KEYS / DBSIZE
_ARCS_PER_STEP = 256  # arcs merged into one step at most
_WIRE_SHIFT = 2**63


def to_wire(token: int) -> int:
    """A token in [0, 2**64) as the signed 64-bit integer the codec carries."""
    return token - _WIRE_SHIFT


def from_wire(value: int) -> int:
    return value + _WIRE_SHIFT


@dataclass(slots=True)
class PendingListing:
    """A SCAN step, KEYS or DBSIZE this node coordinates."""

    token: object
    keyspace: str
    cursor: int  # where the walk is
    wanted: int  # SCAN: about this many keys; KEYS / DBSIZE: 0 (the whole space)
    count_only: bool
    keys: list[bytes] = field(default_factory=list)
    counted: int = 0
    # The step in flight.
    target: str = ""
    end: int = 0
    deadline_ms: int = 0
    tried: set[str] = field(default_factory=set)  # replicas that failed this step


class Listing(NodeParts):
    """The cluster listing half of ``Node`` (a mixin; see the module docstring)."""

    _listings: dict[int, PendingListing]  # req_id of the step in flight -> listing

    # -- coordinator ------------------------------------------------------------

    def _start_listing(self, request: Scan | Count, token: object, now_ms: int) -> object:
        table = self._table_or_error(request.keyspace)
        if isinstance(table, OpError):
            return table
        busy = self._busy()
        if busy is not None:
            return busy
        if isinstance(request, Count):
            listing = PendingListing(token, request.keyspace, 0, 0, count_only=True)
        elif request.unbounded:
            listing = PendingListing(token, request.keyspace, 0, 0, count_only=False)
        else:
            wanted = max(1, min(request.count, self.config.scan_count_max))
            listing = PendingListing(token, request.keyspace, request.cursor, wanted, False)
        return self._next_step(listing, now_ms)

    def _next_step(self, listing: PendingListing, now_ms: int) -> object:
        """Run steps here while this node can answer them; send the first one it
        cannot; return the result once the walk (or the SCAN call) is done."""
        n = self.keyspaces[listing.keyspace].effective_n(self.cluster_size)
        me = self.config.node_id
        while True:
            if listing.wanted and len(listing.keys) >= listing.wanted:
                return ScanResult(listing.keys, listing.cursor)
            replica = self._pick_replica(listing, n, now_ms)
            if replica is None:
                return OpError(
                    ErrorKind.UNAVAILABLE,
                    f"no replica of the keys at token {listing.cursor} answered; "
                    "retry once the cluster has healed",
                    code="UNAVAILABLE",
                )
            end = self._step_end(listing, replica, n, now_ms)
            step = listing.wanted - len(listing.keys) if listing.wanted else LISTING_STEP_KEYS
            if replica == me:
                keys, counted, resume = self._list_range(
                    self._table(listing.keyspace),
                    listing.cursor,
                    end,
                    step,
                    listing.count_only,
                    now_ms,
                )
                if self._advance(listing, keys, counted, resume, end):
                    return self._finish(listing)
                continue
            req_id = self._new_id()
            listing.target, listing.end = replica, end
            listing.deadline_ms = now_ms + self.config.replica_timeout_ms
            self._listings[req_id] = listing
            self._messages.append(
                (
                    replica,
                    msg.RangeScan(
                        src=me,
                        req_id=req_id,
                        ring_epoch=self.ring.epoch,
                        keyspace=listing.keyspace,
                        start=to_wire(listing.cursor),
                        end=to_wire(end),
                        count=step,
                        count_only=listing.count_only,
                    ),
                )
            )
            return PENDING

    def _pick_replica(self, listing: PendingListing, n: int, now_ms: int) -> str | None:
        homes = preference_list(self.ring, listing.cursor, n)
        me = self.config.node_id
        if me in homes and me not in listing.tried:
            return me
        for home in homes:
            if home not in listing.tried and not self._suspected(home, now_ms):
                return home
        return None

    def _step_end(self, listing: PendingListing, replica: str, n: int, now_ms: int) -> int:
        """The end of the cursor's arc, extended over the following arcs that
        the same replica would be asked for."""
        end = arc_end(self.ring, listing.cursor)
        for _ in range(_ARCS_PER_STEP):
            if end == TOKEN_MAX:
                break
            following = PendingListing(None, listing.keyspace, end + 1, 0, False)
            following.tried = listing.tried
            if self._pick_replica(following, n, now_ms) != replica:
                break
            end = arc_end(self.ring, end + 1)
        return end

    def _advance(
        self,
        listing: PendingListing,
        keys: list[bytes],
        counted: int,
        resume: int | None,
        end: int,
    ) -> bool:
        """Take one step's answer; True when the walk is complete."""
        listing.keys.extend(keys)
        listing.counted += counted
        listing.tried = set()
        if resume is not None:
            listing.cursor = resume
            return False
        if end == TOKEN_MAX:
            listing.cursor = 0
            return True
        listing.cursor = end + 1
        return False

    def _finish(self, listing: PendingListing) -> object:
        if listing.count_only:
            return listing.counted
        return ScanResult(listing.keys, 0)

    def _on_range_scan_reply(self, m: msg.RangeScanReply, now_ms: int) -> None:
        listing = self._listings.get(m.req_id)
        if listing is None or listing.target != m.src:
            return
        del self._listings[m.req_id]
        if not m.ok:
            listing.tried.add(m.src)
            self._continue(listing, now_ms)
            return
        resume = None if m.done else from_wire(m.next)
        if resume is not None and not listing.cursor < resume <= listing.end:
            # A replica may not send the walk backwards or past the step: ask another.
            listing.tried.add(m.src)
            self._continue(listing, now_ms)
            return
        if self._advance(listing, list(m.keys), m.counted, resume, listing.end):
            self._resolve(listing.token, self._finish(listing))
            return
        self._continue(listing, now_ms)

    def _continue(self, listing: PendingListing, now_ms: int) -> None:
        result = self._next_step(listing, now_ms)
        if result is not PENDING:
            self._resolve(listing.token, result)

    def _tick_listings(self, now_ms: int) -> None:
        for req_id, listing in list(self._listings.items()):
            if now_ms >= listing.deadline_ms:
                del self._listings[req_id]
                self._suspect(listing.target, now_ms)
                listing.tried.add(listing.target)
                self._continue(listing, now_ms)

    # -- replica ----------------------------------------------------------------

    def _on_range_scan(self, m: msg.RangeScan, now_ms: int) -> None:
        me = self.config.node_id
        start, end = from_wire(m.start), from_wire(m.end)
        error = ""
        if m.ring_epoch != self.ring.epoch:
            error = f"ring epoch {m.ring_epoch} is not this node's ({self.ring.epoch})"
        elif m.keyspace not in self.keyspaces:
            error = f"no keyspace {m.keyspace!r} on this node"
        elif not 0 <= start <= end <= TOKEN_MAX or m.count < 1:
            error = "malformed range"
        if error:
            reply = msg.RangeScanReply(src=me, req_id=m.req_id, ok=False, keys=[], error=error)
        else:
            count = min(m.count, LISTING_STEP_KEYS)
            keys, counted, resume = self._list_range(
                self._table(m.keyspace), start, end, count, m.count_only, now_ms
            )
            reply = msg.RangeScanReply(
                src=me,
                req_id=m.req_id,
                ok=True,
                keys=keys,
                counted=counted,
                done=resume is None,
                next=to_wire(resume) if resume is not None else 0,
            )
        # After commit, like every read: never report a write that is not durable yet.
        self._after_commit.append((m.src, reply))

    def _list_range(
        self, table: Table, start: int, end: int, count: int, count_only: bool, now_ms: int
    ) -> tuple[list[bytes], int, int | None]:
        """The live keys in ``[start, end]`` from ``start``, about ``count`` of
        them, and the token to resume at (None: the range is done)."""
        keys, resume = table.scan(start, count, end)
        found: list[bytes] = []
        counted = 0
        for key in keys:
            raw = table.get(key)
            if raw is None:
                continue
            try:
                live = live_versions(unpack_record(raw), now_ms)
            except RecordError:
                continue  # a damaged record is the read path's to report
            if live:
                counted += 1
                if not count_only:
                    found.append(key)
        return found, counted, resume or None
