"""Consistent hashing: where a key lives on the ring.

Theory of operation (Dynamo §4.2, Karger et al. 1997). A key's *token* is the
first 8 bytes of its blake2b digest, read as an unsigned 64-bit integer: the
key's position on a ring of 2**64 points. Storage engines keep keys in token
order, so a SCAN cursor is a token (it walks the ring, and later the whole
cluster, in order) and a range that moves between nodes is a contiguous scan.
Built-in ``hash()`` is never used: it differs between processes.
"""

from __future__ import annotations

from hashlib import blake2b

__all__ = ["TOKEN_BITS", "TOKEN_MAX", "key_token"]

TOKEN_BITS = 64
TOKEN_MAX = 2**TOKEN_BITS - 1


def key_token(key: bytes) -> int:
    """The key's position on the ring, in [0, 2**64)."""
    return int.from_bytes(blake2b(key, digest_size=8).digest(), "big")
