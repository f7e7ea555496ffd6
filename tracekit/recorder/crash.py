"""Opt-in crash handling: flush recorders on an unhandled exception and at interpreter exit.

``install_crash_handler()`` chains onto ``sys.excepthook`` and ``threading.excepthook`` (the
previous hooks still run, so tracebacks print and exit codes are unchanged) and registers an
``atexit`` function. A recorder is flushed only when its current run is unfinished: a ``run()``
block still open, steps or errors recorded since the run began, or an intermediate trace already
written. A run that a ``run()`` block already ended is never rewritten, so a crash after it cannot
replace a good trace with an empty one.

Optionally (``signals=(signal.SIGTERM,)``) it also catches termination signals, as container
orchestrators and process managers send them before killing a worker: each unfinished run is
written ``cancelled`` (whatever the mode: the process is going away mid-run), then the signal is
passed to the previous handler, or delivered again with the default action, so the process ends
exactly as it would have. SIGKILL cannot be caught; the last trace written is what remains.

Threading contract: the hooks may fire on any thread; each flush takes the recorder's own flush
lock, and nothing here ever raises (failures are logged on the ``tracekit`` logger).
"""

from __future__ import annotations

import atexit
import gc
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Final

from tracekit.errors import is_control_flow, register_control_flow

if TYPE_CHECKING:
    from tracekit.recorder.core import TraceRecorder

__all__ = ["CrashHandler", "TerminatedBySignal", "install_crash_handler"]

_log = logging.getLogger("tracekit")

#: How long a hook waits for a recorder's lock held by another thread before skipping it.
LOCK_TIMEOUT_S: Final = 2.0

#: How long a signal handler waits for a recorder's lock: the lock may be held by the very frame
#: the signal interrupted, which cannot release it until the handler returns.
SIGNAL_LOCK_TIMEOUT_S: Final = 0.5


class TerminatedBySignal(BaseException):
    """Recorded on the steps in flight when a termination signal ended the process."""

    def __init__(self, signum: int) -> None:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        super().__init__(f"the process received {name} and is terminating")
        self.signum = signum
        self.hints = ["The process was stopped from outside (a deploy, a scale-down, a timeout of "
                      "the process manager): look at what sent the signal."]


register_control_flow(TerminatedBySignal)

_SysHook = Callable[[type[BaseException], BaseException, TracebackType | None], object]
_ThreadHook = Callable[[threading.ExceptHookArgs], object]


def _pending(recorder: TraceRecorder) -> bool:
    """Whether ``recorder``'s current run has anything not yet written in a final trace."""
    return recorder.enabled and recorder.has_unfinished_run(lock_timeout=LOCK_TIMEOUT_S) is True


class CrashHandler:
    """What :func:`install_crash_handler` installed; :meth:`uninstall` takes it back out.

    ``failure`` is the first unhandled (non control-flow) exception seen, if any.
    """

    def __init__(self, recorders: tuple[TraceRecorder, ...] | None, signals: Iterable[int] = ()) -> None:
        self._recorders = recorders
        self._active = True
        self.failure: BaseException | None = None
        self._prev_sys: _SysHook = sys.excepthook
        self._prev_thread: _ThreadHook = threading.excepthook
        self._prev_signals: dict[int, Any] = {}
        for signum in signals:  # signal.signal raises ValueError off the main thread: let it
            self._prev_signals[signum] = signal.signal(signum, self._signal_hook)
        sys.excepthook = self._sys_hook
        threading.excepthook = self._thread_hook
        atexit.register(self._at_exit)

    @property
    def installed(self) -> bool:
        return self._active

    def _targets(self, *, collect: bool = False) -> list[TraceRecorder]:
        if self._recorders is not None:
            return list(self._recorders)
        from tracekit.recorder.core import LIVE_RECORDERS

        if collect:
            # A recorder nobody holds any more can still be in LIVE_RECORDERS until the garbage
            # collector runs (its compiled callbacks hold it, as stored bound methods would):
            # collect first, so only recorders still in use are flushed. Not from a signal
            # handler, which may interrupt any code.
            gc.collect()
        return list(LIVE_RECORDERS)

    # --- hooks --------------------------------------------------------------------------------

    def _sys_hook(self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if self._active:
            self._unhandled(exc)
        self._prev_sys(exc_type, exc, tb)

    def _thread_hook(self, args: threading.ExceptHookArgs) -> None:
        # A thread ending with SystemExit is a normal thread exit (the default hook is silent too).
        if self._active and args.exc_value is not None and not isinstance(args.exc_value, SystemExit):
            self._unhandled(args.exc_value)
        self._prev_thread(args)

    def _unhandled(self, exc: BaseException) -> None:
        cancelled = is_control_flow(exc)
        if not cancelled and self.failure is None:
            self.failure = exc
        for recorder in self._targets():
            self._flush(recorder, exc, cancelled)

    def _signal_hook(self, signum: int, frame: FrameType | None) -> None:
        if self._active:
            exc = TerminatedBySignal(signum)
            for recorder in self._targets():
                self._flush_terminated(recorder, exc)
        previous = self._prev_signals.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            # End the process as it would have ended without us: the default action.
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    def _flush_terminated(self, recorder: TraceRecorder, exc: TerminatedBySignal) -> None:
        # The signal may have interrupted this recorder's own bookkeeping on this thread;
        # then its lock cannot be had, and writing now would deadlock: skip it.
        try:
            pending = recorder.enabled and recorder.has_unfinished_run(
                lock_timeout=SIGNAL_LOCK_TIMEOUT_S, busy_means=None
            )
            if pending is None:
                _log.warning("tracekit: %r was busy when %s arrived; its trace was not rewritten",
                             recorder, exc.signum)
            elif pending:
                recorder.end_run_now("cancelled", exc, force=True)
        except Exception:
            _log.warning("tracekit: could not flush %r on signal %s", recorder, exc.signum,
                         exc_info=True)

    def _at_exit(self) -> None:
        if not self._active:
            return
        for recorder in self._targets(collect=True):
            self._flush(recorder, self.failure, False)

    def _flush(self, recorder: TraceRecorder, exc: BaseException | None, cancelled: bool) -> None:
        try:
            if not _pending(recorder):
                return
            if cancelled and exc is not None:
                recorder.end_run_now("cancelled", exc)
            elif exc is not None:
                recorder.flush_error(exc)
            else:
                recorder.flush_buffer()  # a normal exit mid-run: the current state, in_progress
        except Exception:
            _log.warning("tracekit: crash handler could not flush %r", recorder, exc_info=True)

    # --- removal ------------------------------------------------------------------------------

    def uninstall(self) -> None:
        """Restore the previous hooks (idempotent).

        If another hook was installed on top of ours since, ours stays in the chain but only
        passes calls on, so that other hook keeps working.
        """
        if not self._active:
            return
        self._active = False
        if sys.excepthook == self._sys_hook:
            sys.excepthook = self._prev_sys
        if threading.excepthook == self._thread_hook:
            threading.excepthook = self._prev_thread
        atexit.unregister(self._at_exit)
        for signum, previous in self._prev_signals.items():
            try:
                if signal.getsignal(signum) == self._signal_hook:
                    signal.signal(signum, previous)
            except (ValueError, OSError):  # not the main thread: leave it, it only passes on
                pass


def install_crash_handler(*recorders: TraceRecorder, signals: Iterable[int] = ()) -> CrashHandler:
    """Flush recorders when the program dies of an unhandled exception or exits mid-run.

    ``recorders``: the recorders to flush; none given means every live recorder at the time of
    the crash. On an unhandled exception (main thread or any other) each recorder with an
    unfinished run writes its trace as a failure (``cancelled`` for an interrupt); at exit, a
    run still unfinished is written as a failure if an unhandled exception was seen, else with
    its current state (``in_progress``). ``signals`` (e.g. ``(signal.SIGTERM,)``; call from the
    main thread) also writes each unfinished run ``cancelled`` when one arrives, then lets the
    signal end the process as before. Returns a handle whose ``uninstall()`` undoes it all.
    """
    from tracekit.recorder.core import TraceRecorder

    for r in recorders:
        if not isinstance(r, TraceRecorder):
            raise TypeError(
                f"install_crash_handler(): expected TraceRecorder instances, got {type(r).__name__}"
            )
    return CrashHandler(tuple(recorders) if recorders else None, tuple(signals))
