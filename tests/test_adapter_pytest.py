"""The pytest plugin, run for real through ``pytester`` on a small test file."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import orjson
import pytest

from tracekit.adapters.pytest import PLUGIN_NAME
from tracekit.capture.hashing import hash_value
from tracekit.trace.schema import validate_document

pytest_plugins = ["pytester"]

SAMPLE = """
import pickle
import pytest

def test_ok():
    pass

@pytest.mark.parametrize("n", [1, 2])
def test_param(n):
    assert n

@pytest.mark.parametrize("x", [{"k": 3, "tags": {"a", "b"}, "raw": b"\\x00"}])
def test_fail(x):
    with open("captured.pickle", "wb") as f:
        pickle.dump(x, f)  # exactly what the test received
    try:
        raise KeyError("inner")
    except KeyError as err:
        raise ValueError("boom") from err

@pytest.fixture
def broken():
    raise RuntimeError("fixture broke")

def test_fixture_error(broken):
    pass

@pytest.mark.skip(reason="not today")
def test_skipped():
    pass
"""

PASSING = """
import pytest

@pytest.mark.parametrize("i", range(4))
def test_many(i):
    assert i >= 0
"""


# Plugins the inner sessions do not need: pytester restores sys.modules after each in-process
# run, so hypothesis's plugin would be imported afresh (about a second) every time.
_QUIET = ("-p", "no:hypothesispytest", "-p", "no:langsmith_plugin", "-p", "no:randomly")


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*_QUIET, *args)


def _load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(path.read_bytes())
    assert validate_document(doc) == []
    return doc


def _by_node(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["node_id"]: s for s in doc["steps"]}


def test_session_trace_records_each_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sample=SAMPLE)
    result = _run(pytester, "--tracekit")
    result.assert_outcomes(passed=3, failed=1, errors=1, skipped=1)

    doc = _load(pytester.path / "trace.json")
    assert doc["run"]["outcome"] == "failure"
    assert doc["flow"] == {"id": "pytest", "version": pytest.__version__}
    assert doc["pack"]["pack_ref"] == pytester.path.name
    steps = doc["steps"]
    assert [s["node_id"] for s in steps] == [
        "test_sample.py::test_ok",
        "test_sample.py::test_param[1]",
        "test_sample.py::test_param[2]",
        "test_sample.py::test_fail[x0]",
        "test_sample.py::test_fixture_error",
        "test_sample.py::test_skipped",
    ]
    assert {s["component_id"] for s in steps} == {"test_sample"}
    assert {s["operation"] for s in steps} == {"test"}
    assert all(s["parent_step_id"] is None for s in steps)
    by_node = _by_node(doc)

    ok = by_node["test_sample.py::test_ok"]
    assert ok["status"] == "completed"
    assert ok["input_hash"] == hash_value({})
    assert by_node["test_sample.py::test_param[2]"]["input_hash"] == hash_value({"n": 2})

    failed = by_node["test_sample.py::test_fail[x0]"]
    captured = pickle.loads((pytester.path / "captured.pickle").read_bytes())
    assert failed["status"] == "failed"
    assert failed["input_hash"] == hash_value({"x": captured})
    assert failed["error"]["message"] == "boom"
    assert failed["error"]["code"] == "validation"
    details = failed["error"]["details"]
    assert details["type"] == "ValueError"
    assert details["phase"] == "call"
    assert [(link["type"], link["relation"]) for link in details["chain"]] == [
        ("ValueError", "raised"),
        ("KeyError", "cause"),
    ]

    fixture = by_node["test_sample.py::test_fixture_error"]
    assert fixture["status"] == "failed"
    assert fixture["error"]["message"] == "fixture broke"
    assert fixture["error"]["details"]["type"] == "RuntimeError"
    assert fixture["error"]["details"]["phase"] == "setup"

    skipped = by_node["test_sample.py::test_skipped"]
    assert skipped["status"] == "cancelled"
    assert skipped["error"]["code"] == "cancelled"
    assert "not today" in skipped["error"]["message"]
    assert skipped["error"]["details"]["phase"] == "setup"

    (summary,) = doc["errors"]
    assert summary["scope"] == "runner"
    assert "2 test(s) failed" in summary["message"]
    assert "test_sample.py::test_fail[x0]" in summary["message"]
    result.stdout.fnmatch_lines(["tracekit: failure trace written to *trace.json"])


def test_teardown_failure_after_a_failed_call_keeps_both(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_teardown="""
        import pytest

        @pytest.fixture
        def res():
            yield 1
            raise OSError("cleanup failed")

        def test_it(res):
            assert res == 2
        """
    )
    result = _run(pytester, "--tracekit")
    result.assert_outcomes(failed=1, errors=1)
    doc = _load(pytester.path / "trace.json")
    (step,) = doc["steps"]
    assert step["status"] == "failed"
    assert step["error"]["details"]["type"] == "AssertionError"
    assert step["error"]["details"]["phase"] == "call"
    teardown = [e for e in doc["errors"] if e["scope"] == "node"]
    assert len(teardown) == 1
    assert teardown[0]["node_id"] == "test_teardown.py::test_it"
    assert teardown[0]["message"] == "cleanup failed"
    assert teardown[0]["context"] == {"phase": "teardown"}


def test_passing_session_in_always_mode_and_flow_option(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACEKIT_TRACE", "always")
    monkeypatch.setenv("TRACEKIT_TRACE_OUT", "out/session.json")
    (pytester.path / "out").mkdir()
    pytester.makepyfile(test_pass=PASSING)
    result = _run(pytester, "--tracekit", "--tracekit-flow", "nightly-tests")
    result.assert_outcomes(passed=4)
    doc = _load(pytester.path / "out" / "session.json")
    assert doc["run"]["outcome"] == "success"
    assert doc["flow"]["id"] == "nightly-tests"
    assert doc["errors"] == []
    assert [s["status"] for s in doc["steps"]] == ["completed"] * 4
    assert [s["input_hash"] for s in doc["steps"]] == [hash_value({"i": i}) for i in range(4)]


def test_passing_session_in_on_mode_writes_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_pass=PASSING)
    result = _run(pytester, "--tracekit")
    result.assert_outcomes(passed=4)
    assert list(pytester.path.glob("*.json")) == []
    result.stdout.fnmatch_lines(["tracekit: no trace written (no test failed; *"])


def test_module_parameters_are_named_not_walked(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # attrs' own suite parametrizes a fixture with modules; hashing a module's namespace walked
    # every loaded module (RSS reached 14 GB) and lost the step to a RecursionError.
    monkeypatch.setenv("TRACEKIT_TRACE", "always")
    pytester.makepyfile(
        test_mods="""
        import json, os
        import pytest

        @pytest.fixture(params=[json, os.path], ids=["json", "ospath"])
        def mod(request):
            return request.param

        def test_mod(mod):
            assert mod.__name__

        @pytest.mark.parametrize("pair", [(json, {"k": [os]}), ("plain", {"k": [1]})])
        def test_nested(pair):
            pass
        """
    )
    _run(pytester, "--tracekit").assert_outcomes(passed=4)
    doc = _load(pytester.path / "trace.json")
    assert doc["run"]["outcome"] == "success"
    assert [(s["node_id"], s["status"], s["input_hash"]) for s in doc["steps"]] == [
        ("test_mods.py::test_mod[json]", "completed", hash_value({"mod": {"$module": "json"}})),
        ("test_mods.py::test_mod[ospath]", "completed", hash_value({"mod": {"$module": "posixpath"}})),
        ("test_mods.py::test_nested[pair0]", "completed",
         hash_value({"pair": [{"$module": "json"}, {"k": [{"$module": "os"}]}]})),
        ("test_mods.py::test_nested[pair1]", "completed", hash_value({"pair": ("plain", {"k": [1]})})),
    ]


@pytest.mark.skipif(int(pytest.__version__.split(".")[0]) < 9, reason="subtests are built in from pytest 9")
def test_subtest_failures_keep_which_subtest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_sub="""
        def test_sub(subtests):
            for i in range(3):
                with subtests.test(msg="row", i=i):
                    assert i < 1

        def test_after():
            pass
        """
    )
    _run(pytester, "--tracekit")
    doc = _load(pytester.path / "trace.json")
    by_node = _by_node(doc)
    assert [s["node_id"] for s in doc["steps"]] == ["test_sub.py::test_sub", "test_sub.py::test_after"]
    step = by_node["test_sub.py::test_sub"]
    assert step["status"] == "failed"
    assert step["error"]["message"] == "assert 1 < 1"
    later = [e for e in doc["errors"] if e["scope"] == "node"]
    assert [(e["node_id"], e["message"], e["context"]) for e in later] == [
        ("test_sub.py::test_sub", "assert 2 < 1", {"phase": "call", "subtest": "[row] (i=2)"}),
    ]
    assert by_node["test_sub.py::test_after"]["status"] == "completed"


def test_without_the_option_the_plugin_is_inert(pytester: pytest.Pytester) -> None:
    assert pytester.parseconfigure().pluginmanager.get_plugin(PLUGIN_NAME) is None
    assert pytester.parseconfigure("--tracekit").pluginmanager.get_plugin(PLUGIN_NAME) is not None
    pytester.makepyfile(test_sample=SAMPLE)
    result = _run(pytester)
    result.assert_outcomes(passed=3, failed=1, errors=1, skipped=1)
    assert list(pytester.path.rglob("*.json")) == []


def test_invalid_environment_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACEKIT_TRACE_BUFFER", "zero")
    pytester.makepyfile(test_pass=PASSING)
    result = _run(pytester, "--tracekit")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--tracekit: TRACEKIT_TRACE_BUFFER='zero'*allowed: an integer >= 1*"])
    assert "Traceback" not in result.stderr.str()


def test_collection_error_fails_the_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_ok=PASSING, test_broken="import no_such_module_for_tracekit\n")
    result = _run(pytester, "--tracekit", "--continue-on-collection-errors")
    result.assert_outcomes(passed=4, errors=1)
    doc = _load(pytester.path / "trace.json")
    assert doc["run"]["outcome"] == "failure"
    collect = [e for e in doc["errors"] if e["context"].get("phase") == "collect"]
    assert [e["node_id"] for e in collect] == ["test_broken.py"]
    assert "no_such_module_for_tracekit" in collect[0]["context"]["report"]


@pytest.mark.parametrize("history", [False, True], ids=["out", "history"])
def test_xdist_workers_each_write_their_own_trace(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, history: bool
) -> None:
    monkeypatch.setenv("TRACEKIT_TRACE", "always")
    traces = pytester.path / "traces"
    traces.mkdir()
    if history:
        monkeypatch.setenv("TRACEKIT_TRACE_DIR", str(traces))
    else:
        monkeypatch.setenv("TRACEKIT_TRACE_OUT", str(traces / "trace.json"))
    pytester.makepyfile(test_pass=PASSING)
    result = pytester.runpytest_subprocess(*_QUIET, "--tracekit", "-n", "2")
    result.assert_outcomes(passed=4)

    files = sorted(traces.glob("*.json"))
    docs = [_load(f) for f in files]
    flows = sorted(d["flow"]["id"] for d in docs)
    assert flows == ["pytest-gw0", "pytest-gw1"]
    if history:
        # Each worker's run may start in a different second: compare the names past the time.
        names = sorted(f.name[len("YYYYMMDD-HHMMSS-"):] for f in files)
        assert names == ["pytest-gw0.json", "pytest-gw1.json"]
    else:
        assert [f.name for f in files] == ["trace-gw0.json", "trace-gw1.json"]
    # Every test ran in exactly one worker; the controller wrote no trace of its own.
    node_ids = sorted(s["node_id"] for d in docs for s in d["steps"])
    assert node_ids == sorted(f"test_pass.py::test_many[{i}]" for i in range(4))


def test_xdist_controller_writes_nothing_whichever_plugin_loads_first(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `-p` loads the plugin before every installed one, so its pytest_configure runs before
    # xdist's has registered the controller: the order a fresh install can give.
    monkeypatch.setenv("TRACEKIT_TRACE", "always")
    monkeypatch.setenv("TRACEKIT_TRACE_OUT", str(pytester.path / "trace.json"))
    pytester.makepyfile(test_pass=PASSING)
    result = pytester.runpytest_subprocess(
        *_QUIET, "-p", "no:tracekit", "-p", "tracekit.adapters.pytest", "--tracekit", "-n", "2"
    )
    result.assert_outcomes(passed=4)
    assert sorted(f.name for f in pytester.path.glob("trace*.json")) == ["trace-gw0.json", "trace-gw1.json"]


def test_xdist_worker_crash_is_recorded_by_the_controller(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_crash="""
        import os

        def test_ok():
            pass

        def test_dies():
            os._exit(3)
        """
    )
    result = pytester.runpytest_subprocess(*_QUIET, "--tracekit", "-n", "2")
    result.assert_outcomes(passed=1, failed=1)
    doc = _load(pytester.path / "trace-controller.json")
    assert doc["flow"]["id"] == "pytest-controller"
    assert doc["run"]["outcome"] == "failure"
    (step,) = doc["steps"]
    assert (step["node_id"], step["status"]) == ("test_crash.py::test_dies", "failed")
    assert step["error"]["details"]["type"].endswith("WorkerCrashed")
    assert step["error"]["message"].endswith("crashed while running 'test_crash.py::test_dies'")
    result.stdout.fnmatch_lines([
        "tracekit: gw* went down before its session finished (*",
        "tracekit: controller failure trace written to trace-controller.json (1 crashed test(s))",
    ])


def test_invalid_environment_under_xdist_is_one_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACEKIT_TRACE_BUFFER", "zero")
    pytester.makepyfile(test_pass=PASSING)
    result = pytester.runpytest_subprocess(*_QUIET, "--tracekit", "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--tracekit: TRACEKIT_TRACE_BUFFER='zero'*"])


@pytest.mark.parametrize(
    ("stop", "outcome"),
    [("raise KeyboardInterrupt", "cancelled"), ("pytest.exit('enough', returncode=3)", "cancelled")],
    ids=["ctrl-c", "pytest-exit"],
)
def test_interrupted_session_is_cancelled(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, stop: str, outcome: str
) -> None:
    monkeypatch.setenv("TRACEKIT_TRACE", "always")
    pytester.makepyfile(
        test_stop=f"""
        import pytest

        def test_first():
            pass

        def test_stops():
            {stop}

        def test_never_runs():
            pass
        """
    )
    pytester.inline_run(*_QUIET, "--tracekit", no_reraise_ctrlc=True)  # Ctrl-C stays inside
    doc = _load(pytester.path / "trace.json")
    assert doc["run"]["outcome"] == outcome
    assert [(s["node_id"], s["status"]) for s in doc["steps"]] == [
        ("test_stop.py::test_first", "completed"),
        ("test_stop.py::test_stops", "cancelled"),
    ]
    assert doc["steps"][1]["error"]["code"] == "cancelled"
