"""Request parsing: our strict parser against hiredis, per command.

Issue 2 item 4 asks whether requests should be parsed by our own strict
parser or by "a strict pre-scan, then hiredis". This measures three ways to
turn the bytes of one read into commands, on the requests redis-benchmark
sends (SET/GET, 3-byte values, and 100-byte values), one command per read
(``-P 1``) and sixteen (``-P 16``):

- ``ringkv``: ``ringkv.frontend.resp.RequestParser.feed`` (pure Python, strict,
  with limits and Redis's error texts);
- ``hiredis``: ``hiredis.Reader`` alone. It parses *replies*, so it is not a
  request parser (it accepts ``:1`` or nested arrays as arguments, rejects
  inline commands, has no size limits): this is the lower bound, not an
  option;
- ``pre-scan + hiredis``: a strict pre-scan in Python that checks the framing
  and limits exactly as ``RequestParser`` does (without slicing out
  arguments), then hands the checked bytes to hiredis. This is the design the
  issue names; it still walks every header in Python. A second variant does
  the same walk with one compiled-regex match per header.

Each figure is the best of several repeats (µs per command, lower is better),
the usual way to take a micro-benchmark on a shared machine.

    .venv/bin/python bench/parser_compare.py [--markdown] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hiredis
from _common import console, markdown_table, timestamp
from rich.markup import escape
from rich.table import Table

from ringkv.frontend.resp import (
    INLINE_MAX_BYTES,
    ParserLimits,
    ProtocolError,
    RequestParser,
    _parse_length,
)


def command(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def workloads() -> dict[str, tuple[bytes, int]]:
    """name -> (bytes of one read, commands in it), as redis-benchmark sends them."""
    set3 = command(b"SET", b"key:__rand_int__", b"xxx")
    get = command(b"GET", b"key:__rand_int__")
    set100 = command(b"SET", b"key:000123", b"v" * 100)
    return {
        "SET P1": (set3, 1),
        "GET P1": (get, 1),
        "SET P16": (set3 * 16, 16),
        "GET P16": (get * 16, 16),
        "SET 100B P16": (set100 * 16, 16),
    }


class PrescanHiredis:
    """Strict framing and limit checks in Python, argument splitting in hiredis.

    The checks are those of ``RequestParser._multibulk`` (type bytes, decimal
    lengths without sign or junk, argument-count and bulk-size limits, CRLF
    after each bulk); only complete, checked requests reach hiredis, so it can
    never see a reply type or an unbounded length. Inline commands (which
    hiredis cannot parse) would go to ``split_inline``; they do not occur here.
    """

    __slots__ = ("_buf", "_reader", "limits")

    def __init__(self, limits: ParserLimits | None = None) -> None:
        self.limits = limits or ParserLimits()
        self._reader = hiredis.Reader()
        self._buf = b""

    def feed(self, data: bytes) -> list[list[bytes]]:
        buf = self._buf + data if self._buf else data
        size = len(buf)
        pos = count = 0
        while pos < size:
            end = self._scan(buf, pos, size)
            if end < 0:
                break
            pos = end
            count += 1
        self._buf = buf[pos:] if pos < size else b""
        if not count:
            return []
        reader = self._reader
        reader.feed(buf, 0, pos)
        gets = reader.gets
        return [gets() for _ in range(count)]

    def _scan(self, buf: bytes, pos: int, size: int) -> int:
        if buf[pos] != 42:  # '*'
            raise ProtocolError("inline commands take the split_inline path")
        nl = buf.find(b"\r\n", pos)
        if nl < 0:
            if size - pos > INLINE_MAX_BYTES:
                raise ProtocolError("Protocol error: too big mbulk count string")
            return -1
        count = _parse_length(buf, pos + 1, nl)
        if count is None or count > self.limits.args_max:
            raise ProtocolError("Protocol error: invalid multibulk length")
        bulk_max = self.limits.bulk_max_bytes
        p = nl + 2
        for _ in range(count):
            if p >= size:
                return -1
            if buf[p] != 36:  # '$'
                raise ProtocolError("Protocol error: expected '$'")
            nl = buf.find(b"\r\n", p)
            if nl < 0:
                if size - p > 32:
                    raise ProtocolError("Protocol error: invalid bulk length")
                return -1
            length = _parse_length(buf, p + 1, nl)
            if length is None or length > bulk_max:
                raise ProtocolError("Protocol error: invalid bulk length")
            end = nl + 2 + length
            if end + 2 > size:
                return -1
            if buf[end] != 13 or buf[end + 1] != 10:
                raise ProtocolError("Protocol error: expected CRLF after bulk data")
            p = end + 2
        return p


_BULK_HEADER = re.compile(rb"\$([0-9]{1,19})\r\n")
_ARRAY_HEADER = re.compile(rb"\*([0-9]{1,19})\r\n")


class RegexPrescanHiredis(PrescanHiredis):
    """The same strict pre-scan with one compiled-regex match per header.

    A header that does not match is either incomplete (no CRLF yet, short:
    wait) or malformed (refuse), exactly as ``RequestParser`` decides.
    """

    __slots__ = ()

    def _scan(self, buf: bytes, pos: int, size: int) -> int:
        m = _ARRAY_HEADER.match(buf, pos)
        if m is None:
            return self._bad_header(buf, pos, size, "invalid multibulk length", INLINE_MAX_BYTES)
        count = int(m[1])
        if count > self.limits.args_max:
            raise ProtocolError("Protocol error: invalid multibulk length")
        bulk_max = self.limits.bulk_max_bytes
        match = _BULK_HEADER.match
        p = m.end()
        for _ in range(count):
            m = match(buf, p)
            if m is None:
                return self._bad_header(buf, p, size, "invalid bulk length", 32)
            end = m.end() + int(m[1])
            if end - m.end() > bulk_max:
                raise ProtocolError("Protocol error: invalid bulk length")
            if end + 2 > size:
                return -1
            if buf[end] != 13 or buf[end + 1] != 10:
                raise ProtocolError("Protocol error: expected CRLF after bulk data")
            p = end + 2
        return p

    @staticmethod
    def _bad_header(buf: bytes, pos: int, size: int, what: str, max_wait: int) -> int:
        if pos >= size:
            return -1
        if buf[pos] not in b"*$":
            raise ProtocolError(f"Protocol error: {what}")
        if buf.find(b"\r\n", pos) < 0 and size - pos <= max_wait:
            return -1  # the header is still arriving
        raise ProtocolError(f"Protocol error: {what}")


class HiredisOnly:
    """hiredis.Reader fed a request: fast, and not a request parser."""

    __slots__ = ("_reader",)

    def __init__(self) -> None:
        self._reader = hiredis.Reader()

    def feed(self, data: bytes) -> list[list[bytes]]:
        reader = self._reader
        reader.feed(data)
        out = []
        while (item := reader.gets()) is not False:
            out.append(item)
        return out


PARSERS: dict[str, Callable[[], Any]] = {
    "ringkv RequestParser": RequestParser,
    "hiredis alone (not strict)": HiredisOnly,
    "pre-scan + hiredis": PrescanHiredis,
    "regex pre-scan + hiredis": RegexPrescanHiredis,
}

# Requests hiredis takes that a server must refuse: why it cannot stand alone.
HOSTILE: dict[str, bytes] = {
    "integer as argument (*1 :1)": b"*1\r\n:1\r\n",
    "nested array as argument": b"*1\r\n*1\r\n$1\r\nx\r\n",
    "bulk length 1 GiB (buffers it all)": b"*1\r\n$1073741824\r\n",
    "inline command (PING)": b"PING\r\n",
}


def time_parser(
    make: Callable[[], Any], data: bytes, commands: int, *, repeats: int, target_s: float
) -> float:
    """Best-of-``repeats`` µs per command, each repeat about ``target_s`` long."""
    parser = make()
    feed = parser.feed
    expected = feed(data)
    assert len(expected) == commands, (make, len(expected))
    loops = 1
    while True:  # calibrate
        start = time.perf_counter()
        for _ in range(loops):
            feed(data)
        if time.perf_counter() - start > target_s / 5:
            break
        loops *= 2
    loops = max(1, int(loops * target_s / max(time.perf_counter() - start, 1e-9)))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(loops):
            feed(data)
        best = min(best, time.perf_counter() - start)
    return 1e6 * best / (loops * commands)


def check_same_output() -> None:
    """Every parser returns the same commands for every workload."""
    for name, (data, commands) in workloads().items():
        outputs = {label: make().feed(data) for label, make in PARSERS.items()}
        first = next(iter(outputs.values()))
        assert len(first) == commands, name
        for label, out in outputs.items():
            assert out == first, (name, label)
    # and split reads: a request cut anywhere comes out whole
    data = workloads()["SET 100B P16"][0]
    for label, make in PARSERS.items():
        parser = make()
        got: list[list[bytes]] = []
        for i in range(0, len(data), 7):
            got += parser.feed(data[i : i + 7])
        assert got == RequestParser().feed(data), label


def hostile_results() -> dict[str, dict[str, str]]:
    results: dict[str, dict[str, str]] = {}
    for case, data in HOSTILE.items():
        row: dict[str, str] = {}
        for label, make in PARSERS.items():
            try:
                out = make().feed(data)
                row[label] = f"accepted: {out!r}"[:60] if out else "waits for more"
            except (ProtocolError, hiredis.ProtocolError) as exc:
                row[label] = f"refused ({str(exc)[:40]})"
        results[case] = row
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--seconds", type=float, default=0.2, help="length of one repeat")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    check_same_output()
    labels = list(PARSERS)
    rows: list[dict[str, Any]] = []
    with console.status("timing parsers"):
        for name, (data, commands) in workloads().items():
            row: dict[str, Any] = {"workload": name, "bytes_per_read": len(data)}
            for label, make in PARSERS.items():
                row[label] = time_parser(
                    make, data, commands, repeats=args.repeats, target_s=args.seconds
                )
            rows.append(row)
    headers = ["workload", *labels, "ringkv time / best pre-scan time"]
    cells = [
        [
            r["workload"],
            *(f"{r[label]:.2f}" for label in labels),
            f"{r[labels[0]] / min(r[labels[2]], r[labels[3]]):.2f}",
        ]
        for r in rows
    ]
    table = Table(
        title=f"request parsing, µs per command (best of {args.repeats}; Python {platform.python_version()}, "
        f"hiredis {hiredis.__version__})",
        title_justify="left",
    )
    for header in headers:
        table.add_column(header, justify="left" if header == "workload" else "right")
    for row_cells in cells:
        table.add_row(*row_cells)
    console.print(table)
    hostile = hostile_results()
    htable = Table(title="requests a server must refuse", title_justify="left")
    htable.add_column("request")
    for label in labels:
        htable.add_column(label)
    for case, row in hostile.items():
        htable.add_row(escape(case), *(escape(row[label]) for label in labels))
    console.print(htable)
    if args.markdown:
        print(markdown_table(headers, cells))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"benchmark": "parser_compare", "timestamp": timestamp(), "python": platform.python_version(),
                 "hiredis": hiredis.__version__, "results": rows, "hostile": hostile},
                indent=2,
            )
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
