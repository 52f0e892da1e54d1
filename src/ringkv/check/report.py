"""Verdicts: what every checker hands back, and one table that shows them.

A checker's own result keeps everything it found; its ``verdict()`` boils it
down to a ``Verdict``: the checker's name, ``valid`` (True, False, or None
for *unknown*: the history could not decide, e.g. nothing was ever read), a
one-line summary and a JSON-able ``details`` map of counts and (truncated)
lists. Unknown counts as a failure everywhere (Jepsen's ``:unknown``): a run
that verified nothing has not passed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table
from rich.text import Text

__all__ = ["LIST_MAX", "Verdict", "all_valid", "render_table", "truncated"]

LIST_MAX = 10  # items of each list a verdict's details keep


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    checker: str
    valid: bool | None  # None: unknown, which counts as a failure
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.valid is True

    @property
    def status(self) -> str:
        """``valid``, ``INVALID`` or ``UNKNOWN``."""
        if self.valid is None:
            return "UNKNOWN"
        return "valid" if self.valid else "INVALID"

    def to_json(self) -> dict[str, Any]:
        return {
            "checker": self.checker,
            "valid": self.valid,
            "summary": self.summary,
            "details": dict(self.details),
        }


def all_valid(verdicts: Iterable[Verdict]) -> bool:
    """True when every verdict is valid (an unknown one is not)."""
    return all(verdict.passed for verdict in verdicts)


def truncated(items: Sequence[Any], limit: int = LIST_MAX) -> list[Any]:
    """The first ``limit`` items, and a last string saying how many were left off."""
    shown = list(items[:limit])
    if len(items) > limit:
        shown.append(f"... {len(items) - limit} more")
    return shown


_STYLES = {"valid": "bold green", "INVALID": "bold red", "UNKNOWN": "bold yellow"}


def render_table(
    verdicts: Iterable[Verdict], *, title: str = "checks", details: bool = False
) -> Table:
    """One row per verdict: checker, status, summary (and, if asked, its details)."""
    table = Table(title=title, title_justify="left")
    table.add_column("check", style="bold")
    table.add_column("result")
    table.add_column("summary", overflow="fold")
    if details:
        table.add_column("details", overflow="fold")
    for verdict in verdicts:
        # Text, not str: a summary such as "lost [3, 4]" is not rich markup.
        row = [
            Text(verdict.checker),
            Text(verdict.status, style=_STYLES[verdict.status]),
            Text(verdict.summary),
        ]
        if details:
            row.append(Text(_details_text(verdict.details)))
        table.add_row(*row)
    return table


def _details_text(details: Mapping[str, Any]) -> str:
    lines = []
    for name, value in details.items():
        if isinstance(value, list | tuple) and value:
            lines.append(f"{name}:")
            lines.extend(f"  {item}" for item in value)
        else:
            lines.append(f"{name}: {value}")
    return "\n".join(lines)
