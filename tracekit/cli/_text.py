"""Text from a trace made safe and sized for a terminal: escaped, capped, fitted to the width.

A trace is a file people send each other, so every string in it is hostile until shown
otherwise: an ESC sequence retitles the terminal or clears the screen, a bare CR overwrites
what came before, a bidi override (U+202E) shows text in another order than it is. Every string
a command prints from a trace goes through :func:`safe` (one line) or :func:`safe_lines` (text
that has lines of its own), which escape those characters as ``\\x1b``, ``\\r``, ``\\u202e``;
``--json`` output needs none of this (JSON escapes control characters, and it is read by tools).

Widths are counted in terminal cells: East Asian wide and fullwidth characters take two; every
other character is counted as one (combining marks too: that over-counts, never under-counts),
so a fitted line is never wider than the terminal, however it is measured.

Threading contract: pure functions; safe from any thread.
"""

from __future__ import annotations

import re
import shutil
import unicodedata
from collections.abc import Iterator
from typing import Final

__all__ = [
    "ELLIPSIS",
    "MAX_FIELD_CHARS",
    "cap",
    "cells",
    "fit",
    "prefix",
    "safe",
    "safe_lines",
    "terminal_width",
    "wrap",
]

#: Every field printed from a trace is cut to this many characters ("... [N more characters]").
MAX_FIELD_CHARS: Final = 2000
#: What a cut cell ends with.
ELLIPSIS: Final = "…"

# C0 and C1 controls and DEL (category Cc), every format character (Cf: the bidi embeddings,
# overrides and isolates, zero-width characters, the BOM, tags), and the line and paragraph
# separators (Zl, Zp). tests/test_cli_terminal.py checks this class against unicodedata.
_UNSAFE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f]"
)


_SHORT: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in _SHORT:
        return _SHORT[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def cap(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


def safe(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """One line of trace text for a terminal: capped first, then every unsafe character escaped.

    Newlines and tabs are escaped too: a node id or a message is one line in a table.
    """
    return _UNSAFE.sub(_escape, cap(text, limit))


def safe_lines(text: str, limit: int = MAX_FIELD_CHARS) -> list[str]:
    """Multi-line trace text (a traceback, a ``trace_format()``) as escaped lines.

    Only ``\\n`` (and ``\\r\\n``) ends a line; a bare CR, which would overwrite the line, is escaped.
    """
    capped = cap(text, limit)
    return [safe(line.removesuffix("\r"), len(line)) for line in capped.split("\n")]


def _char_cells(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def cells(text: str) -> int:
    """Terminal cells ``text`` takes (see the module docstring for how they are counted)."""
    if text.isascii():
        return len(text)
    return sum(_char_cells(ch) for ch in text)


def prefix(text: str, width: int) -> str:
    """The longest start of ``text`` that fits in ``width`` cells."""
    if text.isascii():
        return text[:max(width, 0)]
    used = 0
    for n, ch in enumerate(text):
        used += _char_cells(ch)
        if used > width:
            return text[:n]
    return text


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` cells, ending with an ellipsis when anything was cut."""
    if cells(text) <= width:
        return text
    if width <= 0:
        return ""
    return prefix(text, width - 1) + ELLIPSIS


def _chunks(word: str, first: int, rest: int) -> Iterator[str]:
    """A word too long for a line, broken into pieces: ``first`` cells, then ``rest`` each."""
    piece: list[str] = []
    used = 0
    room = max(first, 1)
    for ch in word:
        w = _char_cells(ch)
        if piece and used + w > room:
            yield "".join(piece)
            piece, used, room = [], 0, max(rest, 1)
        piece.append(ch)
        used += w
    if piece:
        yield "".join(piece)


_TOKENS: Final = re.compile(r" +|[^ ]+")


def wrap(text: str, width: int, indent: str = "", first_indent: str | None = None) -> list[str]:
    """``text`` wrapped at spaces to ``width`` cells; words longer than a line are broken.

    ``first_indent`` starts the first line (default ``indent``); later lines start with ``indent``.
    Runs of spaces inside a line are kept (``a  b`` stays two spaces apart); a run where the line
    breaks is dropped. Unlike :mod:`textwrap` this counts cells, not characters, and never
    returns a line wider than ``width``.
    """
    lead = indent if first_indent is None else first_indent
    lines: list[str] = []
    line, used = lead, cells(lead)
    fresh = True  # nothing but the indent on this line yet
    gap = ""
    for token in _TOKENS.findall(text):
        if token[0] == " ":
            gap = token
            continue
        w = cells(token)
        sep = "" if fresh else gap
        gap = ""
        if used + len(sep) + w <= width:
            line, used, fresh = line + sep + token, used + len(sep) + w, False
            continue
        if not fresh and w <= width - cells(indent):
            lines.append(line)  # the word fits on a line of its own: start one
            line, used, fresh = indent, cells(indent), True
        elif not fresh:
            line, used = line + sep, used + len(sep)  # longer than any line: break it from here
        for n, piece in enumerate(_chunks(token, width - used, width - cells(indent))):
            if n:
                lines.append(line)
                line, used = indent, cells(indent)
            line, used, fresh = line + piece, used + cells(piece), False
    lines.append(line)
    return [fit(ln, width) for ln in lines]


def terminal_width() -> int:
    """Columns of the terminal (``COLUMNS`` first, as :func:`shutil.get_terminal_size` reads it)."""
    columns = shutil.get_terminal_size((80, 24)).columns
    return columns if columns > 0 else 80

