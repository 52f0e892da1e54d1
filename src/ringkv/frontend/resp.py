"""RESP2/RESP3: a strict request parser and a reply encoder, sans-IO.

Theory of operation. hiredis' Reader parses *replies*: it rejects inline
commands, accepts reply types (integers, errors, nested arrays) as command
arguments and puts no bound on a bulk length. A server needs the opposite, so
requests are parsed here, as strictly as Redis's ``processMultibulkBuffer``
and ``processInlineBuffer`` (networking.c) and with the same error texts, plus
limits on everything: the number of arguments, the length of one bulk, the
length of an inline line and of a header line. Before a client has
authenticated it may send only a small frame, as Redis allows (a few
arguments, short bulks), so a stranger cannot make the server buffer much.

The parser never buffers more than one request plus one read: when a bulk is
incomplete it remembers how many bytes it needs and waits for them before
parsing again, so a large value arriving in many reads is joined once.
A protocol error is final for the connection: the caller answers it and
closes, as Redis does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ringkv.core.errors import OpError

__all__ = [
    "DISCARD_MAX_BYTES",
    "Double",
    "Oversized",
    "ParserLimits",
    "ProtocolError",
    "Push",
    "RequestParser",
    "RespMap",
    "RespSet",
    "SimpleString",
    "Verbatim",
    "encode",
]

_CRLF = b"\r\n"
INLINE_MAX_BYTES = 64 * 1024  # Redis PROTO_INLINE_MAX_SIZE
UNAUTH_ARGS_MAX = 10  # Redis: multibulk length limit before AUTH
UNAUTH_BULK_MAX = 16 * 1024  # Redis: bulk length limit before AUTH


DISCARD_MAX_BYTES = 512 * 1024 * 1024  # Redis proto-max-bulk-len: past it, a protocol error


class Oversized(list[bytes]):
    """Stands in for a request that had an argument over the bulk limit.

    The request was read and dropped without being buffered; the caller
    answers a clear error (nothing was stored) and keeps the connection."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size


class ProtocolError(Exception):
    """Malformed request; the text is what Redis would answer after ``ERR``."""


@dataclass(frozen=True, slots=True)
class ParserLimits:
    args_max: int = 1024 * 1024  # Redis: invalid multibulk length past 1M
    bulk_max_bytes: int = 16 * 1024 * 1024 + 64 * 1024


class RequestParser:
    """Feed bytes, take complete requests (lists of arguments)."""

    __slots__ = (
        "_buf",
        "_chunks",
        "_error",
        "_have",
        "_need",
        "_skip_args",
        "_skip_bytes",
        "_skip_size",
        "_skipping",
        "authenticated",
        "limits",
    )

    def __init__(self, limits: ParserLimits | None = None, *, authenticated: bool = True) -> None:
        self.limits = limits or ParserLimits()
        self.authenticated = authenticated
        self._buf = b""
        self._chunks: list[bytes] = []
        self._have = 0
        self._need = 0
        self._error: ProtocolError | None = None
        # Discarding a request with an oversized bulk: bytes still to drop,
        # whole arguments still to drop after them, and the largest size seen.
        self._skipping = False
        self._skip_bytes = 0
        self._skip_args = 0
        self._skip_size = 0

    @property
    def buffered_bytes(self) -> int:
        """Bytes of an incomplete request held (at least 1 while discarding one)."""
        return len(self._buf) + self._have + (1 if self._skipping else 0)

    @property
    def failed(self) -> bool:
        """A protocol error is waiting: the next ``feed`` raises it."""
        return self._error is not None

    def feed(self, data: bytes) -> list[list[bytes]]:
        """Add bytes; return every request now complete (raises ProtocolError).

        Requests that precede a malformed one in the same bytes are returned
        first, and the error is raised by the next call, so that they run and
        are answered before the error, as in Redis."""
        if self._error is not None:
            raise self._error
        if self._need:
            self._chunks.append(data)
            self._have += len(data)
            if len(self._buf) + self._have < self._need:
                return []
            self._buf = self._buf + b"".join(self._chunks)
            self._chunks.clear()
            self._have = 0
            self._need = 0
        elif self._buf:
            self._buf += data
        else:
            self._buf = data
        return self._parse()

    def _parse(self) -> list[list[bytes]]:
        buf = self._buf
        size = len(buf)
        pos = 0
        out: list[list[bytes]] = []
        try:
            while True:
                if self._skipping:
                    pos, done = self._skip(buf, pos, size)
                    if not done:
                        break
                    self._skipping = False
                    out.append(Oversized(self._skip_size))
                    continue
                if pos >= size:
                    break
                if buf[pos] == 42:  # '*'
                    args, end = self._multibulk(buf, pos, size)
                else:
                    args, end = self._inline(buf, pos, size)
                if end < 0:
                    break
                pos = end
                if args:
                    out.append(args)
                if not self.authenticated and out:
                    break  # after a command that may be AUTH, limits may change
        except ProtocolError as exc:
            # Final for the connection: later feeds raise it again.
            self._error = exc
            self._buf = b""
            self._need = 0
            if not out:
                raise
            return out
        self._buf = buf[pos:] if pos else buf
        return out

    def _multibulk(self, buf: bytes, pos: int, size: int) -> tuple[list[bytes], int]:
        nl = buf.find(_CRLF, pos)
        if nl < 0:
            if size - pos > INLINE_MAX_BYTES:
                raise ProtocolError("Protocol error: too big mbulk count string")
            return [], -1
        count = _parse_length(buf, pos + 1, nl)
        if count is None or count > self.limits.args_max:
            raise ProtocolError("Protocol error: invalid multibulk length")
        if not self.authenticated and count > UNAUTH_ARGS_MAX:
            raise ProtocolError("Protocol error: unauthenticated multibulk length")
        bulk_max = self.limits.bulk_max_bytes if self.authenticated else UNAUTH_BULK_MAX
        p = nl + 2
        args: list[bytes] = []
        for _ in range(count):
            if p >= size:
                return [], -1
            if buf[p] != 36:  # '$'
                got = chr(buf[p]) if 32 <= buf[p] < 127 else f"\\x{buf[p]:02x}"
                raise ProtocolError(f"Protocol error: expected '$', got '{got}'")
            nl = buf.find(_CRLF, p)
            if nl < 0:
                if size - p > 32:
                    raise ProtocolError("Protocol error: invalid bulk length")
                return [], -1
            length = _parse_length(buf, p + 1, nl)
            if length is None or length > bulk_max:
                if length is not None and not self.authenticated:
                    raise ProtocolError("Protocol error: unauthenticated bulk length")
                if length is None or length > DISCARD_MAX_BYTES:
                    raise ProtocolError("Protocol error: invalid bulk length")
                # Over the limit but plausible: drop the request as it streams
                # in, never buffering it, and answer a clear error instead.
                self._skipping = True
                self._skip_bytes = length + 2
                self._skip_args = count - len(args) - 1
                self._skip_size = length
                return [], nl + 2
            start = nl + 2
            end = start + length
            if end + 2 > size:
                self._need = end + 2 - pos
                return [], -1
            if buf[end] != 13 or buf[end + 1] != 10:
                raise ProtocolError("Protocol error: expected CRLF after bulk data")
            args.append(buf[start:end])
            p = end + 2
        if count == 0:
            return [], p  # '*0' is a no-op, as in Redis
        return args, p

    def _skip(self, buf: bytes, pos: int, size: int) -> tuple[int, bool]:
        """Drop the rest of an oversized request; (new position, finished)."""
        while True:
            if self._skip_bytes:
                take = min(self._skip_bytes, size - pos)
                pos += take
                self._skip_bytes -= take
                if self._skip_bytes:
                    return pos, False
            if self._skip_args == 0:
                return pos, True
            if pos >= size:
                return pos, False
            if buf[pos] != 36:  # '$'
                got = chr(buf[pos]) if 32 <= buf[pos] < 127 else f"\\x{buf[pos]:02x}"
                raise ProtocolError(f"Protocol error: expected '$', got '{got}'")
            nl = buf.find(_CRLF, pos)
            if nl < 0:
                if size - pos > 32:
                    raise ProtocolError("Protocol error: invalid bulk length")
                return pos, False
            length = _parse_length(buf, pos + 1, nl)
            if length is None or length > DISCARD_MAX_BYTES:
                raise ProtocolError("Protocol error: invalid bulk length")
            self._skip_bytes = length + 2
            self._skip_args -= 1
            self._skip_size = max(self._skip_size, length)
            pos = nl + 2

    def _inline(self, buf: bytes, pos: int, size: int) -> tuple[list[bytes], int]:
        nl = buf.find(b"\n", pos)
        if nl < 0:
            if size - pos > INLINE_MAX_BYTES:
                raise ProtocolError("Protocol error: too big inline request")
            return [], -1
        if nl - pos > INLINE_MAX_BYTES:
            raise ProtocolError("Protocol error: too big inline request")
        line = buf[pos:nl]
        if line.endswith(b"\r"):
            line = line[:-1]
        args = split_inline(line)
        if not self.authenticated and (
            len(args) > UNAUTH_ARGS_MAX or any(len(a) > UNAUTH_BULK_MAX for a in args)
        ):
            raise ProtocolError("Protocol error: unauthenticated multibulk length")
        return args, nl + 1


def _parse_length(buf: bytes, start: int, end: int) -> int | None:
    """A non-negative decimal length with no sign, space or leading zero
    (Redis's string2ll, less the sign)."""
    digits = buf[start:end]
    if not digits or len(digits) > 19 or not digits.isdigit():
        return None
    if digits[0] == 48 and len(digits) > 1:  # '0'
        return None
    return int(digits)


_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_HEX = b"0123456789abcdefABCDEF"


def split_inline(line: bytes) -> list[bytes]:
    """Redis ``sdssplitargs``: words, "double quoted" with escapes, 'single quoted'.

    Words are separated by any run of isspace bytes, but a bare word ends only
    at space, tab, CR or LF ("a\\vb" is one word), and a closing quote ends
    the word and must be followed by isspace or the end of the line."""
    args: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in _ISSPACE:
            i += 1
        if i >= n:
            return args
        current = bytearray()
        in_double = in_single = done = False
        while not done:
            c = line[i] if i < n else -1
            if in_double:
                if (
                    c == 92
                    and i + 3 < n
                    and line[i + 1] == 120  # 'x'
                    and line[i + 2] in _HEX
                    and line[i + 3] in _HEX
                ):
                    current.append(int(line[i + 2 : i + 4], 16))
                    i += 3
                elif c == 92 and i + 1 < n:
                    i += 1
                    current.append(_ESCAPES.get(line[i], line[i]))
                elif c == 34:
                    done = _closing_quote(line, i)
                elif c < 0:
                    raise ProtocolError(_UNBALANCED)
                else:
                    current.append(c)
            elif in_single:
                if c == 92 and i + 1 < n and line[i + 1] == 39:
                    i += 1
                    current.append(39)
                elif c == 39:
                    done = _closing_quote(line, i)
                elif c < 0:
                    raise ProtocolError(_UNBALANCED)
                else:
                    current.append(c)
            elif c < 0 or c in _WORD_END:
                done = True
            elif c == 34:
                in_double = True
            elif c == 39:
                in_single = True
            else:
                current.append(c)
            i += 1
        args.append(bytes(current))


_ISSPACE = b" \t\n\r\v\f"
_WORD_END = b" \t\n\r"
_UNBALANCED = "Protocol error: unbalanced quotes in request"


def _closing_quote(line: bytes, i: int) -> bool:
    """A closing quote must be followed by isspace or the end of the line."""
    if i + 1 < len(line) and line[i + 1] not in _ISSPACE:
        raise ProtocolError(_UNBALANCED)
    return True


# -- replies ---------------------------------------------------------------


class SimpleString(str):
    """``+OK``-style status reply."""


class Double(float):
    """RESP3 double; a bulk string in RESP2."""


class Verbatim(str):
    """RESP3 verbatim text (``=``); a bulk string in RESP2."""


class RespMap(dict[object, object]):
    """RESP3 map; a flat array in RESP2."""


class RespSet(list[object]):
    """RESP3 set; an array in RESP2."""


class Push(list[object]):
    """RESP3 push; an array in RESP2."""


OK = SimpleString("OK")
_NULL2 = b"$-1\r\n"
_NULL3 = b"_\r\n"


def encode(reply: object, proto: int, out: list[bytes]) -> None:
    """Append the encoding of ``reply`` to ``out``.

    bytes -> bulk; str -> bulk (UTF-8); SimpleString -> status; int -> integer;
    bool -> integer (RESP2) / boolean (RESP3); None -> null; list -> array;
    OpError -> error; Double, RespMap, RespSet, Verbatim, Push as their names.
    """
    t = type(reply)
    if t is bytes:
        assert isinstance(reply, bytes)
        out.append(b"$%d\r\n" % len(reply))
        out.append(reply)
        out.append(_CRLF)
    elif t is int:
        assert isinstance(reply, int)
        out.append(b":%d\r\n" % reply)
    elif reply is None:
        out.append(_NULL3 if proto == 3 else _NULL2)
    elif t is SimpleString:
        out.append(b"+%s\r\n" % str(reply).encode())
    elif t is OpError:
        assert isinstance(reply, OpError)
        message = reply.resp_text().replace("\r", " ").replace("\n", " ")
        out.append(b"-%s\r\n" % message.encode("utf-8", "surrogateescape"))
    elif t is list or t is RespSet or t is Push:
        assert isinstance(reply, list)
        prefix = b"*" if t is list or proto == 2 else (b"~" if t is RespSet else b">")
        out.append(b"%s%d\r\n" % (prefix, len(reply)))
        for item in reply:
            encode(item, proto, out)
    elif t is bool:
        if proto == 3:
            out.append(b"#t\r\n" if reply else b"#f\r\n")
        else:
            out.append(b":1\r\n" if reply else b":0\r\n")
    elif t is RespMap:
        assert isinstance(reply, RespMap)
        if proto == 3:
            out.append(b"%%%d\r\n" % len(reply))
        else:
            out.append(b"*%d\r\n" % (2 * len(reply)))
        for key, value in reply.items():
            encode(key, proto, out)
            encode(value, proto, out)
    elif t is Double:
        assert isinstance(reply, float)
        text = _double_text(reply)
        if proto == 3:
            out.append(b",%s\r\n" % text)
        else:
            encode(text, proto, out)
    elif t is Verbatim:
        raw = str(reply).encode()
        if proto == 3:
            out.append(b"=%d\r\ntxt:%s\r\n" % (len(raw) + 4, raw))
        else:
            encode(raw, proto, out)
    elif isinstance(reply, str):
        encode(reply.encode(), proto, out)
    else:
        raise TypeError(f"cannot encode {t.__name__} as RESP")


def _double_text(value: float) -> bytes:
    """Redis's d2string: "nan", "inf", "-inf", "0", "-0", an integral value
    within +-2**62 as an integer ("1", not "1.0"), else the shortest repr."""
    if math.isnan(value):
        return b"nan"
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    if value == 0:
        return b"-0" if math.copysign(1.0, value) < 0 else b"0"
    if value.is_integer() and abs(value) <= 2**62:
        return b"%d" % int(value)
    return repr(float(value)).encode()
