"""The pytest plugin on a real 200-test suite, run as a user runs it: ``python -m pytest --tracekit``.

The suite is generated into a tmp dir as real files (a conftest with fixtures that fail at setup
and at teardown, several modules, parametrized tests and fixtures, xfail, skip) and run in a
subprocess, alone and under ``-n 2``. One test fails with a chained exception; it runs either
FIRST (so 199 tests finish after it: the ring alone would have evicted it, pinned failures must
keep it) or among the last 20. Every piece that fails writes which process met it into
``failures.jsonl``, so the test knows which worker (and pid) must have recorded it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from tracekit.capture.hashing import hash_value
from tracekit.trace.schema import validate_document

# Plugins the inner sessions do not need (hypothesis's alone costs about a second per start).
_QUIET = ("-p", "no:hypothesispytest", "-p", "no:langsmith_plugin", "-p", "no:randomly",
          "-p", "no:cacheprovider")
_TIMEOUT = 300  # seconds; a hang must fail the test, not the CI job

CONFTEST = '''
import json
import os

import pytest

from _suite_note import note


@pytest.fixture
def broken_setup():
    note("setup")
    raise ConnectionError("database unreachable at 127.0.0.1:5432")


@pytest.fixture
def broken_teardown():
    yield 1
    note("teardown")
    raise OSError("could not remove the scratch directory")


@pytest.fixture(scope="session")
def shared():
    return {"n": 1}


@pytest.fixture(params=["csv", "parquet"])
def fmt(request):
    return request.param


@pytest.fixture(params=[json, os.path], ids=["json", "ospath"])
def codec(request):
    return request.param
'''

NOTE = '''
import json
import os


def note(kind):
    """Say which process met this failure (appends are atomic at this size)."""
    line = json.dumps({"kind": kind, "pid": os.getpid(), "worker": os.environ.get("PYTEST_XDIST_WORKER")})
    with open(os.path.join(os.path.dirname(__file__), "failures.jsonl"), "a") as f:
        f.write(line + "\\n")
'''

CHAIN = '''
from _suite_note import note


def test_chained_failure():
    note("call")
    raise RuntimeError("could not load the settings") from KeyError("db.url")


def test_after_one():
    pass


def test_after_two(shared):
    assert shared["n"] == 1
'''

FIXTURES = '''
import pytest


def test_setup_error(broken_setup):
    pass


def test_teardown_error(broken_teardown):
    assert broken_teardown == 1


@pytest.mark.xfail(reason="known bug #12")
def test_xfail():
    assert False


@pytest.mark.skip(reason="needs a GPU")
def test_skip():
    pass


@pytest.mark.skipif(True, reason="not on this platform")
def test_skipif():
    pass


def test_formats(fmt):
    assert fmt in ("csv", "parquet")


def test_codec(codec):
    assert codec.__name__


def test_shared(shared):
    assert shared == {"n": 1}
'''

CLASSES = '''
import pytest


class TestRoundTrip:
    @pytest.mark.parametrize("n", range(10))
    def test_encode(self, n):
        assert str(n).encode().decode() == str(n)

    @pytest.mark.parametrize("n", range(10))
    def test_square(self, n):
        assert n * n >= 0
'''

PARAMS = '''
import pytest


@pytest.mark.parametrize("i", range(167))
def test_many(i, shared):
    assert i >= 0
'''

TOTAL = 200  # 3 (chain) + 10 (fixtures) + 20 (classes) + 167 (params)
#: What pytest itself reports for the suite: the teardown error's test passed its call.
OUTCOMES = {"failed": 1, "passed": 195, "skipped": 2, "xfailed": 1, "errors": 2}


@dataclass(frozen=True)
class Suite:
    root: Path
    chain: str  # module file names, as they appear in node ids
    fixtures: str

    @property
    def failing(self) -> str:
        return f"{self.chain}::test_chained_failure"

    def node(self, name: str) -> str:
        return f"{self.fixtures}::{name}"

    def notes(self) -> dict[str, dict[str, Any]]:
        """Which process met each failure: ``{"call"|"setup"|"teardown": {"pid", "worker"}}``."""
        lines = (self.root / "failures.jsonl").read_text().splitlines()
        found = [json.loads(line) for line in lines]
        assert sorted(n["kind"] for n in found) == ["call", "setup", "teardown"], found
        return {n["kind"]: n for n in found}


def write_suite(root: Path, *, failure_first: bool) -> Suite:
    """The 200-test suite; pytest runs modules in file-name order, so the names place the failure."""
    chain, fixtures = ("test_a_chain.py", "test_c_fixtures.py") if failure_first else (
        "test_x_chain.py", "test_y_fixtures.py")
    root.mkdir()
    files = {
        "conftest.py": CONFTEST,
        "_suite_note.py": NOTE,
        chain: CHAIN,
        fixtures: FIXTURES,
        "test_b_params.py": PARAMS,
        "test_d_classes.py": CLASSES,
    }
    for name, text in files.items():
        (root / name).write_text(text.lstrip())
    return Suite(root, chain, fixtures)


def _env(**extra: str) -> dict[str, str]:
    # The outer run may itself be an xdist worker: its variables must not leak into the inner run.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT_TEST", "PYTEST_ADDOPTS"))}
    env.update(extra)
    return env


@dataclass(frozen=True)
class Ran:
    pid: int
    returncode: int
    out: str


def run_pytest(suite: Suite, *args: str, **env: str) -> Ran:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--tracekit", *_QUIET, "-q", *args],
        cwd=suite.root, env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    out, _ = proc.communicate(timeout=_TIMEOUT)
    return Ran(proc.pid, proc.returncode, out)


def outcomes(out: str) -> dict[str, int]:
    """pytest's closing line (``1 failed, 195 passed, ... in 3.2s``) as counts."""
    last = out.strip().splitlines()[-1]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", last)}
    return {("errors" if k == "error" else k): v for k, v in counts.items()}


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(path.read_bytes())
    assert validate_document(doc) == [], path
    return doc


def show(path: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tracekit", "show", str(path)],
        env={**_env(), "COLUMNS": "200"},  # wide enough that a block's title stays on one line
        capture_output=True, text=True, timeout=_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _steps(doc: dict[str, Any], node_id: str) -> list[dict[str, Any]]:
    return [s for s in doc["steps"] if s["node_id"] == node_id]


def assert_failures_recorded(doc: dict[str, Any], suite: Suite, kinds: set[str]) -> None:
    """The failed steps of the kinds this process met are in the trace, phase and chain included."""
    expected = {
        "call": (suite.failing, "call", [("RuntimeError", "raised", "could not load the settings"),
                                         ("KeyError", "cause", "'db.url'")]),
        "setup": (suite.node("test_setup_error"), "setup",
                  [("ConnectionError", "raised", "database unreachable at 127.0.0.1:5432")]),
        "teardown": (suite.node("test_teardown_error"), "teardown",
                     [("OSError", "raised", "could not remove the scratch directory")]),
    }
    for kind in sorted(kinds):
        node_id, phase, chain = expected[kind]
        steps = _steps(doc, node_id)
        assert [s["status"] for s in steps] == ["failed"], (kind, node_id, doc["buffer"])
        (step,) = steps
        details = step["error"]["details"]
        assert step["attempt"] == 1
        assert details["phase"] == phase
        assert details["type"] == chain[0][0]
        assert step["error"]["message"] == chain[0][2]
        assert [(c["type"], c["relation"], c["message"]) for c in details["chain"]] == chain


def assert_show_names_it_first(text: str, suite: Suite) -> None:
    blocks = [line for line in text.splitlines() if line.startswith("FAILED  ")]
    assert blocks, text
    assert blocks[0].split()[1] == suite.failing, blocks
    assert "phase call" in blocks[0]
    first = text[text.index(blocks[0]):]
    first = first[: first.find("\nFAILED  ", 1)] if "\nFAILED  " in first else first
    assert "RuntimeError: could not load the settings" in first
    assert "caused by KeyError: 'db.url'" in first


@pytest.mark.parametrize("failure_first", [True, False], ids=["failure-first", "failure-late"])
def test_suite_failure_is_the_failed_block_of_the_final_trace(tmp_path: Path, failure_first: bool) -> None:
    suite = write_suite(tmp_path / "suite", failure_first=failure_first)
    ran = run_pytest(suite)
    assert ran.returncode == pytest.ExitCode.TESTS_FAILED, ran.out
    assert outcomes(ran.out) == OUTCOMES, ran.out
    assert "\ntracekit: failure trace written to trace.json\n" in ran.out, ran.out

    notes = suite.notes()
    assert {n["pid"] for n in notes.values()} == {ran.pid}
    doc = load(suite.root / "trace.json")
    assert doc["run"]["outcome"] == "failure"
    assert "finished_at" in doc["run"]
    assert doc["run"]["pid"] == ran.pid
    assert_failures_recorded(doc, suite, {"call", "setup", "teardown"})
    text = show(suite.root / "trace.json")
    assert_show_names_it_first(text, suite)
    assert f"FAILED  {suite.node('test_setup_error')}   (step " in text
    assert "phase setup" in text and "phase teardown" in text

    summary = [e for e in doc["errors"] if e["scope"] == "runner"]
    assert len(summary) == 1 and summary[0]["message"].startswith("3 test(s) failed: "), summary
    teardown_events = [e for e in doc["errors"] if e["scope"] == "node"]
    assert teardown_events == []  # the teardown error is its test's only failure: the step's own

    if not failure_first:  # the last 20 steps: the ring alone holds these
        names = ("test_xfail", "test_skip", "test_skipif")
        xfail, skip, skipif = (_steps(doc, suite.node(n))[0] for n in names)
        assert [xfail["status"], skip["status"], skipif["status"]] == ["cancelled"] * 3
        assert xfail["error"]["message"] == "xfail: known bug #12"
        assert "needs a GPU" in skip["error"]["message"]
        assert skip["error"]["details"]["phase"] == "setup"
        # Module parameters are named, not walked: the hash says which module, and is cheap.
        assert [s["input_hash"] for s in _steps(doc, suite.node("test_codec[json]"))] == [
            hash_value({"codec": {"$module": "json"}})]
        assert [s["input_hash"] for s in _steps(doc, suite.node("test_codec[ospath]"))] == [
            hash_value({"codec": {"$module": "posixpath"}})]
        assert [s["input_hash"] for s in _steps(doc, suite.node("test_formats[parquet]"))] == [
            hash_value({"fmt": "parquet"})]
        assert [s["status"] for s in doc["steps"][-3:]] == ["completed"] * 3


def _worker_files(directory: Path, history: bool) -> dict[str, Path]:
    files = sorted(directory.glob("*.json"))
    if history:
        return {f.stem.rsplit("-", 1)[-1]: f for f in files}
    return {f.stem.removeprefix("trace-"): f for f in files}


@pytest.mark.parametrize(
    ("failure_first", "history"),
    [(True, False), (False, False), (False, True)],
    ids=["failure-first", "failure-late", "failure-late-history"],
)
def test_suite_under_xdist_each_worker_records_what_it_ran(
    tmp_path: Path, failure_first: bool, history: bool
) -> None:
    suite = write_suite(tmp_path / "suite", failure_first=failure_first)
    traces = tmp_path / "traces"
    traces.mkdir()
    where = {"TRACEKIT_TRACE_DIR": str(traces)} if history else {
        "TRACEKIT_TRACE_OUT": str(traces / "trace.json")}
    ran = run_pytest(suite, "-n", "2", TRACEKIT_TRACE="always", **where)
    assert ran.returncode == pytest.ExitCode.TESTS_FAILED, ran.out
    assert outcomes(ran.out) == OUTCOMES, ran.out

    files = _worker_files(traces, history)
    assert sorted(files) == ["gw0", "gw1"], sorted(traces.iterdir())  # no worker replaced another's
    if history:
        assert all(f.name.endswith(f"-pytest-{w}.json") for w, f in files.items())
    else:
        assert {f.name for f in files.values()} == {"trace-gw0.json", "trace-gw1.json"}
    docs = {w: load(f) for w, f in files.items()}
    for worker, doc in docs.items():
        assert doc["flow"]["id"] == f"pytest-{worker}"
        assert f"tracekit: {worker} {doc['run']['outcome']} trace written to {files[worker]}" in ran.out
    pids = {w: d["run"]["pid"] for w, d in docs.items()}
    assert len(set(pids.values())) == 2 and ran.pid not in pids.values()  # the controller wrote none
    seen = [s["node_id"] for d in docs.values() for s in d["steps"]]
    assert len(seen) == len(set(seen))  # every test in exactly one worker's file, once

    notes = suite.notes()
    for kind, note in notes.items():  # each failure was recorded by the worker that met it
        worker = note["worker"]
        assert pids[worker] == note["pid"], (kind, note, pids)
        assert_failures_recorded(docs[worker], suite, {kind})
    met = {n["worker"] for n in notes.values()}
    for worker, doc in docs.items():  # final, and failed exactly where a failure was met
        assert doc["run"]["outcome"] == ("failure" if worker in met else "success"), worker
        assert "finished_at" in doc["run"]
    failing_worker = notes["call"]["worker"]
    assert_show_names_it_first(show(files[failing_worker]), suite)


RERUN_PLUGIN = '''
import pytest
from _pytest.runner import runtestprotocol


def pytest_addoption(parser):
    parser.addoption("--rerun-once", action="store_true")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    """Rerun a failed test once, the way pytest-rerunfailures does: execution_count is set before
    each attempt, and setup/call/teardown all run again inside this one protocol call."""
    if not item.config.getoption("rerun_once"):
        return None
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for count in (1, 2):
        item.execution_count = count
        reports = runtestprotocol(item, nextitem=nextitem, log=False)
        if count == 2 or not any(r.failed for r in reports):
            break
    for report in reports:
        item.ihook.pytest_runtest_logreport(report=report)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
'''

FLAKY = '''
import os


def test_flaky():
    if not os.path.exists("ran-once"):
        open("ran-once", "w").close()
        raise ConnectionResetError("the server went away")


def test_steady():
    pass
'''


def _check_rerun(doc: dict[str, Any], node_id: str) -> None:
    attempts = _steps(doc, node_id)
    assert [(s["attempt"], s["status"]) for s in attempts] == [(1, "failed"), (2, "completed")]
    assert attempts[0]["error"]["details"]["type"] == "ConnectionResetError"
    assert attempts[0]["error"]["details"]["phase"] == "call"
    assert doc["run"]["outcome"] == "success"  # the test passed on its rerun: so did the session
    assert [e for e in doc["errors"] if e["scope"] == "runner"] == []


def test_rerun_inside_one_protocol_is_one_step_per_attempt(tmp_path: Path) -> None:
    root = tmp_path / "suite"
    root.mkdir()
    (root / "conftest.py").write_text(RERUN_PLUGIN.lstrip())
    (root / "test_flaky.py").write_text(FLAKY.lstrip())
    suite = Suite(root, "test_flaky.py", "test_flaky.py")
    ran = run_pytest(suite, "--rerun-once")  # mode on: the failed attempt flushed, the end rewrote it
    assert ran.returncode == 0, ran.out
    assert outcomes(ran.out) == {"passed": 2}, ran.out
    _check_rerun(load(root / "trace.json"), "test_flaky.py::test_flaky")


def test_pytest_rerunfailures_gives_one_step_per_attempt(tmp_path: Path) -> None:
    pytest.importorskip("pytest_rerunfailures")  # an optional plugin: not a dependency of ours
    root = tmp_path / "suite"
    root.mkdir()
    (root / "test_flaky.py").write_text(FLAKY.lstrip())
    ran = run_pytest(Suite(root, "test_flaky.py", "test_flaky.py"), "--reruns", "1")
    assert ran.returncode == 0, ran.out
    _check_rerun(load(root / "trace.json"), "test_flaky.py::test_flaky")
