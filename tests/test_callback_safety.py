"""The callbacks' safety net: no stack left, a stale or unusable compiled module, free-threading.

- Called with only a few frames of stack headroom (a runner deep in recursion), no ``on_*``
  callback lets ``RecursionError`` reach the runner, on the compiled path or the pure one.
- A compiled module whose ABI constant does not match this tracekit (a stale ``.so`` after
  ``git pull`` on an editable install), or whose callbacks cannot be installed, is not used:
  pure Python runs, with one warning.
- On a free-threaded CPython the extension is not even imported (importing a single-phase-init
  module would turn the GIL back on for the whole process).
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tracekit import NodeEvent, TraceConfig, TraceContext, TraceRecorder, ValidationIssue, _native
from tracekit._native import ABI_VERSION, PURE_PYTHON_ENV, built
from tracekit.recorder.hotpath import callbacks_here

CTX = TraceContext(pack_ref="p@1", flow_id="f", flow_version="1")
PATHS = [pytest.param(False, id="pure"), pytest.param(True, id="compiled")]


def _recorder(compiled: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> TraceRecorder:
    if compiled and built() is None:
        pytest.skip("tracekit._speedups was not built")
    with monkeypatch.context() as m:
        m.setenv(PURE_PYTHON_ENV, "0" if compiled else "1")
        rec = TraceRecorder(TraceConfig.from_env({}, mode="on", out=tmp_path / "t.json"), CTX)
    assert rec._compiled is compiled
    return rec


def _with_headroom(headroom: int, call: Callable[[], None]) -> BaseException | None:
    """Recurse until the stack is full, come back up ``headroom`` frames, run ``call`` there;
    return the RecursionError that escaped from it, if any."""
    escaped: list[BaseException | None] = []

    def down() -> int:
        try:
            below = down()
        except RecursionError:
            return 0  # the deepest frame that ran: no room for even one more call
        if below == headroom and not escaped:
            try:
                call()
                escaped.append(None)
            except RecursionError as exc:
                escaped.append(exc)
        return below + 1

    down()
    assert escaped, "never reached that headroom"
    return escaped[0]


def _event(i: int) -> NodeEvent:
    return NodeEvent(f"n{i}", "c", "call", payload={"i": i, "rows": [1, 2, {"x": [3]}]})


def _args(name: str, i: int) -> tuple[Any, ...]:
    """The arguments of callback ``name``, built beforehand: the deep call must be the callback's."""
    event = _event(i)
    return {
        "on_node_start": (event,),
        "on_node_end": (event, {"out": [i, {"y": i}]}),
        "on_node_error": (event, ValueError(f"failure {i}")),
        "on_validation": (event, [ValidationIssue("bad", f"issue {i}")]),
    }[name]


@pytest.mark.parametrize("compiled", PATHS)
@pytest.mark.parametrize("name", ["on_node_start", "on_node_end", "on_node_error", "on_validation"])
def test_no_recursion_error_reaches_the_runner(
    name: str, compiled: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec = _recorder(compiled, monkeypatch, tmp_path)
    escaped = {}
    with caplog.at_level(logging.CRITICAL, logger="tracekit"):
        for headroom in range(1, 80):
            rec.on_node_start(_event(headroom))  # with room to spare: what the deep call ends or fails
            # functools.partial adds no Python frame: the callback runs with exactly that headroom.
            call = functools.partial(getattr(rec, name), *_args(name, headroom))
            error = _with_headroom(headroom, call)
            if error is not None:
                escaped[headroom] = repr(error)
    assert escaped == {}
    assert rec.misuse.get("internal_error", 0) >= 1  # the calls that found no stack were counted
    # The recorder is still whole: a node recorded with room to spare lands as usual.
    rec.on_node_start(_event(1000))
    rec.on_node_end(_event(1000), "ok")
    assert rec._ring[-1].node_id == "n1000" and rec._ring[-1].status == "completed"


# --- the compiled module's handshake ------------------------------------------------------------


@pytest.fixture
def fresh_native(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Any], None]]:
    """Make tracekit load ``module`` as its compiled helpers (as if it were the built .so)."""
    saved = _native.snapshot()

    def load(module: Any) -> None:
        monkeypatch.setitem(sys.modules, "tracekit._speedups", module)
        monkeypatch.delenv(PURE_PYTHON_ENV, raising=False)
        _native.reset()

    yield load
    _native.restore(saved)


def _stale(**attrs: Any) -> types.ModuleType:
    module = types.ModuleType("tracekit._speedups")
    module.__dict__.update(attrs)
    return module


class _HotPath:
    """The constructor of a compiled module built from older C: it takes other arguments."""

    def __init__(self, *, recorder: Any, open: Any) -> None:
        raise AssertionError("never reached: the keywords differ")


def _fallback_warnings(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.name == "tracekit" and "compiled" in r.getMessage()]


@pytest.mark.parametrize(
    "module",
    [
        pytest.param(_stale(HotPath=_HotPath, has_null=None), id="no-abi-constant"),
        pytest.param(_stale(ABI_VERSION=ABI_VERSION - 1, HotPath=_HotPath), id="older-abi"),
        pytest.param(_stale(ABI_VERSION="2", HotPath=_HotPath), id="abi-of-another-type"),
    ],
)
def test_a_stale_compiled_module_is_not_used(
    module: types.ModuleType, fresh_native: Callable[[Any], None], caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    fresh_native(module)
    with caplog.at_level(logging.WARNING, logger="tracekit"):
        assert built() is None and _native.in_use() is None
        recorders = [TraceRecorder(TraceConfig.from_env({}, out=tmp_path / "t.json"), CTX) for _ in range(3)]
    assert not any(r._compiled for r in recorders)
    (warning,) = _fallback_warnings(caplog.records)
    assert "ABI" in warning and "pure Python" in warning
    assert callbacks_here()[0] == "python" and "ABI" in callbacks_here()[1]
    rec = recorders[0]
    rec.on_node_start(_event(1))
    rec.on_node_end(_event(1), 2)
    assert [s.node_id for s in rec._ring] == ["n1"] and rec.misuse == {}


def test_a_module_whose_callbacks_cannot_be_installed_falls_back_once(
    fresh_native: Callable[[Any], None], caplog: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:
    fresh_native(_stale(ABI_VERSION=ABI_VERSION, HotPath=_HotPath, has_null=None, non_finite=None))
    with caplog.at_level(logging.WARNING, logger="tracekit"):
        recorders = [TraceRecorder(TraceConfig.from_env({}, out=tmp_path / "t.json"), CTX) for _ in range(3)]
        assert built() is None  # not tried again by later recorders
    assert not any(r._compiled for r in recorders)
    (warning,) = _fallback_warnings(caplog.records)
    assert "could not be installed" in warning and "pure Python" in warning
    rec = recorders[-1]
    rec.on_node_start(_event(1))
    rec.on_node_end(_event(1), 2)
    assert [s.node_id for s in rec._ring] == ["n1"]


def test_import_tracekit_survives_a_stale_module(tmp_path: Path) -> None:
    """A real process whose ``import tracekit._speedups`` finds a module built from older C."""
    script = textwrap.dedent("""
        import importlib.abc, importlib.util, sys

        class Stale(importlib.abc.MetaPathFinder, importlib.abc.Loader):
            def find_spec(self, name, path, target=None):
                if name == "tracekit._speedups":
                    return importlib.util.spec_from_loader(name, self)
                return None
            def create_module(self, spec):
                return None
            def exec_module(self, module):
                module.N_FIELDS = 3  # no ABI_VERSION, no has_null, no HotPath

        sys.meta_path.insert(0, Stale())
        import tracekit
        from tracekit import TraceConfig, TraceContext, TraceRecorder, NodeEvent, hash_value
        recs = [TraceRecorder(TraceConfig.from_env({}), TraceContext("p", "f", "1")) for _ in range(3)]
        recs[0].on_node_start(NodeEvent("n", "c", "call", payload={"a": None}))
        recs[0].on_node_end(NodeEvent("n", "c", "call"), 1)
        print(any(r._compiled for r in recs), len(recs[0]._ring), hash_value({"a": None})["algorithm"])
    """)
    env = {k: v for k, v in os.environ.items() if k != PURE_PYTHON_ENV}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "1", "blake3"]
    assert done.stderr.count("compiled") == 1, done.stderr  # one warning


# --- free-threaded CPython ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "pretend",
    [
        pytest.param("sys._is_gil_enabled = lambda: False", id="gil-disabled-at-run-time"),
        pytest.param("import sysconfig; _g = sysconfig.get_config_var; "
                     "sysconfig.get_config_var = lambda n: 1 if n == 'Py_GIL_DISABLED' else _g(n)",
                     id="free-threaded-build"),
    ],
)
def test_a_free_threaded_build_never_imports_the_extension(pretend: str, tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys
        {pretend}
        from tracekit import TraceConfig, TraceContext, TraceRecorder
        from tracekit.recorder.hotpath import callbacks_here
        rec = TraceRecorder(TraceConfig.from_env({{}}), TraceContext("p", "f", "1"))
        print(rec._compiled, "tracekit._speedups" in sys.modules, callbacks_here()[1])
    """)
    env = {k: v for k, v in os.environ.items() if k != PURE_PYTHON_ENV}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    compiled, imported, why = done.stdout.strip().split(" ", 2)
    assert (compiled, imported) == ("False", "False")
    assert "free-threaded" in why
    assert "Warning" not in done.stderr and done.stderr == ""  # not a fault: nothing to warn about


def test_a_gil_build_uses_the_extension_where_it_was_built() -> None:
    if built() is None:
        pytest.skip("tracekit._speedups was not built")
    assert not _native.free_threaded()
    assert getattr(built(), "ABI_VERSION", None) == ABI_VERSION
