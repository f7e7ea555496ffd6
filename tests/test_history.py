"""Trace history (TRACEKIT_TRACE_DIR): one file per run, never overwritten, newest N kept."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from _support import load

from tracekit import NodeEvent, TraceContext, TraceRecorder
from tracekit.trace import sink as sink_module
from tracekit.trace.sink import history_stem

NAME = re.compile(r"^(\d{8}-\d{6})-nightly(-\d+)?\.json$")
SECOND_NS = 1_000_000_000
FIXED_NS = 1_795_478_400 * SECOND_NS  # 2026-11-24T00:00:00Z



def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith(".tracekit-"))


def fail_run(rec: TraceRecorder, node: str = "load", message: str = "boom") -> None:
    with pytest.raises(RuntimeError), rec.run(), rec.step(node):
        raise RuntimeError(message)


def stems(times_ns: Callable[[], int]) -> Callable[[int, str], str]:
    """A history_stem that names runs by ``times_ns()`` instead of their start."""
    return lambda _started, flow_id: history_stem(times_ns(), flow_id)


@pytest.fixture
def history(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    directory = tmp_path / "traces"
    monkeypatch.setenv("TRACEKIT_TRACE_DIR", str(directory))
    return directory


def test_a_run_is_named_by_its_utc_start_and_flow(context: TraceContext, history: Path) -> None:
    rec = TraceRecorder.from_env(context)
    fail_run(rec)
    (name,) = files(history)
    match = NAME.match(name)
    assert match is not None, name
    doc = load(history / name)
    started = dt.datetime.strptime(doc["run"]["started_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert match.group(1) == started.strftime("%Y%m%d-%H%M%S")
    assert doc["run"]["outcome"] == "failure"
    assert rec.last_trace_path == history / name
    assert not Path("trace.json").exists()  # history mode never writes the single file


def test_two_recorders_in_the_same_second_get_two_files(
    context: TraceContext, history: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sink_module, "history_stem", stems(lambda: FIXED_NS))
    first, second = TraceRecorder.from_env(context), TraceRecorder.from_env(context)
    fail_run(first, message="first")
    fail_run(second, message="second")
    assert files(history) == ["20261124-000000-nightly-1.json", "20261124-000000-nightly.json"]
    assert load(history / "20261124-000000-nightly.json")["steps"][0]["error"]["message"] == "first"
    assert load(history / "20261124-000000-nightly-1.json")["steps"][0]["error"]["message"] == "second"


def test_later_flushes_of_a_run_rewrite_its_own_file(context: TraceContext, history: Path) -> None:
    rec = TraceRecorder.from_env(context)
    with pytest.raises(RuntimeError), rec.run():
        with pytest.raises(KeyError), rec.step("parse"):
            raise KeyError("k")
        (name,) = files(history)  # the first failure already wrote the run's file
        assert load(history / name)["run"]["outcome"] == "in_progress"
        rec.flush_buffer()
        with rec.step("retry_parse"):
            pass
        assert files(history) == [name]
        raise RuntimeError("gave up")
    assert files(history) == [name]
    doc = load(history / name)
    assert doc["run"]["outcome"] == "failure"
    assert [s["node_id"] for s in doc["steps"]] == ["parse", "retry_parse"]


def test_earlier_runs_are_never_overwritten(
    context: TraceContext, history: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sink_module, "history_stem", stems(lambda: FIXED_NS))
    rec = TraceRecorder.from_env(context, mode="always")
    with rec.run(), rec.step("one"):
        pass
    (first,) = files(history)
    before = (history / first).read_bytes()
    fail_run(rec, "two")
    with rec.run(), rec.step("three"):
        pass
    assert len(files(history)) == 3
    assert (history / first).read_bytes() == before
    outcomes = sorted(load(history / n)["run"]["outcome"] for n in files(history))
    assert outcomes == ["failure", "success", "success"]


def test_implicit_runs_of_a_worker_each_get_a_file(
    context: TraceContext, history: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = itertools.count(FIXED_NS, SECOND_NS)
    monkeypatch.setattr(sink_module, "history_stem", stems(lambda: next(clock)))
    rec = TraceRecorder.from_env(context)
    for task in ("t1", "t2"):
        event = NodeEvent(task, "worker", "run", payload=None)
        rec.on_node_start(event)
        rec.on_node_error(event, ValueError(task))
        rec.flush_error(ValueError(task))
    names = files(history)
    assert names == ["20261124-000000-nightly.json", "20261124-000001-nightly.json"]
    assert load(history / names[1])["steps"][-1]["node_id"] == "t2"


def test_keep_retains_the_newest_n(
    context: TraceContext, history: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACEKIT_TRACE_KEEP", "2")
    clock = itertools.count(FIXED_NS, SECOND_NS)
    monkeypatch.setattr(sink_module, "history_stem", stems(lambda: next(clock)))
    history.mkdir()
    (history / "notes.txt").write_text("not a trace")  # other files are left alone
    rec = TraceRecorder.from_env(context)
    for i in range(5):
        fail_run(rec, message=f"run {i}")
    assert files(history) == [
        "20261124-000003-nightly.json",
        "20261124-000004-nightly.json",
        "notes.txt",
    ]
    assert load(history / "20261124-000004-nightly.json")["steps"][0]["error"]["message"] == "run 4"


def test_unsafe_flow_ids_make_safe_names(history: Path) -> None:
    rec = TraceRecorder.from_env(TraceContext(pack_ref="p", flow_id="../etc/pass wd", flow_version="1"))
    fail_run(rec)
    (name,) = files(history)
    assert re.match(r"^\d{8}-\d{6}-etc_pass_wd\.json$", name), name
