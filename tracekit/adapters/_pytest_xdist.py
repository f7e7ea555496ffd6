"""The pytest plugin under pytest-xdist: what each worker wrote, reported by the controller.

Each worker records the tests it runs into its own file (its own recorder, pid and flow id
``pytest-gwN``); the controller records only tests that crashed their worker. When a worker's
session finishes it puts what it wrote in xdist's ``workeroutput`` (key
:data:`WORKEROUTPUT_KEY`), which xdist sends to the controller; the controller prints one
``tracekit:`` line per worker in the terminal summary.

Threading contract: pytest calls these hooks on its main thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from tracekit.recorder import TraceRecorder

__all__ = ["CONTROLLER", "WORKEROUTPUT_KEY", "WorkerCrashed", "XdistControllerSummary", "summary_line"]

#: The "worker id" of the controller's own file and flow (``trace-controller.json``).
CONTROLLER: Final = "controller"

#: The key of a worker's ``workeroutput`` holding what it wrote (``TracekitPytestPlugin.written``).
WORKEROUTPUT_KEY: Final = "tracekit"


def summary_line(written: dict[str, Any], worker: str | None = None) -> str:
    """The terminal line saying where the trace went (``tracekit: ...``)."""
    who = f"tracekit: {worker}" if worker else "tracekit:"
    if written.get("write_error"):
        return f"{who} the trace could not be written: {written['write_error']}"
    if written.get("path"):
        return f"{who} {written.get('outcome') or 'in_progress'} trace written to {written['path']}"
    if written.get("mode") == "off":
        return f"{who} TRACEKIT_TRACE=off, nothing recorded"
    return f"{who} no trace written (no test failed; TRACEKIT_TRACE=always writes one for every run)"


class WorkerCrashed(Exception):
    """A worker process died while running a test (``os._exit``, a signal, a segfault, OOM)."""


class XdistControllerSummary:
    """In the xdist controller: what each worker wrote, and the tests that crashed a worker.

    The workers record the tests they run; the controller reports their files, from the
    ``workeroutput`` each worker sends back when its session finishes. A test that kills its
    worker is recorded by nobody there, so the controller records it: only then does it make a
    recorder (flow ``pytest-controller``, file ``trace-controller.json``) and give each crashed
    test a failed step (phase ``call``, duration unknown, payload ``{}``: the controller has
    neither) with a :class:`WorkerCrashed` error naming the worker.
    """

    def __init__(self, make_recorder: Callable[[], TraceRecorder]) -> None:
        self.workers: dict[str, dict[str, Any] | None] = {}
        self.crashed: dict[str, str] = {}
        self.crashed_tests: list[str] = []
        self.recorder: TraceRecorder | None = None
        self._make_recorder = make_recorder
        self._scope: AbstractContextManager[Any] | None = None
        self._outcome: str | None = None

    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        worker = _gateway_id(node)
        output = getattr(node, "workeroutput", None)
        written = output.get(WORKEROUTPUT_KEY) if isinstance(output, dict) else None
        self.workers[worker] = written if isinstance(written, dict) else None
        if error is not None:
            self.crashed[worker] = str(error)

    def pytest_runtest_logreport(self, report: Any) -> None:
        # xdist reports a test whose worker died with when="???" (dsession.handle_crashitem);
        # a plugin that reschedules it (pytest-rerunfailures) makes it "rerun", not failed.
        if report.when != "???" or not report.failed:
            return
        from tracekit.observer import NodeEvent

        if self.recorder is None:
            self.recorder = self._make_recorder()
            self._scope = self.recorder.run()
            self._scope.__enter__()
        nodeid = str(report.nodeid)
        event = NodeEvent(node_id=nodeid, component_id=nodeid.split("::", 1)[0], operation="test", payload={})
        error = WorkerCrashed(str(report.longrepr))
        self.recorder.on_node_start(event)
        self.recorder.on_node_error(event, error, phase="call")
        self.crashed_tests.append(nodeid)

    def pytest_sessionfinish(self) -> None:
        scope, self._scope = self._scope, None
        if scope is None:
            return
        shown = ", ".join(self.crashed_tests[:5]) + (", ..." if len(self.crashed_tests) > 5 else "")
        error = WorkerCrashed(f"{len(self.crashed_tests)} test(s) crashed their worker: {shown}")
        scope.__exit__(WorkerCrashed, error, None)
        self._outcome = "failure"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for worker in sorted(self.workers, key=_worker_order):
            written = self.workers[worker]
            if worker in self.crashed or written is None:
                why = self.crashed.get(worker, "it sent no report")
                terminalreporter.write_line(
                    f"tracekit: {worker} went down before its session finished ({why}); "
                    "a trace it wrote at a failure says in_progress"
                )
            else:
                terminalreporter.write_line(summary_line(written, worker))
        recorder = self.recorder
        if recorder is not None:
            path, failure = recorder.last_trace_path, recorder.last_flush_error
            written_here = {
                "path": None if path is None else str(path),
                "outcome": self._outcome,
                "mode": recorder.config.mode.value,
                "write_error": None if failure is None else f"{type(failure).__name__}: {failure}",
            }
            terminalreporter.write_line(
                summary_line(written_here, "controller") + f" ({len(self.crashed_tests)} crashed test(s))"
            )


def _gateway_id(node: Any) -> str:
    return str(getattr(getattr(node, "gateway", None), "id", "?"))


def _worker_order(worker: str) -> tuple[int, str]:
    digits = worker[2:] if worker.startswith("gw") else ""
    return (int(digits), worker) if digits.isdigit() else (1 << 30, worker)
