"""Helpers for the command-line tests: run a command in-process or as the installed script, and
write real traces with the recorder (no hand-made JSON where the recorder can make it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner, Result

from tracekit import TraceContext, TraceRecorder
from tracekit.cli import cli

__all__ = ["FIXTURES", "exe", "failing_trace", "invoke", "load", "run_exe", "success_trace", "write_json"]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


class ServiceDown(RuntimeError):
    hints = ("start the service",)


def invoke(*args: str, env: dict[str, str] | None = None, color: bool = False) -> Result:
    """Run ``tracekit ARGS`` in-process (CliRunner keeps stdout and stderr apart).

    ``color=True`` behaves as a terminal would: click keeps the styles.
    """
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False, color=color)


def exe() -> str:
    """The installed ``tracekit`` console script of this interpreter's environment."""
    beside = Path(sys.executable).parent / "tracekit"
    found = str(beside) if beside.exists() else shutil.which("tracekit")
    assert found, "the tracekit console script is not installed"
    return found


def run_exe(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real ``tracekit`` script as a subprocess (its output is a pipe: no color)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
    full.update(env or {})
    return subprocess.run([exe(), *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=120)


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(path.read_bytes())
    return data


def write_json(path: Path, doc: Any) -> Path:
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    return path


def _recorder(out: Path, flow: str = "nightly", **overrides: Any) -> TraceRecorder:
    ctx = TraceContext(pack_ref="etl@1.4.0", flow_id=flow, flow_version="3")
    return TraceRecorder.from_env(ctx, out=out, **overrides)


def failing_trace(out: Path, *, capture: bool = True, value: int = 1, flow: str = "nightly") -> Path:
    """A real failed run: load ok, transform ok, write fails in a nested call (chain of two)."""
    rec = _recorder(out, flow, capture_inputs=capture)
    try:
        with rec.run():
            with rec.step("load", payload={"day": "2026-11-23", "password": "hunter2"}) as st:
                st.set_output([value, 2, 3])
            with rec.step("transform", payload={"rows": 3}) as st:
                st.set_output({"sum": value + 5})
            with rec.step("write", payload={"table": "orders"}):
                try:
                    with rec.step("connect", payload={"host": "db"}):
                        raise ConnectionRefusedError(111, "Connection refused")
                except ConnectionRefusedError as err:
                    raise ServiceDown("cannot write orders") from err
    except ServiceDown:
        pass
    assert rec.last_trace_path == out, rec.last_flush_error
    return out


def success_trace(out: Path, *, value: int = 1, flow: str = "nightly", nodes: int = 3) -> Path:
    """A real successful run written in always mode."""
    rec = _recorder(out, flow, mode="always")
    with rec.run():
        for i in range(nodes):
            with rec.step(f"n{i}", payload={"i": i, "v": value}) as st:
                st.set_output(i * value)
    assert rec.last_trace_path == out, rec.last_flush_error
    return out
