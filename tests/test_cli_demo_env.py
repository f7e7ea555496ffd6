"""``tracekit demo``, ``env``, ``schema``, ``--help`` and ``python -m tracekit``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from _cli_support import invoke, load, run_exe

from tracekit._native import built
from tracekit.cli import cli
from tracekit.trace.check import validate_trace
from tracekit.trace.schema import schema_path


def test_demo_writes_a_valid_failing_trace_and_shows_it(tmp_path: Path) -> None:
    result = invoke("demo")
    assert result.exit_code == 0, result.output
    trace = tmp_path / "trace.json"
    doc = load(trace)
    assert validate_trace(doc) == []
    assert doc["run"]["outcome"] == "failure"
    assert [s["node_id"] for s in doc["steps"]] == ["load_orders", "parse", "fetch_prices", "enrich"]
    out = result.stdout
    assert "trace written to trace.json (valid)" in out
    assert "FAILED  fetch_prices" in out and "FAILED  enrich" in out
    assert "2. caused by ConnectionRefusedError" in out and "<- root cause" in out
    assert "The pricing service did not answer" in out  # the domain error's own hint
    assert '"api_token": "[REDACTED]"' in out and "demo-not-a-secret" not in trace.read_text()
    assert "The failure above is intended" in out


def test_demo_respects_trace_dir_and_out(tmp_path: Path) -> None:
    result = invoke("demo", env={"TRACEKIT_TRACE_DIR": "traces"})
    assert result.exit_code == 0, result.output
    [written] = list((tmp_path / "traces").iterdir())
    assert written.name.endswith("-demo-orders.json")
    assert invoke("ls", "traces", "--latest").stdout.strip() == str(Path("traces") / written.name)
    result = invoke("demo", env={"TRACEKIT_TRACE_OUT": "out/demo.json"})
    assert result.exit_code == 0
    assert load(tmp_path / "out" / "demo.json")["flow"]["id"] == "demo-orders"
    assert not (tmp_path / "trace.json").exists()


def test_demo_capture_off_mode_off_and_bad_config(tmp_path: Path) -> None:
    result = invoke("demo", env={"TRACEKIT_TRACE_CAPTURE_INPUTS": "0"})
    assert result.exit_code == 0
    assert "invocation_json" not in (tmp_path / "trace.json").read_text()
    (tmp_path / "trace.json").unlink()
    result = invoke("demo", env={"TRACEKIT_TRACE": "off"})
    assert result.exit_code == 0
    assert "TRACEKIT_TRACE is off, so no trace is written" in result.stdout
    assert not (tmp_path / "trace.json").exists()
    result = invoke("demo", env={"TRACEKIT_TRACE": "sometimes"})
    assert result.exit_code == 2
    assert "TRACEKIT_TRACE='sometimes' is not a trace mode" in result.stderr


def test_demo_unwritable_target_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "trace.json").mkdir()  # the target is a directory: the write must fail
    result = invoke("demo")
    assert result.exit_code == 1
    assert "the trace could not be written" in result.stderr
    assert "Traceback" not in result.output


def test_demo_installed_script_in_an_empty_directory(tmp_path: Path) -> None:
    work = tmp_path / "empty"
    work.mkdir()
    proc = run_exe("demo", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "FAILED  enrich" in proc.stdout and "\x1b[" not in proc.stdout
    assert validate_trace(load(work / "trace.json")) == []


def test_python_dash_m(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "tracekit", "validate", "nothing.json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout.strip() == "nothing.json: /: no such file"


def test_env_defaults_and_sources() -> None:
    result = invoke("env")
    assert result.exit_code == 0
    lines = {ln.split()[0]: ln.split()[1:] for ln in result.stdout.splitlines()}
    assert lines["mode"] == ["on", "(default)"]
    assert lines["buffer"] == ["20", "(default)"]
    compiled = built() is not None and os.environ.get("TRACEKIT_PURE_PYTHON") != "1"
    assert lines["callbacks"][0] == ("compiled" if compiled else "python")
    result = invoke("env", env={"TRACEKIT_PURE_PYTHON": "1"})
    assert "callbacks          python  (" in result.stdout
    result = invoke("env", env={"TRACEKIT_TRACE": "ALWAYS", "TRACEKIT_TRACE_BUFFER": "5",
                                "TRACEKIT_TRACE_DIR": "hist", "GITHUB_SHA": "abc123"})
    lines = {ln.split()[0]: ln.split()[1:] for ln in result.stdout.splitlines()}
    assert lines["mode"] == ["always", "(from", "TRACEKIT_TRACE)"]
    assert lines["buffer"] == ["5", "(from", "TRACEKIT_TRACE_BUFFER)"]
    assert lines["dir"] == ["hist", "(from", "TRACEKIT_TRACE_DIR)"]
    assert lines["git_sha"] == ["abc123", "(from", "GITHUB_SHA)"]


def test_env_json() -> None:
    data = orjson.loads(invoke("env", "--json", env={"TRACEKIT_TRACE_KEEP": "3"}).stdout)
    assert data["valid"] is True
    assert data["settings"]["keep"] == 3 and data["sources"]["keep"] == "TRACEKIT_TRACE_KEEP"
    assert data["sources"]["mode"] == "default"
    assert data["callbacks"]["kind"] in ("compiled", "python") and data["callbacks"]["why"]


@pytest.mark.parametrize(("env", "says"), [
    ({"TRACEKIT_TRACE_BUFFER": "0"}, "TRACEKIT_TRACE_BUFFER='0' is too small; allowed: an integer >= 1"),
    ({"TRACEKIT_TRACE_CAPTURE_INPUTS": "maybe"}, "TRACEKIT_TRACE_CAPTURE_INPUTS='maybe' is not a boolean"),
    ({"TRACEKIT_TRACE_OUT": "a.json", "TRACEKIT_TRACE_DIR": "d"}, "are both set"),
])
def test_env_invalid_value_is_explained_with_exit_2(env: dict[str, str], says: str) -> None:
    result = invoke("env", env=env)
    assert result.exit_code == 2
    assert result.stderr.startswith("tracekit: invalid configuration: ")
    assert says in result.stderr
    data = orjson.loads(invoke("env", "--json", env=env).stdout)
    assert data["valid"] is False and says in data["error"]


def test_env_installed_script(tmp_path: Path) -> None:
    proc = run_exe("env", cwd=tmp_path, env={"TRACEKIT_TRACE_KEEP": "-1"})
    assert proc.returncode == 2
    assert "TRACEKIT_TRACE_KEEP='-1'" in proc.stderr and "Traceback" not in proc.stderr


def test_schema_and_its_path() -> None:
    text = invoke("schema").stdout
    assert orjson.loads(text)["$id"].endswith("trace-envelope.v1.schema.json")
    where = invoke("schema", "--path").stdout.strip()
    assert Path(where) == schema_path() and Path(where).read_text(encoding="utf-8") == text


def test_every_command_has_help_with_an_example() -> None:
    mine = {"validate", "show", "diff", "ls", "schema", "demo", "env"}
    assert set(cli.commands) >= mine
    for name in sorted(mine):
        result = invoke(name, "--help")
        assert result.exit_code == 0, name
        assert "Example" in result.stdout, name
    assert invoke("--version").stdout.startswith("tracekit, version ")
    assert invoke("nonsense").exit_code == 2
