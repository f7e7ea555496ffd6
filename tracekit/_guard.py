"""The never-raise promise, written once: a method guard and a log-once helper.

A recorder, an observer or an adapter's hook must never raise into the runner it observes: a
fault of tracekit's own is caught, reported to the object (which counts it) and logged once per
place, on the ``tracekit`` logger. Control flow (``BaseException`` that is not an
``Exception``: cancellation, interrupt, exit) always propagates.

Threading contract: both are safe from any thread; :class:`LogOnce` takes its lock only to
remember a key, never while logging.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any, Final, Protocol, TypeVar, cast

__all__ = ["MAX_LOG_ONCE_KEYS", "Guarded", "LogOnce", "never_raises"]

_log: Final = logging.getLogger("tracekit")

#: Distinct places remembered by one :class:`LogOnce`; past that every fault is logged again
#: rather than remembered (a bound, for keys built from hostile input).
MAX_LOG_ONCE_KEYS: Final = 1_024

F = TypeVar("F", bound=Callable[..., Any])


class LogOnce:
    """Logs a warning the first time for each key, with the exception being handled."""

    __slots__ = ("_keys", "_lock")

    def __init__(self) -> None:
        self._keys: set[Hashable] = set()
        self._lock = threading.Lock()

    def first(self, key: Hashable) -> bool:
        """True the first time ``key`` is seen."""
        with self._lock:
            if key in self._keys:
                return False
            if len(self._keys) < MAX_LOG_ONCE_KEYS:
                self._keys.add(key)
            return True

    def warn(self, key: Hashable, message: str, *args: object, exc_info: bool = True) -> None:
        if self.first(key):
            _log.warning(message, *args, exc_info=exc_info)


class Guarded(Protocol):
    """What :func:`never_raises` needs of the object whose method it guards."""

    def _guard_failed(self, where: str) -> None:
        """Count and log (once) a fault of tracekit's own raised at ``where``; must not raise."""
        ...


def never_raises(where: str) -> Callable[[F], F]:
    """Guard a method: an ``Exception`` inside it goes to ``self._guard_failed(where)`` and the
    call returns None; anything else (control flow) propagates."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def guarded(self: Guarded, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except Exception:
                self._guard_failed(where)
                return None

        return cast(F, guarded)

    return decorate
