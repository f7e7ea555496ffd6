"""The recorder: in-flight steps, the ring buffer of finished ones, and the flush policy.

Threading contract: every ``on_*`` callback may be called from any thread or asyncio task at
once; each is cheap, never blocks on I/O (except the one flush at a run's first failure), and
never raises into the runner. Flushes are serialized by a lock.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from tracekit import _hotpath
from tracekit import errors as _errors
from tracekit._coerce import capped, capped_context, coerce_event, coerce_issues, text
from tracekit._context import CURRENT_STEP_ID, execution_key
from tracekit._context import current_task as _current_task
from tracekit._context import get_ident as _get_ident
from tracekit._context import get_running_loop as _get_running_loop
from tracekit._counter import TickCounter
from tracekit._envelope import RECORDER_NAME, build_envelope
from tracekit._inflight import InFlight, stand_in
from tracekit.config import TraceConfig, TraceMode
from tracekit.events import SCOPES, ErrorChannel, ErrorEvent, Scope, json_context, json_tags
from tracekit.hashing import hash_source
from tracekit.model import RunInfo, Step, TraceContext, rfc3339
from tracekit.observer import NodeEvent, ValidationIssue
from tracekit.redact import Capture, capture_payload
from tracekit.sink import (
    apply_retention,
    atomic_write,
    claim_history_file,
    history_stem,
    sweep_stale_temps,
)

if TYPE_CHECKING:
    from tracekit.instrument import StepScope

__all__ = ["MAX_IN_FLIGHT", "RECORDER_NAME", "TraceRecorder"]

_log = logging.getLogger("tracekit")

#: Steps started and never ended are kept up to this many; then the oldest are dropped.
MAX_IN_FLIGHT: Final = 10_000
_MISSING: Final[Any] = object()
_perf_ns = time.perf_counter_ns
_current_step_id = CURRENT_STEP_ID.get
_HOST: Final = socket.gethostname()
#: Every recorder alive, for tracekit.crash to flush at a crash or exit.
LIVE_RECORDERS: weakref.WeakSet[TraceRecorder] = weakref.WeakSet()


class TraceRecorder:
    """A flight recorder: keeps the last N finished steps and writes a trace per the mode.

    It is an :class:`~tracekit.observer.ExecutionObserver`. Use :meth:`run` around a run, or let
    an adapter call :meth:`flush_error` / :meth:`flush_success` for long-lived workers.

    Where ``tracekit._speedups`` was built, each instance's ``on_node_start``/``on_node_end``
    are compiled equivalents of the methods below, which they call for every unusual case
    (``tracekit/_hotpath.py``); the methods below are the reference.
    """

    def __init__(self, config: TraceConfig, context: TraceContext) -> None:
        self.config = config
        self.context = context
        self._enabled = config.enabled
        self.errors = ErrorChannel()
        LIVE_RECORDERS.add(self)
        #: The last exception raised while writing a trace (kept until the recorder is dropped).
        self.last_flush_error: BaseException | None = None
        #: Where the last successful write went.
        self.last_trace_path: Path | None = None
        #: Misuses tolerated (end without start, unknown step, ...), by kind.
        self.misuse: dict[str, int] = {}
        self._misuse_lock = threading.Lock()  # taken for a count only, never around a call out
        self._ring: deque[Step] = deque(maxlen=config.buffer)
        self._finished = TickCounter()  # steps ever finished; see snapshot() for "dropped"
        self._finished_at_reset = 0
        self._open = InFlight()
        self._seq = itertools.count(1)  # step numbers: s1, s2, ...
        self._next_seq = self._seq.__next__  # bound once: a C call per step
        self._lock = threading.Lock()  # run state, flow errors; never taken on the hot path
        self._flush_lock = threading.RLock()  # one flush at a time; runs begin and end under it
        self._flow_errors: list[ErrorEvent] = []
        self._errors_dropped = 0
        self._error_ids: set[int] = set()
        self._error_refs: list[BaseException] = []  # keeps ids in _error_ids from being reused
        self._run_depth = 0
        self._capture = config.capture_inputs
        self._run = self._new_run(explicit=False)
        #: Whether on_node_start/on_node_end run compiled (see tracekit/_hotpath.py).
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
        self._compiled = self._enabled and _hotpath.install(self, MAX_IN_FLIGHT)
        if not self._compiled:
            _hotpath.uninstall(self)

    @classmethod
    def from_env(cls, context: TraceContext, **overrides: Any) -> TraceRecorder:
        """A recorder configured from ``TRACEKIT_TRACE*`` variables; ``overrides`` win."""
        return cls(TraceConfig.from_env(**overrides), context)

    # --- runs ---------------------------------------------------------------------------------

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

    def run(self) -> _RunScope:
        """A (sync or async) context manager around one run: flushes per mode when it ends.

        A failure is recorded and re-raised; control-flow exceptions (cancellation, interrupt,
        exit) end the run ``cancelled`` and are re-raised untouched. Nested blocks join the
        outer run.
        """
        return _RunScope(self)

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

    def _reset(self, explicit: bool) -> None:
        with self._lock:
            self._ring.clear()
            self._finished_at_reset = self._finished.value()
            self._flow_errors = []
            self._errors_dropped = 0
            self._error_ids = set()
            self._error_refs = []
            self._run = self._new_run(explicit)

    def _after_implicit_final(self) -> None:
        # A worker's implicit run ends at each final flush; its buffer stays its recent history.
        if not self._run.explicit:
            with self._lock:
                self._flow_errors = []
                self._errors_dropped = 0
                self._error_ids = set()
                self._error_refs = []
                self._run = self._new_run(explicit=False)

    # --- the observer protocol ----------------------------------------------------------------

    # on_node_end is kept flat on purpose (pairing and completion inline): each Python call
    # level costs ~50 ns, a noticeable share of the per-node budget (see benchmarks/).

    def on_node_start(self, event: NodeEvent) -> None:
        if not self._enabled:
            return
        try:
            self._start(event)
        except Exception:
            self._internal_error("on_node_start")

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
            self._internal_error("on_node_end")

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
            self._internal_error("on_node_error")

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
                self._finish(step, "completed", _MISSING)
                return
            step.error = {
                "code": "validation",
                "message": "; ".join(f"{i.code}: {i.message}" for i in errors_found),
                "details": {"type": "ValidationIssue", "chain": [], "traceback": "",
                            "hints": ["Fix the input or configuration the issues point at."],
                            "phase": "validation"},
            }
            self._finish(step, "failed", _MISSING)
            self._node_failed()
        except Exception:
            self._internal_error("on_validation")

    def _issues(self, event: NodeEvent, issues: Sequence[ValidationIssue]) -> list[ValidationIssue]:
        """The issues as the envelope needs them: typed fields, messages capped."""
        found, bad = coerce_issues(issues, self.config.max_detail_chars)
        for _ in range(bad):
            self._misused("bad_validation_issue", event)
        return found

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
        elif len(self._open) > MAX_IN_FLIGHT:
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
        self._count_misuse("in_flight_dropped", self._open.drop_oldest(max(1, MAX_IN_FLIGHT // 10)))
        _log.warning(
            "tracekit: more than %d steps in flight; the oldest were dropped (runner never ended "
            "them?); counted in recorder.misuse['in_flight_dropped']",
            MAX_IN_FLIGHT,
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
        if output is not _MISSING:
            step.output_src = hash_source(output)
        if error is not None:
            step.error = error
        step.status = status
        step.ctx_key = None  # do not keep tasks alive from the ring
        self._ring.append(step)
        self._finished.tick()

    def fail_step(self, step: Step, error: BaseException, phase: str | None = "execution") -> None:
        """End ``step`` as failed (or cancelled, for control-flow errors) with ``error``."""
        if _errors.is_control_flow(error):
            record = _errors.error_record(
                error, phase=phase, code="cancelled", max_chars=self.config.max_detail_chars
            )
            self._finish(step, "cancelled", _MISSING, record)
            return
        record = _errors.error_record(error, phase=phase, max_chars=self.config.max_detail_chars)
        self._remember_error(error)
        self._finish(step, "failed", _MISSING, record)
        self._node_failed()

    def _remember_error(self, error: BaseException) -> None:
        with self._lock:
            self._error_ids.add(id(error))
            self._error_refs.append(error)

    def _node_failed(self) -> None:
        run = self._run
        if run.flushed_at_error or self.config.mode is TraceMode.OFF:
            return
        run.flushed_at_error = True
        self._write("in_progress", final=False, raise_errors=False)

    # --- misuse and internal errors never reach the runner -------------------------------------

    def _count_misuse(self, kind: str, n: int = 1) -> int:
        """Add ``n`` to ``misuse[kind]``; return the new count (exact under concurrent misuse)."""
        with self._misuse_lock:
            count = self.misuse[kind] = self.misuse.get(kind, 0) + n
        return count

    def _misused(self, kind: str, event: NodeEvent) -> None:
        if self._count_misuse(kind) == 1:
            _log.warning(
                "tracekit: %s for node %r (step_id=%r); tolerated, counted in recorder.misuse",
                kind.replace("_", " "),
                event.node_id,
                event.step_id,
            )

    def _internal_error(self, where: str) -> None:
        if self._count_misuse("internal_error") == 1:
            _log.warning("tracekit: internal error in %s; the runner is unaffected", where,
                         exc_info=True)

    # --- error events -------------------------------------------------------------------------

    def _keep_error_event(self, event: ErrorEvent) -> None:
        """Add ``event`` to the run's ``errors[]`` (capped, dropped ones counted) and publish it."""
        with self._lock:
            if len(self._flow_errors) < self.config.max_errors:
                self._flow_errors.append(event)
            else:
                self._errors_dropped += 1
        self.errors.publish(event)

    def emit_error(
        self,
        scope: Scope = "runner",
        error: BaseException | None = None,
        *,
        message: str | None = None,
        code: str | None = None,
        node_id: str | None = None,
        step_id: str | None = None,
        tags: Mapping[str, object] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> ErrorEvent | None:
        """Record a runner-level failure that belongs to no node; never raises.

        It lands in the envelope's ``errors[]`` (capped by ``config.max_errors``), is published
        on :attr:`errors`, and counts as the run's first failure for flushing.
        """
        if not self._enabled:
            return None
        try:
            if scope not in SCOPES:
                self._count_misuse("invalid_scope")
                _log.warning("tracekit: emit_error(scope=%r) is not one of %s; recorded as 'runner'",
                             scope, ", ".join(SCOPES))
                scope = "runner"
            record = None
            limit = self.config.max_detail_chars
            if error is not None:
                record = _errors.error_record(
                    error, code=code, max_chars=self.config.max_detail_chars
                )
                self._remember_error(error)
            event = ErrorEvent(
                scope=scope,
                time=rfc3339(time.time_ns()),
                code=code or (record["code"] if record else "flow_error"),
                message=capped(text(message), self.config.max_detail_chars) if message
                else (record["message"] if record else "runner error"),
                node_id=node_id,
                step_id=step_id,
                tags={capped(k, limit): capped(v, limit) for k, v in json_tags(tags).items()},
                context=capped_context(json_context(context), self.config.max_capture_bytes),
                error=record,
            )
            self._keep_error_event(event)
            self._node_failed()
            return event
        except Exception:
            self._internal_error("emit_error")
            return None

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
        if write:
            path = self._write(outcome, final=True, raise_errors=True)
        self._after_implicit_final()
        return path

    def _already_recorded(self, error: BaseException) -> bool:
        """True if ``error``, or an error it wraps (cause/context), is already in this run."""
        seen: set[int] = set()
        current: BaseException | None = error
        while current is not None and id(current) not in seen and len(seen) < _errors.MAX_CHAIN:
            if id(current) in self._error_ids:
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
            finished = list(self._ring)
            # A step between its append and its tick is counted as kept, not dropped.
            dropped = max(0, self._finished.value() - self._finished_at_reset - len(finished))
            flow_errors = list(self._flow_errors)
            errors_dropped = self._errors_dropped
        in_flight = self._open.steps()
        return build_envelope(
            context=self.context,
            config=self.config,
            run=run,
            outcome=outcome or run.outcome,
            steps=(*finished, *in_flight),
            dropped=dropped,
            flow_errors=flow_errors,
            errors_dropped=errors_dropped,
            host=_HOST,
            pid=os.getpid(),
            now_perf_ns=_perf_ns(),
        )

    def _write(self, outcome: str, *, final: bool, raise_errors: bool) -> Path | None:
        if self.config.mode is TraceMode.OFF:
            return None
        with self._flush_lock:
            run = self._run
            try:
                data = orjson.dumps(
                    self.snapshot(outcome), option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE
                )
                mode = 0o600 if self._capture else 0o644
                cfg = self.config
                if cfg.dir is not None:
                    sweep_stale_temps(cfg.dir)
                    if run.target is None:
                        path = claim_history_file(
                            cfg.dir, history_stem(run.wall_anchor_ns, self.context.flow_id), data,
                            mode=mode, on_claim=lambda claimed: setattr(run, "target", str(claimed)),
                        )
                        run.target = str(path)
                    else:
                        path = Path(run.target)
                        atomic_write(path, data, mode=mode)
                    if cfg.keep is not None:
                        apply_retention(cfg.dir, cfg.keep, protect=path)
                else:
                    path = cfg.out
                    if path.parent.is_dir():
                        sweep_stale_temps(path.parent)
                    atomic_write(path, data, mode=mode)
            except Exception as exc:
                self.last_flush_error = exc
                if not run.failed_flush_logged:
                    run.failed_flush_logged = True
                    _log.warning(
                        "tracekit: could not write the trace of run %s (%s): %s",
                        run.id, outcome, exc, exc_info=exc,
                    )
                if raise_errors and self.config.strict:
                    raise
                return None
            run.wrote = True
            self.last_trace_path = path
            return path

    # --- instrumentation ----------------------------------------------------------------------

    def step(
        self,
        node_id: str | None = None,
        *,
        component_id: str | None = None,
        operation: str = "call",
        payload: Any = _MISSING,
        step_id: str | None = None,
        parent_step_id: str | None = None,
        attempt: int = 1,
    ) -> StepScope:
        """A step as a sync/async context manager or a decorator; see :mod:`tracekit.instrument`."""
        from tracekit.instrument import StepScope

        return StepScope(
            self,
            node_id=node_id,
            component_id=component_id,
            operation=operation,
            payload=None if payload is _MISSING else payload,
            payload_given=payload is not _MISSING,
            step_id=step_id,
            parent_step_id=parent_step_id,
            attempt=attempt,
        )

    # internal hooks for instrument.py (one place builds a step)
    def _begin_step(self, event: NodeEvent) -> Step | None:
        if not self._enabled:
            return None
        return self._start(event)

    def _end_step(self, step: Step, output: Any = _MISSING) -> None:
        self._forget(step)
        self._finish(step, "completed", output)

    def _fail_step(self, step: Step, error: BaseException, phase: str) -> None:
        self._forget(step)
        self.fail_step(step, error, phase)

    def _emergency_end(
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
            self._ring.append(step)
            self._finished.tick()
        self._note_recorder_error(step, bookkeeping, phase)

    def _note_recorder_error(self, step: Step | None, bookkeeping: BaseException, phase: str) -> None:
        """Say in ``errors[]`` that tracekit's own bookkeeping failed (it is not the run's failure)."""
        record = _errors.error_record(
            bookkeeping, phase=phase, code="recorder_error", max_chars=self.config.max_detail_chars
        )
        event = ErrorEvent(
            scope="runner",
            time=rfc3339(time.time_ns()),
            code="recorder_error",
            message=f"tracekit bookkeeping failed in step {phase}: {record['message']}",
            node_id=None if step is None else step.node_id,
            step_id=None if step is None else step.step_id,
            error=record,
        )
        self._keep_error_event(event)

    # --- for tracekit.crash: a dying process asks, then ends the run ---------------------------

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

    def in_flight(self) -> list[Step]:
        return self._open.steps()


class _RunScope:
    """``with recorder.run():`` / ``async with recorder.run():``."""

    __slots__ = ("_recorder",)

    def __init__(self, recorder: TraceRecorder) -> None:
        self._recorder = recorder

    def __enter__(self) -> TraceRecorder:
        if self._recorder.enabled:
            self._recorder._begin_run()
        return self._recorder

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self._recorder.enabled:
            self._recorder._end_run(exc)

    async def __aenter__(self) -> TraceRecorder:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)
