"""Keeping the failure: pinned failures, recovered vs final, stale failures, bounds, ids, forks."""

from __future__ import annotations

import gc
import os
import sys
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from _support import load, make

from tracekit import NodeEvent, TraceContext, TraceRecorder
from tracekit.trace.check import validate_trace


def ev(node: str, **kw: Any) -> NodeEvent:
    return NodeEvent(
        node_id=node, component_id=f"comp.{node}", operation="run", payload={"n": len(node)}, **kw
    )


def ok(rec: TraceRecorder, node: str, **kw: Any) -> None:
    e = ev(node, **kw)
    rec.on_node_start(e)
    rec.on_node_end(e, {"out": node})


def fail(rec: TraceRecorder, node: str, error: BaseException, **kw: Any) -> None:
    e = ev(node, **kw)
    rec.on_node_start(e)
    rec.on_node_error(e, error)


def statuses(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["node_id"], s["status"]) for s in doc["steps"]]


class TestPinnedFailures:
    def test_a_failure_survives_any_number_of_later_successes(self, context: TraceContext) -> None:
        rec = make(context, buffer=20)
        with pytest.raises(RuntimeError), rec.run():
            ok(rec, "first")
            fail(rec, "test_boom", KeyError("k"))
            for i in range(173):
                ok(rec, f"test_{i}")
            raise RuntimeError("suite failed")
        doc = load()
        assert doc["run"]["outcome"] == "failure"
        failed = [s for s in doc["steps"] if s["status"] == "failed"]
        assert [s["node_id"] for s in failed] == ["test_boom"]
        assert failed[0]["error"]["details"]["type"] == "KeyError"
        assert failed[0]["recovered"] is False
        # The last 20 plus the pinned failure, in finish order; what was dropped is counted.
        assert len(doc["steps"]) == 21
        assert doc["steps"][0]["node_id"] == "test_boom"
        assert doc["buffer"] == {"capacity": 20, "dropped": 174 - 20}
        assert doc["pinned"] == {"capacity": 100, "dropped": 0}
        assert validate_trace(doc) == []

    def test_the_parent_chain_of_a_failure_is_pinned_too(self, context: TraceContext) -> None:
        rec = make(context, buffer=3)
        with pytest.raises(ValueError), rec.run():
            with rec.step("suite"), rec.step("module"):
                with pytest.raises(ValueError), rec.step("case"):
                    raise ValueError("bad")
                for i in range(10):
                    ok(rec, f"other_{i}")
            raise ValueError("the run fails")
        ids = {s["node_id"]: s for s in load()["steps"]}
        assert {"case", "module", "suite"} <= set(ids)
        assert ids["case"]["parent_step_id"] == ids["module"]["step_id"]
        assert ids["module"]["parent_step_id"] == ids["suite"]["step_id"]

    @pytest.mark.parametrize(("cap", "failures"), [(10, 25), (4, 4), (7, 100)])
    def test_failures_past_the_cap_keep_the_oldest_and_newest(
        self, context: TraceContext, cap: int, failures: int
    ) -> None:
        rec = make(context, buffer=2, max_failures=cap)
        with pytest.raises(RuntimeError), rec.run():
            for i in range(failures):
                fail(rec, f"f{i:03d}", ValueError(str(i)))
                ok(rec, "filler")
            raise RuntimeError("end")
        doc = load()
        kept = [s["node_id"] for s in doc["steps"] if s["status"] == "failed"]
        assert len(kept) == min(cap, failures)
        assert kept[0] == "f000" and kept[-1] == f"f{failures - 1:03d}"
        assert doc["pinned"]["dropped"] == max(0, failures - cap)

    def test_a_cancelled_step_is_kept_too(self, context: TraceContext) -> None:
        rec = make(context, buffer=2, mode="always")
        with pytest.raises(KeyboardInterrupt), rec.run():
            e = ev("slow")
            rec.on_node_start(e)
            rec.on_node_error(e, KeyboardInterrupt())
            for i in range(5):
                ok(rec, f"n{i}")
            raise KeyboardInterrupt
        assert ("slow", "cancelled") in statuses(load())


class TestRecovered:
    def test_a_retry_that_completed_recovers_the_failure(self, context: TraceContext) -> None:
        rec = make(context, mode="always")
        with rec.run():
            fail(rec, "fetch_weights", ConnectionError("refused"), attempt=1)
            ok(rec, "fetch_weights", attempt=2)
            fail(rec, "optional_lint", ValueError("style"))
        doc = load()
        assert doc["run"]["outcome"] == "success"
        failed = {s["node_id"]: s["recovered"] for s in doc["steps"] if s["status"] == "failed"}
        assert failed == {"fetch_weights": True, "optional_lint": True}

    def test_in_a_failed_run_only_the_unretried_failure_ended_it(self, context: TraceContext) -> None:
        rec = make(context)
        with pytest.raises(OSError), rec.run():
            fail(rec, "fetch", ConnectionError("refused"), attempt=1)
            ok(rec, "fetch", attempt=2)
            fail(rec, "load", OSError("disk full"))
            raise OSError("disk full")
        failed = {s["node_id"]: s["recovered"] for s in load()["steps"] if s["status"] == "failed"}
        assert failed == {"fetch": True, "load": False}


class TestWorkerRuns:
    def test_an_implicit_run_starts_clean_after_its_final_trace(self, context: TraceContext) -> None:
        rec = make(context, buffer=10)
        fail(rec, "tasks.boom", ValueError("boom"))
        rec.flush_error(ValueError("boom"))
        ok(rec, "tasks.fine")
        fail(rec, "tasks.slow_soft", TimeoutError("soft limit"))
        rec.flush_error(TimeoutError("soft limit"))
        doc = load()
        failed = [s["node_id"] for s in doc["steps"] if s["status"] == "failed"]
        assert failed == ["tasks.slow_soft"]
        assert [e for e in doc["errors"] if "boom" in e["message"]] == []

    def test_error_bookkeeping_is_bounded_without_run(self, context: TraceContext) -> None:
        rec = make(context, buffer=20, mode="off")
        rec.enabled = True  # record, write nothing: only memory is measured
        for i in range(2_000):
            fail(rec, "warm", ValueError(i))
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for i in range(20_000):
            fail(rec, f"task{i % 7}", ValueError(f"error {i}"))
        gc.collect()
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
        tracemalloc.stop()
        assert grown < 2_000_000, f"grew {grown} bytes over 20,000 node errors"
        assert len(rec._errors_seen) <= rec._errors_seen.capacity


class TestIds:
    def test_a_step_id_reused_across_attempts_validates_and_keeps_the_runners_id(
        self, context: TraceContext
    ) -> None:
        rec = make(context, mode="always")
        with rec.run():
            fail(rec, "task", ConnectionError("x"), step_id="celery-42", attempt=1)
            fail(rec, "task", ConnectionError("x"), step_id="celery-42", attempt=2)
            ok(rec, "task", step_id="celery-42", attempt=3)
        doc = load()
        assert [s["step_id"] for s in doc["steps"]] == ["celery-42", "celery-42#2", "celery-42#3"]
        assert [s.get("runner_step_id") for s in doc["steps"]] == [None, "celery-42", "celery-42"]
        assert [s["attempt"] for s in doc["steps"]] == [1, 2, 3]
        assert validate_trace(doc) == []

    def test_ids_that_are_not_utf8_are_kept_escaped(self, context: TraceContext) -> None:
        bad = os.fsdecode(b"file-\xff.csv")
        rec = make(context)
        with pytest.raises(ValueError), rec.run():
            fail(rec, bad, ValueError(f"cannot read {bad}"), step_id=bad)
            assert rec.flush_buffer() is not None
            ok(rec, "next")
            raise ValueError("end")
        assert rec.last_flush_error is None
        doc = load()
        assert doc["steps"][0]["node_id"] == "file-\\udcff.csv"
        assert "file-\\udcff.csv" in doc["steps"][0]["error"]["message"]

    def test_a_payload_that_is_not_utf8_hashes_and_never_breaks_the_step(self, context: TraceContext) -> None:
        from tracekit import hash_value

        bad = os.fsdecode(b"file-\xff.csv")
        assert hash_value({"path": bad}) == hash_value({"path": bad})
        assert hash_value(bad) != hash_value("file-\\udcff.csv")  # not the escaped text itself
        rec = make(context, mode="always", capture_inputs=True)
        with rec.run():
            e = NodeEvent(node_id="read", component_id="io", operation="run", payload={bad: bad})
            rec.on_node_start(e)
            rec.on_node_end(e, bad)
        assert rec.misuse == {} and rec.last_flush_error is None
        step = load()["steps"][0]
        assert step["status"] == "completed" and "output_hash" in step


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
class TestFork:
    ROUNDS = int(os.environ.get("TRACEKIT_SOAK_ITERATIONS", "40"))

    @pytest.mark.parametrize("history", [False, True])
    def test_a_child_forked_while_another_thread_flushes_never_hangs(
        self, context: TraceContext, tmp_path: Path, history: bool
    ) -> None:
        where: dict[str, Any] = {"dir": tmp_path / "hist"} if history else {"out": tmp_path / "trace.json"}
        rec = make(context, buffer=5, **where)
        stop = threading.Event()

        def flusher() -> None:
            while not stop.is_set():
                fail(rec, "parent_node", ValueError("parent"))
                rec.flush_buffer()

        thread = threading.Thread(target=flusher, daemon=True)
        thread.start()
        try:
            for _ in range(self.ROUNDS):
                pid = os.fork()
                if pid == 0:  # the child: record, flush, exit; a held lock would hang here
                    code = 1
                    try:
                        fail(rec, "child_node", ValueError("child"))
                        path = rec.flush_error(ValueError("child"))
                        code = 0 if path is not None and rec.last_flush_error is None else 3
                    finally:
                        os._exit(code)
                deadline = 20.0
                import time

                start = time.monotonic()
                while True:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        break
                    if time.monotonic() - start > deadline:
                        os.kill(pid, 9)
                        os.waitpid(pid, 0)
                        pytest.fail("the forked child hung on an inherited lock")
                    time.sleep(0.005)
                assert os.waitstatus_to_exitcode(status) == 0
        finally:
            stop.set()
            thread.join()
        files = sorted((tmp_path / "hist").iterdir()) if history else sorted(tmp_path.glob("trace*.json"))
        parent_pid = os.getpid()
        child_files = 0
        for path in files:
            doc = load(path)
            nodes = {s["node_id"] for s in doc["steps"]}
            if doc["run"]["pid"] == parent_pid:
                assert "child_node" not in nodes
            else:
                child_files += 1
                assert nodes == {"child_node"}, f"{path.name} mixes processes: {nodes}"
                assert doc["run"]["outcome"] == "failure"
        assert child_files == self.ROUNDS
        if not history:
            assert load(tmp_path / "trace.json")["run"]["pid"] == parent_pid


def test_pinning_costs_nothing_on_the_success_path(context: TraceContext) -> None:
    rec = make(context, buffer=3)
    for i in range(50):
        ok(rec, f"n{i}")
    assert rec._pins.steps() == []
    assert sys.getrefcount(rec) > 0


def test_a_failure_of_concurrent_work_survives_another_roots_success(context: TraceContext) -> None:
    """Two requests share a worker's implicit run; one ends well while the other's failure waits."""
    rec = make(context, buffer=10)
    fail(rec, "bad.db", ConnectionResetError("peer reset"))
    ok(rec, "ok")
    rec.flush_success()  # the first root ends well: its (in_progress-written) run is rewritten
    fail(rec, "bad", ConnectionResetError("peer reset"))
    rec.flush_error(ConnectionResetError("peer reset"))
    failed = [s["node_id"] for s in load()["steps"] if s["status"] == "failed"]
    assert failed == ["bad.db", "bad"]
