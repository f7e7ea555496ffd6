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

import orjson

__all__ = [
    "DEFAULT_CHANNEL_SIZE",
    "SCOPES",
    "ErrorChannel",
    "ErrorEvent",
    "Scope",
    "Subscriber",
    "json_context",
    "json_tags",
]

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
            "context": dict(self.context),
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
        if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1:
            raise ValueError(f"ErrorChannel(maxlen={maxlen!r}) is not allowed; allowed: an integer >= 1")
        self._events: deque[ErrorEvent] = deque(maxlen=maxlen)
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self._publishing = threading.local()
        #: Events pushed out of the bounded feed (oldest first) since the channel was made.
        self.dropped = 0

    def reinit_after_fork(self) -> None:
        """In a forked child: a new lock (another thread may have held this one) and no events."""
        self._lock = threading.Lock()
        self._events.clear()

    def publish(self, event: ErrorEvent) -> None:
        """Keep ``event`` and hand it to every subscriber; never raises."""
        with self._lock:
            if len(self._events) == self._events.maxlen:
                self.dropped += 1
            self._events.append(event)
            subscribers = list(self._subscribers)
        # A subscriber that emits an error itself would otherwise recurse without end.
        if getattr(self._publishing, "active", False):
            return
        self._publishing.active = True
        try:
            for callback in subscribers:
                try:
                    callback(event)
                except Exception:
                    _log.warning("tracekit: error-channel subscriber %r raised", callback, exc_info=True)
        finally:
            self._publishing.active = False

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
        with self._lock:
            return len(self._events)


def _safe_default(value: Any) -> Any:
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__qualname__}: repr raised>"


def json_context(context: Mapping[Any, Any] | None) -> dict[str, Any]:
    """``context`` made JSON-ready without raising: unknown values become their ``repr``.

    Keys become strings; what orjson still refuses (cycles, nesting past its limit) is kept as
    the ``repr`` of each top-level value, so one bad value does not lose the others.
    """
    if not context:
        return {}
    option = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
    try:
        items = {str(k): v for k, v in dict(context).items()}
    except Exception:
        return {"$context": _safe_default(context)}
    out: dict[str, Any] = {}
    for key, value in items.items():
        try:
            out[key] = orjson.loads(orjson.dumps(value, default=_safe_default, option=option))
        except Exception:
            out[key] = _safe_default(value)
    return out


def json_tags(tags: Mapping[Any, Any] | None) -> dict[str, str]:
    """``tags`` as strings to strings, without raising (a tag that cannot be a string is noted)."""
    out: dict[str, str] = {}
    try:
        pairs = list(dict(tags or {}).items())
    except Exception:
        return {"$tags": _safe_default(tags)}
    for key, value in pairs:
        out[_safe_str(key)] = _safe_str(value)
    return out


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__qualname__}: str raised>"
