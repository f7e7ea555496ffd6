"""Step bookkeeping: the one place a step is built, paired with its end, finished or failed;
and the interface :class:`~tracekit.recorder.scope.StepScope` uses.

Threading contract: any thread or asyncio task may call at once; steps are paired by step id,
or by (thread or task, node id); the in-flight table and ring are updated with single atomic
calls, never under a lock on the success path.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracekit import errors as _errors
from tracekit.capture.coerce import coerce_event
from tracekit.capture.hashing import hash_source
from tracekit.capture.redact import Capture, capture_payload
from tracekit.config import TraceMode
from tracekit.observer import NodeEvent
from tracekit.recorder._context import CURRENT_STEP_ID, execution_key
from tracekit.recorder._context import current_task as _current_task
from tracekit.recorder._context import get_ident as _get_ident
from tracekit.recorder._context import get_running_loop as _get_running_loop
from tracekit.recorder._state import MISSING, RecorderState, log
from tracekit.recorder.inflight import stand_in
from tracekit.trace.model import Step

__all__ = ["StepBook"]

_perf_ns = time.perf_counter_ns
_current_step_id = CURRENT_STEP_ID.get


class StepBook(RecorderState):
    """Building, pairing and ending steps, as part of :class:`~tracekit.recorder.TraceRecorder`."""

    if TYPE_CHECKING:
        def _misused(self, kind: str, event: NodeEvent) -> None: ...
        def _remember_error(self, error: BaseException) -> None: ...
        def note_recorder_error(self, step: Step | None, bookkeeping: BaseException, phase: str) -> None: ...
        def _write(self, outcome: str, *, final: bool, raise_errors: bool) -> Path | None: ...

    # --- step bookkeeping (one place builds a step) -------------------------------------------

    def _checked(self, event: NodeEvent) -> NodeEvent:
        """``event``, or a copy whose fields have the types the envelope needs (a misuse)."""
        fixed = coerce_event(event)
        if fixed is None:
            return event
        self._misused("bad_event_field", event)
        return fixed

    def _start(self, event: NodeEvent, *, register: bool = True) -> Step:
        """Build the step of ``event`` (the one place a step is built) and put it in flight.

        ``register=False`` is for a step that ends at once (an error or a validation of a node
        that never started).
        """
        loop = _get_running_loop()
        task = None if loop is None else _current_task(loop)
        ctx = _get_ident() if task is None else task
        original_key, original_node = event.step_id, event.node_id
        sid, pid = original_key, event.parent_step_id
        well_typed = (
            type(event.node_id) is str
            and type(event.component_id) is str
            and type(event.operation) is str
            and (sid is None or (type(sid) is str and sid != ""))
            and (pid is None or type(pid) is str)
            and type(event.attempt) is int
            and event.attempt >= 1
        )
        # The same test as _coerce.coerce_event, inline: a call would cost more than the test.
        if not well_typed:
            event = self._checked(event)
            original_key, original_node = stand_in(original_key), stand_in(original_node)
        payload = event.payload
        input_src = hash_source(payload)
        capture = self._capture_of(payload, input_src) if self._capture else None
        parent = event.parent_step_id
        if parent is None:
            parent = _current_step_id()
        step = Step(self._next_seq(), event, parent, _perf_ns(), input_src, capture, ctx)
        if not register:
            return step
        # Keyed as the runner will name it at the end (the uncorrected step_id and node_id).
        key = original_key if original_key is not None else (ctx, original_node)
        held = self._open.setdefault(key, step)
        if held is not step:
            self._key_taken(key, held, step, event, original_key is not None)
        elif len(self._open) > self._max_in_flight:
            self._drop_oldest_in_flight()
        return step

    def _capture_of(self, payload: Any, input_src: bytes) -> Capture:
        """The payload as kept when inputs are captured: redacted, capped.

        Also called by the compiled start (tracekit/_speedups.c).
        """
        cfg = self.config
        return capture_payload(
            payload,
            input_src=input_src,
            max_bytes=cfg.max_capture_bytes,
            extra_keys=cfg.redact_keys,
            redactor=cfg.redactor,
        )

    def _key_taken(self, key: Any, held: Any, step: Step, event: NodeEvent, reused_id: bool) -> None:
        """``key`` already has a step in flight (recursion, or a reused step id): stack ``step``.

        Also called by the compiled start (tracekit/_speedups.c).
        """
        if reused_id:
            self._misused("duplicate_step_id", event)
        self._open.push(key, held, step)

    def _drop_oldest_in_flight(self) -> None:
        """Bound memory when a runner starts steps it never ends (a worker whose tasks are killed).

        Also called by the compiled start (tracekit/_speedups.c).

        The oldest tenth of the table goes at once, so the O(n) scan is paid once per
        ``MAX_IN_FLIGHT // 10`` starts; each dropped step is counted as a misuse.
        """
        self._count_misuse("in_flight_dropped", self._open.drop_oldest(max(1, self._max_in_flight // 10)))
        log.warning(
            "tracekit: more than %d steps in flight; the oldest were dropped (runner never ended "
            "them?); counted in recorder.misuse['in_flight_dropped']",
            self._max_in_flight,
        )

    def _key(self, event: NodeEvent) -> Any:
        """Where ``event``'s step is in flight (as _start keyed it; ids a runner got wrong too)."""
        sid = event.step_id
        return stand_in(sid) if sid is not None else (execution_key(), stand_in(event.node_id))

    def _take(self, event: NodeEvent) -> Step | None:
        return self._open.pop_step(self._key(event))

    def _peek(self, event: NodeEvent) -> Step | None:
        return self._open.peek(self._key(event))

    def _forget(self, step: Step) -> None:
        """Remove ``step`` from the in-flight table (used by ``step()``, which holds the step)."""
        key = step.given_id if step.given_id is not None else (step.ctx_key, step.node_id)
        self._open.remove(key, step)

    def _finish(
        self,
        step: Step,
        status: Any,
        output: Any,
        error: dict[str, Any] | None = None,
    ) -> None:
        step.end_ns = _perf_ns()
        if output is not MISSING:
            step.output_src = hash_source(output)
        if error is not None:
            step.error = error
        step.status = status
        step.ctx_key = None  # do not keep tasks alive from the ring
        if status != "completed":
            self._pin(step)
        self._ring.append(step)
        self._finished.tick()

    def _pin(self, step: Step) -> None:
        """Keep ``step`` (failed or cancelled) and its parent chain beyond the ring's reach."""
        chain = [step]
        parent = step.parent_step_id
        if parent is not None:
            # Only on a failure: the parents are usually still in flight, sometimes finished.
            by_id = {s.step_id: s for s in (*self._open.steps(), *self._ring)}
            while parent is not None and parent in by_id and len(chain) < 64:
                found = by_id.pop(parent)
                chain.append(found)
                parent = found.parent_step_id
        self._pins.pin(chain)

    def fail_step(self, step: Step, error: BaseException, phase: str | None = "execution") -> None:
        """End ``step`` as failed (or cancelled, for control-flow errors) with ``error``."""
        if _errors.is_control_flow(error):
            record = _errors.error_record(
                error, phase=phase, code="cancelled", max_chars=self.config.max_detail_chars
            )
            self._finish(step, "cancelled", MISSING, record)
            return
        record = _errors.error_record(error, phase=phase, max_chars=self.config.max_detail_chars)
        self._remember_error(error)
        self._finish(step, "failed", MISSING, record)
        self._node_failed()

    def _node_failed(self) -> None:
        run = self._run
        if run.flushed_at_error or self.config.mode is TraceMode.OFF:
            return
        run.flushed_at_error = True
        self._write("in_progress", final=False, raise_errors=False)


    # --- the interface of recorder.step() (tracekit.recorder.scope.StepHost) ---

    def begin_step(self, event: NodeEvent) -> Step | None:
        if not self._enabled:
            return None
        return self._start(event)

    def end_step(self, step: Step, output: Any = MISSING) -> None:
        self._forget(step)
        self._finish(step, "completed", output)

    def fail_scoped_step(self, step: Step, error: BaseException, phase: str) -> None:
        self._forget(step)
        self.fail_step(step, error, phase)

    def abandon_step(
        self,
        step: Step,
        bookkeeping: BaseException,
        phase: str,
        error: BaseException | None = None,
    ) -> None:
        """End ``step`` with the least bookkeeping possible, after bookkeeping itself failed.

        The step keeps the outcome of its body (``error`` is what the body raised, if anything),
        so a recorder fault never hides or invents a node failure; the fault itself is noted in
        ``errors[]`` as ``recorder_error``. A step already in the ring is not added twice.
        """
        self._forget(step)
        with self._lock:
            ended = any(s is step for s in self._ring)
        if not ended:
            step.end_ns = step.end_ns or _perf_ns()
            step.ctx_key = None
            if error is None:
                step.status = "completed"
            else:
                step.status = "cancelled" if _errors.is_control_flow(error) else "failed"
                if step.error is None:
                    step.error = _errors.error_record(
                        error, phase="execution", max_chars=self.config.max_detail_chars
                    )
            if step.status != "completed":
                self._pin(step)
            self._ring.append(step)
            self._finished.tick()
        self.note_recorder_error(step, bookkeeping, phase)
