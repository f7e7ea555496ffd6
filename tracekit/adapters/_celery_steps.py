"""Which step each Celery task attempt is, in one worker process, and where it stands.

Celery's signals name a task by its id; a step is one attempt of it. Signals for one attempt
come from different places (the task's own thread, the pool's result handler, the prefork
parent long after the task), sometimes more than once, so this table remembers, per process
and bounded, the attempts running now, the latest attempt of each task, and which attempts
already ended or had their failure written.

Threading contract: every method may be called from any thread; one lock guards the tables.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Final

from tracekit import NodeEvent

__all__ = ["ATTEMPT_SEPARATOR", "OPERATION", "TaskSteps", "attempt_of", "step_id_of"]

#: The ``operation`` of every task step.
OPERATION: Final = "task"
#: Between the task id and the attempt number in the step id of a retry (``<id>#2``).
ATTEMPT_SEPARATOR: Final = "#"
# Task ids remembered per process for parent links and for signals that arrive after the end.
_REMEMBERED: Final = 1024


def attempt_of(request: Any) -> int:
    """``request.retries + 1`` (1 for a request that does not say)."""
    retries = getattr(request, "retries", None)
    return retries + 1 if isinstance(retries, int) and retries >= 0 else 1


def step_id_of(task_id: str, attempt: int) -> str:
    """The task id for a first attempt, ``<id>#<attempt>`` for a retry."""
    return task_id if attempt <= 1 else f"{task_id}{ATTEMPT_SEPARATOR}{attempt}"


def _attempt_in(step_id: str) -> int:
    _, sep, tail = step_id.rpartition(ATTEMPT_SEPARATOR)
    return int(tail) if sep and tail.isdigit() else 1


def _remember(table: OrderedDict[str, Any], key: str, value: Any) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > _REMEMBERED:
        table.popitem(last=False)


class TaskSteps:
    """The attempts one process has seen: running, latest per task, ended, failure written."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, tuple[NodeEvent, float]] = {}  # step id -> (event, monotonic start)
        self._latest: OrderedDict[str, str] = OrderedDict()  # task id -> its latest step id
        self._ended: OrderedDict[str, None] = OrderedDict()  # step ids that ended here lately
        self._failed: OrderedDict[str, None] = OrderedDict()  # step ids whose failure was written

    def event(self, task: Any, component_id: str, task_id: str, attempt: int, args: Any,
              kwargs: Any, parent_id: str | None) -> NodeEvent:
        """The event of this attempt; it becomes the task's latest attempt here."""
        step_id = step_id_of(task_id, attempt)
        with self._lock:
            parent = self._latest.get(parent_id, parent_id) if parent_id else None
            _remember(self._latest, task_id, step_id)
        return NodeEvent(
            node_id=str(getattr(task, "name", None) or type(task).__name__),
            component_id=component_id,
            operation=OPERATION,
            payload={"args": list(args or ()), "kwargs": dict(kwargs or {})},
            step_id=step_id,
            parent_step_id=parent,
            attempt=attempt,
        )

    def started(self, event: NodeEvent) -> None:
        with self._lock:
            self._open[str(event.step_id)] = (event, time.monotonic())

    def take(self, step_id: str) -> tuple[NodeEvent, float] | None:
        """The running attempt ``step_id`` and its start, now ended; None if it is not running."""
        with self._lock:
            running = self._open.pop(step_id, None)
            if running is not None:
                _remember(self._ended, step_id, None)
            return running

    def ended(self, step_id: str) -> None:
        with self._lock:
            _remember(self._ended, step_id, None)

    def ended_here(self, step_id: str) -> bool:
        with self._lock:
            return step_id in self._ended

    def first_failure(self, step_id: str) -> bool:
        """True the first time a failure of ``step_id`` is written here (later ones are repeats)."""
        with self._lock:
            if step_id in self._failed:
                return False
            _remember(self._failed, step_id, None)
            return True

    def step_of(self, task: Any, task_id: str) -> str:
        """The step a signal about ``task_id`` means."""
        # The running request names the attempt; a signal sent from outside it (the prefork
        # parent after a time limit) falls back to the latest attempt this process saw.
        req = getattr(task, "request", None)
        if req is not None and getattr(req, "id", None) == task_id:
            return step_id_of(task_id, attempt_of(req))
        with self._lock:
            return self._latest.get(task_id, task_id)

    @staticmethod
    def attempt_in(step_id: str) -> int:
        """The attempt number a step id names."""
        return _attempt_in(step_id)
