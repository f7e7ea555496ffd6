"""The Celery adapter as deployed: a real ``celery worker`` process (prefork pool, concurrency 2) on a
real Redis broker and result backend, writing trace history into TRACEKIT_TRACE_DIR.

Two worker lifetimes, each shared by the tests that read what it wrote:

- ``always``: ``TRACEKIT_TRACE=always``; a success, a failure, a soft and a hard time limit, a
  retried task whose ``Retry.exc`` is a refused connection, then a warm shutdown (SIGTERM) while a
  task runs.
- ``on`` (the default mode): a pool process killed with SIGKILL (as the OOM killer does), a task
  revoked with ``terminate=True`` while it runs, then a cold shutdown (SIGQUIT) while another
  one runs.

Nothing here sleeps to synchronise: results are awaited with timeouts, and a task that must be
running before the worker is signalled touches a file first (polled for, with a deadline).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from _redis import RedisServer, start_redis
from celery import Celery
from celery.result import AsyncResult

from tracekit import hash_value

TESTS = Path(__file__).resolve().parent
MODULE = "_celery_worker_tasks"
RESULT_TIMEOUT = 30.0
START_TIMEOUT = 30.0
EXIT_TIMEOUT = 60.0
REFUSED_HINT = "The connection was refused"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@dataclass
class Trace:
    path: Path
    doc: dict[str, Any]

    @property
    def pid(self) -> int:
        pid: int = self.doc["run"]["pid"]
        return pid

    @property
    def outcome(self) -> str:
        outcome: str = self.doc["run"]["outcome"]
        return outcome

    def steps(self, task_id: str) -> list[dict[str, Any]]:
        """The steps of every attempt of ``task_id`` (step ids ``<id>`` and ``<id>#<n>``)."""
        return [s for s in self.doc["steps"] if s["step_id"].split("#")[0] == task_id]


@dataclass
class Worker:
    """One ``celery worker`` process and a client app on the same broker."""

    process: subprocess.Popen[bytes]
    client: Celery
    trace_dir: Path
    marks: Path
    log: Path
    results: dict[str, AsyncResult] = field(default_factory=dict)
    exit_code: int | None = None

    def send(self, label: str, task: str, *args: Any) -> AsyncResult:
        result = self.client.send_task(f"{MODULE}.{task}", args)
        self.results[label] = result
        return result

    def outcome(self, label: str) -> Any:
        return self.results[label].get(timeout=RESULT_TIMEOUT, interval=0.02, propagate=False)

    def wait_started(self, label: str) -> None:
        mark = self.marks / f"{self.results[label].id}.started"
        deadline = time.monotonic() + START_TIMEOUT
        while not mark.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"task {label} never started; worker log:\n{self.log_tail()}")
            time.sleep(0.02)

    def wait_active(self, label: str) -> None:
        """Until the worker's main process lists the task as running (it accepted it from the pool).

        The task's own "started" mark can come first; a cold shutdown cancels only what the main
        process knows is running.
        """
        self.wait_started(label)
        task_id = self.results[label].id
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            active = self.client.control.inspect(timeout=0.5).active() or {}
            if any(t.get("id") == task_id for tasks in active.values() for t in tasks):
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the worker never listed task {label} as active; its log:\n{self.log_tail()}")

    def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        try:
            self.exit_code = self.process.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"the worker did not exit after {signal.Signals(signum).name}:\n{self.log_tail()}")
        return self.exit_code

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def traces(self) -> list[Trace]:
        return [Trace(p, orjson.loads(p.read_bytes())) for p in sorted(self.trace_dir.glob("*.json"))]

    def steps(self, label: str) -> list[tuple[Trace, dict[str, Any]]]:
        """Every (trace, step) recording an attempt of the task sent as ``label``."""
        task_id = self.results[label].id
        return [(t, s) for t in self.traces() for s in t.steps(task_id)]


def _start_worker(server: RedisServer, db: int, root: Path, mode: str) -> Worker:
    trace_dir, marks = root / "traces", root / "marks"
    trace_dir.mkdir()
    marks.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
    env.update(
        TK_CELERY_BROKER=server.url(db),
        TK_CELERY_MARKS=str(marks),
        TRACEKIT_TRACE=mode,
        TRACEKIT_TRACE_DIR=str(trace_dir),
        TRACEKIT_TRACE_BUFFER="100",
        PYTHONPATH=os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH", "")) if p),
    )
    log = root / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", MODULE, "worker", "--pool", "prefork",
             "--concurrency", "2", "--loglevel", "INFO", "--hostname", f"tk-{mode}@%h",
             "--without-mingle", "--without-gossip", "--without-heartbeat"],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    client = Celery("tk_client", broker=server.url(db), backend=server.url(db))
    return Worker(process, client, trace_dir, marks, log)


@pytest.fixture(scope="module")
def always_worker(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """Every scenario but the revoke and the cold shutdown, then a warm shutdown (SIGTERM)."""
    worker = _start_worker(redis_server, 1, tmp_path_factory.mktemp("always"), "always")
    try:
        for n in range(3):
            worker.send(f"add{n}", "add", n, 10)
        worker.send("boom", "boom", 7)
        worker.send("soft", "stuck_soft", 5.0)
        worker.send("hard", "stuck_hard", 30.0)
        worker.send("fetch", "fetch", "redis://cache:6379")
        for label in list(worker.results):
            worker.outcome(label)
        # A task still running when the warm shutdown begins: the worker lets it finish.
        worker.send("finishing", "slow", 1.0)
        worker.wait_started("finishing")
        worker.stop(signal.SIGTERM)
        yield worker
    finally:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


@pytest.fixture(scope="module")
def on_worker(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """A pool process killed by SIGKILL, a revoke with terminate=True, then a cold shutdown (SIGQUIT)
    while a task runs."""
    worker = _start_worker(redis_server, 2, tmp_path_factory.mktemp("on"), "on")
    try:
        worker.send("before", "add", 1, 1)
        assert worker.outcome("before") == 2
        worker.send("lost", "killed")
        worker.outcome("lost")
        worker.send("revoked", "slow", 30.0)
        worker.wait_started("revoked")
        worker.client.control.revoke(worker.results["revoked"].id, terminate=True)
        worker.outcome("revoked")
        worker.send("in_flight", "slow", 30.0)
        worker.wait_active("in_flight")
        worker.stop(signal.SIGQUIT)
        yield worker
    finally:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


def _validate(worker: Worker) -> None:
    files = [str(t.path) for t in worker.traces()]
    assert files, f"the worker wrote no trace; its log:\n{worker.log_tail()}"
    checked = subprocess.run([sys.executable, "-m", "tracekit", "validate", *files],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _chain_types(step: dict[str, Any]) -> list[str]:
    return [link["type"] for link in step["error"]["details"]["chain"]]


class TestAlwaysModeAndWarmShutdown:
    def test_every_trace_validates_and_the_worker_exits_cleanly(self, always_worker: Worker) -> None:
        assert always_worker.exit_code == 0, always_worker.log_tail()
        _validate(always_worker)
        assert {t.outcome for t in always_worker.traces()} <= {"success", "failure", "cancelled"}

    def test_succeeded_tasks_are_completed_with_their_input_and_output(self, always_worker: Worker) -> None:
        for n in range(3):
            found = always_worker.steps(f"add{n}")
            assert found, f"add{n} is in no trace"
            for trace, step in found:
                assert trace.pid != always_worker.process.pid  # a pool process ran it
                assert step["status"] == "completed"
                assert step["input_hash"] == hash_value({"args": [n, 10], "kwargs": {}})
                assert step["output_hash"] == hash_value(n + 10)

    def test_a_failed_task_writes_a_failure_trace(self, always_worker: Worker) -> None:
        found = always_worker.steps("boom")
        assert any(t.outcome == "failure" for t, _ in found)
        for _, step in found:
            assert step["status"] == "failed"
            assert step["error"]["code"] == "validation"
            assert step["error"]["message"] == "bad input 7"
            assert "raise ValueError" in step["error"]["details"]["traceback"]

    def test_a_soft_time_limit_is_a_timeout_failure_in_the_pool_process(self, always_worker: Worker) -> None:
        found = always_worker.steps("soft")
        assert any(t.outcome == "failure" for t, _ in found)
        for trace, step in found:
            assert trace.pid != always_worker.process.pid
            assert step["status"] == "failed"
            assert step["error"]["code"] == "timeout"
            assert _chain_types(step) == ["billiard.exceptions.SoftTimeLimitExceeded"]
            assert any("soft time limit" in h for h in step["error"]["details"]["hints"])

    def test_a_hard_time_limit_gives_one_failure_trace_and_is_never_completed(
        self, always_worker: Worker
    ) -> None:
        found = always_worker.steps("hard")
        assert found
        assert all(step["status"] != "completed" for _, step in found)
        # The worker's main process reports it (twice, in Celery 5.x): one file, one failed step.
        parent = [t for t in always_worker.traces() if t.pid == always_worker.process.pid]
        assert len(parent) == 1, [t.path.name for t in parent]
        (trace,) = parent
        assert trace.outcome == "failure"
        assert trace.doc.get("errors", []) == []  # no spurious flow_error
        (step,) = trace.steps(always_worker.results["hard"].id)
        assert step["status"] == "failed"
        assert step["error"]["code"] == "timeout"
        assert _chain_types(step) == ["billiard.exceptions.TimeLimitExceeded"]
        assert any("hard time limit" in h for h in step["error"]["details"]["hints"])
        assert step["input_hash"] == hash_value({"args": [30.0], "kwargs": {}})
        # The killed pool process, when it wrote before the SIGKILL (it has 0.1 s), says cancelled.
        for other, pool_step in found:
            if other.pid != always_worker.process.pid:
                assert other.outcome == "cancelled"
                assert pool_step["status"] == "cancelled"
                assert "received SIGTERM" in pool_step["error"]["message"]
                assert _chain_types(pool_step)[-1] == "SystemExit"

    def test_a_retry_keeps_the_real_cause_and_its_hint(self, always_worker: Worker) -> None:
        found = always_worker.steps("fetch")
        assert {(s["attempt"], s["status"]) for _, s in found} == {(1, "failed"), (2, "failed")}
        task_id = always_worker.results["fetch"].id
        for _, step in found:
            if step["attempt"] == 1:
                assert step["step_id"] == task_id
                assert step["error"]["code"] == "retry"
                assert _chain_types(step) == ["celery.exceptions.Retry", "ConnectionRefusedError"]
                assert step["error"]["details"]["chain"][1]["relation"] == "cause"
                assert any(h.startswith(REFUSED_HINT) for h in step["error"]["details"]["hints"])
            else:
                assert step["step_id"] == f"{task_id}#2"
                assert step["error"]["code"] == "timeout"  # max_retries reached: Retry.exc is raised
        assert any(t.outcome == "failure" for t, s in found if s["attempt"] == 2)

    def test_a_warm_shutdown_loses_nothing_the_worker_finished(self, always_worker: Worker) -> None:
        found = always_worker.steps("finishing")
        assert found, f"the task running at SIGTERM is in no trace:\n{always_worker.log_tail()}"
        assert always_worker.outcome("finishing") == 1.0
        for _, step in found:
            assert step["status"] == "completed"
            assert step["output_hash"] == hash_value(1.0)
        # Every task the worker finished is in a trace, as it ended.
        for label in always_worker.results:
            assert always_worker.steps(label), f"{label} is in no trace"
        assert not any(s["status"] == "in_flight" for t in always_worker.traces() for s in t.doc["steps"])


class TestOnModeRevokeAndColdShutdown:
    def test_every_trace_validates(self, on_worker: Worker) -> None:
        _validate(on_worker)

    def test_a_killed_pool_process_is_one_failure_in_the_main_process(self, on_worker: Worker) -> None:
        assert on_worker.results["lost"].state == "FAILURE"
        found = on_worker.steps("lost")
        assert [(t.pid, t.outcome) for t, _ in found] == [(on_worker.process.pid, "failure")]
        ((trace, step),) = found
        assert step["status"] == "failed"
        assert _chain_types(step) == ["billiard.exceptions.WorkerLostError"]
        assert any("pool process died" in h for h in step["error"]["details"]["hints"])
        assert trace.doc.get("errors", []) == []

    def test_a_task_revoked_with_terminate_ends_cancelled(self, on_worker: Worker) -> None:
        assert on_worker.results["revoked"].state == "REVOKED"
        found = on_worker.steps("revoked")
        assert found, f"the terminated task is in no trace:\n{on_worker.log_tail()}"
        for trace, step in found:
            assert step["status"] == "cancelled"
            assert trace.outcome == "cancelled"
            assert "received SIGTERM" in step["error"]["message"]
            assert step["input_hash"] == hash_value({"args": [30.0], "kwargs": {}})

    def test_a_cold_shutdown_records_the_running_task_as_cancelled(self, on_worker: Worker) -> None:
        found = on_worker.steps("in_flight")
        assert found, f"the task running at SIGQUIT is in no trace:\n{on_worker.log_tail()}"
        for trace, step in found:
            assert step["status"] in ("cancelled", "in_flight")
            assert trace.outcome in ("cancelled", "in_progress")
        assert any(s["status"] == "cancelled" and "received SIGTERM" in s["error"]["message"]
                   for _, s in found)

    def test_on_mode_writes_no_success_only_trace(self, on_worker: Worker) -> None:
        # The task that succeeded first is written only with the run it belongs to: never alone.
        for trace in on_worker.traces():
            assert trace.outcome != "success"
            assert any(s["status"] != "completed" for s in trace.doc["steps"])
