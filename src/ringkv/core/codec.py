"""The wire codec for node-to-node messages: msgpack, tagged, strictly checked.

A message is encoded as the msgpack array ``[tag, field1, field2, ...]`` in
the dataclass's field order. The tag table below is **append only** (as in
memberlist's ``net.go``): a tag is never reused or renumbered, so that nodes of
different versions can tell which messages they share. ``decode`` checks the
tag, the number of fields and the exact type of every field, and raises
``CodecError`` on anything else: a malformed frame from a peer is a typed
error that the transport counts, never an assertion or a crash.
"""

from __future__ import annotations

import dataclasses
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
_TAG_OF: dict[type, int] = {cls: tag for tag, cls in TAGS.items()}
_INT64_MAX = 2**63 - 1


def _checker(annotation: object) -> Callable[[object], bool]:
    """A predicate for one field's declared type (the few types messages use)."""
    if annotation is str:
        return lambda v: type(v) is str
    if annotation is bytes:
        return lambda v: type(v) is bytes
    if annotation is bool:
        return lambda v: type(v) is bool
    if annotation is int:
        return lambda v: type(v) is int and -_INT64_MAX - 1 <= v <= _INT64_MAX
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [_checker(a) for a in args if a is not type(None)]
        optional = type(None) in args
        return lambda v: (optional and v is None) or any(check(v) for check in inner)
    if origin is list:
        (item,) = args
        check_item = _checker(item)
        return lambda v: type(v) is list and all(check_item(x) for x in v)
    raise TypeError(f"messages may not use the type {annotation!r}")


def _schema(cls: type) -> tuple[tuple[str, Callable[[object], bool]], ...]:
    hints = typing.get_type_hints(cls)
    return tuple((f.name, _checker(hints[f.name])) for f in dataclasses.fields(cls))


_SCHEMAS = {tag: _schema(cls) for tag, cls in TAGS.items()}


def encode(message: m.Message) -> bytes:
    tag = _TAG_OF[type(message)]
    row: list[object] = [tag]
    row.extend(getattr(message, name) for name, _ in _SCHEMAS[tag])
    packed: bytes = msgpack.packb(row, use_bin_type=True)
    return packed


def decode(data: bytes) -> m.Message:
    try:
        row = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise CodecError(f"undecodable message: {exc}") from exc
    if type(row) is not list or not row or type(row[0]) is not int:
        raise CodecError("a message is an array that starts with its tag")
    tag = row[0]
    schema = _SCHEMAS.get(tag)
    if schema is None:
        raise CodecError(f"unknown message tag {tag}")
    if len(row) != len(schema) + 1:
        raise CodecError(f"{TAGS[tag].__name__}: expected {len(schema)} fields, got {len(row) - 1}")
    fields: dict[str, object] = {}
    for (name, check), value in zip(schema, row[1:], strict=True):
        if not check(value):
            raise CodecError(f"{TAGS[tag].__name__}.{name}: unexpected {type(value).__name__}")
        fields[name] = value
    message: m.Message = TAGS[tag](**fields)
    return message
