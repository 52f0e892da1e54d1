"""ringkv: a distributed key-value store and cache (Dynamo / Riak / Cassandra family).

Embedded use: ``ringkv.open(path)`` (or ``ringkv.open()`` in memory) returns a
``Store``; ``ringkv.open_async`` returns its asyncio twin. Errors are the
classes of ``ringkv.exceptions``. The server is ``ringkv serve`` (``ringkv.cli``).
"""

__version__ = "0.1.0"

from ringkv.client import AsyncClient, AsyncLock, Client, Lock, Siblings, Version
from ringkv.embedded import AsyncStore, Store, open, open_async
from ringkv.exceptions import (
    IncrementOverflowError,
    InvalidRequestError,
    KeyTooLargeError,
    MismatchError,
    NotFoundError,
    NotIntegerError,
    OutcomeUnknownError,
    OutOfMemoryError,
    RingkvError,
    StoreClosedError,
    TooLargeError,
    UnavailableError,
    ValueTooLargeError,
    WrongLevelError,
)

__all__ = [
    "AsyncClient",
    "AsyncLock",
    "AsyncStore",
    "Client",
    "IncrementOverflowError",
    "InvalidRequestError",
    "KeyTooLargeError",
    "Lock",
    "MismatchError",
    "NotFoundError",
    "NotIntegerError",
    "OutOfMemoryError",
    "OutcomeUnknownError",
    "RingkvError",
    "Siblings",
    "Store",
    "StoreClosedError",
    "TooLargeError",
    "UnavailableError",
    "ValueTooLargeError",
    "Version",
    "WrongLevelError",
    "__version__",
    "open",
    "open_async",
]
