"""What a failure is called: its code, its hints, and whether it is control flow (a cancel, not a failure).

Nothing here raises: an error that cannot be formatted is recorded as such (a trace that hides
the failure because the failure's own ``__str__`` broke would be worse than useless).

Threading contract: every function may be called from any thread at once; registrations land in
:mod:`tracekit.registry`, whose tables are replaced, never mutated, so registering while errors
are recorded is safe.
"""

from __future__ import annotations

from typing import Final, Protocol, TypeVar, runtime_checkable

from tracekit.config import DEFAULT_MAX_DETAIL_CHARS
from tracekit.errors.hints import builtin_hints
from tracekit.errors.text import MAX_CHAIN
from tracekit.registry import BUILTIN_CONTROL_FLOW, registry

__all__ = [
    "CODES",
    "CONTROL_FLOW_EXCEPTIONS",
    "MAX_CHAIN",
    "PHASES",
    "Traceable",
    "classify",
    "hints_for",
    "is_control_flow",
    "register_code",
    "register_control_flow",
    "register_hint",
]

#: The documented taxonomy of ``error.code`` values (users may add their own).
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

#: Where in a step's life a failure happened: starting it, running its body, or ending it.
PHASES: Final = ("setup", "execution", "completion")

#: Characters kept of a message, traceback or trace: the config's ``max_detail_chars`` default.
DEFAULT_MAX_CHARS: Final = DEFAULT_MAX_DETAIL_CHARS

#: Control-flow signals known without registration (more: :func:`register_control_flow`).
CONTROL_FLOW_EXCEPTIONS: Final = BUILTIN_CONTROL_FLOW

# Too broad to be control flow: registering them would turn every failure into a cancellation.
_TOO_BROAD: Final = (BaseException, Exception)

_T = TypeVar("_T")


@runtime_checkable
class Traceable(Protocol):
    """An error that formats itself for traces; its text is kept in ``error.details.trace``.

    ``trace_format`` may be called from any thread, after the error was raised; if it raises,
    the failure is recorded in ``trace`` instead, never propagated.
    """

    def trace_format(self) -> str: ...


def _check_type(what: str, exc_type: object) -> type[BaseException]:
    if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
        raise TypeError(f"{what}: exc_type must be an exception class, got {exc_type!r}")
    return exc_type


def register_control_flow(exc_type: type[BaseException]) -> None:
    """Treat ``exc_type`` (and subclasses) as a control-flow signal: its steps end ``cancelled``."""
    _check_type("register_control_flow()", exc_type)
    if exc_type in _TOO_BROAD:
        raise ValueError(
            f"register_control_flow(): {exc_type.__name__} is too broad; allowed: a specific "
            "exception class (every failure would otherwise count as a cancellation)"
        )
    registry.add_control_flow(exc_type)


def is_control_flow(error: BaseException) -> bool:
    """True for a control-flow signal, or a group made only of control-flow signals."""
    if isinstance(error, registry.control_flow):
        return True
    if isinstance(error, BaseExceptionGroup):
        members = error.exceptions
        return bool(members) and all(is_control_flow(m) for m in members)
    return False


def register_code(exc_type: type[BaseException], code: str) -> None:
    """Give every error of ``exc_type`` (and subclasses) the code ``code``.

    A ``code`` attribute on the exception itself still wins.
    """
    _check_type("register_code()", exc_type)
    if not isinstance(code, str) or not code.strip():
        raise ValueError(f"register_code(): code={code!r} is not allowed; allowed: a non-empty string")
    registry.add_code(exc_type, code)


def register_hint(exc_type: type[BaseException], *hints: str) -> None:
    """Suggest ``hints`` for every error of ``exc_type`` (and subclasses), before built-in ones."""
    _check_type("register_hint()", exc_type)
    for hint in hints:
        if not isinstance(hint, str) or not hint.strip():
            raise ValueError(f"register_hint(): hint={hint!r} is not allowed; allowed: a non-empty string")
    registry.add_hints(exc_type, tuple(hints))


# --- codes ------------------------------------------------------------------------------------

# Third-party errors rarely subclass the built-in ones (requests.ConnectionError is an OSError,
# httpx.ReadTimeout is neither), so their class names are the next best evidence.
_NAME_RULES: Final = (
    (("timeout", "timelimit", "deadline"), "timeout"),
    (("connect", "unreachable"), "connection"),
    (("json", "serializ", "encode", "decode", "pickle", "marshal", "yaml"), "serialization"),
    (("validat", "schema"), "validation"),
    (("permission", "forbidden", "unauthori"), "permission"),
    (("notfound", "nosuch", "missing"), "not_found"),
)
_ROOTS: Final = frozenset({BaseException, Exception, object})


def _builtin_code(error: BaseException) -> str:
    if isinstance(error, TimeoutError):  # also asyncio.TimeoutError and concurrent.futures'
        return "timeout"
    if isinstance(error, ConnectionError):
        return "connection"
    if isinstance(error, PermissionError):
        return "permission"
    if isinstance(error, FileNotFoundError | LookupError):
        return "not_found"
    if isinstance(error, UnicodeError):
        return "serialization"
    if isinstance(error, MemoryError | RecursionError | ImportError | SystemError):
        return "infrastructure"
    names = [k.__name__.lower() for k in type(error).__mro__ if k not in _ROOTS]
    for words, code in _NAME_RULES:
        if any(w in n for n in names for w in words):
            return code
    if isinstance(error, OSError):
        return "io"
    if isinstance(error, ValueError):
        return "validation"
    return "node_error"


def _own_code(error: BaseException) -> str | None:
    if isinstance(error, SystemExit):
        return None  # SystemExit.code is the exit status, not a trace code
    try:
        code = getattr(error, "code", None)
    except Exception:
        return None
    return code if isinstance(code, str) and code.strip() else None


def classify(error: BaseException, default: str = "node_error") -> str:
    """The code of ``error``: ``cancelled`` for control flow, else its ``code`` attribute, then the
    registry (nearest class first), then built-in rules; a group whose members all share one code
    gets that code."""
    if is_control_flow(error):
        return "cancelled"
    own = _own_code(error)
    if own is not None:
        return own
    registered = registry.codes
    for klass in type(error).__mro__:
        if klass in registered:
            return registered[klass]
    if isinstance(error, BaseExceptionGroup) and error.exceptions:
        codes = {classify(m, default) for m in error.exceptions}
        if len(codes) == 1:
            return codes.pop()
        return default
    found = _builtin_code(error)
    return default if found == "node_error" else found


# --- hints ------------------------------------------------------------------------------------


def _own_hints(error: BaseException) -> list[str]:
    try:
        own = getattr(error, "hints", None)
        if own is None:
            return []
        if isinstance(own, str):
            return [own]
        if isinstance(own, list | tuple | set | frozenset):
            return [str(h) for h in own]
    except Exception:
        pass  # a broken ``hints`` attribute must not hide the failure
    return []


def _hints_one(error: BaseException) -> list[str]:
    hints = _own_hints(error)
    for exc_type, hs in registry.hints.items():
        if isinstance(error, exc_type):
            hints.extend(hs)
    hints.extend(builtin_hints(error, classify(error)))
    return hints


def _causes(error: BaseException) -> list[BaseException]:
    """The error, its causes and contexts, and the members of groups among them (bounded)."""
    out: list[BaseException] = []
    seen: set[int] = set()
    todo = [error]
    while todo and len(out) < MAX_CHAIN:
        current: BaseException | None = todo.pop(0)
        while current is not None and id(current) not in seen and len(out) < MAX_CHAIN:
            seen.add(id(current))
            out.append(current)
            if isinstance(current, BaseExceptionGroup):
                todo.extend(current.exceptions)
            if current.__cause__ is not None:
                current = current.__cause__
            elif current.__context__ is not None and not current.__suppress_context__:
                current = current.__context__
            else:
                current = None
    return out


def hints_for(error: BaseException) -> list[str]:
    """Suggested next actions, most specific first, without duplicates.

    For the raised error, then each cause, context and group member: the error's own ``hints``
    attribute, then registered hints, then built-in ones (a root cause such as a refused
    connection usually says more than the wrapper raised around it).
    """
    hints: list[str] = []
    for link in _causes(error):
        hints.extend(_hints_one(link))
    return list(dict.fromkeys(hints))
