"""LangChain / LangGraph: a callback handler that records every run as a tracekit step.

Pass it where LangChain takes callbacks and nothing else is needed::

    handler = TracekitCallbackHandler(recorder)
    graph.invoke(state, config={"callbacks": [handler]})

Mapping: each chain, graph node, tool, retriever and LLM / chat-model run is one step;
``step_id`` is ``str(run_id)`` and ``parent_step_id`` is ``str(parent_run_id)``, so a LangGraph
node's parent is the graph's root run. The root run (no parent) is a step too, and, unless
``manage_runs=False``, it is one tracekit run: it opens ``recorder.run()`` when it starts and
closes it when it ends, so the trace is flushed per the mode (a failed root run writes the
final ``failure`` trace). Root runs that overlap (``batch``, concurrent ``ainvoke``) share one
run, closed by the last of them with the first error any of them raised.

This module imports ``langchain_core`` at import time; ``import tracekit`` never does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from tracekit._guard import LogOnce
from tracekit.errors import register_control_flow
from tracekit.observer import NodeEvent

if TYPE_CHECKING:
    from langchain_core.documents import Document
    from langchain_core.messages import BaseMessage
    from langchain_core.outputs import LLMResult

    from tracekit.recorder import TraceRecorder

__all__ = [
    "COMPONENT_GRAPH",
    "COMPONENT_NODE",
    "COMPONENT_PREFIX",
    "TracekitCallbackHandler",
]

_log = logging.getLogger("tracekit")

#: component_id of a LangGraph node run and of the graph run itself (they have no serialized id).
COMPONENT_NODE: Final = "langgraph.node"
COMPONENT_GRAPH: Final = "langgraph.graph"
#: component_id prefix of other runs without a serialized id: ``langchain.<kind>``.
COMPONENT_PREFIX: Final = "langchain."
_RETRY_TAG: Final = "retry:attempt:"  # Runnable.with_retry tags attempts 2, 3, ... like this
_LANGGRAPH_NODE: Final = "langgraph_node"
_LANGGRAPH_TASK: Final = "langgraph_checkpoint_ns"  # same for every retry of one task


def _register_langgraph_control_flow() -> None:
    # An interrupt or a Command to a parent graph pauses/redirects the graph; it is not a failure.
    try:
        from langgraph.errors import GraphBubbleUp
    except ImportError:  # langchain-core without langgraph
        return
    register_control_flow(GraphBubbleUp)


def _attempt_from_tags(tags: Sequence[str] | None) -> int | None:
    for tag in tags or ():
        if tag.startswith(_RETRY_TAG):
            try:
                return max(1, int(tag[len(_RETRY_TAG):]))
            except ValueError:
                return None
    return None


def _serialized_name(serialized: Mapping[str, Any] | None) -> str | None:
    if not serialized:
        return None
    name = serialized.get("name")
    if isinstance(name, str) and name:
        return name
    ident = serialized.get("id")
    if isinstance(ident, list) and ident and isinstance(ident[-1], str):
        return ident[-1]
    return None


def _serialized_component(serialized: Mapping[str, Any] | None) -> str | None:
    ident = serialized.get("id") if serialized else None
    if isinstance(ident, list) and ident and all(isinstance(p, str) for p in ident):
        return ".".join(ident)
    return None


class TracekitCallbackHandler(BaseCallbackHandler):
    """Records LangChain / LangGraph runs as tracekit steps.

    Threading contract: LangChain calls a sync handler on the thread that runs the step (and,
    because ``run_inline`` is true, inline on the event loop for async runs, so ``ainvoke``
    keeps the order of events). Every method is thread-safe, cheap (one hash of the input or
    output) and never raises into LangChain; the only blocking work is the recorder's own
    flush at a run's first failure and at the end of a root run.

    ``manage_runs=False`` leaves runs to you (wrap the call in ``with recorder.run():``).
    ``include_llm=False`` skips LLM and chat-model runs.
    """

    raise_error: bool = False
    run_inline: bool = True

    def __init__(
        self,
        recorder: TraceRecorder,
        *,
        manage_runs: bool = True,
        include_llm: bool = True,
    ) -> None:
        super().__init__()
        self.recorder = recorder
        self.manage_runs = manage_runs
        self.include_llm = include_llm
        # Reentrant: a run's final flush publishes error events, and a subscriber may invoke a
        # runnable with this same handler on this thread.
        self._lock = threading.RLock()
        self._events: dict[UUID, tuple[NodeEvent, bool]] = {}  # run id -> (event, opened a run)
        # LangGraph retries a task as new runs under the same parent with the same task id.
        self._attempts: dict[UUID, dict[str, int]] = {}
        self._roots = 0
        self._root_error: BaseException | None = None
        self._scope: AbstractContextManager[Any] | None = None
        self._failures_logged = LogOnce()
        _register_langgraph_control_flow()

    @property
    def ignore_llm(self) -> bool:
        return not self.include_llm

    @property
    def ignore_chat_model(self) -> bool:
        return not self.include_llm

    # --- chains and graph nodes ---------------------------------------------------------------

    def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start("chain", serialized, inputs, run_id, parent_run_id, tags, metadata, kwargs)

    def on_chain_end(
        self,
        outputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._end(run_id, outputs)

    def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._error(run_id, error)

    # --- tools --------------------------------------------------------------------------------

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        # ``inputs`` is the structured input when the tool got one; ``input_str`` its string form.
        payload = inputs if inputs is not None else input_str
        self._start("tool", serialized, payload, run_id, parent_run_id, tags, metadata, kwargs)

    def on_tool_end(
        self,
        output: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._end(run_id, output)

    def on_tool_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._error(run_id, error)

    # --- retrievers ---------------------------------------------------------------------------

    def on_retriever_start(
        self,
        serialized: dict[str, Any],
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start("retriever", serialized, query, run_id, parent_run_id, tags, metadata, kwargs)

    def on_retriever_end(
        self,
        documents: Sequence[Document],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._end(run_id, documents)

    def on_retriever_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._error(run_id, error)

    # --- LLMs and chat models -----------------------------------------------------------------

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start("llm", serialized, prompts, run_id, parent_run_id, tags, metadata, kwargs)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start("chat_model", serialized, messages, run_id, parent_run_id, tags, metadata, kwargs)

    def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._end(run_id, response)

    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._error(run_id, error)

    # --- the mapping --------------------------------------------------------------------------

    def _start(
        self,
        kind: str,
        serialized: Mapping[str, Any] | None,
        payload: Any,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
        extra: Mapping[str, Any],
    ) -> None:
        if not self.recorder.enabled:
            return
        try:
            event = self._event(kind, serialized, payload, run_id, parent_run_id, tags, metadata, extra)
            root = parent_run_id is None and self.manage_runs
            with self._lock:
                self._events[run_id] = (event, root)
                if root:
                    self._enter_root()
            self.recorder.on_node_start(event)
        except Exception:
            self._failed(f"on_{kind}_start")

    def _event(
        self,
        kind: str,
        serialized: Mapping[str, Any] | None,
        payload: Any,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
        extra: Mapping[str, Any],
    ) -> NodeEvent:
        meta = metadata or {}
        name = extra.get("name")
        if not isinstance(name, str) or not name:
            name = _serialized_name(serialized)
        graph_node = meta.get(_LANGGRAPH_NODE)
        if name is None:
            name = graph_node if isinstance(graph_node, str) and graph_node else kind
        # Runs inside a node inherit its metadata; only the node's own run carries its name.
        is_node = isinstance(graph_node, str) and name == graph_node
        component = _serialized_component(serialized)
        if component is None:
            if is_node:
                component = COMPONENT_NODE
            elif parent_run_id is None and meta.get("ls_integration") == "langgraph":
                component = COMPONENT_GRAPH
            else:
                component = COMPONENT_PREFIX + kind
        attempt = _attempt_from_tags(tags)
        if attempt is None:
            attempt = 1
            task = meta.get(_LANGGRAPH_TASK)
            if is_node and parent_run_id is not None and isinstance(task, str):
                with self._lock:
                    seen = self._attempts.setdefault(parent_run_id, {})
                    attempt = seen.get(task, 0) + 1
                    seen[task] = attempt
        return NodeEvent(
            node_id=name,
            component_id=component,
            operation=kind,
            payload=payload,
            step_id=str(run_id),
            parent_step_id=None if parent_run_id is None else str(parent_run_id),
            attempt=attempt,
        )

    def _end(self, run_id: UUID, output: Any) -> None:
        if not self.recorder.enabled:
            return
        try:
            event, root = self._finish(run_id)
            self.recorder.on_node_end(event, output)
            if root:
                self._exit_root(None)
        except Exception:
            self._failed("on_end")

    def _error(self, run_id: UUID, error: BaseException) -> None:
        if not self.recorder.enabled:
            return
        try:
            event, root = self._finish(run_id)
            self.recorder.on_node_error(event, error)
            if root:
                self._exit_root(error)
        except Exception:
            self._failed("on_error")

    def _finish(self, run_id: UUID) -> tuple[NodeEvent, bool]:
        with self._lock:
            self._attempts.pop(run_id, None)
            found = self._events.pop(run_id, None)
        if found is None:
            # Started before the handler was attached: still pair by run id, never lose a failure.
            unknown = NodeEvent(node_id="unknown", component_id=COMPONENT_PREFIX + "unknown",
                                operation="unknown", step_id=str(run_id))
            return unknown, False
        return found

    # --- runs ---------------------------------------------------------------------------------

    def _enter_root(self) -> None:
        # Called under self._lock: a root that starts while the last one closes must not join a
        # run that is already being written.
        self._roots += 1
        if self._roots == 1:
            scope = self.recorder.run()
            scope.__enter__()
            self._scope = scope
            self._root_error = None

    def _exit_root(self, error: BaseException | None) -> None:
        with self._lock:
            if self._roots == 0:
                return
            self._roots -= 1
            if error is not None and self._root_error is None:
                self._root_error = error
            if self._roots > 0:
                return
            scope, self._scope = self._scope, None
            first = self._root_error
            self._root_error = None
            if scope is not None:
                try:
                    scope.__exit__(None if first is None else type(first), first, None)
                except Exception:
                    self._failed("run end")  # a strict recorder's write error: logged, kept

    def _failed(self, where: str) -> None:
        self._failures_logged.warn(
            where, "tracekit: LangChain callback %s failed; the run is unaffected", where
        )
