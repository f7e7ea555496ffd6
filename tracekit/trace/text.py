"""Strings from a trace, made safe to print: control and bidi characters escaped repr-style.

A trace is data someone else may have written; printing its text raw could move the cursor,
recolour the terminal or reorder what a person reads (bidi overrides).
"""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = ["esc"]

_UNSAFE: Final = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c <= 0xFF else f"\\u{c:04x}"


def esc(value: Any) -> str:
    """``value`` as display text (non-strings via ``str``), unsafe characters escaped."""
    text = value if isinstance(value, str) else str(value)
    return _UNSAFE.sub(_escape, text)
