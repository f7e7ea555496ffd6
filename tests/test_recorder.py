"""The recorder end to end: modes, runs, ring buffer, pairing, flushing, and the trace on disk."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from _support import load, make

from tracekit import (
    CompositeObserver,
    ExecutionObserver,
    NodeEvent,
    TraceConfig,
    TraceContext,
    TraceRecorder,
    ValidationIssue,
)
from tracekit.capture.hashing import hash_value


def ev(node: str, payload: Any = None, **kw: Any) -> NodeEvent:
    return NodeEvent(node_id=node, component_id=f"comp.{node}", operation="run", payload=payload, **kw)



def ok(rec: TraceRecorder, node: str, payload: Any = None, output: Any = None) -> None:
    e = ev(node, payload)
    rec.on_node_start(e)
    rec.on_node_end(e, output)


def fail(rec: TraceRecorder, node: str, error: BaseException, payload: Any = None) -> None:
    e = ev(node, payload)
    rec.on_node_start(e)
    rec.on_node_error(e, error)


def no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if "tracekit-tmp" in p.name]


def test_recorder_is_an_execution_observer(context: TraceContext) -> None:
    assert isinstance(make(context), ExecutionObserver)


def test_failing_run_in_on_mode_writes_a_valid_trace(context: TraceContext, tmp_path: Path) -> None:
    rec = TraceRecorder.from_env(context)
    with pytest.raises(ValueError), rec.run():
        ok(rec, "load", {"day": 1}, [1, 2])
        e = ev("transform", {"rows": 2})
        rec.on_node_start(e)
        err = ValueError("bad row")
        rec.on_node_error(e, err)
        raise err
    doc = load()
    assert doc["trace_version"] == 1
    assert doc["run"]["outcome"] == "failure"
    assert "finished_at" in doc["run"]
    assert doc["pack"] == {"pack_ref": "etl@1.4.0"}
    assert doc["flow"] == {"id": "nightly", "version": "3"}
    assert [s["node_id"] for s in doc["steps"]] == ["load", "transform"]
    load_step, failed = doc["steps"]
    assert load_step["status"] == "completed"
    assert load_step["input_hash"] == hash_value({"day": 1})
    assert load_step["output_hash"] == hash_value([1, 2])
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "validation"
    assert failed["error"]["message"] == "bad row"
    assert failed["error"]["details"]["type"] == "ValueError"
    assert "output_hash" not in failed
    assert doc["errors"] == []  # the run's error is the node's: not recorded twice
    assert no_temp_files(tmp_path)


def test_successful_run_in_on_mode_writes_no_trace(context: TraceContext, tmp_path: Path) -> None:
    rec = make(context)
    with rec.run():
        ok(rec, "a")
    # Only the flow's hash-only "last good run" summary (tracekit.trace.last_good).
    assert [p.name for p in tmp_path.iterdir()] == [".tracekit-last-good"]


def test_always_mode_writes_success(context: TraceContext) -> None:
    rec = make(context, mode="always")
    with rec.run():
        ok(rec, "a", 1, 2)
    doc = load()
    assert doc["run"]["outcome"] == "success"
    assert doc["steps"][0]["status"] == "completed"


def test_off_mode_records_and_writes_nothing(context: TraceContext, tmp_path: Path) -> None:
    rec = make(context, mode="off")
    with pytest.raises(RuntimeError), rec.run():
        fail(rec, "a", RuntimeError("x"))
        raise RuntimeError("x")
    assert rec.flush_error(RuntimeError("y")) is None
    assert rec.flush_buffer() is None
    assert list(tmp_path.iterdir()) == []
    assert rec.snapshot()["steps"] == []


def test_first_node_error_writes_an_in_progress_trace(context: TraceContext) -> None:
    rec = make(context)
    with rec.run():
        ok(rec, "a")
        fail(rec, "b", KeyError("k"))
        doc = load()
        assert doc["run"]["outcome"] == "in_progress"
        assert "finished_at" not in doc["run"]
        assert [s["status"] for s in doc["steps"]] == ["completed", "failed"]
        first = Path("trace.json").read_bytes()
        fail(rec, "c", KeyError("again"))  # only the first error flushes
        assert Path("trace.json").read_bytes() == first
        ok(rec, "d")  # the runner recovered
    doc = load()
    # Once written, the final flush rewrites the file even in on mode, so no stale file is left.
    assert doc["run"]["outcome"] == "success"
    assert [s["node_id"] for s in doc["steps"]] == ["a", "b", "c", "d"]


def test_each_run_is_fresh(context: TraceContext) -> None:
    rec = make(context, mode="always")
    with rec.run():
        ok(rec, "first")
    first_id = load()["run"]["id"]
    with rec.run():
        ok(rec, "second")
    doc = load()
    assert doc["run"]["id"] != first_id
    assert [s["node_id"] for s in doc["steps"]] == ["second"]


def test_ring_buffer_keeps_the_last_n_in_finish_order(context: TraceContext) -> None:
    rec = make(context, mode="always", buffer=3)
    with rec.run():
        for i in range(10):
            ok(rec, f"n{i}", i)
    doc = load()
    assert [s["node_id"] for s in doc["steps"]] == ["n7", "n8", "n9"]
    assert doc["buffer"] == {"capacity": 3, "dropped": 7}


def test_in_flight_steps_appear_when_the_run_fails(context: TraceContext) -> None:
    rec = make(context)
    with pytest.raises(TimeoutError), rec.run():
        rec.on_node_start(ev("slow", {"x": 1}))
        raise TimeoutError("deadline")
    doc = load()
    (step,) = doc["steps"]
    assert step["status"] == "in_flight"
    assert step["error"]["code"] == "timeout"
    assert doc["run"]["outcome"] == "failure"


def test_flow_error_without_steps_in_flight_goes_to_errors(context: TraceContext) -> None:
    rec = make(context)
    with pytest.raises(RuntimeError), rec.run():
        ok(rec, "a")
        raise RuntimeError("scheduler lost")
    doc = load()
    (event,) = doc["errors"]
    assert event["scope"] == "runner"
    assert event["code"] == "flow_error"
    assert event["message"] == "scheduler lost"
    assert event["error"]["details"]["type"] == "RuntimeError"


def test_flush_methods(context: TraceContext) -> None:
    rec = make(context)
    ok(rec, "a")
    assert rec.flush_success() is None  # on mode: success writes nothing
    path = rec.flush_buffer()
    assert path == Path("trace.json")
    assert load()["run"]["outcome"] == "in_progress"
    assert rec.flush_error(OSError("disk")) == Path("trace.json")
    assert load()["run"]["outcome"] == "failure"


def test_implicit_run_keeps_recent_history_across_flushes(context: TraceContext) -> None:
    rec = make(context, buffer=5)
    ok(rec, "task1")
    fail(rec, "task2", ValueError("x"))
    rec.flush_error(ValueError("x"))
    first = load()
    ok(rec, "task3")
    fail(rec, "task4", ValueError("y"))
    rec.flush_error(ValueError("y"))
    second = load()
    assert second["run"]["id"] != first["run"]["id"]
    # The worker's recent history stays (task1); the earlier run's failure was that run's trace.
    assert [s["node_id"] for s in first["steps"]] == ["task1", "task2"]
    assert [s["node_id"] for s in second["steps"]] == ["task1", "task3", "task4"]


def test_validation_issues_attach_to_the_running_step(context: TraceContext) -> None:
    rec = make(context, mode="always")
    with rec.run():
        e = ev("a", 1)
        rec.on_node_start(e)
        rec.on_validation(e, [ValidationIssue("range", "x too big", path="/x", severity="warning")])
        rec.on_node_end(e, 2)
        rec.on_validation(ev("config"), [ValidationIssue("missing", "no key")])
    steps = load()["steps"]
    assert steps[0]["validation_issues"] == [
        {"code": "range", "message": "x too big", "path": "/x", "severity": "warning"}
    ]
    assert steps[1]["node_id"] == "config"
    assert steps[1]["status"] == "failed"
    assert steps[1]["error"]["code"] == "validation"


def test_explicit_step_ids_and_parents(context: TraceContext) -> None:
    rec = make(context, mode="always")
    with rec.run():
        parent = ev("graph", step_id="root")
        child = ev("node", step_id="c1", parent_step_id="root", attempt=2)
        rec.on_node_start(parent)
        rec.on_node_start(child)
        rec.on_node_end(child, None)
        rec.on_node_end(parent, None)
    steps = {s["step_id"]: s for s in load()["steps"]}
    assert steps["c1"]["parent_step_id"] == "root"
    assert steps["c1"]["attempt"] == 2
    assert steps["root"]["parent_step_id"] is None


def test_same_node_on_many_threads_never_steals_steps(context: TraceContext) -> None:
    rec = make(context, mode="always", buffer=10_000)
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        barrier.wait()
        for i in range(200):
            e = ev("shared", {"thread": n, "i": i})
            rec.on_node_start(e)
            rec.on_node_end(e, {"thread": n, "i": i})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    with rec.run():
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    steps = load()["steps"]
    assert len(steps) == 1600
    # Each step's output was produced by the same thread and iteration as its input.
    assert all(s["input_hash"] == s["output_hash"] for s in steps)
    assert len({s["step_id"] for s in steps}) == 1600


def test_same_node_on_many_asyncio_tasks_never_steals_steps(context: TraceContext) -> None:
    rec = make(context, mode="always", buffer=1000)

    async def node(n: int) -> None:
        e = ev("shared", {"task": n})
        rec.on_node_start(e)
        await asyncio.sleep(0.001 * (n % 7))  # interleave ends in a different order
        if n == 13:
            rec.on_node_error(e, ValueError(f"task {n}"))
        else:
            rec.on_node_end(e, {"task": n})

    async def main() -> None:
        with rec.run():
            await asyncio.gather(*(node(n) for n in range(200)))

    asyncio.run(main())
    steps = load()["steps"]
    assert len(steps) == 200
    failed = [s for s in steps if s["status"] == "failed"]
    assert len(failed) == 1
    assert failed[0]["input_hash"] == hash_value({"task": 13})
    assert failed[0]["error"]["message"] == "task 13"
    assert all(s["input_hash"] == s["output_hash"] for s in steps if s["status"] == "completed")


def test_async_run_block(context: TraceContext) -> None:
    rec = make(context, mode="always")

    async def main() -> None:
        async with rec.run(), rec.step("a", payload=1) as s:
            s.set_output(2)

    asyncio.run(main())
    (step,) = load()["steps"]
    assert step["output_hash"] == hash_value(2)


def test_nested_steps_get_their_parent(context: TraceContext) -> None:
    rec = make(context, mode="always")
    with rec.run(), rec.step("outer") as outer, rec.step("inner"):
        pass
    steps = {s["node_id"]: s for s in load()["steps"]}
    assert steps["inner"]["parent_step_id"] == outer.step_id or steps["inner"]["parent_step_id"] == (
        steps["outer"]["step_id"]
    )
    assert steps["outer"]["parent_step_id"] is None


def test_captured_inputs_are_redacted_and_hash_the_original(context: TraceContext) -> None:
    rec = make(context, mode="always", capture_inputs=True)
    payload = {"user": "ann", "api_key": "sk-123", "nested": [{"Password": "p"}]}
    with rec.run():
        ok(rec, "a", payload)
    (step,) = load()["steps"]
    assert step["invocation_json"] == {
        "component_id": "comp.a",
        "operation": "run",
        "payload": {"user": "ann", "api_key": "[REDACTED]", "nested": [{"Password": "[REDACTED]"}]},
    }
    assert step["input_hash"] == hash_value(payload)
    assert os.stat("trace.json").st_mode & 0o777 == 0o600


def test_capture_is_off_by_default(context: TraceContext) -> None:
    rec = make(context, mode="always")
    with rec.run():
        ok(rec, "a", {"password": "p"})
    assert "invocation_json" not in load()["steps"][0]
    assert b"password" not in Path("trace.json").read_bytes()


def test_output_path_directory_is_created(context: TraceContext, tmp_path: Path) -> None:
    rec = make(context, mode="always", out=tmp_path / "deep" / "er" / "t.json")
    with rec.run():
        ok(rec, "a")
    load(tmp_path / "deep" / "er" / "t.json")


def test_failed_write_is_logged_kept_and_never_raised(
    context: TraceContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("tracekit.trace.sink.os.replace", broken_replace)
    rec = make(context)
    with caplog.at_level("WARNING", logger="tracekit"), pytest.raises(KeyError), rec.run():
        fail(rec, "a", KeyError("x"))
        raise KeyError("x")
    assert isinstance(rec.last_flush_error, OSError)
    assert rec.last_flush_error.errno == 28
    assert len([r for r in caplog.records if "could not write" in r.getMessage()]) == 1
    assert list(tmp_path.iterdir()) == []

    strict = make(context, strict=True)
    fail(strict, "a", KeyError("x"))  # the callback never raises, even when strict
    with pytest.raises(OSError):
        strict.flush_error(KeyError("x"))


def test_git_sha_runner_version_and_digest(context: TraceContext) -> None:
    ctx = TraceContext("p@1", "f", "2", resolved_digest="sha256:abc", runner_version="runner 9")
    rec = TraceRecorder(TraceConfig.from_env({"GIT_SHA": "deadbeef"}, mode="always"), ctx)
    with rec.run():
        ok(rec, "a")
    doc = load()
    assert doc["git_sha"] == "deadbeef"
    assert doc["runner_version"] == "runner 9"
    assert doc["pack"]["resolved_digest"] == "sha256:abc"
    assert doc["recorder"]["name"] == "tracekit"


def test_misuse_is_tolerated_and_counted(context: TraceContext) -> None:
    rec = make(context, mode="always")
    with rec.run():
        rec.on_node_end(ev("ghost"), 1)
        rec.on_node_error(ev("ghost2"), ValueError("lost"))
    doc = load()
    assert rec.misuse["end_without_start"] == 1
    assert rec.misuse["error_without_start"] == 1
    # The failure is not lost: it is recorded as a step of its own.
    assert [s["node_id"] for s in doc["steps"]] == ["ghost2"]


def test_composite_observer_isolates_failures(context: TraceContext) -> None:
    class Broken:
        def on_node_start(self, event: NodeEvent) -> None:
            raise RuntimeError("observer bug")

        def on_node_end(self, event: NodeEvent, output: Any) -> None:
            raise RuntimeError("observer bug")

        def on_node_error(self, event: NodeEvent, error: BaseException) -> None:
            raise RuntimeError("observer bug")

        def on_validation(self, event: NodeEvent, issues: Any) -> None:
            raise RuntimeError("observer bug")

    rec = make(context, mode="always")
    fan = CompositeObserver([Broken(), rec])
    with rec.run():
        e = ev("a")
        fan.on_node_start(e)
        fan.on_validation(e, [])
        fan.on_node_end(e, 1)
    assert fan.failures == 3
    assert load()["steps"][0]["status"] == "completed"


def test_a_runner_wrapping_a_node_error_is_not_a_second_failure(context: TraceContext) -> None:
    class PipelineError(Exception):
        pass

    rec = make(context)
    with pytest.raises(PipelineError), rec.run():
        e = ev("enrich", {"id": 1})
        rec.on_node_start(e)
        try:
            raise KeyError("customer")
        except KeyError as err:
            rec.on_node_error(e, err)
            raise PipelineError("node enrich failed") from err
    doc = load()
    assert doc["errors"] == []
    assert doc["steps"][0]["error"]["details"]["type"] == "KeyError"
    assert doc["run"]["outcome"] == "failure"


def test_steps_never_ended_are_bounded(context: TraceContext, monkeypatch: pytest.MonkeyPatch) -> None:
    import tracekit.recorder.core as recorder_module

    monkeypatch.setattr(recorder_module, "MAX_IN_FLIGHT", 50)
    rec = make(context, mode="always")
    for i in range(200):
        rec.on_node_start(ev(f"killed-{i}"))
    assert len(rec.in_flight()) <= 50
    assert rec.misuse["in_flight_dropped"] >= 150
    newest = {s.node_id for s in rec.in_flight()}
    assert "killed-199" in newest and "killed-0" not in newest
    e = ev("alive")
    rec.on_node_start(e)
    rec.on_node_end(e, 1)
    assert rec.flush_success() is not None
    assert load()["steps"][0]["node_id"] == "alive"


def test_tick_counter_counts_every_tick_across_threads() -> None:
    from tracekit.recorder._counter import TickCounter

    counter = TickCounter()
    assert counter.value() == 0

    def bump() -> None:
        for _ in range(10_000):
            counter.tick()

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for t in threads:
        t.start()
    assert counter.value() <= 80_000  # reads in between never disturb the count
    for t in threads:
        t.join()
    assert counter.value() == 80_000
    assert counter.value() == 80_000
