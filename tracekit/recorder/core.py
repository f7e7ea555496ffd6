"""The recorder: in-flight steps, the ring buffer of finished ones, and the flush policy.

Threading contract: every ``on_*`` callback may be called from any thread or asyncio task at
once; each is cheap, never blocks on I/O (except the one flush at a run's first failure), and
never raises into the runner. Flushes are serialized by a lock.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tracekit.capture.coerce import coerce_issues
from tracekit.capture.hashing import hash_source
from tracekit.config import TraceConfig
from tracekit.errors.events import ErrorChannel, ErrorEvent
from tracekit.errors.text import redact_text
from tracekit.observer import NodeEvent, ValidationIssue
from tracekit.recorder import fork
from tracekit.recorder import hotpath as _hotpath
from tracekit.recorder._context import current_task as _current_task
from tracekit.recorder._context import get_ident as _get_ident
from tracekit.recorder._context import get_running_loop as _get_running_loop
from tracekit.recorder._counter import TickCounter
from tracekit.recorder._state import MAX_IN_FLIGHT, MISSING, log
from tracekit.recorder.errors_seen import ErrorsSeen
from tracekit.recorder.events import ErrorEvents
from tracekit.recorder.inflight import InFlight
from tracekit.recorder.ring import Pins
from tracekit.recorder.run import RunLifecycle
from tracekit.recorder.scope import StepScope
from tracekit.recorder.steps import StepBook
from tracekit.trace.envelope import RECORDER_NAME
from tracekit.trace.model import Step, TraceContext
from tracekit.trace.sink import FileSink, HistorySink, Sink

__all__ = ["LIVE_RECORDERS", "MAX_IN_FLIGHT", "RECORDER_NAME", "TraceRecorder"]

_perf_ns = time.perf_counter_ns
#: Every recorder alive, for tracekit.recorder.crash to flush at a crash or exit.
LIVE_RECORDERS: weakref.WeakSet[TraceRecorder] = weakref.WeakSet()
fork.register(lambda: list(LIVE_RECORDERS))


class TraceRecorder(StepBook, RunLifecycle, ErrorEvents):
    """A flight recorder: keeps the last N finished steps and writes a trace per the mode.

    It is an :class:`~tracekit.observer.ExecutionObserver`. Use :meth:`run` around a run, or let
    an adapter call :meth:`flush_error` / :meth:`flush_success` for long-lived workers.

    Where ``tracekit._speedups`` was built, each instance's ``on_node_start``/``on_node_end``
    are compiled equivalents of the methods below, which they call for every unusual case
    (``tracekit/recorder/hotpath.py``); the methods below are the reference.

    No callback raises into the runner, not even ``RecursionError`` when the runner calls it
    with almost no stack left: such a call is dropped and counted in ``misuse["internal_error"]``.
    """

    def __init__(self, config: TraceConfig, context: TraceContext, *, sink: Sink | None = None) -> None:
        self.config = config
        self.context = context
        #: Where traces land (``config``'s file or history directory unless one is given).
        self.sink: Sink = sink if sink is not None else sink_for(config, context)
        self._enabled = config.enabled
        self.errors = ErrorChannel()
        LIVE_RECORDERS.add(self)
        #: The last exception raised while writing a trace (kept until the recorder is dropped).
        self.last_flush_error: BaseException | None = None
        #: Where the last successful write went.
        self.last_trace_path: Path | None = None
        #: Misuses tolerated (end without start, unknown step, ...), by kind.
        self.misuse: dict[str, int] = {}
        self._internal_error_unlogged = False  # the first internal error found no stack to log
        self._misuse_lock = threading.Lock()  # taken for a count only, never around a call out
        self._ring: deque[Step] = deque(maxlen=config.buffer)
        self._finished = TickCounter()  # steps ever finished; see snapshot() for "dropped"
        self._finished_at_reset = 0
        self._open = InFlight()
        self._max_in_flight = MAX_IN_FLIGHT  # read here, so a test may lower it for a recorder
        self._seq = itertools.count(1)  # step numbers: s1, s2, ...
        self._next_seq = self._seq.__next__  # bound once: a C call per step
        self._lock = threading.Lock()  # run state, flow errors; never taken on the hot path
        self._flush_lock = threading.RLock()  # one flush at a time; runs begin and end under it
        self._flow_errors: list[ErrorEvent] = []
        self._errors_dropped = 0
        self._errors_seen = ErrorsSeen()
        self._pins = Pins(config.max_failures)
        self._told: dict[int, Step] = {}
        self._run_depth = 0
        self._capture = config.capture_inputs
        self._run = self._new_run(explicit=False)
        #: Whether on_node_start/on_node_end run compiled (see tracekit/recorder/hotpath.py).
        self._compiled = False
        self.enabled = config.enabled  # last: installs the compiled callbacks

    @property
    def enabled(self) -> bool:
        """Whether callbacks record anything (False in off mode); settable, e.g. to pause."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = bool(value)
        if "_open" not in self.__dict__:
            return  # set by a subclass before __init__ ran; __init__ decides
        # The compiled callbacks do not look at the flag: they are there only while it is True.
        self._compiled = (
            self._enabled
            and type(self).on_node_start is TraceRecorder.on_node_start
            and type(self).on_node_end is TraceRecorder.on_node_end
            and _hotpath.install(
                self, self._max_in_flight, TraceRecorder.on_node_start, TraceRecorder.on_node_end
            )
        )
        if not self._compiled:
            _hotpath.uninstall(self)

    @classmethod
    def from_env(cls, context: TraceContext, **overrides: Any) -> TraceRecorder:
        """A recorder configured from ``TRACEKIT_TRACE*`` variables; ``overrides`` win."""
        return cls(TraceConfig.from_env(**overrides), context)

    # --- the observer protocol ----------------------------------------------------------------

    # on_node_end is kept flat on purpose (pairing and completion inline): each Python call
    # level costs ~50 ns, a noticeable share of the per-node budget (see benchmarks/).

    def on_node_start(self, event: NodeEvent) -> None:
        if not self._enabled:
            return
        try:
            self._start(event)
        except Exception:
            try:
                self._internal_error("on_node_start")
            except RecursionError:  # no stack left even for that call: count with none
                self.misuse["internal_error"] = self.misuse.get("internal_error", 0) + 1

    def on_node_end(self, event: NodeEvent, output: Any) -> None:
        if not self._enabled:
            return
        try:
            key: Any = event.step_id
            if key is None:
                loop = _get_running_loop()
                task = None if loop is None else _current_task(loop)
                key = (_get_ident() if task is None else task, event.node_id)
            try:
                step = self._open.pop(key, None)
            except TypeError:  # an unhashable id: paired as _start keyed it
                key = self._key(event)
                step = self._open.pop(key, None)
            if type(step) is not Step:
                step = self._open.take(key, step)  # a Stack, or nothing in flight
                if step is None:
                    self._misused("end_without_start", event)
                    return
            # _finish(step, "completed", output), inlined: this is the one callback every node pays.
            step.end_ns = _perf_ns()
            step.output_src = hash_source(output)
            step.status = "completed"
            step.ctx_key = None
            self._ring.append(step)  # atomic; no lock on the hot path
            self._finished.tick()
        except Exception:
            try:
                self._internal_error("on_node_end")
            except RecursionError:  # no stack left even for that call: count with none
                self.misuse["internal_error"] = self.misuse.get("internal_error", 0) + 1

    def on_node_error(self, event: NodeEvent, error: BaseException, *, phase: str = "execution") -> None:
        """End the step as failed; ``phase`` (kept in ``error.details.phase``) says when it failed."""
        if not self._enabled:
            return
        try:
            step = self._take(event)
            if step is None:
                # Never lose a failure: record it as a step that started now.
                self._misused("error_without_start", event)
                step = self._start(event, register=False)
            self.fail_step(step, error, phase)
        except Exception:
            try:
                self._internal_error("on_node_error")
            except RecursionError:  # no stack left even for that call: count with none
                self.misuse["internal_error"] = self.misuse.get("internal_error", 0) + 1

    def on_validation(self, event: NodeEvent, issues: Sequence[ValidationIssue]) -> None:
        if not self._enabled:
            return
        try:
            found = self._issues(event, issues)
            step = self._peek(event)
            if step is None and event.step_id is not None:
                step = next((s for s in reversed(self._ring) if s.given_id == event.step_id), None)
            if step is not None:
                step.issues = [*(step.issues or ()), *found]
                return
            # Validation of a node that is not running: a step of its own.
            self._misused("validation_without_start", event)
            step = self._start(event, register=False)
            step.issues = found
            errors_found = [i for i in found if i.severity == "error"]
            if not errors_found:
                self._finish(step, "completed", MISSING)
                return
            step.error = {
                "code": "validation",
                "message": "; ".join(f"{i.code}: {i.message}" for i in errors_found),
                "details": {"type": "ValidationIssue", "chain": [], "traceback": "",
                            "hints": ["Fix the input or configuration the issues point at."],
                            "phase": "validation"},
            }
            self._finish(step, "failed", MISSING)
            self._node_failed()
        except Exception:
            try:
                self._internal_error("on_validation")
            except RecursionError:  # no stack left even for that call: count with none
                self.misuse["internal_error"] = self.misuse.get("internal_error", 0) + 1

    def _issues(self, event: NodeEvent, issues: Sequence[ValidationIssue]) -> list[ValidationIssue]:
        """The issues as the envelope needs them: typed fields, messages capped and redacted."""
        found, bad = coerce_issues(issues, self.config.max_detail_chars)
        for _ in range(bad):
            self._misused("bad_validation_issue", event)
        return [i if (m := redact_text(i.message)) == i.message else dataclasses.replace(i, message=m)
                for i in found]


    # --- misuse and internal errors never reach the runner -------------------------------------

    def _count_misuse(self, kind: str, n: int = 1) -> int:
        """Add ``n`` to ``misuse[kind]``; return the new count (exact under concurrent misuse)."""
        with self._misuse_lock:
            count = self.misuse[kind] = self.misuse.get(kind, 0) + n
        return count

    def _misused(self, kind: str, event: NodeEvent) -> None:
        if self._count_misuse(kind) == 1:
            log.warning(
                "tracekit: %s for node %r (step_id=%r); tolerated, counted in recorder.misuse",
                kind.replace("_", " "),
                event.node_id,
                event.step_id,
            )

    def _internal_error(self, where: str) -> None:
        if self._count_misuse("internal_error") == 1 or self._internal_error_unlogged:
            try:
                log.warning("tracekit: internal error in %s; the runner is unaffected", where,
                            exc_info=True)
                self._internal_error_unlogged = False
            except RecursionError:  # too little stack to log (counted all the same): next time
                self._internal_error_unlogged = True

    def internal_error(self, where: str) -> None:
        """Count and log (once) a fault of tracekit's own; the runner is never affected."""
        self._internal_error(where)


    # --- instrumentation ----------------------------------------------------------------------

    def step(
        self,
        node_id: str | None = None,
        *,
        component_id: str | None = None,
        operation: str = "call",
        payload: Any = MISSING,
        step_id: str | None = None,
        parent_step_id: str | None = None,
        attempt: int = 1,
    ) -> StepScope:
        """A step as a sync/async context manager or a decorator; see :mod:`tracekit.recorder.scope`."""
        return StepScope(
            self,
            node_id=node_id,
            component_id=component_id,
            operation=operation,
            payload=None if payload is MISSING else payload,
            payload_given=payload is not MISSING,
            step_id=step_id,
            parent_step_id=parent_step_id,
            attempt=attempt,
        )

    # internal hooks for instrument.py (one place builds a step)

    def in_flight(self) -> list[Step]:
        return self._open.steps()


def sink_for(config: TraceConfig, context: TraceContext) -> Sink:
    """The sink ``config`` names: a history directory, else the single trace file."""
    if config.dir is not None:
        return HistorySink(config.dir, context.flow_id, config.keep)
    return FileSink(config.out)
