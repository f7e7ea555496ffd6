"""Turning an exception into text that is safe to keep: message, traceback, trace.

Every helper survives hostile errors (a ``__str__`` that raises, cyclic ``__context__``, huge
groups) because the failure being described is exactly when nothing else may break.
Threading contract: pure functions, safe from any thread.
"""

from __future__ import annotations

import traceback
from typing import Final

__all__ = ["MAX_CHAIN", "MAX_LINKS", "qualname", "safe_message", "safe_traceback", "trace_text"]

#: Links of ``__cause__``/``__context__`` followed from one error before giving up.
MAX_CHAIN: Final = 32
#: Links described in all, across the members of exception groups, so a group of groups of
#: thousands of failures still gives a bounded record.
MAX_LINKS: Final = 256


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
