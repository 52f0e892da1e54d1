"""Redis glob patterns (``stringmatchlen`` in util.c) compiled to regexes."""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["glob_matcher"]


@lru_cache(maxsize=256)
def glob_matcher(pattern: bytes) -> re.Pattern[bytes]:
    """``*`` any run, ``?`` one byte, ``[abc]``, ``[^a]``, ``[a-z]``, ``\\x`` literal."""
    out = bytearray()
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i : i + 1]
        if c == b"*":
            out += b".*"
        elif c == b"?":
            out += b"."
        elif c == b"\\" and i + 1 < n:
            i += 1
            out += re.escape(pattern[i : i + 1])
        elif c == b"[":
            j = i + 1
            negate = j < n and pattern[j : j + 1] == b"^"
            if negate:
                j += 1
            parts = bytearray()
            while j < n and pattern[j : j + 1] != b"]":
                ch = pattern[j : j + 1]
                if ch == b"\\" and j + 1 < n:
                    j += 1
                    parts += re.escape(pattern[j : j + 1])
                elif j + 2 < n and pattern[j + 1 : j + 2] == b"-":
                    # As in Redis, any third byte ends the range, even "]"
                    # ("[x-]" is the range "]".."x" and the class goes on).
                    lo, hi = sorted((pattern[j], pattern[j + 2]))
                    parts += b"\\x%02x-\\x%02x" % (lo, hi)
                    j += 2
                else:
                    parts += re.escape(ch)
                j += 1
            # An unterminated class matches to the end, as in Redis.
            if parts:
                out += b"[" + (b"^" if negate else b"") + bytes(parts) + b"]"
            else:
                out += b"." if negate else b"(?!)"
            i = j
        else:
            out += re.escape(c)
        i += 1
    # Redis's matcher never enters its loop for an empty subject, so the empty
    # string matches only the empty pattern (KEYS and SCAN special-case "*").
    if pattern:
        out[:0] = b"(?=.)"
    return re.compile(bytes(out), re.DOTALL)
