"""The observer protocol: what a runner calls as its nodes start, end, fail or are validated.

Data flows one way: adapter -> observer protocol -> recorder -> capture/errors -> trace -> sink. This module
holds only the protocol and its event types, so a runner can depend on it without the recorder.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from tracekit._guard import LogOnce

__all__ = [
    "SEVERITIES",
    "CompositeObserver",
    "ExecutionObserver",
    "NodeEvent",
    "Severity",
    "ValidationIssue",
    "takes_phase",
]

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[str, ...] = ("error", "warning", "info")


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """One invocation of a node, as the runner describes it.

    ``step_id`` identifies the invocation. When a runner gives none, the recorder pairs
    start/end/error by (thread or asyncio task, ``node_id``), so concurrent nodes never steal
    each other's steps. ``attempt`` starts at 1; each retry is its own step.
    """

    node_id: str
    component_id: str
    operation: str
    payload: Any = None
    step_id: str | None = None
    parent_step_id: str | None = None
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class ValidationIssue:
    """A problem a runner found while validating a node (its input, config or output)."""

    code: str
    message: str
    path: str | None = None
    severity: Severity = "error"

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(
                f"ValidationIssue.severity: got {self.severity!r}, allowed: {', '.join(SEVERITIES)}"
            )


@runtime_checkable
class ExecutionObserver(Protocol):
    """What a runner calls around each node.

    Threading contract: each method is called on the thread (or asyncio task) that runs the
    node; an implementation must be thread-safe, must not block, and must never raise into the
    runner.
    """

    def on_node_start(self, event: NodeEvent) -> None: ...

    def on_node_end(self, event: NodeEvent, output: Any) -> None: ...

    def on_node_error(self, event: NodeEvent, error: BaseException) -> None:
        """The node failed with ``error``.

        An implementation may also take a keyword ``phase`` (``"setup"``, ``"execution"`` or
        ``"completion"``: when in the step's life it failed, as the recorder does); runners and
        :class:`CompositeObserver` pass it only to observers whose method takes it.
        """
        ...

    def on_validation(self, event: NodeEvent, issues: Sequence[ValidationIssue]) -> None: ...


def takes_phase(observer: object) -> bool:
    """Whether ``observer.on_node_error`` accepts the ``phase`` keyword."""
    try:
        params = inspect.signature(observer.on_node_error).parameters  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError):
        return False
    return "phase" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


class CompositeObserver:
    """Fans each callback out to several observers.

    One observer raising never stops the others or the runner: the error is logged on the
    ``tracekit`` logger (once per observer and method) and counted in ``failures``.
    """

    __slots__ = ("_logged", "_phase_takers", "failures", "observers")

    def __init__(self, observers: Iterable[ExecutionObserver] = ()) -> None:
        self.observers: tuple[ExecutionObserver, ...] = tuple(observers)
        self.failures = 0
        self._logged = LogOnce()
        self._phase_takers: dict[int, bool] = {}

    def add(self, observer: ExecutionObserver) -> None:
        self.observers = (*self.observers, observer)
        self._phase_takers.clear()  # ids of removed observers may be reused

    def remove(self, observer: ExecutionObserver) -> None:
        self.observers = tuple(o for o in self.observers if o is not observer)
        self._phase_takers.clear()

    def _failed(self, observer: ExecutionObserver, method: str) -> None:
        self.failures += 1
        self._logged.warn(
            (id(observer), method), "tracekit: observer %r raised in %s; it is skipped for this event",
            observer, method,
        )

    def on_node_start(self, event: NodeEvent) -> None:
        for obs in self.observers:
            try:
                obs.on_node_start(event)
            except Exception:
                self._failed(obs, "on_node_start")

    def on_node_end(self, event: NodeEvent, output: Any) -> None:
        for obs in self.observers:
            try:
                obs.on_node_end(event, output)
            except Exception:
                self._failed(obs, "on_node_end")

    def on_node_error(self, event: NodeEvent, error: BaseException, *, phase: str = "execution") -> None:
        for obs in self.observers:
            try:
                takes = self._phase_takers.get(id(obs))
                if takes is None:
                    takes = self._phase_takers[id(obs)] = takes_phase(obs)
                if takes:
                    obs.on_node_error(event, error, phase=phase)  # type: ignore[call-arg]
                else:
                    obs.on_node_error(event, error)
            except Exception:
                self._failed(obs, "on_node_error")

    def on_validation(self, event: NodeEvent, issues: Sequence[ValidationIssue]) -> None:
        for obs in self.observers:
            try:
                obs.on_validation(event, issues)
            except Exception:
                self._failed(obs, "on_validation")
