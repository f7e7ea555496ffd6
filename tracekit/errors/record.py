"""The envelope's ``error`` object of one failure: code, message and details (chain, hints, phase).

Nothing here raises: an error that cannot be formatted is recorded as such. Every text in it is
redacted (:func:`~tracekit.errors.text.redact_text`) and ``details`` passes the key denylist of
captured payloads, whether or not inputs are captured.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from tracekit.capture.redact import redact
from tracekit.errors.chain import chain
from tracekit.errors.codes import DEFAULT_MAX_CHARS, classify, hints_for
from tracekit.errors.text import cap_text, qualname, safe_message, safe_traceback, trace_text

__all__ = ["error_record"]

_T = TypeVar("_T")


def _guarded(fallback: _T, func: Callable[[], _T]) -> _T:
    try:
        return func()
    except Exception:
        return fallback


def error_record(
    error: BaseException,
    *,
    phase: str | None = None,
    code: str | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> dict[str, Any]:
    """The envelope's ``error`` object ``{code, message, details}``; never raises.

    Each part is built on its own, so one that fails (a broken ``__str__``, a ``trace_format``
    that raises, a hostile ``hints`` attribute) leaves the others intact.
    """
    type_name = _guarded("<unknown>", lambda: qualname(error))
    no_links: list[dict[str, Any]] = []
    no_hints: list[str] = []
    links = _guarded(no_links, lambda: chain(error, cap=max_chars))
    details: dict[str, Any] = {
        "type": type_name,
        "chain": links,
        "traceback": _guarded("", lambda: safe_traceback(error, max_chars)),
        "hints": _guarded(no_hints, lambda: [cap_text(h, max_chars) for h in hints_for(error)]),
        "phase": phase,
    }
    trace = _guarded(None, lambda: trace_text(error, max_chars))
    if trace is not None:
        details["trace"] = trace
    return {
        "code": code or _guarded("node_error", lambda: classify(error)),
        "message": _guarded(f"<{type_name}>", lambda: safe_message(error, max_chars)),
        # The key denylist too: nothing reaches a trace that the redactor has not seen.
        "details": _guarded({"type": type_name, "chain": [], "traceback": "", "hints": [], "phase": phase},
                            lambda: redact(details)),
    }
