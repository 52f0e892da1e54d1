"""What ``Node`` gives the mixins it is made of (coordinator.py, listing.py,
strong.py): its shared state and the helpers one part implements for the
others, declared once so the type checker sees them.

Every mixin derives from ``NodeParts``, so it comes last in ``Node``'s method
resolution order: a method implemented by any part (or by ``Node``) always
wins over these declarations, whatever the order of ``Node``'s bases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ringkv.core.config import KeyspaceSpec, NodeConfig
from ringkv.core.errors import OpError
from ringkv.core.messages import Message
from ringkv.core.ring import Ring

if TYPE_CHECKING:
    from ringkv.storage.base import Table

__all__ = ["NodeParts"]


class NodeParts:
    config: NodeConfig
    ring: Ring
    cluster_size: int
    keyspaces: dict[str, KeyspaceSpec]
    _messages: list[tuple[str, Message]]  # to send now
    _after_commit: list[tuple[str, Message]]  # to send once this turn is durable

    # Node's storage helpers.
    def _table(self, keyspace: str) -> Table:
        raise NotImplementedError

    def _table_or_error(self, keyspace: str) -> Table | OpError:
        raise NotImplementedError

    def _key_too_large(self, key: bytes) -> OpError:
        raise NotImplementedError

    def _value_too_large(self, value: bytes) -> OpError:
        raise NotImplementedError

    # Coordination's request bookkeeping and local failure detector.
    def _new_id(self) -> int:
        raise NotImplementedError

    def _suspected(self, node: str, now_ms: int) -> bool:
        raise NotImplementedError

    def _suspect(self, node: str, now_ms: int) -> None:
        raise NotImplementedError

    def _resolve(self, token: object, result: object, *, needs_commit: bool = True) -> None:
        raise NotImplementedError

    def _busy(self) -> OpError | None:
        raise NotImplementedError

    # Strong's count of CASPaxos work in flight (for _busy).
    def _strong_pending(self) -> int:
        raise NotImplementedError
