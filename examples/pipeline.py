"""A tiny DAG runner with its own hook interface, traced by tracekit through that interface.

    python examples/pipeline.py                            # 'enrich' fails: exit 1, trace.json
    TRACEKIT_TRACE=always python examples/pipeline.py --ok # succeeds: exit 0, trace.json too

The runner knows nothing about tracekit: it calls :class:`RunnerHooks`. :class:`TracingHooks`
adapts those hooks to tracekit's :class:`~tracekit.ExecutionObserver`, and a
:class:`~tracekit.CompositeObserver` fans every call out to the recorder and to a second,
logging observer. This is the whole integration a runner needs.
"""

from __future__ import annotations

import argparse
import graphlib
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from tracekit import (
    CompositeObserver,
    ExecutionObserver,
    NodeEvent,
    TraceContext,
    TraceRecorder,
    ValidationIssue,
)

__all__ = ["LoggingObserver", "Node", "Pipeline", "PipelineError", "RunnerHooks", "TracingHooks", "main"]

RUNNER_VERSION: Final = "pipeline.py 1.0"
EXIT_FAILED: Final = 1  # like any batch job: non-zero when the pipeline failed

_log = logging.getLogger("pipeline")


# --- the runner: nodes, a DAG, and its own hooks ----------------------------------------------


@dataclass(frozen=True)
class Node:
    """One step of the pipeline: ``func`` gets the outputs of ``deps`` (or the params) by name."""

    name: str
    component: str
    func: Callable[[Mapping[str, Any]], Any]
    deps: tuple[str, ...] = ()
    #: Checks the node's output; each message becomes a warning-level validation issue.
    check: Callable[[Any], list[str]] = field(default=lambda output: [])


class RunnerHooks(Protocol):
    """What the runner tells the outside world about each node.

    Threading contract: called on the runner's thread, in node order; an implementation must
    not block and must not raise (the runner does not guard against it).
    """

    def node_started(self, node: Node, inputs: Mapping[str, Any]) -> None: ...

    def node_checked(self, node: Node, inputs: Mapping[str, Any], problems: Sequence[str]) -> None: ...

    def node_finished(self, node: Node, inputs: Mapping[str, Any], output: Any) -> None: ...

    def node_failed(self, node: Node, inputs: Mapping[str, Any], error: BaseException) -> None: ...


class PipelineError(Exception):
    """A node failed; the node's own error is the ``__cause__``."""

    def __init__(self, node: str, error: BaseException) -> None:
        super().__init__(f"node {node!r} failed: {error}")
        self.node = node


class Pipeline:
    """Runs nodes in dependency order (a DAG), stopping at the first failure."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        self.nodes = {n.name: n for n in nodes}
        sorter = graphlib.TopologicalSorter({n.name: n.deps for n in nodes})
        self.order = list(sorter.static_order())  # raises CycleError for a cycle

    def run(self, hooks: RunnerHooks, params: Mapping[str, Any]) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for name in self.order:
            node = self.nodes[name]
            inputs = {d: results[d] for d in node.deps} if node.deps else dict(params)
            hooks.node_started(node, inputs)
            try:
                output = node.func(inputs)
            except Exception as err:
                hooks.node_failed(node, inputs, err)
                raise PipelineError(name, err) from err
            problems = node.check(output)
            if problems:
                hooks.node_checked(node, inputs, problems)
            hooks.node_finished(node, inputs, output)
            results[name] = output
        return results


# --- the integration: the runner's hooks -> tracekit's observer protocol -----------------------


class TracingHooks:
    """Adapts :class:`RunnerHooks` to an :class:`~tracekit.ExecutionObserver`.

    One :class:`~tracekit.NodeEvent` per node run, reused for its start, check and end, so the
    recorder pairs them. Threading contract: as :class:`RunnerHooks` (one runner thread).
    """

    def __init__(self, observer: ExecutionObserver) -> None:
        self._observer = observer
        self._events: dict[str, NodeEvent] = {}

    @staticmethod
    def _new_event(node: Node, inputs: Mapping[str, Any]) -> NodeEvent:
        return NodeEvent(node_id=node.name, component_id=node.component, operation="run",
                         payload=dict(inputs))

    def _event(self, node: Node, inputs: Mapping[str, Any]) -> NodeEvent:
        event = self._events.get(node.name)
        if event is None:
            event = self._events[node.name] = self._new_event(node, inputs)
        return event

    def node_started(self, node: Node, inputs: Mapping[str, Any]) -> None:
        self._observer.on_node_start(self._event(node, inputs))

    def node_checked(self, node: Node, inputs: Mapping[str, Any], problems: Sequence[str]) -> None:
        issues = [ValidationIssue(f"{node.name}_check", p, severity="warning") for p in problems]
        self._observer.on_validation(self._event(node, inputs), issues)

    def node_finished(self, node: Node, inputs: Mapping[str, Any], output: Any) -> None:
        self._observer.on_node_end(self._take(node, inputs), output)

    def node_failed(self, node: Node, inputs: Mapping[str, Any], error: BaseException) -> None:
        self._observer.on_node_error(self._take(node, inputs), error)

    def _take(self, node: Node, inputs: Mapping[str, Any]) -> NodeEvent:
        # An end without a start still reaches the observer (which records it as misuse).
        return self._events.pop(node.name, None) or self._new_event(node, inputs)


class LoggingObserver:
    """A second observer: one log line per node event. Thread-safe (``logging`` is)."""

    def on_node_start(self, event: NodeEvent) -> None:
        _log.info("start  %s (%s)", event.node_id, event.component_id)

    def on_node_end(self, event: NodeEvent, output: Any) -> None:
        _log.info("done   %s", event.node_id)

    def on_node_error(self, event: NodeEvent, error: BaseException) -> None:
        _log.error("FAILED %s: %s: %s", event.node_id, type(error).__name__, error)

    def on_validation(self, event: NodeEvent, issues: Sequence[ValidationIssue]) -> None:
        for issue in issues:
            _log.warning("check  %s: %s", event.node_id, issue.message)


# --- the pipeline itself ----------------------------------------------------------------------


class EnrichmentError(Exception):
    """A domain error: an order refers to a customer the customer table does not have."""

    hints = ("Add the customer to the customers table, or drop the order upstream.",)


ORDERS: Final = [
    {"order_id": 1001, "customer_id": "c-1", "amount": 12.5},
    {"order_id": 1002, "customer_id": "c-9", "amount": 7.0},
    {"order_id": 1003, "customer_id": "c-2", "amount": -1.0},
]


def _extract(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [dict(o) for o in ORDERS]


def _customers(params: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    table = {"c-1": {"name": "Ada", "country": "GB"}, "c-2": {"name": "Grace", "country": "US"}}
    if params.get("ok"):
        table["c-9"] = {"name": "Edsger", "country": "NL"}
    return table


def _extract_check(rows: Any) -> list[str]:
    return [f"order {o['order_id']} has a non-positive amount ({o['amount']}); 'clean' will drop it"
            for o in rows if o["amount"] <= 0]


def _enrich(inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    customers = inputs["customers"]
    enriched = []
    for order in inputs["extract"]:
        try:
            customer = customers[order["customer_id"]]
        except KeyError as err:
            raise EnrichmentError(
                f"order {order['order_id']} refers to unknown customer {order['customer_id']!r}"
            ) from err
        enriched.append(order | {"country": customer["country"]})
    return enriched


def _clean(inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [o for o in inputs["enrich"] if o["amount"] > 0]


def _load(inputs: Mapping[str, Any]) -> dict[str, int]:
    return {"rows_written": len(inputs["clean"])}


#: A DAG: orders and customers are read independently, joined, cleaned and loaded. The third
#: node to run, 'enrich', fails on the unknown customer of order 1002 (unless --ok).
PIPELINE: Final = Pipeline([
    Node("extract", "orders_reader", _extract, check=_extract_check),
    Node("customers", "customers_reader", _customers),
    Node("enrich", "customer_join", _enrich, deps=("extract", "customers")),
    Node("clean", "cleaner", _clean, deps=("enrich",)),
    Node("load", "warehouse_writer", _load, deps=("clean",)),
])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the example pipeline, traced by tracekit.")
    parser.add_argument("--ok", action="store_true", help="add the missing customer, so the run succeeds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)

    context = TraceContext(pack_ref="examples@1.0.0", flow_id="orders_daily", flow_version="1",
                           runner_version=RUNNER_VERSION)
    recorder = TraceRecorder.from_env(context)  # TRACEKIT_TRACE* variables apply
    hooks = TracingHooks(CompositeObserver([recorder, LoggingObserver()]))
    try:
        with recorder.run():
            results = PIPELINE.run(hooks, {"day": "2026-11-23", "ok": args.ok})
    except PipelineError as err:
        where = recorder.last_trace_path
        print(f"pipeline failed: {err}" + (f" (trace: {where})" if where else ""), file=sys.stderr)
        return EXIT_FAILED
    print(f"pipeline ok: {results['load']['rows_written']} rows written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
