"""Consistent hashing: where a key lives on the ring.

Theory of operation (Dynamo §4.2; Karger et al., "Consistent Hashing and
Random Trees", STOC 1997). A key's *token* is the first 8 bytes of its
blake2b digest, read as a big-endian unsigned 64-bit integer: the key's
position on a ring of 2**64 points. Storage engines keep keys in token order,
so a SCAN cursor is a token (it walks the ring, and later the whole cluster,
in order) and a range that moves between nodes is a contiguous scan.

Each member owns ``tokens_per_weight * weight`` *virtual nodes* (vnodes).
Vnode ``i`` of node ``X`` sits at ``key_token(f"{X}#{i}".encode())``, i.e.
``blake2b(f"{X}#{i}".encode("utf-8"), digest_size=8)`` read big-endian: the
same function as a key's token, so it is identical in every process and on
every machine. The name is injective (``i`` is decimal digits after the
*last* ``#``), and raising a weight from w to w' keeps vnodes ``0..64w-1``
and only adds new ones, so a weight change moves the least data possible.

A key belongs to the first vnode clockwise from it: the first vnode whose
token is ``>=`` the key's token, wrapping past ``TOKEN_MAX`` to the smallest
vnode; so a vnode at token ``v`` owns the arc ``(previous vnode, v]``. The
*ring walk* from a token lists every member once, in the order their first
vnode is met clockwise. Adding a node only inserts its vnodes, so a key's
walk changes only by the new node appearing in it: about ``1/(n+1)`` of the
keys get a new first replica, all of them the new node (Karger's
monotonicity), and nothing moves between old nodes.

The *preference list* (Dynamo §4.3) of N replicas is taken from the walk.
With no zones and no shared hosts it is the first N members of the walk.
When placement is declared it is chosen greedily, one replica at a time: the
next replica is the first member in walk order, among those not yet chosen,
of the best *tier*, where tiers rank (zone not yet used, host not yet used)
as: new zone and new host < new zone, used host < used zone, new host <
used zone, used host. Zone diversity comes first, host diversity second,
ring order third; it is Cassandra's NetworkTopologyStrategy rack rule (take
new racks first, then fill with the skipped nodes in ring order) with hosts
as a second level. An undeclared zone (``""``) is one zone shared by every
member without one; an undeclared host (``""``) is a host of its own. The
greedy rule never looks at a member it does not choose, so a member added to
the ring changes a preference list only by entering it.

Fallback nodes for a sloppy quorum (Dynamo §4.6) are the rest of the walk, in
walk order. Failure detection never changes the ring; only a committed
membership change does, and each committed ring has an ``epoch``.
Built-in ``hash()`` is never used: it differs between processes.

Every message about a key asks for its preference list (the proposer, then
each acceptor checking it is a home), so each ``Ring`` memoizes them: all the
keys of one arc share a list, and a ring's lists never change, so the memo is
keyed by (first vnode, replica count) and lives inside the immutable ring.
A ring change builds a new ``Ring`` with an empty memo: no list of another
ring can ever be served.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from hashlib import blake2b
from itertools import chain, pairwise

__all__ = [
    "ring_epoch",
    "TOKEN_BITS",
    "TOKEN_MAX",
    "PREFERENCE_MEMO_MAX",
    "TOKENS_PER_WEIGHT_DEFAULT",
    "VNODES_MAX",
    "Member",
    "RangeMove",
    "Ring",
    "RingError",
    "arc_end",
    "build_ring",
    "fallback_order",
    "key_token",
    "owned_tokens",
    "ownership",
    "preference_list",
    "ranges_moved",
    "ring_walk",
    "vnode_token",
]

TOKEN_BITS = 64
TOKEN_MAX = 2**TOKEN_BITS - 1
_TOKEN_SPACE = 2**TOKEN_BITS

# 64 vnodes per unit of weight keeps a node's share within about +-12.5%
# (one standard deviation, ~1/sqrt(64)) of its fair share; Cassandra used 256
# and now defaults to 16 with a smarter allocator.
TOKENS_PER_WEIGHT_DEFAULT = 64
# A limit on everything (STYLE.md rule 8): 2**18 vnodes is 4096 nodes of
# weight 1 at the default density, and builds in well under a second.
VNODES_MAX = 2**18
# Preference lists memoized per ring (one per arc and replica count in use):
# every arc of a ring of up to 64 nodes at the default density, for 4 counts.
# Past it the oldest entry is dropped (a memo: it is computed again).
PREFERENCE_MEMO_MAX = 2**14


class RingError(ValueError):
    """A ring or a ring query was described wrongly (bad member, epoch, n, token)."""


def key_token(key: bytes) -> int:
    """The key's position on the ring, in [0, 2**64)."""
    return int.from_bytes(blake2b(key, digest_size=8).digest(), "big")


def vnode_token(node_id: str, index: int) -> int:
    """The token of vnode ``index`` of ``node_id``: ``key_token(f"{node_id}#{index}")``."""
    return key_token(f"{node_id}#{index}".encode())


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """One node of the ring. ``zone`` and ``host`` are ``""`` when undeclared."""

    node_id: str
    weight: int = 1
    zone: str = ""
    host: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.node_id, str) or not self.node_id:
            raise RingError(f"node id must be a non-empty string, got {self.node_id!r}")
        if not isinstance(self.weight, int) or isinstance(self.weight, bool) or self.weight < 1:
            raise RingError(
                f"weight of {self.node_id!r} must be an integer >= 1, got {self.weight!r}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Ring:
    """An immutable ring: its epoch, members (sorted by node id) and vnodes.

    Two rings are equal when epoch, members and ``tokens_per_weight`` are; all
    other fields are derived from those in ``__post_init__``. Prefer
    ``build_ring``, which accepts members in any order.
    """

    epoch: int
    members: tuple[Member, ...]
    tokens_per_weight: int = TOKENS_PER_WEIGHT_DEFAULT
    # Derived. vnode j sits at vnode_tokens[j] and belongs to members[vnode_owners[j]].
    node_ids: tuple[str, ...] = field(init=False, repr=False, compare=False)
    vnode_tokens: tuple[int, ...] = field(init=False, repr=False, compare=False)
    vnode_owners: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _zone_ids: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _host_ids: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _zone_count: int = field(init=False, repr=False, compare=False)
    _host_count: int = field(init=False, repr=False, compare=False)
    # (first vnode, replica count) -> preference list; see preference_list.
    _preference_memo: dict[tuple[int, int], tuple[str, ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for member in self.members:
            if not isinstance(member, Member):
                raise RingError(f"ring members must be Member values, got {member!r}")
        members = tuple(sorted(self.members, key=lambda m: m.node_id))
        _validate(self.epoch, members, self.tokens_per_weight)
        node_ids = tuple(m.node_id for m in members)
        vnodes = sorted(
            (vnode_token(m.node_id, i), owner)
            for owner, m in enumerate(members)
            for i in range(self.tokens_per_weight * m.weight)
        )
        zone_ids = _dense_ids([(True, m.zone) for m in members])
        # An undeclared host is the member's own: keyed by node id, apart from declared hosts.
        host_ids = _dense_ids([(bool(m.host), m.host or m.node_id) for m in members])
        setattr_ = object.__setattr__
        setattr_(self, "members", members)
        setattr_(self, "node_ids", node_ids)
        setattr_(self, "vnode_tokens", tuple(token for token, _ in vnodes))
        setattr_(self, "vnode_owners", tuple(owner for _, owner in vnodes))
        setattr_(self, "_zone_ids", zone_ids)
        setattr_(self, "_host_ids", host_ids)
        setattr_(self, "_zone_count", max(zone_ids) + 1)
        setattr_(self, "_host_count", max(host_ids) + 1)
        setattr_(self, "_preference_memo", {})

    @property
    def placement_aware(self) -> bool:
        """True when zones or shared hosts make the preference list differ from the walk."""
        return self._zone_count > 1 or self._host_count < len(self.members)

    def member(self, node_id: str) -> Member:
        """The member with this id; ``KeyError`` when it is not on the ring."""
        index = bisect_left(self.node_ids, node_id)
        if index == len(self.node_ids) or self.node_ids[index] != node_id:
            raise KeyError(node_id)
        return self.members[index]

    def vnodes(self) -> tuple[tuple[int, str], ...]:
        """Every vnode as ``(token, node_id)``, in token order (for the dashboard)."""
        return tuple(
            (token, self.node_ids[owner])
            for token, owner in zip(self.vnode_tokens, self.vnode_owners, strict=True)
        )


def _validate(epoch: int, members: tuple[Member, ...], tokens_per_weight: int) -> None:
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise RingError(f"epoch must be an integer >= 0, got {epoch!r}")
    if not isinstance(tokens_per_weight, int) or tokens_per_weight < 1:
        raise RingError(f"tokens_per_weight must be an integer >= 1, got {tokens_per_weight!r}")
    if not members:
        raise RingError("a ring needs at least one member")
    for before, after in pairwise(members):
        if before.node_id == after.node_id:
            raise RingError(f"node id {after.node_id!r} appears twice")
    vnode_count = tokens_per_weight * sum(m.weight for m in members)
    if vnode_count > VNODES_MAX:
        raise RingError(f"{vnode_count} vnodes is over the limit of {VNODES_MAX}")


def _dense_ids(labels: list[tuple[bool, str]]) -> tuple[int, ...]:
    """Number labels 0, 1, 2... in order of first appearance (deterministic, no sets)."""
    ids: dict[tuple[bool, str], int] = {}
    return tuple(ids.setdefault(label, len(ids)) for label in labels)


def ring_epoch(members: Iterable[Member]) -> int:
    """A deterministic epoch for a member set: every node that knows the same
    members (ids, weights, zones, hosts) computes the same ring and the same
    epoch, and a different set gives a different one (a 48-bit digest)."""
    rows = sorted((m.node_id, m.weight, m.zone, m.host) for m in members)
    digest = blake2b(repr(rows).encode(), digest_size=6).digest()
    return int.from_bytes(digest, "big")


def build_ring(
    members: Iterable[Member], epoch: int, tokens_per_weight: int = TOKENS_PER_WEIGHT_DEFAULT
) -> Ring:
    """A ring of these members (any order) at this epoch; ``RingError`` if invalid."""
    return Ring(epoch=epoch, members=tuple(members), tokens_per_weight=tokens_per_weight)


def _first_vnode(ring: Ring, token: int) -> int:
    """Index of the first vnode clockwise from ``token`` (``>=``, wrapping)."""
    if not isinstance(token, int) or not 0 <= token <= TOKEN_MAX:
        raise RingError(f"token must be an integer in [0, {TOKEN_MAX}], got {token!r}")
    index = bisect_left(ring.vnode_tokens, token)
    return 0 if index == len(ring.vnode_tokens) else index


def _distinct_owners(ring: Ring, start: int) -> Iterator[int]:
    """Member indexes in the order their first vnode is met clockwise from vnode ``start``."""
    owners = ring.vnode_owners
    remaining = len(ring.members)
    seen = [False] * remaining
    for vnode in chain(range(start, len(owners)), range(start)):
        owner = owners[vnode]
        if not seen[owner]:
            seen[owner] = True
            yield owner
            remaining -= 1
            if remaining == 0:
                return


def _walk_indexes(ring: Ring, start: int, limit: int) -> list[int]:
    """The first ``limit`` of ``_distinct_owners``: a plain loop, twice as fast on the hot path."""
    owners = ring.vnode_owners
    seen = [False] * len(ring.members)
    walk: list[int] = []
    for vnode in chain(range(start, len(owners)), range(start)):
        owner = owners[vnode]
        if not seen[owner]:
            seen[owner] = True
            walk.append(owner)
            if len(walk) == limit:
                break
    return walk


def ring_walk(ring: Ring, token: int) -> tuple[str, ...]:
    """Every member once, clockwise from ``token``, ignoring zones and hosts."""
    start = _first_vnode(ring, token)
    return tuple(ring.node_ids[i] for i in _walk_indexes(ring, start, len(ring.members)))


def _placed_indexes(ring: Ring, start: int, count: int) -> list[int]:
    """The zone- then host-diverse greedy choice of ``count`` members (module docstring)."""
    walk = _distinct_owners(ring, start)
    candidates: list[int] = []  # walked so far and not chosen, in walk order
    chosen: list[int] = []
    used_zones: set[int] = set()  # membership tests only; never iterated
    used_hosts: set[int] = set()
    while len(chosen) < count:
        # No remaining member can have a better tier than this floor.
        floor = 2 * (len(used_zones) == ring._zone_count) + (len(used_hosts) == ring._host_count)
        best_position, best_tier, position = -1, 4, 0
        while True:
            if position == len(candidates):
                following = next(walk, None)
                if following is None:
                    break
                candidates.append(following)
            member = candidates[position]
            tier = 2 * (ring._zone_ids[member] in used_zones) + (
                ring._host_ids[member] in used_hosts
            )
            if tier < best_tier:
                best_position, best_tier = position, tier
                if tier == floor:
                    break
            position += 1
        assert best_position >= 0, (count, chosen)
        member = candidates.pop(best_position)
        chosen.append(member)
        used_zones.add(ring._zone_ids[member])
        used_hosts.add(ring._host_ids[member])
    return chosen


def preference_list(ring: Ring, key_token_value: int, n: int) -> tuple[str, ...]:
    """The ``min(n, members)`` home replicas of a key at this token, in priority order.

    Without zones or shared hosts: the first n members of ``ring_walk``. With
    them: the greedy zone-first, host-second choice described in the module
    docstring.
    """
    if not isinstance(n, int) or n < 1:
        raise RingError(f"replica count n must be an integer >= 1, got {n!r}")
    start = _first_vnode(ring, key_token_value)
    count = min(n, len(ring.members))
    memo = ring._preference_memo
    found = memo.get((start, count))
    if found is not None:
        return found
    if ring.placement_aware:
        chosen = _placed_indexes(ring, start, count)
    else:
        chosen = _walk_indexes(ring, start, count)
    homes = tuple(ring.node_ids[i] for i in chosen)
    if len(memo) >= PREFERENCE_MEMO_MAX:
        del memo[next(iter(memo))]  # the oldest
    memo[(start, count)] = homes
    return homes


def fallback_order(ring: Ring, key_token_value: int, n: int) -> tuple[str, ...]:
    """The members outside the preference list, in ring-walk order (sloppy quorum)."""
    home = preference_list(ring, key_token_value, n)
    return tuple(node for node in ring_walk(ring, key_token_value) if node not in home)


def arc_end(ring: Ring, token: int) -> int:
    """The last token of the arc that holds ``token``, in linear token order.

    Keys from ``token`` up to this token share one preference list. The arc
    of vnode 0 wraps past ``TOKEN_MAX``; its high part ends at ``TOKEN_MAX``
    here, so that a walk of the token space in order never wraps.
    """
    index = bisect_left(ring.vnode_tokens, token)
    return TOKEN_MAX if index == len(ring.vnode_tokens) else ring.vnode_tokens[index]


def owned_tokens(ring: Ring) -> dict[str, int]:
    """How many of the 2**64 tokens each member owns as first replica (sums to 2**64)."""
    owned = [0] * len(ring.members)
    tokens = ring.vnode_tokens
    previous = tokens[-1] - _TOKEN_SPACE  # the arc of vnode 0 wraps past TOKEN_MAX
    for token, owner in zip(tokens, ring.vnode_owners, strict=True):
        owned[owner] += token - previous
        previous = token
    return dict(zip(ring.node_ids, owned, strict=True))


def ownership(ring: Ring) -> dict[str, float]:
    """Each member's share of the token space as first replica (``ring_share``; sums to 1)."""
    return {node: count / _TOKEN_SPACE for node, count in owned_tokens(ring).items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class RangeMove:
    """Tokens in ``(start_exclusive, end_inclusive]`` whose replicas change.

    The range wraps past ``TOKEN_MAX`` when ``start_exclusive >= end_inclusive``;
    it is the whole ring when they are equal.
    """

    start_exclusive: int
    end_inclusive: int
    old_replicas: tuple[str, ...]
    new_replicas: tuple[str, ...]

    def contains(self, token: int) -> bool:
        start, end = self.start_exclusive, self.end_inclusive
        if start < end:
            return start < token <= end
        return token > start or token <= end


def ranges_moved(old_ring: Ring, new_ring: Ring, n: int) -> tuple[RangeMove, ...]:
    """The token ranges whose n-replica preference list differs between two rings.

    Between two consecutive vnode tokens of either ring a key's preference list
    is constant in both, so it is enough to compare the lists at each vnode
    token; adjacent ranges with the same change are merged (across the wrap too).
    """
    bounds = sorted(set(old_ring.vnode_tokens) | set(new_ring.vnode_tokens))
    moves: list[RangeMove] = []
    previous = bounds[-1]
    for bound in bounds:
        old = preference_list(old_ring, bound, n)
        new = preference_list(new_ring, bound, n)
        if old != new:
            last = moves[-1] if moves else None
            if (
                last is not None
                and last.end_inclusive == previous
                and (last.old_replicas, last.new_replicas) == (old, new)
            ):
                moves[-1] = RangeMove(
                    start_exclusive=last.start_exclusive,
                    end_inclusive=bound,
                    old_replicas=old,
                    new_replicas=new,
                )
            else:
                moves.append(
                    RangeMove(
                        start_exclusive=previous,
                        end_inclusive=bound,
                        old_replicas=old,
                        new_replicas=new,
                    )
                )
        previous = bound
    return _merge_wrap(moves)


def _merge_wrap(moves: list[RangeMove]) -> tuple[RangeMove, ...]:
    """Join the last range to the first when they meet at the wrap with the same change."""
    if len(moves) < 2:
        return tuple(moves)
    first, last = moves[0], moves[-1]
    if first.start_exclusive == last.end_inclusive and (first.old_replicas, first.new_replicas) == (
        last.old_replicas,
        last.new_replicas,
    ):
        joined = RangeMove(
            start_exclusive=last.start_exclusive,
            end_inclusive=first.end_inclusive,
            old_replicas=first.old_replicas,
            new_replicas=first.new_replicas,
        )
        return (joined, *moves[1:-1])
    return tuple(moves)
