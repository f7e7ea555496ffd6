"""pytest plugin: record a test session as a tracekit run; inert unless ``pytest --tracekit``.

Registered through the ``pytest11`` entry point, so every pytest run loads this module. Without
``--tracekit`` it only adds the options: no hook of the recorder is registered and nothing is
written.

Mapping: the session is the run; each attempt of a test is one step (``node_id`` = the test's
node id, ``component_id`` = its module, ``operation`` = ``"test"``, ``payload`` = its parameters
from ``callspec.params`` with modules named (see ``_pytest_params``), ``attempt`` =
pytest-rerunfailures' execution count). Setup, call and teardown are phases of that one step,
not steps of their own: a failure in any phase fails the step and the phase is kept in
``error.details.phase`` (``setup`` for a fixture error). A step begins at setup, so a plugin that
reruns setup/call/teardown inside one ``runtest_protocol`` gives one step per attempt. Skipped
and xfailed tests end ``cancelled`` (their reason is the error message, the real pytest
exception is in the chain). The run ends ``failure`` when a test's last attempt or a collection
failed, ``cancelled`` when interrupted. The terminal summary says where the trace went.

Under pytest-xdist each worker records its own tests into its own file (``trace-gw0.json``, or
flow id ``pytest-gw0`` in history mode); the controller prints what each worker wrote and
records only tests that crashed a worker (``trace-controller.json``; see ``_pytest_xdist``).
The user's page is docs/adapters/pytest.md.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

from tracekit.adapters._pytest_items import attempt, component, payload, report_text, skip_reason, subtest
from tracekit.adapters._pytest_xdist import (
    CONTROLLER,
    WORKEROUTPUT_KEY,
    XdistControllerSummary,
    summary_line,
)

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from tracekit.config import TraceConfig
    from tracekit.observer import NodeEvent
    from tracekit.recorder import TraceRecorder

__all__ = [
    "CONTROLLER_PLUGIN_NAME",
    "DEFAULT_FLOW_ID",
    "OPERATION",
    "PLUGIN_NAME",
    "WORKEROUTPUT_KEY",
    "TestSkipped",
    "TestStopped",
    "TestsFailed",
    "TracekitPytestPlugin",
    "XdistControllerSummary",
    "pytest_addoption",
    "pytest_configure",
    "summary_line",
]

#: The flow id of a session unless ``--tracekit-flow`` names another.
DEFAULT_FLOW_ID: Final = "pytest"
#: The ``operation`` of every test step.
OPERATION: Final = "test"
#: The name the active plugin is registered under (``config.pluginmanager.get_plugin``).
PLUGIN_NAME: Final = "tracekit-recorder"
#: The name of the controller's summary plugin under pytest-xdist.
CONTROLLER_PLUGIN_NAME: Final = "tracekit-xdist-summary"
_XDIST_CONTROLLER: Final = "dsession"  # the plugin xdist registers in the controller process


class TestSkipped(Exception):
    """A skipped or xfailed test: a control-flow signal, so its step ends ``cancelled``.

    Its ``__cause__`` is the exception pytest raised (``Skipped``, or the xfailed assertion).
    """

    __test__ = False  # not a test class, whatever pytest's collection rules say


class TestStopped(Exception):
    """A test stopped by ``pytest.exit()``: a control-flow signal, its step ends ``cancelled``."""

    __test__ = False


class TestsFailed(Exception):
    """The session's summary when it failed; recorded in the trace's ``errors[]``."""

    __test__ = False


class _ReportedFailure(Exception):
    """A failed report without an exception (a strict XPASS): the report's text stands in."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tracekit")
    group.addoption(
        "--tracekit",
        action="store_true",
        default=False,
        help="record each test as a tracekit step and write a trace per the TRACEKIT_TRACE mode",
    )
    group.addoption(
        "--tracekit-flow",
        default=None,
        metavar="FLOW_ID",
        help=f"the trace's flow id (default: {DEFAULT_FLOW_ID!r})",
    )


@pytest.hookimpl(trylast=True)  # after xdist's own pytest_configure has registered its controller
def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("tracekit", False):
        return
    if _is_xdist_controller(config):
        # Tests run in the workers, each recording its own; the controller says where they went
        # and records the tests that crashed a worker. A bad TRACEKIT_* fails here, once.
        _trace_config(config, CONTROLLER)
        summary = XdistControllerSummary(lambda: _make_recorder(config, CONTROLLER))
        config.pluginmanager.register(summary, CONTROLLER_PLUGIN_NAME)
        return
    config.pluginmanager.register(TracekitPytestPlugin(config), PLUGIN_NAME)


def _is_xdist_controller(config: pytest.Config) -> bool:
    """Whether this process is pytest-xdist's controller (it runs no tests itself).

    xdist's own ``pytest_configure`` may not have run yet: both are ``trylast``, and their order
    follows the order the distributions are installed in, so xdist's options are read as well
    (the same test as its ``_is_distribution_mode``; a worker's ``dist`` is ``"no"``).
    """
    if config.pluginmanager.has_plugin(_XDIST_CONTROLLER):
        return True
    if hasattr(config, "workerinput") or config.getvalue("collectonly"):
        return False
    # Without xdist these options do not exist and the defaults answer.
    return config.getoption("dist", "no") != "no" and bool(config.getoption("tx", None))


def _worker_id(config: pytest.Config) -> str | None:
    workerinput = getattr(config, "workerinput", None)
    if isinstance(workerinput, dict):
        wid = workerinput.get("workerid")
        return str(wid) if wid else None
    return None


def _worker_path(path: Path, worker: str) -> Path:
    return path.with_name(f"{path.stem}-{worker}{path.suffix}")


def _trace_config(config: pytest.Config, worker: str | None) -> TraceConfig:
    """The environment's configuration, a worker's file named after it; a bad value is a usage error."""
    from tracekit.config import ConfigError, TraceConfig

    try:
        trace_config = TraceConfig.from_env()
    except ConfigError as err:
        raise pytest.UsageError(f"--tracekit: {err}") from None
    if worker is not None and trace_config.dir is None:
        trace_config = dataclasses.replace(trace_config, out=_worker_path(trace_config.out, worker))
    return trace_config


def _make_recorder(config: pytest.Config, worker: str | None = None) -> TraceRecorder:
    from tracekit.recorder import TraceRecorder
    from tracekit.trace.model import TraceContext

    worker = worker or _worker_id(config)
    flow = config.getoption("tracekit_flow", None) or DEFAULT_FLOW_ID
    if worker is not None:
        flow = f"{flow}-{worker}"
    context = TraceContext(
        pack_ref=config.rootpath.name or str(config.rootpath),
        flow_id=flow,
        flow_version=pytest.__version__,
        runner_version=f"pytest {pytest.__version__}",
    )
    return TraceRecorder(_trace_config(config, worker), context)


class _TestState:
    """What the phases of one attempt of a test reported, until its step ends."""

    __slots__ = ("error", "event", "last_context", "later_errors", "phase", "skip_phase", "skipped")

    def __init__(self, event: NodeEvent) -> None:
        self.event = event
        self.error: BaseException | None = None
        self.phase = ""
        self.skipped: BaseException | None = None
        self.skip_phase = ""
        self.later_errors: list[tuple[dict[str, str], BaseException]] = []
        self.last_context: dict[str, str] | None = None


class TracekitPytestPlugin:
    """The active plugin: one recorder per process, one run per session, one step per attempt.

    Threading contract: pytest calls these hooks on its main thread, one test at a time (each
    xdist worker is its own process with its own plugin and recorder). No hook raises into
    pytest: recording failures are logged on the ``tracekit`` logger by the recorder.
    """

    def __init__(self, config: pytest.Config) -> None:
        from tracekit.errors import register_control_flow

        register_control_flow(TestSkipped)  # our own types: no effect on other runners
        register_control_flow(TestStopped)
        self.config = config
        self.recorder = _make_recorder(config)
        self.failed: dict[str, None] = {}  # node ids whose last attempt failed, in failing order
        self.collection_errors: list[str] = []
        self.stopped = False  # Ctrl-C or pytest.exit() inside a test
        self.outcome: str | None = None  # how the run ended, once it has
        self._scope: AbstractContextManager[Any] | None = None
        self._current: _TestState | None = None

    # --- the session is the run ---------------------------------------------------------------

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        scope = self.recorder.run()
        scope.__enter__()
        self._scope = scope

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        scope, self._scope = self._scope, None
        if scope is None:
            return
        error: BaseException | None = None
        self.outcome = "success"
        # A failure outranks the interrupt that may follow it: the failure is what to look at.
        if self.failed or self.collection_errors or exitstatus == pytest.ExitCode.TESTS_FAILED:
            error, self.outcome = TestsFailed(self._summary()), "failure"
        elif self.stopped or exitstatus == pytest.ExitCode.INTERRUPTED:
            error, self.outcome = KeyboardInterrupt("the pytest session was interrupted"), "cancelled"
        elif exitstatus == pytest.ExitCode.INTERNAL_ERROR:
            error, self.outcome = TestsFailed("pytest stopped with an internal error"), "failure"
        scope.__exit__(None if error is None else type(error), error, None)
        workeroutput = getattr(self.config, "workeroutput", None)
        if isinstance(workeroutput, dict):  # an xdist worker: tell the controller what it wrote
            workeroutput[WORKEROUTPUT_KEY] = self.written()

    def written(self) -> dict[str, Any]:
        """What this process wrote: the trace's path (or None), the outcome, any write error."""
        recorder = self.recorder
        path = recorder.last_trace_path
        failure = recorder.last_flush_error
        return {
            "path": None if path is None else str(path),
            "outcome": self.outcome,
            "mode": recorder.config.mode.value,
            "write_error": None if failure is None else f"{type(failure).__name__}: {failure}",
            "pid": os.getpid(),
        }

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.write_line(summary_line(self.written()))

    def _summary(self) -> str:
        parts = []
        if self.failed:
            names = list(self.failed)
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            parts.append(f"{len(names)} test(s) failed: {shown}")
        if self.collection_errors:
            parts.append(f"{len(self.collection_errors)} collection error(s)")
        return "; ".join(parts) or "the pytest session failed"

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if not report.failed:
            return
        self.collection_errors.append(report.nodeid)
        self.recorder.emit_error(
            "runner",
            message=f"collecting {report.nodeid or 'the session'} failed",
            node_id=report.nodeid or None,
            context={"phase": "collect", "report": report_text(report)},
        )

    # --- each attempt of a test is a step -----------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Generator[
        None, object, object
    ]:
        try:
            return (yield)
        except BaseException as exc:  # an interrupt or pytest.exit: end the step, re-raise
            state = self._current
            if state is not None and state.error is None:
                state.error, state.phase = _stopped(exc), "call"
            self.stopped = True
            raise
        finally:
            self._end_current()

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, object, object]:
        # Setup begins every attempt: pytest's own run, and each rerun of a plugin such as
        # pytest-rerunfailures that repeats setup/call/teardown inside one runtest_protocol.
        __tracebackhide__ = True  # a fixture error's traceback shows the user's code, not ours
        self._end_current()
        self._begin(item)
        return (yield)

    def _begin(self, item: pytest.Item) -> None:
        from tracekit.observer import NodeEvent

        event = NodeEvent(
            node_id=item.nodeid,
            component_id=component(item),
            operation=OPERATION,
            payload=payload(item),
            attempt=attempt(item),
        )
        self._current = _TestState(event)
        self.recorder.on_node_start(event)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[
        None, pytest.TestReport, pytest.TestReport
    ]:
        report = yield
        state = self._current
        if state is not None and state.event.node_id == item.nodeid:
            self._note(state, call, report)
            if report.when == "teardown":
                self._end_current()  # the attempt is over; a rerun starts a new step
        return report

    def _note(self, state: _TestState, call: pytest.CallInfo[None], report: pytest.TestReport) -> None:
        excinfo = call.excinfo
        if report.failed:
            error: BaseException = (
                excinfo.value if excinfo is not None else _ReportedFailure(report_text(report))
            )
            if state.error is None:
                state.error, state.phase = error, report.when
            else:
                context: dict[str, str] = {"phase": str(report.when)}
                state.later_errors.append((context, error))
                state.last_context = context  # a subtest's report says which one, when logged
        elif report.skipped and state.skipped is None:
            reason = getattr(report, "wasxfail", None)
            text = f"xfail: {reason}" if reason is not None else skip_reason(report)
            skipped = TestSkipped(text)
            skipped.__cause__ = excinfo.value if excinfo is not None else None
            state.skipped, state.skip_phase = skipped, report.when

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # pytest's subtests make a plain report first (makereport, noted above), then log it
        # wrapped with the subtest's msg and kwargs: that is when we learn which subtest failed.
        state = self._current
        if state is None or state.last_context is None or report.nodeid != state.event.node_id:
            return
        if (sub := subtest(report)) is not None:
            state.last_context["subtest"] = sub
        state.last_context = None

    def _end_current(self) -> None:
        state, self._current = self._current, None
        if state is not None:
            self._end(state)

    def _end(self, state: _TestState) -> None:
        from tracekit.errors import is_control_flow

        recorder, event = self.recorder, state.event
        if state.error is not None:
            recorder.on_node_error(event, state.error, phase=state.phase)
            if not is_control_flow(state.error):
                self.failed[event.node_id] = None
        else:
            self.failed.pop(event.node_id, None)  # a rerun that passed: the test passed
            if state.skipped is not None:
                recorder.on_node_error(event, state.skipped, phase=state.skip_phase)
            else:
                recorder.on_node_end(event, None)
        for context, error in state.later_errors:
            # A teardown that fails after the test did, a second failed subtest: the step keeps
            # the first failure, these go to errors[] under the test's node id.
            recorder.emit_error("node", error, node_id=event.node_id, context=context)


def _stopped(exc: BaseException) -> BaseException:
    if isinstance(exc, pytest.exit.Exception):
        stopped = TestStopped(f"pytest.exit: {exc}")
        stopped.__cause__ = exc
        return stopped
    return exc
