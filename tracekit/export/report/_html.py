"""Escaping and small formatting helpers: every string from a trace goes through :func:`esc`."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any, Final

from tracekit.export.durations import human_duration

__all__ = ["esc", "fmt_duration", "hash_short", "text"]

_HASH_SHOWN: Final = 12  # hex digits of a hash shown inline; the full value is in the tooltip


def text(value: Any, default: str = "") -> str:
    """A trace value as display text (``default`` for missing values)."""
    if value is None:
        return default
    return value if isinstance(value, str) else str(value)


def esc(value: Any, default: str = "") -> str:
    """``value`` as text, escaped for HTML content and quoted attribute values alike."""
    return html.escape(text(value, default), quote=True)


fmt_duration: Final = human_duration  # one formatter for the report and `tracekit show`


def hash_short(value: Any) -> tuple[str, str]:
    """(short, full) text of a hash object, both unescaped; empty when there is none."""
    if not isinstance(value, Mapping) or not isinstance(value.get("value"), str):
        return "", ""
    full = f"{text(value.get('algorithm'), 'blake3')}:{value['value']}"
    return value["value"][:_HASH_SHOWN], full
