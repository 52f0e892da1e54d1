"""Unit tests of the sans-IO RESP request parser and reply encoder
(src/ringkv/frontend/resp.py), with Hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ringkv.core.errors import ErrorKind, OpError
from ringkv.frontend.resp import (
    DISCARD_MAX_BYTES,
    INLINE_MAX_BYTES,
    UNAUTH_ARGS_MAX,
    UNAUTH_BULK_MAX,
    Double,
    Oversized,
    ParserLimits,
    ProtocolError,
    Push,
    RequestParser,
    RespMap,
    RespSet,
    SimpleString,
    Verbatim,
    encode,
    split_inline,
)

# -- helpers --------------------------------------------------------------------


def multibulk(args: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def feed_chunks(parser: RequestParser, data: bytes, cuts: list[int]) -> list[list[bytes]]:
    out: list[list[bytes]] = []
    previous = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        out.extend(parser.feed(data[previous:cut]))
        previous = cut
    return out


def encoded(reply: object, proto: int) -> bytes:
    out: list[bytes] = []
    encode(reply, proto, out)
    return b"".join(out)


args_strategy = st.lists(st.binary(max_size=40), min_size=1, max_size=6)
requests_strategy = st.lists(args_strategy, min_size=1, max_size=8)


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[int]:
    return draw(st.lists(st.integers(0, len(data)), max_size=12))


# -- multibulk round trips ----------------------------------------------------------


@given(requests_strategy, st.data())
def test_multibulk_in_random_chunks_round_trips(
    requests: list[list[bytes]], data: st.DataObject
) -> None:
    stream = b"".join(multibulk(args) for args in requests)
    cuts = data.draw(chunked(stream))
    parser = RequestParser()
    assert feed_chunks(parser, stream, cuts) == requests
    assert parser.buffered_bytes == 0


@given(requests_strategy)
def test_multibulk_fed_a_byte_at_a_time(requests: list[list[bytes]]) -> None:
    stream = b"".join(multibulk(args) for args in requests)
    parser = RequestParser()
    out: list[list[bytes]] = []
    for i in range(len(stream)):
        out.extend(parser.feed(stream[i : i + 1]))
    assert out == requests


def test_every_split_point_of_a_mixed_pipeline() -> None:
    stream = (
        multibulk([b"SET", b"k", b"a\r\nb"]) + b"GET k\r\n" + b'ECHO "x\\ty"\n'
        + multibulk([b"PING"]) + b"*0\r\n" + b"\r\n" + multibulk([b"ECHO", b""])
    )  # fmt: skip
    expected = [
        [b"SET", b"k", b"a\r\nb"],
        [b"GET", b"k"],
        [b"ECHO", b"x\ty"],
        [b"PING"],
        [b"ECHO", b""],
    ]
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1):
            parser = RequestParser()
            assert feed_chunks(parser, stream, [i, j]) == expected, (i, j)


def test_incomplete_frames_wait() -> None:
    parser = RequestParser()
    frame = multibulk([b"SET", b"key", b"x" * 1000])
    assert parser.feed(frame[:-1]) == []
    assert parser.buffered_bytes == len(frame) - 1
    assert parser.feed(frame[-1:]) == [[b"SET", b"key", b"x" * 1000]]
    assert parser.buffered_bytes == 0


def test_large_bulk_in_many_chunks_is_joined() -> None:
    value = bytes(range(256)) * 4096
    frame = multibulk([b"SET", b"k", value])
    parser = RequestParser()
    out: list[list[bytes]] = []
    for start in range(0, len(frame), 4096):
        out.extend(parser.feed(frame[start : start + 4096]))
    assert out == [[b"SET", b"k", value]]


# -- garbage never escapes as anything but ProtocolError --------------------------------

garbage_bytes = st.one_of(
    st.binary(max_size=200),
    st.lists(
        st.sampled_from(
            [b"*", b"$", b"\r\n", b"\n", b"\r", b"1", b"2", b"0", b"-", b"9" * 20, b":", b'"',
             b"'", b"\\", b"x", b"a", b" ", b"\x00", b"*2\r\n", b"$3\r\n", b"SET", b"\xff"]
        ),
        max_size=40,
    ).map(b"".join),
)  # fmt: skip


@given(garbage_bytes, st.data(), st.booleans())
@settings(max_examples=500)
def test_garbage_raises_only_protocol_error(
    data_bytes: bytes, data: st.DataObject, authenticated: bool
) -> None:
    cuts = data.draw(chunked(data_bytes))
    parser = RequestParser(
        ParserLimits(args_max=64, bulk_max_bytes=1024), authenticated=authenticated
    )
    returned = 0
    try:
        previous = 0
        for cut in [*sorted(set(cuts)), len(data_bytes)]:
            for args in parser.feed(data_bytes[previous:cut]):
                assert args, "empty requests are never returned"
                assert all(isinstance(a, bytes) for a in args)
                returned += sum(len(a) for a in args)
            previous = cut
    except ProtocolError as exc:
        assert str(exc).startswith("Protocol error: ")
        with pytest.raises(ProtocolError):  # the error is final
            parser.feed(b"PING\r\n")
    assert returned <= len(data_bytes)
    assert parser.buffered_bytes <= len(data_bytes)


# -- exact errors and limits --------------------------------------------------------------

ERRORS = [
    (b"*1\r\n:5\r\n", "Protocol error: expected '$', got ':'"),
    (b"*1\r\n\x01", "Protocol error: expected '$', got '\\x01'"),
    (b"*-1\r\n", "Protocol error: invalid multibulk length"),
    (b"*abc\r\n", "Protocol error: invalid multibulk length"),
    (b"*01\r\n", "Protocol error: invalid multibulk length"),
    (b"*99999999999999999999\r\n", "Protocol error: invalid multibulk length"),
    (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
    (b"*1\r\n$00\r\n", "Protocol error: invalid bulk length"),
    (b"*1\r\n$1x\r\n", "Protocol error: invalid bulk length"),
    (b"*1\r\n$" + b"1" * 40, "Protocol error: invalid bulk length"),
    (b"*1\r\n$2\r\nabc\r\n", "Protocol error: expected CRLF after bulk data"),
    (b"*" + b"1" * (INLINE_MAX_BYTES + 1), "Protocol error: too big mbulk count string"),
    (b"x" * (INLINE_MAX_BYTES + 1), "Protocol error: too big inline request"),
    (b"x" * (INLINE_MAX_BYTES + 1) + b"\n", "Protocol error: too big inline request"),
    (b'GET "k\r\n', "Protocol error: unbalanced quotes in request"),
]


@pytest.mark.parametrize(("data", "message"), ERRORS)
def test_exact_errors(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as excinfo:
        RequestParser().feed(data)
    assert str(excinfo.value) == message


def test_limits_on_arguments_and_bulks() -> None:
    limits = ParserLimits(args_max=3, bulk_max_bytes=10)
    assert RequestParser(limits).feed(multibulk([b"a", b"b", b"c"])) == [[b"a", b"b", b"c"]]
    with pytest.raises(ProtocolError, match="invalid multibulk length"):
        RequestParser(limits).feed(b"*4\r\n")
    assert RequestParser(limits).feed(multibulk([b"x" * 10])) == [[b"x" * 10]]
    # Over the bulk limit: the request is discarded as it streams in, and an
    # Oversized marker takes its place; the next request parses normally.
    parser = RequestParser(limits)
    assert parser.feed(b"*3\r\n$3\r\nSET\r\n$11\r\nxxxxx") == []
    assert parser.buffered_bytes > 0  # mid-request, for the half-sent timeout
    assert parser.feed(b"xxxxxx\r\n$12\r\n") == []
    out = parser.feed(b"yyyyyyyyyyyy\r\n*1\r\n$4\r\nPING\r\n")
    assert len(out) == 2 and type(out[0]) is Oversized and out[0].size == 12
    assert out[1] == [b"PING"]
    assert parser.buffered_bytes == 0
    with pytest.raises(ProtocolError, match="invalid bulk length"):
        RequestParser(limits).feed(b"*1\r\n$%d\r\n" % (DISCARD_MAX_BYTES + 1))
    with pytest.raises(ProtocolError, match="expected '\\$', got 'x'"):
        RequestParser(limits).feed(b"*2\r\n$11\r\n" + b"x" * 11 + b"\r\nxyz\r\n")


def test_small_frames_before_auth() -> None:
    parser = RequestParser(authenticated=False)
    small = multibulk([b"MGET", *[b"k"] * (UNAUTH_ARGS_MAX - 1)])
    assert parser.feed(small) == [[b"MGET", *[b"k"] * (UNAUTH_ARGS_MAX - 1)]]
    with pytest.raises(ProtocolError, match=r"^Protocol error: unauthenticated multibulk length$"):
        RequestParser(authenticated=False).feed(b"*%d\r\n" % (UNAUTH_ARGS_MAX + 1))
    assert RequestParser(authenticated=False).feed(multibulk([b"x" * UNAUTH_BULK_MAX]))
    with pytest.raises(ProtocolError, match=r"^Protocol error: unauthenticated bulk length$"):
        RequestParser(authenticated=False).feed(b"*1\r\n$%d\r\n" % (UNAUTH_BULK_MAX + 1))
    with pytest.raises(ProtocolError, match="unauthenticated"):
        RequestParser(authenticated=False).feed(b"MGET" + b" k" * UNAUTH_ARGS_MAX + b"\r\n")


def test_unauthenticated_parser_returns_one_request_at_a_time() -> None:
    parser = RequestParser(authenticated=False)
    stream = b"AUTH pw\r\n" + multibulk([b"MGET", *[b"k"] * 20])
    assert parser.feed(stream) == [[b"AUTH", b"pw"]]
    parser.authenticated = True  # what the server does once AUTH succeeded
    assert parser.feed(b"") == [[b"MGET", *[b"k"] * 20]]


def test_requests_before_an_error_come_first() -> None:
    parser = RequestParser()
    stream = multibulk([b"SET", b"a", b"b"]) + b"PING\r\n" + b"*1\r\n:1\r\n" + b"PING\r\n"
    assert parser.feed(stream) == [[b"SET", b"a", b"b"], [b"PING"]]
    assert parser.failed
    with pytest.raises(ProtocolError, match="expected '\\$', got ':'"):
        parser.feed(b"")
    with pytest.raises(ProtocolError):
        parser.feed(b"PING\r\n")


def test_empty_inline_lines_and_empty_multibulk_are_skipped() -> None:
    assert RequestParser().feed(b"\r\n\n  \t \r\n*0\r\nPING\r\n") == [[b"PING"]]


# -- inline splitting: Redis's sdssplitargs ----------------------------------------------


def sdssplitargs(line: bytes) -> list[bytes] | None:
    """A line-by-line transcription of Redis's sdssplitargs (sds.c); None
    where it fails (unbalanced quotes). NUL-free input only: C stops there."""
    assert b"\x00" not in line

    def at(i: int) -> int:
        return line[i] if i < len(line) else 0

    def isspace(c: int) -> bool:
        return c in b" \t\n\v\f\r"

    def is_hex(c: int) -> bool:
        return c != 0 and c in b"0123456789abcdefABCDEF"

    p = 0
    out: list[bytes] = []
    while True:
        while at(p) and isspace(at(p)):
            p += 1
        if not at(p):
            return out
        inq = insq = done = False
        current = bytearray()
        while not done:
            c = at(p)
            if inq:
                if (
                    c == ord("\\")
                    and at(p + 1) == ord("x")
                    and is_hex(at(p + 2))
                    and is_hex(at(p + 3))
                ):
                    current.append(int(bytes([at(p + 2), at(p + 3)]), 16))
                    p += 3
                elif c == ord("\\") and at(p + 1):
                    p += 1
                    current.append(
                        {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}.get(
                            at(p), at(p)
                        )
                    )
                elif c == ord('"'):
                    if at(p + 1) and not isspace(at(p + 1)):
                        return None
                    done = True
                elif not c:
                    return None
                else:
                    current.append(c)
            elif insq:
                if c == ord("\\") and at(p + 1) == ord("'"):
                    p += 1
                    current.append(ord("'"))
                elif c == ord("'"):
                    if at(p + 1) and not isspace(at(p + 1)):
                        return None
                    done = True
                elif not c:
                    return None
                else:
                    current.append(c)
            elif c in (ord(" "), ord("\n"), ord("\r"), ord("\t"), 0):
                done = True
            elif c == ord('"'):
                inq = True
            elif c == ord("'"):
                insq = True
            else:
                current.append(c)
            if at(p):
                p += 1
        out.append(bytes(current))


inline_alphabet = st.sampled_from(
    [b"a", b"b", b"x", b"4", b"F", b"g", b" ", b"\t", b"\v", b"\f", b"\r", b"\n", b'"', b"'",
     b"\\", b"\\x", b"\\n", b"\\'", b'\\"', b"\xc3\xa9"]
)  # fmt: skip


@given(st.lists(inline_alphabet, max_size=30).map(b"".join))
@settings(max_examples=1000)
def test_inline_split_matches_sdssplitargs(line: bytes) -> None:
    expected = sdssplitargs(line)
    if expected is None:
        with pytest.raises(ProtocolError, match=r"^Protocol error: unbalanced quotes in request$"):
            split_inline(line)
    else:
        assert split_inline(line) == expected


INLINE_CASES = [
    (b"SET k v", [b"SET", b"k", b"v"]),
    (b"  SET   k\tv  ", [b"SET", b"k", b"v"]),
    (b"SET \"a b\" 'c d'", [b"SET", b"a b", b"c d"]),
    (b'ECHO "\\x41\\x4a\\n\\r\\t\\b\\a\\z\\\\\\""', [b"ECHO", b'AJ\n\r\t\b\az\\"']),
    (b'ECHO "\\x4"', [b"ECHO", b"x4"]),
    (b"ECHO 'it\\'s' '\\n'", [b"ECHO", b"it's", b"\\n"]),
    (b'ECHO ""', [b"ECHO", b""]),
    (b"ECHO a\vb", [b"ECHO", b"a\vb"]),
    (b'ECHO "a"\vb', [b"ECHO", b"a", b"b"]),
    (b'ECHO a"b"', [b"ECHO", b"ab"]),
]


@pytest.mark.parametrize(("line", "expected"), INLINE_CASES)
def test_inline_cases(line: bytes, expected: list[bytes]) -> None:
    assert split_inline(line) == expected
    assert sdssplitargs(line) == expected


@pytest.mark.parametrize("line", [b'"a', b"'a", b'"a"b', b"'a'b", b'"\\"', b"a 'b"])
def test_inline_unbalanced(line: bytes) -> None:
    assert sdssplitargs(line) is None
    with pytest.raises(ProtocolError, match="unbalanced quotes"):
        split_inline(line)


@given(st.lists(st.binary(min_size=0, max_size=20), min_size=1, max_size=6))
def test_inline_quoting_round_trips(args: list[bytes]) -> None:
    """Any bytes, double-quoted with \\xHH escapes, come back as they were."""
    line = b" ".join(b'"' + b"".join(b"\\x%02x" % c for c in a) + b'"' for a in args)
    assert RequestParser().feed(line + b"\r\n") == [args]


def test_inline_line_ending_is_lf_or_crlf() -> None:
    assert RequestParser().feed(b"PING\nPING\r\nECHO a\r\r\n") == [
        [b"PING"],
        [b"PING"],
        [b"ECHO", b"a"],
    ]


# -- encoding -------------------------------------------------------------------------------

ENCODINGS: list[tuple[object, bytes, bytes]] = [
    (b"bulk", b"$4\r\nbulk\r\n", b"$4\r\nbulk\r\n"),
    (b"", b"$0\r\n\r\n", b"$0\r\n\r\n"),
    ("text é", b"$7\r\ntext \xc3\xa9\r\n", b"$7\r\ntext \xc3\xa9\r\n"),
    (SimpleString("OK"), b"+OK\r\n", b"+OK\r\n"),
    (42, b":42\r\n", b":42\r\n"),
    (-(2**63), b":-9223372036854775808\r\n", b":-9223372036854775808\r\n"),
    (None, b"$-1\r\n", b"_\r\n"),
    (True, b":1\r\n", b"#t\r\n"),
    (False, b":0\r\n", b"#f\r\n"),
    ([], b"*0\r\n", b"*0\r\n"),
    ([b"a", 1, None, [b"b"]], b"*4\r\n$1\r\na\r\n:1\r\n$-1\r\n*1\r\n$1\r\nb\r\n",
     b"*4\r\n$1\r\na\r\n:1\r\n_\r\n*1\r\n$1\r\nb\r\n"),
    (RespMap({"k": 1, b"v": [True]}), b"*4\r\n$1\r\nk\r\n:1\r\n$1\r\nv\r\n*1\r\n:1\r\n",
     b"%2\r\n$1\r\nk\r\n:1\r\n$1\r\nv\r\n*1\r\n#t\r\n"),
    (RespSet([b"a", b"b"]), b"*2\r\n$1\r\na\r\n$1\r\nb\r\n", b"~2\r\n$1\r\na\r\n$1\r\nb\r\n"),
    (Push([b"message", b"x"]), b"*2\r\n$7\r\nmessage\r\n$1\r\nx\r\n",
     b">2\r\n$7\r\nmessage\r\n$1\r\nx\r\n"),
    (Double(1.5), b"$3\r\n1.5\r\n", b",1.5\r\n"),
    (Double(3.0), b"$1\r\n3\r\n", b",3\r\n"),
    (Double(-0.0), b"$2\r\n-0\r\n", b",-0\r\n"),
    (Double(float("inf")), b"$3\r\ninf\r\n", b",inf\r\n"),
    (Double(float("-inf")), b"$4\r\n-inf\r\n", b",-inf\r\n"),
    (Double(float("nan")), b"$3\r\nnan\r\n", b",nan\r\n"),
    (Verbatim("a\r\nb"), b"$4\r\na\r\nb\r\n", b"=8\r\ntxt:a\r\nb\r\n"),
    (OpError(ErrorKind.INVALID, "syntax error"), b"-ERR syntax error\r\n", b"-ERR syntax error\r\n"),
    (OpError(ErrorKind.INVALID, "bad\r\nline", code="WRONGTYPE"),
     b"-WRONGTYPE bad  line\r\n", b"-WRONGTYPE bad  line\r\n"),
]  # fmt: skip


@pytest.mark.parametrize(("reply", "resp2", "resp3"), ENCODINGS)
def test_encode(reply: object, resp2: bytes, resp3: bytes) -> None:
    assert encoded(reply, 2) == resp2
    assert encoded(reply, 3) == resp3


def test_encode_refuses_unknown_types() -> None:
    with pytest.raises(TypeError):
        encoded(object(), 2)
    with pytest.raises(TypeError):
        encoded(1.5, 3)  # a plain float must be wrapped as Double


reply_values = st.recursive(
    st.one_of(
        st.binary(max_size=20),
        st.integers(-(2**63), 2**63 - 1),
        st.none(),
        st.booleans(),
        st.text(max_size=10).map(SimpleString).filter(lambda s: "\r" not in s and "\n" not in s),
    ),
    lambda children: st.lists(children, max_size=4),
    max_leaves=12,
)


@given(reply_values, st.sampled_from([2, 3]))
def test_encoded_replies_parse_back_with_hiredis(reply: object, proto: int) -> None:
    hiredis = pytest.importorskip("hiredis")
    reader = hiredis.Reader()
    reader.feed(encoded(reply, proto))

    def expected(value: object) -> object:
        if isinstance(value, list):
            return [expected(v) for v in value]
        if isinstance(value, SimpleString):
            return value.encode()
        if isinstance(value, bool) and proto == 2:
            return int(value)
        return value

    assume(not (isinstance(reply, SimpleString) and reply == ""))
    assert reader.gets() == expected(reply)
    assert reader.gets() is False
