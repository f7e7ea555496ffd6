"""The LangChain / LangGraph adapter against the real libraries: graphs, tools, retries, async."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, TypedDict
from uuid import uuid4

import pytest

pytest.importorskip("langgraph")  # the [langchain] extra; CI installs it

from _support import load, make
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy, interrupt

from tracekit import NodeEvent, TraceContext
from tracekit.adapters.langchain import COMPONENT_GRAPH, COMPONENT_NODE, TracekitCallbackHandler
from tracekit.capture.hashing import hash_value


class State(TypedDict):
    x: int
    log: list[str]


class PriceMissing(KeyError):
    """The third node's failure: a domain error with a cause."""




def by_node(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["node_id"]: s for s in doc["steps"]}


def three_node_graph(seen: dict[str, Any], *, fail: bool = True) -> Any:
    """load -> enrich -> price; ``price`` raises. Each node keeps the state it really got."""

    def load_node(state: State) -> dict[str, Any]:
        seen["load"] = state
        return {"x": state["x"] + 1, "log": [*state["log"], "load"]}

    def enrich(state: State) -> dict[str, Any]:
        seen["enrich"] = state
        out = {"x": state["x"] * 10, "log": [*state["log"], "enrich"]}
        seen["enrich_out"] = out
        return out

    def price(state: State) -> dict[str, Any]:
        seen["price"] = state
        if fail:
            try:
                {}["sku-42"]
            except KeyError as err:
                raise PriceMissing(f"no price for x={state['x']}") from err
        return {"log": [*state["log"], "price"]}

    graph = StateGraph(State)
    graph.add_node("load", load_node)
    graph.add_node("enrich", enrich)
    graph.add_node("price", price)
    graph.add_edge(START, "load")
    graph.add_edge("load", "enrich")
    graph.add_edge("enrich", "price")
    graph.add_edge("price", END)
    return graph.compile()


def assert_failed_graph_trace(doc: dict[str, Any], seen: dict[str, Any]) -> None:
    assert doc["run"]["outcome"] == "failure"
    steps = doc["steps"]
    assert [s["node_id"] for s in steps] == ["load", "enrich", "price", "LangGraph"]
    root = steps[-1]
    assert root["parent_step_id"] is None
    assert root["component_id"] == COMPONENT_GRAPH
    assert root["status"] == "failed"
    for step in steps[:3]:
        assert step["parent_step_id"] == root["step_id"]
        assert step["component_id"] == COMPONENT_NODE
        assert step["operation"] == "chain"
        assert step["attempt"] == 1
    load_step, enrich_step, price_step = steps[:3]
    assert [load_step["status"], enrich_step["status"]] == ["completed", "completed"]
    assert load_step["input_hash"] == hash_value(seen["load"])
    assert enrich_step["input_hash"] == hash_value(seen["enrich"])
    assert enrich_step["output_hash"] == hash_value(seen["enrich_out"])
    # The failing step: its input is exactly the state the node received.
    assert price_step["status"] == "failed"
    assert price_step["input_hash"] == hash_value(seen["price"])
    assert seen["price"] == {"x": 20, "log": ["load", "enrich"]}
    assert "output_hash" not in price_step
    error = price_step["error"]
    assert error["code"] == "not_found"
    assert error["message"] == repr("no price for x=20")
    assert error["details"]["type"].endswith("test_adapter_langchain.PriceMissing")
    chain = error["details"]["chain"]
    assert [link["relation"] for link in chain] == ["raised", "cause"]
    assert chain[1]["type"] == "KeyError"
    assert "raise PriceMissing" in error["details"]["traceback"]
    # The root carries the same error; the envelope does not repeat it as a flow error.
    assert root["error"]["message"] == error["message"]
    assert doc["errors"] == []


def test_failing_stategraph_writes_trace_with_node_inputs_order_and_parents(
    context: TraceContext,
) -> None:
    recorder = make(context)
    seen: dict[str, Any] = {}
    app = three_node_graph(seen)
    with pytest.raises(PriceMissing):
        app.invoke({"x": 1, "log": []}, config={"callbacks": [TracekitCallbackHandler(recorder)]})
    assert_failed_graph_trace(load(), seen)


def test_async_ainvoke_records_the_same_trace(context: TraceContext) -> None:
    recorder = make(context)
    seen: dict[str, Any] = {}
    app = three_node_graph(seen)
    handler = TracekitCallbackHandler(recorder)

    async def main() -> None:
        await app.ainvoke({"x": 1, "log": []}, config={"callbacks": [handler]})

    with pytest.raises(PriceMissing):
        asyncio.run(main())
    assert_failed_graph_trace(load(), seen)


def test_successful_graph_writes_only_in_always_mode(context: TraceContext) -> None:
    seen: dict[str, Any] = {}
    app = three_node_graph(seen, fail=False)
    out = app.invoke({"x": 1, "log": []}, config={"callbacks": [TracekitCallbackHandler(make(context))]})
    assert out["log"] == ["load", "enrich", "price"]
    assert not Path("trace.json").exists()  # mode on: nothing failed, nothing written

    app.invoke({"x": 1, "log": []},
               config={"callbacks": [TracekitCallbackHandler(make(context, mode="always"))]})
    doc = load()
    assert doc["run"]["outcome"] == "success"
    assert [s["status"] for s in doc["steps"]] == ["completed"] * 4
    assert doc["steps"][-1]["output_hash"] == hash_value(out)


def test_each_invocation_is_its_own_run(context: TraceContext) -> None:
    recorder = make(context, mode="always")
    handler = TracekitCallbackHandler(recorder)
    app = three_node_graph({}, fail=False)
    app.invoke({"x": 1, "log": []}, config={"callbacks": [handler]})
    first = load()["run"]["id"]
    app.invoke({"x": 2, "log": []}, config={"callbacks": [handler]})
    doc = load()
    assert doc["run"]["id"] != first
    assert len(doc["steps"]) == 4  # the buffer starts empty for each root run


def test_langgraph_retry_policy_gives_attempts(context: TraceContext) -> None:
    calls: list[State] = []

    def flaky(state: State) -> dict[str, Any]:
        calls.append(state)
        if len(calls) == 1:
            raise ConnectionError("upstream reset")
        return {"x": state["x"] + 1}

    graph = StateGraph(State)
    graph.add_node("flaky", flaky, retry_policy=RetryPolicy(max_attempts=3, initial_interval=0.0,
                                                            jitter=False, retry_on=ConnectionError))
    graph.add_edge(START, "flaky")
    graph.add_edge("flaky", END)
    app = graph.compile()
    recorder = make(context, mode="always")
    app.invoke({"x": 1, "log": []}, config={"callbacks": [TracekitCallbackHandler(recorder)]})
    doc = load()
    flaky_steps = [s for s in doc["steps"] if s["node_id"] == "flaky"]
    assert [(s["attempt"], s["status"]) for s in flaky_steps] == [(1, "failed"), (2, "completed")]
    assert flaky_steps[0]["error"]["code"] == "connection"
    assert all(s["input_hash"] == hash_value(calls[0]) for s in flaky_steps)
    # The graph recovered, and the file the first failure wrote was rewritten with the outcome.
    assert doc["run"]["outcome"] == "success"


def test_runnable_sequence_with_failing_tool(context: TraceContext) -> None:
    received: list[dict[str, Any]] = []

    @tool
    def lookup(city: str, limit: int) -> str:
        """Look a city up."""
        received.append({"city": city, "limit": limit})
        raise ValueError(f"unknown city {city!r}")

    chain = RunnableLambda(lambda q: {"city": q.strip().title(), "limit": 3}, name="parse") | lookup
    recorder = make(context)
    with pytest.raises(ValueError, match="unknown city"):
        chain.invoke("  paris ", config={"callbacks": [TracekitCallbackHandler(recorder)]})
    doc = load()
    assert doc["run"]["outcome"] == "failure"
    steps = doc["steps"]
    assert [s["node_id"] for s in steps] == ["parse", "lookup", "RunnableSequence"]
    parse, lookup_step, root = steps
    assert root["parent_step_id"] is None
    assert parse["parent_step_id"] == root["step_id"] == lookup_step["parent_step_id"]
    assert parse["input_hash"] == hash_value("  paris ")
    assert parse["output_hash"] == hash_value({"city": "Paris", "limit": 3})
    assert lookup_step["operation"] == "tool"
    assert lookup_step["status"] == "failed"
    assert lookup_step["input_hash"] == hash_value(received[0])
    assert lookup_step["error"]["code"] == "validation"
    assert lookup_step["error"]["details"]["type"] == "ValueError"
    assert lookup_step["error"]["message"] == "unknown city 'Paris'"


def test_with_retry_attempts_come_from_langchain_tags(context: TraceContext) -> None:
    calls: list[int] = []

    def shaky(n: int) -> int:
        calls.append(n)
        if len(calls) < 3:
            raise TimeoutError("slow")
        return n * 2

    runnable = RunnableLambda(shaky).with_retry(stop_after_attempt=3, wait_exponential_jitter=False)
    recorder = make(context, mode="always")
    assert runnable.invoke(21, config={"callbacks": [TracekitCallbackHandler(recorder)]}) == 42
    doc = load()
    inner = [s for s in doc["steps"] if s["parent_step_id"] is not None]
    assert [(s["attempt"], s["status"]) for s in inner] == [(1, "failed"), (2, "failed"), (3, "completed")]
    assert inner[0]["error"]["code"] == "timeout"
    assert inner[2]["output_hash"] == hash_value(42)
    assert doc["run"]["outcome"] == "success"


def test_interrupt_is_cancelled_not_failed(context: TraceContext) -> None:
    def ask(state: State) -> dict[str, Any]:
        interrupt("approve?")
        return {"x": 0}

    graph = StateGraph(State)
    graph.add_node("ask", ask)
    graph.add_edge(START, "ask")
    graph.add_edge("ask", END)
    app = graph.compile(checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t1"}}

    app.invoke({"x": 1, "log": []}, config={**config, "callbacks": [TracekitCallbackHandler(make(context))]})
    assert not Path("trace.json").exists()  # a paused graph is not a failure

    recorder = make(context, mode="always")
    app.invoke({"x": 1, "log": []}, config={**config, "callbacks": [TracekitCallbackHandler(recorder)]})
    doc = load()
    ask_step = by_node(doc)["ask"]
    assert ask_step["status"] == "cancelled"
    assert ask_step["error"]["code"] == "cancelled"
    assert doc["run"]["outcome"] == "success"


def test_overlapping_batch_roots_share_one_failed_run(context: TraceContext) -> None:
    together = threading.Barrier(3, timeout=30)  # all three roots are in flight at once

    def check(n: int) -> int:
        together.wait()
        if n == 2:
            raise ArithmeticError("two is not allowed")
        return n

    runnable = RunnableLambda(check)
    recorder = make(context)
    results = runnable.batch([1, 2, 3], config={"callbacks": [TracekitCallbackHandler(recorder)]},
                             return_exceptions=True)
    assert isinstance(results[1], ArithmeticError)
    doc = load()
    assert doc["run"]["outcome"] == "failure"
    assert sorted(s["status"] for s in doc["steps"]) == ["completed", "completed", "failed"]
    failed = next(s for s in doc["steps"] if s["status"] == "failed")
    assert failed["input_hash"] == hash_value(2)
    assert all(s["parent_step_id"] is None for s in doc["steps"])


def test_handler_never_raises_into_langchain(context: TraceContext, monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    recorder = make(context, mode="always")

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("recorder bug")

    monkeypatch.setattr(recorder, "on_node_end", broken)
    app = three_node_graph({}, fail=False)
    # at_level: another library (celery's worker) may have raised the root logger's level.
    with caplog.at_level("WARNING", logger="tracekit"):
        out = app.invoke({"x": 1, "log": []}, config={"callbacks": [TracekitCallbackHandler(recorder)]})
    assert out["x"] == 20
    assert "LangChain callback on_end failed" in caplog.text


def test_off_mode_records_nothing(context: TraceContext) -> None:
    recorder = make(context, mode="off")
    seen: dict[str, Any] = {}
    with pytest.raises(PriceMissing):
        three_node_graph(seen).invoke({"x": 1, "log": []},
                                      config={"callbacks": [TracekitCallbackHandler(recorder)]})
    assert not Path("trace.json").exists()
    assert recorder.in_flight() == []


def test_manage_runs_false_joins_the_callers_run(context: TraceContext) -> None:
    recorder = make(context)
    handler = TracekitCallbackHandler(recorder, manage_runs=False)
    seen: dict[str, Any] = {}
    with pytest.raises(PriceMissing), recorder.run():
        prepare = NodeEvent(node_id="prepare", component_id="app", operation="run")
        recorder.on_node_start(prepare)
        recorder.on_node_end(prepare, None)
        three_node_graph(seen).invoke({"x": 1, "log": []}, config={"callbacks": [handler]})
    doc = load()
    assert [s["node_id"] for s in doc["steps"]] == ["prepare", "load", "enrich", "price", "LangGraph"]
    assert doc["run"]["outcome"] == "failure"


def test_parallel_branches_keep_their_inputs_and_parents(context: TraceContext) -> None:
    """Fan-out: ``left`` and ``right`` run at once on LangGraph's threads; ``right`` fails."""
    together = threading.Barrier(2, timeout=30)
    seen: dict[str, Any] = {}

    class Fan(TypedDict):
        x: int
        left: int
        right: int

    def start(state: Fan) -> dict[str, Any]:
        return {"x": state["x"] + 1}

    def left(state: Fan) -> dict[str, Any]:
        seen["left"] = dict(state)
        together.wait()
        return {"left": state["x"] * 2}

    def right(state: Fan) -> dict[str, Any]:
        seen["right"] = dict(state)
        together.wait()
        raise FileNotFoundError("rates.csv")

    graph = StateGraph(Fan)
    for name, fn in (("start", start), ("left", left), ("right", right)):
        graph.add_node(name, fn)
    graph.add_edge(START, "start")
    graph.add_edge("start", "left")
    graph.add_edge("start", "right")
    graph.add_edge(["left", "right"], END)
    recorder = make(context)
    with pytest.raises(FileNotFoundError):
        graph.compile().invoke({"x": 1, "left": 0, "right": 0},
                               config={"callbacks": [TracekitCallbackHandler(recorder)]})
    doc = load()
    steps = by_node(doc)
    root = steps["LangGraph"]
    assert {steps[n]["parent_step_id"] for n in ("start", "left", "right")} == {root["step_id"]}
    assert steps["left"]["status"] == "completed"
    assert steps["right"]["status"] == "failed"
    assert steps["right"]["error"]["code"] == "not_found"
    assert steps["left"]["input_hash"] == hash_value(seen["left"])
    assert steps["right"]["input_hash"] == hash_value(seen["right"])
    assert doc["run"]["outcome"] == "failure"


def test_subgraph_nodes_hang_under_the_subgraph_node(context: TraceContext) -> None:
    inner = StateGraph(State)
    inner.add_node("inner_step", lambda s: {"x": s["x"] + 1})
    inner.add_edge(START, "inner_step")
    inner.add_edge("inner_step", END)
    outer = StateGraph(State)
    outer.add_node("sub", inner.compile())
    outer.add_edge(START, "sub")
    outer.add_edge("sub", END)
    recorder = make(context, mode="always")
    outer.compile().invoke({"x": 1, "log": []}, config={"callbacks": [TracekitCallbackHandler(recorder)]})
    steps = load()["steps"]
    by_id = {s["step_id"]: s for s in steps}
    inner_step = next(s for s in steps if s["node_id"] == "inner_step")
    ancestry = []
    current = inner_step
    while current["parent_step_id"] is not None:
        current = by_id[current["parent_step_id"]]
        ancestry.append(current["node_id"])
    assert ancestry[-2:] == ["sub", "LangGraph"]
    assert by_id[inner_step["parent_step_id"]]["node_id"] == "LangGraph"  # the subgraph's own run


def test_cancelled_ainvoke_ends_the_run_cancelled(context: TraceContext) -> None:
    async def main() -> None:
        started = asyncio.Event()

        async def slow(state: State) -> dict[str, Any]:
            started.set()
            await asyncio.Event().wait()  # never set: only cancellation ends this node
            return {}

        graph = StateGraph(State)
        graph.add_node("first", lambda s: {"x": 1})
        graph.add_node("slow", slow)
        graph.add_edge(START, "first")
        graph.add_edge("first", "slow")
        graph.add_edge("slow", END)
        recorder = make(context, mode="always")
        config: Any = {"callbacks": [TracekitCallbackHandler(recorder)]}
        task = asyncio.create_task(graph.compile().ainvoke({"x": 0, "log": []}, config=config))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    doc = load()
    assert doc["run"]["outcome"] == "cancelled"
    assert [(s["node_id"], s["status"]) for s in doc["steps"]] == [
        ("first", "completed"), ("slow", "cancelled"), ("LangGraph", "cancelled"),
    ]


def test_end_of_a_run_started_before_the_handler_is_still_recorded(context: TraceContext) -> None:
    recorder = make(context)
    handler = TracekitCallbackHandler(recorder)
    handler.on_chain_error(OSError("lost start"), run_id=uuid4(), parent_run_id=None)
    doc = load()  # the failure is never lost, and no run was closed that was never opened
    (step,) = doc["steps"]
    assert step["status"] == "failed"
    assert step["error"]["message"] == "lost start"
    assert recorder.misuse.get("error_without_start") == 1


def test_chat_model_run_is_a_step_and_include_llm_false_skips_it(context: TraceContext) -> None:
    received: list[Any] = []

    class Capturing(FakeListChatModel):
        def _generate(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
            received.append(messages)
            return super()._generate(messages, *args, **kwargs)

    chain = ChatPromptTemplate.from_messages([("human", "say {word}")]) | Capturing(responses=["hi"])
    recorder = make(context, mode="always")
    chain.invoke({"word": "x"}, config={"callbacks": [TracekitCallbackHandler(recorder)]})
    steps = load()["steps"]
    assert [s["operation"] for s in steps] == ["chain", "chat_model", "chain"]
    model = steps[1]
    assert model["node_id"] == "Capturing"
    assert model["parent_step_id"] == steps[-1]["step_id"]
    assert model["input_hash"] == hash_value([received[0]])  # one batch of the messages it got

    recorder = make(context, mode="always")
    chain.invoke({"word": "x"}, config={"callbacks": [TracekitCallbackHandler(recorder, include_llm=False)]})
    assert [s["operation"] for s in load()["steps"]] == ["chain", "chain"]
