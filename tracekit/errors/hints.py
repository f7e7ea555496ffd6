"""Built-in hints: what to try next for common failures, by exception type, errno and code.

Kept apart from the registry in :mod:`tracekit.errors` so the wording can grow without touching
the logic. Threading contract: read-only tables, safe from any thread.
"""

from __future__ import annotations

import errno
from typing import Final

__all__ = ["CONNECTION_HINT", "TIMEOUT_HINT", "builtin_hints"]

TIMEOUT_HINT: Final = (
    "The operation timed out: check the remote side's health, then raise the timeout or add a "
    "retry with backoff."
)

CONNECTION_HINT: Final = (
    "A connection failed: check the host, port, DNS and credentials, and whether the service is "
    "up; retry with backoff if it is transient."
)

# First match wins, so subclasses come before their bases.
_BY_TYPE: Final[tuple[tuple[type[BaseException], str], ...]] = (
    (TimeoutError, TIMEOUT_HINT),
    (
        ConnectionRefusedError,
        "The connection was refused: the service is not listening on that host and port; check "
        "that it is up and the address is right.",
    ),
    (
        ConnectionError,
        CONNECTION_HINT,
    ),
    (
        PermissionError,
        "Permission denied: check the file or resource owner and mode, and which user the runner "
        "runs as.",
    ),
    (
        FileNotFoundError,
        "A path does not exist: check the working directory and that an earlier step produced it.",
    ),
    (
        KeyError,
        "A key is missing: compare the input's keys with what the node expects (capture inputs "
        "with TRACEKIT_TRACE_CAPTURE_INPUTS=1 to see them).",
    ),
    (IndexError, "An index is out of range: check the length of the input the node received."),
    (MemoryError, "Out of memory: process the input in smaller batches or give the worker more memory."),
    (RecursionError, "Recursion too deep: look for a cycle in the data or the graph."),
    (ImportError, "A module failed to import: check the environment's installed packages and versions."),
    (UnicodeError, "Text could not be encoded or decoded: check the input's encoding."),
)

_BY_ERRNO: Final = {
    errno.ENOSPC: "The disk is full: free space or point the output at another volume.",
    errno.EDQUOT: "The disk quota is exceeded: free space or raise the quota.",
    errno.EROFS: "The file system is read-only: write somewhere writable.",
    errno.EACCES: "Access denied: check permissions and the user the runner runs as.",
    errno.EMFILE: "Too many open files: close files or raise the process's file limit (ulimit -n).",
}

# For errors that are recognised by their code only (third-party timeouts, connection errors).
_BY_CODE: Final = {
    "timeout": TIMEOUT_HINT,
    "connection": CONNECTION_HINT,
    "cancelled": "The step was cancelled, not failed: look at what stopped the run.",
}


def builtin_hints(error: BaseException, code: str) -> list[str]:
    """The built-in hints for ``error``, whose code is ``code``."""
    hints = [next((h for t, h in _BY_TYPE if isinstance(error, t)), "")]
    if not hints[0]:
        hints = [_BY_CODE.get(code, "")]
    if isinstance(error, OSError) and error.errno in _BY_ERRNO:
        hints.append(_BY_ERRNO[error.errno])
    return [h for h in hints if h]
