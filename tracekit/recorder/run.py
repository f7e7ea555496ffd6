"""The run: its lifecycle (``run()`` blocks and a worker's implicit run), outcome, flush policy
and what is written (the snapshot), handed to the sink.

Threading contract: runs begin and end under the recorder's flush lock (one flush at a time);
run state read by callbacks is swapped whole, never half-updated.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from tracekit import errors as _errors
from tracekit.config import TraceMode
from tracekit.errors.events import ErrorEvent
from tracekit.recorder._state import HOST, RecorderState, log
from tracekit.recorder.ring import kept_steps
from tracekit.trace import last_good
from tracekit.trace.envelope import build_envelope, encode_envelope
from tracekit.trace.model import RunInfo, Step, rfc3339

if TYPE_CHECKING:
    pass

__all__ = ["RunLifecycle", "RunScope"]

_perf_ns = time.perf_counter_ns
_R = TypeVar("_R", bound="RunLifecycle")


class RunLifecycle(RecorderState):
    """Runs and flushing, as part of :class:`~tracekit.recorder.TraceRecorder`."""

    if TYPE_CHECKING:
        def _keep_error_event(self, event: ErrorEvent) -> None: ...
        def _remember_error(self, error: BaseException) -> None: ...
        def in_flight(self) -> list[Step]: ...

    @staticmethod
    def _new_run(explicit: bool) -> RunInfo:
        return RunInfo(
            id=uuid.uuid4().hex,
            wall_anchor_ns=time.time_ns(),
            perf_anchor_ns=_perf_ns(),
            explicit=explicit,
        )

    @property
    def run_id(self) -> str:
        return self._run.id

    def run(self: _R) -> RunScope[_R]:
        """A (sync or async) context manager around one run: flushes per mode when it ends.

        A failure is recorded and re-raised; control-flow exceptions (cancellation, interrupt,
        exit) end the run ``cancelled`` and are re-raised untouched. Nested blocks join the
        outer run.
        """
        return RunScope(self)

    def _begin_run(self) -> None:
        with self._flush_lock:
            self._run_depth += 1
            if self._run_depth > 1:
                return
            self._reset(explicit=True)

    def _end_run(self, error: BaseException | None) -> None:
        with self._flush_lock:
            self._run_depth -= 1
            if self._run_depth > 0:
                return
            try:
                if error is None:
                    self._final("success", None)
                elif _errors.is_control_flow(error):
                    self._final("cancelled", error)
                else:
                    self._final("failure", error)
            finally:
                # Its steps still in flight were written with the run; a late end is a misuse.
                self._open.clear()
                self._reset(explicit=False)

    def reinit_after_fork(self) -> None:
        """In a forked child: new locks, and a new run of the child's own (see recorder.fork)."""
        self._lock = threading.Lock()
        self._flush_lock = threading.RLock()
        self._misuse_lock = threading.Lock()
        self._finished.reinit_after_fork()
        self.errors.reinit_after_fork()
        self._pins.reinit_after_fork()
        self._told = {}
        self._open.clear()
        self._ring.clear()
        self._finished_at_reset = self._finished.value()
        self._flow_errors = []
        self._errors_dropped = 0
        self._errors_seen.clear()
        self.last_flush_error = None
        self._run = self._new_run(self._run.explicit)
        for_child = getattr(self.sink, "for_child", None)
        if for_child is not None:
            self.sink = for_child(os.getpid())

    def _reset(self, explicit: bool) -> None:
        with self._lock:
            self._ring.clear()
            self._finished_at_reset = self._finished.value()
            self._flow_errors = []
            self._errors_dropped = 0
            self._errors_seen.clear()
            self._pins.clear()
            self._told = {}
            self._run = self._new_run(explicit)

    def _after_implicit_final(self, told: list[Step]) -> None:
        # A worker's implicit run ends at each final flush; its buffer stays its recent history,
        # without the failures its final trace ``told`` of (concurrent work's stay pinned).
        if not self._run.explicit:
            with self._lock:
                self._flow_errors = []
                self._errors_dropped = 0
                self._errors_seen.clear()
                in_ring = {id(s) for s in self._ring}
                self._told = {
                    id(s): s for s in (*self._told.values(), *told) if id(s) in in_ring
                }
                told_ids = {id(s) for s in told}
                self._pins.retain(lambda s: id(s) not in told_ids)
                # Dropped counts this run's steps: the earlier run's are history, not losses.
                self._finished_at_reset = self._finished.value()
                self._run = self._new_run(explicit=False)

    # --- flushing -----------------------------------------------------------------------------

    def flush_error(self, error: BaseException | None = None) -> Path | None:
        """The run failed: write its final trace (modes on and always); returns the path.

        ``error`` goes on the steps still in flight, or, when none is, into ``errors[]`` as a
        flow error; an error already recorded on a step is not recorded twice.
        """
        if not self._enabled:
            return None
        with self._flush_lock:
            return self._final("failure", error)

    def flush_success(self) -> Path | None:
        """The run succeeded: write its final trace in always mode (or rewrite one written)."""
        if not self._enabled:
            return None
        with self._flush_lock:
            return self._final("success", None)

    def flush_buffer(self) -> Path | None:
        """Write the current state now (modes on and always), with outcome ``in_progress``."""
        if not self._enabled:
            return None
        with self._flush_lock:
            return self._write("in_progress", final=False, raise_errors=True)

    def _final(self, outcome: str, error: BaseException | None, *, force: bool = False) -> Path | None:
        """End the run with ``outcome``; ``force`` writes even where the mode would not."""
        run = self._run
        if run.outcome == "failure" and outcome == "success":
            outcome = "failure"  # flush_error inside a run() block is not undone by its end
        if error is not None:
            self._attach_final_error(error, outcome)
        run.outcome = outcome
        run.finished_ns = time.time_ns()  # even unwritten: a final outcome always has finished_at
        write = (
            self.config.mode is TraceMode.ALWAYS
            or outcome == "failure"
            or run.wrote
            or force
        )
        path = None
        told: list[Step] = []
        if write:
            path = self._write(outcome, final=True, raise_errors=True)
            if path is not None and outcome != "success":
                # Told of as what ended the run (every finished failure the trace just held);
                # a success's failures were recovered, or belong to concurrent work still
                # running (OTel roots), so they stay for its trace.
                told = [
                    s for s in (*self._pins.steps(), *self._ring) if s.status in ("failed", "cancelled")
                ]
        last_good.write_summary(self, outcome)
        self._after_implicit_final(told)
        return path

    def _already_recorded(self, error: BaseException) -> bool:
        """True if ``error``, or an error it wraps (cause/context), is already in this run."""
        seen: set[int] = set()
        current: BaseException | None = error
        while current is not None and id(current) not in seen and len(seen) < _errors.MAX_CHAIN:
            if current in self._errors_seen:
                return True
            seen.add(id(current))
            current = current.__cause__ or current.__context__
        return False

    def _attach_final_error(self, error: BaseException, outcome: str) -> None:
        # A runner that wraps a node's failure (raise PipelineError(...) from err) is not a
        # second failure: the node's step already holds the whole chain.
        if self._already_recorded(error):
            return
        cancelled = outcome == "cancelled"
        in_flight = self._open.steps()
        if in_flight:
            record = _errors.error_record(
                error,
                phase="execution",
                code="cancelled" if cancelled else None,
                max_chars=self.config.max_detail_chars,
            )
            for step in in_flight:
                if step.error is None:
                    step.error = record
            self._remember_error(error)
            return
        if cancelled:
            return
        record = _errors.error_record(error, code="flow_error", max_chars=self.config.max_detail_chars)
        self._remember_error(error)
        event = ErrorEvent(
            scope="runner",
            time=rfc3339(time.time_ns()),
            code="flow_error",
            message=record["message"],
            error=record,
        )
        self._keep_error_event(event)

    def snapshot(self, outcome: str | None = None) -> dict[str, Any]:
        """The envelope as it would be written now (a dict; JSON-ready but for captured payloads)."""
        run = self._run
        with self._lock:
            ring = list(self._ring)
            # A step between its append and its tick is counted as kept, not dropped.
            dropped = max(0, self._finished.value() - self._finished_at_reset - len(ring))
            flow_errors = list(self._flow_errors)
            errors_dropped = self._errors_dropped
        finished, pinned_only = kept_steps(ring, self._pins.steps(), self._told)
        in_flight = self._open.steps()
        return build_envelope(
            context=self.context,
            config=self.config,
            run=run,
            outcome=outcome or run.outcome,
            steps=(*finished, *in_flight),
            dropped=max(0, dropped - pinned_only),
            failures_dropped=self._pins.dropped,
            flow_errors=flow_errors,
            errors_dropped=errors_dropped,
            host=HOST,
            pid=os.getpid(),
            now_perf_ns=_perf_ns(),
        )

    def _write(self, outcome: str, *, final: bool, raise_errors: bool) -> Path | None:
        if self.config.mode is TraceMode.OFF:
            return None
        with self._flush_lock:
            run = self._run
            try:
                data = encode_envelope(self.snapshot(outcome))
                path = self.sink.write(data, run, private=self._capture)
            except Exception as exc:
                self.last_flush_error = exc
                if not run.failed_flush_logged:
                    run.failed_flush_logged = True
                    log.warning(
                        "tracekit: could not write the trace of run %s (%s): %s",
                        run.id, outcome, exc, exc_info=exc,
                    )
                if raise_errors and self.config.strict:
                    raise
                return None
            run.wrote = True
            self.last_trace_path = path
            return path


    # --- for tracekit.recorder.crash: a dying process asks, then ends the run ---------------------------

    def has_unfinished_run(self, *, lock_timeout: float, busy_means: bool | None = True) -> bool | None:
        """Whether the current run holds anything not yet written in a final trace.

        A ``run()`` block still open, a trace already written for it, or steps or errors
        recorded since it began. When the recorder's lock cannot be had within
        ``lock_timeout`` (it may be held by the very frame a signal interrupted), the answer
        is ``busy_means``: True (better one trace too many than none) or None (unknown).
        """
        # The lock first, even when the answer is known: a caller about to flush must know
        # the flush will not block on it.
        if not self._lock.acquire(timeout=lock_timeout):
            return busy_means
        run = self._run
        try:
            if self._run_depth > 0 or run.wrote or self._flow_errors:
                return True
            anchor = run.perf_anchor_ns
            finished = any(s.start_ns >= anchor for s in self._ring)
        finally:
            self._lock.release()
        # Steps still in flight from before this run began were reported with the previous run.
        return finished or any(s.start_ns >= anchor for s in self.in_flight())

    def end_run_now(self, outcome: str, error: BaseException | None, *, force: bool = False) -> Path | None:
        """End the current run with ``outcome`` and write it per the mode (or anyway, ``force``)."""
        with self._flush_lock:
            return self._final(outcome, error, force=force)


class RunScope(Generic[_R]):
    """``with recorder.run():`` / ``async with recorder.run():``."""

    __slots__ = ("_recorder",)

    def __init__(self, recorder: _R) -> None:
        self._recorder = recorder

    def __enter__(self) -> _R:
        if self._recorder.enabled:
            self._recorder._begin_run()
        return self._recorder

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self._recorder.enabled:
            self._recorder._end_run(exc)

    async def __aenter__(self) -> _R:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)
