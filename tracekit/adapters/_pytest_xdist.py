"""The pytest plugin under pytest-xdist: what each worker wrote, reported by the controller.

Each worker records the tests it runs into its own file (its own recorder, pid and flow id
``pytest-gwN``); the controller records nothing. When a worker's session finishes it puts what
it wrote in xdist's ``workeroutput`` (key :data:`WORKEROUTPUT_KEY`), which xdist sends to the
controller; the controller prints one ``tracekit:`` line per worker in the terminal summary.

Threading contract: pytest calls these hooks on its main thread.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["WORKEROUTPUT_KEY", "XdistControllerSummary", "summary_line"]

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


class XdistControllerSummary:
    """In the xdist controller: collect what each worker wrote and print it at the end.

    The workers record (the tests run there); the controller only reports their files, from
    the ``workeroutput`` each worker sends back when its session finishes.
    """

    def __init__(self) -> None:
        self.workers: dict[str, dict[str, Any] | None] = {}
        self.crashed: dict[str, str] = {}

    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        worker = str(getattr(getattr(node, "gateway", None), "id", "?"))
        output = getattr(node, "workeroutput", None)
        written = output.get(WORKEROUTPUT_KEY) if isinstance(output, dict) else None
        self.workers[worker] = written if isinstance(written, dict) else None
        if error is not None:
            self.crashed[worker] = str(error)

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


def _worker_order(worker: str) -> tuple[int, str]:
    digits = worker[2:] if worker.startswith("gw") else ""
    return (int(digits), worker) if digits.isdigit() else (1 << 30, worker)
