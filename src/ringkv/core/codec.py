"""The wire codec for node-to-node messages: msgpack, tagged, strictly checked.

A message is encoded as the msgpack array ``[tag, field1, field2, ...]`` in
the dataclass's field order. The tag table below is **append only** (as in
memberlist's ``net.go``): a tag is never reused or renumbered, so that nodes of
different versions can tell which messages they share. ``decode`` checks the
tag, the number of fields and the exact type of every field, and raises
``CodecError`` on anything else: a malformed frame from a peer is a typed
error that the transport counts, never an assertion or a crash.

Every message passes through here twice per hop, so the checks are compiled:
at import, each field's declared type becomes one Python expression
(``_check_source``: ``type(v) is str``, an int64 range test, ``None or ...``,
a loop over a list's items) and each message type gets a straight-line
decoder made of them (``_decoder_source``), the way ``dataclasses`` builds
``__init__``. The expressions are the single statement of what a field may
hold; ``_schema`` compiles the same ones into per-field predicates.
"""

from __future__ import annotations

import dataclasses
import operator
import types
import typing
from collections.abc import Callable

import msgpack

from ringkv.core import messages as m

__all__ = ["TAGS", "CodecError", "decode", "encode"]


class CodecError(ValueError):
    """Bytes from a peer that are not a well-formed message."""


# APPEND ONLY: tag -> message type.
TAGS: dict[int, type] = {
    1: m.ReplicaWrite,
    2: m.ReplicaWriteAck,
    3: m.ReplicaRead,
    4: m.ReplicaReadReply,
    5: m.CoordinateWrite,
    6: m.CoordinateWriteReply,
    7: m.Ping,
    8: m.PingReq,
    9: m.PingAck,
    10: m.MemberSync,
    11: m.KeyspaceDefined,
    12: m.RangeScan,
    13: m.RangeScanReply,
    14: m.PaxosPrepare,
    15: m.PaxosPromise,
    16: m.PaxosAccept,
    17: m.PaxosAccepted,
    18: m.PaxosRead,
    19: m.PaxosReadReply,
}
_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)


# -- compiled checks -----------------------------------------------------------------


def _check_source(annotation: object, var: str, helpers: dict[str, str]) -> str:
    """A Python expression, true exactly when ``var`` holds a value of this
    declared type (the few types messages use). A list's items are checked by
    a helper function: ``helpers`` maps each item check to its name
    (``_helpers_source`` writes them)."""
    if annotation is str:
        return f"type({var}) is str"
    if annotation is bytes:
        return f"type({var}) is bytes"
    if annotation is bool:
        return f"type({var}) is bool"
    if annotation is int:
        return f"(type({var}) is int and {_INT64_MIN} <= {var} <= {_INT64_MAX})"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [_check_source(a, var, helpers) for a in args if a is not type(None)]
        if type(None) in args:
            inner.insert(0, f"{var} is None")
        return "(" + " or ".join(inner) + ")"
    if origin is list:
        (item,) = args
        item_check = _check_source(item, "item", helpers)
        name = helpers.setdefault(item_check, f"_items_{len(helpers)}")
        return f"(type({var}) is list and {name}({var}))"
    raise TypeError(f"messages may not use the type {annotation!r}")


def _helpers_source(helpers: dict[str, str]) -> str:
    return "".join(
        f"def {name}(values):\n"
        "    for item in values:\n"
        f"        if not {item_check}:\n"
        "            return False\n"
        "    return True\n"
        for item_check, name in helpers.items()
    )


def _decoder_source(cls: type, helpers: dict[str, str]) -> str:
    """``_decode_<Name>(row)``: the row of a message of type ``cls`` (tag
    first) to the message, or CodecError; one ``if`` per field."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    # Locals are prefixed so that no field name shadows a name the code uses.
    unpacked = ", ".join(["_tag", *(f"f_{name}" for name in names)])
    lines = [
        f"def _decode_{cls.__name__}(row):",
        f"    if len(row) != {len(names) + 1}:",
        f"        raise _wrong_count({cls.__name__}, {len(names)}, len(row) - 1)",
        f"    {unpacked}, = row",
    ]
    for name in names:
        check = _check_source(hints[name], f"f_{name}", helpers)
        lines += [
            f"    if not {check}:",
            f"        raise _wrong_type({cls.__name__}, {name!r}, f_{name})",
        ]
    arguments = ", ".join(f"{name}=f_{name}" for name in names)
    lines.append(f"    return {cls.__name__}({arguments})")
    return "\n".join(lines) + "\n"


def _wrong_count(cls: type, expected: int, got: int) -> CodecError:
    return CodecError(f"{cls.__name__}: expected {expected} fields, got {got}")


def _wrong_type(cls: type, name: str, value: object) -> CodecError:
    return CodecError(f"{cls.__name__}.{name}: unexpected {type(value).__name__}")


def _compile(source: str, names: dict[str, object]) -> dict[str, object]:
    """Run generated source in a namespace of its own (what it may use)."""
    namespace = {"_wrong_count": _wrong_count, "_wrong_type": _wrong_type, **names}
    exec(compile(source, "<ringkv.core.codec generated>", "exec"), namespace)
    return namespace


def _schema(cls: type) -> tuple[tuple[str, Callable[[object], bool]], ...]:
    """Each field's name and a predicate for its declared type (for tests
    and tools; ``decode`` runs the same checks compiled into one function)."""
    hints = typing.get_type_hints(cls)
    schema: list[tuple[str, Callable[[object], bool]]] = []
    for f in dataclasses.fields(cls):
        helpers: dict[str, str] = {}
        check = _check_source(hints[f.name], "value", helpers)
        source = _helpers_source(helpers) + f"def _check(value):\n    return {check}\n"
        predicate = typing.cast(Callable[[object], bool], _compile(source, {})["_check"])
        schema.append((f.name, predicate))
    return tuple(schema)


def _build_decoders() -> tuple[dict[int, Callable[[list[object]], m.Message]], str]:
    helpers: dict[str, str] = {}
    decoders = {tag: _decoder_source(cls, helpers) for tag, cls in TAGS.items()}
    source = _helpers_source(helpers) + "".join(decoders.values())
    namespace = _compile(source, {cls.__name__: cls for cls in TAGS.values()})
    compiled = {
        tag: typing.cast(Callable[[list[object]], m.Message], namespace[f"_decode_{cls.__name__}"])
        for tag, cls in TAGS.items()
    }
    return compiled, source


# tag -> decoder, and the source they were compiled from (to read when debugging).
_DECODERS, _DECODERS_SOURCE = _build_decoders()
# message type -> (tag, a getter of all its fields as a tuple, in order).
_ENCODERS: dict[type, tuple[int, Callable[[object], tuple[object, ...]]]] = {
    cls: (tag, operator.attrgetter(*(f.name for f in dataclasses.fields(cls))))
    for tag, cls in TAGS.items()
}
assert all(len(dataclasses.fields(cls)) >= 2 for cls in TAGS.values()), "attrgetter gives tuples"
# One packer, reused: packb would build (and allocate a buffer for) a new one
# per message. Safe on the core's one thread: packing builtins never releases
# the GIL, and a failed pack resets the buffer.
_pack = msgpack.Packer(use_bin_type=True).pack


def encode(message: m.Message) -> bytes:
    tag, fields = _ENCODERS[type(message)]
    packed: bytes = _pack([tag, *fields(message)])
    return packed


def decode(data: bytes) -> m.Message:
    try:
        row = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise CodecError(f"undecodable message: {exc}") from exc
    if type(row) is not list or not row or type(row[0]) is not int:
        raise CodecError("a message is an array that starts with its tag")
    decoder = _DECODERS.get(row[0])
    if decoder is None:
        raise CodecError(f"unknown message tag {row[0]}")
    return decoder(row)
