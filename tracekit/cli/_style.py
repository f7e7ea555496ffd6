"""How the command line looks: colors that disappear when piped, under ``NO_COLOR`` or on a dumb
terminal, lines fitted to the terminal, and the short forms of hashes, durations and times a
person reads in the minute after a failure.

Lines are built as :class:`Span` sequences (plain text plus a style) and painted last, so a line
is measured and cut on its visible text and the escape codes never count toward its width.

Threading contract: stateless helpers; safe from any thread.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import click

from tracekit.cli._text import ELLIPSIS, cells, fit, prefix
from tracekit.export.durations import human_duration

__all__ = [
    "SHORT_HASH",
    "STATUS_COLORS",
    "Column",
    "Span",
    "color_enabled",
    "echo",
    "fmt_duration",
    "paint",
    "short_hash",
    "style",
    "table",
]

#: Hex digits of a hash shown in tables: enough to tell steps apart, short enough to read.
SHORT_HASH: Final = 10
_GAP: Final = "  "

STATUS_COLORS: Final = {
    "completed": "green",
    "success": "green",
    "failed": "red",
    "failure": "red",
    "cancelled": "yellow",
    "in_flight": "magenta",
    "in_progress": "magenta",
}


def color_enabled() -> bool | None:
    """``False`` under ``NO_COLOR`` (https://no-color.org) or ``TERM=dumb``; else ``None``: click
    decides by whether the output is a terminal."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return None


def echo(text: str = "", *, err: bool = False) -> None:
    """``click.echo`` that honours ``NO_COLOR`` and ``TERM=dumb`` (click strips color when piped)."""
    click.echo(text, err=err, color=color_enabled())


def style(text: str, color: str | None = None, *, bold: bool = False, dim: bool = False) -> str:
    """``text`` in ``color``, bold or dim; only the attributes asked for are emitted.

    ``click.style(bold=True, dim=False)`` writes ESC[1m then ESC[22m (normal intensity), which
    turns bold off again: False is passed as None so click writes nothing for it.
    """
    if not (color or bold or dim):
        return text
    return click.style(text, fg=color, bold=bold or None, dim=dim or None)


@dataclass(frozen=True, slots=True)
class Span:
    """A piece of a line: its visible text and how it looks."""

    text: str
    color: str | None = None
    bold: bool = False
    dim: bool = False


def paint(spans: Sequence[Span | str], width: int) -> str:
    """The spans as one line of at most ``width`` cells (cut with an ellipsis), then styled."""
    parts = [s if isinstance(s, Span) else Span(s) for s in spans]
    if sum(cells(p.text) for p in parts) <= width:
        return "".join(style(p.text, p.color, bold=p.bold, dim=p.dim) for p in parts).rstrip(" ")
    room = max(width - 1, 0)  # one cell for the ellipsis
    out: list[str] = []
    for p in parts:
        if cells(p.text) <= room:
            out.append(style(p.text, p.color, bold=p.bold, dim=p.dim))
            room -= cells(p.text)
            continue
        out.append(style(prefix(p.text, room) + ELLIPSIS, p.color, bold=p.bold, dim=p.dim))
        break
    return "".join(out) if width > 0 else ""


def short_hash(h: Any) -> str:
    """The first hex digits of an envelope hash object, or ``-`` when there is none."""
    if isinstance(h, dict) and isinstance(h.get("value"), str):
        return str(h["value"])[:SHORT_HASH]
    return "-"


def fmt_duration(step: dict[str, Any]) -> str:
    """A step's duration in the unit a person reads best (ns when known, else ms)."""
    raw_ns, raw_ms = step.get("duration_ns"), step.get("duration_ms")
    if type(raw_ns) is int:
        ns: int = raw_ns
    elif type(raw_ms) is int:
        ns = raw_ms * 1_000_000
    else:
        return "-"
    return human_duration(ns)


@dataclass(frozen=True, slots=True)
class Column:
    """A table column. ``keep``: lower numbers are dropped last when the terminal is narrow;
    ``shrink``: the column may be cut (with an ellipsis) down to ``min_width`` cells."""

    header: str
    keep: int = 0
    shrink: bool = False
    min_width: int = 4


def _widths(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int) -> list[int | None]:
    """Each column's width, or None for a column dropped because the line cannot hold it."""
    natural = [max([cells(c.header)] + [cells(r[i]) for r in rows]) for i, c in enumerate(columns)]
    shown = list(range(len(columns)))
    while True:
        need = sum(natural[i] for i in shown) + len(_GAP) * (len(shown) - 1)
        over = need - width
        if over <= 0:
            break
        flexible = [i for i in shown if columns[i].shrink and natural[i] > columns[i].min_width]
        slack = sum(natural[i] - max(columns[i].min_width, cells(columns[i].header)) for i in flexible)
        if slack >= over:
            widths = dict(zip(shown, (natural[i] for i in shown), strict=True))
            for i in sorted(flexible, key=lambda i: (-columns[i].keep, -i)):  # least needed first
                floor = max(columns[i].min_width, cells(columns[i].header))
                take = min(over, widths[i] - floor)
                widths[i] -= take
                over -= take
            return [widths.get(i) for i in range(len(columns))]
        if len(shown) == 1:
            return [width if i in shown else None for i in range(len(columns))]
        shown.remove(max(shown, key=lambda i: (columns[i].keep, i)))
    return [natural[i] if i in shown else None for i in range(len(columns))]


def _pad(text: str, width: int) -> str:
    cut = fit(text, width)
    return cut + " " * (width - cells(cut))


def table(
    columns: Sequence[Column | str],
    rows: list[list[str]],
    colors: Sequence[str | None] | None = None,
    width: int = 10_000,
) -> list[str]:
    """Left-aligned columns sized to their widest cell, fitted into ``width`` cells.

    When the line is too narrow, ``shrink`` columns are cut first, then columns are dropped,
    highest ``keep`` first. ``colors`` styles whole rows. Cells must already be safe text.
    """
    cols = [c if isinstance(c, Column) else Column(c) for c in columns]
    widths = _widths(cols, rows, width)

    def line(cells_: Sequence[str]) -> str:
        parts = [_pad(c, w) for c, w in zip(cells_, widths, strict=True) if w is not None]
        return fit(_GAP.join(parts).rstrip(), width)

    out = [style(line([c.header for c in cols]), bold=True)]
    for n, row in enumerate(rows):
        out.append(style(line(row), colors[n] if colors else None))
    return out
