"""How causal contexts and versions are shown to clients (RESP and HTTP alike).

A context is opaque to clients: URL-safe base64 of the msgpack of the flat
version vector (``clocks.vv_to_flat``), the same in the ``X-Ringkv-Context``
header, ``RINGKV.GETV``/``RINGKV.SIBLINGS`` replies and ``RINGKV.PUT ...
CONTEXT``. A version is shown as ``wall_ms.logical.node.counter`` (the HLC
timestamp and the dot of the write).
"""

from __future__ import annotations

import base64
import binascii

import msgpack

from ringkv.core.clocks import vv_from_flat, vv_to_flat
from ringkv.core.record import Version

__all__ = ["CONTEXT_MAX_BYTES", "decode_context", "encode_context", "version_tag"]

CONTEXT_MAX_BYTES = 64 * 1024  # a context from a client is refused past this


def encode_context(context: dict[str, int]) -> str:
    packed: bytes = msgpack.packb(vv_to_flat(context), use_bin_type=True)
    return base64.urlsafe_b64encode(packed).decode("ascii")


def decode_context(text: str | bytes) -> dict[str, int]:
    """The inverse of ``encode_context``; ValueError on anything malformed."""
    raw = text.encode("ascii", "replace") if isinstance(text, str) else text
    if len(raw) > CONTEXT_MAX_BYTES:
        raise ValueError(f"context is over {CONTEXT_MAX_BYTES} bytes")
    try:
        packed = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
        flat = msgpack.unpackb(packed, raw=False)
    except (binascii.Error, ValueError, msgpack.UnpackException) as exc:
        raise ValueError("context is not one that ringkv gave out") from exc
    if type(flat) is not list:
        raise ValueError("context is not one that ringkv gave out")
    return vv_from_flat(flat)


def version_tag(version: Version) -> str:
    hlc, dot = version.hlc, version.dot
    return f"{hlc.wall_ms}.{hlc.logical}.{dot.node}.{dot.counter}"
