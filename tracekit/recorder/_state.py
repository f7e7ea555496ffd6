"""What every part of the recorder shares: its state's names and types, and named defaults.

The facade (:mod:`tracekit.recorder.core`) owns the state; the parts (``steps``, ``run``,
``error_log``) are mixins over it, each one concern, declared against this class so each part
says what it reads and writes.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
from collections import deque
from typing import Any, Final

from tracekit.config import TraceConfig
from tracekit.errors.events import ErrorChannel, ErrorEvent
from tracekit.recorder._counter import TickCounter
from tracekit.recorder.errors_seen import ErrorsSeen
from tracekit.recorder.inflight import InFlight
from tracekit.recorder.ring import Pins
from tracekit.trace.model import RunInfo, Step, TraceContext
from tracekit.trace.sink import Sink

__all__ = ["HOST", "MAX_IN_FLIGHT", "MISSING", "RecorderState", "log"]

log: Final = logging.getLogger("tracekit")

#: Steps started and never ended are kept up to this many; then the oldest are dropped.
MAX_IN_FLIGHT: Final = 10_000
#: "No value given" (an output or payload that was not set), distinct from None.
MISSING: Final[Any] = object()
HOST: Final = socket.gethostname()


class RecorderState:
    """The recorder's state, declared once (the facade's ``__init__`` sets it)."""

    config: TraceConfig
    context: TraceContext
    sink: Sink
    errors: ErrorChannel
    last_flush_error: BaseException | None
    last_trace_path: Any
    misuse: dict[str, int]
    _enabled: bool
    _misuse_lock: threading.Lock
    _ring: deque[Step]
    _finished: TickCounter
    _finished_at_reset: int
    _open: InFlight
    _seq: itertools.count[int]
    _lock: threading.Lock
    _flush_lock: threading.RLock
    _run_depth: int
    _capture: bool
    _run: RunInfo
    _max_in_flight: int
    _next_seq: Any
    _flow_errors: list[ErrorEvent]
    _errors_dropped: int
    _errors_seen: ErrorsSeen
    _pins: Pins
    #: Failed/cancelled steps an implicit run's final trace told of, still in the ring, by id.
    _told: dict[int, Step]

    @property
    def enabled(self) -> bool:
        raise NotImplementedError

    def _internal_error(self, where: str) -> None:
        raise NotImplementedError

    def _count_misuse(self, kind: str, n: int = 1) -> int:
        raise NotImplementedError
