"""Fault injection on a real node, for ``ringkv verify`` and the lab (``serve --faults``).

Theory of operation. The simulator (``sim/network.py``) injects faults into a
simulated network; this module gives a real process the same vocabulary so a
verifier can partition, slow down and skew real nodes over HTTP
(``/v1/admin/faults``, docs/faults.md). It is test machinery: without
``--faults`` none of it exists on the node (the route is 404 and the transport
pays one ``is None`` test per frame).

* **Link faults** act on this node's side of a link to one peer (or to every
  peer, ``to: "*"``), per direction: ``out`` (frames this node sends to the
  peer) and ``in`` (frames it receives from the peer); ``both`` sets the two.
  The transport asks ``LinkFaults.find`` for each frame, by the peer's
  *authenticated* node id (so a seed dialled by address is covered too), and
  ``LinkFaults.verdict`` says what to do: drop it (``blackhole``; ``drop``
  with probability ``rate``, drawn from the table's own ``random.Random``) or
  hold it for ``delay_ms`` first (``delay``). Outbound frames are judged when
  they reach the head of the peer's send queue, so a blackhole also loses
  what was queued before it began; inbound frames are judged as they are read,
  and held ones wait in a bounded ``DelayLine`` per peer. Either way a link
  keeps its order. Handshakes are never touched: a blackholed connection stays
  up and authenticated, and every message on it is lost, as behind a
  firewall rule that drops packets (SWIM must notice it, which is the point).
* **Clock offset**: ``NodeHost.clock_offset_ms`` is added to the wall clock
  the core sees (HLC, expiry, timers). The HLC never goes backwards
  (``HlcClock.now`` keeps its high-water mark), so a negative offset slows the
  HLC's wall part instead (the logical counter grows), as in Kulkarni et al.

A new fault on a (peer, direction) replaces the previous one there; a fault
for one peer takes precedence over the ``"*"`` fault. ``DELETE`` clears every
fault and the clock offset and releases held frames at once, in order.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Generic, TypeGuard, TypeVar

__all__ = [
    "ALL_PEERS",
    "CLOCK_OFFSET_MS_MAX",
    "DELAY_MS_MAX",
    "DELAY_QUEUE_MAX_DEFAULT",
    "FAULT_COUNTER_NAMES",
    "ClockOffset",
    "DelayLine",
    "Direction",
    "FaultError",
    "LinkFault",
    "LinkFaults",
    "LinkMode",
    "fault_report",
    "parse_fault",
]

ALL_PEERS = "*"
# A day either way: far beyond any NTP step or VM pause worth testing; the HLC
# keeps a forward offset's high-water mark after the offset is removed
# (persisted, see Node._next_hlc), so a larger one would poison the data dir.
CLOCK_OFFSET_MS_MAX = 86_400_000
DELAY_MS_MAX = 60_000  # a minute; beyond any request timeout, so longer means "lost"
# Inbound frames held per peer by a delay fault (as send_queue_max outbound).
# Overflow: drop the new frame and count it in fault_delay_dropped.
DELAY_QUEUE_MAX_DEFAULT = 1024

# Transport counters for injected faults (present, at 0, on every transport).
FAULT_COUNTER_NAMES = (
    "fault_dropped_out",  # frames to a peer lost to blackhole or drop
    "fault_dropped_in",  # frames from a peer lost to blackhole or drop
    "fault_delayed_out",  # frames to a peer sent late: a delay fault held them
    "fault_delayed_in",  # frames from a peer delivered late: held in its delay line
    "fault_delay_dropped",  # frames dropped because the delay queue was full
)

_LINK_FIELDS = frozenset({"to", "direction", "mode", "rate", "delay_ms"})
_TOP_FIELDS = frozenset({"link", "clock_offset_ms"})


class FaultError(ValueError):
    """A fault request that does not validate (answered 400 ``invalid``)."""


class Direction(StrEnum):
    OUT = "out"  # frames this node sends to the peer
    IN = "in"  # frames this node receives from the peer
    BOTH = "both"


class LinkMode(StrEnum):
    BLACKHOLE = "blackhole"
    DROP = "drop"
    DELAY = "delay"


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkFault:
    """One fault on this node's side of the link to ``to`` (a node id or ``"*"``)."""

    to: str
    direction: Direction
    mode: LinkMode
    rate: float = 1.0  # drop: probability that a frame is lost
    delay_ms: int = 0  # delay: how long each frame is held

    def halves(self) -> tuple[Direction, ...]:
        if self.direction is Direction.BOTH:
            return (Direction.OUT, Direction.IN)
        return (self.direction,)

    def to_json(self) -> dict[str, object]:
        """The request shape again (so a listed fault can be POSTed back)."""
        body: dict[str, object] = {
            "to": self.to,
            "direction": self.direction.value,
            "mode": self.mode.value,
        }
        if self.mode is LinkMode.DROP:
            body["rate"] = self.rate
        elif self.mode is LinkMode.DELAY:
            body["delay_ms"] = self.delay_ms
        return body


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockOffset:
    offset_ms: int


# -- validation ---------------------------------------------------------------


def parse_fault(body: object, *, self_id: str, peers: Collection[str]) -> LinkFault | ClockOffset:
    """``{"link": {...}}`` or ``{"clock_offset_ms": N}``, strictly checked.

    ``peers`` are the node ids a link fault may name (besides ``"*"``); None
    as the value of an optional field means absent. Raises ``FaultError``."""
    if not isinstance(body, dict):
        raise FaultError("the body must be a JSON object")
    unknown = sorted(set(body) - _TOP_FIELDS)
    if unknown:
        raise FaultError(f"unknown field(s) {', '.join(unknown)}: give link or clock_offset_ms")
    if len(body) != 1:
        raise FaultError('give exactly one of {"link": {...}} and {"clock_offset_ms": N}')
    if "clock_offset_ms" in body:
        offset = body["clock_offset_ms"]
        if not _is_int(offset) or abs(offset) > CLOCK_OFFSET_MS_MAX:
            raise FaultError(
                f"clock_offset_ms must be an integer from -{CLOCK_OFFSET_MS_MAX} "
                f"to {CLOCK_OFFSET_MS_MAX}"
            )
        return ClockOffset(offset_ms=offset)
    return _parse_link(body["link"], self_id=self_id, peers=peers)


def _parse_link(link: object, *, self_id: str, peers: Collection[str]) -> LinkFault:
    if not isinstance(link, dict):
        raise FaultError("link must be a JSON object")
    unknown = sorted(set(link) - _LINK_FIELDS)
    if unknown:
        raise FaultError(
            f"unknown link field(s) {', '.join(unknown)}; the fields are "
            "to, direction, mode, rate, delay_ms"
        )
    given = {name: value for name, value in link.items() if value is not None}
    to = given.get("to")
    if not isinstance(to, str):
        raise FaultError('link.to is required: a peer node id, or "*" for every peer')
    if to == self_id:
        raise FaultError(f"link.to names this node ({to!r}); a node has no link to itself")
    if to != ALL_PEERS and to not in peers:
        known = ", ".join(sorted(peers)) or "none"
        raise FaultError(f'link.to {to!r} is not a known peer (known: {known}; or "*")')
    direction = _choice(Direction, given.get("direction", "both"), "link.direction")
    if "mode" not in given:
        raise FaultError("link.mode is required: blackhole, drop or delay")
    mode = _choice(LinkMode, given["mode"], "link.mode")
    if "rate" in given and mode is not LinkMode.DROP:
        raise FaultError("link.rate applies to mode drop only")
    if "delay_ms" in given and mode is not LinkMode.DELAY:
        raise FaultError("link.delay_ms applies to mode delay only")
    fault = LinkFault(to=to, direction=direction, mode=mode)
    if mode is LinkMode.DROP:
        rate = given.get("rate")
        if not _is_number(rate) or not 0.0 <= rate <= 1.0:
            raise FaultError("mode drop needs link.rate, a number from 0 to 1")
        fault = replace(fault, rate=float(rate))
    elif mode is LinkMode.DELAY:
        delay_ms = given.get("delay_ms")
        if not _is_int(delay_ms) or not 0 <= delay_ms <= DELAY_MS_MAX:
            raise FaultError(f"mode delay needs link.delay_ms, an integer from 0 to {DELAY_MS_MAX}")
        fault = replace(fault, delay_ms=delay_ms)
    return fault


_E = TypeVar("_E", Direction, LinkMode)


def _choice(kind: type[_E], value: object, name: str) -> _E:
    choices = [member.value for member in kind]
    if not isinstance(value, str) or value not in choices:
        raise FaultError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return kind(value)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


# -- the table the transport consults -----------------------------------------------


class LinkFaults:
    """The active link faults of one node, by (peer or ``"*"``, out|in).

    Bounded by the request validation: ``to`` is ``"*"`` or a known member, so
    there are at most 2 x (members_max + 1) entries."""

    __slots__ = ("_faults", "_rng", "delay_queue_max")

    def __init__(
        self, rng: random.Random | None = None, *, delay_queue_max: int = DELAY_QUEUE_MAX_DEFAULT
    ) -> None:
        if delay_queue_max < 1:
            raise ValueError("delay_queue_max must be positive")
        self._rng = rng or random.Random()
        self._faults: dict[tuple[str, Direction], LinkFault] = {}
        self.delay_queue_max = delay_queue_max

    def __len__(self) -> int:
        return len(self._faults)

    def set(self, fault: LinkFault) -> None:
        """Add ``fault``, replacing whatever was on the same (peer, direction)."""
        for half in fault.halves():
            self._faults[(fault.to, half)] = replace(fault, direction=half)

    def clear(self) -> None:
        self._faults.clear()

    def find(self, peer: str, direction: Direction) -> LinkFault | None:
        """The fault on the link to ``peer`` in ``direction`` (OUT or IN):
        the peer's own, else the ``"*"`` one, else None."""
        if not self._faults:
            return None
        fault = self._faults.get((peer, direction))
        return fault if fault is not None else self._faults.get((ALL_PEERS, direction))

    def verdict(self, fault: LinkFault) -> float | None:
        """None: lose the frame; else the seconds to hold it first (0: none)."""
        match fault.mode:
            case LinkMode.BLACKHOLE:
                return None
            case LinkMode.DROP:
                return None if self._rng.random() < fault.rate else 0.0
            case LinkMode.DELAY:
                return fault.delay_ms / 1000
        raise AssertionError(fault.mode)  # pragma: no cover

    def active(self) -> list[LinkFault]:
        """Every fault, one per (peer, direction), sorted."""
        return [self._faults[key] for key in sorted(self._faults)]


def fault_report(
    links: LinkFaults | None, clock_offset_ms: int, counters: Mapping[str, int]
) -> dict[str, object]:
    """The JSON of ``GET /v1/admin/faults``."""
    return {
        "links": [fault.to_json() for fault in links.active()] if links is not None else [],
        "clock_offset_ms": clock_offset_ms,
        "counters": {name: counters.get(name, 0) for name in FAULT_COUNTER_NAMES},
    }


# -- holding frames ----------------------------------------------------------------

_T = TypeVar("_T")


class DelayLine(Generic[_T]):
    """A bounded FIFO that releases each item at its due time (event-loop time).

    Due times never decrease along the line (an item is never due before the
    one ahead of it), so the order is kept even when the delay shrinks or a
    fault is removed while items wait. ``push`` refuses past ``limit``."""

    __slots__ = ("_items", "_release", "_timer", "limit")

    def __init__(self, release: Callable[[_T], None], limit: int) -> None:
        assert limit >= 1
        self._release = release
        self._items: deque[tuple[float, _T]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self.limit = limit

    def __len__(self) -> int:
        return len(self._items)

    def push(self, item: _T, due: float) -> bool:
        if len(self._items) >= self.limit:
            return False
        if self._items:
            due = max(due, self._items[-1][0])
        self._items.append((due, item))
        if self._timer is None:
            self._arm()
        return True

    def flush(self) -> None:
        """Release everything now, in order."""
        self._cancel()
        while self._items:
            self._release(self._items.popleft()[1])

    def discard(self) -> int:
        """Drop everything; returns how many items were dropped."""
        self._cancel()
        count = len(self._items)
        self._items.clear()
        return count

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(self._items[0][0], self._fire)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        while self._items and self._items[0][0] <= now:
            self._release(self._items.popleft()[1])
        if self._items and self._timer is None:
            self._arm()
