"""Checks a trace file passes before it is parsed for real: bounded size in memory, no duplicate keys.

Parsing JSON into Python objects multiplies its size by up to ~36 (``{}`` is two bytes and a
64-byte dict), so a 50 MB file of empty objects would take gigabytes. :func:`count_values` bounds
the number of values (and keys) from the raw bytes, without building anything, so a file that
would not fit is refused before it is read into objects.

JSON allows a key twice in one object and every parser keeps one of them silently (orjson the
last), so ``{"outcome": "failure", ..., "outcome": "success"}`` would read as a success.
:func:`duplicate_key` finds the first key that appears twice and where (a JSON Pointer).

Threading contract: pure functions; :func:`duplicate_key` briefly raises the interpreter's
recursion limit on Python 3.11 (whose JSON scanner counts against it); call it from the main
thread of the command line, as the CLI does.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from typing import Any, Final

__all__ = ["MAX_TRACE_VALUES", "count_values", "duplicate_key"]

#: More JSON values (and keys) than this are refused: in Python objects they would not fit in a
#: few hundred MB. A recorder trace holds the last N steps with capped payloads: far fewer.
MAX_TRACE_VALUES: Final = 1_000_000

_PUNCTUATION: Final = (b",", b":", b"[", b"{")
_KEPT: Final = b'",:[{'
_DROP: Final = bytes(b for b in range(256) if b not in _KEPT)
# A string once only quotes and punctuation are left (escapes are gone by then).
_BARE_STRING: Final = re.compile(rb'"[^"]*"')
_CHUNK: Final = 1 << 20
_DEPTH_HEADROOM: Final = 1_100  # orjson reads 1024 levels; the stdlib scanner must too


def _punctuation(data: bytes, start: int = 0, end: int | None = None) -> int:
    stop = len(data) if end is None else end
    return sum(data.count(p, start, stop) for p in _PUNCTUATION)


def count_values(data: bytes) -> int:
    """An upper bound of the values and keys in the JSON text ``data``, from its punctuation.

    Every value but the root follows a ``[``, ``,`` or ``:``, and every key a ``{`` or ``,``.
    When the raw count is under :data:`MAX_TRACE_VALUES` that is the answer; otherwise the
    punctuation inside strings is taken out (escapes removed, then everything but quotes and
    punctuation, then the strings, a chunk at a time so no step holds more than a copy).
    """
    raw = 1 + _punctuation(data)
    if raw <= MAX_TRACE_VALUES:
        return raw
    # Escapes first, left to right as JSON reads them: an escaped backslash, then an escaped quote.
    bare = data.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _DROP)
    total, start = 1, 0
    while start < len(bare):
        end = min(start + _CHUNK, len(bare))
        if bare.count(b'"', start, end) % 2:  # the chunk would end inside a string
            close = bare.find(b'"', end)
            end = len(bare) if close < 0 else close + 1
        total += _punctuation(_BARE_STRING.sub(b"", bare[start:end]))
        start = end
    return total


class _Found(Exception):
    pass


def _first_repeat(pairs: list[tuple[str, Any]]) -> str | None:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    return None


def _cheap_hook(pairs: list[tuple[str, Any]]) -> None:
    # Objects are dropped as soon as they are checked: the scan holds no tree of dicts.
    if len(pairs) > 1 and len({k for k, _ in pairs}) != len(pairs):
        raise _Found
    return None


class _Marked(dict[str, Any]):
    """The object that repeats a key (found on the second, slower pass)."""

    repeated = ""


def _marking_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    key = _first_repeat(pairs) if len(pairs) > 1 else None
    if key is None:
        return dict(pairs)
    marked = _Marked(pairs)
    marked.repeated = key
    return marked


def _escape(segment: object) -> str:
    return str(segment).replace("~", "~0").replace("/", "~1")


def _find_marked(root: Any) -> tuple[str, str] | None:
    """(pointer, key) of the first marked object, walking without recursion."""
    stack: list[tuple[Any, str]] = [(root, "")]
    while stack:
        node, at = stack.pop()
        if isinstance(node, _Marked):
            return at, node.repeated
        children: Iterator[tuple[str, Any]]
        if isinstance(node, dict):
            children = ((_escape(k), v) for k, v in node.items())
        elif isinstance(node, list):
            children = ((str(i), v) for i, v in enumerate(node))
        else:
            continue
        stack.extend(reversed([(v, f"{at}/{seg}") for seg, v in children if isinstance(v, dict | list)]))
    return None


def _scan(text: bytes, hook: Any) -> Any:
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(old + _DEPTH_HEADROOM)
    try:
        return json.loads(text, object_pairs_hook=hook)
    finally:
        sys.setrecursionlimit(old)


def duplicate_key(data: bytes) -> tuple[str, str] | None:
    """``(pointer of the object, key)`` for the first object that has a key twice, else None.

    Text the standard library cannot parse (malformed, too deep, a huge number) is left to the
    real parser, which says what is wrong with it; it is not a duplicate-key problem.
    """
    try:
        _scan(data, _cheap_hook)
        return None
    except _Found:
        pass
    except (ValueError, RecursionError):
        return None
    try:
        return _find_marked(_scan(data, _marking_hook))
    except (ValueError, RecursionError):
        return None
