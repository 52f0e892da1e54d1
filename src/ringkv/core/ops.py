"""Operations on one key as data, and their pure semantics.

Theory of operation. A client command becomes either a read or a *mutation*.
A mutation is a frozen description (``IncrBy(delta=5)``) with a pure
``apply(current, now_ms, limits) -> Outcome``: given the key's current live
version it says what to write (a value, a delete, or nothing) and what to
answer. Because the change is data, the same mutation runs in three places:
atomically on the only replica when N = 1, as the change function of a
CASPaxos round in a ``strong`` keyspace (Rystsov 2018, §2: a proposer applies
``f`` to the accepted state), and as a plain replicated write when it is
*blind* (it does not depend on the current value, like a plain SET).

The string semantics follow Redis 7: integer parsing is as strict as
``string2ll`` (no sign ``+``, no leading zeros, no spaces, 64-bit range), TTLs
are absolute expiry times in milliseconds, and errors keep Redis's text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from ringkv.core import errors
from ringkv.core.errors import OpError
from ringkv.core.record import Version

__all__ = [
    "Append",
    "Condition",
    "Expire",
    "ExpireCondition",
    "Expiry",
    "GetEx",
    "IncrBy",
    "IncrByFloat",
    "Limits",
    "Mutation",
    "Outcome",
    "Put",
    "Remove",
    "SetRange",
    "format_float",
    "parse_int64",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_INT_RE = re.compile(rb"-?[1-9][0-9]{0,18}|0")
_FLOAT_RE = re.compile(
    rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?inf(?:inity)?", re.I
)


def parse_int64(raw: bytes) -> int | None:
    """Redis ``string2ll``: the exact decimal form of a signed 64-bit integer."""
    if len(raw) > 20 or _INT_RE.fullmatch(raw) is None or raw == b"-0":
        return None
    value = int(raw)
    return value if INT64_MIN <= value <= INT64_MAX else None


def parse_float(raw: bytes) -> float | None:
    """Redis ``string2ld``: a decimal float with no surrounding space."""
    if len(raw) > 5000 or _FLOAT_RE.fullmatch(raw) is None:
        return None
    value = float(raw)
    return None if math.isnan(value) else value


def format_float(value: float) -> bytes:
    """The shortest decimal that reads back as ``value``, without exponent."""
    if value == int(value) and abs(value) < 1e17:
        return str(int(value)).encode()
    text = repr(value)
    if "e" in text or "E" in text:
        text = f"{value:.17f}".rstrip("0").rstrip(".")
    return text.encode()


@dataclass(frozen=True, slots=True)
class Limits:
    max_value_bytes: int


@dataclass(frozen=True, slots=True)
class Expiry:
    """``at_ms`` absolute, or ``ttl_ms`` relative to the time of the write."""

    at_ms: int | None = None
    ttl_ms: int | None = None

    def resolve(self, now_ms: int) -> int:
        if self.at_ms is not None:
            return self.at_ms
        assert self.ttl_ms is not None
        return now_ms + self.ttl_ms


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a mutation decided: the answer, and the write (if any) it makes."""

    result: object
    value: bytes | None = None  # a new value to store
    expires_at_ms: int = 0
    delete: bool = False

    @property
    def writes(self) -> bool:
        return self.delete or self.value is not None


class Condition(Enum):
    NX = "nx"  # only when absent
    XX = "xx"  # only when present


class ExpireCondition(Enum):
    NX = "nx"
    XX = "xx"
    GT = "gt"
    LT = "lt"


def _kept_expiry(current: Version | None) -> int:
    return current.expires_at_ms if current is not None else 0


@dataclass(frozen=True, slots=True)
class Put:
    """SET and its family. Result: True/False (stored or not), or the old value."""

    value: bytes
    expiry: Expiry | None = None
    keep_ttl: bool = False
    condition: Condition | None = None
    return_old: bool = False

    @property
    def blind(self) -> bool:
        return self.condition is None and not self.return_old and not self.keep_ttl

    def apply(self, current: Version | None, now_ms: int, limits: Limits) -> Outcome:
        old = current.value if current is not None else None
        refused = (self.condition is Condition.NX and current is not None) or (
            self.condition is Condition.XX and current is None
        )
        answer: object = old if self.return_old else not refused
        if refused:
            return Outcome(answer)
        if self.expiry is not None:
            expires = self.expiry.resolve(now_ms)
            if expires <= now_ms:  # EXAT/PXAT in the past: stored, and at once gone
                return Outcome(answer, delete=current is not None)
        else:
            expires = _kept_expiry(current) if self.keep_ttl else 0
        return Outcome(answer, value=self.value, expires_at_ms=expires)


@dataclass(frozen=True, slots=True)
class Remove:
    """DEL (result: whether the key existed) or GETDEL (result: the old value)."""

    return_old: bool = False
    blind = True

    def apply(self, current: Version | None, now_ms: int, limits: Limits) -> Outcome:
        if current is None:
            return Outcome(None if self.return_old else False)
        return Outcome(current.value if self.return_old else True, delete=True)


@dataclass(frozen=True, slots=True)
class Expire:
    """EXPIRE family and PERSIST (``at`` None). Result: whether the TTL changed."""

    at: Expiry | None
    condition: ExpireCondition | None = None
    blind = False

    def apply(self, current: Version | None, now_ms: int, limits: Limits) -> Outcome:
        if current is None:
            return Outcome(False)
        old = current.expires_at_ms
        if self.at is None:
            if old == 0:
                return Outcome(False)
            return Outcome(True, value=current.value, expires_at_ms=0)
        new = self.at.resolve(now_ms)
        cond = self.condition
        no_ttl = old == 0  # Redis treats "no TTL" as an infinite TTL for GT/LT
        if (
            (cond is ExpireCondition.NX and not no_ttl)
            or (cond is ExpireCondition.XX and no_ttl)
            or (cond is ExpireCondition.GT and (no_ttl or new <= old))
            or (cond is ExpireCondition.LT and not no_ttl and new >= old)
        ):
            return Outcome(False)
        if new <= now_ms:
            return Outcome(True, delete=True)
        return Outcome(True, value=current.value, expires_at_ms=new)


@dataclass(frozen=True, slots=True)
class GetEx:
    """GETEX: the value, and optionally a new expiry or PERSIST."""

    expiry: Expiry | None = None
    persist: bool = False
    blind = False

    def apply(self, current: Version | None, now_ms: int, limits: Limits) -> Outcome:
        if current is None:
            return Outcome(None)
        if self.persist:
            if current.expires_at_ms == 0:
                return Outcome(current.value)
            return Outcome(current.value, value=current.value, expires_at_ms=0)
        if self.expiry is None:
            return Outcome(current.value)
        expires = self.expiry.resolve(now_ms)
        if expires <= now_ms:
            return Outcome(current.value, delete=True)
        return Outcome(current.value, value=current.value, expires_at_ms=expires)


@dataclass(frozen=True, slots=True)
class IncrBy:
    """INCR, DECR, INCRBY, DECRBY. Result: the new integer."""

    delta: int
    blind = False

    def apply(self, current: Version | None, now_ms: int, limits: Limits) -> Outcome:
        if current is None:
            base = 0
        else:
            parsed = parse_int64(current.value)
            if parsed is None:
                return Outcome(errors.NOT_INTEGER)
            base = parsed
        total = base + self.delta
        if not INT64_MIN <= total <= INT64_MAX:
            return Outcome(errors.OVERFLOW)
        return Outcome(total, value=str(total).encode(), expires_at_ms=_kept_expiry(current))


@dataclass(frozen=True, slots=True)
class IncrByFloat:
    """INCRBYFLOAT. Result: the new value as its decimal text."""

    delta: float
    blind = False

    def apply(self, current: Version | None, now_ms: int, limits: Limits) -> Outcome:
        base = 0.0
        if current is not None:
            parsed = parse_float(current.value)
            if parsed is None:
                return Outcome(errors.NOT_FLOAT)
            base = parsed
        total = base + self.delta
        if math.isnan(total) or math.isinf(total):
            return Outcome(errors.NAN_OR_INF)
        text = format_float(total)
        return Outcome(text, value=text, expires_at_ms=_kept_expiry(current))


@dataclass(frozen=True, slots=True)
class Append:
    """APPEND. Result: the new length."""

    suffix: bytes
    blind = False

    def apply(self, current: Version | None, now_ms: int, limits: Limits) -> Outcome:
        old = current.value if current is not None else b""
        if len(old) + len(self.suffix) > limits.max_value_bytes:
            return Outcome(errors.STRING_TOO_LONG)
        new = old + self.suffix
        return Outcome(len(new), value=new, expires_at_ms=_kept_expiry(current))


@dataclass(frozen=True, slots=True)
class SetRange:
    """SETRANGE. Result: the new length."""

    offset: int
    data: bytes
    blind = False

    def apply(self, current: Version | None, now_ms: int, limits: Limits) -> Outcome:
        old = current.value if current is not None else b""
        if not self.data:
            return Outcome(len(old))
        end = self.offset + len(self.data)
        if end > limits.max_value_bytes:
            return Outcome(errors.STRING_TOO_LONG)
        padded = old if len(old) >= self.offset else old + b"\x00" * (self.offset - len(old))
        new = padded[: self.offset] + self.data + padded[end:]
        return Outcome(len(new), value=new, expires_at_ms=_kept_expiry(current))


Mutation: TypeAlias = Put | Remove | Expire | GetEx | IncrBy | IncrByFloat | Append | SetRange

_ = OpError  # re-exported for callers that match on results
