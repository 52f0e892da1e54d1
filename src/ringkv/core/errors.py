"""Errors that are answers, not exceptions: one table for RESP, HTTP and Python.

A request that fails returns an ``OpError`` value through the outbox like any
other result. ``kind`` fixes the HTTP status and the Python exception;
``code`` is the RESP error prefix (Redis errors keep Redis's ``ERR`` prefix
and text). ``definite`` is true only when the operation certainly had no
effect (STYLE.md rule 11): a timeout is never definite.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["ErrorKind", "OpError"]


class ErrorKind(Enum):
    INVALID = "invalid"  # 400: the request itself is wrong
    NOT_FOUND = "not_found"  # 404
    WRONG_LEVEL = "wrong_level"  # 409
    MISMATCH = "mismatch"  # 412: compared, did not match
    TOO_LARGE = "too_large"  # 413: key or value over its limit
    UNAVAILABLE = "unavailable"  # 503: refused before any replica was asked
    TIMEOUT = "timeout"  # 504: outcome unknown
    OUT_OF_MEMORY = "out_of_memory"  # 507: the cache cannot make room


HTTP_STATUS = {
    ErrorKind.INVALID: 400,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.WRONG_LEVEL: 409,
    ErrorKind.MISMATCH: 412,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.TIMEOUT: 504,
    ErrorKind.OUT_OF_MEMORY: 507,
}


@dataclass(frozen=True, slots=True)
class OpError:
    kind: ErrorKind
    message: str
    code: str = "ERR"  # the RESP prefix
    definite: bool = True

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.kind]

    def resp_text(self) -> str:
        return f"{self.code} {self.message}"


def invalid(message: str) -> OpError:
    return OpError(ErrorKind.INVALID, message)


NOT_INTEGER = invalid("value is not an integer or out of range")
NOT_FLOAT = invalid("value is not a valid float")
OVERFLOW = invalid("increment or decrement would overflow")
NAN_OR_INF = invalid("increment would produce NaN or Infinity")
STRING_TOO_LONG = OpError(
    ErrorKind.TOO_LARGE, "string exceeds maximum allowed size (proto-max-bulk-len)"
)
OFFSET_OUT_OF_RANGE = invalid("offset is out of range")
