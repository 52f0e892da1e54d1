"""The Python exceptions of ringkv: one class per row of DESIGN.md's error table.

The core answers a failed request with an ``OpError`` value; the embedded
``Store`` turns it into one of these with ``error_from_op``, and
``ringkv.Client`` maps the RESP prefixes ``MISMATCH``, ``UNAVAILABLE``,
``TIMEOUT`` and ``WRONGLEVEL`` to the same classes. ``definite`` is true only when the
operation certainly had no effect (STYLE.md rule 11): an
``OutcomeUnknownError`` never is.

Where a matching builtin exists the class also derives from it, so that
``except ValueError`` catches an oversized value or a non-integer counter.
"""

from __future__ import annotations

from ringkv.core import errors as core_errors
from ringkv.core.errors import ErrorKind, OpError

__all__ = [
    "IncrementOverflowError",
    "InvalidRequestError",
    "KeyTooLargeError",
    "MismatchError",
    "NotFoundError",
    "NotIntegerError",
    "OutOfMemoryError",
    "OutcomeUnknownError",
    "RingkvError",
    "StoreClosedError",
    "TooLargeError",
    "UnavailableError",
    "ValueTooLargeError",
    "WrongLevelError",
    "error_from_op",
]


class RingkvError(Exception):
    """Base of every ringkv error; ``code`` is the RESP error prefix."""

    code = "ERR"
    definite = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequestError(RingkvError, ValueError):
    """The request itself is wrong (HTTP 400)."""


class NotIntegerError(InvalidRequestError):
    """INCR on a value that is not a 64-bit decimal integer."""


class IncrementOverflowError(InvalidRequestError):
    """INCR would leave the signed 64-bit range."""


class NotFoundError(RingkvError):
    """A named thing (a keyspace) does not exist (HTTP 404). Missing keys are not errors."""


class WrongLevelError(RingkvError):
    """The keyspace's mode or level does not allow this operation (HTTP 409)."""

    code = "WRONGLEVEL"


class MismatchError(RingkvError):
    """A compare-and-set compared and did not match (HTTP 412)."""

    code = "MISMATCH"


class TooLargeError(RingkvError, ValueError):
    """A key or value is over its configured limit; nothing was stored (HTTP 413)."""


class KeyTooLargeError(TooLargeError):
    """The key is over ``max_key_bytes``."""


class ValueTooLargeError(TooLargeError):
    """The value is over ``max_value_bytes``."""


class UnavailableError(RingkvError):
    """Refused before any replica was asked (HTTP 503); nothing happened."""

    code = "UNAVAILABLE"


class OutcomeUnknownError(RingkvError):
    """The request may or may not have taken effect: a timeout, or a failed
    storage commit (HTTP 504). Read the key again to learn which."""

    code = "TIMEOUT"
    definite = False


class OutOfMemoryError(RingkvError):
    """The in-memory engine cannot fit the write under ``maxmemory`` (HTTP 507)."""

    code = "OOM"


class StoreClosedError(RingkvError):
    """The store was used after ``close()``."""


_BY_KIND: dict[ErrorKind, type[RingkvError]] = {
    ErrorKind.INVALID: InvalidRequestError,
    ErrorKind.NOT_FOUND: NotFoundError,
    ErrorKind.WRONG_LEVEL: WrongLevelError,
    ErrorKind.MISMATCH: MismatchError,
    ErrorKind.TOO_LARGE: TooLargeError,
    ErrorKind.UNAVAILABLE: UnavailableError,
    ErrorKind.TIMEOUT: OutcomeUnknownError,
    ErrorKind.OUT_OF_MEMORY: OutOfMemoryError,
}


def error_from_op(error: OpError, *, key_too_large: bool | None = None) -> RingkvError:
    """The exception for a core ``OpError``.

    ``key_too_large`` (when the caller knows whether the key is over its
    limit) picks ``KeyTooLargeError`` or ``ValueTooLargeError`` for a
    too-large error; without it the plain ``TooLargeError`` is used.
    """
    cls: type[RingkvError]
    if error == core_errors.NOT_INTEGER:
        cls = NotIntegerError
    elif error == core_errors.OVERFLOW:
        cls = IncrementOverflowError
    elif error.kind is ErrorKind.TOO_LARGE and key_too_large is not None:
        cls = KeyTooLargeError if key_too_large else ValueTooLargeError
    else:
        cls = _BY_KIND[error.kind]
    exc = cls(error.message)
    if not error.definite:
        exc.definite = False
    return exc
