"""Celery adapter: every task execution in a worker process becomes one tracekit step.

A worker is long-lived, so there is no ``run()`` block: steps belong to the recorder's implicit
run, whose ring buffer is the worker's recent history. A task failure writes a trace holding the
failed task and the tasks this process ran before it. Each worker process keeps its own
recorder (a forked pool process makes a new one), so a trace never mixes two processes' steps.

Usage::

    from tracekit.adapters.celery import instrument
    tracing = instrument(app)          # before the worker starts; TRACEKIT_TRACE_DIR recommended

Mapping: node_id = task name; component_id = the task's module (``app.main`` for ``__main__``);
payload = ``{"args": [...], "kwargs": {...}}`` as the task received them; output = the return
value; step_id = task id, with ``#<attempt>`` appended from the second attempt on; attempt =
``request.retries + 1``; parent_step_id = the parent task's step (``request.parent_id``).
A retry ends its attempt ``failed`` with code ``retry`` (the attempt did raise), its chain
ending in ``Retry.exc``; a revoked or ignored task ends ``cancelled``. A task a ``BaseException``
unwound (its pool process stopped at a hard time limit, a revoke with ``terminate=True``, a cold
shutdown) ends ``cancelled`` (``failed`` for a BaseException that is not control flow), never
``completed``, and the process writes its trace at once: it is about to exit. Failures only the
worker's main process sees (a hard time limit, a lost pool process) are recorded there, once
per attempt however many times Celery reports them. docs/adapters/celery.md has the whole table.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Final

from tracekit import NodeEvent, TraceConfig, TraceContext, TraceRecorder
from tracekit.adapters._celery_steps import ATTEMPT_SEPARATOR, OPERATION, TaskSteps, attempt_of, step_id_of
from tracekit.errors import is_control_flow, register_code, register_control_flow
from tracekit.recorder.replayable import mark_event

try:
    import celery
    from celery import signals as _signals
    from celery import states as _states
    from celery.exceptions import Ignore, Retry, TaskRevokedError

    from tracekit.adapters._celery_fates import (
        CANCELLED_BY_WORKER,
        TaskInterrupted,
        hard_time_limit,
        interruption,
        signal_name,
        with_retry_cause,
    )
except ImportError as _exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "tracekit.adapters.celery needs Celery; install it with: pip install 'tracekit-recorder[celery]'"
    ) from _exc

__all__ = [
    "ATTEMPT_SEPARATOR",
    "DEFAULT_FLOW_VERSION",
    "OPERATION",
    "RETRY_CODE",
    "CeleryInstrumentation",
    "RecorderFactory",
    "TaskInterrupted",
    "instrument",
]

_log = logging.getLogger("tracekit")

#: ``error.code`` of an attempt that ended because the task asked to be retried.
RETRY_CODE: Final = "retry"
#: ``flow.version`` when no ``context`` is given: a worker serves tasks, not one versioned flow.
DEFAULT_FLOW_VERSION: Final = "unversioned"
# How long a process exiting waits for its recorder's lock before writing anyway.
_EXIT_LOCK_TIMEOUT_S: Final = 2.0

#: Builds the recorder of one worker process from the trace context.
RecorderFactory = Callable[[TraceContext], TraceRecorder]

# A retry is the runner's own control flow, but the attempt did raise: it ends failed, coded.
register_code(Retry, RETRY_CODE)
# A revoked or ignored task did not fail: its step ends cancelled and writes no failure trace.
register_control_flow(TaskRevokedError)
register_control_flow(Ignore)

_live: weakref.WeakSet[CeleryInstrumentation] = weakref.WeakSet()
_instrumented_apps: dict[int, CeleryInstrumentation] = {}
_registry_lock = threading.Lock()


def instrument(
    app: Any,
    *,
    context: TraceContext | None = None,
    recorder_factory: RecorderFactory | None = None,
    **config_overrides: Any,
) -> CeleryInstrumentation:
    """Record every task ``app``'s workers run; returns a handle with ``.disconnect()``.

    Call it where the worker imports the app, before it starts. ``config_overrides`` are
    :class:`~tracekit.config.TraceConfig` fields (``dir=``, ``mode=``, ...); they are checked
    now, so a bad ``TRACEKIT_TRACE*`` variable fails at startup rather than at the first task.
    ``recorder_factory(context)`` replaces the default recorder (then give no overrides).
    """
    if not isinstance(app, celery.Celery):
        raise TypeError(f"instrument(app): expected a celery.Celery application, got {type(app).__name__}")
    if recorder_factory is not None and config_overrides:
        raise TypeError(
            "instrument(): got both recorder_factory and config overrides "
            f"({', '.join(sorted(config_overrides))}); allowed: one of them "
            "(configure the recorder inside your factory)"
        )
    if context is None:
        name = app.main or "celery"
        context = TraceContext(
            pack_ref=name,
            flow_id=name,
            flow_version=DEFAULT_FLOW_VERSION,
            runner_version=f"celery {celery.__version__}",
        )
    if recorder_factory is None:
        config = TraceConfig.from_env(**config_overrides)

        def recorder_factory(ctx: TraceContext) -> TraceRecorder:
            return TraceRecorder(config, ctx)

    handle = CeleryInstrumentation(app, context, recorder_factory)
    with _registry_lock:
        if id(app) in _instrumented_apps:
            raise ValueError(
                f"instrument(app): Celery app {app.main!r} is already instrumented; "
                "allowed: one handle per app (call .disconnect() on the first one)"
            )
        _instrumented_apps[id(app)] = handle
    handle._connect()
    return handle


class CeleryInstrumentation:
    """The connection between one Celery app's signals and a recorder per worker process.

    Threading contract: signal receivers run on whatever thread runs the task (the threads pool
    runs many at once); their shared state is guarded by locks, they never block on I/O except
    to write a trace at a failure or as the process ends, and they never raise into the worker
    (a failure of tracekit itself is logged once per signal on the ``tracekit`` logger and
    counted in :attr:`internal_errors`). :attr:`recorder` and :meth:`disconnect` may be called
    from any thread.
    """

    def __init__(self, app: Any, context: TraceContext, factory: RecorderFactory) -> None:
        self.app = app
        self.context = context
        #: Failures of tracekit's own bookkeeping inside a signal, by signal name.
        self.internal_errors: dict[str, int] = {}
        self._factory = factory
        self._receivers: list[tuple[Any, Callable[..., None], str]] = []
        self._fresh_process_state()
        _live.add(self)

    def _fresh_process_state(self) -> None:
        # Everything below belongs to one process; a forked child starts again from here.
        self._lock = threading.Lock()
        self._recorder: TraceRecorder | None = None
        self._pid = os.getpid()
        self._steps = TaskSteps()

    # --- public -------------------------------------------------------------------------------

    @property
    def recorder(self) -> TraceRecorder:
        """This process's recorder, made on first use; a process forked from it makes its own."""
        # No getpid() here: it is a system call per signal; forks are caught by register_at_fork.
        rec = self._recorder
        if rec is not None:
            return rec
        with self._lock:
            if self._recorder is None:
                self._recorder = self._factory(self.context)
            return self._recorder

    @property
    def connected(self) -> bool:
        return bool(self._receivers)

    def disconnect(self) -> None:
        """Stop recording this app's tasks; the recorder and its buffer stay readable."""
        for signal, receiver, uid in self._receivers:
            signal.disconnect(receiver, dispatch_uid=uid)
        self._receivers = []
        with _registry_lock:
            if _instrumented_apps.get(id(self.app)) is self:
                del _instrumented_apps[id(self.app)]

    # --- wiring -------------------------------------------------------------------------------

    def _connect(self) -> None:
        table: list[tuple[Any, Callable[[Any, dict[str, Any]], None]]] = [
            (_signals.task_prerun, self._prerun),
            (_signals.task_postrun, self._postrun),
            (_signals.task_failure, self._failure),
            (_signals.task_retry, self._retry),
            (_signals.task_revoked, self._revoked),
            (_signals.worker_process_init, self._process_init),
            (_signals.worker_process_shutdown, self._process_shutdown),
            (_signals.worker_shutdown, self._worker_shutdown),
        ]
        for signal, impl in table:
            receiver = self._guarded(signal.name, impl)
            uid = f"tracekit-celery-{id(self)}-{signal.name}"
            # Strong references: the handle must not vanish when the caller drops it.
            signal.connect(receiver, weak=False, dispatch_uid=uid)
            self._receivers.append((signal, receiver, uid))

    def _guarded(
        self, name: str, impl: Callable[[Any, dict[str, Any]], None]
    ) -> Callable[..., None]:
        def receiver(sender: Any = None, **kwargs: Any) -> None:
            try:
                impl(sender, kwargs)
            except Exception:
                count = self.internal_errors.get(name, 0) + 1
                self.internal_errors[name] = count
                if count == 1:
                    _log.warning("tracekit: internal error in the Celery %s receiver; the task "
                                 "is unaffected", name, exc_info=True)

        return receiver

    def _ours(self, task: Any) -> bool:
        # Signals are process-wide: only tasks of our app, so two apps in one process never mix.
        return task is not None and getattr(task, "app", None) is self.app

    def _active_recorder(self) -> TraceRecorder | None:
        rec = self.recorder
        return rec if rec.enabled else None

    # --- steps --------------------------------------------------------------------------------

    def _component(self, task: Any) -> str:
        module = getattr(task, "__module__", None)
        if isinstance(module, str) and module and module != "__main__":
            return module
        return str(self.app.main or "celery")

    def _unseen(self, rec: TraceRecorder, task: Any, request: Any, task_id: str, attempt: int,
                args: Any, kwargs: Any) -> NodeEvent:
        """A task that ends here without having started here (the prefork parent): it starts now."""
        event = self._steps.event(task, self._component(task), task_id, attempt, args, kwargs,
                                  getattr(request, "parent_id", None))
        rec.on_node_start(event)
        self._steps.ended(str(event.step_id))
        return event

    def _ending(self, rec: TraceRecorder, sender: Any, request: Any, *, again: bool) -> NodeEvent | None:
        """The step of ``request``'s attempt: running here, or one that starts now.

        None when it already ended here, unless ``again`` (then a second step records it).
        """
        task_id = str(getattr(request, "id", None))
        attempt = attempt_of(request)
        step_id = step_id_of(task_id, attempt)
        running = self._steps.take(step_id)
        if running is not None:
            return running[0]
        if not again and self._steps.ended_here(step_id):
            return None
        return self._unseen(rec, sender, request, task_id, attempt,
                            getattr(request, "args", None), getattr(request, "kwargs", None))

    # --- signal receivers (each runs inside _guarded) -----------------------------------------

    def _prerun(self, sender: Any, kw: dict[str, Any]) -> None:
        task = kw.get("task", sender)
        if not self._ours(task) or (rec := self._active_recorder()) is None:
            return
        req = task.request
        event = self._steps.event(task, self._component(task), str(kw.get("task_id")),
                                  attempt_of(req), kw.get("args"), kw.get("kwargs"),
                                  getattr(req, "parent_id", None))
        self._steps.started(event)
        rec.on_node_start(event)
        # Replay calls the task by its name in its module (the task object: calling it runs the
        # body locally, binding self for bind=True tasks), on the captured args and kwargs.
        mark_event(rec, event, getattr(task, "run", task), "args_kwargs")

    def _postrun(self, sender: Any, kw: dict[str, Any]) -> None:
        task = kw.get("task", sender)
        if not self._ours(task) or (rec := self._active_recorder()) is None:
            return
        step_id = self._steps.step_of(task, str(kw.get("task_id")))
        running = self._steps.take(step_id)
        if running is None:
            return  # already ended by task_failure or task_retry
        event, started = running
        state, retval = kw.get("state"), kw.get("retval")
        if state == _states.SUCCESS:
            rec.on_node_end(event, retval)
        elif state is None:
            # A BaseException is unwinding the task: this runs in trace_task's finally block.
            error = interruption(sys.exc_info()[1], elapsed_s=time.monotonic() - started,
                                 hard_limit_s=hard_time_limit(task))
            rec.on_node_error(event, error)
            self._steps.first_failure(step_id)
            # Celery sends no task_failure for it, and the pool process exits next: write now.
            if is_control_flow(error):
                rec.end_run_now("cancelled", None, force=True)
            else:
                rec.flush_error(error)
        elif isinstance(retval, BaseException):
            rec.on_node_error(event, retval)  # ignored (cancelled) or rejected (failed)
        else:
            rec.on_node_error(event, RuntimeError(
                f"Celery ended task {event.step_id} in state {state!r} without an exception"))

    def _failure(self, sender: Any, kw: dict[str, Any]) -> None:
        if not self._ours(sender) or (rec := self._active_recorder()) is None:
            return
        task_id = str(kw.get("task_id"))
        error = kw.get("exception")
        if not isinstance(error, BaseException):
            error = RuntimeError(f"Celery reported task {task_id} failed without an exception")
        step_id = self._steps.step_of(sender, task_id)
        if not self._steps.first_failure(step_id):
            return  # a repeat: Celery 5.x reports a hard time limit twice in the prefork parent
        running = self._steps.take(step_id)
        if running is not None:
            event = running[0]
        elif self._steps.ended_here(step_id):
            rec.flush_error(error)  # its step is recorded already (a rejected message)
            return
        else:
            event = self._unseen(rec, sender, getattr(sender, "request", None), task_id,
                                 TaskSteps.attempt_in(step_id), kw.get("args"), kw.get("kwargs"))
        rec.on_node_error(event, error)
        rec.flush_error(error)

    def _retry(self, sender: Any, kw: dict[str, Any]) -> None:
        if not self._ours(sender) or (rec := self._active_recorder()) is None:
            return
        reason = kw.get("reason")
        error: BaseException
        if "reason" not in kw:
            error = TaskInterrupted(CANCELLED_BY_WORKER)  # sent by Request._announce_cancelled
        elif isinstance(reason, BaseException):
            error = with_retry_cause(reason)
        else:
            error = Retry("the worker gave the task back to the broker to run again")
        event = self._ending(rec, sender, kw.get("request"), again=False)
        if event is not None:
            rec.on_node_error(event, error)

    def _revoked(self, sender: Any, kw: dict[str, Any]) -> None:
        if not self._ours(sender) or (rec := self._active_recorder()) is None:
            return
        request = kw.get("request")
        why = "expired" if kw.get("expired") else (
            f"terminated ({signal_name(kw.get('signum'))})" if kw.get("terminated") else "revoked")
        error = TaskRevokedError(f"task {getattr(request, 'id', None)} was revoked: {why}")
        event = self._ending(rec, sender, request, again=True)
        if event is not None:
            rec.on_node_error(event, error)

    def _process_init(self, sender: Any, kw: dict[str, Any]) -> None:
        # A pool process begins: drop whatever it inherited (os.register_at_fork does too).
        if os.getpid() != self._pid:
            self._fresh_process_state()

    def _process_shutdown(self, sender: Any, kw: dict[str, Any]) -> None:
        self._flush_at_exit()

    def _worker_shutdown(self, sender: Any, kw: dict[str, Any]) -> None:
        if getattr(sender, "app", None) is self.app:
            self._flush_at_exit()

    def _flush_at_exit(self) -> None:
        # Ends the implicit run: written in always mode, or rewritten if it wrote a file already;
        # a run with nothing since its last final trace writes no empty file.
        rec = self._recorder
        if rec is None or os.getpid() != self._pid or not rec.enabled:
            return
        if rec.has_unfinished_run(lock_timeout=_EXIT_LOCK_TIMEOUT_S) is not False:
            rec.flush_success()


def _after_fork_in_child() -> None:
    # Locks held by other threads at fork time would stay locked forever in the child.
    for handle in list(_live):
        handle._fresh_process_state()


os.register_at_fork(after_in_child=_after_fork_in_child)
