"""The compiled callbacks (tracekit/_speedups.c) record exactly what the Python ones record.

Every scenario runs twice, on a recorder with the compiled callbacks and on one forced to pure
Python, and the two traces must agree field for field (times aside).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracekit.recorder.core as recorder_module
import tracekit.recorder.steps as steps_module
from tracekit import NodeEvent, TraceConfig, TraceContext, TraceRecorder
from tracekit._native import PURE_PYTHON_ENV, built
from tracekit.capture import hashing
from tracekit.capture.hashing import hash_source

needs_speedups = pytest.mark.skipif(built() is None, reason="tracekit._speedups was not built")
CTX = TraceContext(pack_ref="p@1", flow_id="f", flow_version="1")
TIMES = ("started_at", "duration_ns", "duration_ms")


def test_ci_builds_and_uses_the_compiled_callbacks() -> None:
    """CI installs with a compiler: a silently missing extension would go unnoticed otherwise."""
    if os.environ.get("CI") != "true" or os.environ.get(PURE_PYTHON_ENV) == "1":
        pytest.skip("only CI promises a compiler")
    assert built() is not None
    assert TraceRecorder(TraceConfig.from_env({}), CTX)._compiled


def test_an_in_place_build_is_not_older_than_its_source() -> None:
    """An editable install builds the extension once; after editing the C, reinstall."""
    compiled = built()
    if compiled is None or compiled.__file__ is None:
        pytest.skip("tracekit._speedups was not built")
    source = Path(compiled.__file__).with_name("_speedups.c")
    if not source.exists():
        pytest.skip("an installed wheel: no source beside it")
    assert Path(compiled.__file__).stat().st_mtime >= source.stat().st_mtime, (
        f"{compiled.__file__} is older than {source}: rerun `pip install -e .`"
    )


def test_the_compiled_code_knows_every_field_of_a_step_and_an_event() -> None:
    from tracekit.recorder.hotpath import EVENT_FIELDS, STEP_FIELDS
    from tracekit.trace.model import Step

    assert sorted(STEP_FIELDS) == sorted(Step.__slots__)
    assert sorted(EVENT_FIELDS) == sorted(NodeEvent.__slots__)


def _recorder(compiled: bool, monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> TraceRecorder:
    with monkeypatch.context() as m:
        if not compiled:
            m.setenv(PURE_PYTHON_ENV, "1")
        else:
            m.delenv(PURE_PYTHON_ENV, raising=False)
        rec = TraceRecorder(TraceConfig.from_env({}, mode="always", **overrides), CTX)
    assert rec._compiled is compiled
    return rec


def _steps(rec: TraceRecorder) -> list[dict[str, Any]]:
    steps = orjson.loads(orjson.dumps(rec.snapshot()["steps"]))  # captured payloads are Fragments
    return [{k: v for k, v in s.items() if k not in TIMES} for s in steps]


@pytest.fixture
def both(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., TraceRecorder]]:
    """Run a scenario on both recorders; assert the same steps, misuse counts and dropped count."""
    if built() is None:
        pytest.skip("tracekit._speedups was not built")

    def check(scenario: Callable[[TraceRecorder], None], **overrides: Any) -> TraceRecorder:
        fast = _recorder(True, monkeypatch, **overrides)
        slow = _recorder(False, monkeypatch, **overrides)
        scenario(fast)
        scenario(slow)
        assert _steps(fast) == _steps(slow)
        assert fast.misuse == slow.misuse
        assert fast.snapshot()["buffer"] == slow.snapshot()["buffer"]
        return fast

    yield check


def ev(node: Any = "n", payload: Any = None, **kw: Any) -> NodeEvent:
    return NodeEvent(node_id=node, component_id="c", operation="run", payload=payload, **kw)


# --- the same trace, case by case --------------------------------------------------------------


def test_plain_nodes_with_and_without_step_ids(both: Any) -> None:
    def scenario(rec: TraceRecorder) -> None:
        for i in range(30):  # more than the buffer: dropped counts must agree too
            e = ev(f"n{i % 3}", {"i": i, "tags": ["a", i]}, step_id=f"id{i}" if i % 2 else None,
                   parent_step_id="outer" if i % 5 == 0 else None, attempt=1 + i % 2)
            rec.on_node_start(e)
            rec.on_node_end(e, {"out": i * 1.5})

    both(scenario)


def test_captured_inputs_are_redacted_alike(both: Any) -> None:
    def scenario(rec: TraceRecorder) -> None:
        for i in range(5):
            e = ev(f"c{i}", {"user": i, "api_key": "s3cret", "rows": list(range(i))})
            rec.on_node_start(e)
            rec.on_node_end(e, i)

    both(scenario, capture_inputs=True)


def test_values_the_fast_path_hands_to_python(both: Any) -> None:
    big = {"rows": list(range(2000))}
    values: list[Any] = [None, {"a": None}, [math.nan], {"x": math.inf}, {1, 2}, b"raw", 2**80,
                         big, {"nested": {"k": [None, 1]}}, ValueError("not json")]

    def scenario(rec: TraceRecorder) -> None:
        for i, value in enumerate(values):
            e = ev(f"v{i}", value)
            rec.on_node_start(e)
            rec.on_node_end(e, value)

    both(scenario)


def test_events_the_fast_path_hands_to_python(both: Any) -> None:
    class Duck:  # not a NodeEvent: read by attribute
        node_id, component_id, operation, payload = "duck", "c", "run", {"a": 1}
        step_id = parent_step_id = None
        attempt = 1

    class Broken(Duck):  # reading the payload raises: an internal error, never the runner's
        @property
        def payload(self) -> Any:  # type: ignore[override]
            raise RuntimeError("payload unavailable")

    weird: list[Any] = [ev(7), ev(["unhashable"]), ev("n", attempt=0), ev("n", attempt=True),
                        ev("n", step_id=""), ev("n", parent_step_id=3), NodeEvent("n", 5, "run"),
                        Duck(), Broken()]

    def scenario(rec: TraceRecorder) -> None:
        for e in weird:
            rec.on_node_start(e)
            rec.on_node_end(e, 1)
        rec.on_node_end(ev("never-started"), 1)

    fast = both(scenario)
    assert fast.misuse["internal_error"] == 1  # Broken's start (its end finds nothing in flight)
    assert fast.misuse["bad_event_field"] >= 6 and fast.misuse["end_without_start"] >= 1


def test_keyword_calls_are_the_same_calls(both: Any) -> None:
    def scenario(rec: TraceRecorder) -> None:
        e = ev("kw", {"a": 1})
        rec.on_node_start(event=e)
        rec.on_node_end(e, output=2)
        f = ev("kw2", {"b": 1})
        rec.on_node_start(f)
        rec.on_node_end(output=3, event=f)

    both(scenario)


@needs_speedups
@pytest.mark.parametrize(
    ("callback", "args", "kwargs"),
    [
        ("on_node_start", (), {}),
        ("on_node_start", (1, 2), {}),
        ("on_node_start", (), {"evnt": 1}),
        ("on_node_end", (1,), {}),
        ("on_node_end", (1,), {"event": 1, "output": 2}),
        ("on_node_end", (1, 2, 3), {}),
    ],
)
def test_wrong_calls_raise_what_python_raises(
    callback: str, args: tuple[Any, ...], kwargs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = []
    for compiled in (True, False):
        method = getattr(_recorder(compiled, monkeypatch), callback)
        with pytest.raises(TypeError) as raised:
            method(*args, **kwargs)
        messages.append(str(raised.value))
    assert messages[0] == messages[1]


@needs_speedups
def test_callbacks_show_the_python_signatures(monkeypatch: pytest.MonkeyPatch) -> None:
    import inspect

    fast, slow = _recorder(True, monkeypatch), _recorder(False, monkeypatch)
    for name in ("on_node_start", "on_node_end"):  # some runners inspect their callbacks
        compiled = inspect.signature(getattr(fast, name))
        python = inspect.signature(getattr(slow, name))
        assert list(compiled.parameters) == list(python.parameters)


def test_a_key_started_again_before_it_ended_stacks(both: Any) -> None:
    def scenario(rec: TraceRecorder) -> None:
        outer, inner = ev("rec", 1), ev("rec", 2)
        rec.on_node_start(outer)
        rec.on_node_start(inner)  # recursion: same thread, same node
        rec.on_node_end(inner, "inner")
        rec.on_node_end(outer, "outer")
        dup = ev("d", step_id="same")
        rec.on_node_start(dup)
        rec.on_node_start(dup)  # a reused step id is a misuse, tolerated
        rec.on_node_end(dup, 1)
        rec.on_node_end(dup, 2)

    both(scenario)


def test_parents_from_step_blocks_threads_and_tasks(both: Any) -> None:
    def scenario(rec: TraceRecorder) -> None:
        with rec.step("outer", step_id="outer"):
            e = ev("inner", {"x": 1})
            rec.on_node_start(e)
            rec.on_node_end(e, 2)

        def worker(i: int) -> None:
            e = ev("t", i, step_id=f"t{i}")
            rec.on_node_start(e)
            rec.on_node_end(e, i)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
            t.join()  # one at a time: the order of steps must match between the two runs

        async def node(i: int) -> None:
            e = ev("a", i)  # no step id: paired by task
            rec.on_node_start(e)
            await asyncio.sleep(0)
            rec.on_node_end(e, i)

        async def main() -> None:
            for i in range(3):
                await asyncio.create_task(node(i))

        asyncio.run(main())

    both(scenario)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=20,
    )
)
def test_any_json_like_value_gets_the_python_hash(payload: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    if built() is None:
        pytest.skip("tracekit._speedups was not built")
    rec = _recorder(True, monkeypatch)
    e = ev("h", payload)
    rec.on_node_start(e)
    rec.on_node_end(e, payload)
    (step,) = list(rec._ring)
    expected = hash_source(payload)
    assert step.input_src == expected and type(step.input_src) is type(expected)
    assert step.output_src == expected


# --- what the compiled path must keep from the Python one ---------------------------------------


@needs_speedups
def test_times_come_from_the_clock_the_python_side_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = _recorder(True, monkeypatch)
    e = ev("clock")
    before = time.perf_counter_ns()
    rec.on_node_start(e)
    rec.on_node_end(e, 1)
    after = time.perf_counter_ns()
    (step,) = list(rec._ring)
    assert before <= step.start_ns <= step.end_ns <= after


@needs_speedups
@pytest.mark.parametrize("compiled", [True, False])
def test_a_fault_after_the_step_left_the_table_is_logged_not_raised(
    compiled: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(value: Any) -> bytes:
        if isinstance(value, set):
            raise RuntimeError("hashing broke")
        return hash_source(value)

    monkeypatch.setattr(hashing, "hash_source", broken)  # what the compiled path calls
    monkeypatch.setattr(recorder_module, "hash_source", broken)  # what the Python path calls
    monkeypatch.setattr(steps_module, "hash_source", broken)
    rec = _recorder(compiled, monkeypatch)
    e = ev("n", 1)
    rec.on_node_start(e)
    with caplog.at_level(logging.WARNING, logger="tracekit"):
        rec.on_node_end(e, {1, 2})  # orjson refuses a set: the fallback runs, and breaks
    assert rec.misuse == {"internal_error": 1}
    (record,) = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert "on_node_end" in record.getMessage()
    assert record.exc_info is not None and str(record.exc_info[1]) == "hashing broke"
    assert rec.in_flight() == []


@needs_speedups
@pytest.mark.parametrize("compiled", [True, False])
def test_an_interrupt_is_not_swallowed(compiled: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(value: Any) -> bytes:
        if isinstance(value, set):
            raise KeyboardInterrupt
        return hash_source(value)

    monkeypatch.setattr(hashing, "hash_source", interrupted)
    monkeypatch.setattr(recorder_module, "hash_source", interrupted)
    monkeypatch.setattr(steps_module, "hash_source", interrupted)
    rec = _recorder(compiled, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        rec.on_node_start(ev("n", {1}))


@needs_speedups
def test_disabling_a_recorder_at_run_time_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = _recorder(True, monkeypatch)
    held_start, held_end = rec.on_node_start, rec.on_node_end  # a runner may keep these
    rec.enabled = False
    assert not rec._compiled
    for start, end in ((rec.on_node_start, rec.on_node_end), (held_start, held_end)):
        start(ev("n"))
        end(ev("n"), 1)
    assert rec.in_flight() == [] and list(rec._ring) == [] and rec.misuse == {}
    monkeypatch.delenv(PURE_PYTHON_ENV, raising=False)  # set when CI runs the pure-Python pass
    rec.enabled = True
    assert rec._compiled
    rec.on_node_start(ev("n"))
    rec.on_node_end(ev("n"), 1)
    assert [s.node_id for s in rec._ring] == ["n"]


@needs_speedups
@pytest.mark.parametrize("compiled", [True, False])
def test_callbacks_keep_their_recorder_alive_as_bound_methods_do(
    compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = _recorder(compiled, monkeypatch)
    start, end = rec.on_node_start, rec.on_node_end  # a runner may keep only these
    gone = weakref.ref(rec)
    del rec
    gc.collect()
    start(ev("kept"))
    end(ev("kept"), 1)
    kept = gone()
    assert kept is not None and [s.node_id for s in kept._ring] == ["kept"]
    del start, end, kept
    gc.collect()
    assert gone() is None  # and freed once nothing holds them


@needs_speedups
def test_when_the_python_callbacks_run_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    class Custom(TraceRecorder):
        def on_node_start(self, event: NodeEvent) -> None:
            super().on_node_start(event)

    assert not Custom(TraceConfig.from_env({}), CTX)._compiled  # a subclass's override wins
    assert not TraceRecorder(TraceConfig.from_env({}, mode="off"), CTX)._compiled
    monkeypatch.setenv(PURE_PYTHON_ENV, "1")
    assert not TraceRecorder(TraceConfig.from_env({}), CTX)._compiled
    monkeypatch.setenv(PURE_PYTHON_ENV, "0")
    assert TraceRecorder(TraceConfig.from_env({}), CTX)._compiled


# --- the compiled hashing helpers give the Python answers ----------------------------------------

_PIECES = st.sampled_from([b"n", b"nu", b"nul", b"null", b"ull", b"l", b"x", b'"', b"nn"])


@needs_speedups
@settings(max_examples=400, deadline=None)
@given(data=st.lists(_PIECES, max_size=30).map(b"".join) | st.binary(max_size=300))
def test_has_null_agrees_with_bytes_find(data: bytes) -> None:
    compiled = built()
    assert compiled is not None
    assert compiled.has_null(data) is (data.find(b"null") != -1)


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5)
    | st.floats(allow_nan=True, allow_infinity=True),
    lambda inner: st.lists(inner, max_size=4) | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=25,
)


@needs_speedups
@settings(max_examples=400, deadline=None)
@given(value=_JSONISH)
def test_non_finite_agrees_with_the_python_walk(value: Any) -> None:
    compiled = built()
    assert compiled is not None
    assert compiled.non_finite(value) is hashing._has_non_finite(value)  # never "unknown" here


@needs_speedups
def test_non_finite_leaves_other_types_to_the_python_walk() -> None:
    import dataclasses

    @dataclasses.dataclass
    class Row:
        x: float

    class Floaty(float):
        pass

    compiled = built()
    assert compiled is not None
    for value in ({1.0}, Row(math.nan), [Floaty(1.0)], {"a": Row(1.0)}, object()):
        assert compiled.non_finite(value) is None


@needs_speedups
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_JSONISH | st.sets(st.integers(), max_size=3) | st.binary(max_size=10))
def test_hashes_do_not_depend_on_the_compiled_helpers(value: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with_helpers = hash_source(value)
    with monkeypatch.context() as m:
        m.setattr(hashing, "_has_null", hashing._find_null)
        m.setattr(hashing, "_non_finite_native", hashing._unknown)
        assert hash_source(value) == with_helpers


# --- divergences found by review (issue 14): each must record what Python records -----------------


class _CountedKey(str):
    """A step id whose hashing is counted: Python's end pops its key once (one hash)."""

    hashes = 0

    def __hash__(self) -> int:
        type(self).hashes += 1
        return str.__hash__(self)


def test_an_end_pops_its_key_once(both: Any) -> None:
    counts: list[int] = []

    def scenario(rec: TraceRecorder) -> None:
        e = ev("k", 1, step_id=_CountedKey("sid-1"))
        rec.on_node_start(e)
        _CountedKey.hashes = 0
        rec.on_node_end(e, 2)
        counts.append(_CountedKey.hashes)

    both(scenario)
    assert counts[0] == counts[1] == 1  # compiled, then pure: a look-up and a delete would hash twice


class _Watched:
    """A runner's own event type (read by attribute); counts reads of node_id."""

    component_id, operation, payload, parent_step_id, attempt = "c", "run", {"a": 1}, None, 1

    def __init__(self, step_id: str | None) -> None:
        self.step_id = step_id
        self.node_id_reads = 0

    @property
    def node_id(self) -> str:
        self.node_id_reads += 1
        return "watched"


def test_an_end_with_a_step_id_never_reads_the_node_id(both: Any) -> None:
    reads: list[int] = []

    def scenario(rec: TraceRecorder) -> None:
        e = _Watched("given")
        rec.on_node_start(e)  # type: ignore[arg-type]
        e.node_id_reads = 0
        rec.on_node_end(e, 2)  # type: ignore[arg-type]
        reads.append(e.node_id_reads)

    both(scenario)
    assert reads == [0, 0]


class _BadHash:
    """A task whose hash fails: building the in-flight key fails after the step number is drawn."""

    def __hash__(self) -> int:
        raise RuntimeError("unhashable task")


def test_a_failure_after_the_step_number_is_drawn_uses_no_second_number(
    both: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import tracekit.recorder._context as context_module
    import tracekit.recorder.hotpath as hotpath_module

    real = asyncio.current_task
    bad = {"on": False}

    def current_task(loop: Any = None) -> Any:
        return _BadHash() if bad["on"] else real(loop)

    # Every place the current task is read from, the compiled path's (bound at install) included.
    for module, name in ((hotpath_module, "current_task"), (recorder_module, "_current_task"),
                         (steps_module, "_current_task"), (context_module, "current_task")):
        monkeypatch.setattr(module, name, current_task)

    def scenario(rec: TraceRecorder) -> None:
        async def main() -> None:
            bad["on"] = True
            rec.on_node_start(ev("broken", 1))  # an internal error, counted once
            bad["on"] = False
            e = ev("after", 2)
            rec.on_node_start(e)
            rec.on_node_end(e, 3)

        asyncio.run(main())

    with caplog.at_level(logging.CRITICAL, logger="tracekit"):
        fast = both(scenario)
    assert fast.misuse == {"internal_error": 1}
    assert [s["step_id"] for s in _steps(fast)] == ["s2"]  # s1 went to the failed start, once
