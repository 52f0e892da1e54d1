"""An HTML timeline of one key's history, for reading a linearizability verdict.

One self-contained page (inline CSS and SVG, no script, no external asset):
a row per process, each operation a bar from its invoke index to its
completion index, colored by function (read, write, cas); a ``fail`` is
drawn faint and dashed, an ``info`` or never-completed operation runs open to
the right edge (it may take effect until the end). The operations of the
linearization the checker found (the longest linearizable prefix when the key
is not linearizable) carry their position in it; the operations that could
not be placed after it are outlined in red. Below, the same linearization as a
table with the register's value after each step. Every value and key comes
from a history, so everything shown is HTML-escaped. Porcupine's
visualization is the model (github.com/anishathalye/porcupine).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Final

from ringkv.check.history import FAIL, OK, Operation
from ringkv.check.linearizability import KeyResult, describe_operation, register_step

__all__ = ["render_timeline_html", "write_timeline_html"]

OPERATIONS_MAX_DEFAULT: Final = 2000  # beyond this the page is too big to read anyway
_COLORS: Final = {"read": "#4e79a7", "write": "#59a14f", "cas": "#f28e2b"}
_OTHER_COLOR: Final = "#9c755f"
_ROW_HEIGHT_PX: Final = 26
_BAR_HEIGHT_PX: Final = 16
_GUTTER_PX: Final = 70
_OPEN_END_PX: Final = 40  # how far past the last event an open-ended bar runs
_WIDTH_TARGET_PX: Final = 1400


def write_timeline_html(
    result: KeyResult, path: Path | str, *, operations_max: int = OPERATIONS_MAX_DEFAULT
) -> None:
    """Write ``render_timeline_html(result)`` to ``path`` (UTF-8)."""
    Path(path).write_text(
        render_timeline_html(result, operations_max=operations_max), encoding="utf-8"
    )


def render_timeline_html(result: KeyResult, *, operations_max: int = OPERATIONS_MAX_DEFAULT) -> str:
    """The page as a string. Only the first ``operations_max`` operations (in
    invoke order) are drawn; the page says how many were left out."""
    shown = result.operations[:operations_max]
    order = {id(op): step for step, op in enumerate(result.linearization, 1)}
    unplaced = {id(op) for op in result.unplaced}
    left_out = len(result.operations) - len(shown)
    note = f"<p class=note>{left_out} later operations are not drawn.</p>" if left_out > 0 else ""
    title = f"{result.key}: {result.verdict}"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{_escape(title)}</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<h1>key <code>{_escape(result.key)}</code>: "
            f'<span class="verdict {_verdict_class(result.valid)}">'
            f"{_escape(result.verdict)}</span></h1>",
            f"<p>{len(result.operations)} operations, {len(result.linearization)} linearized"
            f"{'' if result.valid else ' (longest prefix found)'}, "
            f"{result.states_explored} states explored; initial value "
            f"<code>{_escape(_json(result.initial))}</code>.</p>",
            _LEGEND,
            note,
            '<div class="scroll">',
            _svg(shown, order, unplaced),
            "</div>",
            _table(result),
            "</body></html>",
            "",
        ]
    )


def _svg(ops: tuple[Operation, ...], order: dict[int, int], unplaced: set[int]) -> str:
    if not ops:
        return "<p>No operations.</p>"
    first = min(op.start for op in ops)
    last = max(max(op.start, op.completion.index if op.completion else op.start) for op in ops)
    span = max(last - first, 1)
    scale = max(4.0, min(40.0, _WIDTH_TARGET_PX / span))
    processes = sorted({op.process for op in ops})
    row = {process: i for i, process in enumerate(processes)}
    right = _GUTTER_PX + span * scale + _OPEN_END_PX
    height = len(processes) * _ROW_HEIGHT_PX + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{right + 10:.0f}" '
        f'height="{height}" role="img">',
        _DEFS,
    ]
    for process in processes:
        y = row[process] * _ROW_HEIGHT_PX + 20
        parts.append(
            f'<text class="process" x="4" y="{y + _BAR_HEIGHT_PX - 4}">p{process}</text>'
            f'<line class="lane" x1="{_GUTTER_PX}" x2="{right:.0f}" '
            f'y1="{y + _BAR_HEIGHT_PX / 2}" y2="{y + _BAR_HEIGHT_PX / 2}"/>'
        )
    for op in ops:
        x0 = _GUTTER_PX + (op.start - first) * scale
        x1 = right if op.end is None else _GUTTER_PX + (op.end - first) * scale
        y = row[op.process] * _ROW_HEIGHT_PX + 20
        parts.append(_bar(op, x0, max(x1 - x0, 3.0), y, order.get(id(op)), id(op) in unplaced))
    parts.append("</svg>")
    return "".join(parts)


def _bar(op: Operation, x: float, width: float, y: int, step: int | None, misfit: bool) -> str:
    color = _COLORS.get(op.f, _OTHER_COLOR)
    classes = ["op", op.type if op.completion is not None else "open"]
    if op.end is None:
        fill = f"url(#open-{op.f})" if op.f in _COLORS else color
    else:
        fill = color
    if step is not None:
        classes.append("linearized")
    if misfit:
        classes.append("unplaced")
    label = _short(op)
    badge = (
        f'<text class="step" x="{x + 2:.1f}" y="{y - 2}">#{step}</text>' if step is not None else ""
    )
    if misfit:
        badge += f'<text class="cross" x="{x:.1f}" y="{y - 2}">\u2717</text>'  # a cross
    text = (
        f'<text class="label" x="{x + 3:.1f}" y="{y + _BAR_HEIGHT_PX - 4}">{_escape(label)}</text>'
        if width >= 7 * len(label) + 4
        else ""
    )
    return (
        f'<g class="{" ".join(classes)}"><title>{_escape(_tooltip(op, step, misfit))}</title>'
        f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{_BAR_HEIGHT_PX}" '
        f'rx="3" fill="{fill}"/>{text}{badge}</g>'
    )


def _short(op: Operation) -> str:
    if op.f == "read":
        return f"r {_json(op.value)}" if op.type == OK else "r ?"
    if op.f == "write":
        return f"w {_json(op.value)}"
    if op.f == "cas" and isinstance(op.value, (list, tuple)) and len(op.value) == 2:
        return f"cas {_json(op.value[0])}\u2192{_json(op.value[1])}"
    return f"{op.f} {_json(op.value)}"


def _tooltip(op: Operation, step: int | None, misfit: bool) -> str:
    text = describe_operation(op)
    if step is not None:
        text += f" (linearized #{step})"
    if misfit:
        text += " (could not be placed after the prefix)"
    if op.type == FAIL:
        text += " (failed: no effect)"
    return text


def _table(result: KeyResult) -> str:
    rows = []
    value = result.initial
    for step, op in enumerate(result.linearization, 1):
        _, value = register_step(value, op)
        rows.append(
            f"<tr><td>{step}</td><td>{_escape(describe_operation(op))}</td>"
            f"<td><code>{_escape(_json(value))}</code></td></tr>"
        )
    heading = "Linearization" if result.valid else "Longest linearizable prefix found"
    parts = [
        f"<h2>{heading}</h2>",
        "<table><tr><th>#</th><th>operation</th><th>value after</th></tr>",
        *rows,
        "</table>",
    ]
    if result.unplaced:
        parts.append(
            "<h2>Could not be placed next</h2><p>Each must come next by real-time order, "
            f"and none fits the value <code>{_escape(_json(result.value_after))}</code>:</p><ul>"
        )
        parts.extend(f"<li>{_escape(describe_operation(op))}</li>" for op in result.unplaced)
        parts.append("</ul>")
    return "\n".join(parts)


def _verdict_class(valid: bool | None) -> str:
    return {True: "pass", False: "fail", None: "unknown"}[valid]


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


_DEFS: Final = (
    "<defs>"
    + "".join(
        f'<linearGradient id="open-{name}" x1="0" x2="1" y1="0" y2="0">'
        f'<stop offset="0" stop-color="{color}"/><stop offset="0.6" stop-color="{color}"/>'
        f'<stop offset="1" stop-color="{color}" stop-opacity="0.05"/></linearGradient>'
        for name, color in _COLORS.items()
    )
    + "</defs>"
)

_LEGEND: Final = (
    '<p class="legend">'
    + "".join(
        f'<span><i style="background:{color}"></i>{name}</span>' for name, color in _COLORS.items()
    )
    + "<span>faint, dashed: fail (no effect)</span>"
    + "<span>fading to the right edge: info or never completed</span>"
    + "<span><b>#n</b>: position in the linearization</span>"
    + '<span class="misfit">\u2717 red outline: could not be placed</span></p>'
)

_CSS: Final = """
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
.verdict.pass { color: #2e7d32; } .verdict.fail { color: #c62828; }
.verdict.unknown { color: #ef6c00; }
.scroll { overflow-x: auto; border: 1px solid #ddd; padding: 4px; }
.legend span { margin-right: 1.2em; } .legend i { display: inline-block; width: 12px;
  height: 12px; margin-right: 4px; vertical-align: middle; }
.legend .misfit { color: #c62828; }
.process { font: 12px monospace; fill: #444; }
.lane { stroke: #eee; }
.op rect { stroke: #333; stroke-width: 0.5; opacity: 0.55; }
.op.linearized rect { opacity: 1; stroke-width: 1.2; }
.op.fail rect { opacity: 0.2; stroke-dasharray: 3 2; }
.op.open rect, .op.info rect { stroke: none; }
.op.unplaced rect { stroke: #c62828; stroke-width: 2.5; opacity: 1; }
.label { font: 11px monospace; fill: #fff; pointer-events: none; }
.step { font: bold 10px monospace; fill: #222; }
.cross { font: bold 12px monospace; fill: #c62828; }
table { border-collapse: collapse; margin-top: 0.5em; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; font-family: monospace; }
.note { color: #ef6c00; }
"""
