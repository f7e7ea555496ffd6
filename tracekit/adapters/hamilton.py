"""Apache Hamilton: a lifecycle adapter that records every node execution as a tracekit step.

Add it to the driver and nothing else is needed::

    dr = driver.Builder().with_modules(features).with_adapters(TracekitHook(recorder)).build()

Mapping: ``node_id`` is the node's name; ``component_id`` is ``module.qualname`` of the function
that defines it (the node's ``module`` tag plus its name when Hamilton has no function for it);
the payload is the keyword arguments Hamilton passes to the node and the output is its result;
``step_id`` is ``hamilton:<run_id>:<task_id>:<node>``, stable for one node of one run (and task,
under task-based execution). Each graph execution is one tracekit run (unless
``manage_runs=False``): it begins before the graph executes and ends after it, with ``success``
or ``failure`` and the error the driver raised, flushed per the mode.

Hamilton gives no parent links between nodes, so ``parent_step_id`` is the enclosing
``recorder.step()`` if the driver runs inside one. It cannot see a node's retries or the time a
task waits in an executor's queue, and the async driver's hooks are not covered.

This module imports ``hamilton`` at import time; ``import tracekit`` never does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Final

from hamilton.lifecycle import GraphExecutionHook, NodeExecutionHook

from tracekit._guard import LogOnce
from tracekit.observer import NodeEvent
from tracekit.recorder.replayable import mark_event

if TYPE_CHECKING:
    from tracekit.recorder import TraceRecorder

__all__ = ["COMPONENT_FALLBACK", "OPERATION", "STEP_ID_PREFIX", "TracekitHook"]

_log = logging.getLogger("tracekit")

#: The ``operation`` of every node step.
OPERATION: Final = "execute"
#: component_id of a node whose defining function and module are unknown.
COMPONENT_FALLBACK: Final = "hamilton.node"
#: Prefix of every step id this adapter gives (``hamilton:<run_id>:<task_id>:<node>``).
STEP_ID_PREFIX: Final = "hamilton:"


def _step_id(run_id: str, node_name: str, task_id: str | None) -> str:
    return f"{STEP_ID_PREFIX}{run_id}:{task_id or ''}:{node_name}"


def _function_component(fns: Any) -> str | None:
    if not fns:
        return None
    fn = fns[0]
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str):
        return f"{module}.{qualname}"
    return None


#: Attributes Hamilton's function modifiers (@parameterize, @extract_columns, @does, @check_output,
#: ...) set on a function: a node made from such a function is not the plain function call.
_MODIFIED: Final = ("resolve", "generate", "inject", "expand", "transform", "decorate_nodes", "dynamic")


def _replayable(graph: Any) -> dict[str, Any]:
    """Node name -> its function, for plain nodes only (one undecorated function of the node's
    name), where calling the function with the node's kwargs is what Hamilton did."""
    found: dict[str, Any] = {}
    for node in getattr(graph, "nodes", ()) or ():
        fns: tuple[Any, ...] = tuple(getattr(node, "originating_functions", None) or ())
        name = getattr(node, "name", None)
        if (len(fns) == 1 and isinstance(name, str) and getattr(fns[0], "__name__", None) == name
                and not getattr(node, "is_external_input", False)
                and not any(hasattr(fns[0], attr) for attr in _MODIFIED)):
            found[name] = fns[0]
    return found


def _components(graph: Any) -> dict[str, str]:
    """Node name -> ``module.qualname`` of its defining function, for every node of ``graph``."""
    found: dict[str, str] = {}
    for node in getattr(graph, "nodes", ()) or ():
        component = _function_component(getattr(node, "originating_functions", None))
        name = getattr(node, "name", None)
        if component is not None and isinstance(name, str):
            found[name] = component
    return found


class TracekitHook(NodeExecutionHook, GraphExecutionHook):  # type: ignore[misc]
    """Records each Hamilton node execution as a step and each graph execution as a run.

    Threading contract: Hamilton calls the node hooks on the thread (or executor worker) that
    runs the node, possibly many at once; steps are paired by their explicit ``step_id``, so
    concurrent nodes never steal each other's ends. Graph executions that overlap on one recorder
    share one run, closed by the last of them with the first error any of them raised. No method
    raises into Hamilton (a hook that raises would fail the node): a recording failure is logged
    once on the ``tracekit`` logger.
    """

    def __init__(self, recorder: TraceRecorder, *, manage_runs: bool = True) -> None:
        self.recorder = recorder
        self.manage_runs = manage_runs
        self._lock = threading.Lock()
        self._components: dict[str, dict[str, str]] = {}  # Hamilton run id -> node -> component
        self._callables: dict[str, dict[str, Any]] = {}  # run id -> node -> function (capture on)
        self._graphs = 0
        self._first_error: BaseException | None = None
        self._scope: AbstractContextManager[Any] | None = None
        self._failures_logged = LogOnce()

    # --- graph executions are runs ------------------------------------------------------------

    def run_before_graph_execution(
        self,
        *,
        graph: Any,
        final_vars: list[str],
        inputs: dict[str, Any],
        overrides: dict[str, Any],
        execution_path: Collection[str],
        run_id: str,
        **future_kwargs: Any,
    ) -> None:
        if not self.recorder.enabled:
            return
        try:
            components = _components(graph)
            with self._lock:
                self._components[run_id] = components
                if getattr(self.recorder, "_capture", False):
                    self._callables[run_id] = _replayable(graph)
                if self.manage_runs:
                    self._graphs += 1
                    if self._graphs == 1:
                        scope = self.recorder.run()
                        scope.__enter__()
                        self._scope = scope
                        self._first_error = None
        except Exception:
            self._failed("run_before_graph_execution")

    def run_after_graph_execution(
        self,
        *,
        graph: Any,
        success: bool,
        error: Exception | None,
        results: dict[str, Any] | None,
        run_id: str,
        **future_kwargs: Any,
    ) -> None:
        if not self.recorder.enabled:
            return
        try:
            with self._lock:
                self._components.pop(run_id, None)
                self._callables.pop(run_id, None)
                if not self.manage_runs or self._graphs == 0:
                    return
                self._graphs -= 1
                if error is not None and self._first_error is None:
                    self._first_error = error
                if self._graphs > 0:
                    return
                scope, self._scope = self._scope, None
                first, self._first_error = self._first_error, None
                if scope is not None:
                    # Ends the run: success, or failure with the error (flush_error semantics).
                    scope.__exit__(None if first is None else type(first), first, None)
        except Exception:
            self._failed("run_after_graph_execution")

    # --- node executions are steps ------------------------------------------------------------

    def _component(self, run_id: str, node_name: str, node_tags: Mapping[str, Any] | None) -> str:
        component = self._components.get(run_id, {}).get(node_name)
        if component is not None:
            return component
        module = (node_tags or {}).get("module")
        return f"{module}.{node_name}" if isinstance(module, str) and module else COMPONENT_FALLBACK

    def run_before_node_execution(
        self,
        *,
        node_name: str,
        node_tags: dict[str, Any],
        node_kwargs: dict[str, Any],
        node_return_type: type,
        task_id: str | None,
        run_id: str,
        node_input_types: dict[str, Any],
        **future_kwargs: Any,
    ) -> None:
        if not self.recorder.enabled:
            return
        try:
            event = self._event(run_id, node_name, node_tags, node_kwargs, task_id)
            self.recorder.on_node_start(event)
            func = self._callables.get(run_id, {}).get(node_name)
            if func is not None:
                mark_event(self.recorder, event, func)
        except Exception:
            self._failed("run_before_node_execution")

    def run_after_node_execution(
        self,
        *,
        node_name: str,
        node_tags: dict[str, Any],
        node_kwargs: dict[str, Any],
        node_return_type: type,
        result: Any,
        error: Exception | None,
        success: bool,
        task_id: str | None,
        run_id: str,
        **future_kwargs: Any,
    ) -> None:
        if not self.recorder.enabled:
            return
        try:
            # The recorder pairs by step_id; the other fields only matter if the start was missed.
            event = self._event(run_id, node_name, node_tags, node_kwargs, task_id)
            if success or error is None:
                self.recorder.on_node_end(event, result)
            else:
                self.recorder.on_node_error(event, error)
        except Exception:
            self._failed("run_after_node_execution")

    def _event(
        self, run_id: str, node_name: str, node_tags: dict[str, Any], node_kwargs: dict[str, Any],
        task_id: str | None,
    ) -> NodeEvent:
        return NodeEvent(
            node_id=node_name,
            component_id=self._component(run_id, node_name, node_tags),
            operation=OPERATION,
            payload=dict(node_kwargs),
            step_id=_step_id(run_id, node_name, task_id),
        )

    def _failed(self, where: str) -> None:
        self._failures_logged.warn(where, "tracekit: Hamilton hook %s failed; the run is unaffected", where)
