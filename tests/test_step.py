"""recorder.step(): context manager and decorator, sync and async; exactly one end per start."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator
from typing import Any

import orjson
import pytest
from _support import load, make

from tracekit import TraceContext, TraceRecorder
from tracekit.capture.hashing import hash_source as REAL_HASH_SOURCE
from tracekit.capture.hashing import hash_value
from tracekit.recorder import steps as recorder_module
from tracekit.trace.schema import validate_document


def steps(rec: TraceRecorder) -> list[dict[str, Any]]:
    doc = rec.snapshot()
    assert validate_document(orjson.loads(orjson.dumps(doc))) == []
    result: list[dict[str, Any]] = doc["steps"]
    return result



def test_context_manager_records_input_and_output(context: TraceContext) -> None:
    rec = make(context)
    with rec.step("load", payload={"day": "2026-11-23"}) as step:
        assert step.step_id is not None
        step.set_output([1, 2, 3])
    (s,) = steps(rec)
    assert s["node_id"] == s["component_id"] == "load"
    assert s["status"] == "completed"
    assert s["input_hash"] == hash_value({"day": "2026-11-23"})
    assert s["output_hash"] == hash_value([1, 2, 3])
    assert step.step_id is None  # the block has ended


def test_no_output_set_means_no_output_hash(context: TraceContext) -> None:
    rec = make(context)
    with rec.step("side_effect"):
        pass
    (s,) = steps(rec)
    assert s["status"] == "completed"
    assert "output_hash" not in s


def test_a_failing_block_ends_failed_and_reraises_the_same_error(context: TraceContext) -> None:
    rec = make(context)
    err = KeyError("user_id")
    with pytest.raises(KeyError) as info, rec.step("transform", component_id="etl.transform"):
        raise err
    assert info.value is err
    (s,) = steps(rec)
    assert s["status"] == "failed"
    assert s["component_id"] == "etl.transform"
    assert s["error"]["code"] == "not_found"
    assert s["error"]["details"]["phase"] == "execution"
    assert s["error"]["details"]["type"] == "KeyError"


def test_async_context_manager(context: TraceContext) -> None:
    rec = make(context)

    async def main() -> None:
        async with rec.step("fetch", payload=1) as step:
            await asyncio.sleep(0)
            step.set_output("ok")
        with pytest.raises(ValueError):
            async with rec.step("parse"):
                raise ValueError("bad")

    asyncio.run(main())
    fetch, parse = steps(rec)
    assert (fetch["status"], fetch["output_hash"]) == ("completed", hash_value("ok"))
    assert (parse["status"], parse["error"]["code"]) == ("failed", "validation")


def test_sync_decorator_keeps_return_values_and_hashes_arguments(context: TraceContext) -> None:
    rec = make(context)

    @rec.step()
    def add(x: int, y: int = 10) -> int:
        return x + y

    @rec.step("named", operation="compute")
    def boom() -> None:
        raise RuntimeError("no")

    assert add(1, y=2) == 3
    assert add.__name__ == "add"
    with pytest.raises(RuntimeError):
        boom()
    first, second = steps(rec)
    assert first["node_id"].endswith("add")
    assert first["component_id"] == __name__
    assert first["input_hash"] == hash_value({"x": 1, "y": 2})
    assert first["output_hash"] == hash_value(3)
    assert (second["node_id"], second["operation"], second["status"]) == ("named", "compute", "failed")


def test_async_decorator_keeps_return_values(context: TraceContext) -> None:
    rec = make(context)

    @rec.step("double")
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    assert asyncio.run(double(21)) == 42
    (s,) = steps(rec)
    assert (s["status"], s["output_hash"], s["input_hash"]) == (
        "completed", hash_value(42), hash_value({"x": 21}))


def test_generator_decorator_spans_the_iteration(context: TraceContext) -> None:
    rec = make(context)

    @rec.step("rows")
    def rows(n: int) -> Generator[int, None, int]:
        yield from range(n)
        return n  # the generator's return value is the step's output

    assert list(rows(3)) == [0, 1, 2]
    gen = rows(10)
    assert next(gen) == 0
    assert rec.in_flight()[0].node_id == "rows"
    gen.close()  # the consumer stops early: GeneratorExit, a cancellation
    done, closed = steps(rec)
    assert (done["status"], done["output_hash"]) == ("completed", hash_value(3))
    assert (closed["status"], closed["error"]["code"]) == ("cancelled", "cancelled")


def test_async_generator_decorator(context: TraceContext) -> None:
    rec = make(context)

    @rec.step("stream")
    async def stream(n: int) -> AsyncIterator[int]:
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    async def main() -> list[int]:
        return [i async for i in stream(3)]

    assert asyncio.run(main()) == [0, 1, 2]
    (s,) = steps(rec)
    assert s["status"] == "completed"


def test_nested_steps_record_their_parent(context: TraceContext) -> None:
    rec = make(context)
    with rec.step("outer") as outer, rec.step("inner"):
        pass
    inner, outer_json = steps(rec)
    assert inner["parent_step_id"] == outer_json["step_id"]
    assert outer.step_id is None


def test_fifty_concurrent_async_steps_one_failure_lands_on_its_step(context: TraceContext) -> None:
    rec = make(context, buffer=100)

    async def work(i: int) -> int:
        async with rec.step("shard", payload={"shard": i}) as step:
            for _ in range(i % 5):
                await asyncio.sleep(0)
            if i == 37:
                raise ValueError(f"shard {i} is corrupt")
            step.set_output(i * i)
            return i * i

    async def main() -> list[Any]:
        return await asyncio.gather(*(work(i) for i in range(50)), return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[37], ValueError)
    recorded = steps(rec)
    assert len(recorded) == 50
    assert rec.in_flight() == []
    (failed,) = [s for s in recorded if s["status"] == "failed"]
    assert failed["input_hash"] == hash_value({"shard": 37})
    assert failed["error"]["message"] == "shard 37 is corrupt"
    by_input = {s["input_hash"]["value"]: s for s in recorded}
    for i in range(50):
        if i != 37:
            s = by_input[hash_value({"shard": i})["value"]]
            assert (s["status"], s["output_hash"]) == ("completed", hash_value(i * i))


def test_retries_are_one_step_per_attempt(context: TraceContext) -> None:
    rec = make(context)
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise TimeoutError(f"attempt {calls} timed out")
        return "done"

    with rec.run():
        for attempt in range(1, 4):
            try:
                with rec.step("fetch", attempt=attempt) as step:
                    step.set_output(flaky())
                break
            except TimeoutError:
                continue
    doc = load()  # on mode: the first failure wrote a trace, the end of the run rewrote it
    assert doc["run"]["outcome"] == "success"
    fetches = [s for s in doc["steps"] if s["node_id"] == "fetch"]
    assert [(s["attempt"], s["status"]) for s in fetches] == [(1, "failed"), (2, "failed"), (3, "completed")]
    assert len({s["step_id"] for s in fetches}) == 3
    for s in fetches[:2]:
        assert s["error"]["code"] == "timeout"
        assert any("timed out" in h for h in s["error"]["details"]["hints"])


def test_an_asyncio_timeout_is_recognisable(context: TraceContext) -> None:
    rec = make(context)

    async def main() -> None:
        async with rec.step("slow_api"):
            await asyncio.wait_for(asyncio.sleep(10), timeout=0.001)

    with pytest.raises(TimeoutError):
        asyncio.run(main())
    (s,) = steps(rec)
    assert (s["status"], s["error"]["code"]) == ("failed", "timeout")
    assert any("timed out" in h for h in s["error"]["details"]["hints"])


def _raise_once(real: Any) -> Any:
    state = {"raised": False}

    def patched(*args: Any, **kwargs: Any) -> Any:
        if not state["raised"]:
            state["raised"] = True
            raise RuntimeError("injected bookkeeping fault")
        return real(*args, **kwargs)

    return patched


def test_a_fault_in_the_recorder_ending_a_step_still_ends_it_once(
    context: TraceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = make(context)
    monkeypatch.setattr(rec, "_finish", _raise_once(rec._finish))
    with rec.step("load") as step:
        step.set_output(1)
    (s,) = steps(rec)
    assert s["status"] == "completed"  # the body succeeded: the fault does not invent a failure
    assert rec.in_flight() == []
    (event,) = rec.snapshot()["errors"]
    assert event["code"] == "recorder_error"
    assert event["step_id"] == s["step_id"]
    assert event["error"]["details"]["phase"] == "completion"
    assert rec.misuse["internal_error"] == 1


def test_a_fault_while_recording_a_failure_keeps_the_failure(
    context: TraceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = make(context)
    monkeypatch.setattr(rec, "_finish", _raise_once(rec._finish))
    with pytest.raises(PermissionError), rec.step("write"):
        raise PermissionError("read-only mount")
    (s,) = steps(rec)
    assert s["status"] == "failed"
    assert s["error"]["code"] == "permission"
    assert s["error"]["message"] == "read-only mount"


def test_a_fault_hashing_the_output_still_ends_the_step(
    context: TraceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = make(context)
    with rec.step("a"):
        pass
    monkeypatch.setattr(recorder_module, "hash_source", _raise_once(REAL_HASH_SOURCE))

    @rec.step("b")
    def b() -> int:
        return 7

    # The fault hits hashing the input of b (setup): the body still runs and the step is recorded.
    assert b() == 7
    with rec.step("c", payload=1) as step:  # this time the input hashes; the output does not
        monkeypatch.setattr(recorder_module, "hash_source", _raise_once(REAL_HASH_SOURCE))
        step.set_output(2)
    recorded = steps(rec)
    assert [(s["node_id"], s["status"]) for s in recorded] == [("a", "completed"), ("b", "completed"),
                                                               ("c", "completed")]
    assert recorded[1]["input_hash"] == hash_value({"$unhashed": "builtins.dict"})
    phases = [(e["node_id"], e["error"]["details"]["phase"]) for e in rec.snapshot()["errors"]]
    assert phases == [("b", "setup"), ("c", "completion")]
    assert rec.in_flight() == []


def test_a_fault_raised_after_the_step_was_kept_does_not_add_it_twice(
    context: TraceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = make(context)
    real = rec._node_failed

    def broken() -> None:
        real()
        raise RuntimeError("flush bookkeeping broke")

    monkeypatch.setattr(rec, "_node_failed", broken)
    with pytest.raises(ValueError), rec.step("x"):
        raise ValueError("v")
    (s,) = steps(rec)
    assert s["status"] == "failed"
    assert s["error"]["code"] == "validation"


def test_bad_arguments_get_clear_errors(context: TraceContext) -> None:
    rec = make(context)
    with pytest.raises(ValueError, match=r"attempt=0 is not allowed; allowed: an integer >= 1"):
        rec.step("x", attempt=0)
    with pytest.raises(TypeError, match=r"node_id=3 is not allowed; allowed: a non-empty str"):
        rec.step(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="node_id is required"), rec.step():
        pass
    with pytest.raises(TypeError, match="decorates a function"):
        rec.step("x")(42)  # type: ignore[type-var]
    scope = rec.step("once")
    with scope, pytest.raises(RuntimeError, match="already in use"), scope:
        pass
    assert [s["status"] for s in steps(rec)] == ["completed"]


def test_off_mode_runs_everything_and_records_nothing(context: TraceContext) -> None:
    rec = make(context, mode="off")

    @rec.step("f")
    def f(x: int) -> int:
        return x + 1

    with rec.step("g") as step:
        step.set_output(f(1))
    assert f(2) == 3
    assert rec.snapshot()["steps"] == []


def test_an_interrupt_landing_in_the_bookkeeping_still_ends_the_step(
    context: TraceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = make(context)
    real = rec._finish
    calls = {"n": 0}

    def interrupted(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt  # Ctrl-C arriving while tracekit ends the step
        real(*args, **kwargs)

    monkeypatch.setattr(rec, "_finish", interrupted)
    with pytest.raises(KeyboardInterrupt), rec.step("work") as step:
        step.set_output(1)
    (s,) = steps(rec)
    assert s["status"] == "completed"
    assert rec.in_flight() == []
