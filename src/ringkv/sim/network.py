"""A simulated network: delay, loss, duplication, reordering and partitions.

Theory of operation. ``send`` takes one message from one node to another,
encodes it with the real codec (so every message the simulator carries has
been through ``codec.encode``, and through ``codec.decode`` on arrival) and
decides its fate with the network's own seeded generator:

* a message on a blocked link is dropped: a full partition (``partition``:
  nodes in different groups cannot talk, either way) or a one-way cut
  (``cut(a, b)`` blocks a -> b only, like a firewall rule on one side);
* otherwise it is dropped with the drop rate (the global one, or the link's);
* otherwise it is delivered after a delay drawn independently per copy
  (uniform in ``[delay_min_ms, delay_max_ms]``, plus, with ``slow_rate``, a
  long tail of up to ``slow_delay_max_ms``): independent delays reorder;
* and with the duplicate rate, a second copy follows with its own delay.

A link is checked again at delivery: a partition that starts while a message
is in flight loses it, as a TCP connection torn down by a partition would.
A message a node sends to itself is never lost, duplicated or delayed.

The network decides and counts; the world (``world.py``) keeps the clock and
the event queue. Every random draw comes from the generator passed in, in the
order of calls, so a run is a function of its seed.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import NamedTuple

from ringkv.core import codec
from ringkv.core.messages import Message

__all__ = ["Delivery", "LinkFault", "NetworkConfig", "SimNetwork", "describe"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkConfig:
    """The network's knobs; rates are probabilities per message."""

    delay_min_ms: int = 1
    delay_max_ms: int = 10
    slow_rate: float = 0.01  # a message this often takes the long tail
    slow_delay_max_ms: int = 100
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    check_codec: bool = True  # assert decode(encode(m)) == m on every send

    def validate(self) -> None:
        if not 0 <= self.delay_min_ms <= self.delay_max_ms:
            raise ValueError("need 0 <= delay_min_ms <= delay_max_ms")
        if self.slow_delay_max_ms < 0:
            raise ValueError("slow_delay_max_ms must not be negative")
        for name in ("slow_rate", "drop_rate", "duplicate_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkFault:
    """A fault on one directed link: extra loss and extra delay."""

    drop_rate: float = 0.0
    extra_delay_ms: int = 0


class Delivery(NamedTuple):
    """One copy of a message to deliver ``delay_ms`` from now."""

    delay_ms: int
    src: str
    dst: str
    payload: bytes
    kind: str  # the message type's name
    copy: int  # 0 for the original, 1 for a duplicate
    digest: str  # of the payload, for the trace


class SimNetwork:
    def __init__(self, rng: random.Random, config: NetworkConfig | None = None) -> None:
        self.rng = rng
        self.config = config or NetworkConfig()
        self.config.validate()
        self._group: dict[str, int] = {}  # node -> partition group; empty: no partition
        self._cuts: set[tuple[str, str]] = set()  # membership tests only, never iterated
        self._links: dict[tuple[str, str], LinkFault] = {}
        self.sent: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.duplicated: Counter[str] = Counter()
        self.delivered: Counter[str] = Counter()
        self.bytes_sent = 0

    # -- faults ------------------------------------------------------------

    def partition(self, groups: Sequence[Sequence[str]]) -> None:
        """Only nodes of one group talk to each other; a node named in no
        group is cut off from every other. Replaces any earlier partition."""
        seen: dict[str, int] = {}
        for index, group in enumerate(groups):
            for node in group:
                if node in seen:
                    raise ValueError(f"{node} is in two groups of the partition")
                seen[node] = index
        self._group = seen

    def cut(self, src: str, dst: str) -> None:
        """Block ``src`` -> ``dst`` only."""
        self._cuts.add((src, dst))

    def uncut(self, src: str, dst: str) -> None:
        self._cuts.discard((src, dst))

    def set_link(self, src: str, dst: str, fault: LinkFault | None) -> None:
        """Set (or with None clear) the extra loss and delay of ``src`` -> ``dst``."""
        if fault is None:
            self._links.pop((src, dst), None)
        else:
            self._links[(src, dst)] = fault

    def set_rates(
        self, *, drop_rate: float | None = None, duplicate_rate: float | None = None
    ) -> None:
        changes: dict[str, float] = {}
        if drop_rate is not None:
            changes["drop_rate"] = drop_rate
        if duplicate_rate is not None:
            changes["duplicate_rate"] = duplicate_rate
        config = dataclasses.replace(self.config, **changes)  # type: ignore[arg-type]
        config.validate()
        self.config = config

    def heal(self) -> None:
        """End every partition, cut and link fault (the rates stay)."""
        self._group = {}
        self._cuts.clear()
        self._links.clear()

    def blocked(self, src: str, dst: str) -> bool:
        return bool(self.block_reason(src, dst))

    def block_reason(self, src: str, dst: str) -> str:
        """Why ``src`` cannot reach ``dst`` now (``cut``, ``partition``), or ""."""
        if src == dst:
            return ""
        if (src, dst) in self._cuts:
            return "cut"
        if not self._group:
            return ""
        group = self._group.get(src, -1)
        if group == -1 or group != self._group.get(dst, -2):
            return "partition"
        return ""

    def describe_faults(self) -> str:
        parts: list[str] = []
        if self._group:
            groups: dict[int, list[str]] = {}
            for node, index in sorted(self._group.items()):
                groups.setdefault(index, []).append(node)
            parts.append("partition " + " | ".join(",".join(g) for _, g in sorted(groups.items())))
        parts.extend(f"cut {a} -> {b}" for a, b in sorted(self._cuts))
        parts.extend(f"link {a} -> {b} {f}" for (a, b), f in sorted(self._links.items()))
        return "; ".join(parts) or "healthy"

    # -- traffic -------------------------------------------------------------

    def send(self, src: str, dst: str, message: Message) -> tuple[list[Delivery], str]:
        """Encode ``message`` and decide its fate: the copies to deliver, and
        when there are none, why (``partition``, ``cut`` or ``loss``)."""
        payload = codec.encode(message)
        kind = type(message).__name__
        if self.config.check_codec:
            assert codec.decode(payload) == message, f"codec round trip changed {kind}"
        self.sent[kind] += 1
        self.bytes_sent += len(payload)
        digest = blake2b(payload, digest_size=4).hexdigest()
        if src == dst:
            return [Delivery(0, src, dst, payload, kind, 0, digest)], ""
        reason = self.block_reason(src, dst)
        if reason:
            self.dropped[kind] += 1
            return [], reason
        link = self._links.get((src, dst))
        drop_rate = self.config.drop_rate
        if link is not None:
            drop_rate = 1 - (1 - drop_rate) * (1 - link.drop_rate)
        if drop_rate and self.rng.random() < drop_rate:
            self.dropped[kind] += 1
            return [], "loss"
        copies = [Delivery(self._delay(link), src, dst, payload, kind, 0, digest)]
        if self.config.duplicate_rate and self.rng.random() < self.config.duplicate_rate:
            self.duplicated[kind] += 1
            copies.append(Delivery(self._delay(link), src, dst, payload, kind, 1, digest))
        return copies, ""

    def arrive(self, delivery: Delivery) -> Message | None:
        """The message, decoded, if its link still holds; None if it is lost now."""
        if self.blocked(delivery.src, delivery.dst):
            self.dropped[delivery.kind] += 1
            return None
        self.delivered[delivery.kind] += 1
        return codec.decode(delivery.payload)

    def lost_at_down_node(self, delivery: Delivery) -> None:
        """Count a message that reached a node that is not running."""
        self.dropped[delivery.kind] += 1

    def _delay(self, link: LinkFault | None) -> int:
        config = self.config
        delay = self.rng.randint(config.delay_min_ms, config.delay_max_ms)
        if config.slow_rate and self.rng.random() < config.slow_rate:
            delay += self.rng.randint(0, config.slow_delay_max_ms)
        if link is not None:
            delay += link.extra_delay_ms
        return delay

    def counters(self) -> dict[str, dict[str, int]]:
        """Per message type: sent, dropped, duplicated, delivered (sorted by type)."""
        kinds = sorted(set(self.sent) | set(self.dropped) | set(self.delivered))
        return {
            kind: {
                "sent": self.sent[kind],
                "dropped": self.dropped[kind],
                "duplicated": self.duplicated[kind],
                "delivered": self.delivered[kind],
            }
            for kind in kinds
        }


def describe(message: object) -> str:
    """One line for the trace: the type and its fields, long bytes abbreviated
    (the trace adds a digest of the exact wire bytes)."""
    parts = [type(message).__name__]
    if dataclasses.is_dataclass(message) and not isinstance(message, type):
        for field in dataclasses.fields(message):
            if field.name == "src":  # the trace names the link
                continue
            parts.append(f"{field.name}={_short(getattr(message, field.name))}")
    return " ".join(parts)


def _short(value: object) -> str:
    if isinstance(value, bytes):
        return _show_bytes(value)
    if isinstance(value, str):
        return value if value and " " not in value else repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return repr(value)


def _show_bytes(value: bytes) -> str:
    """Short printable bytes as text; anything else as its length."""
    if 0 < len(value) <= 24 and value.isascii():
        text = value.decode("ascii")
        if text.isprintable() and " " not in text:
            return text
    return f"<{len(value)}B>"
