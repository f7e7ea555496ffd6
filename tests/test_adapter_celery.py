"""The Celery adapter against a real embedded worker (in-memory broker and result backend).

Synchronisation never sleeps: results are awaited with timeouts. Celery stores a task's result
before it sends task_failure/task_postrun, so a result alone does not prove the trace is
written; ``_settle()`` runs one more task on the solo worker, which executes tasks one at a time,
so when its result arrives every earlier task's signals have finished.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

pytest.importorskip("celery")  # the [celery] extra; CI installs it

from celery import Celery, chain
from celery.contrib.testing.worker import start_worker
from celery.exceptions import Ignore, TaskRevokedError

from tracekit import ConfigError, TraceContext, TraceRecorder
from tracekit.adapters.celery import CeleryInstrumentation, instrument
from tracekit.capture.hashing import hash_value
from tracekit.trace.schema import validate_document

RESULT_TIMEOUT = 10.0
POLL = 0.01

APP = Celery("tk_celery", broker="memory://", backend="cache+memory://")
# A second app in the same process; its own queue keeps the solo worker from taking its tasks.
OTHER = Celery("tk_other", broker="memory://", backend="cache+memory://")
OTHER.conf.task_default_queue = "tk_other"
for _app in (APP, OTHER):
    # Deliver messages within 10 ms instead of the memory transport's default 1 s poll.
    _app.conf.broker_transport_options = {"polling_interval": 0.01}

RECEIVED: dict[str, list[dict[str, Any]]] = {}


def _received(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    RECEIVED.setdefault(name, []).append({"args": list(args), "kwargs": dict(kwargs)})


@APP.task
def add(x: int, y: int) -> int:
    _received("add", (x, y), {})
    return x + y


@APP.task(bind=True, max_retries=3)
def flaky(self: Any, n: int) -> int:
    _received("flaky", (n,), {})
    if self.request.retries < 1:
        try:
            raise ConnectionError("flaky backend")
        except ConnectionError as exc:
            raise self.retry(exc=exc, countdown=0) from None
    return n * 2


@APP.task
def boom(*args: Any, **kwargs: Any) -> None:
    _received("boom", args, kwargs)
    raise ValueError("bad input")


@APP.task
def skipper(reason: str) -> None:
    _received("skipper", (reason,), {})
    raise Ignore(reason)


@OTHER.task
def mul(x: int, y: int) -> int:
    return x * y


def _get(result: Any) -> Any:
    return result.get(timeout=RESULT_TIMEOUT, interval=POLL)


def _settle() -> None:
    assert _get(add.delay(0, 0)) == 0


def _read(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(path.read_bytes())
    return doc


@pytest.fixture(scope="class")
def solo_worker() -> Iterator[Any]:
    # Class scope: celery's embedded workers share a global stop flag, so two never overlap;
    # pytest ends this one before any test outside the class starts its own.
    with start_worker(APP, pool="solo", perform_ping_check=False) as worker:
        yield worker


@pytest.fixture
def instrumented() -> Iterator[Callable[..., CeleryInstrumentation]]:
    """``instrument`` that disconnects every handle it made when the test ends."""
    handles: list[CeleryInstrumentation] = []
    RECEIVED.clear()

    def make(app: Any, **kwargs: Any) -> CeleryInstrumentation:
        handle = instrument(app, **kwargs)
        handles.append(handle)
        return handle

    yield make
    for handle in handles:
        handle.disconnect()


class TestOnASoloWorker:
    """Tasks run one at a time, so ``_settle()`` is a barrier for every earlier task."""

    def test_failed_task_writes_trace_with_recent_tasks_retries_and_parent(
        self, solo_worker: Any, instrumented: Callable[..., CeleryInstrumentation], tmp_path: Path
    ) -> None:
        history = tmp_path / "traces"
        handle = instrumented(APP, dir=history)

        first = add.delay(1, 2)
        assert _get(first) == 3
        retried = flaky.delay(5)
        assert _get(retried) == 10
        failing = chain(add.s(1, 2), boom.s(flag=True)).delay()
        with pytest.raises(ValueError, match="bad input"):
            _get(failing)
        _settle()

        files = sorted(history.glob("*.json"))
        assert len(files) == 1, files
        doc = _read(files[0])
        assert validate_document(doc) == []
        assert doc["run"]["outcome"] == "failure"
        assert doc["run"]["pid"] == os.getpid()
        assert doc["flow"]["id"] == "tk_celery"
        assert doc["runner_version"].startswith("celery ")
        steps = doc["steps"]
        assert [(s["node_id"], s["status"], s["attempt"]) for s in steps] == [
            (add.name, "completed", 1),
            (flaky.name, "failed", 1),
            (flaky.name, "completed", 2),
            (add.name, "completed", 1),
            (boom.name, "failed", 1),
        ]
        assert {s["component_id"] for s in steps} == {__name__}
        assert {s["operation"] for s in steps} == {"task"}

        # The earlier task: its real input and output.
        assert steps[0]["step_id"] == first.id
        assert steps[0]["input_hash"] == hash_value(RECEIVED["add"][0])
        assert steps[0]["output_hash"] == hash_value(3)

        # Each attempt of the retried task is its own step; the retry says why.
        attempt1, attempt2 = steps[1], steps[2]
        assert (attempt1["step_id"], attempt2["step_id"]) == (retried.id, f"{retried.id}#2")
        assert attempt1["input_hash"] == hash_value(RECEIVED["flaky"][0])
        assert attempt2["input_hash"] == hash_value(RECEIVED["flaky"][1])
        assert attempt1["error"]["code"] == "retry"
        assert "flaky backend" in attempt1["error"]["message"]
        chain_types = [link["type"] for link in attempt1["error"]["details"]["chain"]]
        assert chain_types == ["celery.exceptions.Retry", "ConnectionError"]
        assert "output_hash" not in attempt1
        assert attempt2["output_hash"] == hash_value(10)

        # The failing task: what it really received, why it failed, and its parent in the chain.
        parent, failed = steps[3], steps[4]
        assert failed["step_id"] == failing.id
        assert parent["step_id"] == failing.parent.id
        assert failed["parent_step_id"] == parent["step_id"]
        assert RECEIVED["boom"] == [{"args": [3], "kwargs": {"flag": True}}]
        assert failed["input_hash"] == hash_value({"args": [3], "kwargs": {"flag": True}})
        error = failed["error"]
        assert error["code"] == "validation"
        assert error["message"] == "bad input"
        assert error["details"]["type"] == "ValueError"
        assert "raise ValueError" in error["details"]["traceback"]
        assert handle.internal_errors == {}
        assert handle.recorder.misuse == {}

    def test_revoked_task_ends_cancelled_and_shows_before_the_failure(
        self, solo_worker: Any, instrumented: Callable[..., CeleryInstrumentation], tmp_path: Path
    ) -> None:
        out = tmp_path / "trace.json"
        instrumented(APP, out=out)

        expired = add.apply_async((4, 4), expires=-60)
        with pytest.raises(TaskRevokedError):
            _get(expired)
        _settle()
        assert not out.exists()  # a cancelled task is not a failure
        failing = boom.delay("x")
        with pytest.raises(ValueError):
            _get(failing)
        _settle()

        doc = _read(out)
        assert validate_document(doc) == []
        by_id = {s["step_id"]: s for s in doc["steps"]}
        revoked = by_id[expired.id]
        assert revoked["status"] == "cancelled"
        assert revoked["error"]["code"] == "cancelled"
        assert "expired" in revoked["error"]["message"]
        assert revoked["input_hash"] == hash_value({"args": [4, 4], "kwargs": {}})
        ids = [s["step_id"] for s in doc["steps"]]
        assert ids.index(expired.id) < ids.index(failing.id)
        assert by_id[failing.id]["status"] == "failed"
        assert by_id[failing.id]["input_hash"] == hash_value(RECEIVED["boom"][0])

    def test_ignored_task_ends_cancelled_without_a_trace(
        self, solo_worker: Any, instrumented: Callable[..., CeleryInstrumentation], tmp_path: Path
    ) -> None:
        out = tmp_path / "trace.json"
        handle = instrumented(APP, out=out)
        ignored = skipper.delay("duplicate")  # an ignored task stores no result to wait on
        _settle()

        assert RECEIVED["skipper"] == [{"args": ["duplicate"], "kwargs": {}}]
        step = next(s for s in handle.recorder.snapshot()["steps"] if s["step_id"] == ignored.id)
        assert step["status"] == "cancelled"
        assert step["error"]["details"]["type"] == "celery.exceptions.Ignore"
        assert step["input_hash"] == hash_value(RECEIVED["skipper"][0])
        assert not out.exists()

    def test_disconnect_stops_recording(
        self, solo_worker: Any, instrumented: Callable[..., CeleryInstrumentation]
    ) -> None:
        handle = instrumented(APP, mode="always")
        before = add.delay(5, 5)
        assert _get(before) == 10
        _settle()
        handle.disconnect()
        assert not handle.connected
        after = add.delay(7, 7)
        assert _get(after) == 14
        _settle()

        ids = {s["step_id"] for s in handle.recorder.snapshot()["steps"]}
        assert before.id in ids
        assert after.id not in ids
        # Disconnected, the app can be instrumented again.
        again = instrumented(APP)
        assert again.connected

    def test_tracekit_failures_never_reach_the_worker(
        self, solo_worker: Any, instrumented: Callable[..., CeleryInstrumentation],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        def broken(ctx: TraceContext) -> TraceRecorder:
            raise RuntimeError("recorder unavailable")

        handle = instrumented(APP, recorder_factory=broken)
        with caplog.at_level("WARNING", logger="tracekit"):
            assert _get(add.delay(2, 3)) == 5
            with pytest.raises(ValueError):
                _get(boom.delay())
            _settle()

        assert handle.internal_errors["task_prerun"] >= 1
        assert handle.internal_errors["task_failure"] == 1
        assert any("Celery task_prerun receiver" in r.getMessage() for r in caplog.records)
        with pytest.raises(RuntimeError, match="recorder unavailable"):
            _ = handle.recorder

    def test_custom_context_and_factory_are_used(
        self, solo_worker: Any, instrumented: Callable[..., CeleryInstrumentation], tmp_path: Path
    ) -> None:
        context = TraceContext(pack_ref="billing@2.0.0", flow_id="invoices", flow_version="7")
        out = tmp_path / "custom.json"
        made: list[TraceRecorder] = []

        def factory(ctx: TraceContext) -> TraceRecorder:
            made.append(TraceRecorder.from_env(ctx, out=out, buffer=2))
            return made[-1]

        handle = instrumented(APP, context=context, recorder_factory=factory)
        for n in range(3):
            assert _get(add.delay(n, n)) == 2 * n
        with pytest.raises(ValueError):
            _get(boom.delay(1))
        _settle()

        assert made == [handle.recorder]
        doc = _read(out)
        assert validate_document(doc) == []
        assert doc["pack"]["pack_ref"] == "billing@2.0.0"
        assert doc["flow"] == {"id": "invoices", "version": "7"}
        # The buffer keeps the worker's most recent history: the failure and the task before it.
        assert [s["node_id"] for s in doc["steps"]] == [add.name, boom.name]
        assert doc["buffer"] == {"capacity": 2, "dropped": 2}


def test_threads_pool_records_concurrent_tasks_and_flushes_at_worker_shutdown(
    instrumented: Callable[..., CeleryInstrumentation], tmp_path: Path
) -> None:
    quiet_out = tmp_path / "tk_celery.json"
    quiet = instrumented(APP, out=quiet_out, mode="always")
    out = tmp_path / "tk_other.json"
    handle = instrumented(OTHER, out=out, mode="always")

    with start_worker(OTHER, pool="threads", concurrency=4, perform_ping_check=False) as worker:
        results = [mul.delay(n, 3) for n in range(8)]
        assert [_get(r) for r in results] == [n * 3 for n in range(8)]
        worker.stop()  # a warm shutdown, as on SIGTERM: sends worker_shutdown

    doc = _read(out)
    assert validate_document(doc) == []
    assert doc["run"]["outcome"] == "success"
    assert doc["flow"]["id"] == "tk_other"
    by_id = {s["step_id"]: s for s in doc["steps"]}
    assert set(by_id) == {r.id for r in results}
    for n, result in enumerate(results):
        step = by_id[result.id]
        assert step["status"] == "completed"
        assert step["input_hash"] == hash_value({"args": [n, 3], "kwargs": {}})
        assert step["output_hash"] == hash_value(n * 3)
    assert handle.internal_errors == {}
    # The other app's handle saw none of it.
    assert not quiet_out.exists()
    assert quiet.recorder.snapshot()["steps"] == []


def test_instrument_rejects_bad_arguments(
    instrumented: Callable[..., CeleryInstrumentation], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(TypeError, match=r"expected a celery\.Celery application, got str"):
        instrument("tasks")
    with pytest.raises(ConfigError, match="buffer"):
        instrument(APP, buffer=0)
    with pytest.raises(TypeError, match="both recorder_factory and config overrides"):
        instrument(APP, recorder_factory=TraceRecorder.from_env, mode="always")
    monkeypatch.setenv("TRACEKIT_TRACE", "sometimes")
    with pytest.raises(ConfigError, match="TRACEKIT_TRACE"):
        instrument(APP)
    monkeypatch.delenv("TRACEKIT_TRACE")
    instrumented(APP)
    with pytest.raises(ValueError, match="already instrumented"):
        instrument(APP)


def test_a_forked_process_gets_a_recorder_of_its_own(
    instrumented: Callable[..., CeleryInstrumentation],
) -> None:
    handle = instrumented(APP)
    parent = handle.recorder
    parent_run = parent.run_id
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only, never return into pytest
        code = 1
        try:
            child = handle.recorder
            fresh = child is not parent and child.run_id != parent_run
            code = 0 if fresh and handle.recorder is child else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert handle.recorder is parent
