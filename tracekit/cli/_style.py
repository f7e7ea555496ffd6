"""How the command line looks: colors that disappear when piped or under ``NO_COLOR``, and the
short forms of hashes, durations and times a person reads in the minute after a failure.

Threading contract: stateless helpers; safe from any thread.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Final

import click

from tracekit.export.durations import human_duration

__all__ = [
    "SHORT_HASH",
    "STATUS_COLORS",
    "color_enabled",
    "echo",
    "fmt_duration",
    "short_hash",
    "style",
    "table",
]

#: Hex digits of a hash shown in tables: enough to tell steps apart, short enough to read.
SHORT_HASH: Final = 10

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
    """``False`` under ``NO_COLOR`` (https://no-color.org); else ``None``: click decides by tty."""
    return False if os.environ.get("NO_COLOR") else None


def echo(text: str = "", *, err: bool = False) -> None:
    """``click.echo`` that honours ``NO_COLOR`` (click already strips color when piped)."""
    click.echo(text, err=err, color=color_enabled())


def style(text: str, color: str | None = None, *, bold: bool = False, dim: bool = False) -> str:
    return click.style(text, fg=color, bold=bold, dim=dim) if (color or bold or dim) else text


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


def table(
    headers: list[str], rows: list[list[str]], colors: Sequence[str | None] | None = None
) -> list[str]:
    """Left-aligned columns sized to their widest cell; ``colors`` styles whole rows."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(style(h.ljust(w), bold=True) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for n, row in enumerate(rows):
        text = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        lines.append(style(text, colors[n] if colors else None))
    return lines
