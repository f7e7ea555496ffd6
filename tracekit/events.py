"""Runner-level error events: failures that belong to no node (scheduler, runner).

They are kept in the envelope's top-level ``errors[]`` (capped, with ``errors_dropped``) and
mirrored to an :class:`ErrorChannel` a program can read or subscribe to while the run goes on.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = ["DEFAULT_CHANNEL_SIZE", "SCOPES", "ErrorChannel", "ErrorEvent", "Scope"]

_log = logging.getLogger("tracekit")

Scope = Literal["node", "scheduler", "runner"]
SCOPES: Final = ("node", "scheduler", "runner")
DEFAULT_CHANNEL_SIZE: Final = 1000


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """One runner-level failure, as recorded (``error`` is the envelope's error object)."""

    scope: Scope
    time: str
    code: str
    message: str
    node_id: str | None = None
    step_id: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    context: Mapping[str, Any] = field(default_factory=dict)
    error: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "scope": self.scope,
            "time": self.time,
            "code": self.code,
            "message": self.message,
            "node_id": self.node_id,
            "step_id": self.step_id,
            "tags": dict(self.tags),
            "context": self.context,
        }
        if self.error is not None:
            out["error"] = dict(self.error)
        return out


Subscriber = Callable[[ErrorEvent], None]


class ErrorChannel:
    """An in-memory, bounded feed of :class:`ErrorEvent` for the running program.

    Threading contract: ``publish`` is called on the thread that emitted the error; subscribers
    run there, must not block, and their exceptions are logged, never propagated.
    """

    def __init__(self, maxlen: int = DEFAULT_CHANNEL_SIZE) -> None:
        self._events: deque[ErrorEvent] = deque(maxlen=maxlen)
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def publish(self, event: ErrorEvent) -> None:
        with self._lock:
            self._events.append(event)
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:
                _log.warning("tracekit: error-channel subscriber %r raised", callback, exc_info=True)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` for every new event; returns a function that unsubscribes."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def snapshot(self) -> list[ErrorEvent]:
        """The events still held, oldest first."""
        with self._lock:
            return list(self._events)

    def drain(self) -> list[ErrorEvent]:
        """The events still held, oldest first, removing them."""
        with self._lock:
            events = list(self._events)
            self._events.clear()
            return events

    def __len__(self) -> int:
        return len(self._events)
