"""Turning an exception into text that is safe to keep: message, chain, traceback, trace.

Every helper survives hostile errors (a ``__str__`` that raises, cyclic ``__context__``, huge
groups) because the failure being described is exactly when nothing else may break.
Threading contract: pure functions, safe from any thread.
"""

from __future__ import annotations

import traceback
from typing import Any, Final

__all__ = ["MAX_CHAIN", "MAX_LINKS", "chain", "qualname", "safe_message", "safe_traceback", "trace_text"]

#: Links of ``__cause__``/``__context__`` followed from one error before giving up.
MAX_CHAIN: Final = 32
#: Links described in all, across the members of exception groups, so a group of groups of
#: thousands of failures still gives a bounded record.
MAX_LINKS: Final = 256
_MAX_GROUP_MEMBERS: Final = 64
_MAX_GROUP_DEPTH: Final = 4


def qualname(error: BaseException) -> str:
    """``module.QualName`` of the error's type (``QualName`` alone for built-ins)."""
    t = type(error)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def cap_text(text: str, cap: int) -> str:
    if len(text) <= cap:
        return text
    return text[:cap] + f"... [truncated: {len(text)} characters in all]"


def safe_message(error: BaseException, cap: int) -> str:
    """``str(error)``, or a note saying that it raised."""
    try:
        text = str(error)
    except Exception as exc:
        text = f"<str() of {type(error).__qualname__} raised {type(exc).__qualname__}>"
    return cap_text(text, cap)


def trace_text(error: BaseException, cap: int) -> str | None:
    """The text of a :class:`~tracekit.errors.Traceable` error, or why it could not be had."""
    try:
        fmt = getattr(error, "trace_format", None)
    except Exception as exc:
        return f"<reading trace_format raised {type(exc).__qualname__}>"
    if not callable(fmt):
        return None
    try:
        text = fmt()
        if not isinstance(text, str):
            text = f"<trace_format() returned {type(text).__qualname__}, not str>: {text!r}"
        return cap_text(text, cap)
    except Exception as exc:
        return f"<trace_format() raised {type(exc).__qualname__}: {safe_message(exc, 200)}>"


def safe_traceback(error: BaseException, cap: int) -> str:
    """The traceback as Python prints it (groups included); the end is kept when it is long."""
    try:
        text = "".join(traceback.format_exception(error))
    except Exception as exc:
        text = f"<formatting the traceback raised {type(exc).__qualname__}>"
    if len(text) <= cap:
        return text
    # Keep the end: the innermost frames and the final error line say the most.
    return f"[truncated: {len(text)} characters in all]...\n" + text[-cap:]


class _Budget:
    __slots__ = ("left",)

    def __init__(self, links: int) -> None:
        self.left = links


def _link(error: BaseException, relation: str, cap: int, depth: int, budget: _Budget) -> dict[str, Any]:
    # Imported here: errors.py imports this module, and codes live there.
    from tracekit.errors import classify

    link: dict[str, Any] = {
        "type": qualname(error),
        "message": safe_message(error, cap),
        "relation": relation,
    }
    trace = trace_text(error, cap)
    if trace is not None:
        link["trace"] = trace
    if isinstance(error, BaseExceptionGroup):
        members = list(error.exceptions)
        listed: list[dict[str, Any]] = []
        for member in members[:_MAX_GROUP_MEMBERS]:
            if budget.left <= 0:
                break
            budget.left -= 1
            item: dict[str, Any] = {
                "type": qualname(member),
                "message": safe_message(member, cap),
                "code": classify(member),
            }
            if depth < _MAX_GROUP_DEPTH:
                item["chain"] = _chain(member, cap, depth + 1, budget)
            listed.append(item)
        link["exceptions"] = listed
        if len(members) > len(listed):
            link["exceptions_dropped"] = len(members) - len(listed)
    return link


def _chain(error: BaseException, cap: int, depth: int, budget: _Budget) -> list[dict[str, Any]]:
    links: list[dict[str, Any]] = []
    seen: set[int] = set()
    current: BaseException | None = error
    relation = "raised"
    while current is not None and id(current) not in seen and len(links) < MAX_CHAIN:
        if budget.left <= 0 and links:
            break
        budget.left -= 1
        seen.add(id(current))
        links.append(_link(current, relation, cap, depth, budget))
        if current.__cause__ is not None:
            current, relation = current.__cause__, "cause"
        elif current.__context__ is not None and not current.__suppress_context__:
            current, relation = current.__context__, "context"
        else:
            current = None
    return links


def chain(error: BaseException, cap: int = 4096) -> list[dict[str, Any]]:
    """The raised error first, then its causes and contexts as Python prints them; root cause last.

    Each link has ``type``, ``message``, ``relation`` (``raised``, ``cause`` or ``context``),
    ``trace`` for a Traceable error, and ``exceptions`` (each with ``type``, ``message``,
    ``code`` and its own ``chain``) for an exception group. Loops are cut where they close.
    """
    return _chain(error, cap, 0, _Budget(MAX_LINKS))
