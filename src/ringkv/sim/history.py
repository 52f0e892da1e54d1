"""The simulator's record of client operations. The history it also keeps
(``Simulation.history``) is check/history.py's ``Event``, the checkers' shape.

One record per event: ``invoke`` when a client sends a request, then one of
``ok`` (it happened), ``fail`` (it certainly did not happen: a definite error,
STYLE.md rule 11) or ``info`` (unknown: a timeout, a lost connection). A
process is one single-threaded client; after an ``info`` it is retired and
its client continues as a new process, since the old one's operation may still
take effect at any later time.
"""

from __future__ import annotations

from dataclasses import dataclass

from ringkv.check.history import FAIL, INFO, INVOKE, OK

__all__ = ["FAIL", "INFO", "INVOKE", "OK", "Op", "format_context"]


@dataclass(slots=True)
class Op:
    """One client operation from invoke to completion (the simulator's record)."""

    op_id: int
    process: int
    node: str
    f: str  # put | get | delete
    keyspace: str
    key: bytes
    value: bytes | None  # put: the value written
    invoke_ms: int
    level: str = ""  # "" for the keyspace's default
    acks: int = 0  # explicit R or W; 0: from the level
    context: dict[str, int] | None = None  # the causal context written with
    saw: tuple[bytes, ...] = ()  # the values of the read that gave ``context``
    complete_ms: int | None = None
    outcome: str = ""  # "" while in flight, then ok | fail | info
    error: str = ""
    read_values: tuple[bytes, ...] = ()  # get, ok: the live siblings, newest last
    read_context: dict[str, int] | None = None  # get, ok: the context to write with

    @property
    def done(self) -> bool:
        return self.outcome != ""

    def describe(self) -> str:
        text = f"{self.f} {_text(self.key)}"
        if self.value is not None:
            text += f"={_text(self.value)}"
        if self.level:
            text += f" level={self.level}"
        if self.acks:
            text += f" acks={self.acks}"
        if self.context is not None:
            text += f" ctx={format_context(self.context)}"
        return text


def format_context(context: dict[str, int]) -> str:
    """A version vector as ``{n1:2,n3:1}``, nodes in sorted order."""
    return "{" + ",".join(f"{node}:{count}" for node, count in sorted(context.items())) + "}"


def _text(raw: bytes) -> str:
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return "0x" + raw.hex()
    return text if text.isprintable() and " " not in text and text else repr(raw)
