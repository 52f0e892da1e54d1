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
from decimal import Decimal
from enum import Enum
from fractions import Fraction
from typing import NamedTuple, TypeAlias

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
    "parse_float",
    "parse_int64",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_INT_RE = re.compile(rb"-?[1-9][0-9]{0,18}|0")


def parse_int64(raw: bytes) -> int | None:
    """Redis ``string2ll``: the exact decimal form of a signed 64-bit integer."""
    if len(raw) > 20 or _INT_RE.fullmatch(raw) is None:
        return None
    value = int(raw)
    return value if INT64_MIN <= value <= INT64_MAX else None


# INCRBYFLOAT computes in C ``long double`` (t_string.c incrbyfloatCommand),
# which on x86-64 is the x87 80-bit extended format: a 64-bit significand,
# subnormals down to 2**-16445, overflow at 2**16384. Python has no such type,
# so a value is an exact Fraction rounded to that format after every step;
# this is what makes 0.1 + 0.2 answer b"0.3" as Redis does, where binary64
# arithmetic would answer b"0.30000000000000004". Infinity is a float.
_LD_SIGNIFICAND_BITS = 64
_LD_EXP_MIN = -16445  # exponent of the smallest subnormal, 2**-16445
_LD_OVERFLOW = 1 << 16384  # the smallest magnitude that rounds to infinity
_LD_CHARS_MAX = 5 * 1024  # util.h MAX_LONG_DOUBLE_CHARS: string2ld refuses longer
_LD_DECIMAL_DIGITS = 17  # ld2string LD_STR_HUMAN prints "%.17Lf"
_DECIMAL_RE = re.compile(
    rb"(?P<sign>[+-]?)(?:(?P<int>[0-9]+)\.?(?P<frac>[0-9]*)|\.(?P<frac2>[0-9]+))"
    rb"(?:[eE](?P<exp>[+-]?[0-9]+))?"
)
_HEX_RE = re.compile(
    rb"(?P<sign>[+-]?)0[xX](?:(?P<int>[0-9a-fA-F]+)\.?(?P<frac>[0-9a-fA-F]*)"
    rb"|\.(?P<frac2>[0-9a-fA-F]+))(?:[pP](?P<exp>[+-]?[0-9]+))?"
)
_INF_RE = re.compile(rb"(?P<sign>[+-]?)inf(?:inity)?", re.IGNORECASE)
_EXPONENT_DIGITS_MAX = 9  # a longer exponent is far outside every range here


def _exponent(text: bytes | None) -> int | None:
    """The exponent's value, or None when it is too long to matter."""
    if text is None:
        return 0
    digits = text.lstrip(b"+-").lstrip(b"0")
    if len(digits) > _EXPONENT_DIGITS_MAX:
        return None
    value = int(digits or b"0")
    return -value if text.startswith(b"-") else value


def _floor_log2(magnitude: Fraction) -> int:
    num, den = magnitude.numerator, magnitude.denominator
    k = num.bit_length() - den.bit_length()
    below = num < (den << k) if k >= 0 else (num << -k) < den
    return k - 1 if below else k


def _round_long_double(exact: Fraction) -> Fraction | float:
    """``exact`` rounded half-to-even to the x87 format; +-inf past its range."""
    if exact == 0:
        return Fraction(0)
    magnitude = abs(exact)
    exponent = max(_floor_log2(magnitude) - (_LD_SIGNIFICAND_BITS - 1), _LD_EXP_MIN)
    significand = round(magnitude / Fraction(2) ** exponent)  # round() is half-to-even
    rounded = significand * Fraction(2) ** exponent
    if rounded >= _LD_OVERFLOW:
        return math.inf if exact > 0 else -math.inf
    return rounded if exact > 0 else -rounded


def _exact_value(raw: bytes) -> Fraction | float | None:
    """The exact value of text in strtold's syntax (decimal, hexadecimal or
    infinity); None when it is not a number, or so far outside the long
    double range that it certainly overflows or underflows to zero."""
    if match := _INF_RE.fullmatch(raw):
        return -math.inf if match["sign"] == b"-" else math.inf
    hexadecimal = _HEX_RE.fullmatch(raw)
    match = hexadecimal or _DECIMAL_RE.fullmatch(raw)
    if match is None:
        return None
    frac = match["frac"] if match["frac2"] is None else match["frac2"]
    digits = ((match["int"] or b"") + frac).lstrip(b"0")
    if not digits:
        return Fraction(0)
    exponent = _exponent(match["exp"])
    if exponent is None:
        return None
    if hexadecimal:
        coefficient, base = int(digits, 16), 2
        exponent -= 4 * len(frac)
        log2_top = exponent + coefficient.bit_length() - 1
    else:
        coefficient, base = int(Decimal(digits.decode())), 10  # int() has a digit limit
        exponent -= len(frac)
        log2_top = math.floor((exponent + len(digits) - 1) * math.log2(10))
    if not -16450 < log2_top < 16390:
        return None
    value = coefficient * Fraction(base) ** exponent
    return -value if match["sign"] == b"-" else value


def _string2ld(raw: bytes) -> tuple[Fraction | float, Fraction | float] | None:
    """Redis ``string2ld`` (util.c): strtold over the whole string, with no
    leading space, refusing overflow and underflow to zero. Returns the exact
    value and the long double it reads as, or None when Redis refuses it."""
    if not raw or len(raw) >= _LD_CHARS_MAX:
        return None
    exact = _exact_value(raw)
    if exact is None:
        return None
    if isinstance(exact, float):
        return exact, exact  # an infinity, which strtold accepts
    value = _round_long_double(exact)
    if isinstance(value, float) or (value == 0 and exact != 0):
        return None
    return exact, value


def _format_long_double(value: Fraction) -> bytes:
    """Redis ``ld2string`` in LD_STR_HUMAN mode: "%.17Lf", then trailing
    zeros and point removed, and "-0" written "0"."""
    scaled = round(value * 10**_LD_DECIMAL_DIGITS)  # glibc printf rounds half-to-even
    if scaled == 0:
        return b"0"
    # format(Decimal) has no 4300-digit limit, unlike str(int).
    digits = format(Decimal(abs(scaled)), "f").rjust(_LD_DECIMAL_DIGITS + 1, "0")
    whole, frac = digits[:-_LD_DECIMAL_DIGITS], digits[-_LD_DECIMAL_DIGITS:].rstrip("0")
    text = f"{whole}.{frac}" if frac else whole
    return (f"-{text}" if scaled < 0 else text).encode()


def parse_float(raw: bytes) -> float | None:
    """Redis ``string2ld`` acceptance (decimal, hexadecimal, inf; no spaces;
    within the long double range), as the nearest double (+-inf past its range)."""
    parsed = _string2ld(raw)
    if parsed is None:
        return None
    exact = parsed[0]
    if isinstance(exact, float):
        return exact
    try:
        return float(exact)  # correctly rounded, unlike a trip through long double
    except OverflowError:
        return math.inf if exact > 0 else -math.inf


def format_float(value: float) -> bytes:
    """The shortest decimal that reads back as ``value``, without exponent."""
    if not math.isfinite(value):
        return repr(value).encode()  # inf, -inf, nan, as ld2string writes them
    if value == int(value) and abs(value) < 1e17:
        return str(int(value)).encode()
    text = repr(value)
    if "e" in text or "E" in text:
        text = f"{value:.17f}".rstrip("0").rstrip(".")
    return b"0" if text == "-0" else text.encode()


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


class Outcome(NamedTuple):
    """What a mutation decided: the answer, and the write (if any) it makes.

    A named tuple: one is built for every write, and it costs a quarter of a
    frozen dataclass."""

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


class Put(NamedTuple):
    """SET and its family. Result: True/False (stored or not), or the old value.

    A named tuple (immutable, and cheap to build for every SET)."""

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

    @property
    def blind(self) -> bool:
        return not self.return_old  # GETDEL answers with what it read

    def apply(self, current: Version | None, now_ms: int, limits: Limits) -> Outcome:
        if current is None:
            return Outcome(None if self.return_old else False)
        return Outcome(current.value if self.return_old else True, delete=True)


@dataclass(frozen=True, slots=True)
class Expire:
    """EXPIRE family and PERSIST (``at`` None). Result: whether the TTL changed.

    ``conditions`` holds at most NX alone, or XX together with at most one of
    GT and LT (Redis checks each of them; the front end refuses other mixes)."""

    at: Expiry | None
    conditions: frozenset[ExpireCondition] = frozenset()
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
        conds = self.conditions
        no_ttl = old == 0  # Redis treats "no TTL" as an infinite TTL for GT/LT
        if (
            (ExpireCondition.NX in conds and not no_ttl)
            or (ExpireCondition.XX in conds and no_ttl)
            or (ExpireCondition.GT in conds and (no_ttl or new <= old))
            or (ExpireCondition.LT in conds and not no_ttl and new >= old)
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
    """INCRBYFLOAT. Result: the new value as its decimal text.

    ``delta`` is best given as the client's raw argument (bytes), read exactly
    as Redis reads it; a float is read as its shortest decimal text (repr),
    which is the same number for any argument of up to 17 significant digits.
    """

    delta: float | bytes
    blind = False

    def apply(self, current: Version | None, now_ms: int, limits: Limits) -> Outcome:
        raw_delta = self.delta if isinstance(self.delta, bytes) else repr(self.delta).encode()
        delta = _string2ld(raw_delta)
        if delta is None:
            if isinstance(self.delta, float) and math.isnan(self.delta):
                return Outcome(errors.NAN_OR_INF)
            return Outcome(errors.NOT_FLOAT)
        base: Fraction | float = Fraction(0)
        if current is not None:
            parsed = _string2ld(current.value)
            if parsed is None:
                return Outcome(errors.NOT_FLOAT)
            base = parsed[1]
        if isinstance(base, float) or isinstance(delta[1], float):
            return Outcome(errors.NAN_OR_INF)  # an infinity: the sum is +-inf or NaN
        total = _round_long_double(base + delta[1])
        if isinstance(total, float):
            return Outcome(errors.NAN_OR_INF)
        text = _format_long_double(total)
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
        if self.offset < 0:  # t_string.c checks this before anything else
            return Outcome(errors.OFFSET_OUT_OF_RANGE)
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
