"""Mutations against Redis 7 semantics (t_string.c, expire.c, util.c).

Each table row is one command against one key state, with Redis 7's answer
and effect. The INCRBYFLOAT rows marked "redis" were checked against
redis-server 7.0.15 on x86-64, whose ``long double`` is the x87 80-bit format
that ``ops`` emulates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringkv.core import errors
from ringkv.core.clocks import Dot, HlcTimestamp
from ringkv.core.ops import (
    INT64_MAX,
    INT64_MIN,
    Append,
    Condition,
    Expire,
    ExpireCondition,
    Expiry,
    GetEx,
    IncrBy,
    IncrByFloat,
    Limits,
    Mutation,
    Outcome,
    Put,
    Remove,
    SetRange,
    format_float,
    parse_float,
    parse_int64,
)
from ringkv.core.record import Version

NOW = 1_700_000_000_000  # ms
LATER = NOW + 60_000
EARLIER = NOW - 60_000
LIMITS = Limits(max_value_bytes=8 * 1024 * 1024)


@dataclass(frozen=True)
class Key:
    """The key's current live value, as ``apply`` sees it."""

    value: bytes
    expires_at_ms: int = 0

    def version(self) -> Version:
        return Version(
            value=self.value,
            hlc=HlcTimestamp(NOW - 1, 0),
            dot=Dot("n1", 1),
            expires_at_ms=self.expires_at_ms,
        )


ABSENT = None


def run(mutation: Mutation, key: Key | None, limits: Limits = LIMITS, now_ms: int = NOW) -> Outcome:
    return mutation.apply(key.version() if key is not None else None, now_ms, limits)


def stored(result: object, value: bytes, expires_at_ms: int = 0) -> Outcome:
    return Outcome(result, value=value, expires_at_ms=expires_at_ms)


def deleted(result: object) -> Outcome:
    return Outcome(result, delete=True)


def answer(result: object) -> Outcome:
    """Answered, nothing written."""
    return Outcome(result)


def _table(*rows: tuple[str, Mutation, Key | None, Outcome]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(
        ("mutation", "key", "expected"),
        [pytest.param(m, k, e, id=name) for name, m, k, e in rows],
    )


def test_outcome_writes() -> None:
    assert not answer(1).writes
    assert stored(1, b"").writes  # an empty string is a value
    assert deleted(1).writes


def test_expiry_resolves_absolute_or_relative_to_the_write() -> None:
    assert Expiry(at_ms=5).resolve(NOW) == 5
    assert Expiry(ttl_ms=1500).resolve(NOW) == NOW + 1500


# -- SET --------------------------------------------------------------------


@_table(
    ("set-absent", Put(b"v"), ABSENT, stored(True, b"v")),
    ("set-clears-ttl", Put(b"v"), Key(b"old", LATER), stored(True, b"v")),
    ("set-empty-value", Put(b""), ABSENT, stored(True, b"")),
    ("nx-absent", Put(b"v", condition=Condition.NX), ABSENT, stored(True, b"v")),
    ("nx-present", Put(b"v", condition=Condition.NX), Key(b"old"), answer(False)),
    ("xx-absent", Put(b"v", condition=Condition.XX), ABSENT, answer(False)),
    ("xx-present", Put(b"v", condition=Condition.XX), Key(b"old", LATER), stored(True, b"v")),
    ("get-absent", Put(b"v", return_old=True), ABSENT, stored(None, b"v")),
    ("get-present", Put(b"v", return_old=True), Key(b"old"), stored(b"old", b"v")),
    # SET NX GET (Redis 7): the old value is answered whether or not it stored.
    (
        "nx-get-present",
        Put(b"v", condition=Condition.NX, return_old=True),
        Key(b"old"),
        answer(b"old"),
    ),
    (
        "nx-get-absent",
        Put(b"v", condition=Condition.NX, return_old=True),
        ABSENT,
        stored(None, b"v"),
    ),
    ("xx-get-absent", Put(b"v", condition=Condition.XX, return_old=True), ABSENT, answer(None)),
    (
        "xx-get-present",
        Put(b"v", condition=Condition.XX, return_old=True),
        Key(b"old"),
        stored(b"old", b"v"),
    ),
    ("keepttl-present", Put(b"v", keep_ttl=True), Key(b"old", LATER), stored(True, b"v", LATER)),
    ("keepttl-no-ttl", Put(b"v", keep_ttl=True), Key(b"old"), stored(True, b"v")),
    ("keepttl-absent", Put(b"v", keep_ttl=True), ABSENT, stored(True, b"v")),
    ("ex", Put(b"v", Expiry(ttl_ms=10_000)), ABSENT, stored(True, b"v", NOW + 10_000)),
    (
        "px-replaces-ttl",
        Put(b"v", Expiry(ttl_ms=1)),
        Key(b"old", LATER),
        stored(True, b"v", NOW + 1),
    ),
    ("exat", Put(b"v", Expiry(at_ms=LATER)), Key(b"old"), stored(True, b"v", LATER)),
    ("pxat-next-ms", Put(b"v", Expiry(at_ms=NOW + 1)), ABSENT, stored(True, b"v", NOW + 1)),
    # EXAT/PXAT in the past: OK, and the key is gone at once.
    ("exat-past-present", Put(b"v", Expiry(at_ms=EARLIER)), Key(b"old"), deleted(True)),
    ("exat-past-absent", Put(b"v", Expiry(at_ms=EARLIER)), ABSENT, answer(True)),
    ("pxat-now", Put(b"v", Expiry(at_ms=NOW)), Key(b"old"), deleted(True)),
    ("pxat-1", Put(b"v", Expiry(at_ms=1)), Key(b"old", LATER), deleted(True)),
    (
        "pxat-past-get",
        Put(b"v", Expiry(at_ms=EARLIER), return_old=True),
        Key(b"old"),
        deleted(b"old"),
    ),
    (
        "pxat-past-nx-present",
        Put(b"v", Expiry(at_ms=EARLIER), condition=Condition.NX),
        Key(b"old"),
        answer(False),
    ),
    (
        "pxat-past-xx-present",
        Put(b"v", Expiry(at_ms=EARLIER), condition=Condition.XX),
        Key(b"old"),
        deleted(True),
    ),
)
def test_set(mutation: Put, key: Key | None, expected: Outcome) -> None:
    assert run(mutation, key) == expected


@pytest.mark.parametrize(
    ("mutation", "blind"),
    [
        (Put(b"v"), True),
        (Put(b"v", Expiry(ttl_ms=5)), True),
        (Put(b"v", Expiry(at_ms=5)), True),
        (Put(b"v", condition=Condition.NX), False),
        (Put(b"v", condition=Condition.XX), False),
        (Put(b"v", return_old=True), False),
        (Put(b"v", keep_ttl=True), False),
        (Remove(), True),
        (Remove(return_old=True), False),  # GETDEL answers with what it read
        (Expire(Expiry(ttl_ms=5)), False),
        (GetEx(), False),
        (IncrBy(1), False),
        (IncrByFloat(1.0), False),
        (Append(b"x"), False),
        (SetRange(0, b"x"), False),
    ],
)
def test_blind_means_independent_of_the_current_value(mutation: Mutation, blind: bool) -> None:
    assert mutation.blind is blind


# -- DEL / GETDEL -------------------------------------------------------------


@_table(
    ("del-absent", Remove(), ABSENT, answer(False)),
    ("del-present", Remove(), Key(b"v", LATER), deleted(True)),
    ("getdel-absent", Remove(return_old=True), ABSENT, answer(None)),
    ("getdel-present", Remove(return_old=True), Key(b"v"), deleted(b"v")),
    ("getdel-empty-string", Remove(return_old=True), Key(b""), deleted(b"")),
)
def test_del_and_getdel(mutation: Remove, key: Key | None, expected: Outcome) -> None:
    assert run(mutation, key) == expected


# -- EXPIRE family and PERSIST ------------------------------------------------------

NX, XX, GT, LT = ExpireCondition.NX, ExpireCondition.XX, ExpireCondition.GT, ExpireCondition.LT
SOON = NOW + 1000
LATEST = NOW + 100_000


def expire(at_ms: int, *conditions: ExpireCondition) -> Expire:
    return Expire(Expiry(at_ms=at_ms), frozenset(conditions))


@_table(
    ("absent", expire(LATER), ABSENT, answer(False)),
    ("absent-lt", expire(LATER, LT), ABSENT, answer(False)),
    ("set", expire(LATER), Key(b"v"), stored(True, b"v", LATER)),
    ("replace", expire(SOON), Key(b"v", LATER), stored(True, b"v", SOON)),
    ("relative", Expire(Expiry(ttl_ms=5000)), Key(b"v"), stored(True, b"v", NOW + 5000)),
    ("past-deletes", expire(EARLIER), Key(b"v", LATER), deleted(True)),
    ("now-deletes", expire(NOW), Key(b"v"), deleted(True)),
    ("zero-ttl-deletes", Expire(Expiry(ttl_ms=0)), Key(b"v"), deleted(True)),
    ("negative-ttl-deletes", Expire(Expiry(ttl_ms=-1000)), Key(b"v"), deleted(True)),
    # NX: only when the key has no TTL
    ("nx-no-ttl", expire(LATER, NX), Key(b"v"), stored(True, b"v", LATER)),
    ("nx-ttl", expire(LATER, NX), Key(b"v", SOON), answer(False)),
    ("nx-no-ttl-past", expire(EARLIER, NX), Key(b"v"), deleted(True)),
    # XX: only when the key has a TTL
    ("xx-no-ttl", expire(LATER, XX), Key(b"v"), answer(False)),
    ("xx-ttl", expire(LATER, XX), Key(b"v", SOON), stored(True, b"v", LATER)),
    ("xx-ttl-past", expire(EARLIER, XX), Key(b"v", SOON), deleted(True)),
    # GT: no TTL is an infinite TTL, so GT never applies to it
    ("gt-no-ttl", expire(LATEST, GT), Key(b"v"), answer(False)),
    ("gt-greater", expire(LATEST, GT), Key(b"v", LATER), stored(True, b"v", LATEST)),
    ("gt-equal", expire(LATER, GT), Key(b"v", LATER), answer(False)),
    ("gt-smaller", expire(SOON, GT), Key(b"v", LATER), answer(False)),
    ("gt-past", expire(EARLIER, GT), Key(b"v", LATER), answer(False)),
    # LT: every TTL is less than no TTL
    ("lt-no-ttl", expire(LATEST, LT), Key(b"v"), stored(True, b"v", LATEST)),
    ("lt-no-ttl-past", expire(EARLIER, LT), Key(b"v"), deleted(True)),
    ("lt-smaller", expire(SOON, LT), Key(b"v", LATER), stored(True, b"v", SOON)),
    ("lt-equal", expire(LATER, LT), Key(b"v", LATER), answer(False)),
    ("lt-greater", expire(LATEST, LT), Key(b"v", LATER), answer(False)),
    ("lt-past", expire(EARLIER, LT), Key(b"v", LATER), deleted(True)),
    # XX applies together with GT or LT: no TTL fails XX even though LT alone
    # would treat it as infinite (Redis expireGenericCommand).
    ("xx-lt-no-ttl", expire(SOON, XX, LT), Key(b"v"), answer(False)),
    ("xx-lt-smaller", expire(SOON, XX, LT), Key(b"v", LATER), stored(True, b"v", SOON)),
    ("xx-gt-greater", expire(LATEST, XX, GT), Key(b"v", LATER), stored(True, b"v", LATEST)),
    # PERSIST
    ("persist-absent", Expire(None), ABSENT, answer(False)),
    ("persist-no-ttl", Expire(None), Key(b"v"), answer(False)),
    ("persist-ttl", Expire(None), Key(b"v", LATER), stored(True, b"v")),
)
def test_expire_and_persist(mutation: Expire, key: Key | None, expected: Outcome) -> None:
    assert run(mutation, key) == expected


# -- GETEX ---------------------------------------------------------------------------


@_table(
    ("absent", GetEx(), ABSENT, answer(None)),
    ("absent-ex", GetEx(Expiry(ttl_ms=10)), ABSENT, answer(None)),
    ("absent-persist", GetEx(persist=True), ABSENT, answer(None)),
    ("plain", GetEx(), Key(b"v", LATER), answer(b"v")),
    ("ex", GetEx(Expiry(ttl_ms=10_000)), Key(b"v"), stored(b"v", b"v", NOW + 10_000)),
    ("pxat", GetEx(Expiry(at_ms=LATEST)), Key(b"v", LATER), stored(b"v", b"v", LATEST)),
    ("pxat-past", GetEx(Expiry(at_ms=EARLIER)), Key(b"v"), deleted(b"v")),
    ("pxat-now", GetEx(Expiry(at_ms=NOW)), Key(b"v", LATER), deleted(b"v")),
    ("persist-ttl", GetEx(persist=True), Key(b"v", LATER), stored(b"v", b"v")),
    ("persist-no-ttl", GetEx(persist=True), Key(b"v"), answer(b"v")),
)
def test_getex(mutation: GetEx, key: Key | None, expected: Outcome) -> None:
    assert run(mutation, key) == expected


# -- INCR family ----------------------------------------------------------------------

MAX, MIN = str(INT64_MAX).encode(), str(INT64_MIN).encode()


@_table(
    ("incr-absent", IncrBy(1), ABSENT, stored(1, b"1")),
    ("decr-absent", IncrBy(-1), ABSENT, stored(-1, b"-1")),
    ("incrby-zero-absent", IncrBy(0), ABSENT, stored(0, b"0")),
    ("incrby", IncrBy(5), Key(b"10"), stored(15, b"15")),
    ("decrby-through-zero", IncrBy(-15), Key(b"10"), stored(-5, b"-5")),
    ("keeps-ttl", IncrBy(1), Key(b"41", LATER), stored(42, b"42", LATER)),
    ("zero", IncrBy(1), Key(b"0"), stored(1, b"1")),
    ("to-max", IncrBy(1), Key(str(INT64_MAX - 1).encode()), stored(INT64_MAX, MAX)),
    ("to-min", IncrBy(-1), Key(str(INT64_MIN + 1).encode()), stored(INT64_MIN, MIN)),
    ("max-plus-zero", IncrBy(0), Key(MAX), stored(INT64_MAX, MAX)),
    ("min-plus-max", IncrBy(INT64_MAX), Key(MIN), stored(-1, b"-1")),
    ("max-plus-min", IncrBy(INT64_MIN), Key(MAX), stored(-1, b"-1")),
    ("absent-plus-min", IncrBy(INT64_MIN), ABSENT, stored(INT64_MIN, MIN)),
    ("overflow-max", IncrBy(1), Key(MAX), answer(errors.OVERFLOW)),
    ("overflow-min", IncrBy(-1), Key(MIN), answer(errors.OVERFLOW)),
    ("overflow-big", IncrBy(INT64_MAX), Key(b"1"), answer(errors.OVERFLOW)),
    ("overflow-big-negative", IncrBy(INT64_MIN), Key(b"-1"), answer(errors.OVERFLOW)),
)
def test_incrby(mutation: IncrBy, key: Key | None, expected: Outcome) -> None:
    assert run(mutation, key) == expected


NOT_INTEGERS = [
    b"",
    b"-",
    b"+",
    b"01",  # no leading zeros
    b"00",
    b"-01",
    b"+1",  # no plus sign
    b" 1",  # no spaces
    b"1 ",
    b"1\n",
    b"1\x00",
    b"1.0",
    b"1.",
    b"1e3",
    b"0x10",
    b"-0",  # string2ll refuses minus zero
    b"abc",
    b"1_000",
    "١".encode(),  # an Arabic-Indic digit  # noqa: RUF001
    b"9223372036854775808",  # INT64_MAX + 1
    b"-9223372036854775809",  # INT64_MIN - 1
    b"18446744073709551616",
    b"99999999999999999999",
    b"1" * 21,
]


@pytest.mark.parametrize("value", NOT_INTEGERS)
def test_incr_refuses_a_value_that_is_not_exactly_an_int64(value: bytes) -> None:
    assert run(IncrBy(1), Key(value)) == answer(errors.NOT_INTEGER)
    assert parse_int64(value) is None


@pytest.mark.parametrize(
    ("raw", "value"),
    [(b"0", 0), (b"7", 7), (b"-7", -7), (b"10", 10), (MAX, INT64_MAX), (MIN, INT64_MIN)],
)
def test_parse_int64_accepts_the_canonical_form(raw: bytes, value: int) -> None:
    assert parse_int64(raw) == value


@given(st.integers(min_value=INT64_MIN, max_value=INT64_MAX))
def test_parse_int64_reads_back_every_int64(n: int) -> None:
    assert parse_int64(str(n).encode()) == n


@given(
    st.integers(min_value=INT64_MAX + 1, max_value=10**30)
    | st.integers(max_value=INT64_MIN - 1, min_value=-(10**30))
)
def test_parse_int64_refuses_out_of_range(n: int) -> None:
    assert parse_int64(str(n).encode()) is None


@given(st.binary(max_size=22) | st.text("0123456789-+ .", max_size=22).map(str.encode))
def test_parse_int64_accepts_exactly_canonical_decimals(raw: bytes) -> None:
    parsed = parse_int64(raw)
    if parsed is not None:
        assert str(parsed).encode() == raw
        assert INT64_MIN <= parsed <= INT64_MAX


@given(
    st.integers(min_value=INT64_MIN, max_value=INT64_MAX),
    st.integers(min_value=INT64_MIN, max_value=INT64_MAX),
)
def test_incrby_is_int64_addition_or_overflow(base: int, delta: int) -> None:
    outcome = run(IncrBy(delta), Key(str(base).encode()))
    if INT64_MIN <= base + delta <= INT64_MAX:
        assert outcome == stored(base + delta, str(base + delta).encode())
    else:
        assert outcome == answer(errors.OVERFLOW)


# -- INCRBYFLOAT ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "delta", "result"),
    [
        # The Redis documentation's examples.
        (b"10.50", 0.1, b"10.6"),
        (b"10.6", -5.0, b"5.6"),
        (b"5.0e3", 2.0e2, b"5200"),
        (b"3.0e3", 0.0, b"3000"),
        # tests/unit/type/incr.tcl
        (None, 1.0, b"1"),
        (b"1", 0.25, b"1.25"),
        (b"1.5", 1.5, b"3"),
        (b"17179869184", 1.5, b"17179869185.5"),
        (b"17179869184", 17179869184.0, b"34359738368"),
        (b"1", -1.1, b"-0.1"),
        # redis: long double arithmetic, printed "%.17Lf" without trailing zeros
        (b"0.1", 0.2, b"0.3"),  # binary64 would say 0.30000000000000004
        (b"12345678.1", 0.0, b"12345678.1000000000003638"),
        (b"1234567890123.1", 0.0, b"1234567890123.10000002384185791"),
        (b"0.000000000000000015", 0.0, b"0.00000000000000002"),
        (b"0.000000000000000025", 0.0, b"0.00000000000000002"),
        (b"0.000000000000000035", 0.0, b"0.00000000000000004"),
        (b"1e-20", 0.0, b"0"),  # rounds to zero at 17 decimals
        (b"0", -2e-20, b"0"),  # no negative zero
        (b"-0.000000000000000001", 0.0, b"0"),
        (b"-0", 0.0, b"0"),
        (b"1.", 0.0, b"1"),
        (b".5", 0.0, b"0.5"),
        (b"+.5e1", 0.0, b"5"),
        (b"0x10", 1.0, b"17"),  # strtold reads hexadecimal
        (b"0x1p-3", 0.0, b"0.125"),
        (b"0X1P+2", 0.0, b"4"),
        (b"0e-99999", 0.0, b"0"),
        (b"1e-4940", 0.0, b"0"),  # a subnormal long double: accepted
    ],
)
def test_incrbyfloat(current: bytes | None, delta: float, result: bytes) -> None:
    key = Key(current) if current is not None else None
    assert run(IncrByFloat(delta), key) == stored(result, result)


def test_incrbyfloat_past_the_double_range() -> None:
    # redis: 1e400 is a finite long double; it prints as its 401 digits.
    outcome = run(IncrByFloat(0.0), Key(b"1e400"))
    assert isinstance(outcome.result, bytes)
    assert outcome.result.startswith(b"10000000000000000000281880683947586514586453433629052038625")
    assert len(outcome.result) == 401
    assert outcome.value == outcome.result


def test_incrbyfloat_keeps_the_ttl() -> None:
    assert run(IncrByFloat(0.5), Key(b"20", LATER)) == stored(b"20.5", b"20.5", LATER)


@pytest.mark.parametrize(
    ("current", "delta"),
    [
        (b"inf", 0.0),
        (b"-inf", 1.0),
        (b"+Infinity", 0.0),
        (b"1", math.inf),
        (b"0", -math.inf),
        (b"1", math.nan),
        # the largest long double plus half an ulp rounds to infinity
        (b"0x1.fffffffffffffffep16383", b"0x1p16319"),
        (b"-0x1.fffffffffffffffep16383", b"-0x1p16319"),
        (b"1e4932", b"1e4932"),
    ],
)
def test_incrbyfloat_refuses_to_make_nan_or_infinity(current: bytes, delta: float | bytes) -> None:
    assert run(IncrByFloat(delta), Key(current)) == answer(errors.NAN_OR_INF)


NOT_FLOATS = [
    b"",
    b" 1",
    b"1 ",
    b"\t1",
    b"1\x002",  # strtold would stop at the NUL: Redis checks the whole length
    b"abc",
    b"nan",
    b"NaN",
    b"1e",
    b"1e+",
    b"e1",
    b".",
    b"-",
    b"--1",
    b"1_0",
    b"0x",
    b"0x1p",
    b"infin",
    b"1,5",
    b"1e4933",  # overflows a long double
    b"0x1p16384",
    b"1e-5000",  # underflows to zero
    b"0x1p-16446",  # half the smallest subnormal: rounds to zero
    b"1" * 5120,  # MAX_LONG_DOUBLE_CHARS
]


@pytest.mark.parametrize("value", NOT_FLOATS)
def test_incrbyfloat_refuses_a_value_that_is_not_a_float(value: bytes) -> None:
    assert run(IncrByFloat(1.0), Key(value)) == answer(errors.NOT_FLOAT)
    assert parse_float(value) is None


def test_incrbyfloat_reads_a_raw_increment_as_redis_does() -> None:
    assert run(IncrByFloat(b"0.1"), Key(b"10.50")) == stored(b"10.6", b"10.6")
    assert run(IncrByFloat(b"1e4932"), Key(b"0")).result != errors.NOT_FLOAT
    assert run(IncrByFloat(b"+inf"), Key(b"0")) == answer(errors.NAN_OR_INF)
    assert run(IncrByFloat(b"abc"), Key(b"0")) == answer(errors.NOT_FLOAT)
    assert run(IncrByFloat(b" 1"), None) == answer(errors.NOT_FLOAT)
    assert run(IncrByFloat(b"1e4933"), Key(b"0")) == answer(errors.NOT_FLOAT)


@given(
    st.integers(min_value=-(2**53), max_value=2**53),
    st.integers(min_value=-(2**53), max_value=2**53),
)
def test_incrbyfloat_on_integers_is_exact(base: int, delta: int) -> None:
    text = str(base + delta).encode()
    assert run(IncrByFloat(float(delta)), Key(str(base).encode())) == stored(text, text)


@given(
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e30, max_value=1e30),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e30, max_value=1e30),
)
def test_incrbyfloat_output_is_plain_decimal_and_a_fixpoint(base: float, delta: float) -> None:
    first = run(IncrByFloat(delta), Key(repr(base).encode()))
    assert isinstance(first.result, bytes)
    text = first.result
    assert set(text) <= set(b"-.0123456789")
    assert not text.startswith(b"-0") or text.startswith(b"-0.")
    if b"." in text:
        assert not text.endswith((b"0", b"."))
        assert len(text.split(b".")[1]) <= 17
    # Close to the exact sum of the two decimals: each is read to 64 bits, the
    # sum rounded to 64 bits, then printed to 17 decimals.
    exact = Fraction(repr(base)) + Fraction(repr(delta))
    error = abs(Fraction(text.decode()) - exact)
    assert error <= (abs(Fraction(base)) + abs(Fraction(delta))) / 2**62 + Fraction(1, 10**17)
    # Adding zero to the answer gives the answer back.
    assert run(IncrByFloat(0.0), Key(text)).result == text


# -- parse_float / format_float -------------------------------------------------------------


@given(st.floats(allow_nan=False))
def test_parse_float_reads_back_every_double(x: float) -> None:
    assert parse_float(repr(x).encode()) == x
    assert parse_float(f"{x:.17g}".encode()) == x
    if math.isfinite(x):
        assert parse_float(x.hex().encode()) == x


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"0", 0.0),
        (b"-0", 0.0),
        (b"1.5", 1.5),
        (b"+1.5", 1.5),
        (b"-.5", -0.5),
        (b"1.", 1.0),
        (b"1E3", 1000.0),
        (b"1e+3", 1000.0),
        (b"0x1.8p1", 3.0),
        (b"inf", math.inf),
        (b"-INF", -math.inf),
        (b"+infinity", math.inf),
        (b"1e400", math.inf),  # a finite long double, but no finite double
        (b"1e-400", 0.0),  # a nonzero long double, below the double range
        (b"00012.50", 12.5),
    ],
)
def test_parse_float_accepts_what_string2ld_accepts(raw: bytes, value: float) -> None:
    assert parse_float(raw) == value


@given(st.text("0123456789.eE+-xXpPinfaty ", max_size=12).map(str.encode))
def test_parse_float_agrees_with_python_on_plain_decimals(raw: bytes) -> None:
    parsed = parse_float(raw)
    if parsed is None:
        return
    assert not raw[:1].isspace() and not raw[-1:].isspace()
    if b"x" not in raw.lower():
        assert parsed == float(raw)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (10.6, b"10.6"),
        (3000.0, b"3000"),
        (-0.0, b"0"),
        (-1e-20, b"0"),
        (1e-5, b"0.00001"),
        (1e17, b"100000000000000000"),
        (-2.5, b"-2.5"),
        (math.inf, b"inf"),
        (-math.inf, b"-inf"),
    ],
)
def test_format_float(value: float, text: bytes) -> None:
    assert format_float(value) == text


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_format_float_has_no_exponent_and_reads_back(x: float) -> None:
    text = format_float(x)
    assert b"e" not in text.lower()
    if x == 0 or abs(x) >= 1e-4:
        assert float(text) == x


# -- APPEND ---------------------------------------------------------------------------------

SMALL = Limits(max_value_bytes=10)


@_table(
    ("absent", Append(b"ab"), ABSENT, stored(2, b"ab")),
    ("present", Append(b"cd"), Key(b"ab"), stored(4, b"abcd")),
    ("keeps-ttl", Append(b"cd"), Key(b"ab", LATER), stored(4, b"abcd", LATER)),
    ("empty-on-absent-creates-the-key", Append(b""), ABSENT, stored(0, b"")),
    ("empty-on-present", Append(b""), Key(b"ab"), stored(2, b"ab")),
    ("binary", Append(b"\x00\xff"), Key(b"\x01"), stored(3, b"\x01\x00\xff")),
)
def test_append(mutation: Append, key: Key | None, expected: Outcome) -> None:
    assert run(mutation, key) == expected


def test_append_up_to_the_limit_and_no_further() -> None:
    assert run(Append(b"12345"), Key(b"abcde"), SMALL) == stored(10, b"abcde12345")
    assert run(Append(b"123456"), Key(b"abcde"), SMALL) == answer(errors.STRING_TOO_LONG)
    assert run(Append(b"x" * 11), ABSENT, SMALL) == answer(errors.STRING_TOO_LONG)


# -- SETRANGE -------------------------------------------------------------------------------


@_table(
    ("absent", SetRange(0, b"ab"), ABSENT, stored(2, b"ab")),
    ("absent-pads-with-zeros", SetRange(3, b"ab"), ABSENT, stored(5, b"\x00\x00\x00ab")),
    ("overwrite-inside", SetRange(1, b"EY"), Key(b"hello"), stored(5, b"hEYlo")),
    ("overwrite-at-start", SetRange(0, b"J"), Key(b"hello"), stored(5, b"Jello")),
    ("extend-at-end", SetRange(5, b"!!"), Key(b"hello"), stored(7, b"hello!!")),
    ("overlap-the-end", SetRange(3, b"LOWORLD"), Key(b"hello"), stored(10, b"helLOWORLD")),
    ("pad-past-the-end", SetRange(7, b"!"), Key(b"hello"), stored(8, b"hello\x00\x00!")),
    ("keeps-ttl", SetRange(0, b"J"), Key(b"hello", LATER), stored(5, b"Jello", LATER)),
    # Setting nothing answers the length and writes nothing, whatever the offset.
    ("empty-absent", SetRange(5, b""), ABSENT, answer(0)),
    ("empty-present", SetRange(2, b""), Key(b"hello"), answer(5)),
    ("empty-present-far", SetRange(10**12, b""), Key(b"hello"), answer(5)),
    ("empty-absent-far", SetRange(10**12, b""), ABSENT, answer(0)),
    # A negative offset is an error before anything else.
    ("negative", SetRange(-1, b"x"), Key(b"hello"), answer(errors.OFFSET_OUT_OF_RANGE)),
    ("negative-empty", SetRange(-1, b""), Key(b"hello"), answer(errors.OFFSET_OUT_OF_RANGE)),
    ("negative-absent", SetRange(-5, b""), ABSENT, answer(errors.OFFSET_OUT_OF_RANGE)),
)
def test_setrange(mutation: SetRange, key: Key | None, expected: Outcome) -> None:
    assert run(mutation, key) == expected


@_table(
    ("end-at-limit", SetRange(8, b"ab"), Key(b"x"), stored(10, b"x" + b"\x00" * 7 + b"ab")),
    ("end-past-limit", SetRange(9, b"ab"), Key(b"x"), answer(errors.STRING_TOO_LONG)),
    ("absent-past-limit", SetRange(10, b"a"), ABSENT, answer(errors.STRING_TOO_LONG)),
    # Redis checks offset + length, not the resulting length.
    ("inside-a-full-value", SetRange(0, b"ab"), Key(b"x" * 10), stored(10, b"ab" + b"x" * 8)),
    ("huge-offset", SetRange(2**62, b"a"), Key(b"x"), answer(errors.STRING_TOO_LONG)),
)
def test_setrange_limits(mutation: SetRange, key: Key | None, expected: Outcome) -> None:
    assert run(mutation, key, SMALL) == expected


@given(
    st.binary(max_size=20),
    st.integers(min_value=0, max_value=30),
    st.binary(min_size=1, max_size=10),
)
def test_setrange_matches_a_bytearray_model(old: bytes, offset: int, data: bytes) -> None:
    model = bytearray(old)
    if len(model) < offset:
        model.extend(b"\x00" * (offset - len(model)))
    model[offset : offset + len(data)] = data
    assert run(SetRange(offset, data), Key(old)) == stored(len(model), bytes(model))
