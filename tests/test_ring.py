"""The ring: vnode placement, preference lists, zones and hosts, ownership, movement.

Tiny rings use one token per weight so the tests can compute every vnode's
token (``vnode_token``) and say exactly which node owns which arc. With one
vnode each, the single-letter nodes below sit on the ring in this order:

    d (0.220)  e (0.319)  f (0.572)  a (0.669)  b (0.684)  c (0.754)

(fractions of 2**64); the known-answer test pins these positions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from hashlib import blake2b
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringkv.core import ring as ring_module
from ringkv.core.ring import (
    TOKEN_MAX,
    VNODES_MAX,
    Member,
    RangeMove,
    Ring,
    RingError,
    build_ring,
    fallback_order,
    key_token,
    owned_tokens,
    ownership,
    preference_list,
    ranges_moved,
    ring_walk,
    vnode_token,
)

A, B, C, D, E, F = (vnode_token(name, 0) for name in "abcdef")


def tiny(*specs: str | Member, epoch: int = 1) -> Ring:
    """A ring with one vnode per member; a str is a member with just that id."""
    members = [Member(node_id=s) if isinstance(s, str) else s for s in specs]
    return build_ring(members, epoch, tokens_per_weight=1)


def m(node_id: str, zone: str = "", host: str = "", weight: int = 1) -> Member:
    return Member(node_id=node_id, zone=zone, host=host, weight=weight)


def every_arc(ring: Ring) -> list[int]:
    """One token per arc: the list is constant on each arc (prev, v], so these cover every key."""
    return list(ring.vnode_tokens)


# --- determinism and the vnode formula --------------------------------------


def test_vnode_formula_known_answers() -> None:
    # A change here moves every key in every deployed cluster: never edit these numbers.
    assert vnode_token("n1", 0) == 3644195303879665199
    assert vnode_token("n1", 1) == 2848453797457399378
    assert vnode_token("n1", 0) == int.from_bytes(blake2b(b"n1#0", digest_size=8).digest(), "big")
    assert tuple(sorted((A, B, C, D, E, F))) == (D, E, F, A, B, C)
    assert preference_list(five_nodes(), key_token(b"hello"), 3) == ("n5", "n2", "n1")


def five_nodes() -> Ring:
    return build_ring([Member(node_id=f"n{i}") for i in range(1, 6)], epoch=1)


def test_same_inputs_same_ring_in_any_member_order() -> None:
    members = [m("b", zone="z2"), m("a", zone="z1", weight=2), m("c", host="h")]
    one = build_ring(members, 3)
    other = build_ring(list(reversed(members)), 3)
    assert one == other
    assert one.vnode_tokens == other.vnode_tokens
    assert one.vnode_owners == other.vnode_owners
    assert one.node_ids == ("a", "b", "c")
    assert [x.node_id for x in one.members] == ["a", "b", "c"]
    assert len(one.vnode_tokens) == 64 * 4
    assert list(one.vnode_tokens) == sorted(one.vnode_tokens)
    assert one != build_ring(members, 4)  # the epoch is part of a ring's identity


def test_vnodes_of_a_member_are_its_formula_tokens() -> None:
    ring = build_ring([m("x", weight=2), m("y")], 0, tokens_per_weight=3)
    by_node: dict[str, list[int]] = {}
    for token, node in ring.vnodes():
        by_node.setdefault(node, []).append(token)
    assert sorted(by_node["x"]) == sorted(vnode_token("x", i) for i in range(6))
    assert sorted(by_node["y"]) == sorted(vnode_token("y", i) for i in range(3))


def test_raising_a_weight_only_adds_vnodes() -> None:
    light = build_ring([m("x"), m("y")], 0)
    heavy = build_ring([m("x", weight=3), m("y")], 1)
    assert set(light.vnodes()) < set(heavy.vnodes())


_SCRIPT = """
import json
from ringkv.core.ring import Member, build_ring, key_token, preference_list, ranges_moved
members = [Member(node_id=f"n{i}", zone=f"z{i % 3}", host=f"h{i % 4}") for i in range(8)]
ring = build_ring(members, 1)
lists = [preference_list(ring, key_token(f"k{i}".encode()), 3) for i in range(500)]
moved = ranges_moved(build_ring(members[:7], 0), ring, 3)
print(json.dumps([lists, [[r.start_exclusive, r.end_inclusive] for r in moved]]))
"""


def test_same_answers_in_processes_with_different_hash_seeds() -> None:
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, check=True
        )
        outputs.append(json.loads(done.stdout))
    assert outputs[0] == outputs[1]


# --- validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: build_ring([], 0), "at least one member"),
        (lambda: build_ring([m("a"), m("b"), m("a", zone="z")], 0), "appears twice"),
        (lambda: build_ring([m("a")], -1), "epoch"),
        (lambda: build_ring([m("a")], 0, tokens_per_weight=0), "tokens_per_weight"),
        (lambda: build_ring([m("a", weight=5000)], 0), "over the limit"),
        (lambda: build_ring(["a"], 0), "Member values"),  # type: ignore[list-item]
        (lambda: Ring(epoch=0, members=()), "at least one member"),
        (lambda: Member(node_id="a", weight=0), "weight"),
        (lambda: Member(node_id="a", weight=-2), "weight"),
        (lambda: Member(node_id="a", weight=True), "weight"),
        (lambda: Member(node_id="a", weight=1.5), "weight"),  # type: ignore[arg-type]
        (lambda: Member(node_id=""), "node id"),
        (lambda: preference_list(tiny("a"), 5, 0), "replica count"),
        (lambda: preference_list(tiny("a"), -1, 1), "token"),
        (lambda: preference_list(tiny("a"), TOKEN_MAX + 1, 1), "token"),
        (lambda: ring_walk(tiny("a"), -1), "token"),
    ],
)
def test_invalid_input_raises_ring_error(make: object, message: str) -> None:
    with pytest.raises(RingError, match=message) as caught:
        make()  # type: ignore[operator]
    assert isinstance(caught.value, ValueError)


def test_vnode_limit_is_inclusive() -> None:
    assert len(build_ring([m("a", weight=VNODES_MAX // 64)], 0).vnode_tokens) == VNODES_MAX


def test_member_lookup() -> None:
    ring = tiny(m("a", zone="z1"), "b")
    assert ring.member("a").zone == "z1"
    with pytest.raises(KeyError):
        ring.member("zz")


# --- preference lists on hand-made rings -------------------------------------

# (key token, n, expected preference list) on the ring d e f a b c.
PLAIN_CASES = [
    (0, 1, ("d",)),
    (0, 3, ("d", "e", "f")),
    (D, 2, ("d", "e")),  # a token equal to a vnode's belongs to that vnode
    (D + 1, 2, ("e", "f")),
    (F + 1, 3, ("a", "b", "c")),
    (B, 3, ("b", "c", "d")),  # wraps past TOKEN_MAX
    (C, 2, ("c", "d")),
    (C + 1, 2, ("d", "e")),  # past the last vnode: the first vnode
    (TOKEN_MAX, 1, ("d",)),
    (E, 6, ("e", "f", "a", "b", "c", "d")),
    (E, 9, ("e", "f", "a", "b", "c", "d")),  # n is capped at the member count
]


@pytest.mark.parametrize(("token", "n", "expected"), PLAIN_CASES)
def test_preference_list_plain(token: int, n: int, expected: tuple[str, ...]) -> None:
    ring = tiny("a", "b", "c", "d", "e", "f")
    assert preference_list(ring, token, n) == expected
    walk = ring_walk(ring, token)
    assert walk[: len(expected)] == expected
    assert expected + fallback_order(ring, token, n) == walk


def test_distinct_nodes_skip_a_nodes_other_vnodes() -> None:
    ring = build_ring([m("a"), m("b")], 0, tokens_per_weight=16)
    for token in every_arc(ring):
        assert sorted(preference_list(ring, token, 2)) == ["a", "b"]
        assert preference_list(ring, token, 3) == preference_list(ring, token, 2)
        assert fallback_order(ring, token, 2) == ()


def test_single_member_owns_everything() -> None:
    ring = tiny("a")
    assert preference_list(ring, 0, 3) == ("a",)
    assert preference_list(ring, TOKEN_MAX, 3) == ("a",)
    assert ring_walk(ring, 12345) == ("a",)
    assert owned_tokens(ring) == {"a": 2**64}
    assert ownership(ring) == {"a": 1.0}


# Zones and hosts on the ring d e f a b c (walk from token 0: d e f a b c).
# Tiers: new zone+new host < new zone, used host < used zone, new host < used zone+host.
ZONED = (m("d", "z1"), m("e", "z1"), m("f", "z2"), m("a", "z2"), m("b", "z3"), m("c", "z3"))
HOSTED = (m("d", host="h1"), m("e", host="h1"), m("f", host="h2"), m("a"), m("b"), m("c"))
ZONE_BEATS_HOST = (m("d", "z1", "h1"), m("e", "z1", "h2"), m("f", "z2", "h1"))
TWO_ZONES = (m("d", "z1"), m("e", "z1"), m("f", "z1"), m("a", "z2"), m("b", "z1"))
UNDECLARED_ZONE = (m("d", "z1"), m("e", "z1"), m("f"), m("a"), m("b", "z2"))
PLACED_CASES = [
    (ZONED, 0, 3, ("d", "f", "b")),  # one per zone, skipping e and a
    (ZONED, 0, 4, ("d", "f", "b", "e")),  # zones exhausted: the skipped, in ring order
    (ZONED, 0, 6, ("d", "f", "b", "e", "a", "c")),
    (ZONED, E, 3, ("e", "f", "b")),
    (ZONED, F + 1, 3, ("a", "b", "d")),  # wraps to find the third zone
    (HOSTED, 0, 2, ("d", "f")),  # e shares d's host
    (HOSTED, 0, 4, ("d", "f", "a", "b")),  # undeclared hosts are distinct
    (HOSTED, 0, 6, ("d", "f", "a", "b", "c", "e")),
    (ZONE_BEATS_HOST, 0, 2, ("d", "f")),  # f: new zone on a used host beats e: new host only
    (ZONE_BEATS_HOST, 0, 3, ("d", "f", "e")),
    (TWO_ZONES, 0, 3, ("d", "a", "e")),
    (TWO_ZONES, F + 1, 3, ("a", "b", "d")),
    (UNDECLARED_ZONE, 0, 3, ("d", "f", "b")),  # "" is one zone of its own
    (UNDECLARED_ZONE, 0, 4, ("d", "f", "b", "e")),
]


@pytest.mark.parametrize(("members", "token", "n", "expected"), PLACED_CASES)
def test_preference_list_with_zones_and_hosts(
    members: tuple[Member, ...], token: int, n: int, expected: tuple[str, ...]
) -> None:
    ring = tiny(*members)
    assert ring.placement_aware
    assert preference_list(ring, token, n) == expected
    fallbacks = fallback_order(ring, token, n)
    walk = ring_walk(ring, token)
    assert sorted(expected + fallbacks) == sorted(walk)
    assert fallbacks == tuple(node for node in walk if node not in expected)


def test_placement_is_off_when_nothing_is_declared() -> None:
    assert not tiny("a", "b", "c").placement_aware
    assert not tiny(m("a", "z"), m("b", "z"), m("c", "z", host="h")).placement_aware
    assert tiny(m("a", "z"), m("b", "z"), m("c")).placement_aware  # "" is another zone
    assert tiny(m("a", host="h"), m("b", host="h")).placement_aware
    assert not tiny(m("a"), m("b", host="a")).placement_aware  # a's undeclared host is not "a"


def _zones_and_hosts(ring: Ring, members: list[Member], n: int) -> set[tuple[int, int]]:
    by_id = {x.node_id: x for x in members}
    seen = set()
    for token in every_arc(ring):
        chosen = [by_id[node] for node in preference_list(ring, token, n)]
        seen.add((len({x.zone for x in chosen}), len({x.host or x.node_id for x in chosen})))
    return seen


@pytest.mark.parametrize(
    ("zones", "hosts", "nodes", "n", "expected"),
    [
        (3, 0, 9, 3, {(3, 3)}),  # 3 zones, n=3: every list spans 3 zones
        (2, 0, 5, 3, {(2, 3)}),  # 2 zones, n=3: both zones used
        (2, 0, 5, 2, {(2, 2)}),
        (0, 3, 6, 3, {(1, 3)}),  # 3 hosts: every list spans 3 hosts
        (0, 2, 6, 3, {(1, 2)}),  # 2 hosts: both used
        (3, 6, 12, 3, {(3, 3)}),  # hosts nested in zones
        (3, 6, 12, 4, {(3, 4)}),  # the 4th replica goes to a 4th host
        (3, 3, 12, 5, {(3, 3)}),
    ],
)
def test_every_key_spreads_over_zones_and_hosts(
    zones: int, hosts: int, nodes: int, n: int, expected: set[tuple[int, int]]
) -> None:
    # Node i is on host i % hosts, in zone (i % hosts) % zones when hosts are
    # declared (hosts nest in zones), else i % zones.
    members = []
    for i in range(nodes):
        host = f"h{i % hosts}" if hosts else ""
        zone_index = (i % hosts if hosts else i) % zones if zones else 0
        members.append(m(f"node{i}", f"z{zone_index}" if zones else "", host))
    ring = build_ring(members, 1)
    assert _zones_and_hosts(ring, members, n) == expected


def test_preference_list_grows_by_appending() -> None:
    ring = build_ring([m(f"n{i}", f"z{i % 3}", f"h{i % 5}") for i in range(10)], 1)
    for token in every_arc(ring)[::7]:
        lists = [preference_list(ring, token, n) for n in range(1, 11)]
        for shorter, longer in pairwise(lists):
            assert longer[: len(shorter)] == shorter


# --- ownership and weights ---------------------------------------------------


def test_ownership_of_a_tiny_ring_is_its_arcs() -> None:
    ring = tiny("a", "e")  # e owns (a, e] wrapping; a owns (e, a]
    assert owned_tokens(ring) == {"a": A - E, "e": E + 2**64 - A}
    assert ownership(ring)["a"] == pytest.approx((A - E) / 2**64)


@pytest.mark.parametrize("count", [1, 2, 5, 12])
def test_ownership_sums_to_one(count: int) -> None:
    ring = build_ring([m(f"n{i}", weight=1 + i % 3) for i in range(count)], 0)
    assert sum(owned_tokens(ring).values()) == 2**64
    assert sum(ownership(ring).values()) == pytest.approx(1.0, abs=1e-12)
    assert list(ownership(ring)) == list(ring.node_ids)


@pytest.mark.parametrize("cluster", ["n", "node-", "db", "10.0.0.", "ringkv-"])
def test_weight_two_owns_about_twice(cluster: str) -> None:
    # 4 nodes of weight 1 and one of weight 2: fair shares 1/6 and 2/6. A
    # node's share is about Beta(k, K-k) for k of K vnodes: relative standard
    # deviation ~ 1/sqrt(k), 8.8% for the heavy node's 128 vnodes. The bounds
    # are about 3.5 sigma, and these five rings are fixed, so they never flake.
    members = [m(f"{cluster}{i}") for i in range(4)] + [m(f"{cluster}heavy", weight=2)]
    share = ownership(build_ring(members, 0))
    heavy = share[f"{cluster}heavy"]
    light = [share[f"{cluster}{i}"] for i in range(4)]
    assert 0.7 * 2 / 6 <= heavy <= 1.3 * 2 / 6
    assert 1.4 <= heavy / (sum(light) / 4) <= 2.7


# --- adding a node: what moves -----------------------------------------------

KEY_TOKENS = [key_token(f"key:{i}".encode()) for i in range(20_000)]
node_ids = st.text(min_size=1, max_size=10)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(data=st.data(), size=st.integers(min_value=2, max_value=12))
def test_adding_a_node_moves_about_one_share_and_only_to_it(data: st.DataObject, size: int) -> None:
    ids = data.draw(st.lists(node_ids, min_size=size + 1, max_size=size + 1, unique=True))
    new_node = ids[-1]
    old = build_ring([Member(node_id=x) for x in ids[:-1]], 1)
    new = build_ring([Member(node_id=x) for x in ids], 2)

    moved = 0
    for token in KEY_TOKENS:
        before, after = preference_list(old, token, 1), preference_list(new, token, 1)
        if before != after:
            assert after == (new_node,)  # nothing moves between old nodes
            moved += 1
        old_list, new_list = preference_list(old, token, 3), preference_list(new, token, 3)
        if old_list != new_list:
            assert new_node in new_list
            # The others keep their order; the last old replica is the one pushed out.
            assert tuple(x for x in new_list if x != new_node) == old_list[: len(new_list) - 1]
    fraction = moved / len(KEY_TOKENS)
    fair = 1 / (size + 1)
    share = ownership(new)[new_node]
    # The new node's 64 of 64(n+1) vnodes give it a share ~ Beta(64, 64n): mean
    # 1/(n+1), relative sd <= 12.4%. [0.5, 1.6] x fair is >= 4 sd below and
    # >= 4.8 sd above (the Beta is right-skewed), a chance under 1e-5 per draw.
    assert 0.5 * fair <= share <= 1.6 * fair
    assert 0.5 * fair <= fraction <= 1.6 * fair
    # The keys that moved are a 20,000-key sample of the new node's share:
    # binomial sd <= 0.0035, so 5 sd is 0.018.
    assert abs(fraction - share) <= 0.018


zones = st.sampled_from(["", "z1", "z2", "z3"])
hosts = st.sampled_from(["", "h1", "h2", "h3", "h4"])
members_strategy = st.lists(
    st.builds(Member, node_id=node_ids, zone=zones, host=hosts, weight=st.integers(1, 3)),
    min_size=1,
    max_size=7,
    unique_by=lambda x: x.node_id,
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    members=members_strategy,
    extra=st.builds(Member, node_id=node_ids, zone=zones, host=hosts),
    n=st.integers(1, 5),
)
def test_added_node_changes_a_placed_list_only_by_entering_it(
    members: list[Member], extra: Member, n: int
) -> None:
    if extra.node_id in {x.node_id for x in members}:
        return
    old = build_ring(members, 1, tokens_per_weight=8)
    new = build_ring([*members, extra], 2, tokens_per_weight=8)
    for token in every_arc(new) + KEY_TOKENS[:200]:
        old_list, new_list = preference_list(old, token, n), preference_list(new, token, n)
        if old_list != new_list:
            assert extra.node_id in new_list
        assert sorted(new_list + fallback_order(new, token, n)) == sorted(new.node_ids)


# --- ranges_moved -------------------------------------------------------------


def test_ranges_moved_table() -> None:
    assert ranges_moved(tiny("d", "e", epoch=1), tiny("d", "e", epoch=2), 2) == ()
    # Adding a on d e f takes the arc (f, a] from d; with n=2 also (e, f] loses d.
    assert ranges_moved(tiny("d", "e", "f"), tiny("d", "e", "f", "a"), 1) == (
        RangeMove(start_exclusive=F, end_inclusive=A, old_replicas=("d",), new_replicas=("a",)),
    )
    assert ranges_moved(tiny("d", "e", "f"), tiny("d", "e", "f", "a"), 2) == (
        RangeMove(
            start_exclusive=E, end_inclusive=F, old_replicas=("f", "d"), new_replicas=("f", "a")
        ),
        RangeMove(
            start_exclusive=F, end_inclusive=A, old_replicas=("d", "e"), new_replicas=("a", "d")
        ),
    )
    # Replacing a by d and e: (e, d] wraps past TOKEN_MAX and is one range, not two.
    moved = ranges_moved(tiny("a"), tiny("d", "e"), 1)
    assert moved == (
        RangeMove(start_exclusive=E, end_inclusive=D, old_replicas=("a",), new_replicas=("d",)),
        RangeMove(start_exclusive=D, end_inclusive=E, old_replicas=("a",), new_replicas=("e",)),
    )
    assert [moved[0].contains(t) for t in (0, D, D + 1, E, E + 1, TOKEN_MAX)] == [
        True,
        True,
        False,
        False,
        True,
        True,
    ]
    # Every arc changes the same way: one range, the whole ring (start == end).
    whole = ranges_moved(tiny("a"), tiny("e"), 1)
    assert whole == (
        RangeMove(start_exclusive=A, end_inclusive=A, old_replicas=("a",), new_replicas=("e",)),
    )
    assert all(whole[0].contains(t) for t in (0, A, A + 1, TOKEN_MAX))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(old_members=members_strategy, new_members=members_strategy, n=st.integers(1, 4))
def test_ranges_moved_are_exactly_the_changed_keys(
    old_members: list[Member], new_members: list[Member], n: int
) -> None:
    old = build_ring(old_members, 1, tokens_per_weight=4)
    new = build_ring(new_members, 2, tokens_per_weight=4)
    moved = ranges_moved(old, new, n)
    bounds = sorted(set(old.vnode_tokens) | set(new.vnode_tokens))
    probes = {0, TOKEN_MAX, *bounds, *(min(b + 1, TOKEN_MAX) for b in bounds), *KEY_TOKENS[:100]}
    for token in sorted(probes):
        before, after = preference_list(old, token, n), preference_list(new, token, n)
        holding = [r for r in moved if r.contains(token)]
        if before == after:
            assert holding == []
        else:
            assert holding == [
                RangeMove(
                    start_exclusive=holding[0].start_exclusive,
                    end_inclusive=holding[0].end_inclusive,
                    old_replicas=before,
                    new_replicas=after,
                )
            ]
    for one, following in pairwise(moved):  # maximal: touching ranges differ
        if one.end_inclusive == following.start_exclusive:
            assert (one.old_replicas, one.new_replicas) != (
                following.old_replicas,
                following.new_replicas,
            )


# --- the memo of preference lists ----------------------------------------------


@settings(max_examples=60, deadline=None, derandomize=True)
@given(members=members_strategy, n=st.integers(1, 5), data=st.data())
def test_memoized_lists_are_the_computed_ones(
    members: list[Member], n: int, data: st.DataObject
) -> None:
    ring = build_ring(members, 1, tokens_per_weight=4)
    tokens = [*every_arc(ring), 0, TOKEN_MAX, *KEY_TOKENS[:50]]
    tokens += data.draw(st.lists(st.integers(0, TOKEN_MAX), max_size=20))
    first = [preference_list(ring, token, n) for token in tokens]
    for token, answer in zip(reversed(tokens), reversed(first), strict=True):
        assert preference_list(ring, token, n) == answer  # from the memo now
        fresh = build_ring(members, 1, tokens_per_weight=4)  # an empty memo: computed
        assert preference_list(fresh, token, n) == answer


def test_a_ring_change_never_serves_a_list_of_the_old_ring() -> None:
    old_members = [m(f"n{i}", host="h") for i in range(1, 6)]
    new_members = [*old_members, m("n6", host="h2")]
    for epoch in (1, 2):  # even a ring wrongly built at the same epoch gets its own lists
        old = build_ring(old_members, 1)
        new = build_ring(new_members, epoch)
        before = {token: preference_list(old, token, 3) for token in every_arc(new)}
        changed = 0
        for token in every_arc(new):
            after = preference_list(new, token, 3)
            assert after == preference_list(build_ring(new_members, epoch), token, 3)
            changed += after != before[token]
        assert changed > 0  # the new node did enter some lists
        assert all(preference_list(old, t, 3) == before[t] for t in every_arc(new))


def test_the_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ring_module, "PREFERENCE_MEMO_MAX", 8)
    members = [m(f"n{i}", zone=f"z{i % 2}") for i in range(6)]
    ring = build_ring(members, 1, tokens_per_weight=8)
    for n in (1, 2, 3):
        for token in every_arc(ring):
            assert preference_list(ring, token, n) == preference_list(
                build_ring(members, 1, tokens_per_weight=8), token, n
            )
            assert len(ring._preference_memo) <= 8


def test_the_memo_changes_neither_equality_nor_validation() -> None:
    used, unused = five_nodes(), five_nodes()
    for token in every_arc(used):
        preference_list(used, token, 3)
    assert used == unused and hash(used) == hash(unused)
    token = used.vnode_tokens[0]
    for bad_n in (0, -1, 1.0, "3"):
        with pytest.raises(RingError):
            preference_list(used, token, bad_n)  # type: ignore[arg-type]
    for bad_token in (-1, TOKEN_MAX + 1, 1.5):
        with pytest.raises(RingError):
            preference_list(used, bad_token, 3)  # type: ignore[arg-type]
