"""The compiled wire checks refuse exactly what the plain ones did.

``codec.decode`` runs straight-line decoders generated from the message
annotations, and ``paxos.origins_from_wire`` / ``AcceptorState.unpack`` are
written out for speed. Each is checked here against a reference (the
codec's: the readable implementation it replaced, kept verbatim; the
origins': a plain statement of format 2, and of format 1 as it was read) on
rows that are mostly well-formed with a few fields replaced by junk of every
msgpack type (and boundary integers), so both acceptance and each kind of
refusal are hit.
"""

from __future__ import annotations

import dataclasses
import itertools
import types
import typing
from collections.abc import Callable

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringkv.core import codec, paxos
from ringkv.core import messages as m
from ringkv.core.paxos import (
    ORIGINS_KEPT,
    AcceptorState,
    AcceptorStateError,
    Ballot,
    RegisterState,
)
from test_codec import EXAMPLES

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

# -- the references: the implementations the fast paths replaced ---------------------


def reference_checker(annotation: object) -> Callable[[object], bool]:
    """codec._checker as it was: one predicate per declared type."""
    if annotation is str:
        return lambda v: type(v) is str
    if annotation is bytes:
        return lambda v: type(v) is bytes
    if annotation is bool:
        return lambda v: type(v) is bool
    if annotation is int:
        return lambda v: type(v) is int and INT64_MIN <= v <= INT64_MAX
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [reference_checker(a) for a in args if a is not type(None)]
        optional = type(None) in args
        return lambda v: (optional and v is None) or any(check(v) for check in inner)
    if origin is list:
        (item,) = args
        check_item = reference_checker(item)
        return lambda v: type(v) is list and all(check_item(x) for x in v)
    raise TypeError(f"messages may not use the type {annotation!r}")


def reference_decode(data: bytes) -> m.Message:
    """codec.decode as it was."""
    try:
        row = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise codec.CodecError(f"undecodable message: {exc}") from exc
    if type(row) is not list or not row or type(row[0]) is not int:
        raise codec.CodecError("a message is an array that starts with its tag")
    tag = row[0]
    if tag not in codec.TAGS:
        raise codec.CodecError(f"unknown message tag {tag}")
    cls = codec.TAGS[tag]
    hints = typing.get_type_hints(cls)
    schema = [(f.name, reference_checker(hints[f.name])) for f in dataclasses.fields(cls)]
    if len(row) != len(schema) + 1:
        raise codec.CodecError(f"{cls.__name__}: expected {len(schema)} fields, got {len(row) - 1}")
    fields: dict[str, object] = {}
    for (name, check), value in zip(schema, row[1:], strict=True):
        if not check(value):
            raise codec.CodecError(f"{cls.__name__}.{name}: unexpected {type(value).__name__}")
        fields[name] = value
    message: m.Message = cls(**fields)
    return message


def _is_natural(value: object) -> bool:
    return type(value) is int and 0 <= value <= INT64_MAX


def reference_window(flat: object, version: object) -> tuple[Ballot, ...] | None:
    """Format 1's origins (the ballots of the last 8 versions), as they were read."""
    if type(flat) is not list or type(version) is not int or version < 0:
        return None
    if len(flat) != 2 * min(version, 8):
        return None
    origins: list[Ballot] = []
    for counter, proposer in zip(flat[::2], flat[1::2], strict=True):
        if not (_is_natural(counter) and counter >= 1 and type(proposer) is str and proposer):
            return None
        ballot = Ballot(counter, proposer)
        if origins and not ballot < origins[-1]:
            return None
        origins.append(ballot)
    return tuple(origins)


def _real(counter: object, proposer: object) -> bool:
    return (
        type(counter) is int
        and 1 <= counter <= INT64_MAX
        and type(proposer) is str
        and proposer != ""
    )


def reference_origins_from_wire(
    flat: object, version: object
) -> tuple[tuple[Ballot, ...], Ballot] | None:
    """paxos.origins_from_wire, written plainly: the latest change of each
    proposer (distinct, strictly decreasing, 1 to min(version, ORIGINS_KEPT)
    of them), then a horizon no newer than the last; nothing at version 0."""
    if type(flat) is not list or type(version) is not int or version < 0:
        return None
    if version == 0:
        return ((), paxos.ZERO_BALLOT) if len(flat) == 0 else None
    if len(flat) % 2:
        return None
    pairs = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
    if not 2 <= len(pairs) <= min(version, ORIGINS_KEPT) + 1:
        return None
    *entries, (h_counter, h_proposer) = pairs
    if not all(_real(c, p) for c, p in entries):
        return None
    ballots = [Ballot(typing.cast(int, c), typing.cast(str, p)) for c, p in entries]
    if any(not later < earlier for earlier, later in itertools.pairwise(ballots)):
        return None
    if len({b.proposer for b in ballots}) != len(ballots):
        return None
    if type(h_counter) is int and h_counter == 0 and type(h_proposer) is str and h_proposer == "":
        horizon = paxos.ZERO_BALLOT
    elif _real(h_counter, h_proposer):
        horizon = Ballot(typing.cast(int, h_counter), typing.cast(str, h_proposer))
    else:
        return None
    if horizon > ballots[-1]:
        return None
    return tuple(ballots), horizon


def reference_unpack(data: bytes) -> AcceptorState:
    """AcceptorState.unpack, written plainly (formats 2 and 1)."""
    try:
        row = msgpack.unpackb(data, raw=False, use_list=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise AcceptorStateError(f"undecodable acceptor state: {exc}") from exc
    if not isinstance(row, list) or len(row) != 9:
        raise AcceptorStateError("acceptor state is not a row of 9 fields")
    fmt, p_counter, p_node, a_counter, a_node, value, version, expires, flat = row
    if type(fmt) is not int or fmt not in (1, 2):
        raise AcceptorStateError(f"acceptor state has an unknown format {fmt!r}")
    if not (
        _is_natural(p_counter)
        and type(p_node) is str
        and _is_natural(a_counter)
        and type(a_node) is str
        and (value is None or type(value) is bytes)
        and _is_natural(version)
        and _is_natural(expires)
    ):
        raise AcceptorStateError("acceptor state: a field has the wrong type")
    if fmt == 2:
        origins = reference_origins_from_wire(flat, version)
    else:
        window = reference_window(flat, version)
        origins = None
        if window is not None:
            newest: list[Ballot] = []
            for ballot in window:
                if all(b.proposer != ballot.proposer for b in newest):
                    newest.append(ballot)
            dropped = version > len(window)
            origins = (tuple(newest), window[-1] if dropped else paxos.ZERO_BALLOT)
    if origins is None:
        raise AcceptorStateError("acceptor state: malformed origins")
    state = RegisterState(value, version, expires, *origins)
    promised, accepted = Ballot(p_counter, p_node), Ballot(a_counter, a_node)
    if not state.origin <= accepted <= promised:
        raise AcceptorStateError("acceptor state: ballots out of order")
    return AcceptorState(promised=promised, accepted=accepted, state=state)


# -- junk of every msgpack type ------------------------------------------------------

BOUNDARY_INTS = [0, 1, -1, INT64_MAX, INT64_MAX + 1, INT64_MIN, 2**64 - 1]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(BOUNDARY_INTS),
    st.integers(INT64_MIN, 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=4),
    st.binary(max_size=4),
)
junk = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=2), children, max_size=2),
    ),
    max_leaves=8,
)


def _outcome(decode: Callable[[bytes], object], data: bytes) -> tuple[str, object]:
    try:
        return "ok", decode(data)
    except codec.CodecError as exc:
        return "error", str(exc)


# -- codec -------------------------------------------------------------------------------


@settings(max_examples=400)
@given(st.sampled_from(EXAMPLES), st.lists(st.tuples(st.integers(0, 20), junk), max_size=3))
def test_decode_refuses_exactly_what_the_reference_refused(
    message: m.Message, replacements: list[tuple[int, object]]
) -> None:
    row = msgpack.unpackb(codec.encode(message), raw=False)
    for index, value in replacements:
        row[1 + index % (len(row) - 1)] = value
    data = msgpack.packb(row, use_bin_type=True)
    # Same verdict, same message: the first bad field is the one named.
    assert _outcome(codec.decode, data) == _outcome(reference_decode, data)


@given(st.sampled_from(EXAMPLES), st.integers(-3, 3))
def test_a_wrong_field_count_is_refused_as_before(message: m.Message, extra: int) -> None:
    row = msgpack.unpackb(codec.encode(message), raw=False)
    row = row + [0] * extra if extra >= 0 else row[:extra]
    data = msgpack.packb(row, use_bin_type=True)
    assert _outcome(codec.decode, data) == _outcome(reference_decode, data)


@given(junk)
def test_any_msgpack_value_gets_the_reference_verdict(value: object) -> None:
    data = msgpack.packb(value, use_bin_type=True)
    assert _outcome(codec.decode, data) == _outcome(reference_decode, data)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (INT64_MAX, True),
        (INT64_MIN, True),
        (INT64_MAX + 1, False),  # msgpack carries up to 2**64 - 1
        (True, False),  # a bool is not an integer here
        (1.0, False),
        (None, False),
    ],
)
def test_integer_fields_are_int64_exactly(value: object, ok: bool) -> None:
    row = [2, "n1", value, True, ""]  # ReplicaWriteAck.req_id
    data = msgpack.packb(row, use_bin_type=True)
    if ok:
        assert codec.decode(data) == m.ReplicaWriteAck(src="n1", req_id=value, ok=True)  # type: ignore[arg-type]
    else:
        with pytest.raises(codec.CodecError, match=r"^ReplicaWriteAck\.req_id: unexpected "):
            codec.decode(data)


def test_list_items_are_checked_one_by_one() -> None:
    row = msgpack.unpackb(codec.encode(EXAMPLES[-5]), raw=False)  # a PaxosAccept
    assert row[0] == 16
    row[-1] = [7, "n1~3", INT64_MAX + 1, "n3~1"]
    with pytest.raises(codec.CodecError, match=r"^PaxosAccept\.origins: unexpected list$"):
        codec.decode(msgpack.packb(row, use_bin_type=True))
    row[-1] = [[1]]  # a nested list where an item must be str or int
    with pytest.raises(codec.CodecError, match=r"^PaxosAccept\.origins: unexpected list$"):
        codec.decode(msgpack.packb(row, use_bin_type=True))


def test_every_tag_has_a_compiled_decoder_and_the_schema_agrees() -> None:
    assert set(codec._DECODERS) == set(codec.TAGS)
    for cls in codec.TAGS.values():
        hints = typing.get_type_hints(cls)
        names = [name for name, _ in codec._schema(cls)]
        assert names == [f.name for f in dataclasses.fields(cls)]
        for name, check in codec._schema(cls):
            reference = reference_checker(hints[name])
            for value in [None, True, 0, INT64_MAX + 1, "s", b"b", [], ["s", 1], [b"b"], [[1]]]:
                assert check(value) == reference(value), (cls.__name__, name, value)


# -- paxos wire helpers --------------------------------------------------------------------

counters = st.one_of(st.sampled_from(BOUNDARY_INTS), st.integers(0, 12), st.booleans())
proposers = st.one_of(st.sampled_from(["", "p1", "p2", "p1~2"]), st.binary(max_size=2))


@st.composite
def flats(draw: st.DrawFn) -> list[object]:
    """Origins that are mostly well-formed (distinct proposers, decreasing, a
    horizon), with now and then a junk item, a repeated proposer or no horizon."""
    count = draw(st.integers(0, ORIGINS_KEPT + 1))
    start = draw(st.integers(1, 30))
    names = draw(st.permutations([f"p{i}" for i in range(ORIGINS_KEPT + 2)]))
    flat: list[object] = []
    for i in range(count):
        flat += [start + count - i, names[i] if draw(st.integers(0, 9)) else "p0"]
    horizon = draw(st.sampled_from(["zero", "below", "equal", "above", "none"]))
    if flat and horizon != "none":
        last = typing.cast(int, flat[-2])
        tails: dict[str, list[object]] = {
            "zero": [0, ""],
            "below": [max(last - 1, 0), "h" if last > 1 else ""],
            "equal": [last, flat[-1]],
            "above": [last + 1, "h"],
        }
        flat += tails[horizon]
    for _ in range(draw(st.integers(0, 2))):
        if flat:
            index = draw(st.integers(0, len(flat) - 1))
            flat[index] = draw(counters if index % 2 == 0 else proposers)
    return flat


@st.composite
def windows(draw: st.DrawFn) -> list[object]:
    """Format 1 origins: decreasing ballots of p1 and p2, some junk."""
    count = draw(st.integers(0, 9))
    start = draw(st.integers(1, 30))
    flat: list[object] = []
    for i in range(count):
        flat += [start + count - i, draw(st.sampled_from(["p1", "p2"]))]
    for _ in range(draw(st.integers(0, 2))):
        if flat:
            index = draw(st.integers(0, len(flat) - 1))
            flat[index] = draw(counters if index % 2 == 0 else proposers)
    return flat


@settings(max_examples=600)
@given(flats(), st.one_of(st.integers(-1, ORIGINS_KEPT + 3), st.booleans(), st.none()))
def test_origins_from_wire_agrees_with_the_reference(flat: list[object], version: object) -> None:
    got = paxos.origins_from_wire(flat, version)
    assert got == reference_origins_from_wire(flat, version)
    if got is not None:
        origins, horizon = got
        assert all(type(ballot) is Ballot for ballot in origins)
        assert paxos.origins_to_wire(origins, horizon) == flat  # and back


@settings(max_examples=400)
@given(
    st.sampled_from([1, 2]),
    st.integers(0, 12),
    st.data(),
    st.lists(st.tuples(st.integers(0, 8), st.one_of(counters, proposers, junk)), max_size=2),
)
def test_acceptor_state_unpack_agrees_with_the_reference(
    fmt: int, version: int, data: st.DataObject, replacements: list[tuple[int, object]]
) -> None:
    flat = data.draw(flats() if fmt == 2 else windows())
    row: list[object] = [fmt, 40, "p2", 35, "p1", b"v", version, 0, flat]
    for index, value in replacements:
        row[index] = value
    packed = msgpack.packb(row, use_bin_type=True)

    def outcome(unpack: Callable[[bytes], AcceptorState]) -> tuple[str, object]:
        try:
            return "ok", unpack(packed)
        except AcceptorStateError as exc:
            return "error", str(exc)

    got = outcome(AcceptorState.unpack)
    assert got == outcome(reference_unpack)
    if got[0] == "ok":
        state = typing.cast(AcceptorState, got[1])
        assert type(state.promised) is Ballot and type(state.state) is RegisterState
        assert AcceptorState.unpack(state.pack()) == state  # written back as format 2
