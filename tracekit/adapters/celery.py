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
A retry ends its attempt ``failed`` with code ``retry`` (the attempt did raise); a revoked or
ignored task ends ``cancelled``.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

from tracekit.config import TraceConfig
from tracekit.errors import register_code, register_control_flow
from tracekit.observer import NodeEvent
from tracekit.recorder import TraceRecorder
from tracekit.trace.model import TraceContext

try:
    import celery
    from celery import signals as _signals
    from celery import states as _states
    from celery.exceptions import Ignore, Retry, TaskRevokedError
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
    "instrument",
]

_log = logging.getLogger("tracekit")

#: The ``operation`` of every task step.
OPERATION: Final = "task"
#: ``error.code`` of an attempt that ended because the task asked to be retried.
RETRY_CODE: Final = "retry"
#: Between the task id and the attempt number in the step id of a retry (``<id>#2``).
ATTEMPT_SEPARATOR: Final = "#"
#: ``flow.version`` when no ``context`` is given: a worker serves tasks, not one versioned flow.
DEFAULT_FLOW_VERSION: Final = "unversioned"
# Task ids remembered per process for parent links and for signals that arrive after the end.
_REMEMBERED_TASKS: Final = 1024

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
    runs many at once); their shared state is guarded by a lock, they never block on I/O except
    to write a trace at a failure, and they never raise into the worker (a failure of tracekit
    itself is logged once per signal on the ``tracekit`` logger and counted in
    :attr:`internal_errors`). :attr:`recorder` and :meth:`disconnect` may be called from any
    thread.
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
        self._open: dict[str, NodeEvent] = {}  # step id -> event, tasks running here now
        self._latest: OrderedDict[str, str] = OrderedDict()  # task id -> its latest step id here
        self._ended: OrderedDict[str, None] = OrderedDict()  # step ids that ended here lately

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

    # --- bookkeeping --------------------------------------------------------------------------

    def _event(self, task: Any, task_id: str, attempt: int, args: Any, kwargs: Any,
               parent_id: str | None) -> NodeEvent:
        step_id = _step_id(task_id, attempt)
        with self._lock:
            parent = self._latest.get(parent_id, parent_id) if parent_id else None
            _remember(self._latest, task_id, step_id)
        return NodeEvent(
            node_id=str(getattr(task, "name", None) or type(task).__name__),
            component_id=self._component(task),
            operation=OPERATION,
            payload={"args": list(args or ()), "kwargs": dict(kwargs or {})},
            step_id=step_id,
            parent_step_id=parent,
            attempt=attempt,
        )

    def _component(self, task: Any) -> str:
        module = getattr(task, "__module__", None)
        if isinstance(module, str) and module and module != "__main__":
            return module
        return str(self.app.main or "celery")

    def _take(self, step_id: str) -> NodeEvent | None:
        with self._lock:
            event = self._open.pop(step_id, None)
            if event is not None:
                _remember(self._ended, step_id, None)
            return event

    def _ended_here(self, step_id: str) -> bool:
        with self._lock:
            return step_id in self._ended

    def _step_of(self, task: Any, task_id: str) -> str:
        # The running request names the attempt; a signal sent from outside it (the prefork
        # parent after a time limit) falls back to the latest attempt this process saw.
        req = getattr(task, "request", None)
        if req is not None and getattr(req, "id", None) == task_id:
            return _step_id(task_id, _attempt(req))
        with self._lock:
            return self._latest.get(task_id, task_id)

    def _unseen(self, rec: TraceRecorder, task: Any, request: Any, task_id: str, attempt: int,
                args: Any, kwargs: Any) -> NodeEvent:
        """A task that ends here without having started here: a step that starts now."""
        event = self._event(task, task_id, attempt, args, kwargs,
                            getattr(request, "parent_id", None))
        rec.on_node_start(event)
        with self._lock:
            _remember(self._ended, _step_id(task_id, attempt), None)
        return event

    # --- signal receivers (each runs inside _guarded) -----------------------------------------

    def _prerun(self, sender: Any, kw: dict[str, Any]) -> None:
        task = kw.get("task", sender)
        if not self._ours(task) or (rec := self._active_recorder()) is None:
            return
        task_id = str(kw.get("task_id"))
        req = task.request
        event = self._event(task, task_id, _attempt(req), kw.get("args"), kw.get("kwargs"),
                            getattr(req, "parent_id", None))
        with self._lock:
            self._open[str(event.step_id)] = event
        rec.on_node_start(event)

    def _postrun(self, sender: Any, kw: dict[str, Any]) -> None:
        task = kw.get("task", sender)
        if not self._ours(task) or (rec := self._active_recorder()) is None:
            return
        event = self._take(self._step_of(task, str(kw.get("task_id"))))
        if event is None:
            return  # already ended by task_failure or task_retry
        retval = kw.get("retval")
        if kw.get("state") in (None, _states.SUCCESS) or not isinstance(retval, BaseException):
            rec.on_node_end(event, retval)
        else:
            rec.on_node_error(event, retval)  # ignored (cancelled) or rejected (failed)

    def _failure(self, sender: Any, kw: dict[str, Any]) -> None:
        if not self._ours(sender) or (rec := self._active_recorder()) is None:
            return
        task_id = str(kw.get("task_id"))
        error = kw.get("exception")
        if not isinstance(error, BaseException):
            error = RuntimeError(f"Celery reported task {task_id} failed without an exception")
        step_id = self._step_of(sender, task_id)
        event = self._take(step_id)
        if event is None:
            if self._ended_here(step_id):
                rec.flush_error(error)  # its step is recorded already (a rejected message)
                return
            attempt = _attempt_of_step(step_id)
            event = self._unseen(rec, sender, getattr(sender, "request", None), task_id, attempt,
                                 kw.get("args"), kw.get("kwargs"))
        rec.on_node_error(event, error)
        rec.flush_error(error)

    def _retry(self, sender: Any, kw: dict[str, Any]) -> None:
        if not self._ours(sender) or (rec := self._active_recorder()) is None:
            return
        request = kw.get("request")
        task_id = str(getattr(request, "id", None))
        attempt = _attempt(request)
        reason = kw.get("reason")
        if not isinstance(reason, BaseException):
            reason = Retry("the worker gave the task back to the broker to run again")
        event = self._take(_step_id(task_id, attempt))
        if event is None:
            if self._ended_here(_step_id(task_id, attempt)):
                return
            event = self._unseen(rec, sender, request, task_id, attempt,
                                 getattr(request, "args", None), getattr(request, "kwargs", None))
        rec.on_node_error(event, reason)

    def _revoked(self, sender: Any, kw: dict[str, Any]) -> None:
        if not self._ours(sender) or (rec := self._active_recorder()) is None:
            return
        request = kw.get("request")
        task_id = str(getattr(request, "id", None))
        attempt = _attempt(request)
        why = "expired" if kw.get("expired") else (
            f"terminated (signal {kw.get('signum')})" if kw.get("terminated") else "revoked")
        error = TaskRevokedError(f"task {task_id} was revoked: {why}")
        event = self._take(_step_id(task_id, attempt))
        if event is None:
            event = self._unseen(rec, sender, request, task_id, attempt,
                                 getattr(request, "args", None), getattr(request, "kwargs", None))
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
        # Ends the implicit run: written in always mode, or rewritten if it wrote a file already.
        rec = self._recorder
        if rec is not None and os.getpid() == self._pid:
            rec.flush_success()


def _attempt(request: Any) -> int:
    retries = getattr(request, "retries", None)
    return retries + 1 if isinstance(retries, int) and retries >= 0 else 1


def _step_id(task_id: str, attempt: int) -> str:
    return task_id if attempt <= 1 else f"{task_id}{ATTEMPT_SEPARATOR}{attempt}"


def _attempt_of_step(step_id: str) -> int:
    _, sep, tail = step_id.rpartition(ATTEMPT_SEPARATOR)
    return int(tail) if sep and tail.isdigit() else 1


def _remember(table: OrderedDict[str, Any], key: str, value: Any) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > _REMEMBERED_TASKS:
        table.popitem(last=False)


def _after_fork_in_child() -> None:
    # Locks held by other threads at fork time would stay locked forever in the child.
    for handle in list(_live):
        handle._fresh_process_state()


os.register_at_fork(after_in_child=_after_fork_in_child)
