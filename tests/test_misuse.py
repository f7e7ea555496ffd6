"""Misuse by a runner: tolerated, counted in ``recorder.misuse``, logged once, trace still valid.

A runner with a bug must not lose its trace because of that bug, and tracekit must not turn the
runner's bug into a crash: every callback returns normally whatever it is given.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from tracekit import NodeEvent, TraceConfig, TraceContext, TraceRecorder, ValidationIssue
from tracekit.trace.schema import validate_document

REPEAT = 5  # every misuse is repeated: counted each time, logged only the first


def _recorder(tmp_path: Path, context: TraceContext, **overrides: Any) -> TraceRecorder:
    options: dict[str, Any] = {"mode": "always", "out": tmp_path / "t.json", **overrides}
    return TraceRecorder(TraceConfig.create(**options), context)


def _valid(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(path.read_bytes())
    assert validate_document(doc) == []
    return doc


def _misuse_logs(caplog: pytest.LogCaptureFixture, kind: str) -> list[str]:
    words = kind.replace("_", " ")
    return [
        r.getMessage() for r in caplog.records
        if r.name == "tracekit" and r.levelno == logging.WARNING and words in r.getMessage()
    ]


def _ev(node: Any = "n", **kw: Any) -> NodeEvent:
    return NodeEvent(node, kw.pop("component_id", "comp"), kw.pop("operation", "call"), **kw)


def test_end_without_start(tmp_path: Path, context: TraceContext, caplog: pytest.LogCaptureFixture) -> None:
    rec = _recorder(tmp_path, context)
    for _ in range(REPEAT):
        rec.on_node_end(_ev("ghost"), "out")
    assert rec.misuse == {"end_without_start": REPEAT}
    assert len(_misuse_logs(caplog, "end_without_start")) == 1
    rec.flush_buffer()
    assert _valid(tmp_path / "t.json")["steps"] == []


def test_same_step_ended_twice(
    tmp_path: Path, context: TraceContext, caplog: pytest.LogCaptureFixture
) -> None:
    rec = _recorder(tmp_path, context)
    for ev in (_ev("a"), _ev("b", step_id="b-1")):
        rec.on_node_start(ev)
        rec.on_node_end(ev, 1)
        rec.on_node_end(ev, 2)  # the second end finds nothing to end
        rec.on_node_error(ev, ValueError("late"))  # nor does a late error: it becomes its own step
    assert rec.misuse == {"end_without_start": 2, "error_without_start": 2}
    assert len(_misuse_logs(caplog, "end_without_start")) == 1
    rec.flush_buffer()
    steps = _valid(tmp_path / "t.json")["steps"]
    assert [(s["node_id"], s["status"]) for s in steps] == [
        ("a", "completed"), ("a", "failed"), ("b", "completed"), ("b", "failed"),
    ]


def test_error_for_an_unknown_step_is_kept_as_a_failed_step(tmp_path: Path, context: TraceContext) -> None:
    rec = _recorder(tmp_path, context)
    with pytest.raises(KeyError), rec.run():
        rec.on_node_error(_ev("never-started", step_id="x-9"), KeyError("k"))
        raise KeyError("k")
    assert rec.misuse == {"error_without_start": 1}
    (step,) = _valid(tmp_path / "t.json")["steps"]
    assert step["status"] == "failed" and step["step_id"] == "x-9"
    assert step["error"]["details"]["type"] == "KeyError"


def test_validation_for_unknown_nodes(
    tmp_path: Path, context: TraceContext, caplog: pytest.LogCaptureFixture
) -> None:
    rec = _recorder(tmp_path, context)
    for i in range(REPEAT):
        rec.on_validation(_ev(f"unknown{i}"), [ValidationIssue("w", "just a warning", severity="warning")])
    rec.on_validation(_ev("unknown-error", step_id="nope"), [ValidationIssue("bad", "rejected")])
    assert rec.misuse == {"validation_without_start": REPEAT + 1}
    assert len(_misuse_logs(caplog, "validation_without_start")) == 1
    rec.flush_buffer()
    steps = _valid(tmp_path / "t.json")["steps"]
    assert [s["status"] for s in steps] == ["completed"] * REPEAT + ["failed"]
    assert steps[-1]["error"]["code"] == "validation"


@pytest.mark.parametrize(
    "fields",
    [
        {"node": 42},
        {"node": None, "component_id": None, "operation": b"op"},
        {"node": ("tuple", 1), "step_id": 7, "parent_step_id": 3.5},
        {"node": "n", "step_id": ""},
        {"node": "n", "attempt": 0},
        {"node": "n", "attempt": "2"},
        {"node": "n", "attempt": True},
        {"node": "n", "attempt": -3},
    ],
    ids=["int_node", "none_and_bytes", "odd_ids", "empty_step_id", "attempt_0", "attempt_str",
         "attempt_bool", "attempt_negative"],
)
def test_node_event_with_weird_types(
    fields: dict[str, Any], tmp_path: Path, context: TraceContext, caplog: pytest.LogCaptureFixture
) -> None:
    rec = _recorder(tmp_path, context)
    node = fields.pop("node")
    for i in range(REPEAT):
        ev = _ev(node, payload={"i": i}, **fields)
        rec.on_node_start(ev)
        rec.on_validation(ev, [ValidationIssue("w", "odd", severity="warning")])
        rec.on_node_end(ev, i)
    assert rec.misuse == {"bad_event_field": REPEAT}
    assert len(_misuse_logs(caplog, "bad_event_field")) == 1
    rec.flush_buffer()
    steps = _valid(tmp_path / "t.json")["steps"]
    assert len(steps) == REPEAT
    assert all(s["status"] == "completed" and s["attempt"] >= 1 for s in steps)
    assert {s["node_id"] for s in steps} == {str(node)}


def test_validation_issues_of_the_wrong_type(
    tmp_path: Path, context: TraceContext, caplog: pytest.LogCaptureFixture
) -> None:
    rec = _recorder(tmp_path, context)
    ev = _ev("v")
    rec.on_node_start(ev)
    odd: list[Any] = ["a bare string", {"code": "dict"}, None, 42, ValidationIssue(1, 2, 3)]  # type: ignore[arg-type]
    rec.on_validation(ev, odd)
    rec.on_validation(ev, None)  # type: ignore[arg-type]  # not even a sequence
    rec.on_node_end(ev, None)
    assert rec.misuse["bad_validation_issue"] == len(odd)
    assert rec.misuse["internal_error"] == 1
    rec.flush_buffer()
    (step,) = _valid(tmp_path / "t.json")["steps"]
    assert [i["code"] for i in step["validation_issues"]] == ["invalid_issue"] * 4 + ["1"]


def test_events_that_are_not_node_events(tmp_path: Path, context: TraceContext) -> None:
    rec = _recorder(tmp_path, context)
    for bogus in (None, "n", {"node_id": "n"}, 3):
        rec.on_node_start(bogus)  # type: ignore[arg-type]
        rec.on_node_end(bogus, 1)  # type: ignore[arg-type]
        rec.on_node_error(bogus, ValueError("x"))  # type: ignore[arg-type]
        rec.on_validation(bogus, [])  # type: ignore[arg-type]
    assert rec.misuse["internal_error"] == 16
    rec.flush_buffer()
    assert _valid(tmp_path / "t.json")["steps"] == []


def test_errors_that_are_not_exceptions(tmp_path: Path, context: TraceContext) -> None:
    rec = _recorder(tmp_path, context)
    for i, bogus in enumerate(("a string", None, 42)):
        ev = _ev(f"n{i}")
        rec.on_node_start(ev)
        rec.on_node_error(ev, bogus)  # type: ignore[arg-type]
    rec.flush_buffer()
    steps = _valid(tmp_path / "t.json")["steps"]
    assert [s["status"] for s in steps] == ["failed"] * 3  # the failure itself is never lost


def test_duplicate_step_ids(tmp_path: Path, context: TraceContext) -> None:
    rec = _recorder(tmp_path, context)
    a, b = _ev("a", step_id="same"), _ev("b", step_id="same")
    rec.on_node_start(a)
    rec.on_node_start(b)
    rec.on_node_end(b, 1)
    rec.on_node_end(a, 2)
    assert rec.misuse == {"duplicate_step_id": 1}
    rec.flush_buffer()
    assert len(_valid(tmp_path / "t.json")["steps"]) == 2


def test_callbacks_after_the_run_was_flushed(tmp_path: Path, context: TraceContext) -> None:
    rec = _recorder(tmp_path, context, mode="on")
    late = _ev("late")
    with pytest.raises(RuntimeError), rec.run():
        rec.on_node_start(late)
        raise RuntimeError("run failed")
    written = (tmp_path / "t.json").read_bytes()
    first = _valid(tmp_path / "t.json")
    assert first["run"]["outcome"] == "failure"
    assert [s["status"] for s in first["steps"]] == ["in_flight"]

    # The runner ends the step after its run was over, then keeps calling back.
    rec.on_node_end(late, "too late")
    rec.on_validation(late, [ValidationIssue("w", "late", severity="warning")])
    rec.flush_success()  # on mode, nothing written since: a no-op
    assert rec.misuse == {"end_without_start": 1, "validation_without_start": 1}
    assert (tmp_path / "t.json").read_bytes() == written  # the failed run's trace is untouched

    # The next run does not inherit the dead run's in-flight step.
    with rec.run():
        ev = _ev("next")
        rec.on_node_start(ev)
        rec.on_node_end(ev, 1)
    rec.flush_buffer()
    nxt = _valid(tmp_path / "t.json")
    assert nxt["run"]["id"] != first["run"]["id"]
    assert all(s["node_id"] != "late" or s["status"] != "in_flight" for s in nxt["steps"])


def test_flush_methods_in_any_order_and_repeated(tmp_path: Path, context: TraceContext) -> None:
    rec = _recorder(tmp_path, context)
    for flush in (rec.flush_success, rec.flush_success, rec.flush_error, rec.flush_buffer, rec.flush_error):
        flush()
        _valid(tmp_path / "t.json")
    with rec.run(), rec.run():  # nested blocks join the outer run
        rec.flush_error(ValueError("inside"))
    assert _valid(tmp_path / "t.json")["run"]["outcome"] == "failure"
    assert rec.last_flush_error is None


def test_off_mode_ignores_all_misuse(tmp_path: Path, context: TraceContext) -> None:
    rec = _recorder(tmp_path, context, mode="off")
    rec.on_node_end(_ev(42), 1)
    rec.on_validation(None, None)  # type: ignore[arg-type]
    assert rec.flush_error(ValueError("x")) is None
    assert rec.misuse == {} and not (tmp_path / "t.json").exists()


def test_misuse_counts_stay_exact_when_threads_misbehave(tmp_path: Path, context: TraceContext) -> None:
    import sys
    import threading

    rec = _recorder(tmp_path, context)
    # Switch threads as often as possible, so an unlocked read-add-write would lose counts.
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    threads_n, per_thread = 8, 2_000
    go = threading.Barrier(threads_n)

    def misbehave(i: int) -> None:
        go.wait()
        for _ in range(per_thread):
            rec.on_node_end(_ev(f"never-{i}"), None)

    try:
        threads = [threading.Thread(target=misbehave, args=(i,)) for i in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert rec.misuse == {"end_without_start": threads_n * per_thread}


def test_unhashable_ids_still_pair_their_start_and_end(tmp_path: Path, context: TraceContext) -> None:
    rec = _recorder(tmp_path, context)
    with rec.run():
        listed = _ev(["a", "list"])  # a runner passing a list as node_id
        rec.on_node_start(listed)
        rec.on_node_end(listed, {"ok": 1})
        failing = _ev({"a": "dict"}, step_id=["also", "a", "list"])
        rec.on_node_start(failing)
        rec.on_node_error(failing, ValueError("bad row"))
    doc = _valid(tmp_path / "t.json")
    assert [(s["node_id"], s["status"]) for s in doc["steps"]] == [
        ("['a', 'list']", "completed"),
        ("{'a': 'dict'}", "failed"),
    ]
    assert "internal_error" not in rec.misuse and "end_without_start" not in rec.misuse
    assert rec.in_flight() == []
