"""The task fates Celery's signals do not spell out, turned into errors a step can end with.

Celery reports a task that a ``BaseException`` unwound (billiard's ``SystemExit`` when the pool
process is sent SIGTERM at a hard time limit, a revoke with ``terminate=True`` or a cold
shutdown) only as ``task_postrun`` with ``state=None``; the worker's cancellation of a running
task as ``task_retry`` without a ``reason``; and a retry's real cause sits in ``Retry.exc``,
outside the exception's own chain when the task did not raise it first. This module says what
each of them means, so the adapter never records such a task as completed.

Threading contract: pure functions and read-only tables, safe from any thread.
"""

from __future__ import annotations

import signal
from typing import Any, Final

from billiard import common as _billiard_common
from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError

from tracekit.errors import register_control_flow, register_hint

__all__ = [
    "CANCELLED_BY_WORKER",
    "TaskInterrupted",
    "hard_time_limit",
    "interruption",
    "signal_name",
    "with_retry_cause",
]

#: Message of a task the worker cancelled while it ran (``task_retry`` sent without a reason).
CANCELLED_BY_WORKER: Final = (
    "the worker cancelled the task while it ran (a cold shutdown, or the broker connection was "
    "lost); Celery marks it for retry, so the broker delivers it again"
)
_LINKS: Final = 32  # links of a chain looked at before giving up (cycles are cut anyway)


class TaskInterrupted(BaseException):
    """The task did not finish: its pool process was stopped, or the worker cancelled it.

    A control-flow signal (its step ends ``cancelled``). ``signum`` is the signal the pool
    process received, when that is known; ``__cause__`` is the exception that unwound the task.
    """

    def __init__(self, message: str, signum: int | None = None) -> None:
        super().__init__(message)
        self.signum = signum
        self.hints = [
            "The task was stopped from outside before it finished: look in the worker's log (and the "
            "worker main process's trace) for a hard time limit, a revoke with terminate=True or a "
            "shutdown; with acks_late the broker delivers the task again.",
        ]


register_control_flow(TaskInterrupted)
register_hint(
    TimeLimitExceeded,
    "The task ran past its hard time limit (time_limit, task_time_limit) and its pool process was "
    "killed: make it faster or split it, raise the limit, or set a soft_time_limit below it so the "
    "task can stop cleanly.",
)
register_hint(
    SoftTimeLimitExceeded,
    "The task ran past its soft time limit (soft_time_limit, task_soft_time_limit): make it faster "
    "or split it, raise the limit, or catch SoftTimeLimitExceeded to save partial work.",
)
register_hint(
    WorkerLostError,
    "The pool process died while running the task (killed by the OOM killer or a signal, a crash "
    "in native code, os._exit): check the worker's memory limits and the system log.",
)


def signal_name(signum: object) -> str:
    """``SIGTERM`` for 15 (or ``Signals.SIGTERM``); ``signal N`` for a number with no name."""
    try:
        return signal.Signals(int(signum)).name  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return f"signal {signum}"


def _pool_signal(error: BaseException) -> int | None:
    """The signal behind billiard's ``SystemExit(-(256 - signum))``, or None for another exit."""
    if not isinstance(error, SystemExit):
        return None
    code = error.code
    if not isinstance(code, int) or isinstance(code, bool) or not -256 < code < 0:
        return None
    fired = getattr(_billiard_common, "terminate_handler_fired", None)  # billiard >= 4.3
    if callable(fired) and not fired():
        return None  # the task itself called sys.exit() with a negative code
    return 256 + code


def hard_time_limit(task: Any) -> float | None:
    """The hard time limit the worker applies to ``task``'s current request, if any."""
    limits = getattr(getattr(task, "request", None), "timelimit", None)
    limit = limits[0] if isinstance(limits, list | tuple) and limits else None
    if limit is None:
        limit = getattr(task, "time_limit", None)
    if limit is None:
        limit = getattr(getattr(getattr(task, "app", None), "conf", None), "task_time_limit", None)
    return float(limit) if isinstance(limit, int | float) and limit > 0 else None


def interruption(
    raised: BaseException | None, *, elapsed_s: float, hard_limit_s: float | None
) -> BaseException:
    """What a task whose ``task_postrun`` came with ``state=None`` ends with.

    Celery handles every ``Exception``; ``state=None`` means a ``BaseException`` is unwinding the
    task (``raised``, read from ``sys.exc_info()`` in the receiver). billiard's termination
    becomes a :class:`TaskInterrupted` naming the signal; any other exception is kept as raised
    (``SystemExit``/``KeyboardInterrupt`` end the step cancelled, the rest end it failed).
    """
    if raised is None:
        return TaskInterrupted("Celery sent task_postrun without a state: the task did not finish")
    signum = _pool_signal(raised)
    if signum is None:
        return raised
    limit = f" (its hard time limit is {hard_limit_s:g} s)" if hard_limit_s is not None else ""
    error = TaskInterrupted(
        f"the pool process received {signal_name(signum)} {elapsed_s:.2f} s into the task{limit}: a hard "
        "time limit, a revoke with terminate=True or a cold shutdown stopped it",
        signum,
    )
    error.__cause__ = raised  # its traceback shows the line the task was on
    return error


def _in_chain(error: BaseException, target: BaseException) -> bool:
    current: BaseException | None = error
    for _ in range(_LINKS):
        if current is None:
            return False
        if current is target:
            return True
        if current.__cause__ is not None:
            current = current.__cause__
        elif not current.__suppress_context__:
            current = current.__context__
        else:
            return False
    return False


def with_retry_cause(reason: BaseException) -> BaseException:
    """``reason`` (a ``Retry``) with ``Retry.exc`` in its chain, so codes and hints see the cause.

    ``raise self.retry(exc=ConnectionError(...))`` outside an ``except`` block leaves ``exc`` out
    of the Retry's ``__cause__``/``__context__``. Then a copy is returned whose ``__cause__`` is
    ``exc`` (Celery's own object is left as it is: its logs and result backend use it).
    """
    cause = getattr(reason, "exc", None)
    if not isinstance(cause, BaseException) or _in_chain(reason, cause):
        return reason
    try:
        kind = type(reason)
        linked = kind.__new__(kind)
        linked.args = reason.args
        linked.__dict__.update(vars(reason))
        linked.__traceback__ = reason.__traceback__
        linked.__cause__ = cause
    except Exception:
        return reason  # an exotic subclass (slots, a strict __new__): keep what Celery gave
    return linked
