"""What a trace says about a failure: the whole error chain, a code, hints and the phase.

Nothing here raises: an error that cannot be formatted is recorded as such (a trace that hides
the failure because the failure's own ``__str__`` broke would be worse than useless).
"""

from __future__ import annotations

import asyncio
import errno
import threading
import traceback
from collections.abc import Iterable
from typing import Any, Final, Protocol, runtime_checkable

__all__ = [
    "CODES",
    "CONTROL_FLOW_EXCEPTIONS",
    "MAX_CHAIN",
    "Traceable",
    "classify",
    "error_record",
    "hints_for",
    "is_control_flow",
    "register_code",
    "register_control_flow",
    "register_hint",
]

#: The documented taxonomy of ``error.code`` values.
CODES: Final = (
    "node_error",  # a node raised (the default)
    "flow_error",  # the run failed outside any node
    "timeout",
    "cancelled",  # a control-flow signal (task cancelled, interrupt, exit)
    "validation",  # a value was rejected (ValueError, validation issues)
    "io",  # files, sockets, the OS
    "serialization",  # encoding or decoding data
    "infrastructure",  # the machine: memory, recursion, imports
    "connection",
    "permission",
    "not_found",
    "recorder_error",  # tracekit's own bookkeeping failed (the step still ended)
)

MAX_CHAIN: Final = 32  # links of __cause__/__context__ followed before giving up (loops guarded)
_MAX_GROUP_MEMBERS: Final = 64
_MAX_GROUP_DEPTH: Final = 4

CONTROL_FLOW_EXCEPTIONS: list[type[BaseException]] = [
    asyncio.CancelledError,
    GeneratorExit,
    KeyboardInterrupt,
    SystemExit,
]

_lock = threading.Lock()
_CODE_BY_TYPE: dict[type[BaseException], str] = {}
_HINTS_BY_TYPE: dict[type[BaseException], list[str]] = {}


@runtime_checkable
class Traceable(Protocol):
    """An error that formats itself for traces; its text is kept in ``error.details.trace``."""

    def trace_format(self) -> str: ...


def register_control_flow(exc_type: type[BaseException]) -> None:
    """Treat ``exc_type`` as a control-flow signal: its steps end ``cancelled``, not failed."""
    with _lock:
        if exc_type not in CONTROL_FLOW_EXCEPTIONS:
            CONTROL_FLOW_EXCEPTIONS.append(exc_type)


def is_control_flow(error: BaseException) -> bool:
    return isinstance(error, tuple(CONTROL_FLOW_EXCEPTIONS))


def register_code(exc_type: type[BaseException], code: str) -> None:
    """Give every error of ``exc_type`` (and subclasses) the code ``code``."""
    with _lock:
        _CODE_BY_TYPE[exc_type] = code


def register_hint(exc_type: type[BaseException], *hints: str) -> None:
    """Suggest ``hints`` for every error of ``exc_type`` (and subclasses)."""
    with _lock:
        _HINTS_BY_TYPE.setdefault(exc_type, []).extend(hints)


def _builtin_code(error: BaseException) -> str:
    if is_control_flow(error):
        return "cancelled"
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, ConnectionError):
        return "connection"
    if isinstance(error, PermissionError):
        return "permission"
    if isinstance(error, FileNotFoundError | LookupError):
        return "not_found"
    if isinstance(error, UnicodeError):
        return "serialization"
    if isinstance(error, OSError):
        return "io"
    if isinstance(error, MemoryError | RecursionError | ImportError | SystemError):
        return "infrastructure"
    if isinstance(error, ValueError | TypeError | AssertionError):
        return "validation"
    name = type(error).__name__.lower()
    if "timeout" in name:
        return "timeout"
    if any(w in name for w in ("json", "serializ", "encode", "decode", "pickle")):
        return "serialization"
    return "node_error"


def classify(error: BaseException, default: str = "node_error") -> str:
    """The code of ``error``: its ``code`` attribute, then the registry, then built-in rules."""
    code = getattr(error, "code", None)
    if isinstance(code, str) and code:
        return code
    with _lock:
        registered = list(_CODE_BY_TYPE.items())
    for klass in type(error).__mro__:
        for exc_type, c in registered:
            if klass is exc_type:
                return c
    found = _builtin_code(error)
    return default if found == "node_error" else found


_BUILTIN_HINTS: Final[dict[type[BaseException], tuple[str, ...]]] = {
    TimeoutError: (
        "The operation timed out: check the remote side's health, then raise the timeout or add "
        "a retry with backoff.",
    ),
    ConnectionError: (
        "A connection failed: check the host, port, DNS and credentials, and whether the service "
        "is up; retry with backoff if it is transient.",
    ),
    PermissionError: (
        "Permission denied: check the file or resource owner and mode, and which user the runner "
        "runs as.",
    ),
    FileNotFoundError: (
        "A path does not exist: check the working directory and that an earlier step produced it.",
    ),
    KeyError: (
        "A key is missing: compare the input's keys with what the node expects (capture inputs "
        "with TRACEKIT_TRACE_CAPTURE_INPUTS=1 to see them).",
    ),
    MemoryError: ("Out of memory: process the input in smaller batches or give the worker more memory.",),
    RecursionError: ("Recursion too deep: look for a cycle in the data or the graph.",),
    ImportError: ("A module failed to import: check the environment's installed packages and versions.",),
    UnicodeError: ("Text could not be encoded or decoded: check the input's encoding.",),
}

_ERRNO_HINTS: Final = {
    errno.ENOSPC: "The disk is full: free space or point the output at another volume.",
    errno.EROFS: "The file system is read-only: write somewhere writable.",
    errno.EACCES: "Access denied: check permissions and the user the runner runs as.",
    errno.EMFILE: "Too many open files: close files or raise the process's file limit (ulimit -n).",
}


def hints_for(error: BaseException) -> list[str]:
    """Suggested next actions: the error's own ``hints``, then registered, then built-in ones."""
    hints: list[str] = []
    own = getattr(error, "hints", None)
    if isinstance(own, str):
        hints.append(own)
    elif isinstance(own, Iterable):
        hints.extend(str(h) for h in own)
    with _lock:
        registered = list(_HINTS_BY_TYPE.items())
    for exc_type, hs in registered:
        if isinstance(error, exc_type):
            hints.extend(hs)
    for exc_type, builtin in _BUILTIN_HINTS.items():
        if isinstance(error, exc_type):
            hints.extend(builtin)
            break
    if isinstance(error, OSError) and error.errno in _ERRNO_HINTS:
        hints.append(_ERRNO_HINTS[error.errno])
    if is_control_flow(error):
        hints.append("The step was cancelled, not failed: look at what stopped the run.")
    return list(dict.fromkeys(hints))  # unique, in order


def _qualname(error: BaseException) -> str:
    t = type(error)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _message(error: BaseException, cap: int) -> str:
    try:
        text = str(error)
    except Exception as exc:
        text = f"<str() of {type(error).__qualname__} raised {type(exc).__qualname__}>"
    return _cap(text, cap)


def _cap(text: str, cap: int) -> str:
    if len(text) <= cap:
        return text
    return text[:cap] + f"... [truncated: {len(text)} characters in all]"


def _trace_text(error: BaseException, cap: int) -> str | None:
    fmt = getattr(error, "trace_format", None)
    if not callable(fmt):
        return None
    try:
        return _cap(str(fmt()), cap)
    except Exception as exc:
        return f"<trace_format() raised {type(exc).__qualname__}: {_message(exc, 200)}>"


def _link(error: BaseException, relation: str, cap: int, depth: int) -> dict[str, Any]:
    link: dict[str, Any] = {
        "type": _qualname(error),
        "message": _message(error, cap),
        "relation": relation,
    }
    trace = _trace_text(error, cap)
    if trace is not None:
        link["trace"] = trace
    if isinstance(error, BaseExceptionGroup):
        members = list(error.exceptions)
        link["exceptions"] = [
            {"type": _qualname(m), "message": _message(m, cap), "code": classify(m)}
            | ({"chain": chain(m, cap, depth + 1)} if depth < _MAX_GROUP_DEPTH else {})
            for m in members[:_MAX_GROUP_MEMBERS]
        ]
        if len(members) > _MAX_GROUP_MEMBERS:
            link["exceptions_dropped"] = len(members) - _MAX_GROUP_MEMBERS
    return link


def chain(error: BaseException, cap: int = 4096, depth: int = 0) -> list[dict[str, Any]]:
    """The raised error first, then its causes and contexts; the root cause is last."""
    links: list[dict[str, Any]] = []
    seen: set[int] = set()
    current: BaseException | None = error
    relation = "raised"
    while current is not None and id(current) not in seen and len(links) < MAX_CHAIN:
        seen.add(id(current))
        links.append(_link(current, relation, cap, depth))
        if current.__cause__ is not None:
            current, relation = current.__cause__, "cause"
        elif current.__context__ is not None and not current.__suppress_context__:
            current, relation = current.__context__, "context"
        else:
            current = None
    return links


def _traceback_text(error: BaseException, cap: int) -> str:
    try:
        text = "".join(traceback.format_exception(error))
    except Exception as exc:
        text = f"<formatting the traceback raised {type(exc).__qualname__}>"
    if len(text) <= cap:
        return text
    # Keep the end: the innermost frames and the final error line say the most.
    return f"[truncated: {len(text)} characters in all]...\n" + text[-cap:]


def error_record(
    error: BaseException,
    *,
    phase: str | None = None,
    code: str | None = None,
    max_chars: int = 16 * 1024,
) -> dict[str, Any]:
    """The envelope's ``error`` object ``{code, message, details}``; never raises."""
    try:
        links = chain(error, cap=max_chars)
        details: dict[str, Any] = {
            "type": _qualname(error),
            "chain": links,
            "traceback": _traceback_text(error, max_chars),
            "hints": hints_for(error),
            "phase": phase,
        }
        trace = links[0].get("trace") if links else None
        if trace is not None:
            details["trace"] = trace
        return {
            "code": code or classify(error),
            "message": _message(error, max_chars),
            "details": details,
        }
    except Exception as exc:  # the last line of defence: record that recording failed
        return {
            "code": code or "node_error",
            "message": f"<tracekit could not describe {type(error).__qualname__}: {exc!r}>",
            "details": {
                "type": type(error).__qualname__,
                "chain": [],
                "traceback": "",
                "hints": [],
                "phase": phase,
            },
        }
