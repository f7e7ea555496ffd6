"""The OpenTelemetry adapter against the real SDK: spans in as steps, steps out as spans."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")  # the [otel] extra; CI installs it

from _support import load, make
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode, format_span_id

from tracekit import CompositeObserver, NodeEvent, TraceContext, ValidationIssue
from tracekit.adapters.otel import OTelObserver, TracekitSpanProcessor
from tracekit.capture.hashing import hash_hex, hash_value


class QuoteUnavailable(RuntimeError):
    """The innermost span's failure."""




def provider_with(*processors: Any) -> TracerProvider:
    provider = TracerProvider()
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


# --- spans in ------------------------------------------------------------------------------


def run_failing_pipeline(tracer: otel_trace.Tracer, seen: dict[str, Any]) -> None:
    """pipeline > (fetch, transform > quote); quote raises, transform and pipeline re-raise."""
    with tracer.start_as_current_span("pipeline", attributes={"code.namespace": "etl.Pipeline"}) as root:
        seen["pipeline"] = root
        with tracer.start_as_current_span("fetch", attributes={"rows": 3}) as fetch:
            seen["fetch"] = fetch
            fetch.set_attribute("fetched", 3)
        with tracer.start_as_current_span("transform", kind=otel_trace.SpanKind.CLIENT) as transform:
            seen["transform"] = transform
            attrs = {"code.namespace": "etl.pricing", "sku": "A-1", "qty": 2}
            with tracer.start_as_current_span("quote", attributes=attrs) as quote:
                seen["quote"] = quote
                seen["quote_attrs"] = dict(quote.attributes or {})
                raise QuoteUnavailable("no quote for A-1")


def test_span_processor_turns_nested_spans_into_a_failed_trace(context: TraceContext) -> None:
    exporter = InMemorySpanExporter()
    provider = provider_with(SimpleSpanProcessor(exporter), TracekitSpanProcessor(make(context)))
    tracer = provider.get_tracer("etl.runner", "2.0")
    seen: dict[str, Any] = {}
    with pytest.raises(QuoteUnavailable):
        run_failing_pipeline(tracer, seen)

    doc = load()
    assert doc["run"]["outcome"] == "failure"
    steps = doc["steps"]
    assert [s["node_id"] for s in steps] == ["fetch", "quote", "transform", "pipeline"]
    fetch, quote, transform, pipeline = steps
    ids = {name: format_span_id(span.get_span_context().span_id) for name, span in seen.items()
           if name != "quote_attrs"}
    assert [s["step_id"] for s in steps] == [ids["fetch"], ids["quote"], ids["transform"], ids["pipeline"]]
    # Parent links follow the span tree.
    assert pipeline["parent_step_id"] is None
    assert fetch["parent_step_id"] == transform["parent_step_id"] == ids["pipeline"]
    assert quote["parent_step_id"] == ids["transform"]
    # Payload = attributes at start; output = attributes at end.
    assert fetch["status"] == "completed"
    assert fetch["input_hash"] == hash_value({"rows": 3})
    assert fetch["output_hash"] == hash_value({"rows": 3, "fetched": 3})
    assert fetch["component_id"] == "etl.runner"  # the instrumentation scope
    assert transform["operation"] == "client"
    assert pipeline["component_id"] == "etl.Pipeline"
    # The failing span keeps the exception's type, message and stack trace.
    assert quote["status"] == "failed"
    assert quote["component_id"] == "etl.pricing"
    assert quote["input_hash"] == hash_value(seen["quote_attrs"])
    error = quote["error"]
    assert error["message"] == "no quote for A-1"
    assert error["details"]["type"] == "test_adapter_otel.QuoteUnavailable"
    assert error["code"] == "node_error"
    assert 'raise QuoteUnavailable("no quote for A-1")' in error["details"]["trace"]
    assert transform["status"] == pipeline["status"] == "failed"
    # The exported spans are the same tree: the processor is one of several, not a replacement.
    exported = {s.name: s for s in exporter.get_finished_spans()}
    assert exported["quote"].parent is not None
    assert format_span_id(exported["quote"].parent.span_id) == ids["transform"]


def test_error_status_without_exception_event(context: TraceContext) -> None:
    provider = provider_with(TracekitSpanProcessor(make(context)))
    tracer = provider.get_tracer("jobs")
    with tracer.start_as_current_span("job"), tracer.start_as_current_span("step") as step:
        step.set_status(Status(StatusCode.ERROR, "exit code 3"))
    doc = load()
    step_doc = doc["steps"][0]
    assert step_doc["status"] == "failed"
    assert step_doc["error"]["message"] == "exit code 3"
    assert step_doc["error"]["details"]["type"] == "tracekit.adapters.otel.SpanError"
    # The child failed but the root recovered: the file written at the failure is rewritten.
    assert doc["run"]["outcome"] == "success"
    assert doc["steps"][1]["status"] == "completed"


def test_builtin_exception_types_keep_their_code_and_chain(context: TraceContext) -> None:
    provider = provider_with(TracekitSpanProcessor(make(context)))
    tracer = provider.get_tracer("jobs")
    with tracer.start_as_current_span("load") as span:
        span.record_exception(KeyError("region"))
        span.record_exception(ValueError("bad config"))
        span.set_status(Status(StatusCode.ERROR))
    doc = load()
    error = doc["steps"][0]["error"]
    assert error["code"] == "validation"
    assert error["details"]["type"] == "ValueError"
    assert [(c["type"], c["message"], c["relation"]) for c in error["details"]["chain"]] == [
        ("ValueError", "bad config", "raised"),
        ("KeyError", "'region'", "context"),
    ]
    assert doc["run"]["outcome"] == "failure"


def test_successful_root_span_flushes_only_in_always_mode(context: TraceContext) -> None:
    tracer = provider_with(TracekitSpanProcessor(make(context))).get_tracer("jobs")
    with tracer.start_as_current_span("ok"):
        pass
    assert not Path("trace.json").exists()

    tracer = provider_with(TracekitSpanProcessor(make(context, mode="always"))).get_tracer("jobs")
    with tracer.start_as_current_span("ok", attributes={"n": 1}):
        pass
    doc = load()
    assert doc["run"]["outcome"] == "success"
    assert doc["steps"][0]["output_hash"] == hash_value({"n": 1})


def test_each_local_root_span_is_a_run_in_history_mode(context: TraceContext, tmp_path: Path) -> None:
    recorder = make(context, mode="always", dir=str(tmp_path / "runs"))
    tracer = provider_with(TracekitSpanProcessor(recorder)).get_tracer("worker")
    for n in range(2):
        with tracer.start_as_current_span(f"task-{n}"):
            pass
    files = sorted(p for p in (tmp_path / "runs").iterdir() if p.suffix == ".json")
    assert len(files) == 2
    run_ids = {load(f)["run"]["id"] for f in files}
    assert len(run_ids) == 2


def test_processor_never_raises_into_the_tracer(context: TraceContext, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    recorder = make(context)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("recorder bug")

    monkeypatch.setattr(recorder, "on_node_start", broken)
    tracer = provider_with(TracekitSpanProcessor(recorder)).get_tracer("jobs")
    with caplog.at_level("WARNING", logger="tracekit"), tracer.start_as_current_span("still-runs") as span:
        span.set_attribute("ok", True)
    assert "span processor on_start failed" in caplog.text


def test_off_mode_records_nothing(context: TraceContext) -> None:
    recorder = make(context, mode="off")
    tracer = provider_with(TracekitSpanProcessor(recorder)).get_tracer("jobs")
    with pytest.raises(QuoteUnavailable):
        run_failing_pipeline(tracer, {})
    assert not Path("trace.json").exists()


# --- steps out -----------------------------------------------------------------------------


def test_observer_emits_steps_as_spans_with_parents_and_error_status(context: TraceContext) -> None:
    exporter = InMemorySpanExporter()
    observer = OTelObserver(provider_with(SimpleSpanProcessor(exporter)))
    recorder = make(context)
    both = CompositeObserver([recorder, observer])

    root = NodeEvent("flow", "etl.Flow", "run", payload={"day": 1}, step_id="r1")
    load_ev = NodeEvent("load", "etl.Load", "read", payload={"path": "a.csv"}, step_id="s1",
                        parent_step_id="r1")
    score = NodeEvent("score", "etl.Score", "map", payload={"rows": 2}, step_id="s2", parent_step_id="r1",
                      attempt=2)
    both.on_node_start(root)
    both.on_node_start(load_ev)
    both.on_node_end(load_ev, [1, 2])
    both.on_node_start(score)
    both.on_validation(score, [ValidationIssue("range", "score above 1", path="$.rows[1]")])
    err = ZeroDivisionError("division by zero")
    both.on_node_error(score, err)
    both.on_node_error(root, err)

    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"flow", "load", "score"}
    flow_span, load_span, score_span = spans["flow"], spans["load"], spans["score"]
    # One trace, parent links from parent_step_id.
    assert flow_span.parent is None
    trace_id = flow_span.context.trace_id
    for child in (load_span, score_span):
        assert child.context.trace_id == trace_id
        assert child.parent is not None and child.parent.span_id == flow_span.context.span_id
    # Attributes carry the step identity and the same hashes as the trace file.
    assert load_span.attributes is not None
    assert load_span.attributes["tracekit.step_id"] == "s1"
    assert load_span.attributes["code.namespace"] == "etl.Load"
    assert load_span.attributes["tracekit.input_hash"] == hash_hex({"path": "a.csv"})
    assert load_span.attributes["tracekit.output_hash"] == hash_hex([1, 2])
    assert load_span.status.status_code is StatusCode.UNSET
    # The failure: ERROR status, the exception recorded, validation issues as events.
    assert score_span.attributes is not None
    assert score_span.attributes["tracekit.attempt"] == 2
    assert score_span.status.status_code is StatusCode.ERROR
    assert score_span.status.description == "ZeroDivisionError: division by zero"
    names = [e.name for e in score_span.events]
    assert names == ["tracekit.validation", "exception"]
    exc_event = score_span.events[1]
    assert exc_event.attributes is not None
    assert exc_event.attributes["exception.type"] == "ZeroDivisionError"
    assert score_span.events[0].attributes is not None
    assert score_span.events[0].attributes["path"] == "$.rows[1]"
    assert flow_span.status.status_code is StatusCode.ERROR
    # The recorder got the same callbacks and wrote its trace.
    doc = load()
    assert [s["node_id"] for s in doc["steps"]] == ["load", "score", "flow"]
    assert doc["steps"][1]["error"]["details"]["type"] == "ZeroDivisionError"
    assert [i["code"] for i in doc["steps"][1]["validation_issues"]] == ["range"]
    assert both.failures == 0


def test_observer_pairs_concurrent_tasks_without_step_ids() -> None:
    exporter = InMemorySpanExporter()
    observer = OTelObserver(provider_with(SimpleSpanProcessor(exporter)).get_tracer("t"))

    async def node(n: int, gate: asyncio.Event) -> None:
        ev = NodeEvent("same-node", "c", "run", payload=n)
        observer.on_node_start(ev)
        await gate.wait()  # every task is in flight before any ends
        observer.on_node_end(ev, n * 10)

    async def main() -> None:
        gate = asyncio.Event()
        tasks = [asyncio.create_task(node(n, gate)) for n in range(3)]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    spans = exporter.get_finished_spans()
    pairs = sorted(
        (s.attributes["tracekit.input_hash"], s.attributes["tracekit.output_hash"])
        for s in spans if s.attributes is not None
    )
    assert pairs == sorted((hash_hex(n), hash_hex(n * 10)) for n in range(3))


def test_observer_cancellation_is_not_an_error_and_bad_target_is_named() -> None:
    exporter = InMemorySpanExporter()
    observer = OTelObserver(provider_with(SimpleSpanProcessor(exporter)))
    ev = NodeEvent("wait", "c", "run", step_id="w")
    observer.on_node_start(ev)
    observer.on_node_error(ev, asyncio.CancelledError())
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes is not None and span.attributes["tracekit.status"] == "cancelled"

    with pytest.raises(TypeError, match="allowed: an opentelemetry TracerProvider, a Tracer"):
        OTelObserver("not a provider")


def test_span_under_a_remote_parent_is_a_local_root(context: TraceContext) -> None:
    remote = otel_trace.SpanContext(trace_id=0xABC, span_id=0x1234, is_remote=True,
                                    trace_flags=otel_trace.TraceFlags(otel_trace.TraceFlags.SAMPLED))
    parent_ctx = otel_trace.set_span_in_context(otel_trace.NonRecordingSpan(remote))
    tracer = provider_with(TracekitSpanProcessor(make(context))).get_tracer("server")
    with pytest.raises(TimeoutError), \
            tracer.start_as_current_span("handle", context=parent_ctx, kind=otel_trace.SpanKind.SERVER):
        raise TimeoutError("db")
    doc = load()  # the remote parent's process is elsewhere: this span ended the local run
    (step,) = doc["steps"]
    assert step["parent_step_id"] == format_span_id(0x1234)
    assert step["operation"] == "server"
    assert step["error"]["code"] == "timeout"
    assert doc["run"]["outcome"] == "failure"


def test_observer_records_an_error_without_start_and_keeps_no_open_span() -> None:
    exporter = InMemorySpanExporter()
    observer = OTelObserver(provider_with(SimpleSpanProcessor(exporter)))
    observer.on_node_error(NodeEvent("late", "c", "run", step_id="x"), OSError("disk"))
    observer.on_validation(NodeEvent("check", "c", "validate"), [ValidationIssue("empty", "no rows")])
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["late"].status.status_code is StatusCode.ERROR
    assert spans["check"].status.status_code is StatusCode.ERROR
    assert [e.name for e in spans["check"].events] == ["tracekit.validation"]
    # Nothing is left open to steal a later start's end.
    ev = NodeEvent("late", "c", "run", step_id="x")
    observer.on_node_start(ev)
    observer.on_node_end(ev, None)
    assert [s.name for s in exporter.get_finished_spans()].count("late") == 2
    assert observer._open == {} and observer._by_step == {}


def test_concurrent_root_spans_on_threads(context: TraceContext) -> None:
    """Two requests at once on two threads; the one that fails leaves the trace."""
    recorder = make(context)
    tracer = provider_with(TracekitSpanProcessor(recorder)).get_tracer("server")
    together = threading.Barrier(2, timeout=30)
    ids: dict[str, str] = {}

    def request(name: str, fail: bool) -> None:
        with tracer.start_as_current_span(name) as root:
            ids[name] = format_span_id(root.get_span_context().span_id)
            with tracer.start_as_current_span(f"{name}.db", attributes={"q": name}):
                together.wait()  # both requests are in flight at once
                if fail:
                    raise ConnectionResetError(f"{name}: peer reset")

    threads = [threading.Thread(target=_swallow, args=(request, n, n == "bad")) for n in ("ok", "bad")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    doc = load()
    assert doc["run"]["outcome"] == "failure"
    steps = {s["node_id"]: s for s in doc["steps"]}
    assert steps["bad.db"]["status"] == "failed"
    assert steps["bad.db"]["parent_step_id"] == ids["bad"]
    assert steps["bad.db"]["input_hash"] == hash_value({"q": "bad"})
    assert steps["bad.db"]["error"]["code"] == "connection"
    assert steps["bad"]["error"]["details"]["type"] == "ConnectionResetError"
    assert recorder.in_flight() == []


def _swallow(fn: Any, *args: Any) -> None:
    with contextlib.suppress(ConnectionResetError):  # the trace, not the thread, reports it
        fn(*args)
