"""The Apache Hamilton adapter, run through a real Hamilton driver."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

pytest.importorskip("hamilton")  # the [hamilton] extra; CI installs it

from hamilton import driver

from tracekit import TraceContext, TraceRecorder
from tracekit.adapters.hamilton import OPERATION, STEP_ID_PREFIX, TracekitHook
from tracekit.capture.hashing import hash_value
from tracekit.trace.schema import validate_document

FEATURES = '''
import threading

CAPTURED = {}
LOCK = threading.Lock()


def _keep(name, kwargs):
    with LOCK:
        CAPTURED[name] = dict(kwargs)


def raw(source: list) -> list:
    _keep("raw", {"source": source})
    return [x * 2 for x in source]


def total(raw: list) -> int:
    _keep("total", {"raw": raw})
    return sum(raw)


def ratio(total: int, divisor: int) -> float:
    _keep("ratio", {"total": total, "divisor": divisor})
    try:
        return total / divisor
    except ZeroDivisionError as err:
        raise ValueError(f"cannot scale {total} by {divisor}") from err


def report(ratio: float) -> str:
    return f"{ratio:.2f}"
'''


def _import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> ModuleType:
    """A real module on disk: Hamilton looks a node's module up in ``sys.modules``."""
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def features(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return _import(tmp_path, monkeypatch, "tk_features", FEATURES)


def _recorder(tmp_path: Path, context: TraceContext, **overrides: Any) -> TraceRecorder:
    return TraceRecorder.from_env(context, out=tmp_path / "trace.json", **overrides)


def _driver(module: ModuleType, hook: TracekitHook) -> Any:
    return driver.Builder().with_modules(module).with_adapters(hook).build()


def _load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(path.read_bytes())
    assert validate_document(doc) == []
    return doc


def test_failing_node_is_recorded_with_its_real_input(
    tmp_path: Path, context: TraceContext, features: ModuleType
) -> None:
    recorder = _recorder(tmp_path, context)
    dr = _driver(features, TracekitHook(recorder))
    with pytest.raises(ValueError, match="cannot scale 6 by 0"):
        dr.execute(["report"], inputs={"source": [1, 2], "divisor": 0})

    doc = _load(tmp_path / "trace.json")
    assert doc["run"]["outcome"] == "failure"
    assert "finished_at" in doc["run"]
    steps = doc["steps"]
    assert [s["node_id"] for s in steps] == ["raw", "total", "ratio"]  # report never ran
    assert [s["status"] for s in steps] == ["completed", "completed", "failed"]
    mod = features.__name__
    assert [s["component_id"] for s in steps] == [f"{mod}.raw", f"{mod}.total", f"{mod}.ratio"]
    assert {s["operation"] for s in steps} == {OPERATION}
    assert all(s["parent_step_id"] is None for s in steps)

    # Each step hashes exactly the keyword arguments Hamilton passed to the node.
    captured = features.CAPTURED
    assert captured["ratio"] == {"total": 6, "divisor": 0}
    for step in steps:
        assert step["input_hash"] == hash_value(captured[step["node_id"]])
    assert steps[0]["output_hash"] == hash_value([2, 4])
    assert steps[1]["output_hash"] == hash_value(6)

    failed = steps[2]
    assert "output_hash" not in failed
    assert failed["error"]["code"] == "validation"
    assert failed["error"]["message"] == "cannot scale 6 by 0"
    details = failed["error"]["details"]
    assert details["type"] == "ValueError"
    assert details["phase"] == "execution"
    assert [(link["type"], link["relation"]) for link in details["chain"]] == [
        ("ValueError", "raised"),
        ("ZeroDivisionError", "cause"),
    ]

    # Step ids are stable per (Hamilton run id, task, node): the same run id in every one.
    run_ids = {s["step_id"].split(":")[1] for s in steps}
    assert len(run_ids) == 1
    assert all(s["step_id"].startswith(STEP_ID_PREFIX) for s in steps)
    assert [s["step_id"].rsplit(":", 1)[1] for s in steps] == ["raw", "total", "ratio"]
    # The driver's error is already on the failing step, so it is not repeated as a flow error.
    assert doc["errors"] == []


def test_each_graph_execution_is_its_own_run(
    tmp_path: Path, context: TraceContext, features: ModuleType
) -> None:
    recorder = _recorder(tmp_path, context, mode="always")
    dr = _driver(features, TracekitHook(recorder))
    assert dr.execute(["report"], inputs={"source": [1, 2], "divisor": 3})["report"] == "2.00"
    first = _load(tmp_path / "trace.json")
    assert first["run"]["outcome"] == "success"
    assert [s["node_id"] for s in first["steps"]] == ["raw", "total", "ratio", "report"]
    assert first["steps"][-1]["output_hash"] == hash_value("2.00")

    dr.execute(["total"], inputs={"source": [5]})
    second = _load(tmp_path / "trace.json")
    assert second["run"]["id"] != first["run"]["id"]
    assert [s["node_id"] for s in second["steps"]] == ["raw", "total"]


def test_on_mode_writes_nothing_for_a_successful_graph(
    tmp_path: Path, context: TraceContext, features: ModuleType
) -> None:
    dr = _driver(features, TracekitHook(_recorder(tmp_path, context)))
    dr.execute(["report"], inputs={"source": [1], "divisor": 1})
    assert not (tmp_path / "trace.json").exists()


def test_driver_error_before_any_node_is_a_flow_error(
    tmp_path: Path, context: TraceContext, features: ModuleType
) -> None:
    recorder = _recorder(tmp_path, context)
    dr = _driver(features, TracekitHook(recorder))
    with pytest.raises(ValueError):
        dr.execute(["report"], inputs={"source": [1]})  # divisor is missing
    doc = _load(tmp_path / "trace.json")
    assert doc["run"]["outcome"] == "failure"
    assert doc["steps"] == []
    (error,) = doc["errors"]
    assert error["code"] == "flow_error"
    assert "divisor" in error["message"]


def test_inside_an_outer_run_the_graph_joins_it(
    tmp_path: Path, context: TraceContext, features: ModuleType
) -> None:
    recorder = _recorder(tmp_path, context, mode="always")
    dr = _driver(features, TracekitHook(recorder))
    with recorder.run(), recorder.step("prepare") as outer:
        dr.execute(["total"], inputs={"source": [1]})
        outer_id = outer.step_id
    doc = _load(tmp_path / "trace.json")
    assert [s["node_id"] for s in doc["steps"]] == ["raw", "total", "prepare"]
    assert [s["parent_step_id"] for s in doc["steps"][:2]] == [outer_id, outer_id]


def test_off_mode_records_nothing_and_a_broken_recorder_never_breaks_hamilton(
    tmp_path: Path, context: TraceContext, features: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    off = _recorder(tmp_path, context, mode="off")
    assert _driver(features, TracekitHook(off)).execute(["total"], inputs={"source": [2]})["total"] == 4
    assert list(tmp_path.glob("*.json")) == []

    recorder = _recorder(tmp_path, context)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("recorder bug")

    monkeypatch.setattr(recorder, "on_node_start", broken)
    monkeypatch.setattr(recorder, "run", broken)
    hook = TracekitHook(recorder)
    assert _driver(features, hook).execute(["total"], inputs={"source": [2]})["total"] == 4


def test_concurrent_graphs_share_one_run_and_keep_the_failure(
    tmp_path: Path, context: TraceContext, features: ModuleType
) -> None:
    recorder = _recorder(tmp_path, context)
    hook = TracekitHook(recorder)
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    class Gate:
        """Holds both graphs inside their run until both have begun."""

        def run_before_graph_execution(self, **kwargs: Any) -> None:
            barrier.wait(timeout=30)

    dr = driver.Builder().with_modules(features).with_adapters(hook, _gate_adapter(Gate())).build()

    def execute(name: str, divisor: int) -> None:
        try:
            dr.execute(["ratio"], inputs={"source": [1], "divisor": divisor})
            outcomes[name] = "ok"
        except ValueError:
            outcomes[name] = "failed"

    threads = [threading.Thread(target=execute, args=(n, d)) for n, d in (("bad", 0), ("good", 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == {"bad": "failed", "good": "ok"}
    doc = _load(tmp_path / "trace.json")
    assert doc["run"]["outcome"] == "failure"
    assert sorted(s["status"] for s in doc["steps"] if s["node_id"] == "ratio") == ["completed", "failed"]


def _gate_adapter(gate: Any) -> Any:
    from hamilton.lifecycle import GraphExecutionHook

    class _Gate(GraphExecutionHook):  # type: ignore[misc]
        def run_before_graph_execution(self, **kwargs: Any) -> None:
            gate.run_before_graph_execution(**kwargs)

        def run_after_graph_execution(self, **kwargs: Any) -> None:
            return None

    return _Gate()


PARALLEL = '''
from hamilton.htypes import Collect, Parallelizable


def item(items: list) -> Parallelizable[int]:
    for i in items:
        yield i


def doubled(item: int) -> int:
    if item == 3:
        raise ValueError("three is not allowed")
    return item * 2


def summed(doubled: Collect[int]) -> int:
    return sum(doubled)
'''


def test_dynamic_execution_tasks_get_their_own_step_ids(
    tmp_path: Path, context: TraceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hamilton.execution import executors

    module = _import(tmp_path, monkeypatch, "tk_parallel_nodes", PARALLEL)

    recorder = _recorder(tmp_path, context)
    dr = (
        driver.Builder()
        .with_modules(module)
        .enable_dynamic_execution(allow_experimental_mode=True)
        .with_remote_executor(executors.MultiThreadingExecutor(max_tasks=2))
        .with_adapters(TracekitHook(recorder))
        .build()
    )
    with pytest.raises(ValueError, match="three is not allowed"):
        dr.execute(["summed"], inputs={"items": [1, 3]})

    doc = _load(tmp_path / "trace.json")
    assert doc["run"]["outcome"] == "failure"
    steps = doc["steps"]
    assert steps[0]["node_id"] == "item"
    doubled = {s["status"]: s for s in steps if s["node_id"] == "doubled"}
    assert sorted(doubled) == ["completed", "failed"]
    assert doubled["completed"]["input_hash"] == hash_value({"item": 1})
    assert doubled["failed"]["input_hash"] == hash_value({"item": 3})
    assert doubled["failed"]["error"]["message"] == "three is not allowed"
    task_ids = {s["step_id"].split(":")[2] for s in doubled.values()}
    assert len(task_ids) == 2 and all(task_ids)  # one task per item, named by Hamilton
    assert "summed" not in {s["node_id"] for s in steps}
