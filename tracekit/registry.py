"""Every process-wide extension point of tracekit in one typed registry, with a reset.

What users (and adapters, at their import) register lives here and nowhere else: error codes
and hints by exception type, the exceptions that are control flow (a cancel, not a failure), and
canonical forms of value types for hashing. The functions users call (``register_code``,
``register_hint``, ``register_control_flow``, ``register_canonical``) validate their arguments
and land here; the code that reads them (``tracekit.errors``, ``tracekit.capture``) reads here.

:func:`reset` restores the built-in state, as structlog's ``reset_defaults`` does;
:meth:`Registry.snapshot` / :meth:`Registry.restore` put back an earlier state (what a test that
registers something uses, so it leaks nothing and keeps what adapters registered at import).

Threading contract: writers take one lock; every table is replaced, never mutated, so readers
on any thread take the current table without a lock and see a consistent state.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

__all__ = ["BUILTIN_CONTROL_FLOW", "Registry", "RegistryState", "registry", "reset"]

#: Control-flow signals known without registration: they end a step ``cancelled``.
BUILTIN_CONTROL_FLOW: Final[tuple[type[BaseException], ...]] = (
    asyncio.CancelledError,
    GeneratorExit,
    KeyboardInterrupt,
    SystemExit,
)

#: A canonical form: takes a value of the registered type, returns a value hashing understands.
CanonicalForm = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class RegistryState:
    """One consistent state of the registry (what :meth:`Registry.snapshot` returns)."""

    codes: Mapping[type[BaseException], str]
    hints: Mapping[type[BaseException], tuple[str, ...]]
    control_flow: tuple[type[BaseException], ...]
    canonical: Mapping[type, CanonicalForm]


_EMPTY: Final[Mapping[Any, Any]] = MappingProxyType({})
_BUILTIN: Final = RegistryState(_EMPTY, _EMPTY, BUILTIN_CONTROL_FLOW, _EMPTY)


class Registry:
    """The process-wide tables; use the module's :data:`registry`, not a new instance."""

    __slots__ = ("_lock", "_state")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = _BUILTIN

    # Readers: the current table, no lock (tables are immutable).
    @property
    def codes(self) -> Mapping[type[BaseException], str]:
        return self._state.codes

    @property
    def hints(self) -> Mapping[type[BaseException], tuple[str, ...]]:
        return self._state.hints

    @property
    def control_flow(self) -> tuple[type[BaseException], ...]:
        return self._state.control_flow

    @property
    def canonical(self) -> Mapping[type, CanonicalForm]:
        return self._state.canonical

    # Writers: arguments are validated by the public register_* functions.
    def add_code(self, exc_type: type[BaseException], code: str) -> None:
        with self._lock:
            s = self._state
            self._state = _replace(s, codes={**s.codes, exc_type: code})

    def add_hints(self, exc_type: type[BaseException], hints: tuple[str, ...]) -> None:
        with self._lock:
            s = self._state
            self._state = _replace(s, hints={**s.hints, exc_type: (*s.hints.get(exc_type, ()), *hints)})

    def add_control_flow(self, exc_type: type[BaseException]) -> None:
        with self._lock:
            s = self._state
            if exc_type not in s.control_flow:
                self._state = _replace(s, control_flow=(*s.control_flow, exc_type))

    def add_canonical(self, value_type: type, form: CanonicalForm) -> None:
        with self._lock:
            s = self._state
            self._state = _replace(s, canonical={**s.canonical, value_type: form})

    def clear_canonical(self) -> None:
        with self._lock:
            self._state = _replace(self._state, canonical={})

    def snapshot(self) -> RegistryState:
        return self._state

    def restore(self, state: RegistryState) -> None:
        with self._lock:
            self._state = state

    def reset(self) -> None:
        """Back to the built-in state: every registration (users' and adapters') is gone."""
        self.restore(_BUILTIN)


def _replace(
    s: RegistryState,
    *,
    codes: Mapping[type[BaseException], str] | None = None,
    hints: Mapping[type[BaseException], tuple[str, ...]] | None = None,
    control_flow: tuple[type[BaseException], ...] | None = None,
    canonical: Mapping[type, CanonicalForm] | None = None,
) -> RegistryState:
    return RegistryState(
        codes=s.codes if codes is None else MappingProxyType(dict(codes)),
        hints=s.hints if hints is None else MappingProxyType(dict(hints)),
        control_flow=s.control_flow if control_flow is None else control_flow,
        canonical=s.canonical if canonical is None else MappingProxyType(dict(canonical)),
    )


#: The registry every part of tracekit reads.
registry: Final = Registry()


def reset() -> None:
    """Restore the built-in state of every process-wide hook (see :class:`Registry`)."""
    registry.reset()
